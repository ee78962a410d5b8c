/* core/tensor/cuda/cuda.h — the CUDA backend's one entry point, plain C.
 * Built from the .cu files in this directory when nvcc is present; otherwise
 * core/tensor/cuda_none.c provides the same symbol, returning LM_EUNSUPPORTED.
 * The returned backend is owned by the process and lives until exit. */
#ifndef LM_CORE_TENSOR_CUDA_CUDA_H
#define LM_CORE_TENSOR_CUDA_CUDA_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"

lm_status lm_cuda_backend_new(lm_backend **out, int device, lm_error *err);

#endif
