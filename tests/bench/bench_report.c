/*  Report benchmarks (issue #10).  Prints each figure with how it was
    measured:

    1. local appends of sales with the report aggregates on and off
       (interleaved batches of 1000 into two stores of the same shape, so
       that load on the machine hits both alike; commits without fsync, so
       the figure isolates the CPU and page cost the aggregates add);
    2. ingest of 20 stalls' logs (runs of 4096) into an organiser's store
       with the aggregates on and off, interleaved run by run;
    3. GET /api/report's query for a day of SALES sales across 20 stalls
       (by stall, item, hour, source and payment): median and max of 21;
    4. GET /api/export/sales.csv for that day through the API's stream
       producer (every byte formatted, 64 KiB chunks): rows/s, and the
       process's anonymous memory (RssAnon: heap) before and after.  The
       store's file pages the export reads are mapped, not allocated: they
       show in RssFile, which the kernel may drop at will, and are printed
       apart.

    Usage: bench_report [SALES] (default 1000000).  Targets: report <= 50
    ms, sales.csv >= 300,000 rows/s with RSS growth <= 5 MB, appends and
    ingest with the aggregates within 10% of without.  Works in a
    temporary directory under $TMPDIR (default /tmp) and removes it.       */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_report.h"
#include "report.h"
#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

#define STALLS 20
#define SKUS   20
#define BATCH  1000
#define RUN    4096
/* 2026-10-24T00:00:00Z: the day sold. */
#define DAY_MS 1792800000000ULL

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
        fprintf(stderr, "bench: %s: %s\n", what, sm_strerror(rc));
        exit(1);
    }
}

static sm_ledger *
s_open(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sm_ledger_opts o = { .map_bytes = 16ULL << 30, .no_sync = true };
    int err = 0;
    sm_ledger *l = sm_ledger_open(path, &o, &err);
    s_check(err, "open");
    return l;
}

/* kB of a /proc/self/status field. */
static long
s_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/*  CPU seconds of this process: on a machine shared with other work the
    wall clock mostly measures waiting for a core, so each figure is also
    given per CPU second.                                                    */
static double
s_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int
s_cmp_double(const void *x, const void *y)
{
    double a = *(const double *) x, b = *(const double *) y;
    return a < b ? -1 : a > b;
}

static sm_body
s_sale(uint64_t k)
{
    static const char *const skus[SKUS] = {
        "s00", "s01", "s02", "s03", "s04", "s05", "s06", "s07", "s08", "s09",
        "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19" };
    sm_body b = tu_sale(skus[k % SKUS], 1, 250 + (int64_t) (k % 7) * 50, NULL);
    b.u.sale.source = (uint8_t) (1 + k % 4);
    b.u.sale.payment = (uint8_t) (1 + k % 5);
    return b;
}

/* Append `n` sales to l (aggregates `on`), in batches, times spread over the day. */
static double s_append_cpu;     /* CPU seconds of the last batch */

static double
s_append_batch(sm_ledger *l, uint64_t first, size_t n, uint64_t per_day, bool on)
{
    sm__report_set_enabled(on);
    double c0 = s_cpu();
    double t0 = s_now();
    s_check(sm_ledger_begin(l), "begin");
    for (size_t j = 0; j < n; j++) {
        uint64_t k = first + j;
        sm_body b = s_sale(k);
        s_check(sm_ledger_append(l, &b, DAY_MS + k * (86400000ULL / per_day), NULL), "append");
    }
    s_check(sm_ledger_commit(l), "commit");
    double t = s_now() - t0;
    s_append_cpu = s_cpu() - c0;
    sm__report_set_enabled(true);
    return t;
}

int
main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t total = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    if (total < STALLS * BATCH)
        total = STALLS * BATCH;
    size_t per_stall = total / STALLS / BATCH * BATCH;
    total = per_stall * STALLS;
    char *dir = tu_tempdir();
    printf("stallmesh report benchmark: %zu sales in one day across %d stalls, %d skus\n\n",
           total, STALLS, SKUS);

    /* The market: an organiser, 20 stalls with 20 skus stocked. */
    sm_identity org_id, ids[STALLS];
    tu_identity(&org_id, 1);
    sm_ledger *org = s_open(dir, "org");
    sm_ledger_set_identity(org, &org_id);
    s_check(sm_ledger_create_market(org, "Bench market", "GBP", DAY_MS - 3600000), "market");
    for (int s = 0; s < SKUS; s++) {
        char sku[8];
        snprintf(sku, sizeof sku, "s%02d", s);
        sm_body it = tu_item(sku, sku, 300);
        s_check(sm_ledger_append(org, &it, DAY_MS - 3600000, NULL), "item");
    }
    for (int i = 0; i < STALLS; i++) {
        tu_identity(&ids[i], (uint8_t) (10 + i));
        sm_body ad = tu_admit(&ids[i].pub, "stall", SM_ROLE_STALL);
        s_check(sm_ledger_append(org, &ad, DAY_MS - 3600000, NULL), "admit");
    }
    sm_ledger *stall[STALLS], *twin;
    for (int i = 0; i < STALLS; i++) {
        char name[16];
        snprintf(name, sizeof name, "stall%d", i);
        stall[i] = s_open(dir, name);
        sm_ledger_set_identity(stall[i], &ids[i]);
        tu_join(stall[i], org);
        tu_sync(org, stall[i], DAY_MS);
    }
    twin = s_open(dir, "twin");                 /* stall 0's shape, aggregates off */
    sm_ledger_set_identity(twin, &ids[0]);
    tu_join(twin, org);
    tu_sync(org, twin, DAY_MS);
    uint32_t stock = (uint32_t) (per_stall / SKUS + 10);
    for (int i = 0; i <= STALLS; i++) {
        sm_ledger *l = i < STALLS ? stall[i] : twin;
        for (int s = 0; s < SKUS; s++) {
            char sku[8];
            snprintf(sku, sizeof sku, "s%02d", s);
            sm_body add = tu_add(sku, stock);
            s_check(sm_ledger_append(l, &add, DAY_MS, NULL), "stock");
        }
    }

    /* 1. appends, on (stall 0) and off (its twin), interleaved batches. */
    double on_s = 0, off_s = 0, on_c = 0, off_c = 0;
    for (size_t k = 0; k < per_stall; k += BATCH) {
        on_s += s_append_batch(stall[0], k, BATCH, per_stall, true);
        on_c += s_append_cpu;
        off_s += s_append_batch(twin, k, BATCH, per_stall, false);
        off_c += s_append_cpu;
    }
    printf("%-46s %10.0f sales/s on, %.0f/s off: %+.1f%% wall\n"
           "%-46s %10.0f sales/CPU-s on, %.0f off: %+.1f%% CPU  (target within 10%%;\n"
           "%-46s %10s interleaved batches of %d, no fsync)\n",
           "local append, aggregates on vs off", per_stall / on_s, per_stall / off_s,
           100.0 * (off_s - on_s) / on_s, "", per_stall / on_c, per_stall / off_c,
           100.0 * (off_c - on_c) / on_c, "", "", BATCH);
    for (int i = 1; i < STALLS; i++)
        for (size_t k = 0; k < per_stall; k += BATCH)
            s_append_batch(stall[i], k, BATCH, per_stall, true);

    /* 2. ingest into the organiser (on) and a twin organiser (off). */
    sm_ledger *org_off = s_open(dir, "org_off");
    tu_join(org_off, org);
    tu_sync(org, org_off, DAY_MS);
    tu_copy *copies = calloc(RUN, sizeof *copies);
    sm_signed *run = calloc(RUN, sizeof *run);
    double in_on = 0, in_off = 0, inc_on = 0, inc_off = 0;
    size_t ingested = 0;
    for (int i = 0; i < STALLS; i++) {
        for (uint64_t from = 1;; from += RUN) {
            size_t n = tu_read(stall[i], &ids[i].pub, from, RUN, copies);
            if (n == 0)
                break;
            for (size_t j = 0; j < n; j++) {
                run[j] = (sm_signed) { copies[j].bytes, copies[j].len, { 0 } };
                memcpy(run[j].sig, copies[j].sig, SM_SIG_BYTES);
            }
            sm_ingest_result res;
            sm__report_set_enabled(false);
            double t0 = s_now(), c0 = s_cpu();
            s_check(sm_ledger_ingest(org_off, run, n, DAY_MS + 86400000ULL, &res), "ingest off");
            in_off += s_now() - t0;
            inc_off += s_cpu() - c0;
            sm__report_set_enabled(getenv("BENCH_AB") == NULL);
            t0 = s_now();
            c0 = s_cpu();
            s_check(sm_ledger_ingest(org, run, n, DAY_MS + 86400000ULL, &res), "ingest on");
            in_on += s_now() - t0;
            inc_on += s_cpu() - c0;
            ingested += n;
            tu_free(copies, n);
            if (n < RUN)
                break;
        }
    }
    printf("%-46s %10.0f entries/s on, %.0f/s off: %+.1f%% wall\n"
           "%-46s %10.0f entries/CPU-s on, %.0f off: %+.1f%% CPU  (target within 10%%;\n"
           "%-46s %10s runs of %d interleaved, a commit each, no fsync)\n",
           "ingest, aggregates on vs off", ingested / in_on, ingested / in_off,
           100.0 * (in_off - in_on) / in_on, "", ingested / inc_on, ingested / inc_off,
           100.0 * (inc_off - inc_on) / inc_on, "", "", RUN);

    /* 3. the day's report. */
    int err = 0;
    sm_tz *tz = sm_tz_open("UTC", &err);
    s_check(err, "tz");
    sm_report_query q = { .from_s = (int64_t) (DAY_MS / 1000), .to_s = (int64_t) (DAY_MS / 1000) + 86400,
                          .tz = tz, .by = SM_REP_BY_STALL | SM_REP_BY_ITEM | SM_REP_BY_HOUR
                                        | SM_REP_BY_SOURCE | SM_REP_BY_PAYMENT };
    double times[21], cpus[21];
    sm_report r;
    for (int k = 0; k < 21; k++) {
        double t0 = s_now(), c0 = s_cpu();
        s_check(sm_report_run(org, &q, &r), "report");
        times[k] = s_now() - t0;
        cpus[k] = s_cpu() - c0;
        if ((size_t) r.totals.sales != total || r.stall_count != STALLS) {
            fprintf(stderr, "bench: the report counts %lld sales at %zu stalls\n",
                    (long long) r.totals.sales, r.stall_count);
            return 1;
        }
        sm_report_free(&r);
    }
    qsort(times, 21, sizeof times[0], s_cmp_double);
    qsort(cpus, 21, sizeof cpus[0], s_cmp_double);
    printf("%-46s %10.2f ms median, %.2f ms max wall, %.2f ms median CPU\n"
           "%-46s %10s (target <= 50 ms; 21 runs, by stall, item, hour, source, payment)\n",
           "report: a day of sales across 20 stalls", times[10] * 1e3, times[20] * 1e3,
           cpus[10] * 1e3, "", "");

    /* 4. sales.csv through the API's producer. */
    sm_market m;
    s_check(sm_ledger_market(org, &m), "market");
    sm_api_report_ctx ctx = { .ledger = org, .node = m.market, .tz_default = "UTC" };
    sm_http_req req = { .method = SM_HTTP_GET, .path = "/api/export/sales.csv",
                        .query = "from=2026-10-24&tz=UTC", .authorized = true, .client = "bench",
                        .body = "" };
    sm_http_resp resp;
    memset(&resp, 0, sizeof resp);
    long anon0 = s_status_kb("RssAnon"), file0 = s_status_kb("RssFile");
    double t0 = s_now(), c0 = s_cpu();
    sm_api_report_handle(&ctx, &req, DAY_MS + 86400000ULL, &resp);
    if (resp.status != 200 || !resp.stream) {
        fprintf(stderr, "bench: sales.csv answered %d\n", resp.status);
        return 1;
    }
    static char chunk[65536];
    size_t rows = 0, bytes = 0;
    long anon_max = anon0;
    for (int more = 0; more == 0;) {
        size_t len = 0;
        more = resp.stream->next(resp.stream, chunk, sizeof chunk, &len);
        if (more < 0) {
            fprintf(stderr, "bench: sales.csv stream: %s\n", sm_strerror(more));
            return 1;
        }
        for (size_t i = 0; i < len; i++)
            rows += chunk[i] == '\n';
        bytes += len;
        if ((rows & 0xffff) < 300) {
            long a = s_status_kb("RssAnon");
            if (a > anon_max)
                anon_max = a;
        }
    }
    double csv_s = s_now() - t0, csv_c = s_cpu() - c0;
    long anon1 = s_status_kb("RssAnon"), file1 = s_status_kb("RssFile");
    if (anon1 > anon_max)
        anon_max = anon1;
    sm_http_resp_clear(&resp);
    rows -= 1;                               /* the header */
    printf("%-46s %10.0f rows/s wall, %.0f rows/CPU-s  (target >= 300000;\n"
           "%-46s %10s %zu rows, %.1f MB of CSV)\n",
           "sales.csv, one day, streamed", rows / csv_s, rows / csv_c, "", "", rows, bytes / 1e6);
    printf("%-46s %10.2f MB  (target <= 5 MB; RssAnon %ld -> max %ld kB;\n"
           "%-46s %10s mapped store pages read, RssFile, %+.1f MB)\n",
           "sales.csv, heap growth over the export", (anon_max - anon0) / 1024.0, anon0,
           anon_max, "", "", (file1 - file0) / 1024.0);
    if (rows != total) {
        fprintf(stderr, "bench: sales.csv has %zu rows for %zu sales\n", rows, total);
        return 1;
    }

    sm_tz_destroy(&tz);
    free(copies);
    free(run);
    for (int i = 0; i < STALLS; i++)
        sm_ledger_destroy(&stall[i]);
    sm_ledger_destroy(&twin);
    sm_ledger_destroy(&org);
    sm_ledger_destroy(&org_off);
    tu_rmrf(dir);
    free(dir);
    return 0;
}
