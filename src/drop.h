/*  Drops: a stall's scheduled, capped release of units, first-come or by a
    raffle anyone can check (proto/log.md: drop, raffle.entry, raffle.draw;
    README "Drops").

    The state keeps what the log says of each drop (state_drop.c); this
    module reads it for the API and does what needs more than one entry:

    - the raffle's secret: derived from the stall's key and the drop's seq,
      so it survives a restart and a restore; its drop commits to
      BLAKE2b-256(secret), its draw reveals it;
    - the draw, computed from the log alone (sm_drop_compute): the counted
      entries are the raffle.entry entries for the drop within the heads the
      draw names, with starts_ms <= hlc ms <= closes_ms, one per device (the
      earliest by (hlc, origin, seq)); R = BLAKE2b-256 of their entry hashes
      in ascending byte order, concatenated; each counted entry's rank is
      BLAKE2b-256(secret || R || entry hash); the winners are the first
      min(qty / per_shopper, counted) by rank (ties, never seen, by hash);
    - appending a draw (sm_drop_draw): the draw entry, then one hold a
      winner in rank order, each per_shopper units of the sku for the
      winner's device tag, with a pickup code and expiring pickup_minutes
      after the draw's time, all in the caller's batch;
    - checking a draw (sm_drop_verify) as any node can: the entries it uses
      authenticated by their chains, the secret against the commitment, the
      counted entries and winners recomputed, the holds that follow.

    A drop's ledger comes from the drop stall's log after the drop
    (sm_drop_ledger): every hold and sale of its sku there from the start;
    the first-come caps are checked at append from tallies kept of the
    same entries (tally.h).  No clock: time comes in as arguments.                   */
#ifndef SM_DROP_H
#define SM_DROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"

typedef struct {
    sm_id origin;              /* the stall: the drop's id is origin:seq */
    uint64_t seq;
    char sku[SM_SKU_BYTES_MAX + 1];
    uint32_t qty, per_shopper, pickup_minutes;
    int mode;                  /* sm_drop_mode */
    uint64_t starts_ms, closes_ms;
    uint64_t hlc;              /* of the drop entry */
    sm_hash commitment;        /* raffle */
    uint64_t draw_seq;         /* raffle: 0 = not drawn */
    uint64_t draw_hlc;
    uint32_t winners;
} sm_drop;

/*  *d from drop entry `seq` of origin's log (e->body is a drop): its
    fields, not yet drawn.                                                   */
void sm_drop_of_entry(sm_drop *d, const sm_id *origin, uint64_t seq, const sm_entry *e);

/*  The raffle's secret of drop `drop_seq` of the identity's log.          */
void sm_drop_secret(const sm_identity *id, const sm_id *market, uint64_t drop_seq,
                    sm_hash *out);

/*  One drop (SM_ENODROP if none) and all of them (by origin, then seq).   */
int sm_drop_get(sm_ledger *l, const sm_id *origin, uint64_t seq, sm_drop *out);
typedef int (*sm_drop_fn)(const sm_drop *d, void *arg);
int sm_drop_each(sm_ledger *l, sm_drop_fn cb, void *arg);

/*  The raffle entries the state holds for `d`: how many (one a device),
    and the nodes that appended them (at most max, sorted; *norigins may
    exceed max when there are more).                                       */
int sm_drop_entries(sm_ledger *l, const sm_drop *d, uint64_t *devices,
                    sm_id *origins, size_t max, size_t *norigins);
/*  Whether `device` (a tag) has an entry for d; the first one's node, seq
    and hlc when it does.                                                   */
int sm_drop_entered(sm_ledger *l, const sm_drop *d, const uint8_t device[SM_HOLD_TAG_BYTES],
                    bool *entered, sm_id *by, uint64_t *seq, uint64_t *hlc);

/*  Whether `device` entered d (any node's entry this node holds) and, for
    a drawn raffle, whether one of its entries was counted (within the
    draw's heads and the raffle's times); before the draw, whether one is
    within the times.                                                        */
int sm_drop_device_counted(sm_ledger *l, const sm_drop *d,
                           const uint8_t device[SM_HOLD_TAG_BYTES], bool *entered,
                           bool *counted);

/*  One counted entry of a draw.                                            */
typedef struct {
    sm_hash hash;              /* BLAKE2b-256 of the entry's bytes */
    sm_hash rank;
    sm_id origin;
    uint64_t seq, hlc;
    uint8_t device[SM_HOLD_TAG_BYTES];
    bool has_client;
    uint8_t client[SM_HOLD_TAG_BYTES];
} sm_drop_ticket;

typedef struct {
    sm_drop_ticket *tickets;   /* counted entries; ranked: winners first */
    size_t counted;
    size_t winners;            /* min(qty / per_shopper, counted) */
    sm_hash r;                 /* over the counted entries' hashes */
    bool ranked;               /* tickets sorted by rank (a secret was given) */
} sm_drop_result;
void sm_drop_result_free(sm_drop_result *res);

typedef struct { sm_id origin; uint64_t seq; } sm_drop_head;

/*  Compute a draw of `d` from the log: the counted entries within heads
    (sorted by origin, as a draw names them) and, with a secret, their
    ranks and order.  With `check_chains`, every entry read is authenticated
    (links from seq 1 and the newest one's signature): SM_ESIG / SM_ELINK
    name a log that does not verify (*bad_origin, *bad_seq).  SM_EGAP if this
    node holds less of an origin than a head names.                        */
int sm_drop_compute(sm_ledger *l, const sm_drop *d, const sm_drop_head *heads,
                    size_t nheads, const sm_hash *secret, bool check_chains,
                    sm_drop_result *out, sm_id *bad_origin, uint64_t *bad_seq);

/*  Append the draw of this node's raffle drop `drop_seq` and its winners'
    holds, inside the ledger batch the caller holds open.  *draw_seq gets the
    draw's seq as soon as the draw is appended: a failure with *draw_seq set
    (a hold refused: a bug, or the disk) left half a draw in the batch, which
    the caller must abort.  SM_ENODROP, SM_ENOTRAFFLE, SM_EDRAWN, SM_EDRAWEARLY (now_ms
    not after closes), SM_ETOOBIG (more than SM_DRAW_HEADS_MAX nodes took
    entries), SM_ENOSTOCK, or the ledger's refusal.                          */
int sm_drop_draw(sm_ledger *l, const sm_id *self, uint64_t drop_seq, uint64_t now_ms,
                 uint64_t *draw_seq);

/*  Check drop origin:seq's draw from the log.  0 when it matches, else
    SM_EDRAWBAD (or SM_ENODROP, SM_ENOTRAFFLE, a store error) with a
    sentence in why[0..cap) naming what does not match.  `res` (may be NULL)
    gets the recomputed result (free it).                                    */
int sm_drop_verify(sm_ledger *l, const sm_id *origin, uint64_t seq, char *why,
                   size_t cap, sm_drop_result *res);

/*  A hold or sale against a drop: of its sku, by its stall, from its start
    (or its draw).                                                           */
typedef struct {
    sm_kind kind;              /* SM_KIND_HOLD, SM_KIND_SALE or SM_KIND_RELEASE */
    uint64_t seq, hlc;
    uint32_t qty;              /* units of the drop's sku */
    sm_hash hash;              /* BLAKE2b-256 of the entry */
    uint64_t hold_seq;         /* a sale of a hold, a release: the hold */
    bool has_device, has_client;
    uint8_t device[SM_HOLD_TAG_BYTES], client[SM_HOLD_TAG_BYTES];
    char code[SM_HOLD_CODE_BYTES_MAX + 1];
    uint64_t expires_ms;
} sm_drop_take;
typedef int (*sm_drop_take_fn)(const sm_drop_take *t, void *arg);

/*  Walk the drop stall's log after the drop: every hold, release and sale
    of its sku with hlc at or after the start, in seq order (at most
    SM_DROP_LEDGER_MAX).  *taken gets the units taken by them (held or
    sold, released holds given back), *device_units and *client_units (may
    be NULL) those taken by holds of `device` / `client` (tags, may be NULL)
    that were not released.                                                 */
#define SM_DROP_LEDGER_MAX 200000u
int sm_drop_ledger(sm_ledger *l, const sm_drop *d, const uint8_t *device,
                   const uint8_t *client, sm_drop_take_fn cb, void *arg,
                   uint64_t *taken, uint64_t *device_units, uint64_t *client_units);

/*  Walks kept between calls (one thread at a time): per drop, what its
    walk of the stall's log found so far and where it stopped, so that the
    next sm_drop_taken reads only the entries appended since.  The walk
    starts over when the entry it read last is no longer the one this
    node's log holds at that seq (a repair, a restored store): each entry
    carries the hash of the one before, so the rest is unchanged while that
    one is.  At most 32 drops are kept; the least recently asked goes.     */
typedef struct sm_drop_walks sm_drop_walks;
sm_drop_walks *sm_drop_walks_new(void);
void sm_drop_walks_destroy(sm_drop_walks **self_p);
/*  sm_drop_ledger's *taken for d, from the walk kept in `walks` (NULL: a
    walk of the whole log, as sm_drop_ledger).  0 or a store error.          */
int sm_drop_taken(sm_drop_walks *walks, sm_ledger *l, const sm_drop *d, uint64_t *taken);

/*  Whether entry e (seq `seq` of the drop stall's log) is one of d's: a
    hold or sale with a line of its sku at or after its start (t->qty that
    line's units), or a release (t->hold_seq; t->qty 0: only the caller
    knows whether the hold was one of d's).  t->hash is not set.            */
bool sm_drop_take_of(const sm_drop *d, const sm_entry *e, uint64_t seq, sm_drop_take *t);

/*  A hold as a fold of a stall's log remembers it: its units (of the drop's
    sku, or of all its lines), expiry and shopper tags.                     */
typedef struct {
    uint64_t seq;
    uint32_t qty;
    uint64_t expires_ms;
    bool has_device, has_client;
    uint8_t device[SM_HOLD_TAG_BYTES], client[SM_HOLD_TAG_BYTES];
} sm_held;

/*  Holds in seq order, as the log appends them: a release or a sale finds
    its hold by binary search.                                              */
typedef struct {
    sm_held *v;
    size_t n, cap;
} sm_held_list;

/*  Append h (its seq above every other's): 0 or SM_ENOMEM.                 */
int sm_held_push(sm_held_list *l, const sm_held *h);
/*  The hold `seq`, or NULL.  Valid until the next push.                    */
sm_held *sm_held_find(const sm_held_list *l, uint64_t seq);
void sm_held_free(sm_held_list *l);

/*  A drop's ledger folded one entry at a time: the one rule of what its
    holds, releases and sales take, which sm_drop_ledger and the first-come
    tallies (tally.h) both count by.  A hold takes its units of the sku; a
    release gives its hold's back; a sale takes what its hold (if any) did
    not already.                                                            */
typedef struct {
    uint64_t taken;            /* held or sold, released holds given back */
    sm_held_list holds;        /* the drop's holds seen */
} sm_drop_fold;

/*  Fold entry e (seq `seq` of d's stall's log) into f.  1 when it is one of
    d's, with *t its take (a release's qty: its hold's units) and *held the
    hold whose units its shopper now holds (a hold) or gives back (a
    release), NULL for a sale; 0 when it is none of d's (nor a release of
    one of d's holds); or SM_ENOMEM.  t->hash is not set.                   */
int sm_drop_fold_entry(sm_drop_fold *f, const sm_drop *d, const sm_entry *e, uint64_t seq,
                       sm_drop_take *t, const sm_held **held);
void sm_drop_fold_free(sm_drop_fold *f);

/*  Why a hold was refused by a live first-come drop's caps (tally.h).     */
typedef struct {
    sm_drop drop;
    const char *limit;         /* "device", "address" or "qty"; NULL: none */
    uint32_t max;
    uint64_t wanted;
    char sku[SM_SKU_BYTES_MAX + 1];
} sm_drop_refusal;

/*  "live" / "upcoming" / "closed" (first-come: sold out; raffle: drawn or
    past its close) / "drawing" (raffle closed, not drawn).                  */
const char *sm_drop_phase(const sm_drop *d, uint64_t now_ms, uint64_t units_left);

#endif
