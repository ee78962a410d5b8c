/* tests/nodes/test_sd3_golden_nodes.c — the SD3 nodes compute what `loom golden` verifies:
 * KSampler, KSamplerAdvanced, VAEEncode and VAEDecode, driven one by one through
 * lm_exec_run_node with the sampling goldens' conditioning, seed, steps, cfg, shift, sampler
 * and denoise, give the golden final latents and images within `tolerances.sampling`.
 *
 * The goldens start from token ids, so this starts below the text: the CONDITIONING values
 * hold the text golden's assembled `positive.context/.pooled` and `negative_empty.context/
 * .pooled` (the positive prompt and the empty negative), the MODEL is CheckpointLoaderSimple's
 * for the checkpoint the golden's config names, through ModelSamplingSD3 with the golden's
 * shift. Every number comes from the golden files' `params` metadata.
 *
 * How Stability's reference maps onto ComfyUI's nodes (nothing here bends the nodes):
 *   - noise: torch.manual_seed(seed); torch.randn(latent shape) is KSampler's noise for its
 *     seed (lm_sampler_noise), checked first against the golden INPUT <mode>.noise.
 *   - schedule: the reference's get_sigmas is ComfyUI's `normal` scheduler (uniform
 *     timesteps from sigma_max to sigma_min, the low end shifted twice), checked against
 *     <mode>.sigmas with `tolerances.schedule`; `sgm_uniform` (the shipped workflows') is not.
 *   - latents: LATENT values are raw VAE space, the golden's latents scaled (MMDiT space):
 *     results are compared both as they are with <prefix>.final_latent_vae and through
 *     process_in with <prefix>.final_latent. KSampler leaves EmptySD3LatentImage's zeros
 *     unshifted, so it starts from sigma0 * noise, as the reference does (its random "empty
 *     latent" gets weight 1 - sigma0 = 0).
 *   - img2img: the reference runs sigmas_full[k:], k = int(steps * (1 - denoise)) in double
 *     (the diffusers/Stability "strength"); KSampler's denoise is ComfyUI's (int(steps /
 *     denoise) steps built, the last steps+1 sigmas kept), another schedule. KSamplerAdvanced
 *     with the same steps, start_at_step = k, end_at_step 10000, add_noise enable and
 *     noise_seed = seed is the reference exactly. So is KSampler with steps - k steps and
 *     denoise (steps - k) / steps whenever int((steps - k) / denoise) == steps in double
 *     (checked, and its result must equal KSamplerAdvanced's bit for bit).
 *   - images: VAEDecode gives ComfyUI's [B, H, W, 3] in [0, 1], clamped; it is compared with
 *     clamp(golden image, -1, 1) after x -> 2x - 1, and, where the golden has one, its 8-bit
 *     truncation with <prefix>.image_u8 (`tolerances.image_u8`). */
#include "core/exec.h"
#include "core/io/safetensors.h"
#include "nodes/sd3/models.h"
#include "nodes/sd3/sampler.h"
#include "tests/sd3/sd3_fixture.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

extern const lm_node_def lm_node_checkpoint_loader_simple, lm_node_model_sampling_sd3,
    lm_node_empty_sd3_latent_image, lm_node_ksampler, lm_node_ksampler_advanced, lm_node_vae_encode,
    lm_node_vae_decode;

static const char *const flavours[] = { "sd3m", "sd35m" };

/* ---- golden files ---- */

/* Golden tensor `name` as a contiguous F32 host copy (NULL, the test failed, when absent). */
static lm_tensor *golden_tensor(lm_safetensors *st, const char *name)
{
    lm_error err;
    lm_tensor *t = NULL, *h = NULL;
    lm_status s = lm_safetensors_tensor(&t, st, name, &err);
    if (s == LM_OK)
        s = lm_tensor_to_f32_host(&h, t, &err);
    lm_tensor_free(t);
    if (s != LM_OK)
        test__fail_err(__FILE__, __LINE__, name, s, &err);
    return h;
}

/* A node result against golden tensor `name`. */
static bool compare_tensor(const char *what, const lm_tensor *got, lm_safetensors *st,
                           const char *name, gold_tol t)
{
    lm_tensor *g = golden_tensor(st, name);
    bool ok = gold_same_shape(what, got, g) && gold_compare(what, got, g, t);
    lm_tensor_free(g);
    return ok;
}

/* A raw LATENT against the scaled golden `name`, through process_in. */
static bool compare_scaled(const char *what, const lm_tensor *raw, lm_safetensors *st,
                           const char *name, gold_tol t)
{
    lm_error err;
    lm_tensor *scaled = NULL;
    lm_vae_config vc = { .scale = LM_VAE_SD3_SCALE, .shift = LM_VAE_SD3_SHIFT };
    if (lm_vae_process_in(&vc, raw, &scaled, &err) != LM_OK)
        test__fail_err(__FILE__, __LINE__, "process_in", err.code, &err);
    bool ok = compare_tensor(what, scaled, st, name, t);
    lm_tensor_free(scaled);
    return ok;
}

/* ---- the fixture: a models directory and the values every run shares ---- */

typedef struct {
    lm_safetensors *golden, *text;
    cJSON *params;
    gold_tol sampling, vae, u8;
    char models[1024];
    lm_env env;
    lm_value *ckpt[3];   /* MODEL, CLIP, VAE of CheckpointLoaderSimple */
    lm_value *pos, *neg; /* CONDITIONING from the text golden */
} gfx;

typedef struct {
    int progress;
} counts;

static void on_event(const lm_event *ev, void *user)
{
    if (ev->type == LM_EVENT_PROGRESS)
        ((counts *)user)->progress++;
}

/* Runs one node; NULL results when it failed (the test failed, naming the node). */
static lm_status run_node(const gfx *f, const lm_node_def *def, lm_value *const *in, lm_value **out,
                          counts *c)
{
    lm_error err;
    lm_run_opts ro = { .on_event = on_event, .user = c };
    lm_status st = lm_exec_run_node(def, &f->env, in, out, c ? &ro : NULL, NULL, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, def->name, st, &err);
    return st;
}

static void unref_all(lm_value *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lm_value_unref(v[i]);
}

/* A one-entry CONDITIONING (whole schedule, strength 1) from <prefix>.context/.pooled. */
static lm_value *cond_value(lm_safetensors *text, const char *prefix)
{
    lm_error err;
    lm_sd3_conditioning *c = NULL;
    char name[96];
    if (lm_sd3_conditioning_new(&c, 1, &err) != LM_OK)
        return NULL;
    snprintf(name, sizeof(name), "%s.context", prefix);
    c->entries[0].context = golden_tensor(text, name); // [1, 154, D]
    snprintf(name, sizeof(name), "%s.pooled", prefix);
    c->entries[0].pooled = golden_tensor(text, name); // [1, P]
    c->entries[0].end_percent = 1.0;
    c->entries[0].strength = 1.0f;
    if (!c->entries[0].context || !c->entries[0].pooled) {
        lm_sd3_conditioning_free(c);
        return NULL;
    }
    return lm_sd3_conditioning_value(c);
}

/* models/checkpoints/<the golden's checkpoint> as a link into ../shared/golden. */
static bool make_models(gfx *f)
{
    char rel[256], dir[1100], dst[1400];
    const char *ck = gold_checkpoint(f->golden, rel, sizeof(rel)) ? rel + strlen("golden/") : "";
    const char *src = test_shared(rel);
    snprintf(f->models, sizeof(f->models), "%s/models", test_tmpdir());
    snprintf(dir, sizeof(dir), "%s/checkpoints", f->models);
    snprintf(dst, sizeof(dst), "%s/%s", dir, ck);
    bool ok = src && mkdir(f->models, 0755) == 0 && mkdir(dir, 0755) == 0 && symlink(src, dst) == 0;
    f->env = (lm_env){ .models_dir = f->models,
                       .input_dir = test_tmpdir(),
                       .output_dir = test_tmpdir(),
                       .temp_dir = test_tmpdir() };
    lm_value *in[1] = { lm_value_string(ck) };
    ok = ok && run_node(f, &lm_node_checkpoint_loader_simple, in, f->ckpt, NULL) == LM_OK;
    lm_value_unref(in[0]);
    return ok;
}

static void gfx_fini(gfx *f)
{
    unref_all(f->ckpt, 3);
    lm_value_unref(f->pos);
    lm_value_unref(f->neg);
    cJSON_Delete(f->params);
    lm_safetensors_close(f->text);
    lm_safetensors_close(f->golden);
    memset(f, 0, sizeof(*f));
}

/* The golden sample and text sets of `flavour`, the models folder, CheckpointLoaderSimple's
 * outputs and the two CONDITIONING values; on failure (the test failed) frees what it made
 * and returns false. */
static bool gfx_init(gfx *f, const char *flavour)
{
    memset(f, 0, sizeof(*f));
    f->golden = gold_open_set(flavour, "sample");
    f->text = gold_open_set(flavour, "text");
    if (!f->golden || !f->text) {
        gfx_fini(f);
        return false;
    }
    f->params = gold_metadata(f->golden, "params");
    f->sampling = gold_tolerance(f->golden, "sampling");
    f->vae = gold_tolerance(f->golden, "vae");
    cJSON *tols = gold_metadata(f->golden, "tolerances");
    const cJSON *u8 = cJSON_GetObjectItem(cJSON_GetObjectItem(tols, "image_u8"), "max_abs_diff");
    f->u8 = (gold_tol){ cJSON_IsNumber(u8) ? u8->valuedouble : 0, 0 };
    cJSON_Delete(tols);
    f->pos = cond_value(f->text, "positive");
    f->neg = cond_value(f->text, "negative_empty");
    bool ok = f->params && f->pos && f->neg && make_models(f);
    if (!ok) {
        test__fail(__FILE__, __LINE__, "%s: the golden fixture could not be set up", flavour);
        gfx_fini(f);
    }
    return ok;
}

/* ModelSamplingSD3(ckpt MODEL, shift of the run). */
static lm_value *shifted_model(const gfx *f, const cJSON *p)
{
    lm_value *in[2] = { f->ckpt[0], lm_value_float(gold_param(p, "shift")) }, *out[1] = { NULL };
    run_node(f, &lm_node_model_sampling_sd3, in, out, NULL);
    lm_value_unref(in[1]);
    return out[0];
}

/* ---- checks on a sampled latent ---- */

/* VAEDecode's IMAGE [1, H, W, 3] in [0, 1] against <prefix>.image [1, 3, H, W] (clamped to
 * [-1, 1], as the node clamps) and <prefix>.image_u8 [H, W, 3] where the golden has it. */
static void check_image(const gfx *f, const char *prefix, const lm_tensor *img)
{
    char name[96];
    snprintf(name, sizeof(name), "%s.image", prefix);
    lm_tensor *g = golden_tensor(f->golden, name);
    if (!g || !img || g->ndim != 4 || img->ndim != 4 || g->shape[1] != img->shape[3] ||
        g->shape[2] != img->shape[1] || g->shape[3] != img->shape[2]) {
        test__fail(__FILE__, __LINE__, "%s: no image, or not of the golden's size", name);
        lm_tensor_free(g);
        return;
    }
    int64_t c = g->shape[1], hw = g->shape[2] * g->shape[3], n = c * hw;
    float *got = malloc((size_t)n * sizeof(float)), *want = lm_tensor_data(g);
    const float *x = lm_tensor_data(img); // [1, H, W, C]
    double u8_max = 0;
    lm_tensor *u8 = NULL;
    snprintf(name, sizeof(name), "%s.image_u8", prefix);
    if (lm_safetensors_find(f->golden, name))
        u8 = golden_tensor(f->golden, name); // [H, W, C]
    for (int64_t i = 0; got && i < hw; i++) {
        for (int64_t k = 0; k < c; k++) {
            got[k * hw + i] = 2.0f * x[i * c + k] - 1.0f;
            want[k * hw + i] = fminf(fmaxf(want[k * hw + i], -1.0f), 1.0f);
            if (u8) /* what SaveImage writes: uint8(255 * x), truncating, as the reference */
                u8_max = fmax(u8_max, fabs((double)(uint8_t)(255.0f * x[i * c + k]) -
                                           (double)((float *)lm_tensor_data(u8))[i * c + k]));
        }
    }
    snprintf(name, sizeof(name), "%s.image (VAEDecode)", prefix);
    if (got)
        gold_compare_floats(name, got, want, n, f->sampling);
    if (u8) {
        test_note("%-40s max abs %.0f", "  its 8-bit truncation vs image_u8", u8_max);
        CHECK(u8_max <= f->u8.atol);
    }
    free(got);
    lm_tensor_free(u8);
    lm_tensor_free(g);
}

/* The sampled LATENT (raw) against <prefix>.final_latent_vae and, scaled, .final_latent;
 * then VAEDecode of it against the golden image. */
static void check_result(const gfx *f, const char *prefix, lm_value *latent)
{
    char name[96], what[128];
    const lm_tensor *raw = lm_value_tensor(latent);
    snprintf(name, sizeof(name), "%s.final_latent_vae", prefix);
    snprintf(what, sizeof(what), "%s (raw LATENT)", name);
    compare_tensor(what, raw, f->golden, name, f->sampling);
    snprintf(name, sizeof(name), "%s.final_latent", prefix);
    snprintf(what, sizeof(what), "%s (process_in)", name);
    compare_scaled(what, raw, f->golden, name, f->sampling);
    lm_value *in[2] = { latent, f->ckpt[2] }, *out[1] = { NULL };
    if (run_node(f, &lm_node_vae_decode, in, out, NULL) == LM_OK)
        check_image(f, prefix, lm_value_tensor(out[0]));
    lm_value_unref(out[0]);
}

/* ---- the tests ---- */

/* KSampler's noise for the golden seed is the golden INPUT noise, for every run. */
void test_nodes_sd3_golden_nodes__seed_gives_the_golden_noise(void)
{
    static const char *const modes[] = { "txt2img", "img2img" };
    for (size_t i = 0; i < LM_COUNTOF(flavours); i++) {
        char name[96], what[128];
        lm_safetensors *st = gold_open_set(flavours[i], "sample");
        REQUIRE(st);
        cJSON *params = gold_metadata(st, "params"), *tols = gold_metadata(st, "tolerances");
        /* bit-exact is expected; the rng group's fallback is the most that may differ */
        const cJSON *fb = cJSON_GetObjectItem(cJSON_GetObjectItem(tols, "rng"), "fallback");
        const cJSON *fa = cJSON_GetObjectItem(fb, "atol"), *fr = cJSON_GetObjectItem(fb, "rtol");
        gold_tol rng = { cJSON_IsNumber(fa) ? fa->valuedouble : 0,
                         cJSON_IsNumber(fr) ? fr->valuedouble : 0 };
        for (size_t m = 0; params && m < LM_COUNTOF(modes); m++) {
            const cJSON *p = cJSON_GetObjectItem(params, modes[m]);
            snprintf(name, sizeof(name), "%s.noise", modes[m]);
            lm_tensor *want = golden_tensor(st, name), *got = NULL;
            lm_error err;
            uint64_t seed = (uint64_t)gold_param(p, "seed");
            if (want)
                CHECK_OK(lm_sampler_noise(&got, seed, want->ndim, want->shape, NULL, &err), &err);
            snprintf(what, sizeof(what), "%s %s (seed %llu)", flavours[i], name,
                     (unsigned long long)seed);
            if (got)
                gold_compare_floats(what, lm_tensor_data(got), lm_tensor_data(want),
                                    lm_tensor_numel(want), rng);
            lm_tensor_free(got);
            lm_tensor_free(want);
        }
        cJSON_Delete(tols);
        cJSON_Delete(params);
        lm_safetensors_close(st);
    }
}

/* Whether KSampler with steps - k steps and denoise (steps - k) / steps builds a schedule of
 * `steps` (int(steps' / denoise) in double, as ComfyUI), so that it runs sigmas_full[k:]. */
static bool ksampler_maps(int steps, int k)
{
    bool maps =
        k > 0 && k < steps && (int)((double)(steps - k) / ((double)(steps - k) / steps)) == steps;
    if (!maps)
        test_note("KSampler cannot express start %d of %d steps; KSamplerAdvanced only", k, steps);
    return maps;
}

static void check_schedule(const char *what, lm_status st, const lm_sigmas *s,
                           lm_safetensors *golden, const char *name, gold_tol t)
{
    lm_tensor *g = golden_tensor(golden, name);
    CHECK_INT(st, LM_OK);
    if (g && st == LM_OK && s->count == lm_tensor_numel(g))
        gold_compare_floats(what, s->sigma, lm_tensor_data(g), s->count, t);
    else if (g)
        test__fail(__FILE__, __LINE__, "%s: %d sigmas, golden %s has %lld", what, s->count, name,
                   (long long)lm_tensor_numel(g));
    lm_tensor_free(g);
}

/* The schedules the nodes build (lm_scheduler_ksampler, then KSamplerAdvanced's cut): the
 * reference's is ComfyUI's `normal`; its img2img cut is KSamplerAdvanced's start_at_step,
 * or KSampler's denoise (steps-k)/steps over steps-k steps, but not KSampler's denoise as
 * the golden states it. */
void test_nodes_sd3_golden_nodes__reference_schedule_is_normal(void)
{
    for (size_t i = 0; i < LM_COUNTOF(flavours); i++) {
        lm_safetensors *st = gold_open_set(flavours[i], "sample");
        REQUIRE(st);
        cJSON *params = gold_metadata(st, "params");
        test_note("%s:", flavours[i]);
        const cJSON *t2i = cJSON_GetObjectItem(params, "txt2img");
        const cJSON *i2i = cJSON_GetObjectItem(params, "img2img");
        gold_tol t = gold_tolerance(st, "schedule");
        lm_error err;
        lm_schedule normal, sgm;
        REQUIRE_OK(lm_scheduler_parse(&normal, "normal", &err), &err);
        REQUIRE_OK(lm_scheduler_parse(&sgm, "sgm_uniform", &err), &err);
        lm_model_sampling ms = { .shift = gold_param(t2i, "shift") };
        int steps = (int)gold_param(t2i, "steps");
        lm_sigmas s = { 0 };
        lm_status rc = lm_scheduler_ksampler(&s, &ms, normal, steps, 1.0, false, &err);
        check_schedule("txt2img.sigmas: KSampler normal", rc, &s, st, "txt2img.sigmas", t);
        rc = lm_scheduler_ksampler(&s, &ms, sgm, steps, 1.0, false, &err);
        lm_tensor *g = golden_tensor(st, "txt2img.sigmas");
        if (g && rc == LM_OK && s.count == lm_tensor_numel(g)) {
            double d = 0;
            for (int k = 0; k < s.count; k++)
                d = fmax(d, fabs((double)s.sigma[k] - (double)((float *)lm_tensor_data(g))[k]));
            test_note("txt2img.sigmas: KSampler sgm_uniform is off by up to %.3g", d);
            CHECK(d > 1e-3); /* a different schedule: only `normal` reproduces the golden */
        }
        lm_tensor_free(g);

        ms.shift = gold_param(i2i, "shift");
        steps = (int)gold_param(i2i, "steps");
        double denoise = gold_param(i2i, "denoise");
        int k = lm_scheduler_strength_start(steps, denoise);
        CHECK_INT(k, (int)gold_param(i2i, "start_index"));
        rc = lm_scheduler_ksampler(&s, &ms, normal, steps, 1.0, false, &err);
        check_schedule("img2img.sigmas_full: KSamplerAdvanced", rc, &s, st, "img2img.sigmas_full",
                       t);
        lm_scheduler_advanced(&s, k, 10000, false);
        check_schedule("img2img.sigmas: KSamplerAdvanced start k", LM_OK, &s, st, "img2img.sigmas",
                       t);
        if (ksampler_maps(steps, k)) {
            rc = lm_scheduler_ksampler(&s, &ms, normal, steps - k, (double)(steps - k) / steps,
                                       false, &err);
            check_schedule("img2img.sigmas: KSampler denoise (n-k)/n", rc, &s, st, "img2img.sigmas",
                           t);
        }
        rc = lm_scheduler_ksampler(&s, &ms, normal, steps, denoise, false, &err);
        test_note("KSampler denoise %g, %d steps: %d sigmas from %.4g; golden: %d from [%d]",
                  denoise, steps, s.count, s.count ? (double)s.sigma[0] : 0.0, steps - k + 1, k);
        CHECK(rc == LM_OK && s.count != steps - k + 1); /* ComfyUI's denoise is another thing */
        lm_sigmas_fini(&s);
        cJSON_Delete(params);
        lm_safetensors_close(st);
    }
}

/* txt2img: EmptySD3LatentImage -> KSampler (normal) -> VAEDecode, for each golden sampler. */
static void txt2img_case(const char *flavour)
{
    gfx f;
    if (!gfx_init(&f, flavour))
        return;
    const cJSON *p = cJSON_GetObjectItem(f.params, "txt2img"), *it;
    lm_value *model = shifted_model(&f, p), *lat[1] = { NULL };
    lm_value *ein[3] = { lm_value_int((int64_t)gold_param(p, "width")),
                         lm_value_int((int64_t)gold_param(p, "height")), lm_value_int(1) };
    if (model && run_node(&f, &lm_node_empty_sd3_latent_image, ein, lat, NULL) == LM_OK) {
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(p, "samplers"))
        {
            const char *sampler = cJSON_GetStringValue(it);
            int steps = (int)gold_param(p, "steps");
            lm_value *in[10] = { model,
                                 lm_value_int((int64_t)gold_param(p, "seed")),
                                 lm_value_int(steps),
                                 lm_value_float(gold_param(p, "cfg")),
                                 lm_value_string(sampler),
                                 lm_value_string("normal"),
                                 f.pos,
                                 f.neg,
                                 lat[0],
                                 lm_value_float(1.0) };
            lm_value *out[1] = { NULL };
            counts c = { 0 };
            char prefix[64];
            snprintf(prefix, sizeof(prefix), "txt2img.%s", sampler);
            if (run_node(&f, &lm_node_ksampler, in, out, &c) == LM_OK)
                check_result(&f, prefix, out[0]);
            CHECK_INT(c.progress, steps);
            unref_all(in + 1, 5);
            unref_all(in + 9, 1);
            lm_value_unref(out[0]);
        }
    }
    unref_all(ein, 3);
    lm_value_unref(lat[0]);
    lm_value_unref(model);
    gfx_fini(&f);
}

void test_nodes_sd3_golden_nodes__txt2img_sd3m(void)
{
    txt2img_case("sd3m");
}

void test_nodes_sd3_golden_nodes__txt2img_sd35m(void)
{
    txt2img_case("sd35m");
}

/* The golden INPUT image [1, 3, H, W] in [-1, 1] as a ComfyUI IMAGE [1, H, W, 3] in [0, 1]. */
static lm_value *golden_image(const gfx *f, const char *name)
{
    lm_error err;
    lm_tensor *g = golden_tensor(f->golden, name), *img = NULL;
    if (!g || g->ndim != 4) {
        lm_tensor_free(g);
        return NULL;
    }
    int64_t c = g->shape[1], hw = g->shape[2] * g->shape[3];
    int64_t shape[4] = { 1, g->shape[2], g->shape[3], c };
    if (lm_tensor_new(&img, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err) == LM_OK) {
        const float *src = lm_tensor_data(g);
        float *dst = lm_tensor_data(img);
        for (int64_t i = 0; i < hw; i++)
            for (int64_t k = 0; k < c; k++)
                dst[i * c + k] = (src[k * hw + i] + 1.0f) * 0.5f;
    }
    lm_tensor_free(g);
    return img ? lm_value_image(img) : NULL;
}

/* KSamplerAdvanced over the golden's steps from start_at_step k (add_noise, noise_seed). */
static lm_value *sample_advanced(const gfx *f, const cJSON *p, lm_value *model, lm_value *latent,
                                 int k, counts *c)
{
    lm_value *in[13] = { model,
                         lm_value_string("enable"),
                         lm_value_int((int64_t)gold_param(p, "seed")),
                         lm_value_int((int64_t)gold_param(p, "steps")),
                         lm_value_float(gold_param(p, "cfg")),
                         lm_value_string(cJSON_GetStringValue(cJSON_GetObjectItem(p, "sampler"))),
                         lm_value_string("normal"),
                         f->pos,
                         f->neg,
                         latent,
                         lm_value_int(k),
                         lm_value_int(10000),
                         lm_value_string("disable") };
    lm_value *out[1] = { NULL };
    run_node(f, &lm_node_ksampler_advanced, in, out, c);
    unref_all(in + 1, 6);
    unref_all(in + 10, 3);
    return out[0];
}

/* The same run as KSampler: steps - k steps at denoise (steps - k) / steps. */
static lm_value *sample_plain(const gfx *f, const cJSON *p, lm_value *model, lm_value *latent,
                              int k)
{
    int steps = (int)gold_param(p, "steps");
    lm_value *in[10] = { model,
                         lm_value_int((int64_t)gold_param(p, "seed")),
                         lm_value_int(steps - k),
                         lm_value_float(gold_param(p, "cfg")),
                         lm_value_string(cJSON_GetStringValue(cJSON_GetObjectItem(p, "sampler"))),
                         lm_value_string("normal"),
                         f->pos,
                         f->neg,
                         latent,
                         lm_value_float((double)(steps - k) / steps) };
    lm_value *out[1] = { NULL };
    run_node(f, &lm_node_ksampler, in, out, NULL);
    unref_all(in + 1, 5);
    unref_all(in + 9, 1);
    return out[0];
}

static bool same_values(const lm_value *a, const lm_value *b)
{
    const lm_tensor *x = lm_value_tensor(a), *y = lm_value_tensor(b);
    return x && y && lm_tensor_numel(x) == lm_tensor_numel(y) &&
           memcmp(lm_tensor_data(x), lm_tensor_data(y), lm_tensor_nbytes(x)) == 0;
}

/* img2img: golden image -> VAEEncode -> KSamplerAdvanced (start k) -> VAEDecode. */
static void img2img_case(const char *flavour)
{
    gfx f;
    if (!gfx_init(&f, flavour))
        return;
    const cJSON *p = cJSON_GetObjectItem(f.params, "img2img");
    int steps = (int)gold_param(p, "steps");
    int k = lm_scheduler_strength_start(steps, gold_param(p, "denoise"));
    CHECK_INT(k, (int)gold_param(p, "start_index"));
    lm_value *model = shifted_model(&f, p), *enc[1] = { NULL }, *a = NULL, *b = NULL;
    lm_value *ein[2] = { golden_image(&f, "img2img.image"), f.ckpt[2] };
    if (model && ein[0] && run_node(&f, &lm_node_vae_encode, ein, enc, NULL) == LM_OK) {
        const lm_tensor *raw = lm_value_tensor(enc[0]);
        compare_tensor("img2img.latent_raw (VAEEncode)", raw, f.golden, "img2img.latent_raw",
                       f.vae);
        compare_scaled("img2img.latent (process_in)", raw, f.golden, "img2img.latent", f.vae);
        counts c = { 0 };
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "img2img.%s",
                 cJSON_GetStringValue(cJSON_GetObjectItem(p, "sampler")));
        a = sample_advanced(&f, p, model, enc[0], k, &c);
        CHECK_INT(c.progress, steps - k);
        if (a)
            check_result(&f, prefix, a);
        if (ksampler_maps(steps, k)) {
            b = sample_plain(&f, p, model, enc[0], k);
            CHECK(a && b && same_values(a, b));
        }
    }
    unref_all((lm_value *[]){ ein[0], enc[0], a, b, model }, 5);
    gfx_fini(&f);
}

void test_nodes_sd3_golden_nodes__img2img_sd3m(void)
{
    img2img_case("sd3m");
}

void test_nodes_sd3_golden_nodes__img2img_sd35m(void)
{
    img2img_case("sd35m");
}
