/* nodes/sd3/mmdit_block.c — one MMDiT / MMDiT-X joint block (SD3 paper §4, Fig. 2b).
 *
 * Each stream (context tokens, image tokens) has its own weights. Per stream: adaLN
 * modulation vectors from SiLU(c) (shift, scale, gate for the attention, the same for the
 * MLP, and for MMDiT-X blocks a third set for attn2), then q, k, v from the modulated
 * LayerNorm (no affine, eps 1e-6) with an optional per-head q/k norm. The two streams'
 * q, k, v are joined along the sequence — context first, then image tokens — for one
 * softmax attention; its output is split back, and each stream adds its gated projection
 * and its gated MLP (tanh GELU). A "pre-only" context stream (the last block's) stops after
 * q, k, v. MMDiT-X blocks (SD3.5 "x_block attn2") also run a self-attention over the image
 * tokens alone, on the same LayerNorm modulated with the attn2 shift/scale, and add its
 * gated projection before the MLP.
 *
 * Fusion: q, k, v come from one linear each stream; the per-head q/k norm rewrites the q
 * and k columns of that tensor in place (it is ours), so the joint q, k, v are one concat of
 * the two streams' qkv and the attention reads them as row-strided views. Every
 * intermediate is freed as soon as its last reader has run. */
#include "nodes/sd3/mmdit_impl.h"

#include <string.h>

typedef struct {
    lm_tensor *mods;                    // [B, n*H]
    lm_tensor *mod[LM_MMDIT__MAX_MODS]; // views [B, H], strided
    lm_tensor *qkv;                     // [B, S, 3H] (q, k normed in place)
    lm_tensor *qkv2;                    // [B, S, 3H] attn2's, or NULL
} stream_pre;

static void pre_free(stream_pre *p)
{
    for (int i = 0; i < LM_MMDIT__MAX_MODS; i++)
        lm_tensor_free(p->mod[i]);
    lm_tensor_free(p->mods);
    lm_tensor_free(p->qkv);
    lm_tensor_free(p->qkv2);
    memset(p, 0, sizeof(*p));
}

lm_status lm_mmdit__linear_apply(lm_tensor **out, const lm_tensor *x, const lm_mmdit__linear *l,
                                 lm_error *err)
{
    return lm_linear(out, x, l->w, l->b, err);
}

/* mods = Linear(SiLU(c)) cut into n views [B, H] in the adaLN chunk order. */
static lm_status modulation(stream_pre *p, const lm_mmdit__stream *s, const lm_tensor *silu_c,
                            int hidden, lm_error *err)
{
    lm_status st = lm_mmdit__linear_apply(&p->mods, silu_c, &s->ada, err); // [B, n*H]
    for (int i = 0; st == LM_OK && i < s->n_mods; i++)
        st = lm_tensor_view_slice(&p->mod[i], p->mods, 1, (int64_t)i * hidden,
                                  (int64_t)(i + 1) * hidden, err); // [B, H]
    return st;
}

/* Per-head q/k norm (SD3.5 "ln_q"/"ln_k"), written back into qkv's q and k columns. */
static lm_status qk_norm(lm_tensor *qkv, const lm_mmdit__attn *a, const lm_mmdit_config *cfg,
                         lm_error *err)
{
    if (cfg->qk_norm == LM_MMDIT_QK_NONE)
        return LM_OK;
    int64_t shape[5] = { qkv->shape[0], qkv->shape[1], 3, cfg->heads, cfg->head_dim };
    lm_tensor *heads = NULL;
    lm_status st = lm_tensor_view_reshape(&heads, qkv, 5, shape, err); // [B, S, 3, nh, D]
    for (int which = 0; st == LM_OK && which < 2; which++) {
        const lm_tensor *g = which ? a->ln_k : a->ln_q, *b = which ? a->ln_k_b : a->ln_q_b;
        lm_tensor *part = NULL, *normed = NULL;
        st = lm_tensor_view_slice(&part, heads, 2, which, which + 1, err); // [B, S, 1, nh, D]
        if (st == LM_OK)
            st = cfg->qk_norm == LM_MMDIT_QK_RMS
                     ? lm_rms_norm(&normed, part, g, LM_MMDIT__NORM_EPS, err)
                     : lm_layer_norm(&normed, part, g, b, LM_MMDIT__NORM_EPS, err);
        if (st == LM_OK)
            st = lm_tensor_copy(part, normed, err); // into qkv's q or k columns
        lm_tensor_free(normed);
        lm_tensor_free(part);
    }
    lm_tensor_free(heads);
    return st;
}

/* qkv of one attention on LN(v) modulated with the given shift/scale chunks. */
static lm_status attn_qkv(lm_tensor **qkv, const lm_tensor *ln, const stream_pre *p, int shift,
                          const lm_mmdit__attn *a, const lm_mmdit_config *cfg, lm_error *err)
{
    lm_tensor *h = NULL;
    lm_status st = lm_modulate(&h, ln, p->mod[shift], p->mod[shift + 1], err); // [B, S, H]
    if (st == LM_OK)
        st = lm_mmdit__linear_apply(qkv, h, &a->qkv, err); // [B, S, 3H]
    lm_tensor_free(h);
    if (st == LM_OK)
        st = qk_norm(*qkv, a, cfg, err); // [B, S, 3H], in place
    return st;
}

/* Everything a stream computes before the joint attention. */
static lm_status pre_attention(stream_pre *p, const lm_mmdit *m, const lm_mmdit__stream *s,
                               const lm_tensor *silu_c, const lm_tensor *v, lm_error *err)
{
    memset(p, 0, sizeof(*p));
    lm_tensor *ln = NULL;
    lm_status st = modulation(p, s, silu_c, m->cfg.hidden, err); // n x [B, H]
    if (st == LM_OK)
        st = lm_layer_norm(&ln, v, NULL, NULL, LM_MMDIT__NORM_EPS, err); // [B, S, H]
    if (st == LM_OK)
        st = attn_qkv(&p->qkv, ln, p, LM_MMDIT__SHIFT_MSA, &s->attn, &m->cfg, err); // [B, S, 3H]
    if (st == LM_OK && s->attn2.qkv.w)
        st = attn_qkv(&p->qkv2, ln, p, LM_MMDIT__SHIFT_MSA2, &s->attn2, &m->cfg, err); // [B, N, 3H]
    lm_tensor_free(ln);
    return st;
}

/* Softmax attention over the q, k, v column blocks of a fused [B, S, 3H] tensor. */
static lm_status fused_attention(lm_tensor **out, const lm_tensor *qkv, int heads, lm_error *err)
{
    int64_t h = qkv->shape[2] / 3;
    lm_tensor *q = NULL, *k = NULL, *v = NULL;
    lm_status st = lm_tensor_view_slice(&q, qkv, 2, 0, h, err); // [B, S, H] strided
    if (st == LM_OK)
        st = lm_tensor_view_slice(&k, qkv, 2, h, 2 * h, err); // [B, S, H] strided
    if (st == LM_OK)
        st = lm_tensor_view_slice(&v, qkv, 2, 2 * h, 3 * h, err); // [B, S, H] strided
    lm_attention_opts ao = { .heads = heads };
    if (st == LM_OK)
        st = lm_attention(out, q, k, v, NULL, &ao, err); // [B, S, H]
    lm_tensor_free(q);
    lm_tensor_free(k);
    lm_tensor_free(v);
    return st;
}

/* *v = *v + gate * proj(o); the old *v is freed. */
static lm_status gated_proj(lm_tensor **v, const lm_tensor *o, const lm_mmdit__linear *proj,
                            const lm_tensor *gate, lm_error *err)
{
    lm_tensor *p = NULL, *sum = NULL;
    lm_status st = lm_mmdit__linear_apply(&p, o, proj, err); // [B, S, H]
    if (st == LM_OK)
        st = lm_gated_add(&sum, *v, gate, p, err); // [B, S, H]
    lm_tensor_free(p);
    if (st == LM_OK) {
        lm_tensor_free(*v);
        *v = sum;
    }
    return st;
}

/* *v += gate_mlp * fc2(gelu_tanh(fc1(modulate(LN(*v), shift_mlp, scale_mlp)))). */
static lm_status mlp(lm_tensor **v, const lm_mmdit__stream *s, const stream_pre *p, lm_error *err)
{
    lm_tensor *a = NULL, *b = NULL;
    lm_status st = lm_layer_norm(&a, *v, NULL, NULL, LM_MMDIT__NORM_EPS, err); // [B, S, H]
    if (st == LM_OK)
        st = lm_modulate(&b, a, p->mod[LM_MMDIT__SHIFT_MLP], p->mod[LM_MMDIT__SCALE_MLP],
                         err); // [B, S, H]
    lm_tensor_free(a);
    a = NULL;
    if (st == LM_OK)
        st = lm_mmdit__linear_apply(&a, b, &s->fc1, err); // [B, S, M]
    lm_tensor_free(b);
    b = NULL;
    if (st == LM_OK)
        st = lm_gelu_tanh(&b, a, err); // [B, S, M]
    lm_tensor_free(a);
    if (st == LM_OK)
        st = gated_proj(v, b, &s->fc2, p->mod[LM_MMDIT__GATE_MLP], err); // [B, S, H]
    lm_tensor_free(b);
    return st;
}

/* A stream after the joint attention: o [B, S, H] is its slice of the attention output. */
static lm_status post_attention(lm_tensor **v, const lm_mmdit__stream *s, const stream_pre *p,
                                const lm_tensor *o, int heads, lm_error *err)
{
    lm_status st = gated_proj(v, o, &s->attn.proj, p->mod[LM_MMDIT__GATE_MSA], err); // [B, S, H]
    if (st == LM_OK && p->qkv2) {
        lm_tensor *o2 = NULL;
        st = fused_attention(&o2, p->qkv2, heads, err); // [B, N, H] image tokens only
        if (st == LM_OK)
            st = gated_proj(v, o2, &s->attn2.proj, p->mod[LM_MMDIT__GATE_MSA2], err); // [B, N, H]
        lm_tensor_free(o2);
    }
    if (st == LM_OK)
        st = mlp(v, s, p, err); // [B, S, H]
    return st;
}

/* The joint attention: context rows first, then image rows; returns the output split
 * back into views ctx_o [B, T, H] and x_o [B, N, H]. The streams' qkv are freed once
 * joined. */
static lm_status joint_attention(lm_tensor **ctx_o, lm_tensor **x_o, stream_pre *pc, stream_pre *px,
                                 int heads, lm_error *err)
{
    const lm_tensor *parts[2] = { pc->qkv, px->qkv };
    int64_t t = pc->qkv->shape[1], s = t + px->qkv->shape[1];
    lm_tensor *joint = NULL, *o = NULL;
    lm_status st = lm_concat(&joint, parts, 2, 1, err); // [B, T+N, 3H]
    lm_tensor_free(pc->qkv);
    lm_tensor_free(px->qkv);
    pc->qkv = px->qkv = NULL;
    if (st == LM_OK)
        st = fused_attention(&o, joint, heads, err); // [B, T+N, H]
    lm_tensor_free(joint);
    if (st == LM_OK)
        st = lm_tensor_view_slice(ctx_o, o, 1, 0, t, err); // [B, T, H]
    if (st == LM_OK)
        st = lm_tensor_view_slice(x_o, o, 1, t, s, err); // [B, N, H]
    lm_tensor_free(o);
    return st;
}

lm_status lm_mmdit__block_forward(const lm_mmdit *m, const lm_mmdit__block *blk,
                                  const lm_tensor *silu_c, lm_tensor **ctx, lm_tensor **x,
                                  lm_error *err)
{
    stream_pre pc, px;
    lm_tensor *ctx_o = NULL, *x_o = NULL;
    int heads = m->cfg.heads;
    memset(&px, 0, sizeof(px));
    lm_status st = pre_attention(&pc, m, &blk->ctx, silu_c, *ctx, err); // qkv [B, T, 3H]
    if (st == LM_OK)
        st = pre_attention(&px, m, &blk->x, silu_c, *x, err); // qkv [B, N, 3H]
    if (st == LM_OK)
        st = joint_attention(&ctx_o, &x_o, &pc, &px, heads, err); // [B, T, H], [B, N, H]
    if (st == LM_OK && !blk->ctx.pre_only)
        st = post_attention(ctx, &blk->ctx, &pc, ctx_o, heads, err); // [B, T, H]
    if (st == LM_OK && blk->ctx.pre_only) {
        lm_tensor_free(*ctx);
        *ctx = NULL;
    }
    if (st == LM_OK)
        st = post_attention(x, &blk->x, &px, x_o, heads, err); // [B, N, H]
    lm_tensor_free(ctx_o);
    lm_tensor_free(x_o);
    pre_free(&pc);
    pre_free(&px);
    return st;
}
