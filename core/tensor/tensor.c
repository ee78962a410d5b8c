/* core/tensor/tensor.c — tensor structs, views, copies between dtypes and backends.
 * Everything here is backend-neutral bookkeeping; data movement goes through the owning
 * backend's copy hook (the CPU backend is in cpu/cpu_backend.c). */
#include "core/tensor/tensor.h"

#include "core/base/alloc.h"
#include "core/tensor/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[LM_DTYPE_COUNT] = {
    [LM_DTYPE_F32] = { "F32", 4 },   [LM_DTYPE_F16] = { "F16", 2 },
    [LM_DTYPE_BF16] = { "BF16", 2 }, [LM_DTYPE_F8_E4M3] = { "F8_E4M3", 1 },
    [LM_DTYPE_I64] = { "I64", 8 },   [LM_DTYPE_I32] = { "I32", 4 },
    [LM_DTYPE_U8] = { "U8", 1 },
};

size_t lm_dtype_size(lm_dtype dtype)
{
    return (unsigned)dtype < LM_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

const char *lm_dtype_name(lm_dtype dtype)
{
    return (unsigned)dtype < LM_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

lm_buffer *lm_buffer__ref(lm_buffer *buf)
{
    atomic_fetch_add(&buf->refs, 1);
    return buf;
}

void lm_buffer__unref(lm_buffer *buf)
{
    if (!buf || atomic_fetch_sub(&buf->refs, 1) != 1)
        return;
    if (buf->wrapped || buf->release || buf->keep_alive) {
        lm_backend__mem_unmap(buf->backend, buf->bytes);
        if (buf->release)
            buf->release(buf->keep_alive);
    } else if (buf->backend) {
        buf->backend->ops->buffer_free(buf->backend, buf);
    }
    lm_free(buf);
}

/* ---- tensors ---- */

static void set_contiguous(lm_tensor *t, int ndim, const int64_t *shape)
{
    t->ndim = ndim;
    int64_t stride = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        t->shape[d] = shape[d];
        t->stride[d] = stride;
        stride *= shape[d];
    }
}

static lm_status check_shape(int ndim, const int64_t *shape, lm_dtype dtype, size_t *bytes,
                             lm_error *err)
{
    if (ndim < 0 || ndim > LM_MAX_DIMS)
        return lm_errorf(err, LM_EINVAL, "bad_shape", "a tensor has %d dimensions; at most %d",
                         ndim, LM_MAX_DIMS);
    if ((unsigned)dtype >= LM_DTYPE_COUNT)
        return lm_errorf(err, LM_EINVAL, "bad_dtype", "unknown dtype %d", (int)dtype);
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && n > SIZE_MAX / 8 / (size_t)shape[d]))
            return lm_errorf(err, LM_ERANGE, "bad_shape",
                             "dimension %d of a tensor is %lld, negative or too large", d,
                             (long long)shape[d]);
        n *= (size_t)shape[d];
    }
    *bytes = n * lm_dtype_size(dtype);
    return LM_OK;
}

lm_status lm_tensor_new(lm_tensor **out, lm_backend *be, lm_dtype dtype, int ndim,
                        const int64_t *shape, lm_error *err)
{
    *out = NULL;
    size_t bytes;
    lm_status st = check_shape(ndim, shape, dtype, &bytes, err);
    if (st != LM_OK)
        return st;
    lm_tensor *t = lm_calloc(1, sizeof(*t));
    if (!t)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate a tensor");
    st = be->ops->buffer_new(&t->buffer, be, bytes, err);
    if (st != LM_OK) {
        lm_free(t);
        return st;
    }
    t->dtype = dtype;
    set_contiguous(t, ndim, shape);
    *out = t;
    return LM_OK;
}

lm_status lm_tensor_zeros(lm_tensor **out, lm_backend *be, lm_dtype dtype, int ndim,
                          const int64_t *shape, lm_error *err)
{
    lm_status st = lm_tensor_new(out, be, dtype, ndim, shape, err);
    if (st != LM_OK)
        return st;
    if (be->is_host) {
        memset((*out)->buffer->data, 0, (*out)->buffer->bytes);
        return LM_OK;
    }
    /* A device tensor: copy zeros from the host (rare; models zero-fill with lm_fill). */
    lm_tensor *host = NULL;
    st = lm_tensor_zeros(&host, lm_backend_cpu(), dtype, ndim, shape, err);
    if (st == LM_OK)
        st = lm_tensor_copy(*out, host, err);
    lm_tensor_free(host);
    if (st != LM_OK) {
        lm_tensor_free(*out);
        *out = NULL;
    }
    return st;
}

lm_status lm_tensor_wrap(lm_tensor **out, void *data, size_t bytes, lm_dtype dtype, int ndim,
                         const int64_t *shape, void (*release)(void *), void *keep_alive,
                         lm_error *err)
{
    *out = NULL;
    size_t need;
    lm_status st = check_shape(ndim, shape, dtype, &need, err);
    if (st != LM_OK)
        return st;
    if (need > bytes)
        return lm_errorf(err, LM_ERANGE, "bad_shape",
                         "a tensor needs %zu bytes but only %zu are given", need, bytes);
    lm_tensor *t = lm_calloc(1, sizeof(*t));
    lm_buffer *buf = lm_calloc(1, sizeof(*buf));
    if (!t || !buf) {
        lm_free(t);
        lm_free(buf);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate a tensor");
    }
    buf->backend = lm_backend_cpu();
    atomic_init(&buf->refs, 1);
    buf->data = data;
    buf->bytes = bytes;
    buf->release = release;
    buf->keep_alive = keep_alive ? keep_alive : data;
    buf->wrapped = true;
    lm_backend__mem_map(buf->backend, bytes);
    t->buffer = buf;
    t->dtype = dtype;
    set_contiguous(t, ndim, shape);
    *out = t;
    return LM_OK;
}

void lm_tensor_free(lm_tensor *t)
{
    if (!t)
        return;
    lm_buffer__unref(t->buffer);
    lm_free(t);
}

int64_t lm_tensor_numel(const lm_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

size_t lm_tensor_nbytes(const lm_tensor *t)
{
    return (size_t)lm_tensor_numel(t) * lm_dtype_size(t->dtype);
}

bool lm_tensor_is_contiguous(const lm_tensor *t)
{
    int64_t stride = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != stride)
            return false;
        stride *= t->shape[d];
    }
    return true;
}

lm_backend *lm_tensor_backend(const lm_tensor *t)
{
    return t->buffer->backend;
}

void *lm_tensor_data(const lm_tensor *t)
{
    if (!t->buffer->backend->is_host)
        return NULL;
    return (unsigned char *)t->buffer->data + t->offset;
}

void *lm_tensor__addr(const lm_tensor *t)
{
    return (unsigned char *)t->buffer->data + t->offset;
}

static lm_status view_alloc(lm_tensor **out, const lm_tensor *t, lm_error *err)
{
    lm_tensor *v = lm_malloc(sizeof(*v));
    if (!v)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate a tensor view");
    *v = *t;
    lm_buffer__ref(v->buffer);
    *out = v;
    return LM_OK;
}

lm_status lm_tensor_view(lm_tensor **out, const lm_tensor *t, lm_error *err)
{
    *out = NULL;
    return view_alloc(out, t, err);
}

lm_status lm_tensor_view_slice(lm_tensor **out, const lm_tensor *t, int dim, int64_t start,
                               int64_t end, lm_error *err)
{
    *out = NULL;
    if (dim < 0 || dim >= t->ndim || start < 0 || end < start || end > t->shape[dim])
        return lm_errorf(err, LM_ERANGE, "bad_slice",
                         "slice [%lld, %lld) of dimension %d is outside the tensor",
                         (long long)start, (long long)end, dim);
    lm_status st = view_alloc(out, t, err);
    if (st != LM_OK)
        return st;
    (*out)->shape[dim] = end - start;
    (*out)->offset += (size_t)(start * t->stride[dim]) * lm_dtype_size(t->dtype);
    return LM_OK;
}

lm_status lm_tensor_view_reshape(lm_tensor **out, const lm_tensor *t, int ndim,
                                 const int64_t *shape, lm_error *err)
{
    *out = NULL;
    if (!lm_tensor_is_contiguous(t))
        return lm_errorf(err, LM_EINVAL, "not_contiguous",
                         "reshape needs a contiguous tensor; copy it first");
    size_t bytes;
    lm_status st = check_shape(ndim, shape, t->dtype, &bytes, err);
    if (st != LM_OK)
        return st;
    if (bytes != lm_tensor_nbytes(t))
        return lm_errorf(err, LM_EINVAL, "bad_shape", "reshape changes the number of elements");
    st = view_alloc(out, t, err);
    if (st != LM_OK)
        return st;
    set_contiguous(*out, ndim, shape);
    return LM_OK;
}

lm_status lm_tensor_view_permute(lm_tensor **out, const lm_tensor *t, const int *perm,
                                 lm_error *err)
{
    *out = NULL;
    unsigned seen = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (perm[d] < 0 || perm[d] >= t->ndim || (seen & (1u << perm[d])))
            return lm_errorf(err, LM_EINVAL, "bad_permutation", "not a permutation of %d dims",
                             t->ndim);
        seen |= 1u << perm[d];
    }
    lm_status st = view_alloc(out, t, err);
    if (st != LM_OK)
        return st;
    for (int d = 0; d < t->ndim; d++) {
        (*out)->shape[d] = t->shape[perm[d]];
        (*out)->stride[d] = t->stride[perm[d]];
    }
    return LM_OK;
}

/* Writes "[a, b, …]" into buf; returns the length written, or more when it did not fit. */
static size_t shape_text(const int64_t *shape, int ndim, char *buf, size_t size)
{
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && at < size; d++)
        at += (size_t)snprintf(buf + at, size - at, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (at < size)
        at += (size_t)snprintf(buf + at, size - at, "]");
    return at;
}

void lm_tensor_describe(const lm_tensor *t, char *buf, size_t size)
{
    size_t at = shape_text(t->shape, t->ndim, buf, size);
    if (at < size)
        snprintf(buf + at, size - at, " %s", lm_dtype_name(t->dtype));
}

void lm_tensor_describe_shape(const int64_t *shape, int ndim, char *buf, size_t size)
{
    shape_text(shape, ndim, buf, size);
}

/* ---- copies ---- */

static bool same_shape(const lm_tensor *a, const lm_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

lm_status lm_tensor_copy(lm_tensor *dst, const lm_tensor *src, lm_error *err)
{
    if (!same_shape(dst, src)) {
        char a[96], b[96];
        lm_tensor_describe(dst, a, sizeof(a));
        lm_tensor_describe(src, b, sizeof(b));
        return lm_errorf(err, LM_EINVAL, "shape_mismatch",
                         "tensor copy: destination is %s but source is %s; shapes must match", a,
                         b);
    }
    lm_backend *db = lm_tensor_backend(dst), *sb = lm_tensor_backend(src);
    lm_backend *be = db;
    if (db != sb) {
        if (!db->is_host && !sb->is_host)
            return lm_errorf(err, LM_EUNSUPPORTED, "unsupported",
                             "tensor copy from backend %s to %s; copy through the host",
                             sb->ops->name, db->ops->name);
        be = db->is_host ? sb : db;
    }
    if (lm_tensor_numel(dst) == 0)
        return LM_OK;
    return be->ops->copy(be, dst, src, err);
}

static lm_status copy_new(lm_tensor **out, const lm_tensor *t, lm_backend *be, lm_dtype dtype,
                          lm_error *err)
{
    lm_status st = lm_tensor_new(out, be, dtype, t->ndim, t->shape, err);
    if (st != LM_OK)
        return st;
    st = lm_tensor_copy(*out, t, err);
    if (st != LM_OK) {
        lm_tensor_free(*out);
        *out = NULL;
    }
    return st;
}

lm_status lm_tensor_cast(lm_tensor **out, const lm_tensor *t, lm_dtype dtype, lm_error *err)
{
    *out = NULL;
    return copy_new(out, t, lm_tensor_backend(t), dtype, err);
}

lm_status lm_tensor_contiguous(lm_tensor **out, const lm_tensor *t, lm_error *err)
{
    *out = NULL;
    return copy_new(out, t, lm_tensor_backend(t), t->dtype, err);
}

lm_status lm_tensor_to(lm_tensor **out, const lm_tensor *t, lm_backend *be, lm_error *err)
{
    *out = NULL;
    return copy_new(out, t, be, t->dtype, err);
}

lm_status lm_tensor_move(lm_tensor **t, lm_backend *be, lm_error *err)
{
    if (!*t || lm_tensor_backend(*t) == be)
        return LM_OK;
    lm_tensor *moved = NULL;
    lm_status st = lm_tensor_to(&moved, *t, be, err);
    lm_tensor_free(*t);
    *t = moved;
    return st;
}

lm_status lm_tensor_on(lm_tensor **copy, const lm_tensor *t, lm_backend *be, const char *what,
                       lm_error *err)
{
    lm_backend *tb = lm_tensor_backend(t);
    *copy = NULL;
    if (tb == be || (tb->is_host && be->is_host))
        return LM_OK;
    if (tb->is_host)
        return lm_tensor_to(copy, t, be, err);
    lm_errorf(err, LM_EINVAL, "wrong_backend", "%s is on %s but the model computes on %s", what,
              tb->ops->name, be->ops->name);
    lm_error_hint(err, "pass host tensors, or tensors on the model's device");
    return LM_EINVAL;
}

lm_status lm_tensor_to_f32_host(lm_tensor **out, const lm_tensor *t, lm_error *err)
{
    *out = NULL;
    lm_backend *be = lm_tensor_backend(t);
    if (be->is_host)
        return copy_new(out, t, lm_backend_cpu(), LM_DTYPE_F32, err);
    /* Cast on the device first (cheap there), then one transfer of f32 data. */
    lm_tensor *dev = NULL;
    lm_status st = LM_OK;
    if (t->dtype != LM_DTYPE_F32 || !lm_tensor_is_contiguous(t))
        st = lm_tensor_cast(&dev, t, LM_DTYPE_F32, err);
    if (st == LM_OK)
        st = copy_new(out, dev ? dev : t, lm_backend_cpu(), LM_DTYPE_F32, err);
    lm_tensor_free(dev);
    return st;
}

lm_status lm_backend_sync(lm_backend *be, lm_error *err)
{
    return be->ops->sync(be, err);
}

const char *lm_backend_name(const lm_backend *be)
{
    return be->ops->name;
}

bool lm_backend_is_host(const lm_backend *be)
{
    return be->is_host;
}

size_t lm_backend_cached_bytes(const lm_backend *be)
{
    return be->ops->cached_bytes ? be->ops->cached_bytes(be) : 0;
}

void lm_backend_trim(lm_backend *be)
{
    if (be->ops->trim)
        be->ops->trim(be);
}
