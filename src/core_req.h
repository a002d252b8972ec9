/*  One write as it travels from the web thread to the core thread and back
    (core.h says how it is submitted and answered).  Kept apart from core.h
    so that the API, which fills and renders writes, needs nothing else of
    the core: no threads, sockets or mesh.                                    */
#ifndef SM_CORE_REQ_H
#define SM_CORE_REQ_H

#include <stdbool.h>
#include <stdint.h>
#include "drop.h"
#include "reserve.h"
#include "stallmesh/entry.h"

/*  One write.  The submitter fills `body` (and its own fields); the core
    fills `rc` and `seq`.  Embed it as the first member of a larger struct
    to carry more context.                                                    */
typedef struct {
    sm_body body;              /* the entry to append */
    int rc;                    /* 0; SM_EEXIST: a repeated external_id, seq is
                                  the first sale's; or the refusal */
    uint64_t seq;              /* the appended entry's seq */
    uint64_t hlc;              /* set by the core: its hybrid time (0 if it was
                                  not appended here: a forward, a refusal) */
    uint64_t submit_ns;        /* set by sm_core_submit (monotonic clock) */
    uint64_t commit_ns;        /* set by the core: when it was durable */
    void *tag;                 /* the submitter's; the core never touches it */
    bool forward;              /* a hold or raffle entry (only) to forward to
                                  stall `at`, which appends it on its own log:
                                  `seq` is then of at's log (and a hold's
                                  body.u.hold.expires_ms is set from its
                                  answer).  SM_EUNREACHABLE: `at` is
                                  not in session; SM_ETIMEOUT: no answer within
                                  SM_HOLD_FWD_WAIT_MS (the hold may exist there) */
    sm_id at;
    bool uncapped;             /* a hold by the stall's staff: no shopper's
                                  limits, no first-come drop caps (policy.h) */
    sm_reserve_refusal hold_why;   /* set by the core: a hold refused by a
                                  shopper's limits (limit non-NULL) */
    sm_drop_refusal drop_why;  /* set by the core: a hold refused by a
                                  first-come drop's caps (limit non-NULL) */
} sm_core_req;

#endif
