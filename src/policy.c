/*  The write policy: what this node appends, when.  See policy.h.

    Every write transaction of the node is opened and committed here:
    s_begin opens one, s_commit is the only place one is committed, and it
    states the durability rule once (below).  The parked table holds the
    writes that wait: a sale short of units (a hold never waits for units;
    its asks' ids are
    first_ask .. first_ask+asks-1) and a forwarded hold (first_ask is its
    HOLD_ASK's id).  Ask ids come from one counter (next_ask), shared with
    rebalancing.                                                              */
#include "policy.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drop.h"
#include "logger.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "tally.h"

typedef struct {
    sm_policy_write w;
    uint64_t deadline_ms;      /* monotonic */
    uint64_t first_ask;
    uint32_t asks;
    bool hold_fwd;
} s_parked;

struct sm_policy {
    sm_policy_opts opts;
    bool own_ok;               /* local appends allowed (the own-log gate) */
    bool own_checking;         /* a confirmed store checks its head with peers */
    uint64_t own_check_until_ms;   /* monotonic: appends go on then if none answered */
    uint64_t own_heads_ms;     /* monotonic: the first HEADS heard (0 = none yet) */
    uint64_t own_check_seq;    /* own head when last seen to move */
    uint64_t own_check_moved_ms;
    bool round_open;           /* an ingest round's batch is open */
    uint32_t round_msgs;
    uint64_t ingested;         /* the engine's entries_accepted, counted so far */
    s_parked parked[SM_POLICY_PARKED_MAX];
    size_t nparked;
    uint64_t next_ask;
    uint64_t ticks;
    sm_tally *tally;           /* the first-come drops' tallies of this stall */
    sm_policy_counters stats;
};

static void
s_metric(sm_policy *self, sm_metric which, uint64_t n)
{
    if (self->opts.metrics && n)
        sm_metrics_add(self->opts.metrics, which, n);
}

/* ---- transactions ---------------------------------------------------- */

static int
s_begin(sm_policy *self)
{
    return sm_ledger_begin(self->opts.ledger);
}

/*  Commit the open batch.  Commit before relay: the engine learns of local
    entries (sm_gossip_local, which queues their push) only once they are
    committed, and a failed commit discards whatever the engine queued while
    the batch was open (it may speak of entries that never happened) and
    starts every session again, so what the engine believes of each peer is
    learnt afresh from the store as it is (s_round_failed).  The caller
    drains the engine only after the call into this module that committed
    returns.  A local batch calls no engine function while it is open, so
    its failure leaves nothing queued to discard.

    Durable before acknowledged.  The node's writer (core.c) defers the
    sync of each commit's meta page (sm_ledger_defer_sync, LMDB's
    MDB_NOMETASYNC), so a commit may return before it is durable: its data
    pages are fdatasync'd, its meta page written but not synced.  A power
    cut then keeps the store whole (the previous meta page and every page
    it reaches are untouched) and may undo only commits not yet durable.
    So the caller holds back, until sm_ledger_durable covers the commit
    that preceded them, both the answers this module hands it (opts.answer:
    a `201` is a durable sale) and what the engine queued (relay and pushes:
    a peer never holds an entry this node could lose and reissue).  The
    next commit's own fdatasync makes the previous one durable, so under
    load one sync serves two commits; when idle the caller syncs
    (sm_ledger_sync).  The simulator's ledgers commit without syncing and
    count every commit durable.                                               */
static int
s_commit(sm_policy *self, bool local, uint64_t now_ms)
{
    int rc = sm_ledger_commit(self->opts.ledger);
    if (rc == 0 && local && self->opts.gossip)
        sm_gossip_local(self->opts.gossip, now_ms);
    if (rc != 0)
        sm_tally_reset(self->tally);   /* it may have counted what was lost */
    return rc;
}

static void
s_abort(sm_policy *self)
{
    sm_ledger_abort(self->opts.ledger);
    sm_tally_reset(self->tally);
}

/* ---- a shopper's limits and first-come caps ------------------------------- */

/*  A hold against the [holds] per_device and per_address limits, counting
    every hold appended before it (tally.h): the web thread's check
    (api_write.c) reads the store before the batch, so two holds of one
    phone in one batch would both pass it; this one is the authority.       */
static int
s_shopper_limits(sm_policy *self, const sm_body *hold, uint64_t now_ms,
                 sm_reserve_refusal *why)
{
#if SM_SIM_BUG == 13                   /* planted for sim-selftest: skip a shopper's limits */
    (void) self; (void) hold; (void) now_ms;
    memset(why, 0, sizeof *why);
    return 0;
#else
    int rc = sm_tally_check_shopper(self->tally, &self->opts.hold_limits, hold, now_ms, why);
    if (rc == SM_EHOLDLIMIT)
        sm_log_debug("policy: hold over the '%s' limit (%u)", why->limit, why->max);
    return rc;
#endif
}

/*  A hold against a live first-come drop's caps, counting every entry
    appended before it (tally.h).                                           */
static int
s_drop_caps(sm_policy *self, const sm_body *hold, uint64_t now_ms, sm_drop_refusal *why)
{
#if SM_SIM_BUG == 11                   /* planted for sim-selftest: skip the drop's caps */
    (void) self; (void) hold; (void) now_ms;
    memset(why, 0, sizeof *why);
    return 0;
#else
    int rc = sm_tally_check(self->tally, hold, now_ms, why);
    if (rc == SM_EDROPLIMIT || (rc == SM_ENOSTOCK && why->limit))
        sm_log_debug("policy: hold over drop %llu's %s cap (%u)",
                     (unsigned long long) why->drop.seq, why->limit, why->max);
    return rc;
#endif
}

/*  The engine's check of a hold it appends for another node (HOLD_ASK).   */
static int
s_engine_hold_check(void *arg, const sm_body *hold, uint64_t now_ms)
{
    sm_reserve_refusal limit;
    sm_drop_refusal why;
    int rc = s_shopper_limits(arg, hold, now_ms, &limit);
    return rc != 0 ? rc : s_drop_caps(arg, hold, now_ms, &why);
}

/*  Append one local write (not a draw) in the open batch.                  */
static int
s_append(sm_policy *self, sm_policy_write *w, uint64_t now_ms)
{
    if (w->body.kind == SM_KIND_HOLD && !w->uncapped) {
        int rc = s_shopper_limits(self, &w->body, now_ms, &w->hold_why);
        if (rc == 0)
            rc = s_drop_caps(self, &w->body, now_ms, &w->drop_why);
        if (rc != 0)
            return rc;
    }
    int rc = sm_ledger_append(self->opts.ledger, &w->body, now_ms, &w->seq);
    w->hlc = rc == 0 ? sm_ledger_hlc(self->opts.ledger) : 0;
    return rc;
}

/* ---- units from peers ------------------------------------------------- */

static int64_t
s_units_here(sm_policy *self, const char *sku)
{
    sm_units u;
    return sm_ledger_units(self->opts.ledger, sku, &self->opts.node, &u) == 0 ? u.units : 0;
}

/*  The lines of a sale or hold: sku and qty each.                           */
static uint32_t
s_lines(const sm_body *b, const char **skus, uint32_t *qtys)
{
    if (b->kind == SM_KIND_HOLD) {
        skus[0] = b->u.hold.sku;
        qtys[0] = b->u.hold.qty;
        return 1;
    }
    uint32_t n = b->u.sale.line_count;
    for (uint32_t i = 0; i < n; i++) {
        skus[i] = b->u.sale.lines[i].sku;
        qtys[i] = b->u.sale.lines[i].qty;
    }
    return n;
}

/*  Only a till's sale short of units asks the peers for them.  A hold never
    does: a shopper's reservation must not pull other stalls' units here
    (two anonymous requests could otherwise gather a whole market's stock
    at one stall); units another stall holds are reserved there, by
    forwarding the hold (s_forward).                                        */
static bool
s_wants_units(const sm_policy_write *w)
{
    return w->rc == SM_ENOSTOCK && w->body.kind == SM_KIND_SALE;
}

/*  Ask the peers for what `w` lacks; true if it was parked.                */
static bool
s_park(sm_policy *self, const sm_policy_write *w, uint64_t now_ms, uint64_t mono_ms)
{
    if (!self->opts.gossip || self->nparked == SM_POLICY_PARKED_MAX)
        return false;
    const char *skus[SM_SALE_LINES_MAX];
    uint32_t qtys[SM_SALE_LINES_MAX];
    uint32_t n = s_lines(&w->body, skus, qtys);
    s_parked *k = &self->parked[self->nparked];
    k->first_ask = self->next_ask;
    k->asks = 0;
    for (uint32_t i = 0; i < n; i++) {
        int64_t here = s_units_here(self, skus[i]);
        if (here >= (int64_t) qtys[i])
            continue;
        uint32_t missing = qtys[i] - (uint32_t) (here > 0 ? here : 0);
        if (sm_gossip_ask_units(self->opts.gossip, self->next_ask, skus[i], missing,
                                now_ms) == 0) {
            self->next_ask++;
            k->asks++;
        }
    }
    if (k->asks == 0)
        return false;
    uint32_t wait = self->opts.units_wait_ms ? self->opts.units_wait_ms : SM_UNITS_WAIT_MS;
    k->w = *w;
    k->deadline_ms = mono_ms + wait;
    k->hold_fwd = false;
    self->nparked++;
    self->stats.parked++;
    return true;
}

/*  Forward the hold `w` to its stall (HOLD_ASK), or the raffle entry `w` to
    a stall that writes (ENTRY_ASK); true if it was parked to wait for the
    answer, else w->rc says why not.                                        */
static bool
s_forward(sm_policy *self, sm_policy_write *w, uint64_t now_ms, uint64_t mono_ms)
{
    if (!self->opts.gossip) {
        w->rc = SM_EUNREACHABLE;
        return false;
    }
    if (self->nparked == SM_POLICY_PARKED_MAX) {
        w->rc = SM_EBUSY;
        return false;
    }
    /* With the hold's pickup code and its shopper's tags: the stall that
       holds the units budgets and limits per shopper (proto/mesh.md 7.9). */
    bool entry = w->body.kind == SM_KIND_RAFFLE_ENTRY;
    int rc = entry ? sm_gossip_ask_entry(self->opts.gossip, self->next_ask, &w->at, &w->body,
                                         now_ms)
                   : sm_gossip_ask_hold_for(self->opts.gossip, self->next_ask, &w->at,
                                            &w->body, now_ms);
    if (rc != 0) {
        w->rc = rc == SM_ENOTFOUND ? SM_EUNREACHABLE : rc;
        return false;
    }
#if defined(SM_SIM_BUG) && SM_SIM_BUG == 7
    /* planted: the hold is asked for twice (a resend under another id) */
    if (!entry)
        sm_gossip_ask_hold(self->opts.gossip, self->next_ask + 1, &w->at, w->body.u.hold.sku,
                           w->body.u.hold.qty, now_ms);
#endif
    s_parked *k = &self->parked[self->nparked++];
    k->w = *w;
    k->first_ask = self->next_ask++;
#if defined(SM_SIM_BUG) && SM_SIM_BUG == 7
    self->next_ask++;
#endif
    k->asks = 0;
    k->hold_fwd = true;
    k->deadline_ms = mono_ms + SM_HOLD_FWD_WAIT_MS;
    self->stats.forwarded++;
    return true;
}

static void
s_answer(sm_policy *self, sm_policy_write *w)
{
    if (self->opts.answer)
        self->opts.answer(self->opts.answer_arg, w);
}

/*  A forwarded hold: answered once its stall answered or the wait is over.
    True if it was answered.                                                  */
static bool
s_forward_done(sm_policy *self, s_parked *k, uint64_t mono_ms)
{
    sm_gossip *g = self->opts.gossip;
    int code = 0;
    uint64_t seq = 0, expires_ms = 0;
    bool got = sm_gossip_hold_result(g, k->first_ask, &code, &seq, &expires_ms);
    if (!got && mono_ms < k->deadline_ms)
        return false;
    k->w.rc = got ? code : SM_ETIMEOUT;
    k->w.seq = got && code == 0 ? seq : 0;
    if (k->w.rc == 0 && k->w.body.kind == SM_KIND_HOLD)
        k->w.body.u.hold.expires_ms = expires_ms;
    sm_log_debug("policy: forwarded write answered: %s",
                 k->w.rc ? sm_strerror(k->w.rc) : "held there");
    sm_gossip_hold_forget(g, k->first_ask);
    return true;
}

/*  Retry parked writes whose units have arrived; answer those that succeed
    or whose wait is over.  Returns true if anything was appended.          */
static bool
s_retry_parked(sm_policy *self, uint64_t now_ms, uint64_t mono_ms)
{
    bool appended = false;
    for (size_t i = 0; i < self->nparked;) {
        s_parked *k = &self->parked[i];
        if (k->hold_fwd) {
            if (!s_forward_done(self, k, mono_ms)) {
                i++;
                continue;
            }
        } else {
            const char *skus[SM_SALE_LINES_MAX];
            uint32_t qtys[SM_SALE_LINES_MAX];
            uint32_t n = s_lines(&k->w.body, skus, qtys);
            bool enough = true;
            for (uint32_t j = 0; j < n && enough; j++)
                enough = s_units_here(self, skus[j]) >= (int64_t) qtys[j];
            if (!enough && mono_ms < k->deadline_ms) {
                i++;
                continue;
            }
            /* One write, one batch of its own. */
            int rc = s_begin(self);
            if (rc == 0) {
                k->w.rc = s_append(self, &k->w, now_ms);
                rc = s_commit(self, k->w.rc == 0, now_ms);
                if (rc != 0)
                    k->w.rc = rc;
            } else {
                k->w.rc = rc;
            }
            sm_log_debug("policy: parked write retried (%s): %s",
                         enough ? "units arrived" : "wait over",
                         k->w.rc ? sm_strerror(k->w.rc) : "ok");
            if (k->w.rc == 0) {
                appended = true;
                s_metric(self, SM_METRIC_COMMITS, 1);
                s_metric(self, SM_METRIC_ENTRIES_APPENDED, 1);
                s_metric(self, SM_METRIC_SALES, k->w.body.kind == SM_KIND_SALE);
            } else {
                s_metric(self, SM_METRIC_WRITES_REFUSED, 1);
            }
            for (uint32_t a = 0; a < k->asks; a++)
                sm_gossip_ask_done(self->opts.gossip, k->first_ask + a);
        }
        sm_policy_write w = k->w;
        self->parked[i] = self->parked[--self->nparked];
        s_answer(self, &w);
    }
    return appended;
}

/* ---- batches ---------------------------------------------------------- */

bool
sm_policy_batch(sm_policy *self, sm_policy_write *w, size_t n, uint64_t now_ms,
                uint64_t mono_ms)
{
    assert(self && (w || n == 0) && !self->round_open);
    if (n == 0)
        return false;
    sm_ledger *ledger = self->opts.ledger;
    int rc = s_begin(self);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        /* The caller's array may be reused from batch to batch (core.c):
           no refusal of an earlier write may stay on a forwarded one. */
        w[i].seq = 0;
        w[i].hlc = 0;
        memset(&w[i].hold_why, 0, sizeof w[i].hold_why);
        memset(&w[i].drop_why, 0, sizeof w[i].drop_why);
        if (w[i].forward)
            w[i].rc = SM_ESTATE;       /* not appended here: forwarded below */
        else if (rc != 0)
            w[i].rc = rc;
        else if (self->opts.mirror)
            w[i].rc = SM_EREADONLY;    /* a mirror holds no units: no own log */
        else if (!self->own_ok)
            w[i].rc = SM_ERECOVERING;
        else if (w[i].body.kind == SM_KIND_RAFFLE_DRAW) {   /* the draw and its holds */
            w[i].rc = sm_drop_draw(ledger, &self->opts.node, w[i].body.u.raffle_draw.drop_seq,
                                   now_ms, &w[i].seq);
            if (w[i].rc != 0 && w[i].seq != 0)
                rc = w[i].rc;          /* half a draw: the whole batch is abandoned */
        }
        else
            w[i].rc = s_append(self, &w[i], now_ms);
        ok += w[i].rc == 0;
    }
    if (rc == 0) {
        rc = s_commit(self, ok > 0, now_ms);
        s_metric(self, SM_METRIC_COMMITS, rc == 0);
    } else {
        s_abort(self);
    }
    size_t sales = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc != 0 && !w[i].forward && (w[i].rc == 0 || w[i].rc == SM_EEXIST))
            w[i].rc = rc;
        sales += w[i].rc == 0 && w[i].body.kind == SM_KIND_SALE;
    }
    if (rc != 0) {
        sm_log_error("policy: commit of %zu writes failed: %s", n, sm_strerror(rc));
        ok = 0;
    }
    size_t parked = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i].forward ? s_forward(self, &w[i], now_ms, mono_ms)
                         : s_wants_units(&w[i]) && s_park(self, &w[i], now_ms, mono_ms))
            parked++;
        else
            s_answer(self, &w[i]);
    }
    s_metric(self, SM_METRIC_ENTRIES_APPENDED, ok);
    s_metric(self, SM_METRIC_SALES, sales);
    s_metric(self, SM_METRIC_WRITES_REFUSED, n - ok - parked);
    return ok > 0;
}

/* ---- the hold sweep ---------------------------------------------------- */

typedef struct {
    uint64_t now_ms;
    size_t count;
    uint64_t seqs[SM_POLICY_SWEEP_MAX];
} s_expired;

static int
s_collect_expired(const sm_hold *hold, void *arg)
{
    s_expired *ex = arg;
    if (hold->expires_ms <= ex->now_ms)
        ex->seqs[ex->count++] = hold->seq;
    return ex->count == SM_POLICY_SWEEP_MAX;
}

/*  Release this node's expired holds (a release entry each, one commit).   */
static bool
s_sweep_holds(sm_policy *self, uint64_t now_ms)
{
    s_expired ex = { .now_ms = now_ms };
    int rc = sm_ledger_holds_each(self->opts.ledger, &self->opts.node, s_collect_expired, &ex);
    if (rc != 0) {
        sm_log_error("policy: reading holds failed: %s", sm_strerror(rc));
        return false;
    }
    if (ex.count == 0 || s_begin(self) != 0)
        return false;
    size_t released = 0;
    for (size_t i = 0; i < ex.count; i++) {
        sm_body body;
        memset(&body, 0, sizeof body);
        body.kind = SM_KIND_RELEASE;
        body.u.release.hold_seq = ex.seqs[i];
        int arc = sm_ledger_append(self->opts.ledger, &body, now_ms, NULL);
        if (arc == 0)
            released++;
        else
            sm_log_warn("policy: releasing hold %llu failed: %s",
                        (unsigned long long) ex.seqs[i], sm_strerror(arc));
    }
    if ((rc = s_commit(self, released > 0, now_ms)) != 0) {
        sm_log_error("policy: commit of hold releases failed: %s", sm_strerror(rc));
        return false;
    }
    s_metric(self, SM_METRIC_COMMITS, 1);
    s_metric(self, SM_METRIC_HOLDS_EXPIRED, released);
    s_metric(self, SM_METRIC_ENTRIES_APPENDED, released);
    self->stats.holds_expired += released;
    sm_log_debug("policy: released %zu expired holds", released);
    return released > 0;
}

/* ---- rebalancing -------------------------------------------------------- */

typedef struct {
    sm_id self;
    int64_t floor;
    size_t count;              /* short skus found */
    bool open;                 /* skus[count] is being summed */
    struct { char sku[SM_SKU_BYTES_MAX + 1]; int64_t here, elsewhere; }
        skus[SM_POLICY_REBALANCE_SKUS];
} s_rebalance;

/*  Keep the sku being summed only if this stall is short of it and others
    have some.                                                                */
static void
s_rebalance_close(s_rebalance *r)
{
    if (r->skus[r->count].here < r->floor && r->skus[r->count].elsewhere > 0)
        r->count++;
    r->open = false;
}

/*  Stock records come sku by sku: sum each sku's units here and elsewhere. */
static int
s_rebalance_each(const char *sku, const sm_id *loc, const sm_units *u, void *arg)
{
    s_rebalance *r = arg;
    if (r->open && strcmp(sku, r->skus[r->count].sku) != 0)
        s_rebalance_close(r);
    if (r->count == SM_POLICY_REBALANCE_SKUS)
        return 1;
    if (!r->open) {
        memset(&r->skus[r->count], 0, sizeof r->skus[0]);
        snprintf(r->skus[r->count].sku, sizeof r->skus[0].sku, "%s", sku);
        r->open = true;
    }
    if (memcmp(loc->b, r->self.b, SM_KEY_BYTES) == 0)
        r->skus[r->count].here = u->units;
    else if (u->units > 0)
        r->skus[r->count].elsewhere += u->units;
    return 0;
}

/*  For each sku this stall holds fewer than the floor of while other
    stalls hold some, ask the peers for the difference (they keep their own
    units_floor).  Bounded: a few skus a round.                               */
static void
s_rebalance_round(sm_policy *self, uint64_t now_ms)
{
    s_rebalance r = { .self = self->opts.node, .floor = self->opts.rebalance_floor };
    sm_ledger_stock_each(self->opts.ledger, s_rebalance_each, &r);
    if (r.open)
        s_rebalance_close(&r);
    size_t asked = 0;
    for (size_t i = 0; i < r.count; i++) {
        int64_t want = (int64_t) self->opts.rebalance_floor - r.skus[i].here;
        if (want <= 0 || r.skus[i].elsewhere <= 0)
            continue;
        if (want > r.skus[i].elsewhere)
            want = r.skus[i].elsewhere;
        if (sm_gossip_ask_units(self->opts.gossip, self->next_ask, r.skus[i].sku,
                                (uint32_t) want, now_ms) == 0) {
            self->next_ask++;
            asked++;
        }
    }
    self->stats.rebalance_asks += asked;
    if (asked)
        sm_log_debug("policy: rebalancing: asked peers for units of %zu skus", asked);
}

bool
sm_policy_tick(sm_policy *self, uint64_t now_ms, uint64_t mono_ms)
{
    assert(self && !self->round_open);
    (void) mono_ms;
    /* Releases are appends: none until this node's own log is back (its
       own holds come back before the rest of it, and a release appended
       then would reuse a seq of its old log: a fork). */
    if (!self->own_ok)
        return false;
    bool released = s_sweep_holds(self, now_ms);
    if (self->opts.gossip && self->opts.rebalance_floor && !self->opts.mirror
        && ++self->ticks % SM_POLICY_REBALANCE_TICKS == 0)
        s_rebalance_round(self, now_ms);
    return released;
}

/* ---- the own-log gate ------------------------------------------------- */

/*  Local writes, and the engine's appends for peers, may go on.          */
static void
s_own_enable(sm_policy *self)
{
    self->own_ok = true;
    self->own_checking = false;
    if (self->opts.gossip)
        sm_gossip_set_writable(self->opts.gossip, !self->opts.mirror);
}

/*  Own-log recovery and the start check.  A store without a confirmed copy
    of this node's own log (wiped) appends only once peers have sent it
    back.  A confirmed store may still be an older copy (restored from a
    backup, or a card swapped back): it appends once its peers' HEADS show
    that none holds more of this node's log than it does, fetching what
    they hold first; if no peer answers within SM_OWN_CHECK_MS it appends
    anyway (a stall alone at the market must sell), and a fork, if it was
    an older copy, is detected and reported when the peers come back.
    Either way, from the first HEADS the gate waits SM_POLICY_OWN_GATHER_MS
    for the other peers' (the engine keeps the highest seq any claims):
    the first peer to answer may hold less of the log than another.       */
static void
s_own_progress(sm_policy *self, uint64_t mono_ms)
{
    sm_gossip *g = self->opts.gossip;
    if (self->own_ok || !g)
        return;
    if (!self->own_heads_ms && sm_gossip_heads_heard(g))
        self->own_heads_ms = mono_ms ? mono_ms : 1;
    bool gathered = self->own_heads_ms
                    && mono_ms >= self->own_heads_ms + SM_POLICY_OWN_GATHER_MS;
    if (gathered && sm_gossip_own_recovered(g)) {
        int rc = self->own_checking ? 0 : sm_ledger_confirm_own(self->opts.ledger);
        if (rc != 0) {
            sm_log_error("policy: cannot record the recovered own log: %s", sm_strerror(rc));
            return;
        }
        sm_log_info(self->own_checking
                    ? "policy: own log checked with peers; local writes enabled"
                    : "policy: own log recovered from peers; local writes enabled");
        s_own_enable(self);
        return;
    }
    if (!self->own_checking)
        return;
    sm_head h;
    if (sm_ledger_head(self->opts.ledger, &self->opts.node, &h) == 0
        && h.seq != self->own_check_seq) {
        self->own_check_seq = h.seq;
        self->own_check_moved_ms = mono_ms;
    }
    if (mono_ms < self->own_check_until_ms)
        return;
    if (!sm_gossip_heads_heard(g)) {
        sm_log_warn("policy: no peer answered within %u ms: appending to this store's own "
                    "log unchecked (if it is an older copy, peers will report a fork)",
                    SM_OWN_CHECK_MS);
    } else if (mono_ms - self->own_check_moved_ms >= SM_OWN_STALL_MS) {
        /* A peer's HEADS claim more of this node's log than any peer sends:
           a member lying (it cannot forge the entries), or one that lost
           them since.  Waiting for good would freeze the stall. */
        sm_log_warn("policy: peers reported more of this node's own log than any sent in "
                    "%u ms: appending unchecked (a fork, if it was an older copy, is reported)",
                    SM_OWN_STALL_MS);
    } else {
        return;
    }
    s_own_enable(self);
}

bool
sm_policy_own_ok(const sm_policy *self)
{
    assert(self);
    return self->own_ok;
}

void
sm_policy_own_enable(sm_policy *self)
{
    assert(self);
    s_own_enable(self);
}

bool
sm_policy_step(sm_policy *self, uint64_t now_ms, uint64_t mono_ms)
{
    assert(self && !self->round_open);
    s_own_progress(self, mono_ms);
    return self->nparked && s_retry_parked(self, now_ms, mono_ms);
}

/* ---- rounds of ingest -------------------------------------------------- */

/*  The round's batch could not be committed (disk full, I/O error): what
    it ingested never happened.  What the engine queued in the round may
    speak of it (a run it relays, a stock.move it appended for a
    UNITS_GIVE): discard it all, and start every session again so the
    engine learns each peer's state afresh.                                  */
typedef struct {
    sm_id node[SM_PEERS_MAX];
    char endpoint[SM_PEERS_MAX][SM_ENDPOINT_BYTES_MAX + 1];
    size_t n;
} s_ups;

static int
s_collect_up(const sm_gossip_peer *p, void *arg)
{
    s_ups *u = arg;
    if (p->up && u->n < SM_PEERS_MAX) {
        u->node[u->n] = p->node;
        memcpy(u->endpoint[u->n], p->endpoint, sizeof u->endpoint[0]);
        u->n++;
    }
    return 0;
}

static void
s_round_failed(sm_policy *self, int rc, uint64_t now_ms)
{
    sm_log_error("policy: what this round received could not be stored: %s; "
                 "sessions start again", sm_strerror(rc));
    self->stats.rounds_failed++;
    sm_id to;
    const uint8_t *msg;
    size_t len;
    while (sm_gossip_next(self->opts.gossip, &to, &msg, &len))
        ;
    s_ups *ups = calloc(1, sizeof *ups);
    if (!ups)
        return;
    sm_gossip_peers_each(self->opts.gossip, s_collect_up, ups);
    for (size_t i = 0; i < ups->n; i++)
        sm_gossip_peer_up(self->opts.gossip, &ups->node[i],
                          ups->endpoint[i][0] ? ups->endpoint[i] : NULL, now_ms);
    free(ups);
}

void
sm_policy_round_end(sm_policy *self, uint64_t now_ms)
{
    assert(self);
    if (!self->round_open)
        return;
    self->round_open = false;
    int rc = s_commit(self, false, now_ms);
    /* The peers' entries the round stored, for /metrics (a failed round's
       were never stored). */
    sm_gossip_counters c;
    sm_gossip_stats(self->opts.gossip, &c);
    if (rc == 0 && c.entries_accepted > self->ingested)
        s_metric(self, SM_METRIC_ENTRIES_INGESTED, c.entries_accepted - self->ingested);
    self->ingested = c.entries_accepted;
    if (rc != 0)
        s_round_failed(self, rc, now_ms);
}

int
sm_policy_receive(sm_policy *self, const sm_id *from, const uint8_t *msg, size_t len,
                  uint64_t now_ms, bool *durable)
{
    assert(self && self->opts.gossip && from && msg && durable);
    if (!self->round_open) {
        int rc = s_begin(self);
        /* Without a batch each run the engine ingests commits on its own. */
        self->round_open = rc == 0;
        self->round_msgs = 0;
        if (rc != 0)
            sm_log_warn("policy: cannot open a batch (%s); each run commits alone",
                        sm_strerror(rc));
    }
    int rc = sm_gossip_receive(self->opts.gossip, from, msg, len, now_ms);
    if (rc != 0) {
        char hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(from, hex);
        sm_log_debug("policy: message from %.12s refused: %s", hex, sm_strerror(rc));
    }
    /* A round's batch is bounded, so a burst of runs neither grows one
       transaction without limit nor keeps the till's sales waiting long. */
    *durable = !self->round_open;
    if (self->round_open && ++self->round_msgs >= SM_POLICY_ROUND_MSGS_MAX) {
        sm_policy_round_end(self, now_ms);
        *durable = true;
    }
    return rc;
}

/* ---- life cycle -------------------------------------------------------- */

static int
s_count_peer(const sm_gossip_peer *peer, void *arg)
{
    (void) peer;
    (*(size_t *) arg)++;
    return 0;
}

sm_policy *
sm_policy_new(const sm_policy_opts *opts, uint64_t mono_ms, int *err)
{
    assert(opts && opts->ledger && err);
    sm_policy *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->opts = *opts;
    self->tally = sm_tally_new(opts->ledger, &opts->node);
    if (!self->tally) {
        free(self);
        *err = SM_ENOMEM;
        return NULL;
    }
    bool confirmed = false;
    if ((*err = sm_ledger_own_confirmed(opts->ledger, &confirmed)) != 0) {
        sm_policy_destroy(&self);
        return NULL;
    }
    self->own_ok = confirmed;
    if (!confirmed && opts->allow_fresh) {
        sm_log_warn("policy: --allow-fresh: appending without confirming this node's own "
                    "log; if an older copy of this store was used, peers will report a fork");
        if ((*err = sm_ledger_confirm_own(opts->ledger)) != 0) {
            sm_policy_destroy(&self);
            return NULL;
        }
        self->own_ok = true;
    }
    if (!self->own_ok)
        sm_log_warn("policy: this store does not hold a confirmed copy of this node's own "
                    "log (wiped or recreated?): local writes wait until a peer has sent "
                    "it back (or restart with --allow-fresh if this is the newest copy)");
    if (opts->gossip) {
        size_t known = 0;
        sm_gossip_peers_each(opts->gossip, s_count_peer, &known);
        if (self->own_ok && !opts->allow_fresh && (known > 0 || opts->peers_known)) {
            self->own_ok = false;
            self->own_checking = true;
            self->own_check_moved_ms = mono_ms;
            self->own_check_until_ms = mono_ms + SM_OWN_CHECK_MS;
            sm_log_info("policy: checking this node's own log with its peers before "
                        "appending (up to %u ms if none answers)", SM_OWN_CHECK_MS);
        }
        sm_gossip_set_writable(opts->gossip, self->own_ok && !opts->mirror);
        sm_gossip_set_hold_check(opts->gossip, s_engine_hold_check, self);
    }
    *err = 0;
    return self;
}

void
sm_policy_destroy(sm_policy **self_p)
{
    assert(self_p);
    sm_policy *self = *self_p;
    if (!self)
        return;
    if (self->round_open)
        sm_ledger_abort(self->opts.ledger);
    sm_tally_free(&self->tally);
    free(self);
    *self_p = NULL;
}

size_t
sm_policy_pending(const sm_policy *self)
{
    assert(self);
    return self->nparked;
}

uint64_t
sm_policy_next_ms(const sm_policy *self)
{
    assert(self);
    uint64_t t = UINT64_MAX;
    for (size_t i = 0; i < self->nparked; i++)
        if (self->parked[i].deadline_ms < t)
            t = self->parked[i].deadline_ms;
    if (!self->own_ok && self->opts.gossip) {
        if (self->own_checking && self->own_check_until_ms < t)
            t = self->own_check_until_ms;
        if (self->own_heads_ms && self->own_heads_ms + SM_POLICY_OWN_GATHER_MS < t)
            t = self->own_heads_ms + SM_POLICY_OWN_GATHER_MS;
    }
    return t;
}

void
sm_policy_stats(const sm_policy *self, sm_policy_counters *out)
{
    assert(self && out);
    *out = self->stats;
}
