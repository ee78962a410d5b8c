/* core/base/arena.c — bump arena with marks; debug mode keeps one malloc per block.
 * In debug mode the arena still accounts bytes as if it were contiguous, so marks, used and
 * peak mean the same in both modes; the individual blocks are kept in a list and freed on
 * reset in LIFO order. */
#include "core/base/arena.h"

#include "core/base/alloc.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct debug_block {
    struct debug_block *prev;
    size_t mark; /* arena offset before this block */
} debug_block;

struct lm_arena {
    unsigned char *base;
    size_t capacity, used, peak;
    int debug;
    debug_block *blocks;
};

lm_status lm_arena_new(lm_arena **out, size_t capacity, lm_error *err)
{
    *out = NULL;
    lm_arena *arena = lm_calloc(1, sizeof(*arena));
    if (!arena)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate an arena");
    const char *dbg = getenv("LM_ARENA_DEBUG");
    arena->debug = dbg && dbg[0] == '1';
    arena->capacity = capacity;
    if (!arena->debug) {
        arena->base = lm_malloc(capacity);
        if (!arena->base) {
            lm_free(arena);
            return lm_errorf(err, LM_ENOMEM, "out_of_memory",
                             "cannot allocate an arena of %zu bytes", capacity);
        }
    }
    *out = arena;
    return LM_OK;
}

void lm_arena_free(lm_arena *arena)
{
    if (!arena)
        return;
    lm_arena_reset_to(arena, 0);
    lm_free(arena->base);
    lm_free(arena);
}

static size_t align_up(size_t v, size_t align)
{
    return (v + align - 1) & ~(align - 1);
}

void *lm_arena_alloc(lm_arena *arena, size_t size, size_t align)
{
    if (align < 16)
        align = 16;
    /* Align the address, not the offset, so any alignment works whatever the base. */
    uintptr_t base = (uintptr_t)arena->base;
    size_t start = (size_t)(align_up(base + arena->used, align) - base);
    if (start < arena->used || start > arena->capacity || size > arena->capacity - start)
        return NULL;
    void *p;
    if (arena->debug) {
        debug_block *b = malloc(sizeof(debug_block) + size + align);
        if (!b)
            return NULL;
        b->prev = arena->blocks;
        b->mark = arena->used;
        arena->blocks = b;
        uintptr_t raw = (uintptr_t)(b + 1);
        p = (void *)align_up(raw, align);
    } else {
        p = arena->base + start;
    }
    arena->used = start + size;
    if (arena->used > arena->peak)
        arena->peak = arena->used;
    return p;
}

size_t lm_arena_mark(const lm_arena *arena)
{
    return arena->used;
}

void lm_arena_reset_to(lm_arena *arena, size_t mark)
{
    while (arena->blocks && arena->blocks->mark >= mark) {
        debug_block *b = arena->blocks;
        arena->blocks = b->prev;
        free(b);
    }
    if (mark < arena->used)
        arena->used = mark;
}

size_t lm_arena_used(const lm_arena *arena)
{
    return arena->used;
}

size_t lm_arena_peak(const lm_arena *arena)
{
    return arena->peak;
}

size_t lm_arena_capacity(const lm_arena *arena)
{
    return arena->capacity;
}
