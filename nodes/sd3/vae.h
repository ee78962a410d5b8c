/* nodes/sd3/vae.h — the SD3 / SD3.5 16-channel VAE: image <-> latent, whole or in tiles.
 *
 * lm_vae_load() infers the configuration from tensor names and shapes (no sizes are
 * hard-coded, so the tiny test VAEs and the real one load through the same code), then binds
 * every tensor once, checking its shape: a missing or mis-shaped tensor is an error naming
 * the tensor and the file. All-in-one checkpoints ("first_stage_model." prefix) and
 * standalone VAE files (prefix "") both work; find the weights with lm_sd3_detect().
 *
 * Latent spaces (SD3LatentFormat of the reference): "raw" is what the VAE makes and eats;
 * "scaled" is what the MMDiT and the samplers see: scaled = (raw - shift) * scale,
 * raw = scaled / scale + shift. lm_vae_decode() takes scaled latents and lm_vae_encode()
 * returns scaled latents, like ComfyUI's VAEDecode/VAEEncode on an SD3 model.
 *
 * Images at this boundary are [B, 3, H, W] in [-1, 1] (the decoder's output is NOT clamped);
 * lm_vae_image_from_comfy()/_to_comfy() convert from/to ComfyUI's IMAGE [B, H, W, 3] in
 * [0, 1] (clamped on the way out).
 *
 * Memory: the untiled paths hold a few activations of the full size (the decoder's last
 * level at full resolution dominates: width(level 0) x H x W floats). The tiled paths hold
 * activations of one tile plus the output, whatever the image size.
 *
 * Devices (docs/models.md, "Devices"): lm_vae_load_on() with a device backend copies every
 * weight there once, in its stored dtype, and the passes compute there. The boundary is host
 * memory: decode and encode (tiled or not) take their input on the host or on the VAE's
 * backend and return host (CPU) F32 tensors; only the callback sees tensors on the device.
 * lm_vae_process_in/_out and the ComfyUI conversions touch no model: they compute on their
 * input's backend.
 *
 * Ownership: lm_vae_load() returns an object freed with lm_vae_free(). On the CPU the weights
 * stay in the checkpoint's mapping (the lm_sd3_weights' safetensors set may be closed after
 * the load: the tensors keep the mapping alive). Every tensor returned through `**out` is the
 * caller's (lm_tensor_free). Thread safety: an lm_vae is read-only after the load, so several
 * threads may decode and encode with one at the same time. */
#ifndef LM_NODES_SD3_VAE_H
#define LM_NODES_SD3_VAE_H

#include "core/base/error.h"
#include "core/tensor/rng.h"
#include "core/tensor/tensor.h"
#include "nodes/sd3/weights.h"

#include <stdbool.h>
#include <stddef.h>

#define LM_VAE_MAX_LEVELS 8 /* resolution levels; SD3 has 4 */
#define LM_VAE_MAX_BLOCKS 8 /* res blocks per level; SD3 has 2 (encoder) and 3 (decoder) */

/* SD3LatentFormat's constants (the reference's sd3_impls.py and ComfyUI's latent_formats.SD3):
 * they are not stored in checkpoints. */
#define LM_VAE_SD3_SCALE 1.5305f
#define LM_VAE_SD3_SHIFT 0.0609f

/* One half of the VAE (encoder or decoder), as read from the checkpoint. */
typedef struct {
    int levels;                                          /* resolution levels */
    int width[LM_VAE_MAX_LEVELS];                        /* channels of level i's res blocks */
    int blocks[LM_VAE_MAX_LEVELS];                       /* res blocks of level i */
    bool shortcut[LM_VAE_MAX_LEVELS][LM_VAE_MAX_BLOCKS]; /* block has a 1x1 nin_shortcut */
    bool resample[LM_VAE_MAX_LEVELS];                    /* down/upsample after level i */
    int mid_width;                                       /* channels of the mid blocks */
    bool mid_attn;                                       /* mid.attn_1 present */
    int in_channels, stem_width;                         /* conv_in's input and output */
    int out_channels;                                    /* conv_out's output */
} lm_vae_half;

typedef struct {
    int image_channels; /* 3 */
    int z_channels;     /* 16: latent channels (the encoder makes 2x: mean and logvar) */
    int ch;             /* base width: encoder.conv_in's output channels */
    int ch_mult[LM_VAE_MAX_LEVELS]; /* encoder width of level i / ch (0 if not a multiple) */
    int factor;                     /* image pixels per latent pixel along an axis: 8 */
    lm_vae_half encoder, decoder;
    /* Not in the checkpoint: every SD3-family VAE (the reference's and ComfyUI's) uses
     * GroupNorm with 32 groups and eps 1e-6; each width must be a multiple of `groups`. */
    int groups;
    float eps;
    float scale, shift; /* LM_VAE_SD3_SCALE, LM_VAE_SD3_SHIFT */
} lm_vae_config;

/* Infers the configuration of the VAE in `w` (see the file top). Errors name the tensor and
 * the file. Used by lm_vae_load; exposed for `loom tensors`-style reports and tests. */
lm_status lm_vae_config_infer(lm_vae_config *cfg, const lm_sd3_weights *w, lm_error *err);

typedef struct lm_vae lm_vae;

/* Loads the VAE found in `w` (component LM_SD3_VAE of lm_sd3_detect) on the CPU. */
lm_status lm_vae_load(lm_vae **out, const lm_sd3_weights *w, lm_error *err);
/* Same, computing on backend `be`. NULL or a host backend: lm_vae_load() exactly (the
 * weights stay in the mapping). A device: every weight is copied there once in its stored
 * dtype; when the device is short of memory the load fails with LM_ENOMEM, a message naming
 * the VAE, and nothing left allocated. */
lm_status lm_vae_load_on(lm_vae **out, const lm_sd3_weights *w, lm_backend *be, lm_error *err);
void lm_vae_free(lm_vae *vae);                            /* NULL is a no-op */
const lm_vae_config *lm_vae_config_of(const lm_vae *vae); /* borrowed, lives with vae */
/* Where the VAE computes: its device, or the CPU backend. Borrowed. */
lm_backend *lm_vae_backend(const lm_vae *vae);
/* Bytes of weights copied to the device (their stored dtype); 0 on the CPU. */
size_t lm_vae_device_bytes(const lm_vae *vae);

/* Progress, cancellation and inspection. The callback runs on the calling thread after each
 * stage: "latent_raw" (decode input), "conv_in", "<down|up><i>.block<j>" (each res block),
 * "<down|up><i>" (a level, after its down/upsample), "mid", "conv_out"; then, for encode,
 * "moments" (cat(mean, logvar)), "mean", "logvar" (both raw, logvar clamped), "sample" (raw,
 * when sampling). `tensor` is that stage's output (borrowed: valid during the call only; in
 * tiled runs, the current tile's) on the VAE's backend: read it with lm_tensor_to_f32_host,
 * never lm_tensor_data. Returning anything but LM_OK stops the run, which then fails with
 * that status (LM_ECANCELLED: kind "interrupted"). */
typedef struct {
    const char *stage;
    const lm_tensor *tensor;
    int step, steps;         /* this is step `step` (1-based) of `steps` */
    int tile, tiles;         /* 0-based tile index and count (0 and 1 when not tiled) */
    size_t max_tensor_bytes; /* largest activation made so far in this run */
} lm_vae_event;
typedef lm_status (*lm_vae_callback)(const lm_vae_event *ev, void *user);

/* latent: scaled latents [B, z, h, w] (any float dtype and strides; on the host or the
 * VAE's backend) -> *image_out [B, 3, factor*h, factor*w] F32 on the host, about [-1, 1],
 * not clamped. cb may be NULL. */
lm_status lm_vae_decode(const lm_vae *vae, const lm_tensor *latent, lm_tensor **image_out,
                        lm_vae_callback cb, void *user, lm_error *err);

/* image [B, 3, H, W] in [-1, 1] (on the host or the VAE's backend) -> *mean_out: scaled
 * posterior mean [B, z, H/f, W/f] (f = factor, sizes rounded down) on the host, what img2img
 * starts from. With rng, *sample_out (may be NULL
 * otherwise) receives the scaled sample mean + exp(logvar/2) * noise, noise being one
 * torch.randn of the mean's size from rng (the reference's SDVAE.encode after
 * torch.manual_seed(seed) is reproduced by lm_rng_new(seed)). */
lm_status lm_vae_encode(const lm_vae *vae, const lm_tensor *image, lm_rng *rng,
                        lm_tensor **mean_out, lm_tensor **sample_out, lm_vae_callback cb,
                        void *user, lm_error *err);

/* Tiles, in image pixels, like ComfyUI's VAEDecodeTiled / VAEEncodeTiled (whose temporal
 * parameters have no meaning here). Tiles overlap by at least `overlap` pixels and are
 * blended with linear feathering across the overlap; as in ComfyUI, an overlap above a
 * quarter of the tile is lowered to tile_size / 4. An image no larger than one tile is done
 * whole, giving exactly the untiled result. */
typedef struct {
    int tile_size; /* pixels, >= 2 * factor; ComfyUI's default 512 */
    int overlap;   /* pixels, >= 0; ComfyUI's default 64 */
} lm_vae_tile_opts;
#define LM_VAE_TILE_OPTS_DEFAULT ((lm_vae_tile_opts){ .tile_size = 512, .overlap = 64 })

lm_status lm_vae_decode_tiled(const lm_vae *vae, const lm_tensor *latent,
                              const lm_vae_tile_opts *opts, lm_tensor **image_out,
                              lm_vae_callback cb, void *user, lm_error *err);
lm_status lm_vae_encode_tiled(const lm_vae *vae, const lm_tensor *image,
                              const lm_vae_tile_opts *opts, lm_rng *rng, lm_tensor **mean_out,
                              lm_tensor **sample_out, lm_vae_callback cb, void *user,
                              lm_error *err);

/* SD3LatentFormat: process_in(raw) = (raw - shift) * scale; process_out(scaled) =
 * scaled / scale + shift. Results are new F32 tensors. */
lm_status lm_vae_process_in(const lm_vae_config *cfg, const lm_tensor *raw, lm_tensor **out,
                            lm_error *err);
lm_status lm_vae_process_out(const lm_vae_config *cfg, const lm_tensor *scaled, lm_tensor **out,
                             lm_error *err);

/* ComfyUI IMAGE [B, H, W, C] in [0, 1] (C >= 3; extra channels such as alpha are dropped)
 * -> [B, 3, H, W] in [-1, 1]. */
lm_status lm_vae_image_from_comfy(const lm_tensor *image, lm_tensor **out, lm_error *err);
/* [B, 3, H, W] in about [-1, 1] -> ComfyUI IMAGE [B, H, W, 3] = clamp((x + 1) / 2, 0, 1). */
lm_status lm_vae_image_to_comfy(const lm_tensor *image, lm_tensor **out, lm_error *err);

#endif
