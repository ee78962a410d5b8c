/* core/base/log.c — default stderr sink and level filter. */
#include "core/base/log.h"

#include <stdarg.h>
#include <stdio.h>

lm_log_level lm_log__level = LM_LOG_LEVEL_WARN;

static void stderr_sink(lm_log_level level, const char *subsys, const char *msg, void *user)
{
    static const char *const names[] = { "error", "warning", "info", "debug" };
    LM_UNUSED(user);
    fprintf(stderr, "loom: %s: %s: %s\n", names[level], subsys, msg);
}

static lm_log_sink sink_fn = stderr_sink;
static void *sink_user;

void lm_log_set_level(lm_log_level level)
{
    lm_log__level = level;
}

void lm_log_set_sink(lm_log_sink sink, void *user)
{
    sink_fn = sink ? sink : stderr_sink;
    sink_user = sink ? user : NULL;
}

void lm_log__write(lm_log_level level, const char *subsys, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sink_fn(level, subsys, msg, sink_user);
}
