/*  Pairing and devices: POST /api/pair (a device's one-time code for its
    own token), POST /api/pair/codes (the admin asks for a code), GET
    /api/devices and DELETE /api/devices/<id> (list, revoke).  The devices
    themselves are auth.c's; proto/api.md is the normative reference.

    A token must not cross the Wi-Fi in clear, so pairing answers only over
    TLS or on this machine's loopback (403 insecure_transport otherwise),
    and codes are handed out only when the node serves HTTPS (their link is
    https://HOST:PORT/pair#CODE; the code rides in the fragment, which a
    browser never sends to a server or puts in a Referer).                   */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "api_int.h"
#include "stallmesh/error.h"

static bool
s_need_auth(sm_api *self, sm_http_resp *r)
{
    if (self->auth)
        return true;
    sm__api_error(r, 404, "not_found", "this node keeps no paired devices", NULL);
    return false;
}

static bool
s_need_secure(const sm_http_req *req, sm_http_resp *r)
{
    if (req->secure)
        return true;
    sm__api_error(r, 403, "insecure_transport",
                  "pairing hands out a token: use the node's https:// address "
                  "(run --https HOST:PORT)", NULL);
    return false;
}

static void
s_device_json(sm_json_buf *b, const sm_auth_device *d)
{
    sm_json_obj_open(b);
    sm_json_kstr(b, "id", d->id);
    sm_json_kstr(b, "name", d->name);
    sm_json_kstr(b, "scope", sm_scope_name(d->scope));
    sm_json_ktime(b, "created", d->created_ms);
    sm_json_key(b, "last_used");
    if (d->last_used_ms)
        sm_json_time(b, d->last_used_ms);
    else
        sm_json_null(b);
    sm_json_obj_close(b);
}

static void
s_auth_error(sm_api *self, const sm_http_req *req, uint64_t now_ms, sm_http_resp *r,
             int rc)
{
    switch (rc) {
    case SM_EAUTHLIMIT: {
        int wait_s = sm_auth_limited(self->auth, req->client, now_ms);
        sm__api_error(r, 429, sm_errname(rc), sm_strerror(rc), NULL);
        r->retry_after_s = wait_s > 0 ? wait_s : 1;
        return;
    }
    case SM_EPAIRCODE:
        sm__api_error(r, 401, sm_errname(rc), sm_strerror(rc), "code");
        return;
    case SM_EDEVICES:
        sm__api_error(r, 409, sm_errname(rc), sm_strerror(rc), NULL);
        return;
    case SM_ENODEVICE:
        sm__api_error(r, 404, sm_errname(rc), sm_strerror(rc), NULL);
        return;
    default:
        sm__api_ledger_error(r, rc, false);
        return;
    }
}

/*  POST /api/pair {"code", "name"}: 201 {"token", "device"}.               */
int
sm__api_post_pair(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                  sm_http_resp *r, sm_core_req **write)
{
    (void) write;
    if (!s_need_auth(self, r) || !s_need_secure(req, r))
        return SM_API_DONE;
    int wait_s = sm_auth_limited(self->auth, req->client, now_ms);
    if (wait_s > 0) {
        s_auth_error(self, req, now_ms, r, SM_EAUTHLIMIT);
        return SM_API_DONE;
    }
    sm_json_doc *doc;
    if (!sm__api_parse_body(req, r, &doc))
        return SM_API_DONE;
    static const char *const keys[] = { "code", "name", NULL };
    const sm_json_val *root = sm_json_root(doc);
    char code[SM_AUTH_CODE_CHARS + 8], name[SM_DEVICE_NAME_BYTES_MAX + 1] = "";
    if (!sm__api_only(r, root, "", keys)
        || sm__api_get_str(r, root, "", "code", true, 1, SM_AUTH_CODE_CHARS + 4, code,
                           sizeof code) != SM__API_OK
        || sm__api_get_str(r, root, "", "name", false, 1, SM_DEVICE_NAME_BYTES_MAX, name,
                           sizeof name) == SM__API_ANSWERED) {
        sm_json_doc_free(&doc);
        return SM_API_DONE;
    }
    sm_json_doc_free(&doc);
    for (char *p = code; *p; p++)      /* typed by hand: any case */
        if (*p >= 'a' && *p <= 'z')
            *p = (char) (*p - 'a' + 'A');
    char token[SM_AUTH_TOKEN_HEX + 1];
    sm_auth_device dev;
    int rc = sm_auth_pair(self->auth, code, name, req->client ? req->client : "", now_ms,
                          token, &dev);
    if (rc != 0) {
        s_auth_error(self, req, now_ms, r, rc);
        return SM_API_DONE;
    }
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kstr(&b, "token", token);
    sm_json_key(&b, "device");
    s_device_json(&b, &dev);
    sm_json_obj_close(&b);
    memset(token, 0, sizeof token);
    sm__api_take(r, 201, &b);
    return SM_API_DONE;
}

/*  POST /api/pair/codes {"scope", "name"}: 201 {"code", "url", "expires",
    "scope"}.                                                                 */
int
sm__api_post_pair_code(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                       sm_http_resp *r, sm_core_req **write)
{
    (void) write;
    if (!s_need_auth(self, r))
        return SM_API_DONE;
    if (!self->pair_url[0]) {
        sm__api_error(r, 409, "no_https", "this node serves no HTTPS: start it with "
                      "--https HOST:PORT (or [http] tls) to pair devices", NULL);
        return SM_API_DONE;
    }
    sm_json_doc *doc = NULL;
    char scope_text[16] = "till", name[SM_DEVICE_NAME_BYTES_MAX + 1] = "";
    if (req->body_len > 0) {
        if (!sm__api_parse_body(req, r, &doc))
            return SM_API_DONE;
        static const char *const keys[] = { "scope", "name", NULL };
        const sm_json_val *root = sm_json_root(doc);
        if (!sm__api_only(r, root, "", keys)
            || sm__api_get_str(r, root, "", "scope", false, 1, 8, scope_text,
                               sizeof scope_text) == SM__API_ANSWERED
            || sm__api_get_str(r, root, "", "name", false, 1, SM_DEVICE_NAME_BYTES_MAX,
                               name, sizeof name) == SM__API_ANSWERED) {
            sm_json_doc_free(&doc);
            return SM_API_DONE;
        }
        sm_json_doc_free(&doc);
    }
    sm_scope scope = sm_scope_parse(scope_text);
    if (scope == SM_SCOPE_NONE) {
        sm__api_bad(r, "bad_value", "scope", "'scope' must be till, stock or admin");
        return SM_API_DONE;
    }
    char code[SM_AUTH_CODE_CHARS + 1];
    uint64_t expires_ms;
    int rc = sm_auth_pair_code(self->auth, scope, name, now_ms, code, &expires_ms);
    if (rc != 0) {
        s_auth_error(self, req, now_ms, r, rc);
        return SM_API_DONE;
    }
    char url[sizeof self->pair_url + 32];
    snprintf(url, sizeof url, "%s/pair#%s", self->pair_url, code);
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kstr(&b, "code", code);
    sm_json_kstr(&b, "url", url);
    sm_json_ktime(&b, "expires", expires_ms);
    sm_json_kstr(&b, "scope", sm_scope_name(scope));
    sm_json_obj_close(&b);
    sm__api_take(r, 201, &b);
    return SM_API_DONE;
}

/*  GET /api/devices: {"devices": [...]}, oldest first.                     */
int
sm__api_get_devices(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                    sm_http_resp *r, sm_core_req **write)
{
    (void) req, (void) now_ms, (void) write;
    if (!s_need_auth(self, r))
        return SM_API_DONE;
    static sm_auth_device devs[SM_DEVICES_MAX];   /* the web thread's only */
    size_t n = sm_auth_devices(self->auth, devs, SM_DEVICES_MAX);
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_key(&b, "devices");
    sm_json_arr_open(&b);
    for (size_t i = 0; i < n && i < SM_DEVICES_MAX; i++)
        s_device_json(&b, &devs[i]);
    sm_json_arr_close(&b);
    sm_json_obj_close(&b);
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}

/*  DELETE /api/devices/<id>: 200 {"id", "revoked": true}.                  */
int
sm__api_delete_device(sm_api *self, const sm_http_req *req, uint64_t now_ms,
                      sm_http_resp *r, sm_core_req **write)
{
    (void) write;
    if (!s_need_auth(self, r))
        return SM_API_DONE;
    const char *id = req->path + strlen(SM__API_DEVICE_PATH);
    int rc = strlen(id) == SM_AUTH_ID_HEX ? sm_auth_revoke(self->auth, id) : SM_ENODEVICE;
    if (rc == SM_ENODEVICE) {
        s_auth_error(self, req, now_ms, r, rc);
        return SM_API_DONE;
    }
    if (rc != 0) {
        /* Revoked in memory; the file still lists it: say so, loudly. */
        sm__api_error(r, 503, "io_error", "the device is revoked until the node restarts, "
                      "but the devices file could not be written: free disk space and "
                      "revoke it again", NULL);
        return SM_API_DONE;
    }
    sm_json_buf b = { 0 };
    sm_json_obj_open(&b);
    sm_json_kstr(&b, "id", id);
    sm_json_kbool(&b, "revoked", true);
    sm_json_obj_close(&b);
    sm__api_take(r, 200, &b);
    return SM_API_DONE;
}
