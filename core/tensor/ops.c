/* core/tensor/ops.c — the op front-end: argument checks, output allocation, dispatch to the
 * backend's kernel table; and the matrix-product, attention, convolution and norm ops.
 * The simpler ops (elementwise, broadcasting, layout) are in ops_shape.c. */
#include "core/tensor/dtype.h"
#include "core/tensor/ops_impl.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- machinery ---- */

lm_status lm_opx_error(lm_error *err, lm_op op, const char *fmt, ...)
{
    char msg[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return lm_errorf(err, LM_EINVAL, "bad_shape", "lm_%s: %s", lm_op_name(op), msg);
}

void lm_opx_desc(const lm_tensor *t, char *buf, size_t size)
{
    if (t)
        lm_tensor_describe(t, buf, size);
    else
        snprintf(buf, size, "(none)");
}

int lm_opx_dim(int dim, int ndim)
{
    if (dim < 0)
        dim += ndim;
    return dim >= 0 && dim < ndim ? dim : -1;
}

lm_status lm_opx_abort(lm_opx *x, lm_status st)
{
    for (int i = 0; i < LM_OP_MAX_IN; i++) {
        lm_tensor_free(x->tmp[i]);
        x->tmp[i] = NULL;
    }
    return st;
}

/* Whether input i can go to the kernel as it is, given the op's row. */
static bool input_ready(const lm_op_info *info, int i, const lm_tensor *t)
{
    unsigned bit = 1u << i;
    bool dtype_ok = t->dtype == LM_DTYPE_F32 || (info->wide_in & bit) || (info->index_in & bit);
    if (!dtype_ok)
        return false;
    if (info->flags & LM_OPF_BROADCAST)
        return true;
    if (info->flags & LM_OPF_ROW_STRIDED)
        return t->ndim == 0 || t->stride[t->ndim - 1] == 1 || t->shape[t->ndim - 1] == 1;
    return lm_tensor_is_contiguous(t);
}

static lm_status check_dtype(lm_opx *x, const lm_op_info *info, int i, const lm_tensor *t,
                             lm_error *err)
{
    char d[96];
    lm_opx_desc(t, d, sizeof(d));
    if (lm_tensor_backend(t) != x->be)
        return lm_errorf(err, LM_EINVAL, "wrong_backend",
                         "lm_%s: input %d is on backend %s but input 0 is on %s; move it with "
                         "lm_tensor_to",
                         info->name, i, lm_backend_name(lm_tensor_backend(t)),
                         lm_backend_name(x->be));
    bool is_index = t->dtype == LM_DTYPE_I64 || t->dtype == LM_DTYPE_I32;
    if ((info->index_in & (1u << i)) && !is_index)
        return lm_errorf(err, LM_ETYPE, "bad_dtype",
                         "lm_%s: input %d is %s but indices must be I64 or I32", info->name, i, d);
    if (!(info->index_in & (1u << i)) && !lm_dtype_is_float(t->dtype))
        return lm_errorf(err, LM_ETYPE, "bad_dtype",
                         "lm_%s: input %d is %s but must be a float tensor", info->name, i, d);
    return LM_OK;
}

lm_status lm_opx_begin(lm_opx *x, lm_op op, const lm_tensor *const *in, int n, lm_error *err)
{
    memset(x, 0, sizeof(*x));
    const lm_op_info *info = lm_op_info_of(op);
    x->call.op = op;
    x->call.n_in = n;
    for (int i = 0; i < n; i++)
        if (!x->be && in[i])
            x->be = lm_tensor_backend(in[i]);
    if (!x->be)
        x->be = lm_backend_cpu();
    for (int i = 0; i < n; i++) {
        const lm_tensor *t = in[i];
        if (!t) {
            if (i < info->min_in)
                return lm_errorf(err, LM_EINVAL, "missing_input", "lm_%s: input %d is NULL",
                                 info->name, i);
            continue;
        }
        lm_status st = check_dtype(x, info, i, t, err);
        if (st == LM_OK && !input_ready(info, i, t)) {
            unsigned keep = info->wide_in | info->index_in; /* those keep their dtype */
            lm_dtype dt = (keep & (1u << i)) ? t->dtype : LM_DTYPE_F32;
            st = lm_tensor_cast(&x->tmp[i], t, dt, err);
            t = x->tmp[i];
        }
        if (st != LM_OK)
            return lm_opx_abort(x, st);
        x->call.in[i] = t;
    }
    return LM_OK;
}

void lm_opx_reshape(lm_opx *x, int i, int ndim, const int64_t *shape)
{
    lm_tensor *v = &x->views[i];
    *v = *x->call.in[i];
    v->ndim = ndim;
    int64_t stride = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        v->shape[d] = shape[d];
        v->stride[d] = stride;
        stride *= shape[d];
    }
    x->call.in[i] = v;
}

lm_status lm_opx_finish(lm_opx *x, lm_tensor **out, lm_dtype dtype, int ndim, const int64_t *shape,
                        lm_error *err)
{
    *out = NULL;
    lm_status st = lm_tensor_new(out, x->be, dtype, ndim, shape, err);
    if (st == LM_OK && lm_tensor_numel(*out) > 0) {
        x->call.out = *out;
        lm_kernel_fn fn = x->be->ops->kernel[x->call.op];
        st = fn ? fn(x->be, &x->call, err)
                : lm_errorf(err, LM_EUNSUPPORTED, "unsupported",
                            "lm_%s is not implemented by "
                            "backend %s",
                            lm_op_name(x->call.op), lm_backend_name(x->be));
    }
    if (st != LM_OK) {
        lm_tensor_free(*out);
        *out = NULL;
    }
    return lm_opx_abort(x, st);
}

/* Checks that t is a vector of length n (bias, gamma…); NULL passes. */
static lm_status check_vec(lm_op op, const char *what, const lm_tensor *t, int64_t n, lm_error *err)
{
    if (!t || (t->ndim == 1 && t->shape[0] == n))
        return LM_OK;
    char d[96];
    lm_opx_desc(t, d, sizeof(d));
    return lm_opx_error(err, op, "%s is %s but must be [%lld]", what, d, (long long)n);
}

/* BLAS takes int sizes: a larger product is refused rather than truncated. */
static lm_status int_sizes(lm_op op, const int64_t *v, int n, lm_error *err)
{
    for (int i = 0; i < n; i++)
        if (v[i] > INT_MAX)
            return lm_errorf(err, LM_ELIMIT, "too_large",
                             "lm_%s: a size of %lld is above the BLAS limit %d; split the "
                             "input into smaller pieces",
                             lm_op_name(op), (long long)v[i], INT_MAX);
    return LM_OK;
}

/* ---- products ---- */

lm_status lm_linear(lm_tensor **out, const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                    lm_error *err)
{
    *out = NULL;
    char dx[96], dw[96];
    lm_opx_desc(x, dx, sizeof(dx));
    lm_opx_desc(w, dw, sizeof(dw));
    if (!x || !w || x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        return lm_opx_error(err, LM_OP_LINEAR,
                            "x is %s and w is %s; need x [..., K] and "
                            "w [N, K]",
                            dx, dw);
    int64_t k = w->shape[1], sizes[3] = { k, w->shape[0], k ? lm_tensor_numel(x) / k : 0 };
    lm_status st = check_vec(LM_OP_LINEAR, "bias", b, w->shape[0], err);
    if (st == LM_OK)
        st = int_sizes(LM_OP_LINEAR, sizes, 3, err);
    if (st != LM_OK)
        return st;
    lm_opx op;
    const lm_tensor *in[3] = { x, w, b };
    st = lm_opx_begin(&op, LM_OP_LINEAR, in, 3, err);
    if (st != LM_OK)
        return st;
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(shape));
    shape[x->ndim - 1] = w->shape[0];
    return lm_opx_finish(&op, out, LM_DTYPE_F32, x->ndim, shape, err);
}

lm_status lm_matmul(lm_tensor **out, const lm_tensor *a, const lm_tensor *b, bool trans_b,
                    lm_error *err)
{
    *out = NULL;
    char da[96], db[96];
    lm_opx_desc(a, da, sizeof(da));
    lm_opx_desc(b, db, sizeof(db));
    bool ok = a && b && (a->ndim == 2 || a->ndim == 3) && (b->ndim == 2 || b->ndim == 3);
    int64_t B = ok && a->ndim == 3 ? a->shape[0] : 1, Bb = ok && b->ndim == 3 ? b->shape[0] : 1;
    int64_t M = ok ? a->shape[a->ndim - 2] : 0, K = ok ? a->shape[a->ndim - 1] : 0;
    int64_t bk = ok ? b->shape[b->ndim - (trans_b ? 1 : 2)] : -1;
    int64_t N = ok ? b->shape[b->ndim - (trans_b ? 2 : 1)] : 0;
    if (!ok || bk != K || (Bb != 1 && Bb != B))
        return lm_opx_error(err, LM_OP_MATMUL,
                            "a is %s and b is %s%s; need a [B, M, K] and b "
                            "[B|1, K, N]",
                            da, db, trans_b ? " (transposed)" : "");
    int64_t sizes[3] = { M, N, K };
    lm_status st = int_sizes(LM_OP_MATMUL, sizes, 3, err);
    if (st != LM_OK)
        return st;
    lm_opx op;
    const lm_tensor *in[2] = { a, b };
    st = lm_opx_begin(&op, LM_OP_MATMUL, in, 2, err);
    if (st != LM_OK)
        return st;
    int64_t sa[3] = { B, M, K }, sb[3] = { Bb, trans_b ? N : K, trans_b ? K : N };
    lm_opx_reshape(&op, 0, 3, sa);
    lm_opx_reshape(&op, 1, 3, sb);
    op.call.p.matmul.trans_b = trans_b;
    int64_t shape[3] = { B, M, N };
    st = lm_opx_finish(&op, out, LM_DTYPE_F32, 3, shape, err);
    if (st == LM_OK && a->ndim == 2) {
        (*out)->ndim = 2;
        (*out)->shape[0] = M;
        (*out)->shape[1] = N;
        (*out)->stride[0] = N;
        (*out)->stride[1] = 1;
    }
    return st;
}

/* ---- attention ---- */

static lm_status attention_shapes(const lm_tensor *q, const lm_tensor *k, const lm_tensor *v,
                                  const lm_tensor *bias, int heads, lm_error *err)
{
    char dq[96], dk[96], dv[96], dbias[96];
    lm_opx_desc(q, dq, sizeof(dq));
    lm_opx_desc(k, dk, sizeof(dk));
    lm_opx_desc(v, dv, sizeof(dv));
    lm_opx_desc(bias, dbias, sizeof(dbias));
    bool ok = q && k && v && q->ndim == 3 && k->ndim == 3 && v->ndim == 3 && heads > 0;
    ok = ok && q->shape[2] % heads == 0 && k->shape[2] == q->shape[2] &&
         v->shape[2] == q->shape[2] && k->shape[0] == q->shape[0] && v->shape[0] == q->shape[0] &&
         v->shape[1] == k->shape[1];
    if (!ok)
        return lm_opx_error(err, LM_OP_ATTENTION,
                            "q %s, k %s, v %s with %d heads; need q [B, "
                            "Nq, H*D], k and v [B, Nk, H*D]",
                            dq, dk, dv, heads);
    int64_t sizes[5] = { k->shape[1], q->shape[2], q->stride[1], k->stride[1], v->stride[1] };
    lm_status st = int_sizes(LM_OP_ATTENTION, sizes, 5, err);
    if (st != LM_OK || !bias)
        return st;
    int64_t want[4] = { q->shape[0], heads, q->shape[1], k->shape[1] };
    ok = bias->ndim == 4 || bias->ndim == 2;
    for (int d = 0; ok && d < bias->ndim; d++) {
        int64_t w = want[4 - bias->ndim + d];
        ok = bias->shape[d] == w || (d < bias->ndim - 2 && bias->shape[d] == 1);
    }
    if (!ok)
        return lm_opx_error(err, LM_OP_ATTENTION, "bias is %s; need [B|1, H|1, %lld, %lld]", dbias,
                            (long long)q->shape[1], (long long)k->shape[1]);
    return LM_OK;
}

/* sgemm reads q/k/v rows through stride[1]: overlapping rows (a stride shorter than a row)
 * or odd strides of a single row get a contiguous copy. The kernel reads the bias as a
 * contiguous [B|1, H|1, Nq, Nk]. */
static lm_status attention_inputs(lm_opx *op, const lm_tensor *bias, lm_error *err)
{
    for (int i = 0; i < 4; i++) {
        const lm_tensor *t = op->call.in[i];
        bool ok =
            i < 3 ? t->stride[1] >= t->shape[2] && (t->shape[1] > 1 || t->stride[1] == t->shape[2])
                  : !t || lm_tensor_is_contiguous(t);
        if (ok)
            continue;
        lm_status st = lm_tensor_contiguous(&op->tmp[i], t, err);
        if (st != LM_OK)
            return lm_opx_abort(op, st);
        op->call.in[i] = op->tmp[i];
    }
    if (bias && bias->ndim == 2) {
        int64_t s4[4] = { 1, 1, bias->shape[0], bias->shape[1] };
        lm_opx_reshape(op, 3, 4, s4);
    }
    return LM_OK;
}

lm_status lm_attention(lm_tensor **out, const lm_tensor *q, const lm_tensor *k, const lm_tensor *v,
                       const lm_tensor *bias, const lm_attention_opts *opts, lm_error *err)
{
    *out = NULL;
    int heads = opts ? opts->heads : 0;
    lm_status st = attention_shapes(q, k, v, bias, heads, err);
    if (st != LM_OK)
        return st;
    lm_opx op;
    const lm_tensor *in[4] = { q, k, v, bias };
    st = lm_opx_begin(&op, LM_OP_ATTENTION, in, 4, err);
    if (st == LM_OK)
        st = attention_inputs(&op, bias, err);
    if (st != LM_OK)
        return st;
    int64_t d = q->shape[2] / heads;
    op.call.p.attention.heads = heads;
    op.call.p.attention.causal = opts->causal;
    op.call.p.attention.scale = opts->scale != 0.0f ? opts->scale : 1.0f / sqrtf((float)d);
    return lm_opx_finish(&op, out, LM_DTYPE_F32, 3, q->shape, err);
}

/* ---- convolution ---- */

lm_status lm_conv2d(lm_tensor **out, const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                    const lm_conv2d_opts *opts, lm_error *err)
{
    *out = NULL;
    lm_conv2d_opts o = opts ? *opts : (lm_conv2d_opts){ 0 };
    if (o.stride <= 0)
        o.stride = 1;
    char dx[96], dw[96];
    lm_opx_desc(x, dx, sizeof(dx));
    lm_opx_desc(w, dw, sizeof(dw));
    if (!x || !w || x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[1])
        return lm_opx_error(err, LM_OP_CONV2D,
                            "x is %s and w is %s; need x [B, Ci, H, W] and "
                            "w [Co, Ci, kh, kw]",
                            dx, dw);
    if (o.pad_top < 0 || o.pad_left < 0 || o.pad_bottom < 0 || o.pad_right < 0)
        return lm_opx_error(err, LM_OP_CONV2D, "padding must be >= 0");
    int64_t hp = x->shape[2] + o.pad_top + o.pad_bottom;
    int64_t wp = x->shape[3] + o.pad_left + o.pad_right;
    if (hp < w->shape[2] || wp < w->shape[3] || w->shape[2] < 1 || w->shape[3] < 1)
        return lm_opx_error(err, LM_OP_CONV2D,
                            "the kernel of w %s is larger than the padded "
                            "input %s",
                            dw, dx);
    int64_t ho = (hp - w->shape[2]) / o.stride + 1, wo = (wp - w->shape[3]) / o.stride + 1;
    int64_t sizes[3] = { w->shape[0], w->shape[1] * w->shape[2] * w->shape[3], ho * wo };
    lm_status st = check_vec(LM_OP_CONV2D, "bias", b, w->shape[0], err);
    if (st == LM_OK)
        st = int_sizes(LM_OP_CONV2D, sizes, 3, err);
    if (st != LM_OK)
        return st;
    lm_opx op;
    const lm_tensor *in[3] = { x, w, b };
    st = lm_opx_begin(&op, LM_OP_CONV2D, in, 3, err);
    if (st != LM_OK)
        return st;
    op.call.p.conv2d.stride = o.stride;
    op.call.p.conv2d.pad_top = o.pad_top;
    op.call.p.conv2d.pad_left = o.pad_left;
    op.call.p.conv2d.pad_bottom = o.pad_bottom;
    op.call.p.conv2d.pad_right = o.pad_right;
    int64_t shape[4] = { x->shape[0], w->shape[0], ho, wo };
    return lm_opx_finish(&op, out, LM_DTYPE_F32, 4, shape, err);
}

/* ---- norms ---- */

static lm_status norm_run(lm_tensor **out, lm_op op_id, const lm_tensor *x, const lm_tensor *gamma,
                          const lm_tensor *beta, int groups, float eps, lm_error *err)
{
    lm_opx op;
    const lm_tensor *in[3] = { x, gamma, beta };
    int n = op_id == LM_OP_SOFTMAX ? 1 : op_id == LM_OP_RMS_NORM ? 2 : 3;
    lm_status st = lm_opx_begin(&op, op_id, in, n, err);
    if (st != LM_OK)
        return st;
    op.call.p.norm.groups = groups;
    op.call.p.norm.eps = eps;
    return lm_opx_finish(&op, out, LM_DTYPE_F32, x->ndim, x->shape, err);
}

lm_status lm_group_norm(lm_tensor **out, const lm_tensor *x, const lm_tensor *gamma,
                        const lm_tensor *beta, int groups, float eps, lm_error *err)
{
    *out = NULL;
    char dx[96];
    lm_opx_desc(x, dx, sizeof(dx));
    if (!x || x->ndim < 2 || groups <= 0 || x->shape[1] % groups != 0)
        return lm_opx_error(err, LM_OP_GROUP_NORM,
                            "x is %s with %d groups; need x [B, C, ...] "
                            "with C a multiple of the groups",
                            dx, groups);
    int64_t c = x->shape[1];
    lm_status st = check_vec(LM_OP_GROUP_NORM, "gamma", gamma, c, err);
    if (st == LM_OK)
        st = check_vec(LM_OP_GROUP_NORM, "beta", beta, c, err);
    if (st != LM_OK)
        return st;
    return norm_run(out, LM_OP_GROUP_NORM, x, gamma, beta, groups, eps, err);
}

static lm_status last_dim_norm(lm_tensor **out, lm_op op, const lm_tensor *x,
                               const lm_tensor *gamma, const lm_tensor *beta, float eps,
                               lm_error *err)
{
    *out = NULL;
    if (!x || x->ndim < 1)
        return lm_opx_error(err, op, "x must have at least one dimension");
    int64_t c = x->shape[x->ndim - 1];
    lm_status st = check_vec(op, "gamma", gamma, c, err);
    if (st == LM_OK)
        st = check_vec(op, "beta", beta, c, err);
    if (st != LM_OK)
        return st;
    return norm_run(out, op, x, gamma, beta, 0, eps, err);
}

lm_status lm_layer_norm(lm_tensor **out, const lm_tensor *x, const lm_tensor *gamma,
                        const lm_tensor *beta, float eps, lm_error *err)
{
    return last_dim_norm(out, LM_OP_LAYER_NORM, x, gamma, beta, eps, err);
}

lm_status lm_rms_norm(lm_tensor **out, const lm_tensor *x, const lm_tensor *gamma, float eps,
                      lm_error *err)
{
    return last_dim_norm(out, LM_OP_RMS_NORM, x, gamma, NULL, eps, err);
}

lm_status lm_softmax(lm_tensor **out, const lm_tensor *x, lm_error *err)
{
    return last_dim_norm(out, LM_OP_SOFTMAX, x, NULL, NULL, 0.0f, err);
}
