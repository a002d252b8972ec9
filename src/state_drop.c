/*  The state of drops and raffles (proto/log.md, drop, raffle.entry,
    raffle.draw): what the log's drop entries of the long form, the raffle
    entries and the draws leave in the state.

    - A drop of the long form names units its stall already holds (a local
      append checks they are there) and closes its sku at that stall until
      it starts (first-come) or until it is drawn (raffle): the stock
      record's gate (drop_starts_ms), which every local decrement checks
      (state.c, s_local_sellable), by the stall's own clock.
    - Raffle entries are kept per drop, by device and by client address
      (SM_DB_RAFFLE), whatever node appended them and whether or not the
      drop has arrived yet: an entry depends on nothing else in the state,
      so entries apply in any order.  The local checks (the drop is known,
      open for entries, one entry per device and per address here) are the
      accepting node's.
    - A draw, by the drop's own stall, marks the drop drawn and opens the
      gate: the holds for the winners follow it in the same log.  Which
      entries count and who won is computed from the log (drop.c), never
      from these records, so that any node can check it.

    Every function checks first and writes last: a refusal writes nothing. */
#include "state.h"

#include <assert.h>
#include <string.h>

#include "bytes.h"
#include "stallmesh/error.h"

static bool
s_drop_ok(const sm__drop_rec *r)
{
    const char *nul = memchr(r->sku, 0, sizeof r->sku);
    return nul && nul != r->sku && r->qty >= 1 && r->qty <= SM_QTY_MAX
        && (r->mode == SM_DROP_FIRST_COME || r->mode == SM_DROP_RAFFLE)
        && r->per_shopper >= 1 && r->per_shopper <= r->qty
        && (r->draw_seq == 0 || r->mode == SM_DROP_RAFFLE);
}

int
sm__drop_get(sm_txn *txn, const sm_id *origin, uint64_t seq, sm__drop_rec *out)
{
    uint8_t key[SM__OSKEY_BYTES];
    sm_val v;
    memset(out, 0, sizeof *out);
    sm__oskey(key, origin, seq);
    int rc = sm_kv_get(txn, SM_DB_DROPS, key, sizeof key, &v);
    if (rc != 0)
        return rc == SM_ENOTFOUND ? SM_ENODROP : rc;
    if (v.len != sizeof *out)
        return SM_ECORRUPT;
    memcpy(out, v.data, sizeof *out);
    return s_drop_ok(out) ? 0 : SM_ECORRUPT;
}

static int
s_drop_put(sm_txn *txn, const sm_id *origin, uint64_t seq, const sm__drop_rec *r)
{
    uint8_t key[SM__OSKEY_BYTES];
    assert(s_drop_ok(r));
    sm__oskey(key, origin, seq);
    return sm_kv_put(txn, SM_DB_DROPS, key, sizeof key, r, sizeof *r);
}

int
sm__drop_apply(sm_txn *txn, const sm_entry *e, unsigned flags, uint64_t now_ms)
{
    const __typeof__(e->body.u.drop) *d = &e->body.u.drop;
    assert(d->mode == SM_DROP_FIRST_COME || d->mode == SM_DROP_RAFFLE);
    sm__stock_rec r;
    int rc = sm__stock_get(txn, d->sku, &e->origin, &r);
    if (rc == SM_ENOTFOUND)
        rc = 0;
    if (rc != 0)
        return rc;
    if (flags & SM__APPLY_LOCAL) {
        sm_val v;
        rc = sm_kv_get(txn, SM_DB_ITEMS, d->sku, strlen(d->sku), &v);
        if (rc != 0)
            return rc == SM_ENOTFOUND ? SM_ENOSKU : rc;
        if (r.drop_starts_ms > now_ms)
            return SM_EDROPBUSY;
        if (sm__stock_units(&r) < (int64_t) d->qty)
            return SM_ENOSTOCK;
    }
    sm__drop_rec rec;
    memset(&rec, 0, sizeof rec);
    sm__strfill(rec.sku, sizeof rec.sku, d->sku);
    rec.hlc = e->hlc;
    rec.starts_ms = d->starts_ms;
    rec.closes_ms = d->closes_ms;
    rec.qty = d->qty;
    rec.per_shopper = d->per_shopper;
    rec.pickup_minutes = d->pickup_minutes;
    rec.mode = d->mode;
    if (d->has_commitment)
        memcpy(rec.commitment, d->commitment.b, SM_HASH_BYTES);
    /* The gate: the latest of the drops here; a raffle's stays shut until
       its draw. */
    uint64_t gate = d->mode == SM_DROP_RAFFLE ? SM__DROP_UNTIL_DRAWN : d->starts_ms;
    if (gate > r.drop_starts_ms)
        r.drop_starts_ms = gate;
    if ((rc = sm__stock_put(txn, d->sku, &e->origin, &r)) != 0)
        return rc;
    return s_drop_put(txn, &e->origin, e->seq, &rec);
}

typedef struct {
    const char *sku;
    uint64_t now_ms;
    uint64_t held;             /* units of the drops not open yet */
    uint64_t latest;           /* the latest gate among them */
} s_held;

static int
s_held_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn; (void) k;
    s_held *h = arg;
    sm__drop_rec r;
    if (v->len != sizeof r)
        return SM_ECORRUPT;
    memcpy(&r, v->data, sizeof r);
    if (!s_drop_ok(&r))
        return SM_ECORRUPT;
    if (strcmp(r.sku, h->sku) != 0)
        return 0;
    uint64_t gate = r.mode == SM_DROP_RAFFLE ? (r.draw_seq ? 0 : SM__DROP_UNTIL_DRAWN)
                                             : r.starts_ms;
    if (gate <= h->now_ms)
        return 0;
    h->held += r.qty;
    if (gate > h->latest)
        h->latest = gate;
    return 0;
}

int
sm__drop_held_back(sm_txn *txn, const char *sku, const sm_id *stall, uint64_t gate_ms,
                   uint64_t now_ms, uint64_t *held)
{
    s_held h = { sku, now_ms, 0, 0 };
    int rc = sm__ledger_scan(txn, SM_DB_DROPS, stall->b, SM_KEY_BYTES, NULL, 0, s_held_each, &h);
    if (rc != 0)
        return rc;
    /* A gate later than every drop of the long form here: a short form's,
       whose units are not told apart from the others: all of them. */
    *held = gate_ms > h.latest ? UINT64_MAX : h.held;
    return 0;
}

static size_t
s_raffle_key(uint8_t *key, const sm_id *drop_origin, uint64_t drop_seq, char what,
             const uint8_t tag[SM_HOLD_TAG_BYTES], const sm_id *origin, uint64_t seq)
{
    sm__oskey(key, drop_origin, drop_seq);
    key[SM__OSKEY_BYTES] = (uint8_t) what;
    memcpy(key + SM__OSKEY_BYTES + 1, tag, SM_HOLD_TAG_BYTES);
    if (!origin)
        return SM__OSKEY_BYTES + 1 + SM_HOLD_TAG_BYTES;
    sm__oskey(key + SM__OSKEY_BYTES + 1 + SM_HOLD_TAG_BYTES, origin, seq);
    return SM__RAFFLE_KEY_BYTES;
}

typedef struct {
    const sm_id *origin;       /* NULL: any origin */
    bool found;
} s_tag_find;

static int
s_tag_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn; (void) v;
    s_tag_find *f = arg;
    if (k->len != SM__RAFFLE_KEY_BYTES)
        return SM_ECORRUPT;
    const uint8_t *who = (const uint8_t *) k->data + SM__OSKEY_BYTES + 1 + SM_HOLD_TAG_BYTES;
    if (f->origin && memcmp(who, f->origin->b, SM_KEY_BYTES) != 0)
        return 0;
    f->found = true;
    return 1;
}

/*  Whether the drop has an entry with this tag ('d' or 'c'), by `origin`
    (NULL: by any node).                                                    */
static int
s_tag_entered(sm_txn *txn, const sm_entry *e, char what, const uint8_t *tag,
              const sm_id *origin, bool *found)
{
    const __typeof__(e->body.u.raffle_entry) *re = &e->body.u.raffle_entry;
    uint8_t prefix[SM__RAFFLE_KEY_BYTES];
    size_t plen = s_raffle_key(prefix, &re->drop_origin, re->drop_seq, what, tag, NULL, 0);
    s_tag_find f = { origin, false };
    int rc = sm__ledger_scan(txn, SM_DB_RAFFLE, prefix, plen, NULL, 0, s_tag_each, &f);
    *found = f.found;
    return rc;
}

typedef struct {
    const sm_id *origin;
    const sm_body *entry;
    bool found;
    uint64_t seq;
} s_same_entry;

/*  A 'd' record of the device: by f->origin, and (when the request has an
    address) with the 'c' record of that address for the same entry.       */
static int
s_same_entry_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) v;
    s_same_entry *f = arg;
    const __typeof__(f->entry->u.raffle_entry) *re = &f->entry->u.raffle_entry;
    if (k->len != SM__RAFFLE_KEY_BYTES)
        return SM_ECORRUPT;
    const uint8_t *who = (const uint8_t *) k->data + SM__OSKEY_BYTES + 1 + SM_HOLD_TAG_BYTES;
    if (memcmp(who, f->origin->b, SM_KEY_BYTES) != 0)
        return 0;
    uint64_t seq = sm__be64_get(who + SM_KEY_BYTES);
    if (re->has_client) {
        uint8_t key[SM__RAFFLE_KEY_BYTES];
        size_t klen = s_raffle_key(key, &re->drop_origin, re->drop_seq, 'c', re->client,
                                   f->origin, seq);
        sm_val got;
        int rc = sm_kv_get(txn, SM_DB_RAFFLE, key, klen, &got);
        if (rc == SM_ENOTFOUND)
            return 0;              /* the device's entry, from another address */
        if (rc != 0)
            return rc;
    }
    f->found = true;
    f->seq = seq;
    return 1;
}

int
sm_ledger_raffle_entry_find(sm_ledger *self, const sm_id *origin, const sm_body *entry,
                            uint64_t *seq)
{
    assert(self && origin && entry && seq);
    if (entry->kind != SM_KIND_RAFFLE_ENTRY)
        return SM_EINVAL;
    const __typeof__(entry->u.raffle_entry) *re = &entry->u.raffle_entry;
    uint8_t prefix[SM__RAFFLE_KEY_BYTES];
    size_t plen = s_raffle_key(prefix, &re->drop_origin, re->drop_seq, 'd', re->device,
                               NULL, 0);
    s_same_entry f = { origin, entry, false, 0 };
    int rc = sm__ledger_each(self, SM_DB_RAFFLE, prefix, plen, NULL, 0, s_same_entry_each, &f);
    if (rc != 0)
        return rc;
    if (!f.found)
        return SM_ENOTFOUND;
    *seq = f.seq;
    return 0;
}

int
sm__raffle_entry_apply(sm_txn *txn, const sm_entry *e, unsigned flags, uint64_t now_ms)
{
    const __typeof__(e->body.u.raffle_entry) *re = &e->body.u.raffle_entry;
    int rc;
    if (flags & SM__APPLY_LOCAL) {
        sm__drop_rec d;
        if ((rc = sm__drop_get(txn, &re->drop_origin, re->drop_seq, &d)) != 0)
            return rc;
        if (d.mode != SM_DROP_RAFFLE)
            return SM_ENOTRAFFLE;
        if (now_ms < d.starts_ms)
            return SM_EDROP;
        if (now_ms > d.closes_ms || d.draw_seq)
            return SM_EDROPCLOSED;
        bool found;
        /* One entry per device anywhere this node has heard of; one per
           address among the entries this node took. */
        if ((rc = s_tag_entered(txn, e, 'd', re->device, NULL, &found)) != 0)
            return rc;
        if (found)
            return SM_EENTERED;
        if (re->has_client) {
            if ((rc = s_tag_entered(txn, e, 'c', re->client, &e->origin, &found)) != 0)
                return rc;
            if (found)
                return SM_EENTERED;
        }
    }
    uint8_t key[SM__RAFFLE_KEY_BYTES];
    size_t klen = s_raffle_key(key, &re->drop_origin, re->drop_seq, 'd', re->device,
                               &e->origin, e->seq);
    if ((rc = sm_kv_put(txn, SM_DB_RAFFLE, key, klen, &e->hlc, sizeof e->hlc)) != 0)
        return rc;
    if (!re->has_client)
        return 0;
    klen = s_raffle_key(key, &re->drop_origin, re->drop_seq, 'c', re->client,
                        &e->origin, e->seq);
    return sm_kv_put(txn, SM_DB_RAFFLE, key, klen, &e->hlc, sizeof e->hlc);
}

int
sm__raffle_draw_apply(sm_txn *txn, const sm_entry *e, unsigned flags, uint64_t now_ms)
{
    const __typeof__(e->body.u.raffle_draw) *dr = &e->body.u.raffle_draw;
    sm__drop_rec d;
    int rc = sm__drop_get(txn, &e->origin, dr->drop_seq, &d);
    if (rc != 0)
        return rc;
    if (d.mode != SM_DROP_RAFFLE)
        return SM_ENOTRAFFLE;
    if (d.draw_seq)
        return SM_EDRAWN;
    if ((flags & SM__APPLY_LOCAL) && now_ms <= d.closes_ms)
        return SM_EDRAWEARLY;
    sm__stock_rec r;
    rc = sm__stock_get(txn, d.sku, &e->origin, &r);
    if (rc != 0 && rc != SM_ENOTFOUND)
        return rc;
    d.draw_seq = e->seq;
    d.draw_hlc = e->hlc;
    d.winners = dr->winners;
    /* The gate opens: the winners' holds come next; what they leave is on
       sale (and what they do not pick up, when their window ends). */
    if (r.drop_starts_ms == SM__DROP_UNTIL_DRAWN) {
        r.drop_starts_ms = SM_HLC_MS(e->hlc);
        if ((rc = sm__stock_put(txn, d.sku, &e->origin, &r)) != 0)
            return rc;
    }
    return s_drop_put(txn, &e->origin, dr->drop_seq, &d);
}

int
sm_ledger_raffle_entry_repeat(sm_ledger *self, const sm_id *origin, const sm_body *entry,
                              int rc, uint64_t *seq)
{
    if (rc != SM_EENTERED)
        return rc;
    uint64_t was;
    int frc = sm_ledger_raffle_entry_find(self, origin, entry, &was);
    if (frc == SM_ENOTFOUND)
        return rc;
    if (frc == 0)
        *seq = was;
    return frc;
}
