/* tests/sd3/test_sampler.c — schedules, samplers, guidance, conditioning ranges, img2img and
 * KSamplerAdvanced semantics, and the end-to-end sampling goldens.
 *
 * Schedules: the reference schedule against the golden files' `sigmas`/`timesteps`, driven by
 * their `params` metadata (steps, shift, denoise) and `tolerances.schedule`; every ComfyUI
 * schedule against closed forms evaluated here in double (never against the library's own
 * output). Samplers: an analytic model (Gaussian data, whose probability-flow ODE has a
 * closed-form solution) measures convergence orders by halving the step; a point-mass
 * model (straight trajectories) must be integrated exactly. Goldens: the MMDiT of the tiny
 * checkpoints driven by the golden INPUT noise and text conditioning, every step's x and
 * denoised and the final latent compared with `tolerances.sampling`. */
#include "core/io/safetensors.h"
#include "core/tensor/cuda/cuda.h"
#include "core/tensor/ops.h"
#include "core/tensor/rng.h"
#include "nodes/sd3/mmdit.h"
#include "nodes/sd3/sampler.h"
#include "nodes/sd3/vae.h"
#include "tests/sd3/sd3_fixture.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* s(u) = shift*u / (1 + (shift-1)*u) in double: the closed form every schedule builds on. */
static double shift_d(double shift, double u)
{
    return shift * u / (1.0 + (shift - 1.0) * u);
}

/* Table entry i (timestep i+1) in double. */
static double table_d(double shift, int i)
{
    return shift_d(shift, (i + 1) / 1000.0);
}

/* want[0..n-1]: timesteps from 1000 down toward 1000*s(0.001) in steps of 1/div of that span,
 * each shifted (normal and sgm_uniform, in double); want[n] = 0. */
static void uniform_shifted(double *want, double shift, int n, int div)
{
    double end = 1000.0 * shift_d(shift, 0.001);
    for (int i = 0; i < n; i++)
        want[i] = shift_d(shift, (1000.0 + (end - 1000.0) * i / div) / 1000.0);
    want[n] = 0;
}

static void check_sigmas(const char *what, const lm_sigmas *got, const double *want, int n,
                         double rtol)
{
    if (got->count != n) {
        test__fail(__FILE__, __LINE__, "%s: %d sigmas, expected %d", what, got->count, n);
        return;
    }
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)got->sigma[i] - want[i]);
        if (d > rtol * fabs(want[i]) + 1e-9)
            test__fail(__FILE__, __LINE__, "%s: sigma[%d] = %.9g, expected %.9g", what, i,
                       (double)got->sigma[i], want[i]);
        worst = fmax(worst, d);
    }
    test_note("%s: max |diff| %.3g", what, worst);
}

static lm_sigmas schedule(lm_schedule s, double shift, int steps)
{
    lm_error err;
    lm_sigmas out = { 0 };
    lm_model_sampling ms = { .shift = shift };
    CHECK_OK(lm_scheduler_sigmas(&out, &ms, s, steps, &err), &err);
    return out;
}

/* ---- model sampling ---- */

void test_sd3_sampler__model_sampling(void)
{
    lm_model_sampling ms = LM_MODEL_SAMPLING_SD3, flat = { .shift = 1.0 };
    CHECK_NEAR(lm_scheduler_sigma(&ms, 1000.0f), 1.0, 0);
    CHECK_NEAR(lm_scheduler_sigma(&ms, 500.0f), 0.75, 1e-7); /* 1.5 / 2 */
    CHECK_NEAR(lm_scheduler_sigma(&flat, 250.0f), 0.25, 0);  /* shift 1: sigma = t/1000 */
    CHECK_NEAR(lm_scheduler_timestep(0.5f), 500.0, 0);
    CHECK_NEAR(lm_scheduler_sigma_max(&ms), 1.0, 0);
    CHECK_NEAR(lm_scheduler_sigma_min(&ms), 0.003 / 1.002, 1e-9);
    for (int i = 0; i < LM_FLOW_TIMESTEPS; i += 37)
        CHECK_NEAR(lm_scheduler_table(&ms, i), table_d(3.0, i), 2e-7);
    CHECK_NEAR(lm_scheduler_percent_to_sigma(&ms, 0.0), 1.0, 0);
    CHECK_NEAR(lm_scheduler_percent_to_sigma(&ms, 1.0), 0.0, 0);
    CHECK_NEAR(lm_scheduler_percent_to_sigma(&ms, 0.1), 2.7 / 2.8, 1e-15);
}

void test_sd3_sampler__names(void)
{
    lm_error err;
    lm_schedule s;
    lm_sampler k;
    for (int i = 0; i < LM_SCHEDULE_COUNT; i++) {
        CHECK_OK(lm_scheduler_parse(&s, lm_scheduler_name((lm_schedule)i), &err), &err);
        CHECK_INT(s, i);
    }
    for (int i = 0; i < LM_SAMPLER_COUNT; i++) {
        CHECK_OK(lm_sampler_parse(&k, lm_sampler_name((lm_sampler)i), &err), &err);
        CHECK_INT(k, i);
    }
    CHECK_INT(lm_scheduler_parse(&s, "linear", &err), LM_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "\"linear\"");
    CHECK_CONTAINS(err.hint, "sgm_uniform");
    CHECK_INT(lm_sampler_parse(&k, "dpmpp_3m", &err), LM_ENOTFOUND);
    CHECK_CONTAINS(err.hint, "dpmpp_2m_sde");
    CHECK(lm_sampler_discards_penultimate(LM_SAMPLER_DPM_2));
    CHECK(lm_sampler_discards_penultimate(LM_SAMPLER_UNI_PC));
    CHECK(!lm_sampler_discards_penultimate(LM_SAMPLER_EULER));
    CHECK(lm_scheduler_name(LM_SCHEDULE_COUNT) == NULL);
}

/* ---- golden schedules ---- */

/* Compares host floats with golden tensor `name` (its row `row` along dim 0 when row >= 0);
 * notes the max abs / rel error. */
static bool compare_row(const char *what, const float *got, int64_t n, lm_safetensors *st,
                        const char *name, int row, gold_tol t)
{
    lm_error err;
    lm_tensor *g = NULL, *r = NULL, *h = NULL;
    lm_status s = lm_safetensors_tensor(&g, st, name, &err);
    if (s == LM_OK)
        s = row >= 0 ? lm_tensor_view_slice(&r, g, 0, row, row + 1, &err)
                     : lm_tensor_view(&r, g, &err);
    if (s == LM_OK)
        s = lm_tensor_to_f32_host(&h, r, &err);
    lm_tensor_free(g);
    lm_tensor_free(r);
    if (s != LM_OK) {
        test__fail_err(__FILE__, __LINE__, name, err.code, &err);
        return false;
    }
    bool ok = lm_tensor_numel(h) == n;
    if (!ok)
        test__fail(__FILE__, __LINE__, "%s: %lld values, golden %s has %lld", what, (long long)n,
                   name, (long long)lm_tensor_numel(h));
    else
        ok = gold_compare_floats(what, got, lm_tensor_data(h), n, t);
    lm_tensor_free(h);
    return ok;
}

static bool compare_floats(const char *what, const float *got, int64_t n, lm_safetensors *st,
                           const char *name, gold_tol t)
{
    return compare_row(what, got, n, st, name, -1, t);
}

static bool compare_tensor_row(const char *what, const lm_tensor *got, lm_safetensors *st,
                               const char *name, int row, gold_tol t)
{
    lm_error err;
    lm_tensor *h = NULL;
    if (!got || lm_tensor_to_f32_host(&h, got, &err) != LM_OK) {
        test__fail(__FILE__, __LINE__, "%s: no result", what);
        return false;
    }
    bool ok = compare_row(what, lm_tensor_data(h), lm_tensor_numel(h), st, name, row, t);
    lm_tensor_free(h);
    return ok;
}

static bool compare_tensor(const char *what, const lm_tensor *got, lm_safetensors *st,
                           const char *name, gold_tol t)
{
    return compare_tensor_row(what, got, st, name, -1, t);
}

static void golden_schedule_case(const char *rel)
{
    lm_error err;
    lm_safetensors *st = gold_open(rel);
    if (!st)
        return;
    cJSON *params = gold_metadata(st, "params");
    gold_tol t = gold_tolerance(st, "schedule");
    const cJSON *t2i = cJSON_GetObjectItem(params, "txt2img");
    const cJSON *i2i = cJSON_GetObjectItem(params, "img2img");
    lm_model_sampling ms = { .shift = gold_param(t2i, "shift") };
    int steps = (int)gold_param(t2i, "steps");
    lm_sigmas s = { 0 };
    CHECK_OK(lm_scheduler_sigmas(&s, &ms, LM_SCHEDULE_REFERENCE, steps, &err), &err);
    compare_floats("txt2img.sigmas (reference)", s.sigma, s.count, st, "txt2img.sigmas", t);
    float ts[64];
    for (int i = 0; i < steps && i < 64; i++)
        ts[i] = lm_scheduler_timestep(s.sigma[i]);
    compare_floats("txt2img.timesteps", ts, steps, st, "txt2img.timesteps", t);
    CHECK_OK(lm_scheduler_sigmas(&s, &ms, LM_SCHEDULE_NORMAL, steps, &err), &err);
    compare_floats("txt2img.sigmas (ComfyUI normal)", s.sigma, s.count, st, "txt2img.sigmas", t);

    ms.shift = gold_param(i2i, "shift");
    steps = (int)gold_param(i2i, "steps");
    double denoise = gold_param(i2i, "denoise");
    CHECK_INT(lm_scheduler_strength_start(steps, denoise), (int)gold_param(i2i, "start_index"));
    CHECK_OK(lm_scheduler_sigmas(&s, &ms, LM_SCHEDULE_REFERENCE, steps, &err), &err);
    compare_floats("img2img.sigmas_full", s.sigma, s.count, st, "img2img.sigmas_full", t);
    CHECK_OK(lm_scheduler_strength(&s, &ms, LM_SCHEDULE_REFERENCE, steps, denoise, &err), &err);
    compare_floats("img2img.sigmas", s.sigma, s.count, st, "img2img.sigmas", t);
    lm_sigmas_fini(&s);
    cJSON_Delete(params);
    lm_safetensors_close(st);
}

void test_sd3_sampler__golden_schedule_sd3m(void)
{
    golden_schedule_case("golden/sd3m_sample.safetensors");
}

void test_sd3_sampler__golden_schedule_sd35m(void)
{
    golden_schedule_case("golden/sd35m_sample.safetensors");
}

/* ---- ComfyUI schedules against closed forms ---- */

void test_sd3_sampler__normal_double_shift(void)
{
    /* README: shift 3, 4 steps: 1, 0.8577, 0.6022, 0.00893, 0 (0.00299 without the double
     * shift); closed form: uniform timesteps from 1000 to 1000*s(0.001), each shifted. */
    lm_sigmas s = schedule(LM_SCHEDULE_NORMAL, 3.0, 4);
    double want[5];
    uniform_shifted(want, 3.0, 4, 3);
    check_sigmas("normal", &s, want, 5, 1e-6);
    CHECK_NEAR(s.sigma[1], 0.8577, 1e-4);
    CHECK_NEAR(s.sigma[2], 0.6022, 1e-4);
    CHECK_NEAR(s.sigma[3], 0.00893, 1e-5);
    lm_sigmas_fini(&s);
    s = schedule(LM_SCHEDULE_REFERENCE, 2.0, 7);
    lm_sigmas n = schedule(LM_SCHEDULE_NORMAL, 2.0, 7);
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(s.sigma[i], n.sigma[i], 1e-7);
    lm_sigmas_fini(&s);
    lm_sigmas_fini(&n);
}

void test_sd3_sampler__simple(void)
{
    /* every (1000/steps)-th table entry from the top: steps 3 -> timesteps 1000, 667, 334 */
    lm_sigmas s = schedule(LM_SCHEDULE_SIMPLE, 3.0, 3);
    double want[4] = { table_d(3, 999), table_d(3, 666), table_d(3, 333), 0 };
    check_sigmas("simple 3", &s, want, 4, 1e-6);
    lm_sigmas_fini(&s);
    s = schedule(LM_SCHEDULE_SIMPLE, 3.0, 4);
    double want4[5] = { table_d(3, 999), table_d(3, 749), table_d(3, 499), table_d(3, 249), 0 };
    check_sigmas("simple 4", &s, want4, 5, 1e-6);
    lm_sigmas_fini(&s);
}

void test_sd3_sampler__sgm_uniform(void)
{
    /* steps+1 uniform timesteps, the last (double-shifted) one dropped */
    int steps = 5;
    lm_sigmas s = schedule(LM_SCHEDULE_SGM_UNIFORM, 3.0, steps);
    double want[6];
    uniform_shifted(want, 3.0, steps, steps);
    check_sigmas("sgm_uniform", &s, want, steps + 1, 1e-6);
    lm_sigmas_fini(&s);
}

void test_sd3_sampler__karras_exponential_kl(void)
{
    int n = 6;
    double lo = table_d(3, 0), hi = 1.0, want[7];
    lm_sigmas s = schedule(LM_SCHEDULE_KARRAS, 3.0, n);
    for (int i = 0; i < n; i++) {
        double r = (double)i / (n - 1);
        want[i] = pow(pow(hi, 1 / 7.0) + r * (pow(lo, 1 / 7.0) - pow(hi, 1 / 7.0)), 7.0);
    }
    want[n] = 0;
    check_sigmas("karras", &s, want, n + 1, 2e-6);
    lm_sigmas_fini(&s);
    s = schedule(LM_SCHEDULE_EXPONENTIAL, 3.0, n);
    for (int i = 0; i < n; i++)
        want[i] = exp(log(hi) + (log(lo) - log(hi)) * i / (n - 1));
    check_sigmas("exponential", &s, want, n + 1, 2e-6);
    lm_sigmas_fini(&s);
    s = schedule(LM_SCHEDULE_KL_OPTIMAL, 3.0, n);
    for (int i = 0; i < n; i++) {
        double u = (double)i / (n - 1);
        want[i] = tan(u * atan(lo) + (1 - u) * atan(hi));
    }
    check_sigmas("kl_optimal", &s, want, n + 1, 2e-6);
    lm_sigmas_fini(&s);
}

void test_sd3_sampler__ddim_uniform(void)
{
    /* table entries 1, 334, 667 (stride 1000 // 3), highest first, then 0 */
    lm_sigmas s = schedule(LM_SCHEDULE_DDIM_UNIFORM, 3.0, 3);
    double want[4] = { table_d(3, 667), table_d(3, 334), table_d(3, 1), 0 };
    check_sigmas("ddim_uniform 3", &s, want, 4, 1e-6);
    lm_sigmas_fini(&s);
    s = schedule(LM_SCHEDULE_DDIM_UNIFORM, 3.0, 7); /* stride 142: 1 … 995, 8 entries */
    CHECK_INT(s.count, 9);
    CHECK_NEAR(s.sigma[0], table_d(3, 995), 1e-6);
    lm_sigmas_fini(&s);
}

/* Beta(0.6, 0.6) CDF by Simpson's rule after x = sin^2(theta), which removes the endpoint
 * singularities: B(x) = integral of 2 sin^(2a-1) cos^(2b-1) over [0, asin(sqrt(x))]. */
static double beta06_cdf(double x)
{
    const int n = 20000;
    double top = asin(sqrt(x)), full = M_PI / 2, parts[2];
    for (int k = 0; k < 2; k++) {
        double b = k ? full : top, h = b / n, sum = 0;
        for (int i = 0; i <= n; i++) {
            double th = i * h, f = 2 * pow(sin(th), 0.2) * pow(cos(th), 0.2);
            sum += f * (i == 0 || i == n ? 1 : i % 2 ? 4 : 2);
        }
        parts[k] = sum * h / 3;
    }
    return parts[0] / parts[1];
}

void test_sd3_sampler__beta(void)
{
    /* 2 steps: quantiles of 1 and 0.5 -> 999 and rint(499.5) = 500 (half to even) */
    lm_sigmas s = schedule(LM_SCHEDULE_BETA, 3.0, 2);
    double want[3] = { table_d(3, 999), table_d(3, 500), 0 };
    check_sigmas("beta 2", &s, want, 3, 1e-6);
    lm_sigmas_fini(&s);
    /* 10 steps: each timestep t rounds ppf(1 - i/10) * 999, i.e.
     * CDF((t - 0.5)/999) <= 1 - i/10 <= CDF((t + 0.5)/999). */
    s = schedule(LM_SCHEDULE_BETA, 3.0, 10);
    REQUIRE(s.count == 11);
    for (int i = 1; i < 10; i++) {
        int t = 0;
        for (int j = 0; j < 1000; j++)
            if (fabs(table_d(3, j) - (double)s.sigma[i]) < fabs(table_d(3, t) - (double)s.sigma[i]))
                t = j;
        double p = 1.0 - i / 10.0;
        if (!(beta06_cdf((t - 0.5) / 999) <= p + 1e-5 && p - 1e-5 <= beta06_cdf((t + 0.5) / 999)))
            test__fail(__FILE__, __LINE__,
                       "beta: step %d has timestep %d; p = %g is outside "
                       "[%g, %g]",
                       i, t, p, beta06_cdf((t - 0.5) / 999), beta06_cdf((t + 0.5) / 999));
    }
    lm_sigmas_fini(&s);
}

void test_sd3_sampler__bad_steps(void)
{
    lm_error err;
    lm_sigmas s = { 0 };
    lm_model_sampling ms = LM_MODEL_SAMPLING_SD3;
    CHECK_INT(lm_scheduler_sigmas(&s, &ms, LM_SCHEDULE_SIMPLE, 0, &err), LM_ERANGE);
    CHECK_CONTAINS(err.msg, "0 steps");
    CHECK_INT(lm_scheduler_ksampler(&s, &ms, LM_SCHEDULE_SIMPLE, 100, 0.0001, false, &err),
              LM_ERANGE);
    ms.shift = 0;
    CHECK_INT(lm_scheduler_sigmas(&s, &ms, LM_SCHEDULE_SIMPLE, 4, &err), LM_ERANGE);
    lm_sigmas_fini(&s);
}

/* ---- img2img and KSamplerAdvanced schedules ---- */

void test_sd3_sampler__ksampler_denoise(void)
{
    lm_error err;
    lm_model_sampling ms = LM_MODEL_SAMPLING_SD3;
    lm_sigmas s = { 0 }, full = schedule(LM_SCHEDULE_NORMAL, 3.0, 6);
    /* steps 4, denoise 0.6: int(4/0.6) = 6 steps built, the last 5 sigmas kept */
    CHECK_OK(lm_scheduler_ksampler(&s, &ms, LM_SCHEDULE_NORMAL, 4, 0.6, false, &err), &err);
    REQUIRE(s.count == 5);
    for (int i = 0; i < 5; i++)
        CHECK_NEAR(s.sigma[i], full.sigma[i + 2], 0);
    CHECK_OK(lm_scheduler_ksampler(&s, &ms, LM_SCHEDULE_NORMAL, 6, 1.0, false, &err), &err);
    CHECK_INT(s.count, 7);
    CHECK_OK(lm_scheduler_ksampler(&s, &ms, LM_SCHEDULE_NORMAL, 6, 0.0, false, &err), &err);
    CHECK_INT(s.count, 0);
    /* dpm_2 / uni_pc: one more step, penultimate dropped: 7-step schedule without [5] */
    lm_sigmas seven = schedule(LM_SCHEDULE_SIMPLE, 3.0, 7);
    CHECK_OK(lm_scheduler_ksampler(&s, &ms, LM_SCHEDULE_SIMPLE, 6, 1.0, true, &err), &err);
    REQUIRE(s.count == 7);
    for (int i = 0; i < 6; i++)
        CHECK_NEAR(s.sigma[i], seven.sigma[i], 0);
    CHECK_NEAR(s.sigma[6], 0.0, 0);
    lm_sigmas_fini(&seven);
    lm_sigmas_fini(&full);
    lm_sigmas_fini(&s);
}

void test_sd3_sampler__strength_start_index(void)
{
    CHECK_INT(lm_scheduler_strength_start(4, 0.6), 1);  /* 4 * 0.4 = 1.6 */
    CHECK_INT(lm_scheduler_strength_start(10, 0.9), 0); /* 10 * 0.0999… = 0.999… */
    CHECK_INT(lm_scheduler_strength_start(10, 0.5), 5);
    CHECK_INT(lm_scheduler_strength_start(20, 0.75), 5);
    CHECK_INT(lm_scheduler_strength_start(4, 1.0), 0);
    CHECK_INT(lm_scheduler_strength_start(4, 0.0), 4);
    CHECK_INT(lm_scheduler_strength_start(4, 1.5), 0);
}

void test_sd3_sampler__advanced_cut(void)
{
    lm_sigmas s = schedule(LM_SCHEDULE_SIMPLE, 3.0, 10),
              ref = schedule(LM_SCHEDULE_SIMPLE, 3.0, 10);
    lm_scheduler_advanced(&s, 3, 7, true); /* sigmas[3..7], leftover noise kept */
    REQUIRE(s.count == 5);
    CHECK_NEAR(s.sigma[0], ref.sigma[3], 0);
    CHECK_NEAR(s.sigma[4], ref.sigma[7], 0);
    lm_sigmas_fini(&s);
    s = schedule(LM_SCHEDULE_SIMPLE, 3.0, 10);
    lm_scheduler_advanced(&s, 0, 7, false); /* force full denoise: last sigma 0 */
    CHECK_INT(s.count, 8);
    CHECK_NEAR(s.sigma[7], 0.0, 0);
    lm_scheduler_advanced(&s, 7, 10000, false); /* start at the end: nothing to run */
    CHECK_INT(s.count, 0);
    lm_sigmas_fini(&s);
    lm_sigmas_fini(&ref);
}

/* ---- models for the sampler tests ---- */

#define NEL 120 /* elements of one latent sample [4, 3, 10] */

/* Gaussian data x0 ~ N(mu, sd^2) per element, or a point mass (sd 0): the exact denoiser
 * E[x0 | x] = mu + (1-s) sd^2 / ((1-s)^2 sd^2 + s^2) * (x - (1-s) mu), and the exact ODE
 * solution from pure noise z at sigma 1: x(s) = (1-s) mu + sqrt((1-s)^2 sd^2 + s^2) z. */
typedef struct {
    double mu[NEL], sd[NEL];
    int calls, evals;
    int last_n;
    const void *last_conds[16];
} analytic;

static void analytic_init(analytic *a, double sd_scale)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < NEL; i++) {
        a->mu[i] = sin(0.37 * i + 0.2);
        a->sd[i] = sd_scale * (0.3 + 0.7 * fabs(cos(0.91 * i)));
    }
}

static lm_status analytic_model(lm_tensor **out, const lm_tensor *x, float sigma,
                                const void *const *conds, int n, void *user, lm_error *err)
{
    analytic *a = user;
    lm_tensor *h = NULL;
    lm_status st = lm_tensor_to_f32_host(&h, x, err);
    if (st != LM_OK)
        return st;
    float *v = lm_tensor_data(h);
    double s = (double)sigma;
    for (int64_t i = 0; i < lm_tensor_numel(h); i++) {
        double mu = a->mu[i % NEL], sd = a->sd[i % NEL];
        double g = (1 - s) * sd * sd / ((1 - s) * (1 - s) * sd * sd + s * s);
        v[i] = (float)(mu + g * ((double)v[i] - (1 - s) * mu));
    }
    a->calls++;
    a->evals += n;
    a->last_n = n;
    for (int k = 0; k < n && k < 16; k++)
        a->last_conds[k] = conds[k];
    if (lm_backend_is_host(lm_tensor_backend(x))) {
        *out = h;
        return LM_OK;
    }
    st = lm_tensor_to(out, h, lm_tensor_backend(x), err); /* a latent on a device */
    lm_tensor_free(h);
    return st;
}

static lm_tensor *make_tensor(int64_t b, const float *vals)
{
    lm_error err;
    lm_tensor *t = NULL;
    int64_t shape[4] = { b, 4, 3, 10 };
    if (lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err) != LM_OK)
        return NULL;
    float *d = lm_tensor_data(t);
    for (int64_t i = 0; i < b * NEL; i++)
        d[i] = vals ? vals[i % NEL] : 0.0f;
    return t;
}

static float z_of(int i)
{
    return (float)(1.3 * sin(2.1 * i + 0.5));
}

static const int pos_tag = 1;

static void analytic_opts(lm_sample_opts *o, analytic *a, lm_sampler k, const float *sig, int n,
                          const lm_sample_cond *pos)
{
    lm_sampler_opts_init(o);
    o->sampler = k;
    o->sigmas = sig;
    o->n_sigmas = n;
    o->positive = pos;
    o->n_positive = 1;
    o->model = analytic_model;
    o->model_user = a;
}

/* Max |x - exact| after sampling from sigma 1 to sigma_end over `steps` steps uniform in
 * sigma, or in log sigma (`geometric`). */
static double ode_error(lm_sampler k, int steps, double sigma_end, bool geometric)
{
    lm_error err;
    analytic a;
    lm_sample_opts o;
    lm_sample_cond pos = LM_SAMPLE_COND(&pos_tag);
    float sig[200], z[NEL];
    for (int i = 0; i <= steps; i++)
        sig[i] = geometric ? (float)pow(sigma_end, (double)i / steps)
                           : (float)(1.0 - (1.0 - sigma_end) * i / steps);
    for (int i = 0; i < NEL; i++)
        z[i] = z_of(i);
    analytic_init(&a, 1.0);
    analytic_opts(&o, &a, k, sig, steps + 1, &pos);
    lm_tensor *x = make_tensor(1, z), *y = NULL;
    double worst = -1;
    if (lm_sampler_run(&y, &o, x, &err) == LM_OK) {
        const float *v = lm_tensor_data(y);
        double s = (double)sig[steps];
        worst = 0;
        for (int i = 0; i < NEL; i++) {
            double sd = a.sd[i];
            double want =
                (1 - s) * a.mu[i] + sqrt((1 - s) * (1 - s) * sd * sd + s * s) * (double)z[i];
            worst = fmax(worst, fabs((double)v[i] - want));
        }
    } else {
        test__fail_err(__FILE__, __LINE__, lm_sampler_name(k), err.code, &err);
    }
    lm_tensor_free(x);
    lm_tensor_free(y);
    return worst;
}

static void check_order(lm_sampler k, bool geometric, double lo, double hi)
{
    double e1 = ode_error(k, 20, 0.05, geometric), e2 = ode_error(k, 40, 0.05, geometric);
    double e3 = ode_error(k, 80, 0.05, geometric);
    double o1 = log2(e1 / e2), o2 = log2(e2 / e3);
    test_note("%-12s errors %.3g %.3g %.3g: observed order %.2f, %.2f", lm_sampler_name(k), e1, e2,
              e3, o1, o2);
    if (!(o2 >= lo && o2 <= hi))
        test__fail(__FILE__, __LINE__, "%s: observed order %.2f, expected %.1f to %.1f",
                   lm_sampler_name(k), o2, lo, hi);
}

void test_sd3_sampler__convergence_orders(void)
{
    check_order(LM_SAMPLER_EULER, false, 0.85, 1.15);
    check_order(LM_SAMPLER_DDIM, false, 0.85, 1.15);
    check_order(LM_SAMPLER_HEUN, false, 1.8, 2.3);
    check_order(LM_SAMPLER_DPM_2, false, 1.8, 2.3);
    check_order(LM_SAMPLER_DPMPP_2M, false, 1.8, 2.3);
    /* LMS(4) and UniPC(3) start and (UniPC) end at lower orders; ComfyUI's last UniPC step
     * has no corrector, so the global order is 2 to 3. UniPC is measured on steps uniform
     * in lambda = -log sigma, its natural variable (uniform sigma steps make the last ones
     * huge in lambda and keep it pre-asymptotic). */
    check_order(LM_SAMPLER_LMS, false, 1.8, 4.5);
    check_order(LM_SAMPLER_UNI_PC, true, 2.0, 4.5);
    check_order(LM_SAMPLER_UNI_PC_BH2, true, 2.0, 4.5);
}

void test_sd3_sampler__straight_paths_are_exact(void)
{
    /* point mass (sd 0): denoised is mu everywhere and x(s) = (1-s) mu + s z is a line, which
     * every deterministic sampler must follow to rounding — UniPC to sigma 0.001 (ComfyUI's
     * stand-in for 0), the others to 0 */
    lm_sampler ks[] = { LM_SAMPLER_EULER,       LM_SAMPLER_HEUN,       LM_SAMPLER_DPM_2,
                        LM_SAMPLER_LMS,         LM_SAMPLER_DPMPP_2M,   LM_SAMPLER_DDIM,
                        LM_SAMPLER_UNI_PC,      LM_SAMPLER_UNI_PC_BH2, LM_SAMPLER_EULER_ANCESTRAL,
                        LM_SAMPLER_DPMPP_2M_SDE };
    float sig[7] = { 1.0f, 0.9f, 0.7f, 0.5f, 0.3f, 0.1f, 0.0f }, z[NEL];
    for (int i = 0; i < NEL; i++)
        z[i] = z_of(i);
    for (size_t k = 0; k < LM_COUNTOF(ks); k++) {
        lm_error err;
        analytic a;
        lm_sample_opts o;
        lm_sample_cond pos = LM_SAMPLE_COND(&pos_tag);
        analytic_init(&a, 0.0);
        analytic_opts(&o, &a, ks[k], sig, 7, &pos);
        lm_tensor *x = make_tensor(1, z), *y = NULL;
        CHECK_OK(lm_sampler_run(&y, &o, x, &err), &err);
        bool unipc = ks[k] == LM_SAMPLER_UNI_PC || ks[k] == LM_SAMPLER_UNI_PC_BH2;
        double s = unipc ? (double)0.001f : 0.0, worst = 0;
        for (int i = 0; y && i < NEL; i++)
            worst = fmax(worst, fabs((double)((float *)lm_tensor_data(y))[i] -
                                     ((1 - s) * a.mu[i] + s * (double)z[i])));
        int evals = ks[k] == LM_SAMPLER_HEUN || ks[k] == LM_SAMPLER_DPM_2 ? 11 : 6;
        test_note("%-16s max |x - exact| %.3g, %d evaluations", lm_sampler_name(ks[k]), worst,
                  a.calls);
        if (!(worst < 2e-6))
            test__fail(__FILE__, __LINE__, "%s: max |x - exact| = %g", lm_sampler_name(ks[k]),
                       worst);
        CHECK_INT(a.calls, evals);
        lm_tensor_free(x);
        lm_tensor_free(y);
    }
}

/* The sampler only uses lm_* ops on the latent's backend: a latent on CUDA gives the CPU
 * result (the model callback computes on the host and hands back a device tensor). */
void test_sd3_sampler__device_latents(void)
{
    lm_error err;
    lm_backend *gpu = NULL;
    if (lm_cuda_backend_new(&gpu, 0, &err) != LM_OK) {
        test_note("no CUDA backend (%s): nothing to compare", err.msg);
        return;
    }
    lm_sampler ks[3] = { LM_SAMPLER_EULER_ANCESTRAL, LM_SAMPLER_DPMPP_2M_SDE, LM_SAMPLER_UNI_PC };
    lm_sigmas s = schedule(LM_SCHEDULE_KARRAS, 3.0, 6);
    float z[NEL];
    for (int i = 0; i < NEL; i++)
        z[i] = z_of(i);
    for (int k = 0; k < 3; k++) {
        analytic a;
        lm_sample_opts o;
        lm_sample_cond pos[2] = { LM_SAMPLE_COND(&pos_tag), LM_SAMPLE_COND(&pos_tag) };
        pos[1].start_percent = 0.5;
        analytic_init(&a, 1.0);
        analytic_opts(&o, &a, ks[k], s.sigma, s.count, pos);
        o.n_positive = 2, o.seed = 3;
        lm_tensor *x = make_tensor(2, z), *xd = NULL, *y = NULL, *yd = NULL, *yh = NULL;
        CHECK_OK(lm_tensor_to(&xd, x, gpu, &err), &err);
        CHECK_OK(lm_sampler_run(&y, &o, x, &err), &err);
        CHECK_OK(lm_sampler_run(&yd, &o, xd, &err), &err);
        CHECK(yd && lm_tensor_backend(yd) == gpu);
        CHECK_OK(lm_tensor_to_f32_host(&yh, yd, &err), &err);
        double worst = 0;
        for (int i = 0; y && yh && i < 2 * NEL; i++)
            worst = fmax(worst, fabs((double)((float *)lm_tensor_data(y))[i] -
                                     (double)((float *)lm_tensor_data(yh))[i]));
        test_note("%s: CPU vs CUDA max |diff| %.3g", lm_sampler_name(ks[k]), worst);
        CHECK(worst < 1e-4);
        lm_tensor_free(x);
        lm_tensor_free(xd);
        lm_tensor_free(y);
        lm_tensor_free(yd);
        lm_tensor_free(yh);
    }
    lm_sigmas_fini(&s);
}

/* ---- noise ---- */

static double sample_std(const lm_tensor *t)
{
    const float *v = lm_tensor_data(t);
    int64_t n = lm_tensor_numel(t);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)v[i];
        s2 += (double)v[i] * (double)v[i];
    }
    return sqrt(s2 / n - (s / n) * (s / n));
}

/* x0 = 0 (point mass at 0): one step from pure noise at sigma 1 to sigma 0.5 must leave
 * noise of std 0.5, and the fresh noise is the first randn of lm_rng(seed). */
void test_sd3_sampler__ancestral_noise(void)
{
    lm_error err;
    lm_sampler ks[2] = { LM_SAMPLER_EULER_ANCESTRAL, LM_SAMPLER_DPMPP_2M_SDE };
    float sig[2] = { 1.0f, 0.5f };
    const int64_t b = 200;
    for (int k = 0; k < 2; k++) {
        analytic a;
        lm_sample_opts o;
        lm_sample_cond pos = LM_SAMPLE_COND(&pos_tag);
        analytic_init(&a, 0.0);
        memset(a.mu, 0, sizeof(a.mu));
        analytic_opts(&o, &a, ks[k], sig, 2, &pos);
        o.seed = 77;
        lm_tensor *x = NULL, *y = NULL, *y2 = NULL, *y3 = NULL;
        int64_t shape[4] = { b, 4, 3, 10 };
        REQUIRE_OK(lm_sampler_noise(&x, 5, 4, shape, NULL, &err), &err);
        CHECK_OK(lm_sampler_run(&y, &o, x, &err), &err);
        CHECK_OK(lm_sampler_run(&y2, &o, x, &err), &err);
        o.seed = 78;
        CHECK_OK(lm_sampler_run(&y3, &o, x, &err), &err);
        REQUIRE(y && y2 && y3);
        CHECK(memcmp(lm_tensor_data(y), lm_tensor_data(y2), (size_t)(b * NEL) * 4) == 0);
        CHECK(memcmp(lm_tensor_data(y), lm_tensor_data(y3), (size_t)(b * NEL) * 4) != 0);
        double sd = sample_std(y);
        test_note("%s: std after one step %.4f (expected 0.5)", lm_sampler_name(ks[k]), sd);
        CHECK_NEAR(sd, 0.5, 0.01);
        /* closed forms of the step: euler_ancestral: sigma_down = 0.25, x * (0.25/1) *
         * (0.5/0.75) + sqrt(0.25 - (0.25*0.5/0.75)^2) z; dpmpp_2m_sde from sigma 1:
         * 0.5 * z (the signal weight e^{-h} is 0) */
        lm_rng *rng = NULL;
        REQUIRE_OK(lm_rng_new(&rng, 77, &err), &err);
        float *zz = malloc((size_t)(b * NEL) * sizeof(float));
        lm_rng_randn(rng, zz, (size_t)(b * NEL));
        const float *xv = lm_tensor_data(x), *yv = lm_tensor_data(y);
        double kept = 0.25 * 0.5 / 0.75, worst = 0;
        for (int64_t i = 0; i < b * NEL; i++) {
            double z = (double)zz[i];
            double want = k == 0
                              ? (double)xv[i] * 0.25 * (0.5 / 0.75) + sqrt(0.25 - kept * kept) * z
                              : 0.5 * z;
            worst = fmax(worst, fabs(want - (double)yv[i]));
        }
        CHECK(worst < 1e-5);
        free(zz);
        lm_rng_free(rng);
        lm_tensor_free(x);
        lm_tensor_free(y);
        lm_tensor_free(y2);
        lm_tensor_free(y3);
    }
}

void test_sd3_sampler__initial_noise_is_torch_randn(void)
{
    lm_error err;
    lm_safetensors *st = gold_open("golden/sd3m_sample.safetensors");
    if (!st)
        return;
    cJSON *params = gold_metadata(st, "params");
    int seed = (int)gold_param(cJSON_GetObjectItem(params, "txt2img"), "seed");
    const lm_safetensors_entry *e = lm_safetensors_find(st, "txt2img.noise");
    REQUIRE(e);
    int64_t shape[4];
    for (int i = 0; i < 4; i++)
        shape[i] = e->shape[i];
    lm_tensor *noise = NULL;
    REQUIRE_OK(lm_sampler_noise(&noise, (uint64_t)seed, e->ndim, shape, NULL, &err), &err);
    compare_tensor("txt2img.noise from the seed", noise, st, "txt2img.noise",
                   (gold_tol){ 1e-6, 0 });
    lm_tensor_free(noise);
    cJSON_Delete(params);
    lm_safetensors_close(st);
}

/* ---- guidance and conditioning ---- */

/* Each conditioning is a float constant: the model predicts that constant everywhere and
 * records which conditionings it was given. */
typedef struct {
    int calls, n[64];
    const float *conds[64][16];
    int64_t rows[64];
} recorder;

static lm_status constant_model(lm_tensor **out, const lm_tensor *x, float sigma,
                                const void *const *conds, int n, void *user, lm_error *err)
{
    recorder *r = user;
    LM_UNUSED(sigma);
    lm_status st = lm_tensor_new(out, lm_backend_cpu(), LM_DTYPE_F32, x->ndim, x->shape, err);
    if (st != LM_OK)
        return st;
    int64_t per = lm_tensor_numel(x) / n;
    float *v = lm_tensor_data(*out);
    for (int k = 0; k < n; k++)
        for (int64_t i = 0; i < per; i++)
            v[k * per + i] = *(const float *)conds[k];
    if (r->calls < 64) {
        r->n[r->calls] = n;
        r->rows[r->calls] = x->shape[0];
        for (int k = 0; k < n && k < 16; k++)
            r->conds[r->calls][k] = conds[k];
    }
    r->calls++;
    return LM_OK;
}

typedef struct {
    float last_denoised[16];
    int steps_seen;
} step_log;

static void log_step(const lm_sample_step *s, void *user)
{
    step_log *l = user;
    if (s->step < 16)
        l->last_denoised[s->step] = ((const float *)lm_tensor_data(s->denoised))[0];
    l->steps_seen++;
}

void test_sd3_sampler__cfg_batch(void)
{
    lm_error err;
    static const float pv = 2.0f, nv = 0.5f;
    lm_sample_cond pos = LM_SAMPLE_COND(&pv), neg = LM_SAMPLE_COND(&nv);
    float sig[3] = { 1.0f, 0.5f, 0.0f };
    for (int guided = 0; guided < 2; guided++) {
        recorder r = { 0 };
        step_log l = { 0 };
        lm_sample_opts o;
        lm_sampler_opts_init(&o);
        o.sigmas = sig, o.n_sigmas = 3;
        o.positive = &pos, o.n_positive = 1, o.negative = &neg, o.n_negative = 1;
        o.cfg = guided ? 4.5 : 1.0;
        o.model = constant_model, o.model_user = &r;
        o.on_step = log_step, o.user = &l;
        lm_tensor *x = make_tensor(3, NULL), *y = NULL;
        CHECK_OK(lm_sampler_run(&y, &o, x, &err), &err);
        CHECK_INT(r.calls, 2);
        CHECK_INT(r.n[0], guided ? 2 : 1);    /* cfg 1: the negative is not evaluated */
        CHECK_INT(r.rows[0], guided ? 6 : 3); /* one batch: 3 positive rows, 3 negative */
        CHECK(r.conds[0][0] == &pv);
        if (guided)
            CHECK(r.conds[0][1] == &nv);
        double want = guided ? 0.5 + (2.0 - 0.5) * 4.5 : 2.0;
        CHECK_NEAR(l.last_denoised[0], want, 1e-6);
        CHECK_INT(l.steps_seen, 2);
        lm_tensor_free(x);
        lm_tensor_free(y);
    }
}

/* Stability's SD3.5 workflow: the negative is zeroed after the first 10% of the schedule by
 * two entries with ranges [0, 0.1] (the real negative) and [0.1, 1] (zeroed). */
void test_sd3_sampler__timestep_ranges(void)
{
    lm_error err;
    static const float pv = 3.0f, neg_real = 1.0f, neg_zero = 0.0f;
    lm_sample_cond pos = LM_SAMPLE_COND(&pv);
    lm_sample_cond negs[2] = { LM_SAMPLE_COND(&neg_zero), LM_SAMPLE_COND(&neg_real) };
    negs[0].start_percent = 0.1;
    negs[1].end_percent = 0.1;
    lm_sigmas s = schedule(LM_SCHEDULE_SIMPLE, 3.0, 20);
    recorder r = { 0 };
    lm_sample_opts o;
    lm_sampler_opts_init(&o);
    o.sigmas = s.sigma, o.n_sigmas = s.count;
    o.positive = &pos, o.n_positive = 1, o.negative = negs, o.n_negative = 2;
    o.cfg = 2.0;
    o.model = constant_model, o.model_user = &r;
    lm_tensor *x = make_tensor(1, NULL), *y = NULL;
    CHECK_OK(lm_sampler_run(&y, &o, x, &err), &err);
    REQUIRE(r.calls == 20);
    double edge = 2.7 / 2.8; /* percent_to_sigma(0.1) = s(0.9) */
    for (int i = 0; i < 20; i++) {
        bool early = (double)s.sigma[i] >= edge;
        CHECK_INT(r.n[i], 2);
        CHECK(r.conds[i][1] == (early ? &neg_real : &neg_zero));
    }
    CHECK((double)s.sigma[1] > edge &&
          (double)s.sigma[2] < edge); /* two steps use the real negative */
    lm_tensor_free(x);
    lm_tensor_free(y);
    lm_sigmas_fini(&s);
}

void test_sd3_sampler__overlapping_entries_average(void)
{
    lm_error err;
    static const float a = 1.0f, b = 5.0f;
    lm_sample_cond pos[2] = { LM_SAMPLE_COND(&a), LM_SAMPLE_COND(&b) };
    pos[1].strength = 3.0f;
    pos[1].start_percent = 0.5; /* b joins half way */
    float sig[4] = { 1.0f, 0.9f, 0.2f, 0.0f };
    recorder r = { 0 };
    step_log l = { 0 };
    lm_sample_opts o;
    lm_sampler_opts_init(&o);
    o.sigmas = sig, o.n_sigmas = 4;
    o.positive = pos, o.n_positive = 2;
    o.model = constant_model, o.model_user = &r;
    o.on_step = log_step, o.user = &l;
    lm_tensor *x = make_tensor(1, NULL), *y = NULL;
    CHECK_OK(lm_sampler_run(&y, &o, x, &err), &err);
    CHECK_NEAR(l.last_denoised[0], 1.0, 0);                        /* only a */
    CHECK_NEAR(l.last_denoised[1], 1.0, 0);                        /* 0.9 > s(0.5) = 0.75 */
    CHECK_NEAR(l.last_denoised[2], (1.0 + 3.0 * 5.0) / 4.0, 1e-6); /* both, by strength */
    /* a polarity with no active entry predicts 0 (ComfyUI) */
    pos[0].end_percent = 0.05;  /* a while sigma >= s(0.95) = 0.983 */
    pos[1].start_percent = 0.9; /* b while sigma <= s(0.1) = 0.25 */
    lm_tensor_free(y);
    CHECK_OK(lm_sampler_run(&y, &o, x, &err), &err);
    CHECK_NEAR(l.last_denoised[0], 1.0, 0);
    CHECK_NEAR(l.last_denoised[1], 0.0, 0);
    CHECK_NEAR(l.last_denoised[2], 5.0, 1e-6);
    lm_tensor_free(x);
    lm_tensor_free(y);
}

/* ---- progress, cancellation, errors ---- */

static bool cancel_at_2(void *user)
{
    step_log *l = user;
    return l->steps_seen >= 2;
}

void test_sd3_sampler__progress_and_cancel(void)
{
    lm_error err;
    analytic a;
    lm_sample_opts o;
    lm_sample_cond pos = LM_SAMPLE_COND(&pos_tag);
    lm_sigmas s = schedule(LM_SCHEDULE_SIMPLE, 3.0, 5);
    analytic_init(&a, 1.0);
    for (int k = 0; k < LM_SAMPLER_COUNT; k++) {
        step_log l = { 0 };
        analytic_opts(&o, &a, (lm_sampler)k, s.sigma, s.count, &pos);
        o.on_step = log_step, o.user = &l;
        lm_tensor *x = make_tensor(1, NULL), *y = NULL;
        CHECK_OK(lm_sampler_run(&y, &o, x, &err), &err);
        if (l.steps_seen != 5)
            test__fail(__FILE__, __LINE__, "%s reported %d steps of 5",
                       lm_sampler_name((lm_sampler)k), l.steps_seen);
        lm_tensor_free(y);
        l.steps_seen = 0;
        o.cancelled = cancel_at_2;
        CHECK_INT(lm_sampler_run(&y, &o, x, &err), LM_ECANCELLED);
        CHECK(y == NULL);
        CHECK_CONTAINS(err.msg, "before step 3 of 5");
        lm_tensor_free(x);
    }
    lm_sigmas_fini(&s);
}

void test_sd3_sampler__bad_schedule(void)
{
    lm_error err;
    analytic a;
    lm_sample_opts o;
    lm_sample_cond pos = LM_SAMPLE_COND(&pos_tag);
    float sig[3] = { 1.0f, 0.0f, 0.0f };
    analytic_init(&a, 1.0);
    analytic_opts(&o, &a, LM_SAMPLER_EULER, sig, 3, &pos);
    lm_tensor *x = make_tensor(1, NULL), *y = NULL;
    CHECK_INT(lm_sampler_run(&y, &o, x, &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "sigma 1");
    sig[1] = NAN;
    CHECK_INT(lm_sampler_run(&y, &o, x, &err), LM_EINVAL);
    o.model = NULL;
    CHECK_INT(lm_sampler_run(&y, &o, x, &err), LM_EINVAL);
    CHECK(y == NULL);
    lm_tensor_free(x);
}

/* ---- img2img meanings, KSamplerAdvanced ---- */

typedef struct {
    float first_sigma, first_x;
    int steps;
} first_step;

static void log_first(const lm_sample_step *s, void *user)
{
    first_step *f = user;
    if (s->step == 0) {
        f->first_sigma = s->sigma;
        f->first_x = ((const float *)lm_tensor_data(s->x))[0];
    }
    f->steps++;
}

static void img2img_run(lm_sigmas *s, first_step *f)
{
    lm_error err;
    analytic a;
    lm_sample_opts o;
    lm_sample_cond pos = LM_SAMPLE_COND(&pos_tag);
    float latent[NEL], noise[NEL];
    for (int i = 0; i < NEL; i++)
        latent[i] = 0.25f, noise[i] = 2.0f;
    analytic_init(&a, 1.0);
    analytic_opts(&o, &a, LM_SAMPLER_EULER, s->sigma, s->count, &pos);
    o.on_step = log_first, o.user = f;
    lm_tensor *l = make_tensor(1, latent), *n = make_tensor(1, noise), *y = NULL;
    CHECK_OK(lm_sampler_ksampler(&y, &o, l, n, &err), &err);
    lm_tensor_free(l);
    lm_tensor_free(n);
    lm_tensor_free(y);
}

void test_sd3_sampler__img2img_meanings(void)
{
    lm_error err;
    lm_model_sampling ms = LM_MODEL_SAMPLING_SD3;
    lm_sigmas s = { 0 };
    first_step f = { 0 };
    /* ComfyUI denoise 0.6, 10 steps: int(10/0.6) = 16 steps built, all 10 run from the
     * 7th sigma of the 16-step schedule */
    lm_sigmas full16 = schedule(LM_SCHEDULE_NORMAL, 3.0, 16);
    CHECK_OK(lm_scheduler_ksampler(&s, &ms, LM_SCHEDULE_NORMAL, 10, 0.6, false, &err), &err);
    img2img_run(&s, &f);
    CHECK_INT(f.steps, 10);
    CHECK_NEAR(f.first_sigma, full16.sigma[6], 0);
    /* the start is sigma0 * noise + (1 - sigma0) * latent */
    CHECK_NEAR(f.first_x, (double)f.first_sigma * 2.0 + (1.0 - (double)f.first_sigma) * 0.25, 1e-6);
    /* Stability / diffusers strength 0.6, 10 steps: int(10 * 0.4) = 4 sigmas skipped, 6 run */
    lm_sigmas full10 = schedule(LM_SCHEDULE_REFERENCE, 3.0, 10);
    memset(&f, 0, sizeof(f));
    CHECK_OK(lm_scheduler_strength(&s, &ms, LM_SCHEDULE_REFERENCE, 10, 0.6, &err), &err);
    img2img_run(&s, &f);
    CHECK_INT(f.steps, 6);
    CHECK_NEAR(f.first_sigma, full10.sigma[4], 0);
    CHECK_NEAR(f.first_x, (double)f.first_sigma * 2.0 + (1.0 - (double)f.first_sigma) * 0.25, 1e-6);
    lm_sigmas_fini(&s);
    lm_sigmas_fini(&full16);
    lm_sigmas_fini(&full10);
}

/* KSamplerAdvanced in two passes (steps 0-4 returning leftover noise, then 4-10 without
 * adding noise) gives the one-pass result, and start_at_step at the end returns the latent
 * untouched. */
void test_sd3_sampler__advanced_two_passes(void)
{
    lm_error err;
    analytic a;
    lm_sample_opts o;
    lm_sample_cond pos = LM_SAMPLE_COND(&pos_tag);
    float latent[NEL], noise[NEL];
    for (int i = 0; i < NEL; i++)
        latent[i] = 0.0f, noise[i] = z_of(i);
    analytic_init(&a, 1.0);
    lm_tensor *l = make_tensor(1, latent), *n = make_tensor(1, noise);
    lm_tensor *one = NULL, *half = NULL, *two = NULL, *same = NULL;
    lm_sigmas s = schedule(LM_SCHEDULE_SIMPLE, 3.0, 10);
    analytic_opts(&o, &a, LM_SAMPLER_DPMPP_2M, s.sigma, s.count, &pos);
    CHECK_OK(lm_sampler_ksampler(&one, &o, l, n, &err), &err);
    lm_scheduler_advanced(&s, 0, 4, true);
    o.sampler = LM_SAMPLER_EULER, o.sigmas = s.sigma, o.n_sigmas = s.count;
    CHECK_OK(lm_sampler_ksampler(&half, &o, l, n, &err), &err);
    lm_sigmas_fini(&s);
    s = schedule(LM_SCHEDULE_SIMPLE, 3.0, 10);
    lm_scheduler_advanced(&s, 4, 10000, false);
    o.sigmas = s.sigma, o.n_sigmas = s.count;
    CHECK_OK(lm_sampler_ksampler(&two, &o, half, NULL, &err), &err);
    lm_sigmas_fini(&s);
    /* reference: one Euler pass over the whole schedule */
    s = schedule(LM_SCHEDULE_SIMPLE, 3.0, 10);
    o.sigmas = s.sigma, o.n_sigmas = s.count;
    lm_tensor_free(one);
    CHECK_OK(lm_sampler_ksampler(&one, &o, l, n, &err), &err);
    REQUIRE(one && two);
    double worst = 0;
    for (int i = 0; i < NEL; i++)
        worst = fmax(worst, fabs((double)((float *)lm_tensor_data(one))[i] -
                                 (double)((float *)lm_tensor_data(two))[i]));
    test_note("two passes vs one: max |diff| %.3g", worst);
    CHECK(worst < 1e-5);
    lm_scheduler_advanced(&s, 10, 10000, false);
    o.sigmas = s.sigma, o.n_sigmas = s.count;
    CHECK_OK(lm_sampler_ksampler(&same, &o, half, n, &err), &err);
    CHECK(same && memcmp(lm_tensor_data(same), lm_tensor_data(half), NEL * 4) == 0);
    lm_sigmas_fini(&s);
    lm_tensor_free(l);
    lm_tensor_free(n);
    lm_tensor_free(one);
    lm_tensor_free(half);
    lm_tensor_free(two);
    lm_tensor_free(same);
}

/* ---- end-to-end goldens (MMDiT and VAE of the tiny checkpoints) ---- */

typedef struct {
    lm_tensor *context, *y; /* [1, T, D], [1, adm] */
} golden_cond;

/* The node layer's job, done here for the golden runs: contexts and pooled vectors of the
 * n entries stacked (each repeated for the latent batch), one MMDiT forward, x - v*sigma. */
static lm_status mmdit_model(lm_tensor **out, const lm_tensor *x, float sigma,
                             const void *const *conds, int n, void *user, lm_error *err)
{
    const lm_mmdit *model = user;
    const lm_tensor *ctx[16], *ys[16];
    lm_tensor *c = NULL, *y = NULL, *sig = NULL, *v = NULL;
    int64_t rows = x->shape[0], per = rows / n;
    if (rows > 16)
        return lm_errorf(err, LM_ELIMIT, NULL, "test model: batch of %lld", (long long)rows);
    for (int64_t r = 0; r < rows; r++) {
        ctx[r] = ((const golden_cond *)conds[r / per])->context;
        ys[r] = ((const golden_cond *)conds[r / per])->y;
    }
    lm_status st = lm_concat(&c, ctx, (int)rows, 0, err);
    if (st == LM_OK)
        st = lm_concat(&y, ys, (int)rows, 0, err);
    if (st == LM_OK)
        st = lm_tensor_new(&sig, lm_backend_cpu(), LM_DTYPE_F32, 1, &rows, err);
    if (st == LM_OK) {
        for (int64_t i = 0; i < rows; i++)
            ((float *)lm_tensor_data(sig))[i] = sigma;
        st = lm_mmdit_forward(model, x, sig, c, y, NULL, &v, err);
    }
    if (st == LM_OK)
        st = lm_mmdit_denoised(out, x, v, sig, err);
    lm_tensor_free(c);
    lm_tensor_free(y);
    lm_tensor_free(sig);
    lm_tensor_free(v);
    return st;
}

typedef struct {
    lm_safetensors *st;
    const char *prefix; /* "txt2img.euler" */
    gold_tol t;
    int steps;
    bool has_x;
} golden_steps;

/* on_step: the state and the guided prediction against row `step` of <prefix>.x_steps and
 * <prefix>.denoised_steps. */
static void check_step(const lm_sample_step *s, void *user)
{
    golden_steps *g = user;
    char name[96], what[96];
    g->steps++;
    if (g->has_x) {
        snprintf(name, sizeof(name), "%s.x_steps", g->prefix);
        snprintf(what, sizeof(what), "%s[%d]", name, s->step);
        compare_tensor_row(what, s->x, g->st, name, s->step, g->t);
    }
    snprintf(name, sizeof(name), "%s.denoised_steps", g->prefix);
    snprintf(what, sizeof(what), "%s[%d]", name, s->step);
    compare_tensor_row(what, s->denoised, g->st, name, s->step, g->t);
}

typedef struct {
    lm_safetensors *golden, *text, *ckpt;
    lm_mmdit *model;
    lm_vae *vae;
    golden_cond pos, neg;
    cJSON *params;
    gold_tol t, vae_tol;
} e2e;

static void e2e_fini(e2e *f)
{
    lm_mmdit_free(f->model);
    lm_vae_free(f->vae);
    lm_tensor_free(f->pos.context);
    lm_tensor_free(f->pos.y);
    lm_tensor_free(f->neg.context);
    lm_tensor_free(f->neg.y);
    cJSON_Delete(f->params);
    lm_safetensors_close(f->ckpt);
    lm_safetensors_close(f->text);
    lm_safetensors_close(f->golden);
}

static lm_status e2e_load(e2e *f, lm_error *err)
{
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_sd3_detect(f->ckpt, found, w);
    if (!found[LM_SD3_MMDIT] || !found[LM_SD3_VAE])
        return lm_errorf(err, LM_ENOTFOUND, NULL, "the checkpoint lacks the MMDiT or the VAE");
    lm_status st = lm_mmdit_load(&f->model, &w[LM_SD3_MMDIT], err);
    if (st == LM_OK)
        st = lm_vae_load(&f->vae, &w[LM_SD3_VAE], err);
    if (st == LM_OK)
        st = lm_safetensors_tensor(&f->pos.context, f->text, "positive.context", err);
    if (st == LM_OK)
        st = lm_safetensors_tensor(&f->pos.y, f->text, "positive.pooled", err);
    if (st == LM_OK)
        st = lm_safetensors_tensor(&f->neg.context, f->text, "negative_empty.context", err);
    if (st == LM_OK)
        st = lm_safetensors_tensor(&f->neg.y, f->text, "negative_empty.pooled", err);
    return st;
}

/* golden/<flavour>_sample + _text (the conditioning) + the checkpoint the config names. */
static bool e2e_init(e2e *f, const char *flavour)
{
    lm_error err;
    char rel[128];
    memset(f, 0, sizeof(*f));
    f->golden = gold_open_set(flavour, "sample");
    f->text = gold_open_set(flavour, "text");
    if (!f->golden || !f->text)
        return false;
    gold_checkpoint(f->golden, rel, sizeof(rel));
    f->ckpt = gold_open(rel);
    f->params = gold_metadata(f->golden, "params");
    f->t = gold_tolerance(f->golden, "sampling");
    f->vae_tol = gold_tolerance(f->golden, "vae");
    if (!f->ckpt || !f->params)
        return false;
    lm_status st = e2e_load(f, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, flavour, st, &err);
    return st == LM_OK;
}

/* The starting latent: the txt2img golden's empty latent (weight 0 at sigma 1), or for
 * img2img the VAE posterior mean of the golden INPUT image, checked against the golden. */
static lm_tensor *e2e_latent(e2e *f, bool i2i)
{
    lm_error err;
    lm_tensor *image = NULL, *latent = NULL;
    lm_status st = lm_safetensors_tensor(&image, f->golden,
                                         i2i ? "img2img.image" : "txt2img.empty_latent", &err);
    if (st == LM_OK && !i2i)
        return image;
    if (st == LM_OK)
        st = lm_vae_encode(f->vae, image, NULL, &latent, NULL, NULL, NULL, &err);
    lm_tensor_free(image);
    if (st != LM_OK) {
        test__fail_err(__FILE__, __LINE__, "img2img latent", st, &err);
        return NULL;
    }
    compare_tensor("img2img.latent (VAE encode)", latent, f->golden, "img2img.latent", f->vae_tol);
    return latent;
}

/* The final latent, and the image the VAE decodes from it. */
static void e2e_check_final(e2e *f, const char *prefix, const lm_tensor *out)
{
    lm_error err;
    char name[96];
    lm_tensor *image = NULL;
    snprintf(name, sizeof(name), "%s.final_latent", prefix);
    compare_tensor(name, out, f->golden, name, f->t);
    snprintf(name, sizeof(name), "%s.image", prefix);
    if (!out)
        return;
    CHECK_OK(lm_vae_decode(f->vae, out, &image, NULL, NULL, &err), &err);
    compare_tensor(name, image, f->golden, name, f->t);
    lm_tensor_free(image);
}

static void e2e_opts(lm_sample_opts *o, e2e *f, const cJSON *p, const lm_sigmas *s,
                     const lm_sample_cond *pos, const lm_sample_cond *neg, golden_steps *gs)
{
    lm_sampler_opts_init(o);
    o->sigmas = s->sigma, o->n_sigmas = s->count;
    o->sampling.shift = gold_param(p, "shift");
    o->cfg = gold_param(p, "cfg");
    o->positive = pos, o->n_positive = 1, o->negative = neg, o->n_negative = 1;
    o->model = mmdit_model, o->model_user = f->model;
    o->on_step = check_step, o->user = gs;
}

/* One golden run (`mode` "txt2img" or "img2img"): the golden noise, the reference schedule
 * (cut by the reference's strength rule for img2img), the start, every step, the final
 * latent and its image. */
static void e2e_run(e2e *f, const char *mode, const char *sampler_name)
{
    lm_error err;
    char name[96], prefix[64];
    const cJSON *p = cJSON_GetObjectItem(f->params, mode);
    bool i2i = strcmp(mode, "img2img") == 0;
    lm_model_sampling ms = { .shift = gold_param(p, "shift") };
    int steps = (int)gold_param(p, "steps");
    lm_sigmas s = { 0 };
    lm_status st = i2i ? lm_scheduler_strength(&s, &ms, LM_SCHEDULE_REFERENCE, steps,
                                               gold_param(p, "denoise"), &err)
                       : lm_scheduler_sigmas(&s, &ms, LM_SCHEDULE_REFERENCE, steps, &err);
    snprintf(prefix, sizeof(prefix), "%s.%s", mode, sampler_name);
    lm_sample_cond pos = LM_SAMPLE_COND(&f->pos), neg = LM_SAMPLE_COND(&f->neg);
    golden_steps gs = { .st = f->golden, .prefix = prefix, .t = f->t };
    snprintf(name, sizeof(name), "%s.x_steps", prefix);
    gs.has_x = lm_safetensors_find(f->golden, name) != NULL;
    lm_sample_opts o;
    e2e_opts(&o, f, p, &s, &pos, &neg, &gs);
    if (st == LM_OK)
        st = lm_sampler_parse(&o.sampler, sampler_name, &err);
    lm_tensor *noise = NULL, *latent = e2e_latent(f, i2i), *start = NULL, *out = NULL;
    snprintf(name, sizeof(name), "%s.noise", mode);
    if (st == LM_OK)
        st = lm_safetensors_tensor(&noise, f->golden, name, &err);
    if (st == LM_OK && latent)
        st = lm_sampler_noise_scaling(&start, s.sigma[0], noise, latent, &err);
    snprintf(name, sizeof(name), "%s.noise_scaled", mode);
    if (st == LM_OK && start && compare_tensor(name, start, f->golden, name, f->t))
        st = lm_sampler_run(&out, &o, start, &err);
    CHECK_OK(st, &err);
    CHECK_INT(gs.steps, s.count - 1);
    e2e_check_final(f, prefix, out);
    lm_tensor_free(noise);
    lm_tensor_free(latent);
    lm_tensor_free(start);
    lm_tensor_free(out);
    lm_sigmas_fini(&s);
}

static void e2e_case(const char *flavour)
{
    e2e f;
    if (e2e_init(&f, flavour)) {
        const cJSON *t2i = cJSON_GetObjectItem(f.params, "txt2img"), *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(t2i, "samplers"))
        {
            e2e_run(&f, "txt2img", cJSON_GetStringValue(it));
        }
        const cJSON *i2i = cJSON_GetObjectItem(f.params, "img2img");
        e2e_run(&f, "img2img", cJSON_GetStringValue(cJSON_GetObjectItem(i2i, "sampler")));
    }
    e2e_fini(&f);
}

void test_sd3_sampler__golden_sample_sd3m(void)
{
    e2e_case("sd3m");
}

void test_sd3_sampler__golden_sample_sd35m(void)
{
    e2e_case("sd35m");
}
