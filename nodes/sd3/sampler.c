/* nodes/sd3/sampler.c — the sampling driver: sampler names, initial noise and flow noising,
 * the guided denoiser (conditioning ranges, batching, averaging, CFG) and lm_sampler_run.
 *
 * The guided denoiser follows ComfyUI's calc_cond_batch + cfg_function: at each model
 * evaluation the entries active at sigma are gathered (positives first, then negatives,
 * negatives only when cfg is not 1), the latent batch is repeated once per entry and the
 * model is called once; each polarity's outputs are averaged by strength, and
 * denoised = neg + (pos - neg) * cfg in float32 in that order (the reference's CFGDenoiser).
 * The update rules live in sampler_ode.c and sampler_unipc.c. */
#include "nodes/sd3/sampler.h"

#include "core/tensor/ops.h"
#include "nodes/sd3/sampler_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_BATCH 16 /* conditioning entries evaluated at once (lm_concat's limit) */

static const char *const sampler_names[LM_SAMPLER_COUNT] = {
    [LM_SAMPLER_EULER] = "euler",
    [LM_SAMPLER_EULER_ANCESTRAL] = "euler_ancestral",
    [LM_SAMPLER_HEUN] = "heun",
    [LM_SAMPLER_DPM_2] = "dpm_2",
    [LM_SAMPLER_LMS] = "lms",
    [LM_SAMPLER_DPMPP_2M] = "dpmpp_2m",
    [LM_SAMPLER_DPMPP_2M_SDE] = "dpmpp_2m_sde",
    [LM_SAMPLER_DDIM] = "ddim",
    [LM_SAMPLER_UNI_PC] = "uni_pc",
    [LM_SAMPLER_UNI_PC_BH2] = "uni_pc_bh2",
};

const char *lm_sampler_name(lm_sampler s)
{
    if ((int)s < 0 || s >= LM_SAMPLER_COUNT)
        return NULL;
    return sampler_names[s];
}

lm_status lm_sampler_parse(lm_sampler *out, const char *name, lm_error *err)
{
    for (int i = 0; i < LM_SAMPLER_COUNT; i++) {
        if (name && strcmp(name, sampler_names[i]) == 0) {
            *out = (lm_sampler)i;
            return LM_OK;
        }
    }
    lm_errorf(err, LM_ENOTFOUND, "value_not_in_list", "unknown sampler \"%s\"",
              name ? name : "(null)");
    lm_error_hint(err, "use one of euler, euler_ancestral, heun, dpm_2, lms, dpmpp_2m, "
                       "dpmpp_2m_sde, ddim, uni_pc, uni_pc_bh2");
    return LM_ENOTFOUND;
}

bool lm_sampler_discards_penultimate(lm_sampler s)
{
    return s == LM_SAMPLER_DPM_2 || s == LM_SAMPLER_UNI_PC || s == LM_SAMPLER_UNI_PC_BH2;
}

void lm_sampler_opts_init(lm_sample_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->sampler = LM_SAMPLER_EULER;
    opts->sampling = LM_MODEL_SAMPLING_SD3;
    opts->cfg = 1.0;
    opts->eta = 1.0f;
    opts->s_noise = 1.0f;
}

/* ---- noise ---- */

lm_status lm_sampler_noise(lm_tensor **out, uint64_t seed, int ndim, const int64_t *shape,
                           lm_backend *be, lm_error *err)
{
    lm_rng *rng = NULL;
    lm_tensor *host = NULL;
    *out = NULL;
    lm_status st = lm_rng_new(&rng, seed, err);
    if (st == LM_OK)
        st = lm_tensor_new(&host, lm_backend_cpu(), LM_DTYPE_F32, ndim, shape, err);
    if (st == LM_OK)
        lm_rng_randn(rng, lm_tensor_data(host), (size_t)lm_tensor_numel(host));
    lm_rng_free(rng);
    if (st != LM_OK)
        return st;
    if (!be || lm_backend_is_host(be)) {
        *out = host;
        return LM_OK;
    }
    st = lm_tensor_to(out, host, be, err);
    lm_tensor_free(host);
    return st;
}

static bool same_shape(const lm_tensor *a, const lm_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

static lm_status shape_error(lm_error *err, const char *what, const lm_tensor *got,
                             const lm_tensor *want)
{
    char g[96], w[96];
    lm_tensor_describe(got, g, sizeof(g));
    lm_tensor_describe(want, w, sizeof(w));
    return lm_errorf(err, LM_EINVAL, NULL, "%s is %s but the latent is %s", what, g, w);
}

lm_status lm_sampler_noise_scaling(lm_tensor **out, float sigma, const lm_tensor *noise,
                                   const lm_tensor *latent, lm_error *err)
{
    *out = NULL;
    if (noise && !same_shape(noise, latent))
        return shape_error(err, "the noise", noise, latent);
    return lm_sampler__axpby(out, 1.0f - sigma, latent, sigma, noise, err);
}

/* ---- arithmetic helpers ---- */

void lm_sampler__replace(lm_tensor **slot, lm_tensor *t)
{
    lm_tensor_free(*slot);
    *slot = t;
}

lm_status lm_sampler__axpby(lm_tensor **out, float a, const lm_tensor *x, float b,
                            const lm_tensor *y, lm_error *err)
{
    lm_tensor *ax = NULL, *by = NULL;
    *out = NULL;
    lm_status st = lm_scale(&ax, x, a, 0.0f, err);
    if (st != LM_OK || !y) {
        *out = ax;
        return st;
    }
    st = lm_scale(&by, y, b, 0.0f, err);
    if (st == LM_OK)
        st = lm_add(out, ax, by, err);
    lm_tensor_free(ax);
    lm_tensor_free(by);
    return st;
}

lm_status lm_sampler__slope(lm_tensor **out, const lm_tensor *x, const lm_tensor *denoised,
                            float sigma, lm_error *err)
{
    lm_tensor *diff = NULL;
    *out = NULL;
    lm_status st = lm_sub(&diff, x, denoised, err);
    if (st == LM_OK)
        st = lm_scale(out, diff, 1.0f / sigma, 0.0f, err);
    lm_tensor_free(diff);
    return st;
}

/* ---- per-step services ---- */

void lm_sampler__report(lm_sampler_run_state *rs, int i, const lm_tensor *x,
                        const lm_tensor *denoised)
{
    const lm_sample_opts *o = rs->o;
    if (!o->on_step)
        return;
    lm_sample_step s = {
        .step = i,
        .steps = rs->steps,
        .sigma = o->sigmas[i],
        .sigma_next = o->sigmas[i + 1],
        .x = x,
        .denoised = denoised,
    };
    o->on_step(&s, o->user);
}

lm_status lm_sampler__step_denoise(lm_sampler_run_state *rs, int i, const lm_tensor *x,
                                   lm_tensor **denoised, lm_error *err)
{
    const lm_sample_opts *o = rs->o;
    *denoised = NULL;
    if (o->cancelled && o->cancelled(o->user))
        return lm_errorf(err, LM_ECANCELLED, "interrupted",
                         "sampling was cancelled before step %d of %d", i + 1, rs->steps);
    lm_status st = lm_sampler__denoise(rs, x, o->sigmas[i], denoised, err);
    if (st == LM_OK)
        lm_sampler__report(rs, i, x, *denoised);
    return st;
}

lm_status lm_sampler__randn_like(lm_sampler_run_state *rs, const lm_tensor *x, lm_tensor **out,
                                 lm_error *err)
{
    lm_tensor *host = NULL;
    *out = NULL;
    if (!rs->rng) {
        lm_status st = lm_rng_new(&rs->rng, rs->o->seed, err);
        if (st != LM_OK)
            return st;
    }
    lm_status st = lm_tensor_new(&host, lm_backend_cpu(), LM_DTYPE_F32, x->ndim, x->shape, err);
    if (st != LM_OK)
        return st;
    lm_rng_randn(rs->rng, lm_tensor_data(host), (size_t)lm_tensor_numel(host));
    if (lm_backend_is_host(lm_tensor_backend(x))) {
        *out = host;
        return LM_OK;
    }
    st = lm_tensor_to(out, host, lm_tensor_backend(x), err);
    lm_tensor_free(host);
    return st;
}

/* ---- the guided denoiser ---- */

typedef struct {
    const void *conds[MAX_BATCH];
    float weight[MAX_BATCH];
    int n_pos, n; /* entries [0, n_pos) are positives, [n_pos, n) negatives */
} active_set;

static bool cfg_is_one(double cfg)
{
    return fabs(cfg - 1.0) <= 1e-9 * fmax(fabs(cfg), 1.0); /* Python's math.isclose */
}

/* ComfyUI compares the float32 sigma with the Python-double range ends rounded to float32. */
static bool cond_active(const lm_model_sampling *ms, const lm_sample_cond *c, float sigma)
{
    float hi = (float)lm_scheduler_percent_to_sigma(ms, c->start_percent);
    float lo = (float)lm_scheduler_percent_to_sigma(ms, c->end_percent);
    return !(sigma > hi) && !(sigma < lo);
}

static lm_status gather(active_set *a, const lm_sample_cond *c, int n, const lm_sample_opts *o,
                        float sigma, lm_error *err)
{
    for (int i = 0; i < n; i++) {
        if (!cond_active(&o->sampling, &c[i], sigma))
            continue;
        if (a->n == MAX_BATCH)
            return lm_errorf(err, LM_ELIMIT, NULL,
                             "more than %d conditioning entries are active at sigma %g", MAX_BATCH,
                             (double)sigma);
        a->conds[a->n] = c[i].cond;
        a->weight[a->n++] = c[i].strength;
    }
    return LM_OK;
}

/* The latent batch repeated n times along dim 0. */
static lm_status repeat_batch(lm_tensor **out, const lm_tensor *x, int n, lm_error *err)
{
    const lm_tensor *parts[MAX_BATCH];
    if (n == 1)
        return lm_tensor_view(out, x, err);
    for (int i = 0; i < n; i++)
        parts[i] = x;
    return lm_concat(out, parts, n, 0, err);
}

static lm_status zeros_like(lm_tensor **out, const lm_tensor *x, lm_error *err)
{
    return lm_tensor_zeros(out, lm_tensor_backend(x), LM_DTYPE_F32, x->ndim, x->shape, err);
}

/* Strength-weighted mean of the model outputs of entries [first, first+count). */
static lm_status polarity_mean(lm_tensor **out, const lm_tensor *y, const active_set *a, int first,
                               int count, int64_t rows, lm_error *err)
{
    lm_tensor *acc = NULL, *part = NULL, *sum = NULL;
    double wsum = 0;
    lm_status st = LM_OK;
    for (int k = first; k < first + count && st == LM_OK; k++) {
        wsum += (double)a->weight[k];
        st = lm_tensor_view_slice(&part, y, 0, k * rows, (k + 1) * rows, err);
        if (st == LM_OK && count == 1 && a->weight[k] == 1.0f) {
            *out = part;
            return LM_OK;
        }
        if (st == LM_OK)
            st = acc ? lm_sampler__axpby(&sum, 1.0f, acc, a->weight[k], part, err)
                     : lm_scale(&sum, part, a->weight[k], 0.0f, err);
        lm_tensor_free(part);
        lm_sampler__replace(&acc, sum);
        sum = NULL;
    }
    if (st == LM_OK && acc && wsum != 0.0)
        st = lm_scale(out, acc, (float)(1.0 / wsum), 0.0f, err);
    lm_tensor_free(acc);
    return st;
}

/* pos, or neg + (pos - neg) * cfg. */
static lm_status combine(lm_tensor **out, const lm_tensor *pos, const lm_tensor *neg, double cfg,
                         lm_error *err)
{
    lm_tensor *diff = NULL, *scaled = NULL;
    if (!neg)
        return lm_tensor_view(out, pos, err);
    lm_status st = lm_sub(&diff, pos, neg, err);
    if (st == LM_OK)
        st = lm_scale(&scaled, diff, (float)cfg, 0.0f, err);
    if (st == LM_OK)
        st = lm_add(out, neg, scaled, err);
    lm_tensor_free(diff);
    lm_tensor_free(scaled);
    return st;
}

static lm_status evaluate(lm_tensor **y, const lm_sample_opts *o, const lm_tensor *x, float sigma,
                          const active_set *a, lm_error *err)
{
    lm_tensor *batch = NULL;
    lm_status st = repeat_batch(&batch, x, a->n, err);
    if (st == LM_OK)
        st = o->model(y, batch, sigma, a->conds, a->n, o->model_user, err);
    if (st == LM_OK && (!*y || !same_shape(*y, batch))) {
        st = *y ? shape_error(err, "the model's prediction", *y, batch)
                : lm_errorf(err, LM_EINTERNAL, NULL, "the model callback returned no tensor");
        lm_tensor_free(*y);
        *y = NULL;
    }
    lm_tensor_free(batch);
    return st;
}

lm_status lm_sampler__denoise(lm_sampler_run_state *rs, const lm_tensor *x, float sigma,
                              lm_tensor **out, lm_error *err)
{
    const lm_sample_opts *o = rs->o;
    active_set a = { .n = 0 };
    lm_tensor *y = NULL, *pos = NULL, *neg = NULL;
    bool guided = !cfg_is_one(o->cfg);
    *out = NULL;
    lm_status st = gather(&a, o->positive, o->n_positive, o, sigma, err);
    a.n_pos = a.n;
    if (st == LM_OK && guided)
        st = gather(&a, o->negative, o->n_negative, o, sigma, err);
    if (st == LM_OK && a.n > 0)
        st = evaluate(&y, o, x, sigma, &a, err);
    if (st == LM_OK)
        st = a.n_pos > 0 ? polarity_mean(&pos, y, &a, 0, a.n_pos, x->shape[0], err) : LM_OK;
    if (st == LM_OK && !pos)
        st = zeros_like(&pos, x, err);
    if (st == LM_OK && guided && a.n > a.n_pos)
        st = polarity_mean(&neg, y, &a, a.n_pos, a.n - a.n_pos, x->shape[0], err);
    if (st == LM_OK && guided && !neg)
        st = zeros_like(&neg, x, err);
    if (st == LM_OK)
        st = combine(out, pos, neg, o->cfg, err);
    lm_tensor_free(y);
    lm_tensor_free(pos);
    lm_tensor_free(neg);
    return st;
}

/* ---- running ---- */

static lm_status check_opts(const lm_sample_opts *o, const lm_tensor *x, lm_error *err)
{
    if ((int)o->sampler < 0 || o->sampler >= LM_SAMPLER_COUNT)
        return lm_errorf(err, LM_EINVAL, NULL, "unknown sampler %d", (int)o->sampler);
    if (!o->model)
        return lm_errorf(err, LM_EINVAL, NULL, "no model callback was given to the sampler");
    if (x->ndim < 1 || x->shape[0] < 1)
        return lm_errorf(err, LM_EINVAL, NULL, "the latent has no batch dimension");
    for (int i = 0; i < o->n_sigmas; i++) {
        float s = o->sigmas[i];
        if (!isfinite(s) || s < 0.0f || (s == 0.0f && i < o->n_sigmas - 1))
            return lm_errorf(err, LM_EINVAL, "invalid_sigmas",
                             "sigma %d of the schedule is %g; sigmas must be finite, positive, "
                             "and only the last may be 0",
                             i, (double)s);
    }
    return LM_OK;
}

static lm_status dispatch(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err)
{
    switch (rs->o->sampler) {
    case LM_SAMPLER_EULER:
    case LM_SAMPLER_DDIM: /* DDIM (eta 0) on a flow model is Euler's update, exactly */
        return lm_sampler__euler(rs, x, err);
    case LM_SAMPLER_EULER_ANCESTRAL:
        return lm_sampler__euler_ancestral(rs, x, err);
    case LM_SAMPLER_HEUN:
        return lm_sampler__heun(rs, x, err);
    case LM_SAMPLER_DPM_2:
        return lm_sampler__dpm_2(rs, x, err);
    case LM_SAMPLER_LMS:
        return lm_sampler__lms(rs, x, err);
    case LM_SAMPLER_DPMPP_2M:
        return lm_sampler__dpmpp_2m(rs, x, err);
    case LM_SAMPLER_DPMPP_2M_SDE:
        return lm_sampler__dpmpp_2m_sde(rs, x, err);
    case LM_SAMPLER_UNI_PC:
    case LM_SAMPLER_UNI_PC_BH2:
        return lm_sampler__uni_pc(rs, x, rs->o->sampler == LM_SAMPLER_UNI_PC_BH2, err);
    default:
        return lm_errorf(err, LM_EINVAL, NULL, "unknown sampler %d", (int)rs->o->sampler);
    }
}

lm_status lm_sampler_run(lm_tensor **out, const lm_sample_opts *opts, const lm_tensor *x_start,
                         lm_error *err)
{
    lm_tensor *x = NULL;
    *out = NULL;
    lm_status st = check_opts(opts, x_start, err);
    if (st == LM_OK) /* an F32 contiguous copy: the state the samplers replace */
        st = lm_scale(&x, x_start, 1.0f, 0.0f, err);
    if (st != LM_OK || opts->n_sigmas < 2) {
        *out = x;
        return st;
    }
    lm_sampler_run_state rs = { .o = opts, .steps = opts->n_sigmas - 1 };
    st = dispatch(&rs, &x, err);
    lm_rng_free(rs.rng);
    if (st != LM_OK) {
        lm_tensor_free(x);
        return st;
    }
    *out = x;
    return LM_OK;
}

lm_status lm_sampler_ksampler(lm_tensor **out, const lm_sample_opts *opts, const lm_tensor *latent,
                              const lm_tensor *noise, lm_error *err)
{
    lm_tensor *start = NULL, *x = NULL;
    *out = NULL;
    if (opts->n_sigmas < 2) /* ComfyUI returns the latent as it came */
        return lm_scale(out, latent, 1.0f, 0.0f, err);
    lm_status st = lm_sampler_noise_scaling(&start, opts->sigmas[0], noise, latent, err);
    if (st == LM_OK)
        st = lm_sampler_run(&x, opts, start, err);
    lm_tensor_free(start);
    float last = opts->sigmas[opts->n_sigmas - 1];
    if (st != LM_OK || last == 0.0f || !(1.0f - last > 0.0f)) {
        *out = x;
        return st;
    }
    st = lm_scale(out, x, 1.0f / (1.0f - last), 0.0f, err);
    lm_tensor_free(x);
    return st;
}
