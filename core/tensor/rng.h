/* core/tensor/rng.h — noise that matches PyTorch's CPU generator bit for bit.
 *
 * `lm_rng_new(&rng, seed)` + `lm_rng_randn(rng, out, n)` gives exactly the float32 values of
 * `torch.manual_seed(seed); torch.randn(n)` on CPU (any shape with n elements: the values
 * fill it in row-major order), and further lm_rng_randn calls match further torch.randn
 * calls on the same generator. This is how ComfyUI and the SD3 reference make the initial
 * latent noise (`prepare_noise`: one randn of the whole [B, 16, H/8, W/8] batch), so a seed
 * gives the same image in Loom as in ComfyUI.
 *
 * Ancestral and SDE samplers (ComfyUI's default_noise_sampler) draw one randn of the
 * latent's size per step from their own generator seeded with the sampler's seed: use a
 * second lm_rng for that, never the one that made the initial noise.
 *
 * What is reproduced (PyTorch aten/src/ATen/native/cpu/DistributionTemplates.h, normal):
 * mt19937 seeded with the low 32 bits of the seed; n >= 16: n uniforms
 * (24-bit, (u32 & 0xffffff) / 2^24) then Box-Muller on blocks of 16 (first 8 give the
 * radius from log(1-u), last 8 the angle) with the AVX2 Cephes log/sincos polynomials —
 * computed here in scalar C with fmaf() exactly where the compiled AVX2 code fuses, so the
 * result does not depend on this CPU; a remainder n % 16 redraws 16 fresh uniforms and
 * recomputes the last 16 values. n < 16: PyTorch's scalar double-precision Box-Muller, one
 * value per element, the second value of each pair cached in the generator across calls.
 *
 * Ownership: lm_rng_new() returns an object freed with lm_rng_free(). Not thread-safe: one
 * generator per job (it is per-job state, like the latent). */
#ifndef LM_CORE_TENSOR_RNG_H
#define LM_CORE_TENSOR_RNG_H

#include "core/base/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct lm_rng lm_rng;

/* A generator in the state torch.manual_seed(seed) leaves. */
lm_status lm_rng_new(lm_rng **out, uint64_t seed, lm_error *err);
void lm_rng_free(lm_rng *rng); /* NULL is a no-op */

/* Re-seeds in place (torch.manual_seed): also forgets the cached normal value. */
void lm_rng_seed(lm_rng *rng, uint64_t seed);

/* One torch.randn call of n float32 standard normals (mean 0, std 1) into out[0..n). */
void lm_rng_randn(lm_rng *rng, float *out, size_t n);

/* The next raw 32-bit mt19937 output (torch's generator.random()). */
uint32_t lm_rng_u32(lm_rng *rng);

#endif
