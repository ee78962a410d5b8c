/* tests/exec/test_cache.c — the output cache: references, LRU order, protection of the
 * running job's entries, the byte budget, UI output copies. */
#include "core/base/alloc.h"
#include "core/cache.h"
#include "tests/test.h"

static size_t int_bytes(void)
{
    lm_value *v = lm_value_int(0);
    size_t n = lm_value_bytes(v);
    lm_value_unref(v);
    return n;
}

static void put_int(lm_cache *c, uint64_t key, int64_t x)
{
    lm_value *v = lm_value_int(x);
    lm_error err;
    CHECK_OK(lm_cache_put(c, key, &v, 1, NULL, &err), &err);
    lm_value_unref(v); /* the cache holds its own reference */
}

static int64_t get_int(lm_cache *c, uint64_t key)
{
    lm_value *v = NULL;
    if (!lm_cache_get(c, key, &v, 1, NULL))
        return -1;
    int64_t x = lm_value_as_int(v);
    lm_value_unref(v);
    return x;
}

void test_exec_cache__put_get_and_references(void)
{
    lm_cache *c = NULL;
    lm_error err;
    REQUIRE_OK(lm_cache_new(&c, 1 << 20, &err), &err);
    put_int(c, 42, 7);
    CHECK_INT(get_int(c, 42), 7);
    CHECK_INT(get_int(c, 43), -1);
    CHECK(lm_cache_contains(c, 42));
    lm_value *two[2] = { 0 };
    CHECK(!lm_cache_get(c, 42, two, 2, NULL)); /* another output count is a miss */
    CHECK_INT(lm_cache_count(c), 1);
    CHECK_INT(lm_cache_bytes(c), int_bytes());
    put_int(c, 42, 9); /* an existing key is kept as it is */
    CHECK_INT(get_int(c, 42), 7);
    lm_cache_clear(c);
    CHECK_INT(lm_cache_count(c), 0);
    CHECK_INT(lm_cache_bytes(c), 0);
    CHECK_INT(get_int(c, 42), -1);
    lm_cache_free(c);
}

void test_exec_cache__ui_json_is_copied(void)
{
    lm_cache *c = NULL;
    lm_error err;
    REQUIRE_OK(lm_cache_new(&c, 1 << 20, &err), &err);
    char ui[] = "{\"images\":[]}";
    CHECK_OK(lm_cache_put(c, 1, NULL, 0, ui, &err), &err);
    ui[0] = 'X';
    char *got = NULL;
    CHECK(lm_cache_get(c, 1, NULL, 0, &got));
    CHECK_STR(got, "{\"images\":[]}");
    lm_free(got);
    lm_cache_free(c);
}

void test_exec_cache__lru_evicts_least_recently_used(void)
{
    lm_cache *c = NULL;
    lm_error err;
    REQUIRE_OK(lm_cache_new(&c, 2 * int_bytes(), &err), &err);
    put_int(c, 1, 10);
    put_int(c, 2, 20);
    CHECK_INT(get_int(c, 1), 10); /* 1 is now more recent than 2 */
    put_int(c, 3, 30);
    CHECK_INT(get_int(c, 2), -1);
    CHECK_INT(get_int(c, 1), 10);
    CHECK_INT(get_int(c, 3), 30);
    CHECK(lm_cache_bytes(c) <= lm_cache_budget(c));
    lm_cache_free(c);
}

void test_exec_cache__running_entries_are_protected(void)
{
    lm_cache *c = NULL;
    lm_error err;
    REQUIRE_OK(lm_cache_new(&c, 2 * int_bytes(), &err), &err);
    put_int(c, 100, 1); /* from an earlier run: may be evicted */
    lm_cache_begin_run(c);
    put_int(c, 1, 10);
    put_int(c, 2, 20);
    put_int(c, 3, 30);
    CHECK_INT(get_int(c, 100), -1);
    CHECK_INT(lm_cache_count(c), 3); /* over budget while the run needs them */
    lm_cache_end_run(c);
    CHECK_INT(lm_cache_count(c), 2);
    CHECK_INT(get_int(c, 1), -1); /* the oldest of the run went first */
    CHECK_INT(get_int(c, 3), 30);
    lm_cache_free(c);
}

void test_exec_cache__oversized_entry_not_stored(void)
{
    lm_cache *c = NULL;
    lm_error err;
    REQUIRE_OK(lm_cache_new(&c, int_bytes() / 2, &err), &err);
    put_int(c, 1, 10);
    CHECK_INT(lm_cache_count(c), 0);
    CHECK_INT(get_int(c, 1), -1);
    lm_cache_free(c);
}

void test_exec_cache__many_entries_grow_the_table(void)
{
    lm_cache *c = NULL;
    lm_error err;
    REQUIRE_OK(lm_cache_new(&c, 1 << 30, &err), &err);
    for (uint64_t k = 0; k < 1000; k++)
        put_int(c, k * 0x9e3779b97f4a7c15ull, (int64_t)k);
    CHECK_INT(lm_cache_count(c), 1000);
    int bad = 0;
    for (uint64_t k = 0; k < 1000; k++)
        bad += get_int(c, k * 0x9e3779b97f4a7c15ull) != (int64_t)k;
    CHECK_INT(bad, 0);
    lm_cache_free(c);
}

static bool is_big(const lm_value *v, void *user)
{
    return lm_value_as_int(v) >= *(const int64_t *)user;
}

/* Memory pressure drops the matching entries of earlier runs, never the running one's. */
void test_exec_cache__drop_if_spares_the_running_job(void)
{
    lm_cache *c = NULL;
    lm_error err;
    REQUIRE_OK(lm_cache_new(&c, 1 << 20, &err), &err);
    lm_cache_begin_run(c);
    put_int(c, 1, 100);
    put_int(c, 2, 5);
    lm_cache_end_run(c);
    lm_cache_begin_run(c);
    put_int(c, 3, 200); /* this run's */
    int64_t limit = 50;
    CHECK_INT(lm_cache_drop_if(c, is_big, &limit), 1);
    CHECK_INT(get_int(c, 1), -1);  /* earlier run, matching: gone */
    CHECK_INT(get_int(c, 2), 5);   /* earlier run, not matching: kept */
    CHECK_INT(get_int(c, 3), 200); /* running job: kept */
    CHECK_INT(lm_cache_bytes(c), 2 * int_bytes());
    lm_cache_end_run(c);
    CHECK_INT(lm_cache_drop_if(c, is_big, &limit), 1); /* between runs: any entry */
    CHECK_INT(lm_cache_count(c), 1);
    lm_cache_free(c);
}
