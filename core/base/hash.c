/* core/base/hash.c — XXH3 wrappers. The state lives inside lm_hasher so hashing never
 * allocates; a static assertion keeps the storage large enough. */
#include "core/base/hash.h"

#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* for sizeof(XXH3_state_t) */
#include <xxhash.h>

_Static_assert(_Alignof(XXH3_state_t) <= 64, "XXH3 state alignment above 64");
_Static_assert(sizeof(XXH3_state_t) + 63 <= sizeof(((lm_hasher *)0)->state),
               "lm_hasher too small for XXH3_state_t");

static XXH3_state_t *state_of(lm_hasher *h)
{
    /* XXH3_state_t wants 64-byte alignment; align inside the buffer. */
    uintptr_t p = ((uintptr_t)h->state + 63) & ~(uintptr_t)63;
    return (XXH3_state_t *)p;
}

uint64_t lm_hash_bytes(const void *data, size_t len, uint64_t seed)
{
    return XXH3_64bits_withSeed(data, len, seed);
}

void lm_hasher_init(lm_hasher *h, uint64_t seed)
{
    XXH3_64bits_reset_withSeed(state_of(h), seed);
}

void lm_hasher_bytes(lm_hasher *h, const void *data, size_t len)
{
    XXH3_64bits_update(state_of(h), data, len);
}

void lm_hasher_u64(lm_hasher *h, uint64_t v)
{
    unsigned char b[9] = { 'u' };
    memcpy(b + 1, &v, 8);
    lm_hasher_bytes(h, b, sizeof(b));
}

void lm_hasher_f64(lm_hasher *h, double v)
{
    if (v == 0)
        v = 0; /* fold -0.0 */
    unsigned char b[9] = { 'f' };
    memcpy(b + 1, &v, 8);
    lm_hasher_bytes(h, b, sizeof(b));
}

void lm_hasher_str(lm_hasher *h, const char *s)
{
    uint64_t n = s ? strlen(s) : UINT64_MAX;
    unsigned char b[9] = { 's' };
    memcpy(b + 1, &n, 8);
    lm_hasher_bytes(h, b, sizeof(b));
    if (s)
        lm_hasher_bytes(h, s, (size_t)n);
}

uint64_t lm_hasher_digest(const lm_hasher *h)
{
    return XXH3_64bits_digest(state_of((lm_hasher *)h));
}
