/* tests/cli/test_config.c — the configuration file (daemon/config.h) through the real `loom`
 * program in the test's temp dir: where the file is found (--config, LOOM_CONFIG, the XDG
 * and HOME defaults, LOOM_CONFIG= for none), the precedence flag > environment > file,
 * relative paths taken from the file's directory, and each kind of error exiting 2 with the
 * file's line:col.
 *
 * Every call runs under `env` with the variables the file can set removed and HOME,
 * XDG_CONFIG_HOME and LOOM_CONFIG chosen by the test, so the user's own configuration and
 * environment never leak in. */
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define CLEAN_ENV                                                                                  \
    "env -u LOOM_MODELS -u LOOM_INPUT -u LOOM_OUTPUT -u LOOM_DEVICE -u LOOM_THREADS "              \
    "-u LOOM_PRECISION -u LOOM_TOKENIZERS -u LOOM_SKIP_T5 -u LOOM_DEVICE_RESERVE "                 \
    "-u LOOM_DENOISER_RESERVE -u LOOM_CONFIG -u XDG_CONFIG_HOME"

/* Runs `[cd dir &&] env … HOME=<tmp>/home <env> loom <args>`; dir NULL: the temp dir. */
static int loom_in(const char *dir, const char *env, const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s%s%s " CLEAN_ENV " HOME='%s/home' %s '%s' %s", dir ? "cd " : "",
             dir ? dir : "", dir ? " &&" : "", test_tmpdir(), env, test_loom_bin(), args);
    return test_run_capture(cmd, out);
}

static int loom(const char *env, const char *args, char **out)
{
    return loom_in(NULL, env, args, out);
}

/* `loom run <repo>/workflows/demo.yaml --set size=16 --quiet <extra>`. */
static int run_demo(const char *env, const char *extra, char **out)
{
    char args[2048];
    snprintf(args, sizeof(args), "run '%s/workflows/demo.yaml' --set size=16 --quiet %s",
             test_repo_root(), extra);
    return loom(env, args, out);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void make_dir(const char *path)
{
    char cmd[1024];
    char *out = NULL;
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", path);
    CHECK_INT(test_run_capture(cmd, &out), 0);
    free(out);
}

/* A workflow whose only node loads a checkpoint that does not exist: validating it with
 * --strict lists the checkpoints of the models directory in use. */
static const char checkpoint_flow[] = "loom: 1\n"
                                      "nodes:\n"
                                      "  ck:\n"
                                      "    type: CheckpointLoaderSimple\n"
                                      "    inputs: {ckpt_name: none.safetensors}\n";

void test_cli_config__output_and_models_next_to_the_file(void)
{
    make_dir("conf/m/checkpoints");
    REQUIRE(test_write_file("conf/cfg.yaml", "# test\noutput: out\nmodels: m\n"));
    REQUIRE(test_write_file("conf/m/checkpoints/mine.safetensors", ""));
    REQUIRE(test_write_file("ck.yaml", checkpoint_flow));
    char *out;
    CHECK_INT(run_demo("LOOM_CONFIG=conf/cfg.yaml", "", &out), 0);
    CHECK_CONTAINS(out, "/conf/out/demo_00001_.png");
    free(out);
    CHECK(file_exists("conf/out/demo_00001_.png"));
    CHECK(!file_exists("output"));
    CHECK_INT(loom("LOOM_CONFIG=conf/cfg.yaml", "validate ck.yaml --strict", &out), 3);
    CHECK_CONTAINS(out, "mine.safetensors");
    free(out);
}

void test_cli_config__environment_beats_the_file(void)
{
    REQUIRE(test_write_file("cfg.yaml", "output: out\n"));
    char *out;
    CHECK_INT(run_demo("LOOM_CONFIG=cfg.yaml LOOM_OUTPUT=other", "", &out), 0);
    free(out);
    CHECK(file_exists("other/demo_00001_.png"));
    CHECK(!file_exists("out"));
    /* set but empty still beats the file: the built-in default */
    CHECK_INT(run_demo("LOOM_CONFIG=cfg.yaml LOOM_OUTPUT=", "", &out), 0);
    free(out);
    CHECK(file_exists("output/demo_00001_.png"));
    CHECK(!file_exists("out"));
}

void test_cli_config__flag_beats_both(void)
{
    REQUIRE(test_write_file("cfg.yaml", "output: out\ndevice: cpu\n"));
    char *out;
    CHECK_INT(run_demo("LOOM_CONFIG=cfg.yaml LOOM_OUTPUT=other", "--out flagged", &out), 0);
    free(out);
    CHECK(file_exists("flagged/demo_00001_.png"));
    CHECK(!file_exists("other"));
    CHECK(!file_exists("out"));
}

void test_cli_config__config_option(void)
{
    make_dir("sub");
    REQUIRE(test_write_file("sub/c.yaml", "output: o\nthreads: 2\nprecision: f32\n"));
    char *out;
    /* anywhere among the arguments; it beats LOOM_CONFIG, which then need not exist */
    CHECK_INT(run_demo("LOOM_CONFIG=missing.yaml", "--config sub/c.yaml", &out), 0);
    free(out);
    CHECK(file_exists("sub/o/demo_00001_.png"));
    char args[2048];
    snprintf(args, sizeof(args), "run --config sub/c.yaml '%s/workflows/demo.yaml' --quiet",
             test_repo_root());
    CHECK_INT(loom("", args, &out), 0);
    free(out);
    CHECK(file_exists("sub/o/demo_00002_.png"));
    CHECK_INT(loom("", "nodes --config sub/c.yaml", &out), 0);
    CHECK_CONTAINS(out, "KSampler");
    free(out);
}

void test_cli_config__missing_named_file_is_an_error(void)
{
    char *out;
    CHECK_INT(run_demo("", "--config nope.yaml", &out), 2);
    CHECK_CONTAINS(out, "nope.yaml");
    CHECK_CONTAINS(out, "--config");
    free(out);
    CHECK_INT(run_demo("LOOM_CONFIG=gone.yaml", "", &out), 2);
    CHECK_CONTAINS(out, "gone.yaml");
    CHECK_CONTAINS(out, "LOOM_CONFIG");
    free(out);
    CHECK_INT(loom("", "nodes --config", &out), 2);
    CHECK_CONTAINS(out, "--config needs a FILE");
    free(out);
    CHECK(!file_exists("output"));
}

void test_cli_config__unknown_key_suggests(void)
{
    REQUIRE(test_write_file("cfg.yaml", "output: out\nmodles: m\n"));
    char *out;
    CHECK_INT(run_demo("LOOM_CONFIG=cfg.yaml", "", &out), 2);
    CHECK_CONTAINS(out, "cfg.yaml:2:1: unknown key \"modles\"");
    CHECK_CONTAINS(out, "did you mean \"models\"?");
    free(out);
    CHECK(!file_exists("out"));
    CHECK(!file_exists("output"));
    REQUIRE(test_write_file("cfg.yaml", "colour: red\n"));
    CHECK_INT(run_demo("LOOM_CONFIG=cfg.yaml", "", &out), 2);
    CHECK_CONTAINS(out, "cfg.yaml:1:1: unknown key \"colour\"");
    CHECK_CONTAINS(out, "the keys are models, input, output");
    free(out);
}

/* Each file exits 2 with `want` (its place and problem) in the output. */
static void check_bad_file(const char *text, const char *want)
{
    REQUIRE(test_write_file("bad.yaml", text));
    char *out;
    CHECK_INT(run_demo("", "--config bad.yaml", &out), 2);
    CHECK_CONTAINS(out, want);
    free(out);
}

void test_cli_config__wrong_kinds_exit_2(void)
{
    check_bad_file("output: [a, b]\n", "bad.yaml:1:9: output must be a single value, not a list");
    check_bad_file("models:\n  dir: m\n",
                   "bad.yaml:2:3: models must be a single value, not a mapping");
    check_bad_file("threads: four\n", "bad.yaml:1:10: threads \"four\" is not a thread count");
    check_bad_file("threads: 0\n", "bad.yaml:1:10: threads \"0\" is not a thread count");
    check_bad_file("threads: 2.5\n", "bad.yaml:1:10: threads \"2.5\" is not a thread count");
    check_bad_file("skip_t5: yes\n", "bad.yaml:1:10: skip_t5 \"yes\" is not a boolean");
    check_bad_file("precision: f16\n", "bad.yaml:1:12: precision \"f16\" is unknown");
    check_bad_file("device_reserve: 2XB\n", "bad.yaml:1:17: device_reserve \"2XB\" is not a size");
    check_bad_file("models:\n", "bad.yaml:1:8: models has no value");
    check_bad_file("input: a\ninput: b\n", "bad.yaml:2:1: key \"input\" appears twice");
    check_bad_file("- models\n", "bad.yaml:1:1: the configuration file must be a mapping");
    check_bad_file("output: [\n", "bad.yaml:2:1: YAML syntax error");
    check_bad_file("serve: 8188\n", "bad.yaml:1:8: serve must be a mapping");
    CHECK(!file_exists("output"));
}

void test_cli_config__unreadable_or_too_large(void)
{
    make_dir("dir.yaml");
    char *out;
    CHECK_INT(run_demo("", "--config dir.yaml", &out), 2);
    CHECK_CONTAINS(out, "dir.yaml: ");
    free(out);
    char *big = malloc(70000);
    REQUIRE(big);
    memset(big, '#', 69999);
    big[69999] = '\0';
    REQUIRE(test_write_file("big.yaml", big));
    free(big);
    CHECK_INT(run_demo("", "--config big.yaml", &out), 2);
    CHECK_CONTAINS(out, "big.yaml: file is larger than the limit of 65536 bytes");
    free(out);
}

void test_cli_config__bad_device_names_the_file(void)
{
    REQUIRE(test_write_file("cfg.yaml", "output: out\ndevice: gpu\n"));
    char *out;
    CHECK_INT(run_demo("LOOM_CONFIG=cfg.yaml", "", &out), 2);
    CHECK_CONTAINS(out, "cfg.yaml:2:9: device \"gpu\" is not a device name");
    CHECK_CONTAINS(out, "choose cpu, cuda");
    free(out);
    /* well formed, found unusable only when the device opens: still named by the file */
    REQUIRE(test_write_file("cfg.yaml", "device: cuda:99\n"));
    char args[2048];
    snprintf(args, sizeof(args), "validate '%s/workflows/demo.yaml'", test_repo_root());
    CHECK_INT(loom("LOOM_CONFIG=cfg.yaml", args, &out), 2);
    CHECK_CONTAINS(out, "cfg.yaml:1:9: device: ");
    free(out);
    /* the environment's value is named as such */
    CHECK_INT(loom("LOOM_CONFIG=cfg.yaml LOOM_DEVICE=cuda:98", args, &out), 2);
    CHECK_CONTAINS(out, "LOOM_DEVICE: ");
    free(out);
    CHECK(!file_exists("out"));
}

void test_cli_config__relative_paths_from_another_cwd(void)
{
    make_dir("conf");
    make_dir("elsewhere");
    make_dir("home");
    REQUIRE(test_write_file("conf/cfg.yaml", "output: ./pics/../pics\ninput: ~/in\n"));
    char args[2048], *out;
    snprintf(args, sizeof(args), "run '%s/workflows/demo.yaml' --set size=16 --quiet",
             test_repo_root());
    CHECK_INT(loom_in("elsewhere", "LOOM_CONFIG=../conf/cfg.yaml", args, &out), 0);
    free(out);
    CHECK(file_exists("conf/pics/demo_00001_.png"));
    CHECK(!file_exists("elsewhere/pics"));
    /* an absolute directory is used as written */
    char text[1200];
    snprintf(text, sizeof(text), "output: %s/abs\n", test_tmpdir());
    REQUIRE(test_write_file("conf/cfg.yaml", text));
    snprintf(args, sizeof(args), "run '%s/workflows/demo.yaml' --quiet --config ../conf/cfg.yaml",
             test_repo_root());
    CHECK_INT(loom_in("elsewhere", "", args, &out), 0);
    free(out);
    CHECK(file_exists("abs/demo_00001_.png"));
}

void test_cli_config__xdg_default_and_empty_loom_config(void)
{
    make_dir("xdg/loom");
    REQUIRE(test_write_file("xdg/loom/config.yaml", "output: xdgout\n"));
    char env[1200], *out;
    snprintf(env, sizeof(env), "XDG_CONFIG_HOME='%s/xdg'", test_tmpdir());
    CHECK_INT(run_demo(env, "", &out), 0);
    free(out);
    CHECK(file_exists("xdg/loom/xdgout/demo_00001_.png"));
    CHECK(!file_exists("output"));
    /* LOOM_CONFIG= (empty) reads no file at all */
    snprintf(env, sizeof(env), "XDG_CONFIG_HOME='%s/xdg' LOOM_CONFIG=", test_tmpdir());
    CHECK_INT(run_demo(env, "", &out), 0);
    free(out);
    CHECK(file_exists("output/demo_00001_.png"));
    CHECK(!file_exists("xdg/loom/xdgout/demo_00002_.png"));
    /* a bad default file is an error too: it is present, so it is the user's */
    REQUIRE(test_write_file("xdg/loom/config.yaml", "ouput: x\n"));
    snprintf(env, sizeof(env), "XDG_CONFIG_HOME='%s/xdg'", test_tmpdir());
    CHECK_INT(run_demo(env, "", &out), 2);
    CHECK_CONTAINS(out, "xdg/loom/config.yaml:1:1: unknown key \"ouput\"");
    free(out);
}

void test_cli_config__home_default_only_when_present(void)
{
    char *out;
    CHECK_INT(run_demo("", "", &out), 0); /* no file anywhere: the built-in defaults */
    free(out);
    CHECK(file_exists("output/demo_00001_.png"));
    make_dir("home/.config/loom");
    REQUIRE(test_write_file("home/.config/loom/config.yaml", "output: homeout\n"));
    CHECK_INT(run_demo("", "", &out), 0);
    free(out);
    CHECK(file_exists("home/.config/loom/homeout/demo_00001_.png"));
}

void test_cli_config__serve_section_is_reserved(void)
{
    REQUIRE(test_write_file("cfg.yaml", "serve:\n  port: 8188\n  anything: [1, 2]\n"
                                        "output: o\nskip_t5: true\ndevice_reserve: 1.5G\n"));
    char *out;
    CHECK_INT(run_demo("LOOM_CONFIG=cfg.yaml", "", &out), 0);
    free(out);
    CHECK(file_exists("o/demo_00001_.png"));
}
