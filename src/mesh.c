/*  The mesh transport: ZeroMQ CURVE sockets and the ZAP handler under the
    protocol engine.  See mesh.h and proto/mesh.md.

    Peers are known by node id.  A peer may be reachable two ways: through
    our DEALER to its listener (we know its endpoint), or through its DEALER
    to our ROUTER (it knows ours; we learn its id from the ZAP user id that
    libzmq attaches to each message as "User-Id").  A message to a peer goes
    through our DEALER when its handshake has succeeded, else back through
    the ROUTER to the routing id it last came from, else it is dropped: the
    engine's anti-entropy (HEADS every few seconds) repairs any loss.        */
#include "mesh.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "logger.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define SM__ZAP_ENDPOINT      "inproc://zeromq.zap.01"
#define SM__ZAP_DOMAIN        "stallmesh"
#define SM__HEARTBEAT_IVL_MS  1000
#define SM__HEARTBEAT_TTL_MS  5000
#define SM__RECONNECT_MS      100
#define SM__RECONNECT_MAX_MS  10000
#define SM__INBOUND_IDLE_MS   (3u * SM_HEADS_INTERVAL_MS)  /* silent this long: down */
#define SM__ROUTING_BYTES_MAX 256u
/*  ZeroMQ's watermarks count messages, not bytes, and a message may be up
    to a run's soft limit (SM_WIRE_RUN_BYTES_SOFT, 1 MiB): 256 of them
    bound what one peer's pipe can pin to ~256 MiB each way, where 10,000
    allowed ~10 GiB.  Normal traffic stays far below (at most
    SM_WANTS_IN_FLIGHT_MAX runs in flight, pushes of a few hundred bytes);
    a message refused at the mark is dropped and repaired by anti-entropy. */
#define SM__SNDHWM            256
#define SM__RECV_BURST_MAX    4096u   /* messages read per socket per call */
#define SM__REDIAL_MIN_MS     1000u   /* a refused handshake is tried again after */
#define SM__REDIAL_MAX_MS     30000u  /* ... doubling up to this */

typedef struct {
    bool used;
    sm_id node;
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1];
    void *dealer;              /* NULL if we do not connect to it */
    void *monitor;             /* PAIR receiving the dealer's events */
    bool dealer_up;            /* handshake succeeded, not disconnected since */
    uint64_t redial_ms;        /* handshake refused: reopen the dealer then; 0 = no */
    uint32_t redial_backoff_ms;
    bool in_multipart;         /* dropping the frames of a multipart message */
    uint8_t routing[SM__ROUTING_BYTES_MAX];  /* its inbound connection */
    size_t routing_len;
    uint64_t inbound_seen_ms;  /* last message through the ROUTER */
    bool up;                   /* as told to the engine */
    bool member;               /* admitted, or the organiser: we talk to it */
    bool revoked;
} s_peer;

struct sm_mesh {
    sm_mesh_opts opts;
    void *zctx;                /* borrowed */
    void *zap;                 /* REP: the ZAP handler */
    void *router;              /* NULL if not listening */
    uint8_t curve_pub[32], curve_sec[32];
    sm_id market;
    sm_gossip *gossip;
    s_peer peers[SM_PEERS_MAX];
    unsigned monitor_seq;
    bool recycle_router;
    bool relisten;             /* the listener was closed and must come back */
    uint32_t relisten_tries;
    sm_discover *discover;     /* NULL unless opts.discover.enabled */
};

/* ---- helpers ---------------------------------------------------------- */

static int
s_setint(void *sock, int opt, int value)
{
    return zmq_setsockopt(sock, opt, &value, sizeof value);
}

static bool
s_self(const sm_mesh *self, const sm_id *node)
{
    return memcmp(node->b, self->opts.identity.pub.b, SM_KEY_BYTES) == 0;
}

static s_peer *
s_peer_find(sm_mesh *self, const sm_id *node, bool create)
{
    s_peer *free_slot = NULL;
    for (size_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *p = &self->peers[i];
        if (p->used && memcmp(p->node.b, node->b, SM_KEY_BYTES) == 0)
            return p;
        if (!p->used && !free_slot)
            free_slot = p;
    }
    if (!create || !free_slot)
        return NULL;
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->used = true;
    free_slot->node = *node;
    return free_slot;
}

/* Common options of every mesh socket. */
static int
s_socket_opts(sm_mesh *self, void *sock)
{
    int64_t max = SM_WIRE_BYTES_MAX;
    if (s_setint(sock, ZMQ_LINGER, 0) != 0
        || s_setint(sock, ZMQ_SNDHWM, SM__SNDHWM) != 0
        || s_setint(sock, ZMQ_RCVHWM, SM__SNDHWM) != 0
        || s_setint(sock, ZMQ_HEARTBEAT_IVL, SM__HEARTBEAT_IVL_MS) != 0
        || s_setint(sock, ZMQ_HEARTBEAT_TIMEOUT, SM__HEARTBEAT_TTL_MS) != 0
        || s_setint(sock, ZMQ_HEARTBEAT_TTL, SM__HEARTBEAT_TTL_MS) != 0
        || zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max) != 0)
        return SM_EIO;
    (void) self;
    return 0;
}

/* ---- ZAP -------------------------------------------------------------- */

typedef struct {
    const uint8_t *key;
    sm_id found;
    bool ok;
} s_zap_find;

static int
s_zap_member(const sm_member *m, void *arg)
{
    s_zap_find *f = arg;
    uint8_t curve[32];
    if (m->revoked || sm_id_to_curve(&m->node, curve) != 0)
        return 0;
    if (memcmp(curve, f->key, 32) == 0) {
        f->found = m->node;
        f->ok = true;
        return 1;
    }
    return 0;
}

/*  Answer one ZAP request (RFC 27): 200 with the member's hex id as the
    user id, or 400.                                                          */
static void
s_zap_handle(sm_mesh *self)
{
    enum { FRAMES = 7 };
    zmq_msg_t f[FRAMES];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, self->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            break;
        }
        more = zmq_msg_more(&part);
        if (n < FRAMES)
            f[n++] = part;
        else
            zmq_msg_close(&part);
    }
    if (n == 0)
        return;
    const char *status = "400", *text = "not a market member";
    char user[SM_ID_HEX_BYTES + 1] = "";
    /* A REP socket must answer every request, even one it cannot read. */
    bool curve = n >= 6 && zmq_msg_size(&f[5]) == 5
                 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0;
    if (curve && n == 7 && zmq_msg_size(&f[6]) == 32) {
        s_zap_find find = { .key = zmq_msg_data(&f[6]) };
        int rc = sm_ledger_members_each(self->opts.ledger, s_zap_member, &find);
        /* The organiser is a member before its roster entry about itself
           has arrived (a node that just joined, or rejoined on an empty
           store, holds only its own admit): as sm_mesh_tick has it. */
        uint8_t organiser[32];
        if (rc == 0 && !find.ok && sm_id_to_curve(&self->market, organiser) == 0
            && memcmp(organiser, find.key, 32) == 0) {
            sm_member m;
            int mrc = sm_ledger_member(self->opts.ledger, &self->market, &m);
            if (mrc == SM_ENOTFOUND || (mrc == 0 && !m.revoked)) {
                find.found = self->market;
                find.ok = true;
            } else if (mrc != 0) {
                rc = mrc;
            }
        }
        if (rc == 0 && find.ok && !s_self(self, &find.found)) {
            status = "200";
            text = "OK";
            sm_id_format(&find.found, user);
        } else if (rc != 0) {
            text = "roster unreadable";     /* fail closed */
        }
    }
    if (strcmp(status, "200") != 0 && n >= 4) {
        char addr[64] = "";
        size_t al = zmq_msg_size(&f[3]) < sizeof addr - 1 ? zmq_msg_size(&f[3]) : sizeof addr - 1;
        memcpy(addr, zmq_msg_data(&f[3]), al);
        /* Strangers can knock thousands of times a minute: one line per
           reason every SM_LOG_THROTTLE_MS, the rest counted. */
        char kind[96];
        snprintf(kind, sizeof kind, "mesh: connections refused (%s)", text);
        sm_log_throttled(SM_LOG_INFO, kind, "mesh: refused a connection from %s: %s", addr, text);
    }
    zmq_send(self->zap, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(self->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(self->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(self->zap, status, 3, ZMQ_SNDMORE);
    zmq_send(self->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(self->zap, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(self->zap, "", 0, 0);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

/* ---- sockets ---------------------------------------------------------- */

/*  Bind the listener.  `quiet`: a failure is the caller's to report.      */
static int
s_router_open(sm_mesh *self, bool quiet)
{
    void *r = zmq_socket(self->zctx, ZMQ_ROUTER);
    if (!r)
        return SM_EIO;
    if (s_socket_opts(self, r) != 0
        || s_setint(r, ZMQ_CURVE_SERVER, 1) != 0
        || zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, self->curve_sec, 32) != 0
        || zmq_setsockopt(r, ZMQ_ZAP_DOMAIN, SM__ZAP_DOMAIN, strlen(SM__ZAP_DOMAIN)) != 0
        || s_setint(r, ZMQ_ROUTER_MANDATORY, 1) != 0) {
        zmq_close(r);
        return SM_EIO;
    }
    /* Where libzmq offers it (a draft option), also refuse all when no ZAP
       handler answers; the handler's lifetime covers the listener anyway. */
    s_setint(r, 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, 1);
    if (zmq_bind(r, self->opts.listen) != 0) {
        int e = errno;
        if (!quiet)
            sm_log_error("mesh: cannot listen on %s: %s", self->opts.listen, zmq_strerror(e));
        zmq_close(r);
        errno = e;
        return SM_EIO;
    }
    self->router = r;
    return 0;
}

static void
s_dealer_close(s_peer *p)
{
    if (p->dealer)
        zmq_close(p->dealer);
    if (p->monitor)
        zmq_close(p->monitor);
    p->dealer = p->monitor = NULL;
    p->dealer_up = false;
}

static void
s_dealer_open(sm_mesh *self, s_peer *p)
{
    uint8_t server[32];
    if (p->dealer || !p->endpoint[0] || p->revoked || sm_id_to_curve(&p->node, server) != 0)
        return;
    void *d = zmq_socket(self->zctx, ZMQ_DEALER);
    if (!d)
        return;
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://stallmesh-mon-%p-%u", (void *) self, self->monitor_seq++);
    void *m = NULL;
    if (s_socket_opts(self, d) != 0
        || s_setint(d, ZMQ_RECONNECT_IVL, SM__RECONNECT_MS) != 0
        || s_setint(d, ZMQ_RECONNECT_IVL_MAX, SM__RECONNECT_MAX_MS) != 0
        || zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, server, 32) != 0
        || zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, self->curve_pub, 32) != 0
        || zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, self->curve_sec, 32) != 0
        || zmq_socket_monitor(d, mon, ZMQ_EVENT_HANDSHAKE_SUCCEEDED
                                      | ZMQ_EVENT_DISCONNECTED
                                      | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                                      | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0
        || !(m = zmq_socket(self->zctx, ZMQ_PAIR))
        || zmq_connect(m, mon) != 0
        || zmq_connect(d, p->endpoint) != 0) {
        sm_log_warn("mesh: cannot connect to %s: %s", p->endpoint, zmq_strerror(errno));
        if (m)
            zmq_close(m);
        zmq_close(d);
        return;
    }
    s_setint(m, ZMQ_LINGER, 0);
    p->dealer = d;
    p->monitor = m;
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&p->node, hex);
    sm_log_info("mesh: connecting to %.12s at %s", hex, p->endpoint);
}

/* ---- peers up and down ------------------------------------------------ */

static void
s_update_up(sm_mesh *self, s_peer *p, uint64_t now_ms)
{
    bool inbound = p->routing_len > 0 && p->inbound_seen_ms
                   && now_ms - p->inbound_seen_ms < SM__INBOUND_IDLE_MS;
    bool up = p->member && (p->dealer_up || inbound);
    if (up == p->up)
        return;
    p->up = up;
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&p->node, hex);
    if (up) {
        sm_log_info("mesh: peer %.12s up", hex);
        sm_gossip_peer_up(self->gossip, &p->node, p->endpoint[0] ? p->endpoint : NULL, now_ms);
    } else {
        sm_log_info("mesh: peer %.12s down", hex);
        sm_gossip_peer_down(self->gossip, &p->node, now_ms);
    }
}

static void
s_monitor_events(sm_mesh *self, s_peer *p, uint64_t now_ms)
{
    for (int i = 0; i < 64; i++) {
        uint8_t ev[6];
        int n = zmq_recv(p->monitor, ev, sizeof ev, ZMQ_DONTWAIT);
        if (n < 0)
            return;
        char addr[256];
        zmq_recv(p->monitor, addr, sizeof addr, ZMQ_DONTWAIT);   /* the endpoint frame */
        if (n < 2)
            continue;
        uint16_t event;
        memcpy(&event, ev, 2);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            p->dealer_up = true;
            p->redial_ms = 0;
            p->redial_backoff_ms = 0;
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            p->dealer_up = false;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                   || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            /* libzmq ends a connecting session for good when the handshake
               fails (the peer's ZAP refused us: say it has not yet seen our
               admission, having just joined or lost its store), so no
               reconnect would ever come: reopen the dealer later, backing
               off from 1 s to SM__REDIAL_MAX_MS. */
            p->dealer_up = false;
            p->redial_backoff_ms = p->redial_backoff_ms
                ? (p->redial_backoff_ms * 2 < SM__REDIAL_MAX_MS ? p->redial_backoff_ms * 2
                                                                : SM__REDIAL_MAX_MS)
                : SM__REDIAL_MIN_MS;
            p->redial_ms = now_ms + p->redial_backoff_ms;
            char hex[SM_ID_HEX_BYTES + 1];
            sm_id_format(&p->node, hex);
            sm_log_info("mesh: %.12s refused our handshake; trying again in %u ms", hex,
                        (unsigned) p->redial_backoff_ms);
        }
        s_update_up(self, p, now_ms);
    }
}

/* ---- sending ---------------------------------------------------------- */

static void
s_flush(sm_mesh *self)
{
    sm_id to;
    const uint8_t *msg;
    size_t len;
    while (sm_gossip_next(self->gossip, &to, &msg, &len)) {
        s_peer *p = s_peer_find(self, &to, false);
        if (!p || !p->member)
            continue;
        if (p->dealer && p->dealer_up) {
            if (zmq_send(p->dealer, msg, len, ZMQ_DONTWAIT) < 0)
                sm_log_debug("mesh: send to a peer dropped: %s", zmq_strerror(errno));
            continue;
        }
        if (self->router && p->routing_len) {
            if (zmq_send(self->router, p->routing, p->routing_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0
                || zmq_send(self->router, msg, len, ZMQ_DONTWAIT) < 0) {
                if (errno == EHOSTUNREACH)
                    p->routing_len = 0;
            }
        }
    }
}

/* ---- receiving -------------------------------------------------------- */

/*  Hand a message to the owner (opts.deliver), which applies it in its
    write batch; send what it produced only when the owner says it is
    durable.  Without an owner the engine takes it directly (each run
    commits on its own) and what it queued may go at once.                  */
static void
s_deliver(sm_mesh *self, s_peer *p, const uint8_t *data, size_t len, uint64_t now_ms)
{
    if (self->opts.deliver) {
        if (self->opts.deliver(self->opts.deliver_arg, &p->node, data, len, now_ms))
            s_flush(self);
        return;
    }
    int rc = sm_gossip_receive(self->gossip, &p->node, data, len, now_ms);
    if (rc != 0) {
        char hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(&p->node, hex);
        sm_log_debug("mesh: message from %.12s refused: %s", hex, sm_strerror(rc));
    }
    s_flush(self);
}

static void
s_router_read(sm_mesh *self, uint64_t now_ms)
{
    for (unsigned i = 0; i < SM__RECV_BURST_MAX; i++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, self->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            return;
        }
        zmq_msg_init(&body);
        bool framed = zmq_msg_more(&rid) && zmq_msg_recv(&body, self->router, 0) >= 0;
        /* Drain the rest of a multipart message: it is dropped whole. */
        bool extra = framed && zmq_msg_more(&body);
        while (extra) {
            zmq_msg_t junk;
            zmq_msg_init(&junk);
            if (zmq_msg_recv(&junk, self->router, 0) < 0)
                extra = false;
            else
                extra = zmq_msg_more(&junk);
            zmq_msg_close(&junk);
        }
        bool single = framed && !zmq_msg_more(&body);   /* a message is one frame */
        const char *user = single ? zmq_msg_gets(&body, "User-Id") : NULL;
        sm_id node;
        if (framed && user && sm_id_parse(user, &node) == 0 && !s_self(self, &node)
            && zmq_msg_size(&rid) <= SM__ROUTING_BYTES_MAX) {
            s_peer *p = s_peer_find(self, &node, true);
            if (p && !p->revoked) {
                p->member = true;          /* ZAP let it in: a current member */
                memcpy(p->routing, zmq_msg_data(&rid), zmq_msg_size(&rid));
                p->routing_len = zmq_msg_size(&rid);
                p->inbound_seen_ms = now_ms;
                s_update_up(self, p, now_ms);
                s_deliver(self, p, zmq_msg_data(&body), zmq_msg_size(&body), now_ms);
            }
        }
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

static void
s_dealer_read(sm_mesh *self, s_peer *p, uint64_t now_ms)
{
    for (unsigned i = 0; i < SM__RECV_BURST_MAX && p->dealer; i++) {
        zmq_msg_t body;
        zmq_msg_init(&body);
        if (zmq_msg_recv(&body, p->dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&body);
            return;
        }
        /* A message is one frame: a multipart one is dropped whole. */
        bool more = zmq_msg_more(&body);
        if (!more && !p->in_multipart)
            s_deliver(self, p, zmq_msg_data(&body), zmq_msg_size(&body), now_ms);
        p->in_multipart = more;
        zmq_msg_close(&body);
    }
}

/* ---- life cycle and entry points ------------------------------------- */

sm_mesh *
sm_mesh_new(void *zctx, const sm_mesh_opts *opts, uint64_t now_ms, int *err)
{
    assert(zctx && opts && opts->ledger && err);
    sm_mesh *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->opts = *opts;
    self->zctx = zctx;
    if (sm_id_to_curve(&opts->identity.pub, self->curve_pub) != 0) {
        *err = SM_EINVAL;
        goto fail;
    }
    sm_identity_curve_secret(&opts->identity, self->curve_sec);
    sm_market market;
    if ((*err = sm_ledger_market(opts->ledger, &market)) != 0)
        goto fail;
    self->market = market.market;
    sm_gossip_opts gopts = { .ledger = opts->ledger, .self = opts->identity.pub,
                             .units_floor = opts->units_floor,
                             .units_per_min = opts->units_per_min,
                             .hold_ttl_s = opts->hold_ttl_s,
                             .hold_limits = opts->hold_limits };
    snprintf(gopts.endpoint, sizeof gopts.endpoint, "%s", opts->advertise);
    if (!(self->gossip = sm_gossip_new(&gopts, err)))
        goto fail;
    /* The ZAP handler first: the listener must never exist without it. */
    self->zap = zmq_socket(zctx, ZMQ_REP);
    if (!self->zap || s_setint(self->zap, ZMQ_LINGER, 0) != 0
        || zmq_bind(self->zap, SM__ZAP_ENDPOINT) != 0) {
        sm_log_error("mesh: cannot start the ZAP handler: %s", zmq_strerror(errno));
        *err = SM_EIO;
        goto fail;
    }
    if (opts->listen[0] && (*err = s_router_open(self, false)) != 0)
        goto fail;
    if (opts->discover.enabled
        && !(self->discover = sm_discover_new(&opts->discover, opts->ledger,
                                              &self->opts.identity, &self->market,
                                              opts->metrics, now_ms, err)))
        goto fail;
    for (uint32_t i = 0; i < opts->peer_count && i < SM_PEERS_MAX; i++) {
        if (s_self(self, &opts->peers[i].node))
            continue;
        sm_gossip_add_peer(self->gossip, &opts->peers[i].node, opts->peers[i].endpoint);
    }
    sm_mesh_tick(self, now_ms);
    return self;
fail:
    sm_mesh_destroy(&self);
    return NULL;
}

void
sm_mesh_destroy(sm_mesh **self_p)
{
    assert(self_p);
    sm_mesh *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < SM_PEERS_MAX; i++)
        s_dealer_close(&self->peers[i]);
    if (self->router)
        zmq_close(self->router);
    if (self->zap)                 /* after the listener: fail closed */
        zmq_close(self->zap);
    sm_discover_destroy(&self->discover);
    sm_gossip_destroy(&self->gossip);
    memset(self->curve_sec, 0, sizeof self->curve_sec);
    sm_identity_wipe(&self->opts.identity);
    free(self);
    *self_p = NULL;
}

size_t
sm_mesh_sockets(sm_mesh *self, void **socks, size_t cap)
{
    size_t n = 0;
    if (n < cap)
        socks[n++] = self->zap;
    if (self->router && n < cap)
        socks[n++] = self->router;
    for (size_t i = 0; i < SM_PEERS_MAX && n + 2 <= cap; i++) {
        s_peer *p = &self->peers[i];
        if (p->used && p->dealer) {
            socks[n++] = p->dealer;
            socks[n++] = p->monitor;
        }
    }
    return n;
}

int
sm_mesh_fd(sm_mesh *self)
{
    assert(self);
    return self->discover ? sm_discover_fd(self->discover) : -1;
}

/*  A beacon accepted (discover.h): the node becomes a peer to dial, as with
    --peer NODE@ENDPOINT; sm_mesh_tick connects it.  A known node whose
    beacon names another endpoint (it restarted on another address or
    port) is dialled there from then on: once our connection to the old one
    is down, its dealer is closed and the next tick opens one to the new
    endpoint.  While the old connection still works it is kept (a node seen
    on two interfaces does not flap), and the next beacon tries again.     */
static void
s_discovered(const sm_id *node, const char *endpoint, void *arg)
{
    sm_mesh *self = arg;
    s_peer *p = s_peer_find(self, node, false);
    if (p && strcmp(p->endpoint, endpoint) == 0)
        return;                    /* known: the usual case, every few seconds */
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(node, hex);
    int rc = sm_gossip_add_peer(self->gossip, node, endpoint);
    if (rc != 0) {
        sm_log_warn("discover: cannot add %.12s at %s: %s", hex, endpoint, sm_strerror(rc));
        return;
    }
    if (!p || !p->endpoint[0]) {
        sm_log_info("discover: found %.12s at %s", hex, endpoint);
        return;
    }
    if (p->dealer_up)
        return;
    sm_log_info("discover: %.12s moved from %s to %s", hex, p->endpoint, endpoint);
    snprintf(p->endpoint, sizeof p->endpoint, "%s", endpoint);
    s_dealer_close(p);
    p->redial_ms = 0;
    p->redial_backoff_ms = 0;
}

void
sm_mesh_process(sm_mesh *self, uint64_t now_ms)
{
    assert(self);
    if (self->discover)
        sm_discover_read(self->discover, now_ms, s_discovered, self);
    for (int i = 0; i < 16; i++) {
        int events = 0;
        size_t len = sizeof events;
        if (zmq_getsockopt(self->zap, ZMQ_EVENTS, &events, &len) != 0 || !(events & ZMQ_POLLIN))
            break;
        s_zap_handle(self);
    }
    for (size_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *p = &self->peers[i];
        if (p->used && p->monitor)
            s_monitor_events(self, p, now_ms);
    }
    /* Dealers first: a peer's HELLO usually comes back on our dealer (its
       answer through its ROUTER) while what follows may take its own dealer
       to our ROUTER once that is up; read in this order, a message that
       arrived in the same round after the HELLO is not refused as early. */
    for (size_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *p = &self->peers[i];
        if (p->used && p->dealer)
            s_dealer_read(self, p, now_ms);
    }
    if (self->router)
        s_router_read(self, now_ms);
}

void
sm_mesh_flush(sm_mesh *self)
{
    assert(self);
    s_flush(self);
}

static int
s_learn_peer(const sm_gossip_peer *gp, void *arg)
{
    sm_mesh *self = arg;
    if (s_self(self, &gp->node) || !gp->endpoint[0])
        return 0;
    s_peer *p = s_peer_find(self, &gp->node, true);
    if (p && !p->endpoint[0])
        snprintf(p->endpoint, sizeof p->endpoint, "%s", gp->endpoint);
    return 0;
}

/*  Bind the listener again after a recycle.  zmq_close releases the port
    asynchronously (libzmq's I/O thread closes the socket a moment later),
    so the first bind right after it usually fails with EADDRINUSE: try
    again each tick until it succeeds; the peers' DEALERs reconnect with
    their backoff meanwhile.                                                  */
static void
s_relisten(sm_mesh *self)
{
    if (!self->relisten)
        return;
    if (s_router_open(self, true) == 0) {
        self->relisten = false;
        sm_log_info("mesh: listening again on %s (members reconnect; a revoked one cannot)",
                    self->opts.listen);
        return;
    }
    int e = errno;
    self->relisten_tries++;
    if (self->relisten_tries % 10 == 0)
        sm_log_error("mesh: cannot listen again on %s after a revocation: %s (%u tries; "
                     "retrying every second)", self->opts.listen, zmq_strerror(e),
                     (unsigned) self->relisten_tries);
}

void
sm_mesh_tick(sm_mesh *self, uint64_t now_ms)
{
    assert(self);
    /* Endpoints the engine learned (config, token, PEERS): connect. */
    sm_gossip_peers_each(self->gossip, s_learn_peer, self);
    for (size_t i = 0; i < SM_PEERS_MAX; i++) {
        s_peer *p = &self->peers[i];
        if (!p->used)
            continue;
        bool was_revoked = p->revoked;
        sm_member m;
        int rc = sm_ledger_member(self->opts.ledger, &p->node, &m);
        p->revoked = rc == 0 && m.revoked;
        /* The organiser named in a join token is a member before its roster
           entry about itself has arrived. */
        p->member = !p->revoked
                    && (rc == 0 || memcmp(p->node.b, self->market.b, SM_KEY_BYTES) == 0);
        if (p->revoked && !was_revoked) {
            char hex[SM_ID_HEX_BYTES + 1];
            sm_id_format(&p->node, hex);
            sm_log_warn("mesh: peer %.12s was revoked: disconnecting it", hex);
            s_dealer_close(p);
            if (p->routing_len)
                self->recycle_router = true;
            p->routing_len = 0;
        }
        if (p->dealer && p->redial_ms && now_ms >= p->redial_ms && !p->dealer_up) {
            s_dealer_close(p);
            p->redial_ms = 0;
        }
        /* Connect only to members: what we send is the market's data. */
        if (p->member && !p->dealer && p->endpoint[0])
            s_dealer_open(self, p);
        s_update_up(self, p, now_ms);
    }
    if (self->recycle_router && self->router) {
        /* ZeroMQ cannot drop one inbound peer; a fresh listener drops all
           and the members reconnect through ZAP, the revoked cannot. */
        zmq_close(self->router);
        self->router = NULL;
        for (size_t i = 0; i < SM_PEERS_MAX; i++)
            self->peers[i].routing_len = 0;
        self->recycle_router = false;
        self->relisten = true;
        self->relisten_tries = 0;
    }
    s_relisten(self);
    if (self->discover)
        sm_discover_tick(self->discover, now_ms);
    sm_gossip_tick(self->gossip, now_ms);
    s_flush(self);
}

sm_gossip *
sm_mesh_gossip(sm_mesh *self)
{
    assert(self);
    return self->gossip;
}
