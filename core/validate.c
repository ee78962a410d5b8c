/* core/validate.c — checks a graph against the registry and builds the plan.
 *
 * Steps, each reporting every problem it finds into the diag (nothing stops early, so one
 * run of `loom validate` shows all problems):
 *   1. expand sub-workflows (graph_expand.c) into a graph of our own, which step 2 edits;
 *   2. apply overrides: `name=value` sets a parameter, `node.input=value` a literal input;
 *   3. find the roots (output nodes, sources of declared outputs) and walk back along links:
 *      only those nodes are checked and planned (all nodes are checked with opts.strict);
 *   4. check parameter values (type, range, choices);
 *   5. check each node: type known, inputs known, links resolvable and of matching types,
 *      literals converted and inside ranges/choices, required inputs present (defaults
 *      filled), then the node's own check();
 *   6. order the nodes (Kahn's algorithm, smallest graph index first among the ready ones,
 *      so independent nodes keep their order of appearance); what is left is in a cycle.
 * Only a graph without any problem yields a plan: an output node that fails makes the whole
 * request fail, where ComfyUI would run the other outputs. A request either runs as written
 * or not at all, which is what a batch API and a CLI user expect.
 *
 * Resolved inputs are built during step 5 (links by graph index) and moved into the plan,
 * where links become plan indices. The JSON renderings are in validate_json.c. */
#include "core/validate.h"

#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/validate_impl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const lm_node_def *def;
    bool needed;  /* an output depends on it */
    bool checked; /* validated: needed, or strict */
    size_t n_errors;
    int *src;          /* per graph input: source node index of a link, or -1 */
    lm_plan_input *in; /* def->n_inputs resolved inputs; src is a graph index here */
} vnode;

typedef struct {
    const char *id;
    size_t index;
} id_entry;

enum { PARAM_OK, PARAM_BAD, PARAM_MISSING_REPORTED };

typedef struct {
    lm_graph *g; /* expanded; owned */
    const lm_registry *reg;
    const lm_env *env;
    lm_diag *diag;
    size_t n_errors;
    lm_status first_code;
    lm_error scratch; /* where reports go when the diag cannot grow */
    vnode *nodes;
    id_entry *ids;     /* sorted by id */
    lm_value **params; /* effective value per parameter (owned), NULL when none */
    unsigned char *param_state;
    int *out_src, *out_index; /* per declared output: source node and output, or -1 */
    bool strict;
} vstate;

typedef struct {
    const lm_graph_node *node; /* NULL: the graph itself */
    const char *input;         /* input, parameter or output name, or NULL */
    lm_srcloc loc;             /* line 0: the node's place */
} place;

static const lm_env empty_env = { 0 };

/* ---- reporting ------------------------------------------------------------------------- */

static lm_error *report(vstate *s, place at, lm_status code, const char *kind, const char *fmt, ...)
    LM_PRINTF(5, 6);

static lm_error *report(vstate *s, place at, lm_status code, const char *kind, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lm_error *e = lm_diag_addf(s->diag, code, kind, "%s", msg);
    if (!e) {
        e = &s->scratch;
        lm_errorf(e, code, kind, "%s", msg);
    }
    lm_srcloc loc = at.loc;
    const char *file = at.node && at.node->file ? at.node->file : s->g->file;
    if (at.node) {
        lm_error_at_node(e, at.node->id, at.node->type, at.input);
        s->nodes[at.node - s->g->nodes].n_errors++;
        if (loc.line <= 0)
            loc = at.node->loc;
    } else if (at.input) {
        lm_error_at_node(e, NULL, NULL, at.input);
    }
    if (loc.line > 0 || !at.node)
        lm_error_at_file(e, file, loc.line, loc.col);
    if (s->n_errors++ == 0)
        s->first_code = code;
    return e;
}

/* Passes an error from a callback (choices_fn, check) through with the node's place. */
static void report_passed(vstate *s, place at, const lm_error *from)
{
    lm_error *e =
        report(s, at, from->code ? from->code : LM_EINVAL,
               from->kind[0] ? from->kind : "exception_during_validation", "%s", from->msg);
    lm_strlcpy(e->hint, from->hint, sizeof(e->hint));
    if (from->input[0])
        lm_strlcpy(e->input, from->input, sizeof(e->input));
}

static lm_status oom(vstate *s)
{
    report(s, (place){ 0 }, LM_ENOMEM, "out_of_memory", "out of memory validating the workflow");
    return LM_ENOMEM;
}

/* ---- names ----------------------------------------------------------------------------- */

static const char *input_name(const void *items, size_t i)
{
    return ((const lm_input_def *)items)[i].name;
}

static const char *output_name(const void *items, size_t i)
{
    return ((const lm_output_def *)items)[i].name;
}

static const char *param_name(const void *items, size_t i)
{
    return ((const lm_graph_param *)items)[i].name;
}

static const char *string_at(const void *items, size_t i)
{
    return ((const char *const *)items)[i];
}

/* "a, b, c" with at most 10 names, then "… and N more"; "(none)" for an empty list. */
static void join_names(char *buf, size_t size, const void *items, size_t n, lm_name_at_fn name)
{
    lm_str s;
    lm_str_init(&s);
    for (size_t i = 0; i < n && i < 10; i++)
        lm_str_appendf(&s, "%s%s", i ? ", " : "", name(items, i));
    if (n > 10)
        lm_str_appendf(&s, " and %zu more", n - 10);
    lm_strlcpy(buf, n == 0 ? "(none)" : s.oom ? "…" : lm_str_cstr(&s), size);
    lm_str_fini(&s);
}

/* The name closest to `want` (edit distance at most a third of its length, at least 2). */
static size_t count_strings(const char *const *list)
{
    size_t n = 0;
    while (list && list[n])
        n++;
    return n;
}

static bool is_scalar(lm_type t)
{
    return t == LM_TYPE_INT || t == LM_TYPE_FLOAT || t == LM_TYPE_STRING || t == LM_TYPE_BOOLEAN;
}

/* ---- node ids ------------------------------------------------------------------------ */

static int cmp_id(const void *a, const void *b)
{
    const id_entry *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static int find_node(const vstate *s, const char *id)
{
    size_t lo = 0, hi = s->g->n_nodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->ids[mid].id, id);
        if (c == 0)
            return (int)s->ids[mid].index;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static void index_ids(vstate *s)
{
    for (size_t i = 0; i < s->g->n_nodes; i++)
        s->ids[i] = (id_entry){ s->g->nodes[i].id, i };
    qsort(s->ids, s->g->n_nodes, sizeof(*s->ids), cmp_id);
    for (size_t i = 1; i < s->g->n_nodes; i++) {
        if (strcmp(s->ids[i].id, s->ids[i - 1].id) != 0)
            continue;
        const lm_graph_node *n = &s->g->nodes[s->ids[i].index];
        lm_error *e = report(s, (place){ n, NULL, n->loc }, LM_EINVAL, "invalid_prompt",
                             "the node id \"%s\" is used more than once", n->id);
        lm_error_hint(e, "give every node its own id");
    }
}

/* ---- overrides -------------------------------------------------------------------------- */

static bool parse_int(const char *text, int64_t *v)
{
    const char *p = text;
    bool neg = *p == '-';
    if (*p == '-' || *p == '+')
        p++;
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (!(base == 16 ? isxdigit((unsigned char)*p) : isdigit((unsigned char)*p)))
        return false;
    errno = 0;
    char *end;
    unsigned long long u = strtoull(p, &end, base);
    if (errno || *end || u > (unsigned long long)INT64_MAX + neg)
        return false;
    *v = neg ? (u == (unsigned long long)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u) : (int64_t)u;
    return true;
}

static bool parse_float(const char *text, double *v)
{
    if (!*text)
        return false;
    char *end;
    errno = 0;
    *v = strtod(text, &end);
    return !*end && isfinite(*v) && errno != ERANGE;
}

static bool parse_bool(const char *text, bool *v)
{
    if (strcasecmp(text, "true") == 0 || strcmp(text, "1") == 0)
        *v = true;
    else if (strcasecmp(text, "false") == 0 || strcmp(text, "0") == 0)
        *v = false;
    else
        return false;
    return true;
}

/* Parses an override's text as `type`; LM_TYPE_ANY guesses (integer, number, boolean,
 * else text). LM_EINVAL when the text is not of the type, LM_ETYPE for non-scalar types. */
static lm_status parse_text(const char *text, lm_type type, lm_value **out)
{
    int64_t i;
    double f;
    bool b;
    *out = NULL;
    if (type == LM_TYPE_INT || (type == LM_TYPE_ANY && parse_int(text, &i)))
        *out = parse_int(text, &i) ? lm_value_int(i) : NULL;
    else if (type == LM_TYPE_FLOAT || (type == LM_TYPE_ANY && parse_float(text, &f)))
        *out = parse_float(text, &f) ? lm_value_float(f) : NULL;
    else if (type == LM_TYPE_BOOLEAN || (type == LM_TYPE_ANY && parse_bool(text, &b)))
        *out = parse_bool(text, &b) ? lm_value_bool(b) : NULL;
    else if (type == LM_TYPE_STRING || type == LM_TYPE_ANY)
        *out = lm_value_string(text);
    else
        return LM_ETYPE;
    return *out ? LM_OK : LM_EINVAL;
}

static const char *type_advice(lm_type type)
{
    switch (type) {
    case LM_TYPE_INT:
        return "give a whole number (decimal, or hex with 0x)";
    case LM_TYPE_FLOAT:
        return "give a number such as 0.5";
    case LM_TYPE_BOOLEAN:
        return "give true, false, 1 or 0";
    default:
        return "give a value of that type";
    }
}

/* The override's value as `type`: the typed value, or its text parsed. NULL when reported
 * (or out of memory). */
static lm_value *override_value(vstate *s, place at, const lm_override *ov, lm_type type)
{
    if (ov->value)
        return lm_value_ref(ov->value);
    lm_value *v = NULL;
    lm_status st = parse_text(ov->text ? ov->text : "", type, &v);
    if (st == LM_ETYPE) {
        lm_error *e = report(s, at, LM_ETYPE, "invalid_input_type",
                             "%s=%s: this input takes a link from an output of type %s, not a "
                             "value",
                             ov->name, ov->text ? ov->text : "", lm_type_name(type));
        lm_error_hint(e, "link it in the workflow instead");
    } else if (st != LM_OK) {
        lm_error *e = report(s, at, LM_ETYPE, "invalid_input_type",
                             "\"%s\" (from %s=%s) is not a valid %s", ov->text ? ov->text : "",
                             ov->name, ov->text ? ov->text : "", lm_type_name(type));
        lm_error_hint(e, "%s", type_advice(type));
    }
    return v;
}

static void set_param(vstate *s, size_t pi, const lm_override *ov)
{
    const lm_graph_param *p = &s->g->params[pi];
    lm_type type = p->type == LM_TYPE_NONE ? LM_TYPE_ANY : p->type;
    lm_value *v = override_value(s, (place){ NULL, p->name, p->loc }, ov, type);
    if (!v) {
        s->param_state[pi] = PARAM_BAD;
        return;
    }
    lm_value_unref(s->params[pi]);
    s->params[pi] = v;
}

/* Makes graph input `name` of node n the literal v (taken), whatever it was before. */
static lm_status set_literal(vstate *s, lm_graph_node *n, const char *name, lm_value *v)
{
    lm_graph_input *gi = lm_graph_node_input(n, name);
    if (!gi) {
        lm_error e;
        return lm_graph_add_literal(s->g, n, name, v, (lm_srcloc){ 0, 0 }, &e);
    }
    lm_value_unref(gi->literal);
    lm_free(gi->link_node);
    lm_free(gi->link_output);
    lm_free(gi->param);
    gi->link_node = gi->link_output = gi->param = NULL;
    gi->link_index = -1;
    gi->kind = LM_GRAPH_INPUT_LITERAL;
    gi->literal = v;
    return LM_OK;
}

static lm_status set_node_input(vstate *s, size_t ni, const char *input, const lm_override *ov)
{
    lm_graph_node *n = &s->g->nodes[ni];
    const lm_node_def *def = s->nodes[ni].def;
    place at = { n, input, { 0, 0 } };
    lm_type type = LM_TYPE_ANY;
    if (def) {
        int k = lm_node_def_input(def, input);
        if (k < 0) {
            char names[200];
            join_names(names, sizeof(names), def->inputs, def->n_inputs, input_name);
            lm_error *e = report(s, at, LM_EINVAL, "unknown_input",
                                 "override %s: node type %s has no input \"%s\"; its inputs "
                                 "are: %s",
                                 ov->name, def->name, input, names);
            const char *near = lm_str_closest(input, def->inputs, def->n_inputs, input_name);
            if (near)
                lm_error_hint(e, "did you mean %s.%s?", n->id, near);
            return LM_OK;
        }
        type = def->inputs[k].type;
    }
    lm_value *v = override_value(s, at, ov, type);
    if (!v)
        return LM_OK;
    return set_literal(s, n, input, v) == LM_OK ? LM_OK : oom(s);
}

static void unknown_override(vstate *s, const lm_override *ov)
{
    char names[200];
    join_names(names, sizeof(names), s->g->params, s->g->n_params, param_name);
    lm_error *e = report(s, (place){ NULL, ov->name, { 0, 0 } }, LM_ENOTFOUND, "unknown_parameter",
                         "no workflow parameter or node input is named \"%s\"; the parameters "
                         "are: %s",
                         ov->name, names);
    const char *near = lm_str_closest(ov->name, s->g->params, s->g->n_params, param_name);
    if (near)
        lm_error_hint(e, "did you mean %s?", near);
    else
        lm_error_hint(e, "use name=value for a parameter or node.input=value for a node input");
}

static lm_status apply_override(vstate *s, const lm_override *ov)
{
    for (size_t pi = 0; pi < s->g->n_params; pi++) {
        if (strcmp(s->g->params[pi].name, ov->name) == 0) {
            set_param(s, pi, ov);
            return LM_OK;
        }
    }
    const char *dot = strrchr(ov->name, '.');
    int ni = -1;
    if (dot && dot[1]) {
        char *id = lm_strndup(ov->name, (size_t)(dot - ov->name));
        if (!id)
            return oom(s);
        ni = find_node(s, id);
        lm_free(id);
    }
    if (ni < 0) {
        unknown_override(s, ov);
        return LM_OK;
    }
    return set_node_input(s, (size_t)ni, dot + 1, ov);
}

/* ---- parameters ----------------------------------------------------------------------- */

static bool in_list(const char *const *list, const char *s)
{
    for (; list && *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

static void param_range(vstate *s, size_t pi, const lm_value *v)
{
    const lm_graph_param *p = &s->g->params[pi];
    place at = { NULL, p->name, p->loc };
    char shown[80];
    lm_value_to_json(v, shown, sizeof(shown));
    double x = lm_value_as_float(v);
    if (p->has_min && x < p->min) {
        lm_error *e = report(s, at, LM_ERANGE, "value_smaller_than_min",
                             "%s is below the minimum %g", shown, p->min);
        lm_error_hint(e, "set %s to %g or more", p->name, p->min);
        s->param_state[pi] = PARAM_BAD;
    } else if (p->has_max && x > p->max) {
        lm_error *e = report(s, at, LM_ERANGE, "value_bigger_than_max",
                             "%s is above the maximum %g", shown, p->max);
        lm_error_hint(e, "set %s to %g or less", p->name, p->max);
        s->param_state[pi] = PARAM_BAD;
    }
}

static void param_choices(vstate *s, size_t pi, const lm_value *v)
{
    const lm_graph_param *p = &s->g->params[pi];
    const char *str = lm_value_as_string(v);
    if (!p->choices || !str || in_list((const char *const *)p->choices, str))
        return;
    char names[200];
    size_t n = count_strings((const char *const *)p->choices);
    join_names(names, sizeof(names), p->choices, n, string_at);
    lm_error *e = report(s, (place){ NULL, p->name, p->loc }, LM_EINVAL, "value_not_in_list",
                         "\"%s\" is not among the choices: %s", str, names);
    const char *near = lm_str_closest(str, p->choices, n, string_at);
    if (near)
        lm_error_hint(e, "did you mean \"%s\"?", near);
    else
        lm_error_hint(e, "use one of the listed values");
    s->param_state[pi] = PARAM_BAD;
}

/* Converts a parameter's effective value to its declared type and checks it. */
static void check_param(vstate *s, size_t pi)
{
    const lm_graph_param *p = &s->g->params[pi];
    lm_value *v = s->params[pi];
    if (!v || s->param_state[pi] == PARAM_BAD)
        return;
    if (p->type != LM_TYPE_NONE) {
        lm_error conv;
        lm_value *c = lm_value_convert(v, p->type, &conv);
        if (!c) {
            lm_error *e = report(s, (place){ NULL, p->name, p->loc }, LM_ETYPE,
                                 "invalid_input_type", "%s", conv.msg);
            lm_error_hint(e, "%s", type_advice(p->type));
            s->param_state[pi] = PARAM_BAD;
            return;
        }
        lm_value_unref(v);
        s->params[pi] = v = c;
    }
    if (lm_value_type(v) == LM_TYPE_INT || lm_value_type(v) == LM_TYPE_FLOAT)
        param_range(s, pi, v);
    param_choices(s, pi, v);
}

/* The value of parameter `name` for an input at `at`, or NULL when it has none (reported
 * once per parameter). */
static lm_value *param_value(vstate *s, place at, const char *name)
{
    for (size_t pi = 0; pi < s->g->n_params; pi++) {
        const lm_graph_param *p = &s->g->params[pi];
        if (strcmp(p->name, name) != 0)
            continue;
        if (s->params[pi] || s->param_state[pi] != PARAM_OK)
            return s->param_state[pi] == PARAM_OK ? s->params[pi] : NULL;
        lm_error *e =
            report(s, (place){ NULL, p->name, p->loc }, LM_EINVAL, "required_input_missing",
                   "workflow parameter \"%s\" has no default and was not given", p->name);
        lm_error_hint(e, "pass %s=VALUE", p->name);
        s->param_state[pi] = PARAM_MISSING_REPORTED;
        return NULL;
    }
    char names[200];
    join_names(names, sizeof(names), s->g->params, s->g->n_params, param_name);
    lm_error *e = report(s, at, LM_ENOTFOUND, "unknown_parameter",
                         "refers to workflow parameter \"%s\", which is not declared; the "
                         "parameters are: %s",
                         name, names);
    const char *near = lm_str_closest(name, s->g->params, s->g->n_params, param_name);
    if (near)
        lm_error_hint(e, "did you mean %s?", near);
    else
        lm_error_hint(e, "declare it among the workflow's parameters");
    return NULL;
}

/* ---- roots and the needed set ---------------------------------------------------------- */

static void resolve_links(vstate *s)
{
    for (size_t i = 0; i < s->g->n_nodes; i++) {
        const lm_graph_node *n = &s->g->nodes[i];
        for (size_t j = 0; j < n->n_inputs; j++) {
            const lm_graph_input *gi = &n->inputs[j];
            s->nodes[i].src[j] = gi->kind == LM_GRAPH_INPUT_LINK ? find_node(s, gi->link_node) : -1;
        }
    }
}

static void push_needed(vstate *s, int *stack, size_t *top, int i)
{
    if (i < 0 || s->nodes[i].needed)
        return;
    s->nodes[i].needed = true;
    stack[(*top)++] = i;
}

/* Pushes the roots; returns how many there are. */
static size_t push_roots(vstate *s, int *stack, size_t *top)
{
    size_t roots = 0;
    for (size_t i = 0; i < s->g->n_nodes; i++) {
        const lm_node_def *def = s->nodes[i].def;
        if (def && (def->flags & LM_NODE_OUTPUT)) {
            push_needed(s, stack, top, (int)i);
            roots++;
        }
    }
    for (size_t o = 0; o < s->g->n_outputs; o++) {
        const lm_graph_output *go = &s->g->outputs[o];
        s->out_src[o] = find_node(s, go->link_node);
        if (s->out_src[o] < 0) {
            lm_error *e =
                report(s, (place){ NULL, go->name, go->loc }, LM_ENOTFOUND, "invalid_link",
                       "workflow output \"%s\" names node \"%s\", which does not "
                       "exist",
                       go->name, go->link_node);
            lm_error_hint(e, "name one of the workflow's node ids");
        }
        push_needed(s, stack, top, s->out_src[o]);
        roots++;
    }
    return roots;
}

static lm_status mark_needed(vstate *s)
{
    int *stack = lm_malloc(s->g->n_nodes * sizeof(*stack));
    if (!stack)
        return oom(s);
    size_t top = 0;
    if (push_roots(s, stack, &top) == 0) {
        lm_error *e = report(s, (place){ 0 }, LM_EINVAL, "prompt_no_outputs",
                             "the workflow has no output node (e.g. SaveImage) and declares "
                             "no outputs");
        lm_error_hint(e, "add an output node or declare an output");
    }
    while (top > 0) {
        int i = stack[--top];
        for (size_t j = 0; j < s->g->nodes[i].n_inputs; j++)
            push_needed(s, stack, &top, s->nodes[i].src[j]);
    }
    lm_free(stack);
    return LM_OK;
}

/* ---- literal values -------------------------------------------------------------------- */

static bool check_int_range(vstate *s, place at, const lm_input_def *id, int64_t x)
{
    if (!id->i.min && !id->i.max)
        return true;
    if (x < id->i.min) {
        lm_error *e = report(s, at, LM_ERANGE, "value_smaller_than_min",
                             "%" PRId64 " is below the minimum %" PRId64, x, id->i.min);
        lm_error_hint(e, "set %s to %" PRId64 " or more", id->name, id->i.min);
        return false;
    }
    if (x > id->i.max) {
        lm_error *e = report(s, at, LM_ERANGE, "value_bigger_than_max",
                             "%" PRId64 " is above the maximum %" PRId64, x, id->i.max);
        lm_error_hint(e, "set %s to %" PRId64 " or less", id->name, id->i.max);
        return false;
    }
    return true;
}

static bool check_float_range(vstate *s, place at, const lm_input_def *id, const lm_value *v)
{
    double x = lm_value_as_float(v);
    char shown[64];
    lm_value_to_json(v, shown, sizeof(shown));
    if (!isfinite(x)) {
        lm_error *e = report(s, at, LM_ERANGE, "invalid_input_type", "the value is not finite");
        lm_error_hint(e, "give a finite number");
        return false;
    }
    if (id->f.min == 0 && id->f.max == 0)
        return true;
    if (x < id->f.min) {
        lm_error *e = report(s, at, LM_ERANGE, "value_smaller_than_min",
                             "%s is below the minimum %g", shown, id->f.min);
        lm_error_hint(e, "set %s to %g or more", id->name, id->f.min);
        return false;
    }
    if (x > id->f.max) {
        lm_error *e = report(s, at, LM_ERANGE, "value_bigger_than_max",
                             "%s is above the maximum %g", shown, id->f.max);
        lm_error_hint(e, "set %s to %g or less", id->name, id->f.max);
        return false;
    }
    return true;
}

static void not_in_list(vstate *s, place at, const char *str, const char *const *list, size_t n)
{
    char names[200];
    join_names(names, sizeof(names), list, n, string_at);
    lm_error *e = report(s, at, LM_EINVAL, "value_not_in_list",
                         "\"%s\" is not among the choices: %s", str, names);
    const char *near = lm_str_closest(str, list, n, string_at);
    if (near)
        lm_error_hint(e, "did you mean \"%s\"?", near);
    else if (n == 0)
        lm_error_hint(e, "nothing is available to choose from; add the file it names");
    else
        lm_error_hint(e, "use one of the listed values");
}

static bool check_choices(vstate *s, place at, const lm_input_def *id, const lm_value *v)
{
    const char *str = lm_value_as_string(v);
    if (!str || (!id->choices && !id->choices_fn))
        return true;
    if (id->choices) {
        if (in_list(id->choices, str))
            return true;
        not_in_list(s, at, str, id->choices, count_strings(id->choices));
        return false;
    }
    lm_strlist list = { 0 };
    lm_error cerr;
    lm_error_clear(&cerr);
    lm_status st = id->choices_fn(s->env, &list, &cerr);
    bool ok = st == LM_OK && lm_strlist_contains(&list, str);
    if (st != LM_OK)
        report_passed(s, at, &cerr);
    else if (!ok)
        not_in_list(s, at, str, (const char *const *)list.items, list.count);
    lm_strlist_fini(&list);
    return ok;
}

static bool check_value(vstate *s, place at, const lm_input_def *id, const lm_value *v)
{
    if (lm_value_type(v) == LM_TYPE_INT && !check_int_range(s, at, id, lm_value_as_int(v)))
        return false;
    if (lm_value_type(v) == LM_TYPE_FLOAT && !check_float_range(s, at, id, v))
        return false;
    return check_choices(s, at, id, v);
}

static const char *literal_advice(lm_type type)
{
    return type == LM_TYPE_STRING ? "give text (in quotes)" : type_advice(type);
}

/* A literal (or parameter value) for input k of node ni: converted, checked, kept. */
static void resolve_literal(vstate *s, size_t ni, size_t k, lm_value *v, place at)
{
    vnode *vn = &s->nodes[ni];
    const lm_input_def *id = &vn->def->inputs[k];
    lm_type vt = lm_value_type(v);
    if (!is_scalar(id->type) && id->type != LM_TYPE_ANY && vt != id->type) {
        lm_error *e = report(s, at, LM_ETYPE, "invalid_input_type",
                             "got a %s value, but this input takes a link from an output of "
                             "type %s",
                             lm_type_name(vt), lm_type_name(id->type));
        lm_error_hint(e, "link it to a node that outputs %s", lm_type_name(id->type));
        return;
    }
    lm_error conv;
    lm_error_clear(&conv);
    lm_value *c = lm_value_convert(v, id->type, &conv);
    if (!c && !conv.msg[0]) {
        oom(s);
        return;
    }
    if (!c) {
        lm_error *e = report(s, at, LM_ETYPE, "invalid_input_type", "%s", conv.msg);
        lm_error_hint(e, "%s", literal_advice(id->type));
        return;
    }
    if (!check_value(s, at, id, c)) {
        lm_value_unref(c);
        return;
    }
    vn->in[k].literal = c;
}

static lm_value *default_value(const lm_input_def *id)
{
    switch (id->type) {
    case LM_TYPE_INT:
        return lm_value_int(id->i.def);
    case LM_TYPE_FLOAT:
        return lm_value_float(id->f.def);
    case LM_TYPE_BOOLEAN:
        return lm_value_bool(id->b_def);
    default:
        return lm_value_string(id->s_def ? id->s_def : id->choices ? id->choices[0] : "");
    }
}

/* Input k of node ni is absent: optional, a default, or a required input missing. */
static void resolve_absent(vstate *s, size_t ni, size_t k, place at)
{
    const lm_input_def *id = &s->nodes[ni].def->inputs[k];
    if (id->flags & LM_INPUT_OPTIONAL)
        return;
    bool needs_link = !is_scalar(id->type) || (id->flags & LM_INPUT_LINK_ONLY);
    bool open_combo = id->type == LM_TYPE_STRING && id->choices_fn && !id->s_def;
    if (needs_link || open_combo) {
        lm_error *e =
            report(s, at, LM_EINVAL, "required_input_missing", "required input is missing");
        if (needs_link)
            lm_error_hint(e, "link it to an output of type %s", lm_type_name(id->type));
        else
            lm_error_hint(e, "set it to one of the available choices");
        return;
    }
    lm_value *v = default_value(id);
    if (!v) {
        oom(s);
        return;
    }
    resolve_literal(s, ni, k, v, at);
    lm_value_unref(v);
}

/* ---- links ----------------------------------------------------------------------------- */

/* The output a link names on source node `src`, or -1 (reported). */
static int link_output(vstate *s, place at, const lm_graph_input *gi, size_t src)
{
    const lm_graph_node *sn = &s->g->nodes[src];
    const lm_node_def *sd = s->nodes[src].def;
    if (gi->link_output) {
        int out = lm_node_def_output(sd, gi->link_output);
        if (out >= 0)
            return out;
        char names[200];
        join_names(names, sizeof(names), sd->outputs, sd->n_outputs, output_name);
        lm_error *e = report(s, at, LM_ENOTFOUND, "invalid_link",
                             "node \"%s\" (%s) has no output \"%s\"; its outputs are: %s", sn->id,
                             sd->name, gi->link_output, names);
        const char *near = lm_str_closest(gi->link_output, sd->outputs, sd->n_outputs, output_name);
        if (near)
            lm_error_hint(e, "did you mean %s.%s?", sn->id, near);
        return -1;
    }
    if (gi->link_index >= 0 && (size_t)gi->link_index < sd->n_outputs)
        return gi->link_index;
    lm_error *e = report(s, at, LM_ENOTFOUND, "invalid_link",
                         "node \"%s\" (%s) has no output %d; it has %zu (numbered from 0)", sn->id,
                         sd->name, gi->link_index, sd->n_outputs);
    lm_error_hint(e, "link to an output index below %zu", sd->n_outputs);
    return -1;
}

static void resolve_link(vstate *s, size_t ni, size_t k, const lm_graph_input *gi, place at)
{
    vnode *vn = &s->nodes[ni];
    const lm_input_def *id = &vn->def->inputs[k];
    int src = vn->src[gi - s->g->nodes[ni].inputs];
    if (src < 0) {
        lm_error *e = report(s, at, LM_ENOTFOUND, "invalid_link",
                             "links to node \"%s\", which does not exist", gi->link_node);
        lm_error_hint(e, "link to one of the workflow's node ids");
        return;
    }
    const lm_node_def *sd = s->nodes[src].def;
    if (!sd)
        return; /* the source's own check reports its type */
    int out = link_output(s, at, gi, (size_t)src);
    if (out < 0)
        return;
    lm_type ot = sd->outputs[out].type;
    if (!lm_type_compatible(ot, id->type)) {
        lm_error *e = report(s, at, LM_ETYPE, "return_type_mismatch",
                             "output %d (%s) of node \"%s\" (%s) is %s, but this input takes %s",
                             out, sd->outputs[out].name, s->g->nodes[src].id, sd->name,
                             lm_type_name(ot), lm_type_name(id->type));
        lm_error_hint(e, "link an output of type %s", lm_type_name(id->type));
        return;
    }
    vn->in[k].src = src;
    vn->in[k].src_output = out;
}

/* ---- nodes ----------------------------------------------------------------------------- */

static void check_graph_inputs(vstate *s, size_t ni)
{
    const lm_graph_node *n = &s->g->nodes[ni];
    const lm_node_def *def = s->nodes[ni].def;
    for (size_t j = 0; j < n->n_inputs; j++) {
        const lm_graph_input *gi = &n->inputs[j];
        place at = { n, gi->name, gi->loc };
        /* ComfyUI ignores inputs a node does not declare (old exports carry widgets such as
         * LoadImage's "choose file to upload"): so does Loom for its format, but --strict. */
        bool comfy = s->g->format == LM_FORMAT_COMFY_API && !s->strict;
        if (lm_node_def_input(def, gi->name) < 0 && comfy) {
            continue;
        } else if (lm_node_def_input(def, gi->name) < 0) {
            char names[200];
            join_names(names, sizeof(names), def->inputs, def->n_inputs, input_name);
            lm_error *e = report(s, at, LM_EINVAL, "unknown_input",
                                 "node type %s has no input \"%s\"; its inputs are: %s", def->name,
                                 gi->name, names);
            const char *near = lm_str_closest(gi->name, def->inputs, def->n_inputs, input_name);
            if (near)
                lm_error_hint(e, "did you mean %s?", near);
            else
                lm_error_hint(e, "remove it or use one of the listed names");
        } else if (lm_graph_node_input(n, gi->name) != gi) {
            lm_error *e = report(s, at, LM_EINVAL, "invalid_prompt",
                                 "input \"%s\" is given more than once", gi->name);
            lm_error_hint(e, "keep one of them");
        }
    }
}

static void resolve_input(vstate *s, size_t ni, size_t k)
{
    const lm_graph_node *n = &s->g->nodes[ni];
    const lm_input_def *id = &s->nodes[ni].def->inputs[k];
    const lm_graph_input *gi = lm_graph_node_input(n, id->name);
    place at = { n, id->name, gi ? gi->loc : n->loc };
    if (!gi) {
        resolve_absent(s, ni, k, at);
    } else if (gi->kind == LM_GRAPH_INPUT_LINK) {
        resolve_link(s, ni, k, gi, at);
    } else if (gi->kind == LM_GRAPH_INPUT_PARAM) {
        lm_value *v = param_value(s, at, gi->param);
        if (v)
            resolve_literal(s, ni, k, v, at);
    } else {
        resolve_literal(s, ni, k, gi->literal, at);
    }
}

/* The node's own check() on its literal inputs (NULL for linked and absent ones). */
static lm_status run_check(vstate *s, size_t ni)
{
    const lm_graph_node *n = &s->g->nodes[ni];
    const lm_node_def *def = s->nodes[ni].def;
    lm_value **in = lm_calloc(def->n_inputs, sizeof(*in));
    if (!in)
        return oom(s);
    for (size_t k = 0; k < def->n_inputs; k++)
        in[k] = s->nodes[ni].in[k].literal;
    lm_error cerr;
    lm_error_clear(&cerr);
    lm_status st = def->check(def, s->env, in, &cerr);
    lm_free(in);
    if (st != LM_OK) {
        const lm_graph_input *gi = cerr.input[0] ? lm_graph_node_input(n, cerr.input) : NULL;
        report_passed(s, (place){ n, NULL, gi ? gi->loc : n->loc }, &cerr);
    }
    return LM_OK;
}

static lm_status check_node(vstate *s, size_t ni)
{
    const lm_graph_node *n = &s->g->nodes[ni];
    vnode *vn = &s->nodes[ni];
    if (!n->type) {
        lm_error *e =
            report(s, (place){ n, NULL, n->loc }, LM_EINVAL, "invalid_prompt",
                   "the sub-workflow \"%s\" was not expanded", n->workflow ? n->workflow : "?");
        lm_error_hint(e, "give the node a type or a workflow file");
        return LM_OK;
    }
    if (!vn->def) {
        const char *near[3];
        size_t nn = lm_registry_suggest(s->reg, n->type, near, 3);
        lm_error *e = report(s, (place){ n, NULL, n->loc }, LM_ENOTFOUND, "unknown_node_type",
                             "node type \"%s\" is not known", n->type);
        if (nn)
            lm_error_hint(e, "did you mean %s%s%s%s%s?", near[0], nn > 1 ? ", " : "",
                          nn > 1 ? near[1] : "", nn > 2 ? ", " : "", nn > 2 ? near[2] : "");
        else
            lm_error_hint(e, "`loom nodes` lists the known node types");
        return LM_OK;
    }
    vn->in = lm_calloc(vn->def->n_inputs, sizeof(*vn->in));
    if (!vn->in)
        return oom(s);
    for (size_t k = 0; k < vn->def->n_inputs; k++)
        vn->in[k].src = -1;
    check_graph_inputs(s, ni);
    for (size_t k = 0; k < vn->def->n_inputs; k++)
        resolve_input(s, ni, k);
    if (vn->n_errors == 0 && vn->def->check)
        return run_check(s, ni);
    return LM_OK;
}

/* Declared workflow outputs: the output each names on its (existing) source node. */
static void check_outputs(vstate *s)
{
    for (size_t o = 0; o < s->g->n_outputs; o++) {
        const lm_graph_output *go = &s->g->outputs[o];
        s->out_index[o] = -1;
        if (s->out_src[o] < 0 || !s->nodes[s->out_src[o]].def)
            continue;
        lm_graph_input as_link = { .kind = LM_GRAPH_INPUT_LINK,
                                   .link_node = go->link_node,
                                   .link_output = go->link_output,
                                   .link_index = go->link_index };
        place at = { NULL, go->name, go->loc };
        s->out_index[o] = link_output(s, at, &as_link, (size_t)s->out_src[o]);
    }
}

/* ---- order and cycles ------------------------------------------------------------------ */

typedef struct {
    size_t *indeg, *first, *succ; /* successor lists (CSR) over checked nodes */
    size_t *heap, n_heap;
} graph_order;

static void heap_push(graph_order *o, size_t v)
{
    size_t i = o->n_heap++;
    while (i > 0 && o->heap[(i - 1) / 2] > v) {
        o->heap[i] = o->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    o->heap[i] = v;
}

static size_t heap_pop(graph_order *o)
{
    size_t top = o->heap[0], last = o->heap[--o->n_heap], i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= o->n_heap)
            break;
        if (c + 1 < o->n_heap && o->heap[c + 1] < o->heap[c])
            c++;
        if (last <= o->heap[c])
            break;
        o->heap[i] = o->heap[c];
        i = c;
    }
    o->heap[i] = last;
    return top;
}

/* The source of link input j of node v when both ends are checked, else -1. */
static int edge_src(const vstate *s, size_t v, size_t j)
{
    int u = s->nodes[v].src[j];
    return u >= 0 && s->nodes[u].checked ? u : -1;
}

static lm_status build_edges(vstate *s, graph_order *o)
{
    size_t n = s->g->n_nodes, n_edges = 0;
    o->indeg = lm_calloc(n, sizeof(size_t));
    o->first = lm_calloc(n + 1, sizeof(size_t));
    o->heap = lm_calloc(n, sizeof(size_t));
    if (!o->indeg || !o->first || !o->heap)
        return oom(s);
    for (size_t v = 0; v < n; v++) {
        for (size_t j = 0; s->nodes[v].checked && j < s->g->nodes[v].n_inputs; j++) {
            int u = edge_src(s, v, j);
            if (u >= 0) {
                o->indeg[v]++;
                o->first[u + 1]++;
                n_edges++;
            }
        }
    }
    for (size_t v = 0; v < n; v++)
        o->first[v + 1] += o->first[v];
    o->succ = lm_calloc(n_edges, sizeof(size_t));
    size_t *fill = lm_calloc(n, sizeof(size_t));
    if (!o->succ || !fill) {
        lm_free(fill);
        return oom(s);
    }
    for (size_t v = 0; v < n; v++) {
        for (size_t j = 0; s->nodes[v].checked && j < s->g->nodes[v].n_inputs; j++) {
            int u = edge_src(s, v, j);
            if (u >= 0)
                o->succ[o->first[u] + fill[u]++] = v;
        }
    }
    lm_free(fill);
    return LM_OK;
}

/* Reports the cycle path[0] -> … -> path[n_path - 1] -> w, where path[0] is w: the nodes
 * in the direction data flows, at w's input that closes it. */
static void report_cycle(vstate *s, const size_t *path, size_t n_path, size_t w)
{
    lm_str names;
    lm_str_init(&names);
    for (size_t i = 0; i < n_path; i++)
        lm_str_appendf(&names, "\"%s\" -> ", s->g->nodes[path[i]].id);
    lm_str_appendf(&names, "\"%s\"", s->g->nodes[w].id);
    const lm_graph_node *n = &s->g->nodes[w];
    place at = { n, NULL, n->loc };
    for (size_t j = 0; j < n->n_inputs; j++) {
        if (s->nodes[w].src[j] == (int)path[n_path - 1]) {
            at.input = n->inputs[j].name;
            at.loc = n->inputs[j].loc;
            break;
        }
    }
    lm_error *e = report(s, at, LM_EINVAL, "cycle", "nodes %s form a cycle",
                         names.oom ? "…" : lm_str_cstr(&names));
    lm_error_hint(e, "remove one of these links");
    lm_str_fini(&names);
}

typedef struct {
    size_t node, edge;
} dfs_frame;

/* Depth-first search over the nodes Kahn's algorithm left (indeg > 0): every edge back to
 * a node on the current path closes a cycle. */
static lm_status find_cycles(vstate *s, graph_order *o)
{
    size_t n = s->g->n_nodes, top = 0;
    unsigned char *color = lm_calloc(n, 1);
    dfs_frame *stack = lm_calloc(n, sizeof(*stack));
    size_t *path = lm_calloc(n, sizeof(*path));
    if (!color || !stack || !path) {
        lm_free(color);
        lm_free(stack);
        lm_free(path);
        return oom(s);
    }
    for (size_t r = 0; r < n; r++) {
        if (o->indeg[r] == 0 || color[r])
            continue;
        stack[top++] = (dfs_frame){ r, o->first[r] };
        color[r] = 1;
        while (top > 0) {
            dfs_frame *f = &stack[top - 1];
            if (f->edge == o->first[f->node + 1]) {
                color[f->node] = 2;
                top--;
                continue;
            }
            size_t w = o->succ[f->edge++];
            if (o->indeg[w] == 0 || color[w] == 2)
                continue;
            if (color[w] == 0) {
                color[w] = 1;
                stack[top++] = (dfs_frame){ w, o->first[w] };
                continue;
            }
            size_t from = 0, n_path = 0;
            while (stack[from].node != w)
                from++;
            for (size_t i = from; i < top; i++)
                path[n_path++] = stack[i].node;
            report_cycle(s, path, n_path, w);
        }
    }
    lm_free(color);
    lm_free(stack);
    lm_free(path);
    return LM_OK;
}

/* Kahn's algorithm over the checked nodes, smallest graph index first among ready ones. */
static lm_status order_nodes(vstate *s, size_t *order, size_t *n_order)
{
    graph_order o = { 0 };
    lm_status st = build_edges(s, &o);
    size_t n_checked = 0;
    *n_order = 0;
    for (size_t v = 0; st == LM_OK && v < s->g->n_nodes; v++) {
        n_checked += s->nodes[v].checked;
        if (s->nodes[v].checked && o.indeg[v] == 0)
            heap_push(&o, v);
    }
    while (st == LM_OK && o.n_heap > 0) {
        size_t v = heap_pop(&o);
        order[(*n_order)++] = v;
        for (size_t e = o.first[v]; e < o.first[v + 1]; e++)
            if (--o.indeg[o.succ[e]] == 0)
                heap_push(&o, o.succ[e]);
    }
    if (st == LM_OK && *n_order < n_checked)
        st = find_cycles(s, &o);
    lm_free(o.indeg);
    lm_free(o.first);
    lm_free(o.succ);
    lm_free(o.heap);
    return st;
}

/* ---- the plan -------------------------------------------------------------------------- */

void lm_plan_free(lm_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->n_nodes; i++) {
        lm_plan_node *pn = &plan->nodes[i];
        for (size_t k = 0; pn->inputs && k < pn->def->n_inputs; k++)
            lm_value_unref(pn->inputs[k].literal);
        lm_free(pn->inputs);
        lm_free(pn->id);
        lm_free(pn->title);
    }
    for (size_t i = 0; i < plan->n_outputs; i++)
        lm_free(plan->outputs[i].name);
    lm_free(plan->nodes);
    lm_free(plan->outputs);
    lm_free(plan->file);
    lm_free(plan->prompt_json);
    lm_free(plan->params_json);
    lm_free(plan);
}

/* Moves node v's resolved inputs into plan node pn, links renumbered to plan indices. */
static bool plan_node_fill(vstate *s, size_t v, lm_plan_node *pn, const int *plan_index)
{
    const lm_graph_node *n = &s->g->nodes[v];
    pn->def = s->nodes[v].def;
    pn->loc = n->loc;
    pn->inputs = s->nodes[v].in;
    s->nodes[v].in = NULL;
    for (size_t k = 0; k < pn->def->n_inputs; k++)
        if (pn->inputs[k].src >= 0)
            pn->inputs[k].src = plan_index[pn->inputs[k].src];
    pn->id = lm_strdup(n->id);
    pn->title = lm_strdup(n->title);
    return pn->id && (!n->title || pn->title);
}

static lm_status plan_outputs(vstate *s, lm_plan *plan, const int *plan_index)
{
    plan->outputs = lm_calloc(s->g->n_outputs, sizeof(*plan->outputs));
    if (!plan->outputs)
        return LM_ENOMEM;
    for (size_t o = 0; o < s->g->n_outputs; o++) {
        lm_plan_output *po = &plan->outputs[plan->n_outputs++];
        po->name = lm_strdup(s->g->outputs[o].name);
        po->node = plan_index[s->out_src[o]];
        po->output = s->out_index[o];
        if (!po->name)
            return LM_ENOMEM;
    }
    return LM_OK;
}

static lm_status plan_fill(vstate *s, lm_plan *plan, const size_t *order, size_t n_order,
                           int *plan_index)
{
    size_t n = 0;
    for (size_t i = 0; i < s->g->n_nodes; i++)
        plan_index[i] = -1;
    for (size_t i = 0; i < n_order; i++)
        if (s->nodes[order[i]].needed)
            plan_index[order[i]] = (int)n++;
    plan->file = lm_strdup(s->g->file);
    plan->nodes = lm_calloc(n, sizeof(*plan->nodes));
    if (!plan->file || !plan->nodes)
        return LM_ENOMEM;
    for (size_t i = 0; i < n_order; i++) {
        if (plan_index[order[i]] < 0)
            continue;
        if (!plan_node_fill(s, order[i], &plan->nodes[plan->n_nodes++], plan_index))
            return LM_ENOMEM;
    }
    if (plan_outputs(s, plan, plan_index) != LM_OK)
        return LM_ENOMEM;
    plan->prompt_json = lm_validate__prompt_json(plan);
    plan->params_json = lm_validate__params_json(s->g, s->params);
    return plan->prompt_json && plan->params_json ? LM_OK : LM_ENOMEM;
}

static lm_status build_plan(vstate *s, const size_t *order, size_t n_order, lm_plan **out)
{
    lm_plan *plan = lm_calloc(1, sizeof(*plan));
    int *plan_index = lm_calloc(s->g->n_nodes, sizeof(*plan_index));
    lm_status st = plan && plan_index ? plan_fill(s, plan, order, n_order, plan_index) : LM_ENOMEM;
    lm_free(plan_index);
    if (st != LM_OK) {
        lm_plan_free(plan);
        return oom(s);
    }
    *out = plan;
    return LM_OK;
}

/* ---- lm_validate ----------------------------------------------------------------------- */

static lm_status state_init(vstate *s)
{
    size_t n = s->g->n_nodes, np = s->g->n_params, no = s->g->n_outputs;
    s->nodes = lm_calloc(n, sizeof(*s->nodes));
    s->ids = lm_calloc(n, sizeof(*s->ids));
    s->params = lm_calloc(np, sizeof(*s->params));
    s->param_state = lm_calloc(np, 1);
    s->out_src = lm_calloc(no, sizeof(int));
    s->out_index = lm_calloc(no, sizeof(int));
    if (!s->nodes || !s->ids || !s->params || !s->param_state || !s->out_src || !s->out_index)
        return oom(s);
    for (size_t i = 0; i < n; i++) {
        const char *type = s->g->nodes[i].type;
        s->nodes[i].def = type ? lm_registry_find(s->reg, type) : NULL;
    }
    for (size_t pi = 0; pi < np; pi++)
        s->params[pi] = lm_value_ref(s->g->params[pi].def);
    return LM_OK;
}

static void state_fini(vstate *s)
{
    for (size_t i = 0; s->nodes && i < s->g->n_nodes; i++) {
        vnode *vn = &s->nodes[i];
        for (size_t k = 0; vn->in && k < vn->def->n_inputs; k++)
            lm_value_unref(vn->in[k].literal);
        lm_free(vn->in);
        lm_free(vn->src);
    }
    for (size_t pi = 0; s->params && pi < s->g->n_params; pi++)
        lm_value_unref(s->params[pi]);
    lm_free(s->nodes);
    lm_free(s->ids);
    lm_free(s->params);
    lm_free(s->param_state);
    lm_free(s->out_src);
    lm_free(s->out_index);
}

static lm_status alloc_links(vstate *s)
{
    for (size_t i = 0; i < s->g->n_nodes; i++) {
        s->nodes[i].src = lm_calloc(s->g->nodes[i].n_inputs, sizeof(int));
        if (!s->nodes[i].src)
            return oom(s);
    }
    resolve_links(s);
    return LM_OK;
}

static lm_status check_all(vstate *s, const lm_validate_opts *opts, size_t *order, size_t *n_order)
{
    index_ids(s);
    s->strict = opts->strict;
    for (size_t i = 0; i < opts->n_overrides; i++)
        if (apply_override(s, &opts->overrides[i]) != LM_OK)
            return LM_ENOMEM;
    if (alloc_links(s) != LM_OK || mark_needed(s) != LM_OK)
        return LM_ENOMEM;
    for (size_t pi = 0; pi < s->g->n_params; pi++)
        check_param(s, pi);
    for (size_t i = 0; i < s->g->n_nodes; i++) {
        s->nodes[i].checked = s->nodes[i].needed || opts->strict;
        if (s->nodes[i].checked && check_node(s, i) != LM_OK)
            return LM_ENOMEM;
    }
    check_outputs(s);
    return order_nodes(s, order, n_order);
}

lm_status lm_validate(const lm_graph *g, const lm_registry *reg, const lm_env *env,
                      const lm_validate_opts *opts, lm_plan **out, lm_diag *diag)
{
    static const lm_validate_opts no_opts;
    opts = opts ? opts : &no_opts;
    if (out)
        *out = NULL;
    lm_graph *eg = NULL;
    lm_status st = lm_graph_expand(g, &opts->expand, &eg, diag);
    if (st != LM_OK) {
        lm_graph_free(eg);
        return st;
    }
    vstate s = { .g = eg, .reg = reg, .env = env ? env : &empty_env, .diag = diag };
    size_t *order = lm_calloc(eg->n_nodes, sizeof(*order)), n_order = 0;
    st = order ? state_init(&s) : oom(&s);
    if (st == LM_OK)
        st = check_all(&s, opts, order, &n_order);
    if (st == LM_OK && s.n_errors == 0 && out)
        st = build_plan(&s, order, n_order, out);
    if (s.n_errors > 0)
        st = s.first_code;
    lm_free(order);
    state_fini(&s);
    lm_graph_free(eg);
    return st;
}
