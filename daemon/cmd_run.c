/* daemon/cmd_run.c — `loom run`: one workflow, a JSONL batch, or a parameter sweep.
 *
 * Every job of a batch or sweep goes through one executor, so work shared between jobs (a
 * loaded checkpoint, an encoded prompt) happens once. A batch streams a journal
 * (<out>/<batch name>.results.jsonl, one line per finished item, flushed at once); a batch
 * run again with the same file and output directory skips the items the journal lists as
 * done, so a crash costs only the item that was running. A bad line is recorded as an error
 * and the rest go on. */
#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/base/str.h"
#include "daemon/cli.h"
#include "nodes/sd3/models.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS       256
#define MAX_SWEEPS     8
#define MAX_BATCH_LINE (1u << 20)

typedef struct {
    const char *workflow;
    lm_override sets[MAX_SETS];
    size_t n_sets;
    char *sweeps[MAX_SWEEPS];
    size_t n_sweeps;
    const char *batch;
    const char *device, *threads; /* NULL: LOOM_DEVICE / LOOM_THREADS or the defaults */
    const char *precision;        /* NULL: LOOM_PRECISION or f32 */
    bool json, quiet, strict, fresh;
} run_args;

static lm_exec *running_exec;

static void on_sigint(int sig)
{
    (void)sig;
    if (running_exec)
        lm_exec_cancel(running_exec);
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the program at once */
}

static const char usage[] =
    "usage: loom run WORKFLOW [--set name=value]... [--batch FILE.jsonl | --sweep "
    "name=a,b,c]...\n"
    "                [--out DIR] [--input DIR] [--models DIR] [--json] [--quiet] [--fresh]\n"
    "                [--device cpu|cuda|cuda:N|auto] [--threads N] [--precision f32|bf16]\n"
    "                [-v|--verbose (twice: debug)] [--config FILE]\n";

static int usage_error(const char *fmt, const char *arg) LM_PRINTF(1, 0);

static int usage_error(const char *fmt, const char *arg)
{
    char msg[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(msg, sizeof(msg), fmt, arg); /* fmt is always one of this file's literals */
#pragma GCC diagnostic pop
    fprintf(stderr, "loom run: %s\n%s", msg, usage);
    return LM_EXIT_USAGE;
}

static int parse_dir_opt(lm_app *app, const char *opt, const char *value)
{
    char *dst = strcmp(opt, "--out") == 0     ? app->output_dir
                : strcmp(opt, "--input") == 0 ? app->input_dir
                                              : app->models_dir;
    if (!lm_strlcpy(dst, value, sizeof(app->output_dir)))
        return usage_error("%s: path too long", opt);
    if (dst == app->output_dir)
        lm_path_join(app->temp_dir, sizeof(app->temp_dir), value, "../temp");
    lm_app_sync_env(app);
    return LM_EXIT_OK;
}

static int parse_args(lm_app *app, int argc, char **argv, run_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(opt, "--json") == 0) {
            a->json = true;
        } else if (strcmp(opt, "--quiet") == 0 || strcmp(opt, "-q") == 0) {
            a->quiet = true;
        } else if (strcmp(opt, "--verbose") == 0 || strcmp(opt, "-v") == 0) {
            lm_log_set_level(lm_log__level < LM_LOG_LEVEL_INFO ? LM_LOG_LEVEL_INFO
                                                               : LM_LOG_LEVEL_DEBUG);
        } else if (strcmp(opt, "--strict") == 0) {
            a->strict = true;
        } else if (strcmp(opt, "--fresh") == 0) {
            a->fresh = true;
        } else if (strcmp(opt, "--set") == 0 && has_value) {
            if (a->n_sets == MAX_SETS || !lm_cli_parse_set(argv[++i], &a->sets[a->n_sets++]))
                return usage_error("--set needs name=value, got \"%s\"", argv[i]);
        } else if (strcmp(opt, "--sweep") == 0 && has_value) {
            if (a->n_sweeps == MAX_SWEEPS || !strchr(argv[i + 1], '='))
                return usage_error("--sweep needs name=a,b,c, got \"%s\"", argv[i + 1]);
            a->sweeps[a->n_sweeps++] = argv[++i];
        } else if (strcmp(opt, "--batch") == 0 && has_value) {
            a->batch = argv[++i];
        } else if (strcmp(opt, "--device") == 0 && has_value) {
            a->device = argv[++i];
        } else if (strcmp(opt, "--threads") == 0 && has_value) {
            a->threads = argv[++i];
        } else if (strcmp(opt, "--precision") == 0 && has_value) {
            a->precision = argv[++i];
        } else if ((strcmp(opt, "--out") == 0 || strcmp(opt, "--input") == 0 ||
                    strcmp(opt, "--models") == 0) &&
                   has_value) {
            int code = parse_dir_opt(app, opt, argv[++i]);
            if (code != LM_EXIT_OK)
                return code;
        } else if (opt[0] == '-' && opt[1]) {
            return usage_error("unknown or incomplete option \"%s\"", opt);
        } else if (!a->workflow) {
            a->workflow = opt;
        } else {
            return usage_error("more than one workflow given (\"%s\")", opt);
        }
    }
    if (!a->workflow)
        return usage_error("%s", "no workflow given");
    if (a->batch && a->n_sweeps)
        return usage_error("%s", "--batch and --sweep cannot be combined");
    return LM_EXIT_OK;
}

/* Prints the files a run produced (from the nodes' UI outputs). */
static void print_outputs(const lm_app *app, const lm_run_result *res, bool json)
{
    for (size_t i = 0; i < res->n_ui; i++) {
        cJSON *ui = cJSON_Parse(res->ui_json[i]);
        cJSON *images = cJSON_GetObjectItemCaseSensitive(ui, "images");
        cJSON *img;
        cJSON_ArrayForEach(img, images)
        {
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(img, "filename"));
            const char *sub = cJSON_GetStringValue(cJSON_GetObjectItem(img, "subfolder"));
            const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(img, "type"));
            const char *dir = type && strcmp(type, "temp") == 0 ? app->temp_dir : app->output_dir;
            if (!name || json)
                continue;
            printf("%s/%s%s%s\n", dir, sub ? sub : "", sub && sub[0] ? "/" : "", name);
        }
        cJSON_Delete(ui);
    }
    fflush(stdout);
}

/* Runs one job: validate with the overrides, execute. Returns an exit code. */
static int run_job(lm_app *app, lm_exec *ex, const run_args *a, const lm_override *ov, size_t n_ov,
                   const char *label, lm_run_result **res_out, char *errbuf, size_t errsize)
{
    lm_plan *plan = NULL;
    int code = lm_cli_load_plan(app, a->workflow, ov, n_ov, a->strict, a->json, &plan);
    if (code != LM_EXIT_OK) {
        lm_strlcpy(errbuf, "the workflow or its parameters are invalid (see above)", errsize);
        return code;
    }
    lm_cli_progress progress;
    lm_cli_progress_init(&progress, a->json, a->quiet);
    progress.label = label;
    progress.backend = app->backend;
    if (app->backend)
        lm_backend_mem_reset_peak(app->backend); /* the summary reports this job's peak */
    lm_run_opts opts = { .job_id = label, .on_event = lm_cli_progress_event, .user = &progress };
    lm_error err;
    lm_error_clear(&err);
    lm_status st = lm_exec_run(ex, plan, &app->env, &opts, res_out, &err);
    lm_plan_free(plan);
    if (st == LM_OK)
        return LM_EXIT_OK;
    lm_error_format(&err, errbuf, errsize);
    lm_cli_print_error(&err);
    return st == LM_ECANCELLED ? LM_EXIT_INTERRUPTED : LM_EXIT_FAILED;
}

static int run_single(lm_app *app, lm_exec *ex, const run_args *a)
{
    lm_run_result *res = NULL;
    char errbuf[1400];
    int code = run_job(app, ex, a, a->sets, a->n_sets, NULL, &res, errbuf, sizeof(errbuf));
    if (res)
        print_outputs(app, res, a->json);
    lm_run_result_free(res);
    return code;
}

/* ---- sweeps: the cartesian product of every --sweep list ---- */

typedef struct {
    char *name;
    char *values[64];
    size_t n;
} sweep_axis;

static int split_sweep(char *spec, sweep_axis *axis)
{
    char *eq = strchr(spec, '=');
    *eq = '\0';
    axis->name = spec;
    axis->n = 0;
    for (char *v = strtok(eq + 1, ","); v; v = strtok(NULL, ",")) {
        if (axis->n == LM_COUNTOF(axis->values))
            return usage_error("--sweep %s: at most 64 values", spec);
        axis->values[axis->n++] = v;
    }
    if (axis->n == 0)
        return usage_error("--sweep %s: no values", spec);
    return LM_EXIT_OK;
}

static int run_sweep(lm_app *app, lm_exec *ex, run_args *a)
{
    sweep_axis axes[MAX_SWEEPS];
    size_t total = 1;
    for (size_t i = 0; i < a->n_sweeps; i++) {
        int code = split_sweep(a->sweeps[i], &axes[i]);
        if (code != LM_EXIT_OK)
            return code;
        total *= axes[i].n;
    }
    lm_override ov[MAX_SETS + MAX_SWEEPS];
    memcpy(ov, a->sets, a->n_sets * sizeof(ov[0]));
    size_t failed = 0, interrupted = 0;
    for (size_t job = 0; job < total && !interrupted; job++) {
        char label[256] = "";
        size_t rest = job, at = 0;
        for (size_t i = 0; i < a->n_sweeps; i++) {
            const char *v = axes[i].values[rest % axes[i].n];
            rest /= axes[i].n;
            ov[a->n_sets + i] = (lm_override){ .name = axes[i].name, .text = v };
            at += (size_t)snprintf(label + at, at < sizeof(label) ? sizeof(label) - at : 0,
                                   "%s%s=%s", i ? "," : "", axes[i].name, v);
        }
        lm_run_result *res = NULL;
        char errbuf[1400];
        int code =
            run_job(app, ex, a, ov, a->n_sets + a->n_sweeps, label, &res, errbuf, sizeof(errbuf));
        if (res)
            print_outputs(app, res, a->json);
        lm_run_result_free(res);
        failed += code != LM_EXIT_OK;
        interrupted = code == LM_EXIT_INTERRUPTED;
    }
    fprintf(stderr, "loom: sweep: %zu job%s, %zu ok, %zu failed\n", total, total == 1 ? "" : "s",
            total - failed, failed);
    return interrupted ? LM_EXIT_INTERRUPTED : failed ? LM_EXIT_FAILED : LM_EXIT_OK;
}

/* ---- batches: one JSON object of overrides per line, with a resumable journal ---- */

typedef struct {
    char *done; /* done[line] != 0 when the journal says that line finished ok */
    size_t n;
} journal_done;

static void journal_path(const lm_app *app, const char *batch, char *out, size_t size)
{
    const char *base = strrchr(batch, '/');
    base = base ? base + 1 : batch;
    char name[256];
    lm_strlcpy(name, base, sizeof(name));
    char *dot = strrchr(name, '.');
    if (dot && dot != name)
        *dot = '\0';
    char file[300];
    snprintf(file, sizeof(file), "%s.results.jsonl", name);
    lm_path_join(out, size, app->output_dir, file);
}

/* Reads the journal of an earlier run; missing file = nothing done. */
static void journal_load(const char *path, journal_done *jd)
{
    memset(jd, 0, sizeof(*jd));
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        cJSON *obj = cJSON_Parse(line);
        cJSON *ln = cJSON_GetObjectItemCaseSensitive(obj, "line");
        const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(obj, "status"));
        if (cJSON_IsNumber(ln) && ln->valuedouble >= 1 && ln->valuedouble < 1e8 && status &&
            strcmp(status, "ok") == 0) {
            size_t n = (size_t)ln->valuedouble;
            if (n >= jd->n) {
                size_t cap = (n + 1) * 2;
                char *done = lm_realloc(jd->done, cap);
                if (done) {
                    memset(done + jd->n, 0, cap - jd->n);
                    jd->done = done;
                    jd->n = cap;
                }
            }
            if (n < jd->n)
                jd->done[n] = 1;
        }
        cJSON_Delete(obj);
    }
    fclose(f);
}

/* Turns one batch line into overrides (after the --set ones). Values that are JSON strings
 * are passed as text, parsed per the parameter's type; numbers and booleans as values. */
static bool line_overrides(cJSON *obj, lm_override *ov, size_t *n, lm_value **owned,
                           size_t *n_owned, char *errbuf, size_t errsize)
{
    if (!cJSON_IsObject(obj)) {
        lm_strlcpy(errbuf, "the line is not a JSON object of parameter values", errsize);
        return false;
    }
    cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        if (*n == MAX_SETS + MAX_SWEEPS) {
            lm_strlcpy(errbuf, "too many parameters on one line", errsize);
            return false;
        }
        lm_override *o = &ov[(*n)++];
        memset(o, 0, sizeof(*o));
        o->name = item->string;
        if (cJSON_IsString(item)) {
            o->text = item->valuestring;
            continue;
        }
        lm_value *v = NULL;
        if (cJSON_IsBool(item))
            v = lm_value_bool(cJSON_IsTrue(item));
        else if (cJSON_IsNumber(item) && item->valuedouble == (double)(int64_t)item->valuedouble)
            v = lm_value_int((int64_t)item->valuedouble);
        else if (cJSON_IsNumber(item))
            v = lm_value_float(item->valuedouble);
        if (!v) {
            snprintf(errbuf, errsize, "parameter \"%s\" must be a string, number or boolean",
                     item->string);
            return false;
        }
        owned[(*n_owned)++] = v;
        o->value = v;
    }
    return true;
}

/* Opens the journal for appending. A crash can leave a last line cut short; it is ended
 * here so the next record starts on a line of its own (the cut line is then ignored). */
static FILE *journal_open(const char *path, bool fresh)
{
    FILE *j = fopen(path, fresh ? "w" : "a+");
    if (!j || fresh)
        return j;
    if (fseek(j, -1, SEEK_END) == 0 && fgetc(j) != '\n')
        fputc('\n', j);
    fseek(j, 0, SEEK_END);
    return j;
}

static void journal_write(FILE *j, size_t line, int code, const char *errmsg,
                          const lm_run_result *res)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddNumberToObject(obj, "line", (double)line);
    cJSON_AddStringToObject(obj, "status", code == LM_EXIT_OK ? "ok" : "error");
    if (code != LM_EXIT_OK)
        cJSON_AddStringToObject(obj, "error", errmsg);
    if (res) {
        cJSON_AddNumberToObject(obj, "seconds", res->seconds);
        cJSON *outs = cJSON_AddObjectToObject(obj, "outputs");
        for (size_t i = 0; i < res->n_ui; i++)
            cJSON_AddItemToObject(outs, res->ui_node_ids[i], cJSON_Parse(res->ui_json[i]));
    }
    char *text = cJSON_PrintUnformatted(obj);
    if (text)
        fprintf(j, "%s\n", text);
    fflush(j);
    cJSON_free(text);
    cJSON_Delete(obj);
}

typedef struct {
    size_t ok, failed, skipped;
    bool interrupted;
} batch_tally;

static void batch_item(lm_app *app, lm_exec *ex, const run_args *a, FILE *journal, size_t line_no,
                       char *text, batch_tally *t)
{
    lm_override ov[MAX_SETS + MAX_SWEEPS];
    lm_value *owned[MAX_SETS + MAX_SWEEPS];
    size_t n = a->n_sets, n_owned = 0;
    memcpy(ov, a->sets, a->n_sets * sizeof(ov[0]));
    char errbuf[1400] = "", label[32];
    snprintf(label, sizeof(label), "line %zu", line_no);
    cJSON *obj = cJSON_Parse(text);
    lm_run_result *res = NULL;
    int code = LM_EXIT_INVALID;
    if (!obj)
        snprintf(errbuf, sizeof(errbuf), "not valid JSON near \"%.40s\"",
                 cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    else if (line_overrides(obj, ov, &n, owned, &n_owned, errbuf, sizeof(errbuf)))
        code = run_job(app, ex, a, ov, n, label, &res, errbuf, sizeof(errbuf));
    if (code != LM_EXIT_OK && code != LM_EXIT_INTERRUPTED)
        fprintf(stderr, "loom: %s: %s\n", label, errbuf);
    if (res)
        print_outputs(app, res, a->json);
    if (code != LM_EXIT_INTERRUPTED)
        journal_write(journal, line_no, code, errbuf, res);
    code == LM_EXIT_OK ? t->ok++ : t->failed++;
    t->interrupted = code == LM_EXIT_INTERRUPTED;
    lm_run_result_free(res);
    cJSON_Delete(obj);
    for (size_t i = 0; i < n_owned; i++)
        lm_value_unref(owned[i]);
}

static int run_batch(lm_app *app, lm_exec *ex, const run_args *a)
{
    FILE *in = fopen(a->batch, "r");
    if (!in) {
        fprintf(stderr, "loom: %s: cannot open the batch file; check the path.\n", a->batch);
        return LM_EXIT_IO;
    }
    char jpath[4096];
    journal_path(app, a->batch, jpath, sizeof(jpath));
    journal_done jd = { 0 };
    lm_error err;
    if (!a->fresh)
        journal_load(jpath, &jd);
    FILE *journal =
        lm_mkdirs(app->output_dir, &err) == LM_OK ? journal_open(jpath, a->fresh) : NULL;
    if (!journal) {
        fprintf(stderr, "loom: %s: cannot write the batch journal; check the output directory.\n",
                jpath);
        fclose(in);
        lm_free(jd.done);
        return LM_EXIT_IO;
    }
    batch_tally t = { 0 };
    char *text = lm_malloc(MAX_BATCH_LINE);
    for (size_t line_no = 1; text && !t.interrupted && fgets(text, MAX_BATCH_LINE, in); line_no++) {
        char *p = text;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\n' || *p == '\0' || *p == '#')
            continue;
        if (line_no < jd.n && jd.done[line_no]) {
            t.skipped++;
            continue;
        }
        batch_item(app, ex, a, journal, line_no, text, &t);
    }
    lm_free(text);
    fclose(in);
    fclose(journal);
    lm_free(jd.done);
    fprintf(stderr, "loom: batch: %zu ok, %zu failed, %zu already done; journal %s\n", t.ok,
            t.failed, t.skipped, jpath);
    return t.interrupted ? LM_EXIT_INTERRUPTED : t.failed ? LM_EXIT_FAILED : LM_EXIT_OK;
}

/* Memory pressure from the model manager (a model does not fit on the device): drop the
 * loaded models that only earlier runs' cache entries still hold, so they can be unloaded
 * (a sweep or batch over several checkpoints). */
static bool holds_model(const lm_value *v, void *user)
{
    LM_UNUSED(user);
    lm_type t = lm_value_type(v);
    return t == LM_TYPE_MODEL || t == LM_TYPE_CLIP || t == LM_TYPE_VAE;
}

static void on_model_pressure(void *user)
{
    size_t n = lm_exec_drop_cached(user, holds_model, NULL);
    if (n)
        LM_LOG_INFO("run", "device memory is short: dropped %zu cached model outputs", n);
}

int lm_cmd_run(lm_app *app, int argc, char **argv)
{
    run_args a;
    int code = parse_args(app, argc, argv, &a);
    if (code == LM_EXIT_OK)
        code = lm_app_set_compute(app, "run", a.device, a.threads);
    if (code == LM_EXIT_OK)
        code = lm_app_set_precision("run", a.precision);
    if (code != LM_EXIT_OK)
        return code;
    lm_exec *ex = NULL;
    lm_error err;
    if (lm_exec_new(&ex, NULL, &err) != LM_OK) {
        lm_cli_print_error(&err);
        return LM_EXIT_FAILED;
    }
    running_exec = ex;
    lm_sd3_models_set_pressure_hook(on_model_pressure, ex);
    signal(SIGINT, on_sigint);
    if (a.batch)
        code = run_batch(app, ex, &a);
    else if (a.n_sweeps)
        code = run_sweep(app, ex, &a);
    else
        code = run_single(app, ex, &a);
    signal(SIGINT, SIG_DFL);
    lm_sd3_models_set_pressure_hook(NULL, NULL);
    running_exec = NULL;
    lm_exec_free(ex);
    return code;
}
