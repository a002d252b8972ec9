/*  Unit tests of drops (src/drop.c, src/state_drop.c): nothing of a drop's
    sku is sold, held, moved or written off at its stall before the start;
    a raffle's draw is deterministic, counts only entries within its heads
    up to the close and one per device, and `verify` fails on a changed
    secret, entry or head.

    Three ledgers: the organiser O, the stall S that drops, and a stall B
    that takes raffle entries too (as a livestream's node would).          */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drop.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

#define NOW    1700000000000ULL
#define START  (NOW + 60000)
#define CLOSES (NOW + 120000)

typedef struct {
    char *dir;
    sm_identity ido, ids, idb;
    sm_ledger *o, *s, *b;
} fx;

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    tu_identity(&f->ido, 1);
    tu_identity(&f->ids, 2);
    tu_identity(&f->idb, 3);
    f->o = tu_open(f->dir, "o");
    f->s = tu_open(f->dir, "s");
    f->b = tu_open(f->dir, "b");
    sm_ledger_set_identity(f->o, &f->ido);
    sm_ledger_set_identity(f->s, &f->ids);
    sm_ledger_set_identity(f->b, &f->idb);
    assert_int_equal(sm_ledger_create_market(f->o, "Market", "GBP", NOW), 0);
    sm_body as = tu_admit(&f->ids.pub, "Stall", SM_ROLE_STALL);
    sm_body ab = tu_admit(&f->idb.pub, "Stream", SM_ROLE_STALL);
    assert_int_equal(sm_ledger_append(f->o, &as, NOW, NULL), 0);
    assert_int_equal(sm_ledger_append(f->o, &ab, NOW, NULL), 0);
    tu_join(f->s, f->o);
    tu_join(f->b, f->o);
    tu_sync(f->o, f->s, NOW);
    tu_sync(f->o, f->b, NOW);
    sm_body it = tu_item("mug", "Mug", 3000);
    sm_body add = tu_add("mug", 10);
    assert_int_equal(sm_ledger_append(f->s, &it, NOW, NULL), 0);
    assert_int_equal(sm_ledger_append(f->s, &add, NOW, NULL), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    sm_ledger_destroy(&f->o);
    sm_ledger_destroy(&f->s);
    sm_ledger_destroy(&f->b);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static sm_body
drop_of(int mode, uint32_t qty, uint32_t per)
{
    sm_body b = tu_drop("mug", qty, START);
    b.u.drop.mode = (uint8_t) mode;
    b.u.drop.per_shopper = per;
    b.u.drop.pickup_minutes = 30;
    b.u.drop.closes_ms = mode == SM_DROP_RAFFLE ? CLOSES : 0;
    return b;
}

static sm_body
entry_of(const fx *f, uint64_t drop_seq, uint8_t device, uint8_t client)
{
    sm_body b;
    memset(&b, 0, sizeof b);
    b.kind = SM_KIND_RAFFLE_ENTRY;
    b.u.raffle_entry.drop_origin = f->ids.pub;
    b.u.raffle_entry.drop_seq = drop_seq;
    memset(b.u.raffle_entry.device, device, SM_HOLD_TAG_BYTES);
    b.u.raffle_entry.has_client = client != 0;
    memset(b.u.raffle_entry.client, client, SM_HOLD_TAG_BYTES);
    return b;
}

/*  The draw of S's drop `drop_seq` in one batch, as the policy makes it.  */
static int
draw(fx *f, uint64_t drop_seq, uint64_t now_ms, uint64_t *draw_seq)
{
    assert_int_equal(sm_ledger_begin(f->s), 0);
    int rc = sm_drop_draw(f->s, &f->ids.pub, drop_seq, now_ms, draw_seq);
    if (rc == 0)
        assert_int_equal(sm_ledger_commit(f->s), 0);
    else
        sm_ledger_abort(f->s);
    return rc;
}

static int64_t
units(sm_ledger *l, const sm_id *at)
{
    sm_units u;
    assert_int_equal(sm_ledger_units(l, "mug", at, &u), 0);
    return u.units;
}

/* Before a first-come drop's start only the units beyond its qty at its
   stall are sold, held, moved or written off: what would take the drop's
   units is refused (drop_not_started); from the start they are; a drop of
   more units than the stall holds, or a second drop of the sku before the
   first opens, is refused; the drop designates units, adding none. */
static void
test_first_come_gate(void **state)
{
    fx *f = *state;
    sm_body big = drop_of(SM_DROP_FIRST_COME, 11, 2);
    assert_int_equal(sm_ledger_append(f->s, &big, NOW, NULL), SM_ENOSTOCK);
    sm_body d = drop_of(SM_DROP_FIRST_COME, 6, 2);
    uint64_t seq = 0;
    assert_int_equal(sm_ledger_append(f->s, &d, NOW, &seq), 0);
    assert_int_equal(units(f->s, &f->ids.pub), 10);
    assert_int_equal(sm_ledger_append(f->s, &d, NOW, NULL), SM_EDROPBUSY);

    /* 10 here, 6 of them the drop's: 5 would take one of its units. */
    sm_body sale5 = tu_sale("mug", 5, 3000, NULL);
    sm_body hold5 = tu_hold("mug", 5, START + 60000);
    sm_body move5 = tu_move("mug", 5, &f->idb.pub);
    sm_body off5 = tu_adjust("mug", -5);
    assert_int_equal(sm_ledger_append(f->s, &sale5, START - 1, NULL), SM_EDROP);
    assert_int_equal(sm_ledger_append(f->s, &hold5, START - 1, NULL), SM_EDROP);
    assert_int_equal(sm_ledger_append(f->s, &move5, START - 1, NULL), SM_EDROP);
    assert_int_equal(sm_ledger_append(f->s, &off5, START - 1, NULL), SM_EDROP);
    sm_body sale4 = tu_sale("mug", 4, 3000, NULL);
    assert_int_equal(sm_ledger_append(f->s, &sale4, START - 1, NULL), 0);
    assert_int_equal(units(f->s, &f->ids.pub), 6);

    sm_body sale = tu_sale("mug", 1, 3000, NULL);
    sm_body hold = tu_hold("mug", 1, START + 60000);
    sm_body move = tu_move("mug", 1, &f->idb.pub);
    sm_body off = tu_adjust("mug", -1);
    assert_int_equal(sm_ledger_append(f->s, &sale, START - 1, NULL), SM_EDROP);
    assert_int_equal(sm_ledger_append(f->s, &hold, START - 1, NULL), SM_EDROP);
    assert_int_equal(sm_ledger_append(f->s, &move, START - 1, NULL), SM_EDROP);
    assert_int_equal(sm_ledger_append(f->s, &off, START - 1, NULL), SM_EDROP);
    assert_int_equal(units(f->s, &f->ids.pub), 6);
    assert_int_equal(sm_ledger_append(f->s, &sale, START, NULL), 0);
    assert_int_equal(sm_ledger_append(f->s, &hold, START, NULL), 0);
    assert_int_equal(sm_ledger_append(f->s, &move, START, NULL), 0);
    assert_int_equal(units(f->s, &f->ids.pub), 3);

    sm_drop dr;
    assert_int_equal(sm_drop_get(f->s, &f->ids.pub, seq, &dr), 0);
    assert_int_equal(dr.mode, SM_DROP_FIRST_COME);
    assert_int_equal(dr.qty, 6);
    assert_int_equal(dr.per_shopper, 2);
    uint64_t taken = 0;
    assert_int_equal(sm_drop_ledger(f->s, &dr, NULL, NULL, NULL, NULL, &taken, NULL, NULL), 0);
    assert_int_equal(taken, 2);                /* the sale and the hold; a move is not */
    /* The drop reaches B and is the same there. */
    tu_sync(f->s, f->b, START);
    sm_drop db;
    assert_int_equal(sm_drop_get(f->b, &f->ids.pub, seq, &db), 0);
    assert_string_equal(db.sku, "mug");
    assert_int_equal(db.starts_ms, START);
}

/*  A raffle of 3 units, 1 a shopper, with entries at S and B: returns the
    drop's seq.  Devices 1..5 enter at S, 6..9 at B, device 1 again at B
    (a duplicate, from B's log: B has not heard of S's entry).              */
static uint64_t
raffle_setup(fx *f)
{
    sm_body d = drop_of(SM_DROP_RAFFLE, 3, 1);
    uint64_t seq = 0;
    assert_int_equal(sm_ledger_append(f->s, &d, NOW, &seq), 0);
    tu_sync(f->s, f->b, NOW);
    for (uint8_t dev = 1; dev <= 5; dev++) {
        sm_body e = entry_of(f, seq, dev, (uint8_t) (0x80 + dev));
        assert_int_equal(sm_ledger_append(f->s, &e, START + dev, NULL), 0);
    }
    for (uint8_t dev = 6; dev <= 9; dev++) {
        sm_body e = entry_of(f, seq, dev, (uint8_t) (0x80 + dev));
        assert_int_equal(sm_ledger_append(f->b, &e, START + 100 + dev, NULL), 0);
    }
    sm_body dup = entry_of(f, seq, 1, 0x99);
    assert_int_equal(sm_ledger_append(f->b, &dup, START + 200, NULL), 0);
    return seq;
}

/*  raffle_setup, B's entries synced to S, then S draws just after the
    close: the drop's seq, and the draw's in *draw_seq.                      */
static uint64_t
raffle_drawn(fx *f, uint64_t *draw_seq)
{
    uint64_t seq = raffle_setup(f);
    tu_sync(f->b, f->s, CLOSES);
    assert_int_equal(draw(f, seq, CLOSES + 1000, draw_seq), 0);
    return seq;
}

/* A raffle end to end: entries before the start, after the close, twice
   from a device or twice from an address at one node are refused; the
   gate holds the raffle's units back until the draw; a draw before the close is refused;
   the draw names 3 winners among 9 devices (the duplicate not counted),
   makes their holds, and verifies at S and at B; a second draw is refused. */
static void
test_raffle_draw_and_verify(void **state)
{
    fx *f = *state;
    uint64_t seq = raffle_setup(f);
    sm_body early = entry_of(f, seq, 42, 0);
    assert_int_equal(sm_ledger_append(f->s, &early, START - 1, NULL), SM_EDROP);
    assert_int_equal(sm_ledger_append(f->s, &early, CLOSES + 1, NULL), SM_EDROPCLOSED);
    sm_body again = entry_of(f, seq, 3, 0x70);
    assert_int_equal(sm_ledger_append(f->s, &again, START + 50, NULL), SM_EENTERED);
    sm_body same_addr = entry_of(f, seq, 43, 0x81);     /* device 1's address */
    assert_int_equal(sm_ledger_append(f->s, &same_addr, START + 50, NULL), SM_EENTERED);
    sm_body sale = tu_sale("mug", 8, 3000, NULL);     /* 10 here: 1 of the raffle's 3 */
    assert_int_equal(sm_ledger_append(f->s, &sale, CLOSES + 1, NULL), SM_EDROP);

    tu_sync(f->b, f->s, CLOSES);
    assert_int_equal(draw(f, seq, CLOSES, NULL), SM_EDRAWEARLY);
    uint64_t draw_seq = 0;
    assert_int_equal(draw(f, seq, CLOSES + 1000, &draw_seq), 0);
    assert_int_equal(draw(f, seq, CLOSES + 2000, NULL), SM_EDRAWN);
    sm_drop d;
    assert_int_equal(sm_drop_get(f->s, &f->ids.pub, seq, &d), 0);
    assert_int_equal(d.draw_seq, draw_seq);
    assert_int_equal(d.winners, 3);
    assert_int_equal(units(f->s, &f->ids.pub), 7);   /* 3 held for the winners */
    /* The rest is on sale now. */
    sm_body rest = tu_sale("mug", 7, 3000, NULL);
    assert_int_equal(sm_ledger_append(f->s, &rest, CLOSES + 3000, NULL), 0);

    char why[320];
    sm_drop_result rs, rb;
    assert_int_equal(sm_drop_verify(f->s, &f->ids.pub, seq, why, sizeof why, &rs), 0);
    assert_int_equal(rs.counted, 9);
    assert_int_equal(rs.winners, 3);
    tu_sync(f->s, f->b, CLOSES + 3000);
    assert_int_equal(sm_drop_verify(f->b, &f->ids.pub, seq, why, sizeof why, &rb), 0);
    assert_int_equal(rb.counted, 9);
    for (size_t i = 0; i < 9; i++)
        assert_memory_equal(rs.tickets[i].hash.b, rb.tickets[i].hash.b, SM_HASH_BYTES);
    /* Device 1 counts once: its earliest entry, at S. */
    for (size_t i = 0; i < 9; i++)
        if (rs.tickets[i].device[0] == 1)
            assert_memory_equal(rs.tickets[i].origin.b, f->ids.pub.b, SM_KEY_BYTES);
    /* The winners hold their unit with a code, for pickup_minutes. */
    sm_drop_result_free(&rs);
    sm_drop_result_free(&rb);
}

/* The draw is a function of the log: computed twice, and at another node,
   it gives the same R, order and ranks; without the secret only the
   counted set (not its order) is known. */
static void
test_draw_deterministic(void **state)
{
    fx *f = *state;
    uint64_t seq = raffle_setup(f);
    tu_sync(f->b, f->s, CLOSES);
    tu_sync(f->s, f->b, CLOSES);
    sm_drop d;
    assert_int_equal(sm_drop_get(f->s, &f->ids.pub, seq, &d), 0);
    sm_drop_head heads[2] = { { f->ids.pub, 0 }, { f->idb.pub, 0 } };
    sm_head h;
    assert_int_equal(sm_ledger_head(f->s, &f->ids.pub, &h), 0);
    heads[0].seq = h.seq;
    assert_int_equal(sm_ledger_head(f->s, &f->idb.pub, &h), 0);
    heads[1].seq = h.seq;
    if (memcmp(heads[0].origin.b, heads[1].origin.b, SM_KEY_BYTES) > 0) {
        sm_drop_head t = heads[0];
        heads[0] = heads[1];
        heads[1] = t;
    }
    sm_hash secret;
    memset(secret.b, 7, sizeof secret.b);
    sm_drop_result a, b, c;
    assert_int_equal(sm_drop_compute(f->s, &d, heads, 2, &secret, true, &a, NULL, NULL), 0);
    assert_int_equal(sm_drop_compute(f->s, &d, heads, 2, &secret, false, &b, NULL, NULL), 0);
    assert_int_equal(sm_drop_compute(f->b, &d, heads, 2, &secret, true, &c, NULL, NULL), 0);
    assert_int_equal(a.counted, 9);
    assert_memory_equal(a.r.b, b.r.b, SM_HASH_BYTES);
    assert_memory_equal(a.r.b, c.r.b, SM_HASH_BYTES);
    for (size_t i = 0; i < a.counted; i++) {
        assert_memory_equal(a.tickets[i].hash.b, b.tickets[i].hash.b, SM_HASH_BYTES);
        assert_memory_equal(a.tickets[i].hash.b, c.tickets[i].hash.b, SM_HASH_BYTES);
        if (i > 0)
            assert_true(memcmp(a.tickets[i - 1].rank.b, a.tickets[i].rank.b, SM_HASH_BYTES) < 0);
    }
    /* Another secret, another order (for these 9 entries). */
    sm_hash other;
    memset(other.b, 8, sizeof other.b);
    sm_drop_result o;
    assert_int_equal(sm_drop_compute(f->s, &d, heads, 2, &other, false, &o, NULL, NULL), 0);
    bool differs = false;
    for (size_t i = 0; i < a.counted; i++)
        differs |= memcmp(a.tickets[i].hash.b, o.tickets[i].hash.b, SM_HASH_BYTES) != 0;
    assert_true(differs);
    /* A head short of B's entries counts only S's five. */
    sm_drop_head s_only = { f->ids.pub, 0 };
    assert_int_equal(sm_ledger_head(f->s, &f->ids.pub, &h), 0);
    s_only.seq = h.seq;
    sm_drop_result so;
    assert_int_equal(sm_drop_compute(f->s, &d, &s_only, 1, &secret, false, &so, NULL, NULL), 0);
    assert_int_equal(so.counted, 5);
    sm_drop_result_free(&a);
    sm_drop_result_free(&b);
    sm_drop_result_free(&c);
    sm_drop_result_free(&o);
    sm_drop_result_free(&so);
}

/*  Copy origin's whole log from `from` into `to`, changing entry `at` with
    `change` and re-signing it and every later entry with `id` (so the
    chain verifies: the change is one only the origin could make).          */
static void
copy_changed(sm_ledger *from, sm_ledger *to, const sm_identity *id, uint64_t at,
             void (*change)(sm_entry *e, void *arg), void *arg)
{
    enum { MAX = 256 };
    tu_copy *c = calloc(MAX, sizeof *c);
    sm_signed *run = calloc(MAX, sizeof *run);
    uint8_t (*bytes)[SM_ENTRY_BYTES_MAX] = calloc(MAX, SM_ENTRY_BYTES_MAX);
    assert_non_null(c);
    size_t n = tu_read(from, &id->pub, 1, MAX, c);
    sm_hash link;
    memset(&link, 0, sizeof link);
    for (size_t i = 0; i < n; i++) {
        sm_entry e;
        assert_int_equal(sm_entry_decode(c[i].bytes, c[i].len, &e), 0);
        e.prev = link;
        if (e.seq == at)
            change(&e, arg);
        run[i].len = tu_sign(&e, id, bytes[i], run[i].sig);
        run[i].bytes = bytes[i];
        sm_entry_link(bytes[i], run[i].len, run[i].sig, &link);
    }
    sm_ingest_result res;
    assert_int_equal(sm_ledger_ingest(to, run, n, CLOSES + 10000, &res), 0);
    tu_free(c, n);
    free(c);
    free(run);
    free(bytes);
}

static void
change_secret(sm_entry *e, void *arg)
{
    (void) arg;
    assert_int_equal(e->body.kind, SM_KIND_RAFFLE_DRAW);
    e->body.u.raffle_draw.secret.b[5] ^= 1;
}

static void
change_head(sm_entry *e, void *arg)
{
    const sm_id *b = arg;
    assert_int_equal(e->body.kind, SM_KIND_RAFFLE_DRAW);
    for (uint32_t i = 0; i < e->body.u.raffle_draw.head_count; i++)
        if (memcmp(e->body.u.raffle_draw.heads[i].origin.b, b->b, SM_KEY_BYTES) == 0)
            e->body.u.raffle_draw.heads[i].seq -= 2;   /* B's last two entries out */
}

static void
change_device(sm_entry *e, void *arg)
{
    (void) arg;
    assert_int_equal(e->body.kind, SM_KIND_RAFFLE_ENTRY);
    e->body.u.raffle_entry.device[0] ^= 0x40;
}

/*  A fresh ledger with O's roster, B's log as B has it, and S's log with
    one entry changed; then verify the raffle there.                        */
static int
verify_changed(fx *f, const char *name, const sm_identity *id, uint64_t at,
               void (*change)(sm_entry *, void *), void *arg, uint64_t drop_seq,
               char *why, size_t cap)
{
    sm_ledger *c = tu_open(f->dir, name);
    tu_join(c, f->o);
    tu_sync(f->o, c, CLOSES + 10000);
    if (id == &f->ids) {
        copy_changed(f->s, c, &f->ids, at, change, arg);
        tu_sync(f->b, c, CLOSES + 10000);
    } else {
        copy_changed(f->b, c, &f->idb, at, change, arg);
        tu_sync(f->s, c, CLOSES + 10000);
    }
    int rc = sm_drop_verify(c, &f->ids.pub, drop_seq, why, cap, NULL);
    sm_ledger_destroy(&c);
    return rc;
}

/* verify recomputes the draw: an unchanged copy passes; a copy whose draw
   reveals another secret, names another head, or whose raffle entry has
   another device (each re-signed by its author, so only the rule can tell)
   fails, naming what does not match. */
static void
test_verify_catches_changes(void **state)
{
    fx *f = *state;
    uint64_t draw_seq = 0;
    uint64_t seq = raffle_drawn(f, &draw_seq);
    tu_sync(f->s, f->b, CLOSES + 2000);
    char why[320];
    assert_int_equal(verify_changed(f, "same", &f->ids, 0, change_secret, NULL, seq,
                                    why, sizeof why), 0);
    assert_int_equal(verify_changed(f, "secret", &f->ids, draw_seq, change_secret, NULL, seq,
                                    why, sizeof why), SM_EDRAWBAD);
    assert_non_null(strstr(why, "commitment"));
    assert_int_equal(verify_changed(f, "head", &f->ids, draw_seq, change_head, &f->idb.pub,
                                    seq, why, sizeof why), SM_EDRAWBAD);
    assert_non_null(strstr(why, "winner"));
    /* Each of B's raffle entries in turn (B's log holds only those). */
    sm_head hb;
    assert_int_equal(sm_ledger_head(f->b, &f->idb.pub, &hb), 0);
    char why2[320] = "";
    int rc = SM_EDRAWBAD, fails = 0;
    for (uint64_t at = 1; at <= hb.seq; at++) {
        char nm[16];
        snprintf(nm, sizeof nm, "dev%llu", (unsigned long long) at);
        rc = verify_changed(f, nm, &f->idb, at, change_device, NULL, seq, why2, sizeof why2);
        fails += rc == SM_EDRAWBAD;
    }
    /* Changing a device changes its entry's hash, so R and every rank: the
       holds no longer go to the computed winners. */
    assert_int_equal(fails, (int) hb.seq);
}

/* Entries after the close and a device's second entry do not count, even
   when signed by an honest node and within the heads: entries are crafted
   by B's key with hlc past the close (B's clock ahead) and ingested. */
static void
test_late_and_duplicate_entries(void **state)
{
    fx *f = *state;
    uint64_t seq = raffle_setup(f);
    /* B's log gets an entry past the close (appended with a clock ahead). */
    sm_body late = entry_of(f, seq, 77, 0);
    sm_drop d;
    assert_int_equal(sm_drop_get(f->b, &f->ids.pub, seq, &d), 0);
    sm_head h;
    assert_int_equal(sm_ledger_head(f->b, &f->idb.pub, &h), 0);
    sm_entry e;
    memset(&e, 0, sizeof e);
    tu_copy last;
    assert_int_equal(tu_read(f->b, &f->idb.pub, h.seq, 1, &last), 1);
    sm_market m;
    assert_int_equal(sm_ledger_market(f->b, &m), 0);
    e.version = SM_ENTRY_VERSION;
    e.market = m.market;
    e.origin = f->idb.pub;
    e.seq = h.seq + 1;
    sm_entry_link(last.bytes, last.len, last.sig, &e.prev);
    e.hlc = SM_HLC_MAKE(CLOSES + 1, 0);
    e.body = late;
    uint8_t bytes[SM_ENTRY_BYTES_MAX];
    sm_signed s;
    s.len = tu_sign(&e, &f->idb, bytes, s.sig);
    s.bytes = bytes;
    sm_ingest_result res;
    tu_sync(f->b, f->s, CLOSES + 2);
    assert_int_equal(sm_ledger_ingest(f->s, &s, 1, CLOSES + 2, &res), 0);
    assert_int_equal(res.accepted, 1);
    tu_free(&last, 1);
    uint64_t draw_seq = 0;
    assert_int_equal(draw(f, seq, CLOSES + 1000, &draw_seq), 0);
    sm_drop_result r;
    char why[320];
    assert_int_equal(sm_drop_verify(f->s, &f->ids.pub, seq, why, sizeof why, &r), 0);
    assert_int_equal(r.counted, 9);            /* not device 77, device 1 once */
    for (size_t i = 0; i < r.counted; i++)
        assert_int_not_equal(r.tickets[i].device[0], 77);
    sm_drop_result_free(&r);
}

static int
count_fork(const sm_id *origin, uint64_t seq, void *arg)
{
    (void) origin; (void) seq;
    (*(int *) arg)++;
    return 0;
}

/*  B's entry at seq `at`, signed by B, linked to its entry before: what B
    would append at `at` after a store restored from an old copy.          */
static size_t
b_entry_at(fx *f, uint64_t at, const sm_body *body, uint64_t hlc_ms, uint8_t *bytes,
           uint8_t sig[SM_SIG_BYTES])
{
    sm_entry e;
    memset(&e, 0, sizeof e);
    tu_copy before;
    assert_int_equal(tu_read(f->b, &f->idb.pub, at - 1, 1, &before), 1);
    sm_market m;
    assert_int_equal(sm_ledger_market(f->b, &m), 0);
    e.version = SM_ENTRY_VERSION;
    e.market = m.market;
    e.origin = f->idb.pub;
    e.seq = at;
    sm_entry_link(before.bytes, before.len, before.sig, &e.prev);
    e.hlc = SM_HLC_MAKE(hlc_ms, 0);
    e.body = *body;
    tu_free(&before, 1);
    return tu_sign(&e, &f->idb, bytes, sig);
}

/* C takes B's entries 1..n as B signed them. */
static void
b_copy_to(fx *f, sm_ledger *c, uint64_t n)
{
    tu_copy *cp = calloc(n, sizeof *cp);
    sm_signed *run = calloc(n, sizeof *run);
    assert_non_null(cp);
    assert_non_null(run);
    assert_int_equal(tu_read(f->b, &f->idb.pub, 1, n, cp), n);
    for (uint64_t i = 0; i < n; i++) {
        run[i].bytes = cp[i].bytes;
        run[i].len = cp[i].len;
        memcpy(run[i].sig, cp[i].sig, SM_SIG_BYTES);
    }
    sm_ingest_result res;
    assert_int_equal(sm_ledger_ingest(c, run, n, CLOSES + 2000, &res), 0);
    assert_int_equal(res.accepted, n);
    tu_free(cp, n);
    free(cp);
    free(run);
}

/* A draw naming an entry its origin's log voided afterwards (the origin
   forked below it, or was revoked) cannot be checked on a node that did
   not store that entry before: verify says so and why (fork, revoked),
   not "let it sync" (no sync brings a void entry).  A node that stored it
   still checks the draw. */
static void
test_verify_names_void_entry(void **state)
{
    fx *f = *state;
    uint64_t draw_seq = 0;
    uint64_t seq = raffle_drawn(f, &draw_seq);
    sm_head hb;
    assert_int_equal(sm_ledger_head(f->b, &f->idb.pub, &hb), 0);
    assert_true(hb.seq >= 3);
    char why[320] = "", at[32];
    snprintf(at, sizeof at, "entry %llu", (unsigned long long) hb.seq);

    /* C holds B's log up to the draw's head but one, then another entry
       B signed at that seq (B restored from an old copy), then B's first
       one: a fork below the entry the draw names. */
    sm_ledger *c = tu_open(f->dir, "c");
    tu_join(c, f->o);
    tu_sync(f->o, c, CLOSES + 2000);
    b_copy_to(f, c, hb.seq - 2);
    sm_body other = entry_of(f, seq, 55, 0);
    uint8_t bytes[SM_ENTRY_BYTES_MAX];
    sm_signed sg;
    sg.len = b_entry_at(f, hb.seq - 1, &other, START + 300, bytes, sg.sig);
    sg.bytes = bytes;
    sm_ingest_result res;
    assert_int_equal(sm_ledger_ingest(c, &sg, 1, CLOSES + 2000, &res), 0);
    tu_copy first;
    assert_int_equal(tu_read(f->b, &f->idb.pub, hb.seq - 1, 1, &first), 1);
    sm_signed fs = { first.bytes, first.len, { 0 } };
    memcpy(fs.sig, first.sig, SM_SIG_BYTES);
    assert_int_equal(sm_ledger_ingest(c, &fs, 1, CLOSES + 3000, &res), SM_EFORK);
    tu_free(&first, 1);
    tu_sync(f->s, c, CLOSES + 3000);
    int forks = 0;
    assert_int_equal(sm_ledger_forks_each(c, count_fork, &forks), 0);
    assert_int_equal(forks, 1);
    assert_int_equal(sm_drop_verify(c, &f->ids.pub, seq, why, sizeof why, NULL), SM_EFORK);
    assert_non_null(strstr(why, "void (its log forked)"));
    assert_non_null(strstr(why, at));
    assert_null(strstr(why, "let it sync"));

    /* Revoked: the organiser voids B's last entry; D joins after. */
    sm_body rv = tu_revoke(&f->idb.pub, hb.seq - 1);
    assert_int_equal(sm_ledger_append(f->o, &rv, CLOSES + 4000, NULL), 0);
    sm_ledger *d = tu_open(f->dir, "d");
    tu_join(d, f->o);
    tu_sync(f->o, d, CLOSES + 5000);
    tu_sync(f->b, d, CLOSES + 5000);
    tu_sync(f->s, d, CLOSES + 5000);
    assert_int_equal(sm_drop_verify(d, &f->ids.pub, seq, why, sizeof why, NULL), SM_EREVOKED);
    assert_non_null(strstr(why, "void (it was revoked)"));
    assert_non_null(strstr(why, at));
    /* S stored B's entries before: it still checks the draw. */
    tu_sync(f->o, f->s, CLOSES + 5000);
    assert_int_equal(sm_drop_verify(f->s, &f->ids.pub, seq, why, sizeof why, NULL), 0);
    sm_ledger_destroy(&c);
    sm_ledger_destroy(&d);
}

/* A drop of more units than qty / per_shopper entries: every counted entry
   wins; no entries: a draw with none. */
static void
test_fewer_entries_than_units(void **state)
{
    fx *f = *state;
    sm_body dr = drop_of(SM_DROP_RAFFLE, 8, 2);
    uint64_t seq = 0;
    assert_int_equal(sm_ledger_append(f->s, &dr, NOW, &seq), 0);
    sm_body e1 = entry_of(f, seq, 1, 0), e2 = entry_of(f, seq, 2, 0);
    assert_int_equal(sm_ledger_append(f->s, &e1, START, NULL), 0);
    assert_int_equal(sm_ledger_append(f->s, &e2, START, NULL), 0);
    uint64_t draw_seq = 0;
    assert_int_equal(draw(f, seq, CLOSES + 1, &draw_seq), 0);
    sm_drop d;
    assert_int_equal(sm_drop_get(f->s, &f->ids.pub, seq, &d), 0);
    assert_int_equal(d.winners, 2);
    assert_int_equal(units(f->s, &f->ids.pub), 6);     /* 2 winners x 2 units held */
    char why[320];
    assert_int_equal(sm_drop_verify(f->s, &f->ids.pub, seq, why, sizeof why, NULL), 0);
    /* A first-come drop is not a raffle. */
    sm_body fc = drop_of(SM_DROP_FIRST_COME, 2, 1);
    uint64_t fseq = 0;
    assert_int_equal(sm_ledger_append(f->s, &fc, CLOSES + 2, &fseq), 0);
    assert_int_equal(draw(f, fseq, CLOSES + 3, NULL), SM_ENOTRAFFLE);
    assert_int_equal(sm_drop_verify(f->s, &f->ids.pub, fseq, why, sizeof why, NULL),
                     SM_ENOTRAFFLE);
    assert_int_equal(draw(f, 9999, CLOSES + 3, NULL), SM_ENODROP);
}

/* The raffle's secret is a function of the stall's key and the drop: the
   same after a restart, another for another drop or another key. */
static void
test_secret_derivation(void **state)
{
    fx *f = *state;
    sm_market m;
    assert_int_equal(sm_ledger_market(f->s, &m), 0);
    sm_hash a, b, c, d;
    sm_drop_secret(&f->ids, &m.market, 5, &a);
    sm_identity again;
    tu_identity(&again, 2);
    sm_drop_secret(&again, &m.market, 5, &b);
    sm_drop_secret(&f->ids, &m.market, 6, &c);
    sm_drop_secret(&f->idb, &m.market, 5, &d);
    assert_memory_equal(a.b, b.b, SM_HASH_BYTES);
    assert_memory_not_equal(a.b, c.b, SM_HASH_BYTES);
    assert_memory_not_equal(a.b, d.b, SM_HASH_BYTES);
}

/* A walk kept between calls (sm_drop_taken) gives the units taken that a
   walk of the whole log gives, after every append of holds, releases and
   sales of the drop's sku and others at its stall; asked of a replica that
   holds less of the stall's log (or a different one), it starts over. */
static void
test_kept_walk(void **state)
{
    fx *f = *state;
    sm_body it = tu_item("tea", "Tea", 300);
    sm_body add = tu_add("tea", 1000), more = tu_add("mug", 190);
    assert_int_equal(sm_ledger_append(f->s, &it, NOW, NULL), 0);
    assert_int_equal(sm_ledger_append(f->s, &add, NOW, NULL), 0);
    assert_int_equal(sm_ledger_append(f->s, &more, NOW, NULL), 0);
    sm_body db = drop_of(SM_DROP_FIRST_COME, 150, 2);
    uint64_t dseq = 0;
    assert_int_equal(sm_ledger_append(f->s, &db, NOW, &dseq), 0);
    sm_drop d;
    assert_int_equal(sm_drop_get(f->s, &f->ids.pub, dseq, &d), 0);
    sm_drop_walks *walks = sm_drop_walks_new();
    assert_non_null(walks);
    uint64_t rng = 99, now = START + 1000, holds[256], taken_max = 0;
    size_t nholds = 0;
    for (int round = 0; round < 300; round++) {
        now += 500;
        sm_body b;
        uint64_t seq = 0;
        switch (tu_below(&rng, 5)) {
        case 0:
        case 1:
            b = tu_hold("mug", 1 + (uint32_t) tu_below(&rng, 2), now + 600000);
            break;
        case 2:
            if (nholds == 0)
                continue;
            b = tu_release(holds[tu_below(&rng, nholds)]);
            break;
        case 3:
            b = tu_sale(tu_below(&rng, 2) ? "mug" : "tea", 1, 100, NULL);
            break;
        default:
            b = tu_sale("tea", 2, 300, NULL);
            break;
        }
        if (sm_ledger_append(f->s, &b, now, &seq) == 0 && b.kind == SM_KIND_HOLD && nholds < 256)
            holds[nholds++] = seq;
        uint64_t kept = 0, whole = 0;
        assert_int_equal(sm_drop_taken(walks, f->s, &d, &kept), 0);
        assert_int_equal(sm_drop_ledger(f->s, &d, NULL, NULL, NULL, NULL, &whole, NULL, NULL), 0);
        assert_int_equal(kept, whole);
        if (whole > taken_max)
            taken_max = whole;
        if (round % 50 == 25) {
            /* The organiser, which holds the stall's log only as far as
               the last sync: the same walks, another log. */
            if (round % 100 == 25)
                tu_sync(f->s, f->o, now);
            assert_int_equal(sm_drop_taken(walks, f->o, &d, &kept), 0);
            assert_int_equal(sm_drop_ledger(f->o, &d, NULL, NULL, NULL, NULL, &whole, NULL, NULL), 0);
            assert_int_equal(kept, whole);
        }
    }
    assert_true(taken_max > 20);                /* the drop was taken from */
    sm_drop_walks_destroy(&walks);
    assert_null(walks);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_come_gate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kept_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raffle_draw_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draw_deterministic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_catches_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_and_duplicate_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_names_void_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fewer_entries_than_units, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_derivation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
