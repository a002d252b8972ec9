/*  Unit tests of the write policy (policy.c): real ledgers in a temporary
    directory, each node's engine and policy, wired by a tiny in-memory
    network that hands every queued message to the destination's
    sm_policy_receive and commits the round, as core.c and the simulator
    do.  Time is the test's own: nothing reads a clock.  Group commit and
    answers after it, a refusal isolated, the gate refusing writes, a sale
    parked until a peer's units arrive, a hold forwarded and answered,
    rebalancing leaving the giver at its floor, the hold sweep, the
    own-log gate that does not open on the first peer that answers, and a
    first-come drop's caps and a shopper's limits within one batch.        */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip.h"
#include "policy.h"
#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

#define NOW 1700000000000ULL
#define N_MAX 4
#define ANSWERS_MAX 64

typedef struct {
    char *dir;
    int n;
    uint64_t now;              /* wall clock */
    uint64_t mono;             /* monotonic clock */
    sm_identity id[N_MAX];
    sm_ledger *l[N_MAX];
    sm_gossip *g[N_MAX];
    sm_policy *p[N_MAX];
    bool up[N_MAX][N_MAX];
    uint32_t floor[N_MAX];
    uint32_t rebalance[N_MAX];
    bool mirror[N_MAX];
    sm_reserve_limits hold_limits[N_MAX];
    /* answers, in order */
    sm_policy_write answers[ANSWERS_MAX];
    int answered_by[ANSWERS_MAX];
    size_t nanswers;
} net;

typedef struct {
    net *f;
    int i;
} who;
static who s_who[N_MAX];

static void
s_answer(void *arg, sm_policy_write *w)
{
    who *x = arg;
    net *f = x->f;
    assert_true(f->nanswers < ANSWERS_MAX);
    f->answered_by[f->nanswers] = x->i;
    f->answers[f->nanswers++] = *w;
}

static int
node_of(net *f, const sm_id *id)
{
    for (int i = 0; i < f->n; i++)
        if (memcmp(f->id[i].pub.b, id->b, SM_KEY_BYTES) == 0)
            return i;
    return -1;
}

static void
start(net *f, int i, bool allow_fresh)
{
    sm_gossip_opts o;
    memset(&o, 0, sizeof o);
    o.ledger = f->l[i];
    o.self = f->id[i].pub;
    snprintf(o.endpoint, sizeof o.endpoint, "tcp://127.0.0.1:%d", 7400 + i);
    o.units_floor = f->floor[i];
    int err = 0;
    f->g[i] = sm_gossip_new(&o, &err);
    assert_non_null(f->g[i]);
    s_who[i] = (who) { f, i };
    sm_policy_opts po = { .ledger = f->l[i], .node = f->id[i].pub, .gossip = f->g[i],
                          .answer = s_answer, .answer_arg = &s_who[i],
                          .rebalance_floor = f->rebalance[i], .allow_fresh = allow_fresh,
                          .peers_known = true, .mirror = f->mirror[i],
                          .hold_limits = f->hold_limits[i] };
    f->p[i] = sm_policy_new(&po, f->mono, &err);
    assert_non_null(f->p[i]);
    assert_int_equal(err, 0);
}

static void
stop(net *f, int i)
{
    sm_policy_destroy(&f->p[i]);
    sm_gossip_destroy(&f->g[i]);
}

/* n nodes: node 0 creates the market and admits the others; each store is
   confirmed (as init does) and has the organiser's log. */
static net *
net_new(int n)
{
    net *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_tempdir();
    f->n = n;
    f->now = NOW;
    f->mono = 1000;
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        tu_identity(&f->id[i], (uint8_t) (i + 1));
        f->l[i] = tu_open(f->dir, name);
        sm_ledger_set_identity(f->l[i], &f->id[i]);
        assert_int_equal(sm_ledger_confirm_own(f->l[i]), 0);
    }
    assert_int_equal(sm_ledger_create_market(f->l[0], "Saturday Market", "GBP", NOW), 0);
    for (int i = 1; i < n; i++) {
        sm_body b = tu_admit(&f->id[i].pub, "stall", SM_ROLE_STALL);
        assert_int_equal(sm_ledger_append(f->l[0], &b, NOW, NULL), 0);
    }
    for (int i = 1; i < n; i++) {
        tu_join(f->l[i], f->l[0]);
        tu_sync(f->l[0], f->l[i], NOW);
    }
    return f;
}

static int
teardown(void **state)
{
    net *f = *state;
    if (!f)
        return 0;
    for (int i = 0; i < N_MAX; i++) {
        if (f->g[i])
            stop(f, i);
        sm_ledger_destroy(&f->l[i]);
    }
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void
link_up(net *f, int i, int j)
{
    f->up[i][j] = f->up[j][i] = true;
    sm_gossip_peer_up(f->g[i], &f->id[j].pub, NULL, f->now);
    sm_gossip_peer_up(f->g[j], &f->id[i].pub, NULL, f->now);
}

/* Deliver everything queued (only along links that are up) until quiet,
   each message through the receiver's policy round, committed at once. */
static void
pump(net *f)
{
    for (int round = 0; round < 10000; round++) {
        bool moved = false;
        for (int i = 0; i < f->n; i++) {
            if (!f->g[i])
                continue;
            sm_id to;
            const uint8_t *msg;
            size_t len;
            while (sm_gossip_next(f->g[i], &to, &msg, &len)) {
                int j = node_of(f, &to);
                assert_true(j >= 0);
                if (!f->up[i][j] || !f->p[j])
                    continue;
                uint8_t *copy = malloc(len);
                assert_non_null(copy);
                memcpy(copy, msg, len);
                bool durable = false;
                sm_policy_receive(f->p[j], &f->id[i].pub, copy, len, f->now, &durable);
                sm_policy_round_end(f->p[j], f->now);
                free(copy);
                moved = true;
            }
        }
        if (!moved)
            return;
    }
    fail_msg("the network did not go quiet");
}

/* Time passes: every node's engine ticks and its policy steps. */
static void
advance(net *f, uint64_t ms)
{
    f->now += ms;
    f->mono += ms;
    for (int i = 0; i < f->n; i++)
        if (f->g[i]) {
            sm_gossip_tick(f->g[i], f->now);
            sm_policy_step(f->p[i], f->now, f->mono);
        }
    pump(f);
}

static int64_t
units_at(sm_ledger *l, const char *sku, const sm_id *at)
{
    sm_units u;
    return sm_ledger_units(l, sku, at, &u) == 0 ? u.units : 0;
}

static uint64_t
head_seq(sm_ledger *l, const sm_id *origin)
{
    sm_head h;
    return sm_ledger_head(l, origin, &h) == 0 ? h.seq : 0;
}

static sm_policy_write
wr(sm_body b)
{
    sm_policy_write w;
    memset(&w, 0, sizeof w);
    w.body = b;
    return w;
}

/* A batch: one commit; every write answered after it, a refusal with its
   own code while the others of the batch succeed. */
static void
test_policy_batch_answers_each(void **state)
{
    net *f = net_new(1);
    *state = f;
    start(f, 0, true);                        /* --allow-fresh: no check */
    assert_true(sm_policy_own_ok(f->p[0]));
    sm_policy_write w[3] = { wr(tu_item("mug", "Blue mug", 1200)), wr(tu_add("mug", 5)),
                             wr(tu_sale("zine", 1, 300, NULL)) };
    assert_true(sm_policy_batch(f->p[0], w, 3, f->now, f->mono));
    assert_int_equal(f->nanswers, 3);
    assert_int_equal(f->answers[0].rc, 0);
    assert_int_equal(f->answers[1].rc, 0);
    assert_int_not_equal(f->answers[2].rc, 0);       /* unknown sku */
    assert_int_equal(f->answers[1].seq, f->answers[0].seq + 1);
    assert_int_equal(units_at(f->l[0], "mug", &f->id[0].pub), 5);
    assert_int_equal(sm_policy_pending(f->p[0]), 0);
}

/* A confirmed store with peers checks its own log first: local writes are
   refused with SM_ERECOVERING until a peer's HEADS (and the gathering
   window) show it holds all of it. */
static void
test_policy_gate_refuses_until_checked(void **state)
{
    net *f = net_new(2);
    *state = f;
    start(f, 0, false);
    start(f, 1, false);
    sm_policy_own_enable(f->p[0]);
    assert_false(sm_policy_own_ok(f->p[1]));
    sm_policy_write w = wr(tu_item("cap", "Cap", 900));
    assert_false(sm_policy_batch(f->p[1], &w, 1, f->now, f->mono));
    assert_int_equal(f->answers[0].rc, SM_ERECOVERING);
    link_up(f, 0, 1);
    pump(f);
    advance(f, 100);
    assert_false(sm_policy_own_ok(f->p[1]));         /* heard, still gathering */
    advance(f, SM_POLICY_OWN_GATHER_MS);
    assert_true(sm_policy_own_ok(f->p[1]));
    w = wr(tu_item("cap", "Cap", 900));
    assert_true(sm_policy_batch(f->p[1], &w, 1, f->now, f->mono));
    assert_int_equal(f->answers[1].rc, 0);
}

/* Own-log recovery does not rest on the first peer that answers: node 1's
   store is wiped; peer 2 (which holds 2 of its entries) answers first,
   peer 0 (which holds all 5) a moment later.  The gate stays shut until
   node 1 has fetched all 5 back, and its next write is seq 6, no fork. */
static void
test_policy_own_gate_waits_for_other_peers(void **state)
{
    net *f = net_new(3);
    *state = f;
    for (int i = 0; i < 3; i++)
        start(f, i, false);
    for (int i = 0; i < 3; i++)
        sm_policy_own_enable(f->p[i]);
    sm_body b = tu_item("pin", "Enamel pin", 400);
    assert_int_equal(sm_ledger_append(f->l[1], &b, f->now, NULL), 0);
    b = tu_add("pin", 9);
    assert_int_equal(sm_ledger_append(f->l[1], &b, f->now, NULL), 0);
    tu_sync(f->l[1], f->l[2], f->now);               /* node 2 holds 2 */
    for (int k = 0; k < 3; k++) {
        b = tu_sale("pin", 1, 400, NULL);
        assert_int_equal(sm_ledger_append(f->l[1], &b, f->now, NULL), 0);
    }
    tu_sync(f->l[1], f->l[0], f->now);               /* node 0 holds 5 */
    assert_int_equal(head_seq(f->l[0], &f->id[1].pub), 5);
    assert_int_equal(head_seq(f->l[2], &f->id[1].pub), 2);

    /* Wipe node 1: an empty store joined again, the same key. */
    stop(f, 1);
    sm_ledger_destroy(&f->l[1]);
    f->l[1] = tu_open(f->dir, "n1-wiped");
    sm_ledger_set_identity(f->l[1], &f->id[1]);
    tu_join(f->l[1], f->l[0]);
    start(f, 1, false);
    assert_false(sm_policy_own_ok(f->p[1]));

    link_up(f, 1, 2);                                 /* the stale peer first */
    pump(f);
    advance(f, 200);
    assert_int_equal(head_seq(f->l[1], &f->id[1].pub), 2);
    assert_false(sm_policy_own_ok(f->p[1]));         /* not on node 2's word alone */
    sm_policy_write w = wr(tu_item("bag", "Tote", 800));
    sm_policy_batch(f->p[1], &w, 1, f->now, f->mono);
    assert_int_equal(f->answers[f->nanswers - 1].rc, SM_ERECOVERING);

    link_up(f, 1, 0);                                 /* within the window */
    pump(f);
    for (int k = 0; k < 40 && !sm_policy_own_ok(f->p[1]); k++)
        advance(f, 100);
    assert_true(sm_policy_own_ok(f->p[1]));
    assert_int_equal(head_seq(f->l[1], &f->id[1].pub), 5);
    w = wr(tu_item("bag", "Tote", 800));
    assert_true(sm_policy_batch(f->p[1], &w, 1, f->now, f->mono));
    assert_int_equal(f->answers[f->nanswers - 1].rc, 0);
    assert_int_equal(f->answers[f->nanswers - 1].seq, 6);
}

/* A sale short of units here is parked, the peers asked; when the peer's
   stock.move arrives it is retried and answered, appended once. */
static void
test_policy_parks_short_sale(void **state)
{
    net *f = net_new(2);
    *state = f;
    start(f, 0, false);
    start(f, 1, false);
    sm_policy_own_enable(f->p[0]);
    sm_policy_own_enable(f->p[1]);
    sm_policy_write w[2] = { wr(tu_item("tee", "Tee", 1500)), wr(tu_add("tee", 10)) };
    assert_true(sm_policy_batch(f->p[0], w, 2, f->now, f->mono));
    link_up(f, 0, 1);
    pump(f);
    assert_int_equal(units_at(f->l[1], "tee", &f->id[0].pub), 10);
    size_t before = f->nanswers;
    sm_policy_write s = wr(tu_sale("tee", 3, 1500, NULL));
    assert_false(sm_policy_batch(f->p[1], &s, 1, f->now, f->mono));
    assert_int_equal(f->nanswers, before);            /* parked, not answered */
    assert_int_equal(sm_policy_pending(f->p[1]), 1);
    assert_true(sm_policy_next_ms(f->p[1]) <= f->mono + SM_UNITS_WAIT_MS);
    pump(f);                                          /* ask, move, answer */
    sm_policy_step(f->p[1], f->now, f->mono);
    assert_int_equal(f->nanswers, before + 1);
    assert_int_equal(f->answers[before].rc, 0);
    assert_int_equal(f->answered_by[before], 1);
    assert_int_equal(sm_policy_pending(f->p[1]), 0);
    assert_int_equal(units_at(f->l[1], "tee", &f->id[1].pub), 0);
    pump(f);
    assert_int_equal(units_at(f->l[0], "tee", &f->id[0].pub), 7);
}

/* A hold for another stall is forwarded: that stall appends it on its own
   log, once, and the asker's answer carries its seq and expiry there; a
   stall not in session is refused at once. */
static void
test_policy_forwards_hold(void **state)
{
    net *f = net_new(3);
    *state = f;
    for (int i = 0; i < 3; i++) {
        start(f, i, false);
        sm_policy_own_enable(f->p[i]);
    }
    sm_policy_write w[2] = { wr(tu_item("cap", "Cap", 900)), wr(tu_add("cap", 4)) };
    assert_true(sm_policy_batch(f->p[0], w, 2, f->now, f->mono));
    link_up(f, 0, 1);
    pump(f);
    uint64_t head0 = head_seq(f->l[0], &f->id[0].pub);
    size_t before = f->nanswers;
    sm_policy_write h = wr(tu_hold("cap", 2, 0));
    h.forward = true;
    h.at = f->id[0].pub;
    sm_policy_write lost = h;
    lost.at = f->id[2].pub;                           /* not in session */
    sm_policy_write two[2] = { h, lost };
    assert_false(sm_policy_batch(f->p[1], two, 2, f->now, f->mono));
    assert_int_equal(f->nanswers, before + 1);
    assert_int_equal(f->answers[before].rc, SM_EUNREACHABLE);
    pump(f);
    sm_policy_step(f->p[1], f->now, f->mono);
    assert_int_equal(f->nanswers, before + 2);
    sm_policy_write *a = &f->answers[before + 1];
    assert_int_equal(a->rc, 0);
    assert_int_equal(a->seq, head0 + 1);
    assert_true(a->body.u.hold.expires_ms > f->now);
    assert_int_equal(head_seq(f->l[0], &f->id[0].pub), head0 + 1);   /* appended once */
    assert_int_equal(head_seq(f->l[1], &f->id[1].pub), 0);           /* nothing here */
    assert_int_equal(units_at(f->l[0], "cap", &f->id[0].pub), 2);
}

/* Rebalancing: a stall below its floor asks for the difference every
   SM_POLICY_REBALANCE_TICKS ticks; the giver keeps its own floor. */
static void
test_policy_rebalances_to_floor(void **state)
{
    net *f = net_new(2);
    *state = f;
    f->floor[0] = 3;
    f->rebalance[1] = 5;
    start(f, 0, false);
    start(f, 1, false);
    sm_policy_own_enable(f->p[0]);
    sm_policy_own_enable(f->p[1]);
    sm_policy_write w[2] = { wr(tu_item("zine", "Zine", 500)), wr(tu_add("zine", 6)) };
    assert_true(sm_policy_batch(f->p[0], w, 2, f->now, f->mono));
    link_up(f, 0, 1);
    pump(f);
    for (uint32_t t = 0; t < SM_POLICY_REBALANCE_TICKS - 1; t++)
        sm_policy_tick(f->p[1], f->now, f->mono);
    pump(f);
    assert_int_equal(units_at(f->l[1], "zine", &f->id[1].pub), 0);   /* not yet */
    sm_policy_tick(f->p[1], f->now, f->mono);
    pump(f);
    sm_policy_counters c;
    sm_policy_stats(f->p[1], &c);
    assert_int_equal(c.rebalance_asks, 1);
    assert_int_equal(units_at(f->l[1], "zine", &f->id[1].pub), 3);   /* 6 - floor 3 */
    assert_int_equal(units_at(f->l[0], "zine", &f->id[0].pub), 3);
}

/* A mirror's policy refuses local writes with SM_EREADONLY while a hold
   forwarded to a stall goes on, appends nothing to its own log, and does
   not rebalance even below its floor. */
static void
test_policy_mirror_read_only(void **state)
{
    net *f = net_new(2);
    *state = f;
    f->mirror[1] = true;
    f->rebalance[1] = 5;
    start(f, 0, false);
    start(f, 1, false);
    sm_policy_own_enable(f->p[0]);
    sm_policy_own_enable(f->p[1]);
    sm_policy_write w[2] = { wr(tu_item("zine", "Zine", 500)), wr(tu_add("zine", 6)) };
    assert_true(sm_policy_batch(f->p[0], w, 2, f->now, f->mono));
    link_up(f, 0, 1);
    pump(f);
    size_t before = f->nanswers;
    sm_policy_write local[2] = { wr(tu_add("zine", 1)), wr(tu_sale("zine", 1, 500, NULL)) };
    assert_false(sm_policy_batch(f->p[1], local, 2, f->now, f->mono));
    assert_int_equal(f->nanswers, before + 2);
    assert_int_equal(f->answers[before].rc, SM_EREADONLY);
    assert_int_equal(f->answers[before + 1].rc, SM_EREADONLY);
    sm_policy_write h = wr(tu_hold("zine", 2, 0));
    h.forward = true;
    h.at = f->id[0].pub;
    assert_false(sm_policy_batch(f->p[1], &h, 1, f->now, f->mono));
    pump(f);
    sm_policy_step(f->p[1], f->now, f->mono);
    assert_int_equal(f->nanswers, before + 3);
    assert_int_equal(f->answers[before + 2].rc, 0);
    assert_int_equal(units_at(f->l[0], "zine", &f->id[0].pub), 4);
    for (uint32_t t = 0; t < 2 * SM_POLICY_REBALANCE_TICKS; t++)
        sm_policy_tick(f->p[1], f->now, f->mono);
    pump(f);
    sm_policy_counters c;
    sm_policy_stats(f->p[1], &c);
    assert_int_equal(c.rebalance_asks, 0);
    assert_int_equal(units_at(f->l[1], "zine", &f->id[1].pub), 0);
    assert_int_equal(head_seq(f->l[1], &f->id[1].pub), 0);           /* nothing appended */
}

/* The sweep releases this node's expired holds, one release each. */
static void
test_policy_sweeps_expired_holds(void **state)
{
    net *f = net_new(1);
    *state = f;
    start(f, 0, true);
    sm_policy_write w[4] = { wr(tu_item("mug", "Mug", 1200)), wr(tu_add("mug", 5)),
                             wr(tu_hold("mug", 2, f->now + 1000)),
                             wr(tu_hold("mug", 1, f->now + 60000)) };
    assert_true(sm_policy_batch(f->p[0], w, 4, f->now, f->mono));
    assert_int_equal(units_at(f->l[0], "mug", &f->id[0].pub), 2);
    assert_false(sm_policy_tick(f->p[0], f->now, f->mono));
    f->now += 1000;
    assert_true(sm_policy_tick(f->p[0], f->now, f->mono));
    assert_int_equal(units_at(f->l[0], "mug", &f->id[0].pub), 4);
    sm_policy_counters c;
    sm_policy_stats(f->p[0], &c);
    assert_int_equal(c.holds_expired, 1);
}

/* A shopper's hold with a device tag (and a client tag when client != 0). */
static sm_policy_write
shopper_hold(uint32_t qty, uint64_t expires_ms, uint8_t device, uint8_t client)
{
    sm_policy_write w = wr(tu_hold("mug", qty, expires_ms));
    w.body.u.hold.has_device = true;
    memset(w.body.u.hold.device, device, SM_HOLD_TAG_BYTES);
    w.body.u.hold.has_client = client != 0;
    memset(w.body.u.hold.client, client, SM_HOLD_TAG_BYTES);
    return w;
}

/* A live first-come drop's caps hold within one batch: holds appended in
   the same batch count against the device, the address and the drop's
   qty; a staff hold (uncapped) is not held to them; a release gives a
   device its units back. */
static void
test_policy_drop_caps_in_one_batch(void **state)
{
    net *f = net_new(1);
    *state = f;
    start(f, 0, true);
    uint64_t starts = f->now + 1000;
    sm_body drop = tu_drop("mug", 3, starts);
    drop.u.drop.mode = SM_DROP_FIRST_COME;
    drop.u.drop.per_shopper = 1;
    drop.u.drop.pickup_minutes = 30;
    sm_policy_write setup[3] = { wr(tu_item("mug", "Mug", 1200)), wr(tu_add("mug", 10)),
                                 wr(drop) };
    sm_policy_batch(f->p[0], setup, 3, f->now, f->mono);
    for (int i = 0; i < 3; i++)
        assert_int_equal(setup[i].rc, 0);
    f->now = starts;
    uint64_t exp = f->now + 60000;
    /* Device 1 twice; device 2 and 3 from one address; device 4: the qty. */
    sm_policy_write w[5] = { shopper_hold(1, exp, 1, 0), shopper_hold(1, exp, 1, 0),
                             shopper_hold(1, exp, 2, 9), shopper_hold(1, exp, 3, 9),
                             shopper_hold(1, exp, 4, 0) };
    f->nanswers = 0;
    assert_true(sm_policy_batch(f->p[0], w, 5, f->now, f->mono));
    assert_int_equal(w[0].rc, 0);
    assert_int_equal(w[1].rc, SM_EDROPLIMIT);
    assert_string_equal(w[1].drop_why.limit, "device");
    assert_int_equal(w[1].drop_why.max, 1);
    assert_int_equal(w[1].drop_why.wanted, 2);
    assert_int_equal(w[1].drop_why.drop.seq, setup[2].seq);
    assert_int_equal(w[2].rc, 0);
    assert_int_equal(w[3].rc, SM_EDROPLIMIT);
    assert_string_equal(w[3].drop_why.limit, "address");
    assert_int_equal(w[4].rc, 0);
    /* Sold out: 3 taken. */
    sm_policy_write more[2] = { shopper_hold(1, exp, 5, 0), wr(tu_hold("mug", 1, exp)) };
    more[1].uncapped = true;
    sm_policy_batch(f->p[0], more, 2, f->now, f->mono);
    assert_int_equal(more[0].rc, SM_ENOSTOCK);
    assert_string_equal(more[0].drop_why.limit, "qty");
    assert_int_equal(more[0].drop_why.max, 3);
    assert_int_equal(more[1].rc, 0);              /* staff: not capped */
    assert_null(more[1].drop_why.limit);
    /* Device 1 cancels: its unit is back for it (the staff hold counts in
       the qty, so 3 taken again afterwards). */
    sm_policy_write rel[3] = { wr(tu_release(w[0].seq)), shopper_hold(1, exp, 1, 0),
                               shopper_hold(1, exp, 6, 0) };
    sm_policy_batch(f->p[0], rel, 3, f->now, f->mono);
    assert_int_equal(rel[0].rc, 0);
    assert_int_equal(rel[1].rc, SM_ENOSTOCK);     /* 2 shoppers + staff = 3 */
    assert_int_equal(units_at(f->l[0], "mug", &f->id[0].pub), 7);
}

/* w was refused by the shopper's limit `limit` (max, wanted), as the web
   thread names it; not by a drop's cap. */
static void
assert_over_limit(const sm_policy_write *w, const char *limit, uint32_t max, uint64_t wanted)
{
    assert_int_equal(w->rc, SM_EHOLDLIMIT);
    assert_non_null(w->hold_why.limit);
    assert_string_equal(w->hold_why.limit, limit);
    assert_int_equal(w->hold_why.max, max);
    assert_int_equal(w->hold_why.wanted, wanted);
    assert_null(w->drop_why.limit);
}

/* The [holds] per_device and per_address limits hold within one batch:
   the second hold of one device (of one address) in the same batch, over
   the limit, is refused SM_EHOLDLIMIT naming the limit as the web thread
   does; every line counts; a staff hold is not held to them but counts; a
   release gives the units back; a hold past its expiry that the sweep has
   not released yet no longer counts. */
static void
test_policy_shopper_limits_in_one_batch(void **state)
{
    net *f = net_new(1);
    *state = f;
    f->hold_limits[0] = (sm_reserve_limits) { .per_device = 3, .per_address = 4 };
    start(f, 0, true);
    sm_policy_write setup[4] = { wr(tu_item("mug", "Mug", 1200)), wr(tu_add("mug", 30)),
                                 wr(tu_item("cup", "Cup", 800)), wr(tu_add("cup", 30)) };
    sm_policy_batch(f->p[0], setup, 4, f->now, f->mono);
    for (int i = 0; i < 4; i++)
        assert_int_equal(setup[i].rc, 0);
    uint64_t exp = f->now + 60000;
    /* Device 1 twice (2 + 2 > 3); devices 2, 3 and 4 from address 9
       (2 + 2 + 1 > 4); device 5 with two lines (2 + 2 > 3). */
    sm_policy_write w[6] = { shopper_hold(2, exp, 1, 0), shopper_hold(2, exp, 1, 0),
                             shopper_hold(2, exp, 2, 9), shopper_hold(2, exp, 3, 9),
                             shopper_hold(1, exp, 4, 9), shopper_hold(2, exp, 5, 0) };
    w[5].body.u.hold.more_count = 1;
    snprintf(w[5].body.u.hold.more[0].sku, sizeof w[5].body.u.hold.more[0].sku, "cup");
    w[5].body.u.hold.more[0].qty = 2;
    assert_true(sm_policy_batch(f->p[0], w, 6, f->now, f->mono));
    assert_int_equal(w[0].rc, 0);
    assert_over_limit(&w[1], "per_device", 3, 4);
    assert_int_equal(w[2].rc, 0);
    assert_null(w[2].hold_why.limit);
    assert_int_equal(w[3].rc, 0);
    assert_over_limit(&w[4], "per_address", 4, 5);
    assert_over_limit(&w[5], "per_device", 3, 4);
    assert_int_equal(units_at(f->l[0], "mug", &f->id[0].pub), 24);   /* 3 holds of 2 */
    assert_int_equal(units_at(f->l[0], "cup", &f->id[0].pub), 30);
    /* The refused write's struct reused for a hold forwarded to a stall out
       of reach (the core reuses its batch array): no refusal stays on it. */
    w[1].forward = true;
    memset(w[1].at.b, 0x77, SM_KEY_BYTES);
    sm_policy_batch(f->p[0], &w[1], 1, f->now, f->mono);
    assert_int_equal(w[1].rc, SM_EUNREACHABLE);
    assert_null(w[1].hold_why.limit);
    /* Staff hold for device 1 (uncapped: 4 held), then device 1 cancels
       its own: 2 held, so 1 more passes and a second 1 does not. */
    sm_policy_write staff = shopper_hold(2, exp, 1, 0);
    staff.uncapped = true;
    sm_policy_batch(f->p[0], &staff, 1, f->now, f->mono);
    assert_int_equal(staff.rc, 0);
    sm_policy_write rel[3] = { wr(tu_release(w[0].seq)), shopper_hold(1, exp, 1, 0),
                               shopper_hold(1, exp, 1, 0) };
    sm_policy_batch(f->p[0], rel, 3, f->now, f->mono);
    assert_int_equal(rel[0].rc, 0);
    assert_int_equal(rel[1].rc, 0);
    assert_over_limit(&rel[2], "per_device", 3, 4);
    /* Device 6's hold runs out; before the sweep releases it, it no longer
       counts (as the web thread's check); a sold hold no longer counts. */
    sm_policy_write soon = shopper_hold(3, f->now + 1000, 6, 0);
    sm_policy_batch(f->p[0], &soon, 1, f->now, f->mono);
    assert_int_equal(soon.rc, 0);
    f->now += 1000;
    sm_policy_write late[2] = { shopper_hold(3, exp, 6, 0), shopper_hold(1, exp, 6, 0) };
    sm_policy_batch(f->p[0], late, 2, f->now, f->mono);
    assert_int_equal(late[0].rc, 0);
    assert_over_limit(&late[1], "per_device", 3, 4);
    sm_body sale = tu_sale("mug", 3, 1200, NULL);
    sale.u.sale.hold_seq = late[0].seq;
    sm_policy_write sold[2] = { wr(sale), shopper_hold(3, exp, 6, 0) };
    sm_policy_batch(f->p[0], sold, 2, f->now, f->mono);
    assert_int_equal(sold[0].rc, 0);
    assert_int_equal(sold[1].rc, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_policy_batch_answers_each, teardown),
        cmocka_unit_test_teardown(test_policy_gate_refuses_until_checked, teardown),
        cmocka_unit_test_teardown(test_policy_own_gate_waits_for_other_peers, teardown),
        cmocka_unit_test_teardown(test_policy_parks_short_sale, teardown),
        cmocka_unit_test_teardown(test_policy_forwards_hold, teardown),
        cmocka_unit_test_teardown(test_policy_rebalances_to_floor, teardown),
        cmocka_unit_test_teardown(test_policy_sweeps_expired_holds, teardown),
        cmocka_unit_test_teardown(test_policy_mirror_read_only, teardown),
        cmocka_unit_test_teardown(test_policy_drop_caps_in_one_batch, teardown),
        cmocka_unit_test_teardown(test_policy_shopper_limits_in_one_batch, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
