/* nodes/sd3/tokenize_sd3.c — prompt -> the id sequences SD3 feeds to CLIP-L, CLIP-G and
 * T5-XXL, with per-token weights.
 *
 * ComfyUI's SDTokenizer.tokenize_with_weights as ../shared/golden/TOKENS.md §2-3 states
 * it: the prompt is cut into weighted segments (prompt_weights.c); each non-empty segment
 * is tokenized as one string into one group whose ids all carry the segment's weight; the
 * groups are laid into chunks:
 *
 *   encoder  start  end    pad    max length  pad to max  min length
 *   CLIP-L   49406  49407  49407  77          yes         -
 *   CLIP-G   49406  49407  0      77          yes         -
 *   T5-XXL   none   1      0      unlimited   no          77
 *
 * A group that would overflow the chunk is split at the boundary when it has 8 or more
 * ids; a shorter one moves whole to the next chunk, which closes the current chunk with
 * end + padding. Start, end and padding weigh 1.0. CLIP groups are tokenized once and laid
 * out twice (L and G differ only in padding). */
#include "core/base/alloc.h"
#include "nodes/sd3/tokenizer.h"
#include "nodes/sd3/tokenizer_internal.h"

#include <string.h>

#define T5_MAX_LEN 99999999 /* ComfyUI's "unlimited" */

typedef struct {
    int32_t start, end, pad; /* start < 0: none */
    size_t max_len, min_len;
    bool pad_to_max;
} chunk_spec;

/* Token groups of a prompt: ids of group g are ids.v[ends[g-1] .. ends[g]). */
typedef struct {
    lm_tokenizer__ids ids;
    size_t *ends;
    double *weights;
    size_t n;
} group_list;

typedef lm_status (*tokenize_fn)(const void *tok, const char *text, int32_t **ids_out,
                                 size_t *n_out, lm_error *err);

static lm_status clip_fn(const void *tok, const char *text, int32_t **ids_out, size_t *n_out,
                         lm_error *err)
{
    return lm_clip_tokenize(tok, text, ids_out, n_out, err);
}

static lm_status t5_fn(const void *tok, const char *text, int32_t **ids_out, size_t *n_out,
                       lm_error *err)
{
    return lm_t5_tokenize(tok, text, ids_out, n_out, err);
}

static void groups_fini(group_list *g)
{
    lm_free(g->ids.v);
    lm_free(g->ends);
    lm_free(g->weights);
    memset(g, 0, sizeof(*g));
}

static lm_status groups_build(const lm_prompt_segment *segs, size_t n, tokenize_fn fn,
                              const void *tok, group_list *g, lm_error *err)
{
    memset(g, 0, sizeof(*g));
    g->ends = lm_malloc((n + 1) * sizeof(*g->ends));
    g->weights = lm_malloc((n + 1) * sizeof(*g->weights));
    if (!g->ends || !g->weights)
        return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for %zu token groups", n);
    lm_status st = LM_OK;
    for (size_t s = 0; s < n && !st; s++) {
        int32_t *ids;
        size_t k;
        st = fn(tok, segs[s].text, &ids, &k, err);
        for (size_t i = 0; i < k && !st; i++)
            st = lm_tokenizer__ids_push(&g->ids, ids[i], err);
        if (!st && k > 0) { /* a segment with no ids gives no group */
            g->ends[g->n] = g->ids.len;
            g->weights[g->n++] = segs[s].weight;
        }
        if (!st || k)
            lm_free(ids);
    }
    return st;
}

/* ---- chunk assembly ---- */

static lm_status seq_push(lm_token_seq *seq, size_t *cap, int32_t id, double w, lm_error *err)
{
    if (seq->len == *cap) {
        size_t c = *cap ? *cap * 2 : 128;
        int32_t *ids = lm_realloc(seq->ids, c * sizeof(*ids));
        if (ids)
            seq->ids = ids;
        double *ws = ids ? lm_realloc(seq->weights, c * sizeof(*ws)) : NULL;
        if (!ws)
            return lm_errorf(err, LM_ENOMEM, NULL, "out of memory for %zu tokens", c);
        seq->weights = ws;
        *cap = c;
    }
    seq->ids[seq->len] = id;
    seq->weights[seq->len++] = w;
    seq->weighted = seq->weighted || w != 1.0;
    return LM_OK;
}

typedef struct {
    const chunk_spec *spec;
    lm_token_seq *seq;
    size_t cap, chunk; /* chunk: index in seq where the current chunk starts */
} assembler;

static lm_status asm_fill(assembler *a, size_t upto, int32_t id, lm_error *err)
{
    lm_status st = LM_OK;
    while (!st && a->seq->len < upto)
        st = seq_push(a->seq, &a->cap, id, 1.0, err);
    return st;
}

static lm_status asm_new_chunk(assembler *a, lm_error *err)
{
    a->chunk = a->seq->len;
    a->seq->n_chunks++;
    return a->spec->start >= 0 ? seq_push(a->seq, &a->cap, a->spec->start, 1.0, err) : LM_OK;
}

/* Closes the current chunk: end token, then padding to max length when asked. */
static lm_status asm_close(assembler *a, lm_error *err)
{
    lm_status st = seq_push(a->seq, &a->cap, a->spec->end, 1.0, err);
    if (!st && a->spec->pad_to_max)
        st = asm_fill(a, a->chunk + a->spec->max_len, a->spec->pad, err);
    return st;
}

static lm_status asm_group(assembler *a, const int32_t *g, size_t n, double w, lm_error *err)
{
    const size_t limit = a->spec->max_len - 1; /* room for the end token */
    bool splittable = n >= 8;
    lm_status st = LM_OK;
    while (n > 0 && !st) {
        size_t cur = a->seq->len - a->chunk;
        if (cur + n <= limit) {
            for (size_t i = 0; i < n && !st; i++)
                st = seq_push(a->seq, &a->cap, g[i], w, err);
            return st;
        }
        size_t room = limit - cur;
        for (size_t i = 0; splittable && i < room && !st; i++)
            st = seq_push(a->seq, &a->cap, g[i], w, err);
        if (splittable) {
            g += room;
            n -= room;
        }
        if (!st)
            st = asm_close(a, err);
        if (!st)
            st = asm_new_chunk(a, err);
    }
    return st;
}

static lm_status assemble(const group_list *g, const chunk_spec *spec, lm_token_seq *seq,
                          lm_error *err)
{
    assembler a = { .spec = spec, .seq = seq };
    memset(seq, 0, sizeof(*seq));
    lm_status st = asm_new_chunk(&a, err);
    for (size_t i = 0, from = 0; i < g->n && !st; from = g->ends[i++])
        st = asm_group(&a, g->ids.v + from, g->ends[i] - from, g->weights[i], err);
    if (!st)
        st = asm_close(&a, err);
    if (!st && spec->min_len)
        st = asm_fill(&a, a.chunk + spec->min_len, spec->pad, err);
    if (st)
        lm_token_seq_fini(seq);
    return st;
}

/* ---- public ---- */

void lm_token_seq_fini(lm_token_seq *seq)
{
    lm_free(seq->ids);
    lm_free(seq->weights);
    memset(seq, 0, sizeof(*seq));
}

static chunk_spec clip_spec(int32_t pad)
{
    return (chunk_spec){ .start = LM_CLIP_BOS,
                         .end = LM_CLIP_EOS,
                         .pad = pad,
                         .max_len = LM_CLIP_CHUNK,
                         .pad_to_max = true };
}

static const chunk_spec T5_SPEC = {
    .start = -1, .end = LM_T5_EOS, .pad = LM_T5_PAD, .max_len = T5_MAX_LEN, .min_len = LM_T5_MIN_LEN
};

/* Segments -> groups with fn -> one sequence per spec (seqs[i] for specs[i]). */
static lm_status tokenize_segments(const lm_prompt_segment *segs, size_t n, tokenize_fn fn,
                                   const void *tok, const chunk_spec *specs, lm_token_seq **seqs,
                                   size_t n_specs, lm_error *err)
{
    group_list g;
    lm_status st = groups_build(segs, n, fn, tok, &g, err);
    for (size_t i = 0; i < n_specs && !st; i++)
        st = assemble(&g, &specs[i], seqs[i], err);
    groups_fini(&g);
    return st;
}

static lm_status tokenize_text(const char *text, tokenize_fn fn, const void *tok,
                               const chunk_spec *spec, lm_token_seq *out, lm_error *err)
{
    lm_prompt_segment *segs;
    size_t n;
    memset(out, 0, sizeof(*out));
    lm_status st = lm_prompt_weights_parse(text, &segs, &n, err);
    if (st)
        return st;
    st = tokenize_segments(segs, n, fn, tok, spec, &out, 1, err);
    lm_prompt_segments_free(segs, n);
    return st;
}

lm_status lm_sd3_tokenize_clip(const lm_clip_tokenizer *tok, const char *text, int32_t pad_id,
                               lm_token_seq *out, lm_error *err)
{
    chunk_spec spec = clip_spec(pad_id);
    return tokenize_text(text, clip_fn, tok, &spec, out, err);
}

lm_status lm_sd3_tokenize_t5(const lm_t5_tokenizer *tok, const char *text, lm_token_seq *out,
                             lm_error *err)
{
    return tokenize_text(text, t5_fn, tok, &T5_SPEC, out, err);
}

lm_status lm_sd3_tokenize(const lm_clip_tokenizer *clip, const lm_t5_tokenizer *t5,
                          const char *text, lm_sd3_tokens *out, lm_error *err)
{
    lm_prompt_segment *segs;
    size_t n;
    memset(out, 0, sizeof(*out));
    lm_status st = lm_prompt_weights_parse(text, &segs, &n, err);
    if (st)
        return st;
    chunk_spec specs[2] = { clip_spec(LM_CLIP_EOS), clip_spec(0) };
    lm_token_seq *clip_out[2] = { &out->clip_l, &out->clip_g }, *t5_out = &out->t5;
    st = tokenize_segments(segs, n, clip_fn, clip, specs, clip_out, 2, err);
    if (!st && t5)
        st = tokenize_segments(segs, n, t5_fn, t5, &T5_SPEC, &t5_out, 1, err);
    lm_prompt_segments_free(segs, n);
    if (st)
        lm_sd3_tokens_fini(out);
    return st;
}

void lm_sd3_tokens_fini(lm_sd3_tokens *tokens)
{
    lm_token_seq_fini(&tokens->clip_l);
    lm_token_seq_fini(&tokens->clip_g);
    lm_token_seq_fini(&tokens->t5);
}
