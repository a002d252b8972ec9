/*  Unit tests for src/logger.c: the line format, the level filter, one
    line per call (control bytes replaced, long messages cut), errno kept,
    whole lines from concurrent threads, and throttled lines ("N more like
    this") per kind.

    stderr is pointed at a pipe for the length of each test and restored.   */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "logger.h"
#include "stallmesh/limits.h"

#define S_CAPTURE_BYTES (1u << 20)

typedef struct {
    int saved_stderr;
    int pipe_read;
    char *text;                /* what was captured, NUL-terminated */
    size_t len;
} s_capture;

static s_capture s_cap;

/*  Point stderr at a pipe big enough for what a test writes.               */
static int
s_setup(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fcntl(fds[1], F_SETPIPE_SZ, S_CAPTURE_BYTES);   /* best effort: tests fit 64 KiB */
    s_cap.saved_stderr = dup(STDERR_FILENO);
    assert_true(s_cap.saved_stderr >= 0);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    close(fds[1]);
    s_cap.pipe_read = fds[0];
    s_cap.text = NULL;
    sm_log_set_level(SM_LOG_INFO);
    return 0;
}

/*  Restore stderr and free the capture.                                      */
static int
s_teardown(void **state)
{
    (void)state;
    dup2(s_cap.saved_stderr, STDERR_FILENO);
    close(s_cap.saved_stderr);
    close(s_cap.pipe_read);
    free(s_cap.text);
    s_cap.text = NULL;
    sm_log_set_level(SM_LOG_INFO);
    return 0;
}

/*  Everything written so far (the writer side stays open: read what is
    there without blocking).                                                  */
static const char *
s_captured(void)
{
    free(s_cap.text);
    s_cap.text = malloc(S_CAPTURE_BYTES + 1);
    assert_non_null(s_cap.text);
    int flags = fcntl(s_cap.pipe_read, F_GETFL);
    fcntl(s_cap.pipe_read, F_SETFL, flags | O_NONBLOCK);
    size_t len = 0;
    for (int i = 0; i < 1024 && len < S_CAPTURE_BYTES; i++) {
        ssize_t n = read(s_cap.pipe_read, s_cap.text + len, S_CAPTURE_BYTES - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    s_cap.text[len] = '\0';
    s_cap.len = len;
    return s_cap.text;
}

/*  A line reads "YYYY-MM-DDTHH:MM:SS.mmmZ level message\n", the level
    word padded to five columns, the time in UTC close to now.              */
static void
test_line_format(void **state)
{
    (void)state;
    sm_log_warn("web: client %s dropped: %s", "10.0.0.7", "too slow");
    sm_log_error("store: %d", 42);
    const char *out = s_captured();
    regex_t re;
    assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                  "\\.[0-9]{3}Z warn  web: client 10\\.0\\.0\\.7 dropped: "
                                  "too slow\n[0-9-]{10}T[0-9:]{8}\\.[0-9]{3}Z error store: 42\n$",
                         REG_EXTENDED), 0);
    int match = regexec(&re, out, 0, NULL, 0);
    regfree(&re);
    if (match != 0)
        fail_msg("unexpected log text: '%s'", out);

    struct tm tm;
    memset(&tm, 0, sizeof tm);
    assert_non_null(strptime(out, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t logged = timegm(&tm);
    time_t now = time(NULL);
    assert_true(logged <= now && now - logged < 60);
}

/*  Lines less urgent than the level are dropped; the level reads back.     */
static void
test_level_filter(void **state)
{
    (void)state;
    sm_log_set_level(SM_LOG_WARN);
    assert_int_equal(sm_log_level_get(), SM_LOG_WARN);
    sm_log_debug("d");
    sm_log_info("i");
    sm_log_warn("w");
    sm_log_error("e");
    const char *out = s_captured();
    assert_null(strstr(out, " debug d\n"));
    assert_null(strstr(out, " info  i\n"));
    assert_non_null(strstr(out, " warn  w\n"));
    assert_non_null(strstr(out, " error e\n"));

    sm_log_set_level(SM_LOG_DEBUG);
    sm_log_debug("d");
    out = s_captured();
    assert_non_null(strstr(out, " debug d\n"));

    sm_log_set_level(SM_LOG_ERROR);
    sm_log_warn("w");
    out = s_captured();
    assert_int_equal(s_cap.len, 0);
}

/*  A newline or other control byte in a message cannot start a second
    line: it is written as '?'.                                               */
static void
test_control_bytes(void **state)
{
    (void)state;
    sm_log_info("sku %s", "evil\n2026-01-01T00:00:00.000Z error forged\r\x1b[2J");
    const char *out = s_captured();
    assert_non_null(strstr(out, " info  sku evil?2026-01-01T00:00:00.000Z error forged??[2J\n"));
    assert_int_equal(strchr(out, '\n') - out, (ptrdiff_t)s_cap.len - 1);
}

/*  A message longer than a line is cut, ends in "...", and is still one
    line of at most 2048 bytes.                                               */
static void
test_long_message(void **state)
{
    (void)state;
    char *big = malloc(10000);
    assert_non_null(big);
    memset(big, 'a', 9999);
    big[9999] = '\0';
    sm_log_info("%s", big);
    free(big);
    const char *out = s_captured();
    assert_int_equal(s_cap.len, 2048);
    assert_int_equal(out[2047], '\n');
    assert_memory_equal(out + 2044, "...", 3);
    assert_int_equal(strchr(out, '\n') - out, 2047);
}

/*  errno is the same after logging as before.                                */
static void
test_errno_kept(void **state)
{
    (void)state;
    errno = ENOSPC;
    sm_log_error("store: %s", strerror(errno));
    assert_int_equal(errno, ENOSPC);
    assert_non_null(strstr(s_captured(), "store: No space left on device\n"));
}

#define S_THREADS 4
#define S_LINES 100        /* 4 x 100 lines of ~110 bytes fit a default 64 KiB pipe */

static void *
s_log_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < S_LINES; i++)
        sm_log_info("thread %d line %d %s", id, i,
                    "padding padding padding padding padding padding padding");
    return NULL;
}

/*  Lines logged from several threads at once arrive whole, none lost.     */
static void
test_threads_whole_lines(void **state)
{
    (void)state;
    pthread_t t[S_THREADS];
    for (int i = 0; i < S_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, s_log_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < S_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    const char *out = s_captured();
    int next[S_THREADS] = {0};
    int lines = 0;
    for (const char *line = out; *line; lines++) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        int id, n;
        const char *msg = strstr(line, " info  thread ");
        assert_true(msg != NULL && msg < end);
        assert_int_equal(sscanf(msg, " info  thread %d line %d", &id, &n), 2);
        assert_true(id >= 0 && id < S_THREADS);
        assert_int_equal(n, next[id]);    /* each thread's lines in order */
        next[id]++;
        line = end + 1;
    }
    assert_int_equal(lines, S_THREADS * S_LINES);
}

/*  Count the lines of text that contain needle.                           */
static int
s_count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        const char *hit = strstr(line, needle);
        if (hit && hit < end)
            n++;
        line = end + 1;
    }
    return n;
}

/*  Repeats of one kind within the interval are counted, not written; the
    next line of that kind after the interval carries the count; another
    kind (another address) is throttled on its own.                          */
static void
test_throttled_counts(void **state)
{
    (void)state;
    sm_log_throttle_reset();
    uint64_t t = 1000000;
    for (int i = 0; i < 3000; i++)
        sm_log_throttled_at(t + (uint64_t)i, SM_LOG_WARN, "mesh: strangers refused",
                            "mesh: stranger %d refused", i);
    sm_log_throttled_at(t + 5, SM_LOG_WARN, "web: 127.0.0.2 refused", "web: 127.0.0.2 refused");
    const char *out = s_captured();
    assert_int_equal(s_count_lines(out, "mesh: stranger "), 1);
    assert_non_null(strstr(out, " warn  mesh: stranger 0 refused\n"));
    assert_int_equal(s_count_lines(out, "web: 127.0.0.2 refused"), 1);

    /* Within the interval: still nothing; after it: one line with the count. */
    sm_log_throttled_at(t + SM_LOG_THROTTLE_MS - 1, SM_LOG_WARN, "mesh: strangers refused",
                        "mesh: stranger %d refused", 3000);
    assert_int_equal(strlen(s_captured()), 0);
    sm_log_throttled_at(t + SM_LOG_THROTTLE_MS + 10, SM_LOG_WARN, "mesh: strangers refused",
                        "mesh: stranger %d refused", 3001);
    out = s_captured();
    assert_non_null(strstr(out, " warn  mesh: stranger 3001 refused (3000 more like this)\n"));
    assert_int_equal(s_count_lines(out, " warn  "), 1);
    sm_log_throttle_reset();
}

/*  A count left unwritten when the repeats stop is written by the flush
    once its interval is over, once, with the kind's name.                  */
static void
test_throttled_flush(void **state)
{
    (void)state;
    sm_log_throttle_reset();
    uint64_t t = 5000000;
    for (int i = 0; i < 10; i++)
        sm_log_throttled_at(t + (uint64_t)i, SM_LOG_WARN, "web: connections from 10.0.0.9 refused",
                            "web: connection from 10.0.0.9 refused: too many");
    (void)s_captured();
    assert_int_equal(sm_log_throttle_flush_at(t + 100), 0);       /* too early */
    assert_int_equal(strlen(s_captured()), 0);
    assert_int_equal(sm_log_throttle_flush_at(t + SM_LOG_THROTTLE_MS + 1), 1);
    const char *out = s_captured();
    assert_non_null(strstr(out, " warn  web: connections from 10.0.0.9 refused: 9 more like this\n"));
    assert_int_equal(sm_log_throttle_flush_at(t + 3 * SM_LOG_THROTTLE_MS), 0);   /* once */
    sm_log_throttle_reset();
}

/*  More kinds than the table holds: every kind's first line is written,
    a replaced kind's count is written rather than lost, and lines below the
    level are neither written nor counted.                                    */
static void
test_throttled_table_full(void **state)
{
    (void)state;
    sm_log_throttle_reset();
    uint64_t t = 9000000;
    sm_log_throttled_at(t, SM_LOG_WARN, "kind first", "kind first");
    sm_log_throttled_at(t + 1, SM_LOG_WARN, "kind first", "kind first");
    for (unsigned i = 0; i < SM_LOG_THROTTLE_KEYS_MAX; i++) {
        char key[32];
        snprintf(key, sizeof key, "kind %u", i);
        sm_log_throttled_at(t + 2 + i, SM_LOG_WARN, key, "%s", key);
    }
    const char *out = s_captured();
    assert_int_equal(s_count_lines(out, " warn  kind "), (int)SM_LOG_THROTTLE_KEYS_MAX + 2);
    assert_non_null(strstr(out, " warn  kind first: 1 more like this\n"));

    sm_log_set_level(SM_LOG_ERROR);
    sm_log_throttled_at(t, SM_LOG_WARN, "quiet", "quiet");
    sm_log_set_level(SM_LOG_INFO);
    sm_log_throttled_at(t + 1, SM_LOG_WARN, "quiet", "quiet");
    out = s_captured();
    assert_int_equal(s_count_lines(out, " warn  quiet"), 1);
    sm_log_throttle_reset();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_format, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_control_bytes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_long_message, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_errno_kept, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_threads_whole_lines, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_throttled_counts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_throttled_flush, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_throttled_table_full, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
