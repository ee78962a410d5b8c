/* tests/fuzz/fuzz_workflow.c — libFuzzer target for the workflow readers.
 * Every input goes through format detection (lm_workflow_parse: PNG, JSON or YAML), then
 * through the YAML and the JSON reader directly, so both readers see every input whatever
 * its first byte. A graph that parses is expanded (sub-workflow paths resolve inside an
 * empty directory, so they are refused or not found) and freed. Seeds:
 * tests/fuzz/corpus/fuzz_workflow/. */
#include "core/graph.h"
#include "core/workflow.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/loom-fuzz-XXXXXX";

static void remove_dir(void)
{
    rmdir(dir);
}

static const char *empty_dir(void)
{
    static const char *made;
    if (!made && (made = mkdtemp(dir)) != NULL)
        atexit(remove_dir);
    return made;
}

static void exercise(lm_graph *g)
{
    lm_expand_opts opts = { empty_dir(), 0 };
    lm_diag diag;
    lm_graph *x = NULL;
    lm_diag_init(&diag);
    if (opts.confine_dir && lm_graph_expand(g, &opts, &x, &diag) == LM_OK)
        lm_graph_free(x);
    lm_diag_fini(&diag);
    lm_graph_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    lm_graph *g = NULL;
    lm_error err;
    if (lm_workflow_parse(text, size, "<fuzz>", &g, &err) == LM_OK)
        exercise(g);
    g = NULL;
    if (lm_workflow_parse_yaml(text, size, "<fuzz>", &g, &err) == LM_OK)
        exercise(g);
    g = NULL;
    if (lm_workflow_parse_json(text, size, "<fuzz>", &g, &err) == LM_OK)
        exercise(g);
    return 0;
}
