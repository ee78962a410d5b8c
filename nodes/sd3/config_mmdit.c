/* nodes/sd3/config_mmdit.c — the MMDiT's configuration, inferred from tensor names and
 * shapes only.
 *
 * Nothing is hard-coded to one model size: width, input channels and patch come from
 * x_embedder.proj.weight, the position table size from pos_embed, depth from the count of
 * joint_blocks.N, the MLP width from fc1, and each optional feature from the presence of
 * its tensors (qkv bias, ln_q/ln_k q/k norm, x_block.attn2 per block, the last block's
 * context stream without proj/MLP). Heads are 64 wide in every SD3/SD3.5 model, so
 * heads = hidden / 64. lm_mmdit_load() then checks every tensor's shape against the
 * result, so an inconsistent file fails there, naming the tensor. */
#include "core/base/str.h"
#include "nodes/sd3/mmdit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define HEAD_DIM 64

static bool has(const lm_sd3_weights *w, const char *fmt, int i)
{
    char name[160];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(name, sizeof(name), fmt, i);
#pragma GCC diagnostic pop
    return lm_sd3_weights_has(w, name);
}

/* A tensor whose shape exists but does not fit the architecture: names it and the file. */
static lm_status config_error(lm_error *err, const lm_sd3_weights *w, const char *name,
                              const int64_t *shape, int ndim, const char *want)
{
    char have[96];
    lm_tensor_describe_shape(shape, ndim, have, sizeof(have));
    char stored[256] = "";
    if (!lm_sd3_weights_stored_name(w, name, stored, sizeof(stored)))
        lm_strlcpy(stored, name, sizeof(stored));
    lm_errorf(err, LM_EFORMAT, "bad_tensor_shape", "MMDiT tensor \"%s\" has shape %s but %s",
              stored, have, want);
    lm_error_hint(err, "the file is not an SD3/SD3.5 diffusion model or is damaged");
    lm_error_at_file(err, lm_safetensors_path(w->st), 0, 0);
    return LM_EFORMAT;
}

static lm_status infer_patch_embed(lm_mmdit_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    int64_t s[4];
    lm_status st = lm_sd3_weights_get_shape(w, "x_embedder.proj.weight", 4, s, err);
    if (st != LM_OK)
        return st;
    if (s[2] != s[3] || s[2] < 1 || s[2] > 16 || s[1] < 1 || s[0] < 1 || s[0] > (1 << 20))
        return config_error(err, w, "x_embedder.proj.weight", s, 4,
                            "[hidden, channels, p, p] is expected");
    if (s[0] % HEAD_DIM != 0)
        return config_error(err, w, "x_embedder.proj.weight", s, 4,
                            "the width must be a multiple of the 64-wide heads");
    cfg->hidden = (int)s[0];
    cfg->in_channels = (int)s[1];
    cfg->patch = (int)s[2];
    cfg->head_dim = HEAD_DIM;
    cfg->heads = cfg->hidden / HEAD_DIM;
    st = lm_sd3_weights_get_shape(w, "pos_embed", 3, s, err);
    if (st != LM_OK)
        return st;
    int64_t p = (int64_t)llround(sqrt((double)s[1]));
    if (s[0] != 1 || p < 1 || p * p != s[1] || s[2] != cfg->hidden)
        return config_error(err, w, "pos_embed", s, 3, "[1, P*P, hidden] is expected");
    cfg->pos_embed_max = (int)p;
    return LM_OK;
}

static lm_status infer_inputs(lm_mmdit_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    int64_t s[2];
    lm_status st = lm_sd3_weights_get_shape(w, "y_embedder.mlp.0.weight", 2, s, err);
    if (st == LM_OK)
        cfg->adm_in = (int)s[1];
    if (st == LM_OK)
        st = lm_sd3_weights_get_shape(w, "context_embedder.weight", 2, s, err);
    if (st == LM_OK)
        cfg->context_in = (int)s[1];
    if (st == LM_OK)
        st = lm_sd3_weights_get_shape(w, "t_embedder.mlp.0.weight", 2, s, err);
    if (st == LM_OK && (s[1] < 2 || s[1] % 2 != 0))
        return config_error(err, w, "t_embedder.mlp.0.weight", s, 2,
                            "an even number of timestep features is expected");
    if (st == LM_OK)
        cfg->freq_dim = (int)s[1];
    if (st == LM_OK)
        st = lm_sd3_weights_get_shape(w, "final_layer.linear.weight", 2, s, err);
    if (st != LM_OK)
        return st;
    int64_t pp = (int64_t)cfg->patch * cfg->patch;
    if (s[0] % pp != 0 || s[0] == 0)
        return config_error(err, w, "final_layer.linear.weight", s, 2,
                            "[patch*patch*channels, hidden] is expected");
    cfg->out_channels = (int)(s[0] / pp);
    return LM_OK;
}

static lm_status infer_blocks(lm_mmdit_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    int64_t s[2];
    cfg->depth = lm_sd3_weights_count(w, "joint_blocks.%d.x_block.attn.qkv.weight");
    lm_status st = lm_sd3_weights_get_shape(w, "joint_blocks.0.x_block.mlp.fc1.weight", 2, s, err);
    if (st != LM_OK)
        return st; /* also the error for a file without joint blocks */
    if (cfg->depth > LM_MMDIT_MAX_DEPTH)
        return lm_errorf(err, LM_EUNSUPPORTED, "too_many_blocks",
                         "MMDiT: %d joint blocks; Loom supports at most %d", cfg->depth,
                         LM_MMDIT_MAX_DEPTH);
    cfg->mlp_hidden = (int)s[0];
    cfg->qkv_bias = has(w, "joint_blocks.%d.x_block.attn.qkv.bias", 0);
    cfg->qk_norm = !has(w, "joint_blocks.%d.x_block.attn.ln_q.weight", 0) ? LM_MMDIT_QK_NONE
                   : has(w, "joint_blocks.%d.x_block.attn.ln_q.bias", 0)  ? LM_MMDIT_QK_LN
                                                                          : LM_MMDIT_QK_RMS;
    for (int i = 0; i < cfg->depth; i++) {
        cfg->x_self_attn[i] = has(w, "joint_blocks.%d.x_block.attn2.qkv.weight", i);
        cfg->n_x_self_attn += cfg->x_self_attn[i];
    }
    cfg->context_pre_only =
        !has(w, "joint_blocks.%d.context_block.attn.proj.weight", cfg->depth - 1);
    return LM_OK;
}

lm_status lm_mmdit_config_infer(lm_mmdit_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    lm_status st = infer_patch_embed(cfg, w, err);
    if (st == LM_OK)
        st = infer_inputs(cfg, w, err);
    if (st == LM_OK)
        st = infer_blocks(cfg, w, err);
    return st;
}

static const char *qk_norm_name(lm_mmdit_qk_norm n)
{
    return n == LM_MMDIT_QK_RMS ? "rms" : n == LM_MMDIT_QK_LN ? "ln" : "none";
}

/* snprintf at buf + *at, advancing *at; output past the end is dropped. */
static void appendf(char *buf, size_t size, size_t *at, const char *fmt, ...) LM_PRINTF(4, 5);

static void appendf(char *buf, size_t size, size_t *at, const char *fmt, ...)
{
    if (*at >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *at, size - *at, fmt, ap);
    va_end(ap);
    *at = n < 0 ? size : LM_MIN(size, *at + (size_t)n);
}

void lm_mmdit_config_describe(const lm_mmdit_config *cfg, char *buf, size_t size)
{
    size_t at = 0;
    if (size == 0)
        return;
    buf[0] = '\0';
    appendf(buf, size, &at, "hidden %d, depth %d, heads %dx%d, patch %d, in %d, out %d, ",
            cfg->hidden, cfg->depth, cfg->heads, cfg->head_dim, cfg->patch, cfg->in_channels,
            cfg->out_channels);
    appendf(buf, size, &at, "pos_embed %dx%d, adm %d, context %d, t_freq %d, mlp %d, ",
            cfg->pos_embed_max, cfg->pos_embed_max, cfg->adm_in, cfg->context_in, cfg->freq_dim,
            cfg->mlp_hidden);
    appendf(buf, size, &at, "qkv bias %s, qk norm %s, x self-attn blocks [",
            cfg->qkv_bias ? "yes" : "no", qk_norm_name(cfg->qk_norm));
    for (int i = 0, n = 0; i < cfg->depth; i++)
        if (cfg->x_self_attn[i])
            appendf(buf, size, &at, n++ ? ",%d" : "%d", i);
    appendf(buf, size, &at, "], last context %s", cfg->context_pre_only ? "pre-only" : "full");
}
