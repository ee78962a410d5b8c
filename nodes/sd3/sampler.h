/* nodes/sd3/sampler.h — the sampling loop of flow-matching models (SD3, SD3.5): ComfyUI's
 * KSampler samplers, classifier-free guidance, conditioning with timestep ranges, initial
 * and ancestral noise.
 *
 * The sampler knows nothing of the MMDiT: it calls a model callback that returns the
 * denoised prediction (x - v*sigma for a flow model) for a batch of latents, one
 * conditioning per group of rows. The node layer wires the MMDiT and the text conditioning
 * into that callback. Per step the sampler picks the conditioning entries active at the
 * step's sigma (ConditioningSetTimestepRange), evaluates positives and negatives in one
 * batch, averages overlapping entries of one polarity by strength and applies CFG:
 * denoised = neg + (pos - neg) * cfg; cfg 1 evaluates the positives only.
 *
 * Parameterisation: x = (1 - sigma) * x0 + sigma * noise (rectified flow, ComfyUI's CONST).
 * The ODE samplers integrate dx/dsigma = (x - denoised)/sigma, exactly as for other models;
 * the ancestral and SDE samplers use the flow form of their noise (docs/models.md,
 * "Sampling", derives each update). Noise: lm_sampler_noise() is ComfyUI's initial noise
 * (torch.manual_seed(seed); torch.randn(shape) on the CPU, one draw for the whole batch);
 * ancestral/SDE samplers draw one randn of the latent's size per noisy step from their own
 * lm_rng seeded with opts.seed (ComfyUI's default_noise_sampler on the CPU).
 *
 * Ownership: tensors returned through `**out` are the caller's (lm_tensor_free). Inputs are
 * borrowed for the call and never modified; a conditioning's `cond` pointer is only handed
 * back to the model callback. Tensors given to callbacks are borrowed for the call.
 * Thread safety: a call keeps all its state to itself; callbacks run on the calling thread. */
#ifndef LM_NODES_SD3_SAMPLER_H
#define LM_NODES_SD3_SAMPLER_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"
#include "nodes/sd3/scheduler.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    LM_SAMPLER_EULER,           /* "euler": Euler's method */
    LM_SAMPLER_EULER_ANCESTRAL, /* "euler_ancestral": Euler + re-noising (flow form) */
    LM_SAMPLER_HEUN,            /* "heun": Heun's method, Karras et al. 2022 Alg. 1 */
    LM_SAMPLER_DPM_2,           /* "dpm_2": midpoint in log sigma (DPM-Solver-2) */
    LM_SAMPLER_LMS,             /* "lms": linear multistep (Adams-Bashforth), order 4 */
    LM_SAMPLER_DPMPP_2M,        /* "dpmpp_2m": DPM-Solver++(2M), Lu et al. 2022 */
    LM_SAMPLER_DPMPP_2M_SDE,    /* "dpmpp_2m_sde": DPM-Solver++(2M) SDE, midpoint, flow form */
    LM_SAMPLER_DDIM,            /* "ddim": deterministic DDIM, the same update as Euler */
    LM_SAMPLER_UNI_PC,          /* "uni_pc": UniPC (Zhao et al. 2023), B(h) = h */
    LM_SAMPLER_UNI_PC_BH2,      /* "uni_pc_bh2": UniPC, B(h) = e^h - 1 */
    LM_SAMPLER_COUNT
} lm_sampler;

/* ComfyUI's name of a sampler; NULL when out of range. */
const char *lm_sampler_name(lm_sampler s);
/* The sampler named `name`; LM_ENOTFOUND with the list of names otherwise. */
lm_status lm_sampler_parse(lm_sampler *out, const char *name, lm_error *err);
/* ComfyUI builds one more step and drops the penultimate sigma for these (dpm_2, uni_pc*):
 * pass this to lm_scheduler_ksampler. */
bool lm_sampler_discards_penultimate(lm_sampler s);

/* One conditioning entry. Active at sigma when percent_to_sigma(end_percent) <= sigma <=
 * percent_to_sigma(start_percent) (compared in float32, ComfyUI's rule). Overlapping
 * active entries of one polarity are averaged: sum(strength_k * denoised_k) /
 * sum(strength_k); a polarity with no active entry predicts 0, as ComfyUI's does. */
typedef struct {
    const void *cond;     /* the caller's conditioning, handed back to the model callback */
    double start_percent; /* 0 = from the first step */
    double end_percent;   /* 1 = to the last step */
    float strength;       /* weight among overlapping entries; 1 normally */
} lm_sample_cond;

#define LM_SAMPLE_COND(c)                                                                          \
    ((lm_sample_cond){ .cond = (c), .start_percent = 0.0, .end_percent = 1.0, .strength = 1.0f })

/* Denoised predictions for one evaluation. x is [n*B, C, h, w]: n copies of the latent batch
 * (B samples each), rows [k*B, (k+1)*B) to be denoised under conds[k] (n <= 16; positives
 * first, then negatives). sigma is every row's noise level (timestep = 1000*sigma). Returns
 * a new tensor of x's shape on x's backend. */
typedef lm_status (*lm_sample_model_fn)(lm_tensor **out, const lm_tensor *x, float sigma,
                                        const void *const *conds, int n, void *user, lm_error *err);

/* What a step reports (once per step, after its first model evaluation). */
typedef struct {
    int step, steps;           /* step in [0, steps) */
    float sigma, sigma_next;   /* the step goes from sigma to sigma_next */
    const lm_tensor *x;        /* the state the model was evaluated at */
    const lm_tensor *denoised; /* the guided prediction there */
} lm_sample_step;

typedef struct {
    lm_sampler sampler;
    const float *sigmas; /* schedule, descending; n_sigmas - 1 steps (lm_sigmas.sigma) */
    int n_sigmas;
    lm_model_sampling sampling; /* for timestep ranges (percent -> sigma) */
    double cfg;                 /* isclose(cfg, 1): negatives are not evaluated */
    const lm_sample_cond *positive;
    int n_positive;
    const lm_sample_cond *negative;
    int n_negative;
    uint64_t seed; /* ancestral / SDE noise generator (ComfyUI passes the KSampler seed) */
    float eta;     /* ancestral / SDE noise amount (1) */
    float s_noise; /* ancestral / SDE noise scale (1) */
    lm_sample_model_fn model;
    void *model_user;
    /* Optional: progress (step k of n, with the state), and cancellation polled before each
     * step (true stops the run with LM_ECANCELLED). */
    void (*on_step)(const lm_sample_step *step, void *user);
    bool (*cancelled)(void *user);
    void *user;
} lm_sample_opts;

/* Defaults: euler, cfg 1, shift 3, eta 1, s_noise 1, no schedule, no conditioning. */
void lm_sampler_opts_init(lm_sample_opts *opts);

/* ComfyUI's initial noise: torch.manual_seed(seed); torch.randn(shape) on the CPU, one draw
 * for the whole batch. A new F32 tensor on backend `be` (NULL = CPU). */
lm_status lm_sampler_noise(lm_tensor **out, uint64_t seed, int ndim, const int64_t *shape,
                           lm_backend *be, lm_error *err);
/* Flow noising: sigma * noise + (1 - sigma) * latent in float32; noise NULL means zeros. */
lm_status lm_sampler_noise_scaling(lm_tensor **out, float sigma, const lm_tensor *noise,
                                   const lm_tensor *latent, lm_error *err);

/* Runs opts->sampler over opts->sigmas from x_start (already noised to sigmas[0]); *out is
 * the final state. Fewer than 2 sigmas: *out is a copy of x_start. */
lm_status lm_sampler_run(lm_tensor **out, const lm_sample_opts *opts, const lm_tensor *x_start,
                         lm_error *err);

/* ComfyUI's KSampler around lm_sampler_run: fewer than 2 sigmas returns a copy of `latent`
 * untouched; otherwise start = noise_scaling(sigmas[0], noise, latent) (noise NULL:
 * KSamplerAdvanced's add_noise disabled), run, and divide the result by
 * (1 - last sigma) (CONST.inverse_noise_scaling: a no-op when the schedule ends at 0, the
 * leftover-noise convention of KSamplerAdvanced otherwise). */
lm_status lm_sampler_ksampler(lm_tensor **out, const lm_sample_opts *opts, const lm_tensor *latent,
                              const lm_tensor *noise, lm_error *err);

#endif
