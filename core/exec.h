/* core/exec.h — the executor: runs a plan's nodes in order with an output cache,
 * progress events and cancellation.
 *
 * One lm_exec keeps its cache across runs, so a repeated run, or the next job of a batch,
 * re-executes only what changed. A node's cache key hashes its type, its literal inputs, the
 * keys of its upstream nodes and its changed() fingerprint; LM_NODE_NOT_CACHEABLE nodes
 * always run. The cache is bounded (bytes, from lm_value_bytes) and evicts least recently
 * used entries that the current run does not need.
 *
 * One event stream serves every consumer (CLI progress, the daemon's WebSocket, tests).
 * Events are delivered on the thread that runs the plan, in order: EXEC_START, then for
 * every plan node in plan order either NODE_CACHED or NODE_START (PROGRESS…) NODE_DONE, and
 * exactly one of EXEC_DONE, NODE_ERROR or INTERRUPTED last. n_cached + n_run = n_nodes on
 * success. A node's outputs are cached only when it is cacheable and so is everything
 * above it (a not-cacheable node makes its dependents re-run too). A run that fails keeps
 * the cache entries of the nodes that finished, so a retry resumes where it stopped.
 *
 * Thread safety: one run at a time per lm_exec; lm_exec_cancel() may be called from any
 * thread (and from a signal handler: it only stores an atomic flag). */
#ifndef LM_CORE_EXEC_H
#define LM_CORE_EXEC_H

#include "core/base/error.h"
#include "core/cache.h"
#include "core/registry.h"
#include "core/validate.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    LM_EVENT_EXEC_START,  /* job_id; n_nodes = plan size */
    LM_EVENT_NODE_CACHED, /* node_id: reused from the cache, or not needed this time because
                             what uses it was cached; ui_json when a cached output node had
                             UI output */
    LM_EVENT_NODE_START,  /* node_id, node_type */
    LM_EVENT_PROGRESS,    /* node_id, step of steps, from inside a long node */
    LM_EVENT_NODE_DONE,   /* node_id, seconds; ui_json when the node reported UI output */
    LM_EVENT_NODE_ERROR,  /* node_id, error (ends the run) */
    LM_EVENT_INTERRUPTED, /* node_id of the node that stopped, or NULL when the run stopped
                             between nodes; error (ends the run) */
    LM_EVENT_EXEC_DONE,   /* success only: seconds for the whole run; n_cached, n_run */
} lm_event_type;

typedef struct {
    lm_event_type type;
    const char *job_id;
    const char *node_id;
    const char *node_type;
    int step, steps;
    double seconds;
    const lm_error *error;
    const char *ui_json; /* e.g. {"images":[{"filename":…,"subfolder":…,"type":"output"}]} */
    size_t n_nodes, n_cached, n_run;
} lm_event;

typedef void (*lm_event_fn)(const lm_event *ev, void *user);

typedef struct {
    size_t cache_bytes; /* 0: 4 GiB */
} lm_exec_opts;

typedef struct lm_exec lm_exec;

lm_status lm_exec_new(lm_exec **out, const lm_exec_opts *opts, lm_error *err);
void lm_exec_free(lm_exec *ex);

typedef struct {
    const char *job_id;     /* shown in events; may be NULL */
    const char *extra_json; /* extra PNG info (ComfyUI's extra_pnginfo), may be NULL */
    lm_event_fn on_event;
    void *user;
} lm_run_opts;

/* The outcome of one run: the declared workflow outputs' values (NULL where a failed run did
 * not get that far) and the UI output of every node that has one, cached ones included.
 * Owned by the caller: lm_run_result_free(). */
typedef struct {
    size_t n_outputs;
    char **output_names;
    lm_value **outputs;
    size_t n_ui;
    char **ui_node_ids;
    char **ui_json;
    size_t n_cached, n_run;
    double seconds;
} lm_run_result;

/* Runs a plan. On failure err names the node (id, type) and result holds what finished.
 * LM_ECANCELLED when interrupted (lm_exec_cancel, or a node returning LM_ECANCELLED); the
 * cancel flag is cleared when the next run starts. result may be NULL if not wanted; opts
 * may be NULL (no events). */
lm_status lm_exec_run(lm_exec *ex, const lm_plan *plan, const lm_env *env, const lm_run_opts *opts,
                      lm_run_result **result, lm_error *err);
void lm_run_result_free(lm_run_result *result);

void lm_exec_cancel(lm_exec *ex); /* thread- and signal-safe */
void lm_exec_clear_cache(lm_exec *ex);
/* lm_cache_drop_if on the executor's cache (entries of earlier runs only). */
size_t lm_exec_drop_cached(lm_exec *ex, lm_cache_pred pred, void *user);
size_t lm_exec_cache_bytes(const lm_exec *ex);

/* Runs one node outside a plan (node tests, scripting): `in` holds def->n_inputs values in
 * descriptor order (NULL only for absent optional inputs), already of the declared types.
 * `out` receives def->n_outputs new references. Events go to opts->on_event (may be NULL);
 * the UI output, if the node set one, is returned in *ui_json (free with lm_free; may be
 * NULL when not wanted). */
lm_status lm_exec_run_node(const lm_node_def *def, const lm_env *env, lm_value *const *in,
                           lm_value **out, const lm_run_opts *opts, char **ui_json, lm_error *err);

/* For node implementations, during run(): */
void lm_ctx_progress(lm_ctx *ctx, int step, int steps);
bool lm_ctx_cancelled(const lm_ctx *ctx);
const lm_env *lm_ctx_env(const lm_ctx *ctx);
const char *lm_ctx_node_id(const lm_ctx *ctx);
const char *lm_ctx_prompt_json(const lm_ctx *ctx); /* the plan's prompt_json */
const char *lm_ctx_extra_json(const lm_ctx *ctx);  /* run opts' extra_json, may be NULL */
const char *lm_ctx_params_json(const lm_ctx *ctx); /* the plan's params_json */
/* Records the node's UI output (copied), sent with NODE_DONE and kept in the result. */
lm_status lm_ctx_set_ui(lm_ctx *ctx, const char *ui_json, lm_error *err);

#endif
