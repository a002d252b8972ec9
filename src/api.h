/*  The node's JSON API (README "HTTP API"; proto/api.md is the normative
    reference of every route, field, status and error code).

    The web server (web.c) collects a request and calls sm_api_handle.  A
    read is answered at once from LMDB read transactions; a write is turned
    into a core request (sm_core_req, core_req.h) which the web server
    submits and, once the core answers, hands to sm_api_finish for the
    response.  The API never writes the store itself and keeps no state
    beyond the stock snapshot and per-client hold limits, all used by the
    web thread only.  It needs nothing else of the core: the mesh peers
    (GET /api/peers, the peer gauge of /metrics) come from a callback
    (sm_api_opts.peers), which the node points at the core's peers table.

    The stock snapshot (GET /api/stock, the first websocket message) is
    serialized once per state version (README: architecture): sm_api_refresh
    rebuilds it when the version moved and returns the delta for websocket
    clients. Its ETag is the version.

    Errors are JSON {"error": "<code>", "detail": "<what to fix>"}.

    The files, by concern:
      api.c        the route table, sm_api_handle, answers and errors, and
                   the request-reading helpers every route shares;
      api_read.c   the reads (stock, sales, state, peers, health, metrics);
      api_write.c  the writes, each from its request through the core
                   request to its answer (a sale reads top to bottom);
      api_int.h    what those files share (internal);
      snapshot.c   the stock snapshot and its delta;  json.c  JSON in/out.
    A new route: one line in s_routes (api.c) naming its handlers, and the
    handlers, declared in api_int.h, in api_read.c / api_write.c or in a
    file of their own (api_<noun>.c) when they are a concern of their own.  */
#ifndef SM_API_H
#define SM_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"
#include "auth.h"
#include "core_req.h"
#include "gossip.h"
#include "metrics.h"

typedef enum {
    SM_HTTP_GET = 1, SM_HTTP_HEAD, SM_HTTP_POST, SM_HTTP_DELETE, SM_HTTP_PUT,
    SM_HTTP_OTHER
} sm_http_method;

/*  A request as the web server collected it; all borrowed for the call.   */
typedef struct {
    sm_http_method method;
    const char *path;          /* without the query, percent-decoded */
    const char *query;         /* after '?', not decoded; "" if none */
    bool authorized;           /* carried a valid bearer token */
    sm_scope scope;            /* that token's scope; SM_SCOPE_NONE with
                                  authorized = admin (the node's own token) */
    const char *client;        /* the peer's address, for rate limits */
    bool secure;               /* over TLS, or from this machine (loopback) */
    const char *if_none_match; /* NULL if absent */
    const char *body;          /* not NUL-terminated */
    size_t body_len;
} sm_http_req;

/*  A body produced in chunks while it is sent (the CSV exports), so memory
    stays flat however long it is.  `next` writes at most `cap` bytes into
    buf, sets *len, and returns 0 for more, 1 after the last chunk, or a
    negative error (the connection is closed: the body is cut short and
    the client sees no final chunk).  `destroy` frees it (also when the
    client goes away mid-body).  Web thread only.                           */
typedef struct sm_http_stream {
    int (*next)(struct sm_http_stream *self, char *buf, size_t cap, size_t *len);
    void (*destroy)(struct sm_http_stream *self);
} sm_http_stream;

/*  A response.  `body` is malloc'd and freed by sm_http_resp_clear, unless
    `body_borrowed`: then the caller must not free it, and it stays valid
    until sm_http_resp_clear of this response, however many sm_api_refresh
    calls come in between (the stock snapshot is shared by reference, via
    `body_owner`).  So: clear every response once it is sent or dropped, and
    zero a response (or clear it) before filling it by hand.  A 304 has no
    body and no content type.  For HEAD send the headers of the answer
    (Content-Length = body_len) without the body.  One thread only.          */
typedef struct {
    int status;
    const char *content_type;  /* static string */
    char *body;
    size_t body_len;
    bool body_borrowed;
    char etag[40];             /* with quotes; "" = none */
    const char *cache_control; /* static; NULL = none */
    const char *allow;         /* static; for 405 */
    int retry_after_s;         /* for 429 and 503; 0 = none */
    void *body_owner;          /* the API's: keeps a shared body alive; NULL */
    sm_http_stream *stream;    /* taken: a chunked body instead of body/body_len */
    char disposition[160];     /* Content-Disposition; "" = none */
} sm_http_resp;

/*  Where GET /api/peers and /metrics get the mesh peers from: copy at most
    `cap` into out[] and return how many (the node: sm_core_peers).          */
typedef size_t (*sm_api_peers_fn)(void *arg, sm_gossip_peer *out, size_t cap);

typedef struct {
    sm_ledger *ledger;         /* borrowed: reads only */
    sm_id node;                /* this node */
    sm_metrics *metrics;       /* borrowed; may be NULL */
    sm_api_peers_fn peers;     /* the mesh peers; NULL = none known */
    void *peers_arg;
    uint32_t hold_ttl_s;       /* 0 = SM_HOLD_TTL_S_DEFAULT */
    uint32_t holds_per_min;    /* per client address; 0 = SM_HOLDS_PER_MIN_MAX */
    sm_reserve_limits hold_limits; /* [holds] limits; 0 = each default */
    bool mirror;               /* a read-only mirror: writes answer 403
                                  read_only but for the viewer's routes,
                                  which are forwarded to a stall */
    const char *report_tz;     /* borrowed: reports' default zone; NULL or "" = the system's */
    sm_auth *auth;             /* borrowed: devices and pairing; NULL = the
                                  pairing and device routes answer 404 */
    const char *pair_url;      /* borrowed: "https://HOST:PORT" of pairing
                                  links; NULL = no HTTPS: pairing refused */
} sm_api_opts;

typedef struct sm_api sm_api;

sm_api *sm_api_new(const sm_api_opts *opts, int *err);
void sm_api_destroy(sm_api **self_p);

/*  What sm_api_handle did with a request.                                  */
#define SM_API_DONE   0        /* *resp is the answer */
#define SM_API_WRITE  1        /* *write is a core request to submit */

/*  Route and answer `req` at time now_ms (unix ms).  Returns SM_API_DONE
    with *resp filled (every route, error and status: 200, 304, 400, 401,
    404, 405 with `allow`, 429 with `retry_after_s`, 503), or SM_API_WRITE
    with *write set and *resp untouched but zeroed (returned: the caller
    submits it to the core and later passes it to sm_api_finish, or to
    sm_api_cancel if it cannot be submitted).  Never fails otherwise; a
    missing body is a 400, so 413 (too large) is the caller's to answer.     */
int sm_api_handle(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *resp, sm_core_req **write);
/*  The response to a write the core has answered (its rc and seq set);
    frees `write`.  A write that could not be submitted may also come here
    with rc set to the reason (SM_EBUSY: 503 busy, Retry-After 1).          */
void sm_api_finish(sm_api *self, sm_core_req *write, uint64_t now_ms,
                   sm_http_resp *resp);
/*  Free a write that was never submitted.                                  */
void sm_api_cancel(sm_api *self, sm_core_req *write);

/*  The websocket snapshot message (as sm_api_snapshot_message) with the
    node's clock "now_ms" set to now_ms.                                     */
int sm_api_snapshot_restamp(sm_api *self, uint64_t now_ms, const char **msg, size_t *len);
/*  Whether the clock moved a drop's phase since the last rebuild, so that
    sm_api_refresh would rebuild (the web thread asks on its tick).         */
bool sm_api_clock_due(sm_api *self, uint64_t now_ms);
/*  Rebuild the stock snapshot if the state's version moved since the last
    call, or the clock moved a drop's phase.  Returns 1 and sets *delta (malloc'd, caller frees) to the
    websocket delta message when it did, 0 when nothing changed, or an
    error.                                                                    */
int sm_api_refresh(sm_api *self, uint64_t now_ms, char **delta, size_t *delta_len);
/*  The current snapshot as a websocket message (borrowed until the next
    refresh).  Builds it first if none was built yet (reading the wall clock
    for its "as_of"); 0 or the ledger's error.                                */
int sm_api_snapshot_message(sm_api *self, const char **msg, size_t *len);

/*  Fill *resp with a JSON error {"error": code, "detail": detail} for the
    web server's own refusals (413 too_large, 503 busy, ...).  The body is
    malloc'd (or, out of memory, a static 503 marked borrowed).               */
void sm_api_error(sm_http_resp *resp, int status, const char *code,
                  const char *detail);

/*  Free a response's body (unless borrowed), let go of a shared one, and
    reset it.  Safe on a zeroed response and twice.                           */
void sm_http_resp_clear(sm_http_resp *resp);

/*  Whether an If-None-Match value names `etag` (or is "*"): a list of
    entity tags, weak ones ("W/") compared weakly as RFC 9110 says.         */
bool sm_http_etag_match(const char *inm, const char *etag);

#endif
