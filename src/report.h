/*  Reports: sales aggregates kept in the store as entries apply, and the
    queries the organiser's view and the exports answer from them (README
    §10: reports are kept, not computed).

    The model (normative in proto/api.md, "Reports"): a sale line gives
    gross = qty x unit price; a return line gives returns = qty x the unit
    price of the sale line it returns; net = gross - returns.  A sale counts
    once in `sales` (and once per line in its items' `sales`).  A return is
    counted when it happens (its own clock), at the stall, item, source and
    payment of the sale it returns.  Only applied entries are counted:
    entries voided by a revocation and entries of a forked origin past its
    fork are never applied and are summed apart at query time (`voided`,
    `quarantined`) from the few log entries concerned.

    Records (host-order integers, like the rest of the state):
      rep_slot  be64 slot || origin(32) -> sm__rep_slot_rec
      rep_item  be64 slot || origin(32) || sku -> sm_rep_totals
    where slot = floor(unix seconds / 900).  Every UTC offset in use is a
    multiple of 15 minutes, so the hours and days of any zone are unions of
    whole slots: a report is a range scan of a few thousand records.  The
    slot-major key order lets one cursor walk a range in time order, which
    is what cuts hours and days in one pass with bounded memory.

    Writers: the hooks below run inside the entry's write transaction
    (state.c), and reindex rebuilds both databases with the rest of the
    state.  Readers: everything else here, in read transactions.             */
#ifndef SM_REPORT_H
#define SM_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"
#include "state.h"
#include "store.h"
#include "tz.h"

#define SM_REPORT_SLOT_S 900

typedef struct {
    int64_t sales;             /* sales (a sale with two lines of an item counts once) */
    int64_t units;             /* units sold */
    int64_t gross;             /* minor units: qty x unit price */
    int64_t returns;           /* minor units: returned qty x the sale line's unit price */
    int64_t returned_units;
} sm_rep_totals;

typedef struct {
    sm_rep_totals all;
    sm_rep_totals source[4];   /* by sm_source - 1 */
    sm_rep_totals payment[5];  /* by sm_payment - 1 */
    uint64_t last_sale_ms;     /* the slot's latest sale at this stall; 0 = none */
} sm__rep_slot_rec;

/*  Hooks, inside the write transaction of the entry they count (state.c).
    `sale` is the sale record a return refers to (its lines' prices).       */
int sm__report_sale(sm_txn *txn, const sm_entry *e);
int sm__report_return(sm_txn *txn, const sm_entry *e, const sm__sale_rec *sale);
/*  Within a ledger operation (sm__report_begin(txn) at its start) the hooks
    keep their deltas in a per-thread table until the operation ends:
    sm__report_flush adds them to the stored records in `txn` (the ledger
    calls it before it commits or returns a batch's operation; 0 or a store
    error, after which the transaction must be abandoned), sm__report_drop
    forgets them (the operation failed and its transaction is abandoned),
    sm__report_clear empties both databases and the table (a rebuild).
    Outside an operation begun so (state.c used on its own, as its tests
    do), each hook writes its records at once.                               */
void sm__report_begin(sm_txn *txn);
int sm__report_flush(sm_txn *txn);
void sm__report_drop(void);
int sm__report_clear(sm_txn *txn);
/*  Benchmarks only: turn the aggregates off (and on) for this process, to
    measure what keeping them costs.  Reports are wrong while off.           */
void sm__report_set_enabled(bool on);

/* ---- queries -------------------------------------------------------------- */

#define SM_REP_BY_STALL    1u
#define SM_REP_BY_ITEM     2u
#define SM_REP_BY_HOUR     4u
#define SM_REP_BY_DAY      8u
#define SM_REP_BY_SOURCE   16u
#define SM_REP_BY_PAYMENT  32u
#define SM_REP_ITEM_STALL  64u     /* items per (sku, stall), for items.csv */

typedef struct {
    int64_t from_s, to_s;      /* unix seconds, multiples of SM_REPORT_SLOT_S, from < to */
    const sm_tz *tz;           /* borrowed: cuts hours and days */
    bool one_stall;            /* only `stall` */
    sm_id stall;
    unsigned by;               /* SM_REP_BY_* */
} sm_report_query;

typedef struct {
    sm_id stall;
    sm_rep_totals t;
    uint64_t last_sale_ms;
} sm_rep_stall;

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    sm_id stall;               /* with SM_REP_ITEM_STALL; else zero */
    sm_rep_totals t;
} sm_rep_item;

typedef struct {
    int64_t start_s;           /* the hour's first instant (UTC) */
    int32_t offset_s;          /* the zone's offset then */
    sm_rep_totals t;
} sm_rep_hour;

typedef struct {
    int64_t day;               /* local date as days since 1970-01-01 */
    sm_rep_totals t;
} sm_rep_day;

typedef struct {
    sm_rep_totals totals, voided, quarantined;
    sm_rep_totals source[4], payment[5];
    sm_rep_stall *stalls;      /* in stall-id order */
    size_t stall_count;
    sm_rep_item *items;        /* in sku (then stall) order */
    size_t item_count;
    sm_rep_hour *hours;        /* in time order, hours with sales or returns only */
    size_t hour_count;
    sm_rep_day *days;          /* likewise */
    size_t day_count;
} sm_report;

/*  Run `q` in one read transaction into *out (zeroed first; free with
    sm_report_free).  Memory is bounded by stalls, skus, and the hours and
    days the range holds (the API bounds the range), never by sales.      */
int sm_report_run(sm_ledger *ledger, const sm_report_query *q, sm_report *out);
void sm_report_free(sm_report *r);

/* ---- rows for the exports --------------------------------------------- */

#define SM_REP_ROWS_SALES   1
#define SM_REP_ROWS_RETURNS 2

typedef struct {
    sm_id stall;
    uint64_t seq;              /* the sale's or the return's */
    uint64_t hlc;              /* its clock */
    uint64_t sale_seq;         /* returns: the sale it returns */
    char sku[SM_SKU_BYTES_MAX + 1];
    uint32_t qty;              /* sold, or returned by this return */
    uint32_t returned;         /* sales: returned of this line so far */
    int64_t price;             /* unit price (the sale line's for returns) */
    char currency[4];
    int source, payment;
    char external_id[SM_EXTID_BYTES_MAX + 1];
    uint64_t hold_seq;
    char reason[SM_REASON_BYTES_MAX + 1];
} sm_rep_row;

typedef struct sm_rep_rows sm_rep_rows;

/*  Every counted sale line (or return line) in [from_s, to_s), grouped by
    stall in stall-id order, in log order (which is clock order) within a
    stall.  One read transaction for the whole walk: a consistent snapshot,
    constant memory.  NULL and *err on failure.                              */
sm_rep_rows *sm_rep_rows_open(sm_ledger *ledger, int kind, int64_t from_s,
                              int64_t to_s, const sm_id *stall, int *err);
/*  The next row: 0, SM_ENOTFOUND at the end, or an error.                  */
int sm_rep_rows_next(sm_rep_rows *self, sm_rep_row *out);
void sm_rep_rows_close(sm_rep_rows **self_p);

#endif
