/* tests/tensor/test_memory.c — memory accounting of backends and selection by device name.
 * Every check works on differences from a snapshot taken at the start of the test, so it
 * holds whatever the process allocated before. Sizes are whole multiples of 4 KiB from
 * 64 KiB up, where the CPU allocator's rounding changes nothing, except where the rounding
 * itself is checked. The free-buffer cache is set explicitly (on with room, or off). */
#include "core/base/log.h"
#include "core/tensor/backend.h"
#include "core/tensor/cpu/cpu.h"
#include "core/tensor/cuda/cuda.h"
#include "core/tensor/ops.h"
#include "tests/test.h"

#include <pthread.h>
#include <stdio.h>

#define MIB ((size_t)1 << 20)

static lm_backend_mem mem_now(lm_backend *be)
{
    lm_backend_mem m;
    lm_backend_mem_stats(be, &m);
    return m;
}

/* A new CPU f32 tensor of `bytes` bytes (a multiple of 4), or NULL after a failed check. */
static lm_tensor *tensor_of(size_t bytes)
{
    int64_t shape[1] = { (int64_t)(bytes / 4) };
    lm_tensor *t = NULL;
    lm_error err;
    CHECK_OK(lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 1, shape, &err), &err);
    return t;
}

/* live and peak move with tensors; freeing lowers live but never the peak. */
static void check_live_and_peak(size_t cache_limit)
{
    lm_backend *cpu = lm_backend_cpu();
    lm_cpu_cache_set_limit(cache_limit);
    lm_backend_mem_reset_peak(cpu);
    lm_backend_mem m0 = mem_now(cpu);
    CHECK_INT(m0.peak, m0.live);
    lm_tensor *a = tensor_of(MIB), *b = tensor_of(2 * MIB);
    REQUIRE(a && b);
    lm_backend_mem m1 = mem_now(cpu);
    CHECK_INT(m1.live - m0.live, 3 * MIB);
    CHECK_INT(m1.peak - m0.live, 3 * MIB);
    lm_tensor_free(b);
    lm_backend_mem m2 = mem_now(cpu);
    CHECK_INT(m2.live - m0.live, MIB);
    CHECK_INT(m2.peak - m0.live, 3 * MIB);
    lm_backend_mem_reset_peak(cpu);
    CHECK_INT(mem_now(cpu).peak, m2.live);
    lm_tensor *c = tensor_of(MIB);
    CHECK_INT(mem_now(cpu).peak - m2.live, MIB);
    lm_tensor_free(a);
    lm_tensor_free(c);
    CHECK_INT(mem_now(cpu).live, m0.live);
    CHECK_INT(mem_now(cpu).peak - m2.live, MIB);
}

void test_tensor_memory__live_and_peak_with_cache(void)
{
    check_live_and_peak(256 * MIB);
}

void test_tensor_memory__live_and_peak_without_cache(void)
{
    check_live_and_peak(0);
}

void test_tensor_memory__freed_buffers_move_to_the_cache(void)
{
    lm_backend *cpu = lm_backend_cpu();
    lm_cpu_cache_set_limit(256 * MIB);
    lm_backend_trim(cpu);
    lm_backend_mem m0 = mem_now(cpu);
    CHECK_INT(m0.cached, 0);
    lm_tensor *a = tensor_of(MIB);
    REQUIRE(a);
    lm_tensor_free(a);
    lm_backend_mem m1 = mem_now(cpu);
    CHECK_INT(m1.live, m0.live);
    CHECK_INT(m1.cached, MIB);
    a = tensor_of(MIB); /* the same size: taken back from the cache */
    REQUIRE(a);
    lm_backend_mem m2 = mem_now(cpu);
    CHECK_INT(m2.live - m0.live, MIB);
    CHECK_INT(m2.cached, 0);
    lm_tensor_free(a);
    lm_backend_trim(cpu);
    CHECK_INT(mem_now(cpu).cached, 0);
    CHECK_INT(mem_now(cpu).live, m0.live);
}

void test_tensor_memory__cache_off_keeps_nothing(void)
{
    lm_backend *cpu = lm_backend_cpu();
    lm_cpu_cache_set_limit(256 * MIB);
    lm_tensor *a = tensor_of(MIB);
    REQUIRE(a);
    lm_tensor_free(a);
    CHECK(mem_now(cpu).cached >= MIB);
    lm_cpu_cache_set_limit(0); /* turning it off gives the kept buffers back */
    CHECK_INT(mem_now(cpu).cached, 0);
    lm_backend_mem m0 = mem_now(cpu);
    a = tensor_of(MIB);
    REQUIRE(a);
    CHECK_INT(mem_now(cpu).live - m0.live, MIB);
    lm_tensor_free(a);
    CHECK_INT(mem_now(cpu).cached, 0);
    CHECK_INT(mem_now(cpu).live, m0.live);
}

void test_tensor_memory__small_buffers_count_as_allocated(void)
{
    lm_backend *cpu = lm_backend_cpu();
    lm_backend_mem m0 = mem_now(cpu);
    lm_tensor *t = tensor_of(40); /* rounded to 64 bytes */
    lm_tensor *z = tensor_of(0);  /* an empty tensor still gets a 64-byte buffer */
    REQUIRE(t && z);
    CHECK_INT(mem_now(cpu).live - m0.live, 128);
    lm_tensor_free(t);
    lm_tensor_free(z);
    CHECK_INT(mem_now(cpu).live, m0.live);
}

void test_tensor_memory__views_share_their_buffer(void)
{
    lm_backend *cpu = lm_backend_cpu();
    lm_backend_mem m0 = mem_now(cpu);
    lm_tensor *a = tensor_of(MIB), *v = NULL;
    REQUIRE(a);
    lm_error err;
    CHECK_OK(lm_tensor_view_slice(&v, a, 0, 0, 1000, &err), &err);
    CHECK_INT(mem_now(cpu).live - m0.live, MIB);
    lm_tensor_free(a); /* the view keeps the buffer */
    CHECK_INT(mem_now(cpu).live - m0.live, MIB);
    lm_tensor_free(v);
    CHECK_INT(mem_now(cpu).live, m0.live);
}

void test_tensor_memory__ops_count_their_results(void)
{
    lm_backend *cpu = lm_backend_cpu();
    lm_backend_mem_reset_peak(cpu);
    lm_backend_mem m0 = mem_now(cpu);
    lm_tensor *x = tensor_of(MIB), *y = NULL;
    REQUIRE(x);
    lm_error err;
    CHECK_OK(lm_scale(&y, x, 2.0f, 0.0f, &err), &err);
    CHECK_INT(mem_now(cpu).live - m0.live, 2 * MIB);
    CHECK(mem_now(cpu).peak - m0.live >= 2 * MIB);
    lm_tensor_free(x);
    lm_tensor_free(y);
    CHECK_INT(mem_now(cpu).live, m0.live);
}

static int released;

static void count_release(void *p)
{
    LM_UNUSED(p);
    released++;
}

void test_tensor_memory__wrapped_memory_is_mapped_not_live(void)
{
    static float data[4096];
    lm_backend *cpu = lm_backend_cpu();
    lm_backend_mem m0 = mem_now(cpu);
    int64_t shape[2] = { 64, 64 };
    lm_tensor *w = NULL, *v = NULL, *none = NULL;
    lm_error err;
    REQUIRE_OK(
        lm_tensor_wrap(&w, data, sizeof(data), LM_DTYPE_F32, 2, shape, count_release, NULL, &err),
        &err);
    CHECK_OK(lm_tensor_view(&v, w, &err), &err);
    int64_t empty[1] = { 0 };
    CHECK_OK(lm_tensor_wrap(&none, NULL, 0, LM_DTYPE_F32, 1, empty, NULL, NULL, &err), &err);
    lm_backend_mem m1 = mem_now(cpu);
    CHECK_INT(m1.live, m0.live);
    CHECK_INT(m1.peak, m0.peak);
    CHECK_INT(m1.mapped - m0.mapped, sizeof(data));
    lm_tensor_free(w);
    lm_tensor_free(none);
    CHECK_INT(mem_now(cpu).mapped - m0.mapped, sizeof(data));
    lm_tensor_free(v);
    CHECK_INT(released, 1);
    CHECK_INT(mem_now(cpu).mapped, m0.mapped);
    CHECK_INT(mem_now(cpu).live, m0.live);
}

/* Four threads allocate and free at once: the counters must balance exactly. */
static void *churn(void *user)
{
    LM_UNUSED(user);
    for (int i = 0; i < 200; i++) {
        lm_tensor *t = tensor_of((size_t)(64 + (i % 4) * 4) << 10);
        lm_tensor_free(t);
    }
    return NULL;
}

void test_tensor_memory__counters_are_thread_safe(void)
{
    lm_backend *cpu = lm_backend_cpu();
    lm_cpu_cache_set_limit(8 * MIB);
    lm_backend_mem_reset_peak(cpu);
    lm_backend_mem m0 = mem_now(cpu);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, churn, NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    lm_backend_mem m1 = mem_now(cpu);
    CHECK_INT(m1.live, m0.live);
    CHECK(m1.peak - m0.live >= (size_t)64 << 10);
    CHECK(m1.peak - m0.live <= (size_t)4 * (76 << 10));
}

void test_tensor_memory__cuda_counts_its_buffers_when_present(void)
{
    lm_backend *gpu = NULL;
    lm_error err;
    if (lm_cuda_backend_new(&gpu, 0, &err) != LM_OK) {
        test_note("no CUDA backend here (%s); skipped", err.msg);
        return;
    }
    lm_backend_mem m0 = mem_now(gpu);
    int64_t shape[1] = { (int64_t)(MIB / 4) };
    lm_tensor *t = NULL;
    REQUIRE_OK(lm_tensor_new(&t, gpu, LM_DTYPE_F32, 1, shape, &err), &err);
    CHECK_INT(mem_now(gpu).live - m0.live, MIB);
    CHECK(mem_now(gpu).peak >= m0.live + MIB);
    lm_tensor_free(t);
    CHECK_INT(mem_now(gpu).live, m0.live);
}

/* ---- selection ---- */

static char logged[1024];

static void capture_log(lm_log_level level, const char *subsys, const char *msg, void *user)
{
    LM_UNUSED(user);
    if (level == LM_LOG_LEVEL_INFO)
        snprintf(logged, sizeof(logged), "%s: %s", subsys, msg);
}

void test_tensor_memory__select_cpu(void)
{
    lm_backend *be = NULL;
    lm_error err;
    CHECK_OK(lm_backend_select(&be, "cpu", &err), &err);
    CHECK(be == lm_backend_cpu());
}

void test_tensor_memory__select_auto_falls_back_to_cpu(void)
{
    lm_backend *gpu = NULL, *be = NULL;
    lm_error err;
    bool have_cuda = lm_cuda_backend_new(&gpu, 0, &err) == LM_OK;
    lm_log_level level = lm_log__level;
    lm_log_set_level(LM_LOG_LEVEL_INFO);
    lm_log_set_sink(capture_log, NULL);
    CHECK_OK(lm_backend_select(&be, "auto", &err), &err);
    lm_log_set_sink(NULL, NULL);
    lm_log_set_level(level);
    CHECK(be == (have_cuda ? gpu : lm_backend_cpu()));
    CHECK_CONTAINS(logged, have_cuda ? "CUDA device 0" : "on the CPU");
    test_note("%s", logged);
    lm_backend *dflt = NULL;
    CHECK_OK(lm_backend_select(&dflt, NULL, &err), &err); /* NULL and "" mean auto */
    CHECK(dflt == be);
    CHECK_OK(lm_backend_select(&dflt, "", &err), &err);
    CHECK(dflt == be);
}

void test_tensor_memory__select_cuda_passes_its_error_on(void)
{
    lm_backend *gpu = NULL, *be = NULL;
    lm_error direct, err;
    lm_status want = lm_cuda_backend_new(&gpu, 0, &direct);
    if (want == LM_OK) {
        CHECK_OK(lm_backend_select(&be, "cuda", &err), &err);
        CHECK(be == gpu);
        CHECK_OK(lm_backend_select(&be, "cuda:0", &err), &err);
        CHECK(be == gpu);
        return;
    }
    CHECK_INT(lm_backend_select(&be, "cuda", &err), want);
    CHECK(be == NULL);
    CHECK_STR(err.msg, direct.msg);
    CHECK_STR(err.hint, direct.hint);
    CHECK(err.hint[0] != '\0'); /* it says what to do */
    CHECK(lm_backend_select(&be, "cuda:1", &err) != LM_OK);
}

void test_tensor_memory__select_unknown_name_lists_the_choices(void)
{
    static const char *const bad[] = { "gpu", "CPU", "cuda:", "cuda:x", "cuda:1a", "cuda0" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lm_backend *be = NULL;
        lm_error err;
        CHECK_INT(lm_backend_select(&be, bad[i], &err), LM_EINVAL);
        CHECK(be == NULL);
        CHECK_STR(err.kind, "unknown_device");
        CHECK_CONTAINS(err.msg, bad[i]);
        char line[1400];
        lm_error_format(&err, line, sizeof(line));
        CHECK_CONTAINS(line, "cpu, cuda, cuda:N");
        CHECK_CONTAINS(line, "auto");
    }
}
