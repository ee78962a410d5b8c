/* core/registry.c — the node registry: a name-sorted array of descriptors.
 * Insertion keeps the order, so lookups are binary searches and listings come out sorted
 * without a second structure. Descriptors are checked when added, so a bad default or range
 * in a C or Lua node is reported at start-up rather than at a user's first run. */
#include "core/registry.h"

#include "core/base/alloc.h"
#include "core/base/str.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const lm_node_def *def;
    lm_node_def *owned; /* non-NULL when the registry frees it */
} entry;

struct lm_registry {
    entry *items;
    size_t count, cap;
};

void lm_strlist_fini(lm_strlist *list)
{
    for (size_t i = 0; i < list->count; i++)
        lm_free(list->items[i]);
    lm_free(list->items);
    memset(list, 0, sizeof(*list));
}

lm_status lm_strlist_push(lm_strlist *list, const char *s, lm_error *err)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 16;
        char **items = lm_realloc(list->items, cap * sizeof(*items));
        if (!items)
            return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory listing choices");
        list->items = items;
        list->cap = cap;
    }
    char *copy = lm_strdup(s);
    if (!copy)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory listing choices");
    list->items[list->count++] = copy;
    return LM_OK;
}

bool lm_strlist_contains(const lm_strlist *list, const char *s)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i], s) == 0)
            return true;
    return false;
}

lm_status lm_registry_new(lm_registry **out, lm_error *err)
{
    *out = lm_calloc(1, sizeof(**out));
    if (!*out)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate the node registry");
    return LM_OK;
}

void lm_registry_free(lm_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->count; i++)
        if (reg->items[i].owned && reg->items[i].owned->free_def)
            reg->items[i].owned->free_def(reg->items[i].owned);
    lm_free(reg->items);
    lm_free(reg);
}

/* Position of `name` (found) or where it would be inserted. */
static size_t find_pos(const lm_registry *reg, const char *name, bool *found)
{
    size_t lo = 0, hi = reg->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(reg->items[mid].def->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static lm_status bad_def(const lm_node_def *def, const char *input, lm_error *err, const char *what)
{
    lm_errorf(err, LM_EINTERNAL, "bad_node_definition", "node type \"%s\": %s",
              def->name ? def->name : "?", what);
    lm_error_at_node(err, NULL, def->name, input);
    return LM_EINTERNAL;
}

static bool in_choices(const char *const *choices, const char *s)
{
    for (; choices && *choices; choices++)
        if (strcmp(*choices, s) == 0)
            return true;
    return false;
}

static lm_status check_input(const lm_node_def *def, const lm_input_def *in, lm_error *err)
{
    if (!in->name || !in->name[0])
        return bad_def(def, NULL, err, "an input has no name");
    if (in->type == LM_TYPE_INT && (in->i.min || in->i.max) &&
        (in->i.def < in->i.min || in->i.def > in->i.max || in->i.min > in->i.max))
        return bad_def(def, in->name, err, "the default is outside the range");
    if (in->type == LM_TYPE_FLOAT && (in->f.min != 0 || in->f.max != 0) &&
        (in->f.def < in->f.min || in->f.def > in->f.max || in->f.min > in->f.max))
        return bad_def(def, in->name, err, "the default is outside the range");
    if (in->choices && !in->choices[0])
        return bad_def(def, in->name, err, "the list of choices is empty");
    if (in->choices && in->s_def && !in_choices(in->choices, in->s_def))
        return bad_def(def, in->name, err, "the default is not among the choices");
    for (const lm_input_def *o = def->inputs; o < in; o++)
        if (strcmp(o->name, in->name) == 0)
            return bad_def(def, in->name, err, "two inputs have the same name");
    return LM_OK;
}

static lm_status check_def(const lm_node_def *def, lm_error *err)
{
    if (!def->name || !def->name[0])
        return bad_def(def, NULL, err, "the node type has no name");
    if (!def->run)
        return bad_def(def, NULL, err, "the node has no run function");
    if ((def->n_inputs && !def->inputs) || (def->n_outputs && !def->outputs))
        return bad_def(def, NULL, err, "inputs or outputs are missing");
    for (size_t i = 0; i < def->n_inputs; i++) {
        lm_status st = check_input(def, &def->inputs[i], err);
        if (st != LM_OK)
            return st;
    }
    for (size_t i = 0; i < def->n_outputs; i++)
        if (!def->outputs[i].name || def->outputs[i].type == LM_TYPE_NONE)
            return bad_def(def, NULL, err, "an output has no name or type");
    return LM_OK;
}

static lm_status insert(lm_registry *reg, const lm_node_def *def, lm_node_def *owned, lm_error *err)
{
    lm_status st = check_def(def, err);
    if (st != LM_OK)
        return st;
    bool found;
    size_t pos = find_pos(reg, def->name, &found);
    if (found)
        return lm_errorf(err, LM_EINVAL, "duplicate_node_type", "node type \"%s\" is defined twice",
                         def->name);
    if (reg->count == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 64;
        entry *items = lm_realloc(reg->items, cap * sizeof(*items));
        if (!items)
            return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory adding a node");
        reg->items = items;
        reg->cap = cap;
    }
    memmove(&reg->items[pos + 1], &reg->items[pos], (reg->count - pos) * sizeof(entry));
    reg->items[pos] = (entry){ .def = def, .owned = owned };
    reg->count++;
    return LM_OK;
}

lm_status lm_registry_add(lm_registry *reg, const lm_node_def *def, lm_error *err)
{
    return insert(reg, def, NULL, err);
}

lm_status lm_registry_add_owned(lm_registry *reg, lm_node_def *def, lm_error *err)
{
    lm_status st = insert(reg, def, def, err);
    if (st != LM_OK && def->free_def)
        def->free_def(def);
    return st;
}

const lm_node_def *lm_registry_find(const lm_registry *reg, const char *name)
{
    bool found;
    size_t pos = find_pos(reg, name, &found);
    return found ? reg->items[pos].def : NULL;
}

size_t lm_registry_count(const lm_registry *reg)
{
    return reg->count;
}

const lm_node_def *lm_registry_at(const lm_registry *reg, size_t i)
{
    return i < reg->count ? reg->items[i].def : NULL;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n < 3)
        return false;
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

size_t lm_registry_suggest(const lm_registry *reg, const char *name, const char **names, size_t max)
{
    /* Score: edit distance, with substring matches ranked as if 1 edit away. Only names
     * reasonably close (distance at most a third of the length, at least 2) qualify. */
    size_t scores[16];
    size_t n = 0;
    if (max > 16)
        max = 16;
    size_t limit = strlen(name) / 3 > 2 ? strlen(name) / 3 : 2;
    for (size_t i = 0; i < reg->count && max; i++) {
        const char *cand = reg->items[i].def->name;
        size_t d = lm_str_edit_distance(name, cand, 64);
        if (contains_ci(cand, name) || contains_ci(name, cand))
            d = d < 1 ? d : 1;
        if (d > limit)
            continue;
        size_t at = n < max ? n++ : max;
        while (at > 0 && scores[at - 1] > d) {
            if (at < max) {
                scores[at] = scores[at - 1];
                names[at] = names[at - 1];
            }
            at--;
        }
        if (at < max) {
            scores[at] = d;
            names[at] = cand;
        }
    }
    return n;
}

int lm_node_def_input(const lm_node_def *def, const char *name)
{
    for (size_t i = 0; i < def->n_inputs; i++)
        if (strcmp(def->inputs[i].name, name) == 0)
            return (int)i;
    return -1;
}

int lm_node_def_output(const lm_node_def *def, const char *name)
{
    for (size_t i = 0; i < def->n_outputs; i++)
        if (strcmp(def->outputs[i].name, name) == 0)
            return (int)i;
    return -1;
}
