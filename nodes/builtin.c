/* nodes/builtin.c — the one list of built-in node descriptors.
 * `loom nodes`, /object_info and docs/nodes.md are generated from the registry this fills;
 * a node exists for users exactly when it is listed here. Grouped by family, one section
 * per directory of nodes/. */
#include "nodes/builtin.h"

/* nodes/image/ */
extern const lm_node_def lm_node_empty_image, lm_node_load_image, lm_node_save_image,
    lm_node_preview_image, lm_node_image_scale, lm_node_image_invert, lm_node_image_blend;

/* nodes/util/ */
extern const lm_node_def lm_node_primitive_int, lm_node_primitive_float, lm_node_primitive_string,
    lm_node_primitive_string_multiline, lm_node_primitive_boolean, lm_node_int_math,
    lm_node_float_math, lm_node_string_format, lm_node_string_concatenate;

/* nodes/sd3 nodes: nodes/loaders/, nodes/conditioning/, nodes/sampling/, nodes/latent/ */
extern const lm_node_def lm_node_checkpoint_loader_simple, lm_node_unet_loader, lm_node_vae_loader,
    lm_node_triple_clip_loader, lm_node_dual_clip_loader, lm_node_clip_loader,
    lm_node_clip_text_encode, lm_node_clip_text_encode_sd3, lm_node_conditioning_zero_out,
    lm_node_conditioning_combine, lm_node_conditioning_set_timestep_range, lm_node_ksampler,
    lm_node_ksampler_advanced, lm_node_model_sampling_sd3, lm_node_skip_layer_guidance_sd3,
    lm_node_empty_sd3_latent_image, lm_node_latent_upscale, lm_node_set_latent_noise_mask,
    lm_node_vae_decode, lm_node_vae_encode, lm_node_vae_decode_tiled, lm_node_vae_encode_tiled;

static const lm_node_def *const builtin_nodes[] = {
    /* image */
    &lm_node_empty_image,
    &lm_node_load_image,
    &lm_node_save_image,
    &lm_node_preview_image,
    &lm_node_image_scale,
    &lm_node_image_invert,
    &lm_node_image_blend,
    /* util */
    &lm_node_primitive_int,
    &lm_node_primitive_float,
    &lm_node_primitive_string,
    &lm_node_primitive_string_multiline,
    &lm_node_primitive_boolean,
    &lm_node_int_math,
    &lm_node_float_math,
    &lm_node_string_format,
    &lm_node_string_concatenate,
    /* sd3 nodes */
    &lm_node_checkpoint_loader_simple,
    &lm_node_unet_loader,
    &lm_node_vae_loader,
    &lm_node_triple_clip_loader,
    &lm_node_dual_clip_loader,
    &lm_node_clip_loader,
    &lm_node_clip_text_encode,
    &lm_node_clip_text_encode_sd3,
    &lm_node_conditioning_zero_out,
    &lm_node_conditioning_combine,
    &lm_node_conditioning_set_timestep_range,
    &lm_node_empty_sd3_latent_image,
    &lm_node_latent_upscale,
    &lm_node_set_latent_noise_mask,
    &lm_node_model_sampling_sd3,
    &lm_node_skip_layer_guidance_sd3,
    &lm_node_ksampler,
    &lm_node_ksampler_advanced,
    &lm_node_vae_decode,
    &lm_node_vae_encode,
    &lm_node_vae_decode_tiled,
    &lm_node_vae_encode_tiled,
};

lm_status lm_nodes_register_builtin(lm_registry *reg, lm_error *err)
{
    for (size_t i = 0; i < LM_COUNTOF(builtin_nodes); i++) {
        lm_status st = lm_registry_add(reg, builtin_nodes[i], err);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}
