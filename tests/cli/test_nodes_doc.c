/* tests/cli/test_nodes_doc.c — what `loom nodes` reports: the /object_info JSON
 * (daemon/object_info.c) for real and made-up descriptors, the text list and description,
 * unknown names with suggestions and exit codes, and the Markdown node reference. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/registry.h"
#include "daemon/cmd_nodes.h"
#include "daemon/object_info.h"
#include "nodes/builtin.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern const lm_node_def lm_node_primitive_int, lm_node_primitive_float, lm_node_primitive_string,
    lm_node_primitive_string_multiline, lm_node_primitive_boolean, lm_node_int_math,
    lm_node_float_math, lm_node_string_format, lm_node_string_concatenate;

/* ---- a made-up node with every kind of input ---- */

static lm_status no_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(ctx), LM_UNUSED(in), LM_UNUSED(out);
    return lm_errorf(err, LM_EUNSUPPORTED, NULL, "not for running");
}

static lm_status two_files(const lm_env *env, lm_strlist *out, lm_error *err)
{
    LM_UNUSED(env);
    lm_status st = lm_strlist_push(out, "b.safetensors", err);
    return st == LM_OK ? lm_strlist_push(out, "a.safetensors", err) : st;
}

static lm_status broken_folder(const lm_env *env, lm_strlist *out, lm_error *err)
{
    LM_UNUSED(env), LM_UNUSED(out);
    return lm_errorf(err, LM_EIO, NULL, "cannot list");
}

static const lm_input_def probe_in[] = {
    { "image", LM_TYPE_IMAGE, .help = "The picture." },
    { "strength", LM_TYPE_FLOAT,
      .f = { .def = 0.75, .min = 0, .max = 1, .step = 0.01, .round = 0.001 },
      .help = "How much | changes." },
    { "seed", LM_TYPE_INT, .i = { .def = 5, .min = 0, .max = INT64_MAX }, .flags = LM_INPUT_SEED },
    { "ckpt_name", LM_TYPE_STRING, .choices_fn = two_files },
    { "vae_name", LM_TYPE_STRING, .choices_fn = broken_folder },
    { "text", LM_TYPE_STRING, .flags = LM_INPUT_LINK_ONLY },
    { "flip", LM_TYPE_BOOLEAN, .b_def = true, .flags = LM_INPUT_OPTIONAL },
};
static const lm_output_def probe_out[] = {
    { "IMAGE", LM_TYPE_IMAGE, "The result." },
    { "count", LM_TYPE_INT, NULL },
};
static const lm_node_def probe_node = {
    .name = "ProbeNode",
    .display_name = "Probe",
    .category = "testing",
    .description = "A node for tests.\nSecond line.",
    .inputs = probe_in,
    .n_inputs = LM_COUNTOF(probe_in),
    .outputs = probe_out,
    .n_outputs = LM_COUNTOF(probe_out),
    .flags = LM_NODE_OUTPUT,
    .run = no_run,
};

static lm_registry *util_registry(void)
{
    const lm_node_def *defs[] = { &lm_node_primitive_int,      &lm_node_primitive_float,
                                  &lm_node_primitive_string,   &lm_node_primitive_string_multiline,
                                  &lm_node_primitive_boolean,  &lm_node_int_math,
                                  &lm_node_float_math,         &lm_node_string_format,
                                  &lm_node_string_concatenate, &probe_node };
    lm_registry *reg = NULL;
    lm_error err;
    if (lm_registry_new(&reg, &err) != LM_OK)
        return NULL;
    for (size_t i = 0; i < LM_COUNTOF(defs); i++) {
        if (lm_registry_add(reg, defs[i], &err) != LM_OK) {
            test__fail_err(__FILE__, __LINE__, "lm_registry_add", err.code, &err);
            lm_registry_free(reg);
            return NULL;
        }
    }
    return reg;
}

static cJSON *at(const cJSON *obj, const char *path)
{
    char key[128];
    while (obj && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof(key), "%.*s", (int)n, path);
        if (cJSON_IsArray(obj))
            obj = cJSON_GetArrayItem(obj, atoi(key));
        else
            obj = cJSON_GetObjectItemCaseSensitive(obj, key);
        path += n + (path[n] == '.');
    }
    return (cJSON *)obj;
}

static const char *str_at(const cJSON *obj, const char *path)
{
    const cJSON *v = at(obj, path);
    return cJSON_IsString(v) ? v->valuestring : "(not a string)";
}

static double num_at(const cJSON *obj, const char *path)
{
    const cJSON *v = at(obj, path);
    return cJSON_IsNumber(v) ? v->valuedouble : -999999;
}

static cJSON *object_info(const lm_registry *reg, const lm_env *env, const char *only)
{
    char *text = lm_object_info_json(reg, env, only);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    lm_free(text);
    return root;
}

/* ---- object_info ---- */

void test_cli_nodes_doc__object_info_util_nodes(void)
{
    lm_registry *reg = util_registry();
    REQUIRE(reg != NULL);
    cJSON *root = object_info(reg, NULL, NULL);
    REQUIRE(root != NULL);
    CHECK_INT(cJSON_GetArraySize(root), 10);
    const cJSON *im = at(root, "IntMath");
    CHECK_STR(str_at(im, "name"), "IntMath");
    CHECK_STR(str_at(im, "display_name"), "Int Math");
    CHECK_STR(str_at(im, "category"), "utils/math");
    CHECK_STR(str_at(im, "python_module"), "nodes");
    CHECK(cJSON_IsFalse(at(im, "output_node")));
    CHECK_STR(str_at(im, "input.required.a.0"), "INT");
    CHECK_NEAR(num_at(im, "input.required.a.1.default"), 0, 0);
    CHECK_NEAR(num_at(im, "input.required.a.1.min"), -9.223372036854775807e18, 1e4);
    CHECK_NEAR(num_at(im, "input.required.b.1.default"), 1, 0);
    CHECK_INT(cJSON_GetArraySize(at(im, "input.required.op.0")), 8);
    CHECK_STR(str_at(im, "input.required.op.0.0"), "add");
    CHECK_STR(str_at(im, "input.required.op.0.7"), "max");
    CHECK_STR(str_at(im, "input.required.op.1.default"), "add");
    CHECK_CONTAINS(str_at(im, "input.required.op.1.tooltip"), "floors");
    CHECK_STR(str_at(im, "input_order.required.2"), "op");
    CHECK(at(im, "input.optional") == NULL);
    CHECK_STR(str_at(im, "output.0"), "INT");
    CHECK_STR(str_at(im, "output_name.0"), "INT");
    CHECK(cJSON_IsFalse(at(im, "output_is_list.0")));
    CHECK_STR(str_at(im, "output_tooltips.0"), "a op b.");
    const cJSON *sf = at(root, "StringFormat");
    CHECK(cJSON_IsTrue(at(sf, "input.required.format.1.multiline")));
    CHECK_STR(str_at(sf, "input.required.format.1.default"), "{a}");
    CHECK_STR(str_at(sf, "input.optional.c.0"), "*");
    CHECK_INT(cJSON_GetArraySize(at(sf, "input_order.optional")), 4);
    CHECK_STR(str_at(sf, "input_order.optional.3"), "d");
    CHECK(cJSON_IsTrue(at(root, "PrimitiveInt.input.required.value.1.control_after_generate")));
    CHECK(cJSON_IsFalse(at(root, "PrimitiveBoolean.input.required.value.1.default")));
    CHECK_STR(str_at(root, "StringConcatenate.input.required.delimiter.1.default"), "");
    cJSON_Delete(root);
    lm_registry_free(reg);
}

void test_cli_nodes_doc__object_info_every_input_kind(void)
{
    lm_registry *reg = util_registry();
    REQUIRE(reg != NULL);
    lm_env env = { .models_dir = "models" };
    cJSON *root = object_info(reg, &env, "ProbeNode");
    REQUIRE(root != NULL);
    CHECK_INT(cJSON_GetArraySize(root), 1);
    const cJSON *p = at(root, "ProbeNode");
    CHECK(cJSON_IsTrue(at(p, "output_node")));
    CHECK_STR(str_at(p, "input.required.image.0"), "IMAGE");
    CHECK_STR(str_at(p, "input.required.image.1.tooltip"), "The picture.");
    CHECK_NEAR(num_at(p, "input.required.strength.1.default"), 0.75, 0);
    CHECK_NEAR(num_at(p, "input.required.strength.1.max"), 1, 0);
    CHECK_NEAR(num_at(p, "input.required.strength.1.step"), 0.01, 0);
    CHECK_NEAR(num_at(p, "input.required.strength.1.round"), 0.001, 0);
    CHECK(cJSON_IsTrue(at(p, "input.required.seed.1.control_after_generate")));
    CHECK_NEAR(num_at(p, "input.required.seed.1.max"), 9.223372036854775807e18, 1e4);
    CHECK_STR(str_at(p, "input.required.ckpt_name.0.0"), "b.safetensors");
    CHECK_STR(str_at(p, "input.required.ckpt_name.0.1"), "a.safetensors");
    CHECK_STR(str_at(p, "input.required.ckpt_name.1.default"), "b.safetensors");
    CHECK(cJSON_IsArray(at(p, "input.required.vae_name.0")));
    CHECK_INT(cJSON_GetArraySize(at(p, "input.required.vae_name.0")), 0);
    CHECK(cJSON_IsTrue(at(p, "input.required.text.1.forceInput")));
    CHECK(cJSON_IsTrue(at(p, "input.optional.flip.1.default")));
    CHECK_STR(str_at(p, "input_order.optional.0"), "flip");
    CHECK_STR(str_at(p, "output_name.1"), "count");
    CHECK_STR(str_at(p, "output_tooltips.1"), "");
    cJSON_Delete(root);
    /* Without an env, dynamic combos are empty lists; an unknown name is an empty object. */
    root = object_info(reg, NULL, "ProbeNode");
    CHECK_INT(cJSON_GetArraySize(at(root, "ProbeNode.input.required.ckpt_name.0")), 0);
    cJSON_Delete(root);
    root = object_info(reg, NULL, "NoSuchNode");
    CHECK(cJSON_IsObject(root) && cJSON_GetArraySize(root) == 0);
    cJSON_Delete(root);
    lm_registry_free(reg);
}

/* ---- the command ---- */

/* Runs lm_cmd_nodes with stdout and stderr sent to files; returns its exit code. */
static int nodes_cmd(const lm_registry *reg, const char *args, char **out, char **errs)
{
    char buf[512], *argv[16];
    int argc = 0;
    snprintf(buf, sizeof(buf), "nodes %s", args);
    for (char *tok = strtok(buf, " "); tok && argc < 16; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    fflush(stdout), fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int fo = open("out.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open("err.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fo, 1), dup2(fe, 2);
    close(fo), close(fe);
    lm_env env = { .models_dir = "models" };
    int code = lm_cmd_nodes(argc, argv, reg, &env);
    fflush(stdout), fflush(stderr);
    dup2(saved_out, 1), dup2(saved_err, 2);
    close(saved_out), close(saved_err);
    lm_error err;
    size_t len;
    if (lm_file_read("out.txt", 1 << 24, out, &len, &err) != LM_OK)
        *out = NULL;
    if (lm_file_read("err.txt", 1 << 24, errs, &len, &err) != LM_OK)
        *errs = NULL;
    return code;
}

void test_cli_nodes_doc__text_list_and_description(void)
{
    lm_registry *reg = util_registry();
    REQUIRE(reg != NULL);
    char *out, *errs;
    CHECK_INT(nodes_cmd(reg, "", &out, &errs), 0);
    CHECK_CONTAINS(out, "NAME");
    CHECK_CONTAINS(out, "IntMath");
    CHECK_CONTAINS(out, "utils/primitive");
    CHECK_CONTAINS(out, "10 node types");
    /* By category: testing < utils/math < utils/primitive < utils/string. */
    CHECK(out && strstr(out, "ProbeNode") < strstr(out, "FloatMath"));
    CHECK(out && strstr(out, "IntMath") < strstr(out, "PrimitiveBoolean"));
    CHECK(out && strstr(out, "PrimitiveString") < strstr(out, "StringConcatenate"));
    CHECK(out && !strstr(out, "Second line"));
    lm_free(out), lm_free(errs);
    CHECK_INT(nodes_cmd(reg, "ProbeNode", &out, &errs), 0);
    CHECK_CONTAINS(out, "ProbeNode (Probe) — category testing, output node");
    CHECK_CONTAINS(out, "strength: FLOAT; default 0.75; 0 to 1, step 0.01");
    CHECK_CONTAINS(out, "ckpt_name: COMBO; default —; one of b.safetensors or a.safetensors");
    CHECK_CONTAINS(out, "vae_name: COMBO; default —; a file name, listed at run time");
    CHECK_CONTAINS(out, "flip: BOOLEAN (optional); default true");
    CHECK_CONTAINS(out, "text: STRING (link); default —");
    CHECK_CONTAINS(out, "outputs:\n  IMAGE: IMAGE\n      The result.\n  count: INT\n");
    lm_free(out), lm_free(errs);
    lm_registry_free(reg);
}

void test_cli_nodes_doc__unknown_name_suggests(void)
{
    lm_registry *reg = util_registry();
    REQUIRE(reg != NULL);
    char *out, *errs;
    CHECK_INT(nodes_cmd(reg, "IntMth", &out, &errs), 2);
    CHECK_CONTAINS(errs, "unknown node type \"IntMth\"; did you mean \"IntMath\"?\n");
    CHECK(out && out[0] == '\0');
    lm_free(out), lm_free(errs);
    CHECK_INT(nodes_cmd(reg, "--json Zzzzzzzzzzzz", &out, &errs), 2);
    CHECK_CONTAINS(errs, "run loom nodes for the list");
    lm_free(out), lm_free(errs);
    CHECK_INT(nodes_cmd(reg, "--json --markdown", &out, &errs), 2);
    CHECK_CONTAINS(errs, "usage: loom nodes");
    lm_free(out), lm_free(errs);
    CHECK_INT(nodes_cmd(reg, "IntMath FloatMath", &out, &errs), 2);
    lm_free(out), lm_free(errs);
    CHECK_INT(nodes_cmd(reg, "--frobnicate", &out, &errs), 2);
    lm_free(out), lm_free(errs);
    lm_registry_free(reg);
}

void test_cli_nodes_doc__json_form(void)
{
    lm_registry *reg = util_registry();
    REQUIRE(reg != NULL);
    char *out, *errs;
    CHECK_INT(nodes_cmd(reg, "--json", &out, &errs), 0);
    cJSON *root = cJSON_Parse(out);
    CHECK_INT(cJSON_GetArraySize(root), 10);
    cJSON_Delete(root);
    lm_free(out), lm_free(errs);
    CHECK_INT(nodes_cmd(reg, "--json FloatMath", &out, &errs), 0);
    root = cJSON_Parse(out);
    CHECK_INT(cJSON_GetArraySize(root), 1);
    CHECK_STR(str_at(root, "FloatMath.output.0"), "FLOAT");
    cJSON_Delete(root);
    lm_free(out), lm_free(errs);
    lm_registry_free(reg);
}

void test_cli_nodes_doc__markdown_form(void)
{
    lm_registry *reg = util_registry();
    REQUIRE(reg != NULL);
    char *md = lm_cmd_nodes_markdown(reg, NULL);
    REQUIRE(md != NULL);
    CHECK(strncmp(md, "# Node reference\n", 17) == 0);
    CHECK_CONTAINS(md, "do not edit");
    CHECK_CONTAINS(md, "`loom nodes --markdown`");
    CHECK_CONTAINS(md, "10 node types in 4 categories.");
    CHECK_CONTAINS(md, "- [utils/math](#utilsmath): [FloatMath](#floatmath), "
                       "[IntMath](#intmath)\n");
    CHECK_CONTAINS(md, "## utils/string\n\n### StringConcatenate\n");
    CHECK_CONTAINS(md, "| `op` | COMBO | `add` | one of `add`, `subtract`, ");
    CHECK_CONTAINS(md, "| `strength` | FLOAT | 0.75 | 0 to 1, step 0.01 | How much \\| changes. |");
    CHECK_CONTAINS(md, "| `ckpt_name` | COMBO | — | a file name, listed at run time |");
    CHECK_CONTAINS(md, "| `delimiter` | STRING | *empty* | text |");
    CHECK_CONTAINS(md, "**Probe** · category `testing` · output node\n\nA node for tests.");
    CHECK_CONTAINS(md, "| `count` | INT |  |\n");
    CHECK(!strstr(md, "b.safetensors"));
    char *one = lm_cmd_nodes_markdown(reg, "IntMath");
    CHECK(one && strncmp(one, "### IntMath\n", 12) == 0 && strstr(md, one));
    lm_free(one);
    CHECK(lm_cmd_nodes_markdown(reg, "Nope") == NULL);
    lm_free(md);
    lm_registry_free(reg);
}

/* ---- docs/nodes.md ---- */

static const char regenerate[] = "regenerate it with build/loom nodes --markdown > docs/nodes.md";

/* Fails naming the first line where the committed file and the generated text differ. */
static void report_first_difference(const char *have, const char *want)
{
    int line = 1;
    const char *h = have, *w = want, *h_line = have, *w_line = want;
    for (; *h && *h == *w; h++, w++) {
        if (*h == '\n') {
            line++;
            h_line = h + 1;
            w_line = w + 1;
        }
    }
    int h_len = (int)LM_MIN(strcspn(h_line, "\n"), 120);
    int w_len = (int)LM_MIN(strcspn(w_line, "\n"), 120);
    test__fail(__FILE__, __LINE__,
               "docs/nodes.md line %d is \"%.*s\" but the registry gives \"%.*s\"; %s", line, h_len,
               h_line, w_len, w_line, regenerate);
}

/* docs/nodes.md is generated from the built-in registry: this fails, naming the first line
 * that differs, whenever a descriptor changed and the file was not regenerated. */
void test_cli_nodes_doc__docs_nodes_md_is_current(void)
{
    lm_registry *reg = NULL;
    lm_error err;
    REQUIRE_OK(lm_registry_new(&reg, &err), &err);
    CHECK_OK(lm_nodes_register_builtin(reg, &err), &err);
    char *want = lm_cmd_nodes_markdown(reg, NULL), *have = NULL, path[4096];
    REQUIRE(want != NULL);
    for (size_t i = 0; i < lm_registry_count(reg); i++) {
        char heading[200];
        snprintf(heading, sizeof(heading), "\n### %s\n", lm_registry_at(reg, i)->name);
        CHECK_CONTAINS(want, heading);
    }
    snprintf(path, sizeof(path), "%s/docs/nodes.md", test_repo_root());
    size_t len;
    if (lm_file_read(path, 1 << 24, &have, &len, &err) != LM_OK)
        test__fail(__FILE__, __LINE__, "%s cannot be read; %s", path, regenerate);
    else if (strcmp(have, want) != 0)
        report_first_difference(have, want);
    lm_free(have);
    lm_free(want);
    lm_registry_free(reg);
}
