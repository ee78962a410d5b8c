/* nodes/loaders/checkpoint_loaders.c — CheckpointLoaderSimple, UNETLoader and VAELoader:
 * model files from the models directory as MODEL, CLIP and VAE values.
 *
 * Every component comes from the process-wide model manager (nodes/sd3/models.h), so two
 * jobs or two loader nodes naming one file share one copy of its weights. A checkpoint
 * without text encoders (sd3.5_medium.safetensors) loads with an empty CLIP: only a node
 * that encodes text with it fails, saying to use TripleCLIPLoader; the same holds for a
 * checkpoint without a VAE. The names are checked against the folder's files during
 * validation (the combos' choices), so a missing file is reported before anything runs. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/sd3/models.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static lm_status list_checkpoints(const lm_env *env, lm_strlist *out, lm_error *err)
{
    return lm_sd3_models_list(env, LM_SD3_FOLDER_CHECKPOINTS, out, err);
}

static lm_status list_diffusion_models(const lm_env *env, lm_strlist *out, lm_error *err)
{
    return lm_sd3_models_list(env, LM_SD3_FOLDER_DIFFUSION_MODELS, out, err);
}

static lm_status list_vaes(const lm_env *env, lm_strlist *out, lm_error *err)
{
    return lm_sd3_models_list(env, LM_SD3_FOLDER_VAE, out, err);
}

/* A MODEL value around a new reference to the MMDiT of path, with SD3's defaults. */
static lm_status model_from(const char *path, lm_backend *be, lm_value **out, lm_error *err)
{
    lm_sd3_part *part = NULL;
    lm_status st = lm_sd3_models_acquire(&part, path, LM_SD3_PART_MMDIT, be, err);
    if (st != LM_OK)
        return st;
    lm_sd3_model *m = lm_calloc(1, sizeof(*m));
    if (!m) {
        lm_sd3_part_release(part);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory making a MODEL");
    }
    m->mmdit = part;
    m->sampling = LM_MODEL_SAMPLING_SD3;
    *out = lm_sd3_model_value(m);
    return *out ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

static lm_status vae_from(const char *path, const char *name, bool has_vae, lm_backend *be,
                          lm_value **out, lm_error *err)
{
    lm_sd3_vae *v = lm_calloc(1, sizeof(*v));
    if (!v)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory making a VAE");
    snprintf(v->source, sizeof(v->source), "%.120s", name);
    lm_status st = has_vae ? lm_sd3_models_acquire(&v->vae, path, LM_SD3_PART_VAE, be, err) : LM_OK;
    if (st != LM_OK) {
        lm_sd3_vae_free(v);
        return st;
    }
    *out = lm_sd3_vae_value(v);
    return *out ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* The CLIP of an all-in-one checkpoint: whichever encoders it holds (maybe none). */
static lm_status clip_from(const char *path, const char *name, const lm_sd3_file_info *info,
                           lm_backend *be, lm_value **out, lm_error *err)
{
    lm_sd3_clip *c = lm_calloc(1, sizeof(*c));
    if (!c)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory making a CLIP");
    snprintf(c->source, sizeof(c->source), "checkpoint %.100s", name);
    char vocab[PATH_MAX];
    struct stat sb;
    if (lm_sd3_diffusers_is_folder(path) &&
        lm_path_join(vocab, sizeof(vocab), path, "tokenizer/vocab.json") && stat(vocab, &sb) == 0)
        lm_strlcpy(c->tokenizer_dir, path, sizeof(c->tokenizer_dir)); /* its own tokenizers */
    lm_status st = LM_OK;
    if (info->has[LM_SD3_CLIP_L] && !info->clip_standalone)
        st = lm_sd3_models_acquire(&c->clip_l, path, LM_SD3_PART_CLIP_L, be, err);
    if (st == LM_OK && info->has[LM_SD3_CLIP_G])
        st = lm_sd3_models_acquire(&c->clip_g, path, LM_SD3_PART_CLIP_G, be, err);
    if (st == LM_OK && info->has[LM_SD3_T5XXL] && !lm_sd3_models_skip_t5())
        st = lm_sd3_models_acquire(&c->t5, path, LM_SD3_PART_T5, be, err);
    if (st != LM_OK) {
        lm_sd3_clip_free(c);
        return st;
    }
    *out = lm_sd3_clip_value(c);
    return *out ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

static void unref_outputs(lm_value **out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        lm_value_unref(out[i]);
        out[i] = NULL;
    }
}

/* ---- CheckpointLoaderSimple ---- */

enum { CK_NAME, CK_COUNT };

static const lm_input_def ckpt_in[CK_COUNT] = {
    [CK_NAME] = { "ckpt_name", LM_TYPE_STRING, .choices_fn = list_checkpoints,
                  .help = "A .safetensors checkpoint, or a diffusers model folder, in "
                          "models/checkpoints." },
};

static const lm_output_def ckpt_out[3] = {
    { "MODEL", LM_TYPE_MODEL, "The diffusion model (MMDiT), model sampling shift 3." },
    { "CLIP", LM_TYPE_CLIP, "The text encoders the file holds; may be none." },
    { "VAE", LM_TYPE_VAE, "The VAE the file holds." },
};

static lm_status ckpt_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    const char *name = lm_value_as_string(in[CK_NAME]);
    char path[PATH_MAX];
    lm_sd3_file_info info;
    lm_status st = lm_sd3_models_path(lm_ctx_env(ctx), LM_SD3_FOLDER_CHECKPOINTS, name, "ckpt_name",
                                      path, sizeof(path), err);
    if (st == LM_OK)
        st = lm_sd3_models_probe(path, &info, err);
    if (st == LM_OK && !info.has[LM_SD3_MMDIT]) {
        lm_errorf(err, LM_EINVAL, "model_component_missing",
                  "checkpoint %.100s holds no diffusion model (MMDiT)", name);
        lm_error_hint(err, "load text encoders with TripleCLIPLoader and a VAE with VAELoader");
        st = LM_EINVAL;
    }
    /* The denoiser and the VAE first: on a small GPU the memory policy then lets the text
     * encoders, which run once per prompt, be the ones that stay on the CPU. */
    lm_backend *be = lm_ctx_env(ctx)->backend;
    if (st == LM_OK)
        st = model_from(path, be, &out[0], err);
    if (st == LM_OK)
        st = vae_from(path, name, info.has[LM_SD3_VAE], be, &out[2], err);
    if (st == LM_OK)
        st = clip_from(path, name, &info, be, &out[1], err);
    if (st != LM_OK)
        unref_outputs(out, 3);
    return st;
}

const lm_node_def lm_node_checkpoint_loader_simple = {
    .name = "CheckpointLoaderSimple",
    .display_name = "Load Checkpoint",
    .category = "loaders",
    .description = "Loads an SD3 / SD3.5 checkpoint: its diffusion model, the text encoders "
                   "it holds and its VAE. Loaded weights are shared by every job.",
    .inputs = ckpt_in,
    .n_inputs = CK_COUNT,
    .outputs = ckpt_out,
    .n_outputs = 3,
    .run = ckpt_run,
};

/* ---- UNETLoader ---- */

enum { UN_NAME, UN_DTYPE, UN_COUNT };

static const char *const weight_dtypes[] = { "default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2",
                                             NULL };

static const lm_input_def unet_in[UN_COUNT] = {
    [UN_NAME] = { "unet_name", LM_TYPE_STRING, .choices_fn = list_diffusion_models,
                  .help = "A diffusion model file in models/diffusion_models (or unet)." },
    [UN_DTYPE] = { "weight_dtype", LM_TYPE_STRING, .choices = weight_dtypes,
                   .help = "Accepted for ComfyUI workflows; Loom computes with the weights "
                           "in the dtype the file stores." },
};

static const lm_output_def model_out[1] = { { "MODEL", LM_TYPE_MODEL, NULL } };

static lm_status unet_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    char path[PATH_MAX];
    lm_status st =
        lm_sd3_models_path(lm_ctx_env(ctx), LM_SD3_FOLDER_DIFFUSION_MODELS,
                           lm_value_as_string(in[UN_NAME]), "unet_name", path, sizeof(path), err);
    if (st == LM_OK)
        st = model_from(path, lm_ctx_env(ctx)->backend, &out[0], err);
    return st;
}

const lm_node_def lm_node_unet_loader = {
    .name = "UNETLoader",
    .display_name = "Load Diffusion Model",
    .category = "advanced/loaders",
    .description = "Loads the diffusion model (MMDiT) of a file, e.g. sd3.5_medium.safetensors.",
    .inputs = unet_in,
    .n_inputs = UN_COUNT,
    .outputs = model_out,
    .n_outputs = 1,
    .run = unet_run,
};

/* ---- VAELoader ---- */

enum { VL_NAME, VL_COUNT };

static const lm_input_def vae_in[VL_COUNT] = {
    [VL_NAME] = { "vae_name", LM_TYPE_STRING, .choices_fn = list_vaes,
                  .help = "A VAE file in models/vae (a checkpoint holding one also works)." },
};

static const lm_output_def vae_out[1] = { { "VAE", LM_TYPE_VAE, NULL } };

static lm_status vae_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    const char *name = lm_value_as_string(in[VL_NAME]);
    char path[PATH_MAX];
    lm_status st = lm_sd3_models_path(lm_ctx_env(ctx), LM_SD3_FOLDER_VAE, name, "vae_name", path,
                                      sizeof(path), err);
    if (st == LM_OK)
        st = vae_from(path, name, true, lm_ctx_env(ctx)->backend, &out[0], err);
    return st;
}

const lm_node_def lm_node_vae_loader = {
    .name = "VAELoader",
    .display_name = "Load VAE",
    .category = "loaders",
    .description = "Loads an SD3 VAE file.",
    .inputs = vae_in,
    .n_inputs = VL_COUNT,
    .outputs = vae_out,
    .n_outputs = 1,
    .run = vae_run,
};
