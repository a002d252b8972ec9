/*  A drop as the API shows it (proto/api.md "Drops": DROP): the JSON object
    GET /api/drops lists and the websocket feed carries (snapshot.c), and
    the list of the market's newest drops both serve.

    Reads only: the ledger is borrowed, nothing is kept between calls.  The
    object's bytes change exactly when what it says changes (its units left,
    its phase, its entries, its draw), which the websocket delta relies on:
    nothing in it moves with the clock but `phase`, at the times
    sm_drop_view_next_change names.                                          */
#ifndef SM_DROP_VIEW_H
#define SM_DROP_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include "drop.h"
#include "json.h"
#include "stallmesh/ledger.h"

#define SM_DROP_VIEW_LIST_MAX 256u   /* drops listed (the newest) */

/*  Units of the drop still to be had: first-come: qty less what holds and
    sales took since the start (never more than the stall holds); raffle:
    qty until the draw, then what the winners did not take.  *taken_out (may
    be NULL) gets the units taken.  `walks` (may be NULL) keeps the walks of
    the stall's log between calls (sm_drop_taken): its owner's thread only. */
int sm_drop_view_units_left(sm_drop_walks *walks, sm_ledger *l, const sm_drop *d,
                            uint64_t *left, uint64_t *taken_out);

/*  The members of d's DROP object into b (the caller opens and closes the
    object), as node `node` sees it at now_ms; `walks` as above.            */
int sm_drop_view_members(sm_drop_walks *walks, sm_ledger *l, const sm_id *node,
                         const sm_drop *d, uint64_t now_ms, sm_json_buf *b);

/*  The market's newest SM_DROP_VIEW_LIST_MAX drops, by start: *all is
    malloc'd (the caller frees; NULL when there are none), *n of them.      */
int sm_drop_view_list(sm_ledger *l, sm_drop **all, size_t *n);

/*  When d's phase next moves with the clock alone after now_ms (its start;
    a raffle's close), or 0 when it never will.                              */
uint64_t sm_drop_view_next_change(const sm_drop *d, uint64_t now_ms);

#endif
