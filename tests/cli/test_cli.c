/* tests/cli/test_cli.c — the `loom` program end to end, run as a process in a temp dir:
 * shipped workflows into a temporary output directory (pixels and embedded recipe checked),
 * re-running a PNG, validation errors and exit codes, batches with resume, sweeps, JSON
 * events. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/image.h"
#include "core/tensor/tensor.h"
#include "tests/cli/cli_fixture.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The demo's colour at one channel, computed here from the workflow's defaults. */
static double demo_expected(int shift)
{
    double a = ((0x2060c0 >> shift) & 0xff) / 255.0, b = ((0xf0a020 >> shift) & 0xff) / 255.0;
    double screen = 1 - (1 - a) * (1 - b), f = 0.35;
    return 1 - (a * (1 - f) + screen * f);
}

void test_cli_run__version_and_help(void)
{
    char *out;
    CHECK_INT(cli_loom("--version", &out), 0);
    CHECK_CONTAINS(out, "loom 0.");
    free(out);
    CHECK_INT(cli_loom("--help", &out), 0);
    CHECK_CONTAINS(out, "exit codes");
    free(out);
    CHECK_INT(cli_loom("frobnicate", &out), 2);
    CHECK_CONTAINS(out, "unknown command");
    free(out);
}

void test_cli_run__demo_pixels_and_recipe(void)
{
    char args[2048], *out;
    snprintf(args, sizeof(args), "run '%s/workflows/demo.yaml' --out out --set size=32",
             test_repo_root());
    int rc = cli_loom(args, &out);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "out/demo_00001_.png");
    free(out);
    lm_tensor *rgb = NULL;
    lm_error err;
    REQUIRE_OK(lm_image_load("out/demo_00001_.png", NULL, &rgb, NULL, &err), &err);
    CHECK_INT(rgb->shape[1], 32);
    CHECK_INT(rgb->shape[2], 32);
    const float *px = lm_tensor_data(rgb);
    CHECK_NEAR(px[0], demo_expected(16), 1.0 / 255 + 1e-6);
    CHECK_NEAR(px[1], demo_expected(8), 1.0 / 255 + 1e-6);
    CHECK_NEAR(px[2], demo_expected(0), 1.0 / 255 + 1e-6);
    lm_tensor_free(rgb);

    char **keys, **texts;
    size_t n = 0;
    REQUIRE_OK(lm_png_read_texts("out/demo_00001_.png", 1 << 20, &keys, &texts, &n, &err), &err);
    bool prompt = false, params = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i], "prompt") == 0) {
            prompt = true;
            CHECK_CONTAINS(texts[i], "\"ImageBlend\"");
            CHECK_CONTAINS(texts[i], "\"class_type\"");
        }
        if (strcmp(keys[i], "loom_params") == 0) {
            params = true;
            CHECK_CONTAINS(texts[i], "\"size\"");
        }
    }
    CHECK(prompt);
    CHECK(params);
    lm_image_texts_free(keys, texts, n);
}

void test_cli_run__png_reruns_to_identical_pixels(void)
{
    char args[2048], *out;
    snprintf(args, sizeof(args), "run '%s/workflows/demo.yaml' --out a --set size=24 --quiet",
             test_repo_root());
    REQUIRE(cli_loom(args, &out) == 0);
    free(out);
    CHECK_INT(cli_loom("run a/demo_00001_.png --out b --quiet", &out), 0);
    free(out);
    lm_tensor *x = NULL, *y = NULL;
    lm_error err;
    REQUIRE_OK(lm_image_load("a/demo_00001_.png", NULL, &x, NULL, &err), &err);
    REQUIRE_OK(lm_image_load("b/demo_00001_.png", NULL, &y, NULL, &err), &err);
    CHECK(lm_tensor_nbytes(x) == lm_tensor_nbytes(y));
    CHECK(memcmp(lm_tensor_data(x), lm_tensor_data(y), lm_tensor_nbytes(x)) == 0);
    lm_tensor_free(x);
    lm_tensor_free(y);
}

void test_cli_run__counter_never_overwrites(void)
{
    char args[2048], *out;
    snprintf(args, sizeof(args), "run '%s/workflows/demo.yaml' --out o --set size=16 --quiet",
             test_repo_root());
    CHECK_INT(cli_loom(args, &out), 0);
    free(out);
    CHECK_INT(cli_loom(args, &out), 0);
    free(out);
    CHECK(file_exists("o/demo_00001_.png"));
    CHECK(file_exists("o/demo_00002_.png"));
}

void test_cli_validate__errors_with_places_and_exit_code(void)
{
    test_write_file("bad.yaml", "nodes:\n"
                                "  a:\n"
                                "    type: EmptyImag\n"
                                "  b:\n"
                                "    type: ImageInvert\n"
                                "    inputs:\n"
                                "      image: {link: nowhere.IMAGE}\n"
                                "  s:\n"
                                "    type: SaveImage\n"
                                "    inputs:\n"
                                "      images: {link: b.IMAGE}\n"
                                "      filename_prefix: x\n"
                                "  s2:\n"
                                "    type: SaveImage\n"
                                "    inputs:\n"
                                "      images: {link: a.IMAGE}\n");
    char *out;
    CHECK_INT(cli_loom("validate bad.yaml", &out), 3);
    CHECK_CONTAINS(out, "bad.yaml:2:3: node \"a\" (EmptyImag)");
    CHECK_CONTAINS(out, "bad.yaml:7:14: node \"b\" (ImageInvert) input \"image\"");
    CHECK_CONTAINS(out, "EmptyImage");
    CHECK_CONTAINS(out, "nowhere");
    free(out);
    CHECK_INT(cli_loom("run bad.yaml --out o", &out), 3);
    CHECK_CONTAINS(out, "nothing was run");
    free(out);
    CHECK(!file_exists("o"));
}

void test_cli_validate__unknown_set_and_missing_file(void)
{
    char args[2048], *out;
    snprintf(args, sizeof(args), "validate '%s/workflows/demo.yaml' --set colour=1",
             test_repo_root());
    CHECK_INT(cli_loom(args, &out), 3);
    CHECK_CONTAINS(out, "colour");
    free(out);
    CHECK_INT(cli_loom("run does-not-exist.yaml", &out), 4);
    CHECK_CONTAINS(out, "does-not-exist.yaml");
    free(out);
    CHECK_INT(cli_loom("run", &out), 2);
    free(out);
}

void test_cli_run__comfy_workflow_with_unknown_unused_node(void)
{
    test_write_file("comfy.json",
                    "{\"1\": {\"class_type\": \"EmptyImage\", \"inputs\": {\"width\": 8, "
                    "\"height\": 8, \"batch_size\": 2, \"color\": 16711680}},\n"
                    " \"2\": {\"class_type\": \"PrimitiveString\", \"inputs\": {\"value\": "
                    "\"red\"}},\n"
                    " \"3\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"1\", 0], "
                    "\"filename_prefix\": [\"2\", 0]}},\n"
                    " \"9\": {\"class_type\": \"SomeCustomNodeLoomLacks\", \"inputs\": {}}}\n");
    char *out;
    CHECK_INT(cli_loom("run comfy.json --out o --quiet", &out), 0);
    free(out);
    CHECK(file_exists("o/red_00001_.png"));
    CHECK(file_exists("o/red_00002_.png"));
    CHECK_INT(cli_loom("validate comfy.json --strict", &out), 3);
    CHECK_CONTAINS(out, "SomeCustomNodeLoomLacks");
    free(out);
}

void test_cli_run__batch_survives_bad_line_and_resumes(void)
{
    test_write_file("jobs.jsonl", "{\"size\": 16, \"prefix\": \"a\"}\n"
                                  "{\"size\": \"big\", \"prefix\": \"b\"}\n"
                                  "not json\n"
                                  "# a comment\n"
                                  "{\"size\": 20, \"prefix\": \"c\"}\n");
    char args[2048], *out;
    snprintf(args, sizeof(args), "run '%s/workflows/demo.yaml' --batch jobs.jsonl --out o",
             test_repo_root());
    CHECK_INT(cli_loom(args, &out), 1);
    CHECK_CONTAINS(out, "2 ok, 2 failed, 0 already done");
    free(out);
    CHECK(file_exists("o/a_00001_.png"));
    CHECK(file_exists("o/c_00001_.png"));
    char *journal = NULL;
    size_t len = 0;
    lm_error err;
    REQUIRE_OK(lm_file_read("o/jobs.results.jsonl", 1 << 20, &journal, &len, &err), &err);
    CHECK_CONTAINS(journal, "\"line\":1,\"status\":\"ok\"");
    CHECK_CONTAINS(journal, "\"line\":2,\"status\":\"error\"");
    CHECK_CONTAINS(journal, "\"line\":5,\"status\":\"ok\"");
    lm_free(journal);
    /* A second run skips what finished and retries only the failures. */
    CHECK_INT(cli_loom(args, &out), 1);
    CHECK_CONTAINS(out, "0 ok, 2 failed, 2 already done");
    free(out);
    CHECK(!file_exists("o/a_00002_.png"));
}

void test_cli_run__sweep_makes_every_combination(void)
{
    char args[2048], *out;
    snprintf(args, sizeof(args),
             "run '%s/workflows/demo.yaml' --out o --sweep size=16,24 --sweep prefix=p,q --quiet",
             test_repo_root());
    CHECK_INT(cli_loom(args, &out), 0);
    CHECK_CONTAINS(out, "4 jobs, 4 ok, 0 failed");
    free(out);
    lm_tensor *img = NULL;
    lm_error err;
    REQUIRE_OK(lm_image_load("o/q_00002_.png", NULL, &img, NULL, &err), &err);
    CHECK_INT(img->shape[1], 24);
    lm_tensor_free(img);
    CHECK(file_exists("o/p_00001_.png"));
    CHECK(file_exists("o/p_00002_.png"));
    CHECK(file_exists("o/q_00001_.png"));
}

void test_cli_run__json_events(void)
{
    char args[2048], *out;
    snprintf(args, sizeof(args), "run '%s/workflows/demo.yaml' --out o --set size=16 --json",
             test_repo_root());
    CHECK_INT(cli_loom(args, &out), 0);
    CHECK_CONTAINS(out, "{\"event\": \"execution_start\"");
    CHECK_CONTAINS(out, "{\"event\": \"executing\", \"node\": \"save\"");
    CHECK_CONTAINS(out, "\"event\": \"execution_success\"");
    CHECK_CONTAINS(out, "demo_00001_.png");
    free(out);
}
