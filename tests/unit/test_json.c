/*  Unit tests of the node's JSON module (src/json.c): the writer's
    escaping, comma placement in nested documents, integers at the ends of
    their ranges, growth and its limits, the project-type helpers; and the
    request reader's depth pre-scan, duplicate keys, error text and views.
    Written documents are checked byte for byte and, where that says more,
    read back with the module's own reader.                                  */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "json.h"
#include "stallmesh/limits.h"

/*  Take b's document, check it is `want`, free it.                          */
static void
expect_doc(sm_json_buf *b, const char *want)
{
    size_t len = 0;
    char *got = sm_json_take(b, &len);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(got);
    assert_null(b->p);              /* take resets the writer */
}

/*  Quotes, backslashes, every control character, DEL and < > & are escaped;
    UTF-8 passes unchanged; a NUL inside the counted text is \u0000.        */
static void
test_escaping(void **state)
{
    (void) state;
    sm_json_buf b = { 0 };
    sm_json_str(&b, "a\"b\\c</script>&\x7f\n\t\x01");
    expect_doc(&b, "\"a\\\"b\\\\c\\u003c/script\\u003e\\u0026\\u007f\\u000a\\u0009\\u0001\"");

    sm_json_strn(&b, "x\0y", 3);
    expect_doc(&b, "\"x\\u0000y\"");

    sm_json_str(&b, "caf\xc3\xa9 \xe2\x82\xac");   /* café € */
    expect_doc(&b, "\"caf\xc3\xa9 \xe2\x82\xac\"");

    /* Every byte 1..127 round-trips through the reader unchanged. */
    char all[128];
    for (int i = 1; i < 128; i++)
        all[i - 1] = (char) i;
    all[127] = '\0';
    sm_json_obj_open(&b);
    sm_json_kstr(&b, "s", all);
    sm_json_obj_close(&b);
    size_t len;
    char *text = sm_json_take(&b, &len);
    assert_non_null(text);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text[i];
        assert_true(c >= 0x20 && c != 0x7f && c != '<' && c != '>' && c != '&');
    }
    sm_json_doc *doc = NULL;
    assert_int_equal(sm_json_parse(text, len, 8, &doc, NULL, 0), SM_JSON_OK);
    size_t n;
    const char *back = sm_json_string(sm_json_get(sm_json_root(doc), "s"), &n);
    assert_int_equal(n, 127);
    assert_memory_equal(back, all, 127);
    sm_json_doc_free(&doc);
    sm_json_doc_free(&doc);         /* safe twice */
    free(text);
}

/*  Commas go between members and elements at every level, never after an
    open or before a close; top-level values form a comma-separated run.    */
static void
test_nesting(void **state)
{
    (void) state;
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_key(&b, "a");
    sm_json_arr_open(&b);
    sm_json_int(&b, 1);
    sm_json_obj_open(&b);
    sm_json_key(&b, "b");
    sm_json_arr_open(&b);
    sm_json_arr_close(&b);
    sm_json_kbool(&b, "t", true);
    sm_json_obj_close(&b);
    sm_json_arr_open(&b);
    sm_json_arr_close(&b);
    sm_json_null(&b);
    sm_json_arr_close(&b);
    sm_json_key(&b, "c");
    sm_json_obj_open(&b);
    sm_json_obj_close(&b);
    sm_json_key(&b, "raw");
    sm_json_raw(&b, "{\"x\":1}", 7);
    sm_json_kbool(&b, "f", false);
    sm_json_obj_close(&b);
    expect_doc(&b, "{\"a\":[1,{\"b\":[],\"t\":true},[],null],\"c\":{},"
                   "\"raw\":{\"x\":1},\"f\":false}");

    /* A run of top-level values, spliced later into an array. */
    sm_json_obj_open(&b);
    sm_json_obj_close(&b);
    sm_json_str(&b, "s");
    sm_json_uint(&b, 7);
    expect_doc(&b, "{},\"s\",7");

    /* Raw runs in an array take one comma each, none when empty. */
    sm_json_arr_open(&b);
    sm_json_raw(&b, "1,2", 3);
    sm_json_raw(&b, "3", 1);
    sm_json_arr_close(&b);
    sm_json_arr_open(&b);
    sm_json_raw(&b, NULL, 0);
    sm_json_arr_close(&b);
    expect_doc(&b, "[1,2,3],[]");
}

/*  SM_JSON_WRITE_DEPTH_MAX levels open is fine; one more fails the writer,
    stickily: later calls do nothing and take returns NULL.                 */
static void
test_depth_limit(void **state)
{
    (void) state;
    sm_json_buf b = { 0 };
    for (unsigned i = 0; i < SM_JSON_WRITE_DEPTH_MAX; i++)
        sm_json_arr_open(&b);
    assert_false(b.failed);
    for (unsigned i = 0; i < SM_JSON_WRITE_DEPTH_MAX; i++)
        sm_json_arr_close(&b);
    assert_false(b.failed);
    assert_int_equal(b.len, 2 * SM_JSON_WRITE_DEPTH_MAX);
    sm_json_buf_free(&b);

    for (unsigned i = 0; i < SM_JSON_WRITE_DEPTH_MAX; i++)
        sm_json_arr_open(&b);
    assert_false(b.failed);
    sm_json_obj_open(&b);
    assert_true(b.failed);
    size_t len_at_failure = b.len;
    sm_json_kstr(&b, "k", "v");     /* no assert on a failed writer */
    sm_json_obj_close(&b);
    assert_int_equal(b.len, len_at_failure);
    size_t len = 1;
    assert_null(sm_json_take(&b, &len));
    assert_int_equal(len, 0);
    assert_false(b.failed);         /* take reset it */
}

/*  Integers are exact at both ends of int64 and uint64.                    */
static void
test_numbers(void **state)
{
    (void) state;
    sm_json_buf b = { 0 };
    sm_json_arr_open(&b);
    sm_json_int(&b, INT64_MIN);
    sm_json_int(&b, INT64_MAX);
    sm_json_int(&b, -1);
    sm_json_int(&b, 0);
    sm_json_uint(&b, 0);
    sm_json_uint(&b, UINT64_MAX);
    sm_json_int(&b, (int64_t) SM_SALE_TOTAL_MAX);
    sm_json_arr_close(&b);
    expect_doc(&b, "[-9223372036854775808,9223372036854775807,-1,0,0,"
                   "18446744073709551615,9007199254740991]");

    /* And the reader gives int64's ends back. */
    const char *text = "{\"lo\":-9223372036854775808,\"hi\":9223372036854775807,"
                       "\"real\":1.0,\"exp\":1e3}";
    sm_json_doc *doc = NULL;
    assert_int_equal(sm_json_parse(text, strlen(text), 8, &doc, NULL, 0), SM_JSON_OK);
    const sm_json_val *root = sm_json_root(doc);
    assert_true(sm_json_integer(sm_json_get(root, "lo")) == INT64_MIN);
    assert_true(sm_json_integer(sm_json_get(root, "hi")) == INT64_MAX);
    assert_false(sm_json_is_integer(sm_json_get(root, "real")));
    assert_false(sm_json_is_integer(sm_json_get(root, "exp")));
    assert_int_equal(sm_json_integer(sm_json_get(root, "real")), 0);
    sm_json_doc_free(&doc);
}

/*  The buffer grows past many doublings with its content intact; with
    bytes_max a document of exactly that size passes and one byte more
    fails the writer (and the limit survives a free).                        */
static void
test_growth_and_limit(void **state)
{
    (void) state;
    sm_json_buf b = { 0 };
    sm_json_arr_open(&b);
    for (int i = 0; i < 100000; i++)
        sm_json_str(&b, "abcdefgh");
    sm_json_arr_close(&b);
    assert_false(b.failed);
    assert_int_equal(b.len, 2 + 100000 * 10 + 99999);
    assert_true(b.cap > b.len);
    assert_int_equal(b.p[b.len], '\0');
    for (int i = 0; i < 100000; i++)
        assert_memory_equal(b.p + 1 + (size_t) i * 11, "\"abcdefgh\"", 10);
    sm_json_buf_free(&b);
    sm_json_buf_free(&b);           /* safe twice */

    b.bytes_max = 10;
    sm_json_str(&b, "12345678");    /* 10 bytes with its quotes */
    assert_false(b.failed);
    expect_doc(&b, "\"12345678\"");
    assert_int_equal(b.bytes_max, 10);
    sm_json_str(&b, "123456789");   /* 11 */
    assert_true(b.failed);
    size_t len;
    assert_null(sm_json_take(&b, &len));
    assert_int_equal(b.bytes_max, 10);

    /* A writer that wrote nothing has no document. */
    sm_json_buf empty = { 0 };
    assert_null(sm_json_take(&empty, &len));
}

/*  The project's types: node ids, entry ids, RFC 3339 times.               */
static void
test_project_types(void **state)
{
    (void) state;
    sm_id id;
    for (unsigned i = 0; i < SM_KEY_BYTES; i++)
        id.b[i] = (uint8_t) (i * 17);
    char hex[SM_ID_HEX_BYTES + 1];
    for (unsigned i = 0; i < SM_KEY_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", id.b[i]);

    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kid(&b, "node", &id);
    sm_json_kentry_id(&b, "sale", &id, 42);
    sm_json_kentry_id(&b, "max", &id, UINT64_MAX);
    sm_json_ktime(&b, "at", 1700000000123ULL);
    sm_json_kuint(&b, "n", 3);
    sm_json_kint(&b, "d", -3);
    sm_json_obj_close(&b);
    char want[512];
    snprintf(want, sizeof want,
             "{\"node\":\"%s\",\"sale\":\"%s:42\",\"max\":\"%s:18446744073709551615\","
             "\"at\":\"2023-11-14T22:13:20.123Z\",\"n\":3,\"d\":-3}", hex, hex, hex);
    expect_doc(&b, want);

    char t[64];
    sm_json_time_text(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
}

/*  The time as gmtime_r and "%04d-%02d-..." give it: what the writer must
    match byte for byte.                                                      */
static void
ref_time_text(uint64_t ms, char out[64])
{
    time_t sec = (time_t) (ms / 1000);
    struct tm tm;
    assert_non_null(gmtime_r(&sec, &tm));
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned) (ms % 1000));
}

/*  RFC 3339 times over the whole range: the ends of days, months and
    years, leap days (2000 is one, 2100 is not), years past 9999, the
    clock's 48 bits, UINT64_MAX, and a sweep of pseudo-random instants.     */
static void
test_time_text(void **state)
{
    (void) state;
    static const uint64_t edges[] = {
        0, 1, 999, 1000, 59999, 86399999, 86400000, 951782399999ULL /* 2000-02-28 end */,
        951782400000ULL, 951868800000ULL, 4107542399999ULL /* 2100-02-28 end */,
        4107542400000ULL, 4133894400000ULL, 253402300799999ULL /* 9999-12-31 end */,
        253402300800000ULL, (1ULL << 48) - 1, 1ULL << 48, UINT64_MAX / 2, UINT64_MAX - 1,
        UINT64_MAX,
    };
    char got[64], want[64];
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        sm_json_time_text(edges[i], got);
        ref_time_text(edges[i], want);
        assert_string_equal(got, want);
    }
    sm_json_time_text(951782400000ULL, got);
    assert_string_equal(got, "2000-02-29T00:00:00.000Z");
    sm_json_time_text(4107542400000ULL, got);
    assert_string_equal(got, "2100-03-01T00:00:00.000Z");
    sm_json_time_text(253402300800000ULL, got);
    assert_string_equal(got, "10000-01-01T00:00:00.000Z");
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* Mostly within the clock's 48 bits, some over the whole range. */
        uint64_t ms = i % 8 == 0 ? x : x >> 16;
        sm_json_time_text(ms, got);
        ref_time_text(ms, want);
        if (strcmp(got, want) != 0)
            fail_msg("%llu: %s, want %s", (unsigned long long) ms, got, want);
    }
    /* Written as a JSON string, quoted. */
    sm_json_buf b = { 0 };
    sm_json_arr_open(&b);
    sm_json_time(&b, 0);
    sm_json_time(&b, 253402300800001ULL);
    sm_json_arr_close(&b);
    expect_doc(&b, "[\"1970-01-01T00:00:00.000Z\",\"10000-01-01T00:00:00.001Z\"]");
}

/*  The depth pre-scan: exactly depth_max levels parse, one more is
    TOO_DEEP before the parser runs; brackets inside strings (escaped
    quotes included) do not count.                                           */
static void
test_read_depth(void **state)
{
    (void) state;
    char text[64];
    unsigned max = SM_JSON_DEPTH_MAX;
    size_t n = 0;
    for (unsigned i = 0; i < max; i++)
        text[n++] = '[';
    for (unsigned i = 0; i < max; i++)
        text[n++] = ']';
    sm_json_doc *doc = NULL;
    assert_int_equal(sm_json_parse(text, n, max, &doc, NULL, 0), SM_JSON_OK);
    sm_json_doc_free(&doc);
    assert_int_equal(sm_json_parse(text, n, max - 1, &doc, NULL, 0), SM_JSON_TOO_DEEP);
    assert_null(doc);

    const char *strings = "{\"a\":\"[[[[[[[[[[[[\\\"[[[[[[[[\"}";
    assert_true(sm_json_depth_ok(strings, strlen(strings), 1));
    assert_int_equal(sm_json_parse(strings, strlen(strings), 1, &doc, NULL, 0),
                     SM_JSON_OK);
    sm_json_doc_free(&doc);
    assert_false(sm_json_depth_ok("[{[", 3, 2));
}

/*  Bad text is BAD with a printable reason naming line and column;
    duplicate keys and \u0000 in a string are BAD; views of the wrong type
    are empty.                                                               */
static void
test_read_errors_and_views(void **state)
{
    (void) state;
    sm_json_doc *doc = NULL;
    char why[200];
    const char *bad = "{\"a\":\n\x01}";
    assert_int_equal(sm_json_parse(bad, strlen(bad), 8, &doc, why, sizeof why),
                     SM_JSON_BAD);
    assert_null(doc);
    assert_non_null(strstr(why, "line 2"));
    for (const char *p = why; *p; p++)
        assert_true(*p >= 0x20 && *p <= 0x7e);
    const char *dup = "{\"a\":1,\"a\":2}";
    assert_int_equal(sm_json_parse(dup, strlen(dup), 8, &doc, why, sizeof why),
                     SM_JSON_BAD);

    const char *nul = "{\"s\":\"a\\u0000b\"}";     /* no NUL inside strings */
    assert_int_equal(sm_json_parse(nul, strlen(nul), 8, &doc, why, sizeof why),
                     SM_JSON_BAD);

    const char *text = "{\"s\":\"a\\u00e9b\",\"arr\":[1,\"x\"],\"o\":{\"k\":true}}";
    assert_int_equal(sm_json_parse(text, strlen(text), 8, &doc, why, sizeof why),
                     SM_JSON_OK);
    const sm_json_val *root = sm_json_root(doc);
    assert_true(sm_json_is_object(root));
    size_t len;
    const char *s = sm_json_string(sm_json_get(root, "s"), &len);
    assert_int_equal(len, 4);
    assert_memory_equal(s, "a\xc3\xa9" "b", 4);
    const sm_json_val *arr = sm_json_get(root, "arr");
    assert_true(sm_json_is_array(arr));
    assert_int_equal(sm_json_size(arr), 2);
    assert_int_equal(sm_json_integer(sm_json_at(arr, 0)), 1);
    assert_true(sm_json_is_string(sm_json_at(arr, 1)));
    assert_null(sm_json_at(arr, 2));
    assert_null(sm_json_get(arr, "k"));             /* not an object */
    assert_int_equal(sm_json_size(root), 0);        /* not an array */
    assert_null(sm_json_string(arr, &len));
    assert_int_equal(len, 0);
    assert_null(sm_json_get(root, "missing"));

    static const char *const known[] = { "s", "arr", "o", NULL };
    static const char *const fewer[] = { "s", "o", NULL };
    assert_null(sm_json_unknown_key(root, known));
    assert_string_equal(sm_json_unknown_key(root, fewer), "arr");
    sm_json_doc_free(&doc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_growth_and_limit),
        cmocka_unit_test(test_project_types),
        cmocka_unit_test(test_time_text),
        cmocka_unit_test(test_read_depth),
        cmocka_unit_test(test_read_errors_and_views),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
