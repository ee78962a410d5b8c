/* core/validate_json.c — JSON renderings for the validator: the plan's prompt (ComfyUI API
 * format, what SaveImage embeds so a PNG re-runs exactly), its parameters, and a diag as
 * ComfyUI's /prompt error body.
 *
 * Numbers go out as raw text from lm_value_to_json, never through cJSON's doubles, so a
 * 64-bit seed and a float such as 5.45 come back bit for bit. Strings cJSON returns are
 * malloc'd; they are copied into lm_malloc'd ones for the caller. */
#include "core/base/alloc.h"
#include "core/validate_impl.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static cJSON *literal_json(const lm_value *v)
{
    lm_type type = lm_value_type(v);
    if (type == LM_TYPE_STRING)
        return cJSON_CreateString(lm_value_as_string(v));
    if (type != LM_TYPE_INT && type != LM_TYPE_FLOAT && type != LM_TYPE_BOOLEAN)
        return cJSON_CreateNull();
    char buf[64];
    lm_value_to_json(v, buf, sizeof(buf));
    return cJSON_CreateRaw(buf);
}

/* Prints and deletes a cJSON tree; the text is lm_malloc'd. */
static char *finish(cJSON *root)
{
    char *printed = root ? cJSON_PrintUnformatted(root) : NULL;
    char *out = lm_strdup(printed);
    cJSON_free(printed);
    cJSON_Delete(root);
    return out;
}

static cJSON *link_json(const lm_plan *plan, const lm_plan_input *pi)
{
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateString(plan->nodes[pi->src].id));
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(pi->src_output));
    return arr;
}

static void add_node(cJSON *root, const lm_plan *plan, const lm_plan_node *pn)
{
    cJSON *node = cJSON_AddObjectToObject(root, pn->id);
    cJSON *inputs = cJSON_AddObjectToObject(node, "inputs");
    for (size_t k = 0; k < pn->def->n_inputs; k++) {
        const lm_plan_input *pi = &pn->inputs[k];
        const char *name = pn->def->inputs[k].name;
        if (pi->src >= 0)
            cJSON_AddItemToObject(inputs, name, link_json(plan, pi));
        else if (pi->literal)
            cJSON_AddItemToObject(inputs, name, literal_json(pi->literal));
    }
    cJSON_AddStringToObject(node, "class_type", pn->def->name);
    const char *title = pn->title               ? pn->title
                        : pn->def->display_name ? pn->def->display_name
                                                : pn->def->name;
    cJSON *meta = cJSON_AddObjectToObject(node, "_meta");
    cJSON_AddStringToObject(meta, "title", title);
}

char *lm_validate__prompt_json(const lm_plan *plan)
{
    cJSON *root = cJSON_CreateObject();
    for (size_t i = 0; root && i < plan->n_nodes; i++)
        add_node(root, plan, &plan->nodes[i]);
    return finish(root);
}

char *lm_validate__params_json(const lm_graph *g, lm_value *const *values)
{
    cJSON *root = cJSON_CreateObject();
    for (size_t i = 0; root && i < g->n_params; i++)
        if (values[i])
            cJSON_AddItemToObject(root, g->params[i].name, literal_json(values[i]));
    return finish(root);
}

/* ---- /prompt error body ---------------------------------------------------------------- */

static cJSON *error_json(const lm_error *e)
{
    char line[1200];
    lm_error_format(e, line, sizeof(line));
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type", e->kind[0] ? e->kind : "exception_during_validation");
    cJSON_AddStringToObject(obj, "message", e->msg);
    cJSON_AddStringToObject(obj, "details", line);
    cJSON *extra = cJSON_AddObjectToObject(obj, "extra_info");
    if (e->input[0])
        cJSON_AddStringToObject(extra, "input_name", e->input);
    if (e->hint[0])
        cJSON_AddStringToObject(extra, "hint", e->hint);
    if (e->file[0])
        cJSON_AddStringToObject(extra, "file", e->file);
    if (e->line > 0) {
        cJSON_AddNumberToObject(extra, "line", e->line);
        cJSON_AddNumberToObject(extra, "col", e->col);
    }
    return obj;
}

static void add_node_error(cJSON *node_errors, const lm_error *e)
{
    cJSON *entry = cJSON_GetObjectItemCaseSensitive(node_errors, e->node_id);
    if (!entry) {
        entry = cJSON_AddObjectToObject(node_errors, e->node_id);
        cJSON_AddArrayToObject(entry, "errors");
        cJSON_AddArrayToObject(entry, "dependent_outputs");
        cJSON_AddStringToObject(entry, "class_type", e->node_type);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(entry, "errors"), error_json(e));
}

/* The top-level "error": with node errors, ComfyUI's prompt_outputs_failed_validation;
 * without, the first graph-level problem's kind and message. Either way "details" holds
 * every graph-level problem, one line each. */
static cJSON *top_error(const lm_diag *diag, size_t n_node_errors)
{
    const lm_error *first = NULL;
    char details[1200] = "";
    size_t at = 0;
    for (size_t i = 0; i < diag->count; i++) {
        const lm_error *e = &diag->items[i];
        if (e->node_id[0])
            continue;
        first = first ? first : e;
        char line[600];
        lm_error_format(e, line, sizeof(line));
        if (at < sizeof(details))
            at += (size_t)snprintf(details + at, sizeof(details) - at, "%s%s", at ? " " : "", line);
    }
    bool from_first = first && n_node_errors == 0;
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "type",
                            from_first ? first->kind : "prompt_outputs_failed_validation");
    cJSON_AddStringToObject(obj, "message",
                            from_first ? first->msg : "Prompt outputs failed validation");
    cJSON_AddStringToObject(obj, "details", details);
    cJSON *extra = cJSON_AddObjectToObject(obj, "extra_info");
    if (from_first && first->input[0])
        cJSON_AddStringToObject(extra, "input_name", first->input);
    return obj;
}

char *lm_diag_to_comfy_json(const lm_diag *diag)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *node_errors = cJSON_CreateObject();
    size_t n_node_errors = 0;
    for (size_t i = 0; i < diag->count; i++) {
        if (diag->items[i].node_id[0]) {
            add_node_error(node_errors, &diag->items[i]);
            n_node_errors++;
        }
    }
    cJSON_AddItemToObject(root, "error", top_error(diag, n_node_errors));
    cJSON_AddItemToObject(root, "node_errors", node_errors);
    return finish(root);
}
