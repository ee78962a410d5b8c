/* nodes/sampling/model_patches.c — ModelSamplingSD3 and SkipLayerGuidanceSD3: a new MODEL
 * sharing the input's MMDiT, with changed sampling options (values are immutable; the
 * weights are never copied).
 *
 * SkipLayerGuidanceSD3 follows ComfyUI's SkipLayerGuidanceDiT: `layers` is read as every run
 * of digits in the text (re.findall(r"\d+")), so "7, 8, 9", "7 8 9" and "[7,8,9]" are the
 * same; no layer at all returns the model unchanged. While sampling, between start_percent
 * and end_percent of the schedule, the positive prediction is also computed with those
 * joint blocks skipped and the guided result gets (cond - cond_skipped) * scale added
 * (nodes/sampling/denoiser.c). Layers past the model's depth are ignored, as in ComfyUI. */
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/sd3/models.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>

static const lm_output_def model_out[1] = { { "MODEL", LM_TYPE_MODEL, NULL } };

static lm_status wrap(lm_sd3_model *m, lm_value **out, lm_error *err)
{
    *out = lm_sd3_model_value(m);
    return *out ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* ---- ModelSamplingSD3 ---- */

enum { MS_MODEL, MS_SHIFT, MS_COUNT };

static const lm_input_def ms_in[MS_COUNT] = {
    [MS_MODEL] = { "model", LM_TYPE_MODEL, .help = "The diffusion model." },
    [MS_SHIFT] = { "shift", LM_TYPE_FLOAT,
                   .f = { .def = 3.0, .min = 0.0, .max = 100.0, .step = 0.01 },
                   .help = "Timestep shift: higher spends more steps at high noise (SD3 uses 3)." },
};

static lm_status ms_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)ctx;
    lm_sd3_model *m = NULL;
    lm_status st = lm_sd3_model_copy(&m, lm_sd3_model_of(in[MS_MODEL]), err);
    if (st != LM_OK)
        return st;
    m->sampling.shift = lm_value_as_float(in[MS_SHIFT]);
    return wrap(m, &out[0], err);
}

const lm_node_def lm_node_model_sampling_sd3 = {
    .name = "ModelSamplingSD3",
    .display_name = "ModelSamplingSD3",
    .category = "advanced/model",
    .description = "Sets the model's noise schedule shift.",
    .inputs = ms_in,
    .n_inputs = MS_COUNT,
    .outputs = model_out,
    .n_outputs = 1,
    .run = ms_run,
};

/* ---- SkipLayerGuidanceSD3 ---- */

enum { SL_MODEL, SL_LAYERS, SL_SCALE, SL_START, SL_END, SL_COUNT };

static const lm_input_def sl_in[SL_COUNT] = {
    [SL_MODEL] = { "model", LM_TYPE_MODEL, .help = "The diffusion model." },
    [SL_LAYERS] = { "layers", LM_TYPE_STRING, .s_def = "7, 8, 9",
                    .help = "Joint blocks to skip, e.g. \"7, 8, 9\" (every number in the text)." },
    [SL_SCALE] = { "scale", LM_TYPE_FLOAT,
                   .f = { .def = 3.0, .min = 0.0, .max = 10.0, .step = 0.1 },
                   .help = "Strength of the guidance; 0 turns it off." },
    [SL_START] = { "start_percent", LM_TYPE_FLOAT,
                   .f = { .def = 0.01, .min = 0.0, .max = 1.0, .step = 0.001 },
                   .help = "Where in the schedule it starts (0 = first step)." },
    [SL_END] = { "end_percent", LM_TYPE_FLOAT,
                 .f = { .def = 0.15, .min = 0.0, .max = 1.0, .step = 0.001 },
                 .help = "Where in the schedule it stops (1 = last step)." },
};

/* Every run of digits in text, as ComfyUI's re.findall(r"\d+"). */
static lm_status parse_layers(const char *text, int *layers, int *n, lm_error *err)
{
    *n = 0;
    for (const char *p = text; *p;) {
        if (!isdigit((unsigned char)*p)) {
            p++;
            continue;
        }
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        p = end;
        if (*n == LM_SD3_SLG_MAX_LAYERS) {
            lm_errorf(err, LM_ELIMIT, "custom_validation_failed", "more than %d layers are listed",
                      LM_SD3_SLG_MAX_LAYERS);
            lm_error_hint(err, "list each joint block once");
            lm_error_at_node(err, NULL, NULL, "layers");
            return LM_ELIMIT;
        }
        layers[(*n)++] = v > INT_MAX ? INT_MAX : (int)v;
    }
    return LM_OK;
}

static lm_status sl_check(const lm_node_def *def, const lm_env *env, lm_value *const *in,
                          lm_error *err)
{
    (void)def;
    (void)env;
    int layers[LM_SD3_SLG_MAX_LAYERS], n;
    return in[SL_LAYERS] ? parse_layers(lm_value_as_string(in[SL_LAYERS]), layers, &n, err) : LM_OK;
}

static lm_status sl_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)ctx;
    lm_sd3_model *m = NULL;
    int layers[LM_SD3_SLG_MAX_LAYERS], n = 0;
    lm_status st = parse_layers(lm_value_as_string(in[SL_LAYERS]), layers, &n, err);
    if (st == LM_OK && n == 0) { /* ComfyUI returns the model as it is */
        out[0] = lm_value_ref(in[SL_MODEL]);
        return LM_OK;
    }
    if (st == LM_OK)
        st = lm_sd3_model_copy(&m, lm_sd3_model_of(in[SL_MODEL]), err);
    if (st != LM_OK)
        return st;
    for (int i = 0; i < n; i++)
        m->slg.layers[i] = layers[i];
    m->slg.n_layers = n;
    m->slg.scale = lm_value_as_float(in[SL_SCALE]);
    m->slg.start_percent = lm_value_as_float(in[SL_START]);
    m->slg.end_percent = lm_value_as_float(in[SL_END]);
    return wrap(m, &out[0], err);
}

const lm_node_def lm_node_skip_layer_guidance_sd3 = {
    .name = "SkipLayerGuidanceSD3",
    .display_name = "SkipLayerGuidanceSD3",
    .category = "advanced/guidance",
    .description = "Skip-layer guidance (SD3.5): also predicts with some joint blocks skipped "
                   "and pushes the result away from that prediction.",
    .inputs = sl_in,
    .n_inputs = SL_COUNT,
    .outputs = model_out,
    .n_outputs = 1,
    .run = sl_run,
    .check = sl_check,
};
