/* nodes/sd3/sampler_impl.h — internal to the sampler files (sampler.c, sampler_ode.c,
 * sampler_unipc.c): the per-run state, the guided denoiser and tensor arithmetic helpers.
 *
 * Every helper allocates its result (the op convention of core/tensor/ops.h) and leaves its
 * inputs alone; state tensors are swapped with lm_sampler__replace(), which frees the old
 * one. The per-sampler loops own their temporaries and free them on every path. */
#ifndef LM_NODES_SD3_SAMPLER_IMPL_H
#define LM_NODES_SD3_SAMPLER_IMPL_H

#include "core/tensor/rng.h"
#include "nodes/sd3/sampler.h"

typedef struct {
    const lm_sample_opts *o;
    int steps;   /* n_sigmas - 1 */
    lm_rng *rng; /* ancestral / SDE noise, made on first use */
} lm_sampler_run_state;

/* The guided prediction at (x, sigma): active conditioning entries in one batch, averaged
 * per polarity, CFG. */
lm_status lm_sampler__denoise(lm_sampler_run_state *rs, const lm_tensor *x, float sigma,
                              lm_tensor **out, lm_error *err);
/* Step i's first evaluation: polls cancellation (LM_ECANCELLED), denoises x at sigmas[i]
 * and reports the step. */
lm_status lm_sampler__step_denoise(lm_sampler_run_state *rs, int i, const lm_tensor *x,
                                   lm_tensor **denoised, lm_error *err);
/* Reports step i to the optional callback. */
void lm_sampler__report(lm_sampler_run_state *rs, int i, const lm_tensor *x,
                        const lm_tensor *denoised);
/* One randn of x's size from the run's generator, on x's backend. */
lm_status lm_sampler__randn_like(lm_sampler_run_state *rs, const lm_tensor *x, lm_tensor **out,
                                 lm_error *err);

/* a*x + b*y (y NULL: a*x), each product rounded to float32 then summed. */
lm_status lm_sampler__axpby(lm_tensor **out, float a, const lm_tensor *x, float b,
                            const lm_tensor *y, lm_error *err);
/* (x - denoised) * (1/sigma): the ODE's slope dx/dsigma. */
lm_status lm_sampler__slope(lm_tensor **out, const lm_tensor *x, const lm_tensor *denoised,
                            float sigma, lm_error *err);
/* Frees *slot and stores t there. */
void lm_sampler__replace(lm_tensor **slot, lm_tensor *t);

/* The samplers: each runs every step on *x (the state, replaced as it goes). */
lm_status lm_sampler__euler(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err);
lm_status lm_sampler__euler_ancestral(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err);
lm_status lm_sampler__heun(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err);
lm_status lm_sampler__dpm_2(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err);
lm_status lm_sampler__lms(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err);
lm_status lm_sampler__dpmpp_2m(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err);
lm_status lm_sampler__dpmpp_2m_sde(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err);
lm_status lm_sampler__uni_pc(lm_sampler_run_state *rs, lm_tensor **x, bool bh2, lm_error *err);

#endif
