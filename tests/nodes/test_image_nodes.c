/* tests/nodes/test_image_nodes.c — the image nodes through lm_exec_run_node, with an lm_env
 * whose directories live in the test's temporary directory. Expected pixels are written out
 * from the documented formulas (torch interpolate, ComfyUI's Blend), not computed by the
 * code under test. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/exec.h"
#include "core/exec_ctx.h"
#include "core/io/image.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern const lm_node_def lm_node_empty_image, lm_node_load_image, lm_node_save_image,
    lm_node_preview_image, lm_node_image_scale, lm_node_image_invert, lm_node_image_blend;

typedef struct {
    char input[1024], output[1024], temp[1024];
    lm_env env;
} dirs;

static void dirs_init(dirs *d)
{
    snprintf(d->input, sizeof(d->input), "%s/input", test_tmpdir());
    snprintf(d->output, sizeof(d->output), "%s/output", test_tmpdir());
    snprintf(d->temp, sizeof(d->temp), "%s/temp", test_tmpdir());
    mkdir(d->input, 0755);
    mkdir(d->output, 0755);
    d->env = (lm_env){ .input_dir = d->input, .output_dir = d->output, .temp_dir = d->temp };
}

/* An IMAGE value [b,h,w,c] from values (repeated when shorter). */
static lm_value *image_value(int64_t b, int64_t h, int64_t w, int64_t c, const float *v, size_t nv)
{
    lm_tensor *t;
    int64_t shape[4] = { b, h, w, c };
    lm_error err;
    if (lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err) != LM_OK)
        return NULL;
    float *p = lm_tensor_data(t);
    for (int64_t i = 0; i < b * h * w * c; i++)
        p[i] = v[(size_t)i % nv];
    return lm_value_image(t);
}

static const float *px(const lm_value *v)
{
    return lm_tensor_data(lm_value_tensor(v));
}

static void unref_all(lm_value **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lm_value_unref(v[i]);
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- EmptyImage ---- */

void test_nodes_image__empty_image(void)
{
    lm_value *in[4] = { lm_value_int(3), lm_value_int(2), lm_value_int(2), lm_value_int(0x123456) };
    lm_value *out[1];
    lm_error err;
    REQUIRE_OK(lm_exec_run_node(&lm_node_empty_image, NULL, in, out, NULL, NULL, &err), &err);
    const lm_tensor *t = lm_value_tensor(out[0]);
    CHECK_INT(t->ndim, 4);
    CHECK_INT(t->shape[0], 2);
    CHECK_INT(t->shape[1], 2);
    CHECK_INT(t->shape[2], 3);
    CHECK_INT(t->shape[3], 3);
    int bad = 0;
    for (int i = 0; i < 12; i++)
        bad += px(out[0])[i * 3] != 0x12 / 255.0f || px(out[0])[i * 3 + 1] != 0x34 / 255.0f ||
               px(out[0])[i * 3 + 2] != 0x56 / 255.0f;
    CHECK_INT(bad, 0);
    unref_all(out, 1);
    unref_all(in, 4);
}

/* ---- LoadImage ---- */

/* Writes a 2x3 picture (RGBA when alpha) into the input directory. */
static void write_input(const dirs *d, const char *name, bool alpha, float base)
{
    const float v[4] = { base, 0.2f, 0.4f, 0.6f };
    lm_value *img = image_value(1, 2, 3, alpha ? 4 : 3, v, 4);
    char path[2048];
    lm_path_join(path, sizeof(path), d->input, name);
    lm_error err;
    CHECK_OK(lm_image_save(path, lm_value_tensor(img), 0, LM_IMAGE_PNG, 6, NULL, 0, &err), &err);
    lm_value_unref(img);
}

static lm_status load(const dirs *d, const char *name, lm_value **out, lm_error *err)
{
    lm_value *in[1] = { lm_value_string(name) };
    lm_status st = lm_exec_run_node(&lm_node_load_image, &d->env, in, out, NULL, NULL, err);
    lm_value_unref(in[0]);
    return st;
}

void test_nodes_image__load_image_no_alpha_mask_quirk(void)
{
    dirs d;
    dirs_init(&d);
    write_input(&d, "a.png", false, 0.8f);
    lm_value *out[2];
    lm_error err;
    REQUIRE_OK(load(&d, "a.png", out, &err), &err);
    const lm_tensor *img = lm_value_tensor(out[0]), *mask = lm_value_tensor(out[1]);
    CHECK_INT(img->shape[1], 2);
    CHECK_INT(img->shape[2], 3);
    CHECK_INT(img->shape[3], 3);
    CHECK_NEAR(px(out[0])[0], 204 / 255.0, 1e-6); /* 0.8 * 255 = 204 */
    CHECK_NEAR(px(out[0])[1], 51 / 255.0, 1e-6);
    CHECK_INT(mask->ndim, 3);
    CHECK_INT(mask->shape[0], 1);
    CHECK_INT(mask->shape[1], 64);
    CHECK_INT(mask->shape[2], 64);
    float sum = 0;
    for (int i = 0; i < 64 * 64; i++)
        sum += px(out[1])[i];
    CHECK_NEAR(sum, 0, 0);
    unref_all(out, 2);
}

void test_nodes_image__load_image_alpha_mask(void)
{
    dirs d;
    dirs_init(&d);
    write_input(&d, "a.png", true, 0.0f);
    lm_value *out[2];
    lm_error err;
    REQUIRE_OK(load(&d, "a.png", out, &err), &err);
    const lm_tensor *mask = lm_value_tensor(out[1]);
    CHECK_INT(mask->shape[1], 2);
    CHECK_INT(mask->shape[2], 3);
    /* Alpha is sample 3 of each pixel: v[3] = 0.6 → 153 / 255; mask = 1 - 153/255. */
    CHECK_NEAR(px(out[1])[0], 1 - 153 / 255.0, 1e-6);
    CHECK_NEAR(px(out[0])[3], 0, 1e-6); /* second pixel's red is v[4 % 4] = 0 */
    unref_all(out, 2);
}

void test_nodes_image__load_image_confinement(void)
{
    dirs d;
    dirs_init(&d);
    write_input(&d, "a.png", false, 0.5f);
    test_write_file("outside.png", "x");
    lm_value *out[2];
    lm_error err;
    CHECK_INT(load(&d, "../outside.png", out, &err), LM_EINVAL);
    CHECK_STR(err.kind, "custom_validation_failed");
    CHECK_STR(err.input, "image");
    char abs[2048];
    snprintf(abs, sizeof(abs), "%s/a.png", d.input);
    CHECK_INT(load(&d, abs, out, &err), LM_EINVAL);
    CHECK(load(&d, "./input/a.png", out, &err) != LM_OK); /* input/./input/a.png */
    d.env.trusted_paths = true;
    CHECK_OK(load(&d, abs, out, &err), &err);
    unref_all(out, 2);
    CHECK_OK(load(&d, "./input/a.png", out, &err), &err);
    unref_all(out, 2);
    CHECK_INT(load(&d, "../outside.png", out, &err), LM_EINVAL); /* still a name */
    CHECK_OK(load(&d, "a.png [input]", out, &err), &err);
    unref_all(out, 2);
}

static uint64_t fingerprint(const dirs *d, const char *name, lm_status *st)
{
    lm_value *in[1] = { lm_value_string(name) };
    uint64_t fp = 0;
    lm_error err;
    *st = lm_node_load_image.changed(&lm_node_load_image, &d->env, in, &fp, &err);
    lm_value_unref(in[0]);
    return fp;
}

void test_nodes_image__load_image_changed(void)
{
    dirs d;
    dirs_init(&d);
    write_input(&d, "a.png", false, 0.5f);
    lm_status st;
    uint64_t f1 = fingerprint(&d, "a.png", &st);
    CHECK_INT(st, LM_OK);
    CHECK(fingerprint(&d, "a.png", &st) == f1);
    write_input(&d, "a.png", false, 0.25f);
    uint64_t f2 = fingerprint(&d, "a.png", &st);
    CHECK_INT(st, LM_OK);
    CHECK(f1 != f2);
    fingerprint(&d, "missing.png", &st);
    CHECK_INT(st, LM_EINVAL);
}

static lm_status check_name(const dirs *d, const char *name, lm_error *err)
{
    lm_value *in[1] = { lm_value_string(name) };
    lm_status st = lm_node_load_image.check(&lm_node_load_image, &d->env, in, err);
    lm_value_unref(in[0]);
    return st;
}

void test_nodes_image__load_image_check(void)
{
    dirs d;
    dirs_init(&d);
    write_input(&d, "good.png", false, 0.5f);
    char bad[2048];
    snprintf(bad, sizeof(bad), "%s/bad.png", d.input);
    test_write_file(bad, "not an image");
    lm_error err;
    CHECK_OK(check_name(&d, "good.png", &err), &err);
    CHECK_INT(check_name(&d, "nope.png", &err), LM_EINVAL);
    CHECK_STR(err.kind, "custom_validation_failed");
    CHECK_STR(err.msg, "Invalid image file: nope.png");
    CHECK_INT(check_name(&d, "bad.png", &err), LM_EINVAL);
    CHECK_STR(err.msg, "Invalid image file: bad.png");
    CHECK_INT(check_name(&d, "../good.png", &err), LM_EINVAL);
    lm_value *in[1] = { NULL }; /* a link: nothing to check yet */
    CHECK_OK(lm_node_load_image.check(&lm_node_load_image, &d.env, in, &err), &err);
}

void test_nodes_image__load_image_choices(void)
{
    dirs d;
    dirs_init(&d);
    write_input(&d, "b.png", false, 0.5f);
    write_input(&d, "a.JPG", false, 0.5f);
    char path[2048];
    snprintf(path, sizeof(path), "%s/c.txt", d.input);
    test_write_file(path, "x");
    snprintf(path, sizeof(path), "%s/dir.png", d.input);
    mkdir(path, 0755);
    lm_strlist list = { 0 };
    lm_error err;
    REQUIRE_OK(lm_node_load_image.inputs[0].choices_fn(&d.env, &list, &err), &err);
    CHECK_INT(list.count, 2);
    if (list.count == 2) {
        CHECK_STR(list.items[0], "a.JPG");
        CHECK_STR(list.items[1], "b.png");
    }
    lm_strlist_fini(&list);
    CHECK(lm_node_load_image.inputs[0].flags & LM_INPUT_FILE);
}

/* ---- SaveImage / PreviewImage ---- */

static lm_status save(const dirs *d, lm_value *images, const char *prefix, char **ui,
                      const char *extra, lm_error *err)
{
    lm_value *in[2] = { images, lm_value_string(prefix) };
    lm_run_opts opts = { .extra_json = extra };
    lm_value *none[1];
    lm_status st = lm_exec_run_node(&lm_node_save_image, &d->env, in, none, &opts, ui, err);
    lm_value_unref(in[1]);
    return st;
}

static bool out_exists(const dirs *d, const char *rel)
{
    char path[2048];
    snprintf(path, sizeof(path), "%s/%s", d->output, rel);
    return file_exists(path);
}

void test_nodes_image__save_image_names_and_ui(void)
{
    dirs d;
    dirs_init(&d);
    const float v[3] = { 0.1f, 0.5f, 0.9f };
    lm_value *img = image_value(2, 3, 4, 3, v, 3);
    char *ui = NULL;
    lm_error err;
    REQUIRE_OK(save(&d, img, "ComfyUI", &ui, NULL, &err), &err);
    CHECK_STR(ui, "{\"images\": [{\"filename\": \"ComfyUI_00001_.png\", \"subfolder\": \"\", "
                  "\"type\": \"output\"}, {\"filename\": \"ComfyUI_00002_.png\", "
                  "\"subfolder\": \"\", \"type\": \"output\"}]}");
    lm_free(ui);
    CHECK(out_exists(&d, "ComfyUI_00001_.png") && out_exists(&d, "ComfyUI_00002_.png"));
    REQUIRE_OK(save(&d, img, "ComfyUI", &ui, NULL, &err), &err);
    CHECK_CONTAINS(ui, "ComfyUI_00004_.png");
    lm_free(ui);
    /* The counter continues after the highest one, gaps included; other prefixes and
     * names that only start alike do not count. */
    char path[2048];
    snprintf(path, sizeof(path), "%s/ComfyUI_00041_.png", d.output);
    test_write_file(path, "x");
    snprintf(path, sizeof(path), "%s/ComfyUIx_00090_.png", d.output);
    test_write_file(path, "x");
    snprintf(path, sizeof(path), "%s/ComfyUI_temp_00080_.png", d.output);
    test_write_file(path, "x");
    REQUIRE_OK(save(&d, img, "ComfyUI", &ui, NULL, &err), &err);
    CHECK_CONTAINS(ui, "ComfyUI_00042_.png");
    CHECK_CONTAINS(ui, "ComfyUI_00043_.png");
    lm_free(ui);
    /* The written pixels: 0.5 → 128 (rounded). */
    lm_tensor *rgb = NULL;
    snprintf(path, sizeof(path), "%s/ComfyUI_00043_.png", d.output);
    REQUIRE_OK(lm_image_load(path, NULL, &rgb, NULL, &err), &err);
    CHECK_NEAR(((float *)lm_tensor_data(rgb))[1] * 255, 128, 1e-4);
    lm_tensor_free(rgb);
    lm_value_unref(img);
}

void test_nodes_image__save_image_subfolder_and_substitutions(void)
{
    dirs d;
    dirs_init(&d);
    const float v[1] = { 0.5f };
    lm_value *img = image_value(1, 3, 4, 3, v, 1);
    char *ui = NULL;
    lm_error err;
    REQUIRE_OK(save(&d, img, "sub/deeper/x_%width%x%height%_%year%-%month%_%date:yyyy-MM-dd%", &ui,
                    NULL, &err),
               &err);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char want[256];
    snprintf(want, sizeof(want), "x_4x3_%04d-%02d_%04d-%02d-%02d_00001_.png", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    CHECK_CONTAINS(ui, want);
    CHECK_CONTAINS(ui, "\"subfolder\": \"sub/deeper\"");
    char rel[512];
    snprintf(rel, sizeof(rel), "sub/deeper/%s", want);
    CHECK(out_exists(&d, rel));
    lm_free(ui);
    CHECK_INT(save(&d, img, "../escape", &ui, NULL, &err), LM_EINVAL);
    CHECK_STR(err.input, "filename_prefix");
    CHECK_INT(save(&d, img, "/abs/name", &ui, NULL, &err), LM_EINVAL);
    CHECK_INT(save(&d, img, "", &ui, NULL, &err), LM_EINVAL);
    CHECK(!file_exists("escape_00001_.png"));
    lm_value_unref(img);
}

void test_nodes_image__save_image_never_overwrites(void)
{
    /* With %batch_num% the counter scan (ComfyUI's rule, on the raw prefix) finds nothing,
     * so the second run starts at 1 again and must step over the taken names. */
    dirs d;
    dirs_init(&d);
    const float v1[1] = { 0.25f }, v2[1] = { 0.75f };
    lm_value *a = image_value(2, 1, 1, 3, v1, 1), *b = image_value(2, 1, 1, 3, v2, 1);
    char *ui = NULL;
    lm_error err;
    REQUIRE_OK(save(&d, a, "img%batch_num%", &ui, NULL, &err), &err);
    CHECK_CONTAINS(ui, "img0_00001_.png");
    CHECK_CONTAINS(ui, "img1_00002_.png");
    lm_free(ui);
    REQUIRE_OK(save(&d, b, "img%batch_num%", &ui, NULL, &err), &err);
    CHECK_CONTAINS(ui, "img0_00002_.png");
    CHECK_CONTAINS(ui, "img1_00003_.png");
    lm_free(ui);
    lm_tensor *rgb = NULL;
    char path[2048];
    snprintf(path, sizeof(path), "%s/img1_00002_.png", d.output);
    REQUIRE_OK(lm_image_load(path, NULL, &rgb, NULL, &err), &err);
    CHECK_NEAR(((float *)lm_tensor_data(rgb))[0] * 255, 64, 1e-4); /* first run's pixels */
    lm_tensor_free(rgb);
    lm_value_unref(a);
    lm_value_unref(b);
}

static const char *find_text(char **keys, char **texts, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return texts[i];
    return NULL;
}

void test_nodes_image__save_image_embeds_recipe(void)
{
    dirs d;
    dirs_init(&d);
    const float v[1] = { 0.5f };
    lm_value *in[2] = { image_value(1, 2, 2, 3, v, 1), lm_value_string("r") };
    /* The executor's context, as lm_exec_run fills it from a plan. */
    lm_ctx ctx = { .def = &lm_node_save_image,
                   .env = &d.env,
                   .node_id = "9",
                   .prompt_json = "{\"9\": {\"class_type\": \"SaveImage\"}}",
                   .params_json = "{\"seed\": 5}",
                   .extra_json = "{\"workflow\": {\"nodes\": [1, 2]}, \"bad\\nkey\": 1}" };
    lm_error err;
    lm_value *none[1];
    REQUIRE_OK(lm_node_save_image.run(&ctx, in, none, &err), &err);
    CHECK_CONTAINS(ctx.ui_json, "r_00001_.png");
    lm_free(ctx.ui_json);
    char path[2048], **keys, **texts;
    size_t n;
    snprintf(path, sizeof(path), "%s/r_00001_.png", d.output);
    REQUIRE_OK(lm_png_read_texts(path, 0, &keys, &texts, &n, &err), &err);
    CHECK_INT(n, 3);
    CHECK_STR(find_text(keys, texts, n, "prompt"), ctx.prompt_json);
    CHECK_STR(find_text(keys, texts, n, "workflow"), "{\"nodes\":[1,2]}");
    CHECK_STR(find_text(keys, texts, n, "loom_params"), "{\"seed\": 5}");
    lm_image_texts_free(keys, texts, n);
    /* Without a prompt (lm_exec_run_node), there is no prompt chunk. */
    char *ui;
    REQUIRE_OK(save(&d, in[0], "s", &ui, "{\"workflow\": {}}", &err), &err);
    lm_free(ui);
    snprintf(path, sizeof(path), "%s/s_00001_.png", d.output);
    REQUIRE_OK(lm_png_read_texts(path, 0, &keys, &texts, &n, &err), &err);
    CHECK_INT(n, 1);
    CHECK_STR(find_text(keys, texts, n, "workflow"), "{}");
    lm_image_texts_free(keys, texts, n);
    unref_all(in, 2);
}

void test_nodes_image__save_image_flags(void)
{
    CHECK(lm_node_save_image.flags & LM_NODE_OUTPUT);
    CHECK(lm_node_save_image.flags & LM_NODE_NOT_CACHEABLE);
    CHECK_INT(lm_node_save_image.n_outputs, 0);
    CHECK_STR(lm_node_save_image.inputs[1].s_def, "ComfyUI");
    CHECK(lm_node_preview_image.flags & LM_NODE_OUTPUT);
    CHECK_INT(lm_node_preview_image.n_inputs, 1);
}

static void check_preview_ui(const char *ui, const char *dir)
{
    const char *f = ui ? strstr(ui, "\"filename\": \"ComfyUI_temp_") : NULL;
    REQUIRE(f);
    const char *letters = f + strlen("\"filename\": \"ComfyUI_temp_");
    for (int i = 0; i < 5; i++)
        CHECK(letters[i] >= 'a' && letters[i] <= 'z');
    CHECK(strncmp(letters + 5, "_00001_.png\"", 12) == 0);
    CHECK_CONTAINS(ui, "\"type\": \"temp\"");
    char path[2048];
    snprintf(path, sizeof(path), "%s/ComfyUI_temp_%.5s_00001_.png", dir, letters);
    CHECK(file_exists(path));
}

void test_nodes_image__preview_image(void)
{
    dirs d;
    dirs_init(&d);
    const float v[1] = { 0.5f };
    lm_value *in[1] = { image_value(1, 2, 2, 3, v, 1) }, *none[1];
    char *ui = NULL;
    lm_error err;
    REQUIRE_OK(lm_exec_run_node(&lm_node_preview_image, &d.env, in, none, NULL, &ui, &err), &err);
    check_preview_ui(ui, d.temp);
    lm_free(ui);
    /* No temp_dir: <output>/../temp. */
    snprintf(d.output, sizeof(d.output), "%s/out2", test_tmpdir());
    snprintf(d.temp, sizeof(d.temp), "%s/temp", test_tmpdir());
    d.env.temp_dir = NULL;
    mkdir(d.output, 0755);
    REQUIRE_OK(lm_exec_run_node(&lm_node_preview_image, &d.env, in, none, NULL, &ui, &err), &err);
    char where[2048];
    snprintf(where, sizeof(where), "%s/../temp", d.output);
    check_preview_ui(ui, where);
    lm_free(ui);
    unref_all(in, 1);
}

/* ---- ImageScale ---- */

static lm_value *scale(lm_value *img, const char *method, int64_t w, int64_t h, const char *crop)
{
    lm_value *in[5] = { img, lm_value_string(method), lm_value_int(w), lm_value_int(h),
                        lm_value_string(crop) };
    lm_value *out[1] = { NULL };
    lm_error err;
    CHECK_OK(lm_exec_run_node(&lm_node_image_scale, NULL, in, out, NULL, NULL, &err), &err);
    unref_all(in + 1, 4);
    return out[0];
}

/* Scales a 1-row, 1-channel image and compares the row. */
static void check_row(const char *method, const float *src, int64_t n, const float *want, int64_t m,
                      double tol)
{
    lm_value *img = image_value(1, 1, n, 1, src, (size_t)n);
    lm_value *res = scale(img, method, m, 1, "disabled");
    REQUIRE(res);
    CHECK_INT(lm_value_tensor(res)->shape[2], m);
    for (int64_t i = 0; i < m; i++) {
        if (fabs((double)(px(res)[i] - want[i])) > tol)
            test__fail(__FILE__, __LINE__, "%s: sample %lld is %.7f, expected %.7f", method,
                       (long long)i, (double)px(res)[i], (double)want[i]);
    }
    lm_value_unref(res);
    lm_value_unref(img);
}

void test_nodes_image__scale_nearest_bilinear_area(void)
{
    const float four[4] = { 0, 1, 2, 3 }, two[2] = { 0, 1 }, three[3] = { 0, 3, 9 };
    const float near_half[2] = { 1, 3 }; /* floor((i + 0.5) * 2) = 1, 3 */
    check_row("nearest-exact", four, 4, near_half, 2, 0);
    const float near_up[4] = { 0, 0, 1, 1 };
    check_row("nearest-exact", two, 2, near_up, 4, 0);
    const float bil_up[4] = { 0, 0.25f, 0.75f, 1 }; /* src = max(0.5 i - 0.25, 0) */
    check_row("bilinear", two, 2, bil_up, 4, 1e-6);
    const float bil_down[2] = { 0.5f, 2.5f }; /* src = 2 i + 0.5 */
    check_row("bilinear", four, 4, bil_down, 2, 1e-6);
    const float area_half[2] = { 0.5f, 2.5f };
    check_row("area", four, 4, area_half, 2, 1e-6);
    const float area_3to2[2] = { 1.5f, 6 }; /* cells [0, 2) and [1, 3) */
    check_row("area", three, 3, area_3to2, 2, 1e-6);
}

void test_nodes_image__scale_bicubic_lanczos(void)
{
    /* torch bicubic (a = -0.75) of [0, 1] to 4 samples: the outer taps reach past the
     * border (clamped), giving the overshoot -0.10546875 = W(1.25). */
    const float two[2] = { 0, 1 };
    const float bic[4] = { -0.10546875f, 0.2265625f, 0.7734375f, 1.10546875f };
    check_row("bicubic", two, 2, bic, 4, 1e-6);
    const float same[3] = { 0.2f, 0.9f, 0.4f };
    check_row("bicubic", same, 3, same, 3, 1e-6); /* same size: identity */
    /* Lanczos-3 upscale of [0, 1] by 2: output 0 is centred at 0.25, the two taps at
     * distances 0.25 and 1.25 with normalised weights. */
    double l025 = 3 * sin(M_PI * 0.25) * sin(M_PI * 0.25 / 3) / (M_PI * M_PI * 0.0625);
    double l125 = 3 * sin(M_PI * 1.25) * sin(M_PI * 1.25 / 3) / (M_PI * M_PI * 1.5625);
    float first = (float)(l125 / (l025 + l125));
    const float lz[4] = { first, 1 - first, first, 1 - first };
    lm_value *img = image_value(1, 1, 2, 1, two, 2);
    lm_value *res = scale(img, "lanczos", 4, 1, "disabled");
    REQUIRE(res);
    CHECK_NEAR(px(res)[0], lz[0], 1e-6);
    CHECK_NEAR(px(res)[3], 1 - lz[0], 1e-6);
    lm_value_unref(res);
    lm_value_unref(img);
    const float flat[1] = { 0.3f };
    img = image_value(1, 7, 9, 3, flat, 1);
    res = scale(img, "lanczos", 4, 3, "disabled"); /* shrinking keeps a flat image flat */
    REQUIRE(res);
    CHECK_NEAR(px(res)[0], 0.3, 1e-6);
    CHECK_NEAR(px(res)[4 * 3 * 3 - 1], 0.3, 1e-6);
    lm_value_unref(res);
    lm_value_unref(img);
}

void test_nodes_image__scale_keep_aspect_and_crop(void)
{
    const float v[1] = { 0.5f };
    lm_value *img = image_value(1, 20, 30, 3, v, 1);
    lm_value *res = scale(img, "bilinear", 0, 3, "disabled");
    REQUIRE(res);
    CHECK_INT(lm_value_tensor(res)->shape[2], 4); /* round(4.5) = 4, half to even */
    CHECK_INT(lm_value_tensor(res)->shape[1], 3);
    lm_value_unref(res);
    res = scale(img, "bilinear", 15, 0, "disabled");
    CHECK_INT(lm_value_tensor(res)->shape[1], 10);
    lm_value_unref(res);
    res = scale(img, "area", 0, 0, "disabled");
    CHECK(res == img); /* both 0: unchanged */
    lm_value_unref(res);
    lm_value_unref(img);
    /* Center crop of a 4x2 row pair to 2x2: columns 1 and 2 remain. */
    const float cols[4] = { 0.1f, 0.2f, 0.3f, 0.4f };
    img = image_value(1, 2, 4, 1, cols, 4);
    res = scale(img, "nearest-exact", 2, 2, "center");
    REQUIRE(res);
    CHECK_NEAR(px(res)[0], 0.2, 1e-7);
    CHECK_NEAR(px(res)[1], 0.3, 1e-7);
    CHECK_NEAR(px(res)[2], 0.2, 1e-7);
    lm_value_unref(res);
    res = scale(img, "nearest-exact", 2, 2, "disabled");
    CHECK_NEAR(px(res)[0], 0.2, 1e-7); /* floor(0.5 * 2) = 1 */
    CHECK_NEAR(px(res)[1], 0.4, 1e-7);
    lm_value_unref(res);
    lm_value_unref(img);
}

/* ---- ImageInvert, ImageBlend ---- */

void test_nodes_image__invert(void)
{
    const float v[3] = { 0, 0.25f, 1 };
    lm_value *in[1] = { image_value(2, 1, 1, 3, v, 3) }, *out[1];
    lm_error err;
    REQUIRE_OK(lm_exec_run_node(&lm_node_image_invert, NULL, in, out, NULL, NULL, &err), &err);
    CHECK_NEAR(px(out[0])[0], 1, 0);
    CHECK_NEAR(px(out[0])[1], 0.75, 0);
    CHECK_NEAR(px(out[0])[5], 0, 0);
    unref_all(out, 1);
    unref_all(in, 1);
}

static float blend(float a, float b, const char *mode, double factor)
{
    const float va[1] = { a }, vb[1] = { b };
    lm_value *in[4] = { image_value(1, 1, 1, 3, va, 1), image_value(1, 1, 1, 3, vb, 1),
                        lm_value_float(factor), lm_value_string(mode) };
    lm_value *out[1] = { NULL };
    lm_error err;
    CHECK_OK(lm_exec_run_node(&lm_node_image_blend, NULL, in, out, NULL, NULL, &err), &err);
    float r = out[0] ? px(out[0])[2] : NAN;
    unref_all(out, 1);
    unref_all(in, 4);
    return r;
}

void test_nodes_image__blend_modes(void)
{
    CHECK_NEAR(blend(0.2f, 0.6f, "normal", 0.5), 0.4, 1e-6);
    CHECK_NEAR(blend(0.2f, 0.6f, "normal", 0.0), 0.2, 1e-6);
    CHECK_NEAR(blend(0.5f, 0.6f, "multiply", 1.0), 0.3, 1e-6);
    CHECK_NEAR(blend(0.5f, 0.6f, "screen", 1.0), 0.8, 1e-6);        /* 1 - 0.5 * 0.4 */
    CHECK_NEAR(blend(0.25f, 0.6f, "overlay", 1.0), 0.3, 1e-6);      /* 2ab, a <= 0.5 */
    CHECK_NEAR(blend(0.75f, 0.6f, "overlay", 1.0), 0.8, 1e-6);      /* 1 - 2 * .25 * .4 */
    CHECK_NEAR(blend(0.5f, 0.25f, "soft_light", 1.0), 0.375, 1e-6); /* a - .5 * a(1-a) */
    /* b > 0.5, a > 0.25: a + (2b - 1)(sqrt(a) - a) = 0.64 + 0.6 * 0.16 */
    CHECK_NEAR(blend(0.64f, 0.8f, "soft_light", 1.0), 0.736, 1e-6);
    /* b > 0.5, a <= 0.25: g(a) = ((16a - 12)a + 4)a = 0.5 for a = 0.25 → 0.25 + 0.5 * 0.25 */
    CHECK_NEAR(blend(0.25f, 0.75f, "soft_light", 1.0), 0.375, 1e-6);
    CHECK_NEAR(blend(0.7f, 0.2f, "difference", 1.0), 0.5, 1e-6);
    CHECK_NEAR(blend(0.2f, 0.7f, "difference", 1.0), 0.0, 1e-6); /* a - b, clamped */
    CHECK_NEAR(blend(0.2f, 0.7f, "difference", 0.5), 0.0, 1e-6); /* 0.1 - 0.25 → 0 */
}

void test_nodes_image__blend_resizes_and_broadcasts(void)
{
    const float a[1] = { 0.2f }, b[1] = { 0.6f };
    lm_value *in[4] = { image_value(3, 4, 6, 3, a, 1), image_value(1, 2, 2, 3, b, 1),
                        lm_value_float(1.0), lm_value_string("normal") };
    lm_value *out[1];
    lm_error err;
    REQUIRE_OK(lm_exec_run_node(&lm_node_image_blend, NULL, in, out, NULL, NULL, &err), &err);
    const lm_tensor *t = lm_value_tensor(out[0]);
    CHECK_INT(t->shape[0], 3);
    CHECK_INT(t->shape[1], 4);
    CHECK_INT(t->shape[2], 6);
    CHECK_NEAR(px(out[0])[0], 0.6, 1e-6);
    CHECK_NEAR(px(out[0])[3 * 4 * 6 * 3 - 1], 0.6, 1e-6);
    unref_all(out, 1);
    lm_value_unref(in[1]);
    in[1] = image_value(2, 4, 6, 3, b, 1); /* batch 3 against 2: refused */
    CHECK_INT(lm_exec_run_node(&lm_node_image_blend, NULL, in, out, NULL, NULL, &err), LM_EINVAL);
    CHECK_STR(err.input, "image2");
    unref_all(in, 4);
}
