/* nodes/sd3/weights.h — the tensors of one model component (MMDiT, VAE, CLIP-L, CLIP-G,
 * T5-XXL) looked up by their reference names, whatever file layout holds them.
 *
 * The model code asks for names as the all-in-one checkpoint writes them after the
 * component prefix ("joint_blocks.0.x_block.attn.qkv.weight", "decoder.conv_in.weight",
 * "text_model.encoder.layers.0.mlp.fc1.weight", "encoder.block.0.layer.0.SelfAttention.q.weight").
 * An lm_sd3_weights names the file set and the prefix that holds those names:
 *
 *   component   all-in-one file prefix               standalone file prefix
 *   MMDiT       "model.diffusion_model."             "model.diffusion_model." or ""
 *   VAE         "first_stage_model."                 ""  (encoder.*, decoder.*)
 *   CLIP-L/G    "text_encoders.clip_l.transformer."  ""  (text_model.*, text_projection.weight)
 *   T5-XXL      "text_encoders.t5xxl.transformer."   ""  (encoder.*, shared.weight)
 *
 * A diffusers folder's transformer/ and vae/ files (and such files alone) use other names
 * and store some tensors split or reordered: their weights have layout
 * LM_SD3_LAYOUT_DIFFUSERS and the lookups below translate (weights_diffusers.c); its text
 * encoders use the standalone names.
 *
 * Every lookup checks rank and shape, and a missing or mis-shaped tensor is an error that
 * names the tensor (with prefix) and the file — "model.safetensors: tensor
 * \"model.diffusion_model.x_embedder.proj.weight\" is missing; this file is not an SD3
 * checkpoint or is damaged".
 *
 * Ownership: the weights borrow the safetensors set; it must outlive them and every tensor
 * they hand out keeps the mapping alive on its own (lm_safetensors_tensor). Tensors returned
 * by lm_sd3_weights_get are the caller's (lm_tensor_free). Read-only: thread-safe. */
#ifndef LM_NODES_SD3_WEIGHTS_H
#define LM_NODES_SD3_WEIGHTS_H

#include "core/base/error.h"
#include "core/io/safetensors.h"
#include "core/tensor/tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    LM_SD3_MMDIT,
    LM_SD3_VAE,
    LM_SD3_CLIP_L,
    LM_SD3_CLIP_G,
    LM_SD3_T5XXL,
    LM_SD3_COMPONENT_COUNT
} lm_sd3_component;

/* How the stored names relate to the reference names. */
typedef enum {
    LM_SD3_LAYOUT_REFERENCE, /* the reference names after `prefix` (single files) */
    LM_SD3_LAYOUT_DIFFUSERS  /* diffusers' names (SD3Transformer2DModel, AutoencoderKL) */
} lm_sd3_layout;

typedef struct {
    lm_safetensors *st; /* borrowed */
    char prefix[96];    /* prepended to every reference name */
    lm_sd3_component component;
    /* Zero for single files. A diffusers MMDiT or VAE (weights_diffusers.c) maps every
     * reference name to diffusers' names: renamed, or built at lookup from split or
     * reordered parts (docs/models.md, "Diffusers folders"). */
    lm_sd3_layout layout;
    int vae_up_levels; /* diffusers VAE: decoder.up_blocks count (stored in reverse order) */
    int clip_heads;    /* CLIP heads from a diffusers config.json; 0: from the metadata */
} lm_sd3_weights;

/* "MMDiT", "VAE", "CLIP-L", "CLIP-G", "T5-XXL". */
const char *lm_sd3_component_name(lm_sd3_component c);

/* Finds which components a file holds and with which prefix. found[c] tells whether
 * component c is there; CLIP files in standalone layout (text_model.*) are reported as
 * CLIP-L (the caller knows from context which CLIP a standalone file is — TripleCLIPLoader's
 * order, or the width). */
void lm_sd3_detect(lm_safetensors *st, bool found[LM_SD3_COMPONENT_COUNT],
                   lm_sd3_weights weights[LM_SD3_COMPONENT_COUNT]);

/* The entry for a reference name, or NULL. For a tensor a diffusers file stores in parts
 * (qkv = to_q, to_k, to_v) it is the first part's entry. */
const lm_safetensors_entry *lm_sd3_weights_find(const lm_sd3_weights *w, const char *name);
bool lm_sd3_weights_has(const lm_sd3_weights *w, const char *name);

/* Looks a tensor up and checks its rank and shape (shape[i] < 0: any size; shape NULL:
 * rank only; ndim < 0: anything). The tensor wraps the mapped bytes in the stored dtype;
 * for a diffusers tensor stored in parts or in another order (qkv, the final layer's
 * shift/scale) it is a new CPU tensor holding the assembled bytes, owned by the caller
 * like any other. Errors name the stored (diffusers) tensor and its file. */
lm_status lm_sd3_weights_get(const lm_sd3_weights *w, const char *name, int ndim,
                             const int64_t *shape, lm_tensor **out, lm_error *err);
/* printf-style name; no shape check beyond existing. */
lm_status lm_sd3_weights_getf(const lm_sd3_weights *w, lm_tensor **out, lm_error *err,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The shape of a tensor that must exist with rank ndim, into shape[0..ndim), for config
 * inference; a missing tensor or another rank is lm_sd3_weights_get's error. */
lm_status lm_sd3_weights_get_shape(const lm_sd3_weights *w, const char *name, int ndim,
                                   int64_t *shape, lm_error *err);
/* Shape of an entry (ndim; 0 when absent) without making a tensor: for config inference. */
int lm_sd3_weights_shape(const lm_sd3_weights *w, const char *name, int64_t shape[8]);
/* The name a reference name is stored under ("transformer_blocks.0.attn.to_q.weight" for
 * a diffusers "joint_blocks.0.x_block.attn.qkv.weight", with the prefix otherwise), for
 * messages; false when it does not fit or has no stored form. */
bool lm_sd3_weights_stored_name(const lm_sd3_weights *w, const char *name, char *out, size_t size);
/* How many consecutive indices `fmt` % i (i = 0, 1, …) exist, e.g.
 * "joint_blocks.%d.x_block.attn.qkv.weight". */
int lm_sd3_weights_count(const lm_sd3_weights *w, const char *fmt);

/* ---- diffusers folders ----
 * A diffusers pipeline folder (model_index.json, or transformer/ and vae/) holds one
 * component per sub-folder: transformer/ (MMDiT), vae/, text_encoder/ (CLIP-L),
 * text_encoder_2/ (CLIP-G), text_encoder_3/ (T5-XXL), each as
 * diffusion_pytorch_model[.fp16].safetensors or model[.fp16].safetensors, or a sharded
 * `*.safetensors.index.json` of those. An absent sub-folder is an absent component. */
typedef struct lm_sd3_diffusers lm_sd3_diffusers;

/* Whether path is a directory laid out as a diffusers SD3 pipeline. */
bool lm_sd3_diffusers_is_folder(const char *path);
/* Opens every component's file set and fills found/weights as lm_sd3_detect does; the
 * weights borrow the sets, which live until lm_sd3_diffusers_close(). A sub-folder whose
 * file cannot be opened, or holds no such component, is an error naming the file. */
lm_status lm_sd3_diffusers_open(lm_sd3_diffusers **out, const char *dir,
                                bool found[LM_SD3_COMPONENT_COUNT],
                                lm_sd3_weights weights[LM_SD3_COMPONENT_COUNT], lm_error *err);
void lm_sd3_diffusers_close(lm_sd3_diffusers *d); /* NULL is a no-op */

/* Binding tables: rows that fill the lm_tensor * fields of a model struct from checkpoint
 * tensors, with shapes given as dimension symbols (indices into the caller's dims[]; symbol 0
 * means "none", so a row whose cols is 0 is a vector). One table serves every model size:
 * the caller resolves the symbols from its inferred config. */
typedef struct {
    const char *name; /* after `prefix` */
    size_t offset;    /* of the lm_tensor * field in the struct */
    unsigned char rows, cols;
} lm_sd3_bind_row;

/* Binds every row into the struct at `base`, each checked against its shape; on failure the
 * rows bound so far stay set (lm_sd3_weights_free frees them with the model). */
lm_status lm_sd3_weights_bind(const lm_sd3_weights *w, const char *prefix,
                              const lm_sd3_bind_row *rows, size_t n, const int64_t *dims,
                              void *base, lm_error *err);

/* ---- a model's weight slots: the device copy and the free ----
 * Each model walks its own bound weights with a typed iterator; these take it through a
 * small adapter, `each`, that calls fn on every lm_tensor * slot of `model` (absent, NULL
 * ones included) and stops at the first failure. The slots are the model's: these replace
 * or free what they hold. */
typedef lm_status (*lm_sd3_slot_fn)(lm_tensor **slot, void *user);
typedef lm_status (*lm_sd3_each_weight_fn)(void *model, lm_sd3_slot_fn fn, void *user);

/* Calls fn on the field of every row of a binding table in the struct at `base`, stopping
 * at the first failure: a piece of a model's `each`. */
lm_status lm_sd3_weights_each_row(const lm_sd3_bind_row *rows, size_t n, void *base,
                                  lm_sd3_slot_fn fn, void *user);

/* Replaces every weight by its copy on be, same dtype; *bytes is what was copied (so far, on
 * failure). On failure the message names the model (`name`: "MMDiT", "CLIP-L"…), its size,
 * the device and what was copied, keeping the device's own reason: "MMDiT: its 2.4 MiB of
 * weights do not fit on loopback (0.9 MiB copied): <reason>"; the half-copied model is the
 * caller's to free. */
lm_status lm_sd3_weights_to_device(void *model, lm_sd3_each_weight_fn each, const char *name,
                                   lm_backend *be, size_t *bytes, lm_error *err);
/* Frees every weight slot and sets it to NULL. */
void lm_sd3_weights_free(void *model, lm_sd3_each_weight_fn each);

#endif
