/* tests/tensor/ref/ref_shape.c — reference shape ops and embeddings, test data helpers and a
 * minimal safetensors reader for golden files (independent of core/io). */
#include "tests/tensor/ref/ref.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ref_concat(float *y, const float *const *xs, const int64_t *dims, int n, int64_t outer,
                int64_t inner)
{
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += dims[i];
    for (int64_t o = 0; o < outer; o++) {
        int64_t at = 0;
        for (int i = 0; i < n; i++) {
            for (int64_t d = 0; d < dims[i]; d++)
                for (int64_t e = 0; e < inner; e++)
                    y[(o * total + at + d) * inner + e] = xs[i][(o * dims[i] + d) * inner + e];
            at += dims[i];
        }
    }
}

void ref_pad2d(float *y, const float *x, int64_t planes, int64_t H, int64_t W, int top, int left,
               int bottom, int right, float value)
{
    int64_t Ho = top + H + bottom, Wo = left + W + right;
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < Ho; i++)
            for (int64_t j = 0; j < Wo; j++) {
                int64_t si = i - top, sj = j - left;
                bool in = si >= 0 && si < H && sj >= 0 && sj < W;
                y[(p * Ho + i) * Wo + j] = in ? x[(p * H + si) * W + sj] : value;
            }
}

void ref_upsample2x(float *y, const float *x, int64_t planes, int64_t H, int64_t W)
{
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < 2 * H; i++)
            for (int64_t j = 0; j < 2 * W; j++)
                y[(p * 2 * H + i) * 2 * W + j] = x[(p * H + i / 2) * W + j / 2];
}

/* Moves every element between images [B, C, h*p, w*p] and tokens [B, h*w, p*p*C] (tokens
 * row-major over the patch grid, features (py, px, c)): to the tokens when to_tokens, back
 * otherwise. */
static void patch_move(float *y, const float *x, int64_t B, int64_t C, int64_t h, int64_t w, int p,
                       bool to_tokens)
{
    int64_t H = h * p, W = w * p, F = (int64_t)p * p * C;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t iy = 0; iy < H; iy++)
                for (int64_t ix = 0; ix < W; ix++) {
                    int64_t tok = (iy / p) * w + ix / p;
                    int64_t feat = ((iy % p) * p + ix % p) * C + c;
                    int64_t img = ((b * C + c) * H + iy) * W + ix,
                            seq = (b * h * w + tok) * F + feat;
                    if (to_tokens)
                        y[seq] = x[img];
                    else
                        y[img] = x[seq];
                }
}

void ref_patchify(float *y, const float *x, int64_t B, int64_t C, int64_t H, int64_t W, int p)
{
    patch_move(y, x, B, C, H / p, W / p, p, true);
}

void ref_unpatchify(float *y, const float *x, int64_t B, int64_t C, int64_t h, int64_t w, int p)
{
    patch_move(y, x, B, C, h, w, p, false);
}

void ref_embedding(float *y, const float *table, int64_t C, const int64_t *ids, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        memcpy(y + i * C, table + ids[i] * C, (size_t)C * sizeof(float));
}

void ref_timestep_embedding(float *y, const float *t, int64_t B, int dim, double max_period)
{
    int half = dim / 2;
    for (int64_t b = 0; b < B; b++)
        for (int i = 0; i < half; i++) {
            double f = exp(-log(max_period) * i / half);
            y[b * dim + i] = (float)cos((double)t[b] * f);
            y[b * dim + half + i] = (float)sin((double)t[b] * f);
        }
}

/* ---- test data ---- */

void ref_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        double u = (double)(s >> 11) * (1.0 / 9007199254740992.0);
        x[i] = (float)((double)lo + ((double)hi - (double)lo) * u);
    }
}

bool ref_allclose(const float *a, const float *b, int64_t n, double atol, double rtol,
                  double *max_abs, int64_t *worst)
{
    bool ok = true;
    double mx = 0, worst_excess = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double excess = d - (atol + rtol * fabs((double)b[i]));
        if (d != d) {
            d = (double)INFINITY;
            excess = (double)INFINITY;
        }
        if (d > mx)
            mx = d;
        if (excess > 0)
            ok = false;
        if (excess > worst_excess) {
            worst_excess = excess;
            if (worst)
                *worst = i;
        }
    }
    if (max_abs)
        *max_abs = mx;
    return ok;
}

/* ---- safetensors ---- */

static int64_t st_fail(char *msg, size_t size, const char *path, const char *what)
{
    snprintf(msg, size, "%s: %s", path, what);
    return -1;
}

static uint8_t *st_read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int64_t ref_st_load(const char *path, const char *name, void **data, char *dtype_out,
                    size_t dtype_size, int64_t *shape, int *ndim, char *msg, size_t msg_size)
{
    size_t len = 0;
    uint8_t *file = st_read_all(path, &len);
    if (!file || len < 8) {
        free(file);
        return st_fail(msg, msg_size, path, "cannot read the file");
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | file[i];
    cJSON *root = hlen <= len - 8 ? cJSON_ParseWithLength((const char *)file + 8, hlen) : NULL;
    cJSON *t = root ? cJSON_GetObjectItemCaseSensitive(root, name) : NULL;
    cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
    cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    int64_t count = -1;
    if (cJSON_IsString(dt) && cJSON_IsArray(sh) && cJSON_GetArraySize(off) == 2) {
        size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        size_t b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        count = 1;
        *ndim = cJSON_GetArraySize(sh);
        for (int i = 0; i < *ndim && i < 8; i++) {
            shape[i] = (int64_t)cJSON_GetArrayItem(sh, i)->valuedouble;
            count *= shape[i];
        }
        snprintf(dtype_out, dtype_size, "%s", dt->valuestring);
        if (b < a || 8 + hlen + b > len) {
            count = st_fail(msg, msg_size, path, "tensor data outside the file");
        } else {
            *data = malloc(b - a + 1);
            memcpy(*data, file + 8 + hlen + a, b - a);
        }
    } else {
        snprintf(msg, msg_size, "%s: no tensor \"%s\"", path, name);
    }
    cJSON_Delete(root);
    free(file);
    return count;
}
