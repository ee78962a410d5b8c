/* core/io/safetensors.c — open, check and look up a single safetensors file.
 *
 * The file is mapped read-only in one piece. The JSON header is copied into a terminated
 * buffer (cJSON never sees the mapping, so no parser over-read can reach past the file)
 * after a bracket scan rejects deep nesting. Each tensor entry is checked on its own
 * (dtype, shape, offsets inside the data section, bytes = numel * dtype size), then the
 * entries, sorted by offset, must tile the data section exactly: no overlap, no hole, no
 * trailing bytes — the same rule as the reference implementation, so a file it accepts is
 * accepted here and vice versa. Names and metadata strings are copied into one pool; the
 * entries point into it and into the mapping. */
#include "core/io/safetensors.h"

#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/safetensors_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    size_t size;
    int lm; /* lm_dtype, or -1 */
} dtypes[LM_SAFETENSORS_DTYPE_COUNT] = {
    [LM_SAFETENSORS_F64] = { "F64", 8, -1 },
    [LM_SAFETENSORS_F32] = { "F32", 4, LM_DTYPE_F32 },
    [LM_SAFETENSORS_F16] = { "F16", 2, LM_DTYPE_F16 },
    [LM_SAFETENSORS_BF16] = { "BF16", 2, LM_DTYPE_BF16 },
    [LM_SAFETENSORS_F8_E4M3] = { "F8_E4M3", 1, LM_DTYPE_F8_E4M3 },
    [LM_SAFETENSORS_F8_E5M2] = { "F8_E5M2", 1, -1 },
    [LM_SAFETENSORS_I64] = { "I64", 8, LM_DTYPE_I64 },
    [LM_SAFETENSORS_I32] = { "I32", 4, LM_DTYPE_I32 },
    [LM_SAFETENSORS_I16] = { "I16", 2, -1 },
    [LM_SAFETENSORS_I8] = { "I8", 1, -1 },
    [LM_SAFETENSORS_U64] = { "U64", 8, -1 },
    [LM_SAFETENSORS_U32] = { "U32", 4, -1 },
    [LM_SAFETENSORS_U16] = { "U16", 2, -1 },
    [LM_SAFETENSORS_U8] = { "U8", 1, LM_DTYPE_U8 },
    [LM_SAFETENSORS_BOOL] = { "BOOL", 1, -1 },
};

const char *lm_safetensors_dtype_name(lm_safetensors_dtype dtype)
{
    return (unsigned)dtype < LM_SAFETENSORS_DTYPE_COUNT ? dtypes[dtype].name : "?";
}

size_t lm_safetensors_dtype_size(lm_safetensors_dtype dtype)
{
    return (unsigned)dtype < LM_SAFETENSORS_DTYPE_COUNT ? dtypes[dtype].size : 0;
}

bool lm_safetensors_dtype_to_lm(lm_safetensors_dtype dtype, lm_dtype *out)
{
    if ((unsigned)dtype >= LM_SAFETENSORS_DTYPE_COUNT || dtypes[dtype].lm < 0)
        return false;
    *out = (lm_dtype)dtypes[dtype].lm;
    return true;
}

static bool dtype_parse(const char *name, lm_safetensors_dtype *out)
{
    for (int i = 0; i < LM_SAFETENSORS_DTYPE_COUNT; i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (lm_safetensors_dtype)i;
            return true;
        }
    }
    return false;
}

/* ---- the set object ---- */

lm_safetensors *lm_safetensors__new(const char *path)
{
    lm_safetensors *st = lm_calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->path = lm_strdup(path ? path : "(memory)");
    if (!st->path) {
        lm_free(st);
        return NULL;
    }
    atomic_init(&st->refs, 1);
    return st;
}

bool lm_safetensors__pool_reserve(lm_safetensors *st, size_t bytes)
{
    st->pool = lm_malloc(bytes ? bytes : 1);
    st->pool_cap = bytes;
    st->pool_used = 0;
    return st->pool != NULL;
}

const char *lm_safetensors__pool_add(lm_safetensors *st, const char *s)
{
    size_t n = strlen(s) + 1;
    LM_ASSERT(st->pool_used + n <= st->pool_cap);
    char *at = st->pool + st->pool_used;
    memcpy(at, s, n);
    st->pool_used += n;
    return at;
}

static void destroy(lm_safetensors *st)
{
    for (size_t i = 0; i < st->n_shards; i++)
        lm_safetensors_close(st->shards[i]);
    if (st->mapped)
        munmap(st->map, st->map_size);
    lm_free(st->shards);
    lm_free(st->entries);
    lm_free(st->meta);
    lm_free(st->pool);
    lm_free(st->path);
    lm_free(st);
}

void lm_safetensors_close(lm_safetensors *st)
{
    if (st && atomic_fetch_sub(&st->refs, 1) == 1)
        destroy(st);
}

/* ---- messages ---- */

void lm_safetensors__show(char *buf, size_t size, const char *name)
{
    size_t limit = size > 4 ? size - 4 : 0, at = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p && at < limit; p++)
        buf[at++] = (char)((*p < 0x20 || *p == 0x7f) ? '?' : *p);
    if (name[at] && at == limit && size >= 4) {
        memcpy(buf + at, "...", 3);
        at += 3;
    }
    if (size)
        buf[at < size ? at : size - 1] = '\0';
}

/* Sets a message about one tensor: 'tensor "<name>": <text>'. */
static lm_status tensor_error(lm_error *err, lm_status code, const char *kind, const char *name,
                              const char *text, const char *hint)
{
    char shown[100];
    lm_safetensors__show(shown, sizeof(shown), name);
    lm_errorf(err, code, kind, "tensor \"%s\": %s", shown, text);
    if (hint)
        lm_error_hint(err, "%s", hint);
    return code;
}

#define HINT_DAMAGED   "the file is damaged or not a safetensors file; download it again"
#define HINT_TRUNCATED "it is truncated; download it again"

lm_status lm_safetensors__check_depth(const char *text, size_t len, lm_error *err)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > LM_SAFETENSORS_MAX_DEPTH) {
                lm_errorf(err, LM_ELIMIT, "header_too_deep",
                          "the JSON header nests deeper than %d levels (at byte %zu)",
                          LM_SAFETENSORS_MAX_DEPTH, i);
                lm_error_hint(err, HINT_DAMAGED);
                return LM_ELIMIT;
            }
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return LM_OK;
}

/* ---- parsing one header ---- */

typedef struct {
    const uint8_t *data; /* start of the data section */
    uint64_t data_size;
    uint64_t data_start; /* file offset of the data section */
} layout;

static bool json_u64(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != floor(d))
        return false; /* negative, NaN, above 2^53 (inexact in JSON numbers) or fractional */
    *out = (uint64_t)d;
    return true;
}

static lm_status parse_shape(lm_safetensors_entry *e, const cJSON *shape, uint64_t *numel,
                             lm_error *err)
{
    if (!cJSON_IsArray(shape))
        return tensor_error(err, LM_EFORMAT, "bad_shape", e->name,
                            "\"shape\" is missing or not an array", HINT_DAMAGED);
    int n = cJSON_GetArraySize(shape);
    if (n > LM_SAFETENSORS_MAX_DIMS)
        return tensor_error(err, LM_EUNSUPPORTED, "bad_shape", e->name,
                            "the shape has more than 8 dimensions", HINT_DAMAGED);
    e->ndim = n;
    *numel = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
        uint64_t v;
        if (!json_u64(dim, &v))
            return tensor_error(err, LM_EFORMAT, "bad_shape", e->name,
                                "a dimension of \"shape\" is not a non-negative integer",
                                HINT_DAMAGED);
        e->shape[d] = (int64_t)v;
        if (v && *numel > UINT64_MAX / v)
            overflow = true;
        *numel *= v;
    }
    if (overflow || (*numel && *numel > UINT64_MAX / lm_safetensors_dtype_size(e->dtype)))
        return tensor_error(err, LM_ERANGE, "bad_shape", e->name,
                            "the shape has more bytes than 64 bits can count", HINT_DAMAGED);
    return LM_OK;
}

static lm_status parse_offsets(lm_safetensors_entry *e, const cJSON *offsets, uint64_t numel,
                               const layout *lay, lm_error *err)
{
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_u64(offsets->child, &begin) || !json_u64(offsets->child->next, &end))
        return tensor_error(err, LM_EFORMAT, "bad_offsets", e->name,
                            "\"data_offsets\" is not a pair of non-negative integers",
                            HINT_DAMAGED);
    char text[200];
    if (begin > end) {
        snprintf(text, sizeof(text), "data_offsets [%llu, %llu] are reversed",
                 (unsigned long long)begin, (unsigned long long)end);
        return tensor_error(err, LM_EFORMAT, "bad_offsets", e->name, text, HINT_DAMAGED);
    }
    if (end > lay->data_size) {
        snprintf(text, sizeof(text), "needs bytes up to %llu but the file has %llu",
                 (unsigned long long)(lay->data_start + end),
                 (unsigned long long)(lay->data_start + lay->data_size));
        return tensor_error(err, LM_EFORMAT, "truncated", e->name, text, HINT_TRUNCATED);
    }
    uint64_t need = numel * lm_safetensors_dtype_size(e->dtype);
    if (end - begin != need) {
        snprintf(text, sizeof(text),
                 "its shape needs %llu bytes of %s but data_offsets [%llu, "
                 "%llu] hold %llu",
                 (unsigned long long)need, lm_safetensors_dtype_name(e->dtype),
                 (unsigned long long)begin, (unsigned long long)end,
                 (unsigned long long)(end - begin));
        return tensor_error(err, LM_EFORMAT, "bad_size", e->name, text, HINT_DAMAGED);
    }
    e->offset = begin;
    e->bytes = (size_t)need;
    e->data = lay->data + begin;
    return LM_OK;
}

static lm_status parse_entry(lm_safetensors_entry *e, const cJSON *item, const layout *lay,
                             lm_error *err)
{
    if (!cJSON_IsObject(item))
        return tensor_error(err, LM_EFORMAT, "bad_entry", e->name,
                            "the header entry is not an object with dtype, shape and "
                            "data_offsets",
                            HINT_DAMAGED);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dtype))
        return tensor_error(err, LM_EFORMAT, "bad_dtype", e->name,
                            "\"dtype\" is missing or not a string", HINT_DAMAGED);
    if (!dtype_parse(dtype->valuestring, &e->dtype)) {
        char text[160], shown[40];
        lm_safetensors__show(shown, sizeof(shown), dtype->valuestring);
        snprintf(text, sizeof(text), "unknown dtype \"%s\"", shown);
        return tensor_error(err, LM_EUNSUPPORTED, "unknown_dtype", e->name, text,
                            "Loom reads F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U64 "
                            "U32 U16 U8 BOOL; convert the checkpoint");
    }
    uint64_t numel = 0;
    lm_status st = parse_shape(e, cJSON_GetObjectItemCaseSensitive(item, "shape"), &numel, err);
    if (st != LM_OK)
        return st;
    return parse_offsets(e, cJSON_GetObjectItemCaseSensitive(item, "data_offsets"), numel, lay,
                         err);
}

static lm_status parse_metadata(lm_safetensors *st, const cJSON *item, lm_error *err)
{
    if (!cJSON_IsObject(item)) {
        lm_errorf(err, LM_EFORMAT, "bad_metadata", "\"__metadata__\" is not a map of strings");
        lm_error_hint(err, HINT_DAMAGED);
        return LM_EFORMAT;
    }
    int n = cJSON_GetArraySize(item);
    st->meta = lm_calloc((size_t)n + 1, sizeof(*st->meta));
    if (!st->meta)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the header");
    for (const cJSON *kv = item->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv)) {
            char shown[100];
            lm_safetensors__show(shown, sizeof(shown), kv->string);
            lm_errorf(err, LM_EFORMAT, "bad_metadata",
                      "\"__metadata__\" value of \"%s\" is not a string", shown);
            lm_error_hint(err, HINT_DAMAGED);
            return LM_EFORMAT;
        }
        lm_safetensors__meta *m = &st->meta[st->n_meta];
        m->key = lm_safetensors__pool_add(st, kv->string);
        m->value = lm_safetensors__pool_add(st, kv->valuestring);
        m->rank = st->n_meta++;
    }
    return lm_safetensors__sort_meta(st, false, err);
}

/* Bytes of the pool: every name, metadata key and string value, with terminators. */
static size_t pool_size(const cJSON *root)
{
    size_t n = 0;
    for (const cJSON *item = root->child; item; item = item->next) {
        n += strlen(item->string) + 1;
        if (strcmp(item->string, "__metadata__") != 0 || !cJSON_IsObject(item))
            continue;
        for (const cJSON *kv = item->child; kv; kv = kv->next)
            n += strlen(kv->string) + 1 + (cJSON_IsString(kv) ? strlen(kv->valuestring) + 1 : 0);
    }
    return n;
}

static lm_status parse_entries(lm_safetensors *st, const cJSON *root, const layout *lay,
                               lm_error *err)
{
    if (!lm_safetensors__pool_reserve(st, pool_size(root)))
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the header");
    st->entries = lm_calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof(*st->entries));
    if (!st->entries)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the header");
    for (const cJSON *item = root->child; item; item = item->next) {
        lm_status s;
        if (strcmp(item->string, "__metadata__") == 0) {
            if (st->meta)
                s = lm_errorf(err, LM_EFORMAT, "bad_metadata",
                              "\"__metadata__\" appears twice in the header");
            else
                s = parse_metadata(st, item, err);
        } else {
            lm_safetensors_entry *e = &st->entries[st->count++];
            e->name = lm_safetensors__pool_add(st, item->string);
            e->file = st->path;
            s = parse_entry(e, item, lay, err);
        }
        if (s != LM_OK)
            return s;
    }
    return LM_OK;
}

/* ---- the data section must be tiled exactly ---- */

static int by_offset(const void *a, const void *b)
{
    const lm_safetensors_entry *x = *(const lm_safetensors_entry *const *)a;
    const lm_safetensors_entry *y = *(const lm_safetensors_entry *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->bytes < y->bytes ? -1 : x->bytes > y->bytes;
}

static lm_status gap_error(const lm_safetensors_entry *prev, const lm_safetensors_entry *e,
                           uint64_t at, lm_error *err)
{
    char text[240], shown[100];
    if (e->offset < at) {
        lm_safetensors__show(shown, sizeof(shown), prev->name);
        snprintf(text, sizeof(text),
                 "its data_offsets start at %llu, inside tensor \"%s\" "
                 "which ends at %llu (overlap)",
                 (unsigned long long)e->offset, shown, (unsigned long long)at);
    } else {
        snprintf(text, sizeof(text),
                 "its data_offsets start at %llu but the previous tensor "
                 "ends at %llu (a hole of %llu bytes)",
                 (unsigned long long)e->offset, (unsigned long long)at,
                 (unsigned long long)(e->offset - at));
    }
    return tensor_error(err, LM_EFORMAT, "bad_offsets", e->name, text, HINT_DAMAGED);
}

static lm_status check_tiling(const lm_safetensors *st, const layout *lay, lm_error *err)
{
    const lm_safetensors_entry **order = lm_calloc(st->count + 1, sizeof(*order));
    if (!order)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the header");
    for (size_t i = 0; i < st->count; i++)
        order[i] = &st->entries[i];
    qsort(order, st->count, sizeof(*order), by_offset);
    uint64_t at = 0;
    lm_status s = LM_OK;
    for (size_t i = 0; i < st->count && s == LM_OK; i++) {
        if (order[i]->offset != at)
            s = gap_error(i ? order[i - 1] : NULL, order[i], at, err);
        at = order[i]->offset + order[i]->bytes;
    }
    lm_free(order);
    if (s == LM_OK && at != lay->data_size) {
        lm_errorf(err, LM_EFORMAT, "trailing_bytes",
                  "%llu bytes after the last tensor are not described by the header",
                  (unsigned long long)(lay->data_size - at));
        lm_error_hint(err, HINT_DAMAGED);
        s = LM_EFORMAT;
    }
    return s;
}

/* ---- sorting and lookup ---- */

static int by_name(const void *a, const void *b)
{
    return strcmp(((const lm_safetensors_entry *)a)->name, ((const lm_safetensors_entry *)b)->name);
}

lm_status lm_safetensors__sort_entries(lm_safetensors *st, lm_error *err)
{
    qsort(st->entries, st->count, sizeof(*st->entries), by_name);
    for (size_t i = 1; i < st->count; i++) {
        if (strcmp(st->entries[i - 1].name, st->entries[i].name) == 0)
            return tensor_error(err, LM_EFORMAT, "duplicate_tensor", st->entries[i].name,
                                "the name appears twice in the header", HINT_DAMAGED);
    }
    return LM_OK;
}

static int meta_cmp(const void *a, const void *b)
{
    const lm_safetensors__meta *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->rank > y->rank) - (x->rank < y->rank);
}

lm_status lm_safetensors__sort_meta(lm_safetensors *st, bool dedupe, lm_error *err)
{
    qsort(st->meta, st->n_meta, sizeof(*st->meta), meta_cmp);
    size_t kept = 0;
    for (size_t i = 0; i < st->n_meta; i++) {
        if (kept && strcmp(st->meta[kept - 1].key, st->meta[i].key) == 0) {
            if (dedupe)
                continue;
            char shown[100];
            lm_safetensors__show(shown, sizeof(shown), st->meta[i].key);
            lm_errorf(err, LM_EFORMAT, "bad_metadata",
                      "metadata key \"%s\" appears twice in the header", shown);
            lm_error_hint(err, HINT_DAMAGED);
            return LM_EFORMAT;
        }
        st->meta[kept++] = st->meta[i];
    }
    st->n_meta = kept;
    return LM_OK;
}

const char *lm_safetensors_path(const lm_safetensors *st)
{
    return st->path;
}

uint64_t lm_safetensors_file_bytes(const lm_safetensors *st)
{
    return st->file_bytes;
}

size_t lm_safetensors_count(const lm_safetensors *st)
{
    return st->count;
}

const lm_safetensors_entry *lm_safetensors_at(const lm_safetensors *st, size_t i)
{
    return i < st->count ? &st->entries[i] : NULL;
}

/* First index whose name is >= key. */
static size_t lower_bound(const lm_safetensors *st, const char *key)
{
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(st->entries[mid].name, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const lm_safetensors_entry *lm_safetensors_find(const lm_safetensors *st, const char *name)
{
    size_t i = lower_bound(st, name);
    return i < st->count && strcmp(st->entries[i].name, name) == 0 ? &st->entries[i] : NULL;
}

size_t lm_safetensors_find_prefix(const lm_safetensors *st, const char *prefix, size_t *first)
{
    size_t i = lower_bound(st, prefix), n = strlen(prefix), end = i;
    while (end < st->count && strncmp(st->entries[end].name, prefix, n) == 0)
        end++;
    if (first)
        *first = i;
    return end - i;
}

size_t lm_safetensors_metadata_count(const lm_safetensors *st)
{
    return st->n_meta;
}

void lm_safetensors_metadata_at(const lm_safetensors *st, size_t i, const char **key,
                                const char **value)
{
    LM_ASSERT(i < st->n_meta);
    if (key)
        *key = st->meta[i].key;
    if (value)
        *value = st->meta[i].value;
}

const char *lm_safetensors_metadata(const lm_safetensors *st, const char *key)
{
    size_t lo = 0, hi = st->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->meta[mid].key, key);
        if (c == 0)
            return st->meta[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- opening ---- */

static lm_status parse_header(lm_safetensors *st, const char *text, size_t len, const layout *lay,
                              lm_error *err)
{
    lm_status s = lm_safetensors__check_depth(text, len, err);
    if (s != LM_OK)
        return s;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        lm_errorf(err, LM_EFORMAT, "bad_header", "the header is not valid JSON (near byte %zu)",
                  at + 8);
        lm_error_hint(err, HINT_DAMAGED);
        return LM_EFORMAT;
    }
    size_t used = (size_t)(end - text);
    while (used < len && text[used] && strchr(" \t\r\n", text[used]))
        used++;
    if (used < len || !cJSON_IsObject(root)) {
        lm_errorf(err, LM_EFORMAT, "bad_header",
                  used < len ? "the header has bytes after its JSON object (at byte %zu)"
                             : "the header is JSON but not an object (at byte %zu)",
                  used + 8);
        lm_error_hint(err, HINT_DAMAGED);
        s = LM_EFORMAT;
    }
    if (s == LM_OK)
        s = parse_entries(st, root, lay, err);
    cJSON_Delete(root);
    if (s == LM_OK && !st->meta && !(st->meta = lm_calloc(1, sizeof(*st->meta))))
        s = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the header");
    if (s == LM_OK)
        s = lm_safetensors__sort_entries(st, err);
    return s == LM_OK ? check_tiling(st, lay, err) : s;
}

/* Checks the length prefix and hands the header to parse_header. */
static lm_status parse_image(lm_safetensors *st, const uint8_t *base, size_t size, lm_error *err)
{
    st->file_bytes = size;
    if (size < 8) {
        lm_errorf(err, LM_EFORMAT, "truncated",
                  "the file has %zu bytes, too few for a safetensors file (an 8-byte header "
                  "length, then a JSON header)",
                  size);
        lm_error_hint(err, "it is empty or truncated; download it again");
        return LM_EFORMAT;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | base[i];
    if (n > LM_SAFETENSORS_MAX_HEADER) {
        lm_errorf(err, LM_ELIMIT, "header_too_large",
                  "the header length is %llu bytes, above the limit of %u", (unsigned long long)n,
                  LM_SAFETENSORS_MAX_HEADER);
        lm_error_hint(err, "this is not a safetensors file, or it is damaged");
        return LM_ELIMIT;
    }
    if (n > size - 8) {
        lm_errorf(err, LM_EFORMAT, "truncated",
                  "the header length %llu goes past the end of the file (%zu bytes)",
                  (unsigned long long)n, size);
        lm_error_hint(err, "it is truncated or not a safetensors file; download it again");
        return LM_EFORMAT;
    }
    char *text = lm_malloc((size_t)n + 1);
    if (!text)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the header");
    memcpy(text, base + 8, (size_t)n);
    text[n] = '\0';
    layout lay = { base + 8 + n, size - 8 - n, 8 + n };
    lm_status s = parse_header(st, text, (size_t)n, &lay, err);
    lm_free(text);
    return s;
}

lm_status lm_safetensors_open_memory(lm_safetensors **out, const void *data, size_t size,
                                     const char *name, lm_error *err)
{
    *out = NULL;
    lm_safetensors *st = lm_safetensors__new(name);
    if (!st)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory opening a checkpoint");
    st->map = (void *)(uintptr_t)data;
    st->map_size = size;
    lm_status s = parse_image(st, data, size, err);
    if (s != LM_OK) {
        lm_error_at_file(err, st->path, 0, 0);
        destroy(st);
        return s;
    }
    *out = st;
    return LM_OK;
}

static lm_status map_file(lm_safetensors *st, const char *path, lm_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        lm_status code = errno == ENOENT ? LM_ENOTFOUND : LM_EIO;
        lm_errorf(err, code, "file_open", "cannot open the checkpoint: %s", strerror(errno));
        lm_error_hint(err, "check the path and the file's permissions");
        return code;
    }
    struct stat sb;
    lm_status s = LM_OK;
    if (fstat(fd, &sb) != 0)
        s = lm_errorf(err, LM_EIO, "file_open", "cannot stat the checkpoint: %s", strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        s = lm_errorf(err, LM_EINVAL, "file_open", "not a regular file");
    else if (sb.st_size >= 8) {
        st->map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (st->map == MAP_FAILED) {
            st->map = NULL;
            s = lm_errorf(err, LM_EIO, "file_map", "cannot map the checkpoint: %s",
                          strerror(errno));
        } else {
            st->mapped = true;
        }
    }
    if (s == LM_OK)
        st->map_size = (size_t)sb.st_size;
    else
        lm_error_hint(err, "check the path and the file's permissions");
    close(fd);
    return s;
}

lm_status lm_safetensors_open(lm_safetensors **out, const char *path, lm_error *err)
{
    *out = NULL;
    if (lm_str_ends_with(path, ".json"))
        return lm_safetensors__open_index(out, path, err);
    lm_safetensors *st = lm_safetensors__new(path);
    if (!st)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory opening a checkpoint");
    lm_status s = map_file(st, path, err);
    if (s == LM_OK)
        s = parse_image(st, st->map, st->map_size, err);
    if (s != LM_OK) {
        lm_error_at_file(err, path, 0, 0);
        destroy(st);
        return s;
    }
    *out = st;
    return LM_OK;
}

/* ---- tensors ---- */

static void release_ref(void *p)
{
    lm_safetensors_close(p);
}

static lm_status copy_tensor(lm_tensor **out, const lm_safetensors_entry *e, lm_dtype dtype,
                             lm_error *err)
{
    lm_status s = lm_tensor_new(out, lm_backend_cpu(), dtype, e->ndim, e->shape, err);
    if (s == LM_OK)
        memcpy(lm_tensor_data(*out), e->data, e->bytes);
    return s;
}

lm_status lm_safetensors_entry_tensor(lm_tensor **out, lm_safetensors *st,
                                      const lm_safetensors_entry *e, lm_error *err)
{
    *out = NULL;
    lm_dtype dtype;
    if (!lm_safetensors_dtype_to_lm(e->dtype, &dtype) || e->ndim > LM_MAX_DIMS) {
        char text[120];
        snprintf(text, sizeof(text), "%s with %d dimensions is not supported by Loom's tensors",
                 lm_safetensors_dtype_name(e->dtype), e->ndim);
        tensor_error(err, LM_EUNSUPPORTED, "unsupported_dtype", e->name, text,
                     "convert the checkpoint to F32, F16 or BF16");
        lm_error_at_file(err, e->file, 0, 0);
        return LM_EUNSUPPORTED;
    }
    lm_status s;
    if ((uintptr_t)e->data % lm_dtype_size(dtype) != 0) {
        s = copy_tensor(out, e, dtype, err); /* the file misaligns it: loads must be aligned */
    } else {
        atomic_fetch_add(&st->refs, 1);
        s = lm_tensor_wrap(out, (void *)(uintptr_t)e->data, e->bytes, dtype, e->ndim, e->shape,
                           release_ref, st, err);
        if (s != LM_OK)
            atomic_fetch_sub(&st->refs, 1); /* the caller still holds its own reference */
    }
    if (s != LM_OK)
        lm_error_at_file(err, e->file, 0, 0);
    return s;
}

lm_status lm_safetensors_tensor(lm_tensor **out, lm_safetensors *st, const char *name,
                                lm_error *err)
{
    *out = NULL;
    const lm_safetensors_entry *e = lm_safetensors_find(st, name);
    if (!e) {
        tensor_error(err, LM_ENOTFOUND, "tensor_not_found", name, "not in the checkpoint",
                     "check the name with `loom tensors`");
        lm_error_at_file(err, st->path, 0, 0);
        return LM_ENOTFOUND;
    }
    return lm_safetensors_entry_tensor(out, st, e, err);
}
