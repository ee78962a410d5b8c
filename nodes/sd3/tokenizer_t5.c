/* nodes/sd3/tokenizer_t5.c — the T5 SentencePiece unigram tokenizer.
 *
 * Behaviour is HF T5TokenizerFast on t5/tokenizer.json, "canonical" in
 * ../shared/golden/TOKENS.md §5:
 *   1. normalise with the model's precompiled character map (nmt_nfkc: NFKC plus
 *      whitespace and control mapping), then strip trailing whitespace and turn runs of 2+
 *      spaces into one "▁";
 *   2. turn spaces into "▁", prepend "▁" unless the text starts with one, split before
 *      each "▁";
 *   3. per word, Viterbi over piece scores (doubles, summed left to right; on a tie the
 *      earlier path wins); a character with no one-character piece becomes an unknown node
 *      scored min_score - 10, and adjacent unknowns fuse into one <unk>.
 *
 * The character map is the model's own data: a Darts-clone double-array trie over UTF-8
 * bytes whose leaves index NUL-terminated replacement strings. At each position the
 * longest matching key is replaced (SentencePiece's rule); without a match one character
 * is copied. HF applies the map per grapheme cluster instead; the two differ only when a
 * cluster shorter than 6 bytes has a mapped strict prefix (docs/models.md).
 *
 * Both model files are read: spiece.model (protobuf, read by hand here: pieces with score
 * and type, and normalizer_spec.precompiled_charsmap) and tokenizer.json (cJSON). Only
 * normal and user-defined pieces take part in segmentation; control pieces (<pad>, </s>,
 * <extra_id_N>) and <unk> do not. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "nodes/sd3/tokenizer.h"
#include "nodes/sd3/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#define T5_MAX_FILE    (256u << 20)
#define T5_UNK_PENALTY 10.0

struct lm_t5_tokenizer {
    lm_tokenizer__map pieces; /* piece text -> id, segmentation pieces only */
    double *scores;           /* [n_ids] */
    size_t n_ids, max_piece;  /* max_piece: longest piece in bytes */
    double unk_score;
    int32_t unk_id;
    uint32_t *trie; /* character map: double array (trie_units) then strings (pool) */
    size_t trie_units;
    const char *pool;
    size_t pool_len;
};

/* A piece while loading, from either file format. */
typedef struct {
    const char *text;
    size_t len;
    double score;
    int type; /* SentencePiece: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused */
} t5_piece;

/* ---- building the tokenizer from pieces and the character map ---- */

static lm_status t5_init(lm_t5_tokenizer *tok, size_t n_ids, lm_error *err)
{
    tok->scores = lm_calloc(n_ids + 1, sizeof(*tok->scores));
    tok->n_ids = n_ids;
    tok->unk_id = LM_T5_UNK;
    if (!tok->scores)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for %zu T5 pieces", n_ids);
    return lm_tokenizer__map_init(&tok->pieces, n_ids, err);
}

static lm_status t5_add_piece(lm_t5_tokenizer *tok, int32_t id, const t5_piece *p,
                              double *min_score, lm_error *err)
{
    tok->scores[id] = p->score;
    *min_score = fmin(*min_score, p->score);
    if (p->type == 2)
        tok->unk_id = id;
    if ((p->type != 1 && p->type != 4) || p->len == 0)
        return LM_OK;
    tok->max_piece = LM_MAX(tok->max_piece, p->len);
    return lm_tokenizer__map_put(&tok->pieces, p->text, p->len, id, err);
}

/* Takes a copy of the precompiled character map blob: u32 trie size, trie, strings. */
static lm_status t5_set_charsmap(lm_t5_tokenizer *tok, const unsigned char *blob, size_t len,
                                 lm_error *err)
{
    if (len == 0)
        return LM_OK; /* no map: text is used as it is */
    uint32_t tsize = len >= 4 ? (uint32_t)blob[0] | (uint32_t)blob[1] << 8 |
                                    (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24
                              : 0;
    if (len < 4 || tsize % 4 || tsize == 0 || tsize > len - 4)
        return lm_errorf(err, LM_EFORMAT, "bad_t5_model",
                         "T5 precompiled_charsmap is malformed (%zu bytes, trie of %u); the "
                         "tokenizer file is damaged",
                         len, (unsigned)tsize);
    tok->trie = lm_malloc(len);
    if (!tok->trie)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for the T5 character map");
    tok->trie_units = tsize / 4;
    for (size_t i = 0; i < tok->trie_units; i++) {
        const unsigned char *b = blob + 4 + 4 * i;
        tok->trie[i] =
            (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    }
    char *pool = (char *)(tok->trie + tok->trie_units);
    tok->pool_len = len - 4 - tsize;
    memcpy(pool, blob + 4 + tsize, tok->pool_len);
    tok->pool = pool;
    return LM_OK;
}

/* ---- spiece.model (protobuf ModelProto) ---- */

typedef struct {
    const unsigned char *p, *end;
} pb_reader;

static bool pb_varint(pb_reader *r, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        unsigned char b = *r->p++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* Reads one field: its number, wire type, and for wire type 2 the bytes, for 0 the value,
 * for 5 the 32-bit word. Returns false at a malformed field. */
static bool pb_field(pb_reader *r, uint32_t *field, int *wire, pb_reader *bytes, uint64_t *val)
{
    uint64_t tag;
    if (!pb_varint(r, &tag))
        return false;
    *field = (uint32_t)(tag >> 3);
    *wire = (int)(tag & 7);
    switch (*wire) {
    case 0:
        return pb_varint(r, val);
    case 1:
    case 5: {
        size_t n = *wire == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n)
            return false;
        *val = 0;
        for (size_t i = 0; i < n; i++)
            *val |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return true;
    }
    case 2:
        if (!pb_varint(r, val) || *val > (uint64_t)(r->end - r->p))
            return false;
        bytes->p = r->p;
        bytes->end = r->p + *val;
        r->p += *val;
        return true;
    default:
        return false;
    }
}

/* SentencePiece message: 1 piece (string), 2 score (float), 3 type (enum, default 1). */
static bool pb_piece(pb_reader r, t5_piece *out)
{
    *out = (t5_piece){ .text = "", .type = 1 };
    uint32_t field;
    int wire;
    pb_reader bytes;
    uint64_t val;
    while (r.p < r.end) {
        if (!pb_field(&r, &field, &wire, &bytes, &val))
            return false;
        if (field == 1 && wire == 2) {
            out->text = (const char *)bytes.p;
            out->len = (size_t)(bytes.end - bytes.p);
        } else if (field == 2 && wire == 5) {
            uint32_t bits = (uint32_t)val;
            float f;
            memcpy(&f, &bits, sizeof(f));
            out->score = (double)f;
        } else if (field == 3 && wire == 0) {
            out->type = (int)val;
        }
    }
    return true;
}

/* Finds normalizer_spec (field 3).precompiled_charsmap (field 2). */
static bool pb_charsmap(pb_reader spec, pb_reader *map)
{
    uint32_t field;
    int wire;
    pb_reader bytes;
    uint64_t val;
    while (spec.p < spec.end) {
        if (!pb_field(&spec, &field, &wire, &bytes, &val))
            return false;
        if (field == 2 && wire == 2)
            *map = bytes;
    }
    return true;
}

static lm_status bad_model(const char *path, lm_error *err)
{
    return lm_errorf(err, LM_EFORMAT, "bad_t5_model",
                     "%s is not a SentencePiece model (malformed protobuf); download the "
                     "tokenizer again",
                     path);
}

static size_t pb_count_pieces(pb_reader r)
{
    size_t n = 0;
    uint32_t field;
    int wire;
    pb_reader bytes;
    uint64_t val;
    while (r.p < r.end && pb_field(&r, &field, &wire, &bytes, &val))
        n += field == 1 && wire == 2;
    return n;
}

static lm_status load_spiece(lm_t5_tokenizer *tok, const char *path, const char *buf, size_t len,
                             lm_error *err)
{
    pb_reader r = { (const unsigned char *)buf, (const unsigned char *)buf + len }, bytes;
    pb_reader map = { NULL, NULL };
    lm_status st = t5_init(tok, pb_count_pieces(r), err);
    double min_score = (double)INFINITY;
    int32_t id = 0;
    uint32_t field;
    int wire;
    uint64_t val;
    while (!st && r.p < r.end) {
        t5_piece piece;
        if (!pb_field(&r, &field, &wire, &bytes, &val))
            return bad_model(path, err);
        if (field == 1 && wire == 2 && (size_t)id < tok->n_ids) {
            if (!pb_piece(bytes, &piece))
                return bad_model(path, err);
            st = t5_add_piece(tok, id++, &piece, &min_score, err);
        } else if (field == 3 && wire == 2 && !pb_charsmap(bytes, &map)) {
            return bad_model(path, err);
        }
    }
    if (!st && id == 0)
        return bad_model(path, err);
    tok->unk_score = min_score - T5_UNK_PENALTY;
    return st ? st : t5_set_charsmap(tok, map.p, (size_t)(map.end - map.p), err);
}

/* ---- tokenizer.json (HF tokenizers, Unigram model) ---- */

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes standard base64 in place-independent fashion; stops at '=' or the end. */
static size_t b64_decode(const char *s, unsigned char *out)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        int v = b64_value((unsigned char)*s);
        if (v < 0)
            continue;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

static const cJSON *json_charsmap(const cJSON *root)
{
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(norm, "normalizers"), *n;
    if (!list)
        return cJSON_GetObjectItemCaseSensitive(norm, "precompiled_charsmap");
    cJSON_ArrayForEach(n, list)
    {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(n, "precompiled_charsmap");
        if (cJSON_IsString(m))
            return m;
    }
    return NULL;
}

static lm_status json_set_charsmap(lm_t5_tokenizer *tok, const cJSON *root, lm_error *err)
{
    const cJSON *m = json_charsmap(root);
    if (!cJSON_IsString(m))
        return LM_OK;
    unsigned char *blob = lm_malloc(strlen(m->valuestring) / 4 * 3 + 4);
    if (!blob)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for the T5 character map");
    lm_status st = t5_set_charsmap(tok, blob, b64_decode(m->valuestring, blob), err);
    lm_free(blob);
    return st;
}

/* HF lists <pad>, </s>, <unk> and <extra_id_N> as special added tokens: not pieces. */
static void json_mark_special(const cJSON *root, unsigned char *special, size_t n)
{
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *a;
    cJSON_ArrayForEach(a, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(a, "special");
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < (double)n &&
            !cJSON_IsFalse(sp))
            special[(size_t)id->valuedouble] = 1;
    }
}

static lm_status load_json_vocab(lm_t5_tokenizer *tok, const cJSON *root, const cJSON *vocab,
                                 int32_t unk_id, lm_error *err)
{
    double min_score = (double)INFINITY;
    size_t n = (size_t)cJSON_GetArraySize(vocab), id = 0;
    unsigned char *special = lm_calloc(n + 1, 1);
    lm_status st = special ? t5_init(tok, n, err)
                           : lm_errorf(err, LM_ENOMEM, NULL, "out of memory for %zu pieces", n);
    const cJSON *item;
    if (!st)
        json_mark_special(root, special, n);
    for (item = vocab->child; item && !st; item = item->next, id++) {
        const cJSON *text = cJSON_GetArrayItem(item, 0), *score = cJSON_GetArrayItem(item, 1);
        if (!cJSON_IsString(text) || !cJSON_IsNumber(score)) {
            st = lm_errorf(err, LM_EFORMAT, "bad_t5_model",
                           "tokenizer.json: vocab entry %zu is not [piece, score]", id);
            break;
        }
        int type = (int32_t)id == unk_id ? 2 : special[id] ? 3 : 1;
        t5_piece p = { text->valuestring, strlen(text->valuestring), score->valuedouble, type };
        st = t5_add_piece(tok, (int32_t)id, &p, &min_score, err);
    }
    lm_free(special);
    tok->unk_score = min_score - T5_UNK_PENALTY;
    return st;
}

static lm_status load_json(lm_t5_tokenizer *tok, const char *path, const char *buf, size_t len,
                           lm_error *err)
{
    cJSON *root = cJSON_ParseWithLength(buf, len);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
    lm_status st;
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "Unigram") || !cJSON_IsArray(vocab))
        st = lm_errorf(err, LM_EFORMAT, "bad_t5_model",
                       "%s is not an HF tokenizers Unigram model (T5); use the T5 tokenizer's "
                       "tokenizer.json or spiece.model",
                       path);
    else
        st =
            load_json_vocab(tok, root, vocab, cJSON_IsNumber(unk) ? unk->valueint : LM_T5_UNK, err);
    if (!st)
        st = json_set_charsmap(tok, root, err);
    cJSON_Delete(root);
    return st;
}

/* ---- loading ---- */

static lm_status load_file(lm_t5_tokenizer *tok, const char *path, lm_error *err)
{
    char *buf;
    size_t len;
    lm_status st = lm_file_read(path, T5_MAX_FILE, &buf, &len, err);
    if (st)
        return st;
    if (lm_str_ends_with(path, ".json"))
        st = load_json(tok, path, buf, len, err);
    else
        st = load_spiece(tok, path, buf, len, err);
    lm_free(buf);
    return st;
}

/* A directory gives its spiece.model, else its tokenizer.json. */
static lm_status pick_file(const char *path, char *file, size_t size, lm_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        if (!lm_strlcpy(file, path, size))
            return lm_errorf(err, LM_EINVAL, NULL, "T5 tokenizer path is too long");
        return LM_OK;
    }
    static const char *const names[] = { "spiece.model", "tokenizer.json" };
    for (size_t i = 0; i < LM_COUNTOF(names); i++) {
        if (lm_path_join(file, size, path, names[i]) && stat(file, &sb) == 0)
            return LM_OK;
    }
    lm_errorf(err, LM_ENOTFOUND, "file_open",
              "no T5 tokenizer in this folder: neither spiece.model nor tokenizer.json");
    lm_error_hint(err, "point to a diffusers tokenizer_3/ folder or a T5 spiece.model");
    lm_error_at_file(err, path, 0, 0);
    return LM_ENOTFOUND;
}

lm_status lm_t5_tokenizer_load(lm_t5_tokenizer **out, const char *path, lm_error *err)
{
    char file[4096];
    *out = NULL;
    lm_status st = pick_file(path, file, sizeof(file), err);
    if (st)
        return st;
    lm_t5_tokenizer *tok = lm_calloc(1, sizeof(*tok));
    if (!tok)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for a T5 tokenizer");
    st = load_file(tok, file, err);
    if (!st && tok->pieces.count == 0)
        st = lm_errorf(err, LM_EFORMAT, "bad_t5_model", "%s holds no T5 pieces", file);
    if (st) {
        lm_t5_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return LM_OK;
}

void lm_t5_tokenizer_free(lm_t5_tokenizer *tok)
{
    if (!tok)
        return;
    lm_tokenizer__map_fini(&tok->pieces);
    lm_free(tok->scores);
    lm_free(tok->trie);
    lm_free(tok);
}

/* ---- normalisation ---- */

/* Darts-clone unit fields. */
static uint32_t unit_offset(uint32_t u)
{
    return (u >> 10) << ((u & (1u << 9)) >> 6);
}

/* Longest key of the character map that prefixes s[0..n); its replacement in *repl. */
static size_t charsmap_match(const lm_t5_tokenizer *tok, const unsigned char *s, size_t n,
                             const char **repl)
{
    size_t best = 0, pos = unit_offset(tok->trie[0]);
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= tok->trie_units)
            break;
        uint32_t u = tok->trie[pos];
        if ((u & 0x800000FFu) != s[i])
            break;
        pos ^= unit_offset(u);
        if (((u >> 8) & 1) && pos < tok->trie_units) {
            uint32_t v = tok->trie[pos] & 0x7FFFFFFFu;
            if (v < tok->pool_len && memchr(tok->pool + v, 0, tok->pool_len - v)) {
                best = i + 1;
                *repl = tok->pool + v;
            }
        }
    }
    return best;
}

static bool is_white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Character map, then HF's Strip(right) and Replace(" {2,}", "▁"). */
static void normalize_map(const lm_t5_tokenizer *tok, const char *text, lm_str *out)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        const char *repl = NULL;
        size_t k = tok->trie ? charsmap_match(tok, s + i, n - i, &repl) : 0;
        if (k) {
            lm_str_append(out, repl);
            i += k;
            continue;
        }
        uint32_t cp;
        char enc[4];
        i += lm_tokenizer__utf8_decode(s + i, n - i, &cp);
        lm_str_appendn(out, enc, lm_tokenizer__utf8_encode(cp, enc));
    }
}

static size_t strip_right(const char *s, size_t n)
{
    while (n > 0) {
        size_t k = n - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--;
        uint32_t cp;
        lm_tokenizer__utf8_decode((const unsigned char *)s + k, n - k, &cp);
        if (!is_white_space(cp))
            break;
        n = k;
    }
    return n;
}

static const char SPM_SPACE[] = "\xE2\x96\x81"; /* U+2581 "▁" */

/* Full normalisation: the map, strip right, runs of spaces and single spaces to "▁", and
 * a leading "▁" (HF Metaspace, prepend_scheme "always"). Empty text stays empty. */
static lm_status normalize(const lm_t5_tokenizer *tok, const char *text, lm_str *out, lm_error *err)
{
    lm_str mapped;
    lm_str_init(&mapped);
    normalize_map(tok, text, &mapped);
    size_t n = strip_right(lm_str_cstr(&mapped), mapped.len);
    const char *m = lm_str_cstr(&mapped);
    if (n > 0 && strncmp(m, SPM_SPACE, 3) != 0 && m[0] != ' ')
        lm_str_append(out, SPM_SPACE);
    for (size_t i = 0; i < n; i++) {
        if (m[i] != ' ') {
            lm_str_appendn(out, m + i, 1);
            continue;
        }
        while (i + 1 < n && m[i + 1] == ' ')
            i++;
        lm_str_append(out, SPM_SPACE);
    }
    bool oom = mapped.oom || out->oom;
    lm_str_fini(&mapped);
    return oom ? lm_errorf(err, LM_ENOMEM, NULL, "out of memory normalising T5 text") : LM_OK;
}

/* ---- Viterbi segmentation ---- */

typedef struct {
    double *score; /* best score of a path ending at byte i */
    int32_t *prev; /* start byte of the last piece of that path, -1 = unreached */
    int32_t *id;   /* that piece's id */
} lattice;

static void lattice_offer(lattice *lat, size_t from, size_t to, int32_t id, double score)
{
    double s = lat->score[from] + score;
    if (lat->prev[to] < 0 || s > lat->score[to]) { /* strictly greater: earlier start wins */
        lat->score[to] = s;
        lat->prev[to] = (int32_t)from;
        lat->id[to] = id;
    }
}

static size_t utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
}

static void lattice_fill(const lm_t5_tokenizer *tok, const char *w, size_t n, lattice *lat)
{
    for (size_t pos = 0; pos < n; pos += utf8_len((unsigned char)w[pos])) {
        size_t first = LM_MIN(utf8_len((unsigned char)w[pos]), n - pos);
        bool single = false;
        for (size_t len = first; len <= tok->max_piece && pos + len <= n;) {
            int32_t id = lm_tokenizer__map_get(&tok->pieces, w + pos, len);
            if (id >= 0) {
                lattice_offer(lat, pos, pos + len, id, tok->scores[id]);
                single = single || len == first;
            }
            if (pos + len == n)
                break;
            len += utf8_len((unsigned char)w[pos + len]);
        }
        if (!single)
            lattice_offer(lat, pos, pos + first, tok->unk_id, tok->unk_score);
    }
}

/* Backtracks the best path and appends its ids, fusing adjacent unknowns. */
static lm_status lattice_emit(const lm_t5_tokenizer *tok, const lattice *lat, size_t n,
                              lm_tokenizer__ids *out, lm_error *err)
{
    size_t start = out->len, count = 0;
    for (size_t end = n; end > 0; end = (size_t)lat->prev[end])
        count++;
    for (size_t i = 0; i < count; i++) {
        lm_status st = lm_tokenizer__ids_push(out, 0, err);
        if (st)
            return st;
    }
    size_t k = out->len;
    for (size_t end = n; end > 0; end = (size_t)lat->prev[end])
        out->v[--k] = lat->id[end];
    size_t w = start;
    for (size_t i = start; i < out->len; i++) {
        if (i > start && out->v[i] == tok->unk_id && out->v[w - 1] == tok->unk_id)
            continue;
        out->v[w++] = out->v[i];
    }
    out->len = w;
    return LM_OK;
}

static lm_status encode_word(const lm_t5_tokenizer *tok, const char *w, size_t n,
                             lm_tokenizer__ids *out, lm_error *err)
{
    size_t each = sizeof(double) + 2 * sizeof(int32_t);
    char *mem = lm_malloc((n + 1) * each);
    if (!mem)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for a %zu-byte T5 word", n);
    lattice lat = { .score = (double *)mem };
    lat.prev = (int32_t *)(lat.score + n + 1);
    lat.id = lat.prev + n + 1;
    for (size_t i = 0; i <= n; i++)
        lat.prev[i] = -1;
    lat.score[0] = 0.0;
    lat.prev[0] = 0;
    lattice_fill(tok, w, n, &lat);
    lm_status st = lattice_emit(tok, &lat, n, out, err);
    lm_free(mem);
    return st;
}

lm_status lm_t5_tokenize(const lm_t5_tokenizer *tok, const char *text, int32_t **ids_out,
                         size_t *n_out, lm_error *err)
{
    lm_tokenizer__ids ids = { 0 };
    lm_str norm;
    *ids_out = NULL;
    *n_out = 0;
    lm_str_init(&norm);
    lm_status st = normalize(tok, text, &norm, err);
    const char *s = lm_str_cstr(&norm);
    for (size_t i = 0; i < norm.len && !st;) { /* words start at each "▁" */
        size_t j = i + 1;
        while (j < norm.len && (j + 3 > norm.len || memcmp(s + j, SPM_SPACE, 3) != 0))
            j++;
        st = encode_word(tok, s + i, j - i, &ids, err);
        i = j;
    }
    lm_str_fini(&norm);
    if (st) {
        lm_free(ids.v);
        return st;
    }
    *ids_out = ids.v;
    *n_out = ids.len;
    return LM_OK;
}
