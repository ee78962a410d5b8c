/* core/tensor/cuda_none.c — stands in for the CUDA backend when Loom is built without nvcc. */
#include "core/tensor/cuda/cuda.h"

lm_status lm_cuda_backend_new(lm_backend **out, int device, lm_error *err)
{
    LM_UNUSED(device);
    *out = NULL;
    lm_errorf(err, LM_EUNSUPPORTED, "no_cuda", "this Loom was built without CUDA");
    lm_error_hint(err, "install the CUDA toolkit (nvcc) and rebuild, or use --device cpu");
    return LM_EUNSUPPORTED;
}
