/*  Drops and raffles: the reads, the draw and its check (drop.h says what
    each does and proto/log.md gives the rule normatively).

    The draw's rule, once more, because everything here serves it:
        counted = raffle.entry entries for the drop, within the draw's heads,
                  starts_ms <= hlc ms <= closes_ms, the earliest per device
        R       = BLAKE2b-256(hash_1 || hash_2 || ...), hashes ascending
        rank    = BLAKE2b-256(secret || R || hash)
        winners = the first min(qty / per_shopper, |counted|) by rank
    No one can know an entry's rank before the set is closed (R covers all
    of it), and the stall cannot choose the secret after seeing the entries
    (its drop committed to it before the first entry).                      */
#include "drop.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "reserve.h"
#include "stallmesh/error.h"
#include "state.h"

void
sm_drop_of_entry(sm_drop *d, const sm_id *origin, uint64_t seq, const sm_entry *e)
{
    assert(d && origin && e && e->body.kind == SM_KIND_DROP);
    const __typeof__(e->body.u.drop) *b = &e->body.u.drop;
    memset(d, 0, sizeof *d);
    d->origin = *origin;
    d->seq = seq;
    sm__strfill(d->sku, sizeof d->sku, b->sku);
    d->qty = b->qty;
    d->per_shopper = b->per_shopper;
    d->pickup_minutes = b->pickup_minutes;
    d->mode = b->mode;
    d->starts_ms = b->starts_ms;
    d->closes_ms = b->closes_ms;
    d->commitment = b->commitment;
    d->hlc = e->hlc;
}

void
sm_drop_secret(const sm_identity *id, const sm_id *market, uint64_t drop_seq, sm_hash *out)
{
    uint8_t msg[SM_KEY_BYTES * 2 + 8];
    memcpy(msg, market->b, SM_KEY_BYTES);
    memcpy(msg + SM_KEY_BYTES, id->pub.b, SM_KEY_BYTES);
    sm__be64_put(msg + 2 * SM_KEY_BYTES, drop_seq);
    sm_identity_derive(id, "stallmesh raffle secret", msg, sizeof msg, out->b);
}

static void
s_drop_from_rec(sm_drop *out, const sm_id *origin, uint64_t seq, const sm__drop_rec *r)
{
    memset(out, 0, sizeof *out);
    out->origin = *origin;
    out->seq = seq;
    sm__strfill(out->sku, sizeof out->sku, r->sku);
    out->qty = r->qty;
    out->per_shopper = r->per_shopper;
    out->pickup_minutes = r->pickup_minutes;
    out->mode = (int) r->mode;
    out->starts_ms = r->starts_ms;
    out->closes_ms = r->closes_ms;
    out->hlc = r->hlc;
    memcpy(out->commitment.b, r->commitment, SM_HASH_BYTES);
    out->draw_seq = r->draw_seq;
    out->draw_hlc = r->draw_hlc;
    out->winners = r->winners;
}

int
sm_drop_get(sm_ledger *l, const sm_id *origin, uint64_t seq, sm_drop *out)
{
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(l, &rc);
    if (!txn)
        return rc;
    sm__drop_rec r;
    rc = sm__drop_get(txn, origin, seq, &r);
    sm_txn_abort(&txn);
    if (rc == 0)
        s_drop_from_rec(out, origin, seq, &r);
    return rc;
}

typedef struct {
    sm_drop_fn cb;
    void *arg;
} s_each;

static int
s_drop_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_each *it = arg;
    sm__drop_rec r;
    if (k->len != SM__OSKEY_BYTES || v->len != sizeof r)
        return SM_ECORRUPT;
    memcpy(&r, v->data, sizeof r);
    sm_id origin;
    memcpy(origin.b, k->data, SM_KEY_BYTES);
    sm_drop d;
    s_drop_from_rec(&d, &origin, sm__be64_get((const uint8_t *) k->data + SM_KEY_BYTES), &r);
    return it->cb(&d, it->arg) ? 1 : 0;
}

int
sm_drop_each(sm_ledger *l, sm_drop_fn cb, void *arg)
{
    s_each it = { cb, arg };
    return sm__ledger_each(l, SM_DB_DROPS, NULL, 0, NULL, 0, s_drop_each, &it);
}

/* ---- entries in the state --------------------------------------------- */

typedef struct {
    uint64_t devices;
    uint8_t last_device[SM_HOLD_TAG_BYTES];
    sm_id *origins;
    size_t max, n;
} s_entries;

static int
s_entries_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn; (void) v;
    s_entries *it = arg;
    if (k->len != SM__RAFFLE_KEY_BYTES)
        return SM_ECORRUPT;
    const uint8_t *dev = (const uint8_t *) k->data + SM__OSKEY_BYTES + 1;
    const uint8_t *who = dev + SM_HOLD_TAG_BYTES;
    if (it->devices == 0 || memcmp(dev, it->last_device, SM_HOLD_TAG_BYTES) != 0)
        it->devices++;
    memcpy(it->last_device, dev, SM_HOLD_TAG_BYTES);
    size_t at = 0;
    size_t known = it->n < it->max ? it->n : it->max;
    while (at < known && memcmp(it->origins[at].b, who, SM_KEY_BYTES) < 0)
        at++;
    if (at < known && memcmp(it->origins[at].b, who, SM_KEY_BYTES) == 0)
        return 0;
    if (it->n < it->max) {
        memmove(&it->origins[at + 1], &it->origins[at], (it->n - at) * sizeof (sm_id));
        memcpy(it->origins[at].b, who, SM_KEY_BYTES);
    }
    it->n++;                   /* counts past max: the caller sees there are more */
    return 0;
}

int
sm_drop_entries(sm_ledger *l, const sm_drop *d, uint64_t *devices, sm_id *origins,
                size_t max, size_t *norigins)
{
    uint8_t prefix[SM__OSKEY_BYTES + 1];
    sm__oskey(prefix, &d->origin, d->seq);
    prefix[SM__OSKEY_BYTES] = 'd';
    s_entries it = { 0, { 0 }, origins, origins ? max : 0, 0 };
    int rc = sm__ledger_each(l, SM_DB_RAFFLE, prefix, sizeof prefix, NULL, 0,
                             s_entries_each, &it);
    if (devices)
        *devices = it.devices;
    if (norigins)
        *norigins = it.n;
    return rc;
}

typedef struct {
    bool found;
    sm_id by;
    uint64_t seq, hlc;
} s_entered;

static int
s_entered_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_entered *it = arg;
    if (k->len != SM__RAFFLE_KEY_BYTES || v->len != 8)
        return SM_ECORRUPT;
    const uint8_t *who = (const uint8_t *) k->data + SM__OSKEY_BYTES + 1 + SM_HOLD_TAG_BYTES;
    uint64_t hlc;
    memcpy(&hlc, v->data, 8);
    if (!it->found || hlc < it->hlc) {
        it->found = true;
        it->hlc = hlc;
        memcpy(it->by.b, who, SM_KEY_BYTES);
        it->seq = sm__be64_get(who + SM_KEY_BYTES);
    }
    return 0;
}

int
sm_drop_entered(sm_ledger *l, const sm_drop *d, const uint8_t device[SM_HOLD_TAG_BYTES],
                bool *entered, sm_id *by, uint64_t *seq, uint64_t *hlc)
{
    uint8_t prefix[SM__OSKEY_BYTES + 1 + SM_HOLD_TAG_BYTES];
    sm__oskey(prefix, &d->origin, d->seq);
    prefix[SM__OSKEY_BYTES] = 'd';
    memcpy(prefix + SM__OSKEY_BYTES + 1, device, SM_HOLD_TAG_BYTES);
    s_entered it;
    memset(&it, 0, sizeof it);
    int rc = sm__ledger_each(l, SM_DB_RAFFLE, prefix, sizeof prefix, NULL, 0,
                             s_entered_each, &it);
    *entered = it.found;
    if (by)
        *by = it.by;
    if (seq)
        *seq = it.seq;
    if (hlc)
        *hlc = it.hlc;
    return rc;
}

typedef struct {
    const sm_drop *d;
    const sm_entry *draw;          /* NULL: not drawn */
    bool entered, counted;
} s_counted;

static int
s_counted_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_counted *c = arg;
    if (k->len != SM__RAFFLE_KEY_BYTES || v->len != 8)
        return SM_ECORRUPT;
    const uint8_t *who = (const uint8_t *) k->data + SM__OSKEY_BYTES + 1 + SM_HOLD_TAG_BYTES;
    uint64_t seq = sm__be64_get(who + SM_KEY_BYTES), hlc;
    memcpy(&hlc, v->data, 8);
    c->entered = true;
    uint64_t ms = SM_HLC_MS(hlc);
    if (ms < c->d->starts_ms || ms > c->d->closes_ms)
        return 0;
    if (!c->draw) {
        c->counted = true;
        return 0;
    }
    const __typeof__(c->draw->body.u.raffle_draw) *dr = &c->draw->body.u.raffle_draw;
    for (uint32_t i = 0; i < dr->head_count; i++)
        if (memcmp(dr->heads[i].origin.b, who, SM_KEY_BYTES) == 0 && seq <= dr->heads[i].seq)
            c->counted = true;
    return 0;
}

static int s_read_one_entry(sm_ledger *l, const sm_id *origin, uint64_t seq, sm_entry *e);

int
sm_drop_device_counted(sm_ledger *l, const sm_drop *d, const uint8_t device[SM_HOLD_TAG_BYTES],
                       bool *entered, bool *counted)
{
    sm_entry *draw = NULL;
    int rc = 0;
    if (d->draw_seq) {
        draw = malloc(sizeof *draw);
        if (!draw)
            return SM_ENOMEM;
        rc = s_read_one_entry(l, &d->origin, d->draw_seq, draw);
    }
    s_counted c = { d, draw, false, false };
    if (rc == 0) {
        uint8_t prefix[SM__OSKEY_BYTES + 1 + SM_HOLD_TAG_BYTES];
        sm__oskey(prefix, &d->origin, d->seq);
        prefix[SM__OSKEY_BYTES] = 'd';
        memcpy(prefix + SM__OSKEY_BYTES + 1, device, SM_HOLD_TAG_BYTES);
        rc = sm__ledger_each(l, SM_DB_RAFFLE, prefix, sizeof prefix, NULL, 0,
                             s_counted_each, &c);
    }
    free(draw);
    *entered = c.entered;
    *counted = c.counted;
    return rc;
}

/* ---- the draw, from the log ------------------------------------------- */

void
sm_drop_result_free(sm_drop_result *res)
{
    if (!res)
        return;
    free(res->tickets);
    memset(res, 0, sizeof *res);
}

typedef struct {
    const sm_drop *d;
    const sm_id *origin;
    uint64_t upto;             /* the head: entries 1..upto count */
    uint64_t read_to;          /* entries 1..read_to are read (>= upto) */
    uint64_t next;             /* the seq expected next */
    sm_hash link;              /* of the last entry read */
    bool check;
    int err;
    uint64_t bad_seq;
    sm_entry e;
    sm_drop_ticket *t;
    size_t n, cap;
} s_collect;

static int
s_collect_each(const sm_signed *s, uint64_t seq, void *arg)
{
    s_collect *c = arg;
    if (seq != c->next) {
        c->err = SM_EGAP;
        c->bad_seq = c->next;
        return 1;
    }
    if (c->check) {
        /* The chain from seq 1: each prev is the link of the one before. */
        sm_hash link;
        sm_entry_link(s->bytes, s->len, s->sig, &link);
        int rc = sm_entry_decode(s->bytes, s->len, &c->e);
        if (rc == 0 && (c->e.seq != seq || memcmp(c->e.origin.b, c->origin->b, SM_KEY_BYTES) != 0))
            rc = SM_EORIGIN;
        if (rc == 0 && memcmp(c->e.prev.b, c->link.b, SM_HASH_BYTES) != 0)
            rc = SM_ELINK;
        /* The newest entry read is signed: with the links, the whole run. */
        if (rc == 0 && seq == c->read_to)
            rc = sm_entry_verify(s->bytes, s->len, s->sig, c->origin);
        if (rc != 0) {
            c->err = rc;
            c->bad_seq = seq;
            return 1;
        }
        c->link = link;
    } else {
        int rc = sm_entry_decode(s->bytes, s->len, &c->e);
        if (rc != 0) {
            c->err = rc;
            c->bad_seq = seq;
            return 1;
        }
    }
    c->next++;
    const sm_entry *e = &c->e;
    if (seq > c->upto)
        return seq >= c->read_to;
    if (e->body.kind != SM_KIND_RAFFLE_ENTRY
        || e->body.u.raffle_entry.drop_seq != c->d->seq
        || memcmp(e->body.u.raffle_entry.drop_origin.b, c->d->origin.b, SM_KEY_BYTES) != 0)
        return seq >= c->read_to;
    uint64_t ms = SM_HLC_MS(e->hlc);
    if (ms < c->d->starts_ms || ms > c->d->closes_ms)
        return seq >= c->read_to;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        sm_drop_ticket *t = realloc(c->t, cap * sizeof *t);
        if (!t) {
            c->err = SM_ENOMEM;
            return 1;
        }
        c->t = t;
        c->cap = cap;
    }
    sm_drop_ticket *t = &c->t[c->n++];
    memset(t, 0, sizeof *t);
    sm_entry_hash(s->bytes, s->len, &t->hash);
    t->origin = *c->origin;
    t->seq = seq;
    t->hlc = e->hlc;
    memcpy(t->device, e->body.u.raffle_entry.device, SM_HOLD_TAG_BYTES);
    t->has_client = e->body.u.raffle_entry.has_client;
    memcpy(t->client, e->body.u.raffle_entry.client, SM_HOLD_TAG_BYTES);
    return seq >= c->read_to;
}

/*  Per device the earliest by (hlc, origin, seq).                          */
static int
s_by_device(const void *a, const void *b)
{
    const sm_drop_ticket *x = a, *y = b;
    int c = memcmp(x->device, y->device, SM_HOLD_TAG_BYTES);
    if (c)
        return c;
    if (x->hlc != y->hlc)
        return x->hlc < y->hlc ? -1 : 1;
    if ((c = memcmp(x->origin.b, y->origin.b, SM_KEY_BYTES)) != 0)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
s_by_hash(const void *a, const void *b)
{
    const sm_drop_ticket *x = a, *y = b;
    return memcmp(x->hash.b, y->hash.b, SM_HASH_BYTES);
}

static int
s_by_rank(const void *a, const void *b)
{
    const sm_drop_ticket *x = a, *y = b;
    int c = memcmp(x->rank.b, y->rank.b, SM_HASH_BYTES);
    return c ? c : memcmp(x->hash.b, y->hash.b, SM_HASH_BYTES);
}

/*  Rank the counted entries with the secret and sort them by rank.        */
static void
s_rank(sm_drop_result *out, const sm_hash *secret)
{
    for (size_t i = 0; i < out->counted; i++) {
        uint8_t msg[3 * SM_HASH_BYTES];
        memcpy(msg, secret->b, SM_HASH_BYTES);
        memcpy(msg + SM_HASH_BYTES, out->r.b, SM_HASH_BYTES);
        memcpy(msg + 2 * SM_HASH_BYTES, out->tickets[i].hash.b, SM_HASH_BYTES);
        sm_hash_bytes(msg, sizeof msg, &out->tickets[i].rank);
    }
    if (out->counted)
        qsort(out->tickets, out->counted, sizeof *out->tickets, s_by_rank);
    out->ranked = true;
}

/*  sm_drop_compute, also reading (and with check_chains authenticating)
    `extend`'s log up to extend_to, past its head if need be (the stall's
    draw and holds, for verify).                                            */
static int
s_compute(sm_ledger *l, const sm_drop *d, const sm_drop_head *heads, size_t nheads,
          const sm_hash *secret, bool check_chains, sm_drop_result *out,
          sm_id *bad_origin, uint64_t *bad_seq, const sm_id *extend, uint64_t extend_to);

int
sm_drop_compute(sm_ledger *l, const sm_drop *d, const sm_drop_head *heads, size_t nheads,
                const sm_hash *secret, bool check_chains, sm_drop_result *out,
                sm_id *bad_origin, uint64_t *bad_seq)
{
    return s_compute(l, d, heads, nheads, secret, check_chains, out, bad_origin, bad_seq,
                     NULL, 0);
}

static int
s_compute(sm_ledger *l, const sm_drop *d, const sm_drop_head *heads, size_t nheads,
          const sm_hash *secret, bool check_chains, sm_drop_result *out,
          sm_id *bad_origin, uint64_t *bad_seq, const sm_id *extend, uint64_t extend_to)
{
    assert(l && d && (heads || nheads == 0) && out);
    memset(out, 0, sizeof *out);
    s_collect *c = calloc(1, sizeof *c);
    if (!c)
        return SM_ENOMEM;
    c->d = d;
    c->check = check_chains;
    int rc = 0;
    bool extended = false;
    for (size_t i = 0; i <= nheads && rc == 0; i++) {
        if (i == nheads) {         /* the extended origin, if no head named it */
            if (!extend || extended)
                break;
            c->origin = extend;
            c->upto = 0;
            c->read_to = extend_to;
        } else {
            c->origin = &heads[i].origin;
            c->upto = c->read_to = heads[i].seq;
            if (extend && memcmp(extend->b, c->origin->b, SM_KEY_BYTES) == 0) {
                extended = true;
                if (extend_to > c->read_to)
                    c->read_to = extend_to;
            }
        }
        c->next = 1;
        memset(&c->link, 0, sizeof c->link);
        c->err = 0;
        if (c->read_to == 0)
            continue;
        rc = sm_ledger_read(l, c->origin, 1, (size_t) c->read_to, s_collect_each, c);
        if (rc == 0 && c->err == 0 && c->next != c->read_to + 1) {
            c->err = SM_EGAP;      /* this node holds less than the head */
            c->bad_seq = c->next;
        }
        if (rc == 0 && c->err != 0) {
            rc = c->err;
            if (bad_origin)
                *bad_origin = *c->origin;
            if (bad_seq)
                *bad_seq = c->bad_seq;
        }
    }
    if (rc != 0) {
        free(c->t);
        free(c);
        return rc;
    }
    /* One per device: the earliest. */
    size_t n = 0;
    if (c->n) {
        qsort(c->t, c->n, sizeof *c->t, s_by_device);
        for (size_t i = 0; i < c->n; i++)
            if (n == 0 || memcmp(c->t[n - 1].device, c->t[i].device, SM_HOLD_TAG_BYTES) != 0)
                c->t[n++] = c->t[i];
        qsort(c->t, n, sizeof *c->t, s_by_hash);
    }
    sm_hasher hs;
    sm_hasher_init(&hs);
    for (size_t i = 0; i < n; i++)
        sm_hasher_update(&hs, c->t[i].hash.b, SM_HASH_BYTES);
    sm_hasher_final(&hs, &out->r);
    out->tickets = c->t;
    out->counted = n;
    uint64_t most = d->per_shopper ? d->qty / d->per_shopper : 0;
    out->winners = n < most ? n : (size_t) most;
    free(c);
    if (secret)
        s_rank(out, secret);
    return 0;
}

/* ---- appending a draw -------------------------------------------------- */

typedef struct {
    uint64_t seq;
    sm_entry e;
    bool found;
} s_one;

static int
s_one_each(const sm_signed *s, uint64_t seq, void *arg)
{
    s_one *o = arg;
    if (seq == o->seq && sm_entry_decode(s->bytes, s->len, &o->e) == 0)
        o->found = true;
    return 1;
}

/*  Entry `seq` of `origin`, decoded: 0 or SM_ENOTFOUND.                     */
static int
s_read_one(sm_ledger *l, const sm_id *origin, uint64_t seq, s_one *o)
{
    memset(o, 0, sizeof *o);
    o->seq = seq;
    int rc = sm_ledger_read(l, origin, seq, 1, s_one_each, o);
    if (rc != 0)
        return rc;
    return o->found ? 0 : SM_ENOTFOUND;
}

static int
s_read_one_entry(sm_ledger *l, const sm_id *origin, uint64_t seq, sm_entry *e)
{
    s_one *o = malloc(sizeof *o);
    if (!o)
        return SM_ENOMEM;
    int rc = s_read_one(l, origin, seq, o);
    if (rc == 0)
        *e = o->e;
    free(o);
    return rc;
}

static int
s_head_cmp(const void *a, const void *b)
{
    return memcmp(((const sm_drop_head *) a)->origin.b, ((const sm_drop_head *) b)->origin.b,
                  SM_KEY_BYTES);
}

int
sm_drop_draw(sm_ledger *l, const sm_id *self, uint64_t drop_seq, uint64_t now_ms,
             uint64_t *draw_seq)
{
    sm_drop d;
    int rc = sm_drop_get(l, self, drop_seq, &d);
    if (rc != 0)
        return rc;
    if (d.mode != SM_DROP_RAFFLE)
        return SM_ENOTRAFFLE;
    if (d.draw_seq)
        return SM_EDRAWN;
    if (now_ms <= d.closes_ms)
        return SM_EDRAWEARLY;
    sm_id origins[SM_DRAW_HEADS_MAX];
    size_t norigins = 0;
    if ((rc = sm_drop_entries(l, &d, NULL, origins, SM_DRAW_HEADS_MAX, &norigins)) != 0)
        return rc;
    if (norigins > SM_DRAW_HEADS_MAX)
        return SM_ETOOBIG;
    sm_drop_head heads[SM_DRAW_HEADS_MAX];
    size_t nheads = 0;
    for (size_t i = 0; i < norigins; i++) {
        sm_head h;
        if ((rc = sm_ledger_head(l, &origins[i], &h)) != 0)
            return rc;
        if (h.applied == 0)
            continue;
        heads[nheads].origin = origins[i];
        heads[nheads].seq = h.applied;
        nheads++;
    }
    qsort(heads, nheads, sizeof heads[0], s_head_cmp);
    sm_drop_result res;
    if ((rc = sm_drop_compute(l, &d, heads, nheads, NULL, false, &res, NULL, NULL)) != 0)
        return rc;
    sm_units u;
    rc = sm_ledger_units(l, d.sku, self, &u);
    if (rc == 0 && (uint64_t) u.units < (uint64_t) res.winners * d.per_shopper)
        rc = SM_ENOSTOCK;          /* cannot be: the gate kept them (a bug) */
    if (rc != 0)
        goto done;
    sm_body b;
    memset(&b, 0, sizeof b);
    b.kind = SM_KIND_RAFFLE_DRAW;
    b.u.raffle_draw.drop_seq = drop_seq;
    b.u.raffle_draw.head_count = (uint32_t) nheads;
    for (size_t i = 0; i < nheads; i++) {
        b.u.raffle_draw.heads[i].origin = heads[i].origin;
        b.u.raffle_draw.heads[i].seq = heads[i].seq;
    }
    b.u.raffle_draw.winners = (uint32_t) res.winners;
    uint64_t seq = 0;
    if ((rc = sm_ledger_append(l, &b, now_ms, &seq)) != 0)
        goto done;
    if (draw_seq)
        *draw_seq = seq;           /* from here a failure leaves half a draw in the batch */
    /* The secret the ledger revealed, and the draw's time. */
    s_one *one = malloc(sizeof *one);
    if (!one) {
        rc = SM_ENOMEM;
        goto done;
    }
    if ((rc = s_read_one(l, self, seq, one)) != 0) {
        free(one);
        goto done;
    }
    sm_hash secret = one->e.body.u.raffle_draw.secret;
    uint64_t draw_ms = SM_HLC_MS(one->e.hlc);
    free(one);
    s_rank(&res, &secret);
    for (size_t i = 0; i < res.winners && rc == 0; i++) {
        const sm_drop_ticket *t = &res.tickets[i];
        sm_body h;
        memset(&h, 0, sizeof h);
        h.kind = SM_KIND_HOLD;
        sm__strfill(h.u.hold.sku, sizeof h.u.hold.sku, d.sku);
        h.u.hold.qty = d.per_shopper;
        h.u.hold.expires_ms = draw_ms + (uint64_t) d.pickup_minutes * 60000;
        h.u.hold.has_device = true;
        memcpy(h.u.hold.device, t->device, SM_HOLD_TAG_BYTES);
        h.u.hold.has_client = t->has_client;
        memcpy(h.u.hold.client, t->client, SM_HOLD_TAG_BYTES);
        /* The pickup code: only this stall can compute it; another one if
           an open hold here has it. */
        for (uint32_t attempt = 0; attempt < 16; attempt++) {
            uint8_t msg[SM_HASH_BYTES + 4], rnd[SM_RESERVE_CODE_RAND_BYTES];
            memcpy(msg, t->hash.b, SM_HASH_BYTES);
            msg[SM_HASH_BYTES] = (uint8_t) (attempt >> 24);
            msg[SM_HASH_BYTES + 1] = (uint8_t) (attempt >> 16);
            msg[SM_HASH_BYTES + 2] = (uint8_t) (attempt >> 8);
            msg[SM_HASH_BYTES + 3] = (uint8_t) attempt;
            sm_ledger_derive(l, "stallmesh raffle pickup code", msg, sizeof msg, rnd);
            sm_reserve_code(rnd, h.u.hold.code);
            /* At the draw's time, not before it: the draw opened the gate
               at its own hlc, which is ahead of this clock when a peer's
               clock was ahead (the hlc took it up). */
            rc = sm_ledger_append(l, &h, now_ms > draw_ms ? now_ms : draw_ms, NULL);
            if (rc != SM_EHOLDCODE)
                break;
        }
    }
done:
    sm_drop_result_free(&res);
    return rc;
}

/* ---- checking a draw --------------------------------------------------- */

typedef struct {
    const sm_drop *d;
    uint64_t draw_seq;
    sm_entry e;
    sm_entry draw;
    bool found;
} s_find_draw;

static int
s_find_draw_each(const sm_signed *s, uint64_t seq, void *arg)
{
    s_find_draw *f = arg;
    if (sm_entry_decode(s->bytes, s->len, &f->e) != 0)
        return 0;
    if (f->e.body.kind == SM_KIND_RAFFLE_DRAW && f->e.body.u.raffle_draw.drop_seq == f->d->seq) {
        f->draw = f->e;
        f->draw_seq = seq;
        f->found = true;
        return 1;
    }
    return 0;
}

static int
s_why(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int
s_why(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why && cap)
        vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return SM_EDRAWBAD;
}

int
sm_drop_verify(sm_ledger *l, const sm_id *origin, uint64_t seq, char *why, size_t cap,
               sm_drop_result *res_out)
{
    if (why && cap)
        why[0] = '\0';
    if (res_out)
        memset(res_out, 0, sizeof *res_out);
    char oid[SM_ID_HEX_BYTES + 1];
    /* The drop, from the log. */
    s_one *one = malloc(sizeof *one);
    s_find_draw *f = malloc(sizeof *f);
    sm_drop_result res;
    memset(&res, 0, sizeof res);
    int rc = one && f ? 0 : SM_ENOMEM;
    if (rc != 0)
        goto done;
    rc = s_read_one(l, origin, seq, one);
    if (rc == SM_ENOTFOUND || (rc == 0 && one->e.body.kind != SM_KIND_DROP)) {
        rc = SM_ENODROP;
        goto done;
    }
    if (rc != 0)
        goto done;
    const __typeof__(one->e.body.u.drop) *b = &one->e.body.u.drop;
    if (b->mode != SM_DROP_RAFFLE) {
        rc = SM_ENOTRAFFLE;
        goto done;
    }
    sm_drop d;
    sm_drop_of_entry(&d, origin, seq, &one->e);
    /* Its draw: the first raffle.draw naming it in the stall's log. */
    memset(f, 0, sizeof *f);
    f->d = &d;
    if ((rc = sm_ledger_read(l, origin, seq + 1, SIZE_MAX, s_find_draw_each, f)) != 0)
        goto done;
    if (!f->found) {
        rc = s_why(why, cap, "the drop has no draw in this node's copy of its stall's log");
        goto done;
    }
    const __typeof__(f->draw.body.u.raffle_draw) *dr = &f->draw.body.u.raffle_draw;
    sm_hash h;
    sm_hash_bytes(dr->secret.b, SM_HASH_BYTES, &h);
    if (memcmp(h.b, d.commitment.b, SM_HASH_BYTES) != 0) {
        rc = s_why(why, cap, "the draw's secret (entry %llu) does not match the drop's commitment",
                   (unsigned long long) f->draw_seq);
        goto done;
    }
    if (SM_HLC_MS(f->draw.hlc) <= d.closes_ms) {
        rc = s_why(why, cap, "the draw (entry %llu) was made before the raffle closed",
                   (unsigned long long) f->draw_seq);
        goto done;
    }
    /* The stall's log up to the draw's last hold is authenticated along
       with the entries: its head for the check is the last hold. */
    sm_drop_head heads[SM_DRAW_HEADS_MAX + 1];
    size_t nheads = dr->head_count;
    for (size_t i = 0; i < nheads; i++) {
        heads[i].origin = dr->heads[i].origin;
        heads[i].seq = dr->heads[i].seq;
    }
    sm_id bad_origin;
    uint64_t bad_seq = 0;
    rc = s_compute(l, &d, heads, nheads, &dr->secret, true, &res, &bad_origin, &bad_seq,
                   origin, f->draw_seq + dr->winners);
    if (rc != 0 && rc == SM_EGAP && memcmp(bad_origin.b, origin->b, SM_KEY_BYTES) == 0
        && bad_seq > f->draw_seq) {
        rc = s_why(why, cap, "this node holds the stall's log only below entry %llu: the "
                   "draw's holds are missing; let it sync, then check again",
                   (unsigned long long) bad_seq);
        goto done;
    }
    if (rc != 0) {
        sm_id_format(&bad_origin, oid);
        sm_head bh;
        if (rc == SM_EGAP && sm_ledger_head(l, &bad_origin, &bh) == 0 && bh.cap < bad_seq) {
            /* Past the origin's cap (its log forked, or it was revoked):
               no sync brings the entry here any more.  A node that stored
               it before the cap can still check the draw. */
            uint64_t fork_seq;
            bool forked = sm_ledger_fork_at(l, &bad_origin, &fork_seq) == 0;
            s_why(why, cap, "the draw names entry %llu of node %s, which this node does not "
                  "hold and never will: that node's entries after %llu are void (%s); a node "
                  "that stored the entry before can check this draw", (unsigned long long) bad_seq,
                  oid, (unsigned long long) bh.cap, forked ? "its log forked" : "it was revoked");
            rc = forked ? SM_EFORK : SM_EREVOKED;
        } else if (rc == SM_EGAP)
            rc = s_why(why, cap, "this node holds node %s's log only below entry %llu, which "
                       "the draw names: let it sync, then check again", oid,
                       (unsigned long long) bad_seq);
        else if (rc != SM_ENOMEM && rc != SM_EIO && rc != SM_ENOSPC)
            rc = s_why(why, cap, "entry %llu of node %s does not verify (%s)",
                       (unsigned long long) bad_seq, oid, sm_strerror(rc));
        goto done;
    }
    if (res.winners != dr->winners) {
        rc = s_why(why, cap, "the draw names %u winners; its %zu counted entries give %zu",
                   dr->winners, res.counted, res.winners);
        goto done;
    }
    uint64_t expires = SM_HLC_MS(f->draw.hlc) + (uint64_t) d.pickup_minutes * 60000;
    for (size_t i = 0; i < res.winners; i++) {
        uint64_t hs = f->draw_seq + 1 + i;
        if ((rc = s_read_one(l, origin, hs, one)) != 0) {
            rc = s_why(why, cap, "the hold for winner %zu (entry %llu) is missing", i + 1,
                       (unsigned long long) hs);
            goto done;
        }
        const sm_body *hb = &one->e.body;
        const sm_drop_ticket *t = &res.tickets[i];
        if (hb->kind != SM_KIND_HOLD || strcmp(hb->u.hold.sku, d.sku) != 0
            || hb->u.hold.qty != d.per_shopper || hb->u.hold.more_count
            || !hb->u.hold.has_device
            || memcmp(hb->u.hold.device, t->device, SM_HOLD_TAG_BYTES) != 0
            || hb->u.hold.expires_ms != expires || !hb->u.hold.code[0]) {
            char dev[2 * SM_HOLD_TAG_BYTES + 1];
            sm_hex_encode(t->device, SM_HOLD_TAG_BYTES, dev);
            rc = s_why(why, cap, "entry %llu is not the hold winner %zu (device %s) should have: "
                       "%u of %s until %llu with a pickup code", (unsigned long long) hs,
                       i + 1, dev, d.per_shopper, d.sku, (unsigned long long) expires);
            goto done;
        }
    }
    rc = 0;
done:
    if (rc == 0 && res_out)
        *res_out = res;
    else
        sm_drop_result_free(&res);
    free(one);
    free(f);
    return rc;
}

/* ---- a drop's ledger --------------------------------------------------- */

int
sm_held_push(sm_held_list *l, const sm_held *h)
{
    assert(l && h && (l->n == 0 || l->v[l->n - 1].seq < h->seq));
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->v, cap * sizeof *l->v);
        if (!p)
            return SM_ENOMEM;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = *h;
    return 0;
}

sm_held *
sm_held_find(const sm_held_list *l, uint64_t seq)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->v[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n && l->v[lo].seq == seq ? &l->v[lo] : NULL;
}

void
sm_held_free(sm_held_list *l)
{
    free(l->v);
    *l = (sm_held_list) { 0 };
}

bool
sm_drop_take_of(const sm_drop *d, const sm_entry *e, uint64_t seq, sm_drop_take *t)
{
    const sm_body *b = &e->body;
    memset(t, 0, sizeof *t);
    t->kind = b->kind;
    t->seq = seq;
    t->hlc = e->hlc;
    if (b->kind == SM_KIND_RELEASE) {
        t->hold_seq = b->u.release.hold_seq;
        return true;
    }
    if ((b->kind != SM_KIND_HOLD && b->kind != SM_KIND_SALE) || SM_HLC_MS(e->hlc) < d->starts_ms)
        return false;
    if (b->kind == SM_KIND_SALE) {
        for (uint32_t i = 0; i < b->u.sale.line_count; i++)
            if (strcmp(b->u.sale.lines[i].sku, d->sku) == 0)
                t->qty = b->u.sale.lines[i].qty;
        t->hold_seq = b->u.sale.hold_seq;
        return t->qty > 0;
    }
    for (uint32_t i = 0; i < sm_hold_body_lines(b); i++) {
        const char *sku;
        uint32_t qty;
        sm_hold_body_line(b, i, &sku, &qty);
        if (strcmp(sku, d->sku) == 0)
            t->qty = qty;
    }
    t->has_device = b->u.hold.has_device;
    t->has_client = b->u.hold.has_client;
    memcpy(t->device, b->u.hold.device, SM_HOLD_TAG_BYTES);
    memcpy(t->client, b->u.hold.client, SM_HOLD_TAG_BYTES);
    sm__strfill(t->code, sizeof t->code, b->u.hold.code);
    t->expires_ms = b->u.hold.expires_ms;
    return t->qty > 0;
}

int
sm_drop_fold_entry(sm_drop_fold *f, const sm_drop *d, const sm_entry *e, uint64_t seq,
                   sm_drop_take *t, const sm_held **held)
{
    assert(f && d && e && t && held);
    *held = NULL;
    if (!sm_drop_take_of(d, e, seq, t))
        return 0;
    if (t->kind == SM_KIND_HOLD) {
        sm_held h = { .seq = seq, .qty = t->qty, .expires_ms = t->expires_ms,
                      .has_device = t->has_device, .has_client = t->has_client };
        memcpy(h.device, t->device, SM_HOLD_TAG_BYTES);
        memcpy(h.client, t->client, SM_HOLD_TAG_BYTES);
        int rc = sm_held_push(&f->holds, &h);
        if (rc != 0)
            return rc;
        f->taken += t->qty;
        *held = &f->holds.v[f->holds.n - 1];
        return 1;
    }
    const sm_held *h = t->hold_seq ? sm_held_find(&f->holds, t->hold_seq) : NULL;
    if (t->kind == SM_KIND_RELEASE) {
        if (!h)
            return 0;               /* not one of d's holds */
        t->qty = h->qty;
        f->taken -= h->qty;
        *held = h;
        return 1;
    }
    uint32_t was_held = h ? h->qty : 0;
    if (t->qty > was_held)
        f->taken += t->qty - was_held;
    return 1;
}

void
sm_drop_fold_free(sm_drop_fold *f)
{
    sm_held_free(&f->holds);
    f->taken = 0;
}

typedef struct {
    const sm_drop *d;
    const uint8_t *device, *client;
    sm_drop_take_fn cb;
    void *arg;
    sm_entry e;
    sm_drop_fold fold;
    uint64_t device_units, client_units;
    size_t count;
    uint64_t last_seq;         /* the last entry read */
    bool capped;               /* SM_DROP_LEDGER_MAX reached: read no further */
    int err;
} s_walk;

static int
s_walk_each(const sm_signed *s, uint64_t seq, void *arg)
{
    s_walk *w = arg;
    w->last_seq = seq;
    if (sm_entry_decode(s->bytes, s->len, &w->e) != 0)
        return 0;
    sm_drop_take t;
    const sm_held *h;
    int rc = sm_drop_fold_entry(&w->fold, w->d, &w->e, seq, &t, &h);
    if (rc < 0) {
        w->err = rc;
        return 1;
    }
    if (rc == 0)
        return 0;
    if (h) {
        /* Units the device and the address asked about now hold (a hold)
           or got back (a release). */
        bool dev = w->device && h->has_device
                   && memcmp(h->device, w->device, SM_HOLD_TAG_BYTES) == 0;
        bool cli = w->client && h->has_client
                   && memcmp(h->client, w->client, SM_HOLD_TAG_BYTES) == 0;
        if (t.kind == SM_KIND_HOLD) {
            w->device_units += dev ? h->qty : 0;
            w->client_units += cli ? h->qty : 0;
        } else {
            w->device_units -= dev ? h->qty : 0;
            w->client_units -= cli ? h->qty : 0;
        }
    }
    sm_entry_hash(s->bytes, s->len, &t.hash);
    if (++w->count > SM_DROP_LEDGER_MAX) {
        w->capped = true;
        return 1;
    }
    if (w->cb && w->cb(&t, w->arg) != 0)
        return 1;
    return 0;
}

int
sm_drop_ledger(sm_ledger *l, const sm_drop *d, const uint8_t *device, const uint8_t *client,
               sm_drop_take_fn cb, void *arg, uint64_t *taken, uint64_t *device_units,
               uint64_t *client_units)
{
    s_walk *w = calloc(1, sizeof *w);
    if (!w)
        return SM_ENOMEM;
    w->d = d;
    w->device = device;
    w->client = client;
    w->cb = cb;
    w->arg = arg;
    int rc = sm_ledger_read(l, &d->origin, d->seq + 1, SIZE_MAX, s_walk_each, w);
    if (rc == 0)
        rc = w->err;
    if (taken)
        *taken = w->fold.taken;
    if (device_units)
        *device_units = w->device_units;
    if (client_units)
        *client_units = w->client_units;
    sm_drop_fold_free(&w->fold);
    free(w);
    return rc;
}

/*  Kept walks (drop.h): per drop, the walk so far (its fold), the next
    seq of the stall's log to read and the hash of the entry before it.     */
enum { S_WALKS_MAX = 32 };

typedef struct {
    bool used;
    sm_drop d;                 /* the drop as walked (its walk points here) */
    s_walk w;
    uint64_t next;             /* the next seq to read */
    sm_hash last;              /* the hash of entry next - 1, once past the drop */
    uint64_t used_at;          /* for eviction: the least recently used goes */
} s_kept;

struct sm_drop_walks {
    s_kept k[S_WALKS_MAX];
    uint64_t clock;
};

sm_drop_walks *
sm_drop_walks_new(void)
{
    return calloc(1, sizeof(sm_drop_walks));
}

static void
s_kept_reset(s_kept *k, const sm_drop *d)
{
    sm_drop_fold_free(&k->w.fold);
    memset(k, 0, sizeof *k);
    k->used = true;
    k->d = *d;
    k->w.d = &k->d;
    k->next = d->seq + 1;
}

void
sm_drop_walks_destroy(sm_drop_walks **self_p)
{
    if (!self_p || !*self_p)
        return;
    for (size_t i = 0; i < S_WALKS_MAX; i++)
        sm_drop_fold_free(&(*self_p)->k[i].w.fold);
    free(*self_p);
    *self_p = NULL;
}

typedef struct {
    sm_hash h;
    bool found;
} s_hash_one;

static int
s_hash_one_each(const sm_signed *s, uint64_t seq, void *arg)
{
    (void) seq;
    s_hash_one *o = arg;
    sm_entry_hash(s->bytes, s->len, &o->h);
    o->found = true;
    return 1;
}

/*  The walk kept for d, found or made (the least recently used one goes). */
static s_kept *
s_kept_for(sm_drop_walks *walks, const sm_drop *d)
{
    s_kept *k = NULL, *oldest = &walks->k[0];
    for (size_t i = 0; i < S_WALKS_MAX && !k; i++) {
        s_kept *c = &walks->k[i];
        if (c->used && c->d.seq == d->seq && memcmp(c->d.origin.b, d->origin.b, SM_KEY_BYTES) == 0)
            k = c;
        else if (!c->used || (oldest->used && c->used_at < oldest->used_at))
            oldest = c;
    }
    /* The walk depends on the drop's sku and start only; a drop record
       seen anew with either changed starts over. */
    if (!k || k->d.starts_ms != d->starts_ms || strcmp(k->d.sku, d->sku) != 0)
        s_kept_reset(k = k ? k : oldest, d);
    k->d = *d;
    k->used_at = ++walks->clock;
    return k;
}

int
sm_drop_taken(sm_drop_walks *walks, sm_ledger *l, const sm_drop *d, uint64_t *taken)
{
    assert(l && d && taken);
    if (!walks)
        return sm_drop_ledger(l, d, NULL, NULL, NULL, NULL, taken, NULL, NULL);
    s_kept *k = s_kept_for(walks, d);
    int rc = 0;
    if (k->next > d->seq + 1) {
        /* The log as read so far is still this node's while its last
           entry is (each entry carries the hash of the one before). */
        s_hash_one o = { .found = false };
        rc = sm_ledger_read(l, &d->origin, k->next - 1, 1, s_hash_one_each, &o);
        if (rc != 0)
            return rc;
        if (!o.found || memcmp(o.h.b, k->last.b, SM_HASH_BYTES) != 0)
            s_kept_reset(k, d);
    }
    if (!k->w.capped) {
        k->w.last_seq = 0;
        k->w.err = 0;
        uint64_t from = k->next;
#if SM_SIM_BUG == 17
        from += from > d->seq + 1;     /* planted: a kept walk skips an entry */
#endif
        rc = sm_ledger_read(l, &d->origin, from, SIZE_MAX, s_walk_each, &k->w);
        if (rc == 0)
            rc = k->w.err;
        if (rc == 0 && k->w.last_seq >= from) {
            s_hash_one o = { .found = false };
            rc = sm_ledger_read(l, &d->origin, k->w.last_seq, 1, s_hash_one_each, &o);
            if (rc == 0 && o.found) {
                k->next = k->w.last_seq + 1;
                k->last = o.h;
            }
        }
        if (rc != 0) {
            s_kept_reset(k, d);        /* read again in full next time */
            return rc;
        }
    }
    *taken = k->w.fold.taken;
    return 0;
}

const char *
sm_drop_phase(const sm_drop *d, uint64_t now_ms, uint64_t units_left)
{
    if (d->mode == SM_DROP_RAFFLE) {
        if (d->draw_seq)
            return "drawn";
        if (now_ms < d->starts_ms)
            return "upcoming";
        return now_ms <= d->closes_ms ? "live" : "drawing";
    }
    if (now_ms < d->starts_ms)
        return "upcoming";
    return units_left ? "live" : "closed";
}
