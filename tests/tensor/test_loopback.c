/* tests/tensor/test_loopback.c — the loopback device: the CPU's kernels behind a device
 * boundary, used to run every GPU code path on a machine without a GPU. Checks that its
 * tensors behave like device tensors (no host pointer, no mixing with CPU tensors), that
 * results equal the CPU's bit for bit, that a sized loopback runs out of memory the way a
 * full GPU does, and how tensors move to and from it (lm_tensor_move, lm_tensor_on). */
#include "core/tensor/ops.h"
#include "core/tensor/tensor.h"
#include "tests/tensor/tt.h"
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>

static lm_tensor *to(const lm_tensor *t, lm_backend *be)
{
    lm_error err;
    lm_tensor *out = NULL;
    CHECK_OK(lm_tensor_to(&out, t, be, &err), &err);
    return out;
}

static bool same_bits(const lm_tensor *a, const lm_tensor *b)
{
    lm_error err;
    lm_tensor *ha = NULL, *hb = NULL;
    bool same = lm_tensor_to_f32_host(&ha, a, &err) == LM_OK &&
                lm_tensor_to_f32_host(&hb, b, &err) == LM_OK &&
                lm_tensor_numel(ha) == lm_tensor_numel(hb) &&
                memcmp(lm_tensor_data(ha), lm_tensor_data(hb),
                       (size_t)lm_tensor_numel(ha) * sizeof(float)) == 0;
    lm_tensor_free(ha);
    lm_tensor_free(hb);
    return same;
}

void test_tensor_loopback__selected_by_name_and_not_host(void)
{
    lm_error err;
    lm_backend *be = NULL;
    REQUIRE_OK(lm_backend_select(&be, "loopback", &err), &err);
    CHECK(be == lm_backend_loopback());
    CHECK(!lm_backend_is_host(be));
    CHECK_STR(lm_backend_name(be), "loopback");
    int64_t shape[] = { 3, 5 };
    lm_tensor *t = NULL;
    REQUIRE_OK(lm_tensor_zeros(&t, be, LM_DTYPE_F32, 2, shape, &err), &err);
    CHECK(lm_tensor_data(t) == NULL); /* a device tensor has no host pointer */
    CHECK(lm_tensor_backend(t) == be);
    lm_tensor_free(t);
}

void test_tensor_loopback__refuses_to_mix_with_cpu_tensors(void)
{
    int64_t shape[] = { 4, 8 };
    lm_tensor *a = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 2, shape);
    lm_tensor *b = tt_rand(NULL, LM_DTYPE_F32, 2, -1, 1, 2, shape);
    lm_tensor *db = to(b, lm_backend_loopback()), *out = NULL;
    lm_error err;
    CHECK_INT(lm_add(&out, a, db, &err), LM_EINVAL);
    CHECK_STR(err.kind, "wrong_backend");
    CHECK_CONTAINS(err.msg, "loopback");
    CHECK(out == NULL);
    lm_tensor_free(a);
    lm_tensor_free(b);
    lm_tensor_free(db);
}

void test_tensor_loopback__results_equal_the_cpu_bit_for_bit(void)
{
    lm_error err;
    lm_backend *lb = lm_backend_loopback();
    int64_t xs[] = { 2, 37, 64 }, ws[] = { 48, 64 }, bs[] = { 48 };
    lm_tensor *x = tt_rand(NULL, LM_DTYPE_F32, 3, -1, 1, 3, xs);
    lm_tensor *w = tt_rand(NULL, LM_DTYPE_BF16, 4, -0.2f, 0.2f, 2, ws);
    lm_tensor *b = tt_rand(NULL, LM_DTYPE_F32, 5, -1, 1, 1, bs);
    lm_tensor *dx = to(x, lb), *dw = to(w, lb), *db = to(b, lb);
    lm_tensor *y = NULL, *dy = NULL;
    REQUIRE_OK(lm_linear(&y, x, w, b, &err), &err);
    REQUIRE_OK(lm_linear(&dy, dx, dw, db, &err), &err);
    CHECK(lm_tensor_backend(dy) == lb);
    CHECK(lm_tensor_backend(w) == lm_backend_cpu());
    CHECK(same_bits(y, dy));
    /* A weight kept in its stored dtype crosses unchanged. */
    CHECK_INT(dw->dtype, LM_DTYPE_BF16);
    lm_tensor *s = NULL, *ds = NULL;
    REQUIRE_OK(lm_silu(&s, y, &err), &err);
    REQUIRE_OK(lm_silu(&ds, dy, &err), &err);
    CHECK(same_bits(s, ds));
    lm_tensor *back = to(ds, lm_backend_cpu());
    REQUIRE(back);
    CHECK(lm_tensor_data(back) != NULL);
    CHECK(same_bits(s, back));
    lm_tensor *list[] = { x, w, b, dx, dw, db, y, dy, s, ds, back };
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)
        lm_tensor_free(list[i]);
}

void test_tensor_loopback__sized_device_runs_out_of_memory(void)
{
    setenv("LOOM_LOOPBACK_MEMORY", "1M", 1);
    lm_error err;
    lm_backend *lb = lm_backend_loopback();
    size_t free_bytes = 0, total = 0;
    REQUIRE_OK(lm_backend_mem_info(lb, &free_bytes, &total, &err), &err);
    CHECK_INT(total, 1 << 20);
    CHECK_INT(free_bytes, 1 << 20);
    int64_t small[] = { 64, 1024 }, big[] = { 512, 1024 }; /* 256 KiB, 2 MiB of f32 */
    lm_tensor *a = NULL, *b = NULL;
    REQUIRE_OK(lm_tensor_new(&a, lb, LM_DTYPE_F32, 2, small, &err), &err);
    REQUIRE_OK(lm_backend_mem_info(lb, &free_bytes, &total, &err), &err);
    CHECK_INT(free_bytes, (1 << 20) - (256 << 10));
    CHECK_INT(lm_tensor_new(&b, lb, LM_DTYPE_F32, 2, big, &err), LM_ENOMEM);
    CHECK_CONTAINS(err.msg, "loopback device");
    CHECK(b == NULL);
    lm_tensor_free(a);
    unsetenv("LOOM_LOOPBACK_MEMORY");
}

void test_tensor_loopback__move_replaces_the_tensor_by_its_copy(void)
{
    lm_error err;
    lm_backend *lb = lm_backend_loopback();
    int64_t shape[] = { 3, 17 };
    lm_tensor *t = tt_rand(NULL, LM_DTYPE_BF16, 6, -1, 1, 2, shape), *none = NULL;
    lm_tensor *orig = to(t, lm_backend_cpu()), *was = t;
    REQUIRE(orig);
    CHECK_OK(lm_tensor_move(&none, lb, &err), &err); /* NULL stays NULL */
    CHECK(none == NULL);
    CHECK_OK(lm_tensor_move(&t, lm_backend_cpu(), &err), &err); /* already there */
    CHECK(t == was);
    REQUIRE_OK(lm_tensor_move(&t, lb, &err), &err);
    REQUIRE(t != NULL);
    CHECK(lm_tensor_backend(t) == lb);
    CHECK_INT(t->dtype, LM_DTYPE_BF16); /* same dtype: a weight crosses as stored */
    CHECK(same_bits(orig, t));
    REQUIRE_OK(lm_tensor_move(&t, lm_backend_cpu(), &err), &err);
    CHECK(lm_tensor_data(t) != NULL);
    CHECK(same_bits(orig, t));
    lm_tensor_free(t);
    lm_tensor_free(orig);
}

void test_tensor_loopback__failed_move_frees_the_tensor(void)
{
    setenv("LOOM_LOOPBACK_MEMORY", "1M", 1);
    lm_error err;
    int64_t big[] = { 512, 1024 }; /* 2 MiB of f32 */
    lm_tensor *t = NULL;
    REQUIRE_OK(lm_tensor_zeros(&t, lm_backend_cpu(), LM_DTYPE_F32, 2, big, &err), &err);
    CHECK_INT(lm_tensor_move(&t, lm_backend_loopback(), &err), LM_ENOMEM);
    CHECK_CONTAINS(err.msg, "loopback device");
    CHECK(t == NULL); /* freed: callers free *t again on their error path */
    unsetenv("LOOM_LOOPBACK_MEMORY");
}

void test_tensor_loopback__on_uses_or_copies_an_input(void)
{
    lm_error err;
    lm_backend *lb = lm_backend_loopback();
    int64_t shape[] = { 2, 9 };
    lm_tensor *h = tt_rand(NULL, LM_DTYPE_F16, 7, -1, 1, 2, shape), *d = to(h, lb);
    lm_tensor *copy = h; /* set to NULL when nothing is copied */
    REQUIRE(d);
    CHECK_OK(lm_tensor_on(&copy, h, lm_backend_cpu(), "x", &err), &err); /* host on host */
    CHECK(copy == NULL);
    copy = h;
    CHECK_OK(lm_tensor_on(&copy, d, lb, "x", &err), &err); /* already on the device */
    CHECK(copy == NULL);
    REQUIRE_OK(lm_tensor_on(&copy, h, lb, "x", &err), &err); /* host to the device */
    REQUIRE(copy != NULL);
    CHECK(copy != h);
    CHECK(lm_tensor_backend(copy) == lb);
    CHECK(lm_tensor_backend(h) == lm_backend_cpu());
    CHECK_INT(copy->dtype, LM_DTYPE_F16);
    CHECK(same_bits(h, copy));
    lm_tensor_free(copy);
    lm_tensor_free(d);
    lm_tensor_free(h);
}

void test_tensor_loopback__on_refuses_a_tensor_on_another_device(void)
{
    lm_error err;
    int64_t shape[] = { 4 };
    lm_tensor *h = tt_rand(NULL, LM_DTYPE_F32, 8, -1, 1, 1, shape);
    lm_tensor *d = to(h, lm_backend_loopback()), *copy = h;
    REQUIRE(d);
    CHECK_INT(lm_tensor_on(&copy, d, lm_backend_cpu(), "MMDiT: pooled y", &err), LM_EINVAL);
    CHECK(copy == NULL);
    CHECK_INT(err.code, LM_EINVAL);
    CHECK_STR(err.kind, "wrong_backend");
    CHECK_STR(err.msg, "MMDiT: pooled y is on loopback but the model computes on cpu");
    CHECK_STR(err.hint, "pass host tensors, or tensors on the model's device");
    lm_tensor_free(d);
    lm_tensor_free(h);
}

void test_tensor_loopback__cpu_reports_its_memory(void)
{
    lm_error err;
    size_t free_bytes = 0, total = 0;
    REQUIRE_OK(lm_backend_mem_info(lm_backend_cpu(), &free_bytes, &total, &err), &err);
    CHECK(total >= ((size_t)64 << 20)); /* any machine that runs the tests has 64 MiB */
    CHECK(free_bytes > 0);
}
