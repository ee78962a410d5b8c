/* nodes/sd3/vae.c — the SD3 VAE: weight binding, encoder and decoder passes, latent format.
 *
 * The network is the reference's (golden/README.md "VAE"; the SD3 paper's 16-channel
 * autoencoder): res blocks x' = conv2(silu(norm2(conv1(silu(norm1(x)))))) + shortcut(x),
 * the shortcut a 1x1 nin_shortcut when the width changes; a mid block (res, single-head
 * attention over all pixels, res); Downsample = zero pad right/bottom by 1 then a 3x3
 * stride-2 conv; Upsample = nearest 2x then a 3x3 conv. The encoder ends in cat(mean,
 * logvar); the decoder runs its levels from the deepest up.
 *
 * Every tensor is bound once at load against the shape the inferred config implies, so a
 * pass never meets a surprise. Activations are freed as soon as the next one exists: a
 * res block holds at most its input and two temporaries of its size. The 1x1 attention
 * projections are bound as [C, C] matrices and run as lm_linear on pixel tokens, which
 * spares a transpose per projection.
 *
 * Devices: the weights are bound as views of the mapping, then (lm_vae_load_on on a device)
 * each replaced by its copy there, same dtype. The public passes move a host input to the
 * VAE's backend, run there and bring their results back to the host (vae_impl.h). */
#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/tensor/ops.h"
#include "nodes/sd3/vae_impl.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    lm_tensor *w, *b; /* conv [Co, Ci, k, k] + [Co]; norm [C] + [C]; attention proj [C, C] */
} vae_param;

typedef struct {
    vae_param norm1, conv1, norm2, conv2, nin; /* nin.w NULL: identity shortcut */
} vae_res;

typedef struct {
    vae_param norm, q, k, v, proj;
} vae_attn;

typedef struct {
    vae_param conv_in, norm_out, conv_out;
    vae_res block[LM_VAE_MAX_LEVELS][LM_VAE_MAX_BLOCKS];
    vae_param resample[LM_VAE_MAX_LEVELS]; /* w NULL: none at that level */
    vae_res mid1, mid2;
    vae_attn attn; /* norm.w NULL: no mid attention */
} vae_net;

struct lm_vae {
    lm_vae_config cfg;
    lm_backend *be;      /* where it computes: the CPU, or the device holding the weights */
    size_t device_bytes; /* weight bytes copied to that device (0 on the CPU) */
    vae_net enc, dec;
};

/* ---- binding ------------------------------------------------------------------------ */

typedef struct {
    const lm_sd3_weights *w;
    lm_error *err;
} binder;

static lm_status bind_tensor(binder *b, const char *name, int ndim, const int64_t *shape,
                             lm_tensor **out)
{
    return lm_sd3_weights_get(b->w, name, ndim, shape, out, b->err);
}

/* "<path>.weight" [co, ci, k, k] (k 0: a norm's [co]) and "<path>.bias" [co]. */
static lm_status bind_param(binder *b, vae_param *p, const char *path, int co, int ci, int k)
{
    char name[160];
    int64_t ws[4] = { co, ci, k, k }, bs[1] = { co };
    snprintf(name, sizeof(name), "%s.weight", path);
    lm_status st = bind_tensor(b, name, k ? 4 : 1, ws, &p->w);
    if (st != LM_OK)
        return st;
    snprintf(name, sizeof(name), "%s.bias", path);
    return bind_tensor(b, name, 1, bs, &p->b);
}

static lm_status bind_res(binder *b, vae_res *r, const char *path, int ci, int co)
{
    char name[160];
    snprintf(name, sizeof(name), "%s.nin_shortcut.weight", path);
    bool nin = ci != co || lm_sd3_weights_has(b->w, name);
    const struct {
        vae_param *p;
        const char *leaf;
        int co, ci, k;
    } parts[5] = {
        { &r->norm1, "norm1", ci, 0, 0 },       { &r->conv1, "conv1", co, ci, 3 },
        { &r->norm2, "norm2", co, 0, 0 },       { &r->conv2, "conv2", co, co, 3 },
        { &r->nin, "nin_shortcut", co, ci, 1 },
    };
    for (int i = 0; i < (nin ? 5 : 4); i++) {
        snprintf(name, sizeof(name), "%s.%s", path, parts[i].leaf);
        lm_status st = bind_param(b, parts[i].p, name, parts[i].co, parts[i].ci, parts[i].k);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

/* A 1x1 conv bound as a [c, c] matrix for lm_linear. */
static lm_status bind_proj(binder *b, vae_param *p, const char *path, int c)
{
    lm_status st = bind_param(b, p, path, c, c, 1);
    if (st != LM_OK)
        return st;
    lm_tensor *m = NULL;
    int64_t shape[2] = { c, c };
    st = lm_tensor_view_reshape(&m, p->w, 2, shape, b->err);
    lm_tensor_free(p->w);
    p->w = m;
    return st;
}

static lm_status bind_attn(binder *b, vae_attn *a, const char *side, int c)
{
    char path[96];
    vae_param *projs[4] = { &a->q, &a->k, &a->v, &a->proj };
    const char *leaves[4] = { "q", "k", "v", "proj_out" };
    snprintf(path, sizeof(path), "%s.mid.attn_1.norm", side);
    lm_status st = bind_param(b, &a->norm, path, c, 0, 0);
    for (int i = 0; i < 4 && st == LM_OK; i++) {
        snprintf(path, sizeof(path), "%s.mid.attn_1.%s", side, leaves[i]);
        st = bind_proj(b, projs[i], path, c);
    }
    return st;
}

/* mid.block_1 (ci -> mid width), mid.attn_1, mid.block_2. */
static lm_status bind_mid(binder *b, vae_net *n, const lm_vae_half *h, const char *side, int ci)
{
    char path[96];
    snprintf(path, sizeof(path), "%s.mid.block_1", side);
    lm_status st = bind_res(b, &n->mid1, path, ci, h->mid_width);
    if (st == LM_OK && h->mid_attn)
        st = bind_attn(b, &n->attn, side, h->mid_width);
    snprintf(path, sizeof(path), "%s.mid.block_2", side);
    return st == LM_OK ? bind_res(b, &n->mid2, path, h->mid_width, h->mid_width) : st;
}

/* Level i's res blocks and resampling conv; *c is the width coming in, then going out. */
static lm_status bind_level(binder *b, vae_net *n, const lm_vae_half *h, const char *side, int i,
                            int *c)
{
    bool enc = side[0] == 'e';
    char path[96];
    lm_status st = LM_OK;
    for (int j = 0; j < h->blocks[i] && st == LM_OK; j++) {
        snprintf(path, sizeof(path), "%s.%s.%d.block.%d", side, enc ? "down" : "up", i, j);
        st = bind_res(b, &n->block[i][j], path, *c, h->width[i]);
        *c = h->width[i];
    }
    if (st != LM_OK || !h->resample[i])
        return st;
    snprintf(path, sizeof(path), "%s.%s.%d.%s.conv", side, enc ? "down" : "up", i,
             enc ? "downsample" : "upsample");
    return bind_param(b, &n->resample[i], path, *c, *c, 3);
}

static lm_status bind_encoder(binder *b, vae_net *n, const lm_vae_config *cfg)
{
    const lm_vae_half *h = &cfg->encoder;
    int c = h->stem_width;
    lm_status st = bind_param(b, &n->conv_in, "encoder.conv_in", c, cfg->image_channels, 3);
    for (int i = 0; i < h->levels && st == LM_OK; i++)
        st = bind_level(b, n, h, "encoder", i, &c);
    if (st == LM_OK)
        st = bind_mid(b, n, h, "encoder", c);
    if (st == LM_OK)
        st = bind_param(b, &n->norm_out, "encoder.norm_out", h->mid_width, 0, 0);
    if (st == LM_OK)
        st = bind_param(b, &n->conv_out, "encoder.conv_out", 2 * cfg->z_channels, h->mid_width, 3);
    return st;
}

static lm_status bind_decoder(binder *b, vae_net *n, const lm_vae_config *cfg)
{
    const lm_vae_half *h = &cfg->decoder;
    int c = h->mid_width;
    lm_status st = bind_param(b, &n->conv_in, "decoder.conv_in", h->stem_width, cfg->z_channels, 3);
    if (st == LM_OK)
        st = bind_mid(b, n, h, "decoder", h->stem_width);
    for (int i = h->levels - 1; i >= 0 && st == LM_OK; i--)
        st = bind_level(b, n, h, "decoder", i, &c);
    if (st == LM_OK)
        st = bind_param(b, &n->norm_out, "decoder.norm_out", c, 0, 0);
    if (st == LM_OK)
        st = bind_param(b, &n->conv_out, "decoder.conv_out", cfg->image_channels, c, 3);
    return st;
}

/* ---- every weight slot, for the device copy and for freeing ---------------------- */

static lm_status each_param(vae_param *p, lm_sd3_slot_fn fn, void *user)
{
    lm_status st = fn(&p->w, user);
    return st == LM_OK ? fn(&p->b, user) : st;
}

static lm_status each_res(vae_res *r, lm_sd3_slot_fn fn, void *user)
{
    vae_param *ps[5] = { &r->norm1, &r->conv1, &r->norm2, &r->conv2, &r->nin };
    lm_status st = LM_OK;
    for (int i = 0; i < 5 && st == LM_OK; i++)
        st = each_param(ps[i], fn, user);
    return st;
}

/* Calls fn on every weight slot of one half, absent (NULL) ones included. */
static lm_status each_net(vae_net *n, lm_sd3_slot_fn fn, void *user)
{
    vae_param *ps[8] = { &n->conv_in, &n->norm_out, &n->conv_out, &n->attn.norm,
                         &n->attn.q,  &n->attn.k,   &n->attn.v,   &n->attn.proj };
    lm_status st = LM_OK;
    for (int i = 0; i < 8 && st == LM_OK; i++)
        st = each_param(ps[i], fn, user);
    for (int i = 0; i < LM_VAE_MAX_LEVELS && st == LM_OK; i++) {
        for (int j = 0; j < LM_VAE_MAX_BLOCKS && st == LM_OK; j++)
            st = each_res(&n->block[i][j], fn, user);
        if (st == LM_OK)
            st = each_param(&n->resample[i], fn, user);
    }
    if (st == LM_OK)
        st = each_res(&n->mid1, fn, user);
    return st == LM_OK ? each_res(&n->mid2, fn, user) : st;
}

static lm_status each_weight(lm_vae *vae, lm_sd3_slot_fn fn, void *user)
{
    lm_status st = each_net(&vae->enc, fn, user);
    return st == LM_OK ? each_net(&vae->dec, fn, user) : st;
}

/* each_weight as the walk lm_sd3_weights_to_device and lm_sd3_weights_free take. */
static lm_status walk_weights(void *vae, lm_sd3_slot_fn fn, void *user)
{
    return each_weight(vae, fn, user);
}

lm_status lm_vae_load_on(lm_vae **out, const lm_sd3_weights *w, lm_backend *be, lm_error *err)
{
    *out = NULL;
    lm_vae *vae = lm_calloc(1, sizeof(*vae));
    if (!vae)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate the VAE (%zu bytes)",
                         sizeof(*vae));
    vae->be = be && !lm_backend_is_host(be) ? be : lm_backend_cpu();
    binder b = { .w = w, .err = err };
    lm_status st = lm_vae_config_infer(&vae->cfg, w, err);
    if (st == LM_OK)
        st = bind_encoder(&b, &vae->enc, &vae->cfg);
    if (st == LM_OK)
        st = bind_decoder(&b, &vae->dec, &vae->cfg);
    if (st == LM_OK && vae->be != lm_backend_cpu())
        st = lm_sd3_weights_to_device(vae, walk_weights, "VAE", vae->be, &vae->device_bytes, err);
    if (st != LM_OK) {
        lm_vae_free(vae);
        return st;
    }
    LM_LOG_DEBUG("vae", "%s: on %s (%zu weight bytes copied)", lm_safetensors_path(w->st),
                 lm_backend_name(vae->be), vae->device_bytes);
    *out = vae;
    return LM_OK;
}

lm_status lm_vae_load(lm_vae **out, const lm_sd3_weights *w, lm_error *err)
{
    return lm_vae_load_on(out, w, NULL, err);
}

void lm_vae_free(lm_vae *vae)
{
    if (!vae)
        return;
    lm_sd3_weights_free(vae, walk_weights);
    lm_free(vae);
}

const lm_vae_config *lm_vae_config_of(const lm_vae *vae)
{
    return &vae->cfg;
}

lm_backend *lm_vae_backend(const lm_vae *vae)
{
    return vae->be;
}

size_t lm_vae_device_bytes(const lm_vae *vae)
{
    return vae->device_bytes;
}

/* ---- runs --------------------------------------------------------------------------- */

void lm_vae__track(lm_vae__run *r, const lm_tensor *t)
{
    size_t n = t ? lm_tensor_nbytes(t) : 0;
    if (n > r->max_bytes)
        r->max_bytes = n;
}

lm_status lm_vae__emit(lm_vae__run *r, const char *stage, const lm_tensor *t, lm_error *err)
{
    r->step++;
    if (!r->cb)
        return LM_OK;
    lm_vae_event ev = { .stage = stage,
                        .tensor = t,
                        .step = r->step,
                        .steps = r->steps,
                        .tile = r->tile,
                        .tiles = r->tiles,
                        .max_tensor_bytes = r->max_bytes };
    lm_status st = r->cb(&ev, r->user);
    if (st == LM_OK)
        return LM_OK;
    lm_errorf(err, st, st == LM_ECANCELLED ? "interrupted" : "vae_callback",
              "VAE %s stopped by its callback after stage \"%s\" (step %d of %d)", r->what, stage,
              r->step, r->steps);
    lm_error_hint(err, "nothing to fix if the run was cancelled on purpose; run it again");
    return st;
}

static int half_steps(const lm_vae_half *h)
{
    int n = 3; /* conv_in, mid, conv_out */
    for (int i = 0; i < h->levels; i++)
        n += h->blocks[i] + 1;
    return n;
}

int lm_vae__encoder_steps(const lm_vae_config *cfg)
{
    return half_steps(&cfg->encoder);
}

int lm_vae__decoder_steps(const lm_vae_config *cfg)
{
    return half_steps(&cfg->decoder);
}

lm_status lm_vae__check_input(const lm_tensor *t, int channels, int min_hw, const char *what,
                              lm_error *err)
{
    char d[96];
    lm_tensor_describe(t, d, sizeof(d));
    if (t->ndim == 4 && t->shape[0] >= 1 && t->shape[1] == channels && t->shape[2] >= min_hw &&
        t->shape[3] >= min_hw)
        return LM_OK;
    lm_errorf(err, LM_EINVAL, "bad_vae_input",
              "the VAE %s is %s, expected [B, %d, H, W] with H, W >= %d", what, d, channels,
              min_hw);
    lm_error_hint(err, "give this VAE latents or images of its own model family");
    return LM_EINVAL;
}

lm_status lm_vae__encoded_to_host(lm_tensor **mean, lm_tensor **sample, lm_error *err)
{
    lm_status st = lm_tensor_move(mean, lm_backend_cpu(), err);
    if (st == LM_OK && sample)
        st = lm_tensor_move(sample, lm_backend_cpu(), err);
    if (st == LM_OK)
        return LM_OK;
    lm_tensor_free(*mean);
    *mean = NULL;
    if (sample) {
        lm_tensor_free(*sample);
        *sample = NULL;
    }
    return st;
}

/* ---- layers ------------------------------------------------------------------------- */

/* Replaces *h by n (freeing the old one); n NULL leaves *h alone. */
static void take(lm_tensor **h, lm_tensor *n)
{
    if (!n)
        return;
    lm_tensor_free(*h);
    *h = n;
}

/* A conv with "same" padding, or (stride 2) the Downsample's right/bottom padding. */
static lm_status conv(lm_vae__run *r, const lm_tensor *x, const vae_param *p, int stride,
                      lm_tensor **out, lm_error *err)
{
    int pad = (int)p->w->shape[2] / 2;
    lm_conv2d_opts o = {
        .stride = 1, .pad_top = pad, .pad_left = pad, .pad_bottom = pad, .pad_right = pad
    };
    if (stride == 2)
        o = (lm_conv2d_opts){ .stride = 2, .pad_bottom = 1, .pad_right = 1 };
    lm_status st = lm_conv2d(out, x, p->w, p->b, &o, err);
    lm_vae__track(r, *out);
    return st;
}

static lm_status norm(const lm_vae *vae, lm_vae__run *r, const lm_tensor *x, const vae_param *p,
                      bool silu, lm_tensor **out, lm_error *err)
{
    lm_tensor *g = NULL;
    lm_status st = lm_group_norm(&g, x, p->w, p->b, vae->cfg.groups, vae->cfg.eps, err);
    lm_vae__track(r, g);
    if (st != LM_OK || !silu) {
        *out = g;
        return st;
    }
    st = lm_silu(out, g, err);
    lm_tensor_free(g);
    return st;
}

static lm_status res_block(const lm_vae *vae, lm_vae__run *r, const lm_tensor *x, const vae_res *b,
                           lm_tensor **out, lm_error *err)
{
    lm_tensor *h = NULL, *s = NULL;
    *out = NULL;
    lm_status st = norm(vae, r, x, &b->norm1, true, &h, err); // [B, Ci, H, W]
    if (st == LM_OK)
        st = conv(r, h, &b->conv1, 1, &s, err); // [B, Co, H, W]
    take(&h, s);
    s = NULL;
    if (st == LM_OK)
        st = norm(vae, r, h, &b->norm2, true, &s, err); // [B, Co, H, W]
    take(&h, s);
    s = NULL;
    if (st == LM_OK)
        st = conv(r, h, &b->conv2, 1, &s, err); // [B, Co, H, W]
    take(&h, s);
    s = NULL;
    if (st == LM_OK && b->nin.w)
        st = conv(r, x, &b->nin, 1, &s, err); // [B, Co, H, W]
    if (st == LM_OK)
        st = lm_add(out, s ? s : x, h, err); // [B, Co, H, W]
    lm_tensor_free(s);
    lm_tensor_free(h);
    return st;
}

/* x [B, C, H, W] -> contiguous pixel tokens [B, H*W, C]. */
static lm_status to_tokens(lm_vae__run *r, const lm_tensor *x, lm_tensor **out, lm_error *err)
{
    lm_tensor *flat = NULL, *tok = NULL;
    int64_t shape[3] = { x->shape[0], x->shape[1], x->shape[2] * x->shape[3] };
    int perm[3] = { 0, 2, 1 };
    lm_status st = lm_tensor_view_reshape(&flat, x, 3, shape, err); // [B, C, HW]
    if (st == LM_OK)
        st = lm_tensor_view_permute(&tok, flat, perm, err); // [B, HW, C] view
    if (st == LM_OK)
        st = lm_tensor_contiguous(out, tok, err); // [B, HW, C]
    lm_vae__track(r, st == LM_OK ? *out : NULL);
    lm_tensor_free(tok);
    lm_tensor_free(flat);
    return st;
}

/* x + proj(tokens) with tokens [B, HW, C] put back as [B, C, H, W]. */
static lm_status add_pixels(const lm_tensor *x, const lm_tensor *tok, lm_tensor **out,
                            lm_error *err)
{
    lm_tensor *grid = NULL, *chw = NULL;
    int64_t shape[4] = { x->shape[0], x->shape[2], x->shape[3], x->shape[1] };
    int perm[4] = { 0, 3, 1, 2 };
    lm_status st = lm_tensor_view_reshape(&grid, tok, 4, shape, err); // [B, H, W, C]
    if (st == LM_OK)
        st = lm_tensor_view_permute(&chw, grid, perm, err); // [B, C, H, W] view
    if (st == LM_OK)
        st = lm_add(out, x, chw, err); // [B, C, H, W]
    lm_tensor_free(chw);
    lm_tensor_free(grid);
    return st;
}

/* Single-head self-attention over all H*W pixels, scale 1/sqrt(C), plus the residual. */
static lm_status attn_block(const lm_vae *vae, lm_vae__run *r, const lm_tensor *x,
                            const vae_attn *a, lm_tensor **out, lm_error *err)
{
    lm_tensor *h = NULL, *tok = NULL, *q = NULL, *k = NULL, *v = NULL, *o = NULL, *p = NULL;
    lm_attention_opts ao = { .heads = 1 };
    *out = NULL;
    lm_status st = norm(vae, r, x, &a->norm, false, &h, err); // [B, C, H, W]
    if (st == LM_OK)
        st = to_tokens(r, h, &tok, err); // [B, HW, C]
    if (st == LM_OK)
        st = lm_linear(&q, tok, a->q.w, a->q.b, err); // [B, HW, C]
    if (st == LM_OK)
        st = lm_linear(&k, tok, a->k.w, a->k.b, err); // [B, HW, C]
    if (st == LM_OK)
        st = lm_linear(&v, tok, a->v.w, a->v.b, err); // [B, HW, C]
    if (st == LM_OK)
        st = lm_attention(&o, q, k, v, NULL, &ao, err); // [B, HW, C]
    if (st == LM_OK)
        st = lm_linear(&p, o, a->proj.w, a->proj.b, err); // [B, HW, C]
    if (st == LM_OK)
        st = add_pixels(x, p, out, err); // [B, C, H, W]
    lm_tensor *all[7] = { h, tok, q, k, v, o, p };
    for (int i = 0; i < 7; i++)
        lm_tensor_free(all[i]);
    return st;
}

/* mid.block_1, mid.attn_1, mid.block_2 on *h in place. */
static lm_status mid_block(const lm_vae *vae, lm_vae__run *r, const vae_net *n, lm_tensor **h,
                           lm_error *err)
{
    lm_tensor *s = NULL;
    lm_status st = res_block(vae, r, *h, &n->mid1, &s, err); // [B, Cm, h, w]
    take(h, s);
    s = NULL;
    if (st == LM_OK && n->attn.norm.w)
        st = attn_block(vae, r, *h, &n->attn, &s, err); // [B, Cm, h, w]
    take(h, s);
    s = NULL;
    if (st == LM_OK)
        st = res_block(vae, r, *h, &n->mid2, &s, err); // [B, Cm, h, w]
    take(h, s);
    return st == LM_OK ? lm_vae__emit(r, "mid", *h, err) : st;
}

/* Level i's res blocks then its Downsample (encoder) or Upsample (decoder), on *h. */
static lm_status level(const lm_vae *vae, lm_vae__run *r, const vae_net *n, const lm_vae_half *half,
                       bool enc, int i, lm_tensor **h, lm_error *err)
{
    char stage[32];
    lm_status st = LM_OK;
    for (int j = 0; j < half->blocks[i] && st == LM_OK; j++) {
        lm_tensor *s = NULL;
        st = res_block(vae, r, *h, &n->block[i][j], &s, err); // [B, Ci, h, w]
        take(h, s);
        snprintf(stage, sizeof(stage), "%s%d.block%d", enc ? "down" : "up", i, j);
        if (st == LM_OK)
            st = lm_vae__emit(r, stage, *h, err);
    }
    if (st == LM_OK && n->resample[i].w) {
        lm_tensor *u = NULL, *s = NULL;
        if (enc)
            st = conv(r, *h, &n->resample[i], 2, &s, err); // [B, Ci, h/2, w/2]
        else if ((st = lm_upsample_nearest2x(&u, *h, err)) == LM_OK)
            st = conv(r, u, &n->resample[i], 1, &s, err); // [B, Ci, 2h, 2w]
        lm_vae__track(r, u);
        lm_tensor_free(u);
        take(h, s);
    }
    snprintf(stage, sizeof(stage), "%s%d", enc ? "down" : "up", i);
    return st == LM_OK ? lm_vae__emit(r, stage, *h, err) : st;
}

/* norm_out, SiLU, conv_out on *h. */
static lm_status tail(const lm_vae *vae, lm_vae__run *r, const vae_net *n, lm_tensor **h,
                      lm_error *err)
{
    lm_tensor *s = NULL;
    lm_status st = norm(vae, r, *h, &n->norm_out, true, &s, err);
    take(h, s);
    s = NULL;
    if (st == LM_OK)
        st = conv(r, *h, &n->conv_out, 1, &s, err);
    take(h, s);
    return st == LM_OK ? lm_vae__emit(r, "conv_out", *h, err) : st;
}

lm_status lm_vae__encoder(const lm_vae *vae, lm_vae__run *r, const lm_tensor *image,
                          lm_tensor **moments, lm_error *err)
{
    const vae_net *n = &vae->enc;
    lm_tensor *h = NULL;
    *moments = NULL;
    lm_status st = conv(r, image, &n->conv_in, 1, &h, err); // [B, ch, H, W]
    if (st == LM_OK)
        st = lm_vae__emit(r, "conv_in", h, err);
    for (int i = 0; i < vae->cfg.encoder.levels && st == LM_OK; i++)
        st = level(vae, r, n, &vae->cfg.encoder, true, i, &h, err); // [B, C_i, H/2^i, ..]
    if (st == LM_OK)
        st = mid_block(vae, r, n, &h, err); // [B, Cm, h, w]
    if (st == LM_OK)
        st = tail(vae, r, n, &h, err); // [B, 2z, h, w]
    if (st != LM_OK) {
        lm_tensor_free(h);
        return st;
    }
    *moments = h;
    return LM_OK;
}

lm_status lm_vae__decoder(const lm_vae *vae, lm_vae__run *r, const lm_tensor *raw,
                          lm_tensor **image, lm_error *err)
{
    const vae_net *n = &vae->dec;
    lm_tensor *h = NULL;
    *image = NULL;
    lm_status st = conv(r, raw, &n->conv_in, 1, &h, err); // [B, Cm, h, w]
    if (st == LM_OK)
        st = lm_vae__emit(r, "conv_in", h, err);
    if (st == LM_OK)
        st = mid_block(vae, r, n, &h, err); // [B, Cm, h, w]
    for (int i = vae->cfg.decoder.levels - 1; i >= 0 && st == LM_OK; i--)
        st = level(vae, r, n, &vae->cfg.decoder, false, i, &h, err); // [B, C_i, .., ..]
    if (st == LM_OK)
        st = tail(vae, r, n, &h, err); // [B, 3, H, W]
    if (st != LM_OK) {
        lm_tensor_free(h);
        return st;
    }
    *image = h;
    return LM_OK;
}

/* ---- latent format and the public passes -------------------------------------------- */

lm_status lm_vae_process_in(const lm_vae_config *cfg, const lm_tensor *raw, lm_tensor **out,
                            lm_error *err)
{
    /* Two steps, (raw - shift) then * scale, round exactly as the reference's fp32 ops. */
    lm_tensor *t = NULL;
    lm_status st = lm_scale(&t, raw, 1.0f, -cfg->shift, err);
    if (st == LM_OK)
        st = lm_scale(out, t, cfg->scale, 0.0f, err);
    lm_tensor_free(t);
    return st;
}

lm_status lm_vae_process_out(const lm_vae_config *cfg, const lm_tensor *scaled, lm_tensor **out,
                             lm_error *err)
{
    /* The reference divides; multiplying by the reciprocal can differ in the last bit. */
    return lm_scale(out, scaled, 1.0f / cfg->scale, cfg->shift, err);
}

/* mean + exp(logvar / 2) * noise, the noise one randn of the mean's size from rng. */
static lm_status sample(const lm_vae *vae, const lm_tensor *mean, const lm_tensor *logvar,
                        lm_rng *rng, lm_tensor **out, lm_error *err)
{
    lm_tensor *noise = NULL, *half = NULL, *std = NULL, *sn = NULL;
    lm_status st =
        lm_tensor_new(&noise, lm_backend_cpu(), LM_DTYPE_F32, mean->ndim, mean->shape, err);
    if (st == LM_OK) {
        lm_rng_randn(rng, lm_tensor_data(noise), (size_t)lm_tensor_numel(noise));
        st = lm_tensor_move(&noise, vae->be, err); /* drawn on the host, then moved */
    }
    if (st == LM_OK)
        st = lm_scale(&half, logvar, 0.5f, 0.0f, err); // [B, z, h, w]
    if (st == LM_OK)
        st = lm_exp(&std, half, err); // [B, z, h, w]
    if (st == LM_OK)
        st = lm_mul(&sn, std, noise, err); // [B, z, h, w]
    if (st == LM_OK)
        st = lm_add(out, mean, sn, err); // [B, z, h, w]
    lm_tensor *all[4] = { noise, half, std, sn };
    for (int i = 0; i < 4; i++)
        lm_tensor_free(all[i]);
    return st;
}

/* The raw sample reported as "sample", returned scaled. */
static lm_status finish_sample(const lm_vae *vae, lm_vae__run *r, const lm_tensor *mean,
                               const lm_tensor *logvar, lm_rng *rng, lm_tensor **sample_out,
                               lm_error *err)
{
    lm_tensor *s = NULL;
    lm_status st = sample(vae, mean, logvar, rng, &s, err);
    if (st == LM_OK)
        st = lm_vae__emit(r, "sample", s, err);
    if (st == LM_OK)
        st = lm_vae_process_in(&vae->cfg, s, sample_out, err);
    lm_tensor_free(s);
    return st;
}

lm_status lm_vae__finish_encode(const lm_vae *vae, lm_vae__run *r, const lm_tensor *moments,
                                lm_rng *rng, lm_tensor **mean_out, lm_tensor **sample_out,
                                lm_error *err)
{
    lm_tensor *parts[2] = { NULL, NULL }, *logvar = NULL;
    int64_t z = vae->cfg.z_channels, sizes[2] = { z, z };
    lm_status st = lm_vae__emit(r, "moments", moments, err);
    if (st == LM_OK)
        st = lm_split(parts, moments, 1, sizes, 2, err); // 2 x [B, z, h, w]
    if (st == LM_OK)
        st = lm_clamp(&logvar, parts[1], -30.0f, 20.0f, err); // [B, z, h, w]
    if (st == LM_OK)
        st = lm_vae__emit(r, "mean", parts[0], err);
    if (st == LM_OK)
        st = lm_vae__emit(r, "logvar", logvar, err);
    if (st == LM_OK)
        st = lm_vae_process_in(&vae->cfg, parts[0], mean_out, err);
    if (st == LM_OK && rng)
        st = finish_sample(vae, r, parts[0], logvar, rng, sample_out, err);
    if (st != LM_OK) {
        lm_tensor_free(*mean_out);
        *mean_out = NULL;
    }
    lm_tensor_free(parts[0]);
    lm_tensor_free(parts[1]);
    lm_tensor_free(logvar);
    return st;
}

lm_status lm_vae_decode(const lm_vae *vae, const lm_tensor *latent, lm_tensor **image_out,
                        lm_vae_callback cb, void *user, lm_error *err)
{
    lm_vae__run r = { .cb = cb,
                      .user = user,
                      .what = "decode",
                      .tiles = 1,
                      .steps = 1 + lm_vae__decoder_steps(&vae->cfg) };
    lm_tensor *raw = NULL, *moved = NULL;
    *image_out = NULL;
    lm_status st = lm_vae__check_input(latent, vae->cfg.z_channels, 1, "latent", err);
    if (st == LM_OK)
        st = lm_tensor_on(&moved, latent, vae->be, "the VAE latent", err);
    if (st == LM_OK)
        st = lm_vae_process_out(&vae->cfg, moved ? moved : latent, &raw, err); // [B, z, h, w]
    lm_tensor_free(moved);
    if (st == LM_OK)
        st = lm_vae__emit(&r, "latent_raw", raw, err);
    if (st == LM_OK)
        st = lm_vae__decoder(vae, &r, raw, image_out, err); // [B, 3, f*h, f*w]
    lm_tensor_free(raw);
    return st == LM_OK ? lm_tensor_move(image_out, lm_backend_cpu(), err) : st;
}

lm_status lm_vae_encode(const lm_vae *vae, const lm_tensor *image, lm_rng *rng,
                        lm_tensor **mean_out, lm_tensor **sample_out, lm_vae_callback cb,
                        void *user, lm_error *err)
{
    lm_vae__run r = { .cb = cb,
                      .user = user,
                      .what = "encode",
                      .tiles = 1,
                      .steps = lm_vae__encoder_steps(&vae->cfg) + (rng ? 4 : 3) };
    lm_tensor *moments = NULL;
    *mean_out = NULL;
    if (sample_out)
        *sample_out = NULL;
    if (rng && !sample_out)
        return lm_errorf(err, LM_EINVAL, "bad_vae_input",
                         "lm_vae_encode: a generator was given but no place for the sample");
    lm_tensor *moved = NULL;
    lm_status st =
        lm_vae__check_input(image, vae->cfg.image_channels, vae->cfg.factor, "image", err);
    if (st == LM_OK)
        st = lm_tensor_on(&moved, image, vae->be, "the VAE image", err);
    if (st == LM_OK)
        st = lm_vae__encoder(vae, &r, moved ? moved : image, &moments, err); // [B, 2z, h, w]
    lm_tensor_free(moved);
    if (st == LM_OK)
        st = lm_vae__finish_encode(vae, &r, moments, rng, mean_out, sample_out, err);
    lm_tensor_free(moments);
    return st == LM_OK ? lm_vae__encoded_to_host(mean_out, sample_out, err) : st;
}

/* ---- ComfyUI IMAGE ------------------------------------------------------------------ */

lm_status lm_vae_image_from_comfy(const lm_tensor *image, lm_tensor **out, lm_error *err)
{
    char d[96];
    *out = NULL;
    if (image->ndim != 4 || image->shape[3] < 3) {
        lm_tensor_describe(image, d, sizeof(d));
        return lm_errorf(err, LM_EINVAL, "bad_image",
                         "the IMAGE is %s, expected [B, H, W, C] with C >= 3", d);
    }
    lm_tensor *rgb = NULL, *chw = NULL;
    int perm[4] = { 0, 3, 1, 2 };
    lm_status st = lm_tensor_view_slice(&rgb, image, 3, 0, 3, err); // [B, H, W, 3]
    if (st == LM_OK)
        st = lm_tensor_view_permute(&chw, rgb, perm, err); // [B, 3, H, W] view
    if (st == LM_OK)
        st = lm_scale(out, chw, 2.0f, -1.0f, err); // [B, 3, H, W]
    lm_tensor_free(chw);
    lm_tensor_free(rgb);
    return st;
}

lm_status lm_vae_image_to_comfy(const lm_tensor *image, lm_tensor **out, lm_error *err)
{
    char d[96];
    *out = NULL;
    if (image->ndim != 4) {
        lm_tensor_describe(image, d, sizeof(d));
        return lm_errorf(err, LM_EINVAL, "bad_image", "the VAE image is %s, expected [B, C, H, W]",
                         d);
    }
    lm_tensor *hwc = NULL, *t = NULL;
    int perm[4] = { 0, 2, 3, 1 };
    lm_status st = lm_tensor_view_permute(&hwc, image, perm, err); // [B, H, W, C] view
    if (st == LM_OK)
        st = lm_scale(&t, hwc, 0.5f, 0.5f, err); // [B, H, W, C]
    if (st == LM_OK)
        st = lm_clamp(out, t, 0.0f, 1.0f, err); // [B, H, W, C]
    lm_tensor_free(t);
    lm_tensor_free(hwc);
    return st;
}
