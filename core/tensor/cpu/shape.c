/* core/tensor/cpu/shape.c — layout ops: concat, pad, nearest upsample, SD3 patchify and
 * unpatchify, embedding gather, timestep features, T5 buckets.
 * These move memory rather than compute; each splits its outermost loop over the pool. */
#include "core/tensor/cpu/cpu.h"
#include "core/tensor/dtype.h"

#include <math.h>
#include <string.h>

typedef struct {
    const lm_op_call *c;
    int64_t units, per_task;
    int64_t a, b, d, e; /* op-specific sizes, named where they are set */
} layout_job;

static void run_units(layout_job *j, lm_pool_fn fn, int64_t unit_elems)
{
    j->per_task = LM_MAX(1, 32768 / LM_MAX(unit_elems, 1));
    lm_cpu_parallel((size_t)((j->units + j->per_task - 1) / j->per_task), fn, j);
}

#define UNIT_RANGE(j, task, u0, u1)                                                                \
    int64_t u0 = (int64_t)(task) * (j)->per_task, u1 = LM_MIN((j)->units, u0 + (j)->per_task)

/* ---- concat: units are the outer index; a = inner size (elements after dim) ---- */

static void concat_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const layout_job *j = user;
    const lm_op_call *c = j->c;
    int dim = c->p.concat.dim;
    int64_t out_row = c->out->shape[dim] * j->a;
    UNIT_RANGE(j, task, u0, u1);
    for (int64_t o = u0; o < u1; o++) {
        float *dst = lm_cpu_f32(c->out) + o * out_row;
        for (int i = 0; i < c->n_in; i++) {
            int64_t n = c->in[i]->shape[dim] * j->a;
            memcpy(dst, lm_cpu_f32(c->in[i]) + o * n, (size_t)n * sizeof(float));
            dst += n;
        }
    }
}

lm_status lm_cpu_concat(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    layout_job j = { .c = c, .units = 1, .a = 1 };
    int dim = c->p.concat.dim;
    for (int d = 0; d < dim; d++)
        j.units *= c->out->shape[d];
    for (int d = dim + 1; d < c->out->ndim; d++)
        j.a *= c->out->shape[d];
    run_units(&j, concat_task, c->out->shape[dim] * j.a);
    return LM_OK;
}

/* ---- pad / upsample: units are planes; a, b = input H, W; d, e = output H, W ---- */

static void pad_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const layout_job *j = user;
    const lm_op_call *c = j->c;
    int top = c->p.pad.top, left = c->p.pad.left;
    float v = c->p.pad.value;
    UNIT_RANGE(j, task, u0, u1);
    for (int64_t u = u0; u < u1; u++) {
        const float *x = lm_cpu_f32(c->in[0]) + u * j->a * j->b;
        float *y = lm_cpu_f32(c->out) + u * j->d * j->e;
        lm_cpu_fill_f32(y, j->d * j->e, v);
        for (int64_t r = 0; r < j->a; r++)
            memcpy(y + (r + top) * j->e + left, x + r * j->b, (size_t)j->b * sizeof(float));
    }
}

static void upsample_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const layout_job *j = user;
    UNIT_RANGE(j, task, u0, u1);
    for (int64_t u = u0; u < u1; u++) {
        const float *x = lm_cpu_f32(j->c->in[0]) + u * j->a * j->b;
        float *y = lm_cpu_f32(j->c->out) + u * j->d * j->e;
        for (int64_t r = 0; r < j->a; r++) {
            float *row = y + 2 * r * j->e;
            for (int64_t q = 0; q < j->b; q++)
                row[2 * q] = row[2 * q + 1] = x[r * j->b + q];
            memcpy(row + j->e, row, (size_t)j->e * sizeof(float));
        }
    }
}

static layout_job plane_job(const lm_op_call *c)
{
    const lm_tensor *x = c->in[0], *y = c->out;
    layout_job j = { .c = c,
                     .a = x->shape[x->ndim - 2],
                     .b = x->shape[x->ndim - 1],
                     .d = y->shape[y->ndim - 2],
                     .e = y->shape[y->ndim - 1] };
    j.units = lm_tensor_numel(y) / (j.d * j.e);
    return j;
}

lm_status lm_cpu_pad(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    layout_job j = plane_job(c);
    run_units(&j, pad_task, j.d * j.e);
    return LM_OK;
}

lm_status lm_cpu_upsample(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    layout_job j = plane_job(c);
    run_units(&j, upsample_task, j.d * j.e);
    return LM_OK;
}

/* ---- patches: units are (batch, patch row); a = C, b = p, d = h, e = w (in patches) ---- */

static void patchify_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const layout_job *j = user;
    int64_t C = j->a, p = j->b, h = j->d, w = j->e, H = h * p, W = w * p;
    bool inverse = j->c->op == LM_OP_UNPATCHIFY;
    float *img = lm_cpu_f32(inverse ? j->c->out : j->c->in[0]);
    float *tok = lm_cpu_f32(inverse ? j->c->in[0] : j->c->out);
    UNIT_RANGE(j, task, u0, u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t b = u / h, hi = u % h;
        for (int64_t wi = 0; wi < w; wi++) {
            float *t = tok + ((b * h + hi) * w + wi) * p * p * C;
            for (int64_t pi = 0; pi < p; pi++)
                for (int64_t qi = 0; qi < p; qi++)
                    for (int64_t c = 0; c < C; c++) {
                        float *px = img + ((b * C + c) * H + hi * p + pi) * W + wi * p + qi;
                        float *f = t + (pi * p + qi) * C + c;
                        if (inverse)
                            *px = *f;
                        else
                            *f = *px;
                    }
        }
    }
}

lm_status lm_cpu_patchify(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    const lm_tensor *x = c->in[0];
    int64_t p = c->p.patch.p;
    layout_job j = { .c = c, .a = x->shape[1], .b = p, .d = x->shape[2] / p, .e = x->shape[3] / p };
    j.units = x->shape[0] * j.d;
    run_units(&j, patchify_task, j.e * p * p * j.a);
    return LM_OK;
}

lm_status lm_cpu_unpatchify(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    const lm_tensor *y = c->out;
    int64_t p = c->p.patch.p;
    layout_job j = { .c = c, .a = y->shape[1], .b = p, .d = y->shape[2] / p, .e = y->shape[3] / p };
    j.units = y->shape[0] * j.d;
    run_units(&j, patchify_task, j.e * p * p * j.a);
    return LM_OK;
}

/* ---- embedding: units are ids; a = C ---- */

static int64_t id_at(const lm_tensor *ids, int64_t i)
{
    if (ids->dtype == LM_DTYPE_I32)
        return ((const int32_t *)lm_tensor__addr(ids))[i];
    return ((const int64_t *)lm_tensor__addr(ids))[i];
}

static void embedding_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const layout_job *j = user;
    const lm_tensor *table = j->c->in[0];
    UNIT_RANGE(j, task, u0, u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t id = id_at(j->c->in[1], u);
        lm_cpu_weight_rows(lm_cpu_f32(j->c->out) + u * j->a, table, id, id + 1, j->a);
    }
}

lm_status lm_cpu_embedding(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    const lm_tensor *table = c->in[0], *ids = c->in[1];
    layout_job j = { .c = c, .units = lm_tensor_numel(ids), .a = table->shape[1] };
    for (int64_t i = 0; i < j.units; i++) {
        int64_t id = id_at(ids, i);
        if (id < 0 || id >= table->shape[0])
            return lm_errorf(err, LM_ERANGE, "bad_index",
                             "lm_embedding: id %lld at position %lld is outside the table of "
                             "%lld rows; check the tokenizer and the model",
                             (long long)id, (long long)i, (long long)table->shape[0]);
    }
    run_units(&j, embedding_task, j.a);
    return LM_OK;
}

/* ---- timestep features and T5 buckets: small, single task ---- */

lm_status lm_cpu_timestep_embedding(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    int64_t dim = c->out->shape[1], half = dim / 2, n = c->out->shape[0];
    const float *t = lm_cpu_f32(c->in[0]);
    float *y = lm_cpu_f32(c->out);
    /* The reference's float32 sequence: (-ln P) * i, / half, exp, then t * f. */
    float neg_log = (float)-log((double)c->p.temb.max_period);
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < half; i++) {
            float f = expf(neg_log * (float)i / (float)half);
            float arg = t[b] * f;
            y[b * dim + i] = cosf(arg);
            y[b * dim + half + i] = sinf(arg);
        }
    return LM_OK;
}

lm_status lm_cpu_t5_buckets(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    int64_t nq = c->out->shape[0], nk = c->out->shape[1];
    int64_t *y = lm_tensor__addr(c->out);
    for (int64_t i = 0; i < nq; i++)
        for (int64_t k = 0; k < nk; k++)
            y[i * nk + k] = lm_t5_relative_bucket(k - i, c->p.t5.bidirectional, c->p.t5.num_buckets,
                                                  c->p.t5.max_distance);
    return LM_OK;
}
