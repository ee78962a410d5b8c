/* tests/sd3/test_vae.c — the SD3 VAE against the reference's golden tensors, plus loading
 * errors, the latent format, tiling (seams and memory), callbacks and ComfyUI conversions.
 *
 * Golden-driven: for each golden set (sd3m, sd35m) the checkpoint, seeds and tolerances come
 * from the golden file's metadata (`config.checkpoint`, `params.encode_sample_seed`,
 * `tolerances.vae`, `tolerances.image_u8`), and every "decode.im.<stage>" / "encode.im.<stage>"
 * tensor is compared with the stage of the same name reported through the callback. No shape
 * is written here: a golden set of other sizes is checked the same way. */
#include "core/io/safetensors.h"
#include "core/tensor/ops.h"
#include "nodes/sd3/vae.h"
#include "tests/sd3/sd3_fixture.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const golden_sets[2] = { "golden/sd3m_vae.safetensors",
                                            "golden/sd35m_vae.safetensors" };

/* ---- golden sets -------------------------------------------------------------------- */

typedef struct {
    const char *rel; /* golden file, relative to LOOM_SHARED */
    lm_safetensors *gold, *ckpt;
    cJSON *config, *params;
    gold_tol tol;   /* tolerances.vae */
    double u8_diff; /* tolerances.image_u8.max_abs_diff */
    lm_vae *vae;
} gset;

/* Loads a VAE from `rel` (a checkpoint, all-in-one or standalone). */
static lm_status load_vae(const char *rel, lm_safetensors **st, lm_vae **vae, lm_error *err)
{
    const char *path = test_shared(rel);
    if (!path)
        return LM_ENOTFOUND;
    lm_status s = lm_safetensors_open(st, path, err);
    if (s != LM_OK)
        return s;
    bool found[LM_SD3_COMPONENT_COUNT];
    lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
    lm_sd3_detect(*st, found, w);
    if (!found[LM_SD3_VAE])
        return lm_errorf(err, LM_ENOTFOUND, "no_vae", "%s holds no VAE", rel);
    return lm_vae_load(vae, &w[LM_SD3_VAE], err);
}

static void gset_close(gset *g)
{
    lm_vae_free(g->vae);
    lm_safetensors_close(g->ckpt);
    lm_safetensors_close(g->gold);
    cJSON_Delete(g->config);
    cJSON_Delete(g->params);
    memset(g, 0, sizeof(*g));
}

/* Opens the golden set and the VAE of the checkpoint its config names; on failure (the test
 * failed, or the shared data is missing) closes what it opened and returns false. */
static bool gset_open(gset *g, const char *rel)
{
    lm_error err;
    char rel_ck[256];
    memset(g, 0, sizeof(*g));
    g->rel = rel;
    g->gold = gold_open(rel);
    if (!g->gold)
        return false;
    g->config = gold_metadata(g->gold, "config");
    g->params = gold_metadata(g->gold, "params");
    cJSON *tols = gold_metadata(g->gold, "tolerances");
    lm_status st = LM_ENOTFOUND;
    if (g->config && g->params && tols && gold_checkpoint(g->gold, rel_ck, sizeof(rel_ck))) {
        g->tol = gold_tolerance(g->gold, "vae");
        g->u8_diff = gold_param(cJSON_GetObjectItemCaseSensitive(tols, "image_u8"), "max_abs_diff");
        st = load_vae(rel_ck, &g->ckpt, &g->vae, &err);
        if (st != LM_OK)
            test__fail_err(__FILE__, __LINE__, rel_ck, st, &err);
    }
    cJSON_Delete(tols);
    if (st != LM_OK)
        gset_close(g);
    return st == LM_OK;
}

static lm_tensor *gtensor(const gset *g, const char *name)
{
    return gold_tensor(g->gold, name);
}

/* ---- comparisons -------------------------------------------------------------------- */

/* |got - want| <= atol + rtol*|want| everywhere, at the golden's shape. */
static bool compare(const char *what, const lm_tensor *got, const lm_tensor *want, gold_tol t)
{
    return gold_same_shape(what, got, want) && gold_compare(what, got, want, t);
}

/* Bit-for-bit equality of two F32 tensors. */
static bool identical(const lm_tensor *a, const lm_tensor *b)
{
    return a && b && gold_shapes_equal(a, b) && a->dtype == LM_DTYPE_F32 &&
           b->dtype == LM_DTYPE_F32 &&
           memcmp(lm_tensor_data(a), lm_tensor_data(b), lm_tensor_nbytes(a)) == 0;
}

/* ---- stage taps --------------------------------------------------------------------- */

typedef struct {
    char stage[48];
    lm_tensor *t; /* host copy */
} tap;

typedef struct {
    tap taps[128];
    int n, last_step, steps, tiles, cancel_at;
    bool monotonic;
    size_t max_bytes;
} taps;

static lm_status tap_cb(const lm_vae_event *ev, void *user)
{
    taps *tp = user;
    lm_error err;
    tp->monotonic = tp->monotonic && ev->step == tp->last_step + 1 && ev->step <= ev->steps;
    tp->last_step = ev->step;
    tp->steps = ev->steps;
    tp->tiles = ev->tiles;
    tp->max_bytes = ev->max_tensor_bytes;
    if (ev->tiles == 1 && ev->tensor && tp->n < (int)LM_COUNTOF(tp->taps)) {
        tap *t = &tp->taps[tp->n++];
        snprintf(t->stage, sizeof(t->stage), "%s", ev->stage);
        if (lm_tensor_to_f32_host(&t->t, ev->tensor, &err) != LM_OK)
            return err.code;
    }
    return tp->cancel_at && ev->step == tp->cancel_at ? LM_ECANCELLED : LM_OK;
}

static void taps_init(taps *tp)
{
    memset(tp, 0, sizeof(*tp));
    tp->monotonic = true;
}

static void taps_free(taps *tp)
{
    for (int i = 0; i < tp->n; i++)
        lm_tensor_free(tp->taps[i].t);
    tp->n = 0;
}

static const lm_tensor *tap_find(const taps *tp, const char *stage)
{
    for (int i = tp->n - 1; i >= 0; i--)
        if (strcmp(tp->taps[i].stage, stage) == 0)
            return tp->taps[i].t;
    return NULL;
}

/* Golden tensor `name` against a result. */
static void compare_g(const gset *g, const char *name, const lm_tensor *got)
{
    lm_tensor *want = gtensor(g, name);
    compare(name, got, want, g->tol);
    lm_tensor_free(want);
}

/* Every golden "<prefix><stage>" against the tap of that stage; returns how many. */
static int compare_stages(const gset *g, const taps *tp, const char *prefix)
{
    size_t first = 0, n = lm_safetensors_find_prefix(g->gold, prefix, &first);
    for (size_t i = first; i < first + n; i++) {
        const char *name = lm_safetensors_at(g->gold, i)->name;
        compare_g(g, name, tap_find(tp, name + strlen(prefix)));
    }
    return (int)n;
}

/* ---- decode and encode against the goldens ------------------------------------------ */

/* uint8(255 * clamp((x + 1) / 2, 0, 1)), truncating, HWC, as the reference saves PNGs. */
static void check_u8(const gset *g, const lm_tensor *image)
{
    lm_error err;
    lm_tensor *want = gtensor(g, "decode.image_u8"), *comfy = NULL, *host = NULL;
    REQUIRE(want && want->dtype == LM_DTYPE_U8);
    REQUIRE_OK(lm_vae_image_to_comfy(image, &comfy, &err), &err);
    REQUIRE_OK(lm_tensor_to_f32_host(&host, comfy, &err), &err);
    REQUIRE(lm_tensor_numel(host) == lm_tensor_numel(want));
    const float *x = lm_tensor_data(host);
    const uint8_t *u = lm_tensor_data(want);
    int worst = 0;
    for (int64_t i = 0; i < lm_tensor_numel(want); i++)
        worst = LM_MAX(worst, abs((int)(uint8_t)(255.0f * x[i]) - (int)u[i]));
    if (worst > g->u8_diff)
        test__fail(__FILE__, __LINE__, "decode.image_u8: max abs diff %d, allowed %g", worst,
                   g->u8_diff);
    else
        test_note("%-28s max abs diff %d", "decode.image_u8", worst);
    lm_tensor_free(host);
    lm_tensor_free(comfy);
    lm_tensor_free(want);
}

static void decode_case(const char *rel)
{
    lm_error err;
    gset g;
    taps tp;
    taps_init(&tp);
    if (!gset_open(&g, rel))
        return;
    lm_tensor *latent = gtensor(&g, "decode.latent_scaled"), *image = NULL;
    if (latent)
        CHECK_OK(lm_vae_decode(g.vae, latent, &image, tap_cb, &tp, &err), &err);
    if (image) {
        compare_g(&g, "decode.latent_raw", tap_find(&tp, "latent_raw"));
        CHECK(compare_stages(&g, &tp, "decode.im.") >= 1);
        compare_g(&g, "decode.image", image);
        check_u8(&g, image);
        CHECK(tp.monotonic && tp.last_step == tp.steps);
    }
    lm_tensor_free(image);
    lm_tensor_free(latent);
    taps_free(&tp);
    gset_close(&g);
}

void test_sd3_vae__decode_sd3m(void)
{
    decode_case(golden_sets[0]);
}

void test_sd3_vae__decode_sd35m(void)
{
    decode_case(golden_sets[1]);
}

static void encode_case(const char *rel)
{
    lm_error err;
    gset g;
    taps tp;
    taps_init(&tp);
    if (!gset_open(&g, rel))
        return;
    lm_rng *rng = NULL;
    lm_tensor *image = gtensor(&g, "encode.image"), *mean = NULL, *smp = NULL;
    uint64_t seed = (uint64_t)gold_param(g.params, "encode_sample_seed");
    CHECK_OK(lm_rng_new(&rng, seed, &err), &err);
    if (image && rng)
        CHECK_OK(lm_vae_encode(g.vae, image, rng, &mean, &smp, tap_cb, &tp, &err), &err);
    if (mean && smp) {
        CHECK(compare_stages(&g, &tp, "encode.im.") >= 1);
        compare_g(&g, "encode.moments", tap_find(&tp, "moments"));
        compare_g(&g, "encode.mean", tap_find(&tp, "mean"));
        compare_g(&g, "encode.logvar", tap_find(&tp, "logvar"));
        compare_g(&g, "encode.mean_scaled", mean);
        compare_g(&g, "encode.sample", tap_find(&tp, "sample"));
        compare_g(&g, "encode.sample_scaled", smp);
        CHECK(tp.monotonic && tp.last_step == tp.steps);
    }
    lm_tensor_free(smp);
    lm_tensor_free(mean);
    lm_tensor_free(image);
    lm_rng_free(rng);
    taps_free(&tp);
    gset_close(&g);
}

void test_sd3_vae__encode_sd3m(void)
{
    encode_case(golden_sets[0]);
}

void test_sd3_vae__encode_sd35m(void)
{
    encode_case(golden_sets[1]);
}

/* The inferred config against the golden's config.vae. */
void test_sd3_vae__config_matches_golden(void)
{
    for (int s = 0; s < 2; s++) {
        gset g;
        if (!gset_open(&g, golden_sets[s]))
            continue;
        const lm_vae_config *c = lm_vae_config_of(g.vae);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(g.config, "vae");
        const cJSON *mult = cJSON_GetObjectItemCaseSensitive(v, "ch_mult");
        CHECK_INT(c->ch, gold_param(v, "ch"));
        CHECK_INT(c->z_channels, gold_param(v, "z_channels"));
        CHECK_INT(c->groups, gold_param(v, "groupnorm_groups"));
        CHECK_NEAR(c->eps, gold_param(v, "eps"), 1e-12);
        CHECK_NEAR(c->scale, gold_param(v, "scale_factor"), 1e-6);
        CHECK_NEAR(c->shift, gold_param(v, "shift_factor"), 1e-6);
        CHECK_INT(c->encoder.levels, cJSON_GetArraySize(mult));
        CHECK_INT(c->decoder.levels, cJSON_GetArraySize(mult));
        for (int i = 0; i < c->encoder.levels && i < cJSON_GetArraySize(mult); i++) {
            CHECK_INT(c->ch_mult[i], cJSON_GetArrayItem(mult, i)->valueint);
            CHECK_INT(c->encoder.blocks[i], gold_param(v, "num_res_blocks"));
            CHECK_INT(c->decoder.blocks[i], gold_param(v, "num_res_blocks") + 1);
            CHECK_INT(c->decoder.width[i], c->ch * c->ch_mult[i]);
            CHECK(c->encoder.resample[i] == (i < c->encoder.levels - 1));
            CHECK(c->decoder.resample[i] == (i > 0));
        }
        CHECK_INT(c->factor, 8);
        CHECK(c->encoder.mid_attn && c->decoder.mid_attn);
        gset_close(&g);
    }
}

/* ---- the standalone VAE file gives the same numbers --------------------------------- */

static void split_case(int s)
{
    lm_error err;
    gset g;
    if (!gset_open(&g, golden_sets[s]))
        return;
    const char *model = cJSON_GetObjectItemCaseSensitive(g.config, "model")->valuestring;
    char rel[128];
    snprintf(rel, sizeof(rel), "golden/split/%s/vae.safetensors", model);
    lm_safetensors *st = NULL;
    lm_vae *vae = NULL;
    lm_tensor *latent = gtensor(&g, "decode.latent_scaled"), *image = gtensor(&g, "encode.image");
    lm_tensor *out[2][2] = { { NULL, NULL }, { NULL, NULL } };
    lm_status ls = load_vae(rel, &st, &vae, &err);
    CHECK_OK(ls, &err);
    const lm_vae *both[2] = { g.vae, vae };
    for (int k = 0; k < 2 && ls == LM_OK && latent && image; k++) {
        CHECK_OK(lm_vae_decode(both[k], latent, &out[k][0], NULL, NULL, &err), &err);
        CHECK_OK(lm_vae_encode(both[k], image, NULL, &out[k][1], NULL, NULL, NULL, &err), &err);
    }
    CHECK(identical(out[0][0], out[1][0]));
    CHECK(identical(out[0][1], out[1][1]));
    for (int k = 0; k < 4; k++)
        lm_tensor_free(out[k / 2][k % 2]);
    lm_tensor_free(latent);
    lm_tensor_free(image);
    lm_vae_free(vae);
    lm_safetensors_close(st);
    gset_close(&g);
}

void test_sd3_vae__split_file_identical(void)
{
    split_case(0);
    split_case(1);
}

/* ---- loading errors ------------------------------------------------------------------- */

/* A copy of `src` in memory without tensor `drop` and with tensor `reshape` given `shape`
 * (same number of elements); opened as "broken_vae.safetensors". *mem is the buffer. */
static lm_status rewrite(lm_safetensors *src, const char *drop, const char *reshape, int ndim,
                         const int64_t *shape, lm_safetensors **out, char **mem, lm_error *err)
{
    cJSON *h = cJSON_CreateObject();
    size_t data = 0, n = lm_safetensors_count(src);
    for (size_t i = 0; i < n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(src, i);
        if (drop && strcmp(e->name, drop) == 0)
            continue;
        cJSON *t = cJSON_AddObjectToObject(h, e->name), *sh = cJSON_AddArrayToObject(t, "shape");
        cJSON_AddStringToObject(t, "dtype", lm_safetensors_dtype_name(e->dtype));
        bool re = reshape && strcmp(e->name, reshape) == 0;
        for (int d = 0; d < (re ? ndim : e->ndim); d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)(re ? shape[d] : e->shape[d])));
        cJSON *off = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)data));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(data + e->bytes)));
        data += e->bytes;
    }
    char *json = cJSON_PrintUnformatted(h);
    uint64_t hl = strlen(json);
    *mem = malloc(8 + hl + data);
    memcpy(*mem, &hl, 8);
    memcpy(*mem + 8, json, hl);
    for (size_t i = 0, at = 8 + hl; i < n; i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(src, i);
        if (drop && strcmp(e->name, drop) == 0)
            continue;
        memcpy(*mem + at, e->data, e->bytes);
        at += e->bytes;
    }
    free(json);
    cJSON_Delete(h);
    return lm_safetensors_open_memory(out, *mem, 8 + hl + data, "broken_vae.safetensors", err);
}

/* Loads the rewritten standalone sd3m VAE and returns lm_vae_load's status. */
static lm_status load_broken(const char *drop, const char *reshape, int ndim, const int64_t *shape,
                             lm_error *err)
{
    const char *path = test_shared("golden/split/sd3m/vae.safetensors");
    lm_safetensors *src = NULL, *st = NULL;
    char *mem = NULL;
    lm_vae *vae = NULL;
    if (!path || lm_safetensors_open(&src, path, err) != LM_OK)
        return LM_EINTERNAL;
    lm_status s = rewrite(src, drop, reshape, ndim, shape, &st, &mem, err);
    if (s == LM_OK) {
        bool found[LM_SD3_COMPONENT_COUNT];
        lm_sd3_weights w[LM_SD3_COMPONENT_COUNT];
        lm_sd3_detect(st, found, w);
        s = found[LM_SD3_VAE] ? lm_vae_load(&vae, &w[LM_SD3_VAE], err) : LM_EINTERNAL;
    }
    CHECK(s != LM_OK || vae);
    lm_vae_free(vae);
    lm_safetensors_close(st);
    lm_safetensors_close(src);
    free(mem);
    return s;
}

void test_sd3_vae__missing_tensor(void)
{
    lm_error err;
    const char *names[3] = { "decoder.mid.attn_1.k.bias",
                             "encoder.down.1.block.0.nin_shortcut.weight", /* 32 -> 64 */
                             "decoder.up.0.block.2.norm2.weight" };
    for (int i = 0; i < 3; i++) {
        CHECK_INT(load_broken(names[i], NULL, 0, NULL, &err), LM_ENOTFOUND);
        CHECK_CONTAINS(err.msg, names[i]);
        CHECK_STR(err.file, "broken_vae.safetensors");
        char line[1024];
        lm_error_format(&err, line, sizeof(line));
        test_note("%s", line);
    }
    CHECK_INT(load_broken(NULL, NULL, 0, NULL, &err), LM_OK); /* the rewrite itself is sound */
}

void test_sd3_vae__misshaped_tensor(void)
{
    lm_error err;
    lm_safetensors *src = NULL;
    const char *path = test_shared("golden/split/sd3m/vae.safetensors");
    REQUIRE(path);
    REQUIRE_OK(lm_safetensors_open(&src, path, &err), &err);
    const char *name = "decoder.mid.block_2.conv1.weight";
    const lm_safetensors_entry *e = lm_safetensors_find(src, name);
    REQUIRE(e && e->ndim == 4);
    int64_t flat[4] = { e->shape[0], e->shape[1], e->shape[2] * e->shape[3], 1 };
    lm_safetensors_close(src);
    CHECK_INT(load_broken(NULL, name, 4, flat, &err), LM_EFORMAT);
    CHECK_CONTAINS(err.msg, name);
    CHECK_STR(err.file, "broken_vae.safetensors");
    char line[1024];
    lm_error_format(&err, line, sizeof(line));
    test_note("%s", line);
}

/* ---- inputs, callbacks, conversions ----------------------------------------------------- */

static lm_tensor *randn(uint64_t seed, int64_t b, int64_t c, int64_t h, int64_t w, float scale)
{
    lm_error err;
    lm_rng *rng = NULL;
    lm_tensor *t = NULL, *s = NULL;
    int64_t shape[4] = { b, c, h, w };
    if (lm_rng_new(&rng, seed, &err) != LM_OK ||
        lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err) != LM_OK)
        return NULL;
    lm_rng_randn(rng, lm_tensor_data(t), (size_t)lm_tensor_numel(t));
    lm_rng_free(rng);
    lm_scale(&s, t, scale, 0.0f, &err);
    lm_tensor_free(t);
    return s;
}

void test_sd3_vae__bad_input(void)
{
    lm_error err;
    gset g;
    if (!gset_open(&g, golden_sets[1]))
        return;
    lm_tensor *lat = randn(1, 1, 4, 4, 4, 1), *img = randn(2, 1, 3, 4, 4, 1), *out = NULL;
    CHECK_INT(lm_vae_decode(g.vae, lat, &out, NULL, NULL, &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "[1, 4, 4, 4]");
    CHECK(out == NULL);
    CHECK_INT(lm_vae_encode(g.vae, img, NULL, &out, NULL, NULL, NULL, &err), LM_EINVAL);
    CHECK(out == NULL);
    lm_vae_tile_opts bad = { .tile_size = 8, .overlap = 0 };
    lm_tensor *lat16 = randn(3, 1, 16, 4, 4, 1);
    CHECK_INT(lm_vae_decode_tiled(g.vae, lat16, &bad, &out, NULL, NULL, &err), LM_ERANGE);
    lm_tensor_free(lat16);
    lm_tensor_free(lat);
    lm_tensor_free(img);
    gset_close(&g);
}

void test_sd3_vae__callback_cancels(void)
{
    lm_error err;
    gset g;
    taps tp;
    if (!gset_open(&g, golden_sets[1]))
        return;
    lm_tensor *lat = randn(4, 1, 16, 4, 6, 1), *out = NULL;
    taps_init(&tp);
    tp.cancel_at = 3;
    CHECK_INT(lm_vae_decode(g.vae, lat, &out, tap_cb, &tp, &err), LM_ECANCELLED);
    CHECK_STR(err.kind, "interrupted");
    CHECK(out == NULL && tp.last_step == 3);
    taps_free(&tp);
    taps_init(&tp);
    tp.cancel_at = 30;
    lm_vae_tile_opts o = { .tile_size = 16, .overlap = 0 };
    CHECK_INT(lm_vae_decode_tiled(g.vae, lat, &o, &out, tap_cb, &tp, &err), LM_ECANCELLED);
    CHECK(out == NULL && tp.last_step == 30 && tp.monotonic);
    taps_free(&tp);
    lm_tensor_free(lat);
    gset_close(&g);
}

void test_sd3_vae__comfy_image_conversion(void)
{
    lm_error err;
    float px[2 * 3 * 4] = { 0,    0.25f, 1,    0.5f, 0.5f, 0.5f, 1,    1,    1,    0, 0, 0,
                            0.1f, 0.2f,  0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 1, 0, 0.5f };
    int64_t shape[4] = { 1, 2, 3, 4 }; /* [B, H, W, C] with an alpha channel */
    lm_tensor *rgba = NULL, *chw = NULL, *back = NULL;
    REQUIRE_OK(lm_tensor_new(&rgba, lm_backend_cpu(), LM_DTYPE_F32, 4, shape, &err), &err);
    memcpy(lm_tensor_data(rgba), px, sizeof(px));
    REQUIRE_OK(lm_vae_image_from_comfy(rgba, &chw, &err), &err);
    int64_t want[4] = { 1, 3, 2, 3 };
    CHECK(chw->ndim == 4 && memcmp(chw->shape, want, sizeof(want)) == 0);
    const float *c = lm_tensor_data(chw);
    CHECK_NEAR(c[0], -1.0, 0);    /* R of pixel (0, 0) */
    CHECK_NEAR(c[6], -0.5, 1e-7); /* G of pixel (0, 0): 0.25 */
    CHECK_NEAR(c[12], 1.0, 1e-7); /* B of pixel (0, 0) */
    CHECK_NEAR(c[1], 0.0, 1e-7);  /* R of pixel (0, 1): 0.5 */
    REQUIRE_OK(lm_vae_image_to_comfy(chw, &back, &err), &err);
    const float *b = lm_tensor_data(back);
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 3; k++)
            CHECK_NEAR(b[i * 3 + k], px[i * 4 + k], 1e-7);
    lm_tensor_free(back);
    float big[3] = { -3, 0.2f, 5 }; /* out of range: clamped */
    int64_t s3[4] = { 1, 3, 1, 1 };
    lm_tensor *x = NULL;
    REQUIRE_OK(lm_tensor_new(&x, lm_backend_cpu(), LM_DTYPE_F32, 4, s3, &err), &err);
    memcpy(lm_tensor_data(x), big, sizeof(big));
    REQUIRE_OK(lm_vae_image_to_comfy(x, &back, &err), &err);
    b = lm_tensor_data(back);
    CHECK(b[0] == 0.0f && fabsf(b[1] - 0.6f) < 1e-7f && b[2] == 1.0f);
    lm_tensor_free(back);
    lm_tensor_free(x);
    lm_tensor_free(chw);
    lm_tensor_free(rgba);
}

void test_sd3_vae__latent_format_roundtrip(void)
{
    lm_error err;
    lm_vae_config cfg = { .scale = LM_VAE_SD3_SCALE, .shift = LM_VAE_SD3_SHIFT };
    lm_tensor *raw = randn(5, 1, 16, 3, 5, 1), *sc = NULL, *back = NULL;
    REQUIRE_OK(lm_vae_process_in(&cfg, raw, &sc, &err), &err);
    REQUIRE_OK(lm_vae_process_out(&cfg, sc, &back, &err), &err);
    const float *r = lm_tensor_data(raw), *s = lm_tensor_data(sc), *b = lm_tensor_data(back);
    for (int i = 0; i < 16 * 15; i++) {
        CHECK_NEAR(s[i], ((double)r[i] - 0.0609) * 1.5305, 1e-6);
        CHECK_NEAR(b[i], r[i], 1e-6);
    }
    lm_tensor_free(back);
    lm_tensor_free(sc);
    lm_tensor_free(raw);
}

/* ---- tiling ---------------------------------------------------------------------------- */

/* Max |a - b| and where (channel, y, x of the first batch). */
static double max_diff(const lm_tensor *a, const lm_tensor *b, int64_t *cy, int64_t *cx,
                       int64_t *cc)
{
    const float *p = lm_tensor_data(a), *q = lm_tensor_data(b);
    int64_t h = a->shape[2], w = a->shape[3], at = 0;
    double m = 0;
    for (int64_t i = 0; i < lm_tensor_numel(a); i++) {
        double d = fabs((double)p[i] - (double)q[i]);
        if (d > m) {
            m = d;
            at = i;
        }
    }
    *cx = at % w;
    *cy = at / w % h;
    *cc = at / (w * h) % a->shape[1];
    return m;
}

static double mean_diff(const lm_tensor *a, const lm_tensor *b)
{
    const float *p = lm_tensor_data(a), *q = lm_tensor_data(b);
    double s = 0;
    for (int64_t i = 0; i < lm_tensor_numel(a); i++)
        s += fabs((double)p[i] - (double)q[i]);
    return s / (double)lm_tensor_numel(a);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[lo, hi) without v[skip]. */
static double median_around(const double *v, int64_t lo, int64_t hi, int64_t skip)
{
    double w[32];
    int n = 0;
    for (int64_t i = lo; i < hi && n < 32; i++)
        if (i != skip)
            w[n++] = v[i];
    qsort(w, (size_t)n, sizeof(double), cmp_double);
    return n ? w[n / 2] : 0;
}

/* Seams are lines where the difference D = tiled - whole jumps from one column (dim 3) or
 * row (dim 2) to the next. With g(i) = mean |D(i) - D(i-1)| over line i, the result is the
 * largest g(i) over the median of its 16 neighbours: a hard tile edge is a one-line spike
 * (about 3 in the tiny VAE), feathered blending changes D only gradually (about 1.3). */
static double seam_ratio(const lm_tensor *tiled, const lm_tensor *whole, int dim)
{
    const float *p = lm_tensor_data(tiled), *q = lm_tensor_data(whole);
    int64_t h = tiled->shape[2], w = tiled->shape[3], n = dim == 3 ? w : h;
    int64_t step = dim == 3 ? 1 : w;
    double *g = calloc((size_t)n, sizeof(double)), worst = 0;
    for (int64_t i = 0; i < lm_tensor_numel(tiled); i++) {
        int64_t line = dim == 3 ? i % w : i / w % h;
        if (line > 0)
            g[line] += fabs((double)(p[i] - q[i]) - (double)(p[i - step] - q[i - step]));
    }
    for (int64_t i = 1; i < n; i++) {
        int64_t lo = LM_MAX(1, LM_MIN(i - 8, n - 17)), hi = LM_MIN(n, lo + 17);
        worst = fmax(worst, g[i] / median_around(g, lo, hi, i));
    }
    free(g);
    return worst;
}

/* Tiled decode of `lat` against the whole one; notes the differences and seam ratios. */
static void tiled_vs_whole(const lm_vae *vae, const lm_tensor *lat, const lm_tensor *whole,
                           int tile, int overlap, double *mean, double *seam)
{
    lm_error err;
    lm_vae_tile_opts o = { .tile_size = tile, .overlap = overlap };
    lm_tensor *tiled = NULL;
    taps tp;
    taps_init(&tp);
    *mean = *seam = 1e9;
    REQUIRE_OK(lm_vae_decode_tiled(vae, lat, &o, &tiled, tap_cb, &tp, &err), &err);
    CHECK(tp.monotonic && tp.last_step == tp.steps);
    REQUIRE(gold_shapes_equal(whole, tiled));
    int64_t y, x, c;
    double m = max_diff(whole, tiled, &y, &x, &c);
    *mean = mean_diff(tiled, whole);
    *seam = fmax(seam_ratio(tiled, whole, 2), seam_ratio(tiled, whole, 3));
    test_note("tile %d overlap %d (%d tiles): max |diff| %.3f at (c %lld, y %lld, x %lld), "
              "mean %.4f, seam ratio rows %.2f cols %.2f",
              tile, overlap, tp.tiles, m, (long long)c, (long long)y, (long long)x, *mean,
              seam_ratio(tiled, whole, 2), seam_ratio(tiled, whole, 3));
    lm_tensor_free(tiled);
}

void test_sd3_vae__tiled_decode_close(void)
{
    lm_error err;
    gset g;
    if (!gset_open(&g, golden_sets[0]))
        return;
    /* 16 x 32 latent (128 x 256 pixels): 96-pixel tiles make 2 x 4 tiles. The tiny random
     * VAE leans on GroupNorm statistics and global attention far more than a trained one,
     * so tiles differ from the whole everywhere (less as tiles grow); what tiling must not
     * add is seams: D = tiled - whole must not jump at tile edges, as it does unfeathered. */
    lm_tensor *lat = randn(6, 1, 16, 16, 32, 1), *whole = NULL, *one = NULL;
    lm_vae_tile_opts big = { .tile_size = 512 };
    REQUIRE_OK(lm_vae_decode(g.vae, lat, &whole, NULL, NULL, &err), &err);
    double mean = 0, seam = 0, mean0 = 0, seam0 = 0, mean_big = 0, seam_big = 0;
    tiled_vs_whole(g.vae, lat, whole, 96, 24, &mean, &seam);
    tiled_vs_whole(g.vae, lat, whole, 96, 0, &mean0, &seam0);
    tiled_vs_whole(g.vae, lat, whole, 192, 48, &mean_big, &seam_big);
    CHECK(mean < 0.15 && mean_big < mean);
    CHECK(seam < 1.6 && seam_big < 1.6 && seam0 > seam);
    REQUIRE_OK(lm_vae_decode_tiled(g.vae, lat, &big, &one, NULL, NULL, &err), &err);
    CHECK(identical(whole, one));
    lm_tensor_free(one);
    lm_tensor_free(whole);
    lm_tensor_free(lat);
    gset_close(&g);
}

void test_sd3_vae__tiled_encode_close(void)
{
    lm_error err;
    gset g;
    if (!gset_open(&g, golden_sets[0]))
        return;
    lm_rng *r1 = NULL, *r2 = NULL;
    lm_tensor *img = randn(7, 1, 3, 196, 300, 0.5f), *m1 = NULL, *m2 = NULL, *s1 = NULL, *s2 = NULL;
    lm_vae_tile_opts o = { .tile_size = 96, .overlap = 24 };
    REQUIRE_OK(lm_rng_new(&r1, 3, &err), &err);
    REQUIRE_OK(lm_rng_new(&r2, 3, &err), &err);
    REQUIRE_OK(lm_vae_encode(g.vae, img, r1, &m1, &s1, NULL, NULL, &err), &err);
    REQUIRE_OK(lm_vae_encode_tiled(g.vae, img, &o, r2, &m2, &s2, NULL, NULL, &err), &err);
    REQUIRE(gold_shapes_equal(m1, m2) && gold_shapes_equal(s1, s2));
    CHECK(m1->shape[2] == 196 / 8 && m1->shape[3] == 300 / 8);
    int64_t y, x, c;
    double m = max_diff(m1, m2, &y, &x, &c);
    test_note("tiled encode: mean latent max |diff| %.4f at (c %lld, y %lld, x %lld), mean "
              "|diff| %.4f",
              m, (long long)c, (long long)y, (long long)x, mean_diff(m1, m2));
    CHECK(mean_diff(m1, m2) < 0.2);
    CHECK(mean_diff(s1, s2) < 0.3);
    lm_tensor_free(s1);
    lm_tensor_free(s2);
    lm_tensor_free(m1);
    lm_tensor_free(m2);
    lm_tensor_free(img);
    lm_rng_free(r1);
    lm_rng_free(r2);
    gset_close(&g);
}

/* Largest activation of a tiled and an untiled decode at latent size s x s. */
static void decode_bytes(const lm_vae *vae, int64_t s, size_t *tiled, size_t *whole)
{
    lm_error err;
    lm_vae_tile_opts o = { .tile_size = 64, .overlap = 16 };
    lm_tensor *lat = randn(8, 1, 16, s, s, 1), *out = NULL;
    taps tp;
    taps_init(&tp);
    CHECK_OK(lm_vae_decode_tiled(vae, lat, &o, &out, tap_cb, &tp, &err), &err);
    *tiled = tp.max_bytes;
    lm_tensor_free(out);
    taps_free(&tp);
    taps_init(&tp);
    CHECK_OK(lm_vae_decode(vae, lat, &out, tap_cb, &tp, &err), &err);
    *whole = tp.max_bytes;
    lm_tensor_free(out);
    taps_free(&tp);
    lm_tensor_free(lat);
}

void test_sd3_vae__tiled_memory_bounded(void)
{
    gset g;
    if (!gset_open(&g, golden_sets[0]))
        return;
    size_t t16 = 0, w16 = 0, t32 = 0, w32 = 0;
    decode_bytes(g.vae, 16, &t16, &w16);
    decode_bytes(g.vae, 32, &t32, &w32);
    test_note("largest activation: tiled %zu -> %zu bytes, whole %zu -> %zu bytes (latent 16 -> "
              "32)",
              t16, t32, w16, w32);
    CHECK(t16 > 0 && t16 == t32);
    CHECK(w32 == 4 * w16);
    gset_close(&g);
}
