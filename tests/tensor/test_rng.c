/* tests/tensor/test_rng.c — torch-compatible noise against golden/rng.safetensors.
 * The cases (seed, shape, how many earlier draws) come from the file's `cases` metadata and
 * the required precision from its `tolerances` (bit-exact, else the fallback atol). */
#include "core/io/safetensors.h"
#include "core/tensor/rng.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* C++11 [rand.predef]: the 10000th output of a default-constructed mt19937 (seed 5489). */
void test_tensor_rng__mt19937_reference_value(void)
{
    lm_rng *rng;
    lm_error err;
    REQUIRE_OK(lm_rng_new(&rng, 5489, &err), &err);
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++)
        v = lm_rng_u32(rng);
    CHECK_INT(v, 4123659995u);
    lm_rng_seed(rng, 5489 + (UINT64_C(7) << 32)); /* only the low 32 bits count */
    for (int i = 0; i < 10000; i++)
        v = lm_rng_u32(rng);
    CHECK_INT(v, 4123659995u);
    lm_rng_free(rng);
}

/* The scalar path caches the second value of each pair in the generator, so drawing 15
 * values at once equals drawing 5 then 10 (and 1 + 1 + 13). */
void test_tensor_rng__scalar_cache_spans_calls(void)
{
    lm_rng *a, *b;
    lm_error err;
    REQUIRE_OK(lm_rng_new(&a, 77, &err), &err);
    REQUIRE_OK(lm_rng_new(&b, 77, &err), &err);
    float whole[15], parts[15];
    lm_rng_randn(a, whole, 15);
    lm_rng_randn(b, parts, 5);
    lm_rng_randn(b, parts + 5, 10);
    CHECK(memcmp(whole, parts, sizeof(whole)) == 0);
    lm_rng_seed(b, 77);
    lm_rng_randn(b, parts, 1);
    lm_rng_randn(b, parts + 1, 1);
    lm_rng_randn(b, parts + 2, 13);
    CHECK(memcmp(whole, parts, sizeof(whole)) == 0);
    double sum = 0;
    for (int i = 0; i < 15; i++)
        sum += (double)whole[i] * (double)whole[i];
    CHECK(sum > 1.0 && sum < 60.0); /* normal-ish, not zeros */
    lm_rng_free(a);
    lm_rng_free(b);
}

typedef struct {
    bool bit_exact;
    double atol;
} rng_tol;

static rng_tol read_tolerance(const lm_safetensors *st)
{
    rng_tol tol = { true, 0.0 };
    const char *text = lm_safetensors_metadata(st, "tolerances");
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    cJSON *rng = cJSON_GetObjectItem(root, "rng");
    if (!rng)
        test__fail(__FILE__, __LINE__, "rng.safetensors has no tolerances.rng; bit-exact assumed");
    cJSON *be = cJSON_GetObjectItem(rng, "bit_exact");
    if (be && cJSON_IsFalse(be)) {
        tol.bit_exact = false;
        cJSON *atol = cJSON_GetObjectItem(cJSON_GetObjectItem(rng, "fallback"), "atol");
        tol.atol = cJSON_IsNumber(atol) ? atol->valuedouble : 1e-6;
    }
    cJSON_Delete(root);
    return tol;
}

/* Draws `draw + 1` times and compares the last draw with the golden tensor. */
static void check_case(const lm_safetensors *st, const cJSON *c, rng_tol tol, int *n_cases)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(c, "tensor"));
    const lm_safetensors_entry *e = name ? lm_safetensors_find(st, name) : NULL;
    cJSON *seed = cJSON_GetObjectItem(c, "seed"), *draw = cJSON_GetObjectItem(c, "draw");
    if (!e || e->dtype != LM_SAFETENSORS_F32 || !cJSON_IsNumber(seed)) {
        test__fail(__FILE__, __LINE__, "case %s: tensor or seed missing", name ? name : "?");
        return;
    }
    size_t n = e->bytes / 4;
    float *got = malloc((n ? n : 1) * sizeof(float)), *want = malloc((n ? n : 1) * 4);
    lm_rng *rng;
    lm_error err;
    REQUIRE(got && want && lm_rng_new(&rng, (uint64_t)seed->valuedouble, &err) == LM_OK);
    for (int d = 0; d <= (cJSON_IsNumber(draw) ? draw->valueint : 0); d++)
        lm_rng_randn(rng, got, n);
    memcpy(want, e->data, n * 4);
    size_t differ = 0;
    double max_diff = 0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - (double)want[i]);
        if (memcmp(&got[i], &want[i], 4) != 0)
            differ++;
        if (diff > max_diff || isnan(diff))
            max_diff = isnan(diff) ? (double)INFINITY : diff;
    }
    if (tol.bit_exact ? differ != 0 : !(max_diff <= tol.atol))
        test__fail(__FILE__, __LINE__, "%s (seed %.0f, %zu values): %zu differ, max |diff| %.3g",
                   name, seed->valuedouble, n, differ, max_diff);
    (*n_cases)++;
    lm_rng_free(rng);
    free(got);
    free(want);
}

void test_tensor_rng__golden_cases(void)
{
    const char *path = test_shared("golden/rng.safetensors");
    REQUIRE(path);
    lm_safetensors *st;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, path, &err), &err);
    rng_tol tol = read_tolerance(st);
    const char *text = lm_safetensors_metadata(st, "cases");
    cJSON *cases = text ? cJSON_Parse(text) : NULL;
    if (!cJSON_IsArray(cases) || cJSON_GetArraySize(cases) == 0) {
        test__fail(__FILE__, __LINE__, "rng.safetensors: metadata `cases` is not a JSON list");
    } else {
        int n = 0;
        for (const cJSON *c = cases->child; c; c = c->next)
            check_case(st, c, tol, &n);
        CHECK_INT(n, cJSON_GetArraySize(cases));
        test_note("%d cases compared (%s)", n, tol.bit_exact ? "bit-exact" : "fallback atol");
    }
    cJSON_Delete(cases);
    lm_safetensors_close(st);
}
