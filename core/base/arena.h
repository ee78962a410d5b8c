/* core/base/arena.h — bump allocator for one forward pass.
 * The arena owns every block; blocks die at lm_arena_reset_to() or lm_arena_free().
 * Never store arena memory in an lm_value. One arena per thread.
 * With LM_ARENA_DEBUG=1 in the environment every block is its own malloc, so ASan sees
 * overruns; the peak is tracked either way. */
#ifndef LM_CORE_BASE_ARENA_H
#define LM_CORE_BASE_ARENA_H

#include "core/base/error.h"

#include <stddef.h>

typedef struct lm_arena lm_arena;

lm_status lm_arena_new(lm_arena **out, size_t capacity, lm_error *err);
void lm_arena_free(lm_arena *arena);                              /* NULL is a no-op */
void *lm_arena_alloc(lm_arena *arena, size_t size, size_t align); /* NULL when full */
size_t lm_arena_mark(const lm_arena *arena);
void lm_arena_reset_to(lm_arena *arena, size_t mark);
size_t lm_arena_used(const lm_arena *arena);
size_t lm_arena_peak(const lm_arena *arena);
size_t lm_arena_capacity(const lm_arena *arena);

#endif
