/* core/tensor/cuda/convert.cu — dtype conversion kernels: the strided any-dtype copy behind
 * lm_tensor_copy/lm_tensor_cast on the device, the contiguous float casts the products use
 * (activations to BF16/F16, F8 weights to BF16), and the bias row fill.
 *
 * Rounding is dtype.c's, bit for bit (common.cuh ports its scalar functions): floats round
 * to nearest even, F8 saturates at ±448, floats to integers round to nearest and saturate,
 * NaN -> 0. Values go through float between float dtypes and through double when an
 * integer dtype is involved (exact for every integer up to 2^53). Same-dtype copies move
 * the bytes. Kernels are grid-stride loops; the dtype switch is uniform across a launch. */
#include "core/tensor/cuda/common.cuh"

__device__ static inline void store_f(void *p, int64_t i, lm_dtype dt, float v, bool sat)
{
    switch (dt) {
    case LM_DTYPE_F16:
        ((uint16_t *)p)[i] = sat ? lm_cu_f32_to_f16_sat(v) : lm_cu_f32_to_f16(v);
        break;
    case LM_DTYPE_BF16:
        ((uint16_t *)p)[i] = lm_cu_f32_to_bf16(v);
        break;
    case LM_DTYPE_F8_E4M3:
        ((uint8_t *)p)[i] = lm_cu_f32_to_f8(v);
        break;
    default:
        ((float *)p)[i] = v;
        break;
    }
}

__device__ static inline double load_d(const char *p, lm_dtype dt)
{
    switch (dt) {
    case LM_DTYPE_I64:
        return (double)*(const int64_t *)p;
    case LM_DTYPE_I32:
        return (double)*(const int32_t *)p;
    case LM_DTYPE_U8:
        return (double)*(const uint8_t *)p;
    default:
        return (double)lm_cu_load_f(p, 0, dt);
    }
}

__device__ static inline double clamp_round(double v, double lo, double hi)
{
    if (v != v)
        return 0.0;
    v = rint(v);
    return v < lo ? lo : v > hi ? hi : v;
}

__device__ static inline void store_d(char *p, lm_dtype dt, double v)
{
    switch (dt) {
    case LM_DTYPE_I64:
        *(int64_t *)p = (int64_t)clamp_round(v, -9223372036854775808.0, 9223372036854774784.0);
        break;
    case LM_DTYPE_I32:
        *(int32_t *)p = (int32_t)clamp_round(v, -2147483648.0, 2147483647.0);
        break;
    case LM_DTYPE_U8:
        *(uint8_t *)p = (uint8_t)clamp_round(v, 0.0, 255.0);
        break;
    default:
        store_f(p, 0, dt, (float)v, false);
        break;
    }
}

static __device__ __host__ inline bool is_float(lm_dtype dt)
{
    return dt == LM_DTYPE_F32 || dt == LM_DTYPE_F16 || dt == LM_DTYPE_BF16 ||
           dt == LM_DTYPE_F8_E4M3;
}

/* ---- contiguous float casts ---- */

__global__ static void cast_kernel(void *dst, lm_dtype dt, const void *src, lm_dtype st, int64_t n,
                                   bool sat)
{
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        store_f(dst, i, dt, lm_cu_load_f(src, i, st), sat);
}

lm_status lm_cuda__cast(lm_cuda *cu, void *dst, lm_dtype dt, const void *src, lm_dtype st,
                        int64_t n, bool f16_saturate, lm_error *err)
{
    if (n <= 0)
        return LM_OK;
    if (!is_float(dt) || !is_float(st))
        return lm_errorf(err, LM_EINTERNAL, "bad_dtype",
                         "lm_cuda__cast: %s -> %s is not a "
                         "float cast",
                         lm_dtype_name(st), lm_dtype_name(dt));
    unsigned blocks = lm_cuda__blocks(cu, n, LM_CUDA_THREADS);
    cast_kernel<<<blocks, LM_CUDA_THREADS, 0, cu->stream>>>(dst, dt, src, st, n, f16_saturate);
    return LM_CUDA_LAUNCHED("cast_kernel", err);
}

/* ---- strided copy with cast ---- */

typedef struct {
    lm_cuda_layout dl, sl;
    lm_dtype dt, st;
    int64_t n;
    int des, ses; /* element sizes */
} convert_args;

__global__ static void convert_kernel(char *dst, const char *src, convert_args a)
{
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    bool same = a.dt == a.st, floats = is_float(a.dt) && is_float(a.st);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += step) {
        char *d = dst + lm_cuda__offset(i, a.dl.shape, a.dl.stride, a.dl.ndim) * a.des;
        const char *s = src + lm_cuda__offset(i, a.sl.shape, a.sl.stride, a.sl.ndim) * a.ses;
        if (same) {
            switch (a.des) {
            case 1:
                *(uint8_t *)d = *(const uint8_t *)s;
                break;
            case 2:
                *(uint16_t *)d = *(const uint16_t *)s;
                break;
            case 4:
                *(uint32_t *)d = *(const uint32_t *)s;
                break;
            default:
                *(uint64_t *)d = *(const uint64_t *)s;
                break;
            }
        } else if (floats) {
            store_f(d, 0, a.dt, lm_cu_load_f(s, 0, a.st), false);
        } else {
            store_d(d, a.dt, load_d(s, a.st));
        }
    }
}

lm_status lm_cuda__convert(lm_cuda *cu, void *dst, lm_dtype dt, const lm_cuda_layout *dl,
                           const void *src, lm_dtype st, const lm_cuda_layout *sl, lm_error *err)
{
    convert_args a;
    memset(&a, 0, sizeof(a));
    a.dl = *dl;
    a.sl = *sl;
    a.dt = dt;
    a.st = st;
    a.des = (int)lm_dtype_size(dt);
    a.ses = (int)lm_dtype_size(st);
    a.n = 1;
    for (int d = 0; d < dl->ndim; d++)
        a.n *= dl->shape[d];
    if (a.n <= 0)
        return LM_OK;
    unsigned blocks = lm_cuda__blocks(cu, a.n, LM_CUDA_THREADS);
    convert_kernel<<<blocks, LM_CUDA_THREADS, 0, cu->stream>>>((char *)dst, (const char *)src, a);
    return LM_CUDA_LAUNCHED("convert_kernel", err);
}

/* ---- bias rows ---- */

__global__ static void fill_rows_kernel(float *out, const float *bias, int64_t total, int64_t n)
{
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step)
        out[i] = bias[i % n];
}

lm_status lm_cuda__fill_rows(lm_cuda *cu, float *out, const float *bias, int64_t rows, int64_t n,
                             lm_error *err)
{
    int64_t total = rows * n;
    if (total <= 0)
        return LM_OK;
    unsigned blocks = lm_cuda__blocks(cu, total, LM_CUDA_THREADS);
    fill_rows_kernel<<<blocks, LM_CUDA_THREADS, 0, cu->stream>>>(out, bias, total, n);
    return LM_CUDA_LAUNCHED("fill_rows_kernel", err);
}
