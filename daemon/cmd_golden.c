/* daemon/cmd_golden.c — `loom golden DIR`: the folder walk, file identification and the
 * summary (the checks themselves are in golden_*.c).
 *
 * Files are taken in name order and identified by content: a safetensors file whose
 * metadata holds rng `cases` or a `tensors` description is a golden (its kinds come from
 * its tensor names, golden_<kind>.c); one without them is a checkpoint or unknown and is
 * skipped; a JSON array of prompt cases is a tokenizer golden; anything else is skipped
 * with a note. Nothing about names, shapes or counts is assumed, so another folder of the
 * same kinds of files (other models, sizes, seeds) is checked unchanged. */
#include "daemon/cmd_golden.h"

#include "core/base/alloc.h"
#include "core/base/str.h"
#include "daemon/cli.h"
#include "daemon/golden_impl.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: loom golden DIR [--tokenizers DIR] [--no-verify]\n"
    "  DIR               a folder of golden files (safetensors goldens, tokens.json) and the\n"
    "                    checkpoints their config names\n"
    "  --tokenizers DIR  the tokenizer folder (clip/, t5/); default $LOOM_SHARED/tokenizers,\n"
    "                    else DIR/../tokenizers\n"
    "  --no-verify       do not check the checkpoints' sha256\n"
    "exit codes: 0 all passed, 1 some failed, 2 bad command line, 4 DIR unreadable\n";

/* ---- the folder ---- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_dir(lm_golden_run *run)
{
    DIR *d = opendir(run->dir);
    if (!d) {
        const char *why = strerror(errno);
        fprintf(stderr, "loom: golden: %s: cannot read the folder: %s; give a golden folder.\n",
                run->dir, why);
        return LM_EXIT_IO;
    }
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (run->n_names == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = lm_realloc(run->names, cap * sizeof(char *));
            if (!grown)
                break;
            run->names = grown;
        }
        run->names[run->n_names] = lm_strdup(e->d_name);
        if (run->names[run->n_names])
            run->n_names++;
    }
    closedir(d);
    if (run->n_names > 1)
        qsort(run->names, run->n_names, sizeof(char *), name_cmp);
    return LM_EXIT_OK;
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* ---- safetensors ---- */

static void describe_ckpt(lm_golden_file *f, char *buf, size_t size)
{
    const char *name =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->config, "checkpoint"));
    if (!lm_golden__file_ckpt(f))
        snprintf(buf, size, "; checkpoint problem: %s", f->ckpt_problem);
    else if (f->ckpt->sha256[0])
        snprintf(buf, size, "; checkpoint %s, sha256 verified", name);
    else
        snprintf(buf, size, "; checkpoint %s, sha256 not checked", name);
}

static void skip_safetensors(lm_golden_run *run, lm_golden_file *f)
{
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    bool any = false;
    lm_sd3_detect(f->st, found, w);
    for (int c = 0; c < LM_SD3_COMPONENT_COUNT; c++)
        any = any || found[c];
    fprintf(run->out, "%s: skipped: %s\n", f->name,
            any ? "checkpoint" : "safetensors without golden metadata");
}

/* The kinds a golden may be; a file may be several. */
static const struct {
    const char *kind;
    bool (*is)(const lm_golden_file *);
    void (*check)(lm_golden_file *);
    bool model; /* needs the checkpoint named by config */
} kinds[] = {
    { "rng", lm_golden__is_rng, lm_golden__check_rng, false },
    { "text", lm_golden__is_text, lm_golden__check_text, true },
    { "mmdit", lm_golden__is_mmdit, lm_golden__check_mmdit, true },
    { "vae", lm_golden__is_vae, lm_golden__check_vae, true },
    { "sample", lm_golden__is_sample, lm_golden__check_sample, true },
};

/* A file that cannot be read counts as one failure. */
static void unreadable(lm_golden_run *run, const char *name, const lm_error *err)
{
    char line[1200];
    lm_error_format(err, line, sizeof(line));
    fprintf(run->out, "%s\n", name);
    lm_golden__report(run, name, "-", -1, -1, false, line);
}

/* Which kinds f is, as flags and as the heading's list; true when any. */
static bool kinds_of(const lm_golden_file *f, bool is[], bool *model, lm_str *head)
{
    bool any = false;
    *model = false;
    for (size_t k = 0; k < LM_COUNTOF(kinds); k++) {
        is[k] = kinds[k].is(f);
        if (is[k])
            lm_str_appendf(head, "%s%s", any ? ", " : "", kinds[k].kind);
        any = any || is[k];
        *model = *model || (is[k] && kinds[k].model);
    }
    return any;
}

static void check_safetensors(lm_golden_run *run, const char *name, const char *path)
{
    lm_error err;
    lm_safetensors *st = NULL;
    lm_golden_file f;
    char ck[600] = "";
    bool is[LM_COUNTOF(kinds)], model;
    if (lm_safetensors_open(&st, path, &err) != LM_OK) {
        unreadable(run, name, &err);
        return;
    }
    if (lm_golden__file_init(&f, run, name, st, &err) != LM_OK) {
        unreadable(run, name, &err);
        lm_golden__file_finish(&f, false);
        return;
    }
    lm_str head;
    lm_str_init(&head);
    bool any = kinds_of(&f, is, &model, &head);
    if (!any && !f.tensors && !f.cases) {
        skip_safetensors(run, &f);
    } else {
        if (model || (!any && f.config))
            describe_ckpt(&f, ck, sizeof(ck));
        fprintf(run->out, "%s: %s%s\n", name, any ? lm_str_cstr(&head) : "unknown golden kind", ck);
        for (size_t k = 0; k < LM_COUNTOF(kinds); k++)
            if (is[k])
                kinds[k].check(&f);
    }
    lm_str_fini(&head);
    lm_golden__file_finish(&f, any || f.tensors || f.cases);
}

/* ---- JSON ---- */

static bool is_manifest(const cJSON *doc)
{
    const cJSON *v;
    if (!cJSON_IsObject(doc) || !doc->child)
        return false;
    cJSON_ArrayForEach(v, doc) if (!cJSON_GetObjectItemCaseSensitive(v, "sha256")) return false;
    return true;
}

static void check_json(lm_golden_run *run, const char *name, const char *path)
{
    lm_error err;
    char *text = NULL;
    size_t len = 0;
    if (lm_file_read(path, (size_t)1 << 28, &text, &len, &err) != LM_OK) {
        char line[1200];
        lm_error_format(&err, line, sizeof(line));
        fprintf(run->out, "%s\n", name);
        lm_golden__report(run, name, "-", -1, -1, false, line);
        return;
    }
    cJSON *doc = cJSON_ParseWithLength(text, len);
    lm_free(text);
    if (lm_golden__is_tokens(doc)) {
        fprintf(run->out, "%s: tokens; tokenizers %s\n", name, run->tokenizers);
        lm_golden__check_tokens(run, doc);
    } else {
        fprintf(run->out, "%s: skipped: %s\n", name,
                !doc               ? "not valid JSON"
                : is_manifest(doc) ? "manifest (sizes and hashes, not a golden)"
                                   : "JSON without golden cases");
    }
    cJSON_Delete(doc);
}

static void check_entry(lm_golden_run *run, const char *name)
{
    char path[LM_GOLDEN_PATH_MAX];
    if (!lm_path_join(path, sizeof(path), run->dir, name)) {
        fprintf(run->out, "%s: skipped: path too long\n", name);
    } else if (is_dir(path)) {
        fprintf(run->out, "%s/: skipped: folder (not searched)\n", name);
    } else if (lm_str_ends_with(name, ".safetensors")) {
        check_safetensors(run, name, path);
    } else if (lm_str_ends_with(name, ".json")) {
        check_json(run, name, path);
    } else {
        fprintf(run->out, "%s: skipped: %s\n", name,
                lm_str_ends_with(name, ".md") ? "documentation" : "not a golden file");
    }
    fflush(run->out);
}

/* ---- command ---- */

static void default_tokenizers(lm_golden_run *run)
{
    const char *shared = getenv("LOOM_SHARED");
    char path[LM_GOLDEN_PATH_MAX];
    if (shared && shared[0] && lm_path_join(path, sizeof(path), shared, "tokenizers") &&
        is_dir(path)) {
        lm_strlcpy(run->tokenizers, path, sizeof(run->tokenizers));
        return;
    }
    if (!lm_path_join(run->tokenizers, sizeof(run->tokenizers), run->dir, "../tokenizers"))
        run->tokenizers[0] = 0;
}

static int parse_args(lm_golden_run *run, int argc, char **argv)
{
    const char *dir = NULL, *tok = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return -1;
        } else if (strcmp(argv[i], "--no-verify") == 0) {
            run->verify = false;
        } else if (strcmp(argv[i], "--tokenizers") == 0 && i + 1 < argc) {
            tok = argv[++i];
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "loom golden: unexpected argument \"%s\"\n%s", argv[i], usage);
            return LM_EXIT_USAGE;
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        fprintf(stderr, "loom golden: which folder? give the golden folder\n%s", usage);
        return LM_EXIT_USAGE;
    }
    if (!lm_strlcpy(run->dir, dir, sizeof(run->dir)) ||
        (tok && !lm_strlcpy(run->tokenizers, tok, sizeof(run->tokenizers)))) {
        fprintf(stderr, "loom golden: path too long\n");
        return LM_EXIT_USAGE;
    }
    if (!tok)
        default_tokenizers(run);
    return LM_EXIT_OK;
}

int lm_cmd_golden(int argc, char **argv)
{
    lm_golden_run run;
    memset(&run, 0, sizeof(run));
    run.out = stdout;
    run.verify = true;
    int rc = parse_args(&run, argc, argv);
    if (rc != LM_EXIT_OK)
        return rc < 0 ? LM_EXIT_OK : rc;
    rc = list_dir(&run);
    if (rc != LM_EXIT_OK)
        return rc;
    for (size_t i = 0; i < run.n_names; i++)
        check_entry(&run, run.names[i]);
    if (run.passed + run.failed == 0)
        fprintf(run.out, "no golden files in %s: nothing was checked\n", run.dir);
    fprintf(run.out, "%d passed, %d failed\n", run.passed, run.failed);
    rc = run.failed == 0 && run.passed > 0 ? LM_EXIT_OK : LM_EXIT_FAILED;
    lm_golden__run_fini(&run);
    if (fflush(stdout) != 0 || ferror(stdout))
        return LM_EXIT_IO;
    return rc;
}
