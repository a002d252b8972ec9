/*  The LAN discovery beacon: encoding, decoding, signature and the
    receiver's rules.  The format is documented byte by byte in beacon.h
    and normatively in proto/mesh.md section 10 (vectors in
    proto/vectors/beacon.txt).  A fixed binary layout rather than msgpack:
    a datagram is read by every node of every market on the LAN, so the
    magic comes first and a stranger's datagram costs four byte compares.  */
#include "beacon.h"

#include <assert.h>
#include <string.h>

#include "stallmesh/error.h"

#define S_OFF_VERSION  4u
#define S_OFF_MARKET   5u
#define S_OFF_NODE     37u
#define S_OFF_TS       69u
#define S_OFF_EPLEN    77u
#define S_OFF_EP       78u
#define S_FIXED_BYTES  (S_OFF_EP + SM_SIG_BYTES)   /* 142: all but the endpoint */

_Static_assert(S_FIXED_BYTES + SM_ENDPOINT_BYTES_MAX == SM_BEACON_BYTES_MAX,
               "SM_BEACON_BYTES_MAX matches the layout");
_Static_assert(SM_ENDPOINT_BYTES_MAX <= 255, "the endpoint length fits one byte");

/*  An endpoint a beacon may carry: "tcp://" then printable ASCII.          */
static bool
s_endpoint_ok(const uint8_t *ep, size_t n)
{
    if (n < 7 || n > SM_ENDPOINT_BYTES_MAX || memcmp(ep, "tcp://", 6) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ep[i] < 0x21 || ep[i] > 0x7e)
            return false;
    return true;
}

int
sm_beacon_encode(const sm_beacon *b, const sm_identity *id, uint8_t *out, size_t cap,
                 size_t *len)
{
    assert(b && id && out && len);
    assert(memcmp(b->node.b, id->pub.b, SM_KEY_BYTES) == 0);
    size_t n = strnlen(b->endpoint, sizeof b->endpoint);
    if (!s_endpoint_ok((const uint8_t *) b->endpoint, n))
        return SM_EINVAL;
    size_t total = S_FIXED_BYTES + n;
    if (cap < total)
        return SM_ETOOBIG;
    memcpy(out, SM_BEACON_MAGIC, 4);
    out[S_OFF_VERSION] = SM_BEACON_VERSION;
    memcpy(out + S_OFF_MARKET, b->market.b, SM_KEY_BYTES);
    memcpy(out + S_OFF_NODE, b->node.b, SM_KEY_BYTES);
    for (unsigned i = 0; i < 8; i++)
        out[S_OFF_TS + i] = (uint8_t) (b->ts_ms >> (56 - 8 * i));
    out[S_OFF_EPLEN] = (uint8_t) n;
    memcpy(out + S_OFF_EP, b->endpoint, n);
    sm_identity_sign(id, out, S_OFF_EP + n, out + S_OFF_EP + n);
    *len = total;
    return 0;
}

int
sm_beacon_decode(const uint8_t *buf, size_t len, sm_beacon *out)
{
    assert(buf || len == 0);
    assert(out);
    if (len > SM_BEACON_BYTES_MAX)
        return SM_ETOOBIG;
    if (len < S_OFF_VERSION + 1)
        return len >= 4 && memcmp(buf, SM_BEACON_MAGIC, 4) != 0 ? SM_EMALFORMED : SM_ETRUNC;
    if (memcmp(buf, SM_BEACON_MAGIC, 4) != 0)
        return SM_EMALFORMED;
    if (buf[S_OFF_VERSION] != SM_BEACON_VERSION)
        return SM_EVERSION;
    if (len < S_OFF_EP)
        return SM_ETRUNC;
    size_t n = buf[S_OFF_EPLEN];
    if (n == 0 || n > SM_ENDPOINT_BYTES_MAX)
        return SM_EMALFORMED;
    if (len < S_FIXED_BYTES + n)
        return SM_ETRUNC;
    if (len > S_FIXED_BYTES + n)
        return SM_EMALFORMED;
    if (!s_endpoint_ok(buf + S_OFF_EP, n))
        return SM_EMALFORMED;
    memset(out, 0, sizeof *out);
    memcpy(out->market.b, buf + S_OFF_MARKET, SM_KEY_BYTES);
    memcpy(out->node.b, buf + S_OFF_NODE, SM_KEY_BYTES);
    uint64_t ts = 0;
    for (unsigned i = 0; i < 8; i++)
        ts = ts << 8 | buf[S_OFF_TS + i];
    out->ts_ms = ts;
    memcpy(out->endpoint, buf + S_OFF_EP, n);
    out->endpoint[n] = 0;
    return 0;
}

int
sm_beacon_verify(const uint8_t *buf, size_t len, const sm_beacon *b)
{
    assert(buf && b && len >= S_FIXED_BYTES && len <= SM_BEACON_BYTES_MAX);
    size_t signed_len = len - SM_SIG_BYTES;
    return sm_sig_verify(&b->node, buf, signed_len, buf + signed_len);
}

/* ---- the receiver ----------------------------------------------------- */

void
sm_beacon_rx_init(sm_beacon_rx *rx, sm_ledger *ledger, const sm_id *market, const sm_id *self)
{
    assert(rx && ledger && market && self);
    memset(rx, 0, sizeof *rx);
    rx->ledger = ledger;
    rx->market = *market;
    rx->self = *self;
}

/*  The index of `node` in rx->seen, or SIZE_MAX.                                 */
static size_t
s_seen_find(const sm_beacon_rx *rx, const sm_id *node)
{
    for (size_t i = 0; i < rx->seen_count; i++)
        if (memcmp(rx->seen[i].node.b, node->b, SM_KEY_BYTES) == 0)
            return i;
    return SIZE_MAX;
}

/*  Remember ts_ms as node's newest; when the table is full, the node heard
    from longest ago (by its own clock) makes room.                          */
static void
s_seen_put(sm_beacon_rx *rx, size_t at, const sm_id *node, uint64_t ts_ms)
{
    if (at == SIZE_MAX) {
        if (rx->seen_count < SM_DISCOVER_NODES_MAX) {
            at = rx->seen_count++;
        } else {
            at = 0;
            for (size_t i = 1; i < rx->seen_count; i++)
                if (rx->seen[i].ts_ms < rx->seen[at].ts_ms)
                    at = i;
        }
        rx->seen[at].node = *node;
    }
    rx->seen[at].ts_ms = ts_ms;
}

/*  The membership rule of the ZAP handler (mesh.c): admitted and not
    revoked, or the organiser before its roster entry about itself came.    */
static int
s_member(sm_beacon_rx *rx, const sm_id *node)
{
    sm_member m;
    int rc = sm_ledger_member(rx->ledger, node, &m);
    if (rc == SM_ENOTFOUND)
        return memcmp(node->b, rx->market.b, SM_KEY_BYTES) == 0 ? 0 : SM_ENOTMEMBER;
    if (rc != 0)
        return rc;
    return m.revoked ? SM_EREVOKED : 0;
}

static int
s_accept(sm_beacon_rx *rx, const uint8_t *buf, size_t len, uint64_t now_ms, sm_beacon *b)
{
    int rc = sm_beacon_decode(buf, len, b);
    if (rc != 0)
        return rc;
    if (memcmp(b->market.b, rx->market.b, SM_KEY_BYTES) != 0)
        return SM_EMARKET;
    if (memcmp(b->node.b, rx->self.b, SM_KEY_BYTES) == 0)
        return SM_EEXIST;
    if ((rc = s_member(rx, &b->node)) != 0)
        return rc;
    size_t at = s_seen_find(rx, &b->node);
    if (at != SIZE_MAX && b->ts_ms <= rx->seen[at].ts_ms)
        return SM_ESTATE;
    if (b->ts_ms > now_ms + SM_FUTURE_SKEW_MS)
        return SM_EFUTURE;
    uint64_t second = now_ms / 1000u;
    if (second != rx->budget_second) {
        rx->budget_second = second;
        rx->budget_used = 0;
    }
    if (rx->budget_used >= SM_DISCOVER_VERIFIES_PER_S)
        return SM_EBUSY;
    rx->budget_used++;
    if ((rc = sm_beacon_verify(buf, len, b)) != 0)
        return rc;
    s_seen_put(rx, at, &b->node, b->ts_ms);
    return 0;
}

int
sm_beacon_rx_accept(sm_beacon_rx *rx, const uint8_t *buf, size_t len, uint64_t now_ms,
                    sm_beacon *out)
{
    assert(rx && (buf || len == 0) && out);
    int rc = s_accept(rx, buf, len, now_ms, out);
    if (rc == 0)
        rx->stats.accepted++;
    else if (rc == SM_EEXIST)
        rx->stats.own++;
    else if (rc == SM_EBUSY)
        rx->stats.dropped++;
    else
        rx->stats.refused++;
    return rc;
}
