/* daemon/main.c — the `loom` program: subcommand dispatch, --help and --version.
 *
 * Before the commands that set up an lm_app (run, validate, nodes, models) the configuration
 * file is loaded (daemon/config.h): `--config FILE` anywhere among the command's arguments
 * is taken out of argv here, so no command parses it, and the file's values are exported
 * into the environment before lm_app_init or anything else reads it. `tensors` and `golden`
 * read no configuration. */
#include "core/base/lm.h"
#include "daemon/cli.h"
#include "daemon/cmd_golden.h"
#include "daemon/cmd_nodes.h"
#include "daemon/cmd_tensors.h"
#include "daemon/config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char help[] =
    "loom " LM_VERSION " — a headless node-graph engine for Stable Diffusion 3 workflows\n"
    "\n"
    "usage: loom COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  run WORKFLOW       run a workflow (Loom YAML/JSON, ComfyUI API JSON, or a PNG with\n"
    "                     its recipe); --set name=value, --batch FILE.jsonl, --sweep\n"
    "                     name=a,b,c, --out DIR, --input DIR, --models DIR, --json, --quiet,\n"
    "                     --device cpu|cuda|cuda:N|auto (default auto), --threads N\n"
    "  validate WORKFLOW  check a workflow without running it; --strict, --set, --json\n"
    "  nodes [NAME]       list the node types, or describe one; --json, --markdown\n"
    "  models [FOLDER]    list the models directory: each model's size and what it holds;\n"
    "                     --models DIR, --json\n"
    "  tensors FILE       list a safetensors checkpoint's metadata and tensors; --json\n"
    "  golden DIR         check Loom against a folder of golden files; --tokenizers DIR\n"
    "\n"
    "options:\n"
    "  -h, --help         this help\n"
    "  -V, --version      the version\n"
    "  --config FILE      for run, validate, nodes and models (anywhere after the command): a\n"
    "                     YAML file of defaults (models, output, device, threads, ...);\n"
    "                     default $LOOM_CONFIG, else loom/config.yaml in $XDG_CONFIG_HOME or\n"
    "                     ~/.config if it is there; empty: none. Flags beat the environment,\n"
    "                     which beats the file\n"
    "\n"
    "exit codes: 0 ok, 1 a node failed, 2 bad command line or configuration file,\n"
    "            3 invalid workflow, 4 file not readable or writable, 130 interrupted\n"
    "\n"
    "docs: docs/quickstart.md, docs/workflows.md, docs/cli.md, docs/nodes.md\n";

/* Takes every "--config FILE" out of argv[2..] (the last one wins; *path stays NULL without
 * one). Returns false when --config ends the line without a FILE. */
static bool take_config_opt(int *argc, char **argv, const char **path)
{
    int kept = 2;
    for (int i = 2; i < *argc; i++) {
        if (strcmp(argv[i], "--config") != 0) {
            argv[kept++] = argv[i];
            continue;
        }
        if (i + 1 >= *argc)
            return false;
        *path = argv[++i];
    }
    *argc = kept;
    argv[kept] = NULL;
    return true;
}

/* Finds and loads the configuration file; prints the error and returns an exit code. */
static int load_config(const char *cmd, int *argc, char **argv)
{
    const char *cli_path = NULL, *source = NULL;
    if (!take_config_opt(argc, argv, &cli_path)) {
        fprintf(stderr, "loom %s: --config needs a FILE; run loom --help for the options.\n", cmd);
        return LM_EXIT_USAGE;
    }
    char path[PATH_MAX];
    lm_error err;
    lm_error_clear(&err);
    lm_status st = lm_config_find(path, sizeof(path), cli_path, &source, &err);
    if (st == LM_OK && path[0])
        st = lm_config_load(path, &err);
    if (st == LM_OK)
        return LM_EXIT_OK;
    if (source && !err.hint[0] && (st == LM_ENOTFOUND || st == LM_EIO))
        lm_error_hint(&err, "%s names it; give an existing file, or an empty value for none",
                      source);
    lm_cli_print_error(&err);
    return LM_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2 ? LM_EXIT_USAGE : LM_EXIT_OK;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("loom %s\n", LM_VERSION);
        return LM_EXIT_OK;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "tensors") == 0)
        return lm_cmd_tensors(argc - 1, argv + 1);
    if (strcmp(cmd, "golden") == 0)
        return lm_cmd_golden(argc - 1, argv + 1);
    bool takes_config = strcmp(cmd, "run") == 0 || strcmp(cmd, "validate") == 0 ||
                        strcmp(cmd, "nodes") == 0 || strcmp(cmd, "models") == 0;
    int code = takes_config ? load_config(cmd, &argc, argv) : LM_EXIT_OK;
    if (code != LM_EXIT_OK)
        return code;
    lm_app app;
    code = lm_app_init(&app);
    if (code != LM_EXIT_OK)
        return code;
    if (strcmp(cmd, "run") == 0)
        code = lm_cmd_run(&app, argc - 1, argv + 1);
    else if (strcmp(cmd, "validate") == 0)
        code = lm_cmd_validate(&app, argc - 1, argv + 1);
    else if (strcmp(cmd, "nodes") == 0)
        code = lm_cmd_nodes(argc - 1, argv + 1, app.registry, &app.env);
    else if (strcmp(cmd, "models") == 0)
        code = lm_cmd_models(&app, argc - 1, argv + 1);
    else {
        fprintf(stderr, "loom: unknown command \"%s\"; run loom --help for the list.\n", cmd);
        code = LM_EXIT_USAGE;
    }
    lm_app_fini(&app);
    return code;
}
