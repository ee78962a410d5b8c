/* nodes/sd3/t5.h — the T5 v1.1 encoder (T5-XXL in the real models) as SD3 uses it.
 *
 * x = shared[ids]; each block adds o(attention(rms(x))) and then
 * wo(gelu_tanh(wi_0(h)) * wi_1(h)) with h = rms(x); a final RMS norm. Attention logits are
 * not scaled by 1/sqrt(d_kv) and get a relative position bias (bidirectional buckets) that
 * block 0 owns and every block reuses; there is no padding mask and no length limit.
 * Weights stay in their stored dtype (F16, BF16 or float8 e4m3fn, norms and the bias table
 * included): lm_linear converts them on the fly, so the 4.7B-parameter model never gets an
 * f32 copy.
 *
 * Ownership: lm_t5_load() binds every weight once (views of the mapped checkpoint) and
 * returns a model the caller frees with lm_t5_free(); its tensors keep the mapping alive.
 * Tensors returned through *_out are the caller's (lm_tensor_free).
 *
 * Devices (docs/models.md, "Devices"): lm_t5_load_on() with a device backend copies every
 * weight there once, in its stored dtype (float8 stays 1 byte a weight), and the encoder
 * runs there. The boundary is host memory: ids come from host arrays and every tensor
 * returned here is a host (CPU) F32 tensor, wherever the model computes.
 *
 * Thread safety: read-only after load; encode from any number of threads at once.
 * Per-call activations are freed before each call returns. */
#ifndef LM_NODES_SD3_T5_H
#define LM_NODES_SD3_T5_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"
#include "nodes/sd3/weights.h"

#include <stddef.h>
#include <stdint.h>

#define LM_T5_PAD_ID 0 /* <pad> */
#define LM_T5_EOS_ID 1 /* </s> */

typedef struct {
    int d_model;      /* hidden width: shared.weight columns */
    int vocab;        /* shared.weight rows */
    int layers;       /* encoder blocks */
    int heads;        /* relative_attention_bias.weight columns */
    int d_kv;         /* per-head width: q.weight rows / heads */
    int d_ff;         /* wi_0.weight rows */
    int num_buckets;  /* relative_attention_bias.weight rows (32) */
    int max_distance; /* 128 in every T5 v1.1: not stored in the file */
    float eps;        /* RMS norm eps, 1e-6 */
} lm_t5_config;

/* Every value of the config from tensor names and shapes (config_text.c). A file with the
 * original T5's ReLU MLP (wi.weight) is refused: SD3 uses T5 v1.1's gated GELU. */
lm_status lm_t5_config_infer(lm_t5_config *cfg, const lm_sd3_weights *w, lm_error *err);
/* "T5: d_model 4096, 24 blocks, 64 heads of 64, d_ff 10240, …" into buf. */
void lm_t5_config_describe(const lm_t5_config *cfg, char *buf, size_t size);

typedef struct lm_t5 lm_t5;

/* Infers the config and binds every tensor, checking shapes; errors name tensor and file. */
lm_status lm_t5_load(lm_t5 **out, const lm_sd3_weights *w, lm_error *err);
/* Same, computing on backend `be`. NULL or a host backend: lm_t5_load() exactly (the
 * weights stay in the mapping). A device: every weight is copied there once in its stored
 * dtype; when the device is short of memory the load fails with LM_ENOMEM, a message naming
 * T5-XXL, and nothing left allocated. */
lm_status lm_t5_load_on(lm_t5 **out, const lm_sd3_weights *w, lm_backend *be, lm_error *err);
void lm_t5_free(lm_t5 *t5); /* NULL is a no-op */
const lm_t5_config *lm_t5_config_of(const lm_t5 *t5);
/* Where the model computes: its device, or the CPU backend. Borrowed. */
lm_backend *lm_t5_backend(const lm_t5 *t5);
/* Bytes of weights copied to the device (their stored dtype); 0 on the CPU. Only the
 * tensors the encoder uses are bound: a file's duplicate encoder.embed_tokens.weight is not
 * copied. */
size_t lm_t5_device_bytes(const lm_t5 *t5);

/* The relative position bias of n tokens: [1, heads, n, n], entry [h][i][j] =
 * relative_attention_bias[bucket(j - i)][h]. */
lm_status lm_t5_position_bias(const lm_t5 *t5, int64_t n, lm_tensor **out, lm_error *err);
/* shared[ids]: [1, n, d_model]. */
lm_status lm_t5_embed(const lm_t5 *t5, const int32_t *ids, size_t n, lm_tensor **out,
                      lm_error *err);

/* The encoder output for n >= 1 ids: [1, n, d_model]. weights (NULL = all 1.0) are
 * per-token prompt weights applied as ComfyUI does, against the encoding of the empty
 * sequence [</s>, <pad>…] of the same length (lm_sd3_token_weights_apply). n 0 encodes
 * that empty sequence at its usual 77 tokens. */
lm_status lm_t5_encode(const lm_t5 *t5, const int32_t *ids, size_t n, const double *weights,
                       lm_tensor **out, lm_error *err);

#endif
