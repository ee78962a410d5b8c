/* tests/sd3/test_mmdit_bf16.c — the MMDiT (sd3m) and MMDiT-X (sd35m) golden forwards with
 * the CPU's products in bf16 (LM_PRECISION_BF16, core/tensor/precision.h).
 *
 * The goldens are fp32; bf16 rounds every linear layer's inputs to 8 bits of mantissa, so
 * the f32 tolerance of the golden files does not apply. The tolerance here is stated
 * (docs/models.md "bf16 precision"): |got - golden| <= BF16_ATOL + BF16_RTOL·|golden| on
 * every element of s<k>.output and s<k>.denoised, with the measured maxima noted. Measured
 * on both tiny models: max abs 0.021 (outputs up to ~5 in magnitude), rms error 0.1-0.5% of
 * the rms output, at most 42% of this tolerance. Skipped with a note where the CPU lacks
 * AVX512-BF16. */
#include "core/io/safetensors.h"
#include "core/tensor/ops.h"
#include "core/tensor/precision.h"
#include "nodes/sd3/mmdit.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#define BF16_ATOL 5e-2
#define BF16_RTOL 2e-2

/* Compares got with want elementwise; notes max abs/rel errors; fails naming the first
 * element off. */
static void compare(const char *what, const lm_tensor *got, const lm_tensor *want)
{
    lm_error err;
    lm_tensor *g = NULL, *w = NULL;
    if (!got || !want || lm_tensor_numel(got) != lm_tensor_numel(want)) {
        test__fail(__FILE__, __LINE__, "%s: missing result or size mismatch", what);
        return;
    }
    if (lm_tensor_to_f32_host(&g, got, &err) != LM_OK ||
        lm_tensor_to_f32_host(&w, want, &err) != LM_OK) {
        test__fail_err(__FILE__, __LINE__, what, err.code, &err);
        lm_tensor_free(g);
        return;
    }
    const float *a = lm_tensor_data(g), *b = lm_tensor_data(w);
    double max_abs = 0, max_rel = 0, used = 0, se = 0, sg = 0;
    int64_t bad = 0, worst = 0, n = lm_tensor_numel(g);
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]), mag = fabs((double)b[i]);
        if (!(d <= BF16_ATOL + BF16_RTOL * mag) && bad++ == 0)
            worst = i;
        max_abs = d > max_abs || d != d ? d : max_abs;
        max_rel = mag > 1e-3 && d / mag > max_rel ? d / mag : max_rel;
        used = d / (BF16_ATOL + BF16_RTOL * mag) > used ? d / (BF16_ATOL + BF16_RTOL * mag) : used;
        se += d * d;
        sg += mag * mag;
    }
    test_note("%-12s max abs %.3g, max rel %.3g (|g| > 1e-3), rms err/rms golden %.2g, "
              "%.0f%% of the tolerance",
              what, max_abs, max_rel, sqrt(se / (sg > 0 ? sg : 1)), 100 * used);
    if (bad)
        test__fail(__FILE__, __LINE__, "%s: %lld off; first [%lld] %.9g vs %.9g (atol %g rtol %g)",
                   what, (long long)bad, (long long)worst, (double)a[worst], (double)b[worst],
                   BF16_ATOL, BF16_RTOL);
    lm_tensor_free(g);
    lm_tensor_free(w);
}

static lm_tensor *golden(lm_safetensors *st, const char *name)
{
    lm_error err;
    lm_tensor *t = NULL;
    if (lm_safetensors_tensor(&t, st, name, &err) != LM_OK)
        test__fail_err(__FILE__, __LINE__, name, err.code, &err);
    return t;
}

/* Loads the model the golden's config names (NULL with a failed test when it cannot). */
static lm_mmdit *load_for(lm_safetensors *gold, lm_safetensors **ckpt)
{
    lm_error err;
    cJSON *config = cJSON_Parse(lm_safetensors_metadata(gold, "config"));
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(config, "checkpoint"));
    char rel[256];
    snprintf(rel, sizeof(rel), "golden/%s", name ? name : "(config.checkpoint missing)");
    cJSON_Delete(config);
    const char *path = test_shared(rel);
    if (!path)
        return NULL;
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_mmdit *m = NULL;
    if (lm_safetensors_open(ckpt, path, &err) != LM_OK) {
        test__fail_err(__FILE__, __LINE__, path, err.code, &err);
        return NULL;
    }
    lm_sd3_detect(*ckpt, found, w);
    if (!found[LM_SD3_MMDIT] || lm_mmdit_load(&m, &w[LM_SD3_MMDIT], &err) != LM_OK)
        test__fail(__FILE__, __LINE__, "%s: no loadable MMDiT", path);
    return m;
}

/* Every step s<k> of the golden file at bf16: output and denoised. */
static void golden_bf16(const char *golden_rel)
{
    lm_error err;
    if (!lm_precision_native(LM_PRECISION_BF16)) {
        test_note("skipped: this CPU lacks AVX512-BF16");
        return;
    }
    const char *gpath = test_shared(golden_rel);
    lm_safetensors *gold = NULL, *ckpt = NULL;
    if (!gpath)
        return;
    REQUIRE_OK(lm_safetensors_open(&gold, gpath, &err), &err);
    lm_mmdit *m = load_for(gold, &ckpt);
    lm_tensor *x = golden(gold, "x"), *ctx = golden(gold, "context"), *y = golden(gold, "y");
    int steps = 0;
    lm_precision_set(LM_PRECISION_BF16);
    for (int k = 0; m && x && ctx && y; k++, steps++) {
        char name[64];
        snprintf(name, sizeof(name), "s%d.sigma", k);
        if (!lm_safetensors_find(gold, name))
            break;
        lm_tensor *sigma = golden(gold, name), *out = NULL, *den = NULL, *want = NULL;
        CHECK_OK(lm_mmdit_forward(m, x, sigma, ctx, y, NULL, &out, &err), &err);
        CHECK_OK(lm_mmdit_denoised(&den, x, out, sigma, &err), &err);
        snprintf(name, sizeof(name), "s%d.output", k);
        compare(name, out, want = golden(gold, name));
        lm_tensor_free(want);
        snprintf(name, sizeof(name), "s%d.denoised", k);
        compare(name, den, want = golden(gold, name));
        lm_tensor_free(want);
        lm_tensor_free(sigma);
        lm_tensor_free(out);
        lm_tensor_free(den);
    }
    lm_precision_set(LM_PRECISION_F32);
    CHECK(steps >= 1);
    lm_tensor_free(x);
    lm_tensor_free(ctx);
    lm_tensor_free(y);
    lm_mmdit_free(m);
    lm_safetensors_close(ckpt);
    lm_safetensors_close(gold);
}

void test_sd3_mmdit_bf16__sd3m_golden(void)
{
    golden_bf16("golden/sd3m_mmdit.safetensors");
}

void test_sd3_mmdit_bf16__sd35m_golden(void)
{
    golden_bf16("golden/sd35m_mmdit.safetensors");
}
