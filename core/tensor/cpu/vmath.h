/* core/tensor/cpu/vmath.h — vectorised float math for the CPU kernels.
 * Each function has an AVX2+FMA build and a baseline (SSE2) build of the same source,
 * chosen once at run time with __builtin_cpu_supports; the build never assumes the host's
 * instruction set (LOOM_CPU_BASELINE=1 forces the baseline). exp is accurate to about
 * 2 ulp over the float range; inputs below -87.3 give 0 (no subnormal results), above
 * ln(FLT_MAX) = 88.7228 give +inf. */
#ifndef LM_CORE_TENSOR_CPU_VMATH_H
#define LM_CORE_TENSOR_CPU_VMATH_H

#include <stdint.h>

/* The largest of x[0..n), n >= 1 (with NaNs in x the result is NaN or an element). */
float lm_vmax(const float *x, int64_t n);
/* x[i] = exp(x[i] - sub) for i < n; returns the sum of the new values. */
float lm_vexp_sub_sum(float *x, int64_t n, float sub);
/* y[i] = x[i] * sigmoid(a * x[i]) (SiLU: a = 1; quick GELU: a = 1.702). In place is fine. */
void lm_vsigmoid_mul(float *y, const float *x, int64_t n, float a);
/* y[i] = GELU with the tanh approximation. In place is fine. */
void lm_vgelu_tanh(float *y, const float *x, int64_t n);
/* y[i] = exp(x[i]). In place is fine. */
void lm_vexp(float *y, const float *x, int64_t n);

#endif
