/* nodes/image/image_ops.c — per-pixel image operations: ImageInvert and ImageBlend.
 *
 * ImageBlend follows ComfyUI's Blend node (comfy_extras post-processing): image2 is first
 * resized to image1's size (bicubic, center crop) when the sizes differ, the two are
 * combined per mode, and the result is image1 * (1 - f) + blended * f clamped to [0, 1].
 * Its "difference" is image1 - image2, not |image1 - image2| (negative values are then
 * clamped): ComfyUI's formula, kept so workflows give the same pictures. A batch of one
 * broadcasts against a larger batch, as torch does. */
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/image/image_nodes.h"

#include <math.h>
#include <string.h>

/* ---- ImageInvert ---- */

enum { INV_IMAGE, INV_COUNT };

static const lm_input_def invert_in[INV_COUNT] = {
    [INV_IMAGE] = { "image", LM_TYPE_IMAGE, .help = "The images to invert." },
};

static lm_status invert_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)ctx;
    lm_tensor *copy, *res;
    const float *src;
    const lm_tensor *shape;
    lm_status st = lm_image_nodes__pixels(in[INV_IMAGE], "image", &copy, &src, &shape, err);
    if (st == LM_OK)
        st = lm_image_nodes__new(&res, shape->shape[0], shape->shape[1], shape->shape[2],
                                 shape->shape[3], err);
    if (st == LM_OK) {
        float *dst = lm_tensor_data(res);
        for (int64_t i = 0; i < lm_tensor_numel(res); i++)
            dst[i] = 1.0f - src[i];
        out[0] = lm_value_image(res);
        if (!out[0])
            st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory inverting an image");
    }
    lm_tensor_free(copy);
    return st;
}

const lm_node_def lm_node_image_invert = {
    .name = "ImageInvert",
    .display_name = "Invert Image",
    .category = "image",
    .description = "1 - x for every sample.",
    .inputs = invert_in,
    .n_inputs = INV_COUNT,
    .outputs = lm_image_nodes__image_out,
    .n_outputs = 1,
    .run = invert_run,
};

/* ---- ImageBlend ---- */

enum { IN_IMAGE1, IN_IMAGE2, IN_FACTOR, IN_MODE, IN_COUNT };
enum { MODE_NORMAL, MODE_MULTIPLY, MODE_SCREEN, MODE_OVERLAY, MODE_SOFT_LIGHT, MODE_DIFFERENCE };

static const char *const modes[] = { "normal",     "multiply",   "screen", "overlay",
                                     "soft_light", "difference", NULL };

static const lm_input_def blend_in[IN_COUNT] = {
    [IN_IMAGE1] = { "image1", LM_TYPE_IMAGE, .help = "The base images." },
    [IN_IMAGE2] = { "image2", LM_TYPE_IMAGE, .help = "Resized to image1's size if needed." },
    [IN_FACTOR] = { "blend_factor", LM_TYPE_FLOAT,
                    .f = { .def = 0.5, .min = 0.0, .max = 1.0, .step = 0.01 },
                    .help = "0 keeps image1; 1 gives the blended result." },
    [IN_MODE] = { "blend_mode", LM_TYPE_STRING, .choices = modes,
                  .help = "difference is image1 - image2 (ComfyUI), clamped at 0." },
};

/* Soft light's curve for the light half (ComfyUI's g). */
static float soft_g(float x)
{
    return x <= 0.25f ? ((16.0f * x - 12.0f) * x + 4.0f) * x : sqrtf(x);
}

static float blend_one(int mode, float a, float b)
{
    switch (mode) {
    case MODE_MULTIPLY:
        return a * b;
    case MODE_SCREEN:
        return 1.0f - (1.0f - a) * (1.0f - b);
    case MODE_OVERLAY:
        return a <= 0.5f ? 2.0f * a * b : 1.0f - 2.0f * (1.0f - a) * (1.0f - b);
    case MODE_SOFT_LIGHT:
        return b <= 0.5f ? a - (1.0f - 2.0f * b) * a * (1.0f - a)
                         : a + (2.0f * b - 1.0f) * (soft_g(a) - a);
    case MODE_DIFFERENCE:
        return a - b;
    default:
        return b;
    }
}

static float clamp01(float v)
{
    return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
}

typedef struct {
    const lm_tensor *s1, *s2; /* shapes */
    const float *p1, *p2;     /* samples; image2 already at image1's H and W */
} blend_src;

static lm_status blend_apply(lm_ctx *ctx, const blend_src *s, int mode, float f, lm_tensor **out,
                             lm_error *err)
{
    int64_t b1 = s->s1->shape[0], b2 = s->s2->shape[0], c = s->s1->shape[3];
    if (s->s2->shape[3] != c || (b1 != b2 && b1 != 1 && b2 != 1)) {
        lm_errorf(err, LM_EINVAL, "shape_mismatch",
                  "image2 has batch %lld and %lld channels; image1 has batch %lld and %lld "
                  "channels",
                  (long long)b2, (long long)s->s2->shape[3], (long long)b1, (long long)c);
        lm_error_hint(err, "use images with the same channels and equal batches (or a batch "
                           "of one)");
        lm_error_at_node(err, NULL, NULL, "image2");
        return LM_EINVAL;
    }
    int64_t b = b1 > b2 ? b1 : b2, n = s->s1->shape[1] * s->s1->shape[2] * c;
    lm_status st = lm_image_nodes__new(out, b, s->s1->shape[1], s->s1->shape[2], c, err);
    float *dst = st == LM_OK ? lm_tensor_data(*out) : NULL;
    for (int64_t i = 0; st == LM_OK && i < b; i++) {
        if (lm_ctx_cancelled(ctx)) {
            lm_tensor_free(*out);
            *out = NULL;
            return lm_errorf(err, LM_ECANCELLED, "interrupted", "interrupted while blending");
        }
        const float *a = s->p1 + (b1 == 1 ? 0 : i) * n, *q = s->p2 + (b2 == 1 ? 0 : i) * n;
        for (int64_t k = 0; k < n; k++)
            dst[i * n + k] = clamp01(a[k] * (1.0f - f) + blend_one(mode, a[k], q[k]) * f);
    }
    return st;
}

static lm_status blend_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    const char *name = lm_value_as_string(in[IN_MODE]);
    int mode = -1;
    for (int i = 0; name && modes[i]; i++)
        mode = strcmp(name, modes[i]) == 0 ? i : mode;
    if (mode < 0) {
        lm_errorf(err, LM_EINVAL, "value_not_in_list", "unknown blend_mode");
        lm_error_at_node(err, NULL, NULL, "blend_mode");
        return LM_EINVAL;
    }
    lm_tensor *c1 = NULL, *c2 = NULL, *sized = NULL, *res = NULL;
    blend_src s;
    lm_status st = lm_image_nodes__pixels(in[IN_IMAGE1], "image1", &c1, &s.p1, &s.s1, err);
    if (st == LM_OK)
        st = lm_image_nodes__pixels(in[IN_IMAGE2], "image2", &c2, &s.p2, &s.s2, err);
    if (st == LM_OK && (s.s2->shape[1] != s.s1->shape[1] || s.s2->shape[2] != s.s1->shape[2])) {
        st = lm_image_nodes__resize(ctx, s.s2, s.p2, s.s1->shape[2], s.s1->shape[1],
                                    LM_RESAMPLE_BICUBIC, true, &sized, err);
        if (st == LM_OK) {
            s.s2 = sized;
            s.p2 = lm_tensor_data(sized);
        }
    }
    if (st == LM_OK)
        st = blend_apply(ctx, &s, mode, (float)lm_value_as_float(in[IN_FACTOR]), &res, err);
    lm_tensor_free(c1);
    lm_tensor_free(c2);
    lm_tensor_free(sized);
    if (st != LM_OK)
        return st;
    out[0] = lm_value_image(res);
    return out[0] ? LM_OK
                  : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory blending images");
}

const lm_node_def lm_node_image_blend = {
    .name = "ImageBlend",
    .display_name = "Image Blend",
    .category = "image/postprocessing",
    .description = "Blends image2 onto image1 with a blend mode and a factor.",
    .inputs = blend_in,
    .n_inputs = IN_COUNT,
    .outputs = lm_image_nodes__image_out,
    .n_outputs = 1,
    .run = blend_run,
};
