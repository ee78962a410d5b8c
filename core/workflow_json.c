/* core/workflow_json.c — a JSON reader that keeps line:col for every value.
 *
 * Why not cJSON here: its tree has no positions, and an error in a workflow must name the
 * line and column of both syntax errors and structural ones (a wrong input three levels
 * down). This reader is strict RFC 8259 (no comments, no trailing commas), refuses nesting
 * deeper than LM_WORKFLOW_MAX_DEPTH, keeps integers exact as int64 (ComfyUI seeds exceed
 * 2^53), and produces the tree of workflow_doc.h; the builders do the rest. Columns count
 * characters (UTF-8 code points), as libyaml's marks do. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/workflow.h"
#include "core/workflow_doc.h"

#include <errno.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    lm_doc_ctx *ctx;
    const char *p, *end;
    int line, col; /* of *p */
    lm_error *err;
} jreader;

static lm_srcloc here(const jreader *r)
{
    return (lm_srcloc){ r->line, r->col };
}

static void advance(jreader *r)
{
    if (*r->p == '\n') {
        r->line++;
        r->col = 1;
    } else if (((unsigned char)*r->p & 0xC0) != 0x80) {
        r->col++;
    }
    r->p++;
}

static void skip_ws(jreader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        advance(r);
}

static lm_status syntax_at(jreader *r, lm_srcloc loc, const char *what)
{
    lm_workflow__errorf(r->err, r->ctx->name, loc, LM_EFORMAT, "syntax_error",
                        "JSON syntax error: %s", what);
    return LM_EFORMAT;
}

/* "expected X" at the current character, naming what is there instead. */
static lm_status expected(jreader *r, const char *what)
{
    char msg[200];
    if (r->p >= r->end) {
        snprintf(msg, sizeof(msg), "expected %s but the text ends", what);
    } else {
        unsigned char c = (unsigned char)*r->p;
        if (c >= 0x20 && c < 0x7f)
            snprintf(msg, sizeof(msg), "expected %s, found '%c'", what, c);
        else
            snprintf(msg, sizeof(msg), "expected %s, found byte 0x%02x", what, c);
    }
    return syntax_at(r, here(r), msg);
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static void put_utf8(lm_str *s, unsigned cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    lm_str_appendn(s, b, n);
}

/* \uXXXX (and a following low surrogate); r->p is at the 'u', `at` is the backslash. */
static lm_status read_unicode(jreader *r, lm_srcloc at, lm_str *s)
{
    int hi = r->end - r->p >= 5 ? hex4(r->p + 1) : -1;
    if (hi < 0)
        return syntax_at(r, at, "expected four hex digits after \\u");
    for (int i = 0; i < 5; i++)
        advance(r);
    unsigned cp = (unsigned)hi;
    if (hi >= 0xD800 && hi <= 0xDBFF) {
        int lo = r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' ? hex4(r->p + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return syntax_at(r, at, "a \\u high surrogate must be followed by a low one");
        for (int i = 0; i < 6; i++)
            advance(r);
        cp = 0x10000 + (((unsigned)hi - 0xD800) << 10) + ((unsigned)lo - 0xDC00);
    } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
        return syntax_at(r, at, "a \\u low surrogate without a high one");
    } else if (hi == 0) {
        return syntax_at(r, at, "\\u0000 is not allowed in workflow text");
    }
    put_utf8(s, cp);
    return LM_OK;
}

static lm_status read_escape(jreader *r, lm_str *s)
{
    lm_srcloc at = here(r);
    advance(r); /* the backslash */
    if (r->p >= r->end)
        return expected(r, "an escape character after '\\'");
    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *hit = *r->p ? strchr(from, *r->p) : NULL;
    if (hit) {
        lm_str_appendn(s, to + (hit - from), 1);
        advance(r);
        return LM_OK;
    }
    if (*r->p == 'u')
        return read_unicode(r, at, s);
    return expected(r, "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX");
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n = p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || (size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* One multi-byte UTF-8 character, checked. */
static lm_status copy_utf8(jreader *r, lm_str *s)
{
    size_t n = utf8_len((const unsigned char *)r->p, (const unsigned char *)r->end);
    if (!n)
        return syntax_at(r, here(r), "invalid UTF-8 inside a string; save the file as UTF-8");
    lm_str_appendn(s, r->p, n);
    for (size_t i = 0; i < n; i++)
        advance(r);
    return LM_OK;
}

/* A string at r->p (the opening quote); *out is the decoded text (owned). */
static lm_status read_string(jreader *r, char **out)
{
    lm_srcloc start = here(r);
    lm_str s;
    lm_str_init(&s);
    advance(r);
    lm_status st = LM_OK;
    while (st == LM_OK) {
        if (r->p >= r->end) {
            st = syntax_at(r, start, "this string is not closed; add the closing '\"'");
            break;
        }
        unsigned char c = (unsigned char)*r->p;
        if (c == '"') {
            advance(r);
            break;
        }
        if (c == '\\') {
            st = read_escape(r, &s);
        } else if (c == '\n') {
            st = syntax_at(r, start, "this string is not closed before the end of its line");
            lm_error_hint(r->err, "add the closing '\"'; write a line break in a string as \\n");
        } else if (c < 0x20) {
            st = syntax_at(r, here(r), "control character inside a string");
            lm_error_hint(r->err, "write it as an escape such as \\n or \\t");
        } else if (c < 0x80) {
            lm_str_appendn(&s, r->p, 1);
            advance(r);
        } else {
            st = copy_utf8(r, &s);
        }
    }
    if (st == LM_OK && s.oom)
        st = lm_errorf(r->err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
    if (st == LM_OK && !(*out = s.len ? lm_str_take(&s) : lm_strdup("")))
        st = lm_errorf(r->err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
    lm_str_fini(&s);
    return st;
}

static bool is_digit(const jreader *r)
{
    return r->p < r->end && *r->p >= '0' && *r->p <= '9';
}

static void skip_digits(jreader *r)
{
    while (is_digit(r))
        advance(r);
}

/* Scans the number grammar; sets *is_float. */
static lm_status scan_number(jreader *r, bool *is_float)
{
    *is_float = false;
    if (*r->p == '-')
        advance(r);
    if (!is_digit(r))
        return expected(r, "a digit");
    if (*r->p == '0')
        advance(r);
    else
        skip_digits(r);
    if (r->p < r->end && *r->p == '.') {
        *is_float = true;
        advance(r);
        if (!is_digit(r))
            return expected(r, "a digit after the decimal point");
        skip_digits(r);
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        *is_float = true;
        advance(r);
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            advance(r);
        if (!is_digit(r))
            return expected(r, "a digit in the exponent");
        skip_digits(r);
    }
    return LM_OK;
}

static lm_status read_number(jreader *r, lm_doc *d)
{
    const char *begin = r->p;
    bool is_float;
    lm_status st = scan_number(r, &is_float);
    if (st != LM_OK)
        return st;
    char buf[400];
    size_t n = (size_t)(r->p - begin);
    if (n >= sizeof(buf))
        return syntax_at(r, d->loc, "number with more than 400 characters");
    memcpy(buf, begin, n);
    buf[n] = '\0';
    errno = 0;
    if (is_float) {
        d->kind = LM_DOC_FLOAT;
        d->f = strtod(buf, NULL);
    } else {
        d->i = strtoll(buf, NULL, 10);
    }
    bool bad = is_float ? (d->f > DBL_MAX || d->f < -DBL_MAX) : errno == ERANGE;
    if (bad) {
        lm_workflow__errorf(r->err, r->ctx->name, d->loc, LM_ERANGE, "number_out_of_range",
                            "number %.60s is out of range (integers are 64-bit signed)", buf);
        return LM_ERANGE;
    }
    return LM_OK;
}

static lm_status read_word(jreader *r, lm_doc *d)
{
    static const struct {
        const char *word;
        lm_doc_kind kind;
        bool b;
    } words[] = { { "true", LM_DOC_BOOL, true },
                  { "false", LM_DOC_BOOL, false },
                  { "null", LM_DOC_NULL, false } };
    for (size_t i = 0; i < LM_COUNTOF(words); i++) {
        size_t n = strlen(words[i].word);
        if ((size_t)(r->end - r->p) >= n && memcmp(r->p, words[i].word, n) == 0) {
            d->kind = words[i].kind;
            d->b = words[i].b;
            for (size_t k = 0; k < n; k++)
                advance(r);
            return LM_OK;
        }
    }
    return expected(r, "a value (object, array, string, number, true, false or null)");
}

static lm_status read_value(jreader *r, int depth, lm_doc **out);

/* After a member or element: ',' (more) or the closing bracket (done). */
static lm_status read_separator(jreader *r, char close, const lm_doc *d, bool *more)
{
    skip_ws(r);
    if (r->p < r->end && *r->p == ',') {
        advance(r);
        *more = true;
        return LM_OK;
    }
    if (r->p < r->end && *r->p == close) {
        advance(r);
        *more = false;
        return LM_OK;
    }
    char what[96];
    snprintf(what, sizeof(what), "',' or '%c' to continue the %s opened at line %d col %d", close,
             close == '}' ? "object" : "array", d->loc.line, d->loc.col);
    return expected(r, what);
}

static lm_status read_member(jreader *r, int depth, lm_doc *obj)
{
    skip_ws(r);
    if (r->p >= r->end || *r->p != '"')
        return expected(r, "a key in double quotes (JSON allows no trailing comma)");
    lm_srcloc key_loc = here(r);
    char *key = NULL;
    lm_status st = read_string(r, &key);
    if (st != LM_OK)
        return st;
    skip_ws(r);
    if (r->p >= r->end || *r->p != ':') {
        lm_free(key);
        return expected(r, "':' after the key");
    }
    advance(r);
    lm_doc *value = NULL;
    st = read_value(r, depth, &value);
    if (st != LM_OK) {
        lm_free(key);
        return st;
    }
    return lm_workflow__doc_append(obj, key, key_loc, value, r->err);
}

static lm_status read_container(jreader *r, int depth, lm_doc *d)
{
    char close = d->kind == LM_DOC_MAP ? '}' : ']';
    advance(r);
    skip_ws(r);
    if (r->p < r->end && *r->p == close) {
        advance(r);
        return LM_OK;
    }
    bool more = true;
    lm_status st = LM_OK;
    while (st == LM_OK && more) {
        if (d->kind == LM_DOC_MAP) {
            st = read_member(r, depth, d);
        } else {
            lm_doc *item = NULL;
            st = read_value(r, depth, &item);
            if (st == LM_OK)
                st = lm_workflow__doc_append(d, NULL, item->loc, item, r->err);
        }
        if (st == LM_OK)
            st = read_separator(r, close, d, &more);
    }
    if (st == LM_OK && d->kind == LM_DOC_MAP)
        st = lm_workflow__doc_check_keys(r->ctx, d, r->err);
    return st;
}

static lm_status read_value(jreader *r, int depth, lm_doc **out)
{
    *out = NULL;
    skip_ws(r);
    if (r->p >= r->end)
        return expected(r, "a value");
    char c = *r->p;
    lm_doc_kind kind = c == '{'   ? LM_DOC_MAP
                       : c == '[' ? LM_DOC_SEQ
                       : c == '"' ? LM_DOC_STRING
                                  : LM_DOC_INT;
    if ((kind == LM_DOC_MAP || kind == LM_DOC_SEQ) && depth >= LM_WORKFLOW_MAX_DEPTH) {
        lm_workflow__errorf(r->err, r->ctx->name, here(r), LM_ELIMIT, "nesting_too_deep",
                            "nesting deeper than %d levels", LM_WORKFLOW_MAX_DEPTH);
        return LM_ELIMIT;
    }
    lm_doc *d = lm_workflow__doc_new(r->ctx, kind, here(r), r->err);
    if (!d)
        return r->err ? r->err->code : LM_ENOMEM;
    lm_status st;
    if (kind == LM_DOC_MAP || kind == LM_DOC_SEQ)
        st = read_container(r, depth + 1, d);
    else if (kind == LM_DOC_STRING)
        st = read_string(r, &d->s);
    else if (c == '-' || (c >= '0' && c <= '9'))
        st = read_number(r, d);
    else
        st = read_word(r, d);
    if (st != LM_OK) {
        lm_workflow__doc_free(d);
        return st;
    }
    *out = d;
    return LM_OK;
}

lm_status lm_workflow__read_json(lm_doc_ctx *ctx, const char *text, size_t len, lm_doc **out,
                                 lm_error *err)
{
    *out = NULL;
    jreader r = { ctx, text, text + len, 1, 1, err };
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        r.p += 3; /* a UTF-8 byte order mark */
    skip_ws(&r);
    if (r.p >= r.end)
        return LM_OK;
    lm_doc *root = NULL;
    lm_status st = read_value(&r, 0, &root);
    if (st != LM_OK)
        return st;
    skip_ws(&r);
    if (r.p < r.end) {
        lm_workflow__doc_free(root);
        return expected(&r, "the end of the text after the JSON value");
    }
    *out = root;
    return LM_OK;
}
