/* nodes/image/resample.c — image resampling (ImageScale, ImageBlend, LatentUpscale) and the
 * small helpers the image nodes share.
 *
 * Every method is separable, so a resize is two 1-D passes (rows, then columns) through
 * per-axis weight tables: for each output index, the first source index and a fixed number
 * of taps with their weights. The tables reproduce the documented behaviour of the
 * functions ComfyUI calls: torch.nn.functional.interpolate for nearest-exact, bilinear and
 * bicubic (align_corners=False, source = (i + 0.5) * in / out - 0.5, bicubic with
 * a = -0.75 and clamped borders), adaptive average pooling for "area" (each output averages
 * source cells floor(i * in / out) .. ceil((i + 1) * in / out)), and a Lanczos-3 filter
 * widened by the shrink factor, as PIL resizes. ComfyUI's lanczos goes through 8-bit PIL
 * images; this one stays in f32 (docs/nodes-notes.md). Outputs are not clamped: bicubic
 * and Lanczos may overshoot [0, 1] slightly at sharp edges, as in ComfyUI. Each pass runs
 * row by row on the default thread pool (rows are independent).
 *
 * "bislerp" (comfy.utils.bislerp, offered by LatentUpscale) is not a weighted sum: each
 * output pixel of a pass is the slerp of two source pixels' C-vectors. Which two, and the
 * ratio, come from ComfyUI's trick of resizing index ramps with torch's bilinear filter:
 * c1 = trunc(bilinear(0, 1, …, len-1)), ratio = its fraction, c2 = trunc(bilinear(1, 2, …,
 * len-1, len-1)); both ramps and the slerp are evaluated in float32 as torch does. */
#include "core/base/alloc.h"
#include "core/base/thread.h"
#include "core/value.h"
#include "nodes/image/image_nodes.h"

#include <math.h>
#include <string.h>

const lm_output_def lm_image_nodes__image_out[1] = { { "IMAGE", LM_TYPE_IMAGE, NULL } };

lm_status lm_image_nodes__new(lm_tensor **out, int64_t b, int64_t h, int64_t w, int64_t c,
                              lm_error *err)
{
    *out = NULL;
    if (b < 1 || h < 1 || w < 1 || c < 1 || b > LM_IMAGE_NODES_MAX_ELEMS / h / w / c) {
        lm_errorf(err, LM_ELIMIT, "image_too_large",
                  "an image batch of %lld x %lld x %lld x %lld values is over the limit of "
                  "%lld",
                  (long long)b, (long long)h, (long long)w, (long long)c,
                  (long long)LM_IMAGE_NODES_MAX_ELEMS);
        lm_error_hint(err, "use a smaller size or batch");
        return LM_ELIMIT;
    }
    int64_t shape[4] = { b, h, w, c };
    return lm_tensor_new(out, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, err);
}

lm_status lm_image_nodes__pixels(const lm_value *image, const char *input, lm_tensor **copy,
                                 const float **data, const lm_tensor **shape, lm_error *err)
{
    *copy = NULL;
    const lm_tensor *t = image ? lm_value_tensor(image) : NULL;
    if (!t || t->ndim != 4 || t->shape[0] < 1 || t->shape[1] < 1 || t->shape[2] < 1 ||
        t->shape[3] < 1) {
        lm_errorf(err, LM_ETYPE, "bad_image",
                  "expected an IMAGE [B, H, W, C] with no empty "
                  "dimension");
        lm_error_at_node(err, NULL, NULL, input);
        return LM_ETYPE;
    }
    *shape = t;
    if (t->dtype == LM_DTYPE_F32 && lm_tensor_is_contiguous(t) && lm_tensor_data(t)) {
        *data = lm_tensor_data(t);
        return LM_OK;
    }
    lm_status st = lm_tensor_to_f32_host(copy, t, err);
    if (st == LM_OK)
        *data = lm_tensor_data(*copy);
    return st;
}

/* ---- weight tables ---- */

typedef struct {
    int64_t n, taps;
    int64_t *first; /* [n] first source index */
    float *w;       /* [n * taps] */
} axis;

static void axis_fini(axis *a)
{
    lm_free(a->first);
    lm_free(a->w);
}

static double cubic1(double x) /* |x| <= 1, a = -0.75 */
{
    const double a = -0.75;
    return ((a + 2) * x - (a + 3)) * x * x + 1;
}

static double cubic2(double x) /* 1 < |x| < 2 */
{
    const double a = -0.75;
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
}

static double lanczos3(double x)
{
    x = fabs(x);
    if (x >= 3.0)
        return 0.0;
    if (x < 1e-9)
        return 1.0;
    double px = M_PI * x;
    return 3.0 * sin(px) * sin(px / 3.0) / (px * px);
}

/* Adds weight v at source index j (clamped into [0, len)) to row i of the table. */
static void add_tap(axis *a, int64_t i, int64_t len, int64_t j, double v)
{
    j = j < 0 ? 0 : j >= len ? len - 1 : j;
    int64_t k = j - a->first[i];
    if (k >= 0 && k < a->taps)
        a->w[i * a->taps + k] += (float)v;
}

static void fill_nearest(axis *a, int64_t i, int64_t len, double scale)
{
    int64_t j = (int64_t)floor(((double)i + 0.5) * scale);
    a->first[i] = j < len ? j : len - 1;
    a->w[i * a->taps] = 1.0f;
}

static void fill_bilinear(axis *a, int64_t i, int64_t len, double scale)
{
    double real = fmax(scale * ((double)i + 0.5) - 0.5, 0.0);
    int64_t j = (int64_t)real;
    if (j > len - 1)
        j = len - 1;
    double t = real - (double)j;
    a->first[i] = j;
    add_tap(a, i, len, j, 1.0 - t);
    add_tap(a, i, len, j + 1 < len ? j + 1 : j, t);
}

static void fill_bicubic(axis *a, int64_t i, int64_t len, double scale)
{
    double real = scale * ((double)i + 0.5) - 0.5;
    int64_t j = (int64_t)floor(real);
    double t = real - (double)j;
    int64_t lo = j - 1 < 0 ? 0 : j - 1 > len - 1 ? len - 1 : j - 1;
    a->first[i] = lo + 4 > len ? (len > 4 ? len - 4 : 0) : lo;
    add_tap(a, i, len, j - 1, cubic2(t + 1));
    add_tap(a, i, len, j, cubic1(t));
    add_tap(a, i, len, j + 1, cubic1(1 - t));
    add_tap(a, i, len, j + 2, cubic2(2 - t));
}

static void fill_area(axis *a, int64_t i, int64_t len, int64_t n)
{
    int64_t start = i * len / n, end = ((i + 1) * len + n - 1) / n;
    a->first[i] = start;
    for (int64_t j = start; j < end; j++)
        add_tap(a, i, len, j, 1.0 / (double)(end - start));
}

static void fill_lanczos(axis *a, int64_t i, int64_t len, double scale)
{
    double fs = scale > 1.0 ? scale : 1.0, support = 3.0 * fs;
    double center = ((double)i + 0.5) * scale;
    int64_t lo = (int64_t)floor(center - support + 0.5),
            hi = (int64_t)floor(center + support + 0.5);
    lo = lo < 0 ? 0 : lo;
    hi = hi > len ? len : hi;
    if (hi - lo > a->taps)
        hi = lo + a->taps;
    a->first[i] = lo;
    double sum = 0.0;
    for (int64_t j = lo; j < hi; j++)
        sum += lanczos3(((double)j - center + 0.5) / fs);
    for (int64_t j = lo; j < hi && sum != 0.0; j++)
        add_tap(a, i, len, j, lanczos3(((double)j - center + 0.5) / fs) / sum);
}

static int64_t taps_for(lm_resample method, int64_t len, int64_t n)
{
    double scale = (double)len / (double)n;
    switch (method) {
    case LM_RESAMPLE_NEAREST_EXACT:
        return 1;
    case LM_RESAMPLE_BILINEAR:
        return 2;
    case LM_RESAMPLE_BICUBIC:
        return 4;
    case LM_RESAMPLE_AREA:
        return (int64_t)ceil(scale) + 1;
    case LM_RESAMPLE_LANCZOS:
        return 2 * (int64_t)ceil(3.0 * (scale > 1.0 ? scale : 1.0)) + 2;
    case LM_RESAMPLE_BISLERP: /* not separable weights: see slerp_axis */
        return 2;
    }
    return 1;
}

/* Weights mapping a source axis of `len` samples onto `n` outputs. */
static lm_status axis_build(axis *a, lm_resample method, int64_t len, int64_t n, lm_error *err)
{
    a->n = n;
    a->taps = taps_for(method, len, n);
    a->first = lm_calloc((size_t)n, sizeof(*a->first));
    a->w = lm_calloc((size_t)(n * a->taps), sizeof(*a->w));
    if (!a->first || !a->w) {
        axis_fini(a);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory resizing an image");
    }
    double scale = (double)len / (double)n;
    for (int64_t i = 0; i < n; i++) {
        if (method == LM_RESAMPLE_NEAREST_EXACT)
            fill_nearest(a, i, len, scale);
        else if (method == LM_RESAMPLE_BILINEAR)
            fill_bilinear(a, i, len, scale);
        else if (method == LM_RESAMPLE_BICUBIC)
            fill_bicubic(a, i, len, scale);
        else if (method == LM_RESAMPLE_AREA)
            fill_area(a, i, len, n);
        else
            fill_lanczos(a, i, len, scale);
    }
    return LM_OK;
}

/* ---- passes ---- */

typedef struct {
    int64_t h, w, c; /* source image size */
    int64_t y0, x0;  /* crop origin */
    int64_t ch, cw;  /* crop size */
} crop_box;

/* One resize job: a source image, the weights, and where the passes write. */
typedef struct {
    const float *src;
    const crop_box *box;
    const axis *ax, *ay;
    float *tmp; /* [ch, n_w, c] after the row pass */
    float *dst; /* [n_h, n_w, c] */
} pass_job;

/* Row pass, one source row of the crop per call: tmp[y] = row y through ax. */
static void row_pass(void *user, size_t index, int tid)
{
    (void)tid;
    const pass_job *j = user;
    const axis *ax = j->ax;
    int64_t y = (int64_t)index, c = j->box->c, nw = ax->n;
    const float *row = j->src + ((j->box->y0 + y) * j->box->w + j->box->x0) * c;
    float *out = j->tmp + y * nw * c;
    for (int64_t x = 0; x < nw; x++) {
        const float *w = ax->w + x * ax->taps;
        for (int64_t k = 0; k < c; k++) {
            double acc = 0.0;
            for (int64_t t = 0; t < ax->taps && ax->first[x] + t < j->box->cw; t++)
                acc += (double)w[t] * (double)row[(ax->first[x] + t) * c + k];
            out[x * c + k] = (float)acc;
        }
    }
}

/* Column pass, one output row per call: dst[y] = tmp rows through ay. */
static void column_pass(void *user, size_t index, int tid)
{
    (void)tid;
    const pass_job *j = user;
    const axis *ay = j->ay;
    int64_t y = (int64_t)index, span = j->ax->n * j->box->c;
    const float *w = ay->w + y * ay->taps;
    float *out = j->dst + y * span;
    for (int64_t i = 0; i < span; i++) {
        double acc = 0.0;
        for (int64_t t = 0; t < ay->taps && ay->first[y] + t < j->box->ch; t++)
            acc += (double)w[t] * (double)j->tmp[(ay->first[y] + t) * span + i];
        out[i] = (float)acc;
    }
}

/* One image, both passes spread over the default thread pool. */
static void resize_one(const float *src, const crop_box *box, const axis *ax, const axis *ay,
                       float *tmp, float *dst)
{
    pass_job job = { .src = src, .box = box, .ax = ax, .ay = ay, .tmp = tmp, .dst = dst };
    lm_pool_run(lm_pool_default(), (size_t)box->ch, row_pass, &job);
    lm_pool_run(lm_pool_default(), (size_t)ay->n, column_pass, &job);
}

/* ---- bislerp ---- */

/* Output i of a `len` -> `n` bislerp axis: the slerp of source pixels c1[i] and c2[i] at
 * ratio[i]. */
typedef struct {
    int64_t n;
    int64_t *c1, *c2;
    float *ratio;
} slerp_axis;

static void slerp_axis_fini(slerp_axis *a)
{
    lm_free(a->c1);
    lm_free(a->c2);
    lm_free(a->ratio);
}

/* torch.nn.functional.interpolate(ramp, size=n, mode="bilinear") at output j, in float32
 * as PyTorch's CPU kernel evaluates it (align_corners=False): ramp(i) = i, or with
 * `plus_one` ComfyUI's second ramp 1, 2, …, len-1, len-1. */
static float ramp_at(int64_t len, int64_t n, int64_t j, bool plus_one)
{
    float scale = (float)len / (float)n;
    float real = scale * ((float)j + 0.5f) - 0.5f;
    real = real < 0.0f ? 0.0f : real;
    int64_t i0 = (int64_t)floorf(real);
    i0 = i0 < len - 1 ? i0 : len - 1;
    int64_t i1 = i0 < len - 1 ? i0 + 1 : i0;
    float l1 = fminf(fmaxf(real - (float)i0, 0.0f), 1.0f), l0 = 1.0f - l1;
    float v0 = (float)i0, v1 = (float)i1;
    if (plus_one) {
        v0 = (float)(i0 < len - 1 ? i0 + 1 : len - 1);
        v1 = (float)(i1 < len - 1 ? i1 + 1 : len - 1);
    }
    return v0 * l0 + v1 * l1;
}

/* comfy.utils.bislerp's generate_bilinear_data for a `len` -> `n` axis. */
static lm_status slerp_axis_build(slerp_axis *a, int64_t len, int64_t n, lm_error *err)
{
    a->n = n;
    a->c1 = lm_calloc((size_t)n, sizeof(*a->c1));
    a->c2 = lm_calloc((size_t)n, sizeof(*a->c2));
    a->ratio = lm_calloc((size_t)n, sizeof(*a->ratio));
    if (!a->c1 || !a->c2 || !a->ratio) {
        slerp_axis_fini(a);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory resizing an image");
    }
    for (int64_t i = 0; i < n; i++) {
        float c1 = ramp_at(len, n, i, false);
        a->ratio[i] = c1 - floorf(c1);
        a->c1[i] = (int64_t)c1; /* torch's .to(int64) truncates */
        a->c2[i] = (int64_t)ramp_at(len, n, i, true);
    }
    return LM_OK;
}

/* ComfyUI's slerp of the C-vectors b1 and b2 at ratio r, in float32 (sums in double): the
 * unit vectors move along the great circle, the norm goes linearly from |b1| to |b2|. A
 * zero vector's direction counts as 0; nearly equal directions (dot > 1 - 1e-5) give b1
 * itself, nearly opposite ones (dot < 1e-5 - 1) the linear interpolation. */
static void slerp(float *dst, const float *b1, const float *b2, int64_t c, float r)
{
    double s1 = 0.0, s2 = 0.0, dot = 0.0;
    for (int64_t k = 0; k < c; k++) {
        s1 += (double)b1[k] * (double)b1[k];
        s2 += (double)b2[k] * (double)b2[k];
    }
    float n1 = (float)sqrt(s1), n2 = (float)sqrt(s2);
    for (int64_t k = 0; k < c; k++)
        dot += (double)((n1 != 0.0f ? b1[k] / n1 : 0.0f) * (n2 != 0.0f ? b2[k] / n2 : 0.0f));
    float d = (float)dot;
    if (d > (float)(1.0 - 1e-5)) {
        memcpy(dst, b1, (size_t)c * sizeof(float));
        return;
    }
    if (d < (float)(1e-5 - 1.0)) {
        for (int64_t k = 0; k < c; k++)
            dst[k] = b1[k] * (1.0f - r) + b2[k] * r;
        return;
    }
    float omega = acosf(d), so = sinf(omega);
    float w1 = sinf((1.0f - r) * omega) / so, w2 = sinf(r * omega) / so;
    float norm = n1 * (1.0f - r) + n2 * r;
    for (int64_t k = 0; k < c; k++) {
        float u1 = n1 != 0.0f ? b1[k] / n1 : 0.0f, u2 = n2 != 0.0f ? b2[k] / n2 : 0.0f;
        dst[k] = (w1 * u1 + w2 * u2) * norm;
    }
}

/* One bislerp job: a source image's crop, the two axes, and where the passes write. */
typedef struct {
    const float *src;
    const crop_box *box;
    const slerp_axis *ax, *ay;
    float *tmp; /* [ch, n_w, c] after the width pass */
    float *dst; /* [n_h, n_w, c] */
} slerp_job;

/* Width pass, one source row of the crop per call. */
static void slerp_row_pass(void *user, size_t index, int tid)
{
    (void)tid;
    const slerp_job *j = user;
    int64_t y = (int64_t)index, c = j->box->c, nw = j->ax->n;
    const float *row = j->src + ((j->box->y0 + y) * j->box->w + j->box->x0) * c;
    for (int64_t x = 0; x < nw; x++)
        slerp(j->tmp + (y * nw + x) * c, row + j->ax->c1[x] * c, row + j->ax->c2[x] * c, c,
              j->ax->ratio[x]);
}

/* Height pass, one output row per call. */
static void slerp_column_pass(void *user, size_t index, int tid)
{
    (void)tid;
    const slerp_job *j = user;
    int64_t y = (int64_t)index, c = j->box->c, nw = j->ax->n;
    const float *r1 = j->tmp + j->ay->c1[y] * nw * c, *r2 = j->tmp + j->ay->c2[y] * nw * c;
    for (int64_t x = 0; x < nw; x++)
        slerp(j->dst + (y * nw + x) * c, r1 + x * c, r2 + x * c, c, j->ay->ratio[y]);
}

/* ComfyUI's center crop: the middle of the source with the target's aspect ratio. */
static crop_box center_box(const lm_tensor *shape, int64_t width, int64_t height, bool crop)
{
    crop_box b = { .h = shape->shape[1], .w = shape->shape[2], .c = shape->shape[3] };
    b.ch = b.h;
    b.cw = b.w;
    if (!crop)
        return b;
    double old_aspect = (double)b.w / (double)b.h, new_aspect = (double)width / (double)height;
    if (old_aspect > new_aspect)
        b.x0 = (int64_t)nearbyint(((double)b.w - (double)b.w * (new_aspect / old_aspect)) / 2);
    else if (old_aspect < new_aspect)
        b.y0 = (int64_t)nearbyint(((double)b.h - (double)b.h * (old_aspect / new_aspect)) / 2);
    b.cw = b.w - 2 * b.x0;
    b.ch = b.h - 2 * b.y0;
    if (b.cw < 1 || b.ch < 1) { /* extreme ratios: keep one row/column */
        b.x0 = b.cw < 1 ? (b.w - 1) / 2 : b.x0;
        b.y0 = b.ch < 1 ? (b.h - 1) / 2 : b.y0;
        b.cw = b.cw < 1 ? 1 : b.cw;
        b.ch = b.ch < 1 ? 1 : b.ch;
    }
    return b;
}

/* The separable filters over every image of the batch. */
static lm_status resize_separable(lm_ctx *ctx, const float *data, const crop_box *box, int64_t b,
                                  lm_resample method, float *dst, int64_t width, int64_t height,
                                  lm_error *err)
{
    axis ax = { 0 }, ay = { 0 };
    float *tmp = NULL;
    lm_status st = axis_build(&ax, method, box->cw, width, err);
    if (st == LM_OK)
        st = axis_build(&ay, method, box->ch, height, err);
    if (st == LM_OK && !(tmp = lm_malloc((size_t)(box->ch * width * box->c) * sizeof(float))))
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory resizing an image");
    for (int64_t i = 0; st == LM_OK && i < b; i++) {
        if (ctx && lm_ctx_cancelled(ctx))
            st = lm_errorf(err, LM_ECANCELLED, "interrupted", "interrupted while resizing");
        else
            resize_one(data + i * box->h * box->w * box->c, box, &ax, &ay, tmp,
                       dst + i * height * width * box->c);
    }
    lm_free(tmp);
    axis_fini(&ax);
    axis_fini(&ay);
    return st;
}

/* bislerp over every image of the batch: the width pass, then the height pass. */
static lm_status resize_bislerp(lm_ctx *ctx, const float *data, const crop_box *box, int64_t b,
                                float *dst, int64_t width, int64_t height, lm_error *err)
{
    slerp_axis ax = { 0 }, ay = { 0 };
    float *tmp = NULL;
    lm_status st = slerp_axis_build(&ax, box->cw, width, err);
    if (st == LM_OK)
        st = slerp_axis_build(&ay, box->ch, height, err);
    if (st == LM_OK && !(tmp = lm_malloc((size_t)(box->ch * width * box->c) * sizeof(float))))
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory resizing an image");
    slerp_job job = { .box = box, .ax = &ax, .ay = &ay, .tmp = tmp };
    for (int64_t i = 0; st == LM_OK && i < b; i++) {
        if (ctx && lm_ctx_cancelled(ctx)) {
            st = lm_errorf(err, LM_ECANCELLED, "interrupted", "interrupted while resizing");
            break;
        }
        job.src = data + i * box->h * box->w * box->c;
        job.dst = dst + i * height * width * box->c;
        lm_pool_run(lm_pool_default(), (size_t)box->ch, slerp_row_pass, &job);
        lm_pool_run(lm_pool_default(), (size_t)height, slerp_column_pass, &job);
    }
    lm_free(tmp);
    slerp_axis_fini(&ax);
    slerp_axis_fini(&ay);
    return st;
}

lm_status lm_image_nodes__resize(lm_ctx *ctx, const lm_tensor *shape, const float *data,
                                 int64_t width, int64_t height, lm_resample method,
                                 bool center_crop, lm_tensor **out, lm_error *err)
{
    *out = NULL;
    crop_box box = center_box(shape, width, height, center_crop);
    int64_t b = shape->shape[0];
    lm_status st = lm_image_nodes__new(out, b, height, width, box.c, err);
    if (st != LM_OK)
        return st;
    float *dst = lm_tensor_data(*out);
    if (method == LM_RESAMPLE_BISLERP)
        st = resize_bislerp(ctx, data, &box, b, dst, width, height, err);
    else
        st = resize_separable(ctx, data, &box, b, method, dst, width, height, err);
    if (st != LM_OK) {
        lm_tensor_free(*out);
        *out = NULL;
    }
    return st;
}
