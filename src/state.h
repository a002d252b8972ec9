/*  The materialized state: CRDTs derived from the logs.

    Records live in the store's state databases (items, stock, sales, holds,
    origins, extids).  Their layouts are fixed-width structs below, zeroed
    before they are filled, with integers in host order: the digest compares
    nodes of the same byte order (every supported target is little-endian).

    sm__state_apply checks an entry against the state and, only if every
    check passes, writes its effects: a refusal leaves the store untouched.  */
#ifndef SM_STATE_H
#define SM_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"
#include "store.h"

#define SM__ORIGIN_ADMITTED 1u
#define SM__ORIGIN_REVOKED  2u

typedef struct {
    uint32_t status;           /* SM__ORIGIN_* */
    uint32_t role;             /* sm_role */
    uint64_t revoke_upto;      /* when revoked: its entries above this are void */
    uint64_t admit_hlc;
    char name[SM_NAME_BYTES_MAX + 1 + 7];
} sm__origin_rec;

typedef struct {
    uint64_t seq;              /* log head */
    uint64_t applied;          /* applied prefix */
    uint64_t fork_seq;         /* first forked seq, 0 if none */
    int64_t stalled;           /* error code that stops application, 0 if none */
    uint8_t link[SM_HASH_BYTES];
} sm__head_rec;

typedef struct {
    uint64_t hlc;              /* LWW order: (hlc, origin) */
    uint8_t origin[SM_KEY_BYTES];
    int64_t price;
    char currency[8];
    char name[SM_NAME_BYTES_MAX + 1 + 7];
} sm__item_rec;

typedef struct {
    int64_t added, moved_in, moved_out, sold, returned, written_off, held;
    uint64_t drop_starts_ms;
} sm__stock_rec;

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1 + 7];
    int64_t price;
    uint32_t qty;
    uint32_t returned;
} sm__sale_line;

typedef struct {
    uint64_t hlc;
    uint32_t source, payment;
    char currency[8];
    uint64_t hold_seq;
    uint32_t line_count;
    uint32_t reserved;
    sm__sale_line lines[SM_SALE_LINES_MAX];
} sm__sale_rec;

/*  Stored form of a sale (compact: most sales are one short line):
        hlc u64, hold_seq u64, source u8, payment u8, line_count u8,
        currency 3 bytes, then per line: sku length u8, sku bytes,
        qty u32, returned u32, price i64 (integers in host order).           */
#define SM__SALE_PACKED_MAX (22 + SM_SALE_LINES_MAX * (1 + SM_SKU_BYTES_MAX + 16))
size_t sm__sale_pack(const sm__sale_rec *rec, uint8_t *buf);
/*  0, or SM_ECORRUPT if buf is not a packed sale.                            */
int sm__sale_unpack(const uint8_t *buf, size_t len, sm__sale_rec *out);

/*  An open hold.  Its first 88 bytes are the layout of the one-line hold
    record of earlier stores, which still read (the rest zero).             */
typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1 + 7];   /* the first line */
    uint64_t qty;
    uint64_t expires_ms;
    char code[16];                        /* pickup code, "" = none */
    uint32_t more_count;                  /* lines after the first */
    uint32_t tags;                        /* SM__HOLD_TAG_* present */
    uint8_t device[SM_HOLD_TAG_BYTES];
    uint8_t client[SM_HOLD_TAG_BYTES];
    struct { char sku[SM_SKU_BYTES_MAX + 1 + 7]; uint64_t qty; } more[SM_HOLD_LINES_MAX - 1];
} sm__hold_rec;
#define SM__HOLD_REC_V1_BYTES 88u
#define SM__HOLD_TAG_DEVICE 1u
#define SM__HOLD_TAG_CLIENT 2u

/*  How a hold ended (SM_DB_HOLDENDS): sold, released after its expiry, or
    released before it (cancelled).  Kept so that a second sale of a hold is
    told apart from an unknown one (hold_sold, hold_expired).               */
#define SM__HOLD_SOLD      1u
#define SM__HOLD_EXPIRED   2u
#define SM__HOLD_CANCELLED 3u
typedef struct {
    uint64_t end_seq;                     /* the sale or release that ended it */
    uint64_t expires_ms;
    uint32_t how;                         /* SM__HOLD_* */
    uint32_t reserved;
} sm__holdend_rec;

/* Keys. */
#define SM__OSKEY_BYTES (SM_KEY_BYTES + 8)
void sm__oskey(uint8_t key[SM__OSKEY_BYTES], const sm_id *origin, uint64_t seq);
/* sku || 0 || location; returns key length. */
size_t sm__stock_key(uint8_t *key, const char *sku, const sm_id *location);

/* Flags for sm__state_apply. */
#define SM__APPLY_LOCAL  1u    /* a local append: also check catalog, drops, roster targets */

/*  Check `e` against the state and apply it.  Returns 0; SM_ENOSTOCK when a
    location would go below zero (an ingested entry then waits); or another
    refusal (SM_ENOSALE, SM_EOVERRETURN, SM_ENOHOLD, SM_ENOTORG, SM_ENOSKU,
    SM_EDROP, SM_EBODY); or a store error.  *rebuild is set when the entry
    voids entries already applied (a revoke), so the caller must rebuild.    */
int sm__state_apply(sm_txn *txn, const sm_id *market, const sm_entry *e,
                    unsigned flags, uint64_t now_ms, bool *rebuild);

/*  Apply a roster entry (admit / revoke) to the origins database.  Roster
    entries take effect when they are stored, in the organiser's seq order,
    not when the state cursor reaches them: membership and revocation are
    facts of the log, so no waiting stock entry can delay them.  Returns 0,
    SM_ENOTORG (not authored by the organiser), SM_EBODY, or a store error;
    sets *rebuild when already-applied entries became void or valid.        */
int sm__roster_apply(sm_txn *txn, const sm_id *market, const sm_entry *e,
                     bool *rebuild);

/*  Read one stock record (zeroes and SM_ENOTFOUND if absent).               */
int sm__stock_get(sm_txn *txn, const char *sku, const sm_id *loc,
                  sm__stock_rec *out);
int64_t sm__stock_units(const sm__stock_rec *r);

/*  The roster record of an origin.                                          */
int sm__origin_get(sm_txn *txn, const sm_id *origin, sm__origin_rec *out);

/*  For the ledger's read modules (ledger_view.c): its store, and a stock
    record as the public sm_units.                                            */
sm_store *sm__ledger_store(sm_ledger *self);
/*  A read transaction: on the thread that holds the ledger's open batch, a
    borrowed handle on the batch (reads see its writes); elsewhere a new
    read of the last commit.  End it with sm_txn_abort.                      */
sm_txn *sm__ledger_rbegin(sm_ledger *self, int *err);

/*  The one loop over a range of a database, for both ledger files: call
    `each(txn, k, v, arg)` for every record of `db` whose key starts with
    prefix[0..plen), from the first key >= start[0..slen) (NULL, 0: from the
    prefix's first), in key order.  k and v are borrowed for the call.  `each`
    returns 0 to go on, > 0 to stop (the scan returns 0) or a negative code
    to stop with it.  Returns 0 at the range's end or a store error.
    sm__ledger_each does the same in a read transaction of its own
    (sm__ledger_rbegin).                                                      */
typedef int (*sm__kv_fn)(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg);
int sm__ledger_scan(sm_txn *txn, sm_db db, const void *prefix, size_t plen,
                    const void *start, size_t slen, sm__kv_fn each, void *arg);
int sm__ledger_each(sm_ledger *self, sm_db db, const void *prefix, size_t plen,
                    const void *start, size_t slen, sm__kv_fn each, void *arg);
int sm__hold_get(sm_txn *txn, const sm_id *origin, uint64_t seq, sm__hold_rec *out);
/*  A stored hold record (open) of `len` bytes into *out: 0 or SM_ECORRUPT. */
int sm__hold_read(const void *data, size_t len, sm__hold_rec *out);
/*  How an ended hold ended: 0, SM_ENOTFOUND (open or never made), or a
    store error.                                                              */
int sm__holdend_get(sm_txn *txn, const sm_id *origin, uint64_t seq,
                    sm__holdend_rec *out);

/* ---- drops and raffles (state_drop.c) ------------------------------------ */

/*  A raffle drop's gate at its stall: closed until its draw (unix ms beyond
    any clock), so nothing of its sku there is sold, held, moved or written
    off before the draw's holds are made.                                   */
#define SM__DROP_UNTIL_DRAWN ((1ULL << 48) - 1)

/*  A drop of the long form (SM_DB_DROPS, key origin || seq).               */
typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1 + 7];
    uint64_t hlc;                         /* of the drop entry */
    uint64_t starts_ms, closes_ms;
    uint32_t qty, per_shopper, pickup_minutes, mode;
    uint8_t commitment[SM_HASH_BYTES];    /* raffle: BLAKE2b-256(secret) */
    uint64_t draw_seq;                    /* raffle: its draw, 0 = not drawn */
    uint64_t draw_hlc;
    uint32_t winners;                     /* holds after the draw, one a winner */
    uint32_t reserved;
} sm__drop_rec;

/*  SM_DB_RAFFLE keys: the drop (origin || seq), then 'd' || device tag or
    'c' || client tag, then the entry's origin || seq; the value is the
    entry's hlc (u64, host order).  The 'd' records of a drop sort by
    device, so "one per device" is a walk of neighbours.                    */
#define SM__RAFFLE_KEY_BYTES (SM__OSKEY_BYTES + 1 + SM_HOLD_TAG_BYTES + SM__OSKEY_BYTES)

int sm__drop_get(sm_txn *txn, const sm_id *origin, uint64_t seq, sm__drop_rec *out);
/*  Apply a drop (either form), a raffle entry or a draw.  Local appends are
    checked against the clock: a drop of units here (SM_ENOSTOCK) of a sku
    whose earlier drop here has not opened (SM_EDROPBUSY); an entry between
    the drop's start and close (SM_EDROP, SM_EDROPCLOSED), once per device
    and per client address at this node (SM_EENTERED); a draw after the
    close (SM_EDRAWEARLY), once (SM_EDRAWN), of a raffle (SM_ENOTRAFFLE).    */
int sm__drop_apply(sm_txn *txn, const sm_entry *e, unsigned flags, uint64_t now_ms);
int sm__raffle_entry_apply(sm_txn *txn, const sm_entry *e, unsigned flags,
                           uint64_t now_ms);
int sm__raffle_draw_apply(sm_txn *txn, const sm_entry *e, unsigned flags,
                          uint64_t now_ms);
/*  The units of `sku` at `stall` held back at now_ms by drops that have
    not opened (first-come: before starts_ms; raffle: not drawn), given
    the stock record's gate: UINT64_MAX (all of them) when the gate is a
    short form's, later than every such drop.                               */
int sm__drop_held_back(sm_txn *txn, const char *sku, const sm_id *stall, uint64_t gate_ms,
                       uint64_t now_ms, uint64_t *held);
/*  Write a stock record (asserting its invariant).                          */
int sm__stock_put(sm_txn *txn, const char *sku, const sm_id *loc,
                  const sm__stock_rec *r);

#endif
