/* tests/sd3/test_tokenizer.c — CLIP and T5 tokenizers, emphasis parsing and SD3 chunk
 * assembly against ../shared/golden/tokens.json (every case, every field), plus unit tests
 * of the weight syntax (TOKENS.md §1), Unicode handling, loading and allocation failure.
 * A mismatch names the case, its prompt, the field and the first differing position. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/base/thread.h"
#include "nodes/sd3/tokenizer.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- golden file and tokenizers ---- */

typedef struct {
    cJSON *cases;
    lm_clip_tokenizer *clip;
    lm_t5_tokenizer *t5;
} golden;

static void golden_fini(golden *g)
{
    cJSON_Delete(g->cases);
    lm_clip_tokenizer_free(g->clip);
    lm_t5_tokenizer_free(g->t5);
}

/* Loads tokens.json and the tokenizers (t5_rel: path under ../shared, NULL for none). */
static bool golden_load(golden *g, bool clip, const char *t5_rel)
{
    lm_error err;
    char *buf;
    size_t len;
    memset(g, 0, sizeof(*g));
    const char *path = test_shared("golden/tokens.json");
    const char *clip_dir = clip ? test_shared("tokenizers/clip") : NULL;
    const char *t5_path = t5_rel ? test_shared(t5_rel) : NULL;
    if (!path || (clip && !clip_dir) || (t5_rel && !t5_path))
        return false;
    if (lm_file_read(path, 64u << 20, &buf, &len, &err)) {
        test__fail_err(__FILE__, __LINE__, "lm_file_read", err.code, &err);
        return false;
    }
    g->cases = cJSON_ParseWithLength(buf, len);
    lm_free(buf);
    if (!cJSON_IsArray(g->cases) || cJSON_GetArraySize(g->cases) == 0) {
        test__fail(__FILE__, __LINE__, "%s is not a non-empty JSON array", path);
        return false;
    }
    if (clip && lm_clip_tokenizer_load(&g->clip, clip_dir, &err)) {
        test__fail_err(__FILE__, __LINE__, "lm_clip_tokenizer_load", err.code, &err);
        return false;
    }
    if (t5_rel && lm_t5_tokenizer_load(&g->t5, t5_path, &err)) {
        test__fail_err(__FILE__, __LINE__, "lm_t5_tokenizer_load", err.code, &err);
        return false;
    }
    return true;
}

static const char *field_str(const cJSON *c, const char *name)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, name);
    return cJSON_IsString(f) ? f->valuestring : "?";
}

/* The prompt with control characters escaped, cut to fit one line. */
static const char *printable(const char *s, char *buf, size_t size)
{
    size_t k = 0;
    for (; *s && k + 8 < size; s++) {
        unsigned char c = (unsigned char)*s;
        k += (size_t)(c < 0x20 || c == 0x7F ? snprintf(buf + k, size - k, "\\x%02x", c)
                                            : snprintf(buf + k, size - k, "%c", c));
    }
    buf[k] = '\0';
    return buf;
}

static void case_fail(const cJSON *c, const char *field, size_t pos, const char *fmt, ...)
    LM_PRINTF(4, 5);

static void case_fail(const cJSON *c, const char *field, size_t pos, const char *fmt, ...)
{
    char p[400], what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    test__fail(__FILE__, __LINE__, "case %s (%s) prompt \"%s\": %s differs at position %zu: %s",
               field_str(c, "id"), field_str(c, "category"),
               printable(field_str(c, "prompt"), p, sizeof(p)), field, pos, what);
}

/* ids[0..n) against the JSON array of ints `exp`; reports the first difference. */
static bool ids_equal(const cJSON *c, const char *field, const cJSON *exp, const int32_t *ids,
                      size_t n)
{
    const cJSON *e = exp ? exp->child : NULL;
    size_t i = 0;
    for (; i < n && e; i++, e = e->next)
        if (!cJSON_IsNumber(e) || e->valuedouble != (double)ids[i])
            break;
    if (i == n && !e)
        return true;
    if (!exp)
        case_fail(c, field, 0, "field missing (%zu ids here)", n);
    else if (i < n && e)
        case_fail(c, field, i, "got %d, expected %g", (int)ids[i], e->valuedouble);
    else
        case_fail(c, field, i, "got %zu ids, expected %d", n, cJSON_GetArraySize(exp));
    return false;
}

static bool weights_equal(const cJSON *c, const char *field, const cJSON *exp, const double *w,
                          size_t n)
{
    const cJSON *e = exp ? exp->child : NULL;
    size_t i = 0;
    for (; i < n && e; i++, e = e->next)
        if (!cJSON_IsNumber(e) || !(fabs(e->valuedouble - w[i]) <= 1e-9))
            break;
    if (i == n && !e)
        return true;
    if (i < n && e)
        case_fail(c, field, i, "got %.17g, expected %.17g", w[i], e->valuedouble);
    else
        case_fail(c, field, i, "got %zu weights, expected %d", n,
                  exp ? cJSON_GetArraySize(exp) : 0);
    return false;
}

/* Chunks of 77 against a list of lists; `weights` selects which array of seq. */
static bool chunks_equal(const cJSON *c, const char *field, const cJSON *exp,
                         const lm_token_seq *seq, bool weights)
{
    size_t k = 0;
    const cJSON *chunk;
    bool ok = (size_t)cJSON_GetArraySize(exp) == seq->n_chunks;
    if (!ok)
        case_fail(c, field, 0, "got %zu chunks, expected %d", seq->n_chunks,
                  cJSON_GetArraySize(exp));
    cJSON_ArrayForEach(chunk, exp)
    {
        if (!ok || k >= seq->n_chunks)
            break;
        size_t at = k++ * LM_CLIP_CHUNK;
        ok = weights ? weights_equal(c, field, chunk, seq->weights + at, LM_CLIP_CHUNK)
                     : ids_equal(c, field, chunk, seq->ids + at, LM_CLIP_CHUNK);
    }
    return ok;
}

static bool all_one(const lm_token_seq *seq)
{
    for (size_t i = 0; i < seq->len; i++)
        if (seq->weights[i] != 1.0)
            return false;
    return !seq->weighted;
}

#define FOR_EACH_CASE(c, g) for (const cJSON *c = (g)->cases->child; c; c = c->next)
#define FIELD(c, name)      cJSON_GetObjectItemCaseSensitive((c), (name))

static void summary(int ok, int total, const char *what)
{
    test_note("%d/%d golden cases match (%s)", ok, total, what);
    CHECK_INT(ok, total);
}

/* ---- golden: raw tokenizer ids ---- */

void test_sd3_tokenizer__golden_clip_ids_raw(void)
{
    golden g;
    lm_error err;
    int ok = 0, total = 0;
    if (!golden_load(&g, true, NULL))
        goto out;
    FOR_EACH_CASE(c, &g)
    {
        int32_t *ids;
        size_t n;
        total++;
        CHECK_OK(lm_clip_tokenize(g.clip, field_str(c, "prompt"), &ids, &n, &err), &err);
        ok += ids_equal(c, "clip_ids_raw", FIELD(c, "clip_ids_raw"), ids, n);
        lm_free(ids);
    }
    summary(ok, total, "clip_ids_raw");
out:
    golden_fini(&g);
}

static void t5_raw(const char *t5_rel)
{
    golden g;
    lm_error err;
    int ok = 0, total = 0;
    if (!golden_load(&g, false, t5_rel))
        goto out;
    FOR_EACH_CASE(c, &g)
    {
        int32_t *ids;
        size_t n;
        total++;
        CHECK_OK(lm_t5_tokenize(g.t5, field_str(c, "prompt"), &ids, &n, &err), &err);
        ok += ids_equal(c, "t5_ids_raw", FIELD(c, "t5_ids_raw"), ids, n);
        lm_free(ids);
    }
    summary(ok, total, t5_rel);
out:
    golden_fini(&g);
}

void test_sd3_tokenizer__golden_t5_ids_raw_spiece(void)
{
    t5_raw("tokenizers/t5/spiece.model");
}

void test_sd3_tokenizer__golden_t5_ids_raw_tokenizer_json(void)
{
    t5_raw("tokenizers/t5/tokenizer.json");
}

/* ---- golden: weight parsing ---- */

static bool segments_equal(const cJSON *c, const lm_prompt_segment *s, size_t n)
{
    const cJSON *exp = FIELD(c, "weighted_segments"), *e;
    size_t i = 0;
    if (!exp) { /* absent: every weight is 1 */
        for (i = 0; i < n && s[i].weight == 1.0; i++) {
        }
        if (i < n)
            case_fail(c, "segment weights", i, "\"%s\" weighs %g, expected all 1", s[i].text,
                      s[i].weight);
        return i == n;
    }
    for (e = exp->child; e && i < n; e = e->next, i++) {
        const cJSON *t = cJSON_GetArrayItem(e, 0), *w = cJSON_GetArrayItem(e, 1);
        if (!cJSON_IsString(t) || strcmp(t->valuestring, s[i].text) != 0 || !cJSON_IsNumber(w) ||
            !(fabs(w->valuedouble - s[i].weight) <= 1e-9)) {
            case_fail(c, "weighted_segments", i, "got (\"%s\", %.17g), expected (\"%s\", %.17g)",
                      s[i].text, s[i].weight, cJSON_IsString(t) ? t->valuestring : "?",
                      cJSON_IsNumber(w) ? w->valuedouble : 0.0);
            return false;
        }
    }
    if (!e && i == n)
        return true;
    case_fail(c, "weighted_segments", i, "got %zu segments, expected %d", n,
              cJSON_GetArraySize(exp));
    return false;
}

void test_sd3_tokenizer__golden_weighted_segments(void)
{
    golden g;
    lm_error err;
    int ok = 0, total = 0;
    if (!golden_load(&g, false, NULL))
        goto out;
    FOR_EACH_CASE(c, &g)
    {
        lm_prompt_segment *segs;
        size_t n;
        total++;
        CHECK_OK(lm_prompt_weights_parse(field_str(c, "prompt"), &segs, &n, &err), &err);
        ok += segments_equal(c, segs, n);
        lm_prompt_segments_free(segs, n);
    }
    summary(ok, total, "weighted_segments");
out:
    golden_fini(&g);
}

/* ---- golden: the sequences fed to the encoders ---- */

static bool clip_case(const cJSON *c, const lm_token_seq *l, const lm_token_seq *gs)
{
    const cJSON *n_exp = FIELD(c, "clip_num_chunks"), *w = FIELD(c, "clip_weights");
    bool ok = true;
    if (!cJSON_IsNumber(n_exp) || n_exp->valuedouble != (double)l->n_chunks ||
        gs->n_chunks != l->n_chunks) {
        case_fail(c, "clip_num_chunks", 0, "got %zu (G %zu), expected %g", l->n_chunks,
                  gs->n_chunks, cJSON_IsNumber(n_exp) ? n_exp->valuedouble : -1.0);
        return false;
    }
    ok &= ids_equal(c, "clip_l_77", FIELD(c, "clip_l_77"), l->ids, LM_CLIP_CHUNK);
    ok &= ids_equal(c, "clip_g_77", FIELD(c, "clip_g_77"), gs->ids, LM_CLIP_CHUNK);
    if (l->n_chunks > 1) {
        ok &= chunks_equal(c, "clip_l_chunks", FIELD(c, "clip_l_chunks"), l, false);
        ok &= chunks_equal(c, "clip_g_chunks", FIELD(c, "clip_g_chunks"), gs, false);
    }
    if (w) {
        ok &= chunks_equal(c, "clip_weights (L)", w, l, true);
        ok &= chunks_equal(c, "clip_weights (G)", w, gs, true);
    } else if (!all_one(l) || !all_one(gs)) {
        case_fail(c, "clip_weights", 0, "weights other than 1 here, none expected");
        ok = false;
    }
    return ok;
}

static bool t5_case(const cJSON *c, const lm_token_seq *t5)
{
    const cJSON *len = FIELD(c, "t5_len"), *w = FIELD(c, "t5_weights");
    bool ok = ids_equal(c, "t5_77", FIELD(c, "t5_77"), t5->ids, t5->len);
    if (!cJSON_IsNumber(len) || len->valuedouble != (double)t5->len) {
        case_fail(c, "t5_len", 0, "got %zu, expected %g", t5->len,
                  cJSON_IsNumber(len) ? len->valuedouble : -1.0);
        ok = false;
    }
    if (w)
        ok &= weights_equal(c, "t5_weights", w, t5->weights, t5->len);
    else if (!all_one(t5)) {
        case_fail(c, "t5_weights", 0, "weights other than 1 here, none expected");
        ok = false;
    }
    return ok;
}

/* The one-encoder entry points give what lm_sd3_tokenize gives. */
static bool same_as_single(const golden *g, const char *prompt, const lm_sd3_tokens *t)
{
    lm_token_seq l, t5;
    lm_error err;
    bool ok = lm_sd3_tokenize_clip(g->clip, prompt, LM_CLIP_EOS, &l, &err) == LM_OK &&
              lm_sd3_tokenize_t5(g->t5, prompt, &t5, &err) == LM_OK;
    ok = ok && l.len == t->clip_l.len && !memcmp(l.ids, t->clip_l.ids, l.len * 4) &&
         t5.len == t->t5.len && !memcmp(t5.ids, t->t5.ids, t5.len * 4);
    if (!ok)
        test__fail(__FILE__, __LINE__, "lm_sd3_tokenize_clip/_t5 differ from lm_sd3_tokenize");
    lm_token_seq_fini(&l);
    lm_token_seq_fini(&t5);
    return ok;
}

void test_sd3_tokenizer__golden_sd3_sequences(void)
{
    golden g;
    lm_error err;
    int ok = 0, total = 0;
    if (!golden_load(&g, true, "tokenizers/t5/spiece.model"))
        goto out;
    FOR_EACH_CASE(c, &g)
    {
        lm_sd3_tokens t;
        total++;
        if (lm_sd3_tokenize(g.clip, g.t5, field_str(c, "prompt"), &t, &err)) {
            test__fail_err(__FILE__, __LINE__, "lm_sd3_tokenize", err.code, &err);
            continue;
        }
        bool good = clip_case(c, &t.clip_l, &t.clip_g);
        good &= t5_case(c, &t.t5);
        ok += good && same_as_single(&g, field_str(c, "prompt"), &t);
        lm_sd3_tokens_fini(&t);
    }
    summary(ok, total, "clip_l_77, clip_g_77, chunks, clip_weights, t5_77, t5_len, t5_weights");
out:
    golden_fini(&g);
}

/* ---- weight syntax (TOKENS.md §1) ---- */

/* Parses text and compares with "text", weight pairs given as a NULL-terminated list. */
static void expect_segments(const char *text, const char *const *want_text, const double *want_w,
                            size_t want_n)
{
    lm_prompt_segment *s;
    size_t n;
    lm_error err;
    REQUIRE_OK(lm_prompt_weights_parse(text, &s, &n, &err), &err);
    bool ok = n == want_n;
    for (size_t i = 0; ok && i < n; i++)
        ok = strcmp(s[i].text, want_text[i]) == 0 &&
             (s[i].weight == want_w[i] || (isnan(s[i].weight) && isnan(want_w[i])));
    if (!ok) {
        test__fail(__FILE__, __LINE__, "weights of \"%s\" differ; got %zu segments:", text, n);
        for (size_t i = 0; i < n; i++)
            test_note("  \"%s\" %.17g", s[i].text, s[i].weight);
    }
    lm_prompt_segments_free(s, n);
}

#define EXPECT(text, ...)                                                                          \
    do {                                                                                           \
        const struct {                                                                             \
            const char *t;                                                                         \
            double w;                                                                              \
        } want_[] = { __VA_ARGS__ };                                                               \
        const char *t_[LM_COUNTOF(want_) + 1];                                                     \
        double w_[LM_COUNTOF(want_) + 1];                                                          \
        for (size_t i_ = 0; i_ < LM_COUNTOF(want_); i_++) {                                        \
            t_[i_] = want_[i_].t;                                                                  \
            w_[i_] = want_[i_].w;                                                                  \
        }                                                                                          \
        expect_segments(text, t_, w_, LM_COUNTOF(want_));                                          \
    } while (0)

void test_sd3_tokenizer__weights_spec_examples(void)
{
    EXPECT("(red:1.3) car", { "red", 1.3 }, { " car", 1.0 });
    EXPECT("((x))", { "x", 1.0 * 1.1 * 1.1 });
    EXPECT("(((x)))", { "x", 1.3310000000000004 });
    EXPECT("((red:1.5) hat:0.8)", { "red", 1.5 }, { " hat", 0.8 });
    EXPECT("(bird:abc)", { "bird:abc", 1.1 });
    EXPECT("(:1.5)", { ":1.5", 1.1 });
    EXPECT("(time:12:30)", { "time:12", 30.0 });
    EXPECT("(red)dish", { "red", 1.1 }, { "dish", 1.0 });
    EXPECT("a (b:0.5) c", { "a ", 1.0 }, { "b", 0.5 }, { " c", 1.0 });
}

void test_sd3_tokenizer__weights_escapes_and_stray_parens(void)
{
    EXPECT("a \\(b\\) c", { "a (b) c", 1.0 });
    EXPECT("\\((x)\\)", { "(", 1.0 }, { "x", 1.1 }, { ")", 1.0 });
    EXPECT("a\\b", { "a\\b", 1.0 });                  /* other backslashes are text */
    EXPECT("a) (b)", { "a) (b)", 1.0 });              /* depth -1: parentheses are text until 0 */
    EXPECT("a (b c", { "a ", 1.0 }, { "(b c", 1.0 }); /* unclosed: own plain segment */
    EXPECT("(a (b) c", { "(a (b) c", 1.0 });
    EXPECT("((a)", { "(a", 1.1 });
    EXPECT("(a(b)", { "a", 1.1 }, { "(b", 1.1 });
}

void test_sd3_tokenizer__weights_empty_groups(void)
{
    lm_prompt_segment *s;
    size_t n;
    lm_error err;
    REQUIRE_OK(lm_prompt_weights_parse("()", &s, &n, &err), &err);
    CHECK_INT(n, 0);
    lm_prompt_segments_free(s, n);
    REQUIRE_OK(lm_prompt_weights_parse("", &s, &n, &err), &err);
    CHECK_INT(n, 0);
    lm_prompt_segments_free(s, n);
}

void test_sd3_tokenizer__weights_python_float(void)
{
    EXPECT("(x: 1_0 )", { "x", 10.0 });
    EXPECT("(x:1__0)", { "x:1__0", 1.1 });
    EXPECT("(x:1_)", { "x:1_", 1.1 });
    EXPECT("(x:inf)", { "x", (double)INFINITY });
    EXPECT("(x:-Infinity)", { "x", -(double)INFINITY });
    EXPECT("(x:NaN)", { "x", (double)NAN });
    EXPECT("(x:1e1_0)", { "x", 1e10 });
    EXPECT("(x:\xef\xbc\x91.\xef\xbc\x95)", { "x", 1.5 }); /* fullwidth digits */
    EXPECT("(x:\xc2\xa0"
           "2\xe3\x80\x80)",
           { "x", 2.0 });                    /* NBSP, ideographic space */
    EXPECT("(x:1\x1c)", { "x:1\x1c", 1.1 }); /* 0x1C is not stripped */
    EXPECT("(x:0x10)", { "x:0x10", 1.1 });
    EXPECT("(x:.5)", { "x", 0.5 });
    EXPECT("(x:5.)", { "x", 5.0 });
    EXPECT("(x:.)", { "x:.", 1.1 });
    EXPECT("(x:+1e-2)", { "x", 0.01 });
    EXPECT("(x:1e400)", { "x", (double)INFINITY });
    EXPECT("(x:1_000.000_1)", { "x", 1000.0001 });
    EXPECT("(x:1e)", { "x:1e", 1.1 });
    EXPECT("(x:infin)", { "x:infin", 1.1 });
}

void test_sd3_tokenizer__weights_depth_limit(void)
{
    lm_str s;
    lm_prompt_segment *segs;
    size_t n;
    lm_error err;
    lm_str_init(&s);
    for (int i = 0; i < 1001; i++)
        lm_str_append(&s, "(");
    lm_str_append(&s, "x");
    for (int i = 0; i < 1001; i++)
        lm_str_append(&s, ")");
    CHECK_INT(lm_prompt_weights_parse(lm_str_cstr(&s), &segs, &n, &err), LM_ELIMIT);
    CHECK_CONTAINS(err.msg, "1000");
    lm_str_fini(&s);
}

/* ---- Unicode handling beyond the golden prompts ---- */

static void expect_same_clip(const lm_clip_tokenizer *tok, const char *a, const char *b)
{
    int32_t *x, *y;
    size_t nx, ny;
    lm_error err;
    REQUIRE_OK(lm_clip_tokenize(tok, a, &x, &nx, &err), &err);
    REQUIRE_OK(lm_clip_tokenize(tok, b, &y, &ny, &err), &err);
    if (nx != ny || memcmp(x, y, nx * sizeof(*x)) != 0 || nx == 0)
        test__fail(__FILE__, __LINE__, "CLIP ids of \"%s\" (%zu) and \"%s\" (%zu) differ", a, nx, b,
                   ny);
    lm_free(x);
    lm_free(y);
}

static void expect_same_t5(const lm_t5_tokenizer *tok, const char *a, const char *b)
{
    int32_t *x, *y;
    size_t nx, ny;
    lm_error err;
    REQUIRE_OK(lm_t5_tokenize(tok, a, &x, &nx, &err), &err);
    REQUIRE_OK(lm_t5_tokenize(tok, b, &y, &ny, &err), &err);
    if (nx != ny || memcmp(x, y, nx * sizeof(*x)) != 0 || nx == 0)
        test__fail(__FILE__, __LINE__, "T5 ids of \"%s\" (%zu) and \"%s\" (%zu) differ", a, nx, b,
                   ny);
    lm_free(x);
    lm_free(y);
}

void test_sd3_tokenizer__clip_unicode_rules(void)
{
    golden g;
    if (!golden_load(&g, true, NULL))
        goto out;
    expect_same_clip(g.clip, "cafe\xcc\x81", "caf\xc3\xa9");          /* NFC */
    expect_same_clip(g.clip, "\xce\x9f\xce\x94\xce\x9f\xce\xa3",      /* ΟΔΟΣ */
                     "\xce\xbf\xce\xb4\xce\xbf\xcf\x82");             /* οδος: final ς */
    expect_same_clip(g.clip, "\xce\xa3\xce\x91", "\xcf\x83\xce\xb1"); /* ΣΑ: σα */
    expect_same_clip(g.clip, "\xc4\xb0stanbul", "i\xcc\x87stanbul");  /* İ -> i + U+0307 */
    expect_same_clip(g.clip,
                     "a\xe2\x80\x8b"
                     "b\xc2\xad"
                     "c",
                     "abc"); /* ZWSP, soft hyphen */
    expect_same_clip(g.clip,
                     "a\xe3\x80\x80"
                     "b\te",
                     "a b e");                                                         /* Zs, TAB */
    expect_same_clip(g.clip, "\xe7\x8c\xab\xe7\x8c\xab", "\xe7\x8c\xab \xe7\x8c\xab"); /* CJK */
    expect_same_clip(g.clip, "Hello  WORLD", "hello world");
    expect_same_clip(g.clip,
                     "a\xe2\x80\xa8"
                     "b",
                     "a b"); /* U+2028 splits */
    expect_same_clip(g.clip, "it'S", "it's");
    expect_same_clip(g.clip, "x \xcd\x85", "x"); /* U+0345: no regex alternative, dropped */
out:
    golden_fini(&g);
}

void test_sd3_tokenizer__clip_special_tokens(void)
{
    golden g;
    int32_t *ids;
    size_t n;
    lm_error err;
    if (!golden_load(&g, true, NULL))
        goto out;
    REQUIRE_OK(lm_clip_tokenize(g.clip, "a<|startoftext|>b<|endoftext|>", &ids, &n, &err), &err);
    CHECK_INT(n, 4);
    if (n == 4) {
        CHECK_INT(ids[1], LM_CLIP_BOS);
        CHECK_INT(ids[3], LM_CLIP_EOS);
        CHECK(ids[0] != ids[2]);
    }
    lm_free(ids);
out:
    golden_fini(&g);
}

void test_sd3_tokenizer__t5_normalisation(void)
{
    golden g;
    int32_t *ids;
    size_t n;
    lm_error err;
    if (!golden_load(&g, false, "tokenizers/t5/spiece.model"))
        goto out;
    expect_same_t5(g.t5, "\xef\xac\x81ne", "fine"); /* ligature */
    expect_same_t5(g.t5, "\xef\xbc\xa6\xef\xbc\xb5\xef\xbc\xac\xef\xbc\xac", "FULL");
    expect_same_t5(g.t5,
                   "a\xc2\xa0"
                   "b",
                   "a b");                    /* NBSP */
    expect_same_t5(g.t5, "cat   \t ", "cat"); /* strip right */
    expect_same_t5(g.t5, "a    b", "a b");
    expect_same_t5(g.t5, "cafe\xcc\x81", "caf\xc3\xa9");
    REQUIRE_OK(lm_t5_tokenize(g.t5, "\xf0\x9f\x90\xb6\xf0\x9f\x90\xb6", &ids, &n, &err), &err);
    CHECK_INT(n, 2); /* "▁" + one fused <unk> */
    if (n == 2)
        CHECK_INT(ids[1], LM_T5_UNK);
    lm_free(ids);
out:
    golden_fini(&g);
}

/* ---- assembly corner cases ---- */

void test_sd3_tokenizer__empty_prompt_and_no_t5(void)
{
    golden g;
    lm_sd3_tokens t;
    lm_error err;
    if (!golden_load(&g, true, NULL))
        goto out;
    REQUIRE_OK(lm_sd3_tokenize(g.clip, NULL, "", &t, &err), &err);
    CHECK_INT(t.clip_l.n_chunks, 1);
    CHECK_INT(t.clip_l.len, 77);
    CHECK_INT(t.clip_l.ids[0], LM_CLIP_BOS);
    CHECK_INT(t.clip_l.ids[76], LM_CLIP_EOS);
    CHECK_INT(t.clip_g.ids[1], LM_CLIP_EOS);
    CHECK_INT(t.clip_g.ids[2], 0);
    CHECK(!t.clip_l.weighted);
    CHECK_INT(t.t5.len, 0);
    lm_sd3_tokens_fini(&t);
out:
    golden_fini(&g);
}

/* ---- loading ---- */

static void link_shared(const char *dir, const char *name, const char *shared_rel)
{
    char path[1024];
    const char *src = test_shared(shared_rel);
    REQUIRE(src);
    REQUIRE(lm_path_join(path, sizeof(path), dir, name));
    CHECK(symlink(src, path) == 0);
}

void test_sd3_tokenizer__load_diffusers_folders(void)
{
    lm_error err;
    lm_clip_tokenizer *l, *g2;
    lm_t5_tokenizer *t5a, *t5b;
    REQUIRE_OK(lm_mkdirs("m/tokenizer", &err), &err);
    REQUIRE_OK(lm_mkdirs("m/tokenizer_2", &err), &err);
    REQUIRE_OK(lm_mkdirs("m/tokenizer_3", &err), &err);
    REQUIRE_OK(lm_mkdirs("json_only", &err), &err);
    link_shared("m/tokenizer", "vocab.json", "tokenizers/clip/vocab.json");
    link_shared("m/tokenizer", "merges.txt", "tokenizers/clip/merges.txt");
    link_shared("m/tokenizer_2", "vocab.json", "tokenizers/clip/vocab.json");
    link_shared("m/tokenizer_2", "merges.txt", "tokenizers/clip/merges.txt");
    link_shared("m/tokenizer_3", "spiece.model", "tokenizers/t5/spiece.model");
    link_shared("m/tokenizer_3", "tokenizer.json", "tokenizers/t5/tokenizer.json");
    link_shared("json_only", "tokenizer.json", "tokenizers/t5/tokenizer.json");
    REQUIRE_OK(lm_clip_tokenizer_load(&l, "m/tokenizer", &err), &err);
    CHECK_OK(lm_clip_tokenizer_load(&g2, "m/tokenizer_2", &err), &err);
    CHECK_OK(lm_t5_tokenizer_load(&t5a, "m/tokenizer_3", &err), &err);
    CHECK_OK(lm_t5_tokenizer_load(&t5b, "json_only", &err), &err);
    expect_same_t5(t5a, "a comfy armchair", "a comfy  armchair");
    expect_same_clip(l, "a comfy armchair", "A comfy armchair");
    lm_clip_tokenizer_free(l);
    lm_clip_tokenizer_free(g2);
    lm_t5_tokenizer_free(t5a);
    lm_t5_tokenizer_free(t5b);
}

void test_sd3_tokenizer__load_errors(void)
{
    lm_error err;
    lm_clip_tokenizer *clip = NULL;
    lm_t5_tokenizer *t5 = NULL;
    CHECK_INT(lm_clip_tokenizer_load(&clip, ".", &err), LM_ENOTFOUND);
    CHECK_CONTAINS(err.file, "vocab.json");
    CHECK_CONTAINS(err.hint, "merges.txt");
    CHECK(clip == NULL);
    CHECK_INT(lm_t5_tokenizer_load(&t5, ".", &err), LM_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "spiece.model");
    test_write_file("bad.model", "\x0a\xff\xff\xff\xff\xff\xff");
    CHECK_INT(lm_t5_tokenizer_load(&t5, "bad.model", &err), LM_EFORMAT);
    test_write_file("bad.json", "{\"model\": {\"type\": \"BPE\"}}");
    CHECK_INT(lm_t5_tokenizer_load(&t5, "bad.json", &err), LM_EFORMAT);
    CHECK_CONTAINS(err.msg, "Unigram");
    REQUIRE_OK(lm_mkdirs("c", &err), &err);
    test_write_file("c/vocab.json", "{\"a\": 0}");
    test_write_file("c/merges.txt", "#version: 0.2\n");
    CHECK_INT(lm_clip_tokenizer_load(&clip, "c", &err), LM_EFORMAT);
    CHECK(t5 == NULL && clip == NULL);
}

void test_sd3_tokenizer__load_time(void)
{
    lm_error err;
    lm_clip_tokenizer *clip;
    lm_t5_tokenizer *t5, *t5j;
    const char *cdir = test_shared("tokenizers/clip"), *tdir = test_shared("tokenizers/t5");
    const char *tjson = test_shared("tokenizers/t5/tokenizer.json");
    REQUIRE(cdir && tdir && tjson);
    double t0 = lm_time_now();
    REQUIRE_OK(lm_clip_tokenizer_load(&clip, cdir, &err), &err);
    double t1 = lm_time_now();
    REQUIRE_OK(lm_t5_tokenizer_load(&t5, tdir, &err), &err);
    double t2 = lm_time_now();
    REQUIRE_OK(lm_t5_tokenizer_load(&t5j, tjson, &err), &err);
    double t3 = lm_time_now();
    test_note("load: CLIP %.1f ms, T5 spiece.model %.1f ms, T5 tokenizer.json %.1f ms",
              (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3);
    CHECK(t2 - t0 < 2.0); /* ~25 ms in an optimised build; generous for sanitizers */
    lm_clip_tokenizer_free(clip);
    lm_t5_tokenizer_free(t5);
    lm_t5_tokenizer_free(t5j);
}

/* ---- allocation failure ---- */

void test_sd3_tokenizer__alloc_failures(void)
{
    golden g;
    lm_error err;
    const char *prompt = "a ((red:1.5) hat:0.8) on a (blue) table, caf\xc3\xa9 \xe7\x8c\xab";
    if (!golden_load(&g, true, "tokenizers/t5/spiece.model"))
        goto out;
    for (long n = 0; n < 10000; n++) {
        lm_sd3_tokens t;
        lm_alloc_fail_after(n);
        lm_status st = lm_sd3_tokenize(g.clip, g.t5, prompt, &t, &err);
        lm_alloc_fail_after(-1);
        if (st == LM_OK) {
            test_note("lm_sd3_tokenize survives failure of each of its %ld allocations", n);
            lm_sd3_tokens_fini(&t);
            break;
        }
        CHECK_INT(st, LM_ENOMEM);
        CHECK(t.clip_l.ids == NULL && t.t5.ids == NULL);
    }
out:
    golden_fini(&g);
}
