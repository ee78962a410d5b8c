/* tests/cli/test_api_json.c — the ComfyUI API-format twins of the shipped workflows
 * (workflows/<name>.api.json beside workflows/<name>.yaml, written by tools/export_api.sh)
 * cannot drift: each validates with `loom validate --json` and resolves to the same plan as
 * its YAML twin at the default parameters.
 *
 * "The same plan" is compared modulo node ids, which differ by design (the YAML's
 * "prompts/pos" is "5" in the twin): every plan node gets a signature made of its
 * class_type, its literal inputs and, for each linked input, the output index and the
 * signature of the node it links to (recursively, so the signature is the node's whole
 * upstream graph); the two plans must hold the same multiset of signatures. Titles are
 * not compared. The models directory is links to the tiny checkpoints of ../shared/golden
 * under the names the workflows use by default, and input/input.png a ComfyUI example. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The shipped workflows that have a ComfyUI twin; more twins are picked up by name. */
static const char *const expected[] = { "sd3_medium_txt2img", "sd35_medium_txt2img",
                                        "sd3_img2img" };

static bool link_shared(const char *rel, const char *dst)
{
    const char *src = test_shared(rel);
    return src && symlink(src, dst) == 0;
}

static bool make_models(void)
{
    lm_error err;
    return lm_mkdirs("models/checkpoints", &err) == LM_OK &&
           lm_mkdirs("models/text_encoders", &err) == LM_OK && lm_mkdirs("input", &err) == LM_OK &&
           link_shared("golden/sd3m_tiny.safetensors",
                       "models/checkpoints/sd3_medium_incl_clips_t5xxlfp8.safetensors") &&
           link_shared("golden/split/sd35m/sd35m_tiny_noenc.safetensors",
                       "models/checkpoints/sd3.5_medium.safetensors") &&
           link_shared("golden/split/sd35m/clip_l.safetensors",
                       "models/text_encoders/clip_l.safetensors") &&
           link_shared("golden/split/sd35m/clip_g.safetensors",
                       "models/text_encoders/clip_g.safetensors") &&
           link_shared("golden/split/sd35m/t5xxl_fp16.safetensors",
                       "models/text_encoders/t5xxl_fp16.safetensors") &&
           link_shared("comfyui_examples/img2img_workflow.png", "input/input.png");
}

/* `loom validate --json` of workflows/<file>: the "prompt" object (NULL, the test failed,
 * when it does not validate). */
static cJSON *validated_prompt(const char *file)
{
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof(cmd), "'%s' validate --json '%s/workflows/%s' --models models",
             test_loom_bin(), test_repo_root(), file);
    int rc = test_run_capture(cmd, &out);
    const char *line = out ? strstr(out, "{\"valid\"") : NULL;
    cJSON *root = line ? cJSON_Parse(line) : NULL, *prompt = NULL;
    if (rc != 0 || !cJSON_IsTrue(cJSON_GetObjectItem(root, "valid")))
        test__fail(__FILE__, __LINE__, "%s: loom validate exits %d: %s", file, rc,
                   out ? out : "(no output)");
    else
        prompt = cJSON_DetachItemFromObject(root, "prompt");
    if (rc == 0 && !cJSON_IsObject(prompt))
        test__fail(__FILE__, __LINE__, "%s: no \"prompt\" object in %s", file, out);
    cJSON_Delete(root);
    free(out);
    return prompt;
}

/* ---- signatures ---- */

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static int by_text(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void signature(const cJSON *prompt, const cJSON *node, int depth, lm_str *s);

/* One input: name=literal, or name=<output index>@(signature of the source). */
static void input_signature(const cJSON *prompt, const cJSON *in, int depth, lm_str *s)
{
    lm_str_appendf(s, "%s=", in->string);
    const cJSON *src = cJSON_IsArray(in) ? cJSON_GetArrayItem(in, 0) : NULL;
    if (cJSON_IsString(src) && cJSON_GetArraySize(in) == 2) {
        lm_str_appendf(s, "%d@(", cJSON_GetArrayItem(in, 1)->valueint);
        signature(prompt, cJSON_GetObjectItem(prompt, src->valuestring), depth + 1, s);
        lm_str_append(s, ")");
        return;
    }
    char *lit = cJSON_PrintUnformatted(in);
    lm_str_append(s, lit ? lit : "?");
    cJSON_free(lit);
}

/* class_type{literals, then links, each sorted by name}; the plans are acyclic, depth only guards a
 * broken one. */
static void signature(const cJSON *prompt, const cJSON *node, int depth, lm_str *s)
{
    const cJSON *inputs = cJSON_GetObjectItem(node, "inputs"), *in;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(node, "class_type"));
    lm_str_appendf(s, "%s{", type ? type : "?");
    const cJSON *sorted[64];
    int n = 0;
    cJSON_ArrayForEach(in, inputs)
    {
        if (n < 64)
            sorted[n++] = in;
    }
    qsort(sorted, (size_t)n, sizeof(sorted[0]), by_name);
    for (int links = 0; links < 2; links++) { /* literals first: a difference reads early */
        for (int i = 0; i < n && depth < 64; i++) {
            if (cJSON_IsArray(sorted[i]) != (links == 1))
                continue;
            input_signature(prompt, sorted[i], depth, s);
            lm_str_append(s, ";");
        }
    }
    lm_str_append(s, "}");
}

/* Every node's signature, sorted; *n_out of them (free each and the array). */
static char **signatures(const cJSON *prompt, int *n_out)
{
    int n = cJSON_GetArraySize(prompt), i = 0;
    char **sigs = calloc((size_t)n + 1, sizeof(*sigs));
    const cJSON *node;
    cJSON_ArrayForEach(node, prompt)
    {
        lm_str s;
        lm_str_init(&s);
        signature(prompt, node, 0, &s);
        sigs[i++] = lm_str_take(&s);
    }
    qsort(sigs, (size_t)n, sizeof(*sigs), by_text);
    *n_out = n;
    return sigs;
}

static void free_signatures(char **sigs, int n)
{
    for (int i = 0; i < n; i++)
        lm_free(sigs[i]);
    free(sigs);
}

/* How many signatures one sorted list has that the other lacks (a multiset difference, both
 * ways), noting them when `a_name` is given. */
static int difference(const char *a_name, char **a, int na, const char *b_name, char **b, int nb)
{
    int i = 0, j = 0, n = 0;
    while (i < na || j < nb) {
        int c = i >= na ? 1 : j >= nb ? -1 : strcmp(a[i], b[j]);
        if (c == 0) {
            i++, j++;
            continue;
        }
        n++;
        if (a_name)
            test_note("only in %s: %.600s", c < 0 ? a_name : b_name, c < 0 ? a[i] : b[j]);
        if (c < 0)
            i++;
        else
            j++;
    }
    return n;
}

/* workflows/<stem>.api.json against workflows/<stem>.yaml. */
static void check_twin(const char *stem)
{
    char api[512], yaml[512];
    snprintf(api, sizeof(api), "%s.api.json", stem);
    snprintf(yaml, sizeof(yaml), "%s.yaml", stem);
    cJSON *pa = validated_prompt(api), *py = validated_prompt(yaml);
    if (pa && py) {
        int na = 0, ny = 0;
        char **sa = signatures(pa, &na), **sy = signatures(py, &ny);
        bool same = difference(NULL, sa, na, NULL, sy, ny) == 0;
        test_note("%s: %d nodes, %s", stem, na, same ? "the same plan" : "different plans");
        if (!same) {
            difference(api, sa, na, yaml, sy, ny);
            test__fail(__FILE__, __LINE__, "%s and %s differ; run tools/export_api.sh workflows/%s",
                       api, yaml, yaml);
        }
        cJSON *node;
        cJSON_ArrayForEach(node, pa)
        { /* ComfyUI's kind of ids, and every node plain API format */
            char *end = NULL;
            strtol(node->string, &end, 10);
            if (!*node->string || *end || !cJSON_GetObjectItem(node, "class_type"))
                test__fail(__FILE__, __LINE__, "%s: node \"%s\" is not a numbered API node", api,
                           node->string);
        }
        free_signatures(sa, na);
        free_signatures(sy, ny);
    }
    cJSON_Delete(pa);
    cJSON_Delete(py);
}

void test_cli_api_json__twins_resolve_to_their_yaml_plans(void)
{
    REQUIRE(make_models());
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/workflows", test_repo_root());
    DIR *d = opendir(dir);
    REQUIRE(d);
    size_t found = 0, seen = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!lm_str_ends_with(e->d_name, ".api.json"))
            continue;
        char stem[256];
        size_t len = strlen(e->d_name) - strlen(".api.json");
        if (len >= sizeof(stem))
            continue;
        memcpy(stem, e->d_name, len);
        stem[len] = '\0';
        seen++;
        for (size_t i = 0; i < LM_COUNTOF(expected); i++)
            found += strcmp(stem, expected[i]) == 0;
        check_twin(stem);
    }
    closedir(d);
    CHECK_INT(found, LM_COUNTOF(expected));
    test_note("%zu twins checked", seen);
}

/* The comparison notices a change: a twin with one literal changed is another plan. */
void test_cli_api_json__a_changed_literal_is_noticed(void)
{
    REQUIRE(make_models());
    cJSON *py = validated_prompt("sd3_img2img.yaml");
    REQUIRE(py);
    int n1 = 0, n2 = 0;
    char **before = signatures(py, &n1);
    cJSON *node;
    cJSON_ArrayForEach(node, py)
    {
        cJSON *denoise = cJSON_GetObjectItem(cJSON_GetObjectItem(node, "inputs"), "denoise");
        if (denoise)
            cJSON_SetNumberValue(denoise, 0.5);
    }
    char **after = signatures(py, &n2);
    CHECK_INT(n1, n2);
    /* KSampler, then VAEDecode and SaveImage below it: 3 gone, 3 new */
    CHECK_INT(difference(NULL, before, n1, NULL, after, n2), 6);
    free_signatures(before, n1);
    free_signatures(after, n2);
    cJSON_Delete(py);
}
