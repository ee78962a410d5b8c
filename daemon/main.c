/* daemon/main.c — the `loom` program: subcommand dispatch, --help and --version. */
#include "core/base/lm.h"
#include "daemon/cli.h"
#include "daemon/cmd_golden.h"
#include "daemon/cmd_nodes.h"
#include "daemon/cmd_tensors.h"

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
    "  tensors FILE       list a safetensors checkpoint's metadata and tensors; --json\n"
    "  golden DIR         check Loom against a folder of golden files; --tokenizers DIR\n"
    "\n"
    "options:\n"
    "  -h, --help         this help\n"
    "  -V, --version      the version\n"
    "\n"
    "exit codes: 0 ok, 1 a node failed, 2 bad command line, 3 invalid workflow,\n"
    "            4 file not readable or writable, 130 interrupted\n"
    "\n"
    "docs: docs/quickstart.md, docs/workflows.md, docs/cli.md, docs/nodes.md\n";

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
    lm_app app;
    int code = lm_app_init(&app);
    if (code != LM_EXIT_OK)
        return code;
    if (strcmp(cmd, "run") == 0)
        code = lm_cmd_run(&app, argc - 1, argv + 1);
    else if (strcmp(cmd, "validate") == 0)
        code = lm_cmd_validate(&app, argc - 1, argv + 1);
    else if (strcmp(cmd, "nodes") == 0)
        code = lm_cmd_nodes(argc - 1, argv + 1, app.registry, &app.env);
    else {
        fprintf(stderr, "loom: unknown command \"%s\"; run loom --help for the list.\n", cmd);
        code = LM_EXIT_USAGE;
    }
    lm_app_fini(&app);
    return code;
}
