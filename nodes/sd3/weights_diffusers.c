/* nodes/sd3/weights_diffusers.c — the diffusers layout: reference names translated to
 * diffusers' SD3Transformer2DModel and AutoencoderKL names, tensors diffusers stores in
 * another form assembled at lookup, and diffusers pipeline folders opened per component.
 *
 * Translation is by rule tables of name prefixes (docs/models.md, "Diffusers folders",
 * has the full table). Three reference tensors have no one-to-one counterpart:
 *   - attention qkv [3H, H] (and its bias) = cat(to_q, to_k, to_v) along dim 0: the parts
 *     are concatenated into a new tensor (f16 bytes copied once; memory = those weights);
 *   - the final layer's adaLN modulation (and the last block's context-stream one) is
 *     diffusers' AdaLayerNormContinuous, whose linear writes (scale, shift) where the
 *     reference writes (shift, scale): the halves are swapped into a new tensor;
 *   - the VAE attention's q, k, v, proj_out are 1x1 convs [C, C, 1, 1] in the reference and
 *     Linear [C, C] in diffusers: a reshaped view, no copy.
 * The VAE's decoder.up.<i> is diffusers' decoder.up_blocks.<levels-1-i>. Everything else is
 * a rename and a view of the mapped bytes, as for single files. Errors name the diffusers
 * tensor and the file that should hold it. */
#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/base/str.h"
#include "nodes/sd3/weights_impl.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define NAME_MAX_LEN 256

typedef enum {
    OP_RENAME, /* one stored tensor */
    OP_CAT3,   /* three stored tensors concatenated along dim 0 */
    OP_SWAP2,  /* one stored tensor with its two halves along dim 0 swapped */
} map_op;

/* Where a reference tensor is stored. */
typedef struct {
    map_op op;
    int n;        /* stored parts: 3 for OP_CAT3, else 1 */
    bool conv1x1; /* a Linear [C, C] the reference stores as a conv [C, C, 1, 1] */
    char part[3][NAME_MAX_LEN];
} stored_form;

/* ---- name translation ---- */

/* One rule: a reference name prefix and the stored prefix(es) replacing it. */
typedef struct {
    const char *ref;
    const char *dif[3]; /* dif[1], dif[2] only for OP_CAT3 */
    map_op op;
} rule;

static const rule mmdit_top[] = {
    { "x_embedder.proj.", { "pos_embed.proj." }, OP_RENAME },
    { "t_embedder.mlp.0.", { "time_text_embed.timestep_embedder.linear_1." }, OP_RENAME },
    { "t_embedder.mlp.2.", { "time_text_embed.timestep_embedder.linear_2." }, OP_RENAME },
    { "y_embedder.mlp.0.", { "time_text_embed.text_embedder.linear_1." }, OP_RENAME },
    { "y_embedder.mlp.2.", { "time_text_embed.text_embedder.linear_2." }, OP_RENAME },
    { "context_embedder.", { "context_embedder." }, OP_RENAME },
    { "final_layer.adaLN_modulation.1.", { "norm_out.linear." }, OP_SWAP2 },
    { "final_layer.linear.", { "proj_out." }, OP_RENAME },
};

/* joint_blocks.<i>.x_block.* -> transformer_blocks.<i>.* */
static const rule mmdit_x[] = {
    { "adaLN_modulation.1.", { "norm1.linear." }, OP_RENAME },
    { "attn.qkv.", { "attn.to_q.", "attn.to_k.", "attn.to_v." }, OP_CAT3 },
    { "attn.proj.", { "attn.to_out.0." }, OP_RENAME },
    { "attn.ln_q.", { "attn.norm_q." }, OP_RENAME },
    { "attn.ln_k.", { "attn.norm_k." }, OP_RENAME },
    { "attn2.qkv.", { "attn2.to_q.", "attn2.to_k.", "attn2.to_v." }, OP_CAT3 },
    { "attn2.proj.", { "attn2.to_out.0." }, OP_RENAME },
    { "attn2.ln_q.", { "attn2.norm_q." }, OP_RENAME },
    { "attn2.ln_k.", { "attn2.norm_k." }, OP_RENAME },
    { "mlp.fc1.", { "ff.net.0.proj." }, OP_RENAME },
    { "mlp.fc2.", { "ff.net.2." }, OP_RENAME },
};

/* joint_blocks.<i>.context_block.* -> transformer_blocks.<i>.* (the adaLN rule becomes
 * OP_SWAP2 in a context-pre-only block, whose norm1_context is AdaLayerNormContinuous). */
static const rule mmdit_ctx[] = {
    { "adaLN_modulation.1.", { "norm1_context.linear." }, OP_RENAME },
    { "attn.qkv.", { "attn.add_q_proj.", "attn.add_k_proj.", "attn.add_v_proj." }, OP_CAT3 },
    { "attn.proj.", { "attn.to_add_out." }, OP_RENAME },
    { "attn.ln_q.", { "attn.norm_added_q." }, OP_RENAME },
    { "attn.ln_k.", { "attn.norm_added_k." }, OP_RENAME },
    { "mlp.fc1.", { "ff_context.net.0.proj." }, OP_RENAME },
    { "mlp.fc2.", { "ff_context.net.2." }, OP_RENAME },
};

/* <side>.* of the VAE, after the level and block parts are handled. */
static const rule vae_side[] = {
    { "conv_in.", { "conv_in." }, OP_RENAME },
    { "conv_out.", { "conv_out." }, OP_RENAME },
    { "norm_out.", { "conv_norm_out." }, OP_RENAME },
    { "mid.block_1.", { "mid_block.resnets.0." }, OP_RENAME },
    { "mid.block_2.", { "mid_block.resnets.1." }, OP_RENAME },
    { "mid.attn_1.norm.", { "mid_block.attentions.0.group_norm." }, OP_RENAME },
    { "mid.attn_1.q.", { "mid_block.attentions.0.to_q." }, OP_RENAME },
    { "mid.attn_1.k.", { "mid_block.attentions.0.to_k." }, OP_RENAME },
    { "mid.attn_1.v.", { "mid_block.attentions.0.to_v." }, OP_RENAME },
    { "mid.attn_1.proj_out.", { "mid_block.attentions.0.to_out.0." }, OP_RENAME },
};

/* Diffusers releases before 0.14 named the VAE attention query/key/value/proj_attn. */
static const struct {
    const char *now, *old;
} vae_attn_legacy[] = {
    { ".to_q.", ".query." },
    { ".to_k.", ".key." },
    { ".to_v.", ".value." },
    { ".to_out.0.", ".proj_attn." },
};

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Fills f from the first rule whose ref prefixes name; head goes before the stored names. */
static bool apply_rules(const rule *rules, size_t n, const char *head, const char *name,
                        stored_form *f)
{
    for (size_t i = 0; i < n; i++) {
        if (!has_prefix(name, rules[i].ref))
            continue;
        const char *leaf = name + strlen(rules[i].ref);
        f->op = rules[i].op;
        f->n = rules[i].op == OP_CAT3 ? 3 : 1;
        for (int k = 0; k < f->n; k++) {
            int len =
                snprintf(f->part[k], sizeof(f->part[k]), "%s%s%s", head, rules[i].dif[k], leaf);
            if (len < 0 || (size_t)len >= sizeof(f->part[k]))
                return false;
        }
        return true;
    }
    return false;
}

static bool map_mmdit(const lm_sd3_weights *w, const char *name, stored_form *f)
{
    if (strcmp(name, "pos_embed") == 0) {
        *f = (stored_form){ .op = OP_RENAME, .n = 1 };
        lm_strlcpy(f->part[0], "pos_embed.pos_embed", sizeof(f->part[0]));
        return true;
    }
    int block = -1, at = 0;
    if (sscanf(name, "joint_blocks.%d.%n", &block, &at) != 1 || at == 0 || block < 0)
        return apply_rules(mmdit_top, LM_COUNTOF(mmdit_top), "", name, f);
    char head[64];
    snprintf(head, sizeof(head), "transformer_blocks.%d.", block);
    const char *rest = name + at;
    if (has_prefix(rest, "x_block."))
        return apply_rules(mmdit_x, LM_COUNTOF(mmdit_x), head, rest + 8, f);
    if (!has_prefix(rest, "context_block.") ||
        !apply_rules(mmdit_ctx, LM_COUNTOF(mmdit_ctx), head, rest + 14, f))
        return false;
    if (has_prefix(rest + 14, "adaLN_modulation.1.")) {
        char proj[96];
        snprintf(proj, sizeof(proj), "%sattn.to_add_out.weight", head);
        if (!lm_safetensors_find(w->st, proj))
            f->op = OP_SWAP2; /* pre-only: AdaLayerNormContinuous (scale, shift) */
    }
    return true;
}

/* A res block's leaf: nin_shortcut is diffusers' conv_shortcut. */
static bool map_res(const char *head, const char *leaf, stored_form *f)
{
    bool nin = has_prefix(leaf, "nin_shortcut.");
    *f = (stored_form){ .op = OP_RENAME, .n = 1 };
    int len = snprintf(f->part[0], sizeof(f->part[0]), "%s%s%s", head, nin ? "conv_shortcut." : "",
                       nin ? leaf + 13 : leaf);
    return len > 0 && (size_t)len < sizeof(f->part[0]);
}

/* <side>.down.<i>.* / <side>.up.<i>.*: levels; up levels are stored in reverse order. */
static bool map_vae_level(const lm_sd3_weights *w, const char *side, const char *rest,
                          stored_form *f)
{
    bool up = has_prefix(rest, "up.");
    int level = -1, blk = -1, at = 0;
    if (sscanf(rest + (up ? 3 : 5), "%d.%n", &level, &at) != 1 || at == 0 || level < 0)
        return false;
    const char *tail = rest + (up ? 3 : 5) + at;
    if (up && level >= w->vae_up_levels)
        return false;
    int stored = up ? w->vae_up_levels - 1 - level : level;
    char head[96];
    if (sscanf(tail, "block.%d.%n", &blk, &at) == 1 && at > 0 && blk >= 0) {
        snprintf(head, sizeof(head), "%s.%s_blocks.%d.resnets.%d.", side, up ? "up" : "down",
                 stored, blk);
        return map_res(head, tail + at, f);
    }
    const char *resample = up ? "upsample.conv." : "downsample.conv.";
    if (!has_prefix(tail, resample))
        return false;
    *f = (stored_form){ .op = OP_RENAME, .n = 1 };
    int len = snprintf(f->part[0], sizeof(f->part[0]), "%s.%s_blocks.%d.%s.0.conv.%s", side,
                       up ? "up" : "down", stored, up ? "upsamplers" : "downsamplers",
                       tail + strlen(resample));
    return len > 0 && (size_t)len < sizeof(f->part[0]);
}

/* The VAE attention under its pre-0.14 names, when the file uses those. */
static void vae_attn_fallback(const lm_sd3_weights *w, stored_form *f)
{
    if (lm_safetensors_find(w->st, f->part[0]))
        return;
    for (size_t i = 0; i < LM_COUNTOF(vae_attn_legacy); i++) {
        char *at = strstr(f->part[0], vae_attn_legacy[i].now);
        char old[NAME_MAX_LEN];
        if (!at)
            continue;
        int len = snprintf(old, sizeof(old), "%.*s%s%s", (int)(at - f->part[0]), f->part[0],
                           vae_attn_legacy[i].old, at + strlen(vae_attn_legacy[i].now));
        if (len > 0 && (size_t)len < sizeof(old) && lm_safetensors_find(w->st, old))
            lm_strlcpy(f->part[0], old, sizeof(f->part[0]));
        return;
    }
}

static bool map_vae(const lm_sd3_weights *w, const char *name, stored_form *f)
{
    const char *side = has_prefix(name, "encoder.")   ? "encoder"
                       : has_prefix(name, "decoder.") ? "decoder"
                                                      : NULL;
    if (!side)
        return false;
    const char *rest = name + 8;
    char head[16];
    snprintf(head, sizeof(head), "%s.", side);
    if (has_prefix(rest, "down.") || has_prefix(rest, "up."))
        return map_vae_level(w, side, rest, f);
    if (has_prefix(rest, "mid.block_")) {
        int which = rest[10] - '0';
        char rh[64];
        if ((which != 1 && which != 2) || rest[11] != '.')
            return false;
        snprintf(rh, sizeof(rh), "%s.mid_block.resnets.%d.", side, which - 1);
        return map_res(rh, rest + 12, f);
    }
    if (!apply_rules(vae_side, LM_COUNTOF(vae_side), head, rest, f))
        return false;
    if (strstr(f->part[0], ".attentions.0.to_")) {
        f->conv1x1 = lm_str_ends_with(name, ".weight");
        vae_attn_fallback(w, f);
    }
    return true;
}

static bool map_name(const lm_sd3_weights *w, const char *name, stored_form *f)
{
    memset(f, 0, sizeof(*f));
    if (w->component == LM_SD3_MMDIT)
        return map_mmdit(w, name, f);
    if (w->component == LM_SD3_VAE)
        return map_vae(w, name, f);
    /* Text encoders keep their names in diffusers folders. */
    *f = (stored_form){ .op = OP_RENAME, .n = 1 };
    return lm_strlcpy(f->part[0], name, sizeof(f->part[0]));
}

/* ---- lookups ---- */

/* Every part's entry; false when one is missing (*missing: its index). */
static bool find_parts(const lm_sd3_weights *w, const stored_form *f,
                       const lm_safetensors_entry *e[3], int *missing)
{
    for (int k = 0; k < f->n; k++) {
        e[k] = lm_safetensors_find(w->st, f->part[k]);
        if (!e[k]) {
            *missing = k;
            return false;
        }
    }
    return true;
}

/* The reference shape of the assembled tensor; -1 when the parts do not fit together. */
static int assembled_shape(const stored_form *f, const lm_safetensors_entry *const e[3],
                           int64_t shape[8])
{
    int nd = e[0]->ndim;
    if (nd > 6 || (f->op != OP_RENAME && nd < 1))
        return -1;
    for (int d = 0; d < nd; d++)
        shape[d] = e[0]->shape[d];
    for (int k = 1; k < f->n; k++) {
        if (e[k]->ndim != nd || e[k]->dtype != e[0]->dtype)
            return -1;
        for (int d = 1; d < nd; d++)
            if (e[k]->shape[d] != shape[d])
                return -1;
        shape[0] += e[k]->shape[0];
    }
    if (f->conv1x1 && nd == 2) {
        shape[2] = shape[3] = 1;
        nd = 4;
    }
    return nd;
}

const lm_safetensors_entry *lm_sd3_weights__diffusers_find(const lm_sd3_weights *w,
                                                           const char *name)
{
    stored_form f;
    const lm_safetensors_entry *e[3];
    int missing = 0;
    return map_name(w, name, &f) && find_parts(w, &f, e, &missing) ? e[0] : NULL;
}

int lm_sd3_weights__diffusers_shape(const lm_sd3_weights *w, const char *name, int64_t shape[8])
{
    stored_form f;
    const lm_safetensors_entry *e[3];
    int missing = 0;
    if (!map_name(w, name, &f) || !find_parts(w, &f, e, &missing))
        return 0;
    int nd = assembled_shape(&f, e, shape);
    return nd < 0 ? 0 : nd;
}

bool lm_sd3_weights__diffusers_name(const lm_sd3_weights *w, const char *name, char *out,
                                    size_t size)
{
    stored_form f;
    return map_name(w, name, &f) && lm_strlcpy(out, f.part[0], size);
}

/* Checks each stored part against its share of the expected shape, naming the part. */
static lm_status check_parts(const lm_sd3_weights *w, const stored_form *f,
                             const lm_safetensors_entry *const e[3], int ndim, const int64_t *shape,
                             lm_error *err)
{
    int64_t want[8];
    int want_nd = ndim;
    for (int d = 0; shape && d < ndim && d < 8; d++)
        want[d] = shape[d];
    if (f->conv1x1 && e[0]->ndim != 4 && ndim == 4)
        want_nd = 2; /* the Linear form: [C, C] for [C, C, 1, 1] */
    if (f->op == OP_CAT3 && shape && ndim >= 1 && want[0] >= 0)
        want[0] /= 3; /* each part's share; the whole is checked after assembly */
    for (int k = 0; k < f->n; k++) {
        lm_status st = lm_sd3_weights__check_shape(w, f->part[k], e[k]->file, e[k]->shape,
                                                   e[k]->ndim, want_nd, shape ? want : NULL, err);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

/* A new CPU tensor holding the parts' bytes (OP_CAT3) or the halves swapped (OP_SWAP2). */
static lm_status assemble(const lm_sd3_weights *w, const stored_form *f,
                          const lm_safetensors_entry *const e[3], const int64_t *shape, int nd,
                          lm_tensor **out, lm_error *err)
{
    lm_dtype dt;
    if (!lm_safetensors_dtype_to_lm(e[0]->dtype, &dt))
        return lm_errorf(err, LM_EUNSUPPORTED, "unsupported_dtype",
                         "%s tensor \"%s\" is %s, which Loom cannot compute with",
                         lm_sd3_component_name(w->component), f->part[0],
                         lm_safetensors_dtype_name(e[0]->dtype));
    if (f->op == OP_SWAP2 && e[0]->shape[0] % 2 != 0) {
        lm_errorf(err, LM_EFORMAT, "bad_tensor_shape",
                  "%s tensor \"%s\" has %lld rows, not an even number (scale, shift)",
                  lm_sd3_component_name(w->component), f->part[0], (long long)e[0]->shape[0]);
        lm_error_hint(err, "the file does not match the model it claims to be");
        lm_error_at_file(err, e[0]->file, 0, 0);
        return LM_EFORMAT;
    }
    lm_status st = lm_tensor_new(out, lm_backend_cpu(), dt, nd, shape, err);
    if (st != LM_OK)
        return st;
    char *dst = lm_tensor_data(*out);
    if (f->op == OP_SWAP2) {
        size_t half = e[0]->bytes / 2;
        memcpy(dst, (const char *)e[0]->data + half, half);
        memcpy(dst + half, e[0]->data, half);
        return LM_OK;
    }
    for (int k = 0; k < f->n; k++) {
        memcpy(dst, e[k]->data, e[k]->bytes);
        dst += e[k]->bytes;
    }
    return LM_OK;
}

static lm_status unmapped(const lm_sd3_weights *w, const char *name, lm_error *err)
{
    lm_errorf(err, LM_ENOTFOUND, "missing_tensor",
              "%s tensor \"%s\" has no counterpart in the diffusers layout",
              lm_sd3_component_name(w->component), name);
    lm_error_hint(err, "this folder is not a complete SD3 diffusers model or is damaged");
    lm_error_at_file(err, lm_safetensors_path(w->st), 0, 0);
    return LM_ENOTFOUND;
}

lm_status lm_sd3_weights__diffusers_get(const lm_sd3_weights *w, const char *name, int ndim,
                                        const int64_t *shape, lm_tensor **out, lm_error *err)
{
    stored_form f;
    const lm_safetensors_entry *e[3];
    int missing = 0;
    *out = NULL;
    if (!map_name(w, name, &f))
        return unmapped(w, name, err);
    if (!find_parts(w, &f, e, &missing))
        return lm_sd3_weights__missing(w, f.part[missing], lm_safetensors_path(w->st), err);
    lm_status st = check_parts(w, &f, e, ndim, shape, err);
    if (st != LM_OK)
        return st;
    int64_t full[8];
    int nd = assembled_shape(&f, e, full);
    if (nd < 0 || nd > LM_MAX_DIMS) {
        lm_errorf(err, LM_EFORMAT, "bad_tensor_shape",
                  "%s tensor \"%s\" does not match its sibling parts in rank, shape or dtype",
                  lm_sd3_component_name(w->component), f.part[0]);
        lm_error_hint(err, "the file does not match the model it claims to be");
        lm_error_at_file(err, e[0]->file, 0, 0);
        return LM_EFORMAT;
    }
    if (f.op == OP_CAT3 && (st = lm_sd3_weights__check_shape(w, f.part[0], e[0]->file, full, nd,
                                                             ndim, shape, err)) != LM_OK)
        return st;
    if (f.op != OP_RENAME)
        return assemble(w, &f, e, full, nd, out, err);
    lm_tensor *t = NULL;
    st = lm_safetensors_entry_tensor(&t, w->st, e[0], err);
    if (st != LM_OK || nd == e[0]->ndim) {
        *out = t;
        return st;
    }
    st = lm_tensor_view_reshape(out, t, nd, full, err); // [C, C] -> [C, C, 1, 1]
    lm_tensor_free(t);
    return st;
}

/* ---- detection of diffusers-named files ---- */

void lm_sd3_weights__detect_diffusers(lm_safetensors *st, bool found[LM_SD3_COMPONENT_COUNT],
                                      lm_sd3_weights weights[LM_SD3_COMPONENT_COUNT])
{
    if (!found[LM_SD3_MMDIT] && lm_safetensors_find(st, "pos_embed.proj.weight") &&
        lm_safetensors_find(st, "transformer_blocks.0.norm1.linear.weight")) {
        found[LM_SD3_MMDIT] = true;
        weights[LM_SD3_MMDIT] = (lm_sd3_weights){ .st = st,
                                                  .component = LM_SD3_MMDIT,
                                                  .layout = LM_SD3_LAYOUT_DIFFUSERS };
    }
    lm_sd3_weights *v = &weights[LM_SD3_VAE];
    if (found[LM_SD3_VAE] && v->prefix[0] == '\0' &&
        lm_safetensors_find(st, "decoder.up_blocks.0.resnets.0.conv1.weight")) {
        v->layout = LM_SD3_LAYOUT_DIFFUSERS;
        v->vae_up_levels = 0;
        for (char n[96];; v->vae_up_levels++) {
            snprintf(n, sizeof(n), "decoder.up_blocks.%d.resnets.0.conv1.weight", v->vae_up_levels);
            if (!lm_safetensors_find(st, n))
                break;
        }
    }
}

/* ---- folders ---- */

struct lm_sd3_diffusers {
    lm_safetensors *st[LM_SD3_COMPONENT_COUNT];
};

static const char *const sub_dirs[LM_SD3_COMPONENT_COUNT] = {
    [LM_SD3_MMDIT] = "transformer",    [LM_SD3_VAE] = "vae",
    [LM_SD3_CLIP_L] = "text_encoder",  [LM_SD3_CLIP_G] = "text_encoder_2",
    [LM_SD3_T5XXL] = "text_encoder_3",
};

static bool is_dir(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat sb;
    return lm_path_join(p, sizeof(p), dir, name) && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

bool lm_sd3_diffusers_is_folder(const char *path)
{
    char p[PATH_MAX];
    if (!path || !is_dir(path, "."))
        return false;
    if (lm_path_join(p, sizeof(p), path, "model_index.json") && is_file(p))
        return true;
    return is_dir(path, "transformer") && is_dir(path, "vae");
}

/* The weights file of a component folder: full, fp16 variant, or their sharded indexes. */
static bool weights_file(const char *sub, char *out, size_t size)
{
    static const char *const names[] = {
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.safetensors.index.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.fp16.safetensors.index.json",
        "model.fp16.safetensors",
        "model.fp16.safetensors.index.json",
    };
    for (size_t i = 0; i < LM_COUNTOF(names); i++)
        if (lm_path_join(out, size, sub, names[i]) && is_file(out))
            return true;
    return false;
}

/* num_attention_heads of a text encoder's config.json; 0 when absent or unreadable. */
static int config_heads(const char *sub)
{
    char p[PATH_MAX], *text = NULL;
    size_t len = 0;
    lm_error ignored;
    if (!lm_path_join(p, sizeof(p), sub, "config.json") || !is_file(p) ||
        lm_file_read(p, 1 << 20, &text, &len, &ignored) != LM_OK)
        return 0;
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "num_attention_heads");
    int heads = cJSON_IsNumber(h) && h->valuedouble >= 1 && h->valuedouble <= 4096
                    ? (int)h->valuedouble
                    : 0;
    cJSON_Delete(root);
    lm_free(text);
    return heads;
}

/* Opens component c's sub-folder (if any) and binds its weights. */
static lm_status open_component(lm_sd3_diffusers *d, const char *dir, lm_sd3_component c,
                                bool *found, lm_sd3_weights *weights, lm_error *err)
{
    char sub[PATH_MAX], file[PATH_MAX];
    if (!is_dir(dir, sub_dirs[c]) || !lm_path_join(sub, sizeof(sub), dir, sub_dirs[c]))
        return LM_OK;
    if (!weights_file(sub, file, sizeof(file))) {
        LM_LOG_WARN("models", "%s: no *.safetensors weights; %s not loaded", sub,
                    lm_sd3_component_name(c));
        return LM_OK;
    }
    lm_status st = lm_safetensors_open(&d->st[c], file, err);
    if (st != LM_OK)
        return st;
    bool f[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_sd3_detect(d->st[c], f, w);
    /* A text encoder's file is detected as a standalone CLIP (reported as CLIP-L). */
    lm_sd3_component as = c == LM_SD3_CLIP_G ? LM_SD3_CLIP_L : c;
    if (!f[as]) {
        lm_errorf(err, LM_EFORMAT, "model_component_missing", "%s/ holds no %s weights",
                  sub_dirs[c], lm_sd3_component_name(c));
        lm_error_hint(err, "the folder is not an SD3 diffusers model or the file is damaged");
        lm_error_at_file(err, file, 0, 0);
        return LM_EFORMAT;
    }
    *found = true;
    *weights = w[as];
    weights->component = c;
    if (c == LM_SD3_CLIP_L || c == LM_SD3_CLIP_G)
        weights->clip_heads = config_heads(sub);
    return LM_OK;
}

lm_status lm_sd3_diffusers_open(lm_sd3_diffusers **out, const char *dir,
                                bool found[LM_SD3_COMPONENT_COUNT],
                                lm_sd3_weights weights[LM_SD3_COMPONENT_COUNT], lm_error *err)
{
    *out = NULL;
    memset(found, 0, LM_SD3_COMPONENT_COUNT * sizeof(bool));
    memset(weights, 0, LM_SD3_COMPONENT_COUNT * sizeof(lm_sd3_weights));
    lm_sd3_diffusers *d = lm_calloc(1, sizeof(*d));
    if (!d)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory opening %.200s", dir);
    lm_status st = LM_OK;
    bool any = false;
    for (int c = 0; st == LM_OK && c < LM_SD3_COMPONENT_COUNT; c++) {
        st = open_component(d, dir, (lm_sd3_component)c, &found[c], &weights[c], err);
        any = any || found[c];
    }
    if (st == LM_OK && !any) {
        lm_errorf(err, LM_ENOTFOUND, "model_component_missing",
                  "diffusers folder %.200s holds no model weights", dir);
        lm_error_hint(err, "download the transformer/ and vae/ weights into it");
        st = LM_ENOTFOUND;
    }
    if (st != LM_OK) {
        lm_sd3_diffusers_close(d);
        memset(found, 0, LM_SD3_COMPONENT_COUNT * sizeof(bool));
        return st;
    }
    *out = d;
    return LM_OK;
}

void lm_sd3_diffusers_close(lm_sd3_diffusers *d)
{
    if (!d)
        return;
    for (int c = 0; c < LM_SD3_COMPONENT_COUNT; c++)
        lm_safetensors_close(d->st[c]);
    lm_free(d);
}
