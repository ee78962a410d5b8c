/* tests/io/test_image.c — image files: PNG text chunks, PNG/JPEG/WebP round trips, limits
 * and damaged files. Test images with unusual layouts (palette, grey, 16-bit, zTXt) are
 * written with libpng directly, so the reader is checked against an independent writer. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/image.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

/* The value of `key` among the texts, or NULL. */
static const char *find_text(char **keys, char **texts, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return texts[i];
    return NULL;
}

static void check_example_prompt(const char *stem)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "comfyui_examples/%s.png", stem);
    const char *png = test_shared(rel);
    snprintf(rel, sizeof(rel), "comfyui_examples/%s.api.json", stem);
    const char *api = test_shared(rel);
    if (!png || !api)
        return;
    lm_error err;
    char **keys, **texts, *want;
    size_t n, want_len;
    REQUIRE_OK(lm_png_read_texts(png, 0, &keys, &texts, &n, &err), &err);
    REQUIRE_OK(lm_file_read(api, 1 << 20, &want, &want_len, &err), &err);
    CHECK_INT(n, 2);
    const char *prompt = find_text(keys, texts, n, "prompt");
    CHECK(find_text(keys, texts, n, "workflow") != NULL);
    cJSON *a = cJSON_Parse(prompt ? prompt : ""), *b = cJSON_Parse(want);
    CHECK(a && b && cJSON_Compare(a, b, 1));
    cJSON_Delete(a);
    cJSON_Delete(b);
    lm_free(want);
    lm_image_texts_free(keys, texts, n);
}

void test_io_image__comfyui_examples_prompt(void)
{
    static const char *const stems[] = {
        "img2img_workflow",  "sd3.5_simple_example", "sd3.5_text_encoders_example",
        "sd3_anime_example", "sd3_simple_example",   "sd3_text_encoders_example",
    };
    for (size_t i = 0; i < LM_COUNTOF(stems); i++)
        check_example_prompt(stems[i]);
}

void test_io_image__texts_not_png(void)
{
    lm_error err;
    char **keys, **texts;
    size_t n;
    const char *path = test_write_file("x.png", "GIF89a not a png");
    CHECK_INT(lm_png_read_texts(path, 0, &keys, &texts, &n, &err), LM_EFORMAT);
    CHECK_CONTAINS(err.file, "x.png");
    CHECK_INT(n, 0);
    CHECK_INT(lm_png_read_texts("missing.png", 0, &keys, &texts, &n, &err), LM_ENOTFOUND);
}

/* ---- helpers ---- */

/* A [1,H,W,C] image whose samples are all multiples of 1/255 (exact in 8 bits). */
static lm_tensor *make_image(int64_t h, int64_t w, int64_t c)
{
    lm_tensor *t = NULL;
    int64_t shape[4] = { 1, h, w, c };
    lm_error err;
    if (lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err) != LM_OK)
        return NULL;
    float *p = lm_tensor_data(t);
    for (int64_t i = 0; i < h * w * c; i++)
        p[i] = (float)((i * 37 + 11) % 256) / 255.0f;
    return t;
}

static const float *pixels(const lm_tensor *t)
{
    return lm_tensor_data(t);
}

typedef struct {
    int color_type, bit_depth;
    const png_color *palette;
    int n_palette;
    const png_byte *trans;
    int n_trans;
    const png_text *texts;
    int n_texts;
} raw_png;

/* Writes a PNG with libpng directly (rows of already packed samples). */
static void write_raw_png(const char *path, uint32_t w, uint32_t h, const raw_png *spec,
                          const unsigned char *data, size_t stride)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, spec->bit_depth, spec->color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (spec->palette)
        png_set_PLTE(png, info, spec->palette, spec->n_palette);
    if (spec->trans)
        png_set_tRNS(png, info, spec->trans, spec->n_trans, NULL);
    if (spec->texts)
        png_set_text(png, info, spec->texts, spec->n_texts);
    png_write_info(png, info);
    for (uint32_t y = 0; y < h; y++)
        png_write_row(png, data + y * stride);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

/* ---- PNG ---- */

static void round_trip_png(int64_t c)
{
    lm_error err;
    lm_tensor *img = make_image(5, 7, c), *rgb = NULL, *alpha = NULL;
    REQUIRE(img);
    REQUIRE_OK(lm_image_save("a.png", img, 0, LM_IMAGE_PNG, 6, NULL, 0, &err), &err);
    REQUIRE_OK(lm_image_load("a.png", NULL, &rgb, &alpha, &err), &err);
    CHECK_INT(rgb->ndim, 4);
    CHECK_INT(rgb->shape[1], 5);
    CHECK_INT(rgb->shape[2], 7);
    CHECK_INT(rgb->shape[3], 3);
    CHECK((alpha != NULL) == (c == 4));
    int bad = 0;
    for (int64_t i = 0; i < 35; i++) {
        for (int64_t k = 0; k < 3; k++)
            bad += pixels(rgb)[i * 3 + k] != pixels(img)[i * c + k];
        if (alpha)
            bad += pixels(alpha)[i] != pixels(img)[i * c + 3];
    }
    CHECK_INT(bad, 0);
    lm_tensor_free(img);
    lm_tensor_free(rgb);
    lm_tensor_free(alpha);
}

void test_io_image__png_round_trip_rgb(void)
{
    round_trip_png(3);
}

void test_io_image__png_round_trip_rgba(void)
{
    round_trip_png(4);
}

void test_io_image__png_encode_rounds_and_clamps(void)
{
    lm_error err;
    lm_tensor *img = make_image(1, 4, 3), *rgb = NULL;
    REQUIRE(img);
    float *p = lm_tensor_data(img);
    p[0] = -0.5f;           /* clamps to 0 */
    p[1] = 2.0f;            /* clamps to 255 */
    p[2] = 100.6f / 255.0f; /* rounds to 101 */
    p[3] = 100.4f / 255.0f; /* rounds to 100 */
    p[4] = NAN;             /* 0 */
    REQUIRE_OK(lm_image_save("r.png", img, 0, LM_IMAGE_PNG, 1, NULL, 0, &err), &err);
    REQUIRE_OK(lm_image_load("r.png", NULL, &rgb, NULL, &err), &err);
    const float *q = pixels(rgb);
    CHECK_NEAR(q[0] * 255, 0, 1e-4);
    CHECK_NEAR(q[1] * 255, 255, 1e-4);
    CHECK_NEAR(q[2] * 255, 101, 1e-4);
    CHECK_NEAR(q[3] * 255, 100, 1e-4);
    CHECK_NEAR(q[4] * 255, 0, 1e-4);
    lm_tensor_free(img);
    lm_tensor_free(rgb);
}

void test_io_image__png_batch_index_and_grey_input(void)
{
    lm_error err;
    lm_tensor *img = NULL, *rgb = NULL;
    int64_t shape[4] = { 2, 2, 2, 1 };
    REQUIRE_OK(lm_tensor_new(&img, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err), &err);
    float *p = lm_tensor_data(img);
    for (int i = 0; i < 8; i++)
        p[i] = (float)(i * 30) / 255.0f;
    REQUIRE_OK(lm_image_save("g.png", img, 1, LM_IMAGE_PNG, 6, NULL, 0, &err), &err);
    REQUIRE_OK(lm_image_load("g.png", NULL, &rgb, NULL, &err), &err);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++)
            CHECK_NEAR(pixels(rgb)[i * 3 + k] * 255, (i + 4) * 30, 1e-4);
    CHECK_INT(lm_image_save("x.png", img, 2, LM_IMAGE_PNG, 6, NULL, 0, &err), LM_ERANGE);
    lm_tensor_free(img);
    lm_tensor_free(rgb);
}

void test_io_image__png_16bit_read(void)
{
    lm_error err;
    unsigned char row[2 * 2 * 3];
    const uint16_t v[6] = { 0x1234, 0xffff, 0x0000, 0x8001, 0x00ff, 0xabcd };
    for (int i = 0; i < 6; i++) {
        row[2 * i] = (unsigned char)(v[i] >> 8);
        row[2 * i + 1] = (unsigned char)(v[i] & 0xff);
    }
    raw_png spec = { .color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 16 };
    write_raw_png("d.png", 2, 1, &spec, row, sizeof(row));
    lm_tensor *rgb = NULL, *alpha = NULL;
    REQUIRE_OK(lm_image_load("d.png", NULL, &rgb, &alpha, &err), &err);
    CHECK(alpha == NULL);
    for (int i = 0; i < 6; i++)
        CHECK_NEAR(pixels(rgb)[i], v[i] / 65535.0, 1e-7);
    lm_tensor_free(rgb);
}

void test_io_image__png_palette_with_transparency(void)
{
    lm_error err;
    const png_color pal[3] = { { 255, 0, 0 }, { 0, 128, 0 }, { 10, 20, 30 } };
    const png_byte trans[2] = { 0, 128 }; /* entry 2 stays opaque */
    const unsigned char idx[3] = { 2, 0, 1 };
    raw_png spec = { .color_type = PNG_COLOR_TYPE_PALETTE,
                     .bit_depth = 8,
                     .palette = pal,
                     .n_palette = 3,
                     .trans = trans,
                     .n_trans = 2 };
    write_raw_png("p.png", 3, 1, &spec, idx, 3);
    lm_tensor *rgb = NULL, *alpha = NULL;
    REQUIRE_OK(lm_image_load("p.png", NULL, &rgb, &alpha, &err), &err);
    REQUIRE(alpha != NULL);
    const float want_rgb[9] = { 10, 20, 30, 255, 0, 0, 0, 128, 0 };
    const float want_a[3] = { 255, 0, 128 };
    for (int i = 0; i < 9; i++)
        CHECK_NEAR(pixels(rgb)[i] * 255, want_rgb[i], 1e-4);
    for (int i = 0; i < 3; i++)
        CHECK_NEAR(pixels(alpha)[i] * 255, want_a[i], 1e-4);
    lm_tensor_free(rgb);
    lm_tensor_free(alpha);
}

void test_io_image__png_grey_and_grey_alpha(void)
{
    lm_error err;
    const unsigned char grey[2] = { 7, 200 };
    raw_png spec = { .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 8 };
    write_raw_png("g.png", 2, 1, &spec, grey, 2);
    lm_tensor *rgb = NULL, *alpha = NULL;
    REQUIRE_OK(lm_image_load("g.png", NULL, &rgb, &alpha, &err), &err);
    CHECK(alpha == NULL);
    for (int k = 0; k < 3; k++) {
        CHECK_NEAR(pixels(rgb)[k] * 255, 7, 1e-4);
        CHECK_NEAR(pixels(rgb)[3 + k] * 255, 200, 1e-4);
    }
    lm_tensor_free(rgb);
    const unsigned char ga[4] = { 50, 60, 70, 255 };
    spec.color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
    write_raw_png("ga.png", 2, 1, &spec, ga, 4);
    REQUIRE_OK(lm_image_load("ga.png", NULL, &rgb, &alpha, &err), &err);
    REQUIRE(alpha != NULL);
    CHECK_NEAR(pixels(rgb)[2] * 255, 50, 1e-4);
    CHECK_NEAR(pixels(rgb)[5] * 255, 70, 1e-4);
    CHECK_NEAR(pixels(alpha)[0] * 255, 60, 1e-4);
    CHECK_NEAR(pixels(alpha)[1] * 255, 255, 1e-4);
    lm_tensor_free(rgb);
    lm_tensor_free(alpha);
    const unsigned char bits = 0x90; /* 1-bit grey: 1 0 0 1 */
    spec.color_type = PNG_COLOR_TYPE_GRAY;
    spec.bit_depth = 1;
    write_raw_png("b.png", 4, 1, &spec, &bits, 1);
    REQUIRE_OK(lm_image_load("b.png", NULL, &rgb, NULL, &err), &err);
    CHECK_NEAR(pixels(rgb)[0], 1, 1e-6);
    CHECK_NEAR(pixels(rgb)[3], 0, 1e-6);
    CHECK_NEAR(pixels(rgb)[9], 1, 1e-6);
    lm_tensor_free(rgb);
}

/* Whether the encoded PNG holds a chunk of this type. */
static bool has_chunk(const unsigned char *d, size_t n, const char *type)
{
    for (size_t pos = 8; pos + 12 <= n;) {
        size_t len = (size_t)d[pos] << 24 | (size_t)d[pos + 1] << 16 | d[pos + 2] << 8 | d[pos + 3];
        if (memcmp(d + pos + 4, type, 4) == 0)
            return true;
        pos += len + 12;
    }
    return false;
}

static void check_texts_round_trip(const char *text, const char *chunk_type)
{
    lm_error err;
    lm_tensor *img = make_image(2, 2, 3);
    REQUIRE(img);
    const lm_image_text texts[2] = { { "prompt", "{\"a\": 1}" }, { "note", text } };
    unsigned char *data;
    size_t size;
    REQUIRE_OK(lm_image_encode(img, 0, LM_IMAGE_PNG, 6, texts, 2, &data, &size, &err), &err);
    CHECK(has_chunk(data, size, chunk_type));
    char **keys, **vals;
    size_t n;
    CHECK_OK(lm_png_read_texts_mem(data, size, "mem.png", &keys, &vals, &n, &err), &err);
    CHECK_INT(n, 2);
    CHECK_STR(find_text(keys, vals, n, "prompt"), "{\"a\": 1}");
    CHECK_STR(find_text(keys, vals, n, "note"), text);
    lm_image_texts_free(keys, vals, n);
    lm_free(data);
    lm_tensor_free(img);
}

void test_io_image__texts_round_trip(void)
{
    check_texts_round_trip("plain ascii", "tEXt");
    check_texts_round_trip("caf\xc3\xa9 \xc2\xb5", "tEXt");                      /* Latin-1: tEXt */
    check_texts_round_trip("\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\xa8", "iTXt"); /* not */
    check_texts_round_trip("", "tEXt");
}

void test_io_image__texts_bad_key(void)
{
    lm_error err;
    lm_tensor *img = make_image(1, 1, 3);
    const lm_image_text texts[1] = { { "", "x" } };
    unsigned char *data;
    size_t size;
    CHECK_INT(lm_image_encode(img, 0, LM_IMAGE_PNG, 6, texts, 1, &data, &size, &err), LM_EINVAL);
    lm_tensor_free(img);
}

void test_io_image__texts_ztxt_and_latin1_read(void)
{
    lm_error err;
    static char k0[] = "workflow", k1[] = "latin", k2[] = "utf";
    static char v0[] = "{\"nodes\": [1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]}", v1[] = "caf\xe9",
                v2[] = "\xe6\x97\xa5\xe6\x9c\xac";
    png_text t[3] = {
        { .compression = PNG_TEXT_COMPRESSION_zTXt, .key = k0, .text = v0 },
        { .compression = PNG_TEXT_COMPRESSION_NONE, .key = k1, .text = v1 },
        { .compression = PNG_ITXT_COMPRESSION_zTXt, .key = k2, .text = v2 },
    };
    raw_png spec = { .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 8, .texts = t, .n_texts = 3 };
    const unsigned char px = 0;
    write_raw_png("z.png", 1, 1, &spec, &px, 1);
    char **keys, **vals;
    size_t n;
    REQUIRE_OK(lm_png_read_texts("z.png", 0, &keys, &vals, &n, &err), &err);
    CHECK_INT(n, 3);
    CHECK_STR(find_text(keys, vals, n, "workflow"), t[0].text);
    CHECK_STR(find_text(keys, vals, n, "latin"), "caf\xc3\xa9");
    CHECK_STR(find_text(keys, vals, n, "utf"), t[2].text);
    lm_image_texts_free(keys, vals, n);
}

void test_io_image__texts_truncated_and_bad_crc(void)
{
    lm_error err;
    lm_tensor *img = make_image(2, 2, 3);
    const lm_image_text texts[1] = { { "prompt", "{\"x\": 2}" } };
    unsigned char *data;
    size_t size;
    REQUIRE_OK(lm_image_encode(img, 0, LM_IMAGE_PNG, 6, texts, 1, &data, &size, &err), &err);
    char **keys, **vals;
    size_t n;
    write_bytes("t.png", data, 40);
    CHECK_INT(lm_png_read_texts("t.png", 0, &keys, &vals, &n, &err), LM_EFORMAT);
    CHECK_CONTAINS(err.file, "t.png");
    unsigned char *hit = memmem(data, size, "{\"x\": 2}", 8);
    REQUIRE(hit);
    hit[1] = 'y';
    write_bytes("c.png", data, size);
    CHECK_INT(lm_png_read_texts("c.png", 0, &keys, &vals, &n, &err), LM_EFORMAT);
    CHECK_CONTAINS(err.msg, "CRC");
    lm_free(data);
    lm_tensor_free(img);
}

/* Appends a PNG chunk (length, type, data, CRC) at d + *n. */
static void put_chunk(unsigned char *d, size_t *n, const char *type, const void *data, uint32_t len)
{
    unsigned char *p = d + *n;
    p[0] = (unsigned char)(len >> 24), p[1] = (unsigned char)(len >> 16);
    p[2] = (unsigned char)(len >> 8), p[3] = (unsigned char)len;
    memcpy(p + 4, type, 4);
    memcpy(p + 8, data, len);
    uint32_t crc = (uint32_t)crc32(0L, p + 4, len + 4);
    p[8 + len] = (unsigned char)(crc >> 24), p[9 + len] = (unsigned char)(crc >> 16);
    p[10 + len] = (unsigned char)(crc >> 8), p[11 + len] = (unsigned char)crc;
    *n += 12 + (size_t)len;
}

/* Regression (fuzz_image review): the 64 MiB cap on inflated text was per chunk, so a
 * 1.3 MB PNG of 20 zTXt chunks of 63 MiB each held 1.3 GB. The cap is now for all chunks
 * together: two chunks of 33 MiB are refused, one alone still reads. */
void test_io_image__texts_inflate_cap_is_total(void)
{
    size_t text_len = (size_t)33 << 20;
    char *text = lm_malloc(text_len);
    uLongf zlen = compressBound((uLong)text_len);
    unsigned char *z = lm_malloc(4 + zlen), *png = lm_malloc(2 * zlen + 256);
    REQUIRE(text && z && png);
    memset(text, ' ', text_len);
    memcpy(z, "k0\0\0", 4); /* keyword "k0", compression method 0 (zlib) */
    REQUIRE(compress2(z + 4, &zlen, (const Bytef *)text, (uLong)text_len, 9) == Z_OK);
    static const unsigned char sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    static const unsigned char ihdr[13] = { 0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0 };
    size_t n = 8, one;
    memcpy(png, sig, 8);
    put_chunk(png, &n, "IHDR", ihdr, 13);
    put_chunk(png, &n, "zTXt", z, (uint32_t)(4 + zlen));
    one = n;
    z[1] = '1'; /* a second chunk, keyword "k1" */
    put_chunk(png, &n, "zTXt", z, (uint32_t)(4 + zlen));
    put_chunk(png, &n, "IEND", "", 0);
    lm_error err;
    char **keys, **vals;
    size_t count;
    CHECK_INT(lm_png_read_texts_mem(png, n, "bomb.png", &keys, &vals, &count, &err), LM_EFORMAT);
    CHECK_CONTAINS(err.msg, "64 MiB");
    CHECK_CONTAINS(err.file, "bomb.png");
    CHECK(keys == NULL && vals == NULL && count == 0);
    put_chunk(png, &one, "IEND", "", 0);
    REQUIRE_OK(lm_png_read_texts_mem(png, one, "one.png", &keys, &vals, &count, &err), &err);
    CHECK_INT(count, 1);
    CHECK(count == 1 && strlen(vals[0]) == text_len && vals[0][text_len - 1] == ' ');
    lm_image_texts_free(keys, vals, count);
    lm_free(png);
    lm_free(z);
    lm_free(text);
}

/* ---- JPEG and WebP ---- */

/* A smooth gradient that lossy codecs keep well. */
static lm_tensor *make_gradient(int64_t h, int64_t w, int64_t c)
{
    lm_tensor *t = make_image(h, w, c);
    if (!t)
        return NULL;
    float *p = lm_tensor_data(t);
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++)
            for (int64_t k = 0; k < c; k++)
                p[(y * w + x) * c + k] =
                    (float)(k == 3 ? 0.5 + 0.4 * (double)x / (double)w
                                   : (double)(x + y + 8 * k) / (double)(h + w + 24));
    return t;
}

static double max_diff(const lm_tensor *a, const lm_tensor *img, int64_t c, int64_t k0)
{
    double worst = 0;
    int64_t n = a->shape[1] * a->shape[2];
    int64_t ac = a->ndim == 4 ? a->shape[3] : 1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < ac; k++)
            worst = fmax(worst,
                         fabs((double)pixels(a)[i * ac + k] - (double)pixels(img)[i * c + k0 + k]));
    return worst;
}

void test_io_image__jpeg_round_trip(void)
{
    lm_error err;
    lm_tensor *img = make_gradient(16, 24, 3), *rgb = NULL, *alpha = NULL;
    REQUIRE(img);
    REQUIRE_OK(lm_image_save("a.jpg", img, 0, LM_IMAGE_JPEG, 95, NULL, 0, &err), &err);
    REQUIRE_OK(lm_image_load("a.jpg", NULL, &rgb, &alpha, &err), &err);
    CHECK(alpha == NULL);
    CHECK_INT(rgb->shape[1], 16);
    CHECK_INT(rgb->shape[2], 24);
    double d = max_diff(rgb, img, 3, 0);
    test_note("jpeg max difference %.4f", d);
    CHECK(d < 0.04);
    lm_image_info info;
    CHECK_OK(lm_image_probe("a.jpg", NULL, &info, &err), &err);
    CHECK_INT(info.format, LM_IMAGE_JPEG);
    CHECK_INT(info.width, 24);
    lm_tensor_free(img);
    lm_tensor_free(rgb);
}

void test_io_image__webp_round_trip_with_alpha(void)
{
    lm_error err;
    lm_tensor *img = make_gradient(16, 24, 4), *rgb = NULL, *alpha = NULL;
    REQUIRE(img);
    REQUIRE_OK(lm_image_save("a.webp", img, 0, LM_IMAGE_WEBP, 95, NULL, 0, &err), &err);
    REQUIRE_OK(lm_image_load("a.webp", NULL, &rgb, &alpha, &err), &err);
    REQUIRE(alpha != NULL);
    double d = max_diff(rgb, img, 4, 0), da = max_diff(alpha, img, 4, 3);
    test_note("webp max difference %.4f, alpha %.4f", d, da);
    CHECK(d < 0.05);
    CHECK(da < 0.02);
    lm_tensor_free(img);
    lm_tensor_free(rgb);
    lm_tensor_free(alpha);
}

/* ---- damaged files and limits ---- */

static void check_truncated(lm_image_format format, const char *name)
{
    lm_error err;
    lm_tensor *img = make_gradient(32, 32, 3), *rgb = NULL;
    unsigned char *data;
    size_t size;
    REQUIRE_OK(lm_image_encode(img, 0, format, 90, NULL, 0, &data, &size, &err), &err);
    write_bytes(name, data, size / 2);
    CHECK_INT(lm_image_load(name, NULL, &rgb, NULL, &err), LM_EFORMAT);
    CHECK_STR(err.file, name);
    CHECK(rgb == NULL);
    /* Garbage after a valid header. */
    for (size_t i = size / 3; i < size; i++)
        data[i] = (unsigned char)(i * 7);
    write_bytes(name, data, size);
    lm_status st = lm_image_load(name, NULL, &rgb, NULL, &err);
    if (format != LM_IMAGE_JPEG) /* libjpeg decodes some garbage as (ugly) pixels */
        CHECK_INT(st, LM_EFORMAT);
    lm_tensor_free(rgb);
    lm_free(data);
    lm_tensor_free(img);
}

void test_io_image__truncated_files(void)
{
    check_truncated(LM_IMAGE_PNG, "t.png");
    check_truncated(LM_IMAGE_JPEG, "t.jpg");
    check_truncated(LM_IMAGE_WEBP, "t.webp");
}

void test_io_image__not_an_image(void)
{
    lm_error err;
    lm_tensor *rgb = NULL;
    test_write_file("x.png", "this is text");
    CHECK_INT(lm_image_load("x.png", NULL, &rgb, NULL, &err), LM_EFORMAT);
    CHECK_STR(err.file, "x.png");
    CHECK_INT(lm_image_load("none.png", NULL, &rgb, NULL, &err), LM_ENOTFOUND);
    const unsigned char sig_only[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    write_bytes("s.png", sig_only, 8);
    CHECK_INT(lm_image_load("s.png", NULL, &rgb, NULL, &err), LM_EFORMAT);
}

void test_io_image__limits(void)
{
    lm_error err;
    lm_tensor *img = make_image(20, 30, 3), *rgb = NULL;
    REQUIRE_OK(lm_image_save("big.png", img, 0, LM_IMAGE_PNG, 6, NULL, 0, &err), &err);
    lm_image_limits px = { .max_pixels = 599 };
    CHECK_INT(lm_image_load("big.png", &px, &rgb, NULL, &err), LM_ELIMIT);
    CHECK_STR(err.file, "big.png");
    CHECK_CONTAINS(err.msg, "30x20");
    px.max_pixels = 600;
    CHECK_OK(lm_image_load("big.png", &px, &rgb, NULL, &err), &err);
    lm_tensor_free(rgb);
    lm_image_limits by = { .max_bytes = 100 };
    CHECK_INT(lm_image_load("big.png", &by, &rgb, NULL, &err), LM_ELIMIT);
    CHECK_STR(err.file, "big.png");
    lm_image_info info;
    CHECK_INT(lm_image_probe("big.png", &px, &info, &err), LM_OK);
    CHECK_INT(info.width, 30);
    CHECK_INT(info.height, 20);
    CHECK(!info.has_alpha);
    lm_tensor_free(img);
}

void test_io_image__write_file_atomic_no_replace(void)
{
    lm_error err;
    CHECK_OK(lm_image_write_file("f.bin", "one", 3, true, &err), &err);
    CHECK_INT(lm_image_write_file("f.bin", "two", 3, true, &err), LM_EIO);
    CHECK_STR(err.kind, "file_exists");
    char *data;
    size_t n;
    REQUIRE_OK(lm_file_read("f.bin", 100, &data, &n, &err), &err);
    CHECK_STR(data, "one");
    lm_free(data);
    CHECK_OK(lm_image_write_file("f.bin", "three", 5, false, &err), &err);
    REQUIRE_OK(lm_file_read("f.bin", 100, &data, &n, &err), &err);
    CHECK_STR(data, "three");
    lm_free(data);
    char *ls = NULL;
    test_run_capture("ls -a", &ls);
    CHECK(ls && !strstr(ls, ".tmp-"));
    free(ls);
    lm_image_format fmt;
    CHECK(lm_image_format_from_name("a/B.JPeG", &fmt) && fmt == LM_IMAGE_JPEG);
    CHECK(!lm_image_format_from_name("a.gif", &fmt));
}

/* Every allocation of encode, save, load and text reading may fail: an error, no leak. */
void test_io_image__allocation_failures(void)
{
    lm_error err;
    lm_tensor *img = make_image(6, 5, 4);
    REQUIRE(img);
    const lm_image_text texts[2] = { { "prompt", "{}" }, { "u", "\xe6\x97\xa5" } };
    bool done = false;
    for (long n = 0; n < 200 && !done; n++) {
        lm_tensor *rgb = NULL, *alpha = NULL;
        char **keys = NULL, **vals = NULL;
        size_t count = 0;
        lm_alloc_fail_after(n);
        lm_status st = lm_image_save("m.png", img, 0, LM_IMAGE_PNG, 6, texts, 2, &err);
        if (st == LM_OK)
            st = lm_image_load("m.png", NULL, &rgb, &alpha, &err);
        if (st == LM_OK)
            st = lm_png_read_texts("m.png", 0, &keys, &vals, &count, &err);
        done = lm_alloc_failures() == 0;
        lm_alloc_fail_after(-1);
        if (!done)
            CHECK(st != LM_OK);
        else
            CHECK_OK(st, &err);
        lm_tensor_free(rgb);
        lm_tensor_free(alpha);
        lm_image_texts_free(keys, vals, count);
    }
    CHECK(done);
    lm_tensor_free(img);
}
