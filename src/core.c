/*  The core thread: the node's only writer (README: architecture). See
    core.h.

    Transport: the core binds a ROUTER on a private inproc endpoint; each
    submitter connects a DEALER.  A message is one frame holding a pointer
    to an sm_core_req (all threads share the address space, so the request
    itself never crosses a copy); the ROUTER's identity frame routes the
    answer back to the submitter that sent it.  A NULL pointer from the
    destroying thread asks the loop to finish.

    Loop: wait (zmq_poll) for requests, peers' messages or the next timer;
    drain up to batch_max requests and hand them to the write policy
    (policy.h) as one batch, which appends, commits once and answers each
    (s_policy_answer sends the request back); hand the peers' messages, read
    by the mesh transport, to the policy's ingest round and commit it; run
    the timers (the mesh's, the policy's tick, its parked writes); only then
    send what the engine queued (sm_mesh_flush); call wake.  The core takes
    no decision of its own about what to write: that is the policy's.

    Durability: commits leave their meta page unsynced
    (sm_ledger_defer_sync); the policy's answers are held (s_policy_answer)
    and the engine's queue unsent until the commit before them is durable
    (policy.c, s_commit, states the rule).  Before waiting, the core makes
    everything durable itself when nothing else is queued.  Otherwise it
    goes on with the queued work, whose commit's own fdatasync also covers
    the previous one (store.h); while peers wait for the engine's queue it
    asks the sync thread (s_syncer) as well, so that queue goes out after
    one sync whatever follows (s_sync_start).                                 */
#include "core.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "logger.h"
#include "policy.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define SM__CORE_SWEEP_MS    1000u   /* how often expired holds are released */
#define SM__MESH_TICK_MS     200u    /* how often the mesh's timers run (gossip.h: a few hundred ms) */
#define SM__CORE_ROUTING_MAX 256u    /* bytes of a ROUTER identity frame */

typedef struct {
    uint8_t routing[SM__CORE_ROUTING_MAX];
    size_t routing_len;
    sm_core_req *req;
    uint64_t tag;              /* answered: sent once commit `tag` is durable */
} s_pending;

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
    sm_policy *policy;         /* what to append when: every write goes through it */
    void *router;              /* the submitters' ROUTER */
    s_pending *slots;          /* [SM_CORE_QUEUE_MAX]: requests being handled */
    s_pending **free_slots;
    size_t nfree;
    s_pending **held;          /* [SM_CORE_QUEUE_MAX] ring: answered, waiting
                                  for their commit to be durable (in order) */
    size_t held_head, nheld;
    /* the sync thread (s_syncer): makes commits durable while the core
       takes and commits the next batch */
    pthread_t syncer;
    bool syncer_started;
    int sync_fd;               /* eventfd: a sync is done (polled by the core) */
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_cond;
    bool sync_want, sync_done, sync_quit;   /* under sync_lock */
    int sync_rc;               /* under sync_lock */
    bool sync_busy;            /* core thread: a sync asked for, not collected */
    uint64_t sync_upto;        /* core thread: the last commit it covers */
    uint64_t skipped;          /* core thread: the commit whose sync was left
                                  to the next commit (s_sync_start) */
    uint64_t version;          /* last state version the web was woken for */
    bool answered;             /* answers sent since the last wake */
    /* copied under the lock for other threads */
    pthread_mutex_t peers_lock;
    sm_gossip_peer peers[SM_PEERS_MAX];
    size_t npeers;
};

static int s_syncer_start(sm_core *self);
static void s_syncer_stop(sm_core *self);

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

/* ---- the policy's answers -------------------------------------------- */

/*  A slot for a request between its receipt and its answer: the routing
    frame that takes the answer back.  Parked writes keep theirs, so the
    pool has one slot for each write the queue admits (sm_core_submit).   */
static s_pending *
s_slot_take(sm_core *self)
{
    return self->nfree ? self->free_slots[--self->nfree] : NULL;
}

static void
s_slot_give(sm_core *self, s_pending *p)
{
    assert(self->nfree < SM_CORE_QUEUE_MAX);
    self->free_slots[self->nfree++] = p;
}

/* ---- durability: answers and sends wait for the sync ------------------ */

/*  Send the held answers whose commit is durable, oldest first.            */
static void
s_release(sm_core *self)
{
    uint64_t durable = 0;
    sm_ledger_durable(self->opts.ledger, NULL, &durable);
    while (self->nheld) {
        s_pending *p = self->held[self->held_head];
        if (p->tag > durable)
            break;
        self->held_head = (self->held_head + 1) % SM_CORE_QUEUE_MAX;
        self->nheld--;
        p->req->commit_ns = s_mono_ns();
        s_answer(self, self->router, p);
        s_slot_give(self, p);
    }
}

/*  A sync failed: what was committed up to `upto` may not be on disk.  The
    writes held for it are answered with the error (none was acknowledged);
    what the engine queued stays unsent until a later sync succeeds.        */
static void
s_sync_failed(sm_core *self, int rc, uint64_t upto)
{
    sm_log_error("core: sync failed: %s; the writes waiting for it refused", sm_strerror(rc));
    for (size_t i = 0; i < self->nheld; i++) {
        s_pending *p = self->held[(self->held_head + i) % SM_CORE_QUEUE_MAX];
        if (p->tag > upto)
            break;
        if (p->req->rc == 0 || p->req->rc == SM_EEXIST)
            p->req->rc = rc;
        p->tag = 0;
    }
    s_release(self);
}

/*  Make every commit durable now, on this thread, and send the answers
    held for it.  0 or the sync's error.                                     */
static int
s_durable(sm_core *self)
{
    uint64_t upto = 0;
    sm_ledger_durable(self->opts.ledger, &upto, NULL);
    int rc = sm_ledger_sync(self->opts.ledger);
    if (rc != 0)
        s_sync_failed(self, rc, upto);
    s_release(self);
    return rc;
}

/*  Send what the engine queued, if every commit is durable (else a later
    s_settle will).                                                           */
static void
s_flush_if_durable(sm_core *self)
{
    if (self->mesh && sm_ledger_durable(self->opts.ledger, NULL, NULL))
        sm_mesh_flush(self->mesh);
}

/*  The policy is done with a write: copy its outcome into the request and
    hold it until what was committed before the answer is durable; then it
    goes back to its submitter (s_release).                                  */
static void
s_policy_answer(void *arg, sm_policy_write *w)
{
    sm_core *self = arg;
    s_pending *p = w->tag;
    sm_core_req *req = p->req;
    req->rc = w->rc;
    req->seq = w->seq;
    req->hold_why = w->hold_why;
    req->drop_why = w->drop_why;
    if (req->forward && w->rc == 0 && req->body.kind == SM_KIND_HOLD)
        req->body.u.hold.expires_ms = w->body.u.hold.expires_ms;
    sm_ledger_durable(self->opts.ledger, &p->tag, NULL);
    assert(self->nheld < SM_CORE_QUEUE_MAX);
    self->held[(self->held_head + self->nheld++) % SM_CORE_QUEUE_MAX] = p;
    s_release(self);
}

/*  A peer's message, from the mesh transport: the policy applies it in its
    round's batch.                                                            */
static bool
s_mesh_deliver(void *arg, const sm_id *from, const uint8_t *msg, size_t len, uint64_t now_ms)
{
    sm_core *self = arg;
    bool durable = false;
    sm_policy_receive(self->policy, from, msg, len, now_ms, &durable);
    /* The round was committed on the way: the transport sends what the
       engine queued as soon as this returns true, so make it durable. */
    return durable && s_durable(self) == 0;
}

static int
s_peer_copy(const sm_gossip_peer *peer, void *arg)
{
    sm_core *self = arg;
    if (self->npeers < SM_PEERS_MAX)
        self->peers[self->npeers++] = *peer;
    return 0;
}

/*  Periodic work: the policy's (holds, rebalancing), the peers table.      */
static void
s_tick(sm_core *self, uint64_t now_ms)
{
    sm_policy_tick(self->policy, now_ms, s_mono_ms());
    if (!self->mesh)
        return;
    s_flush_if_durable(self);
    pthread_mutex_lock(&self->peers_lock);
    self->npeers = 0;
    sm_gossip_peers_each(sm_mesh_gossip(self->mesh), s_peer_copy, self);
    pthread_mutex_unlock(&self->peers_lock);
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
    self->router = router;
    self->slots = calloc(SM_CORE_QUEUE_MAX, sizeof *self->slots);
    self->free_slots = calloc(SM_CORE_QUEUE_MAX, sizeof *self->free_slots);
    self->held = calloc(SM_CORE_QUEUE_MAX, sizeof *self->held);
    if (!self->slots || !self->free_slots || !self->held)
        return SM_ENOMEM;
    for (size_t i = 0; i < SM_CORE_QUEUE_MAX; i++)
        s_slot_give(self, &self->slots[SM_CORE_QUEUE_MAX - 1 - i]);
    int rc;
    if ((rc = sm_ledger_defer_sync(self->opts.ledger, true)) != 0
        || (rc = s_syncer_start(self)) != 0)
        return rc;
    if (self->opts.mesh) {
        self->mesh_opts.deliver = s_mesh_deliver;
        self->mesh_opts.deliver_arg = self;
        if (!(self->mesh = sm_mesh_new(self->zctx, &self->mesh_opts, s_now_ms(), &rc)))
            return rc;
    }
    sm_policy_opts popts = {
        .ledger = self->opts.ledger, .node = self->opts.node,
        .gossip = self->mesh ? sm_mesh_gossip(self->mesh) : NULL,
        .metrics = self->opts.metrics, .answer = s_policy_answer, .answer_arg = self,
        .units_wait_ms = self->opts.units_wait_ms,
        .rebalance_floor = self->opts.rebalance_floor,
        .hold_limits = self->opts.hold_limits,
        .allow_fresh = self->opts.allow_fresh,
        .mirror = self->opts.mirror,
    };
    if (!(self->policy = sm_policy_new(&popts, s_mono_ms(), &rc)))
        return rc;
    sm_ledger_version(self->opts.ledger, &self->version);
    return 0;
}

/*  Make everything durable, answer what waited for it, send what the
    engine queued, wake the web thread.                                      */
static void
s_settle(sm_core *self)
{
    if (s_durable(self) == 0 && self->mesh)
        sm_mesh_flush(self->mesh);
    s_wake_if_changed(self);
}

/*  The sync thread: one fdatasync each time it is asked (sync_want).  The
    core asks when something committed is not durable and no sync is under
    way, then goes on taking and committing the next batch: that commit's
    own fdatasync runs beside this one.                                      */
static void *
s_syncer(void *arg)
{
    sm_core *self = arg;
    pthread_mutex_lock(&self->sync_lock);
    while (true) {
        while (!self->sync_want && !self->sync_quit)
            pthread_cond_wait(&self->sync_cond, &self->sync_lock);
        if (self->sync_quit)
            break;
        self->sync_want = false;
        pthread_mutex_unlock(&self->sync_lock);
        int rc = sm_ledger_sync_file(self->opts.ledger);
        pthread_mutex_lock(&self->sync_lock);
        self->sync_rc = rc;
        self->sync_done = true;
        uint64_t one = 1;
        if (write(self->sync_fd, &one, sizeof one) != (ssize_t) sizeof one)
            sm_log_warn("core: cannot signal a sync's end");
    }
    pthread_mutex_unlock(&self->sync_lock);
    return NULL;
}

/*  Make every commit so far durable, unless all is or a sync is under
    way: at once on this thread when nothing else waits (`ready` false: one
    sale at a time pays no hand-over), else by the next commit's own sync
    or the sync thread, while this one takes and commits what is queued.    */
static void
s_sync_start(sm_core *self, bool ready)
{
    uint64_t committed = 0;
    if (self->sync_busy || sm_ledger_durable(self->opts.ledger, &committed, NULL))
        return;
    if (!ready || !self->syncer_started) {
        s_settle(self);
        return;
    }
    /* More is queued and no peer waits for the engine's queue (which goes
       out only when everything is durable): the next commit's own
       fdatasync covers this one's meta, so leave it to that one rather
       than start a second sync that would only queue beside it on the
       disk.  Once per commit: if the next round commits nothing, the
       round after it syncs. */
    if ((!self->mesh || self->npeers == 0) && committed != self->skipped) {
        self->skipped = committed;
        return;
    }
    self->sync_busy = true;
    self->sync_upto = committed;           /* every meta written before the ask */
    pthread_mutex_lock(&self->sync_lock);
    self->sync_want = true;
    pthread_cond_signal(&self->sync_cond);
    pthread_mutex_unlock(&self->sync_lock);
}

/*  The sync thread is done: record what it made durable, answer what waited
    for it, send what the engine queued if all is durable.  While the mesh
    has peers and commits went on meanwhile, the engine's queue would wait
    for a later sync again: settle here, so it waits for one at most.        */
static void
s_sync_collect(sm_core *self)
{
    uint64_t n;
    if (read(self->sync_fd, &n, sizeof n) != (ssize_t) sizeof n || !self->sync_busy)
        return;
    pthread_mutex_lock(&self->sync_lock);
    bool done = self->sync_done;
    int rc = self->sync_rc;
    self->sync_done = false;
    pthread_mutex_unlock(&self->sync_lock);
    if (!done)
        return;
    self->sync_busy = false;
    if (rc == 0)
        sm_ledger_mark_durable(self->opts.ledger, self->sync_upto);
    else
        s_sync_failed(self, rc, self->sync_upto);
    s_release(self);
    if (self->mesh && self->npeers > 0 && !sm_ledger_durable(self->opts.ledger, NULL, NULL))
        s_settle(self);
    s_flush_if_durable(self);
    s_wake_if_changed(self);
}

static int
s_syncer_start(sm_core *self)
{
    self->sync_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->sync_fd < 0)
        return SM_EIO;
    if (pthread_create(&self->syncer, NULL, s_syncer, self) != 0)
        return SM_ENOMEM;
    self->syncer_started = true;
    return 0;
}

static void
s_syncer_stop(sm_core *self)
{
    if (self->syncer_started) {
        pthread_mutex_lock(&self->sync_lock);
        self->sync_quit = true;
        pthread_cond_signal(&self->sync_cond);
        pthread_mutex_unlock(&self->sync_lock);
        pthread_join(self->syncer, NULL);
        self->syncer_started = false;
    }
    if (self->sync_fd >= 0)
        close(self->sync_fd);
    self->sync_fd = -1;
}

/*  Take up to batch_max queued requests into `batch`; their count.          */
static size_t
s_take(sm_core *self, void *router, sm_policy_write *batch, size_t batch_max, bool *stop)
{
    size_t n = 0;
    int rc = 0;
    s_pending *slot;
    while (n < batch_max && (slot = s_slot_take(self)) != NULL) {
        if ((rc = s_recv(router, slot, stop)) != 1 || !slot->req) {
            s_slot_give(self, slot);
            if (rc != 1)
                break;
            continue;
        }
        batch[n].body = slot->req->body;
        batch[n].forward = slot->req->forward;
        batch[n].at = slot->req->at;
        batch[n].uncapped = slot->req->uncapped;
        batch[n].tag = slot;
        n++;
    }
    if (rc < 0)
        sm_log_warn("core: bad request message: %s", sm_strerror(rc));
    return n;
}

/*  The sockets and descriptors to wait on; their count.                     */
static size_t
s_poll_items(sm_core *self, void *router, zmq_pollitem_t *items, size_t cap)
{
    void *socks[5 + 2 * SM_PEERS_MAX];
    size_t ns = 0;
    socks[ns++] = router;
    if (self->mesh)
        ns += sm_mesh_sockets(self->mesh, socks + ns, cap - ns - 1);
    for (size_t i = 0; i < ns; i++)
        items[i] = (zmq_pollitem_t) { socks[i], 0, ZMQ_POLLIN, 0 };
    int fd = self->mesh ? sm_mesh_fd(self->mesh) : -1;
    if (fd >= 0 && ns < cap)   /* the discovery beacon's UDP socket */
        items[ns++] = (zmq_pollitem_t) { NULL, fd, ZMQ_POLLIN, 0 };
    if (self->sync_fd >= 0 && ns < cap)   /* a sync is done */
        items[ns++] = (zmq_pollitem_t) { NULL, self->sync_fd, ZMQ_POLLIN, 0 };
    return ns;
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
        s_syncer_stop(self);
        sm_ledger_defer_sync(self->opts.ledger, false);
        if (router)
            zmq_close(router);
        return NULL;
    }
    uint32_t batch_max = self->opts.batch_max ? self->opts.batch_max : SM_CORE_BATCH_MAX;
    sm_policy_write *batch = calloc(batch_max, sizeof *batch);
    assert(batch);
    bool stop = false;
    uint64_t next_tick_ms = s_mono_ms() + SM__CORE_SWEEP_MS;   /* monotonic */
    uint64_t next_mesh_ms = s_mono_ms() + SM__MESH_TICK_MS;
    enum { ITEMS_MAX = 5 + 2 * SM_PEERS_MAX };
    zmq_pollitem_t items[ITEMS_MAX];
    while (true) {
        size_t n = s_take(self, router, batch, batch_max, &stop);
        uint64_t now_ms = s_now_ms();
        if (n > 0) {
            uint64_t start_ns = s_mono_ns();
            sm_policy_batch(self->policy, batch, n, now_ms, s_mono_ms());
            if (self->opts.metrics)
                sm_metrics_commit_ns(self->opts.metrics, s_mono_ns() - start_ns);
            s_flush_if_durable(self);          /* push what is durable at once */
            s_wake_if_changed(self);           /* answers out: collect them */
        }
        if (self->mesh) {
            sm_mesh_process(self->mesh, now_ms);
            sm_policy_round_end(self->policy, now_ms);
        }
        uint64_t mono_ms = s_mono_ms();
        /* The mesh's tick sends what the engine queued: durable first. */
        if (self->mesh && mono_ms >= next_mesh_ms && s_durable(self) == 0) {
            sm_mesh_tick(self->mesh, now_ms);
            next_mesh_ms = mono_ms + SM__MESH_TICK_MS;
        }
        if (mono_ms >= next_tick_ms) {
            s_tick(self, now_ms);
            next_tick_ms = mono_ms + SM__CORE_SWEEP_MS;
        }
        sm_policy_step(self->policy, now_ms, mono_ms);
        s_flush_if_durable(self);  /* all the policy committed, and only that */
        s_wake_if_changed(self);
        s_sync_collect(self);
        if (n == batch_max) {
            s_sync_start(self, true);
            continue;              /* more may be queued */
        }
        if (stop && sm_policy_pending(self->policy) == 0)
            break;
        size_t ns = s_poll_items(self, router, items, ITEMS_MAX);
        if (!self->sync_busy && !sm_ledger_durable(self->opts.ledger, NULL, NULL))
            s_sync_start(self, zmq_poll(items, (int) ns, 0) > 0);
        uint64_t wake_ms = next_tick_ms;
        if (self->mesh && next_mesh_ms < wake_ms)
            wake_ms = next_mesh_ms;
        uint64_t policy_ms = sm_policy_next_ms(self->policy);
        if (policy_ms < wake_ms)
            wake_ms = policy_ms;
        long wait_ms = wake_ms > mono_ms ? (long) (wake_ms - mono_ms) : 0;
        if (stop)
            wait_ms = wait_ms > 10 ? 10 : wait_ms;
        if (zmq_poll(items, (int) ns, wait_ms) < 0 && errno != EINTR) {
            sm_log_error("core: poll failed: %s", zmq_strerror(errno));
            break;
        }
        s_sync_collect(self);
    }
    s_syncer_stop(self);
    s_settle(self);
    if ((rc = sm_ledger_defer_sync(self->opts.ledger, false)) != 0)
        sm_log_error("core: final sync failed: %s", sm_strerror(rc));
    sm_policy_destroy(&self->policy);
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
    self->sync_fd = -1;
    pthread_mutex_init(&self->peers_lock, NULL);
    pthread_mutex_init(&self->sync_lock, NULL);
    pthread_cond_init(&self->sync_cond, NULL);
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
    pthread_mutex_destroy(&self->sync_lock);
    pthread_cond_destroy(&self->sync_cond);
    free(self->slots);
    free(self->free_slots);
    free(self->held);
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
