/*  Unit tests for src/auth.c: the admin token and device tokens and their
    scopes, pairing codes (once only, their time, unknown ones), revocation
    at once, the devices file (hashes only, mode 0600, kept across a
    reload, a damaged line refused), and the failed-authentication limit per
    address and its window.  Time is passed in: no test sleeps.              */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "auth.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"
#include "testutil.h"

static const char s_admin[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
#define T0 1700000000000ull

typedef struct {
    char *dir;
    char path[512];
    sm_auth *auth;
} s_fix;

static int
s_setup(void **state)
{
    assert_int_equal(sm_crypto_init(), 0);
    s_fix *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    snprintf(f->path, sizeof f->path, "%s/devices", f->dir);
    int err = -1;
    f->auth = sm_auth_new(f->path, s_admin, 60, &err);
    assert_non_null(f->auth);
    assert_int_equal(err, 0);
    *state = f;
    return 0;
}

static int
s_teardown(void **state)
{
    s_fix *f = *state;
    sm_auth_destroy(&f->auth);
    sm_auth_destroy(&f->auth);          /* safe twice */
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/*  Pair a device of `scope` at time now: its token into token.             */
static void
s_pair(s_fix *f, sm_scope scope, uint64_t now, char token[SM_AUTH_TOKEN_HEX + 1],
       sm_auth_device *dev)
{
    char code[SM_AUTH_CODE_CHARS + 1];
    uint64_t expires;
    assert_int_equal(sm_auth_pair_code(f->auth, scope, "", now, code, &expires), 0);
    assert_int_equal(expires, now + 60000);
    assert_int_equal(sm_auth_pair(f->auth, code, "Front till", "10.0.0.9", now, token, dev), 0);
}

/*  The admin token is admin; a wrong one is SM_EAUTH and no scope.          */
static void
test_admin_token(void **state)
{
    s_fix *f = *state;
    sm_scope scope = SM_SCOPE_TILL;
    char id[SM_AUTH_ID_HEX + 1] = "x";
    assert_int_equal(sm_auth_check(f->auth, s_admin, "10.0.0.1", T0, &scope, id), 0);
    assert_int_equal(scope, SM_SCOPE_ADMIN);
    assert_string_equal(id, "");
    char wrong[sizeof s_admin];
    memcpy(wrong, s_admin, sizeof wrong);
    wrong[63] = 'e';
    assert_int_equal(sm_auth_check(f->auth, wrong, "10.0.0.1", T0, &scope, id), SM_EAUTH);
    assert_int_equal(scope, SM_SCOPE_NONE);
    assert_int_equal(sm_auth_check(f->auth, "", "10.0.0.1", T0, &scope, id), SM_EAUTH);
}

/*  A code pairs once; a used, unknown or expired code is SM_EPAIRCODE; the
    device token has the code's scope and names the device.                  */
static void
test_pair_code_once_and_expiry(void **state)
{
    s_fix *f = *state;
    char code[SM_AUTH_CODE_CHARS + 1], token[SM_AUTH_TOKEN_HEX + 1];
    uint64_t expires;
    sm_auth_device dev;
    assert_int_equal(sm_auth_pair_code(f->auth, SM_SCOPE_STOCK, "Stock room", T0, code,
                                       &expires), 0);
    assert_int_equal(strlen(code), SM_AUTH_CODE_CHARS);
    assert_int_equal(sm_auth_pair(f->auth, code, "ignored", "c", T0 + 1000, token, &dev), 0);
    assert_string_equal(dev.name, "Stock room");
    assert_int_equal(dev.scope, SM_SCOPE_STOCK);
    assert_int_equal(strlen(token), SM_AUTH_TOKEN_HEX);
    assert_int_equal(sm_auth_pair(f->auth, code, "again", "c", T0 + 2000, token, &dev),
                     SM_EPAIRCODE);
    assert_int_equal(sm_auth_pair(f->auth, "ABCDEFGHJKLM", "x", "c", T0, token, &dev),
                     SM_EPAIRCODE);
    assert_int_equal(sm_auth_pair(f->auth, "", "x", "c", T0, token, &dev), SM_EPAIRCODE);
    /* Expiry: valid until just before expires, refused from it on. */
    char late[SM_AUTH_CODE_CHARS + 1], early[SM_AUTH_CODE_CHARS + 1];
    assert_int_equal(sm_auth_pair_code(f->auth, SM_SCOPE_TILL, "", T0, late, &expires), 0);
    assert_int_equal(sm_auth_pair_code(f->auth, SM_SCOPE_TILL, "", T0, early, &expires), 0);
    assert_int_equal(sm_auth_pair(f->auth, early, "Till 2", "c", expires - 1, token, &dev), 0);
    assert_int_equal(sm_auth_pair(f->auth, late, "Till 3", "c", expires, token, &dev),
                     SM_EPAIRCODE);
    sm_auth_device list[4];
    assert_int_equal(sm_auth_devices(f->auth, list, 4), 2);
}

/*  Device tokens check with their scope and id; last_used moves; revoking
    makes the token fail at once; an unknown id is SM_ENODEVICE.             */
static void
test_device_scope_and_revoke(void **state)
{
    s_fix *f = *state;
    char till[SM_AUTH_TOKEN_HEX + 1], stock[SM_AUTH_TOKEN_HEX + 1];
    sm_auth_device dt, ds;
    s_pair(f, SM_SCOPE_TILL, T0, till, &dt);
    s_pair(f, SM_SCOPE_STOCK, T0, stock, &ds);
    assert_string_not_equal(dt.id, ds.id);
    sm_scope scope;
    char id[SM_AUTH_ID_HEX + 1];
    assert_int_equal(sm_auth_check(f->auth, till, "c", T0 + 5, &scope, id), 0);
    assert_int_equal(scope, SM_SCOPE_TILL);
    assert_string_equal(id, dt.id);
    assert_int_equal(sm_auth_check(f->auth, stock, "c", T0 + 6, &scope, id), 0);
    assert_int_equal(scope, SM_SCOPE_STOCK);
    sm_auth_device list[4];
    assert_int_equal(sm_auth_devices(f->auth, list, 4), 2);
    assert_int_equal(list[0].last_used_ms, T0 + 5);
    assert_int_equal(sm_auth_revoke(f->auth, dt.id), 0);
    assert_int_equal(sm_auth_check(f->auth, till, "c", T0 + 7, &scope, id), SM_EAUTH);
    assert_int_equal(sm_auth_check(f->auth, stock, "c", T0 + 8, &scope, id), 0);
    assert_int_equal(sm_auth_revoke(f->auth, dt.id), SM_ENODEVICE);
    assert_int_equal(sm_auth_revoke(f->auth, "nonsense"), SM_ENODEVICE);
}

/*  The file holds hashes, not tokens, is 0600, and a reload keeps the
    devices (and the revocation); a damaged line makes the file refused.     */
static void
test_file_reload_and_damage(void **state)
{
    s_fix *f = *state;
    char till[SM_AUTH_TOKEN_HEX + 1], stock[SM_AUTH_TOKEN_HEX + 1];
    sm_auth_device dt, ds;
    s_pair(f, SM_SCOPE_TILL, T0, till, &dt);
    s_pair(f, SM_SCOPE_STOCK, T0, stock, &ds);
    assert_int_equal(sm_auth_revoke(f->auth, dt.id), 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    FILE *fp = fopen(f->path, "r");
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = 0;
    assert_null(strstr(text, stock));
    assert_null(strstr(text, till));
    assert_non_null(strstr(text, ds.id));
    sm_auth_destroy(&f->auth);
    int err = -1;
    f->auth = sm_auth_new(f->path, s_admin, 60, &err);
    assert_non_null(f->auth);
    sm_scope scope;
    assert_int_equal(sm_auth_check(f->auth, stock, "c", T0, &scope, NULL), 0);
    assert_int_equal(scope, SM_SCOPE_STOCK);
    assert_int_equal(sm_auth_check(f->auth, till, "c", T0, &scope, NULL), SM_EAUTH);
    sm_auth_destroy(&f->auth);
    fp = fopen(f->path, "a");
    fputs("zz nonsense\n", fp);
    fclose(fp);
    f->auth = sm_auth_new(f->path, s_admin, 60, &err);
    assert_null(f->auth);
    assert_int_equal(err, SM_ECORRUPT);
}

/*  SM_AUTH_FAILS_MAX failures from one address: then SM_EAUTHLIMIT even for
    the right token, while another address works; the window's end frees it;
    wrong pairing codes count too.                                           */
static void
test_failure_limit(void **state)
{
    s_fix *f = *state;
    sm_scope scope;
    for (unsigned i = 0; i < SM_AUTH_FAILS_MAX; i++) {
        assert_int_equal(sm_auth_limited(f->auth, "10.0.0.66", T0 + i), 0);
        assert_int_equal(sm_auth_check(f->auth, "guess", "10.0.0.66", T0 + i, &scope, NULL),
                         SM_EAUTH);
    }
    assert_true(sm_auth_limited(f->auth, "10.0.0.66", T0 + 100) > 0);
    assert_int_equal(sm_auth_check(f->auth, s_admin, "10.0.0.66", T0 + 100, &scope, NULL),
                     SM_EAUTHLIMIT);
    assert_int_equal(sm_auth_check(f->auth, s_admin, "10.0.0.67", T0 + 100, &scope, NULL), 0);
    uint64_t end = T0 + SM_AUTH_FAIL_WINDOW_MS;
    assert_int_equal(sm_auth_limited(f->auth, "10.0.0.66", end), 0);
    assert_int_equal(sm_auth_check(f->auth, s_admin, "10.0.0.66", end, &scope, NULL), 0);
    char token[SM_AUTH_TOKEN_HEX + 1];
    sm_auth_device dev;
    for (unsigned i = 0; i < SM_AUTH_FAILS_MAX; i++)
        assert_int_equal(sm_auth_pair(f->auth, "WRONGWRONGWR", "x", "10.0.0.70", T0, token,
                                      &dev), SM_EPAIRCODE);
    assert_int_equal(sm_auth_pair(f->auth, "WRONGWRONGWR", "x", "10.0.0.70", T0, token, &dev),
                     SM_EAUTHLIMIT);
}

/*  Fail `n` times from `client` at time `at`.                              */
static void
s_fail_n(s_fix *f, const char *client, unsigned n, uint64_t at)
{
    for (unsigned i = 0; i < n; i++)
        sm_auth_fail(f->auth, client, at);
}

/*  The check skips the table while no address is refused: each limit
    still holds to the end of its own window, whichever address reached it
    last (here the clock steps back in between, so the later limit ends
    first), an address under the limit is never refused, and an address
    refused again after its window is refused again.                         */
static void
test_failure_limit_windows(void **state)
{
    s_fix *f = *state;
    sm_scope scope;
    const uint64_t W = SM_AUTH_FAIL_WINDOW_MS;
    assert_int_equal(sm_auth_limited(f->auth, "10.0.1.1", T0), 0);
    s_fail_n(f, "10.0.1.2", SM_AUTH_FAILS_MAX - 1, T0);
    assert_int_equal(sm_auth_limited(f->auth, "10.0.1.2", T0), 0);
    s_fail_n(f, "10.0.1.1", SM_AUTH_FAILS_MAX, T0 + 5000);
    assert_int_equal(sm_auth_limited(f->auth, "10.0.1.1", T0 + 5000), (int) (W / 1000));
    assert_int_equal(sm_auth_limited(f->auth, "10.0.1.2", T0 + 5000), 0);
    /* The clock stepped back 5 s: another address reaches the limit, its
       window ends 5 s before the first one's. */
    s_fail_n(f, "10.0.1.3", SM_AUTH_FAILS_MAX, T0);
    assert_true(sm_auth_limited(f->auth, "10.0.1.3", T0 + 1000) > 0);
    assert_int_equal(sm_auth_limited(f->auth, "10.0.1.3", T0 + W), 0);
    assert_int_equal(sm_auth_limited(f->auth, "10.0.1.1", T0 + W), 5);
    assert_int_equal(sm_auth_check(f->auth, s_admin, "10.0.1.1", T0 + W + 4000, &scope, NULL),
                     SM_EAUTHLIMIT);
    assert_int_equal(sm_auth_check(f->auth, s_admin, "10.0.1.3", T0 + W + 4000, &scope, NULL),
                     0);
    assert_int_equal(sm_auth_check(f->auth, s_admin, "10.0.1.1", T0 + W + 5000, &scope, NULL),
                     0);
    /* Past every window: a new run of failures is refused again. */
    uint64_t t = T0 + 3 * W;
    assert_int_equal(sm_auth_limited(f->auth, "10.0.1.1", t), 0);
    s_fail_n(f, "10.0.1.1", SM_AUTH_FAILS_MAX - 1, t);
    assert_int_equal(sm_auth_limited(f->auth, "10.0.1.1", t), 0);
    assert_int_equal(sm_auth_check(f->auth, "guess", "10.0.1.1", t, &scope, NULL), SM_EAUTH);
    assert_int_equal(sm_auth_check(f->auth, s_admin, "10.0.1.1", t + 1, &scope, NULL),
                     SM_EAUTHLIMIT);
    assert_int_equal(sm_auth_check(f->auth, s_admin, "10.0.1.2", t + 1, &scope, NULL), 0);
}

/*  Scope names round-trip; anything else is no scope.                      */
static void
test_scope_names(void **state)
{
    (void) state;
    for (sm_scope s = SM_SCOPE_TILL; s <= SM_SCOPE_ADMIN; s++)
        assert_int_equal(sm_scope_parse(sm_scope_name(s)), s);
    assert_int_equal(sm_scope_parse("root"), SM_SCOPE_NONE);
    assert_int_equal(sm_scope_parse(NULL), SM_SCOPE_NONE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admin_token, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_pair_code_once_and_expiry, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_device_scope_and_revoke, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_file_reload_and_damage, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failure_limit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failure_limit_windows, s_setup, s_teardown),
        cmocka_unit_test(test_scope_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
