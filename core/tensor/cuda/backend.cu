/* core/tensor/cuda/backend.cu — the CUDA backend's device state, memory and copies.
 *
 * One device = one lm_cuda: a non-blocking stream that every op of the backend is queued
 * on, a cuBLAS handle bound to it with its own 32 MiB workspace, and the device's default
 * memory pool for buffers (cudaMallocAsync/cudaFreeAsync on the stream). The pool's release
 * threshold is raised so freed blocks stay cached and the repeated shapes of a forward
 * pass stop reaching the driver; an allocation that fails trims the pool and tries once
 * more. Freeing is stream-ordered, so a buffer released while kernels that read it are
 * still queued is safe.
 *
 * Copies follow backend.h: same shape, any strides, any dtypes, one side may be the host.
 * Host -> device: a cast or gather is done on the host first (CPU backend, in parallel)
 * when the device side is contiguous, so only the final bytes cross the bus; the source
 * is pageable memory, which the driver stages before cudaMemcpyAsync returns, so the
 * caller may free it at once. Device -> host: cast/gather on the device, one transfer, then
 * a stream synchronisation (the data must be there when copy returns). */
#include "core/tensor/cuda/common.cuh"

#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "core/base/alloc.h"
}

#define BLAS_WORKSPACE_BYTES ((size_t)32 << 20) /* cuBLAS' recommendation for Hopper */

/* ---- errors ---- */

static lm_status status_of(cudaError_t e)
{
    switch (e) {
    case cudaErrorMemoryAllocation:
        return LM_ENOMEM;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
        return LM_EUNSUPPORTED;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
        return LM_EINTERNAL;
    default:
        return LM_EIO;
    }
}

lm_status lm_cuda__check_rt(cudaError_t e, const char *call, const char *file, int line,
                            lm_error *err)
{
    if (e == cudaSuccess)
        return LM_OK;
    (void)cudaGetLastError(); /* clear a non-sticky error so the next check is not blamed */
    lm_status code = status_of(e);
    lm_errorf(err, code, code == LM_ENOMEM ? "out_of_memory" : "cuda_error",
              "CUDA: %.100s at %s:%d: %s (%s)", call, file, line, cudaGetErrorString(e),
              cudaGetErrorName(e));
    if (code == LM_ENOMEM)
        lm_error_hint(err, "free GPU memory (other processes, a smaller batch or resolution) "
                           "or run with --device cpu");
    else if (code == LM_EUNSUPPORTED)
        lm_error_hint(err, "check the GPU and driver with nvidia-smi (Loom's kernels are built "
                           "for sm_80 and sm_90), or run with --device cpu");
    else
        lm_error_hint(err, "rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing kernel, and "
                           "check the driver with nvidia-smi");
    return code;
}

lm_status lm_cuda__check_blas(cublasStatus_t s, const char *call, const char *file, int line,
                              lm_error *err)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return LM_OK;
    lm_status code = s == CUBLAS_STATUS_ALLOC_FAILED      ? LM_ENOMEM
                     : s == CUBLAS_STATUS_NOT_SUPPORTED   ? LM_EUNSUPPORTED
                     : s == CUBLAS_STATUS_INVALID_VALUE   ? LM_EINTERNAL
                     : s == CUBLAS_STATUS_NOT_INITIALIZED ? LM_EUNSUPPORTED
                                                          : LM_EIO;
    lm_errorf(err, code, code == LM_ENOMEM ? "out_of_memory" : "cublas_error",
              "cuBLAS: %.100s at %s:%d: %s (%s)", call, file, line, cublasGetStatusString(s),
              cublasGetStatusName(s));
    lm_error_hint(err, "check the GPU and driver with nvidia-smi, or run with --device cpu");
    return code;
}

lm_status lm_cuda__enter(lm_cuda *cu, lm_error *err)
{
    return LM_CUDA(cudaSetDevice(cu->device), err);
}

lm_status lm_cuda__too_large(lm_error *err, const char *op, const char *what, long long v)
{
    return lm_errorf(err, LM_ELIMIT, "too_large",
                     "%s: %s is %lld, beyond what the CUDA backend handles in one call", op, what,
                     v);
}

/* ---- opening a device ---- */

static void close_partial(lm_cuda *cu)
{
    if (cu->blas)
        cublasDestroy(cu->blas);
    if (cu->blas_workspace)
        cudaFree(cu->blas_workspace);
    if (cu->stream)
        cudaStreamDestroy(cu->stream);
    (void)cudaGetLastError();
    lm_free(cu);
}

static lm_status check_device(int device, cudaDeviceProp *prop, lm_error *err)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        lm_errorf(err, LM_EUNSUPPORTED, "no_cuda_device", "no usable CUDA device: %s (%s)",
                  cudaGetErrorString(e), cudaGetErrorName(e));
        lm_error_hint(err, "check the GPU and driver with nvidia-smi, or run with --device cpu");
        return LM_EUNSUPPORTED;
    }
    if (device >= count) {
        lm_errorf(err, LM_ENOTFOUND, "no_cuda_device",
                  "CUDA device %d does not exist; this machine has %d", device, count);
        lm_error_hint(err, "pick a device below %d, or run with --device cpu", count);
        return LM_ENOTFOUND;
    }
    lm_status st = LM_CUDA(cudaGetDeviceProperties(prop, device), err);
    if (st == LM_OK && prop->major < 8) {
        lm_errorf(err, LM_EUNSUPPORTED, "unsupported_gpu",
                  "CUDA device %d (%s) is compute capability %d.%d; Loom's kernels need 8.0 or "
                  "newer",
                  device, prop->name, prop->major, prop->minor);
        lm_error_hint(err, "run with --device cpu");
        return LM_EUNSUPPORTED;
    }
    return st;
}

static lm_status open_pool(lm_cuda *cu, lm_error *err)
{
    int supported = 0;
    lm_status st = LM_CUDA(
        cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, cu->device), err);
    if (st != LM_OK || !supported)
        return st;
    st = LM_CUDA(cudaDeviceGetDefaultMemPool(&cu->pool, cu->device), err);
    uint64_t keep = UINT64_MAX; /* never shrink behind our back; lm_cuda__trim() does */
    if (st == LM_OK)
        st =
            LM_CUDA(cudaMemPoolSetAttribute(cu->pool, cudaMemPoolAttrReleaseThreshold, &keep), err);
    cu->async_alloc = st == LM_OK;
    return st;
}

static lm_status open_blas(lm_cuda *cu, lm_error *err)
{
    lm_status st = LM_CUBLAS(cublasCreate(&cu->blas), err);
    if (st == LM_OK)
        st = LM_CUBLAS(cublasSetStream(cu->blas, cu->stream), err);
    if (st == LM_OK)
        st = LM_CUDA(cudaMalloc(&cu->blas_workspace, BLAS_WORKSPACE_BYTES), err);
    if (st == LM_OK) {
        cu->blas_workspace_bytes = BLAS_WORKSPACE_BYTES;
        st = LM_CUBLAS(cublasSetWorkspace(cu->blas, cu->blas_workspace, BLAS_WORKSPACE_BYTES), err);
    }
    return st;
}

lm_status lm_cuda__open(lm_cuda **out, int device, lm_error *err)
{
    *out = NULL;
    cudaDeviceProp prop;
    lm_status st = check_device(device, &prop, err);
    if (st != LM_OK)
        return st;
    lm_cuda *cu = (lm_cuda *)lm_calloc(1, sizeof(*cu));
    if (!cu)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate the CUDA state");
    cu->device = device;
    cu->sm_count = prop.multiProcessorCount;
    snprintf(cu->name, sizeof(cu->name), "%s", prop.name);
    const char *mode = getenv("LOOM_CUDA_MATMUL");
    cu->fp32_matmul = mode && strcmp(mode, "fp32") == 0;
    st = LM_CUDA(cudaSetDevice(device), err);
    if (st == LM_OK)
        st = LM_CUDA(cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking), err);
    if (st == LM_OK)
        st = open_pool(cu, err);
    if (st == LM_OK)
        st = open_blas(cu, err);
    if (st != LM_OK) {
        close_partial(cu);
        return st;
    }
    *out = cu;
    return LM_OK;
}

/* ---- memory ---- */

static lm_status oom(lm_cuda *cu, size_t bytes, lm_error *err)
{
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
        (void)cudaGetLastError();
    lm_errorf(err, LM_ENOMEM, "out_of_memory",
              "cannot allocate %zu MiB on CUDA device %d (%s): %zu of %zu MiB free", bytes >> 20,
              cu->device, cu->name, free_b >> 20, total_b >> 20);
    lm_error_hint(err, "use a smaller batch or resolution, free the GPU of other processes, "
                       "or run with --device cpu");
    return LM_ENOMEM;
}

lm_status lm_cuda__alloc(lm_cuda *cu, void **ptr, size_t bytes, lm_error *err)
{
    *ptr = NULL;
    lm_status st = lm_cuda__enter(cu, err);
    if (st != LM_OK)
        return st;
    size_t n = bytes ? bytes : 1; /* distinct addresses for empty tensors */
    cudaError_t e;
    if (cu->async_alloc) {
        e = cudaMallocAsync(ptr, n, cu->stream);
        if (e == cudaErrorMemoryAllocation) {
            /* Cached blocks of other sizes may be what is missing: give them back, retry. */
            (void)cudaGetLastError();
            if (cudaStreamSynchronize(cu->stream) == cudaSuccess &&
                cudaMemPoolTrimTo(cu->pool, 0) == cudaSuccess)
                e = cudaMallocAsync(ptr, n, cu->stream);
        }
    } else {
        e = cudaMalloc(ptr, n);
    }
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        *ptr = NULL;
        return oom(cu, bytes, err);
    }
    return LM_CUDA(e, err);
}

void lm_cuda__free(lm_cuda *cu, void *ptr)
{
    if (!ptr)
        return;
    /* Nothing to report to: a failure here means the context is already broken, and the
     * next checked call says so. */
    if (cudaSetDevice(cu->device) != cudaSuccess ||
        (cu->async_alloc ? cudaFreeAsync(ptr, cu->stream) : cudaFree(ptr)) != cudaSuccess)
        (void)cudaGetLastError();
}

size_t lm_cuda__cached_bytes(lm_cuda *cu)
{
    uint64_t reserved = 0, used = 0;
    if (!cu->async_alloc ||
        cudaMemPoolGetAttribute(cu->pool, cudaMemPoolAttrReservedMemCurrent, &reserved) !=
            cudaSuccess ||
        cudaMemPoolGetAttribute(cu->pool, cudaMemPoolAttrUsedMemCurrent, &used) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return reserved > used ? (size_t)(reserved - used) : 0;
}

lm_status lm_cuda__mem_info(lm_cuda *cu, size_t *free_bytes, size_t *total_bytes, lm_error *err)
{
    *free_bytes = *total_bytes = 0;
    lm_status st = lm_cuda__enter(cu, err);
    size_t f = 0, t = 0;
    if (st == LM_OK)
        st = LM_CUDA(cudaMemGetInfo(&f, &t), err);
    if (st == LM_OK) {
        *free_bytes = f + lm_cuda__cached_bytes(cu);
        *total_bytes = t;
    }
    return st;
}

void lm_cuda__trim(lm_cuda *cu)
{
    if (!cu->async_alloc)
        return;
    if (cudaSetDevice(cu->device) != cudaSuccess ||
        cudaStreamSynchronize(cu->stream) != cudaSuccess ||
        cudaMemPoolTrimTo(cu->pool, 0) != cudaSuccess)
        (void)cudaGetLastError();
}

lm_status lm_cuda__sync(lm_backend *be, lm_error *err)
{
    lm_cuda *cu = lm_cuda__of(be);
    lm_status st = lm_cuda__enter(cu, err);
    if (st == LM_OK)
        st = LM_CUDA(cudaStreamSynchronize(cu->stream), err);
    return st;
}

/* ---- copies ---- */

static lm_cuda_layout contiguous_layout(const lm_tensor *t)
{
    lm_cuda_layout l = lm_cuda__layout(t);
    int64_t stride = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        l.stride[d] = stride;
        stride *= t->shape[d];
    }
    return l;
}

/* A contiguous host tensor of `dtype` holding t's values (t on the host). */
static lm_status host_contiguous(lm_tensor **out, const lm_tensor *t, lm_dtype dtype, lm_error *err)
{
    lm_status st = lm_tensor_new(out, lm_backend_cpu(), dtype, t->ndim, t->shape, err);
    if (st == LM_OK)
        st = lm_tensor_copy(*out, t, err);
    if (st != LM_OK) {
        lm_tensor_free(*out);
        *out = NULL;
    }
    return st;
}

static lm_status upload(lm_cuda *cu, lm_tensor *dst, const lm_tensor *src, lm_error *err)
{
    bool dst_flat = lm_tensor_is_contiguous(dst);
    /* The host side in the dtype that crosses the bus: dst's when dst is contiguous (the
     * CPU casts in parallel), else src's (the device scatters and casts). */
    lm_dtype wire = dst_flat ? dst->dtype : src->dtype;
    lm_tensor *host = NULL;
    lm_status st = LM_OK;
    if (src->dtype != wire || !lm_tensor_is_contiguous(src))
        st = host_contiguous(&host, src, wire, err);
    const lm_tensor *h = host ? host : src;
    size_t bytes = (size_t)lm_tensor_numel(src) * lm_dtype_size(wire);
    void *staging = NULL;
    if (st == LM_OK && !dst_flat)
        st = lm_cuda__alloc(cu, &staging, bytes, err);
    if (st == LM_OK)
        st = LM_CUDA(cudaMemcpyAsync(dst_flat ? lm_cuda__ptr(dst) : staging, lm_tensor_data(h),
                                     bytes, cudaMemcpyHostToDevice, cu->stream),
                     err);
    if (st == LM_OK && !dst_flat) {
        lm_cuda_layout dl = lm_cuda__layout(dst), sl = contiguous_layout(src);
        st = lm_cuda__convert(cu, lm_cuda__ptr(dst), dst->dtype, &dl, staging, wire, &sl, err);
    }
    lm_cuda__free(cu, staging);
    lm_tensor_free(host); /* pageable: already staged by the driver */
    return st;
}

static lm_status download(lm_cuda *cu, lm_tensor *dst, const lm_tensor *src, lm_error *err)
{
    size_t bytes = (size_t)lm_tensor_numel(src) * lm_dtype_size(dst->dtype);
    const void *dsrc = lm_cuda__ptr(src);
    void *gathered = NULL;
    lm_tensor *host = NULL;
    lm_status st = LM_OK;
    if (src->dtype != dst->dtype || !lm_tensor_is_contiguous(src)) {
        st = lm_cuda__alloc(cu, &gathered, bytes, err);
        lm_cuda_layout dl = contiguous_layout(src), sl = lm_cuda__layout(src);
        if (st == LM_OK)
            st = lm_cuda__convert(cu, gathered, dst->dtype, &dl, dsrc, src->dtype, &sl, err);
        dsrc = gathered;
    }
    bool dst_flat = lm_tensor_is_contiguous(dst);
    if (st == LM_OK && !dst_flat)
        st = lm_tensor_new(&host, lm_backend_cpu(), dst->dtype, dst->ndim, dst->shape, err);
    if (st == LM_OK)
        st = LM_CUDA(cudaMemcpyAsync(lm_tensor_data(host ? host : dst), dsrc, bytes,
                                     cudaMemcpyDeviceToHost, cu->stream),
                     err);
    if (st == LM_OK)
        st = LM_CUDA(cudaStreamSynchronize(cu->stream), err);
    if (st == LM_OK && host)
        st = lm_tensor_copy(dst, host, err);
    lm_cuda__free(cu, gathered);
    lm_tensor_free(host);
    return st;
}

static lm_status on_device(lm_cuda *cu, lm_tensor *dst, const lm_tensor *src, lm_error *err)
{
    if (dst->dtype == src->dtype && lm_tensor_is_contiguous(dst) && lm_tensor_is_contiguous(src))
        return LM_CUDA(cudaMemcpyAsync(lm_cuda__ptr(dst), lm_cuda__ptr(src), lm_tensor_nbytes(src),
                                       cudaMemcpyDeviceToDevice, cu->stream),
                       err);
    lm_cuda_layout dl = lm_cuda__layout(dst), sl = lm_cuda__layout(src);
    return lm_cuda__convert(cu, lm_cuda__ptr(dst), dst->dtype, &dl, lm_cuda__ptr(src), src->dtype,
                            &sl, err);
}

lm_status lm_cuda__copy(lm_backend *be, lm_tensor *dst, const lm_tensor *src, lm_error *err)
{
    lm_cuda *cu = lm_cuda__of(be);
    lm_status st = lm_cuda__enter(cu, err);
    if (st != LM_OK || lm_tensor_numel(dst) == 0)
        return st;
    bool dst_host = lm_backend_is_host(lm_tensor_backend(dst));
    bool src_host = lm_backend_is_host(lm_tensor_backend(src));
    if (src_host && dst_host) /* not ours to do, but harmless */
        return lm_tensor_copy(dst, src, err);
    if (src_host)
        return upload(cu, dst, src, err);
    if (dst_host)
        return download(cu, dst, src, err);
    return on_device(cu, dst, src, err);
}
