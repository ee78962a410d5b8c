/* core/tensor/cpu/tile512.h — the epilogue shared by the AVX-512 micro-kernels (matmul.c's
 * FMA kernel for converted weights and matmul_bf16.c's VDPBF16PS kernel): add a register
 * tile of up to LM_TILE512_MR rows x 64 floats into C, with masked loads and stores for the
 * ragged last columns. Always inlined, so the accumulators stay in registers; callers are
 * compiled for avx512f or a superset of it. Internal to core/tensor/cpu. */
#ifndef LM_CORE_TENSOR_CPU_TILE512_H
#define LM_CORE_TENSOR_CPU_TILE512_H

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdint.h>

#define LM_TILE512_MR 6 /* rows of both micro-kernels */

/* c[0..mr)[0..nr) += acc; mr <= LM_TILE512_MR, nr <= 64; ldc in floats. */
static inline __attribute__((always_inline, target("avx512f"))) void
lm_cpu__tile512_add(float *c, int64_t ldc, __m512 acc[LM_TILE512_MR][4], int mr, int nr)
{
    __mmask16 mask[4];
    for (int v = 0; v < 4; v++) {
        int left = nr - 16 * v;
        mask[v] = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
    }
#pragma GCC unroll 8
    for (int i = 0; i < LM_TILE512_MR; i++) {
        if (i >= mr)
            break;
        float *ci = c + i * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            __m512 old = _mm512_maskz_loadu_ps(mask[v], ci + 16 * v);
            _mm512_mask_storeu_ps(ci + 16 * v, mask[v], _mm512_add_ps(old, acc[i][v]));
        }
    }
}

#endif

#endif
