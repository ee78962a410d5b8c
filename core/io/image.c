/* core/io/image.c — image file dispatch: limits, format detection, pixel conversions and
 * atomic writes. The codecs (png.c, jpeg.c, webp.c) only move bytes; this file turns their
 * interleaved 8/16-bit samples into f32 tensors and back.
 *
 * f32 → 8 bits is round-to-nearest of clamp(x, 0, 1) * 255, NaN → 0 (ComfyUI truncates;
 * rounding makes a load → save round trip exact). 8/16 bits → f32 is v / 255 or v / 65535.
 * Atomic save: the bytes go to "<path>.tmp-XXXXXX" in the same directory, are fsync'd, then
 * renamed over <path>, or hard-linked to it when the caller must never replace a file
 * (link() fails when the name exists, which makes "create if absent" atomic too). */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/image_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAX_BYTES  ((size_t)64 << 20)
#define DEFAULT_MAX_PIXELS ((int64_t)8192 * 8192)

static size_t limit_bytes(const lm_image_limits *limits)
{
    return limits && limits->max_bytes ? limits->max_bytes : DEFAULT_MAX_BYTES;
}

static int64_t limit_pixels(const lm_image_limits *limits)
{
    return limits && limits->max_pixels > 0 ? limits->max_pixels : DEFAULT_MAX_PIXELS;
}

void lm_image__buf_append(lm_image_buf *buf, const void *data, size_t size)
{
    if (buf->failed || size == 0)
        return;
    if (size > buf->cap - buf->size) {
        size_t cap = buf->cap ? buf->cap : 65536;
        while (cap - buf->size < size && cap < SIZE_MAX / 2)
            cap *= 2;
        unsigned char *p = cap - buf->size >= size ? lm_realloc(buf->data, cap) : NULL;
        if (!p) {
            buf->failed = true;
            return;
        }
        buf->data = p;
        buf->cap = cap;
    }
    memcpy(buf->data + buf->size, data, size);
    buf->size += size;
}

lm_status lm_image__check_size(const char *name, uint32_t width, uint32_t height,
                               const lm_image_limits *limits, lm_error *err)
{
    if (width == 0 || height == 0) {
        lm_errorf(err, LM_EFORMAT, "bad_image", "the image is %ux%u pixels; it is empty", width,
                  height);
        lm_error_at_file(err, name, 0, 0);
        return LM_EFORMAT;
    }
    int64_t pixels = (int64_t)width * (int64_t)height, max = limit_pixels(limits);
    if (pixels > max) {
        lm_errorf(err, LM_ELIMIT, "image_too_large",
                  "the image is %ux%u = %lld pixels, over the limit of %lld", width, height,
                  (long long)pixels, (long long)max);
        lm_error_hint(err, "use a smaller image or raise the pixel limit");
        lm_error_at_file(err, name, 0, 0);
        return LM_ELIMIT;
    }
    return LM_OK;
}

typedef lm_status (*decode_fn)(const void *data, size_t size, const char *name,
                               const lm_image_limits *limits, bool header_only, lm_image_raw *out,
                               lm_error *err);

static bool is_jpeg(const unsigned char *d, size_t n)
{
    return n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff;
}

static bool is_webp(const unsigned char *d, size_t n)
{
    return n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0;
}

/* The decoder for the data's signature, after checking the byte limit. */
static lm_status pick_decoder(const void *data, size_t size, const char *name,
                              const lm_image_limits *limits, decode_fn *fn, lm_error *err)
{
    if (size > limit_bytes(limits)) {
        lm_errorf(err, LM_ELIMIT, "file_too_large",
                  "the image file has %zu bytes, over the limit of %zu", size, limit_bytes(limits));
        lm_error_at_file(err, name, 0, 0);
        return LM_ELIMIT;
    }
    const unsigned char *d = data;
    if (lm_image_is_png(data, size))
        *fn = lm_image__png_decode;
    else if (is_jpeg(d, size))
        *fn = lm_image__jpeg_decode;
    else if (is_webp(d, size))
        *fn = lm_image__webp_decode;
    else {
        lm_errorf(err, LM_EFORMAT, "unknown_image_format",
                  "not a PNG, JPEG or WebP image (unknown signature)");
        lm_error_hint(err, "convert the picture to PNG, JPEG or WebP");
        lm_error_at_file(err, name, 0, 0);
        return LM_EFORMAT;
    }
    return LM_OK;
}

static float sample_at(const lm_image_raw *raw, size_t i)
{
    if (raw->depth == 16) {
        const unsigned char *p = raw->pixels + 2 * i;
        return (float)((unsigned)p[0] << 8 | p[1]) / 65535.0f;
    }
    return (float)raw->pixels[i] / 255.0f;
}

/* Splits interleaved samples into an RGB tensor and (when wanted and present) alpha. */
static lm_status raw_to_tensors(const lm_image_raw *raw, lm_tensor **rgb_out, lm_tensor **alpha_out,
                                lm_error *err)
{
    int64_t shape[4] = { 1, raw->height, raw->width, 3 };
    lm_status st = lm_tensor_new(rgb_out, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, err);
    if (st != LM_OK)
        return st;
    lm_tensor *alpha = NULL;
    if (alpha_out && raw->channels == 4) {
        st = lm_tensor_new(&alpha, lm_backend_cpu(), LM_DTYPE_F32, 3, shape, err);
        if (st != LM_OK) {
            lm_tensor_free(*rgb_out);
            *rgb_out = NULL;
            return st;
        }
    }
    float *rgb = lm_tensor_data(*rgb_out), *a = alpha ? lm_tensor_data(alpha) : NULL;
    size_t n = (size_t)raw->width * raw->height, c = (size_t)raw->channels;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < 3; k++)
            rgb[3 * i + k] = sample_at(raw, c * i + k);
        if (a)
            a[i] = sample_at(raw, c * i + 3);
    }
    if (alpha_out)
        *alpha_out = alpha;
    return LM_OK;
}

lm_status lm_image_load_mem(const void *data, size_t size, const char *name,
                            const lm_image_limits *limits, lm_tensor **rgb_out,
                            lm_tensor **alpha_out, lm_error *err)
{
    *rgb_out = NULL;
    if (alpha_out)
        *alpha_out = NULL;
    decode_fn decode;
    lm_status st = pick_decoder(data, size, name, limits, &decode, err);
    if (st != LM_OK)
        return st;
    lm_image_raw raw;
    st = decode(data, size, name, limits, false, &raw, err);
    if (st != LM_OK)
        return st;
    st = raw_to_tensors(&raw, rgb_out, alpha_out, err);
    lm_free(raw.pixels);
    return st;
}

lm_status lm_image_probe_mem(const void *data, size_t size, const char *name,
                             const lm_image_limits *limits, lm_image_info *info, lm_error *err)
{
    memset(info, 0, sizeof(*info));
    decode_fn decode;
    lm_status st = pick_decoder(data, size, name, limits, &decode, err);
    if (st != LM_OK)
        return st;
    lm_image_raw raw;
    st = decode(data, size, name, limits, true, &raw, err);
    if (st != LM_OK)
        return st;
    lm_free(raw.pixels);
    info->format = decode == lm_image__png_decode    ? LM_IMAGE_PNG
                   : decode == lm_image__jpeg_decode ? LM_IMAGE_JPEG
                                                     : LM_IMAGE_WEBP;
    info->width = raw.width;
    info->height = raw.height;
    info->has_alpha = raw.channels == 4;
    return LM_OK;
}

/* Reads the file, refusing one over the byte limit before reading it. */
static lm_status read_limited(const char *path, const lm_image_limits *limits, char **data,
                              size_t *size, lm_error *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > limit_bytes(limits)) {
        lm_errorf(err, LM_ELIMIT, "file_too_large",
                  "the image file has %lld bytes, over the limit of %zu", (long long)sb.st_size,
                  limit_bytes(limits));
        lm_error_at_file(err, path, 0, 0);
        return LM_ELIMIT;
    }
    return lm_file_read(path, limit_bytes(limits), data, size, err);
}

lm_status lm_image_load(const char *path, const lm_image_limits *limits, lm_tensor **rgb_out,
                        lm_tensor **alpha_out, lm_error *err)
{
    *rgb_out = NULL;
    if (alpha_out)
        *alpha_out = NULL;
    char *data;
    size_t size;
    lm_status st = read_limited(path, limits, &data, &size, err);
    if (st != LM_OK)
        return st;
    st = lm_image_load_mem(data, size, path, limits, rgb_out, alpha_out, err);
    lm_free(data);
    return st;
}

lm_status lm_image_probe(const char *path, const lm_image_limits *limits, lm_image_info *info,
                         lm_error *err)
{
    memset(info, 0, sizeof(*info));
    char *data;
    size_t size;
    lm_status st = read_limited(path, limits, &data, &size, err);
    if (st != LM_OK)
        return st;
    st = lm_image_probe_mem(data, size, path, limits, info, err);
    lm_free(data);
    return st;
}

/* ---- encoding ---- */

static unsigned char to_u8(float v)
{
    if (!(v > 0.0f)) /* also NaN */
        return 0;
    if (v >= 1.0f)
        return 255;
    return (unsigned char)(v * 255.0f + 0.5f);
}

/* Checks the tensor; *data is its f32 samples, from the tensor itself when it is already
 * contiguous f32 on the host, else from *copy (the caller frees it). */
static lm_status image_f32(const lm_tensor *images, int64_t index, lm_tensor **copy,
                           const float **data, lm_error *err)
{
    *copy = NULL;
    if (images->ndim != 4 ||
        (images->shape[3] != 1 && images->shape[3] != 3 && images->shape[3] != 4))
        return lm_errorf(err, LM_EINVAL, "bad_image_shape",
                         "an image to encode must be [B, H, W, C] with C = 1, 3 or 4");
    if (index < 0 || index >= images->shape[0])
        return lm_errorf(err, LM_ERANGE, "bad_image_index",
                         "image index %lld is outside the batch of %lld", (long long)index,
                         (long long)images->shape[0]);
    if (images->shape[1] > 0xffffff || images->shape[2] > 0xffffff || images->shape[1] < 1 ||
        images->shape[2] < 1)
        return lm_errorf(err, LM_ELIMIT, "bad_image_size", "the image is %lldx%lld pixels",
                         (long long)images->shape[2], (long long)images->shape[1]);
    if (images->dtype == LM_DTYPE_F32 && lm_tensor_is_contiguous(images) &&
        lm_tensor_data(images)) {
        *data = lm_tensor_data(images);
        return LM_OK;
    }
    lm_status st = lm_tensor_to_f32_host(copy, images, err);
    if (st == LM_OK)
        *data = lm_tensor_data(*copy);
    return st;
}

/* Image `index` of f32 [B,H,W,C] samples as 8-bit RGB (C = 1, 3) or RGBA (C = 4). */
static unsigned char *to_rgb8(const lm_tensor *shape, const float *data, int64_t index,
                              int *channels_out)
{
    size_t h = (size_t)shape->shape[1], w = (size_t)shape->shape[2];
    size_t c = (size_t)shape->shape[3], oc = c == 4 ? 4 : 3;
    unsigned char *pix = lm_malloc(h * w * oc);
    if (!pix)
        return NULL;
    const float *src = data + (size_t)index * h * w * c;
    for (size_t i = 0; i < h * w; i++)
        for (size_t k = 0; k < oc; k++)
            pix[i * oc + k] = to_u8(src[i * c + (c == 1 ? 0 : k)]);
    *channels_out = (int)oc;
    return pix;
}

lm_status lm_image_encode(const lm_tensor *images, int64_t index, lm_image_format format,
                          int quality, const lm_image_text *texts, size_t n_texts,
                          unsigned char **out, size_t *out_size, lm_error *err)
{
    *out = NULL;
    *out_size = 0;
    lm_tensor *copy = NULL;
    const float *data = NULL;
    lm_status st = image_f32(images, index, &copy, &data, err);
    if (st != LM_OK)
        return st;
    int channels = 3;
    uint32_t w = (uint32_t)images->shape[2], h = (uint32_t)images->shape[1];
    unsigned char *pix = to_rgb8(images, data, index, &channels);
    lm_tensor_free(copy);
    if (!pix)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory encoding an image");
    lm_image_buf buf = { 0 };
    if (format == LM_IMAGE_PNG)
        st = lm_image__png_encode(pix, w, h, channels, quality, texts, n_texts, &buf, err);
    else if (format == LM_IMAGE_JPEG)
        st = lm_image__jpeg_encode(pix, w, h, channels, quality, &buf, err);
    else
        st = lm_image__webp_encode(pix, w, h, channels, quality, &buf, err);
    lm_free(pix);
    if (st == LM_OK && buf.failed)
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory encoding an image");
    if (st != LM_OK) {
        lm_free(buf.data);
        return st;
    }
    *out = buf.data;
    *out_size = buf.size;
    return LM_OK;
}

/* ---- atomic files ---- */

static lm_status io_error(const char *path, const char *what, int e, lm_error *err)
{
    lm_errorf(err, LM_EIO, e == EEXIST ? "file_exists" : "file_write", "cannot %s: %s", what,
              strerror(e));
    lm_error_at_file(err, path, 0, 0);
    return LM_EIO;
}

static lm_status write_all(int fd, const char *path, const unsigned char *data, size_t size,
                           lm_error *err)
{
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return io_error(path, "write the file", n < 0 ? errno : EIO, err);
        data += n;
        size -= (size_t)n;
    }
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        return io_error(path, "flush the file", errno, err);
    return LM_OK;
}

/* Puts the finished temporary file at `path`. */
static lm_status publish(const char *tmp, const char *path, bool no_replace, lm_error *err)
{
    if (!no_replace) {
        if (rename(tmp, path) != 0)
            return io_error(path, "rename the temporary file into place", errno, err);
        return LM_OK;
    }
    if (link(tmp, path) == 0) {
        unlink(tmp);
        return LM_OK;
    }
    int e = errno;
    if (e == EEXIST)
        return io_error(path, "create the file", EEXIST, err);
    /* File systems without hard links: reserve the name exclusively, then replace it. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return io_error(path, "create the file", errno, err);
    close(fd);
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(path);
        return io_error(path, "rename the temporary file into place", e, err);
    }
    return LM_OK;
}

lm_status lm_image_write_file(const char *path, const void *data, size_t size, bool no_replace,
                              lm_error *err)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return lm_errorf(err, LM_ELIMIT, "path_too_long", "path is too long: %.200s", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return io_error(path, "create a temporary file beside it", errno, err);
    (void)fchmod(fd, 0644);
    lm_status st = write_all(fd, path, data, size, err);
    if (close(fd) != 0 && st == LM_OK)
        st = io_error(path, "close the file", errno, err);
    if (st == LM_OK)
        st = publish(tmp, path, no_replace, err);
    if (st != LM_OK)
        unlink(tmp);
    return st;
}

lm_status lm_image_save(const char *path, const lm_tensor *images, int64_t index,
                        lm_image_format format, int quality, const lm_image_text *texts,
                        size_t n_texts, lm_error *err)
{
    unsigned char *data;
    size_t size;
    lm_status st =
        lm_image_encode(images, index, format, quality, texts, n_texts, &data, &size, err);
    if (st != LM_OK)
        return st;
    st = lm_image_write_file(path, data, size, false, err);
    lm_free(data);
    return st;
}

bool lm_image_format_from_name(const char *name, lm_image_format *format)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return false;
    if (strcasecmp(dot, ".png") == 0)
        *format = LM_IMAGE_PNG;
    else if (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0)
        *format = LM_IMAGE_JPEG;
    else if (strcasecmp(dot, ".webp") == 0)
        *format = LM_IMAGE_WEBP;
    else
        return false;
    return true;
}
