/* core/cache.c — the output cache: a chained hash table of entries by key, threaded on one
 * doubly linked list in recency order (head = most recently used).
 *
 * "Used by the current run" is an epoch stamp: lm_cache_begin_run() starts a new epoch and
 * every get or put stamps the entry, so eviction during a run skips entries carrying the
 * current epoch without a second list. Keys are 64-bit content hashes; an entry also records
 * its output count, and a lookup with another count misses rather than mixing nodes. */
#include "core/cache.h"

#include "core/base/alloc.h"

#include <pthread.h>
#include <string.h>

typedef struct entry entry;
struct entry {
    uint64_t key;
    entry *chain;         /* next in the bucket */
    entry *newer, *older; /* recency list */
    uint64_t epoch;       /* run that last used it */
    size_t n, bytes;
    char *ui_json;
    lm_value *values[];
};

struct lm_cache {
    pthread_mutex_t mu;
    entry **buckets;
    size_t n_buckets; /* power of two */
    size_t count, bytes, budget;
    entry *newest, *oldest;
    uint64_t epoch;
    bool in_run;
};

lm_status lm_cache_new(lm_cache **out, size_t budget, lm_error *err)
{
    *out = NULL;
    lm_cache *c = lm_calloc(1, sizeof(*c));
    entry **buckets = lm_calloc(64, sizeof(*buckets));
    if (!c || !buckets) {
        lm_free(c);
        lm_free(buckets);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory creating the cache");
    }
    pthread_mutex_init(&c->mu, NULL);
    c->buckets = buckets;
    c->n_buckets = 64;
    c->budget = budget;
    *out = c;
    return LM_OK;
}

static void entry_free(entry *e)
{
    for (size_t i = 0; i < e->n; i++)
        lm_value_unref(e->values[i]);
    lm_free(e->ui_json);
    lm_free(e);
}

static entry **slot_of(lm_cache *c, uint64_t key)
{
    entry **p = &c->buckets[key & (c->n_buckets - 1)];
    while (*p && (*p)->key != key)
        p = &(*p)->chain;
    return p;
}

static void list_unlink(lm_cache *c, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void list_push_newest(lm_cache *c, entry *e)
{
    e->older = c->newest;
    e->newer = NULL;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
}

static void touch(lm_cache *c, entry *e)
{
    list_unlink(c, e);
    list_push_newest(c, e);
    e->epoch = c->epoch;
}

static void remove_entry(lm_cache *c, entry *e)
{
    entry **p = slot_of(c, e->key);
    *p = e->chain;
    list_unlink(c, e);
    c->count--;
    c->bytes -= e->bytes;
    entry_free(e);
}

/* Evicts from the old end until the cache fits; entries of the running epoch are kept. */
static void trim(lm_cache *c, size_t budget)
{
    entry *e = c->oldest;
    while (e && c->bytes > budget) {
        entry *newer = e->newer;
        if (!(c->in_run && e->epoch == c->epoch))
            remove_entry(c, e);
        e = newer;
    }
}

size_t lm_cache_drop_if(lm_cache *cache, lm_cache_pred pred, void *user)
{
    size_t dropped = 0;
    pthread_mutex_lock(&cache->mu);
    for (entry *e = cache->oldest; e;) {
        entry *newer = e->newer;
        bool match = false;
        for (size_t i = 0; i < e->n && !match; i++)
            match = e->values[i] && pred(e->values[i], user);
        if (match && !(cache->in_run && e->epoch == cache->epoch)) {
            remove_entry(cache, e);
            dropped++;
        }
        e = newer;
    }
    pthread_mutex_unlock(&cache->mu);
    return dropped;
}

void lm_cache_free(lm_cache *cache)
{
    if (!cache)
        return;
    lm_cache_clear(cache);
    pthread_mutex_destroy(&cache->mu);
    lm_free(cache->buckets);
    lm_free(cache);
}

void lm_cache_begin_run(lm_cache *cache)
{
    pthread_mutex_lock(&cache->mu);
    cache->epoch++;
    cache->in_run = true;
    pthread_mutex_unlock(&cache->mu);
}

void lm_cache_end_run(lm_cache *cache)
{
    pthread_mutex_lock(&cache->mu);
    cache->in_run = false;
    trim(cache, cache->budget);
    pthread_mutex_unlock(&cache->mu);
}

bool lm_cache_get(lm_cache *cache, uint64_t key, lm_value **out, size_t n, char **ui_json)
{
    pthread_mutex_lock(&cache->mu);
    entry *e = *slot_of(cache, key);
    bool hit = e && e->n == n;
    char *ui = NULL;
    if (hit && ui_json && e->ui_json && !(ui = lm_strdup(e->ui_json)))
        hit = false; /* out of memory: run the node instead */
    if (hit) {
        for (size_t i = 0; i < n; i++)
            out[i] = lm_value_ref(e->values[i]);
        touch(cache, e);
        if (ui_json)
            *ui_json = ui;
    }
    pthread_mutex_unlock(&cache->mu);
    return hit;
}

bool lm_cache_contains(lm_cache *cache, uint64_t key)
{
    pthread_mutex_lock(&cache->mu);
    bool found = *slot_of(cache, key) != NULL;
    pthread_mutex_unlock(&cache->mu);
    return found;
}

/* Doubles the bucket array when the table gets dense; a failed grow only costs speed. */
static void maybe_grow(lm_cache *c)
{
    if (c->count < c->n_buckets)
        return;
    size_t nb = c->n_buckets * 2;
    entry **buckets = lm_calloc(nb, sizeof(*buckets));
    if (!buckets)
        return;
    for (entry *e = c->newest; e; e = e->older) {
        entry **b = &buckets[e->key & (nb - 1)];
        e->chain = *b;
        *b = e;
    }
    lm_free(c->buckets);
    c->buckets = buckets;
    c->n_buckets = nb;
}

static entry *entry_new(uint64_t key, lm_value *const *values, size_t n, const char *ui_json)
{
    entry *e = lm_calloc(1, sizeof(*e) + n * sizeof(e->values[0]));
    if (!e)
        return NULL;
    if (ui_json && !(e->ui_json = lm_strdup(ui_json))) {
        lm_free(e);
        return NULL;
    }
    e->key = key;
    e->n = n;
    for (size_t i = 0; i < n; i++) {
        e->values[i] = lm_value_ref(values[i]);
        e->bytes += lm_value_bytes(values[i]);
    }
    return e;
}

lm_status lm_cache_put(lm_cache *cache, uint64_t key, lm_value *const *values, size_t n,
                       const char *ui_json, lm_error *err)
{
    lm_status st = LM_OK;
    pthread_mutex_lock(&cache->mu);
    entry **slot = slot_of(cache, key);
    if (*slot) {
        touch(cache, *slot);
        goto out_unlock;
    }
    entry *e = entry_new(key, values, n, ui_json);
    if (!e) {
        st = lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory storing a cache entry");
        goto out_unlock;
    }
    if (e->bytes > cache->budget) {
        entry_free(e);
        goto out_unlock;
    }
    trim(cache, cache->budget - e->bytes);
    maybe_grow(cache);
    slot = slot_of(cache, key);
    *slot = e;
    list_push_newest(cache, e);
    e->epoch = cache->epoch;
    cache->count++;
    cache->bytes += e->bytes;
out_unlock:
    pthread_mutex_unlock(&cache->mu);
    return st;
}

void lm_cache_clear(lm_cache *cache)
{
    pthread_mutex_lock(&cache->mu);
    while (cache->oldest)
        remove_entry(cache, cache->oldest);
    pthread_mutex_unlock(&cache->mu);
}

size_t lm_cache_bytes(lm_cache *cache)
{
    pthread_mutex_lock(&cache->mu);
    size_t bytes = cache->bytes;
    pthread_mutex_unlock(&cache->mu);
    return bytes;
}

size_t lm_cache_count(lm_cache *cache)
{
    pthread_mutex_lock(&cache->mu);
    size_t count = cache->count;
    pthread_mutex_unlock(&cache->mu);
    return count;
}

size_t lm_cache_budget(const lm_cache *cache)
{
    return cache->budget;
}
