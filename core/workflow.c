/* core/workflow.c — reading a workflow in any format: detection and the entry points.
 *
 * Detection looks at the content only. PNG bytes: the `prompt` text chunk (ComfyUI API
 * JSON). Text opening with '[', '{"' or '{}' is JSON (so a JSON mistake is reported as the
 * JSON error it is, not as whatever YAML makes of it). Anything else is YAML. Then the
 * tree's shape picks the builder: a map with `nodes` or `loom` is a Loom workflow; a map
 * whose values are objects with "class_type" (or a /prompt body with such a "prompt") is
 * ComfyUI's API format; ComfyUI's editor format (a `nodes` list with `links`) is refused
 * with a hint to export the API format. */
#include "core/workflow.h"

#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/io/image.h"
#include "core/workflow_doc.h"

#include <stdio.h>
#include <string.h>

static bool has_class_type(const lm_doc *map)
{
    for (size_t i = 0; i < map->count; i++)
        if (lm_workflow__doc_find(map->items[i].value, "class_type"))
            return true;
    return false;
}

lm_status lm_workflow__build(const lm_doc *root, const char *name, lm_graph_format format,
                             lm_graph **out, lm_error *err)
{
    *out = NULL;
    lm_srcloc start = { 1, 1 };
    if (!root || root->kind == LM_DOC_NULL) {
        lm_workflow__errorf(err, name, root ? root->loc : start, LM_EINVAL, "invalid_workflow",
                            "the workflow is empty");
        lm_error_hint(err, "write a workflow as described in docs/workflows.md");
        return LM_EINVAL;
    }
    if (root->kind != LM_DOC_MAP) {
        lm_workflow__errorf(err, name, root->loc, LM_EINVAL, "invalid_workflow",
                            "a workflow is a map, not %s", lm_workflow__doc_kind_name(root->kind));
        lm_error_hint(err, "write `nodes:` (Loom) or ComfyUI's API format");
        return LM_EINVAL;
    }
    const lm_doc *nodes = lm_workflow__doc_get(root, "nodes");
    if (nodes && nodes->kind == LM_DOC_SEQ && lm_workflow__doc_find(root, "links")) {
        lm_workflow__errorf(err, name, root->loc, LM_EUNSUPPORTED, "invalid_workflow",
                            "this is ComfyUI's editor format, not its API format");
        lm_error_hint(err, "in ComfyUI use Workflow > Export (API), or load the PNG itself");
        return LM_EUNSUPPORTED;
    }
    const lm_doc *prompt = lm_workflow__doc_get(root, "prompt");
    bool comfy = !nodes && !lm_workflow__doc_find(root, "loom") &&
                 (has_class_type(root) || (prompt && prompt->kind == LM_DOC_MAP));
    if (comfy)
        return lm_workflow__build_comfy(root, name, out, err);
    return lm_workflow__build_loom(root, name, format, out, err);
}

/* lm_workflow__read_yaml or lm_workflow__read_json. */
typedef lm_status (*doc_reader)(lm_doc_ctx *ctx, const char *text, size_t len, lm_doc **out,
                                lm_error *err);

/* Text → tree with one of the readers, then tree → graph. */
static lm_status parse_with(doc_reader read, lm_graph_format format, const char *text, size_t len,
                            const char *name, lm_graph **out, lm_error *err)
{
    *out = NULL;
    lm_doc_ctx ctx = { name ? name : "<workflow>", 0 };
    lm_doc *root = NULL;
    lm_status st = read(&ctx, text, len, &root, err);
    if (st != LM_OK)
        return st;
    st = lm_workflow__build(root, ctx.name, format, out, err);
    lm_workflow__doc_free(root);
    return st;
}

lm_status lm_workflow_parse_yaml(const char *text, size_t len, const char *name, lm_graph **out,
                                 lm_error *err)
{
    return parse_with(lm_workflow__read_yaml, LM_FORMAT_LOOM_YAML, text, len, name, out, err);
}

lm_status lm_workflow_parse_json(const char *text, size_t len, const char *name, lm_graph **out,
                                 lm_error *err)
{
    return parse_with(lm_workflow__read_json, LM_FORMAT_LOOM_JSON, text, len, name, out, err);
}

static const char *skip_space(const char *p, const char *end)
{
    if (end - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* JSON when the text opens with '[' or with '{' followed by '"' or '}' ({"nodes": …});
 * anything else, including a YAML flow map ({nodes: …}), is YAML. */
static bool looks_like_json(const char *text, size_t len)
{
    const char *end = text + len, *p = skip_space(text, end);
    if (p == end || (*p != '{' && *p != '['))
        return false;
    if (*p == '[')
        return true;
    p = skip_space(p + 1, end);
    return p == end || *p == '"' || *p == '}';
}

static lm_status parse_text(const char *text, size_t len, const char *name, lm_graph **out,
                            lm_error *err)
{
    if (looks_like_json(text, len))
        return lm_workflow_parse_json(text, len, name, out, err);
    return lm_workflow_parse_yaml(text, len, name, out, err);
}

/* A PNG's `prompt` chunk; errors inside it are placed as "<name> (prompt chunk)". */
static lm_status parse_png(const char *data, size_t len, const char *name, lm_graph **out,
                           lm_error *err)
{
    char **keys = NULL, **texts = NULL;
    size_t count = 0;
    lm_status st = lm_png_read_texts_mem(data, len, name, &keys, &texts, &count, err);
    if (st != LM_OK)
        return st;
    const char *prompt = NULL;
    for (size_t i = 0; i < count && !prompt; i++)
        if (strcmp(keys[i], "prompt") == 0)
            prompt = texts[i];
    if (!prompt) {
        st = lm_errorf(err, LM_ENOTFOUND, "no_workflow",
                       "this PNG carries no workflow (no `prompt` text chunk)");
        lm_error_hint(err, "use a PNG saved by ComfyUI or Loom, or the workflow file itself");
        lm_error_at_file(err, name, 0, 0);
    } else {
        char where[300];
        snprintf(where, sizeof(where), "%s (prompt chunk)", name);
        st = lm_workflow_parse_json(prompt, strlen(prompt), where, out, err);
        if (st == LM_OK) {
            char *file = lm_strdup(name);
            if (!file) {
                lm_graph_free(*out);
                *out = NULL;
                st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory");
            } else {
                lm_free((*out)->file);
                (*out)->file = file;
            }
        }
    }
    lm_image_texts_free(keys, texts, count);
    return st;
}

lm_status lm_workflow_parse(const char *text, size_t len, const char *name, lm_graph **out,
                            lm_error *err)
{
    *out = NULL;
    name = name ? name : "<workflow>";
    if (len > LM_WORKFLOW_MAX_BYTES) {
        lm_errorf(err, LM_ELIMIT, "workflow_too_large",
                  "the workflow has %zu bytes, more than the limit of %u", len,
                  LM_WORKFLOW_MAX_BYTES);
        lm_error_at_file(err, name, 0, 0);
        return LM_ELIMIT;
    }
    if (lm_image_is_png(text, len))
        return parse_png(text, len, name, out, err);
    return parse_text(text, len, name, out, err);
}

lm_status lm_workflow_load_file(const char *path, lm_graph **out, lm_error *err)
{
    *out = NULL;
    char *data = NULL;
    size_t len = 0;
    lm_status st = lm_file_read(path, LM_WORKFLOW_MAX_BYTES, &data, &len, err);
    if (st != LM_OK)
        return st;
    st = lm_workflow_parse(data, len, path, out, err);
    lm_free(data);
    return st;
}
