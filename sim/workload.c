/*  What the stalls' clients ask for (sim.h): the market's setup, and at
    random times at each stall a write as the till, the stock page or the
    organiser would send it — catalog edits, restocks, moves, sales (some
    with an external id, some retried by a till that lost the answer),
    holds (some completed by a sale, some cancelled, the rest left to
    expire; some forwarded to the stall that holds the units), returns, stock-take adjustments — and, now and then, a drop:
    every stall releases a few units of one sku at the same moment and its
    shoppers rush to buy them.

    Answers are recorded here: an acknowledged sale goes on the world's list
    that the checks hold the mesh to, and a till's retry must get the first
    sale back, never a second one.                                         */
#include "sim.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "reserve.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

const char *const sim_skus[SIM_SKUS] = { "mug", "tee", "cap", "pin", "bag", "zine" };
#define S_DROP_SKU 5

static const char *const s_names[] = { "Blue mug", "Market tee", "Cap", "Enamel pin",
                                       "Tote bag", "Risograph zine", "Seconds" };

void
sim_sales_hash(const sm_line *lines, uint32_t n, sm_hash *out)
{
    sm_hasher h;
    sm_hasher_init(&h);
    for (uint32_t i = 0; i < n; i++) {
        sm_hasher_update(&h, (const uint8_t *) lines[i].sku, strlen(lines[i].sku) + 1);
        sm_hasher_update(&h, (const uint8_t *) &lines[i].qty, sizeof lines[i].qty);
        sm_hasher_update(&h, (const uint8_t *) &lines[i].price, sizeof lines[i].price);
    }
    sm_hasher_final(&h, out);
}

static void
s_set(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

static sm_body
s_body(sm_kind kind)
{
    sm_body b;
    memset(&b, 0, sizeof b);
    b.kind = kind;
    return b;
}

static const char *
s_sku(sim_world *w)
{
    return sim_skus[sim_below(&w->rng, SIM_SKUS - 1)];   /* the drop sku apart */
}

/*  A random honest node other than `not`.                                  */
static int
s_other(sim_world *w, int not)
{
    int honest = w->hostile >= 0 ? w->n - 1 : w->n;
    int j = (int) sim_below(&w->rng, (uint64_t) honest - 1);
    return j >= not ? j + 1 : j;
}

static sm_body
s_sale(sim_world *w, const char *sku, uint32_t qty)
{
    sm_body b = s_body(SM_KIND_SALE);
    b.u.sale.line_count = 1;
    s_set(b.u.sale.lines[0].sku, sizeof b.u.sale.lines[0].sku, sku);
    b.u.sale.lines[0].qty = qty;
    b.u.sale.lines[0].price = (int64_t) sim_range(&w->rng, 100, 3000);
    s_set(b.u.sale.currency, sizeof b.u.sale.currency, "GBP");
    b.u.sale.source = (uint8_t) sim_range(&w->rng, SM_SOURCE_IN_PERSON, SM_SOURCE_PREVIEW);
    b.u.sale.payment = (uint8_t) sim_range(&w->rng, SM_PAY_CARD, SM_PAY_OTHER);
    return b;
}

static void
s_submit_at(sim_world *w, sim_node *nd, int op, const sm_body *body, int at)
{
    sim_req r;
    memset(&r, 0, sizeof r);
    r.op = op;
    r.body = *body;
    r.forward = at >= 0;
    r.at = at;
    sim_node_submit(w, nd, &r);
}

static void
s_submit(sim_world *w, sim_node *nd, int op, const sm_body *body)
{
    s_submit_at(w, nd, op, body, -1);
}

/*  A pickup code from the seeded generator.                               */
static void
s_hold_code(sim_world *w, sm_body *b)
{
    uint8_t rnd[SM_RESERVE_CODE_RAND_BYTES];
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (uint8_t) sim_below(&w->rng, 256);
    sm_reserve_code(rnd, b->u.hold.code);
}

/*  Forget holds this node's store no longer has open (sold, released).  */
static void
s_prune_holds(sim_node *nd)
{
    for (uint32_t i = 0; i < nd->nholds;) {
        sm_hold h;
        if (sm_ledger_hold(nd->ledger, &nd->id.pub, nd->holds[i].seq, &h) != 0)
            nd->holds[i] = nd->holds[--nd->nholds];
        else
            i++;
    }
}

void
sim_workload_client(sim_world *w, sim_node *nd)
{
    if (nd->hostile)
        return;
    uint64_t now = sim_node_now(w, nd);
    uint64_t pick = sim_below(&w->rng, 100);
    sm_body b;
    int op;
    int at = -1;                         /* a hold forwarded to that stall */
    if (pick < 5) {
        op = SIM_OP_ITEM;
        b = s_body(SM_KIND_ITEM);
        s_set(b.u.item.sku, sizeof b.u.item.sku, sim_skus[sim_below(&w->rng, SIM_SKUS)]);
        s_set(b.u.item.name, sizeof b.u.item.name,
              s_names[sim_below(&w->rng, sizeof s_names / sizeof s_names[0])]);
        b.u.item.price = (int64_t) sim_range(&w->rng, 100, 5000);
        s_set(b.u.item.currency, sizeof b.u.item.currency, "GBP");
    } else if (pick < 17) {
        op = SIM_OP_RESTOCK;
        b = s_body(SM_KIND_STOCK_ADD);
        s_set(b.u.stock_add.sku, sizeof b.u.stock_add.sku, s_sku(w));
        b.u.stock_add.qty = (uint32_t) sim_range(&w->rng, 1, 10);
    } else if (pick < 25) {
        op = SIM_OP_MOVE;
        b = s_body(SM_KIND_STOCK_MOVE);
        s_set(b.u.stock_move.sku, sizeof b.u.stock_move.sku, s_sku(w));
        b.u.stock_move.qty = (uint32_t) sim_range(&w->rng, 1, 3);
        b.u.stock_move.to = w->node[s_other(w, nd->index)].id.pub;
    } else if (pick < 55) {
        op = SIM_OP_SALE;
        b = s_sale(w, s_sku(w), (uint32_t) sim_range(&w->rng, 1, 3));
        if (sim_chance(&w->rng, 300)) {
            const char *second = s_sku(w);
            if (strcmp(second, b.u.sale.lines[0].sku) != 0) {
                b.u.sale.line_count = 2;
                s_set(b.u.sale.lines[1].sku, sizeof b.u.sale.lines[1].sku, second);
                b.u.sale.lines[1].qty = 1;
                b.u.sale.lines[1].price = 250;
            }
        }
        if (sim_chance(&w->rng, 500)) {
            snprintf(b.u.sale.external_id, sizeof b.u.sale.external_id, "till-%d-%u",
                     nd->index, nd->extid_next++);
            nd->last_sale = b;
            nd->has_last_sale = true;
            nd->last_sale_seq = 0;
        }
    } else if (pick < 59) {
        if (!nd->has_last_sale)
            return;
        op = SIM_OP_RETRY;               /* a till that did not hear the answer */
        b = nd->last_sale;
    } else if (pick < 69) {
        op = SIM_OP_HOLD;
        b = s_body(SM_KIND_HOLD);
        s_set(b.u.hold.sku, sizeof b.u.hold.sku, s_sku(w));
        b.u.hold.qty = (uint32_t) sim_range(&w->rng, 1, 2);
        b.u.hold.expires_ms = now + sim_range(&w->rng, 3000, 120000);
        if (sim_chance(&w->rng, 400)) {
            op = SIM_OP_HOLD_FWD;        /* the units are at another stall */
            at = s_other(w, nd->index);
            b.u.hold.expires_ms = 0;     /* that stall sets it */
        } else if (sim_chance(&w->rng, 500)) {
            /* A reservation as a phone makes it: a few lines, held whole
               or not at all, with a pickup code from the seeded generator. */
            uint32_t more = (uint32_t) sim_range(&w->rng, 1, 3);
            for (uint32_t k = 0; k < more; k++) {
                const char *sku = s_sku(w);
                bool dup = strcmp(sku, b.u.hold.sku) == 0;
                for (uint32_t j = 0; j < b.u.hold.more_count && !dup; j++)
                    dup = strcmp(sku, b.u.hold.more[j].sku) == 0;
                if (dup)
                    continue;
                sm_line *l = &b.u.hold.more[b.u.hold.more_count++];
                s_set(l->sku, sizeof l->sku, sku);
                l->qty = (uint32_t) sim_range(&w->rng, 1, 2);
            }
            s_hold_code(w, &b);
            /* From one of two phones behind one address, reserving again
               before the last ran out, or tapping Reserve twice (both in
               one batch): the stall's limits per device and per address
               (SIM_HOLD_PER_DEVICE, _ADDRESS) are met, within a batch too. */
            b.u.hold.has_device = b.u.hold.has_client = true;
            memset(b.u.hold.device, 0x40 + (int) sim_below(&w->rng, 2), SM_HOLD_TAG_BYTES);
            memset(b.u.hold.client, 0x40, SM_HOLD_TAG_BYTES);
            b.u.hold.device[0] = b.u.hold.client[0] = (uint8_t) nd->index;
            if (sim_chance(&w->rng, 300)) {
                sm_body again = b;
                s_hold_code(w, &again);
                s_submit(w, nd, SIM_OP_HOLD, &again);
            }
        }
    } else if (pick < 70) {
        if (!nd->has_sold_hold)
            return;
        op = SIM_OP_HOLD_RESELL;         /* a till taps Sell twice */
        b = nd->sold_hold_sale;
    } else if (pick < 78) {
        s_prune_holds(nd);
        if (nd->nholds == 0)
            return;
        sim_own_hold *h = &nd->holds[sim_below(&w->rng, nd->nholds)];
        sm_hold open;
        if (sm_ledger_hold(nd->ledger, &nd->id.pub, h->seq, &open) != 0)
            return;
        if (sim_chance(&w->rng, 600)) {
            op = SIM_OP_HOLD_SALE;       /* the till sells the reservation by its id */
            b = s_sale(w, open.lines[0].sku, open.lines[0].qty + (uint32_t) sim_below(&w->rng, 2));
            for (uint32_t k = 1; k < open.line_count && k < SM_SALE_LINES_MAX; k++) {
                sm_line *l = &b.u.sale.lines[b.u.sale.line_count++];
                s_set(l->sku, sizeof l->sku, open.lines[k].sku);
                l->qty = open.lines[k].qty;
                l->price = 250;
            }
            b.u.sale.hold_seq = h->seq;
        } else {
            op = SIM_OP_RELEASE;         /* ... or cancels it */
            b = s_body(SM_KIND_RELEASE);
            b.u.release.hold_seq = h->seq;
        }
    } else if (pick < 85) {
        if (nd->nsales == 0)
            return;
        uint64_t seq = nd->sales[sim_below(&w->rng, nd->nsales)];
        sm_sale sale;
        if (sm_ledger_sale(nd->ledger, &nd->id.pub, seq, &sale) != 0)
            return;
        op = SIM_OP_RETURN;
        b = s_body(SM_KIND_RETURN);
        b.u.ret.sale_seq = seq;
        b.u.ret.line_count = 1;
        s_set(b.u.ret.lines[0].sku, sizeof b.u.ret.lines[0].sku, sale.lines[0].sku);
        b.u.ret.lines[0].qty = 1 + (uint32_t) sim_below(&w->rng, 2);
        s_set(b.u.ret.reason, sizeof b.u.ret.reason, "changed mind");
    } else if (pick < 92) {
        op = SIM_OP_ADJUST;
        b = s_body(SM_KIND_ADJUST);
        s_set(b.u.adjust.sku, sizeof b.u.adjust.sku, s_sku(w));
        int64_t d = (int64_t) sim_range(&w->rng, 0, 6) - 2;
        b.u.adjust.delta = d == 0 ? 1 : d;
        s_set(b.u.adjust.reason, sizeof b.u.adjust.reason, "stock-take");
    } else {
        op = SIM_OP_SALE;                /* a sale of several at once */
        b = s_sale(w, s_sku(w), (uint32_t) sim_range(&w->rng, 3, 8));
    }
    s_submit_at(w, nd, op, &b, at);
}

/*  A drop: stage 0, every honest stall releases a few units from 10 s on
    (its own clock): the short form (units added), or units it stocks just
    before, first-come or by a raffle whose entries close 8 s after the
    start; a till tries to sell one at once (before the start: refused).
    Stage 1, 10 s later: its shoppers rush (sales, reservations), and phones
    enter the raffles at random stalls.  Stages 2 and 3 (12 s and 30 s
    after): each stall draws its raffle (early by a skewed clock: refused,
    then again).                                                          */
void
sim_workload_drop(sim_world *w, uint64_t stage)
{
    int honest = w->hostile >= 0 ? w->n - 1 : w->n;
    for (int i = 0; i < honest; i++) {
        sim_node *nd = &w->node[i];
        if (!nd->running)
            continue;
        if (stage == 0) {
            uint32_t qty = (uint32_t) sim_range(&w->rng, 1, 4);
            uint64_t form = sim_below(&w->rng, 3);     /* short, first-come, raffle */
            sm_body b = s_body(SM_KIND_DROP);
            s_set(b.u.drop.sku, sizeof b.u.drop.sku, sim_skus[S_DROP_SKU]);
            b.u.drop.qty = qty;
            b.u.drop.starts_ms = sim_node_now(w, nd) + 10000;
            if (form > 0) {
                sm_body add = s_body(SM_KIND_STOCK_ADD);
                s_set(add.u.stock_add.sku, sizeof add.u.stock_add.sku, sim_skus[S_DROP_SKU]);
                add.u.stock_add.qty = qty;
                s_submit(w, nd, SIM_OP_RESTOCK, &add);
                b.u.drop.mode = form == 1 ? SM_DROP_FIRST_COME : SM_DROP_RAFFLE;
                b.u.drop.per_shopper = form == 1 ? (uint32_t) sim_range(&w->rng, 1, qty) : 1;
                b.u.drop.closes_ms = form == 2 ? b.u.drop.starts_ms + 8000 : 0;
                b.u.drop.pickup_minutes = 5;
            }
            s_submit(w, nd, SIM_OP_DROP, &b);
            sm_body early = s_sale(w, sim_skus[S_DROP_SKU], 1);
            s_submit(w, nd, SIM_OP_DROP_SALE, &early);
        } else if (stage == 1) {
            uint32_t shoppers = (uint32_t) sim_range(&w->rng, 2, 6);
            for (uint32_t k = 0; k < shoppers; k++) {
                sm_body b = s_sale(w, sim_skus[S_DROP_SKU], (uint32_t) sim_range(&w->rng, 1, 2));
                s_submit(w, nd, SIM_OP_DROP_SALE, &b);
            }
            /* Phones rush to reserve, all at once (one batch): three
               devices behind two addresses, so the caps are met within it. */
            uint32_t rush = (uint32_t) sim_range(&w->rng, 3, 8);
            for (uint32_t k = 0; k < rush; k++) {
                sm_body b = s_body(SM_KIND_HOLD);
                s_set(b.u.hold.sku, sizeof b.u.hold.sku, sim_skus[S_DROP_SKU]);
                b.u.hold.qty = (uint32_t) sim_range(&w->rng, 1, 2);
                b.u.hold.expires_ms = sim_node_now(w, nd) + sim_range(&w->rng, 5000, 60000);
                b.u.hold.has_device = b.u.hold.has_client = true;
                memset(b.u.hold.device, (int) (1 + sim_below(&w->rng, 3)), SM_HOLD_TAG_BYTES);
                memset(b.u.hold.client, (int) (1 + sim_below(&w->rng, 2)), SM_HOLD_TAG_BYTES);
                b.u.hold.device[0] = b.u.hold.client[0] = (uint8_t) i;
                s_submit(w, nd, SIM_OP_HOLD, &b);
            }
            if (!nd->raffle_seq)
                continue;
            /* Phones enter this stall's raffle through any stall; at
               another stall, half of them as through a mirror: the entry
               is forwarded to this stall (ENTRY_ASK), which appends it. */
            uint32_t phones = (uint32_t) sim_range(&w->rng, 2, 8);
            for (uint32_t k = 0; k < phones; k++) {
                sim_node *at = &w->node[sim_below(&w->rng, (uint64_t) honest)];
                if (!at->running)
                    continue;
                sm_body b = s_body(SM_KIND_RAFFLE_ENTRY);
                b.u.raffle_entry.drop_origin = nd->id.pub;
                b.u.raffle_entry.drop_seq = nd->raffle_seq;
                for (size_t j = 0; j < SM_HOLD_TAG_BYTES; j++) {
                    b.u.raffle_entry.device[j] = (uint8_t) sim_below(&w->rng, 256);
                    b.u.raffle_entry.client[j] = (uint8_t) sim_below(&w->rng, 256);
                }
                b.u.raffle_entry.has_client = true;
                bool fwd = at != nd && sim_chance(&w->rng, 500);
                s_submit_at(w, at, SIM_OP_RAFFLE, &b, fwd ? nd->index : -1);
            }
        } else if (nd->raffle_seq) {
            sm_body b = s_body(SM_KIND_RAFFLE_DRAW);
            b.u.raffle_draw.drop_seq = nd->raffle_seq;
            s_submit(w, nd, SIM_OP_DRAW, &b);
        }
    }
    if (stage == 0)
        sim_schedule(w, w->now + 10000, SIM_EV_DROP, 0, 0, 0, 1, NULL, 0);
    else if (stage == 1)
        sim_schedule(w, w->now + 12000, SIM_EV_DROP, 0, 0, 0, 2, NULL, 0);
    else if (stage == 2)
        sim_schedule(w, w->now + 30000, SIM_EV_DROP, 0, 0, 0, 3, NULL, 0);
}

void
sim_workload_answer(sim_world *w, sim_node *nd, const sim_req *req, int rc, uint64_t seq)
{
    sim_trace_u64(w, (uint64_t) req->op);
    sim_trace_u64(w, (uint64_t) (int64_t) rc);
    sim_trace_u64(w, seq);
    w->counters[SIM_C_WRITES]++;
    if (rc != 0 && rc != SM_EEXIST)
        w->counters[SIM_C_WRITES_REFUSED]++;
    const sm_body *b = &req->body;
    /* A raffle waits for its stall's draw; drawn (or found drawn), it is done. */
    if (req->op == SIM_OP_DROP && rc == 0 && b->u.drop.mode == SM_DROP_RAFFLE)
        nd->raffle_seq = seq;
    if (req->op == SIM_OP_DRAW && (rc == 0 || rc == SM_EDRAWN || rc == SM_ENODROP))
        nd->raffle_seq = 0;
    bool extid = b->kind == SM_KIND_SALE && b->u.sale.external_id[0];
    if (extid && nd->has_last_sale
        && strcmp(b->u.sale.external_id, nd->last_sale.u.sale.external_id) == 0) {
        /* A till's retries must all name one sale. */
        if ((rc == 0 || rc == SM_EEXIST) && nd->last_sale_seq && seq != nd->last_sale_seq)
            sim_fail(w, "node %d: external id %s answered as sale %llu, then as sale %llu",
                     nd->index, b->u.sale.external_id, (unsigned long long) nd->last_sale_seq,
                     (unsigned long long) seq);
        if (rc == 0 || rc == SM_EEXIST)
            nd->last_sale_seq = seq;
    }
    /* A hold is sold at most once: a second sale of one is never made
       (unless this store was restored or wiped to before the first). */
    if (req->op == SIM_OP_HOLD_RESELL && rc == 0 && !nd->restored)
        sim_fail(w, "node %d: hold %llu was sold a second time", nd->index,
                 (unsigned long long) b->u.sale.hold_seq);
    if (req->op == SIM_OP_HOLD_RESELL)
        w->counters[SIM_C_RESELLS_REFUSED] += rc == SM_EHOLDSOLD;
    if (rc != 0)
        return;
    if (req->op == SIM_OP_HOLD_SALE) {
        nd->sold_hold_sale = *b;
        nd->sold_hold_sale.u.sale.external_id[0] = '\0';
        nd->has_sold_hold = true;
    }
    switch (b->kind) {
    case SM_KIND_SALE:
        if (w->nacks < SIM_ACKS_MAX) {
            struct sim_ack *a = &w->acks[w->nacks++];
            a->origin = (uint16_t) nd->index;
            a->seq = seq;
            a->lost = false;
            sim_sales_hash(b->u.sale.lines, b->u.sale.line_count, &a->lines);
            if (sim_entry_link(nd->ledger, &nd->id.pub, seq, &a->link) != 0)
                sim_fail(w, "node %d: acknowledged sale %llu is not in its log", nd->index,
                         (unsigned long long) seq);
        }
        w->counters[SIM_C_SALES_ACKED]++;
        nd->sales[nd->nsales < 256 ? nd->nsales++ : sim_below(&w->rng, 256)] = seq;
        break;
    case SM_KIND_HOLD:
        if (!req->forward && nd->nholds < 64)   /* a forwarded one is on the other's log */
            nd->holds[nd->nholds++] = (sim_own_hold) { seq, b->u.hold.expires_ms };
        break;
    default:
        break;
    }
}

int
sim_join(sim_world *w, sim_node *nd)
{
    sm_market m;
    int rc = sm_ledger_market(w->node[0].ledger ? w->node[0].ledger : nd->ledger, &m);
    if (rc != 0) {
        /* The organiser is down: the market facts are known anyway. */
        memset(&m, 0, sizeof m);
        m.market = w->market;
        snprintf(m.name, sizeof m.name, "Sim Market");
        snprintf(m.currency, sizeof m.currency, "GBP");
    }
    sm_signed admit = { nd->admit, nd->admit_len, { 0 } };
    memcpy(admit.sig, nd->admit_sig, SM_SIG_BYTES);
    rc = sm_ledger_join(nd->ledger, &m, &admit);
    if (rc != 0)
        sim_fail(w, "node %d: cannot join the market: %s", nd->index, sm_strerror(rc));
    return rc;
}

typedef struct {
    sim_node *nd;
    bool found;
} s_admit_ctx;

static int
s_admit_cb(const sm_signed *e, uint64_t seq, void *arg)
{
    (void) seq;
    s_admit_ctx *c = arg;
    assert(e->len <= sizeof c->nd->admit);
    memcpy(c->nd->admit, e->bytes, e->len);
    c->nd->admit_len = e->len;
    memcpy(c->nd->admit_sig, e->sig, SM_SIG_BYTES);
    c->found = true;
    return 1;
}

/*  Identities from the seed; the organiser creates the market and admits
    every other node (the hostile one too: it is a member gone bad); each
    joins with its admit entry, its store confirmed as `init` does, and
    fetches the rest by gossip.                                             */
void
sim_workload_setup(sim_world *w)
{
    for (int i = 0; i < w->n; i++) {
        sim_node *nd = &w->node[i];
        nd->index = i;
        nd->hostile = i == w->hostile;
        nd->world = w;
        nd->units_floor = (uint32_t) (i % 3);
        nd->rebalance_floor = i % 2 ? SIM_REBALANCE_FLOOR : 0;
        uint8_t material[24], seed[SM_HASH_BYTES];
        memcpy(material, "stallmesh-sim", 13);
        for (int k = 0; k < 8; k++)
            material[13 + k] = (uint8_t) (w->cfg.seed >> (8 * k));
        material[21] = (uint8_t) i;
        material[22] = material[23] = 0;
        sm_hash_bytes(material, sizeof material, (sm_hash *) seed);
        sm_identity_from_seed(&nd->id, seed);
        snprintf(nd->dir, sizeof nd->dir, "%s/n%d", w->base, i);
        char hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(&nd->id.pub, hex);
        sim_say(w, "node %d is %s%s", i, hex, nd->hostile ? " (the hostile member)" : "");
    }
    sim_node *org = &w->node[0];
    if (sim_node_open(w, org) != 0)
        return;
    int rc = sm_ledger_create_market(org->ledger, "Sim Market", "GBP", sim_node_now(w, org));
    if (rc == 0)
        rc = sm_ledger_confirm_own(org->ledger);
    if (rc != 0) {
        sim_fail(w, "cannot create the market: %s", sm_strerror(rc));
        return;
    }
    w->market = org->id.pub;
    for (int i = 1; i < w->n; i++) {
        sim_node *nd = &w->node[i];
        sm_body b = s_body(SM_KIND_ROSTER_ADMIT);
        b.u.admit.node = nd->id.pub;
        snprintf(b.u.admit.name, sizeof b.u.admit.name, "stall-%d", i);
        b.u.admit.role = SM_ROLE_STALL;
        uint64_t seq = 0;
        if ((rc = sm_ledger_append(org->ledger, &b, sim_node_now(w, org), &seq)) != 0) {
            sim_fail(w, "cannot admit node %d: %s", i, sm_strerror(rc));
            return;
        }
        s_admit_ctx c = { nd, false };
        sm_ledger_read(org->ledger, &org->id.pub, seq, 1, s_admit_cb, &c);
        assert(c.found);
    }
    for (int i = 1; i < w->n; i++) {
        sim_node *nd = &w->node[i];
        if (sim_node_open(w, nd) != 0 || sim_join(w, nd) != 0)
            return;
        if ((rc = sm_ledger_confirm_own(nd->ledger)) != 0) {
            sim_fail(w, "node %d: cannot confirm its store: %s", i, sm_strerror(rc));
            return;
        }
        sim_node_close(w, nd);
    }
    sim_node_close(w, org);
    for (int i = 0; i < w->n; i++) {
        sim_node_restart(w, &w->node[i]);
        /* Stores created a moment ago have no older copy to check for:
           the market's first start writes at once, as --allow-fresh would
           (later starts check with their peers first, as core.c does). */
        sim_node_own_enable(&w->node[i]);
    }
    if (w->failed)
        return;
    /* The catalog and the first stock, by the organiser. */
    for (uint32_t k = 0; k < SIM_SKUS; k++) {
        sm_body b = s_body(SM_KIND_ITEM);
        s_set(b.u.item.sku, sizeof b.u.item.sku, sim_skus[k]);
        s_set(b.u.item.name, sizeof b.u.item.name, s_names[k]);
        b.u.item.price = 500 + 100 * (int64_t) k;
        s_set(b.u.item.currency, sizeof b.u.item.currency, "GBP");
        s_submit(w, org, SIM_OP_ITEM, &b);
        b = s_body(SM_KIND_STOCK_ADD);
        s_set(b.u.stock_add.sku, sizeof b.u.stock_add.sku, sim_skus[k]);
        b.u.stock_add.qty = 20;
        s_submit(w, org, SIM_OP_RESTOCK, &b);
    }
    int honest = w->hostile >= 0 ? w->n - 1 : w->n;
    for (int i = 0; i < honest; i++)
        sim_schedule(w, w->now + 2000 + sim_below(&w->rng, 3000), SIM_EV_CLIENT, i, 0, 0, 0,
                     NULL, 0);
    uint32_t drops = (uint32_t) sim_below(&w->rng, 3);
    for (uint32_t k = 0; k < drops; k++)
        sim_schedule(w, w->now + 10000 + sim_below(&w->rng, (uint64_t) w->cfg.ticks * 1000),
                     SIM_EV_DROP, 0, 0, 0, 0, NULL, 0);
}
