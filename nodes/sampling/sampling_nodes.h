/* nodes/sampling/sampling_nodes.h — what the sampling node files share (semi-private to
 * nodes/sampling/): the denoiser that wires a MODEL and two CONDITIONINGs into the sampler's
 * model callback (denoiser.c).
 *
 * The denoiser prepares every conditioning entry once (F32 on the host, context and pooled
 * widths fitted to the MMDiT: zero columns added or, when they are zeros, cut), then at
 * each evaluation runs the MMDiT on the latent batch repeated per active entry (one
 * forward when the entries' token counts agree, one per entry otherwise) and returns
 * denoised = x - v*sigma. Skip-layer guidance (SkipLayerGuidanceSD3) is applied there too:
 * when active at sigma, the positive rows get (pos - pos_skip) * scale / cfg added, which
 * after CFG gives ComfyUI's cfg_result + (cond - cond_skip) * scale.
 *
 * Inpainting (a LATENT with a noise mask) is ComfyUI's KSamplerX0Inpaint around the model:
 * before each evaluation the rows' x becomes x*mask + (sigma*noise + (1-sigma)*latent)*(1 -
 * mask), and each row's denoised output becomes out*mask + latent*(1 - mask). ComfyUI blends
 * the guided (CFG) output once; blending every row before the sampler's CFG is the same
 * linear map (the strength weights of a polarity sum to 1): exact where the mask is 0 or
 * 1, within float rounding between. It differs only when no entry of a polarity is active
 * at a step (ConditioningSetTimestepRange gaps): that polarity's zeros are not blended. */
#ifndef LM_NODES_SAMPLING_SAMPLING_NODES_H
#define LM_NODES_SAMPLING_SAMPLING_NODES_H

#include "core/base/error.h"
#include "core/exec.h"
#include "nodes/sd3/models.h"
#include "nodes/sd3/sampler.h"

typedef struct lm_sd3_prepared lm_sd3_prepared; /* one prepared entry (denoiser.c) */

typedef struct {
    lm_ctx *ctx; /* progress and cancellation; may be NULL */
    const lm_sd3_model *model;
    const lm_mmdit *mmdit;
    double cfg;
    lm_sd3_prepared *entries; /* positives first */
    size_t n_entries;
    lm_sample_cond *pos, *neg;
    int n_pos, n_neg;
    /* Inpainting (lm_sampling__denoiser_set_mask); all NULL without a noise mask. F32 host
     * tensors of the latent's shape [B, C, h, w]. */
    lm_tensor *mask;   /* ComfyUI's denoise_mask: 1 = sample, 0 = keep the latent */
    lm_tensor *keep;   /* 1 - mask */
    lm_tensor *latent; /* latent_image, in the model's space */
    lm_tensor *noise;  /* what the kept part is noised with; NULL = zeros */
} lm_sd3_denoiser;

/* Prepares the entries of both conditionings for the model. On failure d is left empty
 * (fini is still safe). */
lm_status lm_sampling__denoiser_init(lm_sd3_denoiser *d, lm_ctx *ctx, const lm_sd3_model *model,
                                     const lm_sd3_conditioning *positive,
                                     const lm_sd3_conditioning *negative, double cfg,
                                     lm_error *err);
void lm_sampling__denoiser_fini(lm_sd3_denoiser *d);
/* Turns inpainting on: noise_mask (any [..., H, W]; LATENT's [N, 1, H, W]) is prepared for
 * `latent` (model space, [B, C, h, w]) with lm_sampling__prepare_mask; `noise` (NULL =
 * zeros) is what the kept part is noised with at each sigma. Copies what it keeps. */
lm_status lm_sampling__denoiser_set_mask(lm_sd3_denoiser *d, const lm_tensor *noise_mask,
                                         const lm_tensor *latent, const lm_tensor *noise,
                                         lm_error *err);
/* ComfyUI's prepare_mask (comfy.utils.reshape_mask): the mask as [N, 1, H, W] (N = its
 * elements / (H*W)), resized bilinearly (torch, align_corners=False, no antialias) to h x w,
 * repeated over the C channels and tiled or cut to B along the batch. *out is a new F32
 * host tensor of `shape` [B, C, h, w]. */
lm_status lm_sampling__prepare_mask(lm_tensor **out, const lm_tensor *noise_mask,
                                    const int64_t shape[4], lm_error *err);
/* lm_sample_model_fn with user = the denoiser. */
lm_status lm_sampling__denoise(lm_tensor **out, const lm_tensor *x, float sigma,
                               const void *const *conds, int n, void *user, lm_error *err);

#endif
