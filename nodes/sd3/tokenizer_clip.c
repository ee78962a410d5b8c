/* nodes/sd3/tokenizer_clip.c — the CLIP byte-level BPE tokenizer (CLIP-L and CLIP-G).
 *
 * Behaviour is transformers 4.x CLIPTokenizer without ftfy, "canonical" in
 * ../shared/golden/TOKENS.md §4: cut at literal special tokens; delete category C*
 * characters, turn whitespace into spaces, put spaces around CJK ideographs; NFC; split on
 * whitespace and lowercase each word like Python's str.lower; pre-tokenize with the CLIP
 * regex (contractions, letter runs, single digits, runs of other characters), written out
 * by hand over code point classes; map each piece's UTF-8 bytes through the GPT-2 byte
 * table, mark the last with "</w>", and merge by rank.
 *
 * BPE runs on vocabulary ids rather than strings: the 512 single-byte symbols (with and
 * without "</w>") and every merge result are vocabulary entries, so a merge is a lookup of
 * the 8-byte key (left id, right id) giving its rank, and merged[rank] gives the new id.
 * There is no word cache: a word costs a few lookups per merge, microseconds per prompt,
 * and without one the tokenizer stays immutable and shareable across threads. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "nodes/sd3/tokenizer.h"
#include "nodes/sd3/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#define CLIP_MAX_MERGES (49152 - 256 - 2) /* merges.txt lines transformers reads */
#define CLIP_MAX_FILE   (64u << 20)
#define CLIP_NO_RANK    INT32_MAX

struct lm_clip_tokenizer {
    lm_tokenizer__map vocab;  /* byte-encoded token text -> id */
    lm_tokenizer__map merges; /* (left id, right id) as 8 bytes -> rank */
    int32_t *merged;          /* [n_merges] id of each merge's result */
    size_t n_merges;
    int32_t byte_id[256], byte_end_id[256]; /* one-byte symbols, without / with "</w>" */
    int32_t bos, eos;
};

static const char *const SOT = "<|startoftext|>";
static const char *const EOT = "<|endoftext|>";

/* ---- loading ---- */

static lm_status read_in_dir(const char *dir, const char *name, char **buf, size_t *len,
                             lm_error *err)
{
    char path[4096];
    if (!lm_path_join(path, sizeof(path), dir, name))
        return lm_errorf(err, LM_EINVAL, NULL, "tokenizer path \"%s/%s\" is too long", dir, name);
    lm_status st = lm_file_read(path, CLIP_MAX_FILE, buf, len, err);
    if (st == LM_ENOTFOUND)
        lm_error_hint(err, "a CLIP tokenizer folder holds vocab.json and merges.txt (diffusers "
                           "tokenizer/ or tokenizer_2/)");
    return st;
}

static lm_status vocab_from_json(lm_clip_tokenizer *tok, const cJSON *root, lm_error *err)
{
    lm_status st = lm_tokenizer__map_init(&tok->vocab, (size_t)cJSON_GetArraySize(root), err);
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (st)
            break;
        double v = cJSON_IsNumber(item) ? item->valuedouble : -1.0;
        if (v < 0 || v > 1e8 || v != (double)(int32_t)v)
            return lm_errorf(err, LM_EFORMAT, "bad_vocab",
                             "vocab.json: token \"%.60s\" has no valid id; expected a "
                             "non-negative integer",
                             item->string ? item->string : "");
        st =
            lm_tokenizer__map_put(&tok->vocab, item->string, strlen(item->string), (int32_t)v, err);
    }
    return st;
}

static lm_status load_vocab(lm_clip_tokenizer *tok, const char *dir, lm_error *err)
{
    char *buf;
    size_t len;
    lm_status st = read_in_dir(dir, "vocab.json", &buf, &len, err);
    if (st)
        return st;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    lm_free(buf);
    if (!cJSON_IsObject(root))
        st = lm_errorf(err, LM_EFORMAT, "bad_vocab",
                       "%s/vocab.json is not a JSON object of token -> id; the tokenizer "
                       "folder is damaged",
                       dir);
    else
        st = vocab_from_json(tok, root, err);
    cJSON_Delete(root);
    return st;
}

/* GPT-2's byte table: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * for U+0100.. in byte order. */
static uint32_t byte_char(unsigned b, unsigned *next_extra)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174))
        return b;
    return 256 + (*next_extra)++;
}

static lm_status load_byte_ids(lm_clip_tokenizer *tok, lm_error *err)
{
    unsigned extra = 0;
    for (unsigned b = 0; b < 256; b++) {
        char s[16];
        size_t n = lm_tokenizer__utf8_encode(byte_char(b, &extra), s);
        tok->byte_id[b] = lm_tokenizer__map_get(&tok->vocab, s, n);
        memcpy(s + n, "</w>", 4);
        tok->byte_end_id[b] = lm_tokenizer__map_get(&tok->vocab, s, n + 4);
        if (tok->byte_id[b] < 0 || tok->byte_end_id[b] < 0)
            return lm_errorf(err, LM_EFORMAT, "bad_vocab",
                             "vocab.json lacks the symbol of byte 0x%02x; it is not a CLIP "
                             "byte-level BPE vocabulary",
                             b);
    }
    tok->bos = lm_tokenizer__map_get(&tok->vocab, SOT, strlen(SOT));
    tok->eos = lm_tokenizer__map_get(&tok->vocab, EOT, strlen(EOT));
    if (tok->bos < 0 || tok->eos < 0)
        return lm_errorf(err, LM_EFORMAT, "bad_vocab",
                         "vocab.json lacks <|startoftext|> or <|endoftext|>; it is not a CLIP "
                         "vocabulary");
    return LM_OK;
}

static lm_status add_merge(lm_clip_tokenizer *tok, const char *line, size_t len, size_t lineno,
                           lm_error *err)
{
    const char *sp = memchr(line, ' ', len);
    int32_t a = -1, b = -1, ab = -1;
    if (sp && sp > line && !memchr(sp + 1, ' ', len - (size_t)(sp - line) - 1)) {
        a = lm_tokenizer__map_get(&tok->vocab, line, (size_t)(sp - line));
        b = lm_tokenizer__map_get(&tok->vocab, sp + 1, len - (size_t)(sp - line) - 1);
        char joined[512];
        if (len < sizeof(joined)) {
            memcpy(joined, line, (size_t)(sp - line));
            memcpy(joined + (sp - line), sp + 1, len - (size_t)(sp - line) - 1);
            ab = lm_tokenizer__map_get(&tok->vocab, joined, len - 1);
        }
    }
    if (a < 0 || b < 0 || ab < 0)
        return lm_errorf(err, LM_EFORMAT, "bad_merges",
                         "merges.txt line %zu \"%.*s\" is not a merge of two vocab.json "
                         "symbols; vocab.json and merges.txt do not belong together",
                         lineno, (int)LM_MIN(len, 60), line);
    int32_t key[2] = { a, b };
    tok->merged[tok->n_merges] = ab;
    return lm_tokenizer__map_put(&tok->merges, (const char *)key, sizeof(key),
                                 (int32_t)tok->n_merges++, err);
}

static lm_status parse_merges(lm_clip_tokenizer *tok, const char *buf, size_t len, lm_error *err)
{
    lm_status st = LM_OK;
    const char *p = buf, *end = buf + len;
    size_t lineno = 0;
    while (!st && p < end && tok->n_merges < CLIP_MAX_MERGES) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        lineno++;
        if (lineno > 1 && n > 0) /* line 1 is the "#version" header */
            st = add_merge(tok, p, n, lineno, err);
        p = le + 1;
    }
    return st;
}

static lm_status load_merges(lm_clip_tokenizer *tok, const char *dir, lm_error *err)
{
    char *buf;
    size_t len;
    lm_status st = read_in_dir(dir, "merges.txt", &buf, &len, err);
    if (st)
        return st;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    lines = LM_MIN(lines, (size_t)CLIP_MAX_MERGES);
    tok->merged = lm_malloc(lines * sizeof(*tok->merged) + 1);
    st = tok->merged ? lm_tokenizer__map_init(&tok->merges, lines, err)
                     : lm_errorf(err, LM_ENOMEM, NULL, "out of memory for %zu merges", lines);
    if (!st)
        st = parse_merges(tok, buf, len, err);
    lm_free(buf);
    return st;
}

lm_status lm_clip_tokenizer_load(lm_clip_tokenizer **out, const char *dir, lm_error *err)
{
    *out = NULL;
    lm_clip_tokenizer *tok = lm_calloc(1, sizeof(*tok));
    if (!tok)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for a CLIP tokenizer");
    lm_status st = load_vocab(tok, dir, err);
    if (!st)
        st = load_byte_ids(tok, err);
    if (!st)
        st = load_merges(tok, dir, err);
    if (st) {
        lm_clip_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return LM_OK;
}

void lm_clip_tokenizer_free(lm_clip_tokenizer *tok)
{
    if (!tok)
        return;
    lm_tokenizer__map_fini(&tok->vocab);
    lm_tokenizer__map_fini(&tok->merges);
    lm_free(tok->merged);
    lm_free(tok);
}

/* ---- BPE ---- */

static int32_t pair_rank(const lm_clip_tokenizer *tok, int32_t a, int32_t b)
{
    int32_t key[2] = { a, b };
    int32_t r = lm_tokenizer__map_get(&tok->merges, (const char *)key, sizeof(key));
    return r < 0 ? CLIP_NO_RANK : r;
}

/* Work arrays of one word: symbols, rank of each adjacent pair, and per round which
 * symbols are new and where the others came from (so unchanged pairs keep their rank). */
typedef struct {
    int32_t *sym, *rank;
    size_t *from;
    unsigned char *fresh;
    size_t n;
} bpe_word;

/* Merges every occurrence of the pair ranked `best`, left to right, and updates ranks. */
static void merge_round(const lm_clip_tokenizer *tok, bpe_word *w, int32_t best)
{
    size_t k = 0;
    for (size_t i = 0; i < w->n; k++) {
        if (i + 1 < w->n && w->rank[i] == best) {
            w->sym[k] = tok->merged[best];
            w->fresh[k] = 1;
            i += 2;
        } else {
            w->sym[k] = w->sym[i];
            w->fresh[k] = 0;
            w->from[k] = i++;
        }
    }
    w->n = k;
    for (k = 0; k + 1 < w->n; k++)
        w->rank[k] = w->fresh[k] || w->fresh[k + 1] ? pair_rank(tok, w->sym[k], w->sym[k + 1])
                                                    : w->rank[w->from[k]];
}

static void bpe_run(const lm_clip_tokenizer *tok, bpe_word *w)
{
    for (size_t i = 0; i + 1 < w->n; i++)
        w->rank[i] = pair_rank(tok, w->sym[i], w->sym[i + 1]);
    for (;;) {
        int32_t best = CLIP_NO_RANK;
        for (size_t i = 0; i + 1 < w->n; i++)
            best = LM_MIN(best, w->rank[i]);
        if (best == CLIP_NO_RANK)
            return;
        merge_round(tok, w, best);
    }
}

static lm_status bpe_bytes(const lm_clip_tokenizer *tok, const unsigned char *b, size_t n,
                           lm_tokenizer__ids *out, lm_error *err)
{
    size_t each = 2 * sizeof(int32_t) + sizeof(size_t) + 1;
    char *mem = lm_malloc(n * each);
    if (!mem)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for a %zu-byte word", n);
    bpe_word w = { .sym = (int32_t *)mem, .n = n };
    w.from = (size_t *)(mem + n * 2 * sizeof(int32_t)); /* size_t after int32 pairs: aligned */
    w.rank = w.sym + n;
    w.fresh = (unsigned char *)(w.from + n);
    for (size_t i = 0; i < n; i++)
        w.sym[i] = i + 1 == n ? tok->byte_end_id[b[i]] : tok->byte_id[b[i]];
    bpe_run(tok, &w);
    lm_status st = LM_OK;
    for (size_t i = 0; i < w.n && !st; i++)
        st = lm_tokenizer__ids_push(out, w.sym[i], err);
    lm_free(mem);
    return st;
}

/* ---- text cleaning and pre-tokenization ---- */

static bool is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* TOKENS.md §4 steps 2-4: delete C*, whitespace to ' ', spaces around CJK, then NFC. */
static lm_status clean_text(const char *s, size_t n, lm_tokenizer__text *out, lm_error *err)
{
    lm_tokenizer__text raw = { 0 };
    lm_status st = lm_tokenizer__text_from_utf8(&raw, s, n, err);
    for (size_t i = 0; i < raw.len && !st; i++) {
        uint32_t c = raw.cp[i];
        unsigned cls = lm_tokenizer__uclass(c);
        if (cls & LM_UC_DELETE)
            continue;
        if (cls & LM_UC_SPACE)
            c = ' ';
        bool cjk = is_cjk(c);
        if (cjk)
            st = lm_tokenizer__text_push(out, ' ', err);
        if (!st)
            st = lm_tokenizer__text_push(out, c, err);
        if (!st && cjk)
            st = lm_tokenizer__text_push(out, ' ', err);
    }
    lm_tokenizer__text_fini(&raw);
    return st ? st : lm_tokenizer__nfc(out, err);
}

/* Length of the literal ASCII text lit at w[0..n), or 0. */
static size_t match_literal(const uint32_t *w, size_t n, const char *lit)
{
    size_t k = 0;
    for (; lit[k]; k++)
        if (k >= n || w[k] != (unsigned char)lit[k])
            return 0;
    return k;
}

/* 's 't 're 've 'm 'll 'd, case-insensitive as the regex is (so "'ſ" counts as "'s"). */
static size_t match_contraction(const uint32_t *w, size_t n)
{
    if (n < 2 || w[0] != '\'')
        return 0;
    uint32_t a = w[1] < 0x80 ? (w[1] | 0x20) : w[1], b = n > 2 && w[2] < 0x80 ? w[2] | 0x20 : 0;
    if (a == 's' || a == 0x17F || a == 't' || a == 'm' || a == 'd')
        return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* Length of the regex match at w[0]: contraction | [\p{L}]+ | [\p{N}] | [^\s\p{L}\p{N}]+,
 * or 0 when none matches there (findall then moves on one character). Words hold no
 * whitespace, so \s never matters here. */
static size_t match_piece(const uint32_t *w, size_t n)
{
    const unsigned other = LM_UC_LETTER | LM_UC_NUMBER | LM_UC_UNMATCHED;
    size_t k = match_contraction(w, n);
    if (k)
        return k;
    unsigned cls = lm_tokenizer__uclass(w[0]);
    if (cls & LM_UC_LETTER) {
        for (k = 1; k < n && (lm_tokenizer__uclass(w[k]) & LM_UC_LETTER); k++) {
        }
        return k;
    }
    if (cls & (LM_UC_NUMBER | LM_UC_UNMATCHED))
        return cls & LM_UC_NUMBER ? 1 : 0;
    for (k = 1; k < n && !(lm_tokenizer__uclass(w[k]) & other); k++) {
    }
    return k;
}

static lm_status encode_piece(const lm_clip_tokenizer *tok, const uint32_t *w, size_t n,
                              lm_tokenizer__ids *out, lm_error *err)
{
    char small[256];
    char *buf = n * 4 <= sizeof(small) ? small : lm_malloc(n * 4);
    if (!buf)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for a %zu-character word", n);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += lm_tokenizer__utf8_encode(w[i], buf + len);
    lm_status st = bpe_bytes(tok, (const unsigned char *)buf, len, out, err);
    if (buf != small)
        lm_free(buf);
    return st;
}

/* One lowercased word through the regex; literal special tokens map to their ids. */
static lm_status encode_word(const lm_clip_tokenizer *tok, const uint32_t *w, size_t n,
                             lm_tokenizer__ids *out, lm_error *err)
{
    lm_status st = LM_OK;
    for (size_t i = 0; i < n && !st;) {
        size_t k = match_literal(w + i, n - i, SOT);
        int32_t special = k ? tok->bos : -1;
        if (!k && (k = match_literal(w + i, n - i, EOT)) > 0)
            special = tok->eos;
        if (special >= 0) {
            st = lm_tokenizer__ids_push(out, special, err);
        } else if ((k = match_piece(w + i, n - i)) > 0) {
            st = encode_piece(tok, w + i, k, out, err);
        } else {
            k = 1; /* a character no alternative matches is dropped, as findall does */
        }
        i += k;
    }
    return st;
}

static bool is_split_space(uint32_t c)
{
    return c == ' ' || c == 0x2028 || c == 0x2029; /* what str.split() still sees */
}

/* A piece of text without literal special tokens: clean, split, lowercase, encode. */
static lm_status encode_text(const lm_clip_tokenizer *tok, const char *s, size_t n,
                             lm_tokenizer__ids *out, lm_error *err)
{
    lm_tokenizer__text clean = { 0 }, lower = { 0 };
    lm_status st = clean_text(s, n, &clean, err);
    for (size_t i = 0; i < clean.len && !st;) {
        size_t j = i;
        while (j < clean.len && !is_split_space(clean.cp[j]))
            j++;
        lower.len = 0;
        if (j > i)
            st = lm_tokenizer__lower(clean.cp + i, j - i, &lower, err);
        if (!st && lower.len)
            st = encode_word(tok, lower.cp, lower.len, out, err);
        i = j + 1;
    }
    lm_tokenizer__text_fini(&clean);
    lm_tokenizer__text_fini(&lower);
    return st;
}

/* The first literal special token in s, or NULL. */
static const char *next_special(const char *s, int32_t *id, const lm_clip_tokenizer *tok)
{
    const char *a = strstr(s, SOT), *b = strstr(s, EOT);
    if (a && (!b || a < b)) {
        *id = tok->bos;
        return a;
    }
    *id = tok->eos;
    return b;
}

lm_status lm_clip_tokenize(const lm_clip_tokenizer *tok, const char *text, int32_t **ids_out,
                           size_t *n_out, lm_error *err)
{
    lm_tokenizer__ids ids = { 0 };
    lm_status st = LM_OK;
    *ids_out = NULL;
    *n_out = 0;
    for (const char *p = text; *p && !st;) {
        int32_t special;
        const char *sp = next_special(p, &special, tok);
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        st = encode_text(tok, p, n, &ids, err);
        if (!st && sp)
            st = lm_tokenizer__ids_push(&ids, special, err);
        p += n + (sp ? strlen(special == tok->bos ? SOT : EOT) : 0);
    }
    if (st) {
        lm_free(ids.v);
        return st;
    }
    *ids_out = ids.v;
    *n_out = ids.len;
    return LM_OK;
}
