/* nodes/image/resample.c — image resampling (ImageScale, ImageBlend) and the small helpers
 * the image nodes share.
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
 * row by row on the default thread pool (rows are independent). */
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

lm_status lm_image_nodes__resize(lm_ctx *ctx, const lm_tensor *shape, const float *data,
                                 int64_t width, int64_t height, lm_resample method,
                                 bool center_crop, lm_tensor **out, lm_error *err)
{
    *out = NULL;
    crop_box box = center_box(shape, width, height, center_crop);
    int64_t b = shape->shape[0];
    axis ax = { 0 }, ay = { 0 };
    float *tmp = NULL;
    lm_status st = lm_image_nodes__new(out, b, height, width, box.c, err);
    if (st == LM_OK)
        st = axis_build(&ax, method, box.cw, width, err);
    if (st == LM_OK)
        st = axis_build(&ay, method, box.ch, height, err);
    if (st == LM_OK && !(tmp = lm_malloc((size_t)(box.ch * width * box.c) * sizeof(float))))
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory resizing an image");
    float *dst = *out ? lm_tensor_data(*out) : NULL;
    for (int64_t i = 0; st == LM_OK && i < b; i++) {
        if (ctx && lm_ctx_cancelled(ctx))
            st = lm_errorf(err, LM_ECANCELLED, "interrupted", "interrupted while resizing");
        else
            resize_one(data + i * box.h * box.w * box.c, &box, &ax, &ay, tmp,
                       dst + i * height * width * box.c);
    }
    lm_free(tmp);
    axis_fini(&ax);
    axis_fini(&ay);
    if (st != LM_OK) {
        lm_tensor_free(*out);
        *out = NULL;
    }
    return st;
}
