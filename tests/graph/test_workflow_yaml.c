/* tests/graph/test_workflow_yaml.c — Loom YAML: structure, literals vs links, params,
 * outputs, places of syntax and structural errors, limits (nesting, aliases). */
#include "core/base/str.h"
#include "core/graph.h"
#include "core/workflow.h"
#include "tests/graph/workflow_fixture.h"
#include "tests/test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

static const char *example =
    "loom: 1\n"
    "description: Invert a grey square and save it.\n"
    "params:\n"
    "  size: {type: INT, default: 256, min: 64, max: 4096, description: Edge length.}\n"
    "  color: {type: INT, default: 0x808080}\n"
    "  prefix: {type: STRING, default: loom}\n"
    "  mode: {type: STRING, default: normal, choices: [normal, multiply]}\n"
    "  seed: 42\n"
    "  gain: 1.5\n"
    "  strength: {type: FLOAT, default: 1}\n"
    "  image: {type: IMAGE}\n"
    "nodes:\n"
    "  square:\n"
    "    type: EmptyImage\n"
    "    inputs:\n"
    "      width: {param: size}\n"
    "      height: {param: size}\n"
    "      color: {param: color}\n"
    "  inverted:\n"
    "    type: ImageInvert\n"
    "    title: Invert\n"
    "    inputs:\n"
    "      image: {link: square.IMAGE}\n"
    "  save:\n"
    "    type: SaveImage\n"
    "    inputs:\n"
    "      images: {link: inverted.0}\n"
    "      also: {link: [inverted, 1]}\n"
    "      filename_prefix: {param: prefix}\n"
    "      note: \"square.IMAGE\"\n"
    "      plain: square.IMAGE\n"
    "      other: {value: {link: x}}\n"
    "      flag: true\n"
    "      ratio: 0.25\n"
    "      word: yes\n"
    "outputs:\n"
    "  image: {link: inverted.IMAGE, description: The inverted square.}\n";

static lm_graph *parse(const char *text, lm_error *err)
{
    return wf_parse(text, "flow.yaml", err);
}

/* Parses text that must fail; returns the one-line rendering of the error. */
static const char *parse_error(const char *text, lm_error *err)
{
    return wf_parse_error(text, "flow.yaml", err);
}

void test_graph_workflow_yaml__example_structure(void)
{
    lm_error err;
    lm_graph *g = parse(example, &err);
    REQUIRE(g);
    CHECK_INT(g->format, LM_FORMAT_LOOM_YAML);
    CHECK_STR(g->description, "Invert a grey square and save it.");
    CHECK_INT(g->n_nodes, 3);
    CHECK_STR(g->nodes[0].id, "square");
    CHECK_STR(g->nodes[0].type, "EmptyImage");
    CHECK_INT(g->nodes[0].loc.line, 13);
    CHECK_INT(g->nodes[0].loc.col, 3);
    CHECK_STR(g->nodes[1].title, "Invert");
    CHECK_INT(g->n_outputs, 1);
    CHECK_STR(g->outputs[0].name, "image");
    CHECK_STR(g->outputs[0].link_node, "inverted");
    CHECK_STR(g->outputs[0].link_output, "IMAGE");
    CHECK_STR(g->outputs[0].description, "The inverted square.");
    lm_graph_free(g);
}

void test_graph_workflow_yaml__links_params_literals(void)
{
    lm_error err;
    lm_graph *g = parse(example, &err);
    REQUIRE(g);
    lm_graph_input *in = lm_graph_node_input(&g->nodes[1], "image");
    REQUIRE(in);
    CHECK_INT(in->kind, LM_GRAPH_INPUT_LINK);
    CHECK_STR(in->link_node, "square");
    CHECK_STR(in->link_output, "IMAGE");
    CHECK_INT(in->link_index, -1);
    CHECK_INT(in->loc.line, 23);
    CHECK_INT(in->loc.col, 14);
    const lm_graph_node *save = lm_graph_find_node(g, "save");
    REQUIRE(save);
    in = lm_graph_node_input(save, "images");
    CHECK(in->kind == LM_GRAPH_INPUT_LINK && in->link_index == 0 && !in->link_output);
    in = lm_graph_node_input(save, "also");
    CHECK(in->kind == LM_GRAPH_INPUT_LINK && in->link_index == 1);
    CHECK_STR(in->link_node, "inverted");
    in = lm_graph_node_input(save, "filename_prefix");
    CHECK(in->kind == LM_GRAPH_INPUT_PARAM);
    CHECK_STR(in->param, "prefix");
    in = lm_graph_node_input(save, "note");
    REQUIRE(in && in->kind == LM_GRAPH_INPUT_LITERAL);
    CHECK_STR(lm_value_as_string(in->literal), "square.IMAGE");
    in = lm_graph_node_input(save, "plain");
    REQUIRE(in && in->kind == LM_GRAPH_INPUT_LITERAL);
    CHECK_STR(lm_value_as_string(in->literal), "square.IMAGE");
    in = lm_graph_node_input(save, "other");
    REQUIRE(in && in->kind == LM_GRAPH_INPUT_LITERAL);
    CHECK_STR(lm_value_as_string(in->literal), "{\"link\": \"x\"}");
    in = lm_graph_node_input(save, "flag");
    CHECK(lm_value_type(in->literal) == LM_TYPE_BOOLEAN && lm_value_as_bool(in->literal));
    in = lm_graph_node_input(save, "ratio");
    CHECK(lm_value_type(in->literal) == LM_TYPE_FLOAT);
    CHECK_NEAR(lm_value_as_float(in->literal), 0.25, 0);
    in = lm_graph_node_input(save, "word");
    CHECK_STR(lm_value_as_string(in->literal), "yes");
    lm_graph_free(g);
}

void test_graph_workflow_yaml__params(void)
{
    lm_error err;
    lm_graph *g = parse(example, &err);
    REQUIRE(g);
    CHECK_INT(g->n_params, 8);
    lm_graph_param *p = lm_graph_find_param(g, "size");
    REQUIRE(p);
    CHECK_INT(p->type, LM_TYPE_INT);
    CHECK_INT(lm_value_as_int(p->def), 256);
    CHECK(p->has_min && p->has_max);
    CHECK_NEAR(p->min, 64, 0);
    CHECK_NEAR(p->max, 4096, 0);
    CHECK_STR(p->description, "Edge length.");
    CHECK_INT(p->loc.line, 4);
    CHECK_INT(p->loc.col, 3);
    CHECK_INT(lm_value_as_int(lm_graph_find_param(g, "color")->def), 0x808080);
    p = lm_graph_find_param(g, "mode");
    REQUIRE(p && p->choices);
    CHECK_STR(p->choices[0], "normal");
    CHECK_STR(p->choices[1], "multiply");
    CHECK(p->choices[2] == NULL);
    p = lm_graph_find_param(g, "seed");
    CHECK(p->type == LM_TYPE_INT && lm_value_as_int(p->def) == 42);
    p = lm_graph_find_param(g, "gain");
    CHECK(p->type == LM_TYPE_FLOAT);
    p = lm_graph_find_param(g, "strength");
    CHECK(p->type == LM_TYPE_FLOAT && lm_value_type(p->def) == LM_TYPE_FLOAT);
    p = lm_graph_find_param(g, "image");
    CHECK(p->type == LM_TYPE_IMAGE && p->def == NULL);
    lm_graph_free(g);
}

void test_graph_workflow_yaml__scalars_core_schema(void)
{
    lm_error err;
    lm_graph *g = parse("nodes:\n  a:\n    type: T\n    inputs:\n"
                        "      h: 0x1F\n      o: 0o17\n      neg: -12\n      e: 1e3\n"
                        "      q: '12'\n      big: 9223372036854775807\n      t: True\n"
                        "      s: on\n      block: |\n        two\n        lines\n",
                        &err);
    REQUIRE(g);
    const lm_graph_node *n = &g->nodes[0];
    CHECK_INT(lm_value_as_int(lm_graph_node_input(n, "h")->literal), 31);
    CHECK_INT(lm_value_as_int(lm_graph_node_input(n, "o")->literal), 15);
    CHECK_INT(lm_value_as_int(lm_graph_node_input(n, "neg")->literal), -12);
    CHECK(lm_value_type(lm_graph_node_input(n, "e")->literal) == LM_TYPE_FLOAT);
    CHECK_STR(lm_value_as_string(lm_graph_node_input(n, "q")->literal), "12");
    CHECK(lm_value_as_int(lm_graph_node_input(n, "big")->literal) == INT64_MAX);
    CHECK(lm_value_type(lm_graph_node_input(n, "t")->literal) == LM_TYPE_BOOLEAN);
    CHECK_STR(lm_value_as_string(lm_graph_node_input(n, "s")->literal), "on");
    CHECK_STR(lm_value_as_string(lm_graph_node_input(n, "block")->literal), "two\nlines\n");
    lm_graph_free(g);
}

void test_graph_workflow_yaml__syntax_error_place(void)
{
    lm_error err;
    const char *line = parse_error("nodes:\n  a:\n    type: T\n   inputs: {x: 1}\n", &err);
    CHECK_STR(err.kind, "syntax_error");
    CHECK_INT(err.code, LM_EFORMAT);
    CHECK_STR(err.file, "flow.yaml");
    CHECK_INT(err.line, 4);
    CHECK_INT(err.col, 4);
    CHECK_CONTAINS(line, "flow.yaml:4:4: YAML syntax error:");
    line = parse_error("nodes:\n  a: {type: T, inputs: {x: [1, 2}\n", &err);
    CHECK_STR(err.kind, "syntax_error");
    CHECK_INT(err.line, 2);
    CHECK_INT(err.col, 33);
    CHECK_CONTAINS(line, "expected");
    parse_error("nodes:\n  a:\n    type: \"T\n", &err);
    CHECK_STR(err.kind, "syntax_error");
    CHECK_INT(err.line, 4);
}

void test_graph_workflow_yaml__structural_errors(void)
{
    lm_error err;
    const char *line = parse_error("nodes:\n  a:\n    inputs: {}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:3:5: node \"a\" has neither `type` nor `workflow`");
    CHECK_STR(err.kind, "invalid_workflow");
    line = parse_error("nodes:\n  a: {type: T, workflow: x.yaml}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:2:6: node \"a\" has both");
    line = parse_error("nodes:\n  a:\n    type: T\n    inputs: [1, 2]\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:4:13:");
    CHECK_CONTAINS(line, "`inputs` must be a map");
    line = parse_error("params:\n  p: {type: INTEGER}\nnodes:\n  a: {type: T}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:2:13: param \"p\": unknown type \"INTEGER\"");
    line = parse_error("nodes:\n  a: {type: T}\n  b: {type: U}\n  a: {type: V}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:4:3: key \"a\" appears twice (first at line 2)");
    CHECK_STR(err.kind, "duplicate_key");
    line = parse_error("nodes:\n  a: {type: T, inputs: {x: 1, x: 2}}\n", &err);
    CHECK_STR(err.kind, "duplicate_key");
    CHECK_INT(err.col, 31);
    line = parse_error("nodes:\n  a: {typ: T}\n", &err);
    CHECK_CONTAINS(line, "unknown key \"typ\"; expected type, workflow, title or inputs");
    line = parse_error("nodes:\n  a b: {type: T}\n", &err);
    CHECK_CONTAINS(line, "node id \"a b\" is not valid");
    line = parse_error("node:\n  a: {type: T}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:1:1: workflow: unknown key \"node\"");
    line = parse_error("loom: 2\nnodes:\n  a: {type: T}\n", &err);
    CHECK_CONTAINS(line, "unsupported format version");
    line = parse_error("params:\n  n: {type: INT, default: 1.5}\nnodes:\n  a: {type: T}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:2:27: param \"n\": the default is a decimal number");
    line = parse_error("params:\n  n: {type: INT, default: 1, min: 5}\nnodes:\n  a: {type: T}\n",
                       &err);
    CHECK_CONTAINS(line, "outside min/max");
    line =
        parse_error("params:\n  m: {default: c, choices: [a, b]}\nnodes:\n  a: {type: T}\n", &err);
    CHECK_CONTAINS(line, "not among the choices");
    line = parse_error("", &err);
    CHECK_CONTAINS(line, "the workflow is empty");
    line = parse_error("- a\n- b\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:1:1: a workflow is a map, not a list");
}

void test_graph_workflow_yaml__input_errors(void)
{
    lm_error err;
    const char *line =
        parse_error("nodes:\n  a:\n    type: T\n    inputs:\n      x: [1, 2]\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:5:10: node \"a\" (T) input \"x\": a list is not a literal");
    CHECK_STR(err.node_id, "a");
    CHECK_STR(err.input, "x");
    line = parse_error("nodes:\n  a:\n    type: T\n    inputs:\n      x: {link: b.IMAGE, y: 1}\n",
                       &err);
    CHECK_CONTAINS(line, "a map with keys other than exactly one of link, param or value");
    CHECK_CONTAINS(line, "{value: …}");
    line = parse_error("nodes:\n  a:\n    type: T\n    inputs:\n      x: {link: noDot}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:5:17:");
    CHECK_CONTAINS(line, "not of the form node.OUTPUT");
    line = parse_error("nodes:\n  a:\n    type: T\n    inputs:\n      x:\n", &err);
    CHECK_CONTAINS(line, "has no value");
    line = parse_error("nodes:\n  a:\n    type: T\n    inputs:\n      x: {param: 3}\n", &err);
    CHECK_CONTAINS(line, "must name a parameter");
    line = parse_error("nodes:\n  a:\n    type: T\n    inputs:\n      x: {link: [b, -1]}\n", &err);
    CHECK_CONTAINS(line, "a link list must hold a node id and an output index");
}

void test_graph_workflow_yaml__link_splits_at_last_dot(void)
{
    lm_error err;
    lm_graph *g =
        parse("nodes:\n  a:\n    type: T\n    inputs:\n      x: {link: b.out.put}\n", &err);
    CHECK(g == NULL); /* "b.out" is no valid node id */
    CHECK_CONTAINS(err.msg, "b.out");
    g = parse("nodes:\n  a:\n    type: T\n    inputs:\n      x: {link: b-2.LATENT_X}\n", &err);
    REQUIRE(g);
    CHECK_STR(g->nodes[0].inputs[0].link_node, "b-2");
    CHECK_STR(g->nodes[0].inputs[0].link_output, "LATENT_X");
    lm_graph_free(g);
}

void test_graph_workflow_yaml__tags_and_documents_refused(void)
{
    lm_error err;
    const char *line = parse_error("nodes:\n  a: {type: !!str T}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:2:13: YAML tags");
    line = parse_error("nodes:\n  a: {type: T}\n---\nnodes: {}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:3:1: a second YAML document");
}

void test_graph_workflow_yaml__aliases(void)
{
    lm_error err;
    lm_graph *g = parse("params:\n  s: &edge 512\nnodes:\n  a:\n    type: T\n    inputs: &common\n"
                        "      width: *edge\n      height: *edge\n  b:\n    type: T\n"
                        "    inputs: *common\n",
                        &err);
    REQUIRE(g);
    CHECK_INT(g->n_nodes, 2);
    CHECK_INT(g->nodes[1].n_inputs, 2);
    CHECK_INT(lm_value_as_int(lm_graph_node_input(&g->nodes[1], "height")->literal), 512);
    lm_graph_free(g);
    const char *line = parse_error("nodes:\n  a: &x {type: T, inputs: {y: *x}}\n", &err);
    CHECK_CONTAINS(line, "flow.yaml:2:31: alias *x names no anchor defined before it");
}

void test_graph_workflow_yaml__billion_laughs_refused(void)
{
    lm_str s;
    lm_str_init(&s);
    lm_str_append(&s, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++) {
        lm_str_appendf(&s, "a%d: &a%d [", i, i);
        for (int k = 0; k < 10; k++)
            lm_str_appendf(&s, "%s*a%d", k ? ", " : "", i - 1);
        lm_str_append(&s, "]\n");
    }
    lm_str_append(&s, "nodes:\n  n: {type: T}\n");
    lm_error err;
    const char *line = parse_error(lm_str_cstr(&s), &err);
    CHECK_STR(err.kind, "alias_expansion_too_large");
    CHECK_INT(err.code, LM_ELIMIT);
    CHECK_CONTAINS(line, "aliases expand to more than 65536 values");
    lm_str_fini(&s);
}

void test_graph_workflow_yaml__deep_nesting_refused(void)
{
    lm_str s;
    lm_str_init(&s);
    lm_str_append(&s, "nodes:\n  a:\n    type: T\n    inputs:\n      x: {value: ");
    for (int i = 0; i < 100; i++)
        lm_str_append(&s, "[");
    for (int i = 0; i < 100; i++)
        lm_str_append(&s, "]");
    lm_str_append(&s, "}\n");
    lm_error err;
    const char *line = parse_error(lm_str_cstr(&s), &err);
    CHECK_STR(err.kind, "nesting_too_deep");
    CHECK_CONTAINS(line, "flow.yaml:5:");
    lm_str_fini(&s);
}

void test_graph_workflow_yaml__size_limit(void)
{
    lm_graph *g = NULL;
    lm_error err;
    static const char text[] = "nodes: {}";
    CHECK(lm_workflow_parse(text, (size_t)LM_WORKFLOW_MAX_BYTES + 1, "big.yaml", &g, &err) ==
          LM_ELIMIT);
    CHECK(g == NULL);
    CHECK_STR(err.kind, "workflow_too_large");
}

void test_graph_workflow_yaml__load_file(void)
{
    const char *path = test_write_file("flow.yaml", example);
    REQUIRE(path);
    lm_graph *g = NULL;
    lm_error err;
    REQUIRE_OK(lm_workflow_load_file(path, &g, &err), &err);
    CHECK_STR(g->file, path);
    CHECK_INT(g->n_nodes, 3);
    lm_graph_free(g);
    CHECK(lm_workflow_load_file("missing.yaml", &g, &err) == LM_ENOTFOUND);
    CHECK_STR(err.file, "missing.yaml");
}

void test_graph_workflow_yaml__alloc_failures(void)
{
    /* Every allocation of a parse may fail: no crash, no leak (ASan), an error. */
    wf_check_alloc_walk(example, "flow.yaml");
}

/* The workflows shipped in workflows/ parse and expand without a problem. */
void test_graph_workflow_yaml__shipped_workflows(void)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/workflows", test_repo_root());
    DIR *d = opendir(dir);
    REQUIRE(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!lm_str_ends_with(e->d_name, ".yaml") && !lm_str_ends_with(e->d_name, ".json"))
            continue;
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        lm_graph *g = NULL, *x = NULL;
        lm_error err;
        lm_diag diag;
        lm_diag_init(&diag);
        CHECK_OK(lm_workflow_load_file(path, &g, &err), &err);
        if (g)
            CHECK_OK(lm_graph_expand(g, NULL, &x, &diag), diag.count ? &diag.items[0] : NULL);
        test_note("%s: %zu nodes", e->d_name, x ? x->n_nodes : 0);
        lm_graph_free(x);
        lm_graph_free(g);
        lm_diag_fini(&diag);
        n++;
    }
    closedir(d);
    CHECK(n >= 1);
}
