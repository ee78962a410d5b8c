/* nodes/sd3/tokenizer.h — the SD3 / SD3.5 text front end: CLIP BPE and T5 SentencePiece
 * tokenizers, ComfyUI's emphasis syntax "(text:1.2)", and the id sequences SD3 feeds to
 * CLIP-L, CLIP-G and T5-XXL.
 *
 * The behaviour is ComfyUI's (current ComfyUI, transformers 4.x, no ftfy) as
 * ../shared/golden/TOKENS.md defines it; docs/models.md ("Tokenizers") lists what is and
 * is not covered.
 *
 * Loading: each loader takes a directory (a diffusers tokenizer/, tokenizer_2/ or
 * tokenizer_3/ folder, or the shared tokenizers/clip, tokenizers/t5) or, for T5, the file
 * itself. CLIP needs vocab.json + merges.txt; T5 reads spiece.model (preferred: faster) or
 * tokenizer.json.
 *
 * Ownership: loaders return a tokenizer the caller frees with its _free (NULL is a no-op).
 * Tokenizers are immutable after loading and may be shared by any number of threads.
 * Arrays returned through **_out parameters belong to the caller: free ids with lm_free,
 * segments with lm_prompt_segments_free, sequences with lm_token_seq_fini /
 * lm_sd3_tokens_fini. Input text is UTF-8; invalid bytes count as U+FFFD. */
#ifndef LM_NODES_SD3_TOKENIZER_H
#define LM_NODES_SD3_TOKENIZER_H

#include "core/base/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- CLIP (shared by CLIP-L and CLIP-G) ---- */
#define LM_CLIP_BOS   49406 /* <|startoftext|> */
#define LM_CLIP_EOS   49407 /* <|endoftext|> */
#define LM_CLIP_CHUNK 77    /* ids per CLIP chunk: BOS + 75 + EOS */

typedef struct lm_clip_tokenizer lm_clip_tokenizer;

lm_status lm_clip_tokenizer_load(lm_clip_tokenizer **out, const char *dir, lm_error *err);
void lm_clip_tokenizer_free(lm_clip_tokenizer *tok);
/* Raw BPE ids of text, without BOS/EOS; weight syntax is not parsed. */
lm_status lm_clip_tokenize(const lm_clip_tokenizer *tok, const char *text, int32_t **ids_out,
                           size_t *n_out, lm_error *err);

/* ---- T5 (SentencePiece unigram) ---- */
#define LM_T5_PAD     0
#define LM_T5_EOS     1  /* </s> */
#define LM_T5_UNK     2  /* <unk> */
#define LM_T5_MIN_LEN 77 /* SD3 pads the T5 sequence to at least this */

typedef struct lm_t5_tokenizer lm_t5_tokenizer;

/* path: a directory holding spiece.model or tokenizer.json, or one of those files. */
lm_status lm_t5_tokenizer_load(lm_t5_tokenizer **out, const char *path, lm_error *err);
void lm_t5_tokenizer_free(lm_t5_tokenizer *tok);
/* Ids of text without the trailing </s>. */
lm_status lm_t5_tokenize(const lm_t5_tokenizer *tok, const char *text, int32_t **ids_out,
                         size_t *n_out, lm_error *err);

/* ---- ComfyUI emphasis syntax ---- */
typedef struct {
    char *text; /* UTF-8, escapes resolved: "\(" became "(" */
    double weight;
} lm_prompt_segment;

/* Splits text into weighted segments (TOKENS.md §1): "(red:1.3) car" gives ("red", 1.3),
 * (" car", 1.0). Fails only on memory or nesting deeper than 1000 parentheses. */
lm_status lm_prompt_weights_parse(const char *text, lm_prompt_segment **segments_out, size_t *n_out,
                                  lm_error *err);
void lm_prompt_segments_free(lm_prompt_segment *segments, size_t n);

/* ---- SD3 sequences ---- */
/* One encoder's input. CLIP: n_chunks chunks of LM_CLIP_CHUNK ids, len = 77 * n_chunks.
 * T5: one sequence, n_chunks = 1, len >= 77, never truncated. weights[i] belongs to ids[i]
 * (start, end and padding are 1.0); weighted is true when any weight is not 1.0, which is
 * when ComfyUI also encodes an empty sequence to interpolate against. */
typedef struct {
    int32_t *ids;
    double *weights;
    size_t len, n_chunks;
    bool weighted;
} lm_token_seq;

void lm_token_seq_fini(lm_token_seq *seq);

/* CLIP-L (pad_id LM_CLIP_EOS) or CLIP-G (pad_id 0) chunks of text with weights parsed. */
lm_status lm_sd3_tokenize_clip(const lm_clip_tokenizer *tok, const char *text, int32_t pad_id,
                               lm_token_seq *out, lm_error *err);
lm_status lm_sd3_tokenize_t5(const lm_t5_tokenizer *tok, const char *text, lm_token_seq *out,
                             lm_error *err);

typedef struct {
    lm_token_seq clip_l, clip_g, t5; /* t5 is empty (len 0) when no T5 tokenizer is given */
} lm_sd3_tokens;

/* All three sequences for one prompt. clip must not be NULL; t5 may be. out is zeroed
 * first and left empty on failure. */
lm_status lm_sd3_tokenize(const lm_clip_tokenizer *clip, const lm_t5_tokenizer *t5,
                          const char *text, lm_sd3_tokens *out, lm_error *err);
void lm_sd3_tokens_fini(lm_sd3_tokens *tokens);

#endif
