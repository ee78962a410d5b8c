/* nodes/sd3/config_vae.c — the VAE's configuration from tensor names and shapes.
 *
 * Counts come from names (levels = consecutive "down.<i>" / "up.<i>" with a block 0, blocks
 * = consecutive "block.<j>"), widths from weight shapes (a res block's conv1 weight is
 * [out, in, 3, 3]), optional parts from presence (nin_shortcut, downsample/upsample,
 * mid.attn_1). Nothing here checks every tensor: lm_vae_load binds each one against the
 * shapes this config implies, so a damaged file is caught there, naming the tensor. */
#include "core/base/log.h"
#include "nodes/sd3/vae.h"

#include <stdio.h>
#include <string.h>

static bool has(const lm_sd3_weights *w, const char *fmt, int i, int j)
{
    char name[160];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(name, sizeof(name), fmt, i, j);
#pragma GCC diagnostic pop
    return lm_sd3_weights_has(w, name);
}

static lm_status bad_config(const lm_sd3_weights *w, const char *what, lm_error *err)
{
    lm_errorf(err, LM_EFORMAT, "bad_vae_config", "VAE weights (prefix \"%s\"): %s", w->prefix,
              what);
    lm_error_hint(err, "the file is not an SD3-family VAE or is damaged");
    lm_error_at_file(err, lm_safetensors_path(w->st), 0, 0);
    return LM_EFORMAT;
}

/* Levels, blocks, widths and optional parts of "encoder" (dir "down") or "decoder" ("up"). */
static lm_status infer_levels(lm_vae_half *h, const lm_sd3_weights *w, const char *side,
                              const char *dir, const char *resample, lm_error *err)
{
    char fmt[128], msg[160];
    snprintf(fmt, sizeof(fmt), "%s.%s.%%d.block.0.conv1.weight", side, dir);
    h->levels = lm_sd3_weights_count(w, fmt);
    if (h->levels < 1 || h->levels > LM_VAE_MAX_LEVELS) {
        snprintf(msg, sizeof(msg), "%s has %d levels (\"%s.%s.<i>\"), expected 1 to %d", side,
                 h->levels, side, dir, LM_VAE_MAX_LEVELS);
        return bad_config(w, msg, err);
    }
    for (int i = 0; i < h->levels; i++) {
        snprintf(fmt, sizeof(fmt), "%s.%s.%d.block.%%d.conv1.weight", side, dir, i);
        h->blocks[i] = lm_sd3_weights_count(w, fmt);
        if (h->blocks[i] > LM_VAE_MAX_BLOCKS) {
            snprintf(msg, sizeof(msg), "%s.%s.%d has %d res blocks, at most %d are supported", side,
                     dir, i, h->blocks[i], LM_VAE_MAX_BLOCKS);
            return bad_config(w, msg, err);
        }
        int64_t s[8];
        char name[128];
        snprintf(name, sizeof(name), "%s.%s.%d.block.0.conv1.weight", side, dir, i);
        lm_status st = lm_sd3_weights_get_shape(w, name, 4, s, err);
        if (st != LM_OK)
            return st;
        h->width[i] = (int)s[0];
        snprintf(fmt, sizeof(fmt), "%s.%s.%%d.block.%%d.nin_shortcut.weight", side, dir);
        for (int j = 0; j < h->blocks[i]; j++)
            h->shortcut[i][j] = has(w, fmt, i, j);
        snprintf(fmt, sizeof(fmt), "%s.%s.%%d.%s.conv.weight", side, dir, resample);
        h->resample[i] = has(w, fmt, i, 0);
    }
    return LM_OK;
}

/* conv_in, mid and conv_out widths of one half. */
static lm_status infer_ends(lm_vae_half *h, const lm_sd3_weights *w, const char *side,
                            lm_error *err)
{
    int64_t s[8];
    char name[96];
    snprintf(name, sizeof(name), "%s.conv_in.weight", side);
    lm_status st = lm_sd3_weights_get_shape(w, name, 4, s, err);
    if (st != LM_OK)
        return st;
    h->in_channels = (int)s[1];
    h->stem_width = (int)s[0];
    snprintf(name, sizeof(name), "%s.mid.block_1.conv1.weight", side);
    if ((st = lm_sd3_weights_get_shape(w, name, 4, s, err)) != LM_OK)
        return st;
    h->mid_width = (int)s[0];
    snprintf(name, sizeof(name), "%s.mid.attn_1.q.weight", side);
    h->mid_attn = lm_sd3_weights_has(w, name);
    snprintf(name, sizeof(name), "%s.conv_out.weight", side);
    if ((st = lm_sd3_weights_get_shape(w, name, 4, s, err)) != LM_OK)
        return st;
    h->out_channels = (int)s[0];
    return LM_OK;
}

static int count_resample(const lm_vae_half *h)
{
    int n = 0;
    for (int i = 0; i < h->levels; i++)
        n += h->resample[i];
    return n;
}

/* Every width must split into the GroupNorm groups; encoder and decoder must agree. */
static lm_status check_config(const lm_vae_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    char msg[160];
    const lm_vae_half *hs[2] = { &cfg->encoder, &cfg->decoder };
    for (int k = 0; k < 2; k++) {
        for (int i = -2; i < hs[k]->levels; i++) {
            int c = i == -2 ? hs[k]->stem_width : i == -1 ? hs[k]->mid_width : hs[k]->width[i];
            if (c > 0 && c % cfg->groups == 0)
                continue;
            snprintf(msg, sizeof(msg), "%s width %d is not a multiple of the %d GroupNorm groups",
                     k ? "decoder" : "encoder", c, cfg->groups);
            return bad_config(w, msg, err);
        }
    }
    if (cfg->encoder.out_channels != 2 * cfg->z_channels) {
        snprintf(msg, sizeof(msg), "encoder.conv_out makes %d channels, not 2 x %d (mean, logvar)",
                 cfg->encoder.out_channels, cfg->z_channels);
        return bad_config(w, msg, err);
    }
    if (count_resample(&cfg->encoder) != count_resample(&cfg->decoder) ||
        cfg->decoder.out_channels != cfg->image_channels) {
        snprintf(msg, sizeof(msg),
                 "encoder and decoder differ: %d/%d resamplings, %d/%d image channels",
                 count_resample(&cfg->encoder), count_resample(&cfg->decoder), cfg->image_channels,
                 cfg->decoder.out_channels);
        return bad_config(w, msg, err);
    }
    return LM_OK;
}

lm_status lm_vae_config_infer(lm_vae_config *cfg, const lm_sd3_weights *w, lm_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->groups = 32;
    cfg->eps = 1e-6f;
    cfg->scale = LM_VAE_SD3_SCALE;
    cfg->shift = LM_VAE_SD3_SHIFT;
    lm_status st = infer_ends(&cfg->encoder, w, "encoder", err);
    if (st == LM_OK)
        st = infer_ends(&cfg->decoder, w, "decoder", err);
    if (st == LM_OK)
        st = infer_levels(&cfg->encoder, w, "encoder", "down", "downsample", err);
    if (st == LM_OK)
        st = infer_levels(&cfg->decoder, w, "decoder", "up", "upsample", err);
    if (st != LM_OK)
        return st;
    cfg->image_channels = cfg->encoder.in_channels;
    cfg->z_channels = cfg->decoder.in_channels;
    cfg->ch = cfg->encoder.stem_width;
    cfg->factor = 1 << count_resample(&cfg->decoder);
    if ((st = check_config(cfg, w, err)) != LM_OK)
        return st;
    for (int i = 0; i < cfg->encoder.levels; i++)
        cfg->ch_mult[i] = cfg->encoder.width[i] % cfg->ch ? 0 : cfg->encoder.width[i] / cfg->ch;
    LM_LOG_DEBUG("sd3", "VAE: ch %d, mult [%d %d %d %d], levels %d, blocks %d/%d, z %d, factor %d",
                 cfg->ch, cfg->ch_mult[0], cfg->ch_mult[1], cfg->ch_mult[2], cfg->ch_mult[3],
                 cfg->encoder.levels, cfg->encoder.blocks[0], cfg->decoder.blocks[0],
                 cfg->z_channels, cfg->factor);
    return LM_OK;
}
