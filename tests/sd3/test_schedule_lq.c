/* tests/sd3/test_schedule_lq.c — the `linear_quadratic` schedule (ComfyUI's
 * linear_quadratic_schedule, threshold_noise 0.025, linear_steps = steps // 2).
 *
 * Expected values are worked out here by hand from the formula (the literal tables) and
 * from an independent closed form: the quadratic part is the Taylor form around
 * linear_steps, s(lin + t) = thr + thr*t/lin + (lin - thr*steps)*t^2 / (lin * quad^2),
 * which meets the linear part with the same value and slope and reaches 1 at t = quad;
 * sigma_i = (1 - s_i) * sigma_max. Never against the library's own output. */
#include "core/registry.h"
#include "nodes/sd3/sampler.h"
#include "tests/test.h"

#include <stdio.h>

extern const lm_node_def lm_node_ksampler, lm_node_ksampler_advanced;

static lm_sigmas lq(double shift, int steps)
{
    lm_error err;
    lm_sigmas out = { 0 };
    lm_model_sampling ms = { .shift = shift };
    CHECK_OK(lm_scheduler_sigmas(&out, &ms, LM_SCHEDULE_LINEAR_QUADRATIC, steps, &err), &err);
    return out;
}

static void check_table(const char *what, const lm_sigmas *got, const double *want, int n)
{
    if (got->count != n) {
        test__fail(__FILE__, __LINE__, "%s: %d sigmas, expected %d", what, got->count, n);
        return;
    }
    for (int i = 0; i < n; i++)
        if (fabs((double)got->sigma[i] - want[i]) > 1e-7)
            test__fail(__FILE__, __LINE__, "%s: sigma[%d] = %.9g, expected %.9g", what, i,
                       (double)got->sigma[i], want[i]);
}

/* The closed form above, in double. */
static double lq_closed(int steps, int i)
{
    const double thr = 0.025;
    int lin = steps / 2, quad = steps - lin;
    if (steps == 1)
        return i == 0 ? 1.0 : 0.0;
    if (i < lin)
        return 1.0 - thr * i / lin;
    double t = i - lin;
    return 1.0 - (thr + thr * t / lin + (lin - thr * steps) * t * t / ((double)lin * quad * quad));
}

void test_sd3_schedule_lq__four_steps(void)
{
    /* lin 2, quad 2: s = 0, 0.0125 (linear), then 0.2375 i^2 - 0.9375 i + 0.95 at i = 2, 3:
     * 0.025, 0.275; and 1 at the end. */
    double want[5] = { 1.0, 0.9875, 0.975, 0.725, 0.0 };
    lm_sigmas s = lq(3.0, 4);
    check_table("steps 4", &s, want, 5);
    lm_sigmas_fini(&s);
}

void test_sd3_schedule_lq__ten_steps(void)
{
    /* lin 5, quad 5: s = 0, .005, .01, .015, .02, then 0.038 i^2 - 0.375 i + 0.95 at
     * i = 5..9: 0.025, 0.068, 0.187, 0.382, 0.653. */
    double want[11] = { 1.0, 0.995, 0.99, 0.985, 0.98, 0.975, 0.932, 0.813, 0.618, 0.347, 0.0 };
    lm_sigmas s = lq(3.0, 10);
    check_table("steps 10", &s, want, 11);
    lm_sigmas_fini(&s);
}

void test_sd3_schedule_lq__short_schedules(void)
{
    /* 1 step: ComfyUI's [1, 0]; 2 steps (lin 1, quad 1): s_1 = 0.025; 3 steps (lin 1,
     * quad 2): 0.23125 i^2 - 0.4375 i + 0.23125 gives s_1 = 0.025, s_2 = 0.28125. */
    double one[2] = { 1.0, 0.0 }, two[3] = { 1.0, 0.975, 0.0 },
           three[4] = { 1.0, 0.975, 0.71875, 0.0 };
    lm_sigmas s = lq(3.0, 1);
    check_table("steps 1", &s, one, 2);
    lm_sigmas_fini(&s);
    s = lq(3.0, 2);
    check_table("steps 2", &s, two, 3);
    lm_sigmas_fini(&s);
    s = lq(3.0, 3);
    check_table("steps 3", &s, three, 4);
    lm_sigmas_fini(&s);
}

void test_sd3_schedule_lq__closed_form_and_shape(void)
{
    /* Any shift: sigma_max = s(1) = 1, so the schedule does not depend on the shift. */
    static const double shifts[] = { 1.0, 3.0, 6.0 };
    for (int k = 0; k < 3; k++) {
        for (int steps = 1; steps <= 41; steps += 4) {
            lm_sigmas s = lq(shifts[k], steps);
            REQUIRE(s.count == steps + 1);
            for (int i = 0; i <= steps; i++) {
                CHECK_NEAR(s.sigma[i], lq_closed(steps, i), 2e-7);
                if (i > 0)
                    CHECK(s.sigma[i] < s.sigma[i - 1]);
            }
            lm_sigmas_fini(&s);
        }
    }
}

void test_sd3_schedule_lq__name_and_ksampler_denoise(void)
{
    lm_error err;
    lm_schedule sch;
    CHECK_OK(lm_scheduler_parse(&sch, "linear_quadratic", &err), &err);
    CHECK_INT(sch, LM_SCHEDULE_LINEAR_QUADRATIC);
    CHECK_STR(lm_scheduler_name(LM_SCHEDULE_LINEAR_QUADRATIC), "linear_quadratic");
    /* KSampler denoise 0.5 with 4 steps: the last 5 sigmas of the 8-step schedule. */
    lm_model_sampling ms = LM_MODEL_SAMPLING_SD3;
    lm_sigmas s = { 0 };
    REQUIRE_OK(lm_scheduler_ksampler(&s, &ms, sch, 4, 0.5, false, &err), &err);
    double want[5];
    for (int i = 0; i < 5; i++)
        want[i] = lq_closed(8, i + 4);
    REQUIRE(s.count == 5);
    for (int i = 0; i < 5; i++)
        CHECK_NEAR(s.sigma[i], want[i], 2e-7);
    lm_sigmas_fini(&s);
}

/* ComfyUI's SCHEDULER_HANDLERS order (comfy/samplers.py). */
static void check_scheduler_choices(const lm_node_def *def)
{
    static const char *const comfy[] = { "simple",      "sgm_uniform",      "karras",
                                         "exponential", "ddim_uniform",     "beta",
                                         "normal",      "linear_quadratic", "kl_optimal" };
    const lm_input_def *in = NULL;
    for (size_t i = 0; i < def->n_inputs; i++)
        if (strcmp(def->inputs[i].name, "scheduler") == 0)
            in = &def->inputs[i];
    REQUIRE(in && in->choices);
    int n = 0;
    for (; in->choices[n]; n++)
        if (n < 9)
            CHECK_STR(in->choices[n], comfy[n]);
    CHECK_INT(n, 9);
}

void test_sd3_schedule_lq__ksampler_choices_in_comfyui_order(void)
{
    check_scheduler_choices(&lm_node_ksampler);
    check_scheduler_choices(&lm_node_ksampler_advanced);
}
