/*  The mesh transport: ZeroMQ sockets under the protocol engine (proto/mesh.md,
    proto/mesh.md).

    A ROUTER bound on the listen endpoint takes peers' connections; a DEALER
    connects to each peer known by id and endpoint (configuration, the join
    token's organiser endpoints, PEERS from other nodes).  Every socket is
    CURVE with the node's Ed25519 key converted to Curve25519, and a ZAP
    handler (this module, on the same thread) admits a connecting key only if
    it is a current roster member; the handler is bound before the listener
    and closed after it, so the listener never runs without it (fail closed:
    libzmq would otherwise accept any key).  ZMTP heartbeats (1 s, 5 s
    timeout) notice a dead link; libzmq reconnects with backoff (100 ms to
    10 s).  A revoked member's DEALER is closed and the listener recycled,
    which drops its inbound connection; ZAP refuses it from then on.

    With opts.discover.enabled the transport also owns the LAN discovery
    socket (discover.h): it sends this node's beacon from sm_mesh_tick,
    reads the others' in sm_mesh_process, and adds each accepted beacon's
    node and endpoint as a peer, as --peer NODE@ENDPOINT would.

    Transport only: the mesh opens no write transaction.  Each message a
    peer sends goes to the owner's deliver hook (the core hands it to the
    write policy, policy.h, which applies it inside its batch), and what
    the engine queued is sent only when the owner says it is durable (the
    hook's answer, or sm_mesh_flush after the owner committed): commit
    before relay is the policy's rule, stated in policy.c.

    All of it runs on the core thread, which owns the ledger's writes.      */
#ifndef SM_MESH_H
#define SM_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "discover.h"
#include "gossip.h"
#include "metrics.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"

typedef struct {
    sm_id node;
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1];
} sm_mesh_peer_cfg;

/*  A peer's message for the engine, from the transport to its owner, which
    applies it (sm_policy_receive).  True: what the engine queued is durable
    and may be sent now.                                                     */
typedef bool (*sm_mesh_deliver_fn)(void *arg, const sm_id *from, const uint8_t *msg,
                                   size_t len, uint64_t now_ms);

typedef struct {
    sm_ledger *ledger;          /* borrowed */
    sm_identity identity;       /* copied: the CURVE keys come from it */
    sm_metrics *metrics;        /* borrowed; may be NULL */
    char listen[SM_ENDPOINT_BYTES_MAX + 1];    /* "" = no listener */
    char advertise[SM_ENDPOINT_BYTES_MAX + 1]; /* told to peers; "" = none */
    uint32_t units_floor;
    uint32_t units_per_min;     /* a member's units by asking a minute; 0 = default */
    uint32_t hold_ttl_s;        /* holds peers forward here last this long; 0 = default */
    sm_reserve_limits hold_limits; /* [holds] limits for holds peers forward here */
    uint32_t peer_count;
    sm_mesh_peer_cfg peers[SM_PEERS_MAX];
    sm_discover_opts discover; /* LAN beacon (--discover); off unless enabled */
    sm_mesh_deliver_fn deliver; /* NULL: the engine takes messages directly,
                                   each run committed on its own */
    void *deliver_arg;
} sm_mesh_opts;

typedef struct sm_mesh sm_mesh;

/*  Create the sockets in ZeroMQ context `zctx` (on the thread that will use
    them).  NULL and *err (SM_EIO with a log line, e.g. the port is taken).  */
sm_mesh *sm_mesh_new(void *zctx, const sm_mesh_opts *opts, uint64_t now_ms, int *err);
void sm_mesh_destroy(sm_mesh **self_p);

/*  The sockets to poll for input (borrowed; the set changes as peers come
    and go, so ask before each poll).  Returns how many were stored.         */
size_t sm_mesh_sockets(sm_mesh *self, void **socks, size_t cap);
/*  A file descriptor to poll for input as well (the discovery beacon's UDP
    socket), or -1 when there is none.                                       */
int sm_mesh_fd(sm_mesh *self);

/*  Read everything waiting on the sockets and hand each message over
    (opts.deliver).  With a deliver hook, what the engine queued is sent
    only as the hook allows: the owner commits its round, then calls
    sm_mesh_flush.                                                            */
void sm_mesh_process(sm_mesh *self, uint64_t now_ms);
/*  Send what the engine queued (everything it speaks of is durable).      */
void sm_mesh_flush(sm_mesh *self);
/*  Periodic work: heads, peers to connect, revocations, liveness.          */
void sm_mesh_tick(sm_mesh *self, uint64_t now_ms);

sm_gossip *sm_mesh_gossip(sm_mesh *self);

#endif
