/* daemon/object_info.h — ComfyUI's /object_info JSON, generated from the node registry.
 *
 * The shape is ComfyUI's, so its web UI and API clients can read it unchanged:
 *   {"KSampler": {"input": {"required": {"seed": ["INT", {"default": 0, …}], …},
 *                           "optional": {…}},
 *                 "input_order": {"required": […], "optional": […]},
 *                 "output": ["LATENT"], "output_is_list": [false], "output_name": ["LATENT"],
 *                 "output_tooltips": [""], "name": "KSampler", "display_name": …,
 *                 "description": …, "python_module": "nodes", "category": "sampling",
 *                 "output_node": false, "deprecated": false, "experimental": false}}
 * A STRING input with choices is a combo: its first element is the list of choices.
 * Dynamic choices (files in a models folder) come from the input's choices_fn(env); when env
 * is NULL or the callback fails, the list is empty. Unbounded INT/FLOAT inputs get ComfyUI's
 * ±sys.maxsize bounds, because its UI defaults a missing min to 0.
 *
 * Thread safety: reads the registry only; safe from any thread once the registry is built. */
#ifndef LM_DAEMON_OBJECT_INFO_H
#define LM_DAEMON_OBJECT_INFO_H

#include "core/registry.h"

struct cJSON;

/* The object for every node of reg, or only for only_name (NULL = all); an unknown
 * only_name gives an empty object, as ComfyUI's /object_info/{name} does. NULL on
 * out-of-memory. Caller frees with cJSON_Delete(). */
struct cJSON *lm_object_info_new(const lm_registry *reg, const lm_env *env, const char *only_name);

/* One node's entry (the value under its name). NULL on out-of-memory; cJSON_Delete(). */
struct cJSON *lm_object_info_node(const lm_node_def *def, const lm_env *env);

/* lm_object_info_new() printed compactly. NULL on out-of-memory. Caller frees with lm_free()
 * (the buffer comes from cJSON's allocator, which is the C library's, as lm_free is). */
char *lm_object_info_json(const lm_registry *reg, const lm_env *env, const char *only_name);

/* ComfyUI's name for an input's type: "COMBO" for a STRING with choices, else the type's. */
const char *lm_object_info_type_name(const lm_input_def *in);

#endif
