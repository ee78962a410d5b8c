/* tests/base/test_error.c — error formatting, diag lists, strings, paths, arena, pool. */
#include "core/base/alloc.h"
#include "core/base/arena.h"
#include "core/base/error.h"
#include "core/base/hash.h"
#include "core/base/str.h"
#include "core/base/thread.h"
#include "tests/test.h"

#include <stdatomic.h>
#include <stdlib.h>

void test_base_error__format_with_file_and_node(void)
{
    lm_error err;
    lm_errorf(&err, LM_ERANGE, "value_smaller_than_min", "0 is below the minimum 1");
    lm_error_hint(&err, "set steps to 1 or more");
    lm_error_at_node(&err, "sample", "KSampler", "steps");
    lm_error_at_file(&err, "flow.yaml", 14, 12);
    char buf[512];
    lm_error_format(&err, buf, sizeof(buf));
    CHECK_STR(buf, "flow.yaml:14:12: node \"sample\" (KSampler) input \"steps\": 0 is below the "
                   "minimum 1; set steps to 1 or more.");
}

void test_base_error__lowest_place_wins(void)
{
    lm_error err;
    lm_errorf(&err, LM_EFORMAT, NULL, "bad");
    lm_error_at_file(&err, "inner.yaml", 3, 4);
    lm_error_at_file(&err, "outer.yaml", 1, 1);
    CHECK_STR(err.file, "inner.yaml");
    CHECK_INT(err.line, 3);
}

void test_base_error__diag_collects(void)
{
    lm_diag diag;
    lm_diag_init(&diag);
    for (int i = 0; i < 20; i++)
        lm_diag_addf(&diag, LM_EINVAL, "k", "problem %d", i);
    CHECK_INT(diag.count, 20);
    CHECK_STR(diag.items[19].msg, "problem 19");
    lm_diag_fini(&diag);
    CHECK_INT(diag.count, 0);
}

void test_base_str__confinement(void)
{
    CHECK(lm_path_is_confined("a.png"));
    CHECK(lm_path_is_confined("sub/a.png"));
    CHECK(!lm_path_is_confined("../a.png"));
    CHECK(!lm_path_is_confined("sub/../../a.png"));
    CHECK(!lm_path_is_confined("/etc/passwd"));
    CHECK(!lm_path_is_confined(""));
    CHECK(!lm_path_is_confined("a\\..\\b"));
    CHECK(!lm_path_is_confined("a//b"));
    CHECK(lm_path_is_confined("..a/b.."));
}

void test_base_str__edit_distance(void)
{
    CHECK_INT(lm_str_edit_distance("KSampler", "KSampler", 10), 0);
    CHECK_INT(lm_str_edit_distance("KSampelr", "KSampler", 10), 2);
    CHECK_INT(lm_str_edit_distance("ksampler", "KSampler", 10), 0);
    CHECK_INT(lm_str_edit_distance("abc", "xyzxyzxyz", 5), 5);
}

void test_base_str__append_and_json(void)
{
    lm_str s;
    lm_str_init(&s);
    lm_str_appendf(&s, "%d-", 42);
    lm_str_append_json(&s, "a\"b\n\x01");
    CHECK_STR(lm_str_cstr(&s), "42-\"a\\\"b\\n\\u0001\"");
    lm_str_fini(&s);
}

void test_base_alloc__fail_after(void)
{
    lm_alloc_fail_after(1);
    void *a = lm_malloc(8);
    void *b = lm_malloc(8);
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK_INT(lm_alloc_failures(), 1);
    lm_alloc_fail_after(-1);
    lm_free(a);
}

void test_base_arena__marks_and_peak(void)
{
    lm_arena *arena;
    lm_error err;
    REQUIRE_OK(lm_arena_new(&arena, 1 << 16, &err), &err);
    void *a = lm_arena_alloc(arena, 1000, 64);
    CHECK(a != NULL && ((uintptr_t)a % 64) == 0);
    size_t mark = lm_arena_mark(arena);
    CHECK(lm_arena_alloc(arena, 30000, 16) != NULL);
    CHECK(lm_arena_alloc(arena, 1 << 16, 16) == NULL);
    lm_arena_reset_to(arena, mark);
    CHECK_INT(lm_arena_used(arena), mark);
    CHECK(lm_arena_peak(arena) >= 31000);
    lm_arena_free(arena);
}

static void add_index(void *user, size_t i, int tid)
{
    (void)tid;
    atomic_fetch_add((_Atomic long *)user, (long)i);
}

void test_base_thread__pool_runs_every_index(void)
{
    lm_pool *pool;
    lm_error err;
    REQUIRE_OK(lm_pool_new(&pool, 3, &err), &err);
    for (int rep = 0; rep < 50; rep++) {
        _Atomic long sum = 0;
        lm_pool_run(pool, 1000, add_index, &sum);
        CHECK_INT(sum, 999 * 1000 / 2);
    }
    lm_pool_free(pool);
}

void test_base_hash__typed_fields_differ(void)
{
    lm_hasher a, b;
    lm_hasher_init(&a, 0);
    lm_hasher_str(&a, "1");
    lm_hasher_init(&b, 0);
    lm_hasher_u64(&b, 1);
    CHECK(lm_hasher_digest(&a) != lm_hasher_digest(&b));
    lm_hasher_init(&b, 0);
    lm_hasher_str(&b, "1");
    CHECK(lm_hasher_digest(&a) == lm_hasher_digest(&b));
}
