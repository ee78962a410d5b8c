/* core/tensor/rng.c — mt19937 and PyTorch's CPU randn, bit for bit.
 *
 * The vectorised path of PyTorch evaluates the Cephes polynomials of avx_mathfun.h in
 * float32 AVX2 code that the compiler contracts into FMAs: every `y = y*x + c` polynomial
 * step, the `x + y*DPi` range reduction, `y*z + e*q1` and `x + y + e*q2` in the log, and
 * `y*z*z - z/2` in the cosine polynomial. Those are written here as explicit fmaf() and
 * every other product or sum is a separate rounded float operation; contraction by this
 * compiler is switched off so nothing else fuses. The result is the same on any CPU. */
#include "core/tensor/rng.h"

#include "core/base/alloc.h"
#include "core/tensor/dtype.h"

#include <math.h>
#include <stdbool.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define MT_N 624
#define MT_M 397

struct lm_rng {
    uint32_t mt[MT_N];
    int next;        /* index of the next word; MT_N = twist first */
    bool has_normal; /* the scalar path's cached second Box-Muller value */
    double normal;
};

void lm_rng_seed(lm_rng *rng, uint64_t seed)
{
    rng->mt[0] = (uint32_t)seed; /* torch keeps only the low 32 bits */
    for (uint32_t i = 1; i < MT_N; i++)
        rng->mt[i] = 1812433253u * (rng->mt[i - 1] ^ (rng->mt[i - 1] >> 30)) + i;
    rng->next = MT_N;
    rng->has_normal = false;
    rng->normal = 0.0;
}

lm_status lm_rng_new(lm_rng **out, uint64_t seed, lm_error *err)
{
    *out = lm_malloc(sizeof(**out));
    if (!*out)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate a random generator");
    lm_rng_seed(*out, seed);
    return LM_OK;
}

void lm_rng_free(lm_rng *rng)
{
    lm_free(rng);
}

static void twist(lm_rng *rng)
{
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = (rng->mt[i] & 0x80000000u) | (rng->mt[(i + 1) % MT_N] & 0x7fffffffu);
        rng->mt[i] = rng->mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    rng->next = 0;
}

uint32_t lm_rng_u32(lm_rng *rng)
{
    if (rng->next >= MT_N)
        twist(rng);
    uint32_t y = rng->mt[rng->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* torch uniform_real_distribution<float>(0, 1): 24 random bits, exact in float. */
static float uniform_f32(lm_rng *rng)
{
    return (float)(lm_rng_u32(rng) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* torch uniform_real_distribution<double>(0, 1): random64() = first word high, 53 bits. */
static double uniform_f64(lm_rng *rng)
{
    uint64_t hi = lm_rng_u32(rng), lo = lm_rng_u32(rng);
    uint64_t bits = (hi << 32 | lo) & ((UINT64_C(1) << 53) - 1);
    return (double)bits * (1.0 / 9007199254740992.0);
}

/* ---- avx_mathfun.h's Cephes polynomials, one lane at a time ---- */

/* log256_ps for x in [2^-24, 1] (the only inputs Box-Muller gives it). */
static float cephes_logf(float x)
{
    uint32_t bits = lm_f32_bits(x);
    float e = (float)((int32_t)(bits >> 23) - 127);
    e = e + 1.0f;
    x = lm_f32_from_bits((bits & ~0x7f800000u) | 0x3f000000u); /* mantissa in [0.5, 1) */
    float tmp = x < 0.707106781186547524f ? x : 0.0f;
    x = x - 1.0f;
    if (tmp != 0.0f)
        e = e - 1.0f;
    x = x + tmp;
    float z = x * x;
    float y = fmaf(7.0376836292E-2f, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, 1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, 2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, 3.3333331174E-1f);
    y = y * x;
    y = fmaf(y, z, e * -2.12194440e-4f);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    return fmaf(e, 0.693359375f, x);
}

/* sincos256_ps for x >= 0. */
static void cephes_sincosf(float x, float *s, float *c)
{
    int32_t j = (int32_t)(x * 1.27323954473516f); /* 4/pi, truncated */
    j = (j + 1) & ~1;
    float y = (float)j;
    uint32_t sign_sin = (uint32_t)(j & 4) << 29;
    uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
    bool low_poly = (j & 2) == 0;
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    float z = x * x;
    float yc = fmaf(2.443315711809948E-005f, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f));
    yc = yc + 1.0f;
    float ys = fmaf(-1.9515295891E-4f, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    *s = lm_f32_from_bits(lm_f32_bits(low_poly ? ys : yc) ^ sign_sin);
    *c = lm_f32_from_bits(lm_f32_bits(low_poly ? yc : ys) ^ sign_cos);
}

/* normal_fill_16_AVX2 with mean 0, std 1: d[0..8) and d[8..16) hold uniforms. */
static void box_muller16(float *d)
{
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int k = 0; k < 8; k++) {
        float u1 = 1.0f - d[k], u2 = d[k + 8];
        float radius = sqrtf(-2.0f * cephes_logf(u1));
        float s, c;
        cephes_sincosf(two_pi * u2, &s, &c);
        d[k] = radius * c;
        d[k + 8] = radius * s;
    }
}

/* normal_distribution<double>: one value, the pair's other half cached. */
static double normal_f64(lm_rng *rng)
{
    if (rng->has_normal) {
        rng->has_normal = false;
        return rng->normal;
    }
    double u1 = uniform_f64(rng), u2 = uniform_f64(rng);
    double r = sqrt(-2.0 * log1p(-u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    rng->normal = r * sin(theta);
    rng->has_normal = true;
    return r * cos(theta);
}

void lm_rng_randn(lm_rng *rng, float *out, size_t n)
{
    if (n < 16) {
        for (size_t i = 0; i < n; i++)
            out[i] = (float)normal_f64(rng);
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = uniform_f32(rng);
    for (size_t i = 0; i + 16 <= n; i += 16)
        box_muller16(out + i);
    if (n % 16) {
        for (size_t i = n - 16; i < n; i++)
            out[i] = uniform_f32(rng);
        box_muller16(out + n - 16);
    }
}
