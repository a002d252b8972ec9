/*  Raffle benchmark (issue: drops): a raffle with ENTRIES entries (default
    100,000) from ENTRIES devices, taken at two nodes (the stall S and
    another stall B, half each, B's ingested by S as a peer's), then

    1. the draw at S (sm_drop_draw in one batch, as the policy makes it:
       the counted set read from the log, R, ranks, the draw and the
       winners' holds, durable commit);
    2. `drop verify` (sm_drop_verify: every entry's chain from seq 1, the
       secret against the commitment, the rule recomputed, the holds).

    Target: each in <= 2 s.  Prints the figures and exits non-zero if a
    target is missed.  Usage: bench_drop [ENTRIES].  Works in a temporary
    directory under $TMPDIR (default /tmp) and removes it.  Figures on a
    loaded machine are indicative only.                                      */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drop.h"
#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

#define NOW    1700000000000ULL
#define START  (NOW + 60000)
#define CLOSES (NOW + 3600000)
#define BATCH  2000

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
s_check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "bench_drop: %s: %s\n", what, sm_strerror(rc));
        exit(1);
    }
}

static sm_ledger *
s_open(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sm_ledger_opts o = { .map_bytes = 4ULL << 30, .no_sync = false };
    int err = 0;
    sm_ledger *l = sm_ledger_open(path, &o, &err);
    s_check(l ? 0 : err, "open");
    return l;
}

/*  n entries for devices first.. at `l`, in batches.                      */
static void
s_enter(sm_ledger *l, const sm_id *stall, uint64_t drop_seq, uint64_t first, uint64_t n)
{
    for (uint64_t i = 0; i < n;) {
        s_check(sm_ledger_begin(l), "begin");
        for (int k = 0; k < BATCH && i < n; k++, i++) {
            sm_body b;
            memset(&b, 0, sizeof b);
            b.kind = SM_KIND_RAFFLE_ENTRY;
            b.u.raffle_entry.drop_origin = *stall;
            b.u.raffle_entry.drop_seq = drop_seq;
            uint64_t dev = first + i;
            memcpy(b.u.raffle_entry.device, &dev, sizeof dev);
            s_check(sm_ledger_append(l, &b, START + (first + i) / 100, NULL), "enter");
        }
        s_check(sm_ledger_commit(l), "commit");
    }
}

int
main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    if (n < 2 || n > 10000000) {
        fprintf(stderr, "usage: bench_drop [ENTRIES 2..10000000]\n");
        return 2;
    }
    char *dir = tu_tempdir();
    sm_identity ido, ids, idb;
    tu_identity(&ido, 1);
    tu_identity(&ids, 2);
    tu_identity(&idb, 3);
    sm_ledger *o = s_open(dir, "o"), *s = s_open(dir, "s"), *b = s_open(dir, "b");
    sm_ledger_set_identity(o, &ido);
    sm_ledger_set_identity(s, &ids);
    sm_ledger_set_identity(b, &idb);
    s_check(sm_ledger_create_market(o, "Market", "GBP", NOW), "market");
    sm_body as = tu_admit(&ids.pub, "Stall", SM_ROLE_STALL);
    sm_body ab = tu_admit(&idb.pub, "Stream", SM_ROLE_STALL);
    s_check(sm_ledger_append(o, &as, NOW, NULL), "admit");
    s_check(sm_ledger_append(o, &ab, NOW, NULL), "admit");
    tu_join(s, o);
    tu_join(b, o);
    tu_sync(o, s, NOW);
    tu_sync(o, b, NOW);
    sm_body it = tu_item("mug", "Mug", 3000), add = tu_add("mug", 1000);
    s_check(sm_ledger_append(s, &it, NOW, NULL), "item");
    s_check(sm_ledger_append(s, &add, NOW, NULL), "add");
    sm_body d = tu_drop("mug", 100, START);
    d.u.drop.mode = SM_DROP_RAFFLE;
    d.u.drop.per_shopper = 1;
    d.u.drop.closes_ms = CLOSES;
    d.u.drop.pickup_minutes = 60;
    uint64_t drop_seq = 0;
    s_check(sm_ledger_append(s, &d, NOW, &drop_seq), "drop");
    tu_sync(s, b, NOW);

    double t0 = s_now();
    s_enter(s, &ids.pub, drop_seq, 0, n / 2);
    s_enter(b, &ids.pub, drop_seq, n / 2, n - n / 2);
    while (tu_sync(b, s, CLOSES) > 0)   /* tu_sync moves a bounded amount a call */
        ;
    double t_fill = s_now() - t0;

    t0 = s_now();
    s_check(sm_ledger_begin(s), "begin");
    uint64_t draw_seq = 0;
    s_check(sm_drop_draw(s, &ids.pub, drop_seq, CLOSES + 1000, &draw_seq), "draw");
    s_check(sm_ledger_commit(s), "commit");
    double t_draw = s_now() - t0;

    char why[320] = "";
    sm_drop_result res;
    t0 = s_now();
    int rc = sm_drop_verify(s, &ids.pub, drop_seq, why, sizeof why, &res);
    double t_verify = s_now() - t0;
    if (rc != 0) {
        fprintf(stderr, "bench_drop: verify: %s %s\n", sm_strerror(rc), why);
        return 1;
    }
    printf("raffle of %llu entries at two nodes (filled in %.1f s), 100 units, 1 a shopper:\n",
           (unsigned long long) n, t_fill);
    printf("  draw (counted set from the log, ranks, draw + %zu holds, durable commit): "
           "%.3f s (target <= 2 s)\n", res.winners, t_draw);
    printf("  verify (chains from seq 1, commitment, rule, holds; %zu counted): "
           "%.3f s (target <= 2 s)\n", res.counted, t_verify);
    bool ok = res.counted == n && t_draw <= 2.0 && t_verify <= 2.0;
    sm_drop_result_free(&res);
    sm_ledger_destroy(&o);
    sm_ledger_destroy(&s);
    sm_ledger_destroy(&b);
    tu_rmrf(dir);
    free(dir);
    if (!ok)
        printf("  MISSED a target (or not every entry counted)\n");
    return ok ? 0 : 1;
}
