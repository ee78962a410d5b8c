/* core/base/hash.h — 64-bit content hashes (xxHash XXH3) for cache keys.
 * lm_hasher is a streaming state on the caller's stack; feed it bytes and typed fields,
 * read the digest. Typed feeders add a tag so "1" and 1 never collide. */
#ifndef LM_CORE_BASE_HASH_H
#define LM_CORE_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t state[96]; /* room for XXH3_state_t (576 bytes, 64-aligned) */
} lm_hasher;

uint64_t lm_hash_bytes(const void *data, size_t len, uint64_t seed);

void lm_hasher_init(lm_hasher *h, uint64_t seed);
void lm_hasher_bytes(lm_hasher *h, const void *data, size_t len);
void lm_hasher_u64(lm_hasher *h, uint64_t v);
void lm_hasher_f64(lm_hasher *h, double v);      /* -0.0 and 0.0 hash alike */
void lm_hasher_str(lm_hasher *h, const char *s); /* length-prefixed; NULL allowed */
uint64_t lm_hasher_digest(const lm_hasher *h);

#endif
