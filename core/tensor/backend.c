/* core/tensor/backend.c — what every backend shares: memory accounting and selection by name.
 *
 * Accounting: each backend carries atomic counters (backend.h). Its buffer_new/buffer_free
 * report the bytes they really hold (after rounding) through lm_backend__mem_alloc/_release,
 * so `live` is what the backend's tensors keep from the allocator, and `cached` (the free-
 * buffer cache, asked of the backend) is disjoint from it: a freed buffer moves from one to
 * the other. Wrapped memory (mmap'd checkpoints) is not the backend's to give back and is
 * counted apart as `mapped`. The peak is raised with a compare-and-swap loop, so concurrent
 * allocations never lose a maximum; a reset racing an allocation may miss that one.
 *
 * Selection: "cpu", "cuda", "cuda:N", "auto". Auto tries CUDA device 0 and falls back to
 * the CPU, logging why at INFO, so a machine without a GPU just works. */
#include "core/tensor/backend.h"

#include "core/base/log.h"
#include "core/tensor/cuda/cuda.h"

#include <stdlib.h>
#include <string.h>

void lm_backend__mem_alloc(lm_backend *be, size_t bytes)
{
    size_t live = atomic_fetch_add(&be->mem.live, bytes) + bytes;
    size_t peak = atomic_load(&be->mem.peak);
    while (live > peak && !atomic_compare_exchange_weak(&be->mem.peak, &peak, live))
        ; /* peak now holds the newer value: compare again */
}

void lm_backend__mem_release(lm_backend *be, size_t bytes)
{
    atomic_fetch_sub(&be->mem.live, bytes);
}

void lm_backend__mem_map(lm_backend *be, size_t bytes)
{
    atomic_fetch_add(&be->mem.mapped, bytes);
}

void lm_backend__mem_unmap(lm_backend *be, size_t bytes)
{
    atomic_fetch_sub(&be->mem.mapped, bytes);
}

void lm_backend_mem_stats(lm_backend *be, lm_backend_mem *out)
{
    out->live = atomic_load(&be->mem.live);
    out->peak = atomic_load(&be->mem.peak);
    out->mapped = atomic_load(&be->mem.mapped);
    out->cached = lm_backend_cached_bytes(be);
}

void lm_backend_mem_reset_peak(lm_backend *be)
{
    atomic_store(&be->mem.peak, atomic_load(&be->mem.live));
}

lm_status lm_backend_mem_info(lm_backend *be, size_t *free_bytes, size_t *total_bytes,
                              lm_error *err)
{
    *free_bytes = *total_bytes = 0;
    if (!be->ops->mem_info)
        return lm_errorf(err, LM_EUNSUPPORTED, "unsupported",
                         "backend %s cannot tell how much memory it has", be->ops->name);
    return be->ops->mem_info(be, free_bytes, total_bytes, err);
}

/* ---- selection ---- */

/* "cuda" is device 0; "cuda:N" needs N to be all digits. -1 when the name is not CUDA's. */
static int cuda_index(const char *device)
{
    if (strcmp(device, "cuda") == 0)
        return 0;
    if (strncmp(device, "cuda:", 5) != 0 || device[5] == '\0' || strlen(device) > 8)
        return -1;
    for (const char *p = device + 5; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    return atoi(device + 5);
}

static lm_status select_auto(lm_backend **out)
{
    lm_error why;
    lm_error_clear(&why);
    if (lm_cuda_backend_new(out, 0, &why) == LM_OK) {
        LM_LOG_INFO("tensor", "device auto: computing on CUDA device 0");
        return LM_OK;
    }
    LM_LOG_INFO("tensor", "device auto: computing on the CPU (CUDA: %s)", why.msg);
    *out = lm_backend_cpu();
    return LM_OK;
}

lm_status lm_backend_select(lm_backend **out, const char *device, lm_error *err)
{
    *out = NULL;
    if (!device || !device[0] || strcmp(device, "auto") == 0)
        return select_auto(out);
    if (strcmp(device, "cpu") == 0) {
        *out = lm_backend_cpu();
        return LM_OK;
    }
    if (strcmp(device, "loopback") == 0) {
        *out = lm_backend_loopback();
        return LM_OK;
    }
    int index = cuda_index(device);
    if (index >= 0)
        return lm_cuda_backend_new(out, index, err);
    lm_errorf(err, LM_EINVAL, "unknown_device", "unknown device \"%.64s\"", device);
    lm_error_hint(err, "choose cpu, cuda, cuda:N (N: a GPU index as nvidia-smi lists it) or auto");
    return LM_EINVAL;
}
