/*  Unit tests of store integrity (src/integrity.c, the checks of ledger.c):
    the directory lock, the check of pages, chains and state, degraded
    origins, reindex refusing a forged entry, and repair's salvage.  Damage
    is made by writing records through the store's own API (the tamper sweep
    of tests/integration/test_damage.sh flips bytes in the file itself).   */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "integrity.h"
#include "state.h"
#include "stallmesh/error.h"
#include "store.h"
#include "support/testutil.h"

#define S_NOW 1767225600000ULL

/*  An organiser's store with an item, stock and `sales` sales.            */
static sm_ledger *
s_market(const char *dir, sm_identity *id, int sales)
{
    sm_ledger *l = tu_open(dir, "org");
    tu_identity(id, 7);
    sm_ledger_set_identity(l, id);
    assert_int_equal(sm_ledger_create_market(l, "Market", "EUR", S_NOW), 0);
    sm_body b = tu_item("jam", "Jam", 450);
    assert_int_equal(sm_ledger_append(l, &b, S_NOW + 1, NULL), 0);
    b = tu_add("jam", 100);
    assert_int_equal(sm_ledger_append(l, &b, S_NOW + 2, NULL), 0);
    for (int i = 0; i < sales; i++) {
        b = tu_sale("jam", 1, 450, NULL);
        assert_int_equal(sm_ledger_append(l, &b, S_NOW + 3 + (uint64_t) i, NULL), 0);
    }
    return l;
}

/*  Overwrite one byte of the stored log value of (origin, seq).            */
static void
s_damage_entry(sm_ledger *l, const sm_id *origin, uint64_t seq, size_t at)
{
    sm_store *st = sm__ledger_store(l);
    int err = 0;
    sm_txn *txn = sm_txn_begin(st, true, &err);
    assert_non_null(txn);
    uint8_t key[SM_KEY_BYTES + 8];
    memcpy(key, origin->b, SM_KEY_BYTES);
    for (int i = 0; i < 8; i++)
        key[SM_KEY_BYTES + i] = (uint8_t) (seq >> (56 - 8 * i));
    sm_val pos, v;
    assert_int_equal(sm_kv_get(txn, SM_DB_LOGIDX, key, sizeof key, &pos), 0);
    uint8_t posb[8];
    memcpy(posb, pos.data, 8);
    assert_int_equal(sm_kv_get(txn, SM_DB_LOG, posb, 8, &v), 0);
    uint8_t *copy = malloc(v.len);
    memcpy(copy, v.data, v.len);
    assert_true(at < v.len);
    copy[at] ^= 0x10;
    assert_int_equal(sm_kv_put(txn, SM_DB_LOG, posb, 8, copy, v.len), 0);
    free(copy);
    assert_int_equal(sm_txn_commit(&txn), 0);
}

/*  The directory lock is exclusive, names its holder and is released. */
static void
test_dirlock(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    pid_t holder = 0;
    int err = 0;
    assert_int_equal(sm_dirlock_holder(dir), 0);
    sm_dirlock *a = sm_dirlock_take(dir, &holder, &err);
    assert_non_null(a);
    assert_int_equal(sm_dirlock_holder(dir), getpid());
    sm_dirlock *b = sm_dirlock_take(dir, &holder, &err);
    assert_null(b);
    assert_int_equal(err, SM_ELOCKED);
    assert_int_equal(holder, getpid());
    sm_dirlock_release(&a);
    assert_null(a);
    sm_dirlock_release(&a);            /* safe twice */
    assert_int_equal(sm_dirlock_holder(dir), 0);
    b = sm_dirlock_take(dir, &holder, &err);
    assert_non_null(b);
    sm_dirlock_release(&b);
    tu_rmrf(dir);
    free(dir);
}

/*  A sound store passes every check, the state included. */
static void
test_check_sound(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    sm_identity id;
    sm_ledger *l = s_market(dir, &id, 20);
    sm_check_report r;
    assert_int_equal(sm_ledger_check(l, SM_CHECK_PAGES | SM_CHECK_EVERY_SIG
                                        | SM_CHECK_STATE | SM_CHECK_ALL_ORIGINS, &r), 0);
    assert_int_equal(r.checked, 23);
    assert_true(r.state_checked);
    assert_int_equal(r.damaged_count, 0);
    sm_ledger_destroy(&l);
    tu_rmrf(dir);
    free(dir);
}

/*  A stock record changed behind the log's back is found by the state
    check (and only by it), and reindex puts it right.                       */
static void
test_check_state_mismatch(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    sm_identity id;
    sm_ledger *l = s_market(dir, &id, 5);
    sm_units before;
    assert_int_equal(sm_ledger_units(l, "jam", &id.pub, &before), 0);
    sm_store *st = sm__ledger_store(l);
    int err = 0;
    sm_txn *txn = sm_txn_begin(st, true, &err);
    sm_cursor *cur = sm_cursor_open(txn, SM_DB_STOCK, NULL, 0, NULL, 0, &err);
    sm_val k, v;
    assert_int_equal(sm_cursor_next(cur, &k, &v), 0);
    uint8_t key[256], val[256];
    size_t klen = k.len, vlen = v.len;
    memcpy(key, k.data, klen);
    memcpy(val, v.data, vlen);
    sm_cursor_close(&cur);
    val[0] ^= 0x40;                    /* `added` grows by 64: units from nowhere */
    assert_int_equal(sm_kv_put(txn, SM_DB_STOCK, key, klen, val, vlen), 0);
    assert_int_equal(sm_txn_commit(&txn), 0);

    sm_check_report r;
    assert_int_equal(sm_ledger_check(l, SM_CHECK_EVERY_SIG, &r), 0);
    assert_int_equal(sm_ledger_check(l, SM_CHECK_STATE, &r), SM_ESTATEDIFF);
    assert_non_null(strstr(r.what, "stock"));
    assert_int_equal(sm_ledger_reindex(l), 0);
    assert_int_equal(sm_ledger_check(l, SM_CHECK_STATE, &r), 0);
    sm_units after;
    assert_int_equal(sm_ledger_units(l, "jam", &id.pub, &after), 0);
    assert_int_equal(after.units, before.units);
    sm_ledger_destroy(&l);
    tu_rmrf(dir);
    free(dir);
}

/*  An altered entry is named (origin, seq); with SM_CHECK_ALL_ORIGINS the
    check lists it and returns SM_EDEGRADED; reindex refuses the store and
    leaves the state as it was.                                             */
static void
test_check_damaged_entry(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    sm_identity id;
    sm_ledger *l = s_market(dir, &id, 10);
    sm_hash before, after;
    assert_int_equal(sm_ledger_digest(l, &before), 0);
    s_damage_entry(l, &id.pub, 7, SM_SIG_BYTES + 20);

    sm_check_report r;
    int rc = sm_ledger_check(l, SM_CHECK_EVERY_SIG, &r);
    assert_true(rc != 0);
    assert_memory_equal(r.origin.b, id.pub.b, SM_KEY_BYTES);
    assert_true(r.seq == 7 || r.seq == 6);
    assert_int_equal(sm_ledger_check(l, SM_CHECK_ALL_ORIGINS, &r), SM_EDEGRADED);
    assert_int_equal(r.damaged_count, 1);
    assert_true(r.damaged[0].seq == 7 || r.damaged[0].seq == 6);
    assert_true(sm_ledger_reindex(l) != 0);
    assert_int_equal(sm_ledger_digest(l, &after), 0);
    assert_memory_equal(before.b, after.b, SM_HASH_BYTES);
    sm_ledger_destroy(&l);
    tu_rmrf(dir);
    free(dir);
}

/*  Degraded origins: marked once each, the lowest seq kept, listed.       */
static void
test_damage_marks(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    sm_identity id;
    sm_ledger *l = s_market(dir, &id, 1);
    assert_int_equal(sm_ledger_damage(l, &id.pub), 0);
    assert_int_equal(sm_ledger_damage_each(l, NULL, 0), 0);
    sm_damage d = { id.pub, 9, SM_ESIG };
    assert_int_equal(sm_ledger_set_damaged(l, &d), 0);
    d.seq = 12;
    assert_int_equal(sm_ledger_set_damaged(l, &d), 0);
    assert_int_equal(sm_ledger_damage(l, &id.pub), 9);
    d.seq = 4;
    assert_int_equal(sm_ledger_set_damaged(l, &d), 0);
    sm_damage out[4];
    assert_int_equal(sm_ledger_damage_each(l, out, 4), 1);
    assert_int_equal(out[0].seq, 4);
    for (uint8_t i = 0; i < SM_CHECK_DAMAGED_MAX - 1; i++) {
        memset(d.origin.b, i + 1, SM_KEY_BYTES);
        assert_int_equal(sm_ledger_set_damaged(l, &d), 0);
    }
    memset(d.origin.b, 0xee, SM_KEY_BYTES);
    assert_int_equal(sm_ledger_set_damaged(l, &d), SM_ETOOBIG);
    sm_ledger_destroy(&l);
    tu_rmrf(dir);
    free(dir);
}

/*  The forked check reports a truncated file (no signal), and a store
    that does not exist yet passes.                                         */
static void
test_integrity_check_file(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    sm_identity id;
    sm_ledger *l = s_market(dir, &id, 50);
    sm_ledger_destroy(&l);
    char store[512], data[600];
    snprintf(store, sizeof store, "%s/org", dir);
    snprintf(data, sizeof data, "%s/data.mdb", store);
    sm_check_report r;
    assert_int_equal(sm_integrity_check(store, SM_CHECK_PAGES | SM_CHECK_STATE, true, &r), 0);
    assert_true(r.state_checked);
    /* Half the pages in use (the file runs on past them: store.c, room
       ahead, so half the file might cut only zeros). */
    int err = 0;
    sm_store *st = sm_store_open(store, 0, true, true, &err);
    assert_non_null(st);
    uint64_t used = 0;
    assert_int_equal(sm_store_stat(st, SM_DB_META, NULL, &used), 0);
    sm_store_destroy(&st);
    assert_int_equal(truncate(data, (off_t) (used / 2)), 0);
    assert_int_equal(sm_integrity_check(store, SM_CHECK_PAGES, false, &r), SM_ETRUNCATED);
    assert_non_null(strstr(r.what, "last page"));
    char none[600];
    snprintf(none, sizeof none, "%s/none", dir);
    assert_int_equal(sm_integrity_check(none, SM_CHECK_PAGES, false, &r), 0);
    tu_rmrf(dir);
    free(dir);
}

/*  Salvage keeps each origin up to its first bad entry, in a store that
    verifies and keeps the market; the own log, cut, is not confirmed.     */
static void
test_salvage(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    sm_identity id;
    sm_ledger *l = s_market(dir, &id, 30);
    sm_ledger_confirm_own(l);
    s_damage_entry(l, &id.pub, 20, 3);   /* in the signature */
    sm_ledger_destroy(&l);
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/org", dir);
    snprintf(to, sizeof to, "%s/new", dir);
    sm_salvage_report r;
    assert_int_equal(sm_integrity_salvage(from, to, &id.pub, S_NOW + 1000, &r), 0);
    assert_true(r.has_market);
    assert_false(r.own_complete);
    assert_false(r.own_confirmed);
    assert_int_equal(r.damaged_origins, 1);
    assert_true(r.kept == 19 || r.kept == 18);
    assert_int_equal(r.kept + r.dropped, 33);
    sm_ledger *n = tu_open(dir, "new");
    sm_check_report c;
    assert_int_equal(sm_ledger_check(n, SM_CHECK_EVERY_SIG | SM_CHECK_STATE, &c), 0);
    sm_market m;
    assert_int_equal(sm_ledger_market(n, &m), 0);
    assert_memory_equal(m.market.b, id.pub.b, SM_KEY_BYTES);
    sm_head h;
    assert_int_equal(sm_ledger_head(n, &id.pub, &h), 0);
    assert_int_equal(h.seq, r.kept);
    bool confirmed = true;
    assert_int_equal(sm_ledger_own_confirmed(n, &confirmed), 0);
    assert_false(confirmed);
    sm_ledger_destroy(&n);
    tu_rmrf(dir);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dirlock),
        cmocka_unit_test(test_check_sound),
        cmocka_unit_test(test_check_state_mismatch),
        cmocka_unit_test(test_check_damaged_entry),
        cmocka_unit_test(test_damage_marks),
        cmocka_unit_test(test_integrity_check_file),
        cmocka_unit_test(test_salvage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
