/*  The stock snapshot and its delta (snapshot.h).

    A build reads the stock view in one read transaction (items, stock
    records, roster names), groups the stock records by item, and writes
    each item's object once into `items`, a comma-separated run.  The GET
    body and the websocket snapshot message are that run inside their two
    headers.  Each item's object is remembered by sku (s_ref: offset and
    length into `items`), in sku order, so the delta is one merge pass over
    two builds comparing bytes: an item whose bytes are the same did not
    change.

    The body lives in a reference-counted blob: the snapshot holds one
    reference and every GET answer being sent holds one.                     */
#include "snapshot.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    size_t at, len;                 /* its object within s_build.items */
} s_ref;

/*  One build.                                                               */
typedef struct {
    bool built;
    uint64_t version;
    char *items;                    /* the item objects, comma-separated */
    size_t items_len;
    s_ref *refs;                    /* one per item, in sku order */
    size_t count;
    s_blob *body;                   /* GET /api/stock, shared with answers */
    char *msg;                      /* the websocket snapshot message */
    size_t msg_len;
} s_build;

struct sm_snapshot {
    sm_ledger *ledger;
    sm_id node;
    s_build cur;
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
s_build_free(s_build *s)
{
    free(s->items);
    free(s->refs);
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
    return self;
}

void
sm_snapshot_destroy(sm_snapshot **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_build_free(&(*self_p)->cur);
    free(*self_p);
    *self_p = NULL;
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
    "as_of":..,"node":..,"items":[...]}.                                     */
static void
s_document(const sm_snapshot *self, sm_json_buf *b, const char *type,
           uint64_t version, uint64_t now_ms, const char *items, size_t items_len)
{
    sm_json_obj_open(b);
    if (type)
        sm_json_kstr(b, "type", type);
    sm_json_kuint(b, "version", version);
    sm_json_ktime(b, "as_of", now_ms);
    sm_json_kid(b, "node", &self->node);
    sm_json_key(b, "items");
    sm_json_arr_open(b);
    sm_json_raw(b, items, items_len);
    sm_json_arr_close(b);
    sm_json_obj_close(b);
}

/*  Read the stock view and serialize it into *out (fresh).                 */
static int
s_build_new(const sm_snapshot *self, uint64_t now_ms, s_build *out)
{
    s_collect c;
    memset(&c, 0, sizeof c);
    memset(out, 0, sizeof *out);
    sm_json_buf items = { 0 }, body = { 0 }, msg = { 0 };
    uint64_t version = 0;
    int rc = sm_ledger_stock_view(self->ledger, s_collect_item, s_collect_stock,
                                  s_collect_member, &c, &version);
    if (rc == 0 && c.err)
        rc = c.err;
    if (rc != 0)
        goto fail;
    /* The view lists stock in (sku, location) order; sorting by item index
       keeps that order and makes each item's locations one run.            */
    if (c.n_locs)
        qsort(c.locs, c.n_locs, sizeof *c.locs, s_loc_cmp);
    out->refs = c.n_items ? calloc(c.n_items, sizeof *out->refs) : NULL;
    if (c.n_items && !out->refs) {
        rc = SM_ENOMEM;
        goto fail;
    }
    size_t at = 0;
    for (size_t i = 0; i < c.n_items; i++) {
        size_t first = at;
        while (at < c.n_locs && c.locs[at].item == i)
            at++;
        s_ref *ref = &out->refs[i];
        memcpy(ref->sku, c.items[i].sku, sizeof ref->sku);
        ref->at = items.len + (i ? 1 : 0);      /* after the comma */
        s_item_json(self, &c, &c.items[i], c.locs + first, at - first, &items);
        ref->len = items.len - ref->at;
    }
    out->count = c.n_items;
    s_document(self, &body, NULL, version, now_ms, items.p, items.len);
    s_document(self, &msg, "snapshot", version, now_ms, items.p, items.len);
    if (items.failed || body.failed || msg.failed) {
        rc = SM_ENOMEM;
        goto fail;
    }
    if (!(out->body = s_blob_new(body.p, body.len))) {
        rc = SM_ENOMEM;
        goto fail;
    }
    sm_json_buf_free(&body);
    out->built = true;
    out->version = version;
    out->items = items.p;
    out->items_len = items.len;
    out->msg = msg.p;
    out->msg_len = msg.len;
    s_collect_free(&c);
    return 0;
fail:
    s_collect_free(&c);
    sm_json_buf_free(&items);
    sm_json_buf_free(&body);
    sm_json_buf_free(&msg);
    s_build_free(out);
    return rc;
}

/*  The delta from `old` to `cur` as a websocket message into b.            */
static void
s_delta(const s_build *old, const s_build *cur, uint64_t now_ms, sm_json_buf *b)
{
    sm_json_obj_open(b);
    sm_json_kstr(b, "type", "delta");
    sm_json_kuint(b, "version", cur->version);
    sm_json_ktime(b, "as_of", now_ms);
    sm_json_key(b, "items");
    sm_json_arr_open(b);
    size_t i = 0, j = 0;
    /* Both ref lists are in sku order: one merge pass. */
    while (j < cur->count) {
        int cmp = i < old->count ? strcmp(old->refs[i].sku, cur->refs[j].sku) : 1;
        if (cmp < 0) {
            i++;                    /* removed: listed below */
            continue;
        }
        const s_ref *n = &cur->refs[j];
        bool same = cmp == 0 && old->refs[i].len == n->len
                    && memcmp(old->items + old->refs[i].at, cur->items + n->at,
                              n->len) == 0;
        if (!same)
            sm_json_raw(b, cur->items + n->at, n->len);
        if (cmp == 0)
            i++;
        j++;
    }
    sm_json_arr_close(b);
    sm_json_key(b, "removed");
    sm_json_arr_open(b);
    i = 0, j = 0;
    while (i < old->count) {
        int cmp = j < cur->count ? strcmp(old->refs[i].sku, cur->refs[j].sku) : -1;
        if (cmp < 0) {
            sm_json_str(b, old->refs[i].sku);
            i++;
        } else {
            if (cmp == 0)
                i++;
            j++;
        }
    }
    sm_json_arr_close(b);
    sm_json_obj_close(b);
}

int
sm_snapshot_ensure(sm_snapshot *self, uint64_t now_ms)
{
    assert(self);
    if (self->cur.built)
        return 0;
    /* Nothing borrowed can exist yet, so this frees nothing a caller holds. */
    int rc = s_build_new(self, now_ms, &self->cur);
    return rc == 0 ? 1 : rc;
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
    if (self->cur.built && version == self->cur.version)
        return 0;
    s_build next;
    if ((rc = s_build_new(self, now_ms, &next)) != 0)
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
