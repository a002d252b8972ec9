/*  Unit tests of the TZif reader (src/tz.c): offsets and local-to-UTC
    conversions against known daylight-saving changes and against glibc's
    own reading of the same files, the POSIX footer rule against the file's
    transitions, and refusal of bad names and damaged files.                  */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stallmesh/error.h"
#include "testutil.h"
#include "tz.h"

static int64_t
s_utc(int y, unsigned m, unsigned d, int hh, int mm)
{
    return sm_days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60;
}

/* Europe/London leaves summer time at 01:00 UTC on 2026-10-25: that day
   has 25 hours, 01:00-02:00 local happens twice. */
static void
test_london_autumn_2026(void **state)
{
    (void) state;
    int err = 0;
    sm_tz *tz = sm_tz_open("Europe/London", &err);
    assert_non_null(tz);
    assert_int_equal(sm_tz_offset(tz, s_utc(2026, 10, 25, 0, 59)), 3600);
    assert_int_equal(sm_tz_offset(tz, s_utc(2026, 10, 25, 1, 0)), 0);
    int64_t day = sm_days_from_civil(2026, 10, 25) * 86400;
    int64_t start = sm_tz_local_to_utc(tz, day);
    int64_t end = sm_tz_local_to_utc(tz, day + 86400);
    assert_int_equal(start, s_utc(2026, 10, 24, 23, 0));
    assert_int_equal(end, s_utc(2026, 10, 26, 0, 0));
    assert_int_equal(end - start, 25 * 3600);
    /* The repeated 01:30 maps to the earlier instant. */
    assert_int_equal(sm_tz_local_to_utc(tz, day + 5400), s_utc(2026, 10, 25, 0, 30));
    /* Spring 2026-03-29: 01:00 local is skipped; 01:30 maps to the change. */
    int64_t spring = sm_days_from_civil(2026, 3, 29) * 86400;
    assert_int_equal(sm_tz_local_to_utc(tz, spring + 5400), s_utc(2026, 3, 29, 1, 0));
    assert_int_equal(sm_tz_local_to_utc(tz, spring + 86400) - sm_tz_local_to_utc(tz, spring),
                     23 * 3600);
    sm_tz_destroy(&tz);
    sm_tz_destroy(&tz);
}

/* Offsets agree with glibc's localtime_r for many instants in zones with
   odd rules (half-hour DST, negative DST, 45-minute offsets, southern DST). */
static void
test_against_glibc(void **state)
{
    (void) state;
    static const char *const zones[] = {
        "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu",
        "Pacific/Chatham", "America/Sao_Paulo", "Europe/Dublin", "Africa/Casablanca",
        "Asia/Kolkata", "America/St_Johns", "UTC",
    };
    uint64_t rng = 42;
    for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
        int err = 0;
        sm_tz *tz = sm_tz_open(zones[z], &err);
        if (!tz)
            fail_msg("%s: %s", zones[z], sm_strerror(err));
        setenv("TZ", zones[z], 1);             /* glibc's reference, this test only */
        tzset();
        for (int i = 0; i < 4000; i++) {
            /* 1990 .. 2060: past the fat files' last transition (2037). */
            int64_t t = 631152000 + (int64_t) tu_below(&rng, 70ULL * 365 * 86400);
            time_t tt = (time_t) t;
            struct tm tm;
            localtime_r(&tt, &tm);
            if (sm_tz_offset(tz, t) != tm.tm_gmtoff)
                fail_msg("%s at %lld: %d, glibc %ld", zones[z], (long long) t,
                         sm_tz_offset(tz, t), tm.tm_gmtoff);
            /* Round trip through wall time. */
            int64_t local = t + tm.tm_gmtoff;
            int64_t back = sm_tz_local_to_utc(tz, local);
            assert_true(back <= t);
            assert_int_equal(back + sm_tz_offset(tz, back), local);
        }
        sm_tz_destroy(&tz);
    }
    unsetenv("TZ");
    tzset();
}

/* The footer rule alone gives the same offsets as London's transitions. */
static void
test_footer_rule(void **state)
{
    (void) state;
    /* A minimal v2 file: empty v1 block, one type, no transitions, footer. */
    uint8_t f[256];
    memset(f, 0, sizeof f);
    size_t n = 0;
    for (int part = 0; part < 2; part++) {
        memcpy(f + n, "TZif2", 5);
        n += 20;
        uint32_t counts[6] = { 0, 0, 0, 0, 1, 4 };
        for (int i = 0; i < 6; i++) {
            f[n + 3] = (uint8_t) counts[i];
            n += 4;
        }
        n += 6;                    /* type 0: offset 0, std */
        memcpy(f + n, "GMT", 4);
        n += 4;
    }
    const char footer[] = "\nGMT0BST,M3.5.0/1,M10.5.0\n";
    memcpy(f + n, footer, sizeof footer - 1);
    n += sizeof footer - 1;
    int err = 0;
    sm_tz *rule = sm_tz_parse("rule", f, n, &err);
    assert_non_null(rule);
    sm_tz *file = sm_tz_open("Europe/London", &err);
    assert_non_null(file);
    for (int64_t t = s_utc(2000, 1, 1, 0, 0); t < s_utc(2036, 1, 1, 0, 0); t += 1800)
        if (sm_tz_offset(rule, t) != sm_tz_offset(file, t))
            fail_msg("rule and file differ at %lld", (long long) t);
    sm_tz_destroy(&rule);
    sm_tz_destroy(&file);
    /* Truncated or damaged files are refused. */
    for (size_t cut = 0; cut < n - sizeof footer + 1; cut += 7) {
        sm_tz *bad = sm_tz_parse("cut", f, cut, &err);
        assert_null(bad);
        assert_int_equal(err, SM_ETZ);
    }
}

/* Names outside the zone-name shape and unknown zones are refused. */
static void
test_bad_names(void **state)
{
    (void) state;
    static const char *const bad[] = { "", "../etc/passwd", "/etc/localtime",
                                       "Europe/Nowhere", "Europe/London\n", "a b" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int err = 0;
        sm_tz *tz = sm_tz_open(bad[i], &err);
        assert_null(tz);
        assert_int_equal(err, SM_ETZ);
    }
    char sys[SM_TZ_NAME_BYTES_MAX + 1];
    sm_tz_system(sys, sizeof sys);
    assert_true(sm_tz_name_ok(sys));
    /* Calendar round trip. */
    for (int64_t d = -800000; d < 800000; d += 997) {
        int64_t y;
        unsigned m, dd;
        sm_civil_from_days(d, &y, &m, &dd);
        assert_int_equal(sm_days_from_civil(y, m, dd), d);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_london_autumn_2026),
        cmocka_unit_test(test_against_glibc),
        cmocka_unit_test(test_footer_rule),
        cmocka_unit_test(test_bad_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
