/* daemon/golden_vae.c — `loom golden` for VAE goldens: decode and encode with their stages.
 *
 * Decode: the INPUT under "decode." (a scaled latent) goes through lm_vae_decode; each
 * stage the decoder reports (latent_raw, conv_in, mid, up<i>, …) is compared with
 * "decode.<stage>" or "decode.im.<stage>" when the golden holds one, the output with
 * "decode.image", and its 8-bit form with "decode.image_u8" (group image_u8).
 * Encode: the INPUT under "encode." (an image in [-1, 1]) goes through lm_vae_encode, with a
 * generator seeded from params.encode_sample_seed when the golden holds a sampled latent;
 * stages (moments, mean, logvar, sample, down<i>, mid, …) as for decode, and the scaled
 * results with "encode.mean_scaled" / "encode.sample_scaled". Group "vae" for all but u8. */
#include "core/tensor/rng.h"
#include "daemon/golden_impl.h"

#include <stdio.h>
#include <string.h>

bool lm_golden__is_vae(const lm_golden_file *f)
{
    size_t first = 0;
    return lm_safetensors_find_prefix(f->st, "decode.", &first) > 0 ||
           lm_safetensors_find_prefix(f->st, "encode.", &first) > 0;
}

typedef struct {
    lm_golden_file *f;
    const char *prefix; /* "decode." or "encode." */
} stage_ctx;

static lm_status on_stage(const lm_vae_event *ev, void *user)
{
    stage_ctx *c = user;
    char name[160];
    if (!ev->tensor || ev->tiles != 1)
        return LM_OK;
    snprintf(name, sizeof(name), "%s%s", c->prefix, ev->stage);
    lm_golden__check(c->f, name, "vae", ev->tensor);
    snprintf(name, sizeof(name), "%sim.%s", c->prefix, ev->stage);
    lm_golden__check(c->f, name, "vae", ev->tensor);
    return LM_OK;
}

/* The one INPUT tensor under prefix. */
static lm_status input_under(const lm_golden_file *f, const char *prefix, lm_tensor **out,
                             lm_error *err)
{
    size_t first = 0, n = lm_safetensors_find_prefix(f->st, prefix, &first);
    const char *found = NULL;
    *out = NULL;
    for (size_t i = first; i < first + n; i++) {
        const char *name = lm_safetensors_at(f->st, i)->name;
        if (!lm_golden__is_input(f, name))
            continue;
        if (found)
            return lm_errorf(err, LM_EFORMAT, "golden_inputs",
                             "%s: two INPUT tensors under \"%s\" (%s, %s); expected one", f->name,
                             prefix, found, name);
        found = name;
    }
    if (!found)
        return lm_errorf(err, LM_ENOTFOUND, "golden_inputs", "%s: no INPUT tensor under \"%s\"",
                         f->name, prefix);
    return lm_golden__tensor(f, found, out, err);
}

static void decode_case(lm_golden_file *f, const lm_vae *vae)
{
    lm_error err;
    lm_tensor *latent = NULL, *image = NULL;
    stage_ctx sc = { f, "decode." };
    lm_status st = input_under(f, "decode.", &latent, &err);
    if (st == LM_OK)
        st = lm_vae_decode(vae, latent, &image, on_stage, &sc, &err);
    if (st == LM_OK) {
        lm_golden__check(f, "decode.image", "vae", image);
        lm_golden__check_u8(f, "decode.image_u8", "image_u8", image);
    } else {
        lm_golden__fail_prefix(f, "decode.", &err);
    }
    lm_tensor_free(image);
    lm_tensor_free(latent);
}

static void encode_case(lm_golden_file *f, const lm_vae *vae)
{
    lm_error err;
    lm_tensor *image = NULL, *mean = NULL, *sample = NULL;
    lm_rng *rng = NULL;
    stage_ctx sc = { f, "encode." };
    double seed = 0;
    bool sampled = lm_golden__has(f, "encode.sample") || lm_golden__has(f, "encode.sample_scaled");
    lm_status st = input_under(f, "encode.", &image, &err);
    if (st == LM_OK && sampled && !lm_golden__param(f, "encode_sample_seed", &seed))
        st = lm_errorf(&err, LM_ENOTFOUND, "golden_params",
                       "%s holds a sampled latent but no params.encode_sample_seed", f->name);
    if (st == LM_OK && sampled)
        st = lm_rng_new(&rng, lm_golden__seed(seed), &err);
    if (st == LM_OK)
        st = lm_vae_encode(vae, image, rng, &mean, sampled ? &sample : NULL, on_stage, &sc, &err);
    if (st == LM_OK) {
        lm_golden__check(f, "encode.mean_scaled", "vae", mean);
        lm_golden__check(f, "encode.sample_scaled", "vae", sample);
    } else {
        lm_golden__fail_prefix(f, "encode.", &err);
    }
    lm_rng_free(rng);
    lm_tensor_free(image);
    lm_tensor_free(mean);
    lm_tensor_free(sample);
}

void lm_golden__check_vae(lm_golden_file *f)
{
    lm_error err;
    const lm_vae *vae = NULL;
    size_t first = 0;
    bool dec = lm_safetensors_find_prefix(f->st, "decode.", &first) > 0;
    bool enc = lm_safetensors_find_prefix(f->st, "encode.", &first) > 0;
    if (lm_golden__vae(f, &vae, &err) != LM_OK) {
        lm_golden__fail_prefix(f, "decode.", &err);
        lm_golden__fail_prefix(f, "encode.", &err);
        return;
    }
    if (dec)
        decode_case(f, vae);
    if (enc)
        encode_case(f, vae);
}
