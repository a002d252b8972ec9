/*  Daemon logging to stderr (journald adds its own timestamps when it runs
    the node; a terminal gets ours).  One line a message:
        2026-11-29T10:02:03.123Z warn  web: client 10.0.0.7 dropped: too slow
    Safe from any thread (each line is one write).                            */
#ifndef SM_LOGGER_H
#define SM_LOGGER_H

#include <stdint.h>

typedef enum {
    SM_LOG_ERROR = 0, SM_LOG_WARN = 1, SM_LOG_INFO = 2, SM_LOG_DEBUG = 3
} sm_log_level;

void sm_log_set_level(int level);
int sm_log_level_get(void);
/*  "error", "warn", "info", "debug" -> level; -1 if unknown.               */
int sm_log_level_parse(const char *name);

void sm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*  Throttled lines: for warnings an outsider can repeat at will (a refused
    stranger, a flood of connections from one address).  `key` names the
    kind (an address may be part of it: one kind per offending address);
    the first line of a kind is written at once, later ones within
    SM_LOG_THROTTLE_MS are counted instead, and the next line written for
    that kind ends in " (N more like this)".  sm_log_throttle_flush writes
    "KEY: N more like this" for kinds whose count is still unwritten once
    their interval is over (call it from a periodic timer).  At most
    SM_LOG_THROTTLE_KEYS_MAX kinds are tracked; a new kind replaces the one
    written longest ago (its unwritten count, if any, is written first).
    Safe from any thread (a mutex guards the table of kinds).              */
void sm_log_throttled(int level, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*  The same with the monotonic time given (milliseconds; for tests).       */
void sm_log_throttled_at(uint64_t now_ms, int level, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/*  Write the counts of kinds whose interval is over; returns how many
    lines it wrote.                                                           */
int sm_log_throttle_flush(void);
int sm_log_throttle_flush_at(uint64_t now_ms);
/*  Forget every kind (tests).                                               */
void sm_log_throttle_reset(void);

#define sm_log_error(...) sm_log(SM_LOG_ERROR, __VA_ARGS__)
#define sm_log_warn(...)  sm_log(SM_LOG_WARN, __VA_ARGS__)
#define sm_log_info(...)  sm_log(SM_LOG_INFO, __VA_ARGS__)
#define sm_log_debug(...) sm_log(SM_LOG_DEBUG, __VA_ARGS__)

#endif
