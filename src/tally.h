/*  The tallies of one stall that a hold is checked against when it is
    appended: the caps of a live first-come drop (README "Drops"; drop.h
    says which entries count), and the [holds] per_device and per_address
    limits (reserve.h) over the stall's open holds.

    Per first-come drop of the stall: the units taken (held or sold, released
    holds given back) and the units held per device tag and per client
    address tag by holds not released, so a check is a lookup, not a walk of
    the drop's ledger.  Per stall: the units its open holds hold per device
    tag and per client tag, listed from the state the first time a hold
    with a tag is checked, then kept from the log the same way.

    Where they live: in memory, owned by the write policy, and kept as a
    fold of the stall's own log.  The tally remembers the last seq of the
    own log it has read; each check first reads what was appended since
    (by the policy's batch, the engine's forwarded holds, the hold sweep,
    a log sent back after a wipe: whatever wrote it), through the open
    batch, so a hold sees the holds earlier in the same batch.  A drop's
    tallies are built by one walk of its ledger the first time a hold of its
    sku is checked (at start, or when the drop is appended: then empty).
    Not an LMDB table because the tallies are derived from the log alone,
    are needed only by the one thread that appends, and would otherwise add
    a database to the store's format, the digest and every reindex; the
    cost is one walk per live drop and one listing of the stall's open
    holds after a restart.  A batch that failed to commit may have been
    folded: the policy calls sm_tally_reset after any abort or failed
    commit, and everything is read again from the log.

    Single-threaded: the thread that owns the ledger's writes.             */
#ifndef SM_TALLY_H
#define SM_TALLY_H

#include <stdint.h>
#include "drop.h"
#include "reserve.h"
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"

typedef struct sm_tally sm_tally;

/*  The tallies of `stall`'s drops in `l` (borrowed).  NULL if out of memory. */
sm_tally *sm_tally_new(sm_ledger *l, const sm_id *stall);
void sm_tally_free(sm_tally **self_p);

/*  Forget everything: the next check reads the log again.                 */
void sm_tally_reset(sm_tally *self);

/*  The caps of the stall's live first-come drop of each line's sku (the
    one started latest at now_ms) for `hold`, appended next: per device and
    per address (per_shopper, over the holds not released), and the drop's
    qty.  0, SM_EDROPLIMIT (why->limit "device" or "address"), SM_ENOSTOCK
    (why->limit "qty": sold out), or a store error; why->drop names the
    drop.  A hold with no line of a live first-come drop's sku passes.      */
int sm_tally_check(sm_tally *self, const sm_body *hold, uint64_t now_ms,
                   sm_drop_refusal *why);

/*  The [holds] per_device and per_address limits of `lim` for `hold`,
    appended next: the units of the stall's open holds not expired at
    now_ms of its device tag (and of its client tag), with the hold's own
    lines, as sm_reserve_usage and sm_reserve_check count them before the
    batch.  0, SM_EHOLDLIMIT with *why (limit "per_device" or
    "per_address"), or a store error.  A hold without a tag passes; its
    size limits (max_units, max_per_sku) are not checked here.             */
int sm_tally_check_shopper(sm_tally *self, const sm_reserve_limits *lim, const sm_body *hold,
                           uint64_t now_ms, sm_reserve_refusal *why);

#endif
