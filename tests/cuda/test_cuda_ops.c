/* tests/cuda/test_cuda_ops.c — the CUDA backend against the CPU backend, op by op.
 *
 * Each test builds the same random inputs on both backends (SD3-like shapes and awkward
 * ones: odd sizes, one element, strided views; every weight dtype), runs the op on each,
 * and compares the results, printing the largest absolute and relative differences. The
 * tolerance is relative to the largest magnitude of the CPU result (docs/cuda.md explains
 * each one); layout ops must match exactly. Without a CUDA device every test notes
 * "skipped: no CUDA device: …" and returns; the runner runs test_cuda_* only on request
 * (make test-cuda). */
#include "core/tensor/backend.h"
#include "core/tensor/cuda/cuda.h"
#include "core/tensor/cuda/cuda_impl.h"
#include "core/tensor/ops.h"
#include "core/tensor/tensor.h"
#include "tests/test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Tolerances, as a fraction of max |CPU result| (docs/cuda.md). */
#define TOL_EXACT 0.0
#define TOL_F32   2e-6 /* elementwise fp32 math: a few ulp */
#define TOL_NORM  1e-5
#define TOL_ATTN  2e-5
#define TOL_TF32  3e-3 /* f32 weights on TF32 tensor cores */
#define TOL_F16   3e-3 /* f16 weights, f16 activations */
#define TOL_BF16  1e-2 /* bf16 (and f8 -> bf16) weights, bf16 activations */

typedef struct {
    lm_backend *gpu;
    lm_error err;
    uint64_t seed;
} env;

typedef struct {
    lm_tensor *c, *g; /* the same values on the CPU and on the GPU */
} pair;

static bool env_open(env *e)
{
    memset(e, 0, sizeof(*e));
    e->seed = 0x9e3779b97f4a7c15ull;
    if (lm_cuda_backend_new(&e->gpu, 0, &e->err) == LM_OK)
        return true;
    char msg[800];
    lm_error_format(&e->err, msg, sizeof(msg));
    test_note("skipped: no CUDA device: %s", msg);
    return false;
}

static float urand(env *e)
{
    uint64_t z = (e->seed += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * 0x1p-24f;
}

static void pair_free(pair *p)
{
    lm_tensor_free(p->c);
    lm_tensor_free(p->g);
    p->c = p->g = NULL;
}

/* Uniform values in [lo, hi) stored as dtype, on both backends. NULL members on failure. */
static pair pair_rand(env *e, lm_dtype dtype, float lo, float hi, int ndim, const int64_t *shape)
{
    pair p = { NULL, NULL };
    lm_tensor *f = NULL;
    if (lm_tensor_new(&f, lm_backend_cpu(), LM_DTYPE_F32, ndim, shape, &e->err) != LM_OK)
        return p;
    float *v = lm_tensor_data(f);
    for (int64_t i = 0; i < lm_tensor_numel(f); i++)
        v[i] = lo + (hi - lo) * urand(e);
    if (dtype == LM_DTYPE_F32) {
        p.c = f;
    } else {
        lm_tensor_cast(&p.c, f, dtype, &e->err); /* p.c stays NULL on failure */
        lm_tensor_free(f);
    }
    if (p.c && lm_tensor_to(&p.g, p.c, e->gpu, &e->err) != LM_OK)
        pair_free(&p);
    return p;
}

static pair pair_ids(env *e, lm_dtype dtype, int64_t n, int64_t vocab)
{
    pair p = { NULL, NULL };
    int64_t shape[1] = { n };
    if (lm_tensor_new(&p.c, lm_backend_cpu(), dtype, 1, shape, &e->err) != LM_OK)
        return p;
    for (int64_t i = 0; i < n; i++) {
        int64_t id = (int64_t)(urand(e) * (float)vocab) % vocab;
        if (dtype == LM_DTYPE_I64)
            ((int64_t *)lm_tensor_data(p.c))[i] = id;
        else
            ((int32_t *)lm_tensor_data(p.c))[i] = (int32_t)id;
    }
    if (lm_tensor_to(&p.g, p.c, e->gpu, &e->err) != LM_OK)
        pair_free(&p);
    return p;
}

/* Compares a CPU and a GPU result (frees both). tol is a fraction of max |CPU result|. */
static void compare_at(const char *file, int line, env *e, const char *what, lm_tensor *rc,
                       lm_tensor *rg, double tol)
{
    lm_tensor *hc = NULL, *hg = NULL;
    if (!rc || !rg || lm_tensor_to_f32_host(&hc, rc, &e->err) != LM_OK ||
        lm_tensor_to_f32_host(&hg, rg, &e->err) != LM_OK) {
        test__fail(file, line, "%s: no result to compare (%s)", what, e->err.msg);
        goto out;
    }
    int64_t n = lm_tensor_numel(hc);
    if (lm_tensor_numel(hg) != n || hc->ndim != hg->ndim) {
        test__fail(file, line, "%s: the results have different shapes", what);
        goto out;
    }
    const float *c = lm_tensor_data(hc), *g = lm_tensor_data(hg);
    double scale = 0.0, max_abs = 0.0, max_rel = 0.0;
    int64_t worst = 0, nan_mismatch = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)c[i]));
    for (int64_t i = 0; i < n; i++) {
        if (isnan(c[i]) || isnan(g[i])) {
            nan_mismatch += isnan(c[i]) != isnan(g[i]);
            continue;
        }
        double d = fabs((double)c[i] - (double)g[i]);
        if (d > max_abs) {
            max_abs = d;
            worst = i;
        }
        if (fabs((double)c[i]) > 1e-3 * scale)
            max_rel = fmax(max_rel, d / fabs((double)c[i]));
    }
    bool ok = nan_mismatch == 0 && max_abs <= tol * scale;
    test_note("%s: %lld values, max abs %.3g, max rel %.3g, max |cpu| %.3g, tolerance %.3g "
              "x max |cpu|%s",
              what, (long long)n, max_abs, max_rel, scale, tol, ok ? "" : "  FAILED");
    if (!ok)
        test__fail(file, line, "%s: at %lld cpu %.9g gpu %.9g (%lld NaN mismatches)", what,
                   (long long)worst, (double)c[worst], (double)g[worst], (long long)nan_mismatch);
out:
    lm_tensor_free(hc);
    lm_tensor_free(hg);
    lm_tensor_free(rc);
    lm_tensor_free(rg);
}

#define COMPARE(e, what, rc, rg, tol) compare_at(__FILE__, __LINE__, (e), (what), (rc), (rg), (tol))

/* Runs CALL_C (writing out_c) and CALL_G (writing out_g) and compares the results. */
#define BOTH(e, what, tol, CALL_C, CALL_G)                                                         \
    do {                                                                                           \
        lm_tensor *out_c = NULL, *out_g = NULL;                                                    \
        CHECK_OK(CALL_C, &(e)->err);                                                               \
        CHECK_OK(CALL_G, &(e)->err);                                                               \
        COMPARE((e), (what), out_c, out_g, (tol));                                                 \
    } while (0)

static double weight_tol(lm_dtype dt)
{
    return dt == LM_DTYPE_F32 ? TOL_TF32 : dt == LM_DTYPE_F16 ? TOL_F16 : TOL_BF16;
}

static const lm_dtype weight_dtypes[4] = { LM_DTYPE_F32, LM_DTYPE_F16, LM_DTYPE_BF16,
                                           LM_DTYPE_F8_E4M3 };

/* ---- the table ---- */

void test_cuda_ops__every_slot_filled(void)
{
#ifdef LM_HAVE_CUDA
    const lm_backend_ops *ops = lm_cuda__table();
    REQUIRE(ops != NULL);
    CHECK_STR(ops->name, "cuda");
    CHECK(ops->buffer_new && ops->buffer_free && ops->copy && ops->sync);
    for (int op = 0; op < LM_OP_COUNT; op++)
        if (!ops->kernel[op])
            test__fail(__FILE__, __LINE__, "the CUDA backend has no kernel for %s",
                       lm_op_name((lm_op)op));
    env e;
    if (env_open(&e))
        CHECK(e.gpu->ops == ops);
#else
    test_note("skipped: no CUDA device: this Loom was built without CUDA");
#endif
}

/* ---- copies and casts ---- */

void test_cuda_ops__copy(void)
{
    env e;
    if (!env_open(&e))
        return;
    int64_t shape[3] = { 3, 5, 7 };
    pair x = pair_rand(&e, LM_DTYPE_F32, -500.0f, 500.0f, 3, shape);
    REQUIRE(x.g != NULL);
    static const lm_dtype all[] = { LM_DTYPE_F32, LM_DTYPE_F16, LM_DTYPE_BF16, LM_DTYPE_F8_E4M3,
                                    LM_DTYPE_I64, LM_DTYPE_I32, LM_DTYPE_U8 };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "cast to %s on the device", lm_dtype_name(all[i]));
        BOTH(&e, what, TOL_EXACT, lm_tensor_cast(&out_c, x.c, all[i], &e.err),
             lm_tensor_cast(&out_g, x.g, all[i], &e.err));
    }
    /* A permuted view: gathered on the device, then on the way back to the host. */
    int perm[3] = { 2, 0, 1 };
    lm_tensor *vc = NULL, *vg = NULL;
    REQUIRE_OK(lm_tensor_view_permute(&vc, x.c, perm, &e.err), &e.err);
    REQUIRE_OK(lm_tensor_view_permute(&vg, x.g, perm, &e.err), &e.err);
    BOTH(&e, "permuted view to bf16", TOL_EXACT, lm_tensor_cast(&out_c, vc, LM_DTYPE_BF16, &e.err),
         lm_tensor_cast(&out_g, vg, LM_DTYPE_BF16, &e.err));
    /* Host -> device into a strided slice, and device -> host out of one. */
    lm_tensor *slice = NULL, *host = NULL, *back = NULL;
    REQUIRE_OK(lm_tensor_view_slice(&slice, x.g, 1, 1, 4, &e.err), &e.err);
    int64_t sshape[3] = { 3, 3, 7 };
    pair y = pair_rand(&e, LM_DTYPE_F16, -1.0f, 1.0f, 3, sshape);
    REQUIRE(y.c != NULL);
    CHECK_OK(lm_tensor_copy(slice, y.c, &e.err), &e.err);
    CHECK_OK(lm_tensor_to_f32_host(&back, slice, &e.err), &e.err);
    CHECK_OK(lm_tensor_cast(&host, y.c, LM_DTYPE_F32, &e.err), &e.err);
    if (back && host)
        COMPARE(&e, "host f16 into a device slice", host, back, TOL_EXACT);
    else {
        lm_tensor_free(host);
        lm_tensor_free(back);
    }
    CHECK_OK(lm_backend_sync(e.gpu, &e.err), &e.err);
    lm_tensor_free(slice);
    lm_tensor_free(vg);
    vg = NULL;
    pair_free(&x); /* freed buffers stay in the pool until trimmed */
    size_t kept = lm_backend_cached_bytes(e.gpu);
    lm_backend_trim(e.gpu); /* what stays is the unused part of blocks still in use */
    test_note("pool keeps %zu bytes, %zu after trimming", kept, lm_backend_cached_bytes(e.gpu));
    CHECK(lm_backend_cached_bytes(e.gpu) <= kept);
    lm_tensor_free(vc);
    lm_tensor_free(vg);
    pair_free(&x);
    pair_free(&y);
}

/* ---- products ---- */

static void linear_case(env *e, int64_t b, int64_t n, int64_t k, int64_t out, lm_dtype wdt,
                        bool bias)
{
    int64_t xs[3] = { b, n, k }, ws[2] = { out, k }, bs[1] = { out };
    pair x = pair_rand(e, LM_DTYPE_F32, -2.0f, 2.0f, 3, xs);
    float r = 1.0f / sqrtf((float)k);
    pair w = pair_rand(e, wdt, -r, r, 2, ws);
    pair bb = bias ? pair_rand(e, LM_DTYPE_F32, -0.5f, 0.5f, 1, bs) : (pair){ NULL, NULL };
    char what[96];
    snprintf(what, sizeof(what), "linear [%lld, %lld, %lld] x %s [%lld, %lld]%s", (long long)b,
             (long long)n, (long long)k, lm_dtype_name(wdt), (long long)out, (long long)k,
             bias ? " + bias" : "");
    if (x.g && w.g && (!bias || bb.g))
        BOTH(e, what, weight_tol(wdt), lm_linear(&out_c, x.c, w.c, bb.c, &e->err),
             lm_linear(&out_g, x.g, w.g, bb.g, &e->err));
    else
        test__fail(__FILE__, __LINE__, "%s: inputs: %s", what, e->err.msg);
    pair_free(&x);
    pair_free(&w);
    pair_free(&bb);
}

void test_cuda_ops__linear(void)
{
    env e;
    if (!env_open(&e))
        return;
    for (int i = 0; i < 4; i++) {
        linear_case(&e, 2, 300, 1536, 1536, weight_dtypes[i], true); /* MMDiT attention proj */
        linear_case(&e, 1, 77, 768, 3072, weight_dtypes[i], true);   /* CLIP-L MLP */
        linear_case(&e, 3, 7, 33, 17, weight_dtypes[i], false);      /* awkward */
        linear_case(&e, 1, 1, 1, 1, weight_dtypes[i], false);        /* one element */
    }
}

static void matmul_case(env *e, int64_t batch, int64_t bb, int64_t m, int64_t k, int64_t n,
                        bool trans_b)
{
    int64_t as[3] = { batch, m, k };
    int64_t bs[3] = { bb, trans_b ? n : k, trans_b ? k : n };
    pair a = pair_rand(e, LM_DTYPE_F32, -1.0f, 1.0f, 3, as);
    pair b = pair_rand(e, LM_DTYPE_F32, -1.0f, 1.0f, 3, bs);
    char what[96];
    snprintf(what, sizeof(what), "matmul [%lld, %lld, %lld] x [%lld, ...]%s", (long long)batch,
             (long long)m, (long long)k, (long long)bb, trans_b ? " transposed" : "");
    if (a.g && b.g)
        BOTH(e, what, TOL_TF32, lm_matmul(&out_c, a.c, b.c, trans_b, &e->err),
             lm_matmul(&out_g, a.g, b.g, trans_b, &e->err));
    else
        test__fail(__FILE__, __LINE__, "%s: inputs: %s", what, e->err.msg);
    pair_free(&a);
    pair_free(&b);
}

void test_cuda_ops__matmul(void)
{
    env e;
    if (!env_open(&e))
        return;
    matmul_case(&e, 4, 4, 64, 96, 80, false);
    matmul_case(&e, 4, 4, 64, 96, 80, true);
    matmul_case(&e, 3, 1, 33, 17, 9, false);
    matmul_case(&e, 3, 1, 33, 17, 9, true);
    matmul_case(&e, 1, 1, 1, 1, 1, false);
}

/* ---- attention ---- */

typedef struct {
    int64_t b, nq, nk;
    int heads, d;
    bool causal, fused; /* fused: q/k/v are slices of one [B, N, 3 H D] tensor */
    int bias_b, bias_h; /* 0 = no bias, else the bias' extents (1 or B, 1 or H) */
} attn_case;

static void attention_run(env *e, const attn_case *t)
{
    int64_t hd = (int64_t)t->heads * t->d;
    int64_t qs[3] = { t->b, t->nq, t->fused ? 3 * hd : hd }, ks[3] = { t->b, t->nk, hd };
    int64_t bshape[4] = { t->bias_b, t->bias_h, t->nq, t->nk };
    pair fused = pair_rand(e, LM_DTYPE_F32, -1.5f, 1.5f, 3, qs);
    pair k = t->fused ? (pair){ NULL, NULL } : pair_rand(e, LM_DTYPE_F32, -1.5f, 1.5f, 3, ks);
    pair v = t->fused ? (pair){ NULL, NULL } : pair_rand(e, LM_DTYPE_F32, -1.0f, 1.0f, 3, ks);
    pair bias = t->bias_b ? pair_rand(e, LM_DTYPE_F32, -2.0f, 2.0f, 4, bshape) : (pair){ 0 };
    lm_tensor *sl[2][3] = { { NULL } };
    for (int side = 0; t->fused && side < 2; side++)
        for (int j = 0; j < 3; j++)
            lm_tensor_view_slice(&sl[side][j], side ? fused.g : fused.c, 2, j * hd, (j + 1) * hd,
                                 &e->err);
    const lm_tensor *qc = t->fused ? sl[0][0] : fused.c, *qg = t->fused ? sl[1][0] : fused.g;
    const lm_tensor *kc = t->fused ? sl[0][1] : k.c, *kg = t->fused ? sl[1][1] : k.g;
    const lm_tensor *vc = t->fused ? sl[0][2] : v.c, *vg = t->fused ? sl[1][2] : v.g;
    lm_attention_opts o = { .heads = t->heads, .causal = t->causal, .scale = 0.0f };
    char what[128];
    snprintf(what, sizeof(what), "attention B %lld Nq %lld Nk %lld H %d D %d%s%s bias [%d, %d]",
             (long long)t->b, (long long)t->nq, (long long)t->nk, t->heads, t->d,
             t->causal ? " causal" : "", t->fused ? " fused-qkv" : "", t->bias_b, t->bias_h);
    if (qg && kg && vg && (!t->bias_b || bias.g))
        BOTH(e, what, TOL_ATTN, lm_attention(&out_c, qc, kc, vc, bias.c, &o, &e->err),
             lm_attention(&out_g, qg, kg, vg, bias.g, &o, &e->err));
    else
        test__fail(__FILE__, __LINE__, "%s: inputs: %s", what, e->err.msg);
    for (int side = 0; side < 2; side++)
        for (int j = 0; j < 3; j++)
            lm_tensor_free(sl[side][j]);
    pair_free(&fused);
    pair_free(&k);
    pair_free(&v);
    pair_free(&bias);
}

void test_cuda_ops__attention(void)
{
    env e;
    if (!env_open(&e))
        return;
    static const attn_case cases[] = {
        { 2, 1101, 1101, 24, 64, false, true, 0, 0 },  /* MMDiT joint attention, fused qkv */
        { 1, 1024, 1024, 1, 512, false, false, 0, 0 }, /* VAE mid-block */
        { 2, 77, 77, 12, 64, true, false, 0, 0 },      /* CLIP, causal */
        { 1, 77, 77, 64, 64, false, false, 1, 64 },    /* T5 with position bias */
        { 3, 37, 45, 3, 8, true, false, 3, 1 },        /* awkward, Nq != Nk */
        { 2, 65, 65, 2, 80, false, true, 1, 1 },       /* D = 80 (padded to 96) */
        { 1, 33, 70, 2, 100, false, false, 0, 0 },     { 1, 40, 40, 1, 200, true, false, 1, 1 },
        { 1, 1, 1, 1, 1, false, false, 0, 0 }, /* one element */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        attention_run(&e, &cases[i]);
}

/* ---- convolution ---- */

static void conv_case(env *e, const int64_t *xs, const int64_t *ws, const lm_conv2d_opts *o,
                      lm_dtype wdt, bool bias)
{
    int64_t bs[1] = { ws[0] };
    pair x = pair_rand(e, LM_DTYPE_F32, -1.0f, 1.0f, 4, xs);
    float r = 1.0f / sqrtf((float)(ws[1] * ws[2] * ws[3]));
    pair w = pair_rand(e, wdt, -r, r, 4, ws);
    pair b = bias ? pair_rand(e, LM_DTYPE_F32, -0.5f, 0.5f, 1, bs) : (pair){ NULL, NULL };
    char what[160];
    snprintf(what, sizeof(what),
             "conv2d [%lld, %lld, %lld, %lld] * %s [%lld, %lld, %lld, %lld] "
             "stride %d pad %d %d %d %d%s",
             (long long)xs[0], (long long)xs[1], (long long)xs[2], (long long)xs[3],
             lm_dtype_name(wdt), (long long)ws[0], (long long)ws[1], (long long)ws[2],
             (long long)ws[3], o->stride, o->pad_top, o->pad_left, o->pad_bottom, o->pad_right,
             bias ? " + bias" : "");
    if (x.g && w.g && (!bias || b.g))
        BOTH(e, what, weight_tol(wdt), lm_conv2d(&out_c, x.c, w.c, b.c, o, &e->err),
             lm_conv2d(&out_g, x.g, w.g, b.g, o, &e->err));
    else
        test__fail(__FILE__, __LINE__, "%s: inputs: %s", what, e->err.msg);
    pair_free(&x);
    pair_free(&w);
    pair_free(&b);
}

void test_cuda_ops__conv2d(void)
{
    env e;
    if (!env_open(&e))
        return;
    int64_t vae_x[4] = { 1, 128, 64, 64 }, vae_w[4] = { 128, 128, 3, 3 };
    int64_t pw_x[4] = { 1, 256, 32, 32 }, pw_w[4] = { 128, 256, 1, 1 };
    int64_t odd_x[4] = { 2, 3, 7, 5 }, odd_w[4] = { 4, 3, 3, 2 };
    int64_t one[4] = { 1, 1, 1, 1 };
    lm_conv2d_opts same = { 1, 1, 1, 1, 1 }, down = { 2, 0, 0, 1, 1 }, plain = { 1, 0, 0, 0, 0 };
    lm_conv2d_opts odd = { 2, 1, 0, 2, 1 };
    for (int i = 0; i < 4; i++) {
        conv_case(&e, vae_x, vae_w, &same, weight_dtypes[i], true);
        conv_case(&e, odd_x, odd_w, &odd, weight_dtypes[i], i % 2 == 0);
    }
    conv_case(&e, vae_x, vae_w, &down, LM_DTYPE_BF16, true); /* VAE downsample */
    conv_case(&e, pw_x, pw_w, &plain, LM_DTYPE_F32, true);   /* 1x1, read in place */
    conv_case(&e, pw_x, pw_w, &plain, LM_DTYPE_F16, false);
    conv_case(&e, one, one, &plain, LM_DTYPE_F32, false);
}

/* ---- norms ---- */

void test_cuda_ops__group_norm(void)
{
    env e;
    if (!env_open(&e))
        return;
    int64_t vae[4] = { 1, 128, 64, 64 }, big[4] = { 1, 64, 160, 160 }, odd[3] = { 2, 6, 5 };
    int64_t cs[1] = { 128 }, cb[1] = { 64 }, co[1] = { 6 };
    struct {
        const int64_t *shape, *cshape;
        int ndim, groups;
        float offset;
    } cases[] = {
        { vae, cs, 4, 32, 0.0f },
        { big, cb, 4, 32, 10.0f }, /* 5 chunks per group, a large mean */
        { odd, co, 3, 3, -1.0f },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        float off = cases[i].offset;
        pair x = pair_rand(&e, LM_DTYPE_F32, off - 1.0f, off + 3.0f, cases[i].ndim, cases[i].shape);
        pair g = pair_rand(&e, LM_DTYPE_F32, 0.5f, 1.5f, 1, cases[i].cshape);
        pair b = pair_rand(&e, LM_DTYPE_F32, -0.5f, 0.5f, 1, cases[i].cshape);
        REQUIRE(x.g && g.g && b.g);
        BOTH(&e, "group_norm", TOL_NORM,
             lm_group_norm(&out_c, x.c, g.c, b.c, cases[i].groups, 1e-6f, &e.err),
             lm_group_norm(&out_g, x.g, g.g, b.g, cases[i].groups, 1e-6f, &e.err));
        BOTH(&e, "group_norm without affine", TOL_NORM,
             lm_group_norm(&out_c, x.c, NULL, NULL, cases[i].groups, 1e-6f, &e.err),
             lm_group_norm(&out_g, x.g, NULL, NULL, cases[i].groups, 1e-6f, &e.err));
        pair_free(&x);
        pair_free(&g);
        pair_free(&b);
    }
}

static void row_norms(env *e, int64_t rows, int64_t c)
{
    int64_t xs[2] = { rows, c }, cs[1] = { c };
    pair x = pair_rand(e, LM_DTYPE_F32, -3.0f, 5.0f, 2, xs);
    pair g = pair_rand(e, LM_DTYPE_F32, 0.5f, 1.5f, 1, cs);
    pair b = pair_rand(e, LM_DTYPE_F32, -0.5f, 0.5f, 1, cs);
    if (!x.g || !g.g || !b.g) {
        test__fail(__FILE__, __LINE__, "inputs: %s", e->err.msg);
    } else {
        char what[64];
        snprintf(what, sizeof(what), "rows %lld x %lld: layer_norm", (long long)rows, (long long)c);
        BOTH(e, what, TOL_NORM, lm_layer_norm(&out_c, x.c, g.c, b.c, 1e-6f, &e->err),
             lm_layer_norm(&out_g, x.g, g.g, b.g, 1e-6f, &e->err));
        BOTH(e, "layer_norm without affine", TOL_NORM,
             lm_layer_norm(&out_c, x.c, NULL, NULL, 1e-6f, &e->err),
             lm_layer_norm(&out_g, x.g, NULL, NULL, 1e-6f, &e->err));
        BOTH(e, "rms_norm", TOL_NORM, lm_rms_norm(&out_c, x.c, g.c, 1e-6f, &e->err),
             lm_rms_norm(&out_g, x.g, g.g, 1e-6f, &e->err));
        BOTH(e, "softmax", TOL_F32, lm_softmax(&out_c, x.c, &e->err),
             lm_softmax(&out_g, x.g, &e->err));
    }
    pair_free(&x);
    pair_free(&g);
    pair_free(&b);
}

void test_cuda_ops__norms(void)
{
    env e;
    if (!env_open(&e))
        return;
    row_norms(&e, 600, 1536);   /* MMDiT tokens */
    row_norms(&e, 24 * 77, 64); /* SD3.5 q/k RMS norm per head */
    row_norms(&e, 5, 4099);
    row_norms(&e, 3, 7);
    row_norms(&e, 1, 1);
}

/* ---- elementwise ---- */

void test_cuda_ops__unary(void)
{
    env e;
    if (!env_open(&e))
        return;
    int64_t shape[3] = { 2, 333, 97 };
    pair x = pair_rand(&e, LM_DTYPE_F32, -8.0f, 8.0f, 3, shape);
    REQUIRE(x.g != NULL);
    BOTH(&e, "gelu", TOL_F32, lm_gelu(&out_c, x.c, &e.err), lm_gelu(&out_g, x.g, &e.err));
    BOTH(&e, "gelu_tanh", TOL_F32, lm_gelu_tanh(&out_c, x.c, &e.err),
         lm_gelu_tanh(&out_g, x.g, &e.err));
    BOTH(&e, "quick_gelu", TOL_F32, lm_quick_gelu(&out_c, x.c, &e.err),
         lm_quick_gelu(&out_g, x.g, &e.err));
    BOTH(&e, "silu", TOL_F32, lm_silu(&out_c, x.c, &e.err), lm_silu(&out_g, x.g, &e.err));
    BOTH(&e, "exp", TOL_F32, lm_exp(&out_c, x.c, &e.err), lm_exp(&out_g, x.g, &e.err));
    BOTH(&e, "scale", TOL_F32, lm_scale(&out_c, x.c, 0.5f, -1.25f, &e.err),
         lm_scale(&out_g, x.g, 0.5f, -1.25f, &e.err));
    BOTH(&e, "clamp", TOL_EXACT, lm_clamp(&out_c, x.c, -1.0f, 2.5f, &e.err),
         lm_clamp(&out_g, x.g, -1.0f, 2.5f, &e.err));
    /* A bf16 activation: the front-end casts it on the device first. */
    lm_tensor *hc = NULL, *hg = NULL;
    REQUIRE_OK(lm_tensor_cast(&hc, x.c, LM_DTYPE_BF16, &e.err), &e.err);
    REQUIRE_OK(lm_tensor_cast(&hg, x.g, LM_DTYPE_BF16, &e.err), &e.err);
    BOTH(&e, "silu of bf16", TOL_F32, lm_silu(&out_c, hc, &e.err), lm_silu(&out_g, hg, &e.err));
    lm_tensor_free(hc);
    lm_tensor_free(hg);
    pair_free(&x);
}

void test_cuda_ops__fill(void)
{
    env e;
    if (!env_open(&e))
        return;
    int64_t shape[2] = { 17, 1001 };
    pair x = pair_rand(&e, LM_DTYPE_F32, 0.0f, 1.0f, 2, shape);
    REQUIRE(x.g != NULL);
    CHECK_OK(lm_fill(x.c, -3.5f, &e.err), &e.err);
    CHECK_OK(lm_fill(x.g, -3.5f, &e.err), &e.err);
    COMPARE(&e, "fill", x.c, x.g, TOL_EXACT);
}

void test_cuda_ops__broadcast(void)
{
    env e;
    if (!env_open(&e))
        return;
    int64_t xs[3] = { 2, 154, 1536 }, vs[2] = { 2, 1536 }, cs[1] = { 1536 },
            cols[3] = { 2, 154, 1 };
    pair x = pair_rand(&e, LM_DTYPE_F32, -2.0f, 2.0f, 3, xs);
    pair y = pair_rand(&e, LM_DTYPE_F32, -2.0f, 2.0f, 3, xs);
    pair v = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 2, vs);
    pair w = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 2, vs);
    pair c = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 1, cs);
    pair col = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 3, cols);
    REQUIRE(x.g && y.g && v.g && w.g && c.g && col.g);
    BOTH(&e, "add", TOL_EXACT, lm_add(&out_c, x.c, y.c, &e.err), lm_add(&out_g, x.g, y.g, &e.err));
    BOTH(&e, "sub [C]", TOL_EXACT, lm_sub(&out_c, x.c, c.c, &e.err),
         lm_sub(&out_g, x.g, c.g, &e.err));
    BOTH(&e, "mul [B, N, 1]", TOL_EXACT, lm_mul(&out_c, x.c, col.c, &e.err),
         lm_mul(&out_g, x.g, col.g, &e.err));
    BOTH(&e, "mul [C] * [B, N, 1]", TOL_EXACT, lm_mul(&out_c, c.c, col.c, &e.err),
         lm_mul(&out_g, c.g, col.g, &e.err));
    BOTH(&e, "modulate [B, C]", TOL_F32, lm_modulate(&out_c, x.c, v.c, w.c, &e.err),
         lm_modulate(&out_g, x.g, v.g, w.g, &e.err));
    BOTH(&e, "gated_add [B, C]", TOL_F32, lm_gated_add(&out_c, x.c, v.c, y.c, &e.err),
         lm_gated_add(&out_g, x.g, v.g, y.g, &e.err));
    pair_free(&x);
    pair_free(&y);
    pair_free(&v);
    pair_free(&w);
    pair_free(&c);
    pair_free(&col);
}

/* ---- layout ---- */

void test_cuda_ops__layout(void)
{
    env e;
    if (!env_open(&e))
        return;
    int64_t a_s[4] = { 2, 3, 5, 7 }, b_s[4] = { 2, 4, 5, 7 }, c_s[4] = { 2, 1, 5, 7 };
    pair a = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 4, a_s);
    pair b = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 4, b_s);
    pair c = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 4, c_s);
    REQUIRE(a.g && b.g && c.g);
    const lm_tensor *tc[3] = { a.c, b.c, c.c }, *tg[3] = { a.g, b.g, c.g };
    BOTH(&e, "concat dim 1", TOL_EXACT, lm_concat(&out_c, tc, 3, 1, &e.err),
         lm_concat(&out_g, tg, 3, 1, &e.err));
    const lm_tensor *sc[2] = { a.c, a.c }, *sg[2] = { a.g, a.g };
    BOTH(&e, "concat dim -1", TOL_EXACT, lm_concat(&out_c, sc, 2, -1, &e.err),
         lm_concat(&out_g, sg, 2, -1, &e.err));
    BOTH(&e, "concat dim 0", TOL_EXACT, lm_concat(&out_c, sc, 2, 0, &e.err),
         lm_concat(&out_g, sg, 2, 0, &e.err));
    BOTH(&e, "pad2d asymmetric", TOL_EXACT, lm_pad2d(&out_c, a.c, 0, 2, 1, 0, -7.0f, &e.err),
         lm_pad2d(&out_g, a.g, 0, 2, 1, 0, -7.0f, &e.err));
    BOTH(&e, "upsample_nearest2x", TOL_EXACT, lm_upsample_nearest2x(&out_c, a.c, &e.err),
         lm_upsample_nearest2x(&out_g, a.g, &e.err));
    int64_t lat[4] = { 2, 16, 12, 8 }, tok[3] = { 2, 24, 64 };
    pair l = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 4, lat);
    pair t = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 3, tok);
    REQUIRE(l.g && t.g);
    BOTH(&e, "patchify p 2", TOL_EXACT, lm_patchify(&out_c, l.c, 2, &e.err),
         lm_patchify(&out_g, l.g, 2, &e.err));
    BOTH(&e, "unpatchify p 2", TOL_EXACT, lm_unpatchify(&out_c, t.c, 2, 6, 4, &e.err),
         lm_unpatchify(&out_g, t.g, 2, 6, 4, &e.err));
    pair_free(&a);
    pair_free(&b);
    pair_free(&c);
    pair_free(&l);
    pair_free(&t);
}

void test_cuda_ops__embedding(void)
{
    env e;
    if (!env_open(&e))
        return;
    int64_t ts[2] = { 1000, 96 };
    for (int i = 0; i < 4; i++) {
        pair table = pair_rand(&e, weight_dtypes[i], -1.0f, 1.0f, 2, ts);
        pair ids = pair_ids(&e, i % 2 ? LM_DTYPE_I32 : LM_DTYPE_I64, 77, 1000);
        REQUIRE(table.g && ids.g);
        BOTH(&e, lm_dtype_name(weight_dtypes[i]), TOL_EXACT,
             lm_embedding(&out_c, table.c, ids.c, &e.err),
             lm_embedding(&out_g, table.g, ids.g, &e.err));
        pair_free(&table);
        pair_free(&ids);
    }
    /* An id outside the table is an error naming it, as on the CPU. */
    pair table = pair_rand(&e, LM_DTYPE_F32, -1.0f, 1.0f, 2, ts);
    pair ids = pair_ids(&e, LM_DTYPE_I64, 5, 10);
    REQUIRE(table.g && ids.g);
    ((int64_t *)lm_tensor_data(ids.c))[3] = 1000;
    lm_tensor_free(ids.g);
    ids.g = NULL;
    REQUIRE_OK(lm_tensor_to(&ids.g, ids.c, e.gpu, &e.err), &e.err);
    lm_tensor *out = NULL;
    CHECK(lm_embedding(&out, table.g, ids.g, &e.err) == LM_ERANGE);
    CHECK(out == NULL);
    CHECK_CONTAINS(e.err.msg, "id 1000 at position 3");
    pair_free(&table);
    pair_free(&ids);
}

void test_cuda_ops__timestep_embedding(void)
{
    env e;
    if (!env_open(&e))
        return;
    int64_t ts[1] = { 5 };
    pair t = pair_rand(&e, LM_DTYPE_F32, 0.0f, 1000.0f, 1, ts);
    REQUIRE(t.g != NULL);
    /* |arg| reaches 1000: one ulp of f there moves sin/cos by ~1e-4. */
    BOTH(&e, "timestep_embedding 256", 2e-4,
         lm_timestep_embedding(&out_c, t.c, 256, 10000.0f, &e.err),
         lm_timestep_embedding(&out_g, t.g, 256, 10000.0f, &e.err));
    BOTH(&e, "timestep_embedding 2", 2e-4, lm_timestep_embedding(&out_c, t.c, 2, 10000.0f, &e.err),
         lm_timestep_embedding(&out_g, t.g, 2, 10000.0f, &e.err));
    pair_free(&t);
}

void test_cuda_ops__t5_buckets(void)
{
    env e;
    if (!env_open(&e))
        return;
    BOTH(&e, "t5_buckets 77 x 77", TOL_EXACT,
         lm_t5_buckets(&out_c, lm_backend_cpu(), 77, 77, 32, 128, true, &e.err),
         lm_t5_buckets(&out_g, e.gpu, 77, 77, 32, 128, true, &e.err));
    BOTH(&e, "t5_buckets 5 x 300 causal", TOL_EXACT,
         lm_t5_buckets(&out_c, lm_backend_cpu(), 5, 300, 32, 128, false, &e.err),
         lm_t5_buckets(&out_g, e.gpu, 5, 300, 32, 128, false, &e.err));
}
