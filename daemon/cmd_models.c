/* daemon/cmd_models.c — `loom models`: what the models directory holds, as workflows see it.
 *
 * Each folder's names come from lm_sd3_models_list (the list the loader nodes offer), each
 * name's file from lm_sd3_models_path, and what a file holds from the model manager
 * (lm_sd3_models_probe and lm_sd3_models_describe), which reads headers only: nothing is
 * loaded, so listing a folder of 10 GB checkpoints takes a moment. A file that cannot be
 * read is one row with its error and the listing goes on; only a models directory that
 * is not there (or not readable) fails the command. Everything is gathered first and then
 * printed as a table or as JSON. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "daemon/cli.h"
#include "daemon/config.h"
#include "nodes/sd3/models.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: loom models [--models DIR] [--config FILE] [--json] [FOLDER]\n"
    "  FOLDER        only one folder: checkpoints, text_encoders, vae or diffusion_models\n"
    "  --models DIR  the models directory (default $LOOM_MODELS, else ./models)\n"
    "  --json        print {\"models_dir\", \"tokenizers\", \"folders\": {FOLDER: [{\"name\",\n"
    "                \"bytes\", \"holds\", \"description\", \"error\"}]}}\n";

typedef struct {
    const char *name; /* borrowed from the folder's list */
    unsigned long long bytes;
    const char *holds[LM_SD3_COMPONENT_COUNT]; /* component names, static strings */
    int n_holds;
    bool failed;     /* `what` is the error line, not a description */
    char what[1400]; /* lm_sd3_models_describe's line, or the formatted error */
} model_row;

typedef struct {
    lm_strlist names;
    model_row *rows; /* one per name */
} folder_rows;

typedef struct {
    bool json;
    int only;                  /* an lm_sd3_folder, or -1 for all */
    const char *models_from;   /* where the models directory came from, for messages */
    char models_abs[PATH_MAX]; /* the directory, absolute */
    char tokenizers[PATH_MAX]; /* "" when none was found: then tokenizers_error */
    char tokenizers_error[1400];
    folder_rows folders[LM_SD3_FOLDER_COUNT];
} listing;

/* ---- the command line ---- */

/* The folder a FOLDER argument names (ComfyUI's other names and a trailing '/' too), or
 * -1. */
static int parse_folder(const char *arg)
{
    char name[64];
    if (!lm_strlcpy(name, arg, sizeof(name)))
        return -1;
    size_t len = strlen(name);
    if (len > 1 && name[len - 1] == '/')
        name[len - 1] = '\0';
    if (strcmp(name, "clip") == 0)
        return LM_SD3_FOLDER_TEXT_ENCODERS;
    if (strcmp(name, "unet") == 0)
        return LM_SD3_FOLDER_DIFFUSION_MODELS;
    for (int f = 0; f < LM_SD3_FOLDER_COUNT; f++)
        if (strcmp(name, lm_sd3_folder_name((lm_sd3_folder)f)) == 0)
            return f;
    return -1;
}

static int unknown_folder(const char *arg)
{
    fprintf(stderr, "loom models: unknown folder \"%s\"; give one of", arg);
    for (int f = 0; f < LM_SD3_FOLDER_COUNT; f++) {
        const char *sep = f == 0 ? " " : f + 1 < LM_SD3_FOLDER_COUNT ? ", " : " or ";
        fprintf(stderr, "%s%s", sep, lm_sd3_folder_name((lm_sd3_folder)f));
    }
    fputs(", or none for all.\n", stderr);
    return LM_EXIT_USAGE;
}

#define HELP_SHOWN (-1) /* parse_args printed the usage: nothing more to do */

static int parse_args(lm_app *app, int argc, char **argv, listing *l)
{
    l->only = -1;
    const char *folder = NULL;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--json") == 0) {
            l->json = true;
        } else if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
            fputs(usage, stdout);
            return HELP_SHOWN;
        } else if (strcmp(opt, "--models") == 0 && i + 1 < argc) {
            if (!lm_strlcpy(app->models_dir, argv[++i], sizeof(app->models_dir))) {
                fprintf(stderr, "loom models: --models: path too long\n%s", usage);
                return LM_EXIT_USAGE;
            }
            lm_app_sync_env(app);
            l->models_from = "--models";
        } else if (opt[0] == '-' || folder) {
            fprintf(stderr, "loom models: unexpected argument \"%s\"\n%s", opt, usage);
            return LM_EXIT_USAGE;
        } else {
            folder = opt;
        }
    }
    if (folder && (l->only = parse_folder(folder)) < 0)
        return unknown_folder(folder);
    return LM_EXIT_OK;
}

/* ---- the models directory ---- */

/* Where the models directory came from when no --models was given. */
static const char *models_source(void)
{
    const char *env = getenv("LOOM_MODELS");
    if (!env || !env[0])
        return "the default";
    const char *origin = lm_config_origin("LOOM_MODELS");
    return origin ? origin : "LOOM_MODELS";
}

/* Fills l->models_abs; prints where it looked and what to do when the directory is not
 * there or not readable. */
static int check_models_dir(const lm_app *app, listing *l)
{
    const char *dir = app->models_dir;
    char cwd[PATH_MAX];
    if (dir[0] == '/' || !getcwd(cwd, sizeof(cwd)) ||
        !lm_path_join(l->models_abs, sizeof(l->models_abs), cwd, dir))
        lm_strlcpy(l->models_abs, dir, sizeof(l->models_abs));
    char *real = realpath(dir, NULL);
    if (real)
        lm_strlcpy(l->models_abs, real, sizeof(l->models_abs));
    free(real);
    struct stat sb;
    int errnum = stat(dir, &sb) != 0 ? errno : !S_ISDIR(sb.st_mode) ? ENOTDIR : 0;
    DIR *d = errnum ? NULL : opendir(dir);
    if (!errnum && !d)
        errnum = errno;
    if (d)
        closedir(d);
    if (!errnum)
        return LM_EXIT_OK;
    if (!l->models_from)
        l->models_from = models_source();
    bool same = strcmp(dir, l->models_abs) == 0;
    fprintf(stderr,
            "loom models: models directory %s (%s%s%sfrom %s): %s; create it with "
            "checkpoints/, text_encoders/, vae/ and diffusion_models/ inside (docs/sd3.md, "
            "section 2), or give yours with --models DIR or LOOM_MODELS.\n",
            l->models_abs, same ? "" : "\"", same ? "" : dir, same ? "" : "\" ", l->models_from,
            strerror(errnum));
    return LM_EXIT_IO;
}

static void find_tokenizers(const lm_app *app, listing *l)
{
    lm_error err;
    lm_error_clear(&err);
    if (lm_sd3_tokenizer_dir(&app->env, l->tokenizers, sizeof(l->tokenizers), &err) != LM_OK) {
        l->tokenizers[0] = '\0';
        lm_error_format(&err, l->tokenizers_error, sizeof(l->tokenizers_error));
        return;
    }
    char *real = realpath(l->tokenizers, NULL); /* "models/tokenizers" says less */
    if (real)
        lm_strlcpy(l->tokenizers, real, sizeof(l->tokenizers));
    free(real);
}

/* ---- one model ---- */

/* Bytes on disk of a file, or of every file below a folder (a diffusers pipeline). */
static unsigned long long disk_bytes(const char *path, int depth)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return 0;
    if (!S_ISDIR(sb.st_mode))
        return S_ISREG(sb.st_mode) ? (unsigned long long)sb.st_size : 0;
    DIR *d = depth < LM_SD3_MODELS_MAX_DEPTH ? opendir(path) : NULL;
    unsigned long long sum = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        char sub[PATH_MAX];
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            lm_path_join(sub, sizeof(sub), path, e->d_name))
            sum += disk_bytes(sub, depth + 1);
    }
    if (d)
        closedir(d);
    return sum;
}

/* The components in lm_sd3_models_describe's words: a standalone CLIP file is CLIP-L or
 * CLIP-G by its width, as the CLIP loaders tell them apart, else just "CLIP". */
static void holds_of(const lm_sd3_file_info *info, model_row *row)
{
    for (int c = 0; c < LM_SD3_COMPONENT_COUNT; c++) {
        if (!info->has[c])
            continue;
        const char *name = lm_sd3_component_name((lm_sd3_component)c);
        if (c == LM_SD3_CLIP_L && info->clip_standalone)
            name = info->clip_width == 768    ? "CLIP-L"
                   : info->clip_width == 1280 ? "CLIP-G"
                                              : "CLIP";
        row->holds[row->n_holds++] = name;
    }
}

static void inspect(const lm_env *env, lm_sd3_folder folder, model_row *row)
{
    char path[PATH_MAX];
    lm_sd3_file_info info;
    lm_error err;
    lm_error_clear(&err);
    lm_status st = lm_sd3_models_path(env, folder, row->name, NULL, path, sizeof(path), &err);
    if (st == LM_OK) {
        row->bytes = disk_bytes(path, 0);
        st = lm_sd3_models_probe(path, &info, &err);
    }
    if (st == LM_OK)
        st = lm_sd3_models_describe(path, row->what, sizeof(row->what), &err);
    if (st != LM_OK) {
        row->failed = true;
        lm_error_format(&err, row->what, sizeof(row->what));
        return;
    }
    holds_of(&info, row);
}

static lm_status list_folder(const lm_env *env, lm_sd3_folder folder, folder_rows *out,
                             lm_error *err)
{
    lm_status st = lm_sd3_models_list(env, folder, &out->names, err);
    if (st != LM_OK)
        return st;
    if (out->names.count == 0)
        return LM_OK;
    out->rows = lm_calloc(out->names.count, sizeof(*out->rows));
    if (!out->rows)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory listing models/%s",
                         lm_sd3_folder_name(folder));
    for (size_t i = 0; i < out->names.count; i++) {
        out->rows[i].name = out->names.items[i];
        inspect(env, folder, &out->rows[i]);
    }
    return LM_OK;
}

static bool selected(const listing *l, int folder)
{
    return l->only < 0 || l->only == folder;
}

/* ---- text ---- */

static void print_text(FILE *out, const listing *l)
{
    size_t width = 0;
    for (int f = 0; f < LM_SD3_FOLDER_COUNT; f++)
        for (size_t i = 0; i < l->folders[f].names.count; i++)
            width = LM_MAX(width, strlen(l->folders[f].rows[i].name));
    width = LM_MIN(width, (size_t)60);
    fprintf(out, "models: %s\n", l->models_abs);
    if (l->tokenizers[0])
        fprintf(out, "tokenizers: %s\n", l->tokenizers);
    else
        fprintf(out, "tokenizers: none: %s\n", l->tokenizers_error);
    for (int f = 0; f < LM_SD3_FOLDER_COUNT; f++) {
        if (!selected(l, f))
            continue;
        const folder_rows *fr = &l->folders[f];
        fprintf(out, "%s/\n", lm_sd3_folder_name((lm_sd3_folder)f));
        if (fr->names.count == 0)
            fputs("  (no .safetensors files)\n", out);
        for (size_t i = 0; i < fr->names.count; i++) {
            const model_row *r = &fr->rows[i];
            char size[32];
            lm_format_bytes(r->bytes, size, sizeof(size));
            fprintf(out, "  %-*s  %8s  %s%s\n", (int)width, r->name, size,
                    r->failed ? "error: " : "", r->what);
        }
    }
}

/* ---- JSON ---- */

static void json_row(lm_str *s, const model_row *r)
{
    lm_str_append(s, "{\"name\": ");
    lm_str_append_json(s, r->name);
    lm_str_appendf(s, ", \"bytes\": %llu, \"holds\": [", r->bytes);
    for (int h = 0; h < r->n_holds; h++) {
        lm_str_append(s, h ? ", " : "");
        lm_str_append_json(s, r->holds[h]);
    }
    lm_str_append(s, "], \"description\": ");
    if (r->failed)
        lm_str_append(s, "null");
    else
        lm_str_append_json(s, r->what);
    lm_str_append(s, ", \"error\": ");
    if (r->failed)
        lm_str_append_json(s, r->what);
    else
        lm_str_append(s, "null");
    lm_str_append(s, "}");
}

static void json_nullable(lm_str *s, const char *key, const char *value)
{
    lm_str_appendf(s, "  \"%s\": ", key);
    if (value[0])
        lm_str_append_json(s, value);
    else
        lm_str_append(s, "null");
    lm_str_append(s, ",\n");
}

static int print_json(FILE *out, const listing *l)
{
    lm_str s;
    lm_str_init(&s);
    lm_str_append(&s, "{\n  \"models_dir\": ");
    lm_str_append_json(&s, l->models_abs);
    lm_str_append(&s, ",\n");
    json_nullable(&s, "tokenizers", l->tokenizers);
    json_nullable(&s, "tokenizers_error", l->tokenizers[0] ? "" : l->tokenizers_error);
    lm_str_append(&s, "  \"folders\": {");
    bool first = true;
    for (int f = 0; f < LM_SD3_FOLDER_COUNT; f++) {
        if (!selected(l, f))
            continue;
        const folder_rows *fr = &l->folders[f];
        lm_str_appendf(&s, "%s\n    \"%s\": [", first ? "" : ",",
                       lm_sd3_folder_name((lm_sd3_folder)f));
        first = false;
        for (size_t i = 0; i < fr->names.count; i++) {
            lm_str_append(&s, i ? ",\n      " : "\n      ");
            json_row(&s, &fr->rows[i]);
        }
        lm_str_append(&s, fr->names.count ? "\n    ]" : "]");
    }
    lm_str_append(&s, "\n  }\n}\n");
    int rc = s.oom ? -1 : 0;
    if (rc == 0)
        fwrite(s.data, 1, s.len, out);
    lm_str_fini(&s);
    return rc;
}

/* ---- the command ---- */

static void listing_fini(listing *l)
{
    for (int f = 0; f < LM_SD3_FOLDER_COUNT; f++) {
        lm_free(l->folders[f].rows);
        lm_strlist_fini(&l->folders[f].names);
    }
    lm_free(l);
}

static int gather(const lm_app *app, listing *l)
{
    find_tokenizers(app, l);
    for (int f = 0; f < LM_SD3_FOLDER_COUNT; f++) {
        lm_error err;
        lm_error_clear(&err);
        if (selected(l, f) &&
            list_folder(&app->env, (lm_sd3_folder)f, &l->folders[f], &err) != LM_OK) {
            lm_cli_print_error(&err);
            return LM_EXIT_IO;
        }
    }
    return LM_EXIT_OK;
}

int lm_cmd_models(lm_app *app, int argc, char **argv)
{
    listing *l = lm_calloc(1, sizeof(*l)); /* large (paths, messages): not on the stack */
    if (!l) {
        fputs("loom models: out of memory\n", stderr);
        return LM_EXIT_FAILED;
    }
    int code = parse_args(app, argc, argv, l);
    if (code == LM_EXIT_OK)
        code = check_models_dir(app, l);
    if (code == LM_EXIT_OK)
        code = gather(app, l);
    if (code == LM_EXIT_OK) {
        int rc = l->json ? print_json(stdout, l) : (print_text(stdout, l), 0);
        if (rc != 0 || fflush(stdout) != 0 || ferror(stdout)) {
            fputs("loom models: could not write the listing (out of memory or stdout "
                  "closed)\n",
                  stderr);
            code = LM_EXIT_IO;
        }
    }
    listing_fini(l);
    return code == HELP_SHOWN ? LM_EXIT_OK : code;
}
