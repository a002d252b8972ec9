/*  The web thread: HTTP, pages and websockets on libwebsockets.  See web.h.

    One protocol serves both plain HTTP and the `/ws` websocket (browsers
    open `new WebSocket(url)` without a subprotocol, which lws binds to the
    first protocol).  Per-connection state (s_conn) is the protocol's
    per-session data; an HTTP request's own state (s_http: path, headers,
    body, response) is allocated when the request starts and freed when its
    response is done, so an idle websocket costs little.

    Writes: the request is handed to the core with conn as the tag.  If the
    connection closes before the answer, the tag is cleared and the answer,
    when it comes, is rendered and dropped: the write is committed either
    way, and a till retrying with its external_id gets the first sale.

    Websocket messages are shared, reference-counted buffers (the snapshot
    and each delta are built once and queued to every client).             */
#include "web.h"

#include <arpa/inet.h>
#include <assert.h>
#include <libwebsockets.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assets.h"
#include "logger.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define SM__WS_QUEUE_MSGS_MAX   64u      /* messages queued to one client */
#define SM__HTTP_CHUNK_BYTES    65536u   /* body bytes a writeable callback sends */
#define SM__ADDR_BYTES          64u
#define SM__ADDR_SLOTS          1024u    /* distinct client addresses tracked */
#define SM__DRAIN_MS            3000u    /* at stop: time to answer writes in flight */

typedef struct {
    atomic_int refs;
    size_t len;
    unsigned char buf[];       /* LWS_PRE bytes, then the message */
} s_msg;

typedef struct {
    sm_http_method method;
    char path[SM_HTTP_URI_BYTES_MAX + 1];
    char query[SM_HTTP_URI_BYTES_MAX + 1];
    char if_none_match[80];
    bool has_if_none_match;
    bool authorized;
    bool expect_body;
    char *body;
    size_t body_len, body_cap;
    sm_http_resp resp;
    bool has_resp;             /* resp is ready to send */
    bool headers_sent;
    size_t sent;               /* body bytes sent */
    sm_core_req *pending;      /* a write in the core */
} s_http;

typedef struct s_conn {
    struct lws *wsi;
    bool is_ws;
    char client[SM__ADDR_BYTES];
    s_http *http;
    /* websocket */
    struct s_conn *prev, *next;
    s_msg *queue[SM__WS_QUEUE_MSGS_MAX];
    unsigned qhead, qlen;
    size_t qbytes;
    size_t rx_bytes;           /* of the message being received */
    bool counted;              /* in the per-address count */
    bool dropping;
} s_conn;

typedef struct {
    char addr[SM__ADDR_BYTES];
    uint32_t count;
} s_addr_slot;

struct sm_web {
    sm_web_opts opts;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    sm_api *api;
    sm_core_client *core;
    atomic_bool stop;
    s_conn *ws_head;           /* websocket clients */
    size_t ws_count;
    size_t pending;            /* writes in the core */
    s_msg *snapshot;           /* the current snapshot message */
    lws_sorted_usec_list_t refresh_sul; /* a deferred snapshot rebuild */
    int port;
    char token_header[8 + 2 * 64 + 1];   /* "Bearer <hex>" */
    s_addr_slot addrs[SM__ADDR_SLOTS];
};

/* ---- small helpers ---------------------------------------------------- */

static uint64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static s_msg *
s_msg_new(const char *data, size_t len)
{
    s_msg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    m->len = len;
    memcpy(m->buf + LWS_PRE, data, len);
    return m;
}

static void
s_msg_unref(s_msg **m_p)
{
    s_msg *m = *m_p;
    if (m && atomic_fetch_sub(&m->refs, 1) == 1)
        free(m);
    *m_p = NULL;
}

/* Constant-time comparison of the Authorization header with the token. */
static bool
s_token_ok(const sm_web *self, const char *given)
{
    size_t n = strlen(self->token_header);
    if (strlen(given) != n || n == 7)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char) (given[i] ^ self->token_header[i]);
    return diff == 0;
}

/* Per-address websocket counts: a small open-addressing table. */
static s_addr_slot *
s_addr_slot_for(sm_web *self, const char *addr, bool create)
{
    uint32_t h = 2166136261u;
    for (const char *p = addr; *p; p++)
        h = (h ^ (unsigned char) *p) * 16777619u;
    s_addr_slot *free_slot = NULL;
    for (uint32_t i = 0; i < SM__ADDR_SLOTS; i++) {
        s_addr_slot *s = &self->addrs[(h + i) % SM__ADDR_SLOTS];
        if (s->count && strcmp(s->addr, addr) == 0)
            return s;
        if (!s->count && !free_slot)
            free_slot = s;
        if (!s->count && s->addr[0] == 0)
            break;             /* never used: the key is not further on */
    }
    if (!create || !free_slot)
        return NULL;
    snprintf(free_slot->addr, sizeof free_slot->addr, "%s", addr);
    return free_slot;
}

/* ---- HTTP ------------------------------------------------------------- */

static void
s_http_free(s_conn *conn)
{
    s_http *h = conn->http;
    if (!h)
        return;
    if (h->pending)
        h->pending->tag = NULL;   /* the answer will be dropped */
    sm_http_resp_clear(&h->resp);
    free(h->body);
    free(h);
    conn->http = NULL;
}

static void
s_respond(sm_web *self, s_conn *conn)
{
    if (self->opts.metrics)
        sm_metrics_http(self->opts.metrics, conn->http->resp.status);
    conn->http->has_resp = true;
    lws_callback_on_writable(conn->wsi);
}

static void
s_serve_asset(s_http *h, const sm_asset *a)
{
    sm_http_resp *resp = &h->resp;
    sm_http_resp_clear(resp);
    snprintf(resp->etag, sizeof resp->etag, "%s", a->etag);
    resp->cache_control = "no-cache";
    if (h->has_if_none_match && sm_http_etag_match(h->if_none_match, a->etag)) {
        resp->status = 304;
        return;
    }
    resp->status = 200;
    resp->content_type = a->content_type;
    resp->body = (char *) a->data;
    resp->body_len = a->len;
    resp->body_borrowed = true;
}

/*  The request is complete (headers and body): answer it or hand it on.   */
static void
s_dispatch(sm_web *self, s_conn *conn)
{
    s_http *h = conn->http;
    const sm_asset *asset = NULL;
    if ((h->method == SM_HTTP_GET || h->method == SM_HTTP_HEAD)
        && (asset = sm_asset_find(h->path)) != NULL) {
        s_serve_asset(h, asset);
        s_respond(self, conn);
        return;
    }
    sm_http_req req = {
        .method = h->method, .path = h->path, .query = h->query,
        .authorized = h->authorized, .client = conn->client,
        .if_none_match = h->has_if_none_match ? h->if_none_match : NULL,
        .body = h->body ? h->body : "", .body_len = h->body_len,
    };
    sm_core_req *write = NULL;
    uint64_t now_ms = s_now_ms();
    if (sm_api_handle(self->api, &req, now_ms, &h->resp, &write) == SM_API_WRITE) {
        write->tag = conn;
        int rc = sm_core_submit(self->core, write);
        if (rc != 0) {
            sm_api_cancel(self->api, write);
            sm_api_error(&h->resp, 503, "busy",
                         "the node is busy writing; try again in a moment");
            h->resp.retry_after_s = 1;
            s_respond(self, conn);
            return;
        }
        h->pending = write;
        self->pending++;
        return;
    }
    s_respond(self, conn);
}

static int
s_send_headers(struct lws *wsi, s_http *h)
{
    unsigned char buf[LWS_PRE + 1024];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    sm_http_resp *r = &h->resp;
    char num[32];
    if (lws_add_http_header_status(wsi, (unsigned) r->status, &p, end))
        return -1;
    if (r->content_type
        && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                        (const unsigned char *) r->content_type,
                                        (int) strlen(r->content_type), &p, end))
        return -1;
    if (r->etag[0]
        && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_ETAG,
                                        (const unsigned char *) r->etag,
                                        (int) strlen(r->etag), &p, end))
        return -1;
    if (r->cache_control
        && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                        (const unsigned char *) r->cache_control,
                                        (int) strlen(r->cache_control), &p, end))
        return -1;
    if (r->allow
        && lws_add_http_header_by_name(wsi, (const unsigned char *) "allow:",
                                       (const unsigned char *) r->allow,
                                       (int) strlen(r->allow), &p, end))
        return -1;
    if (r->retry_after_s > 0) {
        int n = snprintf(num, sizeof num, "%d", r->retry_after_s);
        if (lws_add_http_header_by_name(wsi, (const unsigned char *) "retry-after:",
                                        (const unsigned char *) num, n, &p, end))
            return -1;
    }
    static const char nosniff[] = "nosniff";
    if (lws_add_http_header_by_name(wsi, (const unsigned char *) "x-content-type-options:",
                                    (const unsigned char *) nosniff,
                                    (int) sizeof nosniff - 1, &p, end))
        return -1;
    size_t len = r->status == 304 ? 0 : r->body_len;
    if (lws_add_http_header_content_length(wsi, len, &p, end)
        || lws_finalize_http_header(wsi, &p, end))
        return -1;
    int n = (int) (p - start);
    return lws_write(wsi, start, (size_t) n, LWS_WRITE_HTTP_HEADERS) != n ? -1 : 0;
}

/*  One step of sending the response; -1 closes the connection.            */
static int
s_http_writeable(sm_web *self, s_conn *conn)
{
    (void) self;
    s_http *h = conn->http;
    if (!h || !h->has_resp)
        return 0;
    struct lws *wsi = conn->wsi;
    if (!h->headers_sent) {
        if (s_send_headers(wsi, h) != 0)
            return -1;
        h->headers_sent = true;
        bool no_body = h->resp.status == 304 || h->method == SM_HTTP_HEAD
                       || h->resp.body_len == 0;
        if (!no_body) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else {
        size_t left = h->resp.body_len - h->sent;
        size_t n = left < SM__HTTP_CHUNK_BYTES ? left : SM__HTTP_CHUNK_BYTES;
        unsigned char buf[LWS_PRE + SM__HTTP_CHUNK_BYTES];
        memcpy(buf + LWS_PRE, h->resp.body + h->sent, n);
        bool last = n == left;
        if (lws_write(wsi, buf + LWS_PRE, n,
                      last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int) n)
            return -1;
        h->sent += n;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    s_http_free(conn);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static sm_http_method
s_method(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
        return SM_HTTP_GET;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0)
        return SM_HTTP_POST;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0)
        return SM_HTTP_HEAD;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI) > 0)
        return SM_HTTP_DELETE;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0)
        return SM_HTTP_PUT;
    return SM_HTTP_OTHER;
}

/*  A request's headers are in: collect what the API needs.                 */
static int
s_http_start(sm_web *self, s_conn *conn, const char *uri)
{
    s_http_free(conn);
    s_http *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    conn->http = h;
    lws_get_peer_simple(conn->wsi, conn->client, sizeof conn->client);
    h->method = s_method(conn->wsi);
    snprintf(h->path, sizeof h->path, "%s", uri ? uri : "/");
    /* Query arguments arrive decoded, one fragment each: join them. */
    size_t q = 0;
    for (int i = 0; i < 32; i++) {
        char frag[256];
        int n = lws_hdr_copy_fragment(conn->wsi, frag, sizeof frag,
                                      WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        int w = snprintf(h->query + q, sizeof h->query - q, "%s%s", q ? "&" : "", frag);
        if (w < 0 || (size_t) w >= sizeof h->query - q)
            break;
        q += (size_t) w;
    }
    if (lws_hdr_copy(conn->wsi, h->if_none_match, sizeof h->if_none_match,
                     WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0)
        h->has_if_none_match = true;
    char auth[256];
    if (lws_hdr_copy(conn->wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) > 0)
        h->authorized = s_token_ok(self, auth);
    uint32_t body_max = self->opts.config->body_bytes_max;
    char clen[32];
    if (lws_hdr_copy(conn->wsi, clen, sizeof clen, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        char *end = NULL;
        unsigned long long n = strtoull(clen, &end, 10);
        if (end == clen || *end || n > body_max) {
            sm_api_error(&h->resp, 413, "too_large",
                         "the request body is larger than the node accepts");
            s_respond(self, conn);
            return 0;
        }
        h->expect_body = n > 0;
    }
    if (!h->expect_body)
        s_dispatch(self, conn);
    return 0;
}

static int
s_http_body(sm_web *self, s_conn *conn, const char *in, size_t len)
{
    s_http *h = conn->http;
    if (!h || h->has_resp)
        return 0;
    uint32_t body_max = self->opts.config->body_bytes_max;
    if (h->body_len + len > body_max)
        return -1;             /* more than its content-length promised */
    if (h->body_len + len > h->body_cap) {
        size_t cap = h->body_cap ? h->body_cap * 2 : 1024;
        while (cap < h->body_len + len)
            cap *= 2;
        char *b = realloc(h->body, cap);
        if (!b)
            return -1;
        h->body = b;
        h->body_cap = cap;
    }
    memcpy(h->body + h->body_len, in, len);
    h->body_len += len;
    return 0;
}

/* ---- websockets ------------------------------------------------------- */

static void
s_ws_drop(sm_web *self, s_conn *conn, const char *why)
{
    if (conn->dropping)
        return;
    conn->dropping = true;
    sm_log_info("web: websocket client %s dropped: %s", conn->client, why);
    if (self->opts.metrics)
        sm_metrics_add(self->opts.metrics, SM_METRIC_WS_DROPPED, 1);
    lws_set_timeout(conn->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void
s_ws_enqueue(sm_web *self, s_conn *conn, s_msg *m)
{
    if (conn->dropping)
        return;
    if (conn->qlen == SM__WS_QUEUE_MSGS_MAX
        || conn->qbytes + m->len > self->opts.config->ws_queue_bytes_max) {
        s_ws_drop(self, conn, "too slow (send queue full)");
        return;
    }
    atomic_fetch_add(&m->refs, 1);
    conn->queue[(conn->qhead + conn->qlen) % SM__WS_QUEUE_MSGS_MAX] = m;
    conn->qlen++;
    conn->qbytes += m->len;
    lws_callback_on_writable(conn->wsi);
}

static void
s_ws_clear(s_conn *conn)
{
    while (conn->qlen) {
        s_msg_unref(&conn->queue[conn->qhead]);
        conn->qhead = (conn->qhead + 1) % SM__WS_QUEUE_MSGS_MAX;
        conn->qlen--;
    }
    conn->qbytes = 0;
}

static int
s_ws_established(sm_web *self, s_conn *conn)
{
    char uri[64];
    if (lws_hdr_copy(conn->wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0
        || strcmp(uri, "/ws") != 0)
        return -1;
    lws_get_peer_simple(conn->wsi, conn->client, sizeof conn->client);
    s_addr_slot *slot = s_addr_slot_for(self, conn->client, true);
    if (!slot || slot->count >= self->opts.config->clients_per_addr_max) {
        sm_log_info("web: websocket from %s refused: too many connections", conn->client);
        return -1;
    }
    slot->count++;
    conn->counted = true;
    conn->is_ws = true;
    conn->next = self->ws_head;
    if (self->ws_head)
        self->ws_head->prev = conn;
    self->ws_head = conn;
    self->ws_count++;
    if (self->opts.metrics)
        sm_metrics_set(self->opts.metrics, SM_GAUGE_WS_CLIENTS, (int64_t) self->ws_count);
    if (self->snapshot)
        s_ws_enqueue(self, conn, self->snapshot);
    return 0;
}

static void
s_ws_closed(sm_web *self, s_conn *conn)
{
    if (!conn->is_ws)
        return;
    if (conn->counted) {
        s_addr_slot *slot = s_addr_slot_for(self, conn->client, false);
        if (slot && slot->count)
            slot->count--;
        conn->counted = false;
    }
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        self->ws_head = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;
    conn->is_ws = false;
    self->ws_count--;
    s_ws_clear(conn);
    if (self->opts.metrics)
        sm_metrics_set(self->opts.metrics, SM_GAUGE_WS_CLIENTS, (int64_t) self->ws_count);
}

static int
s_ws_writeable(s_conn *conn)
{
    if (!conn->qlen || conn->dropping)
        return 0;
    s_msg *m = conn->queue[conn->qhead];
    if (lws_write(conn->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int) m->len)
        return -1;
    conn->qhead = (conn->qhead + 1) % SM__WS_QUEUE_MSGS_MAX;
    conn->qlen--;
    conn->qbytes -= m->len;
    s_msg_unref(&m);
    if (conn->qlen)
        lws_callback_on_writable(conn->wsi);
    return 0;
}

static int
s_ws_receive(sm_web *self, s_conn *conn, size_t len)
{
    conn->rx_bytes += len;
    if (conn->rx_bytes > SM_WS_MESSAGE_BYTES_MAX) {
        lws_close_reason(conn->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *) "too large", 9);
        sm_log_info("web: websocket client %s closed: message too large", conn->client);
        (void) self;
        return -1;
    }
    if (lws_is_final_fragment(conn->wsi) && !lws_remaining_packet_payload(conn->wsi))
        conn->rx_bytes = 0;    /* messages from phones carry nothing we need */
    return 0;
}

/* ---- wake-ups from the core ------------------------------------------ */

static void
s_refresh(sm_web *self)
{
    char *delta = NULL;
    size_t delta_len = 0;
    int rc = sm_api_refresh(self->api, s_now_ms(), &delta, &delta_len);
    if (rc < 0) {
        sm_log_error("web: rebuilding the stock snapshot failed: %s", sm_strerror(rc));
        return;
    }
    if (rc == 0 && self->snapshot)
        return;
    const char *snap = NULL;
    size_t snap_len = 0;
    if (sm_api_snapshot_message(self->api, &snap, &snap_len) == 0) {
        s_msg *m = s_msg_new(snap, snap_len);
        if (m) {
            s_msg_unref(&self->snapshot);
            self->snapshot = m;
        }
    }
    if (delta) {
        s_msg *m = s_msg_new(delta, delta_len);
        free(delta);
        if (m) {
            for (s_conn *c = self->ws_head; c; c = c->next)
                s_ws_enqueue(self, c, m);
            s_msg_unref(&m);
        }
    }
}

static size_t
s_collect_answers(sm_web *self)
{
    size_t n = 0;
    sm_core_req *write;
    while ((write = sm_core_done(self->core)) != NULL) {
        assert(self->pending > 0);
        self->pending--;
        s_conn *conn = write->tag;
        if (!conn || !conn->http) {
            sm_http_resp lost = { 0 };
            sm_api_finish(self->api, write, s_now_ms(), &lost);
            sm_http_resp_clear(&lost);
            continue;
        }
        conn->http->pending = NULL;
        sm_api_finish(self->api, write, s_now_ms(), &conn->http->resp);
        s_respond(self, conn);
        n++;
    }
    return n;
}

static void
s_refresh_later(lws_sorted_usec_list_t *sul)
{
    sm_web *self = lws_container_of(sul, sm_web, refresh_sul);
    s_refresh(self);
}

/* ---- the protocol callback ------------------------------------------- */

static int
s_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
           void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    sm_web *self = ctx ? lws_context_user(ctx) : NULL;
    s_conn *conn = user;
    if (!self)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    switch (reason) {
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLOSED:
        /* A connection that failed before it had session data has none. */
        if (!conn)
            return reason == LWS_CALLBACK_HTTP || reason == LWS_CALLBACK_ESTABLISHED
                   ? -1 : 0;
        break;
    default:
        break;
    }
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        conn->wsi = wsi;
        return s_http_start(self, conn, in);
    case LWS_CALLBACK_HTTP_BODY:
        return s_http_body(self, conn, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (conn->http && !conn->http->has_resp && !conn->http->pending)
            s_dispatch(self, conn);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return s_http_writeable(self, conn);
    case LWS_CALLBACK_CLOSED_HTTP:
        s_http_free(conn);
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        conn->wsi = wsi;
        return s_ws_established(self, conn);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return s_ws_writeable(conn);
    case LWS_CALLBACK_RECEIVE:
        return s_ws_receive(self, conn, len);
    case LWS_CALLBACK_CLOSED:
        s_ws_closed(self, conn);
        s_http_free(conn);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Tills first: with answers to send and phones to update, the
           rebuild and fan-out wait for the next loop pass, so an answer is
           not written after thousands of websocket messages. */
        if (s_collect_answers(self) > 0 && self->ws_count > 0)
            lws_sul_schedule(ctx, 0, &self->refresh_sul, s_refresh_later, 1000);
        else
            s_refresh(self);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- life cycle ------------------------------------------------------- */

static void
s_lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    sm_log(level == LLL_ERR ? SM_LOG_WARN : SM_LOG_DEBUG, "lws: %.*s", (int) n, line);
}

/*  The API's view of the mesh peers: the core's table.                      */
static size_t
s_core_peers(void *core, sm_gossip_peer *out, size_t cap)
{
    return sm_core_peers(core, out, cap);
}

sm_web *
sm_web_new(const sm_web_opts *opts, int *err)
{
    assert(opts && opts->config && opts->ledger && opts->core && opts->api_token && err);
    sm_web *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->opts = *opts;
    snprintf(self->token_header, sizeof self->token_header, "Bearer %s", opts->api_token);
    sm_api_opts aopts = {
        .ledger = opts->ledger, .node = opts->node, .metrics = opts->metrics,
        .peers = s_core_peers, .peers_arg = opts->core,
        .hold_ttl_s = opts->config->hold_ttl_s, .holds_per_min = opts->config->holds_per_min,
        .hold_limits = { opts->config->hold_max_units, opts->config->hold_max_per_sku,
                         opts->config->hold_per_device, opts->config->hold_per_address },
    };
    if (!(self->api = sm_api_new(&aopts, err)))
        goto fail;
    if (!(self->core = sm_core_client_new(opts->core, err)))
        goto fail;
    s_refresh(self);
    if (!self->snapshot) {
        *err = SM_EIO;
        goto fail;
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, s_lws_log);
    self->protocols[0] = (struct lws_protocols) {
        .name = "stallmesh", .callback = s_callback,
        .per_session_data_size = sizeof(s_conn),
        .rx_buffer_size = SM_WS_MESSAGE_BYTES_MAX,
        /* Without it lws caps each send at rx_buffer_size: a 50 KB stock
           snapshot would take thirteen trips round the event loop. */
        .tx_packet_size = SM__HTTP_CHUNK_BYTES,
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = opts->config->http_port;
    info.iface = strcmp(opts->config->http_host, "0.0.0.0") == 0
                 || opts->config->http_host[0] == 0 ? NULL : opts->config->http_host;
    info.protocols = self->protocols;
    info.user = self;
    info.max_http_header_data = 8192;
    info.max_http_header_pool = 1024;
    info.count_threads = 1;
    info.timeout_secs = 20;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6 * (info.iface != NULL
                   && strchr(info.iface, ':') == NULL);
    self->ctx = lws_create_context(&info);
    if (!self->ctx) {
        sm_log_error("web: cannot listen on %s:%u (port in use, or address not on this host)",
                     opts->config->http_host, (unsigned) opts->config->http_port);
        *err = SM_EIO;
        goto fail;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(self->ctx, "default");
    self->port = vh ? lws_get_vhost_listen_port(vh) : opts->config->http_port;
    return self;
fail:
    sm_web_destroy(&self);
    return NULL;
}

int
sm_web_port(sm_web *self)
{
    assert(self);
    return self->port;
}

int
sm_web_run(sm_web *self)
{
    assert(self);
    while (!atomic_load(&self->stop)) {
        if (lws_service(self->ctx, 0) < 0)
            break;
    }
    /* Answer the writes the core still has: they may be committed. */
    uint64_t deadline = s_now_ms() + SM__DRAIN_MS;
    while (self->pending > 0 && s_now_ms() < deadline) {
        s_collect_answers(self);
        if (lws_service(self->ctx, 0) < 0)
            break;
    }
    return 0;
}

void
sm_web_stop(sm_web *self)
{
    assert(self);
    atomic_store(&self->stop, true);
    lws_cancel_service(self->ctx);
}

void
sm_web_wake(void *arg)
{
    sm_web *self = arg;
    if (self && self->ctx)
        lws_cancel_service(self->ctx);
}

void
sm_web_destroy(sm_web **self_p)
{
    assert(self_p);
    sm_web *self = *self_p;
    if (!self)
        return;
    if (self->ctx) {
        lws_sul_cancel(&self->refresh_sul);
        lws_context_destroy(self->ctx);
    }
    /* Connections are closed; answers still owed are rendered and dropped. */
    if (self->core) {
        for (int i = 0; i < 100 && self->pending > 0; i++) {
            sm_core_req *write = sm_core_done(self->core);
            if (!write) {
                struct timespec ts = { 0, 10000000 };
                nanosleep(&ts, NULL);
                continue;
            }
            self->pending--;
            sm_http_resp lost = { 0 };
            sm_api_finish(self->api, write, s_now_ms(), &lost);
            sm_http_resp_clear(&lost);
        }
    }
    s_msg_unref(&self->snapshot);
    sm_core_client_destroy(&self->core);
    sm_api_destroy(&self->api);
    free(self);
    *self_p = NULL;
}
