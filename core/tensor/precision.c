/* core/tensor/precision.c — the process-wide precision setting (precision.h). The CPU
 * backend reads it in lm_linear; whether BF16 really runs is the backend's call
 * (lm_cpu_has_bf16). */
#include "core/tensor/precision.h"

#include "core/tensor/cpu/cpu.h"

#include <stdatomic.h>
#include <string.h>

static atomic_int precision = LM_PRECISION_F32;

void lm_precision_set(lm_precision p)
{
    atomic_store(&precision, p == LM_PRECISION_BF16 ? LM_PRECISION_BF16 : LM_PRECISION_F32);
}

lm_precision lm_precision_get(void)
{
    return (lm_precision)atomic_load_explicit(&precision, memory_order_relaxed);
}

bool lm_precision_native(lm_precision p)
{
    return p != LM_PRECISION_BF16 || lm_cpu_has_bf16();
}

const char *lm_precision_name(lm_precision p)
{
    return p == LM_PRECISION_BF16 ? "bf16" : "f32";
}

lm_status lm_precision_parse(lm_precision *out, const char *name, lm_error *err)
{
    if (name && strcmp(name, "f32") == 0) {
        *out = LM_PRECISION_F32;
        return LM_OK;
    }
    if (name && strcmp(name, "bf16") == 0) {
        *out = LM_PRECISION_BF16;
        return LM_OK;
    }
    return lm_errorf(err, LM_EINVAL, "bad_precision",
                     "precision \"%s\" is unknown; use f32 or bf16", name ? name : "(null)");
}
