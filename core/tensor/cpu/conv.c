/* core/tensor/cpu/conv.c — 2-D convolution as im2col tiles + sgemm.
 *
 * One pool task per (image, tile of T output pixels): the task unfolds its pixels into a
 * [Ci*kh*kw, T] column block in its scratch (zeros where the window meets the padding,
 * which may differ per side) and runs out[:, tile] = W · cols with OpenBLAS, bias first.
 * T is chosen so the block stays near 2 MiB whatever the channel count. A 1x1 stride-1
 * convolution without padding skips the unfolding and multiplies the input in place.
 * A non-F32 weight is converted once per call into a temporary (one layer's weight, freed
 * at return; VAE layers are at most a few MiB). */
#include "core/base/alloc.h"
#include "core/tensor/cpu/cpu.h"

#include <cblas.h>
#include <string.h>

typedef struct {
    const float *x, *w, *bias;
    float *out;
    int64_t b, ci, h, wd, co, kh, kw, ho, wo, ck, tile, tiles;
    int stride, pad_top, pad_left;
    lm_cpu_scratch scratch;
} conv_job;

/* One output row's segment [ox0, ox1) of cols row (c, ky, kx): the window's valid columns
 * are a strided run of the input row, the rest are padding zeros. */
static void unfold_segment(const conv_job *j, const float *src_row, float *dst, int64_t ox0,
                           int64_t ox1, int64_t kx)
{
    int64_t s = j->stride, off = kx - j->pad_left;
    /* valid ox: 0 <= ox*s + off < wd */
    int64_t lo = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t hi = j->wd - off <= 0 ? 0 : (j->wd - off + s - 1) / s;
    lo = LM_MAX(lo, ox0);
    hi = LM_MIN(hi, ox1);
    for (int64_t ox = ox0; ox < LM_MIN(lo, ox1); ox++)
        dst[ox - ox0] = 0.0f;
    if (src_row && s == 1 && hi > lo)
        memcpy(dst + (lo - ox0), src_row + lo + off, (size_t)(hi - lo) * sizeof(float));
    else
        for (int64_t ox = lo; ox < hi; ox++)
            dst[ox - ox0] = src_row ? src_row[ox * s + off] : 0.0f;
    for (int64_t ox = LM_MAX(hi, lo); ox < ox1; ox++)
        dst[ox - ox0] = 0.0f;
}

/* cols[r][t] for r = (c, ky, kx) and output pixels p0 .. p0+n-1, row segment by segment. */
static void unfold(const conv_job *j, const float *x, float *cols, int64_t p0, int64_t n)
{
    for (int64_t r = 0; r < j->ck; r++) {
        int64_t c = r / (j->kh * j->kw), ky = (r / j->kw) % j->kh, kx = r % j->kw;
        const float *plane = x + c * j->h * j->wd;
        float *dst = cols + r * n;
        for (int64_t p = p0; p < p0 + n;) {
            int64_t oy = p / j->wo, ox0 = p % j->wo;
            int64_t ox1 = LM_MIN(j->wo, ox0 + (p0 + n - p));
            int64_t iy = oy * j->stride - j->pad_top + ky;
            const float *row = iy >= 0 && iy < j->h ? plane + iy * j->wd : NULL;
            unfold_segment(j, row, dst + (p - p0), ox0, ox1, kx);
            p += ox1 - ox0;
        }
    }
}

static void conv_task(void *user, size_t task, int tid)
{
    conv_job *j = user;
    int64_t bi = (int64_t)task / j->tiles, p0 = ((int64_t)task % j->tiles) * j->tile;
    int64_t hw = j->ho * j->wo, n = LM_MIN(j->tile, hw - p0);
    const float *x = j->x + bi * j->ci * j->h * j->wd;
    float *out = j->out + bi * j->co * hw + p0;
    const float *cols;
    int64_t ldb;
    bool direct = j->kh == 1 && j->kw == 1 && j->stride == 1 && j->pad_top == 0 &&
                  j->pad_left == 0 && j->ho == j->h && j->wo == j->wd;
    if (direct) {
        cols = x + p0;
        ldb = hw;
    } else {
        float *s = lm_cpu_scratch_get(&j->scratch, tid);
        if (!s)
            return;
        unfold(j, x, s, p0, n);
        cols = s;
        ldb = n;
    }
    if (j->bias)
        for (int64_t o = 0; o < j->co; o++)
            lm_cpu_fill_f32(out + o * hw, n, j->bias[o]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)j->co, (int)n, (int)j->ck, 1.0f,
                j->w, (int)j->ck, cols, (int)ldb, j->bias ? 1.0f : 0.0f, out, (int)hw);
}

static void conv_tiles(conv_job *j)
{
    int64_t hw = j->ho * j->wo, threads = lm_pool_threads(lm_cpu_pool());
    int64_t t = LM_MAX(16, LM_MIN(512, 524288 / LM_MAX(j->ck, 1)));
    int64_t per_image = (threads * 3 + j->b - 1) / j->b;
    int64_t fair = (hw + per_image - 1) / per_image;
    if (fair < t)
        t = LM_MAX(16, (fair + 15) / 16 * 16);
    j->tile = LM_MIN(t, hw);
    j->tiles = (hw + j->tile - 1) / j->tile;
}

lm_status lm_cpu_conv2d(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    const lm_tensor *x = c->in[0], *w = c->in[1];
    conv_job j = {
        .x = lm_cpu_f32(x),
        .bias = c->in[2] ? lm_cpu_f32(c->in[2]) : NULL,
        .out = lm_cpu_f32(c->out),
        .b = x->shape[0],
        .ci = x->shape[1],
        .h = x->shape[2],
        .wd = x->shape[3],
        .co = w->shape[0],
        .kh = w->shape[2],
        .kw = w->shape[3],
        .ho = c->out->shape[2],
        .wo = c->out->shape[3],
        .stride = c->p.conv2d.stride,
        .pad_top = c->p.conv2d.pad_top,
        .pad_left = c->p.conv2d.pad_left,
    };
    j.ck = j.ci * j.kh * j.kw;
    float *wf = NULL;
    if (w->dtype == LM_DTYPE_F32) {
        j.w = lm_cpu_f32(w);
    } else {
        wf = lm_malloc((size_t)(j.co * j.ck) * sizeof(float));
        if (!wf)
            return lm_cpu_oom(err, "lm_conv2d");
        lm_cpu_weight_rows(wf, w, 0, j.co, j.ck);
        j.w = wf;
    }
    if (j.ck == 0) {
        for (int64_t i = 0; i < j.b * j.co; i++)
            lm_cpu_fill_f32(j.out + i * j.ho * j.wo, j.ho * j.wo, j.bias ? j.bias[i % j.co] : 0);
        lm_free(wf);
        return LM_OK;
    }
    conv_tiles(&j);
    lm_cpu_scratch_init(&j.scratch, (size_t)(j.ck * j.tile));
    lm_cpu_parallel((size_t)(j.b * j.tiles), conv_task, &j);
    bool failed = atomic_load(&j.scratch.failed);
    lm_cpu_scratch_free(&j.scratch);
    lm_free(wf);
    return failed ? lm_cpu_oom(err, "lm_conv2d") : LM_OK;
}
