/*  Devices, scopes, pairing codes and the failed-authentication limiter
    (see auth.h).

    DIR/devices (mode 0600), text, one line a device after a header line:

        # stallmesh devices v1
        ID SCOPE CREATED_MS LAST_USED_MS TOKEN_HASH NAME

    ID is 16 hex digits, SCOPE till|stock|admin, the times unix
    milliseconds, TOKEN_HASH the BLAKE2b-256 of the token's 32 bytes as 64
    hex digits, NAME the rest of the line (UTF-8 text, no control
    characters).  A line that does not parse makes the whole file refused
    (SM_ECORRUPT): a damaged file must not silently drop a revocation.

    last_used is kept in memory on every use and written with the next
    change of the file, or when it moved more than a minute past what the
    file has, so a busy till does not rewrite the file on every sale.
    Pairing codes live in memory only: a restart voids them.                 */
#include "auth.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "logger.h"
#include "stallmesh/entry.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"
#include "text.h"

#define SM__AUTH_LAST_USED_WRITE_MS 60000u   /* last_used written at most this stale */
#define SM__AUTH_ADDR_BYTES         64u

static const char s_header[] = "# stallmesh devices v1\n";
/* Base32 without the easily confused I, O, 0 and 1. */
static const char s_code_alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

typedef struct {
    sm_auth_device dev;
    sm_hash token_hash;
    uint64_t saved_last_used_ms;
} s_device;

typedef struct {
    char code[SM_AUTH_CODE_CHARS + 1];     /* "" = free */
    char name[SM_DEVICE_NAME_BYTES_MAX + 1];
    sm_scope scope;
    uint64_t expires_ms;
} s_code;

typedef struct {
    char addr[SM__AUTH_ADDR_BYTES];        /* "" = free */
    uint64_t window_start_ms;
    uint64_t last_ms;
    uint32_t fails;
} s_fails;

struct sm_auth {
    char path[4096];
    sm_hash admin_hash;
    uint32_t pair_ttl_s;
    s_device devices[SM_DEVICES_MAX];
    size_t device_count;
    s_code codes[SM_PAIR_CODES_MAX];
    s_fails fails[SM_AUTH_ADDRS_MAX];
    /* No address is refused from this time on: the latest end of the
       window of any address that reached SM_AUTH_FAILS_MAX.  Every request
       asks whether its address is refused; while none is (now past this),
       the answer costs no walk of the table. */
    uint64_t limits_end_ms;
};

/* ---- scopes ------------------------------------------------------------ */

const char *
sm_scope_name(sm_scope scope)
{
    switch (scope) {
    case SM_SCOPE_TILL: return "till";
    case SM_SCOPE_STOCK: return "stock";
    case SM_SCOPE_ADMIN: return "admin";
    default: return "none";
    }
}

sm_scope
sm_scope_parse(const char *name)
{
    if (!name)
        return SM_SCOPE_NONE;
    if (strcmp(name, "till") == 0)
        return SM_SCOPE_TILL;
    if (strcmp(name, "stock") == 0)
        return SM_SCOPE_STOCK;
    if (strcmp(name, "admin") == 0)
        return SM_SCOPE_ADMIN;
    return SM_SCOPE_NONE;
}

/* ---- the file ---------------------------------------------------------- */

static int
s_save(sm_auth *self)
{
    char tmp[4096 + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", self->path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return SM_EIO;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return SM_EIO;
    }
    fputs(s_header, f);
    for (size_t i = 0; i < self->device_count; i++) {
        s_device *d = &self->devices[i];
        char hex[2 * SM_HASH_BYTES + 1];
        sm_hex_encode(d->token_hash.b, SM_HASH_BYTES, hex);
        fprintf(f, "%s %s %" PRIu64 " %" PRIu64 " %s %s\n", d->dev.id,
                sm_scope_name(d->dev.scope), d->dev.created_ms, d->dev.last_used_ms, hex,
                d->dev.name);
    }
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, self->path) != 0) {
        unlink(tmp);
        return SM_EIO;
    }
    for (size_t i = 0; i < self->device_count; i++)
        self->devices[i].saved_last_used_ms = self->devices[i].dev.last_used_ms;
    return 0;
}

static bool
s_is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/*  One device line (without its newline) into *d: true if it parses.     */
static bool
s_parse_line(char *line, s_device *d)
{
    memset(d, 0, sizeof *d);
    char id[32], scope[16], hash[80];
    uint64_t created, used;
    int at = 0;
    if (sscanf(line, "%31s %15s %" SCNu64 " %" SCNu64 " %79s %n", id, scope, &created,
               &used, hash, &at) != 5 || at <= 0)
        return false;
    const char *name = line + at;
    size_t n = strlen(name);
    if (!s_is_hex(id, SM_AUTH_ID_HEX) || !s_is_hex(hash, 2 * SM_HASH_BYTES)
        || sm_scope_parse(scope) == SM_SCOPE_NONE || n > SM_DEVICE_NAME_BYTES_MAX
        || !sm__text_valid((const uint8_t *) name, n)
        || sm_hex_decode(hash, d->token_hash.b, SM_HASH_BYTES) != 0)
        return false;
    memcpy(d->dev.id, id, SM_AUTH_ID_HEX + 1);
    memcpy(d->dev.name, name, n + 1);
    d->dev.scope = sm_scope_parse(scope);
    d->dev.created_ms = created;
    d->dev.last_used_ms = used;
    d->saved_last_used_ms = used;
    return true;
}

static int
s_load(sm_auth *self)
{
    FILE *f = fopen(self->path, "r");
    if (!f)
        return errno == ENOENT ? 0 : SM_EIO;
    char line[512];
    int rc = 0;
    size_t lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') {
            rc = SM_ECORRUPT;
            break;
        }
        line[n - 1] = 0;
        if (lineno == 1) {
            if (strncmp(line, s_header, sizeof s_header - 2) != 0)
                rc = SM_ECORRUPT;
            if (rc)
                break;
            continue;
        }
        if (self->device_count == SM_DEVICES_MAX
            || !s_parse_line(line, &self->devices[self->device_count])) {
            rc = SM_ECORRUPT;
            break;
        }
        self->device_count++;
    }
    if (ferror(f))
        rc = SM_EIO;
    fclose(f);
    if (rc == SM_ECORRUPT)
        sm_log_error("auth: %s line %zu is damaged: fix or remove the line (removing "
                     "the file unpairs every device)", self->path, lineno);
    return rc;
}

sm_auth *
sm_auth_new(const char *path, const char *admin_token, uint32_t pair_ttl_s, int *err)
{
    assert(path && admin_token && err);
    sm_auth *self = calloc(1, sizeof *self);
    if (!self) {
        *err = SM_ENOMEM;
        return NULL;
    }
    if (snprintf(self->path, sizeof self->path, "%s", path) >= (int) sizeof self->path) {
        free(self);
        *err = SM_EINVAL;
        return NULL;
    }
    sm_hash_bytes((const uint8_t *) admin_token, strlen(admin_token), &self->admin_hash);
    self->pair_ttl_s = pair_ttl_s ? pair_ttl_s : SM_PAIR_TTL_S_DEFAULT;
    int rc = s_load(self);
    if (rc != 0) {
        free(self);
        *err = rc;
        return NULL;
    }
    *err = 0;
    return self;
}

void
sm_auth_destroy(sm_auth **self_p)
{
    assert(self_p);
    if (!*self_p)
        return;
    sodium_memzero(*self_p, sizeof **self_p);
    free(*self_p);
    *self_p = NULL;
}

/* ---- failures ---------------------------------------------------------- */

static s_fails *
s_fails_for(sm_auth *self, const char *client, bool create, uint64_t now_ms)
{
    s_fails *oldest = NULL;
    for (size_t i = 0; i < SM_AUTH_ADDRS_MAX; i++) {
        s_fails *s = &self->fails[i];
        if (s->addr[0] && strncmp(s->addr, client, sizeof s->addr - 1) == 0)
            return s;
        if (!oldest || !s->addr[0] || (oldest->addr[0] && s->last_ms < oldest->last_ms))
            oldest = s;
    }
    if (!create)
        return NULL;
    memset(oldest, 0, sizeof *oldest);
    snprintf(oldest->addr, sizeof oldest->addr, "%s", client);
    oldest->window_start_ms = now_ms;
    return oldest;
}

int
sm_auth_limited(sm_auth *self, const char *client, uint64_t now_ms)
{
    assert(self);
    if (now_ms >= self->limits_end_ms)
        return 0;                      /* every address's window is over */
    s_fails *s = s_fails_for(self, client ? client : "", false, now_ms);
    if (!s || s->fails < SM_AUTH_FAILS_MAX)
        return 0;
    uint64_t end = s->window_start_ms + SM_AUTH_FAIL_WINDOW_MS;
    if (now_ms >= end || now_ms < s->window_start_ms) {
        memset(s, 0, sizeof *s);       /* the window is over (or the clock stepped back) */
        return 0;
    }
    return (int) ((end - now_ms + 999) / 1000);
}

void
sm_auth_fail(sm_auth *self, const char *client, uint64_t now_ms)
{
    assert(self);
    s_fails *s = s_fails_for(self, client ? client : "", true, now_ms);
    if (now_ms >= s->window_start_ms + SM_AUTH_FAIL_WINDOW_MS || now_ms < s->window_start_ms) {
        s->window_start_ms = now_ms;
        s->fails = 0;
    }
    s->last_ms = now_ms;
    if (s->fails < UINT32_MAX)
        s->fails++;
    if (s->fails == SM_AUTH_FAILS_MAX) {
        uint64_t end = s->window_start_ms + SM_AUTH_FAIL_WINDOW_MS;
        if (end > self->limits_end_ms)
            self->limits_end_ms = end;
        sm_log_warn("auth: %u failed authentications from %s: refused for %u s",
                    SM_AUTH_FAILS_MAX, s->addr, SM_AUTH_FAIL_WINDOW_MS / 1000);
    }
}

/* ---- tokens ------------------------------------------------------------ */

/*  The hash a token is known by: of its 32 bytes for a device token (64
    hex digits), of its text otherwise (the admin token's file, as written). */
static void
s_token_hash(const char *token, sm_hash *out)
{
    uint8_t raw[32];
    size_t n = strlen(token);
    if (n == SM_AUTH_TOKEN_HEX && s_is_hex(token, n) && sm_hex_decode(token, raw, 32) == 0) {
        sm_hash_bytes(raw, 32, out);
        sodium_memzero(raw, sizeof raw);
    } else {
        sm_hash_bytes((const uint8_t *) token, n, out);
    }
}

int
sm_auth_check(sm_auth *self, const char *token, const char *client, uint64_t now_ms,
              sm_scope *scope, char device_id[SM_AUTH_ID_HEX + 1])
{
    assert(self && token && scope);
    *scope = SM_SCOPE_NONE;
    if (device_id)
        device_id[0] = 0;
    if (sm_auth_limited(self, client, now_ms) > 0)
        return SM_EAUTHLIMIT;
    sm_hash h, admin;
    s_token_hash(token, &h);
    /* The admin token is hashed as its text, whatever it looks like. */
    sm_hash_bytes((const uint8_t *) token, strlen(token), &admin);
    /* Every candidate is compared, matched or not: the time taken does not
       tell which one (or whether any) matched. */
    int found = -1;
    bool is_admin = sodium_memcmp(admin.b, self->admin_hash.b, SM_HASH_BYTES) == 0;
    for (size_t i = 0; i < self->device_count; i++)
        if (sodium_memcmp(h.b, self->devices[i].token_hash.b, SM_HASH_BYTES) == 0)
            found = (int) i;
    if (is_admin) {
        *scope = SM_SCOPE_ADMIN;
        return 0;
    }
    if (found < 0) {
        sm_auth_fail(self, client, now_ms);
        return SM_EAUTH;
    }
    s_device *d = &self->devices[found];
    *scope = d->dev.scope;
    if (device_id)
        memcpy(device_id, d->dev.id, SM_AUTH_ID_HEX + 1);
    d->dev.last_used_ms = now_ms;
    if (now_ms > d->saved_last_used_ms + SM__AUTH_LAST_USED_WRITE_MS && s_save(self) != 0)
        sm_log_warn("auth: cannot write %s (devices' last use): %s", self->path,
                    strerror(errno));
    return 0;
}

/* ---- pairing ----------------------------------------------------------- */

int
sm_auth_pair_code(sm_auth *self, sm_scope scope, const char *name, uint64_t now_ms,
                  char code[SM_AUTH_CODE_CHARS + 1], uint64_t *expires_ms)
{
    assert(self && name && code && expires_ms);
    assert(scope >= SM_SCOPE_TILL && scope <= SM_SCOPE_ADMIN);
    assert(strlen(name) <= SM_DEVICE_NAME_BYTES_MAX);
    s_code *slot = NULL;
    for (size_t i = 0; i < SM_PAIR_CODES_MAX; i++) {
        s_code *c = &self->codes[i];
        if (c->code[0] && now_ms >= c->expires_ms)
            memset(c, 0, sizeof *c);
        if (!c->code[0] && !slot)
            slot = c;
    }
    if (!slot)
        return SM_EDEVICES;
    uint8_t rnd[SM_AUTH_CODE_CHARS];
    sm_random_bytes(rnd, sizeof rnd);
    for (size_t i = 0; i < SM_AUTH_CODE_CHARS; i++)
        slot->code[i] = s_code_alphabet[rnd[i] & 31];
    slot->code[SM_AUTH_CODE_CHARS] = 0;
    snprintf(slot->name, sizeof slot->name, "%s", name);
    slot->scope = scope;
    slot->expires_ms = now_ms + (uint64_t) self->pair_ttl_s * 1000u;
    memcpy(code, slot->code, SM_AUTH_CODE_CHARS + 1);
    *expires_ms = slot->expires_ms;
    return 0;
}

int
sm_auth_pair(sm_auth *self, const char *code, const char *name, const char *client,
             uint64_t now_ms, char token[SM_AUTH_TOKEN_HEX + 1], sm_auth_device *dev)
{
    assert(self && code && name && token && dev);
    if (sm_auth_limited(self, client, now_ms) > 0)
        return SM_EAUTHLIMIT;
    s_code *hit = NULL;
    if (strlen(code) == SM_AUTH_CODE_CHARS) {
        for (size_t i = 0; i < SM_PAIR_CODES_MAX; i++) {
            s_code *c = &self->codes[i];
            if (c->code[0] && sodium_memcmp(c->code, code, SM_AUTH_CODE_CHARS) == 0)
                hit = c;
        }
    }
    if (hit && now_ms >= hit->expires_ms) {
        memset(hit, 0, sizeof *hit);
        hit = NULL;
    }
    if (!hit) {
        sm_auth_fail(self, client, now_ms);
        return SM_EPAIRCODE;
    }
    if (self->device_count == SM_DEVICES_MAX)
        return SM_EDEVICES;
    s_device *d = &self->devices[self->device_count];
    memset(d, 0, sizeof *d);
    uint8_t raw[32], id[SM_AUTH_ID_HEX / 2];
    sm_random_bytes(raw, sizeof raw);
    sm_random_bytes(id, sizeof id);
    sm_hex_encode(raw, sizeof raw, token);
    sm_hash_bytes(raw, sizeof raw, &d->token_hash);
    sodium_memzero(raw, sizeof raw);
    sm_hex_encode(id, sizeof id, d->dev.id);
    snprintf(d->dev.name, sizeof d->dev.name, "%s", hit->name[0] ? hit->name : name);
    if (!d->dev.name[0]) {
        char id_text[SM_AUTH_ID_HEX + 1];
        memcpy(id_text, d->dev.id, sizeof id_text);
        snprintf(d->dev.name, sizeof d->dev.name, "device %s", id_text);
    }
    d->dev.scope = hit->scope;
    d->dev.created_ms = now_ms;
    self->device_count++;
    int rc = s_save(self);
    if (rc != 0) {
        self->device_count--;
        sodium_memzero(token, SM_AUTH_TOKEN_HEX + 1);
        return rc;
    }
    memset(hit, 0, sizeof *hit);        /* spent only once it is written */
    *dev = d->dev;
    return 0;
}

size_t
sm_auth_devices(sm_auth *self, sm_auth_device *out, size_t cap)
{
    assert(self);
    for (size_t i = 0; i < self->device_count && i < cap; i++)
        out[i] = self->devices[i].dev;
    return self->device_count;
}

int
sm_auth_revoke(sm_auth *self, const char *id)
{
    assert(self && id);
    for (size_t i = 0; i < self->device_count; i++) {
        if (strcmp(self->devices[i].dev.id, id) != 0)
            continue;
        memmove(&self->devices[i], &self->devices[i + 1],
                (self->device_count - i - 1) * sizeof self->devices[0]);
        self->device_count--;
        return s_save(self);
    }
    return SM_ENODEVICE;
}
