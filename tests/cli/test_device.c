/* tests/cli/test_device.c — `loom run` / `loom validate` with --device, --threads and
 * LOOM_DEVICE, run as processes: the CPU and auto work everywhere, bad names and counts exit
 * 2 with a message naming the choices, and the summary reports the backend's peak memory. */
#include "core/tensor/cuda/cuda.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>

/* Runs `[env] loom <args>` on the demo workflow at 16x16 into ./o. */
static int loom_demo(const char *env, const char *cmd, const char *args, char **out)
{
    char line[4096];
    snprintf(line, sizeof(line), "%s '%s' %s '%s/workflows/demo.yaml' %s %s", env, test_loom_bin(),
             cmd, test_repo_root(), cmd[0] == 'r' ? "--out o --set size=16" : "", args);
    return test_run_capture(line, out);
}

void test_cli_device__cpu_and_threads_run(void)
{
    char *out;
    CHECK_INT(loom_demo("", "run", "--device cpu", &out), 0);
    CHECK_CONTAINS(out, "o/demo_00001_.png");
    CHECK_CONTAINS(out, "; peak memory ");
    free(out);
    CHECK_INT(loom_demo("", "run", "--threads 1", &out), 0);
    CHECK_CONTAINS(out, "o/demo_00002_.png");
    free(out);
    CHECK_INT(loom_demo("LOOM_DEVICE=cpu LOOM_THREADS=2", "run", "--quiet", &out), 0);
    CHECK_CONTAINS(out, "o/demo_00003_.png");
    free(out);
    CHECK_INT(loom_demo("", "validate", "--device cpu --threads 3", &out), 0);
    CHECK_CONTAINS(out, "valid; 5 nodes would run");
    free(out);
}

void test_cli_device__auto_is_the_default(void)
{
    char *out;
    CHECK_INT(loom_demo("", "run", "--device auto --quiet", &out), 0);
    CHECK_CONTAINS(out, "o/demo_00001_.png");
    free(out);
    CHECK_INT(loom_demo("LOOM_DEVICE=", "run", "--quiet", &out), 0);
    free(out);
}

void test_cli_device__peak_bytes_in_json(void)
{
    char *out;
    CHECK_INT(loom_demo("", "run", "--device cpu --json", &out), 0);
    /* three 16x16 RGB f32 images live at once at least: 3 * 3072 bytes */
    CHECK_CONTAINS(out, "\"event\": \"execution_success\"");
    const char *peak = out ? strstr(out, "\"peak_bytes\": ") : NULL;
    REQUIRE(peak != NULL);
    CHECK(atoll(peak + strlen("\"peak_bytes\": ")) >= 3 * 3072);
    free(out);
}

void test_cli_device__unknown_device_exits_2(void)
{
    char *out;
    CHECK_INT(loom_demo("", "run", "--device gpu", &out), 2);
    CHECK_CONTAINS(out, "unknown device \"gpu\"");
    CHECK_CONTAINS(out, "cpu, cuda, cuda:N");
    free(out);
    CHECK_INT(loom_demo("", "validate", "--device gpu", &out), 2);
    CHECK_CONTAINS(out, "loom validate: unknown device \"gpu\"");
    free(out);
    CHECK_INT(loom_demo("LOOM_DEVICE=tpu", "run", "", &out), 2);
    CHECK_CONTAINS(out, "LOOM_DEVICE: unknown device \"tpu\"");
    free(out);
    CHECK_INT(loom_demo("LOOM_DEVICE=tpu", "run", "--device cpu --quiet", &out), 0);
    free(out);
}

void test_cli_device__bad_thread_count_exits_2(void)
{
    static const char *const bad[] = { "--threads 0", "--threads -3", "--threads many",
                                       "--threads 100000" };
    char *out;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(loom_demo("", "run", bad[i], &out), 2);
        CHECK_CONTAINS(out, "is not a thread count");
        free(out);
    }
    CHECK_INT(loom_demo("LOOM_THREADS=abc", "run", "", &out), 2);
    CHECK_CONTAINS(out, "LOOM_THREADS \"abc\"");
    free(out);
}

void test_cli_device__cuda_without_gpu_says_what_to_do(void)
{
    lm_backend *gpu = NULL;
    lm_error err;
    if (lm_cuda_backend_new(&gpu, 0, &err) == LM_OK) {
        test_note("a CUDA device is present; the no-GPU message cannot be checked here");
        return;
    }
    char *out;
    CHECK_INT(loom_demo("", "run", "--device cuda", &out), 2);
    CHECK_CONTAINS(out, err.msg);
    CHECK_CONTAINS(out, "--device cpu");
    free(out);
}
