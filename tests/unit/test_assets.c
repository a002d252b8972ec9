/*  Unit tests for the embedded pages (build/gen/assets.c, generated from
    www/ by deploy/embed.sh): each path serves the bytes of its file in www/
    as read now (so a stale embedding fails), with its content type and a
    quoted content hash as ETag; unknown paths find nothing; and the shopper
    page stays under its 30 KB budget (a phone on a weak market Wi-Fi loads
    it in one request).

    Run from the repository root (make unit does): the files are read from
    www/.                                                                     */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "assets.h"

/* The shopper page's budget, in bytes (30 KB). */
#define S_INDEX_BYTES_MAX (30u * 1024u)
#define S_FILE_BYTES_MAX  (4u * 1024u * 1024u)

/*  Read www/<name> into a malloc'd buffer (returned: caller frees); fails
    the test if it cannot.                                                    */
static unsigned char *
s_read_www(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "www/%s", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s: run the tests from the repository root", path);
    unsigned char *buf = malloc(S_FILE_BYTES_MAX);
    assert_non_null(buf);
    size_t n = fread(buf, 1, S_FILE_BYTES_MAX, f);
    assert_int_equal(ferror(f), 0);
    assert_true(feof(f));
    fclose(f);
    *len = n;
    return buf;
}

/*  The asset at `path` exists and is exactly www/<name>, typed `type`, with
    a quoted non-empty ETag.                                                  */
static void
s_check_same(const char *path, const char *name, const char *type)
{
    size_t len = 0;
    unsigned char *file = s_read_www(name, &len);
    const sm_asset *a = sm_asset_find(path);
    assert_non_null(a);
    assert_string_equal(a->path, path);
    assert_string_equal(a->content_type, type);
    assert_int_equal(a->len, len);
    assert_memory_equal(a->data, file, len);
    assert_int_equal(a->data[a->len], 0);      /* the trailing NUL, not counted */
    size_t elen = strlen(a->etag);
    assert_true(elen > 2);
    assert_int_equal(a->etag[0], '"');
    assert_int_equal(a->etag[elen - 1], '"');
    assert_null(memchr(a->etag + 1, '"', elen - 2));
    free(file);
}

/* "/" serves www/index.html as read now, as HTML. */
static void
test_index_is_the_page(void **state)
{
    (void)state;
    s_check_same("/", "index.html", "text/html; charset=utf-8");
}

/* "/till" serves www/till.html as read now, as HTML. */
static void
test_till_is_the_page(void **state)
{
    (void)state;
    s_check_same("/till", "till.html", "text/html; charset=utf-8");
}

/* "/market" serves www/market.html as read now, as HTML. */
static void
test_market_is_the_page(void **state)
{
    (void)state;
    s_check_same("/market", "market.html", "text/html; charset=utf-8");
    assert_null(sm_asset_find("/market.html"));
}

/* Different content has a different ETag. */
static void
test_etags_follow_content(void **state)
{
    (void)state;
    const sm_asset *index = sm_asset_find("/");
    const sm_asset *till = sm_asset_find("/till");
    assert_non_null(index);
    assert_non_null(till);
    assert_true(index->len != till->len || memcmp(index->data, till->data, index->len) != 0);
    assert_string_not_equal(index->etag, till->etag);
}

/* Unknown paths, near misses and NULL find nothing. */
static void
test_unknown_path_is_null(void **state)
{
    (void)state;
    assert_null(sm_asset_find("/nope"));
    assert_null(sm_asset_find(""));
    assert_null(sm_asset_find("/till/"));
    assert_null(sm_asset_find("/Till"));
    assert_null(sm_asset_find("//"));
    assert_null(sm_asset_find("/../Makefile"));
    assert_null(sm_asset_find(NULL));
}

/* The shopper page is under 30 KB, embedded and on disk. */
static void
test_index_under_budget(void **state)
{
    (void)state;
    const sm_asset *a = sm_asset_find("/");
    assert_non_null(a);
    if (a->len >= S_INDEX_BYTES_MAX)
        fail_msg("www/index.html is %zu bytes: the shopper page must stay under %u",
                 a->len, S_INDEX_BYTES_MAX);
    size_t len = 0;
    unsigned char *file = s_read_www("index.html", &len);
    assert_true(len < S_INDEX_BYTES_MAX);
    free(file);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_is_the_page),
        cmocka_unit_test(test_till_is_the_page),
        cmocka_unit_test(test_market_is_the_page),
        cmocka_unit_test(test_etags_follow_content),
        cmocka_unit_test(test_unknown_path_is_null),
        cmocka_unit_test(test_index_under_budget),
    };
    return cmocka_run_group_tests_name("assets", tests, NULL, NULL);
}
