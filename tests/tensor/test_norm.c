/* tests/tensor/test_norm.c — group, layer and RMS norm and softmax against double-precision
 * references: with and without affine parameters, parameters stored as F16/F8 (T5's norm
 * weights are float8), inputs with a large common offset (catches one-pass variance),
 * odd widths, one element, non-contiguous input. */
#include "tests/tensor/tt.h"

static void group_norm_case(const char *what, int64_t B, int64_t C, int64_t H, int64_t W,
                            int groups, bool affine, float offset, lm_dtype pdt)
{
    lm_error err;
    int64_t xs[4] = { B, C, H, W }, cs[1] = { C };
    tt_operands o = { 0 }; /* w is the scale gamma */
    o.x = tt_rand(&o.xv, LM_DTYPE_F32, 51, offset - 1, offset + 1, 4, xs);
    o.w = affine ? tt_rand(&o.wv, pdt, 52, 0.5f, 1.5f, 1, cs) : NULL;
    o.b = affine ? tt_rand(&o.bv, pdt, 53, -1, 1, 1, cs) : NULL;
    int64_t n = B * C * H * W;
    o.want = malloc((size_t)n * sizeof(float));
    ref_group_norm(o.want, o.xv, o.wv, o.bv, B, C, H * W, groups, 1e-6f);
    lm_tensor *y = NULL;
    CHECK_OK(lm_group_norm(&y, o.x, o.w, o.b, groups, 1e-6f, &err), &err);
    CHECK(tt_shape_is(y, 4, xs));
    tt_check(what, y, o.want, n, 1e-4, 1e-4);
    lm_tensor_free(y);
    tt_operands_fini(&o);
}

void test_tensor_norm__group_norm(void)
{
    group_norm_case("VAE-like 32 groups 64ch 8x12", 1, 64, 8, 12, 32, true, 0, LM_DTYPE_F32);
    group_norm_case("offset 100, f16 params", 2, 32, 5, 7, 8, true, 100, LM_DTYPE_F16);
    group_norm_case("no affine, 1 group", 1, 6, 3, 3, 1, false, 0, LM_DTYPE_F32);
    group_norm_case("one channel per group", 1, 4, 2, 1, 4, true, -3, LM_DTYPE_F32);
}

void test_tensor_norm__group_norm_errors(void)
{
    lm_error err;
    int64_t xs[4] = { 1, 6, 2, 2 };
    lm_tensor *x = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 4, xs), *y = NULL;
    CHECK(lm_group_norm(&y, x, NULL, NULL, 4, 1e-6f, &err) != LM_OK); /* 4 does not divide 6 */
    CHECK(y == NULL);
    CHECK(lm_group_norm(&y, x, NULL, NULL, 0, 1e-6f, &err) != LM_OK);
    lm_tensor_free(x);
}

static void row_norm_case(const char *what, int kind, int64_t rows, int64_t C, bool affine,
                          float offset, lm_dtype pdt, bool strided)
{
    lm_error err;
    int64_t xs[2] = { rows, C }, cs[1] = { C };
    tt_operands o = { 0 }; /* w is the scale gamma */
    o.x = tt_rand(&o.xv, LM_DTYPE_F32, 61, offset - 2, offset + 2, 2, xs);
    o.w = affine ? tt_rand(&o.wv, pdt, 62, 0.5f, 1.5f, 1, cs) : NULL;
    o.b = affine ? tt_rand(&o.bv, pdt, 63, -1, 1, 1, cs) : NULL;
    lm_tensor *xin = strided ? tt_strided_copy(o.x) : o.x;
    o.want = malloc((size_t)(rows * C) * sizeof(float));
    lm_tensor *y = NULL;
    if (kind == 0) {
        ref_layer_norm(o.want, o.xv, o.wv, o.bv, rows, C, 1e-6f);
        CHECK_OK(lm_layer_norm(&y, xin, o.w, o.b, 1e-6f, &err), &err);
    } else if (kind == 1) {
        ref_rms_norm(o.want, o.xv, o.wv, rows, C, 1e-6f);
        CHECK_OK(lm_rms_norm(&y, xin, o.w, 1e-6f, &err), &err);
    } else {
        ref_softmax(o.want, o.xv, rows, C);
        CHECK_OK(lm_softmax(&y, xin, &err), &err);
    }
    CHECK(tt_shape_is(y, 2, xs));
    tt_check(what, y, o.want, rows * C, 2e-5, 1e-4);
    lm_tensor_free(y);
    if (xin != o.x)
        lm_tensor_free(xin);
    tt_operands_fini(&o);
}

void test_tensor_norm__layer_norm(void)
{
    row_norm_case("LN 7x1536 affine", 0, 7, 1536, true, 0, LM_DTYPE_F32, false);
    row_norm_case("LN no affine (adaLN), offset 50", 0, 33, 128, false, 50, LM_DTYPE_F32, false);
    row_norm_case("LN odd width 5, f16 params", 0, 3, 5, true, 0, LM_DTYPE_F16, false);
    row_norm_case("LN one element", 0, 1, 1, false, 0, LM_DTYPE_F32, false);
    row_norm_case("LN strided input", 0, 9, 24, true, 0, LM_DTYPE_F32, true);
}

void test_tensor_norm__rms_norm(void)
{
    row_norm_case("RMS 77x80 f8 weight (T5)", 1, 77, 80, true, 0, LM_DTYPE_F8_E4M3, false);
    row_norm_case("RMS no weight D64 (qk-norm)", 1, 50, 64, false, 0, LM_DTYPE_F32, false);
    row_norm_case("RMS one element", 1, 1, 1, true, 0, LM_DTYPE_F32, false);
    row_norm_case("RMS strided", 1, 6, 13, true, 1, LM_DTYPE_BF16, true);
}

void test_tensor_norm__softmax(void)
{
    row_norm_case("softmax 5x77", 2, 5, 77, false, 0, LM_DTYPE_F32, false);
    row_norm_case("softmax large logits (offset 1000)", 2, 4, 301, false, 1000, LM_DTYPE_F32,
                  false);
    row_norm_case("softmax one element", 2, 3, 1, false, 0, LM_DTYPE_F32, false);
    row_norm_case("softmax strided", 2, 8, 16, false, 0, LM_DTYPE_F32, true);
}
