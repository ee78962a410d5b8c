/* core/tensor/cpu/norm.c — group norm, layer norm, RMS norm and softmax.
 * Each group or row is one unit of work; units are batched into pool tasks of roughly
 * 64k elements. Statistics are accumulated in double, two passes (mean, then centred
 * variance), so long rows and large offsets keep their precision; the variance is the
 * biased one, like torch. */
#include "core/tensor/cpu/cpu.h"
#include "core/tensor/cpu/vmath.h"

#include <math.h>
#include <string.h>

typedef struct {
    const float *x, *gamma, *beta;
    float *out;
    int64_t units, len, per_task; /* a unit is a row (or a group) of len elements */
    int64_t groups, cg, spatial;  /* group norm: groups, channels per group, elements each */
    float eps;
    lm_op op;
} norm_job;

static void moments(const float *x, int64_t n, double *mean, double *var)
{
    double s = 0.0, ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i];
    *mean = n ? s / (double)n : 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - *mean;
        ss += d * d;
    }
    *var = n ? ss / (double)n : 0.0;
}

static void group_unit(const norm_job *j, int64_t u)
{
    const float *x = j->x + u * j->len;
    float *y = j->out + u * j->len;
    double mean, var;
    moments(x, j->len, &mean, &var);
    float m = (float)mean, r = (float)(1.0 / sqrt(var + (double)j->eps));
    int64_t c0 = (u % j->groups) * j->cg;
    for (int64_t k = 0; k < j->cg; k++) {
        float g = j->gamma ? j->gamma[c0 + k] * r : r;
        float b = j->beta ? j->beta[c0 + k] : 0.0f;
        const float *xs = x + k * j->spatial;
        float *ys = y + k * j->spatial;
        for (int64_t s = 0; s < j->spatial; s++)
            ys[s] = (xs[s] - m) * g + b;
    }
}

static void layer_unit(const norm_job *j, int64_t u)
{
    const float *x = j->x + u * j->len;
    float *y = j->out + u * j->len;
    double mean, var;
    moments(x, j->len, &mean, &var);
    float m = (float)mean, r = (float)(1.0 / sqrt(var + (double)j->eps));
    for (int64_t i = 0; i < j->len; i++) {
        float v = (x[i] - m) * r;
        if (j->gamma)
            v *= j->gamma[i];
        y[i] = j->beta ? v + j->beta[i] : v;
    }
}

static void rms_unit(const norm_job *j, int64_t u)
{
    const float *x = j->x + u * j->len;
    float *y = j->out + u * j->len;
    double ss = 0.0;
    for (int64_t i = 0; i < j->len; i++)
        ss += (double)x[i] * (double)x[i];
    float r = (float)(1.0 / sqrt(ss / (double)LM_MAX(j->len, 1) + (double)j->eps));
    for (int64_t i = 0; i < j->len; i++)
        y[i] = j->gamma ? x[i] * r * j->gamma[i] : x[i] * r;
}

static void softmax_unit(const norm_job *j, int64_t u)
{
    const float *x = j->x + u * j->len;
    float *y = j->out + u * j->len;
    float mx = lm_vmax(x, j->len);
    memcpy(y, x, (size_t)j->len * sizeof(float));
    float inv = 1.0f / lm_vexp_sub_sum(y, j->len, mx);
    for (int64_t i = 0; i < j->len; i++)
        y[i] *= inv;
}

static void norm_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    const norm_job *j = user;
    int64_t u0 = (int64_t)task * j->per_task, u1 = LM_MIN(j->units, u0 + j->per_task);
    for (int64_t u = u0; u < u1; u++) {
        if (j->op == LM_OP_GROUP_NORM)
            group_unit(j, u);
        else if (j->op == LM_OP_LAYER_NORM)
            layer_unit(j, u);
        else if (j->op == LM_OP_RMS_NORM)
            rms_unit(j, u);
        else
            softmax_unit(j, u);
    }
}

static lm_status norm_run(norm_job *j)
{
    j->per_task = LM_MAX(1, 65536 / LM_MAX(j->len, 1));
    size_t tasks = (size_t)((j->units + j->per_task - 1) / j->per_task);
    lm_cpu_parallel(tasks, norm_task, j);
    return LM_OK;
}

static norm_job row_job(const lm_op_call *c)
{
    const lm_tensor *x = c->in[0];
    norm_job j = {
        .x = lm_cpu_f32(x),
        .out = lm_cpu_f32(c->out),
        .op = c->op,
        .eps = c->p.norm.eps,
        .gamma = c->n_in > 1 && c->in[1] ? lm_cpu_f32(c->in[1]) : NULL,
        .beta = c->n_in > 2 && c->in[2] ? lm_cpu_f32(c->in[2]) : NULL,
    };
    j.len = x->shape[x->ndim - 1];
    j.units = j.len ? lm_tensor_numel(x) / j.len : 0;
    return j;
}

lm_status lm_cpu_group_norm(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    norm_job j = row_job(c);
    const lm_tensor *x = c->in[0];
    j.groups = c->p.norm.groups;
    j.cg = x->shape[1] / j.groups;
    j.spatial = lm_tensor_numel(x) / (x->shape[0] * x->shape[1]);
    j.len = j.cg * j.spatial;
    j.units = x->shape[0] * j.groups;
    return norm_run(&j);
}

lm_status lm_cpu_layer_norm(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    norm_job j = row_job(c);
    return norm_run(&j);
}

lm_status lm_cpu_rms_norm(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    norm_job j = row_job(c);
    return norm_run(&j);
}

lm_status lm_cpu_softmax(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    norm_job j = row_job(c);
    return norm_run(&j);
}
