/* core/base/alloc.h — malloc wrappers with fault injection for tests.
 * lm_malloc/lm_calloc/lm_realloc return NULL on failure like their libc namesakes;
 * lm_free(NULL) is a no-op. lm_alloc_fail_after(n) makes the (n+1)-th call from now fail
 * (n < 0 disables), so tests can walk every allocation failure of a code path.
 * Fault injection is process-wide and not thread-safe: tests only. */
#ifndef LM_CORE_BASE_ALLOC_H
#define LM_CORE_BASE_ALLOC_H

#include <stddef.h>

void *lm_malloc(size_t size);
void *lm_calloc(size_t count, size_t size);
void *lm_realloc(void *ptr, size_t size);
void lm_free(void *ptr);
char *lm_strdup(const char *s); /* NULL in, NULL out */
char *lm_strndup(const char *s, size_t n);

void lm_alloc_fail_after(long n);
/* How many allocations were refused by injection since the last lm_alloc_fail_after(). */
long lm_alloc_failures(void);

#endif
