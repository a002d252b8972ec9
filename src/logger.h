/*  Daemon logging to stderr (journald adds its own timestamps when it runs
    the node; a terminal gets ours).  One line a message:
        2026-11-29T10:02:03.123Z warn  web: client 10.0.0.7 dropped: too slow
    Safe from any thread (each line is one write).                            */
#ifndef SM_LOGGER_H
#define SM_LOGGER_H

typedef enum {
    SM_LOG_ERROR = 0, SM_LOG_WARN = 1, SM_LOG_INFO = 2, SM_LOG_DEBUG = 3
} sm_log_level;

void sm_log_set_level(int level);
int sm_log_level_get(void);
/*  "error", "warn", "info", "debug" -> level; -1 if unknown.               */
int sm_log_level_parse(const char *name);

void sm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sm_log_error(...) sm_log(SM_LOG_ERROR, __VA_ARGS__)
#define sm_log_warn(...)  sm_log(SM_LOG_WARN, __VA_ARGS__)
#define sm_log_info(...)  sm_log(SM_LOG_INFO, __VA_ARGS__)
#define sm_log_debug(...) sm_log(SM_LOG_DEBUG, __VA_ARGS__)

#endif
