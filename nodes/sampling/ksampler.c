/* nodes/sampling/ksampler.c — KSampler and KSamplerAdvanced: denoise a LATENT with a MODEL
 * under positive and negative CONDITIONING.
 *
 * ComfyUI's flow, step by step (comfy/sample.py, comfy/samplers.py):
 *   - LATENT values hold raw VAE-space latents; a latent that is not all zeros is moved into
 *     the model's space, (raw - 0.0609) * 1.5305, before sampling, and an all-zero one is
 *     left as it is (ComfyUI: "Don't shift the empty latent image"); the result goes back
 *     with raw = x / 1.5305 + 0.0609. An all-zero latent with other channels than the
 *     model's (EmptyLatentImage's 4) becomes zeros of the model's 16.
 *   - initial noise: torch.manual_seed(seed); torch.randn(latent shape) on the CPU, one draw
 *     for the whole batch (lm_sampler_noise).
 *   - schedule: KSampler.set_steps (denoise < 1 builds int(steps/denoise) steps and keeps the
 *     last steps+1 sigmas, so denoise is img2img's strength); KSamplerAdvanced cuts the full
 *     schedule at start_at_step/end_at_step. Fewer than two sigmas return the latent as it
 *     came.
 *   - x = sigma0 * noise + (1 - sigma0) * latent, then the sampler (nodes/sd3/sampler.h).
 *   - a noise mask on the latent (SetLatentNoiseMask) makes it inpainting: the denoiser
 *     wraps the model as ComfyUI's KSamplerX0Inpaint (denoiser.c), with the initial noise
 *     (zeros when add_noise is disabled) as the noise of the kept part, except for ddim,
 *     which ComfyUI runs as euler with inpaint_options "random": a fresh randn seeded with
 *     seed + 1. Like ComfyUI, the final samples are not blended again: where the mask is 0
 *     they equal the input latent up to the float rounding of the last step and of the
 *     latent scaling round trip. The mask itself is passed on with the result.
 * Progress is reported per step (lm_ctx_progress) and cancellation is polled before every
 * step and every MMDiT block. */
#include "core/exec.h"
#include "core/registry.h"
#include "core/tensor/ops.h"
#include "nodes/sampling/sampling_nodes.h"

#include <stdio.h>
#include <string.h>

_Static_assert(LM_SAMPLER_COUNT == 10, "update sampler_names to the sampler module's list");

/* The sampler module's names (lm_sampler order; a test checks they parse). */
static const char *const sampler_names[] = {
    "euler", "euler_ancestral", "heun",       "dpm_2", "lms", "dpmpp_2m", "dpmpp_2m_sde",
    "ddim",  "uni_pc",          "uni_pc_bh2", NULL
};
/* ComfyUI's scheduler names in its order, those the scheduler module has. */
static const char *const scheduler_names[] = { "simple",      "sgm_uniform",      "karras",
                                               "exponential", "ddim_uniform",     "beta",
                                               "normal",      "linear_quadratic", "kl_optimal",
                                               NULL };

typedef struct {
    const lm_value *model, *positive, *negative, *latent;
    uint64_t seed;
    bool add_noise;
    int steps;
    double cfg, denoise;
    const char *sampler, *scheduler;
    bool advanced, leftover_noise;
    int start_at, end_at;
} sample_args;

static const lm_output_def latent_out[1] = { { "LATENT", LM_TYPE_LATENT, NULL } };

/* ---- latent checks and conversions ---- */

static lm_status all_zero(const lm_tensor *t, bool *zero, lm_error *err)
{
    lm_tensor *h = NULL;
    lm_status st = lm_tensor_to_f32_host(&h, t, err);
    if (st != LM_OK)
        return st;
    const float *p = lm_tensor_data(h);
    *zero = true;
    for (int64_t i = 0, n = lm_tensor_numel(h); i < n && *zero; i++)
        *zero = p[i] == 0.0f;
    lm_tensor_free(h);
    return LM_OK;
}

static lm_status latent_error(const lm_tensor *t, const char *why, lm_error *err)
{
    char d[96];
    lm_tensor_describe(t, d, sizeof(d));
    lm_errorf(err, LM_EINVAL, "bad_latent", "latent_image is %s; %s", d, why);
    lm_error_at_node(err, NULL, NULL, "latent_image");
    return LM_EINVAL;
}

/* The latent in the model's space (*out new, F32), *zero when it was all zeros. */
static lm_status model_latent(const lm_mmdit *mm, const lm_tensor *raw, lm_tensor **out, bool *zero,
                              lm_error *err)
{
    const lm_mmdit_config *cfg = lm_mmdit_config_of(mm);
    int max = lm_mmdit_max_latent(mm);
    *out = NULL;
    if (raw->ndim != 4)
        return latent_error(raw, "a latent is [batch, channels, height, width]", err);
    lm_status st = all_zero(raw, zero, err);
    if (st != LM_OK)
        return st;
    int64_t shape[4] = { raw->shape[0], cfg->in_channels, raw->shape[2], raw->shape[3] };
    if (raw->shape[1] != cfg->in_channels && !*zero)
        return latent_error(raw, "the model takes 16-channel SD3 latents", err);
    if (shape[2] % cfg->patch || shape[3] % cfg->patch || shape[2] > max || shape[3] > max) {
        char why[160];
        snprintf(why, sizeof(why),
                 "its height and width must be multiples of %d up to %d (%d "
                 "pixels) for this model",
                 cfg->patch, max, max * 8);
        return latent_error(raw, why, err);
    }
    if (*zero)
        return lm_tensor_zeros(out, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, err);
    lm_vae_config vc = { .scale = LM_VAE_SD3_SCALE, .shift = LM_VAE_SD3_SHIFT };
    return lm_vae_process_in(&vc, raw, out, err);
}

/* ---- the sampling run ---- */

static void on_step(const lm_sample_step *s, void *user)
{
    lm_ctx_progress(user, s->step + 1, s->steps);
}

static bool cancelled(void *user)
{
    return lm_ctx_cancelled(user);
}

static lm_status schedule(const sample_args *a, const lm_sd3_model *m, lm_sampler smp,
                          lm_sigmas *sig, lm_error *err)
{
    lm_schedule sch;
    lm_status st = lm_scheduler_parse(&sch, a->scheduler, err);
    if (st != LM_OK)
        return st;
    bool discard = lm_sampler_discards_penultimate(smp);
    if (!a->advanced)
        return lm_scheduler_ksampler(sig, &m->sampling, sch, a->steps, a->denoise, discard, err);
    st = lm_scheduler_ksampler(sig, &m->sampling, sch, a->steps, 1.0, discard, err);
    if (st == LM_OK)
        lm_scheduler_advanced(sig, a->start_at, a->end_at, a->leftover_noise);
    return st;
}

/* Inpainting for a latent with a noise mask: the kept part is noised with the initial noise,
 * or for ddim with randn(seed + 1) (ComfyUI: ksampler("euler", inpaint_options={"random":
 * True}), noise = torch.randn(generator=torch.manual_seed(seed + 1))). */
static lm_status set_inpaint(lm_sd3_denoiser *d, const sample_args *a, lm_sampler smp,
                             const lm_tensor *start, const lm_tensor *noise, lm_error *err)
{
    const lm_tensor *nm = lm_value_noise_mask(a->latent);
    lm_tensor *fresh = NULL;
    lm_status st = LM_OK;
    if (!nm)
        return LM_OK;
    if (smp == LM_SAMPLER_DDIM) {
        st = lm_sampler_noise(&fresh, a->seed + 1, start->ndim, start->shape, NULL, err);
        noise = fresh;
    }
    if (st == LM_OK)
        st = lm_sampling__denoiser_set_mask(d, nm, start, noise, err);
    lm_tensor_free(fresh);
    if (st != LM_OK)
        lm_error_at_node(err, NULL, NULL, "latent_image");
    return st;
}

/* Runs the sampler from `start` (model space); *out raw F32. */
static lm_status run_sampler(lm_ctx *ctx, const sample_args *a, lm_sample_opts *o,
                             const lm_tensor *start, lm_tensor **out, lm_error *err)
{
    const lm_sd3_model *m = lm_sd3_model_of(a->model);
    lm_sd3_denoiser d;
    lm_tensor *noise = NULL, *x = NULL;
    lm_status st = lm_sampling__denoiser_init(&d, ctx, m, lm_sd3_conditioning_of(a->positive),
                                              lm_sd3_conditioning_of(a->negative), a->cfg, err);
    if (st != LM_OK)
        return st;
    if (a->add_noise)
        st = lm_sampler_noise(&noise, a->seed, start->ndim, start->shape, NULL, err);
    if (st == LM_OK)
        st = set_inpaint(&d, a, o->sampler, start, noise, err);
    o->sampling = m->sampling;
    o->cfg = a->cfg;
    o->positive = d.pos;
    o->n_positive = d.n_pos;
    o->negative = d.neg;
    o->n_negative = d.n_neg;
    o->seed = a->seed;
    o->model = lm_sampling__denoise;
    o->model_user = &d;
    o->on_step = on_step;
    o->cancelled = cancelled;
    o->user = ctx;
    if (st == LM_OK)
        st = lm_sampler_ksampler(&x, o, start, noise, err);
    lm_vae_config vc = { .scale = LM_VAE_SD3_SCALE, .shift = LM_VAE_SD3_SHIFT };
    if (st == LM_OK)
        st = lm_vae_process_out(&vc, x, out, err);
    lm_tensor_free(noise);
    lm_tensor_free(x);
    lm_sampling__denoiser_fini(&d);
    return st;
}

static lm_status sample(lm_ctx *ctx, const sample_args *a, lm_value **out, lm_error *err)
{
    const lm_sd3_model *m = lm_sd3_model_of(a->model);
    const lm_tensor *raw = lm_value_tensor(a->latent);
    lm_sample_opts o;
    lm_sigmas sig = { 0 };
    lm_tensor *start = NULL, *res = NULL, *mask = NULL;
    bool zero = false;
    lm_sampler_opts_init(&o);
    lm_status st = lm_sampler_parse(&o.sampler, a->sampler, err);
    if (st == LM_OK)
        st = schedule(a, m, o.sampler, &sig, err);
    if (st == LM_OK && sig.count < 2) { /* nothing to do: the latent as it came */
        lm_sigmas_fini(&sig);
        out[0] = lm_value_ref((lm_value *)a->latent);
        return LM_OK;
    }
    if (st == LM_OK)
        st = model_latent(lm_sd3_part_mmdit(m->mmdit), raw, &start, &zero, err);
    o.sigmas = sig.sigma;
    o.n_sigmas = sig.count;
    if (st == LM_OK)
        st = run_sampler(ctx, a, &o, start, &res, err);
    const lm_tensor *nm = lm_value_noise_mask(a->latent);
    if (st == LM_OK && nm)
        st = lm_tensor_view(&mask, nm, err);
    if (st == LM_OK) {
        out[0] = lm_value_latent(res, mask);
        res = NULL;
        st = out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
    }
    lm_tensor_free(res);
    lm_tensor_free(start);
    lm_sigmas_fini(&sig);
    return st;
}

/* ---- KSampler ---- */

enum {
    KS_MODEL,
    KS_SEED,
    KS_STEPS,
    KS_CFG,
    KS_SAMPLER,
    KS_SCHEDULER,
    KS_POSITIVE,
    KS_NEGATIVE,
    KS_LATENT,
    KS_DENOISE,
    KS_COUNT
};

#define SEED_HELP "Initial noise: torch.manual_seed(seed) then randn, as ComfyUI."
#define CFG_HELP                                                                                   \
    "Guidance: denoised = negative + (positive - negative) * cfg; 1 skips the negative."

static const lm_input_def ks_in[KS_COUNT] = {
    [KS_MODEL] = { "model", LM_TYPE_MODEL, .help = "The diffusion model." },
    [KS_SEED] = { "seed", LM_TYPE_INT, .i = { .def = 0, .min = 0, .max = INT64_MAX },
                  .flags = LM_INPUT_SEED, .help = SEED_HELP },
    [KS_STEPS] = { "steps", LM_TYPE_INT, .i = { .def = 20, .min = 1, .max = 10000 },
                   .help = "Sampling steps." },
    [KS_CFG] = { "cfg", LM_TYPE_FLOAT,
                 .f = { .def = 8.0, .min = 0.0, .max = 100.0, .step = 0.1, .round = 0.01 },
                 .help = CFG_HELP },
    [KS_SAMPLER] = { "sampler_name", LM_TYPE_STRING, .choices = sampler_names,
                     .help = "The sampling algorithm." },
    [KS_SCHEDULER] = { "scheduler", LM_TYPE_STRING, .choices = scheduler_names,
                       .help = "How the noise levels are spaced." },
    [KS_POSITIVE] = { "positive", LM_TYPE_CONDITIONING, .help = "What the image should show." },
    [KS_NEGATIVE] = { "negative", LM_TYPE_CONDITIONING, .help = "What to steer away from." },
    [KS_LATENT] = { "latent_image", LM_TYPE_LATENT,
                    .help = "The latent to denoise: empty for txt2img, encoded for img2img." },
    [KS_DENOISE] = { "denoise", LM_TYPE_FLOAT,
                     .f = { .def = 1.0, .min = 0.0, .max = 1.0, .step = 0.01 },
                     .help = "How much to change: 1 replaces the latent, less keeps more of it "
                             "(img2img strength)." },
};

static lm_status ks_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    sample_args a = {
        .model = in[KS_MODEL],
        .positive = in[KS_POSITIVE],
        .negative = in[KS_NEGATIVE],
        .latent = in[KS_LATENT],
        .seed = (uint64_t)lm_value_as_int(in[KS_SEED]),
        .add_noise = true,
        .steps = (int)lm_value_as_int(in[KS_STEPS]),
        .cfg = lm_value_as_float(in[KS_CFG]),
        .denoise = lm_value_as_float(in[KS_DENOISE]),
        .sampler = lm_value_as_string(in[KS_SAMPLER]),
        .scheduler = lm_value_as_string(in[KS_SCHEDULER]),
    };
    return sample(ctx, &a, out, err);
}

const lm_node_def lm_node_ksampler = {
    .name = "KSampler",
    .display_name = "KSampler",
    .category = "sampling",
    .description = "Denoises the latent with the model, following the positive conditioning "
                   "and away from the negative.",
    .inputs = ks_in,
    .n_inputs = KS_COUNT,
    .outputs = latent_out,
    .n_outputs = 1,
    .run = ks_run,
};

/* ---- KSamplerAdvanced ---- */

enum {
    KA_MODEL,
    KA_ADD_NOISE,
    KA_SEED,
    KA_STEPS,
    KA_CFG,
    KA_SAMPLER,
    KA_SCHEDULER,
    KA_POSITIVE,
    KA_NEGATIVE,
    KA_LATENT,
    KA_START,
    KA_END,
    KA_LEFTOVER,
    KA_COUNT
};

static const char *const enable_disable[] = { "enable", "disable", NULL };
static const char *const disable_enable[] = { "disable", "enable", NULL };

static const lm_input_def ka_in[KA_COUNT] = {
    [KA_MODEL] = { "model", LM_TYPE_MODEL, .help = "The diffusion model." },
    [KA_ADD_NOISE] = { "add_noise", LM_TYPE_STRING, .choices = enable_disable,
                       .help = "disable: the latent already holds its noise." },
    [KA_SEED] = { "noise_seed", LM_TYPE_INT, .i = { .def = 0, .min = 0, .max = INT64_MAX },
                  .flags = LM_INPUT_SEED, .help = SEED_HELP },
    [KA_STEPS] = { "steps", LM_TYPE_INT, .i = { .def = 20, .min = 1, .max = 10000 },
                   .help = "Steps of the whole schedule." },
    [KA_CFG] = { "cfg", LM_TYPE_FLOAT,
                 .f = { .def = 8.0, .min = 0.0, .max = 100.0, .step = 0.1, .round = 0.01 },
                 .help = CFG_HELP },
    [KA_SAMPLER] = { "sampler_name", LM_TYPE_STRING, .choices = sampler_names,
                     .help = "The sampling algorithm." },
    [KA_SCHEDULER] = { "scheduler", LM_TYPE_STRING, .choices = scheduler_names,
                       .help = "How the noise levels are spaced." },
    [KA_POSITIVE] = { "positive", LM_TYPE_CONDITIONING, .help = "What the image should show." },
    [KA_NEGATIVE] = { "negative", LM_TYPE_CONDITIONING, .help = "What to steer away from." },
    [KA_LATENT] = { "latent_image", LM_TYPE_LATENT, .help = "The latent to denoise." },
    [KA_START] = { "start_at_step", LM_TYPE_INT, .i = { .def = 0, .min = 0, .max = 10000 },
                   .help = "First step of the schedule to run." },
    [KA_END] = { "end_at_step", LM_TYPE_INT, .i = { .def = 10000, .min = 0, .max = 10000 },
                 .help = "Step to stop at (10000: the end)." },
    [KA_LEFTOVER] = { "return_with_leftover_noise", LM_TYPE_STRING, .choices = disable_enable,
                      .help = "enable: stopping early keeps the remaining noise (to continue "
                              "in another sampler)." },
};

static lm_status ka_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    sample_args a = {
        .model = in[KA_MODEL],
        .positive = in[KA_POSITIVE],
        .negative = in[KA_NEGATIVE],
        .latent = in[KA_LATENT],
        .seed = (uint64_t)lm_value_as_int(in[KA_SEED]),
        .add_noise = strcmp(lm_value_as_string(in[KA_ADD_NOISE]), "enable") == 0,
        .steps = (int)lm_value_as_int(in[KA_STEPS]),
        .cfg = lm_value_as_float(in[KA_CFG]),
        .denoise = 1.0,
        .sampler = lm_value_as_string(in[KA_SAMPLER]),
        .scheduler = lm_value_as_string(in[KA_SCHEDULER]),
        .advanced = true,
        .leftover_noise = strcmp(lm_value_as_string(in[KA_LEFTOVER]), "enable") == 0,
        .start_at = (int)lm_value_as_int(in[KA_START]),
        .end_at = (int)lm_value_as_int(in[KA_END]),
    };
    return sample(ctx, &a, out, err);
}

const lm_node_def lm_node_ksampler_advanced = {
    .name = "KSamplerAdvanced",
    .display_name = "KSampler (Advanced)",
    .category = "sampling",
    .description = "KSampler over a part of the schedule, with or without adding noise.",
    .inputs = ka_in,
    .n_inputs = KA_COUNT,
    .outputs = latent_out,
    .n_outputs = 1,
    .run = ka_run,
};
