/* tests/nodes/test_inpaint.c — SetLatentNoiseMask and inpainting in KSampler /
 * KSamplerAdvanced (ComfyUI's KSamplerX0Inpaint), on the tiny sd3m checkpoint of
 * ../shared/golden.
 *
 * The mask preparation (comfy.utils.reshape_mask: bilinear to the latent's size, repeated
 * over channels and tiled over the batch) is checked against values worked out by hand.
 * End to end: a mask of ones must give exactly the unmasked result; a mask of zeros must
 * give back the input latent (ComfyUI does not blend the final samples, so up to the float
 * rounding of the last Euler step and of the latent scaling round trip); a half mask keeps
 * its masked-out half and changes the other. */
#include "core/exec.h"
#include "nodes/sampling/sampling_nodes.h"
#include "tests/tensor/tt.h"
#include "tests/test.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

extern const lm_node_def lm_node_checkpoint_loader_simple, lm_node_clip_text_encode,
    lm_node_ksampler, lm_node_ksampler_advanced, lm_node_set_latent_noise_mask;

/* ---- mask preparation ---- */

void test_nodes_inpaint__prepare_mask_upsamples_bilinearly(void)
{
    /* [[0, 1], [1, 1]] to 4 x 4. torch bilinear, align_corners False, 2 -> 4: source
     * positions max(0.5*(i + 0.5) - 0.5, 0) = 0, 0.25, 0.75, 1.25 (clamped to the last
     * sample), so each axis weighs its two samples (1, 0), (.75, .25), (.25, .75), (0, 1).
     * Row 0 becomes 0, .25, .75, 1 and row 1 stays 1; rows 1 and 2 mix them .75/.25. */
    const float m[4] = { 0, 1, 1, 1 };
    const float want[16] = { 0,   0.25,   0.75,   1, 0.25, 0.4375, 0.8125, 1,
                             .75, 0.8125, 0.9375, 1, 1,    1,      1,      1 };
    int64_t ms[3] = { 1, 2, 2 }, shape[4] = { 2, 3, 4, 4 };
    lm_tensor *mask = tt_from(m, 3, ms), *out = NULL;
    REQUIRE(mask);
    lm_error err;
    REQUIRE_OK(lm_sampling__prepare_mask(&out, mask, shape, &err), &err);
    for (int i = 0; i < 4; i++)
        CHECK_INT(out->shape[i], shape[i]);
    const float *p = lm_tensor_data(out);
    for (int bc = 0; bc < 6; bc++) /* every channel of both batch rows (one mask tiled) */
        for (int i = 0; i < 16; i++)
            if (p[bc * 16 + i] != want[i])
                test__fail(__FILE__, __LINE__, "row %d element %d: %g, expected %g", bc, i,
                           (double)p[bc * 16 + i], (double)want[i]);
    lm_tensor_free(mask);
    lm_tensor_free(out);
}

void test_nodes_inpaint__prepare_mask_downsamples_and_tiles_the_batch(void)
{
    /* Two 4 x 4 masks (values 0..15 and 16..31) as SetLatentNoiseMask stores them,
     * [2, 1, 4, 4], to a batch of 3 at 2 x 2: sources 2i + 0.5, so each output is the mean
     * of a 2 x 2 block (no antialias); batch row 2 takes mask 0 again (repeat, then cut). */
    float m[32];
    for (int i = 0; i < 32; i++)
        m[i] = (float)i;
    int64_t ms[4] = { 2, 1, 4, 4 }, shape[4] = { 3, 1, 2, 2 };
    lm_tensor *mask = tt_from(m, 4, ms), *out = NULL;
    REQUIRE(mask);
    lm_error err;
    REQUIRE_OK(lm_sampling__prepare_mask(&out, mask, shape, &err), &err);
    const float block[4] = { 2.5f, 4.5f, 10.5f, 12.5f }; /* (0+1+4+5)/4, … */
    const float *p = lm_tensor_data(out);
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(p[i], block[i], 1e-6);
        CHECK_NEAR(p[4 + i], block[i] + 16.0f, 1e-6);
        CHECK_NEAR(p[8 + i], block[i], 1e-6);
    }
    lm_tensor_free(mask);
    lm_tensor_free(out);
    /* A mask with no height is refused with a message naming it. */
    int64_t bad[2] = { 0, 4 };
    REQUIRE_OK(lm_tensor_new(&mask, lm_backend_cpu(), LM_DTYPE_F32, 2, bad, &err), &err);
    CHECK_INT(lm_sampling__prepare_mask(&out, mask, shape, &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "noise mask");
    lm_tensor_free(mask);
}

/* ---- end to end on the tiny checkpoint ---- */

typedef struct {
    lm_env env;
    lm_value *model, *clip, *vae, *pos, *neg, *latent;
} fx;

static bool fx_init(fx *f)
{
    static char models[1024], ck[1100], dst[1200];
    memset(f, 0, sizeof(*f));
    snprintf(models, sizeof(models), "%s/models", test_tmpdir());
    snprintf(ck, sizeof(ck), "%s/checkpoints", models);
    mkdir(models, 0755);
    mkdir(ck, 0755);
    const char *src = test_shared("golden/sd3m_tiny.safetensors");
    const char *tok = test_shared("tokenizers");
    if (!src || !tok)
        return false;
    snprintf(dst, sizeof(dst), "%s/sd3m_tiny.safetensors", ck);
    if (symlink(src, dst) != 0)
        return false;
    snprintf(dst, sizeof(dst), "%s/tokenizers", models);
    if (symlink(tok, dst) != 0)
        return false;
    f->env = (lm_env){ .models_dir = models };
    lm_error err;
    lm_value *in[1] = { lm_value_string("sd3m_tiny.safetensors") }, *out[3] = { NULL };
    lm_status st =
        lm_exec_run_node(&lm_node_checkpoint_loader_simple, &f->env, in, out, NULL, NULL, &err);
    lm_value_unref(in[0]);
    if (st != LM_OK) {
        test__fail_err(__FILE__, __LINE__, "CheckpointLoaderSimple", st, &err);
        return false;
    }
    f->model = out[0], f->clip = out[1], f->vae = out[2];
    const char *texts[2] = { "a fox in a field", "" };
    lm_value **conds[2] = { &f->pos, &f->neg };
    for (int i = 0; i < 2; i++) {
        lm_value *tin[2] = { lm_value_string(texts[i]), f->clip };
        st = lm_exec_run_node(&lm_node_clip_text_encode, &f->env, tin, conds[i], NULL, NULL, &err);
        lm_value_unref(tin[0]);
        if (st != LM_OK) {
            test__fail_err(__FILE__, __LINE__, "CLIPTextEncode", st, &err);
            return false;
        }
    }
    /* An encoded-looking latent [1, 16, 8, 8] (raw VAE space, not all zeros). */
    float v[16 * 64];
    for (int i = 0; i < 16 * 64; i++)
        v[i] = (float)(0.8 * sin(0.37 * i) + 0.1 * (double)(i / 64) - 0.5);
    int64_t shape[4] = { 1, 16, 8, 8 };
    f->latent = lm_value_latent(tt_from(v, 4, shape), NULL);
    return f->latent != NULL;
}

static void fx_fini(fx *f)
{
    lm_value *v[6] = { f->model, f->clip, f->vae, f->pos, f->neg, f->latent };
    for (int i = 0; i < 6; i++)
        lm_value_unref(v[i]);
}

/* The latent with a 64 x 64 pixel MASK: 1 (sample) in columns x < split, 0 elsewhere. */
static lm_value *masked(fx *f, int split)
{
    int64_t shape[3] = { 1, 64, 64 };
    lm_tensor *m = NULL;
    lm_error err;
    if (lm_tensor_new(&m, lm_backend_cpu(), LM_DTYPE_F32, 3, shape, &err) != LM_OK)
        return NULL;
    float *p = lm_tensor_data(m);
    for (int i = 0; i < 64 * 64; i++)
        p[i] = i % 64 < split ? 1.0f : 0.0f;
    lm_value *in[2] = { f->latent, lm_value_mask(m) }, *out[1] = { NULL };
    lm_status st =
        lm_exec_run_node(&lm_node_set_latent_noise_mask, &f->env, in, out, NULL, NULL, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "SetLatentNoiseMask", st, &err);
    lm_value_unref(in[1]);
    return out[0];
}

static lm_value *ksample(fx *f, lm_value *latent, const char *sampler)
{
    lm_value *in[10] = { f->model,
                         lm_value_int(7),
                         lm_value_int(3),
                         lm_value_float(4.0),
                         lm_value_string(sampler),
                         lm_value_string("sgm_uniform"),
                         f->pos,
                         f->neg,
                         latent,
                         lm_value_float(1.0) };
    lm_value *out[1] = { NULL };
    lm_error err;
    lm_status st = lm_exec_run_node(&lm_node_ksampler, &f->env, in, out, NULL, NULL, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "KSampler", st, &err);
    for (int i = 1; i < 6; i++)
        lm_value_unref(in[i]);
    lm_value_unref(in[9]);
    return out[0];
}

/* max |a - b| over the columns [x0, x1) of [1, 16, 8, 8] latents. */
static double max_diff(const lm_value *a, const lm_value *b, int x0, int x1)
{
    const float *p = lm_tensor_data(lm_value_tensor(a)), *q = lm_tensor_data(lm_value_tensor(b));
    double worst = 0;
    for (int i = 0; i < 16 * 64; i++)
        if (i % 8 >= x0 && i % 8 < x1)
            worst = fmax(worst, fabs((double)p[i] - (double)q[i]));
    return worst;
}

void test_nodes_inpaint__set_latent_noise_mask_shapes(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *m = masked(&f, 32);
    REQUIRE(m);
    const lm_tensor *nm = lm_value_noise_mask(m);
    REQUIRE(nm);
    CHECK(nm->ndim == 4 && nm->shape[0] == 1 && nm->shape[1] == 1 && nm->shape[2] == 64 &&
          nm->shape[3] == 64); /* ComfyUI's mask.reshape((-1, 1, H, W)) */
    CHECK(lm_value_tensor(m) != lm_value_tensor(f.latent)); /* a view, same numbers */
    CHECK(lm_tensor_data(lm_value_tensor(m)) == lm_tensor_data(lm_value_tensor(f.latent)));
    CHECK(lm_value_noise_mask(f.latent) == NULL); /* the input is untouched */
    lm_value_unref(m);
    fx_fini(&f);
}

void test_nodes_inpaint__ones_zeros_and_half_masks(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *ones = masked(&f, 64), *zeros = masked(&f, 0), *half = masked(&f, 32);
    REQUIRE(ones && zeros && half);
    lm_value *a = ksample(&f, f.latent, "euler"), *b = ksample(&f, ones, "euler");
    lm_value *c = ksample(&f, zeros, "euler"), *d = ksample(&f, half, "euler");
    REQUIRE(a && b && c && d);
    /* Ones: x*1 + .*0 and out*1 + .*0 leave every number as it was. */
    CHECK(max_diff(a, b, 0, 8) == 0.0);
    /* Zeros: the latent comes back; half: the right half (mask 0 at pixels x >= 32, latent
     * columns 4..7 after the bilinear resize) comes back, the left half is resampled. */
    double dz = max_diff(c, f.latent, 0, 8), dkeep = max_diff(d, f.latent, 4, 8);
    double dfree = max_diff(d, f.latent, 0, 4), dfree_a = max_diff(d, a, 0, 4);
    test_note("zeros: max |out - in| %.3g; half: kept %.3g, sampled %.3g (vs unmasked %.3g)", dz,
              dkeep, dfree, dfree_a);
    CHECK(dz < 1e-5);
    CHECK(dkeep < 1e-5);
    CHECK(dfree > 0.1);
    CHECK(dfree_a > 1e-4); /* the kept half steers the sampled one */
    /* The mask goes on with the result, as ComfyUI's latent.copy(). */
    CHECK(lm_value_noise_mask(d) != NULL);
    CHECK(lm_value_noise_mask(a) == NULL);
    lm_value *v[7] = { ones, zeros, half, a, b, c, d };
    for (int i = 0; i < 7; i++)
        lm_value_unref(v[i]);
    fx_fini(&f);
}

void test_nodes_inpaint__other_samplers_and_advanced(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *half = masked(&f, 32);
    REQUIRE(half);
    /* ddim (ComfyUI: euler with a fresh randn(seed + 1) for the kept part) and a
     * second-order sampler keep the masked-out half too. */
    static const char *const samplers[] = { "ddim", "heun", "dpmpp_2m" };
    for (int i = 0; i < 3; i++) {
        lm_value *r = ksample(&f, half, samplers[i]);
        REQUIRE(r);
        double keep = max_diff(r, f.latent, 4, 8), moved = max_diff(r, f.latent, 0, 4);
        test_note("%s: kept %.3g, sampled %.3g", samplers[i], keep, moved);
        CHECK(keep < 1e-5);
        CHECK(moved > 0.1);
        lm_value_unref(r);
    }
    /* KSamplerAdvanced with add_noise disabled: the kept part is noised with zeros. */
    lm_value *in[13] = { f.model,
                         lm_value_string("disable"),
                         lm_value_int(7),
                         lm_value_int(3),
                         lm_value_float(4.0),
                         lm_value_string("euler"),
                         lm_value_string("sgm_uniform"),
                         f.pos,
                         f.neg,
                         half,
                         lm_value_int(0),
                         lm_value_int(10000),
                         lm_value_string("disable") };
    lm_value *out[1] = { NULL };
    lm_error err;
    CHECK_OK(lm_exec_run_node(&lm_node_ksampler_advanced, &f.env, in, out, NULL, NULL, &err), &err);
    REQUIRE(out[0]);
    CHECK(max_diff(out[0], f.latent, 4, 8) < 1e-5);
    for (int i = 1; i < 7; i++)
        lm_value_unref(in[i]);
    for (int i = 10; i < 13; i++)
        lm_value_unref(in[i]);
    lm_value_unref(out[0]);
    lm_value_unref(half);
    fx_fini(&f);
}
