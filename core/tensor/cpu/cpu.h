/* core/tensor/cpu/cpu.h — internals of the CPU backend: kernels and shared helpers.
 *
 * Threads: every kernel spreads its work over lm_pool_default() (LOOM_THREADS). OpenBLAS
 * is set to one thread once (lm_cpu_pool() does it) and called from inside pool tasks on
 * blocks of the product, so the two never fight over cores.
 * Scratch: kernels allocate per-thread scratch lazily through lm_cpu_scratch (one slot per
 * pool thread, freed by lm_cpu_scratch_free); a failed allocation is recorded and the
 * kernel returns LM_ENOMEM after the parallel loop. */
#ifndef LM_CORE_TENSOR_CPU_CPU_H
#define LM_CORE_TENSOR_CPU_CPU_H

#include "core/base/thread.h"
#include "core/tensor/backend.h"

#include <stdatomic.h>
#include <stdbool.h>

/* The default pool, after configuring OpenBLAS for single-threaded calls. */
lm_pool *lm_cpu_pool(void);
/* Runs fn over [0, n) on the pool; inline when n == 1 or the work is tiny. */
void lm_cpu_parallel(size_t n, lm_pool_fn fn, void *user);

/* Sets the free-buffer cache's bound in bytes (0 turns it off), overriding
 * LOOM_CPU_CACHE_MB; entries beyond the new bound are freed. For tests and tools. */
void lm_cpu_cache_set_limit(size_t bytes);

/* Per-thread scratch buffers for one kernel call. */
#define LM_CPU_MAX_THREADS 256
typedef struct {
    float *buf[LM_CPU_MAX_THREADS];
    size_t floats; /* size of every slot */
    atomic_bool failed;
} lm_cpu_scratch;

void lm_cpu_scratch_init(lm_cpu_scratch *s, size_t floats);
float *lm_cpu_scratch_get(lm_cpu_scratch *s, int tid); /* NULL (and failed set) on OOM */
void lm_cpu_scratch_free(lm_cpu_scratch *s);

static inline float *lm_cpu_f32(const lm_tensor *t)
{
    return (float *)lm_tensor__addr(t);
}

static inline void lm_cpu_fill_f32(float *p, int64_t n, float v)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = v;
}

/* Converts rows [r0, r1) of a 2-D weight [rows, cols] of any float dtype into dst (f32,
 * row-major, cols per row). */
void lm_cpu_weight_rows(float *dst, const lm_tensor *w, int64_t r0, int64_t r1, int64_t cols);

lm_status lm_cpu_copy(lm_backend *be, lm_tensor *dst, const lm_tensor *src, lm_error *err);

/* Kernels (op.h contract). */
lm_status lm_cpu_fill(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_linear(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_matmul(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_attention(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_conv2d(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_group_norm(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_layer_norm(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_rms_norm(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_softmax(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_unary(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_binary(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_ternary(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_concat(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_pad(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_upsample(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_patchify(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_unpatchify(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_embedding(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_timestep_embedding(lm_backend *be, const lm_op_call *c, lm_error *err);
lm_status lm_cpu_t5_buckets(lm_backend *be, const lm_op_call *c, lm_error *err);

/* bf16 products (matmul_bf16.c). lm_cpu_has_bf16: the CPU has AVX512-BF16 (false with
 * LOOM_CPU_BASELINE=1). lm_cpu_use_bf16: the precision is BF16 and the CPU has it (logs once
 * at info level when BF16 is asked for but missing). lm_cpu_linear_bf16: the linear kernel
 * in bf16 with f32 accumulation; only when lm_cpu_has_bf16(), and K > 0. */
bool lm_cpu_has_bf16(void);
bool lm_cpu_use_bf16(void);
lm_status lm_cpu_linear_bf16(const lm_op_call *c, lm_error *err);

/* Helper for kernels that fail on allocation. */
lm_status lm_cpu_oom(lm_error *err, const char *op);

#endif
