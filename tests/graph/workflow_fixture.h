/* tests/graph/workflow_fixture.h — helpers shared by the workflow parser tests: parse a text
 * under a file name, render the error of a text that must fail, and walk the allocation
 * failures of a parse.
 * Header-only (static inline): the test runner compiles only tests/<area>/test_*.c. */
#ifndef LM_TESTS_GRAPH_WORKFLOW_FIXTURE_H
#define LM_TESTS_GRAPH_WORKFLOW_FIXTURE_H

#include "core/base/alloc.h"
#include "core/graph.h"
#include "core/workflow.h"
#include "tests/test.h"

/* The graph of `text` read as file `name`, or NULL with *err filled. */
static inline lm_graph *wf_parse(const char *text, const char *name, lm_error *err)
{
    lm_graph *g = NULL;
    lm_error_clear(err);
    if (lm_workflow_parse(text, strlen(text), name, &g, err) != LM_OK)
        return NULL;
    return g;
}

/* Parses text that must fail; returns the one-line rendering of the error (a static buffer,
 * overwritten by the next call), or "(parsed without error)". */
static inline const char *wf_parse_error(const char *text, const char *name, lm_error *err)
{
    static char line[600];
    lm_graph *g = wf_parse(text, name, err);
    if (g) {
        lm_graph_free(g);
        return "(parsed without error)";
    }
    lm_error_format(err, line, sizeof(line));
    test_note("%s", line);
    return line;
}

/* Every allocation of parsing `text` as `name` (or, with text NULL, of loading the file
 * `name`) fails in turn: each gives an error, no crash and no leak (ASan), until a run with
 * no failure left succeeds. */
static inline void wf_check_alloc_walk(const char *text, const char *name)
{
    for (long n = 0; n < 100000; n++) {
        lm_graph *g = NULL;
        lm_error err;
        lm_alloc_fail_after(n);
        lm_status st = text ? lm_workflow_parse(text, strlen(text), name, &g, &err)
                            : lm_workflow_load_file(name, &g, &err);
        long failures = lm_alloc_failures();
        lm_alloc_fail_after(-1);
        lm_graph_free(g);
        if (failures == 0) {
            CHECK_INT(st, LM_OK);
            test_note("walked %ld allocations", n);
            return;
        }
        CHECK(st != LM_OK);
    }
    CHECK(!"allocation walk did not end");
}

#endif
