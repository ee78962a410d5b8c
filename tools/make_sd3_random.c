/* tools/make_sd3_random.c — a full-size SD3 Medium all-in-one checkpoint with random weights.
 *
 * `make_sd3_random [--with-t5] [--seed N] [--tiny] [--check REF] [OUT.safetensors]` writes
 * the tensors of sd3_medium_incl_clips_t5xxlfp8.safetensors — MMDiT (depth 24, hidden 1536,
 * pos_embed 192²), VAE (ch 128, ch_mult 1,2,4,4), CLIP-L, CLIP-G, and with --with-t5 the
 * T5-XXL encoder in F8_E4M3 — with the real key names and shapes and random values: the
 * structure is real, the weights are noise. It exists for `make bench` (tests/bench/
 * bench_sd3.c), which needs the real sizes but not real pictures; no test uses it.
 *
 * Names and shapes come from one description of the architecture (add_mmdit, add_vae,
 * add_clip, add_t5), parameterised by a config. The tiny golden checkpoint is the authority
 * for names: `--tiny --with-t5 --check ../shared/golden/sd3m_tiny.safetensors` builds the
 * same description at sd3m_tiny's sizes and compares every name, shape and dtype with it.
 *
 * Values keep activations finite through every layer: matrices, convolutions, embeddings
 * and the position table are normal(0, 0.02) (an Irwin–Hall sum of four uniforms: cheap,
 * near-normal, bounded at ±3.5σ), norm weights are ones, biases zeros. The PRNG is
 * xoshiro256+ seeded per tensor from (seed, name), so a tensor's values do not depend on
 * the order of writing; T5's embed_tokens copy is seeded as shared.weight, as in the real
 * file where both hold the same table.
 *
 * The file is streamed: the header is computed from the list first, then each tensor is
 * generated and written in chunks of 1 Mi elements, so memory stays a few MB whatever the
 * size (about 5.97 GB without T5, 10.87 GB with it). It is written to OUT.tmp and renamed,
 * so an interrupted run never leaves a truncated checkpoint behind. Tensors are laid out
 * as the safetensors library lays them out (larger dtypes first, then by name). */
#include "core/io/safetensors.h"
#include "core/tensor/dtype.h"
#include "core/tensor/tensor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STD_WEIGHT 0.02f
#define CHUNK      (1u << 20) /* elements generated and written at a time */

/* ---- configuration ---- */

typedef struct {
    int width, layers, heads, ff, vocab, positions;
} clip_cfg;

typedef struct {
    int depth, hidden, patch, in_ch, pos_max, adm_in, context_in, freq_dim, mlp_ratio;
    int vae_ch, vae_mult[4], vae_levels, vae_enc_blocks, vae_dec_blocks, vae_z;
    clip_cfg clip_l, clip_g;
    int t5_d, t5_layers, t5_heads, t5_dkv, t5_ff, t5_vocab, t5_buckets;
} sd3_cfg;

/* The two size sets, as tables (clang-format would put one field per line). */
/* clang-format off */
/* SD3 Medium (sd3_medium_incl_clips_t5xxlfp8.safetensors). */
static const sd3_cfg cfg_medium = {
    .depth = 24, .hidden = 1536, .patch = 2, .in_ch = 16, .pos_max = 192, .adm_in = 2048,
    .context_in = 4096, .freq_dim = 256, .mlp_ratio = 4,
    .vae_ch = 128, .vae_mult = { 1, 2, 4, 4 }, .vae_levels = 4, .vae_enc_blocks = 2,
    .vae_dec_blocks = 3, .vae_z = 16,
    .clip_l = { .width = 768, .layers = 12, .heads = 12, .ff = 3072, .vocab = 49408,
                .positions = 77 },
    .clip_g = { .width = 1280, .layers = 32, .heads = 20, .ff = 5120, .vocab = 49408,
                .positions = 77 },
    .t5_d = 4096, .t5_layers = 24, .t5_heads = 64, .t5_dkv = 64, .t5_ff = 10240, .t5_vocab = 32128,
    .t5_buckets = 32,
};

/* The sizes of ../shared/golden/sd3m_tiny.safetensors (its README's config). */
static const sd3_cfg cfg_tiny = {
    .depth = 2, .hidden = 128, .patch = 2, .in_ch = 16, .pos_max = 32, .adm_in = 64,
    .context_in = 80, .freq_dim = 256, .mlp_ratio = 4,
    .vae_ch = 32, .vae_mult = { 1, 2, 4, 4 }, .vae_levels = 4, .vae_enc_blocks = 2,
    .vae_dec_blocks = 3, .vae_z = 16,
    .clip_l = { .width = 24, .layers = 3, .heads = 2, .ff = 96, .vocab = 49408, .positions = 77 },
    .clip_g = { .width = 40, .layers = 4, .heads = 5, .ff = 160, .vocab = 49408, .positions = 77 },
    .t5_d = 80, .t5_layers = 2, .t5_heads = 4, .t5_dkv = 20, .t5_ff = 200, .t5_vocab = 32128,
    .t5_buckets = 32,
};
/* clang-format on */

/* ---- the tensor list ---- */

typedef enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS } init_kind;

typedef struct {
    char name[128];
    char seed_name[128]; /* the name its values are seeded from (usually its own) */
    lm_dtype dtype;
    int ndim;
    int64_t shape[4];
    init_kind init;
    uint64_t begin, end; /* data_offsets */
} tensor_def;

typedef struct {
    tensor_def *t;
    size_t n, cap;
    lm_dtype dtype; /* dtype of what add() appends */
    char prefix[96];
    bool oom;
} tensor_list;

static void add(tensor_list *l, const char *name, init_kind init, int ndim, int64_t d0, int64_t d1,
                int64_t d2, int64_t d3)
{
    if (l->oom)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 512;
        tensor_def *t = realloc(l->t, cap * sizeof(*t));
        if (!t) {
            l->oom = true;
            return;
        }
        l->t = t;
        l->cap = cap;
    }
    tensor_def *d = &l->t[l->n++];
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s%s", l->prefix, name);
    snprintf(d->seed_name, sizeof(d->seed_name), "%s", d->name);
    d->dtype = l->dtype;
    d->ndim = ndim;
    int64_t dims[4] = { d0, d1, d2, d3 };
    memcpy(d->shape, dims, sizeof(dims));
    d->init = init;
}

/* `name`.weight [out, in] (normal) and, with bias, `name`.bias [out] (zeros). */
static void add_linear(tensor_list *l, const char *name, int out, int in, bool bias)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s.weight", name);
    add(l, buf, INIT_NORMAL, 2, out, in, 0, 0);
    if (bias) {
        snprintf(buf, sizeof(buf), "%s.bias", name);
        add(l, buf, INIT_ZEROS, 1, out, 0, 0, 0);
    }
}

static void add_conv(tensor_list *l, const char *name, int out, int in, int k)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s.weight", name);
    add(l, buf, INIT_NORMAL, 4, out, in, k, k);
    snprintf(buf, sizeof(buf), "%s.bias", name);
    add(l, buf, INIT_ZEROS, 1, out, 0, 0, 0);
}

/* A LayerNorm/GroupNorm: weight ones, bias zeros (RMS norms have no bias). */
static void add_norm(tensor_list *l, const char *name, int width, bool bias)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s.weight", name);
    add(l, buf, INIT_ONES, 1, width, 0, 0, 0);
    if (bias) {
        snprintf(buf, sizeof(buf), "%s.bias", name);
        add(l, buf, INIT_ZEROS, 1, width, 0, 0, 0);
    }
}

/* ---- the architecture (names as in the all-in-one file) ---- */

/* One joint block's stream; the last block's context stream is pre-only (SD3 paper §4:
 * its output is never read): shift/scale only, qkv, no proj and no MLP. */
static void add_mmdit_stream(tensor_list *l, const sd3_cfg *c, int i, const char *stream,
                             bool pre_only)
{
    char p[96];
    int h = c->hidden;
    snprintf(p, sizeof(p), "joint_blocks.%d.%s.adaLN_modulation.1", i, stream);
    add_linear(l, p, (pre_only ? 2 : 6) * h, h, true);
    snprintf(p, sizeof(p), "joint_blocks.%d.%s.attn.qkv", i, stream);
    add_linear(l, p, 3 * h, h, true);
    if (pre_only)
        return;
    snprintf(p, sizeof(p), "joint_blocks.%d.%s.attn.proj", i, stream);
    add_linear(l, p, h, h, true);
    snprintf(p, sizeof(p), "joint_blocks.%d.%s.mlp.fc1", i, stream);
    add_linear(l, p, c->mlp_ratio * h, h, true);
    snprintf(p, sizeof(p), "joint_blocks.%d.%s.mlp.fc2", i, stream);
    add_linear(l, p, h, c->mlp_ratio * h, true);
}

static void add_mmdit(tensor_list *l, const sd3_cfg *c)
{
    int h = c->hidden, pp = c->patch * c->patch;
    snprintf(l->prefix, sizeof(l->prefix), "model.diffusion_model.");
    add_linear(l, "context_embedder", h, c->context_in, true);
    add_linear(l, "final_layer.adaLN_modulation.1", 2 * h, h, true);
    add_linear(l, "final_layer.linear", pp * c->in_ch, h, true);
    for (int i = 0; i < c->depth; i++) {
        add_mmdit_stream(l, c, i, "context_block", i == c->depth - 1);
        add_mmdit_stream(l, c, i, "x_block", false);
    }
    add(l, "pos_embed", INIT_NORMAL, 3, 1, (int64_t)c->pos_max * c->pos_max, h, 0);
    add_linear(l, "t_embedder.mlp.0", h, c->freq_dim, true);
    add_linear(l, "t_embedder.mlp.2", h, h, true);
    add_conv(l, "x_embedder.proj", h, c->in_ch, c->patch);
    add_linear(l, "y_embedder.mlp.0", h, c->adm_in, true);
    add_linear(l, "y_embedder.mlp.2", h, h, true);
}

static void add_resblock(tensor_list *l, const char *p, int in, int out)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s.norm1", p);
    add_norm(l, buf, in, true);
    snprintf(buf, sizeof(buf), "%s.conv1", p);
    add_conv(l, buf, out, in, 3);
    snprintf(buf, sizeof(buf), "%s.norm2", p);
    add_norm(l, buf, out, true);
    snprintf(buf, sizeof(buf), "%s.conv2", p);
    add_conv(l, buf, out, out, 3);
    if (in != out) {
        snprintf(buf, sizeof(buf), "%s.nin_shortcut", p);
        add_conv(l, buf, out, in, 1);
    }
}

/* mid: block_1, attn_1 (single head, 1x1 convolutions), block_2. */
static void add_vae_mid(tensor_list *l, const char *half, int w)
{
    char buf[128];
    const char *qkvo[4] = { "q", "k", "v", "proj_out" };
    snprintf(buf, sizeof(buf), "%s.mid.block_1", half);
    add_resblock(l, buf, w, w);
    snprintf(buf, sizeof(buf), "%s.mid.block_2", half);
    add_resblock(l, buf, w, w);
    snprintf(buf, sizeof(buf), "%s.mid.attn_1.norm", half);
    add_norm(l, buf, w, true);
    for (int i = 0; i < 4; i++) {
        snprintf(buf, sizeof(buf), "%s.mid.attn_1.%s", half, qkvo[i]);
        add_conv(l, buf, w, w, 1);
    }
}

static void add_vae(tensor_list *l, const sd3_cfg *c)
{
    char p[96];
    int n = c->vae_levels, top = c->vae_ch * c->vae_mult[n - 1];
    snprintf(l->prefix, sizeof(l->prefix), "first_stage_model.");
    add_conv(l, "encoder.conv_in", c->vae_ch, 3, 3);
    for (int i = 0, in = c->vae_ch; i < n; i++) {
        int w = c->vae_ch * c->vae_mult[i];
        for (int j = 0; j < c->vae_enc_blocks; j++, in = w) {
            snprintf(p, sizeof(p), "encoder.down.%d.block.%d", i, j);
            add_resblock(l, p, in, w);
        }
        snprintf(p, sizeof(p), "encoder.down.%d.downsample.conv", i);
        if (i < n - 1)
            add_conv(l, p, w, w, 3);
    }
    add_vae_mid(l, "encoder", top);
    add_norm(l, "encoder.norm_out", top, true);
    add_conv(l, "encoder.conv_out", 2 * c->vae_z, top, 3);
    add_conv(l, "decoder.conv_in", top, c->vae_z, 3);
    add_vae_mid(l, "decoder", top);
    for (int i = n - 1, in = top; i >= 0; i--) {
        int w = c->vae_ch * c->vae_mult[i];
        for (int j = 0; j < c->vae_dec_blocks; j++, in = w) {
            snprintf(p, sizeof(p), "decoder.up.%d.block.%d", i, j);
            add_resblock(l, p, in, w);
        }
        snprintf(p, sizeof(p), "decoder.up.%d.upsample.conv", i);
        if (i > 0)
            add_conv(l, p, w, w, 3);
    }
    add_norm(l, "decoder.norm_out", c->vae_ch * c->vae_mult[0], true);
    add_conv(l, "decoder.conv_out", 3, c->vae_ch * c->vae_mult[0], 3);
}

static void add_clip(tensor_list *l, const char *which, const clip_cfg *c)
{
    char p[128];
    const char *attn[4] = { "q_proj", "k_proj", "v_proj", "out_proj" };
    int w = c->width;
    snprintf(l->prefix, sizeof(l->prefix), "text_encoders.%s.transformer.", which);
    add(l, "text_model.embeddings.position_embedding.weight", INIT_NORMAL, 2, c->positions, w, 0,
        0);
    add(l, "text_model.embeddings.token_embedding.weight", INIT_NORMAL, 2, c->vocab, w, 0, 0);
    for (int i = 0; i < c->layers; i++) {
        snprintf(p, sizeof(p), "text_model.encoder.layers.%d.layer_norm1", i);
        add_norm(l, p, w, true);
        snprintf(p, sizeof(p), "text_model.encoder.layers.%d.layer_norm2", i);
        add_norm(l, p, w, true);
        snprintf(p, sizeof(p), "text_model.encoder.layers.%d.mlp.fc1", i);
        add_linear(l, p, c->ff, w, true);
        snprintf(p, sizeof(p), "text_model.encoder.layers.%d.mlp.fc2", i);
        add_linear(l, p, w, c->ff, true);
        for (int k = 0; k < 4; k++) {
            snprintf(p, sizeof(p), "text_model.encoder.layers.%d.self_attn.%s", i, attn[k]);
            add_linear(l, p, w, w, true);
        }
    }
    add_norm(l, "text_model.final_layer_norm", w, true);
    add_linear(l, "text_projection", w, w, false);
}

/* T5 v1.1 encoder, every tensor F8_E4M3 like the real ..._t5xxlfp8 file (norms included). */
static void add_t5(tensor_list *l, const sd3_cfg *c)
{
    char p[128];
    const char *qkv[3] = { "q", "k", "v" };
    int d = c->t5_d, inner = c->t5_heads * c->t5_dkv;
    lm_dtype saved = l->dtype;
    l->dtype = LM_DTYPE_F8_E4M3;
    snprintf(l->prefix, sizeof(l->prefix), "text_encoders.t5xxl.transformer.");
    for (int i = 0; i < c->t5_layers; i++) {
        for (int k = 0; k < 3; k++) {
            snprintf(p, sizeof(p), "encoder.block.%d.layer.0.SelfAttention.%s", i, qkv[k]);
            add_linear(l, p, inner, d, false);
        }
        snprintf(p, sizeof(p), "encoder.block.%d.layer.0.SelfAttention.o", i);
        add_linear(l, p, d, inner, false);
        if (i == 0)
            add_linear(l, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias",
                       c->t5_buckets, c->t5_heads, false);
        snprintf(p, sizeof(p), "encoder.block.%d.layer.0.layer_norm", i);
        add_norm(l, p, d, false);
        snprintf(p, sizeof(p), "encoder.block.%d.layer.1.DenseReluDense.wi_0", i);
        add_linear(l, p, c->t5_ff, d, false);
        snprintf(p, sizeof(p), "encoder.block.%d.layer.1.DenseReluDense.wi_1", i);
        add_linear(l, p, c->t5_ff, d, false);
        snprintf(p, sizeof(p), "encoder.block.%d.layer.1.DenseReluDense.wo", i);
        add_linear(l, p, d, c->t5_ff, false);
        snprintf(p, sizeof(p), "encoder.block.%d.layer.1.layer_norm", i);
        add_norm(l, p, d, false);
    }
    add_norm(l, "encoder.final_layer_norm", d, false);
    add_linear(l, "shared", c->t5_vocab, d, false);
    add_linear(l, "encoder.embed_tokens", c->t5_vocab, d, false);
    if (!l->oom) /* the copy holds the same values as shared.weight */
        snprintf(l->t[l->n - 1].seed_name, sizeof(l->t[0].seed_name), "%s", l->t[l->n - 2].name);
    l->dtype = saved;
}

static int64_t numel(const tensor_def *d)
{
    int64_t n = 1;
    for (int i = 0; i < d->ndim; i++)
        n *= d->shape[i];
    return n;
}

/* safetensors' order: larger dtypes first (alignment), then by name. */
static int cmp_layout(const void *a, const void *b)
{
    const tensor_def *x = a, *y = b;
    size_t sx = lm_dtype_size(x->dtype), sy = lm_dtype_size(y->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Builds the sorted list with offsets; false when out of memory. */
static bool build_list(tensor_list *l, const sd3_cfg *c, bool with_t5)
{
    memset(l, 0, sizeof(*l));
    l->dtype = LM_DTYPE_F16;
    add_mmdit(l, c);
    add_vae(l, c);
    add_clip(l, "clip_l", &c->clip_l);
    add_clip(l, "clip_g", &c->clip_g);
    if (with_t5)
        add_t5(l, c);
    if (l->oom)
        return false;
    qsort(l->t, l->n, sizeof(*l->t), cmp_layout);
    uint64_t off = 0;
    for (size_t i = 0; i < l->n; i++) {
        l->t[i].begin = off;
        off += (uint64_t)numel(&l->t[i]) * lm_dtype_size(l->t[i].dtype);
        l->t[i].end = off;
    }
    return true;
}

/* ---- --check: compare the list with a reference file ---- */

static int check_against(const tensor_list *l, const char *ref)
{
    lm_error err;
    lm_safetensors *st = NULL;
    if (lm_safetensors_open(&st, ref, &err) != LM_OK) {
        char msg[600];
        lm_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "make_sd3_random: %s\n", msg);
        return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < l->n; i++) {
        const tensor_def *d = &l->t[i];
        const lm_safetensors_entry *e = lm_safetensors_find(st, d->name);
        bool same = e && e->ndim == d->ndim &&
                    strcmp(lm_safetensors_dtype_name(e->dtype), lm_dtype_name(d->dtype)) == 0;
        for (int k = 0; same && k < d->ndim; k++)
            same = e->shape[k] == d->shape[k];
        if (!same) {
            fprintf(stderr, "check: %s: %s in %s\n", d->name,
                    e ? "shape or dtype differs" : "absent", ref);
            bad++;
        }
    }
    size_t n_ref = lm_safetensors_count(st);
    if (n_ref != l->n) {
        fprintf(stderr, "check: %s has %zu tensors, the generated list %zu\n", ref, n_ref, l->n);
        bad++;
    }
    printf("check: %zu tensors against %s: %s\n", l->n, ref,
           bad ? "DIFFERENT"
               : "same names, "
                 "shapes and dtypes");
    lm_safetensors_close(st);
    return bad ? 1 : 0;
}

/* ---- values ---- */

typedef struct {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603u ^ seed; /* FNV-1a of the name, mixed with the seed */
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211u;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&h);
}

static uint64_t rng_next(rng *r) /* xoshiro256+ */
{
    uint64_t *s = r->s, out = s[0] + s[3], t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return out;
}

/* Near-normal with standard deviation `std`: four 16-bit uniforms summed (Irwin–Hall). */
static void fill_normal(rng *r, float *dst, size_t n, float std)
{
    const float k = std * 1.7320508f / 65536.0f; /* sqrt(3) / 2^16: unit variance */
    for (size_t i = 0; i < n; i++) {
        uint64_t u = rng_next(r);
        uint32_t sum = (uint32_t)(u & 0xffff) + (uint32_t)((u >> 16) & 0xffff) +
                       (uint32_t)((u >> 32) & 0xffff) + (uint32_t)(u >> 48);
        dst[i] = ((float)sum - 131070.0f) * k;
    }
}

/* Writes one tensor's bytes through the two chunk buffers. */
static bool write_tensor(FILE *f, const tensor_def *d, uint64_t seed, float *fbuf, void *obuf)
{
    rng r;
    rng_seed(&r, seed, d->seed_name);
    size_t es = lm_dtype_size(d->dtype);
    for (int64_t left = numel(d); left > 0;) {
        size_t n = left < (int64_t)CHUNK ? (size_t)left : CHUNK;
        if (d->init == INIT_NORMAL)
            fill_normal(&r, fbuf, n, STD_WEIGHT);
        else
            for (size_t i = 0; i < n; i++)
                fbuf[i] = d->init == INIT_ONES ? 1.0f : 0.0f;
        lm_dtype_from_f32(obuf, fbuf, d->dtype, n);
        if (fwrite(obuf, es, n, f) != n)
            return false;
        left -= (int64_t)n;
    }
    return true;
}

/* ---- the file ---- */

/* The JSON header, padded with spaces to a multiple of 8 bytes (as the safetensors library
 * does, so the data section starts aligned). Caller frees. */
static char *make_header(const tensor_list *l, const sd3_cfg *c, size_t *len)
{
    size_t cap = 4096 + l->n * 256, n = 0;
    char *h = malloc(cap);
    if (!h)
        return NULL;
    n += (size_t)snprintf(h + n, cap - n,
                          "{\"__metadata__\":{\"format\":\"pt\",\"clip_l.num_attention_heads\":"
                          "\"%d\",\"clip_g.num_attention_heads\":\"%d\"}",
                          c->clip_l.heads, c->clip_g.heads);
    for (size_t i = 0; i < l->n; i++) {
        const tensor_def *d = &l->t[i];
        n += (size_t)snprintf(h + n, cap - n, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", d->name,
                              lm_dtype_name(d->dtype));
        for (int k = 0; k < d->ndim; k++)
            n += (size_t)snprintf(h + n, cap - n, "%s%" PRId64, k ? "," : "", d->shape[k]);
        n += (size_t)snprintf(h + n, cap - n, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                              d->begin, d->end);
    }
    n += (size_t)snprintf(h + n, cap - n, "}");
    while (n % 8 != 0 && n + 1 < cap)
        h[n++] = ' ';
    h[n] = '\0';
    *len = n;
    return h;
}

static int write_file(const tensor_list *l, const sd3_cfg *c, const char *path, uint64_t seed)
{
    char tmp[4096];
    size_t hlen = 0;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    char *header = make_header(l, c, &hlen);
    float *fbuf = malloc(CHUNK * sizeof(float));
    void *obuf = malloc(CHUNK * sizeof(float));
    FILE *f = fopen(tmp, "wb");
    int rc = 1;
    if (!header || !fbuf || !obuf) {
        fprintf(stderr, "make_sd3_random: out of memory\n");
        goto out;
    }
    if (!f) {
        fprintf(stderr, "make_sd3_random: %s: cannot create (%s); check the directory exists\n",
                tmp, strerror(errno));
        goto out;
    }
    setvbuf(f, NULL, _IOFBF, 4u << 20);
    uint64_t total = l->n ? l->t[l->n - 1].end : 0, next_report = 0;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    for (size_t i = 0; ok && i < l->n; i++) {
        ok = write_tensor(f, &l->t[i], seed, fbuf, obuf);
        if (ok && l->t[i].end >= next_report && total > (1u << 30)) {
            fprintf(stderr, "make_sd3_random: %5.1f of %.1f GB\n", (double)l->t[i].end * 1e-9,
                    (double)total * 1e-9);
            next_report = l->t[i].end + total / 10;
        }
    }
    if (fclose(f) != 0 || !ok) {
        fprintf(stderr, "make_sd3_random: %s: write failed (%s); check the free disk space\n", tmp,
                strerror(errno));
        f = NULL;
        remove(tmp);
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "make_sd3_random: cannot rename %s to %s (%s)\n", tmp, path,
                strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (f)
        fclose(f);
    free(header);
    free(fbuf);
    free(obuf);
    return rc;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: make_sd3_random [--with-t5] [--seed N] [--tiny] [--check REF] [OUT]\n"
            "  OUT          checkpoint to write (SD3 Medium layout, random F16 weights)\n"
            "  --with-t5    include T5-XXL in F8_E4M3 (adds 4.9 GB; the bench does not need it)\n"
            "  --seed N     PRNG seed (default 1)\n"
            "  --tiny       sd3m_tiny's sizes instead of SD3 Medium's\n"
            "  --check REF  compare names, shapes and dtypes with REF (e.g. with --tiny\n"
            "               --with-t5 against ../shared/golden/sd3m_tiny.safetensors)\n");
}

int main(int argc, char **argv)
{
    const char *out = NULL, *check = NULL;
    bool with_t5 = false, tiny = false;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--with-t5") == 0)
            with_t5 = true;
        else if (strcmp(argv[i], "--tiny") == 0)
            tiny = true;
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--check") == 0 && i + 1 < argc)
            check = argv[++i];
        else if (argv[i][0] != '-' && !out)
            out = argv[i];
        else {
            usage();
            return 2;
        }
    }
    if (!out && !check) {
        usage();
        return 2;
    }
    const sd3_cfg *c = tiny ? &cfg_tiny : &cfg_medium;
    tensor_list l;
    if (!build_list(&l, c, with_t5)) {
        fprintf(stderr, "make_sd3_random: out of memory\n");
        return 1;
    }
    int rc = check ? check_against(&l, check) : 0;
    if (rc == 0 && out) {
        double t0 = (double)clock() / CLOCKS_PER_SEC;
        rc = write_file(&l, c, out, seed);
        if (rc == 0)
            printf("make_sd3_random: %s: %zu tensors, %.2f GB of data (%.0f s of CPU)\n", out, l.n,
                   (double)l.t[l.n - 1].end * 1e-9, (double)clock() / CLOCKS_PER_SEC - t0);
    }
    free(l.t);
    return rc;
}
