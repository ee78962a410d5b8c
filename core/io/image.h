/* core/io/image.h — reading and writing image files (PNG via libpng; JPEG via libjpeg-turbo
 * and WebP via libwebp where built).
 *
 * Pixels cross this boundary as f32 tensors in ComfyUI's convention: an image is
 * [1, H, W, C] (C = 3 for RGB; 4 with alpha where asked) with values in [0, 1] on the CPU.
 * Conversion to 8 bits is round-to-nearest of clamp(x, 0, 1) * 255, NaN → 0 (ComfyUI's
 * np.clip(255 * x, 0, 255).astype(uint8) truncates; rounding makes load → save exact;
 * docs/nodes-notes.md).
 *
 * Limits: every reader takes a max file size and a max pixel count and refuses larger
 * inputs with LM_ELIMIT before decoding; corrupt or truncated files are LM_EFORMAT errors
 * naming the file — never a crash (libpng/libjpeg errors are caught). */
#ifndef LM_CORE_IO_IMAGE_H
#define LM_CORE_IO_IMAGE_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LM_IMAGE_PNG, LM_IMAGE_JPEG, LM_IMAGE_WEBP } lm_image_format;

typedef struct {
    const char *key;  /* PNG tEXt keyword, e.g. "prompt", "workflow", "parameters" */
    const char *text; /* UTF-8 */
} lm_image_text;

typedef struct {
    size_t max_bytes;   /* 0: 64 MiB */
    int64_t max_pixels; /* 0: 8192 * 8192 */
} lm_image_limits;

/* Decodes a PNG, JPEG or WebP file (detected from its signature). *rgb_out is [1,H,W,3];
 * *alpha_out is [1,H,W] with the alpha channel in [0,1] or NULL when the image has none
 * (alpha_out may be NULL when not wanted). 16-bit PNGs keep their precision; palette and
 * grey images are expanded to RGB. */
lm_status lm_image_load(const char *path, const lm_image_limits *limits, lm_tensor **rgb_out,
                        lm_tensor **alpha_out, lm_error *err);
lm_status lm_image_load_mem(const void *data, size_t size, const char *name,
                            const lm_image_limits *limits, lm_tensor **rgb_out,
                            lm_tensor **alpha_out, lm_error *err);

/* What a file's header says, without decoding pixels (same limits and errors as
 * lm_image_load: a file over the limits or not a readable image header fails). */
typedef struct {
    lm_image_format format;
    uint32_t width, height;
    bool has_alpha;
} lm_image_info;
lm_status lm_image_probe(const char *path, const lm_image_limits *limits, lm_image_info *info,
                         lm_error *err);
lm_status lm_image_probe_mem(const void *data, size_t size, const char *name,
                             const lm_image_limits *limits, lm_image_info *info, lm_error *err);

/* Encodes image `index` of an IMAGE tensor [B,H,W,C] (C = 1, 3 or 4) into memory (free
 * with lm_free). PNG gets the text chunks as tEXt (iTXt when not Latin-1); `quality` is
 * 1..100 for JPEG/WebP, the zlib level 0..9 for PNG. */
lm_status lm_image_encode(const lm_tensor *images, int64_t index, lm_image_format format,
                          int quality, const lm_image_text *texts, size_t n_texts,
                          unsigned char **out, size_t *out_size, lm_error *err);
/* Same, written to a file atomically (temporary name, then rename). */
lm_status lm_image_save(const char *path, const lm_tensor *images, int64_t index,
                        lm_image_format format, int quality, const lm_image_text *texts,
                        size_t n_texts, lm_error *err);

/* Writes bytes to `path` atomically (a temporary file beside it, then rename). With
 * no_replace an existing file is never replaced: LM_EIO with kind "file_exists" (the check
 * and the creation are one atomic step, so concurrent writers never overwrite each other). */
lm_status lm_image_write_file(const char *path, const void *data, size_t size, bool no_replace,
                              lm_error *err);

/* The format named by a file name's extension (.png, .jpg/.jpeg, .webp; any case). */
bool lm_image_format_from_name(const char *name, lm_image_format *format);

/* Reads the text chunks (tEXt, zTXt, iTXt) of a PNG file without decoding pixels.
 * *keys_out and *texts_out are arrays of *count_out strings (free with
 * lm_image_texts_free). A file that is not a PNG gives LM_EFORMAT. */
lm_status lm_png_read_texts(const char *path, size_t max_bytes, char ***keys_out, char ***texts_out,
                            size_t *count_out, lm_error *err);
lm_status lm_png_read_texts_mem(const void *data, size_t size, const char *name, char ***keys_out,
                                char ***texts_out, size_t *count_out, lm_error *err);
void lm_image_texts_free(char **keys, char **texts, size_t count);
/* Whether a PNG text keyword is valid: 1 to 79 printable ASCII characters, no leading or
 * trailing space (lm_image_encode refuses others with LM_EINVAL). */
bool lm_png_key_is_valid(const char *key);

/* True when the bytes start with the PNG signature. */
int lm_image_is_png(const void *data, size_t size);

#endif
