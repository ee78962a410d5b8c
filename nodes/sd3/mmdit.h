/* nodes/sd3/mmdit.h — the SD3 diffusion transformer: MMDiT (SD3 Medium) and MMDiT-X
 * (SD3.5 Medium), one forward pass from a latent, a noise level and the text conditioning
 * to the flow velocity.
 *
 * The configuration (width, depth, heads, patch, position table, q/k norm, which blocks
 * carry MMDiT-X's extra image self-attention, the last block's context-only-input form) is
 * inferred from tensor names and shapes, so the tiny test checkpoints and the real 2B/2.5B
 * ones load through the same code. The architecture follows the SD3 paper (§4, Fig. 2)
 * and SD3.5's MMDiT-X; docs/models.md ("MMDiT") describes the computation and its choices.
 *
 * Ownership: lm_mmdit_load() binds every weight once (views of the mapped checkpoint in
 * its stored dtype; nothing is converted or copied) and returns a model the caller frees
 * with lm_mmdit_free(). The model borrows nothing after load: its tensors keep the mapping
 * alive, so the lm_safetensors set may be closed before the model is freed. Tensors
 * returned by the forward functions are the caller's (lm_tensor_free).
 *
 * Devices (docs/models.md, "Devices"): lm_mmdit_load_on() with a device backend copies
 * every weight there once, in its stored dtype, and the model computes there. The boundary
 * is host memory: lm_mmdit_forward() takes inputs on the host or on the model's backend and
 * returns host (CPU) tensors; only the inspect hook sees tensors on the device.
 *
 * Thread safety: a loaded model is read-only; forwards from several threads at once are
 * safe (each keeps its activations to itself). */
#ifndef LM_NODES_SD3_MMDIT_H
#define LM_NODES_SD3_MMDIT_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"
#include "nodes/sd3/weights.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_MMDIT_MAX_DEPTH 64 /* joint blocks; SD3.5 Large has 38 */

typedef enum {
    LM_MMDIT_QK_NONE, /* SD3 Medium */
    LM_MMDIT_QK_RMS,  /* SD3.5: RMS norm of q and k per 64-wide head (ln_q/ln_k weights) */
    LM_MMDIT_QK_LN    /* LayerNorm per head (ln_q/ln_k with biases); no released model */
} lm_mmdit_qk_norm;

/* Everything the forward needs to know, inferred from the checkpoint. */
typedef struct {
    int hidden;        /* x_embedder.proj.weight.shape[0]: 1536 for SD3 Medium */
    int patch;         /* x_embedder's kernel size (2) */
    int in_channels;   /* latent channels (16) */
    int out_channels;  /* final_layer.linear rows / patch² (16) */
    int depth;         /* joint blocks */
    int heads;         /* hidden / head_dim */
    int head_dim;      /* 64 */
    int pos_embed_max; /* P: the stored table covers P x P patches */
    int adm_in;        /* pooled-text width y_embedder takes (2048) */
    int context_in;    /* context width context_embedder takes (4096) */
    int freq_dim;      /* sinusoidal timestep features t_embedder takes (256) */
    int mlp_hidden;    /* fc1 rows (4 * hidden) */
    bool qkv_bias;     /* attn.qkv has a bias */
    lm_mmdit_qk_norm qk_norm;
    bool context_pre_only; /* the last block's context stream only feeds the attention */
    int n_x_self_attn;     /* blocks with x_block.attn2 (MMDiT-X) */
    bool x_self_attn[LM_MMDIT_MAX_DEPTH];
} lm_mmdit_config;

/* Infers the configuration from the MMDiT tensors of `w` (no tensor data is read). An
 * absent or mis-shaped key tensor is an error naming the tensor and the file. */
lm_status lm_mmdit_config_infer(lm_mmdit_config *cfg, const lm_sd3_weights *w, lm_error *err);
/* One line "hidden 1536, depth 24, heads 24x64, …" for logs and `loom tensors`. */
void lm_mmdit_config_describe(const lm_mmdit_config *cfg, char *buf, size_t size);

typedef struct lm_mmdit lm_mmdit;

/* Infers the configuration and binds every tensor (logs the configuration at DEBUG). A
 * missing or mis-shaped tensor is an error naming the tensor and the file. */
lm_status lm_mmdit_load(lm_mmdit **out, const lm_sd3_weights *w, lm_error *err);
/* Same, computing on backend `be`. NULL or a host backend: lm_mmdit_load() exactly (the
 * weights stay in the mapping). A device: every weight is copied there once in its stored
 * dtype (F16/BF16 stay 16-bit); when the device is short of memory the load fails with
 * LM_ENOMEM, a message naming the MMDiT, and nothing left allocated. */
lm_status lm_mmdit_load_on(lm_mmdit **out, const lm_sd3_weights *w, lm_backend *be, lm_error *err);
void lm_mmdit_free(lm_mmdit *m); /* NULL is a no-op */
/* Where the model computes: its device, or the CPU backend. Borrowed (backends live until
 * the process ends). */
lm_backend *lm_mmdit_backend(const lm_mmdit *m);
/* Bytes of weights copied to the device: the sum of the bound tensors' sizes in their
 * stored dtype; 0 on the CPU. */
size_t lm_mmdit_device_bytes(const lm_mmdit *m);
/* Borrowed; lives as long as the model. */
const lm_mmdit_config *lm_mmdit_config_of(const lm_mmdit *m);
/* Largest latent height/width the position table allows: pos_embed_max * patch. */
int lm_mmdit_max_latent(const lm_mmdit *m);

/* Per-call options; a NULL pointer to them means all defaults (zero-initialise). */
typedef struct {
    /* Skip-layer guidance (SD3.5's skip_layer_config, ComfyUI's SkipLayerGuidanceSD3): the
     * listed joint blocks are bypassed — both streams leave the block exactly as they
     * entered it (the image stream passes through unchanged; so does the context stream,
     * which only the blocks after it would read). Indices outside [0, depth) are ignored,
     * as ComfyUI ignores patches for layers a model does not have. */
    const int *skip_layers;
    int n_skip_layers;
    /* Polled before every joint block; returning true stops the forward with
     * LM_ECANCELLED. */
    bool (*cancelled)(void *user);
    /* Called with each intermediate, named as the golden files name them after "s0.im.":
     * "patch_embed", "pos_embed_cropped", "t_freq", "t_emb", "y_emb", "c", "context_emb",
     * "block<i>.x", "block<i>.context" (not for the last block), "final_layer". The
     * tensor is borrowed for the call (it may be a strided view) and lives on the model's
     * backend: read it with lm_tensor_to_f32_host, never lm_tensor_data. */
    void (*inspect)(const char *name, const lm_tensor *t, void *user);
    void *user;
} lm_mmdit_opts;

/* One forward pass. x [B, in_channels, h, w] (h, w multiples of patch, at most
 * lm_mmdit_max_latent), sigma [B] (noise levels; the timestep is sigma*1000 in fp32),
 * context [B, T, context_in], y [B, adm_in]. Each input may be on the host or on the
 * model's backend (host ones are copied there; another device is refused, kind
 * "wrong_backend"). Result: the model output (flow velocity) [B, out_channels, h, w], F32,
 * a host (CPU) tensor wherever the model computes. */
lm_status lm_mmdit_forward(const lm_mmdit *m, const lm_tensor *x, const lm_tensor *sigma,
                           const lm_tensor *context, const lm_tensor *y, const lm_mmdit_opts *opts,
                           lm_tensor **out, lm_error *err);

/* denoised = x - v*sigma per sample (the reference's BaseModel.apply_model): x and v
 * [B, C, h, w], sigma [B]. It does not touch a model: it computes on the backend its
 * inputs share (the host, for lm_mmdit_forward's results). */
lm_status lm_mmdit_denoised(lm_tensor **out, const lm_tensor *x, const lm_tensor *v,
                            const lm_tensor *sigma, lm_error *err);

#endif
