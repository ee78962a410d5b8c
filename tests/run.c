/* tests/run.c — the test runner.
 *   run                 every test
 *   run -s graph        tests whose name starts with test_graph_ (area)
 *   run -s graph::yaml  test_graph_yaml__*   (area::module[::case])
 *   run -v              print notes of passing tests too
 *   run -n              no fork (for gdb)
 *   run -l              list the tests
 * Each test runs in a child process in a fresh temporary directory, with a time limit
 * (LOOM_TEST_TIMEOUT seconds, default 300). The last line is "N passed, N failed".
 * test_cuda_* tests run only when selected (-s cuda): they need a GPU. */
#include "tests/test.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} test_entry;

#include "list.h"

static int failures;
static int verbose;
static char tmpdir[PATH_MAX];
static char root[PATH_MAX];
static FILE *notes_file;
#define notes (notes_file ? notes_file : stderr)
static char *strings[64];
static int n_strings;

static const char *keep(char *s)
{
    if (n_strings < (int)(sizeof(strings) / sizeof(strings[0])))
        strings[n_strings++] = s;
    return s;
}

/* Ends a note line: the formatted text, a newline, and out at once (a crash loses nothing). */
__attribute__((format(printf, 1, 0))) static void note_rest(const char *fmt, va_list ap)
{
    vfprintf(notes, fmt, ap);
    fputc('\n', notes);
    fflush(notes);
}

void test__fail(const char *file, int line, const char *fmt, ...)
{
    failures++;
    fprintf(notes, "    %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    note_rest(fmt, ap);
    va_end(ap);
}

void test_note(const char *fmt, ...)
{
    fputs("    ", notes);
    va_list ap;
    va_start(ap, fmt);
    note_rest(fmt, ap);
    va_end(ap);
}

void test__fail_err(const char *file, int line, const char *call, lm_status st, const lm_error *err)
{
    char msg[1200];
    lm_error_format(err, msg, sizeof(msg));
    test__fail(file, line, "%s returned %s: %s", call, lm_status_str(st), err ? msg : "");
}

const char *test_shared(const char *rel)
{
    const char *base = getenv("LOOM_SHARED");
    char *path = malloc(PATH_MAX);
    snprintf(path, PATH_MAX, "%s/%s", base && base[0] ? base : "../shared", rel);
    if (path[0] != '/') {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof(tmp), "%s/%s", root, path);
        snprintf(path, PATH_MAX, "%s", tmp);
    }
    if (access(path, R_OK) != 0) {
        test__fail(__FILE__, __LINE__, "shared test data missing: %s (set LOOM_SHARED)", path);
        free(path);
        return NULL;
    }
    return keep(path);
}

const char *test_tmpdir(void)
{
    return tmpdir;
}

const char *test_repo_root(void)
{
    return root;
}

const char *test_loom_bin(void)
{
    const char *bin = getenv("LOOM_BIN");
    if (bin && bin[0])
        return bin;
    char *path = malloc(PATH_MAX);
    snprintf(path, PATH_MAX, "%s/build/loom", root);
    return keep(path);
}

int test_run_capture(const char *cmd, char **output)
{
    *output = NULL;
    char full[8192];
    snprintf(full, sizeof(full), "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    if (buf)
        buf[len] = '\0';
    *output = buf;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *test_write_file(const char *name, const char *content)
{
    char *path = malloc(PATH_MAX);
    if (name[0] == '/')
        snprintf(path, PATH_MAX, "%s", name);
    else
        snprintf(path, PATH_MAX, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        test__fail(__FILE__, __LINE__, "cannot write %s: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    fputs(content, f);
    fclose(f);
    return keep(path);
}

/* "area" → test_area_*, "area::module" → test_area_module__*, "area::module::case" → that
 * test; a filter starting with "test_" is a plain name prefix. */
static int matches(const char *name, const char *filter)
{
    char prefix[256];
    if (strncmp(filter, "test_", 5) == 0) {
        snprintf(prefix, sizeof(prefix), "%s", filter);
    } else {
        char parts[3][80] = { "", "", "" };
        int n = 0;
        for (const char *p = filter; *p && n < 3;) {
            const char *end = strstr(p, "::");
            size_t len = end ? (size_t)(end - p) : strlen(p);
            snprintf(parts[n++], sizeof(parts[0]), "%.*s", (int)len, p);
            p = end ? end + 2 : p + len;
        }
        if (n <= 1)
            snprintf(prefix, sizeof(prefix), "test_%s_", parts[0]);
        else
            snprintf(prefix, sizeof(prefix), "test_%s_%s__%s", parts[0], parts[1], parts[2]);
    }
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

static void rm_rf(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

static int run_one(const test_entry *t, int nofork, double *secs)
{
    snprintf(tmpdir, sizeof(tmpdir), "%s/loom-test-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char notes_path[PATH_MAX + 16];
    snprintf(notes_path, sizeof(notes_path), "%s.notes", tmpdir);
    notes_file = fopen(notes_path, "w+");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int failed;
    if (nofork) {
        failures = 0;
        if (chdir(tmpdir) != 0)
            perror("chdir");
        t->fn();
        failed = failures > 0;
    } else {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            failures = 0;
            if (chdir(tmpdir) != 0)
                _exit(2);
            const char *lim = getenv("LOOM_TEST_TIMEOUT");
            alarm((unsigned)(lim ? atoi(lim) : 300));
            t->fn();
            fflush(notes);
            exit(failures > 0 ? 1 : 0); /* exit, not _exit: LeakSanitizer checks at exit */
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status))
            fprintf(notes, "    crashed with signal %d%s\n", WTERMSIG(status),
                    WTERMSIG(status) == SIGALRM ? " (time limit)" : "");
        failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (chdir(root) != 0)
        perror("chdir");
    fflush(notes);
    if (failed || verbose) {
        rewind(notes);
        char line[4096];
        while (fgets(line, sizeof(line), notes))
            fputs(line, stdout);
    }
    fclose(notes_file);
    notes_file = NULL;
    remove(notes_path);
    rm_rf(tmpdir);
    return failed;
}

int main(int argc, char **argv)
{
    const char *filters[32];
    int n_filters = 0, nofork = 0, list = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-s") == 0 && i + 1 < argc && n_filters < 32)
            filters[n_filters++] = argv[++i];
        else if (strcmp(argv[i], "-v") == 0)
            verbose = 1;
        else if (strcmp(argv[i], "-n") == 0)
            nofork = 1;
        else if (strcmp(argv[i], "-l") == 0)
            list = 1;
        else if (n_filters < 32)
            filters[n_filters++] = argv[i];
    }
    if (!getcwd(root, sizeof(root)))
        return 2;
    int passed = 0, failed = 0;
    for (const test_entry *t = test_table; t->name; t++) {
        /* CUDA tests need a GPU: they run only when asked for (make test-cuda). */
        int want = n_filters == 0 && strncmp(t->name, "test_cuda_", 10) != 0;
        for (int f = 0; f < n_filters && !want; f++)
            want = matches(t->name, filters[f]);
        if (!want)
            continue;
        if (list) {
            puts(t->name);
            continue;
        }
        double secs = 0;
        int bad = run_one(t, nofork, &secs);
        printf("%s %s (%.2fs)\n", bad ? "FAIL" : "ok  ", t->name, secs);
        fflush(stdout);
        bad ? failed++ : passed++;
    }
    if (list)
        return 0;
    printf("%d passed, %d failed\n", passed, failed);
    return failed || passed == 0 ? 1 : 0;
}
