/*  The node's JSON API: routing, validation and rendering (proto/api.md is
    the normative reference of every route, field, status and error code).

    Requests arrive from the web server (web.c) already collected.  Reads
    are answered at once from LMDB read transactions.  A write is checked
    completely here (JSON shape, exact types, limits.h bounds, that the sku
    exists) and turned into an sm_body inside an s_write, whose first member
    is the sm_core_req the core executes; sm_api_finish casts it back to
    render the answer.  So the core only ever sees well-formed bodies, and
    what the ledger still refuses (stock, returns, holds) comes back as a
    precise 4xx: a 5xx only ever means the node itself is unwell.

    Request JSON is parsed with jansson (this file is the node's only
    includer of jansson.h; the CLI has its own, cli_json.c) after a
    nesting pre-scan that keeps hostile depth away from the parser.  Output
    is written by hand into growable buffers: the stock snapshot is the hot
    path (DESIGN §8), serialized once per state version, and every answer
    to GET /api/stock is that one buffer, shared by reference count so a
    rebuild never frees a body that is still being sent.

    The snapshot keeps each item's serialized object (by sku), so the
    websocket delta is computed by comparing bytes with the previous build:
    changed and new items go out in full, vanished skus by name.

    State kept here, all touched by the web thread only: the snapshot, a
    token bucket per client address for POST /api/holds (a bounded table,
    least recently used evicted), and which address made each recent hold
    (a bounded ring) so a shopper can cancel their own hold without the
    token.                                                                    */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api.h"
#include "codec.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"
#include "stallmesh/limits.h"

#define S_WRITE_MAGIC    0x41504957u   /* "APIW": a live s_write */
#define S_CLIENT_BYTES   64u           /* an address (IPv6 text is <= 45) */
#define S_MINUTE_MS      60000u
#define S_SALES_PAGE_DEFAULT 100u
#define S_ENTRY_ID_BYTES (SM_ID_HEX_BYTES + 1 + 20)  /* "<hex>:<seq>" */

static const char s_json_type[] = "application/json";
static const char s_metrics_type[] = "text/plain; version=0.0.4; charset=utf-8";
static const char s_no_store[] = "no-store";
static const char s_no_cache[] = "no-cache";

/*  The answer when even an error body cannot be allocated (borrowed).      */
static char s_nomem_body[] =
    "{\"error\":\"no_memory\",\"detail\":\"the node is out of memory; retry shortly\"}";

/* ====================================================================== */
/* Output buffer                                                           */

/*  A growable byte buffer.  A failed allocation is sticky (`failed`), so
    writers do not check each call; the owner checks once at the end.       */
typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} s_buf;

static void
s_buf_free(s_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void
s_put(s_buf *b, const void *src, size_t n)
{
    if (b->failed)
        return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
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
    b->p[b->len] = '\0';
}

static void
s_puts(s_buf *b, const char *s)
{
    s_put(b, s, strlen(s));
}

static void
s_int(s_buf *b, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%" PRId64, v);
    s_put(b, t, (size_t) n);
}

static void
s_uint(s_buf *b, uint64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%" PRIu64, v);
    s_put(b, t, (size_t) n);
}

/*  A JSON string of s[0..n).  Text from the ledger is valid UTF-8 without
    control characters; these are escaped anyway, and so are < > & so that
    a document can be embedded in a page's <script> unchanged.              */
static void
s_strn(s_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    s_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>'
            && c != '&' && c != 0x7f)
            continue;
        s_put(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char) c };
            s_put(b, e, 2);
        } else {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            s_put(b, e, 6);
        }
    }
    s_put(b, s + run, n - run);
    s_put(b, "\"", 1);
}

static void
s_str(s_buf *b, const char *s)
{
    s_strn(b, s, strlen(s));
}

/*  "<64 hex>" of a node id.                                                 */
static void
s_id(s_buf *b, const sm_id *id)
{
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(id, hex);
    s_put(b, "\"", 1);
    s_put(b, hex, SM_ID_HEX_BYTES);
    s_put(b, "\"", 1);
}

/*  "<origin hex>:<seq>": how the API names an entry (sale, hold, return).  */
static void
s_entry_id(s_buf *b, const sm_id *origin, uint64_t seq)
{
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(origin, hex);
    s_put(b, "\"", 1);
    s_put(b, hex, SM_ID_HEX_BYTES);
    s_put(b, ":", 1);
    s_uint(b, seq);
    s_put(b, "\"", 1);
}

/*  RFC 3339 UTC with milliseconds, e.g. "2023-11-14T22:13:20.000Z".        */
static void
s_time_text(uint64_t ms, char out[64])
{
    time_t sec = (time_t) (ms / 1000);
    struct tm tm;
    if (!gmtime_r(&sec, &tm)) {
        snprintf(out, 64, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (unsigned) (ms % 1000));
}

static void
s_time(s_buf *b, uint64_t ms)
{
    char t[64];
    s_time_text(ms, t);
    s_str(b, t);
}

/*  A body shared by the snapshot and the responses sending it, freed when
    the last holder lets go.  Web thread only, so a plain count.            */
typedef struct {
    size_t refs;
    size_t len;
    char data[];
} s_blob;

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

static void
s_blob_unref(s_blob **b_p)
{
    s_blob *b = *b_p;
    if (!b)
        return;
    assert(b->refs > 0);
    if (--b->refs == 0)
        free(b);
    *b_p = NULL;
}

/* ====================================================================== */
/* Responses                                                               */

static void
s_resp_nomem(sm_http_resp *r)
{
    memset(r, 0, sizeof *r);
    r->status = 503;
    r->content_type = s_json_type;
    r->body = s_nomem_body;
    r->body_len = sizeof s_nomem_body - 1;
    r->body_borrowed = true;
    r->cache_control = s_no_store;
    r->retry_after_s = 1;
}

/*  Answer `status` with b's bytes (taken).  Fields other than status,
    body and content type that the caller set (etag, allow) are kept.       */
static void
s_resp_take(sm_http_resp *r, int status, s_buf *b)
{
    if (b->failed || !b->p) {
        s_buf_free(b);
        s_resp_nomem(r);
        return;
    }
    r->status = status;
    r->content_type = s_json_type;
    r->body = b->p;
    r->body_len = b->len;
    r->body_borrowed = false;
    if (!r->cache_control)
        r->cache_control = s_no_store;
    memset(b, 0, sizeof *b);
}

/*  Start an error body: {"error":code,"detail":detail  (left open for
    extra members; s_error_end closes it and answers).                       */
static void
s_error_begin(s_buf *b, const char *code, const char *detail)
{
    s_puts(b, "{\"error\":");
    s_str(b, code);
    s_puts(b, ",\"detail\":");
    s_str(b, detail);
}

static void
s_error_end(sm_http_resp *r, int status, s_buf *b)
{
    s_puts(b, "}");
    s_resp_take(r, status, b);
}

/*  An error answer, with "field" when `field` is not NULL.                  */
static void
s_error(sm_http_resp *r, int status, const char *code, const char *detail,
        const char *field)
{
    s_buf b = { 0 };
    s_error_begin(&b, code, detail);
    if (field) {
        s_puts(&b, ",\"field\":");
        s_str(&b, field);
    }
    s_error_end(r, status, &b);
}

/*  A 400 whose detail is formatted; `field` may be NULL.                    */
static void s_bad(sm_http_resp *r, const char *code, const char *field,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
s_bad(sm_http_resp *r, const char *code, const char *field, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    s_error(r, 400, code, detail, field);
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
    case SM_ETOOBIG:
        return 409;
    case SM_EQTY: case SM_EMONEY: case SM_EBODY: case SM_EINVAL:
        return 400;
    case SM_ENOSPC: case SM_EIO: case SM_ENOMEM: case SM_EBUSY: case SM_ESTATE:
    case SM_ENOMARKET: case SM_ENOIDENT: case SM_ERECOVERING: case SM_EUNREACHABLE:
        return 503;
    case SM_ETIMEOUT:
        return 504;
    default:
        return 500;
    }
}

/*  An answer for ledger code `rc`: {"error": sm_errname, "detail": sm_strerror}. */
static void
s_ledger_error(sm_http_resp *r, int rc, bool release)
{
    assert(rc != 0);
    int status = s_status_of(rc, release);
    s_error(r, status, sm_errname(rc), sm_strerror(rc), NULL);
    if (r->status == 503)
        r->retry_after_s = 1;
}

void
sm_api_error(sm_http_resp *resp, int status, const char *code,
             const char *detail)
{
    assert(resp && status >= 400 && code && detail);
    memset(resp, 0, sizeof *resp);
    s_error(resp, status, code, detail, NULL);
}

void
sm_http_resp_clear(sm_http_resp *resp)
{
    if (!resp)
        return;
    if (!resp->body_borrowed)
        free(resp->body);
    s_blob *owner = resp->body_owner;
    s_blob_unref(&owner);
    memset(resp, 0, sizeof *resp);
}

/* ====================================================================== */
/* The API object                                                          */

typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    size_t at, len;                 /* its object within s_snap.items */
} s_ref;

/*  One build of the stock snapshot.                                        */
typedef struct {
    bool built;
    uint64_t version;
    char *items;                    /* the item objects, comma-separated */
    size_t items_len;
    s_ref *refs;                    /* one per item, in sku order */
    size_t count;
    s_blob *body;                   /* GET /api/stock, shared with responses */
    char *msg;                      /* the websocket snapshot message */
    size_t msg_len;
} s_snap;

typedef struct {
    char client[S_CLIENT_BYTES];    /* "" = a free slot */
    uint64_t credit;                /* tokens x S_MINUTE_MS */
    uint64_t last_ms;
} s_bucket;

typedef struct {
    uint64_t seq;                   /* 0 = a free slot */
    char client[S_CLIENT_BYTES];
} s_owner;

struct sm_api {
    sm_ledger *ledger;
    sm_id node;
    char node_hex[SM_ID_HEX_BYTES + 1];
    sm_metrics *metrics;
    sm_core *core;                  /* NULL: no mesh peers */
    sm_api_peers_fn peers;          /* instead of the core's (tests) */
    void *peers_arg;
    uint32_t hold_ttl_s;
    uint32_t holds_per_min;
    s_snap snap;
    s_bucket buckets[SM_HOLD_RATE_CLIENTS_MAX];
    s_owner owners[SM_HOLD_OWNERS_MAX];
    size_t owner_next;              /* the ring's next slot */
};

typedef enum {
    W_ITEM = 1, W_ADD, W_ADJUST, W_MOVE, W_SALE, W_RETURN, W_HOLD, W_RELEASE
} s_write_kind;

/*  A write in flight.  The core sees only `req` (first member).            */
typedef struct {
    sm_core_req req;
    uint32_t magic;                 /* S_WRITE_MAGIC while alive */
    s_write_kind kind;
    bool authorized;
    char client[S_CLIENT_BYTES];
} s_write;

static void
s_snap_free(s_snap *s)
{
    free(s->items);
    free(s->refs);
    s_blob_unref(&s->body);
    free(s->msg);
    memset(s, 0, sizeof *s);
}

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
    sm_id_format(&self->node, self->node_hex);
    self->metrics = opts->metrics;
    self->core = opts->core;
    self->peers = opts->peers;
    self->peers_arg = opts->peers_arg;
    self->hold_ttl_s = ttl_s;
    self->holds_per_min = per_min;
    if (err)
        *err = 0;
    return self;
fail:
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
    s_snap_free(&self->snap);
    free(self);
    *self_p = NULL;
}

/* ====================================================================== */
/* Small parsers                                                           */

/*  Decimal digits s[0..n) as a value 0..max; false otherwise.              */
static bool
s_parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
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

/*  "<64 hex>:<seq>" with seq 1..SM_SEQ_MAX; false otherwise.               */
static bool
s_parse_entry_id(const char *s, sm_id *origin, uint64_t *seq)
{
    size_t n = strnlen(s, S_ENTRY_ID_BYTES + 1);
    if (n > S_ENTRY_ID_BYTES || n < SM_ID_HEX_BYTES + 2 || s[SM_ID_HEX_BYTES] != ':')
        return false;
    char hex[SM_ID_HEX_BYTES + 1];
    memcpy(hex, s, SM_ID_HEX_BYTES);
    hex[SM_ID_HEX_BYTES] = '\0';
    if (sm_id_parse(hex, origin) != 0)
        return false;
    return s_parse_uint(s + SM_ID_HEX_BYTES + 1, n - SM_ID_HEX_BYTES - 1,
                        SM_SEQ_MAX, seq) && *seq >= 1;
}

/*  Whether the JSON text nests arrays and objects no deeper than
    SM_JSON_DEPTH_MAX.  Exact for well-formed JSON; for anything else the
    parser refuses it anyway.                                                */
static bool
s_depth_ok(const char *s, size_t n)
{
    unsigned depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > SM_JSON_DEPTH_MAX)
                return false;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return true;
}

/*  Parse the request body as one JSON object into *out (returned: caller
    decrefs), or answer 400 and return false.                                */
static bool
s_parse_body(const sm_http_req *req, sm_http_resp *r, json_t **out)
{
    *out = NULL;
    if (!req->body || req->body_len == 0) {
        s_bad(r, "bad_json", NULL, "the body is empty: send a JSON object");
        return false;
    }
    if (!s_depth_ok(req->body, req->body_len)) {
        s_bad(r, "too_deep", NULL, "the JSON nests deeper than %u levels",
              SM_JSON_DEPTH_MAX);
        return false;
    }
    json_error_t jerr;
    json_t *root = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES,
                              &jerr);
    if (!root) {
        /* jansson's text may quote input bytes: keep it printable ASCII. */
        for (char *p = jerr.text; *p; p++)
            if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
                *p = '?';
        s_bad(r, "bad_json", NULL, "the body is not valid JSON: %s (line %d, column %d)",
              jerr.text, jerr.line, jerr.column);
        return false;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        s_bad(r, "bad_json", NULL, "the body must be a JSON object");
        return false;
    }
    *out = root;
    return true;
}

/*  Refuse members of `obj` not named in `keys` (NULL-terminated): a typo
    such as "extenal_id" must not pass silently.                             */
static bool
s_only(sm_http_resp *r, json_t *obj, const char *prefix,
       const char *const *keys)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool known = false;
        for (size_t i = 0; keys[i]; i++)
            if (strcmp(key, keys[i]) == 0)
                known = true;
        if (!known) {
            char field[80];
            char shown[SM_SKU_BYTES_MAX + 1];
            size_t n = strnlen(key, sizeof shown - 1);
            memcpy(shown, key, n);
            shown[n] = '\0';
            for (size_t i = 0; i < n; i++)
                if ((unsigned char) shown[i] < 0x20)
                    shown[i] = '?';
            snprintf(field, sizeof field, "%s%s", prefix, shown);
            s_bad(r, "unknown_field", field,
                  "'%s' is not a field of this request", field);
            return false;
        }
    }
    return true;
}

/*  Results of the field readers: the value was read, it is absent and
    optional, or the request was answered (400).                             */
#define S_OK       0
#define S_ABSENT   1
#define S_ANSWERED (-1)

/*  A string member `key`: min..max bytes of text (sm__text_valid), copied
    into out[cap].                                                           */
static int
s_get_str(sm_http_resp *r, json_t *obj, const char *prefix, const char *key,
          bool required, size_t min, size_t max, char *out, size_t cap)
{
    char field[80];
    snprintf(field, sizeof field, "%s%s", prefix, key);
    assert(cap > max);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (!required)
            return S_ABSENT;
        s_bad(r, "missing_field", field, "'%s' is required", field);
        return S_ANSWERED;
    }
    if (!json_is_string(v)) {
        s_bad(r, "wrong_type", field, "'%s' must be a string", field);
        return S_ANSWERED;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n < min || n > max || !sm__text_valid((const uint8_t *) s, n)) {
        s_bad(r, "bad_value", field,
              "'%s' must be %zu to %zu bytes of UTF-8 text without control characters",
              field, min, max);
        return S_ANSWERED;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return S_OK;
}

/*  An integer member `key` within min..max; out of range answers `code`
    (bad_quantity for quantities, bad_money for prices).  A JSON real
    (1.0, 1e3) is the wrong type: quantities and money are whole numbers.   */
static int
s_get_int(sm_http_resp *r, json_t *obj, const char *prefix, const char *key,
          bool required, int64_t min, int64_t max, const char *code,
          int64_t *out)
{
    char field[80];
    snprintf(field, sizeof field, "%s%s", prefix, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (!required)
            return S_ABSENT;
        s_bad(r, "missing_field", field, "'%s' is required", field);
        return S_ANSWERED;
    }
    if (!json_is_integer(v)) {
        s_bad(r, "wrong_type", field, "'%s' must be a whole number", field);
        return S_ANSWERED;
    }
    json_int_t x = json_integer_value(v);
    if (x < min || x > max) {
        s_bad(r, code, field, "'%s' must be from %" PRId64 " to %" PRId64,
              field, min, max);
        return S_ANSWERED;
    }
    *out = (int64_t) x;
    return S_OK;
}

/*  The catalog item of `sku`, or a 404 unknown_sku (or the store's error). */
static bool
s_need_item(sm_api *self, sm_http_resp *r, const char *sku, sm_item *out)
{
    int rc = sm_ledger_item(self->ledger, sku, out);
    if (rc == 0)
        return true;
    if (rc == SM_ENOTFOUND || rc == SM_ENOSKU) {
        s_buf b = { 0 };
        s_error_begin(&b, "unknown_sku", "no item with that sku: add it with POST /api/items");
        s_puts(&b, ",\"sku\":");
        s_str(&b, sku);
        s_error_end(r, 404, &b);
    } else {
        s_ledger_error(r, rc, false);
    }
    return false;
}

static s_write *
s_write_new(const sm_http_req *req, s_write_kind kind, sm_kind body_kind)
{
    s_write *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->magic = S_WRITE_MAGIC;
    w->kind = kind;
    w->authorized = req->authorized;
    snprintf(w->client, sizeof w->client, "%s", req->client ? req->client : "");
    w->req.body.kind = body_kind;
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

/* ====================================================================== */
/* Per-client hold limits and hold makers                                  */

/*  Take one hold token for `client`: 0, or the seconds to wait.            */
static int
s_rate_take(sm_api *self, const char *client, uint64_t now_ms)
{
    if (!client[0])
        client = "-";               /* no address known: one shared bucket */
    const uint64_t cap = (uint64_t) self->holds_per_min * S_MINUTE_MS;
    s_bucket *slot = NULL, *oldest = NULL, *empty = NULL;
    for (size_t i = 0; i < SM_HOLD_RATE_CLIENTS_MAX; i++) {
        s_bucket *bk = &self->buckets[i];
        if (bk->client[0] == '\0') {
            if (!empty)
                empty = bk;
            continue;
        }
        if (strncmp(bk->client, client, S_CLIENT_BYTES - 1) == 0) {
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

static s_owner *
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
    s_owner *o = &self->owners[self->owner_next];
    self->owner_next = (self->owner_next + 1) % SM_HOLD_OWNERS_MAX;
    o->seq = seq;
    snprintf(o->client, sizeof o->client, "%s", client);
}

/* ====================================================================== */
/* Writes: validation into bodies                                          */

static const char *const s_item_keys[] = { "sku", "name", "price", "currency", NULL };
static const char *const s_add_keys[] = { "sku", "qty", NULL };
static const char *const s_adjust_keys[] = { "sku", "qty", "reason", NULL };
static const char *const s_move_keys[] = { "sku", "qty", "to", NULL };
static const char *const s_sale_keys[] = { "lines", "source", "payment",
                                           "external_id", "hold", NULL };
static const char *const s_sale_line_keys[] = { "sku", "qty", "price", NULL };
static const char *const s_return_keys[] = { "sale", "lines", "reason", NULL };
static const char *const s_return_line_keys[] = { "sku", "qty", NULL };
static const char *const s_hold_keys[] = { "sku", "qty", "at", NULL };

static bool
s_currency_ok(const char *c)
{
    for (int i = 0; i < 3; i++)
        if (c[i] < 'A' || c[i] > 'Z')
            return false;
    return c[3] == '\0';
}

/*  POST /api/items {"sku","name","price","currency"?}                      */
static bool
s_in_item(sm_api *self, json_t *o, sm_http_resp *r, sm_body *b)
{
    if (!s_only(r, o, "", s_item_keys))
        return false;
    int64_t price;
    int got;
    if (s_get_str(r, o, "", "sku", true, 1, SM_SKU_BYTES_MAX, b->u.item.sku,
                  sizeof b->u.item.sku) != S_OK
        || s_get_str(r, o, "", "name", true, 1, SM_NAME_BYTES_MAX,
                     b->u.item.name, sizeof b->u.item.name) != S_OK
        || s_get_int(r, o, "", "price", true, 0, SM_PRICE_MAX, "bad_money",
                     &price) != S_OK)
        return false;
    b->u.item.price = price;
    char currency[17];
    got = s_get_str(r, o, "", "currency", false, 0, sizeof currency - 1,
                    currency, sizeof currency);
    if (got == S_ANSWERED)
        return false;
    if (got == S_OK && !s_currency_ok(currency)) {
        s_bad(r, "bad_money", "currency",
              "'currency' must be three capital letters (ISO 4217), e.g. GBP");
        return false;
    }
    /* All money in a market is minor units of the market's currency. */
    sm_market m;
    int rc = sm_ledger_market(self->ledger, &m);
    if (rc != 0) {
        s_ledger_error(r, rc, false);
        return false;
    }
    if (got == S_OK && strcmp(currency, m.currency) != 0) {
        s_bad(r, "bad_money", "currency",
              "this market trades in %s: give prices in its minor units "
              "(or leave 'currency' out)", m.currency);
        return false;
    }
    memcpy(b->u.item.currency, m.currency, sizeof b->u.item.currency);
    return true;
}

/*  POST /api/stock/add {"sku","qty"}                                        */
static bool
s_in_add(sm_api *self, json_t *o, sm_http_resp *r, sm_body *b)
{
    int64_t qty;
    sm_item it;
    if (!s_only(r, o, "", s_add_keys)
        || s_get_str(r, o, "", "sku", true, 1, SM_SKU_BYTES_MAX,
                     b->u.stock_add.sku, sizeof b->u.stock_add.sku) != S_OK
        || s_get_int(r, o, "", "qty", true, 1, SM_QTY_MAX, "bad_quantity",
                     &qty) != S_OK
        || !s_need_item(self, r, b->u.stock_add.sku, &it))
        return false;
    b->u.stock_add.qty = (uint32_t) qty;
    return true;
}

/*  POST /api/stock/adjust {"sku","qty","reason"}: qty is a signed,
    non-zero correction.                                                      */
static bool
s_in_adjust(sm_api *self, json_t *o, sm_http_resp *r, sm_body *b)
{
    int64_t qty;
    sm_item it;
    if (!s_only(r, o, "", s_adjust_keys)
        || s_get_str(r, o, "", "sku", true, 1, SM_SKU_BYTES_MAX,
                     b->u.adjust.sku, sizeof b->u.adjust.sku) != S_OK
        || s_get_int(r, o, "", "qty", true, -(int64_t) SM_QTY_MAX, SM_QTY_MAX,
                     "bad_quantity", &qty) != S_OK
        || s_get_str(r, o, "", "reason", true, 1, SM_REASON_BYTES_MAX,
                     b->u.adjust.reason, sizeof b->u.adjust.reason) != S_OK)
        return false;
    if (qty == 0) {
        s_bad(r, "bad_quantity", "qty",
              "'qty' must not be 0: units to add (positive) or remove (negative)");
        return false;
    }
    if (!s_need_item(self, r, b->u.adjust.sku, &it))
        return false;
    b->u.adjust.delta = qty;
    return true;
}

/*  POST /api/stock/move {"sku","qty","to"}: units from here to another
    stall.  `to` must be a member of the roster, not revoked, not this node:
    the ledger would refuse the others too, but here the till learns which
    (self_move, unknown_node) before anything is queued.                     */
static bool
s_in_move(sm_api *self, json_t *o, sm_http_resp *r, sm_body *b)
{
    int64_t qty;
    char to_hex[2 * SM_ID_HEX_BYTES + 1];
    sm_item it;
    if (!s_only(r, o, "", s_move_keys)
        || s_get_str(r, o, "", "sku", true, 1, SM_SKU_BYTES_MAX,
                     b->u.stock_move.sku, sizeof b->u.stock_move.sku) != S_OK
        || s_get_int(r, o, "", "qty", true, 1, SM_QTY_MAX, "bad_quantity",
                     &qty) != S_OK
        || s_get_str(r, o, "", "to", true, 1, sizeof to_hex - 1, to_hex,
                     sizeof to_hex) != S_OK)
        return false;
    sm_id *to = &b->u.stock_move.to;
    if (strlen(to_hex) != SM_ID_HEX_BYTES || sm_id_parse(to_hex, to) != 0) {
        s_bad(r, "bad_value", "to",
              "'to' must be a node id: the 64 hex digits 'stallmesh peers' or "
              "GET /api/stock's locations show");
        return false;
    }
    if (memcmp(to->b, self->node.b, SM_KEY_BYTES) == 0) {
        s_bad(r, "self_move", "to",
              "'to' is this node: units move to another stall (use "
              "POST /api/stock/adjust to correct the count here)");
        return false;
    }
    b->u.stock_move.qty = (uint32_t) qty;
    if (!s_need_item(self, r, b->u.stock_move.sku, &it))
        return false;
    sm_member m;
    int rc = sm_ledger_member(self->ledger, to, &m);
    if (rc == SM_ENOTFOUND || (rc == 0 && m.revoked)) {
        s_buf e = { 0 };
        s_error_begin(&e, "unknown_node", rc == 0
            ? "that node was revoked from the market: move units to a current member"
            : "no member of this market has that id: check it with 'stallmesh peers' "
              "(or wait until its admission has reached this node)");
        s_puts(&e, ",\"field\":\"to\",\"to\":");
        s_id(&e, to);
        s_error_end(r, 404, &e);
        return false;
    }
    if (rc != 0) {
        s_ledger_error(r, rc, false);
        return false;
    }
    return true;
}

/*  The "lines" array of a sale (priced) or a return into lines[]/count.
    Sale lines must name catalog items of one currency (*currency gets it);
    every sku at most once.                                                  */
static bool
s_in_lines(sm_api *self, json_t *o, sm_http_resp *r, bool sale, sm_line *lines,
           uint32_t *count, char currency[4])
{
    json_t *arr = json_object_get(o, "lines");
    if (!arr) {
        s_bad(r, "missing_field", "lines", "'lines' is required");
        return false;
    }
    if (!json_is_array(arr)) {
        s_bad(r, "wrong_type", "lines", "'lines' must be an array of objects");
        return false;
    }
    size_t n = json_array_size(arr);
    if (n < 1 || n > SM_SALE_LINES_MAX) {
        s_bad(r, "bad_value", "lines", "'lines' must hold 1 to %u lines",
              SM_SALE_LINES_MAX);
        return false;
    }
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *line = json_array_get(arr, i);
        char prefix[24];
        snprintf(prefix, sizeof prefix, "lines[%zu].", i);
        if (!json_is_object(line)) {
            char field[24];
            snprintf(field, sizeof field, "lines[%zu]", i);
            s_bad(r, "wrong_type", field, "'%s' must be an object", field);
            return false;
        }
        sm_line *l = &lines[i];
        int64_t qty;
        if (!s_only(r, line, prefix, sale ? s_sale_line_keys : s_return_line_keys)
            || s_get_str(r, line, prefix, "sku", true, 1, SM_SKU_BYTES_MAX,
                         l->sku, sizeof l->sku) != S_OK
            || s_get_int(r, line, prefix, "qty", true, 1, SM_QTY_MAX,
                         "bad_quantity", &qty) != S_OK)
            return false;
        l->qty = (uint32_t) qty;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(lines[j].sku, l->sku) == 0) {
                char field[40];
                snprintf(field, sizeof field, "%ssku", prefix);
                s_bad(r, "duplicate_sku", field,
                      "sku '%s' appears on two lines: put its units on one line",
                      l->sku);
                return false;
            }
        }
        if (!sale)
            continue;
        sm_item it;
        if (!s_need_item(self, r, l->sku, &it))
            return false;
        int64_t price = it.price;
        if (s_get_int(r, line, prefix, "price", false, 0, SM_PRICE_MAX,
                      "bad_money", &price) == S_ANSWERED)
            return false;
        l->price = price;
        if (i == 0) {
            memcpy(currency, it.currency, 4);
        } else if (strcmp(currency, it.currency) != 0) {
            char field[40];
            snprintf(field, sizeof field, "%ssku", prefix);
            s_bad(r, "bad_money", field,
                  "a sale is in one currency: '%s' is priced in %s, the first line in %s",
                  l->sku, it.currency, currency);
            return false;
        }
        int64_t line_total;
        if (__builtin_mul_overflow(price, (int64_t) qty, &line_total)
            || __builtin_add_overflow(total, line_total, &total)
            || total > SM_SALE_TOTAL_MAX) {
            s_bad(r, "bad_money", "lines",
                  "the sale's total exceeds %lld minor units", SM_SALE_TOTAL_MAX);
            return false;
        }
    }
    *count = (uint32_t) n;
    return true;
}

/*  An optional string member naming an entry of this node; *seq = 0 when
    absent.  Another node's entry answers 404 `code`.                        */
static int
s_get_own_id(sm_api *self, sm_http_resp *r, json_t *o, const char *key,
             bool required, const char *code, uint64_t *seq)
{
    char text[S_ENTRY_ID_BYTES + 1];
    *seq = 0;
    int got = s_get_str(r, o, "", key, required, 1, S_ENTRY_ID_BYTES, text,
                        sizeof text);
    if (got != S_OK)
        return got;
    sm_id origin;
    if (!s_parse_entry_id(text, &origin, seq)) {
        s_bad(r, "bad_value", key,
              "'%s' must be an id \"<64 hex digits>:<seq>\" as the API returned it",
              key);
        return S_ANSWERED;
    }
    if (memcmp(origin.b, self->node.b, SM_KEY_BYTES) != 0) {
        s_error(r, 404, code, "that id was made at another stall: use it there",
                key);
        return S_ANSWERED;
    }
    return S_OK;
}

/*  POST /api/sales {"lines":[{"sku","qty","price"?}],"source","payment",
    "external_id"?,"hold"?}                                                   */
static bool
s_in_sale(sm_api *self, json_t *o, sm_http_resp *r, sm_body *b)
{
    char source[SM_NAME_BYTES_MAX + 1], payment[SM_NAME_BYTES_MAX + 1];
    if (!s_only(r, o, "", s_sale_keys)
        || !s_in_lines(self, o, r, true, b->u.sale.lines, &b->u.sale.line_count,
                       b->u.sale.currency)
        || s_get_str(r, o, "", "source", true, 1, sizeof source - 1, source,
                     sizeof source) == S_ANSWERED
        || s_get_str(r, o, "", "payment", true, 1, sizeof payment - 1, payment,
                     sizeof payment) == S_ANSWERED)
        return false;
    int src = sm_source_parse(source), pay = sm_payment_parse(payment);
    if (src == 0) {
        s_bad(r, "bad_value", "source",
              "'source' must be one of in_person, livestream, online, preview");
        return false;
    }
    if (pay == 0) {
        s_bad(r, "bad_value", "payment",
              "'payment' must be one of card, cash, qr, offline_card, other");
        return false;
    }
    b->u.sale.source = (uint8_t) src;
    b->u.sale.payment = (uint8_t) pay;
    if (s_get_str(r, o, "", "external_id", false, 1, SM_EXTID_BYTES_MAX,
                  b->u.sale.external_id, sizeof b->u.sale.external_id) == S_ANSWERED)
        return false;
    if (s_get_own_id(self, r, o, "hold", false, "unknown_hold",
                     &b->u.sale.hold_seq) == S_ANSWERED)
        return false;
    if (b->u.sale.hold_seq) {
        /* The hold must be for one of the lines' skus; a hold that is gone
           is the ledger's to refuse (it may expire before the commit).      */
        sm_hold h;
        if (sm_ledger_hold(self->ledger, &self->node, b->u.sale.hold_seq, &h) == 0) {
            bool found = false;
            for (uint32_t i = 0; i < b->u.sale.line_count; i++)
                if (strcmp(b->u.sale.lines[i].sku, h.sku) == 0)
                    found = true;
            if (!found) {
                s_bad(r, "bad_value", "hold",
                      "the hold is for sku '%s': the sale needs a line for it", h.sku);
                return false;
            }
        }
    }
    return true;
}

/*  POST /api/returns {"sale","lines":[{"sku","qty"}],"reason"}              */
static bool
s_in_return(sm_api *self, json_t *o, sm_http_resp *r, sm_body *b)
{
    char unused[4];
    if (!s_only(r, o, "", s_return_keys)
        || s_get_own_id(self, r, o, "sale", true, "unknown_sale",
                        &b->u.ret.sale_seq) != S_OK
        || !s_in_lines(self, o, r, false, b->u.ret.lines, &b->u.ret.line_count,
                       unused)
        || s_get_str(r, o, "", "reason", true, 1, SM_REASON_BYTES_MAX,
                     b->u.ret.reason, sizeof b->u.ret.reason) != S_OK)
        return false;
    return true;
}

/*  POST /api/holds {"sku","qty","at"?}: expires hold_ttl_s from now.  With
    "at" (another member stall's node id) the hold is forwarded to that
    stall, which appends it on its own log (the units are held there) and
    sets its expiry.                                                          */
static bool
s_in_hold(sm_api *self, json_t *o, sm_http_resp *r, uint64_t now_ms, sm_core_req *req)
{
    sm_body *b = &req->body;
    int64_t qty;
    sm_item it;
    char at_hex[2 * SM_ID_HEX_BYTES + 1];
    int got_at;
    if (!s_only(r, o, "", s_hold_keys)
        || s_get_str(r, o, "", "sku", true, 1, SM_SKU_BYTES_MAX, b->u.hold.sku,
                     sizeof b->u.hold.sku) != S_OK
        || s_get_int(r, o, "", "qty", true, 1, SM_QTY_MAX, "bad_quantity",
                     &qty) != S_OK
        || (got_at = s_get_str(r, o, "", "at", false, 1, sizeof at_hex - 1, at_hex,
                               sizeof at_hex)) == S_ANSWERED)
        return false;
    if (got_at == S_OK) {
        sm_id *at = &req->at;
        if (strlen(at_hex) != SM_ID_HEX_BYTES || sm_id_parse(at_hex, at) != 0) {
            s_bad(r, "bad_value", "at",
                  "'at' must be a stall's node id: the 64 hex digits 'stallmesh peers' or "
                  "GET /api/stock's locations show");
            return false;
        }
        /* "at" this stall: an ordinary hold. */
        req->forward = memcmp(at->b, self->node.b, SM_KEY_BYTES) != 0;
        sm_member m;
        int rc = req->forward ? sm_ledger_member(self->ledger, at, &m) : 0;
        if (req->forward && (rc == SM_ENOTFOUND || (rc == 0 && m.revoked))) {
            s_buf e = { 0 };
            s_error_begin(&e, "unknown_stall", rc == 0
                ? "that stall was revoked from the market: hold at a current member"
                : "no stall of this market has that id: check it with 'stallmesh peers' "
                  "or GET /api/stock's locations");
            s_puts(&e, ",\"field\":\"at\",\"at\":");
            s_id(&e, at);
            s_error_end(r, 404, &e);
            return false;
        }
        if (rc != 0) {
            s_ledger_error(r, rc, false);
            return false;
        }
    }
    if (!s_need_item(self, r, b->u.hold.sku, &it))
        return false;
    b->u.hold.qty = (uint32_t) qty;
    b->u.hold.expires_ms = now_ms + (uint64_t) self->hold_ttl_s * 1000;
    return true;
}

/* ====================================================================== */
/* Reads                                                                   */

static void
s_answer_text(sm_http_resp *r, int status, const char *json)
{
    s_buf b = { 0 };
    s_puts(&b, json);
    s_resp_take(r, status, &b);
}

static void s_sale_json(s_buf *b, const sm_sale *sale, const char *external_id);

typedef struct {
    s_buf *b;
    size_t count;
    uint64_t last;
} s_sales_ctx;

static int
s_sales_cb(const sm_sale *sale, void *arg)
{
    s_sales_ctx *c = arg;
    if (c->count++)
        s_puts(c->b, ",");
    s_sale_json(c->b, sale, NULL);
    c->last = sale->seq;
    return c->b->failed ? 1 : 0;
}

/*  GET /api/sales?since=&limit=: this node's sales with seq > since.       */
static void
s_get_sales(sm_api *self, const sm_http_req *req, sm_http_resp *r)
{
    uint64_t since = 0, limit = S_SALES_PAGE_DEFAULT;
    const char *q = req->query ? req->query : "";
    for (size_t guard = 0; *q && guard < 64; guard++) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t) (amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        if (eq) {
            size_t klen = (size_t) (eq - q), vlen = n - klen - 1;
            const char *v = eq + 1;
            if (klen == 5 && memcmp(q, "since", 5) == 0) {
                if (!s_parse_uint(v, vlen, SM_SEQ_MAX, &since)) {
                    s_bad(r, "bad_query", "since",
                          "'since' must be a sale seq (a whole number, 0 for the first page)");
                    return;
                }
            } else if (klen == 5 && memcmp(q, "limit", 5) == 0) {
                if (!s_parse_uint(v, vlen, UINT32_MAX, &limit) || limit == 0) {
                    s_bad(r, "bad_query", "limit",
                          "'limit' must be a whole number from 1 (at most %u are returned)",
                          SM_SALES_PAGE_MAX);
                    return;
                }
            }
        }
        q += n;
        if (*q == '&')
            q++;
    }
    if (limit > SM_SALES_PAGE_MAX)
        limit = SM_SALES_PAGE_MAX;
    s_buf b = { 0 };
    s_puts(&b, "{\"sales\":[");
    s_sales_ctx c = { &b, 0, since };
    int rc = 0;
    if (since < SM_SEQ_MAX)
        rc = sm_ledger_sales_each(self->ledger, &self->node, since + 1,
                                  (size_t) limit, s_sales_cb, &c);
    if (rc != 0) {
        s_buf_free(&b);
        s_ledger_error(r, rc, false);
        return;
    }
    s_puts(&b, "],\"next\":");
    s_uint(&b, c.last);
    s_puts(&b, "}");
    s_resp_take(r, 200, &b);
}

typedef struct {
    s_buf *b;
    size_t count;
} s_list_ctx;

static int
s_head_cb(const sm_head *h, void *arg)
{
    s_list_ctx *c = arg;
    if (c->count++)
        s_puts(c->b, ",");
    s_id(c->b, &h->origin);
    s_puts(c->b, ":{\"seq\":");
    s_uint(c->b, h->seq);
    s_puts(c->b, ",\"applied\":");
    s_uint(c->b, h->applied);
    s_puts(c->b, "}");
    return c->b->failed ? 1 : 0;
}

/*  Fork evidence, as the "forks" list into `b` and each forked origin once
    into `origins` (the records come in (origin, seq) order).               */
typedef struct {
    s_buf *b;
    size_t count;
    s_buf *origins;
    size_t n_origins;
    sm_id last;
} s_forks_ctx;

static int
s_fork_cb(const sm_id *origin, uint64_t seq, void *arg)
{
    s_forks_ctx *c = arg;
    if (c->count++)
        s_puts(c->b, ",");
    s_puts(c->b, "{\"origin\":");
    s_id(c->b, origin);
    s_puts(c->b, ",\"seq\":");
    s_uint(c->b, seq);
    s_puts(c->b, "}");
    if (c->n_origins == 0 || memcmp(c->last.b, origin->b, SM_KEY_BYTES) != 0) {
        if (c->n_origins++)
            s_puts(c->origins, ",");
        s_id(c->origins, origin);
        c->last = *origin;
    }
    return c->b->failed || c->origins->failed ? 1 : 0;
}

/*  GET /api/state: digest, heads, fork evidence and the origins it
    quarantines.                                                             */
static size_t s_damaged_json(sm_api *self, s_buf *b);

static void
s_get_state(sm_api *self, sm_http_resp *r)
{
    sm_hash digest;
    uint64_t version;
    int rc = sm_ledger_version(self->ledger, &version);
    if (rc == 0)
        rc = sm_ledger_digest(self->ledger, &digest);
    if (rc != 0) {
        s_ledger_error(r, rc, false);
        return;
    }
    char hex[2 * SM_HASH_BYTES + 1];
    sm_hex_encode(digest.b, SM_HASH_BYTES, hex);
    s_buf b = { 0 };
    s_puts(&b, "{\"node\":");
    s_id(&b, &self->node);
    s_puts(&b, ",\"version\":");
    s_uint(&b, version);
    s_puts(&b, ",\"digest\":");
    s_str(&b, hex);
    s_puts(&b, ",\"heads\":{");
    s_list_ctx c = { &b, 0 };
    rc = sm_ledger_heads(self->ledger, s_head_cb, &c);
    s_puts(&b, "},\"forks\":[");
    s_buf origins = { 0 };
    s_forks_ctx fc = { &b, 0, &origins, 0, { { 0 } } };
    if (rc == 0)
        rc = sm_ledger_forks_each(self->ledger, s_fork_cb, &fc);
    s_puts(&b, "],\"quarantined\":[");
    if (origins.len)
        s_put(&b, origins.p, origins.len);
    s_puts(&b, "]");
    s_damaged_json(self, &b);
    s_puts(&b, "}");
    if (rc == 0 && origins.failed)
        rc = SM_ENOMEM;
    s_buf_free(&origins);
    if (rc != 0) {
        s_buf_free(&b);
        s_ledger_error(r, rc, false);
        return;
    }
    s_resp_take(r, 200, &b);
}

static int
s_peer_cmp(const void *a, const void *b)
{
    return memcmp(((const sm_gossip_peer *) a)->node.b,
                  ((const sm_gossip_peer *) b)->node.b, SM_KEY_BYTES);
}

/*  The mesh peers as the core last saw them, into out[0..SM_PEERS_MAX),
    sorted by node id; this node never among them.  Returns how many.       */
static size_t
s_peers(sm_api *self, sm_gossip_peer *out)
{
    size_t n = 0;
    if (self->peers)
        n = self->peers(self->peers_arg, out, SM_PEERS_MAX);
    else if (self->core)
        n = sm_core_peers(self->core, out, SM_PEERS_MAX);
    assert(n <= SM_PEERS_MAX);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(out[i].node.b, self->node.b, SM_KEY_BYTES) != 0)
            out[kept++] = out[i];
    if (kept > 1)
        qsort(out, kept, sizeof *out, s_peer_cmp);
    return kept;
}

/*  GET /api/peers: the mesh peers with their roster names and counters.    */
static void
s_get_peers(sm_api *self, sm_http_resp *r)
{
    sm_gossip_peer *peers = calloc(SM_PEERS_MAX, sizeof *peers);
    if (!peers) {
        s_resp_nomem(r);
        return;
    }
    size_t n = s_peers(self, peers);
    s_buf b = { 0 };
    int rc = 0;
    s_puts(&b, "{\"peers\":[");
    for (size_t i = 0; i < n && rc == 0; i++) {
        const sm_gossip_peer *p = &peers[i];
        sm_member m;
        rc = sm_ledger_member(self->ledger, &p->node, &m);
        if (rc == SM_ENOTFOUND) {
            m.name[0] = '\0';      /* its admission has not arrived yet */
            rc = 0;
        }
        if (i)
            s_puts(&b, ",");
        s_puts(&b, "{\"node\":");
        s_id(&b, &p->node);
        s_puts(&b, ",\"name\":");
        s_str(&b, m.name);
        /* Endpoints may come from other nodes' PEERS: ASCII only here. */
        char endpoint[sizeof p->endpoint];
        size_t elen = strnlen(p->endpoint, sizeof p->endpoint - 1);
        for (size_t k = 0; k < elen; k++)
            endpoint[k] = (unsigned char) p->endpoint[k] < 0x80 ? p->endpoint[k] : '?';
        s_puts(&b, ",\"endpoint\":");
        s_strn(&b, endpoint, elen);
        s_puts(&b, ",\"connected\":");
        s_puts(&b, p->up ? "true" : "false");
        s_puts(&b, ",\"last_seen\":");
        if (p->last_seen_ms)
            s_time(&b, p->last_seen_ms);
        else
            s_puts(&b, "null");
        s_puts(&b, ",\"entries_behind\":");
        s_uint(&b, p->entries_behind);
        s_puts(&b, ",\"entries_received\":");
        s_uint(&b, p->entries_received);
        s_puts(&b, ",\"entries_sent\":");
        s_uint(&b, p->entries_sent);
        s_puts(&b, ",\"refused\":");
        s_uint(&b, p->refused);
        if (p->run_refusal) {
            /* Why its last refused run was refused: a peer serving a bad entry. */
            s_puts(&b, ",\"last_refusal\":{\"origin\":");
            s_id(&b, &p->run_refusal_origin);
            s_puts(&b, ",\"seq\":");
            s_uint(&b, p->run_refusal_seq);
            s_puts(&b, ",\"error\":");
            s_str(&b, sm_errname(p->run_refusal));
            s_puts(&b, ",\"message\":");
            s_str(&b, sm_strerror(p->run_refusal));
            s_puts(&b, "}");
        }
        s_puts(&b, "}");
    }
    s_puts(&b, "]}");
    free(peers);
    if (rc != 0) {
        s_buf_free(&b);
        s_ledger_error(r, rc, false);
        return;
    }
    s_resp_take(r, 200, &b);
}

static int
s_count_fork(const sm_id *origin, uint64_t seq, void *arg)
{
    (void) origin;
    (void) seq;
    (*(int64_t *) arg)++;
    return 0;
}

/*  Set the gauges read at scrape time: peers connected, fork evidence.
    A ledger that cannot be read leaves the fork gauge as it was.            */
static void
s_scrape_gauges(sm_api *self)
{
    sm_gossip_peer *peers = calloc(SM_PEERS_MAX, sizeof *peers);
    if (peers) {
        size_t n = s_peers(self, peers);
        int64_t up = 0;
        for (size_t i = 0; i < n; i++)
            up += peers[i].up;
        free(peers);
        sm_metrics_set(self->metrics, SM_GAUGE_PEERS_CONNECTED, up);
    }
    int64_t forks = 0;
    if (sm_ledger_forks_each(self->ledger, s_count_fork, &forks) == 0)
        sm_metrics_set(self->metrics, SM_GAUGE_FORKS, forks);
    sm_metrics_set(self->metrics, SM_GAUGE_DAMAGED_ORIGINS,
                   (int64_t) sm_ledger_damage_each(self->ledger, NULL, 0));
}

/*  ,"damaged":[{"origin":ID,"seq":N,"error":CODE}...]: origins whose stored
    log has an entry that does not verify (served only below it).           */
static size_t
s_damaged_json(sm_api *self, s_buf *b)
{
    sm_damage d[SM_CHECK_DAMAGED_MAX];
    size_t n = sm_ledger_damage_each(self->ledger, d, SM_CHECK_DAMAGED_MAX);
    n = n < SM_CHECK_DAMAGED_MAX ? n : SM_CHECK_DAMAGED_MAX;
    s_puts(b, ",\"damaged\":[");
    for (size_t i = 0; i < n; i++) {
        s_puts(b, i ? ",{\"origin\":" : "{\"origin\":");
        s_id(b, &d[i].origin);
        s_puts(b, ",\"seq\":");
        s_uint(b, d[i].seq);
        s_puts(b, ",\"error\":");
        s_str(b, sm_errname(d[i].err));
        s_puts(b, "}");
    }
    s_puts(b, "]");
    return n;
}

static void
s_get_readyz(sm_api *self, sm_http_resp *r)
{
    uint64_t version;
    int rc = sm_ledger_version(self->ledger, &version);
    s_buf b = { 0 };
    if (rc != 0) {
        s_error_begin(&b, sm_errname(rc), sm_strerror(rc));
        s_puts(&b, ",\"status\":\"unavailable\"");
        s_error_end(r, 503, &b);
        return;
    }
    if (sm_ledger_damage_each(self->ledger, NULL, 0) > 0) {
        /* Serving, but not all of it: a load balancer should know. */
        s_error_begin(&b, sm_errname(SM_EDEGRADED), sm_strerror(SM_EDEGRADED));
        s_puts(&b, ",\"status\":\"degraded\"");
        s_damaged_json(self, &b);
        s_error_end(r, 503, &b);
        return;
    }
    s_puts(&b, "{\"status\":\"ready\",\"version\":");
    s_uint(&b, version);
    s_puts(&b, "}");
    s_resp_take(r, 200, &b);
}

static void
s_get_metrics(sm_api *self, sm_http_resp *r)
{
    if (!self->metrics) {
        s_error(r, 404, "not_found", "this node keeps no metrics", NULL);
        return;
    }
    s_scrape_gauges(self);
    size_t len = 0;
    char *text = sm_metrics_render(self->metrics, &len);
    if (!text) {
        s_resp_nomem(r);
        return;
    }
    r->status = 200;
    r->content_type = s_metrics_type;
    r->body = text;
    r->body_len = len;
    r->cache_control = s_no_store;
}

/* ====================================================================== */
/* The stock snapshot                                                      */

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

/*  Grow *arr (of `size`-byte elements) to hold one more; false on ENOMEM. */
static bool
s_grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 64;
    if (ncap > SIZE_MAX / size)
        return false;
    void *p = realloc(*arr, ncap * size);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static int
s_collect_item(const sm_item *item, void *arg)
{
    s_collect *c = arg;
    if (!s_grow((void **) &c->items, &c->cap_items, c->n_items, sizeof *c->items)) {
        c->err = SM_ENOMEM;
        return 1;
    }
    c->items[c->n_items++] = *item;
    return 0;
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
    if (!s_grow((void **) &c->locs, &c->cap_locs, c->n_locs, sizeof *c->locs)) {
        c->err = SM_ENOMEM;
        return 1;
    }
    s_loc *l = &c->locs[c->n_locs++];
    l->item = (size_t) (it - c->items);
    l->node = *location;
    l->units = u->units;
    l->held = u->held;
    return 0;
}

static int
s_collect_member(const sm_member *m, void *arg)
{
    s_collect *c = arg;
    if (!s_grow((void **) &c->members, &c->cap_members, c->n_members,
                sizeof *c->members)) {
        c->err = SM_ENOMEM;
        return 1;
    }
    c->members[c->n_members++] = *m;
    return 0;
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

/*  Serialize one item with its locations locs[0..n) into b.               */
static void
s_item_json(sm_api *self, const s_collect *c, const sm_item *it,
            const s_loc *locs, size_t n, s_buf *b)
{
    int64_t total = 0, here = 0, held = 0;
    for (size_t i = 0; i < n; i++) {
        total += locs[i].units;
        held += locs[i].held;
        if (memcmp(locs[i].node.b, self->node.b, SM_KEY_BYTES) == 0)
            here = locs[i].units;
    }
    s_puts(b, "{\"sku\":");
    s_str(b, it->sku);
    s_puts(b, ",\"name\":");
    s_str(b, it->name);
    s_puts(b, ",\"price\":");
    s_int(b, it->price);
    s_puts(b, ",\"currency\":");
    s_str(b, it->currency);
    s_puts(b, ",\"total\":");
    s_int(b, total);
    s_puts(b, ",\"here\":");
    s_int(b, here);
    s_puts(b, ",\"held\":");
    s_int(b, held);
    s_puts(b, ",\"locations\":[");
    for (size_t i = 0; i < n; i++) {
        const sm_member *m = c->n_members
            ? bsearch(locs[i].node.b, c->members, c->n_members,
                      sizeof *c->members, s_member_cmp) : NULL;
        if (i)
            s_puts(b, ",");
        s_puts(b, "{\"node\":");
        s_id(b, &locs[i].node);
        s_puts(b, ",\"name\":");
        s_str(b, m ? m->name : "");
        s_puts(b, ",\"units\":");
        s_int(b, locs[i].units);
        s_puts(b, "}");
    }
    s_puts(b, "]}");
}

/*  The common tail of the stock body and the snapshot message, after "{":
    "version":..,"as_of":..,"node":..,"items":[...]}                        */
static void
s_snap_tail(sm_api *self, s_buf *b, uint64_t version, uint64_t now_ms,
            const char *items, size_t items_len)
{
    s_puts(b, "\"version\":");
    s_uint(b, version);
    s_puts(b, ",\"as_of\":");
    s_time(b, now_ms);
    s_puts(b, ",\"node\":");
    s_id(b, &self->node);
    s_puts(b, ",\"items\":[");
    s_put(b, items, items_len);
    s_puts(b, "]}");
}

/*  Read the stock view and serialize it into *out (fresh).                 */
static int
s_snap_build(sm_api *self, uint64_t now_ms, s_snap *out)
{
    s_collect c;
    memset(&c, 0, sizeof c);
    memset(out, 0, sizeof *out);
    s_buf items = { 0 }, body = { 0 }, msg = { 0 };
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
        if (i)
            s_puts(&items, ",");
        s_ref *ref = &out->refs[i];
        memcpy(ref->sku, c.items[i].sku, sizeof ref->sku);
        ref->at = items.len;
        s_item_json(self, &c, &c.items[i], c.locs + first, at - first, &items);
        ref->len = items.len - ref->at;
    }
    out->count = c.n_items;
    s_puts(&body, "{");
    s_snap_tail(self, &body, version, now_ms, items.p ? items.p : "", items.len);
    s_puts(&msg, "{\"type\":\"snapshot\",");
    s_snap_tail(self, &msg, version, now_ms, items.p ? items.p : "", items.len);
    if (items.failed || body.failed || msg.failed) {
        rc = SM_ENOMEM;
        goto fail;
    }
    if (!(out->body = s_blob_new(body.p, body.len))) {
        rc = SM_ENOMEM;
        goto fail;
    }
    s_buf_free(&body);
    out->built = true;
    out->version = version;
    out->items = items.p;
    out->items_len = items.len;
    out->msg = msg.p;
    out->msg_len = msg.len;
    free(c.items);
    free(c.locs);
    free(c.members);
    return 0;
fail:
    free(c.items);
    free(c.locs);
    free(c.members);
    s_buf_free(&items);
    s_buf_free(&body);
    s_buf_free(&msg);
    s_snap_free(out);
    return rc;
}

/*  The delta from `old` to `cur` as a websocket message into b.            */
static void
s_delta(const s_snap *old, const s_snap *cur, uint64_t now_ms, s_buf *b)
{
    s_puts(b, "{\"type\":\"delta\",\"version\":");
    s_uint(b, cur->version);
    s_puts(b, ",\"as_of\":");
    s_time(b, now_ms);
    s_puts(b, ",\"items\":[");
    size_t i = 0, j = 0, sent = 0;
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
        if (!same) {
            if (sent++)
                s_puts(b, ",");
            s_put(b, cur->items + n->at, n->len);
        }
        if (cmp == 0)
            i++;
        j++;
    }
    s_puts(b, "],\"removed\":[");
    i = 0, j = 0, sent = 0;
    while (i < old->count) {
        int cmp = j < cur->count ? strcmp(old->refs[i].sku, cur->refs[j].sku) : -1;
        if (cmp < 0) {
            if (sent++)
                s_puts(b, ",");
            s_str(b, old->refs[i].sku);
            i++;
        } else {
            if (cmp == 0)
                i++;
            j++;
        }
    }
    s_puts(b, "]}");
}

int
sm_api_refresh(sm_api *self, uint64_t now_ms, char **delta, size_t *delta_len)
{
    assert(self && delta && delta_len);
    *delta = NULL;
    *delta_len = 0;
    uint64_t version;
    int rc = sm_ledger_version(self->ledger, &version);
    if (rc != 0)
        return rc;
    if (self->snap.built && version == self->snap.version)
        return 0;
    s_snap cur;
    if ((rc = s_snap_build(self, now_ms, &cur)) != 0)
        return rc;
    s_buf b = { 0 };
    s_delta(&self->snap, &cur, now_ms, &b);
    if (b.failed) {
        s_buf_free(&b);
        s_snap_free(&cur);
        return SM_ENOMEM;
    }
    s_snap_free(&self->snap);
    self->snap = cur;
    if (self->metrics)
        sm_metrics_set(self->metrics, SM_GAUGE_STATE_VERSION, (int64_t) cur.version);
    *delta = b.p;
    *delta_len = b.len;
    return 1;
}

/*  Build the snapshot if none was built yet (nothing borrowed can exist
    then, so this never frees what a caller holds).                          */
static int
s_snap_ensure(sm_api *self, uint64_t now_ms)
{
    if (self->snap.built)
        return 0;
    s_snap cur;
    int rc = s_snap_build(self, now_ms, &cur);
    if (rc != 0)
        return rc;
    self->snap = cur;
    if (self->metrics)
        sm_metrics_set(self->metrics, SM_GAUGE_STATE_VERSION, (int64_t) cur.version);
    return 0;
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
    *msg = self->snap.msg;
    *len = self->snap.msg_len;
    return 0;
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

/*  GET /api/stock: the cached snapshot, shared by reference: a refresh
    while the answer is still being sent does not free it.                   */
static void
s_get_stock(sm_api *self, const sm_http_req *req, uint64_t now_ms,
            sm_http_resp *r)
{
    int rc = s_snap_ensure(self, now_ms);
    if (rc != 0) {
        s_ledger_error(r, rc, false);
        return;
    }
    snprintf(r->etag, sizeof r->etag, "\"%" PRIu64 "\"", self->snap.version);
    r->cache_control = s_no_cache;
    if (req->if_none_match && sm_http_etag_match(req->if_none_match, r->etag)) {
        r->status = 304;
        return;
    }
    r->status = 200;
    r->content_type = s_json_type;
    s_blob *blob = self->snap.body;
    blob->refs++;
    r->body = blob->data;
    r->body_len = blob->len;
    r->body_borrowed = true;
    r->body_owner = blob;           /* let go by sm_http_resp_clear */
}

/* ====================================================================== */
/* Routing                                                                 */

typedef enum {
    R_STOCK = 1, R_SALES, R_STATE, R_PEERS, R_LIVEZ, R_READYZ, R_METRICS,
    R_ITEMS, R_STOCK_ADD, R_STOCK_ADJUST, R_STOCK_MOVE, R_RETURNS, R_HOLDS,
    R_HOLD
} s_route_id;

#define M_GET    1u                 /* and HEAD */
#define M_POST   2u
#define M_DELETE 4u

typedef struct {
    const char *path;
    s_route_id id;
    unsigned methods;
    unsigned auth;                  /* methods that need the token */
    const char *allow;
} s_route;

static const s_route s_routes[] = {
    { "/api/stock",        R_STOCK,        M_GET,  0,      "GET, HEAD" },
    { "/api/sales",        R_SALES,        M_GET | M_POST, M_GET | M_POST,
                                                           "GET, HEAD, POST" },
    { "/api/state",        R_STATE,        M_GET,  0,      "GET, HEAD" },
    { "/api/peers",        R_PEERS,        M_GET,  0,      "GET, HEAD" },
    { "/livez",            R_LIVEZ,        M_GET,  0,      "GET, HEAD" },
    { "/readyz",           R_READYZ,       M_GET,  0,      "GET, HEAD" },
    { "/metrics",          R_METRICS,      M_GET,  0,      "GET, HEAD" },
    { "/api/items",        R_ITEMS,        M_POST, M_POST, "POST" },
    { "/api/stock/add",    R_STOCK_ADD,    M_POST, M_POST, "POST" },
    { "/api/stock/adjust", R_STOCK_ADJUST, M_POST, M_POST, "POST" },
    { "/api/stock/move",   R_STOCK_MOVE,   M_POST, M_POST, "POST" },
    { "/api/returns",      R_RETURNS,      M_POST, M_POST, "POST" },
    { "/api/holds",        R_HOLDS,        M_POST, 0,      "POST" },
};
static const s_route s_route_hold = { "/api/holds/", R_HOLD, M_DELETE, 0, "DELETE" };

static const s_route *
s_route_find(const char *path)
{
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes[0]; i++)
        if (strcmp(path, s_routes[i].path) == 0)
            return &s_routes[i];
    size_t n = strlen(s_route_hold.path);
    if (strncmp(path, s_route_hold.path, n) == 0 && path[n] != '\0')
        return &s_route_hold;
    return NULL;
}

static unsigned
s_method_bit(sm_http_method m)
{
    switch (m) {
    case SM_HTTP_GET: case SM_HTTP_HEAD: return M_GET;
    case SM_HTTP_POST: return M_POST;
    case SM_HTTP_DELETE: return M_DELETE;
    default: return 0;
    }
}

static void
s_unauthorized(sm_http_resp *r, const char *detail)
{
    s_error(r, 401, "unauthorized", detail, NULL);
}

/*  DELETE /api/holds/<id>: with the token, or from the address that made
    the hold (remembered for the last SM_HOLD_OWNERS_MAX holds).            */
static int
s_delete_hold(sm_api *self, const sm_http_req *req, sm_http_resp *r,
              sm_core_req **write)
{
    const char *text = req->path + strlen(s_route_hold.path);
    sm_id origin;
    uint64_t seq;
    if (!s_parse_entry_id(text, &origin, &seq)) {
        s_bad(r, "bad_value", "id",
              "the hold id must be \"<64 hex digits>:<seq>\" as POST /api/holds returned it");
        return SM_API_DONE;
    }
    if (!req->authorized) {
        const s_owner *o = s_owner_find(self, seq);
        bool mine = memcmp(origin.b, self->node.b, SM_KEY_BYTES) == 0;
        if (!mine || !o || strncmp(o->client, req->client ? req->client : "",
                                   S_CLIENT_BYTES - 1) != 0) {
            s_unauthorized(r, "cancel a hold from the device that made it, "
                              "or send 'Authorization: Bearer <api-token>'");
            return SM_API_DONE;
        }
    }
    if (memcmp(origin.b, self->node.b, SM_KEY_BYTES) != 0) {
        s_error(r, 404, "unknown_hold",
                "that hold was made at another stall: cancel it there", "id");
        return SM_API_DONE;
    }
    s_write *w = s_write_new(req, W_RELEASE, SM_KIND_RELEASE);
    if (!w) {
        s_resp_nomem(r);
        return SM_API_DONE;
    }
    w->req.body.u.release.hold_seq = seq;
    *write = &w->req;
    return SM_API_WRITE;
}

/*  A POST of route `id`: parse, validate, and hand back the write.          */
static int
s_post(sm_api *self, s_route_id id, const sm_http_req *req, uint64_t now_ms,
       sm_http_resp *r, sm_core_req **write)
{
    if (id == R_HOLDS && !req->authorized) {
        int wait_s = s_rate_take(self, req->client ? req->client : "", now_ms);
        if (wait_s > 0) {
            s_buf b = { 0 };
            s_error_begin(&b, "rate_limited",
                          "too many holds from this address: wait and retry");
            s_puts(&b, ",\"retry_after_s\":");
            s_int(&b, wait_s);
            s_error_end(r, 429, &b);
            r->retry_after_s = wait_s;
            return SM_API_DONE;
        }
    }
    json_t *o;
    if (!s_parse_body(req, r, &o))
        return SM_API_DONE;
    s_write *w = NULL;
    bool ok = false;
    switch (id) {
    case R_ITEMS:
        if ((w = s_write_new(req, W_ITEM, SM_KIND_ITEM)))
            ok = s_in_item(self, o, r, &w->req.body);
        break;
    case R_STOCK_ADD:
        if ((w = s_write_new(req, W_ADD, SM_KIND_STOCK_ADD)))
            ok = s_in_add(self, o, r, &w->req.body);
        break;
    case R_STOCK_ADJUST:
        if ((w = s_write_new(req, W_ADJUST, SM_KIND_ADJUST)))
            ok = s_in_adjust(self, o, r, &w->req.body);
        break;
    case R_STOCK_MOVE:
        if ((w = s_write_new(req, W_MOVE, SM_KIND_STOCK_MOVE)))
            ok = s_in_move(self, o, r, &w->req.body);
        break;
    case R_SALES:
        if ((w = s_write_new(req, W_SALE, SM_KIND_SALE)))
            ok = s_in_sale(self, o, r, &w->req.body);
        break;
    case R_RETURNS:
        if ((w = s_write_new(req, W_RETURN, SM_KIND_RETURN)))
            ok = s_in_return(self, o, r, &w->req.body);
        break;
    case R_HOLDS:
        if ((w = s_write_new(req, W_HOLD, SM_KIND_HOLD)))
            ok = s_in_hold(self, o, r, now_ms, &w->req);
        break;
    default:
        assert(!"a POST route without a handler");
    }
    json_decref(o);
    if (!w) {
        s_resp_nomem(r);
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

int
sm_api_handle(sm_api *self, const sm_http_req *req, uint64_t now_ms,
              sm_http_resp *resp, sm_core_req **write)
{
    assert(self && req && req->path && resp && write);
    memset(resp, 0, sizeof *resp);
    *write = NULL;

    const s_route *rt = s_route_find(req->path);
    if (!rt) {
        s_error(resp, 404, "not_found", "no such route: see proto/api.md", NULL);
        return SM_API_DONE;
    }
    unsigned m = s_method_bit(req->method);
    if (!(rt->methods & m)) {
        char detail[96];
        snprintf(detail, sizeof detail, "%s allows %s", rt->path, rt->allow);
        s_error(resp, 405, "method_not_allowed", detail, NULL);
        resp->allow = rt->allow;
        return SM_API_DONE;
    }
    if ((rt->auth & m) && !req->authorized) {
        s_unauthorized(resp, "send 'Authorization: Bearer <api-token>' "
                             "(the api-token file of the node's data directory)");
        return SM_API_DONE;
    }
    switch (rt->id) {
    case R_STOCK:
        s_get_stock(self, req, now_ms, resp);
        return SM_API_DONE;
    case R_SALES:
        if (m == M_GET) {
            s_get_sales(self, req, resp);
            return SM_API_DONE;
        }
        return s_post(self, rt->id, req, now_ms, resp, write);
    case R_STATE:
        s_get_state(self, resp);
        return SM_API_DONE;
    case R_PEERS:
        s_get_peers(self, resp);
        return SM_API_DONE;
    case R_LIVEZ:
        s_answer_text(resp, 200, "{\"status\":\"ok\"}");
        return SM_API_DONE;
    case R_READYZ:
        s_get_readyz(self, resp);
        return SM_API_DONE;
    case R_METRICS:
        s_get_metrics(self, resp);
        return SM_API_DONE;
    case R_HOLD:
        return s_delete_hold(self, req, resp, write);
    default:
        return s_post(self, rt->id, req, now_ms, resp, write);
    }
}

/* ====================================================================== */
/* Answers to writes                                                       */

static void
s_sale_json(s_buf *b, const sm_sale *sale, const char *external_id)
{
    int64_t total = 0;
    bool overflow = false;
    s_puts(b, "{\"id\":");
    s_entry_id(b, &sale->origin, sale->seq);
    s_puts(b, ",\"at\":");
    s_time(b, SM_HLC_MS(sale->hlc));
    s_puts(b, ",\"lines\":[");
    for (uint32_t i = 0; i < sale->line_count && i < SM_SALE_LINES_MAX; i++) {
        const sm_sale_line *l = &sale->lines[i];
        int64_t lt;
        if (__builtin_mul_overflow(l->price, (int64_t) l->qty, &lt)
            || __builtin_add_overflow(total, lt, &total))
            overflow = true;
        if (i)
            s_puts(b, ",");
        s_puts(b, "{\"sku\":");
        s_str(b, l->sku);
        s_puts(b, ",\"qty\":");
        s_uint(b, l->qty);
        s_puts(b, ",\"price\":");
        s_int(b, l->price);
        s_puts(b, ",\"returned\":");
        s_uint(b, l->returned);
        s_puts(b, "}");
    }
    s_puts(b, "],\"total\":");
    if (overflow)
        s_puts(b, "null");
    else
        s_int(b, total);
    s_puts(b, ",\"currency\":");
    s_str(b, sale->currency);
    const char *src = sm_source_name(sale->source);
    const char *pay = sm_payment_name(sale->payment);
    s_puts(b, ",\"source\":");
    s_str(b, src ? src : "");
    s_puts(b, ",\"payment\":");
    s_str(b, pay ? pay : "");
    if (sale->hold_seq) {
        s_puts(b, ",\"hold\":");
        s_entry_id(b, &sale->origin, sale->hold_seq);
    }
    if (external_id && external_id[0]) {
        s_puts(b, ",\"external_id\":");
        s_str(b, external_id);
    }
    s_puts(b, "}");
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

/*  409 insufficient_stock for a refused write: the sku short here (the
    first line that cannot be met for a sale), its units here and in all.   */
static void
s_no_stock(sm_api *self, const s_write *w, sm_http_resp *r)
{
    const sm_body *b = &w->req.body;
    const char *sku = "";
    int64_t need = 0, here = 0, total = 0;
    int rc = 0;
    switch (w->kind) {
    case W_SALE: {
        /* A consumed hold's units count toward its sku's line. */
        sm_hold hold;
        memset(&hold, 0, sizeof hold);
        if (b->u.sale.hold_seq
            && sm_ledger_hold(self->ledger, &self->node, b->u.sale.hold_seq,
                              &hold) != 0)
            memset(&hold, 0, sizeof hold);
        sku = b->u.sale.lines[0].sku;
        need = b->u.sale.lines[0].qty;
        for (uint32_t i = 0; i < b->u.sale.line_count; i++) {
            int64_t h, t;
            if ((rc = s_units_now(self, b->u.sale.lines[i].sku, &h, &t)) != 0)
                break;
            if (hold.qty && strcmp(hold.sku, b->u.sale.lines[i].sku) == 0)
                h += hold.qty;
            if (h < (int64_t) b->u.sale.lines[i].qty) {
                sku = b->u.sale.lines[i].sku;
                need = b->u.sale.lines[i].qty;
                break;
            }
        }
        break;
    }
    case W_ADJUST:
        sku = b->u.adjust.sku;
        need = -b->u.adjust.delta;
        break;
    case W_MOVE:
        sku = b->u.stock_move.sku;
        need = b->u.stock_move.qty;
        break;
    case W_HOLD:
        sku = b->u.hold.sku;
        need = b->u.hold.qty;
        break;
    default:
        break;
    }
    if (w->kind == W_HOLD && w->req.forward) {
        /* Refused by the stall it was forwarded to: its units, as this node
           last heard of them. */
        sm_units u;
        int64_t t = 0;
        rc = s_units_now(self, sku, &here, &t);
        int urc = rc == 0 ? sm_ledger_units(self->ledger, sku, &w->req.at, &u) : rc;
        if (urc == SM_ENOTFOUND)
            u.units = 0;
        else if (urc != 0) {
            s_ledger_error(r, urc, false);
            return;
        }
        char detail[160];
        snprintf(detail, sizeof detail,
                 "%" PRId64 " units wanted; that stall has %" PRId64 " free (%" PRId64
                 " at the market's stalls): hold fewer, or at another stall", need,
                 u.units, t);
        s_buf o = { 0 };
        s_error_begin(&o, "insufficient_stock", detail);
        s_puts(&o, ",\"sku\":");
        s_str(&o, sku);
        s_puts(&o, ",\"at\":");
        s_id(&o, &w->req.at);
        s_puts(&o, ",\"there\":");
        s_int(&o, u.units);
        s_puts(&o, ",\"total\":");
        s_int(&o, t);
        s_error_end(r, 409, &o);
        return;
    }
    if (rc == 0 && sku[0])
        rc = s_units_now(self, sku, &here, &total);
    if (rc != 0) {
        s_ledger_error(r, rc, false);
        return;
    }
    char detail[160];
    snprintf(detail, sizeof detail,
             "%" PRId64 " units wanted, %" PRId64 " here (%" PRId64
             " at the market's stalls): %s",
             need, here, total, w->kind == W_MOVE
                 ? "a stall moves only units it holds: move fewer"
                 : "sell or hold fewer, or move units here");
    s_buf o = { 0 };
    s_error_begin(&o, "insufficient_stock", detail);
    s_puts(&o, ",\"sku\":");
    s_str(&o, sku);
    s_puts(&o, ",\"here\":");
    s_int(&o, here);
    s_puts(&o, ",\"total\":");
    s_int(&o, total);
    s_error_end(r, 409, &o);
}

/*  The sale `seq` of this node, as 200/201 with `external_id`.             */
static void
s_answer_sale(sm_api *self, uint64_t seq, const char *external_id, int status,
              sm_http_resp *r)
{
    sm_sale sale;
    int rc = sm_ledger_sale(self->ledger, &self->node, seq, &sale);
    if (rc != 0) {
        s_ledger_error(r, rc == SM_ENOTFOUND ? SM_ECORRUPT : rc, false);
        return;
    }
    s_buf b = { 0 };
    s_sale_json(&b, &sale, external_id);
    s_resp_take(r, status, &b);
}

/*  201 (200 for DELETE) with what was written.                             */
static void
s_answer_ok(sm_api *self, s_write *w, sm_http_resp *r)
{
    const sm_body *body = &w->req.body;
    uint64_t seq = w->req.seq;
    s_buf b = { 0 };
    int64_t here = 0, total = 0;
    int rc;
    switch (w->kind) {
    case W_ITEM:
        s_puts(&b, "{\"sku\":");
        s_str(&b, body->u.item.sku);
        s_puts(&b, ",\"name\":");
        s_str(&b, body->u.item.name);
        s_puts(&b, ",\"price\":");
        s_int(&b, body->u.item.price);
        s_puts(&b, ",\"currency\":");
        s_str(&b, body->u.item.currency);
        s_puts(&b, "}");
        break;
    case W_ADD:
    case W_ADJUST: {
        const char *sku = w->kind == W_ADD ? body->u.stock_add.sku : body->u.adjust.sku;
        if ((rc = s_units_now(self, sku, &here, &total)) != 0) {
            s_ledger_error(r, rc, false);
            return;
        }
        s_puts(&b, "{\"sku\":");
        s_str(&b, sku);
        s_puts(&b, ",\"qty\":");
        s_int(&b, w->kind == W_ADD ? (int64_t) body->u.stock_add.qty
                                   : body->u.adjust.delta);
        if (w->kind == W_ADJUST) {
            s_puts(&b, ",\"reason\":");
            s_str(&b, body->u.adjust.reason);
        }
        s_puts(&b, ",\"here\":");
        s_int(&b, here);
        s_puts(&b, ",\"total\":");
        s_int(&b, total);
        s_puts(&b, "}");
        break;
    }
    case W_MOVE:
        if ((rc = s_units_now(self, body->u.stock_move.sku, &here, &total)) != 0) {
            s_ledger_error(r, rc, false);
            return;
        }
        s_puts(&b, "{\"sku\":");
        s_str(&b, body->u.stock_move.sku);
        s_puts(&b, ",\"qty\":");
        s_uint(&b, body->u.stock_move.qty);
        s_puts(&b, ",\"to\":");
        s_id(&b, &body->u.stock_move.to);
        s_puts(&b, ",\"here\":");
        s_int(&b, here);
        s_puts(&b, ",\"total\":");
        s_int(&b, total);
        s_puts(&b, "}");
        break;
    case W_SALE:
        s_answer_sale(self, seq, body->u.sale.external_id, 201, r);
        return;
    case W_RETURN:
        s_puts(&b, "{\"id\":");
        s_entry_id(&b, &self->node, seq);
        s_puts(&b, ",\"sale\":");
        s_entry_id(&b, &self->node, body->u.ret.sale_seq);
        s_puts(&b, ",\"lines\":[");
        for (uint32_t i = 0; i < body->u.ret.line_count; i++) {
            if (i)
                s_puts(&b, ",");
            s_puts(&b, "{\"sku\":");
            s_str(&b, body->u.ret.lines[i].sku);
            s_puts(&b, ",\"qty\":");
            s_uint(&b, body->u.ret.lines[i].qty);
            s_puts(&b, "}");
        }
        s_puts(&b, "],\"reason\":");
        s_str(&b, body->u.ret.reason);
        s_puts(&b, "}");
        break;
    case W_HOLD:
        if (w->req.forward) {
            s_puts(&b, "{\"id\":");
            s_entry_id(&b, &w->req.at, seq);
        } else {
            s_owner_add(self, seq, w->client);
            s_puts(&b, "{\"id\":");
            s_entry_id(&b, &self->node, seq);
        }
        s_puts(&b, ",\"sku\":");
        s_str(&b, body->u.hold.sku);
        s_puts(&b, ",\"qty\":");
        s_uint(&b, body->u.hold.qty);
        s_puts(&b, ",\"expires_at\":");
        s_time(&b, body->u.hold.expires_ms);
        s_puts(&b, ",\"at\":");
        s_id(&b, w->req.forward ? &w->req.at : &self->node);
        s_puts(&b, "}");
        break;
    case W_RELEASE: {
        s_owner *o = s_owner_find(self, body->u.release.hold_seq);
        if (o)
            memset(o, 0, sizeof *o);
        s_puts(&b, "{\"id\":");
        s_entry_id(&b, &self->node, body->u.release.hold_seq);
        s_puts(&b, ",\"released\":true}");
        s_resp_take(r, 200, &b);
        return;
    }
    }
    s_resp_take(r, 201, &b);
}

void
sm_api_finish(sm_api *self, sm_core_req *write, uint64_t now_ms,
              sm_http_resp *resp)
{
    assert(self && write && resp);
    (void) now_ms;
    s_write *w = (s_write *) write;
    assert(w->magic == S_WRITE_MAGIC);
    memset(resp, 0, sizeof *resp);
    int rc = w->req.rc;
    if (rc == 0)
        s_answer_ok(self, w, resp);
    else if (rc == SM_EEXIST && w->kind == W_SALE && w->req.body.u.sale.external_id[0])
        s_answer_sale(self, w->req.seq, w->req.body.u.sale.external_id, 200, resp);
    else if (rc == SM_ENOSTOCK)
        s_no_stock(self, w, resp);
    else
        s_ledger_error(resp, rc, w->kind == W_RELEASE);
    s_write_free(w);
}

void
sm_api_cancel(sm_api *self, sm_core_req *write)
{
    assert(self);
    (void) self;
    if (write)
        s_write_free((s_write *) write);
}
