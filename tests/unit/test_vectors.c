/*  The normative test vectors of proto/vectors/ and their generator.

    Two signed logs are defined here field by field, from fixed Ed25519
    seeds: the organiser's (roster entries) and a stall's (every other
    kind), each a proper chain (prev = link of the entry before).  The test
    rebuilds every entry from these definitions and checks its bytes, its
    signature (Ed25519 is deterministic) and its link hash byte for byte
    against proto/vectors/entries.txt, and decodes every line of
    proto/vectors/bad_entries.txt to its expected error.

    Regenerate (only when the format changes on purpose, with a version
    bump) from the repository root:

        make build/tests/test_vectors && ./build/tests/test_vectors --generate

    which rewrites the two .txt files of proto/vectors/ and the seed corpus of the fuzzer in
    tests/fuzz/corpus/.  File formats are described in proto/log.md §8 and
    in the header comment of each file.                                       */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "codec.h"
#include "stallmesh/entry.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "stallmesh/token.h"
#include "support/fixtures.h"
#include "support/mpw.h"

#define S_ENTRIES_PATH "proto/vectors/entries.txt"
#define S_BAD_PATH     "proto/vectors/bad_entries.txt"
#define S_CORPUS_DIR   "tests/fuzz/corpus"
#define S_T0_MS        1717236000000ULL   /* 2024-06-01T10:00:00Z */

/* ------------------------------------------------------------------------ */
/* Keys and logs                                                             */

enum { S_ORGANISER, S_STALL, S_RELAY, S_NKEYS };

typedef struct {
    uint8_t seed[32];
    uint8_t pk[32];
    uint8_t sk[64];
} s_key;

static s_key s_keys[S_NKEYS];

/*  Seeds are 32 consecutive byte values: 00..1f, 20..3f, 40..5f.           */
static void
s_make_keys(void)
{
    for (int k = 0; k < S_NKEYS; k++) {
        for (int i = 0; i < 32; i++)
            s_keys[k].seed[i] = (uint8_t)(k * 32 + i);
        crypto_sign_seed_keypair(s_keys[k].pk, s_keys[k].sk, s_keys[k].seed);
    }
}

/*  One vector: its name, the author, and how to fill the body.             */
typedef struct {
    const char *name;
    int author;
    uint16_t hlc_counter;
    void (*body)(sm_body *b);
} s_vector;

static void
s_sku(char *dst, const char *sku)
{
    strcpy(dst, sku);
}

static void b_admit_self(sm_body *b)
{
    b->kind = SM_KIND_ROSTER_ADMIT;
    memcpy(b->u.admit.node.b, s_keys[S_ORGANISER].pk, 32);
    strcpy(b->u.admit.name, "Grand-Place Saturday market");
    b->u.admit.role = SM_ROLE_ORGANISER;
}
static void b_admit_stall(sm_body *b)
{
    b->kind = SM_KIND_ROSTER_ADMIT;
    memcpy(b->u.admit.node.b, s_keys[S_STALL].pk, 32);
    strcpy(b->u.admit.name, "Stall 7 \xe2\x80\x94 Ana's prints");   /* em dash */
    b->u.admit.role = SM_ROLE_STALL;
}
static void b_admit_relay(sm_body *b)
{
    b->kind = SM_KIND_ROSTER_ADMIT;
    memcpy(b->u.admit.node.b, s_keys[S_RELAY].pk, 32);
    strcpy(b->u.admit.name, "Relay at the gate");
    b->u.admit.role = SM_ROLE_RELAY;
}
static void b_revoke_relay(sm_body *b)
{
    b->kind = SM_KIND_ROSTER_REVOKE;
    memcpy(b->u.revoke.node.b, s_keys[S_RELAY].pk, 32);
    b->u.revoke.upto_seq = 0;
}
static void b_item(sm_body *b)
{
    b->kind = SM_KIND_ITEM;
    s_sku(b->u.item.sku, "TEE-BLK-M");
    strcpy(b->u.item.name, "T-shirt, black, M");
    b->u.item.price = 2500;
    strcpy(b->u.item.currency, "EUR");
}
static void b_item_utf8(sm_body *b)
{
    b->kind = SM_KIND_ITEM;
    s_sku(b->u.item.sku, "K\xc3\x84SE-200G");
    strcpy(b->u.item.name, "K\xc3\xa4se \xe2\x98\x95 \xf0\x9f\x8d\x93 tasting box (200 g)");
    b->u.item.price = 1234567;
    strcpy(b->u.item.currency, "CHF");
}
static void b_stock_add(sm_body *b)
{
    b->kind = SM_KIND_STOCK_ADD;
    s_sku(b->u.stock_add.sku, "TEE-BLK-M");
    b->u.stock_add.qty = 40;
}
static void b_stock_add_big(sm_body *b)
{
    b->kind = SM_KIND_STOCK_ADD;
    s_sku(b->u.stock_add.sku, "K\xc3\x84SE-200G");
    b->u.stock_add.qty = SM_QTY_MAX;
}
static void b_stock_move(sm_body *b)
{
    b->kind = SM_KIND_STOCK_MOVE;
    s_sku(b->u.stock_move.sku, "TEE-BLK-M");
    b->u.stock_move.qty = 5;
    memcpy(b->u.stock_move.to.b, s_keys[S_ORGANISER].pk, 32);
}
static void b_hold(sm_body *b)
{
    b->kind = SM_KIND_HOLD;
    s_sku(b->u.hold.sku, "TEE-BLK-M");
    b->u.hold.qty = 2;
    b->u.hold.expires_ms = S_T0_MS + 15 * 60 * 1000;
}
static void b_sale_two_lines(sm_body *b)
{
    b->kind = SM_KIND_SALE;
    b->u.sale.line_count = 2;
    s_sku(b->u.sale.lines[0].sku, "TEE-BLK-M");
    b->u.sale.lines[0].qty = 2;
    b->u.sale.lines[0].price = 2500;
    s_sku(b->u.sale.lines[1].sku, "K\xc3\x84SE-200G");
    b->u.sale.lines[1].qty = 1;
    b->u.sale.lines[1].price = 0;
    strcpy(b->u.sale.currency, "EUR");
    b->u.sale.source = SM_SOURCE_ONLINE;
    b->u.sale.payment = SM_PAY_CARD;
    strcpy(b->u.sale.external_id, "web-7f3a9c");
    b->u.sale.hold_seq = 4;
}
static void b_sale_cash(sm_body *b)
{
    b->kind = SM_KIND_SALE;
    b->u.sale.line_count = 1;
    s_sku(b->u.sale.lines[0].sku, "TEE-BLK-M");
    b->u.sale.lines[0].qty = 1;
    b->u.sale.lines[0].price = 2000;
    strcpy(b->u.sale.currency, "EUR");
    b->u.sale.source = SM_SOURCE_IN_PERSON;
    b->u.sale.payment = SM_PAY_CASH;
    b->u.sale.hold_seq = 0;
}
static void b_return(sm_body *b)
{
    b->kind = SM_KIND_RETURN;
    b->u.ret.sale_seq = 5;
    b->u.ret.line_count = 1;
    s_sku(b->u.ret.lines[0].sku, "TEE-BLK-M");
    b->u.ret.lines[0].qty = 1;
    strcpy(b->u.ret.reason, "wrong size");
}
static void b_hold2(sm_body *b)
{
    b->kind = SM_KIND_HOLD;
    s_sku(b->u.hold.sku, "TEE-BLK-M");
    b->u.hold.qty = 1;
    b->u.hold.expires_ms = S_T0_MS + 20 * 60 * 1000;
}
/*  A reservation: the hold body's long form (two lines, a pickup code, a
    device tag, no client tag).                                             */
static void b_hold_reservation(sm_body *b)
{
    b->kind = SM_KIND_HOLD;
    s_sku(b->u.hold.sku, "TEE-BLK-M");
    b->u.hold.qty = 1;
    b->u.hold.expires_ms = S_T0_MS + 10 * 60 * 1000;
    strcpy(b->u.hold.code, "7K2M9Q");
    b->u.hold.more_count = 1;
    s_sku(b->u.hold.more[0].sku, "K\xc3\x84SE-200G");
    b->u.hold.more[0].qty = 2;
    b->u.hold.has_device = true;
    memset(b->u.hold.device, 0xde, sizeof b->u.hold.device);
}
static void b_release(sm_body *b)
{
    b->kind = SM_KIND_RELEASE;
    b->u.release.hold_seq = 8;
}
static void b_adjust_down(sm_body *b)
{
    b->kind = SM_KIND_ADJUST;
    s_sku(b->u.adjust.sku, "TEE-BLK-M");
    b->u.adjust.delta = -3;
    strcpy(b->u.adjust.reason, "stock-take: 3 damaged");
}
static void b_adjust_up(sm_body *b)
{
    b->kind = SM_KIND_ADJUST;
    s_sku(b->u.adjust.sku, "TEE-BLK-M");
    b->u.adjust.delta = 200;
    b->u.adjust.reason[0] = '\0';
}
static void b_adjust_big_down(sm_body *b)
{
    b->kind = SM_KIND_ADJUST;
    s_sku(b->u.adjust.sku, "K\xc3\x84SE-200G");
    b->u.adjust.delta = -40000;
    strcpy(b->u.adjust.reason, "recount");
}
static void b_drop(sm_body *b)
{
    b->kind = SM_KIND_DROP;
    s_sku(b->u.drop.sku, "TEE-LTD-01");
    b->u.drop.qty = 50;
    b->u.drop.starts_ms = S_T0_MS + 2 * 3600 * 1000;
}

/*  Drops of the long form, a raffle entry and a draw (proto/log.md).     */
static void b_drop_first_come(sm_body *b)
{
    b->kind = SM_KIND_DROP;
    s_sku(b->u.drop.sku, "TEE-BLK-M");
    b->u.drop.qty = 30;
    b->u.drop.starts_ms = S_T0_MS + 3600 * 1000;
    b->u.drop.mode = SM_DROP_FIRST_COME;
    b->u.drop.per_shopper = 2;
    b->u.drop.pickup_minutes = 30;
}
static void b_drop_raffle(sm_body *b)
{
    b->kind = SM_KIND_DROP;
    s_sku(b->u.drop.sku, "K\xc3\x84SE-200G");
    b->u.drop.qty = 10;
    b->u.drop.starts_ms = S_T0_MS + 3600 * 1000;
    b->u.drop.mode = SM_DROP_RAFFLE;
    b->u.drop.per_shopper = 1;
    b->u.drop.closes_ms = S_T0_MS + 2 * 3600 * 1000;
    b->u.drop.pickup_minutes = 60;
    b->u.drop.has_commitment = true;
    /* BLAKE2b-256 of the secret of stall-20-raffle.draw (32 bytes 0x5e) */
    sm_hash_bytes((const uint8_t *) "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^", 32, &b->u.drop.commitment);
}
static void b_raffle_entry(sm_body *b)
{
    b->kind = SM_KIND_RAFFLE_ENTRY;
    memcpy(b->u.raffle_entry.drop_origin.b, s_keys[S_STALL].pk, 32);
    b->u.raffle_entry.drop_seq = 18;
    memset(b->u.raffle_entry.device, 0xd1, SM_HOLD_TAG_BYTES);
    b->u.raffle_entry.has_client = true;
    memset(b->u.raffle_entry.client, 0xc1, SM_HOLD_TAG_BYTES);
}
static void b_raffle_draw(sm_body *b)
{
    b->kind = SM_KIND_RAFFLE_DRAW;
    b->u.raffle_draw.drop_seq = 18;
    memset(b->u.raffle_draw.secret.b, 0x5e, SM_HASH_BYTES);
    b->u.raffle_draw.head_count = 2;
    /* ascending by origin: the organiser's key sorts before the stall's */
    int lo = memcmp(s_keys[S_ORGANISER].pk, s_keys[S_STALL].pk, 32) < 0 ? S_ORGANISER : S_STALL;
    memcpy(b->u.raffle_draw.heads[0].origin.b, s_keys[lo].pk, 32);
    b->u.raffle_draw.heads[0].seq = 4;
    memcpy(b->u.raffle_draw.heads[1].origin.b, s_keys[lo == S_STALL ? S_ORGANISER : S_STALL].pk, 32);
    b->u.raffle_draw.heads[1].seq = 19;
    b->u.raffle_draw.winners = 1;
}

/*  The logs, in order per author: seq is the position in its author's log. */
static const s_vector s_vectors[] = {
    { "org-01-roster.admit-self",   S_ORGANISER, 0, b_admit_self },
    { "org-02-roster.admit-stall",  S_ORGANISER, 0, b_admit_stall },
    { "org-03-roster.admit-relay",  S_ORGANISER, 1, b_admit_relay },
    { "org-04-roster.revoke-relay", S_ORGANISER, 0, b_revoke_relay },
    { "stall-01-item",              S_STALL, 0, b_item },
    { "stall-02-stock.add",         S_STALL, 0, b_stock_add },
    { "stall-03-stock.move",        S_STALL, 0, b_stock_move },
    { "stall-04-hold",              S_STALL, 0, b_hold },
    { "stall-05-sale-two-lines",    S_STALL, 0, b_sale_two_lines },
    { "stall-06-return",            S_STALL, 0, b_return },
    { "stall-07-item-utf8",         S_STALL, 300, b_item_utf8 },
    { "stall-08-hold",              S_STALL, 65535, b_hold2 },
    { "stall-09-release",           S_STALL, 0, b_release },
    { "stall-10-adjust-down",       S_STALL, 0, b_adjust_down },
    { "stall-11-adjust-up",         S_STALL, 0, b_adjust_up },
    { "stall-12-drop",              S_STALL, 0, b_drop },
    { "stall-13-sale-cash",         S_STALL, 0, b_sale_cash },
    { "stall-14-stock.add-max",     S_STALL, 0, b_stock_add_big },
    { "stall-15-adjust-big-down",   S_STALL, 0, b_adjust_big_down },
    { "stall-16-hold-reservation",  S_STALL, 0, b_hold_reservation },
    { "stall-17-drop-first-come",   S_STALL, 0, b_drop_first_come },
    { "stall-18-drop-raffle",       S_STALL, 0, b_drop_raffle },
    { "stall-19-raffle.entry",      S_STALL, 0, b_raffle_entry },
    { "stall-20-raffle.draw",       S_STALL, 0, b_raffle_draw },
};
#define S_NVECTORS (sizeof s_vectors / sizeof s_vectors[0])

/*  A built vector: the entry, its bytes, signature and link.                */
typedef struct {
    sm_entry e;
    uint8_t bytes[SM_ENTRY_BYTES_MAX];
    size_t len;
    uint8_t sig[SM_SIG_BYTES];
    sm_hash link;
} s_built;

/*  Build every vector in order, chaining prev per author.                  */
static void
s_build_all(s_built *out)
{
    uint64_t seq[S_NKEYS] = { 0 };
    sm_hash prev[S_NKEYS];

    memset(prev, 0, sizeof prev);
    s_make_keys();
    for (size_t i = 0; i < S_NVECTORS; i++) {
        const s_vector *v = &s_vectors[i];
        s_built *b = &out[i];
        int a = v->author;

        memset(&b->e, 0, sizeof b->e);
        b->e.version = SM_ENTRY_VERSION;
        memcpy(b->e.market.b, s_keys[S_ORGANISER].pk, 32);
        memcpy(b->e.origin.b, s_keys[a].pk, 32);
        b->e.seq = ++seq[a];
        b->e.prev = prev[a];
        b->e.hlc = SM_HLC_MAKE(S_T0_MS + 60000 * i, v->hlc_counter);
        v->body(&b->e.body);
        int rc = sm_entry_encode(&b->e, b->bytes, sizeof b->bytes, &b->len);
        if (rc != 0) {
            fprintf(stderr, "vector %s does not encode: %s\n", v->name, sm_strerror(rc));
            abort();
        }
        sm_entry_sign(b->bytes, b->len, s_keys[a].sk, b->sig);
        sm_entry_link(b->bytes, b->len, b->sig, &b->link);
        prev[a] = b->link;
    }
}

/* ------------------------------------------------------------------------ */
/* Bad entries                                                               */

typedef struct {
    const char *name;
    int err;
    mpw w;
} s_bad;

/*  The header of a stall entry: [1, market, stall, seq, prev, hlc, kind, ...
    with `fields` elements (8 for a well-formed entry).                     */
static void
s_head(mpw *w, uint32_t fields, uint64_t version, uint64_t seq, uint64_t kind)
{
    uint8_t prev[32];

    memset(prev, seq == 1 ? 0 : 0xab, sizeof prev);
    mpw_init(w);
    mpw_arr(w, fields);
    mpw_uint(w, version);
    mpw_bin(w, s_keys[S_ORGANISER].pk, 32);
    mpw_bin(w, s_keys[S_STALL].pk, 32);
    mpw_uint(w, seq);
    mpw_bin(w, prev, 32);
    mpw_uint(w, SM_HLC_MAKE(S_T0_MS, 0));
    mpw_uint(w, kind);
}

/*  A stock.add body [sku, qty].                                            */
static void
s_add_body(mpw *w, const char *sku, size_t sku_len, int64_t qty)
{
    mpw_arr(w, 2);
    mpw_strn(w, sku, sku_len);
    mpw_int(w, qty);
}

static void
s_sale_body(mpw *w, const char *sku1, const char *sku2, uint64_t source)
{
    mpw_arr(w, 6);
    mpw_arr(w, sku2 ? 2 : (sku1 ? 1 : 0));
    if (sku1) { mpw_arr(w, 3); mpw_str(w, sku1); mpw_uint(w, 1); mpw_uint(w, 100); }
    if (sku2) { mpw_arr(w, 3); mpw_str(w, sku2); mpw_uint(w, 1); mpw_uint(w, 100); }
    mpw_str(w, "EUR"); mpw_uint(w, source); mpw_uint(w, SM_PAY_CASH);
    mpw_str(w, ""); mpw_uint(w, 0);
}

static void
s_item_body(mpw *w, int64_t price, const char *currency)
{
    mpw_arr(w, 4); mpw_str(w, "TEE-BLK-M"); mpw_str(w, "T-shirt");
    mpw_int(w, price); mpw_str(w, currency);
}

/*  Fill `bad` (room for max) with the hostile and invalid entries; returns
    how many.  Each says which rule it breaks.                               */
static size_t
s_build_bad(s_bad *bad, size_t max, const s_built *good)
{
    size_t n = 0;
    s_bad *x;
    const s_built *add = &good[5];          /* stall-02-stock.add, seq 2 */
    char sku65[SM_SKU_BYTES_MAX + 1];

    /* Offsets in add->bytes: 0 array, 1 version, 2..35 market, 36..69
       origin, 70 seq, 71..104 prev, 105..113 hlc (uint64), 114 kind, 115..
       body.  The asserts keep them honest. */
    if (add->len != 127 || add->bytes[70] != 2 || add->bytes[105] != 0xcf ||
        add->bytes[114] != SM_KIND_STOCK_ADD)
        abort();
    memset(sku65, 'S', sizeof sku65);

#define S_NEW(nm, code) (x = &bad[n++], x->name = (nm), x->err = (code), mpw_init(&x->w), &x->w)
    mpw *w;

    w = S_NEW("empty", SM_ETRUNC); (void)w;
    w = S_NEW("truncated-last-byte", SM_ETRUNC);
    mpw_raw(w, add->bytes, add->len - 1);
    w = S_NEW("truncated-header-only", SM_ETRUNC);
    mpw_byte(w, 0x98);
    w = S_NEW("array32-huge-count", SM_ETRUNC);
    mpw_raw(w, "\xdd\xff\x00\x00\x00", 5);
    w = S_NEW("str32-huge-sku", SM_ETRUNC);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_raw(w, "\x92\xdb\xff\xff\xff\xff\x28", 7);
    w = S_NEW("bin32-huge-market", SM_ETRUNC);
    mpw_raw(w, "\x98\x01\xc6\xff\xff\xff\xf0", 7);
    mpw_raw(w, add->bytes + 36, add->len - 36);
    w = S_NEW("body-array-owes-more-than-remains", SM_ETRUNC);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_raw(w, "\xdc\x7f\xff\xa1\x41", 5);
    w = S_NEW("oversized", SM_ETOOBIG);
    mpw_raw(w, "\xdc\x1f\xfe", 3);
    for (int i = 0; i < 0x1ffe; i++)
        mpw_nil(w);
    w = S_NEW("noncanonical-seq-uint8", SM_ENONCANON);
    mpw_raw(w, add->bytes, add->len);
    {   /* seq 2 is the byte after the origin: 1 + 1 + 34 + 34 */
        size_t at = 1 + 1 + 34 + 34;
        mpw tmp; mpw_init(&tmp);
        mpw_raw(&tmp, add->bytes, at);
        mpw_byte(&tmp, 0xcc); mpw_byte(&tmp, add->bytes[at]);
        mpw_raw(&tmp, add->bytes + at + 1, add->len - at - 1);
        *w = tmp;
    }
    w = S_NEW("noncanonical-seq-uint64", SM_ENONCANON);
    {
        size_t at = 1 + 1 + 34 + 34;
        mpw_raw(w, add->bytes, at);
        mpw_byte(w, 0xcf); mpw_be(w, add->bytes[at], 8);
        mpw_raw(w, add->bytes + at + 1, add->len - at - 1);
    }
    w = S_NEW("noncanonical-qty-as-int8", SM_ENONCANON);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_arr(w, 2); mpw_str(w, "TEE-BLK-M"); mpw_byte(w, 0xd0); mpw_byte(w, 0x05);
    w = S_NEW("noncanonical-qty-uint16-small", SM_ENONCANON);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_arr(w, 2); mpw_str(w, "TEE-BLK-M"); mpw_byte(w, 0xcd); mpw_be(w, 40, 2);
    w = S_NEW("noncanonical-negative-int16", SM_ENONCANON);
    s_head(w, 8, 1, 2, SM_KIND_ADJUST);
    mpw_arr(w, 3); mpw_str(w, "TEE-BLK-M"); mpw_byte(w, 0xd1); mpw_be(w, (uint64_t)-3, 2);
    mpw_str(w, "");
    w = S_NEW("noncanonical-str16-short-sku", SM_ENONCANON);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_arr(w, 2); mpw_byte(w, 0xda); mpw_be(w, 9, 2); mpw_raw(w, "TEE-BLK-M", 9);
    mpw_uint(w, 40);
    w = S_NEW("noncanonical-str8-short-sku", SM_ENONCANON);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_arr(w, 2); mpw_byte(w, 0xd9); mpw_be(w, 9, 1); mpw_raw(w, "TEE-BLK-M", 9);
    mpw_uint(w, 40);
    w = S_NEW("noncanonical-bin16-market", SM_ENONCANON);
    mpw_arr(w, 8); mpw_uint(w, 1);
    mpw_byte(w, 0xc5); mpw_be(w, 32, 2); mpw_raw(w, s_keys[S_ORGANISER].pk, 32);
    mpw_raw(w, add->bytes + 36, add->len - 36);
    w = S_NEW("noncanonical-array16-entry", SM_ENONCANON);
    mpw_byte(w, 0xdc); mpw_be(w, 8, 2);
    mpw_raw(w, add->bytes + 1, add->len - 1);
    w = S_NEW("noncanonical-array32-body", SM_ENONCANON);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_byte(w, 0xdd); mpw_be(w, 2, 4); mpw_str(w, "TEE-BLK-M"); mpw_uint(w, 40);
    w = S_NEW("map-instead-of-array", SM_EMALFORMED);
    mpw_raw(w, "\x81\x01\x02", 3);
    w = S_NEW("map-as-body", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_raw(w, "\x81\xa3sku\x28", 6);
    w = S_NEW("float-hlc", SM_EMALFORMED);
    mpw_raw(w, add->bytes, 105);
    mpw_raw(w, "\xcb\x42\x78\xfd\x3a\x8e\x80\x00\x00", 9);
    mpw_raw(w, add->bytes + 114, add->len - 114);
    w = S_NEW("ext-as-body", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_raw(w, "\xd4\x01\x00", 3);
    w = S_NEW("byte-c1", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_raw(w, "\x92\xc1\x28", 3);
    w = S_NEW("nil-seq", SM_EMALFORMED);
    mpw_raw(w, add->bytes, 70);
    mpw_nil(w);
    mpw_raw(w, add->bytes + 71, add->len - 71);
    w = S_NEW("negative-seq", SM_EMALFORMED);
    mpw_raw(w, add->bytes, 70);
    mpw_int(w, -2);
    mpw_raw(w, add->bytes + 71, add->len - 71);
    w = S_NEW("entry-of-7-fields", SM_EMALFORMED);
    mpw_byte(w, 0x97);
    mpw_raw(w, add->bytes + 1, 114);                 /* without the body */
    w = S_NEW("market-of-31-bytes", SM_EMALFORMED);
    mpw_arr(w, 8); mpw_uint(w, 1); mpw_bin(w, s_keys[S_ORGANISER].pk, 31);
    mpw_raw(w, add->bytes + 36, add->len - 36);
    w = S_NEW("body-of-3-fields-for-stock.add", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_arr(w, 3); mpw_str(w, "TEE-BLK-M"); mpw_uint(w, 40); mpw_uint(w, 0);
    w = S_NEW("trailing-byte", SM_EMALFORMED);
    mpw_raw(w, add->bytes, add->len);
    mpw_byte(w, 0x00);
    w = S_NEW("nested-too-deep", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    mpw_raw(w, "\x91\x91\x91\x91\x91\x90", 6);
    w = S_NEW("bad-version-2", SM_EVERSION);
    s_head(w, 8, 2, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE-BLK-M", 9, 40);
    w = S_NEW("bad-version-0", SM_EVERSION);
    s_head(w, 8, 0, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE-BLK-M", 9, 40);
    w = S_NEW("unknown-kind-14", SM_EKIND);
    s_head(w, 8, 1, 2, 14);
    s_add_body(w, "TEE-BLK-M", 9, 40);
    w = S_NEW("unknown-kind-0", SM_EKIND);
    s_head(w, 8, 1, 2, 0);
    s_add_body(w, "TEE-BLK-M", 9, 40);
    w = S_NEW("negative-qty", SM_EQTY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE-BLK-M", 9, -1);
    w = S_NEW("zero-qty", SM_EQTY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE-BLK-M", 9, 0);
    w = S_NEW("qty-over-limit", SM_EQTY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE-BLK-M", 9, SM_QTY_MAX + 1);
    w = S_NEW("adjust-zero-delta", SM_EQTY);
    s_head(w, 8, 1, 2, SM_KIND_ADJUST);
    mpw_arr(w, 3); mpw_str(w, "TEE-BLK-M"); mpw_uint(w, 0); mpw_str(w, "");
    w = S_NEW("adjust-delta-under-limit", SM_EQTY);
    s_head(w, 8, 1, 2, SM_KIND_ADJUST);
    mpw_arr(w, 3); mpw_str(w, "TEE-BLK-M"); mpw_int(w, -(int64_t)SM_QTY_MAX - 1); mpw_str(w, "");
    w = S_NEW("negative-price", SM_EMONEY);
    s_head(w, 8, 1, 2, SM_KIND_ITEM);
    s_item_body(w, -2500, "EUR");
    w = S_NEW("price-over-limit", SM_EMONEY);
    s_head(w, 8, 1, 2, SM_KIND_ITEM);
    s_item_body(w, SM_PRICE_MAX + 1, "EUR");
    w = S_NEW("currency-lowercase", SM_EMONEY);
    s_head(w, 8, 1, 2, SM_KIND_ITEM);
    s_item_body(w, 2500, "eur");
    w = S_NEW("currency-of-4-letters", SM_EMONEY);
    s_head(w, 8, 1, 2, SM_KIND_ITEM);
    s_item_body(w, 2500, "EURO");
    w = S_NEW("sku-empty", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "", 0, 40);
    w = S_NEW("sku-control-character", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE\tBLK", 7, 40);
    w = S_NEW("sku-del-character", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE\x7f", 4, 40);
    w = S_NEW("sku-nul-byte", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE\0BLK", 7, 40);
    w = S_NEW("sku-invalid-utf8", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE\xc3\x28", 5, 40);
    w = S_NEW("sku-overlong-utf8", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "\xc0\xaf", 2, 40);
    w = S_NEW("sku-surrogate", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, "\xed\xa0\x80", 3, 40);
    w = S_NEW("sku-65-bytes", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_ADD);
    s_add_body(w, sku65, sizeof sku65, 40);
    w = S_NEW("seq-zero", SM_EBODY);
    s_head(w, 8, 1, 0, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE-BLK-M", 9, 40);
    w = S_NEW("seq-over-limit", SM_EBODY);
    s_head(w, 8, 1, SM_SEQ_MAX + 1, SM_KIND_STOCK_ADD);
    s_add_body(w, "TEE-BLK-M", 9, 40);
    w = S_NEW("seq-1-with-nonzero-prev", SM_EBODY);
    mpw_raw(w, add->bytes, 70);
    mpw_uint(w, 1);
    mpw_raw(w, add->bytes + 71, add->len - 71);
    w = S_NEW("stock.move-to-self", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_STOCK_MOVE);
    mpw_arr(w, 3); mpw_str(w, "TEE-BLK-M"); mpw_uint(w, 1); mpw_bin(w, s_keys[S_STALL].pk, 32);
    w = S_NEW("sale-duplicate-sku", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_SALE);
    s_sale_body(w, "TEE-BLK-M", "TEE-BLK-M", SM_SOURCE_IN_PERSON);
    w = S_NEW("sale-no-lines", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_SALE);
    s_sale_body(w, NULL, NULL, SM_SOURCE_IN_PERSON);
    w = S_NEW("sale-source-0", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_SALE);
    s_sale_body(w, "TEE-BLK-M", NULL, 0);
    w = S_NEW("sale-source-5", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_SALE);
    s_sale_body(w, "TEE-BLK-M", NULL, 5);
    w = S_NEW("admit-role-4", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_ROSTER_ADMIT);
    mpw_arr(w, 3); mpw_bin(w, s_keys[S_RELAY].pk, 32); mpw_str(w, "x"); mpw_uint(w, 4);
    w = S_NEW("admit-empty-name", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_ROSTER_ADMIT);
    mpw_arr(w, 3); mpw_bin(w, s_keys[S_RELAY].pk, 32); mpw_str(w, ""); mpw_uint(w, 1);
    w = S_NEW("return-sale-seq-0", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_RETURN);
    mpw_arr(w, 3); mpw_uint(w, 0); mpw_arr(w, 1); mpw_arr(w, 2); mpw_str(w, "A");
    mpw_uint(w, 1); mpw_str(w, "");
    w = S_NEW("release-hold-seq-0", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_RELEASE);
    mpw_arr(w, 1); mpw_uint(w, 0);
    w = S_NEW("hold-long-form-empty", SM_ENONCANON);   /* the short form holds it */
    s_head(w, 8, 1, 2, SM_KIND_HOLD);
    mpw_arr(w, 7); mpw_str(w, "A"); mpw_uint(w, 1); mpw_uint(w, 1000);
    mpw_str(w, ""); mpw_arr(w, 0); mpw_bin(w, "", 0); mpw_bin(w, "", 0);
    w = S_NEW("hold-lines-duplicate-sku", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_HOLD);
    mpw_arr(w, 7); mpw_str(w, "A"); mpw_uint(w, 1); mpw_uint(w, 1000);
    mpw_str(w, "7K2M9Q"); mpw_arr(w, 1); mpw_arr(w, 2); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_bin(w, "", 0); mpw_bin(w, "", 0);
    w = S_NEW("hold-8-lines-more", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_HOLD);
    mpw_arr(w, 7); mpw_str(w, "A"); mpw_uint(w, 1); mpw_uint(w, 1000);
    mpw_str(w, ""); mpw_arr(w, 8);
    for (int i = 0; i < 8; i++) {
        char sku[2] = { (char) ('B' + i), 0 };
        mpw_arr(w, 2); mpw_str(w, sku); mpw_uint(w, 1);
    }
    mpw_bin(w, "", 0); mpw_bin(w, "", 0);
    w = S_NEW("hold-device-7-bytes", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_HOLD);
    mpw_arr(w, 7); mpw_str(w, "A"); mpw_uint(w, 1); mpw_uint(w, 1000);
    mpw_str(w, "7K2M9Q"); mpw_arr(w, 0); mpw_bin(w, "1234567", 7); mpw_bin(w, "", 0);
    w = S_NEW("hold-code-9-bytes", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_HOLD);
    mpw_arr(w, 7); mpw_str(w, "A"); mpw_uint(w, 1); mpw_uint(w, 1000);
    mpw_str(w, "ABCDEFGHJ"); mpw_arr(w, 0); mpw_bin(w, "", 0); mpw_bin(w, "", 0);
    /* Drops of the long form, raffle entries and draws (proto/log.md). */
    static const uint8_t zero32[32], key32[32] = { 1 };
#define S_DROP(w, mode, per, closes, pickup, commit_len) do { \
        mpw_arr(w, 8); mpw_str(w, "A"); mpw_uint(w, 10); mpw_uint(w, 1000); \
        mpw_uint(w, mode); mpw_uint(w, per); mpw_uint(w, closes); mpw_uint(w, pickup); \
        mpw_bin(w, zero32, commit_len); } while (0)
    w = S_NEW("drop-mode-3", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_DROP);
    S_DROP(w, 3, 1, 0, 10, 0);
    w = S_NEW("drop-per-shopper-0", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_DROP);
    S_DROP(w, 1, 0, 0, 10, 0);
    w = S_NEW("drop-per-shopper-over-qty", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_DROP);
    S_DROP(w, 1, 11, 0, 10, 0);
    w = S_NEW("drop-pickup-0", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_DROP);
    S_DROP(w, 1, 1, 0, 0, 0);
    w = S_NEW("drop-first-come-closes", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_DROP);
    S_DROP(w, 1, 1, 2000, 10, 0);
    w = S_NEW("drop-raffle-no-commitment", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_DROP);
    S_DROP(w, 2, 1, 2000, 10, 0);
    w = S_NEW("drop-raffle-closes-before-start", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_DROP);
    S_DROP(w, 2, 1, 1000, 10, 32);
    w = S_NEW("drop-commitment-31-bytes", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_DROP);
    S_DROP(w, 2, 1, 2000, 10, 31);
    w = S_NEW("drop-of-5-fields", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_DROP);
    mpw_arr(w, 5); mpw_str(w, "A"); mpw_uint(w, 10); mpw_uint(w, 1000); mpw_uint(w, 1);
    mpw_uint(w, 1);
#undef S_DROP
    w = S_NEW("raffle-entry-device-7-bytes", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_RAFFLE_ENTRY);
    mpw_arr(w, 4); mpw_bin(w, key32, 32); mpw_uint(w, 1); mpw_bin(w, key32, 7);
    mpw_bin(w, "", 0);
    w = S_NEW("raffle-entry-drop-seq-0", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_RAFFLE_ENTRY);
    mpw_arr(w, 4); mpw_bin(w, key32, 32); mpw_uint(w, 0); mpw_bin(w, key32, 8);
    mpw_bin(w, "", 0);
    w = S_NEW("raffle-draw-of-its-own-seq", SM_EBODY);
    s_head(w, 8, 1, 2, SM_KIND_RAFFLE_DRAW);
    mpw_arr(w, 4); mpw_uint(w, 2); mpw_bin(w, key32, 32); mpw_arr(w, 0); mpw_uint(w, 0);
    w = S_NEW("raffle-draw-heads-unsorted", SM_EBODY);
    s_head(w, 8, 1, 3, SM_KIND_RAFFLE_DRAW);
    mpw_arr(w, 4); mpw_uint(w, 2); mpw_bin(w, key32, 32); mpw_arr(w, 2);
    mpw_arr(w, 2); mpw_bin(w, key32, 32); mpw_uint(w, 1);
    mpw_arr(w, 2); mpw_bin(w, zero32, 32); mpw_uint(w, 1);
    mpw_uint(w, 0);
    w = S_NEW("raffle-draw-65-heads", SM_EBODY);
    s_head(w, 8, 1, 3, SM_KIND_RAFFLE_DRAW);
    mpw_arr(w, 4); mpw_uint(w, 2); mpw_bin(w, key32, 32); mpw_arr(w, 65);
    for (int i = 0; i < 65; i++) {
        uint8_t k[32] = { 0 };
        k[0] = (uint8_t) i;
        mpw_arr(w, 2); mpw_bin(w, k, 32); mpw_uint(w, 1);
    }
    mpw_uint(w, 0);
    w = S_NEW("hold-of-4-fields", SM_EMALFORMED);
    s_head(w, 8, 1, 2, SM_KIND_HOLD);
    mpw_arr(w, 4); mpw_str(w, "A"); mpw_uint(w, 1); mpw_uint(w, 1000); mpw_str(w, "");
#undef S_NEW
    if (n > max)
        abort();
    return n;
}

/* ------------------------------------------------------------------------ */
/* Generation                                                                */

static const char *
s_kind_or(int kind)
{
    const char *n = sm_kind_name((sm_kind)kind);
    return n ? n : "?";
}

/*  A human-readable rendering of the entry for the vector file's comments. */
static void
s_describe(FILE *f, const sm_entry *e)
{
    const sm_body *b = &e->body;
    fprintf(f, "#   seq=%llu hlc=%llu (ms %llu, counter %llu) kind=%d (%s)\n",
            (unsigned long long)e->seq, (unsigned long long)e->hlc,
            (unsigned long long)SM_HLC_MS(e->hlc),
            (unsigned long long)(e->hlc & 0xffff), (int)b->kind, s_kind_or(b->kind));
    fprintf(f, "#   body: ");
    switch (b->kind) {
    case SM_KIND_ITEM:
        fprintf(f, "sku=\"%s\" name=\"%s\" price=%lld currency=%s\n", b->u.item.sku,
                b->u.item.name, (long long)b->u.item.price, b->u.item.currency);
        break;
    case SM_KIND_STOCK_ADD:
        fprintf(f, "sku=\"%s\" qty=%u\n", b->u.stock_add.sku, b->u.stock_add.qty);
        break;
    case SM_KIND_STOCK_MOVE: {
        char hex[65];
        mpw_hex(b->u.stock_move.to.b, 32, hex);
        fprintf(f, "sku=\"%s\" qty=%u to=%s\n", b->u.stock_move.sku, b->u.stock_move.qty, hex);
        break;
    }
    case SM_KIND_SALE:
        fprintf(f, "lines=[");
        for (uint32_t i = 0; i < b->u.sale.line_count; i++)
            fprintf(f, "%s(sku=\"%s\" qty=%u price=%lld)", i ? " " : "",
                    b->u.sale.lines[i].sku, b->u.sale.lines[i].qty,
                    (long long)b->u.sale.lines[i].price);
        fprintf(f, "] currency=%s source=%d (%s) payment=%d (%s) external_id=\"%s\" hold_seq=%llu\n",
                b->u.sale.currency, b->u.sale.source, sm_source_name(b->u.sale.source),
                b->u.sale.payment, sm_payment_name(b->u.sale.payment),
                b->u.sale.external_id, (unsigned long long)b->u.sale.hold_seq);
        break;
    case SM_KIND_RETURN:
        fprintf(f, "sale_seq=%llu lines=[", (unsigned long long)b->u.ret.sale_seq);
        for (uint32_t i = 0; i < b->u.ret.line_count; i++)
            fprintf(f, "%s(sku=\"%s\" qty=%u)", i ? " " : "", b->u.ret.lines[i].sku,
                    b->u.ret.lines[i].qty);
        fprintf(f, "] reason=\"%s\"\n", b->u.ret.reason);
        break;
    case SM_KIND_HOLD:
        fprintf(f, "sku=\"%s\" qty=%u expires_ms=%llu", b->u.hold.sku, b->u.hold.qty,
                (unsigned long long)b->u.hold.expires_ms);
        if (b->u.hold.code[0] || b->u.hold.more_count || b->u.hold.has_device
            || b->u.hold.has_client) {
            fprintf(f, " code=\"%s\" more=[", b->u.hold.code);
            for (uint32_t i = 0; i < b->u.hold.more_count; i++)
                fprintf(f, "%s(sku=\"%s\" qty=%u)", i ? " " : "", b->u.hold.more[i].sku,
                        b->u.hold.more[i].qty);
            fprintf(f, "] device=%s client=%s", b->u.hold.has_device ? "8 bytes" : "none",
                    b->u.hold.has_client ? "8 bytes" : "none");
        }
        fputc('\n', f);
        break;
    case SM_KIND_RELEASE:
        fprintf(f, "hold_seq=%llu\n", (unsigned long long)b->u.release.hold_seq);
        break;
    case SM_KIND_ADJUST:
        fprintf(f, "sku=\"%s\" delta=%lld reason=\"%s\"\n", b->u.adjust.sku,
                (long long)b->u.adjust.delta, b->u.adjust.reason);
        break;
    case SM_KIND_DROP:
        fprintf(f, "sku=\"%s\" qty=%u starts_ms=%llu", b->u.drop.sku, b->u.drop.qty,
                (unsigned long long)b->u.drop.starts_ms);
        if (b->u.drop.mode)
            fprintf(f, " mode=%u per_shopper=%u closes_ms=%llu pickup_minutes=%u commitment=%s",
                    b->u.drop.mode, b->u.drop.per_shopper,
                    (unsigned long long)b->u.drop.closes_ms, b->u.drop.pickup_minutes,
                    b->u.drop.has_commitment ? "32 bytes" : "none");
        fputc('\n', f);
        break;
    case SM_KIND_RAFFLE_ENTRY:
        fprintf(f, "drop_seq=%llu device=8 bytes client=%s\n",
                (unsigned long long)b->u.raffle_entry.drop_seq,
                b->u.raffle_entry.has_client ? "8 bytes" : "none");
        break;
    case SM_KIND_RAFFLE_DRAW:
        fprintf(f, "drop_seq=%llu secret=32 bytes heads=%u winners=%u\n",
                (unsigned long long)b->u.raffle_draw.drop_seq, b->u.raffle_draw.head_count,
                b->u.raffle_draw.winners);
        break;
    case SM_KIND_ROSTER_ADMIT: {
        char hex[65];
        mpw_hex(b->u.admit.node.b, 32, hex);
        fprintf(f, "node=%s name=\"%s\" role=%d (%s)\n", hex, b->u.admit.name,
                b->u.admit.role, sm_role_name(b->u.admit.role));
        break;
    }
    case SM_KIND_ROSTER_REVOKE: {
        char hex[65];
        mpw_hex(b->u.revoke.node.b, 32, hex);
        fprintf(f, "node=%s upto_seq=%llu\n", hex, (unsigned long long)b->u.revoke.upto_seq);
        break;
    }
    }
}

static void
s_write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static int
s_generate(void)
{
    static s_built good[S_NVECTORS];
    static s_bad bad[128];
    static char hex[2 * MPW_CAP + 1];
    char path[256];
    FILE *f;

    s_build_all(good);
    f = fopen(S_ENTRIES_PATH, "w");
    if (f == NULL) {
        perror(S_ENTRIES_PATH);
        return 1;
    }
    fprintf(f,
        "# stallmesh log entry test vectors (normative; proto/log.md section 8).\n"
        "# Generated by: ./build/tests/test_vectors --generate (tests/unit/test_vectors.c).\n"
        "#\n"
        "# One vector a line, six fields separated by one space:\n"
        "#   name kind seed entry sig link\n"
        "# kind: the kind's name; seed: the author's 32-byte Ed25519 seed (hex;\n"
        "# libsodium crypto_sign_seed_keypair); entry: the canonical entry bytes;\n"
        "# sig: Ed25519(secret, BLAKE2b-256(entry)); link: BLAKE2b-256(entry || sig).\n"
        "# The market is the organiser's key (seed 000102..1f).  Each author's\n"
        "# entries form a chain: seq counts from 1 and prev is the link of the\n"
        "# entry before (32 zero bytes for seq 1).  Lines starting with '#' are\n"
        "# comments; the ones above each vector show its fields.\n");
    for (int k = 0; k < S_NKEYS; k++) {
        char seed[65], pk[65];
        static const char *const who[] = { "organiser", "stall", "relay" };
        mpw_hex(s_keys[k].seed, 32, seed);
        mpw_hex(s_keys[k].pk, 32, pk);
        fprintf(f, "# %-9s seed %s\n#           key  %s\n", who[k], seed, pk);
    }
    for (size_t i = 0; i < S_NVECTORS; i++) {
        char seed[65], sig[129], link[65];
        fprintf(f, "#\n# %s\n", s_vectors[i].name);
        s_describe(f, &good[i].e);
        mpw_hex(s_keys[s_vectors[i].author].seed, 32, seed);
        mpw_hex(good[i].bytes, good[i].len, hex);
        mpw_hex(good[i].sig, SM_SIG_BYTES, sig);
        mpw_hex(good[i].link.b, 32, link);
        fprintf(f, "%s %s %s %s %s %s\n", s_vectors[i].name,
                s_kind_or(good[i].e.body.kind), seed, hex, sig, link);
        snprintf(path, sizeof path, "%s/entry-%s.bin", S_CORPUS_DIR, s_vectors[i].name);
        s_write_file(path, good[i].bytes, good[i].len);
    }
    if (fclose(f) != 0)
        return 1;

    size_t nbad = s_build_bad(bad, sizeof bad / sizeof bad[0], good);
    f = fopen(S_BAD_PATH, "w");
    if (f == NULL) {
        perror(S_BAD_PATH);
        return 1;
    }
    fprintf(f,
        "# stallmesh entries every decoder must refuse (normative; proto/log.md section 8).\n"
        "# Generated by: ./build/tests/test_vectors --generate (tests/unit/test_vectors.c).\n"
        "#\n"
        "# One vector a line: name expected_error hex\n"
        "# expected_error is the error's stable name (sm_errname, include/stallmesh/error.h);\n"
        "# hex may be empty (the empty input).  Keys are those of entries.txt.\n");
    for (size_t i = 0; i < nbad; i++) {
        sm_entry out;
        int rc = sm_entry_decode(bad[i].w.b, bad[i].w.len, &out);
        if (rc != bad[i].err) {
            fprintf(stderr, "bad vector %s: decode gives %s, expected %s\n",
                    bad[i].name, sm_errname(rc), sm_errname(bad[i].err));
            return 1;
        }
        mpw_hex(bad[i].w.b, bad[i].w.len, hex);
        fprintf(f, "%s %s %s\n", bad[i].name, sm_errname(bad[i].err), hex);
        if (bad[i].w.len > 0 && bad[i].w.len <= 512) {
            snprintf(path, sizeof path, "%s/bad-%s.bin", S_CORPUS_DIR, bad[i].name);
            s_write_file(path, bad[i].w.b, bad[i].w.len);
        }
    }
    if (fclose(f) != 0)
        return 1;

    /* a token body for the fuzzer's token path */
    {
        static sm_token t;
        uint8_t body[SM_TOKEN_BYTES_MAX], tsig[SM_SIG_BYTES];
        size_t len = 0;
        memset(&t, 0, sizeof t);
        memcpy(t.market.b, s_keys[S_ORGANISER].pk, 32);
        strcpy(t.name, "Grand-Place Saturday market");
        strcpy(t.currency, "EUR");
        t.endpoint_count = 1;
        strcpy(t.endpoints[0], "tcp://192.168.1.10:7400");
        memcpy(t.entry, good[1].bytes, good[1].len);
        t.entry_len = good[1].len;
        memcpy(t.entry_sig, good[1].sig, SM_SIG_BYTES);
        memset(tsig, 0x5a, sizeof tsig);
        if (sm__token_pack(&t, tsig, body, sizeof body, &len) != 0)
            return 1;
        snprintf(path, sizeof path, "%s/token-body.bin", S_CORPUS_DIR);
        s_write_file(path, body, len);
    }
    printf("wrote %s (%zu vectors), %s (%zu vectors) and %s/\n", S_ENTRIES_PATH,
           (size_t)S_NVECTORS, S_BAD_PATH, nbad, S_CORPUS_DIR);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading the files                                                         */

/*  Split line into at most max space-separated fields (in place); the line
    must have exactly `want` fields.  Returns the count.                     */
static size_t
s_fields(char *line, char **f, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *t = strtok_r(line, " ", &save); t != NULL && n < max;
         t = strtok_r(NULL, " ", &save))
        f[n++] = t;
    return n;
}

/* Every line of entries.txt matches the definition of the same name: bytes, signature, link, decode and verify. */
static void
test_entry_vectors(void **state)
{
    static s_built good[S_NVECTORS];
    static uint8_t bytes[SM_ENTRY_BYTES_MAX];
    bool seen[S_NVECTORS] = { false };
    bool kinds[SM_KIND_MAX + 1] = { false };
    char *line = NULL;
    size_t cap = 0, lines = 0;
    FILE *f;

    (void)state;
    s_build_all(good);
    f = fopen(S_ENTRIES_PATH, "r");
    assert_non_null(f);
    while (getline(&line, &cap, f) > 0) {
        char *fl[8];
        uint8_t seed[32], sig[64], link[32], pk[32], sk[64];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        assert_int_equal(s_fields(line, fl, 8), 6);
        size_t i = 0;
        while (i < S_NVECTORS && strcmp(s_vectors[i].name, fl[0]) != 0)
            i++;
        assert_true(i < S_NVECTORS);
        assert_false(seen[i]);
        seen[i] = true;
        lines++;

        long n = mpw_unhex(fl[3], bytes, sizeof bytes);
        assert_int_equal(n, (long)good[i].len);
        assert_memory_equal(bytes, good[i].bytes, good[i].len);
        assert_string_equal(fl[1], sm_kind_name(good[i].e.body.kind));
        assert_int_equal(mpw_unhex(fl[2], seed, 32), 32);
        assert_int_equal(mpw_unhex(fl[4], sig, 64), 64);
        assert_int_equal(mpw_unhex(fl[5], link, 32), 32);
        assert_memory_equal(sig, good[i].sig, 64);
        assert_memory_equal(link, good[i].link.b, 32);

        /* the bytes also match the independent writer */
        mpw w;
        mpw_init(&w);
        fx_encode(&good[i].e, &w);
        assert_int_equal(w.len, (size_t)n);
        assert_memory_equal(w.b, bytes, (size_t)n);

        /* decoding gives the defined fields; the seed's key verifies */
        sm_entry d;
        uint8_t again[SM_ENTRY_BYTES_MAX];
        size_t again_len = 0;
        memset(&d, 0xee, sizeof d);
        assert_int_equal(sm_entry_decode(bytes, (size_t)n, &d), 0);
        assert_memory_equal(&d, &good[i].e, offsetof(sm_entry, body));
        assert_int_equal(d.body.kind, good[i].e.body.kind);
        /* every body field was set: the decoded entry re-encodes exactly */
        assert_int_equal(sm_entry_encode(&d, again, sizeof again, &again_len), 0);
        assert_int_equal(again_len, (size_t)n);
        assert_memory_equal(again, bytes, (size_t)n);
        crypto_sign_seed_keypair(pk, sk, seed);
        assert_memory_equal(pk, d.origin.b, 32);
        assert_int_equal(sm_entry_verify(bytes, (size_t)n, sig, &d.origin), 0);
        kinds[d.body.kind] = true;
    }
    free(line);
    fclose(f);
    assert_int_equal(lines, S_NVECTORS);
    for (int k = SM_KIND_MIN; k <= SM_KIND_MAX; k++)
        assert_true(kinds[k]);
}

/* In entries.txt each author's entries count seq from 1, and each prev is the link of the entry before (zero for seq 1). */
static void
test_entry_vectors_chain(void **state)
{
    static uint8_t bytes[SM_ENTRY_BYTES_MAX];
    struct { sm_id origin; uint64_t seq; uint8_t link[32]; } heads[4];
    size_t nheads = 0, checked = 0;
    char *line = NULL;
    size_t cap = 0;
    FILE *f;

    (void)state;
    f = fopen(S_ENTRIES_PATH, "r");
    assert_non_null(f);
    while (getline(&line, &cap, f) > 0) {
        char *fl[8];
        uint8_t link[32];
        sm_entry d;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        assert_int_equal(s_fields(line, fl, 8), 6);
        long n = mpw_unhex(fl[3], bytes, sizeof bytes);
        assert_true(n > 0);
        assert_int_equal(mpw_unhex(fl[5], link, 32), 32);
        assert_int_equal(sm_entry_decode(bytes, (size_t)n, &d), 0);
        size_t h = 0;
        while (h < nheads && memcmp(heads[h].origin.b, d.origin.b, 32) != 0)
            h++;
        if (h == nheads) {
            assert_true(nheads < 4);
            heads[h].origin = d.origin;
            heads[h].seq = 0;
            memset(heads[h].link, 0, 32);
            nheads++;
        }
        assert_int_equal(d.seq, heads[h].seq + 1);
        assert_memory_equal(d.prev.b, heads[h].link, 32);
        heads[h].seq = d.seq;
        memcpy(heads[h].link, link, 32);
        checked++;
    }
    free(line);
    fclose(f);
    assert_int_equal(nheads, 2);
    assert_int_equal(checked, S_NVECTORS);
}

/* Every line of bad_entries.txt decodes to its expected error, and the file has every vector defined here. */
static void
test_bad_vectors(void **state)
{
    static s_built good[S_NVECTORS];
    static s_bad bad[128];
    static uint8_t bytes[MPW_CAP];
    char *line = NULL;
    size_t cap = 0, lines = 0;
    FILE *f;

    (void)state;
    s_build_all(good);
    size_t nbad = s_build_bad(bad, sizeof bad / sizeof bad[0], good);
    f = fopen(S_BAD_PATH, "r");
    assert_non_null(f);
    while (getline(&line, &cap, f) > 0) {
        char *fl[4];
        sm_entry out;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        size_t nf = s_fields(line, fl, 4);
        assert_true(nf == 2 || nf == 3);
        long n = nf == 3 ? mpw_unhex(fl[2], bytes, sizeof bytes) : 0;
        assert_true(n >= 0);
        int rc = sm_entry_decode(bytes, (size_t)n, &out);
        if (strcmp(sm_errname(rc), fl[1]) != 0)
            fail_msg("bad vector %s: decode gives %s, file expects %s",
                     fl[0], sm_errname(rc), fl[1]);
        assert_true(rc < 0);
        /* and it is the vector defined under that name */
        size_t i = 0;
        while (i < nbad && strcmp(bad[i].name, fl[0]) != 0)
            i++;
        assert_true(i < nbad);
        assert_int_equal(bad[i].w.len, (size_t)n);
        assert_memory_equal(bad[i].w.b, bytes, (size_t)n);
        assert_int_equal(bad[i].err, rc);
        lines++;
    }
    free(line);
    fclose(f);
    assert_int_equal(lines, nbad);
    assert_true(nbad >= 40);
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_vectors),
        cmocka_unit_test(test_entry_vectors_chain),
        cmocka_unit_test(test_bad_vectors),
    };
    if (sodium_init() < 0)
        return 1;
    if (argc == 2 && strcmp(argv[1], "--generate") == 0)
        return s_generate();
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--generate]\n", argv[0]);
        return 2;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
