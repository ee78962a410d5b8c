/* core/workflow_doc.h — the text tree the workflow parsers share (internal to core/workflow*).
 *
 * The YAML reader (libyaml events) and the JSON reader (our own, for positions) both turn
 * text into the same small tree of maps, lists and typed scalars, each with its line:col.
 * The builders then read the tree: the Loom builder (params, nodes, outputs) and the
 * ComfyUI API-format builder. So both text formats share one set of structural checks and
 * messages, and the builders never see the syntax.
 *
 * Ownership: a tree owns all its nodes and strings; lm_workflow__doc_free() frees a whole
 * tree. Depth is at most LM_WORKFLOW_MAX_DEPTH (the readers refuse deeper text), so the
 * recursive walks here are bounded. Every reader counts the values it creates (aliases
 * included) against LM_WORKFLOW_MAX_VALUES. */
#ifndef LM_CORE_WORKFLOW_DOC_H
#define LM_CORE_WORKFLOW_DOC_H

#include "core/base/error.h"
#include "core/graph.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_WORKFLOW_MAX_VALUES  (1u << 21) /* tree nodes of one text, aliases expanded */
#define LM_WORKFLOW_MAX_ALIASED (1u << 16) /* tree nodes created by YAML aliases */

typedef enum {
    LM_DOC_NULL,
    LM_DOC_BOOL,
    LM_DOC_INT,
    LM_DOC_FLOAT,
    LM_DOC_STRING,
    LM_DOC_MAP,
    LM_DOC_SEQ,
} lm_doc_kind;

typedef struct lm_doc lm_doc;

typedef struct {
    char *key; /* MAP: the key (owned); SEQ: NULL */
    lm_srcloc key_loc;
    lm_doc *value; /* owned */
} lm_doc_entry;

struct lm_doc {
    lm_doc_kind kind;
    lm_srcloc loc;
    int height;          /* 0 for scalars; containers: 1 + the highest child */
    bool b;              /* BOOL */
    int64_t i;           /* INT */
    double f;            /* FLOAT */
    char *s;             /* STRING (owned, NUL-free) */
    lm_doc_entry *items; /* MAP and SEQ, in text order */
    size_t count, cap;
};

/* One text being read: its name for error places and the value budget. */
typedef struct {
    const char *name;
    size_t n_values;
} lm_doc_ctx;

/* A new node counted against the budget (LM_ELIMIT past it); NULL with err set. */
lm_doc *lm_workflow__doc_new(lm_doc_ctx *ctx, lm_doc_kind kind, lm_srcloc loc, lm_error *err);
void lm_workflow__doc_free(lm_doc *doc); /* NULL is a no-op */
/* Appends to a MAP (key given) or SEQ (key NULL); takes key and value, also on failure. */
lm_status lm_workflow__doc_append(lm_doc *container, char *key, lm_srcloc key_loc, lm_doc *value,
                                  lm_error *err);
/* Called when a MAP is complete: a key written twice is an error at the second one. */
lm_status lm_workflow__doc_check_keys(const lm_doc_ctx *ctx, const lm_doc *map, lm_error *err);

/* The entry of a MAP with this key, or NULL (also when doc is not a MAP). Borrowed. */
const lm_doc_entry *lm_workflow__doc_find(const lm_doc *map, const char *key);
const lm_doc *lm_workflow__doc_get(const lm_doc *map, const char *key);
/* "a map", "a list", "a string", "an integer", … for messages. */
const char *lm_workflow__doc_kind_name(lm_doc_kind kind);
/* Renders a tree as compact JSON (for {value: …} literals). NULL on out-of-memory. */
char *lm_workflow__doc_to_json(const lm_doc *doc);

/* Sets an error at file:line:col; returns code. */
lm_status lm_workflow__errorf(lm_error *err, const char *file, lm_srcloc loc, lm_status code,
                              const char *kind, const char *fmt, ...) LM_PRINTF(6, 7);

/* Readers: text → tree. The tree is NULL for an empty document. */
lm_status lm_workflow__read_yaml(lm_doc_ctx *ctx, const char *text, size_t len, lm_doc **out,
                                 lm_error *err);
lm_status lm_workflow__read_json(lm_doc_ctx *ctx, const char *text, size_t len, lm_doc **out,
                                 lm_error *err);

/* Builders: tree → graph. `format` says which text the tree came from. */
lm_status lm_workflow__build_loom(const lm_doc *root, const char *name, lm_graph_format format,
                                  lm_graph **out, lm_error *err);
lm_status lm_workflow__build_comfy(const lm_doc *root, const char *name, lm_graph **out,
                                   lm_error *err);
/* Picks the builder from the tree's shape (workflow.c). */
lm_status lm_workflow__build(const lm_doc *root, const char *name, lm_graph_format format,
                             lm_graph **out, lm_error *err);

/* Node ids: Loom's are letters, digits, '_' and '-'; ComfyUI's may also hold ':' (its
 * expanded group nodes). At most 63 bytes. */
bool lm_workflow__id_ok(const char *id, bool comfy);

#endif
