/* core/io/safetensors_index.c — sharded checkpoints (`*.safetensors.index.json`).
 *
 * The index is {"metadata": {...}, "weight_map": {tensor name: shard file}}, as diffusers
 * and transformers write it. Each distinct shard (a plain name inside the index's
 * directory: no "..", no absolute path) is opened as an ordinary set; the index set holds a
 * reference to each and lists exactly the weight_map's tensors, borrowing entries from the
 * shards. A tensor the weight_map names but its shard lacks, or a name listed twice, is an
 * error. Metadata: the index's own (values that are not strings rendered as JSON text,
 * e.g. "total_size"), then each shard's keys not already present. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/safetensors_impl.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static lm_status index_error(lm_error *err, lm_status code, const char *kind, const char *name,
                             const char *text)
{
    char shown[100];
    lm_safetensors__show(shown, sizeof(shown), name);
    lm_errorf(err, code, kind, "tensor \"%s\": %s", shown, text);
    lm_error_hint(err, "fix the index's weight_map or download the checkpoint again");
    return code;
}

/* Sorted, distinct shard names of the weight_map (borrowed from the JSON tree). */
static lm_status shard_names(const cJSON *map, const char ***names_out, size_t *n_out,
                             lm_error *err)
{
    size_t n = (size_t)cJSON_GetArraySize(map), k = 0;
    const char **names = lm_calloc(n + 1, sizeof(*names));
    if (!names)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the index");
    for (const cJSON *kv = map->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv) || !lm_path_is_confined(kv->valuestring)) {
            lm_free(names);
            return index_error(err, LM_EFORMAT, "bad_index", kv->string,
                               "its shard is not a file name inside the index's directory");
        }
        names[k++] = kv->valuestring;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (!u || strcmp(names[u - 1], names[i]) != 0)
            names[u++] = names[i];
    *names_out = names;
    *n_out = u;
    return LM_OK;
}

static lm_status open_shards(lm_safetensors *st, const char **names, size_t n, const char *dir,
                             lm_error *err)
{
    st->shards = lm_calloc(n + 1, sizeof(*st->shards));
    if (!st->shards)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the index");
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        if (!lm_path_join(path, sizeof(path), dir, names[i]))
            return lm_errorf(err, LM_ELIMIT, "path_too_long",
                             "the path of shard \"%.100s\" is "
                             "too long",
                             names[i]);
        if (lm_str_ends_with(path, ".json"))
            return lm_errorf(err, LM_EFORMAT, "bad_index",
                             "shard \"%.100s\" is an index, "
                             "not a safetensors file",
                             names[i]);
        lm_status s = lm_safetensors_open(&st->shards[i], path, err);
        if (s != LM_OK)
            return s;
        st->n_shards++;
        st->file_bytes += lm_safetensors_file_bytes(st->shards[i]);
    }
    return LM_OK;
}

static lm_status index_entries(lm_safetensors *st, const cJSON *map, const char **names,
                               lm_error *err)
{
    st->entries = lm_calloc((size_t)cJSON_GetArraySize(map) + 1, sizeof(*st->entries));
    if (!st->entries)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the index");
    for (const cJSON *kv = map->child; kv; kv = kv->next) {
        const char **at = bsearch(&kv->valuestring, names, st->n_shards, sizeof(*names), cmp_str);
        LM_ASSERT(at != NULL);
        const lm_safetensors *shard = st->shards[at - names];
        const lm_safetensors_entry *e = lm_safetensors_find(shard, kv->string);
        if (!e) {
            char text[200];
            snprintf(text, sizeof(text),
                     "the weight_map puts it in \"%.100s\" but that shard "
                     "does not contain it",
                     kv->valuestring);
            return index_error(err, LM_ENOTFOUND, "tensor_not_found", kv->string, text);
        }
        st->entries[st->count++] = *e;
    }
    return lm_safetensors__sort_entries(st, err);
}

/* The index's metadata as strings: JSON strings as they are, other values as JSON text
 * (owned[i] then holds what cJSON printed). */
static lm_status index_meta_texts(const cJSON *meta, const char **texts, char **owned, size_t *pool,
                                  lm_error *err)
{
    size_t i = 0;
    for (const cJSON *kv = meta->child; kv; kv = kv->next, i++) {
        if (cJSON_IsString(kv)) {
            texts[i] = kv->valuestring;
        } else {
            texts[i] = owned[i] = cJSON_PrintUnformatted(kv);
            if (!owned[i])
                return lm_errorf(err, LM_ENOMEM, "out_of_memory",
                                 "out of memory reading the index");
        }
        *pool += strlen(kv->string) + strlen(texts[i]) + 2;
    }
    return LM_OK;
}

static lm_status add_index_meta(lm_safetensors *st, const cJSON *meta, lm_error *err)
{
    size_t n = (size_t)cJSON_GetArraySize(meta), pool = 0, i = 0;
    const char **texts = lm_calloc(n + 1, sizeof(*texts));
    char **owned = lm_calloc(n + 1, sizeof(*owned));
    lm_status s = texts && owned ? LM_OK
                                 : lm_errorf(err, LM_ENOMEM, "out_of_memory",
                                             "out of memory reading the index");
    if (s == LM_OK)
        s = index_meta_texts(meta, texts, owned, &pool, err);
    if (s == LM_OK && !lm_safetensors__pool_reserve(st, pool))
        s = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the index");
    for (const cJSON *kv = meta->child; s == LM_OK && kv; kv = kv->next, i++) {
        lm_safetensors__meta *m = &st->meta[st->n_meta];
        m->key = lm_safetensors__pool_add(st, kv->string);
        m->value = lm_safetensors__pool_add(st, texts[i]);
        m->rank = st->n_meta++;
    }
    for (i = 0; owned && i < n; i++)
        cJSON_free(owned[i]);
    lm_free(owned);
    lm_free(texts);
    return s;
}

static lm_status index_metadata(lm_safetensors *st, const cJSON *root, lm_error *err)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (meta && !cJSON_IsObject(meta) && !cJSON_IsNull(meta)) {
        lm_errorf(err, LM_EFORMAT, "bad_index", "\"metadata\" is not an object");
        lm_error_hint(err, "fix the index or download the checkpoint again");
        return LM_EFORMAT;
    }
    size_t total = cJSON_IsObject(meta) ? (size_t)cJSON_GetArraySize(meta) : 0;
    for (size_t i = 0; i < st->n_shards; i++)
        total += lm_safetensors_metadata_count(st->shards[i]);
    st->meta = lm_calloc(total + 1, sizeof(*st->meta));
    if (!st->meta)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the index");
    lm_status s = cJSON_IsObject(meta) ? add_index_meta(st, meta, err) : LM_OK;
    for (size_t i = 0; s == LM_OK && i < st->n_shards; i++) {
        for (size_t j = 0; j < lm_safetensors_metadata_count(st->shards[i]); j++) {
            lm_safetensors__meta *m = &st->meta[st->n_meta];
            lm_safetensors_metadata_at(st->shards[i], j, &m->key, &m->value);
            m->rank = st->n_meta++;
        }
    }
    return s == LM_OK ? lm_safetensors__sort_meta(st, true, err) : s;
}

static lm_status load_index(lm_safetensors *st, const cJSON *root, const char *dir, lm_error *err)
{
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(map)) {
        lm_errorf(err, LM_EFORMAT, "bad_index", "the file has no \"weight_map\" object");
        lm_error_hint(err, "a .json checkpoint must be a sharded index "
                           "(*.safetensors.index.json); open the .safetensors file instead");
        return LM_EFORMAT;
    }
    const char **names = NULL;
    size_t n = 0;
    lm_status s = shard_names(map, &names, &n, err);
    if (s == LM_OK)
        s = open_shards(st, names, n, dir, err);
    if (s == LM_OK)
        s = index_entries(st, map, names, err);
    lm_free(names);
    return s == LM_OK ? index_metadata(st, root, err) : s;
}

static lm_status parse_index(lm_safetensors *st, const char *text, size_t len, lm_error *err)
{
    lm_status s = lm_safetensors__check_depth(text, len, err);
    if (s != LM_OK)
        return s;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        lm_errorf(err, LM_EFORMAT, "bad_index", "the index is not valid JSON");
        lm_error_hint(err, "fix the file or download the checkpoint again");
        return LM_EFORMAT;
    }
    char dir[PATH_MAX] = ".";
    const char *slash = strrchr(st->path, '/');
    size_t n = slash ? (size_t)(slash - st->path) : 0;
    if (slash && n == 0)
        n = 1; /* an index in "/" */
    if (n >= sizeof(dir)) {
        s = lm_errorf(err, LM_ELIMIT, "path_too_long", "the index's path is too long");
    } else if (slash) {
        memcpy(dir, st->path, n);
        dir[n] = '\0';
    }
    if (s == LM_OK)
        s = load_index(st, root, dir, err);
    cJSON_Delete(root);
    return s;
}

lm_status lm_safetensors__open_index(lm_safetensors **out, const char *path, lm_error *err)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    lm_status s = lm_file_read(path, LM_SAFETENSORS_MAX_HEADER, &text, &len, err);
    if (s != LM_OK)
        return s;
    lm_safetensors *st = lm_safetensors__new(path);
    s = st ? parse_index(st, text, len, err)
           : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory opening a checkpoint");
    lm_free(text);
    if (s != LM_OK) {
        lm_error_at_file(err, path, 0, 0);
        lm_safetensors_close(st);
        return s;
    }
    *out = st;
    return LM_OK;
}
