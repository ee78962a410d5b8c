/* core/tensor/op.c — the op table: one row per op (name, arity, what the kernel accepts).
 * Shape rules live with each op's front-end in ops.c; this table is what backends, tests
 * and logs share. */
#include "core/tensor/op.h"

#include <math.h>

#define W(i) (1u << (i))

static const lm_op_info op_table[LM_OP_COUNT] = {
    [LM_OP_FILL] = { "fill", 0, 0, 0, 0, 0 },
    [LM_OP_LINEAR] = { "linear", 2, 3, 0, W(1), 0 },
    [LM_OP_MATMUL] = { "matmul", 2, 2, 0, 0, 0 },
    [LM_OP_ATTENTION] = { "attention", 3, 4, LM_OPF_ROW_STRIDED, 0, 0 },
    [LM_OP_CONV2D] = { "conv2d", 2, 3, 0, W(1), 0 },
    [LM_OP_GROUP_NORM] = { "group_norm", 1, 3, 0, 0, 0 },
    [LM_OP_LAYER_NORM] = { "layer_norm", 1, 3, 0, 0, 0 },
    [LM_OP_RMS_NORM] = { "rms_norm", 1, 2, 0, 0, 0 },
    [LM_OP_SOFTMAX] = { "softmax", 1, 1, 0, 0, 0 },
    [LM_OP_GELU] = { "gelu", 1, 1, 0, 0, 0 },
    [LM_OP_GELU_TANH] = { "gelu_tanh", 1, 1, 0, 0, 0 },
    [LM_OP_QUICK_GELU] = { "quick_gelu", 1, 1, 0, 0, 0 },
    [LM_OP_SILU] = { "silu", 1, 1, 0, 0, 0 },
    [LM_OP_EXP] = { "exp", 1, 1, 0, 0, 0 },
    [LM_OP_ADD] = { "add", 2, 2, LM_OPF_BROADCAST, 0, 0 },
    [LM_OP_SUB] = { "sub", 2, 2, LM_OPF_BROADCAST, 0, 0 },
    [LM_OP_MUL] = { "mul", 2, 2, LM_OPF_BROADCAST, 0, 0 },
    [LM_OP_SCALE] = { "scale", 1, 1, 0, 0, 0 },
    [LM_OP_CLAMP] = { "clamp", 1, 1, 0, 0, 0 },
    [LM_OP_MODULATE] = { "modulate", 3, 3, LM_OPF_BROADCAST, 0, 0 },
    [LM_OP_GATED_ADD] = { "gated_add", 3, 3, LM_OPF_BROADCAST, 0, 0 },
    [LM_OP_CONCAT] = { "concat", 1, LM_OP_MAX_IN, 0, 0, 0 },
    [LM_OP_PAD] = { "pad2d", 1, 1, 0, 0, 0 },
    [LM_OP_UPSAMPLE_NEAREST2X] = { "upsample_nearest2x", 1, 1, 0, 0, 0 },
    [LM_OP_PATCHIFY] = { "patchify", 1, 1, 0, 0, 0 },
    [LM_OP_UNPATCHIFY] = { "unpatchify", 1, 1, 0, 0, 0 },
    [LM_OP_EMBEDDING] = { "embedding", 2, 2, 0, W(0), W(1) },
    [LM_OP_TIMESTEP_EMBEDDING] = { "timestep_embedding", 1, 1, 0, 0, 0 },
    [LM_OP_T5_BUCKETS] = { "t5_buckets", 0, 0, 0, 0, 0 },
};

const lm_op_info *lm_op_info_of(lm_op op)
{
    if ((unsigned)op >= LM_OP_COUNT || !op_table[op].name)
        return NULL;
    return &op_table[op];
}

const char *lm_op_name(lm_op op)
{
    const lm_op_info *info = lm_op_info_of(op);
    return info ? info->name : "?";
}

/* The T5 v1.1 rule, in float32 like the reference (a tensor op with Python-float
 * scalars), so the truncation lands on the same side at bucket edges. */
int64_t lm_t5_relative_bucket(int64_t rel, bool bidirectional, int num_buckets, int max_distance)
{
    int64_t bucket = 0;
    int64_t n = num_buckets;
    if (bidirectional) {
        n /= 2;
        if (rel > 0)
            bucket += n;
        rel = rel < 0 ? -rel : rel;
    } else {
        rel = rel < 0 ? -rel : 0;
    }
    int64_t max_exact = n / 2;
    if (rel < max_exact)
        return bucket + rel;
    if (max_exact <= 0 || max_distance <= max_exact)
        return bucket + (n > 0 ? n - 1 : 0);
    float ratio = (float)rel / (float)max_exact;
    float denom = (float)log((double)max_distance / (double)max_exact);
    float large = logf(ratio) / denom * (float)(n - max_exact);
    int64_t v = max_exact + (int64_t)large;
    if (v > n - 1)
        v = n - 1;
    return bucket + v;
}
