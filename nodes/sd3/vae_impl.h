/* nodes/sd3/vae_impl.h — what vae.c and vae_tiled.c share; not for other modules.
 *
 * A run (one decode or encode, tiled or not) carries the caller's callback, the step count
 * for progress, the tile being worked on and the largest activation made so far. The
 * encoder and decoder passes below report their stages through lm_vae__emit.
 *
 * Devices: the passes compute on the VAE's backend (lm_vae_backend) and every tensor they
 * take or make lives there; the public functions move host inputs there first
 * (lm_tensor_on, which refuses a tensor on another device) and bring results back
 * (lm_tensor_move to the CPU), so only the callback sees device tensors. */
#ifndef LM_NODES_SD3_VAE_IMPL_H
#define LM_NODES_SD3_VAE_IMPL_H

#include "nodes/sd3/vae.h"

typedef struct {
    lm_vae_callback cb; /* may be NULL */
    void *user;
    const char *what; /* "decode", "encode": for messages */
    int step, steps;  /* steps done so far, and in all */
    int tile, tiles;
    size_t max_bytes; /* largest tensor made by this run */
} lm_vae__run;

/* Counts t in max_bytes. */
void lm_vae__track(lm_vae__run *r, const lm_tensor *t);
/* One step done: calls the callback; its refusal becomes an error ("interrupted"). */
lm_status lm_vae__emit(lm_vae__run *r, const char *stage, const lm_tensor *t, lm_error *err);

/* Steps one pass of each half reports. */
int lm_vae__encoder_steps(const lm_vae_config *cfg);
int lm_vae__decoder_steps(const lm_vae_config *cfg);

/* Checks an input's shape: rank 4, `channels` channels, at least `min_hw` pixels each way.
 * `what` names it in the message ("latent", "image"). Its backend is checked when it is
 * moved to the VAE's (lm_tensor_on). */
lm_status lm_vae__check_input(const lm_tensor *t, int channels, int min_hw, const char *what,
                              lm_error *err);
/* The encode's results (sample may be NULL) as host tensors; on failure both are freed. */
lm_status lm_vae__encoded_to_host(lm_tensor **mean, lm_tensor **sample, lm_error *err);

/* image [B, 3, H, W] -> *moments [B, 2z, H/f, W/f] (the encoder's raw output). */
lm_status lm_vae__encoder(const lm_vae *vae, lm_vae__run *r, const lm_tensor *image,
                          lm_tensor **moments, lm_error *err);
/* raw latent [B, z, h, w] -> *image [B, 3, f*h, f*w]. */
lm_status lm_vae__decoder(const lm_vae *vae, lm_vae__run *r, const lm_tensor *raw,
                          lm_tensor **image, lm_error *err);
/* From the encoder's moments to the scaled mean (and sample, with rng); reports "moments",
 * "mean", "logvar" and "sample": 3 steps, 4 with rng. */
lm_status lm_vae__finish_encode(const lm_vae *vae, lm_vae__run *r, const lm_tensor *moments,
                                lm_rng *rng, lm_tensor **mean_out, lm_tensor **sample_out,
                                lm_error *err);

#endif
