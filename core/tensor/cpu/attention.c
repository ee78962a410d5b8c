/* core/tensor/cpu/attention.c — scaled dot-product attention, many heads.
 *
 * One pool task per (batch, head, block of queries): S = scale·Q_blk·Kᵀ (one sgemm
 * reading the head's columns in place through the row stride), + bias, causal mask,
 * row softmax, then O_blk = P·V (one sgemm writing the head's columns of the output).
 * Scratch is one block x Nk per thread: O(N) memory for any sequence length (at most
 * 8 MiB per thread up to 8k keys), and an exact two-pass softmax. Blocks are as tall as
 * that allows (up to 256 rows: taller blocks amortise the packing of K and V inside
 * sgemm) while leaving a few tasks per thread. With a causal mask only the keys a block
 * can see are used. */
#include "core/tensor/cpu/cpu.h"
#include "core/tensor/cpu/vmath.h"

#include <cblas.h>
#include <math.h>

#define MAX_QBLOCK 256

typedef struct {
    const lm_tensor *q, *k, *v, *bias;
    float *out;
    int64_t batch, nq, nk, heads, d, qblock, q_blocks;
    float scale;
    bool causal;
    lm_cpu_scratch scratch;
} attn_job;

static void add_bias(const attn_job *j, float *s, int64_t bi, int64_t h, int64_t i0, int64_t rows,
                     int64_t cols)
{
    const lm_tensor *b = j->bias;
    int64_t bb = b->shape[0] == 1 ? 0 : bi, hh = b->shape[1] == 1 ? 0 : h;
    const float *src = lm_cpu_f32(b) + ((bb * b->shape[1] + hh) * j->nq + i0) * j->nk;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < cols; c++)
            s[i * j->nk + c] += src[i * j->nk + c];
}

/* Unnormalised softmax of each row over its visible keys (masked keys get 0); inv[i] is
 * 1 / the row's sum, applied to the output row after P·V (D values instead of Nk). */
static void softmax_rows(const attn_job *j, float *s, float *inv, int64_t i0, int64_t rows,
                         int64_t cols)
{
    for (int64_t i = 0; i < rows; i++) {
        float *row = s + i * j->nk;
        int64_t visible = j->causal ? LM_MIN(cols, i0 + i + 1) : cols;
        float mx = lm_vmax(row, visible);
        inv[i] = 1.0f / lm_vexp_sub_sum(row, visible, mx);
        for (int64_t c = visible; c < cols; c++)
            row[c] = 0.0f;
    }
}

static void scale_rows(float *o, int64_t ld, const float *inv, int64_t rows, int64_t d)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t c = 0; c < d; c++)
            o[i * ld + c] *= inv[i];
}

static void attn_task(void *user, size_t task, int tid)
{
    attn_job *j = user;
    float *s = lm_cpu_scratch_get(&j->scratch, tid);
    if (!s)
        return;
    int64_t qb = (int64_t)task % j->q_blocks, bh = (int64_t)task / j->q_blocks;
    int64_t h = bh % j->heads, bi = bh / j->heads;
    int64_t i0 = qb * j->qblock, rows = LM_MIN(j->qblock, j->nq - i0);
    int64_t cols = j->causal ? LM_MIN(j->nk, i0 + rows) : j->nk;
    const float *q = lm_cpu_f32(j->q) + bi * j->q->stride[0] + i0 * j->q->stride[1] + h * j->d;
    const float *k = lm_cpu_f32(j->k) + bi * j->k->stride[0] + h * j->d;
    const float *v = lm_cpu_f32(j->v) + bi * j->v->stride[0] + h * j->d;
    int64_t hd = j->heads * j->d;
    float *o = j->out + (bi * j->nq + i0) * hd + h * j->d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)cols, (int)j->d, j->scale,
                q, (int)j->q->stride[1], k, (int)j->k->stride[1], 0.0f, s, (int)j->nk);
    if (j->bias)
        add_bias(j, s, bi, h, i0, rows, cols);
    float inv[MAX_QBLOCK];
    softmax_rows(j, s, inv, i0, rows, cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)j->d, (int)cols, 1.0f, s,
                (int)j->nk, v, (int)j->v->stride[1], 0.0f, o, (int)hd);
    scale_rows(o, hd, inv, rows, j->d);
}

static void attn_blocks(attn_job *j)
{
    int64_t threads = lm_pool_threads(lm_cpu_pool());
    int64_t qb = LM_MAX(16, LM_MIN(MAX_QBLOCK, ((int64_t)2 << 20) / j->nk));
    while (qb > 16 && j->batch * j->heads * ((j->nq + qb - 1) / qb) < threads * 3)
        qb /= 2;
    j->qblock = LM_MIN(qb, LM_MAX(j->nq, 1));
    j->q_blocks = (j->nq + j->qblock - 1) / j->qblock;
}

lm_status lm_cpu_attention(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    attn_job j = {
        .q = c->in[0],
        .k = c->in[1],
        .v = c->in[2],
        .bias = c->in[3],
        .out = lm_cpu_f32(c->out),
        .batch = c->in[0]->shape[0],
        .nq = c->in[0]->shape[1],
        .nk = c->in[1]->shape[1],
        .heads = c->p.attention.heads,
        .scale = c->p.attention.scale,
        .causal = c->p.attention.causal,
    };
    j.d = c->in[0]->shape[2] / j.heads;
    if (j.nk == 0 || j.d == 0) { /* no keys: torch gives NaN rows; we give zeros */
        lm_cpu_fill_f32(j.out, lm_tensor_numel(c->out), 0.0f);
        return LM_OK;
    }
    attn_blocks(&j);
    lm_cpu_scratch_init(&j.scratch, (size_t)(j.qblock * j.nk));
    lm_cpu_parallel((size_t)(j.batch * j.heads * j.q_blocks), attn_task, &j);
    bool failed = atomic_load(&j.scratch.failed);
    lm_cpu_scratch_free(&j.scratch);
    return failed ? lm_cpu_oom(err, "lm_attention") : LM_OK;
}
