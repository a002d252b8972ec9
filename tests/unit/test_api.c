/*  Unit tests of the JSON API (src/api.c) against a real ledger in a
    temporary directory.  A write that sm_api_handle hands back is executed
    the way the core does it: sm_ledger_append on the request's body, with
    rc and seq stored in the request, then sm_api_finish.  Responses are
    parsed with jansson and checked field by field.                          */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

#define NOW 1700000000000ULL        /* 2023-11-14T22:13:20.000Z */
#define TILL "127.0.0.1"
#define PHONE "10.0.0.7"
#define S_ID_MAX_TEST (SM_ID_HEX_BYTES + 24)  /* "<hex>:<seq>" and a NUL */

typedef struct {
    char *dir;
    sm_identity ida, idb;
    sm_ledger *a, *b;              /* a: this node (organiser), b: another stall */
    sm_api *api;
    char a_hex[SM_ID_HEX_BYTES + 1], b_hex[SM_ID_HEX_BYTES + 1];
    sm_http_resp resp;             /* the last answer */
    json_t *json;                  /* its body, parsed (NULL if none) */
    int handled;                   /* what sm_api_handle returned */
} fx;

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    tu_identity(&f->ida, 1);
    tu_identity(&f->idb, 2);
    f->a = tu_open(f->dir, "a");
    f->b = tu_open(f->dir, "b");
    sm_ledger_set_identity(f->a, &f->ida);
    sm_ledger_set_identity(f->b, &f->idb);
    assert_int_equal(sm_ledger_create_market(f->a, "Saturday Market", "GBP", NOW), 0);
    sm_body admit = tu_admit(&f->idb.pub, "Bakery", SM_ROLE_STALL);
    assert_int_equal(sm_ledger_append(f->a, &admit, NOW, NULL), 0);
    tu_join(f->b, f->a);
    tu_sync(f->a, f->b, NOW);
    sm_id_format(&f->ida.pub, f->a_hex);
    sm_id_format(&f->idb.pub, f->b_hex);
    sm_api_opts o = { .ledger = f->a, .node = f->ida.pub, .metrics = NULL,
                      .hold_ttl_s = 600, .holds_per_min = 3 };
    int err = -1;
    f->api = sm_api_new(&o, &err);
    assert_non_null(f->api);
    assert_int_equal(err, 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    sm_http_resp_clear(&f->resp);
    json_decref(f->json);
    sm_api_destroy(&f->api);
    sm_api_destroy(&f->api);        /* safe twice */
    sm_ledger_destroy(&f->a);
    sm_ledger_destroy(&f->b);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/*  Parse the last answer's body into f->json (NULL when it has none).      */
static void
parse_resp(fx *f)
{
    json_decref(f->json);
    f->json = NULL;
    if (f->resp.body_len == 0)
        return;
    assert_non_null(f->resp.body);
    json_error_t e;
    f->json = json_loadb(f->resp.body, f->resp.body_len, 0, &e);
    if (!f->json)
        fail_msg("answer is not JSON (%s): %.*s", e.text, (int) f->resp.body_len,
                 f->resp.body);
}

/*  Execute a write as the core would: append, store rc and seq.             */
static void
execute(fx *f, sm_core_req *w, uint64_t now_ms)
{
    w->rc = sm_ledger_append(f->a, &w->body, now_ms, &w->seq);
    w->hlc = w->rc == 0 ? sm_ledger_hlc(f->a) : 0;
}

/*  One request through the API; returns the status.                         */
static int
call_full(fx *f, sm_http_method m, const char *path, const char *query,
          const char *body, bool auth, const char *client, const char *inm,
          uint64_t now_ms)
{
    sm_http_resp_clear(&f->resp);
    sm_http_req req = {
        .method = m, .path = path, .query = query ? query : "",
        .authorized = auth, .client = client, .if_none_match = inm,
        .body = body, .body_len = body ? strlen(body) : 0,
    };
    sm_core_req *w = NULL;
    f->handled = sm_api_handle(f->api, &req, now_ms, &f->resp, &w);
    if (f->handled == SM_API_WRITE) {
        assert_non_null(w);
        execute(f, w, now_ms);
        sm_api_finish(f->api, w, now_ms, &f->resp);
    } else {
        assert_int_equal(f->handled, SM_API_DONE);
        assert_null(w);
    }
    parse_resp(f);
    return f->resp.status;
}

static int
post(fx *f, const char *path, const char *body)
{
    return call_full(f, SM_HTTP_POST, path, NULL, body, true, TILL, NULL, NOW);
}

static int
get(fx *f, const char *path, const char *query)
{
    return call_full(f, SM_HTTP_GET, path, query, NULL, true, TILL, NULL, NOW);
}

static const char *
jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("'%s' is not a string", key);
    return json_string_value(v);
}

static int64_t
jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("'%s' is not an integer", key);
    return (int64_t) json_integer_value(v);
}

/*  Assert the last answer is `status` with error `code`.                   */
static void
expect_error(fx *f, int status, const char *code)
{
    if (f->resp.status != status)
        fail_msg("status %d, expected %d: %.*s", f->resp.status, status,
                 (int) f->resp.body_len, f->resp.body ? f->resp.body : "");
    assert_non_null(f->json);
    assert_string_equal(jstr(f->json, "error"), code);
    assert_true(strlen(jstr(f->json, "detail")) > 0);
    assert_string_equal(f->resp.content_type, "application/json");
}

/*  The catalog and stock most tests start from: jam (GBP 450, 10 here),
    tea (GBP 300, 5 here).                                                   */
static void
stock_up(fx *f)
{
    assert_int_equal(post(f, "/api/items", "{\"sku\":\"jam\",\"name\":\"Plum jam\",\"price\":450}"), 201);
    assert_int_equal(post(f, "/api/items", "{\"sku\":\"tea\",\"name\":\"Tea\",\"price\":300,\"currency\":\"GBP\"}"), 201);
    assert_int_equal(post(f, "/api/stock/add", "{\"sku\":\"jam\",\"qty\":10}"), 201);
    assert_int_equal(post(f, "/api/stock/add", "{\"sku\":\"tea\",\"qty\":5}"), 201);
}

static int64_t
units_here(fx *f, const char *sku)
{
    sm_units u;
    assert_int_equal(sm_ledger_units(f->a, sku, &f->ida.pub, &u), 0);
    return u.units;
}

static void
refresh(fx *f, int expect)
{
    char *delta = NULL;
    size_t len = 0;
    assert_int_equal(sm_api_refresh(f->api, NOW, &delta, &len), expect);
    free(delta);
}

/* ---- writes ------------------------------------------------------------- */

/*  Items, stock add and adjust succeed and answer what was written.         */
static void
test_item_stock_adjust(void **state)
{
    fx *f = *state;
    assert_int_equal(post(f, "/api/items", "{\"sku\":\"jam\",\"name\":\"Plum jam\",\"price\":450}"), 201);
    assert_string_equal(jstr(f->json, "sku"), "jam");
    assert_string_equal(jstr(f->json, "currency"), "GBP");   /* the market's */
    assert_int_equal(jint(f->json, "price"), 450);
    sm_item it;
    assert_int_equal(sm_ledger_item(f->a, "jam", &it), 0);
    assert_string_equal(it.name, "Plum jam");

    assert_int_equal(post(f, "/api/stock/add", "{\"sku\":\"jam\",\"qty\":10}"), 201);
    assert_int_equal(jint(f->json, "here"), 10);
    assert_int_equal(jint(f->json, "total"), 10);
    assert_int_equal(units_here(f, "jam"), 10);

    assert_int_equal(post(f, "/api/stock/adjust", "{\"sku\":\"jam\",\"qty\":-3,\"reason\":\"dropped\"}"), 201);
    assert_int_equal(jint(f->json, "qty"), -3);
    assert_int_equal(jint(f->json, "here"), 7);
    assert_string_equal(jstr(f->json, "reason"), "dropped");

    /* Never below what is here. */
    post(f, "/api/stock/adjust", "{\"sku\":\"jam\",\"qty\":-8,\"reason\":\"count\"}");
    expect_error(f, 409, "insufficient_stock");
    assert_int_equal(jint(f->json, "here"), 7);
    assert_int_equal(units_here(f, "jam"), 7);
    post(f, "/api/stock/adjust", "{\"sku\":\"jam\",\"qty\":0,\"reason\":\"count\"}");
    expect_error(f, 400, "bad_quantity");
    post(f, "/api/items", "{\"sku\":\"x\",\"name\":\"X\",\"price\":1,\"currency\":\"gbp\"}");
    expect_error(f, 400, "bad_money");
}

/*  A sale answers 201 with its id, lines at the item's price unless one is
    given, total, currency, source and payment; stock goes down.            */
static void
test_sale(void **state)
{
    fx *f = *state;
    stock_up(f);
    assert_int_equal(post(f, "/api/sales",
        "{\"lines\":[{\"sku\":\"jam\",\"qty\":2},{\"sku\":\"tea\",\"qty\":1,\"price\":250}],"
        "\"source\":\"in_person\",\"payment\":\"card\"}"), 201);
    const char *id = jstr(f->json, "id");
    assert_int_equal(strncmp(id, f->a_hex, SM_ID_HEX_BYTES), 0);
    assert_int_equal(id[SM_ID_HEX_BYTES], ':');
    assert_int_equal(jint(f->json, "total"), 2 * 450 + 250);
    assert_string_equal(jstr(f->json, "currency"), "GBP");
    assert_string_equal(jstr(f->json, "source"), "in_person");
    assert_string_equal(jstr(f->json, "payment"), "card");
    assert_null(json_object_get(f->json, "external_id"));
    json_t *lines = json_object_get(f->json, "lines");
    assert_int_equal(json_array_size(lines), 2);
    assert_int_equal(jint(json_array_get(lines, 0), "price"), 450);
    assert_int_equal(jint(json_array_get(lines, 1), "price"), 250);
    assert_int_equal(units_here(f, "jam"), 8);
    assert_int_equal(units_here(f, "tea"), 4);
}

/*  Not enough units: 409 insufficient_stock naming the short sku with its
    units here and in the whole market (another stall's count too).         */
static void
test_insufficient_stock(void **state)
{
    fx *f = *state;
    stock_up(f);
    /* The other stall holds 7 jars of jam. */
    tu_sync(f->a, f->b, NOW);
    sm_body add = tu_add("jam", 7);
    assert_int_equal(sm_ledger_append(f->b, &add, NOW, NULL), 0);
    tu_sync(f->b, f->a, NOW);

    post(f, "/api/sales", "{\"lines\":[{\"sku\":\"tea\",\"qty\":1},{\"sku\":\"jam\",\"qty\":11}],"
                          "\"source\":\"online\",\"payment\":\"qr\"}");
    expect_error(f, 409, "insufficient_stock");
    assert_string_equal(jstr(f->json, "sku"), "jam");
    assert_int_equal(jint(f->json, "here"), 10);
    assert_int_equal(jint(f->json, "total"), 17);
    assert_int_equal(units_here(f, "tea"), 5);    /* nothing of it was sold */

    /* The stall's own hold (the token: no reservation limits). */
    call_full(f, SM_HTTP_POST, "/api/holds", NULL, "{\"sku\":\"tea\",\"qty\":6}",
              true, TILL, NULL, NOW);
    expect_error(f, 409, "insufficient_stock");
    assert_string_equal(jstr(f->json, "sku"), "tea");
    assert_int_equal(jint(f->json, "here"), 5);
}

/*  A till retrying with the same external_id gets the first sale back
    (200), and the ledger holds one sale, not two.                           */
static void
test_external_id_idempotent(void **state)
{
    fx *f = *state;
    stock_up(f);
    const char *sale = "{\"lines\":[{\"sku\":\"jam\",\"qty\":3}],\"source\":\"in_person\","
                       "\"payment\":\"cash\",\"external_id\":\"till-1-0001\"}";
    assert_int_equal(post(f, "/api/sales", sale), 201);
    char first[S_ID_MAX_TEST];
    snprintf(first, sizeof first, "%s", jstr(f->json, "id"));
    assert_string_equal(jstr(f->json, "external_id"), "till-1-0001");
    assert_int_equal(post(f, "/api/sales", sale), 200);
    assert_string_equal(jstr(f->json, "id"), first);
    assert_string_equal(jstr(f->json, "external_id"), "till-1-0001");
    assert_int_equal(jint(f->json, "total"), 3 * 450);
    assert_int_equal(units_here(f, "jam"), 7);
    size_t count = 0;
    assert_int_equal(get(f, "/api/sales", ""), 200);
    count = json_array_size(json_object_get(f->json, "sales"));
    assert_int_equal(count, 1);
}

/*  A new sale's 201 is built from what the core appended, not read back:
    it must be the sale as stored (GET /api/sales reads the store), for
    sales of several lines, sources, payments, a hold and an external id.   */
static void
test_sale_answer_as_stored(void **state)
{
    fx *f = *state;
    stock_up(f);
    assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL,
                               "{\"sku\":\"jam\",\"qty\":2}", false, PHONE, NULL, NOW), 201);
    char hold[S_ID_MAX_TEST], with_hold[512];
    snprintf(hold, sizeof hold, "%s", jstr(f->json, "id"));
    snprintf(with_hold, sizeof with_hold,
             "{\"lines\":[{\"sku\":\"jam\",\"qty\":2},{\"sku\":\"tea\",\"qty\":1,\"price\":275}],"
             "\"source\":\"online\",\"payment\":\"qr\",\"hold\":\"%s\",\"external_id\":\"web-77\"}",
             hold);
    const char *sales[] = {
        "{\"lines\":[{\"sku\":\"jam\",\"qty\":3}],\"source\":\"in_person\",\"payment\":\"cash\"}",
        "{\"lines\":[{\"sku\":\"tea\",\"qty\":2},{\"sku\":\"jam\",\"qty\":1,\"price\":400}],"
        "\"source\":\"in_person\",\"payment\":\"card\",\"external_id\":\"till-9-1\"}",
        with_hold,
    };
    json_t *answers[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(post(f, "/api/sales", sales[i]), 201);
        answers[i] = json_incref(f->json);
    }
    assert_int_equal(get(f, "/api/sales", ""), 200);
    json_t *stored = json_object_get(f->json, "sales");
    assert_int_equal(json_array_size(stored), 3);
    for (int i = 0; i < 3; i++) {
        json_t *mine = json_deep_copy(answers[i]);
        json_object_del(mine, "external_id");     /* the listing has none */
        bool found = false;
        for (size_t k = 0; k < json_array_size(stored); k++) {
            json_t *s = json_array_get(stored, k);
            if (strcmp(jstr(s, "id"), jstr(answers[i], "id")) == 0) {
                char *a = json_dumps(mine, JSON_SORT_KEYS), *b = json_dumps(s, JSON_SORT_KEYS);
                assert_string_equal(a, b);
                free(a);
                free(b);
                found = true;
            }
        }
        assert_true(found);
        json_decref(mine);
        json_decref(answers[i]);
    }
}

/*  Returns: within what was sold (201), over it refused (409 over_return),
    unknown and other stalls' sales 404 unknown_sale.                         */
static void
test_returns(void **state)
{
    fx *f = *state;
    stock_up(f);
    assert_int_equal(post(f, "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":3}],"
                                           "\"source\":\"in_person\",\"payment\":\"cash\"}"), 201);
    char sale_id[S_ID_MAX_TEST], body[512];
    snprintf(sale_id, sizeof sale_id, "%s", jstr(f->json, "id"));
    snprintf(body, sizeof body, "{\"sale\":\"%s\",\"lines\":[{\"sku\":\"jam\",\"qty\":1}],"
                                "\"reason\":\"cracked lid\"}", sale_id);
    assert_int_equal(post(f, "/api/returns", body), 201);
    assert_string_equal(jstr(f->json, "sale"), sale_id);
    assert_int_equal(units_here(f, "jam"), 8);

    snprintf(body, sizeof body, "{\"sale\":\"%s\",\"lines\":[{\"sku\":\"jam\",\"qty\":3}],"
                                "\"reason\":\"all of them\"}", sale_id);
    post(f, "/api/returns", body);
    expect_error(f, 409, "over_return");
    assert_int_equal(units_here(f, "jam"), 8);

    snprintf(body, sizeof body, "{\"sale\":\"%s:999\",\"lines\":[{\"sku\":\"jam\",\"qty\":1}],"
                                "\"reason\":\"x\"}", f->a_hex);
    post(f, "/api/returns", body);
    expect_error(f, 404, "unknown_sale");
    snprintf(body, sizeof body, "{\"sale\":\"%s:1\",\"lines\":[{\"sku\":\"jam\",\"qty\":1}],"
                                "\"reason\":\"x\"}", f->b_hex);
    post(f, "/api/returns", body);
    expect_error(f, 404, "unknown_sale");
    post(f, "/api/returns", "{\"sale\":\"12:1\",\"lines\":[{\"sku\":\"jam\",\"qty\":1}],\"reason\":\"x\"}");
    expect_error(f, 400, "bad_value");
}

/*  Holds: public, 201 with id and expiry; a sale can consume one; the
    maker's address (or the token) cancels it; others get 401.               */
static void
test_holds(void **state)
{
    fx *f = *state;
    stock_up(f);
    assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL,
                               "{\"sku\":\"jam\",\"qty\":2}", false, PHONE, NULL, NOW), 201);
    assert_string_equal(jstr(f->json, "expires_at"), "2023-11-14T22:23:20.000Z");
    assert_int_equal(jint(f->json, "qty"), 2);
    char hold[S_ID_MAX_TEST], path[160];
    snprintf(hold, sizeof hold, "%s", jstr(f->json, "id"));
    assert_int_equal(units_here(f, "jam"), 8);
    snprintf(path, sizeof path, "/api/holds/%s", hold);

    /* Someone else, without the token: refused, the hold stays. */
    call_full(f, SM_HTTP_DELETE, path, NULL, NULL, false, "10.0.0.99", NULL, NOW);
    expect_error(f, 401, "unauthorized");
    assert_int_equal(units_here(f, "jam"), 8);
    /* The phone that made it. */
    assert_int_equal(call_full(f, SM_HTTP_DELETE, path, NULL, NULL, false, PHONE,
                               NULL, NOW), 200);
    assert_true(json_is_true(json_object_get(f->json, "released")));
    assert_int_equal(units_here(f, "jam"), 10);
    /* Gone now. */
    call_full(f, SM_HTTP_DELETE, path, NULL, NULL, true, TILL, NULL, NOW);
    expect_error(f, 404, "unknown_hold");
    call_full(f, SM_HTTP_DELETE, "/api/holds/nonsense", NULL, NULL, true, TILL, NULL, NOW);
    expect_error(f, 400, "bad_value");
    snprintf(path, sizeof path, "/api/holds/%s:1", f->b_hex);
    call_full(f, SM_HTTP_DELETE, path, NULL, NULL, true, TILL, NULL, NOW);
    expect_error(f, 404, "unknown_hold");

    /* A hold consumed by the sale that completes it. */
    assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL,
                               "{\"sku\":\"jam\",\"qty\":2}", false, PHONE, NULL, NOW), 201);
    snprintf(hold, sizeof hold, "%s", jstr(f->json, "id"));
    char body[512];
    snprintf(body, sizeof body, "{\"lines\":[{\"sku\":\"tea\",\"qty\":1}],\"source\":\"online\","
                                "\"payment\":\"card\",\"hold\":\"%s\"}", hold);
    post(f, "/api/sales", body);
    expect_error(f, 400, "bad_value");              /* the hold is for jam */
    snprintf(body, sizeof body, "{\"lines\":[{\"sku\":\"jam\",\"qty\":2}],\"source\":\"online\","
                                "\"payment\":\"card\",\"hold\":\"%s\"}", hold);
    assert_int_equal(post(f, "/api/sales", body), 201);
    assert_string_equal(jstr(f->json, "hold"), hold);
    assert_int_equal(units_here(f, "jam"), 8);
    post(f, "/api/sales", body);                     /* the hold is used up */
    expect_error(f, 409, "hold_sold");
}

/*  A hold "at" another stall: the write goes to the core marked to be
    forwarded to that stall; the answer names that stall's log (its seq and
    expiry come from its HOLD_DONE); its refusals and the transport's
    (unreachable 503, no answer 504) read clearly; a node not of the market
    is 404, a bad id 400, this node's own id an ordinary hold.               */
static void
test_hold_at_other_stall(void **state)
{
    fx *f = *state;
    stock_up(f);
    char body[256];
    snprintf(body, sizeof body, "{\"sku\":\"jam\",\"qty\":2,\"at\":\"%s\"}", f->b_hex);
    int codes[] = { 0, SM_ENOSTOCK, SM_EUNREACHABLE, SM_ETIMEOUT, SM_EBUSY };
    int status[] = { 201, 409, 503, 504, 503 };
    const char *errs[] = { NULL, "insufficient_stock", "stall_unreachable",
                           "stall_timeout", "busy" };
    for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++) {
        sm_http_resp_clear(&f->resp);
        sm_http_req req = { .method = SM_HTTP_POST, .path = "/api/holds", .query = "",
                            .client = PHONE, .body = body, .body_len = strlen(body) };
        sm_core_req *w = NULL;
        assert_int_equal(sm_api_handle(f->api, &req, NOW + k * 60000, &f->resp, &w),
                         SM_API_WRITE);
        assert_non_null(w);
        assert_true(w->forward);
        assert_memory_equal(w->at.b, f->idb.pub.b, SM_KEY_BYTES);
        assert_int_equal(w->body.kind, SM_KIND_HOLD);
        w->rc = codes[k];
        w->seq = codes[k] == 0 ? 7 : 0;
        if (codes[k] == 0)
            w->body.u.hold.expires_ms = NOW + 1000;    /* the other stall's */
        sm_api_finish(f->api, w, NOW, &f->resp);
        parse_resp(f);
        if (codes[k] == 0) {
            assert_int_equal(f->resp.status, 201);
            char id[160];
            snprintf(id, sizeof id, "%s:7", f->b_hex);
            assert_string_equal(jstr(f->json, "id"), id);
            assert_string_equal(jstr(f->json, "at"), f->b_hex);
            assert_string_equal(jstr(f->json, "expires_at"), "2023-11-14T22:13:21.000Z");
        } else {
            expect_error(f, status[k], errs[k]);
        }
        if (codes[k] == SM_ENOSTOCK)
            assert_string_equal(jstr(f->json, "at"), f->b_hex);
    }
    assert_int_equal(units_here(f, "jam"), 10);      /* nothing held here */

    /* Not of the market; not an id; this node (an ordinary hold). */
    char stranger[SM_ID_HEX_BYTES + 1];
    memset(stranger, '7', SM_ID_HEX_BYTES);
    stranger[SM_ID_HEX_BYTES] = 0;
    snprintf(body, sizeof body, "{\"sku\":\"jam\",\"qty\":1,\"at\":\"%s\"}", stranger);
    call_full(f, SM_HTTP_POST, "/api/holds", NULL, body, true, TILL, NULL, NOW);
    expect_error(f, 404, "unknown_stall");
    call_full(f, SM_HTTP_POST, "/api/holds", NULL, "{\"sku\":\"jam\",\"qty\":1,\"at\":\"B\"}",
              true, TILL, NULL, NOW);
    expect_error(f, 400, "bad_value");
    call_full(f, SM_HTTP_POST, "/api/holds", NULL, "{\"sku\":\"jam\",\"qty\":1,\"at\":5}",
              true, TILL, NULL, NOW);
    expect_error(f, 400, "wrong_type");
    snprintf(body, sizeof body, "{\"sku\":\"jam\",\"qty\":1,\"at\":\"%s\"}", f->a_hex);
    assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL, body, true, TILL, NULL,
                               NOW), 201);
    assert_string_equal(jstr(f->json, "at"), f->a_hex);
    assert_int_equal(units_here(f, "jam"), 9);
}

/*  POST /api/holds is limited per client address (3 a minute here): the
    4th is 429 with retry_after_s; other addresses and the till are not
    affected; a token comes back after 20 s.                                 */
static void
test_hold_rate_limit(void **state)
{
    fx *f = *state;
    stock_up(f);
    const char *h = "{\"sku\":\"jam\",\"qty\":1}";
    for (int i = 0; i < 3; i++)
        assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL, h, false,
                                   PHONE, NULL, NOW + (uint64_t) i), 201);
    call_full(f, SM_HTTP_POST, "/api/holds", NULL, h, false, PHONE, NULL, NOW + 3);
    expect_error(f, 429, "rate_limited");
    assert_true(f->resp.retry_after_s >= 1 && f->resp.retry_after_s <= 20);
    assert_int_equal(jint(f->json, "retry_after_s"), f->resp.retry_after_s);
    /* Refused before parsing: even a bad body is counted, not answered 400. */
    call_full(f, SM_HTTP_POST, "/api/holds", NULL, "{", false, PHONE, NULL, NOW + 4);
    expect_error(f, 429, "rate_limited");
    assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL, h, false,
                               "10.0.0.8", NULL, NOW + 5), 201);
    assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL, h, true,
                               PHONE, NULL, NOW + 6), 201);
    assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL, h, false,
                               PHONE, NULL, NOW + 21000), 201);
    call_full(f, SM_HTTP_POST, "/api/holds", NULL, h, false, PHONE, NULL, NOW + 21001);
    expect_error(f, 429, "rate_limited");
    /* Requests whose address is unknown share one bucket. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL, h, false,
                                   NULL, NULL, NOW + 100 + (uint64_t) i), 201);
    call_full(f, SM_HTTP_POST, "/api/holds", NULL, h, false, "", NULL, NOW + 200);
    expect_error(f, 429, "rate_limited");
}

/* ---- bad input ---------------------------------------------------------- */

/*  Bad JSON, depth, types, ranges, unknown and missing fields: each a 400
    with its code, and nothing reaches the ledger.                           */
static void
test_bad_input(void **state)
{
    fx *f = *state;
    stock_up(f);
    static const struct {
        const char *path, *body, *code, *field;
    } cases[] = {
        { "/api/stock/add", "", "bad_json", NULL },
        { "/api/stock/add", "not json", "bad_json", NULL },
        { "/api/stock/add", "[1]", "bad_json", NULL },
        { "/api/stock/add", "null", "bad_json", NULL },
        { "/api/stock/add", "{\"sku\":\"jam\",\"qty\":1} x", "bad_json", NULL },
        { "/api/stock/add", "{\"sku\":\"jam\",\"sku\":\"tea\",\"qty\":1}", "bad_json", NULL },
        { "/api/stock/add", "{\"sku\":\"j\xff\",\"qty\":1}", "bad_json", NULL },
        { "/api/stock/add", "{\"sku\":[[[[[[[[[\"jam\"]]]]]]]]],\"qty\":1}", "too_deep", NULL },
        { "/api/stock/add", "{\"sku\":[[[[[[[\"jam\"]]]]]]],\"qty\":1}", "wrong_type", "sku" },
        { "/api/stock/add", "{\"sku\":5,\"qty\":1}", "wrong_type", "sku" },
        { "/api/stock/add", "{\"sku\":\"jam\",\"qty\":\"2\"}", "wrong_type", "qty" },
        { "/api/stock/add", "{\"sku\":\"jam\",\"qty\":2.0}", "wrong_type", "qty" },
        { "/api/stock/add", "{\"sku\":\"jam\",\"qty\":1e2}", "wrong_type", "qty" },
        { "/api/stock/add", "{\"sku\":\"jam\",\"qty\":-1}", "bad_quantity", "qty" },
        { "/api/stock/add", "{\"sku\":\"jam\",\"qty\":0}", "bad_quantity", "qty" },
        { "/api/stock/add", "{\"sku\":\"jam\",\"qty\":1000001}", "bad_quantity", "qty" },
        { "/api/stock/add", "{\"sku\":\"jam\",\"qty\":99999999999999999999999}", "bad_json", NULL },
        { "/api/stock/add", "{\"qty\":1}", "missing_field", "sku" },
        { "/api/stock/add", "{\"sku\":\"jam\",\"qty\":1,\"colour\":\"red\"}", "unknown_field", "colour" },
        { "/api/stock/add", "{\"sku\":\"\",\"qty\":1}", "bad_value", "sku" },
        { "/api/stock/add", "{\"sku\":\"a\\u0001b\",\"qty\":1}", "bad_value", "sku" },
        { "/api/stock/add", "{\"sku\":\"a\\u0000b\",\"qty\":1}", "bad_json", NULL },
        { "/api/stock/add", "{\"sku\":\"0123456789012345678901234567890123456789012345678901234567890123X\",\"qty\":1}",
          "bad_value", "sku" },
        { "/api/items", "{\"sku\":\"x\",\"name\":\"X\",\"price\":-1}", "bad_money", "price" },
        { "/api/items", "{\"sku\":\"x\",\"name\":\"X\",\"price\":1.5}", "wrong_type", "price" },
        { "/api/items", "{\"sku\":\"x\",\"name\":\"X\",\"price\":1000000000001}", "bad_money", "price" },
        { "/api/sales", "{\"lines\":[],\"source\":\"online\",\"payment\":\"card\"}", "bad_value", "lines" },
        { "/api/sales", "{\"lines\":{},\"source\":\"online\",\"payment\":\"card\"}", "wrong_type", "lines" },
        { "/api/sales", "{\"lines\":[5],\"source\":\"online\",\"payment\":\"card\"}", "wrong_type", "lines[0]" },
        { "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":1},{\"sku\":\"jam\",\"qty\":1}],"
                        "\"source\":\"online\",\"payment\":\"card\"}", "duplicate_sku", "lines[1].sku" },
        { "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":-2}],\"source\":\"online\",\"payment\":\"card\"}",
          "bad_quantity", "lines[0].qty" },
        { "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":1,\"discount\":5}],\"source\":\"online\","
                        "\"payment\":\"card\"}", "unknown_field", "lines[0].discount" },
        { "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":1}],\"source\":\"shop\",\"payment\":\"card\"}",
          "bad_value", "source" },
        { "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":1}],\"source\":\"online\"}",
          "missing_field", "payment" },
        { "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":1}],\"source\":\"online\",\"payment\":\"card\","
                        "\"extenal_id\":\"t-1\"}", "unknown_field", "extenal_id" },
        { "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":1000000,\"price\":1000000000000},"
                        "{\"sku\":\"tea\",\"qty\":1000000,\"price\":1000000000000}],"
                        "\"source\":\"online\",\"payment\":\"card\"}", "bad_money", "lines" },
        { "/api/stock/adjust", "{\"sku\":\"jam\",\"qty\":-1}", "missing_field", "reason" },
        { "/api/holds", "{\"sku\":\"jam\",\"qty\":true}", "wrong_type", "qty" },
    };
    uint64_t version_before;
    assert_int_equal(sm_ledger_version(f->a, &version_before), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        call_full(f, SM_HTTP_POST, cases[i].path, NULL, cases[i].body, true, TILL,
                  NULL, NOW);
        if (f->resp.status != 400 || !f->json
            || strcmp(jstr(f->json, "error"), cases[i].code) != 0)
            fail_msg("case %zu (%s): %d %.*s", i, cases[i].body, f->resp.status,
                     (int) f->resp.body_len, f->resp.body ? f->resp.body : "");
        assert_int_equal(f->handled, SM_API_DONE);
        if (cases[i].field)
            assert_string_equal(jstr(f->json, "field"), cases[i].field);
    }
    uint64_t version_after;
    assert_int_equal(sm_ledger_version(f->a, &version_after), 0);
    assert_int_equal(version_before, version_after);

    /* Brackets inside strings are not nesting; UTF-8 text is fine. */
    assert_int_equal(post(f, "/api/items", "{\"sku\":\"[[[[[[[[[[\",\"name\":\"cr\xc3\xa8me {{{{{{{{{{\","
                                          "\"price\":1}"), 201);
    assert_string_equal(jstr(f->json, "name"), "cr\xc3\xa8me {{{{{{{{{{");
}

/*  The field path and detail of an error in a line past the tenth
    ("lines[10].qty"), and of each kind of member error: the exact texts a
    till shows.                                                               */
static void
test_field_paths(void **state)
{
    fx *f = *state;
    char body[2048], item[128];
    size_t n = 0;
    n += (size_t) snprintf(body + n, sizeof body - n, "{\"lines\":[");
    for (int i = 0; i <= 10; i++) {
        snprintf(item, sizeof item, "{\"sku\":\"s%d\",\"name\":\"S\",\"price\":10}", i);
        assert_int_equal(post(f, "/api/items", item), 201);
        if (i < 10)
            n += (size_t) snprintf(body + n, sizeof body - n, "{\"sku\":\"s%d\",\"qty\":1},", i);
    }
    static const struct {
        const char *line, *code, *field, *detail;
    } cases[] = {
        { "{\"sku\":\"s10\",\"qty\":0}", "bad_quantity", "lines[10].qty",
          "'lines[10].qty' must be from 1 to 1000000" },
        { "{\"sku\":\"s10\",\"qty\":\"1\"}", "wrong_type", "lines[10].qty",
          "'lines[10].qty' must be a whole number" },
        { "{\"qty\":1}", "missing_field", "lines[10].sku", "'lines[10].sku' is required" },
        { "{\"sku\":7,\"qty\":1}", "wrong_type", "lines[10].sku",
          "'lines[10].sku' must be a string" },
        { "{\"sku\":\"\",\"qty\":1}", "bad_value", "lines[10].sku",
          "'lines[10].sku' must be 1 to 64 bytes of UTF-8 text without control characters" },
        { "{\"sku\":\"s3\",\"qty\":1}", "duplicate_sku", "lines[10].sku",
          "sku 's3' appears on two lines: put its units on one line" },
        { "{\"sku\":\"s10\",\"qty\":1,\"price\":-5}", "bad_money", "lines[10].price",
          "'lines[10].price' must be from 0 to 1000000000000" },
        { "{\"sku\":\"s10\",\"qty\":1,\"tax\":5}", "unknown_field", "lines[10].tax",
          "'lines[10].tax' is not a field of this request" },
        { "4", "wrong_type", "lines[10]", "'lines[10]' must be an object" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sale[2400];
        snprintf(sale, sizeof sale, "%.*s%s],\"source\":\"online\",\"payment\":\"card\"}",
                 (int) n, body, cases[i].line);
        post(f, "/api/sales", sale);
        expect_error(f, 400, cases[i].code);
        assert_string_equal(jstr(f->json, "field"), cases[i].field);
        assert_string_equal(jstr(f->json, "detail"), cases[i].detail);
    }
    post(f, "/api/sales", "{\"lines\":[{\"sku\":\"s10\",\"qty\":1}],\"source\":\"online\"}");
    expect_error(f, 400, "missing_field");
    assert_string_equal(jstr(f->json, "field"), "payment");
    assert_string_equal(jstr(f->json, "detail"), "'payment' is required");
    post(f, "/api/sales", "{\"lines\":[{\"sku\":\"s10\",\"qty\":1}],\"source\":\"online\","
                          "\"payment\":\"card\",\"external_id\":\"\"}");
    expect_error(f, 400, "bad_value");
    assert_string_equal(jstr(f->json, "field"), "external_id");
    assert_string_equal(jstr(f->json, "detail"), "'external_id' must be 1 to 64 bytes of "
                                                 "UTF-8 text without control characters");
}

/*  An unknown sku is 404; an item priced in another currency than the
    market's is refused, and so is a sale mixing two currencies.             */
static void
test_unknown_sku_and_currency(void **state)
{
    fx *f = *state;
    stock_up(f);
    post(f, "/api/stock/add", "{\"sku\":\"nope\",\"qty\":1}");
    expect_error(f, 404, "unknown_sku");
    assert_string_equal(jstr(f->json, "sku"), "nope");
    post(f, "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":1},{\"sku\":\"nope\",\"qty\":1}],"
                          "\"source\":\"online\",\"payment\":\"card\"}");
    expect_error(f, 404, "unknown_sku");
    assert_string_equal(jstr(f->json, "sku"), "nope");
    call_full(f, SM_HTTP_POST, "/api/holds", NULL, "{\"sku\":\"nope\",\"qty\":1}",
              false, PHONE, NULL, NOW);
    expect_error(f, 404, "unknown_sku");

    /* Items are priced in the market's currency... */
    post(f, "/api/items", "{\"sku\":\"wine\",\"name\":\"Wine\",\"price\":900,"
                          "\"currency\":\"EUR\"}");
    expect_error(f, 400, "bad_money");
    assert_string_equal(jstr(f->json, "field"), "currency");
    assert_int_equal(sm_ledger_item(f->a, "wine", &(sm_item){ 0 }), SM_ENOTFOUND);
    /* ...but the log may still carry another (written by other software):
       one sale never mixes two. */
    sm_body wine = tu_item("wine", "Wine", 900);
    memcpy(wine.u.item.currency, "EUR", 4);
    assert_int_equal(sm_ledger_append(f->a, &wine, NOW, NULL), 0);
    assert_int_equal(post(f, "/api/stock/add", "{\"sku\":\"wine\",\"qty\":3}"), 201);
    post(f, "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":1},{\"sku\":\"wine\",\"qty\":1}],"
                          "\"source\":\"online\",\"payment\":\"card\"}");
    expect_error(f, 400, "bad_money");
    assert_string_equal(jstr(f->json, "field"), "lines[1].sku");
    assert_int_equal(post(f, "/api/sales", "{\"lines\":[{\"sku\":\"wine\",\"qty\":1}],"
                                          "\"source\":\"online\",\"payment\":\"card\"}"), 201);
    assert_string_equal(jstr(f->json, "currency"), "EUR");
}

/*  Writes and the sales list need the token (401); unknown routes 404;
    known routes with the wrong method 405 with Allow.                      */
static void
test_auth_routes_methods(void **state)
{
    fx *f = *state;
    static const char *const writes[] = {
        "/api/items", "/api/stock/add", "/api/stock/adjust", "/api/stock/move",
        "/api/sales", "/api/returns",
    };
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        call_full(f, SM_HTTP_POST, writes[i], NULL, "{}", false, PHONE, NULL, NOW);
        expect_error(f, 401, "unauthorized");
    }
    call_full(f, SM_HTTP_GET, "/api/sales", NULL, NULL, false, PHONE, NULL, NOW);
    expect_error(f, 401, "unauthorized");
    /* Public reads. */
    assert_int_equal(call_full(f, SM_HTTP_GET, "/api/stock", NULL, NULL, false, PHONE,
                               NULL, NOW), 200);
    assert_int_equal(call_full(f, SM_HTTP_HEAD, "/api/stock", NULL, NULL, false, PHONE,
                               NULL, NOW), 200);
    assert_int_equal(call_full(f, SM_HTTP_GET, "/api/peers", NULL, NULL, false, PHONE,
                               NULL, NOW), 200);
    call_full(f, SM_HTTP_POST, "/api/peers", NULL, "{}", true, TILL, NULL, NOW);
    expect_error(f, 405, "method_not_allowed");
    assert_string_equal(f->resp.allow, "GET, HEAD");
    get(f, "/api/stock/move", NULL);
    expect_error(f, 405, "method_not_allowed");
    assert_string_equal(f->resp.allow, "POST");

    get(f, "/api/nope", NULL);
    expect_error(f, 404, "not_found");
    get(f, "/api/stock/", NULL);
    expect_error(f, 404, "not_found");
    get(f, "/api/holds/", NULL);
    expect_error(f, 404, "not_found");

    get(f, "/api/items", NULL);
    expect_error(f, 405, "method_not_allowed");
    assert_string_equal(f->resp.allow, "POST");
    call_full(f, SM_HTTP_DELETE, "/api/stock", NULL, NULL, true, TILL, NULL, NOW);
    expect_error(f, 405, "method_not_allowed");
    assert_string_equal(f->resp.allow, "GET, HEAD");
    call_full(f, SM_HTTP_PUT, "/api/sales", NULL, "{}", true, TILL, NULL, NOW);
    expect_error(f, 405, "method_not_allowed");
    assert_string_equal(f->resp.allow, "GET, HEAD, POST");
    get(f, "/api/holds/abc:1", NULL);
    expect_error(f, 400, "bad_value");              /* a phone reads its hold */
    call_full(f, SM_HTTP_PUT, "/api/holds/abc:1", NULL, "{}", true, TILL, NULL, NOW);
    expect_error(f, 405, "method_not_allowed");
    assert_string_equal(f->resp.allow, "GET, HEAD, DELETE");
    /* 405 comes before 401. */
    call_full(f, SM_HTTP_GET, "/api/returns", NULL, NULL, false, PHONE, NULL, NOW);
    expect_error(f, 405, "method_not_allowed");
}

/* ---- reads -------------------------------------------------------------- */

/*  GET /api/stock: version, as_of, node, items with here/total/held and
    locations named by member; ETag is the version.                          */
static void
test_stock_snapshot(void **state)
{
    fx *f = *state;
    stock_up(f);
    tu_sync(f->a, f->b, NOW);
    sm_body add = tu_add("jam", 4);
    assert_int_equal(sm_ledger_append(f->b, &add, NOW, NULL), 0);
    tu_sync(f->b, f->a, NOW);
    assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL,
                               "{\"sku\":\"jam\",\"qty\":1}", false, PHONE, NULL, NOW), 201);
    refresh(f, 1);

    assert_int_equal(get(f, "/api/stock", NULL), 200);
    assert_true(f->resp.body_borrowed);
    assert_string_equal(f->resp.cache_control, "no-cache");
    assert_string_equal(f->resp.content_type, "application/json");
    uint64_t version;
    assert_int_equal(sm_ledger_version(f->a, &version), 0);
    assert_int_equal(jint(f->json, "version"), (int64_t) version);
    char etag[40];
    snprintf(etag, sizeof etag, "\"%llu\"", (unsigned long long) version);
    assert_string_equal(f->resp.etag, etag);
    assert_string_equal(jstr(f->json, "as_of"), "2023-11-14T22:13:20.000Z");
    assert_string_equal(jstr(f->json, "node"), f->a_hex);
    json_t *items = json_object_get(f->json, "items");
    assert_int_equal(json_array_size(items), 2);
    json_t *jam = json_array_get(items, 0);
    assert_string_equal(jstr(jam, "sku"), "jam");
    assert_string_equal(jstr(jam, "name"), "Plum jam");
    assert_int_equal(jint(jam, "price"), 450);
    assert_string_equal(jstr(jam, "currency"), "GBP");
    assert_int_equal(jint(jam, "here"), 9);
    assert_int_equal(jint(jam, "total"), 13);
    assert_int_equal(jint(jam, "held"), 1);
    json_t *locs = json_object_get(jam, "locations");
    assert_int_equal(json_array_size(locs), 2);
    bool saw_a = false, saw_b = false;
    for (size_t i = 0; i < 2; i++) {
        json_t *l = json_array_get(locs, i);
        if (strcmp(jstr(l, "node"), f->a_hex) == 0) {
            saw_a = true;
            assert_string_equal(jstr(l, "name"), "Saturday Market");
            assert_int_equal(jint(l, "units"), 9);
        } else {
            saw_b = strcmp(jstr(l, "node"), f->b_hex) == 0;
            assert_string_equal(jstr(l, "name"), "Bakery");
            assert_int_equal(jint(l, "units"), 4);
        }
    }
    assert_true(saw_a && saw_b);
    json_t *tea = json_array_get(items, 1);
    assert_int_equal(json_array_size(json_object_get(tea, "locations")), 1);

    /* The websocket snapshot: the same fields, typed. */
    const char *msg;
    size_t len;
    assert_int_equal(sm_api_snapshot_message(f->api, &msg, &len), 0);
    json_t *m = json_loadb(msg, len, 0, NULL);
    assert_non_null(m);
    assert_string_equal(jstr(m, "type"), "snapshot");
    assert_int_equal(jint(m, "version"), (int64_t) version);
    assert_true(json_equal(json_object_get(m, "items"), items));
    json_decref(m);
}

/*  If-None-Match with the current ETag (plain, weak, in a list, or *) is
    304 without a body; an old ETag after a change is 200.                   */
static void
test_stock_etag(void **state)
{
    fx *f = *state;
    stock_up(f);
    refresh(f, 1);
    refresh(f, 0);
    assert_int_equal(get(f, "/api/stock", NULL), 200);
    char etag[40], weak[48], list[96];
    snprintf(etag, sizeof etag, "%s", f->resp.etag);
    snprintf(weak, sizeof weak, "W/%s", etag);
    snprintf(list, sizeof list, "\"1\", %s", etag);
    const char *const match[] = { etag, weak, list, "*" };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(call_full(f, SM_HTTP_GET, "/api/stock", NULL, NULL, false,
                                   PHONE, match[i], NOW), 304);
        assert_null(f->resp.body);
        assert_int_equal(f->resp.body_len, 0);
        assert_string_equal(f->resp.etag, etag);
    }
    assert_int_equal(call_full(f, SM_HTTP_GET, "/api/stock", NULL, NULL, false,
                               PHONE, "\"0\"", NOW), 200);
    assert_int_equal(post(f, "/api/stock/add", "{\"sku\":\"jam\",\"qty\":1}"), 201);
    refresh(f, 1);
    assert_int_equal(call_full(f, SM_HTTP_GET, "/api/stock", NULL, NULL, false,
                               PHONE, etag, NOW), 200);
    assert_string_not_equal(f->resp.etag, etag);
    assert_int_equal(jint(json_array_get(json_object_get(f->json, "items"), 0), "here"), 11);
}

/*  An answer to GET /api/stock stays valid while it is being sent, even
    if the snapshot is rebuilt meanwhile (ASan would see a freed body), and
    is let go by sm_http_resp_clear.                                           */
static void
test_stock_body_outlives_refresh(void **state)
{
    fx *f = *state;
    stock_up(f);
    refresh(f, 1);
    sm_http_resp held = { 0 };
    sm_http_req req = { .method = SM_HTTP_GET, .path = "/api/stock", .query = "",
                        .client = PHONE };
    sm_core_req *w = NULL;
    assert_int_equal(sm_api_handle(f->api, &req, NOW, &held, &w), SM_API_DONE);
    assert_int_equal(held.status, 200);
    assert_true(held.body_borrowed);
    assert_non_null(held.body_owner);
    char *copy = malloc(held.body_len);
    assert_non_null(copy);
    memcpy(copy, held.body, held.body_len);

    for (int i = 0; i < 3; i++) {
        assert_int_equal(post(f, "/api/stock/add", "{\"sku\":\"tea\",\"qty\":1}"), 201);
        refresh(f, 1);
    }
    assert_int_equal(memcmp(held.body, copy, held.body_len), 0);
    assert_int_equal(get(f, "/api/stock", NULL), 200);
    assert_true(f->resp.body_len != held.body_len
                || memcmp(f->resp.body, copy, held.body_len) != 0);
    sm_http_resp_clear(&held);
    assert_null(held.body);
    assert_null(held.body_owner);
    sm_http_resp_clear(&held);     /* safe twice */
    free(copy);
}

/*  After a sale of jam the delta holds jam alone (in full), nothing removed;
    a new item appears in the next delta; no change means no delta.          */
static void
test_delta(void **state)
{
    fx *f = *state;
    stock_up(f);
    char *delta = NULL;
    size_t len = 0;
    assert_int_equal(sm_api_refresh(f->api, NOW, &delta, &len), 1);
    free(delta);
    assert_int_equal(sm_api_refresh(f->api, NOW, &delta, &len), 0);
    assert_null(delta);

    assert_int_equal(post(f, "/api/sales", "{\"lines\":[{\"sku\":\"jam\",\"qty\":2}],"
                                           "\"source\":\"livestream\",\"payment\":\"qr\"}"), 201);
    assert_int_equal(sm_api_refresh(f->api, NOW + 1000, &delta, &len), 1);
    json_t *d = json_loadb(delta, len, 0, NULL);
    assert_non_null(d);
    free(delta);
    assert_string_equal(jstr(d, "type"), "delta");
    assert_string_equal(jstr(d, "as_of"), "2023-11-14T22:13:21.000Z");
    uint64_t version;
    assert_int_equal(sm_ledger_version(f->a, &version), 0);
    assert_int_equal(jint(d, "version"), (int64_t) version);
    json_t *items = json_object_get(d, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(jstr(json_array_get(items, 0), "sku"), "jam");
    assert_int_equal(jint(json_array_get(items, 0), "here"), 8);
    assert_int_equal(json_array_size(json_object_get(d, "removed")), 0);
    json_decref(d);

    assert_int_equal(post(f, "/api/items", "{\"sku\":\"honey\",\"name\":\"Honey\",\"price\":700}"), 201);
    assert_int_equal(sm_api_refresh(f->api, NOW, &delta, &len), 1);
    d = json_loadb(delta, len, 0, NULL);
    free(delta);
    items = json_object_get(d, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(jstr(json_array_get(items, 0), "sku"), "honey");
    assert_int_equal(jint(json_array_get(items, 0), "total"), 0);
    json_decref(d);
}

/*  The drop's object in a websocket message: its only entry of "drops".    */
static json_t *
only_drop(json_t *m)
{
    json_t *drops = json_object_get(m, "drops");
    assert_int_equal(json_array_size(drops), 1);
    return json_array_get(drops, 0);
}

/*  The websocket carries the drops: the snapshot lists them with the node's
    clock (as sent, not as built); a delta names a drop whose units left
    moved (a hold), and one at its start though the state did not move (the
    clock opened it); a delta that changed no drop has no "drops" at all.   */
static void
test_delta_drops(void **state)
{
    fx *f = *state;
    stock_up(f);
    assert_int_equal(post(f, "/api/drops", "{\"sku\":\"jam\",\"qty\":2,\"mode\":\"first_come\","
                                           "\"starts\":\"2023-11-14T22:14:20Z\"}"), 201);
    char *delta = NULL;
    size_t len = 0;
    assert_int_equal(sm_api_refresh(f->api, NOW, &delta, &len), 1);
    free(delta);
    const char *msg;
    assert_int_equal(sm_api_snapshot_message(f->api, &msg, &len), 0);
    json_t *m = json_loadb(msg, len, 0, NULL);
    assert_non_null(m);
    assert_int_equal(jint(m, "now_ms"), (int64_t) NOW);
    assert_string_equal(jstr(only_drop(m), "phase"), "upcoming");
    assert_int_equal(jint(only_drop(m), "units_left"), 2);
    int64_t version = jint(m, "version");
    json_decref(m);
    /* Sent later, the snapshot says the node's clock then, as built else. */
    assert_int_equal(sm_api_snapshot_restamp(f->api, NOW + 5000, &msg, &len), 0);
    m = json_loadb(msg, len, 0, NULL);
    assert_int_equal(jint(m, "now_ms"), (int64_t) NOW + 5000);
    assert_string_equal(jstr(m, "as_of"), "2023-11-14T22:13:20.000Z");
    assert_int_equal(json_array_size(json_object_get(m, "drops")), 1);
    json_decref(m);

    /* Nothing moved: no delta, and the clock is not due before the start. */
    assert_false(sm_api_clock_due(f->api, NOW + 59999));
    assert_int_equal(sm_api_refresh(f->api, NOW + 59999, &delta, &len), 0);
    /* The start: the same version, no item, the drop live. */
    assert_true(sm_api_clock_due(f->api, NOW + 60000));
    assert_int_equal(sm_api_refresh(f->api, NOW + 60000, &delta, &len), 1);
    m = json_loadb(delta, len, 0, NULL);
    free(delta);
    assert_int_equal(jint(m, "version"), version);
    assert_int_equal(json_array_size(json_object_get(m, "items")), 0);
    assert_string_equal(jstr(only_drop(m), "phase"), "live");
    assert_int_equal(json_array_size(json_object_get(m, "drops_removed")), 0);
    json_decref(m);
    assert_false(sm_api_clock_due(f->api, NOW + 3600000));

    /* Two holds take the last units: the drop closes in the delta. */
    for (int i = 0; i < 2; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"sku\":\"jam\",\"qty\":1,\"device\":\"%032d\"}", i);
        assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL, body, false,
                                   i ? "10.0.0.1" : "10.0.0.2", NULL, NOW + 61000), 201);
    }
    assert_int_equal(sm_api_refresh(f->api, NOW + 61000, &delta, &len), 1);
    m = json_loadb(delta, len, 0, NULL);
    free(delta);
    assert_int_equal(jint(only_drop(m), "units_left"), 0);
    assert_string_equal(jstr(only_drop(m), "phase"), "closed");
    json_decref(m);

    /* A change of another item only: no "drops" in its delta. */
    assert_int_equal(post(f, "/api/stock/add", "{\"sku\":\"tea\",\"qty\":1}"), 201);
    assert_int_equal(sm_api_refresh(f->api, NOW + 62000, &delta, &len), 1);
    m = json_loadb(delta, len, 0, NULL);
    free(delta);
    assert_null(json_object_get(m, "drops"));
    assert_int_equal(json_array_size(json_object_get(m, "items")), 1);
    json_decref(m);
}

/*  GET /api/drops/<id>/ledger keeps its answer: within a second of making
    it, the same answer though the state moved since; after that second, or
    at once when the state did not move, one of the state as it is.        */
static void
test_drop_ledger_kept(void **state)
{
    fx *f = *state;
    stock_up(f);
    assert_int_equal(post(f, "/api/drops", "{\"sku\":\"jam\",\"qty\":3,\"mode\":\"first_come\","
                                           "\"starts\":\"2023-11-14T22:14:20Z\"}"), 201);
    char path[160];
    snprintf(path, sizeof path, "/api/drops/%s/ledger", jstr(f->json, "id"));
    int64_t holds = 0;
    const struct { uint64_t at; bool hold; int64_t listed; } steps[] = {
        { NOW + 61000, true, 1 },      /* made: the first hold */
        { NOW + 61100, true, 1 },      /* a second hold; kept 100 ms ago */
        { NOW + 61900, false, 1 },     /* still within the second */
        { NOW + 62000, false, 2 },     /* a second old: made again */
        { NOW + 62500, false, 2 },
        { NOW + 99000, false, 2 },     /* old but the state did not move */
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (steps[i].hold) {
            char body[96];
            snprintf(body, sizeof body, "{\"sku\":\"jam\",\"qty\":1,\"device\":\"%032lld\"}",
                     (long long) holds);
            char addr[32];
            snprintf(addr, sizeof addr, "10.0.0.%d", (int) holds + 1);
            assert_int_equal(call_full(f, SM_HTTP_POST, "/api/holds", NULL, body, false, addr,
                                       NULL, steps[i].at), 201);
            holds++;
        }
        assert_int_equal(call_full(f, SM_HTTP_GET, path, NULL, NULL, false, "10.9.9.9", NULL,
                                   steps[i].at), 200);
        assert_int_equal(json_array_size(json_object_get(f->json, "entries")),
                         (size_t) steps[i].listed);
        assert_int_equal(jint(f->json, "taken"), steps[i].listed);
    }
}

/*  GET /api/sales pages by seq; GET /api/state has digest, heads, forks;
    /livez, /readyz answer; /metrics is 404 without metrics, else the
    Prometheus text with the snapshot's version.                             */
static void
test_reads(void **state)
{
    fx *f = *state;
    stock_up(f);
    for (int i = 0; i < 3; i++)
        assert_int_equal(post(f, "/api/sales", "{\"lines\":[{\"sku\":\"tea\",\"qty\":1}],"
                                               "\"source\":\"in_person\",\"payment\":\"cash\"}"), 201);
    assert_int_equal(get(f, "/api/sales", "limit=2"), 200);
    json_t *sales = json_object_get(f->json, "sales");
    assert_int_equal(json_array_size(sales), 2);
    int64_t next = jint(f->json, "next");
    char first_id[S_ID_MAX_TEST];
    snprintf(first_id, sizeof first_id, "%s", jstr(json_array_get(sales, 0), "id"));
    assert_int_equal(jint(json_array_get(sales, 0), "total"), 300);
    char q[64];
    snprintf(q, sizeof q, "since=%lld&limit=10", (long long) next);
    assert_int_equal(get(f, "/api/sales", q), 200);
    sales = json_object_get(f->json, "sales");
    assert_int_equal(json_array_size(sales), 1);
    assert_string_not_equal(jstr(json_array_get(sales, 0), "id"), first_id);
    assert_int_equal(get(f, "/api/sales", "limit=5000&x=1"), 200);
    assert_int_equal(json_array_size(json_object_get(f->json, "sales")), 3);
    get(f, "/api/sales", "limit=0");
    expect_error(f, 400, "bad_query");
    get(f, "/api/sales", "since=abc");
    expect_error(f, 400, "bad_query");

    assert_int_equal(get(f, "/api/state", NULL), 200);
    sm_hash digest;
    char hex[2 * SM_HASH_BYTES + 1];
    assert_int_equal(sm_ledger_digest(f->a, &digest), 0);
    sm_hex_encode(digest.b, SM_HASH_BYTES, hex);
    assert_string_equal(jstr(f->json, "digest"), hex);
    json_t *head = json_object_get(json_object_get(f->json, "heads"), f->a_hex);
    assert_non_null(head);
    sm_head h;
    assert_int_equal(sm_ledger_head(f->a, &f->ida.pub, &h), 0);
    assert_int_equal(jint(head, "seq"), (int64_t) h.seq);
    assert_int_equal(jint(head, "applied"), (int64_t) h.applied);
    assert_int_equal(json_array_size(json_object_get(f->json, "forks")), 0);
    assert_true(json_is_array(json_object_get(f->json, "quarantined")));
    assert_int_equal(json_array_size(json_object_get(f->json, "quarantined")), 0);
    /* The digest is kept while the store stays at a version, and read
       again once a write moves it: asked twice, then after a sale. */
    int64_t state_version = jint(f->json, "version");
    assert_int_equal(get(f, "/api/state", NULL), 200);
    assert_string_equal(jstr(f->json, "digest"), hex);
    assert_int_equal(jint(f->json, "version"), state_version);
    assert_int_equal(post(f, "/api/sales", "{\"lines\":[{\"sku\":\"tea\",\"qty\":1}],"
                                           "\"source\":\"in_person\",\"payment\":\"cash\"}"), 201);
    assert_int_equal(get(f, "/api/state", NULL), 200);
    assert_true(jint(f->json, "version") > state_version);
    char moved[2 * SM_HASH_BYTES + 1];
    assert_int_equal(sm_ledger_digest(f->a, &digest), 0);
    sm_hex_encode(digest.b, SM_HASH_BYTES, moved);
    assert_string_not_equal(moved, hex);
    assert_string_equal(jstr(f->json, "digest"), moved);

    assert_int_equal(get(f, "/livez", NULL), 200);
    assert_string_equal(jstr(f->json, "status"), "ok");
    assert_int_equal(get(f, "/readyz", NULL), 200);
    assert_string_equal(jstr(f->json, "status"), "ready");
    get(f, "/metrics", NULL);
    expect_error(f, 404, "not_found");         /* this API has no metrics */

    /* With metrics: the Prometheus text, and the snapshot's version gauge. */
    sm_metrics *metrics = sm_metrics_new();
    assert_non_null(metrics);
    sm_api_opts o = { .ledger = f->a, .node = f->ida.pub, .metrics = metrics };
    sm_api *with = sm_api_new(&o, NULL);
    assert_non_null(with);
    char *delta = NULL;
    size_t len = 0;
    assert_int_equal(sm_api_refresh(with, NOW, &delta, &len), 1);
    free(delta);
    sm_http_req req = { .method = SM_HTTP_GET, .path = "/metrics", .query = "",
                        .client = PHONE };
    sm_core_req *w = NULL;
    sm_http_resp_clear(&f->resp);
    assert_int_equal(sm_api_handle(with, &req, NOW, &f->resp, &w), SM_API_DONE);
    assert_int_equal(f->resp.status, 200);
    assert_non_null(strstr(f->resp.content_type, "text/plain; version=0.0.4"));
    uint64_t version;
    assert_int_equal(sm_ledger_version(f->a, &version), 0);
    char line[64];
    snprintf(line, sizeof line, "stallmesh_state_version %llu\n",
             (unsigned long long) version);
    char *text = strndup(f->resp.body, f->resp.body_len);
    assert_non_null(strstr(text, line));
    free(text);
    sm_http_resp_clear(&f->resp);
    sm_api_destroy(&with);
    sm_metrics_destroy(&metrics);
}

/*  A write the core could not take (queue full) answers 503 with
    Retry-After; a cancelled write is freed (ASan checks); sm_api_error
    answers in the API's error shape.                                         */
static void
test_finish_and_cancel(void **state)
{
    fx *f = *state;
    stock_up(f);
    sm_http_req req = { .method = SM_HTTP_POST, .path = "/api/stock/add", .query = "",
                        .authorized = true, .client = TILL,
                        .body = "{\"sku\":\"jam\",\"qty\":1}", .body_len = 21 };
    sm_core_req *w = NULL;
    sm_http_resp_clear(&f->resp);
    assert_int_equal(sm_api_handle(f->api, &req, NOW, &f->resp, &w), SM_API_WRITE);
    assert_non_null(w);
    assert_int_equal(w->body.kind, SM_KIND_STOCK_ADD);
    assert_int_equal(w->body.u.stock_add.qty, 1);
    sm_api_cancel(f->api, w);

    assert_int_equal(sm_api_handle(f->api, &req, NOW, &f->resp, &w), SM_API_WRITE);
    w->rc = SM_EBUSY;
    sm_api_finish(f->api, w, NOW, &f->resp);
    parse_resp(f);
    expect_error(f, 503, "busy");
    assert_int_equal(f->resp.retry_after_s, 1);
    assert_int_equal(units_here(f, "jam"), 10);

    /* The web server's own refusals use the same error shape. */
    sm_http_resp_clear(&f->resp);
    sm_api_error(&f->resp, 413, "too_large", "the body exceeds 65536 bytes");
    parse_resp(f);
    expect_error(f, 413, "too_large");
    assert_false(f->resp.body_borrowed);
}

/* ---- stock moves, peers, quarantine ------------------------------------ */

/*  A move sends units from here to another member: 201 with the units left
    here and in the market; the other stall's count goes up by as many.     */
static void
test_stock_move(void **state)
{
    fx *f = *state;
    stock_up(f);
    char body[256];
    snprintf(body, sizeof body, "{\"sku\":\"jam\",\"qty\":3,\"to\":\"%s\"}", f->b_hex);
    assert_int_equal(post(f, "/api/stock/move", body), 201);
    assert_string_equal(jstr(f->json, "sku"), "jam");
    assert_int_equal(jint(f->json, "qty"), 3);
    assert_string_equal(jstr(f->json, "to"), f->b_hex);
    assert_int_equal(jint(f->json, "here"), 7);
    assert_int_equal(jint(f->json, "total"), 10);
    assert_int_equal(units_here(f, "jam"), 7);
    sm_units u;
    assert_int_equal(sm_ledger_units(f->a, "jam", &f->idb.pub, &u), 0);
    assert_int_equal(u.units, 3);
    assert_int_equal(u.moved_in, 3);

    /* The id in either hex case; the answer names it in lower case. */
    char upper[SM_ID_HEX_BYTES + 1];
    for (size_t i = 0; i <= SM_ID_HEX_BYTES; i++)
        upper[i] = (f->b_hex[i] >= 'a' && f->b_hex[i] <= 'f')
                   ? (char) (f->b_hex[i] - 'a' + 'A') : f->b_hex[i];
    snprintf(body, sizeof body, "{\"sku\":\"tea\",\"qty\":5,\"to\":\"%s\"}", upper);
    assert_int_equal(post(f, "/api/stock/move", body), 201);
    assert_string_equal(jstr(f->json, "to"), f->b_hex);
    assert_int_equal(jint(f->json, "here"), 0);
    assert_int_equal(jint(f->json, "total"), 5);

    /* The stock page lists the units at their new location, by name. */
    refresh(f, 1);
    assert_int_equal(get(f, "/api/stock", NULL), 200);
    json_t *tea = json_array_get(json_object_get(f->json, "items"), 1);
    assert_string_equal(jstr(tea, "sku"), "tea");
    assert_int_equal(jint(tea, "here"), 0);
    bool saw_b = false;
    json_t *locs = json_object_get(tea, "locations");
    for (size_t i = 0; i < json_array_size(locs); i++) {
        json_t *l = json_array_get(locs, i);
        if (strcmp(jstr(l, "node"), f->b_hex) == 0) {
            saw_b = true;
            assert_string_equal(jstr(l, "name"), "Bakery");
            assert_int_equal(jint(l, "units"), 5);
        }
    }
    assert_true(saw_b);
}

/*  More than is here: 409 insufficient_stock with the units here and in
    the market, as for sales; nothing moves.                                 */
static void
test_stock_move_insufficient(void **state)
{
    fx *f = *state;
    stock_up(f);
    char body[256];
    snprintf(body, sizeof body, "{\"sku\":\"tea\",\"qty\":6,\"to\":\"%s\"}", f->b_hex);
    post(f, "/api/stock/move", body);
    expect_error(f, 409, "insufficient_stock");
    assert_string_equal(jstr(f->json, "sku"), "tea");
    assert_int_equal(jint(f->json, "here"), 5);
    assert_int_equal(jint(f->json, "total"), 5);
    assert_non_null(strstr(jstr(f->json, "detail"), "6 units wanted"));
    assert_int_equal(units_here(f, "tea"), 5);
    sm_units u;
    assert_int_equal(sm_ledger_units(f->a, "tea", &f->idb.pub, &u), SM_ENOTFOUND);
}

/*  Bad moves are refused before the core sees them: shape (400), this node
    as the destination (400 self_move), an unknown sku (404), an id that is
    no member or a revoked one (404 unknown_node); the store is unchanged.  */
static void
test_stock_move_refused(void **state)
{
    fx *f = *state;
    stock_up(f);
    /* A third node, admitted and then revoked, and a fourth never admitted. */
    sm_identity idc, idd;
    tu_identity(&idc, 3);
    tu_identity(&idd, 4);
    sm_body admit = tu_admit(&idc.pub, "Cheese", SM_ROLE_STALL);
    assert_int_equal(sm_ledger_append(f->a, &admit, NOW, NULL), 0);
    sm_body revoke = tu_revoke(&idc.pub, 0);
    assert_int_equal(sm_ledger_append(f->a, &revoke, NOW, NULL), 0);
    char c_hex[SM_ID_HEX_BYTES + 1], d_hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&idc.pub, c_hex);
    sm_id_format(&idd.pub, d_hex);

    char bodies[9][256];
    snprintf(bodies[0], 256, "{\"sku\":\"jam\",\"qty\":1}");
    snprintf(bodies[1], 256, "{\"sku\":\"jam\",\"qty\":1,\"to\":\"b\"}");
    snprintf(bodies[2], 256, "{\"sku\":\"jam\",\"qty\":1,\"to\":\"%.63s\"}", f->b_hex);
    snprintf(bodies[3], 256, "{\"sku\":\"jam\",\"qty\":1,\"to\":\"%sz\"}", f->b_hex);
    snprintf(bodies[4], 256, "{\"sku\":\"jam\",\"qty\":0,\"to\":\"%s\"}", f->b_hex);
    snprintf(bodies[5], 256, "{\"sku\":\"jam\",\"qty\":1,\"to\":7}");
    snprintf(bodies[6], 256, "{\"sku\":\"jam\",\"qty\":1,\"to\":\"%s\",\"from\":\"x\"}",
             f->b_hex);
    snprintf(bodies[7], 256, "{\"sku\":\"jam\",\"qty\":1,\"to\":\"%s\"}", f->a_hex);
    snprintf(bodies[8], 256, "{\"sku\":\"jam\",\"qty\":1,\"to\":\"%.62sxy\"}", f->b_hex);
    static const struct { const char *code, *field; } want[9] = {
        { "missing_field", "to" }, { "bad_value", "to" }, { "bad_value", "to" },
        { "bad_value", "to" }, { "bad_quantity", "qty" }, { "wrong_type", "to" },
        { "unknown_field", "from" }, { "self_move", "to" }, { "bad_value", "to" },
    };
    uint64_t version_before, version_after;
    assert_int_equal(sm_ledger_version(f->a, &version_before), 0);
    for (size_t i = 0; i < 9; i++) {
        post(f, "/api/stock/move", bodies[i]);
        if (f->resp.status != 400 || !f->json
            || strcmp(jstr(f->json, "error"), want[i].code) != 0)
            fail_msg("case %zu (%s): %d %.*s", i, bodies[i], f->resp.status,
                     (int) f->resp.body_len, f->resp.body ? f->resp.body : "");
        assert_string_equal(jstr(f->json, "field"), want[i].field);
        assert_int_equal(f->handled, SM_API_DONE);
    }

    char body[256];
    snprintf(body, sizeof body, "{\"sku\":\"nope\",\"qty\":1,\"to\":\"%s\"}", f->b_hex);
    post(f, "/api/stock/move", body);
    expect_error(f, 404, "unknown_sku");
    snprintf(body, sizeof body, "{\"sku\":\"jam\",\"qty\":1,\"to\":\"%s\"}", d_hex);
    post(f, "/api/stock/move", body);
    expect_error(f, 404, "unknown_node");
    assert_string_equal(jstr(f->json, "field"), "to");
    assert_string_equal(jstr(f->json, "to"), d_hex);
    assert_null(strstr(jstr(f->json, "detail"), "revoked"));
    snprintf(body, sizeof body, "{\"sku\":\"jam\",\"qty\":1,\"to\":\"%s\"}", c_hex);
    post(f, "/api/stock/move", body);
    expect_error(f, 404, "unknown_node");
    assert_non_null(strstr(jstr(f->json, "detail"), "revoked"));
    assert_int_equal(f->handled, SM_API_DONE);

    assert_int_equal(sm_ledger_version(f->a, &version_after), 0);
    assert_int_equal(version_before, version_after);
    assert_int_equal(units_here(f, "jam"), 10);
}

/*  GET /metrics of f->api as text (returned: caller frees).                */
static char *
metrics_text(fx *f)
{
    sm_http_req req = { .method = SM_HTTP_GET, .path = "/metrics", .query = "",
                        .client = PHONE };
    sm_core_req *w = NULL;
    sm_http_resp_clear(&f->resp);
    assert_int_equal(sm_api_handle(f->api, &req, NOW, &f->resp, &w), SM_API_DONE);
    assert_int_equal(f->resp.status, 200);
    char *text = strndup(f->resp.body, f->resp.body_len);
    assert_non_null(text);
    sm_http_resp_clear(&f->resp);
    return text;
}

/*  Peers as a test gives them in place of the core's table.                */
typedef struct {
    sm_gossip_peer peers[4];
    size_t n;
    size_t calls;
} peers_stub;

static size_t
peers_stub_fn(void *arg, sm_gossip_peer *out, size_t cap)
{
    peers_stub *p = arg;
    p->calls++;
    size_t n = p->n < cap ? p->n : cap;
    memcpy(out, p->peers, n * sizeof *out);
    return n;
}

/*  GET /api/peers without a core is an empty list; with peers, each is
    listed (in node order, never this node) with its roster name ("" when
    not admitted yet), endpoint, connection, last_seen (RFC 3339, or null
    when never heard from) and counters; /metrics counts the connected ones. */
static void
test_peers(void **state)
{
    fx *f = *state;
    assert_int_equal(call_full(f, SM_HTTP_GET, "/api/peers", NULL, NULL, false,
                               PHONE, NULL, NOW), 200);
    assert_string_equal(f->resp.content_type, "application/json");
    json_t *list = json_object_get(f->json, "peers");
    assert_true(json_is_array(list));
    assert_int_equal(json_array_size(list), 0);

    peers_stub stub;
    memset(&stub, 0, sizeof stub);
    sm_identity stranger;
    tu_identity(&stranger, 9);
    char s_hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&stranger.pub, s_hex);
    /* Listed in the order given; the API sorts them by node id. */
    bool b_first = memcmp(f->idb.pub.b, stranger.pub.b, SM_KEY_BYTES) < 0;
    stub.peers[0].node = b_first ? stranger.pub : f->idb.pub;
    stub.peers[1].node = f->ida.pub;           /* this node: never listed */
    stub.peers[2].node = b_first ? f->idb.pub : stranger.pub;
    sm_gossip_peer *pb = b_first ? &stub.peers[2] : &stub.peers[0];
    sm_gossip_peer *ps = b_first ? &stub.peers[0] : &stub.peers[2];
    snprintf(pb->endpoint, sizeof pb->endpoint, "tcp://127.0.0.1:7401");
    pb->up = true;
    pb->last_seen_ms = NOW + 1500;
    pb->entries_behind = 4;
    pb->entries_received = 12;
    pb->entries_sent = 30;
    pb->refused = 1;
    snprintf(ps->endpoint, sizeof ps->endpoint, "tcp://127.0.0.1:74\xff" "2");
    stub.n = 3;

    sm_metrics *metrics = sm_metrics_new();
    assert_non_null(metrics);
    sm_api_opts o = { .ledger = f->a, .node = f->ida.pub, .metrics = metrics,
                      .peers = peers_stub_fn, .peers_arg = &stub };
    sm_api *with = sm_api_new(&o, NULL);
    assert_non_null(with);
    sm_api *plain = f->api;
    f->api = with;
    assert_int_equal(call_full(f, SM_HTTP_GET, "/api/peers", NULL, NULL, false,
                               PHONE, NULL, NOW), 200);
    list = json_object_get(f->json, "peers");
    assert_int_equal(json_array_size(list), 2);
    json_t *jb = json_array_get(list, b_first ? 0 : 1);
    json_t *js = json_array_get(list, b_first ? 1 : 0);
    assert_string_equal(jstr(jb, "node"), f->b_hex);
    assert_string_equal(jstr(jb, "name"), "Bakery");
    assert_string_equal(jstr(jb, "endpoint"), "tcp://127.0.0.1:7401");
    assert_true(json_is_true(json_object_get(jb, "connected")));
    assert_string_equal(jstr(jb, "last_seen"), "2023-11-14T22:13:21.500Z");
    assert_int_equal(jint(jb, "entries_behind"), 4);
    assert_int_equal(jint(jb, "entries_received"), 12);
    assert_int_equal(jint(jb, "entries_sent"), 30);
    assert_int_equal(jint(jb, "refused"), 1);
    assert_string_equal(jstr(js, "node"), s_hex);
    assert_string_equal(jstr(js, "name"), "");
    assert_string_equal(jstr(js, "endpoint"), "tcp://127.0.0.1:74?2");
    assert_true(json_is_false(json_object_get(js, "connected")));
    assert_true(json_is_null(json_object_get(js, "last_seen")));
    assert_int_equal(jint(js, "entries_behind"), 0);

    /* /metrics: one peer connected (this node's own entry never counts),
       no forks; then both. */
    stub.peers[1].up = true;
    char *text = metrics_text(f);
    assert_non_null(strstr(text, "\nstallmesh_peers_connected 1\n"));
    assert_non_null(strstr(text, "\nstallmesh_forks 0\n"));
    free(text);
    stub.peers[0].up = stub.peers[2].up = true;
    text = metrics_text(f);
    assert_non_null(strstr(text, "\nstallmesh_peers_connected 2\n"));
    free(text);
    assert_true(stub.calls >= 3);

    sm_http_resp_clear(&f->resp);
    f->api = plain;
    sm_api_destroy(&with);
    sm_metrics_destroy(&metrics);
}

/*  Two validly signed entries of the other stall at one seq (a fork), and
    again at another seq: the state lists both pieces of evidence under
    "forks" and the origin once under "quarantined"; /metrics counts the
    evidence.                                                                 */
static void
test_state_quarantined(void **state)
{
    fx *f = *state;
    sm_body add = tu_item("bread", "Bread", 250);
    assert_int_equal(sm_ledger_append(f->b, &add, NOW, NULL), 0);
    tu_sync(f->b, f->a, NOW);
    sm_head h;
    sm_market m;
    assert_int_equal(sm_ledger_head(f->b, &f->idb.pub, &h), 0);
    assert_int_equal(sm_ledger_market(f->b, &m), 0);
    sm_entry e1, e2;
    memset(&e1, 0, sizeof e1);
    e1.version = SM_ENTRY_VERSION;
    e1.market = m.market;
    e1.origin = f->idb.pub;
    e1.seq = h.seq + 1;
    e1.prev = h.link;
    e1.hlc = SM_HLC_MAKE(NOW, 1);
    e1.body = tu_add("bread", 1);
    e2 = e1;
    e2.body = tu_add("bread", 2);
    uint8_t b1[SM_ENTRY_BYTES_MAX], b2[SM_ENTRY_BYTES_MAX];
    sm_signed s1 = { b1, 0, { 0 } }, s2 = { b2, 0, { 0 } };
    s1.len = tu_sign(&e1, &f->idb, b1, s1.sig);
    s2.len = tu_sign(&e2, &f->idb, b2, s2.sig);
    sm_ingest_result res;
    assert_int_equal(sm_ledger_ingest(f->a, &s1, 1, NOW, &res), 0);
    assert_int_equal(sm_ledger_ingest(f->a, &s2, 1, NOW, &res), SM_EFORK);
    /* A second equivocation of the same origin, at its first entry. */
    assert_int_equal(h.seq, 1);
    sm_entry e0 = e1;
    e0.seq = 1;
    memset(e0.prev.b, 0, SM_HASH_BYTES);
    e0.body = tu_item("bread", "Rye bread", 300);
    uint8_t b0[SM_ENTRY_BYTES_MAX];
    sm_signed s0 = { b0, 0, { 0 } };
    s0.len = tu_sign(&e0, &f->idb, b0, s0.sig);
    assert_int_equal(sm_ledger_ingest(f->a, &s0, 1, NOW, &res), SM_EFORK);

    assert_int_equal(get(f, "/api/state", NULL), 200);
    json_t *forks = json_object_get(f->json, "forks");
    assert_int_equal(json_array_size(forks), 2);
    for (size_t i = 0; i < json_array_size(forks); i++)
        assert_string_equal(jstr(json_array_get(forks, i), "origin"), f->b_hex);
    assert_int_equal(jint(json_array_get(forks, 0), "seq"), 1);
    assert_int_equal(jint(json_array_get(forks, 1), "seq"), (int64_t) e1.seq);
    json_t *q = json_object_get(f->json, "quarantined");
    assert_int_equal(json_array_size(q), 1);
    assert_string_equal(json_string_value(json_array_get(q, 0)), f->b_hex);
    size_t nforks = json_array_size(forks);

    sm_metrics *metrics = sm_metrics_new();
    sm_api_opts o = { .ledger = f->a, .node = f->ida.pub, .metrics = metrics };
    sm_api *with = sm_api_new(&o, NULL);
    assert_non_null(with);
    sm_api *plain = f->api;
    f->api = with;
    char line[64];
    snprintf(line, sizeof line, "\nstallmesh_forks %zu\n", nforks);
    char *text = metrics_text(f);
    assert_non_null(strstr(text, line));
    assert_non_null(strstr(text, "\nstallmesh_peers_connected 0\n"));
    free(text);
    sm_http_resp_clear(&f->resp);
    f->api = plain;
    sm_api_destroy(&with);
    sm_metrics_destroy(&metrics);
}

/*  A mirror's API (sm_api_opts.mirror) refuses every write route with 403
    read_only, token or not, serves the reads, and forwards a viewer's hold
    to the stall holding the units, also when the hold names the mirror; a
    reservation of several lines it refuses (a forwarded hold has one).    */
static void
test_mirror_read_only(void **state)
{
    fx *f = *state;
    stock_up(f);
    tu_sync(f->a, f->b, NOW);
    sm_body add = tu_add("jam", 20);
    assert_int_equal(sm_ledger_append(f->b, &add, NOW, NULL), 0);
    tu_sync(f->b, f->a, NOW);

    sm_api_opts o = { .ledger = f->a, .node = f->ida.pub, .hold_ttl_s = 600,
                      .holds_per_min = 3, .mirror = true };
    sm_api *mirror = sm_api_new(&o, NULL);
    assert_non_null(mirror);
    sm_api *plain = f->api;
    f->api = mirror;
    static const char *const posts[] = { "/api/items", "/api/stock/add", "/api/stock/adjust",
                                         "/api/stock/move", "/api/sales", "/api/returns" };
    for (size_t i = 0; i < sizeof posts / sizeof posts[0]; i++) {
        assert_int_equal(post(f, posts[i], "{\"sku\":\"jam\",\"qty\":1}"), 403);
        expect_error(f, 403, "read_only");
    }
    char path[160];
    snprintf(path, sizeof path, "/api/holds/%s:1", f->b_hex);
    call_full(f, SM_HTTP_DELETE, path, NULL, NULL, true, TILL, NULL, NOW);
    expect_error(f, 403, "read_only");
    assert_int_equal(get(f, "/api/stock", NULL), 200);
    assert_int_equal(units_here(f, "jam"), 10);     /* nothing was written */

    const char *bodies[2] = { "{\"sku\":\"jam\",\"qty\":2}", NULL };
    char named[200];
    snprintf(named, sizeof named, "{\"sku\":\"jam\",\"qty\":2,\"at\":\"%s\"}", f->a_hex);
    bodies[1] = named;
    for (size_t k = 0; k < 2; k++) {
        sm_http_resp_clear(&f->resp);
        sm_http_req req = { .method = SM_HTTP_POST, .path = "/api/holds", .query = "",
                            .client = PHONE, .body = bodies[k], .body_len = strlen(bodies[k]) };
        sm_core_req *w = NULL;
        assert_int_equal(sm_api_handle(f->api, &req, NOW, &f->resp, &w), SM_API_WRITE);
        assert_true(w->forward);
        assert_memory_equal(w->at.b, f->idb.pub.b, SM_KEY_BYTES);
        sm_api_cancel(f->api, w);
    }
    /* No stall has any of it: 409, nothing forwarded. */
    assert_int_equal(post(f, "/api/holds", "{\"sku\":\"tea\",\"qty\":1}"), 409);
    expect_error(f, 409, "insufficient_stock");
    /* A reservation of several lines is forwarded whole, to the stall with
       the most units of its first line's sku. */
    sm_http_resp_clear(&f->resp);
    const char *lines = "{\"lines\":[{\"sku\":\"jam\",\"qty\":1},{\"sku\":\"tea\",\"qty\":1}]}";
    sm_http_req lreq = { .method = SM_HTTP_POST, .path = "/api/holds", .query = "",
                         .client = PHONE, .body = lines, .body_len = strlen(lines) };
    sm_core_req *lw = NULL;
    assert_int_equal(sm_api_handle(f->api, &lreq, NOW, &f->resp, &lw), SM_API_WRITE);
    assert_true(lw->forward);
    assert_memory_equal(lw->at.b, f->idb.pub.b, SM_KEY_BYTES);
    assert_int_equal(lw->body.u.hold.more_count, 1);
    assert_string_equal(lw->body.u.hold.more[0].sku, "tea");
    sm_api_cancel(f->api, lw);
    sm_http_resp_clear(&f->resp);
    f->api = plain;
    sm_api_destroy(&mirror);
}

/*  Scopes: a till token sells but may not add stock or items (403
    forbidden_scope), a stock token may, neither reaches the admin's
    routes; the node's own token (authorized, no scope) is admin; without
    devices the pairing routes answer 404.                                  */
static void
test_scopes(void **state)
{
    fx *f = *state;
    struct { sm_scope scope; const char *method_path; const char *body; int status; } cases[] = {
        { SM_SCOPE_TILL,  "/api/stock/add", "{\"sku\":\"mug\",\"qty\":1}", 403 },
        { SM_SCOPE_TILL,  "/api/items", "{\"sku\":\"x\",\"name\":\"X\",\"price\":1}", 403 },
        { SM_SCOPE_STOCK, "/api/pair/codes", "{\"scope\":\"till\"}", 403 },
        { SM_SCOPE_STOCK, "/api/items", "{\"sku\":\"x\",\"name\":\"X\",\"price\":1}", 201 },
        { SM_SCOPE_STOCK, "/api/stock/add", "{\"sku\":\"x\",\"qty\":3}", 200 },
        { SM_SCOPE_NONE,  "/api/pair/codes", "{\"scope\":\"till\"}", 404 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sm_http_resp_clear(&f->resp);
        sm_http_req req = {
            .method = SM_HTTP_POST, .path = cases[i].method_path, .query = "",
            .authorized = true, .scope = cases[i].scope, .client = "10.0.0.5",
            .body = cases[i].body, .body_len = strlen(cases[i].body),
        };
        sm_core_req *w = NULL;
        if (sm_api_handle(f->api, &req, 1000, &f->resp, &w) == SM_API_WRITE) {
            execute(f, w, 1000);
            sm_api_finish(f->api, w, 1000, &f->resp);
        }
        parse_resp(f);
        if (f->resp.status != cases[i].status && !(cases[i].status == 200 && f->resp.status == 201))
            fail_msg("case %zu (%s): %d, want %d: %.*s", i, cases[i].method_path,
                     f->resp.status, cases[i].status, (int) f->resp.body_len, f->resp.body);
        if (cases[i].status == 403)
            expect_error(f, 403, "forbidden_scope");
    }
    /* GET /api/sales: a till token may read this stall's sales. */
    sm_http_resp_clear(&f->resp);
    sm_http_req get = { .method = SM_HTTP_GET, .path = "/api/sales", .query = "",
                        .authorized = true, .scope = SM_SCOPE_TILL, .client = "c" };
    sm_core_req *w = NULL;
    assert_int_equal(sm_api_handle(f->api, &get, 1000, &f->resp, &w), SM_API_DONE);
    assert_int_equal(f->resp.status, 200);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_item_stock_adjust, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insufficient_stock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_external_id_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sale_answer_as_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_returns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_at_other_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_sku_and_currency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_routes_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_etag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_body_outlives_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_ledger_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_move_insufficient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_move_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_quarantined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scopes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
