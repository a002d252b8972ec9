/*  The invariants (sim.h), checked during and after each run.

    During the run, at every tick of a node:
    - no (sku, location) has negative units or a negative held count;
    - units moved out equal units moved in, per sku (a move is one entry);
    - the engine's queue to any peer stays within SM_MESH_QUEUE_BYTES_MAX
      and the process's heap within SIM_HEAP_BYTES_MAX, whatever the
      hostile member sends;
    and now and then the model check below on one node, and that the
    digest it keeps as it writes is a scan's of its state (sim_check_digest;
    planted bug 15 forgets a deleted record's hash).  At every ask a
    node is handed (sim_check_asked, as it is delivered):
    - a forwarded hold is appended at most once: the holds the stalls
      append for an asker's HOLD_ASKs never outnumber the holds its policy
      forwarded (duplicates and replays the network makes do not count);
    - units asks, a short sale's or rebalancing's, never take the giver
      below its floor: after the stock.move it appends, it holds at least
      its units_floor of that sku.
    At every write a node's policy answered with success: the drops'
    invariants (sim_check_drop_write) and the shoppers' limits
    (sim_check_hold_limits).
    Units are conserved: moved out = moved in (above) and the model check's
    market units = added - removed.

    The model check recomputes a node's whole state from its log alone —
    every origin's entries up to what the ledger says it applied, each
    applied once, by a second and much simpler implementation of the CRDTs
    (README: log and state) — and compares every stock counter, open hold,
    sale line and catalog register with the ledger's.  So market units =
    added - removed, and nothing was applied twice or skipped.

    After healing (liveness: every honest node's digest equal within
    SIM_HEAL_MS_MAX), the final checks:
    - every stored chain and signature verifies on every honest node, and no
      stored entry is further in the future than the ledger allows: no
      forged entry was ever applied;
    - every acknowledged sale is in every honest node's state with the same
      lines, unless it was lost by design (its node was restored to a copy
      older than it, and no other node had it) or voided by a fork of its
      origin;
    - forks are detected and reported: where two honest nodes' logs of an
      origin differ, every honest node holds fork evidence for that origin
      at or below that seq; and no evidence names an origin that never
      equivocated (only a restored node or the hostile member do);
    - expired holds are released: no honest origin's hold is still open
      anywhere more than a few seconds after it expired on its own clock;
    - a node still fetching its own log back after healing holds all that
      any store holds of it (else it waits for --allow-fresh, by design);
    - the organiser's market report equals its sales (report_check.c).
    Elsewhere: node.c checks that a wiped node appends nothing while its own
    log is unconfirmed, world.c that the honest nodes' traffic never storms
    and that pushes and relays alone carry a sale down a line of nodes.     */
#include "sim.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drop.h"
#include "drop_view.h"
#include "reserve.h"
#include "snapshot.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

static const char *
s_name(const sim_world *w, const sm_id *id, char *buf, size_t cap)
{
    for (int i = 0; i < w->n; i++)
        if (memcmp(w->node[i].id.pub.b, id->b, SM_KEY_BYTES) == 0) {
            snprintf(buf, cap, "node %d", i);
            return buf;
        }
    snprintf(buf, cap, "origin %02x%02x%02x%02x", id->b[0], id->b[1], id->b[2], id->b[3]);
    return buf;
}

static int
s_index(const sim_world *w, const sm_id *id)
{
    for (int i = 0; i < w->n; i++)
        if (memcmp(w->node[i].id.pub.b, id->b, SM_KEY_BYTES) == 0)
            return i;
    return -1;
}

/* ---- during the run ------------------------------------------------------- */

typedef struct {
    sim_world *w;
    sim_node *nd;
    char sku[SM_SKU_BYTES_MAX + 1];
    int64_t moved_in, moved_out;
    bool bad;
} s_stock_ctx;

static void
s_sku_close(s_stock_ctx *c)
{
    if (c->sku[0] && c->moved_in != c->moved_out && !c->bad) {
        sim_fail(c->w, "node %d: sku %s: %lld units moved out but %lld moved in",
                 c->nd->index, c->sku, (long long) c->moved_out, (long long) c->moved_in);
        c->bad = true;
    }
    c->moved_in = c->moved_out = 0;
}

static int
s_stock_cb(const char *sku, const sm_id *loc, const sm_units *u, void *arg)
{
    s_stock_ctx *c = arg;
    if (strcmp(sku, c->sku) != 0) {
        s_sku_close(c);
        snprintf(c->sku, sizeof c->sku, "%s", sku);
    }
    c->moved_in += u->moved_in;
    c->moved_out += u->moved_out;
    if ((u->units < 0 || u->held < 0) && !c->bad) {
        char who[64];
        sim_fail(c->w, "node %d: sku %s at %s has %lld units (%lld held): below zero",
                 c->nd->index, sku, s_name(c->w, loc, who, sizeof who), (long long) u->units,
                 (long long) u->held);
        c->bad = true;
    }
    return c->bad;
}

typedef struct {
    sim_world *w;
    sim_node *nd;
} s_peer_ctx;

static int
s_peer_cb(const sm_gossip_peer *p, void *arg)
{
    s_peer_ctx *c = arg;
    if (p->queued_bytes > SM_MESH_QUEUE_BYTES_MAX) {
        char who[64];
        sim_fail(c->w, "memory: node %d queues %zu bytes for %s (bound %u)", c->nd->index,
                 p->queued_bytes, s_name(c->w, &p->node, who, sizeof who),
                 SM_MESH_QUEUE_BYTES_MAX);
        return 1;
    }
    return 0;
}

void
sim_check_memory(sim_world *w)
{
    struct mallinfo2 mi = mallinfo2();
    size_t used = mi.uordblks + mi.hblkhd;
    if (used > SIM_HEAP_BYTES_MAX)
        sim_fail(w, "memory: the process holds %zu MiB (bound %llu MiB)", used >> 20,
                 (unsigned long long) (SIM_HEAP_BYTES_MAX >> 20));
}

void
sim_check_node(sim_world *w, sim_node *nd)
{
    w->checks_run++;
    if (!nd->running || nd->hostile)
        return;
    s_stock_ctx c;
    memset(&c, 0, sizeof c);
    c.w = w;
    c.nd = nd;
    if (sm_ledger_stock_each(nd->ledger, s_stock_cb, &c) != 0)
        sim_fail(w, "node %d: cannot read its stock", nd->index);
    s_sku_close(&c);
    s_peer_ctx pc = { w, nd };
    sm_gossip_peers_each(nd->gossip, s_peer_cb, &pc);
    if (w->checks_run % 64 == 0)
        sim_check_memory(w);
    if (w->checks_run % 97 == 0)
        sim_check_model(w, nd);
    if (w->checks_run % 31 == 0)
        sim_check_digest(w, nd);
    if (w->checks_run % 29 == 0)
        sim_check_stock_page(w, nd);
    if (w->checks_run % 23 == 0)
        sim_check_drop_walks(w, nd);
}

void
sim_check_drop_walks(sim_world *w, sim_node *nd)
{
    if (!nd->walks)
        return;
    sm_drop *all = NULL;
    size_t n = 0;
    int rc = sm_drop_view_list(nd->ledger, &all, &n);
    for (size_t i = 0; rc == 0 && i < n && !w->failed; i++) {
        uint64_t kept = 0, whole = 0;
        if ((rc = sm_drop_taken(nd->walks, nd->ledger, &all[i], &kept)) != 0
            || (rc = sm_drop_ledger(nd->ledger, &all[i], NULL, NULL, NULL, NULL, &whole, NULL,
                                    NULL)) != 0)
            break;
        if (kept != whole)
            sim_fail(w, "node %d: drop %llu of node %d: its kept walk says %llu units taken, "
                     "a walk of the whole log %llu", nd->index, (unsigned long long) all[i].seq,
                     s_index(w, &all[i].origin), (unsigned long long) kept,
                     (unsigned long long) whole);
    }
    if (rc != 0)
        sim_fail(w, "node %d: cannot walk its drops: %s", nd->index, sm_strerror(rc));
    free(all);
}

void
sim_check_stock_page(sim_world *w, sim_node *nd)
{
    if (!nd->stock)
        return;
    uint64_t now = sim_node_now(w, nd);
    char *delta = NULL;
    size_t dlen = 0;
    int rc = sm_snapshot_ensure(nd->stock, now);
    if (rc == 0)
        rc = sm_snapshot_refresh(nd->stock, now, &delta, &dlen);
    free(delta);
    sm_snapshot *whole = rc >= 0 ? sm_snapshot_new(nd->ledger, &nd->id.pub) : NULL;
    if (rc < 0 || !whole || (rc = sm_snapshot_ensure(whole, now)) < 0) {
        sim_fail(w, "node %d: cannot build its stock page: %s", nd->index,
                 sm_strerror(rc < 0 ? rc : SM_ENOMEM));
        sm_snapshot_destroy(&whole);
        return;
    }
    /* Both as of the same version; the items as read from it (the page
       kept need not have been rebuilt now: from "items" on). */
    void *o1 = NULL, *o2 = NULL;
    size_t n1, n2;
    const char *kept = sm_snapshot_body(nd->stock, &n1, &o1);
    const char *fresh = sm_snapshot_body(whole, &n2, &o2);
    const char *i1 = strstr(kept, "\"items\":"), *i2 = strstr(fresh, "\"items\":");
    if (sm_snapshot_version(nd->stock) != sm_snapshot_version(whole) || !i1 || !i2
        || strcmp(i1, i2) != 0) {
        size_t at = 0;
        while (i1 && i2 && i1[at] && i1[at] == i2[at])
            at++;
        sim_fail(w, "node %d: its stock page rebuilt from what changed (version %llu) is not "
                 "a whole build's (version %llu): from \"%.60s\" against \"%.60s\"",
                 nd->index, (unsigned long long) sm_snapshot_version(nd->stock),
                 (unsigned long long) sm_snapshot_version(whole), i1 ? i1 + at : "",
                 i2 ? i2 + at : "");
    }
    sm_snapshot_body_unref(&o1);
    sm_snapshot_body_unref(&o2);
    sm_snapshot_destroy(&whole);
}

void
sim_check_digest(sim_world *w, sim_node *nd)
{
    sm_hash kept, scan;
    uint64_t vk = 0, vs = 0;
    int rc = sm_ledger_digest_kept(nd->ledger, &kept, &vk);
    if (rc != 0) {
        sim_fail(w, "node %d: the digest's sum is not kept: %s", nd->index, sm_strerror(rc));
        return;
    }
    if ((rc = sm_ledger_digest_scan(nd->ledger, &scan, &vs)) != 0) {
        sim_fail(w, "node %d: cannot read its state's digest: %s", nd->index, sm_strerror(rc));
        return;
    }
    if (vk != vs || memcmp(kept.b, scan.b, SM_HASH_BYTES) != 0) {
        char a[2 * SM_HASH_BYTES + 1], b[2 * SM_HASH_BYTES + 1];
        sm_hex_encode(kept.b, SM_HASH_BYTES, a);
        sm_hex_encode(scan.b, SM_HASH_BYTES, b);
        sim_fail(w, "node %d: the digest kept as it wrote, %.16s at version %llu, is not its "
                 "state's, %.16s at version %llu", nd->index, a, (unsigned long long) vk, b,
                 (unsigned long long) vs);
    }
}

/* ---- the model: the state recomputed from the log ---------------------- */

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    sm_id loc;
    int64_t added, moved_in, moved_out, sold, returned, written_off, held;
    bool seen;                 /* the ledger has the record */
} s_mstock;

typedef struct {
    sm_id origin;
    uint64_t seq;
    uint32_t nlines;           /* a reservation: held whole, ended whole */
    char sku[SM_HOLD_LINES_MAX][SM_SKU_BYTES_MAX + 1];
    uint32_t qty[SM_HOLD_LINES_MAX];
    bool open;
    uint32_t sales;            /* sales that consumed it: at most one */
} s_mhold;

typedef struct {
    sm_id origin;
    uint64_t seq;
    uint32_t lines;
    char sku[SM_SALE_LINES_MAX][SM_SKU_BYTES_MAX + 1];
    uint32_t qty[SM_SALE_LINES_MAX], returned[SM_SALE_LINES_MAX];
} s_msale;

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    uint64_t hlc;
    sm_id origin;
    int64_t price;
    char name[SM_NAME_BYTES_MAX + 1];
    bool seen;
} s_mitem;

typedef struct {
    sim_world *w;
    sim_node *nd;
    s_mstock *stock;
    size_t nstock, capstock;
    s_mhold *holds;
    size_t nholds, capholds;
    s_msale *sales;
    size_t nsales, capsales;
    s_mitem items[64];
    size_t nitems;
    sm_head heads[SIM_NODES_MAX + 8];
    size_t nheads;
    /* Drops: each (origin, sku)'s gate, as its stall's state keeps it: the
       latest start, a raffle's shut until its draw (proto/log.md 4.1). */
    struct { sm_id origin; char sku[SM_SKU_BYTES_MAX + 1]; uint64_t gate_ms; } gates[64];
    size_t ngates;
    struct { sm_id origin; uint64_t seq; char sku[SM_SKU_BYTES_MAX + 1]; } raffles[64];
    size_t nraffles;
    sm_entry e;
    bool bad;
} s_model;

static void *
s_grow(void *arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return arr;
    size_t c = *cap ? 2 * *cap : 64;
    void *p = realloc(arr, c * size);
    if (!p)
        abort();
    *cap = c;
    return p;
}

static s_mstock *
s_mstock_at(s_model *m, const char *sku, const sm_id *loc)
{
    for (size_t i = 0; i < m->nstock; i++)
        if (strcmp(m->stock[i].sku, sku) == 0
            && memcmp(m->stock[i].loc.b, loc->b, SM_KEY_BYTES) == 0)
            return &m->stock[i];
    m->stock = s_grow(m->stock, &m->capstock, m->nstock, sizeof *m->stock);
    s_mstock *r = &m->stock[m->nstock++];
    memset(r, 0, sizeof *r);
    snprintf(r->sku, sizeof r->sku, "%s", sku);
    r->loc = *loc;
    return r;
}

static s_mhold *
s_mhold_at(s_model *m, const sm_id *origin, uint64_t seq)
{
    for (size_t i = 0; i < m->nholds; i++)
        if (m->holds[i].seq == seq && memcmp(m->holds[i].origin.b, origin->b, SM_KEY_BYTES) == 0)
            return &m->holds[i];
    return NULL;
}

static s_msale *
s_msale_at(s_model *m, const sm_id *origin, uint64_t seq)
{
    for (size_t i = m->nsales; i-- > 0;)
        if (m->sales[i].seq == seq && memcmp(m->sales[i].origin.b, origin->b, SM_KEY_BYTES) == 0)
            return &m->sales[i];
    return NULL;
}

static void
s_model_fail(s_model *m, const char *what)
{
    if (!m->bad)
        sim_fail(m->w, "node %d: its state is not what its log says: %s", m->nd->index, what);
    m->bad = true;
}

#define S_UNTIL_DRAWN ((1ULL << 48) - 1)

static uint64_t *
s_gate_at(s_model *m, const sm_id *o, const char *sku)
{
    for (size_t i = 0; i < m->ngates; i++)
        if (memcmp(m->gates[i].origin.b, o->b, SM_KEY_BYTES) == 0
            && strcmp(m->gates[i].sku, sku) == 0)
            return &m->gates[i].gate_ms;
    if (m->ngates == sizeof m->gates / sizeof m->gates[0])
        return NULL;
    m->gates[m->ngates].origin = *o;
    snprintf(m->gates[m->ngates].sku, sizeof m->gates[m->ngates].sku, "%s", sku);
    m->gates[m->ngates].gate_ms = 0;
    return &m->gates[m->ngates++].gate_ms;
}

/*  Invariant: nothing of a short-form drop's sku is sold, held, moved or
    written off by its stall before the drop starts, by the stall's clock:
    an honest stall's decrement has hlc ms >= the gate.  (A long form's:
    sim_check_drop_write.)                                                 */
static void
s_gate_check(s_model *m, const sm_entry *e, const char *sku)
{
    for (int i = 0; i < m->w->n; i++)
        if (memcmp(m->w->node[i].id.pub.b, e->origin.b, SM_KEY_BYTES) == 0
            && m->w->node[i].hostile)
            return;                    /* the hostile member writes what it likes */
    uint64_t *g = s_gate_at(m, &e->origin, sku);
    if (g && SM_HLC_MS(e->hlc) < *g) {
        char why[200], who[64];
        snprintf(why, sizeof why, "%s took %s at entry %llu before its drop %s (entry at %llu ms, "
                 "gate %llu ms)", s_name(m->w, &e->origin, who, sizeof who), sku,
                 (unsigned long long) e->seq, *g == S_UNTIL_DRAWN ? "was drawn" : "started",
                 (unsigned long long) SM_HLC_MS(e->hlc), (unsigned long long) *g);
        s_model_fail(m, why);
    }
}

/*  Apply one entry to the model: the CRDT rules (README: log and state),
    written again as plainly as they can be. */
static void
s_model_apply(s_model *m, const sm_entry *e)
{
    const sm_body *b = &e->body;
    const sm_id *o = &e->origin;
    char why[160];
    switch (b->kind) {
    case SM_KIND_ITEM: {
        s_mitem *it = NULL;
        for (size_t i = 0; i < m->nitems && !it; i++)
            if (strcmp(m->items[i].sku, b->u.item.sku) == 0)
                it = &m->items[i];
        if (!it) {
            if (m->nitems == sizeof m->items / sizeof m->items[0])
                return;
            it = &m->items[m->nitems++];
            memset(it, 0, sizeof *it);
            snprintf(it->sku, sizeof it->sku, "%s", b->u.item.sku);
        } else if (it->hlc > e->hlc
                   || (it->hlc == e->hlc && memcmp(it->origin.b, o->b, SM_KEY_BYTES) >= 0)) {
            return;
        }
        it->hlc = e->hlc;
        it->origin = *o;
        it->price = b->u.item.price;
        snprintf(it->name, sizeof it->name, "%s", b->u.item.name);
        break;
    }
    case SM_KIND_STOCK_ADD:
        s_mstock_at(m, b->u.stock_add.sku, o)->added += b->u.stock_add.qty;
        break;
    case SM_KIND_DROP: {
        /* The short form adds its units and shuts the sku there until its
           start; a long form holds back only its qty (sim_check_drop_write). */
        if (!b->u.drop.mode) {
            s_mstock_at(m, b->u.drop.sku, o)->added += b->u.drop.qty;
            uint64_t *g = s_gate_at(m, o, b->u.drop.sku);
            if (g && b->u.drop.starts_ms > *g)
                *g = b->u.drop.starts_ms;
        }
        if (b->u.drop.mode == SM_DROP_RAFFLE
            && m->nraffles < sizeof m->raffles / sizeof m->raffles[0]) {
            m->raffles[m->nraffles].origin = *o;
            m->raffles[m->nraffles].seq = e->seq;
            snprintf(m->raffles[m->nraffles].sku, sizeof m->raffles[m->nraffles].sku, "%s",
                     b->u.drop.sku);
            m->nraffles++;
        }
        break;
    }
    case SM_KIND_RAFFLE_DRAW:
        for (size_t i = 0; i < m->nraffles; i++)
            if (memcmp(m->raffles[i].origin.b, o->b, SM_KEY_BYTES) == 0
                && m->raffles[i].seq == b->u.raffle_draw.drop_seq) {
                uint64_t *g = s_gate_at(m, o, m->raffles[i].sku);
                if (g && *g == S_UNTIL_DRAWN)
                    *g = SM_HLC_MS(e->hlc);
            }
        break;
    case SM_KIND_STOCK_MOVE:
        s_gate_check(m, e, b->u.stock_move.sku);
        s_mstock_at(m, b->u.stock_move.sku, o)->moved_out += b->u.stock_move.qty;
        s_mstock_at(m, b->u.stock_move.sku, &b->u.stock_move.to)->moved_in += b->u.stock_move.qty;
        break;
    case SM_KIND_SALE: {
        s_mhold *h = b->u.sale.hold_seq ? s_mhold_at(m, o, b->u.sale.hold_seq) : NULL;
        if (b->u.sale.hold_seq && (!h || !h->open)) {
            snprintf(why, sizeof why, "sale %llu applied with hold %llu, not open",
                     (unsigned long long) e->seq, (unsigned long long) b->u.sale.hold_seq);
            s_model_fail(m, why);
            return;
        }
        /* Each line of the hold is in the sale (never half sold). */
        int64_t held[SM_SALE_LINES_MAX] = { 0 };
        for (uint32_t k = 0; h && k < h->nlines; k++) {
            int at = -1;
            for (uint32_t i = 0; i < b->u.sale.line_count; i++)
                if (strcmp(b->u.sale.lines[i].sku, h->sku[k]) == 0)
                    at = (int) i;
            if (at < 0) {
                snprintf(why, sizeof why, "sale %llu applied with hold %llu but without its line %s",
                         (unsigned long long) e->seq, (unsigned long long) b->u.sale.hold_seq,
                         h->sku[k]);
                s_model_fail(m, why);
                return;
            }
            held[at] = h->qty[k];
        }
        for (uint32_t i = 0; i < b->u.sale.line_count; i++)
            s_gate_check(m, e, b->u.sale.lines[i].sku);
        m->sales = s_grow(m->sales, &m->capsales, m->nsales, sizeof *m->sales);
        s_msale *s = &m->sales[m->nsales++];
        memset(s, 0, sizeof *s);
        s->origin = *o;
        s->seq = e->seq;
        s->lines = b->u.sale.line_count;
        for (uint32_t i = 0; i < b->u.sale.line_count; i++) {
            const sm_line *l = &b->u.sale.lines[i];
            s_mstock *r = s_mstock_at(m, l->sku, o);
            r->sold += l->qty;
            r->held -= held[i];
            snprintf(s->sku[i], sizeof s->sku[i], "%s", l->sku);
            s->qty[i] = l->qty;
        }
        if (h) {
            h->open = false;
            if (++h->sales > 1) {
                snprintf(why, sizeof why, "hold %llu sold twice", (unsigned long long) h->seq);
                s_model_fail(m, why);
                return;
            }
        }
        break;
    }
    case SM_KIND_RETURN: {
        s_msale *s = s_msale_at(m, o, b->u.ret.sale_seq);
        if (!s) {
            snprintf(why, sizeof why, "return %llu applied to sale %llu it does not hold",
                     (unsigned long long) e->seq, (unsigned long long) b->u.ret.sale_seq);
            s_model_fail(m, why);
            return;
        }
        for (uint32_t i = 0; i < b->u.ret.line_count; i++) {
            const sm_line *l = &b->u.ret.lines[i];
            s_mstock_at(m, l->sku, o)->returned += l->qty;
            for (uint32_t k = s->lines; k-- > 0;)
                if (strcmp(s->sku[k], l->sku) == 0) {
                    s->returned[k] += l->qty;
                    break;
                }
        }
        break;
    }
    case SM_KIND_HOLD: {
        m->holds = s_grow(m->holds, &m->capholds, m->nholds, sizeof *m->holds);
        s_mhold *h = &m->holds[m->nholds++];
        memset(h, 0, sizeof *h);
        h->origin = *o;
        h->seq = e->seq;
        h->nlines = sm_hold_body_lines(b);
        for (uint32_t k = 0; k < h->nlines; k++) {
            const char *sku;
            sm_hold_body_line(b, k, &sku, &h->qty[k]);
            s_gate_check(m, e, sku);
            snprintf(h->sku[k], sizeof h->sku[k], "%s", sku);
            s_mstock_at(m, sku, o)->held += h->qty[k];
        }
        h->open = true;
        break;
    }
    case SM_KIND_RELEASE: {
        s_mhold *h = s_mhold_at(m, o, b->u.release.hold_seq);
        if (!h || !h->open) {
            snprintf(why, sizeof why, "release %llu of hold %llu, not open",
                     (unsigned long long) e->seq, (unsigned long long) b->u.release.hold_seq);
            s_model_fail(m, why);
            return;
        }
        for (uint32_t k = 0; k < h->nlines; k++)
            s_mstock_at(m, h->sku[k], o)->held -= h->qty[k];
        h->open = false;
        break;
    }
    case SM_KIND_ADJUST:
        if (b->u.adjust.delta > 0)
            s_mstock_at(m, b->u.adjust.sku, o)->added += b->u.adjust.delta;
        else {
            s_gate_check(m, e, b->u.adjust.sku);
            s_mstock_at(m, b->u.adjust.sku, o)->written_off += -b->u.adjust.delta;
        }
        break;
    default:
        break;                         /* roster entries act on membership only */
    }
}

/* ---- drops: at each answered write ------------------------------------------ */

typedef struct {
    const sm_id *stall;
    const char *sku;
    uint64_t now_ms;
    uint64_t held;             /* qty of the long-form drops not open yet */
    sm_drop live;              /* the first-come drop started latest */
    bool has_live;
} s_drops_at;

static int
s_drops_at_cb(const sm_drop *d, void *arg)
{
    s_drops_at *a = arg;
    if (memcmp(d->origin.b, a->stall->b, SM_KEY_BYTES) != 0 || strcmp(d->sku, a->sku) != 0)
        return 0;
    bool open = d->mode == SM_DROP_RAFFLE ? d->draw_seq != 0 : d->starts_ms <= a->now_ms;
    if (!open)
        a->held += d->qty;
    else if (d->mode == SM_DROP_FIRST_COME
             && (!a->has_live || d->starts_ms > a->live.starts_ms)) {
        a->live = *d;
        a->has_live = true;
    }
    return 0;
}

typedef struct { uint64_t seq; } s_upto;

static int
s_upto_cb(const sm_drop_take *t, void *arg)
{
    return t->seq >= ((s_upto *) arg)->seq;    /* counted up to this hold: stop */
}

/*  Invariants at each write a stall's policy answered with success:
    - a long-form drop's units stay at its stall until it opens (first-come:
      its start; raffle: its draw), by the stall's clock: after a decrement
      the stall holds at least the qty of its drops not open yet (the units
      beyond them sell);
    - a shopper's hold against a live first-come drop keeps within its caps:
      counted over the drop's ledger up to and including the hold (an
      independent walk of the log, not the policy's tallies), no device and
      no address holds more than per_shopper, and the drop has given no more
      than its qty.                                                         */
void
sim_check_drop_write(sim_world *w, sim_node *nd, const sm_body *b, uint64_t seq)
{
    const char *skus[SM_SALE_LINES_MAX];
    uint32_t n = 0;
    if (b->kind == SM_KIND_SALE)
        for (uint32_t i = 0; i < b->u.sale.line_count; i++)
            skus[n++] = b->u.sale.lines[i].sku;
    else if (b->kind == SM_KIND_HOLD)
        for (uint32_t i = 0; i < sm_hold_body_lines(b); i++) {
            uint32_t qty;
            sm_hold_body_line(b, i, &skus[n++], &qty);
        }
    else if (b->kind == SM_KIND_STOCK_MOVE)
        skus[n++] = b->u.stock_move.sku;
    else if (b->kind == SM_KIND_ADJUST && b->u.adjust.delta < 0)
        skus[n++] = b->u.adjust.sku;
    for (uint32_t i = 0; i < n; i++) {
        s_drops_at a;
        memset(&a, 0, sizeof a);
        a.stall = &nd->id.pub;
        a.sku = skus[i];
        a.now_ms = sim_node_now(w, nd);
        if (sm_drop_each(nd->ledger, s_drops_at_cb, &a) != 0)
            return;
        sm_units u;
        if (a.held && sm_ledger_units(nd->ledger, skus[i], &nd->id.pub, &u) == 0
            && u.units < (int64_t) a.held)
            sim_fail(w, "node %d: %s took a drop's units of %s before it opened (%lld left, "
                     "%llu held back)", nd->index, b->kind == SM_KIND_SALE ? "a sale" : "a write",
                     skus[i], (long long) u.units, (unsigned long long) a.held);
        if (b->kind != SM_KIND_HOLD || !a.has_live)
            continue;
        uint64_t taken = 0, dev = 0, cli = 0;
        s_upto up = { seq };
        if (sm_drop_ledger(nd->ledger, &a.live, b->u.hold.has_device ? b->u.hold.device : NULL,
                           b->u.hold.has_client ? b->u.hold.client : NULL, s_upto_cb, &up,
                           &taken, &dev, &cli) != 0)
            continue;
        if (dev > a.live.per_shopper || cli > a.live.per_shopper || taken > a.live.qty)
            sim_fail(w, "node %d: hold %llu against drop %llu of %s past its caps: a device "
                     "holds %llu, an address %llu (per_shopper %u); %llu taken of %u",
                     nd->index, (unsigned long long) seq, (unsigned long long) a.live.seq,
                     skus[i], (unsigned long long) dev, (unsigned long long) cli,
                     a.live.per_shopper, (unsigned long long) taken, a.live.qty);
    }
}

/*  Invariant at each hold a stall's policy appended with success: no
    device and no address holds more than the stall's [holds] per_device
    and per_address (SIM_HOLD_PER_DEVICE, SIM_HOLD_PER_ADDRESS) by its open
    holds not expired by the stall's clock, this one's lines included:
    counted by a walk of the open holds in its store (sm_reserve_usage, as
    the web thread counts before the batch), not the policy's tallies.  A
    whole batch is appended before any of it is answered, so the holds
    after this one in its batch count too, and they were checked as well. */
void
sim_check_hold_limits(sim_world *w, sim_node *nd, const sm_body *b, uint64_t seq)
{
    if (b->kind != SM_KIND_HOLD || (!b->u.hold.has_device && !b->u.hold.has_client))
        return;
    uint64_t dev = 0, cli = 0;
    if (sm_reserve_usage(nd->ledger, &nd->id.pub, b, sim_node_now(w, nd), &dev, &cli, NULL, 0,
                         NULL) != 0)
        return;
    if (dev > SIM_HOLD_PER_DEVICE || cli > SIM_HOLD_PER_ADDRESS)
        sim_fail(w, "node %d: hold %llu past a shopper's limits: its device holds %llu "
                 "(per_device %u), its address %llu (per_address %u)", nd->index,
                 (unsigned long long) seq, (unsigned long long) dev, SIM_HOLD_PER_DEVICE,
                 (unsigned long long) cli, SIM_HOLD_PER_ADDRESS);
}

static int
s_heads_cb(const sm_head *h, void *arg)
{
    s_model *m = arg;
    if (m->nheads < sizeof m->heads / sizeof m->heads[0])
        m->heads[m->nheads++] = *h;
    return 0;
}

typedef struct {
    s_model *m;
    uint64_t upto;
    uint64_t next;
} s_read_ctx;

static int
s_read_cb(const sm_signed *s, uint64_t seq, void *arg)
{
    s_read_ctx *c = arg;
    if (seq > c->upto)
        return 1;
    if (seq != c->next || sm_entry_decode(s->bytes, s->len, &c->m->e) != 0) {
        s_model_fail(c->m, "its log has a gap or an entry that does not decode");
        return 1;
    }
    c->next++;
    s_model_apply(c->m, &c->m->e);
    return 0;
}

static int
s_cmp_stock(const char *sku, const sm_id *loc, const sm_units *u, void *arg)
{
    s_model *m = arg;
    s_mstock *r = s_mstock_at(m, sku, loc);
    r->seen = true;
    if (u->added != r->added || u->moved_in != r->moved_in || u->moved_out != r->moved_out
        || u->sold != r->sold || u->returned != r->returned || u->written_off != r->written_off
        || u->held != r->held) {
        char who[64], why[400];
        snprintf(why, sizeof why,
                 "sku %s at %s: ledger added %lld in %lld out %lld sold %lld returned %lld "
                 "off %lld held %lld; log says %lld %lld %lld %lld %lld %lld %lld", sku,
                 s_name(m->w, loc, who, sizeof who), (long long) u->added,
                 (long long) u->moved_in, (long long) u->moved_out, (long long) u->sold,
                 (long long) u->returned, (long long) u->written_off, (long long) u->held,
                 (long long) r->added, (long long) r->moved_in, (long long) r->moved_out,
                 (long long) r->sold, (long long) r->returned, (long long) r->written_off,
                 (long long) r->held);
        s_model_fail(m, why);
        return 1;
    }
    return 0;
}

typedef struct {
    s_model *m;
    size_t count;
} s_hold_ctx;

static int
s_cmp_hold(const sm_hold *hold, void *arg)
{
    s_hold_ctx *c = arg;
    s_mhold *h = s_mhold_at(c->m, &hold->origin, hold->seq);
    c->count++;
    bool same = h && h->open && h->nlines == hold->line_count;
    for (uint32_t k = 0; same && k < h->nlines; k++)
        same = h->qty[k] == hold->lines[k].qty && strcmp(h->sku[k], hold->lines[k].sku) == 0;
    if (!same) {
        char why[128];
        snprintf(why, sizeof why, "hold %llu is open in the ledger, not in its log",
                 (unsigned long long) hold->seq);
        s_model_fail(c->m, why);
        return 1;
    }
    return 0;
}

typedef struct {
    s_model *m;
    size_t count;
} s_sale_ctx;

static int
s_cmp_sale(const sm_sale *sale, void *arg)
{
    s_sale_ctx *c = arg;
    c->count++;
    s_msale *s = s_msale_at(c->m, &sale->origin, sale->seq);
    bool same = s && s->lines == sale->line_count;
    for (uint32_t i = 0; same && i < s->lines; i++)
        same = strcmp(s->sku[i], sale->lines[i].sku) == 0 && s->qty[i] == sale->lines[i].qty
            && s->returned[i] == sale->lines[i].returned;
    if (!same) {
        char why[128];
        snprintf(why, sizeof why, "sale %llu differs from its log", (unsigned long long) sale->seq);
        s_model_fail(c->m, why);
        return 1;
    }
    return 0;
}

static int
s_cmp_item(const sm_item *item, void *arg)
{
    s_model *m = arg;
    for (size_t i = 0; i < m->nitems; i++)
        if (strcmp(m->items[i].sku, item->sku) == 0) {
            m->items[i].seen = true;
            if (m->items[i].hlc != item->hlc || m->items[i].price != item->price
                || strcmp(m->items[i].name, item->name) != 0)
                s_model_fail(m, "a catalog register is not its last write");
            return m->bad;
        }
    s_model_fail(m, "a catalog item its log never wrote");
    return 1;
}

void
sim_check_model(sim_world *w, sim_node *nd)
{
    if (!nd->running || nd->hostile || sim_damage_degraded(w, nd))
        return;                        /* a damaged log is not what the state came from */
    s_model *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    m->w = w;
    m->nd = nd;
    sm_ledger *l = nd->ledger;
    if (sm_ledger_heads(l, s_heads_cb, m) != 0) {
        s_model_fail(m, "cannot read its heads");
        goto done;
    }
    for (size_t i = 0; i < m->nheads && !m->bad; i++) {
        s_read_ctx c = { m, m->heads[i].applied, 1 };
        if (m->heads[i].applied == 0)
            continue;
        if (sm_ledger_read(l, &m->heads[i].origin, 1, (size_t) m->heads[i].applied, s_read_cb, &c) != 0
            || (!m->bad && c.next != m->heads[i].applied + 1))
            s_model_fail(m, "cannot read its applied log");
    }
    if (m->bad)
        goto done;
    sm_ledger_stock_each(l, s_cmp_stock, m);
    for (size_t i = 0; i < m->nstock && !m->bad; i++) {
        const s_mstock *r = &m->stock[i];
        if (!r->seen && (r->added || r->moved_in || r->moved_out || r->sold || r->returned
                         || r->written_off || r->held))
            s_model_fail(m, "a stock record its log has is missing from the ledger");
    }
    size_t open = 0;
    for (size_t i = 0; i < m->nholds; i++)
        open += m->holds[i].open;
    s_hold_ctx hc = { m, 0 };
    s_sale_ctx sc = { m, 0 };
    for (size_t i = 0; i < m->nheads && !m->bad; i++) {
        sm_ledger_holds_each(l, &m->heads[i].origin, s_cmp_hold, &hc);
        sm_ledger_sales_each(l, &m->heads[i].origin, 1, SIZE_MAX, s_cmp_sale, &sc);
    }
    if (!m->bad && hc.count != open)
        s_model_fail(m, "its open holds differ from its log's");
    if (!m->bad && sc.count != m->nsales)
        s_model_fail(m, "its sales differ in number from its log's");
    if (!m->bad)
        sm_ledger_items_each(l, s_cmp_item, m);
    for (size_t i = 0; i < m->nitems && !m->bad; i++)
        if (!m->items[i].seen)
            s_model_fail(m, "a catalog item of its log is missing");
done:
    free(m->stock);
    free(m->holds);
    free(m->sales);
    free(m);
}

/* ---- after healing -------------------------------------------------------- */

static bool
s_honest(const sim_world *w, int i)
{
    return i != w->hostile;
}

uint64_t
sim_fork_at(sim_node *nd, const sm_id *origin)
{
    uint64_t seq = 0;
    return sm_ledger_fork_at(nd->ledger, origin, &seq) == 0 ? seq : 0;
}

bool
sim_check_converged(sim_world *w, char *why, size_t cap)
{
    sm_hash first;
    int first_i = -1;
    for (int i = 0; i < w->n; i++) {
        sim_node *nd = &w->node[i];
        if (!s_honest(w, i))
            continue;
        if (!nd->running) {
            snprintf(why, cap, "node %d is not running", i);
            return false;
        }
        if (nd->nqueue || sim_node_pending(nd)) {
            snprintf(why, cap, "node %d has writes waiting", i);
            return false;
        }
        sm_hash d;
        if (sm_ledger_digest(nd->ledger, &d) != 0) {
            snprintf(why, cap, "node %d: no digest", i);
            return false;
        }
        if (first_i < 0) {
            first = d;
            first_i = i;
        } else if (memcmp(d.b, first.b, SM_HASH_BYTES) != 0) {
            int n = snprintf(why, cap, "the digests of node %d and node %d differ", first_i, i);
            /* Say where: the first origin whose heads differ. */
            for (int x = 0; x < w->n && n > 0 && (size_t) n < cap; x++) {
                sm_head a, b;
                if (sm_ledger_head(w->node[first_i].ledger, &w->node[x].id.pub, &a) != 0
                    || sm_ledger_head(nd->ledger, &w->node[x].id.pub, &b) != 0)
                    continue;
                if (a.seq != b.seq || a.applied != b.applied) {
                    snprintf(why + n, cap - (size_t) n, " (node %d's log: stored %llu applied %llu "
                             "at node %d, stored %llu applied %llu at node %d)", x,
                             (unsigned long long) a.seq, (unsigned long long) a.applied, first_i,
                             (unsigned long long) b.seq, (unsigned long long) b.applied, i);
                    break;
                }
            }
            return false;
        }
    }
    /* And the same logs: an origin not stopped by a fork or a revoke is
       stored to the same head everywhere (entries that wait for units do
       not show in the digest). */
    for (int x = 0; x < w->n && first_i >= 0; x++) {
        sm_head a;
        if (sm_ledger_head(w->node[first_i].ledger, &w->node[x].id.pub, &a) != 0)
            continue;
        for (int i = 0; i < w->n; i++) {
            sm_head b;
            if (!s_honest(w, i) || sm_ledger_head(w->node[i].ledger, &w->node[x].id.pub, &b) != 0)
                continue;
            if (a.cap == UINT64_MAX && b.cap == UINT64_MAX
                && (a.seq != b.seq || memcmp(a.link.b, b.link.b, SM_HASH_BYTES) != 0)) {
                snprintf(why, cap, "node %d's log is stored to %llu at node %d, to %llu at node %d",
                         x, (unsigned long long) a.seq, first_i, (unsigned long long) b.seq, i);
                return false;
            }
        }
    }
    return true;
}

/* ---- the own-log fetch ------------------------------------------------------ */

static uint64_t
s_own_head(sim_node *nd)
{
    sm_head h;
    return sm_ledger_head(nd->ledger, &nd->id.pub, &h) == 0 ? h.seq : 0;
}

void
sim_own_fetch_reset(sim_world *w, int i, int j)
{
    w->own_claim[i][j] = 0;
    memset(w->wants[i][j], 0, sizeof w->wants[i][j]);
}

void
sim_own_fetch_sent(sim_world *w, int i, int j, const uint8_t *bytes, size_t len)
{
    sim_node *nd = &w->node[i];
    if (len < 2 || bytes[1] != SM_MSG_WANT || !nd->running
        || sm_wire_decode(bytes, len, w->space, &w->msg) != 0)
        return;
    uint64_t now = sim_node_now(w, nd);
    struct sim_want *slot = &w->wants[i][j][0];
    for (size_t k = 0; k < sizeof w->wants[i][j] / sizeof w->wants[i][j][0]; k++) {
        struct sim_want *x = &w->wants[i][j][k];
        if (!x->used) {
            slot = x;
            break;
        }
        if (x->sent_at < slot->sent_at)
            slot = x;                  /* full: the oldest goes (it expires first) */
    }
    *slot = (struct sim_want) { w->msg.u.want.origin, w->msg.u.want.from, now,
                                w->msg.u.want.count, true };
    if (memcmp(w->msg.u.want.origin.b, nd->id.pub.b, SM_KEY_BYTES) == 0)
        w->own_want_at[i] = now;
}

void
sim_own_fetch_heads(sim_world *w, int i, int j, const uint8_t *bytes, size_t len)
{
    sim_node *nd = &w->node[j];
    if (len < 2 || !nd->running)
        return;
    if (bytes[1] == SM_MSG_HELLO) {
        w->own_claim[j][i] = 0;        /* it may start the session over */
        return;
    }
    if ((bytes[1] != SM_MSG_HEADS && bytes[1] != SM_MSG_ENTRIES)
        || sm_wire_decode(bytes, len, w->space, &w->msg) != 0)
        return;
    if (w->msg.type == SM_MSG_ENTRIES) {
        /* A run of its own log is progress; so is an answer to a WANT
           sent before its latest own one (which waits behind it on this
           FIFO connection: the engine counts its wait from here). */
        uint64_t now = sim_node_now(w, nd);
        const sm_id *o = &w->msg.u.entries.origin;
        uint64_t first = w->msg.u.entries.first_seq;
        bool progress = memcmp(o->b, nd->id.pub.b, SM_KEY_BYTES) == 0;
        for (size_t k = 0; k < sizeof w->wants[j][i] / sizeof w->wants[j][i][0]; k++) {
            struct sim_want *x = &w->wants[j][i][k];
            if (x->used && memcmp(x->origin.b, o->b, SM_KEY_BYTES) == 0
                && first >= x->from && first < x->from + x->count) {
                x->used = false;
                progress |= x->sent_at <= w->own_want_at[j];
            }
        }
        if (progress)
            w->own_want_at[j] = now;
        return;
    }
    uint64_t claim = 0;
    for (uint32_t k = 0; k < w->msg.u.heads.count; k++)
        if (memcmp(w->msg.u.heads.heads[k].origin.b, nd->id.pub.b, SM_KEY_BYTES) == 0)
            claim = w->msg.u.heads.heads[k].seq;
    uint64_t head = s_own_head(nd);
    if (claim > head && w->own_claim[j][i] <= head)
        w->own_claim_at[j][i] = sim_node_now(w, nd);
    w->own_claim[j][i] = claim;
}

void
sim_check_own_fetch(sim_world *w, sim_node *nd)
{
    int i = nd->index;
    if (!nd->running || nd->hostile || sim_node_own_ok(nd))
        return;
    sm_head h;
    if (sm_ledger_head(nd->ledger, &nd->id.pub, &h) != 0)
        return;
    uint64_t now = sim_node_now(w, nd);
    if (h.seq != w->own_head[i]) {
        w->own_head[i] = h.seq;
        w->own_head_at[i] = now;
    }
    /* Its own log forked or damaged here: runs of it may be refused, and
       WANTs wait for the peer's next HEADS.  Not in its own roster yet (a
       wiped store behind on the organiser's log): its log is fetched once
       the roster admits it, the window starts then. */
    sm_member m;
    if (h.seq == 0 && sm_ledger_member(nd->ledger, &nd->id.pub, &m) != 0) {
        w->own_head_at[i] = now;
        return;
    }
    if (h.cap != UINT64_MAX || sm_ledger_damage(nd->ledger, &nd->id.pub))
        return;
    /* A clock stepped back: the engine restarts its timers from now. */
    if (w->own_want_at[i] > now)
        w->own_want_at[i] = now;
    if (w->own_head_at[i] > now)
        w->own_head_at[i] = now;
    for (int j = 0; j < w->n; j++) {
        if (j == i || j == w->hostile || !w->sees_up[i][j] || w->own_claim[i][j] <= h.seq)
            continue;
        if (w->own_claim_at[i][j] > now)
            w->own_claim_at[i][j] = now;
        uint64_t since = w->own_want_at[i];
        if (w->own_head_at[i] > since)
            since = w->own_head_at[i];
        if (w->own_claim_at[i][j] > since)
            since = w->own_claim_at[i][j];
        if (now - since > SIM_OWN_FETCH_QUIET_MS) {
            sim_fail(w, "node %d, fetching its own log back (it holds %llu, node %d claims "
                     "%llu), sent no WANT of it for %llu ms (bound %u ms): a lost WANT holds "
                     "the fetch up until the gate appends over the entries (a fork)", i,
                     (unsigned long long) h.seq, j, (unsigned long long) w->own_claim[i][j],
                     (unsigned long long) (now - since), SIM_OWN_FETCH_QUIET_MS);
            return;
        }
    }
}

/* ---- an origin stuck behind a fork ---------------------------------------- */

typedef struct {
    const sm_id *to;
    char skus[SM_SALE_LINES_MAX][SM_SKU_BYTES_MAX + 1];
    uint32_t nskus;
    bool found;
    sm_entry e;
} s_void_ctx;

static int
s_void_cb(const sm_signed *s, uint64_t seq, void *arg)
{
    (void) seq;
    s_void_ctx *c = arg;
    if (sm_entry_decode(s->bytes, s->len, &c->e) != 0 || c->e.body.kind != SM_KIND_STOCK_MOVE
        || memcmp(c->e.body.u.stock_move.to.b, c->to->b, SM_KEY_BYTES) != 0)
        return 0;
    for (uint32_t k = 0; k < c->nskus; k++)
        if (strcmp(c->skus[k], c->e.body.u.stock_move.sku) == 0)
            c->found = true;
    return c->found;
}

typedef struct {
    sm_entry e;
    bool found;
} s_first_ctx;

static int
s_first_cb(const sm_signed *s, uint64_t seq, void *arg)
{
    (void) seq;
    s_first_ctx *c = arg;
    c->found = sm_entry_decode(s->bytes, s->len, &c->e) == 0;
    return 1;
}

/*  Which origins are stuck behind a fork at node nd: out[x] is true if
    origin x's first entry that waits (stored, not applied) needs units of a
    sku that were moved to x by an entry that will never apply: one a fork
    voided (past a forked origin's fork, in any honest node's copy of its
    log), or one of an origin stuck the same way (the cascade), or one no
    store holds any more (after a restore or a wipe: then x is short of the
    units at its location).  Such an
    entry never applies: proto/log.md stops a forked origin at the fork, moves
    included, and the bounded counter will not take x below zero.  The
    stall's acknowledged sales after it are then never in the market's
    state, and x can append nothing more (its own entries no longer all
    apply).  A consequence of the design, reported to the project (README
    "Simulator"), counted, and failed only under --strict.                 */
static void
s_stuck_set(sim_world *w, sim_node *nd, bool out[SIM_NODES_MAX])
{
    uint64_t dead_from[SIM_NODES_MAX];   /* entries from here on never apply */
    for (int x = 0; x < w->n; x++) {
        out[x] = false;
        sm_head h;
        dead_from[x] = UINT64_MAX;
        if (sm_ledger_head(nd->ledger, &w->node[x].id.pub, &h) == 0 && h.cap != UINT64_MAX)
            dead_from[x] = h.cap + 1;
    }
    s_first_ctx *first = malloc(sizeof *first);
    s_void_ctx *c = malloc(sizeof *c);
    if (!first || !c)
        abort();
    for (bool grew = true; grew;) {
        grew = false;
        for (int x = 0; x < w->n; x++) {
            sm_head h;
            if (out[x] || sm_ledger_head(nd->ledger, &w->node[x].id.pub, &h) != 0
                || h.applied >= h.seq || h.applied >= h.cap)
                continue;
            first->found = false;
            sm_ledger_read(nd->ledger, &w->node[x].id.pub, h.applied + 1, 1, s_first_cb, first);
            memset(c, 0, sizeof *c);
            c->to = &w->node[x].id.pub;
            if (!first->found)
                continue;
            const sm_body *b = &first->e.body;
            const char *sku = NULL;
            uint32_t need[SM_SALE_LINES_MAX], one = 0;
            if (b->kind == SM_KIND_SALE) {
                for (uint32_t k = 0; k < b->u.sale.line_count; k++) {
                    need[c->nskus] = b->u.sale.lines[k].qty;
                    snprintf(c->skus[c->nskus++], sizeof c->skus[0], "%s", b->u.sale.lines[k].sku);
                }
            } else if (b->kind == SM_KIND_HOLD) {
                for (uint32_t k = 0; k < sm_hold_body_lines(b); k++) {
                    const char *hs;
                    sm_hold_body_line(b, k, &hs, &need[c->nskus]);
                    snprintf(c->skus[c->nskus++], sizeof c->skus[0], "%s", hs);
                }
            } else if (b->kind == SM_KIND_STOCK_MOVE) {
                sku = b->u.stock_move.sku;
                one = b->u.stock_move.qty;
            } else if (b->kind == SM_KIND_ADJUST && b->u.adjust.delta < 0) {
                sku = b->u.adjust.sku;
                one = (uint32_t) -b->u.adjust.delta;
            }
            if (sku) {
                need[c->nskus] = one;
                snprintf(c->skus[c->nskus++], sizeof c->skus[0], "%s", sku);
            }
            for (int f = 0; f < w->n && !c->found && c->nskus; f++) {
                if (dead_from[f] == UINT64_MAX)
                    continue;
                for (int j = 0; j < w->n && !c->found; j++)
                    if (j != w->hostile && w->node[j].ledger)
                        sm_ledger_read(w->node[j].ledger, &w->node[f].id.pub, dead_from[f],
                                       SIZE_MAX, s_void_cb, c);
            }
            /* Or units that only a store restored or wiped since held: the
               entry that moved them in is in no store any more. */
            for (uint32_t k = 0; k < c->nskus && !c->found && w->restores_done; k++) {
                sm_units u;
                int64_t here = sm_ledger_units(nd->ledger, c->skus[k], &w->node[x].id.pub,
                                               &u) == 0 ? u.units : 0;
                c->found = here < (int64_t) need[k];
            }
            if (c->found) {
                out[x] = grew = true;
                dead_from[x] = h.applied + 1;
            }
        }
    }
    free(first);
    free(c);
}

static bool
s_stuck_by_fork(sim_world *w, sim_node *nd, const sm_id *x)
{
    bool stuck[SIM_NODES_MAX];
    int i = s_index(w, x);
    if (i < 0)
        return false;
    s_stuck_set(w, nd, stuck);
    return stuck[i];
}

typedef struct {
    sim_world *w;
    sim_node *at;
    bool bad;
} s_forks_ctx;

/*  Evidence may only name an origin that did equivocate.                  */
static int
s_forks_cb(const sm_id *origin, uint64_t seq, void *arg)
{
    s_forks_ctx *c = arg;
    int i = s_index(c->w, origin);
    if (i < 0 || (i != c->w->hostile && !c->w->node[i].restored)) {
        char who[64];
        sim_fail(c->w, "node %d holds fork evidence against %s at seq %llu, which never "
                 "equivocated", c->at->index, s_name(c->w, origin, who, sizeof who),
                 (unsigned long long) seq);
        c->bad = true;
        return 1;
    }
    return 0;
}

typedef struct {
    sm_hash *links;
    uint64_t *hlc;
    uint64_t n, cap;
} s_chain;

static int
s_chain_cb(const sm_signed *s, uint64_t seq, void *arg)
{
    s_chain *c = arg;
    if (seq != c->n + 1)
        return 1;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->links = realloc(c->links, c->cap * sizeof *c->links);
        c->hlc = realloc(c->hlc, c->cap * sizeof *c->hlc);
        if (!c->links || !c->hlc)
            abort();
    }
    sm_entry_link(s->bytes, s->len, s->sig, &c->links[c->n]);
    sm_entry e;
    c->hlc[c->n] = sm_entry_decode(s->bytes, s->len, &e) == 0 ? e.hlc : 0;
    c->n++;
    return 0;
}

/*  Where honest nodes' logs of `origin` part: the lowest seq at which two
    of them store different entries (0 if they never do), with a check that
    nothing stored is further ahead than the ledger accepts.               */
static uint64_t
s_parting(sim_world *w, const sm_id *origin)
{
    s_chain chains[SIM_NODES_MAX];
    memset(chains, 0, sizeof chains);
    int64_t ahead_max = 0;
    for (int i = 0; i < w->n; i++)
        if (w->node[i].clock_offset_ms > ahead_max)
            ahead_max = w->node[i].clock_offset_ms;
    uint64_t horizon = SIM_EPOCH_MS + w->now + (uint64_t) ahead_max + SM_FUTURE_SKEW_MS;
    for (int i = 0; i < w->n; i++)
        if (s_honest(w, i))
            sm_ledger_read(w->node[i].ledger, origin, 1, SIZE_MAX, s_chain_cb, &chains[i]);
    uint64_t part = 0;
    for (int i = 0; i < w->n; i++) {
        for (uint64_t k = 0; k < chains[i].n; k++)
            if (SM_HLC_MS(chains[i].hlc[k]) > horizon) {
                char who[64];
                sim_fail(w, "node %d stores an entry of %s from %llu s in the future (seq %llu)",
                         i, s_name(w, origin, who, sizeof who),
                         (unsigned long long) ((SM_HLC_MS(chains[i].hlc[k]) - SIM_EPOCH_MS - w->now) / 1000),
                         (unsigned long long) (k + 1));
            }
        for (int j = i + 1; j < w->n; j++) {
            uint64_t n = chains[i].n < chains[j].n ? chains[i].n : chains[j].n;
            for (uint64_t k = 0; k < n; k++)
                if (memcmp(chains[i].links[k].b, chains[j].links[k].b, SM_HASH_BYTES) != 0) {
                    if (part == 0 || k + 1 < part)
                        part = k + 1;
                    break;
                }
        }
    }
    for (int i = 0; i < w->n; i++) {
        free(chains[i].links);
        free(chains[i].hlc);
    }
    return part;
}

typedef struct {
    sim_world *w;
    sim_node *at;
    sim_node *origin;
    uint64_t now;
} s_expiry_ctx;

static int
s_expiry_cb(const sm_hold *hold, void *arg)
{
    s_expiry_ctx *c = arg;
    if (hold->expires_ms + 3 * SIM_TICK_MS < c->now) {
        sim_fail(c->w, "node %d: hold %llu of node %d expired %llu s ago on its clock and is "
                 "still open", c->at->index, (unsigned long long) hold->seq, c->origin->index,
                 (unsigned long long) ((c->now - hold->expires_ms) / 1000));
        return 1;
    }
    return 0;
}

/*  Every drawn raffle verifies on every honest node, with the same counted
    entries and the same winners in the same order (drop.c): a node does
    not trust the draw, it recomputes it.                                  */
typedef struct {
    sim_world *w;
    int ref;                   /* the node whose drops are listed */
} s_draws_ctx;

/*  True if some node's log may have forked honestly-by-accident (its store
    restored from an old copy) or on purpose (the hostile member).          */
static bool
s_forker_exists(const sim_world *w)
{
    for (int i = 0; i < w->n; i++)
        if (w->node[i].hostile || w->node[i].restored)
            return true;
    return false;
}

static int
s_draws_cb(const sm_drop *d, void *arg)
{
    s_draws_ctx *c = arg;
    sim_world *w = c->w;
    if (d->mode != SM_DROP_RAFFLE || !d->draw_seq)
        return 0;
    for (int i = 0; i < w->n; i++)
        if (memcmp(w->node[i].id.pub.b, d->origin.b, SM_KEY_BYTES) == 0
            && (w->node[i].hostile || w->node[i].restored))
            return 0;                  /* a forked or hostile stall's draw: not judged here */
    sm_drop_result ref;
    char why[320];
    bool have = false;
    for (int i = 0; i < w->n && !w->failed; i++) {
        if (!s_honest(w, i))
            continue;
        sm_drop_result r;
        int rc = sm_drop_verify(w->node[i].ledger, &d->origin, d->seq, why, sizeof why, &r);
        if (rc == SM_EFORK && !w->cfg.strict && s_forker_exists(w)) {
            /* It names an entry a restored (or hostile) node's fork voided:
               a known issue (README "Simulator"), counted. */
            w->counters[SIM_C_DRAWS_VOIDED]++;
            return 0;
        }
        if (rc != 0) {
            sim_fail(w, "node %d: the draw of raffle %llu of node %d does not verify: %s", i,
                     (unsigned long long) d->seq, c->ref, why[0] ? why : sm_strerror(rc));
            break;
        }
        w->counters[SIM_C_DRAWS_VERIFIED]++;
        if (!have) {
            ref = r;
            have = true;
            continue;
        }
        bool same = r.counted == ref.counted && r.winners == ref.winners
                    && memcmp(r.r.b, ref.r.b, SM_HASH_BYTES) == 0;
        for (size_t k = 0; same && k < r.winners; k++)
            same = memcmp(r.tickets[k].hash.b, ref.tickets[k].hash.b, SM_HASH_BYTES) == 0;
        sm_drop_result_free(&r);
        if (!same)
            sim_fail(w, "node %d computes other winners of raffle %llu than another node", i,
                     (unsigned long long) d->seq);
    }
    if (have)
        sm_drop_result_free(&ref);
    return w->failed;
}

static void
s_check_draws(sim_world *w)
{
    for (int i = 0; i < w->n && !w->failed; i++) {
        if (!s_honest(w, i))
            continue;
        s_draws_ctx c = { w, i };
        sm_drop_each(w->node[i].ledger, s_draws_cb, &c);
        break;                         /* healed: every honest node holds the same drops */
    }
}

void
sim_check_final(sim_world *w)
{
    /* Which nodes' own logs forked (a restore or a wipe that appended
       before its old entries came back): from the evidence itself, checked
       against what was done to them. */
    for (int i = 0; i < w->n && !w->failed; i++) {
        sim_node *nd = &w->node[i];
        if (!s_honest(w, i))
            continue;
        sim_check_node(w, nd);
        sim_check_model(w, nd);
        sim_check_digest(w, nd);
        sim_check_stock_page(w, nd);
        sim_check_drop_walks(w, nd);
        sm_id bad_origin;
        uint64_t bad_seq = 0, checked = 0;
        int rc = sm_ledger_verify(nd->ledger, &bad_origin, &bad_seq, &checked);
        if (rc != 0) {
            char who[64];
            sim_fail(w, "node %d stores an entry that does not verify: %s seq %llu: %s", i,
                     s_name(w, &bad_origin, who, sizeof who), (unsigned long long) bad_seq,
                     sm_strerror(rc));
        }
    }
    if (w->failed)
        return;
    /* Forks: detected everywhere where logs part, and only where they do. */
    for (int x = 0; x < w->n && !w->failed; x++) {
        const sm_id *origin = &w->node[x].id.pub;
        uint64_t part = s_parting(w, origin);
        if (part == 0)
            continue;
        w->counters[SIM_C_FORKS_SEEN]++;
        for (int i = 0; i < w->n && !w->failed; i++) {
            if (!s_honest(w, i))
                continue;
            uint64_t at = sim_fork_at(&w->node[i], origin);
            if (at == 0 || at > part)
                sim_fail(w, "fork not reported: logs of node %d part at seq %llu, but node %d "
                         "holds %s", x, (unsigned long long) part, i,
                         at ? "evidence only above it" : "no evidence");
        }
    }
    for (int i = 0; i < w->n && !w->failed; i++) {
        if (!s_honest(w, i))
            continue;
        s_forks_ctx c = { w, &w->node[i], false };
        sm_ledger_forks_each(w->node[i].ledger, s_forks_cb, &c);
    }
    if (w->failed)
        return;
    s_check_draws(w);
    if (w->failed)
        return;
    /* Every acknowledged sale everywhere, unless lost or voided by a fork. */
    for (uint32_t k = 0; k < w->nacks && !w->failed; k++) {
        const struct sim_ack *a = &w->acks[k];
        if (a->lost)
            continue;
        const sm_id *origin = &w->node[a->origin].id.pub;
        for (int i = 0; i < w->n && !w->failed; i++) {
            if (!s_honest(w, i))
                continue;
            uint64_t fork = sim_fork_at(&w->node[i], origin);
            if (fork && fork <= a->seq)
                continue;
            sm_sale sale;
            int rc = sm_ledger_sale(w->node[i].ledger, origin, a->seq, &sale);
            if (rc != 0 && s_stuck_by_fork(w, &w->node[i], origin)) {
                w->counters[SIM_C_STUCK]++;
                if (w->cfg.strict)
                    sim_fail(w, "acknowledged sale %d:%llu is stuck at node %d behind units a "
                             "fork voided or a restore erased (--strict)", a->origin,
                             (unsigned long long) a->seq, i);
                break;
            }
            if (rc != 0) {
                sm_head hd;
                sm_ledger_head(w->node[i].ledger, origin, &hd);
                sim_fail(w, "acknowledged sale %d:%llu is missing at node %d: %s (its origin: "
                         "stored to %llu, applied to %llu)", a->origin,
                         (unsigned long long) a->seq, i, sm_strerror(rc),
                         (unsigned long long) hd.seq, (unsigned long long) hd.applied);
                break;
            }
            sm_line lines[SM_SALE_LINES_MAX];
            memset(lines, 0, sizeof lines);
            for (uint32_t l = 0; l < sale.line_count; l++) {
                snprintf(lines[l].sku, sizeof lines[l].sku, "%s", sale.lines[l].sku);
                lines[l].qty = sale.lines[l].qty;
                lines[l].price = sale.lines[l].price;
            }
            sm_hash hsh;
            sim_sales_hash(lines, sale.line_count, &hsh);
            if (memcmp(hsh.b, a->lines.b, SM_HASH_BYTES) != 0)
                sim_fail(w, "acknowledged sale %d:%llu has other lines at node %d", a->origin,
                         (unsigned long long) a->seq, i);
        }
    }
    /* A node still fetching its own log back after healing: only if no store
       holds more of it (a peer reported its later entries, then lost them:
       it waits for the operator's --allow-fresh, appending nothing). */
    for (int x = 0; x < w->n && !w->failed; x++) {
        sim_node *nd = &w->node[x];
        if (!s_honest(w, x) || sim_node_own_ok(nd))
            continue;
        sm_head own;
        if (sm_ledger_head(nd->ledger, &nd->id.pub, &own) != 0)
            continue;
        for (int j = 0; j < w->n && !w->failed; j++) {
            sm_head h;
            /* Entries past a fork (the cap) are void: never fetched, and a
               forked origin appends nothing anyway. */
            if (j != x && s_honest(w, j)
                && sm_ledger_head(w->node[j].ledger, &nd->id.pub, &h) == 0
                && (h.seq < h.cap ? h.seq : h.cap) > own.seq)
                sim_fail(w, "liveness: node %d still fetches its own log back (it holds %llu) "
                         "though node %d holds it to %llu", x, (unsigned long long) own.seq, j,
                         (unsigned long long) h.seq);
        }
        w->counters[SIM_C_RECOVERING]++;
    }
    /* Expired holds released, on the holder's clock, and everywhere (but
       by a node that may not append yet). */
    for (int x = 0; x < w->n && !w->failed; x++) {
        sim_node *origin = &w->node[x];
        if (!s_honest(w, x) || !sim_node_own_ok(origin))
            continue;
        for (int i = 0; i < w->n && !w->failed; i++) {
            if (!s_honest(w, i) || sim_fork_at(&w->node[i], &origin->id.pub)
                || s_stuck_by_fork(w, &w->node[i], &origin->id.pub))
                continue;
            s_expiry_ctx c = { w, &w->node[i], origin, sim_node_now(w, origin) };
            sm_ledger_holds_each(w->node[i].ledger, &origin->id.pub, s_expiry_cb, &c);
        }
    }
    if (!w->failed)
        sim_check_report(w);           /* report_check.c */
}

/* ---- asks between stalls -------------------------------------------------- */

typedef struct {
    sim_world *w;
    sim_node *nd;
    int from;
    int type;
    bool original;
} s_asked_ctx;

/*  A raffle entry a stall appended for an asker's ENTRY_ASK (a mirror's
    viewer): appended at most once, and one per device per drop, wherever
    it was asked: never more entries for an asker's asks than entries it
    forwarded, and no (drop, device) twice among them.                    */
static void
s_entry_asked(s_asked_ctx *c, const sm_entry *e, uint64_t seq)
{
    sim_world *w = c->w;
    const __typeof__(e->body.u.raffle_entry) *re = &e->body.u.raffle_entry;
    if (++w->ent_appended[c->from] > w->ent_sent[c->from])
        sim_fail(w, "node %d appended raffle entry %llu for node %d: %llu entries for its "
                 "ENTRY_ASKs, but it forwarded %llu", c->nd->index, (unsigned long long) seq,
                 c->from, (unsigned long long) w->ent_appended[c->from],
                 (unsigned long long) w->ent_sent[c->from]);
    for (uint32_t i = 0; i < w->nfwd_entries; i++) {
        const struct sim_fwd_entry *f = &w->fwd_entries[i];
        if (f->drop_seq == re->drop_seq
            && memcmp(f->drop_origin.b, re->drop_origin.b, SM_KEY_BYTES) == 0
            && memcmp(f->device, re->device, SM_HOLD_TAG_BYTES) == 0) {
            sim_fail(w, "node %d appended raffle entry %llu for node %d: that device "
                     "already has a forwarded entry for drop %llu", c->nd->index,
                     (unsigned long long) seq, c->from, (unsigned long long) re->drop_seq);
            return;
        }
    }
    if (w->nfwd_entries < SIM_FWD_ENTRIES_MAX) {
        struct sim_fwd_entry *f = &w->fwd_entries[w->nfwd_entries++];
        f->drop_origin = re->drop_origin;
        f->drop_seq = re->drop_seq;
        memcpy(f->device, re->device, SM_HOLD_TAG_BYTES);
    }
}

static int
s_asked_cb(const sm_signed *s, uint64_t seq, void *arg)
{
    s_asked_ctx *c = arg;
    sm_entry e;
    if (sm_entry_decode(s->bytes, s->len, &e) != 0)
        return 0;
    if (e.body.kind == SM_KIND_HOLD && c->type == SM_MSG_HOLD_ASK && c->original
        && s_honest(c->w, c->from)) {
        /* A forwarded hold is appended at most once: never more holds for
           an asker's HOLD_ASKs than holds it forwarded. */
        if (++c->w->fwd_appended[c->from] > c->w->fwd_sent[c->from])
            sim_fail(c->w, "node %d appended hold %llu for node %d: %llu holds for its "
                     "HOLD_ASKs, but it forwarded %llu", c->nd->index, (unsigned long long) seq,
                     c->from, (unsigned long long) c->w->fwd_appended[c->from],
                     (unsigned long long) c->w->fwd_sent[c->from]);
    } else if (e.body.kind == SM_KIND_RAFFLE_ENTRY && c->type == SM_MSG_ENTRY_ASK
               && c->original && s_honest(c->w, c->from)) {
        s_entry_asked(c, &e, seq);
    } else if (e.body.kind == SM_KIND_STOCK_MOVE && c->type == SM_MSG_UNITS_ASK) {
        /* Units asks (a short sale's, rebalancing's) never take the giver
           below its floor. */
        sm_units u;
        int64_t here = sm_ledger_units(c->nd->ledger, e.body.u.stock_move.sku, &c->nd->id.pub,
                                       &u) == 0 ? u.units : 0;
        if (here < (int64_t) c->nd->units_floor)
            sim_fail(c->w, "node %d moved %u %s to node %d for a units ask: %lld left, below "
                     "its floor of %u", c->nd->index, (unsigned) e.body.u.stock_move.qty,
                     e.body.u.stock_move.sku, c->from, (long long) here,
                     (unsigned) c->nd->units_floor);
    }
    return 0;
}

void
sim_check_asked(sim_world *w, sim_node *nd, int from, int type, bool original,
                uint64_t before)
{
    sm_head h;
    if (!nd->ledger || sm_ledger_head(nd->ledger, &nd->id.pub, &h) != 0 || h.seq <= before)
        return;
    s_asked_ctx c = { w, nd, from, type, original };
    sm_ledger_read(nd->ledger, &nd->id.pub, before + 1, (uint32_t) (h.seq - before),
                   s_asked_cb, &c);
}
