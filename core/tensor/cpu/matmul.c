/* core/tensor/cpu/matmul.c — linear (x·wᵀ + b) and batched matmul.
 *
 * lm_linear splits the product into panels of output columns (rows of w) and, when there
 * are few panels, blocks of rows of x; each pool task computes one tile. Two tile kernels:
 *   - OpenBLAS: one single-threaded cblas_sgemm per tile. An F32 weight is read in place;
 *     any other weight panel is converted into the task's scratch first (nb x K floats), so
 *     the full weight never exists in f32.
 *   - packed (AVX-512F, picked at run time; LOOM_CPU_BASELINE=1 turns it off): for F16,
 *     BF16 and F8 weights with at least PACKED_MIN_M rows of x. Per block of PK_KC k, the
 *     weight panel is converted straight into f32 micro-panels [k][PK_NR columns] (16 x 16
 *     blocks: load, convert, transpose in registers), then a PK_MR x PK_NR register-blocked
 *     FMA micro-kernel (24 accumulators) reads x in place. Against the OpenBLAS route this
 *     skips a separate conversion pass, OpenBLAS's own packing of the converted panel, and
 *     the re-packing of x for every panel (about 10 % of a step of SD3's MMDiT, whose
 *     products have 300-1200 rows; docs/bench.md). With very few rows the product is bound
 *     by reading the weight, and the plain conversion is cheaper.
 * The bias is written into the output tile first and the products accumulated onto it. */
#include "core/tensor/cpu/cpu.h"
#include "core/tensor/dtype.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include "core/tensor/cpu/tile512.h"

#include <immintrin.h>
#include <pthread.h>
#endif

typedef struct {
    const float *x;
    const lm_tensor *w;
    const float *bias;
    float *out;
    int64_t m, n, k;
    int64_t nb, mb, n_panels;
    lm_cpu_scratch scratch;
} linear_job;

static void linear_task(void *user, size_t task, int tid)
{
    linear_job *j = user;
    int64_t n0 = (int64_t)(task % (size_t)j->n_panels) * j->nb;
    int64_t m0 = (int64_t)(task / (size_t)j->n_panels) * j->mb;
    int64_t nn = LM_MIN(j->nb, j->n - n0), mm = LM_MIN(j->mb, j->m - m0);
    const float *panel;
    if (j->w->dtype == LM_DTYPE_F32) {
        panel = lm_cpu_f32(j->w) + n0 * j->k;
    } else {
        float *s = lm_cpu_scratch_get(&j->scratch, tid);
        if (!s)
            return;
        lm_cpu_weight_rows(s, j->w, n0, n0 + nn, j->k);
        panel = s;
    }
    float *c = j->out + m0 * j->n + n0;
    if (j->bias)
        for (int64_t i = 0; i < mm; i++)
            memcpy(c + i * j->n, j->bias + n0, (size_t)nn * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mm, (int)nn, (int)j->k, 1.0f,
                j->x + m0 * j->k, (int)j->k, panel, (int)j->k, j->bias ? 1.0f : 0.0f, c, (int)j->n);
}

/* OpenBLAS tiles: about three per thread, panels of 32..256 columns (multiples of 16). */
static void linear_tiles(linear_job *j)
{
    int64_t threads = lm_pool_threads(lm_cpu_pool());
    int64_t target = threads * 3;
    int64_t nb = (j->n + target - 1) / target;
    nb = (nb + 15) / 16 * 16;
    nb = LM_MAX(32, LM_MIN(256, nb));
    j->nb = LM_MIN(nb, j->n);
    j->n_panels = (j->n + j->nb - 1) / j->nb;
    int64_t m_blocks = LM_MAX(1, target / j->n_panels);
    m_blocks = LM_MIN(m_blocks, (j->m + 63) / 64);
    j->mb = (j->m + m_blocks - 1) / m_blocks;
}

/* ---- the packed kernel (AVX-512F) ---- */

#define PACKED_MIN_M 32 /* fewer rows of x: the OpenBLAS route */

#if defined(__x86_64__)

#define PK_MR     LM_TILE512_MR /* rows of the micro-kernel */
#define PK_NR     64            /* columns of the micro-kernel: 4 vectors of 16 f32 */
#define PK_KC     256           /* k per packed block: PK_MR x PK_KC of x stay in L1 */
#define PK_TARGET __attribute__((target("avx512f")))

/* r[0..16) holds 16 rows of 16 floats; afterwards r[i] holds column i. */
PK_TARGET static inline void packed_transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
        __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));     // columns 4L+0
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c)); // 4L+1
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d)); // 4L+2
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d)); // 4L+3
    }
    for (int j = 0; j < 4; j++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        __m512 v1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xdd);
        __m512 w0 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xdd);
        r[j] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(v0, w0, 0xdd);
        r[4 + j] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(v1, w1, 0xdd);
    }
}

/* 16 weight rows x 16 k starting at src (rows ld elements apart), as f32, transposed into
 * d (k rows PK_NR floats apart, 64-byte aligned). F16 or BF16. */
PK_TARGET static void packed_pack16(float *d, const void *src, lm_dtype dt, int64_t ld)
{
    __m512 r[16];
    for (int i = 0; i < 16; i++) {
        const uint16_t *row = (const uint16_t *)src + i * ld;
        __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)row);
        r[i] = dt == LM_DTYPE_F16
                   ? _mm512_cvtph_ps(h) /* BF16: the top half of an f32 */
                   : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    packed_transpose16(r);
    for (int i = 0; i < 16; i++)
        _mm512_store_ps(d + i * PK_NR, r[i]);
}

/* Packs weight rows [n0, n0 + nn) x columns [k0, k0 + kc) as f32 micro-panels of PK_NR
 * columns, each [kc][PK_NR]; columns beyond nn are zero. Whole 16 x 16 blocks of F16 or
 * BF16 go through packed_pack16; the rest (F8, edges) element by element (tmp: PK_KC
 * floats). */
PK_TARGET static void packed_pack_b(float *bp, const lm_tensor *w, int64_t k, int64_t n0,
                                    int64_t nn, int64_t k0, int64_t kc, float *tmp)
{
    size_t es = lm_dtype_size(w->dtype);
    const char *base = (const char *)lm_tensor__addr(w);
    bool fast = w->dtype == LM_DTYPE_F16 || w->dtype == LM_DTYPE_BF16;
    int64_t nq = (nn + PK_NR - 1) / PK_NR, kf = fast ? kc / 16 * 16 : 0;
    for (int64_t c = 0; c < nq * PK_NR; c += 16) {
        float *d = bp + (c / PK_NR) * kc * PK_NR + c % PK_NR;
        const char *src = base + (size_t)((n0 + c) * k + k0) * es;
        int64_t cols = LM_MIN(16, nn - c), p0 = cols == 16 ? kf : 0;
        for (int64_t p = 0; p < p0; p += 16)
            packed_pack16(d + p * PK_NR, src + (size_t)p * es, w->dtype, k);
        for (int64_t i = 0; i < 16; i++) {
            if (i >= cols) {
                for (int64_t p = 0; p < kc; p++)
                    d[p * PK_NR + i] = 0.0f;
                continue;
            }
            if (p0 == kc)
                continue;
            lm_dtype_to_f32(tmp, src + (size_t)(i * k + p0) * es, w->dtype, (size_t)(kc - p0));
            for (int64_t p = p0; p < kc; p++)
                d[p * PK_NR + i] = tmp[p - p0];
        }
    }
}

/* c[0..mr)[0..nr) += a[PK_MR rows, kc] · b[kc, PK_NR]; a's rows are lda floats apart; rows
 * mr.. and columns nr.. are computed (b is zero-padded) but not stored. */
PK_TARGET static void packed_kernel(int64_t kc, const float *a, int64_t lda, const float *b,
                                    float *c, int64_t ldc, int mr, int nr)
{
    __m512 acc[PK_MR][4];
    lm_cpu__tile512_zero(acc);
    for (int64_t p = 0; p < kc; p++) {
        const float *bq = b + p * PK_NR;
        __m512 b0 = _mm512_load_ps(bq), b1 = _mm512_load_ps(bq + 16);
        __m512 b2 = _mm512_load_ps(bq + 32), b3 = _mm512_load_ps(bq + 48);
#pragma GCC unroll 8
        for (int i = 0; i < PK_MR; i++) {
            __m512 ai = _mm512_set1_ps(a[i * lda + p]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(ai, b3, acc[i][3]);
        }
    }
    lm_cpu__tile512_add(c, ldc, acc, mr, nr);
}

/* Scratch of one task, in floats: packed panel (64-byte aligned), one converted row, a
 * zero-padded block of the last rows of x. */
static size_t packed_scratch_floats(const linear_job *j)
{
    size_t nq = (size_t)((j->nb + PK_NR - 1) / PK_NR);
    return nq * PK_NR * PK_KC + PK_KC + PK_MR * PK_KC + 16;
}

/* Rows [r, r + PK_MR) of the tile against every micro-panel of one k block. */
PK_TARGET static void packed_rows(const linear_job *j, const float *bp, float *apad, int64_t row,
                                  int64_t k0, int64_t kc, int mr, float *c, int64_t nn)
{
    const float *a = j->x + row * j->k + k0;
    int64_t lda = j->k;
    if (mr < PK_MR) { /* the last rows: a zero-padded copy, so no read runs past x */
        memset(apad, 0, PK_MR * PK_KC * sizeof(float));
        for (int i = 0; i < mr; i++)
            memcpy(apad + i * PK_KC, a + i * lda, (size_t)kc * sizeof(float));
        a = apad;
        lda = PK_KC;
    }
    for (int64_t q = 0; q * PK_NR < nn; q++)
        packed_kernel(kc, a, lda, bp + q * kc * PK_NR, c + q * PK_NR, j->n, mr,
                      (int)LM_MIN(PK_NR, nn - q * PK_NR));
}

PK_TARGET static void packed_task(void *user, size_t task, int tid)
{
    linear_job *j = user;
    int64_t n0 = (int64_t)(task % (size_t)j->n_panels) * j->nb;
    int64_t m0 = (int64_t)(task / (size_t)j->n_panels) * j->mb;
    int64_t nn = LM_MIN(j->nb, j->n - n0), mm = LM_MIN(j->mb, j->m - m0);
    float *s = lm_cpu_scratch_get(&j->scratch, tid);
    if (!s)
        return;
    float *bp = (float *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
    float *tmp = bp + (nn + PK_NR - 1) / PK_NR * PK_NR * PK_KC, *apad = tmp + PK_KC;
    float *c = j->out + m0 * j->n + n0;
    lm_cpu__tile512_start(c, j->n, j->bias ? j->bias + n0 : NULL, mm, nn);
    for (int64_t k0 = 0; k0 < j->k; k0 += PK_KC) {
        int64_t kc = LM_MIN(PK_KC, j->k - k0);
        packed_pack_b(bp, j->w, j->k, n0, nn, k0, kc, tmp);
        for (int64_t r = 0; r < mm; r += PK_MR)
            packed_rows(j, bp, apad, m0 + r, k0, kc, (int)LM_MIN(PK_MR, mm - r), c + r * j->n, nn);
    }
}

static bool has_avx512;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

/* LOOM_CPU_BASELINE=1 turns the packed kernel off (to test the OpenBLAS route). */
static void detect(void)
{
    const char *env = getenv("LOOM_CPU_BASELINE");
    __builtin_cpu_init();
    has_avx512 = __builtin_cpu_supports("avx512f") && !(env && env[0] == '1');
}

static bool use_packed(const linear_job *j)
{
    if (j->w->dtype == LM_DTYPE_F32 || j->m < PACKED_MIN_M)
        return false;
    pthread_once(&detect_once, detect);
    return has_avx512;
}

/* The packed kernel over the whole product; false when it does not apply here. */
static bool run_packed(linear_job *j)
{
    if (!use_packed(j))
        return false;
    lm_cpu__tile512_cut(j->m, j->n, PK_NR, lm_pool_threads(lm_cpu_pool()), &j->nb, &j->mb,
                        &j->n_panels);
    lm_cpu_scratch_init(&j->scratch, packed_scratch_floats(j));
    lm_cpu_parallel((size_t)(j->n_panels * ((j->m + j->mb - 1) / j->mb)), packed_task, j);
    return true;
}

#else /* not x86-64 */

static bool run_packed(linear_job *j)
{
    LM_UNUSED(j);
    return false;
}

#endif

lm_status lm_cpu_linear(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    linear_job j = { 0 };
    const lm_tensor *x = c->in[0];
    j.w = c->in[1];
    j.x = lm_cpu_f32(x);
    j.bias = c->in[2] ? lm_cpu_f32(c->in[2]) : NULL;
    j.out = lm_cpu_f32(c->out);
    j.k = x->shape[x->ndim - 1];
    j.n = j.w->shape[0];
    j.m = j.k ? lm_tensor_numel(x) / j.k : lm_tensor_numel(c->out) / LM_MAX(j.n, 1);
    if (j.k == 0) { /* an empty sum: the bias alone */
        for (int64_t i = 0; i < j.m; i++)
            for (int64_t n = 0; n < j.n; n++)
                j.out[i * j.n + n] = j.bias ? j.bias[n] : 0.0f;
        return LM_OK;
    }
    if (lm_cpu_use_bf16()) /* LM_PRECISION_BF16 (precision.h) */
        return lm_cpu_linear_bf16(c, err);
    if (!run_packed(&j)) {
        linear_tiles(&j);
        lm_cpu_scratch_init(&j.scratch, (size_t)(j.nb * j.k));
        lm_cpu_parallel((size_t)(j.n_panels * ((j.m + j.mb - 1) / j.mb)), linear_task, &j);
    }
    bool failed = atomic_load(&j.scratch.failed);
    lm_cpu_scratch_free(&j.scratch);
    return failed ? lm_cpu_oom(err, "lm_linear") : LM_OK;
}

/* ---- batched matmul ---- */

typedef struct {
    const float *a, *b;
    float *out;
    int64_t batch, m, n, k, mb, m_blocks;
    bool trans_b, b_batched;
} matmul_job;

static void matmul_task(void *user, size_t task, int tid)
{
    LM_UNUSED(tid);
    matmul_job *j = user;
    int64_t bi = (int64_t)task / j->m_blocks, m0 = ((int64_t)task % j->m_blocks) * j->mb;
    int64_t mm = LM_MIN(j->mb, j->m - m0);
    const float *a = j->a + (bi * j->m + m0) * j->k;
    const float *b = j->b + (j->b_batched ? bi * j->k * j->n : 0);
    float *c = j->out + (bi * j->m + m0) * j->n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, j->trans_b ? CblasTrans : CblasNoTrans, (int)mm,
                (int)j->n, (int)j->k, 1.0f, a, (int)j->k, b, j->trans_b ? (int)j->k : (int)j->n,
                0.0f, c, (int)j->n);
}

lm_status lm_cpu_matmul(lm_backend *be, const lm_op_call *c, lm_error *err)
{
    LM_UNUSED(be);
    LM_UNUSED(err);
    const lm_tensor *a = c->in[0], *b = c->in[1];
    matmul_job j = {
        .a = lm_cpu_f32(a),
        .b = lm_cpu_f32(b),
        .out = lm_cpu_f32(c->out),
        .batch = a->shape[0],
        .m = a->shape[1],
        .k = a->shape[2],
        .n = c->out->shape[c->out->ndim - 1],
        .trans_b = c->p.matmul.trans_b,
        .b_batched = b->shape[0] != 1,
    };
    if (j.k == 0) {
        memset(j.out, 0, lm_tensor_nbytes(c->out));
        return LM_OK;
    }
    int64_t threads = lm_pool_threads(lm_cpu_pool());
    j.m_blocks = LM_MAX(1, LM_MIN((threads * 3 + j.batch - 1) / j.batch, (j.m + 31) / 32));
    j.mb = (j.m + j.m_blocks - 1) / j.m_blocks;
    j.m_blocks = (j.m + j.mb - 1) / j.mb;
    lm_cpu_parallel((size_t)(j.batch * j.m_blocks), matmul_task, &j);
    return LM_OK;
}
