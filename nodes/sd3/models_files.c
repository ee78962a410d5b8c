/* nodes/sd3/models_files.c — model names: listing the models directory's ComfyUI
 * sub-folders for the loader combos, resolving a name to a file, and finding the tokenizer
 * directory (models.h). Names use '/' and are relative to the sub-folder, as ComfyUI shows
 * them; a name that is not confined (absolute, "..") is refused before any file access. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "nodes/sd3/models.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const folder_dirs[LM_SD3_FOLDER_COUNT][3] = {
    [LM_SD3_FOLDER_CHECKPOINTS] = { "checkpoints", NULL },
    [LM_SD3_FOLDER_TEXT_ENCODERS] = { "text_encoders", "clip", NULL },
    [LM_SD3_FOLDER_VAE] = { "vae", NULL },
    [LM_SD3_FOLDER_DIFFUSION_MODELS] = { "diffusion_models", "unet", NULL },
};

const char *lm_sd3_folder_name(lm_sd3_folder folder)
{
    return (unsigned)folder < LM_SD3_FOLDER_COUNT ? folder_dirs[folder][0] : "?";
}

static bool is_model_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 12 && strcasecmp(name + n - 12, ".safetensors") == 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends model files below dir/rel (rel "" for the folder itself) as "rel/name"; with
 * `folders` (checkpoints/) a diffusers folder is one name instead of its files. */
static lm_status list_dir(const char *dir, const char *rel, int depth, bool folders,
                          lm_strlist *out, lm_error *err)
{
    char path[PATH_MAX];
    if (!lm_path_join(path, sizeof(path), dir, rel[0] ? rel : "."))
        return LM_OK;
    DIR *d = opendir(path);
    if (!d)
        return LM_OK; /* an absent folder lists nothing */
    lm_status st = LM_OK;
    for (struct dirent *e; st == LM_OK && (e = readdir(d));) {
        char name[PATH_MAX], full[PATH_MAX];
        struct stat sb;
        if (e->d_name[0] == '.')
            continue;
        int n = snprintf(name, sizeof(name), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        if (n < 0 || (size_t)n >= sizeof(name) || !lm_path_join(full, sizeof(full), dir, name) ||
            stat(full, &sb) != 0)
            continue;
        bool is_dir = S_ISDIR(sb.st_mode);
        if (is_dir && folders && lm_sd3_diffusers_is_folder(full))
            st = lm_strlist_contains(out, name) ? LM_OK : lm_strlist_push(out, name, err);
        else if (is_dir && depth < LM_SD3_MODELS_MAX_DEPTH)
            st = list_dir(dir, name, depth + 1, folders, out, err);
        else if (S_ISREG(sb.st_mode) && is_model_name(e->d_name) && !lm_strlist_contains(out, name))
            st = lm_strlist_push(out, name, err);
    }
    closedir(d);
    return st;
}

lm_status lm_sd3_models_list(const lm_env *env, lm_sd3_folder folder, lm_strlist *out,
                             lm_error *err)
{
    if (!env || !env->models_dir || (unsigned)folder >= LM_SD3_FOLDER_COUNT)
        return LM_OK;
    size_t first = out->count;
    for (int i = 0; folder_dirs[folder][i]; i++) {
        char dir[PATH_MAX];
        if (!lm_path_join(dir, sizeof(dir), env->models_dir, folder_dirs[folder][i]))
            continue;
        lm_status st = list_dir(dir, "", 0, folder == LM_SD3_FOLDER_CHECKPOINTS, out, err);
        if (st != LM_OK)
            return st;
    }
    if (out->count > first)
        qsort(out->items + first, out->count - first, sizeof(*out->items), compare_names);
    return LM_OK;
}

/* "a.safetensors, b.safetensors" (at most what fits) of the folder's names. */
static void available(const lm_env *env, lm_sd3_folder folder, char *buf, size_t size)
{
    lm_strlist list = { 0 };
    lm_error ignored;
    buf[0] = '\0';
    lm_sd3_models_list(env, folder, &list, &ignored);
    size_t len = 0;
    for (size_t i = 0; i < list.count && len + 1 < size; i++) {
        int n = snprintf(buf + len, size - len, "%s%s", i ? ", " : "", list.items[i]);
        if (n < 0 || (size_t)n >= size - len)
            break;
        len += (size_t)n;
    }
    if (list.count == 0)
        snprintf(buf, size, "none");
    lm_strlist_fini(&list);
}

lm_status lm_sd3_models_path(const lm_env *env, lm_sd3_folder folder, const char *name,
                             const char *input, char *path, size_t size, lm_error *err)
{
    const char *sub = lm_sd3_folder_name(folder);
    if (!name || !lm_path_is_confined(name)) {
        lm_errorf(err, LM_EINVAL, "value_not_in_list",
                  "model name \"%.100s\" is not a file name inside models/%s", name ? name : "",
                  sub);
        lm_error_hint(err, "name a file inside the folder (no absolute path, no \"..\")");
        lm_error_at_node(err, NULL, NULL, input);
        return LM_EINVAL;
    }
    for (int i = 0; env && env->models_dir && folder_dirs[folder][i]; i++) {
        char dir[PATH_MAX];
        struct stat sb;
        if (lm_path_join(dir, sizeof(dir), env->models_dir, folder_dirs[folder][i]) &&
            lm_path_join(path, size, dir, name) && stat(path, &sb) == 0 &&
            (S_ISREG(sb.st_mode) ||
             (folder == LM_SD3_FOLDER_CHECKPOINTS && lm_sd3_diffusers_is_folder(path))))
            return LM_OK;
    }
    char names[200];
    available(env, folder, names, sizeof(names));
    lm_errorf(err, LM_ENOTFOUND, "value_not_in_list", "model \"%.100s\" is not in models/%s", name,
              sub);
    lm_error_hint(err, "available: %s", names);
    lm_error_at_node(err, NULL, NULL, input);
    return LM_ENOTFOUND;
}

/* ---- tokenizers ---- */

static bool has_tokenizers(const char *dir)
{
    char p[PATH_MAX];
    struct stat sb;
    return lm_path_join(p, sizeof(p), dir, "clip/vocab.json") && stat(p, &sb) == 0;
}

/* The tokenizers shipped with Loom: models/tokenizers of the source tree the program was
 * built in, found by walking up from the program (build/loom, build/asan/loom). */
static void shipped_tokenizers(char *out, size_t size)
{
    char dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
    out[0] = '\0';
    if (n <= 0)
        return;
    dir[n] = '\0';
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
            return;
        *slash = '\0';
        if (lm_path_join(out, size, dir, "models/tokenizers") && has_tokenizers(out))
            return;
    }
    out[0] = '\0';
}

lm_status lm_sd3_tokenizer_dir(const lm_env *env, char *dir, size_t size, lm_error *err)
{
    char cand[5][PATH_MAX] = { { 0 } };
    const char *models = env && env->models_dir ? env->models_dir : NULL;
    const char *tok = getenv("LOOM_TOKENIZERS"), *shared = getenv("LOOM_SHARED");
    if (tok && tok[0])
        lm_strlcpy(cand[0], tok, sizeof(cand[0]));
    if (models) {
        lm_path_join(cand[1], sizeof(cand[1]), models, "tokenizers");
        lm_path_join(cand[2], sizeof(cand[2]), models, "../tokenizers");
    }
    shipped_tokenizers(cand[3], sizeof(cand[3]));
    if (shared && shared[0])
        lm_path_join(cand[4], sizeof(cand[4]), shared, "tokenizers");
    for (int i = 0; i < 5; i++) {
        if (cand[i][0] && has_tokenizers(cand[i]) && lm_strlcpy(dir, cand[i], size))
            return LM_OK;
    }
    lm_errorf(err, LM_ENOTFOUND, "tokenizers_missing",
              "no tokenizer directory (clip/vocab.json, clip/merges.txt, t5/spiece.model) was "
              "found");
    lm_error_hint(err, "put the tokenizers into %.60s/tokenizers or set LOOM_TOKENIZERS",
                  models ? models : "models");
    return LM_ENOTFOUND;
}
