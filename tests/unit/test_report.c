/*  Property tests of the report aggregates (src/report.c): random market
    days (sales of one to three lines with random sources, payments and
    prices, returns, a revocation, a fork, clocks skewed by hours and
    spanning Europe/London's 2026-10-25 change) are replayed into replicas
    in random orders; the aggregates each replica kept as entries applied
    must equal a brute-force recomputation from its log, by total, stall,
    item, source, payment, hour and day, with voided and quarantined
    entries counted apart; reindex must give the same; the sales and
    returns rows must sum to the same.  Each seed is reported on failure.   */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "testutil.h"
#include "tz.h"

#define NODES   4              /* organiser + three stalls */
#define SKUS    4
#define STEPS   260
#define SEEDS   24
/* 2026-10-24T20:00:00Z: the steps run across London's autumn change. */
#define BASE_MS 1792872000000ULL
#define S_END   (900LL * 1000000000)   /* far in the future, on a slot */

static const char *const s_skus[SKUS] = { "tee", "mug", "pin", "jam" };

typedef struct {
    uint64_t seq[128];
    size_t n;
} s_seqs;

static uint64_t s_seed;
static int64_t s_voided_seen, s_quarantined_seen, s_returns_seen; /* the workload reached them */

static void
s_eq(const sm_rep_totals *a, const sm_rep_totals *b, const char *what)
{
    if (memcmp(a, b, sizeof *a) != 0)
        fail_msg("seed %llu: %s differs: kept %lld/%lld/%lld/%lld/%lld, log %lld/%lld/%lld/%lld/%lld",
                 (unsigned long long) s_seed, what, (long long) a->sales, (long long) a->units,
                 (long long) a->gross, (long long) a->returns, (long long) a->returned_units,
                 (long long) b->sales, (long long) b->units, (long long) b->gross,
                 (long long) b->returns, (long long) b->returned_units);
}

/* ---- the brute force: everything from the log ------------------------------- */

typedef struct {
    int64_t start;             /* hour start or day number */
    sm_rep_totals t;
} s_bucket;

typedef struct {
    const sm_tz *tz;
    const sm_id *ids;
    sm_rep_totals totals, voided, quarantined;
    sm_rep_totals stall[NODES], item[SKUS], source[4], payment[5];
    s_bucket hours[2048], days[256];
    size_t hour_count, day_count;
    /* entries as read */
    sm_entry *e, *sale;
    sm_ledger *l;
} s_brute;

static s_bucket *
s_bucket_for(s_bucket *arr, size_t *n, int64_t start)
{
    for (size_t i = 0; i < *n; i++)
        if (arr[i].start == start)
            return &arr[i];
    assert_true(*n < 2048);
    memset(&arr[*n], 0, sizeof arr[*n]);
    arr[*n].start = start;
    return &arr[(*n)++];
}

static int
s_sku_index(const char *sku)
{
    for (int i = 0; i < SKUS; i++)
        if (strcmp(sku, s_skus[i]) == 0)
            return i;
    fail_msg("unknown sku %s", sku);
    return 0;
}

static void
s_add(sm_rep_totals *a, const sm_rep_totals *d)
{
    a->sales += d->sales;
    a->units += d->units;
    a->gross += d->gross;
    a->returns += d->returns;
    a->returned_units += d->returned_units;
}

static int
s_copy_entry(const sm_signed *s, uint64_t seq, void *arg)
{
    (void) seq;
    assert_int_equal(sm_entry_decode(s->bytes, s->len, arg), 0);
    return 1;
}

static void
s_read_entry(sm_ledger *l, const sm_id *origin, uint64_t seq, sm_entry *out)
{
    memset(out, 0, sizeof *out);
    assert_int_equal(sm_ledger_read(l, origin, seq, 1, s_copy_entry, out), 0);
    assert_int_equal(out->seq, seq);
}

/*  Count entry e of stall `si` into the buckets ("where": 0 counted, 1
    voided, 2 quarantined).                                                   */
static void
s_brute_entry(s_brute *b, int si, int where)
{
    const sm_entry *e = b->e;
    if (e->body.kind != SM_KIND_SALE && e->body.kind != SM_KIND_RETURN)
        return;
    sm_rep_totals all = { 0 };
    int source, payment;
    sm_rep_totals per_line[SM_SALE_LINES_MAX];
    int line_sku[SM_SALE_LINES_MAX];
    uint32_t lines;
    if (e->body.kind == SM_KIND_SALE) {
        all.sales = 1;
        source = e->body.u.sale.source;
        payment = e->body.u.sale.payment;
        lines = e->body.u.sale.line_count;
        for (uint32_t i = 0; i < lines; i++) {
            const sm_line *l = &e->body.u.sale.lines[i];
            per_line[i] = (sm_rep_totals) { .sales = 1, .units = l->qty,
                                            .gross = (int64_t) l->qty * l->price };
            line_sku[i] = s_sku_index(l->sku);
            all.units += l->qty;
            all.gross += (int64_t) l->qty * l->price;
        }
    } else {
        s_read_entry(b->l, &e->origin, e->body.u.ret.sale_seq, b->sale);
        source = b->sale->body.u.sale.source;
        payment = b->sale->body.u.sale.payment;
        lines = e->body.u.ret.line_count;
        for (uint32_t i = 0; i < lines; i++) {
            const sm_line *l = &e->body.u.ret.lines[i];
            int64_t price = -1;
            for (uint32_t j = 0; j < b->sale->body.u.sale.line_count; j++)
                if (strcmp(b->sale->body.u.sale.lines[j].sku, l->sku) == 0)
                    price = b->sale->body.u.sale.lines[j].price;
            assert_true(price >= 0);
            per_line[i] = (sm_rep_totals) { .returned_units = l->qty,
                                            .returns = (int64_t) l->qty * price };
            line_sku[i] = s_sku_index(l->sku);
            all.returned_units += l->qty;
            all.returns += (int64_t) l->qty * price;
        }
    }
    if (where == 1) {
        s_add(&b->voided, &all);
        return;
    }
    if (where == 2) {
        s_add(&b->quarantined, &all);
        return;
    }
    s_add(&b->totals, &all);
    s_add(&b->stall[si], &all);
    s_add(&b->source[source - 1], &all);
    s_add(&b->payment[payment - 1], &all);
    for (uint32_t i = 0; i < lines; i++)
        s_add(&b->item[line_sku[i]], &per_line[i]);
    int64_t t = (int64_t) (SM_HLC_MS(e->hlc) / 1000);
    int64_t local = t + sm_tz_offset(b->tz, t);
    int64_t lmod = ((local % 3600) + 3600) % 3600;
    s_add(&s_bucket_for(b->hours, &b->hour_count, t - lmod)->t, &all);
    int64_t day = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    s_add(&s_bucket_for(b->days, &b->day_count, day)->t, &all);
}

typedef struct {
    const sm_id *origin;
    uint64_t min;              /* its first forked seq; 0 = none */
} s_fork_ctx;

static int
s_fork_min(const sm_id *origin, uint64_t seq, void *arg)
{
    s_fork_ctx *c = arg;
    if (memcmp(origin->b, c->origin->b, SM_KEY_BYTES) == 0 && (c->min == 0 || seq < c->min))
        c->min = seq;
    return 0;
}

static void
s_recompute(s_brute *b, sm_ledger *l, const sm_id *ids, int revoked, uint64_t revoke_upto)
{
    b->l = l;
    b->ids = ids;
    for (int si = 0; si < NODES; si++) {
        sm_head h;
        assert_int_equal(sm_ledger_head(l, &ids[si], &h), 0);
        s_fork_ctx fc = { &ids[si], 0 };
        assert_int_equal(sm_ledger_forks_each(l, s_fork_min, &fc), 0);
        uint64_t fork = fc.min;
        for (uint64_t seq = 1; seq <= h.seq; seq++) {
            s_read_entry(l, &ids[si], seq, b->e);
            int where;
            if (seq <= h.applied)
                where = 0;
            else if (si == revoked && seq > revoke_upto && (fork == 0 || seq < fork))
                where = 1;
            else if (fork && seq >= fork)
                where = 2;
            else
                continue;              /* waiting: neither counted nor void */
            s_brute_entry(b, si, where);
        }
    }
}

/* ---- kept == brute ------------------------------------------------------------ */

static void
s_compare(sm_ledger *l, const sm_id *ids, const sm_tz *tz, int revoked, uint64_t revoke_upto,
          const char *when)
{
    s_brute *b = calloc(1, sizeof *b);
    b->tz = tz;
    b->e = malloc(sizeof *b->e);
    b->sale = malloc(sizeof *b->sale);
    s_recompute(b, l, ids, revoked, revoke_upto);

    sm_report r;
    sm_report_query q = { .from_s = 0, .to_s = S_END, .tz = tz,
                          .by = SM_REP_BY_STALL | SM_REP_BY_ITEM | SM_REP_BY_HOUR
                              | SM_REP_BY_DAY | SM_REP_BY_SOURCE | SM_REP_BY_PAYMENT };
    assert_int_equal(sm_report_run(l, &q, &r), 0);
    char what[96];
    snprintf(what, sizeof what, "%s: totals", when);
    s_eq(&r.totals, &b->totals, what);
    snprintf(what, sizeof what, "%s: voided", when);
    s_eq(&r.voided, &b->voided, what);
    snprintf(what, sizeof what, "%s: quarantined", when);
    s_eq(&r.quarantined, &b->quarantined, what);
    for (int i = 0; i < 4; i++)
        s_eq(&r.source[i], &b->source[i], "source");
    for (int i = 0; i < 5; i++)
        s_eq(&r.payment[i], &b->payment[i], "payment");
    for (int si = 0; si < NODES; si++) {
        sm_rep_totals kept = { 0 };
        for (size_t k = 0; k < r.stall_count; k++)
            if (memcmp(r.stalls[k].stall.b, ids[si].b, SM_KEY_BYTES) == 0)
                kept = r.stalls[k].t;
        s_eq(&kept, &b->stall[si], "stall");
    }
    for (int s = 0; s < SKUS; s++) {
        sm_rep_totals kept = { 0 };
        for (size_t k = 0; k < r.item_count; k++)
            if (strcmp(r.items[k].sku, s_skus[s]) == 0)
                kept = r.items[k].t;
        s_eq(&kept, &b->item[s], "item");
    }
    assert_int_equal(r.hour_count, b->hour_count);
    for (size_t k = 0; k < r.hour_count; k++) {
        s_bucket *bb = s_bucket_for(b->hours, &b->hour_count, r.hours[k].start_s);
        s_eq(&r.hours[k].t, &bb->t, "hour");
        if (k)
            assert_true(r.hours[k].start_s > r.hours[k - 1].start_s);
    }
    assert_int_equal(r.day_count, b->day_count);
    for (size_t k = 0; k < r.day_count; k++)
        s_eq(&r.days[k].t, &s_bucket_for(b->days, &b->day_count, r.days[k].day)->t, "day");

    /* The rows of the exports sum to the same. */
    int err = 0;
    sm_rep_rows *rows = sm_rep_rows_open(l, SM_REP_ROWS_SALES, 0, S_END, NULL, &err);
    assert_non_null(rows);
    sm_rep_row row;
    int64_t gross = 0, units = 0;
    while (sm_rep_rows_next(rows, &row) == 0) {
        gross += (int64_t) row.qty * row.price;
        units += row.qty;
    }
    sm_rep_rows_close(&rows);
    assert_int_equal(gross, b->totals.gross);
    assert_int_equal(units, b->totals.units);
    rows = sm_rep_rows_open(l, SM_REP_ROWS_RETURNS, 0, S_END, NULL, &err);
    assert_non_null(rows);
    int64_t returns = 0;
    while (sm_rep_rows_next(rows, &row) == 0)
        returns += (int64_t) row.qty * row.price;
    sm_rep_rows_close(&rows);
    assert_int_equal(returns, b->totals.returns);
    s_voided_seen += b->voided.sales + b->voided.returned_units;
    s_quarantined_seen += b->quarantined.sales + b->quarantined.units;
    s_returns_seen += b->totals.returns;
    sm_report_free(&r);
    free(b->e);
    free(b->sale);
    free(b);
}

/* ---- the workload -------------------------------------------------------------- */

static sm_body
s_random_sale(uint64_t *rng)
{
    sm_body b = tu_sale(s_skus[0], 1, 100, NULL);
    uint32_t n = 1 + (uint32_t) tu_below(rng, 3);
    int first = (int) tu_below(rng, SKUS);
    b.u.sale.line_count = n;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(b.u.sale.lines[i].sku, sizeof b.u.sale.lines[i].sku, "%s",
                 s_skus[(first + (int) i) % SKUS]);
        b.u.sale.lines[i].qty = 1 + (uint32_t) tu_below(rng, 3);
        b.u.sale.lines[i].price = (int64_t) (50 + tu_below(rng, 2000));
    }
    b.u.sale.source = (uint8_t) (1 + tu_below(rng, 4));
    b.u.sale.payment = (uint8_t) (1 + tu_below(rng, 5));
    return b;
}

/* Random days, replayed in random orders, reindexed: kept == recomputed. */
static void
test_kept_equals_log(void **state)
{
    (void) state;
    int err = 0;
    sm_tz *tz = sm_tz_open("Europe/London", &err);
    assert_non_null(tz);
    for (s_seed = 1; s_seed <= SEEDS; s_seed++) {
        uint64_t rng = s_seed * 0x9e3779b97f4a7c15ULL + 7;
        char *dir = tu_tempdir();
        sm_identity ids[NODES];
        sm_id pubs[NODES];
        sm_ledger *n[NODES];
        for (int i = 0; i < NODES; i++) {
            char name[16];
            snprintf(name, sizeof name, "n%d", i);
            tu_identity(&ids[i], (uint8_t) (40 + i));
            pubs[i] = ids[i].pub;
            n[i] = tu_open(dir, name);
            sm_ledger_set_identity(n[i], &ids[i]);
        }
        assert_int_equal(sm_ledger_create_market(n[0], "Report", "GBP", BASE_MS), 0);
        for (int i = 1; i < NODES; i++) {
            sm_body ad = tu_admit(&ids[i].pub, "stall", SM_ROLE_STALL);
            assert_int_equal(sm_ledger_append(n[0], &ad, BASE_MS, NULL), 0);
        }
        for (int s = 0; s < SKUS; s++) {
            sm_body it = tu_item(s_skus[s], s_skus[s], 100);
            assert_int_equal(sm_ledger_append(n[0], &it, BASE_MS, NULL), 0);
        }
        for (int i = 1; i < NODES; i++) {
            tu_join(n[i], n[0]);
            tu_sync(n[0], n[i], BASE_MS);
        }
        /* Clocks skewed by up to +-3 h a node. */
        int64_t skew[NODES];
        for (int i = 0; i < NODES; i++)
            skew[i] = (int64_t) tu_below(&rng, 6 * 3600 * 1000ULL) - 3 * 3600 * 1000LL;
        uint64_t now = BASE_MS;
        s_seqs sales[NODES];
        memset(sales, 0, sizeof sales);
        /* The fork: a second copy of stall 3's identity, diverging later. */
        sm_ledger *twin = tu_open(dir, "twin");
        sm_ledger_set_identity(twin, &ids[3]);
        tu_join(twin, n[0]);
        tu_sync(n[0], twin, now);
        uint64_t twin_from = 0;
        int revoked = 2;
        uint64_t revoke_upto = 0;
        for (int step = 0; step < STEPS; step++) {
            now += tu_below(&rng, 120000);     /* up to 2 min a step: ~4 h in all */
            int i = 1 + (int) tu_below(&rng, NODES - 1);
            uint64_t t = (uint64_t) ((int64_t) now + skew[i]);
            if (step == STEPS / 3) {
                /* The twin takes stall 3's log so far and sells on its own. */
                tu_sync(n[3], twin, t);
                sm_head h;
                assert_int_equal(sm_ledger_head(twin, &ids[3].pub, &h), 0);
                twin_from = h.seq + 1;
                for (int k = 0; k < 3; k++) {
                    sm_body tb = tu_add("tee", 3);
                    assert_int_equal(sm_ledger_append(twin, &tb, t + 1000 * (uint64_t) k, NULL), 0);
                }
                sm_body ts = tu_sale("tee", 2, 999, NULL);
                assert_int_equal(sm_ledger_append(twin, &ts, t + 5000, NULL), 0);
            }
            if (step == STEPS / 2) {
                /* The organiser revokes stall 2 from half of what it has seen. */
                tu_sync(n[2], n[0], t);
                sm_head h;
                assert_int_equal(sm_ledger_head(n[0], &ids[2].pub, &h), 0);
                revoke_upto = h.seq / 2;
                sm_body rv = tu_revoke(&ids[2].pub, revoke_upto);
                assert_int_equal(sm_ledger_append(n[0], &rv, t, NULL), 0);
            }
            uint64_t op = tu_below(&rng, 100), seq = 0;
            sm_body b;
            if (op < 15) {
                b = tu_add(s_skus[tu_below(&rng, SKUS)], 5 + (uint32_t) tu_below(&rng, 10));
            } else if (op < 70) {
                b = s_random_sale(&rng);
            } else if (op < 85) {
                if (sales[i].n == 0)
                    continue;
                uint64_t ss = sales[i].seq[tu_below(&rng, sales[i].n)];
                b = tu_return(ss, s_skus[tu_below(&rng, SKUS)], 1);
            } else {
                int j = (int) tu_below(&rng, NODES);
                tu_sync(n[i], n[j], t);
                tu_sync(n[j], n[i], t);
                continue;
            }
            int rc = sm_ledger_append(n[i], &b, t, &seq);
            if (rc == 0 && b.kind == SM_KIND_SALE && sales[i].n < 128)
                sales[i].seq[sales[i].n++] = seq;
            if (rc != 0 && rc != SM_ENOSTOCK && rc != SM_EOVERRETURN && rc != SM_EREVOKED)
                fail_msg("seed %llu step %d: %s", (unsigned long long) s_seed, step,
                         sm_strerror(rc));
        }
        for (int round = 0; round < 2; round++)
            for (int i = 0; i < NODES; i++)
                for (int j = 0; j < NODES; j++)
                    if (i != j)
                        tu_sync(n[i], n[j], now + 4 * 3600 * 1000ULL);

        /* The twin's divergent entries reach the organiser: a fork. */
        tu_copy c[8];
        size_t got = tu_read(twin, &ids[3].pub, twin_from, 8, c);
        assert_true(got >= 1);
        sm_signed run[8];
        for (size_t k = 0; k < got; k++) {
            run[k] = (sm_signed) { c[k].bytes, c[k].len, { 0 } };
            memcpy(run[k].sig, c[k].sig, SM_SIG_BYTES);
        }
        sm_ingest_result res;
        int frc = sm_ledger_ingest(n[0], run, got, now + 4 * 3600 * 1000ULL, &res);
        sm_head h3;
        assert_int_equal(sm_ledger_head(n[0], &ids[3].pub, &h3), 0);
        if (h3.seq >= twin_from)
            assert_int_equal(frc, SM_EFORK);
        tu_free(c, got);

        s_compare(n[0], pubs, tz, revoked, revoke_upto, "organiser");
        s_compare(n[1], pubs, tz, revoked, revoke_upto, "stall 1");
        /* A fresh replica fed in another order. */
        sm_ledger *rep = tu_open(dir, "rep");
        tu_join(rep, n[0]);
        for (int i = NODES - 1; i >= 0; i--)
            tu_sync(n[i], rep, now + 4 * 3600 * 1000ULL);
        s_compare(rep, pubs, tz, revoked, revoke_upto, "replica");
        assert_int_equal(sm_ledger_reindex(n[0]), 0);
        s_compare(n[0], pubs, tz, revoked, revoke_upto, "organiser after reindex");
        sm_ledger_destroy(&rep);
        sm_ledger_destroy(&twin);
        for (int i = 0; i < NODES; i++)
            sm_ledger_destroy(&n[i]);
        tu_rmrf(dir);
        free(dir);
    }
    sm_tz_destroy(&tz);
    /* The workloads voided, quarantined and returned something. */
    assert_true(s_voided_seen > 0);
    assert_true(s_quarantined_seen > 0);
    assert_true(s_returns_seen > 0);
}

/* A day cut in Europe/London on 2026-10-25 has 25 hours of slots, and the
   repeated 01:00 hour is two hours with different offsets. */
static void
test_dst_day(void **state)
{
    (void) state;
    int err = 0;
    sm_tz *tz = sm_tz_open("Europe/London", &err);
    char *dir = tu_tempdir();
    sm_identity id;
    tu_identity(&id, 77);
    sm_ledger *l = tu_open(dir, "o");
    sm_ledger_set_identity(l, &id);
    uint64_t t0 = 1792872000000ULL;            /* 2026-10-24T20:00Z */
    assert_int_equal(sm_ledger_create_market(l, "DST", "GBP", t0), 0);
    sm_body it = tu_item("tee", "Tee", 500);
    assert_int_equal(sm_ledger_append(l, &it, t0, NULL), 0);
    sm_body add = tu_add("tee", 100);
    assert_int_equal(sm_ledger_append(l, &add, t0, NULL), 0);
    /* One sale every 30 minutes from 2026-10-24T22:45Z to 2026-10-26T00:45Z. */
    uint64_t start = 1792881900000ULL;
    for (int k = 0; k < 53; k++) {
        sm_body s = tu_sale("tee", 1, 500, NULL);
        assert_int_equal(sm_ledger_append(l, &s, start + (uint64_t) k * 1800000, NULL), 0);
    }
    int64_t day = sm_days_from_civil(2026, 10, 25);
    sm_report r;
    sm_report_query q = { .from_s = sm_tz_local_to_utc(tz, day * 86400),
                          .to_s = sm_tz_local_to_utc(tz, (day + 1) * 86400), .tz = tz,
                          .by = SM_REP_BY_HOUR | SM_REP_BY_DAY };
    assert_int_equal(sm_report_run(l, &q, &r), 0);
    assert_int_equal(r.totals.sales, 50);      /* 25 hours, two sales each */
    assert_int_equal(r.hour_count, 25);
    assert_int_equal(r.day_count, 1);
    assert_int_equal(r.days[0].day, day);
    /* Hours 2 and 3 are both 01:00 local: +01:00, then +00:00. */
    assert_int_equal(r.hours[1].offset_s, 3600);
    assert_int_equal(r.hours[2].offset_s, 0);
    assert_int_equal(r.hours[2].start_s - r.hours[1].start_s, 3600);
    for (size_t k = 0; k < r.hour_count; k++)
        assert_int_equal(r.hours[k].t.sales, 2);
    sm_report_free(&r);
    sm_ledger_destroy(&l);
    tu_rmrf(dir);
    free(dir);
    sm_tz_destroy(&tz);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dst_day),
        cmocka_unit_test(test_kept_equals_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
