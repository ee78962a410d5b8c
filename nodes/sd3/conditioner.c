/* nodes/sd3/conditioner.c — SD3's context and pooled vector from its three text encoders,
 * ComfyUI's per-token prompt weights, and the encoders' ids tensor.
 *
 * Design: each encoder runs on its own ids (CLIP-L and CLIP-G in 77-token chunks, T5 at
 * any length); the CLIP rows are built by copying the two penultimate states side by side
 * into a zero tensor of the context width (SD3 paper §2.3; ComfyUI's SD3ClipModel pads the
 * concatenation to 4096 the same way), then the T5 rows are appended along tokens. A
 * missing encoder is replaced as ComfyUI replaces it (see conditioner.h); the widths of
 * what is missing are options because a tiny test model's widths cannot be guessed.
 *
 * Devices: each encoder computes on its own backend and hands back host tensors (the model
 * boundary is host memory), so the assembly here — a few copies of [77*K, D] rows — runs on
 * the host whatever the encoders' devices, and the results are host tensors. The prompt
 * weights are applied inside the encoders, on their backend (lm_sd3_token_weights_apply
 * computes where z lives). */
#include "nodes/sd3/conditioner.h"

#include "core/base/alloc.h"
#include "core/tensor/ops.h"

#include <string.h>

#define NO_T5_TOKENS 77

/* ---- prompt weights ---- */

static lm_status weights_tensor(const double *weights, int64_t t, lm_backend *be, lm_tensor **out,
                                lm_error *err)
{
    *out = NULL;
    int64_t shape[2] = { t, 1 };
    lm_tensor *host = NULL;
    lm_status st = lm_tensor_new(&host, lm_backend_cpu(), LM_DTYPE_F32, 2, shape, err); // [T, 1]
    if (st != LM_OK)
        return st;
    float *p = lm_tensor_data(host);
    for (int64_t i = 0; i < t; i++)
        p[i] = (float)weights[i]; /* torch multiplies an f32 tensor by the weight as f32 */
    st = lm_tensor_move(&host, be, err);
    *out = host;
    return st;
}

/* Copies rows [a, b) (dim ndim-2) of src into dst. */
static lm_status copy_rows(lm_tensor *dst, const lm_tensor *src, int64_t a, int64_t b,
                           lm_error *err)
{
    int dim = dst->ndim - 2;
    lm_tensor *d = NULL, *s = NULL;
    lm_status st = lm_tensor_view_slice(&d, dst, dim, a, b, err);
    if (st == LM_OK)
        st = lm_tensor_view_slice(&s, src, dim, a, b, err);
    if (st == LM_OK)
        st = lm_tensor_copy(d, s, err);
    lm_tensor_free(d);
    lm_tensor_free(s);
    return st;
}

/* out starts as z; each run of weighted rows is replaced by the interpolated rows, so
 * rows of weight 1.0 stay z's bits (ComfyUI skips them too). */
static lm_status replace_weighted(lm_tensor *out, const lm_tensor *interp, const double *weights,
                                  int64_t t, lm_error *err)
{
    lm_status st = LM_OK;
    for (int64_t i = 0; st == LM_OK && i < t;) {
        if (weights[i] == 1.0) {
            i++;
            continue;
        }
        int64_t j = i;
        while (j < t && weights[j] != 1.0)
            j++;
        st = copy_rows(out, interp, i, j, err);
        i = j;
    }
    return st;
}

static bool same_shape(const lm_tensor *a, const lm_tensor *b)
{
    if (a->ndim != b->ndim || a->ndim < 2)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

lm_status lm_sd3_token_weights_apply(lm_tensor **out, const lm_tensor *z, const lm_tensor *z_empty,
                                     const double *weights, lm_error *err)
{
    *out = NULL;
    if (!same_shape(z, z_empty))
        return lm_errorf(err, LM_EINVAL, "bad_shape",
                         "prompt weights: the encoding and the empty encoding differ in shape");
    int64_t t = z->shape[z->ndim - 2];
    lm_tensor *w = NULL, *diff = NULL, *scaled = NULL, *interp = NULL, *res = NULL;
    lm_status st = weights_tensor(weights, t, lm_tensor_backend(z), &w, err); // [T, 1]
    if (st == LM_OK)
        st = lm_sub(&diff, z, z_empty, err); // [1, T, C]
    if (st == LM_OK)
        st = lm_mul(&scaled, diff, w, err); // [1, T, C]
    if (st == LM_OK)
        st = lm_add(&interp, scaled, z_empty, err); // [1, T, C]
    if (st == LM_OK)
        st = lm_tensor_cast(&res, z, LM_DTYPE_F32, err); // [1, T, C]
    if (st == LM_OK)
        st = replace_weighted(res, interp, weights, t, err);
    if (st == LM_OK)
        *out = res;
    else
        lm_tensor_free(res);
    lm_tensor_free(w);
    lm_tensor_free(diff);
    lm_tensor_free(scaled);
    lm_tensor_free(interp);
    return st;
}

bool lm_sd3_token_weights_any(const double *weights, size_t n)
{
    for (size_t i = 0; weights && i < n; i++)
        if (weights[i] != 1.0)
            return true;
    return false;
}

/* ---- token ids ---- */

lm_status lm_sd3_token_ids_tensor(lm_tensor **out, const int32_t *ids, size_t n, int vocab,
                                  const char *model, lm_backend *be, lm_error *err)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return lm_errorf(err, LM_ERANGE, "bad_token_id",
                             "%s: token id %d at position %zu is outside the vocabulary [0, %d)",
                             model, (int)ids[i], i, vocab);
    int64_t shape[2] = { 1, (int64_t)n };
    lm_tensor *host = NULL;
    lm_status st = lm_tensor_new(&host, lm_backend_cpu(), LM_DTYPE_I32, 2, shape, err); // [1, T]
    if (st != LM_OK)
        return st;
    memcpy(lm_tensor_data(host), ids, n * sizeof(int32_t));
    st = lm_tensor_move(&host, be, err);
    *out = host;
    return st;
}

/* ---- SD3 conditioning ---- */

typedef struct {
    lm_tensor *pen_l, *pen_g;   /* [1, 77*K, W] penultimate states, NULL when missing */
    lm_tensor *pool_l, *pool_g; /* [1, P] pooled vectors, NULL when missing */
    lm_tensor *t5;              /* [1, T, D] */
    int width_l, width_g;       /* columns of each CLIP part, missing ones included */
    int pooled_l, pooled_g;
    int64_t d;      /* context width */
    lm_backend *be; /* the host: the encoders return host tensors wherever they run */
} cond_parts;

static void parts_fini(cond_parts *p)
{
    lm_tensor_free(p->pen_l);
    lm_tensor_free(p->pen_g);
    lm_tensor_free(p->pool_l);
    lm_tensor_free(p->pool_g);
    lm_tensor_free(p->t5);
}

static lm_status clip_part(const lm_clip *clip, const lm_sd3_text_ids *ids, lm_tensor **pen,
                           lm_tensor **pool, lm_error *err)
{
    if (!clip)
        return LM_OK;
    lm_sd3_text_ids none = { 0 };
    const lm_sd3_text_ids *in = ids ? ids : &none;
    return lm_clip_encode(clip, in->ids, in->n, in->weights, pen, pool, err);
}

/* Widths, context width and backend; fails when they cannot fit together. */
static lm_status plan(cond_parts *p, const lm_clip *l, const lm_clip *g, const lm_t5 *t5,
                      const lm_sd3_condition_opts *o, lm_error *err)
{
    int ow = o->context_width;
    int zl = o->clip_l_width ? o->clip_l_width : LM_SD3_CLIP_L_WIDTH;
    int zg = o->clip_g_width ? o->clip_g_width : LM_SD3_CLIP_G_WIDTH;
    p->width_l = l ? lm_clip_config_of(l)->width : zl;
    p->width_g = g ? lm_clip_config_of(g)->width : zg;
    p->pooled_l = l ? lm_clip_pooled_width(l) : p->width_l;
    p->pooled_g = g ? lm_clip_pooled_width(g) : p->width_g;
    p->d = t5 ? lm_t5_config_of(t5)->d_model : (ow ? ow : LM_SD3_CONTEXT_WIDTH);
    p->be = lm_backend_cpu();
    if (t5 && ow && ow != p->d)
        return lm_errorf(err, LM_EINVAL, "bad_context_width",
                         "SD3 conditioning: context width %d was asked for but the T5 is %lld "
                         "wide",
                         ow, (long long)p->d);
    if ((l || g) && p->width_l + p->width_g > p->d)
        return lm_errorf(err, LM_EINVAL, "bad_context_width",
                         "SD3 conditioning: CLIP widths %d + %d do not fit the context width "
                         "%lld",
                         p->width_l, p->width_g, (long long)p->d);
    return LM_OK;
}

/* Copies src [1, rows.., W] (its first `rows` rows) into dst [1, rows, D] at column col. */
static lm_status place(lm_tensor *dst, const lm_tensor *src, int64_t rows, int64_t col,
                       lm_error *err)
{
    lm_tensor *s = NULL, *d = NULL;
    lm_status st = lm_tensor_view_slice(&s, src, 1, 0, rows, err); // [1, R, W]
    if (st == LM_OK)
        st = lm_tensor_view_slice(&d, dst, 2, col, col + src->shape[2], err); // [1, R, W] view
    if (st == LM_OK)
        st = lm_tensor_copy(d, s, err);
    lm_tensor_free(s);
    lm_tensor_free(d);
    return st;
}

/* The CLIP rows: [1, R, D], CLIP-L at column 0, CLIP-G at width_l, zeros elsewhere. */
static lm_status clip_rows(const cond_parts *p, lm_tensor **out, lm_error *err)
{
    *out = NULL;
    int64_t rows = p->pen_l ? p->pen_l->shape[1] : p->pen_g->shape[1];
    if (p->pen_l && p->pen_g)
        rows = LM_MIN(p->pen_l->shape[1], p->pen_g->shape[1]); /* ComfyUI's cut_to */
    int64_t shape[3] = { 1, rows, p->d };
    lm_tensor *lg = NULL;
    lm_status st = lm_tensor_zeros(&lg, p->be, LM_DTYPE_F32, 3, shape, err); // [1, R, D]
    if (st == LM_OK && p->pen_l)
        st = place(lg, p->pen_l, rows, 0, err);
    if (st == LM_OK && p->pen_g)
        st = place(lg, p->pen_g, rows, p->width_l, err);
    if (st == LM_OK)
        *out = lg;
    else
        lm_tensor_free(lg);
    return st;
}

static lm_status zeros(lm_backend *be, int64_t rows, int64_t cols, lm_tensor **out, lm_error *err)
{
    int64_t shape[3] = { 1, rows, cols };
    return lm_tensor_zeros(out, be, LM_DTYPE_F32, 3, shape, err);
}

static lm_status context(const cond_parts *p, const lm_sd3_condition_opts *o, lm_tensor **out,
                         lm_error *err)
{
    const lm_tensor *parts[2];
    int n = 0;
    lm_tensor *lg = NULL, *pad = NULL;
    lm_status st = LM_OK;
    if (p->pen_l || p->pen_g)
        st = clip_rows(p, &lg, err); // [1, 77*K, D]
    if (lg)
        parts[n++] = lg;
    if (p->t5)
        parts[n++] = p->t5; // [1, T, D]
    else if (st == LM_OK && (o->no_t5 == LM_SD3_NO_T5_ZEROS || n == 0))
        st = zeros(p->be, o->no_t5_tokens ? o->no_t5_tokens : NO_T5_TOKENS, p->d, &pad, err);
    if (pad)
        parts[n++] = pad; // [1, 77, D]
    if (st == LM_OK)
        st = lm_concat(out, parts, n, 1, err); // [1, N, D]
    lm_tensor_free(lg);
    lm_tensor_free(pad);
    return st;
}

static lm_status pooled(const cond_parts *p, lm_tensor **out, lm_error *err)
{
    lm_tensor *zl = NULL, *zg = NULL;
    int64_t sl[2] = { 1, p->pooled_l }, sg[2] = { 1, p->pooled_g };
    lm_status st = LM_OK;
    if (!p->pool_l)
        st = lm_tensor_zeros(&zl, p->be, LM_DTYPE_F32, 2, sl, err); // [1, Pl]
    if (st == LM_OK && !p->pool_g)
        st = lm_tensor_zeros(&zg, p->be, LM_DTYPE_F32, 2, sg, err); // [1, Pg]
    const lm_tensor *parts[2] = { p->pool_l ? p->pool_l : zl, p->pool_g ? p->pool_g : zg };
    if (st == LM_OK)
        st = lm_concat(out, parts, 2, 1, err); // [1, Pl + Pg]
    lm_tensor_free(zl);
    lm_tensor_free(zg);
    return st;
}

lm_status lm_sd3_condition(const lm_clip *clip_l, const lm_clip *clip_g, const lm_t5 *t5,
                           const lm_sd3_text_ids *ids_l, const lm_sd3_text_ids *ids_g,
                           const lm_sd3_text_ids *ids_t5, const lm_sd3_condition_opts *opts,
                           lm_tensor **context_out, lm_tensor **pooled_out, lm_error *err)
{
    static const lm_sd3_condition_opts defaults = LM_SD3_CONDITION_OPTS_DEFAULT;
    const lm_sd3_condition_opts *o = opts ? opts : &defaults;
    if (context_out)
        *context_out = NULL;
    if (pooled_out)
        *pooled_out = NULL;
    cond_parts p = { 0 };
    lm_sd3_text_ids none = { 0 };
    const lm_sd3_text_ids *it5 = ids_t5 ? ids_t5 : &none;
    lm_status st = plan(&p, clip_l, clip_g, t5, o, err);
    if (st == LM_OK)
        st = clip_part(clip_l, ids_l, &p.pen_l, &p.pool_l, err); // [1, 77*K, Wl]
    if (st == LM_OK)
        st = clip_part(clip_g, ids_g, &p.pen_g, &p.pool_g, err); // [1, 77*K, Wg]
    /* y never needs the T5. */
    if (st == LM_OK && t5 && context_out)
        st = lm_t5_encode(t5, it5->ids, it5->n, it5->weights, &p.t5, err); // [1, T, D]
    if (st == LM_OK && context_out)
        st = context(&p, o, context_out, err); // [1, N, D]
    if (st == LM_OK && pooled_out)
        st = pooled(&p, pooled_out, err); // [1, Pl + Pg]
    if (st != LM_OK && context_out) {
        lm_tensor_free(*context_out);
        *context_out = NULL;
    }
    parts_fini(&p);
    return st;
}
