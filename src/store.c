/*  The store: one LMDB environment with the named databases of sm_db.

    This is the only file that includes lmdb.h.  It maps LMDB's errors to
    SM_E* codes, so a full disk or map (MDB_MAP_FULL, ENOSPC) reaches the
    caller as SM_ENOSPC with the transaction aborted and nothing written.

    The environment is opened with MDB_NOTLS so that read transactions can
    be used from any thread (the web thread reads while the core writes).

    Format version (SM_STORE_FORMAT): meta "format" holds the version of
    the layout of keys and values the ledger writes, as ASCII decimal.  At
    open, s_format_check compares it with this binary's: newer is refused
    (SM_ESTORENEWER; sm_store_format_of names it); older opens as it is
    (its logs read the same) and sm_store_format says which it is.  A
    store with data but no marker predates the marker and is format 1.
    Versions:
      1  the logs, the state and the fork evidence;
      2  and the report aggregates (rep_slot, rep_item), kept with the
         state.
    Every change so far is of derived state, so the step from an older
    format is the ledger's: a writer's sm_ledger_open rebuilds the state
    from the log and marks the store (sm_store_format_mark) in one
    transaction.  A format change that moves the log itself would add its
    step here, before that.  tests/fixtures/store-v1 is a store of format
    1; tests/integration/test_backup.sh opens and migrates it.             */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdarg.h>
#include <unistd.h>

#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define SM__DISK_FULL_BYTES  (1u << 20)   /* less free than this: a write's EIO is a full disk */

struct sm_store {
    MDB_env *env;
    MDB_dbi dbi[SM_DB_COUNT];
    bool absent[SM_DB_COUNT];  /* an optional database missing (read-only) */
    bool read_only;
    bool no_sync;
    uint32_t format;           /* as found at open, until sm_store_format_mark */
    /* The writer's thread only (sm_store_defer_sync): */
    bool deferred;             /* commits leave their meta page unsynced */
    uint64_t committed;        /* the last committed write transaction's id */
    uint64_t durable;          /* the last one known to be on disk */
    uint64_t room_end;         /* data.mdb written (zeros or pages) up to here */
    /* Kept sums (sm_store_sums_keep): per database, the sum of its records'
       hashes, as of commit sum_txn; under sum_lock for other threads. */
    pthread_mutex_t sum_lock;
    sm_store_sum_fn sum_fn;    /* NULL: not kept */
    uint32_t sum_mask;         /* 1u << db for each database summed */
    bool sum_valid;            /* sums[] are of commit sum_txn */
    uint64_t sum_txn;
    sm_sum sums[SM_DB_COUNT];
    /* The writer's thread only: the write transaction's running sums. */
    bool sum_tracking;         /* this write transaction updates work[] */
    sm_sum work[SM_DB_COUNT];
    /* Change log (sm_store_changes_keep): the keys each commit wrote in the
       databases of chg_mask, for the last S_CHG_SLOTS commits, each in the
       slot of its id; chg_last is the last one recorded.  Under chg_lock
       for other threads. */
    pthread_mutex_t chg_lock;
    uint32_t chg_mask;         /* 0: not kept */
    uint64_t chg_last;
    struct s_chg_slot *chg_slot;   /* a ring of S_CHG_SLOTS, by id */
    /* The writer's thread only: what its transaction wrote so far. */
    bool chg_tracking;
    struct s_chg_slot *chg_work;
};

static void s_chg_free(sm_store *store);

struct sm_txn {
    sm_store *store;
    MDB_txn *txn;
    bool write;
    bool borrowed;             /* a handle on another's transaction */
};

#define SM__CURSOR_KEY_MAX 512u   /* LMDB's default maximum key size is 511 */

struct sm_cursor {
    MDB_cursor *cur;
    bool empty;                /* over an absent database */
    size_t plen;
    bool started;
    MDB_val start;
    uint8_t prefix[SM__CURSOR_KEY_MAX];    /* copies: callers may pass stack keys */
    uint8_t start_key[SM__CURSOR_KEY_MAX];
};

/*  Set by repair's salvaging child only: open a store that fails the file
    checks, to copy out what can still be read (a fault kills the child).   */
static bool s_salvage;

void
sm__store_salvage_mode(bool on)
{
    s_salvage = on;
}

static const char *const s_db_names[SM_DB_COUNT] = {
    [SM_DB_META] = "meta",       [SM_DB_ORIGINS] = "origins",
    [SM_DB_LOG] = "log",         [SM_DB_LOGIDX] = "logidx",
    [SM_DB_HEADS] = "heads",
    [SM_DB_ITEMS] = "items",     [SM_DB_STOCK] = "stock",
    [SM_DB_SALES] = "sales",     [SM_DB_HOLDS] = "holds",
    [SM_DB_FORKS] = "forks",     [SM_DB_EXTIDS] = "extids",
    [SM_DB_REP_SLOT] = "rep_slot", [SM_DB_REP_ITEM] = "rep_item",
    [SM_DB_HOLDENDS] = "holdends",
    [SM_DB_DROPS] = "drops",     [SM_DB_RAFFLE] = "raffle",
};

/*  Databases added after the first release: a store written by an older
    version opens read-only without them (reads find nothing); a writable
    open creates them empty (reindex fills them).                            */
static bool
s_db_optional(int db)
{
    return db == SM_DB_REP_SLOT || db == SM_DB_REP_ITEM || db == SM_DB_HOLDENDS
        || db == SM_DB_DROPS || db == SM_DB_RAFFLE;
}

static int
s_err(int rc)
{
    switch (rc) {
    case 0: return 0;
    case MDB_NOTFOUND: return SM_ENOTFOUND;
    case MDB_MAP_FULL: case MDB_TXN_FULL: case ENOSPC: case EDQUOT:
        return SM_ENOSPC;
    case ENOMEM: return SM_ENOMEM;
    case MDB_CORRUPTED: case MDB_PAGE_NOTFOUND: case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return SM_ECORRUPT;
    case MDB_READERS_FULL: case EBUSY: case EAGAIN: return SM_EBUSY;
    case EINVAL: return SM_EINVAL;
    default: return SM_EIO;
    }
}

/* ---- format version ---------------------------------------------------- */

static int s_err_write(sm_store *store, int raw);

static const char s_format_key[] = "format";

/*  The version in meta, 0 if there is none; SM_ECORRUPT if it is no
    number.                                                                   */
static int
s_format_read(MDB_txn *txn, MDB_dbi meta, uint32_t *format)
{
    MDB_val k = { sizeof s_format_key - 1, (void *) s_format_key }, v;
    int rc = mdb_get(txn, meta, &k, &v);
    *format = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return s_err(rc);
    const char *p = v.mv_data;
    if (v.mv_size == 0 || v.mv_size > 9)
        return SM_ECORRUPT;
    for (size_t i = 0; i < v.mv_size; i++) {
        if (p[i] < '0' || p[i] > '9')
            return SM_ECORRUPT;
        *format = *format * 10 + (uint32_t)(p[i] - '0');
    }
    return *format == 0 ? SM_ECORRUPT : 0;
}

static int
s_format_write(MDB_txn *txn, MDB_dbi meta, uint32_t format)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%u", (unsigned) format);
    MDB_val k = { sizeof s_format_key - 1, (void *) s_format_key }, v = { (size_t) n, text };
    return s_err(mdb_put(txn, meta, &k, &v, 0));
}

/*  Check the format version; a writer marks a store of this format that
    lacks the marker (an older one is marked by the ledger's migration).    */
static int
s_format_check(sm_store *self, MDB_txn *txn)
{
    uint32_t format;
    int rc = s_format_read(txn, self->dbi[SM_DB_META], &format);
    if (rc != 0)
        return rc;
    if (format > SM_STORE_FORMAT)
        return SM_ESTORENEWER;
    if (format == 0) {
        /* New (its format is this binary's: nothing to migrate), or made
           before the marker (format 1): a store with no log is new. */
        MDB_stat st;
        if ((rc = s_err(mdb_stat(txn, self->dbi[SM_DB_LOG], &st))) != 0)
            return rc;
        format = st.ms_entries == 0 ? SM_STORE_FORMAT : 1;
        self->format = format;
        if (self->read_only || format < SM_STORE_FORMAT)
            return 0;
        return s_format_write(txn, self->dbi[SM_DB_META], format);
    }
    self->format = format;
    return 0;
}

uint32_t
sm_store_format(const sm_store *store)
{
    assert(store);
    return store->format;
}

int
sm_store_format_mark(sm_txn *txn)
{
    assert(txn && txn->write && !txn->borrowed);
    int rc = s_format_write(txn->txn, txn->store->dbi[SM_DB_META], SM_STORE_FORMAT);
    if (rc == 0)
        txn->store->format = SM_STORE_FORMAT;
    return rc;
}

int
sm_store_format_of(const char *dir, uint32_t *format)
{
    assert(dir && format);
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi meta;
    int rc = s_err(mdb_env_create(&env));
    if (rc == 0) {
        mdb_env_set_maxdbs(env, SM_DB_COUNT + 2);
        int orc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600);
        rc = orc == ENOENT ? SM_ENOTFOUND : s_err(orc);
    }
    if (rc == 0)
        rc = s_err(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    if (rc == 0) {
        int drc = mdb_dbi_open(txn, s_db_names[SM_DB_META], 0, &meta);
        rc = drc == MDB_NOTFOUND ? SM_ENOTFOUND : s_err(drc);
    }
    if (rc == 0)
        rc = s_format_read(txn, meta, format);
    if (txn)
        mdb_txn_abort(txn);
    if (env)
        mdb_env_close(env);
    return rc;
}

int
sm_store_copy(sm_store *store, int fd, bool compact)
{
    assert(store && fd >= 0);
    int rc = mdb_env_copyfd2(store->env, fd, compact ? MDB_CP_COMPACT : 0);
    return rc == 0 ? 0 : s_err_write(store, rc);
}

static uint64_t
s_last_txnid(sm_store *store)
{
    MDB_envinfo info;
    return mdb_env_info(store->env, &info) == 0 ? (uint64_t) info.me_last_txnid : 0;
}

sm_store *
sm_store_open(const char *dir, uint64_t map_bytes, bool read_only,
              bool no_sync, int *err)
{
    assert(dir && err);
    int rc = 0;
    MDB_txn *txn = NULL;
    sm_store *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->read_only = read_only;
    self->no_sync = no_sync;
    pthread_mutex_init(&self->sum_lock, NULL);
    pthread_mutex_init(&self->chg_lock, NULL);
    if (!read_only && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = errno == ENOSPC ? SM_ENOSPC : SM_EIO;
        goto fail;
    }
    if ((rc = s_err(mdb_env_create(&self->env))) != 0)
        goto fail;
    mdb_env_set_maxdbs(self->env, SM_DB_COUNT + 2);
    mdb_env_set_maxreaders(self->env, SM_STORE_READERS_MAX);
    if ((rc = s_err(mdb_env_set_mapsize(self->env,
                     map_bytes ? map_bytes : SM_MAP_BYTES_DEFAULT))) != 0)
        goto fail;
    if (!s_salvage && (rc = sm__store_file_check(dir, NULL, 0)) != 0)
        goto fail;
    unsigned flags = MDB_NOTLS | (read_only ? MDB_RDONLY : 0)
                   | (no_sync ? MDB_NOSYNC : 0);
    int orc = mdb_env_open(self->env, dir, flags, 0600);
    if (orc != 0) {
        rc = orc == ENOENT ? SM_ENOTFOUND : s_err(orc);
        goto fail;
    }
    if ((rc = s_err(mdb_txn_begin(self->env, NULL,
                                  read_only ? MDB_RDONLY : 0, &txn))) != 0)
        goto fail;
    for (int i = 0; i < SM_DB_COUNT; i++) {
        int drc = mdb_dbi_open(txn, s_db_names[i], read_only ? 0 : MDB_CREATE,
                               &self->dbi[i]);
        if (drc == MDB_NOTFOUND && read_only && s_db_optional(i)) {
            self->absent[i] = true;
            continue;
        }
        if (drc != 0) {
            rc = drc == MDB_NOTFOUND ? SM_ENOTFOUND : s_err(drc);
            goto fail;
        }
    }
    if ((rc = s_format_check(self, txn)) != 0)
        goto fail;
    if ((rc = s_err(mdb_txn_commit(txn))) != 0) {
        txn = NULL;
        goto fail;
    }
    /* What a process killed with its last meta page unsynced left in the
       page cache is made durable before anything is read from it and sent. */
    if (!read_only && !no_sync && (rc = s_err(mdb_env_sync(self->env, 1))) != 0)
        goto fail;
    self->committed = self->durable = s_last_txnid(self);
    return self;
fail:
    if (txn)
        mdb_txn_abort(txn);
    if (self->env)
        mdb_env_close(self->env);
    pthread_mutex_destroy(&self->sum_lock);
    pthread_mutex_destroy(&self->chg_lock);
    free(self);
    *err = rc;
    return NULL;
}

void
sm_store_destroy(sm_store **self_p)
{
    assert(self_p);
    sm_store *self = *self_p;
    if (!self)
        return;
    mdb_env_close(self->env);
    pthread_mutex_destroy(&self->sum_lock);
    pthread_mutex_destroy(&self->chg_lock);
    s_chg_free(self);
    free(self);
    *self_p = NULL;
}

/*  Room ahead.  A commit whose pages reach past the end of data.mdb
    grows the file, and the fdatasync that makes it durable then writes the
    inode as well: a second synchronous write, about a third of the sync's
    time on an SSD and more on an SD card.  So the writer keeps the file
    written with zeros a little ahead of LMDB's last page (real zeros: a
    hole or fallocate's unwritten extent would change metadata at the first
    write into it just the same), and most commits only overwrite.  It runs
    at a write transaction's start, under LMDB's writer lock and before any
    page of it is written, so nothing written from the last page on can be
    anyone's (every reader of the file stops at the meta's last page).  A
    failure (a full disk) is ignored: LMDB's own writes report it.          */
enum {
    S_ROOM_CHUNK = 1 << 20,   /* written at a time */
    S_ROOM_LOW = 1 << 18      /* less than this left ahead: write the next chunk */
};

static void
s_room_ahead(sm_store *store)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_filehandle_t fd;
    if (mdb_env_info(store->env, &info) != 0 || mdb_env_stat(store->env, &st) != 0
        || mdb_env_get_fd(store->env, &fd) != 0)
        return;
    uint64_t used = ((uint64_t) info.me_last_pgno + 1) * st.ms_psize;
    if (store->room_end >= used + S_ROOM_LOW)
        return;
    uint64_t from = used;
    struct stat fst;
    if (fstat(fd, &fst) == 0 && (uint64_t) fst.st_size > from)
        from = (uint64_t) fst.st_size;     /* written already */
    uint64_t to = used + S_ROOM_CHUNK;
    if (to > (uint64_t) info.me_mapsize)
        to = (uint64_t) info.me_mapsize;
    static const uint8_t zeros[64 * 1024];
    while (from < to) {
        size_t n = to - from < sizeof zeros ? (size_t) (to - from) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, (off_t) from);
        if (w <= 0)
            break;
        from += (uint64_t) w;
    }
    store->room_end = from > used ? from : used;
}

/*  Kept sums (store.h).  The writer's transaction starts from the kept
    sums of the commit before it (its id - 1) and updates a running copy at
    each change; its commit makes the copy the kept sums of its own id.  A
    write transaction that cannot start from them (they lapsed, or another
    process committed since) lets them lapse: readers then scan.            */
void
sm_sum_add(sm_sum *acc, const sm_sum *x)
{
    unsigned carry = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t a = acc->w[i], s = a + x->w[i];
        unsigned c = s < a;
        uint64_t t = s + carry;
        c |= t < s;
        acc->w[i] = t;
        carry = c;
    }
}

void
sm_sum_sub(sm_sum *acc, const sm_sum *x)
{
    unsigned borrow = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t a = acc->w[i], d = a - x->w[i];
        unsigned b = a < x->w[i];
        uint64_t t = d - borrow;
        b |= d < (uint64_t) borrow;
        acc->w[i] = t;
        borrow = b;
    }
}

static void
s_sums_begin(sm_store *store, uint64_t id)
{
    pthread_mutex_lock(&store->sum_lock);
    store->sum_tracking = store->sum_valid && store->sum_txn + 1 == id;
    if (store->sum_tracking)
        memcpy(store->work, store->sums, sizeof store->work);
    else
        store->sum_valid = false;
    pthread_mutex_unlock(&store->sum_lock);
}

/*  The write transaction `id` committed (0: aborted or failed).  A commit
    that changed nothing wrote no meta: the kept sums stay those of the
    commit before, which is still the latest.                                */
static void
s_sums_end(sm_store *store, uint64_t id)
{
    store->sum_tracking = false;
    if (id == 0 || s_last_txnid(store) < id)
        return;
    pthread_mutex_lock(&store->sum_lock);
    memcpy(store->sums, store->work, sizeof store->sums);
    store->sum_txn = id;
    pthread_mutex_unlock(&store->sum_lock);
}

static bool
s_summed(const sm_txn *txn, sm_db db)
{
    return txn->store->sum_tracking && (txn->store->sum_mask & (1u << db));
}

/*  The hash of the record under `k` in `db` before a change, into *old;
    false if there is none.                                                   */
static bool
s_sum_old(sm_txn *txn, sm_db db, MDB_val *k, sm_sum *old)
{
    MDB_val v;
    if (mdb_get(txn->txn, txn->store->dbi[db], k, &v) != 0)
        return false;
    sm_val key = { k->mv_data, k->mv_size }, val = { v.mv_data, v.mv_size };
    txn->store->sum_fn(db, &key, &val, old);
    return true;
}

int
sm_store_sums_scan(sm_txn *txn, uint32_t mask, sm_store_sum_fn fn,
                   sm_sum out[SM_DB_COUNT])
{
    assert(txn && fn && out);
    memset(out, 0, SM_DB_COUNT * sizeof out[0]);
    int rc = 0;
    for (int db = 0; db < SM_DB_COUNT && rc == 0; db++) {
        if (!(mask & (1u << db)) || txn->store->absent[db])
            continue;
        MDB_cursor *cur;
        if ((rc = s_err(mdb_cursor_open(txn->txn, txn->store->dbi[db], &cur))) != 0)
            break;
        MDB_val k, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (mrc == 0) {
            sm_val key = { k.mv_data, k.mv_size }, val = { v.mv_data, v.mv_size };
            sm_sum h;
            fn((sm_db) db, &key, &val, &h);
            sm_sum_add(&out[db], &h);
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
        if (mrc != MDB_NOTFOUND)
            rc = s_err(mrc);
    }
    return rc;
}

int
sm_store_sums_keep(sm_store *store, uint32_t mask, sm_store_sum_fn fn)
{
    assert(store && fn);
    if (store->read_only || (store->sum_fn && (store->sum_fn != fn || store->sum_mask != mask)))
        return SM_EINVAL;
    if (store->sum_fn)
        return 0;                      /* kept already */
    int rc = 0;
    sm_txn *txn = sm_txn_begin(store, true, &rc);   /* no writer meanwhile */
    if (!txn)
        return rc;
    sm_sum sums[SM_DB_COUNT];
    if ((rc = sm_store_sums_scan(txn, mask, fn, sums)) == 0) {
        pthread_mutex_lock(&store->sum_lock);
        memcpy(store->sums, sums, sizeof sums);
        store->sum_txn = (uint64_t) mdb_txn_id(txn->txn) - 1;
        store->sum_valid = true;
        store->sum_mask = mask;
        store->sum_fn = fn;
        pthread_mutex_unlock(&store->sum_lock);
    }
    sm_txn_abort(&txn);
    return rc;
}

int
sm_store_sums(sm_store *store, sm_txn *txn, sm_sum out[SM_DB_COUNT])
{
    assert(store && txn && out);
    if (txn->write) {              /* the writer's own: its running sums */
        if (!store->sum_tracking)
            return SM_ENOTFOUND;
        memcpy(out, store->work, sizeof store->work);
        return 0;
    }
    uint64_t id = (uint64_t) mdb_txn_id(txn->txn);
    int rc = SM_ENOTFOUND;
    pthread_mutex_lock(&store->sum_lock);
    if (store->sum_valid && store->sum_txn == id) {
        memcpy(out, store->sums, sizeof store->sums);
        rc = 0;
    } else if (store->sum_valid) {
        rc = SM_EBUSY;
    }
    pthread_mutex_unlock(&store->sum_lock);
    return rc;
}

/*  Change log (store.h).  A write transaction collects the keys it writes
    in the masked databases into chg_work (db, length, bytes, packed); its
    commit moves them into the ring slot of its id.  A clear, or more than
    S_CHG_BYTES of keys, marks the whole commit unknown (`all`).  A span is known
    when each of its commits has its slot: a commit by another process has
    none, nor has one the ring went past.                                     */
enum {
    S_CHG_SLOTS = 256,
    S_CHG_BYTES = 4096         /* a commit listing more is `all`: a catch-up's
                                  round, say; it keeps the ring's memory small */
};

struct s_chg_slot {
    uint64_t id;               /* the commit; 0: none */
    bool all;                  /* it changed what cannot be listed */
    uint8_t *keys;             /* db(1) || len(2, little-endian) || key, ... */
    size_t len, cap;
};

static void
s_chg_free(sm_store *store)
{
    for (size_t i = 0; store->chg_slot && i < S_CHG_SLOTS; i++)
        free(store->chg_slot[i].keys);
    free(store->chg_slot);
    if (store->chg_work)
        free(store->chg_work->keys);
    free(store->chg_work);
    store->chg_slot = store->chg_work = NULL;
}

int
sm_store_changes_keep(sm_store *store, uint32_t mask)
{
    assert(store && mask);
    if (store->read_only || (store->chg_mask && store->chg_mask != mask))
        return SM_EINVAL;
    if (store->chg_mask)
        return 0;                      /* kept already */
    store->chg_slot = calloc(S_CHG_SLOTS, sizeof *store->chg_slot);
    store->chg_work = calloc(1, sizeof *store->chg_work);
    if (!store->chg_slot || !store->chg_work) {
        s_chg_free(store);
        return SM_ENOMEM;
    }
    int rc = 0;
    sm_txn *txn = sm_txn_begin(store, true, &rc);   /* no writer meanwhile */
    if (!txn) {
        s_chg_free(store);
        return rc;
    }
    pthread_mutex_lock(&store->chg_lock);
    store->chg_last = (uint64_t) mdb_txn_id(txn->txn) - 1;
    store->chg_mask = mask;
    pthread_mutex_unlock(&store->chg_lock);
    sm_txn_abort(&txn);
    return 0;
}

static void
s_chg_begin(sm_store *store)
{
    store->chg_tracking = store->chg_mask != 0;
    if (store->chg_tracking) {
        store->chg_work->len = 0;
        store->chg_work->all = false;
    }
}

/*  Record that `key` of `db` is written by the writer's transaction.       */
static void
s_chg_note(sm_txn *txn, sm_db db, const void *key, size_t klen)
{
    sm_store *store = txn->store;
    if (!store->chg_tracking || !(store->chg_mask & (1u << db)))
        return;
    struct s_chg_slot *w = store->chg_work;
    if (w->all)
        return;
#if SM_SIM_BUG == 16
    if (db == SM_DB_STOCK)
        return;                /* planted: a stock record's change goes unrecorded */
#endif
    size_t need = w->len + 3 + klen;
    if (klen > UINT16_MAX || need > S_CHG_BYTES) {
        w->all = true;
        w->len = 0;
        return;
    }
    if (need > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(w->keys, cap);
        if (!p) {
            w->all = true;             /* unknown rather than wrong */
            return;
        }
        w->keys = p;
        w->cap = cap;
    }
    w->keys[w->len] = (uint8_t) db;
    w->keys[w->len + 1] = (uint8_t) (klen & 0xff);
    w->keys[w->len + 2] = (uint8_t) (klen >> 8);
    memcpy(w->keys + w->len + 3, key, klen);
    w->len = need;
}

/*  The write transaction `id` committed (0: aborted or failed): its keys
    become the record of its commit.                                          */
static void
s_chg_end(sm_store *store, uint64_t id)
{
    store->chg_tracking = false;
    if (id == 0 || s_last_txnid(store) < id)
        return;                        /* aborted, or nothing written */
    pthread_mutex_lock(&store->chg_lock);
    struct s_chg_slot *slot = &store->chg_slot[id % S_CHG_SLOTS];
    /* Swap the buffers: the slot takes the work's keys, the work reuses
       the slot's old buffer. */
    struct s_chg_slot *w = store->chg_work;
    uint8_t *keys = slot->keys;
    size_t cap = slot->cap;
    slot->keys = w->keys;
    slot->cap = w->cap;
    slot->len = w->len;
    slot->all = w->all;
    slot->id = id;
    w->keys = keys;
    w->cap = cap;
    w->len = 0;
    store->chg_last = id;
    pthread_mutex_unlock(&store->chg_lock);
}

int
sm_store_changes(sm_store *store, sm_txn *txn, uint64_t from, sm_store_change_fn fn,
                 void *arg)
{
    assert(store && txn && !txn->write && fn);
    uint64_t to = (uint64_t) mdb_txn_id(txn->txn);
    if (from == to)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&store->chg_lock);
    if (!store->chg_mask || from > to || to - from > S_CHG_SLOTS || to > store->chg_last)
        rc = SM_ENOTFOUND;
    for (uint64_t id = from + 1; rc == 0 && id <= to; id++) {
        const struct s_chg_slot *slot = &store->chg_slot[id % S_CHG_SLOTS];
        if (slot->id != id || slot->all) {
            rc = SM_ENOTFOUND;         /* overwritten, or not listed */
            break;
        }
        for (size_t at = 0; rc == 0 && at < slot->len;) {
            size_t klen = (size_t) slot->keys[at + 1] | (size_t) slot->keys[at + 2] << 8;
            sm_val k = { slot->keys + at + 3, klen };
            rc = fn((sm_db) slot->keys[at], &k, arg);
            at += 3 + klen;
        }
    }
    pthread_mutex_unlock(&store->chg_lock);
    return rc;
}

sm_txn *
sm_txn_begin(sm_store *store, bool write, int *err)
{
    assert(store && err);
    if (write && store->read_only) {
        *err = SM_EINVAL;
        return NULL;
    }
    sm_txn *self = malloc(sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->store = store;
    self->write = write;
    self->borrowed = false;
    int rc = mdb_txn_begin(store->env, NULL, write ? 0 : MDB_RDONLY, &self->txn);
    if (rc != 0) {
        free(self);
        *err = s_err(rc);
        return NULL;
    }
    if (write && !store->no_sync)
        s_room_ahead(store);
    if (write && store->sum_fn)
        s_sums_begin(store, (uint64_t) mdb_txn_id(self->txn));
    if (write)
        s_chg_begin(store);
    return self;
}

sm_txn *
sm_txn_borrow(sm_txn *parent, int *err)
{
    assert(parent && !parent->borrowed && err);
    sm_txn *self = malloc(sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    *self = *parent;
    self->borrowed = true;
    return self;
}

/*  An I/O error while the store's file system is (nearly) full is a full
    disk: LMDB reports a short write of its pages as EIO, and the operator
    should read "disk full", not "I/O error".                                */
static int
s_err_write(sm_store *store, int raw)
{
    int rc = s_err(raw);
    if (rc != SM_EIO)
        return rc;
    mdb_filehandle_t fd;
    struct statvfs vfs;
    if (mdb_env_get_fd(store->env, &fd) == 0 && fstatvfs(fd, &vfs) == 0
        && (uint64_t) vfs.f_bavail * vfs.f_frsize < SM__DISK_FULL_BYTES)
        return SM_ENOSPC;
    return rc;
}

/*  Durability marks.  A write transaction that changed anything commits
    in three steps (LMDB's mdb_txn_commit): its data pages are written,
    fdatasync'd, and only then its meta page is written, on the next of the
    two meta slots.  Deferred (MDB_NOMETASYNC), that meta write is not
    synced: the commit is visible and whole but a power cut may undo it, and
    only it (the previous meta is intact on disk and every page it reaches
    is untouched: LMDB reuses only pages freed before the previous commit).
    It becomes durable at the next fdatasync of the file: the next changing
    commit's own, which runs after this meta was written, or sm_store_sync.
    So after commit N (the meta's id advanced to N) every commit up to N-1 is
    durable; after a sync, every commit before it.  A commit that changed
    nothing writes no meta and syncs nothing, and moves no mark.            */
static void
s_marks_after_commit(sm_store *store, uint64_t id)
{
    uint64_t last = s_last_txnid(store);
    if (last < id)
        return;                        /* nothing written */
    store->committed = last;
    if (!store->deferred || store->no_sync)
        store->durable = last;
    else if (id - 1 > store->durable)
        store->durable = id - 1;
}

int
sm_txn_commit(sm_txn **txn_p)
{
    assert(txn_p && *txn_p && !(*txn_p)->borrowed);
    sm_txn *self = *txn_p;
    uint64_t id = self->write ? (uint64_t) mdb_txn_id(self->txn) : 0;
    int rc = s_err_write(self->store, mdb_txn_commit(self->txn));
    if (rc == 0 && self->write)
        s_marks_after_commit(self->store, id);
    if (self->write && self->store->sum_tracking)
        s_sums_end(self->store, rc == 0 ? id : 0);
    if (self->write && self->store->chg_tracking)
        s_chg_end(self->store, rc == 0 ? id : 0);
    free(self);
    *txn_p = NULL;
    return rc;
}

int
sm_store_defer_sync(sm_store *store, bool on)
{
    assert(store && !store->read_only);
    if (store->no_sync)
        return 0;
    if (!on) {
        int rc = sm_store_sync(store);
        if (rc != 0)
            return rc;
    }
    int rc = s_err(mdb_env_set_flags(store->env, MDB_NOMETASYNC, on ? 1 : 0));
    if (rc == 0)
        store->deferred = on;
    return rc;
}

int
sm_store_sync(sm_store *store)
{
    assert(store);
    if (store->durable >= store->committed)
        return 0;
    uint64_t upto = store->committed;  /* every meta written so far */
    int rc = s_err_write(store, mdb_env_sync(store->env, 1));
    if (rc == 0)
        store->durable = upto;
    return rc;
}

int
sm_store_sync_file(sm_store *store)
{
    assert(store);
    return s_err_write(store, mdb_env_sync(store->env, 1));
}

void
sm_store_mark_durable(sm_store *store, uint64_t upto)
{
    assert(store && upto <= store->committed);
    if (upto > store->durable)
        store->durable = upto;
}

void
sm_store_marks(const sm_store *store, uint64_t *committed, uint64_t *durable)
{
    assert(store);
    if (committed)
        *committed = store->committed;
    if (durable)
        *durable = store->durable;
}

void
sm_txn_abort(sm_txn **txn_p)
{
    assert(txn_p);
    if (!*txn_p)
        return;
    if (!(*txn_p)->borrowed) {
        mdb_txn_abort((*txn_p)->txn);
        if ((*txn_p)->write && (*txn_p)->store->sum_tracking)
            s_sums_end((*txn_p)->store, 0);
        if ((*txn_p)->write && (*txn_p)->store->chg_tracking)
            s_chg_end((*txn_p)->store, 0);
    }
    free(*txn_p);
    *txn_p = NULL;
}

uint64_t
sm_txn_id(sm_txn *txn)
{
    assert(txn);
    return (uint64_t) mdb_txn_id(txn->txn);
}

int
sm_kv_get(sm_txn *txn, sm_db db, const void *key, size_t klen, sm_val *out)
{
    assert(txn && db < SM_DB_COUNT && key && klen > 0 && out);
    if (txn->store->absent[db])
        return SM_ENOTFOUND;
    MDB_val k = { klen, (void *) key }, v;
    int rc = mdb_get(txn->txn, txn->store->dbi[db], &k, &v);
    if (rc != 0)
        return s_err(rc);
    out->data = v.mv_data;
    out->len = v.mv_size;
    return 0;
}

int
sm_kv_put(sm_txn *txn, sm_db db, const void *key, size_t klen,
          const void *val, size_t vlen)
{
    assert(txn && txn->write && db < SM_DB_COUNT && key && klen > 0);
    assert(val || vlen == 0);
    MDB_val k = { klen, (void *) key }, v = { vlen, (void *) val };
    s_chg_note(txn, db, key, klen);
    if (!s_summed(txn, db))
        return s_err_write(txn->store, mdb_put(txn->txn, txn->store->dbi[db], &k, &v, 0));
    sm_sum old, new;
    bool had = s_sum_old(txn, db, &k, &old);
    sm_val kv = { key, klen }, vv = { val, vlen };
    txn->store->sum_fn(db, &kv, &vv, &new);
    int rc = s_err_write(txn->store, mdb_put(txn->txn, txn->store->dbi[db], &k, &v, 0));
    if (rc == 0) {
        if (had)
            sm_sum_sub(&txn->store->work[db], &old);
        sm_sum_add(&txn->store->work[db], &new);
    }
    return rc;
}

int
sm_kv_put_last(sm_txn *txn, sm_db db, const void *key, size_t klen,
               const void *val, size_t vlen)
{
    assert(txn && txn->write && db < SM_DB_COUNT && key && klen > 0);
    assert(val || vlen == 0);
    MDB_val k = { klen, (void *) key }, v = { vlen, (void *) val };
    if (s_summed(txn, db)) {
        /* Hashed before the put, as in sm_kv_put: a value borrowed from
           the store may move when the put changes pages. */
        sm_sum new;
        sm_val kv = { key, klen }, vv = { val, vlen };
        txn->store->sum_fn(db, &kv, &vv, &new);
        int rc = mdb_put(txn->txn, txn->store->dbi[db], &k, &v, MDB_APPEND);
        if (rc == MDB_KEYEXIST)
            return sm_kv_put(txn, db, key, klen, val, vlen);
        if (rc == 0) {
            sm_sum_add(&txn->store->work[db], &new);
            s_chg_note(txn, db, key, klen);
        }
        return s_err_write(txn->store, rc);
    }
    s_chg_note(txn, db, key, klen);
    int rc = mdb_put(txn->txn, txn->store->dbi[db], &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST)
        rc = mdb_put(txn->txn, txn->store->dbi[db], &k, &v, 0);
    return s_err_write(txn->store, rc);
}

int
sm_kv_last(sm_txn *txn, sm_db db, sm_val *key)
{
    assert(txn && db < SM_DB_COUNT && key);
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn->txn, txn->store->dbi[db], &cur);
    if (rc != 0)
        return s_err(rc);
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc != 0)
        return s_err(rc);
    key->data = k.mv_data;
    key->len = k.mv_size;
    return 0;
}

int
sm_kv_del(sm_txn *txn, sm_db db, const void *key, size_t klen)
{
    assert(txn && txn->write && db < SM_DB_COUNT && key && klen > 0);
    MDB_val k = { klen, (void *) key };
    sm_sum old;
    bool had = s_summed(txn, db) && s_sum_old(txn, db, &k, &old);
    s_chg_note(txn, db, key, klen);
    int rc = mdb_del(txn->txn, txn->store->dbi[db], &k, NULL);
#if SM_SIM_BUG == 15
    had = false;               /* planted: a deleted record's hash stays summed */
#endif
    if (rc == 0 && had)
        sm_sum_sub(&txn->store->work[db], &old);
    return rc == MDB_NOTFOUND ? 0 : s_err(rc);
}

int
sm_kv_clear(sm_txn *txn, sm_db db)
{
    assert(txn && txn->write && db < SM_DB_COUNT);
    int rc = s_err(mdb_drop(txn->txn, txn->store->dbi[db], 0));
    if (rc == 0 && s_summed(txn, db))
        memset(&txn->store->work[db], 0, sizeof txn->store->work[db]);
    if (txn->store->chg_tracking && (txn->store->chg_mask & (1u << db)))
        txn->store->chg_work->all = true;
    return rc;
}

sm_cursor *
sm_cursor_open(sm_txn *txn, sm_db db, const void *prefix, size_t plen,
               const void *start, size_t slen, int *err)
{
    assert(txn && db < SM_DB_COUNT && err);
    assert(prefix || plen == 0);
    assert(plen <= SM__CURSOR_KEY_MAX && slen <= SM__CURSOR_KEY_MAX);
    sm_cursor *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    if (txn->store->absent[db]) {
        self->empty = true;
        return self;
    }
    int rc = mdb_cursor_open(txn->txn, txn->store->dbi[db], &self->cur);
    if (rc != 0) {
        free(self);
        *err = s_err(rc);
        return NULL;
    }
    if (plen)
        memcpy(self->prefix, prefix, plen);
    self->plen = plen;
    if (start && slen) {
        memcpy(self->start_key, start, slen);
        self->start.mv_data = self->start_key;
        self->start.mv_size = slen;
    } else if (plen) {
        self->start.mv_data = self->prefix;
        self->start.mv_size = plen;
    }
    return self;
}

int
sm_cursor_next(sm_cursor *self, sm_val *key, sm_val *val)
{
    assert(self && key && val);
    MDB_val k, v;
    int rc;
    if (self->empty)
        return SM_ENOTFOUND;
    if (!self->started) {
        self->started = true;
        if (self->start.mv_size) {
            k = self->start;
            rc = mdb_cursor_get(self->cur, &k, &v, MDB_SET_RANGE);
        } else {
            rc = mdb_cursor_get(self->cur, &k, &v, MDB_FIRST);
        }
    } else {
        rc = mdb_cursor_get(self->cur, &k, &v, MDB_NEXT);
    }
    if (rc != 0)
        return s_err(rc);
    if (self->plen && (k.mv_size < self->plen
                       || memcmp(k.mv_data, self->prefix, self->plen) != 0))
        return SM_ENOTFOUND;
    key->data = k.mv_data;
    key->len = k.mv_size;
    val->data = v.mv_data;
    val->len = v.mv_size;
    return 0;
}

void
sm_cursor_close(sm_cursor **cur_p)
{
    assert(cur_p);
    if (!*cur_p)
        return;
    if ((*cur_p)->cur)
        mdb_cursor_close((*cur_p)->cur);
    free(*cur_p);
    *cur_p = NULL;
}

int
sm_store_stat(sm_store *store, sm_db db, uint64_t *entries, uint64_t *file_bytes)
{
    assert(store && db < SM_DB_COUNT);
    MDB_txn *txn;
    MDB_stat st;
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return s_err(rc);
    rc = mdb_stat(txn, store->dbi[db], &st);
    if (rc == 0 && entries)
        *entries = st.ms_entries;
    if (rc == 0 && file_bytes) {
        MDB_envinfo info;
        MDB_stat est;
        mdb_env_info(store->env, &info);
        mdb_env_stat(store->env, &est);
        *file_bytes = (uint64_t) (info.me_last_pgno + 1) * est.ms_psize;
    }
    mdb_txn_abort(txn);
    return s_err(rc);
}

/* ---- integrity ------------------------------------------------------

    LMDB keeps no checksums and maps its file: a file shorter than its last
    page faults (SIGBUS) on the first read past the end, and a damaged page
    can send a reader anywhere.  The checks below run before the file is
    mapped (sm__store_file_check, with pread only) and, on an open store,
    over every page a reader can reach (sm_store_check_tree).  They rely on
    LMDB 0.9's file format, which LMDB itself fixes by MDB_DATA_VERSION:

      page header (16 bytes): pgno u64, pad u16, flags u16, lower u16, upper u16
      meta (pages 0 and 1, after the header):
        magic u32 = 0xBEEFC0DE, version u32 = 1, address u64, mapsize u64,
        two database records (free, main), 48 bytes each:
          pad u32 (in the free record: the page size), flags u16, depth u16,
          branch_pages u64, leaf_pages u64, overflow_pages u64, entries u64,
          root u64 (all ones: empty)
        last_pgno u64, txnid u64

    A commit writes the meta page numbered txnid % 2, so the two metas hold
    consecutive transaction ids (both 0 in a store never written).          */

#define S_META_MAGIC      0xBEEFC0DEu
#define S_META_VERSION    1u
#define S_PAGE_HDR_BYTES  16u
#define S_META_BYTES      (8u + 8u + 8u + 2u * 48u + 8u + 8u)
#define S_P_META          0x08u
#define S_P_INVALID       UINT64_MAX

typedef struct {
    uint32_t magic, version, psize;
    uint16_t flags;
    uint64_t root[2], depth[2];
    uint64_t last_pgno, txnid;
} s_meta;

static uint64_t
s_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);          /* every supported target is little-endian */
    return v;
}

static void
s_meta_parse(const uint8_t *page, s_meta *m)
{
    const uint8_t *p = page + S_PAGE_HDR_BYTES;
    memcpy(&m->magic, p, 4);
    memcpy(&m->version, p + 4, 4);
    for (int i = 0; i < 2; i++) {
        const uint8_t *db = p + 24 + 48 * i;
        uint16_t depth;
        if (i == 0) {
            memcpy(&m->psize, db, 4);
            memcpy(&m->flags, db + 4, 2);
        }
        memcpy(&depth, db + 6, 2);
        m->depth[i] = depth;
        m->root[i] = s_le64(db + 40);
    }
    m->last_pgno = s_le64(p + 24 + 96);
    m->txnid = s_le64(p + 24 + 96 + 8);
}

static void
s_say(char *what, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
s_say(char *what, size_t cap, const char *fmt, ...)
{
    if (!what || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, cap, fmt, ap);
    va_end(ap);
}

/*  One meta page's own sanity: magic, version, a page size LMDB can have,
    roots inside the file's pages.                                          */
static bool
s_meta_sane(const s_meta *m)
{
    if (m->magic != S_META_MAGIC || m->version != S_META_VERSION)
        return false;
    if (m->psize < 512 || m->psize > 65536 || (m->psize & (m->psize - 1)))
        return false;
    if (m->last_pgno < 1)
        return false;
    for (int i = 0; i < 2; i++) {
        if (m->root[i] == S_P_INVALID)
            continue;
        if (m->root[i] < 2 || m->root[i] > m->last_pgno || m->depth[i] == 0
            || m->depth[i] > 64)
            return false;
    }
    return true;
}

int
sm__store_file_check(const char *dir, char *what, size_t cap)
{
    assert(dir);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/data.mdb", dir) >= (int) sizeof path)
        return SM_EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : 0;   /* no file yet: LMDB creates it */
    int rc = 0;
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) != 0) {
        rc = SM_EIO;
        goto done;
    }
    /* The first page tells the page size; read the largest possible pair. */
    size_t want = 2u * 65536u;
    buf = calloc(1, want);
    if (!buf) {
        rc = SM_ENOMEM;
        goto done;
    }
    ssize_t got = pread(fd, buf, want, 0);
    if (got < 0) {
        rc = SM_EIO;
        goto done;
    }
    s_meta m[2];
    memset(m, 0, sizeof m);
    if ((size_t) got < S_PAGE_HDR_BYTES + S_META_BYTES) {
        s_say(what, cap, "%s is %lld bytes, shorter than its header", path,
              (long long) st.st_size);
        rc = SM_ETRUNCATED;
        goto done;
    }
    s_meta_parse(buf, &m[0]);
    uint32_t psize = m[0].psize;
    if (m[0].magic != S_META_MAGIC || m[0].version != S_META_VERSION || psize < 512
        || psize > 65536 || (psize & (psize - 1))) {
        s_say(what, cap, "%s: meta page 0 is damaged (magic %08x, version %u, page "
              "size %u)", path, m[0].magic, m[0].version, psize);
        rc = SM_EMETA;
        goto done;
    }
    if ((size_t) got < psize + S_PAGE_HDR_BYTES + S_META_BYTES) {
        s_say(what, cap, "%s is %lld bytes, shorter than its two meta pages", path,
              (long long) st.st_size);
        rc = SM_ETRUNCATED;
        goto done;
    }
    s_meta_parse(buf + psize, &m[1]);
    uint16_t pflags[2];
    memcpy(&pflags[0], buf + 10, 2);
    memcpy(&pflags[1], buf + psize + 10, 2);
    for (int i = 0; i < 2; i++) {
        if (!(pflags[i] & S_P_META) || s_le64(buf + (size_t) i * psize) != (uint64_t) i
            || !s_meta_sane(&m[i])) {
            s_say(what, cap, "%s: meta page %d is damaged", path, i);
            rc = SM_EMETA;
            goto done;
        }
    }
    if (m[1].psize != psize || m[1].flags != m[0].flags) {
        s_say(what, cap, "%s: the meta pages disagree on the page size or flags", path);
        rc = SM_EMETA;
        goto done;
    }
    int newest = m[1].txnid > m[0].txnid ? 1 : 0;
    const s_meta *n = &m[newest], *o = &m[1 - newest];
    bool fresh = m[0].txnid == 0 && m[1].txnid == 0;
    if (!fresh && (n->txnid - o->txnid != 1 || (n->txnid & 1u) != (uint64_t) newest
                   || o->last_pgno > n->last_pgno)) {
        s_say(what, cap, "%s: the meta pages disagree (transactions %llu and %llu, last "
              "pages %llu and %llu)", path, (unsigned long long) m[0].txnid,
              (unsigned long long) m[1].txnid, (unsigned long long) m[0].last_pgno,
              (unsigned long long) m[1].last_pgno);
        rc = SM_EMETA;
        goto done;
    }
    uint64_t need = (n->last_pgno + 1) * (uint64_t) psize;
    if ((uint64_t) st.st_size < need) {
        s_say(what, cap, "%s is %lld bytes but its last page ends at byte %llu", path,
              (long long) st.st_size, (unsigned long long) need);
        rc = SM_ETRUNCATED;
        goto done;
    }
done:
    free(buf);
    close(fd);
    return rc;
}

/*  Walk one database with a cursor: keys strictly ascending, each found
    again by a lookup that lands on the same record (a damaged branch page
    misroutes lookups though a walk reads every leaf).  Adds the database's
    pages to *pages.                                */
static int
s_tree_walk(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *pages,
            char *what, size_t cap)
{
    MDB_stat st;
    int rc = mdb_stat(txn, dbi, &st);
    if (rc != 0) {
        s_say(what, cap, "database %s: %s", name, mdb_strerror(rc));
        return SM_EDAMAGED;
    }
    *pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
        s_say(what, cap, "database %s: %s", name, mdb_strerror(rc));
        return SM_EDAMAGED;
    }
    MDB_val k, v, prev = { 0, NULL };
    size_t n = 0;
    int op = MDB_FIRST;
    while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        n++;
        if (prev.mv_data && mdb_cmp(txn, dbi, &prev, &k) >= 0) {
            s_say(what, cap, "database %s: keys out of order at record %zu", name, n);
            rc = -1;
            break;
        }
        MDB_val fk = k, fv;
        if (dbi != 0 && (mdb_get(txn, dbi, &fk, &fv) != 0 || fv.mv_data != v.mv_data)) {
            s_say(what, cap, "database %s: record %zu cannot be found by its key", name, n);
            rc = -1;
            break;
        }
        prev = k;
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND && n != st.ms_entries) {
        s_say(what, cap, "database %s: %zu records, its header says %zu", name, n,
              (size_t) st.ms_entries);
        return SM_EDAMAGED;
    }
    if (rc != MDB_NOTFOUND) {
        if (rc != -1)
            s_say(what, cap, "database %s: %s", name, mdb_strerror(rc));
        return SM_EDAMAGED;
    }
    return 0;
}

int
sm_store_check_tree(sm_store *store, char *what, size_t cap)
{
    assert(store);
    MDB_txn *txn;
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return s_err(rc);
    MDB_envinfo info;
    MDB_stat est;
    mdb_env_info(store->env, &info);
    mdb_env_stat(store->env, &est);
    uint64_t pages = 0, free_pages = 0;
    int out = s_tree_walk(txn, 1, "main", &pages, what, cap);
    for (int i = 0; i < SM_DB_COUNT && out == 0; i++)
        out = s_tree_walk(txn, store->dbi[i], s_db_names[i], &pages, what, cap);
    if (out == 0)
        out = s_tree_walk(txn, 0, "free", &pages, what, cap);
    if (out == 0) {
        /* The free list: each value is a list of page numbers, count first. */
        MDB_cursor *cur;
        MDB_val k, v;
        if ((rc = mdb_cursor_open(txn, 0, &cur)) == 0) {
            while (out == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
                uint64_t count;
                if (v.mv_size < 8 || (memcpy(&count, v.mv_data, 8), 0)
                    || (count + 1) * 8 != v.mv_size) {
                    s_say(what, cap, "the free page list is damaged");
                    out = SM_EDAMAGED;
                    break;
                }
                const uint8_t *ids = (const uint8_t *) v.mv_data + 8;
                for (uint64_t j = 0; j < count; j++) {
                    if (s_le64(ids + 8 * j) < 2 || s_le64(ids + 8 * j) > info.me_last_pgno) {
                        s_say(what, cap, "the free page list names page %llu, beyond "
                              "the file", (unsigned long long) s_le64(ids + 8 * j));
                        out = SM_EDAMAGED;
                        break;
                    }
                }
                free_pages += count;
            }
            mdb_cursor_close(cur);
        }
    }
    /* Every page is a meta page, in one database or free: no more, no less
       (a damaged page pointer shows as pages counted twice or never). */
    if (out == 0 && pages + free_pages + 2 != (uint64_t) info.me_last_pgno + 1) {
        s_say(what, cap, "page accounting: %llu in use + %llu free + 2 meta != %llu pages",
              (unsigned long long) pages, (unsigned long long) free_pages,
              (unsigned long long) info.me_last_pgno + 1);
        out = SM_EDAMAGED;
    }
    mdb_txn_abort(txn);
    return out;
}
