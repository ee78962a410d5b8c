/* nodes/conditioning/conditioning_ops.c — ConditioningZeroOut, ConditioningCombine and
 * ConditioningSetTimestepRange: new CONDITIONING values made from existing ones.
 *
 * As in ComfyUI, a conditioning is a list of entries; these nodes never touch their
 * inputs (values are immutable): entries are copied as tensor views sharing the encoded
 * data, except ZeroOut, which makes zero tensors of the same shapes (context and pooled,
 * ComfyUI's zeros_like of both). Combine concatenates the lists (the sampler averages the
 * entries active at a step); SetTimestepRange sets start/end percent on every entry. */
#include "core/exec.h"
#include "core/registry.h"
#include "nodes/sd3/models.h"

static const lm_output_def cond_out[1] = { { "CONDITIONING", LM_TYPE_CONDITIONING, NULL } };

/* A copy of src's entries [0, n) into dst starting at `at`. */
static lm_status copy_entries(lm_sd3_conditioning *dst, size_t at, const lm_sd3_conditioning *src,
                              lm_error *err)
{
    for (size_t i = 0; i < src->n; i++) {
        lm_status st = lm_sd3_cond_entry_copy(&dst->entries[at + i], &src->entries[i], err);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

static lm_status finish(lm_sd3_conditioning *c, lm_status st, lm_value **out, lm_error *err)
{
    if (st != LM_OK) {
        lm_sd3_conditioning_free(c);
        return st;
    }
    *out = lm_sd3_conditioning_value(c);
    return *out ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* ---- ConditioningZeroOut ---- */

enum { ZO_COND, ZO_COUNT };

static const lm_input_def zero_in[ZO_COUNT] = {
    [ZO_COND] = { "conditioning", LM_TYPE_CONDITIONING,
                  .help = "The conditioning whose context and pooled vectors become zeros." },
};

static lm_status zeros_like(lm_tensor **out, const lm_tensor *t, lm_error *err)
{
    return lm_tensor_zeros(out, lm_tensor_backend(t), LM_DTYPE_F32, t->ndim, t->shape, err);
}

static lm_status zero_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)ctx;
    const lm_sd3_conditioning *src = lm_sd3_conditioning_of(in[ZO_COND]);
    lm_sd3_conditioning *c = NULL;
    lm_status st = lm_sd3_conditioning_new(&c, src->n, err);
    if (st != LM_OK)
        return st;
    for (size_t i = 0; st == LM_OK && i < src->n; i++) {
        lm_sd3_cond_entry *e = &c->entries[i];
        *e = src->entries[i];
        e->context = e->pooled = NULL;
        st = zeros_like(&e->context, src->entries[i].context, err);
        if (st == LM_OK)
            st = zeros_like(&e->pooled, src->entries[i].pooled, err);
    }
    return finish(c, st, &out[0], err);
}

const lm_node_def lm_node_conditioning_zero_out = {
    .name = "ConditioningZeroOut",
    .display_name = "ConditioningZeroOut",
    .category = "advanced/conditioning",
    .description = "Zeros of the conditioning's shapes: SD3's usual negative prompt.",
    .inputs = zero_in,
    .n_inputs = ZO_COUNT,
    .outputs = cond_out,
    .n_outputs = 1,
    .run = zero_run,
};

/* ---- ConditioningCombine ---- */

enum { CO_1, CO_2, CO_COUNT };

static const lm_input_def combine_in[CO_COUNT] = {
    [CO_1] = { "conditioning_1", LM_TYPE_CONDITIONING, .help = "The first entries." },
    [CO_2] = { "conditioning_2", LM_TYPE_CONDITIONING, .help = "Entries appended after them." },
};

static lm_status combine_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)ctx;
    const lm_sd3_conditioning *a = lm_sd3_conditioning_of(in[CO_1]);
    const lm_sd3_conditioning *b = lm_sd3_conditioning_of(in[CO_2]);
    lm_sd3_conditioning *c = NULL;
    lm_status st = lm_sd3_conditioning_new(&c, a->n + b->n, err);
    if (st != LM_OK)
        return st;
    st = copy_entries(c, 0, a, err);
    if (st == LM_OK)
        st = copy_entries(c, a->n, b, err);
    return finish(c, st, &out[0], err);
}

const lm_node_def lm_node_conditioning_combine = {
    .name = "ConditioningCombine",
    .display_name = "Conditioning (Combine)",
    .category = "conditioning",
    .description = "Both conditionings' entries in one list; at each step the sampler averages "
                   "the predictions of the entries active there.",
    .inputs = combine_in,
    .n_inputs = CO_COUNT,
    .outputs = cond_out,
    .n_outputs = 1,
    .run = combine_run,
};

/* ---- ConditioningSetTimestepRange ---- */

enum { TR_COND, TR_START, TR_END, TR_COUNT };

static const lm_input_def range_in[TR_COUNT] = {
    [TR_COND] = { "conditioning", LM_TYPE_CONDITIONING, .help = "The conditioning to limit." },
    [TR_START] = { "start", LM_TYPE_FLOAT,
                   .f = { .def = 0.0, .min = 0.0, .max = 1.0, .step = 0.001 },
                   .help = "Where it starts applying: 0 is the first step (highest noise)." },
    [TR_END] = { "end", LM_TYPE_FLOAT, .f = { .def = 1.0, .min = 0.0, .max = 1.0, .step = 0.001 },
                 .help = "Where it stops applying: 1 is the last step." },
};

static lm_status range_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    (void)ctx;
    const lm_sd3_conditioning *src = lm_sd3_conditioning_of(in[TR_COND]);
    lm_sd3_conditioning *c = NULL;
    lm_status st = lm_sd3_conditioning_new(&c, src->n, err);
    if (st != LM_OK)
        return st;
    st = copy_entries(c, 0, src, err);
    for (size_t i = 0; st == LM_OK && i < c->n; i++) {
        c->entries[i].start_percent = lm_value_as_float(in[TR_START]);
        c->entries[i].end_percent = lm_value_as_float(in[TR_END]);
    }
    return finish(c, st, &out[0], err);
}

const lm_node_def lm_node_conditioning_set_timestep_range = {
    .name = "ConditioningSetTimestepRange",
    .display_name = "ConditioningSetTimestepRange",
    .category = "advanced/conditioning",
    .description = "Limits the conditioning to a part of the sampling, as fractions of the "
                   "schedule (0 = start, 1 = end).",
    .inputs = range_in,
    .n_inputs = TR_COUNT,
    .outputs = cond_out,
    .n_outputs = 1,
    .run = range_run,
};
