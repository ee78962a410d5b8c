/* core/tensor/cuda/attention.cu — fused scaled dot-product attention (our own kernel).
 *
 * softmax(q·kᵀ·scale + bias, causal mask) · v without ever storing the Nq x Nk matrix:
 * keys are visited in blocks of 32 with an online softmax (a running maximum m and sum l
 * per query row; when the maximum grows, the partial sum and output are rescaled by
 * 2^(m_old - m_new)), so memory is O(N) whatever the sequence length. fp32 throughout
 * (CUDA cores, not tensor cores): the same numbers as the CPU's exact two-pass softmax up
 * to rounding.
 *
 * Layout: a block serves one (batch, head) and BQ = WARPS x R query rows; each warp owns R
 * rows. The block's query tile sits in shared memory, pre-multiplied by scale·log2(e) so
 * the softmax runs on exp2. For each key block:
 *   scores: lane j computes the R dot products of key j (K tile in shared memory, rows
 *           padded by 4 floats so float4 reads are conflict-free) with the R query rows
 *           (broadcast reads); bias and mask are applied; warp shuffles give max and sum;
 *   values: lane t owns output dims t, t+32, … (D/32 per row, in registers) and adds
 *           p_j · v_j[dim] for the 32 keys (V tile in shared memory, p via shared memory).
 * K and V tiles are staged 128 dims at a time, so heads up to 512 (SD3's VAE attention,
 * one head of 512) fit the 48 KiB of static shared memory on sm_80 and sm_90.
 * Head sizes: D <= 512, any value (padded to 32 x DPL with zeros). q/k/v are row-strided
 * (op.h): the last dim contiguous, batch and row strides arbitrary (slices of a fused
 * qkv). bias is contiguous [B|1, H|1, Nq, Nk]. The causal mask hides key j > query i.
 * A row that sees no key (Nk = 0) is written as zeros, like the CPU. */
#include "core/tensor/cuda/common.cuh"

#define BK    32
#define LOG2E 1.4426950408889634f

typedef struct {
    const float *q, *k, *v, *bias;
    float *out;
    int64_t qs0, qs1, ks0, ks1, vs0, vs1; /* batch and row strides, in elements */
    int64_t nq, nk;
    int heads, d;
    int bias_b, bias_h; /* the bias' batch and head extents (1 = broadcast) */
    float qscale;       /* scale * log2(e) */
    bool causal;
} attn_args;

__device__ static inline float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ static inline float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Stages dims [c0, c0 + DC) of keys [k0, k0 + BK) of one head into tile (row pitch P). */
template <int DC, int P, int THREADS>
__device__ static inline void stage(float (*tile)[P], const float *base, int64_t rs, int64_t k0,
                                    int c0, const attn_args &a)
{
    for (int idx = threadIdx.x; idx < BK * DC; idx += THREADS) {
        int row = idx / DC, col = idx % DC, dim = c0 + col;
        int64_t j = k0 + row;
        tile[row][col] = j < a.nk && dim < a.d ? base[j * rs + dim] : 0.0f;
    }
}

template <int DPL, int R, int WARPS>
__global__ static void __launch_bounds__(WARPS * 32) attn_kernel(attn_args a)
{
    constexpr int DMAX = 32 * DPL;            /* head size, padded */
    constexpr int DC = DPL <= 4 ? DMAX : 128; /* dims per staged K/V chunk */
    constexpr int NCH = DMAX / DC;
    constexpr int BQ = WARPS * R;
    constexpr int THREADS = WARPS * 32;
    __shared__ __align__(16) float qs[BQ][DMAX];
    __shared__ __align__(16) float ks[BK][DC + 4];
    __shared__ float vs[BK][DC];
    __shared__ float ps[WARPS][R][BK];

    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int64_t b = blockIdx.z, q0 = (int64_t)blockIdx.x * BQ;
    int h = blockIdx.y;
    const float *qb = a.q + b * a.qs0 + (int64_t)h * a.d;
    const float *kb = a.k + b * a.ks0 + (int64_t)h * a.d;
    const float *vb = a.v + b * a.vs0 + (int64_t)h * a.d;
    const float *bias =
        a.bias ? a.bias + ((int64_t)(a.bias_b == 1 ? 0 : b) * a.bias_h + (a.bias_h == 1 ? 0 : h)) *
                              a.nq * a.nk
               : NULL;
    for (int idx = threadIdx.x; idx < BQ * DMAX; idx += THREADS) {
        int r = idx / DMAX, dim = idx % DMAX;
        int64_t i = q0 + r;
        qs[r][dim] = i < a.nq && dim < a.d ? qb[i * a.qs1 + dim] * a.qscale : 0.0f;
    }
    float m[R], l[R], acc[R][DPL];
#pragma unroll
    for (int r = 0; r < R; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int t = 0; t < DPL; t++)
            acc[r][t] = 0.0f;
    }
    int64_t kend = a.causal ? min(a.nk, q0 + BQ) : a.nk; /* key j <= query i */
    for (int64_t k0 = 0; k0 < kend; k0 += BK) {
        float s[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            s[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < NCH; c++) {
            __syncthreads(); /* the previous chunk (or the V tile) is no longer read */
            stage<DC, DC + 4, THREADS>(ks, kb, a.ks1, k0, c * DC, a);
            __syncthreads();
#pragma unroll
            for (int d4 = 0; d4 < DC; d4 += 4) {
                float4 kv = *(const float4 *)&ks[lane][d4];
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float4 qv = *(const float4 *)&qs[warp * R + r][c * DC + d4];
                    s[r] = fmaf(qv.x, kv.x, s[r]);
                    s[r] = fmaf(qv.y, kv.y, s[r]);
                    s[r] = fmaf(qv.z, kv.z, s[r]);
                    s[r] = fmaf(qv.w, kv.w, s[r]);
                }
            }
        }
        int64_t j = k0 + lane;
#pragma unroll
        for (int r = 0; r < R; r++) {
            int64_t i = q0 + warp * R + r;
            bool visible = j < a.nk && (!a.causal || j <= i);
            float sc = -INFINITY;
            if (visible)
                sc = bias && i < a.nq ? fmaf(bias[i * a.nk + j], LOG2E, s[r]) : s[r];
            float mnew = fmaxf(m[r], warp_max(sc));
            /* mnew = -inf: nothing visible yet; keep everything at zero. */
            float p = mnew == -INFINITY ? 0.0f : exp2f(sc - mnew);
            float alpha = mnew == -INFINITY ? 1.0f : exp2f(m[r] - mnew);
            l[r] = l[r] * alpha + warp_sum(p);
            m[r] = mnew;
#pragma unroll
            for (int t = 0; t < DPL; t++)
                acc[r][t] *= alpha;
            ps[warp][r][lane] = p;
        }
#pragma unroll
        for (int c = 0; c < NCH; c++) {
            __syncthreads(); /* K (or the previous V chunk) is no longer read; ps is written */
            stage<DC, DC, THREADS>(vs, vb, a.vs1, k0, c * DC, a);
            __syncthreads();
#pragma unroll 4
            for (int jj = 0; jj < BK; jj++) {
                float vv[DC / 32];
#pragma unroll
                for (int t = 0; t < DC / 32; t++)
                    vv[t] = vs[jj][lane + 32 * t];
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float p = ps[warp][r][jj];
#pragma unroll
                    for (int t = 0; t < DC / 32; t++)
                        acc[r][c * (DC / 32) + t] = fmaf(p, vv[t], acc[r][c * (DC / 32) + t]);
                }
            }
        }
        /* ps is rewritten by this warp only after the next tile's first __syncthreads. */
    }
    int64_t hd = (int64_t)a.heads * a.d;
#pragma unroll
    for (int r = 0; r < R; r++) {
        int64_t i = q0 + warp * R + r;
        if (i >= a.nq)
            continue;
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        float *o = a.out + (b * a.nq + i) * hd + (int64_t)h * a.d;
#pragma unroll
        for (int t = 0; t < DPL; t++) {
            int dim = lane + 32 * t;
            if (dim < a.d)
                o[dim] = acc[r][t] * inv;
        }
    }
}

template <int DPL, int R, int WARPS>
static lm_status attn_launch(lm_cuda *cu, const attn_args *a, int64_t batch, lm_error *err)
{
    constexpr int BQ = WARPS * R;
    int64_t blocks = (a->nq + BQ - 1) / BQ;
    if (blocks > INT32_MAX || a->heads > 65535 || batch > 65535)
        return lm_cuda__too_large(err, "lm_attention", "the grid (rows, heads or batch)",
                                  (long long)LM_MAX(blocks, LM_MAX((int64_t)a->heads, batch)));
    dim3 grid((unsigned)blocks, (unsigned)a->heads, (unsigned)batch);
    attn_kernel<DPL, R, WARPS><<<grid, WARPS * 32, 0, cu->stream>>>(*a);
    return LM_CUDA_LAUNCHED("attn_kernel", err);
}

lm_status lm_cuda_attention(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu = lm_cuda__of(be);
    lm_status st = lm_cuda__enter(cu, err);
    const lm_tensor *q = c->in[0], *k = c->in[1], *v = c->in[2], *bias = c->in[3];
    attn_args a;
    memset(&a, 0, sizeof(a));
    a.q = lm_cuda__f32(q);
    a.k = lm_cuda__f32(k);
    a.v = lm_cuda__f32(v);
    a.bias = bias ? lm_cuda__f32(bias) : NULL;
    a.out = lm_cuda__f32(c->out);
    a.qs0 = q->stride[0], a.qs1 = q->stride[1];
    a.ks0 = k->stride[0], a.ks1 = k->stride[1];
    a.vs0 = v->stride[0], a.vs1 = v->stride[1];
    a.nq = q->shape[1];
    a.nk = k->shape[1];
    a.heads = c->p.attention.heads;
    a.d = (int)(q->shape[2] / a.heads);
    a.bias_b = bias ? (int)bias->shape[0] : 1;
    a.bias_h = bias ? (int)bias->shape[1] : 1;
    a.qscale = c->p.attention.scale * LOG2E;
    a.causal = c->p.attention.causal;
    int64_t batch = q->shape[0];
    if (st != LM_OK || lm_tensor_numel(c->out) == 0)
        return st;
    if (a.d <= 32)
        return attn_launch<1, 4, 8>(cu, &a, batch, err);
    if (a.d <= 64)
        return attn_launch<2, 4, 8>(cu, &a, batch, err);
    if (a.d <= 128)
        return attn_launch<4, 2, 8>(cu, &a, batch, err);
    if (a.d <= 256)
        return attn_launch<8, 2, 4>(cu, &a, batch, err);
    if (a.d <= 512)
        return attn_launch<16, 1, 4>(cu, &a, batch, err);
    return lm_errorf(err, LM_EUNSUPPORTED, "unsupported",
                     "lm_attention: head size %d is above 512, the CUDA kernel's limit", a.d);
}
