/*  A drop as the API shows it (drop_view.h).                                */
#include "drop_view.h"

#include <stdlib.h>
#include <string.h>

#include "stallmesh/error.h"
#include "stallmesh/identity.h"

int
sm_drop_view_units_left(sm_drop_walks *walks, sm_ledger *l, const sm_drop *d,
                        uint64_t *left, uint64_t *taken_out)
{
    uint64_t taken = 0;
    int rc = 0;
    if (d->mode == SM_DROP_FIRST_COME || d->draw_seq)
        rc = sm_drop_taken(walks, l, d, &taken);
    if (rc != 0)
        return rc;
    uint64_t n = taken >= d->qty ? 0 : d->qty - taken;
    sm_units u;
    rc = sm_ledger_units(l, d->sku, &d->origin, &u);
    if (rc == SM_ENOTFOUND) {
        u.units = 0;
        rc = 0;
    }
    if (rc != 0)
        return rc;
    if (d->mode == SM_DROP_FIRST_COME && (int64_t) n > u.units)
        n = u.units > 0 ? (uint64_t) u.units : 0;
    *left = n;
    if (taken_out)
        *taken_out = taken;
    return 0;
}

/*  A raffle's own members: its close, commitment, entries and draw.        */
static int
s_raffle_members(sm_ledger *l, const sm_drop *d, sm_json_buf *b)
{
    uint64_t devices = 0;
    int rc = sm_drop_entries(l, d, &devices, NULL, 0, NULL);
    if (rc != 0)
        return rc;
    sm_json_ktime(b, "closes", d->closes_ms);
    sm_json_kuint(b, "closes_ms", d->closes_ms);
    char hex[2 * SM_HASH_BYTES + 1];
    sm_hex_encode(d->commitment.b, SM_HASH_BYTES, hex);
    sm_json_kstr(b, "commitment", hex);
    sm_json_kuint(b, "entries", devices);
    sm_json_kbool(b, "drawn", d->draw_seq != 0);
    if (d->draw_seq) {
        sm_json_kentry_id(b, "draw", &d->origin, d->draw_seq);
        sm_json_kuint(b, "winners", d->winners);
    }
    return 0;
}

int
sm_drop_view_members(sm_drop_walks *walks, sm_ledger *l, const sm_id *node,
                     const sm_drop *d, uint64_t now_ms, sm_json_buf *b)
{
    uint64_t left = 0;
    int rc = sm_drop_view_units_left(walks, l, d, &left, NULL);
    if (rc != 0)
        return rc;
    sm_json_kentry_id(b, "id", &d->origin, d->seq);
    sm_json_kid(b, "stall", &d->origin);
    sm_member m;
    if (sm_ledger_member(l, &d->origin, &m) == 0)
        sm_json_kstr(b, "stall_name", m.name);
    sm_json_kbool(b, "here", memcmp(d->origin.b, node->b, SM_KEY_BYTES) == 0);
    sm_json_kstr(b, "sku", d->sku);
    sm_item it;
    if (sm_ledger_item(l, d->sku, &it) == 0) {
        sm_json_kstr(b, "name", it.name);
        sm_json_kint(b, "price", it.price);
        sm_json_kstr(b, "currency", it.currency);
    }
    sm_json_kuint(b, "qty", d->qty);
    sm_json_kstr(b, "mode", d->mode == SM_DROP_RAFFLE ? "raffle" : "first_come");
    sm_json_kuint(b, "per_shopper", d->per_shopper);
    sm_json_ktime(b, "starts", d->starts_ms);
    sm_json_kuint(b, "starts_ms", d->starts_ms);
    if (d->mode == SM_DROP_RAFFLE && (rc = s_raffle_members(l, d, b)) != 0)
        return rc;
    sm_json_kuint(b, "pickup_minutes", d->pickup_minutes);
    sm_json_kstr(b, "phase", sm_drop_phase(d, now_ms, left));
    sm_json_kuint(b, "units_left", left);
    return 0;
}

typedef struct {
    sm_drop *all;
    size_t n;
} s_list;

static int
s_list_each(const sm_drop *d, void *arg)
{
    s_list *l = arg;
    if (l->n < SM_DROP_VIEW_LIST_MAX)
        l->all[l->n++] = *d;
    else {
        /* Keep the newest: replace the oldest kept. */
        size_t old = 0;
        for (size_t i = 1; i < l->n; i++)
            if (l->all[i].hlc < l->all[old].hlc)
                old = i;
        if (d->hlc > l->all[old].hlc)
            l->all[old] = *d;
    }
    return 0;
}

static int
s_by_start(const void *a, const void *b)
{
    const sm_drop *x = a, *y = b;
    if (x->starts_ms != y->starts_ms)
        return x->starts_ms < y->starts_ms ? -1 : 1;
    return x->hlc < y->hlc ? -1 : x->hlc > y->hlc;
}

int
sm_drop_view_list(sm_ledger *l, sm_drop **all, size_t *n)
{
    s_list list = { calloc(SM_DROP_VIEW_LIST_MAX, sizeof (sm_drop)), 0 };
    *all = NULL;
    *n = 0;
    if (!list.all)
        return SM_ENOMEM;
    int rc = sm_drop_each(l, s_list_each, &list);
    if (rc != 0 || list.n == 0) {
        free(list.all);
        return rc;
    }
    qsort(list.all, list.n, sizeof *list.all, s_by_start);
    *all = list.all;
    *n = list.n;
    return 0;
}

uint64_t
sm_drop_view_next_change(const sm_drop *d, uint64_t now_ms)
{
    if (now_ms < d->starts_ms)
        return d->starts_ms;
    /* A raffle turns from live to drawing once past its close. */
    if (d->mode == SM_DROP_RAFFLE && !d->draw_seq && now_ms <= d->closes_ms)
        return d->closes_ms + 1;
    return 0;
}
