/* tests/graph/test_workflow_json.c — Loom JSON and the position-keeping JSON reader:
 * structure, number types, string escapes, syntax errors with exact line:col, limits. */
#include "core/base/str.h"
#include "core/graph.h"
#include "core/workflow.h"
#include "tests/graph/workflow_fixture.h"
#include "tests/test.h"

#include <stdio.h>

static const char *loom_json =
    "{\n"
    "  \"loom\": 1,\n"
    "  \"params\": {\"size\": {\"type\": \"INT\", \"default\": 256}, \"g\": 0.5},\n"
    "  \"nodes\": {\n"
    "    \"sq\": {\"type\": \"EmptyImage\",\n"
    "           \"inputs\": {\"width\": {\"param\": \"size\"}, \"note\": \"sq.IMAGE\"}},\n"
    "    \"inv\": {\"type\": \"ImageInvert\", \"inputs\": {\"image\": {\"link\": \"sq.IMAGE\"},\n"
    "            \"b\": {\"link\": [\"sq\", 1]}, \"v\": {\"value\": [1, {\"k\": null}]}}}\n"
    "  },\n"
    "  \"outputs\": {\"image\": {\"link\": \"inv.IMAGE\"}}\n"
    "}\n";

static lm_graph *parse(const char *text, lm_error *err)
{
    return wf_parse(text, "flow.json", err);
}

static const char *parse_error(const char *text, lm_error *err)
{
    return wf_parse_error(text, "flow.json", err);
}

void test_graph_workflow_json__loom_structure(void)
{
    lm_error err;
    lm_graph *g = parse(loom_json, &err);
    REQUIRE(g);
    CHECK_INT(g->format, LM_FORMAT_LOOM_JSON);
    CHECK_INT(g->n_params, 2);
    CHECK_INT(lm_graph_find_param(g, "g")->type, LM_TYPE_FLOAT);
    CHECK_INT(g->n_nodes, 2);
    CHECK_STR(g->nodes[1].id, "inv");
    CHECK_INT(g->nodes[1].loc.line, 7);
    CHECK_INT(g->nodes[1].loc.col, 5);
    const lm_graph_input *in = lm_graph_node_input(&g->nodes[0], "width");
    CHECK(in->kind == LM_GRAPH_INPUT_PARAM);
    CHECK_INT(in->loc.line, 6);
    CHECK_INT(in->loc.col, 32);
    in = lm_graph_node_input(&g->nodes[0], "note");
    CHECK(in->kind == LM_GRAPH_INPUT_LITERAL);
    CHECK_STR(lm_value_as_string(in->literal), "sq.IMAGE");
    in = lm_graph_node_input(&g->nodes[1], "image");
    CHECK(in->kind == LM_GRAPH_INPUT_LINK);
    CHECK_STR(in->link_output, "IMAGE");
    in = lm_graph_node_input(&g->nodes[1], "b");
    CHECK(in->kind == LM_GRAPH_INPUT_LINK && in->link_index == 1);
    in = lm_graph_node_input(&g->nodes[1], "v");
    CHECK_STR(lm_value_as_string(in->literal), "[1, {\"k\": null}]");
    CHECK_STR(g->outputs[0].link_node, "inv");
    lm_graph_free(g);
}

void test_graph_workflow_json__numbers(void)
{
    lm_error err;
    lm_graph *g = parse("{\"1\": {\"class_type\": \"T\", \"inputs\": {\"seed\": 125338548270506, "
                        "\"cfg\": 5.45, \"one\": 1.0, \"e\": 1e2, \"neg\": -7, \"min\": "
                        "-9223372036854775808, \"t\": true, \"f\": false}}}",
                        &err);
    REQUIRE(g);
    const lm_graph_node *n = &g->nodes[0];
    const lm_value *v = lm_graph_node_input(n, "seed")->literal;
    CHECK_INT(lm_value_type(v), LM_TYPE_INT);
    CHECK(lm_value_as_int(v) == 125338548270506LL);
    v = lm_graph_node_input(n, "cfg")->literal;
    CHECK_INT(lm_value_type(v), LM_TYPE_FLOAT);
    CHECK(lm_value_as_float(v) == 5.45);
    CHECK_INT(lm_value_type(lm_graph_node_input(n, "one")->literal), LM_TYPE_FLOAT);
    CHECK_INT(lm_value_type(lm_graph_node_input(n, "e")->literal), LM_TYPE_FLOAT);
    CHECK_INT(lm_value_as_int(lm_graph_node_input(n, "neg")->literal), -7);
    CHECK(lm_value_as_int(lm_graph_node_input(n, "min")->literal) == INT64_MIN);
    CHECK_INT(lm_value_type(lm_graph_node_input(n, "f")->literal), LM_TYPE_BOOLEAN);
    lm_graph_free(g);
    const char *line = parse_error("{\"1\": {\"class_type\": \"T\", \"inputs\": {\"s\": "
                                   "9223372036854775808}}}",
                                   &err);
    CHECK_CONTAINS(line, "flow.json:1:43: number 9223372036854775808 is out of range");
    line = parse_error("{\"1\": {\"class_type\": \"T\", \"inputs\": {\"s\": 1e999}}}", &err);
    CHECK_CONTAINS(line, "out of range");
    line = parse_error("{\"a\": 01}", &err);
    CHECK_CONTAINS(line, "flow.json:1:8:");
    line = parse_error("{\"a\": 1.}", &err);
    CHECK_CONTAINS(line, "flow.json:1:9: JSON syntax error: expected a digit after the decimal");
}

void test_graph_workflow_json__strings(void)
{
    lm_error err;
    lm_graph *g = parse("{\"1\": {\"class_type\": \"T\", \"inputs\": {\"s\": "
                        "\"a\\u00e9\\n\\ud83d\\ude00\\\"\\/\", \"u\": \"\xc3\xa9\"}}}",
                        &err);
    REQUIRE(g);
    CHECK_STR(lm_value_as_string(g->nodes[0].inputs[0].literal), "a\xc3\xa9\n\xf0\x9f\x98\x80\"/");
    CHECK_STR(lm_value_as_string(g->nodes[0].inputs[1].literal), "\xc3\xa9");
    lm_graph_free(g);
    const char *line = parse_error("{\"a\": \"x\\u0000\"}", &err);
    CHECK_CONTAINS(line, "flow.json:1:9: JSON syntax error: \\u0000 is not allowed");
    line = parse_error("{\"a\": \"\\ud83d\"}", &err);
    CHECK_CONTAINS(line, "high surrogate");
    line = parse_error("{\"a\": \"tab\there\"}", &err);
    CHECK_CONTAINS(line, "flow.json:1:11: JSON syntax error: control character");
    line = parse_error("{\"a\": \"\\q\"}", &err);
    CHECK_CONTAINS(line, "flow.json:1:9:");
    line = parse_error("{\"a\": \"\xff\"}", &err);
    CHECK_CONTAINS(line, "invalid UTF-8");
}

void test_graph_workflow_json__syntax_errors_place(void)
{
    lm_error err;
    const char *line =
        parse_error("{\n  \"nodes\": {\n    \"a\": {\"type\": \"T\",}\n  }\n}\n", &err);
    CHECK_STR(err.kind, "syntax_error");
    CHECK_INT(err.code, LM_EFORMAT);
    CHECK_CONTAINS(line, "flow.json:3:23: JSON syntax error: expected a key in double quotes "
                         "(JSON allows no trailing comma), found '}'");
    line = parse_error("{\"nodes\": {\"a\": {\"type\": \"T\"} \"b\": 1}}", &err);
    CHECK_CONTAINS(line, "flow.json:1:31: JSON syntax error: expected ',' or '}' to continue "
                         "the object opened at line 1 col 11, found '\"'");
    line = parse_error("{\n\"a\": \"never closed\n}", &err);
    CHECK_CONTAINS(line, "flow.json:2:6: JSON syntax error: this string is not closed before "
                         "the end of its line");
    line = parse_error("{\"a\": \"open", &err);
    CHECK_CONTAINS(line, "flow.json:1:7: JSON syntax error: this string is not closed");
    line = parse_error("{\"a\": tru}", &err);
    CHECK_CONTAINS(line, "flow.json:1:7: JSON syntax error: expected a value");
    line = parse_error("{\"\xc3\xa9\": x}", &err); /* columns count characters */
    CHECK_CONTAINS(line, "flow.json:1:7:");
    line = parse_error("{} x", &err);
    CHECK_CONTAINS(line, "flow.json:1:4: JSON syntax error: expected the end of the text");
    line = parse_error("{\"a\" 1}", &err);
    CHECK_CONTAINS(line, "flow.json:1:6: JSON syntax error: expected ':' after the key");
    line = parse_error("{\"a\": [1, 2", &err);
    CHECK_CONTAINS(line, "flow.json:1:12: JSON syntax error: expected ',' or ']'");
    CHECK_CONTAINS(line, "but the text ends");
    line = parse_error("[1, 2]", &err);
    CHECK_CONTAINS(line, "flow.json:1:1: a workflow is a map, not a list");
    line = parse_error("  \n ", &err);
    CHECK_CONTAINS(line, "the workflow is empty");
}

void test_graph_workflow_json__duplicate_keys(void)
{
    lm_error err;
    const char *line = parse_error("{\"nodes\": {\"a\": {\"type\": \"T\"}, \"a\": {\"type\": "
                                   "\"U\"}}}",
                                   &err);
    CHECK_STR(err.kind, "duplicate_key");
    CHECK_CONTAINS(line, "flow.json:1:32: key \"a\" appears twice (first at line 1)");
}

void test_graph_workflow_json__deep_nesting_refused(void)
{
    lm_str s;
    lm_str_init(&s);
    for (int i = 0; i < 100000; i++)
        lm_str_append(&s, "[");
    lm_error err;
    const char *line = parse_error(lm_str_cstr(&s), &err);
    CHECK_STR(err.kind, "nesting_too_deep");
    CHECK_INT(err.code, LM_ELIMIT);
    CHECK_CONTAINS(line, "flow.json:1:65: nesting deeper than 64 levels");
    lm_str_fini(&s);
}

void test_graph_workflow_json__structural_errors_have_places(void)
{
    lm_error err;
    const char *line = parse_error("{\"nodes\": {\n  \"a\": {\"type\": \"T\", \"inputs\": "
                                   "{\"x\": null}}}}",
                                   &err);
    CHECK_CONTAINS(line, "flow.json:2:33: node \"a\" (T) input \"x\": the input has no value");
    line = parse_error("{\"nodes\": {\"a\": {\"type\": 3}}}", &err);
    CHECK_CONTAINS(line, "flow.json:1:26: node: `type` must be a string, not an integer");
}

void test_graph_workflow_json__yaml_flow_fallback(void)
{
    lm_error err;
    lm_graph *g = parse("{nodes: {a: {type: T, inputs: {x: 1}}}}", &err);
    REQUIRE(g);
    CHECK_INT(g->format, LM_FORMAT_LOOM_YAML);
    CHECK_STR(g->nodes[0].type, "T");
    lm_graph_free(g);
}

void test_graph_workflow_json__parse_json_entry(void)
{
    lm_graph *g = NULL;
    lm_error err;
    CHECK_OK(lm_workflow_parse_json(loom_json, strlen(loom_json), "x.json", &g, &err), &err);
    CHECK(g && g->n_nodes == 2);
    lm_graph_free(g);
    CHECK(lm_workflow_parse_json("nodes: {}", 9, "x.json", &g, &err) == LM_EFORMAT);
    CHECK(g == NULL);
    CHECK_INT(err.line, 1);
    CHECK_INT(err.col, 1);
}

void test_graph_workflow_json__node_limit(void)
{
    for (int loom = 0; loom < 2; loom++) {
        lm_str s;
        lm_str_init(&s);
        lm_str_append(&s, loom ? "{\"nodes\": {" : "{");
        for (int i = 0; i <= LM_WORKFLOW_MAX_NODES; i++)
            lm_str_appendf(&s, "%s\"n%d\": {%s\"inputs\": {}}", i ? ", " : "", i,
                           loom ? "\"type\": \"T\", " : "\"class_type\": \"T\", ");
        lm_str_append(&s, loom ? "}}" : "}");
        lm_error err;
        const char *line = parse_error(lm_str_cstr(&s), &err);
        CHECK_STR(err.kind, "workflow_too_large");
        CHECK_INT(err.code, LM_ELIMIT);
        CHECK_CONTAINS(line, "10001 nodes is more than the limit of 10000");
        lm_str_fini(&s);
    }
}
