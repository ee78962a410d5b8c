/* tests/cli/test_golden.c — `loom golden DIR` end to end, run as a process in a temp dir:
 * a folder of symlinks to some of ../shared/golden (output format, skips, exit 0), a folder
 * where one float of one expected tensor was changed (exactly that tensor fails, exit 1), a
 * golden whose checkpoint is absent, and the command-line and folder errors. */
#include "core/base/lm.h"
#include "core/io/safetensors.h"
#include "tests/cli/cli_fixture.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Symlinks golden/<name> into dir; false (and a failed test naming it) when absent. */
static bool link_golden(const char *dir, const char *name)
{
    char rel[256], dst[512];
    snprintf(rel, sizeof(rel), "golden/%s", name);
    const char *src = test_shared(rel);
    if (!src)
        return false;
    snprintf(dst, sizeof(dst), "%s/%s", dir, name);
    if (symlink(src, dst) != 0) {
        test__fail(__FILE__, __LINE__, "symlink %s -> %s failed", dst, src);
        return false;
    }
    return true;
}

/* Counts lines of out containing needle. */
static int count_lines(const char *out, const char *needle)
{
    int n = 0;
    for (const char *line = out; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[2048];
        snprintf(buf, sizeof(buf), "%.*s", (int)LM_MIN(len, sizeof(buf) - 1), line);
        n += strstr(buf, needle) != NULL;
        line = end ? end + 1 : NULL;
    }
    return n;
}

/* The last line must be exactly "<passed> passed, <failed> failed". */
static void check_summary(const char *out, int passed, int failed)
{
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == '\n')
        len--;
    const char *last = out + len;
    while (last > out && last[-1] != '\n')
        last--;
    char want[64];
    snprintf(want, sizeof(want), "%d passed, %d failed", passed, failed);
    if (strncmp(last, want, strlen(want)) != 0 || (size_t)(out + len - last) != strlen(want))
        test__fail(__FILE__, __LINE__, "last line \"%.*s\", expected \"%s\"",
                   (int)(out + len - last), last, want);
}

static const char *tokenizers_arg(void)
{
    static char arg[1024];
    const char *tok = test_shared("tokenizers");
    snprintf(arg, sizeof(arg), "--tokenizers '%s'", tok ? tok : "missing");
    return arg;
}

void test_cli_golden__subset_passes(void)
{
    const char *names[] = { "rng.safetensors", "sd3m_tiny.safetensors", "sd3m_mmdit.safetensors",
                            "tokens.json", "README.md" };
    REQUIRE(mkdir("sub", 0755) == 0);
    for (size_t i = 0; i < LM_COUNTOF(names); i++)
        REQUIRE(link_golden("sub", names[i]));
    char args[1200], *out = NULL;
    snprintf(args, sizeof(args), "golden sub %s", tokenizers_arg());
    int rc = cli_loom(args, &out);
    REQUIRE(out);
    test_note("%s", out);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "rng.safetensors: rng\n");
    CHECK_CONTAINS(out, "sd3m_mmdit.safetensors: mmdit; checkpoint sd3m_tiny.safetensors, "
                        "sha256 verified\n");
    CHECK_CONTAINS(out, "sd3m_tiny.safetensors: skipped: checkpoint\n");
    CHECK_CONTAINS(out, "README.md: skipped: documentation\n");
    CHECK_CONTAINS(out, "tokens.json: tokens");
    /* One line per tensor/case: name, group, max abs, max rel, verdict. */
    CHECK_CONTAINS(out, "  case00.draw0 ");
    CHECK_CONTAINS(out, "  s0.output ");
    CHECK(count_lines(out, " mmdit     max abs ") >= 2);
    CHECK_INT(count_lines(out, " FAIL"), 0);
    int passed = count_lines(out, " PASS");
    CHECK(passed > 10);
    check_summary(out, passed, 0);
    free(out);
}

/* Copies golden/<name> to path with the first float of tensor `victim` increased by 1. */
static bool write_altered(const char *name, const char *victim, const char *path)
{
    char rel[256];
    lm_error err;
    lm_safetensors *st = NULL;
    snprintf(rel, sizeof(rel), "golden/%s", name);
    const char *src = test_shared(rel);
    if (!src || lm_safetensors_open(&st, src, &err) != LM_OK)
        return false;
    const lm_safetensors_entry *e = lm_safetensors_find(st, victim);
    uint64_t at = e && e->dtype == LM_SAFETENSORS_F32 ? e->offset : UINT64_MAX;
    lm_safetensors_close(st);
    FILE *in = fopen(src, "rb"), *o = fopen(path, "wb");
    uint64_t hlen = 0;
    bool ok = in && o && at != UINT64_MAX && fread(&hlen, 8, 1, in) == 1;
    if (ok) {
        rewind(in);
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            ok = ok && fwrite(buf, 1, n, o) == n;
        float v = 0;
        long pos = (long)(8 + hlen + at); /* little-endian header length, then the data */
        ok = ok && fflush(o) == 0 && fseek(in, pos, SEEK_SET) == 0 && fread(&v, 4, 1, in) == 1;
        v += 1.0f;
        ok = ok && fseek(o, pos, SEEK_SET) == 0 && fwrite(&v, 4, 1, o) == 1;
    }
    if (in)
        fclose(in);
    if (o)
        fclose(o);
    return ok;
}

void test_cli_golden__altered_value_fails_alone(void)
{
    REQUIRE(mkdir("alt", 0755) == 0);
    REQUIRE(link_golden("alt", "sd3m_tiny.safetensors"));
    REQUIRE(write_altered("sd3m_mmdit.safetensors", "s1.output", "alt/sd3m_mmdit.safetensors"));
    char *out = NULL;
    int rc = cli_loom("golden alt --no-verify", &out);
    REQUIRE(out);
    test_note("%s", out);
    CHECK_INT(rc, 1);
    CHECK_INT(count_lines(out, " FAIL"), 1);
    CHECK_INT(count_lines(out, "  s1.output "), 1);
    CHECK_CONTAINS(out, "FAIL  1 of ");
    int passed = count_lines(out, " PASS");
    CHECK(passed > 5);
    check_summary(out, passed, 1);
    free(out);
}

void test_cli_golden__missing_checkpoint_fails(void)
{
    REQUIRE(mkdir("nock", 0755) == 0);
    REQUIRE(link_golden("nock", "sd3m_vae.safetensors"));
    char *out = NULL;
    int rc = cli_loom("golden nock", &out);
    REQUIRE(out);
    CHECK_INT(rc, 1);
    CHECK_CONTAINS(out, "checkpoint problem: checkpoint sd3m_tiny.safetensors");
    CHECK_INT(count_lines(out, " PASS"), 0);
    CHECK(count_lines(out, " FAIL") > 5);
    check_summary(out, 0, count_lines(out, " FAIL"));
    free(out);
}

void test_cli_golden__usage_and_folders(void)
{
    char *out = NULL;
    CHECK_INT(cli_loom("golden", &out), 2);
    CHECK_CONTAINS(out, "usage: loom golden DIR");
    free(out);
    CHECK_INT(cli_loom("golden . --frobnicate", &out), 2);
    free(out);
    CHECK_INT(cli_loom("golden --help", &out), 0);
    free(out);
    CHECK_INT(cli_loom("golden no-such-folder", &out), 4);
    CHECK_CONTAINS(out, "no-such-folder: cannot read the folder");
    free(out);
    REQUIRE(mkdir("empty", 0755) == 0);
    CHECK_INT(cli_loom("golden empty", &out), 1);
    check_summary(out, 0, 0);
    free(out);
}
