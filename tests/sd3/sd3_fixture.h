/* tests/sd3/sd3_fixture.h — helpers shared by the tests that check SD3 against the reference's
 * golden files in ../shared/golden (tests/sd3, tests/nodes): open a golden file, read its JSON
 * metadata (tolerances, params, the checkpoint its config names), its tensors and token ids,
 * and compare results by the golden README's rule |got - golden| <= atol + rtol*|golden|,
 * noting the largest differences. Also the small txt2img workflow the node tests run.
 * Every helper that cannot do its job fails the test, naming what is missing, and returns
 * NULL, false or a negative tolerance.
 * Header-only (static inline): the test runner compiles only tests/<area>/test_*.c. */
#ifndef LM_TESTS_SD3_SD3_FIXTURE_H
#define LM_TESTS_SD3_SD3_FIXTURE_H

#include "core/io/safetensors.h"
#include "core/tensor/tensor.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    double atol, rtol;
} gold_tol;

/* The safetensors file LOOM_SHARED/<rel> (close with lm_safetensors_close). */
static inline lm_safetensors *gold_open(const char *rel)
{
    lm_error err;
    lm_safetensors *st = NULL;
    const char *path = test_shared(rel);
    if (path && lm_safetensors_open(&st, path, &err) != LM_OK)
        test__fail_err(__FILE__, __LINE__, path, err.code, &err);
    return st;
}

/* golden/<flavour>_<kind>.safetensors, e.g. ("sd3m", "sample"). */
static inline lm_safetensors *gold_open_set(const char *flavour, const char *kind)
{
    char rel[128];
    snprintf(rel, sizeof(rel), "golden/%s_%s.safetensors", flavour, kind);
    return gold_open(rel);
}

/* Metadata `key` parsed as JSON (free with cJSON_Delete). */
static inline cJSON *gold_metadata(const lm_safetensors *st, const char *key)
{
    const char *text = lm_safetensors_metadata(st, key);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (!j)
        test__fail(__FILE__, __LINE__, "%s: metadata \"%s\" is missing or not JSON",
                   lm_safetensors_path(st), key);
    return j;
}

/* tolerances.<group> of the golden file ({-1, -1} when absent). */
static inline gold_tol gold_tolerance(const lm_safetensors *st, const char *group)
{
    gold_tol t = { -1, -1 };
    cJSON *root = gold_metadata(st, "tolerances");
    const cJSON *g = cJSON_GetObjectItem(root, group);
    const cJSON *a = cJSON_GetObjectItem(g, "atol"), *r = cJSON_GetObjectItem(g, "rtol");
    if (cJSON_IsNumber(a) && cJSON_IsNumber(r))
        t = (gold_tol){ a->valuedouble, r->valuedouble };
    else
        test__fail(__FILE__, __LINE__, "%s: no tolerances.%s", lm_safetensors_path(st), group);
    cJSON_Delete(root);
    return t;
}

/* The number obj.<key> of a metadata object (0 when absent). */
static inline double gold_param(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    if (!cJSON_IsNumber(v)) {
        test__fail(__FILE__, __LINE__, "golden metadata: \"%s\" is missing or not a number", key);
        return 0;
    }
    return v->valuedouble;
}

/* "golden/<checkpoint>" for the checkpoint the golden's `config` names, written into rel;
 * false when it names none (rel then names "(config.checkpoint missing)"). */
static inline bool gold_checkpoint(const lm_safetensors *golden, char *rel, size_t size)
{
    cJSON *config = gold_metadata(golden, "config");
    const char *ck = cJSON_GetStringValue(cJSON_GetObjectItem(config, "checkpoint"));
    snprintf(rel, size, "golden/%s", ck ? ck : "(config.checkpoint missing)");
    cJSON_Delete(config);
    return ck != NULL;
}

/* Tensor `name` of a golden file, as stored (mapped, on the CPU). */
static inline lm_tensor *gold_tensor(lm_safetensors *st, const char *name)
{
    lm_error err;
    lm_tensor *t = NULL;
    if (lm_safetensors_tensor(&t, st, name, &err) != LM_OK)
        test__fail_err(__FILE__, __LINE__, name, err.code, &err);
    return t;
}

/* The token ids of I64 golden tensor `name` as int32 (malloc'd), their count in *n. */
static inline int32_t *gold_ids(lm_safetensors *st, const char *name, size_t *n)
{
    lm_tensor *t = gold_tensor(st, name);
    *n = 0;
    if (!t || t->dtype != LM_DTYPE_I64) {
        test__fail(__FILE__, __LINE__, "%s: no I64 ids", name);
        lm_tensor_free(t);
        return NULL;
    }
    *n = (size_t)lm_tensor_numel(t);
    int32_t *ids = malloc(*n * sizeof(int32_t) + 1);
    const int64_t *p = lm_tensor_data(t);
    for (size_t i = 0; i < *n; i++)
        ids[i] = (int32_t)p[i];
    lm_tensor_free(t);
    return ids;
}

/* a and b (both present) have the same shape. */
static inline bool gold_shapes_equal(const lm_tensor *a, const lm_tensor *b)
{
    bool same = a && b && a->ndim == b->ndim;
    for (int d = 0; same && d < a->ndim; d++)
        same = a->shape[d] == b->shape[d];
    return same;
}

/* Fails the test describing a result and its golden that do not match in size. */
static inline void gold__fail_sizes(const char *what, const lm_tensor *got, const lm_tensor *want)
{
    char dg[96] = "missing", dw[96] = "missing";
    if (got)
        lm_tensor_describe(got, dg, sizeof(dg));
    if (want)
        lm_tensor_describe(want, dw, sizeof(dw));
    test__fail(__FILE__, __LINE__, "%s: result %s, golden %s", what, dg, dw);
}

/* gold_shapes_equal(got, want), or a failed test describing both. */
static inline bool gold_same_shape(const char *what, const lm_tensor *got, const lm_tensor *want)
{
    bool same = gold_shapes_equal(got, want);
    if (!same)
        gold__fail_sizes(what, got, want);
    return same;
}

/* |got[i] - want[i]| <= atol + rtol*|want[i]| for every i (NaN fails); notes the max abs and
 * rel errors, the rms error and how much of the tolerance was used; fails naming the count
 * off and the first element off. */
static inline bool gold_compare_floats(const char *what, const float *got, const float *want,
                                       int64_t n, gold_tol t)
{
    double max_abs = 0, max_rel = 0, used = 0, se = 0, sw = 0;
    int64_t bad = 0, first = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]), mag = fabs((double)want[i]);
        double allowed = t.atol + t.rtol * mag;
        if (!(d <= allowed) && bad++ == 0)
            first = i;
        if (d > max_abs || d != d)
            max_abs = d;
        if (mag > 1e-3 && d / mag > max_rel)
            max_rel = d / mag;
        if (allowed > 0 && d / allowed > used)
            used = d / allowed;
        se += d * d;
        sw += mag * mag;
    }
    test_note("%-34s max abs %.3g, max rel %.3g (|g| > 1e-3), rms err/rms golden %.2g, %.0f%% of "
              "the tolerance",
              what, max_abs, max_rel, sqrt(se / (sw > 0 ? sw : 1)), 100 * used);
    if (bad)
        test__fail(__FILE__, __LINE__,
                   "%s: %lld of %lld off; first [%lld] %.9g vs %.9g (atol %g rtol %g)", what,
                   (long long)bad, (long long)n, (long long)first, (double)got[first],
                   (double)want[first], t.atol, t.rtol);
    return bad == 0;
}

/* gold_compare_floats on two tensors of any dtype and backend holding as many elements. */
static inline bool gold_compare(const char *what, const lm_tensor *got, const lm_tensor *want,
                                gold_tol t)
{
    lm_error err;
    lm_tensor *g = NULL, *w = NULL;
    if (!got || !want || lm_tensor_numel(got) != lm_tensor_numel(want)) {
        gold__fail_sizes(what, got, want);
        return false;
    }
    bool ok = lm_tensor_to_f32_host(&g, got, &err) == LM_OK &&
              lm_tensor_to_f32_host(&w, want, &err) == LM_OK;
    if (!ok)
        test__fail_err(__FILE__, __LINE__, what, err.code, &err);
    else
        ok = gold_compare_floats(what, lm_tensor_data(g), lm_tensor_data(w), lm_tensor_numel(g), t);
    lm_tensor_free(g);
    lm_tensor_free(w);
    return ok;
}

/* Loom YAML: txt2img at 64x64 (2 euler steps, sgm_uniform, cfg 4.5, seed 42) from the
 * checkpoint named `ckpt` (a string literal, "%s" for a format) through
 * CheckpointLoaderSimple; output `image`. */
#define SD3_TXT2IMG_YAML(ckpt)                                                                     \
    "nodes:\n"                                                                                     \
    "  ckpt: {type: CheckpointLoaderSimple, inputs: {ckpt_name: " ckpt "}}\n"                      \
    "  pos: {type: CLIPTextEncode, inputs: {text: a red fox in the snow, clip: {link: "            \
    "ckpt.CLIP}}}\n"                                                                               \
    "  neg: {type: CLIPTextEncode, inputs: {text: '', clip: {link: ckpt.CLIP}}}\n"                 \
    "  latent: {type: EmptySD3LatentImage, inputs: {width: 64, height: 64, batch_size: 1}}\n"      \
    "  sample:\n"                                                                                  \
    "    type: KSampler\n"                                                                         \
    "    inputs: {model: {link: ckpt.MODEL}, seed: 42, steps: 2, cfg: 4.5, sampler_name: euler,\n" \
    "             scheduler: sgm_uniform, positive: {link: pos.CONDITIONING},\n"                   \
    "             negative: {link: neg.CONDITIONING}, latent_image: {link: latent.LATENT},\n"      \
    "             denoise: 1.0}\n"                                                                 \
    "  decode: {type: VAEDecode, inputs: {samples: {link: sample.LATENT}, vae: {link: "            \
    "ckpt.VAE}}}\n"                                                                                \
    "outputs:\n"                                                                                   \
    "  image: {link: decode.IMAGE}\n"

#endif
