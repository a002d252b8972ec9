/*  fill_store: append many sales to a node's own log, fast, for the mesh
    catch-up benchmark (tests/bench/bench_mesh.sh): the node is then started
    on the store and a fresh stall fetches it all.

        fill_store DIR COUNT [SKU]

    DIR is a node's data directory (its identity and store; the node must
    not be running).  Appends an item SKU (default "bench") and enough
    stock for COUNT sales, then COUNT one-unit sales, in batches of 1000
    appends a durable commit (what a busy till's group commit does).  The
    entries are ordinary signed entries of the node's own origin, exactly as
    the node would append them.  Prints

        fill_store: sales=COUNT seconds=S entries_per_s=R head=SEQ

    and exits 0; 1 on a failure, 2 on usage errors.  Not a benchmark itself
    (make bench does not run it alone): it is named outside bench_*.         */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stallmesh/error.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"
#include "stallmesh/limits.h"
#include "testutil.h"

#define S_BATCH     1000u
#define S_COUNT_MAX 100000000ul

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static uint64_t
s_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static int
s_fail(const char *what, int rc)
{
    fprintf(stderr, "fill_store: %s: %s\n", what, sm_strerror(rc));
    return 1;
}

int
main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: fill_store DIR COUNT [SKU]\n");
        return 2;
    }
    char *end;
    unsigned long count = strtoul(argv[2], &end, 10);
    if (*end || count < 1 || count > S_COUNT_MAX) {
        fprintf(stderr, "fill_store: COUNT must be 1 to %lu\n", S_COUNT_MAX);
        return 2;
    }
    const char *sku = argc == 4 ? argv[3] : "bench";
    char path[4096];
    int rc = sm_crypto_init();
    if (rc != 0)
        return s_fail("libsodium", rc);
    sm_identity id;
    snprintf(path, sizeof path, "%s/identity", argv[1]);
    if ((rc = sm_identity_load(&id, path)) != 0)
        return s_fail(path, rc);
    snprintf(path, sizeof path, "%s/store", argv[1]);
    sm_ledger_opts opts = { 0 };
    sm_ledger *ledger = sm_ledger_open(path, &opts, &rc);
    if (!ledger)
        return s_fail(path, rc);
    sm_ledger_set_identity(ledger, &id);

    sm_body item = tu_item(sku, "Benchmark item", 100);
    if ((rc = sm_ledger_append(ledger, &item, s_ms(), NULL)) != 0)
        return s_fail("item", rc);
    for (unsigned long added = 0; added < count; added += SM_QTY_MAX) {
        unsigned long qty = count - added < SM_QTY_MAX ? count - added : SM_QTY_MAX;
        sm_body add = tu_add(sku, (uint32_t) qty);
        if ((rc = sm_ledger_append(ledger, &add, s_ms(), NULL)) != 0)
            return s_fail("stock", rc);
    }
    sm_body sale = tu_sale(sku, 1, 100, NULL);
    double t0 = s_now();
    for (unsigned long done = 0; done < count;) {
        if ((rc = sm_ledger_begin(ledger)) != 0)
            return s_fail("begin", rc);
        uint64_t now = s_ms();
        for (unsigned k = 0; k < S_BATCH && done < count; k++, done++)
            if ((rc = sm_ledger_append(ledger, &sale, now, NULL)) != 0) {
                sm_ledger_abort(ledger);
                return s_fail("sale", rc);
            }
        if ((rc = sm_ledger_commit(ledger)) != 0)
            return s_fail("commit", rc);
    }
    double secs = s_now() - t0;
    sm_head head;
    if ((rc = sm_ledger_head(ledger, &id.pub, &head)) != 0)
        return s_fail("head", rc);
    printf("fill_store: sales=%lu seconds=%.2f entries_per_s=%.0f head=%llu\n", count, secs,
           (double) count / secs, (unsigned long long) head.seq);
    sm_ledger_destroy(&ledger);
    sm_identity_wipe(&id);
    return 0;
}
