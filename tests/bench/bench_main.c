/* tests/bench/bench_main.c — `make bench`: throughput of the CPU tensor ops at SD3 shapes.
 *
 * Every product is measured next to a baseline taken in the same run on the same data: a
 * bare cblas_sgemm of the same shape with OpenBLAS's own threading (as many threads as the
 * pool). The ratio ours/baseline is what to watch (goal >= 0.9 for lm_linear with f32
 * weights); absolute GFLOP/s depend on the machine. Each case is timed as the best of
 * several runs after a warm-up (runs stop after ~0.6 s per case), so the whole bench stays
 * well under two minutes on two cores. LOOM_THREADS sets the thread count;
 * LOOM_BENCH_QUICK=1 runs one small shape per table (a smoke test). The SD3 section at the
 * end (bench_sd3.c, docs/bench.md) runs the real model sizes; LOOM_BENCH_SD3=0 skips it. */
#include "core/base/thread.h"
#include "core/tensor/dtype.h"
#include "core/tensor/ops.h"
#include "core/tensor/precision.h"
#include "core/tensor/tensor.h"
#include "tests/tensor/ref/ref.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef lm_status (*bench_fn)(void *ctx, lm_error *err);

void bench_sd3(void); /* tests/bench/bench_sd3.c: SD3 Medium at real sizes */

/* Best time of fn over a warm-up and then repeats until ~0.6 s are spent (at least one
 * timed run); a negative time means fn failed (the error is printed). */
static double best_time(bench_fn fn, void *ctx)
{
    lm_error err;
    double t0 = lm_time_now();
    if (fn(ctx, &err) != LM_OK) {
        char msg[600];
        lm_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "bench: %s\n", msg);
        return -1;
    }
    double first = lm_time_now() - t0, best = first, spent = first;
    for (int rep = 0; rep < 20 && (rep == 0 || spent < 0.6); rep++) {
        if (first > 1.5 && rep == 0) /* a long case: its first run is the measurement */
            break;
        double s = lm_time_now();
        fn(ctx, &err);
        double dt = lm_time_now() - s;
        spent += dt;
        best = dt < best ? dt : best;
    }
    return best;
}

static lm_tensor *rand_tensor(lm_dtype dt, uint64_t seed, float scale, int ndim,
                              const int64_t *shape)
{
    lm_error err;
    lm_tensor *t = NULL;
    if (lm_tensor_new(&t, lm_backend_cpu(), dt, ndim, shape, &err) != LM_OK)
        return NULL;
    int64_t n = lm_tensor_numel(t);
    float *f = malloc((size_t)n * sizeof(float));
    if (!f) {
        lm_tensor_free(t);
        return NULL;
    }
    ref_fill_uniform(f, n, seed, -scale, scale);
    lm_dtype_from_f32(lm_tensor_data(t), f, dt, (size_t)n);
    free(f);
    return t;
}

/* ---- the baseline: cblas_sgemm with OpenBLAS's own threads ---- */

typedef struct {
    int64_t m, n, k;
    bool trans_b;
    const float *a, *b;
    float *c;
} sgemm_ctx;

static lm_status run_sgemm(void *user, lm_error *err)
{
    LM_UNUSED(err);
    sgemm_ctx *s = user;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, s->trans_b ? CblasTrans : CblasNoTrans, (int)s->m,
                (int)s->n, (int)s->k, 1.0f, s->a, (int)s->k, s->b,
                s->trans_b ? (int)s->k : (int)s->n, 0.0f, s->c, (int)s->n);
    return LM_OK;
}

/* OpenBLAS is single-threaded while Loom's kernels run (they call it from pool tasks);
 * the baseline gets as many OpenBLAS threads as the pool has, then it is put back. */
static double baseline_sgemm(sgemm_ctx *s)
{
    openblas_set_num_threads(lm_pool_threads(lm_pool_default()));
    double t = best_time(run_sgemm, s);
    openblas_set_num_threads(1);
    return t;
}

/* ---- linear ---- */

typedef struct {
    const lm_tensor *x, *w, *b;
    lm_tensor *y;
} linear_ctx;

static lm_status run_linear(void *user, lm_error *err)
{
    linear_ctx *c = user;
    lm_tensor_free(c->y);
    c->y = NULL;
    return lm_linear(&c->y, c->x, c->w, c->b, err);
}

/* lm_linear on x [M, K] and w [N, K] of dtype wdt at precision prec, against cblas_sgemm on
 * the same x and f32 weights; prints one table row headed `label`. */
static void linear_row(const char *label, int64_t M, int64_t K, int64_t N, lm_dtype wdt,
                       lm_precision prec)
{
    int64_t xs[2] = { M, K }, ws[2] = { N, K }, bs[1] = { N };
    lm_tensor *x = rand_tensor(LM_DTYPE_F32, 1, 1.0f, 2, xs);
    lm_tensor *w = rand_tensor(wdt, 2, 0.05f, 2, ws);
    lm_tensor *w32 = rand_tensor(LM_DTYPE_F32, 2, 0.05f, 2, ws);
    lm_tensor *b = rand_tensor(LM_DTYPE_F32, 3, 0.1f, 1, bs);
    float *c = malloc((size_t)(M * N) * sizeof(float));
    if (x && w && w32 && b && c) {
        linear_ctx lc = { x, w, b, NULL };
        lm_precision_set(prec);
        double t = best_time(run_linear, &lc);
        lm_precision_set(LM_PRECISION_F32);
        sgemm_ctx sc = { M, N, K, true, lm_tensor_data(x), lm_tensor_data(w32), c };
        double tb = baseline_sgemm(&sc);
        double gf = 2.0 * (double)M * (double)N * (double)K * 1e-9;
        printf("  %-22s %5lld %5lld %5lld  %8.1f  %8.1f  %6.2f\n", label, (long long)M,
               (long long)K, (long long)N, t > 0 ? gf / t : 0.0, gf / tb, t > 0 ? tb / t : 0.0);
        lm_tensor_free(lc.y);
    } else {
        printf("linear%s %lldx%lldx%lld: out of memory\n", prec == LM_PRECISION_BF16 ? " bf16" : "",
               (long long)M, (long long)K, (long long)N);
    }
    lm_tensor_free(x);
    lm_tensor_free(w);
    lm_tensor_free(w32);
    lm_tensor_free(b);
    free(c);
}

static void bench_linear(int64_t M, int64_t K, int64_t N, lm_dtype wdt)
{
    linear_row(wdt == LM_DTYPE_F32    ? "lm_linear f32 w"
               : wdt == LM_DTYPE_F16  ? "lm_linear f16 w"
               : wdt == LM_DTYPE_BF16 ? "lm_linear bf16 w"
                                      : "lm_linear f8 w",
               M, K, N, wdt, LM_PRECISION_F32);
}

/* bf16 compute (--precision bf16): the same products with activations and weights rounded
 * to bf16 and f32 accumulation, against the same f32 sgemm baseline (goal: ratio > 1). */
static void bench_linear_bf16(int64_t M, int64_t K, int64_t N, lm_dtype wdt)
{
    char label[64];
    snprintf(label, sizeof(label), "bf16 compute, %-4s w",
             wdt == LM_DTYPE_F32   ? "f32"
             : wdt == LM_DTYPE_F16 ? "f16"
                                   : "bf16");
    linear_row(label, M, K, N, wdt, LM_PRECISION_BF16);
}

static void bench_bf16_section(bool quick)
{
    if (!lm_precision_native(LM_PRECISION_BF16)) {
        printf("\n  bf16 compute: skipped (this CPU lacks AVX512-BF16)\n");
        return;
    }
    printf("\n  %-22s %5s %5s %5s  %8s  %8s  %6s\n", "linear, --precision bf16", "M", "K", "N",
           "GFLOP/s", "f32 sgemm", "ratio");
    bench_linear_bf16(1178, 1536, 1536, LM_DTYPE_F32);
    if (quick)
        return;
    bench_linear_bf16(1178, 1536, 6144, LM_DTYPE_F32);
    bench_linear_bf16(1178, 6144, 1536, LM_DTYPE_F32);
    bench_linear_bf16(1178, 1536, 6144, LM_DTYPE_F16);
    bench_linear_bf16(1178, 1536, 6144, LM_DTYPE_BF16);
}

/* ---- attention ---- */

typedef struct {
    const lm_tensor *q, *k, *v;
    lm_attention_opts opts;
    lm_tensor *o;
} attn_ctx;

static lm_status run_attention(void *user, lm_error *err)
{
    attn_ctx *c = user;
    lm_tensor_free(c->o);
    c->o = NULL;
    return lm_attention(&c->o, c->q, c->k, c->v, NULL, &c->opts, err);
}

static void bench_attention(int64_t N, int64_t H, int64_t D)
{
    int64_t s[3] = { 1, N, H * D };
    lm_tensor *q = rand_tensor(LM_DTYPE_F32, 4, 1.0f, 3, s);
    lm_tensor *k = rand_tensor(LM_DTYPE_F32, 5, 1.0f, 3, s);
    lm_tensor *v = rand_tensor(LM_DTYPE_F32, 6, 1.0f, 3, s);
    float *sc_out = malloc((size_t)(N * N) * sizeof(float));
    if (q && k && v && sc_out) {
        attn_ctx ac = { q, k, v, { .heads = (int)H }, NULL };
        double t = best_time(run_attention, &ac);
        /* Baseline: the one q·kᵀ product of one head, [N, D]·[N, D]ᵀ, run H times' worth of
         * flops at OpenBLAS's rate: the speed a GEMM-bound attention could approach. */
        sgemm_ctx sg = { N, N, D, true, lm_tensor_data(q), lm_tensor_data(k), sc_out };
        double tb = baseline_sgemm(&sg);
        double gf = 4.0 * (double)N * (double)N * (double)D * (double)H * 1e-9;
        double gf_base = 2.0 * (double)N * (double)N * (double)D * 1e-9 / tb;
        printf("  attention %5lld tok %2lldx%-3lld  %8.1f  %8.1f  %6.2f   %7.0f tok/s\n",
               (long long)N, (long long)H, (long long)D, t > 0 ? gf / t : 0.0, gf_base,
               t > 0 ? gf / t / gf_base : 0.0, t > 0 ? (double)N / t : 0.0);
        lm_tensor_free(ac.o);
    } else {
        printf("attention %lld: out of memory\n", (long long)N);
    }
    lm_tensor_free(q);
    lm_tensor_free(k);
    lm_tensor_free(v);
    free(sc_out);
}

/* ---- conv2d ---- */

typedef struct {
    const lm_tensor *x, *w, *b;
    lm_conv2d_opts opts;
    lm_tensor *y;
} conv_ctx;

static lm_status run_conv(void *user, lm_error *err)
{
    conv_ctx *c = user;
    lm_tensor_free(c->y);
    c->y = NULL;
    return lm_conv2d(&c->y, c->x, c->w, c->b, &c->opts, err);
}

static void bench_conv(int64_t C, int64_t H, int64_t W, lm_dtype wdt)
{
    int64_t xs[4] = { 1, C, H, W }, ws[4] = { C, C, 3, 3 }, bs[1] = { C };
    int64_t kk = C * 9, px = H * W;
    lm_tensor *x = rand_tensor(LM_DTYPE_F32, 7, 1.0f, 4, xs);
    lm_tensor *w = rand_tensor(wdt, 8, 0.05f, 4, ws);
    lm_tensor *b = rand_tensor(LM_DTYPE_F32, 9, 0.1f, 1, bs);
    float *col = malloc((size_t)(kk * px) * sizeof(float));
    float *out = malloc((size_t)(C * px) * sizeof(float));
    float *w32 = malloc((size_t)(C * kk) * sizeof(float));
    if (x && w && b && col && out && w32) {
        conv_ctx cc = {
            x,
            w,
            b,
            { .stride = 1, .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1 },
            NULL
        };
        double t = best_time(run_conv, &cc);
        /* Baseline: the GEMM an im2col convolution performs, [C, 9C]·[9C, HW], without the
         * im2col itself. */
        ref_fill_uniform(col, kk * px, 10, -1, 1);
        ref_fill_uniform(w32, C * kk, 11, -1, 1);
        sgemm_ctx sg = { C, px, kk, false, w32, col, out };
        double tb = baseline_sgemm(&sg);
        double gf = 2.0 * (double)C * (double)kk * (double)px * 1e-9;
        printf("  conv3x3 %4lldch %4lldx%-4lld %-4s %8.1f  %8.1f  %6.2f\n", (long long)C,
               (long long)H, (long long)W, wdt == LM_DTYPE_F32 ? "f32" : "f16",
               t > 0 ? gf / t : 0.0, gf / tb, t > 0 ? tb / t : 0.0);
        lm_tensor_free(cc.y);
    } else {
        printf("conv %lldch %lldx%lld: out of memory\n", (long long)C, (long long)H, (long long)W);
    }
    lm_tensor_free(x);
    lm_tensor_free(w);
    lm_tensor_free(b);
    free(col);
    free(out);
    free(w32);
}

int main(void)
{
    const char *q = getenv("LOOM_BENCH_QUICK");
    bool quick = q && q[0] == '1';
    double t0 = lm_time_now();
    printf("loom bench: %d threads (LOOM_THREADS), OpenBLAS %s\n",
           lm_pool_threads(lm_pool_default()), openblas_get_config());
    printf("baseline = cblas_sgemm of the same shape, OpenBLAS threaded, same run\n\n");
    printf("  %-22s %5s %5s %5s  %8s  %8s  %6s\n", "linear (x . w^T + b)", "M", "K", "N", "GFLOP/s",
           "baseline", "ratio");
    bench_linear(1178, 1536, 1536, LM_DTYPE_F32); /* SD3 medium: 1024+154 tokens, qkv/proj */
    if (!quick) {
        bench_linear(1178, 1536, 6144, LM_DTYPE_F32); /* mlp.fc1 */
        bench_linear(1178, 6144, 1536, LM_DTYPE_F32); /* mlp.fc2 */
        bench_linear(1178, 2048, 2048, LM_DTYPE_F32); /* SD3.5 large width */
        bench_linear(1178, 1536, 6144, LM_DTYPE_F16);
        bench_linear(1178, 1536, 6144, LM_DTYPE_BF16);
        bench_linear(154, 4096, 4096, LM_DTYPE_F8_E4M3); /* T5-XXL fp8 */
    }
    bench_bf16_section(quick);
    printf("\n  %-29s  %8s  %8s  %6s\n", "attention (B=1, heads x dim)", "GFLOP/s", "1-head qk",
           "ratio");
    bench_attention(quick ? 256 : 1024, 24, 64);
    if (!quick)
        bench_attention(4096, 24, 64);
    printf("\n  %-29s %8s  %8s  %6s\n", "conv2d 3x3 pad 1 (B=1)", "GFLOP/s", "GEMM", "ratio");
    bench_conv(quick ? 64 : 512, 64, 64, LM_DTYPE_F32); /* VAE decoder mid / up[3] */
    if (!quick) {
        bench_conv(256, 128, 128, LM_DTYPE_F32); /* VAE decoder up[2] */
        bench_conv(512, 64, 64, LM_DTYPE_F16);
    }
    bench_sd3();
    printf("\nbench: %.1f s\n", lm_time_now() - t0);
    return 0;
}
