/* core/tensor/op.h — the one op enum, the op table, and what a kernel receives.
 *
 * Every tensor op Loom runs is a row here. Models never see this header: they call the
 * lm_* functions of core/tensor/ops.h, which check shapes, allocate the output and then
 * call backend->ops->kernel[op] with an lm_op_call. A backend (cpu/, cuda/) fills every
 * slot of its kernel table (tests/tensor/test_backend.c checks it).
 *
 * What a kernel may assume (the front-end in ops.c guarantees it):
 *   - every input and the output live on the kernel's backend;
 *   - `out` is fresh, contiguous, F32 (I64 for LM_OP_T5_BUCKETS), already shaped;
 *   - inputs are F32 and contiguous, except: inputs whose bit is set in the row's
 *     `wide_in` may be F32, F16, BF16 or F8_E4M3 (weights, embedding tables: the kernel
 *     converts them on the fly, never to a full f32 copy), index inputs are I64 or I32,
 *     and ops flagged LM_OPF_BROADCAST receive inputs as views with the output's ndim and
 *     shape whose broadcast dimensions have stride 0 (use the strides);
 *     LM_OPF_ROW_STRIDED ops receive inputs whose last dimension is contiguous but whose
 *     other strides are arbitrary (attention reads q/k/v slices of a fused qkv; rows do
 *     not overlap: stride[1] >= shape[2]; its bias is contiguous [B|1, H|1, Nq, Nk]);
 *   - optional inputs that are absent are NULL, in[] slots beyond n_in are NULL;
 *   - shapes were checked (see the shape comment of each row); values were not: the
 *     embedding kernel checks every id against the table and fails with LM_ERANGE.
 * Attention's causal mask is top-left aligned (key j > query i is masked), like torch's
 * scaled_dot_product_attention(is_causal=True).
 * A kernel returns LM_OK or fills err (out of memory, a launch failure); it never aborts.
 *
 * Thread safety: the table is constant. */
#ifndef LM_CORE_TENSOR_OP_H
#define LM_CORE_TENSOR_OP_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"

#include <stdbool.h>
#include <stdint.h>

#define LM_OP_MAX_IN 16 /* concat takes at most this many tensors */

/* Shapes: x = activations. "?" marks an optional input (NULL when absent). */
typedef enum {
    LM_OP_FILL,       /* () -> out filled with p.fill.value; out has any shape       */
    LM_OP_LINEAR,     /* x [..., K], w [N, K] (wide), b? [N] -> [..., N]            */
    LM_OP_MATMUL,     /* a [B, M, K], b [B|1, K, N] ([B|1, N, K] if trans_b) -> [B, M, N] */
    LM_OP_ATTENTION,  /* q [B, Nq, H*D], k, v [B, Nk, H*D], bias? [B|1, H|1, Nq, Nk]
                       * -> [B, Nq, H*D]; softmax(q·kᵀ·scale + bias (+ causal)) · v     */
    LM_OP_CONV2D,     /* x [B, Ci, H, W], w [Co, Ci, kh, kw] (wide), b? [Co] -> [B, Co, Ho, Wo] */
    LM_OP_GROUP_NORM, /* x [B, C, ...], gamma? [C], beta? [C] -> same shape       */
    LM_OP_LAYER_NORM, /* x [..., C], gamma? [C], beta? [C] -> same shape           */
    LM_OP_RMS_NORM,   /* x [..., C], gamma? [C] -> same shape                      */
    LM_OP_SOFTMAX,    /* x [..., C] -> softmax over the last dim                   */
    LM_OP_GELU,       /* x -> x * Φ(x) (erf)                                       */
    LM_OP_GELU_TANH,  /* x -> tanh approximation of GELU                          */
    LM_OP_QUICK_GELU, /* x -> x * sigmoid(1.702 x)                                 */
    LM_OP_SILU,       /* x -> x * sigmoid(x)                                       */
    LM_OP_EXP,        /* x -> exp(x)                                               */
    LM_OP_ADD,        /* a, b (broadcast) -> a + b                                 */
    LM_OP_SUB,        /* a, b (broadcast) -> a - b                                 */
    LM_OP_MUL,        /* a, b (broadcast) -> a * b                                 */
    LM_OP_SCALE,      /* x -> x * p.scalar.a + p.scalar.b                          */
    LM_OP_CLAMP,      /* x -> min(max(x, p.scalar.a), p.scalar.b)                  */
    LM_OP_MODULATE,   /* x, shift, scale (broadcast) -> x * (1 + scale) + shift    */
    LM_OP_GATED_ADD,  /* x, gate, y (broadcast) -> x + gate * y                    */
    LM_OP_CONCAT,     /* t0..tn-1 (same shape but dim p.concat.dim) -> concatenation */
    LM_OP_PAD,        /* x [..., H, W] -> [..., top+H+bottom, left+W+right], p.pad.value */
    LM_OP_UPSAMPLE_NEAREST2X, /* x [..., H, W] -> [..., 2H, 2W]                    */
    LM_OP_PATCHIFY,           /* x [B, C, H, W] -> [B, (H/p)*(W/p), p*p*C]  (order h w p q c) */
    LM_OP_UNPATCHIFY,         /* x [B, h*w, p*p*C] -> [B, C, h*p, w*p]  (nhwpqc -> nchpwq)  */
    LM_OP_EMBEDDING,          /* table [V, C] (wide), ids [...] (I64|I32) -> [..., C]       */
    LM_OP_TIMESTEP_EMBEDDING, /* t [B] -> [B, dim]: cat(cos(t f), sin(t f)),
                               * f_i = exp(-ln(max_period) i / (dim/2)), fp32         */
    LM_OP_T5_BUCKETS,         /* () -> I64 [Nq, Nk]: bucket of (key j - query i)             */
    LM_OP_COUNT
} lm_op;

enum {
    LM_OPF_BROADCAST = 1u << 0,   /* inputs arrive as stride-0 broadcast views of out's shape */
    LM_OPF_ROW_STRIDED = 1u << 1, /* inputs: last dim contiguous, other strides arbitrary */
};

typedef struct lm_op_info {
    const char *name;   /* "linear", "attention", … (stable: used in tests and logs) */
    int min_in, max_in; /* arity: optional inputs are the trailing ones */
    unsigned flags;     /* LM_OPF_* */
    unsigned wide_in;   /* bit i: input i may be F32, F16, BF16 or F8_E4M3 */
    unsigned index_in;  /* bit i: input i holds indices (I64 or I32) */
} lm_op_info;

/* Parameters; only the member named after the op is meaningful. */
typedef union lm_op_params {
    struct {
        float value;
    } fill;
    struct {
        bool trans_b;
    } matmul;
    struct {
        int heads;   /* H; q's last dim is H*D */
        bool causal; /* key j > query i is masked (CLIP) */
        float scale; /* multiplies q·kᵀ (already resolved: 1/sqrt(D) by default, 1 for T5) */
    } attention;
    struct {
        int stride, pad_top, pad_left, pad_bottom, pad_right;
    } conv2d;
    struct {
        int groups;
        float eps;
    } norm; /* groups: group norm only */
    struct {
        float a, b;
    } scalar; /* SCALE: x*a + b; CLAMP: [a, b] */
    struct {
        int dim;
    } concat;
    struct {
        int top, left, bottom, right;
        float value;
    } pad;
    struct {
        int p;
    } patch; /* UNPATCHIFY takes h, w from out's shape */
    struct {
        float max_period;
    } temb; /* 10000 for SD3 */
    struct {
        int num_buckets, max_distance;
        bool bidirectional;
    } t5;
} lm_op_params;

/* One kernel invocation. */
typedef struct lm_op_call {
    lm_op op;
    int n_in;
    const lm_tensor *in[LM_OP_MAX_IN];
    lm_tensor *out;
    lm_op_params p;
} lm_op_call;

typedef lm_status (*lm_kernel_fn)(lm_backend *be, const lm_op_call *call, lm_error *err);

/* The row of an op; NULL for a value outside [0, LM_OP_COUNT). */
const lm_op_info *lm_op_info_of(lm_op op);
/* "linear"…; "?" when unknown. */
const char *lm_op_name(lm_op op);

/* T5's relative position bucket of `rel` = key position - query position (the T5 v1.1
 * rule: exact buckets below max_exact = n/2 (or n/4 bidirectional), log-spaced above, up
 * to max_distance; bidirectional adds n/2 for rel > 0). Pure function, any backend. */
int64_t lm_t5_relative_bucket(int64_t rel, bool bidirectional, int num_buckets, int max_distance);

#endif
