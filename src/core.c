/*  The core thread: the node's only writer (README: architecture). See
    core.h.

    Transport: a queue under a mutex, and an eventfd the core polls beside
    the mesh's sockets.  A submitter pushes a pointer to its sm_core_req
    (all threads share the address space, so the request itself never
    crosses a copy) with its client, and writes the eventfd only if the
    core has not been told since it last looked (in_told); the core drains
    the queue and answers into the client's own list, under the client's
    mutex (sm_core_done pops it).  No system call a request beyond that one
    wake-up, where ZeroMQ's inproc sockets made several each way.  A NULL
    pointer from the destroying thread asks the loop to finish.

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
typedef struct {
    sm_core_client *client;    /* who takes the answer */
    sm_core_req *req;
    uint64_t tag;              /* answered: sent once commit `tag` is durable */
} s_pending;

struct sm_core {
    sm_core_opts opts;
    sm_mesh_opts mesh_opts;    /* copied from opts.mesh */
    void *zctx;                /* owned */
    pthread_t thread;
    bool started;
    atomic_bool bound;         /* the thread is ready (or failed) */
    atomic_int start_err;      /* set by the thread before `bound` */
    atomic_uint queued;        /* submitted, not yet answered */
    /* the submitters' queue (any thread, under in_lock) */
    pthread_mutex_t in_lock;
    s_pending in[SM_CORE_QUEUE_MAX + 1];   /* ring: req, client; + the stop */
    size_t in_head, in_len;
    int in_fd;                 /* eventfd: something was queued */
    atomic_bool in_told;       /* in_fd written since the core last read it */
    /* core thread only */
    sm_mesh *mesh;
    sm_policy *policy;         /* what to append when: every write goes through it */
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
    pthread_mutex_t lock;
    sm_core_req *done[SM_CORE_QUEUE_MAX];  /* ring: answered, not yet taken */
    size_t head, len;
    bool closed;               /* its owner is gone: answers are dropped */
    atomic_int refs;           /* its owner's, and one a request in flight */
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

/* ---- the loop --------------------------------------------------------- */

static void
s_client_unref(sm_core_client *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
}

/*  Hand a request back to its submitter: into its client's list, unless
    the client is gone (it no longer waits).                                 */
static void
s_answer(sm_core *self, s_pending *p)
{
    sm_core_client *c = p->client;
    pthread_mutex_lock(&c->lock);
    if (!c->closed) {
        assert(c->len < SM_CORE_QUEUE_MAX);
        c->done[(c->head + c->len++) % SM_CORE_QUEUE_MAX] = p->req;
    }
    pthread_mutex_unlock(&c->lock);
    s_client_unref(c);
    p->client = NULL;
    atomic_fetch_sub(&self->queued, 1);
    self->answered = true;
}

/*  Queue a request (NULL: stop) for the core and wake it if it was not
    told already.  The ring has room: sm_core_submit bounds what is queued
    to SM_CORE_QUEUE_MAX, and the stop comes once.                            */
static int
s_inbox_push(sm_core *self, sm_core_req *req, sm_core_client *client)
{
    pthread_mutex_lock(&self->in_lock);
    assert(self->in_len < SM_CORE_QUEUE_MAX + 1);
    s_pending *slot = &self->in[(self->in_head + self->in_len++) % (SM_CORE_QUEUE_MAX + 1)];
    slot->req = req;
    slot->client = client;
    pthread_mutex_unlock(&self->in_lock);
    if (!atomic_exchange(&self->in_told, true)) {
        uint64_t one = 1;
        if (write(self->in_fd, &one, sizeof one) != (ssize_t) sizeof one)
            return SM_EIO;
    }
    return 0;
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
        s_answer(self, p);
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
    req->hlc = w->hlc;
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
s_thread_start(sm_core *self)
{
    self->slots = calloc(SM_CORE_QUEUE_MAX, sizeof *self->slots);
    self->free_slots = calloc(SM_CORE_QUEUE_MAX, sizeof *self->free_slots);
    self->held = calloc(SM_CORE_QUEUE_MAX, sizeof *self->held);
    if (!self->slots || !self->free_slots || !self->held)
        return SM_ENOMEM;
    for (size_t i = 0; i < SM_CORE_QUEUE_MAX; i++)
        s_slot_give(self, &self->slots[SM_CORE_QUEUE_MAX - 1 - i]);
    int rc;
    /* GET /api/state's digest: kept as the core writes, read in constant
       time however large the state grows (one scan now); and the log of
       what each commit changed in the stock view, so the web thread's
       snapshot rebuilds only the items that changed. */
    if ((rc = sm_ledger_defer_sync(self->opts.ledger, true)) != 0
        || (rc = sm_ledger_keep_digest(self->opts.ledger)) != 0
        || (rc = sm_ledger_keep_changes(self->opts.ledger)) != 0
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

/*  Take up to batch_max queued requests into `batch`; their count.  The
    eventfd is read (and in_told cleared) before the queue is, so a request
    pushed after this drain always writes it again.                          */
static size_t
s_take(sm_core *self, sm_policy_write *batch, size_t batch_max, bool *stop)
{
    if (atomic_load(&self->in_told)) {
        uint64_t count;
        if (read(self->in_fd, &count, sizeof count) < 0 && errno != EAGAIN)
            sm_log_warn("core: cannot read the queue's eventfd: %s", strerror(errno));
        atomic_store(&self->in_told, false);
    }
    size_t n = 0;
    pthread_mutex_lock(&self->in_lock);
    while (n < batch_max && self->in_len > 0) {
        s_pending *in = &self->in[self->in_head];
        s_pending *slot = NULL;
        if (in->req && !(slot = s_slot_take(self)))
            break;                     /* cannot happen: queued <= the slots */
        if (!in->req)
            *stop = true;
        else
            *slot = *in;
        self->in_head = (self->in_head + 1) % (SM_CORE_QUEUE_MAX + 1);
        self->in_len--;
        if (!slot)
            continue;
        batch[n].body = slot->req->body;
        batch[n].forward = slot->req->forward;
        batch[n].at = slot->req->at;
        batch[n].uncapped = slot->req->uncapped;
        batch[n].tag = slot;
        n++;
    }
    pthread_mutex_unlock(&self->in_lock);
    return n;
}

/*  The sockets and descriptors to wait on; their count.                     */
static size_t
s_poll_items(sm_core *self, zmq_pollitem_t *items, size_t cap)
{
    void *socks[5 + 2 * SM_PEERS_MAX];
    size_t ns = 0;
    items[ns++] = (zmq_pollitem_t) { NULL, self->in_fd, ZMQ_POLLIN, 0 };   /* requests */
    size_t nsock = self->mesh ? sm_mesh_sockets(self->mesh, socks, cap - ns - 1) : 0;
    for (size_t i = 0; i < nsock; i++)
        items[ns++] = (zmq_pollitem_t) { socks[i], 0, ZMQ_POLLIN, 0 };
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
    int rc = s_thread_start(self);
    atomic_store(&self->start_err, rc);
    atomic_store(&self->bound, true);
    if (rc != 0) {
        s_syncer_stop(self);
        sm_ledger_defer_sync(self->opts.ledger, false);
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
        size_t n = s_take(self, batch, batch_max, &stop);
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
        size_t ns = s_poll_items(self, items, ITEMS_MAX);
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
    self->in_fd = -1;
    pthread_mutex_init(&self->in_lock, NULL);
    pthread_mutex_init(&self->peers_lock, NULL);
    pthread_mutex_init(&self->sync_lock, NULL);
    pthread_cond_init(&self->sync_cond, NULL);
    if (opts->mesh) {
        self->mesh_opts = *opts->mesh;
        self->opts.mesh = &self->mesh_opts;
    }
    self->in_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->in_fd < 0) {
        *err = SM_EIO;
        goto fail;
    }
    self->zctx = zmq_ctx_new();        /* the mesh's sockets */
    if (!self->zctx) {
        *err = SM_ENOMEM;
        goto fail;
    }
    if (pthread_create(&self->thread, NULL, s_thread, self) != 0) {
        *err = SM_ENOMEM;
        goto fail;
    }
    self->started = true;
    /* Wait (bounded) for the thread to be ready (or to have failed). */
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
        /* After everything queued before it: those are answered first. */
        if (s_inbox_push(self, NULL, NULL) != 0) {
            sm_log_error("core: cannot ask the core thread to stop");
            abort();
        }
        pthread_join(self->thread, NULL);
    }
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    if (self->in_fd >= 0)
        close(self->in_fd);
    pthread_mutex_destroy(&self->in_lock);
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
    pthread_mutex_init(&self->lock, NULL);
    atomic_init(&self->refs, 1);
    return self;
}

/*  The owner lets go: answers still to come are dropped by the core, which
    frees the client with the last of them.                                  */
void
sm_core_client_destroy(sm_core_client **self_p)
{
    assert(self_p);
    sm_core_client *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    self->closed = true;
    self->len = 0;
    pthread_mutex_unlock(&self->lock);
    s_client_unref(self);
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
    atomic_fetch_add(&self->refs, 1);      /* until its answer */
    /* Queued even if the wake-up's write fails: the core's next turn (its
       timers wake it within a second) takes it. */
    if (s_inbox_push(self->core, req, self) != 0)
        sm_log_warn("core: cannot wake the core thread: %s", strerror(errno));
    return 0;
}

sm_core_req *
sm_core_done(sm_core_client *self)
{
    assert(self);
    sm_core_req *req = NULL;
    pthread_mutex_lock(&self->lock);
    if (self->len) {
        req = self->done[self->head];
        self->head = (self->head + 1) % SM_CORE_QUEUE_MAX;
        self->len--;
    }
    pthread_mutex_unlock(&self->lock);
    return req;
}
