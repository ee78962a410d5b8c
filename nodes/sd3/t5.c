/* nodes/sd3/t5.c — the T5 v1.1 encoder (HF T5EncoderModel layout) for SD3's context.
 *
 * Design: the load binds every tensor by name once, shapes checked against the inferred
 * config; weights stay in their stored dtype (F16 in sd3.5, float8 e4m3fn in SD3's fp8
 * file, norms and bias table included) and the ops convert them per use. The encoder
 * (T5 v1.1 paper; HF T5Block with T5LayerSelfAttention and T5DenseGatedActDense):
 *   x = shared[ids]
 *   per block: x += o(attention(q, k, v of rms(x), bias)), unscaled logits
 *              x += wo(gelu_tanh(wi_0(h)) * wi_1(h)), h = rms(x)
 *   out = rms(x) with the final norm
 * The bias [1, H, T, T] is computed once per call from block 0's table
 * (relative_attention_bias[bucket(j - i)]) and shared by every block, as the reference
 * does. No padding mask, no truncation: the caller's length is used as is.
 *
 * Devices: the weights are bound as views of the mapping, then (lm_t5_load_on on a device)
 * each replaced by its copy there, same dtype. The public functions are thin wrappers that
 * bring the result of an internal pass (embed, position_bias, encode: all on the model's
 * backend) back to the host; ids go the other way, built on the host and copied. */
#include "nodes/sd3/t5.h"

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/tensor/ops.h"
#include "nodes/sd3/conditioner.h"

#include <stddef.h>
#include <stdio.h>

#define T5_EMPTY_LEN 77 /* ComfyUI pads T5 prompts to at least this */

typedef struct {
    lm_tensor *ln0, *q, *k, *v, *o;  /* layer.0: self-attention */
    lm_tensor *ln1, *wi0, *wi1, *wo; /* layer.1: gated-GELU MLP */
} t5_block;

struct lm_t5 {
    lm_t5_config cfg;
    lm_backend *be;      /* where it computes: the CPU, or the device holding the weights */
    size_t device_bytes; /* weight bytes copied to that device (0 on the CPU) */
    lm_tensor *shared, *rel_bias, *final_ln;
    t5_block *blocks; /* cfg.layers */
};

/* ---- binding ---- */

enum { D_NONE, D_MODEL, D_INNER, D_FF, D_VOCAB, D_BUCKETS, D_HEADS };

typedef lm_sd3_bind_row bind_row;

#define BLOCK_ROW(n, f, r, c)                                                                      \
    {                                                                                              \
        n, offsetof(t5_block, f), r, c                                                             \
    }
static const bind_row block_rows[] = {
    BLOCK_ROW("layer.0.layer_norm.weight", ln0, D_MODEL, D_NONE),
    BLOCK_ROW("layer.0.SelfAttention.q.weight", q, D_INNER, D_MODEL),
    BLOCK_ROW("layer.0.SelfAttention.k.weight", k, D_INNER, D_MODEL),
    BLOCK_ROW("layer.0.SelfAttention.v.weight", v, D_INNER, D_MODEL),
    BLOCK_ROW("layer.0.SelfAttention.o.weight", o, D_MODEL, D_INNER),
    BLOCK_ROW("layer.1.layer_norm.weight", ln1, D_MODEL, D_NONE),
    BLOCK_ROW("layer.1.DenseReluDense.wi_0.weight", wi0, D_FF, D_MODEL),
    BLOCK_ROW("layer.1.DenseReluDense.wi_1.weight", wi1, D_FF, D_MODEL),
    BLOCK_ROW("layer.1.DenseReluDense.wo.weight", wo, D_MODEL, D_FF),
};

#define MODEL_ROW(n, f, r, c)                                                                      \
    {                                                                                              \
        n, offsetof(struct lm_t5, f), r, c                                                         \
    }
static const bind_row model_rows[] = {
    MODEL_ROW("shared.weight", shared, D_VOCAB, D_MODEL),
    MODEL_ROW("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", rel_bias,
              D_BUCKETS, D_HEADS),
    MODEL_ROW("encoder.final_layer_norm.weight", final_ln, D_MODEL, D_NONE),
};

static int64_t dim_value(const lm_t5_config *cfg, unsigned char sym)
{
    switch (sym) {
    case D_MODEL:
        return cfg->d_model;
    case D_INNER:
        return (int64_t)cfg->heads * cfg->d_kv;
    case D_FF:
        return cfg->d_ff;
    case D_VOCAB:
        return cfg->vocab;
    case D_BUCKETS:
        return cfg->num_buckets;
    case D_HEADS:
        return cfg->heads;
    default:
        return 0;
    }
}

static lm_status bind_rows(const lm_t5_config *cfg, const lm_sd3_weights *w, const char *prefix,
                           const bind_row *rows, size_t n, void *base, lm_error *err)
{
    int64_t dims[D_HEADS + 1];
    for (unsigned char d = 0; d <= D_HEADS; d++)
        dims[d] = dim_value(cfg, d);
    return lm_sd3_weights_bind(w, prefix, rows, n, dims, base, err);
}

static lm_status bind_all(lm_t5 *t, const lm_sd3_weights *w, lm_error *err)
{
    lm_status st = bind_rows(&t->cfg, w, "", model_rows, LM_COUNTOF(model_rows), t, err);
    for (int l = 0; st == LM_OK && l < t->cfg.layers; l++) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "encoder.block.%d.", l);
        st = bind_rows(&t->cfg, w, prefix, block_rows, LM_COUNTOF(block_rows), &t->blocks[l], err);
    }
    return st;
}

/* ---- every weight slot, for the device copy and for freeing ---- */

/* Calls fn on every weight slot of the model. */
static lm_status each_weight(lm_t5 *t, lm_sd3_slot_fn fn, void *user)
{
    lm_status st = lm_sd3_weights_each_row(model_rows, LM_COUNTOF(model_rows), t, fn, user);
    for (int l = 0; st == LM_OK && t->blocks && l < t->cfg.layers; l++)
        st = lm_sd3_weights_each_row(block_rows, LM_COUNTOF(block_rows), &t->blocks[l], fn, user);
    return st;
}

/* each_weight as the walk lm_sd3_weights_to_device and lm_sd3_weights_free take. */
static lm_status walk_weights(void *t, lm_sd3_slot_fn fn, void *user)
{
    return each_weight(t, fn, user);
}

lm_status lm_t5_load_on(lm_t5 **out, const lm_sd3_weights *w, lm_backend *be, lm_error *err)
{
    *out = NULL;
    lm_t5 *t = lm_calloc(1, sizeof(*t));
    if (!t)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "no memory for a T5 model");
    t->be = be && !lm_backend_is_host(be) ? be : lm_backend_cpu();
    lm_status st = lm_t5_config_infer(&t->cfg, w, err);
    if (st == LM_OK) {
        t->blocks = lm_calloc((size_t)LM_MAX(t->cfg.layers, 1), sizeof(*t->blocks));
        if (!t->blocks)
            st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "no memory for T5 blocks");
    }
    if (st == LM_OK)
        st = bind_all(t, w, err);
    if (st == LM_OK && t->be != lm_backend_cpu())
        st = lm_sd3_weights_to_device(t, walk_weights, "T5-XXL", t->be, &t->device_bytes, err);
    if (st != LM_OK) {
        lm_t5_free(t);
        return st;
    }
    char desc[256];
    lm_t5_config_describe(&t->cfg, desc, sizeof(desc));
    LM_LOG_DEBUG("sd3", "%s (%s); on %s (%zu weight bytes copied)", desc,
                 lm_safetensors_path(w->st), lm_backend_name(t->be), t->device_bytes);
    *out = t;
    return LM_OK;
}

lm_status lm_t5_load(lm_t5 **out, const lm_sd3_weights *w, lm_error *err)
{
    return lm_t5_load_on(out, w, NULL, err);
}

void lm_t5_free(lm_t5 *t5)
{
    if (!t5)
        return;
    lm_sd3_weights_free(t5, walk_weights);
    lm_free(t5->blocks);
    lm_free(t5);
}

const lm_t5_config *lm_t5_config_of(const lm_t5 *t5)
{
    return &t5->cfg;
}

lm_backend *lm_t5_backend(const lm_t5 *t5)
{
    return t5->be;
}

size_t lm_t5_device_bytes(const lm_t5 *t5)
{
    return t5->device_bytes;
}

/* ---- forward ---- */

/* After a pass that made *t on the model's backend (status st): *t on the host (NULL on
 * failure). */
static lm_status to_host(lm_status st, lm_tensor **t, lm_error *err)
{
    return st == LM_OK ? lm_tensor_move(t, lm_backend_cpu(), err) : st;
}

/* lm_t5_position_bias on the model's backend. */
static lm_status position_bias(const lm_t5 *t5, int64_t n, lm_tensor **out, lm_error *err)
{
    *out = NULL;
    static const int perm[3] = { 2, 0, 1 };
    int64_t shape[4] = { 1, t5->cfg.heads, n, n };
    lm_tensor *buckets = NULL, *rows = NULL, *hqk = NULL, *flat = NULL;
    lm_status st = lm_t5_buckets(&buckets, t5->be, n, n, t5->cfg.num_buckets, t5->cfg.max_distance,
                                 true, err); // [T, T]
    if (st == LM_OK)
        st = lm_embedding(&rows, t5->rel_bias, buckets, err); // [T, T, H]
    if (st == LM_OK)
        st = lm_tensor_view_permute(&hqk, rows, perm, err); // [H, T, T] view
    if (st == LM_OK)
        st = lm_tensor_contiguous(&flat, hqk, err); // [H, T, T]
    if (st == LM_OK)
        st = lm_tensor_view_reshape(out, flat, 4, shape, err); // [1, H, T, T]
    lm_tensor_free(buckets);
    lm_tensor_free(rows);
    lm_tensor_free(hqk);
    lm_tensor_free(flat);
    return st;
}

lm_status lm_t5_position_bias(const lm_t5 *t5, int64_t n, lm_tensor **out, lm_error *err)
{
    return to_host(position_bias(t5, n, out, err), out, err); // [1, H, T, T]
}

/* lm_t5_embed on the model's backend. */
static lm_status embed(const lm_t5 *t5, const int32_t *ids, size_t n, lm_tensor **out,
                       lm_error *err)
{
    *out = NULL;
    lm_tensor *idt = NULL;
    lm_status st = lm_sd3_token_ids_tensor(&idt, ids, n, t5->cfg.vocab, "T5-XXL", t5->be,
                                           err); // [1, T]
    if (st == LM_OK)
        st = lm_embedding(out, t5->shared, idt, err); // [1, T, D]
    lm_tensor_free(idt);
    return st;
}

lm_status lm_t5_embed(const lm_t5 *t5, const int32_t *ids, size_t n, lm_tensor **out, lm_error *err)
{
    return to_host(embed(t5, ids, n, out, err), out, err); // [1, T, D]
}

/* x + o(attention(rms(x))) with the shared bias and no 1/sqrt(d_kv) scaling. */
static lm_status attn_block(const lm_t5 *t, const t5_block *b, const lm_tensor *x,
                            const lm_tensor *bias, lm_tensor **out, lm_error *err)
{
    lm_tensor *h = NULL, *q = NULL, *k = NULL, *v = NULL, *a = NULL, *o = NULL;
    lm_attention_opts ao = { .heads = t->cfg.heads, .causal = false, .scale = 1.0f };
    lm_status st = lm_rms_norm(&h, x, b->ln0, t->cfg.eps, err); // [1, T, D]
    if (st == LM_OK)
        st = lm_linear(&q, h, b->q, NULL, err); // [1, T, H*dkv]
    if (st == LM_OK)
        st = lm_linear(&k, h, b->k, NULL, err); // [1, T, H*dkv]
    if (st == LM_OK)
        st = lm_linear(&v, h, b->v, NULL, err); // [1, T, H*dkv]
    if (st == LM_OK)
        st = lm_attention(&a, q, k, v, bias, &ao, err); // [1, T, H*dkv]
    if (st == LM_OK)
        st = lm_linear(&o, a, b->o, NULL, err); // [1, T, D]
    if (st == LM_OK)
        st = lm_add(out, x, o, err); // [1, T, D]
    lm_tensor *tmp[] = { h, q, k, v, a, o };
    for (size_t i = 0; i < LM_COUNTOF(tmp); i++)
        lm_tensor_free(tmp[i]);
    return st;
}

/* x + wo(gelu_tanh(wi_0(h)) * wi_1(h)), h = rms(x). */
static lm_status mlp_block(const lm_t5 *t, const t5_block *b, const lm_tensor *x, lm_tensor **out,
                           lm_error *err)
{
    lm_tensor *h = NULL, *g0 = NULL, *g = NULL, *u = NULL, *m = NULL, *o = NULL;
    lm_status st = lm_rms_norm(&h, x, b->ln1, t->cfg.eps, err); // [1, T, D]
    if (st == LM_OK)
        st = lm_linear(&g0, h, b->wi0, NULL, err); // [1, T, F]
    if (st == LM_OK)
        st = lm_gelu_tanh(&g, g0, err); // [1, T, F]
    if (st == LM_OK)
        st = lm_linear(&u, h, b->wi1, NULL, err); // [1, T, F]
    if (st == LM_OK)
        st = lm_mul(&m, g, u, err); // [1, T, F]
    if (st == LM_OK)
        st = lm_linear(&o, m, b->wo, NULL, err); // [1, T, D]
    if (st == LM_OK)
        st = lm_add(out, x, o, err); // [1, T, D]
    lm_tensor *tmp[] = { h, g0, g, u, m, o };
    for (size_t i = 0; i < LM_COUNTOF(tmp); i++)
        lm_tensor_free(tmp[i]);
    return st;
}

/* One block; *x is replaced by its output. */
static lm_status block_forward(const lm_t5 *t, const t5_block *b, const lm_tensor *bias,
                               lm_tensor **x, lm_error *err)
{
    lm_tensor *mid = NULL, *next = NULL;
    lm_status st = attn_block(t, b, *x, bias, &mid, err); // [1, T, D]
    if (st == LM_OK)
        st = mlp_block(t, b, mid, &next, err); // [1, T, D]
    lm_tensor_free(mid);
    if (st == LM_OK) {
        lm_tensor_free(*x);
        *x = next;
    }
    return st;
}

/* The encoder on n >= 1 ids, unweighted. */
static lm_status forward(const lm_t5 *t, const int32_t *ids, size_t n, lm_tensor **out,
                         lm_error *err)
{
    lm_tensor *x = NULL, *bias = NULL;
    lm_status st = embed(t, ids, n, &x, err); // [1, T, D]
    if (st == LM_OK)
        st = position_bias(t, (int64_t)n, &bias, err); // [1, H, T, T]
    for (int l = 0; st == LM_OK && l < t->cfg.layers; l++)
        st = block_forward(t, &t->blocks[l], bias, &x, err); // [1, T, D]
    if (st == LM_OK)
        st = lm_rms_norm(out, x, t->final_ln, t->cfg.eps, err); // [1, T, D]
    lm_tensor_free(x);
    lm_tensor_free(bias);
    return st;
}

/* [</s>, <pad>, …] of n ids: ComfyUI's empty T5 sequence (no start token). */
static int32_t *empty_ids(size_t n)
{
    int32_t *ids = lm_malloc(n * sizeof(int32_t));
    if (!ids)
        return NULL;
    ids[0] = LM_T5_EOS_ID;
    for (size_t i = 1; i < n; i++)
        ids[i] = LM_T5_PAD_ID;
    return ids;
}

/* lm_t5_encode on the model's backend. */
static lm_status encode(const lm_t5 *t5, const int32_t *ids, size_t n, const double *weights,
                        lm_tensor **out, lm_error *err)
{
    *out = NULL;
    bool weighted = lm_sd3_token_weights_any(weights, n);
    int32_t *empty = NULL;
    if (weighted || n == 0) {
        empty = empty_ids(n ? n : T5_EMPTY_LEN);
        if (!empty)
            return lm_errorf(err, LM_ENOMEM, "out_of_memory", "no memory for token ids");
    }
    if (n == 0) {
        lm_status st = forward(t5, empty, T5_EMPTY_LEN, out, err);
        lm_free(empty);
        return st;
    }
    if (!weighted)
        return forward(t5, ids, n, out, err); // [1, T, D]
    lm_tensor *z = NULL, *z_empty = NULL;
    lm_status st = forward(t5, ids, n, &z, err); // [1, T, D]
    if (st == LM_OK)
        st = forward(t5, empty, n, &z_empty, err); // [1, T, D]
    if (st == LM_OK)
        st = lm_sd3_token_weights_apply(out, z, z_empty, weights, err); // [1, T, D]
    lm_tensor_free(z);
    lm_tensor_free(z_empty);
    lm_free(empty);
    return st;
}

lm_status lm_t5_encode(const lm_t5 *t5, const int32_t *ids, size_t n, const double *weights,
                       lm_tensor **out, lm_error *err)
{
    return to_host(encode(t5, ids, n, weights, out, err), out, err); // [1, T, D]
}
