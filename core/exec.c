/* core/exec.c — the executor: runs a validated plan with the output cache, events and
 * cancellation.
 *
 * A run makes three passes over the plan (which is in topological order):
 *   1. keys, in order: a node's cache key hashes its type, each input (literal by content,
 *      link by the upstream key and output index) and its changed() fingerprint. A node
 *      whose changed() needs linked values gets its key in pass 3, once they exist; so do
 *      the nodes below it. "Volatile" nodes (LM_NODE_NOT_CACHEABLE, literals that cannot be
 *      hashed by content, or anything fed by such a node) get a key unique to the run: they
 *      always run and are never stored.
 *   2. needs, in reverse: roots (output nodes, sources of declared outputs) are needed; a
 *      needed node found in the cache takes its values from there and needs nothing above
 *      it; a needed node that must run needs its sources. So a cached result keeps its
 *      whole upstream from running (or even loading), as in ComfyUI.
 *   3. execute, in order: cached and unneeded nodes are reported NODE_CACHED; the others
 *      gather their inputs, look the cache up once more (an identical node earlier in the
 *      same run may have stored the key meanwhile) and run. Each source counts the
 *      consumers still to run; at zero its values leave the working set (the cache keeps
 *      its own references).
 * Exactly one of EXEC_DONE, NODE_ERROR or INTERRUPTED ends every run that started. */
#include "core/exec.h"

#include "core/base/alloc.h"
#include "core/base/hash.h"
#include "core/base/thread.h"
#include "core/cache.h"
#include "core/exec_ctx.h"

#include <stdatomic.h>
#include <string.h>

#define DEFAULT_CACHE_BYTES ((size_t)4 << 30)
#define KEY_SEED            0x6c6f6f6d6b657931ull

struct lm_exec {
    lm_cache *cache;
    atomic_bool cancel;
    uint64_t n_runs; /* salt for volatile keys */
};

typedef struct {
    uint64_t key;
    bool key_known;
    bool is_volatile;
    bool is_root; /* an output node or the source of a declared output */
    bool keep;    /* its values go into the result: never dropped early */
    bool needed;
    bool hit; /* values taken from the cache in pass 2 */
    bool has_values;
    size_t pending;    /* needed consumers still to run */
    lm_value **values; /* def->n_outputs slots */
    char *ui_json;     /* UI output of a hit, until reported */
} node_state;

typedef struct {
    lm_exec *ex;
    const lm_plan *plan;
    const lm_env *env;
    lm_run_opts opts;
    node_state *ns;
    lm_value **slots; /* every node's output slots, one block */
    lm_value **in;    /* scratch: inputs of the node at hand */
    lm_run_result *res;
    size_t cap_ui;
} run_state;

lm_status lm_exec_new(lm_exec **out, const lm_exec_opts *opts, lm_error *err)
{
    *out = NULL;
    lm_exec *ex = lm_calloc(1, sizeof(*ex));
    if (!ex)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory creating an executor");
    size_t budget = opts && opts->cache_bytes ? opts->cache_bytes : DEFAULT_CACHE_BYTES;
    lm_status st = lm_cache_new(&ex->cache, budget, err);
    if (st != LM_OK) {
        lm_free(ex);
        return st;
    }
    atomic_init(&ex->cancel, false);
    *out = ex;
    return LM_OK;
}

void lm_exec_free(lm_exec *ex)
{
    if (!ex)
        return;
    lm_cache_free(ex->cache);
    lm_free(ex);
}

void lm_exec_cancel(lm_exec *ex)
{
    atomic_store(&ex->cancel, true);
}

void lm_exec_clear_cache(lm_exec *ex)
{
    lm_cache_clear(ex->cache);
}

size_t lm_exec_drop_cached(lm_exec *ex, lm_cache_pred pred, void *user)
{
    return lm_cache_drop_if(ex->cache, pred, user);
}

size_t lm_exec_cache_bytes(const lm_exec *ex)
{
    return lm_cache_bytes(ex->cache);
}

void lm_run_result_free(lm_run_result *result)
{
    if (!result)
        return;
    for (size_t i = 0; i < result->n_outputs; i++) {
        lm_free(result->output_names[i]);
        lm_value_unref(result->outputs[i]);
    }
    for (size_t i = 0; i < result->n_ui; i++) {
        lm_free(result->ui_node_ids[i]);
        lm_free(result->ui_json[i]);
    }
    lm_free(result->output_names);
    lm_free(result->outputs);
    lm_free(result->ui_node_ids);
    lm_free(result->ui_json);
    lm_free(result);
}

static void emit(run_state *rs, lm_event *ev)
{
    if (!rs->opts.on_event)
        return;
    ev->job_id = rs->opts.job_id;
    ev->n_nodes = rs->plan->n_nodes;
    rs->opts.on_event(ev, rs->opts.user);
}

static void emit_node(run_state *rs, lm_event_type type, size_t i, const char *ui_json)
{
    const lm_plan_node *pn = &rs->plan->nodes[i];
    lm_event ev = {
        .type = type, .node_id = pn->id, .node_type = pn->def->name, .ui_json = ui_json
    };
    emit(rs, &ev);
}

static bool cancelled(const run_state *rs)
{
    return atomic_load(&rs->ex->cancel);
}

/* ---- result ---------------------------------------------------------------------------- */

static lm_status oom(lm_error *err)
{
    return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory running the workflow");
}

/* Records a node's UI output; takes ui_json (also on failure). */
static lm_status result_add_ui(run_state *rs, const char *node_id, char *ui_json, lm_error *err)
{
    lm_run_result *res = rs->res;
    if (!ui_json)
        return LM_OK;
    if (res->n_ui == rs->cap_ui) {
        size_t cap = rs->cap_ui ? rs->cap_ui * 2 : 4;
        char **ids = lm_realloc(res->ui_node_ids, cap * sizeof(*ids));
        if (ids)
            res->ui_node_ids = ids;
        char **js = ids ? lm_realloc(res->ui_json, cap * sizeof(*js)) : NULL;
        if (js)
            res->ui_json = js;
        if (!ids || !js) {
            lm_free(ui_json);
            return oom(err);
        }
        rs->cap_ui = cap;
    }
    char *id = lm_strdup(node_id);
    if (!id) {
        lm_free(ui_json);
        return oom(err);
    }
    res->ui_node_ids[res->n_ui] = id;
    res->ui_json[res->n_ui++] = ui_json;
    return LM_OK;
}

static lm_status result_new(run_state *rs, lm_error *err)
{
    const lm_plan *plan = rs->plan;
    lm_run_result *res = lm_calloc(1, sizeof(*res));
    if (!res)
        return oom(err);
    rs->res = res;
    res->output_names = lm_calloc(plan->n_outputs, sizeof(char *));
    res->outputs = lm_calloc(plan->n_outputs, sizeof(lm_value *));
    if (!res->output_names || !res->outputs)
        return oom(err);
    res->n_outputs = plan->n_outputs;
    for (size_t k = 0; k < plan->n_outputs; k++)
        if (!(res->output_names[k] = lm_strdup(plan->outputs[k].name)))
            return oom(err);
    return LM_OK;
}

static void result_collect_outputs(run_state *rs)
{
    for (size_t k = 0; k < rs->plan->n_outputs; k++) {
        const lm_plan_output *po = &rs->plan->outputs[k];
        const node_state *s = &rs->ns[po->node];
        if (s->has_values && !rs->res->outputs[k])
            rs->res->outputs[k] = lm_value_ref(s->values[po->output]);
    }
}

/* ---- run state ------------------------------------------------------------------------- */

static void drop_values(run_state *rs, size_t i)
{
    node_state *s = &rs->ns[i];
    if (!s->has_values)
        return;
    for (size_t k = 0; k < rs->plan->nodes[i].def->n_outputs; k++) {
        lm_value_unref(s->values[k]);
        s->values[k] = NULL;
    }
    s->has_values = false;
}

static void state_fini(run_state *rs)
{
    for (size_t i = 0; rs->ns && i < rs->plan->n_nodes; i++) {
        drop_values(rs, i);
        lm_free(rs->ns[i].ui_json);
    }
    lm_free(rs->ns);
    lm_free(rs->slots);
    lm_free(rs->in);
}

static lm_status state_init(run_state *rs, lm_error *err)
{
    const lm_plan *plan = rs->plan;
    size_t n_slots = 0, max_in = 0;
    for (size_t i = 0; i < plan->n_nodes; i++) {
        n_slots += plan->nodes[i].def->n_outputs;
        max_in = LM_MAX(max_in, plan->nodes[i].def->n_inputs);
    }
    rs->ns = lm_calloc(plan->n_nodes, sizeof(*rs->ns));
    rs->slots = lm_calloc(n_slots, sizeof(*rs->slots));
    rs->in = lm_calloc(max_in, sizeof(*rs->in));
    if (!rs->ns || !rs->slots || !rs->in)
        return oom(err);
    n_slots = 0;
    for (size_t i = 0; i < plan->n_nodes; i++) {
        rs->ns[i].values = rs->slots + n_slots;
        n_slots += plan->nodes[i].def->n_outputs;
        rs->ns[i].is_root = (plan->nodes[i].def->flags & LM_NODE_OUTPUT) != 0;
    }
    for (size_t k = 0; k < plan->n_outputs; k++) {
        rs->ns[plan->outputs[k].node].is_root = true;
        rs->ns[plan->outputs[k].node].keep = true;
    }
    return result_new(rs, err);
}

/* Fills rs->in with node i's inputs: literals, or the values of its sources (NULL where a
 * source has none yet). Returns whether every linked value was there. */
static bool gather_inputs(run_state *rs, size_t i)
{
    const lm_plan_node *pn = &rs->plan->nodes[i];
    bool all = true;
    for (size_t k = 0; k < pn->def->n_inputs; k++) {
        const lm_plan_input *pi = &pn->inputs[k];
        rs->in[k] = pi->literal;
        if (pi->src >= 0) {
            const node_state *src = &rs->ns[pi->src];
            rs->in[k] = src->has_values ? src->values[pi->src_output] : NULL;
            all = all && src->has_values;
        }
    }
    return all;
}

/* ---- cache keys ------------------------------------------------------------------------ */

/* Hashes a literal by content; false for values that have no content hash here (tensors,
 * objects), which makes the node volatile. */
static bool hash_literal(lm_hasher *h, const lm_value *v)
{
    lm_type type = lm_value_type(v);
    lm_hasher_str(h, lm_type_name(type));
    switch (type) {
    case LM_TYPE_INT:
        lm_hasher_u64(h, (uint64_t)lm_value_as_int(v));
        return true;
    case LM_TYPE_FLOAT:
        lm_hasher_f64(h, lm_value_as_float(v));
        return true;
    case LM_TYPE_BOOLEAN:
        lm_hasher_u64(h, lm_value_as_bool(v));
        return true;
    case LM_TYPE_STRING:
        lm_hasher_u64(h, lm_value_string_len(v));
        lm_hasher_bytes(h, lm_value_as_string(v), lm_value_string_len(v));
        return true;
    default:
        return false;
    }
}

static bool has_links(const lm_plan_node *pn)
{
    for (size_t k = 0; k < pn->def->n_inputs; k++)
        if (pn->inputs[k].src >= 0)
            return true;
    return false;
}

/* Computes node i's key when it can: `in` holds its input values, or is NULL when they are
 * not there yet (then a node with changed() and links, or below a node without a key,
 * stays without a key). Fails only when changed() fails. */
static lm_status node_key(run_state *rs, size_t i, lm_value *const *in, lm_error *err)
{
    const lm_plan_node *pn = &rs->plan->nodes[i];
    node_state *s = &rs->ns[i];
    lm_hasher h;
    lm_hasher_init(&h, KEY_SEED);
    lm_hasher_str(&h, pn->def->name);
    bool vol = (pn->def->flags & LM_NODE_NOT_CACHEABLE) != 0;
    for (size_t k = 0; k < pn->def->n_inputs; k++) {
        const lm_plan_input *pi = &pn->inputs[k];
        if (pi->src >= 0) {
            const node_state *src = &rs->ns[pi->src];
            if (!src->key_known)
                return LM_OK;
            lm_hasher_u64(&h, 1);
            lm_hasher_u64(&h, src->key);
            lm_hasher_u64(&h, (uint64_t)pi->src_output);
            vol = vol || src->is_volatile;
        } else if (pi->literal) {
            lm_hasher_u64(&h, 2);
            vol = !hash_literal(&h, pi->literal) || vol;
        } else {
            lm_hasher_u64(&h, 0);
        }
    }
    if (pn->def->changed) {
        if (!in)
            return LM_OK;
        uint64_t fingerprint = 0;
        lm_status st = pn->def->changed(pn->def, rs->env, in, &fingerprint, err);
        if (st != LM_OK)
            return st;
        lm_hasher_u64(&h, 3);
        lm_hasher_u64(&h, fingerprint);
    }
    if (vol)
        lm_hasher_u64(&h, rs->ex->n_runs);
    s->key = lm_hasher_digest(&h);
    s->is_volatile = vol;
    s->key_known = true;
    return LM_OK;
}

static bool cacheable(const node_state *s)
{
    return s->key_known && !s->is_volatile;
}

/* ---- failures ------------------------------------------------------------------------- */

static lm_status interrupted(run_state *rs, const lm_plan_node *pn, lm_error *err)
{
    if (err->code != LM_ECANCELLED)
        lm_errorf(err, LM_ECANCELLED, "interrupted", "the run was interrupted");
    if (pn)
        lm_error_at_node(err, pn->id, pn->def->name, NULL);
    lm_event ev = { .type = LM_EVENT_INTERRUPTED, .error = err };
    if (pn) {
        ev.node_id = pn->id;
        ev.node_type = pn->def->name;
    }
    emit(rs, &ev);
    return LM_ECANCELLED;
}

/* Stamps node i on err and sends NODE_ERROR (or INTERRUPTED); returns the status. */
static lm_status node_failed(run_state *rs, size_t i, lm_status st, lm_error *err)
{
    const lm_plan_node *pn = &rs->plan->nodes[i];
    if (st == LM_ECANCELLED || cancelled(rs))
        return interrupted(rs, pn, err);
    if (err->code == LM_OK && !err->msg[0])
        lm_errorf(err, st, "exception_during_execution", "the node failed (%s)", lm_status_str(st));
    lm_error_at_node(err, pn->id, pn->def->name, NULL);
    lm_event ev = {
        .type = LM_EVENT_NODE_ERROR, .node_id = pn->id, .node_type = pn->def->name, .error = err
    };
    emit(rs, &ev);
    return st;
}

/* ---- passes ---------------------------------------------------------------------------- */

static lm_status pass_keys(run_state *rs, lm_error *err)
{
    for (size_t i = 0; i < rs->plan->n_nodes; i++) {
        const lm_plan_node *pn = &rs->plan->nodes[i];
        bool literal_only = !has_links(pn);
        if (literal_only)
            gather_inputs(rs, i);
        lm_status st = node_key(rs, i, literal_only ? rs->in : NULL, err);
        if (st != LM_OK)
            return node_failed(rs, i, st, err);
    }
    return LM_OK;
}

static void pass_needs(run_state *rs)
{
    for (size_t i = rs->plan->n_nodes; i-- > 0;) {
        const lm_plan_node *pn = &rs->plan->nodes[i];
        node_state *s = &rs->ns[i];
        s->needed = s->is_root || s->pending > 0;
        if (!s->needed)
            continue;
        if (cacheable(s))
            s->hit = s->has_values =
                lm_cache_get(rs->ex->cache, s->key, s->values, pn->def->n_outputs, &s->ui_json);
        if (s->hit)
            continue;
        for (size_t k = 0; k < pn->def->n_inputs; k++)
            if (pn->inputs[k].src >= 0)
                rs->ns[pn->inputs[k].src].pending++;
    }
}

/* One consumer of each of node i's sources is done: drop values nobody needs any more. */
static void release_inputs(run_state *rs, size_t i)
{
    const lm_plan_node *pn = &rs->plan->nodes[i];
    for (size_t k = 0; k < pn->def->n_inputs; k++) {
        int src = pn->inputs[k].src;
        if (src < 0)
            continue;
        node_state *s = &rs->ns[src];
        if (s->pending > 0 && --s->pending == 0 && !s->keep)
            drop_values(rs, (size_t)src);
    }
}

static lm_status check_outputs(const lm_node_def *def, lm_value *const *out, lm_error *err)
{
    for (size_t k = 0; k < def->n_outputs; k++) {
        lm_type want = def->outputs[k].type;
        if (!out[k])
            return lm_errorf(err, LM_EINTERNAL, "bad_node_output",
                             "returned no value for output %zu (%s); this is a bug in the node", k,
                             def->outputs[k].name);
        if (!lm_type_compatible(lm_value_type(out[k]), want))
            return lm_errorf(err, LM_EINTERNAL, "bad_node_output",
                             "returned %s for output %zu (%s), declared %s; this is a bug in "
                             "the node",
                             lm_type_name(lm_value_type(out[k])), k, def->outputs[k].name,
                             lm_type_name(want));
    }
    return LM_OK;
}

/* Runs node i's function on rs->in; on success its values are in the working set. */
static lm_status run_node(run_state *rs, size_t i, lm_error *err)
{
    const lm_plan_node *pn = &rs->plan->nodes[i];
    node_state *s = &rs->ns[i];
    lm_ctx ctx = {
        .def = pn->def,
        .env = rs->env,
        .node_id = pn->id,
        .job_id = rs->opts.job_id,
        .prompt_json = rs->plan->prompt_json,
        .params_json = rs->plan->params_json,
        .extra_json = rs->opts.extra_json,
        .cancel = &rs->ex->cancel,
        .on_event = rs->opts.on_event,
        .user = rs->opts.user,
    };
    emit_node(rs, LM_EVENT_NODE_START, i, NULL);
    double t0 = lm_time_now();
    lm_error_clear(err);
    lm_status st = pn->def->run(&ctx, rs->in, s->values, err);
    if (st == LM_OK)
        st = check_outputs(pn->def, s->values, err);
    s->has_values = true;
    if (st != LM_OK) {
        drop_values(rs, i);
        lm_free(ctx.ui_json);
        return node_failed(rs, i, st, err);
    }
    if (cacheable(s)) {
        lm_error ignored; /* a full cache only costs a re-run later */
        lm_cache_put(rs->ex->cache, s->key, s->values, pn->def->n_outputs, ctx.ui_json, &ignored);
    }
    char *ui = ctx.ui_json; /* the result owns it from here on */
    st = result_add_ui(rs, pn->id, ui, err);
    if (st != LM_OK)
        return node_failed(rs, i, st, err);
    lm_event ev = { .type = LM_EVENT_NODE_DONE,
                    .node_id = pn->id,
                    .node_type = pn->def->name,
                    .seconds = lm_time_now() - t0,
                    .ui_json = ui };
    emit(rs, &ev);
    rs->res->n_run++;
    return LM_OK;
}

/* Takes ui_json (the result keeps it). */
static lm_status report_cached(run_state *rs, size_t i, char *ui_json, lm_error *err)
{
    lm_status st = result_add_ui(rs, rs->plan->nodes[i].id, ui_json, err);
    if (st != LM_OK)
        return node_failed(rs, i, st, err);
    emit_node(rs, LM_EVENT_NODE_CACHED, i, ui_json);
    rs->res->n_cached++;
    return LM_OK;
}

static lm_status exec_node(run_state *rs, size_t i, lm_error *err)
{
    const lm_plan_node *pn = &rs->plan->nodes[i];
    node_state *s = &rs->ns[i];
    char *ui = NULL;
    if (!s->needed)
        return report_cached(rs, i, NULL, err);
    if (s->hit) {
        ui = s->ui_json;
        s->ui_json = NULL;
        return report_cached(rs, i, ui, err);
    }
    gather_inputs(rs, i);
    lm_status st = s->key_known ? LM_OK : node_key(rs, i, rs->in, err);
    if (st != LM_OK)
        return node_failed(rs, i, st, err);
    if (cacheable(s) && lm_cache_get(rs->ex->cache, s->key, s->values, pn->def->n_outputs, &ui)) {
        s->has_values = true;
        st = report_cached(rs, i, ui, err);
    } else {
        st = run_node(rs, i, err);
    }
    if (st != LM_OK)
        return st;
    release_inputs(rs, i);
    if (s->pending == 0 && !s->keep)
        drop_values(rs, i);
    return LM_OK;
}

static lm_status pass_exec(run_state *rs, lm_error *err)
{
    for (size_t i = 0; i < rs->plan->n_nodes; i++) {
        if (cancelled(rs))
            return interrupted(rs, NULL, err);
        lm_status st = exec_node(rs, i, err);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

lm_status lm_exec_run(lm_exec *ex, const lm_plan *plan, const lm_env *env, const lm_run_opts *opts,
                      lm_run_result **result, lm_error *err)
{
    lm_error local;
    err = err ? err : &local;
    lm_error_clear(err);
    if (result)
        *result = NULL;
    run_state rs = { .ex = ex, .plan = plan, .env = env };
    if (opts)
        rs.opts = *opts;
    atomic_store(&ex->cancel, false);
    ex->n_runs++;
    double t0 = lm_time_now();
    lm_status st = state_init(&rs, err);
    if (st != LM_OK) {
        state_fini(&rs);
        lm_run_result_free(rs.res);
        return st;
    }
    lm_cache_begin_run(ex->cache);
    lm_event ev = { .type = LM_EVENT_EXEC_START };
    emit(&rs, &ev);
    st = pass_keys(&rs, err);
    if (st == LM_OK) {
        pass_needs(&rs);
        st = pass_exec(&rs, err);
    }
    result_collect_outputs(&rs);
    rs.res->seconds = lm_time_now() - t0;
    lm_cache_end_run(ex->cache);
    if (st == LM_OK) {
        lm_event done = { .type = LM_EVENT_EXEC_DONE,
                          .seconds = rs.res->seconds,
                          .n_cached = rs.res->n_cached,
                          .n_run = rs.res->n_run };
        emit(&rs, &done);
    }
    state_fini(&rs);
    if (result)
        *result = rs.res;
    else
        lm_run_result_free(rs.res);
    return st;
}
