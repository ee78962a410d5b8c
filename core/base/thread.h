/* core/base/thread.h — mutex/condition wrappers and a fork-join thread pool.
 *
 * lm_pool runs "parallel for" jobs: lm_pool_run(pool, n, fn, user) calls fn(user, i, tid)
 * for every i in [0, n) spread over the pool's threads (tid in [0, threads)), and returns
 * when all calls are done. The calling thread takes part, so a pool of 1 runs inline.
 * One job at a time per pool: lm_pool_run is not reentrant and not for concurrent callers
 * (the executor runs one node at a time; each model forward owns the pool meanwhile).
 * lm_pool_default() is a process-wide pool sized from LOOM_THREADS or the online cores. */
#ifndef LM_CORE_BASE_THREAD_H
#define LM_CORE_BASE_THREAD_H

#include "core/base/error.h"

#include <pthread.h>
#include <stddef.h>

typedef struct lm_pool lm_pool;
typedef void (*lm_pool_fn)(void *user, size_t index, int tid);

lm_status lm_pool_new(lm_pool **out, int threads, lm_error *err); /* threads <= 0: cores */
void lm_pool_free(lm_pool *pool);
int lm_pool_threads(const lm_pool *pool);
void lm_pool_run(lm_pool *pool, size_t n, lm_pool_fn fn, void *user);

/* Process-wide pool, created on first use (falls back to 1 thread if creation fails). */
lm_pool *lm_pool_default(void);
/* Sets the size of the default pool; only before its first use. */
void lm_pool_default_set_threads(int threads);
int lm_cpu_count(void);

/* Monotonic clock in seconds. */
double lm_time_now(void);

#endif
