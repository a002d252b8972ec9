/*  The stock snapshot and its delta (snapshot.h).

    A build reads the stock view in one read transaction (items, stock
    records, roster names), groups the stock records by item, and writes
    each item's object once into `items`, a comma-separated run.  A build
    after another reads only the items changed since the one before (when
    the ledger keeps its change log: sm_ledger_keep_changes) and copies the
    others' objects from it; a change it cannot list (the roster, a gap in
    the log) reads them all.  The GET
    body and the websocket snapshot message are that run inside their two
    headers.  Each item's object is remembered by sku (s_ref: offset and
    length into `items`), in sku order, so the delta is one merge pass over
    two builds comparing bytes: an item whose bytes are the same did not
    change.

    The websocket messages also carry the market's drops (drop_view.h), a
    second run of objects remembered by id the same way, so the delta names
    the drops whose bytes changed.  A drop's phase moves with the clock at
    its start (a raffle's close too): a build notes the first such time
    ahead, and a refresh past it rebuilds though the state did not move.

    The body lives in a reference-counted blob: the snapshot holds one
    reference and every GET answer being sent holds one.                     */
#include "snapshot.h"

#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drop_view.h"
#include "json.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

/*  A body shared by the snapshot and the answers sending it, freed when
    the last holder lets go.  One thread, so a plain count.                 */
typedef struct {
    size_t refs;
    size_t len;
    char data[];
} s_blob;

/*  A key: an item's sku, or a drop's id ("<64 hex>:<seq>").                */
#define S_KEY_BYTES 96u
_Static_assert(S_KEY_BYTES > SM_SKU_BYTES_MAX && S_KEY_BYTES > SM_ID_HEX_BYTES + 21,
               "a sku and a drop id fit a key");

typedef struct {
    char key[S_KEY_BYTES];
    size_t at, len;                 /* its object within s_run.text */
} s_ref;

/*  A run of objects, comma-separated, each remembered by key.              */
typedef struct {
    char *text;
    size_t len;
    s_ref *refs;                    /* one per object, in key order */
    size_t count;
} s_run;

/*  One build.                                                               */
typedef struct {
    bool built;
    uint64_t version, as_of_ms;
    s_run items;                    /* in sku order */
    s_run drops;                    /* listed by start; refs in id order */
    uint64_t clock_ms;              /* the next phase change by the clock; 0 none */
    s_blob *body;                   /* GET /api/stock, shared with answers */
    char *msg;                      /* the websocket snapshot message */
    size_t msg_len;
} s_build;

struct sm_snapshot {
    sm_ledger *ledger;
    sm_id node;
    s_build cur;
    uint64_t builds_whole, builds_partial;
    sm_drop_walks *walks;           /* the drops' walks, kept between builds */
};

static s_blob *
s_blob_new(const char *p, size_t len)
{
    s_blob *b = malloc(sizeof *b + len + 1);
    if (!b)
        return NULL;
    b->refs = 1;
    b->len = len;
    memcpy(b->data, p, len);
    b->data[len] = '\0';
    return b;
}

void
sm_snapshot_body_unref(void **owner)
{
    if (!owner || !*owner)
        return;
    s_blob *b = *owner;
    assert(b->refs > 0);
    if (--b->refs == 0)
        free(b);
    *owner = NULL;
}

static void
s_run_free(s_run *r)
{
    free(r->text);
    free(r->refs);
    memset(r, 0, sizeof *r);
}

static void
s_build_free(s_build *s)
{
    s_run_free(&s->items);
    s_run_free(&s->drops);
    void *body = s->body;
    sm_snapshot_body_unref(&body);
    free(s->msg);
    memset(s, 0, sizeof *s);
}

sm_snapshot *
sm_snapshot_new(sm_ledger *ledger, const sm_id *node)
{
    assert(ledger && node);
    sm_snapshot *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ledger = ledger;
    self->node = *node;
    if (!(self->walks = sm_drop_walks_new())) {
        free(self);
        return NULL;
    }
    return self;
}

void
sm_snapshot_destroy(sm_snapshot **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_build_free(&(*self_p)->cur);
    sm_drop_walks_destroy(&(*self_p)->walks);
    free(*self_p);
    *self_p = NULL;
}

void
sm_snapshot_builds(const sm_snapshot *self, uint64_t *whole, uint64_t *partial)
{
    *whole = self->builds_whole;
    *partial = self->builds_partial;
}

uint64_t
sm_snapshot_version(const sm_snapshot *self)
{
    assert(self->cur.built);
    return self->cur.version;
}

const char *
sm_snapshot_message(const sm_snapshot *self, size_t *len)
{
    assert(self->cur.built);
    *len = self->cur.msg_len;
    return self->cur.msg;
}

const char *
sm_snapshot_body(sm_snapshot *self, size_t *len, void **owner)
{
    assert(self->cur.built && self->cur.body);
    s_blob *blob = self->cur.body;
    blob->refs++;
    *owner = blob;
    *len = blob->len;
    return blob->data;
}

/* ====================================================================== */
/* Reading the stock view                                                  */

typedef struct {
    size_t item;                    /* index into s_collect.items */
    sm_id node;
    int64_t units, held;
} s_loc;

typedef struct {
    sm_item *items;
    size_t n_items, cap_items;
    s_loc *locs;
    size_t n_locs, cap_locs;
    sm_member *members;
    size_t n_members, cap_members;
    char (*changed)[SM_SKU_BYTES_MAX + 1];   /* a partial view: its skus */
    size_t n_changed, cap_changed;
    int err;
} s_collect;

/*  Append elem (of `size` bytes) to the array *arr of *n, growing it by
    doubling; on ENOMEM note it in c->err and return 1 (stops the view).    */
static int
s_push(s_collect *c, void **arr, size_t *n, size_t *cap, const void *elem,
       size_t size)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        void *p = ncap <= SIZE_MAX / size ? realloc(*arr, ncap * size) : NULL;
        if (!p) {
            c->err = SM_ENOMEM;
            return 1;
        }
        *arr = p;
        *cap = ncap;
    }
    memcpy((char *) *arr + *n * size, elem, size);
    (*n)++;
    return 0;
}

static int
s_collect_item(const sm_item *item, void *arg)
{
    s_collect *c = arg;
    return s_push(c, (void **) &c->items, &c->n_items, &c->cap_items, item,
                  sizeof *item);
}

static int
s_item_cmp(const void *key, const void *elem)
{
    return strcmp((const char *) key, ((const sm_item *) elem)->sku);
}

static int
s_collect_stock(const char *sku, const sm_id *location, const sm_units *u,
                void *arg)
{
    s_collect *c = arg;
    const sm_item *it = c->n_items ? bsearch(sku, c->items, c->n_items,
                                             sizeof *c->items, s_item_cmp) : NULL;
    if (!it)
        return 0;                   /* stock of an item not yet in the catalog */
    s_loc l = { (size_t) (it - c->items), *location, u->units, u->held };
    return s_push(c, (void **) &c->locs, &c->n_locs, &c->cap_locs, &l, sizeof l);
}

static int
s_collect_member(const sm_member *m, void *arg)
{
    s_collect *c = arg;
    return s_push(c, (void **) &c->members, &c->n_members, &c->cap_members, m,
                  sizeof *m);
}

static int
s_collect_changed(const char *sku, void *arg)
{
    s_collect *c = arg;
    char key[SM_SKU_BYTES_MAX + 1] = { 0 };
    snprintf(key, sizeof key, "%s", sku);
    return s_push(c, (void **) &c->changed, &c->n_changed, &c->cap_changed, key, sizeof key);
}

static int
s_member_cmp(const void *key, const void *elem)
{
    return memcmp(key, ((const sm_member *) elem)->node.b, SM_KEY_BYTES);
}

static int
s_loc_cmp(const void *a, const void *b)
{
    const s_loc *x = a, *y = b;
    if (x->item != y->item)
        return x->item < y->item ? -1 : 1;
    return memcmp(x->node.b, y->node.b, SM_KEY_BYTES);
}

static void
s_collect_free(s_collect *c)
{
    free(c->items);
    free(c->locs);
    free(c->members);
    free(c->changed);
    memset(c, 0, sizeof *c);
}

/* ====================================================================== */
/* Writing                                                                 */

/*  One item with its locations locs[0..n) as an object into b.             */
static void
s_item_json(const sm_snapshot *self, const s_collect *c, const sm_item *it,
            const s_loc *locs, size_t n, sm_json_buf *b)
{
    int64_t total = 0, here = 0, held = 0;
    for (size_t i = 0; i < n; i++) {
        total += locs[i].units;
        held += locs[i].held;
        if (memcmp(locs[i].node.b, self->node.b, SM_KEY_BYTES) == 0)
            here = locs[i].units;
    }
    sm_json_obj_open(b);
    sm_json_kstr(b, "sku", it->sku);
    sm_json_kstr(b, "name", it->name);
    sm_json_kint(b, "price", it->price);
    sm_json_kstr(b, "currency", it->currency);
    sm_json_kint(b, "total", total);
    sm_json_kint(b, "here", here);
    sm_json_kint(b, "held", held);
    sm_json_key(b, "locations");
    sm_json_arr_open(b);
    for (size_t i = 0; i < n; i++) {
        const sm_member *m = c->n_members
            ? bsearch(locs[i].node.b, c->members, c->n_members,
                      sizeof *c->members, s_member_cmp) : NULL;
        sm_json_obj_open(b);
        sm_json_kid(b, "node", &locs[i].node);
        sm_json_kstr(b, "name", m ? m->name : "");
        sm_json_kint(b, "units", locs[i].units);
        sm_json_obj_close(b);
    }
    sm_json_arr_close(b);
    sm_json_obj_close(b);
}

/*  The stock document into b: {"type":type (if not NULL),"version":..,
    "as_of":..,"node":..,"items":[...]}; with `drops` (the websocket
    snapshot) also "now_ms" and "drops":[...].                               */
static void
s_document(const sm_snapshot *self, sm_json_buf *b, const char *type, uint64_t version,
           uint64_t as_of_ms, uint64_t now_ms, const s_run *items, const s_run *drops)
{
    sm_json_obj_open(b);
    if (type)
        sm_json_kstr(b, "type", type);
    sm_json_kuint(b, "version", version);
    sm_json_ktime(b, "as_of", as_of_ms);
    sm_json_kid(b, "node", &self->node);
    sm_json_key(b, "items");
    sm_json_arr_open(b);
    sm_json_raw(b, items->text, items->len);
    sm_json_arr_close(b);
    if (drops) {
        sm_json_kuint(b, "now_ms", now_ms);
        sm_json_key(b, "drops");
        sm_json_arr_open(b);
        sm_json_raw(b, drops->text, drops->len);
        sm_json_arr_close(b);
    }
    sm_json_obj_close(b);
}

/*  Read the items and their stock (one read transaction) into out->items:
    with a previous build `prev`, only the items changed since its version
    (sm_ledger_stock_view_since), the others' objects copied from it.        */
static int
s_items_new(sm_snapshot *self, const s_build *prev, s_run *out, uint64_t *version)
{
    s_collect c;
    memset(&c, 0, sizeof c);
    sm_json_buf items = { 0 };
    bool whole = true;
    int rc = sm_ledger_stock_view_since(self->ledger, prev ? prev->version : 0,
                                        s_collect_changed, s_collect_item, s_collect_stock,
                                        s_collect_member, &c, version, &whole);
    if (rc == 0 && c.err)
        rc = c.err;
    if (rc == 0)
        *(whole ? &self->builds_whole : &self->builds_partial) += 1;
    /* The view lists stock in (sku, location) order; sorting by item index
       keeps that order and makes each item's locations one run.            */
    if (rc == 0 && c.n_locs)
        qsort(c.locs, c.n_locs, sizeof *c.locs, s_loc_cmp);
    /* Every item, or the previous build's merged with the changed ones
       (both in sku order): at most the sum of both. */
    size_t cap = c.n_items + (whole ? 0 : prev->items.count);
    out->refs = rc == 0 && cap ? calloc(cap, sizeof *out->refs) : NULL;
    if (rc == 0 && cap && !out->refs)
        rc = SM_ENOMEM;
    size_t at = 0, n = 0, i = 0, j = 0, k = 0;
    while (rc == 0) {
        /* The next key: the previous build's (kept unless it changed), or a
           changed one (written anew if its item is still in the catalog). */
        const s_ref *old = !whole && i < prev->items.count ? &prev->items.refs[i] : NULL;
        const char *chg = whole ? (k < c.n_items ? c.items[k].sku : NULL)
                                : (j < c.n_changed ? c.changed[j] : NULL);
        if (!old && !chg)
            break;
        int cmp = !old ? 1 : !chg ? -1 : strcmp(old->key, chg);
        if (cmp < 0) {
            s_ref *ref = &out->refs[n];
            memcpy(ref->key, old->key, sizeof ref->key);
            ref->at = items.len + (n ? 1 : 0);      /* after the comma */
            sm_json_raw(&items, prev->items.text + old->at, old->len);
            ref->len = items.len - ref->at;
            n++;
            i++;
            continue;
        }
        i += cmp == 0;                             /* replaced */
        j++;
        if (k == c.n_items || strcmp(c.items[k].sku, chg) != 0)
            continue;                              /* gone from the catalog */
        size_t first = at;
        while (at < c.n_locs && c.locs[at].item == k)
            at++;
        s_ref *ref = &out->refs[n];
        memcpy(ref->key, c.items[k].sku, sizeof c.items[k].sku);
        ref->at = items.len + (n ? 1 : 0);
        s_item_json(self, &c, &c.items[k], c.locs + first, at - first, &items);
        ref->len = items.len - ref->at;
        n++;
        k++;
    }
    out->count = n;
    s_collect_free(&c);
    if (rc == 0 && items.failed)
        rc = SM_ENOMEM;
    out->text = items.p;
    out->len = items.len;
    return rc;
}

static int
s_ref_cmp(const void *a, const void *b)
{
    return strcmp(((const s_ref *) a)->key, ((const s_ref *) b)->key);
}

/*  The market's drops as the websocket shows them into out (refs sorted by
    id), and the next time one's phase moves with the clock in *clock_ms.  */
static int
s_drops_new(sm_snapshot *self, uint64_t now_ms, s_run *out, uint64_t *clock_ms)
{
    sm_drop *all = NULL;
    size_t n = 0;
    sm_json_buf drops = { 0 };
    *clock_ms = 0;
    int rc = sm_drop_view_list(self->ledger, &all, &n);
    out->refs = rc == 0 && n ? calloc(n, sizeof *out->refs) : NULL;
    if (rc == 0 && n && !out->refs)
        rc = SM_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        s_ref *ref = &out->refs[i];
        sm_id_format(&all[i].origin, ref->key);
        snprintf(ref->key + SM_ID_HEX_BYTES, sizeof ref->key - SM_ID_HEX_BYTES,
                 ":%" PRIu64, all[i].seq);
        ref->at = drops.len + (i ? 1 : 0);
        sm_json_obj_open(&drops);
        rc = sm_drop_view_members(self->walks, self->ledger, &self->node, &all[i], now_ms,
                                  &drops);
        sm_json_obj_close(&drops);
        ref->len = drops.len - ref->at;
        uint64_t t = sm_drop_view_next_change(&all[i], now_ms);
        if (t && (!*clock_ms || t < *clock_ms))
            *clock_ms = t;
    }
    free(all);
    if (rc == 0 && drops.failed)
        rc = SM_ENOMEM;
    out->count = rc == 0 ? n : 0;
    if (out->count)
        qsort(out->refs, out->count, sizeof *out->refs, s_ref_cmp);
    out->text = drops.p;
    out->len = drops.len;
    return rc;
}

/*  Read the stock view and the drops and serialize them into *out (fresh);
    with `prev` (built), only the items changed since it are read.          */
static int
s_build_new(sm_snapshot *self, const s_build *prev, uint64_t now_ms, s_build *out)
{
    memset(out, 0, sizeof *out);
    sm_json_buf body = { 0 }, msg = { 0 };
    uint64_t version = 0;
    int rc = s_items_new(self, prev, &out->items, &version);
    if (rc == 0)
        rc = s_drops_new(self, now_ms, &out->drops, &out->clock_ms);
    if (rc == 0) {
        s_document(self, &body, NULL, version, now_ms, now_ms, &out->items, NULL);
        s_document(self, &msg, "snapshot", version, now_ms, now_ms, &out->items, &out->drops);
        if (body.failed || msg.failed)
            rc = SM_ENOMEM;
    }
    if (rc == 0 && !(out->body = s_blob_new(body.p, body.len)))
        rc = SM_ENOMEM;
    sm_json_buf_free(&body);
    if (rc != 0) {
        sm_json_buf_free(&msg);
        s_build_free(out);
        return rc;
    }
    out->built = true;
    out->version = version;
    out->as_of_ms = now_ms;
    out->msg = msg.p;
    out->msg_len = msg.len;
    return 0;
}

/*  One merge pass over two runs (both in key order): the objects of `cur`
    that differ from `old` (changed or new) into the open array `changed`,
    the keys of `old` that `cur` lacks into `removed`; either buffer may be
    NULL (not written).  Returns how many objects differ or went.           */
static size_t
s_merge(const s_run *old, const s_run *cur, sm_json_buf *changed, sm_json_buf *removed)
{
    size_t i = 0, j = 0, n = 0;
    while (i < old->count || j < cur->count) {
        int cmp = i == old->count ? 1 : j == cur->count ? -1
                  : strcmp(old->refs[i].key, cur->refs[j].key);
        if (cmp < 0) {
            if (removed)
                sm_json_str(removed, old->refs[i].key);
            n++;
            i++;
            continue;
        }
        const s_ref *r = &cur->refs[j];
        bool same = cmp == 0 && old->refs[i].len == r->len
                    && memcmp(old->text + old->refs[i].at, cur->text + r->at, r->len) == 0;
        if (!same) {
            if (changed)
                sm_json_raw(changed, cur->text + r->at, r->len);
            n++;
        }
        i += cmp == 0;
        j++;
    }
    return n;
}

/*  The objects of one run that changed under key `key`, and those gone
    under `gone`, as members of the open object b.                           */
static void
s_delta_run(const s_run *old, const s_run *cur, const char *key, const char *gone,
            sm_json_buf *b)
{
    sm_json_key(b, key);
    sm_json_arr_open(b);
    s_merge(old, cur, b, NULL);
    sm_json_arr_close(b);
    sm_json_key(b, gone);
    sm_json_arr_open(b);
    s_merge(old, cur, NULL, b);
    sm_json_arr_close(b);
}

/*  The delta from `old` to `cur` as a websocket message into b: the items
    always, the drops only when one changed.                                */
static void
s_delta(const s_build *old, const s_build *cur, uint64_t now_ms, sm_json_buf *b)
{
    sm_json_obj_open(b);
    sm_json_kstr(b, "type", "delta");
    sm_json_kuint(b, "version", cur->version);
    sm_json_ktime(b, "as_of", now_ms);
    s_delta_run(&old->items, &cur->items, "items", "removed", b);
    sm_json_kuint(b, "now_ms", now_ms);
    if (s_merge(&old->drops, &cur->drops, NULL, NULL))
        s_delta_run(&old->drops, &cur->drops, "drops", "drops_removed", b);
    sm_json_obj_close(b);
}

int
sm_snapshot_ensure(sm_snapshot *self, uint64_t now_ms)
{
    assert(self);
    if (self->cur.built)
        return 0;
    /* Nothing borrowed can exist yet, so this frees nothing a caller holds. */
    int rc = s_build_new(self, NULL, now_ms, &self->cur);
    return rc == 0 ? 1 : rc;
}

int
sm_snapshot_restamp(sm_snapshot *self, uint64_t now_ms)
{
    assert(self->cur.built);
    s_build *c = &self->cur;
    sm_json_buf msg = { 0 };
    s_document(self, &msg, "snapshot", c->version, c->as_of_ms, now_ms, &c->items, &c->drops);
    size_t len;
    char *text = sm_json_take(&msg, &len);
    if (!text)
        return SM_ENOMEM;
    free(c->msg);
    c->msg = text;
    c->msg_len = len;
    return 0;
}

bool
sm_snapshot_clock_due(const sm_snapshot *self, uint64_t now_ms)
{
    return self->cur.built && self->cur.clock_ms && now_ms >= self->cur.clock_ms;
}

int
sm_snapshot_refresh(sm_snapshot *self, uint64_t now_ms, char **delta,
                    size_t *delta_len)
{
    assert(self && delta && delta_len);
    *delta = NULL;
    *delta_len = 0;
    uint64_t version;
    int rc = sm_ledger_version(self->ledger, &version);
    if (rc != 0)
        return rc;
    if (self->cur.built && version == self->cur.version
        && !sm_snapshot_clock_due(self, now_ms))
        return 0;
    s_build next;
    if ((rc = s_build_new(self, self->cur.built ? &self->cur : NULL, now_ms, &next)) != 0)
        return rc;
    sm_json_buf b = { 0 };
    s_delta(&self->cur, &next, now_ms, &b);
    size_t len;
    char *text = sm_json_take(&b, &len);
    if (!text) {
        s_build_free(&next);
        return SM_ENOMEM;
    }
    s_build_free(&self->cur);
    self->cur = next;
    *delta = text;
    *delta_len = len;
    return 1;
}
