/* tests/tensor/test_dtype.c — F16, BF16 and float8 e4m3fn conversions.
 * Decoders are checked on every code against tests/tensor/ref's ldexp-based decoders;
 * encoders against an exhaustive nearest-code search (ties to even), on random values,
 * on every exact code, on every midpoint between neighbouring codes, and at the edges
 * (subnormals, the largest finite value, overflow, NaN). */
#include "core/tensor/dtype.h"
#include "tests/tensor/ref/ref.h"
#include "tests/test.h"

#include <stdlib.h>

static bool same_float(double a, double b)
{
    return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

void test_tensor_dtype__f8_decode_all_256_codes(void)
{
    int bad = 0, nans = 0;
    for (int c = 0; c < 256; c++) {
        double got = (double)lm_f8e4m3_to_f32((uint8_t)c), want = ref_f8e4m3_decode((uint8_t)c);
        nans += isnan(got);
        if (!same_float(got, want) && bad++ < 5)
            test__fail(__FILE__, __LINE__, "code 0x%02x decodes to %g, expected %g", c, got, want);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(nans, 2); /* 0x7f and 0xff only: no infinities */
    CHECK_NEAR(lm_f8e4m3_to_f32(0x7e), 448.0, 0);
    CHECK_NEAR(lm_f8e4m3_to_f32(0x01), 0.001953125, 0); /* 1/8 * 2^-6 */
    CHECK_NEAR(lm_f8e4m3_to_f32(0x08), 0.015625, 0);    /* 2^-6, the smallest normal */
    CHECK_NEAR(lm_f8e4m3_to_f32(0xc0), -2.0, 0);
}

static void check_f8_encode(float x, int *bad)
{
    uint8_t got = lm_f32_to_f8e4m3(x), want = ref_f8e4m3_encode_sat(x);
    if (got != want && (*bad)++ < 5)
        test__fail(__FILE__, __LINE__, "%.9g encodes to 0x%02x, expected 0x%02x", (double)x, got,
                   want);
}

void test_tensor_dtype__f8_encode_round_nearest_even_saturating(void)
{
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        double v = ref_f8e4m3_decode((uint8_t)c);
        if (isnan(v))
            continue;
        check_f8_encode((float)v, &bad);
        int next = (c & 0x7f) == 0x7e ? -1 : c + 1;
        if (next >= 0 && (c & 0x7f) != 0x7f) { /* midpoint to the next code: a tie */
            double mid = (v + ref_f8e4m3_decode((uint8_t)next)) / 2;
            check_f8_encode((float)mid, &bad);
            check_f8_encode(nextafterf((float)mid, 0.0f), &bad);
            check_f8_encode(nextafterf((float)mid, INFINITY * (float)mid), &bad);
        }
    }
    float xs[4096];
    ref_fill_uniform(xs, 4096, 7, -500.0f, 500.0f);
    for (int i = 0; i < 4096; i++) {
        check_f8_encode(xs[i], &bad);
        check_f8_encode(xs[i] * 1e-3f, &bad);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(lm_f32_to_f8e4m3(1e9f), 0x7e);
    CHECK_INT(lm_f32_to_f8e4m3(-INFINITY), 0xfe);
    CHECK_INT(lm_f32_to_f8e4m3(NAN), 0x7f);
    CHECK_INT(lm_f32_to_f8e4m3(0.0009765625f), 0x00); /* half the smallest subnormal: tie to 0 */
    CHECK_INT(lm_f32_to_f8e4m3(-0.0f), 0x80);
}

void test_tensor_dtype__f16_all_codes_decode_and_roundtrip(void)
{
    int bad = 0;
    for (int c = 0; c < 65536; c++) {
        double got = (double)lm_f16_to_f32((uint16_t)c), want = ref_f16_decode((uint16_t)c);
        if (!same_float(got, want) && bad++ < 5)
            test__fail(__FILE__, __LINE__, "f16 0x%04x -> %g, expected %g", c, got, want);
        if (!isnan(want) && lm_f32_to_f16((float)want) != c && bad++ < 5)
            test__fail(__FILE__, __LINE__, "f16 0x%04x does not round-trip", c);
    }
    CHECK_INT(bad, 0);
}

void test_tensor_dtype__f16_encode_ties_and_overflow(void)
{
    int bad = 0;
    for (int c = 0; c < 0x7c00; c += 7) { /* midpoints of many neighbouring pairs */
        double mid = (ref_f16_decode((uint16_t)c) + ref_f16_decode((uint16_t)(c + 1))) / 2;
        float xs[3] = { (float)mid, nextafterf((float)mid, 0.0f),
                        nextafterf((float)mid, INFINITY) };
        for (int i = 0; i < 3; i++) {
            uint16_t got = lm_f32_to_f16(xs[i]), want = ref_f16_encode(xs[i]);
            if (got != want && bad++ < 5)
                test__fail(__FILE__, __LINE__, "%.9g -> f16 0x%04x, expected 0x%04x", (double)xs[i],
                           got, want);
        }
    }
    CHECK_INT(bad, 0);
    CHECK_INT(lm_f32_to_f16(65504.0f), 0x7bff);
    CHECK_INT(lm_f32_to_f16(65519.0f), 0x7bff);
    CHECK_INT(lm_f32_to_f16(65520.0f), 0x7c00); /* the tie rounds to even: infinity */
    CHECK_INT(lm_f32_to_f16(-1e10f), 0xfc00);
    CHECK(isnan(lm_f16_to_f32(lm_f32_to_f16(NAN))));
    CHECK_INT(lm_f32_to_f16(0x1p-25f), 0x0000);   /* half the smallest subnormal: tie to 0 */
    CHECK_INT(lm_f32_to_f16(0x1.8p-24f), 0x0002); /* 1.5 ulps: tie to even (2) */
}

/* The bf16 neighbours of x (truncation and the next code) decoded independently; the
 * nearest wins, ties to the even code. */
static uint16_t bf16_expected(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    double dl = fabs((double)x - ref_bf16_decode(lo)), dh = fabs(ref_bf16_decode(hi) - (double)x);
    if (dl != dh)
        return dl < dh ? lo : hi;
    return (lo & 1) ? hi : lo;
}

void test_tensor_dtype__bf16_round_to_nearest_even(void)
{
    int bad = 0;
    for (int c = 0; c < 65536; c++) {
        double want = ref_bf16_decode((uint16_t)c);
        if (!same_float((double)lm_bf16_to_f32((uint16_t)c), want) && bad++ < 5)
            test__fail(__FILE__, __LINE__, "bf16 0x%04x decodes wrong", c);
    }
    float xs[8192];
    ref_fill_uniform(xs, 8192, 11, -3.0f, 3.0f);
    for (int i = 0; i < 8192; i++) {
        uint32_t u;
        memcpy(&u, &xs[i], 4);
        if (i % 2) /* force exact ties: low half 0x8000 */
            u = (u & 0xffff0000u) | 0x8000u;
        float x;
        memcpy(&x, &u, 4);
        if (lm_f32_to_bf16(x) != bf16_expected(x) && bad++ < 5)
            test__fail(__FILE__, __LINE__, "%.9g -> bf16 0x%04x, expected 0x%04x", (double)x,
                       lm_f32_to_bf16(x), bf16_expected(x));
    }
    CHECK_INT(bad, 0);
    CHECK_INT(lm_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);     /* tie, even stays */
    CHECK_INT(lm_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82); /* tie, odd rounds up */
    CHECK(isnan(lm_bf16_to_f32(lm_f32_to_bf16(NAN))));
}

void test_tensor_dtype__rows_match_scalars(void)
{
    static uint16_t codes[65536];
    static float got[65536];
    for (int c = 0; c < 65536; c++)
        codes[c] = (uint16_t)c;
    lm_dtype_to_f32(got, codes, LM_DTYPE_F16, 65536); /* the F16C path where available */
    int bad = 0;
    for (int c = 0; c < 65536; c++)
        if (!same_float((double)got[c], ref_f16_decode((uint16_t)c)) && bad++ < 5)
            test__fail(__FILE__, __LINE__, "row f16 0x%04x -> %g", c, (double)got[c]);
    lm_dtype_to_f32(got, codes, LM_DTYPE_BF16, 65536);
    for (int c = 0; c < 65536; c++)
        if (!same_float((double)got[c], ref_bf16_decode((uint16_t)c)) && bad++ < 5)
            test__fail(__FILE__, __LINE__, "row bf16 0x%04x -> %g", c, (double)got[c]);
    uint8_t f8[256];
    for (int c = 0; c < 256; c++)
        f8[c] = (uint8_t)c;
    lm_dtype_to_f32(got, f8, LM_DTYPE_F8_E4M3, 256);
    for (int c = 0; c < 256; c++)
        if (!same_float((double)got[c], ref_f8e4m3_decode((uint8_t)c)) && bad++ < 5)
            test__fail(__FILE__, __LINE__, "row f8 0x%02x -> %g", c, (double)got[c]);
    CHECK_INT(bad, 0);
}

void test_tensor_dtype__convert_to_integers_rounds_and_saturates(void)
{
    float src[7] = { 2.5f, 3.5f, -3.7f, 1e20f, -1e20f, NAN, 300.0f };
    int32_t i32[7];
    uint8_t u8[7];
    int64_t i64[7];
    lm_dtype_convert(i32, LM_DTYPE_I32, src, LM_DTYPE_F32, 7);
    lm_dtype_convert(u8, LM_DTYPE_U8, src, LM_DTYPE_F32, 7);
    lm_dtype_convert(i64, LM_DTYPE_I64, src, LM_DTYPE_F32, 7);
    CHECK_INT(i32[0], 2); /* ties to even */
    CHECK_INT(i32[1], 4);
    CHECK_INT(i32[2], -4);
    CHECK_INT(i32[3], INT32_MAX);
    CHECK_INT(i32[4], INT32_MIN);
    CHECK_INT(i32[5], 0);
    CHECK_INT(u8[2], 0);
    CHECK_INT(u8[6], 255);
    CHECK_INT(i64[6], 300);
    float back[7];
    lm_dtype_convert(back, LM_DTYPE_F32, i64, LM_DTYPE_I64, 7);
    CHECK_NEAR(back[2], -4.0, 0);
    uint16_t h[3];
    float x[3] = { 1.0f, -2.5f, 65504.0f }, y[3];
    lm_dtype_convert(h, LM_DTYPE_F16, x, LM_DTYPE_F32, 3);
    uint8_t e[3];
    lm_dtype_convert(e, LM_DTYPE_F8_E4M3, h, LM_DTYPE_F16, 3); /* f16 -> f8 directly */
    lm_dtype_convert(y, LM_DTYPE_F32, e, LM_DTYPE_F8_E4M3, 3);
    CHECK_NEAR(y[0], 1.0, 0);
    CHECK_NEAR(y[1], -2.5, 0);
    CHECK_NEAR(y[2], 448.0, 0); /* saturated */
}
