/* core/tensor/cuda/matmul.cu — linear (x·wᵀ + b) and batched matmul on cuBLAS.
 *
 * Everything is row-major on our side and column-major on cuBLAS' side, so a row-major
 * out [M, N] is handed over as the column-major Nx M matrix outᵀ = w·xᵀ (linear) or
 * bᵀ·aᵀ (matmul): no transposes are materialised. The bias is written into the output
 * first and the product accumulated onto it (beta = 1), as on the CPU.
 *
 * Precision (docs/cuda.md has the measured tolerances):
 *   - BF16 / F16 weights are used as they are, on tensor cores with fp32 accumulation
 *     (CUBLAS_COMPUTE_32F); the activations are converted to the weight's dtype into a
 *     scratch of M x K (F16: finite values beyond ±65504 saturate instead of overflowing,
 *     the way ComfyUI clamps T5's fp16 activations).
 *   - F8_E4M3 weights are widened to BF16 (exactly: every e4m3 value is a bf16 value) in
 *     panels of at most 16 M elements, each followed by its GEMM, so the weight never
 *     exists in full in a wider type; activations go to BF16.
 *   - F32 weights and matmul use TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32: inputs
 *     rounded to 10 mantissa bits, fp32 accumulation).
 *   - LOOM_CUDA_MATMUL=fp32 (read when the device is opened) makes every product exact
 *     fp32 (CUBLAS_COMPUTE_32F on f32 operands; non-F32 weights widened to f32 in panels),
 *     for checking a model against the CPU at the CPU's precision. */
#include "core/tensor/cuda/common.cuh"

#include <limits.h>

#define PANEL_ELEMS ((int64_t)16 << 20) /* weight elements widened per GEMM */

typedef struct {
    cublasOperation_t ta, tb;
    int64_t m, n, k;
    const void *a, *b;
    cudaDataType at, bt;
    int64_t lda, ldb, ldc;
    float beta;
    float *c;
    cublasComputeType_t compute;
} gemm_args;

static cudaDataType cuda_type(lm_dtype dt)
{
    return dt == LM_DTYPE_F16 ? CUDA_R_16F : dt == LM_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static cublasComputeType_t f32_compute(const lm_cuda *cu)
{
    return cu->fp32_matmul ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
}

static lm_status check_int(const char *op, const char *what, int64_t v, lm_error *err)
{
    return v <= INT_MAX ? LM_OK : lm_cuda__too_large(err, op, what, (long long)v);
}

static lm_status gemm(lm_cuda *cu, const gemm_args *g, const char *op, lm_error *err)
{
    lm_status st = check_int(op, "a GEMM dimension", LM_MAX(g->m, LM_MAX(g->n, g->k)), err);
    if (st == LM_OK)
        st = check_int(op, "a leading dimension", LM_MAX(g->lda, LM_MAX(g->ldb, g->ldc)), err);
    if (st != LM_OK)
        return st;
    float alpha = 1.0f;
    return LM_CUBLAS(cublasGemmEx(cu->blas, g->ta, g->tb, (int)g->m, (int)g->n, (int)g->k, &alpha,
                                  g->a, g->at, (int)g->lda, g->b, g->bt, (int)g->ldb, &g->beta,
                                  g->c, CUDA_R_32F, (int)g->ldc, g->compute, CUBLAS_GEMM_DEFAULT),
                     err);
}

/* ---- linear ---- */

typedef struct {
    const float *x;
    const lm_tensor *w;
    const float *bias;
    float *out;
    int64_t m, n, k; /* x [m, k], w [n, k], out [m, n] */
} linear_args;

/* outᵀ[n0:n0+nb] (+)= w_panel · xᵀ, the panel given in `wt` (contiguous [nb, k]). */
static lm_status linear_gemm(lm_cuda *cu, const linear_args *l, const void *wt, lm_dtype wdt,
                             int64_t n0, int64_t nb, const void *x, lm_dtype xdt, float beta,
                             lm_error *err)
{
    gemm_args g;
    g.ta = CUBLAS_OP_T;
    g.tb = CUBLAS_OP_N;
    g.m = nb;
    g.n = l->m;
    g.k = l->k;
    g.a = wt;
    g.at = cuda_type(wdt);
    g.lda = l->k;
    g.b = x;
    g.bt = cuda_type(xdt);
    g.ldb = l->k;
    g.beta = beta;
    g.c = l->out + n0;
    g.ldc = l->n;
    g.compute = wdt == LM_DTYPE_F32 ? f32_compute(cu) : CUBLAS_COMPUTE_32F;
    return gemm(cu, &g, "lm_linear", err);
}

/* Weights widened panel by panel into `to` (BF16, or F32 in fp32 mode). */
static lm_status linear_panels(lm_cuda *cu, const linear_args *l, lm_dtype to, const void *x,
                               lm_dtype xdt, float beta, lm_error *err)
{
    int64_t nb = LM_MAX(1, LM_MIN(l->n, PANEL_ELEMS / LM_MAX(l->k, 1)));
    void *panel = NULL;
    lm_status st = lm_cuda__alloc(cu, &panel, (size_t)(nb * l->k) * lm_dtype_size(to), err);
    const char *w = (const char *)lm_cuda__ptr(l->w);
    size_t wes = lm_dtype_size(l->w->dtype);
    for (int64_t n0 = 0; st == LM_OK && n0 < l->n; n0 += nb) {
        int64_t rows = LM_MIN(nb, l->n - n0);
        st = lm_cuda__cast(cu, panel, to, w + (size_t)(n0 * l->k) * wes, l->w->dtype, rows * l->k,
                           false, err);
        if (st == LM_OK)
            st = linear_gemm(cu, l, panel, to, n0, rows, x, xdt, beta, err);
    }
    lm_cuda__free(cu, panel);
    return st;
}

static lm_status linear_run(lm_cuda *cu, const linear_args *l, float beta, lm_error *err)
{
    lm_dtype wdt = l->w->dtype;
    if (wdt == LM_DTYPE_F32)
        return linear_gemm(cu, l, lm_cuda__ptr(l->w), wdt, 0, l->n, l->x, LM_DTYPE_F32, beta, err);
    if (cu->fp32_matmul)
        return linear_panels(cu, l, LM_DTYPE_F32, l->x, LM_DTYPE_F32, beta, err);
    lm_dtype adt = wdt == LM_DTYPE_F16 ? LM_DTYPE_F16 : LM_DTYPE_BF16;
    void *act = NULL;
    lm_status st = lm_cuda__alloc(cu, &act, (size_t)(l->m * l->k) * 2, err);
    if (st == LM_OK)
        st = lm_cuda__cast(cu, act, adt, l->x, LM_DTYPE_F32, l->m * l->k, adt == LM_DTYPE_F16, err);
    if (st == LM_OK && wdt == LM_DTYPE_F8_E4M3)
        st = linear_panels(cu, l, LM_DTYPE_BF16, act, adt, beta, err);
    else if (st == LM_OK)
        st = linear_gemm(cu, l, lm_cuda__ptr(l->w), wdt, 0, l->n, act, adt, beta, err);
    lm_cuda__free(cu, act);
    return st;
}

lm_status lm_cuda_linear(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu = lm_cuda__of(be);
    lm_status st = lm_cuda__enter(cu, err);
    const lm_tensor *x = c->in[0], *w = c->in[1];
    linear_args l;
    l.x = lm_cuda__f32(x);
    l.w = w;
    l.bias = c->n_in > 2 && c->in[2] ? lm_cuda__f32(c->in[2]) : NULL;
    l.out = lm_cuda__f32(c->out);
    l.n = w->shape[0];
    l.k = w->shape[1];
    l.m = l.n ? lm_tensor_numel(c->out) / l.n : 0;
    if (st != LM_OK || l.m == 0 || l.n == 0)
        return st;
    if (l.bias)
        st = lm_cuda__fill_rows(cu, l.out, l.bias, l.m, l.n, err);
    else if (l.k == 0)
        st = LM_CUDA(cudaMemsetAsync(l.out, 0, (size_t)(l.m * l.n) * sizeof(float), cu->stream),
                     err);
    if (st != LM_OK || l.k == 0) /* an empty sum: the bias (or zeros) is the answer */
        return st;
    return linear_run(cu, &l, l.bias ? 1.0f : 0.0f, err);
}

/* ---- batched matmul ---- */

lm_status lm_cuda_matmul(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu = lm_cuda__of(be);
    lm_status st = lm_cuda__enter(cu, err);
    const lm_tensor *a = c->in[0], *b = c->in[1];
    bool tb = c->p.matmul.trans_b;
    int64_t batch = a->shape[0], m = a->shape[1], k = a->shape[2], n = c->out->shape[2];
    bool shared_b = b->shape[0] == 1;
    float *out = lm_cuda__f32(c->out);
    if (st != LM_OK || batch * m * n == 0)
        return st;
    if (k == 0)
        return LM_CUDA(cudaMemsetAsync(out, 0, (size_t)(batch * m * n) * sizeof(float), cu->stream),
                       err);
    /* outᵀ (n x m) = op(b)ᵀ · aᵀ. A shared b folds the batch into the rows of a. */
    int64_t rows = shared_b ? batch * m : m, count = shared_b ? 1 : batch;
    st = check_int("lm_matmul", "a GEMM dimension", LM_MAX(rows, LM_MAX(n, k)), err);
    if (st == LM_OK)
        st = check_int("lm_matmul", "the batch", count, err);
    if (st != LM_OK)
        return st;
    float alpha = 1.0f, beta = 0.0f;
    int lda = (int)(tb ? k : n);
    return LM_CUBLAS(cublasGemmStridedBatchedEx(
                         cu->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)rows,
                         (int)k, &alpha, lm_cuda__ptr(b), CUDA_R_32F, lda, shared_b ? 0 : k * n,
                         lm_cuda__ptr(a), CUDA_R_32F, (int)k, m * k, &beta, out, CUDA_R_32F, (int)n,
                         m * n, (int)count, f32_compute(cu), CUBLAS_GEMM_DEFAULT),
                     err);
}
