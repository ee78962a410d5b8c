/* core/tensor/ops_shape.c — front-ends of the elementwise, broadcasting and layout ops.
 * Broadcasting ops hand the kernel stride-0 views with the result's shape (op.h), so a
 * kernel never computes a broadcast rule itself. */
#include "core/tensor/dtype.h"
#include "core/tensor/ops_impl.h"

#include <string.h>

/* ---- elementwise ---- */

static lm_status unary(lm_tensor **out, lm_op op_id, const lm_tensor *x, float a, float b,
                       lm_error *err)
{
    *out = NULL;
    if (!x)
        return lm_opx_error(err, op_id, "x is NULL");
    lm_opx op;
    lm_status st = lm_opx_begin(&op, op_id, &x, 1, err);
    if (st != LM_OK)
        return st;
    op.call.p.scalar.a = a;
    op.call.p.scalar.b = b;
    return lm_opx_finish(&op, out, LM_DTYPE_F32, x->ndim, x->shape, err);
}

lm_status lm_gelu(lm_tensor **out, const lm_tensor *x, lm_error *err)
{
    return unary(out, LM_OP_GELU, x, 0, 0, err);
}

lm_status lm_gelu_tanh(lm_tensor **out, const lm_tensor *x, lm_error *err)
{
    return unary(out, LM_OP_GELU_TANH, x, 0, 0, err);
}

lm_status lm_quick_gelu(lm_tensor **out, const lm_tensor *x, lm_error *err)
{
    return unary(out, LM_OP_QUICK_GELU, x, 0, 0, err);
}

lm_status lm_silu(lm_tensor **out, const lm_tensor *x, lm_error *err)
{
    return unary(out, LM_OP_SILU, x, 0, 0, err);
}

lm_status lm_exp(lm_tensor **out, const lm_tensor *x, lm_error *err)
{
    return unary(out, LM_OP_EXP, x, 0, 0, err);
}

lm_status lm_scale(lm_tensor **out, const lm_tensor *x, float a, float b, lm_error *err)
{
    return unary(out, LM_OP_SCALE, x, a, b, err);
}

lm_status lm_clamp(lm_tensor **out, const lm_tensor *x, float lo, float hi, lm_error *err)
{
    if (!(lo <= hi))
        return lm_opx_error(err, LM_OP_CLAMP, "the range [%g, %g] is empty", (double)lo,
                            (double)hi);
    return unary(out, LM_OP_CLAMP, x, lo, hi, err);
}

/* ---- broadcasting ---- */

/* The NumPy broadcast shape of ts[0..n); false when they do not broadcast. */
static bool broadcast_shape(const lm_tensor *const *ts, int n, int *ndim, int64_t *shape)
{
    int nd = 0;
    for (int i = 0; i < n; i++)
        nd = LM_MAX(nd, ts[i]->ndim);
    for (int d = 0; d < nd; d++)
        shape[d] = 1;
    for (int i = 0; i < n; i++) {
        int off = nd - ts[i]->ndim;
        for (int d = 0; d < ts[i]->ndim; d++) {
            int64_t s = ts[i]->shape[d], *o = &shape[off + d];
            if (s != 1 && *o != 1 && s != *o)
                return false;
            if (s != 1)
                *o = s;
        }
    }
    *ndim = nd;
    return true;
}

/* Input i as a view of the result's shape with stride 0 on broadcast dims. */
static void broadcast_view(lm_opx *op, int i, int ndim, const int64_t *shape)
{
    const lm_tensor *t = op->call.in[i];
    lm_tensor *v = &op->views[i];
    *v = *t;
    v->ndim = ndim;
    int off = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        v->shape[d] = shape[d];
        v->stride[d] = d < off || t->shape[d - off] == 1 ? 0 : t->stride[d - off];
    }
    op->call.in[i] = v;
}

/* A [B, C] vector against x [B, N, C] means [B, 1, C] (adaLN); else NumPy rules. */
static void adaln_view(lm_opx *op, int i, const lm_tensor *x)
{
    const lm_tensor *t = op->call.in[i];
    if (!(x->ndim == 3 && t->ndim == 2 && t->shape[0] == x->shape[0] && t->shape[1] == x->shape[2]))
        return;
    lm_tensor *v = &op->views[i];
    *v = *t;
    v->ndim = 3;
    v->shape[0] = t->shape[0];
    v->shape[1] = 1;
    v->shape[2] = t->shape[1];
    v->stride[0] = t->stride[0];
    v->stride[1] = 0;
    v->stride[2] = t->stride[1];
    op->call.in[i] = v;
}

static lm_status broadcast_run(lm_tensor **out, lm_op op_id, const lm_tensor *const *in, int n,
                               lm_error *err)
{
    *out = NULL;
    for (int i = 0; i < n; i++)
        if (!in[i])
            return lm_opx_error(err, op_id, "input %d is NULL", i);
    lm_opx op;
    lm_status st = lm_opx_begin(&op, op_id, in, n, err);
    if (st != LM_OK)
        return st;
    if (op_id == LM_OP_MODULATE || op_id == LM_OP_GATED_ADD)
        for (int i = 1; i < n; i++)
            adaln_view(&op, i, in[0]);
    int ndim;
    int64_t shape[LM_MAX_DIMS];
    if (!broadcast_shape(op.call.in, n, &ndim, shape)) {
        char a[96], b[96], c[96];
        lm_opx_desc(in[0], a, sizeof(a));
        lm_opx_desc(in[1], b, sizeof(b));
        lm_opx_desc(n > 2 ? in[2] : NULL, c, sizeof(c));
        return lm_opx_abort(
            &op, lm_opx_error(err, op_id, "shapes %s, %s, %s do not broadcast", a, b, c));
    }
    for (int i = 0; i < n; i++)
        broadcast_view(&op, i, ndim, shape);
    return lm_opx_finish(&op, out, LM_DTYPE_F32, ndim, shape, err);
}

lm_status lm_add(lm_tensor **out, const lm_tensor *a, const lm_tensor *b, lm_error *err)
{
    const lm_tensor *in[2] = { a, b };
    return broadcast_run(out, LM_OP_ADD, in, 2, err);
}

lm_status lm_sub(lm_tensor **out, const lm_tensor *a, const lm_tensor *b, lm_error *err)
{
    const lm_tensor *in[2] = { a, b };
    return broadcast_run(out, LM_OP_SUB, in, 2, err);
}

lm_status lm_mul(lm_tensor **out, const lm_tensor *a, const lm_tensor *b, lm_error *err)
{
    const lm_tensor *in[2] = { a, b };
    return broadcast_run(out, LM_OP_MUL, in, 2, err);
}

lm_status lm_modulate(lm_tensor **out, const lm_tensor *x, const lm_tensor *shift,
                      const lm_tensor *scale, lm_error *err)
{
    const lm_tensor *in[3] = { x, shift, scale };
    return broadcast_run(out, LM_OP_MODULATE, in, 3, err);
}

lm_status lm_gated_add(lm_tensor **out, const lm_tensor *x, const lm_tensor *gate,
                       const lm_tensor *y, lm_error *err)
{
    const lm_tensor *in[3] = { x, gate, y };
    return broadcast_run(out, LM_OP_GATED_ADD, in, 3, err);
}

/* ---- layout ---- */

static lm_status concat_shape(const lm_tensor *const *ts, int n, int dim, int64_t *shape,
                              lm_error *err)
{
    const lm_tensor *t0 = ts[0];
    memcpy(shape, t0->shape, sizeof(int64_t) * LM_MAX_DIMS);
    shape[dim] = 0;
    for (int i = 0; i < n; i++) {
        bool ok = ts[i] && ts[i]->ndim == t0->ndim;
        for (int d = 0; ok && d < t0->ndim; d++)
            ok = d == dim || ts[i]->shape[d] == t0->shape[d];
        if (!ok) {
            char a[96], b[96];
            lm_opx_desc(t0, a, sizeof(a));
            lm_opx_desc(ts[i], b, sizeof(b));
            return lm_opx_error(err, LM_OP_CONCAT,
                                "tensor %d is %s but tensor 0 is %s; only "
                                "dim %d may differ",
                                i, b, a, dim);
        }
        shape[dim] += ts[i]->shape[dim];
    }
    return LM_OK;
}

lm_status lm_concat(lm_tensor **out, const lm_tensor *const *ts, int n, int dim, lm_error *err)
{
    *out = NULL;
    if (!ts || n < 1 || n > LM_OP_MAX_IN || !ts[0])
        return lm_opx_error(err, LM_OP_CONCAT, "%d tensors given; need 1 to %d", n, LM_OP_MAX_IN);
    int d = lm_opx_dim(dim, ts[0]->ndim);
    if (d < 0)
        return lm_opx_error(err, LM_OP_CONCAT, "dim %d is outside a %d-D tensor", dim, ts[0]->ndim);
    int64_t shape[LM_MAX_DIMS];
    lm_status st = concat_shape(ts, n, d, shape, err);
    if (st != LM_OK)
        return st;
    lm_opx op;
    st = lm_opx_begin(&op, LM_OP_CONCAT, ts, n, err);
    if (st != LM_OK)
        return st;
    op.call.p.concat.dim = d;
    return lm_opx_finish(&op, out, LM_DTYPE_F32, ts[0]->ndim, shape, err);
}

lm_status lm_split(lm_tensor **outs, const lm_tensor *x, int dim, const int64_t *sizes, int n,
                   lm_error *err)
{
    for (int i = 0; i < n; i++)
        outs[i] = NULL;
    int d = x && sizes ? lm_opx_dim(dim, x->ndim) : -1;
    int64_t total = 0;
    bool ok = d >= 0 && n >= 1;
    for (int i = 0; ok && i < n; i++) {
        ok = sizes[i] >= 0 && sizes[i] <= x->shape[d];
        total += ok ? sizes[i] : 0;
    }
    if (!ok || total != x->shape[d])
        return lm_errorf(err, LM_EINVAL, "bad_shape",
                         "lm_split: the sizes do not add up to "
                         "dim %d of the tensor",
                         dim);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        lm_tensor *view = NULL;
        lm_status st = lm_tensor_view_slice(&view, x, d, at, at + sizes[i], err);
        if (st == LM_OK)
            st = lm_tensor_cast(&outs[i], view, LM_DTYPE_F32, err);
        lm_tensor_free(view);
        if (st != LM_OK) {
            for (int j = 0; j <= i; j++) {
                lm_tensor_free(outs[j]);
                outs[j] = NULL;
            }
            return st;
        }
        at += sizes[i];
    }
    return LM_OK;
}

lm_status lm_pad2d(lm_tensor **out, const lm_tensor *x, int top, int left, int bottom, int right,
                   float value, lm_error *err)
{
    *out = NULL;
    if (!x || x->ndim < 2 || top < 0 || left < 0 || bottom < 0 || right < 0)
        return lm_opx_error(err, LM_OP_PAD, "need x [..., H, W] and pads >= 0");
    lm_opx op;
    lm_status st = lm_opx_begin(&op, LM_OP_PAD, &x, 1, err);
    if (st != LM_OK)
        return st;
    op.call.p.pad.top = top;
    op.call.p.pad.left = left;
    op.call.p.pad.bottom = bottom;
    op.call.p.pad.right = right;
    op.call.p.pad.value = value;
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(shape));
    shape[x->ndim - 2] += top + bottom;
    shape[x->ndim - 1] += left + right;
    return lm_opx_finish(&op, out, LM_DTYPE_F32, x->ndim, shape, err);
}

lm_status lm_upsample_nearest2x(lm_tensor **out, const lm_tensor *x, lm_error *err)
{
    *out = NULL;
    if (!x || x->ndim < 2)
        return lm_opx_error(err, LM_OP_UPSAMPLE_NEAREST2X, "need x [..., H, W]");
    lm_opx op;
    lm_status st = lm_opx_begin(&op, LM_OP_UPSAMPLE_NEAREST2X, &x, 1, err);
    if (st != LM_OK)
        return st;
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(shape));
    shape[x->ndim - 2] *= 2;
    shape[x->ndim - 1] *= 2;
    return lm_opx_finish(&op, out, LM_DTYPE_F32, x->ndim, shape, err);
}

lm_status lm_patchify(lm_tensor **out, const lm_tensor *x, int p, lm_error *err)
{
    *out = NULL;
    char dx[96];
    lm_opx_desc(x, dx, sizeof(dx));
    if (!x || x->ndim != 4 || p < 1 || x->shape[2] % p || x->shape[3] % p)
        return lm_opx_error(err, LM_OP_PATCHIFY,
                            "x is %s with patch %d; need [B, C, H, W] "
                            "with H and W multiples of the patch",
                            dx, p);
    lm_opx op;
    lm_status st = lm_opx_begin(&op, LM_OP_PATCHIFY, &x, 1, err);
    if (st != LM_OK)
        return st;
    op.call.p.patch.p = p;
    int64_t shape[3] = { x->shape[0], (x->shape[2] / p) * (x->shape[3] / p),
                         (int64_t)p * p * x->shape[1] };
    return lm_opx_finish(&op, out, LM_DTYPE_F32, 3, shape, err);
}

lm_status lm_unpatchify(lm_tensor **out, const lm_tensor *x, int p, int h, int w, lm_error *err)
{
    *out = NULL;
    char dx[96];
    lm_opx_desc(x, dx, sizeof(dx));
    int64_t pp = (int64_t)p * p;
    if (!x || x->ndim != 3 || p < 1 || h < 1 || w < 1 || x->shape[1] != (int64_t)h * w ||
        x->shape[2] % pp)
        return lm_opx_error(err, LM_OP_UNPATCHIFY,
                            "x is %s with patch %d and grid %dx%d; need "
                            "[B, h*w, p*p*C]",
                            dx, p, h, w);
    lm_opx op;
    lm_status st = lm_opx_begin(&op, LM_OP_UNPATCHIFY, &x, 1, err);
    if (st != LM_OK)
        return st;
    op.call.p.patch.p = p;
    int64_t shape[4] = { x->shape[0], x->shape[2] / pp, (int64_t)h * p, (int64_t)w * p };
    return lm_opx_finish(&op, out, LM_DTYPE_F32, 4, shape, err);
}

lm_status lm_embedding(lm_tensor **out, const lm_tensor *table, const lm_tensor *ids, lm_error *err)
{
    *out = NULL;
    char dt[96], di[96];
    lm_opx_desc(table, dt, sizeof(dt));
    lm_opx_desc(ids, di, sizeof(di));
    if (!table || !ids || table->ndim != 2 || ids->ndim >= LM_MAX_DIMS)
        return lm_opx_error(err, LM_OP_EMBEDDING,
                            "table is %s and ids %s; need table [V, C] "
                            "and ids with at most %d dims",
                            dt, di, LM_MAX_DIMS - 1);
    lm_opx op;
    const lm_tensor *in[2] = { table, ids };
    lm_status st = lm_opx_begin(&op, LM_OP_EMBEDDING, in, 2, err);
    if (st != LM_OK)
        return st;
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
    shape[ids->ndim] = table->shape[1];
    return lm_opx_finish(&op, out, LM_DTYPE_F32, ids->ndim + 1, shape, err);
}

lm_status lm_timestep_embedding(lm_tensor **out, const lm_tensor *t, int dim, float max_period,
                                lm_error *err)
{
    *out = NULL;
    char d[96];
    lm_opx_desc(t, d, sizeof(d));
    if (!t || t->ndim > 1 || dim < 2 || dim % 2 || !(max_period > 0.0f))
        return lm_opx_error(err, LM_OP_TIMESTEP_EMBEDDING,
                            "t is %s, dim %d; need t [B] and an "
                            "even dim >= 2, max_period > 0",
                            d, dim);
    lm_opx op;
    lm_status st = lm_opx_begin(&op, LM_OP_TIMESTEP_EMBEDDING, &t, 1, err);
    if (st != LM_OK)
        return st;
    op.call.p.temb.max_period = max_period;
    int64_t shape[2] = { t->ndim ? t->shape[0] : 1, dim };
    return lm_opx_finish(&op, out, LM_DTYPE_F32, 2, shape, err);
}

lm_status lm_t5_buckets(lm_tensor **out, lm_backend *be, int64_t nq, int64_t nk, int num_buckets,
                        int max_distance, bool bidirectional, lm_error *err)
{
    *out = NULL;
    if (nq < 0 || nk < 0 || num_buckets < 2 || max_distance < 1)
        return lm_opx_error(err, LM_OP_T5_BUCKETS,
                            "%lldx%lld with %d buckets, max distance "
                            "%d; need sizes >= 0, buckets >= 2, distance >= 1",
                            (long long)nq, (long long)nk, num_buckets, max_distance);
    lm_opx op;
    lm_status st = lm_opx_begin(&op, LM_OP_T5_BUCKETS, NULL, 0, err);
    if (st != LM_OK)
        return st;
    op.be = be ? be : lm_backend_cpu();
    op.call.p.t5.num_buckets = num_buckets;
    op.call.p.t5.max_distance = max_distance;
    op.call.p.t5.bidirectional = bidirectional;
    int64_t shape[2] = { nq, nk };
    return lm_opx_finish(&op, out, LM_DTYPE_I64, 2, shape, err);
}

lm_status lm_fill(lm_tensor *t, float value, lm_error *err)
{
    if (!t || t->dtype != LM_DTYPE_F32 || !lm_tensor_is_contiguous(t))
        return lm_opx_error(err, LM_OP_FILL, "the tensor must be F32 and contiguous");
    if (lm_tensor_numel(t) == 0)
        return LM_OK;
    lm_opx op;
    lm_status st = lm_opx_begin(&op, LM_OP_FILL, NULL, 0, err);
    if (st != LM_OK)
        return st;
    lm_backend *be = lm_tensor_backend(t);
    op.call.out = t;
    op.call.p.fill.value = value;
    return be->ops->kernel[LM_OP_FILL](be, &op.call, err);
}
