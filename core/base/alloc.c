/* core/base/alloc.c — allocation wrappers; see alloc.h. */
#include "core/base/alloc.h"

#include <stdlib.h>
#include <string.h>

static long fail_after = -1;
static long failures;

static int injected_failure(void)
{
    if (fail_after < 0)
        return 0;
    if (fail_after == 0) {
        failures++;
        return 1;
    }
    fail_after--;
    return 0;
}

void *lm_malloc(size_t size)
{
    if (injected_failure())
        return NULL;
    return malloc(size ? size : 1);
}

void *lm_calloc(size_t count, size_t size)
{
    if (injected_failure())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *lm_realloc(void *ptr, size_t size)
{
    if (injected_failure())
        return NULL;
    return realloc(ptr, size ? size : 1);
}

void lm_free(void *ptr)
{
    free(ptr);
}

char *lm_strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *copy = lm_malloc(n + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

char *lm_strdup(const char *s)
{
    return s ? lm_strndup(s, strlen(s)) : NULL;
}

void lm_alloc_fail_after(long n)
{
    fail_after = n;
    failures = 0;
}

long lm_alloc_failures(void)
{
    return failures;
}
