/* core/tensor/ops.h — the op API that models and nodes call (never a backend directly).
 *
 * Convention (one for every op): the op allocates its result and returns it in `*out`;
 * the caller owns it and frees it with lm_tensor_free(). On failure *out is NULL and err
 * says which op, which shapes and what was expected. The result lives on the backend of
 * the first input; every input must be on that backend. Results are F32 (LM_OP_T5_BUCKETS:
 * I64), contiguous. Inputs are never modified.
 *
 * Inputs: activations may have any float dtype and any strides (the front-end makes an F32
 * contiguous copy when the kernel needs one: prefer contiguous F32 activations). Weights
 * of lm_linear/lm_conv2d and the table of lm_embedding may be F32, F16, BF16 or F8_E4M3
 * and are converted on the fly in panels; small parameters (bias, gamma, beta, shift…)
 * may have any float dtype too (converted once per call, cheap).
 *
 * Broadcasting (lm_add, lm_sub, lm_mul, lm_modulate, lm_gated_add): NumPy rules on
 * trailing dimensions; besides, for lm_modulate/lm_gated_add a per-sample vector [B, C]
 * against x [B, N, C] is read as [B, 1, C] (adaLN's shift/scale/gate).
 *
 * Memory: outputs come from the backend's allocator. The CPU allocator keeps freed
 * buffers for reuse (bounded cache), so a forward pass reaches a steady state without
 * calling malloc per op. Scratch memory inside kernels is O(rows x N), never O(N^2).
 *
 * Thread safety: ops may run from several threads at once on different tensors; each CPU
 * op spreads its own work over lm_pool_default(), so concurrent ops share the pool by
 * taking turns (the pool runs one job at a time). */
#ifndef LM_CORE_TENSOR_OPS_H
#define LM_CORE_TENSOR_OPS_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"

#include <stdbool.h>
#include <stdint.h>

/* y = x·wᵀ + b (torch.nn.functional.linear). x [..., K], w [N, K], b [N] or NULL. */
lm_status lm_linear(lm_tensor **out, const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                    lm_error *err);

/* Batched product: a [B, M, K] (or [M, K]), b [B, K, N] or [1, K, N] or [K, N]; with
 * trans_b b is [.., N, K]. Result [B, M, N] (or [M, N] when a is 2-D). */
lm_status lm_matmul(lm_tensor **out, const lm_tensor *a, const lm_tensor *b, bool trans_b,
                    lm_error *err);

typedef struct {
    int heads;   /* number of heads H; q/k/v have H*D features */
    bool causal; /* mask key j > query i (top-left aligned, like torch SDPA) */
    float scale; /* logits multiplier; 0 = 1/sqrt(D); T5 uses 1 */
} lm_attention_opts;

/* Scaled dot-product attention over many heads, heads interleaved in the features as a
 * linear layer produces them: q [B, Nq, H*D], k and v [B, Nk, H*D] (the last dim must be
 * contiguous; slices of a fused qkv are fine), bias NULL or [B|1, H|1, Nq, Nk] added to
 * the scaled logits. Result [B, Nq, H*D]. Scratch memory is O(N) per thread. */
lm_status lm_attention(lm_tensor **out, const lm_tensor *q, const lm_tensor *k, const lm_tensor *v,
                       const lm_tensor *bias, const lm_attention_opts *opts, lm_error *err);

typedef struct {
    int stride;                                   /* 1 or more (0 means 1) */
    int pad_top, pad_left, pad_bottom, pad_right; /* zero padding, may differ per side */
} lm_conv2d_opts;

/* 2-D convolution (cross-correlation, like torch), groups 1, dilation 1. x [B, Ci, H, W],
 * w [Co, Ci, kh, kw], b [Co] or NULL. Result [B, Co, Ho, Wo] with
 * Ho = (H + pad_top + pad_bottom - kh) / stride + 1. opts NULL = stride 1, no padding. */
lm_status lm_conv2d(lm_tensor **out, const lm_tensor *x, const lm_tensor *w, const lm_tensor *b,
                    const lm_conv2d_opts *opts, lm_error *err);

/* Group norm over x [B, C, ...] with `groups` dividing C; gamma/beta [C] or NULL. */
lm_status lm_group_norm(lm_tensor **out, const lm_tensor *x, const lm_tensor *gamma,
                        const lm_tensor *beta, int groups, float eps, lm_error *err);
/* Layer norm over the last dim; gamma/beta [C] or NULL (elementwise_affine=False). */
lm_status lm_layer_norm(lm_tensor **out, const lm_tensor *x, const lm_tensor *gamma,
                        const lm_tensor *beta, float eps, lm_error *err);
/* x * rsqrt(mean(x^2) + eps) * gamma over the last dim (T5, SD3.5 q/k norm). */
lm_status lm_rms_norm(lm_tensor **out, const lm_tensor *x, const lm_tensor *gamma, float eps,
                      lm_error *err);
/* Softmax over the last dim. */
lm_status lm_softmax(lm_tensor **out, const lm_tensor *x, lm_error *err);

/* Elementwise activations. */
lm_status lm_gelu(lm_tensor **out, const lm_tensor *x, lm_error *err);      /* erf form */
lm_status lm_gelu_tanh(lm_tensor **out, const lm_tensor *x, lm_error *err); /* tanh form */
lm_status lm_quick_gelu(lm_tensor **out, const lm_tensor *x, lm_error *err);
lm_status lm_silu(lm_tensor **out, const lm_tensor *x, lm_error *err);
lm_status lm_exp(lm_tensor **out, const lm_tensor *x, lm_error *err);

/* Binary arithmetic with broadcasting; result has the broadcast shape. */
lm_status lm_add(lm_tensor **out, const lm_tensor *a, const lm_tensor *b, lm_error *err);
lm_status lm_sub(lm_tensor **out, const lm_tensor *a, const lm_tensor *b, lm_error *err);
lm_status lm_mul(lm_tensor **out, const lm_tensor *a, const lm_tensor *b, lm_error *err);
/* x * a + b with scalars. */
lm_status lm_scale(lm_tensor **out, const lm_tensor *x, float a, float b, lm_error *err);
/* min(max(x, lo), hi). */
lm_status lm_clamp(lm_tensor **out, const lm_tensor *x, float lo, float hi, lm_error *err);
/* adaLN: x * (1 + scale) + shift; shift/scale [B, C] for x [B, N, C], or broadcastable. */
lm_status lm_modulate(lm_tensor **out, const lm_tensor *x, const lm_tensor *shift,
                      const lm_tensor *scale, lm_error *err);
/* Gated residual: x + gate * y; gate [B, C] for x [B, N, C], or broadcastable. */
lm_status lm_gated_add(lm_tensor **out, const lm_tensor *x, const lm_tensor *gate,
                       const lm_tensor *y, lm_error *err);

/* Concatenation of n (1..16) tensors along dim (negative counts from the end). */
lm_status lm_concat(lm_tensor **out, const lm_tensor *const *ts, int n, int dim, lm_error *err);
/* Splits x along dim into n contiguous pieces of the given sizes (summing to the dim);
 * outs[0..n-1] are new tensors owned by the caller. On failure all outs are NULL. */
lm_status lm_split(lm_tensor **outs, const lm_tensor *x, int dim, const int64_t *sizes, int n,
                   lm_error *err);
/* Constant padding of the last two dims (may be asymmetric: SD3's VAE downsample pads
 * right/bottom by 1). Pads are >= 0. */
lm_status lm_pad2d(lm_tensor **out, const lm_tensor *x, int top, int left, int bottom, int right,
                   float value, lm_error *err);
/* Nearest-neighbour 2x upsampling of the last two dims. */
lm_status lm_upsample_nearest2x(lm_tensor **out, const lm_tensor *x, lm_error *err);

/* SD3 patches: x [B, C, H, W] -> [B, (H/p)*(W/p), p*p*C], feature index (pi*p + pj)*C + c,
 * patches row-major. H and W must be multiples of p. */
lm_status lm_patchify(lm_tensor **out, const lm_tensor *x, int p, lm_error *err);
/* Inverse: x [B, h*w, p*p*C] -> [B, C, h*p, w*p] (the reference's nhwpqc -> nchpwq). */
lm_status lm_unpatchify(lm_tensor **out, const lm_tensor *x, int p, int h, int w, lm_error *err);

/* Row gather: table [V, C], ids of any shape (I64 or I32, each in [0, V)) -> [..., C]. */
lm_status lm_embedding(lm_tensor **out, const lm_tensor *table, const lm_tensor *ids,
                       lm_error *err);
/* Sinusoidal timestep features: t [B] -> [B, dim] = cat(cos(t f), sin(t f)),
 * f_i = exp(-ln(max_period) * i / (dim/2)), computed in fp32 like the SD3 reference.
 * dim must be even; max_period 10000 for SD3. */
lm_status lm_timestep_embedding(lm_tensor **out, const lm_tensor *t, int dim, float max_period,
                                lm_error *err);
/* T5 relative-position buckets as an I64 [nq, nk] tensor on backend be:
 * out[i][j] = lm_t5_relative_bucket(j - i, …) (see op.h). SD3's T5: bidirectional, 32
 * buckets, max distance 128. */
lm_status lm_t5_buckets(lm_tensor **out, lm_backend *be, int64_t nq, int64_t nk, int num_buckets,
                        int max_distance, bool bidirectional, lm_error *err);

/* Fills an existing tensor (any backend, F32, contiguous) with a value. */
lm_status lm_fill(lm_tensor *t, float value, lm_error *err);

#endif
