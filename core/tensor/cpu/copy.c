/* core/tensor/cpu/copy.c — strided copy with dtype cast between host tensors.
 * Dimensions that are contiguous in both tensors are merged first, so most copies become
 * a few long rows; rows are spread over the pool. Contiguous rows use the row converters
 * of dtype.h (F16C when present); strided rows go element by element. */
#include "core/tensor/cpu/cpu.h"
#include "core/tensor/dtype.h"

#include <string.h>

typedef struct {
    int nd; /* outer dims; the inner row is separate */
    int64_t shape[LM_MAX_DIMS], dstride[LM_MAX_DIMS], sstride[LM_MAX_DIMS];
    int64_t len, dinner, sinner; /* the inner row: length, strides */
    char *dst;
    const char *src;
    lm_dtype dt, st;
    size_t des, ses;
    int64_t rows, rows_per_task;
} copy_plan;

/* Drops size-1 dims and merges neighbours that are contiguous in both tensors. */
static void plan_dims(copy_plan *p, const lm_tensor *dst, const lm_tensor *src)
{
    int64_t sh[LM_MAX_DIMS], ds[LM_MAX_DIMS], ss[LM_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < dst->ndim; d++) {
        if (dst->shape[d] == 1)
            continue;
        if (n > 0 && ds[n - 1] == dst->stride[d] * dst->shape[d] &&
            ss[n - 1] == src->stride[d] * dst->shape[d]) {
            sh[n - 1] *= dst->shape[d];
            ds[n - 1] = dst->stride[d];
            ss[n - 1] = src->stride[d];
            continue;
        }
        sh[n] = dst->shape[d];
        ds[n] = dst->stride[d];
        ss[n] = src->stride[d];
        n++;
    }
    p->len = n ? sh[n - 1] : 1;
    p->dinner = n ? ds[n - 1] : 1;
    p->sinner = n ? ss[n - 1] : 1;
    p->nd = n ? n - 1 : 0;
    p->rows = 1;
    for (int d = 0; d < p->nd; d++) {
        p->shape[d] = sh[d];
        p->dstride[d] = ds[d];
        p->sstride[d] = ss[d];
        p->rows *= sh[d];
    }
}

static void convert_row(const copy_plan *p, char *dst, const char *src)
{
    size_t n = (size_t)p->len;
    if (p->dt == p->st) {
        memcpy(dst, src, n * p->des);
    } else if (p->dt == LM_DTYPE_F32) {
        lm_dtype_to_f32((float *)(void *)dst, src, p->st, n);
    } else if (p->st == LM_DTYPE_F32 && lm_dtype_is_float(p->dt)) {
        lm_dtype_from_f32(dst, (const float *)(const void *)src, p->dt, n);
    } else {
        for (size_t i = 0; i < n; i++)
            lm_dtype_store(dst + i * p->des, p->dt, lm_dtype_load(src + i * p->ses, p->st));
    }
}

static void strided_row(const copy_plan *p, char *dst, const char *src)
{
    int64_t dstep = p->dinner * (int64_t)p->des, sstep = p->sinner * (int64_t)p->ses;
    if (p->dt == LM_DTYPE_F32 && p->st == LM_DTYPE_F32) {
        for (int64_t i = 0; i < p->len; i++)
            memcpy(dst + i * dstep, src + i * sstep, 4);
        return;
    }
    for (int64_t i = 0; i < p->len; i++)
        lm_dtype_store(dst + i * dstep, p->dt, lm_dtype_load(src + i * sstep, p->st));
}

static void copy_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const copy_plan *p = user;
    int64_t r0 = (int64_t)task * p->rows_per_task;
    int64_t r1 = LM_MIN(p->rows, r0 + p->rows_per_task);
    bool contiguous = p->dinner == 1 && p->sinner == 1;
    for (int64_t r = r0; r < r1; r++) {
        int64_t doff = 0, soff = 0, rest = r;
        for (int d = p->nd - 1; d >= 0; d--) {
            int64_t i = rest % p->shape[d];
            rest /= p->shape[d];
            doff += i * p->dstride[d];
            soff += i * p->sstride[d];
        }
        char *dst = p->dst + doff * (int64_t)p->des;
        const char *src = p->src + soff * (int64_t)p->ses;
        if (contiguous)
            convert_row(p, dst, src);
        else
            strided_row(p, dst, src);
    }
}

lm_status lm_cpu_copy(lm_backend *be, lm_tensor *dst, const lm_tensor *src, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    copy_plan p;
    plan_dims(&p, dst, src);
    p.dst = lm_tensor__addr(dst);
    p.src = lm_tensor__addr(src);
    p.dt = dst->dtype;
    p.st = src->dtype;
    p.des = lm_dtype_size(p.dt);
    p.ses = lm_dtype_size(p.st);
    /* About 32k elements per task: enough to amortise the pool hand-off. */
    int64_t per = LM_MAX(1, 32768 / LM_MAX(p.len, 1));
    p.rows_per_task = per;
    size_t tasks = (size_t)((p.rows + per - 1) / per);
    if (tasks == 1)
        copy_task(&p, 0, 0);
    else
        lm_cpu_parallel(tasks, copy_task, &p);
    return LM_OK;
}
