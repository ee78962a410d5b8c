/* core/tensor/dtype.h — scalar and row conversions between F32 and the storage dtypes.
 *
 * F16: IEEE binary16. BF16: the top half of an F32. Encoding from F32 rounds to nearest,
 * ties to even, for both; NaN stays NaN (quiet), overflow gives infinity.
 * F8_E4M3 (float8 e4m3fn): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; no
 * infinities; 0x7f and 0xff are NaN; the largest finite value is 448; subnormals are
 * m/8 * 2^-6. Encoding rounds to nearest even (matching torch's float8_e4m3fn cast for
 * every value that rounds to at most 448) and SATURATES beyond: any |x| > 448, infinities
 * included, becomes ±448 (torch gives NaN from 464 up); NaN encodes as 0x7f.
 * Every function is pure and thread-safe. */
#ifndef LM_CORE_TENSOR_DTYPE_H
#define LM_CORE_TENSOR_DTYPE_H

#include "core/tensor/tensor.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The bits of an f32, and the f32 of some bits (no aliasing: memcpy, which compiles to a
 * move). */
static inline uint32_t lm_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static inline float lm_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

float lm_f16_to_f32(uint16_t h);
uint16_t lm_f32_to_f16(float f);
float lm_bf16_to_f32(uint16_t h);
uint16_t lm_f32_to_bf16(float f);
float lm_f8e4m3_to_f32(uint8_t v);
uint8_t lm_f32_to_f8e4m3(float f);

/* True for the float dtypes (F32, F16, BF16, F8_E4M3). */
int lm_dtype_is_float(lm_dtype dtype);

/* dst[i] = (float)src[i] for n elements of `dtype`, src contiguous (integers are converted
 * by value). */
void lm_dtype_to_f32(float *dst, const void *src, lm_dtype dtype, size_t n);
/* dst[i] = src[i] encoded as `dtype` (integers: rounded to nearest, saturating). */
void lm_dtype_from_f32(void *dst, const float *src, lm_dtype dtype, size_t n);
/* dst[i] = src[i] for n contiguous elements, any dtype to any dtype (floats round to
 * nearest even, F8 saturates, floats to integers round to nearest and saturate; NaN -> 0). */
void lm_dtype_convert(void *dst, lm_dtype dd, const void *src, lm_dtype sd, size_t n);
/* Strided element conversion: one element of any dtype to/from double (exact for all
 * dtypes but I64 beyond 2^53). */
double lm_dtype_load(const void *src, lm_dtype dtype);
void lm_dtype_store(void *dst, lm_dtype dtype, double v);

#endif
