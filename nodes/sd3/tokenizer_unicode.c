/* nodes/sd3/tokenizer_unicode.c — Unicode helpers of the tokenizers: UTF-8, character
 * classes, Python str.lower, NFC, Python float(), and the string -> id map.
 *
 * The classes and mappings come from generated tables (tokenizer_unicode_data.c) made from
 * Python 3.11's unicodedata (Unicode 14.0.0) and the regex module, the versions the golden
 * tokenizations were produced with; each lookup is a binary search. NFC follows UAX #15:
 * full canonical decomposition, canonical ordering by combining class, then canonical
 * composition with Hangul done arithmetically. Lowercasing reproduces Python's str.lower,
 * including U+0130 -> "i\u0307" and the final-sigma rule. */
#include "core/base/alloc.h"
#include "core/base/hash.h"
#include "nodes/sd3/tokenizer_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 and code point arrays ---- */

void lm_tokenizer__text_fini(lm_tokenizer__text *t)
{
    lm_free(t->cp);
    t->cp = NULL;
    t->len = t->cap = 0;
}

lm_status lm_tokenizer__text_push(lm_tokenizer__text *t, uint32_t cp, lm_error *err)
{
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        uint32_t *p = lm_realloc(t->cp, cap * sizeof(*p));
        if (!p)
            return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for %zu characters", cap);
        t->cp = p;
        t->cap = cap;
    }
    t->cp[t->len++] = cp;
    return LM_OK;
}

size_t lm_tokenizer__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t need = c < 0x80                ? 0
                  : c >= 0xC2 && c < 0xE0 ? 1
                  : c >= 0xE0 && c < 0xF0 ? 2
                  : c >= 0xF0 && c < 0xF5 ? 3
                                          : 9;
    if (need == 0) {
        *cp = c;
        return 1;
    }
    uint32_t v = c & (0x3Fu >> need);
    for (size_t i = 1; i <= need; i++) {
        if (need == 9 || i >= n || (s[i] & 0xC0) != 0x80)
            goto bad;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    /* overlong 3/4-byte forms, surrogates and values past U+10FFFF */
    if ((need == 2 && v < 0x800) || (v >= 0xD800 && v <= 0xDFFF) || (need == 3 && v < 0x10000) ||
        v > 0x10FFFF)
        goto bad;
    *cp = v;
    return need + 1;
bad:
    *cp = 0xFFFD;
    return 1;
}

size_t lm_tokenizer__utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

lm_status lm_tokenizer__text_from_utf8(lm_tokenizer__text *t, const char *s, size_t n,
                                       lm_error *err)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += lm_tokenizer__utf8_decode(u + i, n - i, &cp);
        lm_status st = lm_tokenizer__text_push(t, cp, err);
        if (st)
            return st;
    }
    return LM_OK;
}

/* ---- table lookups ---- */

unsigned lm_tokenizer__uclass(uint32_t cp)
{
    const uint32_t *r = lm_tokenizer__class_ranges;
    size_t lo = 0, hi = lm_tokenizer__class_ranges_count; /* r[lo] starts <= cp < r[hi] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((r[mid] >> 8) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return r[lo] & 0xFF;
}

/* Index of key in a table of `stride`-word rows sorted by the first word, or -1. */
static long find_row(const uint32_t *rows, size_t count, size_t stride, uint32_t key)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t k = rows[mid * stride];
        if (k == key)
            return (long)mid;
        if (k < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static unsigned ccc_of(uint32_t cp)
{
    const uint32_t *r = lm_tokenizer__ccc_ranges;
    size_t lo = 0, hi = lm_tokenizer__ccc_ranges_count;
    if (cp < 0x300)
        return 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid * 3])
            hi = mid;
        else if (cp > r[mid * 3 + 1])
            lo = mid + 1;
        else
            return r[mid * 3 + 2];
    }
    return 0;
}

static uint32_t lower_of(uint32_t cp)
{
    long i = find_row(lm_tokenizer__lower_pairs, lm_tokenizer__lower_pairs_count, 2, cp);
    return i < 0 ? cp : lm_tokenizer__lower_pairs[i * 2 + 1];
}

/* ---- Python str.lower ---- */

/* Python's Final_Sigma: preceded by a cased letter (skipping case-ignorables) and not
 * followed by one. */
static bool is_final_sigma(const uint32_t *cp, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && (lm_tokenizer__uclass(cp[j - 1]) & LM_UC_IGNORABLE))
        j--;
    if (j == 0 || !(lm_tokenizer__uclass(cp[j - 1]) & LM_UC_CASED))
        return false;
    for (j = i + 1; j < n; j++) {
        unsigned c = lm_tokenizer__uclass(cp[j]);
        if (!(c & LM_UC_IGNORABLE))
            return !(c & LM_UC_CASED);
    }
    return true;
}

lm_status lm_tokenizer__lower(const uint32_t *cp, size_t n, lm_tokenizer__text *out, lm_error *err)
{
    lm_status st = LM_OK;
    for (size_t i = 0; i < n && !st; i++) {
        if (cp[i] == 0x130) { /* the one multi-character lowercase (SpecialCasing) */
            st = lm_tokenizer__text_push(out, 'i', err);
            if (!st)
                st = lm_tokenizer__text_push(out, 0x307, err);
        } else if (cp[i] == 0x3A3) {
            st = lm_tokenizer__text_push(out, is_final_sigma(cp, n, i) ? 0x3C2 : 0x3C3, err);
        } else {
            st = lm_tokenizer__text_push(
                out, cp[i] < 0x80 && (cp[i] < 'A' || cp[i] > 'Z') ? cp[i] : lower_of(cp[i]), err);
        }
    }
    return st;
}

/* ---- NFC (UAX #15) ---- */

enum {
    HANGUL_S = 0xAC00,
    HANGUL_L = 0x1100,
    HANGUL_V = 0x1161,
    HANGUL_T = 0x11A7,
    HANGUL_LCOUNT = 19,
    HANGUL_VCOUNT = 21,
    HANGUL_TCOUNT = 28,
    HANGUL_NCOUNT = HANGUL_VCOUNT * HANGUL_TCOUNT,
    HANGUL_SCOUNT = HANGUL_LCOUNT * HANGUL_NCOUNT
};

static lm_status decompose_one(uint32_t cp, lm_tokenizer__text *out, lm_error *err)
{
    lm_status st = LM_OK;
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SCOUNT) {
        uint32_t s = cp - HANGUL_S;
        st = lm_tokenizer__text_push(out, HANGUL_L + s / HANGUL_NCOUNT, err);
        if (!st)
            st = lm_tokenizer__text_push(out, HANGUL_V + (s % HANGUL_NCOUNT) / HANGUL_TCOUNT, err);
        if (!st && s % HANGUL_TCOUNT)
            st = lm_tokenizer__text_push(out, HANGUL_T + s % HANGUL_TCOUNT, err);
        return st;
    }
    long i = cp < 0xC0
                 ? -1
                 : find_row(lm_tokenizer__decomp_keys, lm_tokenizer__decomp_keys_count, 1, cp);
    if (i < 0)
        return lm_tokenizer__text_push(out, cp, err);
    for (unsigned k = lm_tokenizer__decomp_offsets[i];
         k < lm_tokenizer__decomp_offsets[i + 1] && !st; k++)
        st = lm_tokenizer__text_push(out, lm_tokenizer__decomp_pool[k], err);
    return st;
}

/* Stable insertion sort of each run of non-starters by combining class. */
static void canonical_order(uint32_t *cp, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        unsigned c = ccc_of(cp[i]);
        if (c == 0)
            continue;
        uint32_t v = cp[i];
        size_t j = i;
        while (j > 0 && ccc_of(cp[j - 1]) > c) {
            cp[j] = cp[j - 1];
            j--;
        }
        cp[j] = v;
    }
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LCOUNT && b >= HANGUL_V &&
        b < HANGUL_V + HANGUL_VCOUNT)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_VCOUNT + (b - HANGUL_V)) * HANGUL_TCOUNT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SCOUNT && (a - HANGUL_S) % HANGUL_TCOUNT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_TCOUNT)
        return a + (b - HANGUL_T);
    const uint32_t *t = lm_tokenizer__comp_triples;
    size_t lo = 0, hi = lm_tokenizer__comp_triples_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *row = t + mid * 3;
        if (row[0] == a && row[1] == b)
            return row[2];
        if (row[0] < a || (row[0] == a && row[1] < b))
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Canonical composition in place; returns the new length. A character combines with the
 * last starter when nothing between them blocks it (UAX #15, D117). */
static size_t compose(uint32_t *cp, size_t n)
{
    if (n == 0)
        return 0;
    size_t starter = 0, out = 1;
    int last_ccc = ccc_of(cp[0]) ? 256 : 0;
    for (size_t i = 1; i < n; i++) {
        int c = (int)ccc_of(cp[i]);
        uint32_t comp = compose_pair(cp[starter], cp[i]);
        if (comp && (last_ccc < c || last_ccc == 0)) {
            cp[starter] = comp;
            continue;
        }
        if (c == 0)
            starter = out;
        last_ccc = c;
        cp[out++] = cp[i];
    }
    return out;
}

lm_status lm_tokenizer__nfc(lm_tokenizer__text *t, lm_error *err)
{
    bool simple = true; /* below U+0300 every text is already NFC */
    for (size_t i = 0; i < t->len && simple; i++)
        simple = t->cp[i] < 0x300;
    if (simple)
        return LM_OK;
    lm_tokenizer__text d = { 0 };
    lm_status st = LM_OK;
    for (size_t i = 0; i < t->len && !st; i++)
        st = decompose_one(t->cp[i], &d, err);
    if (st) {
        lm_tokenizer__text_fini(&d);
        return st;
    }
    canonical_order(d.cp, d.len);
    d.len = compose(d.cp, d.len);
    lm_tokenizer__text_fini(t);
    *t = d;
    return LM_OK;
}

/* ---- Python float() ---- */

/* Python's str.isspace set, which float() strips after mapping it to ' '. */
static bool py_float_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static int decimal_value(uint32_t c)
{
    const uint32_t *z = lm_tokenizer__decimal_zeros;
    size_t lo = 0, hi = lm_tokenizer__decimal_zeros_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < z[mid])
            hi = mid;
        else if (c >= z[mid] + 10)
            lo = mid + 1;
        else
            return (int)(c - z[mid]);
    }
    return -1;
}

/* Digits with single '_' between digits; copies the digits to *o. Returns false when
 * there is no digit or an '_' is misplaced. */
static bool take_digits(const char **p, char **o)
{
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return false;
    while ((*s >= '0' && *s <= '9') || (*s == '_' && s[1] >= '0' && s[1] <= '9')) {
        if (*s != '_')
            *(*o)++ = *s;
        s++;
    }
    *p = s;
    return true;
}

static bool word_is(const char *s, const char *word)
{
    for (; *word; s++, word++)
        if ((*s | 0x20) != *word)
            return false;
    return *s == '\0';
}

/* Python's float grammar on ASCII (whitespace already stripped): sign, then inf, infinity,
 * nan, or digits with '_' separators, optional fraction and exponent. `o` has room for s. */
static bool parse_ascii_float(const char *s, char *o, double *out)
{
    char *digits = o;
    double sign = 1.0;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1.0 : 1.0;
    if (word_is(s, "inf") || word_is(s, "infinity") || word_is(s, "nan")) {
        *out = sign * ((s[0] | 0x20) == 'n' ? (double)NAN : (double)INFINITY);
        return true;
    }
    bool int_part = take_digits(&s, &o), frac_part = false;
    if (*s == '.') {
        *o++ = *s++;
        frac_part = take_digits(&s, &o);
    }
    if (!int_part && !frac_part)
        return false;
    if (*s == 'e' || *s == 'E') {
        *o++ = *s++;
        if (*s == '+' || *s == '-')
            *o++ = *s++;
        if (!take_digits(&s, &o))
            return false;
    }
    *o = '\0';
    if (*s != '\0')
        return false;
    *out = sign * strtod(digits, NULL); /* glibc strtod rounds correctly, like Python */
    return true;
}

/* Python's float(): non-ASCII whitespace becomes ' ' and decimal digits of any script
 * become ASCII digits (any other non-ASCII character fails), then ASCII whitespace is
 * stripped (0x1C..0x1F are not, and fail the parse). */
static bool map_to_ascii(const char *text, size_t n, char *buf)
{
    const unsigned char *u = (const unsigned char *)text;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        i += lm_tokenizer__utf8_decode(u + i, n - i, &c);
        int d = c < 0x80 ? -1 : decimal_value(c);
        if (c >= 0x80 && d < 0 && !py_float_space(c))
            return false;
        buf[k++] = c < 0x80 ? (char)c : d >= 0 ? (char)('0' + d) : ' ';
    }
    buf[k] = '\0';
    return true;
}

bool lm_tokenizer__parse_float(const char *text, size_t n, double *out)
{
    char *buf = lm_malloc(2 * n + 2);
    if (!buf)
        return false;
    bool ok = map_to_ascii(text, n, buf);
    if (ok) {
        char *s = buf, *e = buf + strlen(buf);
        while (s < e && strchr(" \t\n\r\v\f", *s))
            s++;
        while (e > s && strchr(" \t\n\r\v\f", e[-1]))
            *--e = '\0';
        ok = parse_ascii_float(s, buf + n + 1, out);
    }
    lm_free(buf);
    return ok;
}

/* ---- id list ---- */

lm_status lm_tokenizer__ids_push(lm_tokenizer__ids *ids, int32_t id, lm_error *err)
{
    if (ids->len == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *p = lm_realloc(ids->v, cap * sizeof(*p));
        if (!p)
            return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for %zu token ids", cap);
        ids->v = p;
        ids->cap = cap;
    }
    ids->v[ids->len++] = id;
    return LM_OK;
}

/* ---- string -> id map ---- */

lm_status lm_tokenizer__map_init(lm_tokenizer__map *m, size_t expected, lm_error *err)
{
    memset(m, 0, sizeof(*m));
    size_t size = 64;
    while (size < expected * 2)
        size *= 2;
    m->slots = lm_calloc(size, sizeof(*m->slots));
    m->entries = lm_malloc(expected * sizeof(*m->entries) + sizeof(*m->entries));
    m->pool = lm_malloc(expected * 8 + 64);
    if (!m->slots || !m->entries || !m->pool) {
        lm_tokenizer__map_fini(m);
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for a %zu-entry vocabulary",
                         expected);
    }
    m->mask = size - 1;
    m->cap = expected + 1;
    m->pool_cap = expected * 8 + 64;
    return LM_OK;
}

void lm_tokenizer__map_fini(lm_tokenizer__map *m)
{
    lm_free(m->slots);
    lm_free(m->entries);
    lm_free(m->pool);
    memset(m, 0, sizeof(*m));
}

static size_t map_find_slot(const lm_tokenizer__map *m, const char *key, size_t len)
{
    size_t h = (size_t)lm_hash_bytes(key, len, 0) & m->mask;
    for (;; h = (h + 1) & m->mask) {
        uint32_t s = m->slots[h];
        if (s == 0)
            return h;
        const struct lm_tokenizer__entry *e = &m->entries[s - 1];
        if (e->len == len && memcmp(m->pool + e->off, key, len) == 0)
            return h;
    }
}

static bool map_grow(lm_tokenizer__map *m, size_t len)
{
    if (m->count == m->cap) {
        void *p = lm_realloc(m->entries, m->cap * 2 * sizeof(*m->entries));
        if (!p)
            return false;
        m->entries = p;
        m->cap *= 2;
    }
    if (m->pool_len + len > m->pool_cap) {
        size_t cap = (m->pool_cap + len) * 2;
        char *p = lm_realloc(m->pool, cap);
        if (!p)
            return false;
        m->pool = p;
        m->pool_cap = cap;
    }
    if ((m->count + 1) * 2 <= m->mask + 1)
        return true;
    size_t size = (m->mask + 1) * 2;
    uint32_t *slots = lm_calloc(size, sizeof(*slots)), *old = m->slots;
    if (!slots)
        return false;
    m->slots = slots;
    m->mask = size - 1;
    for (size_t i = 0; i < m->count; i++) {
        const struct lm_tokenizer__entry *e = &m->entries[i];
        m->slots[map_find_slot(m, m->pool + e->off, e->len)] = (uint32_t)i + 1;
    }
    lm_free(old);
    return true;
}

lm_status lm_tokenizer__map_put(lm_tokenizer__map *m, const char *key, size_t len, int32_t value,
                                lm_error *err)
{
    if (len > UINT32_MAX / 2 || !map_grow(m, len))
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for a vocabulary entry");
    size_t h = map_find_slot(m, key, len);
    if (m->slots[h]) {
        m->entries[m->slots[h] - 1].value = value;
        return LM_OK;
    }
    struct lm_tokenizer__entry *e = &m->entries[m->count];
    e->off = (uint32_t)m->pool_len;
    e->len = (uint32_t)len;
    e->value = value;
    memcpy(m->pool + m->pool_len, key, len);
    m->pool_len += len;
    m->slots[h] = (uint32_t)++m->count;
    return LM_OK;
}

int32_t lm_tokenizer__map_get(const lm_tokenizer__map *m, const char *key, size_t len)
{
    if (!m->slots)
        return -1;
    uint32_t s = m->slots[map_find_slot(m, key, len)];
    return s ? m->entries[s - 1].value : -1;
}
