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
 * after CFG gives ComfyUI's cfg_result + (cond - cond_skip) * scale. */
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
} lm_sd3_denoiser;

/* Prepares the entries of both conditionings for the model. On failure d is left empty
 * (fini is still safe). */
lm_status lm_sampling__denoiser_init(lm_sd3_denoiser *d, lm_ctx *ctx, const lm_sd3_model *model,
                                     const lm_sd3_conditioning *positive,
                                     const lm_sd3_conditioning *negative, double cfg,
                                     lm_error *err);
void lm_sampling__denoiser_fini(lm_sd3_denoiser *d);
/* lm_sample_model_fn with user = the denoiser. */
lm_status lm_sampling__denoise(lm_tensor **out, const lm_tensor *x, float sigma,
                               const void *const *conds, int n, void *user, lm_error *err);

#endif
