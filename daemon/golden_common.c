/* daemon/golden_common.c — `loom golden`'s shared machinery: a golden file's metadata and
 * tensors, the checkpoint its config names (found in the folder, its sha256 checked, models
 * loaded on first use and shared by every file naming it), and the comparison that prints
 * and counts one line per expected tensor.
 *
 * Comparison rule (golden/README.md, "Tolerances"): element-wise |c - g| <= atol + rtol*|g|
 * with the group's atol/rtol from the file's `tolerances`; `max_abs_diff` groups (image_u8)
 * allow |c - g| <= max_abs_diff; `bit_exact` groups (rng) pass when every float has the
 * golden's bits and otherwise fall back to their `fallback` tolerance (the line says which).
 * The internal group "exact" (integer outputs such as T5 bucket tables) needs equality.
 * NaN never passes. Shapes must agree (dimensions of size 1 aside). */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "daemon/golden_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- result lines ---- */

static void fmt_num(char *buf, size_t size, double v)
{
    if (v < 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.3g", v);
}

void lm_golden__report(lm_golden_run *run, const char *name, const char *group, double max_abs,
                       double max_rel, bool pass, const char *why)
{
    char a[32], r[32];
    fmt_num(a, sizeof(a), max_abs);
    fmt_num(r, sizeof(r), max_rel);
    fprintf(run->out, "  %-40s %-9s max abs %-9s max rel %-9s %s%s%s\n", name, group, a, r,
            pass ? "PASS" : "FAIL", why && why[0] ? "  " : "", why ? why : "");
    if (pass)
        run->passed++;
    else
        run->failed++;
}

/* Index of entry `name`, or -1 (entries are sorted: the prefix range starts at it). */
static long index_of(const lm_golden_file *f, const char *name)
{
    size_t first = 0;
    if (lm_safetensors_find_prefix(f->st, name, &first) == 0 ||
        strcmp(lm_safetensors_at(f->st, first)->name, name) != 0)
        return -1;
    return (long)first;
}

static void mark(lm_golden_file *f, const char *name)
{
    long i = index_of(f, name);
    if (i >= 0)
        f->done[i] = true;
}

bool lm_golden__has(const lm_golden_file *f, const char *name)
{
    long i = index_of(f, name);
    return i >= 0 && !f->done[i];
}

bool lm_golden__is_input(const lm_golden_file *f, const char *name)
{
    const char *d = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->tensors, name));
    return d && strncmp(d, "INPUT", 5) == 0;
}

void lm_golden__fail(lm_golden_file *f, const char *name, const char *group, const lm_error *err)
{
    char line[1200];
    lm_error_format(err, line, sizeof(line));
    lm_golden__failf(f, name, group, "%s", line);
}

void lm_golden__failf(lm_golden_file *f, const char *name, const char *group, const char *fmt, ...)
{
    char why[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (!lm_golden__has(f, name))
        return;
    mark(f, name);
    lm_golden__report(f->run, name, group, -1, -1, false, why);
}

void lm_golden__fail_prefix(lm_golden_file *f, const char *prefix, const lm_error *err)
{
    size_t first = 0, n = lm_safetensors_find_prefix(f->st, prefix, &first);
    for (size_t i = first; i < first + n; i++) {
        const char *name = lm_safetensors_at(f->st, i)->name;
        if (!lm_golden__is_input(f, name))
            lm_golden__fail(f, name, "-", err);
    }
}

/* ---- metadata ---- */

static cJSON *meta_json(const lm_safetensors *st, const char *key)
{
    const char *text = lm_safetensors_metadata(st, key);
    return text ? cJSON_Parse(text) : NULL;
}

lm_status lm_golden__file_init(lm_golden_file *f, lm_golden_run *run, const char *name,
                               lm_safetensors *st, lm_error *err)
{
    memset(f, 0, sizeof(*f));
    f->run = run;
    f->name = name;
    f->st = st;
    f->config = meta_json(st, "config");
    f->params = meta_json(st, "params");
    f->prompts = meta_json(st, "prompts");
    f->cases = meta_json(st, "cases");
    f->tensors = meta_json(st, "tensors");
    f->tolerances = meta_json(st, "tolerances");
    f->done = lm_calloc(lm_safetensors_count(st) + 1, sizeof(bool));
    if (!f->done)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "%s: no memory", name);
    return LM_OK;
}

void lm_golden__file_finish(lm_golden_file *f, bool coverage)
{
    size_t n = f->st && coverage ? lm_safetensors_count(f->st) : 0;
    for (size_t i = 0; i < n && f->done; i++) {
        const char *name = lm_safetensors_at(f->st, i)->name;
        if (f->done[i] || lm_golden__is_input(f, name))
            continue;
        lm_golden__failf(f, name, "-", "not computed: %s",
                         f->ckpt_problem[0] ? f->ckpt_problem
                                            : "no check of loom golden produces this tensor");
    }
    cJSON *docs[] = { f->config, f->params, f->prompts, f->cases, f->tensors, f->tolerances };
    for (size_t i = 0; i < LM_COUNTOF(docs); i++)
        cJSON_Delete(docs[i]);
    lm_free(f->done);
    lm_safetensors_close(f->st);
    memset(f, 0, sizeof(*f));
}

const cJSON *lm_golden__param_item(const lm_golden_file *f, const char *path)
{
    const cJSON *at = f->params;
    char key[128];
    while (at && *path) {
        size_t len = strcspn(path, ".");
        if (len >= sizeof(key))
            return NULL;
        memcpy(key, path, len);
        key[len] = 0;
        at = cJSON_GetObjectItemCaseSensitive(at, key);
        path += len + (path[len] == '.');
    }
    return at;
}

uint64_t lm_golden__seed(double v)
{
    if (v >= 0 && v < 18446744073709551616.0)
        return (uint64_t)v;
    if (v < 0 && v >= -9223372036854775808.0)
        return (uint64_t)(int64_t)v;
    return 0;
}

bool lm_golden__param(const lm_golden_file *f, const char *path, double *out)
{
    const cJSON *v = lm_golden__param_item(f, path);
    if (!cJSON_IsNumber(v))
        return false;
    *out = v->valuedouble;
    return true;
}

/* ---- golden tensors ---- */

lm_status lm_golden__tensor(const lm_golden_file *f, const char *name, lm_tensor **out,
                            lm_error *err)
{
    *out = NULL;
    if (!lm_safetensors_find(f->st, name))
        return lm_errorf(err, LM_ENOTFOUND, "golden_missing", "%s: no tensor \"%s\"", f->name,
                         name);
    return lm_safetensors_tensor(out, f->st, name, err);
}

lm_status lm_golden__ids(const lm_golden_file *f, const char *name, int32_t **ids, size_t *n,
                         lm_error *err)
{
    lm_tensor *t = NULL;
    *ids = NULL;
    *n = 0;
    lm_status st = lm_golden__tensor(f, name, &t, err);
    if (st != LM_OK)
        return st;
    if (t->dtype != LM_DTYPE_I64 && t->dtype != LM_DTYPE_I32) {
        lm_tensor_free(t);
        return lm_errorf(err, LM_ETYPE, "golden_dtype", "%s: \"%s\" is %s, token ids must be I64",
                         f->name, name, lm_dtype_name(t->dtype));
    }
    size_t count = (size_t)lm_tensor_numel(t);
    *ids = lm_malloc((count + 1) * sizeof(int32_t));
    if (!*ids) {
        lm_tensor_free(t);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "%s: no memory for ids", f->name);
    }
    const void *p = lm_tensor_data(t);
    for (size_t i = 0; i < count; i++)
        (*ids)[i] =
            t->dtype == LM_DTYPE_I64 ? (int32_t)((const int64_t *)p)[i] : ((const int32_t *)p)[i];
    *n = count;
    lm_tensor_free(t);
    return LM_OK;
}

/* ---- tolerances ---- */

typedef enum { TOL_CLOSE, TOL_MAX_ABS, TOL_BIT_EXACT } tol_kind;

typedef struct {
    tol_kind kind;
    double atol, rtol; /* CLOSE, or BIT_EXACT's fallback (atol < 0: none) */
    double max_abs;    /* MAX_ABS */
} tol;

static bool num_of(const cJSON *obj, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        return false;
    *out = v->valuedouble;
    return true;
}

/* The group's tolerance from the file's `tolerances`; false with why set when absent. */
static bool tol_of(const lm_golden_file *f, const char *group, tol *t, char *why, size_t size)
{
    memset(t, 0, sizeof(*t));
    if (strcmp(group, "exact") == 0)
        return true;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(f->tolerances, group);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "bit_exact"))) {
        const cJSON *fb = cJSON_GetObjectItemCaseSensitive(g, "fallback");
        t->kind = TOL_BIT_EXACT;
        if (!num_of(fb, "atol", &t->atol) || !num_of(fb, "rtol", &t->rtol))
            t->atol = -1;
        return true;
    }
    if (num_of(g, "max_abs_diff", &t->max_abs)) {
        t->kind = TOL_MAX_ABS;
        return true;
    }
    if (num_of(g, "atol", &t->atol) && num_of(g, "rtol", &t->rtol))
        return true;
    snprintf(why, size, "the file's \"tolerances\" metadata has no usable group \"%s\"", group);
    return false;
}

/* ---- comparison ---- */

static bool same_shape(const lm_tensor *a, const lm_tensor *b)
{
    int64_t sa[LM_MAX_DIMS], sb[LM_MAX_DIMS];
    int na = 0, nb = 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != 1)
            sa[na++] = a->shape[d];
    for (int d = 0; d < b->ndim; d++)
        if (b->shape[d] != 1)
            sb[nb++] = b->shape[d];
    return na == nb && memcmp(sa, sb, (size_t)na * sizeof(int64_t)) == 0;
}

typedef struct {
    double max_abs, max_rel;
    int64_t bad, first_bad;
    bool bits_equal;
} stats;

static void compare_values(const float *c, const float *g, int64_t n, const tol *t, stats *s)
{
    memset(s, 0, sizeof(*s));
    s->first_bad = -1;
    s->bits_equal = memcmp(c, g, (size_t)n * sizeof(float)) == 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)c[i] - (double)g[i]), mag = fabs((double)g[i]);
        if (d != d)
            d = (double)INFINITY;
        s->max_abs = LM_MAX(s->max_abs, d);
        if (mag >= 1e-3)
            s->max_rel = LM_MAX(s->max_rel, d / mag);
        double allowed = t->kind == TOL_MAX_ABS ? t->max_abs : t->atol + t->rtol * mag;
        bool ok = t->kind == TOL_BIT_EXACT && t->atol < 0 ? d == 0 : d <= allowed;
        if (!ok && s->bad++ == 0)
            s->first_bad = i;
    }
}

static void describe_tol(const tol *t, char *buf, size_t size)
{
    if (t->kind == TOL_MAX_ABS)
        snprintf(buf, size, "max_abs_diff %g", t->max_abs);
    else
        snprintf(buf, size, "atol %g + rtol %g*|g|", t->atol, t->rtol);
}

/* Compares two f32 host tensors of one size and reports the line. */
static void judge(lm_golden_file *f, const char *name, const char *group, const tol *t,
                  const float *c, const float *g, int64_t n)
{
    stats s;
    char why[400] = "", tb[96];
    compare_values(c, g, n, t, &s);
    bool pass = s.bad == 0;
    if (t->kind == TOL_BIT_EXACT && s.bits_equal)
        snprintf(why, sizeof(why), "(bit-exact)");
    else if (t->kind == TOL_BIT_EXACT && pass)
        snprintf(why, sizeof(why), "(not bit-exact; within the fallback)");
    if (!pass) {
        describe_tol(t, tb, sizeof(tb));
        snprintf(why, sizeof(why),
                 "%lld of %lld elements beyond %s; first [%lld] %.9g, golden %.9g",
                 (long long)s.bad, (long long)n, tb, (long long)s.first_bad, (double)c[s.first_bad],
                 (double)g[s.first_bad]);
    }
    mark(f, name);
    lm_golden__report(f->run, name, group, s.max_abs, s.max_rel, pass, why);
}

void lm_golden__check(lm_golden_file *f, const char *name, const char *group, const lm_tensor *got)
{
    lm_error err;
    lm_tensor *want = NULL, *c = NULL, *g = NULL;
    tol t;
    char why[256];
    if (!lm_golden__has(f, name))
        return;
    if (!tol_of(f, group, &t, why, sizeof(why))) {
        lm_golden__failf(f, name, group, "%s", why);
        return;
    }
    if (!got) {
        lm_golden__failf(f, name, group, "Loom produced no such result");
        return;
    }
    if (lm_golden__tensor(f, name, &want, &err) != LM_OK ||
        lm_tensor_to_f32_host(&g, want, &err) != LM_OK ||
        lm_tensor_to_f32_host(&c, got, &err) != LM_OK) {
        lm_golden__fail(f, name, group, &err);
    } else if (!same_shape(c, g)) {
        char dc[96], dg[96];
        lm_tensor_describe(got, dc, sizeof(dc));
        lm_tensor_describe(want, dg, sizeof(dg));
        lm_golden__failf(f, name, group, "Loom's result is %s, the golden %s", dc, dg);
    } else {
        judge(f, name, group, &t, lm_tensor_data(c), lm_tensor_data(g), lm_tensor_numel(g));
    }
    lm_tensor_free(c);
    lm_tensor_free(g);
    lm_tensor_free(want);
}

void lm_golden__check_u8(lm_golden_file *f, const char *name, const char *group,
                         const lm_tensor *image)
{
    lm_error err;
    lm_tensor *comfy = NULL, *u8 = NULL;
    if (!lm_golden__has(f, name))
        return;
    if (!image) {
        lm_golden__failf(f, name, group, "Loom produced no image");
        return;
    }
    /* ComfyUI IMAGE [B, H, W, 3] = clamp((x+1)/2, 0, 1); the reference truncates 255*v. */
    if (lm_vae_image_to_comfy(image, &comfy, &err) != LM_OK) {
        lm_golden__fail(f, name, group, &err);
        return;
    }
    lm_tensor *host = NULL;
    if (lm_tensor_to_f32_host(&host, comfy, &err) == LM_OK) {
        float *v = lm_tensor_data(host);
        for (int64_t i = 0; i < lm_tensor_numel(host); i++) /* NaN stays NaN: it fails */
            v[i] = v[i] >= 0 && v[i] <= 1 ? (float)(uint8_t)(255.0f * v[i]) : v[i];
        u8 = host;
    } else {
        lm_golden__fail(f, name, group, &err);
    }
    lm_tensor_free(comfy);
    if (u8)
        lm_golden__check(f, name, group, u8);
    lm_tensor_free(u8);
}

/* ---- checkpoints and models ---- */

static lm_golden_ckpt *ckpt_open(lm_golden_run *run, const char *path, char *why, size_t size)
{
    lm_error err;
    for (int i = 0; i < run->n_ckpt; i++)
        if (strcmp(run->ckpt[i]->path, path) == 0)
            return run->ckpt[i];
    if (run->n_ckpt == LM_GOLDEN_MAX_CKPT) {
        snprintf(why, size, "more than %d checkpoints in one folder", LM_GOLDEN_MAX_CKPT);
        return NULL;
    }
    lm_golden_ckpt *c = lm_calloc(1, sizeof(*c));
    if (!c) {
        snprintf(why, size, "out of memory");
        return NULL;
    }
    lm_strlcpy(c->path, path, sizeof(c->path));
    if (lm_safetensors_open(&c->st, path, &err) != LM_OK) {
        lm_error_format(&err, why, size);
        lm_free(c);
        return NULL;
    }
    lm_sd3_detect(c->st, c->found, c->w);
    run->ckpt[run->n_ckpt++] = c;
    return c;
}

bool lm_golden__file_ckpt(lm_golden_file *f)
{
    lm_error err;
    char path[LM_GOLDEN_PATH_MAX];
    struct stat sb;
    const char *name =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->config, "checkpoint"));
    const char *sha =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->config, "checkpoint_sha256"));
    char *why = f->ckpt_problem;
    size_t size = sizeof(f->ckpt_problem);
    if (!name || !name[0]) {
        snprintf(why, size, "the file's config names no checkpoint");
        return false;
    }
    if (!lm_path_join(path, sizeof(path), f->run->dir, name) || stat(path, &sb) != 0) {
        snprintf(why, size, "checkpoint %.200s (named by config.checkpoint) is not in %.200s", name,
                 f->run->dir);
        return false;
    }
    f->ckpt = ckpt_open(f->run, path, why, size);
    if (!f->ckpt)
        return false;
    if (sha && f->run->verify && !f->ckpt->sha256[0] &&
        lm_golden__sha256_file(path, f->ckpt->sha256, &err) != LM_OK) {
        lm_error_format(&err, why, size);
        f->ckpt = NULL;
        return false;
    }
    if (sha && f->run->verify && strcmp(sha, f->ckpt->sha256) != 0) {
        snprintf(why, size, "%s: sha256 %.16s… but config.checkpoint_sha256 %.16s…", name,
                 f->ckpt->sha256, sha);
        f->ckpt = NULL;
        return false;
    }
    return true;
}

void lm_golden__run_fini(lm_golden_run *run)
{
    for (int i = 0; i < run->n_ckpt; i++) {
        lm_golden_ckpt *c = run->ckpt[i];
        lm_clip_free(c->clip_l);
        lm_clip_free(c->clip_g);
        lm_t5_free(c->t5);
        lm_mmdit_free(c->mmdit);
        lm_vae_free(c->vae);
        lm_safetensors_close(c->st);
        lm_free(c);
    }
    run->n_ckpt = 0;
    for (size_t i = 0; i < run->n_names; i++)
        lm_free(run->names[i]);
    lm_free(run->names);
    run->names = NULL;
    run->n_names = 0;
    lm_clip_tokenizer_free(run->clip_tok);
    lm_t5_tokenizer_free(run->t5_tok);
    run->clip_tok = NULL;
    run->t5_tok = NULL;
}

/* The checkpoint's component c, checked present and loaded once (or its remembered error). */
static lm_status component(lm_golden_file *f, lm_sd3_component c, lm_golden_ckpt **out,
                           lm_error *err)
{
    lm_golden_ckpt *k = f->ckpt;
    *out = NULL;
    if (!k)
        return lm_errorf(err, LM_ENOTFOUND, "no_checkpoint", "%s",
                         f->ckpt_problem[0] ? f->ckpt_problem : "no checkpoint");
    if (!k->found[c])
        return lm_errorf(err, LM_ENOTFOUND, "no_component", "%s holds no %s", k->path,
                         lm_sd3_component_name(c));
    if (k->tried[c] && k->load_err[c].code != LM_OK) {
        *err = k->load_err[c];
        return err->code;
    }
    *out = k;
    return LM_OK;
}

/* Remembers the outcome of component c's load. */
static lm_status loaded(lm_golden_ckpt *k, lm_sd3_component c, lm_status st, const lm_error *err)
{
    k->tried[c] = true;
    if (st != LM_OK)
        k->load_err[c] = *err;
    else
        k->load_err[c].code = LM_OK;
    return st;
}

lm_status lm_golden__clip(lm_golden_file *f, lm_clip_kind kind, const lm_clip **out, lm_error *err)
{
    lm_sd3_component c = kind == LM_CLIP_KIND_L ? LM_SD3_CLIP_L : LM_SD3_CLIP_G;
    lm_golden_ckpt *k;
    *out = NULL;
    lm_status st = component(f, c, &k, err);
    if (st != LM_OK)
        return st;
    lm_clip **slot = kind == LM_CLIP_KIND_L ? &k->clip_l : &k->clip_g;
    if (!k->tried[c])
        st = loaded(k, c, lm_clip_load(slot, &k->w[c], kind, err), err);
    *out = *slot;
    return st;
}

lm_status lm_golden__t5(lm_golden_file *f, const lm_t5 **out, lm_error *err)
{
    lm_golden_ckpt *k;
    *out = NULL;
    lm_status st = component(f, LM_SD3_T5XXL, &k, err);
    if (st == LM_OK && !k->tried[LM_SD3_T5XXL])
        st = loaded(k, LM_SD3_T5XXL, lm_t5_load(&k->t5, &k->w[LM_SD3_T5XXL], err), err);
    *out = st == LM_OK ? k->t5 : NULL;
    return st;
}

lm_status lm_golden__mmdit(lm_golden_file *f, const lm_mmdit **out, lm_error *err)
{
    lm_golden_ckpt *k;
    *out = NULL;
    lm_status st = component(f, LM_SD3_MMDIT, &k, err);
    if (st == LM_OK && !k->tried[LM_SD3_MMDIT])
        st = loaded(k, LM_SD3_MMDIT, lm_mmdit_load(&k->mmdit, &k->w[LM_SD3_MMDIT], err), err);
    *out = st == LM_OK ? k->mmdit : NULL;
    return st;
}

lm_status lm_golden__vae(lm_golden_file *f, const lm_vae **out, lm_error *err)
{
    lm_golden_ckpt *k;
    *out = NULL;
    lm_status st = component(f, LM_SD3_VAE, &k, err);
    if (st == LM_OK && !k->tried[LM_SD3_VAE])
        st = loaded(k, LM_SD3_VAE, lm_vae_load(&k->vae, &k->w[LM_SD3_VAE], err), err);
    *out = st == LM_OK ? k->vae : NULL;
    return st;
}

bool lm_golden__tokenizers(lm_golden_run *run, lm_error *err)
{
    char path[LM_GOLDEN_PATH_MAX];
    if (!run->tok_tried) {
        run->tok_tried = true;
        lm_status st = LM_OK;
        if (!lm_path_join(path, sizeof(path), run->tokenizers, "clip"))
            st = lm_errorf(&run->tok_err, LM_EINVAL, "path", "tokenizer path too long");
        if (st == LM_OK)
            st = lm_clip_tokenizer_load(&run->clip_tok, path, &run->tok_err);
        if (st == LM_OK && !lm_path_join(path, sizeof(path), run->tokenizers, "t5"))
            st = lm_errorf(&run->tok_err, LM_EINVAL, "path", "tokenizer path too long");
        if (st == LM_OK)
            st = lm_t5_tokenizer_load(&run->t5_tok, path, &run->tok_err);
        if (st != LM_OK)
            lm_error_hint(&run->tok_err, "give the tokenizer folder with --tokenizers DIR");
    }
    if (run->clip_tok && run->t5_tok)
        return true;
    *err = run->tok_err;
    return false;
}
