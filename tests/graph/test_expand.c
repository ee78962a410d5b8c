/* tests/graph/test_expand.c — sub-workflow expansion: nesting, parameter binding (literal,
 * link, param, default), output rewiring, recursion, depth, confinement, and the errors. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/graph.h"
#include "core/workflow.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *main_yaml = "params:\n"
                               "  edge: {type: INT, default: 128}\n"
                               "nodes:\n"
                               "  src:\n"
                               "    type: EmptyImage\n"
                               "    inputs: {width: {param: edge}, height: 64}\n"
                               "  pair:\n"
                               "    workflow: parts/pair.yaml\n"
                               "    inputs:\n"
                               "      image: {link: src.IMAGE}\n"
                               "      amount: 2\n"
                               "      size: {param: edge}\n"
                               "  save:\n"
                               "    type: SaveImage\n"
                               "    inputs:\n"
                               "      images: {link: pair.left}\n"
                               "      second: {link: pair.1}\n"
                               "outputs:\n"
                               "  result: {link: pair.right, description: The leaf's image.}\n";

static const char *pair_yaml =
    "params:\n"
    "  image: {type: IMAGE}\n"
    "  amount: {type: FLOAT, default: 0.5, min: 0, max: 10}\n"
    "  size: {type: INT, default: 8}\n"
    "  tag: {type: STRING, default: pairtag}\n"
    "nodes:\n"
    "  a:\n"
    "    type: ImageBlur\n"
    "    inputs: {image: {param: image}, radius: {param: amount}, tag: {param: tag},\n"
    "             size: {param: size}}\n"
    "  inner:\n"
    "    workflow: leaf.yaml\n"
    "    inputs: {pic: {link: a.IMAGE}, n: {param: size}}\n"
    "outputs:\n"
    "  left: {link: a.IMAGE}\n"
    "  right: {link: inner.out}\n";

static const char *leaf_yaml = "params:\n"
                               "  pic: {type: IMAGE}\n"
                               "  n: {type: INT, default: 3}\n"
                               "nodes:\n"
                               "  inv:\n"
                               "    type: ImageInvert\n"
                               "    inputs: {image: {param: pic}, count: {param: n}, fixed: 7}\n"
                               "outputs:\n"
                               "  out: {link: inv.IMAGE}\n";

static void write_parts(void)
{
    mkdir("parts", 0755);
    test_write_file("parts/pair.yaml", pair_yaml);
    test_write_file("parts/leaf.yaml", leaf_yaml);
}

/* Loads `path` and expands it; returns the graph or NULL with the diag filled. */
static lm_graph *expand_file(const char *path, const lm_expand_opts *opts, lm_diag *diag)
{
    lm_graph *g = NULL, *x = NULL;
    lm_error err;
    lm_diag_init(diag);
    if (lm_workflow_load_file(path, &g, &err) != LM_OK) {
        lm_diag_push(diag, &err);
        return NULL;
    }
    lm_status st = lm_graph_expand(g, opts, &x, diag);
    lm_graph_free(g);
    CHECK((st == LM_OK) == (diag->count == 0));
    CHECK((st == LM_OK) == (x != NULL));
    for (size_t i = 0; i < diag->count; i++) {
        char line[600];
        lm_error_format(&diag->items[i], line, sizeof(line));
        test_note("%s", line);
    }
    return x;
}

/* The one-line rendering of the first diag entry with this kind, or "". */
static const char *find_kind(const lm_diag *diag, const char *kind)
{
    static char line[600];
    for (size_t i = 0; i < diag->count; i++) {
        if (strcmp(diag->items[i].kind, kind) == 0) {
            lm_error_format(&diag->items[i], line, sizeof(line));
            return line;
        }
    }
    return "";
}

void test_graph_expand__two_levels(void)
{
    write_parts();
    lm_diag diag;
    lm_graph *x = expand_file(test_write_file("main.yaml", main_yaml), NULL, &diag);
    REQUIRE(x);
    CHECK_INT(x->n_nodes, 4);
    CHECK_STR(x->nodes[0].id, "src");
    CHECK_STR(x->nodes[1].id, "pair/a");
    CHECK_STR(x->nodes[1].type, "ImageBlur");
    CHECK_STR(x->nodes[2].id, "pair/inner/inv");
    CHECK_STR(x->nodes[3].id, "save");
    CHECK(x->nodes[0].file == NULL);
    CHECK(lm_str_ends_with(x->nodes[1].file, "parts/pair.yaml"));
    CHECK(lm_str_ends_with(x->nodes[2].file, "parts/leaf.yaml"));
    CHECK_INT(x->nodes[2].loc.line, 5);
    CHECK_INT(x->n_params, 1);
    CHECK_STR(x->params[0].name, "edge");
    lm_graph_free(x);
    lm_diag_fini(&diag);
}

void test_graph_expand__params_from_literal_link_param_default(void)
{
    write_parts();
    lm_diag diag;
    lm_graph *x = expand_file(test_write_file("main.yaml", main_yaml), NULL, &diag);
    REQUIRE(x);
    const lm_graph_node *a = lm_graph_find_node(x, "pair/a");
    REQUIRE(a);
    const lm_graph_input *in = lm_graph_node_input(a, "image"); /* link */
    REQUIRE(in && in->kind == LM_GRAPH_INPUT_LINK);
    CHECK_STR(in->link_node, "src");
    CHECK_STR(in->link_output, "IMAGE");
    in = lm_graph_node_input(a, "radius"); /* INT literal 2 for a FLOAT param */
    REQUIRE(in && in->kind == LM_GRAPH_INPUT_LITERAL);
    CHECK_INT(lm_value_type(in->literal), LM_TYPE_FLOAT);
    CHECK_NEAR(lm_value_as_float(in->literal), 2.0, 0);
    in = lm_graph_node_input(a, "tag"); /* default */
    REQUIRE(in && in->kind == LM_GRAPH_INPUT_LITERAL);
    CHECK_STR(lm_value_as_string(in->literal), "pairtag");
    in = lm_graph_node_input(a, "size"); /* outer param stays a param */
    REQUIRE(in && in->kind == LM_GRAPH_INPUT_PARAM);
    CHECK_STR(in->param, "edge");
    const lm_graph_node *inv = lm_graph_find_node(x, "pair/inner/inv");
    REQUIRE(inv);
    in = lm_graph_node_input(inv, "image"); /* link inside the middle file */
    REQUIRE(in && in->kind == LM_GRAPH_INPUT_LINK);
    CHECK_STR(in->link_node, "pair/a");
    CHECK_STR(in->link_output, "IMAGE");
    in = lm_graph_node_input(inv, "count"); /* param → param → outer param */
    REQUIRE(in && in->kind == LM_GRAPH_INPUT_PARAM);
    CHECK_STR(in->param, "edge");
    in = lm_graph_node_input(inv, "fixed");
    CHECK_INT(lm_value_as_int(in->literal), 7);
    lm_graph_free(x);
    lm_diag_fini(&diag);
}

void test_graph_expand__outputs_rewired(void)
{
    write_parts();
    lm_diag diag;
    lm_graph *x = expand_file(test_write_file("main.yaml", main_yaml), NULL, &diag);
    REQUIRE(x);
    const lm_graph_node *save = lm_graph_find_node(x, "save");
    REQUIRE(save);
    const lm_graph_input *in = lm_graph_node_input(save, "images"); /* by name */
    CHECK_STR(in->link_node, "pair/a");
    CHECK_STR(in->link_output, "IMAGE");
    in = lm_graph_node_input(save, "second"); /* by index: outputs[1] → leaf */
    CHECK_STR(in->link_node, "pair/inner/inv");
    CHECK_STR(in->link_output, "IMAGE");
    REQUIRE(x->n_outputs == 1);
    CHECK_STR(x->outputs[0].name, "result");
    CHECK_STR(x->outputs[0].link_node, "pair/inner/inv");
    CHECK_STR(x->outputs[0].description, "The leaf's image.");
    lm_graph_free(x);
    lm_diag_fini(&diag);
}

void test_graph_expand__plain_graph_is_copied(void)
{
    lm_diag diag;
    lm_graph *x = expand_file(
        test_write_file("flat.yaml", "params:\n  s: {type: STRING, default: a, choices: [a, b]}\n"
                                     "nodes:\n  n:\n    type: T\n    title: Tee\n"
                                     "    inputs: {x: 1, y: {param: s}, z: {link: m.0}}\n"
                                     "  m: {type: U}\noutputs:\n  o: {link: n.OUT}\n"),
        NULL, &diag);
    REQUIRE(x);
    CHECK_INT(x->n_nodes, 2);
    CHECK_STR(x->nodes[0].title, "Tee");
    CHECK_INT(x->nodes[0].n_inputs, 3);
    CHECK_INT(x->nodes[0].inputs[2].link_index, 0);
    CHECK_INT(x->nodes[0].inputs[0].loc.line, 7);
    CHECK_STR(x->params[0].choices[1], "b");
    CHECK_STR(x->outputs[0].link_output, "OUT");
    lm_graph_free(x);
    lm_diag_fini(&diag);
}

void test_graph_expand__binding_errors(void)
{
    write_parts();
    lm_diag diag;
    const char *path = test_write_file(
        "bad.yaml", "nodes:\n"
                    "  pair:\n"
                    "    workflow: parts/pair.yaml\n"
                    "    inputs: {colour: 1, size: big, amount: 11}\n"
                    "  use: {type: T, inputs: {x: {link: pair.nope}, y: {link: pair.5}}}\n");
    lm_graph *x = expand_file(path, NULL, &diag);
    CHECK(x == NULL);
    CHECK_CONTAINS(find_kind(&diag, "unknown_input"),
                   "bad.yaml:4:22: node \"pair\" input \"colour\": sub-workflow parts/pair.yaml "
                   "has no parameter \"colour\"; its parameters: image, amount, size, tag");
    CHECK_CONTAINS(find_kind(&diag, "required_input_missing"),
                   "bad.yaml:2:3: node \"pair\" input \"image\": parts/pair.yaml needs "
                   "parameter \"image\", which has no default");
    CHECK_CONTAINS(find_kind(&diag, "invalid_input_type"),
                   "node \"pair\" input \"size\": \"big\" is not a valid INT");
    CHECK_CONTAINS(find_kind(&diag, "value_bigger_than_max"), "11 is above the maximum 10");
    CHECK_CONTAINS(find_kind(&diag, "unknown_output"),
                   "bad.yaml:5:30: sub-workflow node \"pair\" (parts/pair.yaml) has no output "
                   "nope; its outputs: left (0), right (1)");
    CHECK_CONTAINS(find_kind(&diag, "unknown_output"), "has no output nope");
    int unknown_outputs = 0;
    for (size_t i = 0; i < diag.count; i++)
        unknown_outputs += strcmp(diag.items[i].kind, "unknown_output") == 0;
    CHECK_INT(unknown_outputs, 2); /* pair.nope and pair.5 */
    lm_diag_fini(&diag);
}

void test_graph_expand__inner_errors_name_inner_file(void)
{
    mkdir("parts", 0755);
    test_write_file("parts/broken.yaml",
                    "params:\n  p: 1\nnodes:\n"
                    "  a: {type: T, inputs: {x: {param: q}, y: {link: zz.0}}}\n"
                    "outputs:\n  o: {link: a.IMAGE}\n");
    lm_diag diag;
    lm_graph *x = expand_file(
        test_write_file("m.yaml", "nodes:\n  b: {workflow: parts/broken.yaml}\n"), NULL, &diag);
    CHECK(x == NULL);
    CHECK_CONTAINS(find_kind(&diag, "unknown_parameter"),
                   "parts/broken.yaml:4:28: node \"b/a\" input \"x\": the input refers to "
                   "parameter \"q\"");
    CHECK_CONTAINS(find_kind(&diag, "unknown_node"), "parts/broken.yaml:4:43: link to node "
                                                     "\"zz\"");
    lm_diag_fini(&diag);
    test_write_file("parts/syntax.yaml", "nodes:\n  a: {type: T\n");
    x = expand_file(test_write_file("s.yaml", "nodes:\n  b: {workflow: parts/syntax.yaml}\n"), NULL,
                    &diag);
    CHECK(x == NULL);
    REQUIRE(diag.count == 1);
    CHECK_STR(diag.items[0].kind, "syntax_error");
    CHECK(lm_str_ends_with(diag.items[0].file, "parts/syntax.yaml"));
    CHECK_INT(diag.items[0].line, 3);
    lm_diag_fini(&diag);
}

void test_graph_expand__recursion_direct(void)
{
    lm_diag diag;
    lm_graph *x =
        expand_file(test_write_file("a.yaml", "nodes:\n  me: {workflow: a.yaml}\n"), NULL, &diag);
    CHECK(x == NULL);
    const char *line = find_kind(&diag, "subworkflow_recursion");
    CHECK_CONTAINS(line, "a.yaml:2:3: node \"me\": sub-workflow recursion: ");
    CHECK_CONTAINS(line, "a.yaml \xe2\x86\x92 a.yaml");
    lm_diag_fini(&diag);
}

void test_graph_expand__recursion_indirect(void)
{
    mkdir("sub", 0755);
    test_write_file("sub/b.yaml", "nodes:\n  back: {workflow: ../a.yaml}\n");
    lm_diag diag;
    lm_graph *x = expand_file(
        test_write_file("a.yaml", "nodes:\n  ok: {type: T}\n  b: {workflow: sub/b.yaml}\n"), NULL,
        &diag);
    CHECK(x == NULL);
    CHECK_INT(diag.count, 1);
    const char *line = find_kind(&diag, "subworkflow_recursion");
    CHECK_CONTAINS(line, "a.yaml \xe2\x86\x92 sub/b.yaml \xe2\x86\x92 ../a.yaml");
    CHECK_CONTAINS(line, "sub/b.yaml:2:3: node \"b/back\"");
    lm_diag_fini(&diag);
}

void test_graph_expand__depth_limit(void)
{
    char name[32], text[128];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "d%d.yaml", i);
        if (i == 4)
            snprintf(text, sizeof(text), "nodes:\n  leaf: {type: T}\n");
        else
            snprintf(text, sizeof(text), "nodes:\n  n: {workflow: d%d.yaml}\n", i + 1);
        test_write_file(name, text);
    }
    lm_diag diag;
    lm_expand_opts opts = { NULL, 3 };
    lm_graph *x = expand_file("d0.yaml", &opts, &diag);
    CHECK(x == NULL);
    CHECK_CONTAINS(find_kind(&diag, "subworkflow_too_deep"), "deeper than 3 levels");
    lm_diag_fini(&diag);
    opts.max_depth = 4;
    x = expand_file("d0.yaml", &opts, &diag);
    REQUIRE(x);
    CHECK_STR(x->nodes[0].id, "n/n/n/n/leaf");
    lm_graph_free(x);
    lm_diag_fini(&diag);
}

void test_graph_expand__exponential_growth_refused(void)
{
    char name[32], text[160];
    test_write_file("e0.yaml", "nodes:\n  a: {type: T}\n  b: {type: T}\n");
    for (int i = 1; i <= 14; i++) {
        snprintf(name, sizeof(name), "e%d.yaml", i);
        snprintf(text, sizeof(text),
                 "nodes:\n  x: {workflow: e%d.yaml}\n  y: {workflow: e%d.yaml}\n", i - 1, i - 1);
        test_write_file(name, text);
    }
    lm_diag diag;
    lm_graph *x = expand_file("e14.yaml", NULL, &diag);
    CHECK(x == NULL);
    CHECK_CONTAINS(find_kind(&diag, "workflow_too_large"), "more than 10000 nodes");
    lm_diag_fini(&diag);
}

void test_graph_expand__confine_dir(void)
{
    mkdir("api", 0755);
    mkdir("api/parts", 0755);
    test_write_file("api/parts/pair.yaml", pair_yaml);
    test_write_file("api/parts/leaf.yaml", leaf_yaml);
    test_write_file("outside.yaml", leaf_yaml);
    CHECK(symlink("../../outside.yaml", "api/parts/link.yaml") == 0);
    lm_expand_opts opts = { "api", 0 };
    static const char *good = "nodes:\n  src: {type: T}\n"
                              "  p: {workflow: parts/pair.yaml, inputs: {image: {link: src.0}}}\n";
    lm_graph *g = NULL, *x = NULL;
    lm_error err;
    lm_diag diag;
    lm_diag_init(&diag);
    REQUIRE_OK(lm_workflow_parse(good, strlen(good), "<request>", &g, &err), &err);
    CHECK_OK(lm_graph_expand(g, &opts, &x, &diag), &diag.items[0]);
    CHECK(x && x->n_nodes == 3);
    lm_graph_free(x);
    lm_graph_free(g);
    static const char *const bad[] = { "../outside.yaml", "parts/../../outside.yaml",
                                       "parts/link.yaml", NULL };
    for (const char *const *b = bad; *b; b++) {
        char text[200];
        snprintf(text, sizeof(text), "nodes:\n  p: {workflow: %s, inputs: {pic: 1}}\n", *b);
        REQUIRE_OK(lm_workflow_parse(text, strlen(text), "<request>", &g, &err), &err);
        lm_diag_fini(&diag);
        CHECK(lm_graph_expand(g, &opts, &x, &diag) != LM_OK);
        CHECK(x == NULL);
        CHECK_CONTAINS(find_kind(&diag, "subworkflow_path_refused"), "leaves the workflow "
                                                                     "directory");
        lm_graph_free(g);
    }
    lm_diag_fini(&diag);
}

void test_graph_expand__not_found(void)
{
    lm_diag diag;
    lm_graph *x = expand_file(test_write_file("nf.yaml", "nodes:\n  p: {workflow: nowhere.yaml}\n"),
                              NULL, &diag);
    CHECK(x == NULL);
    CHECK_CONTAINS(find_kind(&diag, "subworkflow_not_found"),
                   "nf.yaml:2:3: node \"p\": sub-workflow file \"nowhere.yaml\" not found");
    lm_diag_fini(&diag);
}

void test_graph_expand__shared_file_twice(void)
{
    write_parts();
    lm_diag diag;
    lm_graph *x = expand_file(
        test_write_file("twice.yaml",
                        "nodes:\n  s: {type: T}\n"
                        "  l1: {workflow: parts/leaf.yaml, inputs: {pic: {link: s.0}}}\n"
                        "  l2: {workflow: parts/leaf.yaml, inputs: {pic: {link: l1.out}, n: 9}}\n"),
        NULL, &diag);
    REQUIRE(x);
    CHECK_INT(x->n_nodes, 3);
    const lm_graph_node *n = lm_graph_find_node(x, "l2/inv");
    REQUIRE(n);
    CHECK_STR(lm_graph_node_input(n, "image")->link_node, "l1/inv");
    CHECK_INT(lm_value_as_int(lm_graph_node_input(n, "count")->literal), 9);
    CHECK_INT(
        lm_value_as_int(lm_graph_node_input(lm_graph_find_node(x, "l1/inv"), "count")->literal), 3);
    lm_graph_free(x);
    lm_diag_fini(&diag);
}

/* Every ```yaml and ```json block of docs/workflows.md parses; the blocks whose first line
 * names a file ("# parts/soften.yaml") are written as that file, and main.yaml expands. */
void test_graph_expand__docs_examples(void)
{
    char path[4096], *doc = NULL;
    lm_error err;
    snprintf(path, sizeof(path), "%s/docs/workflows.md", test_repo_root());
    REQUIRE_OK(lm_file_read(path, 1u << 20, &doc, NULL, &err), &err);
    mkdir("parts", 0755);
    int blocks = 0;
    for (char *p = doc; (p = strstr(p, "```")) != NULL;) {
        bool code = strncmp(p, "```yaml\n", 8) == 0 || strncmp(p, "```json\n", 8) == 0;
        char *body = strchr(p, '\n'), *end = body ? strstr(body + 1, "```") : NULL;
        if (!end)
            break;
        *end = '\0';
        if (code) {
            body++;
            lm_graph *g = NULL;
            blocks++;
            CHECK_OK(lm_workflow_parse(body, strlen(body), "docs", &g, &err), &err);
            lm_graph_free(g);
            char name[64];
            if (sscanf(body, "# %63s", name) == 1 && lm_str_ends_with(name, ".yaml"))
                test_write_file(name, body);
        }
        p = end + 3;
    }
    free(doc);
    CHECK(blocks >= 6);
    lm_diag diag;
    lm_graph *x = expand_file("main.yaml", NULL, &diag);
    REQUIRE(x);
    const lm_graph_node *mixed = lm_graph_find_node(x, "soft/mixed");
    REQUIRE(mixed);
    CHECK_STR(lm_graph_node_input(mixed, "image1")->link_node, "square");
    CHECK_STR(lm_graph_node_input(lm_graph_find_node(x, "soft/blurred"), "blur_radius")->param,
              "r");
    CHECK_STR(lm_graph_node_input(lm_graph_find_node(x, "save"), "images")->link_node,
              "soft/mixed");
    lm_graph_free(x);
    lm_diag_fini(&diag);
}

void test_graph_expand__alloc_failures(void)
{
    write_parts();
    const char *path = test_write_file("main.yaml", main_yaml);
    lm_graph *g = NULL;
    lm_error err;
    REQUIRE_OK(lm_workflow_load_file(path, &g, &err), &err);
    for (long n = 0; n < 100000; n++) {
        lm_graph *x = NULL;
        lm_diag diag;
        lm_diag_init(&diag);
        lm_alloc_fail_after(n);
        lm_status st = lm_graph_expand(g, NULL, &x, &diag);
        long failures = lm_alloc_failures();
        lm_alloc_fail_after(-1);
        CHECK((st == LM_OK) == (x != NULL));
        lm_graph_free(x);
        lm_diag_fini(&diag);
        if (failures == 0) {
            CHECK_INT(st, LM_OK);
            test_note("walked %ld allocations", n);
            break;
        }
        CHECK(st != LM_OK);
    }
    lm_graph_free(g);
}
