/*  The store: the only module that includes lmdb.h.

    A thin key-value layer over one LMDB environment with a fixed set of
    named databases.  Values returned by get and by cursors are borrowed
    from LMDB and valid only until the transaction ends or the next write in
    it; copy them out first (LMDB pointers die with the transaction).
    Errors map to SM_E* codes: MDB_MAP_FULL and ENOSPC become SM_ENOSPC, a
    missing key SM_ENOTFOUND. */
#ifndef SM_STORE_H
#define SM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SM_DB_META,      /* string key -> value: identity-independent node facts */
    SM_DB_ORIGINS,   /* origin(32) -> roster record */
    SM_DB_LOG,       /* journal: position(be64) -> sig(64) || entry, in arrival order */
    SM_DB_LOGIDX,    /* origin(32) || seq(be64) -> position(be64) */
    SM_DB_HEADS,     /* origin(32) -> head record */
    SM_DB_ITEMS,     /* sku -> LWW catalog record */
    SM_DB_STOCK,     /* sku || 0 || location(32) -> counters */
    SM_DB_SALES,     /* origin(32) || seq(be64) -> sale record */
    SM_DB_HOLDS,     /* origin(32) || seq(be64) -> active hold record */
    SM_DB_FORKS,     /* origin(32) || seq(be64) -> fork evidence */
    SM_DB_EXTIDS,    /* origin(32) || external id -> seq(be64) */
    SM_DB_REP_SLOT,  /* report aggregates: slot(be64) || origin(32) -> totals (report.h) */
    SM_DB_REP_ITEM,  /* slot(be64) || origin(32) || sku -> totals */
    SM_DB_HOLDENDS,  /* origin(32) || seq(be64) -> how a hold ended (sold, released) */
    SM_DB_DROPS,     /* origin(32) || seq(be64) -> drop record (state.h) */
    SM_DB_RAFFLE,    /* drop origin(32) || seq(be64) || 'd'|'c' || tag(8) || origin || seq -> hlc */
    SM_DB_COUNT
} sm_db;

typedef struct sm_store sm_store;
typedef struct sm_txn sm_txn;
typedef struct sm_cursor sm_cursor;

typedef struct {
    const void *data;
    size_t len;
} sm_val;

/*  A 256-bit sum of record hashes (little-endian, modulo 2^256).          */
typedef struct { uint64_t w[4]; } sm_sum;
/*  A record's hash, as summed: 32 bytes into out[0..3] (any fixed function
    of the database, key and value).                                          */
typedef void (*sm_store_sum_fn)(sm_db db, const sm_val *key, const sm_val *val,
                                sm_sum *out);

/*  The store's format version, recorded in meta under "format" (ASCII
    decimal; store.c lists the versions).  A store of an older format opens
    as it is (format 1 is also a store made before the marker existed), and
    a writer's sm_ledger_open migrates it; a newer one is refused with
    SM_ESTORENEWER, read-only or not.                                          */
#define SM_STORE_FORMAT 2u

/*  Open the environment in directory `dir` (created 0700 if missing).
    Returns NULL and sets *err on failure.                                    */
sm_store *sm_store_open(const char *dir, uint64_t map_bytes, bool read_only,
                        bool no_sync, int *err);
void sm_store_destroy(sm_store **self_p);

/*  Begin a transaction; a write transaction excludes other writers (also in
    other processes).  Returns NULL and sets *err on failure.                 */
sm_txn *sm_txn_begin(sm_store *store, bool write, int *err);
/*  A second handle on the open transaction `parent` (borrowed: it must end
    before parent does), for code that reads through its own handle: reads
    see parent's writes.  Ending it (sm_txn_abort) frees the handle only;
    it cannot be committed.  Returns NULL and sets *err on failure.          */
sm_txn *sm_txn_borrow(sm_txn *parent, int *err);
/*  Commit (durably, unless the store was opened no_sync or its sync is
    deferred) and free.                                                       */
int sm_txn_commit(sm_txn **txn_p);

/*  Deferred sync (the node's writer turns it on): a commit returns once its
    data pages are on disk and its meta page written but not synced (LMDB's
    MDB_NOMETASYNC), so a power cut keeps the store whole but may undo the
    last commit.  A commit is durable once sm_store_marks says so: after the
    next commit that changes anything (whose fdatasync covers the previous
    meta page) or sm_store_sync.  Turning it off syncs first.  The marks are
    transaction ids (sm_txn_id); they belong to the writer's thread.  A
    no_sync store counts every commit as durable, as before.                 */
int sm_store_defer_sync(sm_store *store, bool on);
/*  Make every commit so far durable (fdatasync); 0 at once if they are.     */
int sm_store_sync(sm_store *store);
void sm_store_marks(const sm_store *store, uint64_t *committed, uint64_t *durable);
/*  The fdatasync alone, from any thread (it reads no mark): what was
    committed when it was called is durable when it returns 0; the writer's
    thread then says so with sm_store_mark_durable(that commit's id).        */
int sm_store_sync_file(sm_store *store);
void sm_store_mark_durable(sm_store *store, uint64_t upto);
/*  Abandon and free; safe with NULL and twice.  A borrowed handle is only
    freed: its transaction goes on.                                           */
void sm_txn_abort(sm_txn **txn_p);
/*  The transaction's id: grows with every committed write transaction and
    survives restarts (a read transaction sees the id of the state it reads). */
uint64_t sm_txn_id(sm_txn *txn);

int sm_kv_get(sm_txn *txn, sm_db db, const void *key, size_t klen, sm_val *out);
int sm_kv_put(sm_txn *txn, sm_db db, const void *key, size_t klen,
              const void *val, size_t vlen);
/*  Put a key expected to sort after every key in the database (log and
    sales keys grow per origin): uses LMDB's append mode, which skips the
    search and fills pages completely, and falls back to a plain put when
    the key is not the last.                                                  */
int sm_kv_put_last(sm_txn *txn, sm_db db, const void *key, size_t klen,
                   const void *val, size_t vlen);
/*  The last key of a database (borrowed), or SM_ENOTFOUND if it is empty. */
int sm_kv_last(sm_txn *txn, sm_db db, sm_val *key);
/*  Delete a key; deleting a missing key is not an error.                    */
int sm_kv_del(sm_txn *txn, sm_db db, const void *key, size_t klen);
/*  Empty a database (used by reindex).                                       */
int sm_kv_clear(sm_txn *txn, sm_db db);

/*  Kept sums: per database in `mask` (1u << db each), the sum of fn over
    its records, kept up to date by every write transaction of this handle
    (put, put_last, del, clear add and subtract as they go; the running sums
    become the kept ones at commit and are dropped at abort), so that the
    sums of the latest commit cost nothing to read.  sm_store_sums_keep
    computes them once, by a scan under the writer lock, and keeps them from
    then on; a write committed by another process (which keeps nothing)
    lets them lapse, and readers then scan (sm_store_sums_scan).  A writable
    store only (SM_EINVAL); kept already, 0 at once.  0 or a read error.                */
int sm_store_sums_keep(sm_store *store, uint32_t mask, sm_store_sum_fn fn);
/*  The kept sums of what the read transaction `txn` sees into out[db]
    (SM_DB_COUNT of them, zero outside the mask): 0 if they are kept and of
    its snapshot; SM_EBUSY if they are of a later commit (begin a new read
    transaction), or of an earlier one while a commit is being recorded
    (yield, then begin a new one); SM_ENOTFOUND if they are not kept or have
    lapsed.  In the writer's own transaction (or a handle borrowed from it):
    its running sums, of what it wrote so far.                                */
int sm_store_sums(sm_store *store, sm_txn *txn, sm_sum out[SM_DB_COUNT]);
/*  The same sums computed by reading every record of the masked databases
    in `txn`: what the kept ones must equal.                                  */
int sm_store_sums_scan(sm_txn *txn, uint32_t mask, sm_store_sum_fn fn,
                       sm_sum out[SM_DB_COUNT]);
/*  Change log: the keys each commit of this handle writes (put, put_last,
    del) in the databases of `mask`, kept for its last 256 commits, so that a
    reader holding a view as of one commit can learn what changed up to the
    commit its read transaction sees and read only that (the stock
    snapshot).  A clear of a masked database, or a commit by another process,
    leaves the span across it unknown.  A writable store only (SM_EINVAL; or
    another mask than kept already); kept already, 0 at once.                 */
int sm_store_changes_keep(sm_store *store, uint32_t mask);
typedef int (*sm_store_change_fn)(sm_db db, const sm_val *key, void *arg);
/*  Call fn (under the log's lock: it must not use the store) for each key
    written in a masked database by the commits after `from` up to the one
    the read transaction `txn` sees, oldest first; a key may come more than
    once.  0 (also when from is that commit); SM_ENOTFOUND if any of those
    commits is not listed (not kept, too old, a clear, another process):
    read everything instead; fn's nonzero result stops it and is returned.  */
int sm_store_changes(sm_store *store, sm_txn *txn, uint64_t from, sm_store_change_fn fn,
                     void *arg);
void sm_sum_add(sm_sum *acc, const sm_sum *x);
void sm_sum_sub(sm_sum *acc, const sm_sum *x);

/*  Iterate keys starting with prefix[0..plen) in key order (plen 0: all).
    `start` (may be NULL) positions at the first key >= start instead of the
    prefix itself; both are copied (at most 512 bytes each).  cursor_next
    returns 0 with key/val set, SM_ENOTFOUND at the end, or an error.     */
sm_cursor *sm_cursor_open(sm_txn *txn, sm_db db, const void *prefix,
                          size_t plen, const void *start, size_t slen,
                          int *err);
int sm_cursor_next(sm_cursor *cur, sm_val *key, sm_val *val);
void sm_cursor_close(sm_cursor **cur_p);

/*  The format version recorded in the store in `dir`, without opening it
    for use (to name it when sm_store_open refused it): 0 if it has no
    marker.  0, SM_ENOTFOUND (no store) or an I/O error.                      */
int sm_store_format_of(const char *dir, uint32_t *format);
/*  The format of the open store: as found at open (older than
    SM_STORE_FORMAT until migrated), SM_STORE_FORMAT after
    sm_store_format_mark.                                                     */
uint32_t sm_store_format(const sm_store *store);
/*  Record SM_STORE_FORMAT in the write transaction `txn` (not borrowed): the
    last step of a migration, committed with it.                              */
int sm_store_format_mark(sm_txn *txn);

/*  Write a consistent copy of the store's data file to `fd` from its
    current offset (a read transaction: writers go on meanwhile), compacted
    (free pages left out) if `compact`.  0 or an error.                      */
int sm_store_copy(sm_store *store, int fd, bool compact);

/*  Bytes the environment's data file holds in pages (up to the last page
    in use: the file itself runs on a little, written with zeros ahead of
    LMDB, store.c's room ahead), and entries in a db.                        */
int sm_store_stat(sm_store *store, sm_db db, uint64_t *entries,
                  uint64_t *file_bytes);

/*  Integrity (store.c documents the file format it reads).

    Check the data file in `dir` before it is mapped, with reads only: both
    meta pages well formed and consecutive, the file as long as its last
    page.  0 if it passes or does not exist yet; SM_ETRUNCATED or SM_EMETA
    with a sentence in what[cap] (may be NULL) naming what is wrong.
    sm_store_open runs it first.                                              */
int sm__store_file_check(const char *dir, char *what, size_t cap);
/*  Repair's salvaging child only (a process that may die): let later opens
    skip the file checks, to copy out what can still be read.               */
void sm__store_salvage_mode(bool on);

/*  Read every page a reader can reach: every database's records in key
    order and found again by lookup, the free page list, and the page
    count (meta + used + free = the pages up to the last in use).  A page damaged badly
    enough may still fault the reader: run this in a process that can die
    (integrity.c does).  0, or SM_EDAMAGED with what[cap] set.                */
int sm_store_check_tree(sm_store *store, char *what, size_t cap);

#endif
