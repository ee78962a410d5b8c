/* tests/tensor/ref/ref_math.c — reference formats, products, norms and elementwise ops.
 * Straight from the definitions, in double, with no blocking and no shared code with
 * core/tensor (see ref.h). Speed does not matter; clarity does. */
#include "tests/tensor/ref/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- formats ---- */

/* An IEEE 754 binary format with e exponent bits (bias 2^(e-1) - 1) and m stored mantissa
 * bits: f16 is (5, 10), bf16 (8, 7). */
static double ieee_decode(unsigned bits, int e, int m)
{
    unsigned sign = bits >> (e + m), emax = (1u << e) - 1;
    unsigned exp = (bits >> m) & emax, man = bits & ((1u << m) - 1);
    int bias = (int)(emax >> 1);
    double v;
    if (exp == emax)
        v = man ? (double)NAN : (double)INFINITY;
    else if (exp == 0)
        v = ldexp(man, 1 - bias - m);
    else
        v = ldexp((1u << m) + man, (int)exp - bias - m);
    return sign ? -v : v;
}

double ref_f16_decode(uint16_t h)
{
    return ieee_decode(h, 5, 10);
}

double ref_bf16_decode(uint16_t h)
{
    return ieee_decode(h, 8, 7);
}

double ref_f8e4m3_decode(uint8_t c)
{
    int sign = c >> 7, exp = (c >> 3) & 15, man = c & 7;
    double v;
    if (exp == 15 && man == 7)
        return (double)NAN;
    if (exp == 0)
        v = (man / 8.0) * ldexp(1.0, -6);
    else
        v = (1.0 + man / 8.0) * ldexp(1.0, exp - 7);
    return sign ? -v : v;
}

/* Nearest code among the positive finite codes 0..last (values increasing with the code);
 * ties go to the even code (even mantissa). */
static unsigned nearest_code(double a, double (*decode)(unsigned), unsigned last)
{
    unsigned lo = 0, hi = last;
    while (hi - lo > 1) {
        unsigned mid = (lo + hi) / 2;
        if (decode(mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    double dl = a - decode(lo), dh = decode(hi) - a;
    if (dl < dh)
        return lo;
    if (dh < dl)
        return hi;
    return (lo % 2 == 0) ? lo : hi;
}

static double f16_code(unsigned c)
{
    return ref_f16_decode((uint16_t)c);
}

static double f8_code(unsigned c)
{
    return ref_f8e4m3_decode((uint8_t)c);
}

uint16_t ref_f16_encode(float x)
{
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    if (a >= 65520.0) /* max 65504 plus half an ulp (16): IEEE overflow to infinity */
        return sign | 0x7c00;
    return (uint16_t)(sign | nearest_code(a, f16_code, 0x7bff));
}

uint8_t ref_f8e4m3_encode_sat(float x)
{
    uint8_t sign = signbit(x) ? 0x80 : 0;
    double a = fabs((double)x);
    if (a >= 448.0)
        return sign | 0x7e;
    return (uint8_t)(sign | nearest_code(a, f8_code, 0x7e));
}

/* ---- products ---- */

void ref_linear(float *y, const float *x, const float *w, const float *b, int64_t M, int64_t K,
                int64_t N)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = b ? (double)b[n] : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)x[m * K + k] * (double)w[n * K + k];
            y[m * N + n] = (float)s;
        }
}

void ref_matmul(float *y, const float *a, const float *b, int64_t B, int64_t Bb, int64_t M,
                int64_t K, int64_t N, bool trans_b)
{
    for (int64_t i = 0; i < B; i++) {
        const float *bi = b + (Bb == 1 ? 0 : i) * K * N;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += (double)a[(i * M + m) * K + k] *
                         (double)(trans_b ? bi[n * K + k] : bi[k * N + n]);
                y[(i * M + m) * N + n] = (float)s;
            }
    }
}

void ref_attention(float *o, const float *q, const float *k, const float *v, const float *bias,
                   int64_t B, int64_t Nq, int64_t Nk, int64_t H, int64_t D, int64_t ldq,
                   int64_t ldk, int64_t ldv, int64_t bias_b, int64_t bias_h, float scale,
                   bool causal)
{
    double *p = malloc((size_t)Nk * sizeof(double));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Nq; i++) {
                const float *qi = q + (b * Nq + i) * ldq + h * D;
                double mx = -(double)INFINITY, sum = 0;
                for (int64_t j = 0; j < Nk; j++) {
                    const float *kj = k + (b * Nk + j) * ldk + h * D;
                    double s = 0;
                    for (int64_t d = 0; d < D; d++)
                        s += (double)qi[d] * (double)kj[d];
                    s *= (double)scale;
                    if (bias)
                        s += (double)
                            bias[(((bias_b == 1 ? 0 : b) * bias_h + (bias_h == 1 ? 0 : h)) * Nq +
                                  i) *
                                     Nk +
                                 j];
                    if (causal && j > i) /* top-left aligned, like torch SDPA */
                        s = -(double)INFINITY;
                    p[j] = s;
                    mx = s > mx ? s : mx;
                }
                for (int64_t j = 0; j < Nk; j++) {
                    p[j] = isinf(p[j]) ? 0.0 : exp(p[j] - mx);
                    sum += p[j];
                }
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < Nk; j++)
                        acc += p[j] * (double)v[(b * Nk + j) * ldv + h * D + d];
                    o[(b * Nq + i) * H * D + h * D + d] = (float)(acc / sum);
                }
            }
    free(p);
}

int64_t ref_conv_out(int64_t in, int64_t k, int stride, int pad_a, int pad_b)
{
    return (in + pad_a + pad_b - k) / stride + 1;
}

void ref_conv2d(float *y, const float *x, const float *w, const float *b, int64_t B, int64_t Ci,
                int64_t H, int64_t W, int64_t Co, int64_t kh, int64_t kw, int stride, int pad_top,
                int pad_left, int pad_bottom, int pad_right)
{
    int64_t Ho = ref_conv_out(H, kh, stride, pad_top, pad_bottom);
    int64_t Wo = ref_conv_out(W, kw, stride, pad_left, pad_right);
    for (int64_t n = 0; n < B; n++)
        for (int64_t o = 0; o < Co; o++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    double s = b ? (double)b[o] : 0.0;
                    for (int64_t c = 0; c < Ci; c++)
                        for (int64_t ky = 0; ky < kh; ky++)
                            for (int64_t kx = 0; kx < kw; kx++) {
                                int64_t iy = oy * stride - pad_top + ky;
                                int64_t ix = ox * stride - pad_left + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                    continue;
                                s += (double)x[((n * Ci + c) * H + iy) * W + ix] *
                                     (double)w[((o * Ci + c) * kh + ky) * kw + kx];
                            }
                    y[((n * Co + o) * Ho + oy) * Wo + ox] = (float)s;
                }
}

/* ---- normalisation ---- */

void ref_group_norm(float *y, const float *x, const float *gamma, const float *beta, int64_t B,
                    int64_t C, int64_t S, int64_t groups, float eps)
{
    int64_t cg = C / groups;
    for (int64_t n = 0; n < B; n++)
        for (int64_t g = 0; g < groups; g++) {
            const float *xg = x + (n * C + g * cg) * S;
            double mean = 0, var = 0;
            for (int64_t i = 0; i < cg * S; i++)
                mean += (double)xg[i];
            mean /= (double)(cg * S);
            for (int64_t i = 0; i < cg * S; i++)
                var += ((double)xg[i] - mean) * ((double)xg[i] - mean);
            var /= (double)(cg * S);
            double inv = 1.0 / sqrt(var + (double)eps);
            for (int64_t c = g * cg; c < (g + 1) * cg; c++)
                for (int64_t s = 0; s < S; s++) {
                    int64_t at = (n * C + c) * S + s;
                    double v = ((double)x[at] - mean) * inv;
                    y[at] = (float)(v * (gamma ? (double)gamma[c] : 1.0) +
                                    (beta ? (double)beta[c] : 0.0));
                }
        }
}

void ref_layer_norm(float *y, const float *x, const float *gamma, const float *beta, int64_t rows,
                    int64_t C, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; c++)
            mean += (double)xr[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++)
            var += ((double)xr[c] - mean) * ((double)xr[c] - mean);
        var /= (double)C;
        double inv = 1.0 / sqrt(var + (double)eps);
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = (float)(((double)xr[c] - mean) * inv * (gamma ? (double)gamma[c] : 1.0) +
                                   (beta ? (double)beta[c] : 0.0));
    }
}

void ref_rms_norm(float *y, const float *x, const float *gamma, int64_t rows, int64_t C, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        double ms = 0;
        for (int64_t c = 0; c < C; c++)
            ms += (double)x[r * C + c] * (double)x[r * C + c];
        double inv = 1.0 / sqrt(ms / (double)C + (double)eps);
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = (float)((double)x[r * C + c] * inv * (gamma ? (double)gamma[c] : 1.0));
    }
}

void ref_softmax(float *y, const float *x, int64_t rows, int64_t C)
{
    for (int64_t r = 0; r < rows; r++) {
        double mx = -(double)INFINITY, sum = 0;
        for (int64_t c = 0; c < C; c++)
            mx = (double)x[r * C + c] > mx ? (double)x[r * C + c] : mx;
        for (int64_t c = 0; c < C; c++)
            sum += exp((double)x[r * C + c] - mx);
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = (float)(exp((double)x[r * C + c] - mx) / sum);
    }
}

/* ---- elementwise ---- */

static double unary(double x, ref_unary_kind kind)
{
    switch (kind) {
    case REF_GELU:
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case REF_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case REF_QUICK_GELU:
        return x / (1.0 + exp(-1.702 * x));
    case REF_SILU:
        return x / (1.0 + exp(-x));
    case REF_EXP:
        return exp(x);
    }
    return (double)NAN;
}

void ref_unary(float *y, const float *x, int64_t n, ref_unary_kind kind)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)unary((double)x[i], kind);
}

int ref_broadcast_shape(int64_t *out, const int64_t *a, int an, const int64_t *b, int bn)
{
    int nd = an > bn ? an : bn;
    for (int i = 0; i < nd; i++) {
        int64_t da = i < nd - an ? 1 : a[i - (nd - an)];
        int64_t db = i < nd - bn ? 1 : b[i - (nd - bn)];
        if (da != db && da != 1 && db != 1)
            return -1;
        out[i] = da == 1 ? db : da;
    }
    return nd;
}

/* Flat index into a tensor of shape sh[n] (aligned to the right of out) for out index idx. */
static int64_t bcast_index(const int64_t *idx, int nd, const int64_t *sh, int n)
{
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        int64_t coord = sh[i] == 1 ? 0 : idx[i + nd - n];
        at = at * sh[i] + coord;
    }
    return at;
}

void ref_binary(float *y, const int64_t *out_shape, int ndim, const float *a, const int64_t *ash,
                int an, const float *b, const int64_t *bsh, int bn, ref_binary_kind kind)
{
    int64_t total = 1, idx[8] = { 0 };
    for (int i = 0; i < ndim; i++)
        total *= out_shape[i];
    for (int64_t f = 0; f < total; f++) {
        int64_t r = f;
        for (int i = ndim - 1; i >= 0; i--) {
            idx[i] = r % out_shape[i];
            r /= out_shape[i];
        }
        double va = (double)a[bcast_index(idx, ndim, ash, an)];
        double vb = (double)b[bcast_index(idx, ndim, bsh, bn)];
        y[f] = (float)(kind == REF_ADD ? va + vb : kind == REF_SUB ? va - vb : va * vb);
    }
}

void ref_modulate(float *y, const float *x, const float *shift, const float *scale, int64_t B,
                  int64_t N, int64_t C)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++) {
                int64_t at = (b * N + n) * C + c;
                y[at] = (float)((double)x[at] * (1.0 + (double)scale[b * C + c]) +
                                (double)shift[b * C + c]);
            }
}

void ref_gated_add(float *y, const float *x, const float *gate, const float *v, int64_t B,
                   int64_t N, int64_t C)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++) {
                int64_t at = (b * N + n) * C + c;
                y[at] = (float)((double)x[at] + (double)gate[b * C + c] * (double)v[at]);
            }
}
