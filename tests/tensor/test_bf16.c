/* tests/tensor/test_bf16.c — lm_linear under LM_PRECISION_BF16 (core/tensor/precision.h).
 *
 * Two references: (1) x and w rounded to bf16 (nearest even, by this file's own rounding)
 * and summed in double: the kernel's only difference is its f32 accumulation, so the
 * tolerance is the f32 tests' (1e-5 up to K ~ 1000, 3e-5 at K 1536-2048 for |x|,|w| <= 1);
 * (2) the f32 product of the unrounded values: bf16 keeps 8 bits of mantissa, each term is
 * off by up to ~2^-8 relative and the errors add like a random walk: measured max |diff|
 * 3.2e-3·sqrt(K) for |x|,|w| <= 1, so the tolerance is atol 8e-3·sqrt(K), rtol 1e-2.
 * Odd sizes straddle the kernel's blocks (6 rows, 64 columns, 256 k); every weight dtype;
 * a non-contiguous x. Without AVX512-BF16 the kernel tests note the skip and pass; the
 * fallback test runs everywhere. */
#include "core/tensor/precision.h"
#include "tests/tensor/tt.h"

#include <stdlib.h>

/* Round to nearest even bf16, returned as the float it represents (finite inputs). */
static float round_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* y = bf16(x)·bf16(w)ᵀ + b, summed in double. */
static void ref_linear_bf16(float *y, const float *x, const float *w, const float *b, int64_t M,
                            int64_t K, int64_t N)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)round_bf16(x[i * K + k]) * (double)round_bf16(w[n * K + k]);
            y[i * N + n] = (float)(s + (b ? (double)b[n] : 0.0));
        }
}

static bool have_bf16(void)
{
    if (lm_precision_native(LM_PRECISION_BF16))
        return true;
    test_note("skipped: this CPU lacks AVX512-BF16 (lm_precision_native(BF16) is false)");
    return false;
}

/* lm_linear at BF16 on x [M, K] and w [N, K] of dtype wdt, against both references. */
static void bf16_case(const char *what, int64_t M, int64_t K, int64_t N, lm_dtype wdt, bool bias,
                      double tight)
{
    lm_error err;
    int64_t xs[2] = { M, K }, ys[2] = { M, N };
    tt_operands c;
    tt_linear_operands(&c, 2, xs, N, wdt, bias, 11);
    lm_tensor *y = NULL;
    float *want = malloc((size_t)(M * N) * sizeof(float));
    ref_linear_bf16(want, c.xv, c.wv, c.bv, M, K, N);
    lm_precision_set(LM_PRECISION_BF16);
    CHECK_OK(lm_linear(&y, c.x, c.w, c.b, &err), &err);
    lm_precision_set(LM_PRECISION_F32);
    CHECK(tt_shape_is(y, 2, ys));
    char label[160];
    snprintf(label, sizeof(label), "%s vs bf16-rounded double", what);
    tt_check(label, y, want, M * N, tight, tight);
    snprintf(label, sizeof(label), "%s vs f32", what);
    tt_check(label, y, c.want, M * N, 8e-3 * sqrt((double)K), 1e-2);
    lm_tensor_free(y);
    free(want);
    tt_operands_fini(&c);
}

void test_tensor_bf16__setting(void)
{
    lm_error err;
    lm_precision p = LM_PRECISION_BF16;
    CHECK_INT(lm_precision_get(), LM_PRECISION_F32); /* the default */
    CHECK_OK(lm_precision_parse(&p, "f32", &err), &err);
    CHECK_INT(p, LM_PRECISION_F32);
    CHECK_OK(lm_precision_parse(&p, "bf16", &err), &err);
    CHECK_INT(p, LM_PRECISION_BF16);
    CHECK_INT(lm_precision_parse(&p, "fp8", &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "\"fp8\"");
    CHECK_CONTAINS(err.msg, "f32 or bf16");
    CHECK_STR(lm_precision_name(LM_PRECISION_BF16), "bf16");
    CHECK_STR(lm_precision_name(LM_PRECISION_F32), "f32");
    CHECK(lm_precision_native(LM_PRECISION_F32));
    lm_precision_set(LM_PRECISION_BF16);
    CHECK_INT(lm_precision_get(), LM_PRECISION_BF16);
    lm_precision_set(LM_PRECISION_F32);
}

void test_tensor_bf16__odd_sizes(void)
{
    if (!have_bf16())
        return;
    bf16_case("333x256 . 320", 333, 256, 320, LM_DTYPE_F32, true, 1e-5);
    bf16_case("7x3 . 5 (odd K)", 7, 3, 5, LM_DTYPE_F32, false, 1e-6);
    bf16_case("1x1 . 1", 1, 1, 1, LM_DTYPE_F32, true, 1e-6);
    bf16_case("1x1000 . 1", 1, 1000, 1, LM_DTYPE_F32, true, 1e-5);
    bf16_case("2x17 . 1031", 2, 17, 1031, LM_DTYPE_F32, true, 1e-5);
    bf16_case("13x515 . 70 (K past a block, odd)", 13, 515, 70, LM_DTYPE_F32, true, 1e-5);
    bf16_case("65x257 . 129", 65, 257, 129, LM_DTYPE_F32, false, 1e-5);
}

void test_tensor_bf16__sd3_widths(void)
{
    if (!have_bf16())
        return;
    bf16_case("70x1536 . 1536", 70, 1536, 1536, LM_DTYPE_F32, true, 3e-5);
    bf16_case("5x2048 . 2048 f16", 5, 2048, 2048, LM_DTYPE_F16, true, 3e-5);
    bf16_case("3x1536 . 6144 bf16", 3, 1536, 6144, LM_DTYPE_BF16, true, 3e-5);
}

void test_tensor_bf16__weight_dtypes(void)
{
    if (!have_bf16())
        return;
    bf16_case("f16 130x200 . 515", 130, 200, 515, LM_DTYPE_F16, true, 1e-5);
    bf16_case("bf16 130x200 . 515", 130, 200, 515, LM_DTYPE_BF16, true, 1e-5);
    bf16_case("f8 130x200 . 515", 130, 200, 515, LM_DTYPE_F8_E4M3, true, 1e-5);
    bf16_case("f8 1x80 . 200 (T5-like)", 1, 80, 200, LM_DTYPE_F8_E4M3, false, 1e-5);
}

void test_tensor_bf16__strided_input(void)
{
    if (!have_bf16())
        return;
    lm_error err;
    int64_t xs[3] = { 2, 77, 64 }, ys[3] = { 2, 77, 96 };
    tt_operands c;
    tt_linear_operands(&c, 3, xs, 96, LM_DTYPE_F16, false, 4);
    lm_tensor *xt = tt_strided_copy(c.x), *y = NULL;
    REQUIRE(xt && !lm_tensor_is_contiguous(xt));
    float *want = malloc(2 * 77 * 96 * sizeof(float));
    ref_linear_bf16(want, c.xv, c.wv, NULL, 2 * 77, 64, 96);
    lm_precision_set(LM_PRECISION_BF16);
    CHECK_OK(lm_linear(&y, xt, c.w, NULL, &err), &err);
    lm_precision_set(LM_PRECISION_F32);
    CHECK(tt_shape_is(y, 3, ys));
    tt_check("[2,77,64] strided, bf16", y, want, 2 * 77 * 96, 1e-5, 1e-5);
    lm_tensor_free(y);
    lm_tensor_free(xt);
    free(want);
    tt_operands_fini(&c);
}

/* With LOOM_CPU_BASELINE=1 (read once, at the first check) BF16 is not native and lm_linear
 * gives exactly the f32 result. Each test runs in its own process, so setting it here is
 * seen. */
void test_tensor_bf16__fallback_is_f32(void)
{
    lm_error err;
    setenv("LOOM_CPU_BASELINE", "1", 1);
    CHECK(!lm_precision_native(LM_PRECISION_BF16));
    int64_t xs[2] = { 9, 300 }, ws[2] = { 70, 300 };
    lm_tensor *x = tt_rand(NULL, LM_DTYPE_F32, 21, -1, 1, 2, xs);
    lm_tensor *w = tt_rand(NULL, LM_DTYPE_F16, 22, -1, 1, 2, ws);
    lm_tensor *y32 = NULL, *y16 = NULL;
    CHECK_OK(lm_linear(&y32, x, w, NULL, &err), &err);
    lm_precision_set(LM_PRECISION_BF16);
    CHECK_OK(lm_linear(&y16, x, w, NULL, &err), &err);
    lm_precision_set(LM_PRECISION_F32);
    REQUIRE(y32 && y16);
    CHECK(memcmp(lm_tensor_data(y32), lm_tensor_data(y16), lm_tensor_nbytes(y32)) == 0);
    lm_tensor_free(y32);
    lm_tensor_free(y16);
    lm_tensor_free(x);
    lm_tensor_free(w);
}
