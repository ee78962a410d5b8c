/* tests/sd3/test_diffusers.c — diffusers pipeline folders (transformer/, vae/,
 * text_encoder/ .. text_encoder_3/, tokenizer/ .. tokenizer_3/) give exactly the numbers
 * of the all-in-one checkpoint.
 *
 * Each test builds a diffusers folder in its temporary directory FROM the tiny all-in-one
 * checkpoint of ../shared/golden (sd3m: MMDiT; sd35m: MMDiT-X with q/k norm and attn2),
 * with the conversion written here independently of the loader: qkv split into
 * to_q/to_k/to_v, names translated, VAE up levels reversed, 1x1 attention convs stored as
 * Linear matrices, the (shift, scale) halves of the AdaLayerNormContinuous layers swapped,
 * the transformer and T5 sharded into two files with an index, config.json heads for the
 * CLIPs, and the shared tokenizers linked in as tokenizer/, tokenizer_2/, tokenizer_3/.
 * Outputs are compared byte for byte with the same inputs through the all-in-one file. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/exec.h"
#include "core/io/safetensors.h"
#include "core/validate.h"
#include "core/workflow.h"
#include "nodes/builtin.h"
#include "nodes/sd3/clip.h"
#include "nodes/sd3/mmdit.h"
#include "nodes/sd3/models.h"
#include "nodes/sd3/t5.h"
#include "nodes/sd3/vae.h"
#include "tests/sd3/sd3_fixture.h"
#include "tests/test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a small safetensors writer ---- */

typedef struct {
    char name[256];
    const char *dtype; /* safetensors name */
    int ndim;
    int64_t shape[8];
    const void *data; /* borrowed from the source mapping */
    size_t bytes;
    bool swap; /* write the second half first */
} out_tensor;

typedef struct {
    out_tensor *t;
    size_t n, cap;
} out_set;

static out_tensor *out_add(out_set *s, const char *name, const lm_safetensors_entry *e)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->t = realloc(s->t, s->cap * sizeof(*s->t));
    }
    out_tensor *t = &s->t[s->n++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype = lm_safetensors_dtype_name(e->dtype);
    t->ndim = e->ndim;
    memcpy(t->shape, e->shape, sizeof(t->shape));
    t->data = e->data;
    t->bytes = e->bytes;
    return t;
}

/* Writes tensors [first, first + n) of s as one safetensors file. */
static bool write_st(const char *path, const out_set *s, size_t first, size_t n)
{
    lm_str h;
    lm_str_init(&h);
    lm_str_append(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    for (size_t i = first; i < first + n; i++) {
        const out_tensor *t = &s->t[i];
        lm_str_appendf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++)
            lm_str_appendf(&h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        lm_str_appendf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + t->bytes);
        off += t->bytes;
    }
    lm_str_append(&h, "}");
    while (h.len % 8)
        lm_str_append(&h, " ");
    FILE *f = fopen(path, "wb");
    bool ok = f != NULL;
    uint64_t len = h.len;
    ok = ok && fwrite(&len, 8, 1, f) == 1 && fwrite(lm_str_cstr(&h), 1, h.len, f) == h.len;
    for (size_t i = first; ok && i < first + n; i++) {
        const out_tensor *t = &s->t[i];
        size_t half = t->swap ? t->bytes / 2 : 0;
        const char *p = t->data;
        ok = fwrite(p + half, 1, t->bytes - half, f) == t->bytes - half &&
             fwrite(p, 1, half, f) == half;
    }
    if (f)
        ok = fclose(f) == 0 && ok;
    lm_str_fini(&h);
    return ok;
}

/* Two shards and model.safetensors.index.json-style index named `index`. */
static bool write_sharded(const char *dir, const char *base, const out_set *s)
{
    char p1[1200], p2[1200], idx[1200];
    size_t half = s->n / 2;
    snprintf(p1, sizeof(p1), "%s/%s-00001-of-00002.safetensors", dir, base);
    snprintf(p2, sizeof(p2), "%s/%s-00002-of-00002.safetensors", dir, base);
    snprintf(idx, sizeof(idx), "%s/%s.safetensors.index.json", dir, base);
    if (!write_st(p1, s, 0, half) || !write_st(p2, s, half, s->n - half))
        return false;
    lm_str j;
    lm_str_init(&j);
    lm_str_append(&j, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
    for (size_t i = 0; i < s->n; i++)
        lm_str_appendf(&j, "%s\"%s\":\"%s-0000%d-of-00002.safetensors\"", i ? "," : "",
                       s->t[i].name, base, i < half ? 1 : 2);
    lm_str_append(&j, "}}");
    bool ok = test_write_file(idx, lm_str_cstr(&j)) != NULL;
    lm_str_fini(&j);
    return ok;
}

/* ---- the conversion (reference name -> diffusers name) ---- */

typedef struct {
    const char *from, *to;
} repl;

/* The first matching prefix of `rest` replaced; false when none matches. */
static bool replace_prefix(const repl *r, size_t n, const char *head, const char *rest, char *out,
                           size_t size)
{
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(r[i].from);
        if (strncmp(rest, r[i].from, l) == 0) {
            snprintf(out, size, "%s%s%s", head, r[i].to, rest + l);
            return true;
        }
    }
    return false;
}

static const repl top_names[] = {
    { "x_embedder.proj", "pos_embed.proj" },
    { "pos_embed", "pos_embed.pos_embed" },
    { "t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1" },
    { "t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2" },
    { "y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1" },
    { "y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2" },
    { "context_embedder", "context_embedder" },
    { "final_layer.adaLN_modulation.1", "norm_out.linear" },
    { "final_layer.linear", "proj_out" },
};
static const repl x_names[] = {
    { "adaLN_modulation.1", "norm1.linear" },
    { "attn.proj", "attn.to_out.0" },
    { "attn.ln_q", "attn.norm_q" },
    { "attn.ln_k", "attn.norm_k" },
    { "attn2.proj", "attn2.to_out.0" },
    { "attn2.ln_q", "attn2.norm_q" },
    { "attn2.ln_k", "attn2.norm_k" },
    { "mlp.fc1", "ff.net.0.proj" },
    { "mlp.fc2", "ff.net.2" },
};
static const repl ctx_names[] = {
    { "adaLN_modulation.1", "norm1_context.linear" },
    { "attn.proj", "attn.to_add_out" },
    { "attn.ln_q", "attn.norm_added_q" },
    { "attn.ln_k", "attn.norm_added_k" },
    { "mlp.fc1", "ff_context.net.0.proj" },
    { "mlp.fc2", "ff_context.net.2" },
};

/* qkv [3H, ...] as three tensors named <head><q|k|v><leaf>. */
static void add_split(out_set *s, const lm_safetensors_entry *e, const char *head,
                      const char *const names[3], const char *leaf)
{
    for (int k = 0; k < 3; k++) {
        char n[256];
        snprintf(n, sizeof(n), "%s%s%s", head, names[k], leaf);
        out_tensor *t = out_add(s, n, e);
        t->shape[0] = e->shape[0] / 3;
        t->bytes = e->bytes / 3;
        t->data = (const char *)e->data + (size_t)k * t->bytes;
    }
}

static void convert_block(out_set *s, lm_safetensors *src, const lm_safetensors_entry *e,
                          const char *pre, int i, const char *rest)
{
    static const char *const xq[3] = { "attn.to_q", "attn.to_k", "attn.to_v" };
    static const char *const x2q[3] = { "attn2.to_q", "attn2.to_k", "attn2.to_v" };
    static const char *const cq[3] = { "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj" };
    char head[64], n[256];
    snprintf(head, sizeof(head), "transformer_blocks.%d.", i);
    bool x = strncmp(rest, "x_block.", 8) == 0;
    const char *r = rest + (x ? 8 : 14);
    if (strncmp(r, "attn.qkv", 8) == 0) {
        add_split(s, e, head, x ? xq : cq, r + 8);
        return;
    }
    if (strncmp(r, "attn2.qkv", 9) == 0) {
        add_split(s, e, head, x2q, r + 9);
        return;
    }
    bool ok = x ? replace_prefix(x_names, LM_COUNTOF(x_names), head, r, n, sizeof(n))
                : replace_prefix(ctx_names, LM_COUNTOF(ctx_names), head, r, n, sizeof(n));
    REQUIRE(ok);
    out_tensor *t = out_add(s, n, e);
    if (!x && strncmp(r, "adaLN_modulation", 16) == 0) {
        char proj[160];
        snprintf(proj, sizeof(proj), "%sjoint_blocks.%d.context_block.attn.proj.weight", pre, i);
        t->swap = lm_safetensors_find(src, proj) == NULL; /* pre-only: AdaLayerNormContinuous */
    }
}

static void convert_mmdit(out_set *s, lm_safetensors *src, const lm_safetensors_entry *e,
                          const char *pre, const char *name)
{
    int i = -1, at = 0;
    if (sscanf(name, "joint_blocks.%d.%n", &i, &at) == 1 && at > 0) {
        convert_block(s, src, e, pre, i, name + at);
        return;
    }
    char n[256];
    REQUIRE(replace_prefix(top_names, LM_COUNTOF(top_names), "", name, n, sizeof(n)));
    out_add(s, n, e)->swap = strncmp(name, "final_layer.adaLN", 17) == 0;
}

static const repl vae_names[] = {
    { "mid.block_1.", "mid_block.resnets.0." },
    { "mid.block_2.", "mid_block.resnets.1." },
    { "mid.attn_1.norm.", "mid_block.attentions.0.group_norm." },
    { "mid.attn_1.q.", "mid_block.attentions.0.to_q." },
    { "mid.attn_1.k.", "mid_block.attentions.0.to_k." },
    { "mid.attn_1.v.", "mid_block.attentions.0.to_v." },
    { "mid.attn_1.proj_out.", "mid_block.attentions.0.to_out.0." },
    { "norm_out.", "conv_norm_out." },
    { "conv_in.", "conv_in." },
    { "conv_out.", "conv_out." },
};

static void convert_vae(out_set *s, const lm_safetensors_entry *e, const char *name, int levels)
{
    char n[256], side[16], leaf[160];
    int lvl, blk;
    snprintf(side, sizeof(side), "%.7s.", name);
    const char *rest = name + 8;
    if (sscanf(rest, "down.%d.block.%d.%159s", &lvl, &blk, leaf) == 3 ||
        sscanf(rest, "up.%d.block.%d.%159s", &lvl, &blk, leaf) == 3) {
        bool up = rest[0] == 'u';
        bool nin = strncmp(leaf, "nin_shortcut", 12) == 0;
        snprintf(n, sizeof(n), "%s%s_blocks.%d.resnets.%d.%s%s", side, up ? "up" : "down",
                 up ? levels - 1 - lvl : lvl, blk, nin ? "conv_shortcut" : "",
                 nin ? leaf + 12 : leaf);
    } else if (sscanf(rest, "down.%d.downsample.conv.%159s", &lvl, leaf) == 2) {
        snprintf(n, sizeof(n), "%sdown_blocks.%d.downsamplers.0.conv.%s", side, lvl, leaf);
    } else if (sscanf(rest, "up.%d.upsample.conv.%159s", &lvl, leaf) == 2) {
        snprintf(n, sizeof(n), "%sup_blocks.%d.upsamplers.0.conv.%s", side, levels - 1 - lvl, leaf);
    } else {
        REQUIRE(replace_prefix(vae_names, LM_COUNTOF(vae_names), side, rest, n, sizeof(n)));
    }
    out_tensor *t = out_add(s, n, e);
    if (strstr(n, "attentions.0.to_") && t->ndim == 4)
        t->ndim = 2; /* [C, C, 1, 1] conv -> [C, C] Linear */
}

/* ---- building a folder ---- */

typedef struct {
    const char *drop;      /* a diffusers tensor name left out, or NULL */
    const char *bad_shape; /* a diffusers tensor written as rank 1, or NULL */
} build_opts;

static int count_up_levels(lm_safetensors *src)
{
    int n = 0;
    for (char name[160];; n++) {
        snprintf(name, sizeof(name), "first_stage_model.decoder.up.%d.block.0.conv1.weight", n);
        if (!lm_safetensors_find(src, name))
            return n;
    }
}

static void apply_opts(out_set *s, const build_opts *o)
{
    for (size_t i = 0; o && i < s->n; i++) {
        if (o->bad_shape && strcmp(s->t[i].name, o->bad_shape) == 0) {
            int64_t n = 1;
            for (int d = 0; d < s->t[i].ndim; d++)
                n *= s->t[i].shape[d];
            s->t[i].ndim = 1;
            s->t[i].shape[0] = n;
        }
        if (o->drop && strcmp(s->t[i].name, o->drop) == 0)
            s->t[i--] = s->t[--s->n];
    }
}

static bool mkdir_in(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
    return mkdir(out, 0755) == 0;
}

/* The CLIP heads the all-in-one file's metadata gives, as a config.json. */
static bool write_clip_config(const char *dir, lm_safetensors *src, const char *key)
{
    char path[1200], text[128];
    const char *h = lm_safetensors_metadata(src, key);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    snprintf(text, sizeof(text),
             "{\"architectures\":[\"CLIPTextModelWithProjection\"],"
             "\"num_attention_heads\":%s}",
             h ? h : "1");
    return test_write_file(path, text) != NULL;
}

static bool link_shared(const char *dir, const char *name, const char *shared_rel)
{
    char dst[1200];
    const char *src = test_shared(shared_rel);
    snprintf(dst, sizeof(dst), "%s/%s", dir, name);
    return src && symlink(src, dst) == 0;
}

/* Component prefixes of the all-in-one file, the sub-folder and how each is written. */
static const struct {
    const char *prefix, *sub, *heads_key;
    int kind; /* 0 MMDiT, 1 VAE, 2 text (names kept) */
    bool sharded;
} parts[] = {
    { "model.diffusion_model.", "transformer", NULL, 0, true },
    { "first_stage_model.", "vae", NULL, 1, false },
    { "text_encoders.clip_l.transformer.", "text_encoder", "clip_l.num_attention_heads", 2, false },
    { "text_encoders.clip_g.transformer.", "text_encoder_2", "clip_g.num_attention_heads", 2,
      false },
    { "text_encoders.t5xxl.transformer.", "text_encoder_3", NULL, 2, true },
};

static bool build_part(const char *root, lm_safetensors *src, size_t p, const build_opts *o)
{
    char dir[1100];
    out_set s = { 0 };
    size_t first = 0, n = lm_safetensors_find_prefix(src, parts[p].prefix, &first);
    size_t plen = strlen(parts[p].prefix);
    int levels = count_up_levels(src);
    for (size_t i = first; i < first + n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(src, i);
        if (parts[p].kind == 0)
            convert_mmdit(&s, src, e, parts[p].prefix, e->name + plen);
        else if (parts[p].kind == 1)
            convert_vae(&s, e, e->name + plen, levels);
        else
            out_add(&s, e->name + plen, e);
    }
    apply_opts(&s, o);
    bool ok = mkdir_in(dir, sizeof(dir), root, parts[p].sub);
    const char *base = parts[p].kind == 2 ? "model" : "diffusion_pytorch_model";
    char file[1200];
    snprintf(file, sizeof(file), "%s/%s.safetensors", dir, base);
    if (ok)
        ok = parts[p].sharded ? write_sharded(dir, base, &s) : write_st(file, &s, 0, s.n);
    if (ok && parts[p].heads_key)
        ok = write_clip_config(dir, src, parts[p].heads_key);
    free(s.t);
    return ok && n > 0;
}

/* <tmp>/<name>: a diffusers folder converted from the all-in-one golden checkpoint. */
static const char *build_folder(const char *ckpt, const char *parent, const char *name,
                                const build_opts *o)
{
    static char root[1100];
    lm_error err;
    lm_safetensors *src = NULL;
    const char *path = test_shared(ckpt);
    if (!path || lm_safetensors_open(&src, path, &err) != LM_OK)
        return NULL;
    snprintf(root, sizeof(root), "%s/%s", parent, name);
    bool ok = mkdir(root, 0755) == 0;
    char idx[1200];
    snprintf(idx, sizeof(idx), "%s/model_index.json", root);
    ok = ok && test_write_file(idx, "{\"_class_name\": \"StableDiffusion3Pipeline\"}");
    for (size_t p = 0; ok && p < LM_COUNTOF(parts); p++)
        ok = build_part(root, src, p, o);
    ok = ok && link_shared(root, "tokenizer", "tokenizers/clip") &&
         link_shared(root, "tokenizer_2", "tokenizers/clip") &&
         link_shared(root, "tokenizer_3", "tokenizers/t5");
    lm_safetensors_close(src);
    if (!ok)
        test__fail(__FILE__, __LINE__, "could not build a diffusers folder from %s", ckpt);
    return ok ? root : NULL;
}

/* ---- both layouts side by side ---- */

typedef struct {
    lm_safetensors *st;
    lm_sd3_diffusers *dif;
    bool found[2][LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[2][LM_SD3_COMPONENT_COUNT]; /* [0] all-in-one, [1] diffusers */
} pair;

static bool pair_open(pair *p, const char *ckpt, const char *flavour)
{
    memset(p, 0, sizeof(*p));
    const char *dir = build_folder(ckpt, test_tmpdir(), flavour, NULL);
    lm_error err;
    if (!dir || lm_safetensors_open(&p->st, test_shared(ckpt), &err) != LM_OK)
        return false;
    lm_sd3_detect(p->st, p->found[0], p->w[0]);
    lm_status st = lm_sd3_diffusers_open(&p->dif, dir, p->found[1], p->w[1], &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "lm_sd3_diffusers_open", st, &err);
    return st == LM_OK;
}

static void pair_close(pair *p)
{
    lm_sd3_diffusers_close(p->dif);
    lm_safetensors_close(p->st);
}

static bool same(const lm_tensor *a, const lm_tensor *b)
{
    lm_tensor *fa = NULL, *fb = NULL;
    lm_error err;
    bool ok = a && b && lm_tensor_numel(a) == lm_tensor_numel(b) &&
              lm_tensor_to_f32_host(&fa, a, &err) == LM_OK &&
              lm_tensor_to_f32_host(&fb, b, &err) == LM_OK &&
              memcmp(lm_tensor_data(fa), lm_tensor_data(fb), lm_tensor_nbytes(fa)) == 0;
    lm_tensor_free(fa);
    lm_tensor_free(fb);
    return ok;
}

/* A tensor of the shape with a smooth deterministic pattern in [-1, 1]. */
static lm_tensor *pattern(int ndim, const int64_t *shape, float phase)
{
    lm_tensor *t = NULL;
    lm_error err;
    if (lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, ndim, shape, &err) != LM_OK)
        return NULL;
    float *d = lm_tensor_data(t);
    for (int64_t i = 0; i < lm_tensor_numel(t); i++)
        d[i] = sinf(0.37f * (float)i + phase);
    return t;
}

static void check_mmdit(const char *ckpt, const char *flavour)
{
    pair p;
    REQUIRE(pair_open(&p, ckpt, flavour));
    lm_mmdit *m[2] = { NULL, NULL };
    lm_error err;
    for (int k = 0; k < 2; k++)
        CHECK_OK(lm_mmdit_load(&m[k], &p.w[k][LM_SD3_MMDIT], &err), &err);
    if (m[0] && m[1]) {
        const lm_mmdit_config *c = lm_mmdit_config_of(m[0]), *c1 = lm_mmdit_config_of(m[1]);
        CHECK(memcmp(c, c1, sizeof(*c)) == 0);
        int64_t xs[4] = { 1, c->in_channels, 8, 8 }, cs[3] = { 1, 5, c->context_in };
        int64_t ys[2] = { 1, c->adm_in }, ss[1] = { 1 };
        lm_tensor *x = pattern(4, xs, 0.1f), *ctx = pattern(3, cs, 0.7f), *y = pattern(2, ys, 1.3f);
        lm_tensor *sig = pattern(1, ss, 0.9f), *out[2] = { NULL, NULL };
        for (int k = 0; k < 2; k++)
            CHECK_OK(lm_mmdit_forward(m[k], x, sig, ctx, y, NULL, &out[k], &err), &err);
        CHECK(same(out[0], out[1]));
        lm_tensor *all[] = { x, ctx, y, sig, out[0], out[1] };
        for (size_t i = 0; i < LM_COUNTOF(all); i++)
            lm_tensor_free(all[i]);
    }
    lm_mmdit_free(m[0]);
    lm_mmdit_free(m[1]);
    pair_close(&p);
}

void test_sd3_diffusers__mmdit_sd3m_bit_identical(void)
{
    check_mmdit("golden/sd3m_tiny.safetensors", "sd3m");
}

void test_sd3_diffusers__mmdit_x_sd35m_bit_identical(void)
{
    check_mmdit("golden/sd35m_tiny.safetensors", "sd35m");
}

static void check_vae(const char *ckpt, const char *flavour)
{
    pair p;
    REQUIRE(pair_open(&p, ckpt, flavour));
    lm_vae *v[2] = { NULL, NULL };
    lm_error err;
    for (int k = 0; k < 2; k++)
        CHECK_OK(lm_vae_load(&v[k], &p.w[k][LM_SD3_VAE], &err), &err);
    if (v[0] && v[1]) {
        const lm_vae_config *c = lm_vae_config_of(v[0]);
        CHECK(memcmp(c, lm_vae_config_of(v[1]), sizeof(*c)) == 0);
        int64_t ls[4] = { 1, c->z_channels, 4, 4 }, is[4] = { 1, 3, 32, 32 };
        lm_tensor *lat = pattern(4, ls, 0.2f), *img = pattern(4, is, 0.5f);
        lm_tensor *dec[2] = { NULL, NULL }, *enc[2] = { NULL, NULL };
        for (int k = 0; k < 2; k++) {
            CHECK_OK(lm_vae_decode(v[k], lat, &dec[k], NULL, NULL, &err), &err);
            CHECK_OK(lm_vae_encode(v[k], img, NULL, &enc[k], NULL, NULL, NULL, &err), &err);
        }
        CHECK(same(dec[0], dec[1]));
        CHECK(same(enc[0], enc[1]));
        lm_tensor *all[] = { lat, img, dec[0], dec[1], enc[0], enc[1] };
        for (size_t i = 0; i < LM_COUNTOF(all); i++)
            lm_tensor_free(all[i]);
    }
    lm_vae_free(v[0]);
    lm_vae_free(v[1]);
    pair_close(&p);
}

void test_sd3_diffusers__vae_sd3m_decode_encode_bit_identical(void)
{
    check_vae("golden/sd3m_tiny.safetensors", "sd3m");
}

void test_sd3_diffusers__vae_sd35m_decode_encode_bit_identical(void)
{
    check_vae("golden/sd35m_tiny.safetensors", "sd35m");
}

static void check_text(const char *ckpt, const char *flavour)
{
    pair p;
    REQUIRE(pair_open(&p, ckpt, flavour));
    lm_error err;
    static const int32_t words[] = { 49406, 320, 1125, 3360, 539, 518, 2583, 49407 };
    int32_t clip_ids[77];
    for (size_t i = 0; i < LM_COUNTOF(clip_ids); i++)
        clip_ids[i] = i < LM_COUNTOF(words) ? words[i] : 49407; /* one chunk, EOS-padded */
    static const int32_t t5_ids[] = { 3, 9, 1131, 3, 89, 226, 1 };
    for (int kind = 0; kind < 2; kind++) {
        lm_sd3_component c = kind ? LM_SD3_CLIP_G : LM_SD3_CLIP_L;
        lm_clip *m[2] = { NULL, NULL };
        lm_tensor *pen[2] = { NULL, NULL }, *pool[2] = { NULL, NULL };
        for (int k = 0; k < 2; k++) {
            CHECK_OK(lm_clip_load(&m[k], &p.w[k][c], kind ? LM_CLIP_KIND_G : LM_CLIP_KIND_L, &err),
                     &err);
            if (m[k])
                CHECK_OK(lm_clip_encode(m[k], clip_ids, LM_COUNTOF(clip_ids), NULL, &pen[k],
                                        &pool[k], &err),
                         &err);
        }
        if (m[0] && m[1])
            CHECK_INT(lm_clip_config_of(m[1])->heads, lm_clip_config_of(m[0])->heads);
        CHECK(same(pen[0], pen[1]));
        CHECK(same(pool[0], pool[1]));
        for (int k = 0; k < 2; k++) {
            lm_clip_free(m[k]);
            lm_tensor_free(pen[k]);
            lm_tensor_free(pool[k]);
        }
    }
    lm_t5 *t[2] = { NULL, NULL };
    lm_tensor *out[2] = { NULL, NULL };
    for (int k = 0; k < 2; k++) {
        CHECK_OK(lm_t5_load(&t[k], &p.w[k][LM_SD3_T5XXL], &err), &err);
        if (t[k])
            CHECK_OK(lm_t5_encode(t[k], t5_ids, LM_COUNTOF(t5_ids), NULL, &out[k], &err), &err);
    }
    CHECK(same(out[0], out[1]));
    for (int k = 0; k < 2; k++) {
        lm_t5_free(t[k]);
        lm_tensor_free(out[k]);
    }
    pair_close(&p);
}

void test_sd3_diffusers__text_encoders_sd3m_bit_identical(void)
{
    check_text("golden/sd3m_tiny.safetensors", "sd3m");
}

void test_sd3_diffusers__text_encoders_sd35m_bit_identical(void)
{
    check_text("golden/sd35m_tiny.safetensors", "sd35m");
}

/* ---- errors ---- */

static void expect_load_error(const char *name, const build_opts *o, lm_sd3_component c,
                              const char *in_msg, const char *in_file)
{
    const char *dir = build_folder("golden/sd35m_tiny.safetensors", test_tmpdir(), name, o);
    REQUIRE(dir);
    lm_sd3_diffusers *d = NULL;
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_error err;
    REQUIRE_OK(lm_sd3_diffusers_open(&d, dir, found, w, &err), &err);
    lm_status st;
    if (c == LM_SD3_MMDIT) {
        lm_mmdit *m = NULL;
        st = lm_mmdit_load(&m, &w[c], &err);
        lm_mmdit_free(m);
    } else {
        lm_vae *v = NULL;
        st = lm_vae_load(&v, &w[c], &err);
        lm_vae_free(v);
    }
    CHECK(st != LM_OK);
    test_note("%s: %s", err.file, err.msg);
    CHECK_CONTAINS(err.msg, in_msg);
    CHECK_CONTAINS(err.file, in_file);
    lm_sd3_diffusers_close(d);
}

void test_sd3_diffusers__missing_tensor_names_diffusers_name_and_file(void)
{
    build_opts o = { .drop = "transformer_blocks.1.attn.add_k_proj.weight" };
    expect_load_error("a", &o, LM_SD3_MMDIT,
                      "\"transformer_blocks.1.attn.add_k_proj.weight\" is missing",
                      "transformer/diffusion_pytorch_model.safetensors.index.json");
    build_opts v = { .drop = "decoder.up_blocks.0.upsamplers.0.conv.bias" };
    expect_load_error("b", &v, LM_SD3_VAE,
                      "\"decoder.up_blocks.0.upsamplers.0.conv.bias\" is missing",
                      "vae/diffusion_pytorch_model.safetensors");
}

void test_sd3_diffusers__misshaped_tensor_names_diffusers_name(void)
{
    build_opts o = { .bad_shape = "transformer_blocks.0.attn.add_v_proj.weight" };
    expect_load_error("a", &o, LM_SD3_MMDIT,
                      "\"transformer_blocks.0.attn.add_v_proj.weight\" has shape",
                      "transformer/diffusion_pytorch_model-0000");
    build_opts v = { .bad_shape = "encoder.mid_block.attentions.0.to_q.weight" };
    expect_load_error("b", &v, LM_SD3_VAE,
                      "\"encoder.mid_block.attentions.0.to_q.weight\" has shape",
                      "vae/diffusion_pytorch_model.safetensors");
}

void test_sd3_diffusers__folder_without_weights_is_an_error(void)
{
    char dir[1100], sub[1200];
    snprintf(dir, sizeof(dir), "%s/empty", test_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0);
    snprintf(sub, sizeof(sub), "%s/model_index.json", dir);
    REQUIRE(test_write_file(sub, "{}"));
    CHECK(lm_sd3_diffusers_is_folder(dir));
    CHECK(!lm_sd3_diffusers_is_folder(test_tmpdir()));
    lm_sd3_diffusers *d = NULL;
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_error err;
    CHECK(lm_sd3_diffusers_open(&d, dir, found, w, &err) == LM_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "holds no model weights");
    CHECK(d == NULL);
}

/* A diffusers VAE file on its own is found by lm_sd3_detect and loads as the reference. */
void test_sd3_diffusers__lone_diffusers_vae_file_is_detected(void)
{
    const char *dir = build_folder("golden/sd3m_tiny.safetensors", test_tmpdir(), "d", NULL);
    REQUIRE(dir);
    char path[1200];
    snprintf(path, sizeof(path), "%s/vae/diffusion_pytorch_model.safetensors", dir);
    lm_safetensors *st = NULL;
    lm_error err;
    REQUIRE_OK(lm_safetensors_open(&st, path, &err), &err);
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_sd3_detect(st, found, w);
    CHECK(found[LM_SD3_VAE] && !found[LM_SD3_MMDIT]);
    CHECK_INT(w[LM_SD3_VAE].layout, LM_SD3_LAYOUT_DIFFUSERS);
    char name[256] = "";
    CHECK(lm_sd3_weights_stored_name(&w[LM_SD3_VAE], "decoder.up.0.block.0.nin_shortcut.weight",
                                     name, sizeof(name)));
    CHECK_STR(name, "decoder.up_blocks.3.resnets.0.conv_shortcut.weight");
    int64_t shape[8];
    CHECK_INT(lm_sd3_weights_shape(&w[LM_SD3_VAE], "encoder.mid.attn_1.q.weight", shape), 4);
    lm_vae *v = NULL;
    CHECK_OK(lm_vae_load(&v, &w[LM_SD3_VAE], &err), &err);
    lm_vae_free(v);
    lm_safetensors_close(st);
}

/* ---- CheckpointLoaderSimple on a folder ---- */

static const char *const txt2img_yaml = SD3_TXT2IMG_YAML("%s");

/* Runs txt2img with ckpt_name `name` and returns a host copy of the image. */
static lm_tensor *run_txt2img(lm_registry *reg, const lm_env *env, const char *name)
{
    char text[2048];
    snprintf(text, sizeof(text), txt2img_yaml, name);
    lm_graph *g = NULL;
    lm_plan *plan = NULL;
    lm_exec *ex = NULL;
    lm_run_result *res = NULL;
    lm_tensor *copy = NULL;
    lm_diag diag;
    lm_error err;
    lm_diag_init(&diag);
    lm_status st = lm_workflow_parse(text, strlen(text), "flow", &g, &err);
    if (st == LM_OK && (st = lm_validate(g, reg, env, NULL, &plan, &diag)) != LM_OK)
        err = diag.count ? diag.items[0] : err;
    if (st == LM_OK)
        st = lm_exec_new(&ex, NULL, &err);
    if (st == LM_OK)
        st = lm_exec_run(ex, plan, env, NULL, &res, &err);
    if (st == LM_OK && res->n_outputs >= 1)
        st = lm_tensor_to_f32_host(&copy, lm_value_tensor(res->outputs[0]), &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, name, st, &err);
    lm_run_result_free(res);
    lm_exec_free(ex);
    lm_plan_free(plan);
    lm_graph_free(g);
    lm_diag_fini(&diag);
    return copy;
}

static void check_checkpoint_loader(const char *flavour)
{
    char models[1100], ck[1200], single[1300], rel[256], folder[64];
    snprintf(models, sizeof(models), "%s/models", test_tmpdir());
    snprintf(ck, sizeof(ck), "%s/checkpoints", models);
    snprintf(rel, sizeof(rel), "golden/%s_tiny.safetensors", flavour);
    snprintf(folder, sizeof(folder), "%s-diffusers", flavour);
    REQUIRE(mkdir(models, 0755) == 0 && mkdir(ck, 0755) == 0);
    REQUIRE(build_folder(rel, ck, folder, NULL));
    snprintf(single, sizeof(single), "%s/%s_tiny.safetensors", ck, flavour);
    REQUIRE(symlink(test_shared(rel), single) == 0);
    /* No tokenizers/ in the models directory: the folder's own are used for it, and the
     * all-in-one file finds LOOM_SHARED's. */
    lm_env env = { .models_dir = models,
                   .input_dir = test_tmpdir(),
                   .output_dir = test_tmpdir(),
                   .temp_dir = test_tmpdir() };
    lm_strlist names = { 0 };
    lm_error err;
    REQUIRE_OK(lm_sd3_models_list(&env, LM_SD3_FOLDER_CHECKPOINTS, &names, &err), &err);
    CHECK_INT(names.count, 2);
    CHECK(lm_strlist_contains(&names, folder));
    lm_strlist_fini(&names);
    lm_registry *reg = NULL;
    REQUIRE_OK(lm_registry_new(&reg, &err), &err);
    CHECK_OK(lm_nodes_register_builtin(reg, &err), &err);
    char single_name[128];
    snprintf(single_name, sizeof(single_name), "%s_tiny.safetensors", flavour);
    lm_tensor *a = run_txt2img(reg, &env, single_name);
    lm_tensor *b = run_txt2img(reg, &env, folder);
    CHECK(same(a, b));
    lm_tensor_free(a);
    lm_tensor_free(b);
    lm_registry_free(reg);
}

void test_sd3_diffusers__checkpoint_loader_sd3m_folder_same_pixels(void)
{
    check_checkpoint_loader("sd3m");
}

void test_sd3_diffusers__checkpoint_loader_sd35m_folder_same_pixels(void)
{
    check_checkpoint_loader("sd35m");
}
