/* tests/cli/cli_fixture.h — helpers shared by the tests that run the `loom` program as a
 * process: a command line run in the test's directory, the demo workflow run small, and a
 * check of exit status and output that reports at the caller's line.
 * Header-only (static inline): the test runner compiles only tests/<area>/test_*.c. */
#ifndef LM_TESTS_CLI_CLI_FIXTURE_H
#define LM_TESTS_CLI_CLI_FIXTURE_H

#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>

/* Runs `'<loom>' <args>`; returns the exit status, stdout+stderr in *out (free()). */
static inline int cli_loom(const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "'%s' %s", test_loom_bin(), args);
    return test_run_capture(cmd, out);
}

/* Runs `[env] loom <cmd> <demo workflow> <args>`; `run` makes it 16x16 into ./o. */
static inline int cli_loom_demo(const char *env, const char *cmd, const char *args, char **out)
{
    char line[4096];
    snprintf(line, sizeof(line), "%s '%s' %s '%s/workflows/demo.yaml' %s %s", env, test_loom_bin(),
             cmd, test_repo_root(), cmd[0] == 'r' ? "--out o --set size=16" : "", args);
    return test_run_capture(line, out);
}

static inline void cli__expect_demo(const char *file, int line, const char *env, const char *cmd,
                                    const char *args, int rc, const char *const *needles)
{
    char *out = NULL;
    int got = cli_loom_demo(env, cmd, args, &out);
    if (got != rc)
        test__fail(file, line, "%s loom %s %s: exit status %d, expected %d", env, cmd, args, got,
                   rc);
    for (; *needles; needles++)
        if (!out || !strstr(out, *needles))
            test__fail(file, line, "%s loom %s %s: output \"%s\" does not contain \"%s\"", env, cmd,
                       args, out ? out : "(null)", *needles);
    free(out);
}

/* cli_loom_demo(env, cmd, args) must exit with status rc and its output contain each string
 * that follows (NULL for none); a failure names the command and the caller's line. */
#define CLI_EXPECT_DEMO(env, cmd, args, rc, ...)                                                   \
    cli__expect_demo(__FILE__, __LINE__, env, cmd, args, rc,                                       \
                     (const char *const[]){ __VA_ARGS__, NULL })

#endif
