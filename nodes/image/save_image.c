/* nodes/image/save_image.c — SaveImage and PreviewImage: PNG files with the recipe inside.
 *
 * Naming follows ComfyUI: "<prefix>_%05d_.png" in env->output_dir, where the counter
 * continues after the highest counter already used for that prefix (any file named
 * "<prefix>_<digits>..." counts) and a prefix "sub/name" writes into a sub-folder (created,
 * confined to the output directory). The prefix may use %width% %height% %year% %month%
 * %day% %hour% %minute% %second% (backend substitutions), %date:yyyy-MM-dd% (the
 * front-end's, done here so CLI workflows get it too) and %batch_num%. Files are never
 * overwritten: each is written atomically with "create only" semantics and a taken name
 * moves the counter on, so concurrent jobs sharing a prefix cannot clobber each other.
 *
 * The recipe goes in as tEXt chunks the way ComfyUI embeds it: "prompt" (the API-format
 * graph), one chunk per top-level key of the extra PNG info ("workflow" from the editor),
 * and "loom_params" when the run had parameters. The UI output is ComfyUI's
 * {"images": [{"filename", "subfolder", "type"}]}.
 *
 * PreviewImage is the same into env->temp_dir (or <output_dir>/../temp), type "temp",
 * prefix "ComfyUI_temp_" plus five random letters, zlib level 1. */
#include "core/base/alloc.h"
#include "core/base/hash.h"
#include "core/base/str.h"
#include "core/exec.h"
#include "core/io/image.h"
#include "core/registry.h"
#include "nodes/image/image_nodes.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_NAME_TRIES 10000

typedef struct {
    const char *dir;  /* where files go */
    const char *type; /* "output" or "temp", for the UI */
    int level;        /* zlib level */
} save_target;

typedef struct {
    lm_image_text *items;
    size_t count;
    char **owned; /* printed JSON values, `count` slots */
} text_set;

/* ---- prefix ---- */

/* Appends a %date:FORMAT% expansion: yyyy yy MM M dd d hh h mm m ss s, other text kept. */
static void append_date(lm_str *out, const char *fmt, size_t n, const struct tm *tm)
{
    static const struct {
        const char *tok;
        int width;
    } toks[] = { { "yyyy", 4 }, { "yy", 2 }, { "MM", 2 }, { "M", 1 }, { "dd", 2 }, { "d", 1 },
                 { "hh", 2 },   { "h", 1 },  { "mm", 2 }, { "m", 1 }, { "ss", 2 }, { "s", 1 } };
    for (size_t i = 0; i < n;) {
        size_t t = 0;
        while (t < LM_COUNTOF(toks) &&
               (strlen(toks[t].tok) > n - i || strncmp(fmt + i, toks[t].tok, strlen(toks[t].tok))))
            t++;
        if (t == LM_COUNTOF(toks)) {
            lm_str_appendn(out, fmt + i++, 1);
            continue;
        }
        char c = toks[t].tok[0];
        int v = c == 'y'   ? tm->tm_year + 1900
                : c == 'M' ? tm->tm_mon + 1
                : c == 'd' ? tm->tm_mday
                : c == 'h' ? tm->tm_hour
                : c == 'm' ? tm->tm_min
                           : tm->tm_sec;
        if (strcmp(toks[t].tok, "yy") == 0)
            v %= 100;
        lm_str_appendf(out, "%0*d", toks[t].width, v);
        i += strlen(toks[t].tok);
    }
}

/* The value of a %name% variable, or -1 when the name is not one. */
static int prefix_var(const char *name, size_t n, int64_t w, int64_t h, const struct tm *tm,
                      long long *v)
{
    static const char *const names[] = { "width", "height", "year",   "month",
                                         "day",   "hour",   "minute", "second" };
    long long vals[] = { w,           h,           tm->tm_year + 1900, tm->tm_mon + 1,
                         tm->tm_mday, tm->tm_hour, tm->tm_min,         tm->tm_sec };
    for (size_t i = 0; i < LM_COUNTOF(names); i++) {
        if (strlen(names[i]) == n && strncmp(name, names[i], n) == 0) {
            *v = vals[i];
            return i < 3 ? 0 : 2; /* zero-padding width (0 = none) */
        }
    }
    return -1;
}

static void expand_prefix(lm_str *out, const char *prefix, int64_t w, int64_t h,
                          const struct tm *tm)
{
    for (const char *p = prefix; *p;) {
        const char *end = *p == '%' ? strchr(p + 1, '%') : NULL;
        long long v;
        int pad = end ? prefix_var(p + 1, (size_t)(end - p - 1), w, h, tm, &v) : -1;
        if (pad >= 0) {
            lm_str_appendf(out, "%0*lld", pad, v);
            p = end + 1;
        } else if (end && strncmp(p, "%date:", 6) == 0) {
            append_date(out, p + 6, (size_t)(end - p - 6), tm);
            p = end + 1;
        } else {
            lm_str_appendn(out, p++, 1);
        }
    }
}

static lm_status bad_prefix(const char *prefix, const char *why, lm_error *err)
{
    lm_errorf(err, LM_EINVAL, "invalid_prefix", "filename_prefix \"%.200s\" %s", prefix, why);
    lm_error_hint(err, "use a name such as \"ComfyUI\" or \"folder/name\" inside the output "
                       "directory");
    lm_error_at_node(err, NULL, NULL, "filename_prefix");
    return LM_EINVAL;
}

/* Splits "sub/dir/name" into sub ("sub/dir" or "") and base ("name"). */
static lm_status split_prefix(const char *prefix, char *sub, size_t sub_size, char *base,
                              size_t base_size, lm_error *err)
{
    if (!lm_path_is_confined(prefix))
        return bad_prefix(prefix, "leaves the output directory or is empty", err);
    const char *slash = strrchr(prefix, '/');
    size_t n = slash ? (size_t)(slash - prefix) : 0;
    if (n >= sub_size || !lm_strlcpy(base, slash ? slash + 1 : prefix, base_size))
        return bad_prefix(prefix, "is too long", err);
    memcpy(sub, prefix, n);
    sub[n] = '\0';
    return LM_OK;
}

/* ---- counter ---- */

/* ComfyUI's rule: "<base>_<digits>_..." or "<base>_<digits>" counts digits (others count 0). */
static long long name_counter(const char *name, const char *base, size_t blen)
{
    if (strncmp(name, base, blen) != 0 || name[blen] != '_')
        return -1;
    const char *d = name + blen + 1, *end = strchr(d, '_');
    size_t n = end ? (size_t)(end - d) : strlen(d);
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9' || v > 100000000000LL)
            return 0;
        v = v * 10 + (d[i] - '0');
    }
    return n ? v : 0;
}

/* One past the highest counter used for `base` in `folder` (1 when none). */
static long long next_counter(const char *folder, const char *base)
{
    DIR *dir = opendir(folder);
    if (!dir)
        return 1;
    long long best = 0;
    size_t blen = strlen(base);
    for (struct dirent *e; (e = readdir(dir));) {
        long long v = name_counter(e->d_name, base, blen);
        best = v > best ? v : best;
    }
    closedir(dir);
    return best + 1;
}

/* ---- recipe ---- */

static lm_status texts_push(text_set *t, const char *key, char *owned, const char *text)
{
    if (!lm_png_key_is_valid(key)) { /* a key PNG cannot hold is skipped, not fatal */
        lm_free(owned);
        return LM_OK;
    }
    t->items[t->count].key = key;
    t->items[t->count].text = owned ? owned : text;
    t->owned[t->count] = owned;
    t->count++;
    return LM_OK;
}

/* Builds the chunks; *extra keeps the parsed extra info alive (its keys are borrowed). */
static lm_status texts_build(lm_ctx *ctx, text_set *t, cJSON **extra, lm_error *err)
{
    const char *extra_json = lm_ctx_extra_json(ctx), *params = lm_ctx_params_json(ctx);
    *extra = extra_json ? cJSON_Parse(extra_json) : NULL;
    size_t n = 2 + (size_t)(cJSON_IsObject(*extra) ? cJSON_GetArraySize(*extra) : 0);
    t->items = lm_calloc(n, sizeof(*t->items));
    t->owned = lm_calloc(n, sizeof(*t->owned));
    if (!t->items || !t->owned)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory saving images");
    if (lm_ctx_prompt_json(ctx))
        texts_push(t, "prompt", NULL, lm_ctx_prompt_json(ctx));
    cJSON *item = NULL;
    if (cJSON_IsObject(*extra)) {
        cJSON_ArrayForEach(item, *extra)
        {
            char *json = cJSON_PrintUnformatted(item);
            char *copy = json ? lm_strdup(json) : NULL;
            cJSON_free(json);
            if (!copy)
                return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory saving images");
            texts_push(t, item->string, copy, NULL);
        }
    }
    if (params && params[0])
        texts_push(t, "loom_params", NULL, params);
    return LM_OK;
}

static void texts_fini(text_set *t)
{
    for (size_t i = 0; t->owned && i < t->count; i++)
        lm_free(t->owned[i]);
    lm_free(t->owned);
    lm_free(t->items);
}

/* ---- files ---- */

typedef struct {
    const save_target *tg;
    char folder[4096]; /* tg->dir + sub */
    char sub[1024];
    char base[512];
    long long counter;
} save_plan;

/* Expands the prefix, confines it, creates the folder and finds the first counter. */
static lm_status plan_files(save_plan *sp, const char *prefix, const lm_tensor *images,
                            lm_error *err)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    lm_str expanded;
    lm_str_init(&expanded);
    expand_prefix(&expanded, prefix, images->shape[2], images->shape[1], &tm);
    lm_status st = expanded.oom ? lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory")
                                : split_prefix(lm_str_cstr(&expanded), sp->sub, sizeof(sp->sub),
                                               sp->base, sizeof(sp->base), err);
    if (st == LM_OK && !lm_path_join(sp->folder, sizeof(sp->folder), sp->tg->dir, sp->sub))
        st = bad_prefix(prefix, "is too long", err);
    lm_str_fini(&expanded);
    if (st == LM_OK)
        st = lm_mkdirs(sp->folder, err);
    if (st == LM_OK)
        sp->counter = next_counter(sp->folder, sp->base);
    return st;
}

/* "<base>_00001_.png", with %batch_num% in base replaced by the image's index. */
static void file_name(lm_str *name, const save_plan *sp, int64_t batch)
{
    for (const char *p = sp->base; *p;) {
        if (strncmp(p, "%batch_num%", 11) == 0) {
            lm_str_appendf(name, "%lld", (long long)batch);
            p += 11;
        } else {
            lm_str_appendn(name, p++, 1);
        }
    }
    lm_str_appendf(name, "_%05lld_.png", sp->counter);
}

static void ui_add(lm_str *ui, const save_plan *sp, const char *name)
{
    bool first = ui->len > 0 && ui->data[ui->len - 1] == '[';
    lm_str_append(ui, first ? "{\"filename\": " : ", {\"filename\": ");
    lm_str_append_json(ui, name);
    lm_str_append(ui, ", \"subfolder\": ");
    lm_str_append_json(ui, sp->sub);
    lm_str_append(ui, ", \"type\": ");
    lm_str_append_json(ui, sp->tg->type);
    lm_str_append(ui, "}");
}

/* Writes one encoded image under the next free name and records it in the UI list. */
static lm_status write_one(save_plan *sp, int64_t batch, const unsigned char *data, size_t size,
                           lm_str *ui, lm_error *err)
{
    for (int tries = 0; tries < MAX_NAME_TRIES; tries++, sp->counter++) {
        lm_str name;
        lm_str_init(&name);
        file_name(&name, sp, batch);
        char path[4096];
        lm_error inner;
        lm_status st = LM_ENOMEM;
        if (!name.oom && lm_path_join(path, sizeof(path), sp->folder, lm_str_cstr(&name)))
            st = lm_image_write_file(path, data, size, true, &inner);
        if (st == LM_OK)
            ui_add(ui, sp, lm_str_cstr(&name));
        lm_str_fini(&name);
        if (st == LM_OK) {
            sp->counter++;
            return LM_OK;
        }
        if (st == LM_ENOMEM)
            return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory naming a file");
        if (strcmp(inner.kind, "file_exists") != 0) {
            if (err)
                *err = inner;
            return st;
        }
    }
    return lm_errorf(err, LM_ELIMIT, "no_free_name",
                     "no free file name for prefix \"%s\" "
                     "after %d tries",
                     sp->base, MAX_NAME_TRIES);
}

static lm_status save_batch(lm_ctx *ctx, const lm_tensor *images, save_plan *sp,
                            const text_set *texts, lm_str *ui, lm_error *err)
{
    int64_t n = images->shape[0];
    for (int64_t b = 0; b < n; b++) {
        if (lm_ctx_cancelled(ctx))
            return lm_errorf(err, LM_ECANCELLED, "interrupted", "interrupted while saving");
        unsigned char *data;
        size_t size;
        lm_status st = lm_image_encode(images, b, LM_IMAGE_PNG, sp->tg->level, texts->items,
                                       texts->count, &data, &size, err);
        if (st != LM_OK)
            return st;
        st = write_one(sp, b, data, size, ui, err);
        lm_free(data);
        if (st != LM_OK)
            return st;
        lm_ctx_progress(ctx, (int)(b + 1), (int)n);
    }
    return LM_OK;
}

static lm_status save_images(lm_ctx *ctx, const lm_value *value, const char *prefix,
                             const save_target *tg, lm_error *err)
{
    const lm_tensor *images = value ? lm_value_tensor(value) : NULL;
    if (!images || images->ndim != 4 || images->shape[0] < 1) {
        lm_errorf(err, LM_ETYPE, "bad_image", "expected an IMAGE [B, H, W, C]");
        lm_error_at_node(err, NULL, NULL, "images");
        return LM_ETYPE;
    }
    save_plan sp = { .tg = tg };
    lm_status st = plan_files(&sp, prefix ? prefix : "", images, err);
    if (st != LM_OK)
        return st;
    text_set texts = { 0 };
    cJSON *extra = NULL;
    lm_str ui;
    lm_str_init(&ui);
    lm_str_append(&ui, "{\"images\": [");
    st = texts_build(ctx, &texts, &extra, err);
    if (st == LM_OK)
        st = save_batch(ctx, images, &sp, &texts, &ui, err);
    lm_str_append(&ui, "]}");
    if (st == LM_OK && ui.oom)
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory saving images");
    if (st == LM_OK)
        st = lm_ctx_set_ui(ctx, lm_str_cstr(&ui), err);
    lm_str_fini(&ui);
    texts_fini(&texts);
    cJSON_Delete(extra);
    return st;
}

static lm_status no_dir(const char *what, lm_error *err)
{
    lm_errorf(err, LM_EINVAL, "no_output_dir", "no %s directory is configured", what);
    lm_error_hint(err, "set the output directory (--output or the server's output path)");
    return LM_EINVAL;
}

/* ---- nodes ---- */

enum { IN_IMAGES, IN_PREFIX, IN_COUNT };

static const lm_input_def save_in[IN_COUNT] = {
    [IN_IMAGES] = { "images", LM_TYPE_IMAGE, .help = "The images to save." },
    [IN_PREFIX] = { "filename_prefix", LM_TYPE_STRING, .s_def = "ComfyUI",
                    .help = "File name prefix; may hold a sub-folder (\"sub/name\") and "
                            "%width%, %height%, %year%, %date:yyyy-MM-dd%…" },
};

static lm_status save_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)out;
    const lm_env *env = lm_ctx_env(ctx);
    if (!env->output_dir)
        return no_dir("output", err);
    save_target tg = { .dir = env->output_dir, .type = "output", .level = 4 };
    return save_images(ctx, in[IN_IMAGES], lm_value_as_string(in[IN_PREFIX]), &tg, err);
}

const lm_node_def lm_node_save_image = {
    .name = "SaveImage",
    .display_name = "Save Image",
    .category = "image",
    .description = "Saves the images as PNG files in the output directory, with the "
                   "workflow embedded.",
    .inputs = save_in,
    .n_inputs = IN_COUNT,
    .n_outputs = 0,
    .flags = LM_NODE_OUTPUT | LM_NODE_NOT_CACHEABLE,
    .run = save_run,
};

/* "ComfyUI_temp_" and five random lowercase letters. */
static void preview_prefix(char *out, size_t size)
{
    static _Atomic unsigned long calls;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long salt[4] = { (unsigned long)ts.tv_sec, (unsigned long)ts.tv_nsec,
                              (unsigned long)getpid(), calls++ };
    uint64_t r = lm_hash_bytes(salt, sizeof(salt), 0x70726576u);
    char letters[6];
    for (int i = 0; i < 5; i++, r /= 26)
        letters[i] = (char)('a' + (int)(r % 26));
    letters[5] = '\0';
    snprintf(out, size, "ComfyUI_temp_%s", letters);
}

static lm_status preview_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)out;
    const lm_env *env = lm_ctx_env(ctx);
    char temp[4096], prefix[64];
    save_target tg = { .dir = env->temp_dir, .type = "temp", .level = 1 };
    if (!tg.dir && env->output_dir) {
        if (!lm_path_join(temp, sizeof(temp), env->output_dir, "../temp"))
            return no_dir("temp", err);
        tg.dir = temp;
    }
    if (!tg.dir)
        return no_dir("temp", err);
    preview_prefix(prefix, sizeof(prefix));
    return save_images(ctx, in[IN_IMAGES], prefix, &tg, err);
}

const lm_node_def lm_node_preview_image = {
    .name = "PreviewImage",
    .display_name = "Preview Image",
    .category = "image",
    .description = "Saves the images as temporary PNG files for a UI to show.",
    .inputs = save_in,
    .n_inputs = 1,
    .n_outputs = 0,
    .flags = LM_NODE_OUTPUT | LM_NODE_NOT_CACHEABLE,
    .run = preview_run,
};
