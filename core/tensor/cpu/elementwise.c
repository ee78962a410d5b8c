/* core/tensor/cpu/elementwise.c — fill, activations, scalar affine/clamp, and the
 * broadcasting arithmetic (add, sub, mul, modulate, gated residual).
 * Broadcast inputs arrive as stride-0 views of the result's shape (op.h): the kernel
 * walks the result row by row (last dim), finds each input's row by its strides, and runs
 * a plain inner loop whose input strides are 1 or 0 in practice. */
#include "core/tensor/cpu/cpu.h"
#include "core/tensor/cpu/vmath.h"

#include <math.h>

#define CHUNK 16384 /* elements per pool task for flat maps */

typedef struct {
    const lm_op_call *c;
    const float *x;
    float *y;
    int64_t n;
} map_job;

static void gelu_erf(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

static void unary_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const map_job *j = user;
    int64_t i0 = (int64_t)task * CHUNK, n = LM_MIN(CHUNK, j->n - i0);
    const float *x = j->x + i0;
    float *y = j->y + i0;
    float a = j->c->p.scalar.a, b = j->c->p.scalar.b;
    switch (j->c->op) {
    case LM_OP_GELU:
        gelu_erf(y, x, n);
        break;
    case LM_OP_GELU_TANH:
        lm_vgelu_tanh(y, x, n);
        break;
    case LM_OP_QUICK_GELU:
        lm_vsigmoid_mul(y, x, n, 1.702f);
        break;
    case LM_OP_SILU:
        lm_vsigmoid_mul(y, x, n, 1.0f);
        break;
    case LM_OP_EXP:
        lm_vexp(y, x, n);
        break;
    case LM_OP_SCALE:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] * a + b;
        break;
    case LM_OP_CLAMP:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] < a ? a : x[i] > b ? b : x[i];
        break;
    default:
        break;
    }
}

lm_status lm_cpu_unary(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    map_job j = {
        .c = c, .x = lm_cpu_f32(c->in[0]), .y = lm_cpu_f32(c->out), .n = lm_tensor_numel(c->out)
    };
    lm_cpu_parallel((size_t)((j.n + CHUNK - 1) / CHUNK), unary_task, &j);
    return LM_OK;
}

static void fill_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const map_job *j = user;
    int64_t i0 = (int64_t)task * CHUNK;
    lm_cpu_fill_f32(j->y + i0, LM_MIN(CHUNK, j->n - i0), j->c->p.fill.value);
}

lm_status lm_cpu_fill(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    map_job j = { .c = c, .y = lm_cpu_f32(c->out), .n = lm_tensor_numel(c->out) };
    lm_cpu_parallel((size_t)((j.n + CHUNK - 1) / CHUNK), fill_task, &j);
    return LM_OK;
}

/* ---- broadcasting ---- */

typedef struct {
    const lm_op_call *c;
    int n_in;
    int64_t rows, len, rows_per_task;
} bcast_job;

static void row_ptrs(const bcast_job *j, int64_t r, const float **in, int64_t *step)
{
    const lm_tensor *out = j->c->out;
    for (int k = 0; k < j->n_in; k++) {
        const lm_tensor *t = j->c->in[k];
        int64_t off = 0, rest = r;
        for (int d = out->ndim - 2; d >= 0; d--) {
            off += (rest % out->shape[d]) * t->stride[d];
            rest /= out->shape[d];
        }
        in[k] = lm_cpu_f32(t) + off;
        step[k] = out->ndim ? t->stride[out->ndim - 1] : 0;
    }
}

static void binary_row(lm_op op, float *y, const float *a, int64_t sa, const float *b, int64_t sb,
                       int64_t n)
{
    if (sa == 1 && sb == 1) {
        if (op == LM_OP_ADD)
            for (int64_t i = 0; i < n; i++)
                y[i] = a[i] + b[i];
        else if (op == LM_OP_SUB)
            for (int64_t i = 0; i < n; i++)
                y[i] = a[i] - b[i];
        else
            for (int64_t i = 0; i < n; i++)
                y[i] = a[i] * b[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float u = a[i * sa], v = b[i * sb];
        y[i] = op == LM_OP_ADD ? u + v : op == LM_OP_SUB ? u - v : u * v;
    }
}

static void ternary_row(lm_op op, float *y, const float *const *in, const int64_t *s, int64_t n)
{
    const float *x = in[0], *p = in[1], *q = in[2];
    if (op == LM_OP_MODULATE) /* x * (1 + scale) + shift, p = shift, q = scale */
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i * s[0]] * (1.0f + q[i * s[2]]) + p[i * s[1]];
    else /* x + gate * y, p = gate, q = y */
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i * s[0]] + p[i * s[1]] * q[i * s[2]];
}

static void bcast_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const bcast_job *j = user;
    int64_t r0 = (int64_t)task * j->rows_per_task, r1 = LM_MIN(j->rows, r0 + j->rows_per_task);
    float *out = lm_cpu_f32(j->c->out);
    for (int64_t r = r0; r < r1; r++) {
        const float *in[3];
        int64_t step[3];
        row_ptrs(j, r, in, step);
        if (j->n_in == 2)
            binary_row(j->c->op, out + r * j->len, in[0], step[0], in[1], step[1], j->len);
        else
            ternary_row(j->c->op, out + r * j->len, in, step, j->len);
    }
}

static lm_status bcast_run(const lm_op_call *c, int n_in)
{
    const lm_tensor *out = c->out;
    bcast_job j = { .c = c, .n_in = n_in };
    j.len = out->ndim ? out->shape[out->ndim - 1] : 1;
    j.rows = lm_tensor_numel(out) / j.len;
    j.rows_per_task = LM_MAX(1, CHUNK / j.len);
    lm_cpu_parallel((size_t)((j.rows + j.rows_per_task - 1) / j.rows_per_task), bcast_task, &j);
    return LM_OK;
}

lm_status lm_cpu_binary(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    return bcast_run(c, 2);
}

lm_status lm_cpu_ternary(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    return bcast_run(c, 3);
}
