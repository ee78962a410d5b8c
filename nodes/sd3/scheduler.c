/* nodes/sd3/scheduler.c — the flow model's sigma table and the named schedules.
 *
 * Every schedule is computed with the float32 (and, where ComfyUI uses Python floats,
 * double) arithmetic of the code whose behaviour it reproduces, operation by operation:
 * torch.linspace's two-sided formula (start + step*i on the first half, end - step*(n-1-i)
 * on the second), time_snr_shift as alpha*t / (1 + (alpha-1)*t), table look-ups by
 * truncated double indices. The Beta quantile (scheduler `beta`) is the only numerical
 * method here: the regularized incomplete beta function by its continued fraction
 * (DLMF 8.17.22, modified Lentz evaluation) inverted by bisection. */
#include "nodes/sd3/scheduler.h"

#include "core/base/alloc.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define BETA_ALPHA   0.6 /* ComfyUI's beta scheduler defaults */
#define BETA_BETA    0.6
#define KARRAS_RHO   7.0
#define LQ_THRESHOLD 0.025 /* ComfyUI's linear_quadratic_schedule default threshold_noise */

static const char *const schedule_names[LM_SCHEDULE_COUNT] = {
    [LM_SCHEDULE_SIMPLE] = "simple",
    [LM_SCHEDULE_SGM_UNIFORM] = "sgm_uniform",
    [LM_SCHEDULE_NORMAL] = "normal",
    [LM_SCHEDULE_KARRAS] = "karras",
    [LM_SCHEDULE_EXPONENTIAL] = "exponential",
    [LM_SCHEDULE_BETA] = "beta",
    [LM_SCHEDULE_DDIM_UNIFORM] = "ddim_uniform",
    [LM_SCHEDULE_KL_OPTIMAL] = "kl_optimal",
    [LM_SCHEDULE_LINEAR_QUADRATIC] = "linear_quadratic",
    [LM_SCHEDULE_REFERENCE] = "reference",
};

/* ---- model sampling ---- */

/* time_snr_shift(alpha, t) in float32: the Python scalars alpha and alpha-1 are rounded
 * to float32 when they meet a float32 tensor, each product and sum rounds once. */
static float shift_f32(double alpha, float t)
{
    if (alpha == 1.0)
        return t;
    float num = (float)alpha * t;
    float den = 1.0f + (float)(alpha - 1.0) * t;
    return num / den;
}

float lm_scheduler_sigma(const lm_model_sampling *ms, float timestep)
{
    return shift_f32(ms->shift, timestep / LM_FLOW_MULTIPLIER);
}

float lm_scheduler_timestep(float sigma)
{
    return sigma * LM_FLOW_MULTIPLIER;
}

float lm_scheduler_table(const lm_model_sampling *ms, int i)
{
    /* ComfyUI: sigma((arange(1, T+1) / T) * multiplier) */
    float t = ((float)(i + 1) / (float)LM_FLOW_TIMESTEPS) * LM_FLOW_MULTIPLIER;
    return lm_scheduler_sigma(ms, t);
}

float lm_scheduler_sigma_min(const lm_model_sampling *ms)
{
    return lm_scheduler_table(ms, 0);
}

float lm_scheduler_sigma_max(const lm_model_sampling *ms)
{
    return lm_scheduler_table(ms, LM_FLOW_TIMESTEPS - 1);
}

double lm_scheduler_percent_to_sigma(const lm_model_sampling *ms, double percent)
{
    if (percent <= 0.0)
        return 1.0;
    if (percent >= 1.0)
        return 0.0;
    double t = 1.0 - percent;
    if (ms->shift == 1.0)
        return t;
    return ms->shift * t / (1.0 + (ms->shift - 1.0) * t);
}

/* ---- names ---- */

const char *lm_scheduler_name(lm_schedule s)
{
    if ((int)s < 0 || s >= LM_SCHEDULE_COUNT)
        return NULL;
    return schedule_names[s];
}

lm_status lm_scheduler_parse(lm_schedule *out, const char *name, lm_error *err)
{
    for (int i = 0; i < LM_SCHEDULE_COUNT; i++) {
        if (name && strcmp(name, schedule_names[i]) == 0) {
            *out = (lm_schedule)i;
            return LM_OK;
        }
    }
    lm_errorf(err, LM_ENOTFOUND, "value_not_in_list", "unknown scheduler \"%s\"",
              name ? name : "(null)");
    lm_error_hint(err, "use one of simple, sgm_uniform, normal, karras, exponential, beta, "
                       "ddim_uniform, kl_optimal, linear_quadratic, reference");
    return LM_ENOTFOUND;
}

/* ---- helpers ---- */

void lm_sigmas_fini(lm_sigmas *s)
{
    if (!s)
        return;
    lm_free(s->sigma);
    s->sigma = NULL;
    s->count = 0;
}

static lm_status sigmas_alloc(lm_sigmas *s, int count, lm_error *err)
{
    lm_sigmas_fini(s);
    s->sigma = lm_malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
    if (!s->sigma)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for a schedule of %d sigmas", count);
    s->count = count;
    return LM_OK;
}

/* torch.linspace(start, end, n)[i] for float32 on the CPU (scalar path). */
static float linspace_f32(float start, float end, int n, int i)
{
    if (n == 1)
        return start;
    float step = (end - start) / (float)(n - 1);
    if (i < n / 2)
        return start + step * (float)i;
    return end - step * (float)(n - 1 - i);
}

/* ---- the schedules ---- */

/* Uniform timesteps from timestep(sigma_max) to timestep(sigma_min), each mapped through
 * sigma(): the end point is a shifted sigma shifted once more (README "double shift").
 * `n_lin` points are made and the first `n_take` kept; a 0 is appended when `zero`. */
static lm_status uniform_timesteps(lm_sigmas *out, const lm_model_sampling *ms, float sigma_min,
                                   int n_lin, int n_take, bool zero, lm_error *err)
{
    float start = lm_scheduler_timestep(lm_scheduler_sigma_max(ms));
    float end = lm_scheduler_timestep(sigma_min);
    lm_status st = sigmas_alloc(out, n_take + (zero ? 1 : 0), err);
    if (st != LM_OK)
        return st;
    for (int i = 0; i < n_take; i++)
        out->sigma[i] = lm_scheduler_sigma(ms, linspace_f32(start, end, n_lin, i));
    if (zero)
        out->sigma[n_take] = 0.0f;
    return LM_OK;
}

/* Stability's get_sigmas (sd3_infer.py): its table is sigma(i/1000) without ComfyUI's
 * round trip through *1000, which only matters for the start point sigma_min. */
static lm_status reference_sigmas(lm_sigmas *out, const lm_model_sampling *ms, int steps,
                                  lm_error *err)
{
    float sigma_min = shift_f32(ms->shift, 1.0f / (float)LM_FLOW_TIMESTEPS);
    return uniform_timesteps(out, ms, sigma_min, steps, steps, true, err);
}

static lm_status normal_sigmas(lm_sigmas *out, const lm_model_sampling *ms, int steps,
                               lm_error *err)
{
    float sigma_min = lm_scheduler_sigma_min(ms);
    float last = lm_scheduler_sigma(ms, lm_scheduler_timestep(sigma_min));
    if (fabs((double)last) <= 1e-5) /* ComfyUI: the schedule already reaches ~0 */
        return uniform_timesteps(out, ms, sigma_min, steps + 1, steps + 1, false, err);
    return uniform_timesteps(out, ms, sigma_min, steps, steps, true, err);
}

static lm_status simple_sigmas(lm_sigmas *out, const lm_model_sampling *ms, int steps,
                               lm_error *err)
{
    lm_status st = sigmas_alloc(out, steps + 1, err);
    if (st != LM_OK)
        return st;
    double stride = (double)LM_FLOW_TIMESTEPS / steps;
    for (int i = 0; i < steps; i++)
        out->sigma[i] = lm_scheduler_table(ms, LM_FLOW_TIMESTEPS - 1 - (int)(i * stride));
    out->sigma[steps] = 0.0f;
    return LM_OK;
}

/* Karras et al. 2022 (EDM) eq. 5: (max^(1/rho) + ramp*(min^(1/rho) - max^(1/rho)))^rho,
 * ramp = linspace(0, 1) in float32, the 1/rho powers in double (Python floats). */
static lm_status karras_sigmas(lm_sigmas *out, const lm_model_sampling *ms, int steps,
                               lm_error *err)
{
    lm_status st = sigmas_alloc(out, steps + 1, err);
    if (st != LM_OK)
        return st;
    double lo = pow((double)lm_scheduler_sigma_min(ms), 1.0 / KARRAS_RHO);
    double hi = pow((double)lm_scheduler_sigma_max(ms), 1.0 / KARRAS_RHO);
    for (int i = 0; i < steps; i++) {
        float ramp = linspace_f32(0.0f, 1.0f, steps, i);
        float base = (float)hi + ramp * (float)(lo - hi);
        out->sigma[i] = powf(base, (float)KARRAS_RHO);
    }
    out->sigma[steps] = 0.0f;
    return LM_OK;
}

/* exp(linspace(log(sigma_max), log(sigma_min))) with the logs in double. */
static lm_status exponential_sigmas(lm_sigmas *out, const lm_model_sampling *ms, int steps,
                                    lm_error *err)
{
    lm_status st = sigmas_alloc(out, steps + 1, err);
    if (st != LM_OK)
        return st;
    float a = (float)log((double)lm_scheduler_sigma_max(ms));
    float b = (float)log((double)lm_scheduler_sigma_min(ms));
    for (int i = 0; i < steps; i++)
        out->sigma[i] = expf(linspace_f32(a, b, steps, i));
    out->sigma[steps] = 0.0f;
    return LM_OK;
}

/* tan(i/(n-1) * atan(sigma_min) + (1 - i/(n-1)) * atan(sigma_max)), float32 tensor math
 * with the atans in double ("Align Your Steps" KL-optimal schedule, Sabour et al. 2024). */
static lm_status kl_optimal_sigmas(lm_sigmas *out, const lm_model_sampling *ms, int steps,
                                   lm_error *err)
{
    lm_status st = sigmas_alloc(out, steps + 1, err);
    if (st != LM_OK)
        return st;
    float amin = (float)atan((double)lm_scheduler_sigma_min(ms));
    float amax = (float)atan((double)lm_scheduler_sigma_max(ms));
    for (int i = 0; i < steps; i++) {
        float u = steps > 1 ? (float)i / (float)(steps - 1) : 0.0f; /* ComfyUI: NaN */
        out->sigma[i] = tanf(u * amin + (1.0f - u) * amax);
    }
    out->sigma[steps] = 0.0f;
    return LM_OK;
}

/* Table entries 1, 1+k, 1+2k, … (k = 1000 // steps), reversed, with a 0 at the end. */
static lm_status ddim_uniform_sigmas(lm_sigmas *out, const lm_model_sampling *ms, int steps,
                                     lm_error *err)
{
    bool zero = fabs((double)lm_scheduler_table(ms, 1)) > 1e-5;
    if (!zero)
        steps += 1;
    int stride = LM_MAX(LM_FLOW_TIMESTEPS / steps, 1);
    int n = (LM_FLOW_TIMESTEPS - 1 + stride - 1) / stride; /* indices 1, 1+k, … < 1000 */
    lm_status st = sigmas_alloc(out, n + (zero ? 1 : 0), err);
    if (st != LM_OK)
        return st;
    for (int j = 0; j < n; j++)
        out->sigma[n - 1 - j] = lm_scheduler_table(ms, 1 + j * stride);
    if (zero)
        out->sigma[n] = 0.0f;
    return LM_OK;
}

/* ComfyUI's linear_quadratic_schedule (from Genmo's Mochi): sigma_i = (1 - s_i) * sigma_max
 * where s_i rises linearly by threshold/linear_steps over the first linear_steps = steps // 2
 * points, then follows the quadratic through (linear_steps, threshold) that reaches 1 at
 * i = steps. The coefficients and points are Python floats (double, in the reference's
 * order of operations), rounded to float32 once before the float32 product with sigma_max.
 * One step is [sigma_max, 0] (no linear part: s_0 = 0). */
static lm_status linear_quadratic_sigmas(lm_sigmas *out, const lm_model_sampling *ms, int steps,
                                         lm_error *err)
{
    lm_status st = sigmas_alloc(out, steps + 1, err);
    if (st != LM_OK)
        return st;
    float smax = lm_scheduler_sigma_max(ms);
    int lin = steps / 2, quad = steps - lin;
    double thr = LQ_THRESHOLD, diff = (double)lin - thr * (double)steps;
    double qc = lin ? diff / (double)((int64_t)lin * quad * quad) : 0.0;
    double lc = lin ? thr / (double)lin - 2.0 * diff / (double)((int64_t)quad * quad) : 0.0;
    double c = qc * (double)((int64_t)lin * lin);
    for (int i = 0; i < steps; i++) {
        double s = i < lin ? (double)i * thr / (double)lin
                           : qc * ((double)i * (double)i) + lc * (double)i + c;
        out->sigma[i] = (float)(1.0 - s) * smax;
    }
    out->sigma[steps] = 0.0f;
    return LM_OK;
}

/* ---- Beta(a, b) quantiles ---- */

/* Continued fraction of I_x(a, b) (DLMF 8.17.22), modified Lentz; converges fast for
 * x < (a+1)/(a+b+2). */
static double beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / (fabs(d) < tiny ? tiny : d);
    double f = d;
    for (int m = 1; m <= 500; m++) {
        for (int odd = 0; odd < 2; odd++) {
            double num = odd ? -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
                             : m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
            d = 1.0 + num * d;
            c = 1.0 + num / c;
            d = 1.0 / (fabs(d) < tiny ? tiny : d);
            c = fabs(c) < tiny ? tiny : c;
            f *= d * c;
            if (odd && fabs(d * c - 1.0) < 1e-16)
                return f;
        }
    }
    return f;
}

/* The regularized incomplete beta function I_x(a, b). */
static double beta_cdf(double a, double b, double x)
{
    if (x <= 0.0)
        return 0.0;
    if (x >= 1.0)
        return 1.0;
    double lfront = a * log(x) + b * log1p(-x) - (lgamma(a) + lgamma(b) - lgamma(a + b));
    if (x < (a + 1.0) / (a + b + 2.0))
        return exp(lfront) * beta_cf(a, b, x) / a;
    return 1.0 - exp(lfront) * beta_cf(b, a, 1.0 - x) / b;
}

/* The Beta(a, b) quantile of p by bisection to the last bit. Like scipy (Boost's inverse),
 * a quantile at the density's inflection point (a, b < 1: (1-a)/(2-a-b), the median 0.5
 * when a = b) is returned exactly, so p = 0.5 lands on 499.5 and rounds to 500. */
static double beta_ppf(double a, double b, double p)
{
    if (p <= 0.0)
        return 0.0;
    if (p >= 1.0)
        return 1.0;
    if (a < 1.0 && b < 1.0) {
        double xs = (1.0 - a) / (2.0 - a - b);
        if (fabs(beta_cdf(a, b, xs) - p) / p < 3.0 * DBL_EPSILON)
            return xs;
    }
    double lo = 0.0, hi = 1.0;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi)
            break;
        if (beta_cdf(a, b, mid) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* Timesteps rint(ppf(1 - i/steps) * 999) of a Beta(0.6, 0.6), repeats dropped, looked up
 * in the table; so `beta` may return fewer than steps+1 sigmas, as ComfyUI does. */
static lm_status beta_sigmas(lm_sigmas *out, const lm_model_sampling *ms, int steps, lm_error *err)
{
    lm_status st = sigmas_alloc(out, steps + 1, err);
    if (st != LM_OK)
        return st;
    double step = 1.0 / steps; /* numpy.linspace(0, 1, steps, endpoint=False) */
    double last = -1.0;
    int n = 0;
    for (int i = 0; i < steps; i++) {
        double p = 1.0 - (double)i * step;
        double t = nearbyint(beta_ppf(BETA_ALPHA, BETA_BETA, p) * (LM_FLOW_TIMESTEPS - 1));
        if (t != last)
            out->sigma[n++] = lm_scheduler_table(ms, (int)t);
        last = t;
    }
    out->sigma[n++] = 0.0f;
    out->count = n;
    return LM_OK;
}

/* ---- entry points ---- */

lm_status lm_scheduler_sigmas(lm_sigmas *out, const lm_model_sampling *ms, lm_schedule s, int steps,
                              lm_error *err)
{
    if (steps < 1 || steps > LM_STEPS_MAX)
        return lm_errorf(err, LM_ERANGE, "value_out_of_range",
                         "a schedule of %d steps was asked for; it must have 1 to %d steps", steps,
                         LM_STEPS_MAX);
    if (!(ms->shift > 0.0))
        return lm_errorf(err, LM_ERANGE, "value_out_of_range",
                         "model sampling shift %g is not positive", ms->shift);
    switch (s) {
    case LM_SCHEDULE_SIMPLE:
        return simple_sigmas(out, ms, steps, err);
    case LM_SCHEDULE_SGM_UNIFORM:
        return uniform_timesteps(out, ms, lm_scheduler_sigma_min(ms), steps + 1, steps, true, err);
    case LM_SCHEDULE_NORMAL:
        return normal_sigmas(out, ms, steps, err);
    case LM_SCHEDULE_KARRAS:
        return karras_sigmas(out, ms, steps, err);
    case LM_SCHEDULE_EXPONENTIAL:
        return exponential_sigmas(out, ms, steps, err);
    case LM_SCHEDULE_BETA:
        return beta_sigmas(out, ms, steps, err);
    case LM_SCHEDULE_DDIM_UNIFORM:
        return ddim_uniform_sigmas(out, ms, steps, err);
    case LM_SCHEDULE_KL_OPTIMAL:
        return kl_optimal_sigmas(out, ms, steps, err);
    case LM_SCHEDULE_LINEAR_QUADRATIC:
        return linear_quadratic_sigmas(out, ms, steps, err);
    case LM_SCHEDULE_REFERENCE:
        return reference_sigmas(out, ms, steps, err);
    default:
        return lm_errorf(err, LM_EINVAL, NULL, "unknown schedule %d", (int)s);
    }
}

/* calculate_sigmas plus the dpm_2 / uni_pc rule: one more step, penultimate sigma out. */
static lm_status ksampler_full(lm_sigmas *out, const lm_model_sampling *ms, lm_schedule s,
                               int steps, bool discard_penultimate, lm_error *err)
{
    lm_status st = lm_scheduler_sigmas(out, ms, s, steps + (discard_penultimate ? 1 : 0), err);
    if (st != LM_OK || !discard_penultimate || out->count < 2)
        return st;
    out->sigma[out->count - 2] = out->sigma[out->count - 1];
    out->count -= 1;
    return LM_OK;
}

lm_status lm_scheduler_ksampler(lm_sigmas *out, const lm_model_sampling *ms, lm_schedule s,
                                int steps, double denoise, bool discard_penultimate, lm_error *err)
{
    if (steps < 1 || steps > LM_STEPS_MAX)
        return lm_errorf(err, LM_ERANGE, "value_out_of_range",
                         "steps is %d; it must be between 1 and %d", steps, LM_STEPS_MAX);
    if (denoise > 0.9999)
        return ksampler_full(out, ms, s, steps, discard_penultimate, err);
    if (!(denoise > 0.0))
        return sigmas_alloc(out, 0, err);
    double stretched = (double)steps / denoise;
    if (stretched > LM_STEPS_MAX)
        return lm_errorf(err, LM_ERANGE, "value_out_of_range",
                         "denoise %g with %d steps needs a schedule of %.0f steps, more than %d",
                         denoise, steps, stretched, LM_STEPS_MAX);
    lm_status st = ksampler_full(out, ms, s, (int)stretched, discard_penultimate, err);
    if (st != LM_OK || out->count <= steps + 1)
        return st;
    int drop = out->count - (steps + 1);
    memmove(out->sigma, out->sigma + drop, (size_t)(steps + 1) * sizeof(float));
    out->count = steps + 1;
    return LM_OK;
}

int lm_scheduler_strength_start(int steps, double denoise)
{
    double start = (double)steps * (1.0 - denoise);
    if (!(start > 0.0))
        return 0;
    if (start >= steps)
        return steps;
    return (int)start;
}

lm_status lm_scheduler_strength(lm_sigmas *out, const lm_model_sampling *ms, lm_schedule s,
                                int steps, double strength, lm_error *err)
{
    lm_status st = lm_scheduler_sigmas(out, ms, s, steps, err);
    if (st != LM_OK)
        return st;
    int start = LM_MIN(lm_scheduler_strength_start(steps, strength), out->count);
    memmove(out->sigma, out->sigma + start, (size_t)(out->count - start) * sizeof(float));
    out->count -= start;
    return LM_OK;
}

void lm_scheduler_advanced(lm_sigmas *s, int start_at_step, int end_at_step,
                           bool return_with_leftover_noise)
{
    if (end_at_step >= 0 && end_at_step < s->count - 1) {
        s->count = end_at_step + 1;
        if (!return_with_leftover_noise)
            s->sigma[s->count - 1] = 0.0f;
    }
    if (start_at_step <= 0)
        return;
    if (start_at_step >= s->count - 1) {
        s->count = 0;
        return;
    }
    memmove(s->sigma, s->sigma + start_at_step, (size_t)(s->count - start_at_step) * sizeof(float));
    s->count -= start_at_step;
}
