/* daemon/cmd_validate.c — `loom validate WORKFLOW [--strict] [--set k=v]... [--json]`:
 * reports every problem of a workflow at once without running anything. --device and
 * --threads are checked as `loom run` would apply them, so a bad device shows here too. */
#include "core/base/alloc.h"
#include "daemon/cli.h"

#include <string.h>

#define MAX_SETS 256

typedef struct {
    const char *workflow;
    lm_override sets[MAX_SETS];
    size_t n_sets;
    const char *device, *threads; /* NULL: LOOM_DEVICE / LOOM_THREADS or the defaults */
    bool strict, json;
} validate_args;

static const char usage[] = "usage: loom validate WORKFLOW [--strict] [--set name=value]... "
                            "[--json] [--device NAME] [--threads N] [--models DIR] "
                            "[--config FILE]\n";

static int parse_args(lm_app *app, int argc, char **argv, validate_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--strict") == 0) {
            a->strict = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
        } else if (strcmp(argv[i], "--set") == 0 && has_value && a->n_sets < MAX_SETS) {
            if (!lm_cli_parse_set(argv[++i], &a->sets[a->n_sets++])) {
                fprintf(stderr, "loom validate: --set needs name=value, got \"%s\"\n", argv[i]);
                return LM_EXIT_USAGE;
            }
        } else if (strcmp(argv[i], "--device") == 0 && has_value) {
            a->device = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && has_value) {
            a->threads = argv[++i];
        } else if (strcmp(argv[i], "--models") == 0 && has_value) {
            strncpy(app->models_dir, argv[++i], sizeof(app->models_dir) - 1);
            lm_app_sync_env(app);
        } else if (argv[i][0] != '-' && !a->workflow) {
            a->workflow = argv[i];
        } else {
            fprintf(stderr, "loom validate: unexpected argument \"%s\"\n%s", argv[i], usage);
            return LM_EXIT_USAGE;
        }
    }
    if (!a->workflow) {
        fputs(usage, stderr);
        return LM_EXIT_USAGE;
    }
    return LM_EXIT_OK;
}

int lm_cmd_validate(lm_app *app, int argc, char **argv)
{
    validate_args a;
    int code = parse_args(app, argc, argv, &a);
    if (code == LM_EXIT_OK)
        code = lm_app_set_compute(app, "validate", a.device, a.threads);
    if (code != LM_EXIT_OK)
        return code;
    lm_plan *plan = NULL;
    code = lm_cli_load_plan(app, a.workflow, a.sets, a.n_sets, a.strict, a.json, &plan);
    if (code == LM_EXIT_OK) {
        if (a.json)
            printf("{\"valid\": true, \"nodes\": %zu, \"prompt\": %s}\n", plan->n_nodes,
                   plan->prompt_json ? plan->prompt_json : "{}");
        else
            printf("%s: valid; %zu node%s would run.\n", a.workflow, plan->n_nodes,
                   plan->n_nodes == 1 ? "" : "s");
    }
    lm_plan_free(plan);
    return code;
}
