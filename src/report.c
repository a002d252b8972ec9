/*  Reports: aggregates kept as entries apply, and the queries over them.
    See report.h for the model and the record layouts.                      */
#include "report.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "stallmesh/error.h"
#include "state.h"

#define SM__REP_SLOT_KEY   (8 + SM_KEY_BYTES)
#define SM__REP_ITEM_KEY   (8 + SM_KEY_BYTES + SM_SKU_BYTES_MAX)

static bool s_enabled = true;

void
sm__report_set_enabled(bool on)
{
    s_enabled = on;
}

static uint64_t
s_slot_of_hlc(uint64_t hlc)
{
    return SM_HLC_MS(hlc) / 1000 / SM_REPORT_SLOT_S;
}

static void
s_add(sm_rep_totals *a, const sm_rep_totals *b)
{
    a->sales += b->sales;
    a->units += b->units;
    a->gross += b->gross;
    a->returns += b->returns;
    a->returned_units += b->returned_units;
}

static void
s_slot_key(uint8_t *key, uint64_t slot, const sm_id *origin)
{
    sm__be64_put(key, slot);
    memcpy(key + 8, origin->b, SM_KEY_BYTES);
}

static size_t
s_item_key(uint8_t *key, uint64_t slot, const sm_id *origin, const char *sku)
{
    size_t n = strlen(sku);
    assert(n >= 1 && n <= SM_SKU_BYTES_MAX);
    s_slot_key(key, slot, origin);
    memcpy(key + SM__REP_SLOT_KEY, sku, n);
    return SM__REP_SLOT_KEY + n;
}

/*  Write-back: the hooks add each entry's deltas to a small per-thread
    table, and sm__report_flush adds the table to the stored records once
    per ledger operation (an ingested run of a thousand sales of one stall
    touches a few dozen records, not two thousand).  The table is bounded:
    when full it is flushed into the transaction early.  A rebuild drops it
    (sm__report_clear) and a failed operation too (sm__report_drop), so a
    delta reaches the store once, in the transaction of its entry.         */
#define SM__REP_CACHE_SLOTS 1024u   /* power of two; flushed at 3/4 */

typedef struct {
    uint8_t key[SM__REP_ITEM_KEY];
    uint8_t klen;              /* 0 = free; SM__REP_SLOT_KEY: a slot record */
    sm__rep_slot_rec d;        /* items use d.all only */
} s_delta;

static _Thread_local struct {
    sm_txn *txn;               /* the transaction the deltas belong to */
    uint32_t used;
    s_delta *tab;              /* SM__REP_CACHE_SLOTS, allocated on first use */
    uint16_t at[SM__REP_CACHE_SLOTS];   /* the used slots, in order of use */
} s_cache;

/*  The table is freed when its thread ends (a core thread of a node that
    stops): the thread-local pointer alone would be lost with the thread.  */
static pthread_key_t s_cache_key;
static pthread_once_t s_cache_once = PTHREAD_ONCE_INIT;
static bool s_cache_key_ok;

static void
s_cache_key_make(void)
{
    s_cache_key_ok = pthread_key_create(&s_cache_key, free) == 0;
}

void
sm__report_drop(void)
{
    for (uint32_t i = 0; i < s_cache.used; i++)
        memset(&s_cache.tab[s_cache.at[i]], 0, sizeof *s_cache.tab);
    s_cache.used = 0;
    s_cache.txn = NULL;
}

static int
s_flush_one(sm_txn *txn, const s_delta *x)
{
    bool slot = x->klen == SM__REP_SLOT_KEY;
    sm_db db = slot ? SM_DB_REP_SLOT : SM_DB_REP_ITEM;
    sm__rep_slot_rec rec;
    size_t vlen = slot ? sizeof rec : sizeof rec.all;
    sm_val v;
    memset(&rec, 0, sizeof rec);
    int rc = sm_kv_get(txn, db, x->key, x->klen, &v);
    if (rc == 0) {
        if (v.len != vlen)
            return SM_ECORRUPT;
        memcpy(&rec, v.data, vlen);
    } else if (rc != SM_ENOTFOUND) {
        return rc;
    }
    s_add(&rec.all, &x->d.all);
    if (slot) {
        for (int i = 0; i < 4; i++)
            s_add(&rec.source[i], &x->d.source[i]);
        for (int i = 0; i < 5; i++)
            s_add(&rec.payment[i], &x->d.payment[i]);
        if (x->d.last_sale_ms > rec.last_sale_ms)
            rec.last_sale_ms = x->d.last_sale_ms;
    }
    return sm_kv_put(txn, db, x->key, x->klen, &rec, vlen);
}

int
sm__report_flush(sm_txn *txn)
{
    if (!s_cache.used) {
        s_cache.txn = NULL;
        return 0;
    }
    assert(txn && s_cache.txn == txn);     /* deltas never cross transactions */
    int rc = 0;
    for (uint32_t i = 0; i < s_cache.used && rc == 0; i++)
        rc = s_flush_one(txn, &s_cache.tab[s_cache.at[i]]);
    sm__report_drop();
    return rc;
}

void
sm__report_begin(sm_txn *txn)
{
    assert(txn);
    /* An operation that never reached s_wend would have left deltas: a bug;
       they belong to a transaction that is gone, so they are not kept. */
    assert(s_cache.used == 0);
    sm__report_drop();
    s_cache.txn = txn;
}

int
sm__report_clear(sm_txn *txn)
{
    bool deferred = s_cache.txn == txn;
    sm__report_drop();
    if (deferred)
        s_cache.txn = txn;             /* the rebuild's deltas are gathered too */
    int rc = sm_kv_clear(txn, SM_DB_REP_SLOT);
    return rc ? rc : sm_kv_clear(txn, SM_DB_REP_ITEM);
}

/*  The delta record for key[0..klen) in the table (flushing it first when
    it is nearly full), or NULL out of memory.                               */
static s_delta *
s_delta_for(sm_txn *txn, const uint8_t *key, size_t klen, int *rc)
{
    *rc = 0;
    if (!s_cache.tab) {
        if (!(s_cache.tab = calloc(SM__REP_CACHE_SLOTS, sizeof *s_cache.tab))) {
            *rc = SM_ENOMEM;
            return NULL;
        }
        pthread_once(&s_cache_once, s_cache_key_make);
        if (s_cache_key_ok)
            pthread_setspecific(s_cache_key, s_cache.tab);
    }
    if (s_cache.used >= SM__REP_CACHE_SLOTS / 4 * 3) {
        if ((*rc = sm__report_flush(txn)) != 0)
            return NULL;
        s_cache.txn = txn;         /* the operation goes on */
    }
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    uint32_t at = (uint32_t) h & (SM__REP_CACHE_SLOTS - 1);
    for (;;) {
        s_delta *x = &s_cache.tab[at];
        if (x->klen == 0) {
            memcpy(x->key, key, klen);
            x->klen = (uint8_t) klen;
            s_cache.at[s_cache.used++] = (uint16_t) at;
            return x;
        }
        if (x->klen == klen && memcmp(x->key, key, klen) == 0)
            return x;
        at = (at + 1) & (SM__REP_CACHE_SLOTS - 1);
    }
}

/*  Add `d` to the slot record of (slot, origin) in the source and payment
    rows given (1-based; 0 = none).                                         */
static int
s_slot_add(sm_txn *txn, uint64_t slot, const sm_id *origin, const sm_rep_totals *d,
           int source, int payment, uint64_t sale_ms)
{
    uint8_t key[SM__REP_SLOT_KEY];
    int rc;
    s_slot_key(key, slot, origin);
    s_delta direct;
    s_delta *x = &direct;
    if (s_cache.txn == txn) {
        if (!(x = s_delta_for(txn, key, sizeof key, &rc)))
            return rc;
    } else {
        memset(&direct, 0, sizeof direct);   /* written through below */
        memcpy(direct.key, key, sizeof key);
        direct.klen = sizeof key;
    }
    s_add(&x->d.all, d);
    if (source >= 1 && source <= 4)
        s_add(&x->d.source[source - 1], d);
    if (payment >= 1 && payment <= 5)
        s_add(&x->d.payment[payment - 1], d);
    if (sale_ms > x->d.last_sale_ms)
        x->d.last_sale_ms = sale_ms;
    return x == &direct ? s_flush_one(txn, &direct) : 0;
}

static int
s_item_add(sm_txn *txn, uint64_t slot, const sm_id *origin, const char *sku,
           const sm_rep_totals *d)
{
    uint8_t key[SM__REP_ITEM_KEY];
    size_t klen = s_item_key(key, slot, origin, sku);
    int rc;
    if (s_cache.txn != txn) {
        s_delta direct;                        /* written through */
        memset(&direct, 0, sizeof direct);
        memcpy(direct.key, key, klen);
        direct.klen = (uint8_t) klen;
        s_add(&direct.d.all, d);
        return s_flush_one(txn, &direct);
    }
    s_delta *x = s_delta_for(txn, key, klen, &rc);
    if (!x)
        return rc;
    s_add(&x->d.all, d);
    return 0;
}

int
sm__report_sale(sm_txn *txn, const sm_entry *e)
{
    assert(txn && e && e->body.kind == SM_KIND_SALE);
    if (!s_enabled)
        return 0;
    const __typeof__(e->body.u.sale) *s = &e->body.u.sale;
    uint64_t slot = s_slot_of_hlc(e->hlc);
    sm_rep_totals all = { .sales = 1 };
    int rc;
    for (uint32_t i = 0; i < s->line_count; i++) {
        sm_rep_totals d = { .sales = 1, .units = s->lines[i].qty,
                            .gross = (int64_t) s->lines[i].qty * s->lines[i].price };
        all.units += d.units;
        all.gross += d.gross;
        if ((rc = s_item_add(txn, slot, &e->origin, s->lines[i].sku, &d)) != 0)
            return rc;
    }
    return s_slot_add(txn, slot, &e->origin, &all, s->source, s->payment,
                      SM_HLC_MS(e->hlc));
}

int
sm__report_return(sm_txn *txn, const sm_entry *e, const sm__sale_rec *sale)
{
    assert(txn && e && sale && e->body.kind == SM_KIND_RETURN);
    if (!s_enabled)
        return 0;
    const __typeof__(e->body.u.ret) *r = &e->body.u.ret;
    uint64_t slot = s_slot_of_hlc(e->hlc);
    sm_rep_totals all = { 0 };
    int rc;
    for (uint32_t i = 0; i < r->line_count; i++) {
        int64_t price = 0;
        for (uint32_t j = 0; j < sale->line_count; j++)
            if (strcmp(sale->lines[j].sku, r->lines[i].sku) == 0)
                price = sale->lines[j].price;
        sm_rep_totals d = { .returned_units = r->lines[i].qty,
                            .returns = (int64_t) r->lines[i].qty * price };
#if SM_SIM_BUG == 5                    /* planted for sim-selftest: a return counted twice */
        d.returns *= 2;
        d.returned_units *= 2;
#endif
        all.returned_units += d.returned_units;
        all.returns += d.returns;
        if ((rc = s_item_add(txn, slot, &e->origin, r->lines[i].sku, &d)) != 0)
            return rc;
    }
    return s_slot_add(txn, slot, &e->origin, &all, (int) sale->source,
                      (int) sale->payment, 0);
}

/* ---- queries -------------------------------------------------------------- */

void
sm_report_free(sm_report *r)
{
    if (!r)
        return;
    free(r->stalls);
    free(r->items);
    free(r->hours);
    free(r->days);
    memset(r, 0, sizeof *r);
}

static bool
s_grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, ncap * size);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static int64_t
s_floor_mod(int64_t a, int64_t b)
{
    int64_t m = a % b;
    return m < 0 ? m + b : m;
}

static int64_t
s_floor_div(int64_t a, int64_t b)
{
    return (a - s_floor_mod(a, b)) / b;
}

typedef struct {
    sm_report *r;
    size_t stall_cap, item_cap, hour_cap, day_cap;
    size_t last_stall;
    /* items: open addressing over indices into r->items */
    uint32_t *slots;
    size_t slot_cap;
} s_acc;

static sm_rep_stall *
s_stall_for(s_acc *a, const sm_id *origin)
{
    sm_report *r = a->r;
    if (a->last_stall < r->stall_count
        && memcmp(r->stalls[a->last_stall].stall.b, origin->b, SM_KEY_BYTES) == 0)
        return &r->stalls[a->last_stall];
    for (size_t i = 0; i < r->stall_count; i++)
        if (memcmp(r->stalls[i].stall.b, origin->b, SM_KEY_BYTES) == 0) {
            a->last_stall = i;
            return &r->stalls[i];
        }
    if (r->stall_count >= SM_MEMBERS_MAX
        || !s_grow((void **) &r->stalls, &a->stall_cap, r->stall_count, sizeof *r->stalls))
        return NULL;
    sm_rep_stall *s = &r->stalls[r->stall_count];
    memset(s, 0, sizeof *s);
    s->stall = *origin;
    a->last_stall = r->stall_count++;
    return s;
}

static uint64_t
s_hash(const char *sku, size_t n, const sm_id *stall)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char) sku[i]) * 1099511628211ULL;
    for (size_t i = 0; i < SM_KEY_BYTES; i++)
        h = (h ^ stall->b[i]) * 1099511628211ULL;
    return h;
}

static int
s_item_rehash(s_acc *a)
{
    size_t cap = a->slot_cap ? a->slot_cap * 2 : 256;
    uint32_t *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return SM_ENOMEM;
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t i = 0; i < a->r->item_count; i++) {
        const sm_rep_item *it = &a->r->items[i];
        uint64_t h = s_hash(it->sku, strlen(it->sku), &it->stall);
        size_t at = (size_t) (h & (cap - 1));
        while (slots[at] != UINT32_MAX)
            at = (at + 1) & (cap - 1);
        slots[at] = (uint32_t) i;
    }
    free(a->slots);
    a->slots = slots;
    a->slot_cap = cap;
    return 0;
}

static sm_rep_item *
s_item_for(s_acc *a, const char *sku, size_t n, const sm_id *stall)
{
    sm_report *r = a->r;
    if ((r->item_count + 1) * 2 > a->slot_cap && s_item_rehash(a) != 0)
        return NULL;
    uint64_t h = s_hash(sku, n, stall);
    size_t at = (size_t) (h & (a->slot_cap - 1));
    while (a->slots[at] != UINT32_MAX) {
        sm_rep_item *it = &r->items[a->slots[at]];
        if (strlen(it->sku) == n && memcmp(it->sku, sku, n) == 0
            && memcmp(it->stall.b, stall->b, SM_KEY_BYTES) == 0)
            return it;
        at = (at + 1) & (a->slot_cap - 1);
    }
    if (!s_grow((void **) &r->items, &a->item_cap, r->item_count, sizeof *r->items))
        return NULL;
    sm_rep_item *it = &r->items[r->item_count];
    memset(it, 0, sizeof *it);
    memcpy(it->sku, sku, n);
    it->stall = *stall;
    a->slots[at] = (uint32_t) r->item_count++;
    return it;
}

static int
s_stall_cmp(const void *a, const void *b)
{
    return memcmp(((const sm_rep_stall *) a)->stall.b, ((const sm_rep_stall *) b)->stall.b,
                  SM_KEY_BYTES);
}

static int
s_item_cmp(const void *a, const void *b)
{
    const sm_rep_item *x = a, *y = b;
    int c = strcmp(x->sku, y->sku);
    return c ? c : memcmp(x->stall.b, y->stall.b, SM_KEY_BYTES);
}

/*  The slot records of the range, in time order.                           */
static int
s_scan_slots(sm_txn *txn, const sm_report_query *q, s_acc *a)
{
    sm_report *r = a->r;
    uint8_t start[8];
    uint64_t from_slot = (uint64_t) q->from_s / SM_REPORT_SLOT_S;
    uint64_t to_slot = (uint64_t) q->to_s / SM_REPORT_SLOT_S;
    sm__be64_put(start, from_slot);
    int rc = 0;
    sm_cursor *cur = sm_cursor_open(txn, SM_DB_REP_SLOT, NULL, 0, start, sizeof start, &rc);
    if (!cur)
        return rc;
    sm_val k, v;
    uint64_t cached_slot = UINT64_MAX;
    int64_t hour_start = 0, day = 0;
    int32_t offset = 0;
    while ((rc = sm_cursor_next(cur, &k, &v)) == 0) {
        sm__rep_slot_rec rec;
        if (k.len != SM__REP_SLOT_KEY || v.len != sizeof rec) {
            rc = SM_ECORRUPT;
            break;
        }
        uint64_t slot = sm__be64_get(k.data);
        if (slot >= to_slot)
            break;
        sm_id origin;
        memcpy(origin.b, (const uint8_t *) k.data + 8, SM_KEY_BYTES);
        if (q->one_stall && memcmp(origin.b, q->stall.b, SM_KEY_BYTES) != 0)
            continue;
        memcpy(&rec, v.data, sizeof rec);
        s_add(&r->totals, &rec.all);
        for (int i = 0; i < 4; i++)
            s_add(&r->source[i], &rec.source[i]);
        for (int i = 0; i < 5; i++)
            s_add(&r->payment[i], &rec.payment[i]);
        sm_rep_stall *st = s_stall_for(a, &origin);
        if (!st) {
            rc = SM_ENOMEM;
            break;
        }
        s_add(&st->t, &rec.all);
        if (rec.last_sale_ms > st->last_sale_ms)
            st->last_sale_ms = rec.last_sale_ms;
        if (!(q->by & (SM_REP_BY_HOUR | SM_REP_BY_DAY)))
            continue;
        if (slot != cached_slot) {
            int64_t t = (int64_t) slot * SM_REPORT_SLOT_S;
            offset = sm_tz_offset(q->tz, t);
            int64_t local = t + offset;
            hour_start = t - s_floor_mod(local, 3600);
            day = s_floor_div(local, 86400);
            cached_slot = slot;
        }
        if (q->by & SM_REP_BY_HOUR) {
            if (r->hour_count == 0 || r->hours[r->hour_count - 1].start_s != hour_start) {
                if (!s_grow((void **) &r->hours, &a->hour_cap, r->hour_count, sizeof *r->hours)) {
                    rc = SM_ENOMEM;
                    break;
                }
                sm_rep_hour *h = &r->hours[r->hour_count++];
                memset(h, 0, sizeof *h);
                h->start_s = hour_start;
                /* The offset at the hour's start (the slot may be later in it). */
                h->offset_s = sm_tz_offset(q->tz, hour_start);
            }
            s_add(&r->hours[r->hour_count - 1].t, &rec.all);
        }
        if (q->by & SM_REP_BY_DAY) {
            if (r->day_count == 0 || r->days[r->day_count - 1].day != day) {
                if (!s_grow((void **) &r->days, &a->day_cap, r->day_count, sizeof *r->days)) {
                    rc = SM_ENOMEM;
                    break;
                }
                sm_rep_day *d = &r->days[r->day_count++];
                memset(d, 0, sizeof *d);
                d->day = day;
            }
            s_add(&r->days[r->day_count - 1].t, &rec.all);
        }
    }
    (void) offset;
    sm_cursor_close(&cur);
    return rc == SM_ENOTFOUND ? 0 : rc;
}

static int
s_scan_items(sm_txn *txn, const sm_report_query *q, s_acc *a)
{
    uint8_t start[8];
    uint64_t to_slot = (uint64_t) q->to_s / SM_REPORT_SLOT_S;
    sm__be64_put(start, (uint64_t) q->from_s / SM_REPORT_SLOT_S);
    int rc = 0;
    sm_cursor *cur = sm_cursor_open(txn, SM_DB_REP_ITEM, NULL, 0, start, sizeof start, &rc);
    if (!cur)
        return rc;
    sm_val k, v;
    static const sm_id zero;
    while ((rc = sm_cursor_next(cur, &k, &v)) == 0) {
        sm_rep_totals t;
        if (k.len <= SM__REP_SLOT_KEY || k.len > SM__REP_ITEM_KEY || v.len != sizeof t) {
            rc = SM_ECORRUPT;
            break;
        }
        if (sm__be64_get(k.data) >= to_slot)
            break;
        const uint8_t *origin = (const uint8_t *) k.data + 8;
        if (q->one_stall && memcmp(origin, q->stall.b, SM_KEY_BYTES) != 0)
            continue;
        memcpy(&t, v.data, sizeof t);
        const sm_id *stall = &zero;
        sm_id o;
        if (q->by & SM_REP_ITEM_STALL) {
            memcpy(o.b, origin, SM_KEY_BYTES);
            stall = &o;
        }
        sm_rep_item *it = s_item_for(a, (const char *) k.data + SM__REP_SLOT_KEY,
                                     k.len - SM__REP_SLOT_KEY, stall);
        if (!it) {
            rc = SM_ENOMEM;
            break;
        }
        s_add(&it->t, &t);
    }
    sm_cursor_close(&cur);
    return rc == SM_ENOTFOUND ? 0 : rc;
}

/* ---- voided and quarantined: the log entries past an origin's cap -------- */

typedef struct {
    sm_txn *txn;
    const sm_report_query *q;
    sm_report *r;
    sm_entry *e, *sale;
} s_void_ctx;

/*  The log entry (origin, seq) decoded into *out.                           */
static int
s_log_entry(sm_txn *txn, const sm_id *origin, uint64_t seq, sm_entry *out)
{
    uint8_t key[SM__OSKEY_BYTES];
    sm_val pos, v;
    sm__oskey(key, origin, seq);
    int rc = sm_kv_get(txn, SM_DB_LOGIDX, key, sizeof key, &pos);
    if (rc != 0)
        return rc;
    if (pos.len != 8)
        return SM_ECORRUPT;
    if ((rc = sm_kv_get(txn, SM_DB_LOG, pos.data, pos.len, &v)) != 0)
        return rc == SM_ENOTFOUND ? SM_ECORRUPT : rc;
    if (v.len <= SM_SIG_BYTES)
        return SM_ECORRUPT;
    return sm_entry_decode((const uint8_t *) v.data + SM_SIG_BYTES, v.len - SM_SIG_BYTES, out)
           ? SM_ECORRUPT : 0;
}

static bool
s_in_range(const sm_report_query *q, uint64_t hlc)
{
    int64_t t = (int64_t) (SM_HLC_MS(hlc) / 1000);
    return t >= q->from_s && t < q->to_s;
}

/*  Sum the sales and returns of origin's entries from..upto into *t.       */
static int
s_void_sum(s_void_ctx *c, const sm_id *origin, uint64_t from, uint64_t upto,
           sm_rep_totals *t)
{
    if (c->q->one_stall && memcmp(origin->b, c->q->stall.b, SM_KEY_BYTES) != 0)
        return 0;
    for (uint64_t seq = from; seq <= upto; seq++) {
        int rc = s_log_entry(c->txn, origin, seq, c->e);
        if (rc != 0)
            return rc;
        if (!s_in_range(c->q, c->e->hlc))
            continue;
        if (c->e->body.kind == SM_KIND_SALE) {
            t->sales++;
            for (uint32_t i = 0; i < c->e->body.u.sale.line_count; i++) {
                const sm_line *l = &c->e->body.u.sale.lines[i];
                t->units += l->qty;
                t->gross += (int64_t) l->qty * l->price;
            }
        } else if (c->e->body.kind == SM_KIND_RETURN) {
            if (s_log_entry(c->txn, origin, c->e->body.u.ret.sale_seq, c->sale) != 0
                || c->sale->body.kind != SM_KIND_SALE)
                continue;              /* returns nothing a sale holds */
            for (uint32_t i = 0; i < c->e->body.u.ret.line_count; i++) {
                const sm_line *l = &c->e->body.u.ret.lines[i];
                for (uint32_t j = 0; j < c->sale->body.u.sale.line_count; j++)
                    if (strcmp(c->sale->body.u.sale.lines[j].sku, l->sku) == 0) {
                        t->returned_units += l->qty;
                        t->returns += (int64_t) l->qty * c->sale->body.u.sale.lines[j].price;
                    }
            }
        }
    }
    return 0;
}

static int
s_scan_void(sm_txn *txn, const sm_report_query *q, sm_report *r)
{
    s_void_ctx c = { txn, q, r, malloc(sizeof(sm_entry)), malloc(sizeof(sm_entry)) };
    int rc = 0;
    if (!c.e || !c.sale) {
        rc = SM_ENOMEM;
        goto out;
    }
    sm_cursor *cur = sm_cursor_open(txn, SM_DB_HEADS, NULL, 0, NULL, 0, &rc);
    if (!cur)
        goto out;
    sm_val k, v;
    while ((rc = sm_cursor_next(cur, &k, &v)) == 0) {
        sm__head_rec h;
        sm__origin_rec o;
        sm_id origin;
        if (k.len != SM_KEY_BYTES || v.len != sizeof h) {
            rc = SM_ECORRUPT;
            break;
        }
        memcpy(origin.b, k.data, SM_KEY_BYTES);
        memcpy(&h, v.data, sizeof h);
        int orc = sm__origin_get(txn, &origin, &o);
        if (orc != 0 && orc != SM_ENOTFOUND) {
            rc = orc;
            break;
        }
        uint64_t fork_from = h.fork_seq ? h.fork_seq : UINT64_MAX;
        uint64_t void_from = orc == 0 && o.status == SM__ORIGIN_REVOKED
                           ? o.revoke_upto + 1 : UINT64_MAX;
        /* Voided: above the revoke's upto_seq and below any fork. */
        if (void_from <= h.seq && void_from < fork_from) {
            uint64_t upto = fork_from - 1 < h.seq ? fork_from - 1 : h.seq;
            if ((rc = s_void_sum(&c, &origin, void_from, upto, &r->voided)) != 0)
                break;
        }
        if (fork_from <= h.seq
            && (rc = s_void_sum(&c, &origin, fork_from, h.seq, &r->quarantined)) != 0)
            break;
    }
    sm_cursor_close(&cur);
    if (rc == SM_ENOTFOUND)
        rc = 0;
out:
    free(c.e);
    free(c.sale);
    return rc;
}

int
sm_report_run(sm_ledger *ledger, const sm_report_query *q, sm_report *out)
{
    assert(ledger && q && out && q->tz);
    assert(q->from_s < q->to_s && q->from_s % SM_REPORT_SLOT_S == 0
           && q->to_s % SM_REPORT_SLOT_S == 0 && q->from_s >= 0);
    memset(out, 0, sizeof *out);
    int rc = 0;
    sm_txn *txn = sm__ledger_rbegin(ledger, &rc);
    if (!txn)
        return rc;
    s_acc a = { .r = out };
    rc = s_scan_slots(txn, q, &a);
    if (rc == 0 && (q->by & (SM_REP_BY_ITEM | SM_REP_ITEM_STALL)))
        rc = s_scan_items(txn, q, &a);
    if (rc == 0)
        rc = s_scan_void(txn, q, out);
    sm_txn_abort(&txn);
    free(a.slots);
    if (rc != 0) {
        sm_report_free(out);
        return rc;
    }
    if (out->stall_count > 1)
        qsort(out->stalls, out->stall_count, sizeof *out->stalls, s_stall_cmp);
    if (out->item_count > 1)
        qsort(out->items, out->item_count, sizeof *out->items, s_item_cmp);
    return 0;
}

/* ---- rows ------------------------------------------------------------------ */

struct sm_rep_rows {
    sm_txn *txn;
    int kind;
    uint64_t from_ms, to_ms;
    sm_id *origins;            /* to walk, in id order */
    uint64_t *applied;         /* each one's applied prefix */
    size_t origin_count, at;   /* the origin being walked */
    sm_cursor *cur;            /* over its log index */
    sm_entry *e;               /* the entry being split into rows */
    uint32_t line;             /* its next line */
    bool have_entry;
    sm__sale_rec sale;         /* the sale of e (a sale's returns, a return's sale) */
};

void
sm_rep_rows_close(sm_rep_rows **self_p)
{
    assert(self_p);
    sm_rep_rows *self = *self_p;
    if (!self)
        return;
    sm_cursor_close(&self->cur);
    sm_txn_abort(&self->txn);
    free(self->origins);
    free(self->applied);
    free(self->e);
    free(self);
    *self_p = NULL;
}

/*  The first seq in 1..applied whose entry's clock is >= from_ms (entries
    of one origin are in clock order: its clock never goes back), or
    applied + 1.                                                              */
static int
s_first_seq(sm_rep_rows *self, const sm_id *origin, uint64_t applied, uint64_t *out)
{
    uint64_t lo = 1, hi = applied + 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int rc = s_log_entry(self->txn, origin, mid, self->e);
        if (rc != 0)
            return rc;
        if (SM_HLC_MS(self->e->hlc) >= self->from_ms)
            hi = mid;
        else
            lo = mid + 1;
    }
    *out = lo;
    return 0;
}

sm_rep_rows *
sm_rep_rows_open(sm_ledger *ledger, int kind, int64_t from_s, int64_t to_s,
                 const sm_id *stall, int *err)
{
    assert(ledger && err && from_s >= 0 && from_s < to_s);
    assert(kind == SM_REP_ROWS_SALES || kind == SM_REP_ROWS_RETURNS);
    sm_rep_rows *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->kind = kind;
    self->from_ms = (uint64_t) from_s * 1000;
    self->to_ms = (uint64_t) to_s * 1000;
    self->origins = malloc(SM_MEMBERS_MAX * sizeof *self->origins);
    self->applied = malloc(SM_MEMBERS_MAX * sizeof *self->applied);
    self->e = malloc(sizeof *self->e);
    if (!self->origins || !self->applied || !self->e) {
        *err = SM_ENOMEM;
        goto fail;
    }
    /* A read transaction of its own (never the writer's batch): it lives
       across the web thread's callbacks until the export is sent.           */
    if (!(self->txn = sm_txn_begin(sm__ledger_store(ledger), false, err)))
        goto fail;
    sm_cursor *cur = sm_cursor_open(self->txn, SM_DB_HEADS, NULL, 0, NULL, 0, err);
    if (!cur)
        goto fail;
    sm_val k, v;
    int rc = 0;
    while (self->origin_count < SM_MEMBERS_MAX && (rc = sm_cursor_next(cur, &k, &v)) == 0) {
        sm__head_rec h;
        if (k.len != SM_KEY_BYTES || v.len != sizeof h) {
            rc = SM_ECORRUPT;
            break;
        }
        memcpy(&h, v.data, sizeof h);
        if (stall && memcmp(stall->b, k.data, SM_KEY_BYTES) != 0)
            continue;
        memcpy(self->origins[self->origin_count].b, k.data, SM_KEY_BYTES);
        self->applied[self->origin_count++] = h.applied;
    }
    sm_cursor_close(&cur);
    if (rc != 0 && rc != SM_ENOTFOUND) {
        *err = rc;
        goto fail;
    }
    return self;
fail:
    sm_rep_rows_close(&self);
    return NULL;
}

/*  Position on the next entry of the walk that has rows; 0 or SM_ENOTFOUND. */
static int
s_rows_entry(sm_rep_rows *self)
{
    for (;;) {
        if (!self->cur) {
            if (self->at >= self->origin_count)
                return SM_ENOTFOUND;
            const sm_id *origin = &self->origins[self->at];
            uint64_t first;
            int rc = s_first_seq(self, origin, self->applied[self->at], &first);
            if (rc != 0)
                return rc;
            uint8_t start[SM__OSKEY_BYTES];
            sm__oskey(start, origin, first);
            self->cur = sm_cursor_open(self->txn, SM_DB_LOGIDX, origin->b, SM_KEY_BYTES,
                                       start, sizeof start, &rc);
            if (!self->cur)
                return rc;
        }
        sm_val k, pos, v;
        int rc = sm_cursor_next(self->cur, &k, &pos);
        uint64_t seq = rc == 0 && k.len == SM__OSKEY_BYTES
                     ? sm__be64_get((const uint8_t *) k.data + SM_KEY_BYTES) : 0;
        if (rc == 0 && (k.len != SM__OSKEY_BYTES || pos.len != 8))
            return SM_ECORRUPT;
        if (rc == 0 && seq <= self->applied[self->at]) {
            if ((rc = sm_kv_get(self->txn, SM_DB_LOG, pos.data, pos.len, &v)) != 0)
                return rc == SM_ENOTFOUND ? SM_ECORRUPT : rc;
            if (v.len <= SM_SIG_BYTES
                || sm_entry_decode((const uint8_t *) v.data + SM_SIG_BYTES,
                                   v.len - SM_SIG_BYTES, self->e) != 0)
                return SM_ECORRUPT;
            if (SM_HLC_MS(self->e->hlc) < self->to_ms) {
                sm_kind want = self->kind == SM_REP_ROWS_SALES ? SM_KIND_SALE : SM_KIND_RETURN;
                if (self->e->body.kind != want)
                    continue;
                uint64_t sale_seq = want == SM_KIND_SALE ? seq : self->e->body.u.ret.sale_seq;
                uint8_t key[SM__OSKEY_BYTES];
                sm__oskey(key, &self->origins[self->at], sale_seq);
                if ((rc = sm_kv_get(self->txn, SM_DB_SALES, key, sizeof key, &v)) != 0)
                    return rc == SM_ENOTFOUND ? SM_ECORRUPT : rc;
                if ((rc = sm__sale_unpack(v.data, v.len, &self->sale)) != 0)
                    return rc;
                self->line = 0;
                self->have_entry = true;
                return 0;
            }
        } else if (rc != 0 && rc != SM_ENOTFOUND) {
            return rc;
        }
        /* This origin is done. */
        sm_cursor_close(&self->cur);
        self->at++;
    }
}

int
sm_rep_rows_next(sm_rep_rows *self, sm_rep_row *out)
{
    assert(self && out);
    for (;;) {
        if (!self->have_entry) {
            int rc = s_rows_entry(self);
            if (rc != 0)
                return rc;
        }
        const sm_entry *e = self->e;
        uint32_t count = e->body.kind == SM_KIND_SALE ? e->body.u.sale.line_count
                                                     : e->body.u.ret.line_count;
        if (self->line >= count) {
            self->have_entry = false;
            continue;
        }
        memset(out, 0, sizeof *out);
        out->stall = e->origin;
        out->seq = e->seq;
        out->hlc = e->hlc;
        out->source = (int) self->sale.source;
        out->payment = (int) self->sale.payment;
        memcpy(out->currency, self->sale.currency, 3);
        if (e->body.kind == SM_KIND_SALE) {
            const sm_line *l = &e->body.u.sale.lines[self->line];
            memcpy(out->sku, l->sku, sizeof out->sku);
            out->qty = l->qty;
            out->price = l->price;
            for (uint32_t j = 0; j < self->sale.line_count; j++)
                if (strcmp(self->sale.lines[j].sku, l->sku) == 0)
                    out->returned = self->sale.lines[j].returned;
            memcpy(out->external_id, e->body.u.sale.external_id, sizeof out->external_id);
            out->hold_seq = e->body.u.sale.hold_seq;
        } else {
            const sm_line *l = &e->body.u.ret.lines[self->line];
            memcpy(out->sku, l->sku, sizeof out->sku);
            out->qty = l->qty;
            out->sale_seq = e->body.u.ret.sale_seq;
            for (uint32_t j = 0; j < self->sale.line_count; j++)
                if (strcmp(self->sale.lines[j].sku, l->sku) == 0)
                    out->price = self->sale.lines[j].price;
            memcpy(out->reason, e->body.u.ret.reason, sizeof out->reason);
        }
        self->line++;
        return 0;
    }
}
