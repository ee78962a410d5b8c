/* core/io/safetensors.h — read-only, memory-mapped safetensors checkpoints.
 *
 * A safetensors file is `u64 little-endian header length | JSON header | raw data`. The
 * header maps tensor names to {dtype, shape, data_offsets} plus an optional "__metadata__"
 * map of strings. lm_safetensors_open() maps the file read-only and checks everything
 * before returning: header size (at most LM_SAFETENSORS_MAX_HEADER), JSON syntax and nesting,
 * dtypes, shapes (no overflow, bytes = numel * dtype size), offsets (integers, inside the
 * data section, no overlaps, no holes, no trailing bytes), unique names and a metadata map
 * of strings. Every failure is an lm_error naming the file (and the tensor), never a crash.
 *
 * A `*.json` path is read as a sharded checkpoint index (diffusers/transformers
 * `model.safetensors.index.json`: {"metadata": {...}, "weight_map": {name: shard}}); the
 * shards, named relative to the index's directory, are opened and presented as one set.
 *
 * Ownership: lm_safetensors_open() returns a set the caller releases with
 * lm_safetensors_close(). Entries, names, metadata strings and data pointers are borrowed
 * and live until the close. Tensors from lm_safetensors_tensor() hold their own reference
 * to the mapping, so they stay valid after the close; the mapping goes when the set is
 * closed and the last such tensor is freed. The data is mapped PROT_READ: writing through
 * a data pointer or a wrapped tensor is a bug (it faults). A file changed on disk while
 * mapped gives undefined contents (truncation may even raise SIGBUS): treat checkpoints as
 * immutable.
 *
 * Thread safety: after open, every function but close is read-only and may run on many
 * threads at once; the reference count is atomic. */
#ifndef LM_CORE_IO_SAFETENSORS_H
#define LM_CORE_IO_SAFETENSORS_H

#include "core/base/error.h"
#include "core/tensor/tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_SAFETENSORS_MAX_HEADER 100000000u /* bytes of JSON header, as the reference lib */
#define LM_SAFETENSORS_MAX_DIMS   8
#define LM_SAFETENSORS_MAX_DEPTH  32 /* JSON nesting; real headers nest 3 levels */

/* The dtypes of the safetensors format, named as in the file. */
typedef enum {
    LM_SAFETENSORS_F64,
    LM_SAFETENSORS_F32,
    LM_SAFETENSORS_F16,
    LM_SAFETENSORS_BF16,
    LM_SAFETENSORS_F8_E4M3,
    LM_SAFETENSORS_F8_E5M2,
    LM_SAFETENSORS_I64,
    LM_SAFETENSORS_I32,
    LM_SAFETENSORS_I16,
    LM_SAFETENSORS_I8,
    LM_SAFETENSORS_U64,
    LM_SAFETENSORS_U32,
    LM_SAFETENSORS_U16,
    LM_SAFETENSORS_U8,
    LM_SAFETENSORS_BOOL,
    LM_SAFETENSORS_DTYPE_COUNT
} lm_safetensors_dtype;

const char *lm_safetensors_dtype_name(lm_safetensors_dtype dtype); /* "F32"; "?" if bad */
size_t lm_safetensors_dtype_size(lm_safetensors_dtype dtype);      /* bytes; 0 if bad */
/* The matching lm_dtype; false when Loom's tensors have none (F64, I16, BOOL…). */
bool lm_safetensors_dtype_to_lm(lm_safetensors_dtype dtype, lm_dtype *out);

/* One tensor of a set. Everything is borrowed from the set. */
typedef struct {
    const char *name;
    lm_safetensors_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[LM_SAFETENSORS_MAX_DIMS];
    const void *data; /* read-only; aligned as the file aligns it */
    size_t bytes;     /* numel * dtype size */
    uint64_t offset;  /* data_offsets[0]: from the start of the file's data section */
    const char *file; /* the file holding it (a shard's path for an index) */
} lm_safetensors_entry;

typedef struct lm_safetensors lm_safetensors;

/* Opens a .safetensors file, or a sharded index when the path ends in ".json". */
lm_status lm_safetensors_open(lm_safetensors **out, const char *path, lm_error *err);
/* Parses a safetensors image already in memory (fuzzing, embedded data). `data` is borrowed:
 * it must outlive the set and every tensor made from it. `name` is used in messages. */
lm_status lm_safetensors_open_memory(lm_safetensors **out, const void *data, size_t size,
                                     const char *name, lm_error *err);
/* Releases the caller's reference; NULL is a no-op. */
void lm_safetensors_close(lm_safetensors *st);

/* The path given to open (or the name given to open_memory). */
const char *lm_safetensors_path(const lm_safetensors *st);
/* Total bytes of the files (all shards), and bytes of tensor data. */
uint64_t lm_safetensors_file_bytes(const lm_safetensors *st);

/* Entries are sorted by name (strcmp order); i in [0, count). */
size_t lm_safetensors_count(const lm_safetensors *st);
const lm_safetensors_entry *lm_safetensors_at(const lm_safetensors *st, size_t i);
/* Binary search by exact name; NULL when absent. */
const lm_safetensors_entry *lm_safetensors_find(const lm_safetensors *st, const char *name);
/* Entries whose name starts with prefix are the contiguous range [*first, *first + n);
 * returns n (0 when none; *first is then where they would be). */
size_t lm_safetensors_find_prefix(const lm_safetensors *st, const char *prefix, size_t *first);

/* Metadata ("__metadata__"; for an index its "metadata" with non-strings rendered as
 * JSON text, then the shards' keys not already present). Sorted by key. */
size_t lm_safetensors_metadata_count(const lm_safetensors *st);
void lm_safetensors_metadata_at(const lm_safetensors *st, size_t i, const char **key,
                                const char **value);
const char *lm_safetensors_metadata(const lm_safetensors *st, const char *key); /* or NULL */

/* A CPU tensor over the mapped bytes, no copy (a copy only when the file leaves the data
 * misaligned for its dtype). Fails with LM_ENOTFOUND for an unknown name, LM_EUNSUPPORTED
 * for a dtype lm_dtype lacks or more than LM_MAX_DIMS dimensions. Free with lm_tensor_free;
 * the tensor keeps the mapping alive. */
lm_status lm_safetensors_tensor(lm_tensor **out, lm_safetensors *st, const char *name,
                                lm_error *err);
lm_status lm_safetensors_entry_tensor(lm_tensor **out, lm_safetensors *st,
                                      const lm_safetensors_entry *entry, lm_error *err);

#endif
