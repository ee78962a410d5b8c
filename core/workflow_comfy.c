/* core/workflow_comfy.c — ComfyUI's API format (what its /prompt takes and what its PNGs
 * carry in the `prompt` chunk) from the text tree.
 *
 * {"3": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0]}, "_meta":
 * {"title": "…"}}, …}, or the /prompt request body {"prompt": {…}, "client_id": …}. As in
 * ComfyUI, an input that is a two-element list [node id (string), output index (integer)]
 * is a link, whatever the input; every other scalar is a literal; lists and objects of any
 * other shape and null are errors. Unknown keys of a node object are ignored (ComfyUI adds
 * some, e.g. "is_changed"). Node order is the text's order. */
#include "core/base/alloc.h"
#include "core/workflow.h"
#include "core/workflow_doc.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *file;
    lm_graph *g;
    lm_error *err;
} cbuild;

static lm_status bad(cbuild *b, lm_srcloc loc, const char *msg, const char *hint)
{
    lm_workflow__errorf(b->err, b->file, loc, LM_EINVAL, "invalid_prompt", "%s", msg);
    if (hint)
        lm_error_hint(b->err, "%s", hint);
    return LM_EINVAL;
}

static bool is_link(const lm_doc *d)
{
    return d->kind == LM_DOC_SEQ && d->count == 2 && d->items[0].value->kind == LM_DOC_STRING &&
           d->items[1].value->kind == LM_DOC_INT;
}

static lm_status add_input(cbuild *b, lm_graph_node *n, const lm_doc_entry *e)
{
    const lm_doc *d = e->value;
    lm_value *v = NULL;
    if (!e->key[0] || strlen(e->key) > 63)
        return bad(b, e->key_loc, "an input name must have 1 to 63 characters", NULL);
    switch (d->kind) {
    case LM_DOC_BOOL:
        v = lm_value_bool(d->b);
        break;
    case LM_DOC_INT:
        v = lm_value_int(d->i);
        break;
    case LM_DOC_FLOAT:
        v = lm_value_float(d->f);
        break;
    case LM_DOC_STRING:
        v = lm_value_string(d->s);
        break;
    case LM_DOC_NULL:
        return bad(b, d->loc, "null is not a value", "give a value, or remove the input");
    case LM_DOC_MAP:
        return bad(b, d->loc, "an object is not a valid input value",
                   "an input is a number, string, boolean or a link [\"node id\", index]");
    case LM_DOC_SEQ:
        if (!is_link(d))
            return bad(b, d->loc, "a list is not a valid input value",
                       "a link is [\"node id\", output index], e.g. [\"4\", 0]");
        if (d->items[1].value->i < 0 || d->items[1].value->i > 1000000)
            return bad(b, d->items[1].value->loc, "the output index is out of range", NULL);
        return lm_graph_add_link(b->g, n, e->key, d->items[0].value->s, NULL,
                                 (int)d->items[1].value->i, d->loc, b->err);
    }
    if (!v)
        return lm_errorf(b->err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
    return lm_graph_add_literal(b->g, n, e->key, v, d->loc, b->err);
}

static lm_status add_inputs(cbuild *b, lm_graph_node *n, const lm_doc_entry *node)
{
    const lm_doc *inputs = lm_workflow__doc_get(node->value, "inputs");
    if (!inputs)
        return bad(b, node->value->loc, "the node has no \"inputs\" object",
                   "add \"inputs\": {} (ComfyUI's API format always has it)");
    if (inputs->kind != LM_DOC_MAP)
        return bad(b, inputs->loc, "\"inputs\" must be an object of input names to values", NULL);
    for (size_t i = 0; i < inputs->count; i++) {
        lm_status st = add_input(b, n, &inputs->items[i]);
        if (st != LM_OK) {
            lm_error_at_node(b->err, n->id, n->type, inputs->items[i].key);
            return st;
        }
    }
    return LM_OK;
}

static lm_status add_node(cbuild *b, const lm_doc_entry *e)
{
    const lm_doc *d = e->value;
    if (!lm_workflow__id_ok(e->key, true)) {
        char msg[128];
        snprintf(msg, sizeof(msg), "node id \"%.60s\" is not valid", e->key);
        return bad(b, e->key_loc, msg, "node ids use letters, digits and '_', '-', ':', '/', '.'");
    }
    const lm_doc *type = lm_workflow__doc_get(d, "class_type");
    lm_status st = LM_OK;
    if (d->kind != LM_DOC_MAP)
        st = bad(b, d->loc, "a node must be an object with \"class_type\" and \"inputs\"", NULL);
    else if (!type || type->kind != LM_DOC_STRING || !type->s[0])
        st = bad(b, type ? type->loc : d->loc, "the node has no \"class_type\" string",
                 "add \"class_type\": \"<NodeType>\"");
    if (st != LM_OK) {
        lm_error_at_node(b->err, e->key, NULL, NULL);
        return st;
    }
    lm_graph_node *n = NULL;
    st = lm_graph_add_node(b->g, e->key, type->s, e->key_loc, &n, b->err);
    if (st != LM_OK)
        return st;
    const lm_doc *title = lm_workflow__doc_get(lm_workflow__doc_get(d, "_meta"), "title");
    if (title && title->kind == LM_DOC_STRING && !(n->title = lm_strdup(title->s)))
        return lm_errorf(b->err, LM_ENOMEM, "out_of_memory", "out of memory reading a workflow");
    st = add_inputs(b, n, e);
    if (st != LM_OK)
        lm_error_at_node(b->err, n->id, n->type, NULL);
    return st;
}

lm_status lm_workflow__build_comfy(const lm_doc *root, const char *name, lm_graph **out,
                                   lm_error *err)
{
    *out = NULL;
    const lm_doc *prompt = lm_workflow__doc_get(root, "prompt");
    if (prompt && prompt->kind == LM_DOC_MAP && !lm_workflow__doc_find(prompt, "class_type"))
        root = prompt; /* the /prompt request body */
    cbuild b = { name, NULL, err };
    if (root->count == 0)
        return bad(&b, root->loc, "the prompt holds no nodes", NULL);
    if (root->count > LM_WORKFLOW_MAX_NODES) {
        lm_workflow__errorf(err, name, root->loc, LM_ELIMIT, "workflow_too_large",
                            "%zu nodes is more than the limit of %d", root->count,
                            LM_WORKFLOW_MAX_NODES);
        return LM_ELIMIT;
    }
    lm_status st = lm_graph_new(&b.g, name, LM_FORMAT_COMFY_API, err);
    for (size_t i = 0; st == LM_OK && i < root->count; i++)
        st = add_node(&b, &root->items[i]);
    if (st != LM_OK) {
        lm_graph_free(b.g);
        return st;
    }
    *out = b.g;
    return LM_OK;
}
