/* nodes/sd3/models_values.c — MODEL, CLIP, VAE and CONDITIONING as lm_value objects
 * (models.h). Each value owns its struct; the struct holds counted references to shared
 * parts of the model manager, or owned tensors (conditioning). bytes is 0 for the
 * model-holding values (the manager owns the weights) and the tensor sizes for
 * conditioning, for the executor cache's accounting. */
#include "core/base/alloc.h"
#include "nodes/sd3/models.h"

#include <string.h>

void lm_sd3_model_free(lm_sd3_model *m)
{
    if (!m)
        return;
    lm_sd3_part_release(m->mmdit);
    lm_free(m);
}

void lm_sd3_clip_free(lm_sd3_clip *c)
{
    if (!c)
        return;
    lm_sd3_part_release(c->clip_l);
    lm_sd3_part_release(c->clip_g);
    lm_sd3_part_release(c->t5);
    lm_free(c);
}

void lm_sd3_vae_free(lm_sd3_vae *v)
{
    if (!v)
        return;
    lm_sd3_part_release(v->vae);
    lm_free(v);
}

void lm_sd3_conditioning_free(lm_sd3_conditioning *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        lm_tensor_free(c->entries[i].context);
        lm_tensor_free(c->entries[i].pooled);
    }
    lm_free(c->entries);
    lm_free(c);
}

static void model_free_fn(void *p)
{
    lm_sd3_model_free(p);
}
static void clip_free_fn(void *p)
{
    lm_sd3_clip_free(p);
}
static void vae_free_fn(void *p)
{
    lm_sd3_vae_free(p);
}
static void cond_free_fn(void *p)
{
    lm_sd3_conditioning_free(p);
}

lm_value *lm_sd3_model_value(lm_sd3_model *m)
{
    lm_value *v = m ? lm_value_object(LM_TYPE_MODEL, m, model_free_fn, 0) : NULL;
    if (!v)
        lm_sd3_model_free(m);
    return v;
}

lm_value *lm_sd3_clip_value(lm_sd3_clip *c)
{
    lm_value *v = c ? lm_value_object(LM_TYPE_CLIP, c, clip_free_fn, 0) : NULL;
    if (!v)
        lm_sd3_clip_free(c);
    return v;
}

lm_value *lm_sd3_vae_value(lm_sd3_vae *vae)
{
    lm_value *v = vae ? lm_value_object(LM_TYPE_VAE, vae, vae_free_fn, 0) : NULL;
    if (!v)
        lm_sd3_vae_free(vae);
    return v;
}

lm_value *lm_sd3_conditioning_value(lm_sd3_conditioning *c)
{
    size_t bytes = sizeof(*c);
    for (size_t i = 0; c && i < c->n; i++)
        bytes += lm_tensor_nbytes(c->entries[i].context) + lm_tensor_nbytes(c->entries[i].pooled);
    lm_value *v = c ? lm_value_object(LM_TYPE_CONDITIONING, c, cond_free_fn, bytes) : NULL;
    if (!v)
        lm_sd3_conditioning_free(c);
    return v;
}

static void *object_of(const lm_value *v, lm_type type)
{
    return v && lm_value_type(v) == type ? lm_value_object_ptr(v) : NULL;
}

const lm_sd3_model *lm_sd3_model_of(const lm_value *v)
{
    return object_of(v, LM_TYPE_MODEL);
}

const lm_sd3_clip *lm_sd3_clip_of(const lm_value *v)
{
    return object_of(v, LM_TYPE_CLIP);
}

const lm_sd3_vae *lm_sd3_vae_of(const lm_value *v)
{
    return object_of(v, LM_TYPE_VAE);
}

const lm_sd3_conditioning *lm_sd3_conditioning_of(const lm_value *v)
{
    return object_of(v, LM_TYPE_CONDITIONING);
}

lm_status lm_sd3_model_copy(lm_sd3_model **out, const lm_sd3_model *m, lm_error *err)
{
    *out = lm_malloc(sizeof(**out));
    if (!*out)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory copying a MODEL");
    **out = *m;
    (*out)->mmdit = lm_sd3_part_ref(m->mmdit);
    return LM_OK;
}

lm_status lm_sd3_conditioning_new(lm_sd3_conditioning **out, size_t n, lm_error *err)
{
    *out = lm_calloc(1, sizeof(**out));
    if (*out && n > 0)
        (*out)->entries = lm_calloc(n, sizeof(*(*out)->entries));
    if (!*out || (n > 0 && !(*out)->entries)) {
        lm_free(*out);
        *out = NULL;
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory making a CONDITIONING");
    }
    (*out)->n = n;
    return LM_OK;
}

lm_status lm_sd3_cond_entry_copy(lm_sd3_cond_entry *dst, const lm_sd3_cond_entry *src,
                                 lm_error *err)
{
    *dst = *src;
    dst->context = dst->pooled = NULL;
    lm_status st = lm_tensor_view(&dst->context, src->context, err);
    if (st == LM_OK)
        st = lm_tensor_view(&dst->pooled, src->pooled, err);
    return st;
}
