/*  Ledger benchmarks (issue: log and state).  Prints each figure with how it
    was measured and the machine's limit beside it:

    1. local appends (encode, sign, hash, state update) with group commit,
       durable commits (fsync), against the raw Ed25519 signing rate;
    2. ingest of another origin's contiguous run of sale entries (links +
       one signature a run, decode, state update, durable commit), against
       per-entry signature verification;
    3. reindex of the whole store, and bytes on disk per sale entry;
    4. `stallmesh verify`'s rate;
    5. what keeping the state digest's sum adds to a sale's append.

    Usage: bench_ledger [ENTRIES] (default 1000000).  Works in a temporary
    directory under $TMPDIR (default /tmp) and removes it.
    bench_ledger --commit-only prints just the durable commit latency (mean,
    p50, p99 of 200 one-entry commits of a stock add), then the same for 200
    one-line sales with external ids after 2,000 others (a sale writes more
    pages: its sale, its external id's index, the report's totals): the
    floors under the node's sale latency, which tests/bench/bench_node.sh
    prints beside it.                                                       */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

#define NOW    1700000000000ULL
#define BATCH  1000            /* entries per append batch and per ingested run */
#define RUNS_PER_COMMIT 8      /* ingest group commit: runs per durable commit */

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int
s_cmp_double(const void *x, const void *y)
{
    double a = *(const double *) x, b = *(const double *) y;
    return a < b ? -1 : a > b;
}

static void
s_check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "bench: %s: %s\n", what, sm_strerror(rc));
        exit(1);
    }
}

static sm_ledger *
s_open(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sm_ledger_opts o = { .map_bytes = 8ULL << 30, .no_sync = false };
    int err = 0;
    sm_ledger *l = sm_ledger_open(path, &o, &err);
    s_check(err, "open");
    return l;
}

static uint64_t
s_du(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/data.mdb", dir, name);
    return stat(path, &st) == 0 ? (uint64_t) st.st_blocks * 512 : 0;
}

/*  What keeping the state digest's sum costs a sale (the node keeps it, so
    that GET /api/state answers without reading the state): two stores
    without syncs (the CPU alone), one keeping it, appending the same sales
    in batches of 100, interleaved round by round; the median round each. */
static void
s_digest_cost(const char *dir)
{
    enum { ROUNDS = 7, SALES = 4000, B = 100 };
    sm_ledger *l[2];
    sm_identity id[2];
    for (int k = 0; k < 2; k++) {
        tu_identity(&id[k], (uint8_t) (20 + k));
        l[k] = tu_open(dir, k ? "kept" : "plain");
        sm_ledger_set_identity(l[k], &id[k]);
        s_check(sm_ledger_create_market(l[k], "Digest", "GBP", NOW), "market");
        sm_body it = tu_item("tee", "Tee", 1500);
        s_check(sm_ledger_append(l[k], &it, NOW, NULL), "item");
        for (unsigned i = 0; i < ROUNDS * SALES / SM_QTY_MAX + 1; i++) {
            sm_body add = tu_add("tee", SM_QTY_MAX);
            s_check(sm_ledger_append(l[k], &add, NOW, NULL), "add");
        }
    }
    s_check(sm_ledger_keep_digest(l[1]), "keep digest");
    double us[2][ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < 2; k++) {
            double t0 = s_now();
            for (int i = 0; i < SALES; i += B) {
                s_check(sm_ledger_begin(l[k]), "begin");
                for (int j = 0; j < B; j++) {
                    sm_body sale = tu_sale("tee", 1, 1500, NULL);
                    s_check(sm_ledger_append(l[k], &sale, NOW, NULL), "append");
                }
                s_check(sm_ledger_commit(l[k]), "commit");
            }
            us[k][r] = (s_now() - t0) * 1e6 / SALES;
        }
    }
    sm_hash kept, scan;
    uint64_t vk, vs;
    s_check(sm_ledger_digest_kept(l[1], &kept, &vk), "kept digest");
    s_check(sm_ledger_digest_scan(l[1], &scan, &vs), "scanned digest");
    if (vk != vs || memcmp(kept.b, scan.b, SM_HASH_BYTES) != 0) {
        fprintf(stderr, "bench: the kept digest is not the state's\n");
        exit(1);
    }
    qsort(us[0], ROUNDS, sizeof us[0][0], s_cmp_double);
    qsort(us[1], ROUNDS, sizeof us[1][0], s_cmp_double);
    printf("%-44s %12.2f us a sale  (kept %.2f, not kept %.2f: no syncs, median of %d rounds of %d)\n",
           "keeping the state digest's sum", us[1][ROUNDS / 2] - us[0][ROUNDS / 2],
           us[1][ROUNDS / 2], us[0][ROUNDS / 2], ROUNDS, SALES);
    sm_ledger_destroy(&l[0]);
    sm_ledger_destroy(&l[1]);
}

int
main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    bool commit_only = argc > 1 && strcmp(argv[1], "--commit-only") == 0;
    size_t total = argc > 1 && !commit_only ? strtoul(argv[1], NULL, 10) : 1000000;
    if (commit_only)
        total = BATCH;
    if (total < BATCH)
        total = BATCH;
    total -= total % BATCH;
    char *dir = tu_tempdir();
    sm_identity ida, idb;
    tu_identity(&ida, 1);
    tu_identity(&idb, 2);
    sm_ledger *a = s_open(dir, "a"), *b = s_open(dir, "b");
    sm_ledger_set_identity(a, &ida);
    sm_ledger_set_identity(b, &idb);
    s_check(sm_ledger_create_market(a, "Bench", "GBP", NOW), "market");
    sm_body ad = tu_admit(&idb.pub, "stall", SM_ROLE_STALL);
    s_check(sm_ledger_append(a, &ad, NOW, NULL), "admit");
    tu_join(b, a);
    tu_sync(a, b, NOW);
    sm_body it = tu_item("tee", "Tee", 1500);
    s_check(sm_ledger_append(b, &it, NOW, NULL), "item");
    for (size_t added = 0; added < total; added += SM_QTY_MAX) {
        sm_body add = tu_add("tee", SM_QTY_MAX);
        s_check(sm_ledger_append(b, &add, NOW, NULL), "add");
    }

    if (!commit_only)
        printf("stallmesh ledger benchmark: %zu sale entries, batches of %d, durable commits\n\n",
               total, BATCH);

    /* Machine limit for appends: Ed25519 signatures per second on one core. */
    uint8_t msg[200] = { 1 }, sig[SM_SIG_BYTES];
    double t0 = s_now();
    int signs = 20000;
    for (int i = 0; i < signs; i++) {
        msg[0] = (uint8_t) i;
        sm_identity_sign(&idb, msg, sizeof msg, sig);
    }
    double sign_rate = signs / (s_now() - t0);

    /* Machine limit for commits: a durable LMDB commit of one small entry. */
    enum { COMMITS = 200 };
    double each_ms[COMMITS];
    t0 = s_now();
    for (int i = 0; i < COMMITS; i++) {
        double t1 = s_now();
        sm_body add = tu_add("tee", 1);
        s_check(sm_ledger_append(b, &add, NOW, NULL), "commit probe");
        each_ms[i] = (s_now() - t1) * 1000.0;
    }
    double commit_ms = (s_now() - t0) * 1000.0 / COMMITS;
    printf("%-44s %12.2f ms  (one small append, fsync'd: the disk's limit)\n",
           "durable commit latency", commit_ms);
    if (commit_only) {
        qsort(each_ms, COMMITS, sizeof *each_ms, s_cmp_double);
        printf("%-44s %12.2f ms p50, %.2f ms p99, %.2f ms max  (%d commits)\n",
               "durable commit latency, each", each_ms[COMMITS / 2 - 1],
               each_ms[COMMITS * 99 / 100 - 1], each_ms[COMMITS - 1], COMMITS);
        for (int i = 0; i < 2000; i++) {
            char ext[32];
            snprintf(ext, sizeof ext, "warm-%d", i);
            sm_body sale = tu_sale("tee", 1, 1500, ext);
            s_check(sm_ledger_append(b, &sale, NOW, NULL), "sale");
        }
        for (int i = 0; i < COMMITS; i++) {
            char ext[32];
            snprintf(ext, sizeof ext, "probe-%d", i);
            sm_body sale = tu_sale("tee", 1, 1500, ext);
            double t1 = s_now();
            s_check(sm_ledger_append(b, &sale, NOW, NULL), "sale probe");
            each_ms[i] = (s_now() - t1) * 1000.0;
        }
        qsort(each_ms, COMMITS, sizeof *each_ms, s_cmp_double);
        printf("%-44s %12.2f ms p50, %.2f ms p99, %.2f ms max  (%d commits)\n",
               "durable sale commit latency, each", each_ms[COMMITS / 2 - 1],
               each_ms[COMMITS * 99 / 100 - 1], each_ms[COMMITS - 1], COMMITS);
        sm_ledger_destroy(&a);
        sm_ledger_destroy(&b);
        tu_rmrf(dir);
        free(dir);
        return 0;
    }

    /* 1. local appends */
    t0 = s_now();
    for (size_t i = 0; i < total; i += BATCH) {
        s_check(sm_ledger_begin(b), "begin");
        for (size_t j = 0; j < BATCH; j++) {
            sm_body s = tu_sale("tee", 1, 1500, NULL);
            s_check(sm_ledger_append(b, &s, NOW + i, NULL), "append");
        }
        s_check(sm_ledger_commit(b), "commit");
    }
    double append_s = s_now() - t0;
    printf("%-44s %12.0f entries/s  (target >= 40000; limit: Ed25519 sign %.0f/s on one core)\n",
           "local append, group commit", total / append_s, sign_rate);

    /* 2. ingest: copy b's log out, feed it to a in runs */
    sm_head hb;
    s_check(sm_ledger_head(b, &idb.pub, &hb), "head");
    size_t n = hb.seq;
    tu_copy *log = calloc(n, sizeof *log);
    size_t got = tu_read(b, &idb.pub, 1, n, log);
    if (got != n) {
        fprintf(stderr, "bench: read %zu of %zu entries\n", got, n);
        return 1;
    }
    sm_signed *run = calloc(BATCH, sizeof *run);
    t0 = s_now();
    for (size_t i = 0; i < n; i += BATCH) {
        if ((i / BATCH) % RUNS_PER_COMMIT == 0)
            s_check(sm_ledger_begin(a), "begin");
        size_t k = n - i < BATCH ? n - i : BATCH;
        for (size_t j = 0; j < k; j++) {
            run[j].bytes = log[i + j].bytes;
            run[j].len = log[i + j].len;
            memcpy(run[j].sig, log[i + j].sig, SM_SIG_BYTES);
        }
        sm_ingest_result res;
        s_check(sm_ledger_ingest(a, run, k, NOW + 1000000, &res), "ingest");
        if (res.accepted != k) {
            fprintf(stderr, "bench: ingest accepted %zu of %zu\n", res.accepted, k);
            return 1;
        }
        if ((i / BATCH) % RUNS_PER_COMMIT == RUNS_PER_COMMIT - 1 || i + BATCH >= n)
            s_check(sm_ledger_commit(a), "commit");
    }
    double ingest_s = s_now() - t0;
    double ingest_rate = n / ingest_s;
    size_t vn = n < 50000 ? n : 50000;
    t0 = s_now();
    for (size_t i = 0; i < vn; i++)
        s_check(sm_entry_verify(log[i].bytes, log[i].len, log[i].sig, &idb.pub), "verify");
    double verify_rate = vn / (s_now() - t0);
    double per_entry_rate = 1.0 / (1.0 / ingest_rate + 1.0 / verify_rate);
    printf("%-44s %12.0f entries/s  (target >= 300000; runs of %d, %d runs per durable commit)\n",
           "ingest, links + one signature per run", ingest_rate, BATCH, RUNS_PER_COMMIT);
    printf("%-44s %12.0f entries/s  (same ingest plus one Ed25519 verify per entry,\n"
           "%-44s %12s             verify measured at %.0f/s over %zu entries)\n",
           "  vs per-entry signature verification", per_entry_rate, "", "", verify_rate, vn);

    /* 3. reindex and disk use */
    t0 = s_now();
    s_check(sm_ledger_reindex(a), "reindex");
    double reindex_s = s_now() - t0;
    printf("%-44s %12.2f s for %zu entries  (target < 5 s for 1,000,000)\n",
           "reindex", reindex_s, n + 2);
    uint64_t bytes = s_du(dir, "a");
    printf("%-44s %12.0f bytes/entry  (log + state, data.mdb blocks / entries)\n",
           "disk per sale entry", (double) bytes / (double) n);

    sm_id bad;
    uint64_t seq, checked = 0;
    t0 = s_now();
    s_check(sm_ledger_verify(a, &bad, &seq, &checked), "verify store");
    printf("%-44s %12.0f entries/s  (every chain link and signature)\n",
           "stallmesh verify", checked / (s_now() - t0));

    s_digest_cost(dir);

    tu_free(log, n);
    free(log);
    free(run);
    sm_ledger_destroy(&a);
    sm_ledger_destroy(&b);
    tu_rmrf(dir);
    free(dir);
    return 0;
}
