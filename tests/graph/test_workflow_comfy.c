/* tests/graph/test_workflow_comfy.c — ComfyUI API format: the real workflows in
 * ../shared/comfyui_examples (JSON and the PNGs that carry them), the /prompt body form,
 * detection, and errors with places. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/graph.h"
#include "core/workflow.h"
#include "tests/graph/workflow_fixture.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

static const char *const examples[] = {
    "img2img_workflow",  "sd3.5_simple_example", "sd3.5_text_encoders_example",
    "sd3_anime_example", "sd3_simple_example",   "sd3_text_encoders_example"
};
static const int example_nodes[] = { 8, 7, 10, 7, 7, 10 };
static const int example_links[] = { 11, 9, 9, 9, 9, 9 };

static lm_graph *load_example(const char *name, const char *ext)
{
    char rel[128];
    snprintf(rel, sizeof(rel), "comfyui_examples/%s%s", name, ext);
    const char *path = test_shared(rel);
    if (!path)
        return NULL;
    lm_graph *g = NULL;
    lm_error err;
    lm_status st = lm_workflow_load_file(path, &g, &err);
    if (st != LM_OK)
        test__fail_err(__FILE__, __LINE__, "lm_workflow_load_file", st, &err);
    return g;
}

static bool same_input(const lm_graph_input *a, const lm_graph_input *b)
{
    if (strcmp(a->name, b->name) != 0 || a->kind != b->kind || a->link_index != b->link_index)
        return false;
    if (a->kind == LM_GRAPH_INPUT_LINK)
        return strcmp(a->link_node, b->link_node) == 0 && !a->link_output && !b->link_output;
    char x[4096], y[4096];
    lm_value_to_json(a->literal, x, sizeof(x));
    lm_value_to_json(b->literal, y, sizeof(y));
    return lm_value_type(a->literal) == lm_value_type(b->literal) && strcmp(x, y) == 0;
}

/* Same nodes in the same order, same types, same inputs. */
static bool same_graph(const lm_graph *a, const lm_graph *b)
{
    if (a->n_nodes != b->n_nodes)
        return false;
    for (size_t i = 0; i < a->n_nodes; i++) {
        const lm_graph_node *x = &a->nodes[i], *y = &b->nodes[i];
        if (strcmp(x->id, y->id) || strcmp(x->type, y->type) || x->n_inputs != y->n_inputs)
            return false;
        for (size_t k = 0; k < x->n_inputs; k++)
            if (!same_input(&x->inputs[k], &y->inputs[k]))
                return false;
    }
    return true;
}

static int count_links(const lm_graph *g)
{
    int n = 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i].n_inputs; k++)
            n += g->nodes[i].inputs[k].kind == LM_GRAPH_INPUT_LINK;
    return n;
}

void test_graph_workflow_comfy__all_examples(void)
{
    for (size_t i = 0; i < LM_COUNTOF(examples); i++) {
        lm_graph *g = load_example(examples[i], ".api.json");
        if (!g)
            continue;
        test_note("%s: %zu nodes", examples[i], g->n_nodes);
        CHECK_INT(g->format, LM_FORMAT_COMFY_API);
        CHECK_INT(g->n_nodes, example_nodes[i]);
        CHECK_INT(count_links(g), example_links[i]);
        CHECK_STR(g->nodes[0].id, "3");
        CHECK_STR(g->nodes[0].type, "KSampler");
        CHECK(g->n_params == 0 && g->n_outputs == 0);
        lm_graph_free(g);
    }
}

void test_graph_workflow_comfy__sd3_simple_values(void)
{
    lm_graph *g = load_example("sd3_simple_example", ".api.json");
    REQUIRE(g);
    const lm_graph_node *ks = lm_graph_find_node(g, "3");
    REQUIRE(ks);
    const lm_value *seed = lm_graph_node_input(ks, "seed")->literal;
    CHECK_INT(lm_value_type(seed), LM_TYPE_INT);
    CHECK(lm_value_as_int(seed) == 125338548270506LL);
    const lm_value *cfg = lm_graph_node_input(ks, "cfg")->literal;
    CHECK_INT(lm_value_type(cfg), LM_TYPE_FLOAT);
    CHECK(lm_value_as_float(cfg) == 5.45);
    CHECK_INT(lm_value_type(lm_graph_node_input(ks, "steps")->literal), LM_TYPE_INT);
    CHECK_INT(lm_value_type(lm_graph_node_input(ks, "denoise")->literal), LM_TYPE_FLOAT);
    CHECK_STR(lm_value_as_string(lm_graph_node_input(ks, "sampler_name")->literal), "euler");
    const lm_graph_input *model = lm_graph_node_input(ks, "model");
    CHECK(model->kind == LM_GRAPH_INPUT_LINK);
    CHECK_STR(model->link_node, "4");
    CHECK_INT(model->link_index, 0);
    CHECK(model->link_output == NULL);
    CHECK_INT(model->loc.line, 10);
    CHECK_INT(model->loc.col, 13);
    const lm_graph_input *vae = lm_graph_node_input(lm_graph_find_node(g, "8"), "vae");
    CHECK_STR(vae->link_node, "4");
    CHECK_INT(vae->link_index, 2);
    CHECK_INT(g->nodes[1].loc.line, 29);
    CHECK_INT(g->nodes[1].loc.col, 2);
    lm_graph_free(g);
}

void test_graph_workflow_comfy__png_matches_api_json(void)
{
    for (size_t i = 0; i < LM_COUNTOF(examples); i++) {
        lm_graph *a = load_example(examples[i], ".api.json");
        lm_graph *b = load_example(examples[i], ".png");
        if (a && b) {
            CHECK_INT(b->format, LM_FORMAT_COMFY_API);
            CHECK(lm_str_ends_with(b->file, ".png"));
            if (!same_graph(a, b))
                test__fail(__FILE__, __LINE__, "%s.png differs from its .api.json", examples[i]);
        }
        lm_graph_free(a);
        lm_graph_free(b);
    }
}

void test_graph_workflow_comfy__prompt_body(void)
{
    static const char *body = "{\"client_id\": \"abc\", \"prompt\": {\"5\": {\"class_type\": "
                              "\"EmptyImage\", \"inputs\": {\"width\": 64}, \"_meta\": "
                              "{\"title\": \"Blank\"}, \"is_changed\": [\"x\"]}, \"6\": "
                              "{\"class_type\": \"ImageInvert\", \"inputs\": {\"image\": "
                              "[\"5\", 0]}}}, \"extra_data\": {\"extra_pnginfo\": {}}}";
    lm_graph *g = NULL;
    lm_error err;
    REQUIRE_OK(lm_workflow_parse(body, strlen(body), "<request>", &g, &err), &err);
    CHECK_INT(g->format, LM_FORMAT_COMFY_API);
    CHECK_INT(g->n_nodes, 2);
    CHECK_STR(g->nodes[0].title, "Blank");
    CHECK_STR(g->nodes[1].inputs[0].link_node, "5");
    lm_graph_free(g);
}

static const char *parse_error(const char *text, lm_error *err)
{
    return wf_parse_error(text, "api.json", err);
}

void test_graph_workflow_comfy__errors(void)
{
    lm_error err;
    const char *line = parse_error("{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": "
                                   "null}}}",
                                   &err);
    CHECK_CONTAINS(line, "api.json:1:53: node \"3\" (KSampler) input \"seed\": null is not a "
                         "value");
    CHECK_STR(err.kind, "invalid_prompt");
    line =
        parse_error("{\"3\": {\"class_type\": \"K\", \"inputs\": {\"m\": [\"4\", 0, 1]}}}", &err);
    CHECK_CONTAINS(line, "api.json:1:43: node \"3\" (K) input \"m\": a list is not a valid input "
                         "value");
    line = parse_error("{\"3\": {\"class_type\": \"K\", \"inputs\": {\"m\": [4, 0]}}}", &err);
    CHECK_CONTAINS(line, "a list is not a valid input value");
    line = parse_error("{\"3\": {\"class_type\": \"K\", \"inputs\": {\"m\": [\"4\", -1]}}}", &err);
    CHECK_CONTAINS(line, "api.json:1:49: node \"3\" (K) input \"m\": the output index is out of "
                         "range");
    line = parse_error("{\"3\": {\"class_type\": \"K\", \"inputs\": {}},\n \"4\": {\"inputs\": {}, "
                       "\"class_type\": 5}}",
                       &err);
    CHECK_CONTAINS(line, "api.json:2:36: node \"4\": the node has no \"class_type\" string");
    line = parse_error("{\"3\": {\"class_type\": \"K\"}}", &err);
    CHECK_CONTAINS(line, "api.json:1:7: node \"3\" (K): the node has no \"inputs\" object");
    line = parse_error("{\"3\": {\"class_type\": \"K\", \"inputs\": {\"o\": {\"a\": 1}}}}", &err);
    CHECK_CONTAINS(line, "an object is not a valid input value");
    line = parse_error("{\"3\": {\"class_type\": \"K\", \"inputs\": {}}, \"a b\": {\"class_type\": "
                       "\"K\", \"inputs\": {}}}",
                       &err);
    CHECK_CONTAINS(line, "node id \"a b\" is not valid");
    line = parse_error("{\"prompt\": {}}", &err);
    CHECK_CONTAINS(line, "the prompt holds no nodes");
    line = parse_error("{\"last_node_id\": 9, \"nodes\": [], \"links\": []}", &err);
    CHECK_CONTAINS(line, "this is ComfyUI's editor format, not its API format");
}

void test_graph_workflow_comfy__literal_strings_stay_literal(void)
{
    lm_graph *g = NULL;
    lm_error err;
    static const char *text = "{\"1\": {\"class_type\": \"T\", \"inputs\": {\"a\": \"4.IMAGE\", "
                              "\"b\": [\"4\", 0], \"c\": \"[\\\"4\\\", 0]\"}}}";
    REQUIRE_OK(lm_workflow_parse(text, strlen(text), "x.json", &g, &err), &err);
    CHECK_INT(g->nodes[0].inputs[0].kind, LM_GRAPH_INPUT_LITERAL);
    CHECK_INT(g->nodes[0].inputs[1].kind, LM_GRAPH_INPUT_LINK);
    CHECK_INT(g->nodes[0].inputs[2].kind, LM_GRAPH_INPUT_LITERAL);
    CHECK_STR(lm_value_as_string(g->nodes[0].inputs[2].literal), "[\"4\", 0]");
    lm_graph_free(g);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(lm_str *s, uint32_t v)
{
    char b[4] = { (char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v };
    lm_str_appendn(s, b, 4);
}

/* A copy of a PNG without its tEXt "prompt" chunk; with `replacement`, a new prompt chunk
 * holding that text takes its place. */
static const char *rewrite_png(const char *src, const char *dst, const char *replacement)
{
    char *data = NULL;
    size_t len = 0;
    lm_error err;
    if (lm_file_read(src, 64u << 20, &data, &len, &err) != LM_OK)
        return NULL;
    lm_str out;
    lm_str_init(&out);
    lm_str_appendn(&out, data, 8);
    for (size_t at = 8; at + 12 <= len;) {
        const unsigned char *c = (const unsigned char *)data + at;
        size_t n = be32(c);
        if (memcmp(c + 4, "tEXt", 4) == 0 && n >= 7 && memcmp(c + 8, "prompt", 7) == 0) {
            if (replacement) {
                lm_str chunk;
                lm_str_init(&chunk);
                lm_str_append(&chunk, "tEXtprompt");
                lm_str_appendn(&chunk, "", 1);
                lm_str_append(&chunk, replacement);
                put_be32(&out, (uint32_t)(chunk.len - 4));
                lm_str_appendn(&out, chunk.data, chunk.len);
                put_be32(&out, (uint32_t)crc32(0, (const Bytef *)chunk.data, (uInt)chunk.len));
                lm_str_fini(&chunk);
            }
        } else {
            lm_str_appendn(&out, (const char *)c, n + 12);
        }
        at += n + 12;
    }
    FILE *f = fopen(dst, "wb");
    if (f) {
        fwrite(out.data, 1, out.len, f);
        fclose(f);
    }
    lm_str_fini(&out);
    lm_free(data);
    return f ? dst : NULL;
}

void test_graph_workflow_comfy__png_without_prompt(void)
{
    const char *src = test_shared("comfyui_examples/sd3_simple_example.png");
    REQUIRE(src);
    const char *path = rewrite_png(src, "plain.png", NULL);
    REQUIRE(path);
    lm_graph *g = NULL;
    lm_error err;
    CHECK(lm_workflow_load_file(path, &g, &err) == LM_ENOTFOUND);
    CHECK(g == NULL);
    char line[600];
    lm_error_format(&err, line, sizeof(line));
    test_note("%s", line);
    CHECK_CONTAINS(line, "plain.png: this PNG carries no workflow");
    CHECK_STR(err.kind, "no_workflow");
}

void test_graph_workflow_comfy__png_bad_prompt_has_place(void)
{
    const char *src = test_shared("comfyui_examples/sd3_simple_example.png");
    REQUIRE(src);
    const char *path =
        rewrite_png(src, "bad.png", "{\"3\": {\"class_type\": \"K\",\n \"inputs\" 1}}");
    REQUIRE(path);
    lm_graph *g = NULL;
    lm_error err;
    CHECK(lm_workflow_load_file(path, &g, &err) == LM_EFORMAT);
    char line[600];
    lm_error_format(&err, line, sizeof(line));
    test_note("%s", line);
    CHECK_CONTAINS(line, "bad.png (prompt chunk):2:11: JSON syntax error: expected ':'");
    /* And a good replacement parses. */
    path = rewrite_png(src, "good.png", "{\"7\": {\"class_type\": \"K\", \"inputs\": {}}}");
    REQUIRE(path);
    REQUIRE_OK(lm_workflow_load_file(path, &g, &err), &err);
    CHECK_STR(g->nodes[0].id, "7");
    CHECK_STR(g->file, "good.png");
    lm_graph_free(g);
}

void test_graph_workflow_comfy__alloc_failures(void)
{
    const char *path = test_shared("comfyui_examples/img2img_workflow.api.json");
    REQUIRE(path);
    wf_check_alloc_walk(NULL, path);
}
