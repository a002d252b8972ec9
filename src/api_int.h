/*  What the API's files share (api.h lists them): the API object, the
    answer and error helpers, the request-reading helpers, and the route
    handlers the route table in api.c names.  Internal to the API: nothing
    outside api*.c includes this.

    Every handler has one signature (sm__api_handler).  It answers into
    *r and returns SM_API_DONE, or hands back a core request in *write and
    returns SM_API_WRITE (writes only; *r stays zeroed).  Handlers run after
    the route table has checked the method and, where the route says so,
    the token.                                                                */
#ifndef SM_API_INT_H
#define SM_API_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "api.h"
#include "drop.h"
#include "json.h"
#include "snapshot.h"
#include "stallmesh/limits.h"

#define SM__API_CLIENT_BYTES 64u    /* an address (IPv6 text is <= 45) */
#define SM__API_ENTRY_ID_BYTES (SM_ID_HEX_BYTES + 1 + 20)  /* "<hex>:<seq>" */
#define SM__API_HOLD_PATH "/api/holds/"   /* + a hold's id: DELETE */

/*  A token bucket of POST /api/holds for one client address.               */
typedef struct {
    char client[SM__API_CLIENT_BYTES];  /* "" = a free slot */
    uint64_t credit;                /* tokens x one minute in ms */
    uint64_t last_ms;
} sm__api_bucket;

/*  Which address made a recent hold, so it may cancel it without the token. */
typedef struct {
    uint64_t seq;                   /* 0 = a free slot */
    char client[SM__API_CLIENT_BYTES];
} sm__api_owner;

struct sm_api {
    sm_ledger *ledger;
    sm_id node;
    sm_metrics *metrics;            /* may be NULL */
    sm_api_peers_fn peers;          /* NULL: no mesh peers */
    void *peers_arg;
    uint32_t hold_ttl_s;
    uint32_t holds_per_min;
    sm_reserve_limits hold_limits;  /* defaults filled in */
    bool mirror;                    /* read-only: sm_api_opts.mirror */
    /* The open holds' pickup codes, gathered for each new hold's code
       (api_write.c): allocated once, not per request (the web thread's
       arena grew and shrank for each one in a drop's rush). */
    char (*codes)[SM_HOLD_CODE_BYTES_MAX + 1];
    const char *report_tz;          /* borrowed: reports' default zone (api_report.c) */
    sm_snapshot *snap;
    sm_drop_walks *walks;           /* the drops' walks, kept between requests */
    /* GET /api/drops/<id>/ledger's answers, kept per drop (api_drop.c). */
    struct sm__api_ledger_kept {
        sm_id origin;
        uint64_t seq, version, at_ms;
        char *body;                 /* NULL: empty slot */
        size_t len;
    } ledger_kept[4];
    size_t ledger_next;             /* the slot a new drop takes */
    sm__api_bucket buckets[SM_HOLD_RATE_CLIENTS_MAX];
    sm__api_owner owners[SM_HOLD_OWNERS_MAX];
    size_t owner_next;              /* the ring's next slot */
    sm_auth *auth;                  /* may be NULL: no devices */
    char pair_url[300];             /* "" = no HTTPS */
};

/*  Pairing and devices (api_devices.c).                                     */
int sm__api_post_pair(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                      sm_http_resp *r, sm_core_req **write);
int sm__api_post_pair_code(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                           sm_http_resp *r, sm_core_req **write);
int sm__api_get_devices(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                        sm_http_resp *r, sm_core_req **write);
int sm__api_delete_device(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                          sm_http_resp *r, sm_core_req **write);
#define SM__API_DEVICE_PATH "/api/devices/"   /* + a device's id: DELETE */

typedef int (*sm__api_handler)(sm_api *self, const sm_http_req *req,
                               uint64_t now_ms, sm_http_resp *r,
                               sm_core_req **write);

/* ---------------------------------------------------------------------- */
/* Answers (api.c)                                                         */

extern const char sm__api_json_type[];   /* "application/json" */
extern const char sm__api_no_store[];    /* Cache-Control values */
extern const char sm__api_no_cache[];

/*  Answer `status` with b's document (taken; b is reset).  Fields of *r
    other than status, body and content type that the caller set (etag,
    allow, cache_control) are kept; Cache-Control defaults to no-store.  A
    failed writer answers 503 no_memory instead.                              */
void sm__api_take(sm_http_resp *r, int status, sm_json_buf *b);
/*  503 no_memory with a static body (borrowed).                              */
void sm__api_nomem(sm_http_resp *r);
/*  An error body in b, left open for extra members:
    {"error":code,"detail":detail ... ; sm__api_error_end closes and answers. */
void sm__api_error_begin(sm_json_buf *b, const char *code, const char *detail);
void sm__api_error_end(sm_http_resp *r, int status, sm_json_buf *b);
/*  An error answer, with "field" when `field` is not NULL.                  */
void sm__api_error(sm_http_resp *r, int status, const char *code,
                   const char *detail, const char *field);
/*  A 400 whose detail is formatted; `field` may be NULL.                    */
void sm__api_bad(sm_http_resp *r, const char *code, const char *field,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*  An answer for ledger code `rc` (not 0): {"error": sm_errname, "detail":
    sm_strerror}, status as proto/api.md "Errors" says.  `release` tells a
    DELETE of a hold (a gone hold is 404) from a sale naming one (409).      */
void sm__api_ledger_error(sm_http_resp *r, int rc, bool release);

/* ---------------------------------------------------------------------- */
/* Reading requests (api.c)                                                */

/*  Decimal digits s[0..n) as a value 0..max; false otherwise.              */
bool sm__api_parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out);
/*  "<64 hex>:<seq>" with seq 1..SM_SEQ_MAX; false otherwise.               */
bool sm__api_parse_entry_id(const char *s, sm_id *origin, uint64_t *seq);
/*  The body as one JSON object into *doc (returned: sm_json_doc_free), or
    answer 400 (bad_json, too_deep) and return false.                        */
bool sm__api_parse_body(const sm_http_req *req, sm_http_resp *r,
                        sm_json_doc **doc);
/*  Refuse (400 unknown_field) members of `obj` not named in `keys`
    (NULL-ended): a typo such as "extenal_id" must not pass silently.
    `prefix` names where obj sits ("lines[2].") in the error's field.       */
bool sm__api_only(sm_http_resp *r, const sm_json_val *obj, const char *prefix,
                  const char *const *keys);

/*  Results of the field readers: the value was read, it is absent and
    optional, or the request was answered (400).                             */
#define SM__API_OK       0
#define SM__API_ABSENT   1
#define SM__API_ANSWERED (-1)

/*  A string member `key`: min..max bytes of text (sm__text_valid), copied
    into out[cap] (cap > max).                                               */
int sm__api_get_str(sm_http_resp *r, const sm_json_val *obj, const char *prefix,
                    const char *key, bool required, size_t min, size_t max,
                    char *out, size_t cap);
/*  An integer member `key` within min..max; out of range answers `code`
    (bad_quantity for quantities, bad_money for prices).  A JSON real
    (1.0, 1e3) is the wrong type: quantities and money are whole numbers.   */
int sm__api_get_int(sm_http_resp *r, const sm_json_val *obj, const char *prefix,
                    const char *key, bool required, int64_t min, int64_t max,
                    const char *code, int64_t *out);
/*  A string member naming an entry of this node ("<hex>:<seq>"); *seq = 0
    when absent.  Another node's entry answers 404 `code`.                   */
int sm__api_get_own_id(sm_api *self, sm_http_resp *r, const sm_json_val *obj,
                       const char *key, bool required, const char *code,
                       uint64_t *seq);
/*  The catalog item of `sku` into *out, or answer 404 unknown_sku (or the
    store's error) and return false.                                         */
bool sm__api_need_item(sm_api *self, sm_http_resp *r, const char *sku,
                       sm_item *out);

/* ---------------------------------------------------------------------- */
/* Reads (api_read.c; GET /api/stock is with the snapshot, in api.c)       */

int sm__api_get_stock(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_get_sales(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_get_state(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_get_peers(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_get_livez(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_get_readyz(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_get_metrics(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);

/*  The mesh peers as the core last saw them, into out[0..SM_PEERS_MAX),
    sorted by node id; this node never among them.  Returns how many.       */
size_t sm__api_peers(sm_api *self, sm_gossip_peer *out);
/*  GET /api/report and the CSV exports under /api/export/ (api_report.c).  */
int sm__api_get_report(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                       sm_http_resp *r, sm_core_req **write);

/* ---------------------------------------------------------------------- */
/* Writes (api_write.c)                                                    */

int sm__api_post_item(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_post_stock_add(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_post_stock_adjust(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_post_stock_move(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_post_sale(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_post_return(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_post_hold(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_delete_hold(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);

/*  A hold as the API shows it: {"id","state","code"?,"lines":[{"sku","qty",
    "name"?}],"expires","expires_ms","left_s","at","sale"?}, state one of
    open, sold, expired, cancelled; "code" only when `with_code` (the till
    and the phone that made it).  _members writes them into an open object. */
void sm__api_hold_json(sm_api *self, sm_json_buf *b, const sm_hold *h,
                       bool with_code, uint64_t now_ms);
void sm__api_hold_members(sm_api *self, sm_json_buf *b, const sm_hold *h,
                          bool with_code, uint64_t now_ms);
int sm__api_get_holds(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_get_hold(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_get_qr(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);

/* ---------------------------------------------------------------------- */
/* Drops (api_drop.c)                                                      */

int sm__api_get_drops(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_post_drops(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_get_drop(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
int sm__api_post_drop(sm_api *, const sm_http_req *, uint64_t, sm_http_resp *, sm_core_req **);
#define SM__API_DROP_PATH "/api/drops/"   /* + a drop's id [+ /ledger, /result, /entries, /draw] */
/*  A drop's write carries this magic right after its sm_core_req, where
    api_write.c's writes carry theirs: sm_api_finish and sm_api_cancel
    hand it to api_drop.c.                                                   */
#define SM__API_DROP_MAGIC 0x44524f50u  /* "DROP" */
typedef struct {
    sm_core_req req;
    uint32_t magic;
} sm__api_write_head;
void sm__api_drop_finish(sm_api *self, sm_core_req *write, uint64_t now_ms,
                         sm_http_resp *resp);
void sm__api_drop_free(sm_core_req *write);
/*  A shopper's hold the policy refused by a live first-come drop's caps
    (per device and per address, per_shopper; the drop's qty): 409
    drop_limit or sold_out, naming the drop and the cap.  Another rc: its
    usual answer.                                                            */
void sm__api_drop_refused(sm_http_resp *r, int rc, const sm_drop_refusal *why);
/*  A shopper's hold of a live first-come drop's sku of which this stall
    holds fewer units than it asks: answered here, 409 sold_out, without
    the core's round trip (the policy could only refuse it).  In a rush
    most requests come after the last unit went, and each one the core
    still has to answer keeps the phones' deltas to their small slice
    (web.c).  True if it answered.                                          */
bool sm__api_drop_sold_out(sm_api *self, sm_http_resp *r, const sm_body *hold,
                           uint64_t now_ms);

/*  A sale as the API shows it (POST /api/sales, GET /api/sales), with
    "external_id" when given and not "".                                     */
void sm__api_sale_json(sm_json_buf *b, const sm_sale *sale,
                       const char *external_id);

#endif
