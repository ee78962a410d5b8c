/* core/tensor/cuda/norm.cu — group norm, layer norm, RMS norm and softmax.
 *
 * Row ops (layer norm, RMS norm, softmax over the last dim): one warp per row, the row
 * read from global memory once per pass (the second pass hits L1/L2). Layer and RMS norm
 * accumulate in double per lane and take two passes (mean, then centred variance), like
 * the CPU, so long rows with a large offset keep their precision; softmax subtracts the
 * row maximum and sums in float like the CPU.
 *
 * Group norm: a group of SD3's VAE holds up to millions of elements (4 channels x 1024²),
 * and there are only B x 32 groups, too few blocks for a GPU. So each group is cut into
 * chunks; a block computes its chunk's count, mean and centred sum of squares (two passes
 * over the chunk, in double), a second kernel merges the chunks of a group with Chan's
 * parallel formula (exact in double), and a third normalises every element. */
#include "core/tensor/cuda/common.cuh"

#define ROW_WARPS  8
#define GN_THREADS 256
#define GN_CHUNK   ((int64_t)16384) /* elements per block of the statistics pass */

template <typename T> __device__ static inline T warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static inline float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- rows ---- */

typedef struct {
    const float *x, *gamma, *beta;
    float *y;
    int64_t rows, len;
    float eps;
} row_args;

__device__ static void layer_row(const row_args &a, const float *x, float *y, int lane)
{
    double s = 0.0, ss = 0.0;
    for (int64_t i = lane; i < a.len; i += 32)
        s += (double)x[i];
    double mean = warp_sum(s) / (double)a.len;
    for (int64_t i = lane; i < a.len; i += 32) {
        double d = (double)x[i] - mean;
        ss += d * d;
    }
    double var = warp_sum(ss) / (double)a.len;
    float m = (float)mean, r = (float)(1.0 / sqrt(var + (double)a.eps));
    for (int64_t i = lane; i < a.len; i += 32) {
        float v = (x[i] - m) * r;
        if (a.gamma)
            v *= a.gamma[i];
        y[i] = a.beta ? v + a.beta[i] : v;
    }
}

__device__ static void rms_row(const row_args &a, const float *x, float *y, int lane)
{
    double ss = 0.0;
    for (int64_t i = lane; i < a.len; i += 32)
        ss += (double)x[i] * (double)x[i];
    float r = (float)(1.0 / sqrt(warp_sum(ss) / (double)a.len + (double)a.eps));
    for (int64_t i = lane; i < a.len; i += 32)
        y[i] = a.gamma ? x[i] * r * a.gamma[i] : x[i] * r;
}

__device__ static void softmax_row(const row_args &a, const float *x, float *y, int lane)
{
    float mx = -INFINITY;
    for (int64_t i = lane; i < a.len; i += 32)
        mx = fmaxf(mx, x[i]);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int64_t i = lane; i < a.len; i += 32) {
        float e = expf(x[i] - mx);
        y[i] = e;
        s += e;
    }
    float inv = 1.0f / warp_sum(s);
    for (int64_t i = lane; i < a.len; i += 32) /* each lane rereads only what it wrote */
        y[i] *= inv;
}

template <int OP> __global__ static void row_kernel(row_args a)
{
    int lane = threadIdx.x & 31;
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t r = warp; r < a.rows; r += warps) {
        const float *x = a.x + r * a.len;
        float *y = a.y + r * a.len;
        if (OP == LM_OP_LAYER_NORM)
            layer_row(a, x, y, lane);
        else if (OP == LM_OP_RMS_NORM)
            rms_row(a, x, y, lane);
        else
            softmax_row(a, x, y, lane);
    }
}

template <int OP> static lm_status row_launch(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu = lm_cuda__of(be);
    lm_status st = lm_cuda__enter(cu, err);
    const lm_tensor *x = c->in[0];
    row_args a;
    a.x = lm_cuda__f32(x);
    a.y = lm_cuda__f32(c->out);
    a.gamma = c->n_in > 1 && c->in[1] ? lm_cuda__f32(c->in[1]) : NULL;
    a.beta = c->n_in > 2 && c->in[2] ? lm_cuda__f32(c->in[2]) : NULL;
    a.len = x->shape[x->ndim - 1];
    a.rows = a.len ? lm_tensor_numel(x) / a.len : 0;
    a.eps = c->p.norm.eps;
    if (st != LM_OK || a.rows == 0)
        return st;
    unsigned blocks = lm_cuda__blocks(cu, a.rows, ROW_WARPS);
    row_kernel<OP><<<blocks, ROW_WARPS * 32, 0, cu->stream>>>(a);
    return LM_CUDA_LAUNCHED("row_kernel", err);
}

lm_status lm_cuda_layer_norm(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    return row_launch<LM_OP_LAYER_NORM>(be, c, err);
}

lm_status lm_cuda_rms_norm(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    return row_launch<LM_OP_RMS_NORM>(be, c, err);
}

lm_status lm_cuda_softmax(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    return row_launch<LM_OP_SOFTMAX>(be, c, err);
}

/* ---- group norm ---- */

typedef struct {
    double n, mean, m2;
} moments;

/* Sum over the block; every thread gets the result. */
__device__ static double block_sum(double v, double *shared)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* `shared` may still be read from the previous call */
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    double t = 0.0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++)
        t += shared[w];
    return t;
}

/* grid (chunks, units): chunk blockIdx.x of unit (group) blockIdx.y. */
__global__ static void gn_stats_kernel(const float *x, int64_t len, int64_t chunks, moments *out)
{
    __shared__ double shared[GN_THREADS / 32];
    int64_t u = blockIdx.y, c0 = (int64_t)blockIdx.x * GN_CHUNK;
    int64_t c1 = c0 + GN_CHUNK < len ? c0 + GN_CHUNK : len;
    const float *g = x + u * len;
    double s = 0.0;
    for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x)
        s += (double)g[i];
    double n = (double)(c1 - c0), mean = block_sum(s, shared) / n, ss = 0.0;
    for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
        double d = (double)g[i] - mean;
        ss += d * d;
    }
    double m2 = block_sum(ss, shared);
    if (threadIdx.x == 0)
        out[u * chunks + blockIdx.x] = moments{ n, mean, m2 };
}

/* One thread per group: Chan et al.'s pairwise merge of the chunks, then mean and 1/std. */
__global__ static void gn_merge_kernel(const moments *part, int64_t units, int64_t chunks,
                                       float eps, float2 *stats)
{
    int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= units)
        return;
    moments a = part[u * chunks];
    for (int64_t k = 1; k < chunks; k++) {
        moments b = part[u * chunks + k];
        double n = a.n + b.n, delta = b.mean - a.mean;
        a.m2 += b.m2 + delta * delta * a.n * b.n / n;
        a.mean += delta * b.n / n;
        a.n = n;
    }
    double var = a.m2 / a.n;
    stats[u] = make_float2((float)a.mean, (float)(1.0 / sqrt(var + (double)eps)));
}

typedef struct {
    const float *x, *gamma, *beta;
    float *y;
    const float2 *stats;
    int64_t n, len, spatial, groups, cg;
} gn_apply_args;

__global__ static void gn_apply_kernel(gn_apply_args a)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < a.n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t u = i / a.len;
        int64_t ch = (u % a.groups) * a.cg + (i % a.len) / a.spatial;
        float2 s = a.stats[u];
        float g = a.gamma ? a.gamma[ch] * s.y : s.y;
        float b = a.beta ? a.beta[ch] : 0.0f;
        a.y[i] = (a.x[i] - s.x) * g + b;
    }
}

static lm_status gn_run(lm_cuda *cu, const gn_apply_args *a, int64_t units, float eps,
                        lm_error *err)
{
    int64_t chunks = (a->len + GN_CHUNK - 1) / GN_CHUNK;
    if (units > 65535)
        return lm_cuda__too_large(err, "lm_group_norm", "batch x groups", (long long)units);
    size_t part_bytes = (size_t)(units * chunks) * sizeof(moments);
    char *scratch = NULL;
    lm_status st =
        lm_cuda__alloc(cu, (void **)&scratch, part_bytes + (size_t)units * sizeof(float2), err);
    if (st != LM_OK)
        return st;
    moments *part = (moments *)scratch;
    float2 *stats = (float2 *)(scratch + part_bytes); /* part_bytes is a multiple of 8 */
    gn_stats_kernel<<<dim3((unsigned)chunks, (unsigned)units), GN_THREADS, 0, cu->stream>>>(
        a->x, a->len, chunks, part);
    st = LM_CUDA_LAUNCHED("gn_stats_kernel", err);
    if (st == LM_OK) {
        gn_merge_kernel<<<(unsigned)((units + 127) / 128), 128, 0, cu->stream>>>(
            part, units, chunks, eps, stats);
        st = LM_CUDA_LAUNCHED("gn_merge_kernel", err);
    }
    if (st == LM_OK) {
        gn_apply_args b = *a;
        b.stats = stats;
        gn_apply_kernel<<<lm_cuda__blocks(cu, a->n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0,
                          cu->stream>>>(b);
        st = LM_CUDA_LAUNCHED("gn_apply_kernel", err);
    }
    lm_cuda__free(cu, scratch);
    return st;
}

lm_status lm_cuda_group_norm(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu = lm_cuda__of(be);
    lm_status st = lm_cuda__enter(cu, err);
    const lm_tensor *x = c->in[0];
    gn_apply_args a;
    memset(&a, 0, sizeof(a));
    a.x = lm_cuda__f32(x);
    a.y = lm_cuda__f32(c->out);
    a.gamma = c->n_in > 1 && c->in[1] ? lm_cuda__f32(c->in[1]) : NULL;
    a.beta = c->n_in > 2 && c->in[2] ? lm_cuda__f32(c->in[2]) : NULL;
    a.n = lm_tensor_numel(x);
    a.groups = c->p.norm.groups;
    a.cg = x->shape[1] / a.groups;
    a.spatial = a.n ? a.n / (x->shape[0] * x->shape[1]) : 0;
    a.len = a.cg * a.spatial;
    if (st != LM_OK || a.n == 0)
        return st;
    return gn_run(cu, &a, x->shape[0] * a.groups, c->p.norm.eps, err);
}
