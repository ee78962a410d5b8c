/* core/base/lm.h — small macros every file may use.
 * LM_ASSERT is for programmer errors only (never for anything derived from input) and
 * stays on in release builds. */
#ifndef LM_CORE_BASE_LM_H
#define LM_CORE_BASE_LM_H

#include <stddef.h>
#include <stdint.h>

#define LM_VERSION "0.1.0"

#define LM_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))
#define LM_UNUSED(x)  ((void)(x))
#define LM_MIN(a, b)  ((a) < (b) ? (a) : (b))
#define LM_MAX(a, b)  ((a) > (b) ? (a) : (b))

#if defined(__GNUC__) || defined(__clang__)
#define LM_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define LM_NORETURN          __attribute__((noreturn))
#else
#define LM_PRINTF(fmt, args)
#define LM_NORETURN
#endif

LM_NORETURN void lm__assert_fail(const char *expr, const char *file, int line);

#define LM_ASSERT(cond) ((cond) ? (void)0 : lm__assert_fail(#cond, __FILE__, __LINE__))

#endif
