/* nodes/sd3/models.c — the process-wide SD3 model manager: shared files, components and
 * tokenizers, loaded once and counted (models.h has the contract and the memory policy).
 *
 * Two singly linked tables under one mutex: open files (real path -> safetensors set and
 * what lm_sd3_detect found in it) and loaded parts (real path + kind -> object, users,
 * last use). A part with no users stays until lm_sd3_models_free_unused/_idle; loaded
 * objects keep their file's mapping alive by themselves, so freeing unused parts may close
 * every file. The tables are short (a handful of models), so lookups are linear. Listing
 * and name resolution are in models_files.c; the link objects in models_values.c. */
#include "nodes/sd3/models.h"

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/base/str.h"
#include "core/base/thread.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct file_entry {
    struct file_entry *next;
    char *path;            /* real path */
    lm_safetensors *st;    /* a single file; NULL for a diffusers folder */
    lm_sd3_diffusers *dif; /* a diffusers folder's per-component sets, else NULL */
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
} file_entry;

struct lm_sd3_part {
    struct lm_sd3_part *next;
    lm_sd3_part_kind kind;
    char *path;         /* real path of the file (or tokenizer directory) */
    lm_backend *wanted; /* the backend asked for (part of the key); where it computes is
                           the loaded object's own (part_backend) */
    int users;
    double last_used;
    void *obj;              /* lm_mmdit, lm_vae, lm_clip, lm_t5 or lm_clip_tokenizer */
    lm_t5_tokenizer *t5tok; /* tokenizers only; NULL when the directory has no T5 one */
};

static struct {
    pthread_mutex_t lock;
    file_entry *files;
    lm_sd3_part *parts;
    lm_sd3_models_stats stats;
    int skip_t5; /* -1: not decided yet (read LOOM_SKIP_T5) */
    lm_sd3_pressure_fn pressure;
    void *pressure_user;
} mgr = { PTHREAD_MUTEX_INITIALIZER, NULL, NULL, { 0 }, -1, NULL, NULL };

void lm_sd3_models_set_pressure_hook(lm_sd3_pressure_fn fn, void *user)
{
    pthread_mutex_lock(&mgr.lock);
    mgr.pressure = fn;
    mgr.pressure_user = user;
    pthread_mutex_unlock(&mgr.lock);
}

/* ---- options ---- */

void lm_sd3_models_set_skip_t5(bool skip)
{
    pthread_mutex_lock(&mgr.lock);
    mgr.skip_t5 = skip;
    pthread_mutex_unlock(&mgr.lock);
}

bool lm_sd3_models_skip_t5(void)
{
    pthread_mutex_lock(&mgr.lock);
    if (mgr.skip_t5 < 0) {
        const char *v = getenv("LOOM_SKIP_T5");
        mgr.skip_t5 = v && strcmp(v, "1") == 0;
    }
    bool skip = mgr.skip_t5 == 1;
    pthread_mutex_unlock(&mgr.lock);
    return skip;
}

/* ---- files ---- */

/* The real path of path (symbolic links resolved), or a copy of path when that fails. */
static char *real_path(const char *path)
{
    char *rp = realpath(path, NULL);
    char *copy = lm_strdup(rp ? rp : path);
    free(rp);
    return copy;
}

static void file_free(file_entry *f)
{
    if (!f)
        return;
    lm_safetensors_close(f->st);
    lm_sd3_diffusers_close(f->dif);
    lm_free(f->path);
    lm_free(f);
}

/* The open file at real path rp; opens it on first use. Called with the lock held. */
static lm_status file_get(const char *rp, file_entry **out, lm_error *err)
{
    for (file_entry *f = mgr.files; f; f = f->next) {
        if (strcmp(f->path, rp) == 0) {
            *out = f;
            return LM_OK;
        }
    }
    file_entry *f = lm_calloc(1, sizeof(*f));
    if (!f || !(f->path = lm_strdup(rp))) {
        lm_free(f);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory opening %.200s", rp);
    }
    lm_status st;
    if (lm_sd3_diffusers_is_folder(rp)) {
        st = lm_sd3_diffusers_open(&f->dif, rp, f->found, f->w, err);
    } else {
        st = lm_safetensors_open(&f->st, rp, err);
        if (st == LM_OK)
            lm_sd3_detect(f->st, f->found, f->w);
    }
    if (st != LM_OK) {
        file_free(f);
        return st;
    }
    f->next = mgr.files;
    mgr.files = f;
    mgr.stats.file_opens++;
    mgr.stats.resident_files++;
    *out = f;
    return LM_OK;
}

static void info_of(const file_entry *f, lm_sd3_file_info *info)
{
    memset(info, 0, sizeof(*info));
    memcpy(info->has, f->found, sizeof(info->has));
    const lm_sd3_weights *l = &f->w[LM_SD3_CLIP_L];
    info->clip_standalone = !f->dif && f->found[LM_SD3_CLIP_L] && l->prefix[0] == '\0';
    if (info->clip_standalone) {
        int64_t shape[8];
        if (lm_sd3_weights_shape(l, "text_model.embeddings.token_embedding.weight", shape) == 2)
            info->clip_width = (int)shape[1];
    }
}

lm_status lm_sd3_models_probe(const char *path, lm_sd3_file_info *info, lm_error *err)
{
    char *rp = real_path(path);
    if (!rp)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory probing a model file");
    file_entry *f = NULL;
    pthread_mutex_lock(&mgr.lock);
    lm_status st = file_get(rp, &f, err);
    if (st == LM_OK)
        info_of(f, info);
    pthread_mutex_unlock(&mgr.lock);
    lm_free(rp);
    return st;
}

/* ---- descriptions (`loom models`) ---- */

/* The dtype most of a component's weight bytes are stored in (F16 for none). */
static lm_safetensors_dtype main_dtype(const lm_sd3_weights *w)
{
    uint64_t bytes[LM_SAFETENSORS_DTYPE_COUNT] = { 0 };
    size_t first = 0, n = lm_safetensors_find_prefix(w->st, w->prefix, &first);
    for (size_t i = first; i < first + n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(w->st, i);
        bytes[e->dtype] += e->bytes;
    }
    lm_safetensors_dtype best = LM_SAFETENSORS_F16;
    for (int d = 0; d < LM_SAFETENSORS_DTYPE_COUNT; d++)
        if (bytes[d] > bytes[best])
            best = (lm_safetensors_dtype)d;
    return best;
}

/* The flavour is told by the features that set the released models apart: MMDiT-X's
 * second image attention (SD3.5 Medium), q/k norm without it (SD3.5 Large). */
static lm_status describe_mmdit(const lm_sd3_weights *w, lm_str *s, lm_error *err)
{
    lm_mmdit_config cfg;
    lm_status st = lm_mmdit_config_infer(&cfg, w, err);
    if (st != LM_OK)
        return st;
    const char *flavour = cfg.n_x_self_attn > 0             ? "SD3.5 Medium"
                          : cfg.qk_norm != LM_MMDIT_QK_NONE ? "SD3.5 Large"
                                                            : "SD3 Medium";
    lm_str_appendf(s, "%s (%s: depth %d, width %d", cfg.n_x_self_attn ? "MMDiT-X" : "MMDiT",
                   flavour, cfg.depth, cfg.hidden);
    if (cfg.n_x_self_attn > 0)
        lm_str_appendf(s, ", x self-attention in %d blocks", cfg.n_x_self_attn);
    lm_safetensors_dtype dt = main_dtype(w);
    if (dt != LM_SAFETENSORS_F16)
        lm_str_appendf(s, ", %s", lm_safetensors_dtype_name(dt));
    lm_str_append(s, ")");
    return LM_OK;
}

/* Every component but the MMDiT: its name, and what is worth a note in parentheses. */
static void describe_other(const file_entry *f, lm_sd3_component c, lm_str *s)
{
    lm_sd3_file_info info;
    info_of(f, &info);
    const char *name = lm_sd3_component_name(c);
    int width = 0;
    if (c == LM_SD3_CLIP_L && info.clip_standalone) {
        /* the widths of the released CLIPs, as CLIPLoader tells them apart */
        bool l = info.clip_width == 768, g = info.clip_width == 1280;
        name = l ? "CLIP-L" : g ? "CLIP-G" : "CLIP";
        width = l || g ? 0 : info.clip_width;
    }
    lm_safetensors_dtype dt = main_dtype(&f->w[c]);
    lm_str_append(s, name);
    if (width && dt != LM_SAFETENSORS_F16)
        lm_str_appendf(s, " (width %d, %s)", width, lm_safetensors_dtype_name(dt));
    else if (width)
        lm_str_appendf(s, " (width %d)", width);
    else if (dt != LM_SAFETENSORS_F16)
        lm_str_appendf(s, " (%s)", lm_safetensors_dtype_name(dt));
}

/* Called with the lock held. */
static lm_status describe_file(const file_entry *f, lm_str *s, lm_error *err)
{
    bool any = false;
    for (int c = 0; c < LM_SD3_COMPONENT_COUNT; c++) {
        if (!f->found[c])
            continue;
        lm_str_append(s, any ? ", " : "");
        any = true;
        if (c != LM_SD3_MMDIT) {
            describe_other(f, (lm_sd3_component)c, s);
            continue;
        }
        lm_status st = describe_mmdit(&f->w[c], s, err);
        if (st != LM_OK)
            return st;
    }
    if (!any)
        lm_str_append(s, "no SD3 weights (MMDiT, VAE, CLIP or T5-XXL)");
    return LM_OK;
}

lm_status lm_sd3_models_describe(const char *path, char *buf, size_t size, lm_error *err)
{
    char *rp = real_path(path);
    if (!rp)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory probing a model file");
    lm_str s;
    lm_str_init(&s);
    file_entry *f = NULL;
    pthread_mutex_lock(&mgr.lock);
    lm_status st = file_get(rp, &f, err);
    if (st == LM_OK)
        st = describe_file(f, &s, err);
    pthread_mutex_unlock(&mgr.lock);
    if (st == LM_OK && s.oom)
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory describing %.200s", rp);
    if (st == LM_OK)
        lm_strlcpy(buf, lm_str_cstr(&s), size);
    lm_str_fini(&s);
    lm_free(rp);
    return st;
}

/* ---- parts ---- */

static const char *part_name(lm_sd3_part_kind kind)
{
    static const char *const names[] = {
        "MMDiT", "VAE", "CLIP-L", "CLIP-G", "T5-XXL", "tokenizers"
    };
    return (unsigned)kind < LM_COUNTOF(names) ? names[kind] : "?";
}

static void part_free(lm_sd3_part *p)
{
    if (!p)
        return;
    switch (p->kind) {
    case LM_SD3_PART_MMDIT:
        lm_mmdit_free(p->obj);
        break;
    case LM_SD3_PART_VAE:
        lm_vae_free(p->obj);
        break;
    case LM_SD3_PART_CLIP_L:
    case LM_SD3_PART_CLIP_G:
        lm_clip_free(p->obj);
        break;
    case LM_SD3_PART_T5:
        lm_t5_free(p->obj);
        break;
    case LM_SD3_PART_TOKENIZERS:
        lm_clip_tokenizer_free(p->obj);
        lm_t5_tokenizer_free(p->t5tok);
        break;
    }
    lm_free(p->path);
    lm_free(p);
}

/* The weights of a component of f, or an error naming the file and what is missing. */
static lm_status component_weights(const file_entry *f, lm_sd3_part_kind kind,
                                   const lm_sd3_weights **w, lm_error *err)
{
    static const lm_sd3_component comp[] = { LM_SD3_MMDIT, LM_SD3_VAE, LM_SD3_CLIP_L, LM_SD3_CLIP_G,
                                             LM_SD3_T5XXL };
    lm_sd3_component c = comp[kind];
    bool standalone = !f->dif && f->found[LM_SD3_CLIP_L] && f->w[LM_SD3_CLIP_L].prefix[0] == '\0';
    if (kind == LM_SD3_PART_CLIP_G && standalone)
        c = LM_SD3_CLIP_L; /* a standalone CLIP file is reported as CLIP-L */
    if (!f->found[c]) {
        lm_errorf(err, LM_ENOTFOUND, "model_component_missing", "%.200s holds no %s", f->path,
                  part_name(kind));
        lm_error_hint(err, "choose a file that contains the %s weights", part_name(kind));
        return LM_ENOTFOUND;
    }
    *w = &f->w[c];
    return LM_OK;
}

/* ---- placement (the memory policy of models.h) ---- */

/* Bytes of a size variable: a number with an optional K, M or G suffix; `dflt` when unset
 * or malformed. */
static size_t env_bytes(const char *name, size_t dflt)
{
    size_t bytes = 0;
    return lm_parse_bytes(getenv(name), &bytes) ? bytes : dflt;
}

/* The bytes a component's weights take in their stored dtype (what a device copy holds):
 * every tensor under its prefix but the duplicate T5 embedding some files carry
 * (encoder.embed_tokens.weight, a copy of shared.weight that the model does not bind). */
static size_t component_bytes(const lm_sd3_weights *w)
{
    static const char dup[] = "encoder.embed_tokens.weight";
    size_t first = 0, n = lm_safetensors_find_prefix(w->st, w->prefix, &first), bytes = 0;
    for (size_t i = first; i < first + n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(w->st, i);
        size_t len = strlen(e->name);
        bool is_dup = w->component == LM_SD3_T5XXL && len >= sizeof(dup) - 1 &&
                      strcmp(e->name + len - (sizeof(dup) - 1), dup) == 0;
        bytes += is_dup ? 0 : e->bytes;
    }
    return bytes;
}

static bool is_text_encoder(lm_sd3_part_kind kind)
{
    return kind == LM_SD3_PART_CLIP_L || kind == LM_SD3_PART_CLIP_G || kind == LM_SD3_PART_T5;
}

/* Where a loaded part computes and the weight bytes it holds there (0 on the CPU), as its
 * object reports them. */
static lm_backend *part_backend(const lm_sd3_part *p, size_t *device_bytes)
{
    size_t bytes = 0;
    lm_backend *be = lm_backend_cpu();
    switch (p->kind) {
    case LM_SD3_PART_MMDIT:
        be = lm_mmdit_backend(p->obj);
        bytes = lm_mmdit_device_bytes(p->obj);
        break;
    case LM_SD3_PART_VAE:
        be = lm_vae_backend(p->obj);
        bytes = lm_vae_device_bytes(p->obj);
        break;
    case LM_SD3_PART_CLIP_L:
    case LM_SD3_PART_CLIP_G:
        be = lm_clip_backend(p->obj);
        bytes = lm_clip_device_bytes(p->obj);
        break;
    case LM_SD3_PART_T5:
        be = lm_t5_backend(p->obj);
        bytes = lm_t5_device_bytes(p->obj);
        break;
    case LM_SD3_PART_TOKENIZERS:
        break;
    }
    if (device_bytes)
        *device_bytes = bytes;
    return be;
}

/* Whether an MMDiT computes on `be` now. Called with the lock held. */
static bool denoiser_on(lm_backend *be)
{
    for (lm_sd3_part *p = mgr.parts; p; p = p->next)
        if (p->kind == LM_SD3_PART_MMDIT && part_backend(p, NULL) == be)
            return true;
    return false;
}

/* Frees the least recently used part without users that computes on `be`; false when there
 * is none. Called with the lock held. */
static bool evict_one(lm_backend *be)
{
    lm_sd3_part **victim = NULL;
    for (lm_sd3_part **pp = &mgr.parts; *pp; pp = &(*pp)->next) {
        size_t bytes = 0;
        bool on_be = part_backend(*pp, &bytes) == be && bytes > 0;
        if ((*pp)->users == 0 && on_be && (!victim || (*pp)->last_used < (*victim)->last_used))
            victim = pp;
    }
    if (!victim)
        return false;
    lm_sd3_part *p = *victim;
    *victim = p->next;
    LM_LOG_INFO("models", "unloaded %s of %s from %s to make room", part_name(p->kind), p->path,
                lm_backend_name(be));
    part_free(p);
    mgr.stats.resident_parts--;
    return true;
}

/* Where a part of `bytes` weights asked for on device `be` goes: `be` when, after its
 * weights, the reserve stays free there (unused parts on `be` are unloaded, least recently
 * used first, to make room), else the CPU. Text encoders also leave room for a denoiser
 * while none is on the device, so loading the encoders first cannot crowd it out. */
static lm_backend *place(lm_backend *be, lm_sd3_part_kind kind, size_t bytes)
{
    size_t reserve = env_bytes("LOOM_DEVICE_RESERVE", LM_SD3_DEVICE_RESERVE);
    if (is_text_encoder(kind) && !denoiser_on(be))
        reserve += env_bytes("LOOM_DENOISER_RESERVE", LM_SD3_DENOISER_RESERVE);
    size_t need = bytes + reserve, free_bytes = 0, total = 0;
    bool asked = false;
    for (;;) {
        lm_error why;
        if (lm_backend_mem_info(be, &free_bytes, &total, &why) != LM_OK)
            return be; /* cannot tell: try, and let the allocation say */
        if (free_bytes >= need)
            break;
        if (evict_one(be))
            continue;
        if (asked || !mgr.pressure)
            break;
        /* Nothing unused here: ask the program to let go of what only its caches hold.
         * The hook drops values, whose release takes the lock: call it without. */
        asked = true;
        lm_sd3_pressure_fn hook = mgr.pressure;
        void *user = mgr.pressure_user;
        pthread_mutex_unlock(&mgr.lock);
        hook(user);
        pthread_mutex_lock(&mgr.lock);
    }
    if (free_bytes >= need)
        return be;
    char size[32], res[32], avail[32];
    lm_format_bytes(bytes, size, sizeof(size));
    lm_format_bytes(reserve, res, sizeof(res));
    lm_format_bytes(free_bytes, avail, sizeof(avail));
    if (is_text_encoder(kind))
        LM_LOG_INFO("models",
                    "%s stays on the CPU: its %s and a reserve of %s do not fit in the %s free "
                    "on %s",
                    part_name(kind), size, res, avail, lm_backend_name(be));
    else
        LM_LOG_WARN("models",
                    "%s computes on the CPU (slow): its %s and a reserve of %s do not fit in "
                    "the %s free on %s; free device memory or lower LOOM_DEVICE_RESERVE",
                    part_name(kind), size, res, avail, lm_backend_name(be));
    return lm_backend_cpu();
}

static lm_status load_component(lm_sd3_part *p, const file_entry *f, lm_error *err)
{
    const lm_sd3_weights *w = NULL;
    lm_status st = component_weights(f, p->kind, &w, err);
    if (st != LM_OK)
        return st;
    lm_backend *be = p->wanted;
    if (!lm_backend_is_host(be))
        be = place(be, p->kind, component_bytes(w));
    switch (p->kind) {
    case LM_SD3_PART_MMDIT:
        return lm_mmdit_load_on((lm_mmdit **)&p->obj, w, be, err);
    case LM_SD3_PART_VAE:
        return lm_vae_load_on((lm_vae **)&p->obj, w, be, err);
    case LM_SD3_PART_CLIP_L:
    case LM_SD3_PART_CLIP_G:
        return lm_clip_load_on((lm_clip **)&p->obj, w,
                               p->kind == LM_SD3_PART_CLIP_L ? LM_CLIP_KIND_L : LM_CLIP_KIND_G, be,
                               err);
    case LM_SD3_PART_T5:
        return lm_t5_load_on((lm_t5 **)&p->obj, w, be, err);
    default:
        return lm_errorf(err, LM_EINTERNAL, NULL, "bad model part kind %d", (int)p->kind);
    }
}

/* A tokenizer directory holds clip/ and t5/; a diffusers folder tokenizer/ (CLIP-L's; CLIP-G's
 * tokenizer_2/ has the same vocabulary) and tokenizer_3/ (T5). */
static lm_status load_tokenizers(lm_sd3_part *p, lm_error *err)
{
    char sub[PATH_MAX];
    bool dif = lm_sd3_diffusers_is_folder(p->path);
    if (!lm_path_join(sub, sizeof(sub), p->path, dif ? "tokenizer" : "clip"))
        return lm_errorf(err, LM_EINVAL, NULL, "tokenizer path %.200s is too long", p->path);
    lm_status st = lm_clip_tokenizer_load((lm_clip_tokenizer **)&p->obj, sub, err);
    if (st != LM_OK)
        return st;
    if (!lm_path_join(sub, sizeof(sub), p->path, dif ? "tokenizer_3" : "t5"))
        return lm_errorf(err, LM_EINVAL, NULL, "tokenizer path %.200s is too long", p->path);
    return lm_t5_tokenizer_load(&p->t5tok, sub, err);
}

/* Finds or loads a part. Called with the lock held. */
static lm_status part_get(const char *rp, lm_sd3_part_kind kind, lm_backend *be, lm_sd3_part **out,
                          lm_error *err)
{
    if (kind == LM_SD3_PART_TOKENIZERS)
        be = lm_backend_cpu(); /* tokenizers are host data whatever the device */
    for (lm_sd3_part *p = mgr.parts; p; p = p->next) {
        if (p->kind == kind && p->wanted == be && strcmp(p->path, rp) == 0) {
            *out = p;
            return LM_OK;
        }
    }
    lm_sd3_part *p = lm_calloc(1, sizeof(*p));
    if (!p || !(p->path = lm_strdup(rp))) {
        lm_free(p);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory loading %.200s", rp);
    }
    p->kind = kind;
    p->wanted = be;
    double t0 = lm_time_now();
    lm_status st;
    if (kind == LM_SD3_PART_TOKENIZERS) {
        st = load_tokenizers(p, err);
    } else {
        file_entry *f = NULL;
        st = file_get(rp, &f, err);
        if (st == LM_OK)
            st = load_component(p, f, err);
    }
    if (st != LM_OK) {
        part_free(p);
        return st;
    }
    if (kind == LM_SD3_PART_TOKENIZERS)
        LM_LOG_INFO("models", "loaded tokenizers from %s in %.2f s", rp, lm_time_now() - t0);
    else
        LM_LOG_INFO("models", "loaded %s from %s on %s in %.2f s", part_name(kind), rp,
                    lm_backend_name(part_backend(p, NULL)), lm_time_now() - t0);
    if (kind == LM_SD3_PART_TOKENIZERS)
        mgr.stats.tokenizer_loads++;
    else
        mgr.stats.component_loads++;
    mgr.stats.resident_parts++;
    p->next = mgr.parts;
    mgr.parts = p;
    *out = p;
    return LM_OK;
}

lm_status lm_sd3_models_acquire(lm_sd3_part **out, const char *path, lm_sd3_part_kind kind,
                                lm_backend *be, lm_error *err)
{
    if (!be)
        be = lm_backend_cpu();
    *out = NULL;
    if ((unsigned)kind > LM_SD3_PART_TOKENIZERS)
        return lm_errorf(err, LM_EINVAL, NULL, "bad model part kind %d", (int)kind);
    char *rp = real_path(path);
    if (!rp)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory loading a model");
    lm_sd3_part *p = NULL;
    pthread_mutex_lock(&mgr.lock);
    lm_status st = part_get(rp, kind, be, &p, err);
    if (st == LM_OK) {
        p->users++;
        p->last_used = lm_time_now();
        *out = p;
    }
    pthread_mutex_unlock(&mgr.lock);
    lm_free(rp);
    return st;
}

lm_sd3_part *lm_sd3_part_ref(lm_sd3_part *part)
{
    if (part) {
        pthread_mutex_lock(&mgr.lock);
        part->users++;
        pthread_mutex_unlock(&mgr.lock);
    }
    return part;
}

void lm_sd3_part_release(lm_sd3_part *part)
{
    if (!part)
        return;
    pthread_mutex_lock(&mgr.lock);
    LM_ASSERT(part->users > 0);
    part->users--;
    part->last_used = lm_time_now();
    pthread_mutex_unlock(&mgr.lock);
}

const lm_mmdit *lm_sd3_part_mmdit(const lm_sd3_part *p)
{
    return p && p->kind == LM_SD3_PART_MMDIT ? p->obj : NULL;
}

const lm_vae *lm_sd3_part_vae(const lm_sd3_part *p)
{
    return p && p->kind == LM_SD3_PART_VAE ? p->obj : NULL;
}

const lm_clip *lm_sd3_part_clip(const lm_sd3_part *p)
{
    bool clip = p && (p->kind == LM_SD3_PART_CLIP_L || p->kind == LM_SD3_PART_CLIP_G);
    return clip ? p->obj : NULL;
}

const lm_t5 *lm_sd3_part_t5(const lm_sd3_part *p)
{
    return p && p->kind == LM_SD3_PART_T5 ? p->obj : NULL;
}

const lm_clip_tokenizer *lm_sd3_part_clip_tokenizer(const lm_sd3_part *p)
{
    return p && p->kind == LM_SD3_PART_TOKENIZERS ? p->obj : NULL;
}

const lm_t5_tokenizer *lm_sd3_part_t5_tokenizer(const lm_sd3_part *p)
{
    return p && p->kind == LM_SD3_PART_TOKENIZERS ? p->t5tok : NULL;
}

const char *lm_sd3_part_path(const lm_sd3_part *p)
{
    return p ? p->path : "";
}

lm_backend *lm_sd3_part_backend(const lm_sd3_part *p)
{
    return p ? part_backend(p, NULL) : lm_backend_cpu();
}

/* ---- statistics and unloading ---- */

void lm_sd3_models_get_stats(lm_sd3_models_stats *out)
{
    pthread_mutex_lock(&mgr.lock);
    *out = mgr.stats;
    out->device_bytes = 0;
    for (const lm_sd3_part *p = mgr.parts; p; p = p->next) {
        size_t bytes = 0;
        part_backend(p, &bytes);
        out->device_bytes += bytes;
    }
    pthread_mutex_unlock(&mgr.lock);
}

static size_t free_parts(double idle_seconds)
{
    size_t freed = 0;
    double now = lm_time_now();
    pthread_mutex_lock(&mgr.lock);
    for (lm_sd3_part **pp = &mgr.parts; *pp;) {
        lm_sd3_part *p = *pp;
        if (p->users > 0 || now - p->last_used < idle_seconds) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        part_free(p);
        mgr.stats.resident_parts--;
        freed++;
    }
    /* Loaded parts keep their mappings alive themselves: files are only needed to load. */
    while (mgr.files) {
        file_entry *f = mgr.files;
        mgr.files = f->next;
        file_free(f);
        mgr.stats.resident_files--;
    }
    pthread_mutex_unlock(&mgr.lock);
    return freed;
}

size_t lm_sd3_models_free_unused(void)
{
    return free_parts(0.0);
}

size_t lm_sd3_models_free_idle(double idle_seconds)
{
    return free_parts(idle_seconds > 0 ? idle_seconds : 0.0);
}
