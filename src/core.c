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
#define SM__CORE_ROUTING_MAX 256u    /* bytes of a ROUTER identity frame */

struct sm_core {
    sm_core_opts opts;
    void *zctx;                /* owned */
    char endpoint[64];
    pthread_t thread;
    bool started;
    atomic_bool bound;         /* the thread has bound its ROUTER */
    atomic_uint queued;        /* submitted, not yet answered */
};

struct sm_core_client {
    sm_core *core;
    void *sock;                /* DEALER */
};

typedef struct {
    uint8_t routing[SM__CORE_ROUTING_MAX];
    size_t routing_len;
    sm_core_req *req;
} s_pending;

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
}

/*  Append every request of the batch and commit once.                      */
static void
s_run_batch(sm_core *self, s_pending *batch, size_t n)
{
    sm_ledger *ledger = self->opts.ledger;
    uint64_t start_ns = s_mono_ns();
    int rc = sm_ledger_begin(ledger);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        sm_core_req *req = batch[i].req;
        req->seq = 0;
        req->rc = rc != 0 ? rc : sm_ledger_append(ledger, &req->body, s_now_ms(), &req->seq);
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
        if (rc != 0 && (req->rc == 0 || req->rc == SM_EEXIST))
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
    sm_metrics *m = self->opts.metrics;
    if (m) {
        sm_metrics_add(m, SM_METRIC_COMMITS, rc == 0);
        sm_metrics_add(m, SM_METRIC_ENTRIES_APPENDED, ok);
        sm_metrics_add(m, SM_METRIC_SALES, sales);
        sm_metrics_add(m, SM_METRIC_WRITES_REFUSED, n - ok);
        if (rc == 0)
            sm_metrics_commit_ns(m, done_ns - start_ns);
    }
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

static void *
s_thread(void *arg)
{
    sm_core *self = arg;
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
        abort();   /* an inproc bind fails only on a bug or out of memory */
    }
    uint32_t batch_max = self->opts.batch_max ? self->opts.batch_max : SM_CORE_BATCH_MAX;
    s_pending *batch = calloc(batch_max, sizeof *batch);
    assert(batch);
    atomic_store(&self->bound, true);
    bool stop = false;
    uint64_t next_sweep_ms = s_now_ms() + SM__CORE_SWEEP_MS;
    while (true) {
        size_t n = 0;
        int rc = 0;
        while (n < batch_max && (rc = s_recv(router, &batch[n], &stop)) == 1) {
            if (batch[n].req)
                n++;
        }
        if (rc < 0)
            sm_log_warn("core: bad request message: %s", sm_strerror(rc));
        if (n > 0) {
            s_run_batch(self, batch, n);
            for (size_t i = 0; i < n; i++)
                s_answer(self, router, &batch[i]);
        }
        bool changed = n > 0;
        uint64_t now_ms = s_now_ms();
        if (now_ms >= next_sweep_ms) {
            changed = s_sweep_holds(self) || changed;
            next_sweep_ms = now_ms + SM__CORE_SWEEP_MS;
        }
        if (changed && self->opts.wake)
            self->opts.wake(self->opts.wake_arg);
        if (n == batch_max)
            continue;              /* more may be queued */
        if (stop)
            break;
        zmq_pollitem_t item = { router, 0, ZMQ_POLLIN, 0 };
        long wait_ms = next_sweep_ms > now_ms ? (long) (next_sweep_ms - now_ms) : 0;
        if (zmq_poll(&item, 1, wait_ms) < 0 && errno != EINTR) {
            sm_log_error("core: poll failed: %s", zmq_strerror(errno));
            break;
        }
    }
    free(batch);
    zmq_close(router);
    return NULL;
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
