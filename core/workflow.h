/* core/workflow.h — one entry point that reads a workflow in any supported format.
 *
 * Formats, detected from the content (never from the file name alone):
 *   - PNG written by ComfyUI or Loom: its `prompt` text chunk (ComfyUI API JSON) is the
 *     workflow;
 *   - ComfyUI API-format JSON: an object whose values are {"class_type", "inputs"} objects;
 *   - Loom JSON and Loom YAML: the same structure (docs/workflows.md).
 * Syntax errors carry file:line:col. Nothing is checked against the registry here.
 *
 * Sub-workflow references are kept as written; lm_workflow_load_file() records the file so
 * the expander can resolve relative paths. */
#ifndef LM_CORE_WORKFLOW_H
#define LM_CORE_WORKFLOW_H

#include "core/base/error.h"
#include "core/graph.h"

#include <stddef.h>

#define LM_WORKFLOW_MAX_BYTES (16u << 20) /* text workflows and PNG files */
#define LM_WORKFLOW_MAX_DEPTH 64          /* nesting of YAML/JSON containers */
#define LM_WORKFLOW_MAX_NODES 10000

/* Parses text (YAML, Loom JSON or ComfyUI API JSON; detected). `name` is used for error
 * places. */
lm_status lm_workflow_parse(const char *text, size_t len, const char *name, lm_graph **out,
                            lm_error *err);
/* Reads a file: PNG (its recipe), JSON or YAML. */
lm_status lm_workflow_load_file(const char *path, lm_graph **out, lm_error *err);

/* Per format, for tests and the fuzzer. */
lm_status lm_workflow_parse_yaml(const char *text, size_t len, const char *name, lm_graph **out,
                                 lm_error *err);
lm_status lm_workflow_parse_json(const char *text, size_t len, const char *name, lm_graph **out,
                                 lm_error *err); /* Loom JSON or ComfyUI */

#endif
