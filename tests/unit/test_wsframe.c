/*  Unit tests for src/wsframe.c: client frame headers checked as their
    bytes arrive (masked, lengths against the message limit, headers split
    anywhere) and UTF-8 checked in pieces.                                    */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "wsframe.h"
#include "stallmesh/error.h"

#define S_MAX 4096u

/*  A masked client frame header (FIN set) for opcode and payload length
    into out; returns its length.                                             */
static size_t
s_header(uint8_t *out, uint8_t opcode, uint64_t len, int fin, int masked)
{
    size_t n = 0;
    out[n++] = (uint8_t) ((fin ? 0x80 : 0) | opcode);
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (uint8_t) (m | len);
    } else if (len < 65536) {
        out[n++] = m | 126;
        out[n++] = (uint8_t) (len >> 8);
        out[n++] = (uint8_t) len;
    } else {
        out[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t) (len >> (8 * i));
    }
    if (masked) {
        memcpy(out + n, "\x11\x22\x33\x44", 4);
        n += 4;
    }
    return n;
}

/*  Good frames of every length form pass, whole or a byte at a time, with
    payload between them; control frames do not count towards a message.  */
static void
test_good_frames(void **state)
{
    (void) state;
    uint8_t buf[3 * 4200];
    size_t n = 0;
    n += s_header(buf + n, 1, 5, 1, 1);
    memcpy(buf + n, "hello", 5), n += 5;
    n += s_header(buf + n, 9, 0, 1, 1);                 /* ping, empty */
    n += s_header(buf + n, 2, 4000, 1, 1);
    memset(buf + n, 0xab, 4000), n += 4000;
    n += s_header(buf + n, 1, 2000, 0, 1);              /* a message in two fragments */
    memset(buf + n, 'a', 2000), n += 2000;
    n += s_header(buf + n, 0, 2096, 1, 1);
    memset(buf + n, 'a', 2096), n += 2096;
    sm_wsframe f;
    sm_wsframe_init(&f);
    assert_int_equal(sm_wsframe_scan(&f, buf, n, S_MAX), 0);
    sm_wsframe_init(&f);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sm_wsframe_scan(&f, buf + i, 1, S_MAX), 0);
}

/*  A frame without the mask bit is refused at its second byte, wherever it
    comes in the stream.                                                      */
static void
test_unmasked(void **state)
{
    (void) state;
    uint8_t buf[64];
    size_t n = s_header(buf, 1, 3, 1, 1);
    memcpy(buf + n, "abc", 3), n += 3;
    size_t bad = n;
    n += s_header(buf + n, 1, 3, 1, 0);
    sm_wsframe f;
    sm_wsframe_init(&f);
    assert_int_equal(sm_wsframe_scan(&f, buf, bad + 1, S_MAX), 0);
    assert_int_equal(sm_wsframe_scan(&f, buf + bad + 1, 1, S_MAX), SM_EWSUNMASKED);
    sm_wsframe_init(&f);
    n = s_header(buf, 9, 0, 1, 0);                     /* an unmasked ping too */
    assert_int_equal(sm_wsframe_scan(&f, buf, n, S_MAX), SM_EWSUNMASKED);
}

/*  Lengths past the limit are refused at the header, before any payload:
    one byte over, 2^63 and 2^64-1 claimed, and fragments adding up to it.  */
static void
test_too_long(void **state)
{
    (void) state;
    uint8_t buf[64];
    sm_wsframe f;
    uint64_t lens[] = { S_MAX + 1, 65535, 1ull << 62, 1ull << 63, UINT64_MAX };
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        size_t n = s_header(buf, 1, lens[k], 1, 1);
        sm_wsframe_init(&f);
        int rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = sm_wsframe_scan(&f, buf + i, 1, S_MAX);
        assert_int_equal(rc, SM_EWSTOOBIG);
    }
    sm_wsframe_init(&f);
    size_t n = s_header(buf, 1, S_MAX, 1, 1);           /* exactly the limit: fine */
    assert_int_equal(sm_wsframe_scan(&f, buf, n, S_MAX), 0);
    sm_wsframe_init(&f);
    n = s_header(buf, 2, 3000, 0, 1);
    assert_int_equal(sm_wsframe_scan(&f, buf, n, S_MAX), 0);
    static uint8_t payload[3000];
    assert_int_equal(sm_wsframe_scan(&f, payload, sizeof payload, S_MAX), 0);
    n = s_header(buf, 0, 1097, 1, 1);                   /* 3000 + 1097 > 4096 */
    assert_int_equal(sm_wsframe_scan(&f, buf, n, S_MAX), SM_EWSTOOBIG);
}

/*  Valid UTF-8 passes whole and split at every byte; each kind of invalid
    sequence is refused; a text may not end inside a sequence.              */
static void
test_utf8(void **state)
{
    (void) state;
    const char *good = "plum jam \xc2\xa3" "4.50 \xe2\x82\xac \xed\x9f\xbf \xf0\x9f\x8d\x93 "
                       "\xf4\x8f\xbf\xbf";
    sm_utf8 u;
    sm_utf8_init(&u);
    assert_int_equal(sm_utf8_check(&u, (const uint8_t *) good, strlen(good)), 0);
    assert_true(sm_utf8_complete(&u));
    sm_utf8_init(&u);
    for (size_t i = 0; i < strlen(good); i++)
        assert_int_equal(sm_utf8_check(&u, (const uint8_t *) good + i, 1), 0);
    assert_true(sm_utf8_complete(&u));

    const char *bad[] = {
        "\x80", "\xbf", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80",
        "\xf0\x80\x80\xaf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xc3\x28",
        "ok \xe2\x82\x28",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        sm_utf8_init(&u);
        assert_int_equal(sm_utf8_check(&u, (const uint8_t *) bad[k], strlen(bad[k])),
                         SM_EWSUTF8);
    }
    sm_utf8_init(&u);
    assert_int_equal(sm_utf8_check(&u, (const uint8_t *) "a\xe2\x82", 3), 0);
    assert_false(sm_utf8_complete(&u));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_frames),
        cmocka_unit_test(test_unmasked),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
