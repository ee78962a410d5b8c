/* core/tensor/cuda/elementwise.cu — fill, activations, scalar affine/clamp, broadcasting
 * arithmetic (add, sub, mul, modulate, gated residual) and the layout ops (concat, pad,
 * nearest upsample, SD3 patchify/unpatchify, embedding gather, timestep features, T5
 * buckets).
 *
 * Every kernel is a grid-stride loop over the output's elements: memory-bound work, so
 * one thread per output element (coalesced writes) and plain index arithmetic. Broadcast
 * inputs arrive as stride-0 views of the output's shape (op.h); when every input is
 * contiguous the flat path skips the index arithmetic. Math is fp32 with the accurate
 * CUDA functions (erff, expf, tanhf, sinf, cosf; no fast-math), like the CPU's. */
#include "core/tensor/cuda/common.cuh"

#include <stdlib.h>

#define GRID_STRIDE(i, n)                                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

static lm_status launch_prep(lm_backend *be, lm_cuda **cu, lm_error *err)
{
    *cu = lm_cuda__of(be);
    return lm_cuda__enter(*cu, err);
}

/* ---- fill and unary maps ---- */

__global__ static void fill_kernel(float *y, int64_t n, float v)
{
    GRID_STRIDE(i, n)
    y[i] = v;
}

lm_status lm_cuda_fill(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    int64_t n = lm_tensor_numel(c->out);
    if (st != LM_OK || n == 0)
        return st;
    fill_kernel<<<lm_cuda__blocks(cu, n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0, cu->stream>>>(
        lm_cuda__f32(c->out), n, c->p.fill.value);
    return LM_CUDA_LAUNCHED("fill_kernel", err);
}

template <int OP> __device__ static inline float unary_op(float x, float a, float b)
{
    switch (OP) {
    case LM_OP_GELU:
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case LM_OP_GELU_TANH: {
        float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case LM_OP_QUICK_GELU:
        return x / (1.0f + expf(-1.702f * x));
    case LM_OP_SILU:
        return x / (1.0f + expf(-x));
    case LM_OP_EXP:
        return expf(x);
    case LM_OP_SCALE:
        return x * a + b;
    default:
        return x < a ? a : x > b ? b : x; /* LM_OP_CLAMP, like the CPU (NaN stays) */
    }
}

template <int OP>
__global__ static void unary_kernel(float *y, const float *x, int64_t n, float a, float b)
{
    GRID_STRIDE(i, n)
    y[i] = unary_op<OP>(x[i], a, b);
}

template <int OP>
static lm_status unary_launch(lm_cuda *cu, const lm_op_call *c, int64_t n, lm_error *err)
{
    unary_kernel<OP><<<lm_cuda__blocks(cu, n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0, cu->stream>>>(
        lm_cuda__f32(c->out), lm_cuda__f32(c->in[0]), n, c->p.scalar.a, c->p.scalar.b);
    return LM_CUDA_LAUNCHED("unary_kernel", err);
}

lm_status lm_cuda_unary(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    int64_t n = lm_tensor_numel(c->out);
    if (st != LM_OK || n == 0)
        return st;
    switch (c->op) {
    case LM_OP_GELU:
        return unary_launch<LM_OP_GELU>(cu, c, n, err);
    case LM_OP_GELU_TANH:
        return unary_launch<LM_OP_GELU_TANH>(cu, c, n, err);
    case LM_OP_QUICK_GELU:
        return unary_launch<LM_OP_QUICK_GELU>(cu, c, n, err);
    case LM_OP_SILU:
        return unary_launch<LM_OP_SILU>(cu, c, n, err);
    case LM_OP_EXP:
        return unary_launch<LM_OP_EXP>(cu, c, n, err);
    case LM_OP_SCALE:
        return unary_launch<LM_OP_SCALE>(cu, c, n, err);
    case LM_OP_CLAMP:
        return unary_launch<LM_OP_CLAMP>(cu, c, n, err);
    default:
        return lm_errorf(err, LM_EINTERNAL, "bad_op", "lm_cuda_unary called for op %s",
                         lm_op_name(c->op));
    }
}

/* ---- broadcasting arithmetic ---- */

typedef struct {
    const float *in[3];
    int64_t stride[3][LM_MAX_DIMS]; /* inputs' strides over the output's shape */
    int64_t shape[LM_MAX_DIMS];
    int ndim;
    int64_t n;
} bcast_args;

template <int OP> __device__ static inline float combine(float x, float p, float q)
{
    switch (OP) {
    case LM_OP_ADD:
        return x + p;
    case LM_OP_SUB:
        return x - p;
    case LM_OP_MUL:
        return x * p;
    case LM_OP_MODULATE:
        return x * (1.0f + q) + p; /* p = shift, q = scale */
    default:
        return x + p * q; /* LM_OP_GATED_ADD: p = gate, q = y */
    }
}

template <int OP, int N_IN, bool FLAT> __global__ static void bcast_kernel(float *y, bcast_args a)
{
    GRID_STRIDE(i, a.n)
    {
        int64_t off[3] = { i, i, i };
        if (!FLAT) {
            off[0] = off[1] = off[2] = 0;
            int64_t rest = i;
            for (int d = a.ndim - 1; d >= 0; d--) {
                int64_t k = rest % a.shape[d];
                rest /= a.shape[d];
                for (int j = 0; j < N_IN; j++)
                    off[j] += k * a.stride[j][d];
            }
        }
        float q = N_IN == 3 ? a.in[2][off[2]] : 0.0f;
        y[i] = combine<OP>(a.in[0][off[0]], a.in[1][off[1]], q);
    }
}

template <int OP, int N_IN>
static lm_status bcast_launch(lm_cuda *cu, const lm_op_call *c, const bcast_args *a, bool flat,
                              lm_error *err)
{
    unsigned blocks = lm_cuda__blocks(cu, a->n, LM_CUDA_THREADS);
    float *y = lm_cuda__f32(c->out);
    if (flat)
        bcast_kernel<OP, N_IN, true><<<blocks, LM_CUDA_THREADS, 0, cu->stream>>>(y, *a);
    else
        bcast_kernel<OP, N_IN, false><<<blocks, LM_CUDA_THREADS, 0, cu->stream>>>(y, *a);
    return LM_CUDA_LAUNCHED("bcast_kernel", err);
}

/* Fills the arguments; true when every input is laid out exactly like the output. */
static bool bcast_prepare(bcast_args *a, const lm_op_call *c, int n_in)
{
    memset(a, 0, sizeof(*a));
    const lm_tensor *out = c->out;
    a->ndim = out->ndim;
    a->n = lm_tensor_numel(out);
    bool flat = true;
    for (int d = 0; d < out->ndim; d++)
        a->shape[d] = out->shape[d];
    for (int j = 0; j < n_in; j++) {
        const lm_tensor *t = c->in[j];
        a->in[j] = lm_cuda__f32(t);
        int64_t want = 1;
        for (int d = out->ndim - 1; d >= 0; d--) {
            a->stride[j][d] = t->stride[d];
            if (out->shape[d] != 1 && t->stride[d] != want)
                flat = false;
            want *= out->shape[d];
        }
    }
    return flat;
}

lm_status lm_cuda_binary(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    bcast_args a;
    bool flat = bcast_prepare(&a, c, 2);
    if (st != LM_OK || a.n == 0)
        return st;
    switch (c->op) {
    case LM_OP_ADD:
        return bcast_launch<LM_OP_ADD, 2>(cu, c, &a, flat, err);
    case LM_OP_SUB:
        return bcast_launch<LM_OP_SUB, 2>(cu, c, &a, flat, err);
    case LM_OP_MUL:
        return bcast_launch<LM_OP_MUL, 2>(cu, c, &a, flat, err);
    default:
        return lm_errorf(err, LM_EINTERNAL, "bad_op", "lm_cuda_binary called for op %s",
                         lm_op_name(c->op));
    }
}

lm_status lm_cuda_ternary(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    bcast_args a;
    bool flat = bcast_prepare(&a, c, 3);
    if (st != LM_OK || a.n == 0)
        return st;
    if (c->op == LM_OP_MODULATE)
        return bcast_launch<LM_OP_MODULATE, 3>(cu, c, &a, flat, err);
    return bcast_launch<LM_OP_GATED_ADD, 3>(cu, c, &a, flat, err);
}

/* ---- concat ---- */

__global__ static void concat_kernel(float *y, const float *x, int64_t outer, int64_t inner,
                                     int64_t out_inner, int64_t at)
{
    GRID_STRIDE(i, outer * inner)
    {
        int64_t o = i / inner, k = i % inner;
        y[o * out_inner + at + k] = x[i];
    }
}

lm_status lm_cuda_concat(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    int dim = c->p.concat.dim;
    int64_t outer = 1, after = 1;
    for (int d = 0; d < dim; d++)
        outer *= c->out->shape[d];
    for (int d = dim + 1; d < c->out->ndim; d++)
        after *= c->out->shape[d];
    int64_t out_inner = c->out->shape[dim] * after, at = 0;
    for (int i = 0; st == LM_OK && i < c->n_in; i++) {
        int64_t inner = c->in[i]->shape[dim] * after;
        if (inner > 0 && outer > 0) {
            unsigned blocks = lm_cuda__blocks(cu, outer * inner, LM_CUDA_THREADS);
            concat_kernel<<<blocks, LM_CUDA_THREADS, 0, cu->stream>>>(
                lm_cuda__f32(c->out), lm_cuda__f32(c->in[i]), outer, inner, out_inner, at);
            st = LM_CUDA_LAUNCHED("concat_kernel", err);
        }
        at += inner;
    }
    return st;
}

/* ---- planes: pad and nearest upsample over the last two dims ---- */

__global__ static void pad_kernel(float *y, const float *x, int64_t n, int64_t h, int64_t w,
                                  int64_t ho, int64_t wo, int top, int left, float v)
{
    GRID_STRIDE(i, n)
    {
        int64_t xo = i % wo, yo = (i / wo) % ho, plane = i / (wo * ho);
        int64_t yi = yo - top, xi = xo - left;
        bool in = yi >= 0 && yi < h && xi >= 0 && xi < w;
        y[i] = in ? x[(plane * h + yi) * w + xi] : v;
    }
}

__global__ static void upsample_kernel(float *y, const float *x, int64_t n, int64_t h, int64_t w)
{
    GRID_STRIDE(i, n)
    {
        int64_t wo = 2 * w, ho = 2 * h;
        int64_t xo = i % wo, yo = (i / wo) % ho, plane = i / (wo * ho);
        y[i] = x[(plane * h + yo / 2) * w + xo / 2];
    }
}

lm_status lm_cuda_pad(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    const lm_tensor *x = c->in[0], *y = c->out;
    int64_t n = lm_tensor_numel(y);
    if (st != LM_OK || n == 0)
        return st;
    pad_kernel<<<lm_cuda__blocks(cu, n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0, cu->stream>>>(
        lm_cuda__f32(y), lm_cuda__f32(x), n, x->shape[x->ndim - 2], x->shape[x->ndim - 1],
        y->shape[y->ndim - 2], y->shape[y->ndim - 1], c->p.pad.top, c->p.pad.left, c->p.pad.value);
    return LM_CUDA_LAUNCHED("pad_kernel", err);
}

lm_status lm_cuda_upsample(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    const lm_tensor *x = c->in[0];
    int64_t n = lm_tensor_numel(c->out);
    if (st != LM_OK || n == 0)
        return st;
    upsample_kernel<<<lm_cuda__blocks(cu, n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0, cu->stream>>>(
        lm_cuda__f32(c->out), lm_cuda__f32(x), n, x->shape[x->ndim - 2], x->shape[x->ndim - 1]);
    return LM_CUDA_LAUNCHED("upsample_kernel", err);
}

/* ---- SD3 patches ---- */

/* Token layout [B, h*w, p*p*C] <-> image [B, C, h*p, w*p]; one thread per token element, so
 * the token side is written (patchify) or read (unpatchify) contiguously. */
template <bool INVERSE>
__global__ static void patch_kernel(float *img, float *tok, int64_t n, int64_t C, int64_t p,
                                    int64_t h, int64_t w)
{
    GRID_STRIDE(i, n)
    {
        int64_t f = i % (p * p * C), t = i / (p * p * C);
        int64_t ch = f % C, qi = (f / C) % p, pi = f / (C * p);
        int64_t wi = t % w, hi = (t / w) % h, b = t / (w * h);
        int64_t px = ((b * C + ch) * h * p + hi * p + pi) * (w * p) + wi * p + qi;
        if (INVERSE)
            img[px] = tok[i];
        else
            tok[i] = img[px];
    }
}

lm_status lm_cuda_patchify(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    const lm_tensor *x = c->in[0];
    int64_t n = lm_tensor_numel(c->out), p = c->p.patch.p;
    if (st != LM_OK || n == 0)
        return st;
    patch_kernel<false>
        <<<lm_cuda__blocks(cu, n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0, cu->stream>>>(
            lm_cuda__f32(x), lm_cuda__f32(c->out), n, x->shape[1], p, x->shape[2] / p,
            x->shape[3] / p);
    return LM_CUDA_LAUNCHED("patch_kernel", err);
}

lm_status lm_cuda_unpatchify(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    const lm_tensor *y = c->out;
    int64_t n = lm_tensor_numel(y), p = c->p.patch.p;
    if (st != LM_OK || n == 0)
        return st;
    patch_kernel<true><<<lm_cuda__blocks(cu, n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0, cu->stream>>>(
        lm_cuda__f32(y), lm_cuda__f32(c->in[0]), n, y->shape[1], p, y->shape[2] / p,
        y->shape[3] / p);
    return LM_CUDA_LAUNCHED("patch_kernel", err);
}

/* ---- embedding ---- */

/* Rows with an id outside [0, V) are written as zeros and the first such position is
 * recorded in *bad (atomicMin), so the host can report it like the CPU does. */
__global__ static void embedding_kernel(float *y, const void *table, lm_dtype tdt, const void *ids,
                                        bool ids64, int64_t n, int64_t cols, int64_t rows,
                                        unsigned long long *bad)
{
    GRID_STRIDE(i, n)
    {
        int64_t r = i / cols, k = i % cols;
        int64_t id = ids64 ? ((const int64_t *)ids)[r] : ((const int32_t *)ids)[r];
        if (id < 0 || id >= rows) {
            y[i] = 0.0f;
            if (k == 0)
                atomicMin(bad, (unsigned long long)r);
            continue;
        }
        y[i] = lm_cu_load_f(table, id * cols + k, tdt);
    }
}

static lm_status embedding_check(lm_cuda *cu, const lm_op_call *c, unsigned long long *bad_dev,
                                 lm_error *err)
{
    unsigned long long bad = 0;
    lm_status st = LM_CUDA(
        cudaMemcpyAsync(&bad, bad_dev, sizeof(bad), cudaMemcpyDeviceToHost, cu->stream), err);
    if (st == LM_OK)
        st = LM_CUDA(cudaStreamSynchronize(cu->stream), err);
    if (st != LM_OK || bad == ~0ull)
        return st;
    const lm_tensor *ids = c->in[1];
    size_t es = lm_dtype_size(ids->dtype);
    int64_t id = 0;
    int32_t id32 = 0;
    void *at = (char *)lm_cuda__ptr(ids) + (size_t)bad * es;
    st = LM_CUDA(cudaMemcpyAsync(es == 8 ? (void *)&id : (void *)&id32, at, es,
                                 cudaMemcpyDeviceToHost, cu->stream),
                 err);
    if (st == LM_OK)
        st = LM_CUDA(cudaStreamSynchronize(cu->stream), err);
    if (st != LM_OK)
        return st;
    if (es != 8)
        id = id32;
    return lm_errorf(err, LM_ERANGE, "bad_index",
                     "lm_embedding: id %lld at position %llu is outside the table of %lld rows; "
                     "check the tokenizer and the model",
                     (long long)id, bad, (long long)c->in[0]->shape[0]);
}

lm_status lm_cuda_embedding(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    const lm_tensor *table = c->in[0], *ids = c->in[1];
    int64_t n = lm_tensor_numel(c->out), cols = table->shape[1];
    if (st != LM_OK || n == 0)
        return st;
    unsigned long long *bad = NULL;
    st = lm_cuda__alloc(cu, (void **)&bad, sizeof(*bad), err);
    if (st == LM_OK)
        st = LM_CUDA(cudaMemsetAsync(bad, 0xff, sizeof(*bad), cu->stream), err);
    if (st == LM_OK) {
        embedding_kernel<<<lm_cuda__blocks(cu, n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0,
                           cu->stream>>>(lm_cuda__f32(c->out), lm_cuda__ptr(table), table->dtype,
                                         lm_cuda__ptr(ids), ids->dtype == LM_DTYPE_I64, n, cols,
                                         table->shape[0], bad);
        st = LM_CUDA_LAUNCHED("embedding_kernel", err);
    }
    /* One synchronisation per call: embeddings run once per prompt, not per step. */
    if (st == LM_OK)
        st = embedding_check(cu, c, bad, err);
    lm_cuda__free(cu, bad);
    return st;
}

/* ---- timestep features ---- */

__global__ static void temb_kernel(float *y, const float *t, int64_t n, int64_t half, float neg_log)
{
    GRID_STRIDE(i, n)
    {
        int64_t b = i / half, k = i % half;
        /* The reference's float32 sequence: (-ln P) * i, / half, exp, then t * f. */
        float f = expf(neg_log * (float)k / (float)half);
        float arg = t[b] * f;
        y[b * 2 * half + k] = cosf(arg);
        y[b * 2 * half + half + k] = sinf(arg);
    }
}

lm_status lm_cuda_timestep_embedding(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    int64_t half = c->out->shape[1] / 2, n = c->out->shape[0] * half;
    if (st != LM_OK || n == 0)
        return st;
    float neg_log = (float)-log((double)c->p.temb.max_period);
    temb_kernel<<<lm_cuda__blocks(cu, n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0, cu->stream>>>(
        lm_cuda__f32(c->out), lm_cuda__f32(c->in[0]), n, half, neg_log);
    return LM_CUDA_LAUNCHED("temb_kernel", err);
}

/* ---- T5 buckets ---- */

/* The bucket depends only on j - i: the host computes the Nq + Nk - 1 distinct values
 * with the one rule in op.c (so both backends agree bit for bit) and the device spreads
 * them over the matrix. */
__global__ static void t5_kernel(int64_t *y, const int64_t *table, int64_t nq, int64_t nk)
{
    GRID_STRIDE(i, nq * nk)
    {
        int64_t q = i / nk, k = i % nk;
        y[i] = table[k - q + nq - 1];
    }
}

lm_status lm_cuda_t5_buckets(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu;
    lm_status st = launch_prep(be, &cu, err);
    int64_t nq = c->out->shape[0], nk = c->out->shape[1], m = nq + nk - 1;
    if (st != LM_OK || nq == 0 || nk == 0)
        return st;
    int64_t *host = (int64_t *)malloc((size_t)m * sizeof(int64_t));
    if (!host)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory",
                         "lm_t5_buckets: cannot allocate %lld "
                         "buckets",
                         (long long)m);
    for (int64_t r = 0; r < m; r++)
        host[r] = lm_t5_relative_bucket(r - (nq - 1), c->p.t5.bidirectional, c->p.t5.num_buckets,
                                        c->p.t5.max_distance);
    int64_t *table = NULL;
    st = lm_cuda__alloc(cu, (void **)&table, (size_t)m * sizeof(int64_t), err);
    if (st == LM_OK) /* pageable source: staged before the call returns, so free() is safe */
        st = LM_CUDA(cudaMemcpyAsync(table, host, (size_t)m * sizeof(int64_t),
                                     cudaMemcpyHostToDevice, cu->stream),
                     err);
    free(host);
    if (st == LM_OK) {
        t5_kernel<<<lm_cuda__blocks(cu, nq * nk, LM_CUDA_THREADS), LM_CUDA_THREADS, 0,
                    cu->stream>>>((int64_t *)lm_cuda__ptr(c->out), table, nq, nk);
        st = LM_CUDA_LAUNCHED("t5_kernel", err);
    }
    lm_cuda__free(cu, table);
    return st;
}
