/* core/tensor/tensor.h — tensors, dtypes, buffers: the type every model and image uses.
 *
 * An lm_tensor is a small transparent struct (anyone may read the fields; only core/tensor
 * writes them). Shapes are in PyTorch order: dim 0 outermost, last dim contiguous for a
 * fresh tensor; strides are in elements. The data lives in a refcounted lm_buffer that
 * belongs to one backend; views (slice, reshape, permute) share the buffer and hold a
 * reference to it, so freeing the source before the view is safe.
 *
 * Ownership: lm_tensor_new()/lm_tensor_view_*() return a tensor the caller frees with
 * lm_tensor_free(). Every tensor is independently freeable; the buffer goes when its last
 * tensor goes.
 *
 * Thread safety: a tensor may be read from many threads; buffer refcounts are atomic. */
#ifndef LM_CORE_TENSOR_TENSOR_H
#define LM_CORE_TENSOR_TENSOR_H

#include "core/base/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_MAX_DIMS 5

typedef enum {
    LM_DTYPE_F32,
    LM_DTYPE_F16,
    LM_DTYPE_BF16,
    LM_DTYPE_F8_E4M3, /* float8 e4m3fn: no infinities, one NaN pattern, max 448 */
    LM_DTYPE_I64,
    LM_DTYPE_I32,
    LM_DTYPE_U8,
    LM_DTYPE_COUNT
} lm_dtype;

typedef struct lm_backend lm_backend; /* opaque: see backend.h (internal) */
typedef struct lm_buffer lm_buffer;   /* opaque: refcounted storage of one backend */

typedef struct lm_tensor {
    lm_dtype dtype;
    int ndim;
    int64_t shape[LM_MAX_DIMS];
    int64_t stride[LM_MAX_DIMS]; /* in elements */
    lm_buffer *buffer;
    size_t offset; /* in bytes from the buffer start */
} lm_tensor;

size_t lm_dtype_size(lm_dtype dtype);
const char *lm_dtype_name(lm_dtype dtype); /* safetensors' names: "F32", "F8_E4M3"… */

/* The CPU backend always exists; it is never freed. */
lm_backend *lm_backend_cpu(void);
/* The loopback device (device name "loopback"): the CPU's kernels behind a device boundary.
 * Its tensors are not host tensors (lm_tensor_data() is NULL, ops refuse to mix them with
 * CPU tensors, data moves with lm_tensor_to/lm_tensor_copy), so every path a GPU takes can
 * be run and checked on a machine without one; results equal the CPU's bit for bit.
 * LOOM_LOOPBACK_MEMORY (bytes, or with a K/M/G suffix) gives it a size: allocations past
 * it fail as on a full GPU, and lm_backend_mem_info() reports it. Never freed. */
lm_backend *lm_backend_loopback(void);

/* A new contiguous tensor, uninitialised. ndim in [0, LM_MAX_DIMS], shape[i] >= 0. */
lm_status lm_tensor_new(lm_tensor **out, lm_backend *be, lm_dtype dtype, int ndim,
                        const int64_t *shape, lm_error *err);
/* Same, filled with zeros. */
lm_status lm_tensor_zeros(lm_tensor **out, lm_backend *be, lm_dtype dtype, int ndim,
                          const int64_t *shape, lm_error *err);
/* Wraps memory the tensor does not own (e.g. an mmap'd checkpoint): `keep_alive` is
 * released with release(keep_alive) when the last reference goes (release may be NULL). */
lm_status lm_tensor_wrap(lm_tensor **out, void *data, size_t bytes, lm_dtype dtype, int ndim,
                         const int64_t *shape, void (*release)(void *), void *keep_alive,
                         lm_error *err);
void lm_tensor_free(lm_tensor *t); /* NULL is a no-op */

int64_t lm_tensor_numel(const lm_tensor *t);
size_t lm_tensor_nbytes(const lm_tensor *t); /* numel * dtype size */
bool lm_tensor_is_contiguous(const lm_tensor *t);
lm_backend *lm_tensor_backend(const lm_tensor *t);
/* Host pointer to element 0, or NULL when the tensor lives on a device. */
void *lm_tensor_data(const lm_tensor *t);
/* A contiguous f32 host copy of any tensor (any dtype, any backend, any strides). */
lm_status lm_tensor_to_f32_host(lm_tensor **out, const lm_tensor *t, lm_error *err);

/* Copies src's values into dst: same shape; any strides on both sides; any dtypes (a cast:
 * floats round to nearest even, float8 saturates at ±448, floats to integers round to
 * nearest and saturate); dst and src on the same backend or one of them on the host. */
lm_status lm_tensor_copy(lm_tensor *dst, const lm_tensor *src, lm_error *err);
/* A new contiguous tensor on t's backend holding t's values as `dtype`. */
lm_status lm_tensor_cast(lm_tensor **out, const lm_tensor *t, lm_dtype dtype, lm_error *err);
/* A new contiguous copy of t (same dtype, same backend). */
lm_status lm_tensor_contiguous(lm_tensor **out, const lm_tensor *t, lm_error *err);
/* A new contiguous copy of t (same dtype) on backend be (host <-> device transfers). */
lm_status lm_tensor_to(lm_tensor **out, const lm_tensor *t, lm_backend *be, lm_error *err);
/* Replaces *t by its copy on be (lm_tensor_to) and frees the old one: a result brought back
 * to the host, a weight sent to a device. A no-op when *t is NULL or already on be; on
 * failure *t is freed and set to NULL. */
lm_status lm_tensor_move(lm_tensor **t, lm_backend *be, lm_error *err);
/* A model's input t on be, the backend the model computes on: *copy is NULL when t is usable
 * there as it is (on be, or on the host with be a host backend), else a copy of the host
 * tensor t on be, the caller's to free. A tensor on another device is refused (LM_EINVAL,
 * kind "wrong_backend": "<what> is on <its backend> but the model computes on <be>"). */
lm_status lm_tensor_on(lm_tensor **copy, const lm_tensor *t, lm_backend *be, const char *what,
                       lm_error *err);
/* Waits for every queued operation of the backend (the CPU is synchronous). */
lm_status lm_backend_sync(lm_backend *be, lm_error *err);
const char *lm_backend_name(const lm_backend *be); /* "cpu", "cuda" */
bool lm_backend_is_host(const lm_backend *be);
/* Bytes the backend's allocator keeps for reuse; lm_backend_trim() returns them. */
size_t lm_backend_cached_bytes(const lm_backend *be);
void lm_backend_trim(lm_backend *be);

/* Memory of one backend, a snapshot (thread-safe; see docs/tensor.md "Memory"). */
typedef struct {
    size_t live;   /* bytes held for live tensors' buffers, as allocated (the CPU rounds up) */
    size_t peak;   /* the most `live` reached since start or lm_backend_mem_reset_peak() */
    size_t cached; /* freed bytes the allocator keeps for reuse (lm_backend_cached_bytes) */
    size_t mapped; /* wrapped memory live tensors refer to (mmap'd weights); not in live */
} lm_backend_mem;
void lm_backend_mem_stats(lm_backend *be, lm_backend_mem *out);
/* Starts a new peak from the bytes live now (e.g. at the start of a job). */
void lm_backend_mem_reset_peak(lm_backend *be);
/* What the device can still give and its size, in bytes: the CPU's available and total
 * physical memory, a GPU's free and total memory (the allocator's cache counted as free).
 * LM_EUNSUPPORTED when the backend cannot tell. */
lm_status lm_backend_mem_info(lm_backend *be, size_t *free_bytes, size_t *total_bytes,
                              lm_error *err);

/* The backend a device name asks for: "cpu", "cuda" (device 0), "cuda:N", "loopback" (a
 * test device, see lm_backend_loopback), or "auto" (also
 * NULL or ""): CUDA device 0 when it opens, else the CPU, with the reason logged at INFO.
 * An unknown name is LM_EINVAL naming the choices; "cuda" without a usable GPU, or in a
 * build without CUDA, passes on lm_cuda_backend_new()'s error. *out is borrowed: backends
 * live until the process ends. */
lm_status lm_backend_select(lm_backend **out, const char *device, lm_error *err);

/* Views: share the buffer, no copy. */
lm_status lm_tensor_view(lm_tensor **out, const lm_tensor *t, lm_error *err); /* same shape */
lm_status lm_tensor_view_slice(lm_tensor **out, const lm_tensor *t, int dim, int64_t start,
                               int64_t end, lm_error *err);
lm_status lm_tensor_view_reshape(lm_tensor **out, const lm_tensor *t, int ndim,
                                 const int64_t *shape, lm_error *err); /* needs contiguous */
lm_status lm_tensor_view_permute(lm_tensor **out, const lm_tensor *t, const int *perm,
                                 lm_error *err);

/* "[1, 16, 128, 128] f32" into buf; for error messages and logs. */
void lm_tensor_describe(const lm_tensor *t, char *buf, size_t size);
/* "[1, 16, 128, 128]": ndim sizes into buf, the same without a tensor. */
void lm_tensor_describe_shape(const int64_t *shape, int ndim, char *buf, size_t size);

#endif
