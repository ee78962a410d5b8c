/* core/io/png_text.c — the text chunks of a PNG (tEXt, zTXt, iTXt), read without decoding
 * pixels.
 *
 * The workflow loader reads a picture's `prompt` chunk through lm_png_read_texts(), so this
 * walks the chunk list itself instead of going through libpng: it never inflates image
 * data, stops at IEND, and checks each text chunk's CRC. tEXt and zTXt hold Latin-1 and are
 * converted to UTF-8; iTXt holds UTF-8 (optionally zlib-compressed). A chunk that runs past
 * the end of the data, or a text chunk with a bad CRC or a bad layout, is LM_EFORMAT naming
 * the file. Decompressed text is capped (PNG_TEXT_MAX for all chunks together, so many
 * small bombs cannot add up) against zip bombs. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/image.h"

#include <string.h>
#include <zlib.h>

#define PNG_TEXT_MAX  ((size_t)64 << 20)
#define PNG_CHUNK_MAX 0x7fffffffu

static const unsigned char png_signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

typedef struct {
    char **keys, **texts;
    size_t count, cap;
    size_t inflated; /* bytes inflated so far, counted against PNG_TEXT_MAX */
} text_list;

typedef struct {
    const unsigned char *data; /* chunk data */
    size_t size;
    const char *name; /* file, for errors */
    char type[5];
} chunk;

int lm_image_is_png(const void *data, size_t size)
{
    return data && size >= sizeof(png_signature) &&
           memcmp(data, png_signature, sizeof(png_signature)) == 0;
}

static uint32_t read_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static lm_status chunk_error(const chunk *c, lm_error *err, const char *what)
{
    lm_errorf(err, LM_EFORMAT, "bad_png", "%s chunk is malformed: %s", c->type, what);
    lm_error_hint(err, "the file is damaged; save it again");
    lm_error_at_file(err, c->name, 0, 0);
    return LM_EFORMAT;
}

/* Latin-1 bytes to a new UTF-8 string. */
static char *latin1_to_utf8(const unsigned char *s, size_t n)
{
    size_t extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += s[i] >= 0x80;
    char *out = lm_malloc(n + extra + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x80) {
            out[o++] = (char)s[i];
        } else {
            out[o++] = (char)(0xc0 | (s[i] >> 6));
            out[o++] = (char)(0x80 | (s[i] & 0x3f));
        }
    }
    out[o] = '\0';
    return out;
}

/* Inflates a zlib stream into a new NUL-terminated buffer, counting its length against
 * what is left of the list's PNG_TEXT_MAX. */
static lm_status inflate_text(const chunk *c, const unsigned char *src, size_t n, text_list *list,
                              char **out, size_t *len_out, lm_error *err)
{
    size_t max = PNG_TEXT_MAX - list->inflated;
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory inflating text");
    lm_str text;
    lm_str_init(&text);
    unsigned char block[16384];
    zs.next_in = (Bytef *)(uintptr_t)src;
    zs.avail_in = (uInt)n;
    int rc = Z_OK;
    while (rc == Z_OK && text.len <= max && !text.oom) {
        zs.next_out = block;
        zs.avail_out = sizeof(block);
        rc = inflate(&zs, Z_NO_FLUSH);
        lm_str_appendn(&text, (const char *)block, sizeof(block) - zs.avail_out);
    }
    inflateEnd(&zs);
    lm_status st = LM_OK;
    if (text.oom)
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory inflating text");
    else if (text.len > max)
        st = chunk_error(c, err, "the text chunks inflate to more than 64 MiB in all");
    else if (rc != Z_STREAM_END)
        st = chunk_error(c, err, "the compressed text is corrupt");
    if (st == LM_OK) {
        list->inflated += text.len;
        *len_out = text.len;
        *out = lm_str_take(&text);
        if (!*out)
            *out = lm_strdup(""); /* nothing was appended: empty text */
        if (!*out)
            st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory inflating text");
    }
    lm_str_fini(&text);
    return st;
}

static lm_status list_push(text_list *list, char *key, char *text, lm_error *err)
{
    if (!key || !text)
        goto out_nomem;
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 4;
        char **keys = lm_realloc(list->keys, cap * sizeof(*keys));
        if (!keys)
            goto out_nomem;
        list->keys = keys;
        char **texts = lm_realloc(list->texts, cap * sizeof(*texts));
        if (!texts)
            goto out_nomem;
        list->texts = texts;
        list->cap = cap;
    }
    list->keys[list->count] = key;
    list->texts[list->count] = text;
    list->count++;
    return LM_OK;
out_nomem:
    lm_free(key);
    lm_free(text);
    return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory reading PNG text");
}

/* Length of the NUL-terminated field at p (at most n), or n when there is no NUL. */
static size_t field_len(const unsigned char *p, size_t n)
{
    const void *z = memchr(p, 0, n);
    return z ? (size_t)((const unsigned char *)z - p) : n;
}

static lm_status read_text_chunk(const chunk *c, text_list *list, lm_error *err)
{
    size_t kn = field_len(c->data, c->size);
    if (kn == 0 || kn >= c->size || kn > 79)
        return chunk_error(c, err, "no keyword of 1 to 79 bytes before a NUL");
    const unsigned char *rest = c->data + kn + 1;
    size_t rn = c->size - kn - 1;
    char *key = latin1_to_utf8(c->data, kn);
    if (strcmp(c->type, "tEXt") == 0)
        return list_push(list, key, latin1_to_utf8(rest, rn), err);
    /* zTXt: compression method (0 = zlib), then the compressed Latin-1 text. */
    if (rn < 1 || rest[0] != 0) {
        lm_free(key);
        return chunk_error(c, err, "unknown compression method");
    }
    char *raw = NULL;
    size_t raw_len = 0;
    lm_status st = inflate_text(c, rest + 1, rn - 1, list, &raw, &raw_len, err);
    if (st != LM_OK) {
        lm_free(key);
        return st;
    }
    char *text = latin1_to_utf8((const unsigned char *)raw, raw_len);
    lm_free(raw);
    return list_push(list, key, text, err);
}

/* iTXt: keyword NUL, flag, method, language NUL, translated keyword NUL, UTF-8 text. */
static lm_status read_itxt_chunk(const chunk *c, text_list *list, lm_error *err)
{
    size_t kn = field_len(c->data, c->size);
    if (kn == 0 || kn > 79 || c->size - kn < 3)
        return chunk_error(c, err, "no keyword of 1 to 79 bytes before a NUL");
    const unsigned char *p = c->data + kn + 1, *end = c->data + c->size;
    int compressed = p[0], method = p[1];
    p += 2;
    for (int field = 0; field < 2; field++) { /* language tag, translated keyword */
        size_t n = field_len(p, (size_t)(end - p));
        if (p + n >= end)
            return chunk_error(c, err, "the language or translated keyword is unterminated");
        p += n + 1;
    }
    if (compressed && method != 0)
        return chunk_error(c, err, "unknown compression method");
    char *key = latin1_to_utf8(c->data, kn);
    char *text = NULL;
    size_t len = 0;
    if (!compressed) {
        text = lm_strndup((const char *)p, (size_t)(end - p));
    } else {
        lm_status st = inflate_text(c, p, (size_t)(end - p), list, &text, &len, err);
        if (st != LM_OK) {
            lm_free(key);
            return st;
        }
    }
    return list_push(list, key, text, err);
}

static bool is_text_type(const char *type)
{
    return strcmp(type, "tEXt") == 0 || strcmp(type, "zTXt") == 0 || strcmp(type, "iTXt") == 0;
}

static lm_status read_chunk(chunk *c, text_list *list, lm_error *err)
{
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)c->data - 4, (uInt)c->size + 4);
    if (crc != read_be32(c->data + c->size))
        return chunk_error(c, err, "CRC mismatch");
    if (strcmp(c->type, "iTXt") == 0)
        return read_itxt_chunk(c, list, err);
    return read_text_chunk(c, list, err);
}

static lm_status walk_chunks(const unsigned char *d, size_t size, const char *name, text_list *list,
                             lm_error *err)
{
    size_t pos = sizeof(png_signature);
    for (;;) {
        chunk c = { .name = name, .type = "?" };
        if (size - pos < 12)
            return chunk_error(&c, err, "the file ends before the IEND chunk (truncated)");
        uint32_t len = read_be32(d + pos);
        memcpy(c.type, d + pos + 4, 4);
        c.type[4] = '\0';
        if (len > PNG_CHUNK_MAX || len > size - pos - 12)
            return chunk_error(&c, err, "the chunk runs past the end of the file (truncated)");
        c.data = d + pos + 8;
        c.size = len;
        if (strcmp(c.type, "IEND") == 0)
            return LM_OK;
        if (is_text_type(c.type)) {
            lm_status st = read_chunk(&c, list, err);
            if (st != LM_OK)
                return st;
        }
        pos += (size_t)len + 12;
    }
}

lm_status lm_png_read_texts_mem(const void *data, size_t size, const char *name, char ***keys_out,
                                char ***texts_out, size_t *count_out, lm_error *err)
{
    *keys_out = NULL;
    *texts_out = NULL;
    *count_out = 0;
    if (!lm_image_is_png(data, size)) {
        lm_errorf(err, LM_EFORMAT, "not_png", "not a PNG file (no PNG signature)");
        lm_error_at_file(err, name, 0, 0);
        return LM_EFORMAT;
    }
    text_list list = { 0 };
    lm_status st = walk_chunks(data, size, name, &list, err);
    if (st != LM_OK) {
        lm_image_texts_free(list.keys, list.texts, list.count);
        return st;
    }
    *keys_out = list.keys;
    *texts_out = list.texts;
    *count_out = list.count;
    return LM_OK;
}

lm_status lm_png_read_texts(const char *path, size_t max_bytes, char ***keys_out, char ***texts_out,
                            size_t *count_out, lm_error *err)
{
    *keys_out = NULL;
    *texts_out = NULL;
    *count_out = 0;
    char *data = NULL;
    size_t size = 0;
    lm_status st = lm_file_read(path, max_bytes ? max_bytes : (size_t)64 << 20, &data, &size, err);
    if (st != LM_OK)
        return st;
    st = lm_png_read_texts_mem(data, size, path, keys_out, texts_out, count_out, err);
    lm_free(data);
    return st;
}

void lm_image_texts_free(char **keys, char **texts, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (keys)
            lm_free(keys[i]);
        if (texts)
            lm_free(texts[i]);
    }
    lm_free(keys);
    lm_free(texts);
}
