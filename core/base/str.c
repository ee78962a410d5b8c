/* core/base/str.c — growable strings, byte sizes, confinement checks, whole-file reads. */
#include "core/base/str.h"

#include "core/base/alloc.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void lm_str_init(lm_str *s)
{
    memset(s, 0, sizeof(*s));
}

void lm_str_fini(lm_str *s)
{
    lm_free(s->data);
    memset(s, 0, sizeof(*s));
}

void lm_str_clear(lm_str *s)
{
    s->len = 0;
    if (s->data)
        s->data[0] = '\0';
}

static bool reserve(lm_str *s, size_t extra)
{
    if (s->oom)
        return false;
    if (s->len + extra + 1 <= s->cap)
        return true;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < s->len + extra + 1)
        cap *= 2;
    char *data = lm_realloc(s->data, cap);
    if (!data) {
        s->oom = true;
        return false;
    }
    s->data = data;
    s->cap = cap;
    return true;
}

void lm_str_appendn(lm_str *s, const char *text, size_t n)
{
    if (!reserve(s, n))
        return;
    memcpy(s->data + s->len, text, n);
    s->len += n;
    s->data[s->len] = '\0';
}

void lm_str_append(lm_str *s, const char *text)
{
    lm_str_appendn(s, text, strlen(text));
}

void lm_str_appendf(lm_str *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(s, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

void lm_str_append_json(lm_str *s, const char *text)
{
    lm_str_append(s, "\"");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        switch (*p) {
        case '"':
            lm_str_append(s, "\\\"");
            break;
        case '\\':
            lm_str_append(s, "\\\\");
            break;
        case '\n':
            lm_str_append(s, "\\n");
            break;
        case '\r':
            lm_str_append(s, "\\r");
            break;
        case '\t':
            lm_str_append(s, "\\t");
            break;
        default:
            if (*p < 0x20)
                lm_str_appendf(s, "\\u%04x", *p);
            else
                lm_str_appendn(s, (const char *)p, 1);
        }
    }
    lm_str_append(s, "\"");
}

const char *lm_str_cstr(const lm_str *s)
{
    return s->data ? s->data : "";
}

char *lm_str_take(lm_str *s)
{
    if (s->oom) {
        lm_str_fini(s);
        return NULL;
    }
    if (!s->data && !reserve(s, 0))
        return NULL;
    s->data[s->len] = '\0';
    char *data = s->data;
    memset(s, 0, sizeof(*s));
    return data;
}

bool lm_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    bool fits = n < size;
    if (!fits)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return fits;
}

bool lm_str_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

size_t lm_str_edit_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 128 || lb > 128)
        return cap;
    size_t row[129];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            size_t best = diag + (same ? 0 : 1);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb] < cap ? row[lb] : cap;
}

void lm_format_bytes(uint64_t n, char *buf, size_t size)
{
    static const char *const units[] = { "B", "kB", "MB", "GB", "TB" };
    double v = (double)n;
    size_t u = 0;
    for (; v >= 1000 && u + 1 < LM_COUNTOF(units); u++)
        v /= 1000;
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

const char *lm_str_closest(const char *want, const void *items, size_t n, lm_name_at_fn name)
{
    size_t limit = LM_MAX(strlen(want) / 3, 2), best_d = limit + 1;
    const char *best = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t d = lm_str_edit_distance(want, name(items, i), limit + 1);
        if (d < best_d) {
            best_d = d;
            best = name(items, i);
        }
    }
    return best;
}

bool lm_parse_bytes(const char *text, size_t *out)
{
    if (!text || !text[0])
        return false;
    char *end = NULL;
    double n = strtod(text, &end);
    if (end == text || !(n >= 0) || (*end && !strchr("KkMmGg", *end)))
        return false;
    double unit = *end == 'K' || *end == 'k'   ? 1024.0
                  : *end == 'M' || *end == 'm' ? 1048576.0
                  : *end == 'G' || *end == 'g' ? 1073741824.0
                                               : 1.0;
    double bytes = n * unit;
    if (!(bytes < (double)SIZE_MAX)) /* infinity too */
        return false;
    *out = (size_t)bytes;
    return true;
}

bool lm_path_join(char *out, size_t size, const char *dir, const char *name)
{
    size_t ld = strlen(dir);
    bool slash = ld > 0 && dir[ld - 1] != '/';
    int n = snprintf(out, size, "%s%s%s", dir, slash ? "/" : "", name);
    return n >= 0 && (size_t)n < size;
}

bool lm_path_is_confined(const char *name)
{
    if (!name || !name[0] || name[0] == '/')
        return false;
    const char *seg = name;
    for (const char *p = name;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '/' || c == '\0') {
            size_t n = (size_t)(p - seg);
            if (n == 0 || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return false;
            if (c == '\0')
                return true;
            seg = p + 1;
        } else if (c < 0x20 || c == '\\' || c == 0x7f) {
            return false;
        }
    }
}

lm_status lm_file_read(const char *path, size_t max_bytes, char **out, size_t *len_out,
                       lm_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        lm_errorf(err, errno == ENOENT ? LM_ENOTFOUND : LM_EIO, "file_open", "cannot open file: %s",
                  strerror(errno));
        lm_error_at_file(err, path, 0, 0);
        return err ? err->code : LM_EIO;
    }
    lm_str buf;
    lm_str_init(&buf);
    char chunk[65536];
    size_t n;
    lm_status st = LM_OK;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf.len + n > max_bytes) {
            st = lm_errorf(err, LM_ELIMIT, "file_too_large",
                           "file is larger than the limit of %zu bytes", max_bytes);
            break;
        }
        lm_str_appendn(&buf, chunk, n);
    }
    if (st == LM_OK && ferror(f))
        st = lm_errorf(err, LM_EIO, "file_read", "read error: %s", strerror(errno));
    fclose(f);
    if (st == LM_OK && buf.oom)
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the file");
    if (st != LM_OK) {
        lm_str_fini(&buf);
        lm_error_at_file(err, path, 0, 0);
        return st;
    }
    if (len_out)
        *len_out = buf.len;
    *out = lm_str_take(&buf);
    if (!*out)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading the file");
    return LM_OK;
}

lm_status lm_mkdirs(const char *path, lm_error *err)
{
    char tmp[4096];
    if (!lm_strlcpy(tmp, path, sizeof(tmp)))
        return lm_errorf(err, LM_ELIMIT, "path_too_long", "path is too long: %.200s", path);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                lm_errorf(err, LM_EIO, "mkdir", "cannot create directory \"%s\": %s", tmp,
                          strerror(errno));
                return LM_EIO;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return LM_OK;
}
