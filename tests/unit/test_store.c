/*  Unit tests of the store (store.c, the only LMDB user): open and close,
    a full map, a read-only directory and a damaged data file.  Each case
    checks that the caller gets a clear SM_E* code and that what was
    committed before is still there.                                          */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "state.h"
#include "store.h"
#include "testutil.h"

#define NOBODY_ID 65534            /* the unprivileged user a root run drops to */

static char *
s_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static sm_store *
s_open(const char *dir, uint64_t map_bytes)
{
    int err = 0;
    sm_store *s = sm_store_open(dir, map_bytes, false, true, &err);
    assert_int_equal(err, 0);
    assert_non_null(s);
    return s;
}

static void
s_put(sm_store *s, const char *key, const char *val)
{
    int err = 0;
    sm_txn *txn = sm_txn_begin(s, true, &err);
    assert_non_null(txn);
    assert_int_equal(sm_kv_put(txn, SM_DB_META, key, strlen(key), val, strlen(val)), 0);
    assert_int_equal(sm_txn_commit(&txn), 0);
    assert_null(txn);
}

/* Another process opens the store in `dir` and commits a write to it. */
static void
s_commit_elsewhere(const char *dir)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int e = 0;
        sm_store *other = sm_store_open(dir, 0, false, true, &e);
        sm_txn *t = other ? sm_txn_begin(other, true, &e) : NULL;
        int rc = t ? sm_kv_put(t, SM_DB_ITEMS, "k01", 3, "elsewhere", 9) : -1;
        if (rc == 0)
            rc = sm_txn_commit(&t);
        _exit(rc == 0 ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The value of `key` in meta is `val` (read in a transaction of its own). */
static void
s_expect(sm_store *s, const char *key, const char *val)
{
    int err = 0;
    sm_txn *txn = sm_txn_begin(s, false, &err);
    assert_non_null(txn);
    sm_val v;
    assert_int_equal(sm_kv_get(txn, SM_DB_META, key, strlen(key), &v), 0);
    assert_int_equal(v.len, strlen(val));
    assert_memory_equal(v.data, val, v.len);
    sm_txn_abort(&txn);
}

/* Open creates the directory (0700), a value committed survives close and
   reopen, the destructor NULLs and is safe twice, and a read-only open of
   a directory that holds no store says SM_ENOTFOUND. */
static void
test_open_close(void **state)
{
    (void) state;
    char *tmp = tu_tempdir();
    char *dir = s_path(tmp, "node");
    sm_store *s = s_open(dir, 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    s_put(s, "market", "Saturday");
    sm_store_destroy(&s);
    assert_null(s);
    sm_store_destroy(&s);                  /* safe twice */

    s = s_open(dir, 0);
    s_expect(s, "market", "Saturday");
    sm_store_destroy(&s);

    int err = 0;
    sm_store *ro = sm_store_open(dir, 0, true, false, &err);
    assert_non_null(ro);
    s_expect(ro, "market", "Saturday");
    int werr = 0;
    assert_null(sm_txn_begin(ro, true, &werr));  /* no writes on a read-only store */
    assert_int_not_equal(werr, 0);
    sm_store_destroy(&ro);

    char *none = s_path(tmp, "none");
    assert_null(sm_store_open(none, 0, true, false, &err));
    assert_int_equal(err, SM_ENOTFOUND);
    free(none);
    free(dir);
    tu_rmrf(tmp);
    free(tmp);
}

/* A map too small for a write: the put says SM_ENOSPC, nothing of that
   transaction is kept, what was committed before is intact, and smaller
   writes go on working. */
static void
test_map_full(void **state)
{
    (void) state;
    char *tmp = tu_tempdir();
    sm_store *s = s_open(tmp, 256u << 10);   /* 256 KiB */
    s_put(s, "before", "kept");
    int err = 0;
    sm_txn *txn = sm_txn_begin(s, true, &err);
    assert_non_null(txn);
    static uint8_t val[2048];
    memset(val, 0xab, sizeof val);
    int rc = 0;
    uint32_t puts = 0;
    for (uint32_t i = 0; i < 10000 && rc == 0; i++) {
        uint8_t key[8];
        memcpy(key, &i, sizeof i);
        memset(key + 4, 0, 4);
        rc = sm_kv_put(txn, SM_DB_STOCK, key, sizeof key, val, sizeof val);
        puts += rc == 0;
    }
    assert_int_equal(rc, SM_ENOSPC);
    assert_true(puts > 10);                  /* it did fill, not fail at once */
    sm_txn_abort(&txn);
    uint64_t entries = 1, file_bytes = 0;
    assert_int_equal(sm_store_stat(s, SM_DB_STOCK, &entries, &file_bytes), 0);
    assert_int_equal(entries, 0);
    s_expect(s, "before", "kept");
    s_put(s, "after", "works");
    s_expect(s, "after", "works");
    sm_store_destroy(&s);
    tu_rmrf(tmp);
    free(tmp);
}

/* Open `dir` for writing; the error code (0 if it opened). */
static int
s_try_open(const char *dir)
{
    int err = 0;
    sm_store *s = sm_store_open(dir, 0, false, true, &err);
    sm_store_destroy(&s);
    return s ? 0 : err;
}

/* A directory the node may not write: opening a store in it, or below it,
   fails with SM_EIO and creates nothing (as an unprivileged user: a root
   run forks a child that drops to nobody, since root writes anywhere). */
static void
test_read_only_dir(void **state)
{
    (void) state;
    char *tmp = tu_tempdir();
    char *dir = s_path(tmp, "ro");
    char *below = s_path(dir, "node");
    assert_int_equal(mkdir(dir, 0700), 0);
    int results[2];
    if (geteuid() == 0) {
        assert_int_equal(chmod(tmp, 0755), 0);
        assert_int_equal(chown(dir, NOBODY_ID, NOBODY_ID), 0);
        assert_int_equal(chmod(dir, 0500), 0);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            int out[2] = { 1, 1 };
            if (setgid(NOBODY_ID) == 0 && setuid(NOBODY_ID) == 0) {
                out[0] = s_try_open(dir);
                out[1] = s_try_open(below);
            }
            ssize_t w = write(fds[1], out, sizeof out);
            _exit(w == (ssize_t) sizeof out ? 0 : 1);
        }
        close(fds[1]);
        ssize_t r = read(fds[0], results, sizeof results);
        close(fds[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(r, (ssize_t) sizeof results);
    } else {
        assert_int_equal(chmod(dir, 0500), 0);
        results[0] = s_try_open(dir);
        results[1] = s_try_open(below);
    }
    assert_int_equal(results[0], SM_EIO);
    assert_int_equal(results[1], SM_EIO);
    char *data = s_path(dir, "data.mdb");
    struct stat st;
    assert_int_not_equal(stat(data, &st), 0);   /* nothing created */
    assert_int_not_equal(stat(below, &st), 0);
    assert_int_equal(chmod(dir, 0700), 0);
    free(data);
    free(below);
    free(dir);
    tu_rmrf(tmp);
    free(tmp);
}

/* Overwrite `len` bytes of `path` at `at` with `byte`. */
static void
s_scribble(const char *path, off_t at, size_t len, uint8_t byte)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t buf[8192];
    assert_true(len <= sizeof buf);
    memset(buf, byte, len);
    assert_int_equal(pwrite(fd, buf, len, at), (ssize_t) len);
    close(fd);
}

/* A damaged data file (its header pages overwritten, or the file cut
   short) is refused at open, before it is mapped, with SM_EMETA or
   SM_ETRUNCATED, never opened as an empty store and never a crash. */
static void
test_damaged_file(void **state)
{
    (void) state;
    for (int how = 0; how < 2; how++) {
        char *tmp = tu_tempdir();
        sm_store *s = s_open(tmp, 0);
        s_put(s, "market", "Saturday");
        sm_store_destroy(&s);
        char *data = s_path(tmp, "data.mdb");
        if (how == 0)
            s_scribble(data, 0, 8192, 0x5a);   /* both meta pages */
        else
            assert_int_equal(truncate(data, 100), 0);
        int err = 0;
        int want = how == 0 ? SM_EMETA : SM_ETRUNCATED;
        s = sm_store_open(tmp, 0, false, true, &err);
        assert_null(s);
        assert_int_equal(err, want);
        s = sm_store_open(tmp, 0, true, false, &err);
        assert_null(s);
        assert_int_equal(err, want);
        free(data);
        tu_rmrf(tmp);
        free(tmp);
    }
}

/*  A store of format 1 (no report totals: made before them) opens
    read-only as it is, and a writer's open migrates it in one transaction:
    the totals rebuilt from the log so that the state check passes, format
    2 recorded, the digest unchanged.                                       */
static void
test_migrate_format_1(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    char *path = s_path(dir, "l");
    sm_identity id;
    tu_identity(&id, 4);
    sm_ledger *l = tu_open(dir, "l");
    sm_ledger_set_identity(l, &id);
    assert_int_equal(sm_ledger_create_market(l, "Market", "GBP", 1767225600000ULL), 0);
    sm_body b = tu_item("jam", "Jam", 450);
    assert_int_equal(sm_ledger_append(l, &b, 1767225600001ULL, NULL), 0);
    b = tu_add("jam", 10);
    assert_int_equal(sm_ledger_append(l, &b, 1767225600002ULL, NULL), 0);
    b = tu_sale("jam", 3, 450, NULL);
    assert_int_equal(sm_ledger_append(l, &b, 1767225600003ULL, NULL), 0);
    sm_hash before, after;
    assert_int_equal(sm_ledger_digest(l, &before), 0);
    sm_ledger_destroy(&l);

    /* Back to format 1: no totals, the marker 1. */
    sm_store *st = s_open(path, 0);
    int err = 0;
    uint64_t slots = 0;
    assert_int_equal(sm_store_stat(st, SM_DB_REP_SLOT, &slots, NULL), 0);
    assert_true(slots > 0);
    sm_txn *txn = sm_txn_begin(st, true, &err);
    assert_non_null(txn);
    assert_int_equal(sm_kv_clear(txn, SM_DB_REP_SLOT), 0);
    assert_int_equal(sm_kv_clear(txn, SM_DB_REP_ITEM), 0);
    assert_int_equal(sm_kv_put(txn, SM_DB_META, "format", 6, "1", 1), 0);
    assert_int_equal(sm_txn_commit(&txn), 0);
    sm_store_destroy(&st);
    uint32_t format = 0;
    assert_int_equal(sm_store_format_of(path, &format), 0);
    assert_int_equal(format, 1);

    /* Read-only: read as it is, left as it is. */
    sm_ledger_opts ro = { .read_only = true };
    l = sm_ledger_open(path, &ro, &err);
    assert_non_null(l);
    assert_int_equal(sm_store_format(sm__ledger_store(l)), 1);
    assert_int_equal(sm_ledger_digest(l, &after), 0);
    assert_memory_equal(before.b, after.b, SM_HASH_BYTES);
    sm_ledger_destroy(&l);
    assert_int_equal(sm_store_format_of(path, &format), 0);
    assert_int_equal(format, 1);

    /* A writer migrates it. */
    l = tu_open(dir, "l");
    assert_int_equal(sm_store_format(sm__ledger_store(l)), SM_STORE_FORMAT);
    assert_int_equal(sm_store_stat(sm__ledger_store(l), SM_DB_REP_SLOT, &slots, NULL), 0);
    assert_true(slots > 0);
    sm_check_report r;
    assert_int_equal(sm_ledger_check(l, SM_CHECK_STATE | SM_CHECK_EVERY_SIG, &r), 0);
    assert_int_equal(sm_ledger_digest(l, &after), 0);
    assert_memory_equal(before.b, after.b, SM_HASH_BYTES);
    sm_ledger_destroy(&l);
    assert_int_equal(sm_store_format_of(path, &format), 0);
    assert_int_equal(format, SM_STORE_FORMAT);
    tu_rmrf(dir);
    free(path);
    free(dir);
}

static void
s_marks(sm_store *s, uint64_t *committed, uint64_t *durable)
{
    sm_store_marks(s, committed, durable);
}

/* A store that really syncs (unlike s_open's), in tmp/node (*dir: its path,
   the caller's to free). */
static sm_store *
s_open_syncing(const char *tmp, char **dir)
{
    int err = 0;
    *dir = s_path(tmp, "node");
    sm_store *s = sm_store_open(*dir, 0, false, false, &err);
    assert_non_null(s);
    return s;
}

/* Deferred sync (a store with real syncs): a commit is not counted durable
   until the next commit that changes anything, or a sync; a commit that
   changes nothing moves no mark; turning it off syncs; with it off every
   commit is durable at once.  A no_sync store counts every commit durable. */
static void
test_deferred_sync(void **state)
{
    (void) state;
    char *tmp = tu_tempdir(), *dir = NULL;
    int err = 0;
    sm_store *s = s_open_syncing(tmp, &dir);
    uint64_t c0, d0, c, d;
    s_marks(s, &c0, &d0);
    assert_int_equal(c0, d0);                  /* all on disk at open */
    assert_int_equal(sm_store_defer_sync(s, true), 0);
    s_put(s, "a", "1");
    s_marks(s, &c, &d);
    assert_int_equal(c, c0 + 1);
    assert_int_equal(d, d0);                   /* its meta page is not synced */
    sm_txn *txn = sm_txn_begin(s, true, &err); /* changes nothing */
    assert_int_equal(sm_txn_commit(&txn), 0);
    s_marks(s, &c, &d);
    assert_int_equal(c, c0 + 1);
    assert_int_equal(d, d0);
    s_put(s, "b", "2");                        /* its fdatasync covers "a" */
    s_marks(s, &c, &d);
    assert_int_equal(c, c0 + 2);
    assert_int_equal(d, c0 + 1);
    assert_int_equal(sm_store_sync(s), 0);
    s_marks(s, &c, &d);
    assert_int_equal(d, c);
    s_put(s, "c", "3");
    assert_int_equal(sm_store_defer_sync(s, false), 0);   /* syncs */
    s_marks(s, &c, &d);
    assert_int_equal(d, c);
    s_put(s, "d", "4");
    s_marks(s, &c, &d);
    assert_int_equal(d, c);
    sm_store_destroy(&s);
    s = s_open(dir, 0);                        /* no_sync */
    s_expect(s, "c", "3");
    assert_int_equal(sm_store_defer_sync(s, true), 0);
    s_put(s, "e", "5");
    s_marks(s, &c, &d);
    assert_int_equal(d, c);
    sm_store_destroy(&s);
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

/* data.mdb's size now. */
static uint64_t
s_file_size(const char *dir)
{
    char *f = s_path(dir, "data.mdb");
    struct stat st;
    assert_int_equal(stat(f, &st), 0);
    free(f);
    return (uint64_t) st.st_size;
}

/* Room ahead: a syncing store keeps data.mdb written a little past its
   last page, so a commit overwrites rather than grows the file (whose
   fdatasync would then write the inode too).  The room is at least a
   quarter MiB after a commit, a commit larger than the room still lands,
   every value reads back after a reopen, and the page tree checks whole
   (meta + used + free pages = the pages up to the last, not the file). */
static void
test_room_ahead(void **state)
{
    (void) state;
    char *tmp = tu_tempdir(), *dir = NULL;
    int err = 0;
    sm_store *s = s_open_syncing(tmp, &dir);
    assert_int_equal(sm_store_defer_sync(s, true), 0);
    uint64_t used = 0;
    s_put(s, "k0", "first");
    assert_int_equal(sm_store_stat(s, SM_DB_META, NULL, &used), 0);
    assert_true(s_file_size(dir) >= used + (256u << 10));
    /* 3 MiB in one transaction: past the room, LMDB grows the file itself. */
    enum { BIG = 3000, VAL = 1024 };
    static char val[VAL];
    sm_txn *txn = sm_txn_begin(s, true, &err);
    assert_non_null(txn);
    for (int i = 0; i < BIG; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "big%05d", i);
        memset(val, 'a' + i % 26, sizeof val);
        assert_int_equal(sm_kv_put(txn, SM_DB_META, key, (size_t) n, val, sizeof val), 0);
    }
    assert_int_equal(sm_txn_commit(&txn), 0);
    /* Small commits after it: each starts with room again. */
    for (int i = 1; i <= 40; i++) {
        char key[16], v[16];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(v, sizeof v, "v%d", i);
        s_put(s, key, v);
        assert_int_equal(sm_store_stat(s, SM_DB_META, NULL, &used), 0);
        assert_true(s_file_size(dir) >= used + (256u << 10));
    }
    assert_int_equal(sm_store_defer_sync(s, false), 0);
    sm_store_destroy(&s);
    s = sm_store_open(dir, 0, false, false, &err);
    assert_non_null(s);
    char what[256] = "";
    assert_int_equal(sm_store_check_tree(s, what, sizeof what), 0);
    s_expect(s, "k0", "first");
    s_expect(s, "k40", "v40");
    txn = sm_txn_begin(s, false, &err);
    assert_non_null(txn);
    for (int i = 0; i < BIG; i += 499) {
        char key[16];
        int n = snprintf(key, sizeof key, "big%05d", i);
        sm_val v;
        assert_int_equal(sm_kv_get(txn, SM_DB_META, key, (size_t) n, &v), 0);
        assert_int_equal(v.len, VAL);
        assert_int_equal(((const char *) v.data)[VAL - 1], 'a' + i % 26);
    }
    sm_txn_abort(&txn);
    sm_store_destroy(&s);
    /* A store that does not sync (tests, the simulator) writes no room. */
    char *quick = s_path(tmp, "quick");
    s = s_open(quick, 0);
    s_put(s, "a", "1");
    assert_int_equal(sm_store_stat(s, SM_DB_META, NULL, &used), 0);
    assert_true(s_file_size(quick) < used + (256u << 10));
    sm_store_destroy(&s);
    tu_rmrf(tmp);
    free(quick);
    free(dir);
    free(tmp);
}

/* ---- kept sums --------------------------------------------------------- */

/* A record's summed hash for the tests: the database, key and value mixed
   (FNV-1a per word), enough that changes show. */
static void
s_test_sum(sm_db db, const sm_val *k, const sm_val *v, sm_sum *out)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t) db;
    for (size_t i = 0; i < k->len; i++)
        h = (h ^ ((const uint8_t *) k->data)[i]) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (size_t i = 0; i < v->len; i++)
        h = (h ^ ((const uint8_t *) v->data)[i]) * 1099511628211ull;
    for (int i = 0; i < 4; i++) {
        h = (h ^ (uint64_t) i) * 1099511628211ull;
        out->w[i] = h;
    }
}

#define S_SUM_MASK ((1u << SM_DB_ITEMS) | (1u << SM_DB_STOCK))

/* The kept sums equal a scan's, of what a fresh read transaction sees. */
static void
s_sums_match(sm_store *s)
{
    int err = 0;
    sm_txn *r = sm_txn_begin(s, false, &err);
    assert_non_null(r);
    sm_sum kept[SM_DB_COUNT], scan[SM_DB_COUNT];
    assert_int_equal(sm_store_sums(s, r, kept), 0);
    assert_int_equal(sm_store_sums_scan(r, S_SUM_MASK, s_test_sum, scan), 0);
    assert_memory_equal(kept, scan, sizeof kept);
    sm_txn_abort(&r);
}

/* 256-bit sums carry and borrow across words, and subtracting undoes
   adding. */
static void
test_sum_arithmetic(void **state)
{
    (void) state;
    sm_sum a = { { UINT64_MAX, UINT64_MAX, 5, 0 } }, one = { { 1, 0, 0, 0 } };
    sm_sum_add(&a, &one);
    assert_true(a.w[0] == 0 && a.w[1] == 0 && a.w[2] == 6 && a.w[3] == 0);
    sm_sum_sub(&a, &one);
    assert_true(a.w[0] == UINT64_MAX && a.w[1] == UINT64_MAX && a.w[2] == 5);
    sm_sum z = { { 0 } };
    sm_sum_sub(&z, &one);                      /* wraps modulo 2^256 */
    for (int i = 0; i < 4; i++)
        assert_true(z.w[i] == UINT64_MAX);
    sm_sum x = { { 0x8000000000000000ull, UINT64_MAX, 0, 7 } }, y = x;
    sm_sum_add(&x, &y);
    sm_sum_sub(&x, &y);
    assert_memory_equal(&x, &y, sizeof x);
}

/* Kept sums follow every kind of write (put over a value, put of a new
   key, put_last appending and falling back on an existing key, delete of a
   present and a missing key, clear, writes through a borrowed handle),
   read as the running sums inside the writer's transaction, drop an
   aborted transaction's changes and survive a commit that changes
   nothing; a write committed by another process lets them lapse, and the
   readers are told so rather than given stale sums. */
static void
test_kept_sums(void **state)
{
    (void) state;
    char *tmp = tu_tempdir();
    char *dir = s_path(tmp, "node");
    int err = 0;
    sm_store *s = s_open(dir, 0);
    sm_txn *txn = sm_txn_begin(s, true, &err);
    for (int i = 0; i < 20; i++) {             /* written before they are kept */
        char k[16], v[16];
        snprintf(k, sizeof k, "k%02d", i);
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(sm_kv_put(txn, SM_DB_ITEMS, k, strlen(k), v, strlen(v)), 0);
    }
    assert_int_equal(sm_txn_commit(&txn), 0);
    assert_int_equal(sm_store_sums_keep(s, S_SUM_MASK, s_test_sum), 0);
    assert_int_equal(sm_store_sums_keep(s, S_SUM_MASK, s_test_sum), 0);   /* kept already */
    assert_int_equal(sm_store_sums_keep(s, 1u << SM_DB_SALES, s_test_sum), SM_EINVAL);
    s_sums_match(s);

    uint64_t rng = 12345;
    for (int round = 0; round < 300; round++) {
        txn = sm_txn_begin(s, true, &err);
        assert_non_null(txn);
        sm_txn *w = txn, *borrowed = NULL;
        if (round % 7 == 3) {
            borrowed = sm_txn_borrow(txn, &err);
            assert_non_null(borrowed);
            w = borrowed;
        }
        int ops = (int) (tu_below(&rng, 6));
        for (int o = 0; o < ops; o++) {
            sm_db db = tu_below(&rng, 3) == 0 ? SM_DB_STOCK : SM_DB_ITEMS;
            char k[16], v[32];
            snprintf(k, sizeof k, "k%02u", (unsigned) tu_below(&rng, 40));
            snprintf(v, sizeof v, "r%d-o%d", round, o);
            switch (tu_below(&rng, 5)) {
            case 0:
            case 1:
                assert_int_equal(sm_kv_put(w, db, k, strlen(k), v, strlen(v)), 0);
                break;
            case 2:
                assert_int_equal(sm_kv_put_last(w, db, k, strlen(k), v, strlen(v)), 0);
                break;
            case 3:
                assert_int_equal(sm_kv_del(w, db, k, strlen(k)), 0);
                break;
            default:
                if (tu_below(&rng, 10) == 0)
                    assert_int_equal(sm_kv_clear(w, db), 0);
                break;
            }
        }
        sm_sum run[SM_DB_COUNT], scan[SM_DB_COUNT];  /* the writer's own view */
        assert_int_equal(sm_store_sums(s, w, run), 0);
        assert_int_equal(sm_store_sums_scan(w, S_SUM_MASK, s_test_sum, scan), 0);
        assert_memory_equal(run, scan, sizeof run);
        sm_txn_abort(&borrowed);
        if (tu_below(&rng, 5) == 0)
            sm_txn_abort(&txn);
        else
            assert_int_equal(sm_txn_commit(&txn), 0);
        s_sums_match(s);
    }
    /* An unsummed database's writes leave the sums as they are. */
    s_put(s, "unsummed", "x");
    s_sums_match(s);

    /* Another process commits: the kept sums are of an earlier commit
       (busy: a reader cannot tell it from one being recorded); after this
       handle's next write they have lapsed (not found), and a scan is the
       only answer. */
    s_commit_elsewhere(dir);
    sm_txn *r = sm_txn_begin(s, false, &err);
    sm_sum sums[SM_DB_COUNT];
    assert_int_equal(sm_store_sums(s, r, sums), SM_EBUSY);
    sm_txn_abort(&r);
    s_put(s, "after", "y");
    r = sm_txn_begin(s, false, &err);
    assert_int_equal(sm_store_sums(s, r, sums), SM_ENOTFOUND);
    sm_txn_abort(&r);
    sm_store_destroy(&s);
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

/* Change log: what the test wrote, per commit, to compare with what the
   store lists.  Keys are "k00".."k39" in ITEMS and STOCK (kept) and SALES
   (not kept): bit (db_index * 40 + key) of a commit's set. */
enum { S_CHG_KEYS = 40, S_CHG_ROUNDS = 600 };
typedef struct {
    uint64_t id;
    bool all;
    uint8_t set[(2 * S_CHG_KEYS + 7) / 8];
} s_chg_commit;

static int
s_chg_bit(sm_db db, const char *key, size_t len)
{
    if (len != 3 || key[0] != 'k')
        return -1;
    int n = (key[1] - '0') * 10 + (key[2] - '0');
    return (db == SM_DB_STOCK ? S_CHG_KEYS : 0) + n;
}

static int
s_chg_collect(sm_db db, const sm_val *key, void *arg)
{
    uint8_t *set = arg;
    assert_true(db == SM_DB_ITEMS || db == SM_DB_STOCK);    /* only the kept */
    int bit = s_chg_bit(db, key->data, key->len);
    assert_true(bit >= 0);
    set[bit / 8] |= (uint8_t) (1u << (bit % 8));
    return 0;
}

/* What the store lists from `from` up to what a new read transaction sees,
   against the commits the test made (log[0..n), oldest first): the union
   of their keys, or SM_ENOTFOUND where one of them is unknown (a clear, or
   gone from the last 256, or before `known`).  Returns the store's code. */
static int
s_chg_check(sm_store *s, const s_chg_commit *log, size_t n, uint64_t from, uint64_t known)
{
    int err = 0;
    sm_txn *r = sm_txn_begin(s, false, &err);
    assert_non_null(r);
    uint64_t to = sm_txn_id(r);
    uint8_t got[sizeof log->set] = { 0 }, want[sizeof log->set] = { 0 };
    int rc = sm_store_changes(s, r, from, s_chg_collect, got);
    sm_txn_abort(&r);
    bool unknown = from < known || (to > 256 && from < to - 256);
    for (size_t i = 0; i < n; i++) {
        if (log[i].id <= from || log[i].id > to)
            continue;
        unknown |= log[i].all;
        for (size_t b = 0; b < sizeof want; b++)
            want[b] |= log[i].set[b];
    }
    if (unknown) {
        assert_int_equal(rc, SM_ENOTFOUND);
    } else {
        assert_int_equal(rc, 0);
        assert_memory_equal(got, want, sizeof want);
    }
    return rc;
}

/* The change log lists, for any span of the last 256 commits, exactly the
   keys written in its databases (put, put_last, del; through a borrowed
   handle too; an aborted transaction's not at all; a commit that changes
   nothing takes no id), and says "unknown" across a clear, past its 256,
   and across a commit by another process. */
static void
test_change_log(void **state)
{
    (void) state;
    char *tmp = tu_tempdir();
    char *dir = s_path(tmp, "node");
    int err = 0;
    sm_store *s = s_open(dir, 0);
    s_put(s, "before", "kept");
    const uint32_t mask = (1u << SM_DB_ITEMS) | (1u << SM_DB_STOCK);
    assert_int_equal(sm_store_changes_keep(s, mask), 0);
    assert_int_equal(sm_store_changes_keep(s, mask), 0);          /* kept already */
    assert_int_equal(sm_store_changes_keep(s, 1u << SM_DB_SALES), SM_EINVAL);
    sm_txn *txn = sm_txn_begin(s, false, &err);
    uint64_t known = sm_txn_id(txn);                 /* the log starts here */
    sm_txn_abort(&txn);

    s_chg_commit *log = calloc(S_CHG_ROUNDS, sizeof *log);
    assert_non_null(log);
    size_t n = 0, listed = 0;
    uint64_t rng = 777;
    for (int round = 0; round < S_CHG_ROUNDS; round++) {
        txn = sm_txn_begin(s, true, &err);
        assert_non_null(txn);
        uint64_t id = sm_txn_id(txn);
        s_chg_commit c = { .id = id };
        sm_txn *w = txn, *borrowed = NULL;
        if (round % 7 == 3) {
            borrowed = sm_txn_borrow(txn, &err);
            assert_non_null(borrowed);
            w = borrowed;
        }
        int ops = (int) tu_below(&rng, 4);
        for (int o = 0; o < ops; o++) {
            uint64_t d = tu_below(&rng, 3);
            sm_db db = d == 0 ? SM_DB_ITEMS : d == 1 ? SM_DB_STOCK : SM_DB_SALES;
            char k[8], v[32];
            snprintf(k, sizeof k, "k%02u", (unsigned) tu_below(&rng, S_CHG_KEYS));
            snprintf(v, sizeof v, "r%d-o%d", round, o);
            switch (tu_below(&rng, 4)) {
            case 0:
                assert_int_equal(sm_kv_put(w, db, k, 3, v, strlen(v)), 0);
                break;
            case 1:
                assert_int_equal(sm_kv_put_last(w, db, k, 3, v, strlen(v)), 0);
                break;
            case 2:
                assert_int_equal(sm_kv_del(w, db, k, 3), 0);
                break;
            default:
                if (tu_below(&rng, 40) == 0) {
                    assert_int_equal(sm_kv_clear(w, db), 0);
                    c.all |= db != SM_DB_SALES;
                }
                continue;
            }
            int bit = s_chg_bit(db, k, 3);
            if (db != SM_DB_SALES)
                c.set[bit / 8] |= (uint8_t) (1u << (bit % 8));
        }
        sm_txn_abort(&borrowed);
        if (tu_below(&rng, 6) == 0) {
            sm_txn_abort(&txn);                     /* listed nowhere */
        } else {
            assert_int_equal(sm_txn_commit(&txn), 0);
            sm_txn *r = sm_txn_begin(s, false, &err);
            if (sm_txn_id(r) == id)                 /* it wrote something */
                log[n++] = c;
            sm_txn_abort(&r);
        }
        /* From a few earlier versions up to now. */
        uint64_t now = n ? log[n - 1].id : known;
        for (int t = 0; t < 3; t++) {
            uint64_t back = tu_below(&rng, 300);
            uint64_t from = now > known + back ? now - back : known;
            if (t == 0)
                from = now;                         /* nothing since */
            listed += s_chg_check(s, log, n, from, known) == 0;
        }
        s_chg_check(s, log, n, known, known);       /* from the start */
    }
    assert_true(listed > S_CHG_ROUNDS);     /* most spans were listed, not unknown */
    assert_true(n > 256);                   /* and the ring went round */

    /* A commit of more keys than the log lists (a catch-up's round) is
       unknown: a span across it reads everything; one after it is listed. */
    txn = sm_txn_begin(s, true, &err);
    for (int i = 0; i < 300; i++) {
        char k[48];
        snprintf(k, sizeof k, "bulk-%04d-padding-padding", i);
        assert_int_equal(sm_kv_put(txn, SM_DB_STOCK, k, strlen(k), "v", 1), 0);
    }
    assert_int_equal(sm_txn_commit(&txn), 0);
    sm_txn *rb = sm_txn_begin(s, false, &err);
    uint8_t none[sizeof log->set] = { 0 };
    assert_int_equal(sm_store_changes(s, rb, log[n - 1].id, s_chg_collect, none), SM_ENOTFOUND);
    uint64_t bulk = sm_txn_id(rb);
    sm_txn_abort(&rb);
    txn = sm_txn_begin(s, true, &err);
    assert_int_equal(sm_kv_put(txn, SM_DB_ITEMS, "k03", 3, "x", 1), 0);
    assert_int_equal(sm_txn_commit(&txn), 0);
    assert_true(n < S_CHG_ROUNDS);
    log[n++] = (s_chg_commit) { .id = bulk + 1, .set = { 1u << 3 } };
    assert_int_equal(s_chg_check(s, log, n, bulk, known), 0);

    /* Another process commits: every span across it is unknown; spans
       after this handle's next commit are listed again. */
    uint64_t before = log[n - 1].id;
    s_commit_elsewhere(dir);
    sm_txn *r = sm_txn_begin(s, false, &err);
    uint8_t got[sizeof log->set] = { 0 };
    assert_int_equal(sm_store_changes(s, r, before, s_chg_collect, got), SM_ENOTFOUND);
    uint64_t theirs = sm_txn_id(r);
    sm_txn_abort(&r);
    txn = sm_txn_begin(s, true, &err);
    assert_int_equal(sm_kv_put(txn, SM_DB_STOCK, "k07", 3, "x", 1), 0);
    assert_int_equal(sm_txn_commit(&txn), 0);
    r = sm_txn_begin(s, false, &err);
    assert_int_equal(sm_store_changes(s, r, before, s_chg_collect, got), SM_ENOTFOUND);
    memset(got, 0, sizeof got);
    assert_int_equal(sm_store_changes(s, r, theirs, s_chg_collect, got), 0);
    int bit = s_chg_bit(SM_DB_STOCK, "k07", 3);
    assert_int_equal(got[bit / 8], 1u << (bit % 8));
    sm_txn_abort(&r);
    free(log);
    sm_store_destroy(&s);
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_close),
        cmocka_unit_test(test_map_full),
        cmocka_unit_test(test_read_only_dir),
        cmocka_unit_test(test_damaged_file),
        cmocka_unit_test(test_migrate_format_1),
        cmocka_unit_test(test_deferred_sync),
        cmocka_unit_test(test_room_ahead),
        cmocka_unit_test(test_sum_arithmetic),
        cmocka_unit_test(test_kept_sums),
        cmocka_unit_test(test_change_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
