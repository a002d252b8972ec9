/*  Integrity of a data directory: one process at a time, and a store
    checked before it is served.

    The directory lock is an exclusive flock on DIR/run.lock (DIR: the data
    directory, which holds the identity and the store directory), which
    holds the pid of the process that took it: every process that writes
    the store (the node, and the commands that write while it is stopped)
    takes it, so a second `run` on a directory stops at once naming the
    first.  The kernel drops it when its holder exits, however it exits.

    The open check (sm_integrity_check) reads a store in a child process:
    LMDB maps its file and keeps no checksums, so a damaged page can fault
    the reader.  The child walks every page and chain (and, if asked, the
    state); a fault kills only the child, and is reported as damage.        */
#ifndef SM_INTEGRITY_H
#define SM_INTEGRITY_H

#include <stdbool.h>
#include <sys/types.h>
#include "stallmesh/ledger.h"

typedef struct sm_dirlock sm_dirlock;

/*  Take the lock of data directory `dir` (created 0700 if missing).
    NULL with *err = SM_ELOCKED and *holder (may be NULL) the holder's pid
    (0 if unknown) when another process holds it; another SM_E* on I/O
    errors.  The lock is not inherited across exec.                          */
sm_dirlock *sm_dirlock_take(const char *dir, pid_t *holder, int *err);
/*  Release; safe with NULL and twice.                                       */
void sm_dirlock_release(sm_dirlock **lock_p);
/*  The pid holding the lock of data directory `dir`, or 0 if none does (or there is
    no lock file).  Takes nothing: a read-only command asks before it reads
    beside a node.                                                            */
pid_t sm_dirlock_holder(const char *dir);

/*  Check the store in `store_dir` with sm_ledger_check(flags) in a child
    process, after the file checks that need no mapping (truncation, meta
    pages).  `writable`: the child may open the store for writing (needed by
    SM_CHECK_STATE; the caller must hold the directory lock).  Returns 0 or
    the failure, described in *report; a child killed by a signal is
    SM_EDAMAGED ("pages cannot be read safely").  A store that does not
    exist yet passes.                                                         */
int sm_integrity_check(const char *store_dir, unsigned flags, bool writable,
                       sm_check_report *report);

/*  Repair: copy from the damaged store in `from_store` into a new store in
    `to_store` (which must not hold a market) what still verifies: the
    market membership, then each origin's log (the organiser's first) up to
    its first entry that does not decode, link or verify, checked again by
    the new store's ingest.  Runs in a child process (reading damaged pages
    may fault; what was copied before stays).  The own log's confirmation
    (ledger.h) is kept only if it was confirmed and came through whole;
    otherwise the node fetches its own entries back before it appends.
    Returns 0 or why nothing (or not everything it tried) could be kept; the
    report counts what was kept and dropped either way.                      */
typedef struct {
    int err;
    bool has_market;           /* the membership was copied */
    bool own_complete;         /* this node's own log came through whole */
    bool own_confirmed;        /* and the new store is confirmed (may append) */
    bool faulted;              /* reading the damaged store faulted */
    uint32_t origins, damaged_origins;
    uint64_t kept, dropped;    /* entries copied; entries past the damage */
    char what[320];            /* the first damage, or why it stopped */
} sm_salvage_report;
int sm_integrity_salvage(const char *from_store, const char *to_store,
                         const sm_id *self_id, uint64_t now_ms,
                         sm_salvage_report *report);

#endif
