/* tests/sd3/test_text.c — CLIP-L, CLIP-G, T5 and SD3's conditioning against the reference
 * implementation's numbers (../shared/golden/sd3m_text and sd35m_text), plus what the
 * goldens do not cover: split files, several chunks, prompt weights, missing encoders and
 * the load errors of damaged files.
 *
 * The golden cases are found from the golden file itself: every "<case>.<encoder>.ids"
 * tensor is fed to that encoder and every expected tensor of the case is compared with the
 * file's "text" tolerance (|c - g| <= atol + rtol*|g|); a case with "<case>.context" also
 * runs the conditioner on its three id sets. At the end every tensor not described as an
 * INPUT must have been compared, so a golden set with more outputs fails loudly. */
#include "core/base/alloc.h"
#include "core/io/safetensors.h"
#include "core/tensor/ops.h"
#include "nodes/sd3/clip.h"
#include "nodes/sd3/conditioner.h"
#include "nodes/sd3/t5.h"
#include "nodes/sd3/weights.h"
#include "tests/sd3/sd3_fixture.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHECKED 128

typedef struct {
    lm_safetensors *golden, *ckpt;
    cJSON *config, *tensors;
    gold_tol tol; /* tolerances.text */
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_clip *clip_l, *clip_g;
    lm_t5 *t5;
    const char *checked[MAX_CHECKED];
    int n_checked;
} golden_set;

/* ---- golden file helpers ---- */

static double json_num(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static bool is_input(const golden_set *s, const char *name)
{
    return strncmp(json_str(s->tensors, name), "INPUT", 5) == 0;
}

/* Golden tensor `name`, or NULL (the test goes on) when the file has none. */
static lm_tensor *golden_tensor(golden_set *s, const char *name)
{
    return lm_safetensors_find(s->golden, name) ? gold_tensor(s->golden, name) : NULL;
}

/* The three id sets "<case>.clip_l.ids", "<case>.clip_g.ids", "<case>.t5xxl.ids". */
typedef struct {
    lm_sd3_text_ids in[3];
    int32_t *ids[3];
} case_ids;

static void case_ids_load(golden_set *s, const char *cas, case_ids *c)
{
    const char *encs[3] = { "clip_l", "clip_g", "t5xxl" };
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < 3; i++) {
        char name[160];
        snprintf(name, sizeof(name), "%s.%s.ids", cas, encs[i]);
        c->ids[i] = gold_ids(s->golden, name, &c->in[i].n);
        c->in[i].ids = c->ids[i];
    }
}

static void case_ids_free(case_ids *c)
{
    for (int i = 0; i < 3; i++)
        free(c->ids[i]);
}

static void mark_checked(golden_set *s, const char *name)
{
    const lm_safetensors_entry *e = lm_safetensors_find(s->golden, name);
    if (e && s->n_checked < MAX_CHECKED)
        s->checked[s->n_checked++] = e->name; /* borrowed from the open set */
}

/* Compares got with the golden tensor g under the file's tolerance, at g's shape. */
static void compare_to(golden_set *s, const char *what, const lm_tensor *got, const lm_tensor *g)
{
    if (gold_same_shape(what, got, g))
        gold_compare(what, got, g, s->tol);
}

/* Compares got with golden tensor `name` (when the file has it). */
static void compare(golden_set *s, const char *name, const lm_tensor *got)
{
    lm_tensor *g = golden_tensor(s, name);
    if (!g)
        return;
    mark_checked(s, name);
    compare_to(s, name, got, g);
    lm_tensor_free(g);
}

/* Compares got with rows [r0, r1) (dim 1) of golden tensor `name`. */
static void compare_rows(golden_set *s, const char *name, const lm_tensor *got, int64_t r0,
                         int64_t r1)
{
    lm_error err;
    lm_tensor *g = golden_tensor(s, name), *rows = NULL;
    char what[200];
    snprintf(what, sizeof(what), "%s rows %lld..%lld", name, (long long)r0, (long long)r1 - 1);
    if (!g)
        test__fail(__FILE__, __LINE__, "golden tensor %s is missing", name);
    else if (lm_tensor_view_slice(&rows, g, 1, r0, r1, &err) == LM_OK)
        compare_to(s, what, got, rows);
    else
        test__fail_err(__FILE__, __LINE__, what, err.code, &err);
    lm_tensor_free(rows);
    lm_tensor_free(g);
}

static void load_encoders(golden_set *s, lm_safetensors *st)
{
    lm_error err;
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_detect(st, found, s->w);
    CHECK(found[LM_SD3_CLIP_L] && found[LM_SD3_CLIP_G] && found[LM_SD3_T5XXL]);
    CHECK_OK(lm_clip_load(&s->clip_l, &s->w[LM_SD3_CLIP_L], LM_CLIP_KIND_L, &err), &err);
    CHECK_OK(lm_clip_load(&s->clip_g, &s->w[LM_SD3_CLIP_G], LM_CLIP_KIND_G, &err), &err);
    CHECK_OK(lm_t5_load(&s->t5, &s->w[LM_SD3_T5XXL], &err), &err);
}

static void set_close(golden_set *s)
{
    lm_clip_free(s->clip_l);
    lm_clip_free(s->clip_g);
    lm_t5_free(s->t5);
    cJSON_Delete(s->config);
    cJSON_Delete(s->tensors);
    lm_safetensors_close(s->ckpt);
    lm_safetensors_close(s->golden);
    memset(s, 0, sizeof(*s));
}

/* Opens a golden file, the checkpoint its config names, and the three encoders; on failure
 * (the test failed, or the shared data is missing) closes what it opened and returns false. */
static bool set_open(golden_set *s, const char *rel)
{
    memset(s, 0, sizeof(*s));
    s->golden = gold_open(rel);
    if (s->golden) {
        s->config = gold_metadata(s->golden, "config");
        s->tensors = gold_metadata(s->golden, "tensors");
        s->tol = gold_tolerance(s->golden, "text");
        char ck[256];
        gold_checkpoint(s->golden, ck, sizeof(ck));
        if (s->config && s->tensors && s->tol.atol >= 0 && s->tol.rtol >= 0)
            s->ckpt = gold_open(ck);
    }
    if (s->ckpt)
        load_encoders(s, s->ckpt);
    if (!(s->clip_l && s->clip_g && s->t5))
        set_close(s);
    return s->clip_l && s->clip_g && s->t5;
}

/* ---- golden cases ---- */

static void clip_case(golden_set *s, const char *cas, const char *enc)
{
    lm_error err;
    char name[160];
    size_t n;
    snprintf(name, sizeof(name), "%s.%s.ids", cas, enc);
    int32_t *ids = gold_ids(s->golden, name, &n);
    lm_clip *clip = strcmp(enc, "clip_l") == 0 ? s->clip_l : s->clip_g;
    lm_clip_hidden h;
    lm_tensor *pen = NULL, *pooled = NULL;
    unsigned want = 0x1f;
    if (ids && clip && lm_clip_forward(clip, ids, n, want, &h, &err) == LM_OK) {
        const char *what[5] = { "embeddings", "penultimate", "last_hidden_ln", "pooled_raw",
                                "pooled_projected" };
        const lm_tensor *got[5] = { h.embeddings, h.penultimate, h.last_hidden_ln, h.pooled_raw,
                                    h.pooled_projected };
        for (int i = 0; i < 5; i++) {
            snprintf(name, sizeof(name), "%s.%s.%s", cas, enc, what[i]);
            compare(s, name, got[i]);
        }
        lm_clip_hidden_fini(&h);
    } else if (ids && clip) {
        test__fail_err(__FILE__, __LINE__, "lm_clip_forward", err.code, &err);
    }
    /* SD3's path: whole-chunk encode, pooled as SD3 uses it. */
    if (ids && clip) {
        CHECK_OK(lm_clip_encode(clip, ids, n, NULL, &pen, &pooled, &err), &err);
        snprintf(name, sizeof(name), "%s.%s.penultimate", cas, enc);
        compare(s, name, pen);
        snprintf(name, sizeof(name), "%s.%s.pooled", cas, enc);
        compare(s, name, pooled);
    }
    lm_tensor_free(pen);
    lm_tensor_free(pooled);
    free(ids);
}

static void t5_case(golden_set *s, const char *cas)
{
    lm_error err;
    char name[160];
    size_t n;
    snprintf(name, sizeof(name), "%s.t5xxl.ids", cas);
    int32_t *ids = gold_ids(s->golden, name, &n);
    lm_tensor *out = NULL, *emb = NULL, *bias = NULL;
    if (ids && s->t5) {
        CHECK_OK(lm_t5_encode(s->t5, ids, n, NULL, &out, &err), &err);
        CHECK_OK(lm_t5_embed(s->t5, ids, n, &emb, &err), &err);
        CHECK_OK(lm_t5_position_bias(s->t5, (int64_t)n, &bias, &err), &err);
        snprintf(name, sizeof(name), "%s.t5xxl.last_hidden", cas);
        compare(s, name, out);
        snprintf(name, sizeof(name), "%s.t5xxl.embeddings", cas);
        compare(s, name, emb);
        snprintf(name, sizeof(name), "%s.t5xxl.position_bias", cas);
        compare(s, name, bias);
    }
    lm_tensor_free(out);
    lm_tensor_free(emb);
    lm_tensor_free(bias);
    free(ids);
}

/* "<case>.context" / "<case>.pooled" from the case's three id sets. */
static void condition_case(golden_set *s, const char *cas)
{
    lm_error err;
    case_ids c;
    case_ids_load(s, cas, &c);
    lm_tensor *ctx = NULL, *y = NULL;
    if (c.ids[0] && c.ids[1] && c.ids[2]) {
        CHECK_OK(lm_sd3_condition(s->clip_l, s->clip_g, s->t5, &c.in[0], &c.in[1], &c.in[2], NULL,
                                  &ctx, &y, &err),
                 &err);
        char name[160];
        snprintf(name, sizeof(name), "%s.context", cas);
        compare(s, name, ctx);
        snprintf(name, sizeof(name), "%s.pooled", cas);
        compare(s, name, y);
    }
    lm_tensor_free(ctx);
    lm_tensor_free(y);
    case_ids_free(&c);
}

/* "t5.buckets_<n>": the bucket table, exactly. */
static void buckets_case(golden_set *s, const char *name)
{
    lm_error err;
    lm_tensor *g = golden_tensor(s, name), *b = NULL;
    mark_checked(s, name);
    if (!g || g->ndim != 2) {
        test__fail(__FILE__, __LINE__, "%s: not a 2-D table", name);
        lm_tensor_free(g);
        return;
    }
    const lm_t5_config *c = lm_t5_config_of(s->t5);
    CHECK_OK(lm_t5_buckets(&b, lm_backend_cpu(), g->shape[0], g->shape[1], c->num_buckets,
                           c->max_distance, true, &err),
             &err);
    bool same = b && gold_shapes_equal(b, g) &&
                memcmp(lm_tensor_data(b), lm_tensor_data(g), lm_tensor_nbytes(g)) == 0;
    test_note("%s: %s", name, same ? "identical" : "DIFFERENT");
    CHECK(same);
    lm_tensor_free(b);
    lm_tensor_free(g);
}

/* Splits "<case>.<enc>.ids" into case and encoder; false for other names. */
static bool ids_name(const char *name, char *cas, char *enc, size_t size)
{
    size_t len = strlen(name);
    if (len < 5 || strcmp(name + len - 4, ".ids") != 0)
        return false;
    const char *dot = memchr(name, '.', len - 4);
    if (!dot || (size_t)(dot - name) >= size || len - 4 - (size_t)(dot - name) > size)
        return false;
    snprintf(cas, size, "%.*s", (int)(dot - name), name);
    snprintf(enc, size, "%.*s", (int)(len - 4 - (size_t)(dot - name) - 1), dot + 1);
    return true;
}

static void run_cases(golden_set *s)
{
    size_t count = lm_safetensors_count(s->golden);
    for (size_t i = 0; i < count; i++) {
        const char *name = lm_safetensors_at(s->golden, i)->name;
        char cas[64], enc[64], ctx[96];
        if (strncmp(name, "t5.buckets_", 11) == 0)
            buckets_case(s, name);
        if (!ids_name(name, cas, enc, sizeof(cas)))
            continue;
        if (strcmp(enc, "clip_l") == 0 || strcmp(enc, "clip_g") == 0)
            clip_case(s, cas, enc);
        else if (strcmp(enc, "t5xxl") == 0)
            t5_case(s, cas);
        else
            test__fail(__FILE__, __LINE__, "%s: unknown encoder \"%s\"", name, enc);
        snprintf(ctx, sizeof(ctx), "%s.context", cas);
        if (strcmp(enc, "t5xxl") == 0 && lm_safetensors_find(s->golden, ctx))
            condition_case(s, cas);
    }
}

static void check_coverage(golden_set *s)
{
    size_t count = lm_safetensors_count(s->golden);
    int outputs = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = lm_safetensors_at(s->golden, i)->name;
        if (is_input(s, name))
            continue;
        outputs++;
        bool seen = false;
        for (int k = 0; k < s->n_checked && !seen; k++)
            seen = strcmp(s->checked[k], name) == 0;
        if (!seen)
            test__fail(__FILE__, __LINE__, "golden tensor %s was not compared", name);
    }
    test_note("%d expected tensors", outputs);
}

/* The inferred configs against the golden's own description of the models. */
static void check_config(golden_set *s)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(s->config, "clip_l");
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(s->config, "clip_g");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s->config, "t5");
    const cJSON *js[2] = { l, g };
    const lm_clip *cs[2] = { s->clip_l, s->clip_g };
    for (int i = 0; i < 2; i++) {
        const lm_clip_config *c = lm_clip_config_of(cs[i]);
        CHECK_INT(c->width, json_num(js[i], "width"));
        CHECK_INT(c->heads, json_num(js[i], "heads"));
        CHECK_INT(c->layers, json_num(js[i], "layers"));
        CHECK_INT(c->ff, json_num(js[i], "ff"));
        CHECK_INT(c->vocab, json_num(js[i], "vocab"));
        CHECK_INT(c->positions, json_num(js[i], "positions"));
        CHECK_STR(c->act == LM_CLIP_ACT_GELU ? "gelu" : "quick_gelu", json_str(js[i], "act"));
        CHECK_NEAR(c->eps, json_num(js[i], "layer_norm_eps"), 1e-12);
    }
    const lm_t5_config *c = lm_t5_config_of(s->t5);
    CHECK_INT(c->d_model, json_num(t, "d_model"));
    CHECK_INT(c->heads, json_num(t, "heads"));
    CHECK_INT(c->layers, json_num(t, "layers"));
    CHECK_INT(c->d_ff, json_num(t, "d_ff"));
    CHECK_INT(c->d_kv, json_num(t, "d_kv"));
    CHECK_INT(c->vocab, json_num(t, "vocab"));
    CHECK_INT(c->num_buckets, json_num(t, "relative_attention_num_buckets"));
    CHECK_INT(c->max_distance, json_num(t, "relative_attention_max_distance"));
    CHECK_NEAR(c->eps, json_num(t, "eps"), 1e-12);
}

static void golden_run(const char *rel)
{
    golden_set s;
    if (set_open(&s, rel)) {
        check_config(&s);
        run_cases(&s);
        check_coverage(&s);
    }
    set_close(&s);
}

void test_sd3_text__golden_sd3m(void)
{
    golden_run("golden/sd3m_text.safetensors");
}

void test_sd3_text__golden_sd35m(void)
{
    golden_run("golden/sd35m_text.safetensors");
}

/* ---- helpers for the tests beyond the goldens ---- */

/* An f32 host copy of t (caller frees with lm_tensor_free); NULL fails the test. */
static lm_tensor *host(const lm_tensor *t)
{
    lm_error err;
    lm_tensor *h = NULL;
    if (!t || lm_tensor_to_f32_host(&h, t, &err) != LM_OK) {
        test__fail(__FILE__, __LINE__, "no host copy of a result");
        return NULL;
    }
    return h;
}

/* True when a and b have the same shape and bits. */
static bool identical(const lm_tensor *a, const lm_tensor *b)
{
    if (!a || !b || !gold_shapes_equal(a, b))
        return false;
    lm_tensor *ha = host(a), *hb = host(b);
    bool same =
        ha && hb && memcmp(lm_tensor_data(ha), lm_tensor_data(hb), lm_tensor_nbytes(ha)) == 0;
    lm_tensor_free(ha);
    lm_tensor_free(hb);
    return same;
}

/* Compares a slice [a, b) along dim of got with a golden tensor. */
static void compare_slice(golden_set *s, const char *name, const lm_tensor *got, int dim, int64_t a,
                          int64_t b)
{
    lm_error err;
    lm_tensor *v = NULL;
    CHECK_OK(lm_tensor_view_slice(&v, got, dim, a, b, &err), &err);
    compare(s, name, v);
    lm_tensor_free(v);
}

/* Max |x| over rows [r0, r1) x columns [c0, c1) of a [1, R, C] or [R, C] tensor. */
static double max_abs_block(const lm_tensor *t, int64_t r0, int64_t r1, int64_t c0, int64_t c1)
{
    lm_tensor *h = host(t);
    double m = 0;
    const float *p = h ? lm_tensor_data(h) : NULL;
    for (int64_t r = r0; p && r < r1; r++)
        for (int64_t c = c0; c < c1; c++)
            m = fmax(m, fabs((double)p[r * t->shape[t->ndim - 1] + c]));
    lm_tensor_free(h);
    return m;
}

static int32_t *concat_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    int32_t *ids = malloc((na + nb) * sizeof(int32_t) + 1);
    memcpy(ids, a, na * sizeof(int32_t));
    memcpy(ids + na, b, nb * sizeof(int32_t));
    return ids;
}

/* ---- split files ---- */

/* The name of the T5 file in dir ("t5*.safetensors") into buf; false when none. */
static bool find_t5_file(const char *dir, char *buf, size_t size)
{
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *de = d ? readdir(d) : NULL; de && !found; de = readdir(d)) {
        found = strncmp(de->d_name, "t5", 2) == 0 && strstr(de->d_name, ".safetensors");
        if (found)
            snprintf(buf, size, "%s", de->d_name);
    }
    if (d)
        closedir(d);
    return found;
}

/* Opens golden/split/<model>/<file>, or the file there holding a T5 when file is NULL. */
static lm_safetensors *open_split(golden_set *s, const char *file)
{
    lm_error err;
    char path[512], dirrel[200], t5name[256];
    snprintf(dirrel, sizeof(dirrel), "golden/split/%s", json_str(s->config, "model"));
    const char *dir = test_shared(dirrel);
    if (!dir)
        return NULL;
    if (!file && !find_t5_file(dir, t5name, sizeof(t5name))) {
        test__fail(__FILE__, __LINE__, "%s: no t5*.safetensors file", dir);
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, file ? file : t5name);
    lm_safetensors *st = NULL;
    if (lm_safetensors_open(&st, path, &err) != LM_OK)
        test__fail_err(__FILE__, __LINE__, path, err.code, &err);
    return st;
}

static void split_compare_case(golden_set *s, const golden_set *sp, const char *cas)
{
    lm_error err;
    case_ids c;
    case_ids_load(s, cas, &c);
    const lm_sd3_text_ids *in = c.in;
    lm_tensor *c1 = NULL, *y1 = NULL, *c2 = NULL, *y2 = NULL;
    CHECK_OK(
        lm_sd3_condition(s->clip_l, s->clip_g, s->t5, &in[0], &in[1], &in[2], NULL, &c1, &y1, &err),
        &err);
    CHECK_OK(lm_sd3_condition(sp->clip_l, sp->clip_g, sp->t5, &in[0], &in[1], &in[2], NULL, &c2,
                              &y2, &err),
             &err);
    bool same = identical(c1, c2) && identical(y1, y2);
    test_note("%s: split files %s the all-in-one file", cas, same ? "match" : "DIFFER from");
    CHECK(same);
    lm_tensor *tensors[4] = { c1, y1, c2, y2 };
    for (int i = 0; i < 4; i++)
        lm_tensor_free(tensors[i]);
    case_ids_free(&c);
}

static void split_run(const char *rel)
{
    golden_set s, sp;
    lm_error err;
    memset(&sp, 0, sizeof(sp));
    lm_safetensors *files[3] = { NULL, NULL, NULL };
    if (set_open(&s, rel)) {
        files[0] = open_split(&s, "clip_l.safetensors");
        files[1] = open_split(&s, "clip_g.safetensors");
        files[2] = open_split(&s, NULL);
    }
    bool found[LM_SD3_COMPONENT_COUNT];
    for (int i = 0; i < 3 && files[0] && files[1] && files[2]; i++) {
        lm_sd3_detect(files[i], found, sp.w);
        lm_sd3_component c = i == 2 ? LM_SD3_T5XXL : LM_SD3_CLIP_L; /* standalone CLIP = L */
        CHECK(found[c] && sp.w[c].prefix[0] == '\0');
        if (i == 0)
            CHECK_OK(lm_clip_load(&sp.clip_l, &sp.w[c], LM_CLIP_KIND_L, &err), &err);
        if (i == 1) /* the caller knows which CLIP a standalone file is */
            CHECK_OK(lm_clip_load(&sp.clip_g, &sp.w[c], LM_CLIP_KIND_G, &err), &err);
        if (i == 2)
            CHECK_OK(lm_t5_load(&sp.t5, &sp.w[c], &err), &err);
    }
    for (int i = 0; i < 3; i++)
        lm_safetensors_close(files[i]); /* the models keep their tensors' mappings alive */
    if (sp.clip_l && sp.clip_g && sp.t5) {
        CHECK_INT(lm_clip_config_of(sp.clip_g)->heads, lm_clip_config_of(s.clip_g)->heads);
        split_compare_case(&s, &sp, "positive");
        split_compare_case(&s, &sp, "negative_empty");
    }
    lm_clip_free(sp.clip_l);
    lm_clip_free(sp.clip_g);
    lm_t5_free(sp.t5);
    set_close(&s);
}

void test_sd3_text__split_files_sd3m(void)
{
    split_run("golden/sd3m_text.safetensors");
}

void test_sd3_text__split_files_sd35m(void)
{
    split_run("golden/sd35m_text.safetensors");
}

/* ---- chunks, empty prompts ---- */

void test_sd3_text__two_chunks(void)
{
    lm_error err;
    golden_set s;
    if (!set_open(&s, "golden/sd3m_text.safetensors"))
        return;
    const char *encs[2] = { "clip_l", "clip_g" };
    lm_clip *clips[2] = { s.clip_l, s.clip_g };
    for (int e = 0; e < 2; e++) {
        char a[96], b[96], name[96];
        size_t na, nb;
        snprintf(a, sizeof(a), "positive.%s.ids", encs[e]);
        snprintf(b, sizeof(b), "clip_full75.%s.ids", encs[e]);
        int32_t *ia = gold_ids(s.golden, a, &na), *ib = gold_ids(s.golden, b, &nb);
        int32_t *ids = concat_ids(ia, na, ib, nb);
        lm_tensor *pen = NULL, *pooled = NULL;
        CHECK_OK(lm_clip_encode(clips[e], ids, na + nb, NULL, &pen, &pooled, &err), &err);
        REQUIRE(pen && pen->shape[1] == (int64_t)(na + nb));
        snprintf(name, sizeof(name), "positive.%s.penultimate", encs[e]);
        compare_slice(&s, name, pen, 1, 0, (int64_t)na);
        snprintf(name, sizeof(name), "clip_full75.%s.penultimate", encs[e]);
        compare_slice(&s, name, pen, 1, (int64_t)na, (int64_t)(na + nb));
        snprintf(name, sizeof(name), "positive.%s.pooled", encs[e]); /* from chunk 0 */
        compare(&s, name, pooled);
        lm_tensor *none = NULL;
        CHECK_INT(lm_clip_encode(clips[e], ids, na + 5, NULL, &none, NULL, &err), LM_EINVAL);
        CHECK_CONTAINS(err.msg, "not whole chunks");
        CHECK(none == NULL);
        lm_tensor_free(pen);
        lm_tensor_free(pooled);
        free(ia);
        free(ib);
        free(ids);
    }
    set_close(&s);
}

void test_sd3_text__empty_prompt(void)
{
    lm_error err;
    golden_set s;
    if (!set_open(&s, "golden/sd35m_text.safetensors"))
        return;
    lm_tensor *pl = NULL, *ql = NULL, *pg = NULL, *qg = NULL, *t = NULL, *ctx = NULL, *y = NULL;
    CHECK_OK(lm_clip_encode(s.clip_l, NULL, 0, NULL, &pl, &ql, &err), &err);
    CHECK_OK(lm_clip_encode(s.clip_g, NULL, 0, NULL, &pg, &qg, &err), &err);
    CHECK_OK(lm_t5_encode(s.t5, NULL, 0, NULL, &t, &err), &err);
    compare(&s, "negative_empty.clip_l.penultimate", pl);
    compare(&s, "negative_empty.clip_l.pooled", ql);
    compare(&s, "negative_empty.clip_g.penultimate", pg);
    compare(&s, "negative_empty.clip_g.pooled", qg);
    compare(&s, "negative_empty.t5xxl.last_hidden", t);
    lm_sd3_text_ids none = { 0 };
    CHECK_OK(lm_sd3_condition(s.clip_l, s.clip_g, s.t5, &none, NULL, &none, NULL, &ctx, &y, &err),
             &err);
    compare(&s, "negative_empty.context", ctx);
    compare(&s, "negative_empty.pooled", y);
    lm_tensor *all[] = { pl, ql, pg, qg, t, ctx, y };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_tensor_free(all[i]);
    set_close(&s);
}

/* ---- prompt weights ---- */

void test_sd3_text__token_weights_apply(void)
{
    lm_error err;
    float zv[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    float ev[12] = { 0.5f, 0.5f, 0.5f, -1, 0, 1, 2, 2, 2, 0.1f, 0.2f, 0.3f };
    double w[4] = { 1.0, 1.3, 0.0, 1.0 };
    int64_t shape[3] = { 1, 4, 3 };
    lm_tensor *z = NULL, *e = NULL, *out = NULL;
    REQUIRE_OK(lm_tensor_new(&z, lm_backend_cpu(), LM_DTYPE_F32, 3, shape, &err), &err);
    REQUIRE_OK(lm_tensor_new(&e, lm_backend_cpu(), LM_DTYPE_F32, 3, shape, &err), &err);
    memcpy(lm_tensor_data(z), zv, sizeof(zv));
    memcpy(lm_tensor_data(e), ev, sizeof(ev));
    REQUIRE_OK(lm_sd3_token_weights_apply(&out, z, e, w, &err), &err);
    const float *o = lm_tensor_data(out);
    for (int i = 0; i < 12; i++) {
        float wf = (float)w[i / 3];
        float want = w[i / 3] == 1.0 ? zv[i] : (zv[i] - ev[i]) * wf + ev[i];
        CHECK(o[i] == want);
    }
    lm_tensor_free(out);
    lm_tensor_free(z);
    lm_tensor_free(e);
}

/* Weighted rows are (z - z_empty) * w + z_empty, others z's bits; the pooled is unchanged. */
static void check_weighted(const lm_tensor *zw, const lm_tensor *z, const lm_tensor *ze,
                           const double *w)
{
    lm_tensor *hw = host(zw), *h = host(z), *he = host(ze);
    REQUIRE(hw && h && he && gold_shapes_equal(zw, z));
    const float *pw = lm_tensor_data(hw), *p = lm_tensor_data(h), *pe = lm_tensor_data(he);
    int64_t rows = z->shape[1], cols = z->shape[2], ecols = ze->shape[1];
    double worst = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c, ie = (r % ecols) * cols + c;
            double zi = (double)p[i], ei = (double)pe[ie];
            double want = w[r] == 1.0 ? zi : (zi - ei) * w[r] + ei;
            if (w[r] == 1.0 && pw[i] != p[i])
                worst = (double)INFINITY;
            worst = fmax(worst, fabs((double)pw[i] - want));
        }
    test_note("weighted rows vs direct computation: max abs %.3g", worst);
    CHECK(worst <= 1e-5);
    lm_tensor_free(hw);
    lm_tensor_free(h);
    lm_tensor_free(he);
}

void test_sd3_text__token_weights_encoders(void)
{
    lm_error err;
    golden_set s;
    if (!set_open(&s, "golden/sd3m_text.safetensors"))
        return;
    size_t na, nb, nt;
    int32_t *ia = gold_ids(s.golden, "positive.clip_g.ids", &na);
    int32_t *ib = gold_ids(s.golden, "clip_full75.clip_g.ids", &nb);
    int32_t *it = gold_ids(s.golden, "positive.t5xxl.ids", &nt);
    int32_t *ids = concat_ids(ia, na, ib, nb);
    double *w = malloc((na + nb + nt) * sizeof(double));
    for (size_t i = 0; i < na + nb + nt; i++)
        w[i] = (i % 7 == 3) ? 1.3 : (i % 11 == 5) ? 0.6 : 1.0;
    lm_tensor *z = NULL, *zw = NULL, *ze = NULL, *p = NULL, *pw = NULL;
    CHECK_OK(lm_clip_encode(s.clip_g, ids, na + nb, NULL, &z, &p, &err), &err);
    CHECK_OK(lm_clip_encode(s.clip_g, ids, na + nb, w, &zw, &pw, &err), &err);
    CHECK_OK(lm_clip_encode(s.clip_g, NULL, 0, NULL, &ze, NULL, &err), &err);
    check_weighted(zw, z, ze, w);
    CHECK(identical(p, pw));
    lm_tensor *t = NULL, *tw = NULL, *te = NULL;
    CHECK_OK(lm_t5_encode(s.t5, it, nt, NULL, &t, &err), &err);
    CHECK_OK(lm_t5_encode(s.t5, it, nt, w + na + nb, &tw, &err), &err);
    CHECK_OK(lm_t5_encode(s.t5, NULL, 0, NULL, &te, &err), &err); /* [</s>, <pad> x 76] */
    if (te && te->shape[1] == (int64_t)nt)
        check_weighted(tw, t, te, w + na + nb);
    lm_tensor *all[] = { z, zw, ze, p, pw, t, tw, te };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_tensor_free(all[i]);
    free(ia);
    free(ib);
    free(it);
    free(ids);
    free(w);
    set_close(&s);
}

/* ---- missing encoders ---- */

static void no_clip_l(golden_set *s, const case_ids *c)
{
    lm_error err;
    const lm_clip_config *cl = lm_clip_config_of(s->clip_l), *cg = lm_clip_config_of(s->clip_g);
    lm_sd3_condition_opts o = LM_SD3_CONDITION_OPTS_DEFAULT;
    o.clip_l_width = cl->width;
    lm_tensor *ctx = NULL, *y = NULL, *pen = NULL;
    CHECK_OK(lm_sd3_condition(NULL, s->clip_g, s->t5, &c->in[0], &c->in[1], &c->in[2], &o, &ctx, &y,
                              &err),
             &err);
    CHECK_OK(lm_clip_encode(s->clip_g, c->in[1].ids, c->in[1].n, NULL, &pen, NULL, &err), &err);
    REQUIRE(ctx && y && pen);
    int64_t d = ctx->shape[2], wl = cl->width, wg = cg->width;
    CHECK_INT(ctx->shape[1], 77 + (int64_t)c->in[2].n);
    CHECK(max_abs_block(ctx, 0, 77, 0, wl) == 0);
    CHECK(max_abs_block(ctx, 0, 77, wl + wg, d) == 0);
    CHECK(max_abs_block(y, 0, 1, 0, wl) == 0);
    lm_tensor *gpart = NULL, *rows = NULL;
    CHECK_OK(lm_tensor_view_slice(&rows, ctx, 1, 0, 77, &err), &err);
    CHECK_OK(lm_tensor_view_slice(&gpart, rows, 2, wl, wl + wg, &err), &err);
    CHECK(identical(gpart, pen));
    compare_slice(s, "positive.t5xxl.last_hidden", ctx, 1, 77, ctx->shape[1]);
    lm_tensor *all[] = { ctx, y, pen, gpart, rows };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_tensor_free(all[i]);
}

static void no_t5(golden_set *s, const case_ids *c)
{
    lm_error err;
    int64_t d = lm_t5_config_of(s->t5)->d_model;
    lm_sd3_condition_opts o = LM_SD3_CONDITION_OPTS_DEFAULT;
    o.context_width = (int)d;
    lm_tensor *ctx = NULL, *ctx0 = NULL, *y = NULL;
    CHECK_OK(lm_sd3_condition(s->clip_l, s->clip_g, NULL, &c->in[0], &c->in[1], &c->in[2], &o, &ctx,
                              &y, &err),
             &err);
    o.no_t5 = LM_SD3_NO_T5_ZEROS;
    CHECK_OK(lm_sd3_condition(s->clip_l, s->clip_g, NULL, &c->in[0], &c->in[1], &c->in[2], &o,
                              &ctx0, NULL, &err),
             &err);
    REQUIRE(ctx && ctx0 && y);
    CHECK_INT(ctx->shape[1], 77); /* ComfyUI: CLIP rows only */
    compare_rows(s, "positive.context", ctx, 0, 77);
    compare(s, "positive.pooled", y);
    CHECK_INT(ctx0->shape[1], 154);
    CHECK(max_abs_block(ctx0, 77, 154, 0, d) == 0);
    o.no_t5 = LM_SD3_NO_T5_OMIT;
    o.context_width = (int)d + 1; /* a T5 of another width */
    lm_tensor *bad = NULL;
    CHECK_INT(lm_sd3_condition(s->clip_l, s->clip_g, s->t5, &c->in[0], &c->in[1], &c->in[2], &o,
                               &bad, NULL, &err),
              LM_EINVAL);
    CHECK(bad == NULL);
    lm_tensor_free(ctx);
    lm_tensor_free(ctx0);
    lm_tensor_free(y);
}

static void no_encoders(golden_set *s, const case_ids *c)
{
    lm_error err;
    lm_tensor *ctx = NULL, *y = NULL;
    CHECK_OK(
        lm_sd3_condition(NULL, NULL, NULL, &c->in[0], &c->in[1], &c->in[2], NULL, &ctx, &y, &err),
        &err);
    REQUIRE(ctx && y);
    int64_t cs[3] = { 1, 77, LM_SD3_CONTEXT_WIDTH }, ys[2] = { 1, 768 + 1280 };
    CHECK(ctx->ndim == 3 && memcmp(ctx->shape, cs, sizeof(cs)) == 0);
    CHECK(y->ndim == 2 && memcmp(y->shape, ys, sizeof(ys)) == 0);
    CHECK(max_abs_block(ctx, 0, 77, 0, LM_SD3_CONTEXT_WIDTH) == 0);
    lm_tensor_free(ctx);
    lm_tensor_free(y);
    /* Only a T5: the context is its output alone, y zeros of the CLIP widths. */
    lm_sd3_condition_opts o = LM_SD3_CONDITION_OPTS_DEFAULT;
    o.clip_l_width = lm_clip_config_of(s->clip_l)->width;
    o.clip_g_width = lm_clip_pooled_width(s->clip_g);
    int64_t yw = o.clip_l_width + o.clip_g_width;
    CHECK_OK(
        lm_sd3_condition(NULL, NULL, s->t5, &c->in[0], &c->in[1], &c->in[2], &o, &ctx, &y, &err),
        &err);
    compare(s, "positive.t5xxl.last_hidden", ctx);
    CHECK(y && y->shape[1] == yw && max_abs_block(y, 0, 1, 0, yw) == 0);
    lm_tensor_free(ctx);
    lm_tensor_free(y);
}

void test_sd3_text__missing_encoders(void)
{
    golden_set s;
    case_ids c;
    if (set_open(&s, "golden/sd3m_text.safetensors")) {
        case_ids_load(&s, "positive", &c);
        if (c.ids[0] && c.ids[1] && c.ids[2]) {
            no_clip_l(&s, &c);
            no_t5(&s, &c);
            no_encoders(&s, &c);
        }
        case_ids_free(&c);
    }
    set_close(&s);
}

/* ---- damaged files ---- */

typedef struct {
    const char *drop;    /* tensor left out */
    const char *reshape; /* tensor given new_shape (same element count) */
    int ndim;
    int64_t new_shape[4];
    const char *meta_key; /* metadata key set to meta_value ("" drops all metadata) */
    const char *meta_value;
    const char *rename_from, *rename_to; /* a tensor given another name */
} file_edit;

static cJSON *edited_metadata(const lm_safetensors *src, const file_edit *e)
{
    cJSON *meta = cJSON_CreateObject();
    size_t n = lm_safetensors_metadata_count(src);
    for (size_t i = 0; i < n && !(e->meta_key && !e->meta_key[0]); i++) {
        const char *k, *v;
        lm_safetensors_metadata_at(src, i, &k, &v);
        bool edit = e->meta_key && strcmp(k, e->meta_key) == 0;
        cJSON_AddStringToObject(meta, k, edit ? e->meta_value : v);
    }
    return meta;
}

static cJSON *entry_json(const lm_safetensors_entry *en, const file_edit *e, size_t at)
{
    cJSON *t = cJSON_CreateObject();
    bool re = e->reshape && strcmp(en->name, e->reshape) == 0;
    cJSON_AddStringToObject(t, "dtype", lm_safetensors_dtype_name(en->dtype));
    cJSON *shape = cJSON_AddArrayToObject(t, "shape");
    for (int d = 0; d < (re ? e->ndim : en->ndim); d++)
        cJSON_AddItemToArray(shape,
                             cJSON_CreateNumber((double)(re ? e->new_shape[d] : en->shape[d])));
    cJSON *off = cJSON_AddArrayToObject(t, "data_offsets");
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(at + en->bytes)));
    return t;
}

/* Writes a copy of src into the temp dir with one edit; returns its path. */
static const char *write_edited(lm_safetensors *src, const char *name, const file_edit *e)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "__metadata__", edited_metadata(src, e));
    size_t at = 0, n = lm_safetensors_count(src);
    for (size_t i = 0; i < n; i++) {
        const lm_safetensors_entry *en = lm_safetensors_at(src, i);
        if (e->drop && strcmp(en->name, e->drop) == 0)
            continue;
        bool rn = e->rename_from && strcmp(en->name, e->rename_from) == 0;
        cJSON_AddItemToObject(root, rn ? e->rename_to : en->name, entry_json(en, e, at));
        at += en->bytes;
    }
    char *header = cJSON_PrintUnformatted(root);
    size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    uint64_t len = padded;
    fwrite(&len, 8, 1, f);
    fwrite(header, 1, hl, f);
    for (size_t i = hl; i < padded; i++)
        fputc(' ', f);
    for (size_t i = 0; i < n; i++) {
        const lm_safetensors_entry *en = lm_safetensors_at(src, i);
        if (!(e->drop && strcmp(en->name, e->drop) == 0))
            fwrite(en->data, 1, en->bytes, f);
    }
    fclose(f);
    free(header);
    cJSON_Delete(root);
    return path;
}

/* Loads an edited copy of split/<model>/<file> as `kind` (0 CLIP-L, 1 CLIP-G, 2 T5) and
 * checks the error: code, and that the message names `needle` and the place the file. */
static void expect_load_error(const char *file, int kind, const file_edit *e, lm_status code,
                              const char *needle)
{
    lm_error err;
    char rel[256];
    snprintf(rel, sizeof(rel), "golden/split/sd3m/%s", file);
    const char *src_path = test_shared(rel);
    lm_safetensors *src = NULL, *bad = NULL;
    if (!src_path || lm_safetensors_open(&src, src_path, &err) != LM_OK) {
        CHECK(src_path == NULL);
        return;
    }
    const char *path = write_edited(src, "damaged.safetensors", e);
    lm_safetensors_close(src);
    REQUIRE_OK(lm_safetensors_open(&bad, path, &err), &err);
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_sd3_detect(bad, found, w);
    lm_sd3_component c = kind == 2 ? LM_SD3_T5XXL : LM_SD3_CLIP_L;
    lm_clip *clip = NULL;
    lm_t5 *t5 = NULL;
    lm_status st = kind == 2
                       ? lm_t5_load(&t5, &w[c], &err)
                       : lm_clip_load(&clip, &w[c], kind ? LM_CLIP_KIND_G : LM_CLIP_KIND_L, &err);
    char line[1200];
    lm_error_format(&err, line, sizeof(line));
    test_note("%s", line);
    CHECK_INT(st, code);
    CHECK(clip == NULL && t5 == NULL);
    CHECK_CONTAINS(err.msg, needle);
    CHECK_STR(err.file, path);
    lm_safetensors_close(bad);
}

void test_sd3_text__missing_tensor_named(void)
{
    file_edit clip = { .drop = "text_model.encoder.layers.1.mlp.fc2.bias" };
    expect_load_error("clip_l.safetensors", 0, &clip, LM_ENOTFOUND,
                      "\"text_model.encoder.layers.1.mlp.fc2.bias\" is missing");
    file_edit g = { .drop = "text_projection.weight" };
    expect_load_error("clip_g.safetensors", 1, &g, LM_ENOTFOUND,
                      "CLIP-G tensor \"text_projection.weight\" is missing");
    file_edit t5 = { .drop = "encoder.block.1.layer.1.DenseReluDense.wo.weight" };
    expect_load_error("t5xxl_fp8_e4m3fn.safetensors", 2, &t5, LM_ENOTFOUND,
                      "\"encoder.block.1.layer.1.DenseReluDense.wo.weight\" is missing");
}

void test_sd3_text__misshaped_tensor_named(void)
{
    const char *k = "text_model.encoder.layers.0.self_attn.k_proj.weight";
    lm_safetensors *src = NULL;
    lm_error err;
    const char *p = test_shared("golden/split/sd3m/clip_l.safetensors");
    REQUIRE(p);
    REQUIRE_OK(lm_safetensors_open(&src, p, &err), &err);
    const lm_safetensors_entry *e = lm_safetensors_find(src, k);
    REQUIRE(e && e->ndim == 2 && e->shape[0] % 2 == 0);
    file_edit clip = { .reshape = k, .ndim = 2, .new_shape = { e->shape[0] / 2, e->shape[1] * 2 } };
    lm_safetensors_close(src);
    expect_load_error("clip_l.safetensors", 0, &clip, LM_EFORMAT, "k_proj.weight\" has shape");
    file_edit t5 = { .reshape = "encoder.final_layer_norm.weight",
                     .ndim = 2,
                     .new_shape = { 1, -1 } };
    REQUIRE_OK(lm_safetensors_open(&src,
                                   test_shared("golden/split/sd3m/t5xxl_fp8_e4m3fn"
                                               ".safetensors"),
                                   &err),
               &err);
    t5.new_shape[1] = lm_safetensors_find(src, t5.reshape)->shape[0];
    lm_safetensors_close(src);
    expect_load_error("t5xxl_fp8_e4m3fn.safetensors", 2, &t5, LM_EFORMAT,
                      "\"encoder.final_layer_norm.weight\" has shape");
}

void test_sd3_text__heads_metadata(void)
{
    /* Without metadata the tiny CLIP's heads fall back to width/64, which does not fit. */
    file_edit none = { .meta_key = "" };
    expect_load_error("clip_l.safetensors", 0, &none, LM_EFORMAT, "attention heads");
    file_edit junk = { .meta_key = "num_attention_heads", .meta_value = "two" };
    expect_load_error("clip_l.safetensors", 0, &junk, LM_EFORMAT, "\"num_attention_heads\"");
}

void test_sd3_text__bad_ids(void)
{
    lm_error err;
    golden_set s;
    if (set_open(&s, "golden/sd3m_text.safetensors")) {
        int32_t ids[77] = { LM_CLIP_BOS_ID, 49408, LM_CLIP_EOS_ID };
        lm_tensor *pen = NULL, *t = NULL;
        CHECK_INT(lm_clip_encode(s.clip_l, ids, 77, NULL, &pen, NULL, &err), LM_ERANGE);
        CHECK_CONTAINS(err.msg, "49408 at position 1");
        CHECK(pen == NULL);
        ids[1] = -3;
        CHECK_INT(lm_t5_encode(s.t5, ids, 5, NULL, &t, &err), LM_ERANGE);
        CHECK(t == NULL);
        lm_clip_hidden h;
        CHECK_INT(lm_clip_forward(s.clip_l, ids, 78, LM_CLIP_WANT_PENULTIMATE, &h, &err),
                  LM_EINVAL);
    }
    set_close(&s);
}

/* Every allocation of load + weighted conditioning fails once in turn: each failure must
 * come back as an error (no crash, no leak under ASan), and the walk must end in success. */
static lm_status load_and_condition(golden_set *s, const case_ids *c, const double *w,
                                    lm_error *err)
{
    lm_clip *l = NULL, *g = NULL;
    lm_t5 *t5 = NULL;
    lm_tensor *ctx = NULL, *y = NULL;
    lm_sd3_text_ids in[3] = { c->in[0], c->in[1], c->in[2] };
    in[1].weights = w; /* the T5 shares the weighting code; one weighted encoder is enough */
    lm_status st = lm_clip_load(&l, &s->w[LM_SD3_CLIP_L], LM_CLIP_KIND_L, err);
    if (st == LM_OK)
        st = lm_clip_load(&g, &s->w[LM_SD3_CLIP_G], LM_CLIP_KIND_G, err);
    if (st == LM_OK)
        st = lm_t5_load(&t5, &s->w[LM_SD3_T5XXL], err);
    if (st == LM_OK)
        st = lm_sd3_condition(l, g, t5, &in[0], &in[1], &in[2], NULL, &ctx, &y, err);
    if (st != LM_OK && (ctx || y))
        test__fail(__FILE__, __LINE__, "a failed call returned tensors");
    lm_tensor_free(ctx);
    lm_tensor_free(y);
    lm_clip_free(l);
    lm_clip_free(g);
    lm_t5_free(t5);
    return st;
}

void test_sd3_text__allocation_failures(void)
{
    golden_set s;
    case_ids c;
    if (!set_open(&s, "golden/sd3m_text.safetensors"))
        return;
    case_ids_load(&s, "positive", &c);
    double w[77];
    for (int i = 0; i < 77; i++)
        w[i] = i == 2 ? 1.5 : 1.0;
    lm_error warm;
    /* A first run creates the process-wide thread pool, which later runs reuse. */
    lm_status st = load_and_condition(&s, &c, w, &warm);
    CHECK_OK(st, &warm);
    st = LM_ENOMEM;
    long n = 0;
    for (; n < 20000 && st != LM_OK; n++) {
        lm_error err;
        lm_alloc_fail_after(n);
        st = load_and_condition(&s, &c, w, &err);
        lm_alloc_fail_after(-1);
        if (st != LM_OK && st != LM_ENOMEM) {
            char line[1200];
            lm_error_format(&err, line, sizeof(line));
            test__fail(__FILE__, __LINE__, "allocation %ld: %s", n, line);
            break;
        }
    }
    test_note("%ld allocation failures walked", n - 1);
    CHECK_INT(st, LM_OK);
    case_ids_free(&c);
    set_close(&s);
}

void test_sd3_text__scaled_fp8_refused(void)
{
    file_edit e = { .rename_from = "encoder.embed_tokens.weight",
                    .rename_to = "encoder.block.0.layer.0.SelfAttention.q.scale_weight" };
    expect_load_error("t5xxl_fp8_e4m3fn.safetensors", 2, &e, LM_EUNSUPPORTED, "scaled-fp8");
}
