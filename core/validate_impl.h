/* core/validate_impl.h — semi-private to the validator (validate.c, validate_json.c): the
 * JSON renderings of a plan. Strings are owned by the caller (lm_free); NULL on
 * out-of-memory. */
#ifndef LM_CORE_VALIDATE_IMPL_H
#define LM_CORE_VALIDATE_IMPL_H

#include "core/graph.h"
#include "core/validate.h"

/* ComfyUI API format: {"<id>": {"inputs": {…}, "class_type": …, "_meta": {"title": …}}}. */
char *lm_validate__prompt_json(const lm_plan *plan);
/* {"name": value} for every parameter that has a value (values[i] for g->params[i]). */
char *lm_validate__params_json(const lm_graph *g, lm_value *const *values);

#endif
