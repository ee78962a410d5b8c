/* tests/tensor/test_embed.c — embedding gather, SD3's sinusoidal timestep features and T5's
 * relative-position buckets. Timestep features and buckets are also checked against the
 * reference implementation's own numbers in ../shared/golden (sd3m_mmdit: s0.timestep ->
 * s0.im.t_freq; sd3m_text: t5.buckets_77). */
#include "core/tensor/op.h"
#include "tests/tensor/tt.h"

static void embedding_case(lm_dtype tdt, lm_dtype idt)
{
    lm_error err;
    int64_t ts[2] = { 50, 24 }, is[2] = { 2, 7 };
    float *tv;
    lm_tensor *table = tt_rand(&tv, tdt, 111, -3, 3, 2, ts), *ids = NULL, *y = NULL;
    int64_t idv[14] = { 0, 49, 3, 3, 17, 8, 1, 49, 0, 22, 31, 5, 44, 2 };
    REQUIRE_OK(lm_tensor_new(&ids, lm_backend_cpu(), idt, 2, is, &err), &err);
    for (int i = 0; i < 14; i++) {
        if (idt == LM_DTYPE_I64)
            ((int64_t *)lm_tensor_data(ids))[i] = idv[i];
        else
            ((int32_t *)lm_tensor_data(ids))[i] = (int32_t)idv[i];
    }
    float want[14 * 24];
    ref_embedding(want, tv, 24, idv, 14);
    CHECK_OK(lm_embedding(&y, table, ids, &err), &err);
    int64_t ys[3] = { 2, 7, 24 };
    CHECK(tt_shape_is(y, 3, ys));
    tt_check(lm_dtype_name(tdt), y, want, 14 * 24, 0, 0);
    lm_tensor_free(y);
    lm_tensor_free(ids);
    lm_tensor_free(table);
    free(tv);
}

void test_tensor_embed__embedding_dtypes(void)
{
    embedding_case(LM_DTYPE_F32, LM_DTYPE_I64);
    embedding_case(LM_DTYPE_F16, LM_DTYPE_I64);
    embedding_case(LM_DTYPE_F8_E4M3, LM_DTYPE_I32);
    embedding_case(LM_DTYPE_BF16, LM_DTYPE_I32);
}

void test_tensor_embed__embedding_id_out_of_range(void)
{
    lm_error err;
    int64_t ts[2] = { 10, 4 }, is[1] = { 3 };
    lm_tensor *table = tt_rand(NULL, LM_DTYPE_F32, 1, -1, 1, 2, ts), *ids = NULL, *y = NULL;
    REQUIRE_OK(lm_tensor_new(&ids, lm_backend_cpu(), LM_DTYPE_I64, 1, is, &err), &err);
    int64_t *p = lm_tensor_data(ids);
    p[0] = 1;
    p[1] = 10; /* one past the end */
    p[2] = 2;
    CHECK_INT(lm_embedding(&y, table, ids, &err), LM_ERANGE);
    CHECK(y == NULL);
    p[1] = -1;
    CHECK_INT(lm_embedding(&y, table, ids, &err), LM_ERANGE);
    CHECK(y == NULL);
    lm_tensor_free(ids);
    lm_tensor_free(table);
}

void test_tensor_embed__timestep_vs_double(void)
{
    lm_error err;
    float tv[4] = { 0.0f, 1.0f, 500.25f, 1000.0f };
    int64_t ts[1] = { 4 };
    lm_tensor *t = tt_from(tv, 1, ts), *y = NULL;
    float want[4 * 256];
    ref_timestep_embedding(want, tv, 4, 256, 10000.0);
    CHECK_OK(lm_timestep_embedding(&y, t, 256, 10000.0f, &err), &err);
    int64_t ys[2] = { 4, 256 };
    CHECK(tt_shape_is(y, 2, ys));
    /* fp32 forms t*f with an error up to t * 2^-24 (6e-5 at t = 1000): that is the
     * reference's own behaviour, so the bound against exact math is 1e-4. */
    tt_check("timestep features vs fp64", y, want, 4 * 256, 1e-4, 0);
    const float *h = NULL;
    lm_tensor *host = NULL;
    REQUIRE_OK(lm_tensor_to_f32_host(&host, y, &err), &err);
    h = lm_tensor_data(host);
    CHECK_NEAR(h[0], 1.0, 0);   /* cos(0): cosine comes first */
    CHECK_NEAR(h[128], 0.0, 0); /* sin(0) */
    lm_tensor_free(host);
    lm_tensor_free(y);
    lm_tensor_free(t);
}

/* Loads an F32 golden tensor; NULL (and a failed test) when it is missing. */
static float *golden_f32(const char *file, const char *name, int64_t *count)
{
    const char *path = test_shared(file);
    if (!path)
        return NULL;
    void *data = NULL;
    char dtype[16], msg[512];
    int64_t shape[8];
    int ndim;
    *count = ref_st_load(path, name, &data, dtype, sizeof(dtype), shape, &ndim, msg, sizeof(msg));
    if (*count < 0 || strcmp(dtype, "F32") != 0) {
        test__fail(__FILE__, __LINE__, "%s (dtype %s)", msg, dtype);
        free(data);
        return NULL;
    }
    return data;
}

void test_tensor_embed__timestep_matches_golden(void)
{
    lm_error err;
    const char *files[2] = { "golden/sd3m_mmdit.safetensors", "golden/sd35m_mmdit.safetensors" };
    for (int f = 0; f < 2; f++) {
        int64_t nt = 0, nf = 0;
        float *tstep = golden_f32(files[f], "s0.timestep", &nt);
        float *freq = golden_f32(files[f], "s0.im.t_freq", &nf);
        if (tstep && freq && nt == 1 && nf == 256) {
            int64_t ts[1] = { 1 };
            lm_tensor *t = tt_from(tstep, 1, ts), *y = NULL;
            CHECK_OK(lm_timestep_embedding(&y, t, 256, 10000.0f, &err), &err);
            tt_check(files[f], y, freq, 256, 1e-4, 1e-4); /* the golden README's text tolerance */
            lm_tensor_free(y);
            lm_tensor_free(t);
        } else {
            CHECK(tstep && freq && nt == 1 && nf == 256);
        }
        free(tstep);
        free(freq);
    }
}

void test_tensor_embed__t5_bucket_rule(void)
{
    /* Worked out by hand from the T5 rule (32 buckets, bidirectional, max distance 128):
     * n = 16 per direction, exact below 8, then 8 + floor(log(r/8)/log(16) * 8), cap 15. */
    struct {
        int64_t rel, bucket;
    } cases[] = {
        { 0, 0 },     { -1, 1 },    { 1, 17 },   { -7, 7 },     { 7, 23 },   { -8, 8 },
        { 8, 24 },    { -12, 9 },   { -16, 10 }, { 16, 26 },    { -32, 12 }, { -64, 14 },
        { -127, 15 }, { -128, 15 }, { 500, 31 }, { -5000, 15 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = lm_t5_relative_bucket(cases[i].rel, true, 32, 128);
        if (got != cases[i].bucket)
            test__fail(__FILE__, __LINE__, "bucket(%lld) = %lld, expected %lld",
                       (long long)cases[i].rel, (long long)got, (long long)cases[i].bucket);
    }
}

void test_tensor_embed__t5_buckets_match_golden(void)
{
    lm_error err;
    const char *path = test_shared("golden/sd3m_text.safetensors");
    REQUIRE(path);
    void *data = NULL;
    char dtype[16], msg[512];
    int64_t shape[8];
    int ndim;
    int64_t n = ref_st_load(path, "t5.buckets_77", &data, dtype, sizeof(dtype), shape, &ndim, msg,
                            sizeof(msg));
    if (n != 77 * 77 || strcmp(dtype, "I64") != 0) {
        test__fail(__FILE__, __LINE__, "%s (n %lld, dtype %s)", msg, (long long)n, dtype);
        free(data);
        return;
    }
    lm_tensor *b = NULL, *host = NULL;
    REQUIRE_OK(lm_t5_buckets(&b, lm_backend_cpu(), 77, 77, 32, 128, true, &err), &err);
    CHECK_INT(b->dtype, LM_DTYPE_I64);
    REQUIRE_OK(lm_tensor_contiguous(&host, b, &err), &err);
    const int64_t *got = lm_tensor_data(host), *want = data;
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ < 5)
            test__fail(__FILE__, __LINE__, "bucket [%lld][%lld] = %lld, golden %lld",
                       (long long)(i / 77), (long long)(i % 77), (long long)got[i],
                       (long long)want[i]);
    CHECK_INT(bad, 0);
    lm_tensor_free(host);
    lm_tensor_free(b);
    free(data);
}
