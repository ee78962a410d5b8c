/* nodes/sd3/sampler_ode.c — the update rules of the one- and two-evaluation samplers.
 *
 * A flow model gives x = (1 - sigma)*x0 + sigma*noise, and its probability-flow ODE in sigma
 * is dx/dsigma = (x - denoised)/sigma (the velocity noise - x0). Euler, Heun, DPM-2 and LMS
 * integrate that ODE as they would for any denoiser, and DPM-Solver++(2M) integrates it in
 * t = -log sigma as the SD3 reference does. The stochastic samplers need the flow form of
 * their noise: euler_ancestral steps down to sigma_down by Euler, scales the signal from
 * alpha_down = 1 - sigma_down to alpha_next = 1 - sigma_next and adds fresh noise so the
 * total noise std is sigma_next again; dpmpp_2m_sde uses the half log-SNR
 * lambda = log((1 - sigma)/sigma) of the flow (docs/models.md "Sampling" derives both).
 *
 * Precision: euler and dpmpp_2m compute their scalar coefficients in float32 like the
 * reference (sd3_impls.py), so golden runs match step for step; the others compute them in
 * double. Every tensor update is a float32 op. */
#include "core/tensor/ops.h"
#include "nodes/sd3/sampler_impl.h"

#include <math.h>

#define LMS_ORDER 4

/* x + dt * slope(x, denoised, sigma): one Euler step. */
static lm_status euler_step(lm_tensor **out, const lm_tensor *x, const lm_tensor *denoised,
                            float sigma, float dt, lm_error *err)
{
    lm_tensor *d = NULL;
    lm_status st = lm_sampler__slope(&d, x, denoised, sigma, err);
    if (st == LM_OK)
        st = lm_sampler__axpby(out, 1.0f, x, dt, d, err);
    else
        *out = NULL;
    lm_tensor_free(d);
    return st;
}

/* A copy of t (the state becomes the prediction on a last step to sigma 0). */
static lm_status copy_of(lm_tensor **out, const lm_tensor *t, lm_error *err)
{
    return lm_scale(out, t, 1.0f, 0.0f, err);
}

lm_status lm_sampler__euler(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err)
{
    const float *s = rs->o->sigmas;
    for (int i = 0; i < rs->steps; i++) {
        lm_tensor *den = NULL, *next = NULL;
        lm_status st = lm_sampler__step_denoise(rs, i, *x, &den, err);
        if (st == LM_OK)
            st = euler_step(&next, *x, den, s[i], s[i + 1] - s[i], err);
        lm_tensor_free(den);
        if (st != LM_OK)
            return st;
        lm_sampler__replace(x, next);
    }
    return LM_OK;
}

/* ---- euler_ancestral, flow form ---- */

/* One ancestral step from s0 to s1 > 0. sigma_down = s1 * (1 + (s1/s0 - 1)*eta) (eta 1:
 * s1^2/s0); Euler to sigma_down; then x * alpha_next/alpha_down + renoise * z with
 * renoise^2 = s1^2 - (sigma_down * alpha_next / alpha_down)^2. */
static lm_status ancestral_step(lm_sampler_run_state *rs, lm_tensor **x, const lm_tensor *den,
                                double s0, double s1, lm_error *err)
{
    double eta = (double)rs->o->eta;
    double down = s1 * (1.0 + (s1 / s0 - 1.0) * eta);
    double a_next = 1.0 - s1, a_down = 1.0 - down;
    double ratio = down / s0;
    lm_tensor *step = NULL, *z = NULL, *next = NULL;
    lm_status st = lm_sampler__axpby(&step, (float)ratio, *x, (float)(1.0 - ratio), den, err);
    if (st != LM_OK || !(eta > 0.0)) {
        if (st == LM_OK)
            lm_sampler__replace(x, step);
        return st;
    }
    double kept = down * a_next / a_down;
    double renoise = sqrt(fmax(s1 * s1 - kept * kept, 0.0)) * (double)rs->o->s_noise;
    st = lm_sampler__randn_like(rs, *x, &z, err);
    if (st == LM_OK)
        st = lm_sampler__axpby(&next, (float)(a_next / a_down), step, (float)renoise, z, err);
    lm_tensor_free(step);
    lm_tensor_free(z);
    if (st == LM_OK)
        lm_sampler__replace(x, next);
    return st;
}

lm_status lm_sampler__euler_ancestral(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err)
{
    const float *s = rs->o->sigmas;
    for (int i = 0; i < rs->steps; i++) {
        lm_tensor *den = NULL, *next = NULL;
        lm_status st = lm_sampler__step_denoise(rs, i, *x, &den, err);
        if (st == LM_OK && s[i + 1] == 0.0f) {
            st = copy_of(&next, den, err);
            if (st == LM_OK)
                lm_sampler__replace(x, next);
        } else if (st == LM_OK) {
            st = ancestral_step(rs, x, den, (double)s[i], (double)s[i + 1], err);
        }
        lm_tensor_free(den);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

/* ---- heun and dpm_2: a second evaluation per step ---- */

/* The slope at (x + dt_probe * d, sigma_probe): the second evaluation of Heun and DPM-2. */
static lm_status probe_slope(lm_sampler_run_state *rs, lm_tensor **d2, const lm_tensor *x,
                             const lm_tensor *d, float dt_probe, float sigma_probe, lm_error *err)
{
    lm_tensor *x2 = NULL, *den2 = NULL;
    *d2 = NULL;
    lm_status st = lm_sampler__axpby(&x2, 1.0f, x, dt_probe, d, err);
    if (st == LM_OK)
        st = lm_sampler__denoise(rs, x2, sigma_probe, &den2, err);
    if (st == LM_OK)
        st = lm_sampler__slope(d2, x2, den2, sigma_probe, err);
    lm_tensor_free(x2);
    lm_tensor_free(den2);
    return st;
}

/* Heun (Karras et al. 2022, Alg. 1 without churn): trapezoid of the slopes at both ends;
 * plain Euler on the step to sigma 0. */
static lm_status heun_step(lm_sampler_run_state *rs, lm_tensor **next, const lm_tensor *x,
                           const lm_tensor *d, float s0, float s1, lm_error *err)
{
    lm_tensor *d2 = NULL, *mean = NULL;
    float dt = s1 - s0;
    if (s1 == 0.0f)
        return lm_sampler__axpby(next, 1.0f, x, dt, d, err);
    lm_status st = probe_slope(rs, &d2, x, d, dt, s1, err);
    if (st == LM_OK)
        st = lm_sampler__axpby(&mean, 0.5f, d, 0.5f, d2, err);
    if (st == LM_OK)
        st = lm_sampler__axpby(next, 1.0f, x, dt, mean, err);
    lm_tensor_free(d2);
    lm_tensor_free(mean);
    return st;
}

/* DPM-2: the slope at the midpoint in log sigma (torch.lerp of the logs, weight 0.5) moves
 * x over the whole step; plain Euler on the step to sigma 0. */
static lm_status dpm_2_step(lm_sampler_run_state *rs, lm_tensor **next, const lm_tensor *x,
                            const lm_tensor *d, float s0, float s1, lm_error *err)
{
    lm_tensor *d2 = NULL;
    if (s1 == 0.0f)
        return lm_sampler__axpby(next, 1.0f, x, s1 - s0, d, err);
    float l0 = logf(s0), l1 = logf(s1);
    float mid = expf(l1 - (l1 - l0) * 0.5f);
    lm_status st = probe_slope(rs, &d2, x, d, mid - s0, mid, err);
    if (st == LM_OK)
        st = lm_sampler__axpby(next, 1.0f, x, s1 - s0, d2, err);
    lm_tensor_free(d2);
    return st;
}

static lm_status two_eval_loop(lm_sampler_run_state *rs, lm_tensor **x, bool heun, lm_error *err)
{
    const float *s = rs->o->sigmas;
    for (int i = 0; i < rs->steps; i++) {
        lm_tensor *den = NULL, *d = NULL, *next = NULL;
        lm_status st = lm_sampler__step_denoise(rs, i, *x, &den, err);
        if (st == LM_OK)
            st = lm_sampler__slope(&d, *x, den, s[i], err);
        if (st == LM_OK)
            st = heun ? heun_step(rs, &next, *x, d, s[i], s[i + 1], err)
                      : dpm_2_step(rs, &next, *x, d, s[i], s[i + 1], err);
        lm_tensor_free(den);
        lm_tensor_free(d);
        if (st != LM_OK)
            return st;
        lm_sampler__replace(x, next);
    }
    return LM_OK;
}

lm_status lm_sampler__heun(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err)
{
    return two_eval_loop(rs, x, true, err);
}

lm_status lm_sampler__dpm_2(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err)
{
    return two_eval_loop(rs, x, false, err);
}

/* ---- lms ---- */

/* Adams-Bashforth weight of the slope at sigma t[i-j] for the step t[i] -> t[i+1]: the
 * integral over the step of the Lagrange basis polynomial of node i-j on nodes
 * t[i], …, t[i-order+1]. Degree <= 3, so 4-point Gauss-Legendre is exact. */
static double lms_coeff(int order, const float *t, int i, int j)
{
    static const double gx[4] = { -0.8611363115940526, -0.3399810435848563, 0.3399810435848563,
                                  0.8611363115940526 };
    static const double gw[4] = { 0.3478548451374538, 0.6521451548625461, 0.6521451548625461,
                                  0.3478548451374538 };
    double a = (double)t[i], b = (double)t[i + 1], sum = 0.0;
    for (int q = 0; q < 4; q++) {
        double tau = 0.5 * (b - a) * gx[q] + 0.5 * (a + b), prod = 1.0;
        for (int k = 0; k < order; k++)
            if (k != j)
                prod *= (tau - (double)t[i - k]) / ((double)t[i - j] - (double)t[i - k]);
        sum += gw[q] * prod;
    }
    return 0.5 * (b - a) * sum;
}

/* x + sum_j coeff_j * ds[j]; ds[0] is the newest slope. */
static lm_status lms_update(lm_tensor **x, lm_tensor *const *ds, int order, const float *s, int i,
                            lm_error *err)
{
    lm_tensor *acc = NULL, *next = NULL;
    lm_status st = lm_scale(&acc, *x, 1.0f, 0.0f, err);
    for (int j = 0; j < order && st == LM_OK; j++) {
        st = lm_sampler__axpby(&next, 1.0f, acc, (float)lms_coeff(order, s, i, j), ds[j], err);
        lm_sampler__replace(&acc, next);
        next = NULL;
    }
    if (st == LM_OK)
        lm_sampler__replace(x, acc);
    else
        lm_tensor_free(acc);
    return st;
}

lm_status lm_sampler__lms(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err)
{
    const float *s = rs->o->sigmas;
    lm_tensor *ds[LMS_ORDER] = { NULL };
    lm_status st = LM_OK;
    for (int i = 0; i < rs->steps && st == LM_OK; i++) {
        lm_tensor *den = NULL, *d = NULL;
        st = lm_sampler__step_denoise(rs, i, *x, &den, err);
        if (st == LM_OK)
            st = lm_sampler__slope(&d, *x, den, s[i], err);
        lm_tensor_free(den);
        if (st != LM_OK)
            break;
        lm_tensor_free(ds[LMS_ORDER - 1]);
        for (int k = LMS_ORDER - 1; k > 0; k--)
            ds[k] = ds[k - 1];
        ds[0] = d;
        st = lms_update(x, ds, LM_MIN(i + 1, LMS_ORDER), s, i, err);
    }
    for (int k = 0; k < LMS_ORDER; k++)
        lm_tensor_free(ds[k]);
    return st;
}

/* ---- dpmpp_2m ---- */

/* DPM-Solver++(2M) in t = -log sigma, float32 scalars as the reference computes them:
 * x = (exp(-t1)/exp(-t0)) x - expm1(-h) D', D' = D on the first step, else
 * (1 + 1/2r) D - (1/2r) D_prev with r = h_prev/h. The step to sigma 0 returns D. */
static lm_status dpmpp_2m_step(lm_tensor **next, const lm_tensor *x, const lm_tensor *den,
                               const lm_tensor *old, const float *s, int i, lm_error *err)
{
    lm_tensor *dd = NULL;
    if (s[i + 1] == 0.0f)
        return copy_of(next, den, err);
    float t = -logf(s[i]), t_next = -logf(s[i + 1]);
    float h = t_next - t;
    float ratio = expf(-t_next) / expf(-t), c = -expm1f(-h);
    if (!old)
        return lm_sampler__axpby(next, ratio, x, c, den, err);
    float t_prev = -logf(s[i - 1]);
    float r = (t - t_prev) / h;
    float k = 1.0f / (2.0f * r);
    lm_status st = lm_sampler__axpby(&dd, 1.0f + k, den, -k, old, err);
    if (st == LM_OK)
        st = lm_sampler__axpby(next, ratio, x, c, dd, err);
    else
        *next = NULL;
    lm_tensor_free(dd);
    return st;
}

lm_status lm_sampler__dpmpp_2m(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err)
{
    lm_tensor *old = NULL;
    lm_status st = LM_OK;
    for (int i = 0; i < rs->steps && st == LM_OK; i++) {
        lm_tensor *den = NULL, *next = NULL;
        st = lm_sampler__step_denoise(rs, i, *x, &den, err);
        if (st == LM_OK)
            st = dpmpp_2m_step(&next, *x, den, old, rs->o->sigmas, i, err);
        if (st == LM_OK)
            lm_sampler__replace(x, next);
        lm_sampler__replace(&old, den);
    }
    lm_tensor_free(old);
    return st;
}

/* ---- dpmpp_2m_sde, flow form ---- */

/* Half log-SNR of the flow: log(alpha/sigma) with alpha = 1 - sigma (-inf at sigma 1). */
static double flow_lambda(double sigma)
{
    return log((1.0 - sigma) / sigma);
}

typedef struct {
    lm_tensor *old; /* previous prediction */
    double h_last;  /* previous step in lambda */
} sde_memory;

/* DPM-Solver++(2M) SDE (Lu et al. 2022), data prediction, midpoint correction, for
 * x = alpha*x0 + sigma*noise: with h = lambda1 - lambda0 and c = 1 - e^{-(1+eta)h},
 * x1 = (s1/s0) e^{-eta h} x0 + alpha1 c D + alpha1 c/(2r) (D - D_prev)
 *      + s1 sqrt(1 - e^{-2 eta h}) s_noise z. */
static lm_status sde_step(lm_sampler_run_state *rs, lm_tensor **x, const lm_tensor *den,
                          const sde_memory *mem, double s0, double s1, double *h_out, lm_error *err)
{
    double eta = (double)rs->o->eta, h = flow_lambda(s1) - flow_lambda(s0);
    double eh = eta > 0.0 ? eta * h : 0.0, a1 = 1.0 - s1;
    double c = -expm1(-(h + eh));
    double inv_r = mem->old ? h / mem->h_last : 0.0; /* 0 after a step from sigma 1 */
    lm_tensor *next = NULL, *corr = NULL, *z = NULL;
    *h_out = h;
    lm_status st =
        lm_sampler__axpby(&next, (float)(s1 / s0 * exp(-eh)), *x, (float)(a1 * c), den, err);
    if (st == LM_OK && mem->old && isfinite(inv_r) && inv_r != 0.0) {
        float k = (float)(a1 * c * 0.5 * inv_r);
        st = lm_sampler__axpby(&corr, k, den, -k, mem->old, err);
    }
    if (st == LM_OK && eta > 0.0) {
        double amp = s1 * sqrt(-expm1(-2.0 * eh)) * (double)rs->o->s_noise;
        lm_tensor *noise = NULL;
        st = lm_sampler__randn_like(rs, *x, &noise, err);
        if (st == LM_OK)
            st = lm_scale(&z, noise, (float)amp, 0.0f, err);
        lm_tensor_free(noise);
    }
    for (int k = 0; k < 2 && st == LM_OK; k++) {
        lm_tensor *term = k == 0 ? corr : z, *sum = NULL;
        if (term && (st = lm_add(&sum, next, term, err)) == LM_OK)
            lm_sampler__replace(&next, sum);
    }
    lm_tensor_free(corr);
    lm_tensor_free(z);
    if (st == LM_OK)
        lm_sampler__replace(x, next);
    else
        lm_tensor_free(next);
    return st;
}

lm_status lm_sampler__dpmpp_2m_sde(lm_sampler_run_state *rs, lm_tensor **x, lm_error *err)
{
    const float *s = rs->o->sigmas;
    sde_memory mem = { .old = NULL, .h_last = 0.0 };
    lm_status st = LM_OK;
    for (int i = 0; i < rs->steps && st == LM_OK; i++) {
        lm_tensor *den = NULL, *next = NULL;
        double h = 0.0;
        st = lm_sampler__step_denoise(rs, i, *x, &den, err);
        if (st == LM_OK && s[i + 1] == 0.0f) {
            st = copy_of(&next, den, err);
            if (st == LM_OK)
                lm_sampler__replace(x, next);
        } else if (st == LM_OK) {
            st = sde_step(rs, x, den, &mem, (double)s[i], (double)s[i + 1], &h, err);
        }
        lm_sampler__replace(&mem.old, den);
        mem.h_last = h;
    }
    lm_tensor_free(mem.old);
    return st;
}
