/* core/io/safetensors_impl.h — internals shared by safetensors.c and safetensors_index.c.
 * Not for use outside core/io/safetensors*.c.
 *
 * A set owns: its path, the file mapping (or nothing for open_memory and indexes), the
 * sorted entry array, the sorted metadata array, one string pool (names and metadata of a
 * single file; metadata of an index) and, for an index, one reference to each shard. An
 * index's entries and shard metadata borrow their strings from the shards. */
#ifndef LM_CORE_IO_SAFETENSORS_IMPL_H
#define LM_CORE_IO_SAFETENSORS_IMPL_H

#include "core/io/safetensors.h"

#include <stdatomic.h>

typedef struct {
    const char *key, *value;
    size_t rank; /* order of appearance: the first of equal keys wins when merging */
} lm_safetensors__meta;

struct lm_safetensors {
    atomic_int refs;
    char *path;
    void *map; /* munmap'd when the set dies, if mapped */
    size_t map_size;
    bool mapped;
    uint64_t file_bytes;
    lm_safetensors_entry *entries; /* sorted by name */
    size_t count;
    lm_safetensors__meta *meta; /* sorted by key */
    size_t n_meta;
    char *pool; /* strings the set owns */
    size_t pool_used, pool_cap;
    lm_safetensors **shards;
    size_t n_shards;
};

/* A new empty set with one reference; NULL when out of memory. */
lm_safetensors *lm_safetensors__new(const char *path);
/* Copies s into the pool (which must have room: callers size it first). */
const char *lm_safetensors__pool_add(lm_safetensors *st, const char *s);
bool lm_safetensors__pool_reserve(lm_safetensors *st, size_t bytes);

/* Sorts entries by name and fails on a duplicate name. */
lm_status lm_safetensors__sort_entries(lm_safetensors *st, lm_error *err);
/* Sorts metadata by key; with `dedupe`, keeps the first of equal keys (stable), otherwise
 * fails on a duplicate key. */
lm_status lm_safetensors__sort_meta(lm_safetensors *st, bool dedupe, lm_error *err);

/* JSON text [text, text+len) nests at most LM_SAFETENSORS_MAX_DEPTH levels. */
lm_status lm_safetensors__check_depth(const char *text, size_t len, lm_error *err);
/* A name made printable for a one-line message: control bytes become '?', long names are
 * cut with "...". */
void lm_safetensors__show(char *buf, size_t size, const char *name);

lm_status lm_safetensors__open_index(lm_safetensors **out, const char *path, lm_error *err);

#endif
