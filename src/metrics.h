/*  The node's counters and histograms, rendered for GET /metrics in the
    Prometheus text exposition format (version 0.0.4).

    Every update is a relaxed atomic, so any thread may count without a
    lock; rendering reads them without stopping the writers (each figure is
    exact, the set is not a snapshot).                                        */
#ifndef SM_METRICS_H
#define SM_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    SM_METRIC_ENTRIES_APPENDED,  /* local entries committed */
    SM_METRIC_ENTRIES_INGESTED,  /* peers' entries stored */
    SM_METRIC_SALES,             /* sales committed here */
    SM_METRIC_WRITES_REFUSED,    /* writes the ledger refused */
    SM_METRIC_COMMITS,           /* durable commits */
    SM_METRIC_WS_DROPPED,        /* websocket clients dropped as too slow */
    SM_METRIC_HOLDS_EXPIRED,     /* holds released at expiry */
    SM_METRIC_BEACONS_SENT,      /* LAN discovery beacons sent */
    SM_METRIC_BEACONS_ACCEPTED,  /* beacons of other members accepted */
    SM_METRIC_BEACONS_REFUSED,   /* datagrams on the discovery port ignored */
    SM_METRIC_HTTP_REFUSED_ADDR,     /* connections refused: address at clients_per_addr_max */
    SM_METRIC_HTTP_REFUSED_REQUESTS, /* ... address at requests_per_addr_max */
    SM_METRIC_HTTP_REFUSED_FULL,     /* ... the node at its connection limit */
    SM_METRIC_HTTP_HEADERS_TIMEOUT,  /* connections closed: headers too slow */
    SM_METRIC_HTTP_BODY_TIMEOUT,     /* connections closed: body too slow */
    SM_METRIC_WS_PROTOCOL_ERRORS,    /* websockets closed for a protocol error */
    SM_METRIC_COUNTERS
} sm_metric;

typedef enum {
    SM_GAUGE_WS_CLIENTS,         /* websocket clients connected */
    SM_GAUGE_HTTP_CONNECTIONS,   /* HTTP connections open */
    SM_GAUGE_STATE_VERSION,      /* the stock snapshot's version */
    SM_GAUGE_PEERS_CONNECTED,    /* mesh peers connected now */
    SM_GAUGE_FORKS,              /* fork evidence records held */
    SM_GAUGE_DAMAGED_ORIGINS,    /* origins whose stored log has a bad entry */
    SM_GAUGE_COUNT
} sm_gauge;

typedef struct sm_metrics sm_metrics;

sm_metrics *sm_metrics_new(void);
void sm_metrics_destroy(sm_metrics **self_p);

void sm_metrics_add(sm_metrics *self, sm_metric which, uint64_t n);
void sm_metrics_set(sm_metrics *self, sm_gauge which, int64_t value);
void sm_metrics_gauge_add(sm_metrics *self, sm_gauge which, int64_t delta);
/*  One HTTP response with this status.                                      */
void sm_metrics_http(sm_metrics *self, int status);
/*  One durable commit that took `ns` nanoseconds.                           */
void sm_metrics_commit_ns(sm_metrics *self, uint64_t ns);

/*  The whole exposition text (returned: caller frees); NULL if out of
    memory.                                                                   */
char *sm_metrics_render(sm_metrics *self, size_t *len);

#endif
