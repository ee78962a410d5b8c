/* daemon/cmd_tensors.c — `loom tensors`: list a checkpoint's metadata, tensors and totals.
 *
 * Everything comes from lm_safetensors (the header is fully checked before anything is
 * printed, so a damaged file prints one error line and nothing else). Tensors are listed in
 * name order. Groups for the totals are the first name component, or the first two when
 * the first is only a container ("model.diffusion_model", "text_encoders.clip_l"); they are
 * found by sorting the group keys, so a file with many odd names stays O(n log n). */
#include "daemon/cmd_tensors.h"

#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/safetensors.h"
#include "daemon/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: loom tensors FILE [--json]\n"
    "  FILE    a .safetensors checkpoint or a sharded *.safetensors.index.json\n"
    "  --json  print {\"metadata\": {...}, \"tensors\": [{\"name\", \"dtype\", \"shape\"}]}\n";

/* ---- groups (top-level prefixes) ---- */

typedef struct {
    const char *name; /* the group key is name[0..len) */
    size_t len;
    const lm_safetensors_entry *entry;
} group_key;

static size_t group_len(const char *name)
{
    static const char *const containers[] = { "model", "text_encoders", "conditioner",
                                              "cond_stage_model" };
    const char *dot = strchr(name, '.');
    if (!dot)
        return strlen(name);
    size_t len = (size_t)(dot - name);
    for (size_t i = 0; i < LM_COUNTOF(containers); i++) {
        if (strlen(containers[i]) == len && strncmp(name, containers[i], len) == 0) {
            const char *second = strchr(dot + 1, '.');
            return second ? (size_t)(second - name) : strlen(name);
        }
    }
    return len;
}

static int key_cmp(const void *a, const void *b)
{
    const group_key *x = a, *y = b;
    size_t n = LM_MIN(x->len, y->len);
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* ---- text ---- */

static void print_size(FILE *out, uint64_t bytes)
{
    if (bytes >= 1000000000u)
        fprintf(out, "%8.2f GB", (double)bytes / 1e9);
    else if (bytes >= 1000000u)
        fprintf(out, "%8.2f MB", (double)bytes / 1e6);
    else if (bytes >= 1000u)
        fprintf(out, "%8.2f kB", (double)bytes / 1e3);
    else
        fprintf(out, "%8llu B ", (unsigned long long)bytes);
}

/* A value on one line: control characters shown as '?', long values cut. */
static void print_value(FILE *out, const char *value)
{
    size_t len = strlen(value), shown = LM_MIN(len, (size_t)120);
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)value[i];
        fputc(c < 0x20 || c == 0x7f ? '?' : c, out);
    }
    if (shown < len)
        fprintf(out, "... (%zu bytes)", len);
    fputc('\n', out);
}

static void print_shape(FILE *out, const lm_safetensors_entry *e)
{
    fputc('[', out);
    for (int d = 0; d < e->ndim; d++)
        fprintf(out, d ? ", %lld" : "%lld", (long long)e->shape[d]);
    fputc(']', out);
}

static void print_metadata(FILE *out, const lm_safetensors *st)
{
    size_t n = lm_safetensors_metadata_count(st);
    fprintf(out, "metadata (%zu):\n", n);
    for (size_t i = 0; i < n; i++) {
        const char *key, *value;
        lm_safetensors_metadata_at(st, i, &key, &value);
        fprintf(out, "  %s: ", key);
        print_value(out, value);
    }
}

static void print_list(FILE *out, const lm_safetensors *st)
{
    size_t n = lm_safetensors_count(st), width = 0;
    for (size_t i = 0; i < n; i++)
        width = LM_MAX(width, strlen(lm_safetensors_at(st, i)->name));
    width = LM_MIN(width, (size_t)100);
    fprintf(out, "tensors (%zu):\n", n);
    for (size_t i = 0; i < n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(st, i);
        fprintf(out, "  %-*s  %-7s  ", (int)width, e->name, lm_safetensors_dtype_name(e->dtype));
        print_shape(out, e);
        fputc('\n', out);
    }
}

static void print_by_dtype(FILE *out, const lm_safetensors *st)
{
    size_t count[LM_SAFETENSORS_DTYPE_COUNT] = { 0 };
    uint64_t bytes[LM_SAFETENSORS_DTYPE_COUNT] = { 0 };
    for (size_t i = 0; i < lm_safetensors_count(st); i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(st, i);
        count[e->dtype]++;
        bytes[e->dtype] += e->bytes;
    }
    fprintf(out, "by dtype:\n");
    for (int d = 0; d < LM_SAFETENSORS_DTYPE_COUNT; d++) {
        if (!count[d])
            continue;
        fprintf(out, "  %-7s %6zu tensors  ", lm_safetensors_dtype_name((lm_safetensors_dtype)d),
                count[d]);
        print_size(out, bytes[d]);
        fputc('\n', out);
    }
}

/* One group's line: name, tensors, bytes, the dtypes it holds. */
static void print_group(FILE *out, const group_key *keys, size_t n, size_t width)
{
    uint64_t bytes = 0;
    unsigned dtypes = 0;
    for (size_t i = 0; i < n; i++) {
        bytes += keys[i].entry->bytes;
        dtypes |= 1u << keys[i].entry->dtype;
    }
    fprintf(out, "  %-*.*s %6zu tensors  ", (int)width, (int)LM_MIN(keys[0].len, width),
            keys[0].name, n);
    print_size(out, bytes);
    for (int d = 0; d < LM_SAFETENSORS_DTYPE_COUNT; d++)
        if (dtypes & (1u << d))
            fprintf(out, "  %s", lm_safetensors_dtype_name((lm_safetensors_dtype)d));
    fputc('\n', out);
}

static int print_by_prefix(FILE *out, const lm_safetensors *st)
{
    size_t n = lm_safetensors_count(st), width = 0;
    group_key *keys = lm_calloc(n + 1, sizeof(*keys));
    if (!keys)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(st, i);
        keys[i] = (group_key){ e->name, group_len(e->name), e };
        width = LM_MAX(width, keys[i].len);
    }
    width = LM_MIN(width, (size_t)60);
    qsort(keys, n, sizeof(*keys), key_cmp);
    fprintf(out, "by prefix:\n");
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && key_cmp(&keys[i], &keys[j]) == 0; j++)
            ;
        print_group(out, keys + i, j - i, width);
    }
    lm_free(keys);
    return 0;
}

static int print_text(FILE *out, const lm_safetensors *st)
{
    uint64_t data = 0;
    for (size_t i = 0; i < lm_safetensors_count(st); i++)
        data += lm_safetensors_at(st, i)->bytes;
    fprintf(out, "%s: %zu tensors, %llu bytes of data, %llu bytes on disk\n",
            lm_safetensors_path(st), lm_safetensors_count(st), (unsigned long long)data,
            (unsigned long long)lm_safetensors_file_bytes(st));
    print_metadata(out, st);
    print_list(out, st);
    print_by_dtype(out, st);
    return print_by_prefix(out, st);
}

/* ---- JSON ---- */

static void json_metadata(lm_str *s, const lm_safetensors *st)
{
    lm_str_append(s, "{\n  \"metadata\": {");
    for (size_t i = 0; i < lm_safetensors_metadata_count(st); i++) {
        const char *key, *value;
        lm_safetensors_metadata_at(st, i, &key, &value);
        lm_str_append(s, i ? ",\n    " : "\n    ");
        lm_str_append_json(s, key);
        lm_str_append(s, ": ");
        lm_str_append_json(s, value);
    }
    lm_str_append(s, lm_safetensors_metadata_count(st) ? "\n  },\n" : "},\n");
}

static void json_tensors(lm_str *s, const lm_safetensors *st)
{
    size_t n = lm_safetensors_count(st);
    lm_str_append(s, "  \"tensors\": [");
    for (size_t i = 0; i < n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(st, i);
        lm_str_append(s, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
        lm_str_append_json(s, e->name);
        lm_str_appendf(s, ", \"dtype\": \"%s\", \"shape\": [", lm_safetensors_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++)
            lm_str_appendf(s, d ? ", %lld" : "%lld", (long long)e->shape[d]);
        lm_str_append(s, "]}");
    }
    lm_str_append(s, n ? "\n  ]\n}\n" : "]\n}\n");
}

static int print_json(FILE *out, const lm_safetensors *st)
{
    lm_str s;
    lm_str_init(&s);
    json_metadata(&s, st);
    json_tensors(&s, st);
    int rc = s.oom ? -1 : 0;
    if (rc == 0)
        fwrite(s.data, 1, s.len, out);
    lm_str_fini(&s);
    return rc;
}

/* ---- the command ---- */

static void print_error(const lm_error *err)
{
    char line[1200];
    lm_error_format(err, line, sizeof(line));
    fprintf(stderr, "loom: %s\n", line);
}

int lm_cmd_tensors(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return LM_EXIT_OK;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "loom tensors: unexpected argument \"%s\"\n%s", argv[i], usage);
            return LM_EXIT_USAGE;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "loom tensors: which file? give a .safetensors path\n%s", usage);
        return LM_EXIT_USAGE;
    }
    lm_safetensors *st;
    lm_error err;
    if (lm_safetensors_open(&st, path, &err) != LM_OK) {
        print_error(&err);
        return LM_EXIT_IO;
    }
    int rc = json ? print_json(stdout, st) : print_text(stdout, st);
    lm_safetensors_close(st);
    if (rc != 0 || fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "loom: tensors: could not write the listing (out of memory or "
                        "stdout closed)\n");
        return LM_EXIT_IO;
    }
    return LM_EXIT_OK;
}
