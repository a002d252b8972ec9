/*  The core thread: the node's only writer (DESIGN §7).  See core.h.

    Transport: the core binds a ROUTER on a private inproc endpoint; each
    submitter connects a DEALER.  A message is one frame holding a pointer
    to an sm_core_req (all threads share the address space, so the request
    itself never crosses a copy); the ROUTER's identity frame routes the
    answer back to the submitter that sent it.  A NULL pointer from the
    destroying thread asks the loop to finish.

    Loop: wait (zmq_poll) for requests or the next hold sweep; drain up to
    batch_max requests; append each inside one ledger batch; commit once;
    answer all; call wake.  A request the ledger refused keeps its error and
    does not touch the others; when the commit itself fails, every request
    of the batch that had succeeded gets the commit's error instead, so
    nothing is acknowledged that is not durable.                              */
#include "core.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "logger.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define SM__CORE_SWEEP_MS    1000u   /* how often expired holds are released */
#define SM__MESH_TICK_MS     200u    /* how often the mesh's timers run (gossip.h: a few hundred ms) */
#define SM__CORE_ROUTING_MAX 256u    /* bytes of a ROUTER identity frame */

#define SM__CORE_PARKED_MAX  64u     /* writes waiting for units from peers */
#define SM__REBALANCE_TICKS  10u     /* rebalance every this many ticks (10 s) */
#define SM__REBALANCE_SKUS_MAX 16u   /* skus asked for per rebalance */

typedef struct {
    uint8_t routing[SM__CORE_ROUTING_MAX];
    size_t routing_len;
    sm_core_req *req;
} s_pending;

typedef struct {
    s_pending p;
    uint64_t deadline_ms;      /* on the monotonic clock (s_mono_ms) */
    uint64_t first_ask;        /* ask ids first_ask .. first_ask+asks-1 */
    uint32_t asks;
    bool hold_fwd;             /* a forwarded hold: first_ask is its id */
} s_parked;

struct sm_core {
    sm_core_opts opts;
    sm_mesh_opts mesh_opts;    /* copied from opts.mesh */
    void *zctx;                /* owned */
    char endpoint[64];
    pthread_t thread;
    bool started;
    atomic_bool bound;         /* the thread has bound its ROUTER */
    atomic_int start_err;      /* set by the thread before `bound` */
    atomic_uint queued;        /* submitted, not yet answered */
    /* core thread only */
    sm_mesh *mesh;
    bool own_ok;               /* local appends allowed (own-log recovery) */
    bool own_checking;         /* a confirmed store checks its head with peers first */
    uint64_t own_check_until_ms;   /* monotonic: then appends go on if no peer answered */
    uint64_t own_check_seq;        /* own head when last seen to move */
    uint64_t own_check_moved_ms;   /* monotonic: when it did */
    uint64_t version;          /* last state version the web was woken for */
    bool answered;             /* answers sent since the last wake */
    s_parked parked[SM__CORE_PARKED_MAX];
    size_t nparked;
    uint64_t next_ask;
    uint64_t ticks;
    /* copied under the lock for other threads */
    pthread_mutex_t peers_lock;
    sm_gossip_peer peers[SM_PEERS_MAX];
    size_t npeers;
};

struct sm_core_client {
    sm_core *core;
    void *sock;                /* DEALER */
};

static uint64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static uint64_t
s_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/*  Milliseconds of the monotonic clock: the core's own timers (the tick, a
    parked write's wait) run on it, so a wall clock stepped back by an NTP
    correction cannot stop them for as long as the step.  The ledger and
    the mesh get the wall clock (s_now_ms): timestamps and hold expiries
    are wall-clock facts.                                                    */
static uint64_t
s_mono_ms(void)
{
    return s_mono_ns() / 1000000u;
}

static int
s_zerr(void)
{
    return errno == EAGAIN ? SM_EBUSY : errno == ENOMEM ? SM_ENOMEM : SM_EIO;
}

/* ---- the loop --------------------------------------------------------- */

/*  Receive one [routing][pointer] message without waiting.  1 if one was
    read, 0 if none is queued, or an error.                                  */
static int
s_recv(void *router, s_pending *out, bool *stop)
{
    int n = zmq_recv(router, out->routing, sizeof out->routing, ZMQ_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN ? 0 : s_zerr();
    out->routing_len = (size_t) n < sizeof out->routing ? (size_t) n : sizeof out->routing;
    sm_core_req *req = NULL;
    int more = 0;
    size_t more_len = sizeof more;
    zmq_getsockopt(router, ZMQ_RCVMORE, &more, &more_len);
    if (!more)
        return SM_EMALFORMED;
    n = zmq_recv(router, &req, sizeof req, 0);
    if (n != (int) sizeof req)
        return n < 0 ? s_zerr() : SM_EMALFORMED;
    out->req = req;
    if (!req)
        *stop = true;
    return 1;
}

static void
s_answer(sm_core *self, void *router, s_pending *p)
{
    if (zmq_send(router, p->routing, p->routing_len, ZMQ_SNDMORE) < 0
        || zmq_send(router, &p->req, sizeof p->req, 0) < 0)
        /* Only when the submitter's socket is gone: it no longer waits. */
        sm_log_warn("core: an answer could not be delivered: %s", zmq_strerror(errno));
    atomic_fetch_sub(&self->queued, 1);
    self->answered = true;
}

/* ---- units from peers ------------------------------------------------- */

/*  Only a till's sale short of units asks the peers for them: a hold never
    pulls another stall's units here (a shopper who wants those reserves
    them at that stall, which the page forwards).                          */
static bool
s_wants_units(const sm_core_req *req)
{
    return req->rc == SM_ENOSTOCK && req->body.kind == SM_KIND_SALE;
}

static int64_t
s_units_here(sm_core *self, const char *sku)
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

/*  Ask the peers for what `p` lacks; true if it was parked.                */
static bool
s_park(sm_core *self, const s_pending *p, uint64_t now_ms)
{
    if (!self->mesh || self->nparked == SM__CORE_PARKED_MAX)
        return false;
    const char *skus[SM_SALE_LINES_MAX];
    uint32_t qtys[SM_SALE_LINES_MAX];
    uint32_t n = s_lines(&p->req->body, skus, qtys);
    s_parked *k = &self->parked[self->nparked];
    k->first_ask = self->next_ask;
    k->asks = 0;
    for (uint32_t i = 0; i < n; i++) {
        int64_t here = s_units_here(self, skus[i]);
        if (here >= (int64_t) qtys[i])
            continue;
        uint32_t missing = qtys[i] - (uint32_t) (here > 0 ? here : 0);
        if (sm_gossip_ask_units(sm_mesh_gossip(self->mesh), self->next_ask, skus[i],
                                missing, now_ms) == 0) {
            self->next_ask++;
            k->asks++;
        }
    }
    if (k->asks == 0)
        return false;
    uint32_t wait = self->opts.units_wait_ms ? self->opts.units_wait_ms : SM_UNITS_WAIT_MS;
    k->p = *p;
    k->deadline_ms = s_mono_ms() + wait;
    k->hold_fwd = false;
    self->nparked++;
    return true;
}

/*  Forward the hold `p` to its stall (HOLD_ASK); true if it was parked to
    wait for the answer, else p->req->rc says why not.                     */
static bool
s_forward(sm_core *self, const s_pending *p, uint64_t now_ms)
{
    sm_core_req *req = p->req;
    if (!self->mesh) {
        req->rc = SM_EUNREACHABLE;
        return false;
    }
    if (self->nparked == SM__CORE_PARKED_MAX) {
        req->rc = SM_EBUSY;
        return false;
    }
    int rc = sm_gossip_ask_hold_for(sm_mesh_gossip(self->mesh), self->next_ask, &req->at,
                                    &req->body, now_ms);
    if (rc != 0) {
        req->rc = rc == SM_ENOTFOUND ? SM_EUNREACHABLE : rc;
        return false;
    }
    s_parked *k = &self->parked[self->nparked++];
    k->p = *p;
    k->first_ask = self->next_ask++;
    k->asks = 0;
    k->hold_fwd = true;
    k->deadline_ms = s_mono_ms() + SM_HOLD_FWD_WAIT_MS;
    return true;
}

static void s_answer(sm_core *self, void *router, s_pending *p);

/*  Retry parked writes whose units have arrived; answer those that succeed
    or whose wait is over.  Returns true if anything was appended.          */
static bool
s_retry_parked(sm_core *self, void *router, uint64_t now_ms)
{
    bool appended = false;
    uint64_t mono_ms = s_mono_ms();
    for (size_t i = 0; i < self->nparked;) {
        s_parked *k = &self->parked[i];
        sm_core_req *req = k->p.req;
        if (k->hold_fwd) {
            sm_gossip *g = sm_mesh_gossip(self->mesh);
            int code = 0;
            uint64_t seq = 0, expires_ms = 0;
            bool got = sm_gossip_hold_result(g, k->first_ask, &code, &seq, &expires_ms);
            if (!got && mono_ms < k->deadline_ms) {
                i++;
                continue;
            }
            req->rc = got ? code : SM_ETIMEOUT;
            req->seq = got && code == 0 ? seq : 0;
            if (req->rc == 0)
                req->body.u.hold.expires_ms = expires_ms;
            sm_log_debug("core: forwarded hold answered: %s",
                         req->rc ? sm_strerror(req->rc) : "held there");
            req->commit_ns = s_mono_ns();
            sm_gossip_hold_forget(g, k->first_ask);
            s_answer(self, router, &k->p);
            self->parked[i] = self->parked[--self->nparked];
            continue;
        }
        const char *skus[SM_SALE_LINES_MAX];
        uint32_t qtys[SM_SALE_LINES_MAX];
        uint32_t n = s_lines(&req->body, skus, qtys);
        bool enough = true;
        for (uint32_t j = 0; j < n && enough; j++)
            enough = s_units_here(self, skus[j]) >= (int64_t) qtys[j];
        bool expired = mono_ms >= k->deadline_ms;
        if (!enough && !expired) {
            i++;
            continue;
        }
        /* Outside a batch: the append commits on its own. */
        req->rc = sm_ledger_append(self->opts.ledger, &req->body, now_ms, &req->seq);
        sm_log_debug("core: parked write retried (%s): %s", enough ? "units arrived" : "wait over",
                     req->rc ? sm_strerror(req->rc) : "ok");
        req->commit_ns = s_mono_ns();
        if (req->rc == 0) {
            appended = true;
            if (self->opts.metrics) {
                sm_metrics_add(self->opts.metrics, SM_METRIC_ENTRIES_APPENDED, 1);
                sm_metrics_add(self->opts.metrics, SM_METRIC_COMMITS, 1);
                if (req->body.kind == SM_KIND_SALE)
                    sm_metrics_add(self->opts.metrics, SM_METRIC_SALES, 1);
            }
        } else if (self->opts.metrics) {
            sm_metrics_add(self->opts.metrics, SM_METRIC_WRITES_REFUSED, 1);
        }
        for (uint32_t a = 0; a < k->asks; a++)
            sm_gossip_ask_done(sm_mesh_gossip(self->mesh), k->first_ask + a);
        s_answer(self, router, &k->p);
        self->parked[i] = self->parked[--self->nparked];
    }
    return appended;
}

/*  Append every request of the batch and commit once.  Requests short of
    units are parked (asking the peers) instead of answered; *done gets how
    many of batch[] must be answered now, moved to its front.  Returns true
    if anything was committed.                                                */
static bool
s_run_batch(sm_core *self, s_pending *batch, size_t n, size_t *done)
{
    sm_ledger *ledger = self->opts.ledger;
    uint64_t start_ns = s_mono_ns();
    int rc = sm_ledger_begin(ledger);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        sm_core_req *req = batch[i].req;
        req->seq = 0;
        if (req->forward)
            req->rc = SM_ESTATE;        /* not appended here: forwarded below */
        else if (rc != 0)
            req->rc = rc;
        else if (!self->own_ok)
            req->rc = SM_ERECOVERING;
        else
            req->rc = sm_ledger_append(ledger, &req->body, s_now_ms(), &req->seq);
        if (req->rc == 0)
            ok++;
    }
    if (rc == 0)
        rc = sm_ledger_commit(ledger);
    else
        sm_ledger_abort(ledger);
    uint64_t done_ns = s_mono_ns();
    size_t sales = 0;
    for (size_t i = 0; i < n; i++) {
        sm_core_req *req = batch[i].req;
        if (rc != 0 && !req->forward && (req->rc == 0 || req->rc == SM_EEXIST))
            req->rc = rc;
        if (req->rc == 0 && req->body.kind == SM_KIND_SALE)
            sales++;
        req->commit_ns = done_ns;
    }
    if (rc != 0) {
        sm_log_error("core: commit of %zu writes failed: %s", n, sm_strerror(rc));
        ok = 0;
        sales = 0;
    }
    size_t answer = 0, parked = 0;
    uint64_t now_ms = s_now_ms();
    for (size_t i = 0; i < n; i++) {
        if (batch[i].req->forward ? s_forward(self, &batch[i], now_ms)
                                  : s_wants_units(batch[i].req) && s_park(self, &batch[i], now_ms))
            parked++;
        else
            batch[answer++] = batch[i];
    }
    *done = answer;
    sm_metrics *m = self->opts.metrics;
    if (m) {
        sm_metrics_add(m, SM_METRIC_COMMITS, rc == 0);
        sm_metrics_add(m, SM_METRIC_ENTRIES_APPENDED, ok);
        sm_metrics_add(m, SM_METRIC_SALES, sales);
        sm_metrics_add(m, SM_METRIC_WRITES_REFUSED, n - ok - parked);
        if (rc == 0)
            sm_metrics_commit_ns(m, done_ns - start_ns);
    }
    return ok > 0;
}

typedef struct {
    uint64_t now_ms;
    size_t count;
    uint64_t seqs[SM_CORE_BATCH_MAX];
} s_expired;

static int
s_collect_expired(const sm_hold *hold, void *arg)
{
    s_expired *ex = arg;
    if (hold->expires_ms <= ex->now_ms)
        ex->seqs[ex->count++] = hold->seq;
    return ex->count == SM_CORE_BATCH_MAX;
}

/*  Release this node's expired holds (a release entry each, one commit).   */
static bool
s_sweep_holds(sm_core *self)
{
    s_expired ex = { .now_ms = s_now_ms() };
    int rc = sm_ledger_holds_each(self->opts.ledger, &self->opts.node,
                                  s_collect_expired, &ex);
    if (rc != 0) {
        sm_log_error("core: reading holds failed: %s", sm_strerror(rc));
        return false;
    }
    if (ex.count == 0)
        return false;
    if ((rc = sm_ledger_begin(self->opts.ledger)) != 0)
        return false;
    size_t released = 0;
    for (size_t i = 0; i < ex.count; i++) {
        sm_body body;
        memset(&body, 0, sizeof body);
        body.kind = SM_KIND_RELEASE;
        body.u.release.hold_seq = ex.seqs[i];
        int arc = sm_ledger_append(self->opts.ledger, &body, ex.now_ms, NULL);
        if (arc == 0)
            released++;
        else
            sm_log_warn("core: releasing hold %llu failed: %s",
                        (unsigned long long) ex.seqs[i], sm_strerror(arc));
    }
    if ((rc = sm_ledger_commit(self->opts.ledger)) != 0) {
        sm_log_error("core: commit of hold releases failed: %s", sm_strerror(rc));
        return false;
    }
    if (self->opts.metrics) {
        sm_metrics_add(self->opts.metrics, SM_METRIC_HOLDS_EXPIRED, released);
        sm_metrics_add(self->opts.metrics, SM_METRIC_ENTRIES_APPENDED, released);
        sm_metrics_add(self->opts.metrics, SM_METRIC_COMMITS, 1);
    }
    sm_log_debug("core: released %zu expired holds", released);
    return released > 0;
}

static int
s_peer_copy(const sm_gossip_peer *peer, void *arg)
{
    sm_core *self = arg;
    if (self->npeers < SM_PEERS_MAX)
        self->peers[self->npeers++] = *peer;
    return 0;
}

typedef struct {
    sm_id self;
    int64_t floor;
    size_t count;              /* short skus found */
    bool open;                 /* skus[count] is being summed */
    struct { char sku[SM_SKU_BYTES_MAX + 1]; int64_t here, elsewhere; } skus[SM__REBALANCE_SKUS_MAX];
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
    if (r->count == SM__REBALANCE_SKUS_MAX)
        return 1;
    if (!r->open) {
        memset(&r->skus[r->count], 0, sizeof r->skus[0]);
        snprintf(r->skus[r->count].sku, sizeof r->skus[0].sku, "%s", sku);
        r->open = true;
    }
    if (memcmp(loc->b, r->self.b, SM_KEY_BYTES) == 0)
        r->skus[r->count].here = u->units;
    else
        r->skus[r->count].elsewhere += u->units;
    return 0;
}

/*  The rebalancing policy: for each sku this stall holds fewer than the
    floor of while other stalls hold more, ask the peers for the difference
    (they keep their own units_floor).  Bounded: a few skus a round.        */
static void
s_rebalance_round(sm_core *self, uint64_t now_ms)
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
        if (sm_gossip_ask_units(sm_mesh_gossip(self->mesh), self->next_ask, r.skus[i].sku,
                                (uint32_t) want, now_ms) == 0) {
            self->next_ask++;
            asked++;
        }
    }
    if (asked)
        sm_log_debug("core: rebalancing: asked peers for units of %zu skus", asked);
}

/*  Periodic work: holds, rebalancing, the peers table.                      */
static bool
s_tick(sm_core *self, uint64_t now_ms)
{
    /* Releases are appends: none until this node's own log is back (its
       own holds come back before the rest of it, and a release appended
       then would reuse a seq of its old log: a fork). */
    bool released = self->own_ok && s_sweep_holds(self);
    if (!self->mesh)
        return released;
    if (released)
        sm_mesh_local(self->mesh, now_ms);
    if (self->opts.rebalance_floor && self->own_ok && ++self->ticks % SM__REBALANCE_TICKS == 0)
        s_rebalance_round(self, now_ms);
    sm_gossip *g = sm_mesh_gossip(self->mesh);
    pthread_mutex_lock(&self->peers_lock);
    self->npeers = 0;
    sm_gossip_peers_each(g, s_peer_copy, self);
    pthread_mutex_unlock(&self->peers_lock);
    return released;
}

/*  Own-log recovery and the start check.  A store without a confirmed copy
    of this node's own log (wiped) appends only once peers have sent it
    back.  A confirmed store may still be an older copy (restored from a
    backup, or a card swapped back): it appends once a peer's HEADS show
    that no peer holds more of this node's log than it does, fetching what
    they hold first; if no peer answers within SM_OWN_CHECK_MS it appends
    anyway (a stall alone at the market must sell), and a fork, if it was
    an older copy, is detected and reported when the peers come back.       */
/*  Local writes, and the engine's appends for peers, may go on.          */
static void
s_own_enable(sm_core *self)
{
    self->own_ok = true;
    self->own_checking = false;
    sm_gossip_set_writable(sm_mesh_gossip(self->mesh), true);
}

static void
s_own_progress(sm_core *self)
{
    sm_gossip *g = sm_mesh_gossip(self->mesh);
    if (sm_gossip_own_recovered(g)) {
        int rc = self->own_checking ? 0 : sm_ledger_confirm_own(self->opts.ledger);
        if (rc != 0) {
            sm_log_error("core: cannot record the recovered own log: %s", sm_strerror(rc));
            return;
        }
        sm_log_info(self->own_checking
                    ? "core: own log checked with peers; local writes enabled"
                    : "core: own log recovered from peers; local writes enabled");
        s_own_enable(self);
        return;
    }
    if (!self->own_checking)
        return;
    uint64_t mono_ms = s_mono_ms();
    sm_head h;
    if (sm_ledger_head(self->opts.ledger, &self->opts.node, &h) == 0
        && h.seq != self->own_check_seq) {
        self->own_check_seq = h.seq;
        self->own_check_moved_ms = mono_ms;
    }
    if (mono_ms < self->own_check_until_ms)
        return;
    if (!sm_gossip_heads_heard(g)) {
        sm_log_warn("core: no peer answered within %u ms: appending to this store's own "
                    "log unchecked (if it is an older copy, peers will report a fork)",
                    SM_OWN_CHECK_MS);
    } else if (mono_ms - self->own_check_moved_ms >= SM_OWN_STALL_MS) {
        /* A peer's HEADS claim more of this node's log than any peer sends:
           a member lying (it cannot forge the entries), or one that lost
           them since.  Waiting for good would freeze the stall. */
        sm_log_warn("core: peers reported more of this node's own log than any sent in %u ms: "
                    "appending unchecked (a fork, if it was an older copy, is reported)",
                    SM_OWN_STALL_MS);
    } else {
        return;
    }
    s_own_enable(self);
}

static int
s_count_peer(const sm_gossip_peer *peer, void *arg)
{
    (void) peer;
    (*(size_t *) arg)++;
    return 0;
}

static void
s_wake_if_changed(sm_core *self)
{
    uint64_t v = 0;
    bool moved = sm_ledger_version(self->opts.ledger, &v) == 0 && v != self->version;
    if (moved)
        self->version = v;
    /* A refusal changes no state but its answer must still be collected. */
    if ((moved || self->answered) && self->opts.wake)
        self->opts.wake(self->opts.wake_arg);
    self->answered = false;
}

static int
s_thread_start(sm_core *self, void **router_out)
{
    void *router = zmq_socket(self->zctx, ZMQ_ROUTER);
    int zero = 0, linger = 0;
    /* The queue is bounded by sm_core_submit, not by ZeroMQ's watermarks,
       so an answer is never dropped on a full pipe. */
    if (!router
        || zmq_setsockopt(router, ZMQ_SNDHWM, &zero, sizeof zero) != 0
        || zmq_setsockopt(router, ZMQ_RCVHWM, &zero, sizeof zero) != 0
        || zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger) != 0
        || zmq_bind(router, self->endpoint) != 0) {
        sm_log_error("core: cannot bind %s: %s", self->endpoint, zmq_strerror(errno));
        if (router)
            zmq_close(router);
        return SM_EIO;
    }
    *router_out = router;
    bool confirmed = false;
    int rc = sm_ledger_own_confirmed(self->opts.ledger, &confirmed);
    if (rc != 0)
        return rc;
    self->own_ok = confirmed;
    if (!confirmed && self->opts.allow_fresh) {
        sm_log_warn("core: --allow-fresh: appending without confirming this node's own "
                    "log; if an older copy of this store was used, peers will report a fork");
        if ((rc = sm_ledger_confirm_own(self->opts.ledger)) != 0)
            return rc;
        self->own_ok = true;
    }
    if (!self->own_ok)
        sm_log_warn("core: this store does not hold a confirmed copy of this node's own "
                    "log (wiped or recreated?): local writes wait until a peer has sent "
                    "it back (or restart with --allow-fresh if this is the newest copy)");
    if (self->opts.mesh) {
        if (!(self->mesh = sm_mesh_new(self->zctx, &self->mesh_opts, s_now_ms(), &rc)))
            return rc;
        size_t known = 0;
        sm_gossip_peers_each(sm_mesh_gossip(self->mesh), s_count_peer, &known);
        if (self->own_ok && !self->opts.allow_fresh && known > 0) {
            self->own_ok = false;
            self->own_checking = true;
            self->own_check_moved_ms = s_mono_ms();
            self->own_check_until_ms = self->own_check_moved_ms + SM_OWN_CHECK_MS;
            sm_log_info("core: checking this node's own log with its peers before "
                        "appending (up to %u ms if none answers)", SM_OWN_CHECK_MS);
        }
        sm_gossip_set_writable(sm_mesh_gossip(self->mesh), self->own_ok);
    }
    sm_ledger_version(self->opts.ledger, &self->version);
    return 0;
}

static void *
s_thread(void *arg)
{
    sm_core *self = arg;
    void *router = NULL;
    int rc = s_thread_start(self, &router);
    atomic_store(&self->start_err, rc);
    atomic_store(&self->bound, true);
    if (rc != 0) {
        if (router)
            zmq_close(router);
        return NULL;
    }
    uint32_t batch_max = self->opts.batch_max ? self->opts.batch_max : SM_CORE_BATCH_MAX;
    s_pending *batch = calloc(batch_max, sizeof *batch);
    assert(batch);
    bool stop = false;
    uint64_t next_tick_ms = s_mono_ms() + SM__CORE_SWEEP_MS;   /* monotonic */
    uint64_t next_mesh_ms = s_mono_ms() + SM__MESH_TICK_MS;
    enum { ITEMS_MAX = 4 + 2 * SM_PEERS_MAX };
    zmq_pollitem_t items[ITEMS_MAX];
    void *socks[ITEMS_MAX];
    while (true) {
        size_t n = 0;
        rc = 0;
        while (n < batch_max && (rc = s_recv(router, &batch[n], &stop)) == 1) {
            if (batch[n].req)
                n++;
        }
        if (rc < 0)
            sm_log_warn("core: bad request message: %s", sm_strerror(rc));
        uint64_t now_ms = s_now_ms();
        if (n > 0) {
            size_t answer = 0;
            bool committed = s_run_batch(self, batch, n, &answer);
            for (size_t i = 0; i < answer; i++)
                s_answer(self, router, &batch[i]);
            if (committed && self->mesh)
                sm_mesh_local(self->mesh, now_ms);
        }
        if (self->mesh)
            sm_mesh_process(self->mesh, now_ms);
        if (self->mesh && !self->own_ok)
            s_own_progress(self);
        uint64_t mono_ms = s_mono_ms();
        if (self->mesh && mono_ms >= next_mesh_ms) {
            sm_mesh_tick(self->mesh, now_ms);
            next_mesh_ms = mono_ms + SM__MESH_TICK_MS;
        }
        if (mono_ms >= next_tick_ms) {
            s_tick(self, now_ms);
            next_tick_ms = mono_ms + SM__CORE_SWEEP_MS;
        }
        if (self->nparked && s_retry_parked(self, router, now_ms) && self->mesh)
            sm_mesh_local(self->mesh, now_ms);
        s_wake_if_changed(self);
        if (n == batch_max)
            continue;              /* more may be queued */
        if (stop && self->nparked == 0)
            break;
        size_t ns = 0;
        socks[ns++] = router;
        if (self->mesh)
            ns += sm_mesh_sockets(self->mesh, socks + ns, ITEMS_MAX - ns);
        for (size_t i = 0; i < ns; i++)
            items[i] = (zmq_pollitem_t) { socks[i], 0, ZMQ_POLLIN, 0 };
        int fd = self->mesh ? sm_mesh_fd(self->mesh) : -1;
        if (fd >= 0 && ns < ITEMS_MAX)   /* the discovery beacon's UDP socket */
            items[ns++] = (zmq_pollitem_t) { NULL, fd, ZMQ_POLLIN, 0 };
        uint64_t wake_ms = next_tick_ms;
        if (self->mesh && next_mesh_ms < wake_ms)
            wake_ms = next_mesh_ms;
        if (self->own_checking && self->own_check_until_ms < wake_ms)
            wake_ms = self->own_check_until_ms;
        for (size_t i = 0; i < self->nparked; i++)
            if (self->parked[i].deadline_ms < wake_ms)
                wake_ms = self->parked[i].deadline_ms;
        long wait_ms = wake_ms > mono_ms ? (long) (wake_ms - mono_ms) : 0;
        if (stop)
            wait_ms = wait_ms > 10 ? 10 : wait_ms;
        if (zmq_poll(items, (int) ns, wait_ms) < 0 && errno != EINTR) {
            sm_log_error("core: poll failed: %s", zmq_strerror(errno));
            break;
        }
    }
    sm_mesh_destroy(&self->mesh);
    free(batch);
    zmq_close(router);
    return NULL;
}

size_t
sm_core_peers(sm_core *self, sm_gossip_peer *out, size_t cap)
{
    assert(self && (out || cap == 0));
    pthread_mutex_lock(&self->peers_lock);
    size_t n = self->npeers < cap ? self->npeers : cap;
    memcpy(out, self->peers, n * sizeof *out);
    pthread_mutex_unlock(&self->peers_lock);
    return n;
}

/* ---- life cycle ------------------------------------------------------- */

sm_core *
sm_core_new(const sm_core_opts *opts, int *err)
{
    assert(opts && opts->ledger && err);
    sm_core *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->opts = *opts;
    pthread_mutex_init(&self->peers_lock, NULL);
    if (opts->mesh) {
        self->mesh_opts = *opts->mesh;
        self->opts.mesh = &self->mesh_opts;
    }
    snprintf(self->endpoint, sizeof self->endpoint, "inproc://stallmesh-core-%p",
             (void *) self);
    self->zctx = zmq_ctx_new();
    if (!self->zctx) {
        *err = SM_ENOMEM;
        goto fail;
    }
    if (pthread_create(&self->thread, NULL, s_thread, self) != 0) {
        *err = SM_ENOMEM;
        goto fail;
    }
    self->started = true;
    /* Wait (bounded) for the thread to bind, so clients find it. */
    for (int i = 0; i < 5000 && !atomic_load(&self->bound); i++) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    if (!atomic_load(&self->bound)) {
        *err = SM_EIO;
        goto fail;
    }
    if ((*err = atomic_load(&self->start_err)) != 0) {
        pthread_join(self->thread, NULL);
        self->started = false;
        goto fail;
    }
    return self;
fail:
    sm_core_destroy(&self);
    return NULL;
}

void
sm_core_destroy(sm_core **self_p)
{
    assert(self_p);
    sm_core *self = *self_p;
    if (!self)
        return;
    if (self->started) {
        int err = 0;
        sm_core_client *ctl = sm_core_client_new(self, &err);
        sm_core_req *stop = NULL;
        if (ctl && zmq_send(ctl->sock, &stop, sizeof stop, 0) == (int) sizeof stop) {
            pthread_join(self->thread, NULL);
        } else {
            sm_log_error("core: cannot ask the core thread to stop");
            abort();
        }
        sm_core_client_destroy(&ctl);
    }
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    pthread_mutex_destroy(&self->peers_lock);
    sm_identity_wipe(&self->mesh_opts.identity);
    free(self);
    *self_p = NULL;
}

sm_core_client *
sm_core_client_new(sm_core *core, int *err)
{
    assert(core && err);
    sm_core_client *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->core = core;
    self->sock = zmq_socket(core->zctx, ZMQ_DEALER);
    int zero = 0, linger = 0;
    if (!self->sock
        || zmq_setsockopt(self->sock, ZMQ_SNDHWM, &zero, sizeof zero) != 0
        || zmq_setsockopt(self->sock, ZMQ_RCVHWM, &zero, sizeof zero) != 0
        || zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger) != 0
        || zmq_connect(self->sock, core->endpoint) != 0) {
        *err = s_zerr();
        sm_core_client_destroy(&self);
        return NULL;
    }
    return self;
}

void
sm_core_client_destroy(sm_core_client **self_p)
{
    assert(self_p);
    sm_core_client *self = *self_p;
    if (!self)
        return;
    if (self->sock)
        zmq_close(self->sock);
    free(self);
    *self_p = NULL;
}

int
sm_core_submit(sm_core_client *self, sm_core_req *req)
{
    assert(self && req);
    if (atomic_fetch_add(&self->core->queued, 1) >= SM_CORE_QUEUE_MAX) {
        atomic_fetch_sub(&self->core->queued, 1);
        return SM_EBUSY;
    }
    req->submit_ns = s_mono_ns();
    req->rc = 0;
    if (zmq_send(self->sock, &req, sizeof req, ZMQ_DONTWAIT) != (int) sizeof req) {
        atomic_fetch_sub(&self->core->queued, 1);
        return s_zerr();
    }
    return 0;
}

sm_core_req *
sm_core_done(sm_core_client *self)
{
    assert(self);
    sm_core_req *req = NULL;
    int n = zmq_recv(self->sock, &req, sizeof req, ZMQ_DONTWAIT);
    if (n != (int) sizeof req)
        return NULL;
    return req;
}
