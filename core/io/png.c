/* core/io/png.c — PNG decoding and encoding with libpng, in memory.
 *
 * libpng reports errors by longjmp. Each codec keeps all of its state in a struct that
 * lives in the caller's frame and is reached through a pointer that never changes after
 * setjmp(), so nothing the error path needs is an automatic variable modified between
 * setjmp() and longjmp() (C11 7.13.2.1). The setjmp() function allocates nothing itself:
 * buffers hang off the struct and the caller frees them on both paths.
 *
 * Decoding expands everything to RGB or RGBA (palette, grey, low bit depths, tRNS) and
 * keeps 16-bit samples as 16 bits. Text chunks are skipped while decoding pixels (see
 * png_text.c for reading them). Encoding writes 8-bit RGB/RGBA with the caller's text
 * chunks before the image data: tEXt when the text is Latin-1 (converted from UTF-8, as
 * PIL does), iTXt otherwise. */
#include "core/base/alloc.h"
#include "core/io/image_impl.h"

#include <png.h>
#include <setjmp.h>
#include <string.h>

typedef struct {
    png_structp png;
    png_infop info;
    const unsigned char *data;
    size_t size, pos;
    char msg[200]; /* libpng's error text */
    png_bytep *rows;
    unsigned char *pixels;
} png_dec;

static void on_png_error(png_structp png, png_const_charp msg)
{
    char *dst = png_get_error_ptr(png);
    size_t n = strlen(msg);
    if (n > 199)
        n = 199;
    memcpy(dst, msg, n);
    dst[n] = '\0';
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void read_mem(png_structp png, png_bytep out, size_t length)
{
    png_dec *d = png_get_io_ptr(png);
    if (length > d->size - d->pos)
        png_error(png, "the file ends early (truncated)");
    memcpy(out, d->data + d->pos, length);
    d->pos += length;
}

static lm_status png_format_error(const char *name, const char *msg, lm_error *err)
{
    lm_errorf(err, LM_EFORMAT, "bad_png", "cannot decode the PNG: %s", msg);
    lm_error_hint(err, "the file is damaged or not a PNG; save it again");
    lm_error_at_file(err, name, 0, 0);
    return LM_EFORMAT;
}

/* Sets the transforms that turn any PNG into 8- or 16-bit RGB or RGBA. */
static void set_expansions(png_structp png, png_infop info)
{
    png_byte type = png_get_color_type(png, info);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* The part that may longjmp. Returns LM_EFORMAT with d->msg set on a libpng error. */
static lm_status decode_jmp(png_dec *d, const char *name, const lm_image_limits *limits,
                            bool header_only, lm_image_raw *out, lm_error *err)
{
    if (setjmp(png_jmpbuf(d->png)))
        return png_format_error(name, d->msg, err);
    static const png_byte skip[] = "tEXt\0zTXt\0iTXt";
    png_set_keep_unknown_chunks(d->png, PNG_HANDLE_CHUNK_NEVER, skip, 3);
    png_set_read_fn(d->png, d, read_mem);
    png_read_info(d->png, d->info);
    out->width = png_get_image_width(d->png, d->info);
    out->height = png_get_image_height(d->png, d->info);
    lm_status st = lm_image__check_size(name, out->width, out->height, limits, err);
    if (st != LM_OK)
        return st;
    set_expansions(d->png, d->info);
    out->channels = png_get_channels(d->png, d->info);
    out->depth = png_get_bit_depth(d->png, d->info);
    if ((out->channels != 3 && out->channels != 4) || (out->depth != 8 && out->depth != 16))
        return png_format_error(name, "unexpected layout after expansion", err);
    if (header_only)
        return LM_OK;
    size_t stride = png_get_rowbytes(d->png, d->info);
    d->pixels = lm_malloc(stride * out->height);
    d->rows = lm_malloc(sizeof(*d->rows) * out->height);
    if (!d->pixels || !d->rows)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory decoding a PNG");
    for (uint32_t y = 0; y < out->height; y++)
        d->rows[y] = d->pixels + (size_t)y * stride;
    png_read_image(d->png, d->rows);
    png_read_end(d->png, NULL);
    return LM_OK;
}

lm_status lm_image__png_decode(const void *data, size_t size, const char *name,
                               const lm_image_limits *limits, bool header_only, lm_image_raw *out,
                               lm_error *err)
{
    memset(out, 0, sizeof(*out));
    png_dec d = { .data = data, .size = size };
    d.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d.msg, on_png_error, on_png_warning);
    if (d.png)
        d.info = png_create_info_struct(d.png);
    if (!d.png || !d.info) {
        png_destroy_read_struct(d.png ? &d.png : NULL, NULL, NULL);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory decoding a PNG");
    }
    lm_status st = decode_jmp(&d, name, limits, header_only, out, err);
    png_destroy_read_struct(&d.png, &d.info, NULL);
    lm_free(d.rows);
    if (st != LM_OK) {
        lm_free(d.pixels);
        return st;
    }
    out->pixels = d.pixels;
    return LM_OK;
}

/* ---- encoding ---- */

typedef struct {
    png_structp png;
    png_infop info;
    lm_image_buf *out;
    char msg[200];
    png_textp texts; /* n_texts entries; strings below */
    char **owned;    /* converted strings, 2 per text */
    png_bytep *rows;
} png_enc;

static void write_mem(png_structp png, png_bytep data, size_t length)
{
    png_enc *e = png_get_io_ptr(png);
    lm_image__buf_append(e->out, data, length);
    if (e->out->failed)
        png_error(png, "out of memory");
}

static void flush_mem(png_structp png)
{
    (void)png;
}

/* When the UTF-8 text only holds code points up to U+00FF, a new Latin-1 copy; otherwise
 * NULL with *latin1 = false (also NULL with *latin1 = true on out-of-memory). */
static char *utf8_to_latin1(const char *s, bool *latin1)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    for (size_t i = 0; p[i]; i++, n++) {
        if (p[i] >= 0x80 && !((p[i] == 0xc2 || p[i] == 0xc3) && (p[i + 1] & 0xc0) == 0x80)) {
            *latin1 = false;
            return NULL;
        }
        i += p[i] >= 0x80;
    }
    *latin1 = true;
    char *out = lm_malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; p[i]; i++) {
        if (p[i] < 0x80) {
            out[o++] = (char)p[i];
        } else {
            out[o++] = (char)(((p[i] & 0x03) << 6) | (p[i + 1] & 0x3f));
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

bool lm_png_key_is_valid(const char *key)
{
    size_t n = strlen(key);
    if (n < 1 || n > 79 || key[0] == ' ' || key[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return false;
    return true;
}

/* Fills e->texts from the caller's UTF-8 texts. */
static lm_status prepare_texts(png_enc *e, const lm_image_text *texts, size_t n, lm_error *err)
{
    if (n == 0)
        return LM_OK;
    e->texts = lm_calloc(n, sizeof(*e->texts));
    e->owned = lm_calloc(n, sizeof(*e->owned));
    if (!e->texts || !e->owned)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory encoding a PNG");
    for (size_t i = 0; i < n; i++) {
        if (!texts[i].key || !lm_png_key_is_valid(texts[i].key))
            return lm_errorf(err, LM_EINVAL, "bad_png_key",
                             "PNG text keyword \"%.80s\" is not 1 to 79 printable ASCII "
                             "characters",
                             texts[i].key ? texts[i].key : "(null)");
        bool latin1;
        const char *text = texts[i].text ? texts[i].text : "";
        e->owned[i] = utf8_to_latin1(text, &latin1);
        if (latin1 && !e->owned[i])
            return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory encoding a PNG");
        e->texts[i].key = (png_charp)(uintptr_t)texts[i].key;
        e->texts[i].compression = latin1 ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
        e->texts[i].text = latin1 ? e->owned[i] : (png_charp)(uintptr_t)text;
        e->texts[i].lang = NULL;
        e->texts[i].lang_key = NULL;
    }
    return LM_OK;
}

static lm_status encode_jmp(png_enc *e, uint32_t width, uint32_t height, int channels, int level,
                            size_t n_texts, lm_error *err)
{
    if (setjmp(png_jmpbuf(e->png))) {
        lm_errorf(err, LM_EINTERNAL, "png_encode", "cannot encode the PNG: %s", e->msg);
        return LM_EINTERNAL;
    }
    png_set_write_fn(e->png, e, write_mem, flush_mem);
    png_set_compression_level(e->png, level);
    png_set_IHDR(e->png, e->info, width, height, 8,
                 channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (n_texts > 0)
        png_set_text(e->png, e->info, e->texts, (int)n_texts);
    png_write_info(e->png, e->info);
    png_write_image(e->png, e->rows);
    png_write_end(e->png, NULL);
    return LM_OK;
}

static void enc_fini(png_enc *e, size_t n_texts)
{
    png_destroy_write_struct(e->png ? &e->png : NULL, e->info ? &e->info : NULL);
    for (size_t i = 0; e->owned && i < n_texts; i++)
        lm_free(e->owned[i]);
    lm_free(e->owned);
    lm_free(e->texts);
    lm_free(e->rows);
}

lm_status lm_image__png_encode(const unsigned char *pixels, uint32_t width, uint32_t height,
                               int channels, int level, const lm_image_text *texts, size_t n_texts,
                               lm_image_buf *out, lm_error *err)
{
    png_enc e = { .out = out };
    if (n_texts > 0x7fffffff)
        return lm_errorf(err, LM_ELIMIT, "too_many_texts", "too many PNG text chunks");
    lm_status st = prepare_texts(&e, texts, n_texts, err);
    if (st != LM_OK)
        goto out_fini;
    e.rows = lm_malloc(sizeof(*e.rows) * (height ? height : 1));
    e.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e.msg, on_png_error, on_png_warning);
    if (e.png)
        e.info = png_create_info_struct(e.png);
    if (!e.rows || !e.png || !e.info) {
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory encoding a PNG");
        goto out_fini;
    }
    size_t stride = (size_t)width * (size_t)channels;
    for (uint32_t y = 0; y < height; y++)
        e.rows[y] = (png_bytep)(uintptr_t)(pixels + (size_t)y * stride);
    st = encode_jmp(&e, width, height, channels,
                    level < 0   ? 0
                    : level > 9 ? 9
                                : level,
                    n_texts, err);
out_fini:
    enc_fini(&e, n_texts);
    return st;
}
