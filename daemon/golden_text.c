/* daemon/golden_text.c — `loom golden` for text-encoder goldens: CLIP-L, CLIP-G, T5 and
 * SD3's conditioning.
 *
 * Cases come from the tensor names: every INPUT "<case>.<encoder>.ids" (encoder clip_l,
 * clip_g or t5xxl) is fed to that encoder of the checkpoint and each
 * "<case>.<encoder>.<result>" present is compared under the "text" group:
 *   CLIP: embeddings, penultimate, last_hidden_ln, pooled_raw, pooled_projected
 *         (lm_clip_forward) and pooled, SD3's pooled vector (lm_clip_encode);
 *   T5:   embeddings, last_hidden, position_bias.
 * "<case>.context" and "<case>.pooled" come from lm_sd3_condition on the case's three id
 * sets. "t5.buckets_*" tables are rebuilt with lm_t5_buckets and must be equal ("exact"). */
#include "core/base/alloc.h"
#include "core/tensor/ops.h"
#include "daemon/golden_impl.h"
#include "nodes/sd3/conditioner.h"

#include <string.h>

static const char *const encoders[3] = { "clip_l", "clip_g", "t5xxl" };

static int encoder_index(const char *enc, size_t len)
{
    for (int i = 0; i < 3; i++)
        if (strlen(encoders[i]) == len && strncmp(enc, encoders[i], len) == 0)
            return i;
    return -1;
}

/* "<case>.<encoder>.ids" -> case (into cas) and encoder index; -1 otherwise. */
static int ids_name(const char *name, char *cas, size_t size)
{
    size_t len = strlen(name);
    const char *dot = strchr(name, '.');
    if (len < 5 || strcmp(name + len - 4, ".ids") != 0 || !dot || (size_t)(dot - name) >= size)
        return -1;
    int enc = encoder_index(dot + 1, len - 4 - (size_t)(dot + 1 - name));
    if (enc >= 0)
        snprintf(cas, size, "%.*s", (int)(dot - name), name);
    return enc;
}

bool lm_golden__is_text(const lm_golden_file *f)
{
    char cas[128];
    for (size_t i = 0; i < lm_safetensors_count(f->st); i++) {
        const char *name = lm_safetensors_at(f->st, i)->name;
        if (ids_name(name, cas, sizeof(cas)) >= 0 || strncmp(name, "t5.buckets_", 11) == 0)
            return true;
    }
    return false;
}

static void fail_encoder(lm_golden_file *f, const char *cas, int enc, const lm_error *err)
{
    char prefix[160];
    snprintf(prefix, sizeof(prefix), "%s.%s.", cas, encoders[enc]);
    lm_golden__fail_prefix(f, prefix, err);
}

/* ---- CLIP ---- */

static const char *const clip_results[5] = { "embeddings", "penultimate", "last_hidden_ln",
                                             "pooled_raw", "pooled_projected" };

static lm_status clip_forward(lm_golden_file *f, const char *cas, int enc, const lm_clip *clip,
                              const int32_t *ids, size_t n, lm_error *err)
{
    char name[200];
    unsigned want = 0;
    for (unsigned r = 0; r < 5; r++) {
        snprintf(name, sizeof(name), "%s.%s.%s", cas, encoders[enc], clip_results[r]);
        if (lm_golden__has(f, name))
            want |= 1u << r; /* LM_CLIP_WANT_* in clip_results order */
    }
    if (!want)
        return LM_OK;
    lm_clip_hidden h;
    lm_status st = lm_clip_forward(clip, ids, n, want, &h, err);
    if (st != LM_OK)
        return st;
    const lm_tensor *got[5] = { h.embeddings, h.penultimate, h.last_hidden_ln, h.pooled_raw,
                                h.pooled_projected };
    for (int r = 0; r < 5; r++) {
        snprintf(name, sizeof(name), "%s.%s.%s", cas, encoders[enc], clip_results[r]);
        lm_golden__check(f, name, "text", got[r]);
    }
    lm_clip_hidden_fini(&h);
    return LM_OK;
}

static void clip_case(lm_golden_file *f, const char *cas, int enc, const char *ids_name_)
{
    lm_error err;
    const lm_clip *clip = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    char name[200];
    lm_tensor *pooled = NULL;
    lm_status st = lm_golden__ids(f, ids_name_, &ids, &n, &err);
    if (st == LM_OK)
        st = lm_golden__clip(f, enc == 0 ? LM_CLIP_KIND_L : LM_CLIP_KIND_G, &clip, &err);
    if (st == LM_OK)
        st = clip_forward(f, cas, enc, clip, ids, n, &err);
    snprintf(name, sizeof(name), "%s.%s.pooled", cas, encoders[enc]);
    if (st == LM_OK && lm_golden__has(f, name))
        st = lm_clip_encode(clip, ids, n, NULL, NULL, &pooled, &err);
    if (st == LM_OK)
        lm_golden__check(f, name, "text", pooled);
    else
        fail_encoder(f, cas, enc, &err);
    lm_tensor_free(pooled);
    lm_free(ids);
}

/* ---- T5 ---- */

static void t5_case(lm_golden_file *f, const char *cas, const char *ids_name_)
{
    lm_error err;
    const lm_t5 *t5 = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    char name[3][200];
    lm_tensor *got[3] = { NULL, NULL, NULL };
    lm_status st = lm_golden__ids(f, ids_name_, &ids, &n, &err);
    if (st == LM_OK)
        st = lm_golden__t5(f, &t5, &err);
    snprintf(name[0], sizeof(name[0]), "%s.t5xxl.embeddings", cas);
    snprintf(name[1], sizeof(name[1]), "%s.t5xxl.last_hidden", cas);
    snprintf(name[2], sizeof(name[2]), "%s.t5xxl.position_bias", cas);
    if (st == LM_OK && lm_golden__has(f, name[0]))
        st = lm_t5_embed(t5, ids, n, &got[0], &err);
    if (st == LM_OK && lm_golden__has(f, name[1]))
        st = lm_t5_encode(t5, ids, n, NULL, &got[1], &err);
    if (st == LM_OK && lm_golden__has(f, name[2]))
        st = lm_t5_position_bias(t5, (int64_t)n, &got[2], &err);
    for (int i = 0; i < 3; i++) {
        if (st == LM_OK)
            lm_golden__check(f, name[i], "text", got[i]);
        lm_tensor_free(got[i]);
    }
    if (st != LM_OK)
        fail_encoder(f, cas, 2, &err);
    lm_free(ids);
}

static void buckets_case(lm_golden_file *f, const char *name)
{
    lm_error err;
    const lm_t5 *t5 = NULL;
    lm_tensor *b = NULL;
    const lm_safetensors_entry *e = lm_safetensors_find(f->st, name);
    lm_status st = lm_golden__t5(f, &t5, &err);
    if (st == LM_OK && e->ndim != 2)
        st = lm_errorf(&err, LM_EFORMAT, "golden_shape", "%s is not a 2-D table", name);
    if (st == LM_OK) {
        const lm_t5_config *c = lm_t5_config_of(t5);
        st = lm_t5_buckets(&b, lm_backend_cpu(), e->shape[0], e->shape[1], c->num_buckets,
                           c->max_distance, true, &err);
    }
    if (st == LM_OK)
        lm_golden__check(f, name, "exact", b);
    else
        lm_golden__fail(f, name, "exact", &err);
    lm_tensor_free(b);
}

/* ---- conditioning ---- */

static void condition_case(lm_golden_file *f, const char *cas)
{
    lm_error err;
    const lm_clip *l = NULL, *g = NULL;
    const lm_t5 *t5 = NULL;
    int32_t *ids[3] = { NULL, NULL, NULL };
    lm_sd3_text_ids in[3];
    lm_tensor *ctx = NULL, *y = NULL;
    char name[200];
    memset(in, 0, sizeof(in));
    lm_status st = LM_OK;
    for (int i = 0; i < 3 && st == LM_OK; i++) {
        snprintf(name, sizeof(name), "%s.%s.ids", cas, encoders[i]);
        st = lm_golden__ids(f, name, &ids[i], &in[i].n, &err);
        in[i].ids = ids[i];
    }
    if (st == LM_OK)
        st = lm_golden__clip(f, LM_CLIP_KIND_L, &l, &err);
    if (st == LM_OK)
        st = lm_golden__clip(f, LM_CLIP_KIND_G, &g, &err);
    if (st == LM_OK)
        st = lm_golden__t5(f, &t5, &err);
    if (st == LM_OK)
        st = lm_sd3_condition(l, g, t5, &in[0], &in[1], &in[2], NULL, &ctx, &y, &err);
    snprintf(name, sizeof(name), "%s.context", cas);
    st == LM_OK ? lm_golden__check(f, name, "text", ctx) : lm_golden__fail(f, name, "text", &err);
    snprintf(name, sizeof(name), "%s.pooled", cas);
    st == LM_OK ? lm_golden__check(f, name, "text", y) : lm_golden__fail(f, name, "text", &err);
    lm_tensor_free(ctx);
    lm_tensor_free(y);
    for (int i = 0; i < 3; i++)
        lm_free(ids[i]);
}

/* "<case>.context" / "<case>.pooled": the case, when the name has that form. */
static bool condition_name(const char *name, char *cas, size_t size)
{
    const char *dot = strchr(name, '.');
    if (!dot || strchr(dot + 1, '.') || (size_t)(dot - name) >= size ||
        (strcmp(dot + 1, "context") != 0 && strcmp(dot + 1, "pooled") != 0))
        return false;
    snprintf(cas, size, "%.*s", (int)(dot - name), name);
    return true;
}

void lm_golden__check_text(lm_golden_file *f)
{
    size_t count = lm_safetensors_count(f->st);
    char cas[128];
    for (size_t i = 0; i < count; i++) {
        const char *name = lm_safetensors_at(f->st, i)->name;
        int enc = ids_name(name, cas, sizeof(cas));
        if (strncmp(name, "t5.buckets_", 11) == 0 && lm_golden__has(f, name))
            buckets_case(f, name);
        else if (enc == 2)
            t5_case(f, cas, name);
        else if (enc >= 0)
            clip_case(f, cas, enc, name);
    }
    for (size_t i = 0; i < count; i++) {
        const char *name = lm_safetensors_at(f->st, i)->name;
        if (condition_name(name, cas, sizeof(cas)) && lm_golden__has(f, name))
            condition_case(f, cas);
    }
}
