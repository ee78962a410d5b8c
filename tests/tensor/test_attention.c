/* tests/tensor/test_attention.c — lm_attention against the naive softmax reference:
 * MMDiT-like joint attention, CLIP-like causal attention, T5-like additive bias with no
 * scaling, cross attention with Nq != Nk, q/k/v as strided slices of one fused qkv
 * tensor, broadcast biases, one token, and 4096 keys (checked on sampled query rows). */
#include "tests/tensor/tt.h"

typedef struct {
    int64_t B, Nq, Nk, H, D;
    float scale; /* passed to the op; 0 = default */
    bool causal;
    int64_t bias_b, bias_h; /* 0: no bias */
} attn_case;

static void run_case(const char *what, attn_case c)
{
    lm_error err;
    int64_t F = c.H * c.D;
    int64_t qs[3] = { c.B, c.Nq, F }, ks[3] = { c.B, c.Nk, F };
    int64_t bs[4] = { c.bias_b, c.bias_h, c.Nq, c.Nk };
    float *qv, *kv, *vv, *bv = NULL;
    lm_tensor *q = tt_rand(&qv, LM_DTYPE_F32, 11, -1, 1, 3, qs);
    lm_tensor *k = tt_rand(&kv, LM_DTYPE_F32, 12, -1, 1, 3, ks);
    lm_tensor *v = tt_rand(&vv, LM_DTYPE_F32, 13, -1, 1, 3, ks);
    lm_tensor *bias = c.bias_b ? tt_rand(&bv, LM_DTYPE_F32, 14, -2, 2, 4, bs) : NULL;
    float scale = c.scale == 0.0f ? 1.0f / sqrtf((float)c.D) : c.scale;
    float *want = malloc((size_t)(c.B * c.Nq * F) * sizeof(float));
    ref_attention(want, qv, kv, vv, bv, c.B, c.Nq, c.Nk, c.H, c.D, F, F, F, c.bias_b, c.bias_h,
                  scale, c.causal);
    lm_attention_opts opts = { .heads = (int)c.H, .causal = c.causal, .scale = c.scale };
    lm_tensor *o = NULL;
    CHECK_OK(lm_attention(&o, q, k, v, bias, &opts, &err), &err);
    CHECK(tt_shape_is(o, 3, qs));
    tt_check(what, o, want, c.B * c.Nq * F, 2e-5, 2e-5);
    lm_tensor_free(o);
    lm_tensor_free(q);
    lm_tensor_free(k);
    lm_tensor_free(v);
    lm_tensor_free(bias);
    free(qv);
    free(kv);
    free(vv);
    free(bv);
    free(want);
}

void test_tensor_attention__joint_sd3_like(void)
{
    /* 154 context + 256 image tokens, heads of 64 (the real model has 24 heads) */
    run_case("B1 N410 H3 D64", (attn_case){ 1, 410, 410, 3, 64, 0, false, 0, 0 });
}

void test_tensor_attention__clip_causal(void)
{
    run_case("CLIP-G-like causal N77 H5 D8", (attn_case){ 1, 77, 77, 5, 8, 0, true, 0, 0 });
    run_case("causal B2 N130 H2 D64", (attn_case){ 2, 130, 130, 2, 64, 0, true, 0, 0 });
}

void test_tensor_attention__t5_bias_unscaled(void)
{
    run_case("T5-like bias, scale 1", (attn_case){ 1, 77, 77, 4, 20, 1.0f, false, 1, 4 });
    run_case("bias per batch and head", (attn_case){ 2, 33, 65, 3, 16, 1.0f, false, 2, 3 });
    run_case("bias shared by heads", (attn_case){ 2, 31, 31, 3, 16, 0, false, 1, 1 });
}

void test_tensor_attention__odd_shapes(void)
{
    run_case("one token", (attn_case){ 1, 1, 1, 1, 1, 0, false, 0, 0 });
    run_case("one query, many keys", (attn_case){ 1, 1, 300, 2, 64, 0, false, 0, 0 });
    run_case("cross Nq 33 Nk 70 D 40", (attn_case){ 3, 33, 70, 2, 40, 0, false, 0, 0 });
    run_case("causal Nq 20 < Nk 50 (top-left)", (attn_case){ 1, 20, 50, 2, 32, 0, true, 0, 0 });
    run_case("VAE mid-block-like H1 D128 N96", (attn_case){ 1, 96, 96, 1, 128, 0, false, 0, 0 });
}

/* q, k, v as column slices of one fused [B, N, 3*H*D] tensor (the MMDiT qkv linear). */
void test_tensor_attention__fused_qkv_slices(void)
{
    lm_error err;
    int64_t B = 2, N = 67, H = 2, D = 24, F = H * D;
    int64_t s[3] = { B, N, 3 * F };
    float *all;
    lm_tensor *qkv = tt_rand(&all, LM_DTYPE_F32, 21, -1, 1, 3, s);
    lm_tensor *q = NULL, *k = NULL, *v = NULL, *o = NULL;
    REQUIRE_OK(lm_tensor_view_slice(&q, qkv, 2, 0, F, &err), &err);
    REQUIRE_OK(lm_tensor_view_slice(&k, qkv, 2, F, 2 * F, &err), &err);
    REQUIRE_OK(lm_tensor_view_slice(&v, qkv, 2, 2 * F, 3 * F, &err), &err);
    float *want = malloc((size_t)(B * N * F) * sizeof(float));
    ref_attention(want, all, all + F, all + 2 * F, NULL, B, N, N, H, D, 3 * F, 3 * F, 3 * F, 0, 0,
                  1.0f / sqrtf((float)D), false);
    lm_attention_opts opts = { .heads = (int)H };
    CHECK_OK(lm_attention(&o, q, k, v, NULL, &opts, &err), &err);
    tt_check("fused qkv slices", o, want, B * N * F, 2e-5, 2e-5);
    lm_tensor_free(o);
    lm_tensor_free(q);
    lm_tensor_free(k);
    lm_tensor_free(v);
    lm_tensor_free(qkv);
    free(all);
    free(want);
}

/* 4096 keys, one head: the op must not need O(N^2) memory; 12 query rows are checked. */
void test_tensor_attention__long_sequence_sampled_rows(void)
{
    lm_error err;
    int64_t N = 4096, D = 64;
    int64_t s[3] = { 1, N, D };
    float *qv, *kv, *vv;
    lm_tensor *q = tt_rand(&qv, LM_DTYPE_F32, 31, -2, 2, 3, s);
    lm_tensor *k = tt_rand(&kv, LM_DTYPE_F32, 32, -2, 2, 3, s);
    lm_tensor *v = tt_rand(&vv, LM_DTYPE_F32, 33, -1, 1, 3, s);
    lm_tensor *o = NULL, *host = NULL;
    lm_attention_opts opts = { .heads = 1 };
    REQUIRE_OK(lm_attention(&o, q, k, v, NULL, &opts, &err), &err);
    REQUIRE_OK(lm_tensor_to_f32_host(&host, o, &err), &err);
    const float *got = lm_tensor_data(host);
    int64_t rows[12] = { 0, 1, 63, 64, 65, 1000, 2047, 2048, 3001, 4031, 4094, 4095 };
    for (int r = 0; r < 12; r++) {
        float want[64];
        ref_attention(want, qv + rows[r] * D, kv, vv, NULL, 1, 1, N, 1, D, D, D, D, 0, 0, 0.125f,
                      false);
        char what[48];
        snprintf(what, sizeof(what), "row %lld of 4096", (long long)rows[r]);
        double max_abs;
        if (!ref_allclose(got + rows[r] * D, want, D, 2e-5, 2e-5, &max_abs, NULL))
            test__fail(__FILE__, __LINE__, "%s: max |diff| %g", what, max_abs);
    }
    lm_tensor_free(host);
    lm_tensor_free(o);
    lm_tensor_free(q);
    lm_tensor_free(k);
    lm_tensor_free(v);
    free(qv);
    free(kv);
    free(vv);
}

void test_tensor_attention__shape_errors(void)
{
    lm_error err;
    int64_t qs[3] = { 1, 5, 12 }, ks[3] = { 1, 6, 10 }, bs[4] = { 1, 1, 5, 7 };
    lm_tensor *q = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 3, qs);
    lm_tensor *k = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 3, ks);
    lm_tensor *bias = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 4, bs);
    lm_tensor *o = NULL;
    lm_attention_opts opts = { .heads = 5 }; /* 12 features do not split into 5 heads */
    CHECK(lm_attention(&o, q, q, q, NULL, &opts, &err) != LM_OK);
    CHECK(o == NULL);
    opts.heads = 2;
    CHECK(lm_attention(&o, q, k, k, NULL, &opts, &err) != LM_OK); /* k width differs */
    CHECK(lm_attention(&o, q, q, q, bias, &opts, &err) != LM_OK); /* bias Nk 7 != 5 */
    CHECK(o == NULL);
    lm_tensor_free(q);
    lm_tensor_free(k);
    lm_tensor_free(bias);
}
