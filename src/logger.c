/*  Daemon logging to stderr (src/logger.h).

    A line is built whole in a stack buffer and handed to one write(2), so
    lines from different threads never interleave (a line is shorter than
    PIPE_BUF, so even a pipe to journald keeps it in one piece).  The level
    is one atomic int; there is no lock anywhere.

    Line format (UTC, milliseconds, level word padded to five columns):

        2026-11-29T10:02:03.123Z warn  web: client 10.0.0.7 dropped: too slow

    A message longer than the buffer is cut and ends in "...".  Control
    bytes in a message (a sku or a header a phone sent may hold a newline)
    are written as '?', so one call is always exactly one line.

    Under systemd (stderr is the stream named by $JOURNAL_STREAM, as
    "DEVICE:INODE") each line starts with a syslog priority prefix, "<3>"
    error, "<4>" warn, "<6>" info, "<7>" debug, which journald strips and
    records as the line's priority, so `journalctl -p warning` filters.

    This module reads the wall clock; it is not part of the deterministic
    core, which never logs.                                                   */
#include "logger.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SM__LOG_LINE_BYTES_MAX 2048u   /* below PIPE_BUF (4096 on Linux) */
#define SM__LOG_WRITE_TRIES_MAX 8      /* EINTR or short writes before giving up */

static atomic_int s_level = SM_LOG_INFO;
static atomic_int s_journal = -1;      /* stderr is journald's: -1 not yet known */

/* syslog(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const char *const s_level_prefixes[] = {
    [SM_LOG_ERROR] = "<3>", [SM_LOG_WARN] = "<4>",
    [SM_LOG_INFO] = "<6>",  [SM_LOG_DEBUG] = "<7>",
};

/*  True if stderr is the journal stream systemd connected
    ($JOURNAL_STREAM=DEVICE:INODE of that stream, sd_journal_stream_fd(3)):
    a shell that inherited the variable but redirected stderr gets none.
    Decided once; the race of two first lines is harmless (same answer).    */
static bool
s_to_journal(void)
{
    int known = atomic_load_explicit(&s_journal, memory_order_relaxed);
    if (known >= 0)
        return known == 1;
    const char *env = getenv("JOURNAL_STREAM");
    unsigned long long dev = 0, ino = 0;
    struct stat st;
    bool yes = env && sscanf(env, "%llu:%llu", &dev, &ino) == 2
               && fstat(STDERR_FILENO, &st) == 0
               && (unsigned long long) st.st_dev == dev
               && (unsigned long long) st.st_ino == ino;
    atomic_store_explicit(&s_journal, yes ? 1 : 0, memory_order_relaxed);
    return yes;
}

static const char *const s_level_names[] = {
    [SM_LOG_ERROR] = "error", [SM_LOG_WARN] = "warn",
    [SM_LOG_INFO] = "info",   [SM_LOG_DEBUG] = "debug",
};

/*  Lines at `level` or more urgent are written from now on.  level must be
    a sm_log_level (a config value is parsed with sm_log_level_parse first). */
void
sm_log_set_level(int level)
{
    assert(level >= SM_LOG_ERROR && level <= SM_LOG_DEBUG);
    atomic_store_explicit(&s_level, level, memory_order_relaxed);
}

/*  The current level.                                                        */
int
sm_log_level_get(void)
{
    return atomic_load_explicit(&s_level, memory_order_relaxed);
}

/*  "error", "warn", "info", "debug" (exactly, lower case) -> the level;
    -1 for anything else, including NULL.                                    */
int
sm_log_level_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = SM_LOG_ERROR; i <= SM_LOG_DEBUG; i++)
        if (strcmp(name, s_level_names[i]) == 0)
            return i;
    return -1;
}

/*  Write all of buf[0..len) to fd, retrying EINTR and short writes a
    bounded number of times.  Errors are dropped: there is nowhere left to
    report them.                                                              */
static void
s_write_all(int fd, const char *buf, size_t len)
{
    for (int tries = 0; len > 0 && tries < SM__LOG_WRITE_TRIES_MAX; tries++) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/*  Format one line and write it to stderr if `level` passes the filter.
    errno is the same after the call as before it, so a caller may log and
    then report errno.                                                        */
void
sm_log(int level, const char *fmt, ...)
{
    assert(level >= SM_LOG_ERROR && level <= SM_LOG_DEBUG);
    assert(fmt != NULL);
    if (level > atomic_load_explicit(&s_level, memory_order_relaxed))
        return;
    int saved_errno = errno;

    char line[SM__LOG_LINE_BYTES_MAX];
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL) {
        memset(&tm, 0, sizeof tm);
        ts.tv_nsec = 0;
    }
    size_t len = 0;
    if (s_to_journal()) {
        memcpy(line, s_level_prefixes[level], 3);
        len = 3;
    }
    len += strftime(line + len, sizeof line - len, "%Y-%m-%dT%H:%M:%S", &tm);
    int head = snprintf(line + len, sizeof line - len, ".%03ldZ %-5s ",
                        (long)(ts.tv_nsec / 1000000), s_level_names[level]);
    assert(head > 0 && (size_t)head < sizeof line - len);
    len += (size_t)head;

    /* Room for the message, keeping one byte for the newline. */
    size_t room = sizeof line - len - 1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + len, room + 1, fmt, ap);
    va_end(ap);
    size_t body;
    if (n < 0) {
        body = (size_t)snprintf(line + len, room + 1, "(bad log format)");
    } else if ((size_t)n > room) {
        body = room;
        memcpy(line + len + room - 3, "...", 3);
    } else {
        body = (size_t)n;
    }
    for (size_t i = len; i < len + body; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f)
            line[i] = '?';
    }
    len += body;
    line[len++] = '\n';

    s_write_all(STDERR_FILENO, line, len);
    errno = saved_errno;
}
