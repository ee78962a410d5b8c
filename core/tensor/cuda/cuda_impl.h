/* core/tensor/cuda/cuda_impl.h — internals of the CUDA backend shared by its C glue and its
 * .cu files (plain C; nothing outside core/tensor/cuda/ includes it).
 *
 * Why a C glue file: backend.h is C11 (atomics, and the kernel table is filled with array
 * designators that C++17 lacks), so the table, lm_cuda_backend_new and the lm_buffer
 * bookkeeping live in cuda_backend.c, compiled by the C compiler. The .cu files see
 * tensors only through tensor.h and reach the backend's state (lm_cuda, defined in
 * common.cuh) and device addresses through the two accessors below.
 *
 * Every function that can fail returns lm_status and fills err. Streams: all work of one
 * device goes to the backend's one stream, in order, so temporaries freed with
 * lm_cuda__free() right after a launch are safe (stream-ordered allocator). */
#ifndef LM_CORE_TENSOR_CUDA_CUDA_IMPL_H
#define LM_CORE_TENSOR_CUDA_CUDA_IMPL_H

#include "core/base/error.h"
#include "core/tensor/op.h"
#include "core/tensor/tensor.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lm_cuda lm_cuda; /* one per device: stream, cuBLAS handle, pool (common.cuh) */
struct lm_backend_ops;

/* cuda_backend.c */
lm_cuda *lm_cuda__of(lm_backend *be);
void *lm_cuda__ptr(const lm_tensor *t); /* device address of element 0 */
const struct lm_backend_ops *lm_cuda__table(void);

/* backend.cu: device state, memory, copies */
lm_status lm_cuda__open(lm_cuda **out, int device, lm_error *err);
lm_status lm_cuda__alloc(lm_cuda *cu, void **ptr, size_t bytes, lm_error *err);
void lm_cuda__free(lm_cuda *cu, void *ptr); /* stream-ordered; NULL is a no-op */
lm_status lm_cuda__copy(lm_backend *be, lm_tensor *dst, const lm_tensor *src, lm_error *err);
lm_status lm_cuda__sync(lm_backend *be, lm_error *err);
size_t lm_cuda__cached_bytes(lm_cuda *cu); /* freed memory the pool keeps for reuse */
void lm_cuda__trim(lm_cuda *cu);           /* gives that memory back to the driver */
/* cudaMemGetInfo of the device, the pool's cached bytes counted as free. */
lm_status lm_cuda__mem_info(lm_cuda *cu, size_t *free_bytes, size_t *total_bytes, lm_error *err);

/* Kernels (op.h contract), one family per .cu file. */
lm_status lm_cuda_fill(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_unary(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_binary(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_ternary(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_concat(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_pad(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_upsample(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_patchify(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_unpatchify(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_embedding(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_timestep_embedding(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_t5_buckets(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_linear(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_matmul(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_attention(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_conv2d(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_group_norm(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_layer_norm(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_rms_norm(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cuda_softmax(lm_backend *be, const lm_op_call *c, lm_error *err);

#ifdef __cplusplus
}
#endif

#endif
