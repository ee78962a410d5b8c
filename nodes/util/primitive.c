/* nodes/util/primitive.c — the primitive nodes: one widget, one output of the same value.
 *
 * ComfyUI's PrimitiveInt/Float/String/StringMultiline/Boolean: a place to type a number or
 * a text once and link it to several inputs. The executor has already converted and
 * range-checked the input, and values are immutable, so run() hands the input value on as
 * the output (one more reference) without copying. */
#include "core/exec.h"
#include "core/registry.h"

#include <stddef.h>

static lm_status primitive_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(ctx);
    if (!in[0])
        return lm_errorf(err, LM_EINVAL, "required_input_missing",
                         "the input \"value\" has no value");
    out[0] = lm_value_ref(in[0]);
    return LM_OK;
}

static const lm_input_def int_in[] = {
    { "value", LM_TYPE_INT, .flags = LM_INPUT_SEED,
      .help = "The whole number to output (64-bit). UIs may change it after each run "
              "(control_after_generate), which makes this node a seed source." },
};
static const lm_output_def int_out[] = { { "INT", LM_TYPE_INT, "The value, unchanged." } };

const lm_node_def lm_node_primitive_int = {
    .name = "PrimitiveInt",
    .display_name = "Int",
    .category = "utils/primitive",
    .description = "A whole number typed once and linked to any INT inputs.",
    .inputs = int_in,
    .n_inputs = LM_COUNTOF(int_in),
    .outputs = int_out,
    .n_outputs = LM_COUNTOF(int_out),
    .run = primitive_run,
};

static const lm_input_def float_in[] = {
    { "value", LM_TYPE_FLOAT, .help = "The number to output (64-bit floating point)." },
};
static const lm_output_def float_out[] = {
    { "FLOAT", LM_TYPE_FLOAT, "The value, unchanged." },
};

const lm_node_def lm_node_primitive_float = {
    .name = "PrimitiveFloat",
    .display_name = "Float",
    .category = "utils/primitive",
    .description = "A number typed once and linked to any FLOAT inputs.",
    .inputs = float_in,
    .n_inputs = LM_COUNTOF(float_in),
    .outputs = float_out,
    .n_outputs = LM_COUNTOF(float_out),
    .run = primitive_run,
};

static const lm_input_def string_in[] = {
    { "value", LM_TYPE_STRING, .help = "The text to output, on one line." },
};
static const lm_input_def string_multiline_in[] = {
    { "value", LM_TYPE_STRING, .flags = LM_INPUT_MULTILINE,
      .help = "The text to output; may span several lines (a prompt, for example)." },
};
static const lm_output_def string_out[] = {
    { "STRING", LM_TYPE_STRING, "The text, unchanged." },
};

const lm_node_def lm_node_primitive_string = {
    .name = "PrimitiveString",
    .display_name = "String",
    .category = "utils/primitive",
    .description = "A one-line text typed once and linked to any STRING inputs.",
    .inputs = string_in,
    .n_inputs = LM_COUNTOF(string_in),
    .outputs = string_out,
    .n_outputs = LM_COUNTOF(string_out),
    .run = primitive_run,
};

const lm_node_def lm_node_primitive_string_multiline = {
    .name = "PrimitiveStringMultiline",
    .display_name = "String (Multiline)",
    .category = "utils/primitive",
    .description = "A text of several lines typed once and linked to any STRING inputs.",
    .inputs = string_multiline_in,
    .n_inputs = LM_COUNTOF(string_multiline_in),
    .outputs = string_out,
    .n_outputs = LM_COUNTOF(string_out),
    .run = primitive_run,
};

static const lm_input_def boolean_in[] = {
    { "value", LM_TYPE_BOOLEAN, .help = "The switch to output: true or false." },
};
static const lm_output_def boolean_out[] = {
    { "BOOLEAN", LM_TYPE_BOOLEAN, "The value, unchanged." },
};

const lm_node_def lm_node_primitive_boolean = {
    .name = "PrimitiveBoolean",
    .display_name = "Boolean",
    .category = "utils/primitive",
    .description = "A true/false switch set once and linked to any BOOLEAN inputs.",
    .inputs = boolean_in,
    .n_inputs = LM_COUNTOF(boolean_in),
    .outputs = boolean_out,
    .n_outputs = LM_COUNTOF(boolean_out),
    .run = primitive_run,
};
