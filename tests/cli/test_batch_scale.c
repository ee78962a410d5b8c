/* tests/cli/test_batch_scale.c — `loom run --batch` at scale: a thousand parameter sets with
 * a bad line in the middle, the process killed part-way (SIGKILL, as a crash), then resumed:
 * every good line ends done exactly once in the journal and nothing finished is redone. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "tests/test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#define LINES    1000
#define BAD_LINE 500

/* Counts finished pictures: `prefix`*.png. A kill can also leave SaveImage's temporary file
 * (`<name>.png.tmp-XXXXXX`, or both names for an instant around the link); those are not
 * pictures and are not counted. */
static size_t count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0 && len > 4 &&
             strcmp(e->d_name + len - 4, ".png") == 0;
    }
    if (d)
        closedir(d);
    return n;
}

static size_t journal_ok_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    size_t n = 0;
    while (f && fgets(line, sizeof(line), f))
        n += strstr(line, "\"status\":\"ok\"") != NULL;
    if (f)
        fclose(f);
    return n;
}

void test_cli_batch__thousand_lines_crash_and_resume(void)
{
    FILE *f = fopen("jobs.jsonl", "w");
    REQUIRE(f);
    for (int i = 1; i <= LINES; i++) {
        if (i == BAD_LINE)
            fprintf(f, "{\"size\": \"not a number\"}\n");
        else
            fprintf(f, "{\"size\": 16, \"blend\": %.4f, \"prefix\": \"b\"}\n", i / 1000.0);
    }
    fclose(f);
    char cmd[8192], *out;
    /* Start the batch, wait until 100 items are in the journal, then kill -9 it. */
    snprintf(cmd, sizeof(cmd),
             "'%s' run '%s/workflows/demo.yaml' --batch jobs.jsonl --out o --quiet >/dev/null "
             "2>&1 & pid=$!; n=0; while [ \"$n\" -lt 100 ]; do sleep 0.02; "
             "n=$(cat o/jobs.results.jsonl 2>/dev/null | wc -l); "
             "kill -0 $pid 2>/dev/null || break; done; kill -9 $pid; wait $pid; echo killed",
             test_loom_bin(), test_repo_root());
    test_run_capture(cmd, &out);
    CHECK_CONTAINS(out, "killed");
    free(out);
    size_t before = journal_ok_lines("o/jobs.results.jsonl");
    CHECK(before >= 100 && before < LINES - 1);
    /* Resume: the rest runs, the finished items are skipped. */
    snprintf(cmd, sizeof(cmd),
             "'%s' run '%s/workflows/demo.yaml' --batch jobs.jsonl --out o --quiet",
             test_loom_bin(), test_repo_root());
    int rc = test_run_capture(cmd, &out);
    CHECK_INT(rc, 1); /* the bad line fails */
    CHECK_CONTAINS(out, "line 500");
    char expect[128];
    snprintf(expect, sizeof(expect), "%zu ok, 1 failed, %zu already done", LINES - 1 - before,
             before);
    /* The journal is written right after each item, so the skip count is exact; only the
     * item in flight when the process died may have saved its picture twice. */
    CHECK_CONTAINS(out, expect);
    free(out);
    /* The journal holds each good line exactly once as ok. */
    char *journal = NULL;
    size_t len = 0;
    lm_error err;
    REQUIRE_OK(lm_file_read("o/jobs.results.jsonl", 16 << 20, &journal, &len, &err), &err);
    static unsigned char seen[LINES + 1];
    size_t ok = 0, dup = 0;
    for (char *line = strtok(journal, "\n"); line; line = strtok(NULL, "\n")) {
        int n = 0;
        bool is_ok = strstr(line, "\"status\":\"ok\"") != NULL;
        if (is_ok && sscanf(line, "{\"line\":%d,", &n) == 1 && n >= 1 && n <= LINES) {
            dup += seen[n];
            seen[n] = 1;
            ok++;
        }
    }
    lm_free(journal);
    CHECK_INT(ok, LINES - 1);
    CHECK_INT(dup, 0);
    CHECK(!seen[BAD_LINE]);
    size_t files = count_files("o", "b_");
    if (files < LINES - 1 || files > LINES)
        test_note("%zu pictures for %d good lines", files, LINES - 1);
    CHECK(files >= LINES - 1 && files <= LINES); /* at most the one item in flight re-ran */
}
