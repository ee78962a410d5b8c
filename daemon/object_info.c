/* daemon/object_info.c — renders node descriptors as ComfyUI's /object_info JSON.
 *
 * Everything comes from lm_node_def/lm_input_def, so the daemon, `loom nodes --json` and
 * the docs can never disagree. Integers are written as raw JSON numbers so that 64-bit
 * bounds and defaults survive exactly (a double would round them). Out-of-memory anywhere
 * makes the whole result NULL: a half-built node list would mislead a UI. */
#include "daemon/object_info.h"

#include "core/base/alloc.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Python's sys.maxsize, which ComfyUI uses for "unbounded". */
#define PY_MAXSIZE INT64_MAX

const char *lm_object_info_type_name(const lm_input_def *in)
{
    if (in->type == LM_TYPE_STRING && (in->choices || in->choices_fn))
        return "COMBO";
    return lm_type_name(in->type);
}

static bool add_int(cJSON *obj, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return cJSON_AddRawToObject(obj, key, buf) != NULL;
}

static bool add_int_opts(cJSON *opts, const lm_input_def *in)
{
    bool bounded = in->i.min != 0 || in->i.max != 0;
    bool ok = add_int(opts, "default", in->i.def);
    ok = ok && add_int(opts, "min", bounded ? in->i.min : -PY_MAXSIZE);
    ok = ok && add_int(opts, "max", bounded ? in->i.max : PY_MAXSIZE);
    ok = ok && add_int(opts, "step", in->i.step ? in->i.step : 1);
    if (in->flags & LM_INPUT_SEED)
        ok = ok && cJSON_AddTrueToObject(opts, "control_after_generate");
    return ok;
}

static bool add_float_opts(cJSON *opts, const lm_input_def *in)
{
    bool bounded = in->f.min != 0 || in->f.max != 0;
    bool ok = cJSON_AddNumberToObject(opts, "default", in->f.def) != NULL;
    if (bounded) {
        ok = ok && cJSON_AddNumberToObject(opts, "min", in->f.min);
        ok = ok && cJSON_AddNumberToObject(opts, "max", in->f.max);
    } else {
        ok = ok && add_int(opts, "min", -PY_MAXSIZE) && add_int(opts, "max", PY_MAXSIZE);
    }
    if (in->f.step != 0)
        ok = ok && cJSON_AddNumberToObject(opts, "step", in->f.step);
    if (in->f.round != 0)
        ok = ok && cJSON_AddNumberToObject(opts, "round", in->f.round);
    return ok;
}

/* The choices of a combo as a JSON array; dynamic ones from choices_fn(env). */
static cJSON *choices_array(const lm_input_def *in, const lm_env *env, const char **def_out)
{
    cJSON *arr = cJSON_CreateArray();
    lm_strlist list = { 0 };
    lm_error err;
    bool ok = arr != NULL;
    if (in->choices) {
        for (const char *const *c = in->choices; ok && *c; c++)
            ok = cJSON_AddItemToArray(arr, cJSON_CreateString(*c));
    } else if (env && in->choices_fn && in->choices_fn(env, &list, &err) == LM_OK) {
        for (size_t i = 0; ok && i < list.count; i++)
            ok = cJSON_AddItemToArray(arr, cJSON_CreateString(list.items[i]));
    }
    *def_out = in->s_def;
    if (!*def_out && cJSON_GetArraySize(arr) > 0)
        *def_out = cJSON_GetArrayItem(arr, 0)->valuestring;
    lm_strlist_fini(&list);
    if (!ok) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

static bool add_string_opts(cJSON *opts, const lm_input_def *in, const char *combo_def)
{
    bool combo = in->choices || in->choices_fn;
    const char *def = combo ? combo_def : (in->s_def ? in->s_def : "");
    bool ok = !def || cJSON_AddStringToObject(opts, "default", def);
    if (in->flags & LM_INPUT_MULTILINE)
        ok = ok && cJSON_AddTrueToObject(opts, "multiline");
    if (in->flags & LM_INPUT_FILE)
        ok = ok && cJSON_AddTrueToObject(opts, "image_upload");
    return ok;
}

static bool add_opts(cJSON *opts, const lm_input_def *in, const char *combo_def)
{
    bool ok = true;
    if (in->flags & LM_INPUT_LINK_ONLY)
        ok = cJSON_AddTrueToObject(opts, "forceInput") != NULL;
    if (in->type == LM_TYPE_INT)
        ok = ok && add_int_opts(opts, in);
    else if (in->type == LM_TYPE_FLOAT)
        ok = ok && add_float_opts(opts, in);
    else if (in->type == LM_TYPE_STRING)
        ok = ok && add_string_opts(opts, in, combo_def);
    else if (in->type == LM_TYPE_BOOLEAN)
        ok = ok && cJSON_AddBoolToObject(opts, "default", in->b_def);
    if (in->help && in->help[0])
        ok = ok && cJSON_AddStringToObject(opts, "tooltip", in->help);
    return ok;
}

/* ["INT", {…}], [["a", "b"], {…}] or ["IMAGE"] (options only when there are some). */
static cJSON *input_spec(const lm_input_def *in, const lm_env *env)
{
    const char *combo_def = NULL;
    cJSON *spec = cJSON_CreateArray(), *opts = cJSON_CreateObject(), *first;
    if (in->type == LM_TYPE_STRING && (in->choices || in->choices_fn))
        first = choices_array(in, env, &combo_def);
    else
        first = cJSON_CreateString(lm_type_name(in->type));
    bool ok = spec && opts && first;
    if (ok)
        cJSON_AddItemToArray(spec, first);
    else
        cJSON_Delete(first);
    ok = ok && add_opts(opts, in, combo_def);
    if (ok && cJSON_GetArraySize(opts) > 0) {
        ok = cJSON_AddItemToArray(spec, opts);
        opts = NULL;
    }
    cJSON_Delete(opts);
    if (!ok) {
        cJSON_Delete(spec);
        return NULL;
    }
    return spec;
}

/* Fills "input" and "input_order"; sections without inputs are left out, as in ComfyUI. */
static bool add_inputs(cJSON *node, const lm_node_def *def, const lm_env *env)
{
    static const char *const sections[2] = { "required", "optional" };
    cJSON *input = cJSON_AddObjectToObject(node, "input");
    cJSON *order = cJSON_AddObjectToObject(node, "input_order");
    bool ok = input && order;
    for (int s = 0; ok && s < 2; s++) {
        cJSON *sect = NULL, *names = NULL;
        for (size_t i = 0; ok && i < def->n_inputs; i++) {
            const lm_input_def *in = &def->inputs[i];
            if (((in->flags & LM_INPUT_OPTIONAL) != 0) != (s == 1))
                continue;
            if (!sect) {
                sect = cJSON_AddObjectToObject(input, sections[s]);
                names = cJSON_AddArrayToObject(order, sections[s]);
            }
            ok = sect && names && cJSON_AddItemToObject(sect, in->name, input_spec(in, env));
            ok = ok && cJSON_AddItemToArray(names, cJSON_CreateString(in->name));
        }
    }
    return ok;
}

static bool add_outputs(cJSON *node, const lm_node_def *def)
{
    cJSON *types = cJSON_AddArrayToObject(node, "output");
    cJSON *lists = cJSON_AddArrayToObject(node, "output_is_list");
    cJSON *names = cJSON_AddArrayToObject(node, "output_name");
    cJSON *tips = cJSON_AddArrayToObject(node, "output_tooltips");
    bool ok = types && lists && names && tips;
    for (size_t i = 0; ok && i < def->n_outputs; i++) {
        const lm_output_def *o = &def->outputs[i];
        ok = cJSON_AddItemToArray(types, cJSON_CreateString(lm_type_name(o->type))) &&
             cJSON_AddItemToArray(lists, cJSON_CreateFalse()) &&
             cJSON_AddItemToArray(names, cJSON_CreateString(o->name)) &&
             cJSON_AddItemToArray(tips, cJSON_CreateString(o->help ? o->help : ""));
    }
    return ok;
}

cJSON *lm_object_info_node(const lm_node_def *def, const lm_env *env)
{
    cJSON *node = cJSON_CreateObject();
    bool ok = node && add_inputs(node, def, env) && add_outputs(node, def);
    ok = ok && cJSON_AddStringToObject(node, "name", def->name);
    ok = ok && cJSON_AddStringToObject(node, "display_name",
                                       def->display_name ? def->display_name : def->name);
    ok = ok &&
         cJSON_AddStringToObject(node, "description", def->description ? def->description : "");
    ok = ok && cJSON_AddStringToObject(node, "python_module", "nodes");
    ok = ok && cJSON_AddStringToObject(node, "category", def->category ? def->category : "");
    ok = ok && cJSON_AddBoolToObject(node, "output_node", (def->flags & LM_NODE_OUTPUT) != 0);
    ok = ok && cJSON_AddFalseToObject(node, "deprecated");
    ok = ok && cJSON_AddFalseToObject(node, "experimental");
    if (!ok) {
        cJSON_Delete(node);
        return NULL;
    }
    return node;
}

cJSON *lm_object_info_new(const lm_registry *reg, const lm_env *env, const char *only_name)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    for (size_t i = 0; ok && i < lm_registry_count(reg); i++) {
        const lm_node_def *def = lm_registry_at(reg, i);
        if (only_name && strcmp(def->name, only_name) != 0)
            continue;
        ok = cJSON_AddItemToObject(root, def->name, lm_object_info_node(def, env));
    }
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

char *lm_object_info_json(const lm_registry *reg, const lm_env *env, const char *only_name)
{
    cJSON *root = lm_object_info_new(reg, env, only_name);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}
