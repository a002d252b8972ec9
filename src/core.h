/*  The core thread: the node's only writer (README: architecture).

    The core owns the ledger's write transactions.  Other threads (the web
    thread) hand it writes as sm_core_req through an in-memory queue (an
    eventfd wakes the core; each client has its own list of answers) and get
    each back once it has been durably committed, or refused.  The core
    drains every queued write into one batch (group commit: up to
    SM_CORE_BATCH_MAX a commit), so many tills cost one fsync.  A refused
    write leaves the store unchanged and does not affect the others of its
    batch; an I/O failure (disk full) fails the whole batch and nothing of it
    is acknowledged.

    After each commit the core calls `wake` (from the core thread) so the web
    thread picks up the answers and the changed state.

    What is appended when is decided by the write policy (policy.h), which
    the core drives with the time: group commit, parking a sale (never a
    hold) short of units while the peers are asked for them (bounded), a hold
    (or a mirror's raffle entry) forwarded to another stall
    (sm_core_req.forward: HOLD_ASK or ENTRY_ASK, answered with its HOLD_DONE
    or ENTRY_DONE or after SM_HOLD_FWD_WAIT_MS), the expired-hold sweep
    once a second, rebalancing, and the own-log gate: until the node's own
    log is confirmed whole (ledger.h, own-log recovery) local writes are
    refused with SM_ERECOVERING.  The mesh (mesh.c, gossip.c) runs in the
    same loop: its sockets are polled with the queue's eventfd, and the peers'
    entries are applied by the policy in its own batches, each committed
    before anything it caused is sent.

    This is the only module, with the mesh transport, that includes zmq.h.   */
#ifndef SM_CORE_H
#define SM_CORE_H

#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"
#include "core_req.h"
#include "gossip.h"
#include "mesh.h"
#include "metrics.h"

/*  sm_core_req, one write: core_req.h.                                    */

typedef void (*sm_core_wake_fn)(void *arg);

typedef struct {
    sm_ledger *ledger;         /* borrowed; the core is its only writer */
    sm_id node;                /* this node: whose expired holds it releases */
    sm_metrics *metrics;       /* borrowed; may be NULL */
    sm_core_wake_fn wake;      /* called on the core thread after commits */
    void *wake_arg;
    uint32_t batch_max;        /* 0 = SM_CORE_BATCH_MAX */
    const sm_mesh_opts *mesh;  /* copied; NULL = no mesh (one stall alone) */
    bool allow_fresh;          /* append even if the own log is not confirmed */
    uint32_t units_wait_ms;    /* a sale short of units waits this long for
                                  peers to move some here; 0 = SM_UNITS_WAIT_MS */
    uint32_t rebalance_floor;  /* keep at least this many units of each sku
                                  here, asking peers that have more; 0 = off */
    sm_reserve_limits hold_limits; /* [holds]: the shopper's limits the write
                                  policy checks at append; 0 = each default */
    bool mirror;               /* a read-only mirror (run --mirror): never
                                  appends to its own log (local writes are
                                  refused SM_EREADONLY but forwarded holds
                                  go on; the engine never answers UNITS_ASK
                                  or HOLD_ASK with its own entries) */
} sm_core_opts;

typedef struct sm_core sm_core;
typedef struct sm_core_client sm_core_client;

/*  Create the core and start its thread.  NULL and *err on failure.        */
sm_core *sm_core_new(const sm_core_opts *opts, int *err);
/*  Stop: every write already submitted is committed and answered first,
    then the thread ends.  Safe with NULL and twice.  Destroy the clients
    first.                                                                    */
void sm_core_destroy(sm_core **self_p);

/*  The mesh peers as the core last saw them (any thread; a copy taken under
    a lock).  Returns how many were stored in out[0..cap).                   */
size_t sm_core_peers(sm_core *self, sm_gossip_peer *out, size_t cap);

/*  A submitter's end; one per thread, used only by that thread.            */
sm_core_client *sm_core_client_new(sm_core *core, int *err);
void sm_core_client_destroy(sm_core_client **self_p);

/*  Hand `req` to the core (never blocks).  `req` is taken until it comes
    back from sm_core_done.  SM_EBUSY when SM_CORE_QUEUE_MAX writes wait.    */
int sm_core_submit(sm_core_client *self, sm_core_req *req);
/*  The next answered write (returned to the submitter), or NULL if none
    is ready (never blocks).                                                  */
sm_core_req *sm_core_done(sm_core_client *self);

#endif
