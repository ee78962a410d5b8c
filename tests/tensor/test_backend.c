/* tests/tensor/test_backend.c — the op table, every backend's vtable, copies and casts.
 * Every kernel slot of every available backend must be filled (a CUDA backend is checked
 * when one can be created). Copies are checked element by element against values worked
 * out by index arithmetic here, across strides and dtypes. */
#include "core/tensor/backend.h"
#include "core/tensor/cuda/cuda.h"
#include "core/tensor/op.h"
#include "tests/tensor/tt.h"

static void check_table(const lm_backend *be)
{
    const lm_backend_ops *ops = be->ops;
    REQUIRE(ops != NULL);
    CHECK(ops->name != NULL);
    CHECK(ops->buffer_new != NULL);
    CHECK(ops->buffer_free != NULL);
    CHECK(ops->copy != NULL);
    CHECK(ops->sync != NULL);
    for (int op = 0; op < LM_OP_COUNT; op++)
        if (!ops->kernel[op])
            test__fail(__FILE__, __LINE__, "backend %s has no kernel for op %d (%s)", ops->name, op,
                       lm_op_name((lm_op)op));
}

void test_tensor_backend__cpu_fills_every_slot(void)
{
    check_table(lm_backend_cpu());
}

void test_tensor_backend__cuda_fills_every_slot_when_present(void)
{
    lm_backend *cuda = NULL;
    lm_error err;
    if (lm_cuda_backend_new(&cuda, 0, &err) != LM_OK) {
        test_note("no CUDA backend here (%s); CPU only", err.msg);
        return;
    }
    check_table(cuda);
}

void test_tensor_backend__op_table_rows_named_and_unique(void)
{
    for (int op = 0; op < LM_OP_COUNT; op++) {
        const lm_op_info *info = lm_op_info_of((lm_op)op);
        REQUIRE(info != NULL);
        REQUIRE(info->name != NULL);
        CHECK(info->min_in >= 0 && info->min_in <= info->max_in);
        CHECK(info->max_in <= LM_OP_MAX_IN);
        for (int other = 0; other < op; other++)
            CHECK(strcmp(info->name, lm_op_name((lm_op)other)) != 0);
    }
    CHECK(lm_op_info_of(LM_OP_COUNT) == NULL);
    CHECK(lm_op_info_of((lm_op)-1) == NULL);
    CHECK_STR(lm_op_name(LM_OP_LINEAR), "linear");
}

/* x[i][j][k] = 100 i + 10 j + k, so every element names its position. */
static lm_tensor *positional(int64_t a, int64_t b, int64_t c)
{
    int64_t shape[3] = { a, b, c };
    float *v = malloc((size_t)(a * b * c) * sizeof(float));
    for (int64_t i = 0; i < a; i++)
        for (int64_t j = 0; j < b; j++)
            for (int64_t k = 0; k < c; k++)
                v[(i * b + j) * c + k] = (float)(100 * i + 10 * j + k);
    lm_tensor *t = tt_from(v, 3, shape);
    free(v);
    return t;
}

void test_tensor_backend__copy_permuted_view_casts_to_f16(void)
{
    lm_error err;
    lm_tensor *x = positional(3, 4, 5), *p = NULL, *h = NULL, *back = NULL;
    int perm[3] = { 2, 0, 1 }; /* [5, 3, 4]: p[k][i][j] = x[i][j][k] */
    REQUIRE_OK(lm_tensor_view_permute(&p, x, perm, &err), &err);
    CHECK(!lm_tensor_is_contiguous(p));
    REQUIRE_OK(lm_tensor_cast(&h, p, LM_DTYPE_F16, &err), &err);
    CHECK_INT(h->dtype, LM_DTYPE_F16);
    CHECK(lm_tensor_is_contiguous(h));
    REQUIRE_OK(lm_tensor_to_f32_host(&back, h, &err), &err);
    const float *b = lm_tensor_data(back);
    int bad = 0;
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++)
                bad += b[(k * 3 + i) * 4 + j] != (float)(100 * i + 10 * j + k);
    CHECK_INT(bad, 0);
    lm_tensor_free(back);
    lm_tensor_free(h);
    lm_tensor_free(p);
    lm_tensor_free(x);
}

void test_tensor_backend__copy_into_strided_slice(void)
{
    lm_error err;
    int64_t shape[3] = { 2, 6, 5 };
    lm_tensor *dst = NULL, *slice = NULL, *src = positional(2, 3, 5);
    REQUIRE_OK(lm_tensor_zeros(&dst, lm_backend_cpu(), LM_DTYPE_F32, 3, shape, &err), &err);
    REQUIRE_OK(lm_tensor_view_slice(&slice, dst, 1, 2, 5, &err), &err); /* rows 2..4 */
    REQUIRE_OK(lm_tensor_copy(slice, src, &err), &err);
    const float *d = lm_tensor_data(dst);
    int bad = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 6; j++)
            for (int k = 0; k < 5; k++) {
                float want = (j >= 2 && j < 5) ? (float)(100 * i + 10 * (j - 2) + k) : 0.0f;
                bad += d[(i * 6 + j) * 5 + k] != want;
            }
    CHECK_INT(bad, 0);
    lm_tensor_free(slice);
    lm_tensor_free(dst);
    lm_tensor_free(src);
}

void test_tensor_backend__cast_roundtrip_every_float_dtype(void)
{
    lm_error err;
    int64_t shape[2] = { 7, 9 };
    float *vals;
    lm_tensor *x = tt_rand(&vals, LM_DTYPE_F32, 3, -300.0f, 300.0f, 2, shape);
    REQUIRE(x);
    lm_dtype dts[3] = { LM_DTYPE_F16, LM_DTYPE_BF16, LM_DTYPE_F8_E4M3 };
    for (int d = 0; d < 3; d++) {
        lm_tensor *c = NULL;
        REQUIRE_OK(lm_tensor_cast(&c, x, dts[d], &err), &err);
        float want[63];
        for (int i = 0; i < 63; i++) { /* the independent encoders where we have them */
            if (dts[d] == LM_DTYPE_F16)
                want[i] = (float)ref_f16_decode(ref_f16_encode(vals[i]));
            else if (dts[d] == LM_DTYPE_F8_E4M3)
                want[i] = (float)ref_f8e4m3_decode(ref_f8e4m3_encode_sat(vals[i]));
            else
                want[i] = (float)ref_bf16_decode(lm_f32_to_bf16(vals[i]));
        }
        tt_check(lm_dtype_name(dts[d]), c, want, 63, 0, 0);
        lm_tensor_free(c);
    }
    lm_tensor_free(x);
    free(vals);
}

void test_tensor_backend__contiguous_and_to_backend(void)
{
    lm_error err;
    lm_tensor *x = positional(2, 3, 4), *p = NULL, *c = NULL, *t = NULL;
    int perm[3] = { 0, 2, 1 };
    REQUIRE_OK(lm_tensor_view_permute(&p, x, perm, &err), &err);
    REQUIRE_OK(lm_tensor_contiguous(&c, p, &err), &err);
    CHECK(lm_tensor_is_contiguous(c));
    CHECK(c->buffer != x->buffer);
    REQUIRE_OK(lm_tensor_to(&t, c, lm_backend_cpu(), &err), &err);
    const float *v = lm_tensor_data(t);
    CHECK_NEAR(v[1], 10.0, 0); /* [0][0][1] of the permuted view = x[0][1][0] */
    CHECK_NEAR(v[3], 1.0, 0);  /* [0][1][0] = x[0][0][1] */
    CHECK_NEAR(v[12], 100.0, 0);
    CHECK_OK(lm_backend_sync(lm_backend_cpu(), &err), &err);
    CHECK_STR(lm_backend_name(lm_backend_cpu()), "cpu");
    lm_tensor_free(t);
    lm_tensor_free(c);
    lm_tensor_free(p);
    lm_tensor_free(x);
}

void test_tensor_backend__copy_shape_mismatch_is_an_error(void)
{
    lm_error err;
    lm_tensor *a = positional(2, 3, 4), *b = positional(2, 4, 3);
    lm_status st = lm_tensor_copy(a, b, &err);
    CHECK(st != LM_OK);
    CHECK(err.msg[0] != 0);
    lm_tensor_free(a);
    lm_tensor_free(b);
}

void test_tensor_backend__fill(void)
{
    lm_error err;
    int64_t shape[2] = { 3, 37 };
    lm_tensor *t = NULL;
    REQUIRE_OK(lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 2, shape, &err), &err);
    REQUIRE_OK(lm_fill(t, -2.5f, &err), &err);
    float want[111];
    for (int i = 0; i < 111; i++)
        want[i] = -2.5f;
    tt_check("fill", t, want, 111, 0, 0);
    lm_tensor_free(t);
}
