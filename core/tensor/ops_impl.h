/* core/tensor/ops_impl.h — the op front-end's shared machinery (internal to core/tensor).
 *
 * Every lm_* op follows the same steps: lm_opx_begin() checks that the inputs share one
 * backend and converts those the kernel cannot take as they are (dtype or strides, see
 * op.h) into temporaries; the op checks shapes and computes the result's shape;
 * lm_opx_finish() allocates the result, runs the backend's kernel and frees the
 * temporaries. Error messages start with the op's public name ("lm_linear: …"). */
#ifndef LM_CORE_TENSOR_OPS_IMPL_H
#define LM_CORE_TENSOR_OPS_IMPL_H

#include "core/tensor/backend.h"
#include "core/tensor/ops.h"

typedef struct {
    lm_op_call call;
    lm_backend *be;
    lm_tensor *tmp[LM_OP_MAX_IN];  /* converted copies, freed by finish/abort */
    lm_tensor views[LM_OP_MAX_IN]; /* reshaped or broadcast views (no references) */
} lm_opx;

/* Fills x->call for op with inputs in[0..n) (NULL = absent optional input) and prepares
 * them. On failure everything is released. */
lm_status lm_opx_begin(lm_opx *x, lm_op op, const lm_tensor *const *in, int n, lm_error *err);
/* Allocates the result (dtype F32 unless told), runs the kernel, releases temporaries.
 * *out is NULL on failure. */
lm_status lm_opx_finish(lm_opx *x, lm_tensor **out, lm_dtype dtype, int ndim, const int64_t *shape,
                        lm_error *err);
/* Releases temporaries without running (after a shape error); returns st. */
lm_status lm_opx_abort(lm_opx *x, lm_status st);
/* Replaces input i by a view of it with another shape (same element order; the input
 * must be contiguous, which begin guarantees for non-strided ops). */
void lm_opx_reshape(lm_opx *x, int i, int ndim, const int64_t *shape);

/* "lm_<op>: <message>" with kind "bad_shape" and code LM_EINVAL. */
lm_status lm_opx_error(lm_error *err, lm_op op, const char *fmt, ...) LM_PRINTF(3, 4);
/* "[2, 3] f32" */
void lm_opx_desc(const lm_tensor *t, char *buf, size_t size);
/* Resolves a possibly negative dim against ndim; -1 when out of range. */
int lm_opx_dim(int dim, int ndim);

#endif
