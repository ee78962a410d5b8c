/* core/base/log.h — levelled logging through one replaceable sink.
 * The macros test the level before formatting, so a disabled DEBUG line costs a compare.
 * A function that returns an error does not also log it: the caller decides.
 * The sink is process-wide; set it once at start-up, before threads run. */
#ifndef LM_CORE_BASE_LOG_H
#define LM_CORE_BASE_LOG_H

#include "core/base/lm.h"

typedef enum {
    LM_LOG_LEVEL_ERROR,
    LM_LOG_LEVEL_WARN,
    LM_LOG_LEVEL_INFO,
    LM_LOG_LEVEL_DEBUG
} lm_log_level;

typedef void (*lm_log_sink)(lm_log_level level, const char *subsys, const char *msg, void *user);

extern lm_log_level lm_log__level;

void lm_log_set_level(lm_log_level level);
/* NULL restores the default sink (stderr, "loom: <subsys>: <msg>"). */
void lm_log_set_sink(lm_log_sink sink, void *user);
void lm_log__write(lm_log_level level, const char *subsys, const char *fmt, ...) LM_PRINTF(3, 4);

#define LM_LOG(level, subsys, ...)                                                                 \
    do {                                                                                           \
        if ((level) <= lm_log__level)                                                              \
            lm_log__write((level), (subsys), __VA_ARGS__);                                         \
    } while (0)
#define LM_LOG_ERROR(subsys, ...) LM_LOG(LM_LOG_LEVEL_ERROR, subsys, __VA_ARGS__)
#define LM_LOG_WARN(subsys, ...)  LM_LOG(LM_LOG_LEVEL_WARN, subsys, __VA_ARGS__)
#define LM_LOG_INFO(subsys, ...)  LM_LOG(LM_LOG_LEVEL_INFO, subsys, __VA_ARGS__)
#define LM_LOG_DEBUG(subsys, ...) LM_LOG(LM_LOG_LEVEL_DEBUG, subsys, __VA_ARGS__)

#endif
