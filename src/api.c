/*  The node's JSON API: the route table, the answers and errors, and the
    request-reading helpers every route shares (api.h lists the other
    files; proto/api.md is the normative reference of every route, field,
    status and error code).

    sm_api_handle finds the route, checks the method (405 with Allow) and
    the token where the route needs it (401), and calls the route's handler
    for the method.  Reads (api_read.c) answer at once from LMDB read
    transactions.  Writes (api_write.c) are checked completely before the
    core sees them (JSON shape, exact types, limits.h bounds, that the sku
    exists), so what the ledger still refuses (stock, returns, holds) comes
    back as a precise 4xx: a 5xx only ever means the node itself is unwell.

    Request JSON is read through json.h (which keeps the parser behind one
    module and hostile nesting away from it); answers are written with its
    writer.  The stock snapshot (snapshot.c) is the hot path: every GET
    /api/stock answer is its one body, shared by reference.

    State kept here, all touched by the web thread only: the snapshot, a
    token bucket per client address for POST /api/holds (a bounded table,
    least recently used evicted), and which address made each recent hold
    (a bounded ring) so a shopper can cancel their own hold without the
    token; the holds' part of api_write.c keeps the last two.               */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api_int.h"
#include "codec.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"

const char sm__api_json_type[] = "application/json";
const char sm__api_no_store[] = "no-store";
const char sm__api_no_cache[] = "no-cache";

/*  The answer when even an error body cannot be allocated (borrowed).      */
static char s_nomem_body[] =
    "{\"error\":\"no_memory\",\"detail\":\"the node is out of memory; retry shortly\"}";

/* ====================================================================== */
/* Routes                                                                  */

#define M_GET    1u                 /* and HEAD */
#define M_POST   2u
#define M_DELETE 4u

/*  A route: its handler for each method (NULL: 405), and which methods
    need a token (the token's scope: s_scopes below).  A path ending in '/'
    is a prefix: it matches any longer path, whose rest the handler reads
    (an id).                                                                 */
typedef struct {
    const char *path;
    sm__api_handler get, post, del;  /* GET also answers HEAD */
    unsigned auth;                  /* M_* bits that need the token */
    unsigned mirror;                /* M_* bits of writes a mirror serves */
} s_route;

/*  Every route of the API, first match wins.  A new route is a line here
    (handlers declared in api_int.h); proto/api.md and README document it.
    The last column is the read-only rule of a mirror (run --mirror): its
    writes answer 403 read_only, but for those a livestream viewer needs,
    which it forwards to the stall holding the units (a hold; a raffle
    entry, whose handler refuses a mirror's draw itself).                    */
static const s_route s_routes[] = {
    /* path               GET                   POST                       DELETE               token            mirror */
    { "/api/stock",       sm__api_get_stock,    NULL,                      NULL,                0,               0 },
    { "/api/sales",       sm__api_get_sales,    sm__api_post_sale,         NULL,                M_GET | M_POST,  0 },
    { "/api/state",       sm__api_get_state,    NULL,                      NULL,                0,               0 },
    { "/api/peers",       sm__api_get_peers,    NULL,                      NULL,                0,               0 },
    { "/livez",           sm__api_get_livez,    NULL,                      NULL,                0,               0 },
    { "/readyz",          sm__api_get_readyz,   NULL,                      NULL,                0,               0 },
    { "/metrics",         sm__api_get_metrics,  NULL,                      NULL,                0,               0 },
    { "/api/items",       NULL,                 sm__api_post_item,         NULL,                M_POST,          0 },
    { "/api/stock/add",   NULL,                 sm__api_post_stock_add,    NULL,                M_POST,          0 },
    { "/api/stock/adjust", NULL,                sm__api_post_stock_adjust, NULL,                M_POST,          0 },
    { "/api/stock/move",  NULL,                 sm__api_post_stock_move,   NULL,                M_POST,          0 },
    { "/api/returns",     NULL,                 sm__api_post_return,       NULL,                M_POST,          0 },
    /* Holds: a shopper's page may hold, check and cancel its own without the
       token (rate-limited per address; see api_write.c); the till lists them.
       A mirror forwards a hold to the stall with the units; a cancel goes to
       that stall. */
    { "/api/holds",       sm__api_get_holds,    sm__api_post_hold,         NULL,                M_GET,           M_POST },
    { SM__API_HOLD_PATH,  sm__api_get_hold,     NULL,                      sm__api_delete_hold, 0,               0 },
    { "/api/qr",          sm__api_get_qr,       NULL,                      NULL,                0,               0 },
    /* Drops: public reads and raffle entries; creating (token) here, drawing
       (token, checked by its handler: the prefix route's POST is public).  A
       mirror (no log of its own) refuses their writes, but forwards a
       viewer's raffle entry to the drop's stall (its handler says 403 to a
       draw). */
    { "/api/drops",       sm__api_get_drops,    sm__api_post_drops,        NULL,                M_POST,          0 },
    { SM__API_DROP_PATH,  sm__api_get_drop,     sm__api_post_drop,         NULL,                0,               M_POST },
    /* The organiser's report and exports (api_report.c). */
    { "/api/report",      sm__api_get_report,   NULL,                      NULL,                M_GET,           0 },
    { "/api/export/sales.csv", sm__api_get_report, NULL,                   NULL,                M_GET,           0 },
    { "/api/export/returns.csv", sm__api_get_report, NULL,                 NULL,                M_GET,           0 },
    { "/api/export/items.csv", sm__api_get_report, NULL,                   NULL,                M_GET,           0 },
    { "/api/export/inventory.csv", sm__api_get_report, NULL,               NULL,                M_GET,           0 },
    /* Pairing: a device sends its one-time code without a token (failures
       counted per address, auth.c); the rest is the admin's. */
    { "/api/pair",        NULL,                 sm__api_post_pair,         NULL,                0,               0 },
    { "/api/pair/codes",  NULL,                 sm__api_post_pair_code,    NULL,                M_POST,          0 },
    { "/api/devices",     sm__api_get_devices,  NULL,                      NULL,                M_GET,           0 },
    { SM__API_DEVICE_PATH, NULL,                NULL,                      sm__api_delete_device, M_DELETE,        0 },
};

/*  The scope column: the least scope (auth.h: till < stock < admin) a
    token must have for a route's methods that need one.  A route not named
    here needs admin: a new route is the admin's until given a scope.        */
static const struct {
    const char *path;
    sm_scope scope;
} s_scopes[] = {
    { "/api/sales",        SM_SCOPE_TILL },    /* sell; list this stall's sales */
    { "/api/returns",      SM_SCOPE_TILL },
    { "/api/holds",        SM_SCOPE_TILL },    /* (public too, rate-limited) */
    { SM__API_HOLD_PATH,   SM_SCOPE_TILL },
    { "/api/items",        SM_SCOPE_STOCK },
    { "/api/stock/add",    SM_SCOPE_STOCK },
    { "/api/stock/adjust", SM_SCOPE_STOCK },
    { "/api/stock/move",   SM_SCOPE_STOCK },
    { "/api/drops",        SM_SCOPE_STOCK },
    /* A till's "Today": its own stall's report only (s_own_report_only);
       the market's report and the exports stay the admin's. */
    { "/api/report",       SM_SCOPE_TILL },
};

/*  Below admin, GET /api/report must name this node's own stall
    (stall=<its id>, as the till asks): a till reads its own takings, not
    the market's.                                                            */
static bool
s_own_report_only(const sm_api *self, const s_route *rt, const sm_http_req *req,
                  sm_scope have)
{
    if (have >= SM_SCOPE_ADMIN || strcmp(rt->path, "/api/report") != 0)
        return true;
    char own[SM_ID_HEX_BYTES + 1];
    sm_id_format(&self->node, own);
    const char *q = req->query ? req->query : "";
    while (*q) {
        size_t n = strcspn(q, "&");
        if (n == 6 + SM_ID_HEX_BYTES && strncmp(q, "stall=", 6) == 0
            && strncasecmp(q + 6, own, SM_ID_HEX_BYTES) == 0)
            return true;
        q += n + (q[n] == '&');
    }
    return false;
}

static sm_scope
s_scope_of(const s_route *rt)
{
    for (size_t i = 0; i < sizeof s_scopes / sizeof s_scopes[0]; i++)
        if (strcmp(s_scopes[i].path, rt->path) == 0)
            return s_scopes[i].scope;
    return SM_SCOPE_ADMIN;
}

/*  The Allow header of a route, by its M_* bits.                            */
static const char *const s_allow[8] = {
    "", "GET, HEAD", "POST", "GET, HEAD, POST", "DELETE", "GET, HEAD, DELETE",
    "POST, DELETE", "GET, HEAD, POST, DELETE",
};

static const s_route *
s_route_find(const char *path)
{
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++) {
        const char *p = s_routes[i].path;
        size_t n = strlen(p);
        if (p[n - 1] == '/' ? strncmp(path, p, n) == 0 && path[n] != '\0'
                            : strcmp(path, p) == 0)
            return &s_routes[i];
    }
    return NULL;
}

static unsigned
s_methods(const s_route *rt)
{
    return (rt->get ? M_GET : 0) | (rt->post ? M_POST : 0)
           | (rt->del ? M_DELETE : 0);
}

static sm__api_handler
s_handler(const s_route *rt, sm_http_method m, unsigned *bit)
{
    switch (m) {
    case SM_HTTP_GET: case SM_HTTP_HEAD: *bit = M_GET; return rt->get;
    case SM_HTTP_POST: *bit = M_POST; return rt->post;
    case SM_HTTP_DELETE: *bit = M_DELETE; return rt->del;
    default: *bit = 0; return NULL;
    }
}

int
sm_api_handle(sm_api *self, const sm_http_req *req, uint64_t now_ms,
              sm_http_resp *resp, sm_core_req **write)
{
    assert(self && req && req->path && resp && write);
    memset(resp, 0, sizeof *resp);
    *write = NULL;

    const s_route *rt = s_route_find(req->path);
    if (!rt) {
        sm__api_error(resp, 404, "not_found", "no such route: see proto/api.md", NULL);
        return SM_API_DONE;
    }
    unsigned bit;
    sm__api_handler h = s_handler(rt, req->method, &bit);
    if (!h) {
        const char *allow = s_allow[s_methods(rt)];
        char detail[96];
        snprintf(detail, sizeof detail, "%s allows %s", rt->path, allow);
        sm__api_error(resp, 405, "method_not_allowed", detail, NULL);
        resp->allow = allow;
        return SM_API_DONE;
    }
    if (self->mirror && bit != M_GET && !(rt->mirror & bit)) {
        sm__api_error(resp, 403, sm_errname(SM_EREADONLY), sm_strerror(SM_EREADONLY),
                      NULL);
        return SM_API_DONE;
    }
    if ((rt->auth & bit) && !req->authorized) {
        sm__api_error(resp, 401, "unauthorized",
                      "send 'Authorization: Bearer <api-token>' "
                      "(the api-token file of the node's data directory)", NULL);
        return SM_API_DONE;
    }
    /* The node's own token (authorized with no scope) is admin. */
    sm_scope have = req->authorized ? (req->scope ? req->scope : SM_SCOPE_ADMIN)
                                    : SM_SCOPE_NONE;
    sm_scope need = s_scope_of(rt);
    if ((rt->auth & bit) && have < need) {
        char detail[160];
        snprintf(detail, sizeof detail, "this device is paired with scope '%s'; %s needs "
                 "'%s' (pair a device with 'stallmesh pair --scope %s')",
                 sm_scope_name(have), rt->path, sm_scope_name(need), sm_scope_name(need));
        sm__api_error(resp, 403, "forbidden_scope", detail, NULL);
        return SM_API_DONE;
    }
    if ((rt->auth & bit) && !s_own_report_only(self, rt, req, have)) {
        sm__api_error(resp, 403, "forbidden_scope", "a device below admin reads only this "
                      "stall's report: ask with stall=<this node's id>", NULL);
        return SM_API_DONE;
    }
    int rc = h(self, req, now_ms, resp, write);
    assert(rc == SM_API_DONE ? *write == NULL && resp->status != 0
                             : rc == SM_API_WRITE && *write != NULL);
    return rc;
}

/* ====================================================================== */
/* The API object                                                          */

sm_api *
sm_api_new(const sm_api_opts *opts, int *err)
{
    assert(opts && opts->ledger);
    int rc = 0;
    uint32_t ttl_s = opts->hold_ttl_s ? opts->hold_ttl_s : SM_HOLD_TTL_S_DEFAULT;
    uint32_t per_min = opts->holds_per_min ? opts->holds_per_min
                                           : SM_HOLDS_PER_MIN_MAX;
    sm_api *self = NULL;
    if ((uint64_t) ttl_s * 1000 > SM_HOLD_TTL_MS_MAX
        || per_min > SM_HOLDS_PER_MIN_MAX) {
        rc = SM_EINVAL;
        goto fail;
    }
    self = calloc(1, sizeof *self);
    if (!self) {
        rc = SM_ENOMEM;
        goto fail;
    }
    self->ledger = opts->ledger;
    self->node = opts->node;
    self->metrics = opts->metrics;
    self->peers = opts->peers;
    self->peers_arg = opts->peers_arg;
    self->hold_ttl_s = ttl_s;
    self->holds_per_min = per_min;
    self->hold_limits = sm_reserve_limits_or_default(&opts->hold_limits);
    self->mirror = opts->mirror;
    self->report_tz = opts->report_tz;
    self->auth = opts->auth;
    if (opts->pair_url)
        snprintf(self->pair_url, sizeof self->pair_url, "%s", opts->pair_url);
    if (!(self->snap = sm_snapshot_new(self->ledger, &self->node))
        || !(self->walks = sm_drop_walks_new())) {
        rc = SM_ENOMEM;
        goto fail;
    }
    if (err)
        *err = 0;
    return self;
fail:
    if (self)
        sm_snapshot_destroy(&self->snap);
    free(self);
    if (err)
        *err = rc;
    return NULL;
}

void
sm_api_destroy(sm_api **self_p)
{
    if (!self_p || !*self_p)
        return;
    sm_api *self = *self_p;
    sm_snapshot_destroy(&self->snap);
    sm_drop_walks_destroy(&self->walks);
    for (size_t i = 0; i < sizeof self->ledger_kept / sizeof self->ledger_kept[0]; i++)
        free(self->ledger_kept[i].body);
    free(self->codes);
    free(self);
    *self_p = NULL;
}

/* ====================================================================== */
/* The stock snapshot                                                      */

static void
s_version_gauge(sm_api *self)
{
    if (self->metrics)
        sm_metrics_set(self->metrics, SM_GAUGE_STATE_VERSION,
                       (int64_t) sm_snapshot_version(self->snap));
}

int
sm_api_refresh(sm_api *self, uint64_t now_ms, char **delta, size_t *delta_len)
{
    assert(self);
    int rc = sm_snapshot_refresh(self->snap, now_ms, delta, delta_len);
    if (rc == 1)
        s_version_gauge(self);
    return rc;
}

bool
sm_api_clock_due(sm_api *self, uint64_t now_ms)
{
    assert(self);
    return sm_snapshot_clock_due(self->snap, now_ms);
}

/*  Build the snapshot if none was built yet: 0 or an error.                */
static int
s_snap_ensure(sm_api *self, uint64_t now_ms)
{
    int rc = sm_snapshot_ensure(self->snap, now_ms);
    if (rc == 1)
        s_version_gauge(self);
    return rc < 0 ? rc : 0;
}

int
sm_api_snapshot_message(sm_api *self, const char **msg, size_t *len)
{
    assert(self && msg && len);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
    int rc = s_snap_ensure(self, now_ms);
    if (rc != 0)
        return rc;
    *msg = sm_snapshot_message(self->snap, len);
    return 0;
}

int
sm_api_snapshot_restamp(sm_api *self, uint64_t now_ms, const char **msg, size_t *len)
{
    assert(self && msg && len);
    int rc = s_snap_ensure(self, now_ms);
    if (rc == 0)
        rc = sm_snapshot_restamp(self->snap, now_ms);
    if (rc == 0)
        *msg = sm_snapshot_message(self->snap, len);
    return rc;
}

/*  GET /api/stock: the snapshot's body, shared by reference (no copy): a
    refresh while the answer is still being sent does not free it.          */
int
sm__api_get_stock(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    (void) write;
    int rc = s_snap_ensure(self, now_ms);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    snprintf(r->etag, sizeof r->etag, "\"%" PRIu64 "\"",
             sm_snapshot_version(self->snap));
    r->cache_control = sm__api_no_cache;
    if (req->if_none_match && sm_http_etag_match(req->if_none_match, r->etag)) {
        r->status = 304;
        return SM_API_DONE;
    }
    r->status = 200;
    r->content_type = sm__api_json_type;
    r->body = (char *) sm_snapshot_body(self->snap, &r->body_len, &r->body_owner);
    r->body_borrowed = true;        /* body_owner let go by sm_http_resp_clear */
    return SM_API_DONE;
}

bool
sm_http_etag_match(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;
    for (size_t guard = 0; *p && guard < 256; guard++) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p == '"') {
            const char *q = strchr(p + 1, '"');
            if (!q)
                return false;
            if ((size_t) (q - p + 1) == elen && memcmp(p, etag, elen) == 0)
                return true;
            p = q + 1;
        } else {
            while (*p && *p != ',')
                p++;
        }
    }
    return false;
}

/* ====================================================================== */
/* Answers and errors                                                      */

void
sm__api_nomem(sm_http_resp *r)
{
    memset(r, 0, sizeof *r);
    r->status = 503;
    r->content_type = sm__api_json_type;
    r->body = s_nomem_body;
    r->body_len = sizeof s_nomem_body - 1;
    r->body_borrowed = true;
    r->cache_control = sm__api_no_store;
    r->retry_after_s = 1;
}

void
sm__api_take(sm_http_resp *r, int status, sm_json_buf *b)
{
    size_t len;
    char *body = sm_json_take(b, &len);
    if (!body) {
        sm__api_nomem(r);
        return;
    }
    r->status = status;
    r->content_type = sm__api_json_type;
    r->body = body;
    r->body_len = len;
    r->body_borrowed = false;
    if (!r->cache_control)
        r->cache_control = sm__api_no_store;
}

void
sm__api_error_begin(sm_json_buf *b, const char *code, const char *detail)
{
    sm_json_obj_open(b);
    sm_json_kstr(b, "error", code);
    sm_json_kstr(b, "detail", detail);
}

void
sm__api_error_end(sm_http_resp *r, int status, sm_json_buf *b)
{
    sm_json_obj_close(b);
    sm__api_take(r, status, b);
}

void
sm__api_error(sm_http_resp *r, int status, const char *code, const char *detail,
              const char *field)
{
    sm_json_buf b = { 0 };
    sm__api_error_begin(&b, code, detail);
    if (field)
        sm_json_kstr(&b, "field", field);
    sm__api_error_end(r, status, &b);
}

void
sm__api_bad(sm_http_resp *r, const char *code, const char *field, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    sm__api_error(r, 400, code, detail, field);
}

/*  The status a ledger refusal or failure maps to (proto/api.md, "Errors").
    `release` tells a DELETE of a hold (a gone hold is 404) from a sale that
    names one (409: sell without it).                                        */
static int
s_status_of(int rc, bool release)
{
    switch (rc) {
    case SM_ENOSKU: case SM_ENOSALE: case SM_ENOTFOUND:
        return 404;
    case SM_ENOHOLD:
        return release ? 404 : 409;
    case SM_ENOSTOCK: case SM_EOVERRETURN: case SM_EDROP: case SM_EEXIST:
    case SM_EREVOKED: case SM_EFORK: case SM_ENOTORG: case SM_ENOTMEMBER:
    case SM_ETOOBIG: case SM_EHOLDLIMIT: case SM_EHOLDSOLD: case SM_EHOLDEXPIRED:
    case SM_EHOLDGONE: case SM_EDROPLIMIT: case SM_EDROPCLOSED: case SM_EENTERED:
    case SM_EDRAWEARLY: case SM_EDRAWN: case SM_EDROPBUSY: case SM_ENOTRAFFLE:
    case SM_EDRAWBAD:
        return 409;
    case SM_ENODROP:
        return 404;
    case SM_EREADONLY:
        return 403;
    case SM_EQTY: case SM_EMONEY: case SM_EBODY: case SM_EINVAL:
        return 400;
    case SM_ENOSPC: case SM_EIO: case SM_ENOMEM: case SM_EBUSY: case SM_ESTATE:
    case SM_ENOMARKET: case SM_ENOIDENT: case SM_ERECOVERING: case SM_EUNREACHABLE:
    case SM_EHOLDCODE:
        return 503;
    case SM_ETIMEOUT:
        return 504;
    default:
        return 500;
    }
}

void
sm__api_ledger_error(sm_http_resp *r, int rc, bool release)
{
    assert(rc != 0);
    int status = s_status_of(rc, release);
    sm__api_error(r, status, sm_errname(rc), sm_strerror(rc), NULL);
    if (r->status == 503)
        r->retry_after_s = 1;
}

void
sm_api_error(sm_http_resp *resp, int status, const char *code,
             const char *detail)
{
    assert(resp && status >= 400 && code && detail);
    memset(resp, 0, sizeof *resp);
    sm__api_error(resp, status, code, detail, NULL);
}

void
sm_http_resp_clear(sm_http_resp *resp)
{
    if (!resp)
        return;
    if (!resp->body_borrowed)
        free(resp->body);
    sm_snapshot_body_unref(&resp->body_owner);
    if (resp->stream)
        resp->stream->destroy(resp->stream);
    memset(resp, 0, sizeof *resp);
}

/* ====================================================================== */
/* Reading requests                                                        */

bool
sm__api_parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t) (s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool
sm__api_parse_entry_id(const char *s, sm_id *origin, uint64_t *seq)
{
    size_t n = strnlen(s, SM__API_ENTRY_ID_BYTES + 1);
    if (n > SM__API_ENTRY_ID_BYTES || n < SM_ID_HEX_BYTES + 2
        || s[SM_ID_HEX_BYTES] != ':')
        return false;
    char hex[SM_ID_HEX_BYTES + 1];
    memcpy(hex, s, SM_ID_HEX_BYTES);
    hex[SM_ID_HEX_BYTES] = '\0';
    if (sm_id_parse(hex, origin) != 0)
        return false;
    return sm__api_parse_uint(s + SM_ID_HEX_BYTES + 1, n - SM_ID_HEX_BYTES - 1,
                              SM_SEQ_MAX, seq) && *seq >= 1;
}

bool
sm__api_parse_body(const sm_http_req *req, sm_http_resp *r, sm_json_doc **doc)
{
    *doc = NULL;
    if (!req->body || req->body_len == 0) {
        sm__api_bad(r, "bad_json", NULL, "the body is empty: send a JSON object");
        return false;
    }
    char why[200];
    switch (sm_json_parse(req->body, req->body_len, SM_JSON_DEPTH_MAX, doc,
                          why, sizeof why)) {
    case SM_JSON_OK:
        break;
    case SM_JSON_TOO_DEEP:
        sm__api_bad(r, "too_deep", NULL, "the JSON nests deeper than %u levels",
                    SM_JSON_DEPTH_MAX);
        return false;
    default:
        sm__api_bad(r, "bad_json", NULL, "the body is not valid JSON: %s", why);
        return false;
    }
    if (!sm_json_is_object(sm_json_root(*doc))) {
        sm_json_doc_free(doc);
        sm__api_bad(r, "bad_json", NULL, "the body must be a JSON object");
        return false;
    }
    return true;
}

bool
sm__api_only(sm_http_resp *r, const sm_json_val *obj, const char *prefix,
             const char *const *keys)
{
    const char *key = sm_json_unknown_key(obj, keys);
    if (!key)
        return true;
    char field[80];
    char shown[SM_SKU_BYTES_MAX + 1];
    size_t n = strnlen(key, sizeof shown - 1);
    memcpy(shown, key, n);
    shown[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) shown[i] < 0x20)
            shown[i] = '?';
    snprintf(field, sizeof field, "%s%s", prefix, shown);
    sm__api_bad(r, "unknown_field", field, "'%s' is not a field of this request",
                field);
    return false;
}

/*  The name of member `key` of obj as the errors give it ("lines[0].sku"),
    into field[80].  Formatted only for an error: a sale reads five members
    and every one of them is usually fine.                                   */
static void
s_field(char field[80], const char *prefix, const char *key)
{
    snprintf(field, 80, "%s%s", prefix, key);
}

/*  Member `key` of obj into *v: SM__API_OK, SM__API_ABSENT (not required),
    or SM__API_ANSWERED (400 missing_field).                                  */
static int
s_member(sm_http_resp *r, const sm_json_val *obj, const char *prefix,
         const char *key, bool required, const sm_json_val **v)
{
    *v = sm_json_get(obj, key);
    if (*v)
        return SM__API_OK;
    if (!required)
        return SM__API_ABSENT;
    char field[80];
    s_field(field, prefix, key);
    sm__api_bad(r, "missing_field", field, "'%s' is required", field);
    return SM__API_ANSWERED;
}

int
sm__api_get_str(sm_http_resp *r, const sm_json_val *obj, const char *prefix,
                const char *key, bool required, size_t min, size_t max,
                char *out, size_t cap)
{
    assert(cap > max);
    char field[80];
    const sm_json_val *v;
    int got = s_member(r, obj, prefix, key, required, &v);
    if (got != SM__API_OK)
        return got;
    if (!sm_json_is_string(v)) {
        s_field(field, prefix, key);
        sm__api_bad(r, "wrong_type", field, "'%s' must be a string", field);
        return SM__API_ANSWERED;
    }
    size_t n;
    const char *s = sm_json_string(v, &n);
    if (n < min || n > max || !sm__text_valid((const uint8_t *) s, n)) {
        s_field(field, prefix, key);
        sm__api_bad(r, "bad_value", field,
                    "'%s' must be %zu to %zu bytes of UTF-8 text without control characters",
                    field, min, max);
        return SM__API_ANSWERED;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return SM__API_OK;
}

int
sm__api_get_int(sm_http_resp *r, const sm_json_val *obj, const char *prefix,
                const char *key, bool required, int64_t min, int64_t max,
                const char *code, int64_t *out)
{
    char field[80];
    const sm_json_val *v;
    int got = s_member(r, obj, prefix, key, required, &v);
    if (got != SM__API_OK)
        return got;
    if (!sm_json_is_integer(v)) {
        s_field(field, prefix, key);
        sm__api_bad(r, "wrong_type", field, "'%s' must be a whole number", field);
        return SM__API_ANSWERED;
    }
    int64_t x = sm_json_integer(v);
    if (x < min || x > max) {
        s_field(field, prefix, key);
        sm__api_bad(r, code, field, "'%s' must be from %" PRId64 " to %" PRId64,
                    field, min, max);
        return SM__API_ANSWERED;
    }
    *out = x;
    return SM__API_OK;
}

int
sm__api_get_own_id(sm_api *self, sm_http_resp *r, const sm_json_val *obj,
                   const char *key, bool required, const char *code,
                   uint64_t *seq)
{
    char text[SM__API_ENTRY_ID_BYTES + 1];
    *seq = 0;
    int got = sm__api_get_str(r, obj, "", key, required, 1,
                              SM__API_ENTRY_ID_BYTES, text, sizeof text);
    if (got != SM__API_OK)
        return got;
    sm_id origin;
    if (!sm__api_parse_entry_id(text, &origin, seq)) {
        sm__api_bad(r, "bad_value", key,
                    "'%s' must be an id \"<64 hex digits>:<seq>\" as the API returned it",
                    key);
        return SM__API_ANSWERED;
    }
    if (memcmp(origin.b, self->node.b, SM_KEY_BYTES) != 0) {
        sm__api_error(r, 404, code, "that id was made at another stall: use it there",
                      key);
        return SM__API_ANSWERED;
    }
    return SM__API_OK;
}

bool
sm__api_need_item(sm_api *self, sm_http_resp *r, const char *sku, sm_item *out)
{
    int rc = sm_ledger_item(self->ledger, sku, out);
    if (rc == 0)
        return true;
    if (rc == SM_ENOTFOUND || rc == SM_ENOSKU) {
        sm_json_buf b = { 0 };
        sm__api_error_begin(&b, "unknown_sku",
                            "no item with that sku: add it with POST /api/items");
        sm_json_kstr(&b, "sku", sku);
        sm__api_error_end(r, 404, &b);
    } else {
        sm__api_ledger_error(r, rc, false);
    }
    return false;
}
