/* core/value.h — typed, refcounted, immutable values that flow along workflow links.
 *
 * A node returns new values (refcount 1, owned by the executor); once returned a value is
 * never modified, so the cache can hand the same value to many consumers, across runs and
 * threads. lm_value_ref()/lm_value_unref() are atomic.
 *
 * Types: built-in ones are LM_TYPE_* constants; Lua nodes (and anything else) may declare
 * more by name with lm_type_intern(). "*" (LM_TYPE_ANY) matches every type in links.
 * Conventions (ComfyUI's): IMAGE is f32 [B, H, W, C] in [0, 1] on the CPU; MASK is f32
 * [B, H, W]; LATENT is samples [B, C, h, w] plus an optional noise mask. Model-level things
 * (MODEL, CLIP, VAE, CONDITIONING, …) are opaque objects: a pointer plus the function that
 * frees it, so this layer knows nothing of SD3. */
#ifndef LM_CORE_VALUE_H
#define LM_CORE_VALUE_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int lm_type;

enum {
    LM_TYPE_NONE = 0, /* absent optional input */
    LM_TYPE_ANY,      /* "*" */
    LM_TYPE_INT,
    LM_TYPE_FLOAT,
    LM_TYPE_STRING,
    LM_TYPE_BOOLEAN,
    LM_TYPE_IMAGE,
    LM_TYPE_MASK,
    LM_TYPE_LATENT,
    LM_TYPE_CONDITIONING,
    LM_TYPE_MODEL,
    LM_TYPE_CLIP,
    LM_TYPE_VAE,
    LM_TYPE_BUILTIN_COUNT
};

/* The name of a type ("INT", "IMAGE", or an interned name); "?" for an unknown id. */
const char *lm_type_name(lm_type type);
/* The type with this name, registering it when new (names are case-sensitive, as in
 * ComfyUI). Returns LM_TYPE_NONE when the table is full or the name is not a valid type
 * name (letters, digits, '_', at most 63 characters). Thread-safe. */
lm_type lm_type_intern(const char *name);
/* The type with this name, or LM_TYPE_NONE when unknown; never registers. */
lm_type lm_type_lookup(const char *name);
/* Whether an output of type `from` may feed an input of type `to`. */
bool lm_type_compatible(lm_type from, lm_type to);

typedef struct lm_value lm_value;

/* Constructors return NULL on out-of-memory. Tensor-taking ones take ownership of the
 * tensors, also on failure (they are freed). */
lm_value *lm_value_int(int64_t v);
lm_value *lm_value_float(double v);
lm_value *lm_value_bool(bool v);
lm_value *lm_value_string(const char *s);
lm_value *lm_value_string_n(const char *s, size_t len);
lm_value *lm_value_image(lm_tensor *image);                           /* f32 [B,H,W,C] */
lm_value *lm_value_mask(lm_tensor *mask);                             /* f32 [B,H,W] */
lm_value *lm_value_latent(lm_tensor *samples, lm_tensor *noise_mask); /* mask may be NULL */
/* An opaque object of any type; free_fn(ptr) runs when the last reference goes.
 * `bytes` is its size for cache accounting (0 when it is owned elsewhere, e.g. a model
 * shared by a model manager). */
lm_value *lm_value_object(lm_type type, void *ptr, void (*free_fn)(void *), size_t bytes);

lm_value *lm_value_ref(lm_value *v); /* returns v; NULL is allowed */
void lm_value_unref(lm_value *v);    /* NULL is a no-op */

lm_type lm_value_type(const lm_value *v);
int64_t lm_value_as_int(const lm_value *v);  /* INT; FLOAT truncates; BOOLEAN 0/1 */
double lm_value_as_float(const lm_value *v); /* FLOAT or INT */
bool lm_value_as_bool(const lm_value *v);
const char *lm_value_as_string(const lm_value *v); /* STRING; NULL otherwise */
size_t lm_value_string_len(const lm_value *v);
const lm_tensor *lm_value_tensor(const lm_value *v);     /* IMAGE, MASK, LATENT samples */
const lm_tensor *lm_value_noise_mask(const lm_value *v); /* LATENT; may be NULL */
void *lm_value_object_ptr(const lm_value *v);            /* object types; NULL otherwise */
/* Approximate memory held, for the cache's budget. */
size_t lm_value_bytes(const lm_value *v);

/* Converts a scalar to the target scalar type the way workflow literals are converted
 * (INT→FLOAT, FLOAT→INT only when integral, BOOLEAN from true/false). Returns a new
 * reference or NULL with err set (LM_ETYPE) when not convertible. */
lm_value *lm_value_convert(lm_value *v, lm_type to, lm_error *err);
/* Renders a scalar as JSON ("12", "0.5", "\"text\"", "true"); "null" for other types.
 * Writes into buf, truncating. */
void lm_value_to_json(const lm_value *v, char *buf, size_t size);

#endif
