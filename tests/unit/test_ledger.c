/*  Unit tests of the ledger: local appends against the stock CRDT, ingest
    of peers' runs with every kind of bad input, forks, revocation, waiting
    entries, reindex, verify and a full store.                               */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "state.h"
#include "store.h"
#include "testutil.h"

#define NOW 1700000000000ULL

typedef struct {
    char *dir;
    sm_identity ida, idb, idc;
    sm_ledger *a, *b, *c;      /* a organiser, b and c stalls */
} fx;

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    tu_identity(&f->ida, 1);
    tu_identity(&f->idb, 2);
    tu_identity(&f->idc, 3);
    f->a = tu_open(f->dir, "a");
    f->b = tu_open(f->dir, "b");
    f->c = tu_open(f->dir, "c");
    sm_ledger_set_identity(f->a, &f->ida);
    sm_ledger_set_identity(f->b, &f->idb);
    sm_ledger_set_identity(f->c, &f->idc);
    assert_int_equal(sm_ledger_create_market(f->a, "Saturday Market", "GBP", NOW), 0);
    sm_body ab = tu_admit(&f->idb.pub, "Bakery", SM_ROLE_STALL);
    sm_body ac = tu_admit(&f->idc.pub, "Cheese", SM_ROLE_STALL);
    assert_int_equal(sm_ledger_append(f->a, &ab, NOW, NULL), 0);
    assert_int_equal(sm_ledger_append(f->a, &ac, NOW, NULL), 0);
    tu_join(f->b, f->a);
    tu_join(f->c, f->a);
    tu_sync(f->a, f->b, NOW);
    tu_sync(f->a, f->c, NOW);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    sm_ledger_destroy(&f->a);
    sm_ledger_destroy(&f->b);
    sm_ledger_destroy(&f->c);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int64_t
units(sm_ledger *l, const char *sku, const sm_id *loc)
{
    sm_units u;
    int rc = sm_ledger_units(l, sku, loc, &u);
    assert_true(rc == 0 || rc == SM_ENOTFOUND);
    return u.units;
}

static void
append_ok(sm_ledger *l, sm_body b, uint64_t *seq)
{
    assert_int_equal(sm_ledger_append(l, &b, NOW, seq), 0);
}

static sm_hash
digest(sm_ledger *l)
{
    sm_hash h;
    assert_int_equal(sm_ledger_digest(l, &h), 0);
    return h;
}

/* A sale reduces the units at the selling location by its quantity. */
static void
test_sale_reduces_units(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 10), NULL);
    append_ok(f->b, tu_sale("mug", 3, 1200, NULL), NULL);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 7);
    sm_units u;
    assert_int_equal(sm_ledger_units(f->b, "mug", &f->idb.pub, &u), 0);
    assert_int_equal(u.sold, 3);
    assert_int_equal(u.added, 10);
}

/* A decrement beyond the local units is refused and changes nothing. */
static void
test_oversell_refused(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 2), NULL);
    sm_hash before = digest(f->b);
    sm_head hb, ha;
    assert_int_equal(sm_ledger_head(f->b, &f->idb.pub, &hb), 0);
    sm_body s = tu_sale("mug", 3, 1200, NULL);
    assert_int_equal(sm_ledger_append(f->b, &s, NOW, NULL), SM_ENOSTOCK);
    sm_body h = tu_hold("mug", 3, NOW + 60000);
    assert_int_equal(sm_ledger_append(f->b, &h, NOW, NULL), SM_ENOSTOCK);
    sm_body adj = tu_adjust("mug", -3);
    assert_int_equal(sm_ledger_append(f->b, &adj, NOW, NULL), SM_ENOSTOCK);
    sm_body mv = tu_move("mug", 3, &f->idc.pub);
    assert_int_equal(sm_ledger_append(f->b, &mv, NOW, NULL), SM_ENOSTOCK);
    sm_hash after = digest(f->b);
    assert_memory_equal(before.b, after.b, SM_HASH_BYTES);
    assert_int_equal(sm_ledger_head(f->b, &f->idb.pub, &ha), 0);
    assert_int_equal(ha.seq, hb.seq);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 2);
}

/* Selling or stocking a sku that is not in the catalog is refused. */
static void
test_unknown_sku_refused(void **state)
{
    fx *f = *state;
    sm_body add = tu_add("ghost", 1);
    assert_int_equal(sm_ledger_append(f->b, &add, NOW, NULL), SM_ENOSKU);
}

/* A repeated external id returns the first sale and records no second one. */
static void
test_external_id_idempotent(void **state)
{
    fx *f = *state;
    uint64_t first = 0, again = 0;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 5), NULL);
    append_ok(f->b, tu_sale("mug", 1, 1200, "till-1-0001"), &first);
    sm_body s = tu_sale("mug", 1, 1200, "till-1-0001");
    assert_int_equal(sm_ledger_append(f->b, &s, NOW, &again), SM_EEXIST);
    assert_int_equal(again, first);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 4);
}

/* Returns restore units and can never exceed what the sale sold. */
static void
test_returns_bounded(void **state)
{
    fx *f = *state;
    uint64_t sale = 0;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 5), NULL);
    append_ok(f->b, tu_sale("mug", 2, 1200, NULL), &sale);
    append_ok(f->b, tu_return(sale, "mug", 1), NULL);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 4);
    sm_body r = tu_return(sale, "mug", 2);
    assert_int_equal(sm_ledger_append(f->b, &r, NOW, NULL), SM_EOVERRETURN);
    sm_body r2 = tu_return(sale + 100, "mug", 1);
    assert_int_equal(sm_ledger_append(f->b, &r2, NOW, NULL), SM_ENOSALE);
    append_ok(f->b, tu_return(sale, "mug", 1), NULL);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 5);
}

/* A hold takes units aside; a release gives them back; a sale consumes it;
   a hold must expire in the future, within the longest hold. */
static void
test_holds(void **state)
{
    fx *f = *state;
    uint64_t h1 = 0, h2 = 0;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 5), NULL);
    sm_body past = tu_hold("mug", 2, NOW);
    assert_int_equal(sm_ledger_append(f->b, &past, NOW, NULL), SM_EBODY);
    sm_body too_long = tu_hold("mug", 2, NOW + SM_HOLD_TTL_MS_MAX + 1);
    assert_int_equal(sm_ledger_append(f->b, &too_long, NOW, NULL), SM_EBODY);
    append_ok(f->b, tu_hold("mug", 2, NOW + 60000), &h1);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 3);
    append_ok(f->b, tu_release(h1), NULL);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 5);
    sm_body rel = tu_release(h1);
    assert_int_equal(sm_ledger_append(f->b, &rel, NOW, NULL), SM_ENOHOLD);
    append_ok(f->b, tu_hold("mug", 5, NOW + 60000), &h2);
    sm_body s = tu_sale("mug", 1, 1200, NULL);
    assert_int_equal(sm_ledger_append(f->b, &s, NOW, NULL), SM_ENOSTOCK);
    s.u.sale.hold_seq = h2;
    s.u.sale.lines[0].qty = 4;
    append_ok(f->b, s, NULL);
    sm_units u;
    assert_int_equal(sm_ledger_units(f->b, "mug", &f->idb.pub, &u), 0);
    assert_int_equal(u.held, 0);
    assert_int_equal(u.sold, 4);
    assert_int_equal(u.units, 1);
}

/* A drop's units cannot be sold before it starts, and can after. */
static void
test_drop_start(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("tee", "Drop tee", 3000), NULL);
    append_ok(f->b, tu_drop("tee", 3, NOW + 1000), NULL);
    sm_body s = tu_sale("tee", 1, 3000, NULL);
    assert_int_equal(sm_ledger_append(f->b, &s, NOW, NULL), SM_EDROP);
    assert_int_equal(sm_ledger_append(f->b, &s, NOW + 1000, NULL), 0);
    assert_int_equal(units(f->b, "tee", &f->idb.pub), 2);
}

/* Only the organiser may write the roster. */
static void
test_roster_organiser_only(void **state)
{
    fx *f = *state;
    sm_body ad = tu_admit(&f->idc.pub, "Cheese", SM_ROLE_STALL);
    assert_int_equal(sm_ledger_append(f->b, &ad, NOW, NULL), SM_ENOTORG);
    sm_body own = tu_revoke(&f->ida.pub, 0);
    assert_int_equal(sm_ledger_append(f->a, &own, NOW, NULL), SM_EBODY);
}

/* Units moved to another stall become sellable there once the move arrives,
   and a replica that sees the sale before the move waits instead of going
   negative, then applies both. */
static void
test_move_and_waiting_entry(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 4), NULL);
    append_ok(f->b, tu_move("mug", 3, &f->idc.pub), NULL);
    tu_sync(f->b, f->c, NOW);
    assert_int_equal(units(f->c, "mug", &f->idc.pub), 3);
    append_ok(f->c, tu_sale("mug", 3, 1200, NULL), NULL);

    /* a has c's sale but not yet b's move. */
    sm_head hc;
    assert_int_equal(sm_ledger_head(f->c, &f->idc.pub, &hc), 0);
    tu_copy cp[8];
    size_t n = tu_read(f->c, &f->idc.pub, 1, 8, cp);
    sm_signed run[8];
    for (size_t i = 0; i < n; i++) {
        run[i].bytes = cp[i].bytes;
        run[i].len = cp[i].len;
        memcpy(run[i].sig, cp[i].sig, SM_SIG_BYTES);
    }
    sm_ingest_result res;
    assert_int_equal(sm_ledger_ingest(f->a, run, n, NOW, &res), 0);
    assert_int_equal(res.accepted, n);
    sm_head ha;
    assert_int_equal(sm_ledger_head(f->a, &f->idc.pub, &ha), 0);
    assert_int_equal(ha.seq, hc.seq);
    assert_true(ha.applied < ha.seq);
    assert_int_equal(tu_negative_units(f->a), 0);
    tu_free(cp, n);

    tu_sync(f->b, f->a, NOW);
    assert_int_equal(sm_ledger_head(f->a, &f->idc.pub, &ha), 0);
    assert_int_equal(ha.applied, ha.seq);
    assert_int_equal(units(f->a, "mug", &f->idc.pub), 0);
    assert_int_equal(units(f->a, "mug", &f->idb.pub), 1);
    tu_sync(f->a, f->b, NOW);
    tu_sync(f->c, f->b, NOW);
    tu_sync(f->b, f->c, NOW);
    sm_hash da = digest(f->a), db = digest(f->b), dc = digest(f->c);
    assert_memory_equal(da.b, db.b, SM_HASH_BYTES);
    assert_memory_equal(db.b, dc.b, SM_HASH_BYTES);
}

/* Ingest one copied run into `to`; returns the result code. */
static int
ingest_copies(sm_ledger *to, tu_copy *cp, size_t n, sm_ingest_result *res)
{
    sm_signed run[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        run[i].bytes = cp[i].bytes;
        run[i].len = cp[i].len;
        memcpy(run[i].sig, cp[i].sig, SM_SIG_BYTES);
    }
    return sm_ledger_ingest(to, run, n, NOW, res);
}

/* Overwrite byte `at` of the stored log value (sig || entry) of (origin,
   seq) in l's store, as a disk that rots would. */
static void
damage_stored(sm_ledger *l, const sm_id *origin, uint64_t seq, size_t at)
{
    int err = 0;
    sm_txn *txn = sm_txn_begin(sm__ledger_store(l), true, &err);
    assert_non_null(txn);
    uint8_t key[SM_KEY_BYTES + 8];
    memcpy(key, origin->b, SM_KEY_BYTES);
    for (int i = 0; i < 8; i++)
        key[SM_KEY_BYTES + i] = (uint8_t) (seq >> (56 - 8 * i));
    sm_val pos, v;
    assert_int_equal(sm_kv_get(txn, SM_DB_LOGIDX, key, sizeof key, &pos), 0);
    uint8_t posb[8];
    memcpy(posb, pos.data, 8);
    assert_int_equal(sm_kv_get(txn, SM_DB_LOG, posb, 8, &v), 0);
    uint8_t *copy = malloc(v.len);
    memcpy(copy, v.data, v.len);
    assert_true(at < v.len);
    copy[at] ^= 0xff;
    assert_int_equal(sm_kv_put(txn, SM_DB_LOG, posb, 8, copy, v.len), 0);
    free(copy);
    assert_int_equal(sm_txn_commit(&txn), 0);
}

/* A node running degraded (an origin's stored entry damaged, marked with
   sm_ledger_set_damaged) whose damaged entry was stored but still waiting
   for units keeps ingesting: applying stops below the damage instead of
   reading the damaged bytes and failing every batch as corrupt (the
   simulator's seed 21 with disk damage). */
static void
test_damaged_waiting_entry_fault(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 4), NULL);
    append_ok(f->b, tu_move("mug", 3, &f->idc.pub), NULL);
    tu_sync(f->b, f->c, NOW);
    append_ok(f->c, tu_sale("mug", 3, 1200, NULL), NULL);
    sm_head hc;
    assert_int_equal(sm_ledger_head(f->c, &f->idc.pub, &hc), 0);

    /* a has c's sale, waiting for b's move, which it does not have yet. */
    tu_copy cp[8];
    size_t n = tu_read(f->c, &f->idc.pub, 1, 8, cp);
    sm_ingest_result res;
    assert_int_equal(ingest_copies(f->a, cp, n, &res), 0);
    tu_free(cp, n);
    sm_head ha;
    assert_int_equal(sm_ledger_head(f->a, &f->idc.pub, &ha), 0);
    assert_int_equal(ha.seq, hc.seq);
    assert_int_equal(ha.applied, hc.seq - 1);

    /* The waiting sale rots on a's disk (its entry no longer decodes) and
       the check at start marks it, as run does. */
    damage_stored(f->a, &f->idc.pub, hc.seq, SM_SIG_BYTES);
    sm_check_report r;
    assert_int_equal(sm_ledger_check(f->a, SM_CHECK_ALL_ORIGINS, &r), SM_EDEGRADED);
    assert_int_equal(r.damaged_count, 1);
    assert_int_equal(r.damaged[0].seq, hc.seq);
    assert_int_equal(sm_ledger_set_damaged(f->a, &r.damaged[0]), 0);

    /* b's move arrives in a batch, as the write policy ingests: it commits,
       and applies; c's damaged sale does not. */
    assert_int_equal(sm_ledger_begin(f->a), 0);
    assert_true(tu_sync(f->b, f->a, NOW) > 0);
    assert_int_equal(sm_ledger_commit(f->a), 0);
    assert_int_equal(units(f->a, "mug", &f->idc.pub), 3);
    assert_int_equal(sm_ledger_head(f->a, &f->idc.pub, &ha), 0);
    assert_int_equal(ha.applied, hc.seq - 1);
    assert_int_equal(tu_negative_units(f->a), 0);
    /* Outside a batch too. */
    append_ok(f->b, tu_add("mug", 1), NULL);
    assert_int_equal(tu_sync(f->b, f->a, NOW), 1);
    assert_int_equal(units(f->a, "mug", &f->idb.pub), 2);
}

/* An entry waiting for units applies as soon as this node itself moves
   them to its location (a local append), not only when a peer's entries
   next arrive: the state is then the same as at a node that got the move
   by ingest. */
static void
test_local_move_applies_waiting_entry(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 4), NULL);
    append_ok(f->b, tu_move("mug", 3, &f->idc.pub), NULL);
    tu_sync(f->b, f->c, NOW);
    append_ok(f->c, tu_sale("mug", 3, 1200, NULL), NULL);
    /* a gets c's log, whose sale waits: a lacks b's move. */
    tu_copy cp[8];
    size_t n = tu_read(f->c, &f->idc.pub, 1, 8, cp);
    sm_signed run[8];
    for (size_t i = 0; i < n; i++) {
        run[i].bytes = cp[i].bytes;
        run[i].len = cp[i].len;
        memcpy(run[i].sig, cp[i].sig, SM_SIG_BYTES);
    }
    sm_ingest_result res;
    assert_int_equal(sm_ledger_ingest(f->a, run, n, NOW, &res), 0);
    tu_free(cp, n);
    sm_head ha;
    assert_int_equal(sm_ledger_head(f->a, &f->idc.pub, &ha), 0);
    assert_true(ha.applied < ha.seq);              /* the sale waits at a */
    append_ok(f->a, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->a, tu_add("mug", 5), NULL);
    append_ok(f->a, tu_move("mug", 3, &f->idc.pub), NULL);
    assert_int_equal(sm_ledger_head(f->a, &f->idc.pub, &ha), 0);
    assert_int_equal(ha.applied, ha.seq);          /* applied at once */
    assert_int_equal(units(f->a, "mug", &f->idc.pub), 0);
    assert_int_equal(tu_negative_units(f->a), 0);
}

/* Duplicated entries are no-ops. */
static void
test_duplicates_noop(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 4), NULL);
    tu_copy cp[8];
    size_t n = tu_read(f->b, &f->idb.pub, 1, 8, cp);
    sm_ingest_result res;
    assert_int_equal(ingest_copies(f->a, cp, n, &res), 0);
    sm_hash d1 = digest(f->a);
    assert_int_equal(ingest_copies(f->a, cp, n, &res), 0);
    assert_int_equal(res.accepted, 0);
    assert_int_equal(res.duplicates, n);
    sm_hash d2 = digest(f->a);
    assert_memory_equal(d1.b, d2.b, SM_HASH_BYTES);
    tu_free(cp, n);
}

/* A run counts as already stored only if its newest entry is stored with
   the same bytes and signature: the same run with the last signature
   altered, or with a forged entry before a stored one, is refused (the
   signature check is skipped only for a run that is the stored one). */
static void
test_stored_run_recognised_exactly(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 4), NULL);
    append_ok(f->b, tu_add("mug", 5), NULL);
    tu_copy cp[8];
    size_t n = tu_read(f->b, &f->idb.pub, 1, 8, cp);
    assert_int_equal(n, 3);
    sm_ingest_result res;
    assert_int_equal(ingest_copies(f->a, cp, n, &res), 0);
    sm_hash before = digest(f->a);

    cp[2].sig[9] ^= 0x01;               /* the stored run, its last signature altered */
    assert_int_equal(ingest_copies(f->a, cp, n, &res), SM_ESIG);
    cp[2].sig[9] ^= 0x01;

    /* A forged entry 2 (signed by c) followed by the stored entry 3. */
    sm_market m;
    assert_int_equal(sm_ledger_market(f->b, &m), 0);
    sm_entry e;
    assert_int_equal(sm_entry_decode(cp[1].bytes, cp[1].len, &e), 0);
    e.body = tu_add("mug", 500);
    uint8_t forged[SM_ENTRY_BYTES_MAX];
    tu_copy run[2] = { cp[1], cp[2] };
    run[0].bytes = forged;
    run[0].len = tu_sign(&e, &f->idc, forged, run[0].sig);
    assert_int_equal(ingest_copies(f->a, run, 2, &res), SM_ESIG);
    assert_int_equal(res.accepted, 0);

    sm_hash after = digest(f->a);
    assert_memory_equal(before.b, after.b, SM_HASH_BYTES);
    assert_int_equal(units(f->a, "mug", &f->idb.pub), 9);
    tu_free(cp, n);
}

typedef struct {
    sm_hash digest;
    sm_head head;
} snap;

static snap
take(sm_ledger *l, const sm_id *origin)
{
    snap s;
    s.digest = digest(l);
    assert_int_equal(sm_ledger_head(l, origin, &s.head), 0);
    return s;
}

static void
same(const snap *x, const snap *y)
{
    assert_memory_equal(x->digest.b, y->digest.b, SM_HASH_BYTES);
    assert_int_equal(x->head.seq, y->head.seq);
    assert_int_equal(x->head.applied, y->head.applied);
}

/* Build b's next entry by hand (to forge, tamper and craft bad entries). */
static sm_entry
next_entry(fx *f, sm_body body)
{
    sm_head h;
    sm_market m;
    assert_int_equal(sm_ledger_head(f->b, &f->idb.pub, &h), 0);
    assert_int_equal(sm_ledger_market(f->b, &m), 0);
    sm_entry e;
    memset(&e, 0, sizeof e);
    e.version = SM_ENTRY_VERSION;
    e.market = m.market;
    e.origin = f->idb.pub;
    e.seq = h.seq + 1;
    e.prev = h.link;
    e.hlc = SM_HLC_MAKE(NOW, 0);
    e.body = body;
    return e;
}

/* b's catalog gets a mug and 4 units of it; `to` gets b's log. */
static void
stock_b(fx *f, sm_ledger *to)
{
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 4), NULL);
    tu_sync(f->b, to, NOW);
}

/* b equivocates: two validly signed entries at its next seq, stock.add 1
   (e1, s1) and stock.add 2 (e2, s2).  s1 and s2 point into the pair: keep
   it where it was made. */
typedef struct {
    sm_entry e1, e2;
    uint8_t b1[SM_ENTRY_BYTES_MAX], b2[SM_ENTRY_BYTES_MAX];
    sm_signed s1, s2;
} fork_pair;

static void
fork_b(fx *f, fork_pair *p)
{
    memset(p, 0, sizeof *p);
    p->e1 = next_entry(f, tu_add("mug", 1));
    p->e2 = next_entry(f, tu_add("mug", 2));
    p->s1.bytes = p->b1;
    p->s2.bytes = p->b2;
    p->s1.len = tu_sign(&p->e1, &f->idb, p->b1, p->s1.sig);
    p->s2.len = tu_sign(&p->e2, &f->idb, p->b2, p->s2.sig);
}

/* Every kind of bad input is refused with its own code and leaves the
   receiving store unchanged. */
static void
test_bad_input_refused(void **state)
{
    fx *f = *state;
    stock_b(f, f->a);
    snap before = take(f->a, &f->idb.pub);
    uint8_t bytes[SM_ENTRY_BYTES_MAX + 16];
    sm_signed s;
    sm_ingest_result res;
    sm_entry e = next_entry(f, tu_add("mug", 1));
    size_t len = tu_sign(&e, &f->idb, bytes, s.sig);
    s.bytes = bytes;

    /* truncated */
    s.len = len - 1;
    assert_int_equal(sm_ledger_ingest(f->a, &s, 1, NOW, &res), SM_ETRUNC);
    /* oversized */
    uint8_t *big = calloc(1, SM_ENTRY_BYTES_MAX + 1);
    sm_signed sb = s;
    sb.bytes = big;
    sb.len = SM_ENTRY_BYTES_MAX + 1;
    assert_int_equal(sm_ledger_ingest(f->a, &sb, 1, NOW, &res), SM_ETOOBIG);
    free(big);
    /* wrong signature */
    s.len = len;
    s.sig[5] ^= 1;
    assert_int_equal(sm_ledger_ingest(f->a, &s, 1, NOW, &res), SM_ESIG);
    s.sig[5] ^= 1;
    /* signed by someone else */
    sm_signed forged = s;
    sm_entry_sign(bytes, len, f->idc.secret, forged.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &forged, 1, NOW, &res), SM_ESIG);
    /* wrong link */
    sm_entry bad = e;
    bad.prev.b[0] ^= 1;
    uint8_t bb[SM_ENTRY_BYTES_MAX];
    sm_signed sbad = { bb, tu_sign(&bad, &f->idb, bb, sbad.sig), { 0 } };
    sbad.len = tu_sign(&bad, &f->idb, bb, sbad.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &sbad, 1, NOW, &res), SM_ELINK);
    /* gap */
    bad = e;
    bad.seq += 1;
    sbad.len = tu_sign(&bad, &f->idb, bb, sbad.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &sbad, 1, NOW, &res), SM_EGAP);
    /* foreign market */
    bad = e;
    bad.market = f->idc.pub;
    sbad.len = tu_sign(&bad, &f->idb, bb, sbad.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &sbad, 1, NOW, &res), SM_EMARKET);
    /* far future */
    bad = e;
    bad.hlc = SM_HLC_MAKE(NOW + 2 * SM_FUTURE_SKEW_MS, 0);
    sbad.len = tu_sign(&bad, &f->idb, bb, sbad.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &sbad, 1, NOW, &res), SM_EFUTURE);
    /* not a member */
    sm_identity stranger;
    tu_identity(&stranger, 9);
    bad = e;
    bad.origin = stranger.pub;
    bad.seq = 1;
    memset(bad.prev.b, 0, SM_HASH_BYTES);
    sbad.len = tu_sign(&bad, &stranger, bb, sbad.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &sbad, 1, NOW, &res), SM_ENOTMEMBER);
    /* a roster entry from a stall */
    bad = e;
    bad.body = tu_admit(&stranger.pub, "Sneaky", SM_ROLE_STALL);
    sbad.len = tu_sign(&bad, &f->idb, bb, sbad.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &sbad, 1, NOW, &res), SM_ENOTORG);
    /* a return of a sale that does not exist */
    bad = e;
    bad.body = tu_return(1, "mug", 1);
    sbad.len = tu_sign(&bad, &f->idb, bb, sbad.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &sbad, 1, NOW, &res), SM_ENOSALE);

    /* unknown kind and negative quantity: patch the encoded bytes, re-sign. */
    memcpy(bb, bytes, len);
    /* the kind is the byte before the body array; stock.add = 0x02 */
    size_t kpos = len - 1;
    while (kpos > 0 && !(bb[kpos] == 0x02 && bb[kpos + 1] == 0x92))
        kpos--;
    assert_true(kpos > 0);
    bb[kpos] = 0x7f;
    sbad.len = len;
    sm_entry_sign(bb, len, f->idb.secret, sbad.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &sbad, 1, NOW, &res), SM_EKIND);
    memcpy(bb, bytes, len);
    assert_int_equal(bb[len - 1], 0x01);    /* qty 1 as positive fixint */
    bb[len - 1] = 0xff;                     /* -1 as negative fixint */
    sm_entry_sign(bb, len, f->idb.secret, sbad.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &sbad, 1, NOW, &res), SM_EQTY);

    snap after = take(f->a, &f->idb.pub);
    same(&before, &after);
    /* and the genuine entry is still accepted afterwards */
    assert_int_equal(sm_ledger_ingest(f->a, &s, 1, NOW, &res), 0);
    assert_int_equal(res.accepted, 1);
}

/* Two validly signed entries at the same seq are an equivocation: both kept
   as evidence, the origin stopped from the fork on, state rebuilt so every
   node that sees the fork agrees. */
static void
test_equivocation(void **state)
{
    fx *f = *state;
    stock_b(f, f->a);
    fork_pair p;
    fork_b(f, &p);
    sm_ingest_result res;
    assert_int_equal(sm_ledger_ingest(f->a, &p.s1, 1, NOW, &res), 0);
    assert_int_equal(units(f->a, "mug", &f->idb.pub), 5);
    assert_int_equal(sm_ledger_ingest(f->a, &p.s2, 1, NOW, &res), SM_EFORK);
    sm_head h;
    assert_int_equal(sm_ledger_head(f->a, &f->idb.pub, &h), 0);
    assert_int_equal(h.cap, p.e1.seq - 1);
    assert_int_equal(h.applied, p.e1.seq - 1);
    assert_int_equal(units(f->a, "mug", &f->idb.pub), 4);
    /* c sees the other branch first, then the first: same state as a. */
    tu_sync(f->b, f->c, NOW);
    assert_int_equal(sm_ledger_ingest(f->c, &p.s2, 1, NOW, &res), 0);
    assert_int_equal(sm_ledger_ingest(f->c, &p.s1, 1, NOW, &res), SM_EFORK);
    sm_hash da = digest(f->a), dc;
    tu_sync(f->a, f->c, NOW);
    dc = digest(f->c);
    da = digest(f->a);
    assert_memory_equal(da.b, dc.b, SM_HASH_BYTES);
    /* further entries past the fork are refused */
    sm_entry e3 = p.e1;
    e3.seq++;
    sm_entry_link(p.b1, p.s1.len, p.s1.sig, &e3.prev);
    uint8_t b3[SM_ENTRY_BYTES_MAX];
    sm_signed s3 = { b3, 0, { 0 } };
    s3.len = tu_sign(&e3, &f->idb, b3, s3.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &s3, 1, NOW, &res), SM_EFORK);
}

/* A fork rebuilds the state from the log, roster first.  On a node running
   degraded with an entry of the organiser's log damaged, the rebuild reads
   the roster only below the damage, as applying does, instead of failing
   the batch that brought the fork as corrupt (the simulator's seed 1092). */
static void
test_fork_rebuild_below_roster_damage(void **state)
{
    fx *f = *state;
    stock_b(f, f->c);
    sm_head ha;
    assert_int_equal(sm_ledger_head(f->c, &f->ida.pub, &ha), 0);
    assert_true(ha.seq >= 2);

    /* The organiser's last entry rots on c's disk; the check marks it. */
    damage_stored(f->c, &f->ida.pub, ha.seq, SM_SIG_BYTES);
    sm_check_report r;
    assert_int_equal(sm_ledger_check(f->c, SM_CHECK_ALL_ORIGINS, &r), SM_EDEGRADED);
    assert_int_equal(r.damaged_count, 1);
    assert_int_equal(sm_ledger_set_damaged(f->c, &r.damaged[0]), 0);

    /* b equivocates: c learns the fork and rebuilds, in a batch. */
    fork_pair p;
    fork_b(f, &p);
    sm_ingest_result res;
    assert_int_equal(sm_ledger_begin(f->c), 0);
    assert_int_equal(sm_ledger_ingest(f->c, &p.s1, 1, NOW, &res), 0);
    assert_int_equal(sm_ledger_ingest(f->c, &p.s2, 1, NOW, &res), SM_EFORK);
    assert_int_equal(sm_ledger_commit(f->c), 0);
    sm_head hb;
    assert_int_equal(sm_ledger_head(f->c, &f->idb.pub, &hb), 0);
    assert_int_equal(hb.cap, p.e1.seq - 1);
    assert_int_equal(units(f->c, "mug", &f->idb.pub), 4);
}

static int
count_forks(const sm_id *origin, uint64_t seq, void *arg)
{
    (void) origin; (void) seq;
    (*(int *) arg)++;
    return 0;
}

typedef struct {
    int count;
    uint64_t seq;
    sm_entry a, b;
    int verified;
} evidence_ctx;

static int
evidence_cb(const sm_id *origin, uint64_t seq, const sm_signed *a, const sm_signed *b,
            void *arg)
{
    evidence_ctx *c = arg;
    c->count++;
    c->seq = seq;
    assert_int_equal(sm_entry_decode(a->bytes, a->len, &c->a), 0);
    assert_int_equal(sm_entry_decode(b->bytes, b->len, &c->b), 0);
    c->verified += sm_entry_verify(a->bytes, a->len, a->sig, origin) == 0;
    c->verified += sm_entry_verify(b->bytes, b->len, b->sig, origin) == 0;
    return 0;
}

/* Fork evidence is listed, and read back with both signed entries. */
static void
test_fork_evidence_listed(void **state)
{
    fx *f = *state;
    test_equivocation(state);
    int n = 0;
    assert_int_equal(sm_ledger_forks_each(f->a, count_forks, &n), 0);
    assert_int_equal(n, 1);
    evidence_ctx c;
    memset(&c, 0, sizeof c);
    assert_int_equal(sm_ledger_fork_evidence_each(f->a, evidence_cb, &c), 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.a.seq, c.seq);
    assert_int_equal(c.b.seq, c.seq);
    assert_int_equal(c.verified, 2);
    /* the two sides: stock.add 1 (stored first) and stock.add 2 */
    assert_int_equal(c.a.body.u.stock_add.qty, 1);
    assert_int_equal(c.b.body.u.stock_add.qty, 2);
    /* the origin's lowest fork seq; none for another origin */
    uint64_t at = 0;
    assert_int_equal(sm_ledger_fork_at(f->a, &c.a.origin, &at), 0);
    assert_int_equal(at, c.seq);
    sm_id other = c.a.origin;
    other.b[0] ^= 1;
    assert_int_equal(sm_ledger_fork_at(f->a, &other, &at), SM_ENOTFOUND);
    assert_int_equal(at, c.seq);
}

/* A revoke voids the revoked node's entries above upto_seq, whether they
   arrived before the revoke or after. */
static void
test_revoke(void **state)
{
    fx *f = *state;
    stock_b(f, f->a);
    sm_head hb;
    assert_int_equal(sm_ledger_head(f->a, &f->idb.pub, &hb), 0);
    append_ok(f->b, tu_add("mug", 10), NULL);   /* after the revoke point */
    tu_sync(f->b, f->c, NOW);                   /* c has it, a does not */
    assert_int_equal(units(f->c, "mug", &f->idb.pub), 14);
    append_ok(f->a, tu_revoke(&f->idb.pub, hb.seq), NULL);
    assert_int_equal(units(f->a, "mug", &f->idb.pub), 4);
    tu_sync(f->b, f->a, NOW);
    assert_int_equal(units(f->a, "mug", &f->idb.pub), 4);
    tu_sync(f->a, f->c, NOW);
    assert_int_equal(units(f->c, "mug", &f->idb.pub), 4);
    sm_hash da = digest(f->a), dc = digest(f->c);
    assert_memory_equal(da.b, dc.b, SM_HASH_BYTES);
    /* the revoked node cannot append */
    tu_sync(f->a, f->b, NOW);
    sm_body add = tu_add("mug", 1);
    assert_int_equal(sm_ledger_append(f->b, &add, NOW, NULL), SM_EREVOKED);
}

/* reindex rebuilds exactly the same state from the log. */
static void
test_reindex_same_digest(void **state)
{
    fx *f = *state;
    uint64_t sale = 0, hold = 0;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 9), NULL);
    append_ok(f->b, tu_sale("mug", 2, 1200, "x1"), &sale);
    append_ok(f->b, tu_return(sale, "mug", 1), NULL);
    append_ok(f->b, tu_hold("mug", 2, NOW + 1000), &hold);
    append_ok(f->b, tu_move("mug", 3, &f->idc.pub), NULL);
    tu_sync(f->b, f->a, NOW);
    sm_hash d1 = digest(f->a);
    assert_int_equal(sm_ledger_reindex(f->a), 0);
    sm_hash d2 = digest(f->a);
    assert_memory_equal(d1.b, d2.b, SM_HASH_BYTES);
    sm_hash e1 = digest(f->b);
    assert_int_equal(sm_ledger_reindex(f->b), 0);
    sm_hash e2 = digest(f->b);
    assert_memory_equal(e1.b, e2.b, SM_HASH_BYTES);
}

/* verify passes a clean store and names the first tampered entry. */
static void
test_verify_detects_tampering(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    append_ok(f->b, tu_add("mug", 9), NULL);
    tu_sync(f->b, f->a, NOW);
    sm_id bad;
    uint64_t seq = 0, checked = 0;
    assert_int_equal(sm_ledger_verify(f->a, &bad, &seq, &checked), 0);
    assert_true(checked >= 5);
    sm_ledger_destroy(&f->a);

    /* flip one byte of b's second entry, in a's store, behind its back */
    char path[512];
    snprintf(path, sizeof path, "%s/a", f->dir);
    int err = 0;
    sm_store *st = sm_store_open(path, 256u << 20, false, true, &err);
    assert_non_null(st);
    sm_txn *txn = sm_txn_begin(st, true, &err);
    uint8_t key[40];
    memcpy(key, f->idb.pub.b, 32);
    memset(key + 32, 0, 8);
    key[39] = 2;
    sm_val pos, v;
    assert_int_equal(sm_kv_get(txn, SM_DB_LOGIDX, key, sizeof key, &pos), 0);
    uint8_t at[8];
    memcpy(at, pos.data, sizeof at);
    assert_int_equal(sm_kv_get(txn, SM_DB_LOG, at, sizeof at, &v), 0);
    uint8_t *copy = malloc(v.len);
    memcpy(copy, v.data, v.len);
    copy[v.len - 1] ^= 0x01;
    assert_int_equal(sm_kv_put(txn, SM_DB_LOG, at, sizeof at, copy, v.len), 0);
    free(copy);
    assert_int_equal(sm_txn_commit(&txn), 0);
    sm_store_destroy(&st);

    f->a = tu_open(f->dir, "a");
    int rc = sm_ledger_verify(f->a, &bad, &seq, &checked);
    assert_true(rc != 0);
    assert_memory_equal(bad.b, f->idb.pub.b, SM_KEY_BYTES);
    assert_int_equal(seq, 2);
}

/* A full store refuses the write with SM_ENOSPC, loses nothing committed
   and keeps serving reads. */
static void
test_full_store_fault(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    char path[512];
    snprintf(path, sizeof path, "%s/tiny", dir);
    sm_ledger_opts o = { .map_bytes = 256u << 10, .no_sync = true };
    int err = 0;
    sm_ledger *l = sm_ledger_open(path, &o, &err);
    assert_non_null(l);
    sm_identity id;
    tu_identity(&id, 7);
    sm_ledger_set_identity(l, &id);
    assert_int_equal(sm_ledger_create_market(l, "Tiny", "EUR", NOW), 0);
    append_ok(l, tu_item("pin", "Pin", 100), NULL);
    append_ok(l, tu_add("pin", 1000000), NULL);
    int rc = 0;
    uint64_t sold = 0;
    for (int i = 0; i < 100000 && rc == 0; i++) {
        sm_body s = tu_sale("pin", 1, 100, NULL);
        rc = sm_ledger_append(l, &s, NOW, NULL);
        if (rc == 0)
            sold++;
    }
    assert_int_equal(rc, SM_ENOSPC);
    assert_true(sold > 10);
    sm_units u;
    assert_int_equal(sm_ledger_units(l, "pin", &id.pub, &u), 0);
    assert_int_equal(u.sold, (int64_t) sold);
    sm_head h;
    assert_int_equal(sm_ledger_head(l, &id.pub, &h), 0);
    assert_int_equal(h.seq, sold + 3);
    sm_id bad;
    uint64_t seq;
    assert_int_equal(sm_ledger_verify(l, &bad, &seq, NULL), 0);
    sm_ledger_destroy(&l);
    tu_rmrf(dir);
    free(dir);
}

/* Group commit: appends in a batch become visible together on commit and
   vanish together on abort. */
static void
test_batch_commit_and_abort(void **state)
{
    fx *f = *state;
    append_ok(f->b, tu_item("mug", "Blue mug", 1200), NULL);
    assert_int_equal(sm_ledger_begin(f->b), 0);
    append_ok(f->b, tu_add("mug", 1), NULL);
    append_ok(f->b, tu_add("mug", 2), NULL);
    sm_body s = tu_sale("mug", 9, 1, NULL);
    assert_int_equal(sm_ledger_append(f->b, &s, NOW, NULL), SM_ENOSTOCK);
    assert_int_equal(sm_ledger_commit(f->b), 0);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 3);
    assert_int_equal(sm_ledger_begin(f->b), 0);
    append_ok(f->b, tu_add("mug", 5), NULL);
    sm_ledger_abort(f->b);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 3);
    append_ok(f->b, tu_add("mug", 1), NULL);
    assert_int_equal(units(f->b, "mug", &f->idb.pub), 4);
}

typedef struct {
    sm_ledger *l;
    const sm_id *origin;
    sm_head head;
    int rc;
} s_head_probe;

static void *
s_head_thread(void *arg)
{
    s_head_probe *p = arg;
    p->rc = sm_ledger_head(p->l, p->origin, &p->head);
    return NULL;
}

/* A batch's writes are read back on the thread that opened it (the mesh
   ingests a round of runs and reads them before the one commit), while
   another thread reads the last commit until the batch commits. */
static void
test_batch_read_own_writes(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 3; i++)
        append_ok(f->b, tu_item("mug", "Blue mug", 1200 + i), NULL);
    sm_head before;
    assert_int_equal(sm_ledger_head(f->c, &f->idb.pub, &before), 0);
    assert_int_equal(sm_ledger_begin(f->c), 0);
    assert_true(tu_sync(f->b, f->c, NOW) > 0);
    sm_head inside;
    assert_int_equal(sm_ledger_head(f->c, &f->idb.pub, &inside), 0);
    assert_int_equal(inside.seq, before.seq + 3);
    s_head_probe probe = { .l = f->c, .origin = &f->idb.pub };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, s_head_thread, &probe), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(probe.rc, 0);
    assert_int_equal(probe.head.seq, before.seq);
    assert_int_equal(sm_ledger_commit(f->c), 0);
    assert_int_equal(pthread_create(&t, NULL, s_head_thread, &probe), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(probe.head.seq, before.seq + 3);
    /* An aborted batch's writes are gone for its own thread too. */
    append_ok(f->b, tu_item("mug", "Blue mug", 1300), NULL);
    assert_int_equal(sm_ledger_begin(f->c), 0);
    assert_true(tu_sync(f->b, f->c, NOW) > 0);
    sm_ledger_abort(f->c);
    assert_int_equal(sm_ledger_head(f->c, &f->idb.pub, &inside), 0);
    assert_int_equal(inside.seq, before.seq + 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sale_reduces_units, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversell_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_sku_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_external_id_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_returns_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roster_organiser_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_and_waiting_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_move_applies_waiting_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_waiting_entry_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stored_run_recognised_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_equivocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_evidence_listed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_rebuild_below_roster_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reindex_same_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_detects_tampering, setup, teardown),
        cmocka_unit_test(test_full_store_fault),
        cmocka_unit_test_setup_teardown(test_batch_commit_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_read_own_writes, setup, teardown),
    };
    return cmocka_run_group_tests_name("ledger", tests, NULL, NULL);
}
