/*  The first-come drops' tallies of one stall.  See tally.h.

    Each drop keeps its ledger's fold (drop.h: the units taken and its
    holds, the rule sm_drop_ledger counts by) and two open-addressing
    tables, device tag -> units and client tag -> units.  The stall's
    shoppers keep its open holds that carry a tag (seq ascending) and the
    same two tables over all their lines' units.                            */
#include "tally.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "stallmesh/error.h"

typedef struct {
    uint8_t tag[SM_HOLD_TAG_BYTES];
    uint32_t units;
    bool used;
} s_slot;

typedef struct {
    s_slot *slots;
    size_t cap, n;             /* cap a power of two, or 0 */
} s_tags;

typedef struct {
    sm_drop d;
    bool built;                /* its tallies cover the log up to `upto` */
    sm_drop_fold fold;
    s_tags devices, clients;
} s_drop;

/*  The stall's open holds that name a shopper, for the [holds] per_device
    and per_address limits: every line's units count, a hold stops counting
    when a release or a sale ends it.                                       */
typedef struct {
    bool built;                /* listed from the state, kept up to `upto` */
    sm_held_list holds;        /* qty: the units of all its lines; 0: ended */
    size_t nended;
    s_tags devices, clients;
} s_shoppers;

struct sm_tally {
    sm_ledger *l;
    sm_id stall;
    bool loaded;               /* drops listed, upto set */
    uint64_t upto;             /* own log read up to this seq */
    s_drop *drops;
    size_t ndrops, cap;
    s_shoppers shoppers;
    sm_entry e;                /* scratch for decoding */
    int err;
};

/* ---- tag tables ------------------------------------------------------------ */

static size_t
s_tag_hash(const uint8_t tag[SM_HOLD_TAG_BYTES])
{
    /* Tags are keyed BLAKE2b outputs (reserve.h): their bytes are uniform. */
    uint64_t h;
    memcpy(&h, tag, sizeof h);
    return (size_t) (h ^ (h >> 29));
}

static s_slot *
s_tag_find(s_tags *t, const uint8_t tag[SM_HOLD_TAG_BYTES])
{
    if (!t->cap)
        return NULL;
    for (size_t i = s_tag_hash(tag) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->slots[i].used || memcmp(t->slots[i].tag, tag, SM_HOLD_TAG_BYTES) == 0)
            return &t->slots[i];
    }
}

static int
s_tag_grow(s_tags *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    s_slot *old = t->slots;
    size_t ocap = t->cap;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots) {
        t->slots = old;
        return SM_ENOMEM;
    }
    t->cap = cap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].used)
            *s_tag_find(t, old[i].tag) = old[i];
    free(old);
    return 0;
}

static uint32_t
s_tag_units(s_tags *t, const uint8_t tag[SM_HOLD_TAG_BYTES])
{
    s_slot *s = s_tag_find(t, tag);
    return s && s->used ? s->units : 0;
}

/*  Add (or, negative, take back) units of a tag.                            */
static int
s_tag_add(s_tags *t, const uint8_t tag[SM_HOLD_TAG_BYTES], int64_t units)
{
    if ((t->n + 1) * 2 > t->cap) {
        int rc = s_tag_grow(t);
        if (rc != 0)
            return rc;
    }
    s_slot *s = s_tag_find(t, tag);
    if (!s->used) {
        memcpy(s->tag, tag, SM_HOLD_TAG_BYTES);
        s->used = true;
        t->n++;
    }
    s->units = (uint32_t) ((int64_t) s->units + units);
    return 0;
}

/* ---- one drop's tallies ----------------------------------------------------- */

static void
s_drop_clear(s_drop *d)
{
    sm_drop_fold_free(&d->fold);
    free(d->devices.slots);
    free(d->clients.slots);
    d->devices = (s_tags) { 0 };
    d->clients = (s_tags) { 0 };
    d->built = false;
}

/*  One entry of the stall's log, for drop d, as sm_drop_ledger counts it;
    the units its hold's shopper holds (or got back) by tag.               */
static int
s_drop_fold(s_drop *d, const sm_entry *e, uint64_t seq)
{
    sm_drop_take t;
    const sm_held *h;
    int rc = sm_drop_fold_entry(&d->fold, &d->d, e, seq, &t, &h);
    if (rc < 0)
        return rc;
    if (rc == 0 || !h)
        return 0;               /* none of d's, or a sale: no shopper's units move */
    int64_t units = t.kind == SM_KIND_HOLD ? (int64_t) h->qty : -(int64_t) h->qty;
    rc = 0;
    if (h->has_device)
        rc = s_tag_add(&d->devices, h->device, units);
    if (rc == 0 && h->has_client)
        rc = s_tag_add(&d->clients, h->client, units);
    return rc;
}

/* ---- the stall's shoppers --------------------------------------------------- */

static void
s_shoppers_clear(s_shoppers *sh)
{
    sm_held_free(&sh->holds);
    free(sh->devices.slots);
    free(sh->clients.slots);
    *sh = (s_shoppers) { 0 };
}

/*  A hold's units held by its device and its address (sign 1), or given
    back (sign -1).                                                         */
static int
s_shopper_count(s_shoppers *sh, const sm_held *h, int sign)
{
    int rc = 0;
    if (h->has_device)
        rc = s_tag_add(&sh->devices, h->device, sign * (int64_t) h->qty);
    if (rc == 0 && h->has_client)
        rc = s_tag_add(&sh->clients, h->client, sign * (int64_t) h->qty);
    return rc;
}

static int
s_shopper_add(s_shoppers *sh, const sm_held *h)
{
    if (!h->has_device && !h->has_client)
        return 0;                   /* nobody's to count */
    int rc = sm_held_push(&sh->holds, h);
    return rc != 0 ? rc : s_shopper_count(sh, h, 1);
}

/*  Drop the ended holds from the list once they are most of it.           */
static void
s_shoppers_compact(s_shoppers *sh)
{
    if (sh->nended < 64 || sh->nended * 2 < sh->holds.n)
        return;
    size_t at = 0;
    for (size_t i = 0; i < sh->holds.n; i++)
        if (sh->holds.v[i].qty)
            sh->holds.v[at++] = sh->holds.v[i];
    sh->holds.n = at;
    sh->nended = 0;
}

/*  One entry of the stall's log: a hold with a tag counts; a release or a
    sale of a counted hold ends it.                                         */
static int
s_shoppers_fold(s_shoppers *sh, const sm_entry *e, uint64_t seq)
{
    const sm_body *b = &e->body;
    if (b->kind == SM_KIND_HOLD) {
        sm_held h = { .seq = seq, .expires_ms = b->u.hold.expires_ms,
                      .has_device = b->u.hold.has_device,
                      .has_client = b->u.hold.has_client };
        for (uint32_t i = 0; i < sm_hold_body_lines(b); i++) {
            const char *sku;
            uint32_t qty;
            sm_hold_body_line(b, i, &sku, &qty);
            h.qty += qty;
        }
        memcpy(h.device, b->u.hold.device, SM_HOLD_TAG_BYTES);
        memcpy(h.client, b->u.hold.client, SM_HOLD_TAG_BYTES);
        return s_shopper_add(sh, &h);
    }
    uint64_t hold_seq = b->kind == SM_KIND_RELEASE ? b->u.release.hold_seq
                      : b->kind == SM_KIND_SALE    ? b->u.sale.hold_seq : 0;
    sm_held *h = hold_seq ? sm_held_find(&sh->holds, hold_seq) : NULL;
    if (!h || !h->qty)
        return 0;
    int rc = s_shopper_count(sh, h, -1);
    h->qty = 0;
    sh->nended++;
    s_shoppers_compact(sh);
    return rc;
}

static int
s_shoppers_list_each(const sm_hold *hold, void *arg)
{
    sm_tally *self = arg;
    sm_held h = { .seq = hold->seq, .expires_ms = hold->expires_ms,
                  .has_device = hold->has_device, .has_client = hold->has_client };
    for (uint32_t i = 0; i < hold->line_count && i < SM_HOLD_LINES_MAX; i++)
        h.qty += hold->lines[i].qty;
    memcpy(h.device, hold->device, SM_HOLD_TAG_BYTES);
    memcpy(h.client, hold->client, SM_HOLD_TAG_BYTES);
    self->err = s_shopper_add(&self->shoppers, &h);
    return self->err != 0;
}

/*  The stall's open holds, listed from the state once the log is read up
    to its head (the state then says the same as the log up to `upto`).    */
static int
s_shoppers_build(sm_tally *self)
{
    if (self->shoppers.built)
        return 0;
    self->err = 0;
    int rc = sm_ledger_holds_each(self->l, &self->stall, s_shoppers_list_each, self);
    if (rc == 0)
        rc = self->err;
    if (rc != 0) {
        s_shoppers_clear(&self->shoppers);
        return rc;
    }
    self->shoppers.built = true;
    return 0;
}

/*  Units of the open holds of `tag` (a device's, or an address's) not
    expired at now_ms: what sm_reserve_usage counts, the holds the sweep is
    about to release left out.                                              */
static uint64_t
s_shopper_open_units(const s_shoppers *sh, bool device, const uint8_t tag[SM_HOLD_TAG_BYTES],
                     uint64_t now_ms)
{
    uint64_t units = 0;
    for (size_t i = 0; i < sh->holds.n; i++) {
        const sm_held *h = &sh->holds.v[i];
        if (!h->qty || h->expires_ms <= now_ms)
            continue;
        if (device ? h->has_device && memcmp(h->device, tag, SM_HOLD_TAG_BYTES) == 0
                   : h->has_client && memcmp(h->client, tag, SM_HOLD_TAG_BYTES) == 0)
            units += h->qty;
    }
    return units;
}

/* ---- the stall's drops ------------------------------------------------------ */

static int
s_add_drop(sm_tally *self, const sm_drop *d, bool built)
{
    if (self->ndrops == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 8;
        void *p = realloc(self->drops, cap * sizeof *self->drops);
        if (!p)
            return SM_ENOMEM;
        self->drops = p;
        self->cap = cap;
    }
    s_drop *x = &self->drops[self->ndrops++];
    memset(x, 0, sizeof *x);
    x->d = *d;
    x->built = built;
    return 0;
}

static int
s_list_each(const sm_drop *d, void *arg)
{
    sm_tally *self = arg;
    if (d->mode != SM_DROP_FIRST_COME
        || memcmp(d->origin.b, self->stall.b, SM_KEY_BYTES) != 0)
        return 0;
    self->err = s_add_drop(self, d, false);
    return self->err != 0;
}

/*  A drop entry read from the own log: a new first-come drop, empty.     */
static int
s_new_drop(sm_tally *self, uint64_t seq)
{
    const __typeof__(self->e.body.u.drop) *b = &self->e.body.u.drop;
    if (b->mode != SM_DROP_FIRST_COME)
        return 0;
    sm_drop d;
    sm_drop_of_entry(&d, &self->stall, seq, &self->e);
    return s_add_drop(self, &d, true);
}

static int
s_read_each(const sm_signed *s, uint64_t seq, void *arg)
{
    sm_tally *self = arg;
    self->upto = seq;
    if (sm_entry_decode(s->bytes, s->len, &self->e) != 0)
        return 0;
    if (self->e.body.kind == SM_KIND_DROP) {
        self->err = s_new_drop(self, seq);
        return self->err != 0;
    }
    if (self->shoppers.built)
        self->err = s_shoppers_fold(&self->shoppers, &self->e, seq);
    for (size_t i = 0; i < self->ndrops && self->err == 0; i++)
        if (self->drops[i].built)
            self->err = s_drop_fold(&self->drops[i], &self->e, seq);
    return self->err != 0;
}

/*  Read the own log from upto+1 to its head (listing the drops first, once). */
static int
s_catch_up(sm_tally *self)
{
    sm_head head;
    int rc = sm_ledger_head(self->l, &self->stall, &head);
    if (rc != 0)
        return rc;
    if (self->loaded && head.seq < self->upto)
        sm_tally_reset(self);      /* the log went back: never here, but safe */
    if (!self->loaded) {
        self->err = 0;
        rc = sm_drop_each(self->l, s_list_each, self);
        if (rc == 0)
            rc = self->err;
        if (rc != 0) {
            sm_tally_reset(self);
            return rc;
        }
        self->upto = head.seq;
        self->loaded = true;
    }
    if (head.seq <= self->upto)
        return 0;
    self->err = 0;
    rc = sm_ledger_read(self->l, &self->stall, self->upto + 1, head.seq - self->upto,
                        s_read_each, self);
    if (rc == 0)
        rc = self->err;
    if (rc != 0)
        sm_tally_reset(self);
    return rc;
}

typedef struct {
    sm_tally *self;
    s_drop *d;
    int err;
} s_builder;

static int
s_build_each(const sm_signed *s, uint64_t seq, void *arg)
{
    s_builder *b = arg;
    if (sm_entry_decode(s->bytes, s->len, &b->self->e) != 0)
        return 0;
    b->err = s_drop_fold(b->d, &b->self->e, seq);
    return b->err != 0;
}

/*  A drop listed at load: its tallies from one walk of its ledger.        */
static int
s_build(sm_tally *self, s_drop *d)
{
    if (d->built)
        return 0;
    s_builder b = { self, d, 0 };
    int rc = 0;
    if (self->upto > d->d.seq)
        rc = sm_ledger_read(self->l, &self->stall, d->d.seq + 1, self->upto - d->d.seq,
                            s_build_each, &b);
    if (rc == 0)
        rc = b.err;
    if (rc != 0) {
        s_drop_clear(d);
        return rc;
    }
    d->built = true;
    return 0;
}

/*  The stall's first-come drop of sku started latest by now_ms, or NULL.  */
static s_drop *
s_live(sm_tally *self, const char *sku, uint64_t now_ms)
{
    s_drop *best = NULL;
    for (size_t i = 0; i < self->ndrops; i++) {
        s_drop *d = &self->drops[i];
        if (strcmp(d->d.sku, sku) != 0 || d->d.starts_ms > now_ms)
            continue;
        if (!best || d->d.starts_ms > best->d.starts_ms)
            best = d;
    }
    return best;
}

/* ---- the API ------------------------------------------------------------------ */

sm_tally *
sm_tally_new(sm_ledger *l, const sm_id *stall)
{
    assert(l && stall);
    sm_tally *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->l = l;
    self->stall = *stall;
    return self;
}

void
sm_tally_reset(sm_tally *self)
{
    assert(self);
    for (size_t i = 0; i < self->ndrops; i++)
        s_drop_clear(&self->drops[i]);
    free(self->drops);
    self->drops = NULL;
    self->ndrops = self->cap = 0;
    s_shoppers_clear(&self->shoppers);
    self->loaded = false;
    self->upto = 0;
}

void
sm_tally_free(sm_tally **self_p)
{
    assert(self_p);
    if (!*self_p)
        return;
    sm_tally_reset(*self_p);
    free(*self_p);
    *self_p = NULL;
}

/*  One line against drop d's caps.                                         */
static int
s_check_line(s_drop *d, const sm_body *hold, const char *sku, uint32_t qty,
             sm_drop_refusal *why)
{
    uint64_t dev = hold->u.hold.has_device ? s_tag_units(&d->devices, hold->u.hold.device) : 0;
    uint64_t cli = hold->u.hold.has_client ? s_tag_units(&d->clients, hold->u.hold.client) : 0;
    why->drop = d->d;
    why->max = d->d.per_shopper;
    sm__strfill(why->sku, sizeof why->sku, sku);
    if (hold->u.hold.has_device && dev + qty > d->d.per_shopper) {
        why->limit = "device";
        why->wanted = dev + qty;
        return SM_EDROPLIMIT;
    }
    if (hold->u.hold.has_client && cli + qty > d->d.per_shopper) {
        why->limit = "address";
        why->wanted = cli + qty;
        return SM_EDROPLIMIT;
    }
    if (d->fold.taken + qty > d->d.qty) {
        why->limit = "qty";
        why->max = d->d.qty;
        why->wanted = d->fold.taken + qty;
        return SM_ENOSTOCK;
    }
    return 0;
}

int
sm_tally_check(sm_tally *self, const sm_body *hold, uint64_t now_ms, sm_drop_refusal *why)
{
    assert(self && hold && hold->kind == SM_KIND_HOLD && why);
    memset(why, 0, sizeof *why);
    int rc = s_catch_up(self);
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < sm_hold_body_lines(hold); i++) {
        const char *sku;
        uint32_t qty;
        sm_hold_body_line(hold, i, &sku, &qty);
        s_drop *d = s_live(self, sku, now_ms);
        if (!d)
            continue;
        if ((rc = s_build(self, d)) != 0)
            return rc;
        if ((rc = s_check_line(d, hold, sku, qty, why)) != 0)
            return rc;
    }
    memset(why, 0, sizeof *why);
    return 0;
}

int
sm_tally_check_shopper(sm_tally *self, const sm_reserve_limits *lim_in, const sm_body *hold,
                       uint64_t now_ms, sm_reserve_refusal *why)
{
    assert(self && hold && hold->kind == SM_KIND_HOLD && why);
    memset(why, 0, sizeof *why);
    const __typeof__(hold->u.hold) *b = &hold->u.hold;
    if (!b->has_device && !b->has_client)
        return 0;
    int rc = s_catch_up(self);
    if (rc == 0)
        rc = s_shoppers_build(self);
    if (rc != 0)
        return rc;
    /* Only what others hold is counted here; a reservation's own size
       (max_units, max_per_sku) is the web thread's check. */
    sm_reserve_limits lim = sm_reserve_limits_or_default(lim_in);
    lim.max_units = lim.max_per_sku = UINT32_MAX;
    s_shoppers *sh = &self->shoppers;
    uint64_t dev = b->has_device ? s_tag_units(&sh->devices, b->device) : 0;
    uint64_t cli = b->has_client ? s_tag_units(&sh->clients, b->client) : 0;
    if (sm_reserve_check(&lim, hold, dev, cli, why) == 0)
        return 0;
    /* Over by the tallies, which still count the expired holds the sweep
       has not released yet: count as the web thread does. */
    dev = b->has_device ? s_shopper_open_units(sh, true, b->device, now_ms) : 0;
    cli = b->has_client ? s_shopper_open_units(sh, false, b->client, now_ms) : 0;
    rc = sm_reserve_check(&lim, hold, dev, cli, why);
    if (rc == 0)
        memset(why, 0, sizeof *why);
    return rc;
}
