/*  Unit tests of the materialized state (state.c) on its own: entries are
    applied with sm__state_apply / sm__roster_apply straight to a store, no
    log, no signatures, so each rule of each entry kind is seen alone: the
    catalog's last writer, the bounded counter at its edges (exactly zero
    left, one too many, the largest quantity), moves, sales all or nothing,
    returns, holds and their release, stock-takes, a drop's start, the
    roster.  Every refusal is also checked to leave the store untouched.    */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"
#include "stallmesh/limits.h"
#include "store.h"
#include "testutil.h"

#define NOW 1700000000000ULL
#define LOCAL SM__APPLY_LOCAL

typedef struct {
    char *dir;
    sm_store *store;
    sm_txn *txn;               /* one write transaction a test */
    sm_identity org, a, b, stranger;
    uint64_t seq[4];           /* next seq of org, a, b, stranger */
    uint64_t hlc;
} fx;

static uint64_t *
s_seq_of(fx *f, const sm_identity *id)
{
    return &f->seq[id == &f->org ? 0 : id == &f->a ? 1 : id == &f->b ? 2 : 3];
}

/* The next entry of `id` with body `b` (its seq and a later hlc). */
static sm_entry
s_entry(fx *f, const sm_identity *id, sm_body b)
{
    sm_entry e;
    memset(&e, 0, sizeof e);
    e.version = SM_ENTRY_VERSION;
    e.market = f->org.pub;
    e.origin = id->pub;
    e.seq = ++*s_seq_of(f, id);
    e.hlc = ++f->hlc;
    e.body = b;
    return e;
}

static int
s_apply(fx *f, const sm_identity *id, sm_body b, unsigned flags, uint64_t now_ms)
{
    sm_entry e = s_entry(f, id, b);
    bool rebuild = false;
    int rc = sm__state_apply(f->txn, &f->org.pub, &e, flags, now_ms, &rebuild);
    if (rc != 0)
        --*s_seq_of(f, id);            /* refused: the seq is not used */
    return rc;
}

static int
s_roster(fx *f, const sm_identity *by, sm_body b, bool *rebuild)
{
    sm_entry e = s_entry(f, by, b);
    *rebuild = false;
    return sm__roster_apply(f->txn, &f->org.pub, &e, rebuild);
}

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_tempdir();
    tu_identity(&f->org, 1);
    tu_identity(&f->a, 2);
    tu_identity(&f->b, 3);
    tu_identity(&f->stranger, 4);
    f->hlc = (NOW - 60000) << 16;
    int err = 0;
    f->store = sm_store_open(f->dir, 0, false, true, &err);
    assert_non_null(f->store);
    f->txn = sm_txn_begin(f->store, true, &err);
    assert_non_null(f->txn);
    bool rebuild;
    assert_int_equal(s_roster(f, &f->org, tu_admit(&f->a.pub, "Apples", SM_ROLE_STALL),
                              &rebuild), 0);
    assert_int_equal(s_roster(f, &f->org, tu_admit(&f->b.pub, "Bread", SM_ROLE_STALL),
                              &rebuild), 0);
    assert_int_equal(s_apply(f, &f->a, tu_item("jam", "Jam", 450), LOCAL, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_item("mug", "Mug", 1200), LOCAL, NOW), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    sm_txn_abort(&f->txn);
    sm_store_destroy(&f->store);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static sm__stock_rec
s_stock(fx *f, const char *sku, const sm_identity *loc)
{
    sm__stock_rec r;
    int rc = sm__stock_get(f->txn, sku, &loc->pub, &r);
    assert_true(rc == 0 || rc == SM_ENOTFOUND);
    return r;
}

static int64_t
s_units(fx *f, const char *sku, const sm_identity *loc)
{
    sm__stock_rec r = s_stock(f, sku, loc);
    return sm__stock_units(&r);
}

/* A fingerprint of every state database: equal before and after a refusal
   means the refusal wrote nothing. */
static uint64_t
s_fingerprint(fx *f)
{
    static const sm_db dbs[] = { SM_DB_ORIGINS, SM_DB_ITEMS, SM_DB_STOCK, SM_DB_SALES,
                                 SM_DB_HOLDS, SM_DB_EXTIDS };
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        int err = 0;
        sm_cursor *cur = sm_cursor_open(f->txn, dbs[i], NULL, 0, NULL, 0, &err);
        assert_non_null(cur);
        sm_val k, v;
        while (sm_cursor_next(cur, &k, &v) == 0) {
            const sm_val *parts[2] = { &k, &v };
            for (int p = 0; p < 2; p++)
                for (size_t j = 0; j < parts[p]->len; j++)
                    h = (h ^ ((const uint8_t *) parts[p]->data)[j]) * 1099511628211ULL;
            h = (h ^ (uint64_t) i) * 1099511628211ULL;
        }
        sm_cursor_close(&cur);
    }
    return h;
}

/* `call` is refused with `code` and leaves every state database as it was. */
#define assert_refused(f, code, call)                                          \
    do {                                                                       \
        uint64_t before_ = s_fingerprint(f);                                   \
        assert_int_equal((call), (code));                                      \
        assert_true(s_fingerprint(f) == before_);                              \
    } while (0)

/* ---- catalog --------------------------------------------------------- */

/* The catalog is a last-writer-wins register by (hlc, origin): a later
   write replaces, an older one changes nothing, an equal hlc goes to the
   greater origin, whichever order they come in. */
static void
test_item_last_writer_wins(void **state)
{
    fx *f = *state;
    sm_entry newer = s_entry(f, &f->a, tu_item("tea", "Tea (new)", 300));
    sm_entry older = newer;
    older.hlc = newer.hlc - 5;
    older.origin = f->b.pub;
    snprintf(older.body.u.item.name, sizeof older.body.u.item.name, "Tea (old)");
    sm_entry tie = newer;
    tie.origin = memcmp(f->a.pub.b, f->b.pub.b, SM_KEY_BYTES) < 0 ? f->b.pub : f->a.pub;
    snprintf(tie.body.u.item.name, sizeof tie.body.u.item.name, "Tea (tie)");
    const sm_entry *orders[2][3] = { { &older, &newer, &tie }, { &tie, &newer, &older } };
    for (int o = 0; o < 2; o++) {
        assert_int_equal(sm_kv_clear(f->txn, SM_DB_ITEMS), 0);
        for (int i = 0; i < 3; i++) {
            bool rebuild = false;
            assert_int_equal(sm__state_apply(f->txn, &f->org.pub, orders[o][i], 0, NOW,
                                             &rebuild), 0);
            assert_false(rebuild);
        }
        sm_val v;
        assert_int_equal(sm_kv_get(f->txn, SM_DB_ITEMS, "tea", 3, &v), 0);
        sm__item_rec r;
        assert_int_equal(v.len, sizeof r);
        memcpy(&r, v.data, sizeof r);
        assert_string_equal(r.name, "Tea (tie)");
        assert_int_equal(r.hlc, newer.hlc);
        assert_memory_equal(r.origin, tie.origin.b, SM_KEY_BYTES);
    }
}

/* ---- the bounded counter --------------------------------------------- */

/* Units = added + moved_in + returned - moved_out - sold - written_off -
   held: a location sells down to exactly zero, one unit more is
   SM_ENOSTOCK and writes nothing; a stall cannot sell units another holds;
   the largest quantity an entry may carry adds and sells exactly. */
static void
test_bounded_counter_edges(void **state)
{
    fx *f = *state;
    assert_int_equal(s_apply(f, &f->a, tu_add("jam", 5), LOCAL, NOW), 0);
    assert_int_equal(s_units(f, "jam", &f->a), 5);
    assert_refused(f, SM_ENOSTOCK, s_apply(f, &f->b, tu_sale("jam", 1, 450, NULL), 0, NOW));
    assert_refused(f, SM_ENOSTOCK, s_apply(f, &f->a, tu_sale("jam", 6, 450, NULL), LOCAL, NOW));
    assert_int_equal(s_apply(f, &f->a, tu_sale("jam", 5, 450, NULL), LOCAL, NOW), 0);
    assert_int_equal(s_units(f, "jam", &f->a), 0);
    assert_refused(f, SM_ENOSTOCK, s_apply(f, &f->a, tu_sale("jam", 1, 450, NULL), LOCAL, NOW));
    assert_refused(f, SM_ENOSTOCK, s_apply(f, &f->a, tu_adjust("jam", -1), LOCAL, NOW));
    assert_refused(f, SM_ENOSTOCK, s_apply(f, &f->a, tu_hold("jam", 1, NOW + 60000), LOCAL, NOW));
    sm__stock_rec r = s_stock(f, "jam", &f->a);
    assert_int_equal(r.added, 5);
    assert_int_equal(r.sold, 5);

    assert_int_equal(s_apply(f, &f->a, tu_add("mug", SM_QTY_MAX), LOCAL, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_add("mug", SM_QTY_MAX), LOCAL, NOW), 0);
    assert_int_equal(s_units(f, "mug", &f->a), 2 * (int64_t) SM_QTY_MAX);
    assert_int_equal(s_apply(f, &f->a, tu_sale("mug", SM_QTY_MAX, 1, NULL), LOCAL, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_adjust("mug", -(int64_t) SM_QTY_MAX), LOCAL, NOW), 0);
    assert_int_equal(s_units(f, "mug", &f->a), 0);
    r = s_stock(f, "mug", &f->a);
    assert_int_equal(r.written_off, SM_QTY_MAX);
}

/* A stock-take adds with a positive delta and writes off with a negative
   one, never below zero; a local one needs the sku in the catalog. */
static void
test_adjust(void **state)
{
    fx *f = *state;
    assert_int_equal(s_apply(f, &f->a, tu_adjust("jam", 4), LOCAL, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_adjust("jam", -3), LOCAL, NOW), 0);
    sm__stock_rec r = s_stock(f, "jam", &f->a);
    assert_int_equal(r.added, 4);
    assert_int_equal(r.written_off, 3);
    assert_int_equal(sm__stock_units(&r), 1);
    assert_refused(f, SM_ENOSTOCK, s_apply(f, &f->a, tu_adjust("jam", -2), LOCAL, NOW));
    assert_refused(f, SM_ENOSKU, s_apply(f, &f->a, tu_adjust("nope", 1), LOCAL, NOW));
    assert_refused(f, SM_ENOSKU, s_apply(f, &f->a, tu_add("nope", 1), LOCAL, NOW));
    /* From a peer the catalog entry may not have arrived yet: applied. */
    assert_int_equal(s_apply(f, &f->b, tu_add("nope", 1), 0, NOW), 0);
}

/* A move takes units from the mover's location to another's: only units
   the mover holds, only (when local) to an admitted member, and only of a
   catalogued sku; a peer's move to anyone applies. */
static void
test_move(void **state)
{
    fx *f = *state;
    assert_int_equal(s_apply(f, &f->a, tu_add("jam", 2), LOCAL, NOW), 0);
    assert_refused(f, SM_ENOSTOCK, s_apply(f, &f->a, tu_move("jam", 3, &f->b.pub), LOCAL, NOW));
    assert_refused(f, SM_ENOTMEMBER,
                   s_apply(f, &f->a, tu_move("jam", 1, &f->stranger.pub), LOCAL, NOW));
    assert_refused(f, SM_ENOSKU, s_apply(f, &f->a, tu_move("nope", 1, &f->b.pub), LOCAL, NOW));
    assert_int_equal(s_apply(f, &f->a, tu_move("jam", 2, &f->b.pub), LOCAL, NOW), 0);
    assert_int_equal(s_stock(f, "jam", &f->a).moved_out, 2);
    assert_int_equal(s_stock(f, "jam", &f->b).moved_in, 2);
    assert_int_equal(s_units(f, "jam", &f->a), 0);
    assert_int_equal(s_units(f, "jam", &f->b), 2);
    /* B now sells what it received. */
    assert_int_equal(s_apply(f, &f->b, tu_sale("jam", 2, 450, NULL), LOCAL, NOW), 0);
    assert_int_equal(s_units(f, "jam", &f->b), 0);
    assert_int_equal(s_apply(f, &f->b, tu_add("tea", 1), 0, NOW), 0);
    assert_int_equal(s_apply(f, &f->b, tu_move("tea", 1, &f->stranger.pub), 0, NOW), 0);
    assert_int_equal(s_units(f, "tea", &f->stranger), 1);
}

/* ---- sales and returns ------------------------------------------------ */

/* A sale is all or nothing across its lines; it is recorded under (origin,
   seq); a repeated external id is SM_EEXIST; a local sale of an unknown
   sku is SM_ENOSKU. */
static void
test_sale(void **state)
{
    fx *f = *state;
    assert_int_equal(s_apply(f, &f->a, tu_add("jam", 3), LOCAL, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_add("mug", 1), LOCAL, NOW), 0);
    sm_body two = tu_sale("jam", 2, 450, NULL);
    two.u.sale.line_count = 2;
    snprintf(two.u.sale.lines[1].sku, sizeof two.u.sale.lines[1].sku, "mug");
    two.u.sale.lines[1].qty = 2;               /* one more than A holds */
    two.u.sale.lines[1].price = 1200;
    assert_refused(f, SM_ENOSTOCK, s_apply(f, &f->a, two, LOCAL, NOW));
    assert_int_equal(s_units(f, "jam", &f->a), 3);
    two.u.sale.lines[1].qty = 1;
    assert_int_equal(s_apply(f, &f->a, two, LOCAL, NOW), 0);
    assert_int_equal(s_units(f, "jam", &f->a), 1);
    assert_int_equal(s_units(f, "mug", &f->a), 0);
    uint8_t key[SM__OSKEY_BYTES];
    sm__oskey(key, &f->a.pub, f->seq[1]);
    sm_val v;
    assert_int_equal(sm_kv_get(f->txn, SM_DB_SALES, key, sizeof key, &v), 0);
    sm__sale_rec rec;
    assert_int_equal(sm__sale_unpack(v.data, v.len, &rec), 0);
    assert_int_equal(rec.line_count, 2);
    assert_string_equal(rec.lines[1].sku, "mug");
    assert_int_equal(rec.lines[0].qty, 2);

    assert_int_equal(s_apply(f, &f->a, tu_sale("jam", 1, 450, "till-7"), LOCAL, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_add("jam", 5), LOCAL, NOW), 0);
    assert_refused(f, SM_EEXIST, s_apply(f, &f->a, tu_sale("jam", 1, 450, "till-7"), LOCAL, NOW));
    assert_refused(f, SM_ENOSKU, s_apply(f, &f->a, tu_sale("nope", 1, 1, NULL), LOCAL, NOW));
}

/* A return names an earlier sale of its origin and gives back at most what
   each line sold, in total over every return; its units come back. */
static void
test_return(void **state)
{
    fx *f = *state;
    assert_int_equal(s_apply(f, &f->a, tu_add("jam", 3), LOCAL, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_sale("jam", 2, 450, NULL), LOCAL, NOW), 0);
    uint64_t sale_seq = f->seq[1];
    assert_refused(f, SM_ENOSALE, s_apply(f, &f->a, tu_return(sale_seq + 50, "jam", 1), 0, NOW));
    assert_refused(f, SM_ENOSALE, s_apply(f, &f->b, tu_return(sale_seq, "jam", 1), 0, NOW));
    assert_refused(f, SM_EOVERRETURN, s_apply(f, &f->a, tu_return(sale_seq, "jam", 3), 0, NOW));
    assert_refused(f, SM_EOVERRETURN, s_apply(f, &f->a, tu_return(sale_seq, "mug", 1), 0, NOW));
    assert_int_equal(s_apply(f, &f->a, tu_return(sale_seq, "jam", 1), 0, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_return(sale_seq, "jam", 1), 0, NOW), 0);
    assert_refused(f, SM_EOVERRETURN, s_apply(f, &f->a, tu_return(sale_seq, "jam", 1), 0, NOW));
    sm__stock_rec r = s_stock(f, "jam", &f->a);
    assert_int_equal(r.returned, 2);
    assert_int_equal(sm__stock_units(&r), 3);
}

/* ---- holds ------------------------------------------------------------ */

/* A hold takes units from the location until its release or the sale that
   consumes it; a local hold must expire in the future and within the
   longest hold; releasing an unknown hold is SM_ENOHOLD. */
static void
test_hold_release_consume(void **state)
{
    fx *f = *state;
    assert_int_equal(s_apply(f, &f->a, tu_add("jam", 3), LOCAL, NOW), 0);
    assert_refused(f, SM_EBODY, s_apply(f, &f->a, tu_hold("jam", 1, NOW), LOCAL, NOW));
    assert_refused(f, SM_EBODY, s_apply(f, &f->a,
                   tu_hold("jam", 1, NOW + SM_HOLD_TTL_MS_MAX + 1), LOCAL, NOW));
    assert_int_equal(s_apply(f, &f->a, tu_hold("jam", 2, NOW + 60000), LOCAL, NOW), 0);
    uint64_t hold = f->seq[1];
    assert_int_equal(s_stock(f, "jam", &f->a).held, 2);
    assert_int_equal(s_units(f, "jam", &f->a), 1);
    assert_refused(f, SM_ENOSTOCK, s_apply(f, &f->a, tu_hold("jam", 2, NOW + 60000), LOCAL, NOW));
    sm__hold_rec h;
    assert_int_equal(sm__hold_get(f->txn, &f->a.pub, hold, &h), 0);
    assert_int_equal(h.qty, 2);
    assert_int_equal(h.expires_ms, NOW + 60000);

    assert_refused(f, SM_ENOHOLD, s_apply(f, &f->a, tu_release(hold + 40), 0, NOW));
    assert_int_equal(s_apply(f, &f->a, tu_release(hold), 0, NOW), 0);
    assert_int_equal(s_units(f, "jam", &f->a), 3);
    assert_int_equal(sm__hold_get(f->txn, &f->a.pub, hold, &h), SM_ENOHOLD);
    assert_refused(f, SM_ENOHOLD, s_apply(f, &f->a, tu_release(hold), 0, NOW));

    /* A sale consumes a hold: its units count toward the line. */
    assert_int_equal(s_apply(f, &f->a, tu_hold("jam", 3, NOW + 60000), LOCAL, NOW), 0);
    hold = f->seq[1];
    assert_int_equal(s_units(f, "jam", &f->a), 0);
    sm_body other = tu_sale("mug", 1, 1200, NULL);
    other.u.sale.hold_seq = hold;
    assert_refused(f, SM_EBODY, s_apply(f, &f->a, other, LOCAL, NOW));
    sm_body sale = tu_sale("jam", 3, 450, NULL);
    sale.u.sale.hold_seq = hold;
    assert_int_equal(s_apply(f, &f->a, sale, LOCAL, NOW), 0);
    sm__stock_rec r = s_stock(f, "jam", &f->a);
    assert_int_equal(r.held, 0);
    assert_int_equal(r.sold, 3);
    assert_int_equal(sm__stock_units(&r), 0);
    assert_int_equal(sm__hold_get(f->txn, &f->a.pub, hold, &h), SM_ENOHOLD);
}

/* ---- drops ------------------------------------------------------------ */

/* A drop adds units that a local sale, hold, move or write-off may take
   only from its start (SM_EDROP before, accepted at the start exactly);
   adding units is not gated; a peer's sale is applied whenever it comes
   (the peer checked its clock); a later start of a second drop wins. */
static void
test_drop_start(void **state)
{
    fx *f = *state;
    const uint64_t start = NOW + 3600000;
    assert_refused(f, SM_ENOSKU, s_apply(f, &f->a, tu_drop("nope", 4, start), LOCAL, NOW));
    assert_int_equal(s_apply(f, &f->a, tu_drop("jam", 4, start), LOCAL, NOW), 0);
    sm__stock_rec r = s_stock(f, "jam", &f->a);
    assert_int_equal(r.added, 4);
    assert_int_equal(r.drop_starts_ms, start);
    assert_refused(f, SM_EDROP, s_apply(f, &f->a, tu_sale("jam", 1, 450, NULL), LOCAL, start - 1));
    assert_refused(f, SM_EDROP, s_apply(f, &f->a, tu_hold("jam", 1, start + 60000), LOCAL,
                                        start - 1));
    assert_refused(f, SM_EDROP, s_apply(f, &f->a, tu_move("jam", 1, &f->b.pub), LOCAL,
                                        start - 1));
    assert_refused(f, SM_EDROP, s_apply(f, &f->a, tu_adjust("jam", -1), LOCAL, start - 1));
    assert_int_equal(s_apply(f, &f->a, tu_adjust("jam", 1), LOCAL, start - 1), 0);
    assert_int_equal(s_apply(f, &f->a, tu_move("jam", 1, &f->b.pub), LOCAL, start), 0);
    assert_int_equal(s_apply(f, &f->a, tu_sale("jam", 1, 450, NULL), LOCAL, start), 0);
    assert_int_equal(s_apply(f, &f->a, tu_sale("jam", 1, 450, NULL), 0, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_drop("jam", 1, start + 10), LOCAL, NOW), 0);
    assert_int_equal(s_apply(f, &f->a, tu_drop("jam", 1, start - 10), LOCAL, NOW), 0);
    r = s_stock(f, "jam", &f->a);
    assert_int_equal(r.drop_starts_ms, start + 10);
    assert_int_equal(sm__stock_units(&r), 4);
}

/* ---- roster ----------------------------------------------------------- */

/* Only the organiser writes the roster; it cannot revoke itself; a revoke
   below what an origin applied, or an admit that lifts a revoke, asks for
   a rebuild; through sm__state_apply a roster entry writes nothing. */
static void
test_roster(void **state)
{
    fx *f = *state;
    bool rebuild = false;
    assert_refused(f, SM_ENOTORG,
                   s_roster(f, &f->a, tu_admit(&f->stranger.pub, "X", SM_ROLE_STALL), &rebuild));
    assert_refused(f, SM_EBODY, s_roster(f, &f->org, tu_revoke(&f->org.pub, 0), &rebuild));
    sm__origin_rec o;
    assert_int_equal(sm__origin_get(f->txn, &f->stranger.pub, &o), SM_ENOTFOUND);

    sm__head_rec h;
    memset(&h, 0, sizeof h);
    h.seq = h.applied = 3;
    assert_int_equal(sm_kv_put(f->txn, SM_DB_HEADS, f->b.pub.b, SM_KEY_BYTES, &h, sizeof h), 0);
    assert_int_equal(s_roster(f, &f->org, tu_revoke(&f->b.pub, 3), &rebuild), 0);
    assert_false(rebuild);                     /* nothing applied above 3 */
    assert_int_equal(s_roster(f, &f->org, tu_revoke(&f->b.pub, 1), &rebuild), 0);
    assert_true(rebuild);
    assert_int_equal(sm__origin_get(f->txn, &f->b.pub, &o), 0);
    assert_int_equal(o.status, SM__ORIGIN_REVOKED);
    assert_int_equal(o.revoke_upto, 1);
    assert_int_equal(s_roster(f, &f->org, tu_admit(&f->b.pub, "Bread", SM_ROLE_STALL), &rebuild), 0);
    assert_true(rebuild);
    assert_int_equal(sm__origin_get(f->txn, &f->b.pub, &o), 0);
    assert_int_equal(o.status, SM__ORIGIN_ADMITTED);
    assert_string_equal(o.name, "Bread");

    assert_refused(f, 0, s_apply(f, &f->org, tu_admit(&f->stranger.pub, "X", SM_ROLE_STALL),
                                 0, NOW));
    sm_body odd = tu_add("jam", 1);
    odd.kind = (sm_kind) 99;
    assert_refused(f, SM_EKIND, s_apply(f, &f->a, odd, 0, NOW));
}

/* ---- records read back ------------------------------------------------ */

/* What is read back is checked as what is written is asserted: a stored
   record that breaks its invariants (a damaged file: units below zero, a
   hold of nothing, a roster status that does not exist) is SM_ECORRUPT,
   for the read and for an entry that needs it, and nothing is written. */
static void
test_damaged_records(void **state)
{
    fx *f = *state;
    assert_int_equal(s_apply(f, &f->a, tu_add("jam", 2), LOCAL, NOW), 0);
    sm__stock_rec r = s_stock(f, "jam", &f->a);
    r.held = 5;                                /* 2 added, 5 held: -3 units */
    uint8_t key[SM_SKU_BYTES_MAX + 1 + SM_KEY_BYTES];
    size_t klen = sm__stock_key(key, "jam", &f->a.pub);
    assert_int_equal(sm_kv_put(f->txn, SM_DB_STOCK, key, klen, &r, sizeof r), 0);
    assert_int_equal(sm__stock_get(f->txn, "jam", &f->a.pub, &r), SM_ECORRUPT);
    assert_refused(f, SM_ECORRUPT, s_apply(f, &f->a, tu_add("jam", 1), 0, NOW));

    sm__hold_rec h;
    memset(&h, 0, sizeof h);
    snprintf(h.sku, sizeof h.sku, "mug");     /* qty 0 */
    uint8_t hkey[SM__OSKEY_BYTES];
    sm__oskey(hkey, &f->a.pub, 77);
    assert_int_equal(sm_kv_put(f->txn, SM_DB_HOLDS, hkey, sizeof hkey, &h, sizeof h), 0);
    assert_int_equal(sm__hold_get(f->txn, &f->a.pub, 77, &h), SM_ECORRUPT);
    assert_refused(f, SM_ECORRUPT, s_apply(f, &f->a, tu_release(77), 0, NOW));

    sm__origin_rec o;
    assert_int_equal(sm__origin_get(f->txn, &f->b.pub, &o), 0);
    o.status = 9;
    assert_int_equal(sm_kv_put(f->txn, SM_DB_ORIGINS, f->b.pub.b, SM_KEY_BYTES, &o, sizeof o), 0);
    assert_int_equal(sm__origin_get(f->txn, &f->b.pub, &o), SM_ECORRUPT);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_item_last_writer_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounded_counter_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adjust, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_return, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_release_consume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_records, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
