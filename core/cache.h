/* core/cache.h — the executor's output cache: node outputs by cache key, bounded by bytes.
 *
 * An entry holds one node's outputs (references of its own) and its UI output, keyed by the
 * node's 64-bit cache key (exec.c hashes the node type, its literal inputs, the keys of its
 * upstream nodes and its changed() fingerprint), so identical subgraphs share one entry
 * across runs and batch items. An entry's size is the sum of lm_value_bytes of its outputs.
 *
 * Eviction is least-recently-used with one exception: entries used or stored during the
 * current run (since lm_cache_begin_run) are not evicted while it lasts, because the run may
 * still hand them out; lm_cache_end_run() then trims to the budget in plain LRU order. So
 * between runs the cache holds at most its budget; during a run it may hold more, by what
 * that run itself uses. An entry larger than the whole budget is never stored.
 *
 * Ownership: put takes new references of the values it is given; get hands out new
 * references. Thread safety: every function takes the cache's lock, so lm_cache_clear() and
 * lm_cache_bytes() may be called from another thread while a run uses the cache. */
#ifndef LM_CORE_CACHE_H
#define LM_CORE_CACHE_H

#include "core/base/error.h"
#include "core/value.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lm_cache lm_cache;

lm_status lm_cache_new(lm_cache **out, size_t budget, lm_error *err);
void lm_cache_free(lm_cache *cache); /* NULL is a no-op */

/* Brackets one run: entries touched in between are protected from eviction. */
void lm_cache_begin_run(lm_cache *cache);
void lm_cache_end_run(lm_cache *cache);

/* On a hit with `n` outputs, stores n new references into out, a copy of the UI output (or
 * NULL) into *ui_json when ui_json is not NULL (free with lm_free), marks the entry used and
 * returns true. A miss (or an entry with another output count) returns false. */
bool lm_cache_get(lm_cache *cache, uint64_t key, lm_value **out, size_t n, char **ui_json);
/* Stores a node's outputs (new references are taken) and UI output (copied; may be NULL).
 * A key already present is only marked used. Fails only on out-of-memory. */
lm_status lm_cache_put(lm_cache *cache, uint64_t key, lm_value *const *values, size_t n,
                       const char *ui_json, lm_error *err);
bool lm_cache_contains(lm_cache *cache, uint64_t key);

/* Removes every entry of an earlier run (between runs: every entry) holding a value for
 * which pred returns true; returns how many went. For memory pressure elsewhere: e.g. the
 * model manager asks to let go of loaded models that only the cache still holds. */
typedef bool (*lm_cache_pred)(const lm_value *v, void *user);
size_t lm_cache_drop_if(lm_cache *cache, lm_cache_pred pred, void *user);

void lm_cache_clear(lm_cache *cache);
size_t lm_cache_bytes(lm_cache *cache);
size_t lm_cache_count(lm_cache *cache);
size_t lm_cache_budget(const lm_cache *cache);

#endif
