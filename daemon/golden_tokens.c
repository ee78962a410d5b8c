/* daemon/golden_tokens.c — `loom golden` for tokenizer goldens (tokens.json, TOKENS.md).
 *
 * A tokenizer golden is a JSON array of cases, each with a `prompt`. Each case is one check
 * (one line, named by its `id`): every field of TOKENS.md's schema that the case holds must
 * match what Loom's tokenizers make of the prompt — clip_ids_raw (lm_clip_tokenize),
 * clip_l_77, clip_g_77, clip_num_chunks, clip_l_chunks, clip_g_chunks, clip_weights, t5_77,
 * t5_len, t5_weights (lm_sd3_tokenize), weighted_segments (lm_prompt_weights_parse) and
 * t5_ids_raw (lm_t5_tokenize). Ids must be equal, weights within 1e-9; an absent
 * weighted_segments / clip_weights / t5_weights means every weight is 1. The line's "max abs"
 * is the largest weight error; a failure names the first field that differs. The variant
 * and reference fields (…_variants, sd3ref, t5_77_comfyui_vocab) describe other programs
 * and are not checked. */
#include "core/base/alloc.h"
#include "daemon/golden_impl.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#define WEIGHT_TOL 1e-9

bool lm_golden__is_tokens(const cJSON *doc)
{
    const cJSON *c;
    if (!cJSON_IsArray(doc) || cJSON_GetArraySize(doc) == 0)
        return false;
    cJSON_ArrayForEach(c, doc)
    {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "prompt")))
            return false;
        if (!cJSON_GetObjectItemCaseSensitive(c, "clip_l_77") &&
            !cJSON_GetObjectItemCaseSensitive(c, "t5_77") &&
            !cJSON_GetObjectItemCaseSensitive(c, "clip_ids_raw"))
            return false;
    }
    return true;
}

typedef struct {
    const cJSON *c;
    char why[400];
    double max_err; /* largest weight error */
} tcase;

static bool failf(tcase *t, const char *fmt, ...) LM_PRINTF(2, 3);

static bool failf(tcase *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof(t->why), fmt, ap);
    va_end(ap);
    return false;
}

static const cJSON *field(const tcase *t, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(t->c, key);
}

/* ids[0..n) against a JSON array of integers (absent field: true). */
static bool ids_equal(tcase *t, const char *key, const cJSON *want, const int32_t *ids, size_t n)
{
    const cJSON *v;
    size_t i = 0;
    if (!want)
        return true;
    cJSON_ArrayForEach(v, want)
    {
        if (i == n)
            return failf(t, "%s: got %zu ids, golden %d", key, n, cJSON_GetArraySize(want));
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)ids[i])
            return failf(t, "%s[%zu]: got %d, golden %g", key, i, ids[i],
                         cJSON_IsNumber(v) ? v->valuedouble : -1.0);
        i++;
    }
    return i == n || failf(t, "%s: got %zu ids, golden %zu", key, n, i);
}

static bool weights_equal(tcase *t, const char *key, const cJSON *want, const double *w, size_t n)
{
    const cJSON *v;
    size_t i = 0;
    cJSON_ArrayForEach(v, want)
    {
        if (i == n)
            return failf(t, "%s: got %zu weights, golden more", key, n);
        double d = cJSON_IsNumber(v) ? fabs(v->valuedouble - w[i]) : (double)INFINITY;
        t->max_err = LM_MAX(t->max_err, d);
        if (!(d <= WEIGHT_TOL))
            return failf(t, "%s[%zu]: got %.17g, golden %.17g", key, i, w[i],
                         cJSON_IsNumber(v) ? v->valuedouble : (double)NAN);
        i++;
    }
    return i == n || failf(t, "%s: got %zu weights, golden %zu", key, n, i);
}

/* A list of per-chunk lists (ids or weights) against a sequence of 77-id chunks. */
static bool chunks_equal(tcase *t, const char *key, const cJSON *want, const lm_token_seq *s,
                         bool weights)
{
    const cJSON *chunk;
    size_t k = 0, per = s->n_chunks ? s->len / s->n_chunks : 0;
    char what[64];
    if (!want)
        return true;
    if ((size_t)cJSON_GetArraySize(want) != s->n_chunks)
        return failf(t, "%s: got %zu chunks, golden %d", key, s->n_chunks,
                     cJSON_GetArraySize(want));
    cJSON_ArrayForEach(chunk, want)
    {
        snprintf(what, sizeof(what), "%s[%zu]", key, k);
        bool ok = weights ? weights_equal(t, what, chunk, s->weights + k * per, per)
                          : ids_equal(t, what, chunk, s->ids + k * per, per);
        if (!ok)
            return false;
        k++;
    }
    return true;
}

static bool all_ones(tcase *t, const char *key, const lm_token_seq *s)
{
    for (size_t i = 0; i < s->len; i++)
        if (s->weights[i] != 1.0)
            return failf(t, "%s: absent in the golden (all 1) but token %zu weighs %.17g", key, i,
                         s->weights[i]);
    return true;
}

static bool check_segments(tcase *t, const char *prompt)
{
    lm_error err;
    lm_prompt_segment *segs = NULL;
    size_t n = 0, i = 0;
    const cJSON *want = field(t, "weighted_segments"), *e;
    if (lm_prompt_weights_parse(prompt, &segs, &n, &err) != LM_OK)
        return failf(t, "weighted_segments: %s", err.msg);
    bool ok = true;
    if (!want) {
        for (i = 0; ok && i < n; i++)
            ok = segs[i].weight == 1.0 ||
                 failf(t, "weighted_segments: absent (all 1) but \"%s\" weighs %.17g", segs[i].text,
                       segs[i].weight);
    } else {
        cJSON_ArrayForEach(e, want)
        {
            const char *text = cJSON_GetStringValue(cJSON_GetArrayItem(e, 0));
            const cJSON *w = cJSON_GetArrayItem(e, 1);
            if (!ok || i == n || !text || !cJSON_IsNumber(w) || strcmp(text, segs[i].text) != 0 ||
                !(fabs(w->valuedouble - segs[i].weight) <= WEIGHT_TOL)) {
                ok = ok && failf(t, "weighted_segments[%zu]: got (\"%s\", %.17g), golden \"%s\"", i,
                                 i < n ? segs[i].text : "(none)", i < n ? segs[i].weight : 0.0,
                                 text ? text : "?");
                break;
            }
            t->max_err = LM_MAX(t->max_err, fabs(w->valuedouble - segs[i].weight));
            i++;
        }
        ok = ok && (i == n || failf(t, "weighted_segments: got %zu segments, golden %zu", n, i));
    }
    lm_prompt_segments_free(segs, n);
    return ok;
}

static bool check_clip(tcase *t, const lm_sd3_tokens *s)
{
    const cJSON *n = field(t, "clip_num_chunks"), *w = field(t, "clip_weights");
    bool ok = ids_equal(t, "clip_l_77", field(t, "clip_l_77"), s->clip_l.ids,
                        LM_MIN(s->clip_l.len, (size_t)LM_CLIP_CHUNK)) &&
              ids_equal(t, "clip_g_77", field(t, "clip_g_77"), s->clip_g.ids,
                        LM_MIN(s->clip_g.len, (size_t)LM_CLIP_CHUNK));
    if (ok && n &&
        (!cJSON_IsNumber(n) || n->valuedouble != (double)s->clip_l.n_chunks ||
         s->clip_g.n_chunks != s->clip_l.n_chunks))
        ok = failf(t, "clip_num_chunks: got %zu (CLIP-G %zu), golden %g", s->clip_l.n_chunks,
                   s->clip_g.n_chunks, cJSON_IsNumber(n) ? n->valuedouble : -1.0);
    ok = ok && chunks_equal(t, "clip_l_chunks", field(t, "clip_l_chunks"), &s->clip_l, false);
    ok = ok && chunks_equal(t, "clip_g_chunks", field(t, "clip_g_chunks"), &s->clip_g, false);
    if (w)
        ok = ok && chunks_equal(t, "clip_weights (CLIP-L)", w, &s->clip_l, true) &&
             chunks_equal(t, "clip_weights (CLIP-G)", w, &s->clip_g, true);
    else
        ok = ok && all_ones(t, "clip_weights (CLIP-L)", &s->clip_l) &&
             all_ones(t, "clip_weights (CLIP-G)", &s->clip_g);
    return ok;
}

static bool check_t5(tcase *t, const lm_sd3_tokens *s)
{
    const cJSON *len = field(t, "t5_len"), *w = field(t, "t5_weights");
    bool ok = ids_equal(t, "t5_77", field(t, "t5_77"), s->t5.ids, s->t5.len);
    if (ok && len && (!cJSON_IsNumber(len) || len->valuedouble != (double)s->t5.len))
        ok = failf(t, "t5_len: got %zu, golden %g", s->t5.len,
                   cJSON_IsNumber(len) ? len->valuedouble : -1.0);
    if (w)
        return ok && weights_equal(t, "t5_weights", w, s->t5.weights, s->t5.len);
    return ok && all_ones(t, "t5_weights", &s->t5);
}

/* The raw (unparsed, no specials) ids of both tokenizers. */
static bool check_raw(tcase *t, const lm_golden_run *run, const char *prompt)
{
    lm_error err;
    int32_t *ids = NULL;
    size_t n = 0;
    bool ok = true;
    if (field(t, "clip_ids_raw")) {
        if (lm_clip_tokenize(run->clip_tok, prompt, &ids, &n, &err) != LM_OK)
            return failf(t, "clip_ids_raw: %s", err.msg);
        ok = ids_equal(t, "clip_ids_raw", field(t, "clip_ids_raw"), ids, n);
        lm_free(ids);
        ids = NULL;
    }
    if (ok && field(t, "t5_ids_raw")) {
        if (lm_t5_tokenize(run->t5_tok, prompt, &ids, &n, &err) != LM_OK)
            return failf(t, "t5_ids_raw: %s", err.msg);
        ok = ids_equal(t, "t5_ids_raw", field(t, "t5_ids_raw"), ids, n);
        lm_free(ids);
    }
    return ok;
}

static bool check_case(tcase *t, const lm_golden_run *run)
{
    lm_error err;
    lm_sd3_tokens s;
    const char *prompt = cJSON_GetStringValue(field(t, "prompt"));
    if (!check_raw(t, run, prompt) || !check_segments(t, prompt))
        return false;
    if (lm_sd3_tokenize(run->clip_tok, run->t5_tok, prompt, &s, &err) != LM_OK)
        return failf(t, "lm_sd3_tokenize: %s", err.msg);
    bool ok = check_clip(t, &s) && check_t5(t, &s);
    lm_sd3_tokens_fini(&s);
    return ok;
}

void lm_golden__check_tokens(lm_golden_run *run, const cJSON *doc)
{
    lm_error err;
    char line[1200] = "";
    bool have = lm_golden__tokenizers(run, &err);
    if (!have)
        lm_error_format(&err, line, sizeof(line));
    const cJSON *c;
    int k = 0;
    cJSON_ArrayForEach(c, doc)
    {
        char id[96];
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "id"));
        snprintf(id, sizeof(id), "%s", s ? s : "");
        if (!s)
            snprintf(id, sizeof(id), "case %d", k);
        k++;
        if (!have) {
            lm_golden__report(run, id, "tokens", -1, -1, false, line);
            continue;
        }
        tcase t = { .c = c };
        bool pass = check_case(&t, run);
        lm_golden__report(run, id, "tokens", t.max_err, -1, pass, t.why);
    }
}
