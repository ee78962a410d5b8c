/* core/exec_ctx.c — what a running node can ask of the executor: progress, cancellation,
 * directories, the recipe to embed, UI output. Also lm_exec_run_node(), which runs one node
 * with a context of its own (node tests, scripting). */
#include "core/exec_ctx.h"

#include "core/base/alloc.h"

#include <string.h>

static const lm_env empty_env = { 0 };

void lm_ctx__emit(lm_ctx *ctx, lm_event *ev)
{
    if (!ctx->on_event)
        return;
    ev->job_id = ctx->job_id;
    if (!ev->node_id)
        ev->node_id = ctx->node_id;
    if (!ev->node_type && ctx->def)
        ev->node_type = ctx->def->name;
    ctx->on_event(ev, ctx->user);
}

void lm_ctx_progress(lm_ctx *ctx, int step, int steps)
{
    lm_event ev = { .type = LM_EVENT_PROGRESS, .step = step, .steps = steps };
    lm_ctx__emit(ctx, &ev);
}

bool lm_ctx_cancelled(const lm_ctx *ctx)
{
    return ctx->cancel && atomic_load(ctx->cancel);
}

const lm_env *lm_ctx_env(const lm_ctx *ctx)
{
    return ctx->env ? ctx->env : &empty_env;
}

const lm_node_def *lm_ctx_def(const lm_ctx *ctx)
{
    return ctx->def;
}

const char *lm_ctx_node_id(const lm_ctx *ctx)
{
    return ctx->node_id ? ctx->node_id : "";
}

const char *lm_ctx_prompt_json(const lm_ctx *ctx)
{
    return ctx->prompt_json;
}

const char *lm_ctx_extra_json(const lm_ctx *ctx)
{
    return ctx->extra_json;
}

const char *lm_ctx_params_json(const lm_ctx *ctx)
{
    return ctx->params_json;
}

lm_status lm_ctx_set_ui(lm_ctx *ctx, const char *ui_json, lm_error *err)
{
    char *copy = lm_strdup(ui_json);
    if (!copy)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory recording UI output");
    lm_free(ctx->ui_json);
    ctx->ui_json = copy;
    return LM_OK;
}

lm_status lm_exec_run_node(const lm_node_def *def, const lm_env *env, lm_value *const *in,
                           lm_value **out, const lm_run_opts *opts, char **ui_json, lm_error *err)
{
    lm_ctx ctx = {
        .def = def,
        .env = env,
        .node_id = def->name,
        .job_id = opts ? opts->job_id : NULL,
        .extra_json = opts ? opts->extra_json : NULL,
        .on_event = opts ? opts->on_event : NULL,
        .user = opts ? opts->user : NULL,
    };
    if (ui_json)
        *ui_json = NULL;
    memset(out, 0, def->n_outputs * sizeof(*out));
    lm_status st = def->run(&ctx, in, out, err);
    if (st != LM_OK) {
        for (size_t i = 0; i < def->n_outputs; i++) {
            lm_value_unref(out[i]);
            out[i] = NULL;
        }
        lm_error_at_node(err, def->name, def->name, NULL);
    }
    if (ui_json)
        *ui_json = ctx.ui_json;
    else
        lm_free(ctx.ui_json);
    return st;
}
