/*  Daemon logging to stderr (src/logger.h).

    A line is built whole in a stack buffer and handed to one write(2), so
    lines from different threads never interleave (a line is shorter than
    PIPE_BUF, so even a pipe to journald keeps it in one piece).  The level
    is one atomic int; plain lines take no lock.  Throttled lines (for
    warnings an outsider can repeat at will) keep a small table of kinds
    under a mutex: the first line of a kind is written, repeats within
    SM_LOG_THROTTLE_MS are counted, and the count is written with the next
    line of that kind (" (N more like this)") or by sm_log_throttle_flush.

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

#include "stallmesh/limits.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
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

/*  Format one line, the message then `suffix` (may be ""), and write it to
    stderr.  The caller has checked the level.                               */
static void
s_vlog(int level, const char *suffix, const char *fmt, va_list ap)
{
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

    /* Room for the message and its suffix, keeping one byte for the newline. */
    size_t suffix_len = strlen(suffix);
    assert(suffix_len < 64);
    size_t room = sizeof line - len - 1 - suffix_len;
    int n = vsnprintf(line + len, room + 1, fmt, ap);
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
    memcpy(line + len, suffix, suffix_len);
    len += suffix_len;
    line[len++] = '\n';

    s_write_all(STDERR_FILENO, line, len);
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
    va_list ap;
    va_start(ap, fmt);
    s_vlog(level, "", fmt, ap);
    va_end(ap);
    errno = saved_errno;
}

/* ---- throttled lines ---------------------------------------------------- */

typedef struct {
    char key[SM_LOG_THROTTLE_KEY_BYTES];   /* "" = free */
    int level;
    uint64_t written_ms;       /* when its last line was written */
    uint64_t suppressed;       /* lines counted, not written, since then */
} s_kind;

static pthread_mutex_t s_kinds_lock = PTHREAD_MUTEX_INITIALIZER;
static s_kind s_kinds[SM_LOG_THROTTLE_KEYS_MAX];

static uint64_t
s_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*  A line with no format arguments (va_list-free helper for the counts).   */
static void
s_log_plain(int level, const char *suffix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vlog(level, suffix, fmt, ap);
    va_end(ap);
}

/*  Write kind k's unwritten count as a line of its own and clear it.
    Holds s_kinds_lock.                                                       */
static void
s_kind_flush(s_kind *k, uint64_t now_ms)
{
    if (k->suppressed == 0)
        return;
    if (k->level <= atomic_load_explicit(&s_level, memory_order_relaxed))
        s_log_plain(k->level, "", "%s: %llu more like this", k->key,
                    (unsigned long long)k->suppressed);
    k->suppressed = 0;
    k->written_ms = now_ms;
}

/*  The kind named key (cut to the table's key size), made if new.  Holds
    s_kinds_lock.                                                             */
static s_kind *
s_kind_for(const char *key, int level, uint64_t now_ms, bool *is_new)
{
    char name[SM_LOG_THROTTLE_KEY_BYTES];
    snprintf(name, sizeof name, "%s", key);
    s_kind *oldest = NULL;
    for (size_t i = 0; i < SM_LOG_THROTTLE_KEYS_MAX; i++) {
        s_kind *k = &s_kinds[i];
        if (k->key[0] && strcmp(k->key, name) == 0) {
            *is_new = false;
            return k;
        }
        if (!oldest || (oldest->key[0] && (!k->key[0] || k->written_ms < oldest->written_ms)))
            oldest = k;
    }
    if (oldest->key[0])
        s_kind_flush(oldest, now_ms);
    memcpy(oldest->key, name, sizeof name);
    oldest->level = level;
    oldest->suppressed = 0;
    *is_new = true;
    return oldest;
}

static void
s_vlog_throttled(uint64_t now_ms, int level, const char *key, const char *fmt, va_list ap)
{
    assert(level >= SM_LOG_ERROR && level <= SM_LOG_DEBUG);
    assert(key != NULL && fmt != NULL);
    if (level > atomic_load_explicit(&s_level, memory_order_relaxed))
        return;
    int saved_errno = errno;
    pthread_mutex_lock(&s_kinds_lock);
    bool is_new;
    s_kind *k = s_kind_for(key, level, now_ms, &is_new);
    if (!is_new && now_ms - k->written_ms < SM_LOG_THROTTLE_MS) {
        k->suppressed++;
    } else {
        char suffix[48] = "";
        if (k->suppressed)
            snprintf(suffix, sizeof suffix, " (%llu more like this)",
                     (unsigned long long)k->suppressed);
        s_vlog(level, suffix, fmt, ap);
        k->level = level;
        k->suppressed = 0;
        k->written_ms = now_ms;
    }
    pthread_mutex_unlock(&s_kinds_lock);
    errno = saved_errno;
}

/*  See logger.h.                                                             */
void
sm_log_throttled(int level, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vlog_throttled(s_monotonic_ms(), level, key, fmt, ap);
    va_end(ap);
}

void
sm_log_throttled_at(uint64_t now_ms, int level, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vlog_throttled(now_ms, level, key, fmt, ap);
    va_end(ap);
}

int
sm_log_throttle_flush_at(uint64_t now_ms)
{
    int saved_errno = errno;
    int lines = 0;
    pthread_mutex_lock(&s_kinds_lock);
    for (size_t i = 0; i < SM_LOG_THROTTLE_KEYS_MAX; i++) {
        s_kind *k = &s_kinds[i];
        if (k->key[0] && k->suppressed && now_ms - k->written_ms >= SM_LOG_THROTTLE_MS) {
            s_kind_flush(k, now_ms);
            lines++;
        }
    }
    pthread_mutex_unlock(&s_kinds_lock);
    errno = saved_errno;
    return lines;
}

int
sm_log_throttle_flush(void)
{
    return sm_log_throttle_flush_at(s_monotonic_ms());
}

void
sm_log_throttle_reset(void)
{
    pthread_mutex_lock(&s_kinds_lock);
    memset(s_kinds, 0, sizeof s_kinds);
    pthread_mutex_unlock(&s_kinds_lock);
}
