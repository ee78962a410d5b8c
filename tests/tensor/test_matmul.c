/* tests/tensor/test_matmul.c — lm_linear and lm_matmul against the naive references:
 * SD3-like widths, odd sizes that straddle any panel boundary, one element, every weight
 * dtype (reference fed the exactly stored weight values), non-contiguous activations and
 * shape errors. Tolerances: fp32 sums of K products, |x|,|w| <= 1: ~1e-6 * sqrt(K). */
#include "tests/tensor/tt.h"

/* Runs lm_linear on x [M, K] (given dtype for w) and compares with ref_linear. */
static void linear_case(const char *what, int64_t M, int64_t K, int64_t N, lm_dtype wdt, bool bias,
                        double tol)
{
    lm_error err;
    int64_t xs[2] = { M, K }, ys[2] = { M, N };
    tt_operands c;
    tt_linear_operands(&c, 2, xs, N, wdt, bias, 1);
    lm_tensor *y = NULL;
    CHECK_OK(lm_linear(&y, c.x, c.w, c.b, &err), &err);
    CHECK(tt_shape_is(y, 2, ys));
    tt_check(what, y, c.want, M * N, tol, tol);
    lm_tensor_free(y);
    tt_operands_fini(&c);
}

void test_tensor_matmul__linear_f32_odd_sizes(void)
{
    linear_case("333x256 . 320", 333, 256, 320, LM_DTYPE_F32, true, 1e-5);
    linear_case("7x3 . 5", 7, 3, 5, LM_DTYPE_F32, false, 1e-6);
    linear_case("1x1 . 1", 1, 1, 1, LM_DTYPE_F32, true, 1e-6);
    linear_case("1x1000 . 1", 1, 1000, 1, LM_DTYPE_F32, true, 1e-5);
    linear_case("2x17 . 1031", 2, 17, 1031, LM_DTYPE_F32, true, 1e-5);
}

void test_tensor_matmul__linear_sd3_widths(void)
{
    linear_case("64x1536 . 1536", 64, 1536, 1536, LM_DTYPE_F32, true, 3e-5);
    linear_case("5x2048 . 2048 f16", 5, 2048, 2048, LM_DTYPE_F16, true, 3e-5);
    linear_case("3x1536 . 6144 bf16", 3, 1536, 6144, LM_DTYPE_BF16, true, 3e-5);
}

void test_tensor_matmul__linear_weight_dtypes(void)
{
    linear_case("f16 130x200 . 515", 130, 200, 515, LM_DTYPE_F16, true, 1e-5);
    linear_case("bf16 130x200 . 515", 130, 200, 515, LM_DTYPE_BF16, true, 1e-5);
    linear_case("f8 130x200 . 515", 130, 200, 515, LM_DTYPE_F8_E4M3, true, 1e-5);
    linear_case("f8 1x80 . 200 (T5-like)", 1, 80, 200, LM_DTYPE_F8_E4M3, false, 1e-5);
}

void test_tensor_matmul__linear_batched_and_strided_input(void)
{
    lm_error err;
    int64_t xs[3] = { 2, 77, 64 }, ys[3] = { 2, 77, 96 };
    tt_operands c;
    tt_linear_operands(&c, 3, xs, 96, LM_DTYPE_F16, false, 4);
    lm_tensor *xt = tt_strided_copy(c.x), *y = NULL, *y2 = NULL;
    REQUIRE(xt && !lm_tensor_is_contiguous(xt));
    REQUIRE_OK(lm_linear(&y, c.x, c.w, NULL, &err), &err);
    CHECK(tt_shape_is(y, 3, ys));
    tt_check("[2,77,64] contiguous", y, c.want, 2 * 77 * 96, 1e-5, 1e-5);
    REQUIRE_OK(lm_linear(&y2, xt, c.w, NULL, &err), &err);
    tt_check("[2,77,64] strided", y2, c.want, 2 * 77 * 96, 1e-5, 1e-5);
    lm_tensor_free(y);
    lm_tensor_free(y2);
    lm_tensor_free(xt);
    tt_operands_fini(&c);
}

void test_tensor_matmul__linear_shape_errors(void)
{
    lm_error err;
    int64_t xs[2] = { 4, 8 }, ws[2] = { 5, 9 }, bs[1] = { 6 }, ws2[2] = { 5, 8 };
    lm_tensor *x = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 2, xs);
    lm_tensor *w = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 2, ws);
    lm_tensor *w2 = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 2, ws2);
    lm_tensor *b = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 1, bs);
    lm_tensor *y = (lm_tensor *)&err; /* must be reset to NULL */
    CHECK_INT(lm_linear(&y, x, w, NULL, &err), LM_EINVAL);
    CHECK(y == NULL);
    CHECK_CONTAINS(err.msg, "linear");
    CHECK_INT(lm_linear(&y, x, w2, b, &err), LM_EINVAL); /* bias of the wrong length */
    CHECK(y == NULL);
    lm_tensor_free(x);
    lm_tensor_free(w);
    lm_tensor_free(w2);
    lm_tensor_free(b);
}

static void matmul_case(int64_t B, int64_t Bb, int64_t M, int64_t K, int64_t N, bool trans_b,
                        int bdims)
{
    lm_error err;
    int64_t as[3] = { B, M, K };
    int64_t bs3[3] = { Bb, trans_b ? N : K, trans_b ? K : N };
    float *av, *bv;
    lm_tensor *a = tt_rand(&av, LM_DTYPE_F32, 7, -1, 1, 3, as);
    lm_tensor *b = tt_rand(&bv, LM_DTYPE_F32, 8, -1, 1, bdims, bdims == 3 ? bs3 : bs3 + 1);
    lm_tensor *y = NULL;
    float *want = malloc((size_t)(B * M * N) * sizeof(float));
    ref_matmul(want, av, bv, B, Bb, M, K, N, trans_b);
    char what[96];
    snprintf(what, sizeof(what), "matmul B%lld/%lld %lldx%lldx%lld%s b%dd", (long long)B,
             (long long)Bb, (long long)M, (long long)K, (long long)N, trans_b ? " T" : "", bdims);
    CHECK_OK(lm_matmul(&y, a, b, trans_b, &err), &err);
    int64_t ys[3] = { B, M, N };
    CHECK(tt_shape_is(y, 3, ys));
    tt_check(what, y, want, B * M * N, 1e-5, 1e-5);
    lm_tensor_free(y);
    lm_tensor_free(a);
    lm_tensor_free(b);
    free(av);
    free(bv);
    free(want);
}

void test_tensor_matmul__batched(void)
{
    matmul_case(3, 3, 17, 33, 19, false, 3);
    matmul_case(3, 3, 17, 33, 19, true, 3);
    matmul_case(4, 1, 9, 64, 70, false, 3);
    matmul_case(2, 1, 96, 128, 96, true, 2); /* VAE-attention-like, b shared */
    matmul_case(1, 1, 1, 1, 1, false, 3);
}
