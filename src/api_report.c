/*  GET /api/report and the CSV exports (proto/api.md section 8).

    Parameters (all optional): from, to (a day YYYY-MM-DD: the whole day in
    the zone; or an RFC 3339 time, rounded outward to the quarter hour the
    aggregates resolve), by (a comma list of stall, item, hour, day,
    source, payment), stall (a node id), tz (an IANA zone), wide (inventory).
    A bad value is a 400 naming it in "field"; nothing is read before every
    parameter has passed.

    Scope: the organiser's node (its key is the market's) reports every
    stall; any other node only its own, and asking it for another stall is
    403 organiser_only.  A courtesy boundary, not a secret: every member's
    node stores every stall's log.

    The sales and returns exports stream (one read transaction, a 64 KiB
    chunk per writeable callback, memory flat whatever the range); items
    and inventory are bounded by skus x stalls and built whole.  CSV is RFC
    4180 (CRLF, quotes doubled), UTF-8, a header row, money as decimals in
    major units; a text cell starting with = + - @ tab or CR gets a leading
    ' so that a spreadsheet does not run it as a formula.                   */
#include "api_report.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "report.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"
#include "stallmesh/limits.h"
#include "tz.h"

static const char s_csv_type[] = "text/csv; charset=utf-8";
static const char s_no_store[] = "no-store";

enum { R_REPORT = 1, R_SALES_CSV, R_RETURNS_CSV, R_ITEMS_CSV, R_INVENTORY_CSV };

static const struct { const char *path; int id; const char *file; } s_routes[] = {
    { "/api/report", R_REPORT, NULL },
    { "/api/export/sales.csv", R_SALES_CSV, "sales" },
    { "/api/export/returns.csv", R_RETURNS_CSV, "returns" },
    { "/api/export/items.csv", R_ITEMS_CSV, "items" },
    { "/api/export/inventory.csv", R_INVENTORY_CSV, "inventory" },
};
#define S_ROUTE_COUNT (sizeof s_routes / sizeof s_routes[0])

/* ---- CSV text: a growable buffer (a failed allocation is sticky) -------- */

typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} s_buf;

static void
s_put(s_buf *b, const void *src, size_t n)
{
    if (b->failed)
        return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->len < n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void
s_puts(s_buf *b, const char *s)
{
    s_put(b, s, strlen(s));
}

/*  v in decimal: the exports write millions of numbers, printf's
    machinery is most of a row's cost.                                      */
static void
s_put_u64(s_buf *b, uint64_t v)
{
    char t[20];
    size_t i = sizeof t;
    do {
        t[--i] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    s_put(b, t + i, sizeof t - i);
}

static void __attribute__((format(printf, 2, 3)))
s_printf(s_buf *b, const char *fmt, ...)
{
    char t[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    if (n > 0)
        s_put(b, t, (size_t) n < sizeof t ? (size_t) n : sizeof t - 1);
}

static void
s_answer(sm_http_resp *r, int status, const char *type, s_buf *b)
{
    if (b->failed || !b->p) {
        free(b->p);
        sm__api_nomem(r);
        return;
    }
    r->status = status;
    r->content_type = type;
    r->body = b->p;
    r->body_len = b->len;
    r->body_borrowed = false;
    r->cache_control = s_no_store;
    memset(b, 0, sizeof *b);
}

/*  `status` {"error", "detail", "field"} (field may be NULL).              */
static void
s_fail(sm_http_resp *r, int status, const char *code, const char *field, const char *detail)
{
    sm__api_error(r, status, code, detail, field);
}

/* ---- time text ----------------------------------------------------------- */

/*  "YYYY-MM-DDTHH:MM:SS+hh:mm" of instant t with offset off.               */
static void
s_rfc3339(char out[40], int64_t t, int32_t off)
{
    int64_t local = t + off, days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    int64_t secs = local - days * 86400, y;
    unsigned m, d;
    sm_civil_from_days(days, &y, &m, &d);
    int32_t a = off < 0 ? -off : off;
    snprintf(out, 40, "%04d-%02u-%02uT%02d:%02d:%02d%c%02d:%02d", (int) y, m, d,
             (int) (secs / 3600), (int) (secs / 60 % 60), (int) (secs % 60),
             off < 0 ? '-' : '+', (int) (a / 3600), (int) (a / 60 % 60));
}

static void
s_jtime(sm_json_buf *b, const char *key, const sm_tz *tz, int64_t t)
{
    char text[40];
    s_rfc3339(text, t, sm_tz_offset(tz, t));
    sm_json_kstr(b, key, text);
}

static bool
s_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/*  A date YYYY-MM-DD: *day = days since the epoch.                          */
static bool
s_parse_date(const char *s, int64_t *day)
{
    int y, m, d;
    if (strlen(s) < 10 || s[4] != '-' || s[7] != '-' || !s_digits(s, 4, &y)
        || !s_digits(s + 5, 2, &m) || !s_digits(s + 8, 2, &d))
        return false;
    static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 2 && d == 29 && !leap)
        return false;
    *day = sm_days_from_civil(y, (unsigned) m, (unsigned) d);
    return true;
}

/*  A day "YYYY-MM-DD" (*is_day) or an RFC 3339 time
    "YYYY-MM-DDTHH:MM[:SS[.frac]](Z|+hh:mm|-hh:mm)" (a space for the '+', as
    a form-encoded '+' arrives).  *out: the day's number, or unix seconds. */
static bool
s_parse_when(const char *s, bool *is_day, int64_t *out)
{
    int64_t day;
    if (!s_parse_date(s, &day))
        return false;
    if (s[10] == 0) {
        *is_day = true;
        *out = day;
        return true;
    }
    *is_day = false;
    const char *p = s + 10;
    int hh, mm, ss = 0;
    if ((*p != 'T' && *p != 't' && *p != ' ') || !s_digits(p + 1, 2, &hh) || p[3] != ':'
        || !s_digits(p + 4, 2, &mm))
        return false;
    p += 6;
    if (*p == ':') {
        if (!s_digits(p + 1, 2, &ss))
            return false;
        p += 3;
        if (*p == '.') {
            p++;
            int n = 0;
            while (*p >= '0' && *p <= '9' && n < 9) {
                p++;
                n++;
            }
            if (n == 0)
                return false;
        }
    }
    if (hh > 23 || mm > 59 || ss > 60)
        return false;
    int32_t off = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == 0) {
        off = 0;
    } else if ((*p == '+' || *p == '-' || *p == ' ') && strlen(p) == 6 && p[3] == ':') {
        int oh, om;
        if (!s_digits(p + 1, 2, &oh) || !s_digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        off = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    } else {
        return false;
    }
    *out = day * 86400 + hh * 3600 + mm * 60 + (ss > 59 ? 59 : ss) - off;
    return true;
}

/* ---- parameters ------------------------------------------------------------ */

typedef struct {
    char from[64], to[64], by[128], stall[80], tz[SM_TZ_NAME_BYTES_MAX + 8], wide[8];
    bool has_from, has_to, has_by, has_stall, has_tz, has_wide;
} s_params;

/*  Copy query parameter values (percent-decoded) into *p; unknown names
    are ignored, as elsewhere in the API.  false with *bad naming a value
    longer than its field.                                                   */
static bool
s_params_read(const char *q, s_params *p, const char **bad)
{
    memset(p, 0, sizeof *p);
    struct { const char *name; char *dst; size_t cap; bool *has; } f[] = {
        { "from", p->from, sizeof p->from, &p->has_from },
        { "to", p->to, sizeof p->to, &p->has_to },
        { "by", p->by, sizeof p->by, &p->has_by },
        { "stall", p->stall, sizeof p->stall, &p->has_stall },
        { "tz", p->tz, sizeof p->tz, &p->has_tz },
        { "wide", p->wide, sizeof p->wide, &p->has_wide },
    };
    for (size_t guard = 0; q && *q && guard < 64; guard++) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t) (amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        size_t klen = eq ? (size_t) (eq - q) : n;
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            if (strlen(f[i].name) != klen || memcmp(q, f[i].name, klen) != 0)
                continue;
            const char *v = eq ? eq + 1 : q + n;
            size_t vlen = eq ? n - klen - 1 : 0, o = 0;
            for (size_t j = 0; j < vlen; j++) {
                char c = v[j];
                if (c == '%' && j + 2 < vlen) {
                    char hx[3] = { v[j + 1], v[j + 2], 0 };
                    char *end;
                    long x = strtol(hx, &end, 16);
                    if (*end == 0 && x > 0) {
                        c = (char) x;
                        j += 2;
                    }
                }
                if (o + 1 >= f[i].cap) {
                    *bad = f[i].name;
                    return false;
                }
                f[i].dst[o++] = c;
            }
            f[i].dst[o] = 0;
            *f[i].has = true;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return true;
}

typedef struct {
    sm_tz *tz;
    int64_t from_s, to_s;
    unsigned by;
    bool one_stall;
    sm_id stall;
    bool wide;
} s_query;

static const char *const s_by_names[] = { "stall", "item", "hour", "day", "source", "payment" };

/*  Parse and check the parameters; on failure *r holds the 400/403.        */
static bool
s_query_parse(const sm_api_report_ctx *ctx, const sm_http_req *req, int route,
              uint64_t now_ms, sm_http_resp *r, s_query *q)
{
    s_params p;
    const char *bad = NULL;
    memset(q, 0, sizeof *q);
    if (!s_params_read(req->query, &p, &bad)) {
        s_fail(r, 400, "bad_query", bad, "a query parameter is too long");
        return false;
    }
    /* Zone first: days are cut in it. */
    char zone[SM_TZ_NAME_BYTES_MAX + 16];
    if (p.has_tz)
        snprintf(zone, sizeof zone, "%s", p.tz);
    else if (ctx->tz_default && ctx->tz_default[0])
        snprintf(zone, sizeof zone, "%s", ctx->tz_default);
    else
        sm_tz_system(zone, sizeof zone);
    int err = 0;
    if (!(q->tz = sm_tz_open(zone, &err))) {
        if (err == SM_ENOMEM) {
            sm__api_nomem(r);
            return false;
        }
        s_fail(r, 400, "bad_timezone", "tz",
               "'tz' must be an IANA time zone such as Europe/London or UTC");
        return false;
    }
    /* by */
    if (p.has_by && p.by[0]) {
        char *save = NULL;
        for (char *tok = strtok_r(p.by, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            unsigned bit = 0;
            for (unsigned i = 0; i < 6; i++)
                if (strcmp(tok, s_by_names[i]) == 0)
                    bit = 1u << i;
            if (!bit) {
                s_fail(r, 400, "bad_query", "by",
                       "'by' is a comma list of stall, item, hour, day, source, payment");
                return false;
            }
            q->by |= bit;
        }
    } else if (!p.has_by) {
        q->by = SM_REP_BY_STALL | SM_REP_BY_SOURCE | SM_REP_BY_PAYMENT;
    }
    /* from, to */
    bool from_day = false, to_day = false;
    int64_t from = 0, to = 0;
    if (p.has_from && !s_parse_when(p.from, &from_day, &from)) {
        s_fail(r, 400, "bad_query", "from",
               "'from' must be a day YYYY-MM-DD or an RFC 3339 time such as "
               "2026-10-25T09:00:00Z (send '+' as %2B)");
        return false;
    }
    if (p.has_to && !s_parse_when(p.to, &to_day, &to)) {
        s_fail(r, 400, "bad_query", "to",
               "'to' must be a day YYYY-MM-DD or an RFC 3339 time such as "
               "2026-10-25T18:00:00Z (send '+' as %2B)");
        return false;
    }
    int64_t now_s = (int64_t) (now_ms / 1000);
    int64_t today = (now_s + sm_tz_offset(q->tz, now_s)) / 86400;
    if (!p.has_from && !p.has_to) {
        from_day = to_day = true;
        from = to = today;
    } else if (!p.has_to) {
        to_day = true;
        to = from_day ? from : (from + sm_tz_offset(q->tz, from)) / 86400;
    } else if (!p.has_from) {
        from_day = true;
        from = to_day ? to : (to - 1 + sm_tz_offset(q->tz, to - 1)) / 86400;
    }
    /* A day's range is [its first instant, the next day's first instant). */
    q->from_s = from_day ? sm_tz_local_to_utc(q->tz, from * 86400) : from;
    q->to_s = to_day ? sm_tz_local_to_utc(q->tz, (to + 1) * 86400) : to;
    q->from_s -= ((q->from_s % SM_REPORT_SLOT_S) + SM_REPORT_SLOT_S) % SM_REPORT_SLOT_S;
    q->to_s += (SM_REPORT_SLOT_S - q->to_s % SM_REPORT_SLOT_S) % SM_REPORT_SLOT_S;
    if (q->from_s < 0)
        q->from_s = 0;
    if (q->from_s >= q->to_s) {
        s_fail(r, 400, "bad_range", "from", "'from' must be before 'to'");
        return false;
    }
    int64_t days = (q->to_s - q->from_s + 86399) / 86400;
    if (days > SM_REPORT_RANGE_DAYS_MAX) {
        char d[128];
        snprintf(d, sizeof d, "a report covers at most %u days: ask for a shorter range",
                 SM_REPORT_RANGE_DAYS_MAX);
        s_fail(r, 400, "bad_range", "to", d);
        return false;
    }
    if ((q->by & SM_REP_BY_HOUR) && days > SM_REPORT_HOURLY_DAYS_MAX) {
        char d[128];
        snprintf(d, sizeof d, "by hour covers at most %u days: ask by day, or for a shorter range",
                 SM_REPORT_HOURLY_DAYS_MAX);
        s_fail(r, 400, "bad_range", "by", d);
        return false;
    }
    /* stall, and the scope */
    if (p.has_stall && p.stall[0]) {
        if (strlen(p.stall) != SM_ID_HEX_BYTES || sm_id_parse(p.stall, &q->stall) != 0) {
            s_fail(r, 400, "bad_query", "stall", "'stall' must be a node id (64 hex digits)");
            return false;
        }
        q->one_stall = true;
    }
    sm_market m;
    bool organiser = sm_ledger_market(ctx->ledger, &m) == 0
                     && memcmp(m.market.b, ctx->node.b, SM_KEY_BYTES) == 0;
    if (!organiser) {
        if (q->one_stall && memcmp(q->stall.b, ctx->node.b, SM_KEY_BYTES) != 0) {
            s_fail(r, 403, "organiser_only", "stall",
                   "a stall's node reports only its own stall: ask the organiser's node "
                   "for another stall or the whole market");
            return false;
        }
        if (route != R_INVENTORY_CSV) {
            q->one_stall = true;
            q->stall = ctx->node;
        }
    }
    q->wide = p.has_wide && (strcmp(p.wide, "1") == 0 || strcmp(p.wide, "true") == 0);
    return true;
}

/* ---- names --------------------------------------------------------------- */

typedef struct {
    sm_member *members;
    size_t count, cap;
} s_members;

/*  Room for one more of count elements of elem bytes at *p (first: the
    first capacity); false when out of memory (*p is then unchanged).     */
static bool
s_room(void **p, size_t *cap, size_t count, size_t elem, size_t first)
{
    if (count < *cap)
        return true;
    size_t n = *cap ? *cap * 2 : first;
    void *q = realloc(*p, n * elem);
    if (!q)
        return false;
    *p = q;
    *cap = n;
    return true;
}

static int
s_member_cb(const sm_member *m, void *arg)
{
    s_members *ms = arg;
    if (!s_room((void **) &ms->members, &ms->cap, ms->count, sizeof *m, 32))
        return SM_ENOMEM;
    ms->members[ms->count++] = *m;
    return 0;
}

static int
s_member_cmp(const void *key, const void *elem)
{
    return memcmp(((const sm_id *) key)->b, ((const sm_member *) elem)->node.b, SM_KEY_BYTES);
}

static const sm_member *
s_member_find(const s_members *ms, const sm_id *id)
{
    return ms->count ? bsearch(id, ms->members, ms->count, sizeof *ms->members, s_member_cmp)
                     : NULL;
}

static const char *
s_member_name(const s_members *ms, const sm_id *id)
{
    const sm_member *m = s_member_find(ms, id);
    return m ? m->name : "";
}

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    char name[SM_NAME_BYTES_MAX + 1];
} s_name;

typedef struct {
    s_name *items;
    size_t count, cap;
} s_catalog;

static int
s_item_cb(const sm_item *it, void *arg)
{
    s_catalog *c = arg;
    if (!s_room((void **) &c->items, &c->cap, c->count, sizeof *c->items, 64))
        return SM_ENOMEM;
    memcpy(c->items[c->count].sku, it->sku, sizeof it->sku);
    memcpy(c->items[c->count].name, it->name, sizeof it->name);
    c->count++;
    return 0;
}

static int
s_item_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const s_name *) elem)->sku);
}

static const s_name *
s_item_find(const s_catalog *c, const char *sku)
{
    return c->count ? bsearch(sku, c->items, c->count, sizeof *c->items, s_item_cmp) : NULL;
}

static bool
s_item_known(const s_catalog *c, const char *sku)
{
    return s_item_find(c, sku) != NULL;
}

static const char *
s_item_name(const s_catalog *c, const char *sku)
{
    const s_name *n = s_item_find(c, sku);
    return n ? n->name : "";
}

/* ---- GET /api/report ----------------------------------------------------- */

/*  The seven fields of the model, as members of the open object.          */
static void
s_totals(sm_json_buf *b, const sm_rep_totals *t)
{
    int64_t net = t->gross - t->returns;
    int64_t avg = t->sales ? (net >= 0 ? (net + t->sales / 2) / t->sales
                                      : -((-net + t->sales / 2) / t->sales)) : 0;
    sm_json_kint(b, "sales", t->sales);
    sm_json_kint(b, "units", t->units);
    sm_json_kint(b, "gross", t->gross);
    sm_json_kint(b, "returns", t->returns);
    sm_json_kint(b, "returned_units", t->returned_units);
    sm_json_kint(b, "net", net);
    sm_json_kint(b, "average_sale", avg);
}

static void
s_totals_obj(sm_json_buf *b, const char *key, const sm_rep_totals *t)
{
    sm_json_key(b, key);
    sm_json_obj_open(b);
    s_totals(b, t);
    sm_json_obj_close(b);
}

static const sm_gossip_peer *
s_peer_find(const sm_api_report_ctx *ctx, const sm_id *id)
{
    for (size_t i = 0; i < ctx->peer_count; i++)
        if (memcmp(ctx->peers[i].node.b, id->b, SM_KEY_BYTES) == 0)
            return &ctx->peers[i];
    return NULL;
}

typedef struct {
    const sm_api_report_ctx *ctx;
    const s_query *q;
    const s_members *ms;
    sm_json_buf *b;
} s_behind_ctx;

/*  The newest entry's clock of an origin (its last word this node holds). */
static int
s_last_cb(const sm_signed *s, uint64_t seq, void *arg)
{
    (void) seq;
    sm_entry *e = malloc(sizeof *e);
    if (e && sm_entry_decode(s->bytes, s->len, e) == 0)
        *(uint64_t *) arg = SM_HLC_MS(e->hlc);
    free(e);
    return 1;
}

static int
s_behind_cb(const sm_head *h, void *arg)
{
    s_behind_ctx *c = arg;
    if (memcmp(h->origin.b, c->ctx->node.b, SM_KEY_BYTES) == 0)
        return 0;                      /* this node holds its own log */
    if (c->q->one_stall && memcmp(h->origin.b, c->q->stall.b, SM_KEY_BYTES) != 0)
        return 0;
    const sm_member *m = s_member_find(c->ms, &h->origin);
    if (!m || m->revoked || m->role == SM_ROLE_RELAY)
        return 0;
    const sm_gossip_peer *p = s_peer_find(c->ctx, &h->origin);
    uint64_t upto = h->seq < h->cap ? h->seq : h->cap;
    uint64_t waiting = upto > h->applied ? upto - h->applied : 0;
    bool connected = p && p->up && p->refusal == 0;
    if (connected && waiting == 0 && p->wants_in_flight == 0)
        return 0;                      /* in step: its HEADS reach this node */
    uint64_t last_ms = p && p->last_seen_ms ? p->last_seen_ms : 0;
    if (!last_ms && h->seq)
        sm_ledger_read(c->ctx->ledger, &h->origin, h->seq, 1, s_last_cb, &last_ms);
    sm_json_obj_open(c->b);
    sm_json_kid(c->b, "stall", &h->origin);
    sm_json_kstr(c->b, "name", m->name);
    sm_json_kbool(c->b, "connected", connected);
    if (last_ms) {
        s_jtime(c->b, "last_heard", c->q->tz, (int64_t) (last_ms / 1000));
    } else {
        sm_json_key(c->b, "last_heard");
        sm_json_null(c->b);
    }
    sm_json_kuint(c->b, "entries_behind", waiting);
    sm_json_obj_close(c->b);
    return 0;
}

static void
s_report(const sm_api_report_ctx *ctx, const s_query *q, uint64_t now_ms, sm_http_resp *r)
{
    sm_report rep;
    sm_report_query rq = { .from_s = q->from_s, .to_s = q->to_s, .tz = q->tz,
                           .one_stall = q->one_stall, .stall = q->stall, .by = q->by };
    s_members ms = { 0 };
    s_catalog cat = { 0 };
    sm_json_buf b = { 0 };
    sm_market m;
    int rc = sm_ledger_market(ctx->ledger, &m);
    if (rc == 0)
        rc = sm_ledger_members_each(ctx->ledger, s_member_cb, &ms);
    if (rc == 0 && (q->by & SM_REP_BY_ITEM))
        rc = sm_ledger_items_each(ctx->ledger, s_item_cb, &cat);
    if (rc == 0)
        rc = sm_report_run(ctx->ledger, &rq, &rep);
    if (rc != 0) {
        free(ms.members);
        free(cat.items);
        sm__api_ledger_error(r, rc, false);
        return;
    }
    sm_json_obj_open(&b);
    sm_json_kstr(&b, "currency", m.currency);
    sm_json_kstr(&b, "tz", sm_tz_name(q->tz));
    s_jtime(&b, "from", q->tz, q->from_s);
    s_jtime(&b, "to", q->tz, q->to_s);
    s_jtime(&b, "as_of", q->tz, (int64_t) (now_ms / 1000));
    if (q->one_stall) {
        sm_json_kid(&b, "stall", &q->stall);
    } else {
        sm_json_key(&b, "stall");
        sm_json_null(&b);
    }
    s_totals_obj(&b, "totals", &rep.totals);
    s_totals_obj(&b, "voided", &rep.voided);
    s_totals_obj(&b, "quarantined", &rep.quarantined);
    sm_json_key(&b, "by");
    sm_json_obj_open(&b);
    if (q->by & SM_REP_BY_STALL) {
        /* Every stall of the roster (relays aside), with or without sales. */
        sm_json_key(&b, "stall");
        sm_json_arr_open(&b);
        size_t i = 0, j = 0;
        static const sm_rep_totals zero;
        while (i < rep.stall_count || j < ms.count) {
            const sm_rep_stall *st = i < rep.stall_count ? &rep.stalls[i] : NULL;
            const sm_member *mb = j < ms.count ? &ms.members[j] : NULL;
            int c = !st ? 1 : !mb ? -1 : memcmp(st->stall.b, mb->node.b, SM_KEY_BYTES);
            const sm_id *id = c <= 0 ? &st->stall : &mb->node;
            const sm_rep_totals *t = c <= 0 ? &st->t : &zero;
            uint64_t last = c <= 0 ? st->last_sale_ms : 0;
            if (c <= 0)
                i++;
            if (c >= 0)
                j++;
            if (c > 0 && (mb->role == SM_ROLE_RELAY || mb->revoked
                          || (q->one_stall && memcmp(id->b, q->stall.b, SM_KEY_BYTES) != 0)))
                continue;
            sm_json_obj_open(&b);
            sm_json_kid(&b, "stall", id);
            sm_json_kstr(&b, "name", s_member_name(&ms, id));
            s_totals(&b, t);
            if (last) {
                s_jtime(&b, "last_sale", q->tz, (int64_t) (last / 1000));
            } else {
                sm_json_key(&b, "last_sale");
                sm_json_null(&b);
            }
            sm_json_obj_close(&b);
        }
        sm_json_arr_close(&b);
    }
    if (q->by & SM_REP_BY_ITEM) {
        sm_json_key(&b, "item");
        sm_json_arr_open(&b);
        for (size_t i = 0; i < rep.item_count; i++) {
            sm_json_obj_open(&b);
            sm_json_kstr(&b, "sku", rep.items[i].sku);
            sm_json_kstr(&b, "name", s_item_name(&cat, rep.items[i].sku));
            s_totals(&b, &rep.items[i].t);
            sm_json_obj_close(&b);
        }
        sm_json_arr_close(&b);
    }
    if (q->by & SM_REP_BY_HOUR) {
        sm_json_key(&b, "hour");
        sm_json_arr_open(&b);
        for (size_t i = 0; i < rep.hour_count; i++) {
            char t[40];
            s_rfc3339(t, rep.hours[i].start_s, rep.hours[i].offset_s);
            sm_json_obj_open(&b);
            sm_json_kstr(&b, "hour", t);
            s_totals(&b, &rep.hours[i].t);
            sm_json_obj_close(&b);
        }
        sm_json_arr_close(&b);
    }
    if (q->by & SM_REP_BY_DAY) {
        sm_json_key(&b, "day");
        sm_json_arr_open(&b);
        for (size_t i = 0; i < rep.day_count; i++) {
            int64_t y;
            unsigned mo, d;
            char day[24];
            sm_civil_from_days(rep.days[i].day, &y, &mo, &d);
            snprintf(day, sizeof day, "%04d-%02u-%02u", (int) y, mo, d);
            sm_json_obj_open(&b);
            sm_json_kstr(&b, "day", day);
            s_totals(&b, &rep.days[i].t);
            sm_json_obj_close(&b);
        }
        sm_json_arr_close(&b);
    }
    if (q->by & SM_REP_BY_SOURCE) {
        sm_json_key(&b, "source");
        sm_json_arr_open(&b);
        for (int i = 0; i < 4; i++) {
            sm_json_obj_open(&b);
            sm_json_kstr(&b, "source", sm_source_name(i + 1));
            s_totals(&b, &rep.source[i]);
            sm_json_obj_close(&b);
        }
        sm_json_arr_close(&b);
    }
    if (q->by & SM_REP_BY_PAYMENT) {
        sm_json_key(&b, "payment");
        sm_json_arr_open(&b);
        for (int i = 0; i < 5; i++) {
            sm_json_obj_open(&b);
            sm_json_kstr(&b, "payment", sm_payment_name(i + 1));
            s_totals(&b, &rep.payment[i]);
            sm_json_obj_close(&b);
        }
        sm_json_arr_close(&b);
    }
    sm_json_obj_close(&b);
    sm_json_key(&b, "stalls_behind");
    sm_json_arr_open(&b);
    s_behind_ctx bc = { ctx, q, &ms, &b };
    rc = sm_ledger_heads(ctx->ledger, s_behind_cb, &bc);
    sm_json_arr_close(&b);
    sm_json_obj_close(&b);
    sm_report_free(&rep);
    free(ms.members);
    free(cat.items);
    if (rc != 0) {
        sm_json_buf_free(&b);
        sm__api_ledger_error(r, rc, false);
        return;
    }
    sm__api_take(r, 200, &b);
}

/* ---- CSV ------------------------------------------------------------------- */

/*  Decimal places of a currency's minor unit (ISO 4217); 2 unless listed. */
static int
s_exponent(const char *currency)
{
    static const char *const zero[] = { "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF",
                                        "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
                                        "XAF", "XOF", "XPF" };
    static const char *const three[] = { "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND" };
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (strcmp(currency, zero[i]) == 0)
            return 0;
    for (size_t i = 0; i < sizeof three / sizeof three[0]; i++)
        if (strcmp(currency, three[i]) == 0)
            return 3;
    return 2;
}

static void
s_money(s_buf *b, int64_t minor, int exp)
{
    uint64_t a = minor < 0 ? (uint64_t) -(minor + 1) + 1 : (uint64_t) minor;
    if (minor < 0)
        s_put(b, "-", 1);
    if (exp == 0) {
        s_put_u64(b, a);
        return;
    }
    uint64_t div = exp == 3 ? 1000 : 100;
    s_put_u64(b, a / div);
    char frac[4] = { '.', 0, 0, 0 };
    uint64_t f = a % div;
    for (int i = exp; i >= 1; i--, f /= 10)
        frac[i] = (char) ('0' + f % 10);
    s_put(b, frac, (size_t) exp + 1);
}

/*  One text cell: quoted when it holds a comma, quote, CR or LF; a leading
    ' when it starts with a formula character.                               */
static void
s_cell(s_buf *b, const char *s)
{
    bool inject = s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t'
                  || s[0] == '\r';
    bool quote = inject || strpbrk(s, ",\"\r\n") != NULL;
    if (!quote) {
        s_puts(b, s);
        return;
    }
    s_put(b, "\"", 1);
    if (inject)
        s_put(b, "'", 1);
    for (const char *p = s; *p;) {
        size_t run = strcspn(p, "\"");
        s_put(b, p, run);
        p += run;
        if (*p == '"') {
            s_put(b, "\"\"", 2);
            p++;
        }
    }
    s_put(b, "\"", 1);
}

static void
s_cell_id(s_buf *b, const sm_id *id, uint64_t seq)
{
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(id, hex);
    s_put(b, hex, SM_ID_HEX_BYTES);
    if (seq) {
        s_put(b, ":", 1);
        s_put_u64(b, seq);
    }
}

static void
s_disposition(sm_http_resp *r, const char *what, const s_query *q)
{
    char from[40], to[40];
    s_rfc3339(from, q->from_s, sm_tz_offset(q->tz, q->from_s));
    s_rfc3339(to, q->to_s - 1, sm_tz_offset(q->tz, q->to_s - 1));
    from[10] = to[10] = 0;
    if (strcmp(from, to) == 0)
        snprintf(r->disposition, sizeof r->disposition,
                 "attachment; filename=\"stallmesh-%s-%s.csv\"", what, from);
    else
        snprintf(r->disposition, sizeof r->disposition,
                 "attachment; filename=\"stallmesh-%s-%s-to-%s.csv\"", what, from, to);
}

/* ---- the streamed exports: sales.csv, returns.csv -------------------------- */

typedef struct {
    sm_http_stream base;       /* first: the web server sees only this */
    int kind;                  /* SM_REP_ROWS_* */
    sm_rep_rows *rows;
    sm_tz *tz;
    int exp;
    s_members ms;
    s_catalog cat;
    s_buf line;                /* the row being written */
    size_t line_at;            /* bytes of it already sent */
    bool header_done, eof;
    /* Text of the last row's stall and second, reused by the rows that
       share them (most do: a day's rows come in time order). */
    sm_id hex_of;
    char hex[SM_ID_HEX_BYTES + 1];
    bool hex_ok, when_ok;
    int64_t when_t;
    char when[40];
} s_rows_stream;

static void
s_rows_destroy(sm_http_stream *base)
{
    s_rows_stream *s = (s_rows_stream *) base;
    sm_rep_rows_close(&s->rows);
    sm_tz_destroy(&s->tz);
    free(s->ms.members);
    free(s->cat.items);
    free(s->line.p);
    free(s);
}

/*  The stall's id, then ":seq" when seq is not 0.                         */
static void
s_row_id(s_rows_stream *s, uint64_t seq)
{
    s_put(&s->line, s->hex, SM_ID_HEX_BYTES);
    if (seq) {
        s_put(&s->line, ":", 1);
        s_put_u64(&s->line, seq);
    }
}

static void
s_row_line(s_rows_stream *s, const sm_rep_row *row)
{
    s_buf *b = &s->line;
    int64_t t = (int64_t) (SM_HLC_MS(row->hlc) / 1000);
    if (!s->when_ok || t != s->when_t) {
        char text[40];                      /* date,time,offset */
        s_rfc3339(text, t, sm_tz_offset(s->tz, t));
        memcpy(s->when, text, 10);
        s->when[10] = ',';
        memcpy(s->when + 11, text + 11, 8);
        s->when[19] = ',';
        memcpy(s->when + 20, text + 19, 6);
        s->when_t = t;
        s->when_ok = true;
    }
    s_put(b, s->when, 26);
    if (!s->hex_ok || memcmp(s->hex_of.b, row->stall.b, SM_KEY_BYTES) != 0) {
        sm_id_format(&row->stall, s->hex);
        s->hex_of = row->stall;
        s->hex_ok = true;
    }
    s_put(b, ",", 1);
    s_cell(b, s_member_name(&s->ms, &row->stall));
    s_put(b, ",", 1);
    s_row_id(s, 0);
    s_put(b, ",", 1);
    s_row_id(s, row->seq);
    s_put(b, ",", 1);
    if (s->kind == SM_REP_ROWS_RETURNS) {
        s_row_id(s, row->sale_seq);
        s_put(b, ",", 1);
    }
    s_cell(b, row->sku);
    s_put(b, ",", 1);
    s_cell(b, s_item_name(&s->cat, row->sku));
    s_put(b, ",", 1);
    s_put_u64(b, row->qty);
    s_put(b, ",", 1);
    s_money(b, row->price, s->exp);
    s_put(b, ",", 1);
    if (s->kind == SM_REP_ROWS_SALES) {
        int64_t gross = (int64_t) row->qty * row->price;
        int64_t returns = (int64_t) row->returned * row->price;
        s_money(b, gross, s->exp);
        s_put(b, ",", 1);
        s_put_u64(b, row->returned);
        s_put(b, ",", 1);
        s_money(b, returns, s->exp);
        s_put(b, ",", 1);
        s_money(b, gross - returns, s->exp);
    } else {
        s_money(b, (int64_t) row->qty * row->price, s->exp);
    }
    const char *source = sm_source_name(row->source), *payment = sm_payment_name(row->payment);
    s_put(b, ",", 1);
    s_puts(b, row->currency);
    s_put(b, ",", 1);
    s_puts(b, source ? source : "");
    s_put(b, ",", 1);
    s_puts(b, payment ? payment : "");
    s_put(b, ",", 1);
    if (s->kind == SM_REP_ROWS_SALES) {
        s_cell(b, row->external_id);
        s_put(b, ",", 1);
        if (row->hold_seq)
            s_row_id(s, row->hold_seq);
    } else {
        s_cell(b, row->reason);
    }
    s_put(b, "\r\n", 2);
}

static int
s_rows_next(sm_http_stream *base, char *buf, size_t cap, size_t *len)
{
    s_rows_stream *s = (s_rows_stream *) base;
    size_t n = 0;
    for (;;) {
        /* Send what is left of the current line first. */
        if (s->line_at < s->line.len) {
            size_t k = s->line.len - s->line_at;
            if (k > cap - n)
                k = cap - n;
            memcpy(buf + n, s->line.p + s->line_at, k);
            n += k;
            s->line_at += k;
            if (s->line_at < s->line.len) {
                *len = n;
                return 0;              /* the chunk is full */
            }
        }
        if (s->eof) {
            *len = n;
            return 1;
        }
        if (n + 4096 > cap && n > 0) {
            *len = n;
            return 0;
        }
        s->line.len = 0;
        s->line_at = 0;
        if (!s->header_done) {
            s->header_done = true;
            s_puts(&s->line, s->kind == SM_REP_ROWS_SALES
                   ? "date,time,tz,stall,stall_id,sale_id,sku,item,qty,unit_price,gross,"
                     "returned_qty,returns,net,currency,source,payment,external_id,hold_id\r\n"
                   : "date,time,tz,stall,stall_id,return_id,sale_id,sku,item,qty,unit_price,"
                     "returns,currency,source,payment,reason\r\n");
        } else {
            sm_rep_row row;
            int rc = sm_rep_rows_next(s->rows, &row);
            if (rc == SM_ENOTFOUND) {
                s->eof = true;
                continue;
            }
            if (rc != 0)
                return rc;
            s_row_line(s, &row);
        }
        if (s->line.failed)
            return SM_ENOMEM;
    }
}

static void
s_export_rows(const sm_api_report_ctx *ctx, s_query *q, int kind, sm_http_resp *r)
{
    s_rows_stream *s = calloc(1, sizeof *s);
    int rc = s ? 0 : SM_ENOMEM;
    sm_market m;
    if (rc == 0)
        rc = sm_ledger_market(ctx->ledger, &m);
    if (rc == 0)
        rc = sm_ledger_members_each(ctx->ledger, s_member_cb, &s->ms);
    if (rc == 0)
        rc = sm_ledger_items_each(ctx->ledger, s_item_cb, &s->cat);
    if (rc == 0) {
        s->rows = sm_rep_rows_open(ctx->ledger, kind, q->from_s, q->to_s,
                                   q->one_stall ? &q->stall : NULL, &rc);
    }
    if (rc != 0) {
        if (s) {
            s->base.destroy = s_rows_destroy;
            s_rows_destroy(&s->base);
        }
        sm__api_ledger_error(r, rc, false);
        return;
    }
    s->base.next = s_rows_next;
    s->base.destroy = s_rows_destroy;
    s->kind = kind;
    s->exp = s_exponent(m.currency);
    r->status = 200;
    r->content_type = s_csv_type;
    r->cache_control = s_no_store;
    r->stream = &s->base;
    s_disposition(r, kind == SM_REP_ROWS_SALES ? "sales" : "returns", q);
    s->tz = q->tz;
    q->tz = NULL;                      /* the stream owns it now */
}

/* ---- items.csv ------------------------------------------------------------- */

static void
s_export_items(const sm_api_report_ctx *ctx, const s_query *q, sm_http_resp *r)
{
    sm_report rep;
    sm_report_query rq = { .from_s = q->from_s, .to_s = q->to_s, .tz = q->tz,
                           .one_stall = q->one_stall, .stall = q->stall,
                           .by = SM_REP_ITEM_STALL };
    s_members ms = { 0 };
    s_catalog cat = { 0 };
    sm_market m;
    int rc = sm_ledger_market(ctx->ledger, &m);
    if (rc == 0)
        rc = sm_ledger_members_each(ctx->ledger, s_member_cb, &ms);
    if (rc == 0)
        rc = sm_ledger_items_each(ctx->ledger, s_item_cb, &cat);
    if (rc == 0)
        rc = sm_report_run(ctx->ledger, &rq, &rep);
    if (rc != 0) {
        free(ms.members);
        free(cat.items);
        sm__api_ledger_error(r, rc, false);
        return;
    }
    int exp = s_exponent(m.currency);
    s_buf b = { 0 };
    s_puts(&b, "sku,item,stall,stall_id,sales,units_sold,gross,returned_units,returns,net,"
               "currency\r\n");
    for (size_t i = 0; i < rep.item_count; i++) {
        const sm_rep_item *it = &rep.items[i];
        s_cell(&b, it->sku);
        s_put(&b, ",", 1);
        s_cell(&b, s_item_name(&cat, it->sku));
        s_put(&b, ",", 1);
        s_cell(&b, s_member_name(&ms, &it->stall));
        s_put(&b, ",", 1);
        s_cell_id(&b, &it->stall, 0);
        s_printf(&b, ",%" PRId64 ",%" PRId64 ",", it->t.sales, it->t.units);
        s_money(&b, it->t.gross, exp);
        s_printf(&b, ",%" PRId64 ",", it->t.returned_units);
        s_money(&b, it->t.returns, exp);
        s_put(&b, ",", 1);
        s_money(&b, it->t.gross - it->t.returns, exp);
        s_printf(&b, ",%s\r\n", m.currency);
    }
    sm_report_free(&rep);
    free(ms.members);
    free(cat.items);
    s_answer(r, 200, s_csv_type, &b);
    s_disposition(r, "items", q);
}

/* ---- inventory.csv ----------------------------------------------------------- */

typedef struct {
    s_buf *b;
    const s_members *ms;
    const s_catalog *cat;
    const sm_report *today;    /* items by (sku, stall) sold today */
    bool wide;
    bool one_stall;
    sm_id stall;
    /* wide: the row being built */
    char sku[SM_SKU_BYTES_MAX + 1];
    int64_t *avail;            /* per member index */
    bool open;
} s_inv_ctx;

static int64_t
s_sold_today(const sm_report *rep, const char *sku, const sm_id *stall)
{
    size_t lo = 0, hi = rep->item_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const sm_rep_item *it = &rep->items[mid];
        int c = strcmp(it->sku, sku);
        if (c == 0)
            c = memcmp(it->stall.b, stall->b, SM_KEY_BYTES);
        if (c == 0)
            return it->t.units;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static bool
s_shown(const sm_member *m)
{
    return m->role != SM_ROLE_RELAY && !m->revoked;
}

static void
s_inv_flush(s_inv_ctx *c)
{
    if (!c->open)
        return;
    s_cell(c->b, c->sku);
    s_put(c->b, ",", 1);
    s_cell(c->b, s_item_name(c->cat, c->sku));
    for (size_t i = 0; i < c->ms->count; i++)
        if (s_shown(&c->ms->members[i]))
            s_printf(c->b, ",%" PRId64, c->avail[i]);
    s_put(c->b, "\r\n", 2);
    c->open = false;
}

static int
s_inv_cb(const char *sku, const sm_id *loc, const sm_units *u, void *arg)
{
    s_inv_ctx *c = arg;
    if (!s_item_known(c->cat, sku))
        return 0;                      /* not in the catalog yet: not listed, as in /api/stock */
    if (c->wide) {
        if (c->open && strcmp(c->sku, sku) != 0)
            s_inv_flush(c);
        if (!c->open) {
            snprintf(c->sku, sizeof c->sku, "%s", sku);
            memset(c->avail, 0, c->ms->count * sizeof *c->avail);
            c->open = true;
        }
        const sm_member *m = s_member_find(c->ms, loc);
        if (m)
            c->avail[m - c->ms->members] = u->units;
        return 0;
    }
    if (c->one_stall && memcmp(loc->b, c->stall.b, SM_KEY_BYTES) != 0)
        return 0;
    s_cell(c->b, sku);
    s_put(c->b, ",", 1);
    s_cell(c->b, s_item_name(c->cat, sku));
    s_put(c->b, ",", 1);
    s_cell(c->b, s_member_name(c->ms, loc));
    s_put(c->b, ",", 1);
    s_cell_id(c->b, loc, 0);
    s_printf(c->b, ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "\r\n",
             u->units + u->held, u->held, u->units, s_sold_today(c->today, sku, loc));
    return 0;
}

static void
s_export_inventory(const sm_api_report_ctx *ctx, s_query *q, uint64_t now_ms,
                   sm_http_resp *r)
{
    s_members ms = { 0 };
    s_catalog cat = { 0 };
    sm_report today;
    memset(&today, 0, sizeof today);
    int64_t now_s = (int64_t) (now_ms / 1000);
    int64_t day = (now_s + sm_tz_offset(q->tz, now_s)) / 86400;
    sm_report_query rq = { .from_s = sm_tz_local_to_utc(q->tz, day * 86400),
                           .to_s = sm_tz_local_to_utc(q->tz, (day + 1) * 86400),
                           .tz = q->tz, .by = SM_REP_ITEM_STALL };
    rq.from_s -= rq.from_s % SM_REPORT_SLOT_S;
    rq.to_s += (SM_REPORT_SLOT_S - rq.to_s % SM_REPORT_SLOT_S) % SM_REPORT_SLOT_S;
    int rc = sm_ledger_members_each(ctx->ledger, s_member_cb, &ms);
    if (rc == 0)
        rc = sm_ledger_items_each(ctx->ledger, s_item_cb, &cat);
    if (rc == 0)
        rc = sm_report_run(ctx->ledger, &rq, &today);
    s_buf b = { 0 };
    s_inv_ctx c = { .b = &b, .ms = &ms, .cat = &cat, .today = &today, .wide = q->wide,
                    .one_stall = q->one_stall, .stall = q->stall };
    if (rc == 0 && !(c.avail = calloc(ms.count + 1, sizeof *c.avail)))
        rc = SM_ENOMEM;
    if (rc == 0) {
        if (q->wide) {
            s_puts(&b, "sku,item");
            for (size_t i = 0; i < ms.count; i++) {
                if (!s_shown(&ms.members[i]))
                    continue;
                char head[SM_NAME_BYTES_MAX + 16];
                snprintf(head, sizeof head, "Available [%s]", ms.members[i].name);
                s_put(&b, ",", 1);
                s_cell(&b, head);
            }
            s_puts(&b, "\r\n");
        } else {
            s_puts(&b, "sku,item,stall,stall_id,on_hand,held,available,sold_today\r\n");
        }
        rc = sm_ledger_stock_each(ctx->ledger, s_inv_cb, &c);
        s_inv_flush(&c);
    }
    free(c.avail);
    sm_report_free(&today);
    free(ms.members);
    free(cat.items);
    if (rc != 0) {
        free(b.p);
        sm__api_ledger_error(r, rc, false);
        return;
    }
    s_answer(r, 200, s_csv_type, &b);
    s_disposition(r, "inventory", q);
}

/* ---- entry points ----------------------------------------------------------- */

void
sm_api_report_handle(const sm_api_report_ctx *ctx, const sm_http_req *req,
                     uint64_t now_ms, sm_http_resp *resp)
{
    assert(ctx && req && resp);
    int route = 0;
    for (size_t i = 0; i < S_ROUTE_COUNT; i++)
        if (strcmp(req->path, s_routes[i].path) == 0)
            route = s_routes[i].id;
    assert(route);
    s_query q;
    if (!s_query_parse(ctx, req, route, now_ms, resp, &q)) {
        sm_tz_destroy(&q.tz);
        return;
    }
    switch (route) {
    case R_REPORT:
        s_report(ctx, &q, now_ms, resp);
        break;
    case R_SALES_CSV:
        s_export_rows(ctx, &q, SM_REP_ROWS_SALES, resp);
        break;
    case R_RETURNS_CSV:
        s_export_rows(ctx, &q, SM_REP_ROWS_RETURNS, resp);
        break;
    case R_ITEMS_CSV:
        s_export_items(ctx, &q, resp);
        break;
    default:
        s_export_inventory(ctx, &q, now_ms, resp);
        break;
    }
    sm_tz_destroy(&q.tz);
}

int
sm__api_get_report(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                   sm_http_resp *r, sm_core_req **write)
{
    (void) write;
    sm_gossip_peer peers[SM_PEERS_MAX];
    sm_api_report_ctx ctx = { .ledger = self->ledger, .node = self->node,
                              .tz_default = self->report_tz, .peers = peers };
    ctx.peer_count = sm__api_peers(self, peers);
    sm_api_report_handle(&ctx, req, now_ms, r);
    return SM_API_DONE;
}
