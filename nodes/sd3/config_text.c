/* nodes/sd3/config_text.c — the text encoders' configurations, inferred from tensor names
 * and shapes (lm_clip_config_infer, lm_t5_config_infer; declared with their models).
 *
 * CLIP: width and vocab from token_embedding, positions from position_embedding, layers
 * from the count of encoder.layers.N, MLP width from fc1, projection width from
 * text_projection. Heads are the one value shapes cannot give: a diffusers folder's
 * config.json says it, else the file's metadata when it can (a standalone file's own
 * "num_attention_heads" first, then the
 * all-in-one "clip_l." / "clip_g." keys), else heads are 64 wide as in every released
 * CLIP (CLIP-L 12, CLIP-G 20). The activation, pad id and pooled form follow the kind.
 * T5: width and vocab from shared, heads and buckets from block 0's relative bias table,
 * d_kv from q, blocks from the count, d_ff from wi_0; the max distance (128) and eps are
 * T5 v1.1's constants. The loaders then check every tensor against the result. */
#include "nodes/sd3/clip.h"
#include "nodes/sd3/t5.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIP_HEAD_DIM     64
#define CLIP_EPS          1e-5f
#define T5_MAX_DISTANCE   128
#define T5_EPS            1e-6f
#define CONFIG_MAX_WIDTH  (1 << 20)
#define CONFIG_MAX_LAYERS 4096

/* Values that each look fine alone but do not fit together (or fit no model). */
static lm_status config_error(lm_error *err, const lm_sd3_weights *w, const char *msg)
{
    lm_errorf(err, LM_EFORMAT, "bad_model_config", "%s: %s", lm_sd3_component_name(w->component),
              msg);
    lm_error_hint(err, "the file is not an SD3 text encoder or is damaged");
    lm_error_at_file(err, lm_safetensors_path(w->st), 0, 0);
    return LM_EFORMAT;
}

static bool sane_dim(int64_t v)
{
    return v >= 1 && v <= CONFIG_MAX_WIDTH;
}

/* ComfyUI's "scaled fp8" files store each linear weight with a `.scale_weight` factor that
 * plain float8 lacks; reading them as plain float8 would silently give wrong numbers. */
static lm_status refuse_scaled_fp8(const lm_sd3_weights *w, const char *probe, lm_error *err)
{
    if (!lm_sd3_weights_has(w, probe) && !lm_sd3_weights_has(w, "scaled_fp8"))
        return LM_OK;
    lm_errorf(err, LM_EUNSUPPORTED, "unsupported_model",
              "%s: this is a scaled-fp8 file (weights with \"scale_weight\" factors)",
              lm_sd3_component_name(w->component));
    lm_error_hint(err, "use the fp16 file or the plain float8 one (t5xxl_fp8_e4m3fn)");
    lm_error_at_file(err, lm_safetensors_path(w->st), 0, 0);
    return LM_EUNSUPPORTED;
}

/* ---- CLIP ---- */

/* A positive decimal integer metadata value, or 0 when the key is absent. */
static lm_status metadata_int(const lm_sd3_weights *w, const char *key, int *out, lm_error *err)
{
    *out = 0;
    const char *s = lm_safetensors_metadata(w->st, key);
    if (!s)
        return LM_OK;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 1 || v > 4096) {
        lm_errorf(err, LM_EFORMAT, "bad_metadata",
                  "%s: metadata \"%s\" is \"%s\", expected a head count from 1 to 4096",
                  lm_sd3_component_name(w->component), key, s);
        lm_error_hint(err, "fix or remove the key; without it heads are 64 wide");
        lm_error_at_file(err, lm_safetensors_path(w->st), 0, 0);
        return LM_EFORMAT;
    }
    *out = (int)v;
    return LM_OK;
}

static lm_status clip_heads(lm_clip_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    const char *own = "num_attention_heads";
    const char *kind_key =
        cfg->kind == LM_CLIP_KIND_L ? "clip_l.num_attention_heads" : "clip_g.num_attention_heads";
    /* A standalone file (no prefix) describes itself; an all-in-one file names each CLIP. */
    const char *keys[2] = { w->prefix[0] ? kind_key : own, w->prefix[0] ? own : kind_key };
    cfg->heads = w->clip_heads; /* a diffusers folder's config.json, when it says */
    for (int i = 0; i < 2 && cfg->heads == 0; i++) {
        lm_status st = metadata_int(w, keys[i], &cfg->heads, err);
        if (st != LM_OK)
            return st;
    }
    if (cfg->heads == 0)
        cfg->heads = cfg->width / CLIP_HEAD_DIM;
    if (cfg->heads < 1 || cfg->width % cfg->heads != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "width %d cannot be split into %d attention heads", cfg->width,
                 cfg->heads);
        return config_error(err, w, msg);
    }
    return LM_OK;
}

static lm_status clip_projection(lm_clip_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    int64_t s[2];
    cfg->proj_dim = 0;
    if (cfg->kind == LM_CLIP_KIND_L && !lm_sd3_weights_has(w, "text_projection.weight"))
        return LM_OK; /* SD3 never uses CLIP-L's projection */
    lm_status st = lm_sd3_weights_get_shape(w, "text_projection.weight", 2, s, err);
    if (st != LM_OK)
        return st;
    if (!sane_dim(s[0]))
        return config_error(err, w, "text_projection.weight has an impossible shape");
    cfg->proj_dim = (int)s[0];
    return LM_OK;
}

lm_status lm_clip_config_infer(lm_clip_config *cfg, const lm_sd3_weights *w, lm_clip_kind kind,
                               lm_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->kind = kind;
    int64_t tok[2], pos[2], fc1[2];
    lm_status st =
        refuse_scaled_fp8(w, "text_model.encoder.layers.0.self_attn.q_proj.scale_weight", err);
    if (st != LM_OK)
        return st;
    st = lm_sd3_weights_get_shape(w, "text_model.embeddings.token_embedding.weight", 2, tok, err);
    if (st == LM_OK)
        st = lm_sd3_weights_get_shape(w, "text_model.embeddings.position_embedding.weight", 2, pos,
                                      err);
    if (st == LM_OK)
        st = lm_sd3_weights_get_shape(w, "text_model.encoder.layers.0.mlp.fc1.weight", 2, fc1, err);
    if (st != LM_OK)
        return st;
    if (!sane_dim(tok[0]) || !sane_dim(tok[1]) || !sane_dim(pos[0]) || !sane_dim(fc1[0]))
        return config_error(err, w, "the embedding or MLP tensors have impossible shapes");
    cfg->vocab = (int)tok[0];
    cfg->width = (int)tok[1];
    cfg->positions = (int)pos[0];
    cfg->ff = (int)fc1[0];
    cfg->layers = lm_sd3_weights_count(w, "text_model.encoder.layers.%d.self_attn.q_proj.weight");
    if (cfg->layers < 1 || cfg->layers > CONFIG_MAX_LAYERS)
        return config_error(err, w, "text_model.encoder.layers.0 is missing");
    cfg->act = kind == LM_CLIP_KIND_L ? LM_CLIP_ACT_QUICK_GELU : LM_CLIP_ACT_GELU;
    cfg->eps = CLIP_EPS;
    cfg->pad_id = kind == LM_CLIP_KIND_L ? LM_CLIP_EOS_ID : 0;
    cfg->pooled_projected = kind == LM_CLIP_KIND_G;
    st = clip_heads(cfg, w, err);
    if (st == LM_OK)
        st = clip_projection(cfg, w, err);
    return st;
}

void lm_clip_config_describe(const lm_clip_config *cfg, char *buf, size_t size)
{
    snprintf(buf, size,
             "%s: width %d, %d layers, %d heads of %d, ff %d, %s, vocab %d, %d positions, "
             "projection %d",
             cfg->kind == LM_CLIP_KIND_L ? "CLIP-L" : "CLIP-G", cfg->width, cfg->layers, cfg->heads,
             cfg->heads ? cfg->width / cfg->heads : 0, cfg->ff,
             cfg->act == LM_CLIP_ACT_GELU ? "gelu" : "quick_gelu", cfg->vocab, cfg->positions,
             cfg->proj_dim);
}

/* ---- T5 ---- */

#define T5_ATTN "encoder.block.0.layer.0.SelfAttention."

static lm_status t5_mlp(lm_t5_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    int64_t s[2];
    if (!lm_sd3_weights_has(w, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight") &&
        lm_sd3_weights_has(w, "encoder.block.0.layer.1.DenseReluDense.wi.weight")) {
        lm_errorf(err, LM_EUNSUPPORTED, "unsupported_model",
                  "T5-XXL: this is an original T5 (ReLU MLP, \"wi.weight\"), not T5 v1.1");
        lm_error_hint(err, "SD3 needs the T5 v1.1 XXL encoder (t5xxl_fp16 or t5xxl_fp8)");
        lm_error_at_file(err, lm_safetensors_path(w->st), 0, 0);
        return LM_EUNSUPPORTED;
    }
    lm_status st = lm_sd3_weights_get_shape(w, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
                                            2, s, err);
    if (st != LM_OK)
        return st;
    if (!sane_dim(s[0]))
        return config_error(err, w, "wi_0.weight has an impossible shape");
    cfg->d_ff = (int)s[0];
    return LM_OK;
}

lm_status lm_t5_config_infer(lm_t5_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    int64_t sh[2], rel[2], q[2];
    lm_status st = refuse_scaled_fp8(w, T5_ATTN "q.scale_weight", err);
    if (st == LM_OK)
        st = lm_sd3_weights_get_shape(w, "shared.weight", 2, sh, err);
    if (st == LM_OK)
        st = lm_sd3_weights_get_shape(w, T5_ATTN "relative_attention_bias.weight", 2, rel, err);
    if (st == LM_OK)
        st = lm_sd3_weights_get_shape(w, T5_ATTN "q.weight", 2, q, err);
    if (st != LM_OK)
        return st;
    if (!sane_dim(sh[0]) || !sane_dim(sh[1]) || !sane_dim(rel[0]) || !sane_dim(rel[1]) ||
        !sane_dim(q[0]) || rel[0] < 2)
        return config_error(err, w, "the embedding or attention tensors have impossible shapes");
    cfg->vocab = (int)sh[0];
    cfg->d_model = (int)sh[1];
    cfg->num_buckets = (int)rel[0];
    cfg->heads = (int)rel[1];
    if (q[0] % rel[1] != 0)
        return config_error(err, w,
                            "q.weight rows are not a multiple of the head count "
                            "(relative_attention_bias.weight columns)");
    cfg->d_kv = (int)(q[0] / rel[1]);
    cfg->layers = lm_sd3_weights_count(w, "encoder.block.%d.layer.0.SelfAttention.q.weight");
    if (cfg->layers > CONFIG_MAX_LAYERS)
        return config_error(err, w, "too many encoder blocks");
    cfg->max_distance = T5_MAX_DISTANCE;
    cfg->eps = T5_EPS;
    return t5_mlp(cfg, w, err);
}

void lm_t5_config_describe(const lm_t5_config *cfg, char *buf, size_t size)
{
    snprintf(buf, size,
             "T5: d_model %d, %d blocks, %d heads of %d, d_ff %d, vocab %d, %d buckets "
             "(max distance %d)",
             cfg->d_model, cfg->layers, cfg->heads, cfg->d_kv, cfg->d_ff, cfg->vocab,
             cfg->num_buckets, cfg->max_distance);
}
