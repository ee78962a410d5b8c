/* nodes/sd3/weights.c — component detection, checked tensor lookup by reference name, and
 * the walks over a model's bound weights (device copy, free) that every model shares.
 * Weights in the diffusers layout are looked up by weights_diffusers.c. */
#include "core/base/str.h"
#include "nodes/sd3/weights_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const component_names[LM_SD3_COMPONENT_COUNT] = {
    [LM_SD3_MMDIT] = "MMDiT",   [LM_SD3_VAE] = "VAE",      [LM_SD3_CLIP_L] = "CLIP-L",
    [LM_SD3_CLIP_G] = "CLIP-G", [LM_SD3_T5XXL] = "T5-XXL",
};

const char *lm_sd3_component_name(lm_sd3_component c)
{
    return (unsigned)c < LM_SD3_COMPONENT_COUNT ? component_names[c] : "?";
}

/* A marker tensor (after the prefix) that identifies each component, all-in-one first. */
static const struct {
    lm_sd3_component c;
    const char *prefix, *marker;
} layouts[] = {
    { LM_SD3_MMDIT, "model.diffusion_model.", "x_embedder.proj.weight" },
    { LM_SD3_MMDIT, "", "x_embedder.proj.weight" },
    { LM_SD3_VAE, "first_stage_model.", "decoder.conv_in.weight" },
    { LM_SD3_VAE, "", "decoder.conv_in.weight" },
    { LM_SD3_CLIP_L, "text_encoders.clip_l.transformer.",
      "text_model.embeddings.token_embedding.weight" },
    { LM_SD3_CLIP_G, "text_encoders.clip_g.transformer.",
      "text_model.embeddings.token_embedding.weight" },
    { LM_SD3_CLIP_L, "", "text_model.embeddings.token_embedding.weight" },
    { LM_SD3_T5XXL, "text_encoders.t5xxl.transformer.", "shared.weight" },
    { LM_SD3_T5XXL, "", "shared.weight" },
};

void lm_sd3_detect(lm_safetensors *st, bool found[LM_SD3_COMPONENT_COUNT],
                   lm_sd3_weights weights[LM_SD3_COMPONENT_COUNT])
{
    memset(found, 0, LM_SD3_COMPONENT_COUNT * sizeof(bool));
    memset(weights, 0, LM_SD3_COMPONENT_COUNT * sizeof(lm_sd3_weights));
    for (size_t i = 0; i < LM_COUNTOF(layouts); i++) {
        lm_sd3_component c = layouts[i].c;
        if (found[c])
            continue;
        lm_sd3_weights probe = { .st = st };
        lm_strlcpy(probe.prefix, layouts[i].prefix, sizeof(probe.prefix));
        if (!lm_sd3_weights_has(&probe, layouts[i].marker))
            continue;
        found[c] = true;
        weights[c].st = st;
        weights[c].component = c;
        lm_strlcpy(weights[c].prefix, layouts[i].prefix, sizeof(weights[c].prefix));
    }
    lm_sd3_weights__detect_diffusers(st, found, weights);
}

/* prefix + name; false when it does not fit (no real tensor name is that long). */
static bool full_name(const lm_sd3_weights *w, const char *name, char *out, size_t size)
{
    size_t lp = strlen(w->prefix), ln = strlen(name);
    if (lp + ln + 1 > size)
        return false;
    memcpy(out, w->prefix, lp);
    memcpy(out + lp, name, ln + 1);
    return true;
}

const lm_safetensors_entry *lm_sd3_weights_find(const lm_sd3_weights *w, const char *name)
{
    if (w->layout == LM_SD3_LAYOUT_DIFFUSERS)
        return lm_sd3_weights__diffusers_find(w, name);
    char full[512];
    return full_name(w, name, full, sizeof(full)) ? lm_safetensors_find(w->st, full) : NULL;
}

bool lm_sd3_weights_has(const lm_sd3_weights *w, const char *name)
{
    return lm_sd3_weights_find(w, name) != NULL;
}

lm_status lm_sd3_weights__missing(const lm_sd3_weights *w, const char *stored, const char *file,
                                  lm_error *err)
{
    lm_errorf(err, LM_ENOTFOUND, "missing_tensor", "%s tensor \"%s\" is missing",
              lm_sd3_component_name(w->component), stored);
    lm_error_hint(err, "this file is not a complete SD3 checkpoint or is damaged");
    lm_error_at_file(err, file, 0, 0);
    return LM_ENOTFOUND;
}

lm_status lm_sd3_weights__check_shape(const lm_sd3_weights *w, const char *stored, const char *file,
                                      const int64_t *have, int have_ndim, int ndim,
                                      const int64_t *shape, lm_error *err)
{
    bool bad = ndim >= 0 && have_ndim != ndim;
    for (int d = 0; !bad && shape && d < have_ndim; d++)
        bad = shape[d] >= 0 && shape[d] != have[d];
    if (!bad)
        return LM_OK;
    char hs[128], want[128] = "rank ";
    lm_tensor_describe_shape(have, have_ndim, hs, sizeof(hs));
    if (shape)
        lm_tensor_describe_shape(shape, ndim, want, sizeof(want));
    else
        snprintf(want, sizeof(want), "rank %d", ndim);
    lm_errorf(err, LM_EFORMAT, "bad_tensor_shape",
              "%s tensor \"%s\" has shape %s but %s is expected (-1 = any)",
              lm_sd3_component_name(w->component), stored, hs, want);
    lm_error_hint(err, "the file does not match the model it claims to be");
    lm_error_at_file(err, file, 0, 0);
    return LM_EFORMAT;
}

lm_status lm_sd3_weights_get(const lm_sd3_weights *w, const char *name, int ndim,
                             const int64_t *shape, lm_tensor **out, lm_error *err)
{
    *out = NULL;
    if (w->layout == LM_SD3_LAYOUT_DIFFUSERS)
        return lm_sd3_weights__diffusers_get(w, name, ndim, shape, out, err);
    char full[512] = "";
    const lm_safetensors_entry *e =
        full_name(w, name, full, sizeof(full)) ? lm_safetensors_find(w->st, full) : NULL;
    if (!e)
        return lm_sd3_weights__missing(w, full, lm_safetensors_path(w->st), err);
    lm_status st =
        lm_sd3_weights__check_shape(w, full, e->file, e->shape, e->ndim, ndim, shape, err);
    return st == LM_OK ? lm_safetensors_entry_tensor(out, w->st, e, err) : st;
}

lm_status lm_sd3_weights_getf(const lm_sd3_weights *w, lm_tensor **out, lm_error *err,
                              const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    return lm_sd3_weights_get(w, name, -1, NULL, out, err);
}

lm_status lm_sd3_weights_get_shape(const lm_sd3_weights *w, const char *name, int ndim,
                                   int64_t *shape, lm_error *err)
{
    lm_tensor *t = NULL;
    lm_status st = lm_sd3_weights_get(w, name, ndim, NULL, &t, err);
    if (st != LM_OK)
        return st;
    for (int d = 0; d < ndim; d++)
        shape[d] = t->shape[d];
    lm_tensor_free(t);
    return LM_OK;
}

bool lm_sd3_weights_stored_name(const lm_sd3_weights *w, const char *name, char *out, size_t size)
{
    if (w->layout == LM_SD3_LAYOUT_DIFFUSERS)
        return lm_sd3_weights__diffusers_name(w, name, out, size);
    return full_name(w, name, out, size);
}

int lm_sd3_weights_shape(const lm_sd3_weights *w, const char *name, int64_t shape[8])
{
    if (w->layout == LM_SD3_LAYOUT_DIFFUSERS)
        return lm_sd3_weights__diffusers_shape(w, name, shape);
    const lm_safetensors_entry *e = lm_sd3_weights_find(w, name);
    if (!e)
        return 0;
    for (int d = 0; d < e->ndim && d < 8; d++)
        shape[d] = e->shape[d];
    return e->ndim;
}

int lm_sd3_weights_count(const lm_sd3_weights *w, const char *fmt)
{
    int n = 0;
    for (;; n++) {
        char name[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(name, sizeof(name), fmt, n);
#pragma GCC diagnostic pop
        if (!lm_sd3_weights_has(w, name))
            return n;
    }
}

/* The lm_tensor * field a row binds in the struct at base. */
static lm_tensor **row_slot(void *base, const lm_sd3_bind_row *row)
{
    return (lm_tensor **)((char *)base + row->offset);
}

lm_status lm_sd3_weights_bind(const lm_sd3_weights *w, const char *prefix,
                              const lm_sd3_bind_row *rows, size_t n, const int64_t *dims,
                              void *base, lm_error *err)
{
    for (size_t i = 0; i < n; i++) {
        char name[512];
        snprintf(name, sizeof(name), "%s%s", prefix, rows[i].name);
        int64_t shape[2] = { dims[rows[i].rows], dims[rows[i].cols] };
        int ndim = rows[i].cols == 0 ? 1 : 2;
        lm_status st = lm_sd3_weights_get(w, name, ndim, shape, row_slot(base, &rows[i]), err);
        if (st != LM_OK)
            return st;
    }
    return LM_OK;
}

/* ---- a model's weight slots ---- */

lm_status lm_sd3_weights_each_row(const lm_sd3_bind_row *rows, size_t n, void *base,
                                  lm_sd3_slot_fn fn, void *user)
{
    lm_status st = LM_OK;
    for (size_t i = 0; st == LM_OK && i < n; i++)
        st = fn(row_slot(base, &rows[i]), user);
    return st;
}

static lm_status free_slot(lm_tensor **slot, void *user)
{
    LM_UNUSED(user);
    lm_tensor_free(*slot);
    *slot = NULL;
    return LM_OK;
}

static lm_status count_slot(lm_tensor **slot, void *user)
{
    *(size_t *)user += *slot ? lm_tensor_nbytes(*slot) : 0;
    return LM_OK;
}

typedef struct {
    lm_backend *be;
    size_t bytes; /* copied so far */
    lm_error *err;
} mover;

static lm_status move_slot(lm_tensor **slot, void *user)
{
    mover *mv = user;
    lm_status st = lm_tensor_move(slot, mv->be, mv->err);
    if (st == LM_OK && *slot)
        mv->bytes += lm_tensor_nbytes(*slot);
    return st;
}

lm_status lm_sd3_weights_to_device(void *model, lm_sd3_each_weight_fn each, const char *name,
                                   lm_backend *be, size_t *bytes, lm_error *err)
{
    size_t need = 0;
    mover mv = { .be = be, .err = err };
    each(model, count_slot, &need);
    lm_status st = each(model, move_slot, &mv);
    *bytes = mv.bytes;
    if (st == LM_OK || !err)
        return st;
    char why[sizeof(err->msg)];
    lm_strlcpy(why, err->msg, sizeof(why));
    lm_errorf(err, st, st == LM_ENOMEM ? "out_of_memory" : "device_error",
              "%s: its %.1f MiB of weights %s %s (%.1f MiB copied): %.150s", name,
              (double)need / 1048576.0,
              st == LM_ENOMEM ? "do not fit on" : "could not be copied to", lm_backend_name(be),
              (double)mv.bytes / 1048576.0, why);
    lm_error_hint(err, "free memory on %s, or let the %s compute on the CPU", lm_backend_name(be),
                  name);
    return st;
}

void lm_sd3_weights_free(void *model, lm_sd3_each_weight_fn each)
{
    each(model, free_slot, NULL);
}
