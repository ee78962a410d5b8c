/* core/base/str.h — growable strings, small parsers and path helpers.
 * lm_str owns its buffer (always NUL-terminated once anything was appended); a failed
 * append sets `oom` and leaves the string as it was, so callers may append many times and
 * check once. lm_path_* helpers confine user-supplied names to a directory. */
#ifndef LM_CORE_BASE_STR_H
#define LM_CORE_BASE_STR_H

#include "core/base/error.h"
#include "core/base/lm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;
    size_t len, cap;
    bool oom;
} lm_str;

void lm_str_init(lm_str *s);
void lm_str_fini(lm_str *s);
void lm_str_clear(lm_str *s);
void lm_str_append(lm_str *s, const char *text);
void lm_str_appendn(lm_str *s, const char *text, size_t n);
void lm_str_appendf(lm_str *s, const char *fmt, ...) LM_PRINTF(2, 3);
void lm_str_append_json(lm_str *s, const char *text); /* quoted, escaped JSON string */
/* "" when nothing was appended; the pointer lives until the next append or fini. */
const char *lm_str_cstr(const lm_str *s);
/* Hands the buffer to the caller (free with lm_free); s becomes empty. NULL on oom. */
char *lm_str_take(lm_str *s);

/* Bounded copy that always terminates; returns false when src was truncated. */
bool lm_strlcpy(char *dst, const char *src, size_t size);
bool lm_str_ends_with(const char *s, const char *suffix);
/* Levenshtein distance, capped at `cap` (returns cap when larger). ASCII, case-insensitive. */
size_t lm_str_edit_distance(const char *a, const char *b, size_t cap);
/* A byte size such as "4096", "16M" or "1.5G": a number >= 0 (as strtod reads it), then
 * optionally K, M or G (either case; 1024-based). What follows the unit letter is not read,
 * so "16MB" is 16M. False, *out untouched, for NULL, "", no number, a negative or NaN one,
 * another letter after it, or a size past SIZE_MAX. */
bool lm_parse_bytes(const char *text, size_t *out);
/* n bytes for people, in decimal units: "12 B", "3.1 kB", "312.4 MB", "10.9 GB". */
void lm_format_bytes(uint64_t n, char *buf, size_t size);

/* The name among n candidates closest to `want` for a "did you mean" hint: edit distance
 * at most a third of want's length (at least 2), the first of equals; NULL when none is that
 * close. name(items, i) gives candidate i. */
typedef const char *(*lm_name_at_fn)(const void *items, size_t i);
const char *lm_str_closest(const char *want, const void *items, size_t n, lm_name_at_fn name);

/* Joins dir and name with one '/'. Returns false when the result does not fit. */
bool lm_path_join(char *out, size_t size, const char *dir, const char *name);
/* True when name is a safe relative name inside a directory: not empty, not absolute, no
 * ".." component, no NUL/backslash/control characters. Used for every name from a workflow
 * or a request before it touches the file system. */
bool lm_path_is_confined(const char *name);
/* Reads a whole file into a NUL-terminated buffer (free with lm_free), at most max_bytes. */
lm_status lm_file_read(const char *path, size_t max_bytes, char **out, size_t *len_out,
                       lm_error *err);
/* Creates a directory and its parents (mode 0755); existing directories are fine. */
lm_status lm_mkdirs(const char *path, lm_error *err);

#endif
