/* nodes/sd3/mmdit.c — MMDiT / MMDiT-X: loading, embedders, final layer, the forward pass.
 *
 * Forward (SD3 paper §4; the golden README's "MMDiT" paragraph):
 *   x      = patch conv (p x p, stride p) of the latent, rows in raster order, plus the
 *            centre crop of the stored position table
 *   c      = t_embedder(cat(cos, sin) of t = sigma*1000) + y_embedder(pooled text)
 *   ctx    = context_embedder(text tokens)
 *   joint blocks (mmdit_block.c), then the final layer (adaLN shift/scale, LayerNorm,
 *   linear) and unpatchify.
 * SiLU(c) is computed once and shared by every adaLN modulation. Inputs are checked
 * before any work, with messages saying what was passed and what the model takes.
 *
 * Loading binds each tensor once with its expected shape from the inferred configuration,
 * so a file with a missing or mis-shaped tensor fails at load, naming both.
 *
 * Devices: the weights are bound as views of the mapping, then (lm_mmdit_load_on on a
 * device) each replaced by its copy there, same dtype; one walk over every weight slot
 * (each_weight, handed to weights.h's shared copy and free) serves the copy, the byte count
 * and the free. lm_mmdit_forward moves host inputs to the model's backend (lm_tensor_on),
 * runs the whole pass there (timesteps, the position crop and every activation are made by
 * ops on the device) and brings the velocity back. */
#include "core/base/alloc.h"
#include "core/base/log.h"
#include "nodes/sd3/mmdit_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- loading ---- */

/* Binds `name` (printf-style) with rank n and the given sizes. */
static lm_status bind(lm_tensor **t, const lm_sd3_weights *w, int n, const int64_t *shape,
                      lm_error *err, const char *fmt, ...) LM_PRINTF(6, 7);

static lm_status bind(lm_tensor **t, const lm_sd3_weights *w, int n, const int64_t *shape,
                      lm_error *err, const char *fmt, ...)
{
    char name[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    return lm_sd3_weights_get(w, name, n, shape, t, err);
}

/* <prefix>.weight [rows, cols] and <prefix>.bias [rows] (when `bias`). */
static lm_status bind_linear(lm_mmdit__linear *l, const lm_sd3_weights *w, const char *prefix,
                             int64_t rows, int64_t cols, bool bias, lm_error *err)
{
    int64_t s[2] = { rows, cols };
    lm_status st = bind(&l->w, w, 2, s, err, "%s.weight", prefix);
    if (st == LM_OK && bias)
        st = bind(&l->b, w, 1, s, err, "%s.bias", prefix);
    return st;
}

static lm_status bind_attn(lm_mmdit__attn *a, const lm_sd3_weights *w, const char *prefix,
                           const lm_mmdit_config *cfg, bool proj, lm_error *err)
{
    char p[160];
    int64_t h = cfg->hidden, d[1] = { cfg->head_dim };
    snprintf(p, sizeof(p), "%s.qkv", prefix);
    lm_status st = bind_linear(&a->qkv, w, p, 3 * h, h, cfg->qkv_bias, err);
    snprintf(p, sizeof(p), "%s.proj", prefix);
    if (st == LM_OK && proj)
        st = bind_linear(&a->proj, w, p, h, h, true, err);
    if (st == LM_OK && cfg->qk_norm != LM_MMDIT_QK_NONE)
        st = bind(&a->ln_q, w, 1, d, err, "%s.ln_q.weight", prefix);
    if (st == LM_OK && cfg->qk_norm != LM_MMDIT_QK_NONE)
        st = bind(&a->ln_k, w, 1, d, err, "%s.ln_k.weight", prefix);
    if (st == LM_OK && cfg->qk_norm == LM_MMDIT_QK_LN)
        st = bind(&a->ln_q_b, w, 1, d, err, "%s.ln_q.bias", prefix);
    if (st == LM_OK && cfg->qk_norm == LM_MMDIT_QK_LN)
        st = bind(&a->ln_k_b, w, 1, d, err, "%s.ln_k.bias", prefix);
    return st;
}

/* joint_blocks.<i>.<context_block|x_block>.* */
static lm_status bind_stream(lm_mmdit__stream *s, const lm_sd3_weights *w, const char *prefix,
                             const lm_mmdit_config *cfg, bool attn2, lm_error *err)
{
    char p[160];
    int64_t h = cfg->hidden;
    s->n_mods = s->pre_only ? 2 : attn2 ? 9 : 6;
    snprintf(p, sizeof(p), "%s.adaLN_modulation.1", prefix);
    lm_status st = bind_linear(&s->ada, w, p, s->n_mods * h, h, true, err);
    snprintf(p, sizeof(p), "%s.attn", prefix);
    if (st == LM_OK)
        st = bind_attn(&s->attn, w, p, cfg, !s->pre_only, err);
    snprintf(p, sizeof(p), "%s.attn2", prefix);
    if (st == LM_OK && attn2)
        st = bind_attn(&s->attn2, w, p, cfg, true, err);
    snprintf(p, sizeof(p), "%s.mlp.fc1", prefix);
    if (st == LM_OK && !s->pre_only)
        st = bind_linear(&s->fc1, w, p, cfg->mlp_hidden, h, true, err);
    snprintf(p, sizeof(p), "%s.mlp.fc2", prefix);
    if (st == LM_OK && !s->pre_only)
        st = bind_linear(&s->fc2, w, p, h, cfg->mlp_hidden, true, err);
    return st;
}

static lm_status bind_blocks(lm_mmdit *m, const lm_sd3_weights *w, lm_error *err)
{
    const lm_mmdit_config *cfg = &m->cfg;
    m->blocks = lm_calloc((size_t)cfg->depth, sizeof(*m->blocks));
    if (!m->blocks)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "MMDiT: no memory for %d blocks",
                         cfg->depth);
    lm_status st = LM_OK;
    for (int i = 0; st == LM_OK && i < cfg->depth; i++) {
        char p[96];
        lm_mmdit__block *b = &m->blocks[i];
        b->ctx.pre_only = cfg->context_pre_only && i == cfg->depth - 1;
        snprintf(p, sizeof(p), "joint_blocks.%d.context_block", i);
        st = bind_stream(&b->ctx, w, p, cfg, false, err);
        snprintf(p, sizeof(p), "joint_blocks.%d.x_block", i);
        if (st == LM_OK)
            st = bind_stream(&b->x, w, p, cfg, cfg->x_self_attn[i], err);
    }
    return st;
}

static lm_status bind_embedders(lm_mmdit *m, const lm_sd3_weights *w, lm_error *err)
{
    const lm_mmdit_config *c = &m->cfg;
    int64_t h = c->hidden, p = c->patch;
    int64_t xs[4] = { h, c->in_channels, p, p }, hs[1] = { h };
    int64_t ps[3] = { 1, (int64_t)c->pos_embed_max * c->pos_embed_max, h };
    lm_status st = bind(&m->x_emb_w, w, 4, xs, err, "x_embedder.proj.weight");
    if (st == LM_OK)
        st = bind(&m->x_emb_b, w, 1, hs, err, "x_embedder.proj.bias");
    if (st == LM_OK)
        st = bind(&m->pos_embed, w, 3, ps, err, "pos_embed");
    if (st == LM_OK)
        st = bind_linear(&m->t_mlp0, w, "t_embedder.mlp.0", h, c->freq_dim, true, err);
    if (st == LM_OK)
        st = bind_linear(&m->t_mlp2, w, "t_embedder.mlp.2", h, h, true, err);
    if (st == LM_OK)
        st = bind_linear(&m->y_mlp0, w, "y_embedder.mlp.0", h, c->adm_in, true, err);
    if (st == LM_OK)
        st = bind_linear(&m->y_mlp2, w, "y_embedder.mlp.2", h, h, true, err);
    if (st == LM_OK)
        st = bind_linear(&m->ctx_emb, w, "context_embedder", h, c->context_in, true, err);
    if (st == LM_OK)
        st = bind_linear(&m->final_ada, w, "final_layer.adaLN_modulation.1", 2 * h, h, true, err);
    if (st == LM_OK)
        st = bind_linear(&m->final_lin, w, "final_layer.linear", p * p * c->out_channels, h, true,
                         err);
    return st;
}

/* ---- every weight slot, for the device copy and for freeing ---- */

static lm_status each_linear(lm_mmdit__linear *l, lm_sd3_slot_fn fn, void *user)
{
    lm_status st = fn(&l->w, user);
    return st == LM_OK ? fn(&l->b, user) : st;
}

static lm_status each_attn(lm_mmdit__attn *a, lm_sd3_slot_fn fn, void *user)
{
    lm_tensor **norms[4] = { &a->ln_q, &a->ln_k, &a->ln_q_b, &a->ln_k_b };
    lm_status st = each_linear(&a->qkv, fn, user);
    if (st == LM_OK)
        st = each_linear(&a->proj, fn, user);
    for (size_t i = 0; st == LM_OK && i < LM_COUNTOF(norms); i++)
        st = fn(norms[i], user);
    return st;
}

static lm_status each_stream(lm_mmdit__stream *s, lm_sd3_slot_fn fn, void *user)
{
    lm_mmdit__linear *lins[3] = { &s->ada, &s->fc1, &s->fc2 };
    lm_status st = each_attn(&s->attn, fn, user);
    if (st == LM_OK)
        st = each_attn(&s->attn2, fn, user);
    for (size_t i = 0; st == LM_OK && i < LM_COUNTOF(lins); i++)
        st = each_linear(lins[i], fn, user);
    return st;
}

/* Calls fn on every weight slot of the model, absent (NULL) ones included. */
static lm_status each_weight(lm_mmdit *m, lm_sd3_slot_fn fn, void *user)
{
    lm_tensor **own[3] = { &m->x_emb_w, &m->x_emb_b, &m->pos_embed };
    lm_mmdit__linear *lins[] = { &m->t_mlp0,  &m->t_mlp2,    &m->y_mlp0,   &m->y_mlp2,
                                 &m->ctx_emb, &m->final_ada, &m->final_lin };
    lm_status st = LM_OK;
    for (size_t i = 0; st == LM_OK && i < LM_COUNTOF(own); i++)
        st = fn(own[i], user);
    for (size_t i = 0; st == LM_OK && i < LM_COUNTOF(lins); i++)
        st = each_linear(lins[i], fn, user);
    for (int i = 0; st == LM_OK && m->blocks && i < m->cfg.depth; i++) {
        st = each_stream(&m->blocks[i].ctx, fn, user);
        if (st == LM_OK)
            st = each_stream(&m->blocks[i].x, fn, user);
    }
    return st;
}

/* each_weight as the walk lm_sd3_weights_to_device and lm_sd3_weights_free take. */
static lm_status walk_weights(void *m, lm_sd3_slot_fn fn, void *user)
{
    return each_weight(m, fn, user);
}

lm_status lm_mmdit_load_on(lm_mmdit **out, const lm_sd3_weights *w, lm_backend *be, lm_error *err)
{
    *out = NULL;
    lm_mmdit *m = lm_calloc(1, sizeof(*m));
    if (!m)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "MMDiT: no memory for the model");
    m->be = be && !lm_backend_is_host(be) ? be : lm_backend_cpu();
    lm_status st = lm_mmdit_config_infer(&m->cfg, w, err);
    if (st == LM_OK)
        st = bind_embedders(m, w, err);
    if (st == LM_OK)
        st = bind_blocks(m, w, err);
    if (st == LM_OK && m->be != lm_backend_cpu())
        st = lm_sd3_weights_to_device(m, walk_weights, "MMDiT", m->be, &m->device_bytes, err);
    if (st != LM_OK) {
        lm_mmdit_free(m);
        return st;
    }
    char desc[512];
    lm_mmdit_config_describe(&m->cfg, desc, sizeof(desc));
    LM_LOG_DEBUG("mmdit", "%s: %s; on %s (%zu weight bytes copied)", lm_safetensors_path(w->st),
                 desc, lm_backend_name(m->be), m->device_bytes);
    *out = m;
    return LM_OK;
}

lm_status lm_mmdit_load(lm_mmdit **out, const lm_sd3_weights *w, lm_error *err)
{
    return lm_mmdit_load_on(out, w, NULL, err);
}

void lm_mmdit_free(lm_mmdit *m)
{
    if (!m)
        return;
    lm_sd3_weights_free(m, walk_weights);
    lm_free(m->blocks);
    lm_free(m);
}

lm_backend *lm_mmdit_backend(const lm_mmdit *m)
{
    return m->be;
}

size_t lm_mmdit_device_bytes(const lm_mmdit *m)
{
    return m->device_bytes;
}

const lm_mmdit_config *lm_mmdit_config_of(const lm_mmdit *m)
{
    return &m->cfg;
}

int lm_mmdit_max_latent(const lm_mmdit *m)
{
    return m->cfg.pos_embed_max * m->cfg.patch;
}

/* ---- forward ---- */

static void inspect(const lm_mmdit_opts *o, const char *name, const lm_tensor *t)
{
    if (o->inspect && t)
        o->inspect(name, t, o->user);
}

static lm_status bad_input(lm_error *err, const char *what, const lm_tensor *t, const char *want)
{
    char d[96] = "NULL";
    if (t)
        lm_tensor_describe(t, d, sizeof(d));
    lm_errorf(err, LM_EINVAL, "bad_input_shape", "MMDiT: %s is %s but %s", what, d, want);
    lm_error_hint(err, "pass tensors shaped as the model takes them (see nodes/sd3/mmdit.h)");
    return LM_EINVAL;
}

static lm_status check_latent(const lm_mmdit *m, const lm_tensor *x, lm_error *err)
{
    const lm_mmdit_config *c = &m->cfg;
    char want[160];
    snprintf(want, sizeof(want), "must be [B, %d, h, w] with h and w multiples of %d",
             c->in_channels, c->patch);
    if (!x || x->ndim != 4 || x->shape[0] < 1 || x->shape[1] != c->in_channels || x->shape[2] < 1 ||
        x->shape[3] < 1 || x->shape[2] % c->patch || x->shape[3] % c->patch)
        return bad_input(err, "latent x", x, want);
    int64_t max = lm_mmdit_max_latent(m);
    if (x->shape[2] <= max && x->shape[3] <= max)
        return LM_OK;
    long long h = x->shape[2], w = x->shape[3], lim = max, px = 8 * lim; /* VAE: 8x */
    lm_errorf(err, LM_ERANGE, "latent_too_large",
              "MMDiT: latent %lldx%lld is larger than the position table allows (%lldx%lld)", h, w,
              lim, lim);
    lm_error_hint(err, "generate at most %lldx%lld pixels and upscale the image", px, px);
    return LM_ERANGE;
}

static lm_status check_inputs(const lm_mmdit *m, const lm_tensor *x, const lm_tensor *sigma,
                              const lm_tensor *context, const lm_tensor *y, lm_error *err)
{
    const lm_mmdit_config *c = &m->cfg;
    lm_status st = check_latent(m, x, err);
    if (st != LM_OK)
        return st;
    int64_t b = x->shape[0];
    char want[128];
    if (!sigma || sigma->ndim != 1 || sigma->shape[0] != b)
        return bad_input(err, "sigma", sigma, "must be [B], one noise level per latent");
    snprintf(want, sizeof(want), "must be [B, T, %d] with T >= 1", c->context_in);
    if (!context || context->ndim != 3 || context->shape[0] != b || context->shape[1] < 1 ||
        context->shape[2] != c->context_in)
        return bad_input(err, "context", context, want);
    snprintf(want, sizeof(want), "must be [B, %d]", c->adm_in);
    if (!y || y->ndim != 2 || y->shape[0] != b || y->shape[1] != c->adm_in)
        return bad_input(err, "pooled y", y, want);
    return LM_OK;
}

/* Linear, SiLU, Linear (t_embedder.mlp, y_embedder.mlp). */
static lm_status mlp_embed(lm_tensor **out, const lm_tensor *in, const lm_mmdit__linear *a,
                           const lm_mmdit__linear *b, lm_error *err)
{
    lm_tensor *h = NULL, *s = NULL;
    lm_status st = lm_mmdit__linear_apply(&h, in, a, err); // [B, H]
    if (st == LM_OK)
        st = lm_silu(&s, h, err); // [B, H]
    if (st == LM_OK)
        st = lm_mmdit__linear_apply(out, s, b, err); // [B, H]
    lm_tensor_free(h);
    lm_tensor_free(s);
    return st;
}

/* SiLU(c), c = t_embedder(timestep features of sigma*1000) + y_embedder(y). */
static lm_status embed_conditioning(lm_tensor **silu_c, const lm_mmdit *m, const lm_tensor *sigma,
                                    const lm_tensor *y, const lm_mmdit_opts *o, lm_error *err)
{
    lm_tensor *t = NULL, *tf = NULL, *te = NULL, *ye = NULL, *c = NULL;
    lm_status st = lm_scale(&t, sigma, 1000.0f, 0.0f, err); // [B]: fp32 like the reference
    if (st == LM_OK)
        st = lm_timestep_embedding(&tf, t, m->cfg.freq_dim, 10000.0f, err); // [B, F]
    inspect(o, "t_freq", tf);
    if (st == LM_OK)
        st = mlp_embed(&te, tf, &m->t_mlp0, &m->t_mlp2, err); // [B, H]
    inspect(o, "t_emb", te);
    if (st == LM_OK)
        st = mlp_embed(&ye, y, &m->y_mlp0, &m->y_mlp2, err); // [B, H]
    inspect(o, "y_emb", ye);
    if (st == LM_OK)
        st = lm_add(&c, te, ye, err); // [B, H]
    inspect(o, "c", c);
    if (st == LM_OK)
        st = lm_silu(silu_c, c, err); // [B, H]
    lm_tensor *all[] = { t, tf, te, ye, c };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_tensor_free(all[i]);
    return st;
}

/* The centre gh x gw crop of the stored P x P position table, as F32 [1, gh*gw, H]. */
static lm_status pos_crop(lm_tensor **out, const lm_mmdit *m, int64_t gh, int64_t gw, lm_error *err)
{
    int64_t p = m->cfg.pos_embed_max, grid[3] = { p, p, m->cfg.hidden };
    int64_t flat[3] = { 1, gh * gw, m->cfg.hidden };
    lm_tensor *g = NULL, *rows = NULL, *cells = NULL, *f = NULL;
    lm_status st = lm_tensor_view_reshape(&g, m->pos_embed, 3, grid, err); // [P, P, H]
    if (st == LM_OK)
        st = lm_tensor_view_slice(&rows, g, 0, (p - gh) / 2, (p - gh) / 2 + gh, err); // [gh, P, H]
    if (st == LM_OK)
        st = lm_tensor_view_slice(&cells, rows, 1, (p - gw) / 2, (p - gw) / 2 + gw,
                                  err); // [gh, gw, H] strided
    if (st == LM_OK)
        st = lm_tensor_cast(&f, cells, LM_DTYPE_F32, err); // [gh, gw, H]
    if (st == LM_OK)
        st = lm_tensor_view_reshape(out, f, 3, flat, err); // [1, N, H]
    lm_tensor_free(g);
    lm_tensor_free(rows);
    lm_tensor_free(cells);
    lm_tensor_free(f);
    return st;
}

/* Patch embedding (conv p x p, stride p; raster order) plus the cropped position table. */
static lm_status embed_patches(lm_tensor **out, const lm_mmdit *m, const lm_tensor *x, int64_t gh,
                               int64_t gw, const lm_mmdit_opts *o, lm_error *err)
{
    int64_t b = x->shape[0], flat[3] = { b, m->cfg.hidden, gh * gw };
    static const int perm[3] = { 0, 2, 1 };
    lm_conv2d_opts co = { .stride = m->cfg.patch };
    lm_tensor *conv = NULL, *r = NULL, *tokens = NULL, *pos = NULL;
    lm_status st = lm_conv2d(&conv, x, m->x_emb_w, m->x_emb_b, &co, err); // [B, H, gh, gw]
    if (st == LM_OK)
        st = lm_tensor_view_reshape(&r, conv, 3, flat, err); // [B, H, N]
    if (st == LM_OK)
        st = lm_tensor_view_permute(&tokens, r, perm, err); // [B, N, H] view
    inspect(o, "patch_embed", tokens);
    if (st == LM_OK)
        st = pos_crop(&pos, m, gh, gw, err); // [1, N, H]
    inspect(o, "pos_embed_cropped", pos);
    if (st == LM_OK)
        st = lm_add(out, tokens, pos, err); // [B, N, H]
    lm_tensor_free(conv);
    lm_tensor_free(r);
    lm_tensor_free(tokens);
    lm_tensor_free(pos);
    return st;
}

static bool skipped(const lm_mmdit_opts *o, int block)
{
    for (int i = 0; o->skip_layers && i < o->n_skip_layers; i++)
        if (o->skip_layers[i] == block)
            return true;
    return false;
}

static lm_status run_blocks(const lm_mmdit *m, const lm_tensor *silu_c, lm_tensor **ctx,
                            lm_tensor **x, const lm_mmdit_opts *o, lm_error *err)
{
    int depth = m->cfg.depth;
    for (int i = 0; i < depth; i++) {
        if (o->cancelled && o->cancelled(o->user))
            return lm_errorf(err, LM_ECANCELLED, "interrupted",
                             "MMDiT: cancelled before joint block %d of %d", i, depth);
        if (!skipped(o, i)) {
            lm_status st =
                lm_mmdit__block_forward(m, &m->blocks[i], silu_c, ctx, x, err); // [B, N, H]
            if (st != LM_OK)
                return st;
        }
        if (o->inspect) {
            char name[40];
            snprintf(name, sizeof(name), "block%d.x", i);
            inspect(o, name, *x); // [B, N, H]
            snprintf(name, sizeof(name), "block%d.context", i);
            inspect(o, name, *ctx); // [B, T, H]; NULL after a pre-only stream
        }
    }
    return LM_OK;
}

/* Linear(modulate(LN(x), shift, scale)) with (shift, scale) = Linear(SiLU(c)). */
static lm_status final_layer(lm_tensor **out, const lm_mmdit *m, const lm_tensor *silu_c,
                             const lm_tensor *x, lm_error *err)
{
    int64_t h = m->cfg.hidden;
    lm_tensor *mods = NULL, *shift = NULL, *scale = NULL, *ln = NULL, *mx = NULL;
    lm_status st = lm_mmdit__linear_apply(&mods, silu_c, &m->final_ada, err); // [B, 2H]
    if (st == LM_OK)
        st = lm_tensor_view_slice(&shift, mods, 1, 0, h, err); // [B, H]
    if (st == LM_OK)
        st = lm_tensor_view_slice(&scale, mods, 1, h, 2 * h, err); // [B, H]
    if (st == LM_OK)
        st = lm_layer_norm(&ln, x, NULL, NULL, LM_MMDIT__NORM_EPS, err); // [B, N, H]
    if (st == LM_OK)
        st = lm_modulate(&mx, ln, shift, scale, err); // [B, N, H]
    if (st == LM_OK)
        st = lm_mmdit__linear_apply(out, mx, &m->final_lin, err); // [B, N, p*p*Cout]
    lm_tensor *all[] = { mods, shift, scale, ln, mx };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_tensor_free(all[i]);
    return st;
}

/* The forward on the model's backend; every input is already there. */
static lm_status forward_on(const lm_mmdit *m, const lm_tensor *x, const lm_tensor *sigma,
                            const lm_tensor *context, const lm_tensor *y, const lm_mmdit_opts *o,
                            lm_tensor **out, lm_error *err)
{
    int64_t p = m->cfg.patch, gh = x->shape[2] / p, gw = x->shape[3] / p;
    lm_tensor *silu_c = NULL, *ctx = NULL, *xs = NULL, *f = NULL;
    lm_status st = embed_conditioning(&silu_c, m, sigma, y, o, err); // [B, H]
    if (st == LM_OK)
        st = lm_mmdit__linear_apply(&ctx, context, &m->ctx_emb, err); // [B, T, H]
    inspect(o, "context_emb", ctx);
    if (st == LM_OK)
        st = embed_patches(&xs, m, x, gh, gw, o, err); // [B, N, H]
    if (st == LM_OK)
        st = run_blocks(m, silu_c, &ctx, &xs, o, err); // [B, N, H]
    lm_tensor_free(ctx);
    if (st == LM_OK)
        st = final_layer(&f, m, silu_c, xs, err); // [B, N, p*p*Cout]
    inspect(o, "final_layer", f);
    if (st == LM_OK)
        st = lm_unpatchify(out, f, (int)p, (int)gh, (int)gw, err); // [B, Cout, h, w]
    lm_tensor_free(silu_c);
    lm_tensor_free(xs);
    lm_tensor_free(f);
    return st;
}

lm_status lm_mmdit_forward(const lm_mmdit *m, const lm_tensor *x, const lm_tensor *sigma,
                           const lm_tensor *context, const lm_tensor *y, const lm_mmdit_opts *opts,
                           lm_tensor **out, lm_error *err)
{
    static const lm_mmdit_opts defaults;
    static const char *const names[4] = { "MMDiT: latent x", "MMDiT: sigma", "MMDiT: context",
                                          "MMDiT: pooled y" };
    const lm_mmdit_opts *o = opts ? opts : &defaults;
    const lm_tensor *in[4] = { x, sigma, context, y }, *use[4] = { NULL, NULL, NULL, NULL };
    lm_tensor *moved[4] = { NULL, NULL, NULL, NULL };
    *out = NULL;
    lm_status st = check_inputs(m, x, sigma, context, y, err);
    for (int i = 0; i < 4 && st == LM_OK; i++) {
        st = lm_tensor_on(&moved[i], in[i], m->be, names[i], err);
        use[i] = moved[i] ? moved[i] : in[i];
    }
    if (st == LM_OK)
        st = forward_on(m, use[0], use[1], use[2], use[3], o, out, err); // [B, Cout, h, w]
    if (st == LM_OK)
        st = lm_tensor_move(out, lm_backend_cpu(), err);
    for (int i = 0; i < 4; i++)
        lm_tensor_free(moved[i]);
    return st;
}

lm_status lm_mmdit_denoised(lm_tensor **out, const lm_tensor *x, const lm_tensor *v,
                            const lm_tensor *sigma, lm_error *err)
{
    *out = NULL;
    bool ok = x && v && x->ndim == 4 && v->ndim == 4 && sigma && sigma->ndim == 1 &&
              sigma->shape[0] == x->shape[0];
    for (int d = 0; ok && d < 4; d++)
        ok = x->shape[d] == v->shape[d];
    if (!ok)
        return bad_input(err, "x, v or sigma", x, "x and v must be [B, C, h, w], sigma [B]");
    int64_t s4[4] = { sigma->shape[0], 1, 1, 1 };
    lm_tensor *sc = NULL, *s = NULL, *vs = NULL;
    lm_status st = lm_tensor_contiguous(&sc, sigma, err); // [B]
    if (st == LM_OK)
        st = lm_tensor_view_reshape(&s, sc, 4, s4, err); // [B, 1, 1, 1]
    if (st == LM_OK)
        st = lm_mul(&vs, v, s, err); // [B, C, h, w]
    if (st == LM_OK)
        st = lm_sub(out, x, vs, err); // [B, C, h, w]
    lm_tensor_free(sc);
    lm_tensor_free(s);
    lm_tensor_free(vs);
    return st;
}
