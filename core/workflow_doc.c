/* core/workflow_doc.c — the text tree shared by the workflow readers and builders.
 * See workflow_doc.h. Duplicate keys are found by sorting the keys of a finished map (not
 * by a scan per key), so a huge map costs n log n, not n². */
#include "core/workflow_doc.h"

#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/workflow.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

lm_status lm_workflow__errorf(lm_error *err, const char *file, lm_srcloc loc, lm_status code,
                              const char *kind, const char *fmt, ...)
{
    if (!err)
        return code;
    char msg[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lm_errorf(err, code, kind, "%s", msg);
    lm_error_at_file(err, file, loc.line, loc.col);
    return code;
}

lm_doc *lm_workflow__doc_new(lm_doc_ctx *ctx, lm_doc_kind kind, lm_srcloc loc, lm_error *err)
{
    if (ctx->n_values >= LM_WORKFLOW_MAX_VALUES) {
        lm_workflow__errorf(err, ctx->name, loc, LM_ELIMIT, "workflow_too_large",
                            "the text holds more than %u values", LM_WORKFLOW_MAX_VALUES);
        lm_error_hint(err, "split the workflow into smaller files");
        return NULL;
    }
    lm_doc *d = lm_calloc(1, sizeof(*d));
    if (!d) {
        lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
        return NULL;
    }
    ctx->n_values++;
    d->kind = kind;
    d->loc = loc;
    return d;
}

void lm_workflow__doc_free(lm_doc *doc)
{
    if (!doc)
        return;
    for (size_t i = 0; i < doc->count; i++) {
        lm_free(doc->items[i].key);
        lm_workflow__doc_free(doc->items[i].value);
    }
    lm_free(doc->items);
    lm_free(doc->s);
    lm_free(doc);
}

lm_status lm_workflow__doc_append(lm_doc *container, char *key, lm_srcloc key_loc, lm_doc *value,
                                  lm_error *err)
{
    if (container->count == container->cap) {
        size_t ncap = container->cap ? container->cap * 2 : 4;
        lm_doc_entry *p = lm_realloc(container->items, ncap * sizeof(*p));
        if (!p) {
            lm_free(key);
            lm_workflow__doc_free(value);
            return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
        }
        container->items = p;
        container->cap = ncap;
    }
    container->items[container->count++] = (lm_doc_entry){ key, key_loc, value };
    if (container->height < value->height + 1)
        container->height = value->height + 1;
    return LM_OK;
}

static int cmp_entry_ptr(const void *a, const void *b)
{
    const lm_doc_entry *x = *(const lm_doc_entry *const *)a;
    const lm_doc_entry *y = *(const lm_doc_entry *const *)b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x < y ? -1 : x > y; /* equal keys keep text order: the second is reported */
}

lm_status lm_workflow__doc_check_keys(const lm_doc_ctx *ctx, const lm_doc *map, lm_error *err)
{
    if (map->count < 2)
        return LM_OK;
    const lm_doc_entry **sorted = lm_malloc(map->count * sizeof(*sorted));
    if (!sorted)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
    for (size_t i = 0; i < map->count; i++)
        sorted[i] = &map->items[i];
    qsort(sorted, map->count, sizeof(*sorted), cmp_entry_ptr);
    const lm_doc_entry *dup = NULL, *first = NULL;
    for (size_t i = 1; i < map->count; i++) {
        if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0 && (!dup || sorted[i] < dup)) {
            dup = sorted[i];
            first = sorted[i - 1];
        }
    }
    lm_free((void *)sorted);
    if (!dup)
        return LM_OK;
    lm_workflow__errorf(err, ctx->name, dup->key_loc, LM_EFORMAT, "duplicate_key",
                        "key \"%s\" appears twice (first at line %d)", dup->key,
                        first->key_loc.line);
    lm_error_hint(err, "remove or rename one of them");
    return LM_EFORMAT;
}

const lm_doc_entry *lm_workflow__doc_find(const lm_doc *map, const char *key)
{
    if (!map || map->kind != LM_DOC_MAP)
        return NULL;
    for (size_t i = 0; i < map->count; i++)
        if (strcmp(map->items[i].key, key) == 0)
            return &map->items[i];
    return NULL;
}

const lm_doc *lm_workflow__doc_get(const lm_doc *map, const char *key)
{
    const lm_doc_entry *e = lm_workflow__doc_find(map, key);
    return e ? e->value : NULL;
}

const char *lm_workflow__doc_kind_name(lm_doc_kind kind)
{
    switch (kind) {
    case LM_DOC_NULL:
        return "null (no value)";
    case LM_DOC_BOOL:
        return "a boolean";
    case LM_DOC_INT:
        return "an integer";
    case LM_DOC_FLOAT:
        return "a decimal number";
    case LM_DOC_STRING:
        return "a string";
    case LM_DOC_MAP:
        return "a map";
    case LM_DOC_SEQ:
        return "a list";
    }
    return "a value";
}

static void to_json(lm_str *s, const lm_doc *d)
{
    char buf[40];
    switch (d->kind) {
    case LM_DOC_NULL:
        lm_str_append(s, "null");
        return;
    case LM_DOC_BOOL:
        lm_str_append(s, d->b ? "true" : "false");
        return;
    case LM_DOC_INT:
        lm_str_appendf(s, "%" PRId64, d->i);
        return;
    case LM_DOC_FLOAT:
        snprintf(buf, sizeof(buf), "%.17g", d->f);
        lm_str_append(s, buf);
        return;
    case LM_DOC_STRING:
        lm_str_append_json(s, d->s);
        return;
    case LM_DOC_MAP:
    case LM_DOC_SEQ:
        break;
    }
    lm_str_append(s, d->kind == LM_DOC_MAP ? "{" : "[");
    for (size_t i = 0; i < d->count; i++) {
        if (i)
            lm_str_append(s, ", ");
        if (d->kind == LM_DOC_MAP) {
            lm_str_append_json(s, d->items[i].key);
            lm_str_append(s, ": ");
        }
        to_json(s, d->items[i].value);
    }
    lm_str_append(s, d->kind == LM_DOC_MAP ? "}" : "]");
}

char *lm_workflow__doc_to_json(const lm_doc *doc)
{
    lm_str s;
    lm_str_init(&s);
    to_json(&s, doc);
    return lm_str_take(&s);
}

bool lm_workflow__id_ok(const char *id, bool comfy)
{
    size_t n = strlen(id);
    if (n == 0 || n > 63)
        return false;
    for (const char *p = id; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || (comfy && (c == ':' || c == '/' || c == '.'));
        if (!ok)
            return false;
    }
    return true;
}
