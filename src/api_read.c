/*  The API's reads (GET; HEAD is the same answer without the body): this
    node's sales, the state's digest and heads, the mesh peers, health and
    metrics.  Each is answered at once from LMDB read transactions (through
    the ledger) and written with the JSON writer; none changes anything but
    the metrics gauges set at scrape time.  GET /api/stock, the hot path,
    is the snapshot's and lives with it in api.c.                            */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"

#define S_SALES_PAGE_DEFAULT 100u

static const char s_metrics_type[] = "text/plain; version=0.0.4; charset=utf-8";

/* ====================================================================== */
/* GET /api/sales                                                          */

typedef struct {
    sm_json_buf *b;
    uint64_t last;
} s_sales_ctx;

static int
s_sales_cb(const sm_sale *sale, void *arg)
{
    s_sales_ctx *c = arg;
    sm__api_sale_json(c->b, sale, NULL);
    c->last = sale->seq;
    return c->b->failed ? 1 : 0;
}

/*  GET /api/sales?since=&limit=: this node's sales with seq > since.       */
int
sm__api_get_sales(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    (void) now_ms;
    (void) write;
    uint64_t since = 0, limit = S_SALES_PAGE_DEFAULT;
    const char *q = req->query ? req->query : "";
    for (size_t guard = 0; *q && guard < 64; guard++) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t) (amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        if (eq) {
            size_t klen = (size_t) (eq - q), vlen = n - klen - 1;
            const char *v = eq + 1;
            if (klen == 5 && memcmp(q, "since", 5) == 0) {
                if (!sm__api_parse_uint(v, vlen, SM_SEQ_MAX, &since)) {
                    sm__api_bad(r, "bad_query", "since",
                                "'since' must be a sale seq (a whole number, 0 for the first page)");
                    return SM_API_DONE;
                }
            } else if (klen == 5 && memcmp(q, "limit", 5) == 0) {
                if (!sm__api_parse_uint(v, vlen, UINT32_MAX, &limit) || limit == 0) {
                    sm__api_bad(r, "bad_query", "limit",
                                "'limit' must be a whole number from 1 (at most %u are returned)",
                                SM_SALES_PAGE_MAX);
                    return SM_API_DONE;
                }
            }
        }
        q += n;
        if (*q == '&')
            q++;
    }
    if (limit > SM_SALES_PAGE_MAX)
        limit = SM_SALES_PAGE_MAX;
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_key(&b, "sales");
    sm_json_arr_open(&b);
    s_sales_ctx c = { &b, since };
    int rc = 0;
    if (since < SM_SEQ_MAX)
        rc = sm_ledger_sales_each(self->ledger, &self->node, since + 1,
                                  (size_t) limit, s_sales_cb, &c);
    if (rc != 0) {
        sm_json_buf_free(&b);
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    sm_json_arr_close(&b);
    sm_json_kuint(&b, "next", c.last);
    sm_json_obj_close(&b);
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

/* ====================================================================== */
/* GET /api/state                                                          */

static int
s_head_cb(const sm_head *h, void *arg)
{
    sm_json_buf *b = arg;
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&h->origin, hex);
    sm_json_key(b, hex);
    sm_json_obj_open(b);
    sm_json_kuint(b, "seq", h->seq);
    sm_json_kuint(b, "applied", h->applied);
    sm_json_obj_close(b);
    return b->failed ? 1 : 0;
}

/*  Fork evidence, as the "forks" list into `b` and each forked origin once
    into `origins` (the records come in (origin, seq) order).               */
typedef struct {
    sm_json_buf *b;
    sm_json_buf *origins;
    size_t n_origins;
    sm_id last;
} s_forks_ctx;

static int
s_fork_cb(const sm_id *origin, uint64_t seq, void *arg)
{
    s_forks_ctx *c = arg;
    sm_json_obj_open(c->b);
    sm_json_kid(c->b, "origin", origin);
    sm_json_kuint(c->b, "seq", seq);
    sm_json_obj_close(c->b);
    if (c->n_origins == 0 || memcmp(c->last.b, origin->b, SM_KEY_BYTES) != 0) {
        c->n_origins++;
        sm_json_id(c->origins, origin);
        c->last = *origin;
    }
    return c->b->failed || c->origins->failed ? 1 : 0;
}

/*  GET /api/state: digest, heads, fork evidence and the origins it
    quarantines.                                                             */
/*  "damaged":[{"origin":ID,"seq":N,"error":CODE}...]: origins whose stored
    log has an entry that does not verify (served only below it).           */
static void
s_damaged_json(sm_api *self, sm_json_buf *b)
{
    sm_damage d[SM_CHECK_DAMAGED_MAX];
    size_t n = sm_ledger_damage_each(self->ledger, d, SM_CHECK_DAMAGED_MAX);
    n = n < SM_CHECK_DAMAGED_MAX ? n : SM_CHECK_DAMAGED_MAX;
    sm_json_key(b, "damaged");
    sm_json_arr_open(b);
    for (size_t i = 0; i < n; i++) {
        sm_json_obj_open(b);
        sm_json_kid(b, "origin", &d[i].origin);
        sm_json_kuint(b, "seq", d[i].seq);
        sm_json_kstr(b, "error", sm_errname(d[i].err));
        sm_json_obj_close(b);
    }
    sm_json_arr_close(b);
}

int
sm__api_get_state(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    (void) req;
    (void) now_ms;
    (void) write;
    /* In constant time: the node's store keeps the digest's sum as it
       writes (sm_ledger_keep_digest). */
    uint64_t version;
    sm_hash digest;
    int rc = sm_ledger_digest_at(self->ledger, &digest, &version);
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    char hex[2 * SM_HASH_BYTES + 1];
    sm_hex_encode(digest.b, SM_HASH_BYTES, hex);
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kid(&b, "node", &self->node);
    sm_json_kuint(&b, "version", version);
    sm_json_kstr(&b, "digest", hex);
    sm_json_key(&b, "heads");
    sm_json_obj_open(&b);
    rc = sm_ledger_heads(self->ledger, s_head_cb, &b);
    sm_json_obj_close(&b);
    sm_json_key(&b, "forks");
    sm_json_arr_open(&b);
    sm_json_buf origins = { 0 };        /* a top-level list: "a","b" */
    s_forks_ctx fc = { &b, &origins, 0, { { 0 } } };
    if (rc == 0)
        rc = sm_ledger_forks_each(self->ledger, s_fork_cb, &fc);
    sm_json_arr_close(&b);
    sm_json_key(&b, "quarantined");
    sm_json_arr_open(&b);
    sm_json_raw(&b, origins.p, origins.len);
    sm_json_arr_close(&b);
    s_damaged_json(self, &b);
    sm_json_obj_close(&b);
    if (rc == 0 && origins.failed)
        rc = SM_ENOMEM;
    sm_json_buf_free(&origins);
    if (rc != 0) {
        sm_json_buf_free(&b);
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

/* ====================================================================== */
/* GET /api/peers                                                          */

static int
s_peer_cmp(const void *a, const void *b)
{
    return memcmp(((const sm_gossip_peer *) a)->node.b,
                  ((const sm_gossip_peer *) b)->node.b, SM_KEY_BYTES);
}

size_t
sm__api_peers(sm_api *self, sm_gossip_peer *out)
{
    size_t n = 0;
    if (self->peers)
        n = self->peers(self->peers_arg, out, SM_PEERS_MAX);
    assert(n <= SM_PEERS_MAX);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(out[i].node.b, self->node.b, SM_KEY_BYTES) != 0)
            out[kept++] = out[i];
    if (kept > 1)
        qsort(out, kept, sizeof *out, s_peer_cmp);
    return kept;
}

/*  GET /api/peers: the mesh peers with their roster names and counters.    */
int
sm__api_get_peers(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    (void) req;
    (void) now_ms;
    (void) write;
    sm_gossip_peer *peers = calloc(SM_PEERS_MAX, sizeof *peers);
    if (!peers) {
        sm__api_nomem(r);
        return SM_API_DONE;
    }
    size_t n = sm__api_peers(self, peers);
    sm_json_buf b = { 0 };
    int rc = 0;
    sm_json_obj_open(&b);
    sm_json_key(&b, "peers");
    sm_json_arr_open(&b);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const sm_gossip_peer *p = &peers[i];
        sm_member m;
        rc = sm_ledger_member(self->ledger, &p->node, &m);
        if (rc == SM_ENOTFOUND) {
            m.name[0] = '\0';      /* its admission has not arrived yet */
            rc = 0;
        }
        sm_json_obj_open(&b);
        sm_json_kid(&b, "node", &p->node);
        sm_json_kstr(&b, "name", m.name);
        /* Endpoints may come from other nodes' PEERS: ASCII only here. */
        char endpoint[sizeof p->endpoint];
        size_t elen = strnlen(p->endpoint, sizeof p->endpoint - 1);
        for (size_t k = 0; k < elen; k++)
            endpoint[k] = (unsigned char) p->endpoint[k] < 0x80 ? p->endpoint[k] : '?';
        sm_json_key(&b, "endpoint");
        sm_json_strn(&b, endpoint, elen);
        sm_json_kbool(&b, "connected", p->up);
        if (p->last_seen_ms) {
            sm_json_ktime(&b, "last_seen", p->last_seen_ms);
        } else {
            sm_json_key(&b, "last_seen");
            sm_json_null(&b);
        }
        sm_json_kuint(&b, "entries_behind", p->entries_behind);
        sm_json_kuint(&b, "entries_received", p->entries_received);
        sm_json_kuint(&b, "entries_sent", p->entries_sent);
        sm_json_kuint(&b, "refused", p->refused);
        if (p->run_refusal) {
            /* Why its last refused run was refused: a peer serving a bad entry. */
            sm_json_key(&b, "last_refusal");
            sm_json_obj_open(&b);
            sm_json_kid(&b, "origin", &p->run_refusal_origin);
            sm_json_kuint(&b, "seq", p->run_refusal_seq);
            sm_json_kstr(&b, "error", sm_errname(p->run_refusal));
            sm_json_kstr(&b, "message", sm_strerror(p->run_refusal));
            sm_json_obj_close(&b);
        }
        sm_json_obj_close(&b);
    }
    free(peers);
    if (rc != 0) {
        sm_json_buf_free(&b);
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    sm_json_arr_close(&b);
    sm_json_obj_close(&b);
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

/* ====================================================================== */
/* Health and metrics                                                      */

int
sm__api_get_livez(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    (void) self;
    (void) req;
    (void) now_ms;
    (void) write;
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kstr(&b, "status", "ok");
    sm_json_obj_close(&b);
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

int
sm__api_get_readyz(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                   sm_http_resp *r, sm_core_req **write)
{
    (void) req;
    (void) now_ms;
    (void) write;
    uint64_t version;
    int rc = sm_ledger_version(self->ledger, &version);
    sm_json_buf b = { 0 };
    if (rc != 0) {
        sm__api_error_begin(&b, sm_errname(rc), sm_strerror(rc));
        sm_json_kstr(&b, "status", "unavailable");
        sm__api_error_end(r, 503, &b);
        return SM_API_DONE;
    }
    if (sm_ledger_damage_each(self->ledger, NULL, 0) > 0) {
        /* Serving, but not all of it: a load balancer should know. */
        sm__api_error_begin(&b, sm_errname(SM_EDEGRADED), sm_strerror(SM_EDEGRADED));
        sm_json_kstr(&b, "status", "degraded");
        s_damaged_json(self, &b);
        sm__api_error_end(r, 503, &b);
        return SM_API_DONE;
    }
    sm_json_obj_open(&b);
    sm_json_kstr(&b, "status", "ready");
    sm_json_kuint(&b, "version", version);
    sm_json_obj_close(&b);
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

static int
s_count_fork(const sm_id *origin, uint64_t seq, void *arg)
{
    (void) origin;
    (void) seq;
    (*(int64_t *) arg)++;
    return 0;
}

/*  Set the gauges read at scrape time: peers connected, fork evidence,
    damaged origins.
    A ledger that cannot be read leaves the fork gauge as it was.            */
static void
s_scrape_gauges(sm_api *self)
{
    sm_gossip_peer *peers = calloc(SM_PEERS_MAX, sizeof *peers);
    if (peers) {
        size_t n = sm__api_peers(self, peers);
        int64_t up = 0;
        for (size_t i = 0; i < n; i++)
            up += peers[i].up;
        free(peers);
        sm_metrics_set(self->metrics, SM_GAUGE_PEERS_CONNECTED, up);
    }
    int64_t forks = 0;
    if (sm_ledger_forks_each(self->ledger, s_count_fork, &forks) == 0)
        sm_metrics_set(self->metrics, SM_GAUGE_FORKS, forks);
    sm_metrics_set(self->metrics, SM_GAUGE_DAMAGED_ORIGINS,
                   (int64_t) sm_ledger_damage_each(self->ledger, NULL, 0));
}

int
sm__api_get_metrics(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                    sm_http_resp *r, sm_core_req **write)
{
    (void) req;
    (void) now_ms;
    (void) write;
    if (!self->metrics) {
        sm__api_error(r, 404, "not_found", "this node keeps no metrics", NULL);
        return SM_API_DONE;
    }
    s_scrape_gauges(self);
    size_t len = 0;
    char *text = sm_metrics_render(self->metrics, &len);
    if (!text) {
        sm__api_nomem(r);
        return SM_API_DONE;
    }
    r->status = 200;
    r->content_type = s_metrics_type;
    r->body = text;
    r->body_len = len;
    r->cache_control = sm__api_no_store;
    return SM_API_DONE;
}
