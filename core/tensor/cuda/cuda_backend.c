/* core/tensor/cuda/cuda_backend.c — the CUDA backend's table, entry point and buffers (C).
 *
 * The table is filled with designated initialisers like the CPU one; every slot points at
 * a kernel of one of the .cu files (see cuda_impl.h for why this part is C). One backend
 * exists per device for the life of the process: lm_cuda_backend_new() opens the device
 * on first use (stream, cuBLAS handle, memory pool: backend.cu) and hands out the same
 * backend afterwards. Buffers are device memory from the stream-ordered pool, whose cached
 * blocks lm_backend_cached_bytes()/lm_backend_trim() report and release. */
#include "core/base/alloc.h"
#include "core/tensor/backend.h"
#include "core/tensor/cuda/cuda.h"
#include "core/tensor/cuda/cuda_impl.h"

#include <pthread.h>

#define MAX_DEVICES 16

static lm_status cuda_buffer_new(lm_buffer **out, lm_backend *be, size_t bytes, lm_error *err)
{
    *out = NULL;
    lm_buffer *buf = lm_calloc(1, sizeof(*buf));
    if (!buf)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate a buffer record");
    lm_status st = lm_cuda__alloc(lm_cuda__of(be), &buf->data, bytes, err);
    if (st != LM_OK) {
        lm_free(buf);
        return st;
    }
    buf->backend = be;
    atomic_init(&buf->refs, 1);
    buf->bytes = bytes;
    lm_backend__mem_alloc(be, bytes); /* the pool's own rounding is not visible here */
    *out = buf;
    return LM_OK;
}

static void cuda_buffer_free(lm_backend *be, lm_buffer *buf)
{
    lm_backend__mem_release(be, buf->bytes);
    lm_cuda__free(lm_cuda__of(be), buf->data);
}

static size_t cuda_cached_bytes(const lm_backend *be)
{
    return lm_cuda__cached_bytes(be->impl);
}

static void cuda_trim(lm_backend *be)
{
    lm_cuda__trim(lm_cuda__of(be));
}

static lm_status cuda_mem_info(lm_backend *be, size_t *free_bytes, size_t *total_bytes,
                               lm_error *err)
{
    return lm_cuda__mem_info(lm_cuda__of(be), free_bytes, total_bytes, err);
}

static const lm_backend_ops cuda_ops = {
    .name = "cuda",
    .buffer_new = cuda_buffer_new,
    .buffer_free = cuda_buffer_free,
    .copy = lm_cuda__copy,
    .sync = lm_cuda__sync,
    .kernel = {
        [LM_OP_FILL] = lm_cuda_fill,
        [LM_OP_LINEAR] = lm_cuda_linear,
        [LM_OP_MATMUL] = lm_cuda_matmul,
        [LM_OP_ATTENTION] = lm_cuda_attention,
        [LM_OP_CONV2D] = lm_cuda_conv2d,
        [LM_OP_GROUP_NORM] = lm_cuda_group_norm,
        [LM_OP_LAYER_NORM] = lm_cuda_layer_norm,
        [LM_OP_RMS_NORM] = lm_cuda_rms_norm,
        [LM_OP_SOFTMAX] = lm_cuda_softmax,
        [LM_OP_GELU] = lm_cuda_unary,
        [LM_OP_GELU_TANH] = lm_cuda_unary,
        [LM_OP_QUICK_GELU] = lm_cuda_unary,
        [LM_OP_SILU] = lm_cuda_unary,
        [LM_OP_EXP] = lm_cuda_unary,
        [LM_OP_ADD] = lm_cuda_binary,
        [LM_OP_SUB] = lm_cuda_binary,
        [LM_OP_MUL] = lm_cuda_binary,
        [LM_OP_SCALE] = lm_cuda_unary,
        [LM_OP_CLAMP] = lm_cuda_unary,
        [LM_OP_MODULATE] = lm_cuda_ternary,
        [LM_OP_GATED_ADD] = lm_cuda_ternary,
        [LM_OP_CONCAT] = lm_cuda_concat,
        [LM_OP_PAD] = lm_cuda_pad,
        [LM_OP_UPSAMPLE_NEAREST2X] = lm_cuda_upsample,
        [LM_OP_PATCHIFY] = lm_cuda_patchify,
        [LM_OP_UNPATCHIFY] = lm_cuda_unpatchify,
        [LM_OP_EMBEDDING] = lm_cuda_embedding,
        [LM_OP_TIMESTEP_EMBEDDING] = lm_cuda_timestep_embedding,
        [LM_OP_T5_BUCKETS] = lm_cuda_t5_buckets,
    },
    .cached_bytes = cuda_cached_bytes,
    .trim = cuda_trim,
    .mem_info = cuda_mem_info,
};

static struct {
    pthread_mutex_t mu;
    lm_backend backend[MAX_DEVICES];
    bool open[MAX_DEVICES];
} devices = { .mu = PTHREAD_MUTEX_INITIALIZER };

lm_status lm_cuda_backend_new(lm_backend **out, int device, lm_error *err)
{
    *out = NULL;
    if (device < 0 || device >= MAX_DEVICES)
        return lm_errorf(err, LM_ERANGE, "bad_device",
                         "CUDA device %d is outside 0..%d; pick a device nvidia-smi lists", device,
                         MAX_DEVICES - 1);
    lm_status st = LM_OK;
    pthread_mutex_lock(&devices.mu);
    if (!devices.open[device]) {
        lm_cuda *cu = NULL;
        st = lm_cuda__open(&cu, device, err);
        if (st == LM_OK) {
            /* field by field: the memory counters (atomics) stay as static storage made them */
            devices.backend[device].ops = &cuda_ops;
            devices.backend[device].impl = cu;
            devices.open[device] = true;
        }
    }
    if (st == LM_OK)
        *out = &devices.backend[device];
    pthread_mutex_unlock(&devices.mu);
    return st;
}

lm_cuda *lm_cuda__of(lm_backend *be)
{
    return be->impl;
}

void *lm_cuda__ptr(const lm_tensor *t)
{
    return (unsigned char *)t->buffer->data + t->offset;
}

const struct lm_backend_ops *lm_cuda__table(void)
{
    return &cuda_ops;
}
