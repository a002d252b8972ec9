/*  Unit tests of the stock snapshot: a snapshot rebuilt after every change
    from only the items that changed (the ledger's change log) shows the
    same bytes as one built from the whole view, through sales, holds,
    moves, renames, new items, peers' entries and roster changes.           */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"
#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

#define NOW 1700000000000ULL
#define SKUS 12

/* A snapshot built from nothing at `now` equals `snap`: its body and its
   websocket message when snap was built at `now` too, else (it was not
   rebuilt: the version did not move) its body from "items" on. */
static void
s_same_as_fresh(sm_ledger *l, const sm_id *node, sm_snapshot *snap, uint64_t now,
                bool built_now)
{
    sm_snapshot *fresh = sm_snapshot_new(l, node);
    assert_non_null(fresh);
    assert_int_equal(sm_snapshot_ensure(fresh, now), 1);
    assert_int_equal(sm_snapshot_version(snap), sm_snapshot_version(fresh));
    void *o1 = NULL, *o2 = NULL;
    size_t n1, n2;
    const char *b1 = sm_snapshot_body(snap, &n1, &o1);
    const char *b2 = sm_snapshot_body(fresh, &n2, &o2);
    const char *i1 = built_now ? b1 : strstr(b1, "\"items\":");
    const char *i2 = built_now ? b2 : strstr(b2, "\"items\":");
    assert_non_null(i1);
    assert_non_null(i2);
    if (strcmp(i1, i2) != 0)
        fail_msg("the rebuilt body differs from a fresh one:\n%.*s\n%.*s", (int) n1, b1,
                 (int) n2, b2);
    sm_snapshot_body_unref(&o1);
    sm_snapshot_body_unref(&o2);
    if (built_now) {
        const char *m1 = sm_snapshot_message(snap, &n1);
        const char *m2 = sm_snapshot_message(fresh, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(m1, m2, n1);
    }
    sm_snapshot_destroy(&fresh);
}

static void
test_rebuild_only_what_changed(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    sm_identity ida, idb, idc;
    tu_identity(&ida, 1);
    tu_identity(&idb, 2);
    tu_identity(&idc, 3);
    sm_ledger *a = tu_open(dir, "a"), *b = tu_open(dir, "b");
    sm_ledger_set_identity(a, &ida);
    sm_ledger_set_identity(b, &idb);
    assert_int_equal(sm_ledger_create_market(a, "Saturday Market", "GBP", NOW), 0);
    sm_body adm = tu_admit(&idb.pub, "Bakery", SM_ROLE_STALL);
    assert_int_equal(sm_ledger_append(a, &adm, NOW, NULL), 0);
    tu_join(b, a);
    tu_sync(a, b, NOW);
    assert_int_equal(sm_ledger_keep_changes(a), 0);
    sm_snapshot *snap = sm_snapshot_new(a, &ida.pub);
    assert_non_null(snap);
    assert_int_equal(sm_snapshot_ensure(snap, NOW), 1);

    uint64_t rng = 4242, now = NOW;
    bool admitted = false;
    uint64_t holds[64];
    size_t nholds = 0;
    for (int round = 0; round < 400; round++) {
        now += 1000;
        sm_ledger *l = tu_below(&rng, 3) == 0 ? b : a;
        char sku[16], name[32];
        snprintf(sku, sizeof sku, "sku-%02u", (unsigned) tu_below(&rng, SKUS));
        sm_body body;
        uint64_t seq = 0;
        switch (tu_below(&rng, 9)) {
        case 0:                                    /* a new item or a rename */
            snprintf(name, sizeof name, "Item %d", round);
            body = tu_item(sku, name, 100 + (int64_t) tu_below(&rng, 900));
            break;
        case 1:
        case 2:
            body = tu_add(sku, 1 + (uint32_t) tu_below(&rng, 20));
            break;
        case 3:
        case 4:
            body = tu_sale(sku, 1 + (uint32_t) tu_below(&rng, 3), 100, NULL);
            break;
        case 5:
            body = tu_hold(sku, 1, now + 60000);
            break;
        case 6:
            if (nholds == 0 || l != a)
                continue;
            body = tu_release(holds[--nholds]);
            break;
        case 7:
            body = tu_move(sku, 1, l == a ? &idb.pub : &ida.pub);
            break;
        default:
            if (tu_below(&rng, 8) == 0 && !admitted) { /* the roster: every name */
                body = tu_admit(&idc.pub, "Cheese", SM_ROLE_STALL);
                l = a;
                admitted = true;
            } else {
                body = tu_adjust(sku, -1);
            }
            break;
        }
        int rc = sm_ledger_append(l, &body, now, &seq);
        if (rc == 0 && l == a && body.kind == SM_KIND_HOLD && nholds < 64)
            holds[nholds++] = seq;
        if (tu_below(&rng, 3) == 0) {              /* peers' entries arrive */
            tu_sync(b, a, now);
            tu_sync(a, b, now);
        }
        char *delta = NULL;
        size_t dlen = 0;
        rc = sm_snapshot_refresh(snap, now, &delta, &dlen);
        assert_true(rc == 0 || rc == 1);
        free(delta);
        s_same_as_fresh(a, &ida.pub, snap, now, rc == 1);
    }
    uint64_t whole = 0, partial = 0;
    sm_snapshot_builds(snap, &whole, &partial);
    print_message("builds: %llu whole, %llu partial\n", (unsigned long long) whole, (unsigned long long) partial);
    assert_true(partial > 150);                    /* most rebuilds read little */
    assert_true(whole >= 2 && whole < 10);         /* the first, the roster's */
    /* Without the change log every build reads everything. */
    sm_snapshot *plain = sm_snapshot_new(b, &idb.pub);
    assert_int_equal(sm_snapshot_ensure(plain, now), 1);
    sm_body add = tu_add("sku-01", 5);
    assert_int_equal(sm_ledger_append(b, &add, now, NULL), 0);
    char *delta = NULL;
    size_t dlen = 0;
    assert_int_equal(sm_snapshot_refresh(plain, now, &delta, &dlen), 1);
    free(delta);
    sm_snapshot_builds(plain, &whole, &partial);
    assert_int_equal(whole, 2);
    assert_int_equal(partial, 0);
    s_same_as_fresh(b, &idb.pub, plain, now, true);
    sm_snapshot_destroy(&plain);
    sm_snapshot_destroy(&snap);
    sm_ledger_destroy(&a);
    sm_ledger_destroy(&b);
    tu_rmrf(dir);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebuild_only_what_changed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
