/* tests/graph/test_validate.c — lm_validate: every error kind with its place, overrides,
 * defaults, the plan (order, inputs, prompt/params JSON) and the ComfyUI error body.
 * Graphs are built with the graph.h builders and carry line/column places. */
#include "core/base/alloc.h"
#include "core/validate.h"
#include "tests/exec/nodes_fixture.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <sys/stat.h>

static lm_srcloc at(int line, int col)
{
    return (lm_srcloc){ line, col };
}

static lm_graph *new_graph(void)
{
    lm_graph *g = NULL;
    lm_error err;
    CHECK_OK(lm_graph_new(&g, "flow.yaml", LM_FORMAT_LOOM_YAML, &err), &err);
    return g;
}

static void add(lm_graph *g, const char *id, const char *type, int line)
{
    lm_error err;
    CHECK_OK(lm_graph_add_node(g, id, type, at(line, 3), NULL, &err), &err);
}

static void lit(lm_graph *g, const char *id, const char *input, lm_value *v, int line)
{
    lm_error err;
    CHECK_OK(lm_graph_add_literal(g, lm_graph_find_node(g, id), input, v, at(line, 7), &err), &err);
}

static void link_name(lm_graph *g, const char *id, const char *input, const char *src,
                      const char *output, int line)
{
    lm_error err;
    CHECK_OK(
        lm_graph_add_link(g, lm_graph_find_node(g, id), input, src, output, -1, at(line, 7), &err),
        &err);
}

static void link_index(lm_graph *g, const char *id, const char *input, const char *src, int index,
                       int line)
{
    lm_error err;
    CHECK_OK(
        lm_graph_add_link(g, lm_graph_find_node(g, id), input, src, NULL, index, at(line, 7), &err),
        &err);
}

static void param_ref(lm_graph *g, const char *id, const char *input, const char *param, int line)
{
    lm_error err;
    CHECK_OK(lm_graph_add_param_ref(g, lm_graph_find_node(g, id), input, param, at(line, 7), &err),
             &err);
}

/* c1 (3) and c2 (4) feed add, which feeds sink: the smallest valid graph. */
static lm_graph *sum_graph(void)
{
    lm_graph *g = new_graph();
    add(g, "c1", "TestConst", 1);
    lit(g, "c1", "value", lm_value_int(3), 2);
    add(g, "c2", "TestConst", 3);
    lit(g, "c2", "value", lm_value_int(4), 4);
    add(g, "add", "TestAdd", 5);
    link_name(g, "add", "a", "c1", "INT", 6);
    link_index(g, "add", "b", "c2", 0, 7);
    add(g, "sink", "TestSink", 8);
    link_name(g, "sink", "value", "add", "INT", 9);
    return g;
}

typedef struct {
    lm_registry *reg;
    lm_diag diag;
    lm_plan *plan;
    lm_status st;
} run_v;

static run_v validate(lm_graph *g, const lm_validate_opts *opts)
{
    run_v r = { .reg = fx_registry() };
    lm_diag_init(&r.diag);
    r.st = r.reg ? lm_validate(g, r.reg, NULL, opts, &r.plan, &r.diag) : LM_EINTERNAL;
    return r;
}

static void run_v_fini(run_v *r, lm_graph *g)
{
    for (size_t i = 0; i < r->diag.count; i++) {
        char line[1200];
        lm_error_format(&r->diag.items[i], line, sizeof(line));
        test_note("diag: [%s] %s", r->diag.items[i].kind, line);
    }
    lm_plan_free(r->plan);
    lm_diag_fini(&r->diag);
    lm_registry_free(r->reg);
    lm_graph_free(g);
}

/* The first diag entry of this kind (and node, when given). */
static const lm_error *find(const run_v *r, const char *kind, const char *node_id)
{
    for (size_t i = 0; i < r->diag.count; i++) {
        const lm_error *e = &r->diag.items[i];
        if (strcmp(e->kind, kind) == 0 && (!node_id || strcmp(e->node_id, node_id) == 0))
            return e;
    }
    test__fail(__FILE__, __LINE__, "no \"%s\" error for node %s", kind, node_id ? node_id : "-");
    return NULL;
}

static size_t count_kind(const run_v *r, const char *kind)
{
    size_t n = 0;
    for (size_t i = 0; i < r->diag.count; i++)
        n += strcmp(r->diag.items[i].kind, kind) == 0;
    return n;
}

static void check_place(const lm_error *e, const char *node_id, const char *node_type,
                        const char *input, int line)
{
    if (!e)
        return;
    CHECK_STR(e->node_id, node_id);
    CHECK_STR(e->node_type, node_type);
    CHECK_STR(e->input, input);
    CHECK_INT(e->line, line);
    if (line > 0)
        CHECK_STR(e->file, "flow.yaml");
}

static int plan_find(const lm_plan *plan, const char *id)
{
    for (size_t i = 0; i < plan->n_nodes; i++)
        if (strcmp(plan->nodes[i].id, id) == 0)
            return (int)i;
    return -1;
}

/* ---- plans ----------------------------------------------------------------------------- */

void test_graph_validate__plan_of_valid_graph(void)
{
    lm_graph *g = sum_graph();
    run_v r = validate(g, NULL);
    CHECK_OK(r.st, NULL);
    CHECK_INT(r.diag.count, 0);
    REQUIRE(r.plan != NULL);
    CHECK_INT(r.plan->n_nodes, 4);
    int add_i = plan_find(r.plan, "add"), c1 = plan_find(r.plan, "c1");
    int c2 = plan_find(r.plan, "c2");
    REQUIRE(add_i >= 0 && c1 >= 0 && c2 >= 0);
    const lm_plan_node *pn = &r.plan->nodes[add_i];
    CHECK_STR(pn->def->name, "TestAdd");
    CHECK_INT(pn->inputs[0].src, c1);
    CHECK_INT(pn->inputs[0].src_output, 0);
    CHECK_INT(pn->inputs[1].src, c2);
    CHECK(pn->inputs[0].literal == NULL);
    CHECK_INT(lm_value_as_int(r.plan->nodes[c1].inputs[0].literal), 3);
    CHECK_INT(r.plan->nodes[c1].inputs[0].src, -1);
    CHECK_STR(r.plan->file, "flow.yaml");
    run_v_fini(&r, g);
}

void test_graph_validate__topological_order_is_stable(void)
{
    /* Written consumers first: the order must put sources first and keep independent nodes
     * in their order of appearance (c2 before c1, as written). */
    lm_graph *g = new_graph();
    add(g, "sink", "TestSink", 1);
    link_name(g, "sink", "value", "add", "INT", 2);
    add(g, "add", "TestAdd", 3);
    link_name(g, "add", "a", "c1", "INT", 4);
    link_name(g, "add", "b", "c2", "INT", 5);
    add(g, "c2", "TestConst", 6);
    add(g, "c1", "TestConst", 7);
    run_v r = validate(g, NULL);
    CHECK_OK(r.st, NULL);
    REQUIRE(r.plan && r.plan->n_nodes == 4);
    CHECK_STR(r.plan->nodes[0].id, "c2");
    CHECK_STR(r.plan->nodes[1].id, "c1");
    CHECK_STR(r.plan->nodes[2].id, "add");
    CHECK_STR(r.plan->nodes[3].id, "sink");
    run_v_fini(&r, g);
}

void test_graph_validate__only_needed_nodes_are_planned(void)
{
    lm_graph *g = sum_graph();
    add(g, "lonely", "TestConst", 20);
    run_v r = validate(g, NULL);
    CHECK_OK(r.st, NULL);
    REQUIRE(r.plan != NULL);
    CHECK_INT(r.plan->n_nodes, 4);
    CHECK_INT(plan_find(r.plan, "lonely"), -1);
    run_v_fini(&r, g);
}

void test_graph_validate__defaults_filled_and_converted(void)
{
    lm_graph *g = new_graph();
    add(g, "blob", "TestBlob", 1);
    add(g, "show", "TestShow", 2);
    link_name(g, "show", "value", "c", "INT", 3);
    add(g, "c", "TestConst", 4);
    lit(g, "c", "value", lm_value_float(5.0), 5); /* integral FLOAT -> INT */
    lm_error err;
    CHECK_OK(lm_graph_add_output(g, "text", "blob", "STRING", -1, NULL, at(9, 1), &err), &err);
    run_v r = validate(g, NULL);
    CHECK_OK(r.st, NULL);
    REQUIRE(r.plan != NULL);
    int b = plan_find(r.plan, "blob"), c = plan_find(r.plan, "c");
    REQUIRE(b >= 0 && c >= 0);
    CHECK_INT(lm_value_as_int(r.plan->nodes[b].inputs[0].literal), 100);
    CHECK_STR(lm_value_as_string(r.plan->nodes[b].inputs[1].literal), "x");
    CHECK_INT(lm_value_type(r.plan->nodes[c].inputs[0].literal), LM_TYPE_INT);
    CHECK_INT(lm_value_as_int(r.plan->nodes[c].inputs[0].literal), 5);
    REQUIRE(r.plan->n_outputs == 1);
    CHECK_STR(r.plan->outputs[0].name, "text");
    CHECK_INT(r.plan->outputs[0].node, b);
    CHECK_INT(r.plan->outputs[0].output, 0);
    run_v_fini(&r, g);
}

/* TestLatent -> TestAll (every input kind) as a declared output; `count` from TestConst. */
static lm_graph *all_graph(void)
{
    lm_graph *g = new_graph();
    add(g, "lat", "TestLatent", 1);
    add(g, "n", "TestConst", 2);
    add(g, "all", "TestAll", 3);
    link_name(g, "all", "latent", "lat", "LATENT", 4);
    link_name(g, "all", "count", "n", "INT", 5);
    lit(g, "all", "file", lm_value_string("b.safetensors"), 6);
    lm_error err;
    CHECK_OK(lm_graph_add_output(g, "out", "all", NULL, 0, NULL, at(12, 1), &err), &err);
    return g;
}

void test_graph_validate__int_to_float_and_defaults_of_every_kind(void)
{
    lm_graph *g = all_graph();
    lit(g, "all", "cfg", lm_value_int(8), 7);
    run_v r = validate(g, NULL);
    CHECK_OK(r.st, NULL);
    REQUIRE(r.plan != NULL);
    const lm_plan_node *pn = &r.plan->nodes[plan_find(r.plan, "all")];
    CHECK(pn->inputs[1].literal == NULL && pn->inputs[1].src == -1); /* optional image */
    CHECK_INT(lm_value_as_int(pn->inputs[2].literal), 20);
    CHECK_INT(lm_value_type(pn->inputs[3].literal), LM_TYPE_FLOAT);
    CHECK_NEAR(lm_value_as_float(pn->inputs[3].literal), 8.0, 0);
    CHECK_STR(lm_value_as_string(pn->inputs[4].literal), "hello");
    CHECK(lm_value_as_bool(pn->inputs[5].literal));
    CHECK_STR(lm_value_as_string(pn->inputs[6].literal), "euler");
    CHECK_STR(lm_value_as_string(pn->inputs[7].literal), "b.safetensors");
    run_v_fini(&r, g);
}

void test_graph_validate__prompt_json_round_trips(void)
{
    lm_graph *g = all_graph();
    lit(g, "all", "cfg", lm_value_float(5.45), 7);
    lit(g, "n", "value", lm_value_int(7), 8);
    lm_graph_find_node(g, "all")->title = lm_strdup("My sampler");
    add(g, "big", "TestAdd", 9);
    lit(g, "big", "a", lm_value_int(9007199254740993LL), 10);
    add(g, "sink", "TestSink", 11);
    link_name(g, "sink", "value", "big", "INT", 12);
    run_v r = validate(g, NULL);
    CHECK_OK(r.st, NULL);
    REQUIRE(r.plan && r.plan->prompt_json);
    test_note("prompt: %s", r.plan->prompt_json);
    CHECK_CONTAINS(r.plan->prompt_json, "9007199254740993");
    CHECK_CONTAINS(r.plan->prompt_json, "5.45");
    cJSON *root = cJSON_Parse(r.plan->prompt_json);
    REQUIRE(root != NULL);
    CHECK_INT(cJSON_GetArraySize(root), 5);
    cJSON *all = cJSON_GetObjectItem(root, "all");
    cJSON *in = cJSON_GetObjectItem(all, "inputs");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(all, "class_type")), "TestAll");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(all, "_meta"), "title")),
              "My sampler");
    cJSON *latent = cJSON_GetObjectItem(in, "latent");
    CHECK(cJSON_IsArray(latent) && cJSON_GetArraySize(latent) == 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(latent, 0)), "lat");
    CHECK_INT(cJSON_GetArrayItem(latent, 1)->valueint, 0);
    CHECK_INT(cJSON_GetObjectItem(in, "steps")->valueint, 20); /* default written out */
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(in, "sampler")), "euler");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(in, "flag")));
    CHECK(cJSON_GetObjectItem(in, "image") == NULL); /* absent optional */
    CHECK_NEAR(cJSON_GetObjectItem(in, "cfg")->valuedouble, 5.45, 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(root, "lat"), "_meta"), "title")),
              "Test Latent");
    cJSON_Delete(root);
    run_v_fini(&r, g);
}

/* ---- error kinds and places ------------------------------------------------------------ */

void test_graph_validate__unknown_node_type_with_suggestion(void)
{
    lm_graph *g = sum_graph();
    lm_free(lm_graph_find_node(g, "add")->type);
    lm_graph_find_node(g, "add")->type = lm_strdup("TestAd");
    run_v r = validate(g, NULL);
    CHECK_INT(r.st, LM_ENOTFOUND);
    CHECK(r.plan == NULL);
    const lm_error *e = find(&r, "unknown_node_type", "add");
    check_place(e, "add", "TestAd", "", 5);
    if (e) {
        CHECK_CONTAINS(e->msg, "TestAd");
        CHECK_CONTAINS(e->hint, "did you mean TestAdd");
        CHECK_INT(e->col, 3);
    }
    run_v_fini(&r, g);
}

void test_graph_validate__required_input_missing(void)
{
    lm_graph *g = new_graph();
    add(g, "n", "TestConst", 1);
    add(g, "all", "TestAll", 3);
    link_name(g, "all", "count", "n", "INT", 5);
    lit(g, "all", "file", lm_value_string("a.safetensors"), 6);
    lm_error err;
    CHECK_OK(lm_graph_add_output(g, "out", "all", NULL, 0, NULL, at(12, 1), &err), &err);
    run_v r = validate(g, NULL);
    CHECK_INT(r.st, LM_EINVAL);
    CHECK_INT(r.diag.count, 1);
    const lm_error *e = find(&r, "required_input_missing", "all");
    check_place(e, "all", "TestAll", "latent", 3); /* absent: the node's place */
    if (e) {
        CHECK_STR(e->hint, "link it to an output of type LATENT");
        CHECK_INT(e->col, 3);
    }
    run_v_fini(&r, g);
}

void test_graph_validate__missing_required_scalars(void)
{
    lm_graph *g = new_graph();
    add(g, "lat", "TestLatent", 1);
    add(g, "all", "TestAll", 2);
    link_name(g, "all", "latent", "lat", "LATENT", 3);
    lm_error err;
    CHECK_OK(lm_graph_add_output(g, "out", "all", "LATENT", -1, NULL, at(9, 1), &err), &err);
    run_v r = validate(g, NULL);
    CHECK_INT(count_kind(&r, "required_input_missing"), 2);
    const lm_error *e = NULL;
    for (size_t i = 0; i < r.diag.count; i++)
        if (strcmp(r.diag.items[i].input, "count") == 0)
            e = &r.diag.items[i];
    REQUIRE(e != NULL);
    CHECK_STR(e->kind, "required_input_missing");
    CHECK_CONTAINS(e->hint, "output of type INT");
    CHECK_INT(e->line, 2); /* absent input: the node's place */
    run_v_fini(&r, g);
}

void test_graph_validate__unknown_input(void)
{
    lm_graph *g = sum_graph();
    lit(g, "c1", "valeu", lm_value_int(1), 11);
    run_v r = validate(g, NULL);
    const lm_error *e = find(&r, "unknown_input", "c1");
    check_place(e, "c1", "TestConst", "valeu", 11);
    if (e) {
        CHECK_CONTAINS(e->msg, "value");
        CHECK_CONTAINS(e->hint, "did you mean value");
    }
    run_v_fini(&r, g);
}

/* ComfyUI ignores inputs a node does not declare (old exports carry LoadImage's "choose
 * file to upload" widget), so a ComfyUI-format graph validates with one; --strict reports
 * it, and Loom's own formats always do (test above). */
void test_graph_validate__comfy_format_ignores_undeclared_inputs(void)
{
    lm_graph *g = sum_graph();
    g->format = LM_FORMAT_COMFY_API;
    lit(g, "c1", "choose file to upload", lm_value_string("image"), 11);
    run_v r = validate(g, NULL);
    CHECK_INT(r.st, LM_OK);
    CHECK_INT(r.diag.count, 0);
    run_v_fini(&r, g);
    g = sum_graph();
    g->format = LM_FORMAT_COMFY_API;
    lit(g, "c1", "choose file to upload", lm_value_string("image"), 11);
    lm_validate_opts strict = { .strict = true };
    r = validate(g, &strict);
    check_place(find(&r, "unknown_input", "c1"), "c1", "TestConst", "choose file to upload", 11);
    run_v_fini(&r, g);
}

void test_graph_validate__invalid_links(void)
{
    lm_graph *g = new_graph();
    add(g, "c", "TestConst", 1);
    add(g, "add", "TestAdd", 2);
    link_name(g, "add", "a", "nowhere", "INT", 3);
    link_name(g, "add", "b", "c", "INTT", 4);
    add(g, "add2", "TestAdd", 5);
    link_index(g, "add2", "a", "c", 3, 6);
    link_name(g, "add2", "b", "add", "INT", 7);
    add(g, "sink", "TestSink", 8);
    link_name(g, "sink", "value", "add2", "INT", 9);
    run_v r = validate(g, NULL);
    CHECK_INT(count_kind(&r, "invalid_link"), 3);
    const lm_error *e = find(&r, "invalid_link", "add");
    check_place(e, "add", "TestAdd", "a", 3);
    if (e)
        CHECK_CONTAINS(e->msg, "\"nowhere\"");
    for (size_t i = 0; i < r.diag.count; i++) {
        const lm_error *x = &r.diag.items[i];
        if (strcmp(x->input, "b") == 0 && strcmp(x->node_id, "add") == 0) {
            CHECK_INT(x->line, 4);
            CHECK_CONTAINS(x->msg, "no output \"INTT\"");
            CHECK_CONTAINS(x->hint, "c.INT");
        }
    }
    e = find(&r, "invalid_link", "add2");
    check_place(e, "add2", "TestAdd", "a", 6);
    if (e)
        CHECK_CONTAINS(e->msg, "no output 3");
    run_v_fini(&r, g);
}

void test_graph_validate__return_type_mismatch(void)
{
    lm_graph *g = all_graph();
    add(g, "img", "TestImage", 10);
    lm_graph_input *in = lm_graph_node_input(lm_graph_find_node(g, "all"), "latent");
    lm_free(in->link_node);
    in->link_node = lm_strdup("img");
    lm_free(in->link_output);
    in->link_output = lm_strdup("IMAGE");
    run_v r = validate(g, NULL);
    const lm_error *e = find(&r, "return_type_mismatch", "all");
    check_place(e, "all", "TestAll", "latent", 4);
    if (e) {
        CHECK_CONTAINS(e->msg, "IMAGE");
        CHECK_CONTAINS(e->msg, "LATENT");
    }
    CHECK_INT(r.st, LM_ETYPE);
    run_v_fini(&r, g);
}

void test_graph_validate__invalid_input_type(void)
{
    lm_graph *g = all_graph();
    lit(g, "all", "steps", lm_value_float(2.5), 7);
    lit(g, "all", "text", lm_value_int(3), 8);
    lit(g, "all", "image", lm_value_string("pic.png"), 9);
    run_v r = validate(g, NULL);
    CHECK_INT(count_kind(&r, "invalid_input_type"), 3);
    for (size_t i = 0; i < r.diag.count; i++) {
        const lm_error *e = &r.diag.items[i];
        CHECK_STR(e->node_id, "all");
        if (strcmp(e->input, "steps") == 0) {
            CHECK_INT(e->line, 7);
            CHECK_CONTAINS(e->msg, "2.5");
            CHECK_CONTAINS(e->msg, "INT");
        } else if (strcmp(e->input, "image") == 0) {
            CHECK_CONTAINS(e->msg, "link from an output of type IMAGE");
        }
    }
    run_v_fini(&r, g);
}

void test_graph_validate__values_out_of_range(void)
{
    lm_graph *g = all_graph();
    lit(g, "all", "steps", lm_value_int(0), 7);
    lit(g, "all", "cfg", lm_value_float(31.5), 8);
    run_v r = validate(g, NULL);
    CHECK_INT(r.st, LM_ERANGE);
    const lm_error *e = find(&r, "value_smaller_than_min", "all");
    check_place(e, "all", "TestAll", "steps", 7);
    if (e) {
        CHECK_STR(e->msg, "0 is below the minimum 1");
        CHECK_STR(e->hint, "set steps to 1 or more");
        char line[600];
        lm_error_format(e, line, sizeof(line));
        CHECK_STR(line, "flow.yaml:7:7: node \"all\" (TestAll) input \"steps\": 0 is below the "
                        "minimum 1; set steps to 1 or more.");
    }
    e = find(&r, "value_bigger_than_max", "all");
    check_place(e, "all", "TestAll", "cfg", 8);
    if (e) {
        CHECK_CONTAINS(e->msg, "31.5");
        CHECK_CONTAINS(e->msg, "30");
        CHECK_STR(e->hint, "set cfg to 30 or less");
    }
    run_v_fini(&r, g);
}

void test_graph_validate__value_not_in_list(void)
{
    lm_graph *g = all_graph();
    lit(g, "all", "sampler", lm_value_string("eulr"), 7);
    lm_graph_input *f = lm_graph_node_input(lm_graph_find_node(g, "all"), "file");
    lm_value_unref(f->literal);
    f->literal = lm_value_string("c.safetensors"); /* dynamic choices: a, b */
    run_v r = validate(g, NULL);
    CHECK_INT(count_kind(&r, "value_not_in_list"), 2);
    for (size_t i = 0; i < r.diag.count; i++) {
        const lm_error *e = &r.diag.items[i];
        if (strcmp(e->input, "sampler") == 0) {
            CHECK_INT(e->line, 7);
            CHECK_CONTAINS(e->msg, "euler, euler_ancestral, dpmpp_2m");
            CHECK_CONTAINS(e->hint, "did you mean \"euler\"");
        } else {
            CHECK_STR(e->input, "file");
            CHECK_INT(e->line, 6);
            CHECK_CONTAINS(e->msg, "a.safetensors, b.safetensors");
        }
    }
    run_v_fini(&r, g);
}

void test_graph_validate__node_check_passes_through(void)
{
    lm_graph *g = all_graph();
    lit(g, "all", "text", lm_value_string("forbidden"), 8);
    run_v r = validate(g, NULL);
    const lm_error *e = find(&r, "invalid_text", "all");
    check_place(e, "all", "TestAll", "text", 8);
    if (e)
        CHECK_STR(e->hint, "write something else");
    CHECK(r.plan == NULL);
    run_v_fini(&r, g);
}

void test_graph_validate__cycle_names_nodes_in_order(void)
{
    lm_graph *g = new_graph();
    add(g, "a", "TestAdd", 1);
    link_name(g, "a", "a", "c", "INT", 2);
    add(g, "b", "TestAdd", 3);
    link_name(g, "b", "a", "a", "INT", 4);
    add(g, "c", "TestAdd", 5);
    link_name(g, "c", "a", "b", "INT", 6);
    add(g, "sink", "TestSink", 7);
    link_name(g, "sink", "value", "c", "INT", 8);
    run_v r = validate(g, NULL);
    CHECK_INT(count_kind(&r, "cycle"), 1);
    const lm_error *e = find(&r, "cycle", NULL);
    if (e) {
        CHECK_CONTAINS(e->msg, "\"a\" -> \"b\" -> \"c\" -> \"a\"");
        check_place(e, "a", "TestAdd", "a", 2);
    }
    CHECK(r.plan == NULL);
    run_v_fini(&r, g);
}

void test_graph_validate__self_loop_is_a_cycle(void)
{
    lm_graph *g = new_graph();
    add(g, "s", "TestShow", 1);
    link_name(g, "s", "value", "s", "INT", 2);
    run_v r = validate(g, NULL);
    const lm_error *e = find(&r, "cycle", "s");
    if (e)
        CHECK_CONTAINS(e->msg, "\"s\" -> \"s\"");
    run_v_fini(&r, g);
}

void test_graph_validate__no_outputs(void)
{
    lm_graph *g = new_graph();
    add(g, "c", "TestConst", 1);
    run_v r = validate(g, NULL);
    const lm_error *e = find(&r, "prompt_no_outputs", NULL);
    if (e) {
        CHECK_STR(e->node_id, "");
        CHECK_STR(e->file, "flow.yaml");
        CHECK_CONTAINS(e->msg, "no output node (e.g. SaveImage)");
    }
    CHECK(r.plan == NULL);
    run_v_fini(&r, g);
}

void test_graph_validate__many_errors_at_once(void)
{
    lm_graph *g = all_graph();
    lit(g, "all", "steps", lm_value_int(1000), 7);
    lit(g, "all", "sampler", lm_value_string("nope"), 8);
    lit(g, "all", "bogus", lm_value_int(1), 9);
    add(g, "sink", "TestSink", 10);
    link_name(g, "sink", "value", "missing", "INT", 11);
    add(g, "typo", "TestSinkk", 12); /* unknown type, but unused: not reported */
    run_v r = validate(g, NULL);
    CHECK_INT(r.diag.count, 4);
    CHECK_INT(count_kind(&r, "value_bigger_than_max"), 1);
    CHECK_INT(count_kind(&r, "value_not_in_list"), 1);
    CHECK_INT(count_kind(&r, "unknown_input"), 1);
    CHECK_INT(count_kind(&r, "invalid_link"), 1);
    CHECK(r.plan == NULL);
    run_v_fini(&r, g);
}

void test_graph_validate__unused_invalid_node_ignored_unless_strict(void)
{
    lm_graph *g = sum_graph();
    add(g, "junk", "NoSuchNode", 20);
    add(g, "bad", "TestConst", 21);
    lit(g, "bad", "value", lm_value_int(-5), 22);
    run_v r = validate(g, NULL);
    CHECK_OK(r.st, NULL);
    CHECK_INT(r.diag.count, 0);
    CHECK(r.plan != NULL);
    run_v_fini(&r, g);

    g = sum_graph();
    add(g, "junk", "NoSuchNode", 20);
    add(g, "bad", "TestConst", 21);
    lit(g, "bad", "value", lm_value_int(-5), 22);
    lm_validate_opts opts = { .strict = true };
    r = validate(g, &opts);
    CHECK(r.st != LM_OK);
    CHECK_INT(r.diag.count, 2);
    check_place(find(&r, "unknown_node_type", "junk"), "junk", "NoSuchNode", "", 20);
    check_place(find(&r, "value_smaller_than_min", "bad"), "bad", "TestConst", "value", 22);
    run_v_fini(&r, g);
}

void test_graph_validate__failing_output_node_fails_everything(void)
{
    /* Two independent outputs; one is bad: no plan at all (ComfyUI would run the other). */
    lm_graph *g = sum_graph();
    add(g, "sink2", "TestSink", 20);
    link_name(g, "sink2", "value", "c9", "INT", 21);
    run_v r = validate(g, NULL);
    CHECK(r.st != LM_OK);
    CHECK(r.plan == NULL);
    check_place(find(&r, "invalid_link", "sink2"), "sink2", "TestSink", "value", 21);
    run_v_fini(&r, g);
}

void test_graph_validate__bad_declared_output(void)
{
    lm_graph *g = sum_graph();
    lm_error err;
    CHECK_OK(lm_graph_add_output(g, "total", "add", "TOTAL", -1, NULL, at(30, 3), &err), &err);
    CHECK_OK(lm_graph_add_output(g, "ghost", "nope", NULL, 0, NULL, at(31, 3), &err), &err);
    run_v r = validate(g, NULL);
    CHECK_INT(count_kind(&r, "invalid_link"), 2);
    for (size_t i = 0; i < r.diag.count; i++) {
        const lm_error *e = &r.diag.items[i];
        CHECK_STR(e->node_id, "");
        CHECK(strcmp(e->input, "total") == 0 || strcmp(e->input, "ghost") == 0);
        CHECK_INT(e->line, strcmp(e->input, "total") == 0 ? 30 : 31);
    }
    run_v_fini(&r, g);
}

/* ---- parameters and overrides ---------------------------------------------------------- */

static lm_graph *param_graph(void)
{
    lm_graph *g = sum_graph();
    lm_graph_input *in = lm_graph_node_input(lm_graph_find_node(g, "c1"), "value");
    lm_value_unref(in->literal);
    in->literal = NULL;
    in->kind = LM_GRAPH_INPUT_PARAM;
    in->param = lm_strdup("first");
    lm_error err;
    lm_graph_param *p = NULL;
    CHECK_OK(
        lm_graph_add_param(g, "first", LM_TYPE_INT, lm_value_int(10), NULL, at(40, 3), &p, &err),
        &err);
    if (p) {
        p->has_min = p->has_max = true;
        p->min = 0;
        p->max = 500;
    }
    CHECK_OK(lm_graph_add_param(g, "mode", LM_TYPE_STRING, lm_value_string("fast"), NULL, at(41, 3),
                                &p, &err),
             &err);
    if (p) {
        p->choices = lm_calloc(3, sizeof(char *));
        p->choices[0] = lm_strdup("fast");
        p->choices[1] = lm_strdup("slow");
    }
    return g;
}

void test_graph_validate__param_default_and_params_json(void)
{
    lm_graph *g = param_graph();
    run_v r = validate(g, NULL);
    CHECK_OK(r.st, NULL);
    REQUIRE(r.plan != NULL);
    int c1 = plan_find(r.plan, "c1");
    CHECK_INT(lm_value_as_int(r.plan->nodes[c1].inputs[0].literal), 10);
    CHECK_STR(r.plan->params_json, "{\"first\":10,\"mode\":\"fast\"}");
    CHECK_CONTAINS(r.plan->prompt_json, "\"value\":10");
    run_v_fini(&r, g);
}

void test_graph_validate__override_param_from_text(void)
{
    const char *texts[] = { "42", "0x2a", "+42" };
    for (size_t i = 0; i < 3; i++) {
        lm_graph *g = param_graph();
        lm_override ov = { .name = "first", .text = texts[i] };
        lm_validate_opts opts = { .overrides = &ov, .n_overrides = 1 };
        run_v r = validate(g, &opts);
        CHECK_OK(r.st, NULL);
        if (r.plan) {
            int c1 = plan_find(r.plan, "c1");
            CHECK_INT(lm_value_as_int(r.plan->nodes[c1].inputs[0].literal), 42);
            CHECK_CONTAINS(r.plan->params_json, "\"first\":42");
        }
        run_v_fini(&r, g);
    }
}

void test_graph_validate__override_bad_text_and_range(void)
{
    lm_graph *g = param_graph();
    lm_override ov[] = { { .name = "first", .text = "12abc" },
                         { .name = "mode", .text = "medium" } };
    lm_validate_opts opts = { .overrides = ov, .n_overrides = 2 };
    run_v r = validate(g, &opts);
    const lm_error *e = find(&r, "invalid_input_type", NULL);
    if (e) {
        CHECK_STR(e->input, "first");
        CHECK_INT(e->line, 40);
        CHECK_CONTAINS(e->msg, "\"12abc\" (from first=12abc) is not a valid INT");
        CHECK_CONTAINS(e->hint, "whole number");
    }
    e = find(&r, "value_not_in_list", NULL);
    if (e)
        CHECK_STR(e->input, "mode");
    CHECK_INT(r.diag.count, 2);
    run_v_fini(&r, g);

    g = param_graph();
    lm_override big = { .name = "first", .text = "501" };
    opts = (lm_validate_opts){ .overrides = &big, .n_overrides = 1 };
    r = validate(g, &opts);
    e = find(&r, "value_bigger_than_max", NULL);
    if (e) {
        CHECK_STR(e->input, "first");
        CHECK_STR(e->msg, "501 is above the maximum 500");
    }
    run_v_fini(&r, g);
}

void test_graph_validate__override_node_input(void)
{
    lm_graph *g = sum_graph();
    lm_override ov[] = {
        { .name = "c2.value", .text = "9" },    /* literal replaced */
        { .name = "add.a", .text = "100" },     /* link replaced by a literal */
        { .name = "sink.label", .text = "hi" }, /* absent optional input added */
    };
    lm_validate_opts opts = { .overrides = ov, .n_overrides = 3 };
    run_v r = validate(g, &opts);
    CHECK_OK(r.st, NULL);
    REQUIRE(r.plan != NULL);
    CHECK_INT(r.plan->n_nodes, 3); /* c1 is no longer needed */
    CHECK_INT(plan_find(r.plan, "c1"), -1);
    const lm_plan_node *add_n = &r.plan->nodes[plan_find(r.plan, "add")];
    CHECK_INT(add_n->inputs[0].src, -1);
    CHECK_INT(lm_value_as_int(add_n->inputs[0].literal), 100);
    CHECK_INT(lm_value_as_int(r.plan->nodes[plan_find(r.plan, "c2")].inputs[0].literal), 9);
    CHECK_STR(lm_value_as_string(r.plan->nodes[plan_find(r.plan, "sink")].inputs[1].literal), "hi");
    run_v_fini(&r, g);
}

void test_graph_validate__override_text_parsing_per_type(void)
{
    lm_graph *g = all_graph();
    lm_override ov[] = {
        { .name = "all.cfg", .text = "6.5" },
        { .name = "all.flag", .text = "0" },
        { .name = "all.text", .text = "a b" },
        { .name = "all.steps", .text = "0x10" },
    };
    lm_validate_opts opts = { .overrides = ov, .n_overrides = 4 };
    run_v r = validate(g, &opts);
    CHECK_OK(r.st, NULL);
    REQUIRE(r.plan != NULL);
    const lm_plan_node *pn = &r.plan->nodes[plan_find(r.plan, "all")];
    CHECK_NEAR(lm_value_as_float(pn->inputs[3].literal), 6.5, 0);
    CHECK(!lm_value_as_bool(pn->inputs[5].literal));
    CHECK_STR(lm_value_as_string(pn->inputs[4].literal), "a b");
    CHECK_INT(lm_value_as_int(pn->inputs[2].literal), 16);
    run_v_fini(&r, g);
}

void test_graph_validate__override_typed_value(void)
{
    lm_graph *g = param_graph();
    lm_value *v = lm_value_int(77);
    lm_override ov = { .name = "first", .value = v };
    lm_validate_opts opts = { .overrides = &ov, .n_overrides = 1 };
    run_v r = validate(g, &opts);
    CHECK_OK(r.st, NULL);
    if (r.plan)
        CHECK_CONTAINS(r.plan->params_json, "\"first\":77");
    lm_value_unref(v);
    run_v_fini(&r, g);
}

void test_graph_validate__override_unknown_names(void)
{
    lm_graph *g = param_graph();
    lm_override ov[] = {
        { .name = "frist", .text = "1" },
        { .name = "c1.vlaue", .text = "1" },
        { .name = "nonode.value", .text = "1" },
        { .name = "add.a", .text = "x" },
    };
    lm_validate_opts opts = { .overrides = ov, .n_overrides = 4 };
    run_v r = validate(g, &opts);
    CHECK_INT(count_kind(&r, "unknown_parameter"), 2);
    const lm_error *e = find(&r, "unknown_parameter", NULL);
    if (e) {
        CHECK_STR(e->input, "frist");
        CHECK_CONTAINS(e->msg, "first, mode");
        CHECK_CONTAINS(e->hint, "did you mean first");
    }
    e = find(&r, "unknown_input", "c1");
    if (e) {
        CHECK_STR(e->input, "vlaue");
        CHECK_CONTAINS(e->hint, "c1.value");
    }
    e = find(&r, "invalid_input_type", "add");
    if (e)
        CHECK_STR(e->input, "a");
    run_v_fini(&r, g);
}

void test_graph_validate__param_reference_errors(void)
{
    lm_graph *g = param_graph();
    lm_error err;
    CHECK_OK(lm_graph_add_param(g, "need", LM_TYPE_INT, NULL, NULL, at(42, 3), NULL, &err), &err);
    CHECK_OK(lm_graph_add_param(g, "unused", LM_TYPE_INT, NULL, NULL, at(43, 3), NULL, &err), &err);
    add(g, "add3", "TestAdd", 50);
    param_ref(g, "add3", "a", "secnd", 51);
    param_ref(g, "add3", "b", "need", 52);
    add(g, "add4", "TestAdd", 53);
    param_ref(g, "add4", "a", "need", 54);
    link_name(g, "add4", "b", "add3", "INT", 55);
    add(g, "sink3", "TestSink", 56);
    link_name(g, "sink3", "value", "add4", "INT", 57);
    run_v r = validate(g, NULL);
    CHECK_INT(r.diag.count, 2);
    const lm_error *e = find(&r, "unknown_parameter", "add3");
    check_place(e, "add3", "TestAdd", "a", 51);
    if (e)
        CHECK_CONTAINS(e->msg, "\"secnd\"");
    e = find(&r, "required_input_missing", NULL);
    if (e) {
        CHECK_STR(e->node_id, "");
        CHECK_STR(e->input, "need");
        CHECK_INT(e->line, 42);
        CHECK_STR(e->hint, "pass need=VALUE");
    }
    run_v_fini(&r, g);
}

void test_graph_validate__duplicate_input(void)
{
    lm_graph *g = sum_graph();
    lit(g, "c1", "value", lm_value_int(5), 12);
    run_v r = validate(g, NULL);
    check_place(find(&r, "invalid_prompt", "c1"), "c1", "TestConst", "value", 12);
    CHECK_INT(r.diag.count, 1);
    run_v_fini(&r, g);
}

/* ---- ComfyUI error body ---------------------------------------------------------------- */

void test_graph_validate__comfy_error_json(void)
{
    lm_graph *g = all_graph();
    lit(g, "all", "steps", lm_value_int(0), 7);
    lit(g, "all", "sampler", lm_value_string("nope"), 8);
    run_v r = validate(g, NULL);
    char *json = lm_diag_to_comfy_json(&r.diag);
    REQUIRE(json != NULL);
    test_note("%s", json);
    cJSON *root = cJSON_Parse(json);
    REQUIRE(root != NULL);
    cJSON *error = cJSON_GetObjectItem(root, "error");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(error, "type")),
              "prompt_outputs_failed_validation");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(error, "message")),
              "Prompt outputs failed validation");
    cJSON *node = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "node_errors"), "all");
    REQUIRE(node != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(node, "class_type")), "TestAll");
    CHECK(cJSON_IsArray(cJSON_GetObjectItem(node, "dependent_outputs")));
    cJSON *errors = cJSON_GetObjectItem(node, "errors");
    REQUIRE(cJSON_GetArraySize(errors) == 2);
    cJSON *e0 = cJSON_GetArrayItem(errors, 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e0, "type")), "value_smaller_than_min");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e0, "message")), "0 is below the minimum 1");
    CHECK_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(e0, "details")), "flow.yaml:7:7");
    CHECK_STR(cJSON_GetStringValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(e0, "extra_info"), "input_name")),
              "steps");
    cJSON_Delete(root);
    lm_free(json);
    run_v_fini(&r, g);
}

void test_graph_validate__comfy_error_json_without_nodes(void)
{
    lm_graph *g = new_graph();
    add(g, "c", "TestConst", 1);
    run_v r = validate(g, NULL);
    char *json = lm_diag_to_comfy_json(&r.diag);
    REQUIRE(json != NULL);
    cJSON *root = cJSON_Parse(json);
    REQUIRE(root != NULL);
    cJSON *error = cJSON_GetObjectItem(root, "error");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(error, "type")), "prompt_no_outputs");
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(root, "node_errors")), 0);
    cJSON_Delete(root);
    lm_free(json);
    run_v_fini(&r, g);
}

void test_graph_validate__allocation_failures_are_reported(void)
{
    /* Every allocation of a validation with errors, overrides and parameters fails once in
     * turn: always a failure status, never a crash (the sanitizer build checks leaks). */
    lm_graph *g = param_graph();
    lit(g, "c2", "value", lm_value_int(5000), 60);
    lit(g, "add", "bogus", lm_value_int(1), 61);
    add(g, "s2", "TestSink", 62);
    link_name(g, "s2", "value", "nope", "INT", 63);
    lm_override ov[] = { { .name = "first", .text = "7" },
                         { .name = "c1.value", .text = "x" },
                         { .name = "unknown", .text = "1" } };
    lm_validate_opts opts = { .overrides = ov, .n_overrides = 3 };
    lm_registry *reg = fx_registry();
    REQUIRE(reg != NULL);
    long n = 0;
    for (bool injected = true; injected && n < 5000; n++) {
        lm_diag diag;
        lm_diag_init(&diag);
        lm_plan *plan = NULL;
        lm_alloc_fail_after(n);
        lm_status st = lm_validate(g, reg, NULL, &opts, &plan, &diag);
        injected = lm_alloc_failures() > 0;
        lm_alloc_fail_after(-1);
        CHECK(st != LM_OK && plan == NULL);
        if (!injected)
            CHECK_INT(diag.count, 5);
        lm_plan_free(plan);
        lm_diag_fini(&diag);
    }
    test_note("walked %ld allocation failures", n - 1);
    lm_registry_free(reg);
    lm_graph_free(g);
}

/* main graph: node "sub" stands for parts/sub.yaml (TestConst fed by its parameter v), whose
 * output feeds a sink. */
static lm_graph *sub_graph(int64_t v)
{
    test_write_file("parts/sub.yaml", "params:\n"
                                      "  v: 1\n"
                                      "nodes:\n"
                                      "  c: {type: TestConst, inputs: {value: {param: v}}}\n"
                                      "outputs:\n"
                                      "  out: {link: c.INT}\n");
    char path[4200];
    snprintf(path, sizeof(path), "%s/main.yaml", test_tmpdir());
    lm_graph *g = NULL;
    lm_error err;
    CHECK_OK(lm_graph_new(&g, path, LM_FORMAT_LOOM_YAML, &err), &err);
    lm_graph_node *n = NULL;
    CHECK_OK(lm_graph_add_node(g, "sub", NULL, at(2, 3), &n, &err), &err);
    if (n)
        n->workflow = lm_strdup("parts/sub.yaml");
    lit(g, "sub", "v", lm_value_int(v), 3);
    add(g, "sink", "TestSink", 4);
    link_name(g, "sink", "value", "sub", "out", 5);
    return g;
}

void test_graph_validate__subworkflow_expanded_first(void)
{
    REQUIRE(mkdir("parts", 0755) == 0);
    lm_graph *g = sub_graph(7);
    run_v r = validate(g, NULL);
    CHECK_OK(r.st, r.diag.count ? &r.diag.items[0] : NULL);
    REQUIRE(r.plan != NULL);
    CHECK_INT(r.plan->n_nodes, 2);
    int c = plan_find(r.plan, "sub/c");
    REQUIRE(c >= 0);
    CHECK_INT(lm_value_as_int(r.plan->nodes[c].inputs[0].literal), 7);
    CHECK_INT(r.plan->nodes[plan_find(r.plan, "sink")].inputs[0].src, c);
    run_v_fini(&r, g);

    g = sub_graph(5000); /* above TestConst's maximum: reported on the inner node */
    r = validate(g, NULL);
    const lm_error *e = find(&r, "value_bigger_than_max", "sub/c");
    if (e) {
        CHECK_STR(e->input, "value");
        CHECK(e->file[0] != '\0');
    }
    run_v_fini(&r, g);
}
