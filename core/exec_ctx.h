/* core/exec_ctx.h — the execution context handed to a node's run() (semi-private to the
 * executor: exec.c and exec_ctx.c). Nodes see it only through the lm_ctx_* functions in
 * exec.h. */
#ifndef LM_CORE_EXEC_CTX_H
#define LM_CORE_EXEC_CTX_H

#include "core/exec.h"

#include <stdatomic.h>

struct lm_ctx {
    const lm_node_def *def;
    const lm_env *env;
    const char *node_id;
    const char *job_id;
    const char *prompt_json;
    const char *params_json;
    const char *extra_json;
    const atomic_bool *cancel; /* may be NULL: never cancelled */
    lm_event_fn on_event;
    void *user;
    char *ui_json; /* set by lm_ctx_set_ui; owned */
};

/* Sends an event with the ctx's job and node filled in. */
void lm_ctx__emit(lm_ctx *ctx, lm_event *ev);

#endif
