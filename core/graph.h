/* core/graph.h — a workflow as parsed: nodes, typed links, literals, parameters, outputs.
 *
 * Every parser (YAML, JSON, ComfyUI API format, PNG recipe) produces an lm_graph; nothing
 * here is checked against the registry yet (validate.h does that). An lm_graph owns every
 * string and value in it; lm_graph_free() frees them all.
 *
 * An input is one of: a literal value, a link to another node's output (by output name, as
 * Loom files write it, or by index, as ComfyUI's API format writes it), or a reference to a
 * workflow parameter. Places (file, line, col) are kept for every node, input, parameter and
 * output so validation can point at the text.
 *
 * Sub-workflows: a node whose `workflow` is set (a path, relative to the including file)
 * stands for another workflow file; lm_graph_expand() inlines it (see below). */
#ifndef LM_CORE_GRAPH_H
#define LM_CORE_GRAPH_H

#include "core/base/error.h"
#include "core/value.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int line, col; /* 1-based; 0 when the source has no text positions */
} lm_srcloc;

typedef enum {
    LM_GRAPH_INPUT_LITERAL,
    LM_GRAPH_INPUT_LINK,
    LM_GRAPH_INPUT_PARAM,
} lm_graph_input_kind;

typedef struct {
    char *name;
    lm_graph_input_kind kind;
    lm_value *literal; /* LITERAL */
    char *link_node;   /* LINK: id of the source node */
    char *link_output; /* LINK by name (Loom files), or NULL */
    int link_index;    /* LINK by index (ComfyUI), or -1 */
    char *param;       /* PARAM: the workflow parameter's name */
    lm_srcloc loc;
} lm_graph_input;

typedef struct {
    char *id;       /* unique in the graph */
    char *type;     /* node type (class_type); NULL for a sub-workflow node */
    char *workflow; /* sub-workflow path as written, or NULL */
    char *title;    /* optional display title (ComfyUI's _meta.title) */
    char *file;     /* file the node was written in when not g->file (nodes inlined from a
                     * sub-workflow by lm_graph_expand), or NULL; its places refer to it */
    lm_graph_input *inputs;
    size_t n_inputs, cap_inputs;
    lm_srcloc loc;
} lm_graph_node;

typedef struct {
    char *name;
    lm_type type;  /* INT FLOAT STRING BOOLEAN (or any declared type) */
    lm_value *def; /* default; NULL = required */
    char *description;
    bool has_min, has_max;
    double min, max;
    char **choices; /* NULL-terminated, or NULL */
    lm_srcloc loc;
} lm_graph_param;

typedef struct {
    char *name;
    char *link_node;
    char *link_output; /* by name, or NULL */
    int link_index;    /* by index, or -1 */
    char *description;
    lm_srcloc loc;
} lm_graph_output;

typedef enum {
    LM_FORMAT_LOOM_YAML,
    LM_FORMAT_LOOM_JSON,
    LM_FORMAT_COMFY_API, /* {"3": {"class_type": …, "inputs": {…}}} */
} lm_graph_format;

typedef struct lm_graph {
    char *file; /* path as given, for error places; may be "<request>" */
    lm_graph_format format;
    char *description;
    lm_graph_node *nodes;
    size_t n_nodes, cap_nodes;
    lm_graph_param *params;
    size_t n_params, cap_params;
    lm_graph_output *outputs;
    size_t n_outputs, cap_outputs;
} lm_graph;

lm_status lm_graph_new(lm_graph **out, const char *file, lm_graph_format format, lm_error *err);
void lm_graph_free(lm_graph *g);

/* Builders (used by the parsers and by tests). Strings are copied; `literal` values are
 * taken over (their reference moves into the graph, also on failure). The returned
 * pointers are borrowed and valid until the next add of the same kind. */
lm_status lm_graph_add_node(lm_graph *g, const char *id, const char *type, lm_srcloc loc,
                            lm_graph_node **out, lm_error *err);
lm_status lm_graph_add_literal(lm_graph *g, lm_graph_node *node, const char *input,
                               lm_value *literal, lm_srcloc loc, lm_error *err);
lm_status lm_graph_add_link(lm_graph *g, lm_graph_node *node, const char *input,
                            const char *src_node, const char *src_output, int src_index,
                            lm_srcloc loc, lm_error *err);
lm_status lm_graph_add_param_ref(lm_graph *g, lm_graph_node *node, const char *input,
                                 const char *param, lm_srcloc loc, lm_error *err);
lm_status lm_graph_add_param(lm_graph *g, const char *name, lm_type type, lm_value *def,
                             const char *description, lm_srcloc loc, lm_graph_param **out,
                             lm_error *err);
lm_status lm_graph_add_output(lm_graph *g, const char *name, const char *src_node,
                              const char *src_output, int src_index, const char *description,
                              lm_srcloc loc, lm_error *err);

lm_graph_node *lm_graph_find_node(const lm_graph *g, const char *id);
lm_graph_param *lm_graph_find_param(const lm_graph *g, const char *name);
lm_graph_input *lm_graph_node_input(const lm_graph_node *node, const char *name);

/* Sub-workflow expansion: returns a new graph in which every sub-workflow node is replaced
 * by the nodes of its file (ids become "<outer id>/<inner id>", recursively), its parameters
 * by the outer node's inputs (literal or link; absent ones take the parameter's default),
 * and links to its outputs by links to the inner nodes its declared outputs name. Paths are
 * resolved against the directory of the file that names them; with `confine_dir` set, a
 * path must stay inside that directory (API requests). Recursion (a file that includes
 * itself, directly or not) and depth beyond `max_depth` are errors naming the chain.
 * Every problem goes to diag; returns LM_OK only when diag got nothing. */
typedef struct {
    const char *confine_dir; /* NULL: any path the process can read (CLI) */
    int max_depth;           /* 0: 16 */
} lm_expand_opts;

lm_status lm_graph_expand(const lm_graph *g, const lm_expand_opts *opts, lm_graph **out,
                          lm_diag *diag);

#endif
