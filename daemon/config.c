/* daemon/config.c — the configuration file (config.h): found by a fixed search order, read
 * with libyaml's document loader, every key checked against one table, exported with
 * setenv(…, 0).
 *
 * The table maps each key to the environment variable it stands for and the kind of value it
 * takes; a kind is checked here the way the variable's reader would take it (thread count,
 * device name, precision, byte size), but stricter where that reader silently falls back to
 * a default (a malformed LOOM_DEVICE_RESERVE is ignored; in the file it is an error). The
 * loader keeps aliases as references to one node and the file is capped at 64 KiB, so a
 * hostile file costs little. Values are gathered first (with their line:col, kept for
 * lm_config_origin) and exported only when the whole file is good. */
#include "daemon/config.h"

#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/tensor/precision.h"
#include "daemon/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

typedef enum { VAL_DIR, VAL_DEVICE, VAL_THREADS, VAL_PRECISION, VAL_BYTES, VAL_BOOL } val_kind;

typedef struct {
    const char *key, *env;
    val_kind kind;
} key_def;

static const key_def keys[] = {
    { "models", "LOOM_MODELS", VAL_DIR },
    { "input", "LOOM_INPUT", VAL_DIR },
    { "output", "LOOM_OUTPUT", VAL_DIR },
    { "tokenizers", "LOOM_TOKENIZERS", VAL_DIR },
    { "device", "LOOM_DEVICE", VAL_DEVICE },
    { "threads", "LOOM_THREADS", VAL_THREADS },
    { "precision", "LOOM_PRECISION", VAL_PRECISION },
    { "device_reserve", "LOOM_DEVICE_RESERVE", VAL_BYTES },
    { "denoiser_reserve", "LOOM_DENOISER_RESERVE", VAL_BYTES },
    { "skip_t5", "LOOM_SKIP_T5", VAL_BOOL },
};
#define N_KEYS LM_COUNTOF(keys)

/* Reserved for `loom serve`: its settings, a mapping, read by the daemon itself. */
static const char serve_key[] = "serve";

/* One key's value as it will be exported, and where it came from. */
typedef struct {
    char value[PATH_MAX];
    char origin[320]; /* "file:line:col: key" once exported */
    int line, col;    /* 0: the file does not set this key */
    bool exported;
} key_value;

/* The last load's values (config.h: process-wide, not thread-safe). */
static key_value loaded[N_KEYS];

typedef struct {
    const char *path;
    char dir[PATH_MAX]; /* the file's directory, absolute */
    yaml_document_t *doc;
    int serve_line; /* 0 until `serve:` is seen */
    lm_error *err;
} reader;

static int mark_line(yaml_mark_t m)
{
    return (int)m.line + 1;
}

static int mark_col(yaml_mark_t m)
{
    return (int)m.column + 1;
}

/* An error at node n of the file: message, hint (may be NULL) and place. Returns code. */
static lm_status fail(reader *r, const yaml_node_t *n, lm_status code, const char *kind,
                      const char *hint, const char *fmt, ...) LM_PRINTF(6, 7);

static lm_status fail(reader *r, const yaml_node_t *n, lm_status code, const char *kind,
                      const char *hint, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lm_errorf(r->err, code, kind, "%s", msg);
    if (hint)
        lm_error_hint(r->err, "%s", hint);
    lm_error_at_file(r->err, r->path, mark_line(n->start_mark), mark_col(n->start_mark));
    return code;
}

static const char *node_kind(const yaml_node_t *n)
{
    return n->type == YAML_SEQUENCE_NODE  ? "a list"
           : n->type == YAML_MAPPING_NODE ? "a mapping"
                                          : "a value";
}

/* ---- finding the file ---- */

lm_status lm_config_find(char *path, size_t size, const char *cli_path, const char **source_out,
                         lm_error *err)
{
    path[0] = '\0';
    const char *env = getenv("LOOM_CONFIG");
    *source_out = cli_path ? "--config" : env ? "LOOM_CONFIG" : NULL;
    const char *named = cli_path ? cli_path : env;
    bool fits = true;
    if (named) {
        fits = lm_strlcpy(path, named, size); /* "" = no file */
    } else {
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        if (xdg && xdg[0] == '/') /* the XDG spec ignores a relative XDG_CONFIG_HOME */
            fits = lm_path_join(path, size, xdg, "loom/config.yaml");
        else if (home && home[0])
            fits = lm_path_join(path, size, home, ".config/loom/config.yaml");
        struct stat st;
        if (fits && path[0] && stat(path, &st) != 0)
            path[0] = '\0'; /* the default place is used only when a file is there */
    }
    if (!fits) {
        path[0] = '\0';
        lm_errorf(err, LM_ELIMIT, "config_path_too_long",
                  "the configuration file's path is longer than %zu bytes", size - 1);
        lm_error_hint(err, "use a shorter path for --config, LOOM_CONFIG or XDG_CONFIG_HOME");
        return LM_ELIMIT;
    }
    return LM_OK;
}

/* ---- values ---- */

static const char *skip_dot_slash(const char *p)
{
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/')
            p++;
    }
    return p;
}

/* r->dir: the absolute directory of r->path (not resolving links: a linked file's relative
 * paths mean the place the user put the link). */
static lm_status file_dir(reader *r)
{
    const char *path = skip_dot_slash(r->path), *slash = strrchr(path, '/');
    char cwd[PATH_MAX], parent[PATH_MAX];
    if (path[0] != '/' && !getcwd(cwd, sizeof(cwd))) {
        lm_errorf(r->err, LM_EIO, "config_cwd", "cannot tell the working directory: %s",
                  strerror(errno));
        lm_error_at_file(r->err, r->path, 0, 0);
        return LM_EIO;
    }
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof(parent))
        n = sizeof(parent) - 1; /* the file opened, so its path fits; kept for safety */
    memcpy(parent, path, n);
    parent[n] = '\0';
    bool ok = path[0] == '/' ? lm_strlcpy(r->dir, n ? parent : "/", sizeof(r->dir))
              : n            ? lm_path_join(r->dir, sizeof(r->dir), cwd, parent)
                             : lm_strlcpy(r->dir, cwd, sizeof(r->dir));
    if (!ok) {
        lm_errorf(r->err, LM_ELIMIT, "config_path_too_long",
                  "the configuration file's directory is longer than %zu bytes",
                  sizeof(r->dir) - 1);
        lm_error_at_file(r->err, r->path, 0, 0);
        return LM_ELIMIT;
    }
    return LM_OK;
}

/* A directory value as an absolute path: absolute as written, "~/…" under $HOME, anything
 * else under the file's directory. */
static lm_status resolve_dir(reader *r, const yaml_node_t *n, const key_def *def, const char *text,
                             char *out, size_t size)
{
    bool ok;
    if (text[0] == '/') {
        ok = lm_strlcpy(out, text, size);
    } else if (text[0] == '~' && (text[1] == '\0' || text[1] == '/')) {
        const char *home = getenv("HOME");
        if (!home || !home[0])
            return fail(r, n, LM_EINVAL, "config_bad_value", "write the whole path",
                        "%s \"%.200s\" starts with ~ but HOME is not set", def->key, text);
        int len = snprintf(out, size, "%s%s", home, text + 1);
        ok = len >= 0 && (size_t)len < size;
    } else {
        text = skip_dot_slash(text);
        ok = !text[0] || strcmp(text, ".") == 0 ? lm_strlcpy(out, r->dir, size)
                                                : lm_path_join(out, size, r->dir, text);
    }
    if (!ok)
        return fail(r, n, LM_ELIMIT, "config_bad_value", "use a shorter path",
                    "%s: the path is longer than %zu bytes", def->key, size - 1);
    return LM_OK;
}

/* "cpu", "auto", "loopback", "cuda" or "cuda:N" (as lm_backend_select spells them). */
static bool is_device_name(const char *s)
{
    if (!strcmp(s, "cpu") || !strcmp(s, "auto") || !strcmp(s, "loopback") || !strcmp(s, "cuda"))
        return true;
    size_t digits = strncmp(s, "cuda:", 5) == 0 ? strspn(s + 5, "0123456789") : 0;
    return digits > 0 && digits <= 3 && s[5 + digits] == '\0';
}

/* A whole number in [1, LM_APP_MAX_THREADS]. */
static bool is_thread_count(const char *s)
{
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || digits > 3 || s[digits] != '\0')
        return false;
    long n = strtol(s, NULL, 10);
    return n >= 1 && n <= LM_APP_MAX_THREADS;
}

/* YAML 1.2 core-schema booleans, as "1" / "0" (what LOOM_SKIP_T5 reads); NULL otherwise. */
static const char *bool_text(const char *s)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return "1";
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return "0";
    return NULL;
}

/* Checks text as def's kind of value and writes what is exported into out. */
static lm_status check_value(reader *r, const yaml_node_t *n, const key_def *def, const char *text,
                             char *out, size_t size)
{
    const char *key = def->key;
    lm_precision p;
    switch (def->kind) {
    case VAL_DIR:
        return resolve_dir(r, n, def, text, out, size);
    case VAL_DEVICE:
        if (!is_device_name(text))
            return fail(r, n, LM_EINVAL, "config_bad_value",
                        "choose cpu, cuda, cuda:N (N: a GPU index as nvidia-smi lists it), auto "
                        "or loopback",
                        "device \"%.64s\" is not a device name", text);
        break;
    case VAL_THREADS:
        if (!is_thread_count(text))
            return fail(r, n, LM_EINVAL, "config_bad_value", NULL,
                        "threads \"%.64s\" is not a thread count; give a number from 1 to %d", text,
                        LM_APP_MAX_THREADS);
        break;
    case VAL_PRECISION:
        if (lm_precision_parse(&p, text, r->err) != LM_OK) {
            lm_error_at_file(r->err, r->path, mark_line(n->start_mark), mark_col(n->start_mark));
            return r->err ? r->err->code : LM_EINVAL;
        }
        break;
    case VAL_BYTES:
        if (!lm_parse_bytes(text, &(size_t){ 0 }))
            return fail(r, n, LM_EINVAL, "config_bad_value",
                        "write a number of bytes, optionally with a K, M or G suffix (3G)",
                        "%s \"%.64s\" is not a size", key, text);
        break;
    case VAL_BOOL:
        if (!bool_text(text))
            return fail(r, n, LM_ETYPE, "config_wrong_type", "write true or false",
                        "%s \"%.64s\" is not a boolean", key, text);
        text = bool_text(text);
        break;
    }
    lm_strlcpy(out, text, size); /* short: checked above */
    return LM_OK;
}

/* ---- keys ---- */

static const key_def *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].key, name) == 0)
            return &keys[i];
    return NULL;
}

/* Candidate i of the "did you mean" list: the keys, then the reserved serve section. */
static const char *key_at(const void *items, size_t i)
{
    LM_UNUSED(items);
    return i < N_KEYS ? keys[i].key : serve_key;
}

static lm_status unknown_key(reader *r, const yaml_node_t *n, const char *name)
{
    const char *near = lm_str_closest(name, NULL, N_KEYS + 1, key_at);
    char hint[256];
    if (near) {
        snprintf(hint, sizeof(hint), "did you mean \"%s\"?", near);
    } else {
        lm_str s;
        lm_str_init(&s);
        for (size_t i = 0; i < N_KEYS; i++)
            lm_str_appendf(&s, "%s%s", i ? ", " : "", keys[i].key);
        snprintf(hint, sizeof(hint), "the keys are %s and %s (docs/cli.md, Configuration file)",
                 s.oom ? "…" : lm_str_cstr(&s), serve_key);
        lm_str_fini(&s);
    }
    return fail(r, n, LM_ENOTFOUND, "config_unknown_key", hint,
                "unknown key \"%.64s\" in the configuration file", name);
}

/* A scalar's text; NULL after an error when it holds a NUL byte (setenv would cut it). */
static const char *scalar_text(reader *r, const yaml_node_t *n, const char *what)
{
    const char *text = (const char *)n->data.scalar.value;
    if (strlen(text) != n->data.scalar.length) {
        fail(r, n, LM_EINVAL, "config_bad_value", "remove the \\0 escape",
             "%s contains a NUL character", what);
        return NULL;
    }
    return text;
}

static bool is_null(const yaml_node_t *n, const char *text)
{
    bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return !text[0] || (plain && (!strcmp(text, "~") || !strcmp(text, "null") ||
                                  !strcmp(text, "Null") || !strcmp(text, "NULL")));
}

/* `serve:` must be a mapping (or empty); its content is the daemon's. */
static lm_status read_serve(reader *r, const yaml_node_t *k, const yaml_node_t *v)
{
    if (r->serve_line)
        return fail(r, k, LM_EINVAL, "config_duplicate_key", "keep one of them",
                    "key \"serve\" appears twice (first at line %d)", r->serve_line);
    r->serve_line = mark_line(k->start_mark);
    if (v->type == YAML_SCALAR_NODE && is_null(v, (const char *)v->data.scalar.value))
        return LM_OK;
    if (v->type != YAML_MAPPING_NODE)
        return fail(r, v, LM_ETYPE, "config_wrong_type",
                    "it is reserved for the settings of loom serve, written as a mapping",
                    "serve must be a mapping, not %s", node_kind(v));
    return LM_OK;
}

static lm_status read_pair(reader *r, const yaml_node_pair_t *pair)
{
    const yaml_node_t *k = yaml_document_get_node(r->doc, pair->key);
    const yaml_node_t *v = yaml_document_get_node(r->doc, pair->value);
    if (k->type != YAML_SCALAR_NODE)
        return fail(r, k, LM_ETYPE, "config_wrong_type", "write key: value",
                    "a key must be a name, not %s", node_kind(k));
    const char *name = scalar_text(r, k, "a key");
    if (!name)
        return r->err ? r->err->code : LM_EINVAL;
    if (strcmp(name, serve_key) == 0)
        return read_serve(r, k, v);
    const key_def *def = find_key(name);
    if (!def)
        return unknown_key(r, k, name);
    key_value *kv = &loaded[def - keys];
    if (kv->line)
        return fail(r, k, LM_EINVAL, "config_duplicate_key", "keep one of them",
                    "key \"%s\" appears twice (first at line %d)", name, kv->line);
    if (v->type != YAML_SCALAR_NODE)
        return fail(r, v, LM_ETYPE, "config_wrong_type", "write one value after the colon",
                    "%s must be a single value, not %s", name, node_kind(v));
    const char *text = scalar_text(r, v, name);
    if (!text)
        return r->err ? r->err->code : LM_EINVAL;
    if (is_null(v, text))
        return fail(r, v, LM_EINVAL, "config_bad_value",
                    "write a value after the colon or remove the line", "%s has no value", name);
    kv->line = mark_line(v->start_mark);
    kv->col = mark_col(v->start_mark);
    return check_value(r, v, def, text, kv->value, sizeof(kv->value));
}

static lm_status read_root(reader *r)
{
    const yaml_node_t *root = yaml_document_get_root_node(r->doc);
    if (!root)
        return LM_OK; /* an empty file (or only comments) sets nothing */
    if (root->type == YAML_SCALAR_NODE && is_null(root, (const char *)root->data.scalar.value))
        return LM_OK;
    if (root->type != YAML_MAPPING_NODE)
        return fail(r, root, LM_ETYPE, "config_not_mapping",
                    "write one key: value per line (models: DIR, device: cuda, …)",
                    "the configuration file must be a mapping of keys to values, not %s",
                    node_kind(root));
    for (const yaml_node_pair_t *p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++) {
        lm_status st = read_pair(r, p);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

/* ---- parsing ---- */

/* Line and column (characters) of a byte offset, for libyaml's reader errors. */
static void offset_place(const char *text, size_t offset, int *line, int *col)
{
    *line = *col = 1;
    for (size_t i = 0; i < offset && text[i]; i++) {
        if (text[i] == '\n') {
            ++*line;
            *col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            ++*col;
        }
    }
}

static lm_status syntax_error(reader *r, const yaml_parser_t *p, const char *text)
{
    if (p->error == YAML_MEMORY_ERROR)
        return lm_errorf(r->err, LM_ENOMEM, "out_of_memory",
                         "out of memory reading the configuration file");
    int line = mark_line(p->problem_mark), col = mark_col(p->problem_mark);
    if (p->error == YAML_READER_ERROR)
        offset_place(text, p->problem_offset, &line, &col);
    lm_errorf(r->err, LM_EFORMAT, "config_syntax", "YAML syntax error: %s",
              p->problem ? p->problem : "malformed text");
    lm_error_hint(r->err, "check the indentation and the quoting near this place");
    lm_error_at_file(r->err, r->path, line, col);
    return LM_EFORMAT;
}

/* Parses text into r->doc and reads it; a second document is an error. */
static lm_status parse(reader *r, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc, next;
    if (!yaml_parser_initialize(&parser))
        return lm_errorf(r->err, LM_ENOMEM, "out_of_memory", "out of memory starting libyaml");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    lm_status st = LM_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        st = syntax_error(r, &parser, text);
        goto out_parser;
    }
    r->doc = &doc;
    st = read_root(r);
    if (st == LM_OK && !yaml_parser_load(&parser, &next)) {
        st = syntax_error(r, &parser, text);
    } else if (st == LM_OK) {
        const yaml_node_t *extra = yaml_document_get_root_node(&next);
        if (extra)
            st = fail(r, extra, LM_EFORMAT, "config_syntax", "keep one document (no ---)",
                      "the configuration file holds more than one YAML document");
        yaml_document_delete(&next);
    }
    yaml_document_delete(&doc);
    r->doc = NULL;
out_parser:
    yaml_parser_delete(&parser);
    return st;
}

/* ---- loading ---- */

/* setenv(…, 0) for every key the file sets; records where each exported value came from. */
static lm_status export_values(reader *r)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        key_value *kv = &loaded[i];
        if (!kv->line || getenv(keys[i].env))
            continue; /* the environment wins, even when it holds "" */
        if (setenv(keys[i].env, kv->value, 0) != 0) {
            lm_errorf(r->err, LM_ENOMEM, "out_of_memory", "cannot set %s: %s", keys[i].env,
                      strerror(errno));
            return LM_ENOMEM;
        }
        kv->exported = true;
        snprintf(kv->origin, sizeof(kv->origin), "%.250s:%d:%d: %s", r->path, kv->line, kv->col,
                 keys[i].key);
    }
    return LM_OK;
}

lm_status lm_config_load(const char *path, lm_error *err)
{
    memset(loaded, 0, sizeof(loaded));
    reader r = { .path = path, .err = err };
    char *text = NULL;
    size_t len = 0;
    lm_status st = lm_file_read(path, LM_CONFIG_MAX_BYTES, &text, &len, err);
    if (st == LM_ELIMIT)
        lm_error_hint(err, "a configuration file is a few lines; check that this is one");
    if (st == LM_OK)
        st = file_dir(&r);
    if (st == LM_OK)
        st = parse(&r, text, len);
    if (st == LM_OK)
        st = export_values(&r);
    if (st != LM_OK)
        memset(loaded, 0, sizeof(loaded));
    lm_free(text);
    return st;
}

const char *lm_config_origin(const char *env_name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].env, env_name) == 0 && loaded[i].exported)
            return loaded[i].origin;
    return NULL;
}
