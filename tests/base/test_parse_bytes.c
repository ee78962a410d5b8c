/* tests/base/test_parse_bytes.c — lm_parse_bytes: byte sizes with an optional K, M or G. */
#include "core/base/str.h"
#include "tests/test.h"

void test_base_parse_bytes__plain_and_suffixed(void)
{
    size_t n = 0;
    CHECK(lm_parse_bytes("4096", &n));
    CHECK_INT(n, 4096);
    CHECK(lm_parse_bytes("0", &n));
    CHECK_INT(n, 0);
    CHECK(lm_parse_bytes("2k", &n));
    CHECK_INT(n, 2048);
    CHECK(lm_parse_bytes("16M", &n));
    CHECK_INT(n, (size_t)16 << 20);
    CHECK(lm_parse_bytes("3g", &n));
    CHECK_INT(n, (size_t)3 << 30);
    CHECK(lm_parse_bytes("1.5G", &n));
    CHECK_INT(n, (size_t)3 << 29);
    CHECK(lm_parse_bytes("16MB", &n)); /* what follows the unit letter is not read */
    CHECK_INT(n, (size_t)16 << 20);
}

void test_base_parse_bytes__rejects_leave_out_alone(void)
{
    static const char *const bad[] = { "", "M", "abc", "-1", "-1M", "12x", "nan", "inf", "1e30" };
    for (size_t i = 0; i < LM_COUNTOF(bad); i++) {
        size_t n = 77;
        CHECK(!lm_parse_bytes(bad[i], &n));
        CHECK_INT(n, 77);
    }
    size_t n = 77;
    CHECK(!lm_parse_bytes(NULL, &n));
    CHECK_INT(n, 77);
}
