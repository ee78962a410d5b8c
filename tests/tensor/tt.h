/* tests/tensor/tt.h — helpers shared by the tensor tests (and other tests that build small
 * tensors): random tensors whose stored values are known exactly (decoded with the
 * reference decoders, not with dtype.c), tensors from given values, host copies of results,
 * and a comparison that prints the largest difference.
 * Header-only (static inline): the test runner compiles only tests/<area>/test_*.c. */
#ifndef LM_TESTS_TENSOR_TT_H
#define LM_TESTS_TENSOR_TT_H

#include "core/tensor/dtype.h"
#include "core/tensor/ops.h"
#include "core/tensor/tensor.h"
#include "tests/tensor/ref/ref.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>

static inline int64_t tt_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

/* The value a stored element really has, decoded independently of dtype.c. */
static inline float tt_stored_value(const void *data, lm_dtype dtype, int64_t i)
{
    switch (dtype) {
    case LM_DTYPE_F16:
        return (float)ref_f16_decode(((const uint16_t *)data)[i]);
    case LM_DTYPE_BF16:
        return (float)ref_bf16_decode(((const uint16_t *)data)[i]);
    case LM_DTYPE_F8_E4M3:
        return (float)ref_f8e4m3_decode(((const uint8_t *)data)[i]);
    default:
        return ((const float *)data)[i];
    }
}

/* A new contiguous CPU tensor of `dtype` holding uniform values in [lo, hi) rounded to the
 * dtype; *vals (optional) receives a malloc'd f32 copy of the stored values. */
static inline lm_tensor *tt_rand(float **vals, lm_dtype dtype, uint64_t seed, float lo, float hi,
                                 int ndim, const int64_t *shape)
{
    lm_error err;
    lm_tensor *t = NULL;
    int64_t n = tt_numel(ndim, shape);
    if (vals)
        *vals = NULL;
    if (lm_tensor_new(&t, lm_backend_cpu(), dtype, ndim, shape, &err) != LM_OK) {
        test__fail_err(__FILE__, __LINE__, "lm_tensor_new", err.code, &err);
        return NULL;
    }
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ref_fill_uniform(f, n, seed, lo, hi);
    lm_dtype_from_f32(lm_tensor_data(t), f, dtype, (size_t)n);
    for (int64_t i = 0; i < n; i++)
        f[i] = tt_stored_value(lm_tensor_data(t), dtype, i);
    if (vals)
        *vals = f;
    else
        free(f);
    return t;
}

/* A contiguous F32 CPU tensor holding a copy of vals. */
static inline lm_tensor *tt_from(const float *vals, int ndim, const int64_t *shape)
{
    lm_error err;
    lm_tensor *t = NULL;
    if (lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, ndim, shape, &err) != LM_OK)
        return NULL;
    memcpy(lm_tensor_data(t), vals, (size_t)tt_numel(ndim, shape) * sizeof(float));
    return t;
}

/* Compares a result tensor (any dtype/strides/backend) with want[n]; on a mismatch fails
 * the test naming `what`, the worst index and the largest difference. */
static inline bool tt_check_at(const char *file, int line, const char *what, const lm_tensor *got,
                               const float *want, int64_t n, double atol, double rtol)
{
    lm_error err;
    lm_tensor *host = NULL;
    if (!got) {
        test__fail(file, line, "%s: no result tensor", what);
        return false;
    }
    if (lm_tensor_numel(got) != n) {
        char d[96];
        lm_tensor_describe(got, d, sizeof(d));
        test__fail(file, line, "%s: result is %s, expected %lld elements", what, d, (long long)n);
        return false;
    }
    if (lm_tensor_to_f32_host(&host, got, &err) != LM_OK) {
        test__fail_err(file, line, what, err.code, &err);
        return false;
    }
    double max_abs = 0;
    int64_t worst = 0;
    const float *g = lm_tensor_data(host);
    bool ok = ref_allclose(g, want, n, atol, rtol, &max_abs, &worst);
    if (!ok)
        test__fail(file, line,
                   "%s: element %lld is %.9g, expected %.9g (max |diff| %.3g, atol %g "
                   "rtol %g)",
                   what, (long long)worst, (double)g[worst], (double)want[worst], max_abs, atol,
                   rtol);
    else
        test_note("%s: max |diff| %.3g", what, max_abs);
    lm_tensor_free(host);
    return ok;
}
#define tt_check(what, got, want, n, atol, rtol)                                                   \
    tt_check_at(__FILE__, __LINE__, (what), (got), (want), (n), (atol), (rtol))

/* Shape of a tensor equals the expected list. */
static inline bool tt_shape_is(const lm_tensor *t, int ndim, const int64_t *shape)
{
    if (!t || t->ndim != ndim)
        return false;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i])
            return false;
    return true;
}

/* The operands of an op under test, input x, weight w and bias b (each optional), with host
 * copies of their stored values (tt_rand's), and the reference result want (malloc'd);
 * tt_operands_fini frees whatever is set. */
typedef struct {
    lm_tensor *x, *w, *b;
    float *xv, *wv, *bv, *want;
} tt_operands;

static inline void tt_operands_fini(tt_operands *o)
{
    lm_tensor_free(o->x);
    lm_tensor_free(o->w);
    lm_tensor_free(o->b);
    free(o->xv);
    free(o->wv);
    free(o->bv);
    free(o->want);
}

/* lm_linear's operands: x of shape xs[xnd] (F32, last dim K), w [N, K] of dtype wdt and,
 * with bias, b [N] (F32), uniform in [-1, 1) from seeds seed, seed + 1 and seed + 2; want
 * is ref_linear of their stored values, [M, N] with M the product of x's leading dims. */
static inline void tt_linear_operands(tt_operands *o, int xnd, const int64_t *xs, int64_t N,
                                      lm_dtype wdt, bool bias, uint64_t seed)
{
    int64_t K = xs[xnd - 1], M = tt_numel(xnd - 1, xs), ws[2] = { N, K }, bs[1] = { N };
    memset(o, 0, sizeof(*o));
    o->x = tt_rand(&o->xv, LM_DTYPE_F32, seed, -1, 1, xnd, xs);
    o->w = tt_rand(&o->wv, wdt, seed + 1, -1, 1, 2, ws);
    o->b = bias ? tt_rand(&o->bv, LM_DTYPE_F32, seed + 2, -1, 1, 1, bs) : NULL;
    o->want = malloc((size_t)(M * N) * sizeof(float));
    ref_linear(o->want, o->xv, o->wv, o->bv, M, K, N);
}

/* A non-contiguous view with x's values: x is copied into a tensor whose dims 0 and 1
 * are swapped in memory, then permuted back. Caller frees the view (the buffer goes with
 * it). x must have ndim >= 2. */
static inline lm_tensor *tt_strided_copy(const lm_tensor *x)
{
    lm_error err;
    int perm[LM_MAX_DIMS];
    int64_t shape[LM_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        perm[i] = i;
        shape[i] = x->shape[i];
    }
    perm[0] = 1;
    perm[1] = 0;
    shape[0] = x->shape[1];
    shape[1] = x->shape[0];
    lm_tensor *base = NULL, *tview = NULL, *back = NULL;
    if (lm_tensor_new(&base, lm_backend_cpu(), x->dtype, x->ndim, shape, &err) != LM_OK)
        return NULL;
    if (lm_tensor_view_permute(&tview, base, perm, &err) == LM_OK &&
        lm_tensor_copy(tview, x, &err) == LM_OK)
        back = tview;
    else
        lm_tensor_free(tview);
    lm_tensor_free(base);
    return back;
}

#endif
