/* tests/sd3/test_devices.c — every SD3 model loaded on a device computes what it computes on
 * the CPU, bit for bit, behind a host-memory boundary.
 *
 * The device is the loopback (the CPU's kernels behind a device boundary: its tensors have no
 * host pointer and ops refuse to mix them with CPU tensors), so any code that would break on
 * CUDA breaks here too, while the results must equal the CPU's exactly. Each model of the tiny
 * golden checkpoints (MMDiT of SD3 and SD3.5 with MMDiT-X blocks and skip layers, CLIP-L,
 * CLIP-G, T5 in float8 and f16, the VAE whole and in tiles) is loaded once on the CPU and once
 * on the loopback; the same host inputs go through both, and the outputs must be host F32
 * tensors with identical bytes (memcmp). The weights must sit on the device in their stored
 * dtype: lm_*_device_bytes must equal the stored bytes of the component's tensors in the file
 * (a widened copy would be 2 or 4 times that), the loopback must really hold them, and for the
 * MMDiT each bound tensor is checked directly. A loopback too small for a model (the
 * LOOM_LOOPBACK_MEMORY variable) makes its load fail with LM_ENOMEM naming the model, and
 * leaves no device memory behind. */
#include "core/io/safetensors.h"
#include "core/tensor/ops.h"
#include "core/tensor/rng.h"
#include "nodes/sd3/clip.h"
#include "nodes/sd3/conditioner.h"
#include "nodes/sd3/mmdit.h"
#include "nodes/sd3/mmdit_impl.h"
#include "nodes/sd3/t5.h"
#include "nodes/sd3/vae.h"
#include "tests/sd3/sd3_fixture.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TAPS 64

static const char *const checkpoints[2] = { "golden/sd3m_tiny.safetensors",
                                            "golden/sd35m_tiny.safetensors" };

/* ---- helpers ---- */

typedef struct {
    lm_safetensors *st;
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
} ckpt;

static bool ckpt_open(ckpt *c, const char *rel)
{
    memset(c, 0, sizeof(*c));
    c->st = gold_open(rel);
    if (c->st)
        lm_sd3_detect(c->st, c->found, c->w);
    return c->st != NULL;
}

static void ckpt_close(ckpt *c)
{
    lm_safetensors_close(c->st);
    memset(c, 0, sizeof(*c));
}

/* The bytes a component's tensors take in the file, in their stored dtype: what a device copy
 * of the model must hold. T5 files may carry encoder.embed_tokens.weight, a duplicate of
 * shared.weight the encoder never reads (and so never copies). */
static size_t stored_bytes(const lm_sd3_weights *w)
{
    size_t first = 0, n = lm_safetensors_find_prefix(w->st, w->prefix, &first), bytes = 0;
    for (size_t i = first; i < first + n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(w->st, i);
        if (!strstr(e->name, "encoder.embed_tokens.weight"))
            bytes += e->bytes;
    }
    return bytes;
}

static size_t loopback_live(void)
{
    lm_backend_mem m;
    lm_backend_mem_stats(lm_backend_loopback(), &m);
    return m.live;
}

/* Where a model computes and what it copied: `dev` is the loopback model, `cpu` the CPU one;
 * live0 is the loopback's live bytes before the device model was loaded. */
static void check_placement(const char *what, lm_backend *cpu_be, size_t cpu_bytes,
                            lm_backend *dev_be, size_t dev_bytes, const lm_sd3_weights *w,
                            size_t live0)
{
    size_t want = stored_bytes(w), held = loopback_live() - live0;
    test_note("%s: %zu weight bytes on the loopback (file: %zu), loopback holds %zu more", what,
              dev_bytes, want, held);
    if (cpu_be != lm_backend_cpu() || cpu_bytes != 0)
        test__fail(__FILE__, __LINE__, "%s on the CPU: backend %s, %zu device bytes", what,
                   lm_backend_name(cpu_be), cpu_bytes);
    if (dev_be != lm_backend_loopback() || dev_bytes != want || held < dev_bytes)
        test__fail(__FILE__, __LINE__,
                   "%s on the loopback: backend %s, %zu device bytes (stored: %zu), loopback "
                   "holds %zu",
                   what, lm_backend_name(dev_be), dev_bytes, want, held);
}

/* The two results are host F32 tensors of one shape with identical bytes. */
static void check_same(const char *what, const lm_tensor *cpu, const lm_tensor *dev)
{
    lm_error err;
    lm_tensor *a = NULL, *b = NULL;
    if (!cpu || !dev) {
        test__fail(__FILE__, __LINE__, "%s: a result is missing (cpu %p, loopback %p)", what,
                   (const void *)cpu, (const void *)dev);
        return;
    }
    bool host = lm_tensor_data(cpu) && lm_tensor_data(dev);
    bool shape = cpu->ndim == dev->ndim && cpu->dtype == LM_DTYPE_F32 && dev->dtype == cpu->dtype;
    for (int d = 0; shape && d < cpu->ndim; d++)
        shape = cpu->shape[d] == dev->shape[d];
    if (!host || !shape) {
        char dc[96], dd[96];
        lm_tensor_describe(cpu, dc, sizeof(dc));
        lm_tensor_describe(dev, dd, sizeof(dd));
        test__fail(__FILE__, __LINE__, "%s: cpu %s (host %d), loopback %s (host %d)", what, dc,
                   lm_tensor_data(cpu) != NULL, dd, lm_tensor_data(dev) != NULL);
        return;
    }
    CHECK_OK(lm_tensor_contiguous(&a, cpu, &err), &err);
    CHECK_OK(lm_tensor_contiguous(&b, dev, &err), &err);
    if (a && b && memcmp(lm_tensor_data(a), lm_tensor_data(b), lm_tensor_nbytes(a)) != 0)
        test__fail(__FILE__, __LINE__, "%s: the loopback's result differs from the CPU's", what);
    else if (a && b)
        test_note("%s: %lld values identical", what, (long long)lm_tensor_numel(a));
    lm_tensor_free(a);
    lm_tensor_free(b);
}

/* t moved to backend be (a test input handed over already on the device). */
static lm_tensor *moved_to(const lm_tensor *t, lm_backend *be)
{
    lm_error err;
    lm_tensor *out = NULL;
    if (t)
        CHECK_OK(lm_tensor_to(&out, t, be, &err), &err);
    return out;
}

/* ---- MMDiT ---- */

/* Host f32 copies of what the inspect hook showed, and how many of them were device tensors. */
typedef struct {
    int n, on_device;
    lm_tensor *t[MAX_TAPS];
} taps;

static void tap(const char *name, const lm_tensor *t, void *user)
{
    taps *k = user;
    lm_error err;
    LM_UNUSED(name);
    if (!t || k->n >= MAX_TAPS)
        return;
    k->on_device += lm_tensor_data(t) == NULL;
    CHECK_OK(lm_tensor_to_f32_host(&k->t[k->n++], t, &err), &err);
}

static void taps_fini(taps *k)
{
    for (int i = 0; i < k->n; i++)
        lm_tensor_free(k->t[i]);
    memset(k, 0, sizeof(*k));
}

/* Every bound weight of the loopback model is a loopback tensor of the dtype the CPU model
 * maps from the file. */
static void check_mmdit_weights(const lm_mmdit *cpu, const lm_mmdit *dev)
{
    const lm_mmdit__block *bc = &cpu->blocks[0], *bd = &dev->blocks[0];
    const lm_tensor *pairs[][2] = {
        { cpu->x_emb_w, dev->x_emb_w },         { cpu->pos_embed, dev->pos_embed },
        { cpu->ctx_emb.w, dev->ctx_emb.w },     { cpu->final_lin.w, dev->final_lin.w },
        { bc->x.attn.qkv.w, bd->x.attn.qkv.w }, { bc->x.attn2.qkv.w, bd->x.attn2.qkv.w },
        { bc->x.attn.ln_q, bd->x.attn.ln_q },   { bc->ctx.fc2.w, bd->ctx.fc2.w },
    };
    for (size_t i = 0; i < LM_COUNTOF(pairs); i++) {
        const lm_tensor *c = pairs[i][0], *d = pairs[i][1];
        if (!c && !d)
            continue; /* absent in this model (attn2, q/k norm) */
        REQUIRE(c && d);
        CHECK(lm_tensor_backend(c) == lm_backend_cpu());
        CHECK(lm_tensor_backend(d) == lm_backend_loopback());
        CHECK(lm_tensor_data(d) == NULL);
        CHECK_INT(d->dtype, c->dtype);
        CHECK(c->dtype != LM_DTYPE_F32); /* the tiny checkpoints store F16 */
    }
}

/* Batch of two: x and x/2 at sigmas s0 and s1, the same text twice. */
static void batch2(lm_safetensors *g, lm_tensor *in[4])
{
    lm_error err;
    lm_tensor *x = gold_tensor(g, "x"), *c = gold_tensor(g, "context"), *y = gold_tensor(g, "y");
    lm_tensor *s0 = gold_tensor(g, "s0.sigma"), *s1 = gold_tensor(g, "s1.sigma"), *half = NULL;
    CHECK_OK(lm_scale(&half, x, 0.5f, 0.0f, &err), &err);
    const lm_tensor *xs[2] = { x, half }, *ss[2] = { s0, s1 }, *cs[2] = { c, c }, *ys[2] = { y, y };
    CHECK_OK(lm_concat(&in[0], xs, 2, 0, &err), &err);
    CHECK_OK(lm_concat(&in[1], ss, 2, 0, &err), &err);
    CHECK_OK(lm_concat(&in[2], cs, 2, 0, &err), &err);
    CHECK_OK(lm_concat(&in[3], ys, 2, 0, &err), &err);
    lm_tensor *all[] = { x, c, y, s0, s1, half };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_tensor_free(all[i]);
}

/* The golden step with the inspect hook, then a batch of two skipping block 1, then the
 * golden step again with its inputs already on the device. */
static void mmdit_runs(const lm_mmdit *cpu, const lm_mmdit *dev, lm_safetensors *g)
{
    lm_error err;
    lm_tensor *in[4] = { gold_tensor(g, "x"), gold_tensor(g, "s0.sigma"), gold_tensor(g, "context"),
                         gold_tensor(g, "y") };
    lm_tensor *b2[4] = { NULL }, *out[2] = { NULL }, *skip[2] = { NULL }, *din[4], *pre = NULL;
    taps tp[2] = { { 0 } };
    const lm_mmdit *m[2] = { cpu, dev };
    const int one[1] = { 1 };
    batch2(g, b2);
    for (int k = 0; k < 2; k++) {
        lm_mmdit_opts o = { .inspect = tap, .user = &tp[k] };
        lm_mmdit_opts so = { .skip_layers = one, .n_skip_layers = 1 };
        CHECK_OK(lm_mmdit_forward(m[k], in[0], in[1], in[2], in[3], &o, &out[k], &err), &err);
        CHECK_OK(lm_mmdit_forward(m[k], b2[0], b2[1], b2[2], b2[3], &so, &skip[k], &err), &err);
    }
    check_same("MMDiT forward", out[0], out[1]);
    check_same("MMDiT batch of 2, block 1 skipped", skip[0], skip[1]);
    CHECK(tp[0].n > 0 && tp[0].n == tp[1].n);
    CHECK_INT(tp[0].on_device, 0);
    CHECK_INT(tp[1].on_device, tp[1].n); /* the hook sees the device's own tensors */
    for (int i = 0; i < tp[0].n && i < tp[1].n; i++)
        check_same("MMDiT inspect hook", tp[0].t[i], tp[1].t[i]);
    for (int i = 0; i < 4; i++)
        din[i] = moved_to(in[i], lm_backend_loopback());
    CHECK_OK(lm_mmdit_forward(dev, din[0], din[1], din[2], din[3], NULL, &pre, &err), &err);
    check_same("MMDiT forward, inputs already on the device", out[0], pre);
    lm_tensor *all[] = { out[0], out[1], skip[0], skip[1], pre };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_tensor_free(all[i]);
    for (int i = 0; i < 4; i++) {
        lm_tensor_free(in[i]);
        lm_tensor_free(b2[i]);
        lm_tensor_free(din[i]);
    }
    taps_fini(&tp[0]);
    taps_fini(&tp[1]);
}

static void mmdit_case(const char *ckpt_rel, const char *golden_rel)
{
    lm_error err;
    ckpt c;
    lm_safetensors *g = gold_open(golden_rel);
    lm_mmdit *cpu = NULL, *dev = NULL;
    memset(&c, 0, sizeof(c));
    if (!g || !ckpt_open(&c, ckpt_rel) || !c.found[LM_SD3_MMDIT]) {
        CHECK(g == NULL || c.st == NULL);
        ckpt_close(&c);
        lm_safetensors_close(g);
        return;
    }
    size_t live0 = loopback_live();
    CHECK_OK(lm_mmdit_load(&cpu, &c.w[LM_SD3_MMDIT], &err), &err);
    CHECK_OK(lm_mmdit_load_on(&dev, &c.w[LM_SD3_MMDIT], lm_backend_loopback(), &err), &err);
    if (cpu && dev) {
        check_placement("MMDiT", lm_mmdit_backend(cpu), lm_mmdit_device_bytes(cpu),
                        lm_mmdit_backend(dev), lm_mmdit_device_bytes(dev), &c.w[LM_SD3_MMDIT],
                        live0);
        check_mmdit_weights(cpu, dev);
        mmdit_runs(cpu, dev, g);
    }
    lm_mmdit_free(dev);
    CHECK_INT(loopback_live(), live0); /* the model's device memory went with it */
    lm_mmdit_free(cpu);
    ckpt_close(&c);
    lm_safetensors_close(g);
}

void test_sd3_devices__mmdit_sd3(void)
{
    mmdit_case(checkpoints[0], "golden/sd3m_mmdit.safetensors");
}

void test_sd3_devices__mmdit_x_sd35(void)
{
    mmdit_case(checkpoints[1], "golden/sd35m_mmdit.safetensors");
}

void test_sd3_devices__mmdit_refuses_another_device(void)
{
    lm_error err;
    ckpt c;
    lm_safetensors *g = gold_open("golden/sd3m_mmdit.safetensors");
    lm_mmdit *cpu = NULL;
    if (!g || !ckpt_open(&c, checkpoints[0])) {
        lm_safetensors_close(g);
        return;
    }
    lm_tensor *x = gold_tensor(g, "x"), *s = gold_tensor(g, "s0.sigma"),
              *ctx = gold_tensor(g, "context");
    lm_tensor *y = gold_tensor(g, "y"), *dy = moved_to(y, lm_backend_loopback()), *out = NULL;
    CHECK_OK(lm_mmdit_load(&cpu, &c.w[LM_SD3_MMDIT], &err), &err);
    if (cpu && dy) {
        CHECK_INT(lm_mmdit_forward(cpu, x, s, ctx, dy, NULL, &out, &err), LM_EINVAL);
        CHECK_STR(err.kind, "wrong_backend");
        CHECK_CONTAINS(err.msg, "pooled y is on loopback");
        CHECK(out == NULL);
    }
    lm_tensor *all[] = { x, s, ctx, y, dy };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_tensor_free(all[i]);
    lm_mmdit_free(cpu);
    ckpt_close(&c);
    lm_safetensors_close(g);
}

/* ---- CLIP, T5, conditioning ---- */

/* Prompt weights for n ids: a weighted run in the middle, the rest 1.0. */
static double *some_weights(size_t n)
{
    double *w = malloc((n + 1) * sizeof(double));
    for (size_t i = 0; i < n; i++)
        w[i] = i >= 3 && i < 9 ? 1.21 : i == 12 ? 0.8 : 1.0;
    return w;
}

/* One CLIP on both: every lm_clip_forward result, then SD3's encode of two chunks with
 * prompt weights, and the empty prompt. */
static void clip_compare(const lm_clip *cpu, const lm_clip *dev, const int32_t *ids, size_t n,
                         const char *name)
{
    lm_error err;
    lm_clip_hidden h[2];
    lm_tensor *pen[3][2] = { { NULL } }, *pool[3][2] = { { NULL } };
    const lm_clip *m[2] = { cpu, dev };
    int32_t *two = malloc(2 * n * sizeof(int32_t));
    memcpy(two, ids, n * sizeof(int32_t));
    memcpy(two + n, ids, n * sizeof(int32_t));
    double *w = some_weights(2 * n);
    for (int k = 0; k < 2; k++) {
        CHECK_OK(lm_clip_forward(m[k], ids, n, 0x1f, &h[k], &err), &err);
        CHECK_OK(lm_clip_encode(m[k], ids, n, NULL, &pen[0][k], &pool[0][k], &err), &err);
        CHECK_OK(lm_clip_encode(m[k], two, 2 * n, w, &pen[1][k], &pool[1][k], &err), &err);
        CHECK_OK(lm_clip_encode(m[k], NULL, 0, NULL, &pen[2][k], &pool[2][k], &err), &err);
    }
    const lm_tensor *f[2][5] = {
        { h[0].embeddings, h[0].penultimate, h[0].last_hidden_ln, h[0].pooled_raw,
          h[0].pooled_projected },
        { h[1].embeddings, h[1].penultimate, h[1].last_hidden_ln, h[1].pooled_raw,
          h[1].pooled_projected },
    };
    static const char *const fields[5] = { "embeddings", "penultimate", "last_hidden_ln",
                                           "pooled_raw", "pooled_projected" };
    static const char *const encodes[3] = { "encode", "weighted 2-chunk encode", "empty encode" };
    char what[128];
    for (int i = 0; i < 5; i++) {
        snprintf(what, sizeof(what), "%s forward %s", name, fields[i]);
        check_same(what, f[0][i], f[1][i]);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(what, sizeof(what), "%s %s penultimate", name, encodes[i]);
        check_same(what, pen[i][0], pen[i][1]);
        snprintf(what, sizeof(what), "%s %s pooled", name, encodes[i]);
        check_same(what, pool[i][0], pool[i][1]);
        for (int k = 0; k < 2; k++) {
            lm_tensor_free(pen[i][k]);
            lm_tensor_free(pool[i][k]);
        }
    }
    lm_clip_hidden_fini(&h[0]);
    lm_clip_hidden_fini(&h[1]);
    free(two);
    free(w);
}

static void clip_case(int set, lm_clip_kind kind)
{
    static const char *const texts[2] = { "golden/sd3m_text.safetensors",
                                          "golden/sd35m_text.safetensors" };
    lm_error err;
    ckpt c;
    size_t n = 0;
    lm_sd3_component comp = kind == LM_CLIP_KIND_L ? LM_SD3_CLIP_L : LM_SD3_CLIP_G;
    const char *name = kind == LM_CLIP_KIND_L ? "CLIP-L" : "CLIP-G";
    lm_safetensors *g = gold_open(texts[set]);
    lm_clip *cpu = NULL, *dev = NULL;
    if (!g || !ckpt_open(&c, checkpoints[set])) {
        lm_safetensors_close(g);
        return;
    }
    int32_t *ids =
        gold_ids(g, kind == LM_CLIP_KIND_L ? "positive.clip_l.ids" : "positive.clip_g.ids", &n);
    size_t live0 = loopback_live();
    CHECK_OK(lm_clip_load(&cpu, &c.w[comp], kind, &err), &err);
    CHECK_OK(lm_clip_load_on(&dev, &c.w[comp], kind, lm_backend_loopback(), &err), &err);
    if (cpu && dev && ids) {
        check_placement(name, lm_clip_backend(cpu), lm_clip_device_bytes(cpu), lm_clip_backend(dev),
                        lm_clip_device_bytes(dev), &c.w[comp], live0);
        clip_compare(cpu, dev, ids, n, name);
    }
    lm_clip_free(dev);
    CHECK_INT(loopback_live(), live0);
    lm_clip_free(cpu);
    free(ids);
    ckpt_close(&c);
    lm_safetensors_close(g);
}

void test_sd3_devices__clip_l(void)
{
    clip_case(0, LM_CLIP_KIND_L);
    clip_case(1, LM_CLIP_KIND_L);
}

void test_sd3_devices__clip_g(void)
{
    clip_case(0, LM_CLIP_KIND_G);
    clip_case(1, LM_CLIP_KIND_G);
}

/* T5 on both: encode (plain, weighted, empty), embed, position bias. */
static void t5_compare(const lm_t5 *cpu, const lm_t5 *dev, const int32_t *ids, size_t n,
                       const char *name)
{
    lm_error err;
    lm_tensor *r[5][2] = { { NULL } };
    const lm_t5 *m[2] = { cpu, dev };
    double *w = some_weights(n);
    for (int k = 0; k < 2; k++) {
        CHECK_OK(lm_t5_encode(m[k], ids, n, NULL, &r[0][k], &err), &err);
        CHECK_OK(lm_t5_encode(m[k], ids, n, w, &r[1][k], &err), &err);
        CHECK_OK(lm_t5_encode(m[k], NULL, 0, NULL, &r[2][k], &err), &err);
        CHECK_OK(lm_t5_embed(m[k], ids, n, &r[3][k], &err), &err);
        CHECK_OK(lm_t5_position_bias(m[k], (int64_t)n, &r[4][k], &err), &err);
    }
    static const char *const what[5] = { "encode", "weighted encode", "empty encode", "embed",
                                         "position bias" };
    for (int i = 0; i < 5; i++) {
        char label[96];
        snprintf(label, sizeof(label), "%s %s", name, what[i]);
        check_same(label, r[i][0], r[i][1]);
        lm_tensor_free(r[i][0]);
        lm_tensor_free(r[i][1]);
    }
    free(w);
}

static void t5_case(int set, const char *ids_name)
{
    static const char *const texts[2] = { "golden/sd3m_text.safetensors",
                                          "golden/sd35m_text.safetensors" };
    lm_error err;
    ckpt c;
    size_t n = 0;
    lm_safetensors *g = gold_open(texts[set]);
    lm_t5 *cpu = NULL, *dev = NULL;
    if (!g || !ckpt_open(&c, checkpoints[set])) {
        lm_safetensors_close(g);
        return;
    }
    int32_t *ids = gold_ids(g, ids_name, &n);
    size_t live0 = loopback_live();
    CHECK_OK(lm_t5_load(&cpu, &c.w[LM_SD3_T5XXL], &err), &err);
    CHECK_OK(lm_t5_load_on(&dev, &c.w[LM_SD3_T5XXL], lm_backend_loopback(), &err), &err);
    if (cpu && dev && ids) {
        char name[64];
        lm_tensor *stored = NULL;
        CHECK_OK(lm_sd3_weights_get(&c.w[LM_SD3_T5XXL], "shared.weight", -1, NULL, &stored, &err),
                 &err);
        snprintf(name, sizeof(name), "T5 (%s)", stored ? lm_dtype_name(stored->dtype) : "?");
        check_placement(name, lm_t5_backend(cpu), lm_t5_device_bytes(cpu), lm_t5_backend(dev),
                        lm_t5_device_bytes(dev), &c.w[LM_SD3_T5XXL], live0);
        t5_compare(cpu, dev, ids, n, name);
        lm_tensor_free(stored);
    }
    lm_t5_free(dev);
    CHECK_INT(loopback_live(), live0);
    lm_t5_free(cpu);
    free(ids);
    ckpt_close(&c);
    lm_safetensors_close(g);
}

void test_sd3_devices__t5_float8(void)
{
    t5_case(0, "positive.t5xxl.ids"); /* sd3m: T5 stored as F8_E4M3 */
}

void test_sd3_devices__t5_f16(void)
{
    t5_case(1, "t5_long.t5xxl.ids"); /* sd35m: T5 stored as F16, 141 tokens */
}

/* SD3's conditioning with every encoder on the loopback, and with the encoders split between
 * the loopback and the CPU, against all of them on the CPU. */
void test_sd3_devices__conditioning(void)
{
    lm_error err;
    ckpt c;
    lm_safetensors *g = gold_open("golden/sd3m_text.safetensors");
    if (!g || !ckpt_open(&c, checkpoints[0])) {
        lm_safetensors_close(g);
        return;
    }
    lm_clip *l[2] = { NULL }, *gg[2] = { NULL };
    lm_t5 *t[2] = { NULL };
    lm_backend *be[2] = { NULL, lm_backend_loopback() };
    for (int k = 0; k < 2; k++) {
        CHECK_OK(lm_clip_load_on(&l[k], &c.w[LM_SD3_CLIP_L], LM_CLIP_KIND_L, be[k], &err), &err);
        CHECK_OK(lm_clip_load_on(&gg[k], &c.w[LM_SD3_CLIP_G], LM_CLIP_KIND_G, be[k], &err), &err);
        CHECK_OK(lm_t5_load_on(&t[k], &c.w[LM_SD3_T5XXL], be[k], &err), &err);
    }
    static const char *const encs[3] = { "clip_l", "clip_g", "t5xxl" };
    int32_t *ids[3] = { NULL };
    lm_sd3_text_ids in[3] = { { 0 } };
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof(name), "positive.%s.ids", encs[i]);
        in[i].ids = ids[i] = gold_ids(g, name, &in[i].n);
    }
    double *w = some_weights(in[0].n);
    in[0].weights = w;
    lm_tensor *ctx[3] = { NULL }, *y[3] = { NULL };
    if (l[1] && gg[1] && t[1] && ids[0] && ids[1] && ids[2]) {
        CHECK_OK(
            lm_sd3_condition(l[0], gg[0], t[0], &in[0], &in[1], &in[2], NULL, &ctx[0], &y[0], &err),
            &err);
        CHECK_OK(
            lm_sd3_condition(l[1], gg[1], t[1], &in[0], &in[1], &in[2], NULL, &ctx[1], &y[1], &err),
            &err);
        CHECK_OK(
            lm_sd3_condition(l[1], gg[0], t[1], &in[0], &in[1], &in[2], NULL, &ctx[2], &y[2], &err),
            &err);
    }
    check_same("conditioning context, all on the loopback", ctx[0], ctx[1]);
    check_same("conditioning pooled, all on the loopback", y[0], y[1]);
    check_same("conditioning context, CLIP-G on the CPU", ctx[0], ctx[2]);
    check_same("conditioning pooled, CLIP-G on the CPU", y[0], y[2]);
    for (int k = 0; k < 3; k++) {
        lm_tensor_free(ctx[k]);
        lm_tensor_free(y[k]);
        free(ids[k]);
    }
    for (int k = 0; k < 2; k++) {
        lm_clip_free(l[k]);
        lm_clip_free(gg[k]);
        lm_t5_free(t[k]);
    }
    free(w);
    ckpt_close(&c);
    lm_safetensors_close(g);
}

/* ---- VAE ---- */

/* Counts callback stages, those whose tensor had no host pointer, and the most tiles seen. */
typedef struct {
    int n, on_device, tiles;
} stages;

static lm_status count_stage(const lm_vae_event *ev, void *user)
{
    stages *s = user;
    s->n++;
    s->on_device += ev->tensor && lm_tensor_data(ev->tensor) == NULL;
    s->tiles = LM_MAX(s->tiles, ev->tiles);
    return LM_OK;
}

typedef struct {
    lm_tensor *dec, *mean, *sample, *tiled_dec, *tiled_mean, *tiled_sample;
    stages st;
} vae_results;

static void vae_results_fini(vae_results *r)
{
    lm_tensor *all[6] = {
        r->dec, r->mean, r->sample, r->tiled_dec, r->tiled_mean, r->tiled_sample
    };
    for (int i = 0; i < 6; i++)
        lm_tensor_free(all[i]);
    memset(r, 0, sizeof(*r));
}

/* Decode and encode (sampling from seed 14), whole and in 32-pixel tiles overlapping by 8:
 * several tiles each way on the golden sizes. */
static void vae_run(const lm_vae *vae, const lm_tensor *latent, const lm_tensor *image,
                    vae_results *r)
{
    lm_error err;
    lm_rng *rng[2] = { NULL, NULL };
    lm_vae_tile_opts o = { .tile_size = 32, .overlap = 8 };
    CHECK_OK(lm_rng_new(&rng[0], 14, &err), &err);
    CHECK_OK(lm_rng_new(&rng[1], 14, &err), &err);
    if (!rng[0] || !rng[1]) {
        lm_rng_free(rng[0]);
        lm_rng_free(rng[1]);
        return;
    }
    CHECK_OK(lm_vae_decode(vae, latent, &r->dec, count_stage, &r->st, &err), &err);
    CHECK_OK(lm_vae_encode(vae, image, rng[0], &r->mean, &r->sample, count_stage, &r->st, &err),
             &err);
    CHECK_OK(lm_vae_decode_tiled(vae, latent, &o, &r->tiled_dec, count_stage, &r->st, &err), &err);
    CHECK_OK(lm_vae_encode_tiled(vae, image, &o, rng[1], &r->tiled_mean, &r->tiled_sample,
                                 count_stage, &r->st, &err),
             &err);
    lm_rng_free(rng[0]);
    lm_rng_free(rng[1]);
}

static void vae_compare(const vae_results *c, const vae_results *d)
{
    check_same("VAE decode", c->dec, d->dec);
    check_same("VAE encode mean", c->mean, d->mean);
    check_same("VAE encode sample", c->sample, d->sample);
    check_same("VAE tiled decode", c->tiled_dec, d->tiled_dec);
    check_same("VAE tiled encode mean", c->tiled_mean, d->tiled_mean);
    check_same("VAE tiled encode sample", c->tiled_sample, d->tiled_sample);
    CHECK(c->st.n > 0 && c->st.n == d->st.n);
    CHECK(d->st.tiles >= 4); /* several tiles each way (12 on the golden sizes) */
    CHECK_INT(c->st.on_device, 0);
    CHECK_INT(d->st.on_device, d->st.n); /* the callback sees the device's own tensors */
}

static void vae_case(int set)
{
    static const char *const golds[2] = { "golden/sd3m_vae.safetensors",
                                          "golden/sd35m_vae.safetensors" };
    lm_error err;
    ckpt c;
    lm_safetensors *g = gold_open(golds[set]);
    lm_vae *cpu = NULL, *dev = NULL;
    if (!g || !ckpt_open(&c, checkpoints[set])) {
        lm_safetensors_close(g);
        return;
    }
    lm_tensor *latent = gold_tensor(g, "decode.latent_scaled"),
              *image = gold_tensor(g, "encode.image");
    size_t live0 = loopback_live();
    CHECK_OK(lm_vae_load(&cpu, &c.w[LM_SD3_VAE], &err), &err);
    CHECK_OK(lm_vae_load_on(&dev, &c.w[LM_SD3_VAE], lm_backend_loopback(), &err), &err);
    if (cpu && dev && latent && image) {
        vae_results r[2];
        memset(r, 0, sizeof(r));
        check_placement("VAE", lm_vae_backend(cpu), lm_vae_device_bytes(cpu), lm_vae_backend(dev),
                        lm_vae_device_bytes(dev), &c.w[LM_SD3_VAE], live0);
        vae_run(cpu, latent, image, &r[0]);
        vae_run(dev, latent, image, &r[1]);
        vae_compare(&r[0], &r[1]);
        vae_results_fini(&r[0]);
        vae_results_fini(&r[1]);
        /* A latent handed over already on the device decodes the same. */
        lm_tensor *dl = moved_to(latent, lm_backend_loopback()), *a = NULL, *b = NULL;
        CHECK_OK(lm_vae_decode(cpu, latent, &a, NULL, NULL, &err), &err);
        CHECK_OK(lm_vae_decode(dev, dl, &b, NULL, NULL, &err), &err);
        check_same("VAE decode, latent already on the device", a, b);
        lm_tensor_free(a);
        lm_tensor_free(b);
        lm_tensor_free(dl);
    }
    lm_vae_free(dev);
    CHECK_INT(loopback_live(), live0);
    lm_vae_free(cpu);
    lm_tensor_free(latent);
    lm_tensor_free(image);
    ckpt_close(&c);
    lm_safetensors_close(g);
}

void test_sd3_devices__vae_sd3(void)
{
    vae_case(0);
}

void test_sd3_devices__vae_sd35(void)
{
    vae_case(1);
}

/* ---- a device too small ---- */

void test_sd3_devices__too_small_device_fails_naming_the_model(void)
{
    lm_error err;
    ckpt c;
    if (!ckpt_open(&c, checkpoints[0]))
        return;
    setenv("LOOM_LOOPBACK_MEMORY", "1M", 1); /* less than any tiny model needs */
    size_t live0 = loopback_live();
    lm_mmdit *m = NULL;
    lm_vae *v = NULL;
    lm_clip *g = NULL;
    lm_t5 *t = NULL;
    lm_backend *lb = lm_backend_loopback();
    CHECK_INT(lm_mmdit_load_on(&m, &c.w[LM_SD3_MMDIT], lb, &err), LM_ENOMEM);
    CHECK_CONTAINS(err.msg, "MMDiT");
    CHECK_CONTAINS(err.msg, "loopback");
    CHECK_STR(err.kind, "out_of_memory");
    CHECK(err.hint[0] != '\0');
    test_note("%s; %s", err.msg, err.hint);
    CHECK(m == NULL);
    CHECK_INT(lm_vae_load_on(&v, &c.w[LM_SD3_VAE], lb, &err), LM_ENOMEM);
    CHECK_CONTAINS(err.msg, "VAE");
    CHECK(v == NULL);
    CHECK_INT(lm_clip_load_on(&g, &c.w[LM_SD3_CLIP_G], LM_CLIP_KIND_G, lb, &err), LM_ENOMEM);
    CHECK_CONTAINS(err.msg, "CLIP-G");
    CHECK(g == NULL);
    CHECK_INT(lm_t5_load_on(&t, &c.w[LM_SD3_T5XXL], lb, &err), LM_ENOMEM);
    CHECK_CONTAINS(err.msg, "T5-XXL");
    CHECK(t == NULL);
    CHECK_INT(loopback_live(), live0); /* what was copied before the failure is gone */
    unsetenv("LOOM_LOOPBACK_MEMORY");
    ckpt_close(&c);
}
