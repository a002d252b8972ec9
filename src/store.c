/*  The store: one LMDB environment with the named databases of sm_db.

    This is the only file that includes lmdb.h.  It maps LMDB's errors to
    SM_E* codes, so a full disk or map (MDB_MAP_FULL, ENOSPC) reaches the
    caller as SM_ENOSPC with the transaction aborted and nothing written.

    The environment is opened with MDB_NOTLS so that read transactions can
    be used from any thread (the web thread reads while the core writes).    */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define SM__DISK_FULL_BYTES  (1u << 20)   /* less free than this: a write's EIO is a full disk */

struct sm_store {
    MDB_env *env;
    MDB_dbi dbi[SM_DB_COUNT];
    bool absent[SM_DB_COUNT];  /* an optional database missing (read-only) */
    bool read_only;
};

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

static const char *const s_db_names[SM_DB_COUNT] = {
    [SM_DB_META] = "meta",       [SM_DB_ORIGINS] = "origins",
    [SM_DB_LOG] = "log",         [SM_DB_LOGIDX] = "logidx",
    [SM_DB_HEADS] = "heads",
    [SM_DB_ITEMS] = "items",     [SM_DB_STOCK] = "stock",
    [SM_DB_SALES] = "sales",     [SM_DB_HOLDS] = "holds",
    [SM_DB_FORKS] = "forks",     [SM_DB_EXTIDS] = "extids",
    [SM_DB_REP_SLOT] = "rep_slot", [SM_DB_REP_ITEM] = "rep_item",
    [SM_DB_HOLDENDS] = "holdends",
};

/*  Databases added after the first release: a store written by an older
    version opens read-only without them (reads find nothing); a writable
    open creates them empty (reindex fills them).                            */
static bool
s_db_optional(int db)
{
    return db == SM_DB_REP_SLOT || db == SM_DB_REP_ITEM;
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
    if ((rc = s_err(mdb_txn_commit(txn))) != 0) {
        txn = NULL;
        goto fail;
    }
    return self;
fail:
    if (txn)
        mdb_txn_abort(txn);
    if (self->env)
        mdb_env_close(self->env);
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
    free(self);
    *self_p = NULL;
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

int
sm_txn_commit(sm_txn **txn_p)
{
    assert(txn_p && *txn_p && !(*txn_p)->borrowed);
    sm_txn *self = *txn_p;
    int rc = s_err_write(self->store, mdb_txn_commit(self->txn));
    free(self);
    *txn_p = NULL;
    return rc;
}

void
sm_txn_abort(sm_txn **txn_p)
{
    assert(txn_p);
    if (!*txn_p)
        return;
    if (!(*txn_p)->borrowed)
        mdb_txn_abort((*txn_p)->txn);
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
    return s_err_write(txn->store, mdb_put(txn->txn, txn->store->dbi[db], &k, &v, 0));
}

int
sm_kv_put_last(sm_txn *txn, sm_db db, const void *key, size_t klen,
               const void *val, size_t vlen)
{
    assert(txn && txn->write && db < SM_DB_COUNT && key && klen > 0);
    assert(val || vlen == 0);
    MDB_val k = { klen, (void *) key }, v = { vlen, (void *) val };
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
    int rc = mdb_del(txn->txn, txn->store->dbi[db], &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : s_err(rc);
}

int
sm_kv_clear(sm_txn *txn, sm_db db)
{
    assert(txn && txn->write && db < SM_DB_COUNT);
    return s_err(mdb_drop(txn->txn, txn->store->dbi[db], 0));
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
