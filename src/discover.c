/*  LAN discovery: the beacon's UDP socket.  See discover.h; the rules of
    what is accepted live in beacon.c, so they run (and are tested) without
    a socket.                                                                */
#include "discover.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "logger.h"
#include "stallmesh/error.h"

#define SM__DISCOVER_RCVBUF_BYTES 65536   /* a flood beyond this is the kernel's to drop */

struct sm_discover {
    sm_discover_opts opts;
    const sm_identity *id;     /* borrowed */
    sm_metrics *metrics;       /* borrowed; may be NULL */
    int fd;
    struct sockaddr_in to;
    sm_beacon beacon;          /* ours; ts_ms set at each send */
    bool sending;              /* we tell an endpoint */
    uint64_t last_sent_ms;     /* wall clock of the last send; 0 = never */
    uint64_t last_ts_ms;       /* ts_ms of the last beacon sent */
    uint64_t sent;
    bool send_failed;          /* the last send failed: said once */
    sm_beacon_rx rx;
};

static void
s_count(sm_discover *self, sm_metric which)
{
    if (self->metrics)
        sm_metrics_add(self->metrics, which, 1);
}

static void
s_send(sm_discover *self, uint64_t now_ms)
{
    self->last_sent_ms = now_ms ? now_ms : 1;
    /* Strictly increasing, even when the clock stands still or steps back
       while the node runs: receivers ignore a beacon not newer than the
       last they accepted. */
    self->beacon.ts_ms = now_ms > self->last_ts_ms ? now_ms : self->last_ts_ms + 1;
    uint8_t buf[SM_BEACON_BYTES_MAX];
    size_t len = 0;
    int rc = sm_beacon_encode(&self->beacon, self->id, buf, sizeof buf, &len);
    assert(rc == 0);           /* the endpoint was checked at sm_discover_new */
    (void) rc;
    self->last_ts_ms = self->beacon.ts_ms;
    if (sendto(self->fd, buf, len, 0, (const struct sockaddr *) &self->to, sizeof self->to)
        != (ssize_t) len) {
        /* No network yet (a stall whose Wi-Fi is not up): say it once. */
        if (!self->send_failed)
            sm_log_warn("discover: cannot send the beacon to %s:%u: %s (trying again every "
                        "%u s)", inet_ntoa(self->to.sin_addr), (unsigned) ntohs(self->to.sin_port),
                        strerror(errno), SM_DISCOVER_INTERVAL_MS / 1000u);
        self->send_failed = true;
        return;
    }
    if (self->send_failed)
        sm_log_info("discover: sending the beacon again");
    self->send_failed = false;
    self->sent++;
    s_count(self, SM_METRIC_BEACONS_SENT);
}

sm_discover *
sm_discover_new(const sm_discover_opts *opts, sm_ledger *ledger, const sm_identity *id,
                const sm_id *market, sm_metrics *metrics, uint64_t now_ms, int *err)
{
    assert(opts && ledger && id && market && err);
    sm_discover *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    self->fd = -1;
    self->opts = *opts;
    self->id = id;
    self->metrics = metrics;
    sm_beacon_rx_init(&self->rx, ledger, market, &id->pub);
    uint16_t port = opts->port ? opts->port : SM_DISCOVER_PORT_DEFAULT;
    self->to.sin_family = AF_INET;
    self->to.sin_port = htons(port);
    const char *addr = opts->addr[0] ? opts->addr : "255.255.255.255";
    if (inet_pton(AF_INET, addr, &self->to.sin_addr) != 1) {
        sm_log_error("discover: '%s' is not an IPv4 address", addr);
        *err = SM_EINVAL;
        goto fail;
    }
    self->beacon.market = *market;
    self->beacon.node = id->pub;
    snprintf(self->beacon.endpoint, sizeof self->beacon.endpoint, "%s", opts->endpoint);
    self->sending = opts->endpoint[0] != 0;
    if (self->sending) {
        uint8_t probe[SM_BEACON_BYTES_MAX];
        size_t len;
        if (sm_beacon_encode(&self->beacon, id, probe, sizeof probe, &len) != 0) {
            sm_log_error("discover: the endpoint '%s' cannot go in a beacon", opts->endpoint);
            *err = SM_EINVAL;
            goto fail;
        }
    }
    self->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, rcvbuf = SM__DISCOVER_RCVBUF_BYTES;
    struct sockaddr_in any = { .sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (self->fd < 0
        || setsockopt(self->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || setsockopt(self->fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) != 0
        || setsockopt(self->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0
        || bind(self->fd, (const struct sockaddr *) &any, sizeof any) != 0) {
        sm_log_error("discover: cannot listen for beacons on UDP port %u: %s",
                     (unsigned) port, strerror(errno));
        *err = SM_EIO;
        goto fail;
    }
    if (self->sending) {
        sm_log_info("discover: telling %s to %s:%u every %u s", opts->endpoint, addr,
                    (unsigned) port, SM_DISCOVER_INTERVAL_MS / 1000u);
        s_send(self, now_ms);
    } else {
        sm_log_info("discover: listening for beacons on UDP port %u (this node advertises "
                    "no endpoint, so it sends none)", (unsigned) port);
    }
    return self;
fail:
    sm_discover_destroy(&self);
    return NULL;
}

void
sm_discover_destroy(sm_discover **self_p)
{
    assert(self_p);
    sm_discover *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0)
        close(self->fd);
    free(self);
    *self_p = NULL;
}

int
sm_discover_fd(const sm_discover *self)
{
    assert(self);
    return self->fd;
}

void
sm_discover_tick(sm_discover *self, uint64_t now_ms)
{
    assert(self);
    if (self->sending && (now_ms < self->last_sent_ms
                          || now_ms - self->last_sent_ms >= SM_DISCOVER_INTERVAL_MS))
        s_send(self, now_ms);
}

/*  An endpoint with host "*" gets the address `from` in its place.         */
static bool
s_fill_host(const char *endpoint, const struct sockaddr_in *from, char *out, size_t cap)
{
    if (strncmp(endpoint, "tcp://*:", 8) != 0) {
        snprintf(out, cap, "%s", endpoint);
        return true;
    }
    char host[INET_ADDRSTRLEN];
    if (!inet_ntop(AF_INET, &from->sin_addr, host, sizeof host))
        return false;
    int n = snprintf(out, cap, "tcp://%s:%s", host, endpoint + 8);
    return n > 0 && (size_t) n < cap;
}

void
sm_discover_read(sm_discover *self, uint64_t now_ms, sm_discover_fn cb, void *arg)
{
    assert(self && cb);
    for (unsigned i = 0; i < SM_DISCOVER_READS_MAX; i++) {
        /* One byte more than a beacon may have: a larger datagram shows. */
        uint8_t buf[SM_BEACON_BYTES_MAX + 1];
        struct sockaddr_in from;
        socklen_t fromlen = sizeof from;
        ssize_t n = recvfrom(self->fd, buf, sizeof buf, MSG_TRUNC,
                             (struct sockaddr *) &from, &fromlen);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                sm_log_debug("discover: receive failed: %s", strerror(errno));
            return;
        }
        size_t len = (size_t) n > sizeof buf ? sizeof buf : (size_t) n;
        sm_beacon b;
        int rc = sm_beacon_rx_accept(&self->rx, buf, len, now_ms, &b);
        char ep[SM_ENDPOINT_BYTES_MAX + 1];
        if (rc == 0 && from.sin_family == AF_INET && s_fill_host(b.endpoint, &from, ep, sizeof ep)) {
            s_count(self, SM_METRIC_BEACONS_ACCEPTED);
            cb(&b.node, ep, arg);
        } else if (rc != SM_EEXIST) {
            s_count(self, SM_METRIC_BEACONS_REFUSED);
            char src[INET_ADDRSTRLEN] = "?";
            inet_ntop(AF_INET, &from.sin_addr, src, sizeof src);
            /* Debug only: any host on the LAN can send these. */
            sm_log_debug("discover: datagram from %s:%u ignored: %s", src,
                         (unsigned) ntohs(from.sin_port), rc ? sm_strerror(rc) : "no address");
        }
    }
}

void
sm_discover_stats(const sm_discover *self, uint64_t *sent, sm_beacon_counters *rx)
{
    assert(self && sent && rx);
    *sent = self->sent;
    *rx = self->rx.stats;
}
