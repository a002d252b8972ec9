/*  The report invariant (issue #10), checked after healing: the
    organiser's market report, read from the aggregates its ledger kept as
    entries applied (src/report.c), equals one computed here from the sales
    it holds: every applied sale's lines (qty x unit price) and what was
    returned of each (returned x that line's price), by stall, source and
    payment, over all time.  Every acknowledged sale the organiser holds is
    among them (check.c checks that each is held, with its lines), so the
    report counts every acknowledged sale once, and returns at the price of
    the line they return.  A return counted twice, a sale counted at the
    wrong stall, source or payment, or an aggregate left behind by a rebuild
    (revocations and forks rebuild the state) fails the run.                */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "stallmesh/error.h"

#define S_END_S (900LL * 1000000000)   /* far in the future, on a 15-minute slot */

typedef struct {
    sm_rep_totals all, source[4], payment[5];
    sm_rep_totals stall[SIM_NODES_MAX];
    const sim_world *w;
    int origin;                /* node index of the sales being walked */
    uint64_t last_seq;
    size_t count;
} s_expect;

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
s_sale_cb(const sm_sale *sale, void *arg)
{
    s_expect *x = arg;
    sm_rep_totals d = { .sales = 1 };
    for (uint32_t l = 0; l < sale->line_count; l++) {
        d.units += sale->lines[l].qty;
        d.gross += (int64_t) sale->lines[l].qty * sale->lines[l].price;
        d.returned_units += sale->lines[l].returned;
        d.returns += (int64_t) sale->lines[l].returned * sale->lines[l].price;
    }
    s_add(&x->all, &d);
    if (sale->source >= 1 && sale->source <= 4)
        s_add(&x->source[sale->source - 1], &d);
    if (sale->payment >= 1 && sale->payment <= 5)
        s_add(&x->payment[sale->payment - 1], &d);
    if (x->origin >= 0)
        s_add(&x->stall[x->origin], &d);
    x->last_seq = sale->seq;
    x->count++;
    return 0;
}

static bool
s_same(const sm_rep_totals *a, const sm_rep_totals *b)
{
    return a->sales == b->sales && a->units == b->units && a->gross == b->gross
        && a->returns == b->returns && a->returned_units == b->returned_units;
}

static void
s_mismatch(sim_world *w, const char *what, const sm_rep_totals *kept, const sm_rep_totals *sales)
{
    sim_fail(w, "report: the organiser's %s differs from its sales: kept sales %lld units %lld "
             "gross %lld returns %lld returned %lld; from the sales %lld %lld %lld %lld %lld", what,
             (long long) kept->sales, (long long) kept->units, (long long) kept->gross,
             (long long) kept->returns, (long long) kept->returned_units,
             (long long) sales->sales, (long long) sales->units, (long long) sales->gross,
             (long long) sales->returns, (long long) sales->returned_units);
}

void
sim_check_report(sim_world *w)
{
    int org = -1;
    for (int i = 0; i < w->n; i++)
        if (memcmp(w->node[i].id.pub.b, w->market.b, SM_KEY_BYTES) == 0)
            org = i;
    if (org < 0 || org == w->hostile || !w->node[org].ledger || w->failed)
        return;
    sm_ledger *l = w->node[org].ledger;
    s_expect *x = calloc(1, sizeof *x);
    if (!x)
        return;
    x->w = w;
    /* Every origin's applied sales, from the state's sales records. */
    for (int i = 0; i < w->n; i++) {
        x->origin = i;
        x->last_seq = 0;
        for (int page = 0; page < 100000; page++) {
            size_t before = x->count;
            int rc = sm_ledger_sales_each(l, &w->node[i].id.pub, x->last_seq + 1, 1000,
                                          s_sale_cb, x);
            if (rc != 0) {
                sim_fail(w, "report: reading node %d's sales at the organiser: %s", i,
                         sm_strerror(rc));
                free(x);
                return;
            }
            if (x->count == before)
                break;
        }
    }
    sm_tz *tz = NULL;
    int err = 0;
    if (!(tz = sm_tz_open("UTC", &err))) {
        free(x);
        return;
    }
    sm_report r;
    sm_report_query q = { .from_s = 0, .to_s = S_END_S, .tz = tz,
                          .by = SM_REP_BY_STALL | SM_REP_BY_SOURCE | SM_REP_BY_PAYMENT };
    int rc = sm_report_run(l, &q, &r);
    if (rc != 0) {
        sim_fail(w, "report: the organiser's report fails: %s", sm_strerror(rc));
    } else {
        if (!s_same(&r.totals, &x->all))
            s_mismatch(w, "market total", &r.totals, &x->all);
        for (int k = 0; k < 4 && !w->failed; k++)
            if (!s_same(&r.source[k], &x->source[k]))
                s_mismatch(w, sm_source_name(k + 1), &r.source[k], &x->source[k]);
        for (int k = 0; k < 5 && !w->failed; k++)
            if (!s_same(&r.payment[k], &x->payment[k]))
                s_mismatch(w, sm_payment_name(k + 1), &r.payment[k], &x->payment[k]);
        for (int i = 0; i < w->n && !w->failed; i++) {
            static const sm_rep_totals zero;
            const sm_rep_totals *kept = &zero;
            for (size_t k = 0; k < r.stall_count; k++)
                if (memcmp(r.stalls[k].stall.b, w->node[i].id.pub.b, SM_KEY_BYTES) == 0)
                    kept = &r.stalls[k].t;
            char what[32];
            snprintf(what, sizeof what, "stall %d", i);
            if (!s_same(kept, &x->stall[i]))
                s_mismatch(w, what, kept, &x->stall[i]);
        }
        sm_report_free(&r);
    }
    sm_tz_destroy(&tz);
    free(x);
}
