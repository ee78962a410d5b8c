/* core/tensor/cpu/cpu_backend.c — the CPU backend: its table, buffers and shared helpers.
 *
 * Buffers: 64-byte aligned. Freed buffers of 64 KiB or more are kept in a small cache
 * keyed by their rounded size and handed out again for the same size, so the repeated
 * shapes of a forward pass stop reaching malloc after the first step. The cache is bounded
 * (LOOM_CPU_CACHE_MB, default 1024; 0 disables; the oldest entries go first) and
 * lm_backend_trim() empties it, as does an allocation that fails. Live and peak bytes are
 * counted at the rounded size (backend.c), so live + cached is what the process holds. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/tensor/cpu/cpu.h"
#include "core/tensor/dtype.h"

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_SLOTS    64
#define CACHE_MIN_SIZE ((size_t)64 << 10)

static struct {
    pthread_mutex_t mu;
    void *data[CACHE_SLOTS];
    size_t size[CACHE_SLOTS];
    int count;
    size_t bytes, cap;
    bool cap_read;
} cache = { .mu = PTHREAD_MUTEX_INITIALIZER };

static size_t round_size(size_t bytes)
{
    size_t align = bytes >= CACHE_MIN_SIZE ? 4096 : 64;
    return bytes ? (bytes + align - 1) & ~(align - 1) : 64;
}

/* Entries are kept oldest first; the caller holds the lock. */
static void cache_remove(int i)
{
    cache.bytes -= cache.size[i];
    cache.count--;
    memmove(&cache.data[i], &cache.data[i + 1], (size_t)(cache.count - i) * sizeof(void *));
    memmove(&cache.size[i], &cache.size[i + 1], (size_t)(cache.count - i) * sizeof(size_t));
}

static void *cache_take(size_t size)
{
    void *p = NULL;
    pthread_mutex_lock(&cache.mu);
    for (int i = cache.count - 1; i >= 0 && !p; i--) {
        if (cache.size[i] == size) {
            p = cache.data[i];
            cache_remove(i);
        }
    }
    pthread_mutex_unlock(&cache.mu);
    return p;
}

/* Keeps p for reuse, evicting the oldest entries to make room; false when not kept. */
static bool cache_put(void *p, size_t size)
{
    bool kept = false;
    pthread_mutex_lock(&cache.mu);
    if (!cache.cap_read) {
        const char *env = getenv("LOOM_CPU_CACHE_MB");
        long mb = env ? atol(env) : 1024;
        cache.cap = (size_t)(mb > 0 ? mb : 0) << 20;
        cache.cap_read = true;
    }
    if (size >= CACHE_MIN_SIZE && size <= cache.cap) {
        while (cache.count == CACHE_SLOTS || cache.bytes + size > cache.cap) {
            free(cache.data[0]);
            cache_remove(0);
        }
        cache.data[cache.count] = p;
        cache.size[cache.count++] = size;
        cache.bytes += size;
        kept = true;
    }
    pthread_mutex_unlock(&cache.mu);
    return kept;
}

void lm_cpu_cache_set_limit(size_t bytes)
{
    pthread_mutex_lock(&cache.mu);
    cache.cap = bytes;
    cache.cap_read = true;
    while (cache.count > 0 && cache.bytes > cache.cap) {
        free(cache.data[0]);
        cache_remove(0);
    }
    pthread_mutex_unlock(&cache.mu);
}

static size_t cpu_cached_bytes(const lm_backend *be)
{
    LM_UNUSED(be);
    pthread_mutex_lock(&cache.mu);
    size_t bytes = cache.bytes;
    pthread_mutex_unlock(&cache.mu);
    return bytes;
}

static void cpu_trim(lm_backend *be)
{
    LM_UNUSED(be);
    pthread_mutex_lock(&cache.mu);
    for (int i = 0; i < cache.count; i++)
        free(cache.data[i]);
    cache.count = 0;
    cache.bytes = 0;
    pthread_mutex_unlock(&cache.mu);
}

static lm_status cpu_buffer_new(lm_buffer **out, lm_backend *be, size_t bytes, lm_error *err)
{
    lm_buffer *buf = lm_calloc(1, sizeof(*buf));
    size_t rounded = round_size(bytes);
    void *data = NULL;
    if (buf && rounded >= bytes) {
        data = cache_take(rounded);
        if (!data)
            data = aligned_alloc(64, rounded);
        if (!data) { /* memory is short: give the cached buffers back and retry once */
            cpu_trim(be);
            data = aligned_alloc(64, rounded);
        }
    }
    if (!buf || !data) {
        lm_free(buf);
        free(data);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate a tensor of %zu bytes",
                         bytes);
    }
    buf->backend = be;
    atomic_init(&buf->refs, 1);
    buf->data = data;
    buf->bytes = bytes;
    lm_backend__mem_alloc(be, rounded);
    *out = buf;
    return LM_OK;
}

static void cpu_buffer_free(lm_backend *be, lm_buffer *buf)
{
    size_t rounded = round_size(buf->bytes);
    lm_backend__mem_release(be, rounded);
    if (!cache_put(buf->data, rounded))
        free(buf->data);
}

static lm_status cpu_sync(lm_backend *be, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    return LM_OK;
}

/* The kernel table, shared by the CPU and the loopback backend. */
#define CPU_KERNELS                                                                                \
    [LM_OP_FILL] = lm_cpu_fill, [LM_OP_LINEAR] = lm_cpu_linear, [LM_OP_MATMUL] = lm_cpu_matmul,    \
    [LM_OP_ATTENTION] = lm_cpu_attention, [LM_OP_CONV2D] = lm_cpu_conv2d,                          \
    [LM_OP_GROUP_NORM] = lm_cpu_group_norm, [LM_OP_LAYER_NORM] = lm_cpu_layer_norm,                \
    [LM_OP_RMS_NORM] = lm_cpu_rms_norm, [LM_OP_SOFTMAX] = lm_cpu_softmax,                          \
    [LM_OP_GELU] = lm_cpu_unary, [LM_OP_GELU_TANH] = lm_cpu_unary,                                 \
    [LM_OP_QUICK_GELU] = lm_cpu_unary, [LM_OP_SILU] = lm_cpu_unary, [LM_OP_EXP] = lm_cpu_unary,    \
    [LM_OP_ADD] = lm_cpu_binary, [LM_OP_SUB] = lm_cpu_binary, [LM_OP_MUL] = lm_cpu_binary,         \
    [LM_OP_SCALE] = lm_cpu_unary, [LM_OP_CLAMP] = lm_cpu_unary, [LM_OP_MODULATE] = lm_cpu_ternary, \
    [LM_OP_GATED_ADD] = lm_cpu_ternary, [LM_OP_CONCAT] = lm_cpu_concat, [LM_OP_PAD] = lm_cpu_pad,  \
    [LM_OP_UPSAMPLE_NEAREST2X] = lm_cpu_upsample, [LM_OP_PATCHIFY] = lm_cpu_patchify,              \
    [LM_OP_UNPATCHIFY] = lm_cpu_unpatchify, [LM_OP_EMBEDDING] = lm_cpu_embedding,                  \
    [LM_OP_TIMESTEP_EMBEDDING] = lm_cpu_timestep_embedding,                                        \
    [LM_OP_T5_BUCKETS] = lm_cpu_t5_buckets,

/* Physical memory: MemAvailable (which counts reclaimable page cache as free) and MemTotal
 * from /proc/meminfo, else sysconf's free and total pages. */
static lm_status cpu_mem_info(lm_backend *be, size_t *free_bytes, size_t *total_bytes,
                              lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    unsigned long long avail = 0, total = 0, kb;
    char line[256];
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            avail = kb * 1024;
        else if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
            total = kb * 1024;
    }
    if (f)
        fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (!total && page > 0)
        total = (unsigned long long)sysconf(_SC_PHYS_PAGES) * (unsigned long long)page;
    if (!avail && page > 0)
        avail = (unsigned long long)sysconf(_SC_AVPHYS_PAGES) * (unsigned long long)page;
    *total_bytes = (size_t)total;
    *free_bytes = (size_t)avail + cpu_cached_bytes(be);
    return LM_OK;
}

const lm_backend_ops lm_cpu__ops = {
    .name = "cpu",
    .buffer_new = cpu_buffer_new,
    .buffer_free = cpu_buffer_free,
    .copy = lm_cpu_copy,
    .sync = cpu_sync,
    .cached_bytes = cpu_cached_bytes,
    .trim = cpu_trim,
    .mem_info = cpu_mem_info,
    .kernel = { CPU_KERNELS },
};

static lm_backend cpu_backend = { .ops = &lm_cpu__ops, .is_host = true };

lm_backend *lm_backend_cpu(void)
{
    return &cpu_backend;
}

/* ---- loopback: the CPU kernels behind a device boundary ---- */

/* Its size: LOOM_LOOPBACK_MEMORY (bytes, or with a K, M or G suffix), else the host's. */
static size_t loopback_size(void)
{
    size_t size = 0;
    return lm_parse_bytes(getenv("LOOM_LOOPBACK_MEMORY"), &size) ? size : 0;
}

/* A limited loopback device refuses allocations beyond its size, as a full GPU would. */
static lm_status loopback_buffer_new(lm_buffer **out, lm_backend *be, size_t bytes, lm_error *err)
{
    size_t size = loopback_size();
    lm_backend_mem m;
    lm_backend_mem_stats(be, &m);
    if (size && (bytes > size || m.live > size - bytes))
        return lm_errorf(err, LM_ENOMEM, "out_of_memory",
                         "loopback device: cannot allocate %zu bytes (%zu of %zu in use)", bytes,
                         m.live, size);
    return cpu_buffer_new(out, be, bytes, err);
}

static lm_status loopback_mem_info(lm_backend *be, size_t *free_bytes, size_t *total_bytes,
                                   lm_error *err)
{
    size_t size = loopback_size();
    if (!size)
        return cpu_mem_info(be, free_bytes, total_bytes, err);
    lm_backend_mem m;
    lm_backend_mem_stats(be, &m);
    *total_bytes = size;
    *free_bytes = m.live < size ? size - m.live : 0;
    return LM_OK;
}

const lm_backend_ops lm_loopback__ops = {
    .name = "loopback",
    .buffer_new = loopback_buffer_new,
    .buffer_free = cpu_buffer_free,
    .copy = lm_cpu_copy,
    .sync = cpu_sync,
    .cached_bytes = cpu_cached_bytes,
    .trim = cpu_trim,
    .mem_info = loopback_mem_info,
    .kernel = { CPU_KERNELS },
};

static lm_backend loopback_backend = { .ops = &lm_loopback__ops, .is_host = false };

lm_backend *lm_backend_loopback(void)
{
    return &loopback_backend;
}

/* ---- threads and scratch ---- */

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_init(void)
{
    /* Our pool splits every product into blocks; OpenBLAS runs each block on the calling
     * thread, so its own workers would only compete with the pool for the same cores. */
    openblas_set_num_threads(1);
}

lm_pool *lm_cpu_pool(void)
{
    pthread_once(&blas_once, blas_init);
    return lm_pool_default();
}

/* lm_pool_run takes one job at a time, so ops called from several threads queue here.
 * A call from inside a pool task (never done by the kernels, but cheap to make safe)
 * runs inline on the caller's thread id, so per-thread scratch slots stay private. */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int pool_depth, pool_tid;

typedef struct {
    lm_pool_fn fn;
    void *user;
} pool_wrap;

static void wrapped_task(void *user, size_t index, int tid)
{
    const pool_wrap *w = user;
    pool_depth++;
    pool_tid = tid;
    w->fn(w->user, index, tid);
    pool_depth--;
}

void lm_cpu_parallel(size_t n, lm_pool_fn fn, void *user)
{
    if (n <= 1 || pool_depth > 0) {
        for (size_t i = 0; i < n; i++)
            fn(user, i, pool_depth > 0 ? pool_tid : 0);
        return;
    }
    lm_pool *pool = lm_cpu_pool();
    pool_wrap w = { fn, user };
    pthread_mutex_lock(&pool_mu);
    lm_pool_run(pool, n, wrapped_task, &w);
    pthread_mutex_unlock(&pool_mu);
}

void lm_cpu_scratch_init(lm_cpu_scratch *s, size_t floats)
{
    memset(s->buf, 0, sizeof(s->buf));
    s->floats = floats ? floats : 1;
    atomic_init(&s->failed, false);
}

float *lm_cpu_scratch_get(lm_cpu_scratch *s, int tid)
{
    if (tid < 0 || tid >= LM_CPU_MAX_THREADS) {
        atomic_store(&s->failed, true);
        return NULL;
    }
    if (!s->buf[tid]) {
        s->buf[tid] = lm_malloc(s->floats * sizeof(float));
        if (!s->buf[tid])
            atomic_store(&s->failed, true);
    }
    return s->buf[tid];
}

void lm_cpu_scratch_free(lm_cpu_scratch *s)
{
    for (int i = 0; i < LM_CPU_MAX_THREADS; i++) {
        lm_free(s->buf[i]);
        s->buf[i] = NULL;
    }
}

void lm_cpu_weight_rows(float *dst, const lm_tensor *w, int64_t r0, int64_t r1, int64_t cols)
{
    size_t es = lm_dtype_size(w->dtype);
    const char *src = (const char *)lm_tensor__addr(w) + (size_t)(r0 * cols) * es;
    lm_dtype_to_f32(dst, src, w->dtype, (size_t)((r1 - r0) * cols));
}

lm_status lm_cpu_oom(lm_error *err, const char *op)
{
    return lm_errorf(err, LM_ENOMEM, "out_of_memory", "%s: cannot allocate scratch memory", op);
}
