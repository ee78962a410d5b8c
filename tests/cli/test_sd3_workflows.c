/* tests/cli/test_sd3_workflows.c — the shipped SD3 workflows and real ComfyUI workflows,
 * end to end through the `loom` program, on the tiny checkpoints of ../shared/golden
 * arranged as a models directory (all-in-one files, and the split files of golden/split/). */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/image.h"
#include "core/tensor/tensor.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static bool link_into(const char *rel, const char *dir, const char *name)
{
    const char *src = test_shared(rel);
    if (!src)
        return false;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return symlink(src, path) == 0;
}

/* models/ for one tiny flavour ("sd3m" or "sd35m"), under the file names the shipped
 * workflows and ComfyUI's examples use: the all-in-one checkpoint, the checkpoint without
 * text encoders, and the separate CLIP-L, CLIP-G and T5 files of golden/split/. */
static bool make_models(const char *flavour)
{
    lm_error err;
    const char *dirs[] = { "models/checkpoints", "models/text_encoders", "models/vae", "input" };
    for (size_t i = 0; i < LM_COUNTOF(dirs); i++)
        if (lm_mkdirs(dirs[i], &err) != LM_OK)
            return false;
    bool m = strcmp(flavour, "sd3m") == 0;
    char tiny[128], noenc[128], split[128], t5[160];
    snprintf(tiny, sizeof(tiny), "golden/%s_tiny.safetensors", flavour);
    snprintf(noenc, sizeof(noenc), "golden/split/%s/%s_tiny_noenc.safetensors", flavour, flavour);
    snprintf(split, sizeof(split), "golden/split/%s", flavour);
    snprintf(t5, sizeof(t5), "%s/%s", split,
             m ? "t5xxl_fp8_e4m3fn.safetensors" : "t5xxl_fp16.safetensors");
    char l[160], g[160];
    snprintf(l, sizeof(l), "%s/clip_l.safetensors", split);
    snprintf(g, sizeof(g), "%s/clip_g.safetensors", split);
    const char *ckpt_all =
        m ? "sd3_medium_incl_clips_t5xxlfp8.safetensors" : "sd3.5_large_fp8_scaled.safetensors";
    const char *ckpt_noenc = m ? "sd3_medium.safetensors" : "sd3.5_medium.safetensors";
    return link_into(tiny, "models/checkpoints", "tiny.safetensors") &&
           link_into(tiny, "models/checkpoints", ckpt_all) &&
           link_into(noenc, "models/checkpoints", ckpt_noenc) &&
           (m || link_into(noenc, "models/checkpoints", "sd3.5_large.safetensors")) &&
           link_into(l, "models/text_encoders", "clip_l.safetensors") &&
           link_into(g, "models/text_encoders", "clip_g.safetensors") &&
           link_into(t5, "models/text_encoders", "t5xxl_fp16.safetensors");
}

static int loom(const char *args, char **out)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "'%s' %s --models models", test_loom_bin(), args);
    return test_run_capture(cmd, out);
}

static int run_workflow(const char *workflow, const char *args, char **out)
{
    char all[6144];
    snprintf(all, sizeof(all), "run '%s/workflows/%s' %s", test_repo_root(), workflow, args);
    return loom(all, out);
}

static lm_tensor *load_png(const char *path)
{
    lm_tensor *img = NULL;
    lm_error err;
    if (lm_image_load(path, NULL, &img, NULL, &err) != LM_OK) {
        test__fail_err(__FILE__, __LINE__, path, err.code, &err);
        return NULL;
    }
    return img;
}

static bool same_pixels(const char *a, const char *b)
{
    lm_tensor *x = load_png(a), *y = load_png(b);
    bool same = x && y && lm_tensor_nbytes(x) == lm_tensor_nbytes(y) &&
                memcmp(lm_tensor_data(x), lm_tensor_data(y), lm_tensor_nbytes(x)) == 0;
    lm_tensor_free(x);
    lm_tensor_free(y);
    return same;
}

#define SMALL "--set width=64 --set height=48 --set steps=2 --quiet"

void test_cli_sd3__medium_txt2img_runs_and_repeats(void)
{
    REQUIRE(make_models("sd3m"));
    const char *args = "--set ckpt_name=tiny.safetensors " SMALL;
    char buf[1024], *out;
    snprintf(buf, sizeof(buf), "%s --out a", args);
    int rc = run_workflow("sd3_medium_txt2img.yaml", buf, &out);
    CHECK_INT(rc, 0);
    if (rc)
        test_note("%s", out);
    free(out);
    lm_tensor *img = load_png("a/sd3_00001_.png");
    REQUIRE(img);
    CHECK_INT(img->shape[1], 48);
    CHECK_INT(img->shape[2], 64);
    lm_tensor_free(img);
    /* Same workflow and seed: identical pixels, run after run. */
    snprintf(buf, sizeof(buf), "%s --out b", args);
    CHECK_INT(run_workflow("sd3_medium_txt2img.yaml", buf, &out), 0);
    free(out);
    CHECK(same_pixels("a/sd3_00001_.png", "b/sd3_00001_.png"));
    /* The PNG carries its recipe and re-runs to identical pixels. */
    CHECK_INT(loom("run a/sd3_00001_.png --out c --quiet", &out), 0);
    free(out);
    CHECK(same_pixels("a/sd3_00001_.png", "c/sd3_00001_.png"));
    /* Another seed gives another picture. */
    snprintf(buf, sizeof(buf), "%s --set seed=7 --out d", args);
    CHECK_INT(run_workflow("sd3_medium_txt2img.yaml", buf, &out), 0);
    free(out);
    CHECK(!same_pixels("a/sd3_00001_.png", "d/sd3_00001_.png"));
}

/* ComfyUI's own example files, unchanged but for size, steps and the prompt: the
 * all-in-one checkpoint and the checkpoint without encoders + TripleCLIPLoader (with unused
 * CLIPLoader and DualCLIPLoader nodes) give exactly the same pixels. */
static void split_vs_all_in_one(const char *flavour, const char *all, const char *split)
{
    REQUIRE(make_models(flavour));
    const char *common = "--set 3.seed=5 --set 3.steps=2 --set 53.width=64 --set 53.height=64 "
                         "--set 3.cfg=4.5 --set 16.text='a red bicycle' --quiet";
    char args[4096], *out;
    char name[128];
    snprintf(name, sizeof(name), "comfyui_examples/%s", all);
    snprintf(args, sizeof(args), "run '%s' --out all %s", test_shared(name), common);
    int rc = loom(args, &out);
    CHECK_INT(rc, 0);
    if (rc)
        test_note("%s", out);
    free(out);
    snprintf(name, sizeof(name), "comfyui_examples/%s", split);
    snprintf(args, sizeof(args), "run '%s' --out split %s", test_shared(name), common);
    rc = loom(args, &out);
    CHECK_INT(rc, 0);
    if (rc)
        test_note("%s", out);
    free(out);
    CHECK(same_pixels("all/ComfyUI_00001_.png", "split/ComfyUI_00001_.png"));
}

void test_cli_sd3__split_files_match_all_in_one_sd3m(void)
{
    split_vs_all_in_one("sd3m", "sd3_simple_example.api.json",
                        "sd3_text_encoders_example.api.json");
}

void test_cli_sd3__split_files_match_all_in_one_sd35m(void)
{
    split_vs_all_in_one("sd35m", "sd3.5_simple_example.api.json",
                        "sd3.5_text_encoders_example.api.json");
}

void test_cli_sd3__sd35_txt2img_with_slg(void)
{
    REQUIRE(make_models("sd35m"));
    char *out;
    /* Two steps sit at 0% and 50% of the schedule: let guidance cover all of it. */
#define SLG SMALL " --set slg_layers=1 --set slg_start=0 --set slg_end=1"
    int rc = run_workflow("sd35_medium_txt2img.yaml", SLG " --out o", &out);
    CHECK_INT(rc, 0);
    if (rc)
        test_note("%s", out);
    free(out);
    CHECK(access("o/sd35_00001_.png", F_OK) == 0);
    /* Turning skip-layer guidance off changes the picture. */
    CHECK_INT(run_workflow("sd35_medium_txt2img.yaml", SLG " --set slg_scale=0 --out p", &out), 0);
    free(out);
    CHECK(!same_pixels("o/sd35_00001_.png", "p/sd35_00001_.png"));
}

void test_cli_sd3__img2img_strength(void)
{
    REQUIRE(make_models("sd3m"));
    char *out;
    REQUIRE(run_workflow("demo.yaml", "--set size=64 --out input --set prefix=src --quiet", &out) ==
            0);
    free(out);
    const char *base = "--set ckpt_name=tiny.safetensors --set image=src_00001_.png --set "
                       "steps=2 --input input --quiet";
    char args[1024];
    snprintf(args, sizeof(args), "%s --set strength=0.5 --out half", base);
    int rc = run_workflow("sd3_img2img.yaml", args, &out);
    CHECK_INT(rc, 0);
    if (rc)
        test_note("%s", out);
    free(out);
    snprintf(args, sizeof(args), "%s --set strength=1.0 --out full", base);
    CHECK_INT(run_workflow("sd3_img2img.yaml", args, &out), 0);
    free(out);
    lm_tensor *half = load_png("half/sd3_img2img_00001_.png");
    lm_tensor *full = load_png("full/sd3_img2img_00001_.png");
    REQUIRE(half && full);
    CHECK_INT(half->shape[1], 64);
    CHECK(memcmp(lm_tensor_data(half), lm_tensor_data(full), lm_tensor_nbytes(half)) != 0);
    lm_tensor_free(half);
    lm_tensor_free(full);
}

void test_cli_sd3__batch_loads_checkpoint_once(void)
{
    REQUIRE(make_models("sd3m"));
    char args[4096], *out;
    snprintf(args, sizeof(args),
             "--set ckpt_name=tiny.safetensors --set width=64 --set height=48 --set steps=2 "
             "--batch '%s/workflows/sd3_batch.jsonl' --out o --json",
             test_repo_root());
    int rc = run_workflow("sd3_medium_txt2img.yaml", args, &out);
    CHECK_INT(rc, 0);
    /* The loader runs for the first job only; the other three reuse it from the cache. */
    size_t loads = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        loads += strstr(line, "\"event\": \"executing\"") && strstr(line, "\"node\": \"ckpt\"");
    CHECK_INT(loads, 1);
    free(out);
    for (int i = 1; i <= 4; i++) {
        char path[64];
        snprintf(path, sizeof(path), "o/sd3_%05d_.png", i);
        CHECK(access(path, F_OK) == 0);
    }
    /* Seeds 1 and 2 share a prompt but not a picture. */
    CHECK(!same_pixels("o/sd3_00001_.png", "o/sd3_00002_.png"));
}

void test_cli_sd3__comfyui_png_and_anime_example(void)
{
    REQUIRE(make_models("sd3m"));
    char args[4096], *out;
    snprintf(args, sizeof(args),
             "run '%s' --out png --set 3.steps=2 --set 53.width=64 --set 53.height=64 --quiet",
             test_shared("comfyui_examples/sd3_simple_example.png"));
    CHECK_INT(loom(args, &out), 0);
    free(out);
    CHECK(access("png/ComfyUI_00001_.png", F_OK) == 0);
    snprintf(args, sizeof(args),
             "run '%s' --out anime --set 3.steps=2 --set 33.width=64 --set 33.height=80 --quiet",
             test_shared("comfyui_examples/sd3_anime_example.api.json"));
    int rc = loom(args, &out);
    CHECK_INT(rc, 0);
    if (rc)
        test_note("%s", out);
    free(out);
    lm_tensor *img = load_png("anime/ComfyUI_00001_.png");
    REQUIRE(img);
    CHECK_INT(img->shape[1], 80);
    lm_tensor_free(img);
}

/* The loopback device runs every step a GPU takes (weights copied to the device, inputs
 * moved in, results brought back) with the CPU's kernels, so its pixels must be the CPU's
 * exactly: txt2img, img2img (VAE encode) and SD3.5 with skip-layer guidance. */
void test_cli_sd3__loopback_device_gives_cpu_pixels(void)
{
    REQUIRE(make_models("sd3m"));
    char *out;
    const char *t2i = "--set ckpt_name=tiny.safetensors " SMALL;
    char args[1024];
    for (int dev = 0; dev < 2; dev++) {
        const char *name = dev ? "loopback" : "cpu";
        snprintf(args, sizeof(args), "%s --device %s --out t2i_%s", t2i, name, name);
        int rc = run_workflow("sd3_medium_txt2img.yaml", args, &out);
        CHECK_INT(rc, 0);
        if (rc)
            test_note("%s", out);
        free(out);
    }
    CHECK(same_pixels("t2i_cpu/sd3_00001_.png", "t2i_loopback/sd3_00001_.png"));
    REQUIRE(run_workflow("demo.yaml", "--set size=64 --out input --set prefix=src --quiet", &out) ==
            0);
    free(out);
    for (int dev = 0; dev < 2; dev++) {
        const char *name = dev ? "loopback" : "cpu";
        snprintf(args, sizeof(args),
                 "--set ckpt_name=tiny.safetensors --set image=src_00001_.png --set steps=2 "
                 "--set strength=0.6 --input input --quiet --device %s --out i2i_%s",
                 name, name);
        CHECK_INT(run_workflow("sd3_img2img.yaml", args, &out), 0);
        free(out);
    }
    CHECK(same_pixels("i2i_cpu/sd3_img2img_00001_.png", "i2i_loopback/sd3_img2img_00001_.png"));
}

void test_cli_sd3__loopback_sd35_with_slg_gives_cpu_pixels(void)
{
    REQUIRE(make_models("sd35m"));
    char *out, args[1024];
    for (int dev = 0; dev < 2; dev++) {
        const char *name = dev ? "loopback" : "cpu";
        snprintf(args, sizeof(args), SLG " --device %s --out %s", name, name);
        int rc = run_workflow("sd35_medium_txt2img.yaml", args, &out);
        CHECK_INT(rc, 0);
        if (rc)
            test_note("%s", out);
        free(out);
    }
    CHECK(same_pixels("cpu/sd35_00001_.png", "loopback/sd35_00001_.png"));
}

/* A device too small for everything: the policy keeps T5-XXL (loaded last by
 * CheckpointLoaderSimple) on the CPU, says so, and the picture is still the CPU's.
 * Tiny sd3m, in loading order: MMDiT 2.4 MiB, VAE 10.1, CLIP-L 2.3, CLIP-G 3.9, T5 2.6; with
 * a 16 MiB reserve, 36 MiB hold all but T5 (2.6 + 16 > 36 - 18.7; CLIP-G: 3.9 + 16 <= 21.2). */
void test_cli_sd3__small_device_keeps_t5_on_the_cpu(void)
{
    REQUIRE(make_models("sd3m"));
    char *out;
    const char *args = "--set ckpt_name=tiny.safetensors --set width=64 --set height=48 "
                       "--set steps=2 --quiet";
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s --device cpu --out cpu", args);
    CHECK_INT(run_workflow("sd3_medium_txt2img.yaml", buf, &out), 0);
    free(out);
    snprintf(buf, sizeof(buf), "%s --device loopback -v --out small 2>&1", args);
    char env_args[1400];
    snprintf(env_args, sizeof(env_args),
             "LOOM_LOOPBACK_MEMORY=36M LOOM_DEVICE_RESERVE=16M LOOM_DENOISER_RESERVE=0 "
             "'%s' run '%s/workflows/sd3_medium_txt2img.yaml' --models models %s",
             test_loom_bin(), test_repo_root(), buf);
    int rc = test_run_capture(env_args, &out);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "T5-XXL stays on the CPU");
    CHECK_CONTAINS(out, "loaded MMDiT");
    CHECK(!strstr(out, "CLIP-G stays on the CPU"));
    if (rc)
        test_note("%s", out);
    free(out);
    CHECK(same_pixels("cpu/sd3_00001_.png", "small/sd3_00001_.png"));
}

/* ComfyUI's own img2img example, unchanged but for the checkpoint name and steps: its
 * LoadImage carries an input Loom's LoadImage does not declare ("choose file to upload",
 * from an old ComfyUI), which ComfyUI ignores and so must Loom. */
void test_cli_sd3__comfyui_img2img_example_runs_unchanged(void)
{
    REQUIRE(make_models("sd3m"));
    char *out, args[4096];
    REQUIRE(run_workflow("demo.yaml", "--set size=64 --out input --set prefix=example --quiet",
                         &out) == 0);
    free(out);
    REQUIRE(rename("input/example_00001_.png", "input/example.png") == 0);
    snprintf(args, sizeof(args),
             "run '%s' --input input --out o --set 14.ckpt_name=tiny.safetensors "
             "--set 3.steps=2 --quiet",
             test_shared("comfyui_examples/img2img_workflow.api.json"));
    int rc = loom(args, &out);
    CHECK_INT(rc, 0);
    if (rc)
        test_note("%s", out);
    free(out);
    lm_tensor *img = load_png("o/ComfyUI_00001_.png");
    REQUIRE(img);
    CHECK_INT(img->shape[1], 64);
    CHECK_INT(img->shape[2], 64);
    lm_tensor_free(img);
    /* --strict still names the undeclared input. */
    snprintf(args, sizeof(args), "validate --strict '%s'",
             test_shared("comfyui_examples/img2img_workflow.api.json"));
    CHECK_INT(loom(args, &out), 3);
    CHECK_CONTAINS(out, "choose file to upload");
    free(out);
}

/* A sweep over two checkpoints on a device that holds one at a time: the first one's models
 * are held only by cached outputs of the earlier run; under memory pressure those are
 * dropped and the models unloaded, so the second checkpoint still goes to the device (not
 * to the CPU), and both pictures are the CPU's. */
void test_cli_sd3__sweep_over_checkpoints_makes_room_on_the_device(void)
{
    REQUIRE(make_models("sd3m"));
    REQUIRE(link_into("golden/sd35m_tiny.safetensors", "models/checkpoints", "tiny35.safetensors"));
    const char *sweep = "--sweep ckpt_name=tiny.safetensors,tiny35.safetensors --set width=64 "
                        "--set height=48 --set steps=2 --quiet";
    char cmd[8192], *out;
    snprintf(cmd, sizeof(cmd),
             "LOOM_LOOPBACK_MEMORY=36M LOOM_DEVICE_RESERVE=8M LOOM_DENOISER_RESERVE=0 '%s' run "
             "'%s/workflows/sd3_medium_txt2img.yaml' --models models %s --device loopback -v "
             "--out dev 2>&1",
             test_loom_bin(), test_repo_root(), sweep);
    int rc = test_run_capture(cmd, &out);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "dropped");
    CHECK_CONTAINS(out, "to make room");
    CHECK_CONTAINS(out, "loaded MMDiT from");
    CHECK(!strstr(out, "on the CPU"));
    CHECK(!strstr(out, " on cpu "));
    if (rc || strstr(out, "on the CPU"))
        test_note("%s", out);
    free(out);
    snprintf(cmd, sizeof(cmd),
             "run '%s/workflows/sd3_medium_txt2img.yaml' %s --device cpu --out cpu",
             test_repo_root(), sweep);
    CHECK_INT(loom(cmd, &out), 0);
    free(out);
    char a[64], b[64];
    for (int i = 1; i <= 2; i++) {
        snprintf(a, sizeof(a), "cpu/sd3_%05d_.png", i);
        snprintf(b, sizeof(b), "dev/sd3_%05d_.png", i);
        CHECK(same_pixels(a, b));
    }
}
