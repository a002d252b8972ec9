/*  The organiser's routes of the JSON API (proto/api.md section 8):
    GET /api/report and the four CSV exports under /api/export/.

    api.c's route table sends these paths here (sm__api_get_report, after
    its method and token checks); the answers come from the report
    aggregates (report.h), the sales and returns rows (streamed:
    sm_http_stream) and the stock records.  Web thread only, like the rest
    of the API.                                                              */
#ifndef SM_API_REPORT_H
#define SM_API_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include "api.h"

typedef struct {
    sm_ledger *ledger;         /* borrowed: reads only */
    sm_id node;                /* this node */
    const char *tz_default;    /* borrowed: [report] timezone; "" or NULL = the system's */
    const sm_gossip_peer *peers;  /* borrowed: the mesh peers now (stalls_behind) */
    size_t peer_count;
} sm_api_report_ctx;

/*  Answer a GET (or HEAD) of one of them into *resp (zeroed by the caller). */
void sm_api_report_handle(const sm_api_report_ctx *ctx, const sm_http_req *req,
                          uint64_t now_ms, sm_http_resp *resp);

#endif
