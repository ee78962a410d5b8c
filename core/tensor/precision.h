/* core/tensor/precision.h — the process-wide compute precision of the CPU's products.
 *
 * LM_PRECISION_F32 (the default) computes every product in f32. LM_PRECISION_BF16 makes
 * the CPU backend's lm_linear round its activations and weights to bf16 (nearest even)
 * and multiply them with AVX512-BF16 (VDPBF16PS), accumulating in f32; bias and result
 * stay f32. It is an opt-in speed/accuracy trade (docs/tensor.md "Precision"): on a CPU
 * without AVX512-BF16 (or with LOOM_CPU_BASELINE=1) BF16 runs the f32 path and says so
 * once at info level. Other ops and the CUDA backend are not affected.
 *
 * Thread safety: the setting is one atomic read by every product; set it before a run
 * (a product already running keeps the precision it started with). */
#ifndef LM_CORE_TENSOR_PRECISION_H
#define LM_CORE_TENSOR_PRECISION_H

#include "core/base/error.h"

#include <stdbool.h>

typedef enum { LM_PRECISION_F32, LM_PRECISION_BF16 } lm_precision;

void lm_precision_set(lm_precision p);
lm_precision lm_precision_get(void);
/* True when this CPU runs p's kernels (F32 always; BF16 needs AVX512-BF16). */
bool lm_precision_native(lm_precision p);
/* "f32" or "bf16". */
const char *lm_precision_name(lm_precision p);
/* Parses "f32" or "bf16"; anything else is LM_EINVAL naming the choices. */
lm_status lm_precision_parse(lm_precision *out, const char *name, lm_error *err);

#endif
