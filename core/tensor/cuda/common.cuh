/* core/tensor/cuda/common.cuh — what every .cu file of the CUDA backend shares: the device
 * state (lm_cuda), the checking macros, launch helpers and the dtype conversions.
 *
 * Errors: every CUDA runtime call is checked with LM_CUDA(call, err) and every cuBLAS call
 * with LM_CUBLAS(call, err); both evaluate to an lm_status (LM_OK on success) and, on
 * failure, fill err with the call, file:line and the driver's text. They never jump or
 * return: the caller writes `if (st != LM_OK) goto out_free;` itself. A launch is checked
 * with LM_CUDA_LAUNCHED("kernel name", err) right after the <<<>>> line.
 *
 * Threads: any host thread may call a kernel entry; lm_cuda__enter() makes the backend's
 * device current for that thread first (cudaSetDevice is per thread). All work goes to
 * cu->stream, so launches from several threads are serialised on the device in the order
 * they were queued.
 *
 * Conversions: bit-exact ports of core/tensor/dtype.c (round to nearest even; float8
 * e4m3fn saturates at ±448, NaN -> 0x7f), __host__ __device__ so the host can check them
 * against dtype.c. No templates here (STYLE §6): they stay inside the .cu files. */
#ifndef LM_CORE_TENSOR_CUDA_COMMON_CUH
#define LM_CORE_TENSOR_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "core/base/error.h"
#include "core/tensor/cuda/cuda_impl.h"
#include "core/tensor/op.h"
#include "core/tensor/tensor.h"
}

/* Per-device state; one per lm_backend, never freed (the backend lives until exit). */
struct lm_cuda {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_workspace;
    size_t blas_workspace_bytes;
    cudaMemPool_t pool; /* the device's default pool, kept from shrinking */
    bool async_alloc;   /* cudaMallocAsync is available (else cudaMalloc/cudaFree) */
    bool fp32_matmul;   /* LOOM_CUDA_MATMUL=fp32: exact f32 products (slow, for checks) */
    int sm_count;
    char name[256];
};

/* ---- checking ---- */

lm_status lm_cuda__check_rt(cudaError_t e, const char *call, const char *file, int line,
                            lm_error *err);
lm_status lm_cuda__check_blas(cublasStatus_t s, const char *call, const char *file, int line,
                              lm_error *err);

#define LM_CUDA(call, err)   lm_cuda__check_rt((call), #call, __FILE__, __LINE__, (err))
#define LM_CUBLAS(call, err) lm_cuda__check_blas((call), #call, __FILE__, __LINE__, (err))
#define LM_CUDA_LAUNCHED(what, err)                                                                \
    lm_cuda__check_rt(cudaGetLastError(), "launch of " what, __FILE__, __LINE__, (err))

/* Makes cu's device current for the calling thread. */
lm_status lm_cuda__enter(lm_cuda *cu, lm_error *err);
/* "lm_<op>: <what> is too large for <limit>" as LM_ELIMIT (int-sized cuBLAS arguments,
 * grid dimensions). */
lm_status lm_cuda__too_large(lm_error *err, const char *op, const char *what, long long v);

/* ---- launch helpers ---- */

#define LM_CUDA_THREADS 256
/* Blocks for a grid-stride loop over n items: enough to fill the device, never more than
 * the items need. */
static inline unsigned lm_cuda__blocks(const lm_cuda *cu, int64_t n, int threads)
{
    int64_t need = (n + threads - 1) / threads;
    int64_t cap = (int64_t)(cu->sm_count > 0 ? cu->sm_count : 80) * 16;
    if (need > cap)
        need = cap;
    return (unsigned)(need > 0 ? need : 1);
}

/* A strided layout of up to LM_MAX_DIMS dims, passed to kernels by value. */
typedef struct {
    int ndim;
    int64_t shape[LM_MAX_DIMS];
    int64_t stride[LM_MAX_DIMS]; /* in elements */
} lm_cuda_layout;

static inline lm_cuda_layout lm_cuda__layout(const lm_tensor *t)
{
    lm_cuda_layout l;
    memset(&l, 0, sizeof(l));
    l.ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        l.shape[d] = t->shape[d];
        l.stride[d] = t->stride[d];
    }
    return l;
}

/* Element offset of the i-th element (row-major over `shape`) under `stride`. */
__host__ __device__ static inline int64_t lm_cuda__offset(int64_t i, const int64_t *shape,
                                                          const int64_t *stride, int ndim)
{
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        int64_t n = shape[d];
        off += (i % n) * stride[d];
        i /= n;
    }
    return off;
}

static inline float *lm_cuda__f32(const lm_tensor *t)
{
    return (float *)lm_cuda__ptr(t);
}

/* ---- dtype conversions (ports of core/tensor/dtype.c) ---- */

__host__ __device__ static inline uint32_t lm_cu_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

__host__ __device__ static inline float lm_cu_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

__host__ __device__ static inline float lm_cu_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f)
        return lm_cu_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return lm_cu_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

__host__ __device__ static inline uint16_t lm_cu_f32_to_f16(float f)
{
    uint32_t u = lm_cu_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) {
        float v = lm_cu_bits_f32(a) * 0x1p24f;
        return (uint16_t)(sign | (uint16_t)rintf(v));
    }
    uint32_t man = a & 0x7fffffu, exp = (a >> 23) - 112;
    uint32_t q = (exp << 10) | (man >> 13), rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1)))
        q++;
    return (uint16_t)(sign | q);
}

/* Activations for an F16 product: finite values beyond the f16 range saturate to ±65504
 * instead of becoming infinities (ComfyUI clamps fp16 activations the same way). */
__host__ __device__ static inline uint16_t lm_cu_f32_to_f16_sat(float f)
{
    if (f == f) /* fminf/fmaxf would turn a NaN into a bound */
        f = fminf(fmaxf(f, -65504.0f), 65504.0f);
    return lm_cu_f32_to_f16(f);
}

__host__ __device__ static inline float lm_cu_bf16_to_f32(uint16_t h)
{
    return lm_cu_bits_f32((uint32_t)h << 16);
}

__host__ __device__ static inline uint16_t lm_cu_f32_to_bf16(float f)
{
    uint32_t u = lm_cu_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

__host__ __device__ static inline float lm_cu_f8_to_f32(uint8_t v)
{
    uint32_t exp = (v >> 3) & 0xf, man = v & 7;
    float r;
    if (exp == 0xf && man == 7)
        r = lm_cu_bits_f32(0x7fc00000u);
    else if (exp == 0)
        r = (float)man * 0x1p-9f;
    else
        r = lm_cu_bits_f32(((exp + 120) << 23) | (man << 20)); /* exact: (1 + m/8) 2^(e-7) */
    return (v & 0x80) ? -r : r;
}

__host__ __device__ static inline uint8_t lm_cu_f32_to_f8(float f)
{
    uint32_t u = lm_cu_f32_bits(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return 0x7f;
    if (a < 0x3c800000u) {
        float v = lm_cu_bits_f32(a) * 512.0f;
        return (uint8_t)(sign | (uint8_t)rintf(v));
    }
    if (a >= 0x43e00000u)
        return (uint8_t)(sign | 0x7e);
    uint32_t man = a & 0x7fffffu, exp = (a >> 23) - 120;
    uint32_t q = (exp << 3) | (man >> 20), rem = man & 0xfffffu;
    if (rem > 0x80000u || (rem == 0x80000u && (q & 1)))
        q++;
    if (q > 0x7e)
        q = 0x7e;
    return (uint8_t)(sign | q);
}

/* Element i of a contiguous float array of dtype dt, as f32 (dt is uniform per launch). */
__device__ static inline float lm_cu_load_f(const void *p, int64_t i, lm_dtype dt)
{
    switch (dt) {
    case LM_DTYPE_F16:
        return lm_cu_f16_to_f32(((const uint16_t *)p)[i]);
    case LM_DTYPE_BF16:
        return lm_cu_bf16_to_f32(((const uint16_t *)p)[i]);
    case LM_DTYPE_F8_E4M3:
        return lm_cu_f8_to_f32(((const uint8_t *)p)[i]);
    default:
        return ((const float *)p)[i];
    }
}

/* ---- conversion launchers (convert.cu) ---- */

/* dst[i] = src[i] for n contiguous elements, float dtypes only (F32/F16/BF16/F8_E4M3);
 * f16_saturate: F16 results saturate at ±65504 (activations of an F16 product). */
lm_status lm_cuda__cast(lm_cuda *cu, void *dst, lm_dtype dt, const void *src, lm_dtype st,
                        int64_t n, bool f16_saturate, lm_error *err);
/* The strided, any-dtype copy of backend.h's contract (dst and src on this device, same
 * shape, `dl`/`sl` give their strides; integers round to nearest and saturate, NaN -> 0). */
lm_status lm_cuda__convert(lm_cuda *cu, void *dst, lm_dtype dt, const lm_cuda_layout *dl,
                           const void *src, lm_dtype st, const lm_cuda_layout *sl, lm_error *err);
/* out[r, :] = bias for every row r of a contiguous [rows, n] f32 matrix (bias f32 [n]);
 * the products then accumulate onto it (beta = 1). */
lm_status lm_cuda__fill_rows(lm_cuda *cu, float *out, const float *bias, int64_t rows, int64_t n,
                             lm_error *err);

#endif
