/* core/io/image_impl.h — what image.c shares with the per-format codecs (png.c, jpeg.c,
 * webp.c); semi-private to core/io/image*.c and the codecs.
 *
 * Decoders turn file bytes into an lm_image_raw: interleaved RGB or RGBA samples, 8-bit or
 * 16-bit (big-endian, as PNG stores them). image.c checks limits through
 * lm_image__check_size() as soon as a decoder knows the size, and converts raw pixels to
 * f32 tensors. Encoders take interleaved 8-bit RGB or RGBA rows and append the encoded
 * file to an lm_image_buf. Every function names `name` (the file) in its errors. */
#ifndef LM_CORE_IO_IMAGE_IMPL_H
#define LM_CORE_IO_IMAGE_IMPL_H

#include "core/base/error.h"
#include "core/io/image.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t width, height;
    int channels;          /* 3 (RGB) or 4 (RGBA) */
    int depth;             /* 8 or 16 bits per sample; 16: big-endian */
    unsigned char *pixels; /* owned (lm_malloc); NULL after a header-only decode */
} lm_image_raw;

/* A growable byte buffer (lm_malloc'd); `failed` is set on out-of-memory. */
typedef struct {
    unsigned char *data;
    size_t size, cap;
    bool failed;
} lm_image_buf;

void lm_image__buf_append(lm_image_buf *buf, const void *data, size_t size);

/* LM_ELIMIT naming the file when width * height is over the limit (or either is 0, which
 * is LM_EFORMAT). `limits` may be NULL for the defaults. */
lm_status lm_image__check_size(const char *name, uint32_t width, uint32_t height,
                               const lm_image_limits *limits, lm_error *err);

/* Decoders: with header_only, fill width/height/channels and leave pixels NULL. */
lm_status lm_image__png_decode(const void *data, size_t size, const char *name,
                               const lm_image_limits *limits, bool header_only, lm_image_raw *out,
                               lm_error *err);
lm_status lm_image__jpeg_decode(const void *data, size_t size, const char *name,
                                const lm_image_limits *limits, bool header_only, lm_image_raw *out,
                                lm_error *err);
lm_status lm_image__webp_decode(const void *data, size_t size, const char *name,
                                const lm_image_limits *limits, bool header_only, lm_image_raw *out,
                                lm_error *err);

/* Encoders: `pixels` holds height rows of width * channels bytes (channels 3 or 4). */
lm_status lm_image__png_encode(const unsigned char *pixels, uint32_t width, uint32_t height,
                               int channels, int level, const lm_image_text *texts, size_t n_texts,
                               lm_image_buf *out, lm_error *err);
lm_status lm_image__jpeg_encode(const unsigned char *pixels, uint32_t width, uint32_t height,
                                int channels, int quality, lm_image_buf *out, lm_error *err);
lm_status lm_image__webp_encode(const unsigned char *pixels, uint32_t width, uint32_t height,
                                int channels, int quality, lm_image_buf *out, lm_error *err);

#endif
