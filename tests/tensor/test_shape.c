/* tests/tensor/test_shape.c — concat, split, pad2d, nearest upsampling and SD3's
 * patchify/unpatchify against index-by-index references (exact: these ops move values). */
#include "tests/tensor/tt.h"

void test_tensor_shape__concat_dims(void)
{
    lm_error err;
    int64_t a[3] = { 2, 3, 4 }, b[3] = { 2, 5, 4 }, c[3] = { 2, 1, 4 };
    float *av, *bv, *cv;
    lm_tensor *ta = tt_rand(&av, LM_DTYPE_F32, 1, -1, 1, 3, a);
    lm_tensor *tb = tt_rand(&bv, LM_DTYPE_F32, 2, -1, 1, 3, b);
    lm_tensor *tc = tt_rand(&cv, LM_DTYPE_F32, 3, -1, 1, 3, c);
    const lm_tensor *ts[3] = { ta, tb, tc };
    const float *vs[3] = { av, bv, cv };
    int64_t dims[3] = { 3, 5, 1 };
    float want[2 * 9 * 4];
    ref_concat(want, vs, dims, 3, 2, 4);
    lm_tensor *y = NULL, *y2 = NULL, *y1 = NULL;
    CHECK_OK(lm_concat(&y, ts, 3, 1, &err), &err);
    int64_t ys[3] = { 2, 9, 4 };
    CHECK(tt_shape_is(y, 3, ys));
    tt_check("concat dim 1", y, want, 72, 0, 0);
    /* dim -1: the text-encoder case, cat(clip_l, clip_g) along features */
    const lm_tensor *ts2[2] = { ta, ta };
    const float *vs2[2] = { av, av };
    int64_t d2[2] = { 4, 4 };
    float want2[48];
    ref_concat(want2, vs2, d2, 2, 6, 1);
    CHECK_OK(lm_concat(&y2, ts2, 2, -1, &err), &err);
    tt_check("concat dim -1", y2, want2, 48, 0, 0);
    CHECK_OK(lm_concat(&y1, ts, 1, 0, &err), &err);
    tt_check("concat of one", y1, av, 24, 0, 0);
    lm_tensor *bad = NULL;
    CHECK_INT(lm_concat(&bad, ts, 2, 0, &err), LM_EINVAL); /* dim 1 differs: 3 vs 5 */
    CHECK(bad == NULL);
    lm_tensor *tmp[] = { ta, tb, tc, y, y2, y1 };
    for (int i = 0; i < 6; i++)
        lm_tensor_free(tmp[i]);
    free(av);
    free(bv);
    free(cv);
}

void test_tensor_shape__split_sizes(void)
{
    lm_error err;
    int64_t s[2] = { 3, 10 };
    float *xv;
    lm_tensor *x = tt_rand(&xv, LM_DTYPE_F32, 5, -1, 1, 2, s), *outs[3] = { NULL };
    int64_t sizes[3] = { 2, 5, 3 };
    REQUIRE_OK(lm_split(outs, x, 1, sizes, 3, &err), &err);
    int64_t at = 0;
    for (int i = 0; i < 3; i++) {
        float want[15];
        for (int r = 0; r < 3; r++)
            for (int64_t c = 0; c < sizes[i]; c++)
                want[r * sizes[i] + c] = xv[r * 10 + at + c];
        int64_t os[2] = { 3, sizes[i] };
        CHECK(tt_shape_is(outs[i], 2, os));
        tt_check("split piece", outs[i], want, 3 * sizes[i], 0, 0);
        at += sizes[i];
        lm_tensor_free(outs[i]);
    }
    int64_t wrong[2] = { 4, 5 };
    lm_tensor *o2[2] = { NULL, NULL };
    CHECK(lm_split(o2, x, 1, wrong, 2, &err) != LM_OK);
    CHECK(o2[0] == NULL && o2[1] == NULL);
    lm_tensor_free(x);
    free(xv);
}

void test_tensor_shape__pad2d_and_upsample(void)
{
    lm_error err;
    int64_t s[4] = { 2, 3, 5, 4 };
    float *xv;
    lm_tensor *x = tt_rand(&xv, LM_DTYPE_F32, 6, -1, 1, 4, s), *p = NULL, *u = NULL, *p2 = NULL;
    float want[2 * 3 * 8 * 7];
    ref_pad2d(want, xv, 6, 5, 4, 0, 0, 1, 1, 0.0f); /* SD3 VAE downsample: right/bottom by 1 */
    CHECK_OK(lm_pad2d(&p, x, 0, 0, 1, 1, 0.0f, &err), &err);
    int64_t ps[4] = { 2, 3, 6, 5 };
    CHECK(tt_shape_is(p, 4, ps));
    tt_check("pad (0,0,1,1)", p, want, 2 * 3 * 6 * 5, 0, 0);
    ref_pad2d(want, xv, 6, 5, 4, 2, 1, 1, 2, -7.5f);
    CHECK_OK(lm_pad2d(&p2, x, 2, 1, 1, 2, -7.5f, &err), &err);
    tt_check("pad (2,1,1,2) value", p2, want, 2 * 3 * 8 * 7, 0, 0);
    float wantu[2 * 3 * 10 * 8];
    ref_upsample2x(wantu, xv, 6, 5, 4);
    CHECK_OK(lm_upsample_nearest2x(&u, x, &err), &err);
    int64_t us[4] = { 2, 3, 10, 8 };
    CHECK(tt_shape_is(u, 4, us));
    tt_check("upsample 2x", u, wantu, 480, 0, 0);
    lm_tensor_free(p);
    lm_tensor_free(p2);
    lm_tensor_free(u);
    lm_tensor_free(x);
    free(xv);
}

void test_tensor_shape__patchify_unpatchify(void)
{
    lm_error err;
    int64_t B = 2, C = 16, H = 8, W = 12;
    int64_t s[4] = { B, C, H, W };
    float *xv;
    lm_tensor *x = tt_rand(&xv, LM_DTYPE_F32, 7, -1, 1, 4, s), *pt = NULL, *back = NULL;
    int64_t n = B * C * H * W;
    float *want = malloc((size_t)n * sizeof(float));
    ref_patchify(want, xv, B, C, H, W, 2);
    CHECK_OK(lm_patchify(&pt, x, 2, &err), &err);
    int64_t ps[3] = { B, (H / 2) * (W / 2), 4 * C };
    CHECK(tt_shape_is(pt, 3, ps));
    tt_check("patchify p2", pt, want, n, 0, 0);
    /* element (b=1, c=3, y=5, x=7) lands in token (2*6 + 3), feature (1*2 + 1)*16 + 3 */
    lm_tensor *h = NULL;
    REQUIRE_OK(lm_tensor_to_f32_host(&h, pt, &err), &err);
    CHECK_NEAR(((float *)lm_tensor_data(h))[(1 * 24 + 15) * 64 + 51],
               xv[((1 * 16 + 3) * 8 + 5) * 12 + 7], 0);
    lm_tensor_free(h);
    float *want2 = malloc((size_t)n * sizeof(float));
    ref_unpatchify(want2, want, B, C, H / 2, W / 2, 2);
    CHECK_OK(lm_unpatchify(&back, pt, 2, (int)(H / 2), (int)(W / 2), &err), &err);
    CHECK(tt_shape_is(back, 4, s));
    tt_check("unpatchify(patchify(x)) == x", back, xv, n, 0, 0);
    tt_check("unpatchify vs reference", back, want2, n, 0, 0);
    lm_tensor *bad = NULL;
    int64_t odd[4] = { 1, 2, 5, 4 };
    lm_tensor *xo = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 4, odd);
    CHECK(lm_patchify(&bad, xo, 2, &err) != LM_OK); /* 5 rows do not split into patches of 2 */
    CHECK(bad == NULL);
    lm_tensor_free(xo);
    lm_tensor_free(pt);
    lm_tensor_free(back);
    lm_tensor_free(x);
    free(xv);
    free(want);
    free(want2);
}
