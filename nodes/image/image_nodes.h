/* nodes/image/image_nodes.h — what the image node files share (semi-private to
 * nodes/image/): the IMAGE output descriptor, reading IMAGE inputs, allocating images
 * within a size limit, and the resampler behind ImageScale, ImageBlend and LatentUpscale.
 *
 * Images are f32 [B, H, W, C] on the CPU (core/value.h). Every function returning a tensor
 * gives the caller ownership (lm_tensor_free). */
#ifndef LM_NODES_IMAGE_IMAGE_NODES_H
#define LM_NODES_IMAGE_IMAGE_NODES_H

#include "core/base/error.h"
#include "core/exec.h"
#include "core/registry.h"
#include "core/tensor/tensor.h"

#include <stdbool.h>
#include <stdint.h>

/* Largest image (or batch) a node makes: 2^31 floats, 8 GiB. */
#define LM_IMAGE_NODES_MAX_ELEMS ((int64_t)1 << 31)

extern const lm_output_def lm_image_nodes__image_out[1];

/* An IMAGE value's pixels as contiguous host f32 [B,H,W,C]: *data points into the value's
 * tensor, or into *copy (which the caller frees) when a conversion was needed. `input`
 * names the input in errors. */
lm_status lm_image_nodes__pixels(const lm_value *image, const char *input, lm_tensor **copy,
                                 const float **data, const lm_tensor **shape, lm_error *err);

/* A new uninitialised f32 [b,h,w,c] image; LM_ELIMIT over LM_IMAGE_NODES_MAX_ELEMS. */
lm_status lm_image_nodes__new(lm_tensor **out, int64_t b, int64_t h, int64_t w, int64_t c,
                              lm_error *err);

typedef enum {
    LM_RESAMPLE_NEAREST_EXACT, /* torch "nearest-exact" */
    LM_RESAMPLE_BILINEAR,      /* torch "bilinear", align_corners=False, no antialias */
    LM_RESAMPLE_AREA,          /* torch "area": adaptive average pooling */
    LM_RESAMPLE_BICUBIC,       /* torch "bicubic", a = -0.75, borders clamped */
    LM_RESAMPLE_LANCZOS,       /* Lanczos a = 3, widened when shrinking (antialiased) */
    LM_RESAMPLE_BISLERP,       /* ComfyUI "bislerp": slerp of each pixel's C-vector */
} lm_resample;

/* Resizes src (contiguous f32 [B,H,W,C] at `data`) to width x height (both >= 1), first
 * cropping the middle to the new aspect ratio when center_crop (ComfyUI's
 * common_upscale). Polls lm_ctx_cancelled(ctx) between images (ctx may be NULL).
 * LM_RESAMPLE_BISLERP is comfy.utils.bislerp: along the width, then along the height, each
 * output pixel is the spherical interpolation of the C-vectors of two source pixels (norms
 * interpolated linearly), at the positions and ratios torch's bilinear mapping gives; it
 * is meant for latents (an NCHW latent is this NHWC image with C = its channels). */
lm_status lm_image_nodes__resize(lm_ctx *ctx, const lm_tensor *shape, const float *data,
                                 int64_t width, int64_t height, lm_resample method,
                                 bool center_crop, lm_tensor **out, lm_error *err);

#endif
