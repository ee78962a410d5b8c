/* core/workflow_yaml.c — YAML text to the workflow tree, through libyaml's event parser.
 *
 * Events are folded into the tree of workflow_doc.h with an explicit stack (no recursion
 * on input depth) of at most LM_WORKFLOW_MAX_DEPTH containers. Plain scalars are typed by
 * the YAML 1.2 core schema: null/~, true/false, decimal, 0x hex and 0o octal integers,
 * floats (with .inf/.nan); quoted and block scalars are strings; `yes`/`no`/`on` stay
 * strings. Tags are refused. Anchors and aliases are supported by copying the anchored
 * value, each copy counted against LM_WORKFLOW_MAX_ALIASED, so "billion laughs" stops
 * after 65536 copied values; an alias to a value that is still open is refused. Only one
 * document per text. */
#include "core/base/alloc.h"
#include "core/workflow.h"
#include "core/workflow_doc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct {
    lm_doc *node; /* container being filled */
    char *key;    /* MAP: a key waiting for its value, or NULL */
    lm_srcloc key_loc;
    char *anchor; /* recorded when the container closes */
} yframe;

typedef struct {
    char *name;
    const lm_doc *node; /* borrowed from the tree */
} yanchor;

typedef struct {
    lm_doc_ctx *ctx;
    lm_error *err;
    const char *text;
    yframe stack[LM_WORKFLOW_MAX_DEPTH];
    int depth;
    yanchor *anchors;
    size_t n_anchors, cap_anchors;
    size_t aliased;
    int documents;
    lm_doc *root;
} yreader;

static lm_srcloc mark_loc(yaml_mark_t m)
{
    return (lm_srcloc){ (int)m.line + 1, (int)m.column + 1 };
}

static lm_status oom(yreader *r)
{
    return lm_errorf(r->err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
}

static lm_status fail(yreader *r, lm_srcloc loc, lm_status code, const char *kind, const char *msg,
                      const char *hint)
{
    lm_workflow__errorf(r->err, r->ctx->name, loc, code, kind, "%s", msg);
    if (hint)
        lm_error_hint(r->err, "%s", hint);
    return code;
}

/* Line and column (characters) of a byte offset, for libyaml's reader errors. */
static lm_srcloc offset_loc(const char *text, size_t offset)
{
    lm_srcloc loc = { 1, 1 };
    for (size_t i = 0; i < offset; i++) {
        if (text[i] == '\n') {
            loc.line++;
            loc.col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            loc.col++;
        }
    }
    return loc;
}

static lm_status syntax_error(yreader *r, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return oom(r);
    lm_srcloc loc = p->error == YAML_READER_ERROR ? offset_loc(r->text, p->problem_offset)
                                                  : mark_loc(p->problem_mark);
    char msg[256];
    const char *problem = p->problem ? p->problem : "malformed text";
    if (p->context)
        snprintf(msg, sizeof(msg), "YAML syntax error: %s (%s that starts at line %d col %d)",
                 problem, p->context, (int)p->context_mark.line + 1,
                 (int)p->context_mark.column + 1);
    else
        snprintf(msg, sizeof(msg), "YAML syntax error: %s", problem);
    return fail(r, loc, LM_EFORMAT, "syntax_error", msg,
                "check the indentation and the quoting near this place");
}

static bool scan_int(const char *s, int base, int64_t *out, bool *overflow)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++) {
        int d = *p >= '0' && *p <= '9'   ? *p - '0'
                : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
                : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10
                                         : 99;
        if (d >= base)
            return false;
    }
    errno = 0;
    *out = strtoll(s, NULL, base);
    *overflow = errno == ERANGE;
    return true;
}

/* Decimal (with sign), 0x hex or 0o octal; false when s is no integer. */
static bool resolve_int(const char *s, int64_t *out, bool *overflow)
{
    *overflow = false;
    if (s[0] == '0' && s[1] == 'x')
        return scan_int(s + 2, 16, out, overflow);
    if (s[0] == '0' && s[1] == 'o')
        return scan_int(s + 2, 8, out, overflow);
    const char *digits = s + (s[0] == '-' || s[0] == '+');
    if (!scan_int(digits, 10, out, overflow))
        return false;
    errno = 0;
    *out = strtoll(s, NULL, 10); /* again with the sign, so INT64_MIN reads */
    *overflow = errno == ERANGE;
    return true;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_float_text(const char *s)
{
    const char *p = s + (*s == '-' || *s == '+');
    size_t int_digits = strspn(p, "0123456789");
    p += int_digits;
    size_t frac_digits = 0;
    if (*p == '.') {
        frac_digits = strspn(p + 1, "0123456789");
        p += 1 + frac_digits;
    }
    if (int_digits == 0 && frac_digits == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        p += (*p == '-' || *p == '+');
        size_t exp_digits = strspn(p, "0123456789");
        if (!exp_digits)
            return false;
        p += exp_digits;
    }
    return *p == '\0';
}

static bool resolve_special_float(const char *s, double *out)
{
    const char *p = s + (*s == '-' || *s == '+');
    if (strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 || strcmp(p, ".INF") == 0) {
        *out = *s == '-' ? -HUGE_VAL : HUGE_VAL;
        return true;
    }
    if (p == s && (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0)) {
        *out = (double)NAN;
        return true;
    }
    return false;
}

static bool is_one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(s, *words) == 0)
            return true;
    return false;
}

/* Types a plain scalar by the YAML 1.2 core schema; d->s holds the text. */
static lm_status resolve_plain(yreader *r, lm_doc *d)
{
    static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
    static const char *const trues[] = { "true", "True", "TRUE", NULL };
    static const char *const falses[] = { "false", "False", "FALSE", NULL };
    bool overflow;
    if (is_one_of(d->s, nulls)) {
        d->kind = LM_DOC_NULL;
    } else if (is_one_of(d->s, trues) || is_one_of(d->s, falses)) {
        d->kind = LM_DOC_BOOL;
        d->b = is_one_of(d->s, trues);
    } else if (resolve_int(d->s, &d->i, &overflow)) {
        if (overflow)
            return fail(r, d->loc, LM_ERANGE, "number_out_of_range",
                        "integer is out of range (integers are 64-bit signed)",
                        "quote it to make it a string");
        d->kind = LM_DOC_INT;
    } else if (is_float_text(d->s)) {
        d->kind = LM_DOC_FLOAT;
        d->f = strtod(d->s, NULL);
    } else if (resolve_special_float(d->s, &d->f)) {
        d->kind = LM_DOC_FLOAT;
    } else {
        return LM_OK;
    }
    lm_free(d->s);
    d->s = NULL;
    return LM_OK;
}

static lm_status no_tag(yreader *r, const yaml_char_t *tag, yaml_mark_t at)
{
    if (!tag)
        return LM_OK;
    return fail(r, mark_loc(at), LM_EUNSUPPORTED, "syntax_error",
                "YAML tags (such as !!str) are not supported in workflows",
                "quote a value to make it a string; write {value: …} for any other literal");
}

/* Puts a finished value where it belongs: the root, a list, or a map under its key. */
static lm_status place(yreader *r, lm_doc *d)
{
    if (r->depth == 0) {
        r->root = d;
        return LM_OK;
    }
    yframe *f = &r->stack[r->depth - 1];
    char *key = f->key;
    f->key = NULL;
    return lm_workflow__doc_append(f->node, key, key ? f->key_loc : d->loc, d, r->err);
}

static lm_status remember(yreader *r, const char *anchor, const lm_doc *d)
{
    if (!anchor)
        return LM_OK;
    if (r->n_anchors == r->cap_anchors) {
        size_t ncap = r->cap_anchors ? r->cap_anchors * 2 : 8;
        yanchor *p = lm_realloc(r->anchors, ncap * sizeof(*p));
        if (!p)
            return oom(r);
        r->anchors = p;
        r->cap_anchors = ncap;
    }
    char *name = lm_strdup(anchor);
    if (!name)
        return oom(r);
    r->anchors[r->n_anchors++] = (yanchor){ name, d };
    return LM_OK;
}

static bool waiting_for_key(const yreader *r)
{
    if (r->depth == 0)
        return false;
    const yframe *f = &r->stack[r->depth - 1];
    return f->node->kind == LM_DOC_MAP && !f->key;
}

static lm_status on_scalar(yreader *r, const yaml_event_t *ev)
{
    lm_srcloc loc = mark_loc(ev->start_mark);
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    lm_status st = no_tag(r, ev->data.scalar.tag, ev->start_mark);
    if (st == LM_OK && memchr(text, '\0', len))
        st = fail(r, loc, LM_EFORMAT, "syntax_error", "a NUL character is not allowed here", NULL);
    if (st != LM_OK)
        return st;
    if (waiting_for_key(r)) {
        yframe *f = &r->stack[r->depth - 1];
        f->key = lm_strndup(text, len);
        f->key_loc = loc;
        return f->key ? LM_OK : oom(r);
    }
    lm_doc *d = lm_workflow__doc_new(r->ctx, LM_DOC_STRING, loc, r->err);
    if (!d)
        return r->err ? r->err->code : LM_ENOMEM;
    if (!(d->s = lm_strndup(text, len))) {
        lm_workflow__doc_free(d);
        return oom(r);
    }
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && (st = resolve_plain(r, d))) {
        lm_workflow__doc_free(d);
        return st;
    }
    st = remember(r, (const char *)ev->data.scalar.anchor, d);
    if (st != LM_OK) {
        lm_workflow__doc_free(d);
        return st;
    }
    return place(r, d);
}

static lm_status on_start(yreader *r, const yaml_event_t *ev, lm_doc_kind kind)
{
    lm_srcloc loc = mark_loc(ev->start_mark);
    const yaml_char_t *tag =
        kind == LM_DOC_MAP ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    const yaml_char_t *anchor =
        kind == LM_DOC_MAP ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    lm_status st = no_tag(r, tag, ev->start_mark);
    if (st != LM_OK)
        return st;
    if (waiting_for_key(r))
        return fail(r, loc, LM_EFORMAT, "syntax_error",
                    "a key must be a plain value, not a map or a list", NULL);
    if (r->depth >= LM_WORKFLOW_MAX_DEPTH) {
        char msg[80];
        snprintf(msg, sizeof(msg), "nesting deeper than %d levels", LM_WORKFLOW_MAX_DEPTH);
        return fail(r, loc, LM_ELIMIT, "nesting_too_deep", msg, NULL);
    }
    lm_doc *d = lm_workflow__doc_new(r->ctx, kind, loc, r->err);
    if (!d)
        return r->err ? r->err->code : LM_ENOMEM;
    char *anchor_copy = anchor ? lm_strdup((const char *)anchor) : NULL;
    if (anchor && !anchor_copy) {
        lm_workflow__doc_free(d);
        return oom(r);
    }
    r->stack[r->depth++] = (yframe){ d, NULL, { 0, 0 }, anchor_copy };
    return LM_OK;
}

static lm_status on_end(yreader *r)
{
    yframe f = r->stack[--r->depth];
    lm_status st = LM_OK;
    if (f.node->kind == LM_DOC_MAP)
        st = lm_workflow__doc_check_keys(r->ctx, f.node, r->err);
    if (st == LM_OK)
        st = remember(r, f.anchor, f.node);
    lm_free(f.anchor);
    lm_free(f.key);
    if (st != LM_OK) {
        lm_workflow__doc_free(f.node);
        return st;
    }
    return place(r, f.node);
}

static lm_doc *copy_doc(yreader *r, const lm_doc *src)
{
    if (r->aliased >= LM_WORKFLOW_MAX_ALIASED) {
        char msg[120];
        snprintf(msg, sizeof(msg), "aliases expand to more than %u values",
                 LM_WORKFLOW_MAX_ALIASED);
        fail(r, src->loc, LM_ELIMIT, "alias_expansion_too_large", msg, "use fewer nested aliases");
        return NULL;
    }
    r->aliased++;
    lm_doc *d = lm_workflow__doc_new(r->ctx, src->kind, src->loc, r->err);
    if (!d)
        return NULL;
    d->b = src->b;
    d->i = src->i;
    d->f = src->f;
    if (src->s && !(d->s = lm_strdup(src->s)))
        goto out_oom;
    for (size_t i = 0; i < src->count; i++) {
        const lm_doc_entry *e = &src->items[i];
        char *key = e->key ? lm_strdup(e->key) : NULL;
        if (e->key && !key)
            goto out_oom;
        lm_doc *value = copy_doc(r, e->value);
        if (!value) {
            lm_free(key);
            goto out_free;
        }
        if (lm_workflow__doc_append(d, key, e->key_loc, value, r->err) != LM_OK)
            goto out_free;
    }
    return d;
out_oom:
    oom(r);
out_free:
    lm_workflow__doc_free(d);
    return NULL;
}

static lm_status on_alias(yreader *r, const yaml_event_t *ev)
{
    lm_srcloc loc = mark_loc(ev->start_mark);
    const char *name = (const char *)ev->data.alias.anchor;
    if (waiting_for_key(r))
        return fail(r, loc, LM_EFORMAT, "syntax_error", "an alias cannot be a map key", NULL);
    const lm_doc *target = NULL;
    for (size_t i = r->n_anchors; i-- > 0 && !target;)
        if (strcmp(r->anchors[i].name, name) == 0)
            target = r->anchors[i].node;
    char msg[200];
    if (!target) {
        snprintf(msg, sizeof(msg), "alias *%.60s names no anchor defined before it", name);
        return fail(r, loc, LM_EFORMAT, "syntax_error", msg,
                    "define &name before *name, and outside the value that uses *name");
    }
    if (r->depth + target->height > LM_WORKFLOW_MAX_DEPTH) {
        snprintf(msg, sizeof(msg), "alias *%.60s makes nesting deeper than %d levels", name,
                 LM_WORKFLOW_MAX_DEPTH);
        return fail(r, loc, LM_ELIMIT, "nesting_too_deep", msg, NULL);
    }
    lm_doc *d = copy_doc(r, target);
    if (!d)
        return r->err ? r->err->code : LM_ENOMEM;
    return place(r, d);
}

static lm_status on_event(yreader *r, const yaml_event_t *ev, bool *done)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++r->documents > 1)
            return fail(r, mark_loc(ev->start_mark), LM_EFORMAT, "syntax_error",
                        "a second YAML document ('---') in one workflow file",
                        "keep one workflow per file");
        return LM_OK;
    case YAML_SCALAR_EVENT:
        return on_scalar(r, ev);
    case YAML_ALIAS_EVENT:
        return on_alias(r, ev);
    case YAML_MAPPING_START_EVENT:
        return on_start(r, ev, LM_DOC_MAP);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(r, ev, LM_DOC_SEQ);
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        return on_end(r);
    case YAML_STREAM_END_EVENT:
        *done = true;
        return LM_OK;
    default:
        return LM_OK;
    }
}

static void reader_fini(yreader *r)
{
    while (r->depth > 0) {
        yframe *f = &r->stack[--r->depth];
        lm_workflow__doc_free(f->node);
        lm_free(f->key);
        lm_free(f->anchor);
    }
    for (size_t i = 0; i < r->n_anchors; i++)
        lm_free(r->anchors[i].name);
    lm_free(r->anchors);
}

lm_status lm_workflow__read_yaml(lm_doc_ctx *ctx, const char *text, size_t len, lm_doc **out,
                                 lm_error *err)
{
    *out = NULL;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yreader r = { .ctx = ctx, .err = err, .text = text };
    lm_status st = LM_OK;
    bool done = false;
    while (st == LM_OK && !done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            st = syntax_error(&r, &parser);
            break;
        }
        st = on_event(&r, &ev, &done);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    reader_fini(&r);
    if (st != LM_OK) {
        lm_workflow__doc_free(r.root);
        return st;
    }
    *out = r.root;
    return LM_OK;
}
