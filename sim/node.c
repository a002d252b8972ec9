/*  One simulated node: its store, its engine and its core (sim.h).

    The core does what src/core.c does for the real node.  Its timers (the
    tick, a parked write's wait) run on the monotonic clock (sim time); the
    ledger and the engine get the node's wall clock, skew and jumps
    included, as CLOCK_REALTIME gives it:
    - writes from clients queue up; a wake takes up to SIM_BATCH_MAX of them,
      appends each inside one ledger batch and commits once; only then are
      they answered (a sale is acknowledged once durable), and the engine is
      told (sm_gossip_local);
    - a sale or hold short of units is parked: the peers are asked
      (sm_gossip_ask_units) and it is retried when the units have arrived or
      SM_UNITS_WAIT_MS has passed;
    - every SIM_TICK_MS: expired holds of its own are released (one batch),
      the engine ticks, and the own-log gate opens once the engine says the
      node's own log is recovered;
    - the engine is never called inside a batch (gossip.h's durability rule).

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
    return 0;
}

/*  The engine, once the store belongs to the market.                       */
static int
s_engine(sim_world *w, sim_node *nd)
{
    sm_gossip_opts o;
    memset(&o, 0, sizeof o);
    o.ledger = nd->ledger;
    o.self = nd->id.pub;
    snprintf(o.endpoint, sizeof o.endpoint, "tcp://10.0.0.%d:7400", nd->index + 1);
    o.units_floor = (uint32_t) (nd->index % 3);
    int err = 0;
    nd->gossip = sm_gossip_new(&o, &err);
    if (!nd->gossip) {
        sim_fail(w, "node %d: cannot start its engine: %s", nd->index, sm_strerror(err));
        return err;
    }
    bool confirmed = false;
    if ((err = sm_ledger_own_confirmed(nd->ledger, &confirmed)) != 0) {
        sim_fail(w, "node %d: cannot read its own-log state: %s", nd->index, sm_strerror(err));
        return err;
    }
    /* As core.c: a confirmed store may be an older copy, so it appends
       once a peer's HEADS show none holds more of its log, or after
       SM_OWN_CHECK_MS if no peer answers. */
    nd->own_ok = false;
    nd->own_checking = confirmed;
    nd->own_check_until_ms = w->now + SM_OWN_CHECK_MS;
    nd->own_check_seq = 0;
    nd->own_check_moved_ms = w->now;
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
    sm_gossip_destroy(&nd->gossip);
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
    nd->nparked = 0;
    nd->wake_pending = false;
    s_tick_schedule(w, nd);
}

void
sim_node_restart(sim_world *w, sim_node *nd)
{
    s_start(w, nd);
    sim_trace_u64(w, (uint64_t) nd->own_ok);
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
    nd->nparked = 0;
    nd->wake_pending = false;
    nd->generation++;
    for (int j = 0; j < w->n; j++)
        w->sees_up[nd->index][j] = false;
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
    if (!nd->running || !nd->own_ok)
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

/*  After a store went back in time: an acknowledged sale that no store
    holds any more (that very entry) is lost for good; the checks expect it
    missing.  Stores of processes that are down are opened for the look.  */
static void
s_forget_lost_sales(sim_world *w)
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

/*  At a wipe: every own entry of nd that any store holds, by seq.        */
static void
s_remember_own(sim_world *w, sim_node *nd)
{
    free(nd->wiped_links);
    nd->wiped_links = NULL;
    nd->wiped_count = 0;
    nd->wiped_checked = 0;
    uint64_t cap = 0;
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
            if (seq > cap) {
                uint64_t ncap = seq + 256;
                sm_hash *grown = realloc(nd->wiped_links, ncap * 2 * sizeof *grown);
                if (!grown)
                    abort();
                memset(grown + 2 * cap, 0, (ncap - cap) * 2 * sizeof *grown);
                nd->wiped_links = grown;
                cap = ncap;
            }
            sm_hash *slot = &nd->wiped_links[2 * (seq - 1)];
            bool zero0 = s_is_zero(&slot[0]);
            if (zero0)
                slot[0] = link;
            else if (memcmp(slot[0].b, link.b, SM_HASH_BYTES) != 0)
                slot[1] = link;
            if (seq > nd->wiped_count)
                nd->wiped_count = seq;
        }
        if (opened)
            sm_ledger_destroy(&l);
    }
}

void
sim_node_check_recovering(sim_world *w, sim_node *nd)
{
    if (nd->own_ok || nd->own_checking || !nd->running || !nd->wiped_links)
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
    s_forget_lost_sales(w);
    if (wipe)
        s_remember_own(w, nd);
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

static int64_t
s_here(sim_node *nd, const char *sku)
{
    sm_units u;
    return sm_ledger_units(nd->ledger, sku, &nd->id.pub, &u) == 0 ? u.units : 0;
}

static uint32_t
s_lines(const sm_body *b, const char **skus, uint32_t *qtys)
{
    if (b->kind == SM_KIND_HOLD) {
        skus[0] = b->u.hold.sku;
        qtys[0] = b->u.hold.qty;
        return 1;
    }
    for (uint32_t i = 0; i < b->u.sale.line_count; i++) {
        skus[i] = b->u.sale.lines[i].sku;
        qtys[i] = b->u.sale.lines[i].qty;
    }
    return b->u.sale.line_count;
}

/*  Ask the peers for what a short write lacks; true if it was parked.     */
static bool
s_park(sim_world *w, sim_node *nd, const sim_req *req)
{
    if (nd->nparked == SIM_PARKED_MAX)
        return false;
    uint64_t now = sim_node_now(w, nd);
    const char *skus[SM_SALE_LINES_MAX];
    uint32_t qtys[SM_SALE_LINES_MAX];
    uint32_t n = s_lines(&req->body, skus, qtys);
    sim_parked *k = &nd->parked[nd->nparked];
    k->first_ask = nd->next_ask;
    k->asks = 0;
    for (uint32_t i = 0; i < n; i++) {
        int64_t here = s_here(nd, skus[i]);
        if (here >= (int64_t) qtys[i])
            continue;
        uint32_t missing = qtys[i] - (uint32_t) (here > 0 ? here : 0);
        if (sm_gossip_ask_units(nd->gossip, nd->next_ask, skus[i], missing, now) == 0) {
            nd->next_ask++;
            k->asks++;
        }
    }
    if (k->asks == 0)
        return false;
    k->req = *req;
    k->deadline_ms = w->now + SM_UNITS_WAIT_MS;   /* monotonic, as core.c's */
    nd->nparked++;
    w->counters[SIM_C_PARKED]++;
    return true;
}

/*  Retry parked writes whose units arrived or whose wait is over.  True if
    anything was appended.                                                  */
static bool
s_retry_parked(sim_world *w, sim_node *nd)
{
    bool appended = false;
    uint64_t now = sim_node_now(w, nd);
    for (uint32_t i = 0; i < nd->nparked;) {
        sim_parked *k = &nd->parked[i];
        const char *skus[SM_SALE_LINES_MAX];
        uint32_t qtys[SM_SALE_LINES_MAX];
        uint32_t n = s_lines(&k->req.body, skus, qtys);
        bool enough = true;
        for (uint32_t j = 0; j < n && enough; j++)
            enough = s_here(nd, skus[j]) >= (int64_t) qtys[j];
        if (!enough && w->now < k->deadline_ms) {
            i++;
            continue;
        }
        uint64_t seq = 0;
        int rc = sm_ledger_append(nd->ledger, &k->req.body, now, &seq);
        appended |= rc == 0;
        for (uint32_t a = 0; a < k->asks; a++)
            sm_gossip_ask_done(nd->gossip, k->first_ask + a);
        sim_req req = k->req;
        nd->parked[i] = nd->parked[--nd->nparked];
        sim_workload_answer(w, nd, &req, rc, seq);
    }
    return appended;
}

static void
s_local(sim_world *w, sim_node *nd)
{
    sm_gossip_local(nd->gossip, sim_node_now(w, nd));
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
    sim_req batch[SIM_BATCH_MAX];
    int rcs[SIM_BATCH_MAX];
    uint64_t seqs[SIM_BATCH_MAX];
    memcpy(batch, nd->queue, n * sizeof batch[0]);
    memmove(nd->queue, nd->queue + n, (nd->nqueue - n) * sizeof nd->queue[0]);
    nd->nqueue -= n;
    uint64_t now = sim_node_now(w, nd);
    int rc = sm_ledger_begin(nd->ledger);
    size_t ok = 0;
    for (uint32_t i = 0; i < n; i++) {
        seqs[i] = 0;
        if (rc != 0)
            rcs[i] = rc;
        else if (!nd->own_ok)
            rcs[i] = SM_ERECOVERING;
        else
            rcs[i] = sm_ledger_append(nd->ledger, &batch[i].body, now, &seqs[i]);
        ok += rcs[i] == 0;
    }
    if (rc == 0)
        rc = sm_ledger_commit(nd->ledger);
    else
        sm_ledger_abort(nd->ledger);
    for (uint32_t i = 0; i < n; i++)
        if (rc != 0 && (rcs[i] == 0 || rcs[i] == SM_EEXIST))
            rcs[i] = rc;
    if (rc != 0)
        sim_fail(w, "node %d: a batch commit failed: %s", nd->index, sm_strerror(rc));
    for (uint32_t i = 0; i < n; i++) {
        /* As the node: only a sale asks peers for units, never a hold. */
        bool short_units = rcs[i] == SM_ENOSTOCK && batch[i].body.kind == SM_KIND_SALE;
        if (short_units && s_park(w, nd, &batch[i]))
            continue;
        sim_workload_answer(w, nd, &batch[i], rcs[i], seqs[i]);
    }
    if (rc == 0 && ok > 0) {
        if (sim_chance(&w->rng, 30) && ((w->faults >> SIM_F_RESTORE) & 1u))
            sim_node_snapshot(w, nd);    /* a backup taken after a commit */
        s_local(w, nd);
    }
    if (nd->nparked && s_retry_parked(w, nd))
        s_local(w, nd);
    sim_drain(w, nd->index);
    if (nd->nqueue > 0 && !nd->wake_pending) {
        nd->wake_pending = true;
        sim_schedule(w, w->now, SIM_EV_WAKE, nd->index, 0, nd->generation, 0, NULL, 0);
    }
}

/*  Release this node's expired holds in one batch (core.c's sweep).  True
    if any was released.                                                     */
typedef struct {
    uint64_t now;
    uint32_t count;
    uint64_t seqs[SIM_BATCH_MAX * 4];
} s_expired;

static int
s_collect_expired(const sm_hold *hold, void *arg)
{
    s_expired *ex = arg;
    if (hold->expires_ms <= ex->now)
        ex->seqs[ex->count++] = hold->seq;
    return ex->count == sizeof ex->seqs / sizeof ex->seqs[0];
}

static bool
s_sweep_holds(sim_world *w, sim_node *nd)
{
    s_expired ex = { .now = sim_node_now(w, nd) };
    if (sm_ledger_holds_each(nd->ledger, &nd->id.pub, s_collect_expired, &ex) != 0
        || ex.count == 0)
        return false;
    if (sm_ledger_begin(nd->ledger) != 0)
        return false;
    uint32_t released = 0;
    for (uint32_t i = 0; i < ex.count; i++) {
        sm_body body;
        memset(&body, 0, sizeof body);
        body.kind = SM_KIND_RELEASE;
        body.u.release.hold_seq = ex.seqs[i];
        released += sm_ledger_append(nd->ledger, &body, ex.now, NULL) == 0;
    }
    int rc = sm_ledger_commit(nd->ledger);
    if (rc != 0) {
        sim_fail(w, "node %d: commit of hold releases failed: %s", nd->index, sm_strerror(rc));
        return false;
    }
    w->counters[SIM_C_HOLDS_EXPIRED] += released;
    sim_trace_u64(w, released);
    return released > 0;
}

void
sim_node_own_enable(sim_node *nd)
{
    nd->own_ok = true;
    nd->own_checking = false;
    sm_gossip_set_writable(nd->gossip, true);
}

void
sim_node_tick(sim_world *w, sim_node *nd)
{
    uint64_t now = sim_node_now(w, nd);
    if (nd->own_ok && s_sweep_holds(w, nd))
        s_local(w, nd);
    sm_gossip_tick(nd->gossip, now);
    if (!nd->own_ok && sm_gossip_own_recovered(nd->gossip)) {
        int rc = nd->own_checking ? 0 : sm_ledger_confirm_own(nd->ledger);
        if (rc == 0) {
            sim_say(w, "node %d: own log %s; writes enabled", nd->index,
                    nd->own_checking ? "checked with peers" : "recovered from peers");
            sim_node_own_enable(nd);
        } else {
            sim_fail(w, "node %d: cannot record its recovered own log: %s", nd->index,
                     sm_strerror(rc));
        }
    } else if (!nd->own_ok && nd->own_checking) {
        sm_head h;
        if (sm_ledger_head(nd->ledger, &nd->id.pub, &h) == 0 && h.seq != nd->own_check_seq) {
            nd->own_check_seq = h.seq;
            nd->own_check_moved_ms = w->now;
        }
        bool silent = !sm_gossip_heads_heard(nd->gossip);
        if (w->now >= nd->own_check_until_ms
            && (silent || w->now - nd->own_check_moved_ms >= SM_OWN_STALL_MS)) {
            sim_node_own_enable(nd);
            sim_say(w, "node %d: %s; writes enabled unchecked", nd->index,
                    silent ? "no peer answered its own-log check"
                           : "peers claimed more of its own log than any sent");
        }
    }
    if (nd->nparked && s_retry_parked(w, nd))
        s_local(w, nd);
    sim_drain(w, nd->index);
    sim_check_node(w, nd);
    sim_node_check_recovering(w, nd);
}

void
sim_node_after_receive(sim_world *w, sim_node *nd)
{
    if (nd->running && nd->nparked && s_retry_parked(w, nd))
        s_local(w, nd);
}
