/*  The API's writes, each from its request to its answer: POST /api/items,
    /api/stock/add, /api/stock/adjust, /api/stock/move, /api/sales,
    /api/returns, /api/holds and DELETE /api/holds/<id>.

    A write goes through three steps, and each kind has its section below
    with the three in order:
      1. read the request (sm__api_post_*): the JSON body checked completely
         (shape, exact types, limits.h bounds, that the sku exists) into the
         sm_body of an s_write, whose first member is the sm_core_req the
         web server submits to the core;
      2. the core appends it (or refuses it) and hands it back;
      3. answer it (sm_api_finish -> the kind's s_kind.ok, or on a refusal
         its s_kind.no_stock / the ledger's error): 201 with what was
         written, read back where the answer shows current units.
    So the core only ever sees well-formed bodies, and a 5xx only ever
    means the node itself is unwell.

    Holds also keep, per client address, a token bucket (POST /api/holds
    without the token is rate-limited) and which address made each recent
    hold, so a shopper's page can cancel its own hold without the token.    */
#include <assert.h>
#include <sys/random.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "bytes.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"

#define S_WRITE_MAGIC 0x41504957u  /* "APIW": a live s_write */
#define S_MINUTE_MS   60000u

typedef struct s_write s_write;

/*  What one kind of write does at each step.                                */
typedef struct {
    sm_kind body_kind;
    /* Step 1: fill w from the body `o`, or answer 4xx into r and fail. */
    bool (*in)(sm_api *self, const sm_json_val *o, sm_http_resp *r,
               uint64_t now_ms, s_write *w);
    /* Step 3: the answer to a committed write. */
    void (*ok)(sm_api *self, s_write *w, sm_http_resp *r);
    /* Step 3: 409 insufficient_stock (NULL: the generic one, naming no sku). */
    void (*no_stock)(sm_api *self, const s_write *w, sm_http_resp *r);
    /* Step 3 of a repeated idempotent write (SM_EEXIST); NULL: an error. */
    void (*again)(sm_api *self, s_write *w, sm_http_resp *r);
    bool gone_is_404;               /* SM_ENOHOLD: the thing is gone (404) */
} s_kind;

/*  A write in flight.  The core sees only `req` (first member).            */
struct s_write {
    sm_core_req req;
    uint32_t magic;                 /* S_WRITE_MAGIC while alive */
    const s_kind *kind;
    char client[SM__API_CLIENT_BYTES];
    bool authorized;                /* the request carried the token */
    uint64_t now_ms;                /* when it was read */
};

/* ====================================================================== */
/* Shared by the kinds                                                     */

/*  A new write of `kind`, zeroed but for the lines of a sale or a return:
    2.5 of its 3.3 KB, for a sale of one line or two.  Their reader fills
    every field of each line it counts (line_count), and nothing reads a
    line past line_count (the codec, the checks, the ledger and the policy
    all stop there; copied skus stop at their NUL).                           */
static s_write *
s_write_new(const sm_http_req *req, const s_kind *kind)
{
    s_write *w = malloc(sizeof *w);
    if (!w)
        return NULL;
    /* [from, to) is left as malloc gave it.  (One memset of the whole, in a
       branch, and the compiler makes the malloc a calloc for every kind.) */
    size_t from = sizeof *w, to = sizeof *w;
    if (kind->body_kind == SM_KIND_SALE) {
        from = offsetof(s_write, req.body.u.sale.lines);
        to = from + sizeof w->req.body.u.sale.lines;
    } else if (kind->body_kind == SM_KIND_RETURN) {
        from = offsetof(s_write, req.body.u.ret.lines);
        to = from + sizeof w->req.body.u.ret.lines;
    }
    memset(w, 0, from);
    memset((char *) w + to, 0, sizeof *w - to);
    w->magic = S_WRITE_MAGIC;
    w->kind = kind;
    sm__strfill(w->client, sizeof w->client, req->client ? req->client : "");
    w->authorized = req->authorized;
    w->req.uncapped = req->authorized;  /* staff holds: no drop caps (policy.h) */
    w->req.body.kind = kind->body_kind;
    return w;
}

static void
s_write_free(s_write *w)
{
    if (!w)
        return;
    assert(w->magic == S_WRITE_MAGIC);
    w->magic = 0;
    free(w);
}

/*  Step 1 for every POST: parse the body, fill a new write of `kind`, and
    hand it back; or answer.                                                 */
static int
s_post(sm_api *self, const s_kind *kind, const sm_http_req *req, uint64_t now_ms,
       sm_http_resp *r, sm_core_req **write)
{
    sm_json_doc *doc;
    if (!sm__api_parse_body(req, r, &doc))
        return SM_API_DONE;
    s_write *w = s_write_new(req, kind);
    if (w)
        w->now_ms = now_ms;
    bool ok = w && kind->in(self, sm_json_root(doc), r, now_ms, w);
    sm_json_doc_free(&doc);
    if (!w) {
        sm__api_nomem(r);
        return SM_API_DONE;
    }
    if (!ok) {
        assert(r->status >= 400);
        s_write_free(w);
        return SM_API_DONE;
    }
    *write = &w->req;
    return SM_API_WRITE;
}

typedef struct {
    const char *sku;
    int64_t total, held;
    bool seen;
} s_sku_sum;

static int
s_sku_sum_cb(const char *sku, const sm_id *location, const sm_units *u,
             void *arg)
{
    (void) location;
    s_sku_sum *s = arg;
    int cmp = strcmp(sku, s->sku);
    if (cmp > 0)
        return 1;                   /* records are in sku order: past it */
    if (cmp == 0) {
        s->total += u->units;
        s->held += u->held;
        s->seen = true;
    }
    return 0;
}

/*  Units of `sku` here (available) and in the whole market, read now.
    One scan of the stock records up to the sku: fine for answers to
    writes, never on the page's path.                                        */
static int
s_units_now(sm_api *self, const char *sku, int64_t *here, int64_t *total)
{
    sm_units u;
    int rc = sm_ledger_units(self->ledger, sku, &self->node, &u);
    if (rc == SM_ENOTFOUND) {
        u.units = 0;
        rc = 0;
    }
    if (rc != 0)
        return rc;
    *here = u.units;
    s_sku_sum s = { sku, 0, 0, false };
    rc = sm_ledger_stock_each(self->ledger, s_sku_sum_cb, &s);
    *total = s.total;
    return rc;
}

static const char s_hint_sell[] = "sell or hold fewer, or move units here";

/*  409 insufficient_stock: `need` units of `sku` were wanted here, with
    its units here and in the whole market and what to do (`hint`).  `rc`
    is an earlier read's failure (answered instead); sku "" names none.     */
static void
s_no_stock_here(sm_api *self, sm_http_resp *r, int rc, const char *sku,
                int64_t need, const char *hint)
{
    int64_t here = 0, total = 0;
    if (rc == 0 && sku[0])
        rc = s_units_now(self, sku, &here, &total);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return;
    }
    char detail[160];
    snprintf(detail, sizeof detail,
             "%" PRId64 " units wanted, %" PRId64 " here (%" PRId64
             " at the market's stalls): %s", need, here, total, hint);
    sm_json_buf o = { 0 };
    sm__api_error_begin(&o, "insufficient_stock", detail);
    sm_json_kstr(&o, "sku", sku);
    sm_json_kint(&o, "here", here);
    sm_json_kint(&o, "total", total);
    sm__api_error_end(r, 409, &o);
}

/*  The answer to a stock write: {"sku","qty",("reason"|"to"),"here","total"}
    with the units after it.                                                  */
static void
s_stock_ok(sm_api *self, sm_http_resp *r, const char *sku, int64_t qty,
           const char *reason, const sm_id *to)
{
    int64_t here = 0, total = 0;
    int rc = s_units_now(self, sku, &here, &total);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return;
    }
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kstr(&b, "sku", sku);
    sm_json_kint(&b, "qty", qty);
    if (reason)
        sm_json_kstr(&b, "reason", reason);
    if (to)
        sm_json_kid(&b, "to", to);
    sm_json_kint(&b, "here", here);
    sm_json_kint(&b, "total", total);
    sm_json_obj_close(&b);
    sm__api_take(r, 201, &b);
}

/*  A member stall named by the request's `field` ("to", "at"): 404 `code`
    with the detail `revoked` or `unknown` when the id is a revoked member
    or none; false when answered (also with the store's error).              */
static bool
s_need_member(sm_api *self, sm_http_resp *r, const sm_id *id, const char *field,
              const char *code, const char *revoked, const char *unknown)
{
    sm_member m;
    int rc = sm_ledger_member(self->ledger, id, &m);
    if (rc == SM_ENOTFOUND || (rc == 0 && m.revoked)) {
        sm_json_buf e = { 0 };
        sm__api_error_begin(&e, code, rc == 0 ? revoked : unknown);
        sm_json_kstr(&e, "field", field);
        sm_json_kid(&e, field, id);
        sm__api_error_end(r, 404, &e);
        return false;
    }
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return false;
    }
    return true;
}

/*  A node id member `field` into *id, or answer 400 bad_value with `detail`. */
static bool
s_get_node_id(sm_http_resp *r, const sm_json_val *o, const char *field,
              bool required, bool *present, sm_id *id, const char *detail)
{
    char hex[2 * SM_ID_HEX_BYTES + 1];
    int got = sm__api_get_str(r, o, "", field, required, 1, sizeof hex - 1, hex,
                              sizeof hex);
    if (got == SM__API_ANSWERED)
        return false;
    *present = got == SM__API_OK;
    if (*present && (strlen(hex) != SM_ID_HEX_BYTES || sm_id_parse(hex, id) != 0)) {
        sm__api_bad(r, "bad_value", field, "%s", detail);
        return false;
    }
    return true;
}

/*  What every stock and hold request starts with: no unknown members, a
    "sku" into sku[cap], a "qty" within qty_min..SM_QTY_MAX.  Whether the
    sku is in the catalog is the caller's to check, in its own order.        */
static bool
s_sku_qty_in(sm_http_resp *r, const sm_json_val *o, const char *const *keys,
             char *sku, size_t cap, int64_t qty_min, int64_t *qty)
{
    return sm__api_only(r, o, "", keys)
           && sm__api_get_str(r, o, "", "sku", true, 1, SM_SKU_BYTES_MAX, sku,
                              cap) == SM__API_OK
           && sm__api_get_int(r, o, "", "qty", true, qty_min, SM_QTY_MAX,
                              "bad_quantity", qty) == SM__API_OK;
}

/*  The route handler of a POST whose body makes a write of `kind`.         */
#define S_POST_HANDLER(name, kind)                                           \
    int name(sm_api *self, const sm_http_req *req, uint64_t now_ms,          \
             sm_http_resp *r, sm_core_req **write)                           \
    {                                                                        \
        return s_post(self, &kind, req, now_ms, r, write);                   \
    }

/* ====================================================================== */
/* POST /api/items {"sku","name","price","currency"?}                      */

static const char *const s_item_keys[] = { "sku", "name", "price", "currency", NULL };

static bool
s_item_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, uint64_t now_ms,
          s_write *w)
{
    (void) now_ms;
    sm_body *b = &w->req.body;
    int64_t price;
    if (!sm__api_only(r, o, "", s_item_keys)
        || sm__api_get_str(r, o, "", "sku", true, 1, SM_SKU_BYTES_MAX,
                           b->u.item.sku, sizeof b->u.item.sku) != SM__API_OK
        || sm__api_get_str(r, o, "", "name", true, 1, SM_NAME_BYTES_MAX,
                           b->u.item.name, sizeof b->u.item.name) != SM__API_OK
        || sm__api_get_int(r, o, "", "price", true, 0, SM_PRICE_MAX, "bad_money",
                           &price) != SM__API_OK)
        return false;
    b->u.item.price = price;
    char currency[17];
    int got = sm__api_get_str(r, o, "", "currency", false, 0, sizeof currency - 1,
                              currency, sizeof currency);
    if (got == SM__API_ANSWERED)
        return false;
    if (got == SM__API_OK
        && (strlen(currency) != 3 || strspn(currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)) {
        sm__api_bad(r, "bad_money", "currency",
                    "'currency' must be three capital letters (ISO 4217), e.g. GBP");
        return false;
    }
    /* All money in a market is minor units of the market's currency. */
    sm_market m;
    int rc = sm_ledger_market(self->ledger, &m);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return false;
    }
    if (got == SM__API_OK && strcmp(currency, m.currency) != 0) {
        sm__api_bad(r, "bad_money", "currency",
                    "this market trades in %s: give prices in its minor units "
                    "(or leave 'currency' out)", m.currency);
        return false;
    }
    memcpy(b->u.item.currency, m.currency, sizeof b->u.item.currency);
    return true;
}

static void
s_item_ok(sm_api *self, s_write *w, sm_http_resp *r)
{
    (void) self;
    const sm_body *body = &w->req.body;
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kstr(&b, "sku", body->u.item.sku);
    sm_json_kstr(&b, "name", body->u.item.name);
    sm_json_kint(&b, "price", body->u.item.price);
    sm_json_kstr(&b, "currency", body->u.item.currency);
    sm_json_obj_close(&b);
    sm__api_take(r, 201, &b);
}

static const s_kind s_item = { SM_KIND_ITEM, s_item_in, s_item_ok, NULL, NULL, false };

S_POST_HANDLER(sm__api_post_item, s_item)

/* ====================================================================== */
/* POST /api/stock/add {"sku","qty"}                                       */

static const char *const s_add_keys[] = { "sku", "qty", NULL };

static bool
s_add_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, uint64_t now_ms,
         s_write *w)
{
    (void) now_ms;
    sm_body *b = &w->req.body;
    int64_t qty;
    sm_item it;
    if (!s_sku_qty_in(r, o, s_add_keys, b->u.stock_add.sku,
                      sizeof b->u.stock_add.sku, 1, &qty)
        || !sm__api_need_item(self, r, b->u.stock_add.sku, &it))
        return false;
    b->u.stock_add.qty = (uint32_t) qty;
    return true;
}

static void
s_add_ok(sm_api *self, s_write *w, sm_http_resp *r)
{
    const sm_body *b = &w->req.body;
    s_stock_ok(self, r, b->u.stock_add.sku, b->u.stock_add.qty, NULL, NULL);
}

static const s_kind s_add = { SM_KIND_STOCK_ADD, s_add_in, s_add_ok, NULL, NULL, false };

S_POST_HANDLER(sm__api_post_stock_add, s_add)

/* ====================================================================== */
/* POST /api/stock/adjust {"sku","qty","reason"}: qty is a signed, non-zero
   correction.                                                              */

static const char *const s_adjust_keys[] = { "sku", "qty", "reason", NULL };

static bool
s_adjust_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, uint64_t now_ms,
            s_write *w)
{
    (void) now_ms;
    sm_body *b = &w->req.body;
    int64_t qty;
    sm_item it;
    if (!s_sku_qty_in(r, o, s_adjust_keys, b->u.adjust.sku,
                      sizeof b->u.adjust.sku, -(int64_t) SM_QTY_MAX, &qty)
        || sm__api_get_str(r, o, "", "reason", true, 1, SM_REASON_BYTES_MAX,
                           b->u.adjust.reason, sizeof b->u.adjust.reason) != SM__API_OK)
        return false;
    if (qty == 0) {
        sm__api_bad(r, "bad_quantity", "qty",
                    "'qty' must not be 0: units to add (positive) or remove (negative)");
        return false;
    }
    if (!sm__api_need_item(self, r, b->u.adjust.sku, &it))
        return false;
    b->u.adjust.delta = qty;
    return true;
}

static void
s_adjust_ok(sm_api *self, s_write *w, sm_http_resp *r)
{
    const sm_body *b = &w->req.body;
    s_stock_ok(self, r, b->u.adjust.sku, b->u.adjust.delta, b->u.adjust.reason, NULL);
}

static void
s_adjust_no_stock(sm_api *self, const s_write *w, sm_http_resp *r)
{
    const sm_body *b = &w->req.body;
    s_no_stock_here(self, r, 0, b->u.adjust.sku, -b->u.adjust.delta, s_hint_sell);
}

static const s_kind s_adjust = {
    SM_KIND_ADJUST, s_adjust_in, s_adjust_ok, s_adjust_no_stock, NULL, false
};

S_POST_HANDLER(sm__api_post_stock_adjust, s_adjust)

/* ====================================================================== */
/* POST /api/stock/move {"sku","qty","to"}: units from here to another
   stall.  `to` must be a member of the roster, not revoked, not this node:
   the ledger would refuse the others too, but here the till learns which
   (self_move, unknown_node) before anything is queued.                     */

static const char *const s_move_keys[] = { "sku", "qty", "to", NULL };

static bool
s_move_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, uint64_t now_ms,
          s_write *w)
{
    (void) now_ms;
    sm_body *b = &w->req.body;
    sm_id *to = &b->u.stock_move.to;
    int64_t qty;
    bool present;
    sm_item it;
    if (!s_sku_qty_in(r, o, s_move_keys, b->u.stock_move.sku,
                      sizeof b->u.stock_move.sku, 1, &qty)
        || !s_get_node_id(r, o, "to", true, &present, to,
                          "'to' must be a node id: the 64 hex digits 'stallmesh peers' or "
                          "GET /api/stock's locations show"))
        return false;
    if (memcmp(to->b, self->node.b, SM_KEY_BYTES) == 0) {
        sm__api_bad(r, "self_move", "to",
                    "'to' is this node: units move to another stall (use "
                    "POST /api/stock/adjust to correct the count here)");
        return false;
    }
    b->u.stock_move.qty = (uint32_t) qty;
    return sm__api_need_item(self, r, b->u.stock_move.sku, &it)
           && s_need_member(self, r, to, "to", "unknown_node",
                            "that node was revoked from the market: move units to a current member",
                            "no member of this market has that id: check it with 'stallmesh peers' "
                            "(or wait until its admission has reached this node)");
}

static void
s_move_ok(sm_api *self, s_write *w, sm_http_resp *r)
{
    const sm_body *b = &w->req.body;
    s_stock_ok(self, r, b->u.stock_move.sku, b->u.stock_move.qty, NULL,
               &b->u.stock_move.to);
}

static void
s_move_no_stock(sm_api *self, const s_write *w, sm_http_resp *r)
{
    const sm_body *b = &w->req.body;
    s_no_stock_here(self, r, 0, b->u.stock_move.sku, b->u.stock_move.qty,
                    "a stall moves only units it holds: move fewer");
}

static const s_kind s_move = {
    SM_KIND_STOCK_MOVE, s_move_in, s_move_ok, s_move_no_stock, NULL, false
};

S_POST_HANDLER(sm__api_post_stock_move, s_move)

/* ====================================================================== */
/* POST /api/sales {"lines":[{"sku","qty","price"?}],"source","payment",
   "external_id"?,"hold"?}                                                  */

static const char *const s_sale_keys[] = { "lines", "source", "payment",
                                           "external_id", "hold", NULL };
static const char *const s_sale_line_keys[] = { "sku", "qty", "price", NULL };
static const char *const s_return_line_keys[] = { "sku", "qty", NULL };

/*  "lines[i]." into prefix[24] (i < SM_SALE_LINES_MAX), the field path of
    line i's members in errors; by hand, as every line of every sale needs
    one.                                                                     */
static void
s_line_prefix(char prefix[24], size_t i)
{
    _Static_assert(SM_SALE_LINES_MAX <= 1000000000u, "a line's index fits prefix[24]");
    assert(i < SM_SALE_LINES_MAX);
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char) ('0' + i % 10);
        i /= 10;
    } while (i);
    memcpy(prefix, "lines[", 6);
    for (size_t k = 0; k < n; k++)
        prefix[6 + k] = digits[n - 1 - k];
    memcpy(prefix + 6 + n, "].", 3);
}

/*  The "lines" array of a sale (priced) or a return into lines[]/count.
    Sale lines must name catalog items of one currency (*currency gets it);
    every sku at most once.                                                  */
static bool
s_lines_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, bool sale,
           sm_line *lines, uint32_t *count, char currency[4])
{
    const sm_json_val *arr = sm_json_get(o, "lines");
    if (!arr) {
        sm__api_bad(r, "missing_field", "lines", "'lines' is required");
        return false;
    }
    if (!sm_json_is_array(arr)) {
        sm__api_bad(r, "wrong_type", "lines", "'lines' must be an array of objects");
        return false;
    }
    size_t n = sm_json_size(arr);
    if (n < 1 || n > SM_SALE_LINES_MAX) {
        sm__api_bad(r, "bad_value", "lines", "'lines' must hold 1 to %u lines",
                    SM_SALE_LINES_MAX);
        return false;
    }
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const sm_json_val *line = sm_json_at(arr, i);
        char prefix[24];
        s_line_prefix(prefix, i);
        if (!sm_json_is_object(line)) {
            char field[24];
            snprintf(field, sizeof field, "lines[%zu]", i);
            sm__api_bad(r, "wrong_type", field, "'%s' must be an object", field);
            return false;
        }
        sm_line *l = &lines[i];
        int64_t qty;
        if (!sm__api_only(r, line, prefix, sale ? s_sale_line_keys : s_return_line_keys)
            || sm__api_get_str(r, line, prefix, "sku", true, 1, SM_SKU_BYTES_MAX,
                               l->sku, sizeof l->sku) != SM__API_OK
            || sm__api_get_int(r, line, prefix, "qty", true, 1, SM_QTY_MAX,
                               "bad_quantity", &qty) != SM__API_OK)
            return false;
        l->qty = (uint32_t) qty;
        l->price = 0;                   /* a return's; a sale's is set below */
        for (size_t j = 0; j < i; j++) {
            if (strcmp(lines[j].sku, l->sku) == 0) {
                char field[40];
                snprintf(field, sizeof field, "%ssku", prefix);
                sm__api_bad(r, "duplicate_sku", field,
                            "sku '%s' appears on two lines: put its units on one line",
                            l->sku);
                return false;
            }
        }
        if (!sale)
            continue;
        sm_item it;
        if (!sm__api_need_item(self, r, l->sku, &it))
            return false;
        int64_t price = it.price;
        if (sm__api_get_int(r, line, prefix, "price", false, 0, SM_PRICE_MAX,
                            "bad_money", &price) == SM__API_ANSWERED)
            return false;
        l->price = price;
        if (i == 0) {
            memcpy(currency, it.currency, 4);
        } else if (strcmp(currency, it.currency) != 0) {
            char field[40];
            snprintf(field, sizeof field, "%ssku", prefix);
            sm__api_bad(r, "bad_money", field,
                        "a sale is in one currency: '%s' is priced in %s, the first line in %s",
                        l->sku, it.currency, currency);
            return false;
        }
        int64_t line_total;
        if (__builtin_mul_overflow(price, (int64_t) qty, &line_total)
            || __builtin_add_overflow(total, line_total, &total)
            || total > SM_SALE_TOTAL_MAX) {
            sm__api_bad(r, "bad_money", "lines",
                        "the sale's total exceeds %lld minor units", SM_SALE_TOTAL_MAX);
            return false;
        }
    }
    *count = (uint32_t) n;
    return true;
}

/*  A sale of a hold without "lines": every line of the hold at its catalog
    price.  A hold that is not open answers why (hold_sold, hold_expired,
    hold_cancelled: 409; unknown_hold: 404).                                */
static bool
s_sale_hold_lines(sm_api *self, sm_http_resp *r, uint64_t now_ms, sm_body *b)
{
    sm_hold h;
    int rc = sm_ledger_hold_find(self->ledger, &self->node, b->u.sale.hold_seq, &h);
    if (rc == SM_ENOTFOUND) {
        sm__api_error(r, 404, "unknown_hold", "no reservation with that id at this stall",
                      "hold");
        return false;
    }
    if (rc == 0 && h.ended == SM_HOLD_OPEN && now_ms >= h.expires_ms)
        rc = SM_EHOLDEXPIRED;
    else if (rc == 0 && h.ended != SM_HOLD_OPEN)
        rc = h.ended == SM_HOLD_SOLD ? SM_EHOLDSOLD
             : h.ended == SM_HOLD_EXPIRED ? SM_EHOLDEXPIRED : SM_EHOLDGONE;
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return false;
    }
    for (uint32_t i = 0; i < h.line_count; i++) {
        sm_item it;
        if (!sm__api_need_item(self, r, h.lines[i].sku, &it))
            return false;
        sm_line *l = &b->u.sale.lines[i];
        snprintf(l->sku, sizeof l->sku, "%s", h.lines[i].sku);
        l->qty = h.lines[i].qty;
        l->price = it.price;
        if (i == 0) {
            memcpy(b->u.sale.currency, it.currency, 4);
        } else if (strcmp(b->u.sale.currency, it.currency) != 0) {
            sm__api_bad(r, "bad_money", "hold",
                        "the reservation's items are priced in two currencies: "
                        "sell them with 'lines'");
            return false;
        }
    }
    b->u.sale.line_count = h.line_count;
    return true;
}

static bool
s_sale_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, uint64_t now_ms,
          s_write *w)
{
    sm_body *b = &w->req.body;
    char source[SM_NAME_BYTES_MAX + 1], payment[SM_NAME_BYTES_MAX + 1];
    if (!sm__api_only(r, o, "", s_sale_keys))
        return false;
    bool by_hold = !sm_json_get(o, "lines") && sm_json_get(o, "hold");
    if (by_hold) {
        if (sm__api_get_own_id(self, r, o, "hold", true, "unknown_hold",
                               &b->u.sale.hold_seq) != SM__API_OK
            || !s_sale_hold_lines(self, r, now_ms, b))
            return false;
    }
    if ((!by_hold
         && !s_lines_in(self, o, r, true, b->u.sale.lines, &b->u.sale.line_count,
                        b->u.sale.currency))
        || sm__api_get_str(r, o, "", "source", true, 1, sizeof source - 1, source,
                           sizeof source) == SM__API_ANSWERED
        || sm__api_get_str(r, o, "", "payment", true, 1, sizeof payment - 1, payment,
                           sizeof payment) == SM__API_ANSWERED)
        return false;
    int src = sm_source_parse(source), pay = sm_payment_parse(payment);
    if (src == 0) {
        sm__api_bad(r, "bad_value", "source",
                    "'source' must be one of in_person, livestream, online, preview");
        return false;
    }
    if (pay == 0) {
        sm__api_bad(r, "bad_value", "payment",
                    "'payment' must be one of card, cash, qr, offline_card, other");
        return false;
    }
    b->u.sale.source = (uint8_t) src;
    b->u.sale.payment = (uint8_t) pay;
    if (sm__api_get_str(r, o, "", "external_id", false, 1, SM_EXTID_BYTES_MAX,
                        b->u.sale.external_id,
                        sizeof b->u.sale.external_id) == SM__API_ANSWERED)
        return false;
    if (by_hold)
        return true;
    if (sm__api_get_own_id(self, r, o, "hold", false, "unknown_hold",
                           &b->u.sale.hold_seq) == SM__API_ANSWERED)
        return false;
    if (b->u.sale.hold_seq) {
        /* Every line of the hold must be in the sale; a hold that is gone
           is the ledger's to refuse (it may expire before the commit).      */
        sm_hold h;
        if (sm_ledger_hold(self->ledger, &self->node, b->u.sale.hold_seq, &h) == 0) {
            for (uint32_t k = 0; k < h.line_count; k++) {
                bool found = false;
                for (uint32_t i = 0; i < b->u.sale.line_count; i++)
                    if (strcmp(b->u.sale.lines[i].sku, h.lines[k].sku) == 0)
                        found = true;
                if (!found) {
                    sm__api_bad(r, "bad_value", "hold",
                                "the hold has sku '%s': the sale needs a line for it "
                                "(or leave 'lines' out to sell the hold as it is)",
                                h.lines[k].sku);
                    return false;
                }
            }
        }
    }
    return true;
}

void
sm__api_sale_json(sm_json_buf *b, const sm_sale *sale, const char *external_id)
{
    int64_t total = 0;
    bool overflow = false;
    sm_json_obj_open(b);
    sm_json_kentry_id(b, "id", &sale->origin, sale->seq);
    sm_json_ktime(b, "at", SM_HLC_MS(sale->hlc));
    sm_json_key(b, "lines");
    sm_json_arr_open(b);
    for (uint32_t i = 0; i < sale->line_count && i < SM_SALE_LINES_MAX; i++) {
        const sm_sale_line *l = &sale->lines[i];
        int64_t lt;
        if (__builtin_mul_overflow(l->price, (int64_t) l->qty, &lt)
            || __builtin_add_overflow(total, lt, &total))
            overflow = true;
        sm_json_obj_open(b);
        sm_json_kstr(b, "sku", l->sku);
        sm_json_kuint(b, "qty", l->qty);
        sm_json_kint(b, "price", l->price);
        sm_json_kuint(b, "returned", l->returned);
        sm_json_obj_close(b);
    }
    sm_json_arr_close(b);
    sm_json_key(b, "total");
    if (overflow)
        sm_json_null(b);
    else
        sm_json_int(b, total);
    sm_json_kstr(b, "currency", sale->currency);
    const char *src = sm_source_name(sale->source);
    const char *pay = sm_payment_name(sale->payment);
    sm_json_kstr(b, "source", src ? src : "");
    sm_json_kstr(b, "payment", pay ? pay : "");
    if (sale->hold_seq)
        sm_json_kentry_id(b, "hold", &sale->origin, sale->hold_seq);
    if (external_id && external_id[0])
        sm_json_kstr(b, "external_id", external_id);
    sm_json_obj_close(b);
}

/*  The sale `seq` of this node as stored, as `status` with `external_id`. */
static void
s_sale_answer(sm_api *self, uint64_t seq, const char *external_id, int status,
              sm_http_resp *r)
{
    sm_sale sale;
    int rc = sm_ledger_sale(self->ledger, &self->node, seq, &sale);
    if (rc != 0) {
        sm__api_ledger_error(r, rc == SM_ENOTFOUND ? SM_ECORRUPT : rc, false);
        return;
    }
    sm_json_buf b = { 0 };
    sm__api_sale_json(&b, &sale, external_id);
    sm__api_take(r, status, &b);
}

/*  A new sale: answered from what the core appended (the body, its seq and
    time), as the ledger stores it (state.c), without reading it back.      */
static void
s_sale_ok(sm_api *self, s_write *w, sm_http_resp *r)
{
    const sm_core_req *q = &w->req;
    if (q->hlc == 0) {                 /* not appended by this node's core */
        s_sale_answer(self, q->seq, q->body.u.sale.external_id, 201, r);
        return;
    }
    sm_sale sale;
    sale.origin = self->node;
    sale.seq = q->seq;
    sale.hlc = q->hlc;
    sale.source = q->body.u.sale.source;
    sale.payment = q->body.u.sale.payment;
    memcpy(sale.currency, q->body.u.sale.currency, sizeof sale.currency);
    sale.currency[sizeof sale.currency - 1] = 0;
    sale.hold_seq = q->body.u.sale.hold_seq;
    sale.line_count = q->body.u.sale.line_count;
    for (uint32_t i = 0; i < sale.line_count && i < SM_SALE_LINES_MAX; i++) {
        const sm_line *l = &q->body.u.sale.lines[i];
        memcpy(sale.lines[i].sku, l->sku, sizeof sale.lines[i].sku);
        sale.lines[i].qty = l->qty;
        sale.lines[i].price = l->price;
        sale.lines[i].returned = 0;
    }
    sm_json_buf b = { 0 };
    sm__api_sale_json(&b, &sale, q->body.u.sale.external_id);
    sm__api_take(r, 201, &b);
}

/*  A till's retry of a sale it already made (same external_id): 200 with
    the first sale, whose seq the core reports.                              */
static void
s_sale_again(sm_api *self, s_write *w, sm_http_resp *r)
{
    if (!w->req.body.u.sale.external_id[0]) {
        sm__api_ledger_error(r, w->req.rc, false);
        return;
    }
    s_sale_answer(self, w->req.seq, w->req.body.u.sale.external_id, 200, r);
}

/*  The first line that cannot be met here is the one named; a consumed
    hold's units count toward its sku's line.                                */
static void
s_sale_no_stock(sm_api *self, const s_write *w, sm_http_resp *r)
{
    const sm_body *b = &w->req.body;
    sm_hold hold;
    memset(&hold, 0, sizeof hold);
    if (b->u.sale.hold_seq
        && sm_ledger_hold(self->ledger, &self->node, b->u.sale.hold_seq, &hold) != 0)
        memset(&hold, 0, sizeof hold);
    const char *sku = b->u.sale.lines[0].sku;
    int64_t need = b->u.sale.lines[0].qty;
    int rc = 0;
    for (uint32_t i = 0; i < b->u.sale.line_count; i++) {
        int64_t h, t;
        if ((rc = s_units_now(self, b->u.sale.lines[i].sku, &h, &t)) != 0)
            break;
        for (uint32_t k = 0; k < hold.line_count && k < SM_HOLD_LINES_MAX; k++)
            if (strcmp(hold.lines[k].sku, b->u.sale.lines[i].sku) == 0)
                h += hold.lines[k].qty;
        if (h < (int64_t) b->u.sale.lines[i].qty) {
            sku = b->u.sale.lines[i].sku;
            need = b->u.sale.lines[i].qty;
            break;
        }
    }
    s_no_stock_here(self, r, rc, sku, need, s_hint_sell);
}

static const s_kind s_sale = {
    SM_KIND_SALE, s_sale_in, s_sale_ok, s_sale_no_stock, s_sale_again, false
};

S_POST_HANDLER(sm__api_post_sale, s_sale)

/* ====================================================================== */
/* POST /api/returns {"sale","lines":[{"sku","qty"}],"reason"}              */

static const char *const s_return_keys[] = { "sale", "lines", "reason", NULL };

static bool
s_return_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, uint64_t now_ms,
            s_write *w)
{
    (void) now_ms;
    sm_body *b = &w->req.body;
    char unused[4];
    return sm__api_only(r, o, "", s_return_keys)
           && sm__api_get_own_id(self, r, o, "sale", true, "unknown_sale",
                                 &b->u.ret.sale_seq) == SM__API_OK
           && s_lines_in(self, o, r, false, b->u.ret.lines, &b->u.ret.line_count,
                         unused)
           && sm__api_get_str(r, o, "", "reason", true, 1, SM_REASON_BYTES_MAX,
                              b->u.ret.reason, sizeof b->u.ret.reason) == SM__API_OK;
}

static void
s_return_ok(sm_api *self, s_write *w, sm_http_resp *r)
{
    const sm_body *body = &w->req.body;
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kentry_id(&b, "id", &self->node, w->req.seq);
    sm_json_kentry_id(&b, "sale", &self->node, body->u.ret.sale_seq);
    sm_json_key(&b, "lines");
    sm_json_arr_open(&b);
    for (uint32_t i = 0; i < body->u.ret.line_count; i++) {
        sm_json_obj_open(&b);
        sm_json_kstr(&b, "sku", body->u.ret.lines[i].sku);
        sm_json_kuint(&b, "qty", body->u.ret.lines[i].qty);
        sm_json_obj_close(&b);
    }
    sm_json_arr_close(&b);
    sm_json_kstr(&b, "reason", body->u.ret.reason);
    sm_json_obj_close(&b);
    sm__api_take(r, 201, &b);
}

static const s_kind s_return = {
    SM_KIND_RETURN, s_return_in, s_return_ok, NULL, NULL, false
};

S_POST_HANDLER(sm__api_post_return, s_return)

/* ====================================================================== */
/* Holds: per-client limits and who made which                             */

/*  Take one hold token for `client`: 0, or the seconds to wait.            */
static int
s_rate_take(sm_api *self, const char *client, uint64_t now_ms)
{
    if (!client[0])
        client = "-";               /* no address known: one shared bucket */
    const uint64_t cap = (uint64_t) self->holds_per_min * S_MINUTE_MS;
    sm__api_bucket *slot = NULL, *oldest = NULL, *empty = NULL;
    for (size_t i = 0; i < SM_HOLD_RATE_CLIENTS_MAX; i++) {
        sm__api_bucket *bk = &self->buckets[i];
        if (bk->client[0] == '\0') {
            if (!empty)
                empty = bk;
            continue;
        }
        if (strncmp(bk->client, client, SM__API_CLIENT_BYTES - 1) == 0) {
            slot = bk;
            break;
        }
        if (!oldest || bk->last_ms < oldest->last_ms)
            oldest = bk;
    }
    if (!slot) {
        /* A new address; the least recently seen one makes room.  An
           evicted address idle for a minute had a full bucket anyway.      */
        slot = empty ? empty : oldest;
        assert(slot);
        snprintf(slot->client, sizeof slot->client, "%s", client);
        slot->credit = cap;
        slot->last_ms = now_ms;
    }
    if (now_ms > slot->last_ms) {
        uint64_t gain = (now_ms - slot->last_ms) * self->holds_per_min;
        slot->credit = cap - slot->credit < gain ? cap : slot->credit + gain;
    }
    slot->last_ms = now_ms;
    if (slot->credit >= S_MINUTE_MS) {
        slot->credit -= S_MINUTE_MS;
        return 0;
    }
    uint64_t wait_ms = (S_MINUTE_MS - slot->credit + self->holds_per_min - 1)
                       / self->holds_per_min;
    uint64_t wait_s = (wait_ms + 999) / 1000;
    return (int) (wait_s ? wait_s : 1);
}

static sm__api_owner *
s_owner_find(sm_api *self, uint64_t seq)
{
    for (size_t i = 0; i < SM_HOLD_OWNERS_MAX; i++)
        if (self->owners[i].seq == seq)
            return &self->owners[i];
    return NULL;
}

static void
s_owner_add(sm_api *self, uint64_t seq, const char *client)
{
    sm__api_owner *o = &self->owners[self->owner_next];
    self->owner_next = (self->owner_next + 1) % SM_HOLD_OWNERS_MAX;
    o->seq = seq;
    snprintf(o->client, sizeof o->client, "%s", client);
}

/* ====================================================================== */
/* POST /api/holds {"sku","qty","at"?} or {"lines":[{"sku","qty"}],"device"?}:
   a reservation of one or more lines, held whole or not at all, with a
   pickup code; expires hold_ttl_s from now.  With "at" (another member
   stall's node id) the hold (all its lines) is forwarded to that stall, which
   appends it on its own log (the units are held there) and sets its
   expiry.  Without the token the [holds] limits apply (reserve.h).         */

static const char *const s_hold_keys[] = { "sku", "qty", "at", "lines", "device", NULL };
static const char *const s_hold_line_keys[] = { "sku", "qty", NULL };

/*  The "lines" of a reservation into the hold body: 1..SM_HOLD_LINES_MAX,
    skus distinct and in the catalog, qty >= 1.                              */
static bool
s_hold_lines_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, sm_body *b)
{
    const sm_json_val *arr = sm_json_get(o, "lines");
    if (!sm_json_is_array(arr)) {
        sm__api_bad(r, "wrong_type", "lines", "'lines' must be an array of {\"sku\",\"qty\"}");
        return false;
    }
    size_t n = sm_json_size(arr);
    if (n < 1 || n > SM_HOLD_LINES_MAX) {
        sm__api_bad(r, "bad_value", "lines", "'lines' must hold 1 to %u lines",
                    SM_HOLD_LINES_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const sm_json_val *line = sm_json_at(arr, i);
        char prefix[24], field[40];
        snprintf(prefix, sizeof prefix, "lines[%zu].", i);
        if (!sm_json_is_object(line)) {
            snprintf(field, sizeof field, "lines[%zu]", i);
            sm__api_bad(r, "wrong_type", field, "'%s' must be an object", field);
            return false;
        }
        char *sku = i == 0 ? b->u.hold.sku : b->u.hold.more[i - 1].sku;
        int64_t qty;
        if (!sm__api_only(r, line, prefix, s_hold_line_keys)
            || sm__api_get_str(r, line, prefix, "sku", true, 1, SM_SKU_BYTES_MAX, sku,
                               SM_SKU_BYTES_MAX + 1) != SM__API_OK
            || sm__api_get_int(r, line, prefix, "qty", true, 1, SM_QTY_MAX,
                               "bad_quantity", &qty) != SM__API_OK)
            return false;
        for (size_t j = 0; j < i; j++) {
            const char *other = j == 0 ? b->u.hold.sku : b->u.hold.more[j - 1].sku;
            if (strcmp(other, sku) == 0) {
                snprintf(field, sizeof field, "%ssku", prefix);
                sm__api_bad(r, "duplicate_sku", field,
                            "sku '%s' appears on two lines: put its units on one line", sku);
                return false;
            }
        }
        if (i == 0)
            b->u.hold.qty = (uint32_t) qty;
        else
            b->u.hold.more[i - 1].qty = (uint32_t) qty;
    }
    b->u.hold.more_count = (uint32_t) n - 1;
    for (size_t i = 0; i < n; i++) {
        sm_item it;
        if (!sm__api_need_item(self, r, i == 0 ? b->u.hold.sku : b->u.hold.more[i - 1].sku,
                               &it))
            return false;
    }
    return true;
}

/*  409 hold_limit naming the limit a reservation broke.                     */
static void
s_hold_limit(sm_http_resp *r, const sm_reserve_refusal *why)
{
    char detail[200];
    snprintf(detail, sizeof detail,
             "reservation limit '%s' is %u units: this one would make %llu; "
             "reserve fewer, or wait until a reservation ends", why->limit, why->max,
             (unsigned long long) why->wanted);
    sm_json_buf o = { 0 };
    sm__api_error_begin(&o, "hold_limit", detail);
    sm_json_kstr(&o, "limit", why->limit);
    sm_json_kuint(&o, "max", why->max);
    sm_json_kuint(&o, "wanted", why->wanted);
    sm__api_error_end(r, 409, &o);
}

/*  A fresh pickup code none of this stall's open holds has.                */
static bool
s_hold_code(sm_api *self, sm_http_resp *r, uint64_t now_ms, sm_body *b,
            uint64_t *device_units, uint64_t *client_units)
{
    enum { S_DRAWS = 4, S_TAKEN_MAX = 4096 };
    if (!self->codes && !(self->codes = calloc(S_TAKEN_MAX, sizeof *self->codes))) {
        sm__api_nomem(r);
        return false;
    }
    char (*taken)[SM_HOLD_CODE_BYTES_MAX + 1] = self->codes;
    size_t ntaken = 0;
    int rc = sm_reserve_usage(self->ledger, &self->node, b, now_ms, device_units,
                              client_units, taken, S_TAKEN_MAX, &ntaken);
    uint8_t rnd[S_DRAWS * SM_RESERVE_CODE_RAND_BYTES];
    if (rc == 0 && getrandom(rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
        rc = SM_EIO;
    if (rc == 0)
        rc = sm_reserve_code_pick(rnd, S_DRAWS, (const char (*)[SM_HOLD_CODE_BYTES_MAX + 1]) taken,
                                  ntaken, b->u.hold.code);
    if (rc == SM_EHOLDCODE)
        rc = SM_EBUSY;              /* astronomically unlikely: try again */
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return false;
    }
    return true;
}

/*  A mirror's choice of stall for a hold that names none (or names the
    mirror, which holds nothing): the current member with the most units of
    the sku, preferring one the mirror is in session with (a forward to any
    other could only answer stall_unreachable).                              */
typedef struct {
    sm_api *api;
    const char *sku;
    sm_gossip_peer *peers;
    size_t npeers;
    bool found, found_up;
    int64_t best_units;
    sm_id best;
} s_pick;

static int
s_pick_one(const char *sku, const sm_id *location, const sm_units *units, void *arg)
{
    s_pick *p = arg;
    int cmp = strcmp(sku, p->sku);
    if (cmp < 0)
        return 0;
    if (cmp > 0)
        return 1;                   /* key order: past this sku's records */
    sm_member m;
    if (units->units <= 0 || memcmp(location->b, p->api->node.b, SM_KEY_BYTES) == 0
        || sm_ledger_member(p->api->ledger, location, &m) != 0 || m.revoked)
        return 0;
    bool up = false;
    for (size_t i = 0; i < p->npeers && !up; i++)
        up = p->peers[i].up && memcmp(p->peers[i].node.b, location->b, SM_KEY_BYTES) == 0;
    if (!p->found || (up && !p->found_up)
        || (up == p->found_up && units->units > p->best_units)) {
        p->found = true;
        p->found_up = up;
        p->best_units = units->units;
        p->best = *location;
    }
    return 0;
}

/*  Into *at the stall a mirror forwards a hold of `sku` to: true, or answer
    409 insufficient_stock (no stall has any) or the store's error.         */
static bool
s_mirror_pick(sm_api *self, sm_http_resp *r, const char *sku, sm_id *at)
{
    static sm_gossip_peer peers[SM_PEERS_MAX];  /* web thread only */
    s_pick p = { .api = self, .sku = sku, .peers = peers };
    p.npeers = sm__api_peers(self, peers);
    int rc = sm_ledger_stock_each(self->ledger, s_pick_one, &p);
    if (rc < 0) {
        sm__api_ledger_error(r, rc, false);
        return false;
    }
    if (!p.found) {
        sm_json_buf o = { 0 };
        sm__api_error_begin(&o, "insufficient_stock",
                            "no stall of the market has units of that sku free now");
        sm_json_kstr(&o, "sku", sku);
        sm_json_kint(&o, "total", 0);
        sm__api_error_end(r, 409, &o);
        return false;
    }
    *at = p.best;
    return true;
}

static bool
s_hold_in(sm_api *self, const sm_json_val *o, sm_http_resp *r, uint64_t now_ms,
          s_write *w)
{
    sm_core_req *req = &w->req;
    sm_body *b = &req->body;
    bool has_at;
    if (!sm__api_only(r, o, "", s_hold_keys))
        return false;
    bool has_lines = sm_json_get(o, "lines") != NULL;
    if (has_lines && (sm_json_get(o, "sku") || sm_json_get(o, "qty"))) {
        sm__api_bad(r, "bad_value", "lines",
                    "give either 'lines' or 'sku' and 'qty', not both");
        return false;
    }
    if (has_lines) {
        if (!s_hold_lines_in(self, o, r, b))
            return false;
    } else {
        int64_t qty;
        sm_item it;
        if (sm__api_get_str(r, o, "", "sku", true, 1, SM_SKU_BYTES_MAX, b->u.hold.sku,
                            sizeof b->u.hold.sku) != SM__API_OK
            || sm__api_get_int(r, o, "", "qty", true, 1, SM_QTY_MAX, "bad_quantity",
                               &qty) != SM__API_OK)
            return false;
        b->u.hold.qty = (uint32_t) qty;
        /* The catalog check comes after "at": as before, in that order. */
        (void) it;
    }
    char device[SM_HOLD_DEVICE_BYTES_MAX + 1];
    int got = sm__api_get_str(r, o, "", "device", false, 1, SM_HOLD_DEVICE_BYTES_MAX,
                              device, sizeof device);
    if (got == SM__API_ANSWERED)
        return false;
    if (!s_get_node_id(r, o, "at", false, &has_at, &req->at,
                       "'at' must be a stall's node id: the 64 hex digits "
                       "'stallmesh peers' or GET /api/stock's locations show"))
        return false;
    /* "at" this stall: an ordinary hold.  A mirror holds nothing: it
       forwards every hold, to the stall with the most units of its first
       line's sku unless told (a reservation's lines are held at one stall). */
    req->forward = has_at && memcmp(req->at.b, self->node.b, SM_KEY_BYTES) != 0;
    if (self->mirror && !req->forward) {
        sm_item item;
        if (!sm__api_need_item(self, r, b->u.hold.sku, &item)
            || !s_mirror_pick(self, r, b->u.hold.sku, &req->at))
            return false;
        req->forward = true;
    }
    if (req->forward
        && !s_need_member(self, r, &req->at, "at", "unknown_stall",
                          "that stall was revoked from the market: hold at a current member",
                          "no stall of this market has that id: check it with 'stallmesh peers' "
                          "or GET /api/stock's locations"))
        return false;
    sm_item it;
    if (!has_lines && !sm__api_need_item(self, r, b->u.hold.sku, &it))
        return false;
    b->u.hold.expires_ms = now_ms + (uint64_t) self->hold_ttl_s * 1000;
    /* Tags: who holds what, so the limits can count it (reserve.h). */
    sm_market m;
    int rc = sm_ledger_market(self->ledger, &m);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return false;
    }
    if (got == SM__API_OK) {
        sm_reserve_tag("device", &m.market, device, b->u.hold.device);
        b->u.hold.has_device = true;
    }
    if (w->client[0]) {
        sm_reserve_tag("client", &m.market, w->client, b->u.hold.client);
        b->u.hold.has_client = true;
    }
    if (req->forward) {
        /* A code drawn here: the stall it goes to checks it is free there
           (and its limits and budget, per shopper) and refuses it if not. */
        uint8_t rnd[SM_RESERVE_CODE_RAND_BYTES];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd) {
            sm__api_ledger_error(r, SM_EIO, false);
            return false;
        }
        sm_reserve_code(rnd, b->u.hold.code);
        return true;
    }
    uint64_t dev = 0, cli = 0;
    if (!s_hold_code(self, r, now_ms, b, &dev, &cli))
        return false;
    /* Its size, and what its device and address hold already: refused here
       at once.  The write policy checks per_device and per_address again at
       append (tally.h), counting the holds of the same batch this read of
       the store cannot see. */
    sm_reserve_refusal why;
    if (!w->authorized && sm_reserve_check(&self->hold_limits, b, dev, cli, &why) != 0) {
        s_hold_limit(r, &why);
        return false;
    }
    /* A live first-come drop's caps (per device, per address, its qty) are
       checked at append, by the policy, against every hold before it; a
       drop whose units are all gone is answered here (api_drop.c). */
    if (!w->authorized && sm__api_drop_sold_out(self, r, b, now_ms))
        return false;
    return true;
}

void
sm__api_hold_json(sm_api *self, sm_json_buf *b, const sm_hold *h, bool with_code,
                  uint64_t now_ms)
{
    sm_json_obj_open(b);
    sm__api_hold_members(self, b, h, with_code, now_ms);
    sm_json_obj_close(b);
}

void
sm__api_hold_members(sm_api *self, sm_json_buf *b, const sm_hold *h, bool with_code,
                     uint64_t now_ms)
{
    static const char *const states[] = { "open", "sold", "expired", "cancelled" };
    int ended = h->ended >= 0 && h->ended <= 3 ? h->ended : 0;
    const char *state = states[ended];
    if (ended == SM_HOLD_OPEN && now_ms >= h->expires_ms)
        state = "expired";          /* the sweep releases it within a second */
    sm_json_kentry_id(b, "id", &h->origin, h->seq);
    sm_json_kstr(b, "state", state);
    if (with_code && h->code[0])
        sm_json_kstr(b, "code", h->code);
    sm_json_key(b, "lines");
    sm_json_arr_open(b);
    for (uint32_t i = 0; i < h->line_count && i < SM_HOLD_LINES_MAX; i++) {
        sm_json_obj_open(b);
        sm_json_kstr(b, "sku", h->lines[i].sku);
        sm_json_kuint(b, "qty", h->lines[i].qty);
        sm_item it;
        if (sm_ledger_item(self->ledger, h->lines[i].sku, &it) == 0)
            sm_json_kstr(b, "name", it.name);
        sm_json_obj_close(b);
    }
    sm_json_arr_close(b);
    sm_json_ktime(b, "expires", h->expires_ms);
    sm_json_kuint(b, "expires_ms", h->expires_ms);
    sm_json_kuint(b, "left_s", ended == SM_HOLD_OPEN && h->expires_ms > now_ms
                                   ? (h->expires_ms - now_ms + 999) / 1000 : 0);
    sm_json_kid(b, "at", &h->origin);
    if (h->ended == SM_HOLD_SOLD)
        sm_json_kentry_id(b, "sale", &h->origin, h->end_seq);
}

static void
s_hold_ok(sm_api *self, s_write *w, sm_http_resp *r)
{
    const sm_body *body = &w->req.body;
    const sm_id *at = w->req.forward ? &w->req.at : &self->node;
    if (!w->req.forward)
        s_owner_add(self, w->req.seq, w->client);
    sm_hold h;
    memset(&h, 0, sizeof h);
    h.origin = *at;
    h.seq = w->req.seq;
    h.expires_ms = body->u.hold.expires_ms;
    snprintf(h.code, sizeof h.code, "%s", body->u.hold.code);
    h.line_count = sm_hold_body_lines(body);
    for (uint32_t i = 0; i < h.line_count; i++) {
        const char *sku;
        sm_hold_body_line(body, i, &sku, &h.lines[i].qty);
        snprintf(h.lines[i].sku, sizeof h.lines[i].sku, "%s", sku);
    }
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm__api_hold_members(self, &b, &h, true, w->now_ms);
    /* The one-line form's members, as before reservations had lines. */
    sm_json_kstr(&b, "sku", body->u.hold.sku);
    sm_json_kuint(&b, "qty", body->u.hold.qty);
    sm_json_ktime(&b, "expires_at", body->u.hold.expires_ms);
    sm_json_obj_close(&b);
    sm__api_take(r, 201, &b);
}

/*  A forwarded hold refused by the stall it went to: its units, as this
    node last heard of them.                                                 */
static void
s_hold_no_stock(sm_api *self, const s_write *w, sm_http_resp *r)
{
    const sm_body *b = &w->req.body;
    const char *sku = b->u.hold.sku;
    int64_t need = b->u.hold.qty;
    if (!w->req.forward) {
        s_no_stock_here(self, r, 0, sku, need, s_hint_sell);
        return;
    }
    sm_units u;
    int64_t here = 0, t = 0;
    int rc = s_units_now(self, sku, &here, &t);
    int urc = rc == 0 ? sm_ledger_units(self->ledger, sku, &w->req.at, &u) : rc;
    if (urc == SM_ENOTFOUND) {
        u.units = 0;
    } else if (urc != 0) {
        sm__api_ledger_error(r, urc, false);
        return;
    }
    char detail[160];
    snprintf(detail, sizeof detail,
             "%" PRId64 " units wanted; that stall has %" PRId64 " free (%" PRId64
             " at the market's stalls): hold fewer, or at another stall", need,
             u.units, t);
    sm_json_buf o = { 0 };
    sm__api_error_begin(&o, "insufficient_stock", detail);
    sm_json_kstr(&o, "sku", sku);
    sm_json_kid(&o, "at", &w->req.at);
    sm_json_kint(&o, "there", u.units);
    sm_json_kint(&o, "total", t);
    sm__api_error_end(r, 409, &o);
}

static const s_kind s_hold = {
    SM_KIND_HOLD, s_hold_in, s_hold_ok, s_hold_no_stock, NULL, false
};

/*  Without the token, at most holds_per_min a minute from one address.     */
int
sm__api_post_hold(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    if (!req->authorized) {
        int wait_s = s_rate_take(self, req->client ? req->client : "", now_ms);
        if (wait_s > 0) {
            sm_json_buf b = { 0 };
            sm__api_error_begin(&b, "rate_limited",
                                "too many holds from this address: wait and retry");
            sm_json_kint(&b, "retry_after_s", wait_s);
            sm__api_error_end(r, 429, &b);
            r->retry_after_s = wait_s;
            return SM_API_DONE;
        }
    }
    return s_post(self, &s_hold, req, now_ms, r, write);
}

/* ====================================================================== */
/* DELETE /api/holds/<id>: with the token, or from the address that made
   the hold (remembered for the last SM_HOLD_OWNERS_MAX holds).             */

static void
s_release_ok(sm_api *self, s_write *w, sm_http_resp *r)
{
    uint64_t seq = w->req.body.u.release.hold_seq;
    sm__api_owner *o = s_owner_find(self, seq);
    if (o)
        memset(o, 0, sizeof *o);
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kentry_id(&b, "id", &self->node, seq);
    sm_json_kbool(&b, "released", true);
    sm_json_obj_close(&b);
    sm__api_take(r, 200, &b);
}

/*  No body to read: the request is the path.                               */
static const s_kind s_release = {
    SM_KIND_RELEASE, NULL, s_release_ok, NULL, NULL, true
};

/*  The "device" of a request's query (DELETE /api/holds/<id>?device=...):
    1 and its tag in tag[] when given, 0 when not, -1 when it is longer than
    SM_HOLD_DEVICE_BYTES_MAX (answered 400).                                */
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
            if (sm_ledger_market(self->ledger, &m) != 0)
                return 0;
            sm_reserve_tag("device", &m.market, dev, tag);
            return 1;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return 0;
}

int
sm__api_delete_hold(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                    sm_http_resp *r, sm_core_req **write)
{
    (void) now_ms;
    const char *text = req->path + strlen(SM__API_HOLD_PATH);
    sm_id origin;
    uint64_t seq;
    if (!sm__api_parse_entry_id(text, &origin, &seq)) {
        sm__api_bad(r, "bad_value", "id",
                    "the hold id must be \"<64 hex digits>:<seq>\" as POST /api/holds returned it");
        return SM_API_DONE;
    }
    bool mine = memcmp(origin.b, self->node.b, SM_KEY_BYTES) == 0;
    if (!req->authorized) {
        const sm__api_owner *o = s_owner_find(self, seq);
        bool allowed = mine && o && strncmp(o->client, req->client ? req->client : "",
                                            SM__API_CLIENT_BYTES - 1) == 0;
        uint8_t tag[SM_HOLD_TAG_BYTES];
        int dev = s_query_device(self, req, r, tag);
        if (dev < 0)
            return SM_API_DONE;
        sm_hold h;
        if (!allowed && mine && dev == 1
            && sm_ledger_hold(self->ledger, &self->node, seq, &h) == 0)
            allowed = h.has_device && memcmp(h.device, tag, SM_HOLD_TAG_BYTES) == 0;
        if (!allowed) {
            sm__api_error(r, 401, "unauthorized",
                          "cancel a hold from the device that made it (?device=), "
                          "or send 'Authorization: Bearer <api-token>'", NULL);
            return SM_API_DONE;
        }
    }
    if (!mine) {
        sm__api_error(r, 404, "unknown_hold",
                      "that hold was made at another stall: cancel it there", "id");
        return SM_API_DONE;
    }
    s_write *w = s_write_new(req, &s_release);
    if (!w) {
        sm__api_nomem(r);
        return SM_API_DONE;
    }
    w->req.body.u.release.hold_seq = seq;
    *write = &w->req;
    return SM_API_WRITE;
}

/* ====================================================================== */
/* Step 3: the answer                                                      */

void
sm_api_finish(sm_api *self, sm_core_req *write, uint64_t now_ms,
              sm_http_resp *resp)
{
    assert(self && write && resp);
    (void) now_ms;
    if (((sm__api_write_head *) write)->magic == SM__API_DROP_MAGIC) {
        sm__api_drop_finish(self, write, now_ms, resp);   /* api_drop.c */
        return;
    }
    s_write *w = (s_write *) write;
    assert(w->magic == S_WRITE_MAGIC);
    memset(resp, 0, sizeof *resp);
    const s_kind *k = w->kind;
    int rc = w->req.rc;
    if (rc == SM_EHOLDLIMIT && w->req.hold_why.limit)
        s_hold_limit(resp, &w->req.hold_why);   /* as the check before the core */
    else if (rc != 0 && w->req.drop_why.limit)
        sm__api_drop_refused(resp, rc, &w->req.drop_why);   /* api_drop.c */
    else if (rc == 0)
        k->ok(self, w, resp);
    else if (rc == SM_EEXIST && k->again)
        k->again(self, w, resp);
    else if (rc == SM_ENOSTOCK && k->no_stock)
        k->no_stock(self, w, resp);
    else if (rc == SM_ENOSTOCK)
        s_no_stock_here(self, resp, 0, "", 0, s_hint_sell);
    else
        sm__api_ledger_error(resp, rc, k->gone_is_404);
    s_write_free(w);
}

void
sm_api_cancel(sm_api *self, sm_core_req *write)
{
    assert(self);
    (void) self;
    if (write && ((sm__api_write_head *) write)->magic == SM__API_DROP_MAGIC)
        sm__api_drop_free(write);
    else if (write)
        s_write_free((s_write *) write);
}
