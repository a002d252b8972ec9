/*  Unit tests of the entry module: encode/decode round trips of every kind,
    every rule of sm_entry_check with its error code (and the decoder's own
    codes), hashing, signing, linking, names and the hybrid logical clock.
    Byte-exact vectors are in test_vectors.c, hostile input in test_codec.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "stallmesh/entry.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "support/fixtures.h"
#include "support/mpw.h"

static const sm_kind s_kinds[] = {
    SM_KIND_ITEM, SM_KIND_STOCK_ADD, SM_KIND_STOCK_MOVE, SM_KIND_SALE,
    SM_KIND_RETURN, SM_KIND_HOLD, SM_KIND_RELEASE, SM_KIND_ADJUST,
    SM_KIND_DROP, SM_KIND_ROSTER_ADMIT, SM_KIND_ROSTER_REVOKE,
};
#define S_NKINDS (sizeof s_kinds / sizeof s_kinds[0])

/*  sm_entry_check gives `code`, and sm_entry_encode refuses with the same
    code (it checks first) or succeeds with it.                              */
static void
s_expect(const sm_entry *e, int code)
{
    uint8_t buf[SM_ENTRY_BYTES_MAX];
    size_t len = 0;

    assert_int_equal(sm_entry_check(e), code);
    assert_int_equal(sm_entry_encode(e, buf, sizeof buf, &len), code);
}

/*  Encode with the independent writer (bypassing the checks) and decode.   */
static int
s_decode_raw(const sm_entry *e)
{
    mpw w;
    sm_entry out;

    mpw_init(&w);
    fx_encode(e, &w);
    return sm_entry_decode(w.b, w.len, &out);
}

/* ------------------------------------------------------------------------ */

/* Every kind encodes to the independent writer's bytes, decodes to an equal struct and re-encodes identically. */
static void
test_round_trip_every_kind(void **state)
{
    (void)state;
    for (size_t i = 0; i < S_NKINDS; i++) {
        sm_entry e, d;
        uint8_t buf[SM_ENTRY_BYTES_MAX], again[SM_ENTRY_BYTES_MAX];
        size_t len = 0, len2 = 0;
        mpw w;

        fx_entry(s_kinds[i], &e);
        assert_int_equal(sm_entry_encode(&e, buf, sizeof buf, &len), 0);
        mpw_init(&w);
        fx_encode(&e, &w);
        assert_int_equal(len, w.len);
        assert_memory_equal(buf, w.b, len);

        memset(&d, 0xee, sizeof d);
        assert_int_equal(sm_entry_decode(buf, len, &d), 0);
        /* Decode fills only the fields of the entry's kind (the rest of the
           union is left as it was), so compare what the entry means: its
           canonical encoding, below; a field the decoder forgot keeps the
           0xee fill and re-encodes differently.                            */
        assert_int_equal(sm_entry_encode(&d, again, sizeof again, &len2), 0);
        assert_int_equal(len2, len);
        assert_memory_equal(again, buf, len);
    }
}

/* A sale of SM_SALE_LINES_MAX lines with long skus and UTF-8 text round-trips. */
static void
test_round_trip_large_sale(void **state)
{
    sm_entry e, d;
    uint8_t buf[SM_ENTRY_BYTES_MAX];
    size_t len = 0;

    (void)state;
    fx_entry(SM_KIND_SALE, &e);
    e.body.u.sale.line_count = SM_SALE_LINES_MAX;
    for (uint32_t i = 0; i < SM_SALE_LINES_MAX; i++) {
        sm_line *l = &e.body.u.sale.lines[i];
        memset(l->sku, 'x', SM_SKU_BYTES_MAX);
        l->sku[SM_SKU_BYTES_MAX] = '\0';
        l->sku[0] = (char)('A' + i % 26);
        l->sku[1] = (char)('A' + i / 26);
        l->qty = SM_QTY_MAX;
        l->price = SM_PRICE_MAX;
    }
    strcpy(e.body.u.sale.external_id, "caf\xc3\xa9-\xe2\x98\x95-\xf0\x9f\x8d\x93");
    e.seq = SM_SEQ_MAX;
    e.hlc = UINT64_MAX;
    e.body.u.sale.hold_seq = SM_SEQ_MAX;
    assert_int_equal(sm_entry_encode(&e, buf, sizeof buf, &len), 0);
    assert_int_equal(sm_entry_decode(buf, len, &d), 0);
    assert_memory_equal(&d, &e, sizeof e);
}

/* Encoding refuses with SM_ETOOBIG when the buffer is one byte short, and fits exactly. */
static void
test_encode_capacity(void **state)
{
    sm_entry e;
    uint8_t buf[SM_ENTRY_BYTES_MAX];
    size_t len = 0, len2 = 0;

    (void)state;
    fx_entry(SM_KIND_SALE, &e);
    assert_int_equal(sm_entry_encode(&e, buf, sizeof buf, &len), 0);
    assert_int_equal(sm_entry_encode(&e, buf, len, &len2), 0);
    assert_int_equal(len2, len);
    assert_int_equal(sm_entry_encode(&e, buf, len - 1, &len2), SM_ETOOBIG);
    assert_int_equal(sm_entry_encode(&e, buf, 0, &len2), SM_ETOOBIG);
}

/* A version other than 1 is SM_EVERSION, in the struct and on the wire. */
static void
test_check_version(void **state)
{
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_STOCK_ADD, &e);
    e.version = 2;
    s_expect(&e, SM_EVERSION);
    assert_int_equal(s_decode_raw(&e), SM_EVERSION);
    e.version = 0;
    s_expect(&e, SM_EVERSION);
    assert_int_equal(s_decode_raw(&e), SM_EVERSION);
}

/* Kinds 0 and SM_KIND_MAX+1 are SM_EKIND, in the struct and on the wire. */
static void
test_check_kind(void **state)
{
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_RELEASE, &e);
    e.body.kind = (sm_kind)0;
    s_expect(&e, SM_EKIND);
    assert_int_equal(s_decode_raw(&e), SM_EKIND);
    e.body.kind = (sm_kind)(SM_KIND_MAX + 1);
    s_expect(&e, SM_EKIND);
    assert_int_equal(s_decode_raw(&e), SM_EKIND);
}

/* seq must be 1..SM_SEQ_MAX and seq 1 must have an all-zero prev (SM_EBODY). */
static void
test_check_seq_and_prev(void **state)
{
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_STOCK_ADD, &e);
    e.seq = 0;
    s_expect(&e, SM_EBODY);
    assert_int_equal(s_decode_raw(&e), SM_EBODY);
    e.seq = SM_SEQ_MAX + 1;
    s_expect(&e, SM_EBODY);
    e.seq = SM_SEQ_MAX;
    s_expect(&e, 0);
    e.seq = 1;                      /* fixture prev is non-zero */
    s_expect(&e, SM_EBODY);
    assert_int_equal(s_decode_raw(&e), SM_EBODY);
    memset(e.prev.b, 0, sizeof e.prev.b);
    s_expect(&e, 0);
    e.seq = 2;                      /* a zero prev later on is not checked */
    s_expect(&e, 0);
}

/* A sku must be 1..SM_SKU_BYTES_MAX bytes of UTF-8 without control characters; spaces and non-ASCII are fine. */
static void
test_check_sku(void **state)
{
    static const char *const bad[] = {
        "", "a\tb", "a\nb", "a\x7f", "\x1b[31m",
        "\xc3",             /* truncated sequence */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80", "\x80", "\xff",
    };
    static const char *const good[] = {
        "A", "TEE BLK M", "K\xc3\xa4se", "\xe2\x98\x95", "\xf0\x9f\x8d\x93",
        "\xef\xbf\xbd", "~!@#$%^&*()",
    };
    sm_entry e;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fx_entry(SM_KIND_STOCK_ADD, &e);
        strcpy(e.body.u.stock_add.sku, bad[i]);
        s_expect(&e, SM_EBODY);
        assert_int_equal(s_decode_raw(&e), SM_EBODY);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        fx_entry(SM_KIND_STOCK_ADD, &e);
        strcpy(e.body.u.stock_add.sku, good[i]);
        s_expect(&e, 0);
        assert_int_equal(s_decode_raw(&e), 0);
    }
    fx_entry(SM_KIND_STOCK_ADD, &e);
    memset(e.body.u.stock_add.sku, 'x', SM_SKU_BYTES_MAX);
    s_expect(&e, 0);
    /* not NUL-terminated within the field */
    memset(e.body.u.stock_add.sku, 'x', SM_SKU_BYTES_MAX + 1);
    s_expect(&e, SM_EBODY);
}

/* On the wire, a sku one byte over the limit and a str with an embedded NUL are SM_EBODY. */
static void
test_decode_long_and_nul_strings(void **state)
{
    sm_entry e, out;
    mpw w;
    char sku[SM_SKU_BYTES_MAX + 1];

    (void)state;
    fx_entry(SM_KIND_STOCK_ADD, &e);
    memset(sku, 'x', sizeof sku);
    /* Rebuild the body by hand: [sku(65), 40] */
    mpw_init(&w);
    mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, e.seq); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_STOCK_ADD);
    mpw_arr(&w, 2); mpw_strn(&w, sku, sizeof sku); mpw_uint(&w, 40);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EBODY);

    mpw_init(&w);
    mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, e.seq); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_STOCK_ADD);
    mpw_arr(&w, 2); mpw_strn(&w, "AB\0CD", 5); mpw_uint(&w, 40);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EBODY);

    /* the same with a 4-letter currency: SM_EMONEY */
    fx_entry(SM_KIND_ITEM, &e);
    mpw_init(&w);
    mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, e.seq); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_ITEM);
    mpw_arr(&w, 4); mpw_str(&w, "A"); mpw_str(&w, "B"); mpw_uint(&w, 1);
    mpw_str(&w, "EURO");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMONEY);
}

/* Item and member names are 1..SM_NAME_BYTES_MAX bytes of text; reasons and external ids may be empty but not over their limits. */
static void
test_check_names_reasons_extid(void **state)
{
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_ITEM, &e);
    e.body.u.item.name[0] = '\0';
    s_expect(&e, SM_EBODY);
    memset(e.body.u.item.name, 'n', SM_NAME_BYTES_MAX);
    s_expect(&e, 0);
    e.body.u.item.name[5] = '\r';
    s_expect(&e, SM_EBODY);

    fx_entry(SM_KIND_ROSTER_ADMIT, &e);
    e.body.u.admit.name[0] = '\0';
    s_expect(&e, SM_EBODY);

    fx_entry(SM_KIND_ADJUST, &e);
    e.body.u.adjust.reason[0] = '\0';
    s_expect(&e, 0);
    memset(e.body.u.adjust.reason, 'r', SM_REASON_BYTES_MAX);
    s_expect(&e, 0);
    memset(e.body.u.adjust.reason, 'r', SM_REASON_BYTES_MAX + 1);
    s_expect(&e, SM_EBODY);

    fx_entry(SM_KIND_RETURN, &e);
    strcpy(e.body.u.ret.reason, "bad\x01");
    s_expect(&e, SM_EBODY);

    fx_entry(SM_KIND_SALE, &e);
    e.body.u.sale.external_id[0] = '\0';
    s_expect(&e, 0);
    memset(e.body.u.sale.external_id, 'i', SM_EXTID_BYTES_MAX);
    s_expect(&e, 0);
    memset(e.body.u.sale.external_id, 'i', SM_EXTID_BYTES_MAX + 1);
    s_expect(&e, SM_EBODY);
}

/* Quantities must be 1..SM_QTY_MAX in every kind and line that has one (SM_EQTY). */
static void
test_check_quantities(void **state)
{
    static const uint32_t bad[] = { 0, SM_QTY_MAX + 1, UINT32_MAX };
    sm_entry e;

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        uint32_t q = bad[i];
        fx_entry(SM_KIND_STOCK_ADD, &e); e.body.u.stock_add.qty = q; s_expect(&e, SM_EQTY);
        assert_int_equal(s_decode_raw(&e), SM_EQTY);
        fx_entry(SM_KIND_STOCK_MOVE, &e); e.body.u.stock_move.qty = q; s_expect(&e, SM_EQTY);
        fx_entry(SM_KIND_HOLD, &e); e.body.u.hold.qty = q; s_expect(&e, SM_EQTY);
        fx_entry(SM_KIND_DROP, &e); e.body.u.drop.qty = q; s_expect(&e, SM_EQTY);
        fx_entry(SM_KIND_SALE, &e); e.body.u.sale.lines[0].qty = q; s_expect(&e, SM_EQTY);
        assert_int_equal(s_decode_raw(&e), SM_EQTY);
        fx_entry(SM_KIND_RETURN, &e); e.body.u.ret.lines[0].qty = q; s_expect(&e, SM_EQTY);
    }
    fx_entry(SM_KIND_STOCK_ADD, &e);
    e.body.u.stock_add.qty = SM_QTY_MAX;
    s_expect(&e, 0);
    e.body.u.stock_add.qty = 1;
    s_expect(&e, 0);
}

/* Negative numbers on the wire: a quantity is SM_EQTY, a price SM_EMONEY, anything else SM_EMALFORMED. */
static void
test_decode_negative_numbers(void **state)
{
    sm_entry e, out;
    mpw w;

    (void)state;
    fx_entry(SM_KIND_STOCK_ADD, &e);
#define S_HEAD(kind) do { mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1);      \
        mpw_bin(&w, e.market.b, 32); mpw_bin(&w, e.origin.b, 32);             \
        mpw_uint(&w, e.seq); mpw_bin(&w, e.prev.b, 32); mpw_uint(&w, e.hlc);  \
        mpw_uint(&w, (kind)); } while (0)
    S_HEAD(SM_KIND_STOCK_ADD);
    mpw_arr(&w, 2); mpw_str(&w, "A"); mpw_int(&w, -1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EQTY);

    S_HEAD(SM_KIND_SALE);
    mpw_arr(&w, 6); mpw_arr(&w, 1); mpw_arr(&w, 3); mpw_str(&w, "A");
    mpw_int(&w, -2); mpw_uint(&w, 5);
    mpw_str(&w, "EUR"); mpw_uint(&w, 1); mpw_uint(&w, 1); mpw_str(&w, ""); mpw_uint(&w, 0);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EQTY);

    S_HEAD(SM_KIND_SALE);
    mpw_arr(&w, 6); mpw_arr(&w, 1); mpw_arr(&w, 3); mpw_str(&w, "A");
    mpw_uint(&w, 2); mpw_int(&w, -500);
    mpw_str(&w, "EUR"); mpw_uint(&w, 1); mpw_uint(&w, 1); mpw_str(&w, ""); mpw_uint(&w, 0);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMONEY);

    S_HEAD(SM_KIND_ITEM);
    mpw_arr(&w, 4); mpw_str(&w, "A"); mpw_str(&w, "B"); mpw_int(&w, -1); mpw_str(&w, "EUR");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMONEY);

    S_HEAD(SM_KIND_RELEASE);
    mpw_arr(&w, 1); mpw_int(&w, -1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);

    S_HEAD(SM_KIND_HOLD);
    mpw_arr(&w, 3); mpw_str(&w, "A"); mpw_uint(&w, 1); mpw_int(&w, -1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);

    /* a negative seq in the header */
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1);
    mpw_bin(&w, e.market.b, 32); mpw_bin(&w, e.origin.b, 32);
    mpw_int(&w, -3); mpw_bin(&w, e.prev.b, 32); mpw_uint(&w, e.hlc);
    mpw_uint(&w, SM_KIND_RELEASE); mpw_arr(&w, 1); mpw_uint(&w, 1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);

    /* a price beyond int64 and a quantity beyond uint32 */
    S_HEAD(SM_KIND_ITEM);
    mpw_arr(&w, 4); mpw_str(&w, "A"); mpw_str(&w, "B"); mpw_uint(&w, UINT64_MAX); mpw_str(&w, "EUR");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMONEY);
    S_HEAD(SM_KIND_STOCK_ADD);
    mpw_arr(&w, 2); mpw_str(&w, "A"); mpw_uint(&w, 1ULL << 32);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EQTY);
    /* an enum beyond uint8 */
    S_HEAD(SM_KIND_ROSTER_ADMIT);
    mpw_arr(&w, 3); mpw_bin(&w, e.market.b, 32); mpw_str(&w, "N"); mpw_uint(&w, 257);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EBODY);
#undef S_HEAD
}

/* Prices must be 0..SM_PRICE_MAX and currencies three ASCII capitals (SM_EMONEY). */
static void
test_check_money(void **state)
{
    static const char *const bad_cur[] = { "", "eur", "EU", "E1R", "\xc3\x84U", "EU ", "E\x01R" };
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_ITEM, &e);
    e.body.u.item.price = -1;
    s_expect(&e, SM_EMONEY);
    e.body.u.item.price = SM_PRICE_MAX + 1;
    s_expect(&e, SM_EMONEY);
    assert_int_equal(s_decode_raw(&e), SM_EMONEY);
    e.body.u.item.price = SM_PRICE_MAX;
    s_expect(&e, 0);
    e.body.u.item.price = 0;
    s_expect(&e, 0);
    for (size_t i = 0; i < sizeof bad_cur / sizeof bad_cur[0]; i++) {
        fx_entry(SM_KIND_ITEM, &e);
        strcpy(e.body.u.item.currency, bad_cur[i]);
        s_expect(&e, SM_EMONEY);
        assert_int_equal(s_decode_raw(&e), SM_EMONEY);
        fx_entry(SM_KIND_SALE, &e);
        strcpy(e.body.u.sale.currency, bad_cur[i]);
        s_expect(&e, SM_EMONEY);
    }
    fx_entry(SM_KIND_ITEM, &e);
    memcpy(e.body.u.item.currency, "EURO", 4);     /* not terminated */
    s_expect(&e, SM_EMONEY);
    fx_entry(SM_KIND_SALE, &e);
    e.body.u.sale.lines[0].price = -5;
    s_expect(&e, SM_EMONEY);
    e.body.u.sale.lines[0].price = 0;               /* free gifts are sales */
    s_expect(&e, 0);
}

/* Source, payment and role must be within their enums (SM_EBODY). */
static void
test_check_enums(void **state)
{
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_SALE, &e);
    e.body.u.sale.source = 0; s_expect(&e, SM_EBODY);
    assert_int_equal(s_decode_raw(&e), SM_EBODY);
    e.body.u.sale.source = SM_SOURCE_PREVIEW + 1; s_expect(&e, SM_EBODY);
    e.body.u.sale.source = SM_SOURCE_PREVIEW; s_expect(&e, 0);
    e.body.u.sale.payment = 0; s_expect(&e, SM_EBODY);
    e.body.u.sale.payment = SM_PAY_OTHER + 1; s_expect(&e, SM_EBODY);
    e.body.u.sale.payment = SM_PAY_OTHER; s_expect(&e, 0);
    fx_entry(SM_KIND_ROSTER_ADMIT, &e);
    e.body.u.admit.role = 0; s_expect(&e, SM_EBODY);
    e.body.u.admit.role = SM_ROLE_RELAY + 1; s_expect(&e, SM_EBODY);
    assert_int_equal(s_decode_raw(&e), SM_EBODY);
    e.body.u.admit.role = SM_ROLE_ORGANISER; s_expect(&e, 0);
}

/* Sale and return lines: 1..SM_SALE_LINES_MAX, distinct skus, no price in returns (SM_EBODY). */
static void
test_check_lines(void **state)
{
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_SALE, &e);
    e.body.u.sale.line_count = 0;
    s_expect(&e, SM_EBODY);
    assert_int_equal(s_decode_raw(&e), SM_EBODY);
    e.body.u.sale.line_count = SM_SALE_LINES_MAX + 1;
    s_expect(&e, SM_EBODY);
    e.body.u.sale.line_count = 2;
    e.body.u.sale.lines[1] = e.body.u.sale.lines[0];
    s_expect(&e, SM_EBODY);
    assert_int_equal(s_decode_raw(&e), SM_EBODY);
    strcpy(e.body.u.sale.lines[1].sku, "TEE-BLK-L");
    s_expect(&e, 0);

    fx_entry(SM_KIND_RETURN, &e);
    e.body.u.ret.line_count = 0;
    s_expect(&e, SM_EBODY);
    e.body.u.ret.line_count = 2;
    e.body.u.ret.lines[1] = e.body.u.ret.lines[0];
    s_expect(&e, SM_EBODY);
    strcpy(e.body.u.ret.lines[1].sku, "TEE-BLK-L");
    s_expect(&e, 0);
    e.body.u.ret.lines[1].price = 1;
    s_expect(&e, SM_EBODY);
    e.body.u.ret.lines[1].price = 0;
    e.body.u.ret.lines[1].sku[0] = '\0';
    s_expect(&e, SM_EBODY);
}

/* References to other entries: sale_seq and release hold_seq >= 1, hold_seq and upto_seq <= SM_SEQ_MAX (SM_EBODY). */
static void
test_check_references(void **state)
{
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_RETURN, &e);
    e.body.u.ret.sale_seq = 0; s_expect(&e, SM_EBODY);
    e.body.u.ret.sale_seq = SM_SEQ_MAX + 1; s_expect(&e, SM_EBODY);
    fx_entry(SM_KIND_RELEASE, &e);
    e.body.u.release.hold_seq = 0; s_expect(&e, SM_EBODY);
    assert_int_equal(s_decode_raw(&e), SM_EBODY);
    fx_entry(SM_KIND_SALE, &e);
    e.body.u.sale.hold_seq = 0; s_expect(&e, 0);
    e.body.u.sale.hold_seq = SM_SEQ_MAX + 1; s_expect(&e, SM_EBODY);
    fx_entry(SM_KIND_ROSTER_REVOKE, &e);
    e.body.u.revoke.upto_seq = 0; s_expect(&e, 0);
    e.body.u.revoke.upto_seq = SM_SEQ_MAX + 1; s_expect(&e, SM_EBODY);
}

/* A stock.move to its own origin is SM_EBODY. */
static void
test_check_move_to_self(void **state)
{
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_STOCK_MOVE, &e);
    e.body.u.stock_move.to = e.origin;
    s_expect(&e, SM_EBODY);
    assert_int_equal(s_decode_raw(&e), SM_EBODY);
}

/* An adjust delta must be non-zero with |delta| <= SM_QTY_MAX (SM_EQTY), either sign. */
static void
test_check_adjust(void **state)
{
    static const int64_t bad[] = { 0, SM_QTY_MAX + 1, -(int64_t)SM_QTY_MAX - 1, INT64_MIN, INT64_MAX };
    static const int64_t good[] = { 1, -1, SM_QTY_MAX, -(int64_t)SM_QTY_MAX, -32, -33, -129, 200 };
    sm_entry e;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fx_entry(SM_KIND_ADJUST, &e);
        e.body.u.adjust.delta = bad[i];
        s_expect(&e, SM_EQTY);
        assert_int_equal(s_decode_raw(&e), SM_EQTY);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        fx_entry(SM_KIND_ADJUST, &e);
        e.body.u.adjust.delta = good[i];
        s_expect(&e, 0);
        assert_int_equal(s_decode_raw(&e), 0);
    }
}

/* Hold expiry and drop start are unix ms within 48 bits, like the HLC (SM_EBODY). */
static void
test_check_timestamps(void **state)
{
    sm_entry e;

    (void)state;
    fx_entry(SM_KIND_HOLD, &e);
    e.body.u.hold.expires_ms = (1ULL << 48) - 1; s_expect(&e, 0);
    e.body.u.hold.expires_ms = 1ULL << 48; s_expect(&e, SM_EBODY);
    assert_int_equal(s_decode_raw(&e), SM_EBODY);
    fx_entry(SM_KIND_DROP, &e);
    e.body.u.drop.starts_ms = 0; s_expect(&e, 0);
    e.body.u.drop.starts_ms = UINT64_MAX; s_expect(&e, SM_EBODY);
}

/* Decoding more than SM_ENTRY_BYTES_MAX bytes is SM_ETOOBIG before anything is read. */
static void
test_decode_too_big(void **state)
{
    static uint8_t buf[SM_ENTRY_BYTES_MAX + 1];
    sm_entry out;

    (void)state;
    assert_int_equal(sm_entry_decode(buf, sizeof buf, &out), SM_ETOOBIG);
    assert_int_equal(sm_entry_decode(buf, 0, &out), SM_ETRUNC);
}

/* ------------------------------------------------------------------------ */

static void
s_keys(uint8_t seed_byte, uint8_t pk[32], uint8_t sk[64])
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
}

/* The entry hash is unkeyed BLAKE2b-256 of the bytes. */
static void
test_hash_is_blake2b(void **state)
{
    sm_entry e;
    uint8_t buf[SM_ENTRY_BYTES_MAX], want[32];
    size_t len = 0;
    sm_hash h;

    (void)state;
    fx_entry(SM_KIND_SALE, &e);
    assert_int_equal(sm_entry_encode(&e, buf, sizeof buf, &len), 0);
    sm_entry_hash(buf, len, &h);
    crypto_generichash(want, 32, buf, len, NULL, 0);
    assert_memory_equal(h.b, want, 32);
    buf[len - 1] ^= 1;
    sm_entry_hash(buf, len, &h);
    assert_memory_not_equal(h.b, want, 32);
}

/* A signature verifies with the origin key and fails (SM_ESIG) after any flipped bit or with another key. */
static void
test_sign_verify(void **state)
{
    sm_entry e;
    uint8_t buf[SM_ENTRY_BYTES_MAX], pk[32], sk[64], pk2[32], sk2[64], sig[64], sig2[64];
    size_t len = 0;
    sm_id origin, other;

    (void)state;
    s_keys(7, pk, sk);
    s_keys(8, pk2, sk2);
    memcpy(origin.b, pk, 32);
    memcpy(other.b, pk2, 32);
    fx_entry(SM_KIND_ITEM, &e);
    e.origin = origin;
    assert_int_equal(sm_entry_encode(&e, buf, sizeof buf, &len), 0);
    sm_entry_sign(buf, len, sk, sig);
    assert_int_equal(sm_entry_verify(buf, len, sig, &origin), 0);
    sm_entry_sign(buf, len, sk, sig2);
    assert_memory_equal(sig, sig2, 64);            /* deterministic */
    assert_int_equal(sm_entry_verify(buf, len, sig, &other), SM_ESIG);

    for (size_t bit = 0; bit < 64 * 8; bit += 13) {
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(sm_entry_verify(buf, len, sig, &origin), SM_ESIG);
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x20;
        assert_int_equal(sm_entry_verify(buf, len, sig, &origin), SM_ESIG);
        buf[i] ^= 0x20;
    }
    assert_int_equal(sm_entry_verify(buf, len - 1, sig, &origin), SM_ESIG);
    assert_int_equal(sm_entry_verify(buf, len, sig, &origin), 0);
}

/* The link hash is BLAKE2b-256(bytes || sig): it differs from the hash and changes with the signature. */
static void
test_link_covers_signature(void **state)
{
    sm_entry e;
    uint8_t buf[SM_ENTRY_BYTES_MAX + 64], pk[32], sk[64], sig[64], want[32];
    size_t len = 0;
    sm_hash link, link2, h;

    (void)state;
    s_keys(9, pk, sk);
    fx_entry(SM_KIND_STOCK_ADD, &e);
    memcpy(e.origin.b, pk, 32);
    assert_int_equal(sm_entry_encode(&e, buf, SM_ENTRY_BYTES_MAX, &len), 0);
    sm_entry_sign(buf, len, sk, sig);
    sm_entry_link(buf, len, sig, &link);
    sm_entry_hash(buf, len, &h);
    assert_memory_not_equal(link.b, h.b, 32);
    memcpy(buf + len, sig, 64);
    crypto_generichash(want, 32, buf, len + 64, NULL, 0);
    assert_memory_equal(link.b, want, 32);
    sig[63] ^= 0x80;
    sm_entry_link(buf, len, sig, &link2);
    assert_memory_not_equal(link.b, link2.b, 32);
}

/* ------------------------------------------------------------------------ */

/* Every kind, source, payment and role name parses back to its value; unknown values give NULL and 0. */
static void
test_names(void **state)
{
    (void)state;
    for (int k = SM_KIND_MIN; k <= SM_KIND_MAX; k++) {
        const char *n = sm_kind_name((sm_kind)k);
        assert_non_null(n);
        assert_int_equal(sm_kind_parse(n), k);
    }
    assert_string_equal(sm_kind_name(SM_KIND_STOCK_ADD), "stock.add");
    assert_string_equal(sm_kind_name(SM_KIND_ROSTER_REVOKE), "roster.revoke");
    assert_null(sm_kind_name((sm_kind)0));
    assert_null(sm_kind_name((sm_kind)(SM_KIND_MAX + 1)));
    assert_int_equal(sm_kind_parse("stock"), 0);
    assert_int_equal(sm_kind_parse(""), 0);
    assert_int_equal(sm_kind_parse("Sale"), 0);

    for (int s = SM_SOURCE_IN_PERSON; s <= SM_SOURCE_PREVIEW; s++)
        assert_int_equal(sm_source_parse(sm_source_name(s)), s);
    assert_string_equal(sm_source_name(SM_SOURCE_IN_PERSON), "in_person");
    assert_null(sm_source_name(0));
    assert_null(sm_source_name(-1));
    assert_null(sm_source_name(5));
    assert_int_equal(sm_source_parse("tv"), 0);

    for (int p = SM_PAY_CARD; p <= SM_PAY_OTHER; p++)
        assert_int_equal(sm_payment_parse(sm_payment_name(p)), p);
    assert_string_equal(sm_payment_name(SM_PAY_OFFLINE_CARD), "offline_card");
    assert_null(sm_payment_name(6));
    assert_int_equal(sm_payment_parse("cheque"), 0);

    for (int r = SM_ROLE_STALL; r <= SM_ROLE_RELAY; r++)
        assert_int_equal(sm_role_parse(sm_role_name(r)), r);
    assert_string_equal(sm_role_name(SM_ROLE_ORGANISER), "organiser");
    assert_null(sm_role_name(4));
    assert_int_equal(sm_role_parse("organizer"), 0);
}

/* ------------------------------------------------------------------------ */

/* sm_hlc_next follows the wall clock forward, never goes back when the clock does, and carries a full counter into the milliseconds. */
static void
test_hlc_next(void **state)
{
    uint64_t h;

    (void)state;
    h = sm_hlc_next(0, 1000);
    assert_int_equal(h, SM_HLC_MAKE(1000, 0));
    h = sm_hlc_next(h, 1000);
    assert_int_equal(h, SM_HLC_MAKE(1000, 1));
    h = sm_hlc_next(h, 2000);
    assert_int_equal(h, SM_HLC_MAKE(2000, 0));
    /* the clock goes back a second: keep counting from the last value */
    uint64_t prev = h;
    for (int i = 0; i < 1000; i++) {
        h = sm_hlc_next(h, 1000);
        assert_true(h > prev);
        prev = h;
    }
    assert_int_equal(SM_HLC_MS(h), 2000);
    /* counter overflow advances the milliseconds */
    h = sm_hlc_next(SM_HLC_MAKE(5000, 0xffff), 5000);
    assert_int_equal(h, SM_HLC_MAKE(5001, 0));
    h = sm_hlc_next(SM_HLC_MAKE(5000, 0xfffe), 4000);
    assert_int_equal(h, SM_HLC_MAKE(5000, 0xffff));
    /* 70000 events in the same millisecond stay strictly increasing */
    h = SM_HLC_MAKE(7000, 0);
    for (int i = 0; i < 70000; i++) {
        uint64_t n = sm_hlc_next(h, 7000);
        assert_true(n > h);
        h = n;
    }
    assert_int_equal(SM_HLC_MS(h), 7001);
    /* saturation at the ends */
    assert_int_equal(sm_hlc_next(UINT64_MAX, 0), UINT64_MAX);
    assert_int_equal(sm_hlc_next(0, UINT64_MAX), SM_HLC_MAKE((1ULL << 48) - 1, 0));
}

/* sm_hlc_merge takes the max of last, remote and the wall clock, but ignores remotes more than SM_FUTURE_SKEW_MS ahead. */
static void
test_hlc_merge(void **state)
{
    uint64_t now = 1717000000000ULL;
    uint64_t last = SM_HLC_MAKE(now - 10, 4);

    (void)state;
    /* remote behind: the wall clock wins */
    assert_int_equal(sm_hlc_merge(last, SM_HLC_MAKE(now - 50, 9), now), SM_HLC_MAKE(now, 0));
    /* remote slightly ahead: adopted */
    uint64_t r = SM_HLC_MAKE(now + 5000, 3);
    uint64_t m = sm_hlc_merge(last, r, now);
    assert_int_equal(m, r);
    assert_true(sm_hlc_next(m, now) > r);
    /* exactly at the skew limit: adopted */
    r = SM_HLC_MAKE(now + SM_FUTURE_SKEW_MS, 0xffff);
    assert_int_equal(sm_hlc_merge(last, r, now), r);
    /* one millisecond beyond: ignored */
    r = SM_HLC_MAKE(now + SM_FUTURE_SKEW_MS + 1, 0);
    assert_int_equal(sm_hlc_merge(last, r, now), SM_HLC_MAKE(now, 0));
    assert_int_equal(sm_hlc_merge(UINT64_MAX - 1, UINT64_MAX, 0), UINT64_MAX - 1);
    /* last ahead of everything: kept */
    last = SM_HLC_MAKE(now + 100, 1);
    assert_int_equal(sm_hlc_merge(last, SM_HLC_MAKE(now + 50, 0), now), last);
    /* a clock near the top does not overflow the skew arithmetic */
    assert_int_equal(sm_hlc_merge(0, SM_HLC_MAKE(10, 0), UINT64_MAX), SM_HLC_MAKE((1ULL << 48) - 1, 0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_kind),
        cmocka_unit_test(test_round_trip_large_sale),
        cmocka_unit_test(test_encode_capacity),
        cmocka_unit_test(test_check_version),
        cmocka_unit_test(test_check_kind),
        cmocka_unit_test(test_check_seq_and_prev),
        cmocka_unit_test(test_check_sku),
        cmocka_unit_test(test_decode_long_and_nul_strings),
        cmocka_unit_test(test_check_names_reasons_extid),
        cmocka_unit_test(test_check_quantities),
        cmocka_unit_test(test_decode_negative_numbers),
        cmocka_unit_test(test_check_money),
        cmocka_unit_test(test_check_enums),
        cmocka_unit_test(test_check_lines),
        cmocka_unit_test(test_check_references),
        cmocka_unit_test(test_check_move_to_self),
        cmocka_unit_test(test_check_adjust),
        cmocka_unit_test(test_check_timestamps),
        cmocka_unit_test(test_decode_too_big),
        cmocka_unit_test(test_hash_is_blake2b),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_link_covers_signature),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_hlc_next),
        cmocka_unit_test(test_hlc_merge),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
