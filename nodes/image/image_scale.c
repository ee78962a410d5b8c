/* nodes/image/image_scale.c — ImageScale: resize to a width and height.
 * As in ComfyUI: width and height 0 keep the picture's aspect ratio from the other
 * (rounded half to even, like Python's round), both 0 return the image unchanged, and crop
 * "center" first cuts the middle to the target's aspect ratio. The methods are in
 * resample.c. */
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/image/image_nodes.h"

#include <math.h>
#include <string.h>

enum { IN_IMAGE, IN_METHOD, IN_WIDTH, IN_HEIGHT, IN_CROP, IN_COUNT };

/* Same order as lm_resample. */
static const char *const methods[] = { "nearest-exact", "bilinear", "area",
                                       "bicubic",       "lanczos",  NULL };
static const char *const crops[] = { "disabled", "center", NULL };

static const lm_input_def scale_in[IN_COUNT] = {
    [IN_IMAGE] = { "image", LM_TYPE_IMAGE, .help = "The images to resize." },
    [IN_METHOD] = { "upscale_method", LM_TYPE_STRING, .choices = methods,
                    .help = "Resampling filter; area averages, for shrinking." },
    [IN_WIDTH] = { "width", LM_TYPE_INT, .i = { .def = 512, .min = 0, .max = 16384, .step = 1 },
                   .help = "0 keeps the aspect ratio from height." },
    [IN_HEIGHT] = { "height", LM_TYPE_INT, .i = { .def = 512, .min = 0, .max = 16384, .step = 1 },
                    .help = "0 keeps the aspect ratio from width." },
    [IN_CROP] = { "crop", LM_TYPE_STRING, .choices = crops,
                  .help = "center: cut the middle to the new aspect ratio first." },
};

static int choice_index(const lm_value *v, const char *const *choices)
{
    const char *s = lm_value_as_string(v);
    for (int i = 0; s && choices[i]; i++)
        if (strcmp(s, choices[i]) == 0)
            return i;
    return -1;
}

static lm_status bad_choice(const char *input, const char *expected, lm_error *err)
{
    lm_errorf(err, LM_EINVAL, "value_not_in_list", "unknown %s", input);
    lm_error_hint(err, "use one of %s", expected);
    lm_error_at_node(err, NULL, NULL, input);
    return LM_EINVAL;
}

/* ComfyUI: the missing side is max(1, round(other * ratio)). */
static int64_t keep_aspect(int64_t side, int64_t other_new, int64_t other_old)
{
    int64_t v = (int64_t)nearbyint((double)side * (double)other_new / (double)other_old);
    return v < 1 ? 1 : v;
}

static lm_status scale_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    int method = choice_index(in[IN_METHOD], methods), crop = choice_index(in[IN_CROP], crops);
    if (method < 0)
        return bad_choice("upscale_method", "nearest-exact, bilinear, area, bicubic, lanczos", err);
    if (crop < 0)
        return bad_choice("crop", "disabled, center", err);
    int64_t w = lm_value_as_int(in[IN_WIDTH]), h = lm_value_as_int(in[IN_HEIGHT]);
    lm_tensor *copy, *res;
    const float *data;
    const lm_tensor *shape;
    lm_status st = lm_image_nodes__pixels(in[IN_IMAGE], "image", &copy, &data, &shape, err);
    if (st != LM_OK)
        return st;
    if (w <= 0 && h <= 0) {
        lm_tensor_free(copy);
        out[0] = lm_value_ref(in[IN_IMAGE]);
        return LM_OK;
    }
    if (w <= 0)
        w = keep_aspect(shape->shape[2], h, shape->shape[1]);
    else if (h <= 0)
        h = keep_aspect(shape->shape[1], w, shape->shape[2]);
    st = lm_image_nodes__resize(ctx, shape, data, w, h, (lm_resample)method, crop == 1, &res, err);
    lm_tensor_free(copy);
    if (st != LM_OK)
        return st;
    out[0] = lm_value_image(res);
    return out[0] ? LM_OK
                  : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory scaling an image");
}

const lm_node_def lm_node_image_scale = {
    .name = "ImageScale",
    .display_name = "Upscale Image",
    .category = "image/upscaling",
    .description = "Resizes images; a size of 0 keeps the aspect ratio.",
    .inputs = scale_in,
    .n_inputs = IN_COUNT,
    .outputs = lm_image_nodes__image_out,
    .n_outputs = 1,
    .run = scale_run,
};
