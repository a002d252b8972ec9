/*  The API's reads of reservations: GET /api/holds (the till's list, with
    the token) and GET /api/holds/<id> (a phone checking its own).

    GET /api/holds?open=1&code=XXXXXX lists this stall's open holds, oldest
    first, each with its pickup code, lines and time left; with `code` only
    the hold with that code (404 unknown_code if none is open).  A code is
    matched in upper case with surrounding spaces trimmed, as a barcode
    scanner or a hurried typist may send it.

    GET /api/qr?code=XXXXXX draws a pickup code as a QR code (SVG) for the
    phone to show; only a pickup code's shape is drawn, nothing else.

    GET /api/holds/<id> needs no token: it answers the hold's state (open,
    sold, expired, cancelled), lines and expiry, never its code, so a phone
    learns that its reservation was picked up or ran out.                   */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "qr.h"
#include "reserve.h"
#include "stallmesh/error.h"

typedef struct {
    sm_api *api;
    sm_json_buf *b;
    const char *code;               /* "" = every open hold */
    uint64_t now_ms;
    size_t count;
} s_list;

static int
s_list_each(const sm_hold *h, void *arg)
{
    s_list *l = arg;
    if (l->code[0] && strcmp(h->code, l->code) != 0)
        return 0;
    sm__api_hold_json(l->api, l->b, h, true, l->now_ms);
    l->count++;
    return l->b->failed ? 1 : 0;
}

/*  The value of `key` in the query into out[cap] (not decoded: codes and
    "1" need none): 1 if present, 0 if not, -1 if longer than cap - 1.       */
static int
s_query_get(const char *q, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    for (size_t guard = 0; q && *q && guard < 64; guard++) {
        size_t n = strcspn(q, "&");
        if (n > klen && memcmp(q, key, klen) == 0 && q[klen] == '=') {
            size_t vlen = n - klen - 1;
            if (vlen >= cap)
                return -1;
            memcpy(out, q + klen + 1, vlen);
            out[vlen] = '\0';
            /* "+" and "%20" are spaces a form may send around a code. */
            for (char *c = out; *c; c++)
                if (*c == '+')
                    *c = ' ';
            return 1;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return 0;
}

int
sm__api_get_holds(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    (void) write;
    char open[8], raw[32], code[SM_HOLD_CODE_CHARS + 1] = "";
    int got = s_query_get(req->query, "open", open, sizeof open);
    if (got < 0 || (got == 1 && strcmp(open, "1") != 0)) {
        sm__api_bad(r, "bad_query", "open",
                    "'open' must be 1: this stall lists its open holds (an ended one "
                    "is read with GET /api/holds/<id>)");
        return SM_API_DONE;
    }
    got = s_query_get(req->query, "code", raw, sizeof raw);
    if (got != 0 && !sm_reserve_code_norm(got == 1 ? raw : "", code)) {
        sm_json_buf e = { 0 };
        sm__api_error_begin(&e, "unknown_code",
                            "no open reservation has that code: a pickup code is 6 "
                            "letters and digits, as the shopper's phone shows it");
        sm_json_kstr(&e, "field", "code");
        sm__api_error_end(r, 404, &e);
        return SM_API_DONE;
    }
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_ktime(&b, "now", now_ms);
    sm_json_key(&b, "holds");
    sm_json_arr_open(&b);
    s_list l = { self, &b, code, now_ms, 0 };
    int rc = sm_ledger_holds_each(self->ledger, &self->node, s_list_each, &l);
    if (rc != 0) {
        sm_json_buf_free(&b);
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    sm_json_arr_close(&b);
    sm_json_obj_close(&b);
    if (code[0] && l.count == 0) {
        sm_json_buf_free(&b);
        sm_json_buf e = { 0 };
        sm__api_error_begin(&e, "unknown_code",
                            "no open reservation has that code here: it may have been "
                            "picked up, cancelled or expired");
        sm_json_kstr(&e, "code", code);
        sm__api_error_end(r, 404, &e);
        return SM_API_DONE;
    }
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

int
sm__api_get_hold(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                 sm_http_resp *r, sm_core_req **write)
{
    (void) write;
    const char *text = req->path + strlen(SM__API_HOLD_PATH);
    sm_id origin;
    uint64_t seq;
    if (!sm__api_parse_entry_id(text, &origin, &seq)) {
        sm__api_bad(r, "bad_value", "id",
                    "the hold id must be \"<64 hex digits>:<seq>\" as POST /api/holds returned it");
        return SM_API_DONE;
    }
    sm_hold h;
    int rc = sm_ledger_hold_find(self->ledger, &origin, seq, &h);
    if (rc == SM_ENOTFOUND) {
        sm__api_error(r, 404, "unknown_hold",
                      memcmp(origin.b, self->node.b, SM_KEY_BYTES) == 0
                          ? "no reservation with that id at this stall"
                          : "no reservation with that id (one made at another stall "
                            "shows here once its entry has arrived)", "id");
        return SM_API_DONE;
    }
    if (rc != 0) {
        sm__api_ledger_error(r, rc, false);
        return SM_API_DONE;
    }
    sm_json_buf b = { 0 };
    sm__api_hold_json(self, &b, &h, req->authorized, now_ms);
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

int
sm__api_get_qr(sm_api *self, const sm_http_req *req, uint64_t now_ms,
               sm_http_resp *r, sm_core_req **write)
{
    (void) self;
    (void) now_ms;
    (void) write;
    char raw[32], code[SM_HOLD_CODE_CHARS + 1];
    if (s_query_get(req->query, "code", raw, sizeof raw) != 1
        || !sm_reserve_code_norm(raw, code)) {
        sm__api_bad(r, "bad_query", "code",
                    "'code' must be a pickup code: 6 letters and digits");
        return SM_API_DONE;
    }
    sm_qr qr;
    int rc = sm_qr_encode(code, 1, &qr);     /* level M, as printed codes */
    if (rc != 0) {
        sm__api_nomem(r);
        return SM_API_DONE;
    }
    size_t len;
    char *svg = sm_qr_svg(&qr, "pickup code", code, &len);
    sm_qr_clear(&qr);
    if (!svg) {
        sm__api_nomem(r);
        return SM_API_DONE;
    }
    r->status = 200;
    r->content_type = "image/svg+xml";
    r->body = svg;
    r->body_len = len;
    r->body_borrowed = false;
    r->cache_control = "public, max-age=86400";
    return SM_API_DONE;
}
