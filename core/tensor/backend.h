/* core/tensor/backend.h — the backend interface (internal to core/tensor).
 * A backend is a table of function pointers filled by cpu/ or cuda/ with designated
 * initialisers; models never call a backend directly, only the lm_* ops (ops.h). A buffer
 * is refcounted storage owned by one backend. Plain C, so a CUDA backend compiled by nvcc
 * (as C++) can include it.
 *
 * Contract of the table (every slot is filled; tests/tensor/test_backend.c checks it):
 * - buffer_new/buffer_free: storage of `bytes` bytes (64-byte aligned on the CPU).
 * - copy(be, dst, src): same shape, any strides on both sides, any dtypes (a cast; float8
 *   encoding saturates, see dtype.h; float -> integer rounds to nearest and saturates).
 *   dst or src (or both) belongs to `be`; the other one may be a host (CPU) tensor. The front-end
 *   lm_tensor_copy() picks the backend: the non-host one when the two differ.
 * - sync(be): waits until every queued operation of the backend has finished (the CPU
 *   backend is synchronous and returns LM_OK).
 * - kernel[op]: see op.h for the calling convention and each op's contract.
 *
 * Memory accounting (lm_backend_mem_stats): buffer_new calls lm_backend__mem_alloc() with
 * the bytes it really holds for the buffer, buffer_free calls lm_backend__mem_release()
 * with the same number; lm_tensor_wrap() counts wrapped memory as `mapped` on its own. */
#ifndef LM_CORE_TENSOR_BACKEND_H
#define LM_CORE_TENSOR_BACKEND_H

#include "core/tensor/op.h"
#include "core/tensor/tensor.h"

#include <stdatomic.h>

typedef struct lm_backend_ops {
    const char *name;
    lm_status (*buffer_new)(lm_buffer **out, lm_backend *be, size_t bytes, lm_error *err);
    void (*buffer_free)(lm_backend *be, lm_buffer *buf);
    lm_status (*copy)(lm_backend *be, lm_tensor *dst, const lm_tensor *src, lm_error *err);
    lm_status (*sync)(lm_backend *be, lm_error *err);
    lm_kernel_fn kernel[LM_OP_COUNT]; /* every slot filled; a test checks it */
    /* Optional (NULL = nothing cached): memory the allocator keeps for reuse, and giving
     * it back (lm_backend_cached_bytes / lm_backend_trim). */
    size_t (*cached_bytes)(const lm_backend *be);
    void (*trim)(lm_backend *be);
    /* Optional (NULL: unknown): bytes the device could still allocate (with its cache
     * counted as free) and its size (lm_backend_mem_info). */
    lm_status (*mem_info)(lm_backend *be, size_t *free_bytes, size_t *total_bytes, lm_error *err);
} lm_backend_ops;

/* Counters behind lm_backend_mem_stats(); atomics, so any thread may update them. */
typedef struct {
    atomic_size_t live;   /* bytes of the backend's buffers that tensors still hold */
    atomic_size_t peak;   /* most `live` reached since start or the last reset */
    atomic_size_t mapped; /* bytes of wrapped memory (lm_tensor_wrap) still referenced */
} lm_backend_counters;

struct lm_backend {
    const lm_backend_ops *ops;
    void *impl;
    bool is_host;            /* buffer data is directly addressable by the CPU */
    lm_backend_counters mem; /* zero at start: backends live in static storage */
};

struct lm_buffer {
    lm_backend *backend;
    atomic_int refs;
    void *data; /* host or device address */
    size_t bytes;
    void (*release)(void *); /* wrapped memory: called with keep_alive instead of freeing */
    void *keep_alive;
    bool wrapped; /* made by lm_tensor_wrap: not the backend's memory, counted as mapped */
};

lm_buffer *lm_buffer__ref(lm_buffer *buf);
/* The address of element 0 whatever the backend (lm_tensor_data() gives NULL for a device
 * tensor): for kernels of backends whose memory the CPU can address (cpu, loopback). */
void *lm_tensor__addr(const lm_tensor *t);
void lm_buffer__unref(lm_buffer *buf);

/* Accounting hooks for buffer_new/buffer_free (core/tensor/backend.c). */
void lm_backend__mem_alloc(lm_backend *be, size_t bytes);
void lm_backend__mem_release(lm_backend *be, size_t bytes);
void lm_backend__mem_map(lm_backend *be, size_t bytes);   /* wrapped memory referenced */
void lm_backend__mem_unmap(lm_backend *be, size_t bytes); /* and released */

/* The CPU backend's table (core/tensor/cpu/cpu_backend.c); lm_backend_cpu() uses it, and
 * lm_backend_loopback() uses the same kernels under its own name. */
extern const lm_backend_ops lm_cpu__ops;
extern const lm_backend_ops lm_loopback__ops;

#endif
