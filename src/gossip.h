/*  The mesh protocol engine, sans I/O (proto/mesh.md; README: architecture).

    The engine knows peers by node id, not by socket.  It takes events —
    a peer became reachable or unreachable, a message arrived from a peer,
    local entries were committed, time passed — and produces messages to
    send, which the transport (mesh.c; in the simulator, a simulated network)
    drains with sm_gossip_next.  It reads no clock and draws no randomness:
    time comes in as now_ms.  It reads and ingests through the ledger, on the
    thread that owns the ledger's writes (the core thread).

    What it does:
    - on a peer up: HELLO, then HEADS (every origin's seq and link hash) and
      PEERS (the endpoints it knows; again every SM_PEERS_RESEND_MS and
      when they change);
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
      it appends a stock.move to the asker (the node the ask names, maybe
      several hops away) and answers UNITS_GIVE; what it cannot cover it
      asks its other peers for while the ask has hops left, and answers
      once they have (proto/mesh.md 7.7); sm_gossip_ask_units sends asks
      and reports what was given;
    - HOLD_ASK (a shopper at a peer's stall holds units this stall holds):
      a hold entry appended on this node's own log, pushed, and answered
      HOLD_DONE with its seq and expiry or the refusal (proto/mesh.md 7.9);
      sm_gossip_ask_hold sends one and sm_gossip_hold_result reads the answer.
    - ENTRY_ASK (a viewer at a mirror enters this stall's raffle): a
      raffle.entry appended on this node's own log, pushed, and answered
      ENTRY_DONE with its seq or the refusal (proto/mesh.md 7.10);
      sm_gossip_ask_entry sends one, read as a hold's answer.

    Durability rule: nothing the engine queued may be sent before what it
    ingested or appended on the way is committed (a local entry must never
    leave the node before it is durable: a crash would reissue its seq, a
    fork).  A caller may wrap a round of engine calls in one ledger batch on
    its own thread (the engine then reads its writes through the batch,
    ledger.h) if it drains sm_gossip_next only after the commit, and after a
    failed commit discards what was queued and starts every session again
    (sm_gossip_peer_up on each peer); mesh.c does, so a catch-up commits
    once a round, not once a run.  Without a batch each call commits on its
    own.  The core calls sm_gossip_local after committing its own batches.

    Per-peer state is bounded (SM_PEERS_MAX peers, SM_MESH_QUEUE_BYTES_MAX
    of queued messages a peer).  A peer whose messages are malformed is
    reported through sm_gossip_stats and may be dropped by the transport.

    What the transport must do (and the simulator does):
    - call sm_gossip_peer_up once a peer's connection is authenticated and
      before handing over its first message; sm_gossip_peer_down when the
      connection is lost.  A second peer_up while up starts a new session
      (HELLO again, everything known about the peer forgotten);
    - deliver each peer's messages in the order they were sent (one FIFO a
      peer and direction, as a ZeroMQ connection is) and drop as little as
      it can: a message lost or reordered anyway is repaired (a HELLO is
      repeated, anti-entropy refetches within a HEADS interval or two, an
      unanswered WANT expires after SM_WANT_TIMEOUT_MS), except that a lost
      UNITS_ASK or UNITS_GIVE only costs that sale its wait (a forwarder
      answers at its deadline), and a lost HOLD_ASK or HOLD_DONE that hold
      (the caller's deadline answers it; a hold made anyway expires);
    - after every call into the engine (or its round's commit, above),
      drain sm_gossip_next (or sm_gossip_next_to for one peer) and send each
      message to its destination; messages for a peer that went down are
      discarded by the engine;
    - call sm_gossip_tick at least every few hundred ms with the same clock
      it passes everywhere else: the wall clock (the ledger's timestamps come
      from it).  It may step; after a step back the engine's timers restart
      from the new time at the next tick rather than wait out the step;
    - call sm_gossip_local after each committed batch of local appends.

    Session: on peer_up the engine sends HELLO, and again each HEADS
    interval (in tick) until the peer's HEADS show it arrived.  HEADS, PEERS
    and any fork evidence it holds follow once the peer's HELLO has been
    checked (same market, same protocol version, node = the authenticated
    id), so nothing of the market goes to a node of another one.  Until its
    HELLO arrives a peer's other messages are refused; a peer whose HELLO
    was refused is ignored (sm_gossip_peer.refusal) until it reconnects.
    proto/mesh.md section 7 describes the behaviour in full.                 */
#ifndef SM_GOSSIP_H
#define SM_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"
#include "reserve.h"
#include "wire.h"

typedef struct {
    sm_ledger *ledger;         /* borrowed; written only from the caller's thread */
    sm_id self;                /* this node */
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1]; /* where peers reach this node ("" if none) */
    uint32_t units_floor;      /* UNITS_ASK leaves at least this many here */
    uint32_t units_per_min;    /* units one member may get here by UNITS_ASK a
                                  minute; 0 = SM_UNITS_PER_MIN_DEFAULT */
    uint64_t heads_interval_ms; /* 0 = SM_HEADS_INTERVAL_MS */
    uint32_t hold_ttl_s;       /* a hold a peer asks for (HOLD_ASK) lasts this
                                  long; 0 = SM_HOLD_TTL_S_DEFAULT */
    sm_reserve_limits hold_limits; /* what a forwarded hold may take (reserve.h) */
} sm_gossip_opts;

typedef struct {
    sm_id node;
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1];
    bool up;
    uint64_t last_seen_ms;     /* last message from it; 0 = never */
    uint64_t entries_behind;   /* entries it lacks that this node has (from its HEADS) */
    uint64_t entries_received, entries_sent;
    uint64_t refused;          /* messages or entries refused from it */
    int refusal;               /* 0, or why its HELLO was refused (SM_EMARKET,
                                  SM_EVERSION, SM_EINVAL): ignored until it reconnects */
    int run_refusal;           /* 0, or why the ledger last refused a run from it */
    sm_id run_refusal_origin;  /* ... of which origin */
    uint64_t run_refusal_seq;  /* ... at which seq */
    uint32_t wants_in_flight;  /* WANTs sent to it and not yet answered */
    size_t queued_bytes;       /* messages to it not yet taken by the transport */
} sm_gossip_peer;

/*  Counters since sm_gossip_new (for /metrics and tests).                   */
typedef struct {
    uint64_t messages_received;  /* accepted messages */
    uint64_t messages_refused;   /* malformed, out of session, from a refused peer */
    uint64_t messages_sent;      /* taken by the transport */
    uint64_t messages_dropped;   /* repairable messages dropped from a full queue */
    uint64_t hellos_refused;     /* another market, version, or a node id not its own */
    uint64_t entries_accepted;   /* newly stored by ingest */
    uint64_t entries_refused;    /* runs the ledger refused (at least in part) */
    uint64_t entries_sent;
    uint64_t runs_early;         /* runs that began past the log's head: dropped */
    uint64_t wants_sent, wants_expired;
    uint64_t forks;              /* fork evidence learned (detected or received) */
    uint64_t damaged_origins;    /* origins found damaged while serving them */
} sm_gossip_counters;

typedef struct sm_gossip sm_gossip;

/*  A new engine over opts->ledger, which must already belong to a market
    (SM_ENOMARKET otherwise).  The engine holds no clock and draws no
    randomness: everything it does is a function of the calls it receives.  */
sm_gossip *sm_gossip_new(const sm_gossip_opts *opts, int *err);
void sm_gossip_destroy(sm_gossip **self_p);

/*  Connectivity, as the transport sees it (a CURVE handshake with a roster
    member's key, or its loss).  `endpoint` may be NULL when unknown.        */
void sm_gossip_peer_up(sm_gossip *self, const sm_id *node, const char *endpoint,
                       uint64_t now_ms);
void sm_gossip_peer_down(sm_gossip *self, const sm_id *node, uint64_t now_ms);

/*  A message from `from` (already authenticated by the transport).  Returns
    0 or the decode / protocol error (the message is dropped; state is
    unchanged by a refused message).  SM_ESTATE: the peer is not up, has not
    sent its HELLO yet, or was refused.  Entries the ledger refuses inside a
    well-formed ENTRIES are counted, not returned (the message was handled);
    a ledger failure that is not a refusal (SM_ENOSPC, SM_EIO, SM_ENOMEM)
    is returned so the caller can stop.                                       */
int sm_gossip_receive(sm_gossip *self, const sm_id *from, const uint8_t *msg,
                      size_t len, uint64_t now_ms);

/*  Local entries were committed: push them.                                */
void sm_gossip_local(sm_gossip *self, uint64_t now_ms);

/*  Time passed: periodic HEADS, expiry of unanswered WANTs and asks.       */
void sm_gossip_tick(sm_gossip *self, uint64_t now_ms);

/*  The next message to send: its destination and bytes (borrowed until the
    next call into the engine).  False when none is queued.  Peers are
    served in turn (round robin), each peer's messages in order.  Queues are
    bounded: past SM_MESH_QUEUE_BYTES_MAX for one peer, the oldest
    repairable messages (HEADS, then PEERS, then pushed ENTRIES, then
    answered ENTRIES) are dropped; anti-entropy refills what they carried.  */
bool sm_gossip_next(sm_gossip *self, sm_id *to, const uint8_t **msg, size_t *len);
/*  The same for one peer only (a transport whose socket to it is writable). */
bool sm_gossip_next_to(sm_gossip *self, const sm_id *to, const uint8_t **msg,
                       size_t *len);

/*  Ask the peers that are up for `qty` units of `sku` for a local sale or
    hold; `req_id` identifies the ask.  The peers this node's ledger shows
    holding units are asked first, most units first, each for what it holds
    until qty is covered; if they do not cover it, every other peer is asked
    for the rest (so more than qty may come).  Peers that cannot cover what
    they are asked for ask theirs, up to SM_UNITS_HOPS_MAX hops away; the
    units come as stock.move entries by relay, ahead of the answer.  Answers arrive as UNITS_GIVE and
    their stock.move entries; sm_gossip_units_given tells how many units
    have been given so far for req_id (the moves may arrive a little later:
    the ledger's units are the truth).  Returns 0 (at least one peer was
    asked), SM_ENOTFOUND (no peer is in session: nothing was asked or
    recorded), SM_EINVAL (sku or qty), SM_EEXIST (req_id open) or SM_EBUSY
    (SM_UNITS_ASKS_MAX open).  An ask is forgotten at sm_gossip_ask_done or
    SM_UNITS_ASK_TTL_MS after it was made.                                   */
int sm_gossip_ask_units(sm_gossip *self, uint64_t req_id, const char *sku,
                        uint32_t qty, uint64_t now_ms);
uint32_t sm_gossip_units_given(sm_gossip *self, uint64_t req_id);
void sm_gossip_ask_done(sm_gossip *self, uint64_t req_id);

/*  Forward a shopper's hold of `qty` units of `sku` to peer `at`, which
    appends it on its own log (the units are held there, picked up there).
    `req_id` is the caller's id for it.  Returns 0 (HOLD_ASK queued),
    SM_EINVAL (sku, qty, or `at` is this node), SM_ENOTFOUND (`at` is not
    in session, or its queue is full: nothing recorded), SM_EEXIST (req_id
    open) or SM_EBUSY (SM_HOLD_FWDS_MAX open).  sm_gossip_hold_result is
    true once `at` answered: *code 0 with the hold's *seq on at's log and
    its *expires_ms, or the refusal (SM_ENOSTOCK, SM_ENOSKU, SM_EBUSY, ...).
    A forwarded hold is forgotten at sm_gossip_hold_forget or
    SM_UNITS_ASK_TTL_MS after it was made; an answer after that (or for an
    unknown id, or from another peer) is ignored.  No answer comes if `at`
    goes down first: the caller's own deadline decides (the hold may then
    exist at `at`, and expires there).                                       */
int sm_gossip_ask_hold(sm_gossip *self, uint64_t req_id, const sm_id *at,
                       const char *sku, uint32_t qty, uint64_t now_ms);
/*  As sm_gossip_ask_hold for a hold body of one or more lines (held whole
    or not at all there), carrying its pickup code and its shopper's tags
    (the answerer budgets and limits per shopper).                          */
int sm_gossip_ask_hold_for(sm_gossip *self, uint64_t req_id, const sm_id *at,
                           const sm_body *hold, uint64_t now_ms);
/*  Forward a raffle entry (a body of kind SM_KIND_RAFFLE_ENTRY: the drop
    and the entrant's tags) to peer `at`, which appends it on its own log
    (ENTRY_ASK, proto/mesh.md 7.10).  Returns and lifetime as
    sm_gossip_ask_hold; sm_gossip_hold_result then gives the entry's *seq
    on at's log (*expires_ms 0) or the refusal (SM_EENTERED,
    SM_EDROPCLOSED, SM_EDROP, SM_ENODROP, SM_EBUSY, ...), and
    sm_gossip_hold_forget forgets it.  Holds and entries share req_ids.   */
int sm_gossip_ask_entry(sm_gossip *self, uint64_t req_id, const sm_id *at,
                        const sm_body *entry, uint64_t now_ms);
bool sm_gossip_hold_result(sm_gossip *self, uint64_t req_id, int *code,
                           uint64_t *seq, uint64_t *expires_ms);
void sm_gossip_hold_forget(sm_gossip *self, uint64_t req_id);

/*  Endpoints learned (config, join token, PEERS): `cb` for each, so the
    transport can connect.  Returns after all or when cb returns non-zero.   */
typedef int (*sm_gossip_peer_fn)(const sm_gossip_peer *peer, void *arg);
int sm_gossip_peers_each(sm_gossip *self, sm_gossip_peer_fn cb, void *arg);
/*  Add an endpoint from config or the command line (kept: never evicted by
    endpoints learned from PEERS).  SM_EINVAL (self, or endpoint empty or too
    long), SM_EBUSY (SM_PEERS_MAX peers, none evictable).                     */
int sm_gossip_add_peer(sm_gossip *self, const sm_id *node, const char *endpoint);

/*  The counters.                                                            */
void sm_gossip_stats(sm_gossip *self, sm_gossip_counters *out);

/*  Own-log recovery: true once some peer's HEADS have been received and
    this node's own log is at least at the seq those peers reported for it
    (so a node whose store was wiped has fetched its own entries back).
    The core refuses local appends until then, unless the store says its
    head is already confirmed or --allow-fresh was given.                    */
bool sm_gossip_own_recovered(sm_gossip *self);

/*  True once any peer's HEADS have arrived (this node's own head is then
    compared with what that peer holds of it).                              */
bool sm_gossip_heads_heard(sm_gossip *self);

/*  Whether this node may append to its own log (answer UNITS_ASK with a
    stock.move, HOLD_ASK with a hold).  False from sm_gossip_new until the
    caller, which owns the own-log gate (a wiped store fetching its log
    back, a restored one checking it with peers), says it may.               */
void sm_gossip_set_writable(sm_gossip *self, bool writable);

/*  A check of a hold the engine is about to append for another node
    (HOLD_ASK), after the shopper limits: 0, or the refusal (SM_EDROPLIMIT
    is answered as SM_EHOLDLIMIT).  The write policy sets it (a shopper's
    per_device and per_address limits over the holds appended before it, a
    live first-come drop's caps); none is set: no such check.               */
typedef int (*sm_gossip_hold_check_fn)(void *arg, const sm_body *hold, uint64_t now_ms);
void sm_gossip_set_hold_check(sm_gossip *self, sm_gossip_hold_check_fn fn, void *arg);

#endif
