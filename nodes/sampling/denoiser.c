/* nodes/sampling/denoiser.c — the sampler's model callback for SD3 nodes: MMDiT forwards
 * under prepared conditioning entries, plus skip-layer guidance and inpainting
 * (sampling_nodes.h).
 *
 * Entries whose token counts differ are evaluated one forward each rather than padded to a
 * common length (ComfyUI repeats tokens to a common multiple; with joint attention that is
 * not the same computation, so separate forwards are the exact ones).
 *
 * Inpainting follows ComfyUI's KSamplerX0Inpaint with the flow model's noise scaling
 * (CONST.noise_scaling: sigma*noise + (1-sigma)*latent), element by element in float32 in
 * ComfyUI's order, on the host; the mask, its complement, the latent and the noise are
 * prepared once per run (comfy.utils.reshape_mask: bilinear to the latent's size, repeated
 * over channels and batch). */
#include "core/base/alloc.h"
#include "core/tensor/ops.h"
#include "nodes/image/image_nodes.h"
#include "nodes/sampling/sampling_nodes.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct lm_sd3_prepared {
    lm_tensor *context; /* [1, T, context_in] F32 host */
    lm_tensor *pooled;  /* [1, adm_in] F32 host */
    bool positive;
};

/* t [1, ..., D] as F32 with its last dim made `width` wide: zero columns added, or columns
 * cut when they hold only zeros (text encoders padded wider than a small model takes). */
static lm_status fit_width(lm_tensor **out, const lm_tensor *t, int64_t width, const char *what,
                           lm_error *err)
{
    lm_tensor *host = NULL, *res = NULL;
    *out = NULL;
    lm_status st = lm_tensor_to_f32_host(&host, t, err);
    if (st != LM_OK)
        return st;
    int64_t d = host->shape[host->ndim - 1], rows = lm_tensor_numel(host) / (d ? d : 1);
    if (d == width) {
        *out = host;
        return LM_OK;
    }
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, host->shape, sizeof(shape));
    shape[host->ndim - 1] = width;
    st = lm_tensor_zeros(&res, lm_backend_cpu(), LM_DTYPE_F32, host->ndim, shape, err);
    const float *src = lm_tensor_data(host);
    float *dst = res ? lm_tensor_data(res) : NULL;
    for (int64_t r = 0; st == LM_OK && r < rows; r++) {
        for (int64_t c = 0; c < d; c++) {
            if (c < width)
                dst[r * width + c] = src[r * d + c];
            else if (src[r * d + c] != 0.0f)
                st = lm_errorf(err, LM_EINVAL, "conditioning_mismatch",
                               "the conditioning's %s is %lld wide but the model takes %lld", what,
                               (long long)d, (long long)width);
        }
    }
    lm_tensor_free(host);
    if (st != LM_OK) {
        lm_error_hint(err, "use text encoders that belong to this model");
        lm_tensor_free(res);
        return st;
    }
    *out = res;
    return LM_OK;
}

static lm_status prepare(lm_sd3_denoiser *d, int i, const lm_sd3_cond_entry *e, bool positive,
                         lm_sample_cond *sc, lm_error *err)
{
    const lm_mmdit_config *cfg = lm_mmdit_config_of(d->mmdit);
    lm_sd3_prepared *p = &d->entries[i];
    p->positive = positive;
    lm_status st = fit_width(&p->context, e->context, cfg->context_in, "context", err);
    if (st == LM_OK)
        st = fit_width(&p->pooled, e->pooled, cfg->adm_in, "pooled vector", err);
    *sc = (lm_sample_cond){ .cond = p,
                            .start_percent = e->start_percent,
                            .end_percent = e->end_percent,
                            .strength = e->strength };
    return st;
}

lm_status lm_sampling__denoiser_init(lm_sd3_denoiser *d, lm_ctx *ctx, const lm_sd3_model *model,
                                     const lm_sd3_conditioning *positive,
                                     const lm_sd3_conditioning *negative, double cfg, lm_error *err)
{
    memset(d, 0, sizeof(*d));
    size_t n = positive->n + negative->n;
    d->ctx = ctx;
    d->model = model;
    d->mmdit = lm_sd3_part_mmdit(model->mmdit);
    d->cfg = cfg;
    d->entries = lm_calloc(n ? n : 1, sizeof(*d->entries));
    d->n_entries = n;
    d->pos = lm_calloc(positive->n ? positive->n : 1, sizeof(*d->pos));
    d->neg = lm_calloc(negative->n ? negative->n : 1, sizeof(*d->neg));
    if (!d->entries || !d->pos || !d->neg) {
        lm_sampling__denoiser_fini(d);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory preparing sampling");
    }
    lm_status st = LM_OK;
    for (size_t i = 0; st == LM_OK && i < positive->n; i++, d->n_pos++)
        st = prepare(d, (int)i, &positive->entries[i], true, &d->pos[i], err);
    if (st != LM_OK)
        lm_error_at_node(err, NULL, NULL, "positive");
    for (size_t i = 0; st == LM_OK && i < negative->n; i++, d->n_neg++)
        st = prepare(d, (int)(positive->n + i), &negative->entries[i], false, &d->neg[i], err);
    if (st != LM_OK) {
        lm_error_at_node(err, NULL, NULL, "negative");
        lm_sampling__denoiser_fini(d);
    }
    return st;
}

void lm_sampling__denoiser_fini(lm_sd3_denoiser *d)
{
    for (size_t i = 0; d->entries && i < d->n_entries; i++) {
        lm_tensor_free(d->entries[i].context);
        lm_tensor_free(d->entries[i].pooled);
    }
    lm_free(d->entries);
    lm_free(d->pos);
    lm_free(d->neg);
    lm_tensor_free(d->mask);
    lm_tensor_free(d->keep);
    lm_tensor_free(d->latent);
    lm_tensor_free(d->noise);
    memset(d, 0, sizeof(*d));
}

/* ---- inpainting: the mask ---- */

static lm_status bad_mask(const lm_tensor *m, const char *why, lm_error *err)
{
    char d[96];
    lm_tensor_describe(m, d, sizeof(d));
    lm_errorf(err, LM_EINVAL, "bad_noise_mask", "the latent's noise mask is %s; %s", d, why);
    lm_error_hint(err, "give SetLatentNoiseMask a MASK [B, H, W] with no empty dimension");
    return LM_EINVAL;
}

/* mask [n, h, w] copied to every channel of each of the B rows (row b takes mask b % n:
 * repeat_to_batch_size tiles a short batch and cuts a long one). */
static void broadcast_mask(float *dst, const float *mask, int64_t n, const int64_t shape[4])
{
    int64_t hw = shape[2] * shape[3];
    for (int64_t b = 0; b < shape[0]; b++)
        for (int64_t c = 0; c < shape[1]; c++)
            memcpy(dst + (b * shape[1] + c) * hw, mask + (b % n) * hw, (size_t)hw * sizeof(float));
}

lm_status lm_sampling__prepare_mask(lm_tensor **out, const lm_tensor *noise_mask,
                                    const int64_t shape[4], lm_error *err)
{
    lm_tensor *host = NULL, *img = NULL, *sized = NULL;
    *out = NULL;
    if (noise_mask->ndim < 2 || lm_tensor_numel(noise_mask) == 0)
        return bad_mask(noise_mask, "a mask is [..., height, width]", err);
    int64_t h = noise_mask->shape[noise_mask->ndim - 2],
            w = noise_mask->shape[noise_mask->ndim - 1];
    int64_t n = lm_tensor_numel(noise_mask) / (h * w);
    int64_t nhwc[4] = { n, h, w, 1 }; /* [n, 1, H, W] in memory, as a one-channel image */
    lm_status st = lm_tensor_to_f32_host(&host, noise_mask, err);
    if (st == LM_OK)
        st = lm_tensor_view_reshape(&img, host, 4, nhwc, err);
    if (st == LM_OK)
        st = lm_image_nodes__resize(NULL, img, lm_tensor_data(img), shape[3], shape[2],
                                    LM_RESAMPLE_BILINEAR, false, &sized, err); // [n, h, w, 1]
    if (st == LM_OK)
        st = lm_tensor_new(out, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, err); // [B, C, h, w]
    if (st == LM_OK)
        broadcast_mask(lm_tensor_data(*out), lm_tensor_data(sized), n, shape);
    lm_tensor_free(host);
    lm_tensor_free(img);
    lm_tensor_free(sized);
    return st;
}

lm_status lm_sampling__denoiser_set_mask(lm_sd3_denoiser *d, const lm_tensor *noise_mask,
                                         const lm_tensor *latent, const lm_tensor *noise,
                                         lm_error *err)
{
    if (latent->ndim != 4)
        return lm_errorf(err, LM_EINTERNAL, NULL, "inpainting needs a [B, C, h, w] latent");
    lm_status st = lm_sampling__prepare_mask(&d->mask, noise_mask, latent->shape, err);
    if (st == LM_OK)
        st = lm_tensor_to_f32_host(&d->latent, latent, err);
    if (st == LM_OK && noise)
        st = lm_tensor_to_f32_host(&d->noise, noise, err);
    if (st == LM_OK)
        st = lm_tensor_new(&d->keep, lm_backend_cpu(), LM_DTYPE_F32, 4, latent->shape, err);
    if (st != LM_OK)
        return st;
    const float *m = lm_tensor_data(d->mask);
    float *k = lm_tensor_data(d->keep);
    for (int64_t i = 0, count = lm_tensor_numel(d->keep); i < count; i++)
        k[i] = 1.0f - m[i]; /* ComfyUI's latent_mask = 1. - denoise_mask */
    return LM_OK;
}

/* ---- forwards ---- */

/* A [n*b, ...] tensor: row block k is b copies of pick(conds[k]) ([1, ...] each). */
static lm_status stack(lm_tensor **out, const lm_sd3_prepared *const *conds, int n, int64_t b,
                       bool context, lm_error *err)
{
    const lm_tensor *first = context ? conds[0]->context : conds[0]->pooled;
    int64_t shape[LM_MAX_DIMS];
    memcpy(shape, first->shape, sizeof(shape));
    shape[0] = n * b;
    lm_status st = lm_tensor_new(out, lm_backend_cpu(), LM_DTYPE_F32, first->ndim, shape, err);
    for (int64_t r = 0; st == LM_OK && r < n * b; r++) {
        lm_tensor *row = NULL;
        const lm_sd3_prepared *c = conds[r / b];
        st = lm_tensor_view_slice(&row, *out, 0, r, r + 1, err);
        if (st == LM_OK)
            st = lm_tensor_copy(row, context ? c->context : c->pooled, err);
        lm_tensor_free(row);
    }
    if (st != LM_OK) {
        lm_tensor_free(*out);
        *out = NULL;
    }
    return st;
}

static bool poll_cancel(void *user)
{
    return lm_ctx_cancelled(user);
}

/* v for x [n*b, C, h, w] under conds[0..n), in one forward. */
static lm_status forward_batch(const lm_sd3_denoiser *d, lm_tensor **v, const lm_tensor *x,
                               const lm_tensor *sigma, const lm_sd3_prepared *const *conds, int n,
                               const lm_mmdit_opts *mo, lm_error *err)
{
    lm_tensor *ctx = NULL, *y = NULL;
    int64_t b = x->shape[0] / n;
    lm_status st = stack(&ctx, conds, n, b, true, err); // [n*b, T, D]
    if (st == LM_OK)
        st = stack(&y, conds, n, b, false, err); // [n*b, P]
    if (st == LM_OK)
        st = lm_mmdit_forward(d->mmdit, x, sigma, ctx, y, mo, v, err); // [n*b, C, h, w]
    lm_tensor_free(ctx);
    lm_tensor_free(y);
    return st;
}

static bool same_tokens(const lm_sd3_prepared *const *conds, int n)
{
    for (int k = 1; k < n; k++)
        if (conds[k]->context->shape[1] != conds[0]->context->shape[1])
            return false;
    return true;
}

/* v for x under conds: one forward when the token counts agree, else one per entry. */
static lm_status forward(const lm_sd3_denoiser *d, lm_tensor **v, const lm_tensor *x,
                         const lm_tensor *sigma, const lm_sd3_prepared *const *conds, int n,
                         const lm_mmdit_opts *mo, lm_error *err)
{
    if (same_tokens(conds, n))
        return forward_batch(d, v, x, sigma, conds, n, mo, err);
    lm_tensor *parts[16] = { NULL };
    int64_t b = x->shape[0] / n;
    lm_status st = n <= 16 ? LM_OK : lm_errorf(err, LM_ELIMIT, NULL, "too many entries");
    for (int k = 0; st == LM_OK && k < n; k++) {
        lm_tensor *xs = NULL, *ss = NULL;
        st = lm_tensor_view_slice(&xs, x, 0, k * b, (k + 1) * b, err);
        if (st == LM_OK)
            st = lm_tensor_view_slice(&ss, sigma, 0, k * b, (k + 1) * b, err);
        if (st == LM_OK)
            st = forward_batch(d, &parts[k], xs, ss, &conds[k], 1, mo, err);
        lm_tensor_free(xs);
        lm_tensor_free(ss);
    }
    if (st == LM_OK)
        st = lm_concat(v, (const lm_tensor *const *)parts, n, 0, err);
    for (int k = 0; k < n && k < 16; k++)
        lm_tensor_free(parts[k]);
    return st;
}

/* denoised = x - v*sigma for x under conds. */
static lm_status denoised(const lm_sd3_denoiser *d, lm_tensor **out, const lm_tensor *x,
                          float sigma, const lm_sd3_prepared *const *conds, int n,
                          const lm_mmdit_opts *mo, lm_error *err)
{
    lm_tensor *s = NULL, *v = NULL;
    int64_t shape[1] = { x->shape[0] };
    lm_status st = lm_tensor_new(&s, lm_backend_cpu(), LM_DTYPE_F32, 1, shape, err); // [n*b]
    if (st == LM_OK)
        st = lm_fill(s, sigma, err);
    if (st == LM_OK)
        st = forward(d, &v, x, s, conds, n, mo, err); // [n*b, C, h, w]
    if (st == LM_OK)
        st = lm_mmdit_denoised(out, x, v, s, err);
    lm_tensor_free(s);
    lm_tensor_free(v);
    return st;
}

/* ---- skip-layer guidance ---- */

static bool cfg_is_one(double cfg)
{
    return fabs(cfg - 1.0) <= 1e-9 * fmax(fabs(cfg), 1.0); /* as the sampler decides */
}

/* ComfyUI's SkipLayerGuidance post-CFG condition: scale > 0 and sigma_end <= sigma <=
 * sigma_start in double. With cfg 0 the guided result ignores the positives, so SLG (added
 * through them) cannot apply. */
static bool slg_active(const lm_sd3_denoiser *d, float sigma)
{
    const lm_sd3_model *m = d->model;
    if (m->slg.n_layers == 0 || !(m->slg.scale > 0) || d->cfg == 0.0)
        return false;
    double s = (double)sigma,
           hi = lm_scheduler_percent_to_sigma(&m->sampling, m->slg.start_percent);
    double lo = lm_scheduler_percent_to_sigma(&m->sampling, m->slg.end_percent);
    return s >= lo && s <= hi;
}

/* rows[k] += (rows[k] - skipped[j]) * f for the positive row blocks k (j counts them). */
static lm_status add_guidance(lm_tensor *den, const lm_tensor *skipped, const int *pos, int n_pos,
                              int64_t b, float f, lm_error *err)
{
    lm_status st = LM_OK;
    for (int j = 0; st == LM_OK && j < n_pos; j++) {
        lm_tensor *a = NULL, *s = NULL, *diff = NULL, *upd = NULL, *sum = NULL;
        st = lm_tensor_view_slice(&a, den, 0, pos[j] * b, (pos[j] + 1) * b, err);
        if (st == LM_OK)
            st = lm_tensor_view_slice(&s, skipped, 0, j * b, (j + 1) * b, err);
        if (st == LM_OK)
            st = lm_sub(&diff, a, s, err);
        if (st == LM_OK)
            st = lm_scale(&upd, diff, f, 0.0f, err);
        if (st == LM_OK)
            st = lm_add(&sum, a, upd, err);
        if (st == LM_OK)
            st = lm_tensor_copy(a, sum, err);
        lm_tensor_free(a);
        lm_tensor_free(s);
        lm_tensor_free(diff);
        lm_tensor_free(upd);
        lm_tensor_free(sum);
    }
    return st;
}

static lm_status skip_layer_guidance(const lm_sd3_denoiser *d, lm_tensor *den, const lm_tensor *x,
                                     float sigma, const lm_sd3_prepared *const *conds, int n,
                                     lm_error *err)
{
    const lm_sd3_prepared *pc[16];
    int pos[16], n_pos = 0;
    int64_t b = x->shape[0] / n;
    for (int k = 0; k < n && k < 16; k++)
        if (conds[k]->positive)
            pc[n_pos] = conds[k], pos[n_pos++] = k;
    if (n_pos == 0)
        return LM_OK;
    lm_mmdit_opts mo = { .skip_layers = d->model->slg.layers,
                         .n_skip_layers = d->model->slg.n_layers,
                         .cancelled = d->ctx ? poll_cancel : NULL,
                         .user = d->ctx };
    lm_tensor *xp = NULL, *skipped = NULL;
    lm_status st = LM_OK;
    if (n_pos == n) {
        st = lm_tensor_view(&xp, x, err);
    } else { /* positives come first (the sampler's order) */
        st = lm_tensor_view_slice(&xp, x, 0, 0, n_pos * b, err);
    }
    if (st == LM_OK)
        st = denoised(d, &skipped, xp, sigma, pc, n_pos, &mo, err);
    float f = (float)(d->model->slg.scale / (cfg_is_one(d->cfg) ? 1.0 : d->cfg));
    if (st == LM_OK)
        st = add_guidance(den, skipped, pos, n_pos, b, f, err);
    lm_tensor_free(xp);
    lm_tensor_free(skipped);
    return st;
}

/* ---- inpainting: each evaluation ---- */

/* x (n row blocks of the latent batch) as a host F32 copy, checked against the mask. */
static lm_status inpaint_rows(const lm_sd3_denoiser *d, const lm_tensor *x, lm_tensor **h,
                              lm_error *err)
{
    const lm_tensor *m = d->mask;
    bool ok = x->ndim == 4 && x->shape[0] % m->shape[0] == 0;
    for (int i = 1; ok && i < 4; i++)
        ok = x->shape[i] == m->shape[i];
    if (!ok) {
        char xs[96], ms[96];
        lm_tensor_describe(x, xs, sizeof(xs));
        lm_tensor_describe(m, ms, sizeof(ms));
        return lm_errorf(err, LM_EINTERNAL, NULL, "the sampler's x is %s but the mask is %s", xs,
                         ms);
    }
    return lm_tensor_to_f32_host(h, x, err);
}

/* Before the model: x*mask + (sigma*noise + (1-sigma)*latent)*(1-mask), in float32. */
static lm_status inpaint_input(const lm_sd3_denoiser *d, lm_tensor **out, const lm_tensor *x,
                               float sigma, lm_error *err)
{
    lm_tensor *h = NULL;
    *out = NULL;
    lm_status st = inpaint_rows(d, x, &h, err);
    if (st != LM_OK)
        return st;
    const float *m = lm_tensor_data(d->mask), *k = lm_tensor_data(d->keep);
    const float *l = lm_tensor_data(d->latent), *z = d->noise ? lm_tensor_data(d->noise) : NULL;
    float *p = lm_tensor_data(h), rest = 1.0f - sigma;
    int64_t per = lm_tensor_numel(d->mask), count = lm_tensor_numel(h);
    for (int64_t i = 0; i < count; i++) {
        int64_t e = i % per;
        float noised = sigma * (z ? z[e] : 0.0f) + rest * l[e]; /* CONST.noise_scaling */
        p[i] = p[i] * m[e] + noised * k[e];
    }
    st = lm_tensor_move(&h, lm_tensor_backend(x), err); /* back where x was */
    *out = h;
    return st;
}

/* After the model: out*mask + latent*(1-mask), in float32; *den is replaced. */
static lm_status inpaint_output(const lm_sd3_denoiser *d, lm_tensor **den, lm_error *err)
{
    lm_tensor *h = NULL;
    lm_status st = inpaint_rows(d, *den, &h, err);
    if (st != LM_OK)
        return st;
    const float *m = lm_tensor_data(d->mask), *k = lm_tensor_data(d->keep);
    const float *l = lm_tensor_data(d->latent);
    float *p = lm_tensor_data(h);
    int64_t per = lm_tensor_numel(d->mask), count = lm_tensor_numel(h);
    for (int64_t i = 0; i < count; i++) {
        int64_t e = i % per;
        p[i] = p[i] * m[e] + l[e] * k[e];
    }
    st = lm_tensor_move(&h, lm_tensor_backend(*den), err); /* back where den was */
    if (st == LM_OK) {
        lm_tensor_free(*den);
        *den = h;
    }
    return st;
}

lm_status lm_sampling__denoise(lm_tensor **out, const lm_tensor *x, float sigma,
                               const void *const *conds, int n, void *user, lm_error *err)
{
    const lm_sd3_denoiser *d = user;
    const lm_sd3_prepared *const *pc = (const lm_sd3_prepared *const *)conds;
    lm_mmdit_opts mo = { .cancelled = d->ctx ? poll_cancel : NULL, .user = d->ctx };
    lm_tensor *xin = NULL;
    *out = NULL;
    lm_status st = d->mask ? inpaint_input(d, &xin, x, sigma, err) : LM_OK;
    if (xin)
        x = xin;
    if (st == LM_OK)
        st = denoised(d, out, x, sigma, pc, n, &mo, err);
    if (st == LM_OK && slg_active(d, sigma))
        st = skip_layer_guidance(d, *out, x, sigma, pc, n, err);
    if (st == LM_OK && d->mask)
        st = inpaint_output(d, out, err);
    lm_tensor_free(xin);
    if (st != LM_OK) {
        lm_tensor_free(*out);
        *out = NULL;
    }
    return st;
}
