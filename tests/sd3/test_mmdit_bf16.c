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
#include "tests/sd3/sd3_fixture.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#define BF16_ATOL 5e-2
#define BF16_RTOL 2e-2

static const gold_tol bf16_tol = { BF16_ATOL, BF16_RTOL };

/* Loads the model the golden's config names (NULL with a failed test when it cannot). */
static lm_mmdit *load_for(lm_safetensors *gold, lm_safetensors **ckpt)
{
    lm_error err;
    char rel[256];
    gold_checkpoint(gold, rel, sizeof(rel));
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
    lm_safetensors *gold = gold_open(golden_rel), *ckpt = NULL;
    if (!gold)
        return;
    lm_mmdit *m = load_for(gold, &ckpt);
    lm_tensor *x = gold_tensor(gold, "x"), *ctx = gold_tensor(gold, "context"),
              *y = gold_tensor(gold, "y");
    int steps = 0;
    lm_precision_set(LM_PRECISION_BF16);
    for (int k = 0; m && x && ctx && y; k++, steps++) {
        char name[64];
        snprintf(name, sizeof(name), "s%d.sigma", k);
        if (!lm_safetensors_find(gold, name))
            break;
        lm_tensor *sigma = gold_tensor(gold, name), *out = NULL, *den = NULL, *want = NULL;
        CHECK_OK(lm_mmdit_forward(m, x, sigma, ctx, y, NULL, &out, &err), &err);
        CHECK_OK(lm_mmdit_denoised(&den, x, out, sigma, &err), &err);
        snprintf(name, sizeof(name), "s%d.output", k);
        gold_compare(name, out, want = gold_tensor(gold, name), bf16_tol);
        lm_tensor_free(want);
        snprintf(name, sizeof(name), "s%d.denoised", k);
        gold_compare(name, den, want = gold_tensor(gold, name), bf16_tol);
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
