/* tests/nodes/test_latent_upscale.c — LatentUpscale's "bislerp" (ComfyUI's comfy.utils.bislerp)
 * through the resampler and through the node.
 *
 * Expected values are derived by hand, not by the code under test. With two channels a
 * pixel is a plane vector of angle a and norm r, and ComfyUI's slerp at ratio t is then the
 * vector of angle (1-t)*a1 + t*a2 and norm (1-t)*r1 + t*r2 (for |a2 - a1| < 180 degrees).
 * Its coordinate mapping for 2 -> 3 samples (torch bilinear on index ramps, align_corners
 * False) reads source pixels (0, 1) at ratio 0, (0, 1) at 0.5 and (1, 1) at 0: the ends are
 * the source pixels, the middle the slerp half way. */
#include "core/exec.h"
#include "nodes/image/image_nodes.h"
#include "tests/tensor/tt.h"
#include "tests/test.h"

#include <stdio.h>

extern const lm_node_def lm_node_latent_upscale;

static const double deg = 3.14159265358979323846 / 180.0;

static void check_polar(const float *p, double angle_deg, double norm, const char *what)
{
    double x = norm * cos(angle_deg * deg), y = norm * sin(angle_deg * deg);
    if (fabs((double)p[0] - x) > 2e-6 || fabs((double)p[1] - y) > 2e-6)
        test__fail(__FILE__, __LINE__, "%s: (%.7f, %.7f), expected (%.7f, %.7f)", what,
                   (double)p[0], (double)p[1], x, y);
}

void test_nodes_latent_upscale__bislerp_2x2_to_3x3(void)
{
    /* NHWC [1, 2, 2, 2]: p00 = (0 deg, 1), p01 = (90, 2), p10 = (90, 1), p11 = (45, sqrt 2) */
    const float v[8] = { 1, 0, 0, 2, 0, 1, 1, 1 };
    int64_t shape[4] = { 1, 2, 2, 2 };
    lm_tensor *src = tt_from(v, 4, shape), *out = NULL;
    REQUIRE(src);
    lm_error err;
    REQUIRE_OK(lm_image_nodes__resize(NULL, src, lm_tensor_data(src), 3, 3, LM_RESAMPLE_BISLERP,
                                      false, &out, &err),
               &err);
    CHECK_INT(out->shape[1], 3);
    CHECK_INT(out->shape[2], 3);
    CHECK_INT(out->shape[3], 2);
    /* Width pass. Row 0: (0, 1), (45, 1.5), (90, 2); row 1: (90, 1), (67.5, (1 + sqrt 2)/2),
     * (45, sqrt 2). Height pass: rows 0 and 2 as they are, row 1 half way between them. */
    const double r2 = sqrt(2.0), mid = (1.0 + r2) / 2.0;
    const double want[3][3][2] = {
        { { 0, 1 }, { 45, 1.5 }, { 90, 2 } },
        { { 45, 1 }, { 56.25, (1.5 + mid) / 2 }, { 67.5, (2 + r2) / 2 } },
        { { 90, 1 }, { 67.5, mid }, { 45, r2 } },
    };
    const float *p = lm_tensor_data(out);
    for (int y = 0; y < 3; y++) {
        for (int x = 0; x < 3; x++) {
            char what[32];
            snprintf(what, sizeof(what), "pixel (%d, %d)", y, x);
            check_polar(p + (y * 3 + x) * 2, want[y][x][0], want[y][x][1], what);
        }
    }
    lm_tensor_free(src);
    lm_tensor_free(out);
}

void test_nodes_latent_upscale__bislerp_edge_cases(void)
{
    /* Three one-row images, 2 -> 3 wide: ComfyUI's slerp gives b1 itself for vectors of the
     * same direction (norms not interpolated), the straight line for opposite ones, and
     * treats a zero vector's direction as 0 (angle 90 degrees to anything). */
    const float v[12] = { 1, 0, 3, 0, /**/ 1, 0, -3, 0, /**/ 0, 0, 0, 2 };
    int64_t shape[4] = { 3, 1, 2, 2 };
    lm_tensor *src = tt_from(v, 4, shape), *out = NULL;
    REQUIRE(src);
    lm_error err;
    REQUIRE_OK(lm_image_nodes__resize(NULL, src, lm_tensor_data(src), 3, 1, LM_RESAMPLE_BISLERP,
                                      false, &out, &err),
               &err);
    const float *p = lm_tensor_data(out); /* [3, 1, 3, 2] */
    CHECK(p[2] == 1.0f && p[3] == 0.0f);  /* same direction: b1, not (2, 0) */
    CHECK(p[4] == 3.0f && p[5] == 0.0f);
    CHECK_NEAR(p[6 + 2], -1.0, 1e-6); /* opposite: 0.5*1 + 0.5*(-3) */
    CHECK_NEAR(p[6 + 3], 0.0, 1e-6);
    /* zero and (0, 2): unit parts 0 and (0, 1), omega 90 deg: sin(45)/1 * (0, 1) * (0 + 2)/2 */
    CHECK_NEAR(p[12 + 2], 0.0, 1e-6);
    CHECK_NEAR(p[12 + 3], sqrt(0.5), 1e-6);
    lm_tensor_free(src);
    lm_tensor_free(out);
}

/* A LATENT [2, 16, 8, 12] of smooth, non-parallel channel vectors. */
static lm_value *test_latent(void)
{
    int64_t shape[4] = { 2, 16, 8, 12 };
    lm_tensor *t = NULL;
    lm_error err;
    if (lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err) != LM_OK)
        return NULL;
    float *p = lm_tensor_data(t);
    for (int64_t i = 0; i < lm_tensor_numel(t); i++) {
        int64_t c = (i / 96) % 16, y = (i / 12) % 8, x = i % 12;
        p[i] = (float)(sin(0.7 * (double)c + 0.3 * (double)y) + cos(0.5 * (double)(c * x)));
    }
    return lm_value_latent(t, NULL);
}

static lm_value *upscale(lm_value *lat, const char *method, int64_t w, int64_t h, const char *crop)
{
    lm_value *in[5] = { lat, lm_value_string(method), lm_value_int(w), lm_value_int(h),
                        lm_value_string(crop) };
    lm_value *out[1] = { NULL };
    lm_env env = { 0 };
    lm_error err;
    lm_status st = lm_exec_run_node(&lm_node_latent_upscale, &env, in, out, NULL, NULL, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "LatentUpscale", st, &err);
    for (int i = 1; i < 5; i++)
        lm_value_unref(in[i]);
    return out[0];
}

void test_nodes_latent_upscale__bislerp_node_shapes_and_identity(void)
{
    lm_value *lat = test_latent();
    REQUIRE(lat);
    const lm_tensor *x = lm_value_tensor(lat);
    lm_value *up = upscale(lat, "bislerp", 0, 128, "disabled"); /* 12 x 8 -> 24 x 16 */
    lm_value *crop = upscale(lat, "bislerp", 64, 64, "center"); /* middle 8 x 8 */
    lm_value *same = upscale(lat, "bislerp", 96, 64, "disabled");
    REQUIRE(up && crop && same);
    const lm_tensor *u = lm_value_tensor(up), *c = lm_value_tensor(crop);
    CHECK(u->shape[0] == 2 && u->shape[1] == 16 && u->shape[2] == 16 && u->shape[3] == 24);
    CHECK(c->shape[0] == 2 && c->shape[1] == 16 && c->shape[2] == 8 && c->shape[3] == 8);
    /* Same size: ratio 0 everywhere, so each pixel is its own vector (up to rounding). */
    const float *p = lm_tensor_data(x), *q = lm_tensor_data(lm_value_tensor(same));
    double worst = 0;
    for (int64_t i = 0; i < lm_tensor_numel(x); i++)
        worst = fmax(worst, fabs((double)p[i] - (double)q[i]));
    test_note("bislerp at the same size: max |diff| %.3g", worst);
    CHECK(worst < 1e-5);
    /* The crop of 8 x 12 to 8 x 8 keeps columns 2..9 (ComfyUI: x = round((12 - 8) / 2)). */
    const float *r = lm_tensor_data(c);
    CHECK_NEAR(r[0], p[2], 1e-5);
    CHECK_NEAR(r[7], p[9], 1e-5);
    /* Upscaled values stay within the norms of their neighbours: finite and bounded. */
    const float *s = lm_tensor_data(u);
    bool finite = true;
    for (int64_t i = 0; i < lm_tensor_numel(u); i++)
        finite = finite && isfinite(s[i]) && fabsf(s[i]) < 10.0f;
    CHECK(finite);
    lm_value_unref(up);
    lm_value_unref(crop);
    lm_value_unref(same);
    lm_value_unref(lat);
}

void test_nodes_latent_upscale__bislerp_keeps_a_constant_latent(void)
{
    /* Every pixel the same vector: every slerp is between equal directions, so b1 exactly. */
    int64_t shape[4] = { 1, 16, 8, 8 };
    float v[16 * 64];
    for (int i = 0; i < 16 * 64; i++)
        v[i] = (float)(i / 64) * 0.25f - 1.5f;
    lm_value *lat = lm_value_latent(tt_from(v, 4, shape), NULL);
    REQUIRE(lat);
    lm_value *up = upscale(lat, "bislerp", 136, 72, "disabled"); /* 8 x 8 -> 17 x 9 */
    REQUIRE(up);
    const lm_tensor *u = lm_value_tensor(up);
    CHECK(u->shape[2] == 9 && u->shape[3] == 17);
    const float *p = lm_tensor_data(u);
    bool same = true;
    for (int64_t i = 0; i < lm_tensor_numel(u); i++)
        same = same && p[i] == (float)(i / (9 * 17)) * 0.25f - 1.5f;
    CHECK(same);
    lm_value_unref(up);
    lm_value_unref(lat);
}
