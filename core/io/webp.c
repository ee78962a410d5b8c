/* core/io/webp.c — WebP decoding and encoding with libwebp, in memory.
 * libwebp returns errors as values (no longjmp). Decoding gives 8-bit RGB, or RGBA when the
 * bitstream says it has alpha; animated WebP files are refused. Encoding is lossy at the
 * given quality (1..100) and keeps alpha. */
#include "core/base/alloc.h"
#include "core/io/image_impl.h"

#include <string.h>
#include <webp/decode.h>
#include <webp/encode.h>

static lm_status webp_format_error(const char *name, const char *msg, lm_error *err)
{
    lm_errorf(err, LM_EFORMAT, "bad_webp", "cannot decode the WebP image: %s", msg);
    lm_error_hint(err, "the file is damaged or not a WebP image; save it again");
    lm_error_at_file(err, name, 0, 0);
    return LM_EFORMAT;
}

static const char *status_text(VP8StatusCode code)
{
    switch (code) {
    case VP8_STATUS_OUT_OF_MEMORY:
        return "out of memory";
    case VP8_STATUS_UNSUPPORTED_FEATURE:
        return "unsupported feature";
    case VP8_STATUS_NOT_ENOUGH_DATA:
        return "the file ends early (truncated)";
    default:
        return "corrupt bitstream";
    }
}

lm_status lm_image__webp_decode(const void *data, size_t size, const char *name,
                                const lm_image_limits *limits, bool header_only, lm_image_raw *out,
                                lm_error *err)
{
    memset(out, 0, sizeof(*out));
    WebPBitstreamFeatures f;
    VP8StatusCode code = WebPGetFeatures(data, size, &f);
    if (code != VP8_STATUS_OK)
        return webp_format_error(name, status_text(code), err);
    if (f.has_animation)
        return webp_format_error(name, "animated WebP is not supported", err);
    if (f.width <= 0 || f.height <= 0)
        return webp_format_error(name, "bad size", err);
    out->width = (uint32_t)f.width;
    out->height = (uint32_t)f.height;
    out->channels = f.has_alpha ? 4 : 3;
    out->depth = 8;
    lm_status st = lm_image__check_size(name, out->width, out->height, limits, err);
    if (st != LM_OK || header_only)
        return st;
    size_t stride = (size_t)out->width * (size_t)out->channels;
    size_t bytes = stride * out->height;
    out->pixels = lm_malloc(bytes);
    if (!out->pixels)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory decoding a WebP image");
    uint8_t *ok = f.has_alpha ? WebPDecodeRGBAInto(data, size, out->pixels, bytes, (int)stride)
                              : WebPDecodeRGBInto(data, size, out->pixels, bytes, (int)stride);
    if (!ok) {
        lm_free(out->pixels);
        out->pixels = NULL;
        return webp_format_error(name, "corrupt or truncated bitstream", err);
    }
    return LM_OK;
}

lm_status lm_image__webp_encode(const unsigned char *pixels, uint32_t width, uint32_t height,
                                int channels, int quality, lm_image_buf *out, lm_error *err)
{
    if (width > WEBP_MAX_DIMENSION || height > WEBP_MAX_DIMENSION)
        return lm_errorf(err, LM_ELIMIT, "image_too_large",
                         "a WebP image can be at most %d pixels wide and high; this one is "
                         "%ux%u",
                         WEBP_MAX_DIMENSION, width, height);
    float q = (float)(quality < 1 ? 1 : quality > 100 ? 100 : quality);
    int stride = (int)width * channels;
    uint8_t *mem = NULL;
    size_t n = channels == 4 ? WebPEncodeRGBA(pixels, (int)width, (int)height, stride, q, &mem)
                             : WebPEncodeRGB(pixels, (int)width, (int)height, stride, q, &mem);
    if (n == 0) {
        WebPFree(mem);
        return lm_errorf(err, LM_EINTERNAL, "webp_encode", "cannot encode the WebP image");
    }
    lm_image__buf_append(out, mem, n);
    WebPFree(mem);
    return LM_OK;
}
