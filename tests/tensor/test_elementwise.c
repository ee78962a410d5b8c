/* tests/tensor/test_elementwise.c — activations, broadcast arithmetic, scale/clamp and the
 * adaLN helpers (modulate, gated residual) against double-precision references, on odd
 * lengths, one element, non-contiguous and F16 inputs. */
#include "tests/tensor/tt.h"

typedef lm_status (*unary_fn)(lm_tensor **, const lm_tensor *, lm_error *);

static void unary_case(const char *what, unary_fn fn, ref_unary_kind kind, int64_t n, lm_dtype dt,
                       float lo, float hi, bool strided)
{
    lm_error err;
    int64_t s2[2] = { 3, n };
    float *xv;
    lm_tensor *x = tt_rand(&xv, dt, 71, lo, hi, 2, s2);
    lm_tensor *xin = strided ? tt_strided_copy(x) : x, *y = NULL;
    float *want = malloc((size_t)(3 * n) * sizeof(float));
    ref_unary(want, xv, 3 * n, kind);
    CHECK_OK(fn(&y, xin, &err), &err);
    CHECK(tt_shape_is(y, 2, s2));
    tt_check(what, y, want, 3 * n, 1e-6, 2e-6);
    lm_tensor_free(y);
    if (xin != x)
        lm_tensor_free(xin);
    lm_tensor_free(x);
    free(xv);
    free(want);
}

void test_tensor_elementwise__activations(void)
{
    unary_case("gelu (erf)", lm_gelu, REF_GELU, 1001, LM_DTYPE_F32, -8, 8, false);
    unary_case("gelu (tanh)", lm_gelu_tanh, REF_GELU_TANH, 1001, LM_DTYPE_F32, -8, 8, false);
    unary_case("quick_gelu", lm_quick_gelu, REF_QUICK_GELU, 1001, LM_DTYPE_F32, -8, 8, false);
    unary_case("silu", lm_silu, REF_SILU, 1001, LM_DTYPE_F32, -20, 20, false);
    unary_case("exp", lm_exp, REF_EXP, 257, LM_DTYPE_F32, -30, 30, false);
    unary_case("silu one element", lm_silu, REF_SILU, 1, LM_DTYPE_F32, -1, 1, false);
    unary_case("gelu strided", lm_gelu, REF_GELU, 17, LM_DTYPE_F32, -4, 4, true);
    unary_case("gelu_tanh f16 input", lm_gelu_tanh, REF_GELU_TANH, 63, LM_DTYPE_F16, -4, 4, false);
}

/* erf-GELU and tanh-GELU differ by ~1e-3 around |x| ~ 2: the tests above must tell them
 * apart, or a swapped kernel would pass. */
void test_tensor_elementwise__gelu_forms_are_distinguishable(void)
{
    float x[1] = { 2.0f }, a[1], b[1];
    ref_unary(a, x, 1, REF_GELU);
    ref_unary(b, x, 1, REF_GELU_TANH);
    CHECK(fabs((double)a[0] - (double)b[0]) > 1e-5);
}

typedef lm_status (*binary_fn)(lm_tensor **, const lm_tensor *, const lm_tensor *, lm_error *);

static void binary_case(const char *what, binary_fn fn, ref_binary_kind kind, int an,
                        const int64_t *ash, int bn, const int64_t *bsh, bool strided_a)
{
    lm_error err;
    float *av, *bv;
    lm_tensor *a = tt_rand(&av, LM_DTYPE_F32, 81, -2, 2, an, ash);
    lm_tensor *b = tt_rand(&bv, LM_DTYPE_F32, 82, -2, 2, bn, bsh);
    lm_tensor *ain = strided_a ? tt_strided_copy(a) : a, *y = NULL;
    int64_t os[8];
    int on = ref_broadcast_shape(os, ash, an, bsh, bn);
    REQUIRE(on > 0);
    int64_t n = tt_numel(on, os);
    float *want = malloc((size_t)n * sizeof(float));
    ref_binary(want, os, on, av, ash, an, bv, bsh, bn, kind);
    CHECK_OK(fn(&y, ain, b, &err), &err);
    CHECK(tt_shape_is(y, on, os));
    tt_check(what, y, want, n, 1e-6, 1e-6);
    lm_tensor_free(y);
    if (ain != a)
        lm_tensor_free(ain);
    lm_tensor_free(a);
    lm_tensor_free(b);
    free(av);
    free(bv);
    free(want);
}

void test_tensor_elementwise__broadcast_arithmetic(void)
{
    int64_t s234[3] = { 2, 3, 4 }, s4[1] = { 4 }, s214[3] = { 2, 1, 4 }, s31[2] = { 3, 1 };
    int64_t s1[1] = { 1 }, s55[2] = { 5, 5 }, s1c[4] = { 1, 8, 1, 1 }, snc[4] = { 2, 8, 3, 5 };
    binary_case("add bias-like [2,3,4]+[4]", lm_add, REF_ADD, 3, s234, 1, s4, false);
    binary_case("mul [2,1,4]*[3,1]", lm_mul, REF_MUL, 3, s214, 2, s31, false);
    binary_case("sub [1]-[5,5]", lm_sub, REF_SUB, 1, s1, 2, s55, false);
    binary_case("add same shape strided", lm_add, REF_ADD, 3, s234, 3, s234, true);
    binary_case("add per-channel [2,8,3,5]+[1,8,1,1]", lm_add, REF_ADD, 4, snc, 4, s1c, false);
    binary_case("mul one element", lm_mul, REF_MUL, 1, s1, 1, s1, false);
}

void test_tensor_elementwise__broadcast_error(void)
{
    lm_error err;
    int64_t a[2] = { 2, 3 }, b[2] = { 2, 4 };
    lm_tensor *x = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 2, a);
    lm_tensor *z = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 2, b), *y = NULL;
    CHECK_INT(lm_add(&y, x, z, &err), LM_EINVAL);
    CHECK(y == NULL);
    lm_tensor_free(x);
    lm_tensor_free(z);
}

void test_tensor_elementwise__scale_and_clamp(void)
{
    lm_error err;
    int64_t s[1] = { 513 };
    float *xv;
    lm_tensor *x = tt_rand(&xv, LM_DTYPE_F32, 91, -5, 5, 1, s), *y = NULL, *z = NULL;
    float want[513], wantc[513];
    for (int i = 0; i < 513; i++) {
        want[i] = (float)((double)xv[i] * 1.5305 + -0.0609 * 1.5305);
        wantc[i] = xv[i] < -1 ? -1.0f : xv[i] > 2 ? 2.0f : xv[i];
    }
    CHECK_OK(lm_scale(&y, x, 1.5305f, -0.0609f * 1.5305f, &err), &err);
    tt_check("scale x*a+b", y, want, 513, 1e-6, 1e-6);
    CHECK_OK(lm_clamp(&z, x, -1, 2, &err), &err);
    tt_check("clamp [-1, 2]", z, wantc, 513, 0, 0);
    lm_tensor_free(y);
    lm_tensor_free(z);
    lm_tensor_free(x);
    free(xv);
}

/* shift/scale/gate given as [B, C] and as [B, 1, C]. */
void test_tensor_elementwise__modulate_and_gated_add(void)
{
    lm_error err;
    int64_t B = 2, N = 37, C = 48;
    int64_t xs[3] = { B, N, C }, ps[2] = { B, C }, ps3[3] = { B, 1, C };
    float *xv, *sv, *cv, *yv;
    lm_tensor *x = tt_rand(&xv, LM_DTYPE_F32, 101, -2, 2, 3, xs);
    lm_tensor *v = tt_rand(&yv, LM_DTYPE_F32, 102, -2, 2, 3, xs);
    lm_tensor *shift = tt_rand(&sv, LM_DTYPE_F32, 103, -1, 1, 2, ps);
    lm_tensor *scale = tt_rand(&cv, LM_DTYPE_F32, 104, -1, 1, 2, ps);
    lm_tensor *scale3 = NULL, *m = NULL, *m3 = NULL, *g = NULL;
    float *want = malloc((size_t)(B * N * C) * sizeof(float));
    ref_modulate(want, xv, sv, cv, B, N, C);
    CHECK_OK(lm_modulate(&m, x, shift, scale, &err), &err);
    tt_check("modulate [B,C]", m, want, B * N * C, 1e-6, 1e-6);
    REQUIRE_OK(lm_tensor_view_reshape(&scale3, scale, 3, ps3, &err), &err);
    CHECK_OK(lm_modulate(&m3, x, shift, scale3, &err), &err);
    tt_check("modulate [B,1,C]", m3, want, B * N * C, 1e-6, 1e-6);
    ref_gated_add(want, xv, cv, yv, B, N, C);
    CHECK_OK(lm_gated_add(&g, x, scale, v, &err), &err);
    tt_check("gated_add", g, want, B * N * C, 1e-6, 1e-6);
    lm_tensor *tmp[] = { x, v, shift, scale, scale3, m, m3, g };
    for (size_t i = 0; i < sizeof(tmp) / sizeof(tmp[0]); i++)
        lm_tensor_free(tmp[i]);
    free(xv);
    free(sv);
    free(cv);
    free(yv);
    free(want);
}
