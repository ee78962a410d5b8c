/* core/registry.h — node descriptors and the registry that holds them.
 *
 * Every node, C or Lua or sub-workflow, is a static description (name, category, inputs
 * with type/default/range/choices, outputs, flags) plus one run function. `loom nodes`, the
 * daemon's /object_info and docs/nodes.md are generated from the registry: never a second
 * list. Input order is fixed by the descriptor's array, so run() indexes inputs by position.
 *
 * Ownership: the registry stores pointers to descriptors it does not own (static C ones),
 * except those added with lm_registry_add_owned(), which it frees with def->free_def.
 * A registry is built once at start-up and then only read (thread-safe for readers). */
#ifndef LM_CORE_REGISTRY_H
#define LM_CORE_REGISTRY_H

#include "core/base/error.h"
#include "core/value.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lm_ctx lm_ctx; /* execution context of one node run: exec.h */
typedef struct lm_env lm_env; /* directories and app services: below */
typedef struct lm_node_def lm_node_def;

/* Where a job's files live, and a slot for services of higher layers (the SD3 model
 * manager, the Lua state) that this layer passes through without knowing them. */
struct lm_env {
    const char *models_dir; /* ComfyUI layout: checkpoints/, text_encoders/, vae/, … */
    const char *input_dir;  /* LoadImage names resolve here */
    const char *output_dir; /* SaveImage writes here */
    const char *temp_dir;   /* PreviewImage writes here */
    bool trusted_paths;     /* CLI: a file input may be any path; daemon: names only */
    void *services;         /* owned by the program (daemon/), opaque here */
    lm_backend *backend;    /* where models compute (--device); NULL = the CPU. Borrowed */
};

/* A list of strings filled by a dynamic-choices callback (e.g. files in models/vae). */
typedef struct {
    char **items;
    size_t count, cap;
} lm_strlist;
void lm_strlist_fini(lm_strlist *list);
lm_status lm_strlist_push(lm_strlist *list, const char *s, lm_error *err);
bool lm_strlist_contains(const lm_strlist *list, const char *s);

typedef lm_status (*lm_choices_fn)(const lm_env *env, lm_strlist *out, lm_error *err);

enum {
    LM_INPUT_OPTIONAL = 1u << 0,  /* may be absent: run() sees NULL */
    LM_INPUT_MULTILINE = 1u << 1, /* STRING shown as a text box (UI hint only) */
    LM_INPUT_LINK_ONLY = 1u << 2, /* must be a link ("forceInput"); no widget */
    LM_INPUT_SEED = 1u << 3,      /* INT seed: UIs add "control_after_generate" */
    LM_INPUT_FILE = 1u << 4,      /* STRING naming an input file (LoadImage's image) */
};

typedef struct {
    const char *name; /* ComfyUI's input name */
    lm_type type;     /* a STRING with choices is a COMBO in ComfyUI terms */
    struct {
        int64_t def, min, max, step; /* min == max == 0: unbounded */
    } i;
    struct {
        double def, min, max, step, round; /* min == max == 0: unbounded */
    } f;
    const char *s_def; /* STRING default (NULL = "", or the first choice for combos) */
    bool b_def;
    const char *const *choices; /* static combo choices, NULL-terminated */
    lm_choices_fn choices_fn;   /* dynamic combo choices (files in a models folder) */
    unsigned flags;             /* LM_INPUT_* */
    const char *help;
} lm_input_def;

typedef struct {
    const char *name; /* shown in UIs and used by Loom links ("decode.IMAGE") */
    lm_type type;
    const char *help;
} lm_output_def;

enum {
    LM_NODE_OUTPUT = 1u << 0,        /* an output node: runs are driven from these */
    LM_NODE_NOT_CACHEABLE = 1u << 1, /* always re-run (e.g. preview, random) */
};

/* run(): `in` has def->n_inputs entries in descriptor order (NULL for an absent optional
 * input), already converted to the declared types and range-checked. It stores
 * def->n_outputs new references in `out` (the executor owns them afterwards). On failure it
 * returns a status with err set and leaves `out` empty (or unrefs what it stored). */
typedef lm_status (*lm_node_run_fn)(lm_ctx *ctx, lm_value *const *in, lm_value **out,
                                    lm_error *err);
/* changed(): a fingerprint of external state the inputs do not show (LoadImage: a hash of
 * the file). Part of the cache key: when it changes, the node re-runs. */
typedef lm_status (*lm_node_changed_fn)(const lm_node_def *def, const lm_env *env,
                                        lm_value *const *in, uint64_t *fingerprint, lm_error *err);
/* check(): extra validation of literal inputs before anything runs (a file exists, a
 * combo of files holds the name). Reports to err with kind and input name. Optional. */
typedef lm_status (*lm_node_check_fn)(const lm_node_def *def, const lm_env *env,
                                      lm_value *const *in, lm_error *err);

struct lm_node_def {
    const char *name; /* ComfyUI's class_type */
    const char *display_name;
    const char *category; /* "image", "sampling", "loaders", … */
    const char *description;
    const lm_input_def *inputs;
    size_t n_inputs;
    const lm_output_def *outputs;
    size_t n_outputs;
    unsigned flags; /* LM_NODE_* */
    lm_node_run_fn run;
    lm_node_changed_fn changed;
    lm_node_check_fn check;
    void *user;                         /* for generated nodes (Lua, sub-workflows) */
    void (*free_def)(lm_node_def *def); /* for owned descriptors */
};

/* The descriptor of the node being run (for nodes that share one run function). */
const lm_node_def *lm_ctx_def(const lm_ctx *ctx);

typedef struct lm_registry lm_registry;

lm_status lm_registry_new(lm_registry **out, lm_error *err);
void lm_registry_free(lm_registry *reg);
/* Adds a descriptor (borrowed). A duplicate name is LM_EINVAL. The descriptor is checked
 * for consistency (defaults inside ranges, defaults among choices, names unique). */
lm_status lm_registry_add(lm_registry *reg, const lm_node_def *def, lm_error *err);
/* Adds a descriptor the registry frees with def->free_def (also on failure). */
lm_status lm_registry_add_owned(lm_registry *reg, lm_node_def *def, lm_error *err);
const lm_node_def *lm_registry_find(const lm_registry *reg, const char *name);
size_t lm_registry_count(const lm_registry *reg);
/* Descriptors sorted by name; i < count. */
const lm_node_def *lm_registry_at(const lm_registry *reg, size_t i);
/* Up to `max` known names closest to `name` (edit distance, then prefix/substring),
 * best first, written into names; returns how many. For "did you mean". */
size_t lm_registry_suggest(const lm_registry *reg, const char *name, const char **names,
                           size_t max);
/* Index of an input/output by name, or -1. */
int lm_node_def_input(const lm_node_def *def, const char *name);
int lm_node_def_output(const lm_node_def *def, const char *name);

/* The one list of built-in C nodes lives in nodes/builtin.c: see nodes/builtin.h. */

#endif
