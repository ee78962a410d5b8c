/* core/graph_expand.c — sub-workflow expansion (lm_graph_expand).
 *
 * Two passes over a tree of frames, one frame per (sub-)workflow instance:
 *   1. load: every node with `workflow:` gets a frame holding its file's graph (loaded once
 *      per file and shared), the id prefix "<outer ids>/", its parent frame and host node.
 *      Here the host's inputs are checked against the file's params (unknown input,
 *      required param missing, literal of the wrong type), recursion and depth are caught,
 *      and the total node count is held under LM_WORKFLOW_MAX_NODES (a file included
 *      twice at every level would otherwise grow exponentially).
 *   2. emit: the frames are walked in order; plain nodes are copied with prefixed ids. An
 *      inner {param: p} becomes the host's input p translated one level up (literal: the
 *      same value; link: resolved in the outer frame; param: bound again one level up, or
 *      kept as a parameter of the top graph), else p's default. A link to a sub-workflow
 *      node follows that file's declared `outputs` down to a plain node.
 * Every problem goes to the diag with its file:line:col and node; a problem found in pass 1
 * is not reported again in pass 2. Recursion in this file is bounded by the frame depth
 * (at most max_depth, itself at most LM_WORKFLOW_MAX_DEPTH). */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/graph.h"
#include "core/workflow.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct frame frame;
struct frame {
    const lm_graph *g;         /* borrowed: the input graph or a cached file */
    const char *path;          /* g's file as resolved (error places), borrowed */
    char *real;                /* realpath of the file, NULL for text without a file */
    char *prefix;              /* "" at the top, else "<outer id>/…/" */
    frame *parent;             /* NULL at the top */
    const lm_graph_node *host; /* node of parent->g this frame stands for */
    frame **subs;              /* per node of g: its frame, NULL for plain or failed ones */
    int depth;
};

typedef struct {
    char *real;
    lm_graph *g;
} cached_file;

typedef struct {
    const lm_expand_opts *opts;
    char *confine_real; /* realpath of opts->confine_dir */
    int max_depth;
    lm_diag *diag;
    lm_status first; /* status of the first problem */
    lm_graph *dst;
    cached_file *files;
    size_t n_files, cap_files;
    size_t n_nodes;
    bool too_large; /* the node budget ran out: reported once, nothing more is loaded */
} expander;

/* A resolved link source in the output graph. */
typedef struct {
    char *node; /* owned */
    const char *output;
    int index;
} target;

static void report(expander *ex, const lm_error *err)
{
    if (ex->first == LM_OK)
        ex->first = err->code ? err->code : LM_EINVAL;
    if (ex->diag)
        lm_diag_push(ex->diag, err);
}

static void problem(expander *ex, const char *file, lm_srcloc loc, const char *node_id,
                    const char *input, lm_status code, const char *kind, const char *fmt, ...)
    LM_PRINTF(8, 9);

/* Reports one problem at file:line:col, naming the node (output id) and input if given. */
static void problem(expander *ex, const char *file, lm_srcloc loc, const char *node_id,
                    const char *input, lm_status code, const char *kind, const char *fmt, ...)
{
    lm_error err;
    char msg[sizeof(err.msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lm_errorf(&err, code, kind, "%s", msg);
    lm_error_at_file(&err, file, loc.line, loc.col);
    if (node_id || input)
        lm_error_at_node(&err, node_id, NULL, input);
    report(ex, &err);
}

static void oom(expander *ex)
{
    lm_error err;
    lm_errorf(&err, LM_ENOMEM, "out_of_memory", "out of memory expanding sub-workflows");
    report(ex, &err);
}

static char *concat(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = lm_malloc(la + lb + lc + 1);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}

static void frame_free(frame *f)
{
    if (!f)
        return;
    for (size_t i = 0; f->subs && i < f->g->n_nodes; i++)
        frame_free(f->subs[i]);
    lm_free(f->subs);
    lm_free(f->real);
    lm_free(f->prefix);
    lm_free(f);
}

static frame *frame_new(const lm_graph *g, const char *path, char *real, frame *parent,
                        const lm_graph_node *host)
{
    frame *f = lm_calloc(1, sizeof(*f));
    if (!f) {
        lm_free(real);
        return NULL;
    }
    f->g = g;
    f->path = path;
    f->real = real;
    f->parent = parent;
    f->host = host;
    f->depth = parent ? parent->depth + 1 : 0;
    f->prefix = parent ? concat(parent->prefix, host->id, "/") : lm_strdup("");
    f->subs = lm_calloc(g->n_nodes ? g->n_nodes : 1, sizeof(*f->subs));
    if (!f->prefix || !f->subs) {
        frame_free(f);
        return NULL;
    }
    return f;
}

/* The id of node `id` of frame f in the output graph. */
static char *out_id(const frame *f, const char *id)
{
    return concat(f->prefix, id, "");
}

/* ---- pass 1: loading the frames ---------------------------------------------------- */

/* What a frame's file is called in messages: the path as its including node wrote it. */
static const char *label(const frame *f)
{
    return f->host ? f->host->workflow : f->path;
}

/* "a.yaml → b.yaml → a.yaml": the files from the top down to f, then `last`. */
static void chain(const frame *f, const char *last, char *buf, size_t size)
{
    const frame *stack[LM_WORKFLOW_MAX_DEPTH + 2];
    int n = 0;
    for (const frame *p = f; p && n < (int)LM_COUNTOF(stack); p = p->parent)
        stack[n++] = p;
    size_t at = 0;
    buf[0] = '\0';
    for (int i = n; i-- > 0 && at < size;)
        at += (size_t)snprintf(buf + at, size - at, "%s \xe2\x86\x92 ", label(stack[i]));
    if (at < size)
        snprintf(buf + at, size - at, "%s", last);
}

/* The file a `workflow:` path names, relative to the directory of f's file. */
static bool resolve_path(const expander *ex, const frame *f, const char *written, char *out,
                         size_t size)
{
    if (written[0] == '/')
        return lm_strlcpy(out, written, size);
    char dir[PATH_MAX];
    if (f->path[0] == '<') {
        lm_strlcpy(dir, ex->opts->confine_dir ? ex->opts->confine_dir : ".", sizeof(dir));
    } else {
        lm_strlcpy(dir, f->path, sizeof(dir));
        char *slash = strrchr(dir, '/');
        if (!slash)
            return lm_strlcpy(out, written, size); /* the current directory */
        slash[slash == dir] = '\0';                /* "/x.yaml" → "/" */
    }
    return lm_path_join(out, size, dir, written);
}

static void param_names(lm_str *s, const lm_graph *g)
{
    for (size_t i = 0; i < g->n_params; i++)
        lm_str_appendf(s, "%s%s", i ? ", " : "", g->params[i].name);
    if (!g->n_params)
        lm_str_append(s, "(none)");
}

static bool literal_fits(const lm_graph_param *p, const lm_value *v)
{
    lm_type t = lm_value_type(v);
    return t == p->type || (p->type == LM_TYPE_FLOAT && t == LM_TYPE_INT);
}

/* A literal the host gives for parameter p: type, range and choices. */
static void check_literal(expander *ex, const frame *f, const char *id, const lm_graph_input *in,
                          const lm_graph_param *p)
{
    char shown[80];
    lm_value_to_json(in->literal, shown, sizeof(shown));
    if (!literal_fits(p, in->literal)) {
        problem(ex, f->path, in->loc, id, in->name, LM_ETYPE, "invalid_input_type",
                "%s is not a valid %s for the sub-workflow's parameter", shown,
                lm_type_name(p->type));
        return;
    }
    bool number = p->type == LM_TYPE_INT || p->type == LM_TYPE_FLOAT;
    double x = number ? lm_value_as_float(in->literal) : 0.0;
    if (number && p->has_min && x < p->min)
        problem(ex, f->path, in->loc, id, in->name, LM_ERANGE, "value_smaller_than_min",
                "%s is below the minimum %g", shown, p->min);
    else if (number && p->has_max && x > p->max)
        problem(ex, f->path, in->loc, id, in->name, LM_ERANGE, "value_bigger_than_max",
                "%s is above the maximum %g", shown, p->max);
    bool found = !p->choices || p->type != LM_TYPE_STRING;
    for (char **c = p->choices; c && *c && !found; c++)
        found = strcmp(*c, lm_value_as_string(in->literal)) == 0;
    if (!found)
        problem(ex, f->path, in->loc, id, in->name, LM_EINVAL, "value_not_in_list",
                "%s is not one of the parameter's choices", shown);
}

/* The host's inputs against the sub-workflow's params. */
static void check_host(expander *ex, const frame *f, const lm_graph_node *host, const lm_graph *g,
                       const char *id)
{
    for (size_t i = 0; i < host->n_inputs; i++) {
        const lm_graph_input *in = &host->inputs[i];
        const lm_graph_param *p = lm_graph_find_param(g, in->name);
        if (p && in->kind == LM_GRAPH_INPUT_LITERAL)
            check_literal(ex, f, id, in, p);
        if (p)
            continue;
        lm_str names;
        lm_str_init(&names);
        param_names(&names, g);
        problem(ex, f->path, in->loc, id, in->name, LM_EINVAL, "unknown_input",
                "sub-workflow %s has no parameter \"%s\"; its parameters: %s", host->workflow,
                in->name, lm_str_cstr(&names));
        lm_str_fini(&names);
    }
    for (size_t i = 0; i < g->n_params; i++) {
        const lm_graph_param *p = &g->params[i];
        if (!p->def && !lm_graph_node_input(host, p->name))
            problem(ex, f->path, host->loc, id, p->name, LM_EINVAL, "required_input_missing",
                    "%s needs parameter \"%s\", which has no default; give it as an input",
                    host->workflow, p->name);
    }
}

static lm_graph *cache_find(const expander *ex, const char *real)
{
    for (size_t i = 0; i < ex->n_files; i++)
        if (strcmp(ex->files[i].real, real) == 0)
            return ex->files[i].g;
    return NULL;
}

/* The graph of a resolved file, loaded once; NULL after a reported problem. */
static lm_graph *cache_load(expander *ex, const char *path, const char *real)
{
    lm_graph *g = cache_find(ex, real);
    if (g)
        return g;
    if (ex->n_files == ex->cap_files) {
        size_t ncap = ex->cap_files ? ex->cap_files * 2 : 8;
        cached_file *p = lm_realloc(ex->files, ncap * sizeof(*p));
        if (!p) {
            oom(ex);
            return NULL;
        }
        ex->files = p;
        ex->cap_files = ncap;
    }
    char *real_copy = lm_strdup(real);
    lm_error err;
    lm_error_clear(&err);
    if (!real_copy) {
        oom(ex);
        return NULL;
    }
    if (lm_workflow_load_file(path, &g, &err) != LM_OK) {
        lm_free(real_copy);
        report(ex, &err);
        return NULL;
    }
    ex->files[ex->n_files++] = (cached_file){ real_copy, g };
    return g;
}

static bool inside(const char *real, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(real, dir, n) == 0 && (real[n] == '/' || (n > 0 && dir[n - 1] == '/'));
}

/* The realpath of the file host names, after the confinement, depth and recursion checks;
 * NULL after a reported problem. */
static char *locate(expander *ex, const frame *f, const lm_graph_node *host, const char *id,
                    char *path, size_t size)
{
    char buf[512];
    const char *wf = host->workflow;
    if (f->depth + 1 > ex->max_depth) {
        chain(f, wf, buf, sizeof(buf));
        problem(ex, f->path, host->loc, id, NULL, LM_ELIMIT, "subworkflow_too_deep",
                "sub-workflows nest deeper than %d levels: %s", ex->max_depth, buf);
        return NULL;
    }
    if (ex->confine_real && !lm_path_is_confined(wf)) {
        problem(ex, f->path, host->loc, id, NULL, LM_EINVAL, "subworkflow_path_refused",
                "path \"%s\" leaves the workflow directory; use a relative path without \"..\"",
                wf);
        return NULL;
    }
    char *real = resolve_path(ex, f, wf, path, size) ? realpath(path, NULL) : NULL;
    if (!real) {
        problem(ex, f->path, host->loc, id, NULL, LM_ENOTFOUND, "subworkflow_not_found",
                "sub-workflow file \"%s\" not found (looked for %s)", wf, path);
        return NULL;
    }
    const char *why = ex->confine_real && !inside(real, ex->confine_real)
                          ? "leaves the workflow directory (through a link)"
                          : NULL;
    for (const frame *p = f; p && !why; p = p->parent)
        if (p->real && strcmp(p->real, real) == 0)
            why = "recursion";
    if (why) {
        bool rec = strcmp(why, "recursion") == 0;
        chain(f, wf, buf, sizeof(buf));
        problem(ex, f->path, host->loc, id, NULL, LM_EINVAL,
                rec ? "subworkflow_recursion" : "subworkflow_path_refused",
                rec ? "sub-workflow recursion: %s" : "sub-workflow path %s", rec ? buf : why);
        free(real);
        return NULL;
    }
    return real;
}

static lm_status load_frame(expander *ex, frame *f);

/* The frame for sub-workflow node `host` of f, or NULL after a reported problem. */
static frame *open_sub(expander *ex, frame *f, const lm_graph_node *host)
{
    char path[PATH_MAX];
    path[0] = '\0';
    char *id = out_id(f, host->id);
    char *real = id && !ex->too_large ? locate(ex, f, host, id, path, sizeof(path)) : NULL;
    lm_graph *g = real ? cache_load(ex, path, real) : NULL;
    frame *sub = NULL;
    if (g && (ex->n_nodes += g->n_nodes) > LM_WORKFLOW_MAX_NODES) {
        ex->too_large = true;
        problem(ex, f->path, host->loc, id, NULL, LM_ELIMIT, "workflow_too_large",
                "with its sub-workflows the workflow has more than %d nodes",
                LM_WORKFLOW_MAX_NODES);
        g = NULL;
    }
    if (g) {
        check_host(ex, f, host, g, id);
        char *owned = lm_strdup(real);
        sub = owned ? frame_new(g, g->file, owned, f, host) : NULL;
        if (!sub)
            oom(ex);
        else if (load_frame(ex, sub) != LM_OK)
            sub = (frame_free(sub), NULL);
    }
    if (!id)
        oom(ex);
    free(real);
    lm_free(id);
    return sub;
}

static lm_status load_frame(expander *ex, frame *f)
{
    for (size_t i = 0; i < f->g->n_nodes; i++) {
        const lm_graph_node *n = &f->g->nodes[i];
        if (n->workflow)
            f->subs[i] = open_sub(ex, f, n);
        if (ex->first == LM_ENOMEM)
            return LM_ENOMEM;
    }
    return LM_OK;
}

/* ---- pass 2: emitting the output graph --------------------------------------------- */

static lm_status resolve_link(expander *ex, const frame *f, const char *node_id, const char *output,
                              int index, lm_srcloc loc, target *t);

/* A link to output (name or index) of sub-workflow frame `sub`: its declared output. */
static lm_status follow_output(expander *ex, const frame *sub, const char *output, int index,
                               lm_srcloc loc, target *t)
{
    const lm_graph *g = sub->g;
    for (size_t i = 0; i < g->n_outputs; i++) {
        const lm_graph_output *o = &g->outputs[i];
        if (output ? strcmp(o->name, output) == 0 : (size_t)index == i)
            return resolve_link(ex, sub, o->link_node, o->link_output, o->link_index, o->loc, t);
    }
    lm_str names;
    lm_str_init(&names);
    for (size_t i = 0; i < g->n_outputs; i++)
        lm_str_appendf(&names, "%s%s (%zu)", i ? ", " : "", g->outputs[i].name, i);
    char shown[32];
    if (!output)
        snprintf(shown, sizeof(shown), "%d", index);
    problem(ex, sub->parent->path, loc, NULL, NULL, LM_ENOTFOUND, "unknown_output",
            "sub-workflow node \"%s\" (%s) has no output %s; its outputs: %s", sub->host->id,
            sub->host->workflow, output ? output : shown,
            names.len ? lm_str_cstr(&names) : "(none declared)");
    lm_str_fini(&names);
    return LM_ENOTFOUND;
}

/* Where a link written in frame f to node_id.output (or .index) really comes from. */
static lm_status resolve_link(expander *ex, const frame *f, const char *node_id, const char *output,
                              int index, lm_srcloc loc, target *t)
{
    t->node = NULL;
    size_t i = 0;
    while (i < f->g->n_nodes && strcmp(f->g->nodes[i].id, node_id) != 0)
        i++;
    if (i == f->g->n_nodes && f->parent) {
        problem(ex, f->path, loc, NULL, NULL, LM_ENOTFOUND, "unknown_node",
                "link to node \"%s\", which this sub-workflow does not have", node_id);
        return LM_ENOTFOUND;
    }
    if (i < f->g->n_nodes && f->subs[i])
        return follow_output(ex, f->subs[i], output, index, loc, t);
    if (i < f->g->n_nodes && f->g->nodes[i].workflow)
        return LM_EINVAL; /* its file failed to load: reported already */
    /* A plain node, or (at the top) an unknown one that validation reports. */
    t->node = out_id(f, node_id);
    t->output = output;
    t->index = index;
    if (!t->node) {
        oom(ex);
        return LM_ENOMEM;
    }
    return LM_OK;
}

static lm_status add_status(expander *ex, lm_status st, const lm_error *err)
{
    if (st != LM_OK)
        report(ex, err);
    return st;
}

static lm_status emit_input(expander *ex, const frame *f, const lm_graph_input *in,
                            lm_graph_node *n, const char *name, lm_srcloc loc, lm_type want);

/* An inner {param: p} of frame f: the host's input p one level up, or p's default. */
static lm_status bind_param(expander *ex, const frame *f, const lm_graph_input *in,
                            lm_graph_node *n, const char *name, lm_srcloc loc)
{
    const lm_graph_param *p = lm_graph_find_param(f->g, in->param);
    if (!p) {
        problem(ex, f->path, in->loc, n->id, name, LM_ENOTFOUND, "unknown_parameter",
                "the input refers to parameter \"%s\", which the sub-workflow does not declare",
                in->param);
        return LM_ENOTFOUND;
    }
    const lm_graph_input *given = lm_graph_node_input(f->host, p->name);
    if (given)
        return emit_input(ex, f->parent, given, n, name, loc, p->type);
    if (!p->def)
        return LM_EINVAL; /* required_input_missing: reported by check_host */
    lm_error err;
    return add_status(ex, lm_graph_add_literal(ex->dst, n, name, lm_value_ref(p->def), loc, &err),
                      &err);
}

/* Input `in`, written in frame f, as input `name` of output node n. `want` is the type of
 * the parameter it feeds (INT literals for FLOAT parameters become FLOAT), or NONE. */
static lm_status emit_input(expander *ex, const frame *f, const lm_graph_input *in,
                            lm_graph_node *n, const char *name, lm_srcloc loc, lm_type want)
{
    lm_error err;
    lm_status st = LM_OK;
    target t;
    switch (in->kind) {
    case LM_GRAPH_INPUT_LITERAL: {
        lm_value *v = lm_value_ref(in->literal);
        if (want == LM_TYPE_FLOAT && lm_value_type(v) == LM_TYPE_INT) {
            lm_value_unref(v);
            v = lm_value_float(lm_value_as_float(in->literal));
        }
        st = v ? lm_graph_add_literal(ex->dst, n, name, v, loc, &err)
               : lm_errorf(&err, LM_ENOMEM, "out_of_memory", "out of memory");
        return add_status(ex, st, &err);
    }
    case LM_GRAPH_INPUT_LINK:
        if (resolve_link(ex, f, in->link_node, in->link_output, in->link_index, in->loc, &t))
            return LM_EINVAL;
        st = lm_graph_add_link(ex->dst, n, name, t.node, t.output, t.index, loc, &err);
        lm_free(t.node);
        return add_status(ex, st, &err);
    case LM_GRAPH_INPUT_PARAM:
        if (f->parent)
            return bind_param(ex, f, in, n, name, loc);
        return add_status(ex, lm_graph_add_param_ref(ex->dst, n, name, in->param, loc, &err), &err);
    }
    return LM_OK;
}

static lm_status copy_strings(lm_graph_node *n, const lm_graph_node *src, const frame *f)
{
    if (src->title && !(n->title = lm_strdup(src->title)))
        return LM_ENOMEM;
    const char *file = f->parent ? f->path : src->file;
    if (file && !(n->file = lm_strdup(file)))
        return LM_ENOMEM;
    return LM_OK;
}

static lm_status emit_node(expander *ex, const frame *f, const lm_graph_node *src)
{
    char *id = out_id(f, src->id);
    lm_graph_node *n = NULL;
    lm_error err;
    lm_status st = id ? lm_graph_add_node(ex->dst, id, src->type, src->loc, &n, &err)
                      : lm_errorf(&err, LM_ENOMEM, "out_of_memory", "out of memory");
    lm_free(id);
    if (st == LM_OK && copy_strings(n, src, f) != LM_OK)
        st = lm_errorf(&err, LM_ENOMEM, "out_of_memory", "out of memory");
    if (st != LM_OK) {
        report(ex, &err);
        return st;
    }
    for (size_t k = 0; k < src->n_inputs && ex->first != LM_ENOMEM; k++)
        emit_input(ex, f, &src->inputs[k], n, src->inputs[k].name, src->inputs[k].loc,
                   LM_TYPE_NONE);
    return ex->first == LM_ENOMEM ? LM_ENOMEM : LM_OK;
}

static lm_status emit_frame(expander *ex, const frame *f)
{
    for (size_t i = 0; i < f->g->n_nodes; i++) {
        const lm_graph_node *n = &f->g->nodes[i];
        lm_status st = LM_OK;
        if (f->subs[i])
            st = emit_frame(ex, f->subs[i]);
        else if (!n->workflow)
            st = emit_node(ex, f, n);
        if (st == LM_ENOMEM)
            return st;
    }
    return LM_OK;
}

/* ---- the top: params and outputs of the outer graph -------------------------------- */

static lm_status copy_param(lm_graph *dst, const lm_graph_param *p, lm_error *err)
{
    lm_graph_param *q = NULL;
    lm_status st = lm_graph_add_param(dst, p->name, p->type, lm_value_ref(p->def), p->description,
                                      p->loc, &q, err);
    if (st != LM_OK)
        return st;
    q->has_min = p->has_min;
    q->has_max = p->has_max;
    q->min = p->min;
    q->max = p->max;
    size_t n = 0;
    while (p->choices && p->choices[n])
        n++;
    if (p->choices && !(q->choices = lm_calloc(n + 1, sizeof(char *))))
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!(q->choices[i] = lm_strdup(p->choices[i])))
            return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
    return LM_OK;
}

static lm_status emit_top(expander *ex, const frame *top)
{
    const lm_graph *g = top->g;
    lm_error err;
    lm_status st = LM_OK;
    if (g->description && !(ex->dst->description = lm_strdup(g->description)))
        st = lm_errorf(&err, LM_ENOMEM, "out_of_memory", "out of memory");
    for (size_t i = 0; st == LM_OK && i < g->n_params; i++)
        st = copy_param(ex->dst, &g->params[i], &err);
    if (st != LM_OK) {
        report(ex, &err);
        return st;
    }
    st = emit_frame(ex, top);
    for (size_t i = 0; st == LM_OK && i < g->n_outputs; i++) {
        const lm_graph_output *o = &g->outputs[i];
        target t;
        if (resolve_link(ex, top, o->link_node, o->link_output, o->link_index, o->loc, &t))
            continue;
        st = add_status(ex,
                        lm_graph_add_output(ex->dst, o->name, t.node, t.output, t.index,
                                            o->description, o->loc, &err),
                        &err);
        lm_free(t.node);
    }
    return st;
}

static void expander_fini(expander *ex)
{
    for (size_t i = 0; i < ex->n_files; i++) {
        lm_free(ex->files[i].real);
        lm_graph_free(ex->files[i].g);
    }
    lm_free(ex->files);
    free(ex->confine_real);
}

static lm_status expander_init(expander *ex, const lm_expand_opts *opts, lm_diag *diag)
{
    static const lm_expand_opts none = { NULL, 0 };
    memset(ex, 0, sizeof(*ex));
    ex->opts = opts ? opts : &none;
    ex->diag = diag;
    ex->max_depth = ex->opts->max_depth > 0 ? ex->opts->max_depth : 16;
    if (ex->max_depth > LM_WORKFLOW_MAX_DEPTH)
        ex->max_depth = LM_WORKFLOW_MAX_DEPTH;
    if (ex->opts->confine_dir && !(ex->confine_real = realpath(ex->opts->confine_dir, NULL))) {
        lm_error err;
        lm_errorf(&err, LM_ENOTFOUND, "file_open", "the workflow directory does not exist");
        lm_error_at_file(&err, ex->opts->confine_dir, 0, 0);
        report(ex, &err);
        return LM_ENOTFOUND;
    }
    return LM_OK;
}

lm_status lm_graph_expand(const lm_graph *g, const lm_expand_opts *opts, lm_graph **out,
                          lm_diag *diag)
{
    *out = NULL;
    expander ex;
    lm_error err;
    frame *top = NULL;
    lm_status st = expander_init(&ex, opts, diag);
    if (st == LM_OK && (st = lm_graph_new(&ex.dst, g->file, g->format, &err)) != LM_OK)
        report(&ex, &err);
    if (st == LM_OK) {
        char *real = g->file[0] == '<' ? NULL : realpath(g->file, NULL);
        char *owned = real ? lm_strdup(real) : NULL;
        free(real);
        top = frame_new(g, g->file, owned, NULL, NULL);
        ex.n_nodes = g->n_nodes;
        if (!top)
            oom(&ex);
    }
    if (top && load_frame(&ex, top) == LM_OK)
        emit_top(&ex, top);
    frame_free(top);
    expander_fini(&ex);
    if (ex.first != LM_OK) {
        lm_graph_free(ex.dst);
        return ex.first;
    }
    *out = ex.dst;
    return LM_OK;
}
