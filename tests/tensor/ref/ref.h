/* tests/tensor/ref/ref.h — naive reference implementations of every tensor op.
 *
 * Used only by tests and the bench, never linked into loom. Each reference works on plain
 * contiguous float arrays (PyTorch shape order), accumulates in double and follows the
 * textbook definition directly, so that it shares no code with core/tensor: a kernel and
 * its reference agreeing is evidence, not a tautology. Outputs are written into caller
 * buffers of the documented size. Nothing here allocates except where noted. */
#ifndef LM_TESTS_TENSOR_REF_REF_H
#define LM_TESTS_TENSOR_REF_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- storage formats, decoded from their definitions with ldexp ---- */
double ref_f16_decode(uint16_t h);
double ref_bf16_decode(uint16_t h);
double ref_f8e4m3_decode(uint8_t v); /* NaN for 0x7f/0xff */
/* The nearest representable value to x among all finite codes of the format (ties to the
 * code with an even mantissa), found by exhaustive search: an independent encoder. */
uint16_t ref_f16_encode(float x);
uint8_t ref_f8e4m3_encode_sat(float x); /* saturating at ±448 */

/* ---- products ---- */
/* y[M, N] = x[M, K] · w[N, K]ᵀ + b[N] (b may be NULL) */
void ref_linear(float *y, const float *x, const float *w, const float *b, int64_t M, int64_t K,
                int64_t N);
/* y[B, M, N] = a[B, M, K] · b[Bb, K, N] (trans_b: b[Bb, N, K]); Bb is 1 or B. */
void ref_matmul(float *y, const float *a, const float *b, int64_t B, int64_t Bb, int64_t M,
                int64_t K, int64_t N, bool trans_b);
/* o[B, Nq, H*D]; q [B, Nq, H*D] with row stride ldq (elements between tokens), k, v
 * [B, Nk, H*D] with row strides ldk, ldv (batch stride = rows * ld); bias NULL or
 * [Bb, Hb, Nq, Nk] with Bb in {1, B}, Hb in {1, H}. causal masks j > i (top-left). */
void ref_attention(float *o, const float *q, const float *k, const float *v, const float *bias,
                   int64_t B, int64_t Nq, int64_t Nk, int64_t H, int64_t D, int64_t ldq,
                   int64_t ldk, int64_t ldv, int64_t bias_b, int64_t bias_h, float scale,
                   bool causal);
/* y[B, Co, Ho, Wo] = conv2d(x[B, Ci, H, W], w[Co, Ci, kh, kw]) + b[Co] (b may be NULL) */
void ref_conv2d(float *y, const float *x, const float *w, const float *b, int64_t B, int64_t Ci,
                int64_t H, int64_t W, int64_t Co, int64_t kh, int64_t kw, int stride, int pad_top,
                int pad_left, int pad_bottom, int pad_right);
int64_t ref_conv_out(int64_t in, int64_t k, int stride, int pad_a, int pad_b);

/* ---- normalisation: x [rows, C] or [B, C, S] ---- */
void ref_group_norm(float *y, const float *x, const float *gamma, const float *beta, int64_t B,
                    int64_t C, int64_t S, int64_t groups, float eps);
void ref_layer_norm(float *y, const float *x, const float *gamma, const float *beta, int64_t rows,
                    int64_t C, float eps);
void ref_rms_norm(float *y, const float *x, const float *gamma, int64_t rows, int64_t C, float eps);
void ref_softmax(float *y, const float *x, int64_t rows, int64_t C);

/* ---- elementwise ---- */
typedef enum { REF_GELU, REF_GELU_TANH, REF_QUICK_GELU, REF_SILU, REF_EXP } ref_unary_kind;
void ref_unary(float *y, const float *x, int64_t n, ref_unary_kind kind);
typedef enum { REF_ADD, REF_SUB, REF_MUL } ref_binary_kind;
/* NumPy broadcasting of a [an dims] and b [bn dims] into y with shape out[ndim]. */
void ref_binary(float *y, const int64_t *out_shape, int ndim, const float *a, const int64_t *ash,
                int an, const float *b, const int64_t *bsh, int bn, ref_binary_kind kind);
/* Broadcast shape of two shapes; returns its ndim, or -1 when they do not broadcast. */
int ref_broadcast_shape(int64_t *out, const int64_t *a, int an, const int64_t *b, int bn);
/* y [B, N, C] = x * (1 + scale[B, C]) + shift[B, C] */
void ref_modulate(float *y, const float *x, const float *shift, const float *scale, int64_t B,
                  int64_t N, int64_t C);
/* y [B, N, C] = x + gate[B, C] * v */
void ref_gated_add(float *y, const float *x, const float *gate, const float *v, int64_t B,
                   int64_t N, int64_t C);

/* ---- shape ---- */
/* y = cat(xs[i] of shapes (outer, dims[i], inner)) along the middle axis */
void ref_concat(float *y, const float *const *xs, const int64_t *dims, int n, int64_t outer,
                int64_t inner);
/* x [planes, H, W] -> y [planes, top+H+bottom, left+W+right] */
void ref_pad2d(float *y, const float *x, int64_t planes, int64_t H, int64_t W, int top, int left,
               int bottom, int right, float value);
void ref_upsample2x(float *y, const float *x, int64_t planes, int64_t H, int64_t W);
/* x [B, C, H, W] -> y [B, (H/p)(W/p), p*p*C] */
void ref_patchify(float *y, const float *x, int64_t B, int64_t C, int64_t H, int64_t W, int p);
/* x [B, h*w, p*p*C] -> y [B, C, h*p, w*p] */
void ref_unpatchify(float *y, const float *x, int64_t B, int64_t C, int64_t h, int64_t w, int p);

/* ---- embeddings ---- */
void ref_embedding(float *y, const float *table, int64_t C, const int64_t *ids, int64_t n);
/* In double: the exact value the fp32 reference approximates. */
void ref_timestep_embedding(float *y, const float *t, int64_t B, int dim, double max_period);

/* ---- test data ---- */
/* Deterministic pseudo-random floats in [lo, hi) (xorshift), for inputs. */
void ref_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi);
/* max |a - b| and whether every element is within atol + rtol*|b|; NaN counts as a miss.
 * *worst receives the index of the largest excess (may be NULL). */
bool ref_allclose(const float *a, const float *b, int64_t n, double atol, double rtol,
                  double *max_abs, int64_t *worst);

/* ---- a minimal safetensors reader for golden files (F32 and I64 only) ---- */
/* Loads tensor `name` of the file into a malloc'd buffer (free()); I64 data is converted to
 * double-free int64_t storage as-is. Returns the element count, or -1 with a message in
 * msg. shape/ndim receive the shape (up to 8 dims). */
int64_t ref_st_load(const char *path, const char *name, void **data, char *dtype_out,
                    size_t dtype_size, int64_t *shape, int *ndim, char *msg, size_t msg_size);

#endif
