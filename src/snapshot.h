/*  The stock snapshot: the stock page's JSON, serialized once per state
    version (README: architecture), and the websocket delta between two builds.

    GET /api/stock answers with the snapshot's body itself, shared by
    reference count (sm_snapshot_body / sm_snapshot_body_unref): a rebuild
    while an answer is still being sent never frees that answer's bytes, and
    a thousand phones cost a thousand memcpys by the web server, no copy
    here.  The websocket's first message is the same document with
    "type":"snapshot", the node's clock and the market's drops (drop_view.h);
    later messages are deltas: the items and drops whose bytes changed (and
    new ones) in full, vanished ones by key.  proto/api.md
    ("GET /api/stock", "Websocket") is the reference of both documents.

    One thread only (the web thread); nothing here locks.                    */
#ifndef SM_SNAPSHOT_H
#define SM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"

typedef struct sm_snapshot sm_snapshot;

/*  A snapshot of `ledger` (borrowed, read only) as node `node` sees it
    ("here" is its units).  Builds nothing yet.  NULL when out of memory.   */
sm_snapshot *sm_snapshot_new(sm_ledger *ledger, const sm_id *node);
/*  Free; the bodies of answers still being sent live on until they are let
    go.  Safe with NULL and twice.                                           */
void sm_snapshot_destroy(sm_snapshot **self_p);

/*  Build the snapshot if none was built yet, stamped "as_of" now_ms (unix
    ms).  1 if it built it, 0 if one was built already, or the ledger's
    error (or SM_ENOMEM).                                                     */
int sm_snapshot_ensure(sm_snapshot *self, uint64_t now_ms);
/*  Whether a drop's phase moved with the clock since the last build (its
    start or a raffle's close passed): a refresh then rebuilds though the
    state's version did not move.                                           */
bool sm_snapshot_clock_due(const sm_snapshot *self, uint64_t now_ms);
/*  Rebuild if the state's version moved since the last build, or the
    clock moved a drop's phase.  Returns 1
    and sets *delta (malloc'd, caller frees) to the websocket delta from
    the previous build (from nothing, if none), 0 when nothing changed, or
    an error (the previous build stays).                                     */
int sm_snapshot_refresh(sm_snapshot *self, uint64_t now_ms, char **delta,
                        size_t *delta_len);

/*  Write the websocket snapshot message again with "now_ms" now_ms, the
    rest as built (a phone sets its clock by it: a message built a minute
    ago would say the node's clock is a minute behind).  Only once built;
    0 or SM_ENOMEM (the message stays).                                      */
int sm_snapshot_restamp(sm_snapshot *self, uint64_t now_ms);
/*  The built snapshot's state version (its ETag).  Only once built.        */
uint64_t sm_snapshot_version(const sm_snapshot *self);
/*  The websocket snapshot message (borrowed until the next rebuild).  Only
    once built.                                                              */
const char *sm_snapshot_message(const sm_snapshot *self, size_t *len);
/*  The GET /api/stock body (borrowed) and a reference to it in *owner,
    which keeps it alive until sm_snapshot_body_unref(owner), however many
    rebuilds come in between.  Only once built.                              */
const char *sm_snapshot_body(sm_snapshot *self, size_t *len, void **owner);
/*  Let go of a body reference; NULLs *owner.  Safe on NULL.                 */
void sm_snapshot_body_unref(void **owner);
/*  How many builds read the whole stock view, and how many only the items
    changed since the build before (sm_ledger_keep_changes).                */
void sm_snapshot_builds(const sm_snapshot *self, uint64_t *whole, uint64_t *partial);

#endif
