/* tests/tensor/test_vmath.c — the CPU backend's vectorised math (core/tensor/cpu/vmath.c)
 * in both of its builds: the AVX2+FMA one the other tests exercise on this machine, and
 * the baseline one, forced here with LOOM_CPU_BASELINE=1 before the first op of the test
 * process (each test runs in its own process; under `run -n` the setting may come too
 * late and the fast build is checked twice). Also exp at the edges of the float range. */
#include "tests/tensor/tt.h"

#include <float.h>
#include <stdlib.h>

typedef lm_status (*unary_fn)(lm_tensor **, const lm_tensor *, lm_error *);

/* Every vectorised op on a length that leaves a tail of 3 after the 8-wide loop. */
static void vector_ops_match_reference(void)
{
    static const struct {
        const char *what;
        unary_fn fn;
        ref_unary_kind kind;
        float lo, hi;
    } cases[] = {
        { "exp", lm_exp, REF_EXP, -80, 80 },
        { "silu", lm_silu, REF_SILU, -30, 30 },
        { "quick_gelu", lm_quick_gelu, REF_QUICK_GELU, -30, 30 },
        { "gelu_tanh", lm_gelu_tanh, REF_GELU_TANH, -10, 10 },
    };
    int64_t shape[2] = { 3, 1001 }, n = 3 * 1001;
    lm_error err;
    for (size_t c = 0; c < LM_COUNTOF(cases); c++) {
        float *xv, *want = malloc((size_t)n * sizeof(float));
        lm_tensor *x = tt_rand(&xv, LM_DTYPE_F32, 900 + c, cases[c].lo, cases[c].hi, 2, shape);
        lm_tensor *y = NULL;
        ref_unary(want, xv, n, cases[c].kind);
        CHECK_OK(cases[c].fn(&y, x, &err), &err);
        tt_check(cases[c].what, y, want, n, 1e-6, 2e-6);
        lm_tensor_free(y);
        lm_tensor_free(x);
        free(xv);
        free(want);
    }
}

/* Softmax and attention use the vectorised max and exp-and-sum. */
static void softmax_and_attention_match_reference(void)
{
    lm_error err;
    int64_t s2[2] = { 5, 77 }, s3[3] = { 1, 45, 2 * 24 };
    float *xv, *qv, *kv, *vv;
    float *want = malloc(sizeof(float) * 5 * 77), *o = malloc(sizeof(float) * 45 * 48);
    lm_tensor *x = tt_rand(&xv, LM_DTYPE_F32, 910, -20, 20, 2, s2), *y = NULL;
    ref_softmax(want, xv, 5, 77);
    CHECK_OK(lm_softmax(&y, x, &err), &err);
    tt_check("softmax", y, want, 5 * 77, 1e-6, 1e-5);
    lm_tensor *q = tt_rand(&qv, LM_DTYPE_F32, 911, -2, 2, 3, s3);
    lm_tensor *k = tt_rand(&kv, LM_DTYPE_F32, 912, -2, 2, 3, s3);
    lm_tensor *v = tt_rand(&vv, LM_DTYPE_F32, 913, -2, 2, 3, s3), *a = NULL;
    lm_attention_opts opts = { .heads = 2, .causal = true };
    ref_attention(o, qv, kv, vv, NULL, 1, 45, 45, 2, 24, 48, 48, 48, 1, 1, 1.0f / sqrtf(24.0f),
                  true);
    CHECK_OK(lm_attention(&a, q, k, v, NULL, &opts, &err), &err);
    tt_check("causal attention", a, o, 45 * 48, 2e-6, 1e-5);
    lm_tensor *ts[] = { x, y, q, k, v, a };
    for (size_t i = 0; i < LM_COUNTOF(ts); i++)
        lm_tensor_free(ts[i]);
    float *fs[] = { xv, qv, kv, vv, want, o };
    for (size_t i = 0; i < LM_COUNTOF(fs); i++)
        free(fs[i]);
}

void test_tensor_vmath__baseline_build_matches_reference(void)
{
    setenv("LOOM_CPU_BASELINE", "1", 1);
    vector_ops_match_reference();
    softmax_and_attention_match_reference();
}

void test_tensor_vmath__default_build_matches_reference(void)
{
    unsetenv("LOOM_CPU_BASELINE");
    vector_ops_match_reference();
    softmax_and_attention_match_reference();
}

/* exp near the ends of the float range: 0 below the normal range, +inf above FLT_MAX,
 * correct values just inside; SiLU stays finite where exp(-x) overflows. */
void test_tensor_vmath__exp_range_edges(void)
{
    lm_error err;
    float in[9] = { -200.0f, -87.5f, -87.0f, -1.0f, 0.0f, 1.0f, 88.0f, 88.8f, 200.0f };
    int64_t shape[1] = { 9 };
    lm_tensor *x = tt_from(in, 1, shape), *y = NULL, *s = NULL;
    REQUIRE_OK(lm_exp(&y, x, &err), &err);
    const float *e = lm_tensor_data(y);
    CHECK(e[0] == 0.0f);
    CHECK(e[1] >= 0.0f && e[1] < 1.2e-38f);
    for (int i = 2; i < 7; i++)
        CHECK_NEAR(e[i], exp((double)in[i]), 2e-7 * exp((double)in[i]));
    CHECK(isinf(e[7]) && e[7] > 0);
    CHECK(isinf(e[8]) && e[8] > 0);
    REQUIRE_OK(lm_silu(&s, x, &err), &err);
    const float *si = lm_tensor_data(s);
    CHECK(si[0] == 0.0f); /* -200 * sigmoid(-200): exp(200) is inf, the product is -0 */
    CHECK_NEAR(si[8], 200.0, 1e-4);
    CHECK_NEAR(si[3], -1.0 / (1.0 + exp(1.0)), 1e-7);
    lm_tensor_free(x);
    lm_tensor_free(y);
    lm_tensor_free(s);
}
