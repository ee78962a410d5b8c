/* core/base/error.h — status codes, the one error record, and diagnostic lists.
 *
 * A function that can fail returns lm_status (LM_OK = 0) and fills an lm_error. The lowest
 * layer that knows sets the message with lm_errorf(); higher layers add the place with
 * lm_error_at_file()/lm_error_at_node() and pass the status up unchanged, never overwriting
 * the message. lm_error uses fixed buffers, so reporting out-of-memory never allocates.
 * Every function here accepts err == NULL and then does nothing.
 *
 * lm_diag collects many errors (validation reports every problem at once). It owns its
 * array; lm_diag_fini() frees it. */
#ifndef LM_CORE_BASE_ERROR_H
#define LM_CORE_BASE_ERROR_H

#include "core/base/lm.h"

#include <stddef.h>

typedef enum {
    LM_OK = 0,
    LM_EINVAL,       /* bad argument or bad input */
    LM_ENOTFOUND,    /* a name, file or key that does not exist */
    LM_ETYPE,        /* a value of the wrong type */
    LM_ERANGE,       /* a value outside its allowed range */
    LM_EFORMAT,      /* malformed file or text */
    LM_EIO,          /* the operating system refused */
    LM_ENOMEM,       /* out of memory */
    LM_ELIMIT,       /* a configured limit (size, time, depth) was hit */
    LM_ECANCELLED,   /* the user interrupted */
    LM_EUNSUPPORTED, /* valid, but not built or not implemented here */
    LM_EINTERNAL     /* a bug in Loom */
} lm_status;

typedef struct {
    lm_status code;
    char kind[40]; /* stable key, ComfyUI's where one exists: "value_smaller_than_min" */
    char file[256];
    int line, col; /* 1-based; 0 = unknown */
    char node_id[64], node_type[64], input[64];
    char msg[256];  /* what is wrong: the value seen and what was expected */
    char hint[256]; /* what to do */
} lm_error;

/* Clears every field; code becomes LM_OK. */
void lm_error_clear(lm_error *err);

/* Sets code, kind and message (printf-style); clears place and hint. Returns code so that
 * "return lm_errorf(err, LM_EINVAL, "bad_value", ...);" works. kind may be NULL. */
lm_status lm_errorf(lm_error *err, lm_status code, const char *kind, const char *fmt, ...)
    LM_PRINTF(4, 5);

/* Sets the hint ("what to do"); keeps everything else. */
void lm_error_hint(lm_error *err, const char *fmt, ...) LM_PRINTF(2, 3);

/* Adds a place where none is set yet: the lowest layer's place wins. */
void lm_error_at_file(lm_error *err, const char *file, int line, int col);
void lm_error_at_node(lm_error *err, const char *node_id, const char *node_type, const char *input);

/* Formats the one-line rendering "<place>: <msg>; <hint>." into buf (always terminated). */
void lm_error_format(const lm_error *err, char *buf, size_t size);

/* Name of a status ("LM_EINVAL" → "invalid argument"). */
const char *lm_status_str(lm_status code);

/* A list of errors; zero-initialised is empty and valid. */
typedef struct {
    lm_error *items;
    size_t count, cap;
} lm_diag;

void lm_diag_init(lm_diag *diag);
void lm_diag_fini(lm_diag *diag);
/* Appends a copy; when memory runs out the error is dropped and `dropped` is counted. */
void lm_diag_push(lm_diag *diag, const lm_error *err);
/* Convenience: builds an error and appends it. Returns the new entry or NULL. */
lm_error *lm_diag_addf(lm_diag *diag, lm_status code, const char *kind, const char *fmt, ...)
    LM_PRINTF(4, 5);

#endif
