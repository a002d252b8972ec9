/*  Unit tests of the codec on hostile input: the msgpack scanner (every
    length form truncated, huge declared lengths, depth, types, trailing
    bytes), canonical-form refusals, join-token bodies, and a bounded
    random-input loop (fixed seed) that must never crash and must either
    refuse or produce an entry that re-encodes to the same bytes.            */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "codec.h"
#include "stallmesh/entry.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "stallmesh/token.h"
#include "support/fixtures.h"
#include "support/mpw.h"

#define S_DEPTH SM_MSGPACK_DEPTH_MAX

static int
s_scan_hex(const char *hex)
{
    uint8_t b[256];
    long n = mpw_unhex(hex, b, sizeof b);
    assert_true(n >= 0);
    return sm__msgpack_scan(b, (size_t)n, S_DEPTH);
}

/* ------------------------------------------------------------------------ */

/* Every allowed type and length form scans as one complete object. */
static void
test_scan_accepts_allowed_types(void **state)
{
    static const char *const ok[] = {
        "00", "7f", "e0", "ff", "c0", "c2", "c3",
        "cc80", "cd0100", "ce00010000", "cf0000000100000000",
        "d0df", "d1ff00", "d2ffff0000", "d3ffffffff00000000",
        "a0", "a3616263", "d90161", "da000161", "db0000000161",
        "c40100", "c5000100", "c600000001ff",
        "90", "920102", "dc0001c0", "dd00000001c3",
        "93a0c40000", "9191919191c0",      /* depth 5 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_int_equal(s_scan_hex(ok[i]), 0);
}

/* Maps, floats, ext types and the never-used 0xc1 are SM_EMALFORMED, also when nested. */
static void
test_scan_refuses_other_types(void **state)
{
    static const char *const bad[] = {
        "80", "8f", "de0000", "df00000000", "81c0c0",
        "ca00000000", "cb0000000000000000",
        "c70100ff", "c8000100ff", "c900000001000f", "d40100", "d5010000",
        "d601000000", "d70100000000000000", "d801000000000000000000000000000000",
        "c1", "92c0c1", "9180", "91ca00000000",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(s_scan_hex(bad[i]), SM_EMALFORMED);
}

/* Every length form cut short by one byte (and every shorter prefix) is SM_ETRUNC. */
static void
test_scan_truncated_forms(void **state)
{
    static const char *const whole[] = {
        "cc80", "cd0100", "ce00010000", "cf0000000100000000",
        "d0df", "d1ff00", "d2ffff0000", "d3ffffffff00000000",
        "a3616263", "d903616263", "da0003616263", "db00000003616263",
        "c403010203", "c500030102ff", "c600000003010203",
        "93010203", "dc0003010203", "dd00000003010203", "92a161a162",
        "9291c0c0",
    };
    (void)state;
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        uint8_t b[64];
        long n = mpw_unhex(whole[i], b, sizeof b);
        assert_true(n > 0);
        assert_int_equal(sm__msgpack_scan(b, (size_t)n, S_DEPTH), 0);
        for (long cut = 0; cut < n; cut++)
            assert_int_equal(sm__msgpack_scan(b, (size_t)cut, S_DEPTH), SM_ETRUNC);
    }
}

/* Declared lengths and counts beyond the buffer are SM_ETRUNC, counts at the array header before any element is read. */
static void
test_scan_huge_lengths(void **state)
{
    static const char *const bad[] = {
        "ddff000000", "ddffffffff", "dcffff", "dbffffffff", "daffff", "d9ff",
        "c6ffffffff", "c5ffff", "c4ff",
        "9f", "dc0010c0c0c0", "dd00000003c0c0",
        "92dd7fffffffc0",            /* an inner array owes more than remains */
        "929f", "9291c0",            /* elements of outer arrays are owed too */
        "92da0005616263",
        /* refused at the header, before the (invalid) first element */
        "ddff00000080", "dc7fff80", "93c1c1",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(s_scan_hex(bad[i]), SM_ETRUNC);
}

/* Arrays nested up to depth_max scan; one more level is SM_EMALFORMED; a scalar needs no depth. */
static void
test_scan_depth(void **state)
{
    uint8_t b[64];

    (void)state;
    for (unsigned d = 0; d <= 10; d++) {
        memset(b, 0x91, d);
        b[d] = 0xc0;
        int want = d <= S_DEPTH ? 0 : SM_EMALFORMED;
        assert_int_equal(sm__msgpack_scan(b, d + 1, S_DEPTH), want);
    }
    b[0] = 0x01;
    assert_int_equal(sm__msgpack_scan(b, 1, 0), 0);
    b[0] = 0x90;
    assert_int_equal(sm__msgpack_scan(b, 1, 0), SM_EMALFORMED);
    assert_int_equal(sm__msgpack_scan(b, 1, 1), 0);
    /* wide rather than deep is fine */
    uint8_t wide[1 + 2 + 40];
    wide[0] = 0xdc; wide[1] = 0; wide[2] = 40;
    memset(wide + 3, 0x90, 40);
    assert_int_equal(sm__msgpack_scan(wide, sizeof wide, 2), 0);
}

/* Anything after the one object is SM_EMALFORMED; nothing at all is SM_ETRUNC. */
static void
test_scan_trailing_and_empty(void **state)
{
    (void)state;
    assert_int_equal(s_scan_hex("0000"), SM_EMALFORMED);
    assert_int_equal(s_scan_hex("91c0c0"), SM_EMALFORMED);
    assert_int_equal(s_scan_hex("a16100"), SM_EMALFORMED);
    assert_int_equal(sm__msgpack_scan(NULL, 0, S_DEPTH), SM_ETRUNC);
}

/* A valid entry with one extra byte, or one byte short, is refused as malformed or truncated. */
static void
test_decode_trailing_and_truncated(void **state)
{
    sm_entry e, out;
    uint8_t buf[SM_ENTRY_BYTES_MAX];
    size_t len = 0;

    (void)state;
    fx_entry(SM_KIND_SALE, &e);
    assert_int_equal(sm_entry_encode(&e, buf, sizeof buf - 1, &len), 0);
    buf[len] = 0x00;
    assert_int_equal(sm_entry_decode(buf, len + 1, &out), SM_EMALFORMED);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(sm_entry_decode(buf, cut, &out), SM_ETRUNC);
    assert_int_equal(sm_entry_decode(buf, len, &out), 0);
}

/* Non-shortest integers, str16 for a short string, bin16 for a key and array16 for 8 fields are SM_ENONCANON. */
static void
test_decode_non_canonical(void **state)
{
    sm_entry e, out;
    mpw w;

    (void)state;
    fx_entry(SM_KIND_ADJUST, &e);
    e.body.u.adjust.delta = -5;
    /* the canonical bytes decode */
    mpw_init(&w); fx_encode(&e, &w);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), 0);

#define S_FROM_SEQ(seq_bytes) do {                                              \
        mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1);                          \
        mpw_bin(&w, e.market.b, 32); mpw_bin(&w, e.origin.b, 32);               \
        seq_bytes;                                                              \
        mpw_bin(&w, e.prev.b, 32); mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_ADJUST); \
    } while (0)
    /* seq 3 as uint8, uint16, uint64, int8 */
    S_FROM_SEQ(mpw_byte(&w, 0xcc); mpw_be(&w, 3, 1));
    mpw_arr(&w, 3); mpw_str(&w, "A"); mpw_int(&w, -5); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
    S_FROM_SEQ(mpw_byte(&w, 0xcd); mpw_be(&w, 3, 2));
    mpw_arr(&w, 3); mpw_str(&w, "A"); mpw_int(&w, -5); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
    S_FROM_SEQ(mpw_byte(&w, 0xcf); mpw_be(&w, 3, 8));
    mpw_arr(&w, 3); mpw_str(&w, "A"); mpw_int(&w, -5); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
    S_FROM_SEQ(mpw_byte(&w, 0xd0); mpw_be(&w, 3, 1));
    mpw_arr(&w, 3); mpw_str(&w, "A"); mpw_int(&w, -5); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
    /* delta -5 as int8 and int32 */
    S_FROM_SEQ(mpw_uint(&w, 3));
    mpw_arr(&w, 3); mpw_str(&w, "A"); mpw_byte(&w, 0xd0); mpw_be(&w, (uint64_t)-5, 1); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
    S_FROM_SEQ(mpw_uint(&w, 3));
    mpw_arr(&w, 3); mpw_str(&w, "A"); mpw_byte(&w, 0xd2); mpw_be(&w, (uint64_t)-5, 4); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
    /* sku as str8 and str16 */
    S_FROM_SEQ(mpw_uint(&w, 3));
    mpw_arr(&w, 3); mpw_byte(&w, 0xd9); mpw_be(&w, 1, 1); mpw_byte(&w, 'A');
    mpw_int(&w, -5); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
    S_FROM_SEQ(mpw_uint(&w, 3));
    mpw_arr(&w, 3); mpw_byte(&w, 0xda); mpw_be(&w, 1, 2); mpw_byte(&w, 'A');
    mpw_int(&w, -5); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
    /* body as array16 */
    S_FROM_SEQ(mpw_uint(&w, 3));
    mpw_byte(&w, 0xdc); mpw_be(&w, 3, 2); mpw_str(&w, "A"); mpw_int(&w, -5); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
#undef S_FROM_SEQ
    /* top level as array16, market as bin16 */
    mpw_init(&w); mpw_byte(&w, 0xdc); mpw_be(&w, 8, 2); mpw_uint(&w, 1);
    mpw_bin(&w, e.market.b, 32); mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, 3);
    mpw_bin(&w, e.prev.b, 32); mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_ADJUST);
    mpw_arr(&w, 3); mpw_str(&w, "A"); mpw_int(&w, -5); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1);
    mpw_byte(&w, 0xc5); mpw_be(&w, 32, 2); mpw_raw(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, 3);
    mpw_bin(&w, e.prev.b, 32); mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_ADJUST);
    mpw_arr(&w, 3); mpw_str(&w, "A"); mpw_int(&w, -5); mpw_str(&w, "");
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_ENONCANON);
}

/* Wrong shapes and types (not an array, 7 fields, nil for a uint, str for a bin, short key, bool kind) are SM_EMALFORMED. */
static void
test_decode_wrong_shapes(void **state)
{
    sm_entry e, out;
    mpw w;

    (void)state;
    fx_entry(SM_KIND_RELEASE, &e);
    mpw_init(&w); mpw_uint(&w, 1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    mpw_init(&w); mpw_arr(&w, 0);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    mpw_init(&w); mpw_arr(&w, 1); mpw_nil(&w);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    /* 7 fields */
    mpw_init(&w); mpw_arr(&w, 7); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, 3); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_RELEASE);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    /* a version 2 entry of another shape is SM_EVERSION, not malformed */
    mpw_init(&w); mpw_arr(&w, 2); mpw_uint(&w, 2); mpw_nil(&w);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EVERSION);
    /* nil seq */
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_nil(&w); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_RELEASE); mpw_arr(&w, 1); mpw_uint(&w, 1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    /* market as str */
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_strn(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, 3); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_RELEASE); mpw_arr(&w, 1); mpw_uint(&w, 1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    /* origin of 31 bytes */
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 31); mpw_uint(&w, 3); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_RELEASE); mpw_arr(&w, 1); mpw_uint(&w, 1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    /* kind as true */
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, 3); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_byte(&w, 0xc3); mpw_arr(&w, 1); mpw_uint(&w, 1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    /* body with 2 fields for release, and body not an array */
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, 3); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_RELEASE); mpw_arr(&w, 2); mpw_uint(&w, 1); mpw_uint(&w, 1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, 3); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_RELEASE); mpw_uint(&w, 1);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    /* a sale line of two fields */
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, 3); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_SALE);
    mpw_arr(&w, 6); mpw_arr(&w, 1); mpw_arr(&w, 2); mpw_str(&w, "A"); mpw_uint(&w, 1);
    mpw_str(&w, "EUR"); mpw_uint(&w, 1); mpw_uint(&w, 1); mpw_str(&w, ""); mpw_uint(&w, 0);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EMALFORMED);
    /* 33 sale lines */
    mpw_init(&w); mpw_arr(&w, 8); mpw_uint(&w, 1); mpw_bin(&w, e.market.b, 32);
    mpw_bin(&w, e.origin.b, 32); mpw_uint(&w, 3); mpw_bin(&w, e.prev.b, 32);
    mpw_uint(&w, e.hlc); mpw_uint(&w, SM_KIND_SALE);
    mpw_arr(&w, 6); mpw_arr(&w, SM_SALE_LINES_MAX + 1);
    for (unsigned i = 0; i < SM_SALE_LINES_MAX + 1; i++) {
        char sku[8];
        sku[0] = (char)('A' + i % 26); sku[1] = (char)('A' + i / 26); sku[2] = '\0';
        mpw_arr(&w, 3); mpw_str(&w, sku); mpw_uint(&w, 1); mpw_uint(&w, 1);
    }
    mpw_str(&w, "EUR"); mpw_uint(&w, 1); mpw_uint(&w, 1); mpw_str(&w, ""); mpw_uint(&w, 0);
    assert_int_equal(sm_entry_decode(w.b, w.len, &out), SM_EBODY);
}

/* ------------------------------------------------------------------------ */

static void
s_token(sm_token *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 32; i++)
        t->market.b[i] = (uint8_t)(0x10 + i);
    strcpy(t->name, "Saturday market, Grand-Place");
    strcpy(t->currency, "EUR");
    t->endpoint_count = 2;
    strcpy(t->endpoints[0], "tcp://192.168.1.10:7400");
    strcpy(t->endpoints[1], "tcp://organiser.local:7400");
    t->entry_len = 150;
    for (size_t i = 0; i < t->entry_len; i++)
        t->entry[i] = (uint8_t)(i * 7);
    memset(t->entry_sig, 0xe5, SM_SIG_BYTES);
}

/* A signed token body packs and unpacks to the same fields, with the expected leading bytes. */
static void
test_token_round_trip(void **state)
{
    sm_token t, u;
    uint8_t tsig[SM_SIG_BYTES], tsig2[SM_SIG_BYTES], buf[SM_TOKEN_BYTES_MAX];
    size_t len = 0;

    (void)state;
    s_token(&t);
    memset(tsig, 0x5a, sizeof tsig);
    assert_int_equal(sm__token_pack(&t, tsig, buf, sizeof buf, &len), 0);
    assert_int_equal(buf[0], 0x98);          /* fixarray of 8 */
    assert_int_equal(buf[1], 0x01);          /* version */
    assert_int_equal(buf[2], 0xc4);          /* market bin8 */
    assert_int_equal(buf[3], 32);
    memset(&u, 0, sizeof u);
    assert_int_equal(sm__token_unpack(buf, len, &u, tsig2), 0);
    assert_memory_equal(&u, &t, sizeof t);
    assert_memory_equal(tsig2, tsig, sizeof tsig);

    /* no endpoints is allowed, SM_ENDPOINTS_MAX of the longest too */
    t.endpoint_count = 0;
    memset(t.endpoints, 0, sizeof t.endpoints);
    assert_int_equal(sm__token_pack(&t, tsig, buf, sizeof buf, &len), 0);
    memset(&u, 0, sizeof u);
    assert_int_equal(sm__token_unpack(buf, len, &u, tsig2), 0);
    assert_memory_equal(&u, &t, sizeof t);
    t.endpoint_count = SM_ENDPOINTS_MAX;
    for (unsigned i = 0; i < SM_ENDPOINTS_MAX; i++) {
        memset(t.endpoints[i], 'e', SM_ENDPOINT_BYTES_MAX);
        t.endpoints[i][SM_ENDPOINT_BYTES_MAX] = '\0';
    }
    assert_int_equal(sm__token_pack(&t, tsig, buf, sizeof buf, &len), 0);
    memset(&u, 0, sizeof u);
    assert_int_equal(sm__token_unpack(buf, len, &u, tsig2), 0);
    assert_memory_equal(&u, &t, sizeof t);
}

/* The unsigned 7-element form is the signed form minus its last element, and unpack refuses it. */
static void
test_token_unsigned_form(void **state)
{
    sm_token t, u;
    uint8_t tsig[SM_SIG_BYTES], buf[SM_TOKEN_BYTES_MAX], sbuf[SM_TOKEN_BYTES_MAX];
    size_t len = 0, slen = 0;

    (void)state;
    s_token(&t);
    memset(tsig, 0x77, sizeof tsig);
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &len), 0);
    assert_int_equal(sm__token_pack(&t, tsig, sbuf, sizeof sbuf, &slen), 0);
    assert_int_equal(buf[0], 0x97);
    assert_int_equal(slen, len + 2 + SM_SIG_BYTES);
    assert_memory_equal(buf + 1, sbuf + 1, len - 1);
    assert_int_equal(sbuf[len], 0xc4);
    assert_int_equal(sbuf[len + 1], SM_SIG_BYTES);
    assert_int_equal(sm__token_unpack(buf, len, &u, tsig), SM_ETOKEN);
}

/* Packing refuses fields outside the limits (SM_EINVAL) and a small buffer (SM_ETOOBIG). */
static void
test_token_pack_refusals(void **state)
{
    sm_token t;
    uint8_t buf[SM_TOKEN_BYTES_MAX];
    size_t len = 0, need = 0;

    (void)state;
    s_token(&t); t.name[0] = '\0';
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &len), SM_EINVAL);
    s_token(&t); strcpy(t.currency, "eur");
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &len), SM_EINVAL);
    s_token(&t); t.endpoint_count = SM_ENDPOINTS_MAX + 1;
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &len), SM_EINVAL);
    s_token(&t); t.endpoints[1][0] = '\0';
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &len), SM_EINVAL);
    s_token(&t); strcpy(t.endpoints[0], "tcp://a\n");
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &len), SM_EINVAL);
    s_token(&t); t.entry_len = 0;
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &len), SM_EINVAL);
    s_token(&t); t.entry_len = SM_ENTRY_BYTES_MAX + 1;
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &len), SM_EINVAL);
    s_token(&t); memset(t.name, 'n', sizeof t.name);
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &len), SM_EINVAL);
    s_token(&t);
    assert_int_equal(sm__token_pack(&t, NULL, buf, sizeof buf, &need), 0);
    assert_int_equal(sm__token_pack(&t, NULL, buf, need, &len), 0);
    assert_int_equal(sm__token_pack(&t, NULL, buf, need - 1, &len), SM_ETOOBIG);
}

/* Every truncation, a trailing byte and every single-byte change of a token body are refused or re-pack to the same bytes. */
static void
test_token_damage(void **state)
{
    sm_token t, u;
    uint8_t tsig[SM_SIG_BYTES], buf[SM_TOKEN_BYTES_MAX], again[SM_TOKEN_BYTES_MAX];
    size_t len = 0, len2 = 0;

    (void)state;
    s_token(&t);
    memset(tsig, 0x33, sizeof tsig);
    assert_int_equal(sm__token_pack(&t, tsig, buf, sizeof buf - 1, &len), 0);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(sm__token_unpack(buf, cut, &u, tsig), SM_ETOKEN);
    buf[len] = 0xc0;
    assert_int_equal(sm__token_unpack(buf, len + 1, &u, tsig), SM_ETOKEN);

    size_t refused = 0;
    for (size_t i = 0; i < len; i++) {
        static const uint8_t deltas[] = { 0x01, 0x80, 0xff, 0x20 };
        for (size_t d = 0; d < sizeof deltas; d++) {
            uint8_t tsig2[SM_SIG_BYTES];
            buf[i] ^= deltas[d];
            int rc = sm__token_unpack(buf, len, &u, tsig2);
            if (rc == 0) {
                assert_int_equal(sm__token_pack(&u, tsig2, again, sizeof again, &len2), 0);
                assert_int_equal(len2, len);
                assert_memory_equal(again, buf, len);
            } else {
                assert_int_equal(rc, SM_ETOKEN);
                refused++;
            }
            buf[i] ^= deltas[d];
        }
    }
    assert_true(refused > 0);
    /* a token body with a non-canonical version is refused */
    buf[1] = 0xcc;
    memmove(buf + 3, buf + 2, len - 2);
    buf[2] = 0x01;
    assert_int_equal(sm__token_unpack(buf, len + 1, &u, tsig), SM_ETOKEN);
}

/* ------------------------------------------------------------------------ */

static uint64_t
s_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/*  Decode `b`: either a refusal with a known code, or an entry that encodes
    back to exactly `b`.  Returns 1 when it decoded.                         */
static int
s_decode_property(const uint8_t *b, size_t n)
{
    sm_entry out;
    uint8_t again[SM_ENTRY_BYTES_MAX];
    size_t len = 0;
    int rc = sm_entry_decode(b, n, &out);

    if (rc != 0) {
        assert_true(rc == SM_ETRUNC || rc == SM_ETOOBIG || rc == SM_EMALFORMED ||
                    rc == SM_ENONCANON || rc == SM_EVERSION || rc == SM_EKIND ||
                    rc == SM_EBODY || rc == SM_EQTY || rc == SM_EMONEY);
        return 0;
    }
    assert_int_equal(sm_entry_check(&out), 0);
    assert_int_equal(sm_entry_encode(&out, again, sizeof again, &len), 0);
    assert_int_equal(len, n);
    assert_memory_equal(again, b, n);
    return 1;
}

/* Random bytes and random mutations of valid entries (fixed seed) never crash, and anything accepted re-encodes to the same bytes. */
static void
test_random_and_mutated_input(void **state)
{
    static const sm_kind kinds[] = {
        SM_KIND_ITEM, SM_KIND_STOCK_ADD, SM_KIND_STOCK_MOVE, SM_KIND_SALE,
        SM_KIND_RETURN, SM_KIND_HOLD, SM_KIND_RELEASE, SM_KIND_ADJUST,
        SM_KIND_DROP, SM_KIND_ROSTER_ADMIT, SM_KIND_ROSTER_REVOKE,
    };
    uint64_t seed = 0x5eed5eed12345678ULL;
    uint8_t b[SM_ENTRY_BYTES_MAX + 16];
    size_t accepted = 0, mutants = 0;

    (void)state;
    /* random bytes, biased to start like an entry */
    for (int i = 0; i < 20000; i++) {
        size_t n = s_rand(&seed) % 200;
        for (size_t j = 0; j < n; j++)
            b[j] = (uint8_t)s_rand(&seed);
        if (n > 0 && i % 2 == 0)
            b[0] = 0x98;
        if (n > 1 && i % 4 == 0)
            b[1] = 0x01;
        s_decode_property(b, n);
        sm__msgpack_scan(b, n, SM_MSGPACK_DEPTH_MAX);
    }
    /* mutations of valid entries: flips, byte sets, inserts, deletes, cuts */
    for (int i = 0; i < 40000; i++) {
        sm_entry e;
        size_t n = 0;
        fx_entry(kinds[s_rand(&seed) % (sizeof kinds / sizeof kinds[0])], &e);
        assert_int_equal(sm_entry_encode(&e, b, SM_ENTRY_BYTES_MAX, &n), 0);
        int edits = 1 + (int)(s_rand(&seed) % 3);
        for (int k = 0; k < edits && n > 0; k++) {
            size_t at = s_rand(&seed) % n;
            switch (s_rand(&seed) % 5) {
            case 0: b[at] ^= (uint8_t)(1u << (s_rand(&seed) % 8)); break;
            case 1: b[at] = (uint8_t)s_rand(&seed); break;
            case 2:
                memmove(b + at + 1, b + at, n - at);
                b[at] = (uint8_t)s_rand(&seed);
                n++;
                break;
            case 3: memmove(b + at, b + at + 1, n - at - 1); n--; break;
            case 4: n = at; break;
            }
        }
        accepted += (size_t)s_decode_property(b, n);
        mutants++;
    }
    /* the loop exercised both outcomes */
    assert_true(accepted > 0);
    assert_true(accepted < mutants);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_accepts_allowed_types),
        cmocka_unit_test(test_scan_refuses_other_types),
        cmocka_unit_test(test_scan_truncated_forms),
        cmocka_unit_test(test_scan_huge_lengths),
        cmocka_unit_test(test_scan_depth),
        cmocka_unit_test(test_scan_trailing_and_empty),
        cmocka_unit_test(test_decode_trailing_and_truncated),
        cmocka_unit_test(test_decode_non_canonical),
        cmocka_unit_test(test_decode_wrong_shapes),
        cmocka_unit_test(test_token_round_trip),
        cmocka_unit_test(test_token_unsigned_form),
        cmocka_unit_test(test_token_pack_refusals),
        cmocka_unit_test(test_token_damage),
        cmocka_unit_test(test_random_and_mutated_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
