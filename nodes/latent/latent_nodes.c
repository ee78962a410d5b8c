/* nodes/latent/latent_nodes.c — EmptySD3LatentImage, LatentUpscale and SetLatentNoiseMask.
 *
 * LATENT values hold raw VAE-space latents [B, 16, h, w] (ComfyUI's convention; see
 * nodes/sampling/ksampler.c for where the SD3 scaling happens). EmptySD3LatentImage is
 * zeros, exactly as ComfyUI's node: not the 0.0609 shift of an encoded grey, because the
 * sampler leaves an all-zero latent unshifted. LatentUpscale resizes with the image nodes'
 * resampler (the same torch-compatible filters as ImageScale, plus ComfyUI's bislerp, which
 * slerps each pixel's channel vector), the latent seen as an NHWC image; the noise mask is
 * passed on unchanged, as ComfyUI does. SetLatentNoiseMask attaches a MASK as the noise
 * mask, reshaped to [N, 1, H, W] as ComfyUI stores it; KSampler resizes it to the latent
 * and inpaints (nodes/sampling/denoiser.c). */
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/image/image_nodes.h"
#include "nodes/sd3/models.h"

#include <math.h>
#include <string.h>

#define SD3_LATENT_CHANNELS 16
#define MAX_RESOLUTION      16384 /* ComfyUI's nodes.MAX_RESOLUTION */

static const lm_output_def latent_out[1] = { { "LATENT", LM_TYPE_LATENT, NULL } };

/* ---- EmptySD3LatentImage ---- */

enum { EL_WIDTH, EL_HEIGHT, EL_BATCH, EL_COUNT };

static const lm_input_def empty_in[EL_COUNT] = {
    [EL_WIDTH] = { "width", LM_TYPE_INT,
                   .i = { .def = 1024, .min = 16, .max = MAX_RESOLUTION, .step = 16 },
                   .help = "Image width in pixels; the latent is width / 8 wide." },
    [EL_HEIGHT] = { "height", LM_TYPE_INT,
                    .i = { .def = 1024, .min = 16, .max = MAX_RESOLUTION, .step = 16 },
                    .help = "Image height in pixels; the latent is height / 8 high." },
    [EL_BATCH] = { "batch_size", LM_TYPE_INT, .i = { .def = 1, .min = 1, .max = 4096 },
                   .help = "Images made at once (one noise draw for the batch)." },
};

static lm_status empty_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)ctx;
    int64_t shape[4] = { lm_value_as_int(in[EL_BATCH]), SD3_LATENT_CHANNELS,
                         lm_value_as_int(in[EL_HEIGHT]) / 8, lm_value_as_int(in[EL_WIDTH]) / 8 };
    if (shape[0] > LM_IMAGE_NODES_MAX_ELEMS / (shape[1] * shape[2] * shape[3])) {
        lm_errorf(err, LM_ELIMIT, "latent_too_large",
                  "a latent batch of %lld x 16 x %lld x %lld values is over the limit of %lld",
                  (long long)shape[0], (long long)shape[2], (long long)shape[3],
                  (long long)LM_IMAGE_NODES_MAX_ELEMS);
        lm_error_hint(err, "use a smaller size or batch");
        return LM_ELIMIT;
    }
    lm_tensor *t = NULL;
    lm_status st = lm_tensor_zeros(&t, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, err);
    if (st != LM_OK)
        return st;
    out[0] = lm_value_latent(t, NULL);
    return out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

const lm_node_def lm_node_empty_sd3_latent_image = {
    .name = "EmptySD3LatentImage",
    .display_name = "EmptySD3LatentImage",
    .category = "latent/sd3",
    .description = "An all-zero SD3 latent (16 channels, 1/8 of the image size) to start "
                   "txt2img from.",
    .inputs = empty_in,
    .n_inputs = EL_COUNT,
    .outputs = latent_out,
    .n_outputs = 1,
    .run = empty_run,
};

/* ---- LatentUpscale ---- */

enum { LU_SAMPLES, LU_METHOD, LU_WIDTH, LU_HEIGHT, LU_CROP, LU_COUNT };

/* ComfyUI's LatentUpscale.upscale_methods, and the resampler's method for each. */
static const char *const methods[] = { "nearest-exact", "bilinear", "area",
                                       "bicubic",       "bislerp",  NULL };
static const lm_resample method_of[] = { LM_RESAMPLE_NEAREST_EXACT, LM_RESAMPLE_BILINEAR,
                                         LM_RESAMPLE_AREA, LM_RESAMPLE_BICUBIC,
                                         LM_RESAMPLE_BISLERP };
static const char *const crops[] = { "disabled", "center", NULL };

static const lm_input_def upscale_in[LU_COUNT] = {
    [LU_SAMPLES] = { "samples", LM_TYPE_LATENT, .help = "The latent to resize." },
    [LU_METHOD] = { "upscale_method", LM_TYPE_STRING, .choices = methods,
                    .help = "Resampling filter (as ImageScale); bislerp slerps each pixel's "
                            "channel vector (ComfyUI's)." },
    [LU_WIDTH] = { "width", LM_TYPE_INT,
                   .i = { .def = 512, .min = 0, .max = MAX_RESOLUTION, .step = 8 },
                   .help =
                       "Target width in image pixels (at least 64); 0 keeps the aspect ratio." },
    [LU_HEIGHT] = { "height", LM_TYPE_INT,
                    .i = { .def = 512, .min = 0, .max = MAX_RESOLUTION, .step = 8 },
                    .help = "Target height in image pixels (at least 64); 0 keeps the aspect "
                            "ratio." },
    [LU_CROP] = { "crop", LM_TYPE_STRING, .choices = crops,
                  .help = "center: cut the middle to the new aspect ratio first." },
};

static int index_of(const char *s, const char *const *list)
{
    for (int i = 0; s && list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return i;
    return -1;
}

/* ComfyUI's target size in pixels: 0 keeps the aspect ratio (Python round), at least 64. */
static void target_size(const lm_tensor *t, int64_t *w, int64_t *h)
{
    double lh = (double)t->shape[2], lw = (double)t->shape[3];
    if (*w == 0) {
        *h = *h > 64 ? *h : 64;
        *w = (int64_t)nearbyint(lw * (double)*h / lh);
    } else if (*h == 0) {
        *w = *w > 64 ? *w : 64;
        *h = (int64_t)nearbyint(lh * (double)*w / lw);
    }
    *w = *w > 64 ? *w : 64;
    *h = *h > 64 ? *h : 64;
}

/* x [B, C, h, w] resized to [B, C, height, width] through an NHWC image. */
static lm_status resize_latent(lm_ctx *ctx, const lm_tensor *x, int64_t width, int64_t height,
                               lm_resample method, bool crop, lm_tensor **out, lm_error *err)
{
    static const int to_nhwc[4] = { 0, 2, 3, 1 }, to_nchw[4] = { 0, 3, 1, 2 };
    lm_tensor *f32 = NULL, *p = NULL, *nhwc = NULL, *res = NULL, *back = NULL;
    lm_status st = lm_tensor_to_f32_host(&f32, x, err);
    if (st == LM_OK)
        st = lm_tensor_view_permute(&p, f32, to_nhwc, err);
    if (st == LM_OK)
        st = lm_tensor_contiguous(&nhwc, p, err); // [B, h, w, C]
    if (st == LM_OK)
        st = lm_image_nodes__resize(ctx, nhwc, lm_tensor_data(nhwc), width, height, method, crop,
                                    &res, err);
    if (st == LM_OK)
        st = lm_tensor_view_permute(&back, res, to_nchw, err);
    if (st == LM_OK)
        st = lm_tensor_contiguous(out, back, err); // [B, C, height, width]
    lm_tensor_free(f32);
    lm_tensor_free(p);
    lm_tensor_free(nhwc);
    lm_tensor_free(res);
    lm_tensor_free(back);
    return st;
}

static lm_status upscale_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    int method = index_of(lm_value_as_string(in[LU_METHOD]), methods);
    bool crop = index_of(lm_value_as_string(in[LU_CROP]), crops) == 1;
    int64_t w = lm_value_as_int(in[LU_WIDTH]), h = lm_value_as_int(in[LU_HEIGHT]);
    const lm_tensor *x = lm_value_tensor(in[LU_SAMPLES]);
    if (method < 0) { /* validation checks the choices; a direct caller may not have */
        lm_errorf(err, LM_EINVAL, "value_not_in_list", "upscale_method \"%s\" is not known",
                  lm_value_as_string(in[LU_METHOD]) ? lm_value_as_string(in[LU_METHOD]) : "");
        lm_error_hint(err, "use nearest-exact, bilinear, area, bicubic or bislerp");
        lm_error_at_node(err, NULL, NULL, "upscale_method");
        return LM_EINVAL;
    }
    if (w == 0 && h == 0) {
        out[0] = lm_value_ref(in[LU_SAMPLES]);
        return LM_OK;
    }
    if (x->ndim != 4)
        return lm_errorf(err, LM_EINVAL, "bad_latent", "samples is not a [B, C, h, w] latent");
    target_size(x, &w, &h);
    lm_tensor *res = NULL, *mask = NULL;
    const lm_tensor *nm = lm_value_noise_mask(in[LU_SAMPLES]);
    lm_status st = resize_latent(ctx, x, w / 8, h / 8, method_of[method], crop, &res, err);
    if (st == LM_OK && nm)
        st = lm_tensor_view(&mask, nm, err);
    if (st != LM_OK) {
        lm_tensor_free(res);
        return st;
    }
    out[0] = lm_value_latent(res, mask);
    return out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

const lm_node_def lm_node_latent_upscale = {
    .name = "LatentUpscale",
    .display_name = "Upscale Latent",
    .category = "latent",
    .description = "Resizes a latent to a new image size (width and height in pixels).",
    .inputs = upscale_in,
    .n_inputs = LU_COUNT,
    .outputs = latent_out,
    .n_outputs = 1,
    .run = upscale_run,
};

/* ---- SetLatentNoiseMask ---- */

enum { NM_SAMPLES, NM_MASK, NM_COUNT };

static const lm_input_def noise_mask_in[NM_COUNT] = {
    [NM_SAMPLES] = { "samples", LM_TYPE_LATENT, .help = "The latent to inpaint." },
    [NM_MASK] = { "mask", LM_TYPE_MASK,
                  .help = "1 where the sampler may change the latent, 0 where it keeps it; "
                          "resized to the latent when sampling." },
};

/* ComfyUI's mask.reshape((-1, 1, H, W)): a [N, 1, H, W] view (a copy when not contiguous). */
static lm_status mask_as_noise_mask(const lm_tensor *m, lm_tensor **out, lm_error *err)
{
    lm_tensor *c = NULL;
    *out = NULL;
    if (m->ndim < 2 || lm_tensor_numel(m) == 0) {
        char d[96];
        lm_tensor_describe(m, d, sizeof(d));
        lm_errorf(err, LM_EINVAL, "bad_mask", "mask is %s; a MASK is [B, H, W]", d);
        lm_error_at_node(err, NULL, NULL, "mask");
        return LM_EINVAL;
    }
    int64_t h = m->shape[m->ndim - 2], w = m->shape[m->ndim - 1];
    int64_t shape[4] = { lm_tensor_numel(m) / (h * w), 1, h, w };
    lm_status st = lm_tensor_contiguous(&c, m, err);
    if (st == LM_OK)
        st = lm_tensor_view_reshape(out, c, 4, shape, err);
    lm_tensor_free(c);
    return st;
}

static lm_status noise_mask_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)ctx;
    lm_tensor *samples = NULL, *mask = NULL;
    lm_status st = mask_as_noise_mask(lm_value_tensor(in[NM_MASK]), &mask, err);
    if (st == LM_OK)
        st = lm_tensor_view(&samples, lm_value_tensor(in[NM_SAMPLES]), err);
    if (st != LM_OK) {
        lm_tensor_free(mask);
        return st;
    }
    out[0] = lm_value_latent(samples, mask);
    return out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

const lm_node_def lm_node_set_latent_noise_mask = {
    .name = "SetLatentNoiseMask",
    .display_name = "Set Latent Noise Mask",
    .category = "latent/inpaint",
    .description = "Limits sampling to the masked area: KSampler keeps the latent where the "
                   "mask is 0 (inpainting).",
    .inputs = noise_mask_in,
    .n_inputs = NM_COUNT,
    .outputs = latent_out,
    .n_outputs = 1,
    .run = noise_mask_run,
};
