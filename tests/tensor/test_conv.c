/* tests/tensor/test_conv.c — lm_conv2d against the direct-loop reference: 3x3 same-padding,
 * SD3's VAE downsample (pad right/bottom by 1, stride 2), 1x1, the 2x2/2 patch embedder
 * with F16 weights, one pixel, non-contiguous input and shape errors. */
#include "tests/tensor/tt.h"

typedef struct {
    int64_t B, Ci, H, W, Co, kh, kw;
    int stride, top, left, bottom, right;
    lm_dtype wdt;
    bool bias, strided_input;
} conv_case;

static void run_case(const char *what, conv_case c)
{
    lm_error err;
    int64_t xs[4] = { c.B, c.Ci, c.H, c.W }, ws[4] = { c.Co, c.Ci, c.kh, c.kw }, bs[1] = { c.Co };
    tt_operands o = { 0 };
    o.x = tt_rand(&o.xv, LM_DTYPE_F32, 41, -1, 1, 4, xs);
    o.w = tt_rand(&o.wv, c.wdt, 42, -0.5f, 0.5f, 4, ws);
    o.b = c.bias ? tt_rand(&o.bv, LM_DTYPE_F32, 43, -1, 1, 1, bs) : NULL;
    lm_tensor *xin = c.strided_input ? tt_strided_copy(o.x) : o.x;
    REQUIRE(xin);
    int64_t Ho = ref_conv_out(c.H, c.kh, c.stride, c.top, c.bottom);
    int64_t Wo = ref_conv_out(c.W, c.kw, c.stride, c.left, c.right);
    int64_t n = c.B * c.Co * Ho * Wo;
    o.want = malloc((size_t)n * sizeof(float));
    ref_conv2d(o.want, o.xv, o.wv, o.bv, c.B, c.Ci, c.H, c.W, c.Co, c.kh, c.kw, c.stride, c.top,
               c.left, c.bottom, c.right);
    lm_conv2d_opts opts = { .stride = c.stride,
                            .pad_top = c.top,
                            .pad_left = c.left,
                            .pad_bottom = c.bottom,
                            .pad_right = c.right };
    lm_tensor *y = NULL;
    CHECK_OK(lm_conv2d(&y, xin, o.w, o.b, &opts, &err), &err);
    int64_t ys[4] = { c.B, c.Co, Ho, Wo };
    CHECK(tt_shape_is(y, 4, ys));
    tt_check(what, y, o.want, n, 2e-5, 2e-5);
    lm_tensor_free(y);
    if (xin != o.x)
        lm_tensor_free(xin);
    tt_operands_fini(&o);
}

void test_tensor_conv__3x3_same_padding(void)
{
    run_case("3x3 pad 1, B2 5->7 9x11",
             (conv_case){ 2, 5, 9, 11, 7, 3, 3, 1, 1, 1, 1, 1, LM_DTYPE_F32, true, false });
    run_case("3x3 VAE-like 64->64 32x32 f16",
             (conv_case){ 1, 64, 32, 32, 64, 3, 3, 1, 1, 1, 1, 1, LM_DTYPE_F16, true, false });
    run_case("3x3 no padding",
             (conv_case){ 1, 3, 6, 7, 4, 3, 3, 1, 0, 0, 0, 0, LM_DTYPE_F32, false, false });
}

void test_tensor_conv__vae_downsample_asymmetric_stride2(void)
{
    run_case("pad (0,0,1,1) stride 2 16x12",
             (conv_case){ 1, 8, 16, 12, 8, 3, 3, 2, 0, 0, 1, 1, LM_DTYPE_F32, true, false });
    run_case("pad (0,0,1,1) stride 2 odd 15x9",
             (conv_case){ 2, 3, 15, 9, 5, 3, 3, 2, 0, 0, 1, 1, LM_DTYPE_BF16, true, false });
    run_case("stride 2 pad 1",
             (conv_case){ 1, 4, 10, 10, 6, 3, 3, 2, 1, 1, 1, 1, LM_DTYPE_F32, true, false });
}

void test_tensor_conv__1x1_and_patch_embed(void)
{
    run_case("1x1 32->16 8x12",
             (conv_case){ 1, 32, 8, 12, 16, 1, 1, 1, 0, 0, 0, 0, LM_DTYPE_F32, true, false });
    run_case("2x2 stride 2 patch embed f16",
             (conv_case){ 1, 16, 16, 10, 24, 2, 2, 2, 0, 0, 0, 0, LM_DTYPE_F16, true, false });
    run_case("1x1 f8 weights",
             (conv_case){ 2, 9, 5, 3, 4, 1, 1, 1, 0, 0, 0, 0, LM_DTYPE_F8_E4M3, false, false });
}

void test_tensor_conv__one_pixel_and_strided_input(void)
{
    run_case("one pixel",
             (conv_case){ 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, LM_DTYPE_F32, true, false });
    run_case("one pixel 3x3 pad 1",
             (conv_case){ 1, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1, LM_DTYPE_F32, true, false });
    run_case("strided input",
             (conv_case){ 3, 4, 7, 6, 5, 3, 3, 1, 1, 1, 1, 1, LM_DTYPE_F32, true, true });
}

void test_tensor_conv__shape_errors(void)
{
    lm_error err;
    int64_t xs[4] = { 1, 3, 4, 4 }, ws[4] = { 2, 4, 3, 3 }, ws2[4] = { 2, 3, 5, 5 };
    lm_tensor *x = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 4, xs);
    lm_tensor *w = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 4, ws);
    lm_tensor *w2 = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 4, ws2);
    lm_tensor *y = NULL;
    CHECK_INT(lm_conv2d(&y, x, w, NULL, NULL, &err), LM_EINVAL); /* 3 vs 4 channels */
    CHECK(y == NULL);
    CHECK(lm_conv2d(&y, x, w2, NULL, NULL, &err) != LM_OK); /* 5x5 kernel on 4x4, no pad */
    CHECK(y == NULL);
    lm_tensor_free(x);
    lm_tensor_free(w);
    lm_tensor_free(w2);
}
