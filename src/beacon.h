/*  The LAN discovery beacon, sans I/O (issue #4; proto/mesh.md section 10).

    With --discover a node broadcasts, every SM_DISCOVER_INTERVAL_MS, one
    UDP datagram naming its market, its node id and the mesh endpoint where
    it listens, signed with its key; the nodes of the same market on the
    LAN that hear it dial that endpoint as if it had been given with
    --peer.  A beacon only tells where to knock: the CURVE handshake and ZAP
    still decide who gets in, so a forged or replayed beacon can at most
    make a node dial an address where the named node is not (and the
    receiver refuses even that unless the signature verifies).

    Format (all integers big-endian; total 142 + n bytes, at most
    SM_BEACON_BYTES_MAX):

        offset  size  field
        0       4     magic "SMDB" (53 4d 44 42)
        4       1     version, 1
        5       32    market: the organiser's public key
        37      32    node: the sender's public key
        69      8     ts_ms: the sender's wall clock, milliseconds since
                      1970, strictly increasing from one beacon to the next
        77      1     n: length of the endpoint, 1..SM_ENDPOINT_BYTES_MAX
        78      n     endpoint: "tcp://HOST:PORT", printable ASCII; HOST
                      "*" means "the address this datagram came from"
        78+n    64    Ed25519 signature by `node` over bytes 0 .. 78+n-1

    This module encodes, decodes and verifies beacons, and decides whether
    a receiver accepts one (sm_beacon_rx: market, not itself, a current
    roster member, newer than the last beacon accepted from that node, a
    budget of signature checks a second).  It reads no clock: time comes
    in as now_ms.  The UDP socket is the mesh transport's (mesh.c).         */
#ifndef SM_BEACON_H
#define SM_BEACON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"
#include "stallmesh/limits.h"

#define SM_BEACON_VERSION 1u
#define SM_BEACON_MAGIC   "SMDB"

typedef struct {
    sm_id market;
    sm_id node;
    uint64_t ts_ms;
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1];
} sm_beacon;

/*  Encode `b` and sign it with `id` (whose public key must be b->node) into
    out[0..cap).  *len gets the size.  SM_EINVAL: the endpoint is empty, too
    long, or not printable ASCII starting "tcp://"; SM_ETOOBIG: cap is too
    small.                                                                    */
int sm_beacon_encode(const sm_beacon *b, const sm_identity *id, uint8_t *out,
                     size_t cap, size_t *len);

/*  Parse buf[0..len) into *out; the signature is not checked (see
    sm_beacon_verify).  Returns 0, SM_ETOOBIG (more than
    SM_BEACON_BYTES_MAX), SM_ETRUNC (ends early), SM_EMALFORMED (not a
    beacon: wrong magic, bad endpoint, bytes after the signature) or
    SM_EVERSION.                                                              */
int sm_beacon_decode(const uint8_t *buf, size_t len, sm_beacon *out);

/*  Check the signature of a beacon that sm_beacon_decode accepted (the same
    buf and len) against its node.  0 or SM_ESIG.                             */
int sm_beacon_verify(const uint8_t *buf, size_t len, const sm_beacon *b);

/*  Counters since sm_beacon_rx_init (for /metrics and tests).               */
typedef struct {
    uint64_t accepted;
    uint64_t refused;          /* malformed, other market, not a member,
                                  replayed, bad signature */
    uint64_t own;              /* this node's own beacons, heard back */
    uint64_t dropped;          /* over the signature budget */
} sm_beacon_counters;

/*  A receiver's state: what it last accepted from each node.  Plain data
    (about 40 KiB): embed it or allocate it; no destructor.                  */
typedef struct {
    sm_ledger *ledger;         /* borrowed: the roster */
    sm_id market, self;
    size_t seen_count;
    struct {
        sm_id node;
        uint64_t ts_ms;        /* newest beacon accepted from it */
    } seen[SM_DISCOVER_NODES_MAX];
    uint64_t budget_second;    /* now_ms / 1000 of the current budget */
    uint32_t budget_used;      /* signatures checked in that second */
    sm_beacon_counters stats;
} sm_beacon_rx;

void sm_beacon_rx_init(sm_beacon_rx *rx, sm_ledger *ledger, const sm_id *market,
                       const sm_id *self);

/*  Decide about one datagram.  0: accepted, *out holds it (the caller dials
    out->endpoint).  Otherwise the datagram is ignored and the code says
    why: a decode error (above), SM_EMARKET, SM_EEXIST (this node's own),
    SM_ENOTMEMBER, SM_EREVOKED, SM_ESTATE (not newer than the last beacon
    accepted from that node: a replay), SM_EFUTURE (ts_ms more than
    SM_FUTURE_SKEW_MS past now_ms), SM_EBUSY (SM_DISCOVER_VERIFIES_PER_S
    signatures already checked this second), SM_ESIG, or a ledger error.
    The cheap checks come first, so a flood of forgeries costs at most the
    budget's signature checks a second.                                      */
int sm_beacon_rx_accept(sm_beacon_rx *rx, const uint8_t *buf, size_t len,
                        uint64_t now_ms, sm_beacon *out);

#endif
