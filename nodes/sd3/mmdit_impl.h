/* nodes/sd3/mmdit_impl.h — the MMDiT's bound weights and the pieces its files share
 * (mmdit.c: load, embedders, final layer, forward; mmdit_block.c: one joint block).
 * Internal to nodes/sd3/mmdit*.c.
 *
 * Every lm_tensor here is owned by the model and keeps its stored dtype (F16/BF16/F32): on
 * the CPU it wraps the mapped checkpoint, on a device it is the one copy made there at load.
 * lm_linear converts weight panels on the fly, so no F32 copy of the weight set exists. A
 * NULL tensor means "absent in this checkpoint" (bias, q/k norm, attn2, the pre-only context
 * stream's proj and MLP). Activations live on `be`, the weights' backend. */
#ifndef LM_NODES_SD3_MMDIT_IMPL_H
#define LM_NODES_SD3_MMDIT_IMPL_H

#include "core/tensor/ops.h"
#include "nodes/sd3/mmdit.h"

typedef struct {
    lm_tensor *w, *b; /* w [out, in]; b [out] or NULL */
} lm_mmdit__linear;

typedef struct {
    lm_mmdit__linear qkv;       /* [3H, H] */
    lm_mmdit__linear proj;      /* [H, H]; w NULL in a pre-only stream */
    lm_tensor *ln_q, *ln_k;     /* [head_dim] or NULL (no q/k norm) */
    lm_tensor *ln_q_b, *ln_k_b; /* LayerNorm q/k norm only */
} lm_mmdit__attn;

/* One stream (context_block or x_block) of a joint block. */
typedef struct {
    lm_mmdit__linear ada; /* adaLN_modulation.1: [n_mods * H, H] */
    int n_mods;           /* 2 (pre-only), 6, or 9 (with attn2) */
    bool pre_only;        /* only shift/scale and qkv: the stream's output is dropped */
    lm_mmdit__attn attn;
    lm_mmdit__attn attn2; /* MMDiT-X image self-attention; qkv.w NULL when absent */
    lm_mmdit__linear fc1, fc2;
} lm_mmdit__stream;

typedef struct {
    lm_mmdit__stream ctx, x;
} lm_mmdit__block;

struct lm_mmdit {
    lm_mmdit_config cfg;
    lm_backend *be;      /* where it computes: the CPU, or the device holding the weights */
    size_t device_bytes; /* weight bytes copied to that device (0 on the CPU) */
    lm_tensor *x_emb_w, *x_emb_b; /* [H, Cin, p, p], [H] */
    lm_tensor *pos_embed;         /* [1, P*P, H] */
    lm_mmdit__linear t_mlp0, t_mlp2, y_mlp0, y_mlp2, ctx_emb;
    lm_mmdit__linear final_ada, final_lin; /* [2H, H], [p*p*Cout, H] */
    lm_mmdit__block *blocks;               /* cfg.depth */
};

/* Indices of the adaLN chunks, in the order the modulation linear writes them. */
enum {
    LM_MMDIT__SHIFT_MSA,
    LM_MMDIT__SCALE_MSA,
    LM_MMDIT__GATE_MSA,
    LM_MMDIT__SHIFT_MLP,
    LM_MMDIT__SCALE_MLP,
    LM_MMDIT__GATE_MLP,
    LM_MMDIT__SHIFT_MSA2,
    LM_MMDIT__SCALE_MSA2,
    LM_MMDIT__GATE_MSA2,
    LM_MMDIT__MAX_MODS
};

#define LM_MMDIT__NORM_EPS 1e-6f /* adaLN LayerNorms and the q/k norms */

/* One joint block: *ctx [B, T, H] and *x [B, N, H] are replaced by the block's outputs
 * (the old tensors are freed; *ctx becomes NULL after a pre-only context stream).
 * silu_c [B, H] is SiLU(c), shared by every adaLN modulation. */
lm_status lm_mmdit__block_forward(const lm_mmdit *m, const lm_mmdit__block *blk,
                                  const lm_tensor *silu_c, lm_tensor **ctx, lm_tensor **x,
                                  lm_error *err);

/* out = x·wᵀ + b for a bound linear layer. */
lm_status lm_mmdit__linear_apply(lm_tensor **out, const lm_tensor *x, const lm_mmdit__linear *l,
                                 lm_error *err);

#endif
