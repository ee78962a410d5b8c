/* core/base/error.c — lm_error formatting and lm_diag lists. */
#include "core/base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lm__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "loom: internal error: assertion \"%s\" failed at %s:%d\n", expr, file, line);
    abort();
}

static void copy_str(char *dst, size_t size, const char *src)
{
    if (!src) {
        dst[0] = '\0';
        return;
    }
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void lm_error_clear(lm_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

/* Clears err and sets its code, kind and message: what lm_errorf and lm_diag_addf write. */
static void error_set(lm_error *err, lm_status code, const char *kind, const char *fmt, va_list ap)
    LM_PRINTF(4, 0);

static void error_set(lm_error *err, lm_status code, const char *kind, const char *fmt, va_list ap)
{
    memset(err, 0, sizeof(*err));
    err->code = code;
    copy_str(err->kind, sizeof(err->kind), kind);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

lm_status lm_errorf(lm_error *err, lm_status code, const char *kind, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    error_set(err, code, kind, fmt, ap);
    va_end(ap);
    return code;
}

void lm_error_hint(lm_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->hint, sizeof(err->hint), fmt, ap);
    va_end(ap);
}

void lm_error_at_file(lm_error *err, const char *file, int line, int col)
{
    if (!err || err->file[0])
        return;
    copy_str(err->file, sizeof(err->file), file);
    err->line = line;
    err->col = col;
}

void lm_error_at_node(lm_error *err, const char *node_id, const char *node_type, const char *input)
{
    if (!err)
        return;
    if (!err->node_id[0]) {
        copy_str(err->node_id, sizeof(err->node_id), node_id);
        copy_str(err->node_type, sizeof(err->node_type), node_type);
    }
    if (!err->input[0])
        copy_str(err->input, sizeof(err->input), input);
}

static size_t append(char *buf, size_t size, size_t at, const char *fmt, ...) LM_PRINTF(4, 5);

static size_t append(char *buf, size_t size, size_t at, const char *fmt, ...)
{
    if (at >= size)
        return at;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + at, size - at, fmt, ap);
    va_end(ap);
    return n < 0 ? at : at + (size_t)n;
}

void lm_error_format(const lm_error *err, char *buf, size_t size)
{
    if (!size)
        return;
    buf[0] = '\0';
    if (!err)
        return;
    size_t at = 0;
    if (err->file[0]) {
        at = append(buf, size, at, "%s", err->file);
        if (err->line > 0)
            at = append(buf, size, at, ":%d:%d", err->line, err->col > 0 ? err->col : 1);
        at = append(buf, size, at, ": ");
    }
    if (err->node_id[0]) {
        at = append(buf, size, at, "node \"%s\"", err->node_id);
        if (err->node_type[0])
            at = append(buf, size, at, " (%s)", err->node_type);
        if (err->input[0])
            at = append(buf, size, at, " input \"%s\"", err->input);
        at = append(buf, size, at, ": ");
    } else if (err->input[0]) {
        at = append(buf, size, at, "\"%s\": ", err->input);
    }
    at = append(buf, size, at, "%s", err->msg[0] ? err->msg : lm_status_str(err->code));
    if (err->hint[0])
        at = append(buf, size, at, "; %s", err->hint);
    size_t len = strlen(buf);
    if (len > 0 && len + 1 < size && !strchr(".?!", buf[len - 1]))
        append(buf, size, len, ".");
}

const char *lm_status_str(lm_status code)
{
    switch (code) {
    case LM_OK:
        return "ok";
    case LM_EINVAL:
        return "invalid input";
    case LM_ENOTFOUND:
        return "not found";
    case LM_ETYPE:
        return "wrong type";
    case LM_ERANGE:
        return "out of range";
    case LM_EFORMAT:
        return "malformed data";
    case LM_EIO:
        return "input/output error";
    case LM_ENOMEM:
        return "out of memory";
    case LM_ELIMIT:
        return "limit exceeded";
    case LM_ECANCELLED:
        return "interrupted";
    case LM_EUNSUPPORTED:
        return "not supported";
    case LM_EINTERNAL:
        return "internal error";
    }
    return "unknown error";
}

void lm_diag_init(lm_diag *diag)
{
    memset(diag, 0, sizeof(*diag));
}

void lm_diag_fini(lm_diag *diag)
{
    if (!diag)
        return;
    free(diag->items);
    memset(diag, 0, sizeof(*diag));
}

static lm_error *diag_slot(lm_diag *diag)
{
    if (diag->count == diag->cap) {
        size_t cap = diag->cap ? diag->cap * 2 : 8;
        lm_error *items = realloc(diag->items, cap * sizeof(*items));
        if (!items)
            return NULL;
        diag->items = items;
        diag->cap = cap;
    }
    return &diag->items[diag->count++];
}

void lm_diag_push(lm_diag *diag, const lm_error *err)
{
    lm_error *slot = diag_slot(diag);
    if (slot)
        *slot = *err;
}

lm_error *lm_diag_addf(lm_diag *diag, lm_status code, const char *kind, const char *fmt, ...)
{
    lm_error *slot = diag_slot(diag);
    if (!slot)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    error_set(slot, code, kind, fmt, ap);
    va_end(ap);
    return slot;
}
