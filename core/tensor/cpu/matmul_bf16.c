/* core/tensor/cpu/matmul_bf16.c — lm_linear in bf16 with f32 accumulation (AVX512-BF16).
 *
 * Used when the precision is LM_PRECISION_BF16 (precision.h) and the CPU has AVX512-BF16;
 * lm_cpu_linear calls it. VDPBF16PS multiplies pairs of bf16 and adds both products to an
 * f32 lane: acc[n] += a[2p]·b[2p][n] + a[2p+1]·b[2p+1][n]. Its operands want k in pairs:
 *   - A (activations): x is rounded to bf16 (nearest even) once per call into a shared
 *     buffer [Mp, Kp] (Kp = K rounded up to even, Mp = M rounded up to MR; the padding is
 *     zero), so every 32-bit word is one k-pair of one row, broadcast as is;
 *   - B (weights): each task converts its panel of w (any float dtype; BF16 copied as is)
 *     block by block of KC columns into micro-panels of NR output columns, laid out
 *     [pair][column][2], so one k-pair of NR columns is NR/16 vectors.
 * Tasks are tiles of the output (panels of columns × blocks of rows, cut as for matmul.c's
 * packed kernel: tile512.h) run on the pool. In a tile, for each KC block: pack B, then for
 * each MR-row group (its MR·KC bf16 stay in L1) sweep the micro-panels of B (in L2) with an
 * MR x NR register-blocked micro-kernel (MR·NR/16 = 24 accumulators) that adds onto the
 * output, which starts as the bias (f32). Edges: padded rows/columns compute zeros, and the store
 * is masked. f32 inputs below the normal range (|x| < 1.2e-38) are flushed to zero by the
 * conversion instruction. */
#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/tensor/cpu/cpu.h"
#include "core/tensor/dtype.h"
#include "core/tensor/precision.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include "core/tensor/cpu/tile512.h"

#include <immintrin.h>

#define MR          LM_TILE512_MR /* rows of the micro-kernel */
#define NR          64            /* columns of the micro-kernel: 4 vectors of 16 f32 */
#define KC          256           /* k per packed block (even) */
#define BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw")))

typedef struct {
    const float *x;
    const lm_tensor *w;
    const float *bias;
    float *out;
    uint16_t *xb; /* [mp, kp] bf16 */
    int64_t m, n, k;
    int64_t mp, kp; /* padded sizes of xb */
    int64_t nb, mb, n_panels;
    lm_cpu_scratch scratch;
} bf16_job;

/* dst[i] = bf16(src[i]), round to nearest even, n >= 0. */
BF16_TARGET static void f32_to_bf16_row(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), (__m256i)h);
    }
    if (i < n) {
        __mmask16 mask = (__mmask16)((1u << (n - i)) - 1);
        __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src + i));
        _mm256_mask_storeu_epi16(dst + i, mask, (__m256i)h);
    }
}

/* Rows [r0, r1) of x into xb; rows at or beyond m and the odd column are zero. */
BF16_TARGET static void convert_x_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    bf16_job *j = user;
    int64_t r0 = (int64_t)task * MR, r1 = r0 + MR;
    for (int64_t r = r0; r < r1; r++) {
        uint16_t *d = j->xb + r * j->kp;
        if (r < j->m)
            f32_to_bf16_row(d, j->x + r * j->k, j->k);
        memset(d + (r < j->m ? j->k : 0), 0, (size_t)(r < j->m ? j->kp - j->k : j->kp) * 2);
    }
}

/* Columns [k0, k0 + kc) of weight row `row` as bf16 into dst (kc <= KC); tmp holds KC
 * floats. */
BF16_TARGET static void weight_row_bf16(uint16_t *dst, const lm_tensor *w, int64_t row, int64_t k,
                                        int64_t k0, int64_t kc, float *tmp)
{
    size_t es = lm_dtype_size(w->dtype);
    const char *src = (const char *)lm_tensor__addr(w) + (size_t)(row * k + k0) * es;
    if (w->dtype == LM_DTYPE_BF16) {
        memcpy(dst, src, (size_t)kc * 2);
        return;
    }
    const float *f = (const float *)(const void *)src;
    if (w->dtype != LM_DTYPE_F32) {
        lm_dtype_to_f32(tmp, src, w->dtype, (size_t)kc);
        f = tmp;
    }
    f32_to_bf16_row(dst, f, kc);
}

/* Packs weight rows [n0, n0 + nn) x columns [k0, k0 + kc) into micro-panels of NR columns,
 * each [kcp][NR] pairs; columns beyond nn and the odd k are zero. */
BF16_TARGET static void pack_b(uint32_t *bp, const bf16_job *j, int64_t n0, int64_t nn, int64_t k0,
                               int64_t kcp, uint16_t *row, float *tmp)
{
    int64_t kc = LM_MIN(2 * kcp, j->k - k0), nq = (nn + NR - 1) / NR;
    for (int64_t c = 0; c < nq * NR; c++) {
        uint32_t *d = bp + (c / NR) * kcp * NR + c % NR;
        if (c >= nn) {
            for (int64_t p = 0; p < kcp; p++)
                d[p * NR] = 0;
            continue;
        }
        weight_row_bf16(row, j->w, n0 + c, j->k, k0, kc, tmp);
        row[kc] = 0; /* the odd k's partner */
        for (int64_t p = 0; p < kcp; p++)
            d[p * NR] = (uint32_t)row[2 * p] | (uint32_t)row[2 * p + 1] << 16;
    }
}

/* c[0..mr)[0..nr) += a[MR rows, kcp pairs] · b[kcp pairs, NR]; a's rows are lda words
 * apart; rows mr.. and columns nr.. are computed (on zero padding) but not stored. */
BF16_TARGET static void micro_kernel(int64_t kcp, const uint32_t *a, int64_t lda, const uint32_t *b,
                                     float *c, int64_t ldc, int mr, int nr)
{
    __m512 acc[MR][4];
    lm_cpu__tile512_zero(acc);
    for (int64_t p = 0; p < kcp; p++) {
        const uint32_t *bq = b + p * NR;
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(bq), b1 = (__m512bh)_mm512_loadu_si512(bq + 16);
        __m512bh b2 = (__m512bh)_mm512_loadu_si512(bq + 32),
                 b3 = (__m512bh)_mm512_loadu_si512(bq + 48);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i * lda + p]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
            acc[i][2] = _mm512_dpbf16_ps(acc[i][2], ai, b2);
            acc[i][3] = _mm512_dpbf16_ps(acc[i][3], ai, b3);
        }
    }
    lm_cpu__tile512_add(c, ldc, acc, mr, nr);
}

/* Scratch of one task, in floats: packed B (64-byte aligned), a bf16 row, an f32 row. */
static size_t task_scratch_floats(const bf16_job *j)
{
    size_t nq = (size_t)((j->nb + NR - 1) / NR);
    return nq * NR * KC / 2 + KC / 2 + 1 + KC + 16;
}

BF16_TARGET static void bf16_task(void *user, size_t task, int tid)
{
    bf16_job *j = user;
    int64_t n0 = (int64_t)(task % (size_t)j->n_panels) * j->nb;
    int64_t m0 = (int64_t)(task / (size_t)j->n_panels) * j->mb;
    int64_t nn = LM_MIN(j->nb, j->n - n0), mm = LM_MIN(j->mb, j->m - m0);
    float *s = lm_cpu_scratch_get(&j->scratch, tid);
    if (!s)
        return;
    uint32_t *bp = (uint32_t *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
    int64_t nq = (nn + NR - 1) / NR;
    uint16_t *row = (uint16_t *)(bp + nq * NR * KC / 2);
    float *tmp = (float *)(row + KC + 2);
    float *c = j->out + m0 * j->n + n0;
    lm_cpu__tile512_start(c, j->n, j->bias ? j->bias + n0 : NULL, mm, nn);
    const uint32_t *xa = (const uint32_t *)(const void *)j->xb;
    int64_t lda = j->kp / 2;
    for (int64_t k0 = 0; k0 < j->kp; k0 += KC) {
        int64_t kcp = LM_MIN(KC, j->kp - k0) / 2;
        pack_b(bp, j, n0, nn, k0, kcp, row, tmp);
        for (int64_t r = 0; r < mm; r += MR) {
            const uint32_t *a = xa + (m0 + r) * lda + k0 / 2;
            int mr = (int)LM_MIN(MR, mm - r);
            for (int64_t q = 0; q < nq; q++)
                micro_kernel(kcp, a, lda, bp + q * kcp * NR, c + r * j->n + q * NR, j->n, mr,
                             (int)LM_MIN(NR, nn - q * NR));
        }
    }
}

lm_status lm_cpu_linear_bf16(const lm_op_call *c, lm_error *err)
{
    bf16_job j = { 0 };
    const lm_tensor *x = c->in[0];
    j.w = c->in[1];
    j.x = lm_cpu_f32(x);
    j.bias = c->in[2] ? lm_cpu_f32(c->in[2]) : NULL;
    j.out = lm_cpu_f32(c->out);
    j.k = x->shape[x->ndim - 1];
    j.n = j.w->shape[0];
    j.m = lm_tensor_numel(x) / j.k; /* the caller handles k == 0 */
    j.kp = (j.k + 1) / 2 * 2;
    j.mp = (j.m + MR - 1) / MR * MR;
    if (j.m == 0 || j.n == 0)
        return LM_OK;
    void *xb_mem = lm_malloc((size_t)(j.mp * j.kp) * 2 + 64);
    if (!xb_mem)
        return lm_cpu_oom(err, "lm_linear");
    j.xb = (uint16_t *)(((uintptr_t)xb_mem + 63) & ~(uintptr_t)63);
    lm_cpu_parallel((size_t)(j.mp / MR), convert_x_task, &j);
    lm_cpu__tile512_cut(j.m, j.n, NR, lm_pool_threads(lm_cpu_pool()), &j.nb, &j.mb, &j.n_panels);
    lm_cpu_scratch_init(&j.scratch, task_scratch_floats(&j));
    size_t tasks = (size_t)(j.n_panels * ((j.m + j.mb - 1) / j.mb));
    lm_cpu_parallel(tasks, bf16_task, &j);
    bool failed = atomic_load(&j.scratch.failed);
    lm_cpu_scratch_free(&j.scratch);
    lm_free(xb_mem);
    return failed ? lm_cpu_oom(err, "lm_linear") : LM_OK;
}

static bool has_bf16;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

/* LOOM_CPU_BASELINE=1 forces the plain build here too (to test the fallback). */
static void detect(void)
{
    const char *env = getenv("LOOM_CPU_BASELINE");
    __builtin_cpu_init();
    has_bf16 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
    if (env && env[0] == '1')
        has_bf16 = false;
}

bool lm_cpu_has_bf16(void)
{
    pthread_once(&detect_once, detect);
    return has_bf16;
}

#else /* not x86-64: no bf16 kernel */

bool lm_cpu_has_bf16(void)
{
    return false;
}

lm_status lm_cpu_linear_bf16(const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(c);
    return lm_errorf(err, LM_EUNSUPPORTED, "unsupported", "lm_linear: no bf16 kernel here");
}

#endif

bool lm_cpu_use_bf16(void)
{
    static atomic_flag told = ATOMIC_FLAG_INIT;
    if (lm_precision_get() != LM_PRECISION_BF16)
        return false;
    if (lm_cpu_has_bf16())
        return true;
    if (!atomic_flag_test_and_set(&told))
        LM_LOG_INFO(
            "tensor",
            "precision bf16: no AVX512-BF16 here (or LOOM_CPU_BASELINE=1); products run in f32");
    return false;
}
