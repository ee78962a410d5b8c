/* core/io/jpeg.c — JPEG decoding and encoding with libjpeg(-turbo), in memory.
 *
 * libjpeg's default error handler calls exit(); ours formats the message and longjmps
 * back. As in png.c, the codec state lives in a struct in the caller's frame reached
 * through an unchanging pointer, so nothing the error path reads is a local modified after
 * setjmp(). Libjpeg only warns about a truncated file (and pads it with grey); a
 * "premature end" warning is turned into an error so damaged files never load as
 * half-grey pictures. A progress monitor caps the number of progressive scans, which is
 * libjpeg-turbo's documented guard against scan-count CPU bombs.
 *
 * Decoding gives 8-bit RGB (grey and YCbCr are converted by the library; CMYK/YCCK, as
 * Photoshop writes them with inverted samples, are converted here). Encoding takes RGB or
 * RGBX (alpha is dropped: JPEG has none). */
#include "core/base/alloc.h"
#include "core/io/image_impl.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* After stdio.h: jpeglib.h uses FILE without including it. */
#include <jerror.h>
#include <jpeglib.h>

#define MAX_SCANS 500

typedef struct {
    struct jpeg_error_mgr mgr;
    struct jpeg_progress_mgr progress;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
    bool truncated;
} jpeg_err;

static void on_error_exit(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jmp, 1);
}

static void on_emit(j_common_ptr cinfo, int level)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF && !e->truncated) {
        e->truncated = true;
        (*cinfo->err->format_message)(cinfo, e->msg);
    }
}

static void on_progress(j_common_ptr cinfo)
{
    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > MAX_SCANS) {
        jpeg_err *e = (jpeg_err *)cinfo->err;
        snprintf(e->msg, sizeof(e->msg), "more than %d progressive scans", MAX_SCANS);
        longjmp(e->jmp, 1);
    }
}

static void err_init(jpeg_err *e)
{
    jpeg_std_error(&e->mgr);
    e->mgr.error_exit = on_error_exit;
    e->mgr.emit_message = on_emit;
    e->progress.progress_monitor = on_progress;
    e->msg[0] = '\0';
    e->truncated = false;
}

static lm_status jpeg_format_error(const char *name, const char *msg, lm_error *err)
{
    lm_errorf(err, LM_EFORMAT, "bad_jpeg", "cannot decode the JPEG: %s", msg);
    lm_error_hint(err, "the file is damaged or not a JPEG; save it again");
    lm_error_at_file(err, name, 0, 0);
    return LM_EFORMAT;
}

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    unsigned char *pixels; /* RGB, or CMYK before conversion */
} jpeg_dec;

/* Inverted CMYK (Adobe) to RGB, in place into 3 bytes per pixel. */
static void cmyk_to_rgb(unsigned char *pix, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const unsigned char *s = pix + 4 * i;
        unsigned k = s[3];
        unsigned char r = (unsigned char)((s[0] * k + 127) / 255);
        unsigned char g = (unsigned char)((s[1] * k + 127) / 255);
        unsigned char b = (unsigned char)((s[2] * k + 127) / 255);
        pix[3 * i] = r;
        pix[3 * i + 1] = g;
        pix[3 * i + 2] = b;
    }
}

static lm_status read_scanlines(jpeg_dec *d, const lm_image_raw *out, lm_error *err)
{
    size_t stride = (size_t)out->width * (size_t)d->cinfo.output_components;
    d->pixels = lm_malloc(stride * out->height);
    if (!d->pixels)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory decoding a JPEG");
    while (d->cinfo.output_scanline < d->cinfo.output_height) {
        JSAMPROW row = d->pixels + (size_t)d->cinfo.output_scanline * stride;
        (void)jpeg_read_scanlines(&d->cinfo, &row, 1);
    }
    return LM_OK;
}

static lm_status decode_jmp(jpeg_dec *d, const void *data, size_t size, const char *name,
                            const lm_image_limits *limits, bool header_only, lm_image_raw *out,
                            lm_error *err)
{
    if (setjmp(d->err.jmp))
        return jpeg_format_error(name, d->err.msg, err);
    jpeg_create_decompress(&d->cinfo);
    d->cinfo.progress = &d->err.progress;
    jpeg_mem_src(&d->cinfo, data, (unsigned long)size);
    (void)jpeg_read_header(&d->cinfo, TRUE);
    out->width = d->cinfo.image_width;
    out->height = d->cinfo.image_height;
    out->channels = 3;
    out->depth = 8;
    lm_status st = lm_image__check_size(name, out->width, out->height, limits, err);
    if (st != LM_OK || header_only)
        return st;
    bool cmyk = d->cinfo.jpeg_color_space == JCS_CMYK || d->cinfo.jpeg_color_space == JCS_YCCK;
    d->cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    (void)jpeg_start_decompress(&d->cinfo);
    st = read_scanlines(d, out, err);
    if (st != LM_OK)
        return st;
    (void)jpeg_finish_decompress(&d->cinfo);
    if (d->err.truncated)
        return jpeg_format_error(name, d->err.msg, err);
    if (cmyk)
        cmyk_to_rgb(d->pixels, (size_t)out->width * out->height);
    return LM_OK;
}

lm_status lm_image__jpeg_decode(const void *data, size_t size, const char *name,
                                const lm_image_limits *limits, bool header_only, lm_image_raw *out,
                                lm_error *err)
{
    memset(out, 0, sizeof(*out));
    jpeg_dec *d = lm_calloc(1, sizeof(*d));
    if (!d)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory decoding a JPEG");
    err_init(&d->err);
    d->cinfo.err = &d->err.mgr;
    lm_status st = decode_jmp(d, data, size, name, limits, header_only, out, err);
    jpeg_destroy_decompress(&d->cinfo);
    if (st == LM_OK)
        out->pixels = d->pixels;
    else
        lm_free(d->pixels);
    lm_free(d);
    return st;
}

/* ---- encoding ---- */

typedef struct {
    struct jpeg_compress_struct cinfo;
    jpeg_err err;
    unsigned char *mem; /* libjpeg's output buffer (malloc) */
    unsigned long mem_size;
} jpeg_enc;

static lm_status encode_jmp(jpeg_enc *e, const unsigned char *pixels, uint32_t width,
                            uint32_t height, int channels, int quality, lm_error *err)
{
    if (setjmp(e->err.jmp)) {
        lm_errorf(err, LM_EINTERNAL, "jpeg_encode", "cannot encode the JPEG: %s", e->err.msg);
        return LM_EINTERNAL;
    }
    jpeg_create_compress(&e->cinfo);
    jpeg_mem_dest(&e->cinfo, &e->mem, &e->mem_size);
    e->cinfo.image_width = width;
    e->cinfo.image_height = height;
    e->cinfo.input_components = channels;
    e->cinfo.in_color_space = channels == 4 ? JCS_EXT_RGBX : JCS_RGB;
    jpeg_set_defaults(&e->cinfo);
    jpeg_set_quality(&e->cinfo, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
    jpeg_start_compress(&e->cinfo, TRUE);
    size_t stride = (size_t)width * (size_t)channels;
    while (e->cinfo.next_scanline < e->cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(uintptr_t)(pixels + (size_t)e->cinfo.next_scanline * stride);
        (void)jpeg_write_scanlines(&e->cinfo, &row, 1);
    }
    jpeg_finish_compress(&e->cinfo);
    return LM_OK;
}

lm_status lm_image__jpeg_encode(const unsigned char *pixels, uint32_t width, uint32_t height,
                                int channels, int quality, lm_image_buf *out, lm_error *err)
{
    if (width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION)
        return lm_errorf(err, LM_ELIMIT, "image_too_large",
                         "a JPEG can be at most %ld pixels wide and high; this image is %ux%u",
                         (long)JPEG_MAX_DIMENSION, width, height);
    jpeg_enc *e = lm_calloc(1, sizeof(*e));
    if (!e)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory encoding a JPEG");
    err_init(&e->err);
    e->cinfo.err = &e->err.mgr;
    lm_status st = encode_jmp(e, pixels, width, height, channels, quality, err);
    jpeg_destroy_compress(&e->cinfo);
    if (st == LM_OK)
        lm_image__buf_append(out, e->mem, e->mem_size);
    free(e->mem);
    lm_free(e);
    return st;
}
