/* nodes/conditioning/text_encode.c — CLIPTextEncode and CLIPTextEncodeSD3: a prompt through
 * SD3's text encoders into a CONDITIONING of one entry (context [1, T, D], pooled [1, P]).
 *
 * The ids are ComfyUI's (nodes/sd3/tokenizer.h: emphasis syntax, 77-token CLIP chunks, T5
 * unpadded beyond 77); the encoding is nodes/sd3/conditioner.h, whose rules for absent
 * encoders are ComfyUI's SD3 text model's. The tokenizers come from the tokenizer
 * directory (lm_sd3_tokenizer_dir), or the CLIP's own (a diffusers folder's tokenizer/ and
 * tokenizer_3/), through the model manager, loaded once per process.
 *
 * CLIPTextEncodeSD3 follows ComfyUI's node: each encoder gets its own text; with
 * empty_padding "none" an empty text gives that encoder no tokens at all (an empty T5 text
 * becomes the single token </s>; empty CLIP-L and CLIP-G texts drop the CLIP rows, leaving
 * zeros in the pooled vector); when the CLIP-L and CLIP-G chunk counts differ, the shorter
 * is padded with chunks of the empty prompt. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/sd3/conditioner.h"
#include "nodes/sd3/models.h"

#include <limits.h>
#include <string.h>

typedef struct {
    const lm_clip *l, *g;
    const lm_t5 *t5;
    lm_sd3_part *tok; /* owned reference */
} encoders;

/* The encoders of a CLIP value and the tokenizers, or why they cannot encode. */
static lm_status encoders_get(lm_ctx *ctx, const lm_value *clip, encoders *e, lm_error *err)
{
    const lm_sd3_clip *c = lm_sd3_clip_of(clip);
    memset(e, 0, sizeof(*e));
    if (!c || (!c->clip_l && !c->clip_g && !c->t5)) {
        lm_errorf(err, LM_EINVAL, "clip_missing", "this checkpoint has no text encoders (%.120s)",
                  c ? c->source : "no CLIP");
        lm_error_hint(err, "load them with TripleCLIPLoader and link its CLIP here");
        lm_error_at_node(err, NULL, NULL, "clip");
        return LM_EINVAL;
    }
    e->l = lm_sd3_part_clip(c->clip_l);
    e->g = lm_sd3_part_clip(c->clip_g);
    e->t5 = lm_sd3_part_t5(c->t5);
    char dir[PATH_MAX];
    lm_status st = c->tokenizer_dir[0] && lm_strlcpy(dir, c->tokenizer_dir, sizeof(dir))
                       ? LM_OK
                       : lm_sd3_tokenizer_dir(lm_ctx_env(ctx), dir, sizeof(dir), err);
    if (st == LM_OK)
        st = lm_sd3_models_acquire(&e->tok, dir, LM_SD3_PART_TOKENIZERS, NULL, err);
    if (st == LM_OK && e->t5 && !lm_sd3_part_t5_tokenizer(e->tok)) {
        lm_errorf(err, LM_ENOTFOUND, "tokenizers_missing", "%.200s has no T5 tokenizer", dir);
        lm_error_hint(err, "add t5/spiece.model to the tokenizer directory");
        st = LM_ENOTFOUND;
    }
    return st;
}

static lm_sd3_text_ids ids_of(const lm_token_seq *s)
{
    return (lm_sd3_text_ids){ .ids = s->ids, .weights = s->weights, .n = s->len };
}

/* One conditioning entry from encoded tensors (taken over) into a new value. */
static lm_status cond_value(lm_tensor *context, lm_tensor *pooled, lm_value **out, lm_error *err)
{
    lm_sd3_conditioning *c = NULL;
    lm_status st = lm_sd3_conditioning_new(&c, 1, err);
    if (st != LM_OK) {
        lm_tensor_free(context);
        lm_tensor_free(pooled);
        return st;
    }
    c->entries[0] = (lm_sd3_cond_entry){ .context = context,
                                         .pooled = pooled,
                                         .start_percent = 0.0,
                                         .end_percent = 1.0,
                                         .strength = 1.0f };
    *out = lm_sd3_conditioning_value(c);
    return *out ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* Widths standing in for absent encoders: the loaded one's when there is one. */
static void opts_for(const encoders *e, lm_sd3_condition_opts *o)
{
    *o = (lm_sd3_condition_opts)LM_SD3_CONDITION_OPTS_DEFAULT;
    if (e->l)
        o->clip_l_width = lm_clip_config_of(e->l)->width;
    if (e->g)
        o->clip_g_width = lm_clip_config_of(e->g)->width;
}

/* ---- CLIPTextEncode ---- */

enum { TE_TEXT, TE_CLIP, TE_COUNT };

static const lm_input_def encode_in[TE_COUNT] = {
    [TE_TEXT] = { "text", LM_TYPE_STRING, .flags = LM_INPUT_MULTILINE,
                  .help = "The prompt; (words:1.2) weights words as in ComfyUI." },
    [TE_CLIP] = { "clip", LM_TYPE_CLIP, .help = "The text encoders." },
};

static const lm_output_def cond_out[1] = { { "CONDITIONING", LM_TYPE_CONDITIONING, NULL } };

static lm_status encode_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    encoders e;
    lm_sd3_tokens tok = { 0 };
    lm_tensor *context = NULL, *pooled = NULL;
    lm_status st = encoders_get(ctx, in[TE_CLIP], &e, err);
    if (st == LM_OK)
        st = lm_sd3_tokenize(lm_sd3_part_clip_tokenizer(e.tok),
                             e.t5 ? lm_sd3_part_t5_tokenizer(e.tok) : NULL,
                             lm_value_as_string(in[TE_TEXT]), &tok, err);
    if (st == LM_OK) {
        lm_sd3_text_ids l = ids_of(&tok.clip_l), g = ids_of(&tok.clip_g), t = ids_of(&tok.t5);
        lm_sd3_condition_opts o;
        opts_for(&e, &o);
        st = lm_sd3_condition(e.l, e.g, e.t5, &l, &g, &t, &o, &context, &pooled, err);
    }
    if (st == LM_OK)
        st = cond_value(context, pooled, &out[0], err);
    lm_sd3_tokens_fini(&tok);
    lm_sd3_part_release(e.tok);
    return st;
}

const lm_node_def lm_node_clip_text_encode = {
    .name = "CLIPTextEncode",
    .display_name = "CLIP Text Encode (Prompt)",
    .category = "conditioning",
    .description = "Encodes a prompt with SD3's text encoders (CLIP-L, CLIP-G, T5-XXL) into "
                   "the conditioning the sampler follows.",
    .inputs = encode_in,
    .n_inputs = TE_COUNT,
    .outputs = cond_out,
    .n_outputs = 1,
    .run = encode_run,
};

/* ---- CLIPTextEncodeSD3 ---- */

enum { SD_CLIP, SD_L, SD_G, SD_T5, SD_PADDING, SD_COUNT };

static const char *const paddings[] = { "none", "empty_prompt", NULL };

static const lm_input_def sd3_in[SD_COUNT] = {
    [SD_CLIP] = { "clip", LM_TYPE_CLIP, .help = "The text encoders." },
    [SD_L] = { "clip_l", LM_TYPE_STRING, .flags = LM_INPUT_MULTILINE,
               .help = "The prompt for CLIP-L." },
    [SD_G] = { "clip_g", LM_TYPE_STRING, .flags = LM_INPUT_MULTILINE,
               .help = "The prompt for CLIP-G." },
    [SD_T5] = { "t5xxl", LM_TYPE_STRING, .flags = LM_INPUT_MULTILINE,
                .help = "The prompt for T5-XXL." },
    [SD_PADDING] = { "empty_padding", LM_TYPE_STRING, .choices = paddings,
                     .help = "none: an empty text gives its encoder no tokens; empty_prompt: "
                             "it is encoded as the empty prompt." },
};

/* Appends whole chunks of `empty` to seq until it has `chunks` chunks. */
static lm_status pad_chunks(lm_token_seq *seq, const lm_token_seq *empty, size_t chunks,
                            lm_error *err)
{
    size_t n = chunks * LM_CLIP_CHUNK;
    if (seq->n_chunks >= chunks)
        return LM_OK;
    int32_t *ids = lm_realloc(seq->ids, n * sizeof(*ids));
    if (ids)
        seq->ids = ids;
    double *w = ids ? lm_realloc(seq->weights, n * sizeof(*w)) : NULL;
    if (!w)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory padding a prompt");
    seq->weights = w;
    for (size_t i = seq->len; i < n; i++) {
        seq->ids[i] = empty->ids[i % LM_CLIP_CHUNK];
        seq->weights[i] = empty->weights[i % LM_CLIP_CHUNK];
    }
    seq->len = n;
    seq->n_chunks = chunks;
    return LM_OK;
}

typedef struct {
    lm_token_seq l, g, t5, empty_l, empty_g;
    int32_t eos; /* the T5 ids of an empty text without padding: just </s> */
} sd3_tokens;

static void sd3_tokens_fini(sd3_tokens *t)
{
    lm_token_seq_fini(&t->l);
    lm_token_seq_fini(&t->g);
    lm_token_seq_fini(&t->t5);
    lm_token_seq_fini(&t->empty_l);
    lm_token_seq_fini(&t->empty_g);
}

static lm_status sd3_tokenize(const encoders *e, lm_value *const *in, sd3_tokens *t, lm_error *err)
{
    const lm_clip_tokenizer *ct = lm_sd3_part_clip_tokenizer(e->tok);
    const char *l = lm_value_as_string(in[SD_L]), *g = lm_value_as_string(in[SD_G]);
    bool none = strcmp(lm_value_as_string(in[SD_PADDING]), "none") == 0;
    lm_status st = lm_sd3_tokenize_clip(ct, "", LM_CLIP_EOS, &t->empty_l, err);
    if (st == LM_OK)
        st = lm_sd3_tokenize_clip(ct, "", 0, &t->empty_g, err);
    if (st == LM_OK && !(none && !l[0]))
        st = lm_sd3_tokenize_clip(ct, l, LM_CLIP_EOS, &t->l, err);
    if (st == LM_OK && !(none && !g[0]))
        st = lm_sd3_tokenize_clip(ct, g, 0, &t->g, err);
    if (st == LM_OK && e->t5 && !(none && !lm_value_as_string(in[SD_T5])[0]))
        st = lm_sd3_tokenize_t5(lm_sd3_part_t5_tokenizer(e->tok), lm_value_as_string(in[SD_T5]),
                                &t->t5, err);
    if (st == LM_OK)
        st = pad_chunks(&t->l, &t->empty_l, t->g.n_chunks, err);
    if (st == LM_OK)
        st = pad_chunks(&t->g, &t->empty_g, t->l.n_chunks, err);
    t->eos = LM_T5_EOS;
    return st;
}

static lm_status sd3_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    encoders e;
    sd3_tokens t = { 0 };
    lm_tensor *context = NULL, *pooled = NULL;
    lm_status st = encoders_get(ctx, in[SD_CLIP], &e, err);
    if (st == LM_OK)
        st = sd3_tokenize(&e, in, &t, err);
    if (st == LM_OK) {
        lm_sd3_text_ids l = ids_of(&t.l), g = ids_of(&t.g), t5 = ids_of(&t.t5);
        if (t5.n == 0)
            t5 = (lm_sd3_text_ids){ .ids = &t.eos, .n = 1 };
        bool no_clip = t.l.len == 0 && t.g.len == 0;
        lm_sd3_condition_opts o;
        opts_for(&e, &o);
        st = lm_sd3_condition(no_clip ? NULL : e.l, no_clip ? NULL : e.g, e.t5, &l, &g, &t5, &o,
                              &context, &pooled, err);
    }
    if (st == LM_OK)
        st = cond_value(context, pooled, &out[0], err);
    sd3_tokens_fini(&t);
    lm_sd3_part_release(e.tok);
    return st;
}

const lm_node_def lm_node_clip_text_encode_sd3 = {
    .name = "CLIPTextEncodeSD3",
    .display_name = "CLIPTextEncodeSD3",
    .category = "advanced/conditioning",
    .description = "Encodes separate prompts for CLIP-L, CLIP-G and T5-XXL into one "
                   "conditioning.",
    .inputs = sd3_in,
    .n_inputs = SD_COUNT,
    .outputs = cond_out,
    .n_outputs = 1,
    .run = sd3_run,
};
