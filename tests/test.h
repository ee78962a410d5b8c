/* tests/test.h — the test harness: checks, shared data and temporary directories.
 *
 * A test is "void test_<area>_<module>__<case>(void)" in tests/<area>/test_<module>.c; the
 * build finds it by name (tests/list.sh). Each test runs in its own process (a crash fails
 * that test only) with its own empty temporary directory as the working directory.
 * CHECK records a failure and goes on; REQUIRE records and returns from the test. */
#ifndef LM_TESTS_TEST_H
#define LM_TESTS_TEST_H

#include "core/base/error.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void test__fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prints an informative line under the test's name (shown with -v, or on failure). */
void test_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test__fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                    \
    } while (0)
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test__fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            test__fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, a_, #b, b_);     \
    } while (0)
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            test__fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a,                    \
                       a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                    \
    } while (0)
#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            test__fail(__FILE__, __LINE__, "%s == \"%s\" does not contain \"%s\"", #hay,           \
                       h_ ? h_ : "(null)", n_);                                                    \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b);                                                 \
        if (!(fabs(a_ - b_) <= (double)(tol)))                                                     \
            test__fail(__FILE__, __LINE__, "%s == %.9g, expected %.9g within %g", #a, a_, b_,      \
                       (double)(tol));                                                             \
    } while (0)
/* An lm_status call that must succeed; prints the error when it does not. */
#define CHECK_OK(call, errp)                                                                       \
    do {                                                                                           \
        lm_status st_ = (call);                                                                    \
        if (st_ != LM_OK)                                                                          \
            test__fail_err(__FILE__, __LINE__, #call, st_, (errp));                                \
    } while (0)
#define REQUIRE_OK(call, errp)                                                                     \
    do {                                                                                           \
        lm_status st_ = (call);                                                                    \
        if (st_ != LM_OK) {                                                                        \
            test__fail_err(__FILE__, __LINE__, #call, st_, (errp));                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)
void test__fail_err(const char *file, int line, const char *call, lm_status st,
                    const lm_error *err);

/* Path of a file in ../shared (LOOM_SHARED). When it does not exist the test fails naming
 * the path, and NULL is returned. The string lives until the test ends. */
const char *test_shared(const char *rel);
/* The test's own temporary directory (also its working directory). */
const char *test_tmpdir(void);
/* Path of the built `loom` program (LOOM_BIN, default build/loom). */
const char *test_loom_bin(void);
/* Absolute path of the repository root. */
const char *test_repo_root(void);
/* Runs a shell command, captures stdout+stderr (caller frees with free()), returns the exit
 * status (or -1). */
int test_run_capture(const char *cmd, char **output);
/* Writes a file into the temp dir (relative names) or anywhere (absolute); returns the path
 * (lives until the test ends) or NULL. */
const char *test_write_file(const char *name, const char *content);

#endif
