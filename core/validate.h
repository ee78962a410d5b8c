/* core/validate.h — checks a graph against the registry and builds a runnable plan.
 *
 * lm_validate() reports every problem at once into an lm_diag, each with its place
 * (file:line:col where the text has positions; node id, node type and input name), using
 * ComfyUI's error kinds where one exists ("value_smaller_than_min", "required_input_missing",
 * "return_type_mismatch", "value_not_in_list", "invalid_prompt", "exception_during_validation",
 * "prompt_no_outputs", …) and Loom's own otherwise ("unknown_node_type", "cycle",
 * "unknown_input", "unknown_parameter", "subworkflow_recursion").
 *
 * As in ComfyUI only output nodes (LM_NODE_OUTPUT), the sources of declared workflow outputs
 * and what they depend on are validated and planned: unused nodes (even of unknown types)
 * are ignored unless opts.strict is set (then every node is checked, but the plan still
 * holds only what is needed). A graph that fails validation yields no plan, so nothing runs:
 * unlike ComfyUI, which skips a failing output node and runs the others, Loom refuses the
 * whole request, so a request runs as written or not at all.
 *
 * Inputs: a scalar input (INT FLOAT STRING BOOLEAN) that is absent takes its descriptor's
 * default, except LM_INPUT_LINK_ONLY ones and STRING combos with dynamic choices and no
 * default, which are required like every link-typed input. Literals are converted
 * (INT→FLOAT; FLOAT→INT only when integral) and checked against ranges, choices and the
 * node's check(). A parameter without a default that is neither overridden nor used by a
 * needed node is no error.
 *
 * Overrides: `name=value` sets a workflow parameter (checked first); `node.input=value`
 * (split at the last '.') sets a literal input of a node, replacing a link or parameter
 * reference (also for ComfyUI workflows, which have no parameters). Values given as text
 * (from the command line) are parsed per the target's type: INT decimal or 0x hex, FLOAT,
 * BOOLEAN true/false/1/0, STRING as is; for a node of unknown type the text is guessed.
 * An unknown name is an error ("unknown_parameter", or "unknown_input" for a known node). */
#ifndef LM_CORE_VALIDATE_H
#define LM_CORE_VALIDATE_H

#include "core/base/error.h"
#include "core/graph.h"
#include "core/registry.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *name; /* "seed" or "3.seed" */
    const char *text; /* the value as text (CLI), or NULL when `value` is given */
    lm_value *value;  /* typed value (API requests), borrowed */
} lm_override;

typedef struct {
    const lm_override *overrides;
    size_t n_overrides;
    bool strict;           /* also validate nodes no output depends on */
    lm_expand_opts expand; /* sub-workflow resolution */
} lm_validate_opts;

typedef struct {
    int src;           /* index of the source plan node, or -1 */
    int src_output;    /* output index of the source, when src >= 0 */
    lm_value *literal; /* converted, range-checked literal; NULL when linked or absent */
} lm_plan_input;

typedef struct {
    char *id;
    char *title;
    const lm_node_def *def;
    lm_plan_input *inputs; /* def->n_inputs entries */
    lm_srcloc loc;
} lm_plan_node;

typedef struct {
    char *name;
    int node, output; /* plan node index and its output index */
} lm_plan_output;

typedef struct lm_plan {
    char *file;
    lm_plan_node *nodes; /* topological order; only what output nodes need */
    size_t n_nodes;
    lm_plan_output *outputs; /* declared workflow outputs */
    size_t n_outputs;
    /* The resolved graph as ComfyUI API-format JSON (parameters substituted, sub-workflows
     * inlined): what SaveImage embeds as the `prompt` chunk so a PNG re-runs the recipe. */
    char *prompt_json;
    /* {"name": value, …}: the parameter values this plan was built with. */
    char *params_json;
} lm_plan;

/* Returns LM_OK with *out set, or the status of the first problem reported (diag holds them
 * all, after any entries it had). out may be NULL (check only); env and opts may be NULL. */
lm_status lm_validate(const lm_graph *g, const lm_registry *reg, const lm_env *env,
                      const lm_validate_opts *opts, lm_plan **out, lm_diag *diag);
void lm_plan_free(lm_plan *plan);

/* Renders a diag as ComfyUI's /prompt error JSON: {"error": {...}, "node_errors": {"<id>":
 * {"errors": [{"type", "message", "details", "extra_info": {"input_name", …}}],
 * "dependent_outputs": [], "class_type"}}}. Errors without a node go to "error" (its type is
 * the first one's kind when no node has errors, else "prompt_outputs_failed_validation");
 * "details" is the one-line rendering with place and hint. Returns a string the caller frees
 * with lm_free, or NULL on out-of-memory. */
char *lm_diag_to_comfy_json(const lm_diag *diag);

#endif
