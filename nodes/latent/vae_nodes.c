/* nodes/latent/vae_nodes.c — VAEDecode, VAEEncode, VAEDecodeTiled, VAEEncodeTiled: between
 * IMAGE ([B, H, W, 3] in [0, 1]) and LATENT (raw VAE space, ComfyUI's convention).
 *
 * LATENT values hold what the VAE makes (ComfyUI's VAE.encode output); the SD3 scaling
 * (x - 0.0609) * 1.5305 happens inside the sampler, as in ComfyUI. The VAE module speaks
 * scaled latents, so decode scales first and encode unscales its result. Encode uses the
 * posterior mean (deterministic, as ComfyUI) and first crops the picture to multiples of
 * 8 around its centre (ComfyUI's vae_encode_crop_pixels: offset (size % 8) / 2). Alpha is
 * dropped. The tiled nodes take ComfyUI's temporal inputs and ignore them (images only). */
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/sd3/models.h"

#include <stdio.h>

static const lm_vae_config sd3_latent = { .scale = LM_VAE_SD3_SCALE, .shift = LM_VAE_SD3_SHIFT };

static lm_status vae_get(const lm_value *v, const lm_vae **out, lm_error *err)
{
    const lm_sd3_vae *o = lm_sd3_vae_of(v);
    *out = o ? lm_sd3_part_vae(o->vae) : NULL;
    if (*out)
        return LM_OK;
    lm_errorf(err, LM_EINVAL, "vae_missing", "this VAE input holds no VAE (%.120s has none)",
              o ? o->source : "?");
    lm_error_hint(err, "load one with VAELoader and link it here");
    lm_error_at_node(err, NULL, NULL, "vae");
    return LM_EINVAL;
}

static lm_status on_vae_event(const lm_vae_event *ev, void *user)
{
    lm_ctx *ctx = user;
    if (lm_ctx_cancelled(ctx))
        return LM_ECANCELLED;
    if (ev->tiles > 1)
        lm_ctx_progress(ctx, ev->tile + 1, ev->tiles);
    else
        lm_ctx_progress(ctx, ev->step, ev->steps);
    return LM_OK;
}

/* LATENT samples -> IMAGE; opts NULL = untiled. */
static lm_status decode(lm_ctx *ctx, const lm_value *samples, const lm_value *vae_v,
                        const lm_vae_tile_opts *opts, lm_value **out, lm_error *err)
{
    const lm_vae *vae = NULL;
    const lm_tensor *raw = lm_value_tensor(samples);
    lm_tensor *scaled = NULL, *img = NULL, *comfy = NULL;
    lm_status st = vae_get(vae_v, &vae, err);
    if (st == LM_OK && (raw->ndim != 4 || raw->shape[1] != lm_vae_config_of(vae)->z_channels)) {
        char d[96];
        lm_tensor_describe(raw, d, sizeof(d));
        lm_errorf(err, LM_EINVAL, "bad_latent",
                  "samples is %s but this VAE decodes %d-channel "
                  "latents [B, %d, h, w]",
                  d, lm_vae_config_of(vae)->z_channels, lm_vae_config_of(vae)->z_channels);
        lm_error_at_node(err, NULL, NULL, "samples");
        st = LM_EINVAL;
    }
    if (st == LM_OK)
        st = lm_vae_process_in(&sd3_latent, raw, &scaled, err);
    if (st == LM_OK)
        st = opts ? lm_vae_decode_tiled(vae, scaled, opts, &img, on_vae_event, ctx, err)
                  : lm_vae_decode(vae, scaled, &img, on_vae_event, ctx, err);
    if (st == LM_OK)
        st = lm_vae_image_to_comfy(img, &comfy, err);
    if (st == LM_OK) {
        out[0] = lm_value_image(comfy);
        st = out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
    }
    lm_tensor_free(scaled);
    lm_tensor_free(img);
    return st;
}

/* The middle of image [B, H, W, C] cut to multiples of f, contiguous. */
static lm_status crop_to(const lm_tensor *image, int f, lm_tensor **out, lm_error *err)
{
    lm_tensor *a = NULL, *b = NULL;
    int64_t h = image->shape[1] / f * f, w = image->shape[2] / f * f;
    int64_t top = image->shape[1] % f / 2, left = image->shape[2] % f / 2;
    if (h == 0 || w == 0) {
        char d[96];
        lm_tensor_describe(image, d, sizeof(d));
        lm_errorf(err, LM_EINVAL, "bad_image",
                  "pixels is %s; the VAE needs at least %d x %d "
                  "pixels",
                  d, f, f);
        lm_error_at_node(err, NULL, NULL, "pixels");
        return LM_EINVAL;
    }
    lm_status st = lm_tensor_view_slice(&a, image, 1, top, top + h, err);
    if (st == LM_OK)
        st = lm_tensor_view_slice(&b, a, 2, left, left + w, err);
    if (st == LM_OK)
        st = lm_tensor_contiguous(out, b, err);
    lm_tensor_free(a);
    lm_tensor_free(b);
    return st;
}

/* IMAGE pixels -> LATENT (raw posterior mean); opts NULL = untiled. */
static lm_status encode(lm_ctx *ctx, const lm_value *pixels, const lm_value *vae_v,
                        const lm_vae_tile_opts *opts, lm_value **out, lm_error *err)
{
    const lm_vae *vae = NULL;
    lm_tensor *cropped = NULL, *img = NULL, *mean = NULL, *raw = NULL;
    lm_status st = vae_get(vae_v, &vae, err);
    if (st == LM_OK)
        st = crop_to(lm_value_tensor(pixels), lm_vae_config_of(vae)->factor, &cropped, err);
    if (st == LM_OK)
        st = lm_vae_image_from_comfy(cropped, &img, err); // [B, 3, H, W]
    if (st == LM_OK)
        st = opts ? lm_vae_encode_tiled(vae, img, opts, NULL, &mean, NULL, on_vae_event, ctx, err)
                  : lm_vae_encode(vae, img, NULL, &mean, NULL, on_vae_event, ctx, err);
    if (st == LM_OK)
        st = lm_vae_process_out(&sd3_latent, mean, &raw, err); // [B, 16, H/8, W/8]
    if (st == LM_OK) {
        out[0] = lm_value_latent(raw, NULL);
        st = out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
    }
    lm_tensor_free(cropped);
    lm_tensor_free(img);
    lm_tensor_free(mean);
    return st;
}

static const lm_output_def image_out[1] = { { "IMAGE", LM_TYPE_IMAGE, NULL } };
static const lm_output_def latent_out[1] = { { "LATENT", LM_TYPE_LATENT, NULL } };

#define SAMPLES_HELP  "The latent to decode."
#define PIXELS_HELP   "The images to encode; cropped to multiples of 8 around the centre."
#define VAE_HELP      "The VAE."
#define TEMPORAL_HELP "For video VAEs in ComfyUI; accepted and ignored (images only)."

/* ---- VAEDecode / VAEEncode ---- */

enum { DE_SAMPLES, DE_VAE, DE_COUNT };

static const lm_input_def decode_in[DE_COUNT] = {
    [DE_SAMPLES] = { "samples", LM_TYPE_LATENT, .help = SAMPLES_HELP },
    [DE_VAE] = { "vae", LM_TYPE_VAE, .help = VAE_HELP },
};

static lm_status decode_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    return decode(ctx, in[DE_SAMPLES], in[DE_VAE], NULL, out, err);
}

const lm_node_def lm_node_vae_decode = {
    .name = "VAEDecode",
    .display_name = "VAE Decode",
    .category = "latent",
    .description = "Decodes latents into images.",
    .inputs = decode_in,
    .n_inputs = DE_COUNT,
    .outputs = image_out,
    .n_outputs = 1,
    .run = decode_run,
};

enum { EN_PIXELS, EN_VAE, EN_COUNT };

static const lm_input_def encode_in[EN_COUNT] = {
    [EN_PIXELS] = { "pixels", LM_TYPE_IMAGE, .help = PIXELS_HELP },
    [EN_VAE] = { "vae", LM_TYPE_VAE, .help = VAE_HELP },
};

static lm_status encode_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    return encode(ctx, in[EN_PIXELS], in[EN_VAE], NULL, out, err);
}

const lm_node_def lm_node_vae_encode = {
    .name = "VAEEncode",
    .display_name = "VAE Encode",
    .category = "latent",
    .description = "Encodes images into latents (the VAE's posterior mean), e.g. for img2img.",
    .inputs = encode_in,
    .n_inputs = EN_COUNT,
    .outputs = latent_out,
    .n_outputs = 1,
    .run = encode_run,
};

/* ---- tiled ---- */

enum { DT_SAMPLES, DT_VAE, DT_TILE, DT_OVERLAP, DT_TSIZE, DT_TOVERLAP, DT_COUNT };

static const lm_input_def decode_tiled_in[DT_COUNT] = {
    [DT_SAMPLES] = { "samples", LM_TYPE_LATENT, .help = SAMPLES_HELP },
    [DT_VAE] = { "vae", LM_TYPE_VAE, .help = VAE_HELP },
    [DT_TILE] = { "tile_size", LM_TYPE_INT, .i = { .def = 512, .min = 64, .max = 4096, .step = 32 },
                  .help = "Tile edge in image pixels." },
    [DT_OVERLAP] = { "overlap", LM_TYPE_INT, .i = { .def = 64, .min = 0, .max = 4096, .step = 32 },
                     .help = "Pixels tiles overlap by; at most a quarter of the tile is used." },
    [DT_TSIZE] = { "temporal_size", LM_TYPE_INT,
                   .i = { .def = 64, .min = 8, .max = 4096, .step = 4 }, .help = TEMPORAL_HELP },
    [DT_TOVERLAP] = { "temporal_overlap", LM_TYPE_INT,
                      .i = { .def = 8, .min = 4, .max = 4096, .step = 4 }, .help = TEMPORAL_HELP },
};

static lm_vae_tile_opts tile_opts(lm_value *const *in, int tile, int overlap)
{
    return (lm_vae_tile_opts){ .tile_size = (int)lm_value_as_int(in[tile]),
                               .overlap = (int)lm_value_as_int(in[overlap]) };
}

static lm_status decode_tiled_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    lm_vae_tile_opts o = tile_opts(in, DT_TILE, DT_OVERLAP);
    return decode(ctx, in[DT_SAMPLES], in[DT_VAE], &o, out, err);
}

const lm_node_def lm_node_vae_decode_tiled = {
    .name = "VAEDecodeTiled",
    .display_name = "VAE Decode (Tiled)",
    .category = "_for_testing",
    .description = "Decodes latents tile by tile: large images in bounded memory.",
    .inputs = decode_tiled_in,
    .n_inputs = DT_COUNT,
    .outputs = image_out,
    .n_outputs = 1,
    .run = decode_tiled_run,
};

enum { ET_PIXELS, ET_VAE, ET_TILE, ET_OVERLAP, ET_TSIZE, ET_TOVERLAP, ET_COUNT };

static const lm_input_def encode_tiled_in[ET_COUNT] = {
    [ET_PIXELS] = { "pixels", LM_TYPE_IMAGE, .help = PIXELS_HELP },
    [ET_VAE] = { "vae", LM_TYPE_VAE, .help = VAE_HELP },
    [ET_TILE] = { "tile_size", LM_TYPE_INT, .i = { .def = 512, .min = 64, .max = 4096, .step = 64 },
                  .help = "Tile edge in image pixels." },
    [ET_OVERLAP] = { "overlap", LM_TYPE_INT, .i = { .def = 64, .min = 0, .max = 4096, .step = 32 },
                     .help = "Pixels tiles overlap by; at most a quarter of the tile is used." },
    [ET_TSIZE] = { "temporal_size", LM_TYPE_INT,
                   .i = { .def = 64, .min = 8, .max = 4096, .step = 4 }, .help = TEMPORAL_HELP },
    [ET_TOVERLAP] = { "temporal_overlap", LM_TYPE_INT,
                      .i = { .def = 8, .min = 4, .max = 4096, .step = 4 }, .help = TEMPORAL_HELP },
};

static lm_status encode_tiled_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    lm_vae_tile_opts o = tile_opts(in, ET_TILE, ET_OVERLAP);
    return encode(ctx, in[ET_PIXELS], in[ET_VAE], &o, out, err);
}

const lm_node_def lm_node_vae_encode_tiled = {
    .name = "VAEEncodeTiled",
    .display_name = "VAE Encode (Tiled)",
    .category = "_for_testing",
    .description = "Encodes images tile by tile: large images in bounded memory.",
    .inputs = encode_tiled_in,
    .n_inputs = ET_COUNT,
    .outputs = latent_out,
    .n_outputs = 1,
    .run = encode_tiled_run,
};
