/* daemon/golden_sample.c — `loom golden` for sampling goldens: whole txt2img / img2img runs.
 *
 * Every object of `params` that has "steps" and tensors under "<mode>." is one run. From its
 * params (steps, shift, cfg, seed, denoise, sampler/samplers, positive, negative):
 *   <mode>.sigmas, .sigmas_full, .timesteps  the reference schedule (lm_scheduler_sigmas;
 *                                     with denoise, lm_scheduler_strength)  "schedule"
 *   <mode>.latent_raw, .latent        img2img: VAE posterior mean of the INPUT <mode>.image,
 *                                     raw and scaled                         "vae"
 *   <mode>.empty_latent               txt2img: the reference's random "empty" latent,
 *                                     randn from the seed                    "rng"
 *   <mode>.noise_scaled               sigmas[0]*noise + (1-sigmas[0])*latent, noise being the
 *                                     INPUT <mode>.noise                     "sampling"
 *   <mode>.<sampler>.x_steps, .denoised_steps, .final_latent, .final_latent_vae, .image
 *                                     lm_sampler_run with CFG over the tiny MMDiT, then
 *                                     process_out and VAE decode             "sampling"
 *   <mode>.<sampler>.image_u8                                                "image_u8"
 * The prompts are Loom's own encodings (CLIP-L, CLIP-G, T5 and lm_sd3_condition): "empty
 * prompt" is the empty prompt; "prompts.<key>" names the token ids in the `prompts` metadata
 * of this file or of another golden of the folder made with the same checkpoint; any other
 * string is tokenized as a prompt (needs the tokenizers). A run without prompts (the goldens'
 * img2img) uses those of the first run that names them. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/tensor/ops.h"
#include "daemon/golden_impl.h"
#include "nodes/sd3/conditioner.h"
#include "nodes/sd3/sampler.h"

#include <stdio.h>
#include <string.h>

#define MAX_BATCH 16 /* rows of one model evaluation (lm_concat's limit) */

bool lm_golden__is_sample(const lm_golden_file *f)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, f->params)
    {
        size_t first = 0;
        char prefix[96];
        snprintf(prefix, sizeof(prefix), "%s.", p->string ? p->string : "");
        if (cJSON_IsObject(p) && cJSON_GetObjectItemCaseSensitive(p, "steps") &&
            lm_safetensors_find_prefix(f->st, prefix, &first) > 0)
            return true;
    }
    return false;
}

/* ---- conditioning ---- */

typedef struct {
    lm_tensor *context, *y; /* [1, T, D], [1, P] */
} cond;

static void cond_fini(cond *c)
{
    lm_tensor_free(c->context);
    lm_tensor_free(c->y);
    memset(c, 0, sizeof(*c));
}

/* prompts.<key> of this file or of a golden of the folder made with the same checkpoint. */
static cJSON *find_prompt(const lm_golden_file *f, const char *key)
{
    const cJSON *own = cJSON_GetObjectItemCaseSensitive(f->prompts, key);
    if (own)
        return cJSON_Duplicate(own, true);
    cJSON *found = NULL;
    for (size_t i = 0; i < f->run->n_names && !found; i++) {
        const char *name = f->run->names[i];
        char path[LM_GOLDEN_PATH_MAX];
        lm_safetensors *st = NULL;
        lm_error err;
        if (!f->ckpt || strcmp(name, f->name) == 0 ||
            !lm_path_join(path, sizeof(path), f->run->dir, name) ||
            lm_safetensors_open(&st, path, &err) != LM_OK)
            continue;
        const char *c = lm_safetensors_metadata(st, "config");
        const char *p = lm_safetensors_metadata(st, "prompts");
        cJSON *config = c ? cJSON_Parse(c) : NULL, *prompts = p ? cJSON_Parse(p) : NULL;
        if (cJSON_Compare(cJSON_GetObjectItemCaseSensitive(config, "checkpoint"),
                          cJSON_GetObjectItemCaseSensitive(f->config, "checkpoint"), true))
            found = cJSON_DetachItemFromObjectCaseSensitive(prompts, key);
        cJSON_Delete(config);
        cJSON_Delete(prompts);
        lm_safetensors_close(st);
    }
    return found;
}

/* A JSON array of token ids as int32 (lm_free). */
static lm_status json_ids(const cJSON *arr, const char *what, int32_t **out, size_t *n,
                          lm_error *err)
{
    const cJSON *v;
    *n = 0;
    *out = lm_malloc(((size_t)cJSON_GetArraySize(arr) + 1) * sizeof(int32_t));
    if (!*out)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "no memory for ids");
    if (!cJSON_IsArray(arr))
        return lm_errorf(err, LM_EFORMAT, "golden_prompt", "prompt ids \"%s\" are not an array",
                         what);
    cJSON_ArrayForEach(v, arr)(*out)[(*n)++] = (int32_t)v->valueint;
    return LM_OK;
}

static lm_status encode(lm_golden_file *f, const lm_sd3_text_ids in[3], cond *out, lm_error *err)
{
    const lm_clip *l = NULL, *g = NULL;
    const lm_t5 *t5 = NULL;
    lm_status st = lm_golden__clip(f, LM_CLIP_KIND_L, &l, err);
    if (st == LM_OK)
        st = lm_golden__clip(f, LM_CLIP_KIND_G, &g, err);
    if (st == LM_OK)
        st = lm_golden__t5(f, &t5, err);
    if (st == LM_OK)
        st = lm_sd3_condition(l, g, t5, &in[0], &in[1], &in[2], NULL, &out->context, &out->y, err);
    return st;
}

/* Ids named in the file's prompts metadata (or a sibling's). */
static lm_status encode_ids(lm_golden_file *f, const char *key, cond *out, lm_error *err)
{
    static const char *const encs[3] = { "clip_l", "clip_g", "t5xxl" };
    int32_t *ids[3] = { NULL, NULL, NULL };
    lm_sd3_text_ids in[3];
    memset(in, 0, sizeof(in));
    cJSON *p = find_prompt(f, key);
    lm_status st = p ? LM_OK
                     : lm_errorf(err, LM_ENOTFOUND, "golden_prompt",
                                 "%s: no golden of %s made with this checkpoint has prompts.%s",
                                 f->name, f->run->dir, key);
    for (int i = 0; i < 3 && st == LM_OK; i++) {
        st =
            json_ids(cJSON_GetObjectItemCaseSensitive(p, encs[i]), encs[i], &ids[i], &in[i].n, err);
        in[i].ids = ids[i];
    }
    if (st == LM_OK)
        st = encode(f, in, out, err);
    for (int i = 0; i < 3; i++)
        lm_free(ids[i]);
    cJSON_Delete(p);
    return st;
}

static lm_status encode_text(lm_golden_file *f, const char *text, cond *out, lm_error *err)
{
    lm_sd3_tokens t;
    memset(&t, 0, sizeof(t));
    if (!lm_golden__tokenizers(f->run, err))
        return err->code;
    lm_status st = lm_sd3_tokenize(f->run->clip_tok, f->run->t5_tok, text, &t, err);
    lm_sd3_text_ids in[3] = {
        { t.clip_l.ids, t.clip_l.weighted ? t.clip_l.weights : NULL, t.clip_l.len },
        { t.clip_g.ids, t.clip_g.weighted ? t.clip_g.weights : NULL, t.clip_g.len },
        { t.t5.ids, t.t5.weighted ? t.t5.weights : NULL, t.t5.len },
    };
    if (st == LM_OK)
        st = encode(f, in, out, err);
    lm_sd3_tokens_fini(&t);
    return st;
}

/* A prompt as params give it: "empty prompt", "prompts.<key>" or the text itself. */
static lm_status conditioning(lm_golden_file *f, const cJSON *spec, cond *out, lm_error *err)
{
    const char *s = cJSON_GetStringValue(spec);
    if (!s)
        return lm_errorf(err, LM_EFORMAT, "golden_params",
                         "%s: a run's positive/negative prompt is not a string", f->name);
    if (strcmp(s, "empty prompt") == 0) {
        lm_sd3_text_ids none[3];
        memset(none, 0, sizeof(none)); /* n 0: every encoder's empty sequence */
        return encode(f, none, out, err);
    }
    if (strncmp(s, "prompts.", 8) == 0)
        return encode_ids(f, s + 8, out, err);
    return encode_text(f, s, out, err);
}

/* ---- the model callback: CFG batches through the MMDiT ---- */

static lm_status denoise(lm_tensor **out, const lm_tensor *x, float sigma, const void *const *conds,
                         int n, void *user, lm_error *err)
{
    const lm_mmdit *m = user;
    const lm_tensor *ctx[MAX_BATCH], *ys[MAX_BATCH];
    lm_tensor *c = NULL, *y = NULL, *sig = NULL, *v = NULL;
    int64_t rows = x->shape[0], per = rows / n;
    if (rows > MAX_BATCH || per * n != rows)
        return lm_errorf(err, LM_ELIMIT, "batch", "%lld rows for %d conditionings", (long long)rows,
                         n);
    for (int64_t r = 0; r < rows; r++) {
        ctx[r] = ((const cond *)conds[r / per])->context;
        ys[r] = ((const cond *)conds[r / per])->y;
    }
    lm_status st = lm_concat(&c, ctx, (int)rows, 0, err); // [rows, T, D]
    if (st == LM_OK)
        st = lm_concat(&y, ys, (int)rows, 0, err); // [rows, P]
    if (st == LM_OK)
        st = lm_tensor_new(&sig, lm_backend_cpu(), LM_DTYPE_F32, 1, &rows, err);
    if (st == LM_OK)
        st = lm_fill(sig, sigma, err);
    if (st == LM_OK)
        st = lm_mmdit_forward(m, x, sig, c, y, NULL, &v, err);
    if (st == LM_OK)
        st = lm_mmdit_denoised(out, x, v, sig, err);
    lm_tensor_free(c);
    lm_tensor_free(y);
    lm_tensor_free(sig);
    lm_tensor_free(v);
    return st;
}

/* Host copies of every step's state and guided prediction. */
typedef struct {
    lm_tensor **x, **den;
    int n, cap;
    lm_status st;
    lm_error err;
} step_log;

static void log_step(const lm_sample_step *s, void *user)
{
    step_log *l = user;
    if (l->st != LM_OK || l->n == l->cap)
        return;
    l->st = lm_tensor_to_f32_host(&l->x[l->n], s->x, &l->err);
    if (l->st == LM_OK)
        l->st = lm_tensor_to_f32_host(&l->den[l->n], s->denoised, &l->err);
    l->n++;
}

static void log_fini(step_log *l)
{
    for (int i = 0; i < l->n; i++) {
        lm_tensor_free(l->x[i]);
        lm_tensor_free(l->den[i]);
    }
    lm_free(l->x);
    lm_free(l->den);
}

/* The steps' tensors [1, ...] stacked into [n, ...]. */
static lm_status stack(lm_tensor *const *ts, int n, lm_tensor **out, lm_error *err)
{
    int64_t shape[LM_MAX_DIMS];
    *out = NULL;
    if (n == 0)
        return lm_errorf(err, LM_EINVAL, "no_steps", "the sampler ran no step");
    memcpy(shape, ts[0]->shape, sizeof(shape));
    shape[0] = n * ts[0]->shape[0];
    lm_status st = lm_tensor_new(out, lm_backend_cpu(), LM_DTYPE_F32, ts[0]->ndim, shape, err);
    size_t bytes = lm_tensor_nbytes(ts[0]);
    for (int i = 0; st == LM_OK && i < n; i++)
        memcpy((char *)lm_tensor_data(*out) + (size_t)i * bytes, lm_tensor_data(ts[i]), bytes);
    return st;
}

/* ---- one run ---- */

typedef struct {
    lm_golden_file *f;
    const char *mode;
    const cJSON *p; /* params.<mode> */
    lm_model_sampling ms;
    int steps;
    lm_sigmas sig; /* the schedule the sampler runs */
    cond pos, neg;
    lm_tensor *start; /* noise_scaled */
} run_state;

static void check_name(run_state *r, const char *suffix, const char *group, const lm_tensor *t)
{
    char name[192];
    snprintf(name, sizeof(name), "%s.%s", r->mode, suffix);
    if (strcmp(group, "image_u8") == 0)
        lm_golden__check_u8(r->f, name, group, t);
    else
        lm_golden__check(r->f, name, group, t);
}

static void fail_name(run_state *r, const char *suffix, const lm_error *err)
{
    char name[192];
    snprintf(name, sizeof(name), "%s.%s", r->mode, suffix);
    lm_golden__fail(r->f, name, "-", err);
}

/* params.<mode>.<key> as a number; def when absent. */
static double pnum(const run_state *r, const char *key, double def, bool *found)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->p, key);
    if (found)
        *found = cJSON_IsNumber(v);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* A schedule as a [n] tensor; with as_timesteps its timesteps (sigma*1000 in fp32). */
static void check_sigmas(run_state *r, const char *suffix, const float *v, int n, bool as_timesteps)
{
    lm_error err;
    lm_tensor *t = NULL;
    int64_t len = n;
    if (lm_tensor_new(&t, lm_backend_cpu(), LM_DTYPE_F32, 1, &len, &err) != LM_OK) {
        fail_name(r, suffix, &err);
        return;
    }
    float *out = lm_tensor_data(t);
    for (int i = 0; i < n; i++)
        out[i] = as_timesteps ? lm_scheduler_timestep(v[i]) : v[i];
    check_name(r, suffix, "schedule", t);
    lm_tensor_free(t);
}

/* sigmas (what the sampler runs), sigmas_full (img2img's whole schedule), timesteps. */
static lm_status schedule(run_state *r, lm_error *err)
{
    bool i2i = false;
    double denoise = pnum(r, "denoise", 1.0, &i2i);
    lm_sigmas full = { 0 };
    lm_status st = lm_scheduler_sigmas(&full, &r->ms, LM_SCHEDULE_REFERENCE, r->steps, err);
    if (st == LM_OK)
        st = i2i ? lm_scheduler_strength(&r->sig, &r->ms, LM_SCHEDULE_REFERENCE, r->steps, denoise,
                                         err)
                 : lm_scheduler_sigmas(&r->sig, &r->ms, LM_SCHEDULE_REFERENCE, r->steps, err);
    if (st == LM_OK) {
        check_sigmas(r, "sigmas_full", full.sigma, full.count, false);
        check_sigmas(r, "sigmas", r->sig.sigma, r->sig.count, false);
        check_sigmas(r, "timesteps", r->sig.sigma, r->sig.count - 1, true);
    }
    lm_sigmas_fini(&full);
    return st;
}

/* img2img: the VAE posterior mean of the init image (raw, then scaled). */
static lm_status on_mean(const lm_vae_event *ev, void *user)
{
    if (strcmp(ev->stage, "mean") == 0 && ev->tiles == 1)
        check_name(user, "latent_raw", "vae", ev->tensor);
    return LM_OK;
}

static lm_status start_latent(run_state *r, const lm_tensor *noise, lm_tensor **latent,
                              lm_error *err)
{
    char name[192];
    lm_tensor *image = NULL;
    const lm_vae *vae = NULL;
    snprintf(name, sizeof(name), "%s.image", r->mode);
    if (!lm_safetensors_find(r->f->st, name)) { /* txt2img: the reference's "empty" latent */
        double seed = pnum(r, "seed", 0, NULL);
        lm_status st =
            lm_sampler_noise(latent, lm_golden__seed(seed), noise->ndim, noise->shape, NULL, err);
        if (st == LM_OK)
            check_name(r, "empty_latent", "rng", *latent);
        return st;
    }
    lm_status st = lm_golden__tensor(r->f, name, &image, err);
    if (st == LM_OK)
        st = lm_golden__vae(r->f, &vae, err);
    if (st == LM_OK)
        st = lm_vae_encode(vae, image, NULL, latent, NULL, on_mean, r, err);
    if (st == LM_OK)
        check_name(r, "latent", "vae", *latent);
    lm_tensor_free(image);
    return st;
}

static lm_status prepare(run_state *r, lm_error *err)
{
    char name[192];
    lm_tensor *noise = NULL, *latent = NULL;
    lm_status st = schedule(r, err);
    snprintf(name, sizeof(name), "%s.noise", r->mode);
    if (st == LM_OK)
        st = lm_golden__tensor(r->f, name, &noise, err);
    if (st == LM_OK)
        st = start_latent(r, noise, &latent, err);
    if (st == LM_OK && r->sig.count < 1)
        st = lm_errorf(err, LM_EINVAL, "schedule", "%s: empty schedule", r->mode);
    if (st == LM_OK)
        st = lm_sampler_noise_scaling(&r->start, r->sig.sigma[0], noise, latent, err);
    if (st == LM_OK)
        check_name(r, "noise_scaled", "sampling", r->start);
    lm_tensor_free(noise);
    lm_tensor_free(latent);
    return st;
}

static void check_sub(run_state *r, const char *sampler, const char *what, const char *group,
                      const lm_tensor *t)
{
    char s[160];
    snprintf(s, sizeof(s), "%s.%s", sampler, what);
    check_name(r, s, group, t);
}

/* The outputs of one sampler run: steps, final latent, its VAE form and the image. */
static lm_status outputs(run_state *r, const char *sampler, step_log *l, const lm_tensor *fin,
                         lm_error *err)
{
    const lm_vae *vae = NULL;
    lm_tensor *xs = NULL, *ds = NULL, *raw = NULL, *img = NULL;
    lm_status st = l->st;
    if (st != LM_OK)
        *err = l->err;
    if (st == LM_OK)
        st = stack(l->x, l->n, &xs, err);
    if (st == LM_OK)
        st = stack(l->den, l->n, &ds, err);
    if (st == LM_OK) {
        check_sub(r, sampler, "x_steps", "sampling", xs);
        check_sub(r, sampler, "denoised_steps", "sampling", ds);
        check_sub(r, sampler, "final_latent", "sampling", fin);
        st = lm_golden__vae(r->f, &vae, err);
    }
    if (st == LM_OK)
        st = lm_vae_process_out(lm_vae_config_of(vae), fin, &raw, err);
    if (st == LM_OK) {
        check_sub(r, sampler, "final_latent_vae", "sampling", raw);
        st = lm_vae_decode(vae, fin, &img, NULL, NULL, err);
    }
    if (st == LM_OK) {
        check_sub(r, sampler, "image", "sampling", img);
        check_sub(r, sampler, "image_u8", "image_u8", img);
    }
    lm_tensor *all[] = { xs, ds, raw, img };
    for (size_t i = 0; i < LM_COUNTOF(all); i++)
        lm_tensor_free(all[i]);
    return st;
}

static void sample(run_state *r, const char *sampler, const lm_mmdit *m)
{
    lm_error err;
    char prefix[160];
    lm_sample_opts o;
    lm_sample_cond pos = LM_SAMPLE_COND(&r->pos), neg = LM_SAMPLE_COND(&r->neg);
    step_log l = { .cap = r->sig.count };
    lm_tensor *fin = NULL;
    lm_sampler_opts_init(&o);
    lm_status st = lm_sampler_parse(&o.sampler, sampler, &err);
    o.sigmas = r->sig.sigma, o.n_sigmas = r->sig.count, o.sampling = r->ms;
    o.cfg = pnum(r, "cfg", 1.0, NULL);
    o.positive = &pos, o.n_positive = 1, o.negative = &neg, o.n_negative = 1;
    o.seed = lm_golden__seed(pnum(r, "seed", 0, NULL));
    o.model = denoise, o.model_user = (void *)m;
    o.on_step = log_step, o.user = &l;
    l.x = lm_calloc((size_t)l.cap + 1, sizeof(lm_tensor *));
    l.den = lm_calloc((size_t)l.cap + 1, sizeof(lm_tensor *));
    if (st == LM_OK && (!l.x || !l.den))
        st = lm_errorf(&err, LM_ENOMEM, "out_of_memory", "no memory for the step log");
    if (st == LM_OK)
        st = lm_sampler_run(&fin, &o, r->start, &err);
    if (st == LM_OK)
        st = outputs(r, sampler, &l, fin, &err);
    if (st != LM_OK) {
        snprintf(prefix, sizeof(prefix), "%s.%s.", r->mode, sampler);
        lm_golden__fail_prefix(r->f, prefix, &err);
    }
    lm_tensor_free(fin);
    log_fini(&l);
}

/* params.<mode>.<key> ("positive", "negative"); a run that names none uses the prompt of
 * the first run that does (the img2img runs of the goldens share the txt2img prompts). */
static const cJSON *prompt_spec(const lm_golden_file *f, const cJSON *p, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, key), *other;
    cJSON_ArrayForEach(other, f->params)
    {
        if (!v)
            v = cJSON_GetObjectItemCaseSensitive(other, key);
    }
    return v;
}

static void run_mode(lm_golden_file *f, const cJSON *p)
{
    lm_error err;
    const lm_mmdit *m = NULL;
    run_state r = { .f = f, .mode = p->string, .p = p };
    const cJSON *shift = cJSON_GetObjectItemCaseSensitive(p, "shift");
    const cJSON *samplers = cJSON_GetObjectItemCaseSensitive(p, "samplers"), *s;
    char prefix[96];
    r.ms.shift = cJSON_IsNumber(shift) ? shift->valuedouble : LM_MODEL_SAMPLING_SD3.shift;
    r.steps = cJSON_GetObjectItemCaseSensitive(p, "steps")->valueint;
    lm_status st = prepare(&r, &err);
    if (st == LM_OK)
        st = conditioning(f, prompt_spec(f, p, "positive"), &r.pos, &err);
    if (st == LM_OK)
        st = conditioning(f, prompt_spec(f, p, "negative"), &r.neg, &err);
    if (st == LM_OK)
        st = lm_golden__mmdit(f, &m, &err);
    if (st == LM_OK && !samplers)
        samplers = cJSON_GetObjectItemCaseSensitive(p, "sampler");
    if (st == LM_OK && cJSON_IsString(samplers))
        sample(&r, samplers->valuestring, m);
    else if (st == LM_OK)
        cJSON_ArrayForEach(s, samplers) if (cJSON_IsString(s)) sample(&r, s->valuestring, m);
    if (st != LM_OK) {
        snprintf(prefix, sizeof(prefix), "%s.", r.mode);
        lm_golden__fail_prefix(f, prefix, &err);
    }
    lm_tensor_free(r.start);
    lm_sigmas_fini(&r.sig);
    cond_fini(&r.pos);
    cond_fini(&r.neg);
}

void lm_golden__check_sample(lm_golden_file *f)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, f->params)
    {
        size_t first = 0;
        char prefix[96];
        snprintf(prefix, sizeof(prefix), "%s.", p->string ? p->string : "");
        if (cJSON_IsObject(p) && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(p, "steps")) &&
            lm_safetensors_find_prefix(f->st, prefix, &first) > 0)
            run_mode(f, p);
    }
}
