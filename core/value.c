/* core/value.c — refcounted values and the type-name table.
 * Interned types live in a fixed table guarded by a mutex; ids never change once given, so
 * readers need no lock for names of ids they already hold. */
#include "core/value.h"

#include "core/base/alloc.h"
#include "core/base/str.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TYPES 256

static char type_names[MAX_TYPES][64] = {
    [LM_TYPE_NONE] = "NONE",     [LM_TYPE_ANY] = "*",
    [LM_TYPE_INT] = "INT",       [LM_TYPE_FLOAT] = "FLOAT",
    [LM_TYPE_STRING] = "STRING", [LM_TYPE_BOOLEAN] = "BOOLEAN",
    [LM_TYPE_IMAGE] = "IMAGE",   [LM_TYPE_MASK] = "MASK",
    [LM_TYPE_LATENT] = "LATENT", [LM_TYPE_CONDITIONING] = "CONDITIONING",
    [LM_TYPE_MODEL] = "MODEL",   [LM_TYPE_CLIP] = "CLIP",
    [LM_TYPE_VAE] = "VAE",
};
static _Atomic int type_count = LM_TYPE_BUILTIN_COUNT;
static pthread_mutex_t type_mu = PTHREAD_MUTEX_INITIALIZER;

const char *lm_type_name(lm_type type)
{
    if (type < 0 || type >= atomic_load(&type_count))
        return "?";
    return type_names[type];
}

lm_type lm_type_lookup(const char *name)
{
    int n = atomic_load(&type_count);
    for (int i = 1; i < n; i++)
        if (strcmp(type_names[i], name) == 0)
            return i;
    return LM_TYPE_NONE;
}

static bool valid_type_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 63)
        return false;
    if (strcmp(name, "*") == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

lm_type lm_type_intern(const char *name)
{
    if (!name || !valid_type_name(name))
        return LM_TYPE_NONE;
    pthread_mutex_lock(&type_mu);
    lm_type t = lm_type_lookup(name);
    if (t == LM_TYPE_NONE && atomic_load(&type_count) < MAX_TYPES) {
        t = atomic_load(&type_count);
        lm_strlcpy(type_names[t], name, sizeof(type_names[t]));
        atomic_store(&type_count, t + 1);
    }
    pthread_mutex_unlock(&type_mu);
    return t;
}

bool lm_type_compatible(lm_type from, lm_type to)
{
    return from == to || from == LM_TYPE_ANY || to == LM_TYPE_ANY;
}

struct lm_value {
    lm_type type;
    atomic_int refs;
    union {
        int64_t i;
        double f;
        bool b;
        struct {
            char *data;
            size_t len;
        } str;
        struct {
            lm_tensor *tensor;
            lm_tensor *mask;
        } t;
        struct {
            void *ptr;
            void (*free_fn)(void *);
            size_t bytes;
        } obj;
    } u;
};

static lm_value *value_new(lm_type type)
{
    lm_value *v = lm_calloc(1, sizeof(*v));
    if (v) {
        v->type = type;
        atomic_init(&v->refs, 1);
    }
    return v;
}

lm_value *lm_value_int(int64_t x)
{
    lm_value *v = value_new(LM_TYPE_INT);
    if (v)
        v->u.i = x;
    return v;
}

lm_value *lm_value_float(double x)
{
    lm_value *v = value_new(LM_TYPE_FLOAT);
    if (v)
        v->u.f = x;
    return v;
}

lm_value *lm_value_bool(bool x)
{
    lm_value *v = value_new(LM_TYPE_BOOLEAN);
    if (v)
        v->u.b = x;
    return v;
}

lm_value *lm_value_string_n(const char *s, size_t len)
{
    lm_value *v = value_new(LM_TYPE_STRING);
    if (!v)
        return NULL;
    v->u.str.data = lm_strndup(s, len);
    if (!v->u.str.data) {
        lm_free(v);
        return NULL;
    }
    v->u.str.len = len;
    return v;
}

lm_value *lm_value_string(const char *s)
{
    return lm_value_string_n(s, strlen(s));
}

static lm_value *tensor_value(lm_type type, lm_tensor *t, lm_tensor *mask)
{
    lm_value *v = value_new(type);
    if (!v) {
        lm_tensor_free(t);
        lm_tensor_free(mask);
        return NULL;
    }
    v->u.t.tensor = t;
    v->u.t.mask = mask;
    return v;
}

lm_value *lm_value_image(lm_tensor *image)
{
    return tensor_value(LM_TYPE_IMAGE, image, NULL);
}

lm_value *lm_value_mask(lm_tensor *mask)
{
    return tensor_value(LM_TYPE_MASK, mask, NULL);
}

lm_value *lm_value_latent(lm_tensor *samples, lm_tensor *noise_mask)
{
    return tensor_value(LM_TYPE_LATENT, samples, noise_mask);
}

lm_value *lm_value_object(lm_type type, void *ptr, void (*free_fn)(void *), size_t bytes)
{
    lm_value *v = value_new(type);
    if (!v) {
        if (free_fn)
            free_fn(ptr);
        return NULL;
    }
    v->u.obj.ptr = ptr;
    v->u.obj.free_fn = free_fn;
    v->u.obj.bytes = bytes;
    return v;
}

static bool is_tensor_type(lm_type t)
{
    return t == LM_TYPE_IMAGE || t == LM_TYPE_MASK || t == LM_TYPE_LATENT;
}

static bool is_scalar_type(lm_type t)
{
    return t == LM_TYPE_INT || t == LM_TYPE_FLOAT || t == LM_TYPE_BOOLEAN || t == LM_TYPE_STRING;
}

lm_value *lm_value_ref(lm_value *v)
{
    if (v)
        atomic_fetch_add(&v->refs, 1);
    return v;
}

void lm_value_unref(lm_value *v)
{
    if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    if (v->type == LM_TYPE_STRING) {
        lm_free(v->u.str.data);
    } else if (is_tensor_type(v->type)) {
        lm_tensor_free(v->u.t.tensor);
        lm_tensor_free(v->u.t.mask);
    } else if (!is_scalar_type(v->type) && v->u.obj.free_fn) {
        v->u.obj.free_fn(v->u.obj.ptr);
    }
    lm_free(v);
}

lm_type lm_value_type(const lm_value *v)
{
    return v ? v->type : LM_TYPE_NONE;
}

int64_t lm_value_as_int(const lm_value *v)
{
    switch (v->type) {
    case LM_TYPE_INT:
        return v->u.i;
    case LM_TYPE_FLOAT:
        return (int64_t)v->u.f;
    case LM_TYPE_BOOLEAN:
        return v->u.b;
    default:
        return 0;
    }
}

double lm_value_as_float(const lm_value *v)
{
    switch (v->type) {
    case LM_TYPE_INT:
        return (double)v->u.i;
    case LM_TYPE_FLOAT:
        return v->u.f;
    case LM_TYPE_BOOLEAN:
        return v->u.b;
    default:
        return 0;
    }
}

bool lm_value_as_bool(const lm_value *v)
{
    return v->type == LM_TYPE_BOOLEAN ? v->u.b : lm_value_as_int(v) != 0;
}

const char *lm_value_as_string(const lm_value *v)
{
    return v && v->type == LM_TYPE_STRING ? v->u.str.data : NULL;
}

size_t lm_value_string_len(const lm_value *v)
{
    return v && v->type == LM_TYPE_STRING ? v->u.str.len : 0;
}

const lm_tensor *lm_value_tensor(const lm_value *v)
{
    return v && is_tensor_type(v->type) ? v->u.t.tensor : NULL;
}

const lm_tensor *lm_value_noise_mask(const lm_value *v)
{
    return v && v->type == LM_TYPE_LATENT ? v->u.t.mask : NULL;
}

void *lm_value_object_ptr(const lm_value *v)
{
    if (!v || is_scalar_type(v->type) || is_tensor_type(v->type))
        return NULL;
    return v->u.obj.ptr;
}

size_t lm_value_bytes(const lm_value *v)
{
    if (!v)
        return 0;
    size_t base = sizeof(*v);
    if (v->type == LM_TYPE_STRING)
        return base + v->u.str.len + 1;
    if (is_tensor_type(v->type))
        return base + lm_tensor_nbytes(v->u.t.tensor) +
               (v->u.t.mask ? lm_tensor_nbytes(v->u.t.mask) : 0);
    if (!is_scalar_type(v->type))
        return base + v->u.obj.bytes;
    return base;
}

static lm_value *convert_error(lm_value *v, lm_type to, lm_error *err)
{
    char shown[80];
    lm_value_to_json(v, shown, sizeof(shown));
    lm_errorf(err, LM_ETYPE, "invalid_input_type", "%s value %s cannot be used as %s",
              lm_type_name(v->type), shown, lm_type_name(to));
    return NULL;
}

lm_value *lm_value_convert(lm_value *v, lm_type to, lm_error *err)
{
    if (v->type == to || to == LM_TYPE_ANY)
        return lm_value_ref(v);
    if (to == LM_TYPE_FLOAT && v->type == LM_TYPE_INT)
        return lm_value_float((double)v->u.i);
    if (to == LM_TYPE_INT && v->type == LM_TYPE_FLOAT) {
        double f = v->u.f;
        if (f == floor(f) && fabs(f) < 9.2e18)
            return lm_value_int((int64_t)f);
        return convert_error(v, to, err);
    }
    if (to == LM_TYPE_BOOLEAN && v->type == LM_TYPE_STRING) {
        if (strcmp(v->u.str.data, "true") == 0)
            return lm_value_bool(true);
        if (strcmp(v->u.str.data, "false") == 0)
            return lm_value_bool(false);
    }
    return convert_error(v, to, err);
}

/* Shortest of %.15g/%.17g that reads back exactly, so 5.45 prints as 5.45; always with a
 * '.' or exponent so that a JSON reader keeps it a float. */
static void format_double(double f, char *buf, size_t size)
{
    char tmp[40];
    snprintf(tmp, sizeof(tmp), "%.15g", f);
    if (strtod(tmp, NULL) != f)
        snprintf(tmp, sizeof(tmp), "%.17g", f);
    if (!strpbrk(tmp, ".eEn"))
        strcat(tmp, ".0");
    lm_strlcpy(buf, tmp, size);
}

void lm_value_to_json(const lm_value *v, char *buf, size_t size)
{
    if (!size)
        return;
    switch (lm_value_type(v)) {
    case LM_TYPE_INT:
        snprintf(buf, size, "%" PRId64, v->u.i);
        return;
    case LM_TYPE_FLOAT:
        if (!isfinite(v->u.f))
            snprintf(buf, size, "null");
        else
            format_double(v->u.f, buf, size);
        return;
    case LM_TYPE_BOOLEAN:
        snprintf(buf, size, "%s", v->u.b ? "true" : "false");
        return;
    case LM_TYPE_STRING: {
        lm_str s;
        lm_str_init(&s);
        lm_str_append_json(&s, v->u.str.data);
        lm_strlcpy(buf, s.oom ? "\"\"" : lm_str_cstr(&s), size);
        lm_str_fini(&s);
        return;
    }
    default:
        snprintf(buf, size, "null");
    }
}
