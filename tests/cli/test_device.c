/* tests/cli/test_device.c — `loom run` / `loom validate` with --device, --threads and
 * LOOM_DEVICE, run as processes: the CPU and auto work everywhere, bad names and counts exit
 * 2 with a message naming the choices, and the summary reports the backend's peak memory. */
#include "core/tensor/cuda/cuda.h"
#include "tests/cli/cli_fixture.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>

void test_cli_device__cpu_and_threads_run(void)
{
    CLI_EXPECT_DEMO("", "run", "--device cpu", 0, "o/demo_00001_.png", "; peak memory ");
    CLI_EXPECT_DEMO("", "run", "--threads 1", 0, "o/demo_00002_.png");
    CLI_EXPECT_DEMO("LOOM_DEVICE=cpu LOOM_THREADS=2", "run", "--quiet", 0, "o/demo_00003_.png");
    CLI_EXPECT_DEMO("", "validate", "--device cpu --threads 3", 0, "valid; 5 nodes would run");
}

void test_cli_device__auto_is_the_default(void)
{
    CLI_EXPECT_DEMO("", "run", "--device auto --quiet", 0, "o/demo_00001_.png");
    CLI_EXPECT_DEMO("LOOM_DEVICE=", "run", "--quiet", 0, NULL);
}

void test_cli_device__peak_bytes_in_json(void)
{
    char *out;
    CHECK_INT(cli_loom_demo("", "run", "--device cpu --json", &out), 0);
    /* three 16x16 RGB f32 images live at once at least: 3 * 3072 bytes */
    CHECK_CONTAINS(out, "\"event\": \"execution_success\"");
    const char *peak = out ? strstr(out, "\"peak_bytes\": ") : NULL;
    REQUIRE(peak != NULL);
    CHECK(atoll(peak + strlen("\"peak_bytes\": ")) >= 3 * 3072);
    free(out);
}

void test_cli_device__unknown_device_exits_2(void)
{
    CLI_EXPECT_DEMO("", "run", "--device gpu", 2, "unknown device \"gpu\"", "cpu, cuda, cuda:N");
    CLI_EXPECT_DEMO("", "validate", "--device gpu", 2, "loom validate: unknown device \"gpu\"");
    CLI_EXPECT_DEMO("LOOM_DEVICE=tpu", "run", "", 2, "LOOM_DEVICE: unknown device \"tpu\"");
    CLI_EXPECT_DEMO("LOOM_DEVICE=tpu", "run", "--device cpu --quiet", 0, NULL);
}

void test_cli_device__bad_thread_count_exits_2(void)
{
    static const char *const bad[] = { "--threads 0", "--threads -3", "--threads many",
                                       "--threads 100000" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CLI_EXPECT_DEMO("", "run", bad[i], 2, "is not a thread count");
    CLI_EXPECT_DEMO("LOOM_THREADS=abc", "run", "", 2, "LOOM_THREADS \"abc\"");
}

void test_cli_device__cuda_without_gpu_says_what_to_do(void)
{
    lm_backend *gpu = NULL;
    lm_error err;
    if (lm_cuda_backend_new(&gpu, 0, &err) == LM_OK) {
        test_note("a CUDA device is present; the no-GPU message cannot be checked here");
        return;
    }
    CLI_EXPECT_DEMO("", "run", "--device cuda", 2, err.msg, "--device cpu");
}
