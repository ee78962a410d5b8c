/* daemon/cli.h — what the `loom` subcommands share: exit codes, the program's set-up
 * (registry, directories), loading + validating a workflow with its errors printed, and the
 * event printer for progress.
 *
 * Exit codes (docs/cli.md):
 *   0   success
 *   1   a node failed while running (or, in a batch, at least one item failed)
 *   2   bad command line or configuration file (daemon/config.h)
 *   3   the workflow is invalid (syntax or validation); nothing ran
 *   4   a file could not be read or written (workflow, batch file, output directory)
 *   130 interrupted (Ctrl-C) */
#ifndef LM_DAEMON_CLI_H
#define LM_DAEMON_CLI_H

#include "core/exec.h"
#include "core/registry.h"
#include "core/validate.h"

#include <stdbool.h>
#include <stdio.h>

enum {
    LM_EXIT_OK = 0,
    LM_EXIT_FAILED = 1,
    LM_EXIT_USAGE = 2,
    LM_EXIT_INVALID = 3,
    LM_EXIT_IO = 4,
    LM_EXIT_INTERRUPTED = 130,
};

/* The program: one registry, the directories every command resolves names in, and the
 * backend models compute on (borrowed: backends live until exit). */
typedef struct {
    lm_registry *registry;
    lm_env env;
    char models_dir[4096], input_dir[4096], output_dir[4096], temp_dir[4096];
    lm_backend *backend; /* set by lm_app_set_compute(); NULL (= the CPU) until then */
} lm_app;

/* The most CPU threads --threads, LOOM_THREADS or the configuration file may ask for (the
 * CPU kernels keep per-thread scratch for this many: LM_CPU_MAX_THREADS in
 * core/tensor/cpu/cpu.h, a backend-internal header). */
#define LM_APP_MAX_THREADS 256

/* Registers the built-in nodes and sets directories from the environment (LOOM_MODELS,
 * LOOM_INPUT, LOOM_OUTPUT; the configuration file, daemon/config.h, exports them too when
 * the environment does not set them) and defaults (./models, ./input, ./output, and
 * <output>/../temp, which is ./temp by default). Prints the error and returns an exit code
 * on failure. */
int lm_app_init(lm_app *app);
void lm_app_fini(lm_app *app);
/* Re-derives env pointers after a directory changed (e.g. --out). */
void lm_app_sync_env(lm_app *app);
/* Applies --device and --threads before anything computes. device NULL: $LOOM_DEVICE, else
 * "auto" (CUDA when it opens, else the CPU); threads NULL: $LOOM_THREADS, else the cores.
 * Sizes the default thread pool and sets app->backend (and env.backend). Prints the error
 * as "loom <cmd>: ..." and returns LM_EXIT_USAGE on a bad value or an unusable device; a
 * value that came from the configuration file is named by its file:line:col and key. */
int lm_app_set_compute(lm_app *app, const char *cmd, const char *device, const char *threads);
/* Applies --precision (f32 | bf16; NULL: $LOOM_PRECISION, else f32) to the CPU's products
 * (core/tensor/precision.h). Prints "loom <cmd>: ..." and returns LM_EXIT_USAGE on a bad
 * value. */
int lm_app_set_precision(const char *cmd, const char *precision);

/* Loads and validates a workflow; prints every problem (text lines, or ComfyUI's error JSON
 * with as_json) to stderr/stdout. Returns LM_EXIT_OK with *out set, or an exit code. */
int lm_cli_load_plan(lm_app *app, const char *path, const lm_override *overrides,
                     size_t n_overrides, bool strict, bool as_json, lm_plan **out);

/* Prints one error as "loom: <formatted>" to stderr. */
void lm_cli_print_error(const lm_error *err);

/* Progress printing: a bar on a terminal, plain lines otherwise, JSON lines with json. */
typedef struct {
    FILE *out;
    bool tty, json, quiet;
    size_t n_nodes, n_done;
    const char *label;   /* batch item label, may be NULL */
    int bar_width;       /* columns used by the last bar (to clear it) */
    lm_backend *backend; /* its peak memory ends the summary; NULL: not shown */
} lm_cli_progress;

void lm_cli_progress_init(lm_cli_progress *p, bool json, bool quiet);
void lm_cli_progress_event(const lm_event *ev, void *user); /* an lm_event_fn */

/* Parses "name=value" into an override pointing into arg (modified in place). */
bool lm_cli_parse_set(char *arg, lm_override *out);

int lm_cmd_run(lm_app *app, int argc, char **argv);
int lm_cmd_validate(lm_app *app, int argc, char **argv);
/* `loom models`: lists the models directory (daemon/cmd_models.c). */
int lm_cmd_models(lm_app *app, int argc, char **argv);

#endif
