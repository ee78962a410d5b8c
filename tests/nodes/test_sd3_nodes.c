/* tests/nodes/test_sd3_nodes.c — the SD3 nodes (loaders, conditioning, sampling, latent)
 * on the tiny checkpoints of ../shared/golden, through whole workflows (parse, validate,
 * run) and single nodes (lm_exec_run_node).
 *
 * Each test builds a models directory of symbolic links in its temporary directory:
 * checkpoints/ (the all-in-one sd3m_tiny and the encoder-less sd3m_tiny_noenc),
 * text_encoders/ (clip_l, clip_g, t5xxl), vae/, diffusion_models/ and tokenizers/. Sizes
 * stay at 64x64 pixels (8x8 latents) and two or three steps, so every test is quick. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/exec.h"
#include "core/validate.h"
#include "core/workflow.h"
#include "nodes/builtin.h"
#include "nodes/sd3/models.h"
#include "nodes/sd3/sampler.h"
#include "tests/sd3/sd3_fixture.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

extern const lm_node_def lm_node_checkpoint_loader_simple, lm_node_clip_text_encode,
    lm_node_clip_text_encode_sd3, lm_node_conditioning_zero_out, lm_node_conditioning_combine,
    lm_node_conditioning_set_timestep_range, lm_node_empty_sd3_latent_image, lm_node_ksampler,
    lm_node_ksampler_advanced, lm_node_vae_encode, lm_node_vae_decode, lm_node_vae_decode_tiled,
    lm_node_skip_layer_guidance_sd3, lm_node_model_sampling_sd3, lm_node_latent_upscale,
    lm_node_dual_clip_loader, lm_node_triple_clip_loader;

typedef struct {
    char models[1024], input[1024], output[1024], temp[1024];
    lm_env env;
    lm_registry *reg;
} fx;

static bool link_into(const char *dir, const char *shared_rel, const char *name)
{
    const char *src = test_shared(shared_rel);
    char dst[2048];
    snprintf(dst, sizeof(dst), "%s/%s", dir, name);
    return src && symlink(src, dst) == 0;
}

static bool fx_init(fx *f)
{
    memset(f, 0, sizeof(*f));
    const char *t = test_tmpdir();
    snprintf(f->models, sizeof(f->models), "%s/models", t);
    snprintf(f->input, sizeof(f->input), "%s/input", t);
    snprintf(f->output, sizeof(f->output), "%s/output", t);
    snprintf(f->temp, sizeof(f->temp), "%s/temp", t);
    static const char *const subs[] = { "checkpoints", "text_encoders", "vae", "diffusion_models" };
    mkdir(f->models, 0755);
    mkdir(f->input, 0755);
    mkdir(f->output, 0755);
    char d[4][1100];
    for (int i = 0; i < 4; i++) {
        snprintf(d[i], sizeof(d[i]), "%s/%s", f->models, subs[i]);
        mkdir(d[i], 0755);
    }
    bool ok = link_into(d[0], "golden/sd3m_tiny.safetensors", "sd3m_tiny.safetensors") &&
              link_into(d[0], "golden/split/sd3m/sd3m_tiny_noenc.safetensors",
                        "sd3m_tiny_noenc.safetensors") &&
              link_into(d[1], "golden/split/sd3m/clip_l.safetensors", "clip_l.safetensors") &&
              link_into(d[1], "golden/split/sd3m/clip_g.safetensors", "clip_g.safetensors") &&
              link_into(d[1], "golden/split/sd3m/t5xxl_fp8_e4m3fn.safetensors",
                        "t5xxl_fp8_e4m3fn.safetensors") &&
              link_into(d[2], "golden/split/sd3m/vae.safetensors", "vae.safetensors") &&
              link_into(d[3], "golden/split/sd3m/sd3m_tiny_noenc.safetensors",
                        "sd3m_tiny_noenc.safetensors") &&
              link_into(f->models, "tokenizers", "tokenizers");
    f->env = (lm_env){
        .models_dir = f->models, .input_dir = f->input, .output_dir = f->output, .temp_dir = f->temp
    };
    lm_error err;
    if (ok && (lm_registry_new(&f->reg, &err) != LM_OK ||
               lm_nodes_register_builtin(f->reg, &err) != LM_OK))
        ok = false;
    return ok;
}

static void fx_fini(fx *f)
{
    lm_registry_free(f->reg);
}

/* ---- running workflows ---- */

typedef struct {
    int cached, started, progress, ksampler_progress;
    lm_exec *cancel_on_progress; /* cancel at the first KSampler progress event */
} counts;

static void on_event(const lm_event *ev, void *user)
{
    counts *c = user;
    if (ev->type == LM_EVENT_NODE_CACHED)
        c->cached++;
    if (ev->type == LM_EVENT_NODE_START)
        c->started++;
    if (ev->type == LM_EVENT_PROGRESS) {
        c->progress++;
        if (ev->node_id && strcmp(ev->node_id, "sample") == 0) {
            c->ksampler_progress++;
            if (c->cancel_on_progress)
                lm_exec_cancel(c->cancel_on_progress);
        }
    }
}

/* Parses and validates text; LM_OK with *plan, or the first problem in err. */
static lm_status plan_of(fx *f, const char *text, const lm_override *ov, size_t n_ov,
                         lm_plan **plan, lm_error *err)
{
    lm_graph *g = NULL;
    lm_diag diag;
    lm_diag_init(&diag);
    lm_status st = lm_workflow_parse(text, strlen(text), "flow", &g, err);
    lm_validate_opts vo = { .overrides = ov, .n_overrides = n_ov };
    if (st == LM_OK) {
        st = lm_validate(g, f->reg, &f->env, &vo, plan, &diag);
        if (st != LM_OK && diag.count > 0)
            *err = diag.items[0];
    }
    lm_diag_fini(&diag);
    lm_graph_free(g);
    return st;
}

static lm_status run_text(fx *f, lm_exec *ex, const char *text, const lm_override *ov, size_t n_ov,
                          counts *c, lm_run_result **res, lm_error *err)
{
    lm_plan *plan = NULL;
    lm_status st = plan_of(f, text, ov, n_ov, &plan, err);
    lm_run_opts ro = { .on_event = on_event, .user = c };
    if (st == LM_OK)
        st = lm_exec_run(ex, plan, &f->env, &ro, res, err);
    lm_plan_free(plan);
    return st;
}

/* Loom YAML: txt2img with the all-in-one checkpoint, output `image`. */
static const char *const txt2img_yaml = SD3_TXT2IMG_YAML("sd3m_tiny.safetensors");

/* The same from the split files. */
static const char *const split_yaml =
    "nodes:\n"
    "  unet: {type: UNETLoader, inputs: {unet_name: sd3m_tiny_noenc.safetensors, weight_dtype: "
    "default}}\n"
    "  clip:\n"
    "    type: TripleCLIPLoader\n"
    "    inputs: {clip_name1: clip_l.safetensors, clip_name2: clip_g.safetensors,\n"
    "             clip_name3: t5xxl_fp8_e4m3fn.safetensors}\n"
    "  vae: {type: VAELoader, inputs: {vae_name: vae.safetensors}}\n"
    "  pos: {type: CLIPTextEncode, inputs: {text: a red fox in the snow, clip: {link: "
    "clip.CLIP}}}\n"
    "  neg: {type: CLIPTextEncode, inputs: {text: '', clip: {link: clip.CLIP}}}\n"
    "  latent: {type: EmptySD3LatentImage, inputs: {width: 64, height: 64, batch_size: 1}}\n"
    "  sample:\n"
    "    type: KSampler\n"
    "    inputs: {model: {link: unet.MODEL}, seed: 42, steps: 2, cfg: 4.5, sampler_name: euler,\n"
    "             scheduler: sgm_uniform, positive: {link: pos.CONDITIONING},\n"
    "             negative: {link: neg.CONDITIONING}, latent_image: {link: latent.LATENT},\n"
    "             denoise: 1.0}\n"
    "  decode: {type: VAEDecode, inputs: {samples: {link: sample.LATENT}, vae: {link: vae.VAE}}}\n"
    "outputs:\n"
    "  image: {link: decode.IMAGE}\n";

/* Runs text in a fresh executor and returns a host copy of output 0. */
static lm_tensor *run_image(fx *f, const char *text, const lm_override *ov, size_t n_ov)
{
    lm_exec *ex = NULL;
    lm_run_result *res = NULL;
    lm_tensor *copy = NULL;
    counts c = { 0 };
    lm_error err;
    if (lm_exec_new(&ex, NULL, &err) != LM_OK)
        return NULL;
    lm_status st = run_text(f, ex, text, ov, n_ov, &c, &res, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "run_text", st, &err);
    else if (res->n_outputs >= 1)
        lm_tensor_to_f32_host(&copy, lm_value_tensor(res->outputs[0]), &err);
    lm_run_result_free(res);
    lm_exec_free(ex);
    return copy;
}

static bool same_tensor(const lm_tensor *a, const lm_tensor *b)
{
    return a && b && lm_tensor_numel(a) == lm_tensor_numel(b) &&
           memcmp(lm_tensor_data(a), lm_tensor_data(b), lm_tensor_nbytes(a)) == 0;
}

/* ---- whole workflows ---- */

void test_nodes_sd3__txt2img_comfy_workflow_saves_image(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    const char *json =
        "{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 125338548270506, "
        "\"steps\": 2, \"cfg\": 5.45, \"sampler_name\": \"euler\", \"scheduler\": \"sgm_uniform\", "
        "\"denoise\": 1.0, \"model\": [\"4\", 0], \"positive\": [\"16\", 0], \"negative\": "
        "[\"40\", 0], \"latent_image\": [\"53\", 0]}},"
        "\"4\": {\"class_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": "
        "\"sd3m_tiny.safetensors\"}},"
        "\"8\": {\"class_type\": \"VAEDecode\", \"inputs\": {\"samples\": [\"3\", 0], \"vae\": "
        "[\"4\", 2]}},"
        "\"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"filename_prefix\": \"ComfyUI\", "
        "\"images\": [\"8\", 0]}},"
        "\"16\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"a bottle\", "
        "\"clip\": [\"4\", 1]}},"
        "\"40\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {\"text\": \"\", \"clip\": "
        "[\"4\", 1]}},"
        "\"41\": {\"class_type\": \"CLIPLoader\", \"inputs\": {\"clip_name\": "
        "\"t5xxl_fp16.safetensors\", \"type\": \"sd3\"}},"
        "\"53\": {\"class_type\": \"EmptySD3LatentImage\", \"inputs\": {\"width\": 64, "
        "\"height\": 64, \"batch_size\": 1}}}";
    lm_exec *ex = NULL;
    lm_error err;
    counts c = { 0 };
    REQUIRE_OK(lm_exec_new(&ex, NULL, &err), &err);
    CHECK_OK(run_text(&f, ex, json, NULL, 0, &c, NULL, &err), &err);
    char path[2048];
    snprintf(path, sizeof(path), "%s/ComfyUI_00001_.png", f.output);
    CHECK(access(path, R_OK) == 0);
    CHECK_INT(c.started, 7); /* node 41 (unused, its file absent) is ignored */
    lm_exec_free(ex);
    fx_fini(&f);
}

void test_nodes_sd3__txt2img_image_shape_and_range(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_tensor *img = run_image(&f, txt2img_yaml, NULL, 0);
    REQUIRE(img != NULL);
    CHECK_INT(img->ndim, 4);
    CHECK_INT(img->shape[0], 1);
    CHECK_INT(img->shape[1], 64);
    CHECK_INT(img->shape[2], 64);
    CHECK_INT(img->shape[3], 3);
    const float *p = lm_tensor_data(img);
    bool in_range = true;
    for (int64_t i = 0; i < lm_tensor_numel(img); i++)
        in_range = in_range && p[i] >= 0.0f && p[i] <= 1.0f;
    CHECK(in_range);
    lm_tensor_free(img);
    fx_fini(&f);
}

void test_nodes_sd3__split_files_match_all_in_one(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_tensor *a = run_image(&f, txt2img_yaml, NULL, 0);
    lm_tensor *b = run_image(&f, split_yaml, NULL, 0);
    CHECK(same_tensor(a, b));
    lm_tensor_free(a);
    lm_tensor_free(b);
    fx_fini(&f);
}

void test_nodes_sd3__same_seed_same_pixels(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_override other = { .name = "sample.seed", .text = "43" };
    lm_tensor *a = run_image(&f, txt2img_yaml, NULL, 0);
    lm_tensor *b = run_image(&f, txt2img_yaml, NULL, 0);
    lm_tensor *c = run_image(&f, txt2img_yaml, &other, 1);
    CHECK(same_tensor(a, b));
    CHECK(a && c && !same_tensor(a, c));
    lm_tensor_free(a);
    lm_tensor_free(b);
    lm_tensor_free(c);
    fx_fini(&f);
}

void test_nodes_sd3__changed_seed_reruns_only_the_sampler(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_exec *ex = NULL;
    lm_error err;
    REQUIRE_OK(lm_exec_new(&ex, NULL, &err), &err);
    counts c1 = { 0 }, c2 = { 0 };
    lm_override seed = { .name = "sample.seed", .text = "7" };
    CHECK_OK(run_text(&f, ex, txt2img_yaml, NULL, 0, &c1, NULL, &err), &err);
    CHECK_OK(run_text(&f, ex, txt2img_yaml, &seed, 1, &c2, NULL, &err), &err);
    CHECK_INT(c1.cached, 0);
    CHECK_INT(c1.started, 6);
    CHECK_INT(c2.cached, 4);  /* loader, two encodes, empty latent */
    CHECK_INT(c2.started, 2); /* KSampler, VAEDecode */
    CHECK_INT(c2.ksampler_progress, 2);
    lm_exec_free(ex);
    fx_fini(&f);
}

void test_nodes_sd3__batch_of_seeds_loads_checkpoint_once(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    for (int seed = 1; seed <= 3; seed++) {
        char text[16];
        snprintf(text, sizeof(text), "%d", seed);
        lm_override ov = { .name = "sample.seed", .text = text };
        lm_tensor *img = run_image(&f, txt2img_yaml, &ov, 1); /* a new executor each time */
        CHECK(img != NULL);
        lm_tensor_free(img);
    }
    lm_sd3_models_stats s;
    lm_sd3_models_get_stats(&s);
    CHECK_INT(s.file_opens, 1);
    CHECK_INT(s.component_loads, 5); /* MMDiT, VAE, CLIP-L, CLIP-G, T5 */
    CHECK_INT(s.tokenizer_loads, 1);
    /* Nothing holds them now: free_unused releases all. */
    CHECK_INT(lm_sd3_models_free_unused(), 6);
    lm_sd3_models_get_stats(&s);
    CHECK_INT(s.resident_parts, 0);
    CHECK_INT(s.resident_files, 0);
    fx_fini(&f);
}

void test_nodes_sd3__cancel_during_ksampler(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_exec *ex = NULL;
    lm_error err;
    REQUIRE_OK(lm_exec_new(&ex, NULL, &err), &err);
    counts c = { .cancel_on_progress = ex };
    lm_override steps = { .name = "sample.steps", .text = "5" };
    lm_status st = run_text(&f, ex, txt2img_yaml, &steps, 1, &c, NULL, &err);
    CHECK_INT(st, LM_ECANCELLED);
    CHECK_INT(c.ksampler_progress, 1);
    lm_exec_free(ex);
    fx_fini(&f);
}

/* ---- validation ---- */

void test_nodes_sd3__missing_model_fails_validation_listing_names(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_override ov = { .name = "ckpt.ckpt_name", .text = "sd3_medium.safetensors" };
    lm_plan *plan = NULL;
    lm_error err;
    CHECK(plan_of(&f, txt2img_yaml, &ov, 1, &plan, &err) != LM_OK);
    CHECK_STR(err.kind, "value_not_in_list");
    CHECK_STR(err.input, "ckpt_name");
    CHECK_CONTAINS(err.msg, "sd3m_tiny.safetensors");
    CHECK_CONTAINS(err.msg, "sd3m_tiny_noenc.safetensors");
    lm_plan_free(plan);
    fx_fini(&f);
}

void test_nodes_sd3__path_traversal_is_refused(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_override ov = { .name = "ckpt.ckpt_name", .text = "../checkpoints/sd3m_tiny.safetensors" };
    lm_plan *plan = NULL;
    lm_error err;
    CHECK(plan_of(&f, txt2img_yaml, &ov, 1, &plan, &err) != LM_OK);
    lm_plan_free(plan);
    /* Run directly (no validation): the loader refuses it too. */
    lm_value *in[1] = { lm_value_string("../checkpoints/sd3m_tiny.safetensors") };
    lm_value *out[3] = { NULL };
    CHECK_INT(
        lm_exec_run_node(&lm_node_checkpoint_loader_simple, &f.env, in, out, NULL, NULL, &err),
        LM_EINVAL);
    CHECK_CONTAINS(err.msg, "not a file name inside");
    char path[1024];
    CHECK_INT(lm_sd3_models_path(&f.env, LM_SD3_FOLDER_VAE, "/etc/passwd", "vae_name", path,
                                 sizeof(path), &err),
              LM_EINVAL);
    lm_value_unref(in[0]);
    fx_fini(&f);
}

void test_nodes_sd3__model_lists_are_sorted_with_subfolders(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    char sub[1200];
    snprintf(sub, sizeof(sub), "%s/checkpoints/sd3", f.models);
    mkdir(sub, 0755);
    REQUIRE(link_into(sub, "golden/sd3m_tiny.safetensors", "again.safetensors"));
    REQUIRE(link_into(sub, "golden/README.md", "notes.md"));
    lm_strlist list = { 0 };
    lm_error err;
    CHECK_OK(lm_sd3_models_list(&f.env, LM_SD3_FOLDER_CHECKPOINTS, &list, &err), &err);
    REQUIRE(list.count == 3);
    CHECK_STR(list.items[0], "sd3/again.safetensors");
    CHECK_STR(list.items[1], "sd3m_tiny.safetensors");
    CHECK_STR(list.items[2], "sd3m_tiny_noenc.safetensors");
    lm_strlist_fini(&list);
    char path[1024];
    CHECK_OK(lm_sd3_models_path(&f.env, LM_SD3_FOLDER_CHECKPOINTS, "sd3/again.safetensors",
                                "ckpt_name", path, sizeof(path), &err),
             &err);
    fx_fini(&f);
}

void test_nodes_sd3__unsupported_clip_type_fails_validation(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    const char *text =
        "nodes:\n"
        "  clip: {type: CLIPLoader, inputs: {clip_name: clip_l.safetensors, type: "
        "stable_diffusion}}\n"
        "  enc: {type: CLIPTextEncode, inputs: {text: hi, clip: {link: clip.CLIP}}}\n"
        "outputs:\n"
        "  c: {link: enc.CONDITIONING}\n";
    lm_plan *plan = NULL;
    lm_error err;
    CHECK(plan_of(&f, text, NULL, 0, &plan, &err) != LM_OK);
    CHECK_STR(err.input, "type");
    CHECK_CONTAINS(err.hint, "sd3");
    lm_plan_free(plan);
    fx_fini(&f);
}

/* ---- single nodes ---- */

/* MODEL, CLIP, VAE of a checkpoint in out[0..2]. */
static bool load_ckpt(fx *f, const char *name, lm_value **out)
{
    lm_value *in[1] = { lm_value_string(name) };
    lm_error err;
    lm_status st =
        lm_exec_run_node(&lm_node_checkpoint_loader_simple, &f->env, in, out, NULL, NULL, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "CheckpointLoaderSimple", st, &err);
    lm_value_unref(in[0]);
    return st == LM_OK;
}

static lm_value *encode_text(fx *f, lm_value *clip, const char *text)
{
    lm_value *in[2] = { lm_value_string(text), clip }, *out[1] = { NULL };
    lm_error err;
    lm_status st = lm_exec_run_node(&lm_node_clip_text_encode, &f->env, in, out, NULL, NULL, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "CLIPTextEncode", st, &err);
    lm_value_unref(in[0]);
    return out[0];
}

static void unref_all(lm_value **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lm_value_unref(v[i]);
}

void test_nodes_sd3__checkpoint_without_text_encoders(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *ck[3] = { NULL };
    REQUIRE(load_ckpt(&f, "sd3m_tiny_noenc.safetensors", ck));
    const lm_sd3_clip *c = lm_sd3_clip_of(ck[1]);
    REQUIRE(c != NULL);
    CHECK(!c->clip_l && !c->clip_g && !c->t5);
    CHECK(lm_sd3_vae_of(ck[2])->vae != NULL);
    lm_value *in[2] = { lm_value_string("a fox"), ck[1] }, *out[1] = { NULL };
    lm_error err;
    CHECK_INT(lm_exec_run_node(&lm_node_clip_text_encode, &f.env, in, out, NULL, NULL, &err),
              LM_EINVAL);
    CHECK_CONTAINS(err.msg, "this checkpoint has no text encoders");
    CHECK_CONTAINS(err.hint, "TripleCLIPLoader");
    CHECK_STR(err.input, "clip");
    lm_value_unref(in[0]);
    unref_all(ck, 3);
    fx_fini(&f);
}

void test_nodes_sd3__conditioning_shapes_and_ops(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *ck[3] = { NULL };
    REQUIRE(load_ckpt(&f, "sd3m_tiny.safetensors", ck));
    lm_value *pos = encode_text(&f, ck[1], "a red fox");
    REQUIRE(pos != NULL);
    const lm_sd3_conditioning *c = lm_sd3_conditioning_of(pos);
    REQUIRE(c->n == 1);
    CHECK_INT(c->entries[0].context->shape[1], 154); /* 77 CLIP rows + 77 T5 rows */
    CHECK_INT(c->entries[0].context->shape[2], 80);  /* the tiny T5 width */
    CHECK_INT(c->entries[0].pooled->shape[1], 64);   /* 24 (CLIP-L) + 40 (CLIP-G) */
    lm_error err;
    lm_value *zo[1] = { NULL }, *cb[1] = { NULL }, *tr[1] = { NULL };
    CHECK_OK(lm_exec_run_node(&lm_node_conditioning_zero_out, &f.env, &pos, zo, NULL, NULL, &err),
             &err);
    const lm_sd3_conditioning *z = lm_sd3_conditioning_of(zo[0]);
    REQUIRE(z && z->n == 1);
    CHECK_INT(z->entries[0].context->shape[1], 154);
    CHECK_INT(z->entries[0].pooled->shape[1], 64);
    const float *zp = lm_tensor_data(z->entries[0].context);
    bool zeros = true;
    for (int64_t i = 0; i < lm_tensor_numel(z->entries[0].context); i++)
        zeros = zeros && zp[i] == 0.0f;
    CHECK(zeros);
    lm_value *pair[2] = { pos, zo[0] };
    CHECK_OK(lm_exec_run_node(&lm_node_conditioning_combine, &f.env, pair, cb, NULL, NULL, &err),
             &err);
    CHECK_INT(lm_sd3_conditioning_of(cb[0])->n, 2);
    lm_value *rin[3] = { cb[0], lm_value_float(0.25), lm_value_float(0.5) };
    CHECK_OK(lm_exec_run_node(&lm_node_conditioning_set_timestep_range, &f.env, rin, tr, NULL, NULL,
                              &err),
             &err);
    const lm_sd3_conditioning *r = lm_sd3_conditioning_of(tr[0]);
    REQUIRE(r && r->n == 2);
    CHECK_NEAR(r->entries[1].start_percent, 0.25, 0);
    CHECK_NEAR(r->entries[1].end_percent, 0.5, 0);
    CHECK_NEAR(lm_sd3_conditioning_of(cb[0])->entries[1].end_percent, 1.0, 0); /* immutable */
    unref_all(rin + 1, 2);
    unref_all((lm_value *[]){ pos, zo[0], cb[0], tr[0] }, 4);
    unref_all(ck, 3);
    fx_fini(&f);
}

void test_nodes_sd3__clip_text_encode_sd3_empty_padding(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *ck[3] = { NULL };
    REQUIRE(load_ckpt(&f, "sd3m_tiny.safetensors", ck));
    lm_value *in[5] = { ck[1], lm_value_string(""), lm_value_string(""), lm_value_string(""),
                        lm_value_string("none") };
    lm_value *out[1] = { NULL };
    lm_error err;
    REQUIRE_OK(lm_exec_run_node(&lm_node_clip_text_encode_sd3, &f.env, in, out, NULL, NULL, &err),
               &err);
    const lm_sd3_cond_entry *e = &lm_sd3_conditioning_of(out[0])->entries[0];
    CHECK_INT(e->context->shape[1], 1); /* no CLIP rows; T5 of the lone </s> */
    CHECK_INT(e->pooled->shape[1], 64);
    lm_value_unref(out[0]);
    lm_value_unref(in[4]);
    in[4] = lm_value_string("empty_prompt");
    in[1] = (lm_value_unref(in[1]), lm_value_string("a fox"));
    REQUIRE_OK(lm_exec_run_node(&lm_node_clip_text_encode_sd3, &f.env, in, out, NULL, NULL, &err),
               &err);
    e = &lm_sd3_conditioning_of(out[0])->entries[0];
    CHECK_INT(e->context->shape[1], 154);
    lm_value_unref(out[0]);
    unref_all(in + 1, 4);
    unref_all(ck, 3);
    fx_fini(&f);
}

void test_nodes_sd3__dual_clip_loader_without_t5_samples(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *in[4] = { lm_value_string("clip_g.safetensors"),
                        lm_value_string("clip_l.safetensors"), lm_value_string("sd3"), NULL };
    lm_value *clip[1] = { NULL };
    lm_error err;
    REQUIRE_OK(lm_exec_run_node(&lm_node_dual_clip_loader, &f.env, in, clip, NULL, NULL, &err),
               &err);
    const lm_sd3_clip *c = lm_sd3_clip_of(clip[0]);
    /* Decided by width, not position: the narrower file is CLIP-L. */
    CHECK(c->clip_l && c->clip_g && !c->t5);
    CHECK_INT(lm_clip_config_of(lm_sd3_part_clip(c->clip_l))->width, 24);
    lm_value *cond = encode_text(&f, clip[0], "a fox");
    REQUIRE(cond != NULL);
    const lm_sd3_cond_entry *e = &lm_sd3_conditioning_of(cond)->entries[0];
    CHECK_INT(e->context->shape[1], 77);   /* no T5 rows (ComfyUI) */
    CHECK_INT(e->context->shape[2], 4096); /* padded as ComfyUI pads; fitted when sampling */
    lm_value *ck[3] = { NULL }, *lat[1] = { NULL }, *res[1] = { NULL };
    REQUIRE(load_ckpt(&f, "sd3m_tiny.safetensors", ck));
    lm_value *ein[3] = { lm_value_int(64), lm_value_int(64), lm_value_int(1) };
    CHECK_OK(lm_exec_run_node(&lm_node_empty_sd3_latent_image, &f.env, ein, lat, NULL, NULL, &err),
             &err);
    lm_value *kin[10] = { ck[0],
                          lm_value_int(1),
                          lm_value_int(2),
                          lm_value_float(3.0),
                          lm_value_string("euler"),
                          lm_value_string("simple"),
                          cond,
                          cond,
                          lat[0],
                          lm_value_float(1.0) };
    CHECK_OK(lm_exec_run_node(&lm_node_ksampler, &f.env, kin, res, NULL, NULL, &err), &err);
    unref_all(in, 3);
    unref_all(ein, 3);
    unref_all(kin + 1, 5);
    unref_all(kin + 9, 1);
    unref_all((lm_value *[]){ clip[0], cond, lat[0], res[0] }, 4);
    unref_all(ck, 3);
    fx_fini(&f);
}

/* KSampler on (model, positive, negative, latent) with the given options. */
static lm_value *ksample(fx *f, lm_value *model, lm_value *pos, lm_value *neg, lm_value *latent,
                         int steps, double denoise, counts *c)
{
    lm_value *in[10] = { model,
                         lm_value_int(5),
                         lm_value_int(steps),
                         lm_value_float(4.0),
                         lm_value_string("euler"),
                         lm_value_string("sgm_uniform"),
                         pos,
                         neg,
                         latent,
                         lm_value_float(denoise) };
    lm_value *out[1] = { NULL };
    lm_run_opts ro = { .on_event = on_event, .user = c };
    lm_error err;
    lm_status st = lm_exec_run_node(&lm_node_ksampler, &f->env, in, out, &ro, NULL, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "KSampler", st, &err);
    unref_all(in + 1, 5);
    lm_value_unref(in[9]);
    return out[0];
}

static double mean_abs_diff(const lm_value *a, const lm_value *b)
{
    const lm_tensor *x = lm_value_tensor(a), *y = lm_value_tensor(b);
    const float *p = lm_tensor_data(x), *q = lm_tensor_data(y);
    double s = 0;
    int64_t n = lm_tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        s += fabs((double)p[i] - (double)q[i]);
    return s / (double)n;
}

void test_nodes_sd3__img2img_denoise_is_strength(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *ck[3] = { NULL };
    REQUIRE(load_ckpt(&f, "sd3m_tiny.safetensors", ck));
    lm_value *pos = encode_text(&f, ck[1], "a fox"), *neg = encode_text(&f, ck[1], "");
    /* A 70x66 gradient: VAEEncode crops it to 64x64 around the centre. */
    int64_t shape[4] = { 1, 66, 70, 3 };
    lm_tensor *t = NULL;
    lm_error err;
    REQUIRE_OK(lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err), &err);
    float *p = lm_tensor_data(t);
    for (int64_t i = 0; i < lm_tensor_numel(t); i++)
        p[i] = (float)(i % 97) / 96.0f;
    lm_value *ein[2] = { lm_value_image(t), ck[2] }, *enc[1] = { NULL };
    REQUIRE_OK(lm_exec_run_node(&lm_node_vae_encode, &f.env, ein, enc, NULL, NULL, &err), &err);
    const lm_tensor *lt = lm_value_tensor(enc[0]);
    CHECK_INT(lt->shape[1], 16);
    CHECK_INT(lt->shape[2], 8);
    CHECK_INT(lt->shape[3], 8);
    counts full = { 0 }, part = { 0 }, none = { 0 };
    lm_value *a = ksample(&f, ck[0], pos, neg, enc[0], 3, 1.0, &full);
    lm_value *b = ksample(&f, ck[0], pos, neg, enc[0], 3, 0.3, &part);
    lm_value *c = ksample(&f, ck[0], pos, neg, enc[0], 3, 0.0, &none);
    REQUIRE(a && b && c);
    CHECK_INT(full.progress, 3);
    CHECK_INT(part.progress, 3); /* same steps, from a lower noise level */
    CHECK_INT(none.progress, 0);
    CHECK(c == enc[0]); /* denoise 0: the latent as it came */
    double da = mean_abs_diff(a, enc[0]), db = mean_abs_diff(b, enc[0]);
    test_note("mean |out - in|: denoise 1 %.4f, denoise 0.3 %.4f", da, db);
    CHECK(db < da);
    unref_all((lm_value *[]){ a, b, c, pos, neg, ein[0], enc[0] }, 7);
    unref_all(ck, 3);
    fx_fini(&f);
}

void test_nodes_sd3__skip_layer_guidance_changes_the_result(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *ck[3] = { NULL }, *lat[1] = { NULL };
    REQUIRE(load_ckpt(&f, "sd3m_tiny.safetensors", ck));
    lm_value *pos = encode_text(&f, ck[1], "a fox"), *neg = encode_text(&f, ck[1], "");
    lm_error err;
    lm_value *ein[3] = { lm_value_int(64), lm_value_int(64), lm_value_int(1) };
    REQUIRE_OK(
        lm_exec_run_node(&lm_node_empty_sd3_latent_image, &f.env, ein, lat, NULL, NULL, &err),
        &err);
    lm_value *sin[5] = { ck[0], lm_value_string("[0; 1]"), lm_value_float(3.0), lm_value_float(0.0),
                         lm_value_float(1.0) };
    lm_value *slg[1] = { NULL }, *same[1] = { NULL };
    REQUIRE_OK(
        lm_exec_run_node(&lm_node_skip_layer_guidance_sd3, &f.env, sin, slg, NULL, NULL, &err),
        &err);
    const lm_sd3_model *m = lm_sd3_model_of(slg[0]);
    CHECK_INT(m->slg.n_layers, 2); /* every number in the text, as ComfyUI's regex */
    CHECK(m->mmdit == lm_sd3_model_of(ck[0])->mmdit);
    CHECK_INT(lm_sd3_model_of(ck[0])->slg.n_layers, 0);
    lm_value_unref(sin[1]);
    sin[1] = lm_value_string("none");
    REQUIRE_OK(
        lm_exec_run_node(&lm_node_skip_layer_guidance_sd3, &f.env, sin, same, NULL, NULL, &err),
        &err);
    CHECK(same[0] == ck[0]); /* no layers: the model as it came */
    counts c = { 0 };
    lm_value *a = ksample(&f, ck[0], pos, neg, lat[0], 2, 1.0, &c);
    lm_value *b = ksample(&f, slg[0], pos, neg, lat[0], 2, 1.0, &c);
    REQUIRE(a && b);
    CHECK(mean_abs_diff(a, b) > 1e-4);
    unref_all(sin + 1, 4);
    unref_all(ein, 3);
    unref_all((lm_value *[]){ a, b, pos, neg, lat[0], slg[0], same[0] }, 7);
    unref_all(ck, 3);
    fx_fini(&f);
}

void test_nodes_sd3__model_sampling_sd3_makes_a_new_model(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *ck[3] = { NULL };
    REQUIRE(load_ckpt(&f, "sd3m_tiny.safetensors", ck));
    CHECK_NEAR(lm_sd3_model_of(ck[0])->sampling.shift, 3.0, 0);
    lm_value *in[2] = { ck[0], lm_value_float(6.0) }, *out[1] = { NULL };
    lm_error err;
    REQUIRE_OK(lm_exec_run_node(&lm_node_model_sampling_sd3, &f.env, in, out, NULL, NULL, &err),
               &err);
    CHECK_NEAR(lm_sd3_model_of(out[0])->sampling.shift, 6.0, 0);
    CHECK_NEAR(lm_sd3_model_of(ck[0])->sampling.shift, 3.0, 0);
    CHECK(lm_sd3_model_of(out[0])->mmdit == lm_sd3_model_of(ck[0])->mmdit);
    lm_value_unref(in[1]);
    lm_value_unref(out[0]);
    unref_all(ck, 3);
    fx_fini(&f);
}

void test_nodes_sd3__empty_latent_and_upscale(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *ein[3] = { lm_value_int(96), lm_value_int(64), lm_value_int(2) }, *lat[1] = { NULL };
    lm_error err;
    REQUIRE_OK(
        lm_exec_run_node(&lm_node_empty_sd3_latent_image, &f.env, ein, lat, NULL, NULL, &err),
        &err);
    const lm_tensor *t = lm_value_tensor(lat[0]);
    CHECK_INT(t->shape[0], 2);
    CHECK_INT(t->shape[1], 16);
    CHECK_INT(t->shape[2], 8);
    CHECK_INT(t->shape[3], 12);
    const float *p = lm_tensor_data(t);
    CHECK(p[0] == 0.0f && p[lm_tensor_numel(t) - 1] == 0.0f);
    /* width 0 keeps the aspect ratio: height 128 -> width round(12 * 128 / 8) = 192 */
    lm_value *uin[5] = { lat[0], lm_value_string("bilinear"), lm_value_int(0), lm_value_int(128),
                         lm_value_string("disabled") };
    lm_value *up[1] = { NULL };
    REQUIRE_OK(lm_exec_run_node(&lm_node_latent_upscale, &f.env, uin, up, NULL, NULL, &err), &err);
    t = lm_value_tensor(up[0]);
    CHECK_INT(t->shape[1], 16);
    CHECK_INT(t->shape[2], 16);
    CHECK_INT(t->shape[3], 24);
    unref_all(ein, 3);
    unref_all(uin + 1, 4);
    lm_value_unref(lat[0]);
    lm_value_unref(up[0]);
    fx_fini(&f);
}

void test_nodes_sd3__tiled_decode_matches_whole_for_one_tile(void)
{
    fx f;
    REQUIRE(fx_init(&f));
    lm_value *ck[3] = { NULL }, *lat[1] = { NULL };
    REQUIRE(load_ckpt(&f, "sd3m_tiny.safetensors", ck));
    lm_error err;
    int64_t shape[4] = { 1, 16, 8, 8 };
    lm_tensor *t = NULL;
    REQUIRE_OK(lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err), &err);
    float *p = lm_tensor_data(t);
    for (int i = 0; i < 16 * 64; i++)
        p[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    lat[0] = lm_value_latent(t, NULL);
    lm_value *din[2] = { lat[0], ck[2] }, *a[1] = { NULL }, *b[1] = { NULL };
    lm_value *tin[6] = { lat[0],           ck[2],          lm_value_int(512), lm_value_int(64),
                         lm_value_int(64), lm_value_int(8) };
    CHECK_OK(lm_exec_run_node(&lm_node_vae_decode, &f.env, din, a, NULL, NULL, &err), &err);
    CHECK_OK(lm_exec_run_node(&lm_node_vae_decode_tiled, &f.env, tin, b, NULL, NULL, &err), &err);
    CHECK(a[0] && b[0] && same_tensor(lm_value_tensor(a[0]), lm_value_tensor(b[0])));
    unref_all(tin + 2, 4);
    unref_all((lm_value *[]){ lat[0], a[0], b[0] }, 3);
    unref_all(ck, 3);
    fx_fini(&f);
}

void test_nodes_sd3__sampler_and_scheduler_choices_parse(void)
{
    const lm_input_def *in = lm_node_ksampler.inputs;
    int found = 0;
    for (size_t i = 0; i < lm_node_ksampler.n_inputs; i++) {
        for (const char *const *c = in[i].choices; c && *c; c++) {
            lm_error err;
            lm_sampler s;
            lm_schedule sch;
            if (strcmp(in[i].name, "sampler_name") == 0)
                CHECK_OK(lm_sampler_parse(&s, *c, &err), &err);
            else
                CHECK_OK(lm_scheduler_parse(&sch, *c, &err), &err);
            found++;
        }
    }
    CHECK_INT(found, LM_SAMPLER_COUNT + 9);
}
