/* core/base/thread.c — fork-join pool.
 * Workers sleep on a condition variable; a job is published with a generation counter and
 * indices are handed out with an atomic counter so uneven work balances itself. */
#include "core/base/thread.h"

#include "core/base/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct lm_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    unsigned long generation;
    int busy; /* workers still inside the current job */
    int quit;
    lm_pool_fn fn;
    void *user;
    size_t n;
    atomic_size_t next;
};

typedef struct {
    lm_pool *pool;
    int tid;
} worker_arg;

static void drain(lm_pool *pool, int tid)
{
    for (;;) {
        size_t i = atomic_fetch_add(&pool->next, 1);
        if (i >= pool->n)
            return;
        pool->fn(pool->user, i, tid);
    }
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    lm_pool *pool = wa->pool;
    int tid = wa->tid;
    free(wa);
    unsigned long seen = 0;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->quit && pool->generation == seen)
            pthread_cond_wait(&pool->wake, &pool->mu);
        if (pool->quit)
            break;
        seen = pool->generation;
        pthread_mutex_unlock(&pool->mu);
        drain(pool, tid);
        pthread_mutex_lock(&pool->mu);
        if (--pool->busy == 0)
            pthread_cond_signal(&pool->done);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

int lm_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

lm_status lm_pool_new(lm_pool **out, int threads, lm_error *err)
{
    *out = NULL;
    if (threads <= 0)
        threads = lm_cpu_count();
    lm_pool *pool = lm_calloc(1, sizeof(*pool));
    if (!pool)
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate a thread pool");
    pool->threads = threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->workers = lm_calloc((size_t)threads, sizeof(pthread_t));
    if (!pool->workers) {
        lm_pool_free(pool);
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "cannot allocate a thread pool");
    }
    for (int t = 1; t < threads; t++) {
        worker_arg *wa = malloc(sizeof(*wa));
        if (wa) {
            wa->pool = pool;
            wa->tid = t;
        }
        if (!wa || pthread_create(&pool->workers[t], NULL, worker_main, wa) != 0) {
            free(wa);
            pool->threads = t; /* the ones started so far are joined by free */
            lm_pool_free(pool);
            return lm_errorf(err, LM_EIO, "thread_create", "cannot start worker thread %d", t);
        }
    }
    *out = pool;
    return LM_OK;
}

void lm_pool_free(lm_pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->quit = 1;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    for (int t = 1; t < pool->threads && pool->workers; t++)
        pthread_join(pool->workers[t], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    lm_free(pool->workers);
    lm_free(pool);
}

int lm_pool_threads(const lm_pool *pool)
{
    return pool->threads;
}

void lm_pool_run(lm_pool *pool, size_t n, lm_pool_fn fn, void *user)
{
    if (n == 0)
        return;
    if (pool->threads == 1 || n == 1) {
        for (size_t i = 0; i < n; i++)
            fn(user, i, 0);
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->user = user;
    pool->n = n;
    atomic_store(&pool->next, 0);
    pool->busy = pool->threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    drain(pool, 0);
    pthread_mutex_lock(&pool->mu);
    while (pool->busy > 0)
        pthread_cond_wait(&pool->done, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

static lm_pool *default_pool;
static int default_threads;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

/* When even a one-thread pool cannot be allocated, work runs inline on the caller:
 * lm_pool_run never touches the synchronisation fields of a one-thread pool. */
static lm_pool inline_pool = { .threads = 1 };

static void default_init(void)
{
    int threads = default_threads;
    const char *env = getenv("LOOM_THREADS");
    if (threads <= 0 && env)
        threads = atoi(env);
    if (lm_pool_new(&default_pool, threads, NULL) != LM_OK &&
        lm_pool_new(&default_pool, 1, NULL) != LM_OK)
        default_pool = &inline_pool;
}

lm_pool *lm_pool_default(void)
{
    pthread_once(&default_once, default_init);
    return default_pool;
}

void lm_pool_default_set_threads(int threads)
{
    default_threads = threads;
}

double lm_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
