/* daemon/cmd_nodes.c — `loom nodes`: the list of node types, one node's description, the
 * /object_info JSON and the Markdown node reference (docs/nodes.md).
 *
 * Every form is read from the registry's descriptors, never from a second list, and the
 * text and Markdown forms describe inputs with the same helpers (type, default, range or
 * choices), so the terminal and the docs say the same thing. Output is built in an lm_str
 * and written at once: a failure never leaves half a document on stdout. Nodes are shown by
 * category, then by name; the Markdown never lists dynamic choices (files on this machine),
 * so the committed docs/nodes.md is the same wherever it is generated. */
#include "daemon/cmd_nodes.h"

#include "core/base/alloc.h"
#include "core/base/str.h"
#include "daemon/cli.h"
#include "daemon/object_info.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WIDTH 100 /* columns of the text output */

static const char usage[] = "usage: loom nodes [--json | --markdown] [--config FILE] [NAME]\n";

/* ---- shared descriptions of inputs ---- */

static const char *category_of(const lm_node_def *def)
{
    return def->category && def->category[0] ? def->category : "uncategorized";
}

static int by_category_then_name(const void *a, const void *b)
{
    const lm_node_def *x = *(const lm_node_def *const *)a, *y = *(const lm_node_def *const *)b;
    int c = strcmp(category_of(x), category_of(y));
    return c ? c : strcmp(x->name, y->name);
}

/* The registry's nodes sorted by category, then name; NULL on out-of-memory. */
static const lm_node_def **sorted_defs(const lm_registry *reg, size_t *count)
{
    *count = lm_registry_count(reg);
    const lm_node_def **defs = lm_calloc(*count ? *count : 1, sizeof(*defs));
    if (!defs)
        return NULL;
    for (size_t i = 0; i < *count; i++)
        defs[i] = lm_registry_at(reg, i);
    qsort(defs, *count, sizeof(*defs), by_category_then_name);
    return defs;
}

static bool is_combo(const lm_input_def *in)
{
    return in->type == LM_TYPE_STRING && (in->choices || in->choices_fn);
}

/* Whether the input has a widget, and so a default (scalars that are not link-only). */
static bool has_widget(const lm_input_def *in)
{
    bool scalar = in->type == LM_TYPE_INT || in->type == LM_TYPE_FLOAT ||
                  in->type == LM_TYPE_STRING || in->type == LM_TYPE_BOOLEAN;
    return scalar && !(in->flags & LM_INPUT_LINK_ONLY);
}

/* Shortest "%g" form that reads back exactly: 0.5, 1, 1e-05. */
static void append_double(lm_str *s, double v)
{
    char buf[40];
    snprintf(buf, sizeof(buf), "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof(buf), "%.17g", v);
    lm_str_append(s, buf);
}

/* Text for a table cell: pipes escaped, line breaks as <br>, '<' as an entity. */
static void md_cell(lm_str *s, const char *text)
{
    for (; text && *text; text++) {
        size_t run = strcspn(text, "|\n<");
        lm_str_appendn(s, text, run);
        text += run;
        if (!*text)
            break;
        lm_str_append(s, *text == '|' ? "\\|" : *text == '\n' ? "<br>" : "&lt;");
    }
}

/* A default or choice: as it is for the terminal, in backticks for a Markdown cell. */
static void append_code(lm_str *s, const char *text, bool md)
{
    if (!md) {
        lm_str_append(s, text);
        return;
    }
    bool tick = !strchr(text, '`');
    lm_str_append(s, tick ? "`" : "");
    md_cell(s, text);
    lm_str_append(s, tick ? "`" : "");
}

static void describe_type(lm_str *s, const lm_input_def *in, bool md)
{
    /* A lone '*' could start emphasis in Markdown. */
    bool star = md && in->type == LM_TYPE_ANY;
    lm_str_append(s, star ? "\\*" : lm_object_info_type_name(in));
    if (in->flags & LM_INPUT_OPTIONAL)
        lm_str_append(s, " (optional)");
    else if (in->flags & LM_INPUT_LINK_ONLY)
        lm_str_append(s, " (link)");
}

/* The default a UI's widget starts with; "—" when there is none. */
static void describe_default(lm_str *s, const lm_input_def *in, bool md)
{
    const char *text = NULL;
    if (!has_widget(in)) {
        lm_str_append(s, "—");
    } else if (in->type == LM_TYPE_INT) {
        lm_str_appendf(s, "%" PRId64, in->i.def);
    } else if (in->type == LM_TYPE_FLOAT) {
        append_double(s, in->f.def);
    } else if (in->type == LM_TYPE_BOOLEAN) {
        lm_str_append(s, in->b_def ? "true" : "false");
    } else {
        text = in->s_def ? in->s_def : in->choices ? in->choices[0] : is_combo(in) ? NULL : "";
        if (!text)
            lm_str_append(s, "—");
        else if (!text[0])
            lm_str_append(s, md ? "*empty*" : "(empty)");
        else
            append_code(s, text, md);
    }
}

static void describe_number_range(lm_str *s, const lm_input_def *in)
{
    if (in->type == LM_TYPE_INT) {
        if (in->i.min || in->i.max)
            lm_str_appendf(s, "%" PRId64 " to %" PRId64, in->i.min, in->i.max);
        else
            lm_str_append(s, "any whole number");
        if (in->i.step > 1)
            lm_str_appendf(s, ", step %" PRId64, in->i.step);
        if (in->flags & LM_INPUT_SEED)
            lm_str_append(s, "; a seed: UIs may change it after each run");
        return;
    }
    if (in->f.min != 0 || in->f.max != 0) {
        append_double(s, in->f.min);
        lm_str_append(s, " to ");
        append_double(s, in->f.max);
    } else {
        lm_str_append(s, "any number");
    }
    if (in->f.step != 0) {
        lm_str_append(s, ", step ");
        append_double(s, in->f.step);
    }
}

/* Choices of a combo: static ones always; dynamic ones only when env is given. */
static void describe_choices(lm_str *s, const lm_input_def *in, const lm_env *env, bool md)
{
    lm_strlist list = { 0 };
    lm_error err;
    const char *const *items = in->choices;
    size_t n = 0;
    if (!items && env && in->choices_fn(env, &list, &err) == LM_OK)
        items = (const char *const *)list.items;
    if (!items) {
        lm_str_append(s, "a file name, listed at run time");
        return;
    }
    while (in->choices ? items[n] != NULL : n < list.count)
        n++;
    lm_str_append(s, n ? "one of " : "none available");
    for (size_t i = 0; i < n; i++) {
        lm_str_append(s, i == 0 ? "" : i + 1 == n ? " or " : ", ");
        append_code(s, items[i], md);
    }
    lm_strlist_fini(&list);
}

static void describe_range(lm_str *s, const lm_input_def *in, const lm_env *env, bool md)
{
    if (is_combo(in))
        describe_choices(s, in, env, md);
    else if (in->type == LM_TYPE_INT || in->type == LM_TYPE_FLOAT)
        describe_number_range(s, in);
    else if (in->type == LM_TYPE_BOOLEAN)
        lm_str_append(s, "true or false");
    else if (in->type == LM_TYPE_STRING && (in->flags & LM_INPUT_FILE))
        lm_str_append(s, "a file name");
    else if (in->type == LM_TYPE_STRING)
        lm_str_append(s, in->flags & LM_INPUT_MULTILINE ? "text, several lines" : "text");
    else if (in->type == LM_TYPE_ANY)
        lm_str_append(s, "any type");
    else
        lm_str_append(s, "—");
}

/* Node flags as words ("output node, not cached"); nothing when none. */
static void describe_flags(lm_str *s, const lm_node_def *def, const char *sep)
{
    if (def->flags & LM_NODE_OUTPUT)
        lm_str_appendf(s, "%soutput node", sep);
    if (def->flags & LM_NODE_NOT_CACHEABLE)
        lm_str_appendf(s, "%salways runs (not cached)", sep);
}

/* ---- text ---- */

/* Appends text wrapped to WIDTH columns, every line indented by `indent` spaces. */
static void append_wrapped(lm_str *s, const char *text, size_t indent)
{
    size_t col = 0;
    while (*text) {
        if (*text == '\n' && col == 0) {
            lm_str_append(s, "\n");
            text++;
            continue;
        }
        size_t word = strcspn(text, " \n");
        if (col > indent && col + 1 + word > WIDTH) {
            lm_str_append(s, "\n");
            col = 0;
        }
        if (col == 0) {
            lm_str_appendf(s, "%*s", (int)indent, "");
            col = indent;
        } else if (col > indent) {
            lm_str_append(s, " ");
            col++;
        }
        lm_str_appendn(s, text, word);
        col += word;
        text += word;
        if (*text == '\n' && col > 0) {
            lm_str_append(s, "\n");
            col = 0;
        }
        text += *text ? 1 : 0;
    }
    if (col > 0)
        lm_str_append(s, "\n");
}

/* The first line or sentence of a description, at most `max` bytes. */
static void append_summary(lm_str *s, const char *text, size_t max)
{
    size_t n = strcspn(text, "\n");
    const char *stop = strstr(text, ". ");
    if (stop && (size_t)(stop - text) + 1 < n)
        n = (size_t)(stop - text) + 1;
    if (n > max && max > 3) {
        lm_str_appendn(s, text, max - 3);
        lm_str_append(s, "...");
        return;
    }
    lm_str_appendn(s, text, n);
}

static void text_list(lm_str *s, const lm_node_def *const *defs, size_t n)
{
    size_t w_name = 4, w_cat = 8;
    for (size_t i = 0; i < n; i++) {
        w_name = LM_MAX(w_name, strlen(defs[i]->name));
        w_cat = LM_MAX(w_cat, strlen(category_of(defs[i])));
    }
    lm_str_appendf(s, "%-*s  %-*s  %s\n", (int)w_name, "NAME", (int)w_cat, "CATEGORY",
                   "DESCRIPTION");
    size_t room = WIDTH > w_name + w_cat + 24 ? WIDTH - w_name - w_cat - 4 : 20;
    for (size_t i = 0; i < n; i++) {
        lm_str_appendf(s, "%-*s  %-*s  ", (int)w_name, defs[i]->name, (int)w_cat,
                       category_of(defs[i]));
        append_summary(s, defs[i]->description ? defs[i]->description : "", room);
        lm_str_append(s, "\n");
    }
    lm_str_appendf(s,
                   "\n%zu node type%s; loom nodes NAME describes one, --json prints "
                   "/object_info, --markdown the node reference.\n",
                   n, n == 1 ? "" : "s");
}

static void text_input(lm_str *s, const lm_input_def *in, const lm_env *env)
{
    lm_str_appendf(s, "  %s: ", in->name);
    describe_type(s, in, false);
    lm_str_append(s, "; default ");
    describe_default(s, in, false);
    lm_str_append(s, "; ");
    describe_range(s, in, env, false);
    lm_str_append(s, "\n");
    if (in->help && in->help[0])
        append_wrapped(s, in->help, 6);
}

static void text_node(lm_str *s, const lm_node_def *def, const lm_env *env)
{
    lm_str_appendf(s, "%s", def->name);
    if (def->display_name && strcmp(def->display_name, def->name) != 0)
        lm_str_appendf(s, " (%s)", def->display_name);
    lm_str_appendf(s, " — category %s", category_of(def));
    describe_flags(s, def, ", ");
    lm_str_append(s, "\n");
    if (def->description && def->description[0])
        append_wrapped(s, def->description, 2);
    lm_str_append(s, def->n_inputs ? "\ninputs:\n" : "\ninputs: none\n");
    for (size_t i = 0; i < def->n_inputs; i++)
        text_input(s, &def->inputs[i], env);
    lm_str_append(s, def->n_outputs ? "\noutputs:\n" : "\noutputs: none\n");
    for (size_t i = 0; i < def->n_outputs; i++) {
        const lm_output_def *o = &def->outputs[i];
        lm_str_appendf(s, "  %s: %s\n", o->name, lm_type_name(o->type));
        if (o->help && o->help[0])
            append_wrapped(s, o->help, 6);
    }
}

/* ---- Markdown ---- */

/* GitHub's heading anchor: lower case, spaces to '-', other punctuation dropped. */
static void md_anchor(lm_str *s, const char *heading)
{
    for (; *heading; heading++) {
        unsigned char c = (unsigned char)*heading;
        if (isalnum(c) || c == '-' || c == '_')
            lm_str_appendf(s, "%c", tolower(c));
        else if (c == ' ')
            lm_str_append(s, "-");
    }
}

static void md_inputs(lm_str *s, const lm_node_def *def)
{
    if (!def->n_inputs) {
        lm_str_append(s, "No inputs.\n\n");
        return;
    }
    lm_str_append(s, "| input | type | default | range / choices | help |\n"
                     "| --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < def->n_inputs; i++) {
        const lm_input_def *in = &def->inputs[i];
        lm_str_appendf(s, "| `%s` | ", in->name);
        describe_type(s, in, true);
        lm_str_append(s, " | ");
        describe_default(s, in, true);
        lm_str_append(s, " | ");
        describe_range(s, in, NULL, true);
        lm_str_append(s, " | ");
        md_cell(s, in->help);
        lm_str_append(s, " |\n");
    }
    lm_str_append(s, "\n");
}

static void md_outputs(lm_str *s, const lm_node_def *def)
{
    if (!def->n_outputs) {
        lm_str_append(s, "No outputs.\n\n");
        return;
    }
    lm_str_append(s, "| output | type | help |\n| --- | --- | --- |\n");
    for (size_t i = 0; i < def->n_outputs; i++) {
        const lm_output_def *o = &def->outputs[i];
        lm_str_appendf(s, "| `%s` | %s | ", o->name, lm_type_name(o->type));
        md_cell(s, o->help);
        lm_str_append(s, " |\n");
    }
    lm_str_append(s, "\n");
}

static void md_node(lm_str *s, const lm_node_def *def)
{
    lm_str_appendf(s, "### %s\n\n", def->name);
    lm_str_appendf(s, "**%s** · category `%s`", def->display_name ? def->display_name : def->name,
                   category_of(def));
    describe_flags(s, def, " · ");
    lm_str_append(s, "\n\n");
    if (def->description && def->description[0])
        lm_str_appendf(s, "%s\n\n", def->description);
    md_inputs(s, def);
    md_outputs(s, def);
}

static const char md_intro[] =
    "# Node reference\n"
    "\n"
    "<!-- Generated by `loom nodes --markdown`: do not edit by hand. -->\n"
    "\n"
    "This file is generated from the node descriptors by `loom nodes --markdown`; do not edit\n"
    "it by hand. After changing a node, regenerate it with\n"
    "`build/loom nodes --markdown > docs/nodes.md` (the test `cli::nodes_doc` fails while it\n"
    "is out of date). `loom nodes NAME` prints the same description in a terminal, and\n"
    "`loom nodes --json` prints ComfyUI's `/object_info` JSON.\n"
    "\n"
    "Node and input names are ComfyUI's, so ComfyUI API-format workflows use them as they are.\n"
    "Inputs are listed in the order of the node's widgets; an optional input may be left\n"
    "unconnected, and a COMBO takes one of the listed strings. Values outside a range are\n"
    "reported before anything runs.\n"
    "\n";

/* "- [cat](#cat): [A](#a), [B](#b)" lines, one per category. */
static void md_contents(lm_str *s, const lm_node_def *const *defs, size_t n)
{
    lm_str_append(s, "## Contents\n\n");
    for (size_t i = 0; i < n; i++) {
        const char *cat = category_of(defs[i]);
        bool first = i == 0 || strcmp(cat, category_of(defs[i - 1])) != 0;
        if (first) {
            lm_str_appendf(s, "%s- [%s](#", i ? "\n" : "", cat);
            md_anchor(s, cat);
            lm_str_append(s, "): ");
        }
        lm_str_appendf(s, "%s[%s](#", first ? "" : ", ", defs[i]->name);
        md_anchor(s, defs[i]->name);
        lm_str_append(s, ")");
    }
    lm_str_append(s, "\n\n");
}

static void md_document(lm_str *s, const lm_node_def *const *defs, size_t n)
{
    size_t n_cat = 0;
    for (size_t i = 0; i < n; i++)
        n_cat += i == 0 || strcmp(category_of(defs[i]), category_of(defs[i - 1])) != 0;
    lm_str_append(s, md_intro);
    lm_str_appendf(s, "%zu node types in %zu categories.\n\n", n, n_cat);
    md_contents(s, defs, n);
    for (size_t i = 0; i < n; i++) {
        const char *cat = category_of(defs[i]);
        if (i == 0 || strcmp(cat, category_of(defs[i - 1])) != 0)
            lm_str_appendf(s, "## %s\n\n", cat);
        md_node(s, defs[i]);
    }
}

/* The document without the blank line the last table leaves, so files end in one '\n'. */
static char *take_trimmed(lm_str *s)
{
    if (!s->oom && s->len >= 2 && s->data[s->len - 1] == '\n' && s->data[s->len - 2] == '\n')
        s->data[--s->len] = '\0';
    return lm_str_take(s);
}

char *lm_cmd_nodes_markdown(const lm_registry *reg, const char *only_name)
{
    lm_str s;
    lm_str_init(&s);
    if (only_name) {
        const lm_node_def *def = lm_registry_find(reg, only_name);
        if (!def)
            return NULL;
        md_node(&s, def);
        return take_trimmed(&s);
    }
    size_t n;
    const lm_node_def **defs = sorted_defs(reg, &n);
    if (!defs)
        return NULL;
    md_document(&s, defs, n);
    lm_free(defs);
    return take_trimmed(&s);
}

/* ---- the command ---- */

typedef enum { FORM_TEXT, FORM_JSON, FORM_MARKDOWN } form;

static int unknown_node(const lm_registry *reg, const char *name)
{
    const char *names[3];
    size_t n = lm_registry_suggest(reg, name, names, LM_COUNTOF(names));
    fprintf(stderr, "loom nodes: unknown node type \"%s\"", name);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%s\"%s\"",
                i == 0       ? "; did you mean "
                : i + 1 == n ? " or "
                             : ", ",
                names[i]);
    fputs(n ? "?\n" : "; run loom nodes for the list.\n", stderr);
    return LM_EXIT_USAGE;
}

static char *render_json(const lm_registry *reg, const lm_env *env, const char *name)
{
    cJSON *root = lm_object_info_new(reg, env, name);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return text;
}

static char *render_text(const lm_registry *reg, const lm_env *env, const char *name)
{
    lm_str s;
    lm_str_init(&s);
    if (name) {
        text_node(&s, lm_registry_find(reg, name), env);
        return lm_str_take(&s);
    }
    size_t n;
    const lm_node_def **defs = sorted_defs(reg, &n);
    if (!defs)
        return NULL;
    text_list(&s, defs, n);
    lm_free(defs);
    return lm_str_take(&s);
}

/* Reads the options; returns LM_EXIT_OK or LM_EXIT_USAGE (message printed). */
static int parse_args(int argc, char **argv, form *f, const char **name)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        form want = strcmp(a, "--json") == 0       ? FORM_JSON
                    : strcmp(a, "--markdown") == 0 ? FORM_MARKDOWN
                                                   : FORM_TEXT;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        if (want != FORM_TEXT && (*f == FORM_TEXT || *f == want)) {
            *f = want;
        } else if (want == FORM_TEXT && a[0] != '-' && !*name) {
            *name = a;
        } else {
            fprintf(stderr, "loom nodes: unexpected argument \"%s\"\n%s", a, usage);
            return LM_EXIT_USAGE;
        }
    }
    return LM_EXIT_OK;
}

int lm_cmd_nodes(int argc, char **argv, const lm_registry *reg, const lm_env *env)
{
    form f = FORM_TEXT;
    const char *name = NULL;
    int code = parse_args(argc, argv, &f, &name);
    if (code != LM_EXIT_OK)
        return code < 0 ? LM_EXIT_OK : code;
    if (name && !lm_registry_find(reg, name))
        return unknown_node(reg, name);
    char *text = f == FORM_JSON       ? render_json(reg, env, name)
                 : f == FORM_MARKDOWN ? lm_cmd_nodes_markdown(reg, name)
                                      : render_text(reg, env, name);
    if (!text) {
        fputs("loom nodes: out of memory\n", stderr);
        return LM_EXIT_FAILED;
    }
    fputs(text, stdout);
    if (f == FORM_JSON)
        fputs("\n", stdout);
    lm_free(text);
    return LM_EXIT_OK;
}
