/* tests/io/test_safetensors.c — the safetensors loader: golden checkpoints, every kind of
 * damaged file, sharded indexes, tensors that outlive the set, allocation failures.
 *
 * Expected values come from outside the loader: the golden README's fixed facts (vocab
 * sizes, positions, dtypes per flavour), the split/ files (same bytes under other names,
 * read here with stdio), a header parsed here directly with cJSON, and files this test
 * writes byte by byte. */
#include "core/base/alloc.h"
#include "core/io/safetensors.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* ---- helpers ---- */

/* Writes `u64 len | header | data_len bytes (i & 0xff)`; returns the path. */
static const char *write_st(const char *name, const char *header, size_t data_len)
{
    static char paths[8][512];
    static int next;
    char *path = paths[next++ % 8];
    snprintf(path, sizeof(paths[0]), "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    uint64_t n = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_len; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
    return path;
}

static const char *write_bytes(const char *name, const void *bytes, size_t len)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    fwrite(bytes, 1, len, f);
    fclose(f);
    return path;
}

/* Reads n bytes at offset of a file with stdio (independent of the loader's mapping). */
static unsigned char *read_at(const char *path, long offset, size_t n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = malloc(n ? n : 1);
    if (!f || !buf || fseek(f, offset, SEEK_SET) != 0 || fread(buf, 1, n, f) != n) {
        if (f)
            fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    return buf;
}

static bool has_shape(const lm_safetensors_entry *e, int ndim, const int64_t *shape)
{
    if (!e || e->ndim != ndim)
        return false;
    for (int i = 0; i < ndim; i++)
        if (e->shape[i] != shape[i])
            return false;
    return true;
}

static const lm_safetensors_entry *need(const lm_safetensors *st, const char *name)
{
    const lm_safetensors_entry *e = lm_safetensors_find(st, name);
    if (!e)
        test__fail(__FILE__, __LINE__, "tensor %s is missing", name);
    return e;
}

/* ---- golden checkpoints ---- */

/* Facts fixed by the kind of model (README: vocabularies, 77 positions, 16 latent channels,
 * patch 2, dtypes per flavour) and relations between shapes; widths may vary by set. */
static void check_sd3_layout(const lm_safetensors *st, lm_safetensors_dtype t5_dtype)
{
    const lm_safetensors_entry *pos = need(st, "model.diffusion_model.pos_embed");
    const lm_safetensors_entry *xe = need(st, "model.diffusion_model.x_embedder.proj.weight");
    REQUIRE(pos && xe);
    CHECK_INT(pos->dtype, LM_SAFETENSORS_F16);
    CHECK_INT(pos->ndim, 3);
    CHECK_INT(pos->shape[0], 1);
    int64_t hidden = pos->shape[2];
    CHECK(has_shape(xe, 4, (int64_t[]){ hidden, 16, 2, 2 }));
    const char *clips[] = { "text_encoders.clip_l.transformer.text_model.embeddings.",
                            "text_encoders.clip_g.transformer.text_model.embeddings." };
    for (int i = 0; i < 2; i++) {
        char name[200];
        snprintf(name, sizeof(name), "%stoken_embedding.weight", clips[i]);
        const lm_safetensors_entry *tok = need(st, name);
        snprintf(name, sizeof(name), "%sposition_embedding.weight", clips[i]);
        const lm_safetensors_entry *p = need(st, name);
        REQUIRE(tok && p);
        CHECK_INT(tok->dtype, LM_SAFETENSORS_F16);
        CHECK(has_shape(tok, 2, (int64_t[]){ 49408, tok->shape[1] }));
        CHECK(has_shape(p, 2, (int64_t[]){ 77, tok->shape[1] }));
        CHECK_INT(tok->bytes, 49408 * tok->shape[1] * 2);
    }
    const lm_safetensors_entry *t5 = need(st, "text_encoders.t5xxl.transformer.shared.weight");
    REQUIRE(t5);
    CHECK_INT(t5->dtype, t5_dtype);
    CHECK_INT(t5->ndim, 2);
    CHECK_INT(t5->shape[0], 32128);
    CHECK(need(st, "first_stage_model.decoder.conv_in.weight") != NULL);
}

/* Every entry agrees with the header as cJSON reads it here, and entries are sorted. */
static void check_against_header(const char *path, const lm_safetensors *st)
{
    unsigned char *len = read_at(path, 0, 8);
    REQUIRE(len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | len[i];
    free(len);
    char *text = (char *)read_at(path, 8, (size_t)n);
    REQUIRE(text);
    cJSON *root = cJSON_ParseWithLength(text, (size_t)n);
    free(text);
    REQUIRE(root);
    size_t count = 0;
    for (cJSON *item = root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0)
            continue;
        count++;
        const lm_safetensors_entry *e = lm_safetensors_find(st, item->string);
        CHECK(e != NULL);
        if (!e)
            continue;
        CHECK_STR(lm_safetensors_dtype_name(e->dtype),
                  cJSON_GetObjectItem(item, "dtype")->valuestring);
        cJSON *shape = cJSON_GetObjectItem(item, "shape");
        CHECK_INT(e->ndim, cJSON_GetArraySize(shape));
        for (int d = 0; d < e->ndim; d++)
            CHECK_INT(e->shape[d], cJSON_GetArrayItem(shape, d)->valuedouble);
        cJSON *off = cJSON_GetObjectItem(item, "data_offsets");
        CHECK_INT(e->offset, cJSON_GetArrayItem(off, 0)->valuedouble);
        CHECK_INT(e->offset + e->bytes, cJSON_GetArrayItem(off, 1)->valuedouble);
    }
    cJSON_Delete(root);
    CHECK_INT(lm_safetensors_count(st), count);
    for (size_t i = 1; i < lm_safetensors_count(st); i++)
        CHECK(strcmp(lm_safetensors_at(st, i - 1)->name, lm_safetensors_at(st, i)->name) < 0);
}

void test_io_safetensors__golden_sd3m(void)
{
    const char *path = test_shared("golden/sd3m_tiny.safetensors");
    REQUIRE(path);
    lm_safetensors *st;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, path, &err), &err);
    check_sd3_layout(st, LM_SAFETENSORS_F8_E4M3);
    check_against_header(path, st);
    CHECK_STR(lm_safetensors_metadata(st, "format"), "pt");
    CHECK(lm_safetensors_metadata(st, "clip_l.num_attention_heads") != NULL);
    CHECK(lm_safetensors_metadata(st, "no such key") == NULL);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && lm_safetensors_file_bytes(st) == (uint64_t)sb.st_size);
    lm_safetensors_close(st);
}

void test_io_safetensors__golden_sd35m(void)
{
    const char *path = test_shared("golden/sd35m_tiny.safetensors");
    REQUIRE(path);
    lm_safetensors *st;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, path, &err), &err);
    check_sd3_layout(st, LM_SAFETENSORS_F16);
    check_against_header(path, st);
    lm_safetensors_close(st);
}

/* Every tensor of a split file has the bytes of the all-in-one tensor `prefix + name`; the
 * split file's bytes are read with stdio at the offsets its own header gives. */
static void check_split(const char *all, const char *split, const char *prefix)
{
    const char *all_path = test_shared(all), *split_path = test_shared(split);
    REQUIRE(all_path && split_path);
    lm_safetensors *a, *s;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&a, all_path, &err), &err);
    REQUIRE_OK(lm_safetensors_open(&s, split_path, &err), &err);
    size_t first, n = lm_safetensors_find_prefix(a, prefix, &first);
    CHECK_INT(n, lm_safetensors_count(s));
    unsigned char *len = read_at(split_path, 0, 8);
    REQUIRE(len);
    long data_start = 8 + (long)(len[0] | len[1] << 8 | len[2] << 16 | (long)len[3] << 24);
    free(len);
    int mismatches = 0;
    for (size_t i = 0; i < lm_safetensors_count(s); i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(s, i);
        char name[300];
        snprintf(name, sizeof(name), "%s%s", prefix, e->name);
        const lm_safetensors_entry *big = lm_safetensors_find(a, name);
        unsigned char *bytes = read_at(split_path, data_start + (long)e->offset, e->bytes);
        if (!big || !bytes || big->bytes != e->bytes || big->dtype != e->dtype ||
            memcmp(big->data, bytes, e->bytes) != 0 || memcmp(e->data, bytes, e->bytes) != 0)
            mismatches++;
        if (big)
            CHECK(big >= lm_safetensors_at(a, first) && big < lm_safetensors_at(a, first) + n);
        free(bytes);
    }
    CHECK_INT(mismatches, 0);
    lm_safetensors_close(a);
    lm_safetensors_close(s);
}

void test_io_safetensors__split_bytes_match(void)
{
    check_split("golden/sd3m_tiny.safetensors", "golden/split/sd3m/vae.safetensors",
                "first_stage_model.");
    check_split("golden/sd3m_tiny.safetensors", "golden/split/sd3m/clip_l.safetensors",
                "text_encoders.clip_l.transformer.");
    check_split("golden/sd3m_tiny.safetensors", "golden/split/sd3m/t5xxl_fp8_e4m3fn.safetensors",
                "text_encoders.t5xxl.transformer.");
    check_split("golden/sd35m_tiny.safetensors", "golden/split/sd35m/clip_g.safetensors",
                "text_encoders.clip_g.transformer.");
}

void test_io_safetensors__tensor_outlives_close(void)
{
    const char *path = test_shared("golden/split/sd3m/clip_l.safetensors");
    REQUIRE(path);
    lm_safetensors *st;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, path, &err), &err);
    const char *name = "text_model.embeddings.position_embedding.weight";
    const lm_safetensors_entry *e = lm_safetensors_find(st, name);
    REQUIRE(e);
    unsigned char *data_len = read_at(path, 0, 8);
    REQUIRE(data_len);
    long start = 8 + (long)(data_len[0] | data_len[1] << 8 | data_len[2] << 16);
    free(data_len);
    size_t bytes = e->bytes;
    unsigned char *expect = read_at(path, start + (long)e->offset, bytes);
    lm_tensor *t, *t2;
    REQUIRE_OK(lm_safetensors_tensor(&t, st, name, &err), &err);
    REQUIRE_OK(lm_safetensors_tensor(&t2, st, name, &err), &err);
    CHECK(lm_tensor_data(t) == e->data); /* wrapped, not copied */
    lm_safetensors_close(st);
    CHECK_INT(t->dtype, LM_DTYPE_F16);
    CHECK_INT(t->ndim, 2);
    CHECK_INT(t->shape[0], 77);
    CHECK_INT(lm_tensor_nbytes(t), bytes);
    CHECK(expect && memcmp(lm_tensor_data(t), expect, bytes) == 0);
    lm_tensor_free(t);
    CHECK(memcmp(lm_tensor_data(t2), expect, bytes) == 0);
    lm_tensor_free(t2);
    free(expect);
}

void test_io_safetensors__tensor_errors(void)
{
    const char *path = write_st(
        "odd.safetensors", "{\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8);
    lm_safetensors *st;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, path, &err), &err);
    lm_tensor *t;
    CHECK_INT(lm_safetensors_tensor(&t, st, "d", &err), LM_EUNSUPPORTED);
    CHECK_CONTAINS(err.msg, "F64");
    CHECK_CONTAINS(err.file, "odd.safetensors");
    CHECK_INT(lm_safetensors_tensor(&t, st, "nope", &err), LM_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "\"nope\"");
    CHECK(t == NULL);
    lm_safetensors_close(st);
}

/* ---- valid edge cases ---- */

void test_io_safetensors__edge_cases_accepted(void)
{
    /* Header padded with spaces, a scalar, an empty tensor, metadata, names out of order. */
    const char *header = "{\"z\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]},"
                         "\"__metadata__\":{\"b\":\"2\",\"a\":\"1\"},"
                         "\"e\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                         "\"a\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[0,4]}}   ";
    const char *path = write_st("edge.safetensors", header, 8);
    lm_safetensors *st;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, path, &err), &err);
    REQUIRE(lm_safetensors_count(st) == 3);
    CHECK_STR(lm_safetensors_at(st, 0)->name, "a");
    CHECK_STR(lm_safetensors_at(st, 2)->name, "z");
    const lm_safetensors_entry *z = lm_safetensors_find(st, "z");
    CHECK(z && z->ndim == 0 && z->bytes == 4 && ((const unsigned char *)z->data)[0] == 4);
    const lm_safetensors_entry *e = lm_safetensors_find(st, "e");
    CHECK(e && e->bytes == 0 && e->ndim == 2);
    CHECK_INT(lm_safetensors_metadata_count(st), 2);
    const char *k, *v;
    lm_safetensors_metadata_at(st, 0, &k, &v);
    CHECK_STR(k, "a");
    CHECK_STR(v, "1");
    CHECK_STR(lm_safetensors_metadata(st, "b"), "2");
    size_t first = 99;
    CHECK_INT(lm_safetensors_find_prefix(st, "q", &first), 0);
    CHECK_INT(first, 2);
    CHECK_INT(lm_safetensors_find_prefix(st, "", &first), 3);
    lm_safetensors_close(st);

    REQUIRE(write_st("none.safetensors", "{}", 0));
    REQUIRE_OK(lm_safetensors_open(&st, write_st("none.safetensors", "{}", 0), &err), &err);
    CHECK_INT(lm_safetensors_count(st), 0);
    CHECK(lm_safetensors_find(st, "x") == NULL);
    lm_safetensors_close(st);
}

/* A header of odd length leaves F32 data misaligned: the tensor is then a copy. */
void test_io_safetensors__misaligned_data_is_copied(void)
{
    const char *path = write_st(
        "mis.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} ", 8);
    lm_safetensors *st;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, path, &err), &err);
    const lm_safetensors_entry *e = lm_safetensors_find(st, "w");
    REQUIRE(e);
    lm_tensor *t;
    REQUIRE_OK(lm_safetensors_tensor(&t, st, "w", &err), &err);
    lm_safetensors_close(st);
    CHECK(((uintptr_t)lm_tensor_data(t) & 3) == 0);
    const unsigned char *b = lm_tensor_data(t);
    for (int i = 0; i < 8; i++)
        CHECK_INT(b[i], i);
    lm_tensor_free(t);
}

/* ---- damaged files ---- */

typedef struct {
    const char *header;
    size_t data_len;
    lm_status code;
    const char *needle; /* must appear in the message (a tensor name, a key, a fact) */
} bad_case;

#define T_F32_2(off) "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" off "}"

static const bad_case bad_cases[] = {
    { "{abc", 0, LM_EFORMAT, "not valid JSON" },
    { "[1, 2]", 0, LM_EFORMAT, "not an object" },
    { "{} x", 0, LM_EFORMAT, "bytes after" },
    { "{\"t\":" T_F32_2("[0,16]") "}", 8, LM_EFORMAT, "\"t\": needs bytes up to" },
    { "{\"t\":" T_F32_2("[8,0]") "}", 8, LM_EFORMAT, "\"t\": data_offsets [8, 0] are reversed" },
    { "{\"a\":" T_F32_2("[0,8]") ",\"b\":" T_F32_2("[4,12]") "}", 12, LM_EFORMAT, "overlap" },
    { "{\"a\":" T_F32_2("[0,8]") ",\"b\":" T_F32_2("[12,20]") "}", 20, LM_EFORMAT, "\"b\"" },
    { "{\"a\":" T_F32_2("[0,8]") "}", 12, LM_EFORMAT, "4 bytes after the last tensor" },
    { "{\"a\":" T_F32_2("[0.5,8.5]") "}", 9, LM_EFORMAT, "\"a\": \"data_offsets\" is not" },
    { "{\"a\":" T_F32_2("[-8,0]") "}", 8, LM_EFORMAT, "\"a\"" },
    { "{\"a\":" T_F32_2("[0,8,9]") "}", 8, LM_EFORMAT, "\"a\"" },
    { "{\"a\":" T_F32_2("\"0,8\"") "}", 8, LM_EFORMAT, "\"a\"" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, LM_EFORMAT,
      "\"a\": a dimension" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, LM_EFORMAT,
      "\"a\"" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8,
      LM_ERANGE, "\"a\"" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]}}", 8,
      LM_ERANGE, "\"a\": the shape has more bytes" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, LM_EFORMAT,
      "needs 12 bytes of F32" },
    { "{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, LM_EUNSUPPORTED,
      "unknown dtype \"F4\"" },
    { "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, LM_EFORMAT, "\"dtype\"" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, LM_EFORMAT,
      "\"shape\"" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
      LM_EUNSUPPORTED, "8 dimensions" },
    { "{\"a\":5}", 0, LM_EFORMAT, "\"a\": the header entry is not an object" },
    { "{\"__metadata__\":[1]}", 0, LM_EFORMAT, "__metadata__" },
    { "{\"__metadata__\":{\"k\":1}}", 0, LM_EFORMAT, "\"k\" is not a string" },
    { "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, LM_EFORMAT, "\"k\" appears twice" },
    { "{\"__metadata__\":{},\"__metadata__\":{}}", 0, LM_EFORMAT, "twice" },
    { "{\"a\":" T_F32_2("[0,8]") ",\"a\":" T_F32_2("[8,16]") "}", 16, LM_EFORMAT,
      "\"a\": the name appears twice" },
    { "{\"bad\\nname\":" T_F32_2("[0,16]") "}", 8, LM_EFORMAT, "\"bad?name\"" },
};

static void check_bad(const char *path, lm_status code, const char *needle, int i)
{
    lm_safetensors *st = (lm_safetensors *)&st;
    lm_error err;
    lm_status s = lm_safetensors_open(&st, path, &err);
    char line[1200];
    lm_error_format(&err, line, sizeof(line));
    if (s != code || !strstr(line, needle) || !strstr(err.file, path) || st != NULL)
        test__fail(__FILE__, __LINE__, "case %d: status %s, expected %s; message: %s", i,
                   lm_status_str(s), lm_status_str(code), line);
    CHECK(strchr(line, '\n') == NULL);
    test_note("%s", line);
}

void test_io_safetensors__damaged_headers(void)
{
    for (size_t i = 0; i < LM_COUNTOF(bad_cases); i++) {
        const char *path = write_st("bad.safetensors", bad_cases[i].header, bad_cases[i].data_len);
        REQUIRE(path);
        check_bad(path, bad_cases[i].code, bad_cases[i].needle, (int)i);
    }
}

void test_io_safetensors__damaged_files(void)
{
    check_bad(write_bytes("empty.safetensors", "", 0), LM_EFORMAT, "0 bytes", 100);
    check_bad(write_bytes("short.safetensors", "\x02\0\0\0\0", 5), LM_EFORMAT, "5 bytes", 101);
    /* Header length 1000 but the file ends after 12 bytes. */
    check_bad(write_bytes("past.safetensors", "\xe8\x03\0\0\0\0\0\0{}  ", 12), LM_EFORMAT,
              "header length 1000 goes past the end", 102);
    /* 2^40-byte header. */
    check_bad(write_bytes("huge.safetensors", "\0\0\0\0\0\x01\0\0{}", 10), LM_ELIMIT,
              "above the limit", 103);
    /* Deep nesting. */
    char deep[400] = "{\"__metadata__\":";
    for (int i = 0; i < 100; i++)
        strcat(deep, "[");
    for (int i = 0; i < 100; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    check_bad(write_st("deep.safetensors", deep, 0), LM_ELIMIT, "nests deeper", 104);
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/missing.safetensors", test_tmpdir());
    check_bad(missing, LM_ENOTFOUND, "cannot open", 105);
    check_bad(test_tmpdir(), LM_EINVAL, "not a regular file", 106);
}

/* Seeded byte mutations of a small valid file: each open returns a status, none crashes
 * (run under ASan by `make check`), and an accepted file still tiles its data. */
void test_io_safetensors__mutations_never_crash(void)
{
    const char *header = "{\"__metadata__\":{\"k\":\"v\"},"
                         "\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}";
    size_t hlen = strlen(header), size = 8 + hlen + 16;
    unsigned char *orig = malloc(size), *buf = malloc(size);
    REQUIRE(orig && buf);
    memset(orig, 0, size);
    orig[0] = (unsigned char)hlen;
    memcpy(orig + 8, header, hlen);
    uint32_t x = 12345;
    int accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, orig, size);
        for (int k = 0; k < 1 + iter % 3; k++) {
            x = x * 1664525u + 1013904223u;
            buf[(x >> 8) % size] = (unsigned char)(x >> 24);
        }
        lm_safetensors *st;
        lm_error err;
        if (lm_safetensors_open_memory(&st, buf, size, "mut", &err) == LM_OK) {
            accepted++;
            uint64_t sum = 0;
            for (size_t i = 0; i < lm_safetensors_count(st); i++)
                sum += lm_safetensors_at(st, i)->bytes;
            CHECK(sum <= size);
            lm_safetensors_close(st);
        } else {
            CHECK(err.msg[0] != '\0');
            CHECK_STR(err.file, "mut");
        }
    }
    test_note("%d of 3000 mutated files were accepted", accepted);
    free(orig);
    free(buf);
}

void test_io_safetensors__alloc_failures(void)
{
    const char *path = write_st("ok.safetensors",
                                "{\"__metadata__\":{\"k\":\"v\"},"
                                "\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}",
                                8);
    int n;
    for (n = 0; n < 100; n++) {
        lm_safetensors *st;
        lm_error err;
        lm_alloc_fail_after(n);
        lm_status s = lm_safetensors_open(&st, path, &err);
        long failed = lm_alloc_failures();
        lm_alloc_fail_after(-1);
        if (s == LM_OK) {
            lm_safetensors_close(st);
            if (!failed)
                break;
        } else {
            CHECK_INT(s, LM_ENOMEM);
        }
    }
    CHECK(n > 2 && n < 100);
}

/* ---- sharded index ---- */

static const char *write_text(const char *name, const char *text)
{
    return test_write_file(name, text);
}

static void write_shards(void)
{
    write_st("model-00001-of-00002.safetensors",
             "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"enc.w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"enc.b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
             12);
    write_st("model-00002-of-00002.safetensors",
             "{\"__metadata__\":{\"format\":\"np\",\"extra\":\"x\"},"
             "\"dec.w\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}",
             6);
}

void test_io_safetensors__sharded_index(void)
{
    write_shards();
    const char *index = write_text("model.safetensors.index.json",
                                   "{\"metadata\":{\"total_size\":18},\"weight_map\":{"
                                   "\"enc.w\":\"model-00001-of-00002.safetensors\","
                                   "\"dec.w\":\"model-00002-of-00002.safetensors\","
                                   "\"enc.b\":\"model-00001-of-00002.safetensors\"}}");
    REQUIRE(index);
    lm_safetensors *st;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, index, &err), &err);
    REQUIRE(lm_safetensors_count(st) == 3);
    CHECK_STR(lm_safetensors_at(st, 0)->name, "dec.w");
    const lm_safetensors_entry *dec = lm_safetensors_find(st, "dec.w");
    const lm_safetensors_entry *b = lm_safetensors_find(st, "enc.b");
    REQUIRE(dec && b);
    CHECK_CONTAINS(dec->file, "model-00002-of-00002.safetensors");
    CHECK_INT(dec->dtype, LM_SAFETENSORS_F16);
    /* Data bytes are i & 0xff from each shard's data start: enc.b holds 8, 9, 10, 11. */
    CHECK_INT(((const unsigned char *)b->data)[0], 8);
    CHECK_INT(((const unsigned char *)dec->data)[5], 5);
    CHECK_STR(lm_safetensors_metadata(st, "total_size"), "18");
    CHECK_STR(lm_safetensors_metadata(st, "format"), "pt");
    CHECK_STR(lm_safetensors_metadata(st, "extra"), "x");
    CHECK_INT(lm_safetensors_find_prefix(st, "enc.", NULL), 2);
    lm_tensor *t;
    REQUIRE_OK(lm_safetensors_tensor(&t, st, "enc.w", &err), &err);
    lm_safetensors_close(st);
    CHECK_INT(((const unsigned char *)lm_tensor_data(t))[7], 7);
    lm_tensor_free(t);
}

void test_io_safetensors__sharded_index_errors(void)
{
    write_shards();
    struct {
        const char *json;
        lm_status code;
        const char *needle;
    } cases[] = {
        { "{\"weight_map\":{\"enc.x\":\"model-00001-of-00002.safetensors\"}}", LM_ENOTFOUND,
          "\"enc.x\": the weight_map puts it in" },
        { "{\"weight_map\":{\"a\":\"../etc/passwd\"}}", LM_EFORMAT, "\"a\": its shard" },
        { "{\"weight_map\":{\"a\":\"nothere.safetensors\"}}", LM_ENOTFOUND, "nothere" },
        { "{\"weight_map\":{\"enc.w\":\"model-00001-of-00002.safetensors\","
          "\"enc.w\":\"model-00001-of-00002.safetensors\"}}",
          LM_EFORMAT, "twice" },
        { "{\"metadata\":{}}", LM_EFORMAT, "weight_map" },
        { "{\"weight_map\":", LM_EFORMAT, "not valid JSON" },
        { "{\"metadata\":[],\"weight_map\":{}}", LM_EFORMAT, "\"metadata\"" },
    };
    for (size_t i = 0; i < LM_COUNTOF(cases); i++) {
        const char *index = write_text("bad.safetensors.index.json", cases[i].json);
        REQUIRE(index);
        lm_safetensors *st;
        lm_error err;
        lm_status s = lm_safetensors_open(&st, index, &err);
        char line[1200];
        lm_error_format(&err, line, sizeof(line));
        if (s != cases[i].code || !strstr(line, cases[i].needle) ||
            (!strstr(line, ".json") && !strstr(line, "nothere")))
            test__fail(__FILE__, __LINE__, "index case %zu: status %s; message: %s", i,
                       lm_status_str(s), line);
    }
    /* A damaged shard is reported with the shard's own name. */
    write_st("model-00002-of-00002.safetensors", "{\"x\":1}", 0);
    const char *index = write_text("m.safetensors.index.json",
                                   "{\"weight_map\":{\"x\":\"model-00002-of-00002.safetensors\"}}");
    lm_safetensors *st;
    lm_error err;
    CHECK_INT(lm_safetensors_open(&st, index, &err), LM_EFORMAT);
    CHECK_CONTAINS(err.file, "model-00002-of-00002.safetensors");
}
