/* tests/cli/test_precision.c — `loom run --precision f32|bf16` and LOOM_PRECISION, run as
 * processes: both precisions run the demo workflow (bf16 falls back to f32 on a CPU without
 * AVX512-BF16), a bad value exits 2 naming the choices. */
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>

/* Runs `[env] loom run <demo at 16x16 into ./o> <args>`. */
static int loom_demo(const char *env, const char *args, char **out)
{
    char line[4096];
    snprintf(line, sizeof(line), "%s '%s' run '%s/workflows/demo.yaml' --out o --set size=16 %s",
             env, test_loom_bin(), test_repo_root(), args);
    return test_run_capture(line, out);
}

void test_cli_precision__f32_and_bf16_run(void)
{
    char *out;
    CHECK_INT(loom_demo("", "--device cpu --precision bf16", &out), 0);
    CHECK_CONTAINS(out, "o/demo_00001_.png");
    free(out);
    CHECK_INT(loom_demo("", "--device cpu --precision f32", &out), 0);
    CHECK_CONTAINS(out, "o/demo_00002_.png");
    free(out);
    CHECK_INT(loom_demo("LOOM_PRECISION=bf16", "--device cpu --quiet", &out), 0);
    CHECK_CONTAINS(out, "o/demo_00003_.png");
    free(out);
    CHECK_INT(loom_demo("LOOM_PRECISION=bf16 LOOM_CPU_BASELINE=1", "--device cpu --quiet", &out),
              0);
    free(out);
}

void test_cli_precision__bad_value_exits_2(void)
{
    char *out;
    CHECK_INT(loom_demo("", "--precision fp8", &out), 2);
    CHECK_CONTAINS(out, "loom run: --precision: precision \"fp8\" is unknown; use f32 or bf16");
    free(out);
    CHECK_INT(loom_demo("LOOM_PRECISION=half", "", &out), 2);
    CHECK_CONTAINS(out, "LOOM_PRECISION: precision \"half\"");
    free(out);
    CHECK_INT(loom_demo("LOOM_PRECISION=half", "--precision f32 --quiet", &out), 0);
    free(out);
}
