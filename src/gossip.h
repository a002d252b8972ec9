/*  The mesh protocol engine, sans I/O (DESIGN §6-§7, proto/mesh.md).

    The engine knows peers by node id, not by socket.  It takes events —
    a peer became reachable or unreachable, a message arrived from a peer,
    local entries were committed, time passed — and produces messages to
    send, which the transport (mesh.c; in the simulator, a simulated network)
    drains with sm_gossip_next.  It reads no clock and draws no randomness:
    time comes in as now_ms.  It reads and ingests through the ledger, on the
    thread that owns the ledger's writes (the core thread).

    What it does:
    - on a peer up: HELLO, then HEADS (every origin's seq and link hash) and
      PEERS (the endpoints it knows);
    - on HEADS: for each origin where the peer is ahead, WANT the gap in
      bounded runs (at most SM_WANTS_IN_FLIGHT_MAX unanswered WANTs per
      peer: flow control, so a day's catch-up never starves local sales);
      where the peer is behind, nothing: it will ask;
    - on WANT: answer ENTRIES from the log, up to SM_WIRE_RUN_MAX entries
      and SM_WIRE_RUN_BYTES_SOFT bytes;
    - on ENTRIES: ingest (links + one signature a run); entries newly
      accepted are pushed on to every other peer known to lack them
      (relay: multi-hop); a refusal is logged and counted, never fatal;
    - on local commits: push the new entries to every peer at once;
    - every SM_HEADS_INTERVAL_MS: HEADS to every peer (anti-entropy);
    - a fork the ledger detects is sent as FORK evidence to every peer; a
      FORK received is checked (both entries must verify) and ingested;
    - UNITS_ASK: if this node has the units to spare (more than its floor),
      it appends a stock.move to the asker and answers UNITS_GIVE;
      sm_gossip_ask_units sends asks and reports what was given.

    Durability rule: the caller never wraps engine calls in a ledger batch,
    so every ingest or append the engine makes is committed before the
    engine reads it back or sends it (a local entry must never leave the
    node before it is durable: a crash would reissue its seq, a fork).  The
    core calls sm_gossip_local after committing its own batches.

    Per-peer state is bounded (SM_PEERS_MAX peers, queues bounded by the
    transport).  A peer whose messages are malformed is reported through
    sm_gossip_stats and may be dropped by the transport.                    */
#ifndef SM_GOSSIP_H
#define SM_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"
#include "wire.h"

typedef struct {
    sm_ledger *ledger;         /* borrowed; written only from the caller's thread */
    sm_id self;                /* this node */
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1]; /* where peers reach this node ("" if none) */
    uint32_t units_floor;      /* UNITS_ASK leaves at least this many here */
    uint64_t heads_interval_ms; /* 0 = SM_HEADS_INTERVAL_MS */
} sm_gossip_opts;

typedef struct {
    sm_id node;
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1];
    bool up;
    uint64_t last_seen_ms;     /* last message from it; 0 = never */
    uint64_t entries_behind;   /* entries it lacks that this node has (from its HEADS) */
    uint64_t entries_received, entries_sent;
    uint64_t refused;          /* messages or entries refused from it */
} sm_gossip_peer;

typedef struct sm_gossip sm_gossip;

sm_gossip *sm_gossip_new(const sm_gossip_opts *opts, int *err);
void sm_gossip_destroy(sm_gossip **self_p);

/*  Connectivity, as the transport sees it (a CURVE handshake with a roster
    member's key, or its loss).  `endpoint` may be NULL when unknown.        */
void sm_gossip_peer_up(sm_gossip *self, const sm_id *node, const char *endpoint,
                       uint64_t now_ms);
void sm_gossip_peer_down(sm_gossip *self, const sm_id *node, uint64_t now_ms);

/*  A message from `from` (already authenticated by the transport).  Returns
    0 or the decode / protocol error (the message is dropped; state is
    unchanged by a refused message).                                          */
int sm_gossip_receive(sm_gossip *self, const sm_id *from, const uint8_t *msg,
                      size_t len, uint64_t now_ms);

/*  Local entries were committed: push them.                                */
void sm_gossip_local(sm_gossip *self, uint64_t now_ms);

/*  Time passed: periodic HEADS, expiry of unanswered WANTs and asks.       */
void sm_gossip_tick(sm_gossip *self, uint64_t now_ms);

/*  The next message to send: its destination and bytes (borrowed until the
    next call into the engine).  False when none is queued.                   */
bool sm_gossip_next(sm_gossip *self, sm_id *to, const uint8_t **msg, size_t *len);

/*  Ask every peer that is up for `qty` units of `sku` for a local sale or
    hold; `req_id` identifies the ask.  Answers arrive as UNITS_GIVE and
    their stock.move entries; sm_gossip_units_given tells how many units
    have been given so far for req_id.                                        */
int sm_gossip_ask_units(sm_gossip *self, uint64_t req_id, const char *sku,
                        uint32_t qty, uint64_t now_ms);
uint32_t sm_gossip_units_given(sm_gossip *self, uint64_t req_id);
void sm_gossip_ask_done(sm_gossip *self, uint64_t req_id);

/*  Endpoints learned (config, join token, PEERS): `cb` for each, so the
    transport can connect.  Returns after all or when cb returns non-zero.   */
typedef int (*sm_gossip_peer_fn)(const sm_gossip_peer *peer, void *arg);
int sm_gossip_peers_each(sm_gossip *self, sm_gossip_peer_fn cb, void *arg);
/*  Add an endpoint from config or the command line.                        */
int sm_gossip_add_peer(sm_gossip *self, const sm_id *node, const char *endpoint);

/*  Own-log recovery: true once some peer's HEADS have been received and
    this node's own log is at least at the seq those peers reported for it
    (so a node whose store was wiped has fetched its own entries back).
    The core refuses local appends until then, unless the store says its
    head is already confirmed or --allow-fresh was given.                    */
bool sm_gossip_own_recovered(sm_gossip *self);

#endif
