/*  The drops' routes (proto/api.md "Drops"; README "Drops"):

        POST /api/drops                    (token)  create a drop of this stall's units
        GET  /api/drops                             the market's drops, with units left
        GET  /api/drops/<id>                        one drop
        GET  /api/drops/<id>/ledger                 every hold and sale against it
        POST /api/drops/<id>/entries  {"device"}    enter a raffle (any node; rate-limited)
        POST /api/drops/<id>/draw          (token)  draw a raffle of this stall
        GET  /api/drops/<id>/result?device=         a phone's result

    Writes go to the core as the other writes do (api_write.c), in a write
    of their own (magic SM__API_DROP_MAGIC) that sm_api_finish hands back
    here.  The HTTP layer checks shape and the drop's phase as this node
    sees it; the first-come caps per device and address are the policy's,
    at append (sm__api_drop_refused answers its refusal); the rules
    themselves are the ledger's (state_drop.c, drop.c).                                         */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "drop.h"
#include "drop_view.h"
#include "reserve.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"
#include "tz.h"

#define S_ENTRIES_PER_MIN   10u    /* raffle entries one address may send a minute */
#define S_RATE_CLIENTS      1024u

typedef enum { S_CREATE, S_ENTER, S_DRAW } s_what;

typedef struct {
    sm_core_req req;               /* first: the core sees only this */
    uint32_t magic;                /* SM__API_DROP_MAGIC */
    s_what what;
    sm_id drop_origin;             /* S_ENTER, S_DRAW */
    uint64_t drop_seq;
} s_dwrite;

/* ---- RFC 3339 ----------------------------------------------------------- */

static bool
s_digits(const char *s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned) (s[i] - '0');
    }
    *out = v;
    return true;
}

/*  "YYYY-MM-DDTHH:MM:SS[.fff...](Z|+HH:MM|-HH:MM)" into unix ms.           */
static bool
s_rfc3339(const char *s, uint64_t *ms)
{
    unsigned y, mo, d, h, mi, se, frac = 0;
    size_t n = strlen(s);
    if (n < 20 || !s_digits(s, 4, &y) || s[4] != '-' || !s_digits(s + 5, 2, &mo)
        || s[7] != '-' || !s_digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't'
                                                      && s[10] != ' ')
        || !s_digits(s + 11, 2, &h) || s[13] != ':' || !s_digits(s + 14, 2, &mi)
        || s[16] != ':' || !s_digits(s + 17, 2, &se))
        return false;
    const char *p = s + 19;
    if (*p == '.') {
        int k = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (k < 3)
                frac = frac * 10 + (unsigned) (*p - '0');
            k++;
            p++;
        }
        if (k == 0)
            return false;
        for (; k < 3; k++)
            frac *= 10;
    }
    int64_t off_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        unsigned oh, om;
        if (!s_digits(p + 1, 2, &oh) || p[3] != ':' || !s_digits(p + 4, 2, &om)
            || oh > 23 || om > 59)
            return false;
        off_s = (int64_t) (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return false;
    }
    if (*p || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59
        || se > 60)
        return false;
    int64_t days = sm_days_from_civil(y, mo, d);
    int64_t t = days * 86400 + h * 3600 + mi * 60 + se - off_s;
    if (t < 0 || (uint64_t) t > ((1ULL << 48) - 1) / 1000)
        return false;
    *ms = (uint64_t) t * 1000 + frac;
    return true;
}

/* ---- reading a drop's id from the path ----------------------------------- */

#define S_DROPS_PATH "/api/drops/"

/*  "/api/drops/<id>[/rest]": the id into origin/seq and the rest ("" or
    "ledger", ...).  400 and false when the id does not parse.              */
static bool
s_path_id(const sm_http_req *req, sm_http_resp *r, sm_id *origin, uint64_t *seq,
          const char **rest)
{
    const char *p = req->path + strlen(S_DROPS_PATH);
    const char *slash = strchr(p, '/');
    char id[SM__API_ENTRY_ID_BYTES + 1];
    size_t n = slash ? (size_t) (slash - p) : strlen(p);
    if (n == 0 || n >= sizeof id) {
        sm__api_bad(r, "bad_value", "id", "a drop's id is \"<64 hex digits>:<seq>\" as "
                    "POST /api/drops or GET /api/drops gives it");
        return false;
    }
    memcpy(id, p, n);
    id[n] = '\0';
    if (!sm__api_parse_entry_id(id, origin, seq)) {
        sm__api_bad(r, "bad_value", "id", "a drop's id is \"<64 hex digits>:<seq>\" as "
                    "POST /api/drops or GET /api/drops gives it");
        return false;
    }
    *rest = slash ? slash + 1 : "";
    return true;
}

static bool
s_need_drop(sm_api *self, sm_http_resp *r, const sm_id *origin, uint64_t seq, sm_drop *d)
{
    int rc = sm_drop_get(self->ledger, origin, seq, d);
    if (rc == SM_ENODROP) {
        sm__api_error(r, 404, "unknown_drop", "no drop with that id here (a new drop may "
                      "take a moment to reach this node)", "id");
        return false;
    }
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return false;
    }
    return true;
}

/* ---- the drop as JSON ------------------------------------------------------ */

static int
s_drop_members(sm_api *self, sm_json_buf *b, const sm_drop *d, uint64_t now_ms)
{
    return sm_drop_view_members(self->walks, self->ledger, &self->node, d, now_ms, b);
}

/*  The node's clock with every answer, so a phone counts down by it.       */
static void
s_now_members(sm_json_buf *b, uint64_t now_ms)
{
    sm_json_ktime(b, "now", now_ms);
    sm_json_kuint(b, "now_ms", now_ms);
}

/* ---- GET ------------------------------------------------------------------- */

typedef struct {
    sm_drop *all;
    size_t n;
} s_list;

/*  GET /api/drops is what a phone without the websocket polls (the
    websocket carries the drops: snapshot.c).  The list is computed again
    only when the ledger changed (at most every S_LIST_FRESH_MS) or it is a
    second old (phases and countdowns move with time); "now" is fresh in
    every answer.  One cache: the API runs on the web thread alone.         */
#define S_LIST_FRESH_MS 250u
#define S_LIST_STALE_MS 1000u
static struct {
    const sm_api *api;
    const sm_ledger *ledger;
    uint64_t version, at_ms;
    char *json;                /* the "drops" array */
    size_t len;
} s_list_cache;

static int
s_list_json(sm_api *self, uint64_t now_ms)
{
    uint64_t version = 0;
    int rc = sm_ledger_version(self->ledger, &version);
    if (rc != 0)
        return rc;
    bool same = s_list_cache.json && s_list_cache.api == self
                && s_list_cache.ledger == self->ledger && now_ms >= s_list_cache.at_ms;
    uint64_t age = same ? now_ms - s_list_cache.at_ms : 0;
    if (same && age < S_LIST_STALE_MS
        && (version == s_list_cache.version || age < S_LIST_FRESH_MS))
        return 0;
    s_list l;
    if ((rc = sm_drop_view_list(self->ledger, &l.all, &l.n)) != 0)
        return rc;
    sm_json_buf b = { 0 };
    sm_json_arr_open(&b);
    for (size_t i = 0; i < l.n && rc == 0; i++) {
        sm_json_obj_open(&b);
        rc = s_drop_members(self, &b, &l.all[i], now_ms);
        sm_json_obj_close(&b);
    }
    sm_json_arr_close(&b);
    free(l.all);
    size_t len = 0;
    char *json = rc == 0 ? sm_json_take(&b, &len) : NULL;
    sm_json_buf_free(&b);
    if (rc == 0 && !json)
        rc = SM_ENOMEM;
    if (rc != 0)
        return rc;
    free(s_list_cache.json);
    s_list_cache.api = self;
    s_list_cache.ledger = self->ledger;
    s_list_cache.version = version;
    s_list_cache.at_ms = now_ms;
    s_list_cache.json = json;
    s_list_cache.len = len;
    return 0;
}

int
sm__api_get_drops(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    (void) req; (void) write;
    int rc = s_list_json(self, now_ms);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    s_now_members(&b, now_ms);
    sm_json_key(&b, "drops");
    sm_json_raw(&b, s_list_cache.json, s_list_cache.len);
    sm_json_obj_close(&b);
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

typedef struct {
    sm_json_buf *b;
    const sm_drop *d;
} s_ledger_out;

static int
s_ledger_each(const sm_drop_take *t, void *arg)
{
    s_ledger_out *o = arg;
    sm_json_buf *b = o->b;
    sm_json_obj_open(b);
    sm_json_kstr(b, "kind", sm_kind_name(t->kind));
    sm_json_kentry_id(b, "id", &o->d->origin, t->seq);
    sm_json_ktime(b, "at", SM_HLC_MS(t->hlc));
    sm_json_kuint(b, "hlc", t->hlc);
    sm_json_kuint(b, "qty", t->qty);
    char hex[2 * SM_HASH_BYTES + 1];
    sm_hex_encode(t->hash.b, SM_HASH_BYTES, hex);
    sm_json_kstr(b, "hash", hex);
    if (t->hold_seq)
        sm_json_kentry_id(b, "hold", &o->d->origin, t->hold_seq);
    if (t->has_device) {
        sm_hex_encode(t->device, SM_HOLD_TAG_BYTES, hex);
        sm_json_kstr(b, "device", hex);
    }
    if (t->has_client) {
        sm_hex_encode(t->client, SM_HOLD_TAG_BYTES, hex);
        sm_json_kstr(b, "address", hex);
    }
    sm_json_obj_close(b);
    return 0;
}

/*  The device of ?device= as its tag: 1, 0 when absent, -1 answered.      */
static int
s_query_device(sm_api *self, const sm_http_req *req, sm_http_resp *r,
               uint8_t tag[SM_HOLD_TAG_BYTES])
{
    const char *q = req->query ? req->query : "";
    for (size_t guard = 0; *q && guard < 64; guard++) {
        size_t n = strcspn(q, "&");
        if (n > 7 && memcmp(q, "device=", 7) == 0) {
            char dev[SM_HOLD_DEVICE_BYTES_MAX + 1];
            size_t len = n - 7;
            if (len > SM_HOLD_DEVICE_BYTES_MAX) {
                sm__api_bad(r, "bad_value", "device", "'device' is at most %u bytes",
                            SM_HOLD_DEVICE_BYTES_MAX);
                return -1;
            }
            memcpy(dev, q + 7, len);
            dev[len] = '\0';
            sm_market m;
            int rc = sm_ledger_market(self->ledger, &m);
            if (rc != 0) {
                sm__api_ledger_error(r, rc, false);
                return -1;
            }
            sm_reserve_tag("device", &m.market, dev, tag);
            return 1;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return 0;
}

typedef struct {
    const uint8_t *device;
    bool won;
    char code[SM_HOLD_CODE_BYTES_MAX + 1];
    uint64_t expires_ms, seq;
    sm_entry e;
} s_winner;

static int
s_winner_each(const sm_signed *s, uint64_t seq, void *arg)
{
    s_winner *w = arg;
    if (sm_entry_decode(s->bytes, s->len, &w->e) != 0 || w->e.body.kind != SM_KIND_HOLD)
        return 0;
    if (w->e.body.u.hold.has_device
        && memcmp(w->e.body.u.hold.device, w->device, SM_HOLD_TAG_BYTES) == 0) {
        w->won = true;
        snprintf(w->code, sizeof w->code, "%s", w->e.body.u.hold.code);
        w->expires_ms = w->e.body.u.hold.expires_ms;
        w->seq = seq;
        return 1;
    }
    return 0;
}

static void
s_result(sm_api *self, const sm_http_req *req, const sm_drop *d, uint64_t now_ms,
         sm_http_resp *r)
{
    uint8_t tag[SM_HOLD_TAG_BYTES];
    int got = s_query_device(self, req, r, tag);
    if (got < 0)
        return;
    if (got == 0) {
        sm__api_bad(r, "bad_value", "device", "ask with ?device=<the id the page keeps>");
        return;
    }
    bool entered = false, counted = false;
    int rc = 0;
    s_winner *w = calloc(1, sizeof *w);
    if (!w) {
        sm__api_nomem(r);
        return;
    }
    w->device = tag;
    if (d->mode == SM_DROP_RAFFLE) {
        rc = sm_drop_device_counted(self->ledger, d, tag, &entered, &counted);
        if (rc == 0 && d->draw_seq && d->winners)
            rc = sm_ledger_read(self->ledger, &d->origin, d->draw_seq + 1, d->winners,
                                s_winner_each, w);
    } else {
        /* First-come: "won" is a hold of this device against the drop. */
        uint64_t dev = 0;
        rc = sm_drop_ledger(self->ledger, d, tag, NULL, NULL, NULL, NULL, &dev, NULL);
        entered = counted = w->won = dev > 0;
    }
    if (rc != 0) {
        free(w);
        sm__api_ledger_error(r, rc, false);
        return;
    }
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kentry_id(&b, "drop", &d->origin, d->seq);
    s_now_members(&b, now_ms);
    sm_json_kbool(&b, "entered", entered);
    sm_json_kbool(&b, "drawn", d->mode == SM_DROP_RAFFLE && d->draw_seq != 0);
    sm_json_kbool(&b, "counted", d->mode == SM_DROP_RAFFLE ? counted && d->draw_seq : counted);
    sm_json_kbool(&b, "won", w->won);
    if (w->won && w->code[0]) {
        sm_json_kstr(&b, "code", w->code);
        sm_json_kentry_id(&b, "hold", &d->origin, w->seq);
        sm_json_ktime(&b, "pickup_by", w->expires_ms);
    }
    if (d->mode == SM_DROP_RAFFLE && d->draw_seq && entered && !counted)
        sm_json_kstr(&b, "why", "your entry reached the stall after the draw (or after the "
                     "raffle closed), so it was not counted");
    sm_json_obj_close(&b);
    free(w);
    sm__api_take(r, 200, &b);
}

/*  GET /api/drops/<id>/ledger walks the stall's log from the drop's start,
    so its answer is kept per drop: the same state version gets it again,
    and while the state moves it is made anew at most every
    S_LEDGER_FRESH_MS, so a flood of requests costs a walk a second per
    drop rather than one a request (proto/api.md says it may lag so).  Four
    drops' answers are kept, each of at most S_LEDGER_KEEP_BYTES.           */
#define S_LEDGER_FRESH_MS 1000u
#define S_LEDGER_KEEP_BYTES (4u << 20)   /* a larger answer is made each time */

static void
s_ledger(sm_api *self, const sm_drop *dp, uint64_t now_ms, sm_http_resp *r)
{
    const sm_drop d = *dp;
    uint64_t version = 0;
    int rc = sm_ledger_version(self->ledger, &version);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return;
    }
    const size_t slots = sizeof self->ledger_kept / sizeof self->ledger_kept[0];
    struct sm__api_ledger_kept *k = NULL;
    for (size_t i = 0; i < slots && !k; i++) {
        struct sm__api_ledger_kept *c = &self->ledger_kept[i];
        if (c->body && c->seq == d.seq && memcmp(c->origin.b, d.origin.b, SM_KEY_BYTES) == 0)
            k = c;
    }
    bool fresh = k && (k->version == version
                       || (now_ms >= k->at_ms && now_ms - k->at_ms < S_LEDGER_FRESH_MS));
    if (!fresh) {
        sm_json_buf b = { 0 };
        sm_json_obj_open(&b);
        sm_json_kentry_id(&b, "drop", &d.origin, d.seq);
        sm_json_kstr(&b, "sku", d.sku);
        sm_json_ktime(&b, "starts", d.starts_ms);
        sm_json_kuint(&b, "qty", d.qty);
        sm_json_kuint(&b, "per_shopper", d.per_shopper);
        sm_json_key(&b, "entries");
        sm_json_arr_open(&b);
        s_ledger_out o = { &b, &d };
        uint64_t taken = 0;
        rc = sm_drop_ledger(self->ledger, &d, NULL, NULL, s_ledger_each, &o, &taken, NULL, NULL);
        sm_json_arr_close(&b);
        sm_json_kuint(&b, "taken", taken);
        sm_json_obj_close(&b);
        if (rc != 0) {
            sm_json_buf_free(&b);
            sm__api_ledger_error(r, rc, false);
            return;
        }
        if (b.len > S_LEDGER_KEEP_BYTES) {         /* too big to keep: as it is */
            sm__api_take(r, 200, &b);
            return;
        }
        size_t len = 0;
        char *body = sm_json_take(&b, &len);
        sm_json_buf_free(&b);
        if (!body) {
            sm__api_ledger_error(r, SM_ENOMEM, false);
            return;
        }
        if (!k) {
            k = &self->ledger_kept[self->ledger_next];
            self->ledger_next = (self->ledger_next + 1) % slots;
        }
        free(k->body);
        k->origin = d.origin;
        k->seq = d.seq;
        k->version = version;
        k->at_ms = now_ms;
        k->body = body;
        k->len = len;
    }
    sm_json_buf b = { 0 };
    sm_json_raw(&b, k->body, k->len);
    sm__api_take(r, 200, &b);
}

int
sm__api_get_drop(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                 sm_http_resp *r, sm_core_req **write)
{
    (void) write;
    sm_id origin;
    uint64_t seq;
    const char *rest;
    sm_drop d;
    if (!s_path_id(req, r, &origin, &seq, &rest) || !s_need_drop(self, r, &origin, seq, &d))
        return SM_API_DONE;
    if (strcmp(rest, "result") == 0) {
        s_result(self, req, &d, now_ms, r);
        return SM_API_DONE;
    }
    sm_json_buf b = { 0 };
    int rc = 0;
    sm_json_obj_open(&b);
    if (rest[0] == '\0') {
        s_now_members(&b, now_ms);
        sm_json_key(&b, "drop");
        sm_json_obj_open(&b);
        rc = s_drop_members(self, &b, &d, now_ms);
        sm_json_obj_close(&b);
    } else if (strcmp(rest, "ledger") == 0) {
        sm_json_buf_free(&b);
        s_ledger(self, &d, now_ms, r);
        return SM_API_DONE;
    } else {
        sm_json_buf_free(&b);
        sm__api_error(r, 404, "not_found", "a drop has /ledger and /result: see proto/api.md",
                      NULL);
        return SM_API_DONE;
    }
    sm_json_obj_close(&b);
    if (rc != 0) {
        sm_json_buf_free(&b);
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

/* ---- writes ---------------------------------------------------------------- */

static s_dwrite *
s_dwrite_new(s_what what)
{
    s_dwrite *w = calloc(1, sizeof *w);
    if (w) {
        w->magic = SM__API_DROP_MAGIC;
        w->what = what;
    }
    return w;
}

static const char *const s_create_keys[] = {
    "sku", "qty", "starts", "mode", "per_shopper", "closes", "pickup_minutes", NULL
};

/*  A time member `key` as RFC 3339 into *ms: SM__API_OK, _ABSENT, _ANSWERED. */
static int
s_get_time(sm_http_resp *r, const sm_json_val *o, const char *key, bool required,
           uint64_t *ms)
{
    char text[64];
    int got = sm__api_get_str(r, o, "", key, required, 1, sizeof text - 1, text, sizeof text);
    if (got != SM__API_OK)
        return got;
    if (!s_rfc3339(text, ms)) {
        sm__api_bad(r, "bad_value", key, "'%s' must be an RFC 3339 time such as "
                    "2026-06-01T11:00:00Z or 2026-06-01T12:00:00+01:00", key);
        return SM__API_ANSWERED;
    }
    return SM__API_OK;
}

static bool
s_create_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, uint64_t now_ms,
            sm_body *b)
{
    int64_t qty, per = 1, pickup = 30;
    char mode[16];
    uint64_t starts = 0, closes = 0;
    if (!sm__api_only(r, o, "", s_create_keys)
        || sm__api_get_str(r, o, "", "sku", true, 1, SM_SKU_BYTES_MAX, b->u.drop.sku,
                           sizeof b->u.drop.sku) != SM__API_OK
        || sm__api_get_int(r, o, "", "qty", true, 1, SM_QTY_MAX, "bad_quantity", &qty)
           != SM__API_OK
        || s_get_time(r, o, "starts", true, &starts) != SM__API_OK
        || sm__api_get_str(r, o, "", "mode", true, 1, sizeof mode - 1, mode, sizeof mode)
           != SM__API_OK)
        return false;
    int got = sm__api_get_int(r, o, "", "per_shopper", false, 1, SM_QTY_MAX, "bad_quantity",
                              &per);
    if (got == SM__API_ANSWERED)
        return false;
    got = sm__api_get_int(r, o, "", "pickup_minutes", false, 1, SM_DROP_PICKUP_MIN_MAX,
                          "bad_value", &pickup);
    if (got == SM__API_ANSWERED)
        return false;
    got = s_get_time(r, o, "closes", false, &closes);
    if (got == SM__API_ANSWERED)
        return false;
    int m = strcmp(mode, "first_come") == 0 ? SM_DROP_FIRST_COME
          : strcmp(mode, "raffle") == 0 ? SM_DROP_RAFFLE : 0;
    if (!m) {
        sm__api_bad(r, "bad_value", "mode", "'mode' is \"first_come\" or \"raffle\"");
        return false;
    }
    if (starts + 1000 < now_ms) {
        sm__api_bad(r, "bad_value", "starts", "'starts' is in the past (this node's clock "
                    "says it is later): give a time to come");
        return false;
    }
    if (m == SM_DROP_RAFFLE && got != SM__API_OK) {
        sm__api_bad(r, "bad_value", "closes", "a raffle needs 'closes': when entries end");
        return false;
    }
    if (m == SM_DROP_FIRST_COME && got == SM__API_OK) {
        sm__api_bad(r, "bad_value", "closes", "a first-come drop has no 'closes': it ends "
                    "when its units are gone");
        return false;
    }
    if (m == SM_DROP_RAFFLE && closes <= starts) {
        sm__api_bad(r, "bad_value", "starts", "'starts' must be before 'closes'");
        return false;
    }
    if (per > qty) {
        sm__api_bad(r, "bad_quantity", "per_shopper", "'per_shopper' (%" PRId64 ") is more "
                    "than the drop's qty (%" PRId64 ")", per, qty);
        return false;
    }
    sm_item it;
    if (!sm__api_need_item(self, r, b->u.drop.sku, &it))
        return false;
    sm_units u;
    int rc = sm_ledger_units(self->ledger, b->u.drop.sku, &self->node, &u);
    if (rc == SM_ENOTFOUND) {
        u.units = 0;
        rc = 0;
    }
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return false;
    }
    if ((int64_t) qty > u.units) {
        sm__api_bad(r, "bad_quantity", "qty", "a stall drops units it holds: %" PRId64
                    " wanted, %" PRId64 " here", qty, u.units);
        return false;
    }
    b->kind = SM_KIND_DROP;
    b->u.drop.qty = (uint32_t) qty;
    b->u.drop.starts_ms = starts;
    b->u.drop.mode = (uint8_t) m;
    b->u.drop.per_shopper = (uint32_t) per;
    b->u.drop.closes_ms = m == SM_DROP_RAFFLE ? closes : 0;
    b->u.drop.pickup_minutes = (uint32_t) pickup;
    return true;
}

static bool
s_need_stock_scope(const sm_http_req *req, sm_http_resp *r)
{
    if (!req->authorized) {
        sm__api_error(r, 401, "unauthorized", "send 'Authorization: Bearer <api-token>' "
                      "(the api-token file of the node's data directory)", NULL);
        return false;
    }
    if (req->scope && req->scope < SM_SCOPE_STOCK) {
        sm__api_error(r, 403, "forbidden_scope", "a drop is the stock's: pair a device with "
                      "'stallmesh pair --scope stock'", NULL);
        return false;
    }
    return true;
}

int
sm__api_post_drops(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                   sm_http_resp *r, sm_core_req **write)
{
    sm_json_doc *doc;
    if (!sm__api_parse_body(req, r, &doc))
        return SM_API_DONE;
    s_dwrite *w = s_dwrite_new(S_CREATE);
    if (!w) {
        sm_json_doc_free(&doc);
        sm__api_nomem(r);
        return SM_API_DONE;
    }
    bool ok = s_create_in(self, sm_json_root(doc), r, now_ms, &w->req.body);
    sm_json_doc_free(&doc);
    if (!ok) {
        free(w);
        return SM_API_DONE;
    }
    *write = &w->req;
    return SM_API_WRITE;
}

/*  A token bucket per address for raffle entries (like holds').           */
typedef struct {
    char client[SM__API_CLIENT_BYTES];
    uint64_t credit, last_ms;
} s_bucket;
static s_bucket s_buckets[S_RATE_CLIENTS];

static int
s_entry_rate(const char *client, uint64_t now_ms)
{
    const uint64_t cap = (uint64_t) S_ENTRIES_PER_MIN * 60000;
    s_bucket *slot = NULL, *oldest = &s_buckets[0];
    for (size_t i = 0; i < S_RATE_CLIENTS; i++) {
        if (strcmp(s_buckets[i].client, client) == 0 && s_buckets[i].client[0]) {
            slot = &s_buckets[i];
            break;
        }
        if (s_buckets[i].last_ms < oldest->last_ms)
            oldest = &s_buckets[i];
    }
    if (!slot) {
        slot = oldest;
        snprintf(slot->client, sizeof slot->client, "%s", client);
        slot->credit = cap;
        slot->last_ms = now_ms;
    }
    if (now_ms > slot->last_ms) {
        uint64_t gain = (now_ms - slot->last_ms) * S_ENTRIES_PER_MIN;
        slot->credit = slot->credit + gain > cap ? cap : slot->credit + gain;
        slot->last_ms = now_ms;
    }
    if (slot->credit >= 60000) {
        slot->credit -= 60000;
        return 0;
    }
    return (int) ((60000 - slot->credit) / S_ENTRIES_PER_MIN / 1000 + 1);
}

static const char *const s_entry_keys[] = { "device", NULL };

static int
s_post_entry(sm_api *self, const sm_http_req *req, uint64_t now_ms, sm_http_resp *r,
             sm_core_req **write, const sm_drop *d)
{
    if (d->mode != SM_DROP_RAFFLE) {
        sm__api_error(r, 409, "not_a_raffle", "that drop is first-come: reserve at its stall",
                      "id");
        return SM_API_DONE;
    }
    /* The node that appends judges the times by its clock: at a mirror,
       the drop's stall (a drawn raffle is closed whatever the clock). */
    if (now_ms < d->starts_ms && !self->mirror) {
        sm__api_ledger_error(r, SM_EDROP, false);
        return SM_API_DONE;
    }
    if ((now_ms > d->closes_ms && !self->mirror) || d->draw_seq) {
        sm__api_ledger_error(r, SM_EDROPCLOSED, false);
        return SM_API_DONE;
    }
    int wait_s = s_entry_rate(req->client ? req->client : "", now_ms);
    if (wait_s > 0) {
        sm_json_buf b = { 0 };
        sm__api_error_begin(&b, "rate_limited", "too many entries from this address: wait "
                            "and retry");
        sm_json_kint(&b, "retry_after_s", wait_s);
        sm__api_error_end(r, 429, &b);
        r->retry_after_s = wait_s;
        return SM_API_DONE;
    }
    sm_json_doc *doc;
    if (!sm__api_parse_body(req, r, &doc))
        return SM_API_DONE;
    char device[SM_HOLD_DEVICE_BYTES_MAX + 1];
    const sm_json_val *o = sm_json_root(doc);
    bool ok = sm__api_only(r, o, "", s_entry_keys)
              && sm__api_get_str(r, o, "", "device", true, 1, SM_HOLD_DEVICE_BYTES_MAX, device,
                                 sizeof device) == SM__API_OK;
    sm_json_doc_free(&doc);
    if (!ok)
        return SM_API_DONE;
    sm_market m;
    int rc = sm_ledger_market(self->ledger, &m);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    s_dwrite *w = s_dwrite_new(S_ENTER);
    if (!w) {
        sm__api_nomem(r);
        return SM_API_DONE;
    }
    w->drop_origin = d->origin;
    w->drop_seq = d->seq;
    sm_body *b = &w->req.body;
    b->kind = SM_KIND_RAFFLE_ENTRY;
    b->u.raffle_entry.drop_origin = d->origin;
    b->u.raffle_entry.drop_seq = d->seq;
    sm_reserve_tag("device", &m.market, device, b->u.raffle_entry.device);
    if (req->client && req->client[0]) {
        sm_reserve_tag("client", &m.market, req->client, b->u.raffle_entry.client);
        b->u.raffle_entry.has_client = true;
    }
    /* A mirror has no log to append to: the drop's stall appends the entry
       (ENTRY_ASK, proto/mesh.md 7.10) and the viewer gets its answer. */
    w->req.forward = self->mirror;
    w->req.at = d->origin;
    *write = &w->req;
    return SM_API_WRITE;
}

int
sm__api_post_drop(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    sm_id origin;
    uint64_t seq;
    const char *rest;
    sm_drop d;
    if (!s_path_id(req, r, &origin, &seq, &rest))
        return SM_API_DONE;
    if (strcmp(rest, "entries") != 0 && strcmp(rest, "draw") != 0) {
        sm__api_error(r, 404, "not_found", "POST a drop's /entries or /draw: see proto/api.md",
                      NULL);
        return SM_API_DONE;
    }
    if (strcmp(rest, "draw") == 0 && self->mirror) {
        sm__api_error(r, 403, sm_errname(SM_EREADONLY), sm_strerror(SM_EREADONLY), NULL);
        return SM_API_DONE;
    }
    if (strcmp(rest, "draw") == 0 && !s_need_stock_scope(req, r))
        return SM_API_DONE;
    if (!s_need_drop(self, r, &origin, seq, &d))
        return SM_API_DONE;
    if (strcmp(rest, "entries") == 0)
        return s_post_entry(self, req, now_ms, r, write, &d);
    if (memcmp(origin.b, self->node.b, SM_KEY_BYTES) != 0) {
        sm__api_error(r, 409, "not_this_stall", "a raffle is drawn by the stall that holds "
                      "its units: ask that stall's node", "id");
        return SM_API_DONE;
    }
    if (d.mode != SM_DROP_RAFFLE) {
        sm__api_ledger_error(r, SM_ENOTRAFFLE, false);
        return SM_API_DONE;
    }
    if (d.draw_seq) {
        sm__api_ledger_error(r, SM_EDRAWN, false);
        return SM_API_DONE;
    }
    if (now_ms <= d.closes_ms) {
        sm_json_buf b = { 0 };
        sm__api_error_begin(&b, "draw_too_early", "a raffle is drawn only after it closes");
        sm_json_ktime(&b, "closes", d.closes_ms);
        sm__api_error_end(r, 409, &b);
        return SM_API_DONE;
    }
    s_dwrite *w = s_dwrite_new(S_DRAW);
    if (!w) {
        sm__api_nomem(r);
        return SM_API_DONE;
    }
    w->drop_origin = d.origin;
    w->drop_seq = d.seq;
    w->req.body.kind = SM_KIND_RAFFLE_DRAW;
    w->req.body.u.raffle_draw.drop_seq = d.seq;
    *write = &w->req;
    return SM_API_WRITE;
}

/* ---- answers to writes ------------------------------------------------------ */

static void
s_draw_ok(sm_api *self, const s_dwrite *w, uint64_t now_ms, sm_http_resp *r)
{
    char why[320];
    sm_drop_result res;
    sm_drop d;
    int rc = sm_drop_get(self->ledger, &w->drop_origin, w->drop_seq, &d);
    if (rc == 0)
        rc = sm_drop_verify(self->ledger, &w->drop_origin, w->drop_seq, why, sizeof why, &res);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return;
    }
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kentry_id(&b, "drop", &d.origin, d.seq);
    sm_json_kentry_id(&b, "draw", &d.origin, d.draw_seq);
    s_now_members(&b, now_ms);
    sm_json_kuint(&b, "counted", res.counted);
    sm_json_kuint(&b, "winners", res.winners);
    char hex[2 * SM_HASH_BYTES + 1];
    sm_hex_encode(res.r.b, SM_HASH_BYTES, hex);
    sm_json_kstr(&b, "r", hex);
    sm_json_kbool(&b, "verified", true);
    sm_json_obj_close(&b);
    sm_drop_result_free(&res);
    sm__api_take(r, 200, &b);
}

void
sm__api_drop_finish(sm_api *self, sm_core_req *write, uint64_t now_ms, sm_http_resp *resp)
{
    s_dwrite *w = (s_dwrite *) write;
    assert(w->magic == SM__API_DROP_MAGIC);
    memset(resp, 0, sizeof *resp);
    int rc = w->req.rc;
    /* The same device from the same address entered here already (a retry
       whose first 201 was lost): that entry is the answer; the device from
       another address, or another device from this one, stays 409. */
    if (w->what == S_ENTER && !w->req.forward)
        rc = sm_ledger_raffle_entry_repeat(self->ledger, &self->node, &w->req.body, rc,
                                           &w->req.seq);
    if (rc != 0) {
        if (rc == SM_ENOSTOCK && w->what == S_CREATE)
            sm__api_bad(resp, "bad_quantity", "qty", "a stall drops units it holds: fewer "
                        "are here now");
        else
            sm__api_ledger_error(resp, rc, false);
    } else if (w->what == S_CREATE) {
        sm_drop d;
        rc = sm_drop_get(self->ledger, &self->node, w->req.seq, &d);
        sm_json_buf b = { 0 };
        sm_json_obj_open(&b);
        if (rc == 0)
            rc = s_drop_members(self, &b, &d, now_ms);
        sm_json_obj_close(&b);
        if (rc != 0) {
            sm_json_buf_free(&b);
            sm__api_ledger_error(resp, rc, false);
        } else {
            sm__api_take(resp, 201, &b);
        }
    } else if (w->what == S_ENTER) {
        sm_json_buf b = { 0 };
        sm_json_obj_open(&b);
        sm_json_kentry_id(&b, "id", w->req.forward ? &w->req.at : &self->node, w->req.seq);
        sm_json_kentry_id(&b, "drop", &w->drop_origin, w->drop_seq);
        sm_json_kbool(&b, "entered", true);
        s_now_members(&b, now_ms);
        sm_json_obj_close(&b);
        sm__api_take(resp, 201, &b);
    } else {
        s_draw_ok(self, w, now_ms, resp);
    }
    w->magic = 0;
    free(w);
}

void
sm__api_drop_free(sm_core_req *write)
{
    s_dwrite *w = (s_dwrite *) write;
    assert(w->magic == SM__API_DROP_MAGIC);
    w->magic = 0;
    free(w);
}

/* ---- first-come caps, for holds -------------------------------------------- */

typedef struct {
    const sm_id *node;
    const char *sku;
    uint64_t now_ms;
    sm_drop best;
    bool found;
} s_live;

static int
s_live_each(const sm_drop *d, void *arg)
{
    s_live *l = arg;
    if (memcmp(d->origin.b, l->node->b, SM_KEY_BYTES) != 0 || strcmp(d->sku, l->sku) != 0
        || d->mode != SM_DROP_FIRST_COME || d->starts_ms > l->now_ms)
        return 0;
    if (!l->found || d->starts_ms > l->best.starts_ms) {
        l->best = *d;
        l->found = true;
    }
    return 0;
}

bool
sm__api_drop_sold_out(sm_api *self, sm_http_resp *r, const sm_body *hold, uint64_t now_ms)
{
    for (uint32_t i = 0; i < sm_hold_body_lines(hold); i++) {
        const char *sku;
        uint32_t qty;
        sm_hold_body_line(hold, i, &sku, &qty);
        sm_units u;
        int rc = sm_ledger_units(self->ledger, sku, &self->node, &u);
        if (rc == SM_ENOTFOUND)
            u.units = 0;
        else if (rc != 0 || u.units >= (int64_t) qty)
            continue;
        s_live lv;
        memset(&lv, 0, sizeof lv);
        lv.node = &self->node;
        lv.sku = sku;
        lv.now_ms = now_ms;
        if (sm_drop_each(self->ledger, s_live_each, &lv) != 0 || !lv.found)
            continue;
        sm_drop_refusal why;
        memset(&why, 0, sizeof why);
        why.drop = lv.best;
        why.limit = "qty";
        why.max = lv.best.qty;
        snprintf(why.sku, sizeof why.sku, "%s", sku);
        sm__api_drop_refused(r, SM_ENOSTOCK, &why);
        return true;
    }
    return false;
}

void
sm__api_drop_refused(sm_http_resp *r, int rc, const sm_drop_refusal *why)
{
    if (rc != SM_EDROPLIMIT && rc != SM_ENOSTOCK) {
        sm__api_ledger_error(r, rc, false);
        return;
    }
    char detail[200];
    if (rc == SM_EDROPLIMIT)
        snprintf(detail, sizeof detail, "the drop of %s allows %u per shopper: this %s would "
                 "have %" PRIu64, why->sku, why->max, why->limit, why->wanted);
    else
        snprintf(detail, sizeof detail, "the drop of %s is sold out: its %u units are taken",
                 why->sku, why->max);
    sm_json_buf o = { 0 };
    sm__api_error_begin(&o, rc == SM_EDROPLIMIT ? "drop_limit" : "sold_out", detail);
    sm_json_kentry_id(&o, "drop", &why->drop.origin, why->drop.seq);
    sm_json_kstr(&o, "sku", why->sku);
    if (rc == SM_EDROPLIMIT) {
        sm_json_kstr(&o, "limit", why->limit);
        sm_json_kuint(&o, "max", why->max);
        sm_json_kuint(&o, "wanted", why->wanted);
    }
    sm__api_error_end(r, 409, &o);
}
