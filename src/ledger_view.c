/*  Reads of the materialized state for the node's API: members, the stock
    view the stock page is built from, units, sales, holds and the state's
    digest.  Each call is one LMDB read transaction (sm__ledger_rbegin), so
    what it reports is one consistent state; none of them writes.  This file
    owns the reads of the derived state's records (state.h); ledger.c owns
    the log, its writes and its reads (heads, entries, forks, verify).  Every
    walk over a range is sm__ledger_scan (state.h).                           */
#include <assert.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "state.h"
#include "store.h"

/* ---- members --------------------------------------------------------- */

/* 0 and *out set, 1 if the record is not a member's, or SM_ECORRUPT.      */
static int
s_member_export(const sm_val *k, const sm_val *v, sm_member *out)
{
    sm__origin_rec r;
    if (k->len != SM_KEY_BYTES || v->len != sizeof r)
        return SM_ECORRUPT;
    memcpy(&r, v->data, sizeof r);
    if (r.status != SM__ORIGIN_ADMITTED && r.status != SM__ORIGIN_REVOKED)
        return 1;
    memset(out, 0, sizeof *out);
    memcpy(out->node.b, k->data, SM_KEY_BYTES);
    sm__strfill(out->name, sizeof out->name, r.name);
    out->role = (int) r.role;
    out->revoked = r.status == SM__ORIGIN_REVOKED;
    return 0;
}

int
sm_ledger_member(sm_ledger *self, const sm_id *node, sm_member *out)
{
    assert(self && node && out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm_val k = { node->b, SM_KEY_BYTES }, v;
    if ((rc = sm_kv_get(txn, SM_DB_ORIGINS, node->b, SM_KEY_BYTES, &v)) == 0) {
        rc = s_member_export(&k, &v, out);
        if (rc == 1)
            rc = SM_ENOTFOUND;
    }
    sm_txn_abort(&txn);
    return rc;
}

typedef struct {
    sm_item_fn items;
    sm_stock_fn stock;
    sm_member_fn members;
    void *arg;
} s_view;

static int
s_member_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_view *view = arg;
    sm_member m;
    int rc = s_member_export(k, v, &m);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return rc;
    return view->members(&m, view->arg) != 0;
}

int
sm_ledger_members_each(sm_ledger *self, sm_member_fn cb, void *arg)
{
    assert(self && cb);
    return sm_ledger_stock_view(self, NULL, NULL, cb, arg, NULL);
}

int
sm_ledger_version(sm_ledger *self, uint64_t *out)
{
    assert(self && out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    *out = sm_txn_id(txn);
    sm_txn_abort(&txn);
    return 0;
}

/* ---- the stock view -------------------------------------------------- */

static int
s_item_export(const sm_val *k, const sm_val *v, sm_item *out)
{
    sm__item_rec r;
    if (k->len == 0 || k->len > SM_SKU_BYTES_MAX || v->len != sizeof r)
        return SM_ECORRUPT;
    memcpy(&r, v->data, sizeof r);
    memset(out, 0, sizeof *out);
    memcpy(out->sku, k->data, k->len);
    sm__strfill(out->name, sizeof out->name, r.name);
    sm__strfill(out->currency, sizeof out->currency, r.currency);
    out->price = r.price;
    out->hlc = r.hlc;
    memcpy(out->origin.b, r.origin, SM_KEY_BYTES);
    return 0;
}

static int
s_item_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_view *view = arg;
    sm_item it;
    int rc = s_item_export(k, v, &it);
    if (rc != 0)
        return rc;
    return view->items(&it, view->arg) != 0;
}

int
sm_ledger_item(sm_ledger *self, const char *sku, sm_item *out)
{
    assert(self && sku && out);
    size_t n = strlen(sku);
    if (n == 0 || n > SM_SKU_BYTES_MAX)
        return SM_EINVAL;
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm_val k = { sku, n }, v;
    if ((rc = sm_kv_get(txn, SM_DB_ITEMS, sku, n, &v)) == 0)
        rc = s_item_export(&k, &v, out);
    sm_txn_abort(&txn);
    return rc;
}

int
sm_ledger_items_each(sm_ledger *self, sm_item_fn cb, void *arg)
{
    assert(self && cb);
    return sm_ledger_stock_view(self, cb, NULL, NULL, arg, NULL);
}

int
sm_ledger_stock_each(sm_ledger *self, sm_stock_fn cb, void *arg)
{
    assert(self && cb);
    return sm_ledger_stock_view(self, NULL, cb, NULL, arg, NULL);
}

/*  A stock record as the public sm_units.                                 */
static void
s_units_export(const sm__stock_rec *r, sm_units *out)
{
    memset(out, 0, sizeof *out);
    out->added = r->added;
    out->moved_in = r->moved_in;
    out->moved_out = r->moved_out;
    out->sold = r->sold;
    out->returned = r->returned;
    out->written_off = r->written_off;
    out->held = r->held;
    out->units = sm__stock_units(r);
    out->drop_starts_ms = r->drop_starts_ms;
}

int
sm_ledger_units(sm_ledger *self, const char *sku, const sm_id *location,
                sm_units *out)
{
    assert(self && sku && location && out);
    size_t n = strlen(sku);
    if (n == 0 || n > SM_SKU_BYTES_MAX)
        return SM_EINVAL;
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm__stock_rec r;
    rc = sm__stock_get(txn, sku, location, &r);
    sm_txn_abort(&txn);
    s_units_export(&r, out);
    return rc;
}

static int
s_stock_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_view *view = arg;
    sm__stock_rec r;
    if (k->len < SM_KEY_BYTES + 2 || k->len - SM_KEY_BYTES - 1 > SM_SKU_BYTES_MAX
        || v->len != sizeof r)
        return SM_ECORRUPT;
    size_t skulen = k->len - SM_KEY_BYTES - 1;
    char sku[SM_SKU_BYTES_MAX + 1];
    sm_id loc;
    memcpy(sku, k->data, skulen);
    sku[skulen] = 0;
    memcpy(loc.b, (const uint8_t *) k->data + skulen + 1, SM_KEY_BYTES);
    memcpy(&r, v->data, sizeof r);
    sm_units u;
    s_units_export(&r, &u);
    return view->stock(sku, &loc, &u, view->arg) != 0;
}

/*  Every item, then every stock record, of txn to the view's callbacks.   */
static int
s_view_all(sm_txn *txn, s_view *view)
{
    int rc = 0;
    if (view->items)
        rc = sm__ledger_scan(txn, SM_DB_ITEMS, NULL, 0, NULL, 0, s_item_each, view);
    if (rc == 0 && view->stock)
        rc = sm__ledger_scan(txn, SM_DB_STOCK, NULL, 0, NULL, 0, s_stock_each, view);
    return rc;
}

int
sm_ledger_stock_view(sm_ledger *self, sm_item_fn items, sm_stock_fn stock,
                     sm_member_fn members, void *arg, uint64_t *version)
{
    assert(self);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    s_view view = { items, stock, members, arg };
    if (version)
        *version = sm_txn_id(txn);
    rc = s_view_all(txn, &view);
    if (rc == 0 && members)
        rc = sm__ledger_scan(txn, SM_DB_ORIGINS, NULL, 0, NULL, 0, s_member_each, &view);
    sm_txn_abort(&txn);
    return rc;
}

/*  The stock view since a version: the change log (sm_store_changes) over
    the three databases the view reads names the skus whose item or stock
    records were written since; a roster write (names, roles) or any span
    the log cannot list means everything.                                     */
static const uint32_t s_view_mask =
    (1u << SM_DB_ITEMS) | (1u << SM_DB_STOCK) | (1u << SM_DB_ORIGINS);

int
sm_ledger_keep_changes(sm_ledger *self)
{
    assert(self);
    return sm_store_changes_keep(sm__ledger_store(self), s_view_mask);
}

typedef struct {
    char (*skus)[SM_SKU_BYTES_MAX + 1];
    size_t n, cap;
} s_changed;

static int
s_changed_note(sm_db db, const sm_val *k, void *arg)
{
    s_changed *c = arg;
    size_t len = k->len;
    if (db == SM_DB_STOCK)
        len = k->len > SM_KEY_BYTES + 1 ? k->len - SM_KEY_BYTES - 1 : 0;
    else if (db != SM_DB_ITEMS)
        return SM_ENOTFOUND;           /* the roster: every item's names */
    if (len == 0 || len > SM_SKU_BYTES_MAX)
        return SM_ENOTFOUND;           /* not a key the view reads: read all */
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        void *p = realloc(c->skus, cap * sizeof *c->skus);
        if (!p)
            return SM_ENOMEM;
        c->skus = p;
        c->cap = cap;
    }
    memcpy(c->skus[c->n], k->data, len);
    c->skus[c->n][len] = '\0';
    c->n++;
    return 0;
}

static int
s_sku_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

int
sm_ledger_stock_view_since(sm_ledger *self, uint64_t since, sm_sku_fn changed,
                           sm_item_fn items, sm_stock_fn stock, sm_member_fn members,
                           void *arg, uint64_t *version, bool *whole)
{
    assert(self && changed && version && whole);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    *version = sm_txn_id(txn);
    s_changed c = { 0 };
    *whole = since == 0
             || sm_store_changes(sm__ledger_store(self), txn, since, s_changed_note, &c) != 0;
    s_view view = { items, stock, members, arg };
    if (*whole) {
        rc = s_view_all(txn, &view);
    } else {
        /* The skus once each, in the view's order (a key's bytes). */
        if (c.n)
            qsort(c.skus, c.n, sizeof *c.skus, s_sku_cmp);
        size_t n = 0;
        for (size_t i = 0; i < c.n; i++)
            if (n == 0 || strcmp(c.skus[n - 1], c.skus[i]) != 0)
                memmove(c.skus[n++], c.skus[i], sizeof *c.skus);
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = changed(c.skus[i], arg) != 0 ? 1 : 0;
        for (size_t i = 0; rc == 0 && items && i < n; i++) {
            sm_val v, k = { c.skus[i], strlen(c.skus[i]) };
            sm_item it;
            rc = sm_kv_get(txn, SM_DB_ITEMS, k.data, k.len, &v);
            if (rc == SM_ENOTFOUND)
                rc = 0;                /* gone, or never catalogued */
            else if (rc == 0 && (rc = s_item_export(&k, &v, &it)) == 0)
                rc = items(&it, arg) != 0 ? 1 : 0;
        }
        for (size_t i = 0; rc == 0 && stock && i < n; i++)
            rc = sm__ledger_scan(txn, SM_DB_STOCK, c.skus[i], strlen(c.skus[i]) + 1, NULL, 0,
                                 s_stock_each, &view);
        if (rc > 0)
            rc = 0;                    /* a callback stopped it */
    }
    if (rc == 0 && members)
        rc = sm__ledger_scan(txn, SM_DB_ORIGINS, NULL, 0, NULL, 0, s_member_each, &view);
    free(c.skus);
    sm_txn_abort(&txn);
    return rc;
}

/* ---- sales ----------------------------------------------------------- */

static int
s_sale_export(const sm_val *k, const sm_val *v, sm_sale *out)
{
    sm__sale_rec r;
    if (k->len != SM__OSKEY_BYTES || sm__sale_unpack(v->data, v->len, &r) != 0)
        return SM_ECORRUPT;
    memset(out, 0, sizeof *out);
    memcpy(out->origin.b, k->data, SM_KEY_BYTES);
    out->seq = sm__be64_get((const uint8_t *) k->data + SM_KEY_BYTES);
    out->hlc = r.hlc;
    out->source = (int) r.source;
    out->payment = (int) r.payment;
    sm__strfill(out->currency, sizeof out->currency, r.currency);
    out->hold_seq = r.hold_seq;
    out->line_count = r.line_count;
    for (uint32_t i = 0; i < r.line_count && i < SM_SALE_LINES_MAX; i++) {
        sm__strfill(out->lines[i].sku, sizeof out->lines[i].sku, r.lines[i].sku);
        out->lines[i].qty = r.lines[i].qty;
        out->lines[i].returned = r.lines[i].returned;
        out->lines[i].price = r.lines[i].price;
    }
    return 0;
}

int
sm_ledger_sale(sm_ledger *self, const sm_id *origin, uint64_t seq, sm_sale *out)
{
    assert(self && origin && out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    uint8_t key[SM__OSKEY_BYTES];
    sm__oskey(key, origin, seq);
    sm_val k = { key, sizeof key }, v;
    if ((rc = sm_kv_get(txn, SM_DB_SALES, key, sizeof key, &v)) == 0)
        rc = s_sale_export(&k, &v, out);
    sm_txn_abort(&txn);
    return rc;
}

typedef struct {
    sm_sale_fn cb;
    void *arg;
    size_t left;
    sm_sale sale;
} s_sales;

static int
s_sales_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_sales *it = arg;
    if (it->left == 0)
        return 1;
    int rc = s_sale_export(k, v, &it->sale);
    if (rc != 0)
        return rc;
    it->left--;
    return it->cb(&it->sale, it->arg) != 0;
}

int
sm_ledger_sales_each(sm_ledger *self, const sm_id *origin, uint64_t from,
                     size_t max, sm_sale_fn cb, void *arg)
{
    assert(self && origin && cb);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    uint8_t start[SM__OSKEY_BYTES];
    sm__oskey(start, origin, from);
    s_sales it = { .cb = cb, .arg = arg, .left = max };
    rc = sm__ledger_scan(txn, SM_DB_SALES, origin->b, SM_KEY_BYTES, start, sizeof start,
                s_sales_each, &it);
    sm_txn_abort(&txn);
    return rc;
}

/* ---- holds ----------------------------------------------------------- */

static void
s_hold_export(const sm_id *origin, uint64_t seq, const sm__hold_rec *r,
              sm_hold *out)
{
    memset(out, 0, sizeof *out);
    out->origin = *origin;
    out->seq = seq;
    sm__strfill(out->sku, sizeof out->sku, r->sku);
    out->qty = (uint32_t) r->qty;
    out->expires_ms = r->expires_ms;
    sm__strfill(out->code, sizeof out->code, r->code);
    out->line_count = 1 + r->more_count;
    sm__strfill(out->lines[0].sku, sizeof out->lines[0].sku, r->sku);
    out->lines[0].qty = (uint32_t) r->qty;
    for (uint32_t i = 0; i < r->more_count; i++) {
        sm__strfill(out->lines[i + 1].sku, sizeof out->lines[i + 1].sku, r->more[i].sku);
        out->lines[i + 1].qty = (uint32_t) r->more[i].qty;
    }
    out->has_device = (r->tags & SM__HOLD_TAG_DEVICE) != 0;
    out->has_client = (r->tags & SM__HOLD_TAG_CLIENT) != 0;
    memcpy(out->device, r->device, SM_HOLD_TAG_BYTES);
    memcpy(out->client, r->client, SM_HOLD_TAG_BYTES);
}

int
sm_ledger_hold(sm_ledger *self, const sm_id *origin, uint64_t seq, sm_hold *out)
{
    assert(self && origin && out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm__hold_rec r;
    if ((rc = sm__hold_get(txn, origin, seq, &r)) == 0)
        s_hold_export(origin, seq, &r, out);
    else if (rc == SM_ENOHOLD)
        rc = SM_ENOTFOUND;
    sm_txn_abort(&txn);
    return rc;
}

int
sm_ledger_hold_find(sm_ledger *self, const sm_id *origin, uint64_t seq,
                    sm_hold *out)
{
    assert(self && origin && out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm__hold_rec r;
    sm__holdend_rec end;
    if ((rc = sm__hold_get(txn, origin, seq, &r)) == 0) {
        s_hold_export(origin, seq, &r, out);
        out->ended = SM_HOLD_OPEN;
    } else if (rc == SM_ENOHOLD) {
        rc = sm__holdend_get(txn, origin, seq, &end);
        if (rc == 0) {
            memset(out, 0, sizeof *out);
            out->origin = *origin;
            out->seq = seq;
            out->expires_ms = end.expires_ms;
            out->ended = (int) end.how;
            out->end_seq = end.end_seq;
        }
    }
    sm_txn_abort(&txn);
    return rc;
}

typedef struct {
    sm_hold_fn cb;
    void *arg;
} s_holds;

static int
s_holds_each(sm_txn *txn, const sm_val *k, const sm_val *v, void *arg)
{
    (void) txn;
    s_holds *it = arg;
    sm__hold_rec r;
    if (k->len != SM__OSKEY_BYTES || sm__hold_read(v->data, v->len, &r) != 0)
        return SM_ECORRUPT;
    sm_id origin;
    memcpy(origin.b, k->data, SM_KEY_BYTES);
    sm_hold h;
    s_hold_export(&origin, sm__be64_get((const uint8_t *) k->data + SM_KEY_BYTES),
                  &r, &h);
    return it->cb(&h, it->arg) != 0;
}

int
sm_ledger_holds_each(sm_ledger *self, const sm_id *origin, sm_hold_fn cb,
                     void *arg)
{
    assert(self && origin && cb);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    s_holds it = { cb, arg };
    rc = sm__ledger_scan(txn, SM_DB_HOLDS, origin->b, SM_KEY_BYTES, NULL, 0,
                s_holds_each, &it);
    sm_txn_abort(&txn);
    return rc;
}

/* ---- digest ----------------------------------------------------------

    The state digest is a sum: each record of the state's databases hashes
    on its own, BLAKE2b-256(db tag || le64 key length || key || le64 value
    length || value), the hashes add up modulo 2^256, and the digest is
    BLAKE2b-256(S__DIGEST_DOMAIN || the sum, 32 bytes little-endian).  For a
    head record the value hashed is its applied count alone (le64): the log
    may run ahead of what was applied, and only what was applied is state.
    A sum does not depend on the order records are read in, so the store
    keeps it as writes go (sm_store_sums_keep) and a busy node answers
    GET /api/state without reading its state; the same sum computed by a
    scan gives the same digest.  It is a check that two stores hold the same
    state, not a commitment: someone choosing records freely can make two
    sums modulo 2^256 collide, and no decision of the node rests on it.
    An empty database adds nothing, so a database added by a later format
    changes no digest until it holds something.                               */

#define S__DIGEST_DOMAIN "stallmesh state digest 2"

static const uint32_t s_digest_mask =
      (1u << SM_DB_ORIGINS) | (1u << SM_DB_ITEMS) | (1u << SM_DB_STOCK)
    | (1u << SM_DB_SALES) | (1u << SM_DB_HOLDS) | (1u << SM_DB_HEADS)
    | (1u << SM_DB_HOLDENDS) | (1u << SM_DB_DROPS) | (1u << SM_DB_RAFFLE);

static void
s_digest_record(sm_db db, const sm_val *k, const sm_val *v, sm_sum *out)
{
    uint8_t applied[8];
    const void *val = v->data;
    size_t vlen = v->len;
    if (db == SM_DB_HEADS && v->len == sizeof(sm__head_rec)) {
        sm__head_rec h;
        memcpy(&h, v->data, sizeof h);
        sm__le64_put(applied, h.applied);
        val = applied;
        vlen = sizeof applied;
    }
    uint8_t head[1 + 8];
    head[0] = (uint8_t) db;
    sm__le64_put(head + 1, k->len);
    uint8_t vl[8];
    sm__le64_put(vl, vlen);
    sm_hasher hs;
    sm_hasher_init(&hs);
    sm_hasher_update(&hs, head, sizeof head);
    sm_hasher_update(&hs, k->data, k->len);
    sm_hasher_update(&hs, vl, sizeof vl);
    sm_hasher_update(&hs, val, vlen);
    sm_hash h;
    sm_hasher_final(&hs, &h);
    for (int i = 0; i < 4; i++)
        out->w[i] = sm__le64_get(h.b + 8 * i);
}

static void
s_digest_final(const sm_sum sums[SM_DB_COUNT], sm_hash *out)
{
    sm_sum total = { { 0 } };
    for (int db = 0; db < SM_DB_COUNT; db++)
        sm_sum_add(&total, &sums[db]);
    uint8_t b[sizeof S__DIGEST_DOMAIN - 1 + 32];
    memcpy(b, S__DIGEST_DOMAIN, sizeof S__DIGEST_DOMAIN - 1);
    for (int i = 0; i < 4; i++)
        sm__le64_put(b + sizeof S__DIGEST_DOMAIN - 1 + 8 * i, total.w[i]);
    sm_hash_bytes(b, sizeof b, out);
}

int
sm_ledger_keep_digest(sm_ledger *self)
{
    assert(self);
    return sm_store_sums_keep(sm__ledger_store(self), s_digest_mask, s_digest_record);
}

int
sm_ledger_digest_scan(sm_ledger *self, sm_hash *out, uint64_t *version)
{
    assert(self && out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(self, &rc);
    if (!txn)
        return rc;
    sm_sum sums[SM_DB_COUNT];
    if ((rc = sm_store_sums_scan(txn, s_digest_mask, s_digest_record, sums)) == 0) {
        s_digest_final(sums, out);
        if (version)
            *version = sm_txn_id(txn);
    }
    sm_txn_abort(&txn);
    return rc;
}

enum { S_DIGEST_TRIES = 16 };   /* read transactions to find the kept sums' */

int
sm_ledger_digest_kept(sm_ledger *self, sm_hash *out, uint64_t *version)
{
    assert(self && out && version);
    sm_store *store = sm__ledger_store(self);
    int rc = SM_EBUSY;
    for (int i = 0; i < S_DIGEST_TRIES && rc == SM_EBUSY; i++) {
        if (i > 0)
            sched_yield();        /* a commit is being recorded: moments */
        sm_txn *txn = sm__ledger_rbegin(self, &rc);
        if (!txn)
            return rc;
        sm_sum sums[SM_DB_COUNT];
        if ((rc = sm_store_sums(store, txn, sums)) == 0) {
            s_digest_final(sums, out);
            *version = sm_txn_id(txn);
        }
        sm_txn_abort(&txn);
    }
    return rc == SM_EBUSY ? SM_ENOTFOUND : rc;
}

int
sm_ledger_digest_at(sm_ledger *self, sm_hash *out, uint64_t *version)
{
    int rc = sm_ledger_digest_kept(self, out, version);
    return rc == SM_ENOTFOUND ? sm_ledger_digest_scan(self, out, version) : rc;
}

int
sm_ledger_digest(sm_ledger *self, sm_hash *out)
{
    uint64_t version;
    return sm_ledger_digest_at(self, out, &version);
}
