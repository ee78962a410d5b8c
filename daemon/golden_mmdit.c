/* daemon/golden_mmdit.c — `loom golden` for MMDiT goldens: one forward per noise level.
 *
 * INPUT tensors x, context and y are shared by every step s<k> (k = 0, 1, … while
 * "s<k>.sigma" exists). Each step runs lm_mmdit_forward on (x, s<k>.sigma, context, y) and
 * compares s<k>.output and s<k>.denoised (lm_mmdit_denoised) under "mmdit", s<k>.timestep
 * (sigma*1000 in fp32, lm_scheduler_timestep) under "schedule", and every intermediate
 * s<k>.im.<name> the forward's inspect hook reports under "mmdit". */
#include "core/tensor/ops.h"
#include "daemon/golden_impl.h"
#include "nodes/sd3/scheduler.h"

#include <stdio.h>
#include <string.h>

bool lm_golden__is_mmdit(const lm_golden_file *f)
{
    return lm_safetensors_find(f->st, "s0.sigma") != NULL;
}

typedef struct {
    lm_golden_file *f;
    int step;
} inspect_ctx;

static void inspect(const char *name, const lm_tensor *t, void *user)
{
    inspect_ctx *c = user;
    char full[160];
    snprintf(full, sizeof(full), "s%d.im.%s", c->step, name);
    lm_golden__check(c->f, full, "mmdit", t);
}

/* [1] holding timestep(sigma) for every sigma of the step. */
static lm_status timesteps(const lm_tensor *sigma, lm_tensor **out, lm_error *err)
{
    lm_tensor *host = NULL;
    lm_status st = lm_tensor_to_f32_host(&host, sigma, err);
    if (st != LM_OK)
        return st;
    float *v = lm_tensor_data(host);
    for (int64_t i = 0; i < lm_tensor_numel(host); i++)
        v[i] = lm_scheduler_timestep(v[i]);
    *out = host;
    return LM_OK;
}

static void step(lm_golden_file *f, int k, const lm_mmdit *m, const lm_tensor *x,
                 const lm_tensor *ctx, const lm_tensor *y)
{
    lm_error err;
    char name[64], prefix[32];
    lm_tensor *sigma = NULL, *v = NULL, *den = NULL, *ts = NULL;
    inspect_ctx ic = { f, k };
    lm_mmdit_opts o = { .inspect = inspect, .user = &ic };
    snprintf(name, sizeof(name), "s%d.sigma", k);
    lm_status st = lm_golden__tensor(f, name, &sigma, &err);
    if (st == LM_OK)
        st = timesteps(sigma, &ts, &err);
    snprintf(name, sizeof(name), "s%d.timestep", k);
    if (st == LM_OK)
        lm_golden__check(f, name, "schedule", ts);
    if (st == LM_OK)
        st = lm_mmdit_forward(m, x, sigma, ctx, y, &o, &v, &err);
    if (st == LM_OK)
        st = lm_mmdit_denoised(&den, x, v, sigma, &err);
    if (st == LM_OK) {
        snprintf(name, sizeof(name), "s%d.output", k);
        lm_golden__check(f, name, "mmdit", v);
        snprintf(name, sizeof(name), "s%d.denoised", k);
        lm_golden__check(f, name, "mmdit", den);
    } else {
        snprintf(prefix, sizeof(prefix), "s%d.", k);
        lm_golden__fail_prefix(f, prefix, &err);
    }
    lm_tensor_free(sigma);
    lm_tensor_free(ts);
    lm_tensor_free(v);
    lm_tensor_free(den);
}

void lm_golden__check_mmdit(lm_golden_file *f)
{
    lm_error err;
    lm_tensor *x = NULL, *ctx = NULL, *y = NULL;
    const lm_mmdit *m = NULL;
    lm_status st = lm_golden__tensor(f, "x", &x, &err);
    if (st == LM_OK)
        st = lm_golden__tensor(f, "context", &ctx, &err);
    if (st == LM_OK)
        st = lm_golden__tensor(f, "y", &y, &err);
    if (st == LM_OK)
        st = lm_golden__mmdit(f, &m, &err);
    for (int k = 0;; k++) {
        char name[32], prefix[32];
        snprintf(name, sizeof(name), "s%d.sigma", k);
        if (!lm_safetensors_find(f->st, name))
            break;
        if (st == LM_OK) {
            step(f, k, m, x, ctx, y);
        } else {
            snprintf(prefix, sizeof(prefix), "s%d.", k);
            lm_golden__fail_prefix(f, prefix, &err);
        }
    }
    lm_tensor_free(x);
    lm_tensor_free(ctx);
    lm_tensor_free(y);
}
