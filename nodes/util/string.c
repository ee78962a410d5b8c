/* nodes/util/string.c — StringFormat and StringConcatenate: building texts (prompts,
 * file name prefixes) from other values.
 *
 * StringFormat substitutes up to four values of any scalar type into a template with
 * Python's str.format brace syntax, reduced to what a prompt needs: {a} {b} {c} {d}, and
 * {{ }} for literal braces. No format specs and no other names: anything else is an error
 * naming the placeholder, since a typo silently left in a prompt costs a whole render.
 * Scalars render as in workflow JSON (12, 0.5, true); strings are inserted as they are. */
#include "core/base/str.h"
#include "core/exec.h"
#include "core/registry.h"

#include <string.h>

enum { IN_FORMAT, IN_A, IN_B, IN_C, IN_D, IN_COUNT };

static const char *const arg_names[] = { "a", "b", "c", "d" };

/* Adds the hint and the input to an error already set; returns its code. */
static lm_status at_input(lm_error *err, lm_status code, const char *input, const char *hint)
{
    lm_error_hint(err, "%s", hint);
    lm_error_at_node(err, NULL, NULL, input);
    return code;
}

/* Appends one argument's text; `arg` is the input index (IN_A..IN_D). */
static lm_status append_arg(lm_str *s, lm_value *const *in, int arg, lm_error *err)
{
    const char *name = arg_names[arg - IN_A];
    const lm_value *v = in[arg];
    char buf[64];
    if (!v) {
        lm_errorf(err, LM_EINVAL, "required_input_missing",
                  "the format uses {%s} but the input has no value", name);
        return at_input(err, LM_EINVAL, name, "connect the input or remove the placeholder");
    }
    switch (lm_value_type(v)) {
    case LM_TYPE_STRING:
        lm_str_appendn(s, lm_value_as_string(v), lm_value_string_len(v));
        break;
    case LM_TYPE_BOOLEAN:
        lm_str_append(s, lm_value_as_bool(v) ? "true" : "false");
        break;
    case LM_TYPE_INT:
    case LM_TYPE_FLOAT:
        lm_value_to_json(v, buf, sizeof(buf));
        lm_str_append(s, buf);
        break;
    default:
        lm_errorf(err, LM_ETYPE, "invalid_input_type", "a %s value cannot be written into a text",
                  lm_type_name(lm_value_type(v)));
        return at_input(err, LM_ETYPE, name, "link an INT, FLOAT, STRING or BOOLEAN output");
    }
    return LM_OK;
}

/* Handles the placeholder starting at fmt[*i] == '{' (not "{{"); advances *i past it. */
static lm_status substitute(lm_str *s, const char *fmt, size_t *i, lm_value *const *in,
                            lm_error *err)
{
    const char *open = fmt + *i, *close = strchr(open + 1, '}');
    if (!close) {
        int shown = (int)LM_MIN(strcspn(open, "\r\n"), 40);
        lm_errorf(err, LM_EINVAL, "invalid_format", "the placeholder %.*s is not closed", shown,
                  open);
        return at_input(err, LM_EINVAL, "format", "close it with } or write {{ for a brace");
    }
    size_t len = (size_t)(close - open - 1);
    for (int k = 0; k < 4; k++)
        if (len == 1 && open[1] == arg_names[k][0]) {
            *i += 3;
            return append_arg(s, in, IN_A + k, err);
        }
    lm_errorf(err, LM_EINVAL, "invalid_format", "unknown placeholder {%.*s}", (int)LM_MIN(len, 40),
              open + 1);
    return at_input(err, LM_EINVAL, "format",
                    "the placeholders are {a}, {b}, {c} and {d}; write {{ and }} for braces");
}

static lm_status format_text(lm_str *s, const char *fmt, lm_value *const *in, lm_error *err)
{
    size_t i = 0;
    while (fmt[i]) {
        size_t run = strcspn(fmt + i, "{}");
        lm_str_appendn(s, fmt + i, run);
        i += run;
        if (!fmt[i])
            break;
        if (fmt[i + 1] == fmt[i]) {
            lm_str_appendn(s, fmt + i, 1);
            i += 2;
        } else if (fmt[i] == '}') {
            lm_errorf(err, LM_EINVAL, "invalid_format", "a single } has no matching {");
            return at_input(err, LM_EINVAL, "format", "write }} for a literal brace");
        } else {
            lm_status st = substitute(s, fmt, &i, in, err);
            if (st != LM_OK)
                return st;
        }
    }
    return LM_OK;
}

static lm_status string_out(lm_str *s, lm_value **out, lm_error *err)
{
    if (!s->oom)
        out[0] = lm_value_string_n(lm_str_cstr(s), s->len);
    lm_str_fini(s);
    if (!out[0])
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory building the text");
    return LM_OK;
}

static lm_status string_format_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(ctx);
    const char *fmt = lm_value_as_string(in[IN_FORMAT]);
    lm_str s;
    lm_str_init(&s);
    lm_status st = format_text(&s, fmt ? fmt : "", in, err);
    if (st != LM_OK) {
        lm_str_fini(&s);
        return st;
    }
    return string_out(&s, out, err);
}

#define ARG_HELP(x)                                                                                \
    "A value for {" x "}: INT, FLOAT, STRING or BOOLEAN (written as 12, 0.5, text, true). "        \
    "Optional; required only when the format uses {" x "}."

static const lm_input_def string_format_in[IN_COUNT] = {
    [IN_FORMAT] = { "format", LM_TYPE_STRING, .s_def = "{a}", .flags = LM_INPUT_MULTILINE,
                    .help = "The text to fill in. {a}, {b}, {c} and {d} are replaced by the "
                            "inputs of the same name; write {{ and }} for literal braces. Any "
                            "other {name} is an error." },
    [IN_A] = { "a", LM_TYPE_ANY, .flags = LM_INPUT_OPTIONAL, .help = ARG_HELP("a") },
    [IN_B] = { "b", LM_TYPE_ANY, .flags = LM_INPUT_OPTIONAL, .help = ARG_HELP("b") },
    [IN_C] = { "c", LM_TYPE_ANY, .flags = LM_INPUT_OPTIONAL, .help = ARG_HELP("c") },
    [IN_D] = { "d", LM_TYPE_ANY, .flags = LM_INPUT_OPTIONAL, .help = ARG_HELP("d") },
};
static const lm_output_def string_format_out[] = {
    { "STRING", LM_TYPE_STRING, "The format with every placeholder replaced." },
};

const lm_node_def lm_node_string_format = {
    .name = "StringFormat",
    .display_name = "String Format",
    .category = "utils/string",
    .description = "Fills the placeholders {a} to {d} of a text with numbers, switches or "
                   "other texts, e.g. \"a photo of {a}, seed {b}\".",
    .inputs = string_format_in,
    .n_inputs = IN_COUNT,
    .outputs = string_format_out,
    .n_outputs = LM_COUNTOF(string_format_out),
    .run = string_format_run,
};

enum { IN_STRING_A, IN_STRING_B, IN_DELIMITER, IN_CONCAT_COUNT };

static void append_value(lm_str *s, const lm_value *v)
{
    if (v && lm_value_as_string(v))
        lm_str_appendn(s, lm_value_as_string(v), lm_value_string_len(v));
}

static lm_status string_concatenate_run(lm_ctx *ctx, lm_value *const *in, lm_value **out,
                                        lm_error *err)
{
    LM_UNUSED(ctx);
    lm_str s;
    lm_str_init(&s);
    append_value(&s, in[IN_STRING_A]);
    append_value(&s, in[IN_DELIMITER]);
    append_value(&s, in[IN_STRING_B]);
    return string_out(&s, out, err);
}

static const lm_input_def string_concatenate_in[IN_CONCAT_COUNT] = {
    [IN_STRING_A] = { "string_a", LM_TYPE_STRING, .flags = LM_INPUT_MULTILINE,
                      .help = "The text that comes first." },
    [IN_STRING_B] = { "string_b", LM_TYPE_STRING, .flags = LM_INPUT_MULTILINE,
                      .help = "The text that comes last." },
    [IN_DELIMITER] = { "delimiter", LM_TYPE_STRING, .s_def = "",
                       .help = "Put between the two texts, e.g. \", \" or a space; empty "
                               "joins them directly." },
};
static const lm_output_def string_concatenate_out[] = {
    { "STRING", LM_TYPE_STRING, "string_a, delimiter and string_b joined." },
};

const lm_node_def lm_node_string_concatenate = {
    .name = "StringConcatenate",
    .display_name = "Concatenate",
    .category = "utils/string",
    .description = "Joins two texts with a delimiter between them.",
    .inputs = string_concatenate_in,
    .n_inputs = IN_CONCAT_COUNT,
    .outputs = string_concatenate_out,
    .n_outputs = LM_COUNTOF(string_concatenate_out),
    .run = string_concatenate_run,
};
