/* tests/fuzz/fuzz_image.c — libFuzzer target: the image decoders (PNG, JPEG, WebP) and
 * the PNG text-chunk reader.
 * Every input goes through lm_image_probe_mem, lm_image_load_mem and lm_png_read_texts_mem.
 * The limits are small (4 MiB, 1024 x 1024 pixels) so the fuzzer spends its time in the
 * decoders, not in huge images: a 150-byte progressive JPEG can legitimately decode to
 * 2304 x 1792, which takes seconds under ASan. Beyond "no crash, no leak" it checks that
 * the readers agree: an image that loads also probes, with the same size and alpha; every
 * sample is in [0, 1]; a small image re-encoded as PNG loads back within half an 8-bit
 * step; every text the reader returns is a NUL-terminated string with a 1..79-character
 * keyword. Seeds: tests/fuzz/corpus/fuzz_image/. */
#include "core/base/alloc.h"
#include "core/io/image.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROUNDTRIP_MAX_PIXELS 4096

static const lm_image_limits limits = { (size_t)4 << 20, (int64_t)1024 * 1024 };

static void check_samples(const lm_tensor *t)
{
    const float *p = lm_tensor_data(t);
    for (int64_t i = 0; i < lm_tensor_numel(t); i++)
        if (!(p[i] >= 0.0f && p[i] <= 1.0f))
            __builtin_trap();
}

/* The image as PNG, decoded again: every sample within half an 8-bit step. */
static void check_roundtrip(const lm_tensor *rgb, const lm_tensor *alpha)
{
    int64_t h = rgb->shape[1], w = rgb->shape[2], c = alpha ? 4 : 3;
    if (h * w > ROUNDTRIP_MAX_PIXELS)
        return;
    int64_t shape[4] = { 1, h, w, c };
    lm_tensor *img, *rgb2, *alpha2;
    lm_error err;
    if (lm_tensor_new(&img, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err) != LM_OK)
        return;
    float *d = lm_tensor_data(img);
    const float *s = lm_tensor_data(rgb), *a = alpha ? lm_tensor_data(alpha) : NULL;
    for (int64_t i = 0; i < h * w; i++) {
        memcpy(d + c * i, s + 3 * i, 3 * sizeof(float));
        if (a)
            d[c * i + 3] = a[i];
    }
    unsigned char *png;
    size_t png_size;
    if (lm_image_encode(img, 0, LM_IMAGE_PNG, 1, NULL, 0, &png, &png_size, &err) != LM_OK)
        __builtin_trap(); /* a decoded image must always encode */
    if (lm_image_load_mem(png, png_size, "roundtrip.png", NULL, &rgb2, &alpha2, &err) != LM_OK)
        __builtin_trap();
    if (lm_tensor_numel(rgb2) != h * w * 3 || (alpha2 != NULL) != (alpha != NULL))
        __builtin_trap();
    const float *s2 = lm_tensor_data(rgb2), *a2 = alpha2 ? lm_tensor_data(alpha2) : NULL;
    const float tol = 0.5f / 255.0f + 1e-6f;
    for (int64_t i = 0; i < h * w; i++) {
        for (int k = 0; k < 3; k++)
            if (fabsf(s2[3 * i + k] - s[3 * i + k]) > tol)
                __builtin_trap();
        if (a && fabsf(a2[i] - a[i]) > tol)
            __builtin_trap();
    }
    lm_tensor_free(rgb2);
    lm_tensor_free(alpha2);
    lm_free(png);
    lm_tensor_free(img);
}

static void exercise_decoders(const uint8_t *data, size_t size)
{
    lm_image_info info;
    lm_error err;
    lm_status probed = lm_image_probe_mem(data, size, "fuzz", &limits, &info, &err);
    lm_tensor *rgb = NULL, *alpha = NULL;
    if (lm_image_load_mem(data, size, "fuzz", &limits, &rgb, &alpha, &err) != LM_OK) {
        if (rgb || alpha)
            __builtin_trap(); /* a failed load leaves nothing behind */
        return;
    }
    if (probed != LM_OK || rgb->ndim != 4 || rgb->shape[0] != 1 || rgb->shape[3] != 3 ||
        rgb->shape[1] != (int64_t)info.height || rgb->shape[2] != (int64_t)info.width ||
        info.has_alpha != (alpha != NULL))
        __builtin_trap();
    if (alpha &&
        (alpha->ndim != 3 || alpha->shape[1] != rgb->shape[1] || alpha->shape[2] != rgb->shape[2]))
        __builtin_trap();
    check_samples(rgb);
    if (alpha)
        check_samples(alpha);
    check_roundtrip(rgb, alpha);
    lm_tensor_free(rgb);
    if (!alpha)
        return;
    lm_tensor_free(alpha);
    /* Without alpha_out the alpha channel is dropped, never leaked. */
    if (lm_image_load_mem(data, size, "fuzz", &limits, &rgb, NULL, &err) != LM_OK)
        __builtin_trap();
    lm_tensor_free(rgb);
}

static void exercise_texts(const uint8_t *data, size_t size)
{
    char **keys, **texts;
    size_t n;
    lm_error err;
    if (lm_png_read_texts_mem(data, size, "fuzz", &keys, &texts, &n, &err) != LM_OK) {
        if (keys || texts || n)
            __builtin_trap();
        return;
    }
    volatile size_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        size_t kn = strlen(keys[i]);
        if (kn == 0 || kn > 2 * 79) /* 1..79 Latin-1 bytes, at most 2 UTF-8 bytes each */
            __builtin_trap();
        sink += strlen(texts[i]);
    }
    (void)sink;
    lm_image_texts_free(keys, texts, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    exercise_decoders(data, size);
    exercise_texts(data, size);
    return 0;
}
