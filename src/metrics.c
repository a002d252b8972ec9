/*  The node's counters, gauges and commit-time histogram (src/metrics.h),
    rendered for GET /metrics in the Prometheus text exposition format,
    version 0.0.4 (Content-Type: text/plain; version=0.0.4).

    Every figure is a C11 atomic updated with relaxed order: the figures
    are independent, nothing is published through them.  HTTP responses are
    counted in a fixed array indexed by status (100..599), so counting one
    never allocates or locks; only statuses seen are rendered.

    The histogram keeps one count per bucket (not cumulative) and the sum
    of nanoseconds; rendering accumulates the buckets and gives _count as
    the +Inf bucket, so the +Inf bucket always equals _count even while
    commits are being counted.  Bucket bounds are whole nanoseconds, so a
    commit lands in a bucket exactly (le is inclusive, as Prometheus says).

    Rendered text, for each family:

        # HELP stallmesh_commits_total Durable commits.
        # TYPE stallmesh_commits_total counter
        stallmesh_commits_total 12
        ...
        stallmesh_http_requests_total{code="200"} 31
        ...
        stallmesh_commit_seconds_bucket{le="0.0005"} 3
        ...
        stallmesh_commit_seconds_bucket{le="+Inf"} 12
        stallmesh_commit_seconds_sum 0.004211000
        stallmesh_commit_seconds_count 12                                     */
#include "metrics.h"

#include <assert.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define SM__HTTP_STATUS_MIN 100
#define SM__HTTP_STATUS_MAX 599
#define SM__HTTP_STATUSES (SM__HTTP_STATUS_MAX - SM__HTTP_STATUS_MIN + 1)
#define SM__COMMIT_BUCKETS 12   /* 11 bounds and +Inf */

struct sm_metrics {
    atomic_uint_least64_t counters[SM_METRIC_COUNTERS];
    atomic_int_least64_t gauges[SM_GAUGE_COUNT];
    atomic_uint_least64_t http[SM__HTTP_STATUSES];       /* index: status - 100 */
    atomic_uint_least64_t commit_buckets[SM__COMMIT_BUCKETS]; /* not cumulative */
    atomic_uint_least64_t commit_sum_ns;
};

typedef struct {
    const char *name;
    const char *help;
} s_family;

static const s_family s_counters[SM_METRIC_COUNTERS] = {
    [SM_METRIC_ENTRIES_APPENDED] = {"stallmesh_entries_appended_total",
                                    "Log entries this node wrote and committed."},
    [SM_METRIC_ENTRIES_INGESTED] = {"stallmesh_entries_ingested_total",
                                    "Entries from other nodes stored here."},
    [SM_METRIC_SALES] = {"stallmesh_sales_total", "Sales committed at this node."},
    [SM_METRIC_WRITES_REFUSED] = {"stallmesh_writes_refused_total",
                                  "Writes the ledger refused (bad input, no stock, ...)."},
    [SM_METRIC_COMMITS] = {"stallmesh_commits_total", "Durable commits to the store."},
    [SM_METRIC_WS_DROPPED] = {"stallmesh_ws_dropped_total",
                              "Websocket clients dropped for falling too far behind."},
    [SM_METRIC_HOLDS_EXPIRED] = {"stallmesh_holds_expired_total",
                                 "Holds released because they expired."},
    [SM_METRIC_BEACONS_SENT] = {"stallmesh_beacons_sent_total",
                                "LAN discovery beacons this node sent (--discover)."},
    [SM_METRIC_BEACONS_ACCEPTED] = {"stallmesh_beacons_accepted_total",
                                    "Discovery beacons of other market members accepted."},
    [SM_METRIC_BEACONS_REFUSED] = {"stallmesh_beacons_refused_total",
                                   "Datagrams on the discovery port ignored (malformed, "
                                   "another market, not a member, replayed, bad signature, "
                                   "over the rate limit)."},
    [SM_METRIC_HTTP_REFUSED_ADDR] = {"stallmesh_http_refused_address_total",
                                     "HTTP connections refused because their address already "
                                     "had clients_per_addr_max open."},
    [SM_METRIC_HTTP_REFUSED_REQUESTS] = {"stallmesh_http_refused_requests_total",
                                         "HTTP connections refused because their address "
                                         "already had requests_per_addr_max requests "
                                         "unfinished."},
    [SM_METRIC_HTTP_REFUSED_FULL] = {"stallmesh_http_refused_full_total",
                                     "HTTP connections refused because the node had as many "
                                     "open as it serves."},
    [SM_METRIC_HTTP_HEADERS_TIMEOUT] = {"stallmesh_http_headers_timeouts_total",
                                        "HTTP connections closed for not sending a request's "
                                        "headers within headers_timeout_s."},
    [SM_METRIC_HTTP_BODY_TIMEOUT] = {"stallmesh_http_body_timeouts_total",
                                     "HTTP connections closed for not sending a request's "
                                     "body within body_timeout_s."},
    [SM_METRIC_WS_PROTOCOL_ERRORS] = {"stallmesh_ws_protocol_errors_total",
                                      "Websocket connections closed for a protocol error "
                                      "(a message too large, invalid UTF-8 text)."},
};

static const s_family s_gauges[SM_GAUGE_COUNT] = {
    [SM_GAUGE_WS_CLIENTS] = {"stallmesh_ws_clients", "Websocket clients connected."},
    [SM_GAUGE_HTTP_CONNECTIONS] = {"stallmesh_http_connections", "HTTP connections open."},
    [SM_GAUGE_STATE_VERSION] = {"stallmesh_state_version",
                                "Version of the stock snapshot (the ETag of GET /api/stock)."},
    [SM_GAUGE_PEERS_CONNECTED] = {"stallmesh_peers_connected",
                                  "Mesh peers connected now (set when /metrics is read)."},
    [SM_GAUGE_FORKS] = {"stallmesh_forks",
                        "Fork evidence records (origin, seq) held; above 0 an origin "
                        "equivocated and is quarantined (set when /metrics is read)."},
    [SM_GAUGE_DAMAGED_ORIGINS] = {"stallmesh_damaged_origins",
                                  "Origins with a stored entry that does not verify: "
                                  "served only below it; above 0 run 'stallmesh repair' "
                                  "(set when /metrics is read)."},
};

/* Upper bounds in nanoseconds and as rendered; the last is +Inf. */
static const uint64_t s_bucket_ns[SM__COMMIT_BUCKETS - 1] = {
    500000, 1000000, 2000000, 5000000, 10000000, 20000000,
    50000000, 100000000, 250000000, 500000000, 1000000000,
};
static const char *const s_bucket_le[SM__COMMIT_BUCKETS] = {
    "0.0005", "0.001", "0.002", "0.005", "0.01", "0.02",
    "0.05", "0.1", "0.25", "0.5", "1", "+Inf",
};

/*  A new set of metrics, all zero (returned: destroy with
    sm_metrics_destroy); NULL if out of memory.                              */
sm_metrics *
sm_metrics_new(void)
{
    sm_metrics *self = malloc(sizeof *self);
    if (self == NULL)
        return NULL;
    for (int i = 0; i < SM_METRIC_COUNTERS; i++)
        atomic_init(&self->counters[i], 0);
    for (int i = 0; i < SM_GAUGE_COUNT; i++)
        atomic_init(&self->gauges[i], 0);
    for (int i = 0; i < SM__HTTP_STATUSES; i++)
        atomic_init(&self->http[i], 0);
    for (int i = 0; i < SM__COMMIT_BUCKETS; i++)
        atomic_init(&self->commit_buckets[i], 0);
    atomic_init(&self->commit_sum_ns, 0);
    return self;
}

/*  Free *self_p and set it to NULL; safe on NULL and twice.  No thread may
    still be counting.                                                        */
void
sm_metrics_destroy(sm_metrics **self_p)
{
    assert(self_p != NULL);
    free(*self_p);
    *self_p = NULL;
}

/*  Add n to a counter.                                                       */
void
sm_metrics_add(sm_metrics *self, sm_metric which, uint64_t n)
{
    assert(self != NULL);
    assert((unsigned)which < SM_METRIC_COUNTERS);
    atomic_fetch_add_explicit(&self->counters[which], n, memory_order_relaxed);
}

/*  Set a gauge.                                                              */
void
sm_metrics_set(sm_metrics *self, sm_gauge which, int64_t value)
{
    assert(self != NULL);
    assert((unsigned)which < SM_GAUGE_COUNT);
    atomic_store_explicit(&self->gauges[which], value, memory_order_relaxed);
}

/*  Add delta (may be negative) to a gauge.                                   */
void
sm_metrics_gauge_add(sm_metrics *self, sm_gauge which, int64_t delta)
{
    assert(self != NULL);
    assert((unsigned)which < SM_GAUGE_COUNT);
    atomic_fetch_add_explicit(&self->gauges[which], delta, memory_order_relaxed);
}

/*  Count one HTTP response.  status must be 100..599 (the server chose
    it, so anything else is a bug).                                          */
void
sm_metrics_http(sm_metrics *self, int status)
{
    assert(self != NULL);
    assert(status >= SM__HTTP_STATUS_MIN && status <= SM__HTTP_STATUS_MAX);
    atomic_fetch_add_explicit(&self->http[status - SM__HTTP_STATUS_MIN], 1,
                              memory_order_relaxed);
}

/*  Count one durable commit that took ns nanoseconds: the first bucket
    whose bound is >= ns, or +Inf.                                            */
void
sm_metrics_commit_ns(sm_metrics *self, uint64_t ns)
{
    assert(self != NULL);
    int b = 0;
    while (b < SM__COMMIT_BUCKETS - 1 && ns > s_bucket_ns[b])
        b++;
    atomic_fetch_add_explicit(&self->commit_buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&self->commit_sum_ns, ns, memory_order_relaxed);
}

/*  Write the HELP and TYPE lines of one family.                              */
static void
s_header(FILE *out, const char *name, const char *help, const char *type)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*  The exposition text, NUL-terminated (returned: caller frees); its
    length without the NUL in *len if len is non-NULL.  NULL if out of
    memory.                                                                   */
char *
sm_metrics_render(sm_metrics *self, size_t *len)
{
    assert(self != NULL);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (out == NULL)
        return NULL;

    for (int i = 0; i < SM_METRIC_COUNTERS; i++) {
        s_header(out, s_counters[i].name, s_counters[i].help, "counter");
        fprintf(out, "%s %" PRIu64 "\n", s_counters[i].name, (uint64_t)atomic_load_explicit(
                    &self->counters[i], memory_order_relaxed));
    }
    for (int i = 0; i < SM_GAUGE_COUNT; i++) {
        s_header(out, s_gauges[i].name, s_gauges[i].help, "gauge");
        fprintf(out, "%s %" PRId64 "\n", s_gauges[i].name, (int64_t)atomic_load_explicit(
                    &self->gauges[i], memory_order_relaxed));
    }

    s_header(out, "stallmesh_http_requests_total", "HTTP responses by status code.",
             "counter");
    for (int i = 0; i < SM__HTTP_STATUSES; i++) {
        uint64_t n = atomic_load_explicit(&self->http[i], memory_order_relaxed);
        if (n > 0)
            fprintf(out, "stallmesh_http_requests_total{code=\"%d\"} %" PRIu64 "\n",
                    i + SM__HTTP_STATUS_MIN, n);
    }

    s_header(out, "stallmesh_commit_seconds", "Time a durable commit took.", "histogram");
    uint64_t cumulative = 0;
    for (int b = 0; b < SM__COMMIT_BUCKETS; b++) {
        cumulative += atomic_load_explicit(&self->commit_buckets[b], memory_order_relaxed);
        fprintf(out, "stallmesh_commit_seconds_bucket{le=\"%s\"} %" PRIu64 "\n",
                s_bucket_le[b], cumulative);
    }
    uint64_t sum_ns = atomic_load_explicit(&self->commit_sum_ns, memory_order_relaxed);
    fprintf(out, "stallmesh_commit_seconds_sum %" PRIu64 ".%09" PRIu64 "\n",
            sum_ns / 1000000000u, sum_ns % 1000000000u);
    fprintf(out, "stallmesh_commit_seconds_count %" PRIu64 "\n", cumulative);

    /* Write errors (out of memory) stick to the stream; fclose reports them. */
    int bad = ferror(out);
    if (fclose(out) != 0 || bad) {
        free(text);
        return NULL;
    }
    if (len != NULL)
        *len = size;
    return text;
}
