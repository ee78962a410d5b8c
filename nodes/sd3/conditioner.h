/* nodes/sd3/conditioner.h — SD3's conditioning: the MMDiT's context and pooled vector y
 * from the CLIP-L, CLIP-G and T5 encodings of one prompt, ComfyUI's prompt weights, and the
 * token ids' way into an encoder.
 *
 *   context = cat([pad(cat([clipL_penult, clipG_penult], -1), to D with zeros), t5], dim 1)
 *           -> [1, 77*chunks + T5 tokens, D]
 *   y       = cat([clipL_pooled (raw), clipG_pooled (projected)], -1) -> [1, Wl + Pg]
 *
 * Missing encoders behave as ComfyUI's SD3 text model (CLIPLoader type "sd3" with only
 * some files): a missing CLIP contributes zeros of its width to the CLIP rows and to y; a
 * missing T5 contributes nothing (ComfyUI) or 77 zero rows (opts.no_t5, the SD3 reference
 * scripts and A1111 do that); with no encoder at all context is zeros [1, 77, D] and y
 * zeros. D, the context width, is the T5's width when a T5 is given, else opts.context_width
 * (the MMDiT's context_embedder input width), else 4096 as ComfyUI pads to.
 *
 * Devices: each encoder computes on its own backend (lm_clip_backend, lm_t5_backend; they
 * may differ) and the results are host (CPU) F32 tensors wherever they ran.
 *
 * Ownership: the encoders are borrowed; the tensors returned through *_out are the
 * caller's (lm_tensor_free). Thread-safe: nothing is written but the outputs. */
#ifndef LM_NODES_SD3_CONDITIONER_H
#define LM_NODES_SD3_CONDITIONER_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"
#include "nodes/sd3/clip.h"
#include "nodes/sd3/t5.h"

#include <stddef.h>
#include <stdint.h>

#define LM_SD3_CONTEXT_WIDTH 4096 /* T5-XXL's width, what ComfyUI pads the CLIP rows to */
#define LM_SD3_CLIP_L_WIDTH  768  /* zeros for a missing CLIP-L (real model) */
#define LM_SD3_CLIP_G_WIDTH  1280 /* zeros for a missing CLIP-G (real model) */

/* What stands in for a missing T5. */
typedef enum {
    LM_SD3_NO_T5_OMIT,  /* context is the CLIP rows only (ComfyUI) */
    LM_SD3_NO_T5_ZEROS, /* append no_t5_tokens zero rows (SD3 reference scripts, A1111) */
} lm_sd3_no_t5;

typedef struct {
    int context_width; /* D when no T5 is given; 0 = LM_SD3_CONTEXT_WIDTH. Tiny models:
                          pass the MMDiT's context_embedder input width. With a T5 it must
                          be 0 or the T5's width. */
    int clip_l_width;  /* zeros standing for a missing CLIP-L; 0 = LM_SD3_CLIP_L_WIDTH */
    int clip_g_width;  /* zeros standing for a missing CLIP-G; 0 = LM_SD3_CLIP_G_WIDTH */
    lm_sd3_no_t5 no_t5;
    int no_t5_tokens; /* rows for LM_SD3_NO_T5_ZEROS; 0 = 77 */
} lm_sd3_condition_opts;

#define LM_SD3_CONDITION_OPTS_DEFAULT                                                              \
    {                                                                                              \
        0, 0, 0, LM_SD3_NO_T5_OMIT, 0                                                              \
    }

/* One encoder's input: ids (CLIP: 77 per chunk; T5: any length), optional per-token
 * weights (NULL = all 1.0). Borrowed. */
typedef struct {
    const int32_t *ids;
    const double *weights;
    size_t n;
} lm_sd3_text_ids;

/* Encodes one prompt. Any encoder may be NULL (see above); ids of a NULL encoder are
 * ignored. CLIP-L and CLIP-G chunk counts may differ: the CLIP rows are cut to the shorter
 * one, as ComfyUI does. opts NULL = LM_SD3_CONDITION_OPTS_DEFAULT. context_out
 * [1, N, D], pooled_out [1, Wl + Pg]; either may be NULL when not wanted. */
lm_status lm_sd3_condition(const lm_clip *clip_l, const lm_clip *clip_g, const lm_t5 *t5,
                           const lm_sd3_text_ids *ids_l, const lm_sd3_text_ids *ids_g,
                           const lm_sd3_text_ids *ids_t5, const lm_sd3_condition_opts *opts,
                           lm_tensor **context_out, lm_tensor **pooled_out, lm_error *err);

/* ComfyUI's prompt weighting (SDClipModel.encode_token_weights): for every token i whose
 * weight w is not exactly 1.0, out[i] = (z[i] - z_empty[i]) * w + z_empty[i]; rows with
 * weight 1.0 are z's rows bit for bit. z and z_empty [1, T, C] on one backend, weights[T]
 * (host memory). out is new [1, T, C] on that backend (the encoders call this on theirs). */
lm_status lm_sd3_token_weights_apply(lm_tensor **out, const lm_tensor *z, const lm_tensor *z_empty,
                                     const double *weights, lm_error *err);
/* Whether any of n weights is not exactly 1.0 (NULL: none is), i.e. whether an encoder
 * needs the empty prompt's encoding for lm_sd3_token_weights_apply. */
bool lm_sd3_token_weights_any(const double *weights, size_t n);

/* n ids as a new I32 [1, n] tensor on be (the encoders' input), each checked against the
 * vocabulary first: LM_ERANGE "<model>: token id 49408 at position 3 is outside the
 * vocabulary [0, 49408)" (`model` names the encoder: "CLIP-L", "T5-XXL"). */
lm_status lm_sd3_token_ids_tensor(lm_tensor **out, const int32_t *ids, size_t n, int vocab,
                                  const char *model, lm_backend *be, lm_error *err);

#endif
