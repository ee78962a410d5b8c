/* nodes/sd3/clip.c — CLIP-L / CLIP-G text transformers (HF CLIPTextModel layout) and SD3's
 * use of them: penultimate hidden state, pooled vector, 77-token chunks, prompt weights.
 *
 * Design: the load binds every tensor by name into C structs once, with its shape checked
 * against the inferred config, so encode does no string lookups and a bad file fails at
 * load naming the tensor. Weights stay in their stored dtype; the ops convert them. One
 * chunk runs as: x = token_embedding[ids] + position_embedding[:T]; per layer
 * x += out_proj(attn_causal(LN1(x))), x += fc2(act(fc1(LN2(x)))) (HF CLIPEncoderLayer);
 * the state after layer layers-2 is SD3's context part; final_layer_norm of the last state
 * at the first EOS (argmax of the ids, as the reference) is the pooled vector. Chunks
 * after the first skip the last layer: SD3 takes its pooled vector from chunk 0 only.
 *
 * Devices: the weights are bound as views of the mapping, then (lm_clip_load_on on a
 * device) each replaced by its copy there, same dtype. Everything between the ids (copied in
 * from the host) and the public results stays on the model's backend — the chunks, the
 * empty chunk of the prompt weights, the concatenated context — and only lm_clip_forward's
 * fields and lm_clip_encode's two results are brought back to the host. */
#include "nodes/sd3/clip.h"

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/tensor/ops.h"
#include "nodes/sd3/conditioner.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    lm_tensor *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    lm_tensor *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} clip_layer;

struct lm_clip {
    lm_clip_config cfg;
    lm_backend *be;      /* where it computes: the CPU, or the device holding the weights */
    size_t device_bytes; /* weight bytes copied to that device (0 on the CPU) */
    lm_tensor *tok_emb, *pos_emb, *final_w, *final_b, *proj; /* proj NULL when absent */
    clip_layer *layers;                                      /* cfg.layers */
};

/* ---- binding ---- */

/* Dimension symbols of the bind tables: width, MLP width, projection, vocab, positions. */
enum { D_NONE, D_W, D_FF, D_PROJ, D_VOCAB, D_POS };

typedef lm_sd3_bind_row bind_row;

#define LAYER_ROW(n, f, r, c)                                                                      \
    {                                                                                              \
        n, offsetof(clip_layer, f), r, c                                                           \
    }
static const bind_row layer_rows[] = {
    LAYER_ROW("layer_norm1.weight", ln1_w, D_W, D_NONE),
    LAYER_ROW("layer_norm1.bias", ln1_b, D_W, D_NONE),
    LAYER_ROW("self_attn.q_proj.weight", q_w, D_W, D_W),
    LAYER_ROW("self_attn.q_proj.bias", q_b, D_W, D_NONE),
    LAYER_ROW("self_attn.k_proj.weight", k_w, D_W, D_W),
    LAYER_ROW("self_attn.k_proj.bias", k_b, D_W, D_NONE),
    LAYER_ROW("self_attn.v_proj.weight", v_w, D_W, D_W),
    LAYER_ROW("self_attn.v_proj.bias", v_b, D_W, D_NONE),
    LAYER_ROW("self_attn.out_proj.weight", o_w, D_W, D_W),
    LAYER_ROW("self_attn.out_proj.bias", o_b, D_W, D_NONE),
    LAYER_ROW("layer_norm2.weight", ln2_w, D_W, D_NONE),
    LAYER_ROW("layer_norm2.bias", ln2_b, D_W, D_NONE),
    LAYER_ROW("mlp.fc1.weight", fc1_w, D_FF, D_W),
    LAYER_ROW("mlp.fc1.bias", fc1_b, D_FF, D_NONE),
    LAYER_ROW("mlp.fc2.weight", fc2_w, D_W, D_FF),
    LAYER_ROW("mlp.fc2.bias", fc2_b, D_W, D_NONE),
};

#define MODEL_ROW(n, f, r, c)                                                                      \
    {                                                                                              \
        n, offsetof(struct lm_clip, f), r, c                                                       \
    }
static const bind_row model_rows[] = {
    MODEL_ROW("text_model.embeddings.token_embedding.weight", tok_emb, D_VOCAB, D_W),
    MODEL_ROW("text_model.embeddings.position_embedding.weight", pos_emb, D_POS, D_W),
    MODEL_ROW("text_model.final_layer_norm.weight", final_w, D_W, D_NONE),
    MODEL_ROW("text_model.final_layer_norm.bias", final_b, D_W, D_NONE),
};

static int64_t dim_value(const lm_clip_config *cfg, unsigned char sym)
{
    switch (sym) {
    case D_W:
        return cfg->width;
    case D_FF:
        return cfg->ff;
    case D_PROJ:
        return cfg->proj_dim;
    case D_VOCAB:
        return cfg->vocab;
    case D_POS:
        return cfg->positions;
    default:
        return 0;
    }
}

static lm_status bind_rows(const lm_clip_config *cfg, const lm_sd3_weights *w, const char *prefix,
                           const bind_row *rows, size_t n, void *base, lm_error *err)
{
    int64_t dims[D_POS + 1];
    for (unsigned char d = 0; d <= D_POS; d++)
        dims[d] = dim_value(cfg, d);
    return lm_sd3_weights_bind(w, prefix, rows, n, dims, base, err);
}

static lm_status bind_all(lm_clip *c, const lm_sd3_weights *w, lm_error *err)
{
    lm_status st = bind_rows(&c->cfg, w, "", model_rows, LM_COUNTOF(model_rows), c, err);
    if (st == LM_OK && c->cfg.proj_dim > 0) {
        int64_t shape[2] = { c->cfg.proj_dim, c->cfg.width };
        st = lm_sd3_weights_get(w, "text_projection.weight", 2, shape, &c->proj, err);
    }
    for (int l = 0; st == LM_OK && l < c->cfg.layers; l++) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "text_model.encoder.layers.%d.", l);
        st = bind_rows(&c->cfg, w, prefix, layer_rows, LM_COUNTOF(layer_rows), &c->layers[l], err);
    }
    return st;
}

static const char *kind_name(const lm_clip *c)
{
    return c->cfg.kind == LM_CLIP_KIND_L ? "CLIP-L" : "CLIP-G";
}

/* ---- every weight slot, for the device copy and for freeing ---- */

/* Calls fn on every weight slot of the model, absent (NULL) ones included. */
static lm_status each_weight(lm_clip *c, lm_sd3_slot_fn fn, void *user)
{
    lm_status st = fn(&c->proj, user);
    if (st == LM_OK)
        st = lm_sd3_weights_each_row(model_rows, LM_COUNTOF(model_rows), c, fn, user);
    for (int l = 0; st == LM_OK && c->layers && l < c->cfg.layers; l++)
        st = lm_sd3_weights_each_row(layer_rows, LM_COUNTOF(layer_rows), &c->layers[l], fn, user);
    return st;
}

/* each_weight as the walk lm_sd3_weights_to_device and lm_sd3_weights_free take. */
static lm_status walk_weights(void *c, lm_sd3_slot_fn fn, void *user)
{
    return each_weight(c, fn, user);
}

lm_status lm_clip_load_on(lm_clip **out, const lm_sd3_weights *weights, lm_clip_kind kind,
                          lm_backend *be, lm_error *err)
{
    *out = NULL;
    /* Messages name the CLIP the caller loads: a standalone file is detected as CLIP-L. */
    lm_sd3_weights wk = *weights;
    wk.component = kind == LM_CLIP_KIND_L ? LM_SD3_CLIP_L : LM_SD3_CLIP_G;
    const lm_sd3_weights *w = &wk;
    lm_clip *c = lm_calloc(1, sizeof(*c));
    if (!c)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "no memory for a CLIP model");
    c->be = be && !lm_backend_is_host(be) ? be : lm_backend_cpu();
    lm_status st = lm_clip_config_infer(&c->cfg, w, kind, err);
    if (st == LM_OK && c->cfg.positions < 2) {
        st = lm_errorf(err, LM_EFORMAT, "bad_model_config",
                       "%s: position_embedding has %d rows; a chunk needs at least 2",
                       lm_sd3_component_name(w->component), c->cfg.positions);
        lm_error_at_file(err, lm_safetensors_path(w->st), 0, 0);
    }
    if (st == LM_OK) {
        c->layers = lm_calloc((size_t)c->cfg.layers, sizeof(*c->layers));
        if (!c->layers)
            st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "no memory for CLIP layers");
    }
    if (st == LM_OK)
        st = bind_all(c, w, err);
    if (st == LM_OK && c->be != lm_backend_cpu())
        st = lm_sd3_weights_to_device(c, walk_weights, kind_name(c), c->be, &c->device_bytes, err);
    if (st != LM_OK) {
        lm_clip_free(c);
        return st;
    }
    char desc[256];
    lm_clip_config_describe(&c->cfg, desc, sizeof(desc));
    LM_LOG_DEBUG("sd3", "%s (%s); on %s (%zu weight bytes copied)", desc,
                 lm_safetensors_path(w->st), lm_backend_name(c->be), c->device_bytes);
    *out = c;
    return LM_OK;
}

lm_status lm_clip_load(lm_clip **out, const lm_sd3_weights *w, lm_clip_kind kind, lm_error *err)
{
    return lm_clip_load_on(out, w, kind, NULL, err);
}

void lm_clip_free(lm_clip *clip)
{
    if (!clip)
        return;
    lm_sd3_weights_free(clip, walk_weights);
    lm_free(clip->layers);
    lm_free(clip);
}

const lm_clip_config *lm_clip_config_of(const lm_clip *clip)
{
    return &clip->cfg;
}

int lm_clip_pooled_width(const lm_clip *clip)
{
    return clip->cfg.pooled_projected ? clip->cfg.proj_dim : clip->cfg.width;
}

lm_backend *lm_clip_backend(const lm_clip *clip)
{
    return clip->be;
}

size_t lm_clip_device_bytes(const lm_clip *clip)
{
    return clip->device_bytes;
}

/* ---- one chunk ---- */

/* token_embedding[ids] + position_embedding[:n] (HF CLIPTextEmbeddings). */
static lm_status embed(const lm_clip *c, const int32_t *ids, size_t n, lm_tensor **out,
                       lm_error *err)
{
    lm_tensor *idt = NULL, *tok = NULL, *pos = NULL;
    lm_status st = lm_sd3_token_ids_tensor(&idt, ids, n, c->cfg.vocab, kind_name(c), c->be,
                                           err); // [1, T]
    if (st == LM_OK)
        st = lm_embedding(&tok, c->tok_emb, idt, err); // [1, T, W]
    if (st == LM_OK)
        st = lm_tensor_view_slice(&pos, c->pos_emb, 0, 0, (int64_t)n, err); // [T, W]
    if (st == LM_OK)
        st = lm_add(out, tok, pos, err); // [1, T, W]
    lm_tensor_free(idt);
    lm_tensor_free(tok);
    lm_tensor_free(pos);
    return st;
}

/* x + out_proj(attention(LN1(x))): causal, no padding mask, heads of W/heads. */
static lm_status attn_block(const lm_clip *c, const clip_layer *L, const lm_tensor *x,
                            lm_tensor **out, lm_error *err)
{
    lm_tensor *h = NULL, *q = NULL, *k = NULL, *v = NULL, *a = NULL, *o = NULL;
    lm_attention_opts ao = { .heads = c->cfg.heads, .causal = true };
    lm_status st = lm_layer_norm(&h, x, L->ln1_w, L->ln1_b, c->cfg.eps, err); // [1, T, W]
    if (st == LM_OK)
        st = lm_linear(&q, h, L->q_w, L->q_b, err); // [1, T, W]
    if (st == LM_OK)
        st = lm_linear(&k, h, L->k_w, L->k_b, err); // [1, T, W]
    if (st == LM_OK)
        st = lm_linear(&v, h, L->v_w, L->v_b, err); // [1, T, W]
    if (st == LM_OK)
        st = lm_attention(&a, q, k, v, NULL, &ao, err); // [1, T, W]
    if (st == LM_OK)
        st = lm_linear(&o, a, L->o_w, L->o_b, err); // [1, T, W]
    if (st == LM_OK)
        st = lm_add(out, x, o, err); // [1, T, W]
    lm_tensor *tmp[] = { h, q, k, v, a, o };
    for (size_t i = 0; i < LM_COUNTOF(tmp); i++)
        lm_tensor_free(tmp[i]);
    return st;
}

/* x + fc2(act(fc1(LN2(x)))). */
static lm_status mlp_block(const lm_clip *c, const clip_layer *L, const lm_tensor *x,
                           lm_tensor **out, lm_error *err)
{
    lm_tensor *h = NULL, *f = NULL, *g = NULL, *o = NULL;
    lm_status st = lm_layer_norm(&h, x, L->ln2_w, L->ln2_b, c->cfg.eps, err); // [1, T, W]
    if (st == LM_OK)
        st = lm_linear(&f, h, L->fc1_w, L->fc1_b, err); // [1, T, F]
    if (st == LM_OK)
        st = c->cfg.act == LM_CLIP_ACT_GELU ? lm_gelu(&g, f, err) // [1, T, F]
                                            : lm_quick_gelu(&g, f, err);
    if (st == LM_OK)
        st = lm_linear(&o, g, L->fc2_w, L->fc2_b, err); // [1, T, W]
    if (st == LM_OK)
        st = lm_add(out, x, o, err); // [1, T, W]
    lm_tensor_free(h);
    lm_tensor_free(f);
    lm_tensor_free(g);
    lm_tensor_free(o);
    return st;
}

/* One encoder layer; *x is replaced by the layer's output. */
static lm_status layer_forward(const lm_clip *c, const clip_layer *L, lm_tensor **x, lm_error *err)
{
    lm_tensor *mid = NULL, *next = NULL;
    lm_status st = attn_block(c, L, *x, &mid, err); // [1, T, W]
    if (st == LM_OK)
        st = mlp_block(c, L, mid, &next, err); // [1, T, W]
    lm_tensor_free(mid);
    if (st == LM_OK) {
        lm_tensor_free(*x);
        *x = next;
    }
    return st;
}

/* The first position of the largest id: the reference's argmax(ids), i.e. the first EOS. */
static size_t pooled_position(const int32_t *ids, size_t n)
{
    size_t at = 0;
    for (size_t i = 1; i < n; i++)
        if (ids[i] > ids[at])
            at = i;
    return at;
}

/* final_layer_norm(last) and what is taken from it: the pooled row and its projection. */
static lm_status head(const lm_clip *c, const lm_tensor *last, size_t pos, unsigned want,
                      lm_clip_hidden *out, lm_error *err)
{
    lm_tensor *ln = NULL, *row = NULL, *pooled = NULL;
    int64_t flat[2] = { 1, c->cfg.width };
    lm_status st = lm_layer_norm(&ln, last, c->final_w, c->final_b, c->cfg.eps, err); // [1,T,W]
    if (st == LM_OK)
        st = lm_tensor_view_slice(&row, ln, 1, (int64_t)pos, (int64_t)pos + 1, err); // [1,1,W]
    if (st == LM_OK)
        st = lm_tensor_view_reshape(&pooled, row, 2, flat, err); // [1, W]
    if (st == LM_OK && (want & LM_CLIP_WANT_POOLED_PROJECTED)) {
        if (!c->proj)
            st = lm_errorf(err, LM_ENOTFOUND, "missing_tensor",
                           "%s: the file has no text_projection.weight", kind_name(c));
        else
            st = lm_linear(&out->pooled_projected, pooled, c->proj, NULL, err); // [1, P]
    }
    if (st == LM_OK && (want & LM_CLIP_WANT_LAST_HIDDEN_LN)) {
        out->last_hidden_ln = ln;
        ln = NULL;
    }
    if (st == LM_OK && (want & LM_CLIP_WANT_POOLED_RAW)) {
        out->pooled_raw = pooled;
        pooled = NULL;
    }
    lm_tensor_free(ln);
    lm_tensor_free(row);
    lm_tensor_free(pooled);
    return st;
}

/* Runs the layers over x (consumed); keeps the penultimate state when asked. */
static lm_status run_layers(const lm_clip *c, lm_tensor **x, int n_layers, unsigned want,
                            lm_clip_hidden *out, lm_error *err)
{
    lm_status st = LM_OK;
    if ((want & LM_CLIP_WANT_PENULTIMATE) && c->cfg.layers == 1)
        st = lm_tensor_view(&out->penultimate, *x, err); /* HF hidden_states[-2] = embeddings */
    for (int l = 0; st == LM_OK && l < n_layers; l++) {
        st = layer_forward(c, &c->layers[l], x, err); // [1, T, W]
        if (st == LM_OK && l == c->cfg.layers - 2 && (want & LM_CLIP_WANT_PENULTIMATE))
            st = lm_tensor_view(&out->penultimate, *x, err);
    }
    return st;
}

/* lm_clip_forward with the results left on the model's backend. */
static lm_status forward(const lm_clip *clip, const int32_t *ids, size_t n, unsigned want,
                         lm_clip_hidden *out, lm_error *err)
{
    memset(out, 0, sizeof(*out));
    if (n < 1 || n > (size_t)clip->cfg.positions)
        return lm_errorf(err, LM_EINVAL, "bad_token_count",
                         "%s: a chunk has %zu tokens; it must have 1 to %d", kind_name(clip), n,
                         clip->cfg.positions);
    const unsigned need_last =
        LM_CLIP_WANT_LAST_HIDDEN_LN | LM_CLIP_WANT_POOLED_RAW | LM_CLIP_WANT_POOLED_PROJECTED;
    int n_layers = (want & need_last) ? clip->cfg.layers : LM_MAX(clip->cfg.layers - 1, 0);
    lm_tensor *x = NULL;
    lm_status st = embed(clip, ids, n, &x, err); // [1, T, W]
    if (st == LM_OK && (want & LM_CLIP_WANT_EMBEDDINGS))
        st = lm_tensor_view(&out->embeddings, x, err);
    if (st == LM_OK)
        st = run_layers(clip, &x, n_layers, want, out, err); // [1, T, W]
    if (st == LM_OK && (want & need_last))
        st = head(clip, x, pooled_position(ids, n), want, out, err);
    lm_tensor_free(x);
    if (st != LM_OK)
        lm_clip_hidden_fini(out);
    return st;
}

lm_status lm_clip_forward(const lm_clip *clip, const int32_t *ids, size_t n, unsigned want,
                          lm_clip_hidden *out, lm_error *err)
{
    lm_tensor **fields[5] = { &out->embeddings, &out->penultimate, &out->last_hidden_ln,
                              &out->pooled_raw, &out->pooled_projected };
    lm_status st = forward(clip, ids, n, want, out, err);
    for (size_t i = 0; st == LM_OK && i < LM_COUNTOF(fields); i++)
        st = lm_tensor_move(fields[i], lm_backend_cpu(), err);
    if (st != LM_OK)
        lm_clip_hidden_fini(out);
    return st;
}

void lm_clip_hidden_fini(lm_clip_hidden *h)
{
    if (!h)
        return;
    lm_tensor_free(h->embeddings);
    lm_tensor_free(h->penultimate);
    lm_tensor_free(h->last_hidden_ln);
    lm_tensor_free(h->pooled_raw);
    lm_tensor_free(h->pooled_projected);
    memset(h, 0, sizeof(*h));
}

/* ---- SD3's prompt encoding ---- */

/* The empty prompt's chunk: [BOS, EOS, pad, …] (ComfyUI's gen_empty_tokens). */
static lm_status empty_chunk(const lm_clip *c, int32_t **out, lm_error *err)
{
    size_t n = (size_t)c->cfg.positions;
    *out = lm_malloc(n * sizeof(int32_t));
    if (!*out)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "no memory for token ids");
    (*out)[0] = LM_CLIP_BOS_ID;
    (*out)[1] = LM_CLIP_EOS_ID;
    for (size_t i = 2; i < n; i++)
        (*out)[i] = c->cfg.pad_id;
    return LM_OK;
}

/* One chunk's SD3 outputs: penultimate (weighted against z_empty when given) and, for
 * chunk 0, the pooled vector. */
static lm_status encode_chunk(const lm_clip *c, const int32_t *ids, const double *weights,
                              const lm_tensor *z_empty, lm_tensor **penult, lm_tensor **pooled,
                              lm_error *err)
{
    size_t n = (size_t)c->cfg.positions;
    unsigned want = LM_CLIP_WANT_PENULTIMATE;
    if (pooled)
        want |= c->cfg.pooled_projected ? LM_CLIP_WANT_POOLED_PROJECTED : LM_CLIP_WANT_POOLED_RAW;
    lm_clip_hidden h;
    lm_status st = forward(c, ids, n, want, &h, err);
    if (st != LM_OK)
        return st;
    if (z_empty) {
        st = lm_sd3_token_weights_apply(penult, h.penultimate, z_empty, weights, err);
    } else {
        *penult = h.penultimate;
        h.penultimate = NULL;
    }
    if (st == LM_OK && pooled) {
        lm_tensor **src = c->cfg.pooled_projected ? &h.pooled_projected : &h.pooled_raw;
        *pooled = *src;
        *src = NULL;
    }
    lm_clip_hidden_fini(&h);
    return st;
}

/* Encodes chunk k and copies its rows into ctx [1, 77*chunks, W]. */
static lm_status encode_into(const lm_clip *c, const int32_t *ids, const double *weights,
                             const lm_tensor *z_empty, size_t k, lm_tensor *ctx, lm_tensor **pooled,
                             lm_error *err)
{
    size_t chunk = (size_t)c->cfg.positions;
    lm_tensor *z = NULL, *dst = NULL;
    lm_status st = encode_chunk(c, ids + k * chunk, z_empty ? weights + k * chunk : NULL, z_empty,
                                &z, k == 0 ? pooled : NULL, err); // [1, 77, W]
    if (st == LM_OK)
        st = lm_tensor_view_slice(&dst, ctx, 1, (int64_t)(k * chunk), (int64_t)((k + 1) * chunk),
                                  err); // [1, 77, W]
    if (st == LM_OK)
        st = lm_tensor_copy(dst, z, err);
    lm_tensor_free(z);
    lm_tensor_free(dst);
    return st;
}

static lm_status encode_chunks(const lm_clip *c, const int32_t *ids, size_t n_chunks,
                               const double *weights, const lm_tensor *z_empty,
                               lm_tensor **penult_out, lm_tensor **pooled_out, lm_error *err)
{
    int64_t shape[3] = { 1, (int64_t)n_chunks * c->cfg.positions, c->cfg.width };
    lm_tensor *ctx = NULL, *pooled = NULL;
    lm_status st = lm_tensor_new(&ctx, c->be, LM_DTYPE_F32, 3, shape, err); // [1, 77*K, W]
    for (size_t k = 0; st == LM_OK && k < n_chunks; k++)
        st = encode_into(c, ids, weights, z_empty, k, ctx, pooled_out ? &pooled : NULL, err);
    if (st != LM_OK) {
        lm_tensor_free(ctx);
        lm_tensor_free(pooled);
        return st;
    }
    if (penult_out)
        *penult_out = ctx;
    else
        lm_tensor_free(ctx);
    if (pooled_out)
        *pooled_out = pooled;
    return LM_OK;
}

/* The encode's results (either may be NULL) as host tensors; on failure both are freed. */
static lm_status results_to_host(lm_tensor **penult, lm_tensor **pooled, lm_error *err)
{
    lm_status st = penult ? lm_tensor_move(penult, lm_backend_cpu(), err) : LM_OK; // [1, 77*K, W]
    if (st == LM_OK && pooled)
        st = lm_tensor_move(pooled, lm_backend_cpu(), err); // [1, P]
    if (st != LM_OK && penult) {
        lm_tensor_free(*penult);
        *penult = NULL;
    }
    if (st != LM_OK && pooled) {
        lm_tensor_free(*pooled);
        *pooled = NULL;
    }
    return st;
}

lm_status lm_clip_encode(const lm_clip *clip, const int32_t *ids, size_t n_tokens,
                         const double *weights, lm_tensor **penultimate_out, lm_tensor **pooled_out,
                         lm_error *err)
{
    size_t chunk = (size_t)clip->cfg.positions;
    if (penultimate_out)
        *penultimate_out = NULL;
    if (pooled_out)
        *pooled_out = NULL;
    if (n_tokens % chunk != 0)
        return lm_errorf(err, LM_EINVAL, "bad_token_count",
                         "%s: %zu token ids are not whole chunks of %zu", kind_name(clip), n_tokens,
                         chunk);
    bool weighted = lm_sd3_token_weights_any(weights, n_tokens);
    int32_t *empty = NULL;
    lm_clip_hidden eh = { 0 };
    lm_status st = LM_OK;
    if (weighted || n_tokens == 0)
        st = empty_chunk(clip, &empty, err);
    if (st == LM_OK && weighted)
        st = forward(clip, empty, chunk, LM_CLIP_WANT_PENULTIMATE, &eh, err);
    if (st == LM_OK)
        st = encode_chunks(clip, n_tokens ? ids : empty, n_tokens ? n_tokens / chunk : 1,
                           weighted ? weights : NULL, eh.penultimate, penultimate_out, pooled_out,
                           err);
    lm_clip_hidden_fini(&eh);
    lm_free(empty);
    return st == LM_OK ? results_to_host(penultimate_out, pooled_out, err) : st;
}
