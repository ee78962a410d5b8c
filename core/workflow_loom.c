/* core/workflow_loom.c — the Loom workflow structure (YAML or JSON) from the text tree.
 *
 * docs/workflows.md is the user's description of this structure. The rule that keeps links
 * unambiguous: only a map with exactly one key `link`, `param` or `value` is special; every
 * scalar is a literal (a string that looks like "node.OUTPUT" stays a string). Lists and
 * maps are literals only inside {value: …}, where they become their JSON text. Unknown keys
 * are errors (they are almost always typos), each naming its place and the keys allowed. */
#include "core/base/alloc.h"
#include "core/workflow.h"
#include "core/workflow_doc.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *file;
    lm_graph *g;
    lm_error *err;
} lbuild;

static lm_status oom(lbuild *b)
{
    return lm_errorf(b->err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
}

static lm_status bad(lbuild *b, lm_srcloc loc, const char *hint, const char *fmt, ...)
    LM_PRINTF(4, 5);

/* A structural error at loc (kind "invalid_workflow"), with an optional hint. */
static lm_status bad(lbuild *b, lm_srcloc loc, const char *hint, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lm_workflow__errorf(b->err, b->file, loc, LM_EINVAL, "invalid_workflow", "%s", msg);
    if (hint)
        lm_error_hint(b->err, "%s", hint);
    return LM_EINVAL;
}

/* Every key of map must be in `allowed` (NULL-terminated); `what` names the map. */
static lm_status check_keys(lbuild *b, const lm_doc *map, const char *const *allowed,
                            const char *what, const char *list)
{
    for (size_t i = 0; i < map->count; i++) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, map->items[i].key) != 0)
            a++;
        if (!*a)
            return bad(b, map->items[i].key_loc, NULL, "%s: unknown key \"%.60s\"; expected %s",
                       what, map->items[i].key, list);
    }
    return LM_OK;
}

static bool is_scalar(const lm_doc *d)
{
    return d->kind != LM_DOC_MAP && d->kind != LM_DOC_SEQ && d->kind != LM_DOC_NULL;
}

/* An optional string field: absent/null gives NULL. */
static lm_status opt_string(lbuild *b, const lm_doc *map, const char *key, const char *what,
                            const char **out)
{
    const lm_doc *d = lm_workflow__doc_get(map, key);
    *out = NULL;
    if (!d || d->kind == LM_DOC_NULL)
        return LM_OK;
    if (d->kind != LM_DOC_STRING)
        return bad(b, d->loc, "quote the value", "%s: `%s` must be a string, not %s", what, key,
                   lm_workflow__doc_kind_name(d->kind));
    *out = d->s;
    return LM_OK;
}

/* The value of a scalar tree node (new reference), or NULL on out-of-memory. */
static lm_value *scalar_value(const lm_doc *d)
{
    switch (d->kind) {
    case LM_DOC_BOOL:
        return lm_value_bool(d->b);
    case LM_DOC_INT:
        return lm_value_int(d->i);
    case LM_DOC_FLOAT:
        return lm_value_float(d->f);
    case LM_DOC_STRING:
        return lm_value_string(d->s);
    default:
        return NULL;
    }
}

static lm_type scalar_type(const lm_doc *d)
{
    switch (d->kind) {
    case LM_DOC_BOOL:
        return LM_TYPE_BOOLEAN;
    case LM_DOC_INT:
        return LM_TYPE_INT;
    case LM_DOC_FLOAT:
        return LM_TYPE_FLOAT;
    default:
        return LM_TYPE_STRING;
    }
}

typedef struct {
    const char *node;   /* borrowed from the tree, or `buf` */
    const char *output; /* name, or NULL */
    int index;          /* or -1 */
    char buf[128];
} lref;

static bool all_digits(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

static lm_status link_from_string(lbuild *b, const lm_doc *d, lref *r)
{
    const char *dot = strrchr(d->s, '.');
    size_t n = dot ? (size_t)(dot - d->s) : 0;
    if (!dot || n == 0 || !dot[1] || n >= sizeof(r->buf))
        return bad(b, d->loc,
                   "write {link: node.OUTPUT}, e.g. {link: decode.IMAGE} or {link: decode.0}",
                   "link \"%.80s\" is not of the form node.OUTPUT", d->s);
    memcpy(r->buf, d->s, n);
    r->buf[n] = '\0';
    r->node = r->buf;
    if (!all_digits(dot + 1)) {
        r->output = dot + 1;
        return LM_OK;
    }
    if (strlen(dot + 1) > 6)
        return bad(b, d->loc, NULL, "output index %.20s is too large", dot + 1);
    r->index = atoi(dot + 1);
    return LM_OK;
}

static lm_status link_from_list(lbuild *b, const lm_doc *d, lref *r)
{
    const lm_doc *id = d->count == 2 ? d->items[0].value : NULL;
    const lm_doc *out = d->count == 2 ? d->items[1].value : NULL;
    bool ok = id && id->kind == LM_DOC_STRING &&
              ((out->kind == LM_DOC_INT && out->i >= 0 && out->i < 1000000) ||
               (out->kind == LM_DOC_STRING && out->s[0]));
    if (!ok)
        return bad(b, d->loc, "write [node, index] such as [decode, 0], or node.OUTPUT",
                   "a link list must hold a node id and an output index or name");
    r->node = id->s;
    if (out->kind == LM_DOC_STRING)
        r->output = out->s;
    else
        r->index = (int)out->i;
    return LM_OK;
}

/* The target of {link: …}: "node.OUTPUT", "node.0" or [node, 0]. */
static lm_status read_link(lbuild *b, const lm_doc *d, lref *r)
{
    r->node = r->output = NULL;
    r->index = -1;
    lm_status st;
    if (d->kind == LM_DOC_STRING)
        st = link_from_string(b, d, r);
    else if (d->kind == LM_DOC_SEQ)
        st = link_from_list(b, d, r);
    else
        return bad(b, d->loc, "write {link: node.OUTPUT}",
                   "a link is a string node.OUTPUT or a list [node, index], not %s",
                   lm_workflow__doc_kind_name(d->kind));
    if (st == LM_OK && !lm_workflow__id_ok(r->node, false))
        return bad(b, d->loc, "node ids use letters, digits, '_' and '-'",
                   "link names node \"%.60s\", which is not a valid node id", r->node);
    return st;
}

/* {value: X}: a scalar is itself; a list or map is passed as its JSON text. */
static lm_status explicit_value(lbuild *b, const lm_doc *d, lm_value **out)
{
    *out = NULL;
    if (d->kind == LM_DOC_NULL)
        return bad(b, d->loc, "give a value, or remove the input", "{value: …} holds no value");
    if (is_scalar(d)) {
        *out = scalar_value(d);
        return *out ? LM_OK : oom(b);
    }
    char *json = lm_workflow__doc_to_json(d);
    *out = json ? lm_value_string(json) : NULL;
    lm_free(json);
    return *out ? LM_OK : oom(b);
}

static lm_status add_special(lbuild *b, lm_graph_node *n, const char *name, const lm_doc *d)
{
    const lm_doc_entry *e = &d->items[0];
    const lm_doc *v = e->value;
    if (strcmp(e->key, "link") == 0) {
        lref r;
        lm_status st = read_link(b, v, &r);
        return st ? st
                  : lm_graph_add_link(b->g, n, name, r.node, r.output, r.index, d->loc, b->err);
    }
    if (strcmp(e->key, "param") == 0) {
        if (v->kind != LM_DOC_STRING || !lm_workflow__id_ok(v->s, false))
            return bad(b, v->loc, "write {param: name} with a parameter declared under params",
                       "{param: …} must name a parameter");
        return lm_graph_add_param_ref(b->g, n, name, v->s, d->loc, b->err);
    }
    lm_value *value;
    lm_status st = explicit_value(b, v, &value);
    return st ? st : lm_graph_add_literal(b->g, n, name, value, d->loc, b->err);
}

static bool is_special(const lm_doc *d)
{
    if (d->kind != LM_DOC_MAP || d->count != 1)
        return false;
    const char *k = d->items[0].key;
    return !strcmp(k, "link") || !strcmp(k, "param") || !strcmp(k, "value");
}

static lm_status add_input(lbuild *b, lm_graph_node *n, const lm_doc_entry *e)
{
    const lm_doc *d = e->value;
    if (!e->key[0] || strlen(e->key) > 63)
        return bad(b, e->key_loc, NULL, "an input name must have 1 to 63 characters");
    if (is_special(d))
        return add_special(b, n, e->key, d);
    if (is_scalar(d)) {
        lm_value *v = scalar_value(d);
        return v ? lm_graph_add_literal(b->g, n, e->key, v, d->loc, b->err) : oom(b);
    }
    if (d->kind == LM_DOC_NULL)
        return bad(b, e->key_loc, "write a value, or remove the line", "the input has no value");
    if (d->kind == LM_DOC_SEQ)
        return bad(b, d->loc,
                   "write {link: node.OUTPUT} for a link, or {value: [...]} for a literal list",
                   "a list is not a literal");
    return bad(b, d->loc, "an input is a scalar, {link: node.OUTPUT}, {param: name} or {value: …}",
               "a map with keys other than exactly one of link, param or value");
}

static lm_status add_inputs(lbuild *b, lm_graph_node *n, const lm_doc *inputs)
{
    if (!inputs || inputs->kind == LM_DOC_NULL)
        return LM_OK;
    if (inputs->kind != LM_DOC_MAP)
        return bad(b, inputs->loc, "write inputs as `name: value` lines",
                   "node \"%s\": `inputs` must be a map of input names to values, not %s", n->id,
                   lm_workflow__doc_kind_name(inputs->kind));
    for (size_t i = 0; i < inputs->count; i++) {
        lm_status st = add_input(b, n, &inputs->items[i]);
        if (st != LM_OK) {
            lm_error_at_node(b->err, n->id, n->type, inputs->items[i].key);
            return st;
        }
    }
    return LM_OK;
}

static lm_status node_kind(lbuild *b, const char *id, const lm_doc *d, const char **type,
                           const char **workflow)
{
    static const char *const keys[] = { "type", "workflow", "title", "inputs", NULL };
    lm_status st = check_keys(b, d, keys, "node", "type, workflow, title or inputs");
    if (st == LM_OK)
        st = opt_string(b, d, "type", "node", type);
    if (st == LM_OK)
        st = opt_string(b, d, "workflow", "node", workflow);
    if (st != LM_OK)
        return st;
    if (!*type && !*workflow)
        return bad(b, d->loc, "add `type: <NodeType>`, or `workflow: <file>` for a sub-workflow",
                   "node \"%s\" has neither `type` nor `workflow`", id);
    if (*type && *workflow)
        return bad(b, d->loc, "keep one of them", "node \"%s\" has both `type` and `workflow`", id);
    if ((*type && !**type) || (*workflow && !**workflow))
        return bad(b, d->loc, NULL, "node \"%s\": `type` or `workflow` is empty", id);
    return LM_OK;
}

static lm_status add_node(lbuild *b, const lm_doc_entry *e)
{
    const lm_doc *d = e->value;
    if (!lm_workflow__id_ok(e->key, false))
        return bad(b, e->key_loc, "use letters, digits, '_' and '-' (at most 63)",
                   "node id \"%.60s\" is not valid", e->key);
    if (d->kind != LM_DOC_MAP)
        return bad(b, d->loc, "write `type:` and `inputs:` under the node id",
                   "node \"%s\" must be a map, not %s", e->key,
                   lm_workflow__doc_kind_name(d->kind));
    const char *type, *workflow, *title;
    lm_status st = node_kind(b, e->key, d, &type, &workflow);
    if (st == LM_OK)
        st = opt_string(b, d, "title", "node", &title);
    lm_graph_node *n = NULL;
    if (st == LM_OK)
        st = lm_graph_add_node(b->g, e->key, type, e->key_loc, &n, b->err);
    if (st != LM_OK)
        return st;
    if (workflow && !(n->workflow = lm_strdup(workflow)))
        return oom(b);
    if (title && !(n->title = lm_strdup(title)))
        return oom(b);
    return add_inputs(b, n, lm_workflow__doc_get(d, "inputs"));
}

static lm_status add_nodes(lbuild *b, const lm_doc *root)
{
    const lm_doc_entry *e = lm_workflow__doc_find(root, "nodes");
    if (!e)
        return bad(b, root->loc, "add a `nodes:` map (docs/workflows.md)",
                   "the workflow has no `nodes` section");
    const lm_doc *nodes = e->value;
    if (nodes->kind != LM_DOC_MAP || nodes->count == 0)
        return bad(b, nodes->kind == LM_DOC_NULL ? e->key_loc : nodes->loc,
                   "write each node as `id: {type: …, inputs: …}`",
                   "`nodes` must be a map of node ids to nodes with at least one node");
    if (nodes->count > LM_WORKFLOW_MAX_NODES) {
        lm_workflow__errorf(b->err, b->file, e->key_loc, LM_ELIMIT, "workflow_too_large",
                            "%zu nodes is more than the limit of %d", nodes->count,
                            LM_WORKFLOW_MAX_NODES);
        return LM_ELIMIT;
    }
    for (size_t i = 0; i < nodes->count; i++) {
        lm_status st = add_node(b, &nodes->items[i]);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

static lm_status add_output(lbuild *b, const lm_doc_entry *e)
{
    static const char *const keys[] = { "link", "description", NULL };
    const lm_doc *d = e->value;
    const char *hint = "write `name: {link: node.OUTPUT, description: …}`";
    if (!lm_workflow__id_ok(e->key, false))
        return bad(b, e->key_loc, "use letters, digits, '_' and '-'",
                   "output name \"%.60s\" is not valid", e->key);
    if (d->kind != LM_DOC_MAP || !lm_workflow__doc_find(d, "link"))
        return bad(b, d->loc, hint, "output \"%s\" must be a map with `link`", e->key);
    const char *desc;
    lref r;
    lm_status st = check_keys(b, d, keys, "output", "link or description");
    if (st == LM_OK)
        st = opt_string(b, d, "description", "output", &desc);
    if (st == LM_OK)
        st = read_link(b, lm_workflow__doc_get(d, "link"), &r);
    if (st != LM_OK)
        return st;
    return lm_graph_add_output(b->g, e->key, r.node, r.output, r.index, desc, e->key_loc, b->err);
}

static lm_status add_outputs(lbuild *b, const lm_doc *outputs)
{
    if (!outputs || outputs->kind == LM_DOC_NULL)
        return LM_OK;
    if (outputs->kind != LM_DOC_MAP)
        return bad(b, outputs->loc, "write `name: {link: node.OUTPUT}`",
                   "`outputs` must be a map of output names to links");
    for (size_t i = 0; i < outputs->count; i++) {
        lm_status st = add_output(b, &outputs->items[i]);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

static lm_status param_type(lbuild *b, const char *name, const lm_doc *d, const lm_doc *def,
                            lm_type *type)
{
    const lm_doc *t = lm_workflow__doc_get(d, "type");
    if (!t || t->kind == LM_DOC_NULL) {
        if (!def || !is_scalar(def))
            return bad(b, d->loc, "write e.g. {type: INT, default: 1}",
                       "param \"%s\" needs a `type` or a `default`", name);
        *type = scalar_type(def);
        return LM_OK;
    }
    *type = t->kind == LM_DOC_STRING ? lm_type_lookup(t->s) : LM_TYPE_NONE;
    if (*type == LM_TYPE_NONE || *type == LM_TYPE_ANY)
        return bad(b, t->loc, "use INT, FLOAT, STRING, BOOLEAN, or a value type such as IMAGE",
                   "param \"%s\": unknown type %s%.40s%s", name, t->s ? "\"" : "",
                   t->s ? t->s : lm_workflow__doc_kind_name(t->kind), t->s ? "\"" : "");
    return LM_OK;
}

static bool default_fits(const lm_doc *def, lm_type type)
{
    switch (type) {
    case LM_TYPE_INT:
        return def->kind == LM_DOC_INT;
    case LM_TYPE_FLOAT:
        return def->kind == LM_DOC_INT || def->kind == LM_DOC_FLOAT;
    case LM_TYPE_STRING:
        return def->kind == LM_DOC_STRING;
    case LM_TYPE_BOOLEAN:
        return def->kind == LM_DOC_BOOL;
    default:
        return false;
    }
}

static lm_status param_default(lbuild *b, const char *name, const lm_doc *def, lm_type type,
                               lm_value **out)
{
    *out = NULL;
    if (!def || def->kind == LM_DOC_NULL)
        return LM_OK;
    if (!default_fits(def, type))
        return bad(b, def->loc,
                   type >= LM_TYPE_IMAGE ? "a param of this type is given by a link"
                                         : "give a default of the declared type",
                   "param \"%s\": the default is %s, which does not fit type %s", name,
                   lm_workflow__doc_kind_name(def->kind), lm_type_name(type));
    if (type == LM_TYPE_FLOAT)
        *out = lm_value_float(def->kind == LM_DOC_INT ? (double)def->i : def->f);
    else
        *out = scalar_value(def);
    return *out ? LM_OK : oom(b);
}

static lm_status param_bound(lbuild *b, const char *name, const lm_doc *d, const char *key,
                             lm_type type, bool *has, double *v)
{
    const lm_doc *x = lm_workflow__doc_get(d, key);
    *has = false;
    if (!x || x->kind == LM_DOC_NULL)
        return LM_OK;
    if (type != LM_TYPE_INT && type != LM_TYPE_FLOAT)
        return bad(b, x->loc, "remove it",
                   "param \"%s\": `%s` applies to INT and FLOAT params only", name, key);
    if (x->kind != LM_DOC_INT && x->kind != LM_DOC_FLOAT)
        return bad(b, x->loc, NULL, "param \"%s\": `%s` must be a number", name, key);
    *has = true;
    *v = x->kind == LM_DOC_INT ? (double)x->i : x->f;
    return LM_OK;
}

static char *scalar_text(const lm_doc *d)
{
    char buf[64];
    switch (d->kind) {
    case LM_DOC_STRING:
        return lm_strdup(d->s);
    case LM_DOC_INT:
        snprintf(buf, sizeof(buf), "%lld", (long long)d->i);
        break;
    case LM_DOC_FLOAT:
        snprintf(buf, sizeof(buf), "%.17g", d->f);
        break;
    default:
        snprintf(buf, sizeof(buf), "%s", d->b ? "true" : "false");
        break;
    }
    return lm_strdup(buf);
}

static lm_status param_choices(lbuild *b, const char *name, const lm_doc *d, lm_graph_param *p)
{
    const lm_doc *c = lm_workflow__doc_get(d, "choices");
    if (!c || c->kind == LM_DOC_NULL)
        return LM_OK;
    if (c->kind != LM_DOC_SEQ || c->count == 0)
        return bad(b, c->loc, "write e.g. choices: [normal, multiply]",
                   "param \"%s\": `choices` must be a non-empty list", name);
    if (!(p->choices = lm_calloc(c->count + 1, sizeof(char *))))
        return oom(b);
    for (size_t i = 0; i < c->count; i++) {
        const lm_doc *v = c->items[i].value;
        if (!is_scalar(v))
            return bad(b, v->loc, NULL, "param \"%s\": each choice must be a plain value", name);
        if (!(p->choices[i] = scalar_text(v)))
            return oom(b);
    }
    return LM_OK;
}

/* The default against min, max and choices. */
static lm_status param_check_default(lbuild *b, const lm_graph_param *p, const lm_doc *def)
{
    if (!p->def)
        return LM_OK;
    double v = p->type == LM_TYPE_INT || p->type == LM_TYPE_FLOAT ? lm_value_as_float(p->def) : 0.0;
    if ((p->has_min && v < p->min) || (p->has_max && v > p->max))
        return bad(b, def->loc, "change the default or the range",
                   "param \"%s\": the default lies outside min/max", p->name);
    if (!p->choices)
        return LM_OK;
    char *text = scalar_text(def);
    bool found = false;
    for (char **c = p->choices; text && *c && !found; c++)
        found = strcmp(*c, text) == 0;
    lm_free(text);
    if (!found)
        return bad(b, def->loc, "make the default one of the choices",
                   "param \"%s\": the default is not among the choices", p->name);
    return LM_OK;
}

static lm_status add_param_map(lbuild *b, const lm_doc_entry *e)
{
    static const char *const keys[] = { "type",        "default", "min", "max",
                                        "description", "choices", NULL };
    const lm_doc *d = e->value, *def = lm_workflow__doc_get(d, "default");
    lm_type type = LM_TYPE_NONE;
    lm_value *value = NULL;
    const char *desc = NULL;
    lm_graph_param *p = NULL;
    lm_status st =
        check_keys(b, d, keys, "param", "type, default, min, max, description or choices");
    if (st == LM_OK)
        st = param_type(b, e->key, d, def, &type);
    if (st == LM_OK)
        st = opt_string(b, d, "description", "param", &desc);
    if (st == LM_OK)
        st = param_default(b, e->key, def, type, &value);
    if (st == LM_OK)
        st = lm_graph_add_param(b->g, e->key, type, value, desc, e->key_loc, &p, b->err);
    if (st == LM_OK)
        st = param_bound(b, e->key, d, "min", type, &p->has_min, &p->min);
    if (st == LM_OK)
        st = param_bound(b, e->key, d, "max", type, &p->has_max, &p->max);
    if (st == LM_OK)
        st = param_choices(b, e->key, d, p);
    if (st == LM_OK)
        st = param_check_default(b, p, def);
    return st;
}

static lm_status add_param(lbuild *b, const lm_doc_entry *e)
{
    const lm_doc *d = e->value;
    if (!lm_workflow__id_ok(e->key, false))
        return bad(b, e->key_loc, "use letters, digits, '_' and '-'",
                   "param name \"%.60s\" is not valid", e->key);
    if (d->kind == LM_DOC_MAP)
        return add_param_map(b, e);
    if (!is_scalar(d))
        return bad(b, d->kind == LM_DOC_NULL ? e->key_loc : d->loc,
                   "write `name: default` or `name: {type: INT, default: 1}`",
                   "param \"%s\" needs a default value or a map with its type", e->key);
    lm_value *v = scalar_value(d);
    if (!v)
        return oom(b);
    return lm_graph_add_param(b->g, e->key, scalar_type(d), v, NULL, e->key_loc, NULL, b->err);
}

static lm_status add_params(lbuild *b, const lm_doc *params)
{
    if (!params || params->kind == LM_DOC_NULL)
        return LM_OK;
    if (params->kind != LM_DOC_MAP)
        return bad(b, params->loc, "write `name: {type: INT, default: 1}` lines",
                   "`params` must be a map of parameter names to definitions");
    for (size_t i = 0; i < params->count; i++) {
        lm_status st = add_param(b, &params->items[i]);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

static lm_status check_header(lbuild *b, const lm_doc *root)
{
    static const char *const keys[] = { "loom", "description", "params", "nodes", "outputs", NULL };
    lm_status st =
        check_keys(b, root, keys, "workflow", "loom, description, params, nodes or outputs");
    if (st != LM_OK)
        return st;
    const lm_doc *v = lm_workflow__doc_get(root, "loom");
    if (v && !(v->kind == LM_DOC_INT && v->i == 1))
        return bad(b, v->loc, "write `loom: 1`, or remove the line",
                   "unsupported format version; this Loom reads version 1");
    const char *desc;
    st = opt_string(b, root, "description", "workflow", &desc);
    if (st == LM_OK && desc && !(b->g->description = lm_strdup(desc)))
        return oom(b);
    return st;
}

lm_status lm_workflow__build_loom(const lm_doc *root, const char *name, lm_graph_format format,
                                  lm_graph **out, lm_error *err)
{
    *out = NULL;
    lbuild b = { name, NULL, err };
    lm_status st = lm_graph_new(&b.g, name, format, err);
    if (st != LM_OK)
        return st;
    st = check_header(&b, root);
    if (st == LM_OK)
        st = add_params(&b, lm_workflow__doc_get(root, "params"));
    if (st == LM_OK)
        st = add_nodes(&b, root);
    if (st == LM_OK)
        st = add_outputs(&b, lm_workflow__doc_get(root, "outputs"));
    if (st != LM_OK) {
        lm_graph_free(b.g);
        return st;
    }
    *out = b.g;
    return LM_OK;
}
