/* tests/sd3/test_mmdit.c — MMDiT (sd3m) and MMDiT-X (sd35m) against the reference
 * implementation's numbers in ../shared/golden, plus loading errors, latent sizes, batching,
 * skip-layer guidance, cancellation and concurrent forwards.
 *
 * The golden checks are driven by each golden file: its `config` metadata names the
 * checkpoint and the expected configuration, `tolerances.mmdit` gives the tolerance, the
 * INPUT tensors (x, context, y, s<k>.sigma) are fed verbatim, and every s<k>.output,
 * s<k>.denoised and s0.im.* tensor present is compared (the intermediates through the
 * forward's inspect hook). Nothing about shapes or counts is written here. */
#include "core/base/alloc.h"
#include "core/io/safetensors.h"
#include "core/tensor/ops.h"
#include "nodes/sd3/mmdit.h"
#include "tests/sd3/sd3_fixture.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- helpers ---- */

typedef struct {
    lm_safetensors *golden, *ckpt;
    lm_mmdit *model;
    cJSON *config; /* the golden's config.mmdit */
    gold_tol tol;
    lm_tensor *x, *ctx, *y, *s0; /* the golden's inputs x, context, y and s0.sigma */
} fixture;

static void fixture_fini(fixture *f)
{
    lm_tensor_free(f->x);
    lm_tensor_free(f->ctx);
    lm_tensor_free(f->y);
    lm_tensor_free(f->s0);
    lm_mmdit_free(f->model);
    lm_safetensors_close(f->ckpt);
    lm_safetensors_close(f->golden);
    cJSON_Delete(f->config);
    memset(f, 0, sizeof(*f));
}

static lm_status load_model(lm_mmdit **out, lm_safetensors **st_out, const char *path,
                            lm_error *err)
{
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    *out = NULL;
    lm_status st = lm_safetensors_open(st_out, path, err);
    if (st != LM_OK)
        return st;
    lm_sd3_detect(*st_out, found, w);
    if (!found[LM_SD3_MMDIT])
        return lm_errorf(err, LM_ENOTFOUND, "no_mmdit", "%s holds no MMDiT", path);
    return lm_mmdit_load(out, &w[LM_SD3_MMDIT], err);
}

/* Opens golden/<name>, the checkpoint its config names, loads the model and maps the inputs
 * of step s0; on failure
 * (the test failed, or the shared data is missing) frees what it made and returns false. */
static bool fixture_init(fixture *f, const char *golden_rel)
{
    lm_error err;
    char rel[256];
    memset(f, 0, sizeof(*f));
    f->golden = gold_open(golden_rel);
    if (!f->golden)
        return false;
    gold_checkpoint(f->golden, rel, sizeof(rel));
    cJSON *config = gold_metadata(f->golden, "config");
    f->config = cJSON_DetachItemFromObject(config, "mmdit");
    cJSON_Delete(config);
    f->tol = gold_tolerance(f->golden, "mmdit");
    const char *cpath = test_shared(rel);
    if (cpath && f->config && load_model(&f->model, &f->ckpt, cpath, &err) != LM_OK)
        test__fail_err(__FILE__, __LINE__, "load_model", err.code, &err);
    if (!f->model) {
        fixture_fini(f);
        return false;
    }
    f->x = gold_tensor(f->golden, "x");
    f->ctx = gold_tensor(f->golden, "context");
    f->y = gold_tensor(f->golden, "y");
    f->s0 = gold_tensor(f->golden, "s0.sigma");
    return true;
}

/* A golden tensor (mapped, F32), or NULL with a failed test when absent. */
static lm_tensor *golden(const fixture *f, const char *name)
{
    return gold_tensor(f->golden, name);
}

/* inspect hook: compares each intermediate with golden s0.im.<name> when present. */
typedef struct {
    const fixture *f;
    int compared;
} inspect_ctx;

static void inspect_golden(const char *name, const lm_tensor *t, void *user)
{
    inspect_ctx *c = user;
    char full[96];
    snprintf(full, sizeof(full), "s0.im.%s", name);
    if (!lm_safetensors_find(c->f->golden, full))
        return;
    lm_tensor *want = golden(c->f, full);
    gold_compare(full, t, want, c->f->tol);
    lm_tensor_free(want);
    c->compared++;
}

static int count_prefix(const lm_safetensors *st, const char *prefix)
{
    size_t first;
    return (int)lm_safetensors_find_prefix(st, prefix, &first);
}

/* ---- configuration ---- */

static void check_config(const lm_mmdit_config *c, const cJSON *want)
{
    struct {
        const char *key;
        int got;
    } ints[] = {
        { "depth", c->depth },
        { "patch_size", c->patch },
        { "in_channels", c->in_channels },
        { "pos_embed_max_size", c->pos_embed_max },
        { "hidden_size", c->hidden },
        { "num_heads", c->heads },
        { "head_dim", c->head_dim },
        { "adm_in_channels", c->adm_in },
        { "context_in_features", c->context_in },
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        const cJSON *v = cJSON_GetObjectItem(want, ints[i].key);
        if (!cJSON_IsNumber(v) || v->valueint != ints[i].got)
            test__fail(__FILE__, __LINE__, "config %s: inferred %d, golden %s", ints[i].key,
                       ints[i].got, v ? cJSON_PrintUnformatted(v) : "(absent)");
    }
    const cJSON *ratio = cJSON_GetObjectItem(want, "mlp_ratio");
    CHECK(cJSON_IsNumber(ratio) && ratio->valuedouble * c->hidden == c->mlp_hidden);
    CHECK(cJSON_IsBool(cJSON_GetObjectItem(want, "qkv_bias")));
    CHECK_INT(cJSON_IsTrue(cJSON_GetObjectItem(want, "qkv_bias")), c->qkv_bias);
    const cJSON *qk = cJSON_GetObjectItem(want, "qk_norm");
    lm_mmdit_qk_norm qk_want = cJSON_IsNull(qk)                               ? LM_MMDIT_QK_NONE
                               : strcmp(cJSON_GetStringValue(qk), "rms") == 0 ? LM_MMDIT_QK_RMS
                                                                              : LM_MMDIT_QK_LN;
    CHECK_INT(c->qk_norm, qk_want);
    bool sa[LM_MMDIT_MAX_DEPTH] = { false };
    const cJSON *layers = cJSON_GetObjectItem(want, "x_block_self_attn_layers"), *l;
    CHECK(cJSON_IsArray(layers));
    cJSON_ArrayForEach(l, layers) if (l->valueint >= 0 && l->valueint < LM_MMDIT_MAX_DEPTH)
        sa[l->valueint] = true;
    for (int i = 0; i < c->depth; i++)
        if (sa[i] != c->x_self_attn[i])
            test__fail(__FILE__, __LINE__, "block %d: x self-attention inferred %d, golden %d", i,
                       c->x_self_attn[i], sa[i]);
    CHECK_INT(c->n_x_self_attn, cJSON_GetArraySize(layers));
    CHECK(c->context_pre_only);
    char desc[512];
    lm_mmdit_config_describe(c, desc, sizeof(desc));
    test_note("config: %s", desc);
}

/* ---- golden forward ---- */

/* Runs step s<k> (k = 0, 1, … while s<k>.sigma exists) and compares output, denoised and
 * (for s0) every s0.im.* intermediate. */
static void golden_case(const char *golden_rel)
{
    fixture f;
    lm_error err;
    if (!fixture_init(&f, golden_rel))
        return;
    check_config(lm_mmdit_config_of(f.model), f.config);
    const lm_tensor *x = f.x, *ctx = f.ctx, *y = f.y;
    int steps = 0;
    for (int k = 0;; k++, steps++) {
        char name[64];
        snprintf(name, sizeof(name), "s%d.sigma", k);
        if (!lm_safetensors_find(f.golden, name))
            break;
        lm_tensor *sigma = golden(&f, name), *out = NULL, *den = NULL, *want = NULL;
        inspect_ctx ic = { &f, 0 };
        lm_mmdit_opts o = { .inspect = k == 0 ? inspect_golden : NULL, .user = &ic };
        CHECK_OK(lm_mmdit_forward(f.model, x, sigma, ctx, y, &o, &out, &err), &err);
        CHECK_OK(lm_mmdit_denoised(&den, x, out, sigma, &err), &err);
        snprintf(name, sizeof(name), "s%d.output", k);
        gold_compare(name, out, want = golden(&f, name), f.tol);
        lm_tensor_free(want);
        snprintf(name, sizeof(name), "s%d.denoised", k);
        gold_compare(name, den, want = golden(&f, name), f.tol);
        lm_tensor_free(want);
        if (k == 0)
            CHECK_INT(ic.compared, count_prefix(f.golden, "s0.im."));
        lm_tensor_free(sigma);
        lm_tensor_free(out);
        lm_tensor_free(den);
    }
    CHECK(steps >= 1);
    fixture_fini(&f);
}

void test_sd3_mmdit__sd3m_golden(void)
{
    golden_case("golden/sd3m_mmdit.safetensors");
}

void test_sd3_mmdit__sd35m_golden(void)
{
    golden_case("golden/sd35m_mmdit.safetensors");
}

/* ---- batching ---- */

/* [2, ...] from two tensors of shape [1, ...] (or [1]). */
static lm_tensor *stack2(const lm_tensor *a, const lm_tensor *b)
{
    lm_error err;
    lm_tensor *out = NULL;
    const lm_tensor *parts[2] = { a, b };
    if (lm_concat(&out, parts, 2, 0, &err) != LM_OK)
        test__fail_err(__FILE__, __LINE__, "lm_concat", err.code, &err);
    return out;
}

/* CFG runs cond and uncond as one batch: each sample must match its own golden, here with
 * a different sigma per sample (s0 and s1 of the golden). */
void test_sd3_mmdit__batch_of_two(void)
{
    fixture f;
    lm_error err;
    if (!fixture_init(&f, "golden/sd35m_mmdit.safetensors"))
        return;
    const lm_tensor *x = f.x, *ctx = f.ctx, *y = f.y;
    lm_tensor *s1 = golden(&f, "s1.sigma");
    lm_tensor *x2 = stack2(x, x), *c2 = stack2(ctx, ctx), *y2 = stack2(y, y),
              *sg = stack2(f.s0, s1);
    lm_tensor *out = NULL;
    CHECK_OK(lm_mmdit_forward(f.model, x2, sg, c2, y2, NULL, &out, &err), &err);
    for (int b = 0; out && b < 2; b++) {
        lm_tensor *half = NULL, *want = golden(&f, b ? "s1.output" : "s0.output");
        CHECK_OK(lm_tensor_view_slice(&half, out, 0, b, b + 1, &err), &err);
        gold_compare(b ? "batch[1] vs s1.output" : "batch[0] vs s0.output", half, want, f.tol);
        lm_tensor_free(half);
        lm_tensor_free(want);
    }
    lm_tensor *all[] = { s1, x2, c2, y2, sg, out };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        lm_tensor_free(all[i]);
    fixture_fini(&f);
}

/* ---- split checkpoint ---- */

static bool same_bits(const lm_tensor *a, const lm_tensor *b)
{
    return a && b && lm_tensor_nbytes(a) == lm_tensor_nbytes(b) &&
           memcmp(lm_tensor_data(a), lm_tensor_data(b), lm_tensor_nbytes(a)) == 0;
}

void test_sd3_mmdit__split_file_is_bit_identical(void)
{
    fixture f;
    lm_error err;
    if (!fixture_init(&f, "golden/sd3m_mmdit.safetensors"))
        return;
    const char *split = test_shared("golden/split/sd3m/sd3m_tiny_noenc.safetensors");
    lm_mmdit *m2 = NULL;
    lm_safetensors *st2 = NULL;
    const lm_tensor *x = f.x, *ctx = f.ctx, *y = f.y, *s = f.s0;
    lm_tensor *a = NULL, *b = NULL;
    if (split) {
        CHECK_OK(load_model(&m2, &st2, split, &err), &err);
        CHECK_OK(lm_mmdit_forward(f.model, x, s, ctx, y, NULL, &a, &err), &err);
        if (m2)
            CHECK_OK(lm_mmdit_forward(m2, x, s, ctx, y, NULL, &b, &err), &err);
        CHECK(same_bits(a, b));
    }
    lm_tensor *all[] = { a, b };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        lm_tensor_free(all[i]);
    lm_mmdit_free(m2);
    lm_safetensors_close(st2);
    fixture_fini(&f);
}

/* ---- skip-layer guidance ---- */

typedef struct {
    lm_tensor *block_x[LM_MMDIT_MAX_DEPTH], *block_ctx[LM_MMDIT_MAX_DEPTH];
} keep_ctx;

/* inspect hook keeping a copy of every block's output streams. */
static void keep_blocks(const char *name, const lm_tensor *t, void *user)
{
    keep_ctx *k = user;
    int i;
    char rest[16];
    lm_error err;
    if (sscanf(name, "block%d.%15s", &i, rest) != 2 || i < 0 || i >= LM_MMDIT_MAX_DEPTH)
        return;
    lm_tensor **slot = strcmp(rest, "x") == 0 ? &k->block_x[i] : &k->block_ctx[i];
    if (!*slot)
        CHECK_OK(lm_tensor_contiguous(slot, t, &err), &err);
}

void test_sd3_mmdit__skip_layers(void)
{
    fixture f;
    lm_error err;
    if (!fixture_init(&f, "golden/sd35m_mmdit.safetensors"))
        return;
    int depth = lm_mmdit_config_of(f.model)->depth;
    const lm_tensor *x = f.x, *ctx = f.ctx, *y = f.y, *s = f.s0;
    lm_tensor *plain = NULL, *none = NULL, *skip = NULL;
    CHECK_OK(lm_mmdit_forward(f.model, x, s, ctx, y, NULL, &plain, &err), &err);
    /* An empty list and indices the model lacks skip nothing: bit-identical output. */
    int outside[3] = { -1, depth, depth + 5 };
    lm_mmdit_opts o = { .skip_layers = outside, .n_skip_layers = 3 };
    CHECK_OK(lm_mmdit_forward(f.model, x, s, ctx, y, &o, &none, &err), &err);
    CHECK(same_bits(plain, none));
    /* Skipping block 1: both streams leave it exactly as they entered, and the output
     * changes. */
    int one[1] = { 1 };
    keep_ctx k;
    memset(&k, 0, sizeof(k));
    lm_mmdit_opts o1 = {
        .skip_layers = one, .n_skip_layers = 1, .inspect = keep_blocks, .user = &k
    };
    CHECK_OK(lm_mmdit_forward(f.model, x, s, ctx, y, &o1, &skip, &err), &err);
    CHECK(depth >= 3); /* block 1 is then not the last: its context output exists */
    CHECK(same_bits(k.block_x[0], k.block_x[1]));
    CHECK(same_bits(k.block_ctx[0], k.block_ctx[1]));
    CHECK(plain && skip && !same_bits(plain, skip));
    lm_tensor *all[] = { plain, none, skip };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        lm_tensor_free(all[i]);
    for (int i = 0; i < LM_MMDIT_MAX_DEPTH; i++) {
        lm_tensor_free(k.block_x[i]);
        lm_tensor_free(k.block_ctx[i]);
    }
    fixture_fini(&f);
}

/* ---- cancellation ---- */

static bool cancel_after_one(void *user)
{
    int *calls = user;
    return ++*calls > 1;
}

void test_sd3_mmdit__cancel_between_blocks(void)
{
    fixture f;
    lm_error err;
    if (!fixture_init(&f, "golden/sd3m_mmdit.safetensors"))
        return;
    const lm_tensor *x = f.x, *ctx = f.ctx, *y = f.y, *s = f.s0;
    lm_tensor *out = NULL;
    int calls = 0;
    lm_mmdit_opts o = { .cancelled = cancel_after_one, .user = &calls };
    CHECK_INT(lm_mmdit_forward(f.model, x, s, ctx, y, &o, &out, &err), LM_ECANCELLED);
    CHECK(out == NULL);
    CHECK_INT(calls, 2);
    fixture_fini(&f);
}

/* ---- latent sizes and input checks ---- */

static lm_tensor *filled(int ndim, const int64_t *shape, float v)
{
    lm_error err;
    lm_tensor *t = NULL;
    if (lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, ndim, shape, &err) != LM_OK ||
        lm_fill(t, v, &err) != LM_OK)
        test__fail_err(__FILE__, __LINE__, "filled", err.code, &err);
    return t;
}

/* Runs a forward on an h x w latent of constant inputs; returns the status and checks
 * the output's shape on success. */
static lm_status forward_size(const lm_mmdit *m, int64_t h, int64_t w, lm_error *err)
{
    const lm_mmdit_config *c = lm_mmdit_config_of(m);
    int64_t xs[4] = { 1, c->in_channels, h, w }, ss[1] = { 1 }, cs[3] = { 1, 7, c->context_in };
    int64_t ys[2] = { 1, c->adm_in };
    lm_tensor *x = filled(4, xs, 0.25f), *s = filled(1, ss, 0.5f), *ctx = filled(3, cs, 0.1f);
    lm_tensor *y = filled(2, ys, -0.2f), *out = NULL;
    lm_status st = lm_mmdit_forward(m, x, s, ctx, y, NULL, &out, err);
    int64_t want[4] = { 1, c->out_channels, h, w };
    if (st == LM_OK)
        for (int d = 0; d < 4; d++)
            CHECK_INT(out->shape[d], want[d]);
    else
        CHECK(out == NULL);
    lm_tensor *all[] = { x, s, ctx, y, out };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        lm_tensor_free(all[i]);
    return st;
}

void test_sd3_mmdit__latent_sizes(void)
{
    fixture f;
    lm_error err;
    if (!fixture_init(&f, "golden/sd3m_mmdit.safetensors"))
        return;
    int p = lm_mmdit_config_of(f.model)->patch, max = lm_mmdit_max_latent(f.model);
    CHECK_OK(forward_size(f.model, 8, 12, &err), &err);
    CHECK_OK(forward_size(f.model, p, p, &err), &err);
    CHECK_OK(forward_size(f.model, max, p * 3, &err), &err);
    CHECK_INT(forward_size(f.model, 8, 12 + 1, &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "multiples of");
    CHECK_INT(forward_size(f.model, max + p, 8, &err), LM_ERANGE);
    CHECK_CONTAINS(err.msg, "larger than the position table allows");
    char msg[400];
    lm_error_format(&err, msg, sizeof(msg));
    test_note("too large: %s", msg);
    fixture_fini(&f);
}

void test_sd3_mmdit__bad_inputs(void)
{
    fixture f;
    lm_error err;
    if (!fixture_init(&f, "golden/sd3m_mmdit.safetensors"))
        return;
    const lm_tensor *x = f.x, *ctx = f.ctx, *y = f.y, *s = f.s0;
    lm_tensor *out = NULL;
    CHECK_INT(lm_mmdit_forward(f.model, x, s, ctx, ctx, NULL, &out, &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "pooled y");
    CHECK_INT(lm_mmdit_forward(f.model, x, s, y, y, NULL, &out, &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "context");
    CHECK_INT(lm_mmdit_forward(f.model, x, x, ctx, y, NULL, &out, &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "sigma");
    CHECK_INT(lm_mmdit_forward(f.model, ctx, s, ctx, y, NULL, &out, &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "latent x");
    CHECK(out == NULL);
    fixture_fini(&f);
}

/* ---- broken checkpoints ---- */

/* The dimension write_mmdit_file halves: the first one above 1. */
static int halved_dim(const lm_safetensors_entry *e)
{
    for (int d = 0; d < e->ndim; d++)
        if (e->shape[d] > 1)
            return d;
    return 0;
}

/* Writes the MMDiT tensors of `src` to `path`, leaving out `drop` and giving `reshape`
 * half its first dimension above 1 (with half its bytes). */
static bool write_mmdit_file(const char *path, const lm_safetensors *src, const char *drop,
                             const char *reshape)
{
    size_t first, n = lm_safetensors_find_prefix(src, "model.diffusion_model.", &first);
    FILE *fp = fopen(path, "wb");
    if (!fp || n == 0) {
        if (fp)
            fclose(fp);
        return false;
    }
    size_t cap = 1 << 20, len = 0;
    char *hdr = malloc(cap);
    uint64_t off = 0;
    len += (size_t)snprintf(hdr + len, cap - len, "{");
    for (size_t i = first; i < first + n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(src, i);
        if (drop && strcmp(e->name, drop) == 0)
            continue;
        bool half = reshape && strcmp(e->name, reshape) == 0;
        size_t bytes = half ? e->bytes / 2 : e->bytes;
        len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                off ? "," : "", e->name, lm_safetensors_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++)
            len += (size_t)snprintf(
                hdr + len, cap - len, "%s%lld", d ? "," : "",
                (long long)(half && d == halved_dim(e) ? e->shape[d] / 2 : e->shape[d]));
        len += (size_t)snprintf(hdr + len, cap - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    uint64_t hl = len;
    bool ok = fwrite(&hl, 8, 1, fp) == 1 && fwrite(hdr, 1, len, fp) == len;
    for (size_t i = first; ok && i < first + n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(src, i);
        if (drop && strcmp(e->name, drop) == 0)
            continue;
        bool half = reshape && strcmp(e->name, reshape) == 0;
        size_t bytes = half ? e->bytes / 2 : e->bytes;
        ok = fwrite(e->data, 1, bytes, fp) == bytes;
    }
    free(hdr);
    return fclose(fp) == 0 && ok;
}

static void broken_case(const char *drop, const char *reshape, lm_status want_st)
{
    lm_error err;
    lm_safetensors *src = NULL, *st = NULL;
    lm_mmdit *m = NULL;
    const char *ckpt = test_shared("golden/sd3m_tiny.safetensors");
    REQUIRE(ckpt);
    REQUIRE_OK(lm_safetensors_open(&src, ckpt, &err), &err);
    char path[600];
    snprintf(path, sizeof(path), "%s/broken_mmdit.safetensors", test_tmpdir());
    CHECK(write_mmdit_file(path, src, drop, reshape));
    lm_safetensors_close(src);
    CHECK_INT(load_model(&m, &st, path, &err), want_st);
    CHECK(m == NULL);
    CHECK_CONTAINS(err.msg, drop ? drop : reshape);
    CHECK_CONTAINS(err.file, "broken_mmdit.safetensors");
    char msg[800];
    lm_error_format(&err, msg, sizeof(msg));
    test_note("%s", msg);
    lm_mmdit_free(m);
    lm_safetensors_close(st);
}

void test_sd3_mmdit__missing_tensor_names_tensor_and_file(void)
{
    broken_case("model.diffusion_model.joint_blocks.1.x_block.mlp.fc2.weight", NULL, LM_ENOTFOUND);
    broken_case("model.diffusion_model.final_layer.adaLN_modulation.1.bias", NULL, LM_ENOTFOUND);
}

void test_sd3_mmdit__misshaped_tensor_names_tensor_and_file(void)
{
    broken_case(NULL, "model.diffusion_model.joint_blocks.0.context_block.attn.proj.weight",
                LM_EFORMAT);
    broken_case(NULL, "model.diffusion_model.pos_embed", LM_EFORMAT);
}

/* ---- threads ---- */

typedef struct {
    const lm_mmdit *m;
    const lm_tensor *x, *s, *ctx, *y;
    lm_tensor *out;
    lm_status st;
} job;

static void *run_job(void *user)
{
    job *j = user;
    lm_error err;
    j->st = lm_mmdit_forward(j->m, j->x, j->s, j->ctx, j->y, NULL, &j->out, &err);
    return NULL;
}

void test_sd3_mmdit__concurrent_forwards_agree(void)
{
    fixture f;
    if (!fixture_init(&f, "golden/sd35m_mmdit.safetensors"))
        return;
    const lm_tensor *x = f.x, *ctx = f.ctx, *y = f.y, *s = f.s0;
    job jobs[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (job){ f.model, x, s, ctx, y, NULL, LM_OK };
        CHECK(pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(jobs[i].st, LM_OK);
        CHECK(same_bits(jobs[0].out, jobs[i].out));
    }
    for (int i = 0; i < 3; i++)
        lm_tensor_free(jobs[i].out);
    fixture_fini(&f);
}

/* ---- allocation failures ---- */

/* Every allocation of load + forward made to fail in turn: each attempt either succeeds or
 * reports LM_ENOMEM, and nothing leaks (under ASan) or crashes. */
void test_sd3_mmdit__allocation_failures(void)
{
    fixture f;
    lm_error err;
    if (!fixture_init(&f, "golden/sd35m_mmdit.safetensors"))
        return;
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_sd3_detect(f.ckpt, found, w);
    const lm_tensor *x = f.x, *ctx = f.ctx, *y = f.y, *s = f.s0;
    lm_tensor *warm = NULL;
    /* One forward first: the process-wide thread pool and kernel scratch are made lazily,
     * and their allocation failures are the tensor runtime's to test. */
    CHECK_OK(lm_mmdit_forward(f.model, x, s, ctx, y, NULL, &warm, &err), &err);
    lm_tensor_free(warm);
    int n = 0, bad = 0;
    for (; n < 20000; n++) {
        lm_mmdit *m = NULL;
        lm_tensor *out = NULL;
        lm_alloc_fail_after(n);
        lm_status st = lm_mmdit_load(&m, &w[LM_SD3_MMDIT], &err);
        if (st == LM_OK)
            st = lm_mmdit_forward(m, x, s, ctx, y, NULL, &out, &err);
        long failures = lm_alloc_failures();
        lm_alloc_fail_after(-1);
        if (st != LM_OK && st != LM_ENOMEM && bad++ < 3)
            test__fail_err(__FILE__, __LINE__, "load + forward", st, &err);
        lm_tensor_free(out);
        lm_mmdit_free(m);
        if (failures == 0 && st == LM_OK)
            break;
    }
    test_note("walked %d allocation failures", n);
    CHECK(n < 20000);
    fixture_fini(&f);
}
