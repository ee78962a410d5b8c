/* nodes/image/empty_image.c — EmptyImage: a batch of images of one colour.
 * As in ComfyUI, `color` is an integer 0xRRGGBB and each channel becomes byte / 255. */
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/image/image_nodes.h"

enum { IN_WIDTH, IN_HEIGHT, IN_BATCH_SIZE, IN_COLOR, IN_COUNT };

static const lm_input_def empty_in[IN_COUNT] = {
    [IN_WIDTH] = { "width", LM_TYPE_INT, .i = { .def = 512, .min = 1, .max = 16384, .step = 1 } },
    [IN_HEIGHT] = { "height", LM_TYPE_INT, .i = { .def = 512, .min = 1, .max = 16384, .step = 1 } },
    [IN_BATCH_SIZE] = { "batch_size", LM_TYPE_INT,
                        .i = { .def = 1, .min = 1, .max = 4096, .step = 1 } },
    [IN_COLOR] = { "color", LM_TYPE_INT, .i = { .def = 0, .min = 0, .max = 0xFFFFFF, .step = 1 },
                   .help = "0xRRGGBB: 16711680 is red, 65280 green, 255 blue." },
};

static lm_status empty_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)ctx;
    int64_t w = lm_value_as_int(in[IN_WIDTH]), h = lm_value_as_int(in[IN_HEIGHT]);
    int64_t b = lm_value_as_int(in[IN_BATCH_SIZE]), color = lm_value_as_int(in[IN_COLOR]);
    lm_tensor *t;
    lm_status st = lm_image_nodes__new(&t, b, h, w, 3, err);
    if (st != LM_OK)
        return st;
    float rgb[3];
    for (int k = 0; k < 3; k++)
        rgb[k] = (float)((color >> (16 - 8 * k)) & 0xff) / 255.0f;
    float *p = lm_tensor_data(t);
    for (int64_t i = 0; i < b * h * w; i++)
        for (int k = 0; k < 3; k++)
            p[i * 3 + k] = rgb[k];
    out[0] = lm_value_image(t);
    if (!out[0])
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory making an image");
    return LM_OK;
}

const lm_node_def lm_node_empty_image = {
    .name = "EmptyImage",
    .display_name = "EmptyImage",
    .category = "image",
    .description = "A batch of images filled with one colour.",
    .inputs = empty_in,
    .n_inputs = IN_COUNT,
    .outputs = lm_image_nodes__image_out,
    .n_outputs = 1,
    .run = empty_run,
};
