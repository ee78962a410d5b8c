/* tests/cli/test_precision.c — `loom run --precision f32|bf16` and LOOM_PRECISION, run as
 * processes: both precisions run the demo workflow (bf16 falls back to f32 on a CPU without
 * AVX512-BF16), a bad value exits 2 naming the choices. */
#include "tests/cli/cli_fixture.h"
#include "tests/test.h"

void test_cli_precision__f32_and_bf16_run(void)
{
    CLI_EXPECT_DEMO("", "run", "--device cpu --precision bf16", 0, "o/demo_00001_.png");
    CLI_EXPECT_DEMO("", "run", "--device cpu --precision f32", 0, "o/demo_00002_.png");
    CLI_EXPECT_DEMO("LOOM_PRECISION=bf16", "run", "--device cpu --quiet", 0, "o/demo_00003_.png");
    CLI_EXPECT_DEMO("LOOM_PRECISION=bf16 LOOM_CPU_BASELINE=1", "run", "--device cpu --quiet", 0,
                    NULL);
}

void test_cli_precision__bad_value_exits_2(void)
{
    CLI_EXPECT_DEMO("", "run", "--precision fp8", 2,
                    "loom run: --precision: precision \"fp8\" is unknown; use f32 or bf16");
    CLI_EXPECT_DEMO("LOOM_PRECISION=half", "run", "", 2, "LOOM_PRECISION: precision \"half\"");
    CLI_EXPECT_DEMO("LOOM_PRECISION=half", "run", "--precision f32 --quiet", 0, NULL);
}
