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
    and each delta are built once and queued to every client).

    Tills before phones: an answer from the core is written before the
    snapshot is rebuilt (the rebuild waits for the next loop pass), and a
    delta reaches the phones in slices of clients, one slice a loop pass:
    SM__FANOUT_SLICE, or SM__FANOUT_SLICE_BUSY while a write waits in the
    core, so a till's answer waits for at most a small slice of websocket
    writes, not for every phone (section "fan-out").  The last
    SM__FANOUT_RING deltas are kept and each client owes the next one it
    should get (bcast_next), so a delta arriving mid-walk never overtakes an
    older one on any client; a client further behind than the ring is
    dropped, as one whose queue is full always was (the ring holds as many
    deltas as a client's queue), and reconnects for a snapshot.

    Slow and abusive clients: every connection is counted against its
    address from accept, with deadlines for a request's headers and body
    (section "slow clients" below); websocket frame headers are checked as
    they are read (section "websocket frames").  The loop runs on libev with
    epoll: lws's own loop polls every open connection on each pass, which
    with thousands of slow clients costs more than serving the few ready.  */
#include "web.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ev.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "assets.h"
#include "qr.h"
#include "logger.h"
#include "wsframe.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define SM__WS_QUEUE_MSGS_MAX   64u      /* messages queued to one client */
#define SM__HTTP_CHUNK_BYTES    65536u   /* body bytes a writeable callback sends */
#define SM__HTTP_HEADERS_BYTES  2048u    /* an answer's headers */
#define SM__HTTP_INLINE_BYTES   4096u    /* a body this small goes in its headers' write */
#define SM__ADDR_BYTES          64u
#define SM__ADDR_SLOTS          4096u    /* distinct client addresses with connections */
#define SM__FD_RESERVE          256u     /* descriptors kept for the store, mesh and logs */
#define SM__FDS_TRACKED_MAX     (1u << 20) /* descriptors the accounting table covers */
#define SM__TICK_MS             250u     /* deadlines checked, log counts flushed, this often */
#define SM__DRAIN_MS            3000u    /* at stop: time to answer writes in flight */
#define SM__FANOUT_SLICE        64u      /* websocket clients handed a delta per loop pass */
#define SM__FANOUT_SLICE_BUSY   16u      /* ... while a till waits for a write's answer */
#define SM__SNAPSHOT_CLOCK_MS   250u     /* the snapshot's clock is at most this old when sent */
#define SM__FANOUT_RING         SM__WS_QUEUE_MSGS_MAX /* deltas kept for clients not yet reached */

typedef struct {
    atomic_int refs;
    size_t len;
    unsigned char buf[];       /* LWS_PRE bytes, then the message */
} s_msg;

typedef struct {
    sm_http_method method;
    char if_none_match[80];
    bool has_if_none_match;
    bool authorized;
    sm_scope scope;            /* of the bearer token, if authorized */
    bool secure;               /* TLS, or from loopback */
    const char *csp;           /* a page's Content-Security-Policy; static */
    bool expect_body;
    char *body;
    size_t body_len, body_cap;
    sm_http_resp resp;
    bool has_resp;             /* resp is ready to send */
    bool headers_sent;
    size_t sent;               /* body bytes sent */
    sm_core_req *pending;      /* a write in the core */
    /* Last, and left unzeroed when a request starts (4 KB of its 4.4):
       each is set as a string before anything reads it. */
    char path[SM_HTTP_URI_BYTES_MAX + 1];
    char query[SM_HTTP_URI_BYTES_MAX + 1];
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
    sm_utf8 utf8;              /* of the text message being received */
    bool dropping;
    uint64_t bcast_next;       /* the next delta (sm_web.bcast seq) it is owed */
    bool close_after;          /* closed once its answer is out (pipelined) */
} s_conn;

typedef struct {
    char addr[SM__ADDR_BYTES];
    uint32_t count;            /* connections open */
    uint32_t requests;         /* of them, with a request not yet complete */
} s_addr_slot;

/*  One accepted connection's accounting, indexed by its descriptor (the
    connection's wsi points at it through lws's opaque user data).          */
typedef struct {
    struct lws *wsi;           /* once adopted; NULL before */
    uint32_t slot_plus1;       /* index in addrs + 1; 0: not counted */
    bool in_request;           /* waiting for a request's headers or body */
    bool in_body;              /* ... its headers are in */
    bool closing;              /* past its deadline, being closed */
    uint64_t deadline_ms;      /* of the part it waits for (monotonic) */
    sm_wsframe frames;         /* a websocket client's frames, as read */
    char peer[SM__ADDR_BYTES]; /* its peer's address as text once a request
                                  asked for it ("" before): each request
                                  would cost a getpeername and a format */
} s_fdrec;

struct sm_web {
    sm_web_opts opts;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    sm_api *api;
    sm_core_client *core;
    atomic_bool stop;
    atomic_bool woken;         /* the core woke the loop (sm_web_wake) */
    atomic_uint_fast64_t turns;   /* event loop iterations: the watchdog's proof of life */
    sm_asset poster_svg;          /* /poster.svg once sm_web_set_poster ran; data owned */
    char poster_etag[24];
    s_conn *ws_head;           /* websocket clients */
    size_t ws_count;
    size_t pending;            /* writes in the core */
    s_msg *snapshot;           /* the current snapshot message */
    uint64_t snapshot_ms;      /* when its "now_ms" was written */
    lws_sorted_usec_list_t refresh_sul; /* a deferred snapshot rebuild */
    bool refresh_due;          /* a rebuild is owed (refresh_sul scheduled, or
                                  waiting for a reader or the walk's end) */
    s_msg *bcast[SM__FANOUT_RING]; /* the last deltas, delta seq % ring */
    uint64_t bcast_next;       /* seq of the next delta */
    s_conn *fan_cursor;        /* the fan-out walk's next client; NULL: at the end */
    uint64_t fan_walk_seq;     /* bcast_next when the walk started */
    bool fan_active;           /* a walk is under way */
    bool fan_more;             /* ... its next slice is due at the next wake-up */
    int port;
    int tls_port;              /* the HTTPS port bound; 0 = none */
    s_addr_slot addrs[SM__ADDR_SLOTS];
    s_fdrec *fdrecs;           /* one per possible descriptor */
    size_t fdrecs_len;
    size_t conns_open;         /* accepted, not yet destroyed */
    size_t conns_max;          /* SM_HTTP_CLIENTS_MAX or what descriptors allow */
    size_t fd_end;             /* records at and past this index are unused */
    lws_sorted_usec_list_t tick_sul;
    struct ev_loop *loop;      /* libev on epoll; NULL: lws's own poll loop */
};

static void s_guard_watch(sm_web *self, int fd, bool on);
static void s_refresh(sm_web *self);
static void s_snapshot_clock(sm_web *self);

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

/* Per-address connection counts: a small open-addressing table. */
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

/* ---- TLS, authentication and the pages' security headers ------------ */

static void s_http_free(s_conn *conn);

/*  From this machine: loopback, IPv4 (also as mapped IPv6) or IPv6.        */
static bool
s_is_loopback(const char *client)
{
    return strncmp(client, "127.", 4) == 0 || strcmp(client, "::1") == 0
           || strncmp(client, "::ffff:127.", 11) == 0;
}

/*  Read the bearer token (if any) through auth.c into the request's
    authorized/scope, and whether the connection is secure.  True when the
    address is over its failed authentications: h->resp is then the 429.
    The token is wiped from the stack once checked and never logged.        */
static bool
s_authenticate(sm_web *self, s_conn *conn)
{
    s_http *h = conn->http;
    h->secure = lws_is_ssl(conn->wsi) || s_is_loopback(conn->client);
    char auth[256];
    int n = lws_hdr_copy(conn->wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0 || !self->opts.auth)
        return false;
    const char *token = strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : auth;
    sm_scope scope = SM_SCOPE_NONE;
    int rc = sm_auth_check(self->opts.auth, token, conn->client, s_now_ms(), &scope, NULL);
    explicit_bzero(auth, sizeof auth);
    if (rc == 0) {
        h->authorized = true;
        h->scope = scope;
        return false;
    }
    if (rc != SM_EAUTHLIMIT)
        return false;          /* a wrong token: as if none was sent (public routes work) */
    int wait_s = sm_auth_limited(self->opts.auth, conn->client, s_now_ms());
    sm_api_error(&h->resp, 429, "too_many_failures",
                 "too many failed authentications from this address: wait and retry");
    h->resp.retry_after_s = wait_s > 0 ? wait_s : 1;
    return true;
}

/*  [http] redirect: a plain-HTTP request is sent to the same path on the
    HTTPS port (308 keeps the method).  True if it was.                     */
static bool
s_redirect_to_https(sm_web *self, s_conn *conn)
{
    if (!self->opts.config->http_redirect || !self->tls_port || lws_is_ssl(conn->wsi))
        return false;
    char host[300] = "";
    if (lws_hdr_copy(conn->wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
        snprintf(host, sizeof host, "%s", self->opts.config->tls_host);
    /* The host without its port; only name and address characters, so
       nothing can be smuggled into the Location header. */
    char *end = host[0] == '[' ? strchr(host, ']') : strrchr(host, ':');
    if (host[0] == '[' && end)
        end[1] = 0;
    else if (end)
        *end = 0;
    for (const char *c = host; *c; c++)
        if (!(isalnum((unsigned char) *c) || strchr(".-:[]", *c)))
            return false;
    if (!host[0] || strcmp(host, "0.0.0.0") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    char loc[SM_HTTP_URI_BYTES_MAX * 2 + 400];
    int len = snprintf(loc, sizeof loc, "https://%s:%d%s%s%s", host, self->tls_port,
                       conn->http->path, conn->http->query[0] ? "?" : "",
                       conn->http->query);
    if (len < 0 || (size_t) len >= sizeof loc)
        return false;
    unsigned char buf[LWS_PRE + sizeof loc + 512];
    unsigned char *p = buf + LWS_PRE, *e = buf + sizeof buf - 1;
    if (self->opts.metrics)
        sm_metrics_http(self->opts.metrics, 308);
    if (lws_http_redirect(conn->wsi, 308, (const unsigned char *) loc, len, &p, e) < 0)
        sm_log_debug("web: the redirect to HTTPS could not be written");
    s_http_free(conn);
    return true;
}

static int
s_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
         unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *) name,
                                       (const unsigned char *) value,
                                       (int) strlen(value), p, end);
}

/*  On every answer: no Referer leaves a page; on pages: their
    Content-Security-Policy (only their own inline script and style, by
    hash, made by deploy/embed.sh; no framing).                             */
static int
s_security_headers(struct lws *wsi, const s_http *h, unsigned char **p, unsigned char *end)
{
    if (s_header(wsi, "referrer-policy:", "no-referrer", p, end))
        return -1;
    if (h->csp && (s_header(wsi, "content-security-policy:", h->csp, p, end)
                   || s_header(wsi, "x-frame-options:", "DENY", p, end)))
        return -1;
    return 0;
}

/*  Whether HOST:PORT can be bound now, as lws will bind it (SO_REUSEADDR):
    0, or the errno of the first of its addresses that cannot be.  lws's own
    failure to listen looks the same as a missing event-loop plugin, so the
    node asks first and can say which it is.                                 */
static int
s_bind_probe(const char *host, unsigned port)
{
    if (port == 0)
        return 0;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    const char *node = host[0] == 0 || strcmp(host, "0.0.0.0") == 0 ? NULL : host;
    struct addrinfo *res = NULL;
    if (getaddrinfo(node, service, &hints, &res) != 0 || res == NULL)
        return EADDRNOTAVAIL;
    int rc = 0;
    for (struct addrinfo *a = res; a && rc == 0; a = a->ai_next) {
        if (node == NULL && a->ai_family != AF_INET)
            continue;
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0)
            rc = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

/*  The second listener, for HTTPS: the same protocol and callback as the
    plain one, with the certificate's files.  0 or -1 (logged).              */
static int
s_tls_vhost(sm_web *self, const struct lws_context_creation_info *plain)
{
    const sm_config *cfg = self->opts.config;
    struct lws_context_creation_info info = *plain;
    info.vhost_name = "tls";
    info.port = cfg->tls_port;
    info.iface = strcmp(cfg->tls_host, "0.0.0.0") == 0 || cfg->tls_host[0] == 0
                 ? NULL : cfg->tls_host;
    /* lws turns TLS on for a vhost only when its own options say so; the
       rest (the event loop's) as the plain one has them. */
    info.options = (plain->options & ~(uint64_t) LWS_SERVER_OPTION_DISABLE_IPV6)
                   | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT
                   | LWS_SERVER_OPTION_DISABLE_IPV6 * (info.iface != NULL
                                                      && strchr(info.iface, ':') == NULL);
    /* HTTP/1.1 only: the answers are written the HTTP/1 way (whole header
       blocks, then the body); a browser offered h2 would pick it. */
    info.alpn = "http/1.1";
    info.ssl_cert_filepath = self->opts.tls_cert;
    info.ssl_private_key_filepath = self->opts.tls_key;
    struct lws_vhost *vh = lws_create_vhost(self->ctx, &info);
    if (!vh) {
        sm_log_error("web: cannot serve HTTPS on %s:%u (port in use, address not on "
                     "this host, or the certificate was refused)", cfg->tls_host,
                     (unsigned) cfg->tls_port);
        return -1;
    }
    self->tls_port = lws_get_vhost_listen_port(vh);
    return 0;
}

/* ---- slow clients: connection accounting ------------------------------ */

/*  Every accepted connection is counted against its address from accept to
    destruction (LWS_CALLBACK_FILTER_NETWORK_CONNECTION refuses over the
    limits before lws allocates anything for it; LWS_CALLBACK_WSI_DESTROY
    releases).  A connection also counts as "in a request" from accept, or
    from the answer to its previous request, until its request is complete
    (headers and body in): that is the part a client controls and the part
    that holds one of the SM_HTTP_HEADER_POOL header tables.  Its own wsi
    timer closes it when the headers take longer than headers_timeout_s or
    the body longer than body_timeout_s: deadlines, not idle timeouts, so a
    client sending a byte a second gains nothing.  Every SM__TICK_MS one
    sweep of the records closes the connections past their deadline (lws's
    own timeouts do not serve: its header-table timeout restarts with every
    table, its body timeout with every chunk; and a timer per connection
    would cost an insertion in lws's sorted timer list each).               */

static uint64_t
s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/*  The accounting key of a peer: an IPv4 address (IPv4-mapped IPv6 too) as
    dotted text; an IPv6 address by its /64, since a host is usually given a
    whole /64 and could take a fresh address for each connection.            */
static void
s_addr_key(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    char text[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
        snprintf(out, cap, "%s", text);
    } else if (sa->ss_family == AF_INET6) {
        struct in6_addr a = ((const struct sockaddr_in6 *) sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&a)) {
            inet_ntop(AF_INET, &a.s6_addr[12], text, sizeof text);
            snprintf(out, cap, "%s", text);
            return;
        }
        memset(&a.s6_addr[8], 0, 8);
        inet_ntop(AF_INET6, &a, text, sizeof text);
        snprintf(out, cap, "%s/64", text);
    } else {
        snprintf(out, cap, "unknown");
    }
}

/* ---- clients behind a trusted reverse proxy --------------------------- */

/*  Whether address `sa` is one of http.trusted_proxies (an IPv4-mapped IPv6
    peer compares as its IPv4 address).                                      */
static bool
s_proxy_trusted_sa(const sm_web *self, const struct sockaddr_storage *sa)
{
    const sm_config *cfg = self->opts.config;
    unsigned char peer[16];
    int fam = sa->ss_family;
    if (fam == AF_INET) {
        memcpy(peer, &((const struct sockaddr_in *) sa)->sin_addr, 4);
    } else if (fam == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            fam = AF_INET;
            memcpy(peer, &a->s6_addr[12], 4);
        } else {
            memcpy(peer, a, 16);
        }
    } else {
        return false;
    }
    for (uint32_t i = 0; i < cfg->trusted_proxy_count; i++) {
        unsigned char want[16];
        if (inet_pton(fam, cfg->trusted_proxies[i], want) == 1
            && memcmp(want, peer, fam == AF_INET ? 4 : 16) == 0)
            return true;
    }
    return false;
}

static s_fdrec *
s_conn_rec(struct lws *wsi)
{
    return lws_get_opaque_user_data(wsi);
}

/*  The client address a request's limits key on, into out[cap]: the
    peer's own, or, when the peer is a trusted proxy (http.trusted_proxies),
    the last address of its X-Forwarded-For: the one the proxy appended
    itself (nginx's $proxy_add_x_forwarded_for).  Addresses before it are
    the client's own word and are never used; a header that does not end in
    an address (or none) leaves the proxy's.                                  */
static void
s_client_addr(sm_web *self, struct lws *wsi, char *out, size_t cap)
{
    s_fdrec *rec = s_conn_rec(wsi);
    if (rec && rec->peer[0] && cap == sizeof rec->peer) {
        memcpy(out, rec->peer, sizeof rec->peer);
    } else if (lws_get_peer_simple(wsi, out, cap) && rec && cap == sizeof rec->peer) {
        memcpy(rec->peer, out, sizeof rec->peer);
    }
    if (self->opts.config->trusted_proxy_count == 0)
        return;
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *) &sa, &len) != 0
        || !s_proxy_trusted_sa(self, &sa))
        return;
    char xff[256];
    if (lws_hdr_copy(wsi, xff, sizeof xff, WSI_TOKEN_X_FORWARDED_FOR) <= 0)
        return;
    const char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ' || *last == '\t')
        last++;
    char addr[INET6_ADDRSTRLEN];
    size_t n = strcspn(last, " \t");
    unsigned char bin[16];
    if (n == 0 || n >= sizeof addr)
        return;
    memcpy(addr, last, n);
    addr[n] = '\0';
    if (inet_pton(AF_INET, addr, bin) != 1 && inet_pton(AF_INET6, addr, bin) != 1)
        return;
    snprintf(out, cap, "%s", addr);
}

/*  Count a refusal and say so, once per address every SM_LOG_THROTTLE_MS. */
static void
s_conn_refuse_log(sm_web *self, const char *addr, sm_metric m, const char *why)
{
    if (self->opts.metrics)
        sm_metrics_add(self->opts.metrics, m, 1);
    char kind[SM__ADDR_BYTES + 40];
    snprintf(kind, sizeof kind, "web: connections from %s refused", addr);
    sm_log_throttled(SM_LOG_WARN, kind, "web: connection from %s refused: %s", addr, why);
}

static void
s_conn_gauge(sm_web *self)
{
    if (self->opts.metrics)
        sm_metrics_set(self->opts.metrics, SM_GAUGE_HTTP_CONNECTIONS, (int64_t) self->conns_open);
}

/*  Uncount a connection and clear its record; safe on a clear record.      */
static void
s_conn_release(sm_web *self, s_fdrec *rec)
{
    if (rec->slot_plus1) {
        assert(rec->slot_plus1 <= SM__ADDR_SLOTS);
        s_addr_slot *slot = &self->addrs[rec->slot_plus1 - 1];
        assert(slot->count > 0 && self->conns_open > 0);
        slot->count--;
        if (rec->in_request) {
            assert(slot->requests > 0);
            slot->requests--;
        }
        self->conns_open--;
    }
    memset(rec, 0, sizeof *rec);
}

/*  LWS_CALLBACK_FILTER_NETWORK_CONNECTION: 0 admits the connection just
    accepted, -1 refuses it (lws closes the socket at once).                 */
static int
s_conn_filter(sm_web *self, const struct lws_filter_network_conn_args *filt)
{
    const sm_config *cfg = self->opts.config;
    char addr[SM__ADDR_BYTES];
    char why[128];
    s_addr_key(&filt->cli_addr, addr, sizeof addr);
    int fd = (int) filt->accept_fd;
    if (fd < 0 || (size_t) fd >= self->fdrecs_len || self->conns_open >= self->conns_max) {
        snprintf(why, sizeof why, "the node has %zu connections open, all it serves",
                 self->conns_open);
        s_conn_refuse_log(self, addr, SM_METRIC_HTTP_REFUSED_FULL, why);
        return -1;
    }
    s_fdrec *rec = &self->fdrecs[fd];
    s_conn_release(self, rec);     /* left by a connection whose adoption failed */
    s_addr_slot *slot = s_addr_slot_for(self, addr, true);
    if (!slot) {
        s_conn_refuse_log(self, addr, SM_METRIC_HTTP_REFUSED_FULL,
                          "connections from too many addresses at once");
        return -1;
    }
    /* A trusted proxy carries many viewers' connections: it is held to the
       node's total only (and limits its own clients, deploy/nginx). */
    bool proxy = s_proxy_trusted_sa(self, &filt->cli_addr);
    if (!proxy && slot->count >= cfg->clients_per_addr_max) {
        snprintf(why, sizeof why, "%u connections open from it (http.clients_per_addr_max)",
                 slot->count);
        s_conn_refuse_log(self, addr, SM_METRIC_HTTP_REFUSED_ADDR, why);
        return -1;
    }
    if (!proxy && slot->requests >= cfg->requests_per_addr_max) {
        snprintf(why, sizeof why, "%u requests from it still unfinished "
                 "(http.requests_per_addr_max)", slot->requests);
        s_conn_refuse_log(self, addr, SM_METRIC_HTTP_REFUSED_REQUESTS, why);
        return -1;
    }
    slot->count++;
    slot->requests++;
    self->conns_open++;
    if ((size_t) fd >= self->fd_end)
        self->fd_end = (size_t) fd + 1;
    rec->slot_plus1 = (uint32_t) (slot - self->addrs) + 1;
    rec->in_request = true;
    rec->deadline_ms = s_mono_ms() + (uint64_t) cfg->headers_timeout_s * 1000u;
    s_conn_gauge(self);
    return 0;
}

/*  LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED: tie the record made at
    accept to the connection's wsi (the headers' clock runs since accept).  */
static void
s_conn_adopted(sm_web *self, struct lws *wsi)
{
    int fd = (int) lws_get_socket_fd(wsi);
    if (fd < 0 || (size_t) fd >= self->fdrecs_len || !self->fdrecs[fd].slot_plus1)
        return;
    self->fdrecs[fd].wsi = wsi;
    lws_set_opaque_user_data(wsi, &self->fdrecs[fd]);
}

/*  The request's headers are in and a body is to come: the body's clock.  */
static void
s_conn_body_starts(sm_web *self, struct lws *wsi)
{
    s_fdrec *rec = s_conn_rec(wsi);
    if (!rec || !rec->in_request)
        return;
    rec->in_body = true;
    rec->deadline_ms = s_mono_ms() + (uint64_t) self->opts.config->body_timeout_s * 1000u;
}

/*  The request is complete (or became a websocket): no longer unfinished. */
static void
s_conn_request_done(sm_web *self, struct lws *wsi)
{
    s_fdrec *rec = s_conn_rec(wsi);
    if (!rec || !rec->in_request)
        return;
    s_addr_slot *slot = &self->addrs[rec->slot_plus1 - 1];
    assert(slot->requests > 0);
    slot->requests--;
    rec->in_request = false;
    rec->in_body = false;
}

/*  The answer is out and the connection stays open for another request:
    the headers' clock again.  Called before lws_http_transaction_completed,
    which may already start on a pipelined request.                          */
static void
s_conn_next_request(sm_web *self, struct lws *wsi)
{
    s_fdrec *rec = s_conn_rec(wsi);
    if (!rec || rec->in_request)
        return;
    self->addrs[rec->slot_plus1 - 1].requests++;
    rec->in_request = true;
    rec->in_body = false;
    rec->deadline_ms = s_mono_ms() + (uint64_t) self->opts.config->headers_timeout_s * 1000u;
}

/*  Close the connections past their deadline (one pass over the records in
    use; lws closes them on its next pass).                                  */
static void
s_conn_sweep(sm_web *self)
{
    const sm_config *cfg = self->opts.config;
    uint64_t now = s_mono_ms();
    size_t end = 0;
    for (size_t fd = 0; fd < self->fd_end; fd++) {
        s_fdrec *rec = &self->fdrecs[fd];
        if (!rec->slot_plus1)
            continue;
        end = fd + 1;
        if (!rec->wsi || !rec->in_request || rec->closing || now < rec->deadline_ms)
            continue;
        rec->closing = true;
        const char *addr = self->addrs[rec->slot_plus1 - 1].addr;
        if (self->opts.metrics)
            sm_metrics_add(self->opts.metrics, rec->in_body ? SM_METRIC_HTTP_BODY_TIMEOUT
                                                            : SM_METRIC_HTTP_HEADERS_TIMEOUT, 1);
        char kind[SM__ADDR_BYTES + 40];
        snprintf(kind, sizeof kind, "web: slow clients at %s dropped", addr);
        sm_log_throttled(SM_LOG_WARN, kind, "web: client %s dropped: its request's %s took "
                         "longer than %u s (http.%s)", addr, rec->in_body ? "body" : "headers",
                         rec->in_body ? cfg->body_timeout_s : cfg->headers_timeout_s,
                         rec->in_body ? "body_timeout_s" : "headers_timeout_s");
        lws_set_timeout(rec->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    self->fd_end = end;
}

/*  LWS_CALLBACK_WSI_DESTROY (the socket is closed by now).                  */
static void
s_conn_destroyed(sm_web *self, struct lws *wsi)
{
    s_fdrec *rec = s_conn_rec(wsi);
    if (!rec)
        return;
    s_guard_watch(self, (int) (rec - self->fdrecs), false);
    s_conn_release(self, rec);
    lws_set_opaque_user_data(wsi, NULL);
    s_conn_gauge(self);
}

/*  Raise the soft descriptor limit towards the hard one (every connection
    is a descriptor) and size the accounting table by the result.           */
static int
s_conns_init(sm_web *self)
{
    const rlim_t wanted = SM_HTTP_CLIENTS_MAX + 16u * SM__FD_RESERVE;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        rl.rlim_cur = 1024;
    } else if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < wanted) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > wanted ? wanted : rl.rlim_max;
        if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    size_t fds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > SM__FDS_TRACKED_MAX
                 ? SM__FDS_TRACKED_MAX : (size_t) rl.rlim_cur;
    self->fdrecs = calloc(fds, sizeof *self->fdrecs);
    if (!self->fdrecs)
        return SM_ENOMEM;
    self->fdrecs_len = fds;
    size_t usable = fds > 2 * SM__FD_RESERVE ? fds - SM__FD_RESERVE : fds / 2;
    self->conns_max = usable < SM_HTTP_CLIENTS_MAX ? usable : SM_HTTP_CLIENTS_MAX;
    if (self->conns_max < SM_HTTP_CLIENTS_MAX)
        sm_log_info("web: serving at most %zu connections (the descriptor limit is %zu; "
                    "raise it with ulimit -n or LimitNOFILE=)", self->conns_max, fds);
    return 0;
}

/*  Every SM__TICK_MS: close connections past their deadline, write the
    counts of throttled log lines that are due.                              */
static void s_refresh_soon(sm_web *self);

static void
s_tick(lws_sorted_usec_list_t *sul)
{
    sm_web *self = lws_container_of(sul, sm_web, tick_sul);
    s_conn_sweep(self);
    sm_log_throttle_flush();
    if (self->ws_count > 0 && sm_api_clock_due(self->api, s_now_ms()))
        s_refresh_soon(self);          /* a drop opened or closed by the clock */
    lws_sul_schedule(self->ctx, 0, &self->tick_sul, s_tick,
                     (lws_usec_t) SM__TICK_MS * LWS_US_PER_MS);
}

/* ---- websocket frames checked as lws reads them ------------------------ */

/*  lws 4.1 (Debian 12) does not refuse a client's unmasked frame (RFC 6455
    5.1 says the server MUST close the connection) and tells its user a
    frame's length only once its payload arrives, so a header claiming 2^62
    bytes holds the connection open.  The node therefore looks at the bytes
    lws reads: this file defines recv(), to which every recv() call in the
    process resolves (ELF symbol interposition: the executable's definition
    comes before the C library's; lws reads its sockets with recv()).  It
    is recvfrom() with no address, as the C library's recv() is, and for
    websocket clients' descriptors only it runs the bytes read through
    sm_wsframe_scan.  A bad header fails the call with ECONNRESET, which lws
    handles as the client resetting the connection: it is closed at once,
    counted and logged (throttled).

    Checking starts when the websocket is established.  A client that sends
    frames before it has the server's handshake answer (RFC 6455 4.1 says it
    must wait) may have had their first bytes read with its request; the
    check then starts inside a frame, reads nonsense and closes it.

    Other threads (the mesh's ZeroMQ) call recv() on their own descriptors,
    which are never marked: the marks are atomic, set and cleared by the web
    thread while the descriptor is its connection's (cleared before lws
    closes it), and the array of marks lives as long as the process.        */

static struct {
    _Atomic(unsigned char) *watched;  /* per descriptor: a websocket client's */
    _Atomic(size_t) len;
    sm_web *web;               /* the server whose clients they are */
} s_guard;

/*  Mark fd as a websocket client's (on) or not (off).  Web thread.         */
static void
s_guard_watch(sm_web *self, int fd, bool on)
{
    if (s_guard.web != self || fd < 0 || (size_t) fd >= atomic_load(&s_guard.len))
        return;
    if (on)
        sm_wsframe_init(&self->fdrecs[fd].frames);
    atomic_store_explicit(&s_guard.watched[fd], on ? 1 : 0, memory_order_relaxed);
}

/*  The bytes just read from websocket client fd: 0, or an error after which
    the connection is closed (counted, logged, no longer watched).          */
static int
s_guard_bytes(int fd, const void *buf, size_t n)
{
    sm_web *self = s_guard.web;
    s_fdrec *rec = &self->fdrecs[fd];
    int rc = sm_wsframe_scan(&rec->frames, buf, n, SM_WS_MESSAGE_BYTES_MAX);
    if (rc == 0)
        return 0;
    atomic_store_explicit(&s_guard.watched[fd], 0, memory_order_relaxed);
    if (self->opts.metrics)
        sm_metrics_add(self->opts.metrics, SM_METRIC_WS_PROTOCOL_ERRORS, 1);
    const char *addr = rec->slot_plus1 ? self->addrs[rec->slot_plus1 - 1].addr : "?";
    char kind[SM__ADDR_BYTES + 48];
    snprintf(kind, sizeof kind, "web: websocket protocol errors from %s", addr);
    sm_log_throttled(SM_LOG_WARN, kind, "web: websocket client %s closed: %s", addr,
                     sm_strerror(rc));
    return rc;
}

ssize_t
recv(int fd, void *buf, size_t len, int flags)
{
    ssize_t n = recvfrom(fd, buf, len, flags, NULL, NULL);
    if (n > 0 && !(flags & MSG_PEEK) && fd >= 0
        && (size_t) fd < atomic_load_explicit(&s_guard.len, memory_order_acquire)
        && atomic_load_explicit(&s_guard.watched[fd], memory_order_relaxed)
        && s_guard_bytes(fd, buf, (size_t) n) != 0) {
        errno = ECONNRESET;
        return -1;
    }
    return n;
}

/*  Start checking this server's websocket clients (the first server of the
    process only; the marks are allocated once and kept).                    */
static void
s_guard_init(sm_web *self)
{
    if (s_guard.web)
        return;
    if (!s_guard.watched) {
        s_guard.watched = calloc(self->fdrecs_len, sizeof *s_guard.watched);
        if (!s_guard.watched) {
            sm_log_warn("web: out of memory: websocket frame headers are not checked");
            return;
        }
        atomic_store_explicit(&s_guard.len, self->fdrecs_len, memory_order_release);
    }
    s_guard.web = self;
}

/*  Stop (sm_web_destroy).  Every mark is clear by then.                    */
static void
s_guard_stop(sm_web *self)
{
    if (s_guard.web != self)
        return;
    size_t len = atomic_load(&s_guard.len);
    for (size_t i = 0; i < len; i++)
        atomic_store_explicit(&s_guard.watched[i], 0, memory_order_relaxed);
    s_guard.web = NULL;
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

/*  The response is complete: counted, and marked for s_http_writeable.     */
static void
s_resp_ready(sm_web *self, s_conn *conn)
{
    if (self->opts.metrics)
        sm_metrics_http(self->opts.metrics, conn->http->resp.status);
    conn->http->has_resp = true;
}

/*  The response is ready: written in the connection's next writeable
    callback (s_http_writeable).                                             */
static void
s_respond(sm_web *self, s_conn *conn)
{
    s_resp_ready(self, conn);
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
    h->csp = a->csp;
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
    s_conn_request_done(self, conn->wsi);
    if ((h->method == SM_HTTP_GET || h->method == SM_HTTP_HEAD)
        && ((asset = sm_asset_find(strcmp(h->path, "/poster") == 0 ? "/poster.html" : h->path))
            != NULL
            || (strcmp(h->path, "/poster.svg") == 0 && (asset = &self->poster_svg)->data))) {
        s_serve_asset(h, asset);
        s_respond(self, conn);
        return;
    }
    /* A rebuild owed since the last commit: before anything reads it. */
    if (self->refresh_due && (h->method == SM_HTTP_GET || h->method == SM_HTTP_HEAD)
        && (strncmp(h->path, "/api/stock", 10) == 0 || strcmp(h->path, "/metrics") == 0))
        s_refresh(self);               /* /metrics shows the snapshot's version */
    sm_http_req req = {
        .method = h->method, .path = h->path, .query = h->query,
        .authorized = h->authorized, .scope = h->scope, .secure = h->secure,
        .client = conn->client,
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

/*  Content-Length by hand: lws_add_http_header_content_length also starts
    lws's own count of the body, which a body sent inside the headers' write
    never runs down.  The same bytes on the wire.                            */
static int
s_content_length(struct lws *wsi, size_t len, unsigned char **p, unsigned char *end)
{
    char digits[24];
    char *d = digits + sizeof digits;
    do {
        *--d = (char) ('0' + len % 10);
        len /= 10;
    } while (len);
    return lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                        (const unsigned char *) d,
                                        (int) (digits + sizeof digits - d), p, end);
}

/*  The response's headers, and with `with_body` its body after them in the
    same write (one send, one segment: a till's answer).  0 or -1.          */
static int
s_send_headers(struct lws *wsi, s_http *h, bool with_body)
{
    unsigned char buf[LWS_PRE + SM__HTTP_HEADERS_BYTES + SM__HTTP_INLINE_BYTES];
    unsigned char *start = buf + LWS_PRE, *p = start;
    unsigned char *end = start + SM__HTTP_HEADERS_BYTES - 1;
    sm_http_resp *r = &h->resp;
    assert(!with_body || (!r->stream && r->body_len <= SM__HTTP_INLINE_BYTES));
    char num[32];
    if (lws_add_http_header_status(wsi, (unsigned) r->status, &p, end)
        || s_security_headers(wsi, h, &p, end) != 0)
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
    if (r->disposition[0]
        && lws_add_http_header_by_name(wsi, (const unsigned char *) "content-disposition:",
                                       (const unsigned char *) r->disposition,
                                       (int) strlen(r->disposition), &p, end))
        return -1;
    if (r->stream) {
        /* A streamed body: HTTP/1.1 chunks, framed by s_http_stream. */
        static const char chunked[] = "chunked";
        if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING,
                                         (const unsigned char *) chunked,
                                         (int) sizeof chunked - 1, &p, end)
            || lws_finalize_http_header(wsi, &p, end))
            return -1;
    } else if (with_body) {
        if (s_content_length(wsi, r->body_len, &p, end)
            || lws_finalize_http_header(wsi, &p, end))
            return -1;
        memcpy(p, r->body, r->body_len);
        p += r->body_len;
    } else {
        size_t len = r->status == 304 ? 0 : r->body_len;
        if (lws_add_http_header_content_length(wsi, len, &p, end)
            || lws_finalize_http_header(wsi, &p, end))
            return -1;
    }
    int n = (int) (p - start);
    return lws_write(wsi, start, (size_t) n, LWS_WRITE_HTTP_HEADERS) != n ? -1 : 0;
}

/*  One chunk of a streamed body (sm_http_stream), framed as an HTTP/1.1
    chunk: "<hex length>\r\n" data "\r\n", and after the last one the
    terminating "0\r\n\r\n".  Returns 1 when the body is complete, 0 for
    more, -1 to close the connection (the body cannot be finished).          */
static int
s_http_stream(struct lws *wsi, sm_http_resp *r)
{
    enum { HEAD = 10, TAIL = 2 + 5 };  /* "%08zx\r\n"; "\r\n" + "0\r\n\r\n" */
    static unsigned char buf[LWS_PRE + HEAD + SM__HTTP_CHUNK_BYTES + TAIL];
    char *data = (char *) buf + LWS_PRE + HEAD;
    size_t len = 0;
    int more = r->stream->next(r->stream, data, SM__HTTP_CHUNK_BYTES, &len);
    if (more < 0)
        return -1;
    assert(len <= SM__HTTP_CHUNK_BYTES);
    unsigned char *start = buf + LWS_PRE + HEAD;
    size_t n = 0;
    if (len > 0) {
        char head[HEAD + 1];
        snprintf(head, sizeof head, "%08zx\r\n", len);
        start -= HEAD;
        memcpy(start, head, HEAD);
        memcpy(data + len, "\r\n", 2);
        n = HEAD + len + 2;
    }
    if (more == 1) {
        memcpy(start + n, "0\r\n\r\n", 5);
        n += 5;
    }
    if (n && lws_write(wsi, start, n, more == 1 ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP)
             != (int) n)
        return -1;
    return more == 1 ? 1 : 0;
}

/*  The response is sent: ready the connection for its next request.      */
static int
s_http_done(sm_web *self, s_conn *conn)
{
    struct lws *wsi = conn->wsi;
    s_http_free(conn);
    if (conn->close_after)
        return -1;
    s_conn_next_request(self, wsi);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/*  One chunk of a body held in memory; the last one completes the
    response.                                                                */
static int
s_http_body_step(sm_web *self, s_conn *conn)
{
    s_http *h = conn->http;
    struct lws *wsi = conn->wsi;
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
    return s_http_done(self, conn);
}

/*  One step of sending the response; -1 closes the connection.            */
static int
s_http_writeable(sm_web *self, s_conn *conn)
{
    s_http *h = conn->http;
    if (!h || !h->has_resp)
        return 0;
    struct lws *wsi = conn->wsi;
    if (!h->headers_sent) {
        bool no_body = h->resp.status == 304 || h->method == SM_HTTP_HEAD
                       || (h->resp.body_len == 0 && !h->resp.stream);
        /* A small body in memory over plain HTTP/1.1 goes out with its
           headers in one write: one send, one segment.  Answers over TLS,
           and an HTTP/2 stream (its body needs frames of its own), keep
           the headers' write and the body's. */
        bool with_body = !no_body && !h->resp.stream
                         && h->resp.body_len <= SM__HTTP_INLINE_BYTES && !lws_is_ssl(wsi)
                         && lws_get_network_wsi(wsi) == wsi;
        if (s_send_headers(wsi, h, with_body) != 0)
            return -1;
        h->headers_sent = true;
        if (no_body || with_body)
            return s_http_done(self, conn);
        /* Over plain HTTP/1.1 a body in memory follows its headers in the
           same pass when the socket takes more: a till's answer is written
           in one loop pass, not two. */
        if (h->resp.stream || lws_is_ssl(wsi) || lws_send_pipe_choked(wsi)) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        return s_http_body_step(self, conn);
    }
    if (!h->resp.stream)
        return s_http_body_step(self, conn);
    int done = s_http_stream(wsi, &h->resp);
    if (done < 0)
        return -1;
    if (!done) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    return s_http_done(self, conn);
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
    s_http *h = malloc(sizeof *h);
    if (!h)
        return -1;
    memset(h, 0, offsetof(s_http, path));
    conn->http = h;
    s_client_addr(self, conn->wsi, conn->client, sizeof conn->client);
    h->method = s_method(conn->wsi);
    const char *path = uri ? uri : "/";
    size_t path_len = strnlen(path, sizeof h->path - 1);
    memcpy(h->path, path, path_len);
    h->path[path_len] = '\0';
    /* Query arguments arrive decoded, one fragment each: join them. */
    h->query[0] = '\0';
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
    if (s_redirect_to_https(self, conn)) {
        s_conn_request_done(self, conn->wsi);
        s_conn_next_request(self, conn->wsi);
        return lws_http_transaction_completed(conn->wsi) ? -1 : 0;
    }
    if (s_authenticate(self, conn)) {
        s_conn_request_done(self, conn->wsi);
        s_respond(self, conn);             /* 429: too many failures */
        return 0;
    }
    uint32_t body_max = self->opts.config->body_bytes_max;
    char clen[32];
    if (lws_hdr_copy(conn->wsi, clen, sizeof clen, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        char *end = NULL;
        unsigned long long n = strtoull(clen, &end, 10);
        if (end == clen || *end || n > body_max) {
            s_conn_request_done(self, conn->wsi);
            sm_api_error(&h->resp, 413, "too_large",
                         "the request body is larger than the node accepts");
            s_respond(self, conn);
            return 0;
        }
        h->expect_body = n > 0;
    }
    if (!h->expect_body)
        s_dispatch(self, conn);
    else
        s_conn_body_starts(self, conn->wsi);
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
    s_client_addr(self, conn->wsi, conn->client, sizeof conn->client);
    if (self->refresh_due || sm_api_clock_due(self->api, s_now_ms()))
        s_refresh(self);           /* its snapshot is the state as it is now */
    s_snapshot_clock(self);
    /* Counted against its address since accept, like every connection. */
    s_conn_request_done(self, conn->wsi);
    s_guard_watch(self, (int) lws_get_socket_fd(conn->wsi), true);
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
    conn->bcast_next = self->bcast_next;   /* the snapshot covers every delta so far */
    return 0;
}

static void
s_ws_closed(sm_web *self, s_conn *conn)
{
    if (!conn->is_ws)
        return;
    s_guard_watch(self, (int) lws_get_socket_fd(conn->wsi), false);
    if (self->fan_cursor == conn)
        self->fan_cursor = conn->next;
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

/*  Close a websocket client for a protocol error: status, counted, logged
    (throttled).  Returns -1 for the callback to return.                      */
static int
s_ws_protocol_error(sm_web *self, s_conn *conn, enum lws_close_status status, int err)
{
    const char *why = sm_strerror(err);
    lws_close_reason(conn->wsi, status, (unsigned char *) why, strlen(why) < 120 ? strlen(why) : 120);
    if (self->opts.metrics)
        sm_metrics_add(self->opts.metrics, SM_METRIC_WS_PROTOCOL_ERRORS, 1);
    char kind[SM__ADDR_BYTES + 48];
    snprintf(kind, sizeof kind, "web: websocket protocol errors from %s", conn->client);
    sm_log_throttled(SM_LOG_WARN, kind, "web: websocket client %s closed: %s", conn->client, why);
    return -1;
}

static int
s_ws_receive(sm_web *self, s_conn *conn, const void *in, size_t len)
{
    if (conn->rx_bytes == 0)
        sm_utf8_init(&conn->utf8);   /* a new message */
    conn->rx_bytes += len;
    if (conn->rx_bytes > SM_WS_MESSAGE_BYTES_MAX)
        return s_ws_protocol_error(self, conn, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, SM_EWSTOOBIG);
    bool text = !lws_frame_is_binary(conn->wsi);
    if (text && sm_utf8_check(&conn->utf8, in, len) != 0)
        return s_ws_protocol_error(self, conn, LWS_CLOSE_STATUS_INVALID_PAYLOAD, SM_EWSUTF8);
    if (lws_is_final_fragment(conn->wsi) && !lws_remaining_packet_payload(conn->wsi)) {
        if (text && !sm_utf8_complete(&conn->utf8))
            return s_ws_protocol_error(self, conn, LWS_CLOSE_STATUS_INVALID_PAYLOAD,
                                       SM_EWSUTF8);
        conn->rx_bytes = 0;    /* messages from phones carry nothing we need */
    }
    return 0;
}

/* ---- fan-out ---------------------------------------------------------- */

/*  A delta for `c`, from the walk (the loop's thread, outside any callback
    of c's): written at once when nothing of c's is waiting, queued behind
    what is otherwise.  Asking for a writeable callback for each phone and
    each delta costs two epoll_ctl calls and a loop pass a phone; written at
    once, a delta costs the send alone.  A socket that takes only part of it
    leaves the rest with lws, which finishes it before c's next writeable
    callback (lws_partial_buffered says so meanwhile, and later deltas
    queue): the phone is still the one that sets the pace.                  */
static void
s_ws_offer(sm_web *self, s_conn *c, s_msg *m)
{
    if (c->dropping)
        return;
    if (c->qlen || lws_partial_buffered(c->wsi)) {
        s_ws_enqueue(self, c, m);
        return;
    }
    if (lws_write(c->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int) m->len)
        s_ws_drop(self, c, "send failed");
}

/*  Queue to `c` every delta it is owed, in order; drop it if it fell
    behind the ring (its queue would have been full).  True if anything was
    done.                                                                    */
static bool
s_ws_catch_up(sm_web *self, s_conn *c)
{
    if (c->dropping || c->bcast_next == self->bcast_next)
        return false;
    if (self->bcast_next - c->bcast_next > SM__FANOUT_RING) {
        s_ws_drop(self, c, "too slow (send queue full)");
        return true;
    }
    for (; c->bcast_next < self->bcast_next; c->bcast_next++)
        s_ws_offer(self, c, self->bcast[c->bcast_next % SM__FANOUT_RING]);
    return true;
}

static void s_refresh_later(lws_sorted_usec_list_t *sul);

/*  A rebuild in the next loop pass, or when the walk under way ends: one
    walk at a time, and the delta after it carries every change made during
    it (deltas hold whole items, so one covers several commits).  With no
    phone connected nobody waits for a delta: the rebuild waits for the
    next reader (a GET of the stock, a phone connecting).                   */
static void
s_refresh_soon(sm_web *self)
{
    if (self->refresh_due)
        return;
    self->refresh_due = true;
    if (!self->fan_active && self->ws_count > 0)
        lws_sul_schedule(self->ctx, 0, &self->refresh_sul, s_refresh_later, 1);
}

/*  One slice of the walk: a slice of clients handed what they are owed
    (a small one while a till waits for an answer); the rest in the next
    loop pass, after whatever else is ready (that answer among it).  A
    delta that came during the walk sends the walk round again for the
    clients it had passed.                                                   */
static void
s_fanout_step(sm_web *self)
{
    size_t n = 0, slice = self->pending ? SM__FANOUT_SLICE_BUSY : SM__FANOUT_SLICE;
    while (n < slice) {
        if (!self->fan_cursor) {
            if (self->fan_walk_seq == self->bcast_next || !self->ws_head) {
                self->fan_active = false;
                if (self->refresh_due)      /* held back by the walk */
                    lws_sul_schedule(self->ctx, 0, &self->refresh_sul, s_refresh_later, 1);
                return;
            }
            self->fan_walk_seq = self->bcast_next;
            self->fan_cursor = self->ws_head;
        }
        s_conn *c = self->fan_cursor;
        self->fan_cursor = c->next;
        n += s_ws_catch_up(self, c);
    }
    /* The next slice when the loop next wakes, which this makes at once,
       after what is ready meanwhile (a till's answer).  Not a timer: with
       the loop otherwise idle, lws (4.1, libev) runs a newly scheduled
       timer only at its next wake-up for something else, tens of ms late. */
    self->fan_more = true;
    lws_cancel_service(self->ctx);
}

/*  A new delta for every client: kept in the ring and walked out.          */
static void
s_broadcast(sm_web *self, s_msg *m)
{
    s_msg **slot = &self->bcast[self->bcast_next % SM__FANOUT_RING];
    s_msg_unref(slot);
    *slot = m;                 /* takes the caller's reference */
    self->bcast_next++;
    if (self->fan_active)
        return;                /* the walk under way goes round again */
    self->fan_active = true;
    self->fan_walk_seq = self->bcast_next;
    self->fan_cursor = self->ws_head;
    s_fanout_step(self);
}

/* ---- wake-ups from the core ------------------------------------------ */

static void
s_snapshot_set(sm_web *self, const char *snap, size_t len)
{
    s_msg *m = s_msg_new(snap, len);
    if (m) {
        s_msg_unref(&self->snapshot);
        self->snapshot = m;
        self->snapshot_ms = s_now_ms();
    }
}

/*  A phone sets its clock by the snapshot's "now_ms": one written more than
    SM__SNAPSHOT_CLOCK_MS ago is written again (at most that often).        */
static void
s_snapshot_clock(sm_web *self)
{
    uint64_t now = s_now_ms();
    const char *snap = NULL;
    size_t len = 0;
    if (self->snapshot && now - self->snapshot_ms >= SM__SNAPSHOT_CLOCK_MS
        && sm_api_snapshot_restamp(self->api, now, &snap, &len) == 0)
        s_snapshot_set(self, snap, len);
}

static void
s_refresh(sm_web *self)
{
    if (self->refresh_due) {
        lws_sul_cancel(&self->refresh_sul);   /* harmless if not scheduled */
        self->refresh_due = false;
    }
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
    if (sm_api_snapshot_message(self->api, &snap, &snap_len) == 0)
        s_snapshot_set(self, snap, snap_len);
    if (delta) {
        s_msg *m = s_msg_new(delta, delta_len);
        free(delta);
        if (m)
            s_broadcast(self, m);
    }
}

/*  A write's answer, from the core's wake-up (the loop's thread, outside
    any callback of the connection's): written at once when nothing of the
    connection's is waiting, rather than in a writeable callback a loop pass
    later (two epoll_ctl calls and that pass, on every sale).  What the
    socket does not take lws keeps and finishes first; a body that does not
    follow its headers at once (a stream, TLS, a full socket) still goes in
    writeable callbacks.  A connection that cannot be written, or is not to
    be kept alive after the answer, is closed from the loop.                  */
static void
s_respond_now(sm_web *self, s_conn *conn)
{
    struct lws *wsi = conn->wsi;
    if (lws_partial_buffered(wsi)) {
        s_respond(self, conn);
        return;
    }
    s_resp_ready(self, conn);
    if (s_http_writeable(self, conn) != 0)
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
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
        s_respond_now(self, conn);
        n++;
    }
    return n;
}

static void
s_refresh_later(lws_sorted_usec_list_t *sul)
{
    sm_web *self = lws_container_of(sul, sm_web, refresh_sul);
    self->refresh_due = false;
    s_refresh(self);
}

/*  The body-completion callback again, for a request whose answer is not
    out yet.  lws 4.1 calls it in a loop, without returning to the event
    loop, while input is buffered behind the body (a request pipelined after
    it); and once it has handled a body from that buffer, completing the
    transaction sends it round a loop of its own.  Either way nothing else
    would run again: no answer written, the node deaf to SIGTERM.  So the
    answer is finished here (the core's answer waited for, a commit away)
    and written, and then the connection is closed, as HTTP lets a server do
    after any answer: the client sends what it had pipelined again on a new
    connection.  The wait blocks the whole web thread, so it is short: a
    write the core has not answered by then (one parked for units, a hold
    forwarded to another stall) is still made, but its client is not told
    and retries (with its external id, safely).                              */
static int
s_body_completion_again(sm_web *self, s_conn *conn)
{
    enum { WAIT_MS = 100 };
    conn->close_after = true;
    uint64_t until = s_mono_ms() + WAIT_MS;
    while (conn->http && conn->http->pending && s_mono_ms() < until) {
        if (s_collect_answers(self) == 0) {
            struct timespec ts = { 0, 50000 };
            nanosleep(&ts, NULL);
        }
    }
    if (conn->http && conn->http->pending)
        sm_log_warn("web: %s: no answer from the core within %d ms behind a pipelined "
                    "request: closing the connection", conn->client, (int) WAIT_MS);
    else if (conn->http)
        s_http_writeable(self, conn);
    return -1;
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
    /* Connection accounting: these reasons carry no session data of ours. */
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return s_conn_filter(self, user);
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        s_conn_adopted(self, wsi);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    case LWS_CALLBACK_WSI_DESTROY:
        s_conn_destroyed(self, wsi);
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    default:
        break;
    }
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
        if (!conn->http)
            return 0;
        if (!conn->http->has_resp && !conn->http->pending) {
            s_dispatch(self, conn);
            return 0;
        }
        return s_body_completion_again(self, conn);
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
        return s_ws_receive(self, conn, in, len);
    case LWS_CALLBACK_CLOSED:
        s_ws_closed(self, conn);
        s_http_free(conn);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Tills first: the answers are queued now and written in the next
           loop pass; the rebuild runs in that pass too, after them (a GET
           of the stock that comes first rebuilds it itself: s_dispatch). */
        s_collect_answers(self);
        if (atomic_exchange(&self->woken, false))
            s_refresh_soon(self);
        if (self->fan_more) {
            self->fan_more = false;
            s_fanout_step(self);
        }
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
    assert(opts && opts->config && opts->ledger && opts->core && opts->auth && err);
    sm_web *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->opts = *opts;
    sm_api_opts aopts = {
        .ledger = opts->ledger, .node = opts->node, .metrics = opts->metrics,
        .peers = s_core_peers, .peers_arg = opts->core,
        .hold_ttl_s = opts->config->hold_ttl_s, .holds_per_min = opts->config->holds_per_min,
        .hold_limits = { opts->config->hold_max_units, opts->config->hold_max_per_sku,
                         opts->config->hold_per_device, opts->config->hold_per_address },
        .mirror = opts->config->mirror,
        .auth = opts->auth, .pair_url = opts->pair_url,
        .report_tz = opts->config->report_tz,
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

    if ((*err = s_conns_init(self)) != 0)
        goto fail;
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
    /* Enough header tables that one address (requests_per_addr_max, at most
       a sixteenth of the pool) cannot take them all; each is allocated only
       while a request is being read. */
    info.max_http_header_pool = SM_HTTP_HEADER_POOL;
    info.count_threads = 1;
    info.timeout_secs = 20;
    /* No lws validity timers (its idle PING and hangup): each connection
       would keep one in lws's sorted timer list, which every insert walks,
       so with thousands of phones on /ws each request's timers cost a walk
       of thousands (the drop rush, README "Drops").  Dead peers are found
       by the kernel's TCP keepalive instead, and a phone that cannot keep
       up with the deltas is dropped as before. */
    static const lws_retry_bo_t no_validity = { .secs_since_valid_ping = 0,
                                                .secs_since_valid_hangup = 0 };
    info.retry_and_idle_policy = &no_validity;
    info.ka_time = 300;
    info.ka_probes = 4;
    info.ka_interval = 15;
    /* lws's own header-table timeout, behind our deadline (s_conn_sweep). */
    info.timeout_secs_ah_idle = opts->config->headers_timeout_s + 1;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6 * (info.iface != NULL
                   && strchr(info.iface, ':') == NULL);
    if (opts->tls_cert)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    /* libev on epoll: lws's own loop polls every connection on each pass,
       which with thousands of slow clients open costs more than serving
       the few that are ready.  Without the libev plugin, lws's loop. */
    void *foreign[1] = { NULL };
    self->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOSIGMASK);
    if (self->loop) {
        foreign[0] = self->loop;
        info.foreign_loops = foreign;
        info.options |= LWS_SERVER_OPTION_LIBEV;
    }
    int bind_err = s_bind_probe(opts->config->http_host, opts->config->http_port);
    if (bind_err != 0) {
        sm_log_error("web: cannot listen on %s:%u: %s", opts->config->http_host,
                     (unsigned) opts->config->http_port,
                     bind_err == EADDRINUSE ? "the port is in use (another node, or another program)"
                     : bind_err == EADDRNOTAVAIL ? "the address is not on this host"
                     : bind_err == EACCES ? "a port below 1024 needs root or CAP_NET_BIND_SERVICE"
                     : strerror(bind_err));
        *err = bind_err == EADDRINUSE ? SM_EBUSY : SM_EIO;
        goto fail;
    }
    self->ctx = lws_create_context(&info);
    if (!self->ctx && self->loop) {
        sm_log_warn("web: the libev event loop is not available (package "
                    "libwebsockets-evlib-ev); using poll, which serves fewer connections");
        ev_loop_destroy(self->loop);
        self->loop = NULL;
        info.foreign_loops = NULL;
        info.options &= ~(uint64_t) LWS_SERVER_OPTION_LIBEV;
        self->ctx = lws_create_context(&info);
    }
    if (!self->ctx) {
        sm_log_error("web: cannot listen on %s:%u (port in use, or address not on this host)",
                     opts->config->http_host, (unsigned) opts->config->http_port);
        *err = SM_EIO;
        goto fail;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(self->ctx, "default");
    self->port = vh ? lws_get_vhost_listen_port(vh) : opts->config->http_port;
    if (opts->tls_cert && s_tls_vhost(self, &info) != 0) {
        *err = SM_EIO;
        goto fail;
    }
    lws_sul_schedule(self->ctx, 0, &self->tick_sul, s_tick,
                     (lws_usec_t) SM__TICK_MS * LWS_US_PER_MS);
    s_guard_init(self);
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

/*  One pass of the service loop: waits for an event (a wake-up from the
    core or sm_web_stop is one).  <0 if the loop failed.                     */
static int
s_service(sm_web *self)
{
    if (self->loop) {
        ev_run(self->loop, EVRUN_ONCE);
        return 0;
    }
    return lws_service(self->ctx, 0);
}

int
sm_web_tls_port(sm_web *self)
{
    assert(self);
    return self->tls_port;
}

int
sm_web_run(sm_web *self)
{
    assert(self);
    while (!atomic_load(&self->stop)) {
        atomic_fetch_add(&self->turns, 1);
        if (s_service(self) < 0)
            break;
    }
    /* Answer the writes the core still has: they may be committed. */
    uint64_t deadline = s_now_ms() + SM__DRAIN_MS;
    while (self->pending > 0 && s_now_ms() < deadline) {
        s_collect_answers(self);
        if (s_service(self) < 0)
            break;
    }
    return 0;
}

int
sm_web_set_poster(sm_web *self, const char *stall_name, const char *stock_url)
{
    assert(self && stall_name && stock_url);
    sm_qr qr;
    int rc = sm_qr_encode(stock_url, 1, &qr);     /* level M: a poster gets creased */
    if (rc != 0)
        return rc;
    size_t len = 0;
    char *svg = sm_qr_svg(&qr, stall_name, stock_url, &len);
    sm_qr_clear(&qr);
    if (!svg)
        return SM_ENOMEM;
    sm_hash h;
    sm_hash_bytes((const uint8_t *) svg, len, &h);
    char hex[17];
    sm_hex_encode(h.b, 8, hex);
    snprintf(self->poster_etag, sizeof self->poster_etag, "\"%s\"", hex);
    free((void *) self->poster_svg.data);
    self->poster_svg = (sm_asset) {
        .path = "/poster.svg", .content_type = "image/svg+xml",
        .data = (const unsigned char *) svg, .len = len, .etag = self->poster_etag,
    };
    return 0;
}

uint64_t
sm_web_turns(sm_web *self)
{
    assert(self);
    return atomic_load(&self->turns);
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
    if (self && self->ctx) {
        atomic_store(&self->woken, true);
        lws_cancel_service(self->ctx);
    }
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
        lws_sul_cancel(&self->tick_sul);
        lws_context_destroy(self->ctx);
    }
    s_guard_stop(self);
    if (self->loop) {
        /* Let lws's watchers wind down, boundedly, then free the loop. */
        for (int i = 0; i < 16; i++)
            ev_run(self->loop, EVRUN_NOWAIT);
        ev_loop_destroy(self->loop);
        self->loop = NULL;
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
    for (size_t i = 0; i < SM__FANOUT_RING; i++)
        s_msg_unref(&self->bcast[i]);
    free((void *) self->poster_svg.data);
    free(self->fdrecs);
    sm_core_client_destroy(&self->core);
    sm_api_destroy(&self->api);
    free(self);
    *self_p = NULL;
}
