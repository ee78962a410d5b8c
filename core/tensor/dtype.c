/* core/tensor/dtype.c — F16/BF16/F8_E4M3 <-> F32 conversions.
 * Scalar conversions work on the bit patterns so that rounding is exactly round-to-nearest-
 * even whatever the FPU mode. Row conversion of F16 uses the F16C instructions when the CPU
 * has them (chosen at run time; the build never assumes them) and a bit-exact scalar path
 * otherwise; F8 rows go through a 256-entry table. */
#include "core/tensor/dtype.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86_DISPATCH 1
#else
#define HAVE_X86_DISPATCH 0
#endif

float lm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) /* infinity or NaN */
        return lm_f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return lm_f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t lm_f32_to_f16(float f)
{
    uint32_t u = lm_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep it quiet */
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) /* rounds to >= 65536: infinity */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below 2^-14: subnormal half; scale so one ulp is 1 */
        float v = lm_f32_from_bits(a) * 0x1p24f; /* exact: power-of-two scaling */
        return (uint16_t)(sign | (uint16_t)nearbyintf(v));
    }
    uint32_t man = a & 0x7fffffu, exp = (a >> 23) - 112;
    uint32_t q = (exp << 10) | (man >> 13), rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1)))
        q++; /* a carry into the exponent is the right answer */
    return (uint16_t)(sign | q);
}

float lm_bf16_to_f32(uint16_t h)
{
    return lm_f32_from_bits((uint32_t)h << 16);
}

uint16_t lm_f32_to_bf16(float f)
{
    uint32_t u = lm_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float lm_f8e4m3_to_f32(uint8_t v)
{
    int exp = (v >> 3) & 0xf, man = v & 7;
    float r;
    if (exp == 0xf && man == 7)
        r = NAN;
    else if (exp == 0)
        r = (float)man * 0x1p-9f; /* m/8 * 2^-6 */
    else
        r = ldexpf(1.0f + (float)man / 8.0f, exp - 7);
    return (v & 0x80) ? -r : r;
}

uint8_t lm_f32_to_f8e4m3(float f)
{
    uint32_t u = lm_f32_bits(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return 0x7f;
    if (a < 0x3c800000u) { /* below 2^-6: subnormal; one ulp is 2^-9 */
        float v = lm_f32_from_bits(a) * 512.0f;
        return (uint8_t)(sign | (uint8_t)nearbyintf(v)); /* 8 becomes the min normal 0x08 */
    }
    if (a >= 0x43e00000u) /* >= 448 (infinity included): saturate */
        return (uint8_t)(sign | 0x7e);
    uint32_t man = a & 0x7fffffu, exp = (a >> 23) - 120;
    uint32_t q = (exp << 3) | (man >> 20), rem = man & 0xfffffu;
    if (rem > 0x80000u || (rem == 0x80000u && (q & 1)))
        q++;
    if (q > 0x7e)
        q = 0x7e;
    return (uint8_t)(sign | q);
}

int lm_dtype_is_float(lm_dtype dtype)
{
    return dtype == LM_DTYPE_F32 || dtype == LM_DTYPE_F16 || dtype == LM_DTYPE_BF16 ||
           dtype == LM_DTYPE_F8_E4M3;
}

/* ---- rows ---- */

static float f8_table[256];
static pthread_once_t f8_once = PTHREAD_ONCE_INIT;

static void f8_table_init(void)
{
    for (int i = 0; i < 256; i++)
        f8_table[i] = lm_f8e4m3_to_f32((uint8_t)i);
}

#if HAVE_X86_DISPATCH
__attribute__((target("avx,f16c"))) static void f16_row_f16c(float *dst, const uint16_t *src,
                                                             size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++)
        dst[i] = lm_f16_to_f32(src[i]);
}

/* CPUID leaf 1: AVX (ecx 28), F16C (ecx 29), and the OS saving YMM state (OSXSAVE, ecx 27,
 * then XCR0 bits 1-2). __builtin_cpu_supports("f16c") is not known to every clang. */
static int detect_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!(c & (1u << 27)) || !(c & (1u << 28)) || !(c & (1u << 29)))
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 6u) == 6u;
}

static int have_f16c(void)
{
    static atomic_int cached = -1; /* racing first calls compute the same answer */
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        v = detect_f16c();
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}
#endif

static void f16_row(float *dst, const uint16_t *src, size_t n)
{
#if HAVE_X86_DISPATCH
    if (have_f16c()) {
        f16_row_f16c(dst, src, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = lm_f16_to_f32(src[i]);
}

void lm_dtype_to_f32(float *dst, const void *src, lm_dtype dtype, size_t n)
{
    switch (dtype) {
    case LM_DTYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        return;
    case LM_DTYPE_F16:
        f16_row(dst, src, n);
        return;
    case LM_DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = lm_bf16_to_f32(((const uint16_t *)src)[i]);
        return;
    case LM_DTYPE_F8_E4M3:
        pthread_once(&f8_once, f8_table_init);
        for (size_t i = 0; i < n; i++)
            dst[i] = f8_table[((const uint8_t *)src)[i]];
        return;
    default:
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)lm_dtype_load((const char *)src + i * lm_dtype_size(dtype), dtype);
        return;
    }
}

void lm_dtype_from_f32(void *dst, const float *src, lm_dtype dtype, size_t n)
{
    size_t size = lm_dtype_size(dtype);
    if (dtype == LM_DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++)
        lm_dtype_store((char *)dst + i * size, dtype, (double)src[i]);
}

void lm_dtype_convert(void *dst, lm_dtype dd, const void *src, lm_dtype sd, size_t n)
{
    size_t dz = lm_dtype_size(dd), sz = lm_dtype_size(sd);
    if (dd == sd) {
        memmove(dst, src, n * sz);
        return;
    }
    if (sd == LM_DTYPE_F32 && lm_dtype_is_float(dd)) {
        lm_dtype_from_f32(dst, src, dd, n);
        return;
    }
    if (dd == LM_DTYPE_F32 && lm_dtype_is_float(sd)) {
        lm_dtype_to_f32(dst, src, sd, n);
        return;
    }
    if (lm_dtype_is_float(sd) && lm_dtype_is_float(dd)) {
        float tmp[256];
        for (size_t i = 0; i < n; i += 256) {
            size_t c = n - i < 256 ? n - i : 256;
            lm_dtype_to_f32(tmp, (const char *)src + i * sz, sd, c);
            lm_dtype_from_f32((char *)dst + i * dz, tmp, dd, c);
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        lm_dtype_store((char *)dst + i * dz, dd, lm_dtype_load((const char *)src + i * sz, sd));
}

double lm_dtype_load(const void *src, lm_dtype dtype)
{
    switch (dtype) {
    case LM_DTYPE_F32: {
        float v;
        memcpy(&v, src, 4);
        return (double)v;
    }
    case LM_DTYPE_F16: {
        uint16_t v;
        memcpy(&v, src, 2);
        return (double)lm_f16_to_f32(v);
    }
    case LM_DTYPE_BF16: {
        uint16_t v;
        memcpy(&v, src, 2);
        return (double)lm_bf16_to_f32(v);
    }
    case LM_DTYPE_F8_E4M3:
        return (double)lm_f8e4m3_to_f32(*(const uint8_t *)src);
    case LM_DTYPE_I64: {
        int64_t v;
        memcpy(&v, src, 8);
        return (double)v;
    }
    case LM_DTYPE_I32: {
        int32_t v;
        memcpy(&v, src, 4);
        return (double)v;
    }
    case LM_DTYPE_U8:
        return (double)*(const uint8_t *)src;
    default:
        return 0.0;
    }
}

static double clamp_round(double v, double lo, double hi)
{
    if (v != v)
        return 0.0;
    v = nearbyint(v);
    return v < lo ? lo : v > hi ? hi : v;
}

void lm_dtype_store(void *dst, lm_dtype dtype, double v)
{
    switch (dtype) {
    case LM_DTYPE_F32: {
        float f = (float)v;
        memcpy(dst, &f, 4);
        return;
    }
    case LM_DTYPE_F16: {
        uint16_t h = lm_f32_to_f16((float)v);
        memcpy(dst, &h, 2);
        return;
    }
    case LM_DTYPE_BF16: {
        uint16_t h = lm_f32_to_bf16((float)v);
        memcpy(dst, &h, 2);
        return;
    }
    case LM_DTYPE_F8_E4M3:
        *(uint8_t *)dst = lm_f32_to_f8e4m3((float)v);
        return;
    case LM_DTYPE_I64: {
        int64_t i = (int64_t)clamp_round(v, -9223372036854775808.0, 9223372036854774784.0);
        memcpy(dst, &i, 8);
        return;
    }
    case LM_DTYPE_I32: {
        int32_t i = (int32_t)clamp_round(v, -2147483648.0, 2147483647.0);
        memcpy(dst, &i, 4);
        return;
    }
    case LM_DTYPE_U8:
        *(uint8_t *)dst = (uint8_t)clamp_round(v, 0.0, 255.0);
        return;
    default:
        return;
    }
}
