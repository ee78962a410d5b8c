/* nodes/sd3/prompt_weights.c — ComfyUI's emphasis syntax: "(text)", "(text:1.3)", "\(".
 *
 * ../shared/golden/TOKENS.md §1 is the specification, followed literally:
 *   1. "\)" and "\(" become private markers (bytes 0xFE and 0xFF, which UTF-8 never uses;
 *      the text is re-encoded first so invalid input cannot contain them);
 *   2. a depth counter (never clamped, so a stray ")" makes later parentheses plain text)
 *      cuts the text into top-level pieces; an unclosed "(" still starts a piece;
 *   3. a piece "( ... )" is a group: weight outer * 1.1, or the number after the inner
 *      text's last ':' (index > 0) when Python's float() accepts it — absolute, not
 *      multiplied — and the inner text is parsed again at that weight;
 *   4. markers become literal "(" / ")" in the emitted segments.
 * Pieces are contiguous ranges of the escaped text, so the parser works on ranges and
 * copies only what it emits. Weights are doubles computed as Python does (1.0 * 1.1 * 1.1
 * = 1.2100000000000002). Recursion depth is capped at 1000 (Python's own limit is what
 * stops ComfyUI there). */
#include "core/base/alloc.h"
#include "nodes/sd3/tokenizer.h"
#include "nodes/sd3/tokenizer_internal.h"

#include <string.h>

#define MARK_CLOSE ((char)0xFE) /* escaped ")" */
#define MARK_OPEN  ((char)0xFF) /* escaped "(" */
#define MAX_DEPTH  1000

typedef struct {
    lm_prompt_segment *items;
    size_t n, cap;
} segment_list;

/* Valid UTF-8 copy of text with escapes turned into markers. */
static char *escape_text(const char *text, size_t *len_out)
{
    size_t n = strlen(text), k = 0;
    char *out = lm_malloc(n * 3 + 1); /* a bad byte becomes the 3-byte U+FFFD */
    if (!out)
        return NULL;
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        if (u[i] == '\\' && (u[i + 1] == ')' || u[i + 1] == '(')) {
            out[k++] = u[i + 1] == ')' ? MARK_CLOSE : MARK_OPEN;
            i += 2;
            continue;
        }
        uint32_t cp;
        i += lm_tokenizer__utf8_decode(u + i, n - i, &cp);
        k += lm_tokenizer__utf8_encode(cp, out + k);
    }
    out[k] = '\0';
    *len_out = k;
    return out;
}

static lm_status emit(segment_list *list, const char *s, size_t n, double weight, lm_error *err)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 16;
        lm_prompt_segment *p = lm_realloc(list->items, cap * sizeof(*p));
        if (!p)
            return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for %zu prompt segments", cap);
        list->items = p;
        list->cap = cap;
    }
    char *text = lm_malloc(n + 1);
    if (!text)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for a prompt segment");
    for (size_t i = 0; i < n; i++)
        text[i] = s[i] == MARK_CLOSE ? ')' : s[i] == MARK_OPEN ? '(' : s[i];
    text[n] = '\0';
    list->items[list->n++] = (lm_prompt_segment){ text, weight };
    return LM_OK;
}

/* End of the top-level piece that starts at s[0] (TOKENS.md §1 step 2). The depth carries
 * over from piece to piece, as the counter in the reference is never reset. */
static size_t piece_end(const char *s, size_t n, long *depth)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '(') {
            if (*depth == 0 && i > 0)
                return i; /* "(" at depth 0 closes the text before it */
            ++*depth;
        } else if (s[i] == ')') {
            if (--*depth == 0)
                return i + 1;
        }
    }
    return n;
}

static lm_status parse_range(const char *s, size_t n, double weight, int depth, segment_list *list,
                             lm_error *err);

/* A "( ... )" piece: weight, optional ":number", then its inside. */
static lm_status parse_group(const char *s, size_t n, double outer, int depth, segment_list *list,
                             lm_error *err)
{
    const char *in = s + 1;
    size_t len = n - 2;
    double w = outer * 1.1, parsed;
    const char *colon = NULL;
    for (size_t i = len; i > 0 && !colon; i--)
        colon = in[i - 1] == ':' ? in + i - 1 : NULL;
    if (colon && colon > in &&
        lm_tokenizer__parse_float(colon + 1, len - (size_t)(colon - in) - 1, &parsed)) {
        w = parsed;
        len = (size_t)(colon - in);
    }
    return parse_range(in, len, w, depth + 1, list, err);
}

static lm_status parse_range(const char *s, size_t n, double weight, int depth, segment_list *list,
                             lm_error *err)
{
    if (depth > MAX_DEPTH)
        return lm_errorf(err, LM_ELIMIT, "prompt_too_deep",
                         "prompt nests parentheses more than %d deep", MAX_DEPTH);
    long level = 0;
    lm_status st = LM_OK;
    for (size_t i = 0; i < n && !st;) {
        size_t end = i + piece_end(s + i, n - i, &level);
        const char *p = s + i;
        size_t len = end - i;
        if (len >= 2 && p[0] == '(' && p[len - 1] == ')')
            st = parse_group(p, len, weight, depth, list, err);
        else
            st = emit(list, p, len, weight, err);
        i = end;
    }
    return st;
}

lm_status lm_prompt_weights_parse(const char *text, lm_prompt_segment **segments_out, size_t *n_out,
                                  lm_error *err)
{
    segment_list list = { 0 };
    size_t len;
    *segments_out = NULL;
    *n_out = 0;
    char *esc = escape_text(text, &len);
    if (!esc)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory parsing a %zu-byte prompt",
                         strlen(text));
    lm_status st = parse_range(esc, len, 1.0, 0, &list, err);
    lm_free(esc);
    if (st) {
        lm_prompt_segments_free(list.items, list.n);
        return st;
    }
    *segments_out = list.items;
    *n_out = list.n;
    return LM_OK;
}

void lm_prompt_segments_free(lm_prompt_segment *segments, size_t n)
{
    for (size_t i = 0; segments && i < n; i++)
        lm_free(segments[i].text);
    lm_free(segments);
}
