/* nodes/sd3/clip.h — the CLIP-L and CLIP-G text transformers as SD3 uses them.
 *
 * Both are HF CLIPTextModel's text tower: token + position embedding, pre-LN layers with a
 * causal mask and no padding mask, a final LayerNorm. SD3 takes the penultimate hidden
 * state (after layer index layers-2, before the final LayerNorm) as its context and the
 * final-LN row of the first EOS token (argmax of the ids) as the pooled vector: raw for
 * CLIP-L, through text_projection (x·Wᵀ) for CLIP-G. The kind is the caller's to say
 * (a standalone CLIP file does not name itself); it picks the activation (CLIP-L quick
 * GELU, CLIP-G erf GELU), the pad id of the empty chunk (49407 / 0) and the pooled form.
 *
 * Ownership: lm_clip_load() binds every weight once (views of the mapped checkpoint in the
 * stored dtype, no f32 copy) and returns a model the caller frees with lm_clip_free(). Its
 * tensors keep the mapping alive, so the safetensors set may be closed first. Tensors
 * returned through *_out / lm_clip_hidden are the caller's (lm_tensor_free).
 *
 * Devices (docs/models.md, "Devices"): lm_clip_load_on() with a device backend copies every
 * weight there once, in its stored dtype, and the transformer runs there. The boundary is
 * host memory: ids come from host arrays and every tensor lm_clip_forward/lm_clip_encode
 * return is a host (CPU) F32 tensor, wherever the model computes.
 *
 * Thread safety: a model is read-only after load; any number of threads may encode with
 * it at once. Per-call activations are freed before each call returns. */
#ifndef LM_NODES_SD3_CLIP_H
#define LM_NODES_SD3_CLIP_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"
#include "nodes/sd3/weights.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_CLIP_BOS_ID 49406 /* <|startoftext|> */
#define LM_CLIP_EOS_ID 49407 /* <|endoftext|>: also CLIP-L's pad */

typedef enum { LM_CLIP_KIND_L, LM_CLIP_KIND_G } lm_clip_kind;

typedef enum { LM_CLIP_ACT_QUICK_GELU, LM_CLIP_ACT_GELU } lm_clip_act;

typedef struct {
    lm_clip_kind kind;
    int width;     /* hidden size W */
    int layers;    /* encoder layers */
    int heads;     /* attention heads; W / heads is the head width */
    int ff;        /* MLP width */
    int vocab;     /* token_embedding rows */
    int positions; /* position_embedding rows = the chunk length (77) */
    int proj_dim;  /* text_projection rows; 0 when the file has none (CLIP-L may lack it) */
    lm_clip_act act;
    float eps;             /* LayerNorm eps, 1e-5 */
    int32_t pad_id;        /* pad of the empty chunk: CLIP-L 49407, CLIP-G 0 */
    bool pooled_projected; /* SD3's pooled: CLIP-G through text_projection, CLIP-L raw */
} lm_clip_config;

/* Every value of the config from tensor names and shapes (config_text.c). Heads cannot be
 * read from shapes: the file's __metadata__ "num_attention_heads" (standalone files) or
 * "clip_l.num_attention_heads" / "clip_g.num_attention_heads" when present, else W / 64
 * as in every released CLIP. Errors name the tensor or key and the file. */
lm_status lm_clip_config_infer(lm_clip_config *cfg, const lm_sd3_weights *w, lm_clip_kind kind,
                               lm_error *err);
/* "CLIP-G: width 1280, 32 layers, 20 heads, ff 5120, gelu, …" into buf. */
void lm_clip_config_describe(const lm_clip_config *cfg, char *buf, size_t size);

typedef struct lm_clip lm_clip;

/* Infers the config and binds every tensor, checking each shape; a missing or mis-shaped
 * tensor fails here, naming the tensor and the file. */
lm_status lm_clip_load(lm_clip **out, const lm_sd3_weights *w, lm_clip_kind kind, lm_error *err);
/* Same, computing on backend `be`. NULL or a host backend: lm_clip_load() exactly (the
 * weights stay in the mapping). A device: every weight is copied there once in its stored
 * dtype; when the device is short of memory the load fails with LM_ENOMEM, a message naming
 * the CLIP ("CLIP-L"/"CLIP-G"), and nothing left allocated. */
lm_status lm_clip_load_on(lm_clip **out, const lm_sd3_weights *w, lm_clip_kind kind, lm_backend *be,
                          lm_error *err);
void lm_clip_free(lm_clip *clip); /* NULL is a no-op */
/* Where the model computes: its device, or the CPU backend. Borrowed. */
lm_backend *lm_clip_backend(const lm_clip *clip);
/* Bytes of weights copied to the device (their stored dtype); 0 on the CPU. */
size_t lm_clip_device_bytes(const lm_clip *clip);
const lm_clip_config *lm_clip_config_of(const lm_clip *clip);
/* The width of SD3's pooled vector: proj_dim for CLIP-G, width for CLIP-L. */
int lm_clip_pooled_width(const lm_clip *clip);

/* Which results lm_clip_forward computes: any OR of these. */
enum {
    LM_CLIP_WANT_EMBEDDINGS = 1 << 0,
    LM_CLIP_WANT_PENULTIMATE = 1 << 1,
    LM_CLIP_WANT_LAST_HIDDEN_LN = 1 << 2,
    LM_CLIP_WANT_POOLED_RAW = 1 << 3,
    LM_CLIP_WANT_POOLED_PROJECTED = 1 << 4,
};

/* The results of one chunk; fields not asked for stay NULL. */
typedef struct {
    lm_tensor *embeddings;       /* [1, T, W] token_embedding[ids] + position_embedding */
    lm_tensor *penultimate;      /* [1, T, W] after layer layers-2, no final LayerNorm */
    lm_tensor *last_hidden_ln;   /* [1, T, W] final_layer_norm(last layer) */
    lm_tensor *pooled_raw;       /* [1, W] last_hidden_ln at argmax(ids) */
    lm_tensor *pooled_projected; /* [1, P] pooled_raw·text_projectionᵀ (needs proj_dim > 0) */
} lm_clip_hidden;

/* One chunk of n ids (1 <= n <= positions, each in [0, vocab)) through the transformer on
 * the model's backend; the results are host tensors. *out is zeroed first; on failure it is
 * left empty. */
lm_status lm_clip_forward(const lm_clip *clip, const int32_t *ids, size_t n, unsigned want,
                          lm_clip_hidden *out, lm_error *err);
void lm_clip_hidden_fini(lm_clip_hidden *h); /* frees every field; NULL fields are fine */

/* SD3's encoding of a prompt, as ComfyUI does it: n_tokens ids in chunks of `positions`
 * (77) ids each, every chunk encoded on its own and the penultimate states concatenated
 * along tokens -> penultimate_out [1, 77*chunks, W]; pooled_out [1, lm_clip_pooled_width]
 * from the first chunk. weights (NULL = all 1.0) are per-token prompt weights applied as
 * ComfyUI's encode_token_weights does (lm_sd3_token_weights_apply) against the empty
 * chunk [BOS, EOS, pad…]; they never change the pooled vector. n_tokens 0 encodes the
 * empty chunk (an empty prompt). Either out may be NULL when not wanted. */
lm_status lm_clip_encode(const lm_clip *clip, const int32_t *ids, size_t n_tokens,
                         const double *weights, lm_tensor **penultimate_out, lm_tensor **pooled_out,
                         lm_error *err);

#endif
