/* core/graph.c — building and freeing lm_graph. Parsers and tests call the builders; the
 * graph owns every string and literal it holds. Sub-workflow expansion is in
 * graph_expand.c. */
#include "core/graph.h"

#include "core/base/alloc.h"

#include <string.h>

static lm_status oom(lm_error *err)
{
    return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory building a workflow graph");
}

/* Grows an array of `size`-byte items to hold one more; returns the new slot (zeroed). */
static void *grow(void **items, size_t *count, size_t *cap, size_t size)
{
    if (*count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        void *p = lm_realloc(*items, ncap * size);
        if (!p)
            return NULL;
        *items = p;
        *cap = ncap;
    }
    void *slot = (char *)*items + (*count)++ * size;
    memset(slot, 0, size);
    return slot;
}

lm_status lm_graph_new(lm_graph **out, const char *file, lm_graph_format format, lm_error *err)
{
    *out = NULL;
    lm_graph *g = lm_calloc(1, sizeof(*g));
    if (!g)
        return oom(err);
    g->format = format;
    g->file = lm_strdup(file ? file : "<workflow>");
    if (!g->file) {
        lm_free(g);
        return oom(err);
    }
    *out = g;
    return LM_OK;
}

static void input_fini(lm_graph_input *in)
{
    lm_free(in->name);
    lm_value_unref(in->literal);
    lm_free(in->link_node);
    lm_free(in->link_output);
    lm_free(in->param);
}

void lm_graph_free(lm_graph *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_nodes; i++) {
        lm_graph_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_inputs; k++)
            input_fini(&n->inputs[k]);
        lm_free(n->inputs);
        lm_free(n->id);
        lm_free(n->type);
        lm_free(n->workflow);
        lm_free(n->title);
        lm_free(n->file);
    }
    for (size_t i = 0; i < g->n_params; i++) {
        lm_graph_param *p = &g->params[i];
        lm_free(p->name);
        lm_value_unref(p->def);
        lm_free(p->description);
        for (char **c = p->choices; c && *c; c++)
            lm_free(*c);
        lm_free(p->choices);
    }
    for (size_t i = 0; i < g->n_outputs; i++) {
        lm_free(g->outputs[i].name);
        lm_free(g->outputs[i].link_node);
        lm_free(g->outputs[i].link_output);
        lm_free(g->outputs[i].description);
    }
    lm_free(g->nodes);
    lm_free(g->params);
    lm_free(g->outputs);
    lm_free(g->description);
    lm_free(g->file);
    lm_free(g);
}

lm_status lm_graph_add_node(lm_graph *g, const char *id, const char *type, lm_srcloc loc,
                            lm_graph_node **out, lm_error *err)
{
    if (out)
        *out = NULL;
    lm_graph_node *n = grow((void **)&g->nodes, &g->n_nodes, &g->cap_nodes, sizeof(*n));
    if (!n)
        return oom(err);
    n->id = lm_strdup(id);
    n->type = lm_strdup(type);
    n->loc = loc;
    if (!n->id || (type && !n->type)) {
        lm_free(n->id);
        lm_free(n->type);
        g->n_nodes--;
        return oom(err);
    }
    if (out)
        *out = n;
    return LM_OK;
}

static lm_graph_input *add_input(lm_graph_node *node, const char *name, lm_srcloc loc)
{
    lm_graph_input *in =
        grow((void **)&node->inputs, &node->n_inputs, &node->cap_inputs, sizeof(*in));
    if (!in)
        return NULL;
    in->name = lm_strdup(name);
    in->link_index = -1;
    in->loc = loc;
    if (!in->name) {
        node->n_inputs--;
        return NULL;
    }
    return in;
}

lm_status lm_graph_add_literal(lm_graph *g, lm_graph_node *node, const char *input,
                               lm_value *literal, lm_srcloc loc, lm_error *err)
{
    LM_UNUSED(g);
    lm_graph_input *in = literal ? add_input(node, input, loc) : NULL;
    if (!in) {
        lm_value_unref(literal);
        return oom(err);
    }
    in->kind = LM_GRAPH_INPUT_LITERAL;
    in->literal = literal;
    return LM_OK;
}

lm_status lm_graph_add_link(lm_graph *g, lm_graph_node *node, const char *input,
                            const char *src_node, const char *src_output, int src_index,
                            lm_srcloc loc, lm_error *err)
{
    LM_UNUSED(g);
    lm_graph_input *in = add_input(node, input, loc);
    if (!in)
        return oom(err);
    in->kind = LM_GRAPH_INPUT_LINK;
    in->link_node = lm_strdup(src_node);
    in->link_output = lm_strdup(src_output);
    in->link_index = src_index;
    if (!in->link_node || (src_output && !in->link_output)) {
        input_fini(in);
        node->n_inputs--;
        return oom(err);
    }
    return LM_OK;
}

lm_status lm_graph_add_param_ref(lm_graph *g, lm_graph_node *node, const char *input,
                                 const char *param, lm_srcloc loc, lm_error *err)
{
    LM_UNUSED(g);
    lm_graph_input *in = add_input(node, input, loc);
    if (!in)
        return oom(err);
    in->kind = LM_GRAPH_INPUT_PARAM;
    in->param = lm_strdup(param);
    if (!in->param) {
        input_fini(in);
        node->n_inputs--;
        return oom(err);
    }
    return LM_OK;
}

lm_status lm_graph_add_param(lm_graph *g, const char *name, lm_type type, lm_value *def,
                             const char *description, lm_srcloc loc, lm_graph_param **out,
                             lm_error *err)
{
    if (out)
        *out = NULL;
    lm_graph_param *p = grow((void **)&g->params, &g->n_params, &g->cap_params, sizeof(*p));
    if (!p) {
        lm_value_unref(def);
        return oom(err);
    }
    p->name = lm_strdup(name);
    p->type = type;
    p->def = def;
    p->description = lm_strdup(description);
    p->loc = loc;
    if (!p->name || (description && !p->description)) {
        lm_free(p->name);
        lm_free(p->description);
        lm_value_unref(def);
        g->n_params--;
        return oom(err);
    }
    if (out)
        *out = p;
    return LM_OK;
}

lm_status lm_graph_add_output(lm_graph *g, const char *name, const char *src_node,
                              const char *src_output, int src_index, const char *description,
                              lm_srcloc loc, lm_error *err)
{
    lm_graph_output *o = grow((void **)&g->outputs, &g->n_outputs, &g->cap_outputs, sizeof(*o));
    if (!o)
        return oom(err);
    o->name = lm_strdup(name);
    o->link_node = lm_strdup(src_node);
    o->link_output = lm_strdup(src_output);
    o->link_index = src_index;
    o->description = lm_strdup(description);
    o->loc = loc;
    if (!o->name || !o->link_node || (src_output && !o->link_output) ||
        (description && !o->description)) {
        lm_free(o->name);
        lm_free(o->link_node);
        lm_free(o->link_output);
        lm_free(o->description);
        g->n_outputs--;
        return oom(err);
    }
    return LM_OK;
}

lm_graph_node *lm_graph_find_node(const lm_graph *g, const char *id)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].id, id) == 0)
            return &g->nodes[i];
    return NULL;
}

lm_graph_param *lm_graph_find_param(const lm_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_params; i++)
        if (strcmp(g->params[i].name, name) == 0)
            return &g->params[i];
    return NULL;
}

lm_graph_input *lm_graph_node_input(const lm_graph_node *node, const char *name)
{
    for (size_t i = 0; i < node->n_inputs; i++)
        if (strcmp(node->inputs[i].name, name) == 0)
            return &node->inputs[i];
    return NULL;
}
