/* tests/exec/test_nodes_fixture.c — test-only node types (see nodes_fixture.h).
 * Scalar nodes compute on INT values so tests can check results; each type's descriptor
 * points `user` at its run counter, so one run function can serve several types. */
#include "core/base/alloc.h"
#include "core/exec.h"
#include "tests/exec/nodes_fixture.h"
#include "tests/test.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t fx_fingerprint = 1;
int fx_slow_step_us = 1000;
_Atomic int fx_slow_started;
int64_t fx_sink_last;

static int n_const, n_add, n_sink, n_show, n_volatile, n_fail, n_slow, n_changed, n_blob, n_image,
    n_latent, n_all, n_broken;

static void count_run(lm_ctx *ctx)
{
    int *counter = lm_ctx_def(ctx)->user;
    (*counter)++;
}

static const lm_output_def int_out[] = { { "INT", LM_TYPE_INT, NULL } };

/* TestConst: value -> value */
static const lm_input_def const_in[] = {
    { "value", LM_TYPE_INT, .i = { .def = 1, .min = 0, .max = 1000 } },
};

static lm_status const_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    count_run(ctx);
    out[0] = lm_value_int(lm_value_as_int(in[0]));
    return out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* TestAdd: a + b */
static const lm_input_def add_in[] = {
    { "a", LM_TYPE_INT, .i = { .def = 0 } },
    { "b", LM_TYPE_INT, .i = { .def = 0 } },
};

static lm_status add_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    count_run(ctx);
    out[0] = lm_value_int(lm_value_as_int(in[0]) + lm_value_as_int(in[1]));
    return out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* TestSink: an output node; records the value and reports it as UI output. */
static const lm_input_def sink_in[] = {
    { "value", LM_TYPE_INT, .flags = LM_INPUT_LINK_ONLY },
    { "label", LM_TYPE_STRING, .flags = LM_INPUT_OPTIONAL },
};

static lm_status sink_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(out);
    count_run(ctx);
    fx_sink_last = lm_value_as_int(in[0]);
    char ui[64];
    snprintf(ui, sizeof(ui), "{\"value\":%lld}", (long long)fx_sink_last);
    return lm_ctx_set_ui(ctx, ui, err);
}

/* TestShow: an output node that also passes its value on. */
static lm_status show_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(err);
    count_run(ctx);
    out[0] = lm_value_ref(in[0]);
    return LM_OK;
}

/* TestVolatile: base + how many times it ran (never cached). */
static const lm_input_def base_in[] = {
    { "value", LM_TYPE_INT, .i = { .def = 0 } },
};

static lm_status volatile_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    count_run(ctx);
    out[0] = lm_value_int(lm_value_as_int(in[0]) + n_volatile);
    return out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* TestFail: always fails. */
static lm_status fail_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(in);
    LM_UNUSED(out);
    count_run(ctx);
    lm_errorf(err, LM_EIO, "test_failure", "the fixture failed on purpose");
    lm_error_hint(err, "do not use TestFail");
    return LM_EIO;
}

/* TestSlow: `steps` steps with progress, polling for cancellation. */
static const lm_input_def slow_in[] = {
    { "value", LM_TYPE_INT, .i = { .def = 0 } },
    { "steps", LM_TYPE_INT, .i = { .def = 5, .min = 1, .max = 100000 } },
};

static lm_status slow_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    count_run(ctx);
    atomic_store(&fx_slow_started, 1);
    int steps = (int)lm_value_as_int(in[1]);
    for (int k = 0; k < steps; k++) {
        if (lm_ctx_cancelled(ctx))
            return lm_errorf(err, LM_ECANCELLED, "interrupted", "stopped at step %d", k);
        struct timespec ts = { 0, (long)fx_slow_step_us * 1000 };
        nanosleep(&ts, NULL);
        lm_ctx_progress(ctx, k + 1, steps);
    }
    out[0] = lm_value_int(lm_value_as_int(in[0]));
    return out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* TestChanged: passes its value on; its fingerprint is fx_fingerprint. */
static lm_status changed_fp(const lm_node_def *def, const lm_env *env, lm_value *const *in,
                            uint64_t *fingerprint, lm_error *err)
{
    LM_UNUSED(def);
    LM_UNUSED(env);
    if (!in[0])
        return lm_errorf(err, LM_EINTERNAL, "test_failure", "changed() got no input value");
    *fingerprint = fx_fingerprint;
    return LM_OK;
}

/* TestBlob: a STRING of `size` copies of the first character of `fill`. */
static const lm_input_def blob_in[] = {
    { "size", LM_TYPE_INT, .i = { .def = 100, .min = 0, .max = 1 << 20 } },
    { "fill", LM_TYPE_STRING, .s_def = "x" },
};
static const lm_output_def blob_out[] = { { "STRING", LM_TYPE_STRING, NULL } };

static lm_status blob_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    count_run(ctx);
    size_t n = (size_t)lm_value_as_int(in[0]);
    char *buf = lm_malloc(n + 1);
    if (!buf)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
    memset(buf, lm_value_as_string(in[1])[0] ? lm_value_as_string(in[1])[0] : 'x', n);
    buf[n] = '\0';
    out[0] = lm_value_string(buf);
    lm_free(buf);
    return out[0] ? LM_OK : lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
}

/* Validation-only types (IMAGE/LATENT producers, TestAll): they refuse to run. */
static lm_status no_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(in);
    LM_UNUSED(out);
    count_run(ctx);
    return lm_errorf(err, LM_EUNSUPPORTED, "not_runnable", "validation-only fixture");
}

/* TestBroken: claims success but returns nothing (an executor must catch it). */
static lm_status broken_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(in);
    LM_UNUSED(out);
    LM_UNUSED(err);
    count_run(ctx);
    return LM_OK;
}

static const lm_output_def image_out[] = { { "IMAGE", LM_TYPE_IMAGE, NULL } };
static const lm_output_def latent_out[] = { { "LATENT", LM_TYPE_LATENT, NULL } };

static lm_status files_fn(const lm_env *env, lm_strlist *out, lm_error *err)
{
    LM_UNUSED(env);
    lm_status st = lm_strlist_push(out, "a.safetensors", err);
    return st == LM_OK ? lm_strlist_push(out, "b.safetensors", err) : st;
}

static const char *const samplers[] = { "euler", "euler_ancestral", "dpmpp_2m", NULL };

/* TestAll: every kind of input. */
static const lm_input_def all_in[] = {
    { .name = "latent", .type = LM_TYPE_LATENT },
    { "image", LM_TYPE_IMAGE, .flags = LM_INPUT_OPTIONAL },
    { "steps", LM_TYPE_INT, .i = { .def = 20, .min = 1, .max = 100 } },
    { "cfg", LM_TYPE_FLOAT, .f = { .def = 7.0, .min = 0.0, .max = 30.0 } },
    { "text", LM_TYPE_STRING, .s_def = "hello" },
    { "flag", LM_TYPE_BOOLEAN, .b_def = true },
    { "sampler", LM_TYPE_STRING, .choices = samplers },
    { "file", LM_TYPE_STRING, .choices_fn = files_fn },
    { "count", LM_TYPE_INT, .flags = LM_INPUT_LINK_ONLY },
};

static lm_status all_check(const lm_node_def *def, const lm_env *env, lm_value *const *in,
                           lm_error *err)
{
    LM_UNUSED(def);
    LM_UNUSED(env);
    const char *text = lm_value_as_string(in[4]);
    if (!text || strcmp(text, "forbidden") != 0)
        return LM_OK;
    lm_errorf(err, LM_EINVAL, "invalid_text", "the text \"forbidden\" is not allowed");
    lm_error_at_node(err, NULL, NULL, "text");
    lm_error_hint(err, "write something else");
    return LM_EINVAL;
}

#define FX_DEF(var, nm, ins, outs, fl, fn, counter, ...)                                           \
    static const lm_node_def var = { .name = nm,                                                   \
                                     .category = "test",                                           \
                                     .inputs = ins,                                                \
                                     .n_inputs = LM_COUNTOF(ins),                                  \
                                     .outputs = outs,                                              \
                                     .n_outputs = LM_COUNTOF(outs),                                \
                                     .flags = fl,                                                  \
                                     .run = fn,                                                    \
                                     .user = &counter,                                             \
                                     __VA_ARGS__ }

FX_DEF(def_const, "TestConst", const_in, int_out, 0, const_run, n_const);
FX_DEF(def_add, "TestAdd", add_in, int_out, 0, add_run, n_add);
FX_DEF(def_show, "TestShow", base_in, int_out, LM_NODE_OUTPUT, show_run, n_show);
FX_DEF(def_volatile, "TestVolatile", base_in, int_out, LM_NODE_NOT_CACHEABLE, volatile_run,
       n_volatile);
FX_DEF(def_fail, "TestFail", base_in, int_out, 0, fail_run, n_fail);
FX_DEF(def_slow, "TestSlow", slow_in, int_out, 0, slow_run, n_slow);
FX_DEF(def_changed, "TestChanged", base_in, int_out, 0, show_run, n_changed, .changed = changed_fp);
FX_DEF(def_blob, "TestBlob", blob_in, blob_out, 0, blob_run, n_blob);
FX_DEF(def_broken, "TestBroken", base_in, int_out, 0, broken_run, n_broken);
FX_DEF(def_all, "TestAll", all_in, latent_out, 0, no_run, n_all, .check = all_check);

static const lm_node_def def_sink = {
    .name = "TestSink",
    .category = "test",
    .inputs = sink_in,
    .n_inputs = 2,
    .flags = LM_NODE_OUTPUT,
    .run = sink_run,
    .user = &n_sink,
};
static const lm_node_def def_image = {
    .name = "TestImage",
    .category = "test",
    .outputs = image_out,
    .n_outputs = 1,
    .run = no_run,
    .user = &n_image,
};
static const lm_node_def def_latent = {
    .name = "TestLatent",
    .category = "test",
    .outputs = latent_out,
    .n_outputs = 1,
    .run = no_run,
    .user = &n_latent,
    .display_name = "Test Latent",
};

static const lm_node_def *const fixture_defs[] = {
    &def_const,   &def_add,  &def_sink,  &def_show,   &def_volatile, &def_fail,   &def_slow,
    &def_changed, &def_blob, &def_image, &def_latent, &def_all,      &def_broken,
};

lm_status fx_register(lm_registry *reg, lm_error *err)
{
    for (size_t i = 0; i < LM_COUNTOF(fixture_defs); i++) {
        lm_status st = lm_registry_add(reg, fixture_defs[i], err);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

lm_registry *fx_registry(void)
{
    lm_registry *reg = NULL;
    lm_error err;
    lm_status st = lm_registry_new(&reg, &err);
    if (st == LM_OK)
        st = fx_register(reg, &err);
    if (st != LM_OK) {
        test__fail_err(__FILE__, __LINE__, "fx_registry", st, &err);
        lm_registry_free(reg);
        return NULL;
    }
    return reg;
}

int fx_runs(const char *name)
{
    for (size_t i = 0; i < LM_COUNTOF(fixture_defs); i++)
        if (strcmp(fixture_defs[i]->name, name) == 0)
            return *(const int *)fixture_defs[i]->user;
    return -1;
}

void test_exec_nodes_fixture__registers(void)
{
    lm_registry *reg = fx_registry();
    REQUIRE(reg != NULL);
    CHECK_INT(lm_registry_count(reg), LM_COUNTOF(fixture_defs));
    CHECK(lm_registry_find(reg, "TestAll") != NULL);
    CHECK_INT(fx_runs("TestConst"), 0);
    CHECK_INT(fx_runs("NoSuchType"), -1);
    lm_registry_free(reg);
}
