/* tests/base/test_parse_bytes.c — byte sizes: lm_parse_bytes (with an optional K, M or G) and
 * lm_format_bytes; and lm_str_closest, the "did you mean" rule. */
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

void test_base_parse_bytes__format_for_people(void)
{
    char buf[32];
    const struct {
        uint64_t n;
        const char *text;
    } cases[] = {
        { 0, "0 B" },
        { 999, "999 B" },
        { 1000, "1.0 kB" },
        { 3100, "3.1 kB" },
        { 312400000, "312.4 MB" },
        { 10900000000ull, "10.9 GB" },
        { 2500000000000ull, "2.5 TB" },
    };
    for (size_t i = 0; i < LM_COUNTOF(cases); i++) {
        lm_format_bytes(cases[i].n, buf, sizeof(buf));
        CHECK_STR(buf, cases[i].text);
    }
}

static const char *word_at(const void *items, size_t i)
{
    return ((const char *const *)items)[i];
}

void test_base_parse_bytes__closest_name(void)
{
    static const char *const words[] = { "models", "output", "threads", "precision" };
    CHECK_STR(lm_str_closest("treads", words, 4, word_at), "threads");
    CHECK_STR(lm_str_closest("MODELS", words, 4, word_at), "models"); /* case-insensitive */
    CHECK(lm_str_closest("device", words, 4, word_at) == NULL);       /* nothing close */
    CHECK(lm_str_closest("x", words, 0, word_at) == NULL);
}
