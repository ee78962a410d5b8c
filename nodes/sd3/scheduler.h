/* nodes/sd3/scheduler.h — noise levels for flow-matching models (SD3, SD3.5): the model's
 * discrete sigma table, the schedules ComfyUI offers by name, the schedule of Stability's
 * reference code, and the img2img rules that cut a schedule short.
 *
 * Model sampling is ComfyUI's ModelSamplingSD3 / ModelSamplingDiscreteFlow: 1000 discrete
 * timesteps, sigma(t) = s*u / (1 + (s-1)*u) with u = t/1000 and shift s (3.0 for SD3 and
 * SD3.5), timestep(sigma) = 1000*sigma. The table holds sigma(1..1000), so sigma_min =
 * sigma(1) and sigma_max = sigma(1000) = 1. Everything is computed in float32 in the
 * order the reference computes it, so schedules match its numbers to the last bit or
 * ulp; docs/models.md ("Sampling") gives every formula and where the reference rounds.
 *
 * A schedule is steps+1 sigmas, descending, usually ending at 0 (ComfyUI's `beta` and
 * `ddim_uniform` may return fewer or more, as ComfyUI does). Schedules are plain float
 * arrays in an lm_sigmas the caller releases with lm_sigmas_fini().
 *
 * Thread safety: every function is pure; lm_sigmas values are the caller's. */
#ifndef LM_NODES_SD3_SCHEDULER_H
#define LM_NODES_SD3_SCHEDULER_H

#include "core/base/error.h"

#include <stdbool.h>

#define LM_FLOW_TIMESTEPS  1000    /* discrete timesteps of the table */
#define LM_FLOW_MULTIPLIER 1000.0f /* timestep = sigma * multiplier */
#define LM_STEPS_MAX       100000  /* longest schedule built (KSampler denoise may stretch) */

/* ComfyUI's ModelSamplingSD3 node: the only parameter is the shift (1 = no shift). */
typedef struct {
    double shift; /* > 0; SD3 / SD3.5 checkpoints use 3.0 */
} lm_model_sampling;

#define LM_MODEL_SAMPLING_SD3 ((lm_model_sampling){ .shift = 3.0 })

/* sigma(timestep) = time_snr_shift(shift, timestep / 1000) in float32. */
float lm_scheduler_sigma(const lm_model_sampling *ms, float timestep);
/* timestep(sigma) = sigma * 1000 in float32 (what the MMDiT is fed). */
float lm_scheduler_timestep(float sigma);
/* Entry i in [0, 1000) of the model's table = sigma at timestep i+1 (ComfyUI's rounding:
 * ((i+1)/1000)*1000 before the shift). lm_scheduler_table(ms, 0) is sigma_min. */
float lm_scheduler_table(const lm_model_sampling *ms, int i);
float lm_scheduler_sigma_min(const lm_model_sampling *ms);
float lm_scheduler_sigma_max(const lm_model_sampling *ms);
/* ComfyUI's percent_to_sigma (double arithmetic): 0 -> 1.0, 1 -> 0.0, otherwise
 * time_snr_shift(shift, 1 - percent). Used for ConditioningSetTimestepRange. */
double lm_scheduler_percent_to_sigma(const lm_model_sampling *ms, double percent);

typedef enum {
    LM_SCHEDULE_SIMPLE,           /* ComfyUI "simple": every (1000/steps)-th table entry */
    LM_SCHEDULE_SGM_UNIFORM,      /* "sgm_uniform": steps+1 uniform timesteps, last dropped */
    LM_SCHEDULE_NORMAL,           /* "normal": uniform timesteps, sigma_min's end shifted twice */
    LM_SCHEDULE_KARRAS,           /* "karras": Karras et al. 2022 eq. 5, rho = 7 */
    LM_SCHEDULE_EXPONENTIAL,      /* "exponential": uniform in log sigma */
    LM_SCHEDULE_BETA,             /* "beta": Beta(0.6, 0.6) quantiles of the timesteps */
    LM_SCHEDULE_DDIM_UNIFORM,     /* "ddim_uniform": table entries 1, 1+k, 1+2k, … */
    LM_SCHEDULE_KL_OPTIMAL,       /* "kl_optimal": uniform in atan(sigma) */
    LM_SCHEDULE_LINEAR_QUADRATIC, /* "linear_quadratic": Mochi's, linear then quadratic */
    LM_SCHEDULE_REFERENCE,        /* Stability's sd3_infer get_sigmas (= "normal" in practice) */
    LM_SCHEDULE_COUNT
} lm_schedule;

/* ComfyUI's name ("simple", …; "reference" for LM_SCHEDULE_REFERENCE); NULL when out of
 * range. Iterate 0..LM_SCHEDULE_COUNT-1 for a node's list of choices. */
const char *lm_scheduler_name(lm_schedule s);
/* The schedule named `name`; LM_ENOTFOUND with the list of names otherwise. */
lm_status lm_scheduler_parse(lm_schedule *out, const char *name, lm_error *err);

/* An owned array of sigmas. Zero-initialised is empty; lm_sigmas_fini frees and empties. */
typedef struct {
    float *sigma; /* count values, descending */
    int count;
} lm_sigmas;

void lm_sigmas_fini(lm_sigmas *s);

/* ComfyUI's calculate_sigmas(model_sampling, scheduler, steps): `steps` in [1,
 * LM_STEPS_MAX]. The result replaces *out's contents (fini'd first). */
lm_status lm_scheduler_sigmas(lm_sigmas *out, const lm_model_sampling *ms, lm_schedule s, int steps,
                              lm_error *err);

/* ComfyUI's KSampler schedule (KSampler.set_steps): denoise >= 0.9999 gives the full
 * schedule of `steps`; otherwise a schedule of int(steps/denoise) steps is built and its
 * last steps+1 sigmas are kept; denoise <= 0 gives an empty schedule (nothing to do). When
 * `discard_penultimate` (samplers dpm_2 and uni_pc, lm_sampler_discards_penultimate) one
 * more step is built and its second-to-last sigma dropped, as ComfyUI does. */
lm_status lm_scheduler_ksampler(lm_sigmas *out, const lm_model_sampling *ms, lm_schedule s,
                                int steps, double denoise, bool discard_penultimate, lm_error *err);

/* Index of the first sigma kept by the reference's img2img (sd3_infer.py):
 * int(steps * (1 - denoise)) evaluated in double, clamped to [0, steps]. steps=10,
 * denoise=0.9 gives 0 because 1 - 0.9 = 0.0999… in double. */
int lm_scheduler_strength_start(int steps, double denoise);
/* The reference img2img schedule: the full `steps` schedule `s` without its first
 * lm_scheduler_strength_start(steps, strength) sigmas (the diffusers/Stability meaning
 * of strength: about steps*strength steps are run, from a sigma inside the schedule). */
lm_status lm_scheduler_strength(lm_sigmas *out, const lm_model_sampling *ms, lm_schedule s,
                                int steps, double strength, lm_error *err);

/* KSamplerAdvanced's cut of a schedule, in place: end_at_step < count-1 keeps sigmas
 * [0, end_at_step] and, when !return_with_leftover_noise, sets the last one to 0; then
 * start_at_step < count-1 drops the first start_at_step sigmas, otherwise the schedule is
 * emptied (count 0: the sampler returns the latent unchanged, as ComfyUI does). */
void lm_scheduler_advanced(lm_sigmas *s, int start_at_step, int end_at_step,
                           bool return_with_leftover_noise);

#endif
