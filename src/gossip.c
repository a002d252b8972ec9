/*  The mesh protocol engine (gossip.h): sans I/O, deterministic.

    All state lives in struct sm_gossip; every behaviour is a function of the
    calls made (events and their now_ms).  Iteration orders are fixed (peer
    slots, then origins in the order this engine first heard of them), so the
    simulator replays a run exactly from its seed.

    What the engine keeps, and why:
    - origins: every origin heard of (the ledger's heads, peers' HEADS and
      runs), at most SM_MEMBERS_MAX, indexed by a small open-addressing
      table; per-origin arrays elsewhere are indexed the same way.
    - per peer and origin, `has`: the highest seq the peer is known to
      store, from its latest HEADS (a HEADS is complete: an origin left out
      is one it has nothing of) and from the runs it sent.  WANTs are
      planned against `has`.  `known`: the same, raised also by what this
      node sent it; pushes are planned against `known` (optimistic: a push
      the peer could not use is repaired when it WANTs after our next HEADS).
    - per peer, the WANTs in flight (at most SM_WANTS_IN_FLIGHT_MAX).  One
      origin is fetched from one peer at a time, in consecutive runs
      pipelined on the same FIFO connection, so runs arrive in order.  A
      WANT is answered by a run from that peer beginning inside it, expires
      after SM_WANT_TIMEOUT_MS, or is cleared when the peer's HEADS say it
      does not have `from` (a peer that cannot serve a WANT answers with its
      HEADS).  After any change — an answer, an accepted run, an expiry, a
      peer down — WANTs are planned again for every peer.  Its own log,
      while it fetches it back, is the exception: a WANT of it unanswered
      for SM_OWN_WANT_HEDGE_MS lets another peer be asked too, and expires
      after twice that (s_own_fetch).
    - per peer, the run length to ask for: SM_WIRE_RUN_MAX, or the length
      of an answer cut short by SM_WIRE_RUN_BYTES_SOFT (doubled again after
      full answers under half that), so that pipelined WANTs are answered
      by contiguous runs rather than runs beginning past a gap.
    - per peer and origin, `stalled`: the ledger refused a run of that
      origin from that peer; no WANT of it to that peer until its next HEADS
      (so a refusal is retried once a HEADS interval, not in a tight loop).
    - fork evidence, one record per origin (the lowest seq wins: it stops
      the origin earliest), passed on once to every other peer and to each
      peer that connects later; evidence that could not be recorded in the
      ledger yet (this node lacks the entries before it) is ingested again
      as the origin's log grows.
    - units asks this node made, and what peers gave for each; asks it
      served (asker, req_id: a node moves at most the largest qty asked to
      one ask, however many paths bring it); asks it forwarded for a peer
      (multi-hop: answered with one UNITS_GIVE once every peer asked has
      answered, or at a deadline inside the asker's wait).
    - per peer, when PEERS is due again (periodically, and when the
      endpoints this node knows change: a PEERS may be lost).
    - one outgoing FIFO a peer, bounded by SM_MESH_QUEUE_BYTES_MAX.

    Divergent logs are found by link comparison: a peer's HEADS carry the
    link hash at its head; if this node stores that seq with another link,
    it WANTs that one entry, whose ingest reports the equivocation; a run
    from a peer whose first entry does not link to this node's head says
    the same.  Either way the engine then WANTs the run just before (a
    "look back"), whose ingest stops at the first entry that differs: the
    seq where the logs part, which is where the ledger must stop the origin
    on every node for all to agree.  Evidence found lower replaces the
    evidence passed on before.                                                */
#include "gossip.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logger.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

_Static_assert(SM_PEERS_MAX <= 64, "asks keep one answered bit a peer slot");

#define S_ORIGIN_SLOTS   (2u * SM_MEMBERS_MAX)   /* a power of two */
#define S_MSG_FIXED_MAX  1024u   /* encoded HELLO, WANT, UNITS_* never exceed this */
#define S_HELLO_ANSWER_MIN_MS 1000u  /* a peer's new session is answered at most this often */
#define S_RELAYS_PER_PEER_MAX (SM_UNITS_ASKS_MAX / 8u)  /* asks forwarded for one peer at once */
#define S_REFUSAL_LOG_MS 10000u  /* a peer's refused runs are logged once this often */

/* Why WANTs of an origin to a peer wait for its next HEADS. */
enum { S_STALL_NONE = 0, S_STALL_REFUSED = 1, S_STALL_NOT_MEMBER = 2 };

/* Drop ranks of queued messages: lower goes first; 0 is never dropped. */
enum { S_KEEP = 0, S_DROP_HEADS = 1, S_DROP_PEERS = 2, S_DROP_PUSH = 3,
       S_DROP_ANSWER = 4, S_DROP_RANKS = 5 };

/*  A queued message is on two lists: the peer's queue in send order (next,
    prev) and the list of its rank in the same order (rank_next), so the
    oldest message of a rank is found, and unlinked, at once: trimming a
    full queue costs what it drops, not a walk of the queue a message.      */
typedef struct s_msg {
    struct s_msg *next, *prev;
    struct s_msg *rank_next;
    int rank;
    size_t len;
    uint8_t bytes[];
} s_msg;

typedef struct {
    uint32_t oi;               /* origin index */
    uint64_t from;
    uint32_t count;
    uint64_t sent_ms;
} s_want;

typedef struct {
    bool used;
    bool configured;           /* from add_peer: never evicted */
    bool hello_ok;             /* its HELLO was checked in this session */
    bool heads_seen;           /* its HEADS arrived in this session */
    sm_gossip_peer pub;        /* what peers_each reports */
    uint64_t next_heads_ms;
    uint64_t next_hello_ms;    /* HELLO again then, until its HEADS show ours arrived */
    uint64_t next_forks_ms;    /* fork evidence sent to it again then */
    uint64_t next_peers_ms;    /* PEERS sent to it again then */
    uint64_t peers_gen;        /* self->endpoints_gen when PEERS last went to it */
    uint64_t hello_answer_ms;  /* when a repeated HELLO of its was last answered */
    bool hello_answered;       /* ... if one was, this session */
    bool hello_deferred;       /* a new session of its waits for that floor */
    s_want wants[SM_WANTS_IN_FLIGHT_MAX];
    uint32_t want_count;
    uint32_t want_run;         /* entries a WANT asks for: its answers' size */
    uint64_t answer_ms;        /* when the latest answer to a WANT arrived (0: none this session) */
    uint64_t answered_sent_ms; /* ... and when that WANT was sent */
    uint64_t *has;             /* [SM_MEMBERS_MAX] */
    uint64_t *known;           /* [SM_MEMBERS_MAX] */
    uint64_t *checked;         /* [SM_MEMBERS_MAX] its head whose link was compared */
    uint8_t *stalled;          /* [SM_MEMBERS_MAX] S_STALL_* */
    s_msg *qhead, *qtail;
    s_msg *rank_head[S_DROP_RANKS], *rank_tail[S_DROP_RANKS];  /* by rank, oldest first */
    size_t qbytes;
    uint64_t refusal_log_ms;   /* a refusal of its runs is logged again from then */
    uint32_t refusals_quiet;   /* refusals not logged since */
    uint64_t hold_window_ms;   /* the minute its HOLD_ASKs are counted in began */
    uint32_t hold_asks;        /* HOLD_ASKs served in that minute (kept across sessions) */
} s_peer;

/*  The budget of one shopper's forwarded holds (HOLD_ASK): counted per
    shopper tag, not per peer, so many shoppers at one stall do not use up
    what the next one may ask (proto/mesh.md 4.8).                          */
typedef struct {
    uint8_t tag[SM_HOLD_TAG_BYTES + 1]; /* client or device tag; [0] 'c', 'd' or 'p' (peer) */
    bool used;
    uint64_t window_ms;        /* the minute its asks are counted in began */
    uint32_t asks;
} s_shopper;

/*  A HOLD_ASK or ENTRY_ASK this node answered: a second delivery of it
    (the same asker, type and wire id, e.g. sent again after a reconnect)
    gets the same answer and appends nothing.                                */
typedef struct {
    bool used;
    uint8_t type;              /* SM_MSG_HOLD_ASK or SM_MSG_ENTRY_ASK */
    sm_id asker;
    uint64_t req_id;           /* the asker's wire id */
    int code;                  /* the HOLD_DONE (ENTRY_DONE) sent: 0 or the refusal */
    uint64_t seq, expires_ms;
} s_hold_answer;

typedef struct {
    bool used;
    bool recorded;             /* the ledger holds it (or stops the origin earlier) */
    bool parted_below;         /* its entries link to different ones: the logs part lower */
    uint32_t oi;
    uint64_t seq;
    uint8_t *a, *b;            /* owned copies of the two entries */
    size_t alen, blen;
    uint8_t asig[SM_SIG_BYTES], bsig[SM_SIG_BYTES];
} s_fork;

typedef struct {
    bool used;
    uint64_t req_id;           /* the caller's */
    uint64_t wire_id;          /* on the wire: unique across restarts (sm_gossip_ask_units) */
    char sku[SM_SKU_BYTES_MAX + 1];
    uint64_t given;
    uint64_t answered;         /* bit per peer slot */
    uint64_t made_ms;
} s_ask;

/*  An ask this node served: to (asker, req_id) it moves at most the
    largest qty asked, whichever paths the ask took to get here.           */
typedef struct {
    bool used;
    sm_id asker;
    uint64_t req_id;
    uint32_t given;            /* units moved to the asker for it */
    uint64_t made_ms;
} s_seen;

/*  A hold (HOLD_ASK) or raffle entry (ENTRY_ASK) this node forwarded to a
    peer for its caller.                                                     */
typedef struct {
    bool used;
    bool answered;
    uint8_t type;              /* the ask's: SM_MSG_HOLD_ASK or SM_MSG_ENTRY_ASK */
    uint64_t req_id;           /* the caller's */
    uint64_t wire_id;          /* on the wire (as an ask's) */
    sm_id at;                  /* the peer asked */
    int code;                  /* its HOLD_DONE (ENTRY_DONE): 0 or the refusal */
    uint64_t seq, expires_ms;
    uint64_t made_ms;
} s_hold_fwd;

/*  An ask this node could not cover and forwarded for a peer.             */
typedef struct {
    bool used;
    sm_id asker;
    uint64_t req_id;
    char sku[SM_SKU_BYTES_MAX + 1];
    sm_id from;                /* the peer that asked: answered once */
    uint32_t qty;              /* what it asked for */
    uint32_t given;            /* this node's give plus what peers answered */
    uint64_t asked, answered;  /* bit per peer slot */
    uint64_t deadline_ms;
} s_relay;

struct sm_gossip {
    sm_ledger *ledger;
    sm_id self;
    sm_id market;
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1];
    uint32_t units_floor;
    uint32_t units_per_min;    /* a member's budget of units given on its asks */
    uint64_t heads_interval_ms;
    uint64_t hold_ttl_ms;      /* a hold asked by a peer expires this long after */
    sm_reserve_limits hold_limits; /* what a forwarded hold may take */
    s_shopper *shoppers;       /* [SM_HOLD_ASK_SHOPPERS_MAX] forwarded holds' budgets */
    s_hold_answer *hold_answers; /* [SM_HOLD_ASK_ANSWERS_MAX] a ring, oldest overwritten */
    uint32_t hold_answer_next;

    sm_id origins[SM_MEMBERS_MAX];
    uint32_t origin_count;
    uint16_t origin_slots[S_ORIGIN_SLOTS];   /* index + 1; 0 = empty */
    uint32_t self_oi;
    /* The ledger's heads, refreshed before planning (s_local_refresh). */
    uint64_t local_seq[SM_MEMBERS_MAX];
    uint64_t local_cap[SM_MEMBERS_MAX];
    sm_hash local_link[SM_MEMBERS_MAX];
    /* Each origin's budget (as the asker) of units given by UNITS_ASK. */
    uint64_t units_window_ms[SM_MEMBERS_MAX];  /* the minute counted began */
    uint32_t units_left[SM_MEMBERS_MAX];       /* still to give in that minute */

    s_peer peers[SM_PEERS_MAX];
    uint32_t rr;               /* next peer slot sm_gossip_next looks at */
    s_msg *out;                /* the message last handed out (freed on the next call) */

    s_fork forks[SM_FORK_EVIDENCE_MAX];
    s_ask asks[SM_UNITS_ASKS_MAX];
    uint64_t wire_id_last;     /* the last wire id an ask of this node used */
    s_seen seen[SM_UNITS_SEEN_MAX];
    s_relay relays[SM_UNITS_ASKS_MAX];
    s_hold_fwd holds[SM_HOLD_FWDS_MAX];
    uint64_t endpoints_gen;    /* bumped when a known endpoint changes */

    bool heads_any;            /* some peer's HEADS arrived (ever) */
    bool writable;             /* the caller lets it append (sm_gossip_set_writable) */
    sm_gossip_hold_check_fn hold_check;    /* sm_gossip_set_hold_check */
    void *hold_check_arg;
    bool recovered;            /* own log caught up with what peers reported */
    uint64_t own_reported;     /* the highest seq of this node's log a peer reported */

    sm_gossip_counters stats;

    /* Scratch, reused. */
    sm_wire_space space;
    sm_wire_head heads_buf[SM_MEMBERS_MAX];
    sm_wire_peer peers_buf[SM_WIRE_PEERS_MAX];
    sm_signed run[SM_WIRE_RUN_MAX];
    uint8_t *run_bytes;        /* SM_WIRE_RUN_BYTES_SOFT + SM_ENTRY_BYTES_MAX */
    size_t run_used;
    uint32_t run_count;
    uint64_t run_last;
    sm_entry entry;
};

/* ---- small helpers -------------------------------------------------- */

static bool
s_id_eq(const sm_id *a, const sm_id *b)
{
    return memcmp(a->b, b->b, SM_KEY_BYTES) == 0;
}

static uint64_t
s_min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t
s_max64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/*  A failure of the ledger that is not a refusal of what was offered.     */
static bool
s_fatal(int rc)
{
    return rc == SM_ENOSPC || rc == SM_EIO || rc == SM_ENOMEM || rc == SM_ECORRUPT;
}

/*  Every public call begins here: the message handed out last is no longer
    borrowed.                                                                */
static void
s_enter(sm_gossip *self)
{
    free(self->out);
    self->out = NULL;
}

/* ---- origins -------------------------------------------------------- */

static uint32_t
s_origin_hash(const sm_id *id)
{
    uint32_t h;
    memcpy(&h, id->b, sizeof h);   /* keys are uniformly distributed */
    return h & (S_ORIGIN_SLOTS - 1);
}

/*  The index of `id`, registering it if `add` and there is room; -1 if
    unknown (or the table is full).                                          */
static int
s_origin(sm_gossip *self, const sm_id *id, bool add)
{
    uint32_t slot = s_origin_hash(id);
    for (uint32_t probe = 0; probe < S_ORIGIN_SLOTS; probe++) {
        uint16_t v = self->origin_slots[slot];
        if (v == 0)
            break;
        if (s_id_eq(&self->origins[v - 1], id))
            return v - 1;
        slot = (slot + 1) & (S_ORIGIN_SLOTS - 1);
    }
    if (!add || self->origin_count >= SM_MEMBERS_MAX)
        return -1;
    uint32_t oi = self->origin_count++;
    self->origins[oi] = *id;
    self->origin_slots[slot] = (uint16_t)(oi + 1);
    self->local_seq[oi] = 0;
    self->local_cap[oi] = UINT64_MAX;
    memset(&self->local_link[oi], 0, sizeof self->local_link[oi]);
    self->units_window_ms[oi] = 0;
    self->units_left[oi] = 0;
    return (int) oi;
}

/*  The index of an origin a peer named.  Origins this node's ledger does
    not know as the organiser or a member are registered only while the
    table is less than half full, so a peer listing made-up origins cannot
    crowd out the market's real ones.                                        */
static int
s_origin_from_peer(sm_gossip *self, const sm_id *id)
{
    int oi = s_origin(self, id, false);
    if (oi >= 0)
        return oi;
    sm_member m;
    if (!s_id_eq(id, &self->market) && self->origin_count >= SM_MEMBERS_MAX / 2
        && sm_ledger_member(self->ledger, id, &m) != 0)
        return -1;
    return s_origin(self, id, true);
}

static int
s_refresh_cb(const sm_head *h, void *arg)
{
    sm_gossip *self = arg;
    int oi = s_origin(self, &h->origin, true);
    if (oi >= 0) {
        self->local_seq[oi] = h->seq;
        self->local_cap[oi] = h->cap;
        self->local_link[oi] = h->link;
    }
    return 0;
}

/*  Load the ledger's heads into local_seq / local_cap / local_link.        */
static int
s_local_refresh(sm_gossip *self)
{
    for (uint32_t oi = 0; oi < self->origin_count; oi++) {
        self->local_seq[oi] = 0;
        self->local_cap[oi] = UINT64_MAX;
        memset(&self->local_link[oi], 0, sizeof self->local_link[oi]);
    }
    return sm_ledger_heads(self->ledger, s_refresh_cb, self);
}

/*  True if this node's ledger would take the origin's entries: the
    organiser, an origin it already has entries of, or a roster member.
    (Entries of origins not admitted yet are fetched once the roster says
    so: planning runs again after every accepted run.)                      */
static bool
s_wantable(sm_gossip *self, uint32_t oi)
{
    if (s_id_eq(&self->origins[oi], &self->market) || self->local_seq[oi] > 0)
        return true;
    sm_member m;
    return sm_ledger_member(self->ledger, &self->origins[oi], &m) == 0;
}

/* ---- peers and queues ----------------------------------------------- */

static bool
s_ready(const s_peer *p)
{
    return p->used && p->pub.up && p->hello_ok && p->pub.refusal == 0;
}

static s_peer *
s_peer_find(sm_gossip *self, const sm_id *node)
{
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++)
        if (self->peers[i].used && s_id_eq(&self->peers[i].pub.node, node))
            return &self->peers[i];
    return NULL;
}

static uint32_t
s_peer_slot(sm_gossip *self, const s_peer *p)
{
    return (uint32_t)(p - self->peers);
}

static void
s_queue_clear(s_peer *p)
{
    s_msg *m = p->qhead;
    while (m) {
        s_msg *next = m->next;
        free(m);
        m = next;
    }
    p->qhead = p->qtail = NULL;
    memset(p->rank_head, 0, sizeof p->rank_head);
    memset(p->rank_tail, 0, sizeof p->rank_tail);
    p->qbytes = 0;
}

/*  Take the oldest message of `rank` (non-NULL) off both of p's lists.    */
static s_msg *
s_queue_unlink_oldest(s_peer *p, int rank)
{
    s_msg *m = p->rank_head[rank];
    assert(m && m->rank == rank);
    p->rank_head[rank] = m->rank_next;
    if (!p->rank_head[rank])
        p->rank_tail[rank] = NULL;
    if (m->prev)
        m->prev->next = m->next;
    else
        p->qhead = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        p->qtail = m->prev;
    assert(p->qbytes >= m->len);
    p->qbytes -= m->len;
    m->next = m->prev = m->rank_next = NULL;
    return m;
}

/*  Forget what a session learned about the peer.                          */
static void
s_session_reset(s_peer *p)
{
    s_queue_clear(p);
    p->hello_ok = p->heads_seen = false;
    p->hello_answered = p->hello_deferred = false;
    p->pub.refusal = 0;
    p->pub.entries_behind = 0;
    p->want_count = 0;
    p->want_run = SM_WIRE_RUN_MAX;
    p->answer_ms = p->answered_sent_ms = 0;
    p->next_heads_ms = 0;
    p->next_hello_ms = 0;
    p->next_forks_ms = 0;
    p->next_peers_ms = 0;
    p->peers_gen = 0;
    if (p->has) {
        memset(p->has, 0, SM_MEMBERS_MAX * sizeof *p->has);
        memset(p->known, 0, SM_MEMBERS_MAX * sizeof *p->known);
        memset(p->checked, 0, SM_MEMBERS_MAX * sizeof *p->checked);
        memset(p->stalled, 0, SM_MEMBERS_MAX * sizeof *p->stalled);
    }
}

/*  A slot for `node`: its own, a free one, or that of the down peer learned
    from PEERS heard from longest ago.  NULL if none (all up or configured). */
static s_peer *
s_peer_get(sm_gossip *self, const sm_id *node, bool evict)
{
    s_peer *p = s_peer_find(self, node);
    if (p)
        return p;
    s_peer *victim = NULL;
    for (uint32_t i = 0; i < SM_PEERS_MAX && !p; i++)
        if (!self->peers[i].used)
            p = &self->peers[i];
    if (!p && evict) {
        for (uint32_t i = 0; i < SM_PEERS_MAX; i++) {
            s_peer *q = &self->peers[i];
            if (q->pub.up || q->configured)
                continue;
            if (!victim || q->pub.last_seen_ms < victim->pub.last_seen_ms)
                victim = q;
        }
        p = victim;
    }
    if (!p)
        return NULL;
    if (!p->has) {
        p->has = calloc(SM_MEMBERS_MAX, sizeof *p->has);
        p->known = calloc(SM_MEMBERS_MAX, sizeof *p->known);
        p->checked = calloc(SM_MEMBERS_MAX, sizeof *p->checked);
        p->stalled = calloc(SM_MEMBERS_MAX, sizeof *p->stalled);
        if (!p->has || !p->known || !p->checked || !p->stalled) {
            free(p->has);
            free(p->known);
            free(p->checked);
            free(p->stalled);
            p->has = p->known = p->checked = NULL;
            p->stalled = NULL;
            return NULL;
        }
    }
    s_session_reset(p);
    p->used = true;
    p->configured = false;
    memset(&p->pub, 0, sizeof p->pub);
    p->pub.node = *node;
    p->hold_window_ms = 0;     /* a reused slot: the new node's own budget */
    p->hold_asks = 0;
    return p;
}

/*  Make room for `need` more bytes in p's queue by dropping the oldest
    repairable messages, lowest rank first.  False if it cannot.           */
static bool
s_queue_make_room(sm_gossip *self, s_peer *p, size_t need)
{
    for (int rank = 1; rank < S_DROP_RANKS; rank++) {
        while (p->rank_head[rank] && p->qbytes + need > SM_MESH_QUEUE_BYTES_MAX) {
            free(s_queue_unlink_oldest(p, rank));
            self->stats.messages_dropped++;
        }
        if (p->qbytes + need <= SM_MESH_QUEUE_BYTES_MAX)
            return true;
    }
    return false;
}

static void
s_queue_push(sm_gossip *self, s_peer *p, s_msg *m)
{
    if (p->qbytes + m->len > SM_MESH_QUEUE_BYTES_MAX
        && !s_queue_make_room(self, p, m->len) && m->rank != S_KEEP) {
        /* Still full of messages that must go: this one is repairable. */
        self->stats.messages_dropped++;
        free(m);
        return;
    }
    assert(m->rank >= 0 && m->rank < S_DROP_RANKS);
    m->next = m->rank_next = NULL;
    m->prev = p->qtail;
    if (p->qtail)
        p->qtail->next = m;
    else
        p->qhead = m;
    p->qtail = m;
    if (p->rank_tail[m->rank])
        p->rank_tail[m->rank]->rank_next = m;
    else
        p->rank_head[m->rank] = m;
    p->rank_tail[m->rank] = m;
    p->qbytes += m->len;
}

/*  Encode `msg` into a new queue message of at most `cap` bytes.  NULL on
    failure (counted as dropped: a bound was wrong, or memory ran out).     */
static s_msg *
s_encode(sm_gossip *self, const sm_wire_msg *msg, size_t cap, int rank)
{
    if (cap > SM_WIRE_BYTES_MAX)
        cap = SM_WIRE_BYTES_MAX;
    s_msg *m = malloc(sizeof *m + cap);
    if (!m) {
        self->stats.messages_dropped++;
        return NULL;
    }
    int rc = sm_wire_encode(msg, m->bytes, cap, &m->len);
    if (rc != 0) {
        self->stats.messages_dropped++;
        sm_log_warn("mesh: cannot encode %s: %s", sm_wire_type_name(msg->type),
                    sm_strerror(rc));
        free(m);
        return NULL;
    }
    /* Queued messages are counted by their length: they hold no more. */
    if (m->len < cap) {
        s_msg *fit = realloc(m, sizeof *m + m->len);
        if (fit)
            m = fit;
    }
    m->rank = rank;
    m->next = NULL;
    return m;
}

/*  Queue a copy of an encoded message for p.                               */
static void
s_send_copy(sm_gossip *self, s_peer *p, const s_msg *m)
{
    s_msg *c = malloc(sizeof *c + m->len);
    if (!c)
        return;
    memcpy(c, m, sizeof *c + m->len);
    c->next = NULL;
    s_queue_push(self, p, c);
}

static void
s_send(sm_gossip *self, s_peer *p, const sm_wire_msg *msg, size_t cap, int rank)
{
    s_msg *m = s_encode(self, msg, cap, rank);
    if (m)
        s_queue_push(self, p, m);
}

/* ---- building messages ---------------------------------------------- */

typedef struct {
    sm_gossip *self;
    uint32_t count;
    const sm_id *to;           /* the peer it goes to: told its own true head */
} s_heads_ctx;

static int s_link_cb(const sm_signed *e, uint64_t seq, void *arg);
static uint64_t s_serve_limit(sm_gossip *self, const sm_id *origin, uint64_t head);

static int
s_heads_collect(const sm_head *h, void *arg)
{
    s_heads_ctx *ctx = arg;
    if (h->seq == 0)
        return 0;
    if (ctx->count >= SM_MEMBERS_MAX)
        return 1;
    sm_wire_head w = { h->origin, h->seq, h->link };
    uint64_t limit = s_serve_limit(ctx->self, &h->origin, h->seq);
    /* An origin is told how much of its own log this node holds, damaged
       or not: a node fetching its own log back before it appends must not
       take this node's damage for the end of its log (a fork). */
    if (limit < h->seq && !(ctx->to && s_id_eq(ctx->to, &h->origin))) {
        /* Damaged above `limit`: tell peers only what this node serves. */
        if (limit == 0 || sm_ledger_read(ctx->self->ledger, &h->origin, limit, 1, s_link_cb,
                                         &w.link) != 0)
            return 0;
        w.seq = limit;
    }
    ctx->self->heads_buf[ctx->count++] = w;
    return 0;
}

static void
s_send_heads(sm_gossip *self, s_peer *p)
{
    s_heads_ctx ctx = { self, 0, &p->pub.node };
    if (sm_ledger_heads(self->ledger, s_heads_collect, &ctx) != 0)
        return;
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_HEADS;
    msg.u.heads.count = ctx.count;
    msg.u.heads.heads = self->heads_buf;
    sm_wire_sort(&msg);   /* the ledger lists them in key order already */
    s_send(self, p, &msg, 16 + (size_t) ctx.count * (SM_KEY_BYTES + SM_HASH_BYTES + 16),
           S_DROP_HEADS);
}

/*  HEADS as this node serves them, also to an origin about its own log: the
    answer to a WANT it cannot serve (below damage), so the asker clears it
    and asks another peer.                                                    */
static void
s_send_heads_served(sm_gossip *self, s_peer *p)
{
    s_heads_ctx ctx = { self, 0, NULL };
    if (sm_ledger_heads(self->ledger, s_heads_collect, &ctx) != 0)
        return;
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_HEADS;
    msg.u.heads.count = ctx.count;
    msg.u.heads.heads = self->heads_buf;
    sm_wire_sort(&msg);
    s_send(self, p, &msg, 16 + (size_t) ctx.count * (SM_KEY_BYTES + SM_HASH_BYTES + 16),
           S_DROP_HEADS);
}

static void
s_send_hello(sm_gossip *self, s_peer *p)
{
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_HELLO;
    msg.u.hello.version = SM_WIRE_VERSION;
    msg.u.hello.market = self->market;
    msg.u.hello.node = self->self;
    memcpy(msg.u.hello.endpoint, self->endpoint, sizeof msg.u.hello.endpoint);
    s_send(self, p, &msg, S_MSG_FIXED_MAX, S_KEEP);
}

/*  Set a peer's endpoint; a change is told to every peer (s_send_peers).   */
static void
s_set_endpoint(sm_gossip *self, s_peer *p, const char *endpoint)
{
    if (strcmp(p->pub.endpoint, endpoint) == 0)
        return;
    memcpy(p->pub.endpoint, endpoint, strlen(endpoint) + 1);
    self->endpoints_gen++;
}

/*  PEERS: this node's endpoint and every peer's known one but p's own.
    Sent again after SM_PEERS_RESEND_MS, or sooner if endpoints change.     */
static void
s_send_peers(sm_gossip *self, s_peer *p, uint64_t now_ms)
{
    p->next_peers_ms = now_ms + SM_PEERS_RESEND_MS;
    p->peers_gen = self->endpoints_gen;
    sm_wire_peer *list = self->peers_buf;
    uint32_t n = 0;
    if (self->endpoint[0]) {
        list[n].node = self->self;
        memcpy(list[n].endpoint, self->endpoint, sizeof list[n].endpoint);
        n++;
    }
    for (uint32_t i = 0; i < SM_PEERS_MAX && n < SM_WIRE_PEERS_MAX; i++) {
        const s_peer *q = &self->peers[i];
        if (!q->used || q == p || !q->pub.endpoint[0])
            continue;
        list[n].node = q->pub.node;
        memcpy(list[n].endpoint, q->pub.endpoint, sizeof list[n].endpoint);
        n++;
    }
    if (n == 0)
        return;
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_PEERS;
    msg.u.peers.count = n;
    msg.u.peers.peers = list;
    sm_wire_sort(&msg);
    s_send(self, p, &msg, 16 + (size_t) n * (SM_KEY_BYTES + SM_ENDPOINT_BYTES_MAX + 16),
           S_DROP_PEERS);
}

static void
s_send_fork(sm_gossip *self, s_peer *p, const s_fork *f)
{
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_FORK;
    msg.u.fork.origin = self->origins[f->oi];
    msg.u.fork.seq = f->seq;
    msg.u.fork.a.bytes = f->a;
    msg.u.fork.a.len = f->alen;
    memcpy(msg.u.fork.a.sig, f->asig, SM_SIG_BYTES);
    msg.u.fork.b.bytes = f->b;
    msg.u.fork.b.len = f->blen;
    memcpy(msg.u.fork.b.sig, f->bsig, SM_SIG_BYTES);
    s_send(self, p, &msg, 128 + f->alen + f->blen + 2 * SM_SIG_BYTES, S_KEEP);
}

static int
s_run_cb(const sm_signed *e, uint64_t seq, void *arg)
{
    sm_gossip *self = arg;
    if (self->run_count > 0 && self->run_used + e->len > SM_WIRE_RUN_BYTES_SOFT)
        return 1;
    if (e->len == 0 || e->len > SM_ENTRY_BYTES_MAX)
        return 1;                      /* the codec would refuse it */
    uint8_t *dst = self->run_bytes + self->run_used;
    memcpy(dst, e->bytes, e->len);
    sm_signed *s = &self->run[self->run_count++];
    s->bytes = dst;
    s->len = e->len;
    memcpy(s->sig, e->sig, SM_SIG_BYTES);
    self->run_used += e->len;
    self->run_last = seq;
    return self->run_count >= SM_WIRE_RUN_MAX;
}

/* ---- serving only what verifies --------------------------------------

    A stored entry can rot on disk after the node checked its store at open.
    Before a run is served it is checked as its receiver will check it
    (decode, origin and seq, links from the entry before, the newest
    signature); a run that fails is cut before its first bad entry, the
    origin is marked damaged in the ledger (served only below it from then
    on, and reported by the API), and the node says so once.  A bad entry
    therefore stops only its own origin, and is never sent again and again
    to peers that refuse it.  Cost: a decode and a hash an entry served and
    one signature a run.                                                      */

static int
s_link_cb(const sm_signed *e, uint64_t seq, void *arg)
{
    (void) seq;
    sm_entry_link(e->bytes, e->len, e->sig, arg);
    return 1;
}

/*  The first seq of the run just read (self->run, origin oi, from `from`)
    that does not verify, or 0 if it all does.                                */
static uint64_t
s_run_verify(sm_gossip *self, uint32_t oi, uint64_t from)
{
    const sm_id *origin = &self->origins[oi];
    sm_hash prev;
    memset(prev.b, 0, sizeof prev.b);
    if (from > 1 && sm_ledger_read(self->ledger, origin, from - 1, 1, s_link_cb, &prev) != 0)
        return 0;                      /* cannot tell: the receiver checks */
    for (uint32_t i = 0; i < self->run_count; i++) {
        const sm_signed *e = &self->run[i];
        if (sm_entry_decode(e->bytes, e->len, &self->entry) != 0
            || !s_id_eq(&self->entry.origin, origin) || self->entry.seq != from + i)
            return from + i;
        if (memcmp(self->entry.prev.b, prev.b, SM_HASH_BYTES) != 0) {
            /* This entry or the one before was altered: its signature says which. */
            if (i > 0 && sm_entry_verify(self->run[i - 1].bytes, self->run[i - 1].len,
                                         self->run[i - 1].sig, origin) != 0)
                return from + i - 1;
            return from + i;
        }
        sm_entry_link(e->bytes, e->len, e->sig, &prev);
    }
    const sm_signed *last = &self->run[self->run_count - 1];
    if (self->run_count && sm_entry_verify(last->bytes, last->len, last->sig, origin) != 0) {
        for (uint32_t i = 0; i < self->run_count; i++)
            if (sm_entry_verify(self->run[i].bytes, self->run[i].len, self->run[i].sig,
                                origin) != 0)
                return from + i;
    }
    return 0;
}

/*  Mark origin oi damaged from `seq` (if not already lower) and say so.    */
static void
s_damage_found(sm_gossip *self, uint32_t oi, uint64_t seq)
{
    uint64_t known = sm_ledger_damage(self->ledger, &self->origins[oi]);
    if (known && known <= seq)
        return;
#if SM_SIM_BUG == 6                    /* planted for sim-selftest: serve damaged entries */
    if (seq)
        return;
#endif
    sm_damage d = { self->origins[oi], seq, SM_ESIG };
    sm_ledger_set_damaged(self->ledger, &d);
    self->stats.damaged_origins++;
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&self->origins[oi], hex);
    sm_log_warn("store: origin %s entry %llu does not verify: degraded, this node serves "
                "that origin only up to entry %llu; run 'stallmesh repair' to fetch it "
                "back from peers", hex, (unsigned long long) seq,
                (unsigned long long) seq - 1);
}

/*  The highest seq of origin oi this node serves: its head, or just below
    a damaged entry.                                                          */
static uint64_t
s_serve_limit(sm_gossip *self, const sm_id *origin, uint64_t head)
{
#if SM_SIM_BUG == 6                    /* planted for sim-selftest: serve damaged entries */
    (void) self;
    (void) origin;
    return head;
#else
    uint64_t bad = sm_ledger_damage(self->ledger, origin);
    return bad && bad <= head ? bad - 1 : head;
#endif
}

/*  Read origin's entries from..from+count-1 (bounded by SM_WIRE_RUN_MAX and
    SM_WIRE_RUN_BYTES_SOFT) into an encoded ENTRIES message.  NULL if none
    stored from `from` (or on failure); *last gets the last seq included,
    *n the number of entries.                                                */
static s_msg *
s_entries_build(sm_gossip *self, uint32_t oi, uint64_t from, uint64_t count,
                int rank, uint64_t *last, uint32_t *n)
{
    self->run_used = 0;
    self->run_count = 0;
    self->run_last = 0;
    size_t max = (size_t) s_min64(count, SM_WIRE_RUN_MAX);
    uint64_t limit = s_serve_limit(self, &self->origins[oi], UINT64_MAX);
    if (from > limit)
        return NULL;
    max = (size_t) s_min64(max, limit - from + 1);
    if (sm_ledger_read(self->ledger, &self->origins[oi], from, max, s_run_cb, self) != 0
        || self->run_count == 0)
        return NULL;
    /* The log is contiguous: the run is from..run_last. */
    if (self->run_last != from + self->run_count - 1)
        return NULL;
    uint64_t bad = s_run_verify(self, oi, from);
    if (bad) {
        s_damage_found(self, oi, bad);
#if SM_SIM_BUG != 6
        if (bad <= from)
            return NULL;
        self->run_count = (uint32_t) (bad - from);
        self->run_last = bad - 1;
#endif
    }
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_ENTRIES;
    msg.u.entries.origin = self->origins[oi];
    msg.u.entries.first_seq = from;
    msg.u.entries.count = self->run_count;
    msg.u.entries.entries = self->run;
    size_t cap = 128 + self->run_used + (size_t) self->run_count * (SM_SIG_BYTES + 16);
    s_msg *m = s_encode(self, &msg, cap, rank);
    if (m) {
        *last = self->run_last;
        *n = self->run_count;
    }
    return m;
}

/* ---- pushing --------------------------------------------------------- */

/*  Push origin oi's entries up to this node's head to every ready peer that
    has sent HEADS, lacks them, and is not so far behind that it should
    fetch them itself (more than one run).  One message is built for all
    peers at the same point.                                                */
static void
s_push_origin(sm_gossip *self, uint32_t oi)
{
    sm_head h;
    if (sm_ledger_head(self->ledger, &self->origins[oi], &h) != 0)
        return;
    h.seq = s_serve_limit(self, &self->origins[oi], h.seq);
    if (h.seq == 0)
        return;
    s_msg *built = NULL;
    uint64_t built_from = 0, built_last = 0;
    uint32_t built_n = 0;
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *q = &self->peers[i];
        if (!s_ready(q) || !q->heads_seen)
            continue;
        uint64_t at = q->known[oi];
        if (at >= h.seq || h.seq - at > SM_WIRE_RUN_MAX)
            continue;
        if (!built || built_from != at + 1) {
            free(built);
            built_from = at + 1;
            built = s_entries_build(self, oi, built_from, h.seq - at, S_DROP_PUSH,
                                    &built_last, &built_n);
            if (!built)
                continue;
        }
        s_send_copy(self, q, built);
        q->known[oi] = built_last;
        q->pub.entries_sent += built_n;
        self->stats.entries_sent += built_n;
    }
    free(built);
}

/* ---- WANT planning --------------------------------------------------- */

/*  Send p a WANT and track it.  False if it could not be built.            */
static bool
s_want_send(sm_gossip *self, s_peer *p, uint32_t oi, uint64_t from,
            uint32_t count, uint64_t now_ms)
{
    assert(p->want_count < SM_WANTS_IN_FLIGHT_MAX);
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_WANT;
    msg.u.want.origin = self->origins[oi];
    msg.u.want.from = from;
    msg.u.want.count = count;
    s_msg *m = s_encode(self, &msg, S_MSG_FIXED_MAX, S_KEEP);
    if (!m)
        return false;
    s_queue_push(self, p, m);
    s_want *w = &p->wants[p->want_count++];
    w->oi = oi;
    w->from = from;
    w->count = count;
    w->sent_ms = now_ms;
    self->stats.wants_sent++;
    return true;
}

static void
s_want_remove(s_peer *p, uint32_t k)
{
    assert(k < p->want_count);
    memmove(&p->wants[k], &p->wants[k + 1],
            (p->want_count - k - 1) * sizeof p->wants[0]);
    p->want_count--;
}

/*  True while this node fetches its own log back (the caller has not let
    it append yet): origin oi's WANTs are then hedged.  The own-log gate
    gives up waiting for entries peers claim after SM_OWN_STALL_MS and
    appends over the seqs it has not fetched: a fork, which strands every
    sale made from units it moved after.  One lost WANT or answer, or a
    peer gone quiet but not yet noticed as down (SM_WANT_TIMEOUT_MS and the
    transport's idle limit are both as long as the gate), must not cost
    that: an own WANT unanswered for SM_OWN_WANT_HEDGE_MS lets the next
    peer that holds the entries be asked too (its duplicate answer is
    ignored), and expires after twice that, so even a lone peer is asked
    again well inside the gate.  A WANT pipelined behind others waits for
    their answers first on the FIFO connection: its wait counts from the
    peer's latest answer if that came after it was sent and answered a WANT
    sent before it (s_want_wait), so a slow link that keeps answering is
    neither hedged nor asked again; an answer to a WANT sent after it says
    its own answer was lost, and does not extend its wait.                  */
static bool
s_own_fetch(const sm_gossip *self, uint32_t oi)
{
#if defined(SM_SIM_BUG) && SM_SIM_BUG == 14  /* planted for sim-selftest: no hedge */
    (void) self; (void) oi;
    return false;
#else
    return oi == self->self_oi && !self->writable;
#endif
}

/*  How long p's WANT w has waited for its answer, by the rule above.     */
static uint64_t
s_want_wait(const s_peer *p, const s_want *w, uint64_t now_ms)
{
    uint64_t since = w->sent_ms;
    if (p->answered_sent_ms <= w->sent_ms && p->answer_ms > since)
        since = p->answer_ms;
    return now_ms > since ? now_ms - since : 0;
}

static uint64_t
s_want_timeout(const sm_gossip *self, uint32_t oi)
{
    return s_own_fetch(self, oi) ? 2u * SM_OWN_WANT_HEDGE_MS : SM_WANT_TIMEOUT_MS;
}

/*  True if origin oi is being fetched from a peer other than p (for the own
    log while it is fetched back: by a WANT younger than the hedge).         */
static bool
s_wanted_elsewhere(sm_gossip *self, const s_peer *p, uint32_t oi, uint64_t now_ms)
{
    bool hedge = s_own_fetch(self, oi);
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++) {
        const s_peer *q = &self->peers[i];
        if (q == p || !q->used)
            continue;
        for (uint32_t k = 0; k < q->want_count; k++)
            if (q->wants[k].oi == oi
                && (!hedge || s_want_wait(q, &q->wants[k], now_ms) < SM_OWN_WANT_HEDGE_MS))
                return true;
    }
    return false;
}

/*  The first seq of oi not yet stored nor asked of p; 0 if p is not being
    asked for oi.                                                            */
static uint64_t
s_want_end(const s_peer *p, uint32_t oi)
{
    uint64_t end = 0;
    for (uint32_t k = 0; k < p->want_count; k++)
        if (p->wants[k].oi == oi)
            end = s_max64(end, p->wants[k].from + p->wants[k].count);
    return end;
}

/*  WANT from p what it has and this node lacks, within the flow-control
    window.  A first pass gives each origin one WANT, a second pipelines
    further runs.  Expects s_local_refresh to have run.                    */
static void
s_plan_peer(sm_gossip *self, s_peer *p, uint64_t now_ms)
{
    if (!s_ready(p) || !p->heads_seen)
        return;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t oi = 0; oi < self->origin_count; oi++) {
            if (p->want_count >= SM_WANTS_IN_FLIGHT_MAX)
                return;
            uint64_t limit = s_min64(p->has[oi], self->local_cap[oi]);
            uint64_t next = self->local_seq[oi] + 1;
            if (limit < next || p->stalled[oi])
                continue;
            uint64_t end = s_want_end(p, oi);
            if (end > 0 && pass == 0)
                continue;
            next = s_max64(next, end);
            if (next > limit)
                continue;
            if (end == 0 && (s_wanted_elsewhere(self, p, oi, now_ms) || !s_wantable(self, oi)))
                continue;
            do {
                uint32_t count = (uint32_t) s_min64(p->want_run, limit - next + 1);
                if (!s_want_send(self, p, oi, next, count, now_ms))
                    return;
                next += count;
            } while (pass == 1 && next <= limit
                     && p->want_count < SM_WANTS_IN_FLIGHT_MAX);
        }
    }
}

static void
s_plan_all(sm_gossip *self, uint64_t now_ms)
{
    if (s_local_refresh(self) != 0)
        return;
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++)
        s_plan_peer(self, &self->peers[i], now_ms);
}

/* ---- fork evidence --------------------------------------------------- */

static s_fork *
s_fork_find(sm_gossip *self, uint32_t oi)
{
    for (uint32_t i = 0; i < SM_FORK_EVIDENCE_MAX; i++)
        if (self->forks[i].used && self->forks[i].oi == oi)
            return &self->forks[i];
    return NULL;
}

static void
s_fork_free(s_fork *f)
{
    free(f->a);
    free(f->b);
    memset(f, 0, sizeof *f);
}

/*  Ingest evidence into the ledger once this node has the entries before
    it: each entry as a run of one; the second one stored reports the fork. */
static int
s_fork_record(sm_gossip *self, s_fork *f, uint64_t now_ms)
{
    if (f->recorded)
        return 0;
    sm_head h;
    int rc = sm_ledger_head(self->ledger, &self->origins[f->oi], &h);
    if (rc != 0)
        return rc;
    if (h.seq + 1 < f->seq)
        return 0;                      /* not yet: the entries before it are missing */
    sm_signed a = { f->a, f->alen, { 0 } }, b = { f->b, f->blen, { 0 } };
    memcpy(a.sig, f->asig, SM_SIG_BYTES);
    memcpy(b.sig, f->bsig, SM_SIG_BYTES);
    sm_ingest_result res;
    int ra = sm_ledger_ingest(self->ledger, &a, 1, now_ms, &res);
    int rb = sm_ledger_ingest(self->ledger, &b, 1, now_ms, &res);
    if (s_fatal(ra))
        return ra;
    if (s_fatal(rb))
        return rb;
    if (ra == SM_EFORK || rb == SM_EFORK)
        f->recorded = true;
    return 0;
}

/*  Keep evidence that origin oi forked at `seq` (copies of a and b) if it
    is the first for the origin or an earlier fork.  1 and *out if kept, 0
    if not (known, an earlier fork is, or the table is full), or
    SM_ENOMEM.                                                              */
static int
s_fork_keep(sm_gossip *self, uint32_t oi, uint64_t seq, const sm_signed *a,
            const sm_signed *b, bool recorded, s_fork **out)
{
    s_fork *f = NULL;
    s_fork *known = s_fork_find(self, oi);
    if (known && known->seq <= seq)
        return 0;                      /* known, or an earlier fork is */
    f = known;
    for (uint32_t i = 0; i < SM_FORK_EVIDENCE_MAX && !f; i++)
        if (!self->forks[i].used)
            f = &self->forks[i];
    if (!f) {
        sm_log_warn("mesh: fork evidence table full; evidence not passed on");
        return 0;
    }
    uint8_t *ca = malloc(a->len), *cb = malloc(b->len);
    if (!ca || !cb) {
        free(ca);
        free(cb);
        return SM_ENOMEM;
    }
    s_fork_free(f);
    f->used = true;
    f->recorded = recorded;
    f->oi = oi;
    f->seq = seq;
    memcpy(ca, a->bytes, a->len);
    memcpy(cb, b->bytes, b->len);
    f->a = ca;
    f->alen = a->len;
    memcpy(f->asig, a->sig, SM_SIG_BYTES);
    f->b = cb;
    f->blen = b->len;
    memcpy(f->bsig, b->sig, SM_SIG_BYTES);
    sm_entry ea, eb;
    f->parted_below = seq > 1 && sm_entry_decode(a->bytes, a->len, &ea) == 0
                   && sm_entry_decode(b->bytes, b->len, &eb) == 0
                   && memcmp(ea.prev.b, eb.prev.b, SM_HASH_BYTES) != 0;
    *out = f;
    return 1;
}

/*  Learn evidence that origin forked at `seq` (entries a and b, checked by
    the caller).  Kept if it is the first for the origin or an earlier fork;
    then sent to every ready peer except `from` (NULL: all).  `recorded`:
    the ledger already holds it.  1 if it was new, 0 if not, or an error.   */
static int
s_fork_learn(sm_gossip *self, uint32_t oi, uint64_t seq, const sm_signed *a,
             const sm_signed *b, const s_peer *from, bool recorded,
             uint64_t now_ms)
{
    s_fork *f = NULL;
    int rc = s_fork_keep(self, oi, seq, a, b, recorded, &f);
    if (rc != 1)
        return rc;
    self->stats.forks++;
    char hex[SM_ID_HEX_BYTES + 1];
    sm_hex_encode(self->origins[oi].b, SM_KEY_BYTES, hex);
    sm_log_warn("mesh: origin %s forked its log at seq %llu; passing the evidence on",
                hex, (unsigned long long) seq);
    rc = s_fork_record(self, f, now_ms);
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *q = &self->peers[i];
        if (q != from && s_ready(q))
            s_send_fork(self, q, f);
    }
    return rc != 0 ? rc : 1;
}

/*  Two logs of origin oi differ at or below seq `below`: WANT from p the
    run just before it, whose ingest stops at the first entry that differs
    from this node's (an earlier fork point, recorded and passed on in its
    turn) or finds none (then `below` is where they part).                  */
static void
s_probe(sm_gossip *self, s_peer *p, uint32_t oi, uint64_t below, uint64_t now_ms)
{
    if (below <= 1 || p->want_count >= SM_WANTS_IN_FLIGHT_MAX)
        return;
    uint64_t from = below > SM_WIRE_RUN_MAX ? below - SM_WIRE_RUN_MAX : 1;
    s_want_send(self, p, oi, from, (uint32_t)(below - from), now_ms);
}

/*  The ledger refused `theirs` (origin oi, seq), sent by p, with SM_EFORK:
    if the entry stored at that seq differs and both verify, that is
    evidence; an earlier fork point is looked for.                          */
static int
s_fork_detected(sm_gossip *self, s_peer *p, uint32_t oi, uint64_t seq,
                const sm_signed *theirs, uint64_t now_ms)
{
    sm_entry_copy *ours = malloc(sizeof *ours);
    if (!ours)
        return SM_ENOMEM;
    int rc = sm_ledger_read_one(self->ledger, &self->origins[oi], seq, ours);
    if (rc == SM_ENOTFOUND)
        rc = 0;
    else if (rc == 0
        && !(ours->s.len == theirs->len
             && memcmp(ours->s.bytes, theirs->bytes, theirs->len) == 0
             && memcmp(ours->s.sig, theirs->sig, SM_SIG_BYTES) == 0)
        && sm_entry_verify(ours->s.bytes, ours->s.len, ours->s.sig, &self->origins[oi]) == 0
        && sm_entry_verify(theirs->bytes, theirs->len, theirs->sig, &self->origins[oi]) == 0)
        rc = s_fork_learn(self, oi, seq, &ours->s, theirs, NULL, true, now_ms);
    free(ours);
    if (rc == 1)
        s_probe(self, p, oi, seq, now_ms);
    return s_fatal(rc) ? rc : 0;
}

/* ---- handlers --------------------------------------------------------- */

static void s_session_restart(sm_gossip *self, s_peer *p, uint64_t now_ms);
static void s_session_open(sm_gossip *self, s_peer *p, uint64_t now_ms);

static int
s_on_hello(sm_gossip *self, s_peer *p, const sm_wire_msg *m, int decoded,
           uint64_t now_ms)
{
    int why = 0;
    if (decoded == SM_EVERSION || m->u.hello.version != SM_WIRE_VERSION)
        why = SM_EVERSION;
    else if (!s_id_eq(&m->u.hello.market, &self->market))
        why = SM_EMARKET;
    else if (!s_id_eq(&m->u.hello.node, &p->pub.node))
        why = SM_EINVAL;
    if (why != 0) {
        char hex[SM_ID_HEX_BYTES + 1];
        sm_hex_encode(p->pub.node.b, SM_KEY_BYTES, hex);
        sm_log_warn("mesh: peer %s refused: %s", hex, sm_strerror(why));
        s_session_reset(p);
        p->pub.refusal = why;
        p->pub.refused++;
        self->stats.hellos_refused++;
        self->stats.messages_refused++;
        s_plan_all(self, now_ms);      /* its WANTs, if any, go elsewhere */
        return why;
    }
    self->stats.messages_received++;
    p->pub.last_seen_ms = now_ms;
    if (m->u.hello.endpoint[0])
        s_set_endpoint(self, p, m->u.hello.endpoint);
    if (p->hello_ok) {
        /* A HELLO after the peer's HEADS: it has started a new session
           (restarted, or reconnected, without the transport telling us it
           went down) and refuses everything until our HELLO comes.  Start
           over too: forget the session, answer with HELLO and the session's
           opening.  Before its HEADS it is only a repeat (ours has not
           reached it yet; our own repeats see to that), and once answered
           the next HELLO waits for its HEADS again, so two nodes never trade
           HELLOs back and forth; a floor of S_HELLO_ANSWER_MIN_MS bounds what
           a peer can make us send. */
        if (!p->heads_seen)
            return 0;
        if (p->hello_answered && now_ms - p->hello_answer_ms < S_HELLO_ANSWER_MIN_MS) {
            p->hello_deferred = true;  /* answered by the tick once the floor is past */
            return 0;
        }
        s_session_restart(self, p, now_ms);
        return 0;
    }
    s_session_open(self, p, now_ms);
    return 0;
}

/*  Start over with a peer that started a new session: forget ours, answer
    with HELLO and the session's opening.                                    */
static void
s_session_restart(sm_gossip *self, s_peer *p, uint64_t now_ms)
{
    bool had_wants = p->want_count > 0;
    s_session_reset(p);
    p->hello_answered = true;
    p->hello_answer_ms = now_ms;
    s_send_hello(self, p);
    p->next_hello_ms = now_ms + self->heads_interval_ms;
    if (had_wants)
        s_plan_all(self, now_ms);
    s_session_open(self, p, now_ms);
}

/*  The peer's HELLO checked: HEADS, PEERS and the fork evidence held.      */
static void
s_session_open(sm_gossip *self, s_peer *p, uint64_t now_ms)
{
    p->hello_ok = true;
    s_send_heads(self, p);
    s_send_peers(self, p, now_ms);
    for (uint32_t i = 0; i < SM_FORK_EVIDENCE_MAX; i++)
        if (self->forks[i].used)
            s_send_fork(self, p, &self->forks[i]);
    p->next_heads_ms = now_ms + self->heads_interval_ms;
    p->next_forks_ms = now_ms + SM_FORK_RESEND_MS;
}

/*  Read this node's link at `seq` of origin oi into *out.                  */
static int
s_link_at(sm_gossip *self, uint32_t oi, uint64_t seq, sm_hash *out)
{
    sm_entry_copy *one = malloc(sizeof *one);
    if (!one)
        return SM_ENOMEM;
    int rc = sm_ledger_read_one(self->ledger, &self->origins[oi], seq, one);
    if (rc == 0)
        sm_entry_link(one->s.bytes, one->s.len, one->s.sig, out);
    free(one);
    return rc;
}

static int
s_on_heads(sm_gossip *self, s_peer *p, const sm_wire_msg *m, uint64_t now_ms)
{
    int rc = s_local_refresh(self);
    if (rc != 0)
        return rc;
    uint8_t listed[SM_MEMBERS_MAX / 8];
    memset(listed, 0, sizeof listed);
    for (uint32_t i = 0; i < m->u.heads.count; i++) {
        const sm_wire_head *h = &m->u.heads.heads[i];
        int oi = s_origin_from_peer(self, &h->origin);
        if (oi < 0)
            continue;                  /* more origins than a market has */
        listed[oi / 8] |= (uint8_t)(1u << (oi % 8));
        p->has[oi] = h->seq;
        p->known[oi] = s_max64(p->known[oi], h->seq);
        p->stalled[oi] = S_STALL_NONE;
        if (oi == (int) self->self_oi)
            self->own_reported = s_max64(self->own_reported, h->seq);
        /* The same seq with another link: a fork; fetch that entry, whose
           ingest records the equivocation.  A head whose link matches is
           not checked again. */
        const s_fork *known = s_fork_find(self, (uint32_t) oi);
        bool below = known && h->seq < known->seq;   /* under the known fork */
        if (h->seq <= self->local_seq[oi]
            && (known ? known->parted_below || below : p->checked[oi] != h->seq)) {
            sm_hash ours;
            if (h->seq == self->local_seq[oi])
                ours = self->local_link[oi];
            else if (s_link_at(self, (uint32_t) oi, h->seq, &ours) != 0)
                continue;
            bool same = memcmp(ours.b, h->link.b, SM_HASH_BYTES) == 0;
            bool room = p->want_count < SM_WANTS_IN_FLIGHT_MAX
                     && s_want_end(p, (uint32_t) oi) == 0;
            if (same) {
                if (!known)
                    p->checked[oi] = h->seq;
            } else if (known && !below) {
                /* The evidence's entries link to different ones: the logs
                   part below it.  A peer whose head differs from ours holds
                   the other branch: look back there, at each of its HEADS
                   until the evidence names where they part (a look back
                   made once may find no room, or be lost). */
                if (room)
                    s_probe(self, p, (uint32_t) oi, known->seq, now_ms);
            } else if (room && self->local_cap[oi] >= h->seq) {
                /* Another entry at a seq below any known fork (an origin
                   may equivocate more than once): fetch it.  Asked again at
                   each of its HEADS until the fork is recorded: the WANT or
                   its answer may be lost. */
                s_want_send(self, p, (uint32_t) oi, h->seq, 1, now_ms);
            }
        }
    }
    /* A HEADS is complete: origins it leaves out, the peer has none of. */
    for (uint32_t oi = 0; oi < self->origin_count; oi++)
        if (!(listed[oi / 8] & (1u << (oi % 8))))
            p->has[oi] = 0;
    /* WANTs it can no longer answer. */
    for (uint32_t k = p->want_count; k-- > 0;)
        if (p->has[p->wants[k].oi] < p->wants[k].from)
            s_want_remove(p, k);
    uint64_t behind = 0;
    for (uint32_t oi = 0; oi < self->origin_count; oi++)
        if (self->local_seq[oi] > p->has[oi])
            behind += self->local_seq[oi] - p->has[oi];
    p->pub.entries_behind = behind;
    p->heads_seen = true;
    self->heads_any = true;
    self->stats.messages_received++;
    s_plan_all(self, now_ms);
    return 0;
}

static int
s_on_want(sm_gossip *self, s_peer *p, const sm_wire_msg *m)
{
    int oi = s_origin_from_peer(self, &m->u.want.origin);
    uint64_t last = 0;
    uint32_t n = 0;
    s_msg *answer = NULL;
    self->stats.messages_received++;
    if (oi >= 0)
        answer = s_entries_build(self, (uint32_t) oi, m->u.want.from, m->u.want.count,
                                 S_DROP_ANSWER, &last, &n);
    if (!answer) {
        /* Nothing from there: say what this node has (serves) instead. */
        s_send_heads_served(self, p);
        return 0;
    }
    s_queue_push(self, p, answer);
    p->known[oi] = s_max64(p->known[oi], last);
    p->pub.entries_sent += n;
    self->stats.entries_sent += n;
    return 0;
}

/*  Check that a run's first and last entries are the origin's and at the
    seqs the message says (the ledger checks the chain in between).        */
static int
s_run_matches(sm_gossip *self, const sm_id *origin, uint64_t first,
              const sm_signed *run, uint32_t n)
{
    const uint32_t ends[2] = { 0, n - 1 };
    for (int i = 0; i < (n > 1 ? 2 : 1); i++) {
        const sm_signed *s = &run[ends[i]];
        if (sm_entry_decode(s->bytes, s->len, &self->entry) != 0
            || !s_id_eq(&self->entry.origin, origin)
            || self->entry.seq != first + ends[i])
            return SM_EMALFORMED;
    }
    return 0;
}

/*  The organiser's log grew, so the roster may admit origins whose runs
    were refused as not members: they may be asked for again at once.      */
static void
s_roster_moved(sm_gossip *self)
{
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *q = &self->peers[i];
        if (!q->used || !q->stalled)
            continue;
        for (uint32_t oi = 0; oi < self->origin_count; oi++)
            if (q->stalled[oi] == S_STALL_NOT_MEMBER)
                q->stalled[oi] = S_STALL_NONE;
    }
}

static int
s_on_entries(sm_gossip *self, s_peer *p, const sm_wire_msg *m, size_t len,
             uint64_t now_ms)
{
    const sm_id *origin = &m->u.entries.origin;
    uint64_t first = m->u.entries.first_seq;
    uint32_t n = m->u.entries.count;
    const sm_signed *run = m->u.entries.entries;
    int rc = s_run_matches(self, origin, first, run, n);
    if (rc != 0)
        return rc;
    int oi = s_origin_from_peer(self, origin);
    if (oi < 0)
        return SM_ETOOBIG;
    self->stats.messages_received++;
    uint64_t last = first + n - 1;
    bool changed = false, answer = false;
    uint64_t answered_sent = 0;
    for (uint32_t k = p->want_count; k-- > 0;) {
        const s_want *w = &p->wants[k];
        if (w->oi == (uint32_t) oi && first >= w->from && first < w->from + w->count) {
            answer = true;
            answered_sent = s_max64(answered_sent, w->sent_ms);
            /* An answer cut short by SM_WIRE_RUN_BYTES_SOFT (it has more):
               ask for runs that size, or the WANTs pipelined behind this
               one would be answered with runs that begin past the gap. */
            if (first == w->from && n < w->count && p->has[oi] >= w->from + w->count - 1)
                p->want_run = n;
            else if (first == w->from && n == w->count && len < SM_WIRE_RUN_BYTES_SOFT / 2)
                p->want_run = (uint32_t) s_min64(SM_WIRE_RUN_MAX, 2 * (uint64_t) p->want_run);
            s_want_remove(p, k);
            changed = true;
        }
    }
    if (answer) {
        p->answer_ms = now_ms;
        p->answered_sent_ms = answered_sent;
    }
    p->has[oi] = s_max64(p->has[oi], last);
    p->known[oi] = s_max64(p->known[oi], last);

    sm_head before;
    if ((rc = sm_ledger_head(self->ledger, origin, &before)) != 0)
        return rc;
    if (first > before.seq + 1) {
        /* Ahead of the log (a push racing a fetch): the gap is WANTed.  An
           answer this early says the answers due before it on this FIFO
           connection are lost (or their WANTs were): those WANTs are given
           up now, so the gap is asked for again.  Kept in flight until
           they expired, they would make every early answer re-WANT the
           same run past the gap at once: a loop as fast as the link. */
        self->stats.runs_early++;
        for (uint32_t k = p->want_count; answer && k-- > 0;)
            if (p->wants[k].oi == (uint32_t) oi && p->wants[k].from < first) {
                s_want_remove(p, k);
                changed = true;
            }
    } else {
        sm_ingest_result res;
        memset(&res, 0, sizeof res);
        /* This node's copy of a damaged origin differs from the good one
           at the damage: entries it stores are not compared (they would
           look like a fork of an honest origin), only those past its head
           are taken.  `stallmesh repair` fetches the good ones back. */
        if (sm_ledger_damage(self->ledger, origin) && first <= before.seq) {
            uint64_t skip = s_min64(n, before.seq + 1 - first);
            run += skip;
            n -= (uint32_t) skip;
            first += skip;
        }
        rc = n ? sm_ledger_ingest(self->ledger, run, n, now_ms, &res) : 0;
        if (s_fatal(rc))
            return rc;
        p->pub.entries_received += res.accepted;
        self->stats.entries_accepted += res.accepted;
        if (res.err != 0) {
            self->stats.entries_refused++;
            p->pub.refused++;
            p->stalled[oi] = res.err == SM_ENOTMEMBER ? S_STALL_NOT_MEMBER
                                                      : S_STALL_REFUSED;
            p->pub.run_refusal = res.err;
            p->pub.run_refusal_origin = *origin;
            p->pub.run_refusal_seq = res.err_seq;
            if (res.err == SM_ENOTMEMBER || res.err == SM_EFORK) {
                sm_log_debug("mesh: run of %u refused at seq %llu: %s", n,
                             (unsigned long long) res.err_seq, sm_strerror(res.err));
            } else if (now_ms >= p->refusal_log_ms) {
                /* Throttled: a peer serving a bad entry would fill the log. */
                char phex[SM_ID_HEX_BYTES + 1], ohex[SM_ID_HEX_BYTES + 1];
                sm_id_format(&p->pub.node, phex);
                sm_id_format(origin, ohex);
                sm_log_warn("mesh: refused a run of origin %.16s from peer %.16s at seq "
                            "%llu: %s (%u more like this)", ohex, phex,
                            (unsigned long long) res.err_seq, sm_strerror(res.err),
                            p->refusals_quiet);
                p->refusal_log_ms = now_ms + S_REFUSAL_LOG_MS;
                p->refusals_quiet = 0;
            } else {
                p->refusals_quiet++;
            }
            if (res.err == SM_EFORK && res.err_seq >= first && res.err_seq <= last
                && (rc = s_fork_detected(self, p, (uint32_t) oi, res.err_seq,
                                         &run[res.err_seq - first], now_ms)) != 0)
                return rc;
            /* Its next entry does not link to this node's head: the logs
               parted before it (below any fork known: evidence at a seq
               above this node's head explains nothing here). */
            const s_fork *known = s_fork_find(self, (uint32_t) oi);
            if (res.err == SM_ELINK && res.err_seq == before.seq + 1 && first <= before.seq + 1
                && (!known || known->seq > before.seq))
                s_probe(self, p, (uint32_t) oi, res.err_seq, now_ms);
        }
        if (res.accepted > 0) {
            changed = true;
#if SM_SIM_BUG != 4                    /* planted for sim-selftest: drop relays */
            s_push_origin(self, (uint32_t) oi);
#endif
            if (s_id_eq(origin, &self->market))
                s_roster_moved(self);
            for (uint32_t i = 0; i < SM_FORK_EVIDENCE_MAX; i++)
                if (self->forks[i].used && self->forks[i].oi == (uint32_t) oi
                    && (rc = s_fork_record(self, &self->forks[i], now_ms)) != 0)
                    return rc;
        }
    }
    if (changed)
        s_plan_all(self, now_ms);
    return 0;
}

static int
s_on_peers(sm_gossip *self, const sm_wire_msg *m)
{
    self->stats.messages_received++;
    for (uint32_t i = 0; i < m->u.peers.count; i++) {
        const sm_wire_peer *w = &m->u.peers.peers[i];
        if (s_id_eq(&w->node, &self->self))
            continue;
        s_peer *q = s_peer_find(self, &w->node);
        if (!q)
            q = s_peer_get(self, &w->node, false);   /* free slots only */
        if (q && !q->pub.endpoint[0])
            s_set_endpoint(self, q, w->endpoint);
    }
    return 0;
}

/* ---- units asks ------------------------------------------------------ */

/*  Send UNITS_ASK `tmpl` (req_id, sku, asker and hops filled in) for `qty`
    to the ready peers other than `skip_a` and `skip_b` (may be NULL) whose
    queue has room: the peers this node's ledger shows holding units first,
    most first (lowest slot on ties), each for min(still needed, what it
    holds); then, if that does not cover qty, every other one for the rest.
    Returns the peers asked, a bit per slot.                                 */
static uint64_t
s_asks_send(sm_gossip *self, sm_wire_msg *tmpl, uint32_t qty, const sm_id *skip_a,
            const sm_id *skip_b)
{
    int64_t held[SM_PEERS_MAX];
    bool eligible[SM_PEERS_MAX];
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *p = &self->peers[i];
        held[i] = 0;
        eligible[i] = s_ready(p) && (!skip_a || !s_id_eq(&p->pub.node, skip_a))
                      && (!skip_b || !s_id_eq(&p->pub.node, skip_b))
                      && p->qbytes + S_MSG_FIXED_MAX <= SM_MESH_QUEUE_BYTES_MAX;
        sm_units u;
        if (eligible[i]
            && sm_ledger_units(self->ledger, tmpl->u.units.sku, &p->pub.node, &u) == 0
            && u.units > 0)
            held[i] = u.units;
    }
    uint64_t asked = 0;
    uint32_t remaining = qty;
    while (remaining > 0) {
        int best = -1;
        for (uint32_t i = 0; i < SM_PEERS_MAX; i++)
            if (held[i] > 0 && (best < 0 || held[i] > held[best]))
                best = (int) i;
        if (best < 0)
            break;
        uint32_t q = (uint32_t) s_min64(remaining, (uint64_t) held[best]);
        tmpl->u.units.qty = q;
        s_send(self, &self->peers[best], tmpl, S_MSG_FIXED_MAX, S_KEEP);
        held[best] = 0;
        asked |= 1ULL << best;
        remaining -= q;
    }
    for (uint32_t i = 0; i < SM_PEERS_MAX && remaining > 0; i++) {
        if (!eligible[i] || (asked & (1ULL << i)))
            continue;
        tmpl->u.units.qty = remaining;
        s_send(self, &self->peers[i], tmpl, S_MSG_FIXED_MAX, S_KEEP);
        asked |= 1ULL << i;
    }
    return asked;
}

/*  Answer UNITS_GIVE [req_id, sku, qty, asker] to `to`, if still ready.    */
static void
s_give_send(sm_gossip *self, const sm_id *to, uint64_t req_id, const char *sku,
            const sm_id *asker, uint32_t qty)
{
    s_peer *p = s_peer_find(self, to);
    if (!p || !s_ready(p))
        return;
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_UNITS_GIVE;
    msg.u.units.req_id = req_id;
    memcpy(msg.u.units.sku, sku, sizeof msg.u.units.sku);
    msg.u.units.qty = qty > SM_QTY_MAX ? SM_QTY_MAX : qty;
    msg.u.units.asker = *asker;
    s_send(self, p, &msg, S_MSG_FIXED_MAX, S_KEEP);
}

static s_seen *
s_seen_find(sm_gossip *self, const sm_id *asker, uint64_t req_id)
{
    for (uint32_t i = 0; i < SM_UNITS_SEEN_MAX; i++)
        if (self->seen[i].used && self->seen[i].req_id == req_id
            && s_id_eq(&self->seen[i].asker, asker))
            return &self->seen[i];
    return NULL;
}

/*  A record for a newly served ask: a free one or the oldest (forgetting
    it costs at most a second give to an ask over SM_UNITS_SEEN_MAX old:
    units moved, never lost).                                                */
static s_seen *
s_seen_add(sm_gossip *self, const sm_id *asker, uint64_t req_id, uint64_t now_ms)
{
    s_seen *r = NULL;
    for (uint32_t i = 0; i < SM_UNITS_SEEN_MAX; i++) {
        s_seen *q = &self->seen[i];
        if (!q->used) {
            r = q;
            break;
        }
        if (!r || q->made_ms < r->made_ms)
            r = q;
    }
    memset(r, 0, sizeof *r);
    r->used = true;
    r->asker = *asker;
    r->req_id = req_id;
    r->made_ms = now_ms;
    return r;
}

/*  Answer a forwarded ask's asker with all that was given, and forget it. */
static void
s_relay_finish(sm_gossip *self, s_relay *r)
{
    s_give_send(self, &r->from, r->req_id, r->sku, &r->asker, r->given);
    memset(r, 0, sizeof *r);
}

/*  Peer slot `slot` will answer no more (down, or a new session).         */
static void
s_relays_peer_gone(sm_gossip *self, uint32_t slot)
{
    uint64_t bit = 1ULL << slot;
    for (uint32_t i = 0; i < SM_UNITS_ASKS_MAX; i++) {
        s_relay *r = &self->relays[i];
        if (!r->used || !(r->asked & bit) || (r->answered & bit))
            continue;
        r->answered |= bit;
        if (r->answered == r->asked)
            s_relay_finish(self, r);
    }
}

/*  What `asker` may still be given by UNITS_ASK in the current minute (a
    pointer the caller lowers by what it gives), or NULL if the origin
    table has no room to count it (it is then given nothing).  The budget is
    the member's that the units go to, not the connection's: asks relayed
    for it through several peers share it, and a relay asking for many
    members does not spend theirs.  So a member cannot drain this stall to
    its floor faster than units_per_min units a minute, whatever path its
    asks take.                                                                */
static uint32_t *
s_units_budget(sm_gossip *self, const sm_id *asker, uint64_t now_ms)
{
    int oi = s_origin_from_peer(self, asker);
    if (oi < 0)
        return NULL;
    if (self->units_window_ms[oi] == 0 || now_ms < self->units_window_ms[oi]
        || now_ms - self->units_window_ms[oi] >= 60000u) {
        self->units_window_ms[oi] = now_ms;
        self->units_left[oi] = self->units_per_min;
    }
    return &self->units_left[oi];
}

/*  UNITS_ASK [req_id, sku, qty, asker, hops] from p.  This node gives what
    it can spare to the asker (at most the largest qty asked under (asker,
    req_id), so an ask that arrives by two paths is not served twice); what
    it cannot cover it asks its other peers for, if hops > 1 and this is the
    first time the ask reaches it, and answers p once they have (or at a
    deadline within the asker's wait); else it answers at once.           */
static int
s_on_units_ask(sm_gossip *self, s_peer *p, const sm_wire_msg *m, uint64_t now_ms)
{
    /* Its answer is never dropped from the queue: a peer that does not read
       what it is sent gets no more answers (nor units) until it does, so
       asks it keeps sending cannot grow its queue past the bound. */
    if (p->qbytes + S_MSG_FIXED_MAX > SM_MESH_QUEUE_BYTES_MAX) {
        self->stats.messages_dropped++;
        return 0;
    }
    const sm_id *asker = &m->u.units.asker;
    /* Units go to the asker: a node that does not need them (itself) or that
       is not of the market (neither the organiser nor a member) is refused. */
    if (s_id_eq(asker, &self->self))
        return SM_EINVAL;
    if (!s_id_eq(asker, &p->pub.node) && !s_id_eq(asker, &self->market)) {
        sm_member mb;
        int mrc = sm_ledger_member(self->ledger, asker, &mb);
        if (s_fatal(mrc))
            return mrc;
        if (mrc != 0 || mb.revoked)
            return SM_ENOTMEMBER;
    }
    self->stats.messages_received++;
    const uint64_t req_id = m->u.units.req_id;
    s_seen *seen = s_seen_find(self, asker, req_id);
    bool first = seen == NULL;
    uint32_t want = m->u.units.qty;
    if (seen)
        want = want > seen->given ? want - seen->given : 0;
    uint32_t *budget = want > 0 ? s_units_budget(self, asker, now_ms) : NULL;
    if (want > 0 && (!budget || *budget < want)) {
        sm_log_debug("mesh: units ask cut to the asker's budget (%u a minute)",
                     self->units_per_min);
        want = budget ? *budget : 0;
    }
    uint32_t give = 0;
    sm_units u;
    /* A node fetching its own log back (its store was wiped) or checking
       it at start (an older copy?) appends nothing until the caller says it
       may: the moves others made to it arrive before its own sales, so its
       units look spare, and a move appended now would reissue a seq its old
       log used (a fork). */
    int rc = want > 0 && !self->writable ? SM_ERECOVERING : 0;
    if (rc == 0 && want > 0)
        rc = sm_ledger_units(self->ledger, m->u.units.sku, &self->self, &u);
    if (rc == 0 && want > 0 && u.units - (int64_t) self->units_floor >= 1) {
        int64_t spare = u.units - (int64_t) self->units_floor;
        give = (uint32_t) s_min64(want, (uint64_t) spare);
        sm_body move;
        memset(&move, 0, sizeof move);
        move.kind = SM_KIND_STOCK_MOVE;
        memcpy(move.u.stock_move.sku, m->u.units.sku, sizeof move.u.stock_move.sku);
        move.u.stock_move.qty = give;
        move.u.stock_move.to = *asker;
        rc = sm_ledger_append(self->ledger, &move, now_ms, NULL);
        if (s_fatal(rc))
            return rc;
        if (rc != 0) {
            sm_log_debug("mesh: units ask not served: %s", sm_strerror(rc));
            give = 0;
        } else {
            s_push_origin(self, self->self_oi);
        }
    } else if (s_fatal(rc)) {
        return rc;
    }
    if (!seen)
        seen = s_seen_add(self, asker, req_id, now_ms);
    seen->given += give;
    if (budget)
        *budget -= give;

    /* The rest, from further away: the moves the peers asked append name
       the asker, and reach it by relay (7.4), before this node's answer on
       the same connection when they come through this node. */
    uint32_t rest = m->u.units.qty - give;
    if (first && rest > 0 && m->u.units.hops > 1) {
        /* Bounded: SM_UNITS_ASKS_MAX open, a few of them for one peer (one
           that floods asks cannot take the table from the others). */
        s_relay *r = NULL;
        uint32_t for_p = 0;
        for (uint32_t i = 0; i < SM_UNITS_ASKS_MAX; i++) {
            if (!self->relays[i].used)
                r = r ? r : &self->relays[i];
            else if (s_id_eq(&self->relays[i].from, &p->pub.node))
                for_p++;
        }
        if (r && for_p < S_RELAYS_PER_PEER_MAX) {
            sm_wire_msg fwd = *m;
            fwd.u.units.hops = m->u.units.hops - 1;
            uint64_t asked = s_asks_send(self, &fwd, rest, &p->pub.node, asker);
            if (asked) {
                memset(r, 0, sizeof *r);
                r->used = true;
                r->asker = *asker;
                r->req_id = req_id;
                memcpy(r->sku, m->u.units.sku, sizeof r->sku);
                r->from = p->pub.node;
                r->qty = m->u.units.qty;
                r->given = give;
                r->asked = asked;
                r->deadline_ms = now_ms + (uint64_t) SM_UNITS_HOP_WAIT_MS
                                          * (m->u.units.hops - 1);
                return 0;
            }
        }
    }
    s_give_send(self, &p->pub.node, req_id, m->u.units.sku, asker, give);
    return 0;
}

static s_ask *
s_ask_find(sm_gossip *self, uint64_t req_id)
{
    for (uint32_t i = 0; i < SM_UNITS_ASKS_MAX; i++)
        if (self->asks[i].used && self->asks[i].req_id == req_id)
            return &self->asks[i];
    return NULL;
}

/*  UNITS_GIVE from p: for an ask of this node, or one it forwarded.  A
    late, foreign or repeated answer records nothing.                       */
static int
s_on_units_give(sm_gossip *self, s_peer *p, const sm_wire_msg *m)
{
    self->stats.messages_received++;
    uint64_t bit = 1ULL << s_peer_slot(self, p);
    if (s_id_eq(&m->u.units.asker, &self->self)) {
        s_ask *a = NULL;
        for (uint32_t i = 0; i < SM_UNITS_ASKS_MAX && !a; i++)
            if (self->asks[i].used && self->asks[i].wire_id == m->u.units.req_id)
                a = &self->asks[i];
        if (!a || strcmp(a->sku, m->u.units.sku) != 0 || (a->answered & bit))
            return 0;
        a->answered |= bit;
        a->given += m->u.units.qty;
        return 0;
    }
    for (uint32_t i = 0; i < SM_UNITS_ASKS_MAX; i++) {
        s_relay *r = &self->relays[i];
        if (!r->used || r->req_id != m->u.units.req_id
            || !s_id_eq(&r->asker, &m->u.units.asker) || strcmp(r->sku, m->u.units.sku) != 0
            || !(r->asked & bit) || (r->answered & bit))
            continue;
        r->answered |= bit;
        r->given = (uint32_t) s_min64((uint64_t) r->given + m->u.units.qty, r->qty);
        if (r->answered == r->asked)
            s_relay_finish(self, r);
        break;
    }
    return 0;
}

/* ---- hold forwarding ------------------------------------------------- */

static void
s_hold_done_send(sm_gossip *self, s_peer *p, uint64_t req_id, int code, uint64_t seq,
                 uint64_t expires_ms)
{
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_HOLD_DONE;
    msg.u.hold_done.req_id = req_id;
    if (code < -(int) SM_WIRE_REFUSAL_MAX)
        code = SM_EINVAL;
    msg.u.hold_done.code = code;
    if (code == 0) {
        msg.u.hold_done.seq = seq;
        msg.u.hold_done.expires_ms = expires_ms;
    }
    s_send(self, p, &msg, S_MSG_FIXED_MAX, S_KEEP);
}

/*  Take one forwarded hold or entry from the budget of the shopper whose
    tags are given (its client tag, else its device tag, else the asking
    peer; NULL: no such tag): true if within
    SM_HOLD_ASKS_PER_SHOPPER_MIN this minute.  The table is bounded; the
    shopper least recently counted makes room (a minute idle, it had a
    fresh budget anyway).                                                   */
static bool
s_shopper_take(sm_gossip *self, const s_peer *p, const uint8_t *client,
               const uint8_t *device, uint64_t now_ms)
{
    uint8_t key[SM_HOLD_TAG_BYTES + 1];
    if (client) {
        key[0] = 'c';
        memcpy(key + 1, client, SM_HOLD_TAG_BYTES);
    } else if (device) {
        key[0] = 'd';
        memcpy(key + 1, device, SM_HOLD_TAG_BYTES);
    } else {
        key[0] = 'p';
        memcpy(key + 1, p->pub.node.b, SM_HOLD_TAG_BYTES);
    }
    s_shopper *slot = NULL, *oldest = NULL;
    for (uint32_t i = 0; i < SM_HOLD_ASK_SHOPPERS_MAX && !slot; i++) {
        s_shopper *s = &self->shoppers[i];
        if (s->used && memcmp(s->tag, key, sizeof key) == 0)
            slot = s;
        else if (!oldest || !s->used || (oldest->used && s->window_ms < oldest->window_ms))
            oldest = s;
    }
    if (!slot) {
        slot = oldest;
        memcpy(slot->tag, key, sizeof key);
        slot->used = true;
        slot->window_ms = now_ms;
        slot->asks = 0;
    }
    if (now_ms < slot->window_ms || now_ms - slot->window_ms >= 60000u) {
        slot->window_ms = now_ms;
        slot->asks = 0;
    }
    if (slot->asks >= SM_HOLD_ASKS_PER_SHOPPER_MIN)
        return false;
    slot->asks++;
    return true;
}

/*  The answer this node gave to `asker`'s ask `req_id` of `type`, or NULL. */
static s_hold_answer *
s_hold_answer_find(sm_gossip *self, int type, const sm_id *asker, uint64_t req_id)
{
    for (uint32_t i = 0; i < SM_HOLD_ASK_ANSWERS_MAX; i++) {
        s_hold_answer *a = &self->hold_answers[i];
        if (a->used && a->type == type && a->req_id == req_id && s_id_eq(&a->asker, asker))
            return a;
    }
    return NULL;
}

/*  ENTRY_DONE [req_id, refusal, seq] to p.                                 */
static void
s_entry_done_send(sm_gossip *self, s_peer *p, uint64_t req_id, int code, uint64_t seq)
{
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_ENTRY_DONE;
    msg.u.entry_done.req_id = req_id;
    if (code < -(int) SM_WIRE_ENTRY_REFUSAL_MAX)
        code = SM_EINVAL;
    msg.u.entry_done.code = code;
    msg.u.entry_done.seq = code == 0 ? seq : 0;
    s_send(self, p, &msg, S_MSG_FIXED_MAX, S_KEEP);
}

/*  The answer to p's ask `req_id` of `type`: HOLD_DONE for a HOLD_ASK,
    ENTRY_DONE for an ENTRY_ASK.                                             */
static void
s_ask_answer(sm_gossip *self, s_peer *p, int type, uint64_t req_id, int code, uint64_t seq,
             uint64_t expires_ms)
{
    if (type == SM_MSG_ENTRY_ASK)
        s_entry_done_send(self, p, req_id, code, seq);
    else
        s_hold_done_send(self, p, req_id, code, seq, expires_ms);
}

/*  Answer p's ask and remember the answer (the oldest remembered makes
    room).                                                                   */
static void
s_hold_answer_send(sm_gossip *self, s_peer *p, int type, uint64_t req_id, int code,
                   uint64_t seq, uint64_t expires_ms)
{
    s_hold_answer *a = &self->hold_answers[self->hold_answer_next];
    self->hold_answer_next = (self->hold_answer_next + 1) % SM_HOLD_ASK_ANSWERS_MAX;
    a->used = true;
    a->type = (uint8_t) type;
    a->asker = p->pub.node;
    a->req_id = req_id;
    a->code = code;
    a->seq = seq;
    a->expires_ms = expires_ms;
    s_ask_answer(self, p, type, req_id, code, seq, expires_ms);
}

typedef struct {
    const sm_wire_msg *m;
    bool found;
    uint64_t seq, expires_ms;
} s_same_hold;

static int
s_same_hold_each(const sm_hold *h, void *arg)
{
    s_same_hold *x = arg;
    const sm_wire_msg *m = x->m;
    if (strcmp(h->code, m->u.hold_ask.code) != 0)
        return 0;
    /* The code is unique among open holds: this one or none. */
    bool same = h->line_count == m->u.hold_ask.more_count + 1
                && h->line_count <= SM_HOLD_LINES_MAX;
    for (uint32_t i = 0; same && i < h->line_count; i++) {
        const char *sku = i ? m->u.hold_ask.more[i - 1].sku : m->u.hold_ask.sku;
        uint32_t qty = i ? m->u.hold_ask.more[i - 1].qty : m->u.hold_ask.qty;
        same = strcmp(h->lines[i].sku, sku) == 0 && h->lines[i].qty == qty;
    }
    if (same
        && h->has_device == m->u.hold_ask.has_device
        && h->has_client == m->u.hold_ask.has_client
        && (!h->has_device || memcmp(h->device, m->u.hold_ask.device, SM_HOLD_TAG_BYTES) == 0)
        && (!h->has_client || memcmp(h->client, m->u.hold_ask.client, SM_HOLD_TAG_BYTES) == 0)) {
        x->found = true;
        x->seq = h->seq;
        x->expires_ms = h->expires_ms;
    }
    return 1;
}

/*  The open hold on this node's log that `m` (a HOLD_ASK with a pickup
    code) already made: the same code, line and shopper.  A HOLD_ASK sent
    again after this node forgot its answer (a restart) finds it here.
    0 (*found says whether), or a store error.                              */
static int
s_same_hold_find(sm_gossip *self, const sm_wire_msg *m, bool *found, uint64_t *seq,
                 uint64_t *expires_ms)
{
    s_same_hold x = { .m = m };
    *found = false;
    if (!m->u.hold_ask.code[0])
        return 0;
    int rc = sm_ledger_holds_each(self->ledger, &self->self, s_same_hold_each, &x);
    if (rc < 0)
        return rc;
    *found = x.found;
    *seq = x.seq;
    *expires_ms = x.expires_ms;
    return 0;
}

/*  HOLD_ASK [req_id, sku, qty, code, device, client] from p: hold the units
    here, on this node's own log, for p's shopper (who picks them up here),
    with the code the asker drew and the shopper's tags, and answer
    HOLD_DONE with the hold's seq and expiry, or the refusal.  The hold
    entry is pushed before the answer, on the same connection; both leave
    only after the round's commit (the durability rule).  Bounded: a peer
    whose queue is full gets nothing (as UNITS_ASK); past
    SM_HOLD_ASKS_PER_SHOPPER_MIN asks for one shopper in a minute, or
    SM_HOLD_ASKS_PER_MIN of one peer (a flood guard), the answer is
    SM_EBUSY, nothing appended; the [holds] limits apply as to a phone
    here (SM_EHOLDLIMIT).  A hold never asks other stalls for units.
    Idempotent: an ask delivered again (the same asker and req_id, e.g.
    after a reconnect) is answered as the first time, from the answers
    remembered (SM_HOLD_ASK_ANSWERS_MAX) or, for an ask with a pickup code,
    from the open hold it made (after a restart); it appends nothing and
    takes no budget.  No ask is ever left open.                             */
static int
s_on_hold_ask(sm_gossip *self, s_peer *p, const sm_wire_msg *m, uint64_t now_ms)
{
    if (p->qbytes + S_MSG_FIXED_MAX > SM_MESH_QUEUE_BYTES_MAX) {
        self->stats.messages_dropped++;
        return 0;
    }
    self->stats.messages_received++;
    const uint64_t req_id = m->u.hold_ask.req_id;
    const s_hold_answer *again = s_hold_answer_find(self, SM_MSG_HOLD_ASK, &p->pub.node,
                                                    req_id);
    if (again) {
        sm_log_debug("mesh: hold ask delivered again: the first answer stands");
        s_hold_done_send(self, p, req_id, again->code, again->seq, again->expires_ms);
        return 0;
    }
    bool made;
    uint64_t made_seq = 0, made_expires_ms = 0;
    int frc = s_same_hold_find(self, m, &made, &made_seq, &made_expires_ms);
    if (s_fatal(frc))
        return frc;
    if (frc == 0 && made) {
        sm_log_debug("mesh: hold ask delivered again: its hold %llu stands",
                     (unsigned long long) made_seq);
        s_hold_answer_send(self, p, SM_MSG_HOLD_ASK, req_id, 0, made_seq, made_expires_ms);
        return 0;
    }
    if (now_ms < p->hold_window_ms || now_ms - p->hold_window_ms >= 60000u) {
        p->hold_window_ms = now_ms;
        p->hold_asks = 0;
    }
    if (p->hold_asks >= SM_HOLD_ASKS_PER_MIN
        || !s_shopper_take(self, p, m->u.hold_ask.has_client ? m->u.hold_ask.client : NULL,
                           m->u.hold_ask.has_device ? m->u.hold_ask.device : NULL, now_ms)) {
        sm_log_debug("mesh: hold ask refused: over %u a minute for one shopper (or %u from one peer)",
                     SM_HOLD_ASKS_PER_SHOPPER_MIN, SM_HOLD_ASKS_PER_MIN);
        s_hold_answer_send(self, p, SM_MSG_HOLD_ASK, req_id, SM_EBUSY, 0, 0);
        return 0;
    }
    p->hold_asks++;
    /* As for UNITS_ASK: a node not yet sure of its own log appends nothing. */
    int rc = self->writable ? 0 : SM_ERECOVERING;
    uint64_t seq = 0, expires_ms = now_ms + self->hold_ttl_ms;
    if (rc == 0) {
        sm_body hold;
        memset(&hold, 0, sizeof hold);
        hold.kind = SM_KIND_HOLD;
        memcpy(hold.u.hold.sku, m->u.hold_ask.sku, sizeof hold.u.hold.sku);
        hold.u.hold.qty = m->u.hold_ask.qty;
        hold.u.hold.expires_ms = expires_ms;
        memcpy(hold.u.hold.code, m->u.hold_ask.code, sizeof hold.u.hold.code);
        hold.u.hold.has_device = m->u.hold_ask.has_device;
        hold.u.hold.has_client = m->u.hold_ask.has_client;
        memcpy(hold.u.hold.device, m->u.hold_ask.device, SM_HOLD_TAG_BYTES);
        memcpy(hold.u.hold.client, m->u.hold_ask.client, SM_HOLD_TAG_BYTES);
        hold.u.hold.more_count = m->u.hold_ask.more_count;
        for (uint32_t i = 0; i < m->u.hold_ask.more_count; i++) {
            memcpy(hold.u.hold.more[i].sku, m->u.hold_ask.more[i].sku,
                   sizeof hold.u.hold.more[i].sku);
            hold.u.hold.more[i].qty = m->u.hold_ask.more[i].qty;
        }
        sm_reserve_refusal why;
        rc = sm_reserve_admit(self->ledger, &self->self, &self->hold_limits, &hold,
                              now_ms, &why);
        if (rc == SM_EHOLDLIMIT)
            sm_log_debug("mesh: forwarded hold over the '%s' limit (%u)", why.limit, why.max);
        /* A live first-come drop's caps, as for a phone here (the policy's). */
        if (rc == 0 && self->hold_check)
            rc = self->hold_check(self->hold_check_arg, &hold, now_ms);
        if (rc == SM_EDROPLIMIT)
            rc = SM_EHOLDLIMIT;    /* HOLD_DONE's refusals stop at 127 (proto/mesh.md) */
        if (rc == 0)
            rc = sm_ledger_append(self->ledger, &hold, now_ms, &seq);
    }
    if (s_fatal(rc))
        return rc;
    if (rc == 0)
        s_push_origin(self, self->self_oi);
    else
        sm_log_debug("mesh: hold ask not served: %s", sm_strerror(rc));
    s_hold_answer_send(self, p, SM_MSG_HOLD_ASK, req_id, rc, seq, expires_ms);
    return 0;
}

/*  HOLD_DONE from p: the answer to a hold this node forwarded to p.  A
    late, repeated or foreign one records nothing.                          */
static int
s_on_hold_done(sm_gossip *self, s_peer *p, const sm_wire_msg *m)
{
    self->stats.messages_received++;
    for (uint32_t i = 0; i < SM_HOLD_FWDS_MAX; i++) {
        s_hold_fwd *h = &self->holds[i];
        if (!h->used || h->answered || h->type != SM_MSG_HOLD_ASK
            || h->wire_id != m->u.hold_done.req_id || !s_id_eq(&h->at, &p->pub.node))
            continue;
        h->answered = true;
        h->code = m->u.hold_done.code;
        h->seq = m->u.hold_done.seq;
        h->expires_ms = m->u.hold_done.expires_ms;
        break;
    }
    return 0;
}

/*  ENTRY_ASK [req_id, drop_origin, drop_seq, device, client] from p: append
    a raffle.entry for the entrant p forwarded (a mirror's viewer) on this
    node's own log, judged by this node's clock and state as an entry of
    its own phone (proto/log.md 4.1: drop_not_started, drop_closed,
    already_entered), and answer ENTRY_DONE with its seq or the refusal.
    Bounded and idempotent as HOLD_ASK is (s_on_hold_ask): a full queue
    gets nothing; the flood guard per peer and the budget per entrant are
    the forwarded holds' (SM_EBUSY); an ask delivered again is answered
    from the answers remembered and appends nothing.  (Past those, the
    ledger's one entry per device makes a second append impossible.)  After
    a restart, when the answers remembered are gone, an ask whose device
    and address match an entry this node made is answered with that entry
    (sm_ledger_raffle_entry_find), as a repeat on the direct route is.      */
static int
s_on_entry_ask(sm_gossip *self, s_peer *p, const sm_wire_msg *m, uint64_t now_ms)
{
    if (p->qbytes + S_MSG_FIXED_MAX > SM_MESH_QUEUE_BYTES_MAX) {
        self->stats.messages_dropped++;
        return 0;
    }
    self->stats.messages_received++;
    const uint64_t req_id = m->u.entry_ask.req_id;
    const s_hold_answer *again = s_hold_answer_find(self, SM_MSG_ENTRY_ASK, &p->pub.node,
                                                    req_id);
    if (again) {
        sm_log_debug("mesh: entry ask delivered again: the first answer stands");
        s_entry_done_send(self, p, req_id, again->code, again->seq);
        return 0;
    }
    if (now_ms < p->hold_window_ms || now_ms - p->hold_window_ms >= 60000u) {
        p->hold_window_ms = now_ms;
        p->hold_asks = 0;
    }
    if (p->hold_asks >= SM_HOLD_ASKS_PER_MIN
        || !s_shopper_take(self, p, m->u.entry_ask.has_client ? m->u.entry_ask.client : NULL,
                           m->u.entry_ask.device, now_ms)) {
        s_hold_answer_send(self, p, SM_MSG_ENTRY_ASK, req_id, SM_EBUSY, 0, 0);
        return 0;
    }
    p->hold_asks++;
    int rc = self->writable ? 0 : SM_ERECOVERING;
    uint64_t seq = 0;
    bool appended = false;
    if (rc == 0) {
        sm_body e;
        memset(&e, 0, sizeof e);
        e.kind = SM_KIND_RAFFLE_ENTRY;
        e.u.raffle_entry.drop_origin = m->u.entry_ask.drop_origin;
        e.u.raffle_entry.drop_seq = m->u.entry_ask.drop_seq;
        memcpy(e.u.raffle_entry.device, m->u.entry_ask.device, SM_HOLD_TAG_BYTES);
        e.u.raffle_entry.has_client = m->u.entry_ask.has_client;
        memcpy(e.u.raffle_entry.client, m->u.entry_ask.client, SM_HOLD_TAG_BYTES);
        rc = sm_ledger_append(self->ledger, &e, now_ms, &seq);
        appended = rc == 0;
        /* An ask answered before a restart, its answer lost on the way:
           the entry made then is the answer. */
        rc = sm_ledger_raffle_entry_repeat(self->ledger, &self->self, &e, rc, &seq);
    }
    if (s_fatal(rc))
        return rc;
    if (appended)
        s_push_origin(self, self->self_oi);
    else
        sm_log_debug("mesh: entry ask not served: %s", sm_strerror(rc));
    s_hold_answer_send(self, p, SM_MSG_ENTRY_ASK, req_id, rc, seq, 0);
    return 0;
}

/*  ENTRY_DONE from p: the answer to an entry this node forwarded to p.  A
    late, repeated or foreign one records nothing.                          */
static int
s_on_entry_done(sm_gossip *self, s_peer *p, const sm_wire_msg *m)
{
    self->stats.messages_received++;
    for (uint32_t i = 0; i < SM_HOLD_FWDS_MAX; i++) {
        s_hold_fwd *h = &self->holds[i];
        if (!h->used || h->answered || h->type != SM_MSG_ENTRY_ASK
            || h->wire_id != m->u.entry_done.req_id || !s_id_eq(&h->at, &p->pub.node))
            continue;
        h->answered = true;
        h->code = m->u.entry_done.code;
        h->seq = m->u.entry_done.seq;
        break;
    }
    return 0;
}

static int
s_on_fork(sm_gossip *self, s_peer *p, const sm_wire_msg *m, uint64_t now_ms)
{
    const sm_id *origin = &m->u.fork.origin;
    const sm_signed *sides[2] = { &m->u.fork.a, &m->u.fork.b };
    for (int i = 0; i < 2; i++) {
        const sm_signed *s = sides[i];
        if (sm_entry_decode(s->bytes, s->len, &self->entry) != 0
            || !s_id_eq(&self->entry.origin, origin)
            || !s_id_eq(&self->entry.market, &self->market)
            || self->entry.seq != m->u.fork.seq)
            return SM_EMALFORMED;
        if (sm_entry_verify(s->bytes, s->len, s->sig, origin) != 0)
            return SM_ESIG;
    }
    int oi = s_origin_from_peer(self, origin);
    if (oi < 0)
        return SM_ETOOBIG;
    self->stats.messages_received++;
    int rc = s_fork_learn(self, (uint32_t) oi, m->u.fork.seq, sides[0], sides[1],
                          p, false, now_ms);
    return rc > 0 ? 0 : rc;
}

/*  One piece of the ledger's fork evidence, kept at start (recorded).     */
static int
s_fork_load(const sm_id *origin, uint64_t seq, const sm_signed *a, const sm_signed *b,
            void *arg)
{
    sm_gossip *self = arg;
    int oi = s_origin(self, origin, true);
    s_fork *f = NULL;
    if (oi < 0)
        return 0;
    int rc = s_fork_keep(self, (uint32_t) oi, seq, a, b, true, &f);
    return rc < 0 ? rc : 0;
}

/* ---- public API --------------------------------------------------------- */

sm_gossip *
sm_gossip_new(const sm_gossip_opts *opts, int *err)
{
    assert(opts && opts->ledger);
    int rc = 0;
    sm_market market;
    sm_gossip *self = NULL;
    if (strnlen(opts->endpoint, sizeof opts->endpoint) > SM_ENDPOINT_BYTES_MAX) {
        rc = SM_EINVAL;
        goto fail;
    }
    if ((rc = sm_ledger_market(opts->ledger, &market)) != 0)
        goto fail;
    self = calloc(1, sizeof *self);
    if (!self) {
        rc = SM_ENOMEM;
        goto fail;
    }
    self->run_bytes = malloc(SM_WIRE_RUN_BYTES_SOFT + SM_ENTRY_BYTES_MAX);
    self->shoppers = calloc(SM_HOLD_ASK_SHOPPERS_MAX, sizeof *self->shoppers);
    self->hold_answers = calloc(SM_HOLD_ASK_ANSWERS_MAX, sizeof *self->hold_answers);
    if (!self->run_bytes || !self->shoppers || !self->hold_answers) {
        rc = SM_ENOMEM;
        goto fail;
    }
    self->ledger = opts->ledger;
    self->self = opts->self;
    self->market = market.market;
    memcpy(self->endpoint, opts->endpoint, sizeof self->endpoint);
    self->units_floor = opts->units_floor;
    self->units_per_min = opts->units_per_min ? opts->units_per_min
                                              : SM_UNITS_PER_MIN_DEFAULT;
    self->hold_ttl_ms = (uint64_t) (opts->hold_ttl_s ? opts->hold_ttl_s
                                                     : SM_HOLD_TTL_S_DEFAULT) * 1000u;
    self->hold_limits = sm_reserve_limits_or_default(&opts->hold_limits);
    self->heads_interval_ms = opts->heads_interval_ms ? opts->heads_interval_ms
                                                      : SM_HEADS_INTERVAL_MS;
    self->self_oi = (uint32_t) s_origin(self, &self->self, true);
    (void) s_origin(self, &self->market, true);
    if ((rc = s_local_refresh(self)) != 0)
        goto fail;
    /* Evidence the ledger holds is passed on after a restart too (to each
       peer whose session opens): the table lives in memory only. */
    if ((rc = sm_ledger_fork_evidence_each(self->ledger, s_fork_load, self)) != 0)
        goto fail;
    if (err)
        *err = 0;
    return self;
fail:
    if (self) {
        for (uint32_t i = 0; i < SM_FORK_EVIDENCE_MAX; i++)
            s_fork_free(&self->forks[i]);
        free(self->run_bytes);
        free(self->shoppers);
        free(self->hold_answers);
        free(self);
    }
    if (err)
        *err = rc;
    return NULL;
}

void
sm_gossip_destroy(sm_gossip **self_p)
{
    assert(self_p);
    sm_gossip *self = *self_p;
    if (!self)
        return;
    s_enter(self);
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *p = &self->peers[i];
        s_queue_clear(p);
        free(p->has);
        free(p->known);
        free(p->checked);
        free(p->stalled);
    }
    for (uint32_t i = 0; i < SM_FORK_EVIDENCE_MAX; i++)
        s_fork_free(&self->forks[i]);
    free(self->run_bytes);
    free(self->shoppers);
    free(self->hold_answers);
    free(self);
    *self_p = NULL;
}

void
sm_gossip_peer_up(sm_gossip *self, const sm_id *node, const char *endpoint,
                  uint64_t now_ms)
{
    assert(self && node);
    s_enter(self);
    if (s_id_eq(node, &self->self))
        return;
    s_peer *p = s_peer_get(self, node, true);
    if (!p) {
        sm_log_warn("mesh: %u peers already; a new one is ignored", SM_PEERS_MAX);
        return;
    }
    bool was_up = p->pub.up;
    s_session_reset(p);
    p->pub.up = true;
    if (was_up)
        s_relays_peer_gone(self, s_peer_slot(self, p));
    if (endpoint && endpoint[0] && strlen(endpoint) <= SM_ENDPOINT_BYTES_MAX)
        s_set_endpoint(self, p, endpoint);
    s_send_hello(self, p);
    p->next_hello_ms = now_ms + self->heads_interval_ms;
    if (was_up)
        s_plan_all(self, now_ms);      /* its WANTs were dropped with the session */
}

void
sm_gossip_peer_down(sm_gossip *self, const sm_id *node, uint64_t now_ms)
{
    assert(self && node);
    s_enter(self);
    s_peer *p = s_peer_find(self, node);
    if (!p || !p->pub.up)
        return;
    bool had_wants = p->want_count > 0;
    s_session_reset(p);
    p->pub.up = false;
    s_relays_peer_gone(self, s_peer_slot(self, p));
    if (had_wants)
        s_plan_all(self, now_ms);
}

int
sm_gossip_receive(sm_gossip *self, const sm_id *from, const uint8_t *msg,
                  size_t len, uint64_t now_ms)
{
    assert(self && from && (msg || len == 0));
    s_enter(self);
    s_peer *p = s_peer_find(self, from);
    if (!p || !p->pub.up || p->pub.refusal != 0) {
        self->stats.messages_refused++;
        return SM_ESTATE;
    }
    sm_wire_msg m;
    int rc = sm_wire_decode(msg, len, &self->space, &m);
    if (rc == SM_EVERSION && m.type == SM_MSG_HELLO)
        return s_on_hello(self, p, &m, rc, now_ms);
    if (rc == 0 && m.type != SM_MSG_HELLO && !p->hello_ok)
        rc = SM_ESTATE;
    if (rc == 0) {
        switch (m.type) {
        case SM_MSG_HELLO:      return s_on_hello(self, p, &m, 0, now_ms);
        case SM_MSG_HEADS:      rc = s_on_heads(self, p, &m, now_ms); break;
        case SM_MSG_WANT:       rc = s_on_want(self, p, &m); break;
        case SM_MSG_ENTRIES:    rc = s_on_entries(self, p, &m, len, now_ms); break;
        case SM_MSG_PEERS:      rc = s_on_peers(self, &m); break;
        case SM_MSG_UNITS_ASK:  rc = s_on_units_ask(self, p, &m, now_ms); break;
        case SM_MSG_UNITS_GIVE: rc = s_on_units_give(self, p, &m); break;
        case SM_MSG_FORK:       rc = s_on_fork(self, p, &m, now_ms); break;
        case SM_MSG_HOLD_ASK:   rc = s_on_hold_ask(self, p, &m, now_ms); break;
        case SM_MSG_HOLD_DONE:  rc = s_on_hold_done(self, p, &m); break;
        case SM_MSG_ENTRY_ASK:  rc = s_on_entry_ask(self, p, &m, now_ms); break;
        case SM_MSG_ENTRY_DONE: rc = s_on_entry_done(self, p, &m); break;
        default:                rc = SM_EKIND; break;
        }
        if (rc == 0 || s_fatal(rc)) {
            p->pub.last_seen_ms = now_ms;
            return rc;
        }
    }
    char hex[SM_ID_HEX_BYTES + 1];
    sm_hex_encode(from->b, SM_KEY_BYTES, hex);
    sm_log_debug("mesh: %s from %s refused: %s", rc == 0 || rc == SM_ESTATE
                 ? sm_wire_type_name(m.type) : "message", hex, sm_strerror(rc));
    p->pub.refused++;
    self->stats.messages_refused++;
    return rc;
}

void
sm_gossip_local(sm_gossip *self, uint64_t now_ms)
{
    assert(self);
    (void) now_ms;
    s_enter(self);
    s_push_origin(self, self->self_oi);
}

/*  The caller's clock is the wall clock, which an NTP correction may step
    back: a timer set before the step would wait as long as the step.  A
    deadline further ahead than its own interval is due now; a time "since"
    that lies in the future starts now.                                     */
static void
s_rewind(uint64_t *deadline, uint64_t now_ms, uint64_t interval)
{
    if (*deadline > now_ms + interval)
        *deadline = now_ms;
}

static void
s_rewind_since(uint64_t *since, uint64_t now_ms)
{
    if (*since > now_ms)
        *since = now_ms;
}

void
sm_gossip_tick(sm_gossip *self, uint64_t now_ms)
{
    assert(self);
    s_enter(self);
    bool expired = false;
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *p = &self->peers[i];
        s_rewind(&p->next_hello_ms, now_ms, self->heads_interval_ms);
        s_rewind(&p->next_forks_ms, now_ms, SM_FORK_RESEND_MS);
        s_rewind(&p->next_heads_ms, now_ms, self->heads_interval_ms);
        for (uint32_t k = 0; k < p->want_count; k++)
            s_rewind_since(&p->wants[k].sent_ms, now_ms);
        /* A peer sends HEADS once it has checked our HELLO: until they
           come, ours may have been lost (a transport may drop). */
        /* A peer that restarted again within the floor is answered now
           (else it would wait for our next HELLO, a HEADS interval). */
        if (p->used && p->pub.up && p->hello_deferred
            && now_ms - p->hello_answer_ms >= S_HELLO_ANSWER_MIN_MS)
            s_session_restart(self, p, now_ms);
        if (p->used && p->pub.up && p->pub.refusal == 0 && !p->heads_seen
            && now_ms >= p->next_hello_ms) {
            s_send_hello(self, p);
            p->next_hello_ms = now_ms + self->heads_interval_ms;
        }
        if (!s_ready(p))
            continue;
        s_rewind_since(&p->answer_ms, now_ms);
        s_rewind_since(&p->answered_sent_ms, now_ms);
        for (uint32_t k = p->want_count; k-- > 0;) {
            bool own = s_own_fetch(self, p->wants[k].oi);
            uint64_t age = own ? s_want_wait(p, &p->wants[k], now_ms)
                               : now_ms - p->wants[k].sent_ms;
            if (age >= s_want_timeout(self, p->wants[k].oi)) {
                s_want_remove(p, k);
                self->stats.wants_expired++;
                expired = true;
            } else if (own && age >= SM_OWN_WANT_HEDGE_MS) {
                expired = true;          /* planned again: another peer is asked too */
            }
        }
        if (now_ms >= p->next_heads_ms) {
            s_send_heads(self, p);
            p->next_heads_ms = now_ms + self->heads_interval_ms;
        }
        /* PEERS goes once at the session's start; if it was lost, two nodes
           would reach each other only through a relay: it goes again now
           and then, and soon after the endpoints this node knows change. */
        s_rewind(&p->next_peers_ms, now_ms, SM_PEERS_RESEND_MS);
        if (p->heads_seen && (now_ms >= p->next_peers_ms || p->peers_gen != self->endpoints_gen))
            s_send_peers(self, p, now_ms);
        /* Evidence is passed on once when learned and at each session's
           start; a FORK lost on the way in between would leave a peer that
           cannot find the fork itself (it holds one side only) without
           it: it is sent again to every peer now and then. */
        if (now_ms >= p->next_forks_ms) {
            for (uint32_t k = 0; k < SM_FORK_EVIDENCE_MAX; k++)
                if (self->forks[k].used)
                    s_send_fork(self, p, &self->forks[k]);
            p->next_forks_ms = now_ms + SM_FORK_RESEND_MS;
        }
    }
    for (uint32_t i = 0; i < SM_UNITS_ASKS_MAX; i++) {
        s_ask *a = &self->asks[i];
        s_rewind_since(&a->made_ms, now_ms);
        if (a->used && now_ms - a->made_ms >= SM_UNITS_ASK_TTL_MS)
            memset(a, 0, sizeof *a);
    }
    for (uint32_t i = 0; i < SM_HOLD_FWDS_MAX; i++) {
        s_hold_fwd *h = &self->holds[i];
        s_rewind_since(&h->made_ms, now_ms);
        if (h->used && now_ms - h->made_ms >= SM_UNITS_ASK_TTL_MS)
            memset(h, 0, sizeof *h);
    }
    for (uint32_t i = 0; i < SM_UNITS_SEEN_MAX; i++) {
        s_seen *r = &self->seen[i];
        s_rewind_since(&r->made_ms, now_ms);
        if (r->used && now_ms - r->made_ms >= SM_UNITS_ASK_TTL_MS)
            memset(r, 0, sizeof *r);
    }
    for (uint32_t i = 0; i < SM_UNITS_ASKS_MAX; i++) {
        s_relay *r = &self->relays[i];
        s_rewind(&r->deadline_ms, now_ms, (uint64_t) SM_UNITS_HOP_WAIT_MS * SM_UNITS_HOPS_MAX);
        if (r->used && now_ms >= r->deadline_ms)
            s_relay_finish(self, r);
    }
    if (expired)
        s_plan_all(self, now_ms);
}

static bool
s_pop(sm_gossip *self, s_peer *p, sm_id *to, const uint8_t **msg, size_t *len)
{
    s_msg *m = p->qhead;
    if (!m)
        return false;
    /* The oldest of all is the oldest of its rank. */
    assert(p->rank_head[m->rank] == m);
    s_queue_unlink_oldest(p, m->rank);
    self->out = m;
    if (to)
        *to = p->pub.node;
    *msg = m->bytes;
    *len = m->len;
    self->stats.messages_sent++;
    return true;
}

bool
sm_gossip_next(sm_gossip *self, sm_id *to, const uint8_t **msg, size_t *len)
{
    assert(self && to && msg && len);
    s_enter(self);
    for (uint32_t k = 0; k < SM_PEERS_MAX; k++) {
        uint32_t i = (self->rr + k) % SM_PEERS_MAX;
        if (s_pop(self, &self->peers[i], to, msg, len)) {
            self->rr = (i + 1) % SM_PEERS_MAX;
            return true;
        }
    }
    return false;
}

bool
sm_gossip_next_to(sm_gossip *self, const sm_id *to, const uint8_t **msg,
                  size_t *len)
{
    assert(self && to && msg && len);
    s_enter(self);
    s_peer *p = s_peer_find(self, to);
    return p && s_pop(self, p, NULL, msg, len);
}

int
sm_gossip_ask_units(sm_gossip *self, uint64_t req_id, const char *sku,
                    uint32_t qty, uint64_t now_ms)
{
    assert(self && sku);
    s_enter(self);
    size_t sku_len = strnlen(sku, SM_SKU_BYTES_MAX + 1);
    if (sku_len == 0 || sku_len > SM_SKU_BYTES_MAX || qty == 0 || qty > SM_QTY_MAX)
        return SM_EINVAL;
    if (s_ask_find(self, req_id))
        return SM_EEXIST;
    s_ask *a = NULL;
    for (uint32_t i = 0; i < SM_UNITS_ASKS_MAX && !a; i++)
        if (!self->asks[i].used)
            a = &self->asks[i];
    if (!a)
        return SM_EBUSY;
    /* The wire id names the ask market-wide with this node's id, also to
       nodes that served an ask of this node before it restarted (and its
       caller's ids began again): it grows with the clock, 1024 an ms. */
    uint64_t wire_id = s_max64(self->wire_id_last + 1, now_ms << 10);
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_UNITS_ASK;
    msg.u.units.req_id = wire_id;
    memcpy(msg.u.units.sku, sku, sku_len);
    msg.u.units.asker = self->self;
    msg.u.units.hops = SM_UNITS_HOPS_MAX;
    if (s_asks_send(self, &msg, qty, NULL, NULL) == 0)
        return SM_ENOTFOUND;
    self->wire_id_last = wire_id;
    memset(a, 0, sizeof *a);
    a->used = true;
    a->req_id = req_id;
    a->wire_id = wire_id;
    memcpy(a->sku, sku, sku_len);
    a->made_ms = now_ms;
    return 0;
}

uint32_t
sm_gossip_units_given(sm_gossip *self, uint64_t req_id)
{
    assert(self);
    s_enter(self);
    const s_ask *a = s_ask_find(self, req_id);
    if (!a)
        return 0;
    return a->given > UINT32_MAX ? UINT32_MAX : (uint32_t) a->given;
}

void
sm_gossip_ask_done(sm_gossip *self, uint64_t req_id)
{
    assert(self);
    s_enter(self);
    s_ask *a = s_ask_find(self, req_id);
    if (a)
        memset(a, 0, sizeof *a);
}

static s_hold_fwd *
s_hold_find(sm_gossip *self, uint64_t req_id)
{
    for (uint32_t i = 0; i < SM_HOLD_FWDS_MAX; i++)
        if (self->holds[i].used && self->holds[i].req_id == req_id)
            return &self->holds[i];
    return NULL;
}

/*  Send `msg` (a HOLD_ASK or ENTRY_ASK) to `at` under a fresh wire id
    (written to *wire_field) and remember it as the caller's `req_id`.     */
static int
s_fwd_send(sm_gossip *self, uint64_t req_id, const sm_id *at, sm_wire_msg *msg,
           uint64_t *wire_field, uint64_t now_ms)
{
    if (s_hold_find(self, req_id))
        return SM_EEXIST;
    s_peer *p = s_peer_find(self, at);
    if (!p || !s_ready(p) || p->qbytes + S_MSG_FIXED_MAX > SM_MESH_QUEUE_BYTES_MAX)
        return SM_ENOTFOUND;
    s_hold_fwd *h = NULL;
    for (uint32_t i = 0; i < SM_HOLD_FWDS_MAX && !h; i++)
        if (!self->holds[i].used)
            h = &self->holds[i];
    if (!h)
        return SM_EBUSY;
    uint64_t wire_id = s_max64(self->wire_id_last + 1, now_ms << 10);
    *wire_field = wire_id;
    s_send(self, p, msg, S_MSG_FIXED_MAX, S_KEEP);
#if defined(SM_SIM_BUG) && SM_SIM_BUG == 12
    /* planted: a raffle entry is asked of every writer in session, not of
       `at` only: two of them may each append one for the same device */
    for (uint32_t i = 0; i < SM_PEERS_MAX && msg->type == SM_MSG_ENTRY_ASK; i++)
        if (&self->peers[i] != p && self->peers[i].used && s_ready(&self->peers[i]))
            s_send(self, &self->peers[i], msg, S_MSG_FIXED_MAX, S_KEEP);
#endif
    self->wire_id_last = wire_id;
    memset(h, 0, sizeof *h);
    h->used = true;
    h->type = (uint8_t) msg->type;
    h->req_id = req_id;
    h->wire_id = wire_id;
    h->at = *at;
    h->made_ms = now_ms;
    return 0;
}

int
sm_gossip_ask_hold(sm_gossip *self, uint64_t req_id, const sm_id *at, const char *sku,
                   uint32_t qty, uint64_t now_ms)
{
    assert(self && at && sku);
    sm_body hold;
    memset(&hold, 0, sizeof hold);
    hold.kind = SM_KIND_HOLD;
    if (strnlen(sku, SM_SKU_BYTES_MAX + 1) > SM_SKU_BYTES_MAX)
        return SM_EINVAL;
    snprintf(hold.u.hold.sku, sizeof hold.u.hold.sku, "%s", sku);
    hold.u.hold.qty = qty;
    return sm_gossip_ask_hold_for(self, req_id, at, &hold, now_ms);
}

int
sm_gossip_ask_hold_for(sm_gossip *self, uint64_t req_id, const sm_id *at,
                       const sm_body *hold, uint64_t now_ms)
{
    assert(self && at && hold && hold->kind == SM_KIND_HOLD);
    const char *sku = hold->u.hold.sku;
    uint32_t qty = hold->u.hold.qty;
    if (hold->u.hold.more_count > SM_HOLD_LINES_MAX - 1)
        return SM_EINVAL;
    s_enter(self);
    size_t sku_len = strnlen(sku, SM_SKU_BYTES_MAX + 1);
    if (sku_len == 0 || sku_len > SM_SKU_BYTES_MAX || qty == 0 || qty > SM_QTY_MAX
        || s_id_eq(at, &self->self))
        return SM_EINVAL;
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_HOLD_ASK;
    memcpy(msg.u.hold_ask.sku, sku, sku_len);
    msg.u.hold_ask.qty = qty;
    snprintf(msg.u.hold_ask.code, sizeof msg.u.hold_ask.code, "%s", hold->u.hold.code);
    msg.u.hold_ask.has_device = hold->u.hold.has_device;
    msg.u.hold_ask.has_client = hold->u.hold.has_client;
    memcpy(msg.u.hold_ask.device, hold->u.hold.device, SM_HOLD_TAG_BYTES);
    memcpy(msg.u.hold_ask.client, hold->u.hold.client, SM_HOLD_TAG_BYTES);
    msg.u.hold_ask.more_count = hold->u.hold.more_count;
    for (uint32_t i = 0; i < hold->u.hold.more_count; i++) {
        size_t n = strnlen(hold->u.hold.more[i].sku, SM_SKU_BYTES_MAX + 1);
        if (n == 0 || n > SM_SKU_BYTES_MAX || hold->u.hold.more[i].qty == 0
            || hold->u.hold.more[i].qty > SM_QTY_MAX)
            return SM_EINVAL;
        memcpy(msg.u.hold_ask.more[i].sku, hold->u.hold.more[i].sku, n);
        msg.u.hold_ask.more[i].qty = hold->u.hold.more[i].qty;
    }
    return s_fwd_send(self, req_id, at, &msg, &msg.u.hold_ask.req_id, now_ms);
}

int
sm_gossip_ask_entry(sm_gossip *self, uint64_t req_id, const sm_id *at, const sm_body *entry,
                    uint64_t now_ms)
{
    assert(self && at && entry && entry->kind == SM_KIND_RAFFLE_ENTRY);
    s_enter(self);
    if (s_id_eq(at, &self->self) || entry->u.raffle_entry.drop_seq == 0
        || entry->u.raffle_entry.drop_seq > SM_SEQ_MAX)
        return SM_EINVAL;
    sm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = SM_MSG_ENTRY_ASK;
    msg.u.entry_ask.drop_origin = entry->u.raffle_entry.drop_origin;
    msg.u.entry_ask.drop_seq = entry->u.raffle_entry.drop_seq;
    memcpy(msg.u.entry_ask.device, entry->u.raffle_entry.device, SM_HOLD_TAG_BYTES);
    msg.u.entry_ask.has_client = entry->u.raffle_entry.has_client;
    memcpy(msg.u.entry_ask.client, entry->u.raffle_entry.client, SM_HOLD_TAG_BYTES);
    return s_fwd_send(self, req_id, at, &msg, &msg.u.entry_ask.req_id, now_ms);
}

bool
sm_gossip_hold_result(sm_gossip *self, uint64_t req_id, int *code, uint64_t *seq,
                      uint64_t *expires_ms)
{
    assert(self && code && seq && expires_ms);
    s_enter(self);
    const s_hold_fwd *h = s_hold_find(self, req_id);
    if (!h || !h->answered)
        return false;
    *code = h->code;
    *seq = h->seq;
    *expires_ms = h->expires_ms;
    return true;
}

void
sm_gossip_hold_forget(sm_gossip *self, uint64_t req_id)
{
    assert(self);
    s_enter(self);
    s_hold_fwd *h = s_hold_find(self, req_id);
    if (h)
        memset(h, 0, sizeof *h);
}

int
sm_gossip_peers_each(sm_gossip *self, sm_gossip_peer_fn cb, void *arg)
{
    assert(self && cb);
    s_enter(self);
    for (uint32_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *p = &self->peers[i];
        if (!p->used)
            continue;
        p->pub.wants_in_flight = p->want_count;
        p->pub.queued_bytes = p->qbytes;
        sm_gossip_peer copy = p->pub;
        int rc = cb(&copy, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int
sm_gossip_add_peer(sm_gossip *self, const sm_id *node, const char *endpoint)
{
    assert(self && node && endpoint);
    s_enter(self);
    size_t n = strnlen(endpoint, SM_ENDPOINT_BYTES_MAX + 1);
    if (s_id_eq(node, &self->self) || n == 0 || n > SM_ENDPOINT_BYTES_MAX)
        return SM_EINVAL;
    s_peer *p = s_peer_get(self, node, true);
    if (!p)
        return SM_EBUSY;
    p->configured = true;
    s_set_endpoint(self, p, endpoint);
    return 0;
}

bool
sm_gossip_own_recovered(sm_gossip *self)
{
    assert(self);
    s_enter(self);
    if (self->recovered)
        return true;
    if (!self->heads_any)
        return false;
    sm_head h;
    if (sm_ledger_head(self->ledger, &self->self, &h) != 0)
        return false;
    self->recovered = h.seq >= self->own_reported;
    return self->recovered;
}

void
sm_gossip_set_hold_check(sm_gossip *self, sm_gossip_hold_check_fn fn, void *arg)
{
    assert(self);
    self->hold_check = fn;
    self->hold_check_arg = arg;
}

void
sm_gossip_set_writable(sm_gossip *self, bool writable)
{
    assert(self);
    s_enter(self);
    self->writable = writable;
}

bool
sm_gossip_heads_heard(sm_gossip *self)
{
    assert(self);
    s_enter(self);
    return self->heads_any;
}

void
sm_gossip_stats(sm_gossip *self, sm_gossip_counters *out)
{
    assert(self && out);
    s_enter(self);
    *out = self->stats;
}
