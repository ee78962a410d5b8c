/* core/tensor/cpu/tile512.h — what the AVX-512 linear kernels share (matmul.c's FMA
 * kernel for converted weights and matmul_bf16.c's VDPBF16PS kernel): how the output is cut
 * into tiles for the pool, the tile's start (the bias or zeros), and the register tile of
 * up to LM_TILE512_MR rows x 64 floats: cleared, then added into C with masked loads and
 * stores for the ragged last columns. Those two are always inlined, so the accumulators
 * stay in registers; callers are compiled for avx512f or a superset of it. Internal to
 * core/tensor/cpu. */
#ifndef LM_CORE_TENSOR_CPU_TILE512_H
#define LM_CORE_TENSOR_CPU_TILE512_H

#if defined(__x86_64__)

#include "core/base/lm.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define LM_TILE512_MR 6 /* rows of both micro-kernels */

/* Tiles of an output [m, n] for `threads` pool threads: about three per thread; panels of
 * nb = nr..4·nr columns (multiples of nr, the micro-kernel's width), n_panels of them, and
 * blocks of mb rows (a multiple of LM_TILE512_MR). */
static inline void lm_cpu__tile512_cut(int64_t m, int64_t n, int64_t nr, int64_t threads,
                                       int64_t *nb, int64_t *mb, int64_t *n_panels)
{
    int64_t target = threads * 3;
    int64_t b = (n + target - 1) / target;
    b = (b + nr - 1) / nr * nr;
    *nb = LM_MAX(nr, LM_MIN(4 * nr, b));
    *n_panels = (n + *nb - 1) / *nb;
    int64_t m_blocks = LM_MAX(1, target / *n_panels);
    m_blocks = LM_MIN(m_blocks, (m + 63) / 64);
    int64_t rows = (m + m_blocks - 1) / m_blocks;
    *mb = (rows + LM_TILE512_MR - 1) / LM_TILE512_MR * LM_TILE512_MR;
}

/* Starts an output tile of mm rows (ldc floats apart) x nn columns as the bias (bias[0..nn)
 * on every row) or, with no bias, zeros; the micro-kernels add onto it. */
static inline void lm_cpu__tile512_start(float *c, int64_t ldc, const float *bias, int64_t mm,
                                         int64_t nn)
{
    for (int64_t i = 0; i < mm; i++)
        if (bias)
            memcpy(c + i * ldc, bias, (size_t)nn * sizeof(float));
        else
            memset(c + i * ldc, 0, (size_t)nn * sizeof(float));
}

/* acc = 0: the micro-kernels' accumulators before their k loop. */
static inline __attribute__((always_inline, target("avx512f"))) void
lm_cpu__tile512_zero(__m512 acc[LM_TILE512_MR][4])
{
#pragma GCC unroll 8
    for (int i = 0; i < LM_TILE512_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[i][v] = _mm512_setzero_ps();
}

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
