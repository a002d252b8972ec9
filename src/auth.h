/*  Who may use the node's API: the admin token, paired devices with scopes,
    pairing codes, and a limit on failed authentications per address.

    Scopes, each including the ones before it:
      till   sales, returns, holds, and this stall's own reports;
      stock  that, plus items and stock (add, adjust, move);
      admin  everything: pairing, devices, and any route not given a scope.
    The token in DIR/api-token is admin (the CLI uses it).  A device gets its
    own token by pairing: the admin asks for a one-time code (valid
    pair_ttl_s, default 10 minutes), the device sends the code once and
    receives a random 256-bit token.  Revoking a device makes its token fail
    at once.

    Storage: DIR/devices, mode 0600, one device a line, written whole to a
    temporary file and renamed (format at the top of auth.c).  Only the
    BLAKE2b-256 hash of each token is kept, so the file gives no working
    token to whoever reads it.  Tokens are compared as hashes in constant
    time (sodium_memcmp) and never logged.

    Failed authentications (a wrong bearer token, a wrong pairing code) are
    counted per client address; from SM_AUTH_FAILS_MAX in a window of
    SM_AUTH_FAIL_WINDOW_MS every authentication from that address is refused
    (SM_EAUTHLIMIT, HTTP 429) until the window ends, while other addresses
    are unaffected.

    No clock and no I/O but the devices file: time comes in as now_ms.  One
    thread (the web thread) uses an sm_auth.                                 */
#ifndef SM_AUTH_H
#define SM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/limits.h"

typedef enum {
    SM_SCOPE_NONE = 0,         /* no token: the public routes */
    SM_SCOPE_TILL = 1,
    SM_SCOPE_STOCK = 2,
    SM_SCOPE_ADMIN = 3,
} sm_scope;

#define SM_AUTH_TOKEN_HEX   64u    /* a token: 32 random bytes as hex */
#define SM_AUTH_ID_HEX      16u    /* a device id: 8 random bytes as hex */
#define SM_AUTH_CODE_CHARS  12u    /* a pairing code: 60 bits, base32 */

typedef struct {
    char id[SM_AUTH_ID_HEX + 1];
    char name[SM_DEVICE_NAME_BYTES_MAX + 1];
    sm_scope scope;
    uint64_t created_ms;
    uint64_t last_used_ms;     /* 0 = never */
} sm_auth_device;

typedef struct sm_auth sm_auth;

/*  Load the devices of `path` (missing: none yet) and remember the admin
    token (hex, borrowed for the call).  pair_ttl_s 0 = the default.  NULL
    and *err (SM_EIO, SM_ECORRUPT for a damaged file) on failure.            */
sm_auth *sm_auth_new(const char *path, const char *admin_token, uint32_t pair_ttl_s,
                     int *err);
void sm_auth_destroy(sm_auth **self_p);

/*  The scope of a bearer token (the text after "Bearer ") from `client`:
    0 with *scope set (and device_id, if not NULL, the device's id or ""
    for the admin token), SM_EAUTH for a wrong token (counted as a failure)
    or SM_EAUTHLIMIT when `client` is over its failures (the token is then
    not even looked at).                                                     */
int sm_auth_check(sm_auth *self, const char *token, const char *client, uint64_t now_ms,
                  sm_scope *scope, char device_id[SM_AUTH_ID_HEX + 1]);
/*  Whether `client` is over its failures now: seconds until it may try
    again, or 0.                                                             */
int sm_auth_limited(sm_auth *self, const char *client, uint64_t now_ms);
/*  Count a failed authentication from `client` (a wrong pairing code).     */
void sm_auth_fail(sm_auth *self, const char *client, uint64_t now_ms);

/*  A new one-time pairing code for a device of `scope` named `name` (may be
    "": the device names itself).  code gets SM_AUTH_CODE_CHARS characters,
    *expires_ms when it stops working.  0 or SM_EDEVICES (too many open).  */
int sm_auth_pair_code(sm_auth *self, sm_scope scope, const char *name, uint64_t now_ms,
                      char code[SM_AUTH_CODE_CHARS + 1], uint64_t *expires_ms);
/*  Use a pairing code: a new device named `name` (or the name given with the
    code, if that was not ""), its token into token (hex), its record into
    *dev; the code is spent.  SM_EPAIRCODE (unknown, used or expired;
    counted as a failure of `client`), SM_EAUTHLIMIT, SM_EDEVICES, or SM_EIO
    if the devices file cannot be written (nothing is then paired).          */
int sm_auth_pair(sm_auth *self, const char *code, const char *name, const char *client,
                 uint64_t now_ms, char token[SM_AUTH_TOKEN_HEX + 1], sm_auth_device *dev);
/*  The paired devices, oldest first: copies at most cap, returns how many
    there are.                                                               */
size_t sm_auth_devices(sm_auth *self, sm_auth_device *out, size_t cap);
/*  Forget a device: its token fails from the next request.  0,
    SM_ENODEVICE or SM_EIO (the file could not be written; the device stays
    revoked in this process and the call may be retried).                    */
int sm_auth_revoke(sm_auth *self, const char *id);

/*  "till", "stock", "admin" (or "none"); and back: SM_SCOPE_NONE if not one
    of the three.                                                             */
const char *sm_scope_name(sm_scope scope);
sm_scope sm_scope_parse(const char *name);

#endif
