/*  The write policy: what this node appends, when (README,
    "Architecture").

    One module decides every write the node makes and owns every write
    transaction of its ledger; it has no I/O and no clock of its own (time
    comes in as arguments), so the node's core thread (core.c) and the
    simulator's nodes (sim/node.c) drive the same code:

    - a shopper's limits: a hold (not uncapped) with a device or client
      tag is checked, just before it is appended, against the [holds]
      per_device and per_address limits (opts.hold_limits) over this
      stall's open holds (tally.h), the same batch's too; the web thread's
      earlier check cannot see those.  So is a hold the engine appends for
      another node;
    - first-come caps: a hold (not uncapped) with a line of a live
      first-come drop's sku at this stall is checked, just before it is
      appended, against the drop's tallies (tally.h), which count every
      entry appended before it, the same batch's too; so is a hold the
      engine appends for another node (HOLD_ASK);
    - batching and answering: local writes are appended in one ledger batch
      and committed once (group commit); each is answered (opts.answer) only
      after the commit, or with its refusal; a failed commit fails every
      write of the batch that had succeeded;
    - parking: a sale (never a hold) refused for want of units here (SM_ENOSTOCK)
      asks the peers for what it lacks (sm_gossip_ask_units) and waits,
      up to opts.units_wait_ms, for their stock.move; it is retried when the
      units have arrived or the wait is over, and answered then;
    - forwarding: a hold (or, at a mirror, a raffle entry) to append at
      another stall (write.forward) is asked of that stall (HOLD_ASK,
      ENTRY_ASK) and answered with its HOLD_DONE (ENTRY_DONE), or
      SM_ETIMEOUT after SM_HOLD_FWD_WAIT_MS; nothing is appended here;
    - the hold sweep: each tick, this node's expired holds are released (a
      release entry each, one commit);
    - rebalancing: every SM_POLICY_REBALANCE_TICKS ticks, for each sku this
      stall holds fewer than opts.rebalance_floor of while other stalls hold
      some, the peers are asked for the difference (they keep their own
      units_floor, so none goes below it);
    - a mirror (opts.mirror, run --mirror): local writes are refused with
      SM_EREADONLY (forwarded holds and entries go on), the engine is never
      made writable (it answers no UNITS_ASK, HOLD_ASK or ENTRY_ASK with
      entries of its own) and there is no rebalancing;
    - the own-log gate (own-log recovery): until this node's own log is
      confirmed whole, local writes are refused with SM_ERECOVERING and the
      engine appends nothing for peers (sm_gossip_set_writable).  A store
      without a confirmed copy (wiped) waits until its peers have sent its
      log back; a confirmed one (maybe an older copy restored from a backup)
      checks its head with its peers, for up to SM_OWN_CHECK_MS if none
      answers.  Either way the gate does not rest on the first peer that
      answers alone: from the first HEADS it keeps gathering the other
      peers' for SM_POLICY_OWN_GATHER_MS and goes by the highest seq of this
      node's log any of them claims (then fetches up to it), so a peer that
      holds less of the log than another cannot open the gate early;
    - rounds of ingest: what the engine receives from peers is applied
      inside one ledger batch a round (at most SM_POLICY_ROUND_MSGS_MAX
      messages), committed before anything the round caused is sent.

    Commit before relay.  Nothing the engine queued may leave the node
    before what was appended or ingested on the way is durable: a local
    entry sent and then lost in a crash would have its seq reissued (a
    fork).  This module is the only place that commits, and it tells the
    engine of local entries (sm_gossip_local) only after their commit; the
    caller drains the engine (sm_gossip_next) only after a call into this
    module returned, never in the middle of a round (sm_policy_receive
    says when what is queued may go).  After a round fails to commit, what
    the engine queued is discarded and every session starts again.

    Single-threaded: every call on the thread that owns the ledger's writes.
    Times: `now_ms` is the wall clock (entries' timestamps, hold expiries,
    the engine's timers), `mono_ms` a monotonic clock (the policy's own
    waits), so a wall clock stepped back cannot stretch a wait.               */
#ifndef SM_POLICY_H
#define SM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "drop.h"
#include "gossip.h"
#include "metrics.h"
#include "reserve.h"
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"

#define SM_POLICY_PARKED_MAX       64u     /* writes waiting for units or a stall's answer */
#define SM_POLICY_SWEEP_MAX        256u    /* holds released in one sweep */
#define SM_POLICY_REBALANCE_TICKS  10u     /* ticks between rebalancing rounds */
#define SM_POLICY_REBALANCE_SKUS   16u     /* skus asked for in one round */
#define SM_POLICY_ROUND_MSGS_MAX   16u     /* peers' messages one ingest batch holds */
#define SM_POLICY_OWN_GATHER_MS    1500u   /* own-log gate: other peers' HEADS awaited
                                              after the first */

/*  One write.  The caller fills body (and forward, at, tag); the policy
    fills rc, seq and the refusals (hold_why, drop_why) before it hands the
    write back to opts.answer.                                               */
typedef struct {
    sm_body body;              /* the entry; a forwarded hold's expires_ms is
                                  set from the stall's answer */
    bool forward;              /* a hold or raffle entry (only) for stall `at`
                                  to append on its own log: seq is then of at's log.
                                  SM_EUNREACHABLE: `at` is not in session;
                                  SM_ETIMEOUT: no answer in SM_HOLD_FWD_WAIT_MS */
    sm_id at;
    bool uncapped;             /* a hold by the stall's own staff (a token):
                                  not held to a shopper's limits nor to a
                                  first-come drop's caps */
    int rc;                    /* 0, SM_EEXIST (a repeated external id: seq is
                                  the first sale's), or the refusal */
    sm_reserve_refusal hold_why;   /* a hold refused by a shopper's limits
                                  (SM_EHOLDLIMIT): which; else limit NULL */
    sm_drop_refusal drop_why;  /* a hold refused by a first-come drop's caps
                                  (SM_EDROPLIMIT, or SM_ENOSTOCK: sold out):
                                  which drop and cap; else limit NULL */
    uint64_t seq;
    uint64_t hlc;              /* the appended entry's hybrid time (0: none
                                  appended here), so its answer need not read
                                  it back */
    void *tag;                 /* the caller's; never touched */
} sm_policy_write;

/*  A write is done: durable, or refused.  `w` is borrowed for the call.    */
typedef void (*sm_policy_answer_fn)(void *arg, sm_policy_write *w);

typedef struct {
    sm_ledger *ledger;         /* borrowed; this module is its only writer */
    sm_id node;                /* this node */
    sm_gossip *gossip;         /* borrowed; NULL = no mesh (one stall alone) */
    sm_metrics *metrics;       /* borrowed; may be NULL */
    sm_policy_answer_fn answer;
    void *answer_arg;
    uint32_t units_wait_ms;    /* 0 = SM_UNITS_WAIT_MS */
    uint32_t rebalance_floor;  /* 0 = no rebalancing */
    sm_reserve_limits hold_limits; /* [holds]: per_device and per_address are
                                  checked at append; 0 = each default */
    bool allow_fresh;          /* append at once even if the own log is not
                                  confirmed (--allow-fresh) */
    bool peers_known;          /* there are peers to check a confirmed own log
                                  with (else it appends at once) */
    bool mirror;               /* a read-only mirror (run --mirror): never
                                  appends to its own log: local writes are
                                  refused SM_EREADONLY (forwarded holds and
                                  entries go on), the engine is never made writable and
                                  there is no rebalancing */
} sm_policy_opts;

/*  What the policy did (for the simulator's counters and tests).           */
typedef struct {
    uint64_t parked;           /* writes parked to wait for units */
    uint64_t forwarded;        /* holds and entries forwarded to another stall */
    uint64_t holds_expired;    /* holds released by the sweep */
    uint64_t rebalance_asks;   /* units asked for by rebalancing */
    uint64_t rounds_failed;    /* ingest rounds whose commit failed */
} sm_policy_counters;

typedef struct sm_policy sm_policy;

/*  Read the own-log state from the ledger and set the gate (and the
    engine's writability).  NULL and *err on failure.                        */
sm_policy *sm_policy_new(const sm_policy_opts *opts, uint64_t mono_ms, int *err);
/*  Parked writes are dropped unanswered (the caller is going away).        */
void sm_policy_destroy(sm_policy **self_p);

/*  Append w[0..n) in one batch and commit once.  Each write is answered
    (opts.answer, before this returns) unless it was parked or forwarded;
    those are answered by a later call.  Returns true if anything was
    committed (the engine has been told: drain it).                         */
bool sm_policy_batch(sm_policy *self, sm_policy_write *w, size_t n, uint64_t now_ms,
                     uint64_t mono_ms);

/*  Something may have changed (entries arrived, time passed): move the
    own-log gate; retry parked writes whose units came or whose wait is
    over; answer forwarded holds.  Returns true if anything was appended.  */
bool sm_policy_step(sm_policy *self, uint64_t now_ms, uint64_t mono_ms);

/*  The periodic work (once a second): the hold sweep and rebalancing.
    Returns true if anything was appended.                                  */
bool sm_policy_tick(sm_policy *self, uint64_t now_ms, uint64_t mono_ms);

/*  A message from peer `from` for the engine, applied in the round's batch
    (opened here if none is).  *durable is set true when the round was
    committed on the way (SM_POLICY_ROUND_MSGS_MAX): what the engine queued
    may be sent now.  Returns the engine's code (sm_gossip_receive).        */
int sm_policy_receive(sm_policy *self, const sm_id *from, const uint8_t *msg, size_t len,
                      uint64_t now_ms, bool *durable);
/*  Commit the round's batch, if one is open.  Call it before draining the
    engine.                                                                  */
void sm_policy_round_end(sm_policy *self, uint64_t now_ms);

/*  The own-log gate.  Enable opens it by hand (a store created a moment
    ago, which has no older copy to fear).                                   */
bool sm_policy_own_ok(const sm_policy *self);
void sm_policy_own_enable(sm_policy *self);

/*  Writes parked or forwarded and not yet answered.                        */
size_t sm_policy_pending(const sm_policy *self);
/*  The earliest monotonic time at which sm_policy_step has work of its own
    (a wait over, the gate's window); UINT64_MAX when none.                 */
uint64_t sm_policy_next_ms(const sm_policy *self);

void sm_policy_stats(const sm_policy *self, sm_policy_counters *out);

#endif
