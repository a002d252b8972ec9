/*  The ledger: per-origin signed logs and the state derived from them.

    Store layout (see store.h for the databases):
      log    be64 position -> sig(64) || entry bytes: the arrival journal,
             always appended, so its pages fill completely whatever the
             origin (links are derived, not stored)
      logidx origin || be64 seq -> be64 position
      heads  origin -> sm__head_rec: log head, applied prefix, fork, stall
      meta   "market" -> sm_market, "hlc" -> u64, "join_admit" -> sig || entry

    Log and state move together: every append and ingest writes the log,
    the heads and the state in one write transaction.  Per origin, entries
    are stored contiguously from seq 1 and applied in seq order; an entry
    whose decrement is not yet covered (its origin received units by a move
    that has not arrived) is stored and waits: `applied` < `seq` for that
    origin, retried after every batch.  An entry that can never apply (a
    hostile or broken origin) stalls its origin, identically on every node.

    Store formats (store.c lists them): a writer's open migrates a store of
    an older format in one transaction, s_migrate: every change so far was
    of derived state (format 2 added the report aggregates), so the state
    is rebuilt from the log, as reindex does, and the new format recorded.

    Caps: entries of a revoked origin above the revoke's upto_seq, and of a
    forked origin from the fork on, are void.  When a cap falls below what
    was applied, the state is rebuilt from the log (rare; O(log)).

    Who reads what: this file owns the log: every write (append, ingest,
    reindex, the market records) and every read of the log's own databases
    (log, logidx, heads, forks, meta: heads, entries, fork evidence, verify).
    ledger_view.c owns the reads of the derived state (members, items,
    stock, sales, holds, the digest).  Both read through sm__ledger_rbegin
    and walk a range with sm__ledger_scan (state.h), the one cursor loop.    */
#include "stallmesh/ledger.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "drop.h"
#include "logger.h"
#include "report.h"
#include "stallmesh/error.h"
#include "state.h"
#include "store.h"

#define SM__LOG_PREFIX_BYTES SM_SIG_BYTES

static const char s_meta_market[] = "market";
static const char s_meta_hlc[] = "hlc";
static const char s_meta_join[] = "join_admit";
static const char s_meta_own[] = "own_confirmed";

struct sm_ledger {
    sm_store *store;
    sm_identity id;
    bool has_id;
    sm_txn *batch;             /* open group-commit batch, or NULL */
    int batch_err;             /* an I/O error poisons the batch */
    uint64_t hlc;              /* last HLC issued or merged */
    sm_entry *scratch;         /* SM_RUN_ENTRIES_MAX decoded entries for ingest */
    sm_hash *links;            /* their link hashes */
    sm_txn *log_txn;           /* the write transaction log_next is for, or NULL */
    uint64_t log_next;         /* its next log position (s_log_put) */
    sm_damage damaged[SM_CHECK_DAMAGED_MAX]; /* origins served only below damage */
    size_t damaged_count;      /* set before threads start, read-only after */
};

/*  The write transaction s_log_put counted log positions in is ending.    */
static void
s_log_forget(sm_ledger *self)
{
    self->log_txn = NULL;
}

sm_store *
sm__ledger_store(sm_ledger *self)
{
    return self->store;
}

/*  The ledger whose batch this thread opened, if any.  The batch's write
    transaction belongs to that thread (as LMDB requires); that thread's
    reads go through the batch, so a caller that ingests in a batch reads
    back what it ingested (the mesh does: a catch-up commits once a round),
    while every other thread reads the last commit and never touches the
    batch.                                                                    */
static _Thread_local const sm_ledger *s_batch_owner;

sm_txn *
sm__ledger_rbegin(sm_ledger *self, int *err)
{
    if (s_batch_owner == self && self->batch) {
        if (self->batch_err) {
            *err = self->batch_err;
            return NULL;
        }
        return sm_txn_borrow(self->batch, err);
    }
    return sm_txn_begin(self->store, false, err);
}

int
sm__ledger_scan(sm_txn *txn, sm_db db, const void *prefix, size_t plen,
                const void *start, size_t slen, sm__kv_fn each, void *arg)
{
    assert(txn && each);
    int rc = 0;
    sm_cursor *cur = sm_cursor_open(txn, db, prefix, plen, start, slen, &rc);
    if (!cur)
        return rc;
    sm_val k, v;
    while ((rc = sm_cursor_next(cur, &k, &v)) == 0) {
        int stop = each(txn, &k, &v, arg);
        if (stop != 0) {
            rc = stop < 0 ? stop : 0;
            break;
        }
    }
    if (rc == SM_ENOTFOUND)
        rc = 0;                        /* the end of the range */
    sm_cursor_close(&cur);
    return rc;
}

int
sm__ledger_each(sm_ledger *self, sm_db db, const void *prefix, size_t plen,
                const void *start, size_t slen, sm__kv_fn each, void *arg)
{
    assert(self && each);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    rc = sm__ledger_scan(txn, db, prefix, plen, start, slen, each, arg);
    sm_txn_abort(&txn);
    return rc;
}

/* Errors after which the transaction may hold partial writes. */
static bool
s_fatal(int rc)
{
    return rc == SM_ENOSPC || rc == SM_EIO || rc == SM_ENOMEM
        || rc == SM_ECORRUPT || rc == SM_EBUSY;
}

static int s_migrate(sm_ledger *self);

sm_ledger *
sm_ledger_open(const char *dir, const sm_ledger_opts *opts, int *err)
{
    assert(dir && err);
    sm_ledger_opts defaults = { 0 };
    if (!opts)
        opts = &defaults;
    sm_ledger *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->store = sm_store_open(dir, opts->map_bytes, opts->read_only,
                                opts->no_sync, err);
    if (!self->store) {
        free(self);
        return NULL;
    }
    if (!opts->read_only && sm_store_format(self->store) < SM_STORE_FORMAT
        && (*err = s_migrate(self)) != 0) {
        sm_ledger_destroy(&self);
        return NULL;
    }
    return self;
}

void
sm_ledger_destroy(sm_ledger **self_p)
{
    assert(self_p);
    sm_ledger *self = *self_p;
    if (!self)
        return;
    if (s_batch_owner == self)
        s_batch_owner = NULL;
    sm_txn_abort(&self->batch);
    sm_store_destroy(&self->store);
    sm_identity_wipe(&self->id);
    free(self->scratch);
    free(self->links);
    free(self);
    *self_p = NULL;
}

void
sm_ledger_set_identity(sm_ledger *self, const sm_identity *id)
{
    assert(self && id);
    self->id = *id;
    self->has_id = true;
}

/* ---- transactions --------------------------------------------------- */

/*  The write transaction for one operation: the open batch, or a new one
    that s_wend commits.                                                      */
static int
s_wbegin(sm_ledger *self, sm_txn **txn, bool *own)
{
    if (self->batch) {
        if (self->batch_err)
            return self->batch_err;
        *txn = self->batch;
        *own = false;
        sm__report_begin(*txn);    /* report.h: deltas gathered until s_wend */
        return 0;
    }
    int err = 0;
    *txn = sm_txn_begin(self->store, true, &err);
    *own = true;
    if (*txn)
        sm__report_begin(*txn);
    return *txn ? 0 : err;
}

/*  End an operation.  `keep`: commit what it wrote even though rc != 0
    (an ingest keeps the entries before the first refusal).                  */
static int
s_wend(sm_ledger *self, sm_txn **txn, bool own, int rc, bool keep)
{
    /* The report aggregates' deltas go into this transaction (report.h). */
    if (s_fatal(rc)) {
        sm__report_drop();
    } else {
        int frc = sm__report_flush(*txn);
        if (frc != 0)
            rc = frc;
    }
    if (s_fatal(rc)) {
        if (own) {
            s_log_forget(self);
            sm_txn_abort(txn);
        } else {
            self->batch_err = rc;
        }
        return rc;
    }
    if (!own)
        return rc;
    s_log_forget(self);
    if (rc == 0 || keep) {
        int crc = sm_txn_commit(txn);
        return crc ? crc : rc;
    }
    sm_txn_abort(txn);
    return rc;
}

int
sm_ledger_begin(sm_ledger *self)
{
    assert(self);
    if (self->batch)
        return SM_ESTATE;
    int err = 0;
    self->batch = sm_txn_begin(self->store, true, &err);
    self->batch_err = 0;
    if (self->batch)
        s_batch_owner = self;
    return self->batch ? 0 : err;
}

int
sm_ledger_commit(sm_ledger *self)
{
    assert(self);
    if (!self->batch)
        return SM_ESTATE;
    s_batch_owner = NULL;
    s_log_forget(self);
    if (self->batch_err) {
        int rc = self->batch_err;
        sm_txn_abort(&self->batch);
        self->batch_err = 0;
        return rc;
    }
    return sm_txn_commit(&self->batch);
}

int
sm_ledger_defer_sync(sm_ledger *self, bool on)
{
    assert(self && !self->batch);
    return sm_store_defer_sync(self->store, on);
}

int
sm_ledger_sync(sm_ledger *self)
{
    assert(self);
    return sm_store_sync(self->store);
}

int
sm_ledger_sync_file(sm_ledger *self)
{
    assert(self);
    return sm_store_sync_file(self->store);
}

void
sm_ledger_mark_durable(sm_ledger *self, uint64_t upto)
{
    assert(self);
    sm_store_mark_durable(self->store, upto);
}

bool
sm_ledger_durable(sm_ledger *self, uint64_t *committed, uint64_t *durable)
{
    assert(self);
    uint64_t c = 0, d = 0;
    sm_store_marks(self->store, &c, &d);
    if (committed)
        *committed = c;
    if (durable)
        *durable = d;
    return d >= c;
}

void
sm_ledger_abort(sm_ledger *self)
{
    assert(self);
    if (s_batch_owner == self)
        s_batch_owner = NULL;
    s_log_forget(self);
    sm_txn_abort(&self->batch);
    self->batch_err = 0;
}

/* ---- records -------------------------------------------------------- */

static int
s_market_get(sm_txn *txn, sm_market *out)
{
    sm_val v;
    int rc = sm_kv_get(txn, SM_DB_META, s_meta_market, strlen(s_meta_market), &v);
    if (rc == SM_ENOTFOUND)
        return SM_ENOMARKET;
    if (rc != 0)
        return rc;
    if (v.len != sizeof *out)
        return SM_ECORRUPT;
    memcpy(out, v.data, sizeof *out);
    return 0;
}

static int
s_head_get(sm_txn *txn, const sm_id *origin, sm__head_rec *out)
{
    sm_val v;
    memset(out, 0, sizeof *out);
    int rc = sm_kv_get(txn, SM_DB_HEADS, origin->b, SM_KEY_BYTES, &v);
    if (rc == SM_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (v.len != sizeof *out)
        return SM_ECORRUPT;
    memcpy(out, v.data, sizeof *out);
    assert(out->applied <= out->seq);
    return 0;
}

static int
s_head_put(sm_txn *txn, const sm_id *origin, const sm__head_rec *h)
{
    assert(h->applied <= h->seq);
    return sm_kv_put(txn, SM_DB_HEADS, origin->b, SM_KEY_BYTES, h, sizeof *h);
}

/*  Append an entry to the log (at the next position) and index it.  The
    next position is read from the log's end once a write transaction and
    then counted on (self->log_next): a catch-up appends thousands of
    entries a transaction, and a cursor walk to the end for each was a
    twentieth of its work.  s_log_forget drops it when the transaction ends
    and on any failure, so it never outlives the transaction it counts.   */
static int
s_log_put(sm_ledger *self, sm_txn *txn, const sm_id *origin, uint64_t seq,
          const uint8_t sig[SM_SIG_BYTES], const uint8_t *bytes, size_t len)
{
    uint8_t key[SM__OSKEY_BYTES], pos[8];
    uint8_t val[SM__LOG_PREFIX_BYTES + SM_ENTRY_BYTES_MAX];
    assert(len <= SM_ENTRY_BYTES_MAX);
    int rc = 0;
    uint64_t next = self->log_next;
    if (self->log_txn != txn) {
        sm_val last;
        self->log_txn = NULL;
        rc = sm_kv_last(txn, SM_DB_LOG, &last);
        if (rc == 0 && last.len != 8)
            return SM_ECORRUPT;
        if (rc != 0 && rc != SM_ENOTFOUND)
            return rc;
        next = rc == 0 ? sm__be64_get(last.data) + 1 : 1;
    }
    sm__be64_put(pos, next);
    memcpy(val, sig, SM_SIG_BYTES);
    memcpy(val + SM__LOG_PREFIX_BYTES, bytes, len);
    sm__oskey(key, origin, seq);
    if ((rc = sm_kv_put_last(txn, SM_DB_LOG, pos, sizeof pos, val,
                             SM__LOG_PREFIX_BYTES + len)) != 0
        || (rc = sm_kv_put(txn, SM_DB_LOGIDX, key, sizeof key, pos, sizeof pos)) != 0) {
        self->log_txn = NULL;
        return rc;
    }
    self->log_txn = txn;
    self->log_next = next + 1;
    return 0;
}


/*  A stored log value as a signed entry (bytes borrowed from the txn), and
    its link hash if `link` is non-NULL.                                      */
static int
s_log_parse(const sm_val *v, sm_signed *out, sm_hash *link)
{
    if (v->len <= SM__LOG_PREFIX_BYTES
        || v->len > SM__LOG_PREFIX_BYTES + SM_ENTRY_BYTES_MAX)
        return SM_ECORRUPT;
    const uint8_t *p = v->data;
    memcpy(out->sig, p, SM_SIG_BYTES);
    out->bytes = p + SM__LOG_PREFIX_BYTES;
    out->len = v->len - SM__LOG_PREFIX_BYTES;
    if (link)
        sm_entry_link(out->bytes, out->len, out->sig, link);
    return 0;
}

static int
s_log_get(sm_txn *txn, const sm_id *origin, uint64_t seq, sm_signed *out,
          sm_hash *link)
{
    uint8_t key[SM__OSKEY_BYTES];
    sm_val pos, v;
    sm__oskey(key, origin, seq);
    int rc = sm_kv_get(txn, SM_DB_LOGIDX, key, sizeof key, &pos);
    if (rc != 0)
        return rc;
    if (pos.len != 8)
        return SM_ECORRUPT;
    rc = sm_kv_get(txn, SM_DB_LOG, pos.data, pos.len, &v);
    if (rc != 0)
        return rc == SM_ENOTFOUND ? SM_ECORRUPT : rc;
    return s_log_parse(&v, out, link);
}

/*  An origin's entries in seq order from `from`: a cursor over the index.  */
static sm_cursor *
s_log_cursor(sm_txn *txn, const sm_id *origin, uint64_t from, int *err)
{
    uint8_t start[SM__OSKEY_BYTES];
    sm__oskey(start, origin, from ? from : 1);
    return sm_cursor_open(txn, SM_DB_LOGIDX, origin->b, SM_KEY_BYTES,
                          start, sizeof start, err);
}

/*  The next entry of such a cursor: its seq and the entry (borrowed).      */
static int
s_log_next(sm_txn *txn, sm_cursor *cur, uint64_t *seq, sm_signed *out)
{
    sm_val k, pos, v;
    int rc = sm_cursor_next(cur, &k, &pos);
    if (rc != 0)
        return rc;
    if (k.len != SM__OSKEY_BYTES || pos.len != 8)
        return SM_ECORRUPT;
    *seq = sm__be64_get((const uint8_t *) k.data + SM_KEY_BYTES);
    rc = sm_kv_get(txn, SM_DB_LOG, pos.data, pos.len, &v);
    if (rc != 0)
        return rc == SM_ENOTFOUND ? SM_ECORRUPT : rc;
    return s_log_parse(&v, out, NULL);
}

static int
s_hlc_load(sm_ledger *self, sm_txn *txn)
{
    sm_val v;
    int rc = sm_kv_get(txn, SM_DB_META, s_meta_hlc, strlen(s_meta_hlc), &v);
    if (rc == SM_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (v.len != 8)
        return SM_ECORRUPT;
    uint64_t stored;
    memcpy(&stored, v.data, 8);
    if (stored > self->hlc)
        self->hlc = stored;
    return 0;
}

static int
s_hlc_store(sm_ledger *self, sm_txn *txn)
{
    return sm_kv_put(txn, SM_DB_META, s_meta_hlc, strlen(s_meta_hlc),
                     &self->hlc, sizeof self->hlc);
}

/*  The seq above which an origin's entries are void (UINT64_MAX: none).     */
static int
s_cap(sm_txn *txn, const sm_id *origin, const sm__head_rec *h, uint64_t *cap)
{
    sm__origin_rec o;
    *cap = UINT64_MAX;
    int rc = sm__origin_get(txn, origin, &o);
    if (rc != 0 && rc != SM_ENOTFOUND)
        return rc;
    if (rc == 0 && o.status == SM__ORIGIN_REVOKED)
        *cap = o.revoke_upto;
    if (h->fork_seq && h->fork_seq - 1 < *cap)
        *cap = h->fork_seq - 1;
    return 0;
}

/* ---- applying ------------------------------------------------------- */

/*  Apply origin's stored entries from applied+1 while they apply, up to its
    cap.  Adds to *applied.  Stops quietly at a waiting entry; records a
    permanent refusal in h->stalled.                                          */
static int
s_advance_origin(sm_txn *txn, const sm_id *market, const sm_id *origin,
                 sm__head_rec *h, uint64_t cap, size_t *applied)
{
    uint64_t upto = h->seq < cap ? h->seq : cap;
    if (h->applied >= upto || h->stalled)
        return 0;
    int rc = 0;
    sm_cursor *cur = s_log_cursor(txn, origin, h->applied + 1, &rc);
    if (!cur)
        return rc;
    sm_entry *e = malloc(sizeof *e);
    if (!e) {
        sm_cursor_close(&cur);
        return SM_ENOMEM;
    }
    while (h->applied < upto) {
        sm_signed s;
        uint64_t seq = 0;
        bool rebuild = false;
        if ((rc = s_log_next(txn, cur, &seq, &s)) != 0)
            break;
        if (seq != h->applied + 1 || sm_entry_decode(s.bytes, s.len, e) != 0) {
            rc = SM_ECORRUPT;
            break;
        }
        rc = sm__state_apply(txn, market, e, 0, 0, &rebuild);
        if (rc == SM_ENOSTOCK) {
            rc = 0;                    /* waits for moves into its location */
            break;
        }
        if (rc != 0 && !s_fatal(rc)) {
            h->stalled = rc;           /* never applies: stop this origin */
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        h->applied++;
        (*applied)++;
    }
    if (rc == SM_ENOTFOUND)
        rc = SM_ECORRUPT;              /* the head promised more entries */
    free(e);
    sm_cursor_close(&cur);
    return rc;
}

/*  The origins of the heads database, at most SM_MEMBERS_MAX: all of them,
    or (`pending`) those with stored entries still to apply.                 */
typedef struct {
    sm_id *origins;            /* [SM_MEMBERS_MAX] */
    size_t n;
    bool pending;
} s_origins;

static int
s_origin_collect(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_origins *c = arg;
    sm__head_rec h;
    if (k->len != SM_KEY_BYTES || v->len != sizeof h)
        return SM_ECORRUPT;
    memcpy(&h, v->data, sizeof h);
    if (!c->pending || (h.applied < h.seq && !h.stalled))
        memcpy(c->origins[c->n++].b, k->data, SM_KEY_BYTES);
    return c->n == SM_MEMBERS_MAX;
}

/*  Advance every origin until no more entries apply.  Termination: each
    round that continues applied at least one entry, and entries are finite. */
static int
s_advance_all(const sm_ledger *self, sm_txn *txn, const sm_id *market, size_t *applied)
{
    s_origins c = { malloc(SM_MEMBERS_MAX * sizeof *c.origins), 0, true };
    if (!c.origins)
        return SM_ENOMEM;
    int rc = 0;
    for (;;) {
        size_t before = *applied;
        c.n = 0;
        if ((rc = sm__ledger_scan(txn, SM_DB_HEADS, NULL, 0, NULL, 0,
                                  s_origin_collect, &c)) != 0)
            break;
        for (size_t i = 0; i < c.n && rc == 0; i++) {
            sm__head_rec h;
            uint64_t cap, was;
            if ((rc = s_head_get(txn, &c.origins[i], &h)) != 0
                || (rc = s_cap(txn, &c.origins[i], &h, &cap)) != 0)
                break;
            /* A damaged entry (set by sm_ledger_set_damaged) is not its
               origin's entry: nothing applies from there until the store
               is repaired.  Reading it would find bytes that may not even
               decode, and call that corruption of the whole transaction. */
            uint64_t damage = sm_ledger_damage(self, &c.origins[i]);
            if (damage && damage - 1 < cap)
                cap = damage - 1;
            was = h.applied;
            int64_t stalled = h.stalled;
            rc = s_advance_origin(txn, market, &c.origins[i], &h, cap, applied);
            if (rc == 0 && (h.applied != was || h.stalled != stalled))
                rc = s_head_put(txn, &c.origins[i], &h);
        }
        if (rc != 0 || *applied == before)
            break;
    }
    free(c.origins);
    return rc;
}

/*  Rebuild the whole state from the log inside `txn`: roster first (from
    the organiser's stored log), then every origin up to its cap.            */
static int
s_rebuild(const sm_ledger *self, sm_txn *txn, const sm_id *market, size_t *applied)
{
    static const sm_db state_dbs[] = { SM_DB_ORIGINS, SM_DB_ITEMS, SM_DB_STOCK,
                                       SM_DB_SALES, SM_DB_HOLDS, SM_DB_EXTIDS,
                                       SM_DB_HOLDENDS, SM_DB_DROPS, SM_DB_RAFFLE };
    int rc = 0;
    for (size_t i = 0; i < sizeof state_dbs / sizeof state_dbs[0]; i++)
        if ((rc = sm_kv_clear(txn, state_dbs[i])) != 0)
            return rc;
    if ((rc = sm__report_clear(txn)) != 0)     /* report.h: aggregates and deltas */
        return rc;

    sm__head_rec oh;
    if ((rc = s_head_get(txn, market, &oh)) != 0)
        return rc;
    uint64_t org_end = oh.fork_seq ? oh.fork_seq - 1 : oh.seq;
    /* As in s_advance_all: nothing of the roster past a damaged entry. */
    uint64_t damage = sm_ledger_damage(self, market);
    if (damage && damage - 1 < org_end)
        org_end = damage - 1;
    sm_entry *e = malloc(sizeof *e);
    if (!e)
        return SM_ENOMEM;
    for (uint64_t seq = 1; seq <= org_end && rc == 0; seq++) {
        sm_signed s;
        bool ignored = false;
        if ((rc = s_log_get(txn, market, seq, &s, NULL)) != 0)
            break;
        if (sm_entry_decode(s.bytes, s.len, e) != 0) {
            rc = SM_ECORRUPT;
            break;
        }
        if (e->body.kind == SM_KIND_ROSTER_ADMIT || e->body.kind == SM_KIND_ROSTER_REVOKE) {
            rc = sm__roster_apply(txn, market, e, &ignored);
            if (rc != 0 && !s_fatal(rc))
                rc = SM_ECORRUPT;      /* it was accepted when stored */
        }
    }
    free(e);
    if (rc != 0)
        return rc == SM_ENOTFOUND ? SM_ECORRUPT : rc;

    /* Reset every origin's applied prefix. */
    s_origins c = { malloc(SM_MEMBERS_MAX * sizeof *c.origins), 0, false };
    if (!c.origins)
        return SM_ENOMEM;
    rc = sm__ledger_scan(txn, SM_DB_HEADS, NULL, 0, NULL, 0, s_origin_collect, &c);
    for (size_t i = 0; i < c.n && rc == 0; i++) {
        sm__head_rec h;
        if ((rc = s_head_get(txn, &c.origins[i], &h)) != 0)
            break;
        h.applied = 0;
        h.stalled = 0;
        rc = s_head_put(txn, &c.origins[i], &h);
    }
    free(c.origins);
    return rc ? rc : s_advance_all(self, txn, market, applied);
}

/*  Bring a store of an older format (sm_store_format) to SM_STORE_FORMAT in
    one write transaction: the state, the report aggregates among it, is
    rebuilt from the log (the step from format 1, which had no aggregates)
    and the format recorded.  Says so in one line.  A store with no market
    has no state yet: it is only marked.                                     */
static int
s_migrate(sm_ledger *self)
{
    uint32_t from = sm_store_format(self->store);
    sm_txn *txn;
    bool own;
    int rc = s_wbegin(self, &txn, &own);
    if (rc != 0)
        return rc;
    assert(own);
    sm_market m;
    size_t applied = 0;
    bool rebuilt = false;
    rc = s_market_get(txn, &m);
    if (rc == SM_ENOMARKET)
        rc = 0;
    else if (rc == 0 && (rc = s_rebuild(self, txn, &m.market, &applied)) == 0)
        rebuilt = true;
    if (rc == 0)
        rc = sm_store_format_mark(txn);
    rc = s_wend(self, &txn, own, rc, false);
    if (rc == 0 && rebuilt)
        sm_log_info("store: migrated from format %u to format %u: the state and the "
                    "report totals rebuilt from the log (%zu entries)", (unsigned) from,
                    (unsigned) SM_STORE_FORMAT, applied);
    return rc;
}

static int s_append(sm_ledger *self, sm_txn *txn, const sm_body *body,
                    uint64_t now_ms, uint64_t *seq_out);

/* ---- market --------------------------------------------------------- */

int
sm_ledger_market(sm_ledger *self, sm_market *out)
{
    assert(self && out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    rc = s_market_get(txn, out);
    sm_txn_abort(&txn);
    return rc;
}

static int
s_market_put(sm_txn *txn, const sm_market *m)
{
    sm_market rec;
    memset(&rec, 0, sizeof rec);
    rec.market = m->market;
    sm__strfill(rec.name, sizeof rec.name, m->name);
    sm__strfill(rec.currency, sizeof rec.currency, m->currency);
    rec.endpoint_count = m->endpoint_count;
    for (uint32_t i = 0; i < m->endpoint_count && i < SM_ENDPOINTS_MAX; i++)
        sm__strfill(rec.endpoints[i], sizeof rec.endpoints[i], m->endpoints[i]);
    return sm_kv_put(txn, SM_DB_META, s_meta_market, strlen(s_meta_market),
                     &rec, sizeof rec);
}

int
sm_ledger_own_confirmed(sm_ledger *self, bool *out)
{
    assert(self && out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm_val v;
    rc = sm_kv_get(txn, SM_DB_META, s_meta_own, strlen(s_meta_own), &v);
    *out = rc == 0;
    sm_txn_abort(&txn);
    return rc == SM_ENOTFOUND ? 0 : rc;
}

int
sm_ledger_confirm_own(sm_ledger *self)
{
    assert(self);
    sm_txn *txn;
    bool own;
    int rc = s_wbegin(self, &txn, &own);
    if (rc != 0)
        return rc;
    static const uint8_t yes = 1;
    rc = sm_kv_put(txn, SM_DB_META, s_meta_own, strlen(s_meta_own), &yes, 1);
    return s_wend(self, &txn, own, rc, false);
}

int
sm_ledger_create_market(sm_ledger *self, const char *name, const char *currency,
                        uint64_t now_ms)
{
    return sm_ledger_create_market_as(self, name, name, currency, now_ms);
}

int
sm_ledger_create_market_as(sm_ledger *self, const char *name, const char *self_name,
                           const char *currency, uint64_t now_ms)
{
    assert(self && name && self_name && currency);
    if (!self->has_id)
        return SM_ENOIDENT;
    if (strlen(name) == 0 || strlen(name) > SM_NAME_BYTES_MAX
        || strlen(self_name) == 0 || strlen(self_name) > SM_NAME_BYTES_MAX)
        return SM_EINVAL;
    if (strlen(currency) != 3)
        return SM_EMONEY;
    for (int i = 0; i < 3; i++)
        if (currency[i] < 'A' || currency[i] > 'Z')
            return SM_EMONEY;
    sm_market m;
    memset(&m, 0, sizeof m);
    m.market = self->id.pub;
    sm__strfill(m.name, sizeof m.name, name);
    sm__strfill(m.currency, sizeof m.currency, currency);

    sm_txn *txn;
    bool own;
    int rc = s_wbegin(self, &txn, &own);
    if (rc != 0)
        return rc;
    sm_market existing;
    rc = s_market_get(txn, &existing);
    if (rc == 0)
        rc = SM_EEXIST;
    else if (rc == SM_ENOMARKET)
        rc = s_market_put(txn, &m);
    if (rc == 0) {
        /* The admit of itself goes in the same transaction. */
        sm_body b;
        memset(&b, 0, sizeof b);
        b.kind = SM_KIND_ROSTER_ADMIT;
        b.u.admit.node = self->id.pub;
        sm__strfill(b.u.admit.name, sizeof b.u.admit.name, self_name);
        b.u.admit.role = SM_ROLE_ORGANISER;
        rc = s_append(self, txn, &b, now_ms, NULL);
    }
    return s_wend(self, &txn, own, rc, false);
}

int
sm_ledger_join(sm_ledger *self, const sm_market *market, const sm_signed *admit)
{
    assert(self && market && admit);
    if (admit->len == 0 || admit->len > SM_ENTRY_BYTES_MAX)
        return SM_EINVAL;
    sm_txn *txn;
    bool own;
    int rc = s_wbegin(self, &txn, &own);
    if (rc != 0)
        return rc;
    sm_market existing;
    rc = s_market_get(txn, &existing);
    if (rc == 0)
        rc = SM_EEXIST;
    else if (rc == SM_ENOMARKET)
        rc = s_market_put(txn, market);
    if (rc == 0) {
        uint8_t val[SM_SIG_BYTES + SM_ENTRY_BYTES_MAX];
        memcpy(val, admit->sig, SM_SIG_BYTES);
        memcpy(val + SM_SIG_BYTES, admit->bytes, admit->len);
        rc = sm_kv_put(txn, SM_DB_META, s_meta_join, strlen(s_meta_join), val,
                       SM_SIG_BYTES + admit->len);
    }
    return s_wend(self, &txn, own, rc, false);
}

int
sm_ledger_join_role(sm_ledger *self, int *role)
{
    assert(self && role);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm_val v;
    rc = sm_kv_get(txn, SM_DB_META, s_meta_join, strlen(s_meta_join), &v);
    if (rc == 0 && v.len <= SM_SIG_BYTES)
        rc = SM_ESTATE;
    sm_entry e;
    if (rc == 0)                    /* decoded inside the read transaction */
        rc = sm_entry_decode((const uint8_t *) v.data + SM_SIG_BYTES,
                             v.len - SM_SIG_BYTES, &e);
    if (rc == 0 && e.body.kind != SM_KIND_ROSTER_ADMIT)
        rc = SM_ESTATE;
    if (rc == 0)
        *role = e.body.u.admit.role;
    sm_txn_abort(&txn);
    return rc;
}

/* ---- append --------------------------------------------------------- */

static int
s_append(sm_ledger *self, sm_txn *txn, const sm_body *body, uint64_t now_ms,
         uint64_t *seq_out)
{
    sm_market m;
    sm__head_rec h;
    sm__origin_rec o;
    int rc;
    const sm_id *me = &self->id.pub;

    if ((rc = s_market_get(txn, &m)) != 0)
        return rc;
    rc = sm__origin_get(txn, me, &o);
    if (rc == 0 && o.status == SM__ORIGIN_REVOKED)
        return SM_EREVOKED;
    if (rc != 0 && rc != SM_ENOTFOUND)
        return rc;
    if ((rc = s_head_get(txn, me, &h)) != 0)
        return rc;
    if (h.fork_seq)
        return SM_EFORK;
    if (h.applied != h.seq || h.stalled)
        return SM_ESTATE;              /* own entries always apply at once */
    if (h.seq >= SM_SEQ_MAX)
        return SM_ETOOBIG;

    /* A till retrying a sale gets the first one back, not a second sale. */
    if (body->kind == SM_KIND_SALE && body->u.sale.external_id[0]) {
        uint8_t key[SM_KEY_BYTES + SM_EXTID_BYTES_MAX];
        size_t n = strnlen(body->u.sale.external_id, SM_EXTID_BYTES_MAX + 1);
        if (n > SM_EXTID_BYTES_MAX)
            return SM_EBODY;
        memcpy(key, me->b, SM_KEY_BYTES);
        memcpy(key + SM_KEY_BYTES, body->u.sale.external_id, n);
        sm_val v;
        rc = sm_kv_get(txn, SM_DB_EXTIDS, key, SM_KEY_BYTES + n, &v);
        if (rc == 0 && v.len == 8) {
            if (seq_out)
                *seq_out = sm__be64_get(v.data);
            return SM_EEXIST;
        }
        if (rc != SM_ENOTFOUND)
            return rc ? rc : SM_ECORRUPT;
    }

    if ((rc = s_hlc_load(self, txn)) != 0)
        return rc;
    sm_entry *e = malloc(sizeof *e);
    if (!e)
        return SM_ENOMEM;
    memset(e, 0, sizeof *e);
    e->version = SM_ENTRY_VERSION;
    e->market = m.market;
    e->origin = *me;
    e->seq = h.seq + 1;
    memcpy(e->prev.b, h.link, SM_HASH_BYTES);
    uint64_t hlc = sm_hlc_next(self->hlc, now_ms);
    e->hlc = hlc;
    e->body = *body;
    /* A raffle's secret is derived from this node's key and the drop's seq
       (drop.h): its drop commits to it, its draw reveals it. */
    if (body->kind == SM_KIND_DROP && body->u.drop.mode == SM_DROP_RAFFLE) {
        sm_hash secret;
        sm_drop_secret(&self->id, &m.market, e->seq, &secret);
        sm_hash_bytes(secret.b, sizeof secret.b, &e->body.u.drop.commitment);
        e->body.u.drop.has_commitment = true;
    } else if (body->kind == SM_KIND_RAFFLE_DRAW) {
        sm_drop_secret(&self->id, &m.market, body->u.raffle_draw.drop_seq,
                       &e->body.u.raffle_draw.secret);
    }

    uint8_t bytes[SM_ENTRY_BYTES_MAX], sig[SM_SIG_BYTES];
    size_t len = 0;
    sm_hash link;
    bool rebuild = false;
    size_t applied = 0;
    rc = sm_entry_encode(e, bytes, sizeof bytes, &len);
    if (rc != 0)
        goto done;
    /* Roster entries take effect when stored; the rest through the state. */
    if (body->kind == SM_KIND_ROSTER_ADMIT || body->kind == SM_KIND_ROSTER_REVOKE)
        rc = sm__roster_apply(txn, &m.market, e, &rebuild);
    else
        rc = sm__state_apply(txn, &m.market, e, SM__APPLY_LOCAL, now_ms, &rebuild);
    if (rc != 0)
        goto done;
    sm_entry_sign(bytes, len, self->id.secret, sig);
    sm_entry_link(bytes, len, sig, &link);
    if ((rc = s_log_put(self, txn, me, e->seq, sig, bytes, len)) != 0)
        goto done;
    h.seq = h.applied = e->seq;
    memcpy(h.link, link.b, SM_HASH_BYTES);
    if ((rc = s_head_put(txn, me, &h)) != 0)
        goto done;
    self->hlc = hlc;
    if ((rc = s_hlc_store(self, txn)) != 0)
        goto done;
    if (rebuild)
        rc = s_rebuild(self, txn, &m.market, &applied);
    else if (body->kind == SM_KIND_STOCK_MOVE)
        /* Units moved to another location may be what one of its origin's
           entries waits for: it applies now, as it would if the move had
           come by ingest (else it waits for the next ingest of anything,
           and this node's state differs from its peers' until then). */
        rc = s_advance_all(self, txn, &m.market, &applied);
    if (rc == 0 && seq_out)
        *seq_out = e->seq;
done:
    free(e);
    return rc;
}

void
sm_ledger_derive(sm_ledger *self, const char *purpose, const uint8_t *msg, size_t len,
                 uint8_t out[32])
{
    assert(self && self->has_id);
    sm_identity_derive(&self->id, purpose, msg, len, out);
}

uint64_t
sm_ledger_hlc(const sm_ledger *self)
{
    assert(self);
    return self->hlc;
}

int
sm_ledger_append(sm_ledger *self, const sm_body *body, uint64_t now_ms,
                 uint64_t *seq_out)
{
    assert(self && body);
    if (!self->has_id)
        return SM_ENOIDENT;
    sm_txn *txn;
    bool own;
    int rc = s_wbegin(self, &txn, &own);
    if (rc != 0)
        return rc;
    rc = s_append(self, txn, body, now_ms, seq_out);
    return s_wend(self, &txn, own, rc, false);
}

/* ---- ingest --------------------------------------------------------- */

/*  Record an equivocation: `theirs` (authenticated by its run) differs from
    the stored entry at the same seq.  Both are kept as evidence.            */
static int
s_fork(sm_txn *txn, const sm_id *origin, uint64_t seq, const sm_signed *theirs,
       const sm_hash *their_link, sm__head_rec *h, bool *rebuild)
{
    sm_signed ours;
    sm_hash our_link;
    int rc = s_log_get(txn, origin, seq, &ours, &our_link);
    if (rc != 0)
        return rc == SM_ENOTFOUND ? SM_ECORRUPT : rc;
    /* Evidence: two length-prefixed (link, sig, entry) records. */
    size_t cap = 2 * (8 + SM_HASH_BYTES + SM_SIG_BYTES + SM_ENTRY_BYTES_MAX);
    uint8_t *ev = malloc(cap), *p = ev;
    if (!ev)
        return SM_ENOMEM;
    const sm_signed *sides[2] = { &ours, theirs };
    const sm_hash *links[2] = { &our_link, their_link };
    for (int i = 0; i < 2; i++) {
        sm__be64_put(p, sides[i]->len);
        p += 8;
        memcpy(p, links[i]->b, SM_HASH_BYTES);
        memcpy(p + SM_HASH_BYTES, sides[i]->sig, SM_SIG_BYTES);
        memcpy(p + SM_HASH_BYTES + SM_SIG_BYTES, sides[i]->bytes, sides[i]->len);
        p += SM_HASH_BYTES + SM_SIG_BYTES + sides[i]->len;
    }
    uint8_t key[SM__OSKEY_BYTES];
    sm__oskey(key, origin, seq);
    rc = sm_kv_put(txn, SM_DB_FORKS, key, sizeof key, ev, (size_t) (p - ev));
    free(ev);
    if (rc != 0)
        return rc;
    if (h->fork_seq == 0 || seq < h->fork_seq)
        h->fork_seq = seq;
    if (h->applied >= seq)
        *rebuild = true;
    return 0;
}

/*  Decode and chain-check the run; returns how many leading entries are
    well-formed, from one origin, contiguous and linked, with *err the
    reason the next one is not.                                               */
static size_t
s_run_check(sm_ledger *self, const sm_market *m, const sm_signed *run, size_t n,
            int *err)
{
    *err = 0;
    for (size_t i = 0; i < n; i++) {
        sm_entry *e = &self->scratch[i];
        int rc = sm_entry_decode(run[i].bytes, run[i].len, e);
        if (rc == 0 && memcmp(e->market.b, m->market.b, SM_KEY_BYTES) != 0)
            rc = SM_EMARKET;
        if (rc == 0 && i > 0) {
            const sm_entry *prev = &self->scratch[i - 1];
            if (memcmp(e->origin.b, prev->origin.b, SM_KEY_BYTES) != 0
                || e->seq != prev->seq + 1)
                rc = SM_EORIGIN;
            else if (memcmp(e->prev.b, self->links[i - 1].b, SM_HASH_BYTES) != 0)
                rc = SM_ELINK;
        }
        if (rc != 0) {
            *err = rc;
            return i;
        }
        sm_entry_link(run[i].bytes, run[i].len, run[i].sig, &self->links[i]);
    }
    return n;
}

/*  *same: the log stores entry e (decoded from s) with exactly s's bytes and
    signature.                                                               */
static int
s_stored_same(sm_txn *txn, const sm_entry *e, const sm_signed *s, bool *same)
{
    sm_signed stored;
    *same = false;
    int rc = s_log_get(txn, &e->origin, e->seq, &stored, NULL);
    if (rc == SM_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    *same = stored.len == s->len && memcmp(stored.sig, s->sig, SM_SIG_BYTES) == 0
         && memcmp(stored.bytes, s->bytes, s->len) == 0;
    return 0;
}

/*  One ingest, in steps: s_ingest_begin authenticates the run and reads its
    origin's roster record and head, s_ingest_check decides each entry,
    s_ingest_apply applies an accepted one when its origin is caught up,
    s_ingest_store logs it, and s_ingest_end writes the head and advances
    whatever the run let apply.  Every step returns 0 or a store error (the
    ingest stops); a refusal of an entry goes to res->err / res->err_seq.     */
typedef struct {
    sm_ledger *self;
    sm_txn *txn;
    const sm_signed *run;
    uint64_t now_ms;
    sm_ingest_result *res;
    sm_market m;
    const sm_id *origin;       /* the run's: &self->scratch[0].origin */
    bool organiser;            /* the origin is the market's organiser */
    sm__origin_rec o;          /* its roster record (zeroed if none) */
    sm__head_rec h;            /* its head, updated as entries are stored */
    uint64_t first_seq;        /* its log head before the run */
    bool rebuild;              /* an entry voided applied ones */
} s_ingest;

static int
s_scratch_alloc(sm_ledger *self)
{
    if (self->scratch)
        return 0;
    self->scratch = malloc(SM_RUN_ENTRIES_MAX * sizeof *self->scratch);
    self->links = malloc(SM_RUN_ENTRIES_MAX * sizeof *self->links);
    if (self->scratch && self->links)
        return 0;
    free(self->scratch);
    free(self->links);
    self->scratch = NULL;
    self->links = NULL;
    return SM_ENOMEM;
}

/*  Check the run's shape, its signature and its origin's membership; *ok is
    how many leading entries may be considered.  Non-zero (with res->err set)
    when none may.                                                            */
static int
s_ingest_begin(s_ingest *in, size_t n, size_t *ok)
{
    sm_ledger *self = in->self;
    sm_ingest_result *res = in->res;
    int refusal = 0, rc;
    *ok = s_run_check(self, &in->m, in->run, n, &refusal);
    if (*ok < n) {
        res->err = refusal;
        res->err_seq = *ok > 0 ? self->scratch[*ok - 1].seq + 1 : 0;
    }
    if (*ok == 0)
        return refusal;
    /* One signature authenticates the whole linked run.  A run whose newest
       entry is stored here already, byte for byte, is that stored run (each
       entry's prev is the link of the one before it), authenticated when it
       was stored: relays deliver most entries several times, and checking
       none of those repeats keeps a node's signature work to one check an
       entry. */
    const sm_entry *last = &self->scratch[*ok - 1];
    const sm_signed *s = &in->run[*ok - 1];
    bool known = false;
    if ((rc = s_stored_same(in->txn, last, s, &known)) != 0)
        return rc;
#if SM_SIM_BUG == 3                    /* planted for sim-selftest: ignore a signature */
    known = true;
#endif
    if (!known && sm_entry_verify(s->bytes, s->len, s->sig, &last->origin) != 0) {
        res->err_seq = last->seq;
        return res->err = SM_ESIG;
    }
    in->origin = &self->scratch[0].origin;
    in->organiser = memcmp(in->origin->b, in->m.market.b, SM_KEY_BYTES) == 0;
    rc = sm__origin_get(in->txn, in->origin, &in->o);
    if (rc == SM_ENOTFOUND && !in->organiser) {
        res->err_seq = self->scratch[0].seq;
        return res->err = SM_ENOTMEMBER;
    }
    if (rc != 0 && rc != SM_ENOTFOUND)
        return rc;
    if ((rc = s_head_get(in->txn, in->origin, &in->h)) != 0)
        return rc;
    in->first_seq = in->h.seq;
    return 0;
}

/*  Entry i at or below the stored head: *dup if it is the stored one, else
    an equivocation (recorded, *why = SM_EFORK) or a bad signature.          */
static int
s_ingest_known(s_ingest *in, size_t i, int *why, bool *dup)
{
    const sm_entry *e = &in->self->scratch[i];
    const sm_signed *s = &in->run[i];
    sm_signed stored;
    int rc = s_log_get(in->txn, in->origin, e->seq, &stored, NULL);
    if (rc != 0)
        return rc;
    /* Same bytes and signature: same link, a duplicate. */
    if (stored.len == s->len && memcmp(stored.sig, s->sig, SM_SIG_BYTES) == 0
        && memcmp(stored.bytes, s->bytes, s->len) == 0) {
        in->res->duplicates++;
        *dup = true;
#if SM_SIM_BUG == 2                    /* planted for sim-selftest: apply a duplicate again */
        if (e->seq <= in->h.applied
            && s_fatal(rc = sm__state_apply(in->txn, &in->m.market, e, 0, in->now_ms,
                                            &in->rebuild)))
            return rc;
#endif
        return 0;
    }
    if (sm_entry_verify(s->bytes, s->len, s->sig, in->origin) != 0) {
        *why = SM_ESIG;
        return 0;
    }
    if ((rc = s_fork(in->txn, in->origin, e->seq, s, &in->self->links[i], &in->h,
                     &in->rebuild)) != 0)
        return rc;
    *why = SM_EFORK;
    return 0;
}

/*  Decide entry i: *dup (already stored, skip it), *why (a refusal: the
    run stops there), or neither (it extends the log).                       */
static int
s_ingest_check(s_ingest *in, size_t i, int *why, bool *dup)
{
    const sm_entry *e = &in->self->scratch[i];
    *why = 0;
    *dup = false;
    if (!in->organiser && in->o.status == SM__ORIGIN_REVOKED && e->seq > in->o.revoke_upto)
        *why = SM_EREVOKED;
    else if (in->h.fork_seq && e->seq >= in->h.fork_seq)
        *why = SM_EFORK;
    else if (e->seq <= in->h.seq)
        return s_ingest_known(in, i, why, dup);
    else if (e->seq > in->h.seq + 1)
        *why = SM_EGAP;
    else if (memcmp(e->prev.b, in->h.link, SM_HASH_BYTES) != 0)
        *why = SM_ELINK;
    else if (SM_HLC_MS(e->hlc) > in->now_ms + SM_FUTURE_SKEW_MS)
        *why = SM_EFUTURE;
    return 0;
}

/*  Apply an entry that extends the log: roster entries act when stored;
    stock entries when their origin is caught up and they are covered (else
    they are stored and wait).  *why is a refusal; the return a store error. */
static int
s_ingest_apply(s_ingest *in, const sm_entry *e, int *why)
{
    if (e->body.kind == SM_KIND_ROSTER_ADMIT || e->body.kind == SM_KIND_ROSTER_REVOKE) {
        *why = sm__roster_apply(in->txn, &in->m.market, e, &in->rebuild);
        if (s_fatal(*why))
            return *why;
    }
    if (*why != 0 || in->h.applied != in->h.seq || in->h.stalled)
        return 0;
    *why = sm__state_apply(in->txn, &in->m.market, e, 0, in->now_ms, &in->rebuild);
    if (s_fatal(*why))
        return *why;
    if (*why == 0) {
        in->h.applied = e->seq;
        in->res->applied++;
    } else if (*why == SM_ENOSTOCK) {
        *why = 0;                      /* stored; applies when the units arrive */
    }
    return 0;
}

/*  Log entry i and move the origin's head onto it.                          */
static int
s_ingest_store(s_ingest *in, size_t i)
{
    const sm_entry *e = &in->self->scratch[i];
    int rc = s_log_put(in->self, in->txn, in->origin, e->seq, in->run[i].sig,
                       in->run[i].bytes, in->run[i].len);
    if (rc != 0)
        return rc;
    in->h.seq = e->seq;
    memcpy(in->h.link, in->self->links[i].b, SM_HASH_BYTES);
    in->self->hlc = sm_hlc_merge(in->self->hlc, e->hlc, in->now_ms);
    in->res->accepted++;
    return 0;
}

/*  After the run: the head and the HLC, then whatever now applies (all of
    the state again if an entry voided applied ones).                        */
static int
s_ingest_end(s_ingest *in)
{
    int rc;
    if ((in->res->accepted || in->h.fork_seq)
        && (rc = s_head_put(in->txn, in->origin, &in->h)) != 0)
        return rc;
    if (in->res->accepted && (rc = s_hlc_store(in->self, in->txn)) != 0)
        return rc;
    if (in->rebuild)
        return s_rebuild(in->self, in->txn, &in->m.market, &in->res->applied);
    if (in->res->applied || in->h.seq > in->first_seq)
        return s_advance_all(in->self, in->txn, &in->m.market, &in->res->applied);
    return 0;
}

static int
s_ingest_run(s_ingest *in, size_t n)
{
    size_t ok = 0;
    int rc = s_ingest_begin(in, n, &ok);
    for (size_t i = 0; i < ok && rc == 0; i++) {
        int why = 0;
        bool dup = false;
        if ((rc = s_ingest_check(in, i, &why, &dup)) != 0 || dup)
            continue;
        if (why == 0 && (rc = s_ingest_apply(in, &in->self->scratch[i], &why)) != 0)
            break;
        if (why != 0) {
            in->res->err = why;
            in->res->err_seq = in->self->scratch[i].seq;
            return s_ingest_end(in);
        }
        rc = s_ingest_store(in, i);
    }
    return rc ? rc : s_ingest_end(in);
}

int
sm_ledger_ingest(sm_ledger *self, const sm_signed *run, size_t n,
                 uint64_t now_ms, sm_ingest_result *res)
{
    assert(self && (run || n == 0) && res);
    memset(res, 0, sizeof *res);
    if (n == 0)
        return 0;
    if (n > SM_RUN_ENTRIES_MAX)
        return res->err = SM_ETOOBIG;
    if (s_scratch_alloc(self) != 0)
        return res->err = SM_ENOMEM;
    sm_txn *txn;
    bool own;
    int rc = s_wbegin(self, &txn, &own);
    if (rc != 0)
        return res->err = rc;
    s_ingest in = { .self = self, .txn = txn, .run = run, .now_ms = now_ms, .res = res };
    if ((rc = s_market_get(txn, &in.m)) == 0)
        rc = s_ingest_run(&in, n);
    if (rc == 0)
        rc = res->err;
    else if (res->err == 0)
        res->err = rc;
    return s_wend(self, &txn, own, rc, true);
}

/* ---- reads of the log ----------------------------------------------- */

static void
s_head_export(sm_txn *txn, const sm_id *origin, const sm__head_rec *h, sm_head *out)
{
    out->origin = *origin;
    out->seq = h->seq;
    memcpy(out->link.b, h->link, SM_HASH_BYTES);
    out->applied = h->applied;
    if (s_cap(txn, origin, h, &out->cap) != 0)
        out->cap = UINT64_MAX;
}

int
sm_ledger_head(sm_ledger *self, const sm_id *origin, sm_head *out)
{
    assert(self && origin && out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm__head_rec h;
    memset(out, 0, sizeof *out);
    if ((rc = s_head_get(txn, origin, &h)) == 0)
        s_head_export(txn, origin, &h, out);
    sm_txn_abort(&txn);
    return rc;
}

typedef struct {
    sm_head_fn cb;
    void *arg;
} s_heads;

static int
s_heads_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    s_heads *it = arg;
    sm__head_rec h;
    sm_head out;
    sm_id origin;
    if (k->len != SM_KEY_BYTES || v->len != sizeof h)
        return SM_ECORRUPT;
    memcpy(origin.b, k->data, SM_KEY_BYTES);
    memcpy(&h, v->data, sizeof h);
    s_head_export(txn, &origin, &h, &out);
    return it->cb(&out, it->arg) != 0;
}

int
sm_ledger_heads(sm_ledger *self, sm_head_fn cb, void *arg)
{
    assert(self && cb);
    s_heads it = { cb, arg };
    return sm__ledger_each(self, SM_DB_HEADS, NULL, 0, NULL, 0, s_heads_each, &it);
}

int
sm_ledger_read(sm_ledger *self, const sm_id *origin, uint64_t from, size_t max,
               sm_entry_fn cb, void *arg)
{
    assert(self && origin && cb);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm_cursor *cur = s_log_cursor(txn, origin, from, &rc);
    if (cur) {
        size_t count = 0;
        sm_signed s;
        uint64_t seq = 0;
        while (count < max && (rc = s_log_next(txn, cur, &seq, &s)) == 0) {
            count++;
            if (cb(&s, seq, arg) != 0)
                break;
        }
        if (rc == SM_ENOTFOUND)
            rc = 0;
        sm_cursor_close(&cur);
    }
    sm_txn_abort(&txn);
    return rc;
}

typedef struct {
    sm_entry_copy *out;
    uint64_t seq;
    bool found;
} s_read_one_ctx;

static int
s_read_one_cb(const sm_signed *e, uint64_t seq, void *arg)
{
    s_read_one_ctx *c = arg;
    if (seq == c->seq && e->len <= sizeof c->out->bytes) {
        memcpy(c->out->bytes, e->bytes, e->len);
        c->out->s.bytes = c->out->bytes;
        c->out->s.len = e->len;
        memcpy(c->out->s.sig, e->sig, SM_SIG_BYTES);
        c->found = true;
    }
    return 1;
}

int
sm_ledger_read_one(sm_ledger *self, const sm_id *origin, uint64_t seq, sm_entry_copy *out)
{
    assert(out);
    s_read_one_ctx c = { out, seq, false };
    int rc = sm_ledger_read(self, origin, seq, 1, s_read_one_cb, &c);
    if (rc == 0 && !c.found)
        rc = SM_ENOTFOUND;
    return rc;
}

typedef struct {
    sm_fork_fn cb;
    sm_fork_evidence_fn evidence_cb;
    void *arg;
    int rc;                    /* what evidence_cb returned to stop the walk */
} s_forks;

/*  One stored evidence record: two [be64 len][link][sig][entry] sides, as
    s_fork writes them.                                                      */
static int
s_evidence_parse(const sm_val *v, sm_signed *a, sm_signed *b)
{
    const uint8_t *p = v->data, *end = p + v->len;
    sm_signed *sides[2] = { a, b };
    for (int i = 0; i < 2; i++) {
        if ((size_t) (end - p) < 8 + SM_HASH_BYTES + SM_SIG_BYTES)
            return SM_ECORRUPT;
        uint64_t len = sm__be64_get(p);
        p += 8 + SM_HASH_BYTES;
        if (len == 0 || len > SM_ENTRY_BYTES_MAX || (uint64_t) (end - p) < SM_SIG_BYTES + len)
            return SM_ECORRUPT;
        memcpy(sides[i]->sig, p, SM_SIG_BYTES);
        sides[i]->bytes = p + SM_SIG_BYTES;
        sides[i]->len = (size_t) len;
        p += SM_SIG_BYTES + len;
    }
    return p == end ? 0 : SM_ECORRUPT;
}

static int
s_forks_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_forks *it = arg;
    sm_id origin;
    sm_signed a, b;
    if (k->len != SM__OSKEY_BYTES)
        return SM_ECORRUPT;
    memcpy(origin.b, k->data, SM_KEY_BYTES);
    uint64_t seq = sm__be64_get((const uint8_t *) k->data + SM_KEY_BYTES);
    if (it->cb)
        return it->cb(&origin, seq, it->arg) != 0;
    if (s_evidence_parse(v, &a, &b) != 0)
        return SM_ECORRUPT;
    it->rc = it->evidence_cb(&origin, seq, &a, &b, it->arg);
    return it->rc != 0;
}

int
sm_ledger_forks_each(sm_ledger *self, sm_fork_fn cb, void *arg)
{
    assert(self && cb);
    s_forks it = { cb, NULL, arg, 0 };
    return sm__ledger_each(self, SM_DB_FORKS, NULL, 0, NULL, 0, s_forks_each, &it);
}

/*  The first key of an origin's evidence: its lowest seq (keys sort by
    origin, then big-endian seq).                                           */
static int
s_fork_first(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    (void) v;
    if (k->len != SM__OSKEY_BYTES)
        return SM_ECORRUPT;
    *(uint64_t *) arg = sm__be64_get((const uint8_t *) k->data + SM_KEY_BYTES);
    return 1;
}

int
sm_ledger_fork_at(sm_ledger *self, const sm_id *origin, uint64_t *seq)
{
    assert(self && origin && seq);
    uint64_t first = 0;
    int rc = sm__ledger_each(self, SM_DB_FORKS, origin->b, SM_KEY_BYTES, NULL, 0,
                             s_fork_first, &first);
    if (rc != 0)
        return rc;
    if (first == 0)
        return SM_ENOTFOUND;
    *seq = first;
    return 0;
}

int
sm_ledger_fork_evidence_each(sm_ledger *self, sm_fork_evidence_fn cb, void *arg)
{
    assert(self && cb);
    s_forks it = { NULL, cb, arg, 0 };
    int rc = sm__ledger_each(self, SM_DB_FORKS, NULL, 0, NULL, 0, s_forks_each, &it);
    return rc ? rc : it.rc;
}

/* ---- reindex, verify ---------------------------------------- */

/* ---- verify, check, reindex -----------------------------------------

    Integrity (what `verify`, `run` at open and `reindex` rely on):
    - chains: per origin, entries 1..head contiguous, each decoding to its
      own origin and seq, of this market, linking to the one before, and
      the last linking to the head's recorded link hash.  Because a link
      covers the signature, checking the links and the newest entry's
      signature authenticates the whole chain (proto/log.md): what the open
      check does.  `verify` and `reindex` check every signature as well.
    - state: every derived database (all but meta, log, logidx, forks) is
      recomputed from the log inside a write transaction that is then
      abandoned, and compared record for record with what is stored.
      Costs a reindex (about 1.6 s a million entries) and writes nothing;
      skipped (state_checked false) when the map or disk has no room for
      the recomputed copy.                                                */

typedef struct {
    sm_txn *txn;
    const sm_market *market;
    bool every_sig;
    bool head_bad;             /* a head record disagrees with its log */
    sm_check_report *r;
} s_verify_ctx;

static void
s_report(sm_check_report *r, int err, const sm_id *origin, uint64_t seq,
         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
s_report(sm_check_report *r, int err, const sm_id *origin, uint64_t seq,
         const char *fmt, ...)
{
    r->err = err;
    if (origin)
        r->origin = *origin;
    r->seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->what, sizeof r->what, fmt, ap);
    va_end(ap);
}

static int
s_verify_origin(s_verify_ctx *ctx, const sm_id *origin, uint64_t head_seq,
                const uint8_t head_link[SM_HASH_BYTES])
{
    sm_entry *e = malloc(sizeof *e);
    if (!e)
        return SM_ENOMEM;
    int rc = 0;
    const char *why = "";
    sm_cursor *cur = s_log_cursor(ctx->txn, origin, 1, &rc);
    sm_hash prev;
    memset(prev.b, 0, sizeof prev.b);
    uint64_t expect = 1, bad = 0;
    while (cur) {
        sm_signed s;
        uint64_t seq = 0;
        int nrc = s_log_next(ctx->txn, cur, &seq, &s);
        if (nrc == SM_ENOTFOUND)
            break;
        bad = seq ? seq : expect;
        if (nrc != 0) {
            rc = nrc;
            why = "its log record cannot be read";
            break;
        }
        sm_hash computed;
        if (seq != expect) {
            rc = seq > expect ? SM_EGAP : SM_ECORRUPT;
            why = "the log index is out of sequence";
            break;
        }
        if ((rc = sm_entry_decode(s.bytes, s.len, e)) != 0) {
            why = "the entry does not decode";
            break;
        }
        sm_entry_link(s.bytes, s.len, s.sig, &computed);
        if (memcmp(e->origin.b, origin->b, SM_KEY_BYTES) != 0 || e->seq != seq) {
            rc = SM_ECORRUPT;
            why = "the entry names another origin or seq than its index";
            break;
        }
        if (memcmp(e->market.b, ctx->market->market.b, SM_KEY_BYTES) != 0) {
            rc = SM_EMARKET;
            why = "the entry names another market";
            break;
        }
        if (memcmp(e->prev.b, prev.b, SM_HASH_BYTES) != 0) {
            rc = SM_ELINK;
            why = seq > 1 ? "the entry does not link to the one before: this entry "
                            "or the one before was altered" : "the first entry has a link";
            bad = seq > 1 ? seq - 1 : seq;
            break;
        }
        if ((ctx->every_sig || seq == head_seq)
            && (rc = sm_entry_verify(s.bytes, s.len, s.sig, origin)) != 0) {
            why = "the signature does not verify";
            break;
        }
        prev = computed;
        ctx->r->checked++;
        expect++;
    }
    if (rc == 0 && (expect - 1 != head_seq
                    || (head_seq && memcmp(prev.b, head_link, SM_HASH_BYTES) != 0))) {
        bad = expect - 1 != head_seq ? expect : head_seq;
        rc = SM_ECORRUPT;              /* the head disagrees with the log */
        ctx->head_bad = true;          /* refused, never served degraded */
        why = expect - 1 != head_seq ? "the head record disagrees with the log's length"
                                     : "the newest entry does not match the head's link: "
                                       "the entry or the head record was altered";
    }
    if (rc != 0 && rc != SM_ENOMEM)
        s_report(ctx->r, rc, origin, bad, "%s (%s)", why, sm_strerror(rc));
    sm_cursor_close(&cur);
    free(e);
    return rc;
}

/*  Every origin's chain, in one transaction.                                */
static int
s_check_chains(sm_txn *txn, bool every_sig, bool all, sm_check_report *r)
{
    uint64_t first_seq = 0;
    char first_what[sizeof r->what];
    sm_market m;
    s_verify_ctx ctx = { txn, &m, every_sig, false, r };
    int rc = s_market_get(txn, &m);
    if (rc == SM_ENOMARKET)
        return 0;                      /* nothing stored yet */
    if (rc != 0) {
        s_report(r, rc, NULL, 0, "the market record cannot be read (%s)", sm_strerror(rc));
        return rc;
    }
    sm_cursor *cur = sm_cursor_open(txn, SM_DB_HEADS, NULL, 0, NULL, 0, &rc);
    if (!cur)
        return rc;
    sm_val k, v;
    while ((rc = sm_cursor_next(cur, &k, &v)) == 0) {
        sm__head_rec h;
        sm_id origin;
        if (k.len != SM_KEY_BYTES || v.len != sizeof h) {
            rc = SM_ECORRUPT;
            s_report(r, rc, NULL, 0, "a head record has the wrong size");
            break;
        }
        memcpy(origin.b, k.data, SM_KEY_BYTES);
        memcpy(&h, v.data, sizeof h);
        if (h.applied > h.seq || (h.fork_seq && h.fork_seq > h.seq + 1)) {
            rc = SM_ECORRUPT;
            s_report(r, rc, &origin, h.seq ? h.seq : 1, "its head record is inconsistent "
                     "(applied %llu, fork %llu, head %llu)", (unsigned long long) h.applied,
                     (unsigned long long) h.fork_seq, (unsigned long long) h.seq);
            break;
        }
        if ((rc = s_verify_origin(&ctx, &origin, h.seq, h.link)) != 0) {
            if (!all || r->seq == 0 || ctx.head_bad || rc == SM_ENOMEM
                || (s_fatal(rc) && rc != SM_ECORRUPT))
                break;
            /* An entry is at fault: list it, go on with the other origins. */
            if (r->damaged_count == SM_CHECK_DAMAGED_MAX)
                break;
            sm_damage *d = &r->damaged[r->damaged_count++];
            d->origin = origin;
            d->seq = r->seq;
            d->err = rc;
            if (r->damaged_count == 1) {
                first_seq = r->seq;
                memcpy(first_what, r->what, sizeof first_what);
            }
            rc = 0;
        }
    }
    sm_cursor_close(&cur);
    if (rc == SM_ENOTFOUND)
        rc = 0;
    if (rc == 0 && r->damaged_count) {
        /* Report the first damage as the failure. */
        r->origin = r->damaged[0].origin;
        r->seq = first_seq;
        memcpy(r->what, first_what, sizeof r->what);
        r->err = rc = SM_EDEGRADED;
    }
    return rc;
}

/*  The databases the state is derived into (what reindex rebuilds).         */
static bool
s_derived(sm_db db)
{
    return db != SM_DB_META && db != SM_DB_LOG && db != SM_DB_LOGIDX
        && db != SM_DB_FORKS;
}

static const char *const s_db_label[SM_DB_COUNT] = {
    [SM_DB_META] = "meta", [SM_DB_ORIGINS] = "roster", [SM_DB_LOG] = "log",
    [SM_DB_LOGIDX] = "log index", [SM_DB_HEADS] = "heads", [SM_DB_ITEMS] = "catalog",
    [SM_DB_STOCK] = "stock", [SM_DB_SALES] = "sales", [SM_DB_HOLDS] = "holds",
    [SM_DB_FORKS] = "fork evidence", [SM_DB_EXTIDS] = "external ids",
    [SM_DB_REP_SLOT] = "report totals", [SM_DB_REP_ITEM] = "report item totals",
    [SM_DB_HOLDENDS] = "hold ends",
    [SM_DB_DROPS] = "drops", [SM_DB_RAFFLE] = "raffle entries",
};

static void
s_hash_len(sm_hasher *hs, size_t len)
{
    uint8_t b[8];
    sm__le64_put(b, len);
    sm_hasher_update(hs, b, sizeof b);
}

static int
s_db_hash(sm_txn *txn, sm_db db, sm_hash *out, uint64_t *records)
{
    int rc = 0;
    sm_hasher hs;
    sm_hasher_init(&hs);
    *records = 0;
    sm_cursor *cur = sm_cursor_open(txn, db, NULL, 0, NULL, 0, &rc);
    if (!cur)
        return rc;
    sm_val k, v;
    while ((rc = sm_cursor_next(cur, &k, &v)) == 0) {
        s_hash_len(&hs, k.len);
        sm_hasher_update(&hs, k.data, k.len);
        s_hash_len(&hs, v.len);
        sm_hasher_update(&hs, v.data, v.len);
        (*records)++;
    }
    sm_cursor_close(&cur);
    if (rc != SM_ENOTFOUND)
        return rc;
    sm_hasher_final(&hs, out);
    return 0;
}

/*  Recompute the state in an abandoned write transaction and compare.      */
static int
s_check_state(sm_ledger *self, sm_check_report *r)
{
    int rc = 0;
    sm_txn *txn = sm_txn_begin(self->store, true, &rc);
    if (!txn)
        return rc;
    sm_hash before[SM_DB_COUNT], after;
    uint64_t n_before[SM_DB_COUNT], n_after;
    sm_market m;
    size_t applied = 0;
    for (int i = 0; i < SM_DB_COUNT && rc == 0; i++)
        if (s_derived((sm_db) i))
            rc = s_db_hash(txn, (sm_db) i, &before[i], &n_before[i]);
    if (rc == 0) {
        rc = s_market_get(txn, &m);
        if (rc == SM_ENOMARKET) {
            sm_txn_abort(&txn);
            return 0;
        }
    }
    if (rc == 0 && (rc = s_rebuild(self, txn, &m.market, &applied)) != 0)
        s_report(r, rc, NULL, 0, "the state cannot be recomputed from the log (%s)",
                 sm_strerror(rc));
    for (int i = 0; i < SM_DB_COUNT && rc == 0; i++) {
        if (!s_derived((sm_db) i))
            continue;
        if ((rc = s_db_hash(txn, (sm_db) i, &after, &n_after)) != 0)
            break;
        if (memcmp(after.b, before[i].b, sizeof after.b) != 0) {
            rc = SM_ESTATEDIFF;
            s_report(r, rc, NULL, 0, "the %s records (%llu stored, %llu from the log) "
                     "do not match what the log gives",
                     s_db_label[i] ? s_db_label[i] : "derived",
                     (unsigned long long) n_before[i], (unsigned long long) n_after);
        }
    }
    sm_txn_abort(&txn);
    if (rc == 0)
        r->state_checked = true;
    if (rc == SM_ENOSPC) {
        /* A full map or disk leaves no room to recompute beside the state:
           not damage (the node must still start to be emptied); unchecked. */
        memset(r->what, 0, sizeof r->what);
        r->err = 0;
        rc = 0;
    }
    return rc;
}

int
sm_ledger_check(sm_ledger *self, unsigned flags, sm_check_report *r)
{
    assert(self && r);
    memset(r, 0, sizeof *r);
    int rc = 0;
    if (flags & SM_CHECK_PAGES) {
        if ((rc = sm_store_check_tree(self->store, r->what, sizeof r->what)) != 0) {
            r->err = rc;
            return rc;
        }
    }
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn) {
        s_report(r, rc, NULL, 0, "cannot read the store (%s)", sm_strerror(rc));
        return rc;
    }
    rc = s_check_chains(txn, (flags & SM_CHECK_EVERY_SIG) != 0,
                        (flags & SM_CHECK_ALL_ORIGINS) != 0, r);
    sm_txn_abort(&txn);
    if (rc == 0 && (flags & SM_CHECK_STATE))
        rc = s_check_state(self, r);
    if (rc != 0 && r->err == 0)
        s_report(r, rc, NULL, 0, "%s", sm_strerror(rc));
    return rc;
}

int
sm_ledger_reindex(sm_ledger *self)
{
    assert(self);
    if (self->batch)
        return SM_ESTATE;
    /* Replay only what verifies: a forged or altered entry never becomes state. */
    sm_check_report r;
    int rc = sm_ledger_check(self, SM_CHECK_EVERY_SIG, &r);
    if (rc != 0)
        return rc;
    sm_txn *txn;
    bool own;
    rc = s_wbegin(self, &txn, &own);
    if (rc != 0)
        return rc;
    sm_market m;
    size_t applied = 0;
    rc = s_market_get(txn, &m);
    if (rc == 0)
        rc = s_rebuild(self, txn, &m.market, &applied);
    return s_wend(self, &txn, own, rc, false);
}

int
sm_ledger_verify(sm_ledger *self, sm_id *bad_origin, uint64_t *bad_seq,
                 uint64_t *checked)
{
    assert(self && bad_origin && bad_seq);
    sm_check_report r;
    int rc = sm_ledger_check(self, SM_CHECK_EVERY_SIG, &r);
    *bad_origin = r.origin;
    *bad_seq = r.seq;
    if (checked)
        *checked = r.checked;
    return rc;
}

int
sm_ledger_copy_market(sm_ledger *dst, sm_ledger *src)
{
    assert(dst && src);
    static const char *const keys[] = { s_meta_market, s_meta_join, s_meta_hlc };
    int rc = 0;
    sm_txn *from = sm__ledger_rbegin(src, &rc);
    if (!from)
        return rc;
    sm_txn *to;
    bool own;
    if ((rc = s_wbegin(dst, &to, &own)) != 0) {
        sm_txn_abort(&from);
        return rc;
    }
    sm_market m;
    if ((rc = s_market_get(to, &m)) == 0)
        rc = SM_EEXIST;
    else if (rc == SM_ENOMARKET)
        rc = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && rc == 0; i++) {
        sm_val v;
        rc = sm_kv_get(from, SM_DB_META, keys[i], strlen(keys[i]), &v);
        if (rc == SM_ENOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc == 0 && keys[i] == s_meta_market && v.len != sizeof m)
            rc = SM_ECORRUPT;
        if (rc == 0)
            rc = sm_kv_put(to, SM_DB_META, keys[i], strlen(keys[i]), v.data, v.len);
    }
    sm_txn_abort(&from);
    return s_wend(dst, &to, own, rc, false);
}

int
sm_ledger_set_damaged(sm_ledger *self, const sm_damage *damage)
{
    assert(self && damage && damage->seq > 0);
    for (size_t i = 0; i < self->damaged_count; i++) {
        if (memcmp(self->damaged[i].origin.b, damage->origin.b, SM_KEY_BYTES) == 0) {
            if (damage->seq < self->damaged[i].seq)
                __atomic_store_n(&self->damaged[i].seq, damage->seq, __ATOMIC_RELAXED);
            return 0;
        }
    }
    size_t n = __atomic_load_n(&self->damaged_count, __ATOMIC_ACQUIRE);
    if (n == SM_CHECK_DAMAGED_MAX)
        return SM_ETOOBIG;
    self->damaged[n] = *damage;
    /* Readers on other threads see the record before they count it. */
    __atomic_store_n(&self->damaged_count, n + 1, __ATOMIC_RELEASE);
    return 0;
}

uint64_t
sm_ledger_damage(const sm_ledger *self, const sm_id *origin)
{
    assert(self && origin);
    size_t n = __atomic_load_n(&self->damaged_count, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < n; i++)
        if (memcmp(self->damaged[i].origin.b, origin->b, SM_KEY_BYTES) == 0)
            return __atomic_load_n(&self->damaged[i].seq, __ATOMIC_RELAXED);
    return 0;
}

size_t
sm_ledger_damage_each(const sm_ledger *self, sm_damage *out, size_t max)
{
    assert(self && (out || max == 0));
    size_t count = __atomic_load_n(&self->damaged_count, __ATOMIC_ACQUIRE);
    size_t n = count < max ? count : max;
    if (n)
        memcpy(out, self->damaged, n * sizeof *out);
    return count;
}
