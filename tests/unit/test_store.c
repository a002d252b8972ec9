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

/* Deferred sync (a store with real syncs): a commit is not counted durable
   until the next commit that changes anything, or a sync; a commit that
   changes nothing moves no mark; turning it off syncs; with it off every
   commit is durable at once.  A no_sync store counts every commit durable. */
static void
test_deferred_sync(void **state)
{
    (void) state;
    char *tmp = tu_tempdir();
    char *dir = s_path(tmp, "node");
    int err = 0;
    sm_store *s = sm_store_open(dir, 0, false, false, &err);
    assert_non_null(s);
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
    char *tmp = tu_tempdir();
    char *dir = s_path(tmp, "node");
    int err = 0;
    sm_store *s = sm_store_open(dir, 0, false, false, &err);
    assert_non_null(s);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
