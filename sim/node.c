/*  One simulated node: its store, its engine and its core (sim.h).

    The core is the real node's write policy (src/policy.c) driven as
    src/core.c drives it; this file is only the simulation's glue.  The
    policy's own waits run on the monotonic clock (sim time); the ledger
    and the engine get the node's wall clock, skew and jumps included, as
    CLOCK_REALTIME gives it:
    - writes from clients queue up; a wake hands up to SIM_BATCH_MAX of them
      to the policy as one batch (sm_policy_batch), which answers each after
      the commit (sim_workload_answer), parks a sale or hold short of units
      while the peers are asked, and forwards a hold meant for another stall;
    - every message from a peer goes through the policy's ingest round
      (sim_node_receive), committed before anything is sent;
    - every SIM_TICK_MS: the policy's tick (expired holds released,
      rebalancing), the engine's tick, and the policy's step (the own-log
      gate, parked writes retried or answered);
    - what the engine queued is drained only after the policy returned.

    A crash drops the process: an open batch is aborted (its writes were
    never acknowledged), queued and parked writes are lost, and the engine's
    memory with them.  A restart reopens the store.  A snapshot copies the
    store's file between transactions (a backup); a restore puts that old
    copy back, and a wipe replaces the store with an empty one joined to the
    market again (its own log must come back from the peers).                */
#include "sim.h"

#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drop.h"
#include "snapshot.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

uint64_t
sim_node_now(const sim_world *w, const sim_node *nd)
{
    return (uint64_t) ((int64_t) (SIM_EPOCH_MS + w->now) + nd->clock_offset_ms);
}

int
sim_node_open(sim_world *w, sim_node *nd)
{
    sm_ledger_opts o = { .map_bytes = 256u << 20, .no_sync = true };
    int err = 0;
    nd->ledger = sm_ledger_open(nd->dir, &o, &err);
    if (!nd->ledger) {
        sim_fail(w, "node %d: cannot open its store %s: %s", nd->index, nd->dir, sm_strerror(err));
        return err;
    }
    sm_ledger_set_identity(nd->ledger, &nd->id);
    /* As the node's core does: the digest's sum kept as it writes
       (sim_check_digest holds it to a scan of the state). */
    if ((err = sm_ledger_keep_digest(nd->ledger)) != 0) {
        sim_fail(w, "node %d: cannot keep its digest: %s", nd->index, sm_strerror(err));
        return err;
    }
    /* And the change log its web thread's stock page rebuilds from
       (sim_check_stock_page holds that page to a whole build). */
    if ((err = sm_ledger_keep_changes(nd->ledger)) != 0
        || !(nd->stock = sm_snapshot_new(nd->ledger, &nd->id.pub))
        || !(nd->walks = sm_drop_walks_new())) {
        sim_fail(w, "node %d: cannot keep its stock page: %s", nd->index,
                 sm_strerror(err ? err : SM_ENOMEM));
        return err ? err : SM_ENOMEM;
    }
    return 0;
}

static void s_answer(void *arg, sm_policy_write *pw);

/*  The engine, once the store belongs to the market.                       */
static int
s_engine(sim_world *w, sim_node *nd)
{
    sm_gossip_opts o;
    memset(&o, 0, sizeof o);
    o.ledger = nd->ledger;
    o.self = nd->id.pub;
    snprintf(o.endpoint, sizeof o.endpoint, "tcp://10.0.0.%d:7400", nd->index + 1);
    o.units_floor = nd->units_floor;
    o.hold_ttl_s = 30 + 10 * (uint32_t) (nd->index % 4);   /* holds asked of it by peers */
    int err = 0;
    nd->gossip = sm_gossip_new(&o, &err);
    if (!nd->gossip) {
        sim_fail(w, "node %d: cannot start its engine: %s", nd->index, sm_strerror(err));
        return err;
    }
    /* As core.c: a confirmed store may be an older copy, so it appends
       once its peers' HEADS show none holds more of its log, or after
       SM_OWN_CHECK_MS if no peer answers (the market's members are its
       peers: they are always known). */
    sm_policy_opts po = { .ledger = nd->ledger, .node = nd->id.pub, .gossip = nd->gossip,
                          .answer = s_answer, .answer_arg = nd,
                          .rebalance_floor = nd->rebalance_floor, .peers_known = true,
                          .hold_limits = { .per_device = SIM_HOLD_PER_DEVICE,
                                           .per_address = SIM_HOLD_PER_ADDRESS } };
    if (!(nd->policy = sm_policy_new(&po, w->now, &err))) {
        sim_fail(w, "node %d: cannot start its write policy: %s", nd->index, sm_strerror(err));
        return err;
    }
    memset(&nd->policy_seen, 0, sizeof nd->policy_seen);
    return 0;
}

static bool
s_is_zero(const sm_hash *h)
{
    for (size_t i = 0; i < SM_HASH_BYTES; i++)
        if (h->b[i])
            return false;
    return true;
}

void
sim_node_close(sim_world *w, sim_node *nd)
{
    (void) w;
    sm_policy_destroy(&nd->policy);
    sm_gossip_destroy(&nd->gossip);
    sm_snapshot_destroy(&nd->stock);
    sm_drop_walks_destroy(&nd->walks);
    sm_ledger_destroy(&nd->ledger);
    nd->running = false;
}

static void
s_tick_schedule(sim_world *w, sim_node *nd)
{
    uint64_t next = w->now - w->now % SIM_TICK_MS + nd->tick_phase_ms;
    while (next <= w->now)
        next += SIM_TICK_MS;
    sim_schedule(w, next, SIM_EV_TICK, nd->index, 0, nd->generation, 0, NULL, 0);
}

/*  Start the process on the store as it is.                                */
static void
s_start(sim_world *w, sim_node *nd)
{
    if (sim_node_open(w, nd) != 0 || s_engine(w, nd) != 0)
        return;
    nd->running = true;
    nd->nqueue = 0;
    nd->wake_pending = false;
    s_tick_schedule(w, nd);
}

void
sim_node_restart(sim_world *w, sim_node *nd)
{
    s_start(w, nd);
    sim_trace_u64(w, (uint64_t) sim_node_own_ok(nd));
}

void
sim_node_crash(sim_world *w, sim_node *nd, bool torn)
{
    if (!nd->running)
        return;
    if (torn && nd->nqueue > 0) {
        /* Killed while appending a batch: the transaction never commits. */
        uint32_t k = 1 + (uint32_t) sim_below(&w->rng, nd->nqueue);
        if (sm_ledger_begin(nd->ledger) == 0) {
            for (uint32_t i = 0; i < k; i++)
                (void) sm_ledger_append(nd->ledger, &nd->queue[i].body, sim_node_now(w, nd), NULL);
        }
        w->counters[SIM_C_TORN_BATCHES]++;
    }
    sim_node_close(w, nd);           /* an open batch is aborted */
    nd->torn_pending = false;
    nd->nqueue = 0;
    nd->wake_pending = false;
    nd->generation++;
    for (int j = 0; j < w->n; j++) {
        w->sees_up[nd->index][j] = false;
        sim_own_fetch_reset(w, nd->index, j);
    }
}

/* ---- backups -------------------------------------------------------------- */

static int
s_copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = -1, rc = -1;
    if (in < 0)
        return -1;
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0)
        goto done;
    static uint8_t buf[1 << 16];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0)
            goto done;
        if (n == 0)
            break;
        if (write(out, buf, (size_t) n) != n)
            goto done;
    }
    rc = 0;
done:
    close(in);
    if (out >= 0)
        close(out);
    return rc;
}

void
sim_node_snapshot(sim_world *w, sim_node *nd)
{
    if (!nd->running || !sim_node_own_ok(nd))
        return;
    char from[400];
    snprintf(from, sizeof from, "%s/data.mdb", nd->dir);
    snprintf(nd->snap, sizeof nd->snap, "%s/snap-%d.mdb", w->base, nd->index);
    if (s_copy_file(from, nd->snap) != 0) {
        nd->snap[0] = 0;
        return;
    }
    sm_head h;
    nd->snap_own_head = sm_ledger_head(nd->ledger, &nd->id.pub, &h) == 0 ? h.seq : 0;
    sim_say(w, "node %d: store copied (own head %llu)", nd->index,
            (unsigned long long) nd->snap_own_head);
}

typedef struct {
    sm_hash link;
    bool found;
} s_link_ctx;

static int
s_link_cb(const sm_signed *e, uint64_t seq, void *arg)
{
    (void) seq;
    s_link_ctx *c = arg;
    sm_entry_link(e->bytes, e->len, e->sig, &c->link);
    c->found = true;
    return 1;
}

int
sim_entry_link(sm_ledger *l, const sm_id *origin, uint64_t seq, sm_hash *out)
{
    s_link_ctx c = { .found = false };
    int rc = sm_ledger_read(l, origin, seq, 1, s_link_cb, &c);
    if (rc == 0 && !c.found)
        rc = SM_ENOTFOUND;
    if (rc == 0)
        *out = c.link;
    return rc;
}

/*  After a store went back in time (restored, wiped, or repaired: repair
    keeps each log only up to its damage): an acknowledged sale that no
    store holds any more (that very entry) is lost for good; the checks
    expect it missing.  Stores of processes that are down are opened for
    the look.                                                              */
void
sim_node_forget_lost_sales(sim_world *w)
{
    sm_ledger *l[SIM_NODES_MAX];
    bool opened[SIM_NODES_MAX];
    for (int j = 0; j < w->n; j++) {
        l[j] = w->node[j].ledger;
        opened[j] = false;
        if (!l[j]) {
            sm_ledger_opts opts = { .map_bytes = 256u << 20, .no_sync = true };
            int err = 0;
            l[j] = sm_ledger_open(w->node[j].dir, &opts, &err);
            opened[j] = l[j] != NULL;
        }
    }
    for (uint32_t k = 0; k < w->nacks; k++) {
        struct sim_ack *a = &w->acks[k];
        bool held = false;
        for (int j = 0; j < w->n && !a->lost && !held; j++) {
            sm_hash link;
            held = l[j] && sim_entry_link(l[j], &w->node[a->origin].id.pub, a->seq, &link) == 0
                && memcmp(link.b, a->link.b, SM_HASH_BYTES) == 0;
        }
        if (!held && !a->lost) {
            a->lost = true;
            sim_say(w, "acknowledged sale %d:%llu is in no store any more", a->origin,
                    (unsigned long long) a->seq);
        }
    }
    for (int j = 0; j < w->n; j++)
        if (opened[j])
            sm_ledger_destroy(&l[j]);
}

/*  Note that nd's own entry `seq` exists with this link (two variants a
    seq at most: a store restored from an old copy may have appended a
    second).                                                                 */
static void
s_remember_link(sim_node *nd, uint64_t seq, const sm_hash *link, uint64_t *cap)
{
    if (seq > *cap) {
        uint64_t ncap = seq + 256;
        sm_hash *grown = realloc(nd->wiped_links, ncap * 2 * sizeof *grown);
        if (!grown)
            abort();
        memset(grown + 2 * *cap, 0, (ncap - *cap) * 2 * sizeof *grown);
        nd->wiped_links = grown;
        *cap = ncap;
    }
    sm_hash *slot = &nd->wiped_links[2 * (seq - 1)];
    if (s_is_zero(&slot[0]))
        slot[0] = *link;
    else if (memcmp(slot[0].b, link->b, SM_HASH_BYTES) != 0)
        slot[1] = *link;
    if (seq > nd->wiped_count)
        nd->wiped_count = seq;
}

/*  nd's own entries (signed by it) that message `bytes` carries.           */
static void
s_remember_carried(sim_world *w, sim_node *nd, const uint8_t *bytes, size_t len, uint64_t *cap)
{
    if (!bytes || sm_wire_decode(bytes, len, w->space, &w->msg) != 0
        || w->msg.type != SM_MSG_ENTRIES
        || memcmp(w->msg.u.entries.origin.b, nd->id.pub.b, SM_KEY_BYTES) != 0)
        return;
    for (uint32_t k = 0; k < w->msg.u.entries.count; k++) {
        const sm_signed *e = &w->msg.u.entries.entries[k];
        if (sm_entry_verify(e->bytes, e->len, e->sig, &nd->id.pub) != 0)
            continue;
        sm_hash link;
        sm_entry_link(e->bytes, e->len, e->sig, &link);
        s_remember_link(nd, w->msg.u.entries.first_seq + k, &link, cap);
    }
}

/*  At a wipe: every own entry of nd that any store holds, or the network
    still carries (a message in flight, or one it may replay: it can outlive
    every stored copy, as when the only one left is damaged), by seq.       */
void
sim_node_remember_own(sim_world *w, sim_node *nd)
{
    free(nd->wiped_links);
    nd->wiped_links = NULL;
    nd->wiped_count = 0;
    nd->wiped_checked = 0;
    uint64_t cap = 0;
    for (size_t k = 0; k < w->nheap; k++)
        if (w->heap[k].kind == SIM_EV_DELIVER)
            s_remember_carried(w, nd, w->heap[k].bytes, w->heap[k].len, &cap);
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < w->n; j++)
            for (unsigned k = 0; k < SIM_REPLAY_RING; k++)
                s_remember_carried(w, nd, w->link[i][j].ring[k], w->link[i][j].ring_len[k], &cap);
    for (int j = 0; j < w->n; j++) {
        sim_node *o = &w->node[j];
        sm_ledger *l = o->ledger;
        bool opened = false;
        if (o == nd)
            continue;
        if (!l) {
            sm_ledger_opts opts = { .map_bytes = 256u << 20, .no_sync = true };
            int err = 0;
            l = sm_ledger_open(o->dir, &opts, &err);
            opened = l != NULL;
        }
        sm_head h;
        for (uint64_t seq = 1; l && sm_ledger_head(l, &nd->id.pub, &h) == 0 && seq <= h.seq; seq++) {
            sm_hash link;
            if (sim_entry_link(l, &nd->id.pub, seq, &link) != 0)
                break;
            s_remember_link(nd, seq, &link, &cap);
        }
        if (opened)
            sm_ledger_destroy(&l);
    }
}

void
sim_node_check_recovering(sim_world *w, sim_node *nd)
{
    bool confirmed = true;
    if (!nd->running || sim_node_own_ok(nd) || !nd->wiped_links
        || sm_ledger_own_confirmed(nd->ledger, &confirmed) != 0 || confirmed)
        return;
    sm_head h;
    if (sm_ledger_head(nd->ledger, &nd->id.pub, &h) != 0)
        return;
    for (uint64_t seq = nd->wiped_checked + 1; seq <= h.seq; seq++) {
        sm_hash link;
        if (sim_entry_link(nd->ledger, &nd->id.pub, seq, &link) != 0)
            return;
        const sm_hash *slot = seq <= nd->wiped_count ? &nd->wiped_links[2 * (seq - 1)] : NULL;
        if (!slot || (memcmp(slot[0].b, link.b, SM_HASH_BYTES) != 0
                      && memcmp(slot[1].b, link.b, SM_HASH_BYTES) != 0)) {
            sim_fail(w, "node %d appended its seq %llu while fetching its own log back after a "
                     "wipe (own log not confirmed): a fork", nd->index, (unsigned long long) seq);
            return;
        }
        nd->wiped_checked = seq;
    }
}

/*  The store of a crashed node is replaced by its old copy, or wiped.
    Acknowledged sales no store holds any more are gone for good.           */
void
sim_node_restore(sim_world *w, sim_node *nd, bool wipe)
{
    assert(!nd->running);
    char data[400], lock[400];
    snprintf(data, sizeof data, "%s/data.mdb", nd->dir);
    snprintf(lock, sizeof lock, "%s/lock.mdb", nd->dir);
    unlink(lock);
    if (wipe) {
        unlink(data);
        if (sim_node_open(w, nd) != 0)
            return;
        sim_join(w, nd);
        sim_node_close(w, nd);
    } else if (s_copy_file(nd->snap, data) != 0) {
        sim_fail(w, "node %d: cannot restore its old copy", nd->index);
        return;
    }
    sim_node_forget_lost_sales(w);
    if (wipe)
        sim_node_remember_own(w, nd);
    nd->restored = true;
    w->restores_done++;
    /* What it wrote since is gone from its memory too. */
    nd->nsales = 0;
    nd->nholds = 0;
    nd->has_last_sale = false;
}

/* ---- the core --------------------------------------------------------------- */

void
sim_node_submit(sim_world *w, sim_node *nd, const sim_req *req)
{
    if (!nd->running)
        return;
    if (nd->nqueue == SIM_QUEUE_MAX) {
        sim_workload_answer(w, nd, req, SM_EBUSY, 0);
        return;
    }
    nd->queue[nd->nqueue] = *req;
    nd->queue[nd->nqueue].submitted_ms = w->now;
    nd->nqueue++;
    if (!nd->wake_pending) {
        nd->wake_pending = true;
        sim_schedule(w, w->now + sim_below(&w->rng, 3), SIM_EV_WAKE, nd->index, 0,
                     nd->generation, 0, NULL, 0);
    }
}

/*  Add what the policy did since last time to the world's counters.      */
static void
s_policy_count(sim_world *w, sim_node *nd)
{
    sm_policy_counters c;
    sm_policy_stats(nd->policy, &c);
    w->counters[SIM_C_PARKED] += c.parked - nd->policy_seen.parked;
    w->counters[SIM_C_HOLDS_EXPIRED] += c.holds_expired - nd->policy_seen.holds_expired;
    w->counters[SIM_C_HOLDS_FORWARDED] += c.forwarded - nd->policy_seen.forwarded;
    w->counters[SIM_C_REBALANCE_ASKS] += c.rebalance_asks - nd->policy_seen.rebalance_asks;
    if (c.holds_expired != nd->policy_seen.holds_expired)
        sim_trace_u64(w, c.holds_expired - nd->policy_seen.holds_expired);
    if (c.rounds_failed != nd->policy_seen.rounds_failed)
        sim_fail(w, "node %d: an ingest round's commit failed", nd->index);
    nd->policy_seen = c;
}

/*  The policy is done with a write.                                         */
static void
s_answer(void *arg, sm_policy_write *pw)
{
    sim_node *nd = arg;
    sim_world *w = nd->world;
    sim_req req;
    memset(&req, 0, sizeof req);
    req.body = pw->body;
    req.op = (int) (intptr_t) pw->tag;
    req.forward = pw->forward;
    if (pw->forward && nd->in_batch) {   /* refused before any ask left */
        if (pw->body.kind == SM_KIND_RAFFLE_ENTRY)
            w->ent_sent[nd->index]--;
        else
            w->fwd_sent[nd->index]--;
    }
    if (pw->rc == 0 && !pw->forward) {
        sim_check_drop_write(w, nd, &pw->body, pw->seq);
        sim_check_hold_limits(w, nd, &pw->body, pw->seq);
    }
    sim_workload_answer(w, nd, &req, pw->rc, pw->seq);
}

static void
s_drain(sim_world *w, sim_node *nd)
{
    s_policy_count(w, nd);
    sim_drain(w, nd->index);
}

void
sim_node_wake(sim_world *w, sim_node *nd)
{
    nd->wake_pending = false;
    uint32_t n = nd->nqueue < SIM_BATCH_MAX ? nd->nqueue : SIM_BATCH_MAX;
    if (n == 0)
        return;
    if (nd->torn_pending && (w->phase == SIM_PHASE_CHAOS)) {
        nd->torn_pending = false;
        sim_crash(w, nd->index, true);
        return;
    }
    sm_policy_write batch[SIM_BATCH_MAX];
    memset(batch, 0, n * sizeof batch[0]);
    for (uint32_t i = 0; i < n; i++) {
        const sim_req *r = &nd->queue[i];
        batch[i].body = r->body;
        batch[i].forward = r->forward;
        if (r->forward) {
            batch[i].at = w->node[r->at].id.pub;
            if (r->body.kind == SM_KIND_RAFFLE_ENTRY)
                w->ent_sent[nd->index]++;
            else
                w->fwd_sent[nd->index]++;
        }
        batch[i].tag = (void *) (intptr_t) r->op;
    }
    memmove(nd->queue, nd->queue + n, (nd->nqueue - n) * sizeof nd->queue[0]);
    nd->nqueue -= n;
    nd->in_batch = true;
    bool committed = sm_policy_batch(nd->policy, batch, n, sim_node_now(w, nd), w->now);
    nd->in_batch = false;
    if (committed && sim_chance(&w->rng, 30) && ((w->faults >> SIM_F_RESTORE) & 1u))
        sim_node_snapshot(w, nd);        /* a backup taken after a commit */
    sm_policy_step(nd->policy, sim_node_now(w, nd), w->now);
    s_drain(w, nd);
    if (nd->nqueue > 0 && !nd->wake_pending) {
        nd->wake_pending = true;
        sim_schedule(w, w->now, SIM_EV_WAKE, nd->index, 0, nd->generation, 0, NULL, 0);
    }
}

void
sim_node_own_enable(sim_node *nd)
{
    sm_policy_own_enable(nd->policy);
}

bool
sim_node_own_ok(const sim_node *nd)
{
    return nd->policy && sm_policy_own_ok(nd->policy);
}

size_t
sim_node_pending(const sim_node *nd)
{
    return nd->policy ? sm_policy_pending(nd->policy) : 0;
}

void
sim_node_tick(sim_world *w, sim_node *nd)
{
    uint64_t now = sim_node_now(w, nd);
    sm_policy_tick(nd->policy, now, w->now);
    sm_gossip_tick(nd->gossip, now);
    bool was_ok = sm_policy_own_ok(nd->policy);
    sm_policy_step(nd->policy, now, w->now);
    if (!was_ok && sm_policy_own_ok(nd->policy))
        sim_say(w, "node %d: own-log gate open; writes enabled", nd->index);
    s_drain(w, nd);
    sim_check_node(w, nd);
    sim_node_check_recovering(w, nd);
    sim_check_own_fetch(w, nd);
}

int
sim_node_receive(sim_world *w, sim_node *nd, int from, const uint8_t *msg, size_t len,
                 bool original)
{
    uint64_t now = sim_node_now(w, nd);
    int type = len >= 2 ? msg[1] : -1;
    sm_head before;
    bool asked = (type == SM_MSG_HOLD_ASK || type == SM_MSG_UNITS_ASK
                  || type == SM_MSG_ENTRY_ASK)
                 && sm_ledger_head(nd->ledger, &nd->id.pub, &before) == 0;
    bool durable = false;
    int rc = sm_policy_receive(nd->policy, &w->node[from].id.pub, msg, len, now, &durable);
    sm_policy_round_end(nd->policy, now);    /* a round a delivery */
    if (asked)                               /* before the policy appends more */
        sim_check_asked(w, nd, from, type, original, before.seq);
    sm_policy_step(nd->policy, now, w->now);
    s_drain(w, nd);
    return rc;
}
