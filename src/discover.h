/*  LAN discovery (issue #4, `stallmesh run --discover`): the UDP socket
    that sends this node's beacon and hears the others' (proto/mesh.md
    section 10; the beacon itself is beacon.h).

    One UDP socket, bound to 0.0.0.0:port with SO_REUSEADDR (so several
    nodes on one host can all listen: a broadcast reaches every socket
    bound to its port) and SO_BROADCAST.  The beacon goes to addr:port at
    sm_discover_new and every SM_DISCOVER_INTERVAL_MS after; a node that
    tells no endpoint sends none but still listens.  A datagram is read
    only by sm_discover_read, at most SM_DISCOVER_READS_MAX a call, and
    handed to the receiver's rules (sm_beacon_rx_accept); for each beacon
    accepted the callback gets the node and the endpoint to dial, the
    endpoint's "*" host replaced by the address the datagram came from.

    Runs on the mesh's thread (the core thread); the transport (mesh.c)
    owns it and polls its fd with the ZeroMQ sockets.                       */
#ifndef SM_DISCOVER_H
#define SM_DISCOVER_H

#include <stdbool.h>
#include <stdint.h>
#include "beacon.h"
#include "metrics.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"
#include "stallmesh/limits.h"

#define SM_DISCOVER_ADDR_BYTES_MAX 15u   /* an IPv4 address, dotted quad */

typedef struct {
    bool enabled;
    uint16_t port;                                  /* 0 = SM_DISCOVER_PORT_DEFAULT */
    char addr[SM_DISCOVER_ADDR_BYTES_MAX + 1];      /* where beacons go; "" = 255.255.255.255 */
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1];       /* told in the beacon; "" = send none */
} sm_discover_opts;

typedef struct sm_discover sm_discover;

/*  Open and bind the socket and send the first beacon.  `ledger`, `id` and
    `metrics` (may be NULL) are borrowed and must outlive it.  NULL and
    *err: SM_EINVAL (addr is not an IPv4 address, or the endpoint cannot be
    put in a beacon) or SM_EIO (the socket; logged).                         */
sm_discover *sm_discover_new(const sm_discover_opts *opts, sm_ledger *ledger,
                             const sm_identity *id, const sm_id *market,
                             sm_metrics *metrics, uint64_t now_ms, int *err);
void sm_discover_destroy(sm_discover **self_p);

/*  The socket's file descriptor, to poll for input.                         */
int sm_discover_fd(const sm_discover *self);

/*  Send the beacon if SM_DISCOVER_INTERVAL_MS have passed since the last
    (or the clock went back).                                                 */
void sm_discover_tick(sm_discover *self, uint64_t now_ms);

/*  Read the waiting datagrams (at most SM_DISCOVER_READS_MAX) and call
    `cb` for each beacon accepted.                                           */
typedef void (*sm_discover_fn)(const sm_id *node, const char *endpoint, void *arg);
void sm_discover_read(sm_discover *self, uint64_t now_ms, sm_discover_fn cb, void *arg);

/*  Beacons sent, and the receiver's counters.                               */
void sm_discover_stats(const sm_discover *self, uint64_t *sent, sm_beacon_counters *rx);

#endif
