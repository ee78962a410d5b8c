/* nodes/image/load_image.c — LoadImage: a picture from the input directory as IMAGE and
 * MASK.
 *
 * Names resolve inside env->input_dir and must pass lm_path_is_confined(); ComfyUI's
 * annotations "name [input]", "name [output]" and "name [temp]" pick the directory. With
 * env->trusted_paths (the CLI), an absolute or "./"-relative name is used as it is. The
 * MASK is 1 - alpha; a picture without alpha gives ComfyUI's 64x64 zero mask, not one of
 * the picture's size (docs/nodes-notes.md). changed() hashes the file's bytes, so editing
 * the file re-runs the node; check() rejects a missing or unreadable file up front with
 * ComfyUI's "Invalid image file: NAME". */
#include "core/base/alloc.h"
#include "core/base/hash.h"
#include "core/base/str.h"
#include "core/exec.h"
#include "core/io/image.h"
#include "core/registry.h"
#include "nodes/image/image_nodes.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { IN_IMAGE, IN_COUNT };

static lm_status list_input_images(const lm_env *env, lm_strlist *out, lm_error *err);

static const lm_input_def load_in[IN_COUNT] = {
    [IN_IMAGE] = { "image", LM_TYPE_STRING, .choices_fn = list_input_images, .flags = LM_INPUT_FILE,
                   .help = "A PNG, JPEG or WebP file in the input directory." },
};

static const lm_output_def load_out[2] = {
    { "IMAGE", LM_TYPE_IMAGE, NULL },
    { "MASK", LM_TYPE_MASK, "1 - alpha; a 64x64 zero mask when the picture has no alpha." },
};

static bool is_image_name(const char *name)
{
    lm_image_format f;
    return name[0] != '.' && lm_image_format_from_name(name, &f);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The image files directly in the input directory, sorted. */
static lm_status list_input_images(const lm_env *env, lm_strlist *out, lm_error *err)
{
    DIR *dir = env && env->input_dir ? opendir(env->input_dir) : NULL;
    if (!dir)
        return LM_OK; /* no input directory yet: no choices */
    lm_status st = LM_OK;
    size_t first = out->count;
    for (struct dirent *e; st == LM_OK && (e = readdir(dir));) {
        char path[4096];
        struct stat sb;
        if (!is_image_name(e->d_name) ||
            !lm_path_join(path, sizeof(path), env->input_dir, e->d_name) || stat(path, &sb) != 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        st = lm_strlist_push(out, e->d_name, err);
    }
    closedir(dir);
    if (out->count > first)
        qsort(out->items + first, out->count - first, sizeof(*out->items), compare_names);
    return st;
}

static lm_status invalid_image(const char *name, const char *why, lm_error *err)
{
    lm_errorf(err, LM_EINVAL, "custom_validation_failed", "Invalid image file: %.200s", name);
    lm_error_hint(err, "%.250s", why);
    lm_error_at_node(err, NULL, NULL, "image");
    return LM_EINVAL;
}

/* Splits ComfyUI's " [input]" / " [output]" / " [temp]" suffix off `name` into `bare`. */
static const char *annotated_dir(const lm_env *env, const char *name, char *bare, size_t size)
{
    static const char *const tags[] = { " [input]", " [output]", " [temp]" };
    const char *dirs[] = { env->input_dir, env->output_dir, env->temp_dir };
    lm_strlcpy(bare, name, size);
    for (size_t i = 0; i < LM_COUNTOF(tags); i++) {
        if (lm_str_ends_with(bare, tags[i])) {
            bare[strlen(bare) - strlen(tags[i])] = '\0';
            return dirs[i];
        }
    }
    return env->input_dir;
}

/* The file a name refers to, or an error saying why it may not be used. */
static lm_status resolve(const lm_env *env, const char *name, char *path, size_t size,
                         lm_error *err)
{
    static const lm_env no_env = { 0 };
    env = env ? env : &no_env;
    if (!name || !name[0])
        return invalid_image("", "choose an image file", err);
    if (env->trusted_paths && (name[0] == '/' || strncmp(name, "./", 2) == 0)) {
        if (!lm_strlcpy(path, name, size))
            return invalid_image(name, "the path is too long", err);
        return LM_OK;
    }
    char bare[1024];
    const char *dir = annotated_dir(env, name, bare, sizeof(bare));
    if (!lm_path_is_confined(bare))
        return invalid_image(name,
                             "name a file inside the input directory (no absolute "
                             "path, no \"..\")",
                             err);
    if (!dir)
        return invalid_image(name, "no input directory is configured", err);
    if (!lm_path_join(path, size, dir, bare))
        return invalid_image(name, "the path is too long", err);
    return LM_OK;
}

static lm_status load_check(const lm_node_def *def, const lm_env *env, lm_value *const *in,
                            lm_error *err)
{
    (void)def;
    const char *name = in[IN_IMAGE] ? lm_value_as_string(in[IN_IMAGE]) : NULL;
    if (!in[IN_IMAGE])
        return LM_OK; /* linked, not a literal: checked when it runs */
    char path[4096];
    lm_status st = resolve(env, name, path, sizeof(path), err);
    if (st != LM_OK)
        return st;
    lm_image_info info;
    lm_error inner;
    if (lm_image_probe(path, NULL, &info, &inner) != LM_OK)
        return invalid_image(name, inner.msg, err);
    return LM_OK;
}

static lm_status load_changed(const lm_node_def *def, const lm_env *env, lm_value *const *in,
                              uint64_t *fingerprint, lm_error *err)
{
    (void)def;
    *fingerprint = 0;
    const char *name = in[IN_IMAGE] ? lm_value_as_string(in[IN_IMAGE]) : NULL;
    char path[4096];
    lm_status st = resolve(env, name, path, sizeof(path), err);
    if (st != LM_OK)
        return st;
    FILE *f = fopen(path, "rb");
    if (!f)
        return invalid_image(name, "the file does not exist or cannot be read", err);
    lm_hasher h;
    lm_hasher_init(&h, 0x4c6f6164496d67u);
    unsigned char buf[65536];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;)
        lm_hasher_bytes(&h, buf, n);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed)
        return invalid_image(name, "the file cannot be read", err);
    *fingerprint = lm_hasher_digest(&h);
    return LM_OK;
}

/* 1 - alpha, or ComfyUI's 64x64 zeros when there is no alpha. */
static lm_status make_mask(const lm_tensor *alpha, lm_tensor **out, lm_error *err)
{
    int64_t shape[3] = { 1, 64, 64 };
    if (!alpha)
        return lm_tensor_zeros(out, lm_backend_cpu(), LM_DTYPE_F32, 3, shape, err);
    lm_status st = lm_tensor_new(out, lm_backend_cpu(), LM_DTYPE_F32, 3, alpha->shape, err);
    if (st != LM_OK)
        return st;
    const float *a = lm_tensor_data(alpha);
    float *m = lm_tensor_data(*out);
    for (int64_t i = 0; i < lm_tensor_numel(alpha); i++)
        m[i] = 1.0f - a[i];
    return LM_OK;
}

static lm_status load_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    char path[4096];
    lm_status st =
        resolve(lm_ctx_env(ctx), lm_value_as_string(in[IN_IMAGE]), path, sizeof(path), err);
    if (st != LM_OK)
        return st;
    lm_tensor *rgb = NULL, *alpha = NULL, *mask = NULL;
    st = lm_image_load(path, NULL, &rgb, &alpha, err);
    if (st == LM_OK)
        st = make_mask(alpha, &mask, err);
    lm_tensor_free(alpha);
    if (st != LM_OK) {
        lm_tensor_free(rgb);
        return st;
    }
    out[0] = lm_value_image(rgb);
    out[1] = lm_value_mask(mask);
    if (!out[0] || !out[1])
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory loading an image");
    return LM_OK;
}

const lm_node_def lm_node_load_image = {
    .name = "LoadImage",
    .display_name = "Load Image",
    .category = "image",
    .description = "Loads a PNG, JPEG or WebP picture; MASK is 1 - alpha.",
    .inputs = load_in,
    .n_inputs = IN_COUNT,
    .outputs = load_out,
    .n_outputs = 2,
    .run = load_run,
    .changed = load_changed,
    .check = load_check,
};
