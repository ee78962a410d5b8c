/* nodes/sd3/weights_impl.h — what weights.c and weights_diffusers.c share; not for other
 * modules. weights.c dispatches every lookup of a diffusers-layout lm_sd3_weights to the
 * functions below, which translate the reference name (weights_diffusers.c). */
#ifndef LM_NODES_SD3_WEIGHTS_IMPL_H
#define LM_NODES_SD3_WEIGHTS_IMPL_H

#include "nodes/sd3/weights.h"

/* Checks a stored shape against the expected one (lm_sd3_weights_get's rules) and fills
 * err naming the stored tensor and file when it does not fit. */
lm_status lm_sd3_weights__check_shape(const lm_sd3_weights *w, const char *stored, const char *file,
                                      const int64_t *have, int have_ndim, int ndim,
                                      const int64_t *shape, lm_error *err);
/* The missing-tensor error naming the stored tensor and file. */
lm_status lm_sd3_weights__missing(const lm_sd3_weights *w, const char *stored, const char *file,
                                  lm_error *err);

/* Diffusers layout: the counterparts of find, shape, get and stored_name. */
const lm_safetensors_entry *lm_sd3_weights__diffusers_find(const lm_sd3_weights *w,
                                                           const char *name);
int lm_sd3_weights__diffusers_shape(const lm_sd3_weights *w, const char *name, int64_t shape[8]);
lm_status lm_sd3_weights__diffusers_get(const lm_sd3_weights *w, const char *name, int ndim,
                                        const int64_t *shape, lm_tensor **out, lm_error *err);
bool lm_sd3_weights__diffusers_name(const lm_sd3_weights *w, const char *name, char *out,
                                    size_t size);
/* Marks the diffusers-named MMDiT and VAE of a single file (after lm_sd3_detect's table). */
void lm_sd3_weights__detect_diffusers(lm_safetensors *st, bool found[LM_SD3_COMPONENT_COUNT],
                                      lm_sd3_weights weights[LM_SD3_COMPONENT_COUNT]);

#endif
