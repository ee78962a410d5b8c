/* tests/exec/test_exec.c — the executor: order, needed nodes only, the cache across runs,
 * not-cacheable and changed() nodes, LRU eviction, errors, cancellation, events, results.
 * Plans come from lm_validate on graphs built with the graph.h builders, and the fixture
 * nodes count their runs (nodes_fixture.h). */
#include "core/base/alloc.h"
#include "core/base/thread.h"
#include "core/exec.h"
#include "core/validate.h"
#include "tests/exec/nodes_fixture.h"
#include "tests/test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static lm_srcloc loc(int line)
{
    return (lm_srcloc){ line, 1 };
}

static lm_graph *new_graph(void)
{
    lm_graph *g = NULL;
    lm_error err;
    CHECK_OK(lm_graph_new(&g, "exec.yaml", LM_FORMAT_LOOM_YAML, &err), &err);
    return g;
}

static void node(lm_graph *g, const char *id, const char *type)
{
    lm_error err;
    CHECK_OK(lm_graph_add_node(g, id, type, loc((int)g->n_nodes + 1), NULL, &err), &err);
}

static void lit_int(lm_graph *g, const char *id, const char *input, int64_t v)
{
    lm_error err;
    CHECK_OK(
        lm_graph_add_literal(g, lm_graph_find_node(g, id), input, lm_value_int(v), loc(1), &err),
        &err);
}

static void link(lm_graph *g, const char *id, const char *input, const char *src)
{
    lm_error err;
    CHECK_OK(lm_graph_add_link(g, lm_graph_find_node(g, id), input, src, NULL, 0, loc(1), &err),
             &err);
}

static void output(lm_graph *g, const char *name, const char *src)
{
    lm_error err;
    CHECK_OK(lm_graph_add_output(g, name, src, NULL, 0, NULL, loc(1), &err), &err);
}

/* c1 (3) + c2 (4) -> add -> sink; add is also the declared output "total". */
static lm_graph *sum_graph(void)
{
    lm_graph *g = new_graph();
    node(g, "c1", "TestConst");
    lit_int(g, "c1", "value", 3);
    node(g, "c2", "TestConst");
    lit_int(g, "c2", "value", 4);
    node(g, "add", "TestAdd");
    link(g, "add", "a", "c1");
    link(g, "add", "b", "c2");
    node(g, "sink", "TestSink");
    link(g, "sink", "value", "add");
    output(g, "total", "add");
    return g;
}

static lm_plan *plan_with(lm_registry *reg, const lm_graph *g, const lm_override *ov, size_t n_ov)
{
    lm_validate_opts opts = { .overrides = ov, .n_overrides = n_ov };
    lm_diag diag;
    lm_diag_init(&diag);
    lm_plan *plan = NULL;
    lm_status st = lm_validate(g, reg, NULL, &opts, &plan, &diag);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "lm_validate", st, diag.count ? &diag.items[0] : NULL);
    lm_diag_fini(&diag);
    return plan;
}

/* ---- events ---------------------------------------------------------------------------- */

typedef struct {
    char log[4096];
    size_t len;
    lm_exec *ex;
    const char *cancel_after; /* node id: cancel when it is done */
    int cancel_at_step;       /* cancel at this progress step (0: never) */
    int n_progress;
    char last_ui[256];
    lm_error last_error;
} recorder;

/* Appends "<what>:<node> " (or "<what> " when node is "") to the log. */
static void note(recorder *r, const char *what, const char *node_id)
{
    if (r->len < sizeof(r->log))
        r->len += (size_t)snprintf(r->log + r->len, sizeof(r->log) - r->len, "%s%s%s ", what,
                                   node_id && !node_id[0] ? "" : ":", node_id ? node_id : "-");
}

static void on_event(const lm_event *ev, void *user)
{
    recorder *r = user;
    switch (ev->type) {
    case LM_EVENT_EXEC_START:
        note(r, "exec_start", "");
        break;
    case LM_EVENT_NODE_CACHED:
        note(r, "cached", ev->node_id);
        break;
    case LM_EVENT_NODE_START:
        note(r, "start", ev->node_id);
        break;
    case LM_EVENT_PROGRESS:
        r->n_progress++;
        break;
    case LM_EVENT_NODE_DONE:
        note(r, "done", ev->node_id);
        break;
    case LM_EVENT_NODE_ERROR:
        note(r, "error", ev->node_id);
        break;
    case LM_EVENT_INTERRUPTED:
        note(r, "interrupted", ev->node_id);
        break;
    case LM_EVENT_EXEC_DONE:
        note(r, "exec_done", "");
        break;
    }
    if (ev->ui_json)
        snprintf(r->last_ui, sizeof(r->last_ui), "%s", ev->ui_json);
    if (ev->error)
        r->last_error = *ev->error;
    if (r->cancel_after && ev->type == LM_EVENT_NODE_DONE &&
        strcmp(ev->node_id, r->cancel_after) == 0)
        lm_exec_cancel(r->ex);
    if (r->cancel_at_step && ev->type == LM_EVENT_PROGRESS && ev->step == r->cancel_at_step)
        lm_exec_cancel(r->ex);
}

typedef struct {
    lm_registry *reg;
    lm_exec *ex;
    recorder rec;
    lm_run_opts opts;
    lm_graph *g;   /* owned, freed by rig_fini (may stay NULL) */
    lm_plan *plan; /* owned, freed by rig_fini (may stay NULL) */
} rig;

static bool rig_init(rig *t, size_t cache_bytes)
{
    memset(t, 0, sizeof(*t));
    t->reg = fx_registry();
    lm_exec_opts eo = { .cache_bytes = cache_bytes };
    lm_error err;
    if (!t->reg || lm_exec_new(&t->ex, &eo, &err) != LM_OK)
        return false;
    t->rec.ex = t->ex;
    t->opts = (lm_run_opts){ .job_id = "job-1", .on_event = on_event, .user = &t->rec };
    return true;
}

/* rig_init, then takes g and plans it without overrides into t->plan; false when any of it
 * fails (rig_fini still frees what was made). */
static bool rig_start(rig *t, size_t cache_bytes, lm_graph *g)
{
    bool ok = rig_init(t, cache_bytes);
    t->g = g;
    if (ok)
        t->plan = plan_with(t->reg, g, NULL, 0);
    return ok && t->plan;
}

static void rig_fini(rig *t)
{
    lm_plan_free(t->plan);
    lm_graph_free(t->g);
    lm_exec_free(t->ex);
    lm_registry_free(t->reg);
}

/* Runs the plan with a fresh event log; returns the status. */
static lm_status run(rig *t, const lm_plan *plan, lm_run_result **result, lm_error *err)
{
    t->rec.len = 0;
    t->rec.log[0] = '\0';
    return lm_exec_run(t->ex, plan, NULL, &t->opts, result, err);
}

/* ---- tests ----------------------------------------------------------------------------- */

void test_exec_exec__runs_in_order_with_events_and_result(void)
{
    rig t;
    REQUIRE(rig_start(&t, 0, sum_graph()));
    lm_run_result *res = NULL;
    lm_error err;
    CHECK_OK(run(&t, t.plan, &res, &err), &err);
    CHECK_STR(t.rec.log, "exec_start start:c1 done:c1 start:c2 done:c2 start:add done:add "
                         "start:sink done:sink exec_done ");
    REQUIRE(res != NULL);
    CHECK_INT(res->n_run, 4);
    CHECK_INT(res->n_cached, 0);
    REQUIRE(res->n_outputs == 1);
    CHECK_STR(res->output_names[0], "total");
    CHECK_INT(lm_value_as_int(res->outputs[0]), 7);
    REQUIRE(res->n_ui == 1);
    CHECK_STR(res->ui_node_ids[0], "sink");
    CHECK_STR(res->ui_json[0], "{\"value\":7}");
    CHECK_STR(t.rec.last_ui, "{\"value\":7}");
    CHECK_INT(fx_sink_last, 7);
    lm_run_result_free(res);
    rig_fini(&t);
}

void test_exec_exec__only_needed_nodes_run(void)
{
    rig t;
    lm_graph *g = sum_graph();
    node(g, "lonely", "TestConst");
    node(g, "side", "TestAdd"); /* not an output and not declared: never runs */
    link(g, "side", "a", "c1");
    REQUIRE(rig_start(&t, 0, g));
    lm_error err;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_INT(fx_runs("TestConst"), 2);
    CHECK_INT(fx_runs("TestAdd"), 1);
    rig_fini(&t);
}

void test_exec_exec__cache_hits_across_runs(void)
{
    rig t;
    REQUIRE(rig_start(&t, 0, sum_graph()));
    lm_error err;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    lm_run_result *res = NULL;
    CHECK_OK(run(&t, t.plan, &res, &err), &err);
    CHECK_STR(t.rec.log, "exec_start cached:c1 cached:c2 cached:add cached:sink exec_done ");
    CHECK_INT(fx_runs("TestConst"), 2);
    CHECK_INT(fx_runs("TestAdd"), 1);
    CHECK_INT(fx_runs("TestSink"), 1);
    REQUIRE(res != NULL);
    CHECK_INT(res->n_cached, 4);
    CHECK_INT(res->n_run, 0);
    CHECK_INT(lm_value_as_int(res->outputs[0]), 7);
    REQUIRE(res->n_ui == 1); /* a cached output node still reports its UI output */
    CHECK_STR(res->ui_json[0], "{\"value\":7}");
    lm_run_result_free(res);
    CHECK(lm_exec_cache_bytes(t.ex) > 0);
    rig_fini(&t);
}

void test_exec_exec__changed_literal_reruns_only_dependents(void)
{
    rig t;
    REQUIRE(rig_start(&t, 0, sum_graph()));
    lm_override ov = { .name = "c2.value", .text = "5" };
    lm_plan *plan2 = plan_with(t.reg, t.g, &ov, 1);
    REQUIRE(plan2 != NULL);
    lm_error err;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_OK(run(&t, plan2, NULL, &err), &err);
    CHECK_STR(t.rec.log, "exec_start cached:c1 start:c2 done:c2 start:add done:add start:sink "
                         "done:sink exec_done ");
    CHECK_INT(fx_runs("TestConst"), 3);
    CHECK_INT(fx_sink_last, 8);
    CHECK_OK(run(&t, t.plan, NULL, &err), &err); /* the first version is still cached */
    CHECK_INT(fx_runs("TestAdd"), 2);
    CHECK_INT(fx_sink_last, 8); /* the sink did not run again */
    lm_plan_free(plan2);
    rig_fini(&t);
}

void test_exec_exec__not_cacheable_nodes_always_run(void)
{
    rig t;
    lm_graph *g = new_graph();
    node(g, "c", "TestConst");
    node(g, "v", "TestVolatile");
    lit_int(g, "v", "value", 100);
    node(g, "add", "TestAdd");
    link(g, "add", "a", "v");
    link(g, "add", "b", "c");
    node(g, "sink", "TestSink");
    link(g, "sink", "value", "add");
    REQUIRE(rig_start(&t, 0, g));
    lm_error err;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_INT(fx_sink_last, 102);
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_STR(t.rec.log, "exec_start cached:c start:v done:v start:add done:add start:sink "
                         "done:sink exec_done ");
    CHECK_INT(fx_runs("TestVolatile"), 2);
    CHECK_INT(fx_runs("TestAdd"), 2);
    CHECK_INT(fx_runs("TestConst"), 1);
    CHECK_INT(fx_sink_last, 103);
    rig_fini(&t);
}

void test_exec_exec__changed_fingerprint_forces_rerun(void)
{
    rig t;
    lm_graph *g = new_graph();
    node(g, "c", "TestConst");
    node(g, "linked", "TestChanged"); /* fingerprint needs the linked value */
    link(g, "linked", "value", "c");
    node(g, "lit", "TestChanged"); /* fingerprint from literals only */
    lit_int(g, "lit", "value", 2);
    node(g, "add", "TestAdd");
    link(g, "add", "a", "linked");
    link(g, "add", "b", "lit");
    node(g, "sink", "TestSink");
    link(g, "sink", "value", "add");
    REQUIRE(rig_start(&t, 0, g));
    lm_error err;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_INT(fx_runs("TestChanged"), 2);
    CHECK_INT(fx_runs("TestSink"), 1);
    fx_fingerprint = 2;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_INT(fx_runs("TestChanged"), 4);
    CHECK_INT(fx_runs("TestSink"), 2);
    CHECK_INT(fx_runs("TestConst"), 1);
    CHECK_INT(fx_sink_last, 3);
    rig_fini(&t);
}

/* blob (STRING of `size` x fill) as the declared output "b". */
static lm_graph *blob_graph(void)
{
    lm_graph *g = new_graph();
    node(g, "blob", "TestBlob");
    lit_int(g, "blob", "size", 1000);
    output(g, "b", "blob");
    return g;
}

static int blob_runs_for_aba(size_t budget)
{
    rig t;
    if (!rig_init(&t, budget))
        return -1;
    t.g = blob_graph();
    lm_override fa = { .name = "blob.fill", .text = "a" },
                fb = { .name = "blob.fill", .text = "b" };
    lm_plan *pa = plan_with(t.reg, t.g, &fa, 1), *pb = plan_with(t.reg, t.g, &fb, 1);
    lm_error err;
    int before = fx_runs("TestBlob");
    for (int i = 0; pa && pb && i < 3; i++) {
        lm_run_result *res = NULL;
        CHECK_OK(run(&t, i == 1 ? pb : pa, &res, &err), &err);
        if (res && res->outputs[0])
            CHECK_INT(lm_value_as_string(res->outputs[0])[0], i == 1 ? 'b' : 'a');
        lm_run_result_free(res);
        CHECK(lm_exec_cache_bytes(t.ex) <= budget);
    }
    int runs = fx_runs("TestBlob") - before;
    lm_plan_free(pa);
    lm_plan_free(pb);
    rig_fini(&t);
    return runs;
}

void test_exec_exec__lru_eviction_under_tiny_budget(void)
{
    CHECK_INT(blob_runs_for_aba(1u << 20), 2); /* room for both: a is reused */
    CHECK_INT(blob_runs_for_aba(1500), 3);     /* room for one: b evicted a */
    CHECK_INT(blob_runs_for_aba(100), 3);      /* room for none: nothing kept */
}

void test_exec_exec__cached_result_keeps_upstream_from_running(void)
{
    /* A budget that keeps only the newest entries: after one run c1 and c2 are evicted,
     * but add and sink are not, so the second run loads nothing. */
    lm_value *probe = lm_value_int(0);
    size_t one = lm_value_bytes(probe);
    lm_value_unref(probe);
    rig t;
    REQUIRE(rig_start(&t, one * 3 / 2, sum_graph()));
    lm_error err;
    lm_run_result *res = NULL;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_INT(lm_exec_cache_bytes(t.ex), one);
    CHECK_OK(run(&t, t.plan, &res, &err), &err);
    CHECK_STR(t.rec.log, "exec_start cached:c1 cached:c2 cached:add cached:sink exec_done ");
    CHECK_INT(fx_runs("TestConst"), 2);
    if (res)
        CHECK_INT(lm_value_as_int(res->outputs[0]), 7);
    lm_run_result_free(res);
    lm_exec_clear_cache(t.ex);
    CHECK_INT(lm_exec_cache_bytes(t.ex), 0);
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_INT(fx_runs("TestConst"), 4);
    rig_fini(&t);
}

void test_exec_exec__identical_nodes_run_once(void)
{
    rig t;
    REQUIRE(rig_init(&t, 0));
    t.g = sum_graph();
    lm_override ov = { .name = "c2.value", .text = "3" }; /* c2 now equals c1 */
    t.plan = plan_with(t.reg, t.g, &ov, 1);
    REQUIRE(t.plan != NULL);
    lm_error err;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_STR(t.rec.log, "exec_start start:c1 done:c1 cached:c2 start:add done:add start:sink "
                         "done:sink exec_done ");
    CHECK_INT(fx_runs("TestConst"), 1);
    CHECK_INT(fx_sink_last, 6);
    rig_fini(&t);
}

void test_exec_exec__error_names_node_and_stops(void)
{
    rig t;
    lm_graph *g = new_graph();
    node(g, "c", "TestConst");
    node(g, "bad", "TestFail");
    link(g, "bad", "value", "c");
    node(g, "sink", "TestSink");
    link(g, "sink", "value", "bad");
    REQUIRE(rig_start(&t, 0, g));
    lm_error err;
    lm_run_result *res = NULL;
    CHECK_INT(run(&t, t.plan, &res, &err), LM_EIO);
    CHECK_STR(t.rec.log, "exec_start start:c done:c start:bad error:bad ");
    CHECK_STR(err.node_id, "bad");
    CHECK_STR(err.node_type, "TestFail");
    CHECK_STR(err.kind, "test_failure");
    CHECK_STR(err.msg, "the fixture failed on purpose");
    CHECK_STR(t.rec.last_error.node_id, "bad");
    char line[600];
    lm_error_format(&err, line, sizeof(line));
    CHECK_STR(line, "node \"bad\" (TestFail): the fixture failed on purpose; do not use "
                    "TestFail.");
    CHECK_INT(fx_runs("TestSink"), 0);
    REQUIRE(res != NULL);
    CHECK_INT(res->n_run, 1);
    lm_run_result_free(res);
    /* A retry reuses what finished before the failure. */
    CHECK_INT(run(&t, t.plan, NULL, &err), LM_EIO);
    CHECK_STR(t.rec.log, "exec_start cached:c start:bad error:bad ");
    CHECK_INT(fx_runs("TestConst"), 1);
    rig_fini(&t);
}

void test_exec_exec__node_returning_nothing_is_an_error(void)
{
    rig t;
    lm_graph *g = new_graph();
    node(g, "b", "TestBroken");
    node(g, "sink", "TestSink");
    link(g, "sink", "value", "b");
    REQUIRE(rig_start(&t, 0, g));
    lm_error err;
    CHECK_INT(run(&t, t.plan, NULL, &err), LM_EINTERNAL);
    CHECK_STR(err.kind, "bad_node_output");
    CHECK_STR(err.node_id, "b");
    CHECK_INT(fx_runs("TestSink"), 0);
    rig_fini(&t);
}

void test_exec_exec__cancel_between_nodes(void)
{
    rig t;
    REQUIRE(rig_start(&t, 0, sum_graph()));
    t.rec.cancel_after = "c2";
    lm_error err;
    CHECK_INT(run(&t, t.plan, NULL, &err), LM_ECANCELLED);
    CHECK_STR(t.rec.log, "exec_start start:c1 done:c1 start:c2 done:c2 interrupted:- ");
    CHECK_STR(err.kind, "interrupted");
    CHECK_INT(fx_runs("TestAdd"), 0);
    /* The flag is cleared by the next run, which reuses the finished nodes. */
    t.rec.cancel_after = NULL;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_STR(t.rec.log, "exec_start cached:c1 cached:c2 start:add done:add start:sink "
                         "done:sink exec_done ");
    rig_fini(&t);
}

static lm_graph *slow_graph(int steps)
{
    lm_graph *g = new_graph();
    node(g, "c", "TestConst");
    node(g, "slow", "TestSlow");
    link(g, "slow", "value", "c");
    lit_int(g, "slow", "steps", steps);
    node(g, "sink", "TestSink");
    link(g, "sink", "value", "slow");
    return g;
}

void test_exec_exec__progress_events(void)
{
    rig t;
    REQUIRE(rig_start(&t, 0, slow_graph(5)));
    lm_error err;
    CHECK_OK(run(&t, t.plan, NULL, &err), &err);
    CHECK_INT(t.rec.n_progress, 5);
    rig_fini(&t);
}

void test_exec_exec__cancel_inside_node_from_progress(void)
{
    rig t;
    REQUIRE(rig_start(&t, 0, slow_graph(1000)));
    t.rec.cancel_at_step = 3;
    lm_error err;
    lm_run_result *res = NULL;
    CHECK_INT(run(&t, t.plan, &res, &err), LM_ECANCELLED);
    CHECK_STR(t.rec.log, "exec_start start:c done:c start:slow interrupted:slow ");
    CHECK_INT(t.rec.n_progress, 3);
    CHECK_STR(err.node_id, "slow");
    CHECK_STR(err.msg, "stopped at step 3");
    CHECK_INT(fx_runs("TestSink"), 0);
    if (res)
        CHECK_INT(res->n_run, 1);
    lm_run_result_free(res);
    rig_fini(&t);
}

static void *cancel_soon(void *arg)
{
    while (!atomic_load(&fx_slow_started)) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    struct timespec ts = { 0, 20000000 };
    nanosleep(&ts, NULL);
    lm_exec_cancel(arg);
    return NULL;
}

void test_exec_exec__cancel_from_another_thread(void)
{
    rig t;
    REQUIRE(rig_start(&t, 0, slow_graph(100000))); /* 100 s if nobody stops it */
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, cancel_soon, t.ex) == 0);
    double t0 = lm_time_now();
    lm_error err;
    CHECK_INT(run(&t, t.plan, NULL, &err), LM_ECANCELLED);
    double secs = lm_time_now() - t0;
    pthread_join(th, NULL);
    CHECK(secs < 5);
    CHECK_STR(err.node_id, "slow");
    CHECK_CONTAINS(t.rec.log, "interrupted:slow");
    CHECK_INT(fx_runs("TestSink"), 0);
    rig_fini(&t);
}

void test_exec_exec__batch_shares_upstream_work(void)
{
    /* c -> slow (expensive) -> add (+ seed) -> sink, run for seeds 1..3. */
    rig t;
    REQUIRE(rig_init(&t, 0));
    lm_graph *g = new_graph();
    node(g, "c", "TestConst");
    lit_int(g, "c", "value", 5);
    node(g, "slow", "TestSlow");
    link(g, "slow", "value", "c");
    node(g, "add", "TestAdd");
    link(g, "add", "a", "slow");
    lm_error err;
    CHECK_OK(lm_graph_add_param(g, "seed", LM_TYPE_INT, lm_value_int(0), NULL, loc(1), NULL, &err),
             &err);
    CHECK_OK(lm_graph_add_param_ref(g, lm_graph_find_node(g, "add"), "b", "seed", loc(1), &err),
             &err);
    node(g, "sink", "TestSink");
    link(g, "sink", "value", "add");
    const char *seeds[] = { "1", "2", "3" };
    for (int i = 0; i < 3; i++) {
        lm_override ov = { .name = "seed", .text = seeds[i] };
        lm_plan *plan = plan_with(t.reg, g, &ov, 1);
        REQUIRE(plan != NULL);
        CHECK_OK(run(&t, plan, NULL, &err), &err);
        CHECK_INT(fx_sink_last, 5 + i + 1);
        lm_plan_free(plan);
    }
    CHECK_INT(fx_runs("TestSlow"), 1);
    CHECK_INT(fx_runs("TestAdd"), 3);
    CHECK_INT(fx_runs("TestSink"), 3);
    lm_graph_free(g);
    rig_fini(&t);
}

void test_exec_exec__runs_without_events_or_result(void)
{
    lm_registry *reg = fx_registry();
    REQUIRE(reg != NULL);
    lm_exec *ex = NULL;
    lm_error err;
    REQUIRE_OK(lm_exec_new(&ex, NULL, &err), &err);
    lm_graph *g = sum_graph();
    lm_plan *plan = plan_with(reg, g, NULL, 0);
    REQUIRE(plan != NULL);
    CHECK_OK(lm_exec_run(ex, plan, NULL, NULL, NULL, NULL), NULL);
    CHECK_INT(fx_sink_last, 7);
    lm_plan_free(plan);
    lm_graph_free(g);
    lm_exec_free(ex);
    lm_registry_free(reg);
}

/* Counts EXEC_START as +1 and each ending event as -1: 0 after a run that kept the rule. */
static void count_terminal(const lm_event *ev, void *user)
{
    int *n = user;
    *n += ev->type == LM_EVENT_EXEC_START;
    *n -= ev->type == LM_EVENT_EXEC_DONE || ev->type == LM_EVENT_NODE_ERROR ||
          ev->type == LM_EVENT_INTERRUPTED;
}

/* Validates and runs sum_graph with the n-th allocation failing; returns the status. */
static lm_status run_failing_at(lm_registry *reg, const lm_graph *g, long n, bool *injected)
{
    lm_diag diag;
    lm_diag_init(&diag);
    lm_plan *plan = NULL;
    lm_exec *ex = NULL;
    lm_run_result *res = NULL;
    lm_error err;
    int terminal = 0;
    lm_run_opts opts = { .on_event = count_terminal, .user = &terminal };
    lm_alloc_fail_after(n);
    lm_status st = lm_validate(g, reg, NULL, NULL, &plan, &diag);
    if (st == LM_OK)
        st = lm_exec_new(&ex, NULL, &err);
    if (st == LM_OK) {
        st = lm_exec_run(ex, plan, NULL, &opts, &res, &err);
        CHECK_INT(terminal, 0);
    }
    *injected = lm_alloc_failures() > 0;
    lm_alloc_fail_after(-1);
    if (st == LM_OK && res)
        CHECK_INT(lm_value_as_int(res->outputs[0]), 7);
    CHECK(st == LM_OK || *injected);
    lm_run_result_free(res);
    lm_exec_free(ex);
    lm_plan_free(plan);
    lm_diag_fini(&diag);
    return st;
}

void test_exec_exec__allocation_failures_are_reported(void)
{
    lm_registry *reg = fx_registry();
    REQUIRE(reg != NULL);
    lm_graph *g = sum_graph();
    long n = 0;
    bool injected = true;
    for (; injected && n < 5000; n++)
        run_failing_at(reg, g, n, &injected);
    CHECK(!injected); /* the walk reached a run with no failure */
    test_note("walked %ld allocation failures", n - 1);
    lm_graph_free(g);
    lm_registry_free(reg);
}
