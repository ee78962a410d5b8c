/* core/tensor/cuda/conv.cu — 2-D convolution as im2col panels + one cuBLAS GEMM per panel.
 *
 * For each image, the output pixels are cut into panels whose column block [Ci*kh*kw, T]
 * stays under 32 M elements (a 1024² VAE layer would need gigabytes unfolded at once);
 * the im2col kernel writes the block with zeros where the window meets the padding (which
 * may differ per side) directly in the GEMM's input dtype, then
 * out[b][:, panel] (+)= W · cols runs on tensor cores. A 1x1, stride-1, unpadded layer
 * with f32 operands multiplies the input in place. The bias is written first (beta = 1).
 *
 * Dtypes follow matmul.cu: BF16/F16 weights are used as they are with the columns in the
 * same dtype (F16 saturating); F8_E4M3 weights are widened once per call to BF16 (one
 * layer's weight, a few MiB in SD3's VAE); F32 weights use TF32; LOOM_CUDA_MATMUL=fp32
 * makes everything exact fp32. */
#include "core/tensor/cuda/common.cuh"

#include <limits.h>

#define COL_ELEMS ((int64_t)32 << 20)

typedef struct {
    const float *x;
    int64_t ci, h, w, kh, kw, ho, wo;
    int stride, pad_top, pad_left;
} conv_geom;

__device__ static inline void store_act(void *p, int64_t i, lm_dtype dt, float v)
{
    if (dt == LM_DTYPE_F16)
        ((uint16_t *)p)[i] = lm_cu_f32_to_f16_sat(v);
    else if (dt == LM_DTYPE_BF16)
        ((uint16_t *)p)[i] = lm_cu_f32_to_bf16(v);
    else
        ((float *)p)[i] = v;
}

/* cols[r][t] for r = (c, ky, kx) and output pixels p0 .. p0+n-1 of image x. */
__global__ static void im2col_kernel(void *cols, lm_dtype dt, const float *x, conv_geom g,
                                     int64_t p0, int64_t n)
{
    int64_t total = g.ci * g.kh * g.kw * n;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / n, t = i % n;
        int64_t c = r / (g.kh * g.kw), ky = (r / g.kw) % g.kh, kx = r % g.kw;
        int64_t p = p0 + t, oy = p / g.wo, ox = p % g.wo;
        int64_t iy = oy * g.stride - g.pad_top + ky, ix = ox * g.stride - g.pad_left + kx;
        bool in = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
        store_act(cols, i, dt, in ? x[(c * g.h + iy) * g.w + ix] : 0.0f);
    }
}

__global__ static void bias_planes_kernel(float *out, const float *bias, int64_t n, int64_t co,
                                          int64_t plane)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = bias[(i / plane) % co];
}

typedef struct {
    conv_geom g;
    int64_t batch, co, kk; /* kk = Ci*kh*kw */
    const void *w;         /* weight as the GEMM reads it */
    lm_dtype wdt;          /* its dtype = the columns' dtype */
    float *out;
    float beta;
} conv_plan;

static lm_status conv_gemm(lm_cuda *cu, const conv_plan *p, const void *cols, int64_t ld_cols,
                           float *c, int64_t n, lm_error *err)
{
    int64_t big = LM_MAX(LM_MAX(p->kk, p->co), LM_MAX(ld_cols, p->g.ho * p->g.wo));
    if (big > INT_MAX)
        return lm_cuda__too_large(err, "lm_conv2d", "a GEMM dimension", (long long)big);
    cudaDataType t = p->wdt == LM_DTYPE_F16    ? CUDA_R_16F
                     : p->wdt == LM_DTYPE_BF16 ? CUDA_R_16BF
                                               : CUDA_R_32F;
    cublasComputeType_t ct = p->wdt != LM_DTYPE_F32 ? CUBLAS_COMPUTE_32F
                             : cu->fp32_matmul      ? CUBLAS_COMPUTE_32F
                                                    : CUBLAS_COMPUTE_32F_FAST_TF32;
    float alpha = 1.0f;
    /* out[b] (row-major [Co, P]) is column-major P x Co: = colsᵀ (P x kk) · Wᵀ (kk x Co). */
    return LM_CUBLAS(cublasGemmEx(cu->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)p->co,
                                  (int)p->kk, &alpha, cols, t, (int)ld_cols, p->w, t, (int)p->kk,
                                  &p->beta, c, CUDA_R_32F, (int)(p->g.ho * p->g.wo), ct,
                                  CUBLAS_GEMM_DEFAULT),
                     err);
}

static lm_status conv_images(lm_cuda *cu, const conv_plan *p, lm_error *err)
{
    int64_t hw = p->g.ho * p->g.wo, in_plane = p->g.ci * p->g.h * p->g.w;
    bool direct = p->wdt == LM_DTYPE_F32 && p->g.kh == 1 && p->g.kw == 1 && p->g.stride == 1 &&
                  p->g.pad_top == 0 && p->g.pad_left == 0 && p->g.ho == p->g.h && p->g.wo == p->g.w;
    lm_status st = LM_OK;
    if (direct) {
        for (int64_t b = 0; st == LM_OK && b < p->batch; b++)
            st = conv_gemm(cu, p, p->g.x + b * in_plane, hw, p->out + b * p->co * hw, hw, err);
        return st;
    }
    int64_t tile = LM_MAX(1, LM_MIN(hw, COL_ELEMS / LM_MAX(p->kk, 1)));
    void *cols = NULL;
    st = lm_cuda__alloc(cu, &cols, (size_t)(tile * p->kk) * lm_dtype_size(p->wdt), err);
    for (int64_t b = 0; st == LM_OK && b < p->batch; b++) {
        for (int64_t p0 = 0; st == LM_OK && p0 < hw; p0 += tile) {
            int64_t n = LM_MIN(tile, hw - p0);
            im2col_kernel<<<lm_cuda__blocks(cu, n * p->kk, LM_CUDA_THREADS), LM_CUDA_THREADS, 0,
                            cu->stream>>>(cols, p->wdt, p->g.x + b * in_plane, p->g, p0, n);
            st = LM_CUDA_LAUNCHED("im2col_kernel", err);
            if (st == LM_OK)
                st = conv_gemm(cu, p, cols, n, p->out + b * p->co * hw + p0, n, err);
        }
    }
    lm_cuda__free(cu, cols);
    return st;
}

static conv_plan plan_of(const lm_op_call *c)
{
    const lm_tensor *x = c->in[0], *w = c->in[1];
    conv_plan p;
    memset(&p, 0, sizeof(p));
    p.g.x = lm_cuda__f32(x);
    p.g.ci = x->shape[1];
    p.g.h = x->shape[2];
    p.g.w = x->shape[3];
    p.g.kh = w->shape[2];
    p.g.kw = w->shape[3];
    p.g.ho = c->out->shape[2];
    p.g.wo = c->out->shape[3];
    p.g.stride = c->p.conv2d.stride;
    p.g.pad_top = c->p.conv2d.pad_top;
    p.g.pad_left = c->p.conv2d.pad_left;
    p.batch = x->shape[0];
    p.co = w->shape[0];
    p.kk = p.g.ci * p.g.kh * p.g.kw;
    p.w = lm_cuda__ptr(w);
    p.wdt = w->dtype;
    p.out = lm_cuda__f32(c->out);
    return p;
}

lm_status lm_cuda_conv2d(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    lm_cuda *cu = lm_cuda__of(be);
    lm_status st = lm_cuda__enter(cu, err);
    conv_plan p = plan_of(c);
    const float *bias = c->n_in > 2 && c->in[2] ? lm_cuda__f32(c->in[2]) : NULL;
    int64_t n = lm_tensor_numel(c->out);
    if (st != LM_OK || n == 0)
        return st;
    if (bias) {
        bias_planes_kernel<<<lm_cuda__blocks(cu, n, LM_CUDA_THREADS), LM_CUDA_THREADS, 0,
                             cu->stream>>>(p.out, bias, n, p.co, p.g.ho * p.g.wo);
        st = LM_CUDA_LAUNCHED("bias_planes_kernel", err);
    } else if (p.kk == 0) {
        st = LM_CUDA(cudaMemsetAsync(p.out, 0, (size_t)n * sizeof(float), cu->stream), err);
    }
    if (st != LM_OK || p.kk == 0)
        return st;
    p.beta = bias ? 1.0f : 0.0f;
    /* Weights the GEMM cannot read as they are: F8 (-> BF16), or anything in fp32 mode. */
    lm_dtype to = cu->fp32_matmul ? LM_DTYPE_F32 : LM_DTYPE_BF16;
    void *wide = NULL;
    if (p.wdt == LM_DTYPE_F8_E4M3 || (cu->fp32_matmul && p.wdt != LM_DTYPE_F32)) {
        int64_t wn = p.co * p.kk;
        st = lm_cuda__alloc(cu, &wide, (size_t)wn * lm_dtype_size(to), err);
        if (st == LM_OK)
            st = lm_cuda__cast(cu, wide, to, p.w, p.wdt, wn, false, err);
        p.w = wide;
        p.wdt = to;
    }
    if (st == LM_OK)
        st = conv_images(cu, &p, err);
    lm_cuda__free(cu, wide);
    return st;
}
