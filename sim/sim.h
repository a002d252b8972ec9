/*  The deterministic simulator (README: architecture): one process runs a
    whole market — N nodes, each a real sm_ledger (LMDB in a temporary
    directory) and a real sm_gossip engine under a small local core that does
    what src/core.c does (group commit, the own-log gate, units asks for
    short sales, the hold sweep) — over a simulated network and clock.  All
    randomness comes from one seed, so any run replays exactly: a run hashes
    every event it processes and every message it delivers into a trace
    digest, printed at the end, and the same seed gives the same digest.

    Modules (one noun each):
      main.c      the command line: seeds, summary, the replay command
      world.c     the world: the event queue, the network, the faults, phases
      node.c      one node: store, engine, its core (batches, parking, sweep),
                  crash, restart, restore of an old copy
      workload.c  what the stall's clients ask for (sales, holds, moves ...)
      hostile.c   the hostile member's forged and abusive messages
      check.c     the invariants, checked during and after each run
      damage.c    the disk-damage fault: a stored entry flipped, refused or
                  repaired, never served

    Everything is single-threaded; nothing reads the real clock.  The prefix
    is sim_ (functions shared between the simulator's files) and s_ (file
    statics).                                                               */
#ifndef SIM_H
#define SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip.h"
#include "policy.h"
#include "stallmesh/entry.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"
#include "wire.h"

#define SIM_NODES_MIN        3
#define SIM_NODES_MAX        20
#define SIM_EPOCH_MS         1767225600000ULL   /* 2026-01-01T00:00:00Z: sim time 0 */
#define SIM_TICK_MS          1000u      /* the core's tick: sweep, mesh tick (core.c) */
#define SIM_OWN_FETCH_QUIET_MS (2u * SM_OWN_WANT_HEDGE_MS + SIM_TICK_MS + 1000u)
#define SIM_QUEUE_MAX        64u        /* client writes waiting for one core */
#define SIM_BATCH_MAX        16u        /* writes a core groups into one commit */
#define SIM_REBALANCE_FLOOR  4u         /* rebalancing floor of the nodes that rebalance */
#define SIM_HOLD_PER_DEVICE  6u         /* [holds] per_device of every node's policy */
#define SIM_HOLD_PER_ADDRESS 9u         /* [holds] per_address */
#define SIM_SKUS             6u
#define SIM_ACKS_MAX         200000u    /* acknowledged sales tracked per run */
#define SIM_FWD_ENTRIES_MAX  4096u      /* forwarded raffle entries tracked per run */
#define SIM_HEAL_MS_MAX      (240u * 1000u) /* liveness: converged this long after healing */
#define SIM_HEAP_BYTES_MAX   (768ULL << 20) /* memory bound of the whole process */
#define SIM_REPLAY_RING      32u        /* messages a link remembers for replays */
#define SIM_HOSTILE_RING     64u        /* messages the hostile member captured */
#define SIM_STORM_PER_NODE_S 400u       /* deliveries a second, per node squared: more is a storm */

/* ---- randomness: splitmix64, one stream a run --------------------------- */

typedef struct {
    uint64_t s;
} sim_rng;

static inline uint64_t
sim_rand(sim_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n); 0 when n is 0. */
static inline uint64_t
sim_below(sim_rng *r, uint64_t n)
{
    return n ? sim_rand(r) % n : 0;
}

/* Uniform in [lo, hi]. */
static inline uint64_t
sim_range(sim_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + sim_below(r, hi - lo + 1);
}

/* True with probability per_mille / 1000. */
static inline bool
sim_chance(sim_rng *r, uint32_t per_mille)
{
    return sim_below(r, 1000) < per_mille;
}

/* ---- faults --------------------------------------------------------------- */

typedef enum {
    SIM_F_LOSS = 0,      /* messages lost, up to 30 % a link */
    SIM_F_DUP,           /* duplicated and replayed, up to 50 % */
    SIM_F_REORDER,       /* a link's messages overtake each other */
    SIM_F_DELAY,         /* slow links and delay spikes */
    SIM_F_PARTITION,     /* splits, links cut and restored, one-way links */
    SIM_F_CRASH,         /* a node's process dies and restarts */
    SIM_F_OFFLINE,       /* a stall offline for hours */
    SIM_F_RESTORE,       /* an old copy of a store restored (forks), or a wipe */
    SIM_F_CLOCK,         /* clocks hours apart, and jumps */
    SIM_F_HOSTILE,       /* a member sending forged and abusive messages */
    SIM_F_DAMAGE,        /* a byte of a stored entry flipped on disk (damage.c) */
    SIM_F_COUNT
} sim_fault;

#define SIM_F_ALL ((1u << SIM_F_COUNT) - 1)

/* Counters of what was injected, by kind (summed over seeds). */
typedef enum {
    SIM_C_LOST = 0, SIM_C_DUPLICATED, SIM_C_REPLAYED, SIM_C_REORDERED,
    SIM_C_DELAYED, SIM_C_SPLITS, SIM_C_CUTS, SIM_C_ONE_WAY, SIM_C_CRASHES,
    SIM_C_TORN_BATCHES, SIM_C_OFFLINE, SIM_C_RESTORES, SIM_C_WIPES,
    SIM_C_CLOCK_JUMPS, SIM_C_HOSTILE_MSGS, SIM_C_FORKS_SEEN,
    SIM_C_DELIVERED, SIM_C_SALES_ACKED, SIM_C_WRITES, SIM_C_WRITES_REFUSED,
    SIM_C_PARKED, SIM_C_HOLDS_EXPIRED, SIM_C_STUCK, SIM_C_RECOVERING,
    SIM_C_HOLDS_FORWARDED, SIM_C_REBALANCE_ASKS, SIM_C_DAMAGED, SIM_C_REPAIRED,
    SIM_C_RESELLS_REFUSED, SIM_C_DRAWS_VERIFIED, SIM_C_DRAWS_VOIDED, SIM_C_COUNT
} sim_counter;

const char *sim_fault_name(int f);
const char *sim_counter_name(int c);
/* Parse "loss,dup,..." / "all" / "none" / "random" into a mask; -1 if bad;
   *random set for "random". */
int sim_faults_parse(const char *text, uint32_t *mask, bool *random);

/* ---- configuration -------------------------------------------------------- */

typedef struct {
    uint64_t seed;
    int nodes;                 /* honest + hostile; 0: each seed draws 3 to 7 */
    uint32_t ticks;            /* seconds of simulated trading under faults */
    uint32_t faults;           /* mask of sim_fault; ignored when random */
    bool faults_random;        /* each seed draws its own mix */
    bool verbose;              /* narrate the run on stderr */
    bool keep;                 /* leave the stores on disk after the run */
    bool strict;               /* known design issues fail the run too */
    const char *argv0;         /* for the replay command */
} sim_config;

/* ---- the world ------------------------------------------------------------ */

/* A client write waiting for a node's core (then the policy's). */
typedef struct {
    sm_body body;
    int op;                    /* sim_op */
    bool forward;              /* a hold for stall `at` to make (SIM_OP_HOLD_FWD) */
    int at;
    uint64_t submitted_ms;     /* sim time */
} sim_req;

typedef struct {
    uint64_t seq;
    uint64_t expires_ms;
} sim_own_hold;

typedef struct sim_node {
    int index;
    bool hostile;
    sm_identity id;
    char dir[320];             /* the store */
    char snap[320];            /* an old copy of the store ("" = none) */
    uint64_t snap_own_head;    /* its own head in that copy */
    sm_ledger *ledger;         /* NULL while the process is down */
    struct sm_snapshot *stock; /* its stock page, rebuilt from what changed */
    struct sm_drop_walks *walks;   /* its drops' walks, kept between checks */
    sm_gossip *gossip;
    sm_policy *policy;         /* the write policy (src/policy.c), as the real core's */
    sm_policy_counters policy_seen;  /* its counters already added to the world's */
    struct sim_world *world;
    bool running;
    uint32_t units_floor;      /* what a units ask leaves here */
    uint32_t rebalance_floor;  /* what its rebalancing keeps here (0 = off) */
    bool restored;             /* its store was restored or wiped: it may equivocate */
    /* After a wipe, its own entries that existed anywhere (link hashes by
       seq, one or two a seq): while its own log is unconfirmed it may only
       fetch these back, never append. */
    sm_hash *wiped_links;      /* [wiped_count][2] */
    uint64_t wiped_count;
    uint64_t wiped_checked;    /* own entries checked so far */
    bool offline;              /* away for hours: links stay cut */
    bool torn_pending;         /* crash in the middle of its next batch */
    int64_t clock_offset_ms;   /* its wall clock minus sim time */
    uint64_t tick_phase_ms;
    uint32_t generation;       /* bumped at every crash: stale events ignored */
    /* its core */
    sim_req queue[SIM_QUEUE_MAX];
    uint32_t nqueue;
    bool wake_pending;
    bool in_batch;             /* answers now are the batch's own */
    /* workload memory: its own acknowledged sales and open holds */
    uint64_t sales[256];
    uint32_t nsales;
    sim_own_hold holds[64];
    uint32_t nholds;
    uint32_t extid_next;
    char last_extid[SM_EXTID_BYTES_MAX + 1];
    sm_body last_sale;         /* for a till's retry */
    bool has_last_sale;
    uint64_t last_sale_seq;    /* what it was acknowledged as (0: not yet) */
    sm_body sold_hold_sale;    /* the last sale of a hold acknowledged: a till
                                  selling it again must be refused */
    bool has_sold_hold;
    uint64_t raffle_seq;       /* its raffle drop waiting for a draw (0: none) */
    /* the organiser's admit of this node, for joining again after a wipe */
    uint8_t admit[SM_ENTRY_BYTES_MAX];
    size_t admit_len;
    uint8_t admit_sig[SM_SIG_BYTES];
} sim_node;

/* One direction of a link. */
typedef struct {
    uint32_t loss_pm;          /* per mille lost */
    uint32_t dup_pm;           /* per mille duplicated */
    uint32_t replay_pm;        /* per mille: an old message sent again too */
    bool reorder;
    uint32_t delay_min_ms, delay_max_ms;
    uint64_t one_way_until;    /* sim ms: everything this way is lost until then */
    uint64_t last_at;          /* FIFO: no delivery before the previous one */
    uint8_t *ring[SIM_REPLAY_RING];   /* recent messages, for replays */
    size_t ring_len[SIM_REPLAY_RING];
    uint32_t ring_next;
} sim_link;

typedef struct sim_world sim_world;

/* Events (the queue orders by time, then by insertion). */
typedef enum {
    SIM_EV_DELIVER = 1, SIM_EV_TICK, SIM_EV_WAKE, SIM_EV_CLIENT, SIM_EV_FAULT,
    SIM_EV_RESTART, SIM_EV_UP, SIM_EV_DOWN, SIM_EV_HOSTILE, SIM_EV_DROP,
    SIM_EV_RECONNECT
} sim_ev_kind;

typedef struct {
    uint64_t at;               /* sim ms */
    uint64_t order;
    int kind;
    int a, b;                  /* nodes (from, to for a delivery) */
    uint32_t gen;              /* node a's generation, or the link's session */
    uint64_t arg;
    uint8_t *bytes;            /* owned (deliveries) */
    size_t len;
} sim_event;

struct sim_world {
    sim_config cfg;
    sim_rng rng;
    uint32_t faults;           /* this run's mix */
    char base[200];            /* temporary directory of the run */
    int n;                     /* nodes */
    int hostile;               /* index of the hostile member, -1 if none */
    sim_node node[SIM_NODES_MAX];
    sm_id market;
    /* network */
    sim_link link[SIM_NODES_MAX][SIM_NODES_MAX];
    bool connected[SIM_NODES_MAX][SIM_NODES_MAX];   /* symmetric */
    uint32_t session[SIM_NODES_MAX][SIM_NODES_MAX]; /* symmetric; bumped at cuts */
    bool sees_up[SIM_NODES_MAX][SIM_NODES_MAX];     /* engine i told j is up */
    uint32_t sees_session[SIM_NODES_MAX][SIM_NODES_MAX]; /* ... in that session */
    bool severed[SIM_NODES_MAX][SIM_NODES_MAX];     /* never connected this run */
    uint32_t slow_reader_bytes; /* the hostile member reads this much a tick; 0 = all */
    /* events */
    sim_event *heap;
    size_t nheap, capheap;
    uint64_t order;
    uint64_t now;              /* sim ms */
    int phase;                 /* sim_phase */
    bool ticks_paused;         /* the relay probe: pushes and relays only */
    /* the trace */
    sm_hasher trace;
    /* bookkeeping for the checks */
    struct sim_ack {
        uint16_t origin;
        uint64_t seq;
        sm_hash lines;         /* hash of (sku, qty, price) of every line */
        sm_hash link;          /* its entry's link hash: the entry itself */
        bool lost;             /* lost: no store holds it any more (restores) */
    } *acks;
    uint32_t nacks;
    uint64_t counters[SIM_C_COUNT];
    /* forwarded holds: handed to an asker's policy (less those it refused
       before asking), and holds its stalls appended for its HOLD_ASKs */
    uint64_t fwd_sent[SIM_NODES_MAX];
    uint64_t fwd_appended[SIM_NODES_MAX];
    /* forwarded raffle entries (ENTRY_ASK), counted as the holds are, and
       the (drop, device) of each entry appended for one: each at most once */
    uint64_t ent_sent[SIM_NODES_MAX];
    uint64_t ent_appended[SIM_NODES_MAX];
    struct sim_fwd_entry {
        sm_id drop_origin;
        uint64_t drop_seq;
        uint8_t device[SM_HOLD_TAG_BYTES];
    } fwd_entries[SIM_FWD_ENTRIES_MAX];
    uint32_t nfwd_entries;
    uint64_t checks_run;
    uint32_t restores_done;    /* stores restored or wiped so far */
    uint64_t delivered_by_type[SM_MSG_TYPE_MAX + 1];
    uint64_t storm_second, storm_count;  /* deliveries in the current second */
    /* the own-log fetch (sim_check_own_fetch), on each node's own clock:
       the seq of node i's own log that j's latest HEADS (accepted by i's
       engine, in their current session) claimed, and when it first claimed
       more than i held; when i last sent a WANT of its own log or was sent
       a run of it (WANTs behind it wait for it); when its own head
       last moved (and to what). */
    uint64_t own_claim[SIM_NODES_MAX][SIM_NODES_MAX];
    uint64_t own_claim_at[SIM_NODES_MAX][SIM_NODES_MAX];
    uint64_t own_want_at[SIM_NODES_MAX];
    uint64_t own_head[SIM_NODES_MAX], own_head_at[SIM_NODES_MAX];
    /* the WANTs node i sent j (every origin) not yet answered, as the
       engine keeps them: an answer to one sent before i's latest own WANT
       is progress (that WANT waits behind it on the FIFO connection) */
    struct sim_want {
        sm_id origin;
        uint64_t from, sent_at;
        uint32_t count;
        bool used;
    } wants[SIM_NODES_MAX][SIM_NODES_MAX][SM_WANTS_IN_FLIGHT_MAX * 2];
    /* scratch */
    sm_wire_space *space;
    sm_wire_msg msg;
    /* the hostile member's capture of what it received */
    uint8_t *captured[SIM_HOSTILE_RING];
    size_t captured_len[SIM_HOSTILE_RING];
    uint32_t captured_next;
    struct sim_damage *damage; /* damage.c's records (NULL until the first) */
    /* the first violation (the run fails) */
    bool failed;
    char failure[512];
};

typedef enum { SIM_PHASE_SETUP = 0, SIM_PHASE_CHAOS, SIM_PHASE_HEAL,
               SIM_PHASE_PROBE, SIM_PHASE_DONE } sim_phase;

/* Workload operations. */
typedef enum {
    SIM_OP_ITEM = 0, SIM_OP_RESTOCK, SIM_OP_MOVE, SIM_OP_SALE, SIM_OP_RETRY,
    SIM_OP_HOLD, SIM_OP_HOLD_SALE, SIM_OP_RELEASE, SIM_OP_RETURN, SIM_OP_ADJUST,
    SIM_OP_DROP, SIM_OP_DROP_SALE, SIM_OP_HOLD_FWD, SIM_OP_HOLD_RESELL,
    SIM_OP_RAFFLE, SIM_OP_DRAW, SIM_OP_COUNT
} sim_op;

extern const char *const sim_skus[SIM_SKUS];

/* world.c */
/* Run one seed: 0 if every invariant held, else 1 (w->failure says why).
   *digest gets the trace digest either way.  Adds to counters[].          */
int sim_run(const sim_config *cfg, sm_hash *digest, uint64_t counters[SIM_C_COUNT],
            char *failure, size_t failure_cap);
void sim_schedule(sim_world *w, uint64_t at, int kind, int a, int b, uint32_t gen,
                  uint64_t arg, uint8_t *bytes, size_t len);
/* Hand every message node i's engine has queued to the network. */
void sim_drain(sim_world *w, int i);
/* Put bytes on the link i->j as node i (the hostile member's injections). */
void sim_send_raw(sim_world *w, int i, int j, const uint8_t *bytes, size_t len);
/* Record a violation (the first one wins) and print it when verbose. */
void sim_fail(sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_trace(sim_world *w, const void *bytes, size_t len);
void sim_trace_u64(sim_world *w, uint64_t v);
void sim_say(sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool sim_link_up(const sim_world *w, int i, int j);
/* 10 while a stall is away for hours (clients and faults slow down), else 1. */
uint64_t sim_pace(const sim_world *w);
/* Node i's process dies (in the middle of a batch if `torn`) and restarts later. */
void sim_crash(sim_world *w, int i, bool torn);

/* damage.c: the disk-damage fault and its invariants (hooks in world.c) */
void sim_damage_fault(sim_world *w);
void sim_damage_on_restart(sim_world *w, sim_node *nd);
void sim_damage_heal(sim_world *w);
void sim_damage_on_deliver(sim_world *w, int from, int to, const uint8_t *bytes, size_t len,
                           bool replay);
void sim_damage_check_final(sim_world *w);
void sim_damage_free(sim_world *w);
/* Node nd runs degraded: its stored log is damaged (until it is repaired). */
bool sim_damage_degraded(const sim_world *w, const sim_node *nd);

/* node.c */
uint64_t sim_node_now(const sim_world *w, const sim_node *nd);
int sim_node_open(sim_world *w, sim_node *nd);
void sim_node_close(sim_world *w, sim_node *nd);
void sim_node_crash(sim_world *w, sim_node *nd, bool torn);
void sim_node_restart(sim_world *w, sim_node *nd);
void sim_node_snapshot(sim_world *w, sim_node *nd);
void sim_node_restore(sim_world *w, sim_node *nd, bool wipe);
void sim_node_submit(sim_world *w, sim_node *nd, const sim_req *req);
void sim_node_wake(sim_world *w, sim_node *nd);
/*  Its own log is checked or back: local writes, and the engine's appends
    for peers, may go on.                                                     */
void sim_node_own_enable(sim_node *nd);
/*  Its own-log gate is open (false while the process is down).            */
bool sim_node_own_ok(const sim_node *nd);
/*  Writes parked or forwarded, not yet answered.                           */
size_t sim_node_pending(const sim_node *nd);
void sim_node_tick(sim_world *w, sim_node *nd);
/*  A message from node `from` for nd's engine, through its policy's ingest
    round, committed before anything is sent; `original`: not a duplicate or
    replay the network made.  Returns the engine's code.                    */
int sim_node_receive(sim_world *w, sim_node *nd, int from, const uint8_t *msg, size_t len,
                     bool original);
/* While nd's own log is unconfirmed after a wipe: it appended nothing. */
void sim_node_check_recovering(sim_world *w, sim_node *nd);
/*  Record every own entry of nd that another store holds, by seq: what
    sim_node_check_recovering accepts while nd fetches its own log back
    (after a wipe, or a repair that cut its own log).                      */
void sim_node_remember_own(sim_world *w, sim_node *nd);
/*  Mark lost every acknowledged sale whose entry no store holds any more
    (after a restore, a wipe or a repair).                                 */
void sim_node_forget_lost_sales(sim_world *w);
/* The link hash of origin's entry at seq in ledger l; SM_ENOTFOUND if none. */
int sim_entry_link(sm_ledger *l, const sm_id *origin, uint64_t seq, sm_hash *out);

/* workload.c */
void sim_workload_client(sim_world *w, sim_node *nd);
void sim_workload_drop(sim_world *w, uint64_t stage);
void sim_workload_answer(sim_world *w, sim_node *nd, const sim_req *req, int rc,
                         uint64_t seq);
void sim_workload_setup(sim_world *w);
/* Join node nd's (empty, open) store to the market with its admit entry. */
int sim_join(sim_world *w, sim_node *nd);

/* hostile.c */
void sim_hostile_act(sim_world *w);
void sim_hostile_capture(sim_world *w, const uint8_t *bytes, size_t len);

/* check.c */
void sim_check_node(sim_world *w, sim_node *nd);
/*  The own-log fetch: a node fetching its own log back (its gate closed)
    never goes more than SIM_OWN_FETCH_QUIET_MS of its clock without
    sending a WANT of its log, receiving a run of it or an answer its WANT
    waits behind, or its head moving, while a peer in session claims more
    of it (the engine hedges a lost WANT to another peer and asks a lone
    peer again well inside the gate, gossip.c s_own_fetch).
    sim_own_fetch_heads records what node j's engine accepted from i (a
    HEADS, a run); sim_own_fetch_sent a message node i sent j.             */
void sim_check_own_fetch(sim_world *w, sim_node *nd);
void sim_own_fetch_heads(sim_world *w, int i, int j, const uint8_t *bytes, size_t len);
void sim_own_fetch_sent(sim_world *w, int i, int j, const uint8_t *bytes, size_t len);
/* The session between i and j started over: what it had in flight is gone. */
void sim_own_fetch_reset(sim_world *w, int i, int j);
void sim_check_model(sim_world *w, sim_node *nd);
/*  The digest a node keeps as it writes (the sum of its records' hashes,
    read by GET /api/state in constant time) is its state's: equal to a
    scan of the state, of the same version.                                  */
void sim_check_digest(sim_world *w, sim_node *nd);
/*  The stock page a node rebuilds from only the items that changed (the
    ledger's change log) is byte for byte the one a build of its whole
    stock view gives.                                                        */
void sim_check_stock_page(sim_world *w, sim_node *nd);
/*  The units a node's kept walks say each drop's holds and sales took (read
    only from where the last walk stopped) are what a walk of the whole log
    says.                                                                     */
void sim_check_drop_walks(sim_world *w, sim_node *nd);
void sim_check_memory(sim_world *w);
bool sim_check_converged(sim_world *w, char *why, size_t cap);
/* The lowest seq node nd holds fork evidence against `origin` at; 0 if none. */
uint64_t sim_fork_at(sim_node *nd, const sm_id *origin);
void sim_check_final(sim_world *w);
/*  Node nd was handed an ask (a HOLD_ASK, ENTRY_ASK or UNITS_ASK) from node `from`
    when its own head was `before`: check what it appended for it.         */
void sim_check_asked(sim_world *w, sim_node *nd, int from, int type, bool original,
                     uint64_t before);
/*  Node nd's policy answered write `b` (its seq) with success, at the
    node's clock: check the drops' invariants on its own log (check.c).   */
void sim_check_drop_write(sim_world *w, sim_node *nd, const sm_body *b, uint64_t seq);
/*  Node nd's policy appended hold `b` (its seq) on its own log: check the
    shoppers' limits over its open holds (check.c).                        */
void sim_check_hold_limits(sim_world *w, sim_node *nd, const sm_body *b, uint64_t seq);
void sim_sales_hash(const sm_line *lines, uint32_t n, sm_hash *out);
/* report_check.c: after healing, the organiser's report equals its sales. */
void sim_check_report(sim_world *w);

#endif
