/*  Unit tests of reservations: pickup codes (alphabet, determinism,
    uniqueness among open holds), the [holds] limits, the hold body's long
    form (encode, decode, canonical), and a hold of several lines held and
    ended whole: never half held, sold once.                                 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reserve.h"
#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

#define NOW 1700000000000ULL

typedef struct {
    char *dir;
    sm_identity id;
    sm_ledger *l;
} fx;

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    tu_identity(&f->id, 1);
    f->l = tu_open(f->dir, "a");
    sm_ledger_set_identity(f->l, &f->id);
    assert_int_equal(sm_ledger_create_market(f->l, "Market", "GBP", NOW), 0);
    const char *skus[] = { "jam", "tea", "mug" };
    for (int i = 0; i < 3; i++) {
        sm_body it = tu_item(skus[i], skus[i], 300);
        sm_body add = tu_add(skus[i], 3);
        assert_int_equal(sm_ledger_append(f->l, &it, NOW, NULL), 0);
        assert_int_equal(sm_ledger_append(f->l, &add, NOW, NULL), 0);
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    sm_ledger_destroy(&f->l);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int64_t
units(fx *f, const char *sku)
{
    sm_units u;
    int rc = sm_ledger_units(f->l, sku, &f->id.pub, &u);
    assert_true(rc == 0 || rc == SM_ENOTFOUND);
    return rc == 0 ? u.units : 0;
}

/*  A hold of the given lines ("sku", qty pairs), code and device tag byte
    (0 = no device).                                                        */
static sm_body
hold_of(const char *const *skus, const uint32_t *qtys, uint32_t n, const char *code,
        uint8_t device)
{
    sm_body b = tu_hold(skus[0], qtys[0], NOW + 60000);
    for (uint32_t i = 1; i < n; i++) {
        snprintf(b.u.hold.more[i - 1].sku, sizeof b.u.hold.more[i - 1].sku, "%s", skus[i]);
        b.u.hold.more[i - 1].qty = qtys[i];
    }
    b.u.hold.more_count = n - 1;
    snprintf(b.u.hold.code, sizeof b.u.hold.code, "%s", code);
    if (device) {
        b.u.hold.has_device = true;
        memset(b.u.hold.device, device, sizeof b.u.hold.device);
    }
    return b;
}

/*  Codes are 6 characters, all from the alphabet without look-alikes, the
    same for the same randomness and different for different randomness;
    over many draws every character of the alphabet appears and no other. */
static void
test_code_alphabet(void **state)
{
    (void) state;
    uint64_t rng = 7;
    bool seen[256] = { false };
    for (int d = 0; d < 2000; d++) {
        uint8_t rnd[SM_RESERVE_CODE_RAND_BYTES];
        for (size_t i = 0; i < sizeof rnd; i++)
            rnd[i] = (uint8_t) tu_rand(&rng);
        char a[SM_HOLD_CODE_CHARS + 1], b[SM_HOLD_CODE_CHARS + 1];
        sm_reserve_code(rnd, a);
        sm_reserve_code(rnd, b);
        assert_string_equal(a, b);
        assert_int_equal(strlen(a), SM_HOLD_CODE_CHARS);
        assert_true(sm_reserve_code_valid(a));
        for (size_t i = 0; i < SM_HOLD_CODE_CHARS; i++) {
            assert_non_null(strchr(SM_RESERVE_ALPHABET, a[i]));
            seen[(unsigned char) a[i]] = true;
        }
    }
    for (const char *c = SM_RESERVE_ALPHABET; *c; c++)
        assert_true(seen[(unsigned char) *c]);
    const char *lookalikes = "01ILO";
    for (const char *c = lookalikes; *c; c++) {
        assert_false(seen[(unsigned char) *c]);
        assert_null(strchr(SM_RESERVE_ALPHABET, *c));
    }
    /* Bytes that would bias the draw are skipped, not folded in. */
    uint8_t high[SM_RESERVE_CODE_RAND_BYTES];
    memset(high, 0xff, sizeof high);
    high[10] = 0; high[11] = 1; high[12] = 2; high[13] = 3; high[14] = 4; high[15] = 5;
    char c[SM_HOLD_CODE_CHARS + 1];
    sm_reserve_code(high, c);
    assert_string_equal(c, "234567");
    /* What a till may type or scan. */
    char n[SM_HOLD_CODE_CHARS + 1];
    assert_true(sm_reserve_code_norm("  7k2m9q\r\n", n));
    assert_string_equal(n, "7K2M9Q");
    assert_false(sm_reserve_code_norm("7K2M9", n));
    assert_false(sm_reserve_code_norm("7K2M9QQ", n));
    assert_false(sm_reserve_code_norm("7K2M0Q", n));      /* 0 is not in it */
    assert_false(sm_reserve_code_norm(NULL, n));
}

/*  A picked code is none of the taken ones: the draws that collide are
    passed over, and when every draw collides the answer says so.          */
static void
test_code_pick_unique(void **state)
{
    (void) state;
    uint8_t rnd[3 * SM_RESERVE_CODE_RAND_BYTES];
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (uint8_t) (i * 37 + 11);
    char first[SM_HOLD_CODE_CHARS + 1], second[SM_HOLD_CODE_CHARS + 1], got[SM_HOLD_CODE_CHARS + 1];
    sm_reserve_code(rnd, first);
    sm_reserve_code(rnd + SM_RESERVE_CODE_RAND_BYTES, second);
    assert_string_not_equal(first, second);
    char taken[2][SM_HOLD_CODE_BYTES_MAX + 1];
    memset(taken, 0, sizeof taken);
    assert_int_equal(sm_reserve_code_pick(rnd, 3, (const char (*)[SM_HOLD_CODE_BYTES_MAX + 1]) taken, 0, got), 0);
    assert_string_equal(got, first);
    snprintf(taken[0], sizeof taken[0], "%s", first);
    assert_int_equal(sm_reserve_code_pick(rnd, 3, (const char (*)[SM_HOLD_CODE_BYTES_MAX + 1]) taken, 1, got), 0);
    assert_string_equal(got, second);
    snprintf(taken[1], sizeof taken[1], "%s", second);
    assert_int_equal(sm_reserve_code_pick(rnd, 2, (const char (*)[SM_HOLD_CODE_BYTES_MAX + 1]) taken, 2, got),
                     SM_EHOLDCODE);
}

/*  The state refuses a second open hold with the same code at this stall,
    and accepts it again once the first has ended.                          */
static void
test_code_unique_among_open(void **state)
{
    fx *f = *state;
    const char *jam[] = { "jam" };
    uint32_t one[] = { 1 };
    sm_body a = hold_of(jam, one, 1, "7K2M9Q", 0);
    uint64_t seq;
    assert_int_equal(sm_ledger_append(f->l, &a, NOW, &seq), 0);
    sm_body b = hold_of(jam, one, 1, "7K2M9Q", 0);
    assert_int_equal(sm_ledger_append(f->l, &b, NOW, NULL), SM_EHOLDCODE);
    assert_int_equal(units(f, "jam"), 2);
    sm_body rel = tu_release(seq);
    assert_int_equal(sm_ledger_append(f->l, &rel, NOW + 1, NULL), 0);
    assert_int_equal(sm_ledger_append(f->l, &b, NOW + 2, NULL), 0);
    /* The usage read returns the open codes. */
    char taken[4][SM_HOLD_CODE_BYTES_MAX + 1];
    size_t n = 0;
    uint64_t dev, cli;
    assert_int_equal(sm_reserve_usage(f->l, &f->id.pub, &b, NOW, &dev, &cli, taken, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(taken[0], "7K2M9Q");
}

/*  Each limit refuses with its own name; what a device already holds counts
    toward per_device, an expired hold does not; the defaults are 5, 2, 10
    and 10.                                                                  */
static void
test_limits(void **state)
{
    fx *f = *state;
    sm_reserve_limits lim = sm_reserve_limits_or_default(NULL);
    assert_int_equal(lim.max_units, 5);
    assert_int_equal(lim.max_per_sku, 2);
    assert_int_equal(lim.per_device, 10);
    assert_int_equal(lim.per_address, 10);
    sm_reserve_refusal why;
    const char *three[] = { "jam", "tea", "mug" };
    uint32_t q222[] = { 2, 2, 2 }, q3[] = { 3 }, q22[] = { 2, 2 };
    sm_body b = hold_of(three, q222, 3, "", 9);
    assert_int_equal(sm_reserve_check(&lim, &b, 0, 0, &why), SM_EHOLDLIMIT);
    assert_string_equal(why.limit, "max_units");
    assert_int_equal(why.wanted, 6);
    b = hold_of(three, q3, 1, "", 9);
    assert_int_equal(sm_reserve_check(&lim, &b, 0, 0, &why), SM_EHOLDLIMIT);
    assert_string_equal(why.limit, "max_per_sku");
    b = hold_of(three, q22, 2, "", 9);
    assert_int_equal(sm_reserve_check(&lim, &b, 0, 0, &why), 0);
    assert_int_equal(sm_reserve_check(&lim, &b, 7, 0, &why), SM_EHOLDLIMIT);
    assert_string_equal(why.limit, "per_device");
    assert_int_equal(why.wanted, 11);
    b.u.hold.has_client = true;
    assert_int_equal(sm_reserve_check(&lim, &b, 0, 7, &why), SM_EHOLDLIMIT);
    assert_string_equal(why.limit, "per_address");
    /* No device: per_device does not apply. */
    b.u.hold.has_device = false;
    assert_int_equal(sm_reserve_check(&lim, &b, 100, 0, &why), 0);

    /* Usage from the ledger: device 9's open holds, not device 8's. */
    sm_body h1 = hold_of(three, q22, 2, "AAAAAA", 9);
    sm_body h2 = hold_of(three + 2, q22, 1, "BBBBBB", 8);
    assert_int_equal(sm_ledger_append(f->l, &h1, NOW, NULL), 0);
    assert_int_equal(sm_ledger_append(f->l, &h2, NOW, NULL), 0);
    sm_body mine = hold_of(three, q22, 1, "", 9);
    uint64_t dev = 0, cli = 0;
    assert_int_equal(sm_reserve_usage(f->l, &f->id.pub, &mine, NOW, &dev, &cli, NULL, 0, NULL), 0);
    assert_int_equal(dev, 4);
    /* After their expiry (NOW + 60 s) they no longer count. */
    assert_int_equal(sm_reserve_usage(f->l, &f->id.pub, &mine, NOW + 60000, &dev, &cli, NULL, 0, NULL), 0);
    assert_int_equal(dev, 0);
    lim.per_device = 5;
    assert_int_equal(sm_reserve_admit(f->l, &f->id.pub, &lim, &mine, NOW, &why), SM_EHOLDLIMIT);
    assert_string_equal(why.limit, "per_device");
    lim.per_device = 6;
    assert_int_equal(sm_reserve_admit(f->l, &f->id.pub, &lim, &mine, NOW, &why), 0);
}

/*  A hold of several lines is held whole or not at all: one short line
    refuses it and no line's units move; a release gives every line back;
    a sale of it takes every line once, and a second sale is hold_sold.     */
static void
test_all_or_nothing(void **state)
{
    fx *f = *state;
    const char *skus[] = { "jam", "tea", "mug" };
    uint32_t too_many[] = { 1, 1, 4 }, fine[] = { 2, 1, 1 };
    sm_body b = hold_of(skus, too_many, 3, "CCCCCC", 0);
    assert_int_equal(sm_ledger_append(f->l, &b, NOW, NULL), SM_ENOSTOCK);
    assert_int_equal(units(f, "jam"), 3);
    assert_int_equal(units(f, "tea"), 3);
    assert_int_equal(units(f, "mug"), 3);

    b = hold_of(skus, fine, 3, "CCCCCC", 0);
    uint64_t seq;
    assert_int_equal(sm_ledger_append(f->l, &b, NOW, &seq), 0);
    assert_int_equal(units(f, "jam"), 1);
    assert_int_equal(units(f, "tea"), 2);
    assert_int_equal(units(f, "mug"), 2);
    sm_hold h;
    assert_int_equal(sm_ledger_hold(f->l, &f->id.pub, seq, &h), 0);
    assert_int_equal(h.line_count, 3);
    assert_string_equal(h.code, "CCCCCC");
    assert_string_equal(h.lines[2].sku, "mug");

    /* Released: every line back, and it reads as cancelled (before expiry). */
    sm_body rel = tu_release(seq);
    assert_int_equal(sm_ledger_append(f->l, &rel, NOW + 1, NULL), 0);
    assert_int_equal(units(f, "jam"), 3);
    assert_int_equal(units(f, "mug"), 3);
    assert_int_equal(sm_ledger_hold_find(f->l, &f->id.pub, seq, &h), 0);
    assert_int_equal(h.ended, SM_HOLD_CANCELLED);

    /* Held again and sold by a sale naming it: each line once. */
    assert_int_equal(sm_ledger_append(f->l, &b, NOW + 2, &seq), 0);
    sm_body sale = tu_sale("jam", 2, 300, "");
    sale.u.sale.hold_seq = seq;
    /* A sale missing one of the hold's lines is refused whole. */
    assert_int_equal(sm_ledger_append(f->l, &sale, NOW + 3, NULL), SM_EBODY);
    sale.u.sale.line_count = 3;
    for (int i = 1; i < 3; i++) {
        snprintf(sale.u.sale.lines[i].sku, sizeof sale.u.sale.lines[i].sku, "%s", skus[i]);
        sale.u.sale.lines[i].qty = 1;
        sale.u.sale.lines[i].price = 300;
    }
    uint64_t sale_seq;
    assert_int_equal(sm_ledger_append(f->l, &sale, NOW + 3, &sale_seq), 0);
    assert_int_equal(units(f, "jam"), 1);
    assert_int_equal(units(f, "tea"), 2);
    assert_int_equal(units(f, "mug"), 2);
    sm_units u;
    assert_int_equal(sm_ledger_units(f->l, "jam", &f->id.pub, &u), 0);
    assert_int_equal(u.held, 0);
    assert_int_equal(sm_ledger_append(f->l, &sale, NOW + 4, NULL), SM_EHOLDSOLD);
    assert_int_equal(units(f, "jam"), 1);
    assert_int_equal(sm_ledger_hold_find(f->l, &f->id.pub, seq, &h), 0);
    assert_int_equal(h.ended, SM_HOLD_SOLD);
    assert_int_equal(h.end_seq, sale_seq);

    /* A hold past its expiry, not yet swept: a local sale is hold_expired;
       released by the sweep, it reads as expired. */
    for (int i = 0; i < 3; i++) {
        sm_body add = tu_add(skus[i], 2);
        assert_int_equal(sm_ledger_append(f->l, &add, NOW + 5, NULL), 0);
    }
    assert_int_equal(sm_ledger_append(f->l, &b, NOW + 5, &seq), 0);
    sale.u.sale.hold_seq = seq;
    assert_int_equal(sm_ledger_append(f->l, &sale, NOW + 60000, NULL), SM_EHOLDEXPIRED);
    rel = tu_release(seq);
    assert_int_equal(sm_ledger_append(f->l, &rel, NOW + 60001, NULL), 0);
    assert_int_equal(sm_ledger_append(f->l, &sale, NOW + 60002, NULL), SM_EHOLDEXPIRED);
    assert_int_equal(sm_ledger_hold_find(f->l, &f->id.pub, seq, &h), 0);
    assert_int_equal(h.ended, SM_HOLD_EXPIRED);
    assert_int_equal(tu_negative_units(f->l), 0);
}

/*  The long form round-trips, the short form stays for a plain hold, a long
    form the short form holds is non-canonical, and duplicate skus or too
    many lines are refused.                                                  */
static void
test_long_form(void **state)
{
    (void) state;
    const char *skus[] = { "jam", "tea" };
    uint32_t q[] = { 1, 2 };
    sm_entry e;
    memset(&e, 0, sizeof e);
    e.version = SM_ENTRY_VERSION;
    e.seq = 1;
    e.hlc = SM_HLC_MAKE(NOW, 0);
    memset(e.market.b, 3, sizeof e.market.b);
    memset(e.origin.b, 3, sizeof e.origin.b);
    e.body = hold_of(skus, q, 2, "7K2M9Q", 5);
    uint8_t buf[SM_ENTRY_BYTES_MAX];
    size_t len;
    assert_int_equal(sm_entry_encode(&e, buf, sizeof buf, &len), 0);
    sm_entry d;
    memset(&d, 0xee, sizeof d);
    assert_int_equal(sm_entry_decode(buf, len, &d), 0);
    assert_int_equal(d.body.u.hold.more_count, 1);
    assert_string_equal(d.body.u.hold.more[0].sku, "tea");
    assert_int_equal(d.body.u.hold.more[0].qty, 2);
    assert_string_equal(d.body.u.hold.code, "7K2M9Q");
    assert_true(d.body.u.hold.has_device);
    assert_false(d.body.u.hold.has_client);
    /* A plain hold: the short form, 3 elements (0x93 after the kind). */
    e.body = hold_of(skus, q, 1, "", 0);
    size_t short_len;
    assert_int_equal(sm_entry_encode(&e, buf, sizeof buf, &short_len), 0);
    assert_true(short_len < len);
    /* Duplicate sku on two lines, too many lines: refused. */
    const char *dup[] = { "jam", "jam" };
    e.body = hold_of(dup, q, 2, "", 0);
    assert_int_equal(sm_entry_encode(&e, buf, sizeof buf, &len), SM_EBODY);
    e.body = hold_of(skus, q, 1, "", 0);
    e.body.u.hold.more_count = SM_HOLD_LINES_MAX;
    assert_int_equal(sm_entry_check(&e), SM_EBODY);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_alphabet),
        cmocka_unit_test(test_code_pick_unique),
        cmocka_unit_test_setup_teardown(test_code_unique_among_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
        cmocka_unit_test(test_long_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
