/*  The ledger: a node's signed operation logs and the state derived from
    them, in one LMDB environment (proto/log.md, README: log and state).

    Appending an entry (local) or ingesting a run (from a peer) writes the log
    and updates the materialized state in the same write transaction.  A
    batch (sm_ledger_begin .. sm_ledger_commit) groups many appends and
    ingests into one durable commit: group commit.  Outside a batch each call
    commits on its own.  Validation happens before any write, so a refused
    entry leaves the store exactly as it was; an I/O failure (disk full)
    aborts the whole batch and reports SM_ENOSPC / SM_EIO.

    The ledger is deterministic: it reads no clock and draws no randomness.
    Time comes in as `now_ms` (unix milliseconds).

    State rules (README: log and state), enforced here:
    - stock is a bounded counter per (sku, location); a node decrements or
      moves out only units it holds, so a local append that would take a
      location below zero is refused with SM_ENOSTOCK;
    - an ingested entry that would take its origin's location below zero
      (because the moves into it have not arrived yet) waits, stored in the
      log, and is applied as soon as they do: application per origin is in
      seq order and causally safe, and the state after all entries is the
      same in any delivery order;
    - returns and releases refer to the same origin's sales and holds;
    - only the organiser writes the roster; entries of origins that are not
      admitted are refused (SM_ENOTMEMBER) and fetched again later; a revoke
      voids its target's entries above `upto_seq`; an equivocation stores
      both entries as evidence and voids the origin from the fork on.

    Thread safety: one sm_ledger may be used by one writer thread and any
    number of reader threads (reads use their own LMDB read transactions).
    While a batch is open, reads on the thread that opened it see the
    batch's writes (a caller reads back what it ingested before the commit);
    reads on other threads see the last commit.                              */
#ifndef STALLMESH_LEDGER_H
#define STALLMESH_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/identity.h"

typedef struct sm_ledger sm_ledger;

typedef struct {
    uint64_t map_bytes;        /* LMDB map size; 0 = SM_MAP_BYTES_DEFAULT */
    bool read_only;
    bool no_sync;              /* tests and simulator only: commits skip fsync */
} sm_ledger_opts;

typedef struct {
    sm_id market;              /* the organiser's key */
    char name[SM_NAME_BYTES_MAX + 1];
    char currency[4];
    uint32_t endpoint_count;   /* organiser endpoints from the join token */
    char endpoints[SM_ENDPOINTS_MAX][SM_ENDPOINT_BYTES_MAX + 1];
} sm_market;

typedef struct {
    sm_id origin;
    uint64_t seq;              /* log head: entries 1..seq are stored */
    sm_hash link;              /* link hash of entry `seq` (zero if seq = 0) */
    uint64_t applied;          /* entries 1..applied are in the state */
    uint64_t cap;              /* entries above cap are void (revoke, fork) */
} sm_head;

typedef struct {
    size_t accepted;           /* entries newly stored */
    size_t duplicates;         /* entries already stored, identical */
    size_t applied;            /* entries newly applied (may include waiting ones) */
    int err;                   /* first refusal, 0 if none */
    uint64_t err_seq;          /* the seq it concerns */
} sm_ingest_result;

typedef struct {
    int64_t added, moved_in, moved_out, sold, returned, written_off, held;
    int64_t units;             /* added+moved_in+returned-moved_out-sold-written_off-held */
    uint64_t drop_starts_ms;   /* latest drop start at this location; 0 = none */
} sm_units;

/* Open (creating if absent) the ledger in directory `dir`. */
sm_ledger *sm_ledger_open(const char *dir, const sm_ledger_opts *opts, int *err);
/* Close; safe with NULL and twice.  An open batch is aborted. */
void sm_ledger_destroy(sm_ledger **self_p);

/*  Set the identity used to sign local appends (copied).  Without one,
    appends return SM_ENOIDENT.                                               */
void sm_ledger_set_identity(sm_ledger *self, const sm_identity *id);

/*  The market this node belongs to; SM_ENOMARKET if none yet.                */
int sm_ledger_market(sm_ledger *self, sm_market *out);

/*  Own-log recovery (proto/log.md).  A store is "confirmed" when it is known
    to hold this node's whole own log: it was created with a new identity
    (init), a peer has shown that nothing of ours is missing, or the
    operator said so (--allow-fresh).  A store recreated for an existing
    identity (wiped, lost) is not, and the node must fetch its own entries
    back before appending, or it would reissue their seqs (a fork).          */
int sm_ledger_own_confirmed(sm_ledger *self, bool *out);
int sm_ledger_confirm_own(sm_ledger *self);

/*  Make this node the organiser of a new market (market id = its key) and
    append the roster.admit of itself.  SM_EEXIST if it has a market.         */
int sm_ledger_create_market(sm_ledger *self, const char *name,
                            const char *currency, uint64_t now_ms);
/*  The same, admitting itself under `self_name` (its stall's or office's
    name, as `init --name` gave it) rather than the market's name.           */
int sm_ledger_create_market_as(sm_ledger *self, const char *name, const char *self_name,
                               const char *currency, uint64_t now_ms);

/*  Record membership of a market from a verified join token: the market,
    and the organiser's admit entry for this node (kept until the
    organiser's log arrives).  SM_EEXIST if already in a market.              */
int sm_ledger_join(sm_ledger *self, const sm_market *market,
                   const sm_signed *admit);
/*  The role (sm_role) the join token's admit entry gave this node, for a
    node that joined and has not yet synced the organiser's roster:
    SM_ENOTFOUND if it joined by no token (an organiser).                    */
int sm_ledger_join_role(sm_ledger *self, int *role);

/*  Group commit.  A batch belongs to the thread that began it.  SM_ESTATE
    if one is open already (begin) or none is (commit).                       */
int sm_ledger_begin(sm_ledger *self);
int sm_ledger_commit(sm_ledger *self);      /* durable on return 0, unless deferred */
void sm_ledger_abort(sm_ledger *self);

/*  Deferred sync, for the node's writer (core.c): with it on, a commit
    returns before its meta page is synced (whole after a power cut, but
    the last commit may be undone) and is durable once
    sm_ledger_durable says so: after the next commit that changes anything,
    or sm_ledger_sync.  Turning it off syncs first.  What a commit changed
    must not be acknowledged (answered, sent to a peer) before then.  The
    marks are transaction ids (as sm_ledger_version); the writer's thread
    only.  A no_sync ledger counts every commit durable.                    */
int sm_ledger_defer_sync(sm_ledger *self, bool on);
int sm_ledger_sync(sm_ledger *self);
/*  True if every commit so far is durable.  *committed and *durable (may be
    NULL) get the last commit's id and the last durable one's.              */
bool sm_ledger_durable(sm_ledger *self, uint64_t *committed, uint64_t *durable);
/*  The sync alone, for a thread of its own (any thread; it reads no mark):
    every commit made before the call is durable when it returns 0; the
    writer's thread then records it (sm_ledger_mark_durable with the last
    commit's id read before the call).                                       */
int sm_ledger_sync_file(sm_ledger *self);
void sm_ledger_mark_durable(sm_ledger *self, uint64_t upto);

/*  Append a local entry with `body`: assigns seq, prev and hlc, signs it,
    checks it against the state (SM_ENOSTOCK, SM_ENOSKU, SM_ENOSALE,
    SM_EOVERRETURN, SM_ENOHOLD, SM_EDROP, SM_ENOTORG ...), stores and
    applies it.  *seq_out (may be NULL) gets its seq.  A sale whose
    external_id this node has used before is not appended again: returns
    SM_EEXIST with *seq_out set to the first sale's seq.                      */
int sm_ledger_append(sm_ledger *self, const sm_body *body, uint64_t now_ms,
                     uint64_t *seq_out);
/*  The hybrid time this ledger last issued or merged: right after a
    successful sm_ledger_append, the appended entry's.  The writer's thread
    only.                                                                     */
uint64_t sm_ledger_hlc(const sm_ledger *self);

/*  A value only this node can compute (sm_identity_derive with the ledger's
    identity, which must be set).                                            */
void sm_ledger_derive(sm_ledger *self, const char *purpose, const uint8_t *msg,
                      size_t len, uint8_t out[32]);

/*  Ingest a contiguous run of one origin's entries, oldest first (from a
    peer).  Checks market, membership, links, gaps and the newest entry's
    signature once; duplicates are no-ops; a different entry at a stored seq
    is an equivocation (evidence kept, origin stopped, SM_EFORK).  Entries
    before the first refused one are kept.  Returns 0 or the first refusal
    (also in res->err).                                                       */
int sm_ledger_ingest(sm_ledger *self, const sm_signed *run, size_t n,
                     uint64_t now_ms, sm_ingest_result *res);

/*  The log head of one origin (zeroes and seq 0 if unknown).                 */
int sm_ledger_head(sm_ledger *self, const sm_id *origin, sm_head *out);

/*  All heads, sorted by origin; `cb` returns non-zero to stop.               */
typedef int (*sm_head_fn)(const sm_head *head, void *arg);
int sm_ledger_heads(sm_ledger *self, sm_head_fn cb, void *arg);

/*  Read an origin's log from seq `from`, at most `max` entries, calling `cb`
    with each (bytes borrowed for the call).  `cb` returns non-zero to stop.  */
typedef int (*sm_entry_fn)(const sm_signed *entry, uint64_t seq, void *arg);
int sm_ledger_read(sm_ledger *self, const sm_id *origin, uint64_t from,
                   size_t max, sm_entry_fn cb, void *arg);

/*  One entry of an origin's log, copied: `s.bytes` points into `bytes`.     */
typedef struct {
    uint8_t bytes[SM_ENTRY_BYTES_MAX];
    sm_signed s;
} sm_entry_copy;

/*  Entry `seq` of `origin` into *out (about 2 KiB: callers on small stacks
    allocate it): 0, or SM_ENOTFOUND if this store does not hold that seq.    */
int sm_ledger_read_one(sm_ledger *self, const sm_id *origin, uint64_t seq,
                       sm_entry_copy *out);

/*  Units of sku at one location.  SM_ENOTFOUND if never stocked there.       */
int sm_ledger_units(sm_ledger *self, const char *sku, const sm_id *location,
                    sm_units *out);

/*  Every (sku, location) stock record in key order (sku, then location).
    `cb` returns non-zero to stop.  One read transaction: a consistent view. */
typedef int (*sm_stock_fn)(const char *sku, const sm_id *location,
                           const sm_units *units, void *arg);
int sm_ledger_stock_each(sm_ledger *self, sm_stock_fn cb, void *arg);

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    char name[SM_NAME_BYTES_MAX + 1];
    int64_t price;             /* minor units */
    char currency[4];
    uint64_t hlc;              /* of the winning write */
    sm_id origin;              /* its author */
} sm_item;

/*  One catalog item (SM_ENOTFOUND if none), and all of them in sku order.   */
int sm_ledger_item(sm_ledger *self, const char *sku, sm_item *out);
typedef int (*sm_item_fn)(const sm_item *item, void *arg);
int sm_ledger_items_each(sm_ledger *self, sm_item_fn cb, void *arg);

/*  Fork evidence: each (origin, seq) where two validly linked entries
    differ.  `cb` returns non-zero to stop.                                   */
typedef int (*sm_fork_fn)(const sm_id *origin, uint64_t seq, void *arg);
int sm_ledger_forks_each(sm_ledger *self, sm_fork_fn cb, void *arg);
/*  The lowest seq at which this node holds fork evidence of origin: 0 with
    *seq set, SM_ENOTFOUND if none, or a store error.                        */
int sm_ledger_fork_at(sm_ledger *self, const sm_id *origin, uint64_t *seq);
/*  The same with both entries of each piece of evidence (bytes and
    signatures borrowed for the call): what the mesh passes on as FORK.
    `cb` returns 0 to go on; anything else stops the walk and is returned.
    SM_ECORRUPT if a stored record does not parse.                           */
typedef int (*sm_fork_evidence_fn)(const sm_id *origin, uint64_t seq,
                                   const sm_signed *a, const sm_signed *b, void *arg);
int sm_ledger_fork_evidence_each(sm_ledger *self, sm_fork_evidence_fn cb, void *arg);

/*  A BLAKE2b-256 digest of the canonical materialized state (catalog,
    stock, sales, returns, holds, drops, roster, applied heads): equal on
    two nodes that applied the same entries, in any order (ledger_view.c
    defines it: a hash of the sum of the records' hashes).  digest_at gives
    the version (sm_ledger_version) it is the digest of.  Both read the sum
    the store keeps (sm_ledger_keep_digest) when it is kept, in constant
    time; else they read the whole state, as digest_scan always does.        */
int sm_ledger_digest(sm_ledger *self, sm_hash *out);
int sm_ledger_digest_at(sm_ledger *self, sm_hash *out, uint64_t *version);
int sm_ledger_digest_scan(sm_ledger *self, sm_hash *out, uint64_t *version);
/*  The kept sum's digest alone: SM_ENOTFOUND if it is not kept, or lapsed
    (a write committed by another process), or kept moving past 16 reads. */
int sm_ledger_digest_kept(sm_ledger *self, sm_hash *out, uint64_t *version);
/*  Keep the digest's sum as writes go (one scan now, then a hash or two a
    record written): for a long-running writer whose digest is asked often,
    the node.  SM_EINVAL if read-only; 0 at once if kept already.                        */
int sm_ledger_keep_digest(sm_ledger *self);

/*  Rebuild the state from the log (drops and re-applies everything), after
    checking every chain and signature: a store holding an entry that does
    not verify is refused (that check's error) and left as it was.           */
int sm_ledger_reindex(sm_ledger *self);

/*  Integrity checks (ledger.c describes them), combined by flags:
    SM_CHECK_PAGES every page a reader can reach (may fault on a badly
    damaged file: integrity.c runs it in a child process); the chains of
    every origin always, with SM_CHECK_EVERY_SIG each signature (else the
    newest of each origin, which with the links authenticates the rest);
    SM_CHECK_STATE the state recomputed from the log (needs a writable
    store; writes nothing).  Returns 0 or the first failure, described in
    *report (origin and seq when an entry is at fault, 0 otherwise).          */
#define SM_CHECK_PAGES     1u
#define SM_CHECK_EVERY_SIG 2u
#define SM_CHECK_STATE     4u
/*  SM_CHECK_ALL_ORIGINS: a chain that fails does not stop the check: every
    origin's first bad entry is listed in damaged[] (the state is then not
    checked: it cannot be recomputed past the damage) and the check returns
    SM_EDEGRADED if nothing else failed.  What the node does at open.        */
#define SM_CHECK_ALL_ORIGINS 8u
#define SM_CHECK_DAMAGED_MAX 16u
typedef struct {
    sm_id origin;
    uint64_t seq;              /* its first entry that may be damaged */
    int err;
} sm_damage;
typedef struct {
    int err;                   /* 0 or the first failure */
    sm_id origin;              /* the entry at fault, if one is (seq > 0) */
    uint64_t seq;
    uint64_t checked;          /* entries whose chain was checked */
    bool state_checked;
    uint32_t damaged_count;    /* SM_CHECK_ALL_ORIGINS: origins with damage */
    sm_damage damaged[SM_CHECK_DAMAGED_MAX];
    char what[320];            /* a sentence naming what is wrong */
} sm_check_report;
int sm_ledger_check(sm_ledger *self, unsigned flags, sm_check_report *report);

/*  Degraded origins (a bad entry stops only its own origin).  The
    node marks each origin whose stored log fails its check at open, and
    the mesh one whose entry fails as it is served (the writer thread; other
    threads may read the marks meanwhile); the mesh then serves that origin
    only below the damage, and the API reports it.  At most SM_CHECK_DAMAGED_MAX origins
    (more: SM_ETOOBIG).  sm_ledger_damage returns the first damaged seq of
    origin (0 if none); sm_ledger_damage_each lists them.                    */
int sm_ledger_set_damaged(sm_ledger *self, const sm_damage *damage);
uint64_t sm_ledger_damage(const sm_ledger *self, const sm_id *origin);
size_t sm_ledger_damage_each(const sm_ledger *self, sm_damage *out, size_t max);

/*  Repair: copy `src`'s market membership (the market record, the
    organiser's admit of this node from its join token, the clock) into
    `dst`, which must have no market yet (SM_EEXIST).  The logs are copied
    by ingesting them, which checks them as a peer's would.                  */
int sm_ledger_copy_market(sm_ledger *dst, sm_ledger *src);

/*  Re-check every stored chain and every signature.  Returns 0, or the first
    failure with *bad_origin / *bad_seq naming the entry.                     */
int sm_ledger_verify(sm_ledger *self, sm_id *bad_origin, uint64_t *bad_seq,
                     uint64_t *checked);

/* ---- reads for the node's API (ledger_view.c) ------------------------- */

/*  A roster member.                                                          */
typedef struct {
    sm_id node;
    char name[SM_NAME_BYTES_MAX + 1];
    int role;                  /* sm_role */
    bool revoked;
} sm_member;

/*  One member (SM_ENOTFOUND if never admitted), and all in key order.       */
int sm_ledger_member(sm_ledger *self, const sm_id *node, sm_member *out);
typedef int (*sm_member_fn)(const sm_member *member, void *arg);
int sm_ledger_members_each(sm_ledger *self, sm_member_fn cb, void *arg);

/*  The state's version: grows with every commit and survives restarts
    (LMDB's transaction id).  Two reads with equal versions saw equal state. */
int sm_ledger_version(sm_ledger *self, uint64_t *out);

/*  A consistent view of the market's stock from one read transaction: every
    catalog item (sku order), then every (sku, location) stock record (sku,
    then location order), then every member; any callback may be NULL.
    *version (may be NULL) gets the version of what was read.                */
int sm_ledger_stock_view(sm_ledger *self, sm_item_fn items, sm_stock_fn stock,
                         sm_member_fn members, void *arg, uint64_t *version);
/*  Keep a log of the skus each commit changes in the stock view (the last
    256 commits), for sm_ledger_stock_view_since.  0 or a store error.       */
int sm_ledger_keep_changes(sm_ledger *self);
typedef int (*sm_sku_fn)(const char *sku, void *arg);
/*  The stock view of only what changed since version `since` (a version an
    earlier view read): `changed` gets each sku whose item or stock records
    were written since (sku order, once each; its item may be gone), then
    `items` and `stock` as in sm_ledger_stock_view for those skus alone, and
    `members` every member; *whole false.  When the changes since are not
    known (not kept, too long ago, since 0, a roster change, a write by
    another process), the whole view as sm_ledger_stock_view, no `changed`
    calls, and *whole true.  *version: the version read.                     */
int sm_ledger_stock_view_since(sm_ledger *self, uint64_t since, sm_sku_fn changed,
                               sm_item_fn items, sm_stock_fn stock, sm_member_fn members,
                               void *arg, uint64_t *version, bool *whole);

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    uint32_t qty;
    uint32_t returned;
    int64_t price;             /* minor units per unit */
} sm_sale_line;

typedef struct {
    sm_id origin;
    uint64_t seq;
    uint64_t hlc;
    int source;                /* sm_source */
    int payment;               /* sm_payment */
    char currency[4];
    uint64_t hold_seq;         /* 0 = none */
    uint32_t line_count;
    sm_sale_line lines[SM_SALE_LINES_MAX];
} sm_sale;

/*  One sale (SM_ENOTFOUND if none), and an origin's sales from seq `from`
    (inclusive), at most `max`, in seq order.                                 */
int sm_ledger_sale(sm_ledger *self, const sm_id *origin, uint64_t seq,
                   sm_sale *out);
typedef int (*sm_sale_fn)(const sm_sale *sale, void *arg);
int sm_ledger_sales_each(sm_ledger *self, const sm_id *origin, uint64_t from,
                         size_t max, sm_sale_fn cb, void *arg);

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    uint32_t qty;
} sm_hold_line;

#define SM_HOLD_OPEN      0    /* sm_hold.ended */
#define SM_HOLD_SOLD      1
#define SM_HOLD_EXPIRED   2    /* released at or after its expiry */
#define SM_HOLD_CANCELLED 3    /* released before it */

typedef struct {
    sm_id origin;
    uint64_t seq;
    char sku[SM_SKU_BYTES_MAX + 1];   /* the first line (lines[0]) */
    uint32_t qty;
    uint64_t expires_ms;
    char code[SM_HOLD_CODE_BYTES_MAX + 1];  /* pickup code, "" = none */
    uint32_t line_count;              /* 1..SM_HOLD_LINES_MAX */
    sm_hold_line lines[SM_HOLD_LINES_MAX];
    bool has_device, has_client;
    uint8_t device[SM_HOLD_TAG_BYTES];    /* hashed device id */
    uint8_t client[SM_HOLD_TAG_BYTES];    /* hashed client address */
    int ended;                        /* SM_HOLD_*; sm_ledger_hold_find only */
    uint64_t end_seq;                 /* the sale or release that ended it */
} sm_hold;

/*  One open hold (SM_ENOTFOUND if none: never made, released or sold), and
    all of an origin's open holds in seq order.                               */
int sm_ledger_hold(sm_ledger *self, const sm_id *origin, uint64_t seq,
                   sm_hold *out);
/*  A hold open or ended: `ended` says which (SM_ENOTFOUND if never made).
    An ended hold has no lines (line_count 0), only its expiry and end.      */
int sm_ledger_hold_find(sm_ledger *self, const sm_id *origin, uint64_t seq,
                        sm_hold *out);
typedef int (*sm_hold_fn)(const sm_hold *hold, void *arg);
int sm_ledger_holds_each(sm_ledger *self, const sm_id *origin, sm_hold_fn cb,
                         void *arg);

/*  The raffle entry `origin` appended that answers the same request as
    `entry` (a raffle.entry body): the same drop and device and, when
    `entry` has a client (address) tag, that same tag.  Its seq into *seq:
    0, or SM_ENOTFOUND when origin holds no such entry.  A request that
    matches is answered with that entry, not refused already_entered
    (README "Drops": a repeated entry).                                      */
int sm_ledger_raffle_entry_find(sm_ledger *self, const sm_id *origin,
                                const sm_body *entry, uint64_t *seq);
/*  An append of raffle entry `entry` at origin that ended with `rc`: an
    SM_EENTERED whose request origin answered already (raffle_entry_find)
    becomes 0 with that entry's seq in *seq; any other rc comes back as is.
    The direct route and a forwarded ENTRY_ASK both answer a repeat so.     */
int sm_ledger_raffle_entry_repeat(sm_ledger *self, const sm_id *origin,
                                  const sm_body *entry, int rc, uint64_t *seq);

#endif
