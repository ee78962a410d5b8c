/* core/tensor/cpu/vmath.c — vectorised exp and the activations built on it.
 *
 * The bodies use GCC/Clang vector extensions (8 floats) and are inlined into two wrappers:
 * one compiled for AVX2+FMA (target attribute) and one for the baseline ISA; a function
 * pointer picked at first use with __builtin_cpu_supports selects between them. exp(x) =
 * 2^n · p(r) with n = round(x / ln 2), r = x - n ln 2 (Cody-Waite split) and a degree-6
 * polynomial for e^r on |r| <= ln2/2. Tails shorter than 8 are padded through a buffer. */
#include "core/tensor/cpu/vmath.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* Vectors never cross a call (helpers take pointers or are macros), so the AVX calling
 * convention question of -Wpsabi never arises. */
#define V8(c)                ((v8f){ c, c, c, c, c, c, c, c })
#define V_SELECT(mask, a, b) ((v8f)(((v8i)(a) & (mask)) | ((v8i)(b) & ~(mask))))
#define INLINE               static inline __attribute__((always_inline))

INLINE void v_exp(v8f *px)
{
    v8f x = *px;
    v8i over = x > V8(88.7228f), under = x < V8(-87.3f);
    x = V_SELECT(over, V8(88.0f), V_SELECT(under, V8(-87.0f), x)); // keep lanes finite
    v8f t = x * V8(1.44269504088896341f) + V8(12582912.0f);        /* 1.5·2^23: round to int */
    v8i n = (v8i)t - (v8i)V8(12582912.0f);
    v8f nf = t - V8(12582912.0f);
    v8f r = x - nf * V8(0.693145751953125f);
    r = r - nf * V8(1.428606765330187045e-06f);
    v8f p = V8(1.0f / 720.0f);
    p = p * r + V8(1.0f / 120.0f);
    p = p * r + V8(1.0f / 24.0f);
    p = p * r + V8(1.0f / 6.0f);
    p = p * r + V8(0.5f);
    p = p * r + V8(1.0f);
    p = p * r + V8(1.0f);
    v8f y = (v8f)((v8i)p + (n << 23));
    y = V_SELECT(over, V8(INFINITY), y);
    *px = V_SELECT(under, V8(0.0f), y);
}

/* Runs STMT (which rewrites the vector v in place) over x[0..n) into y, 8 at a time; the
 * tail goes through a padded buffer. */
#define MAP_BODY(STMT)                                                                             \
    int64_t i = 0;                                                                                 \
    v8f v;                                                                                         \
    for (; i + 8 <= n; i += 8) {                                                                   \
        memcpy(&v, x + i, sizeof(v));                                                              \
        STMT;                                                                                      \
        memcpy(y + i, &v, sizeof(v));                                                              \
    }                                                                                              \
    if (i < n) {                                                                                   \
        float buf[8] = { 0 };                                                                      \
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));                                       \
        memcpy(&v, buf, sizeof(v));                                                                \
        STMT;                                                                                      \
        memcpy(buf, &v, sizeof(v));                                                                \
        memcpy(y + i, buf, (size_t)(n - i) * sizeof(float));                                       \
    }

INLINE float exp_sub_sum_body(float *x, int64_t n, float sub)
{
    v8f acc = V8(0.0f), v;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, x + i, sizeof(v));
        v -= V8(sub);
        v_exp(&v);
        memcpy(x + i, &v, sizeof(v));
        acc += v;
    }
    float sum = 0.0f;
    for (int l = 0; l < 8; l++)
        sum += acc[l];
    for (; i < n; i++) {
        x[i] = expf(x[i] - sub);
        sum += x[i];
    }
    return sum;
}

INLINE float max_body(const float *x, int64_t n)
{
    float m = x[0];
    int64_t i = 0;
    if (n >= 8) {
        v8f acc, v;
        memcpy(&acc, x, sizeof(acc));
        for (i = 8; i + 8 <= n; i += 8) {
            memcpy(&v, x + i, sizeof(v));
            acc = V_SELECT(v > acc, v, acc);
        }
        m = acc[0];
        for (int l = 1; l < 8; l++)
            m = acc[l] > m ? acc[l] : m;
    }
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

INLINE void sigmoid_mul_body(float *y, const float *x, int64_t n, float a){ MAP_BODY({
    v8f e = -V8(a) * v;
    v_exp(&e);
    v = v / (V8(1.0f) + e);
}) }

INLINE void gelu_tanh_body(float *y, const float *x, int64_t n){
    /* 0.5 x (1 + tanh(u)) = x - x / (1 + exp(2u)), u = sqrt(2/pi) (x + 0.044715 x^3) */
    MAP_BODY({
        v8f e = V8(1.5957691216057308f) * (v + V8(0.044715f) * v * v * v);
        v_exp(&e);
        v = v - v / (V8(1.0f) + e);
    })
}

INLINE void exp_body(float *y, const float *x, int64_t n){ MAP_BODY(v_exp(&v)) }

#if defined(__x86_64__)
#define FAST __attribute__((target("avx2,fma")))
#else
#define FAST
#endif

FAST static float exp_sub_sum_fast(float *x, int64_t n, float sub)
{
    return exp_sub_sum_body(x, n, sub);
}
static float exp_sub_sum_base(float *x, int64_t n, float sub)
{
    return exp_sub_sum_body(x, n, sub);
}
FAST static float max_fast(const float *x, int64_t n)
{
    return max_body(x, n);
}
static float max_base(const float *x, int64_t n)
{
    return max_body(x, n);
}
FAST static void sigmoid_mul_fast(float *y, const float *x, int64_t n, float a)
{
    sigmoid_mul_body(y, x, n, a);
}
static void sigmoid_mul_base(float *y, const float *x, int64_t n, float a)
{
    sigmoid_mul_body(y, x, n, a);
}
FAST static void gelu_tanh_fast(float *y, const float *x, int64_t n)
{
    gelu_tanh_body(y, x, n);
}
static void gelu_tanh_base(float *y, const float *x, int64_t n)
{
    gelu_tanh_body(y, x, n);
}
FAST static void exp_fast(float *y, const float *x, int64_t n)
{
    exp_body(y, x, n);
}
static void exp_base(float *y, const float *x, int64_t n)
{
    exp_body(y, x, n);
}

static int use_fast = -1;
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;

/* LOOM_CPU_BASELINE=1 forces the baseline build (to test it on an AVX2 machine). */
static void pick(void)
{
    const char *env = getenv("LOOM_CPU_BASELINE");
    use_fast = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    use_fast = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    if (env && env[0] == '1')
        use_fast = 0;
}

static int fast(void)
{
    pthread_once(&pick_once, pick);
    return use_fast;
}

float lm_vexp_sub_sum(float *x, int64_t n, float sub)
{
    return fast() ? exp_sub_sum_fast(x, n, sub) : exp_sub_sum_base(x, n, sub);
}

void lm_vsigmoid_mul(float *y, const float *x, int64_t n, float a)
{
    if (fast())
        sigmoid_mul_fast(y, x, n, a);
    else
        sigmoid_mul_base(y, x, n, a);
}

void lm_vgelu_tanh(float *y, const float *x, int64_t n)
{
    if (fast())
        gelu_tanh_fast(y, x, n);
    else
        gelu_tanh_base(y, x, n);
}

void lm_vexp(float *y, const float *x, int64_t n)
{
    if (fast())
        exp_fast(y, x, n);
    else
        exp_base(y, x, n);
}

float lm_vmax(const float *x, int64_t n)
{
    return fast() ? max_fast(x, n) : max_base(x, n);
}
