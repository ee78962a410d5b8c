/* daemon/cli.c — shared pieces of the `loom` subcommands: set-up, workflow loading with
 * printed diagnostics, and the progress printer fed by the executor's event stream.
 *
 * Defaults come from environment variables only; the configuration file (daemon/config.h)
 * has already exported its values into the environment when lm_app_init runs, and is
 * consulted here only to say where a bad value came from. */
#include "daemon/cli.h"

#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/base/thread.h"
#include "core/tensor/precision.h"
#include "core/workflow.h"
#include "daemon/config.h"
#include "nodes/builtin.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lm_cli_print_error(const lm_error *err)
{
    char line[1400];
    lm_error_format(err, line, sizeof(line));
    fprintf(stderr, "loom: %s\n", line);
}

static void set_dir(char *dst, size_t size, const char *env_name, const char *fallback)
{
    const char *v = env_name ? getenv(env_name) : NULL;
    lm_strlcpy(dst, v && v[0] ? v : fallback, size);
}

void lm_app_sync_env(lm_app *app)
{
    app->env.models_dir = app->models_dir;
    app->env.input_dir = app->input_dir;
    app->env.output_dir = app->output_dir;
    app->env.temp_dir = app->temp_dir;
    app->env.backend = app->backend;
}

/* How a message names where a default from the environment came from: the configuration
 * file's place and key when the file set the variable, else the variable's name. */
static const char *env_source(const char *env_name)
{
    const char *origin = lm_config_origin(env_name);
    return origin ? origin : env_name;
}

/* Parses a thread count in [1, LM_APP_MAX_THREADS]; false when the text is not one. */
static bool parse_threads(const char *text, int *out)
{
    char *end = NULL;
    long n = strtol(text, &end, 10);
    if (!text[0] || *end || n < 1 || n > LM_APP_MAX_THREADS)
        return false;
    *out = (int)n;
    return true;
}

static int set_threads(const char *cmd, const char *threads)
{
    const char *from = threads ? "--threads" : env_source("LOOM_THREADS");
    const char *text = threads ? threads : getenv("LOOM_THREADS");
    if (!text || (!threads && !text[0]))
        return LM_EXIT_OK; /* the pool sizes itself from the cores */
    int n = 0;
    if (!parse_threads(text, &n)) {
        fprintf(stderr, "loom %s: %s \"%s\" is not a thread count; give a number from 1 to %d.\n",
                cmd, from, text, LM_APP_MAX_THREADS);
        return LM_EXIT_USAGE;
    }
    lm_pool_default_set_threads(n);
    return LM_EXIT_OK;
}

int lm_app_set_compute(lm_app *app, const char *cmd, const char *device, const char *threads)
{
    int code = set_threads(cmd, threads);
    if (code != LM_EXIT_OK)
        return code;
    const char *env = getenv("LOOM_DEVICE");
    bool from_env = !device && env && env[0];
    if (from_env)
        device = env;
    lm_error err;
    lm_error_clear(&err);
    if (lm_backend_select(&app->backend, device, &err) != LM_OK) { /* NULL: auto */
        char line[1400];
        lm_error_format(&err, line, sizeof(line));
        fprintf(stderr, "loom %s: %s%s%s\n", cmd, from_env ? env_source("LOOM_DEVICE") : "",
                from_env ? ": " : "", line);
        return LM_EXIT_USAGE;
    }
    lm_app_sync_env(app);
    return LM_EXIT_OK;
}

int lm_app_set_precision(const char *cmd, const char *precision)
{
    const char *env = getenv("LOOM_PRECISION");
    bool from_env = !precision && env && env[0];
    const char *text = precision ? precision : from_env ? env : "f32";
    lm_precision p;
    lm_error err;
    lm_error_clear(&err);
    if (lm_precision_parse(&p, text, &err) != LM_OK) {
        fprintf(stderr, "loom %s: %s: %s.\n", cmd,
                from_env ? env_source("LOOM_PRECISION") : "--precision", err.msg);
        return LM_EXIT_USAGE;
    }
    lm_precision_set(p);
    return LM_EXIT_OK;
}

int lm_app_init(lm_app *app)
{
    memset(app, 0, sizeof(*app));
    lm_error err;
    if (lm_registry_new(&app->registry, &err) != LM_OK ||
        lm_nodes_register_builtin(app->registry, &err) != LM_OK) {
        lm_cli_print_error(&err);
        return LM_EXIT_FAILED;
    }
    set_dir(app->models_dir, sizeof(app->models_dir), "LOOM_MODELS", "models");
    set_dir(app->input_dir, sizeof(app->input_dir), "LOOM_INPUT", "input");
    set_dir(app->output_dir, sizeof(app->output_dir), "LOOM_OUTPUT", "output");
    /* Previews go beside the output directory, as with --out; "temp" keeps the default's
     * printed paths short. */
    const char *out = getenv("LOOM_OUTPUT");
    if (!out || !out[0] || !lm_path_join(app->temp_dir, sizeof(app->temp_dir), out, "../temp"))
        set_dir(app->temp_dir, sizeof(app->temp_dir), NULL, "temp");
    app->env.trusted_paths = true; /* the command line is the user's own */
    lm_app_sync_env(app);
    return LM_EXIT_OK;
}

void lm_app_fini(lm_app *app)
{
    lm_registry_free(app->registry);
    app->registry = NULL;
}

static void print_diag(const lm_diag *diag, bool as_json)
{
    if (as_json) {
        char *json = lm_diag_to_comfy_json(diag);
        printf("%s\n", json ? json : "{\"error\": {\"type\": \"out_of_memory\"}}");
        lm_free(json);
        return;
    }
    for (size_t i = 0; i < diag->count; i++)
        lm_cli_print_error(&diag->items[i]);
    fprintf(stderr, "loom: %zu problem%s found; nothing was run.\n", diag->count,
            diag->count == 1 ? "" : "s");
}

int lm_cli_load_plan(lm_app *app, const char *path, const lm_override *overrides,
                     size_t n_overrides, bool strict, bool as_json, lm_plan **out)
{
    *out = NULL;
    lm_error err;
    lm_graph *graph = NULL;
    lm_status st = lm_workflow_load_file(path, &graph, &err);
    if (st != LM_OK) {
        lm_diag one = { &err, 1, 1 };
        print_diag(&one, as_json);
        return st == LM_ENOTFOUND || st == LM_EIO ? LM_EXIT_IO : LM_EXIT_INVALID;
    }
    lm_validate_opts opts = {
        .overrides = overrides,
        .n_overrides = n_overrides,
        .strict = strict,
    };
    lm_diag diag;
    lm_diag_init(&diag);
    st = lm_validate(graph, app->registry, &app->env, &opts, out, &diag);
    lm_graph_free(graph);
    int code = LM_EXIT_OK;
    if (st != LM_OK || diag.count > 0) {
        if (diag.count == 0) {
            lm_errorf(&err, st, "invalid_prompt", "the workflow could not be validated");
            lm_diag_push(&diag, &err);
        }
        print_diag(&diag, as_json);
        lm_plan_free(*out);
        *out = NULL;
        code = LM_EXIT_INVALID;
    }
    lm_diag_fini(&diag);
    return code;
}

bool lm_cli_parse_set(char *arg, lm_override *out)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return false;
    *eq = '\0';
    memset(out, 0, sizeof(*out));
    out->name = arg;
    out->text = eq + 1;
    return true;
}

/* ---- progress ---- */

void lm_cli_progress_init(lm_cli_progress *p, bool json, bool quiet)
{
    memset(p, 0, sizeof(*p));
    p->json = json;
    p->quiet = quiet;
    p->out = json ? stdout : stderr;
    p->tty = !json && isatty(fileno(stderr));
}

static void clear_bar(lm_cli_progress *p)
{
    if (p->tty && p->bar_width > 0) {
        fprintf(p->out, "\r%*s\r", p->bar_width, "");
        p->bar_width = 0;
    }
}

static void draw_bar(lm_cli_progress *p, const lm_event *ev)
{
    char bar[32];
    int width = 24, filled = ev->steps > 0 ? ev->step * width / ev->steps : 0;
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    int n = fprintf(p->out, "\r%s%s[%zu/%zu] %s (%s) [%s] %d/%d", p->label ? p->label : "",
                    p->label ? " " : "", p->n_done + 1, p->n_nodes, ev->node_id,
                    ev->node_type ? ev->node_type : "?", bar, ev->step, ev->steps);
    if (n > 0 && n - 1 < p->bar_width)
        fprintf(p->out, "%*s", p->bar_width - (n - 1), "");
    p->bar_width = n > 0 ? n - 1 : 0;
    fflush(p->out);
}

static size_t peak_bytes(const lm_cli_progress *p)
{
    lm_backend_mem mem;
    lm_backend_mem_stats(p->backend, &mem);
    return mem.peak;
}

/* "; peak memory 12.3 MB" (decimal units), or "" without a backend. */
static void peak_text(const lm_cli_progress *p, char *buf, size_t size)
{
    buf[0] = '\0';
    if (!p->backend)
        return;
    char peak[32];
    lm_format_bytes(peak_bytes(p), peak, sizeof(peak));
    snprintf(buf, size, "; peak memory %s", peak);
}

static void json_event(lm_cli_progress *p, const lm_event *ev)
{
    static const char *const names[] = {
        [LM_EVENT_EXEC_START] = "execution_start",
        [LM_EVENT_NODE_CACHED] = "execution_cached",
        [LM_EVENT_NODE_START] = "executing",
        [LM_EVENT_PROGRESS] = "progress",
        [LM_EVENT_NODE_DONE] = "executed",
        [LM_EVENT_NODE_ERROR] = "execution_error",
        [LM_EVENT_INTERRUPTED] = "execution_interrupted",
        [LM_EVENT_EXEC_DONE] = "execution_success",
    };
    lm_str s;
    lm_str_init(&s);
    lm_str_append(&s, "{\"event\": ");
    lm_str_append_json(&s, names[ev->type]);
    if (p->label) {
        lm_str_append(&s, ", \"item\": ");
        lm_str_append_json(&s, p->label);
    }
    if (ev->node_id) {
        lm_str_append(&s, ", \"node\": ");
        lm_str_append_json(&s, ev->node_id);
    }
    if (ev->node_type) {
        lm_str_append(&s, ", \"class_type\": ");
        lm_str_append_json(&s, ev->node_type);
    }
    if (ev->type == LM_EVENT_PROGRESS)
        lm_str_appendf(&s, ", \"value\": %d, \"max\": %d", ev->step, ev->steps);
    if (ev->type == LM_EVENT_NODE_DONE || ev->type == LM_EVENT_EXEC_DONE)
        lm_str_appendf(&s, ", \"seconds\": %.6f", ev->seconds);
    if (ev->type == LM_EVENT_EXEC_DONE)
        lm_str_appendf(&s, ", \"cached\": %zu, \"ran\": %zu", ev->n_cached, ev->n_run);
    if (ev->type == LM_EVENT_EXEC_DONE && p->backend)
        lm_str_appendf(&s, ", \"peak_bytes\": %zu", peak_bytes(p));
    if (ev->ui_json)
        lm_str_appendf(&s, ", \"output\": %s", ev->ui_json);
    if (ev->error) {
        char msg[1400];
        lm_error_format(ev->error, msg, sizeof(msg));
        lm_str_append(&s, ", \"exception_type\": ");
        lm_str_append_json(&s, ev->error->kind[0] ? ev->error->kind : "error");
        lm_str_append(&s, ", \"exception_message\": ");
        lm_str_append_json(&s, msg);
    }
    lm_str_append(&s, "}");
    if (!s.oom)
        fprintf(p->out, "%s\n", lm_str_cstr(&s));
    fflush(p->out);
    lm_str_fini(&s);
}

static void text_event(lm_cli_progress *p, const lm_event *ev)
{
    const char *label = p->label ? p->label : "";
    const char *sep = p->label ? " " : "";
    switch (ev->type) {
    case LM_EVENT_EXEC_START:
        p->n_nodes = ev->n_nodes;
        p->n_done = 0;
        break;
    case LM_EVENT_NODE_CACHED:
        p->n_done++;
        break;
    case LM_EVENT_NODE_START:
        if (p->tty) {
            lm_event shown = *ev;
            draw_bar(p, &shown);
        }
        break;
    case LM_EVENT_PROGRESS:
        if (p->tty)
            draw_bar(p, ev);
        else if (!p->quiet && (ev->step == ev->steps || ev->step % 10 == 0))
            fprintf(p->out, "%s%s%s: step %d/%d\n", label, sep, ev->node_id, ev->step, ev->steps);
        break;
    case LM_EVENT_NODE_DONE:
        p->n_done++;
        clear_bar(p);
        if (!p->tty && !p->quiet)
            fprintf(p->out, "%s%s[%zu/%zu] %s (%s) done in %.2fs\n", label, sep, p->n_done,
                    p->n_nodes, ev->node_id, ev->node_type ? ev->node_type : "?", ev->seconds);
        break;
    case LM_EVENT_NODE_ERROR:
    case LM_EVENT_INTERRUPTED:
        clear_bar(p);
        break;
    case LM_EVENT_EXEC_DONE:
        clear_bar(p);
        if (!p->quiet) {
            char peak[64];
            peak_text(p, peak, sizeof(peak));
            fprintf(p->out, "%s%sdone in %.2fs: %zu node%s ran, %zu cached%s\n", label, sep,
                    ev->seconds, ev->n_run, ev->n_run == 1 ? "" : "s", ev->n_cached, peak);
        }
        break;
    }
    fflush(p->out);
}

void lm_cli_progress_event(const lm_event *ev, void *user)
{
    lm_cli_progress *p = user;
    if (p->json)
        json_event(p, ev);
    else
        text_event(p, ev);
}
