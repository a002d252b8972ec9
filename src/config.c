/*  The node's configuration (src/config.h): defaults, then an INI file read
    with inih, then single keys from the command line, each over the last.

    Every key is described once, in s_keys; the file and the command line
    both go through s_apply, so they accept exactly the same values.  A
    typo is an error, never a silent default: unknown sections (even empty
    ones), unknown keys, keys before any [section], a key set twice in one
    file (which includes an indented line: inih reads it as more of the
    key above), lines inih cannot parse, and lines too long for its buffer
    are all refused with "FILE:LINE: what is wrong".  inih also takes ':'
    for '=' ("listen: 0.0.0.0:80"); that is left as inih has it.

    Values are parsed strictly: numbers are plain decimal digits (no sign,
    no leading zero, no spaces, no units) within the key's range, whose
    maximum is the limit in include/stallmesh/limits.h (the config may only
    lower a limit).  The listen address is HOST:PORT with HOST a DNS name,
    a dotted IPv4 address or an IPv6 address in brackets (with an optional
    %zone); the host is stored without the brackets.

    inih gives its handler no line number (the packaged library is built
    without INI_HANDLER_LINENO), so the file is fed to ini_parse_stream by
    our own line reader, which counts lines and also checks section headers
    (inih calls the handler only for keys, so an empty unknown section would
    otherwise pass).  This is the only file that includes ini.h.             */
#include "config.h"
#include "stallmesh/identity.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <ini.h>

#include "logger.h"
#include "stallmesh/error.h"
#include "tz.h"
#include "stallmesh/limits.h"

#define SM__CONFIG_WHY_BYTES 256u      /* a message before its FILE:LINE: */
#define SM__CONFIG_VALUE_SHOWN 64      /* bytes of a bad value quoted back */

/* Lower bounds of the numbers (the upper ones are limits.h's). */
#define SM__BODY_BYTES_MIN 1024u       /* a small sale must still fit */
#define SM__WS_QUEUE_BYTES_MIN 65536u  /* a snapshot of a few hundred items */

typedef enum { S_LISTEN, S_U32, S_LEVEL, S_ENDPOINT, S_PEERS, S_BOOL, S_IPV4, S_TZ, S_TLS,
               S_PATH, S_DIR, S_PROXIES } s_type;

typedef struct {
    const char *section;
    const char *key;
    s_type type;
    size_t offset;             /* of the field, for S_U32, S_BOOL, S_IPV4 */
    uint32_t min, max;         /* for S_U32 */
} s_key;

static const s_key s_keys[] = {
    {"http", "listen", S_LISTEN, 0, 0, 0},
    {"http", "body_bytes_max", S_U32, offsetof(sm_config, body_bytes_max),
     SM__BODY_BYTES_MIN, SM_HTTP_BODY_BYTES_MAX},
    {"http", "clients_per_addr_max", S_U32, offsetof(sm_config, clients_per_addr_max),
     1, SM_HTTP_CLIENTS_PER_ADDR_MAX},
    /* A pool of header tables serves SM_HTTP_HEADER_POOL requests at once;
       one address may hold at most a sixteenth of it. */
    {"http", "requests_per_addr_max", S_U32, offsetof(sm_config, requests_per_addr_max),
     1, SM_HTTP_HEADER_POOL / 16},
    {"http", "headers_timeout_s", S_U32, offsetof(sm_config, headers_timeout_s), 1, 300},
    {"http", "body_timeout_s", S_U32, offsetof(sm_config, body_timeout_s), 1, 600},
    {"http", "ws_queue_bytes_max", S_U32, offsetof(sm_config, ws_queue_bytes_max),
     SM__WS_QUEUE_BYTES_MIN, SM_WS_QUEUE_BYTES_MAX},
    {"http", "trusted_proxies", S_PROXIES, 0, 0, 0},
    {"http", "tls", S_TLS, 0, 0, 0},
    {"http", "tls_cert", S_PATH, offsetof(sm_config, tls_cert), 0, 0},
    {"http", "tls_key", S_PATH, offsetof(sm_config, tls_key), 0, 0},
    {"http", "redirect", S_BOOL, offsetof(sm_config, http_redirect), 0, 0},
    {"http", "pair_ttl_s", S_U32, offsetof(sm_config, pair_ttl_s), 1, 86400},
    {"holds", "ttl_s", S_U32, offsetof(sm_config, hold_ttl_s),
     1, (uint32_t)(SM_HOLD_TTL_MS_MAX / 1000)},
    {"holds", "per_min", S_U32, offsetof(sm_config, holds_per_min),
     1, SM_HOLDS_PER_MIN_MAX},
    {"holds", "max_units", S_U32, offsetof(sm_config, hold_max_units), 1, SM_HOLD_LIMIT_MAX},
    {"holds", "max_per_sku", S_U32, offsetof(sm_config, hold_max_per_sku), 1, SM_HOLD_LIMIT_MAX},
    {"holds", "per_device", S_U32, offsetof(sm_config, hold_per_device), 1, SM_HOLD_LIMIT_MAX},
    {"holds", "per_address", S_U32, offsetof(sm_config, hold_per_address), 1, SM_HOLD_LIMIT_MAX},
    {"log", "level", S_LEVEL, 0, 0, 0},
    {"mesh", "listen", S_ENDPOINT, offsetof(sm_config, mesh_listen), 0, 0},
    {"mesh", "advertise", S_ENDPOINT, offsetof(sm_config, mesh_advertise), 0, 0},
    {"mesh", "peers", S_PEERS, 0, 0, 0},
    {"mesh", "units_floor", S_U32, offsetof(sm_config, units_floor), 0, SM_QTY_MAX},
    {"mesh", "units_per_min", S_U32, offsetof(sm_config, units_per_min), 1, SM_QTY_MAX},
    {"mesh", "rebalance_floor", S_U32, offsetof(sm_config, rebalance_floor), 0, SM_QTY_MAX},
    {"mesh", "discover", S_BOOL, offsetof(sm_config, discover), 0, 0},
    {"mesh", "discover_port", S_U32, offsetof(sm_config, discover_port), 1, 65535},
    {"mesh", "discover_addr", S_IPV4, offsetof(sm_config, discover_addr), 0, 0},
    {"report", "timezone", S_TZ, offsetof(sm_config, report_tz), 0, 0},
    {"backup", "dir", S_DIR, offsetof(sm_config, backup_dir), 0, 0},
    {"backup", "every_s", S_U32, offsetof(sm_config, backup_every_s), 10, 604800},
    {"backup", "keep", S_U32, offsetof(sm_config, backup_keep), 1, 1000},
    {"node", "mirror", S_BOOL, offsetof(sm_config, mirror), 0, 0},
};
#define S_KEY_COUNT (sizeof s_keys / sizeof s_keys[0])

static const char *const s_sections[] = {"http", "holds", "log", "mesh", "report", "backup", "node"};
#define S_SECTION_COUNT (sizeof s_sections / sizeof s_sections[0])

/*  snprintf into err[0..errlen) when there is room for anything.           */
static void __attribute__((format(printf, 3, 4)))
s_msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*  True if name is one of the sections.                                      */
static bool
s_section_known(const char *name)
{
    for (size_t i = 0; i < S_SECTION_COUNT; i++)
        if (strcmp(name, s_sections[i]) == 0)
            return true;
    return false;
}

/*  The keys of `section`, comma-separated, into buf (for messages).          */
static void
s_key_list(const char *section, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < S_KEY_COUNT; i++) {
        if (strcmp(s_keys[i].section, section) != 0)
            continue;
        int n = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", s_keys[i].key);
        if (n < 0 || (size_t)n >= cap - used)
            return;
        used += (size_t)n;
    }
}

/*  The index in s_keys of section.key, or -1 with the reason in why.       */
static int
s_find(const char *section, const char *key, char *why, size_t whylen)
{
    if (section[0] == '\0') {
        s_msg(why, whylen, "'%.*s' comes before any [section]; keys belong under "
              "[http], [holds] or [log]", SM__CONFIG_VALUE_SHOWN, key);
        return -1;
    }
    if (!s_section_known(section)) {
        s_msg(why, whylen, "unknown section [%.*s]; the sections are [http], [holds], "
              "[log], [mesh], [report], [backup] and [node]", SM__CONFIG_VALUE_SHOWN, section);
        return -1;
    }
    for (size_t i = 0; i < S_KEY_COUNT; i++)
        if (strcmp(s_keys[i].section, section) == 0 && strcmp(s_keys[i].key, key) == 0)
            return (int)i;
    char keys[128];
    s_key_list(section, keys, sizeof keys);
    s_msg(why, whylen, "unknown key '%.*s' in [%s]; its keys are %s",
          SM__CONFIG_VALUE_SHOWN, key, section, keys);
    return -1;
}

/*  Parse a whole number of plain decimal digits (no sign, no leading zero,
    no spaces) into *out; false if it is not one or is above max.            */
static bool
s_parse_u32(const char *text, uint32_t max, uint32_t *out)
{
    size_t len = strlen(text);
    if (len == 0 || len > 10 || (len > 1 && text[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(text[i] - '0');
    }
    if (v > max)
        return false;
    *out = (uint32_t)v;
    return true;
}

/*  True if s is a DNS name: dot-separated labels of letters, digits and
    hyphens, 1..63 bytes each, not starting or ending with a hyphen.         */
static bool
s_is_dns_name(const char *s)
{
    size_t label = 0;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || label > 63 || p[-1] == '-' || p[-(ptrdiff_t)label] == '-')
                return false;
            if (*p == '\0')
                return true;
            label = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                   || (*p >= '0' && *p <= '9') || *p == '-') {
            label++;
        } else {
            return false;
        }
    }
}

/*  True if s is an IPv6 address, optionally with "%zone" (an interface
    name or number, as a link-local address needs).                          */
static bool
s_is_ipv6(const char *s)
{
    char addr[INET6_ADDRSTRLEN];
    const char *zone = strchr(s, '%');
    size_t alen = zone ? (size_t)(zone - s) : strlen(s);
    if (alen == 0 || alen >= sizeof addr)
        return false;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    struct in6_addr bin;
    if (inet_pton(AF_INET6, addr, &bin) != 1)
        return false;
    if (zone == NULL)
        return true;
    size_t zlen = strlen(zone + 1);
    if (zlen == 0 || zlen >= IF_NAMESIZE)
        return false;
    for (const char *p = zone + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

/*  sm_config_parse_listen, saying why it refused (a static string).        */
static const char *
s_parse_listen(const char *text, char *host, size_t hostcap, uint16_t *port)
{
    if (text == NULL || text[0] == '\0')
        return "empty";
    const char *hstart, *hend, *colon;
    if (text[0] == '[') {
        hstart = text + 1;
        hend = strchr(hstart, ']');
        if (hend == NULL)
            return "'[' without ']'";
        colon = hend + 1;
        if (*colon != ':')
            return "no ':PORT' after the bracketed address";
    } else {
        hstart = text;
        colon = strchr(text, ':');
        if (colon == NULL)
            return "no ':PORT'";
        if (strchr(colon + 1, ':') != NULL)
            return "more than one ':' (an IPv6 address goes in brackets, e.g. [::1]:8080)";
        hend = colon;
    }
    size_t hlen = (size_t)(hend - hstart);
    if (hlen == 0)
        return "no host (use 0.0.0.0 or [::] for every address)";
    if (hlen > SM_CONFIG_HOST_BYTES_MAX || hlen >= hostcap)
        return "host too long";

    /* The port: 1..65535, plain digits. */
    uint32_t p;
    if (!s_parse_u32(colon + 1, 65535, &p) || p == 0)
        return "port must be a number from 1 to 65535";

    char h[SM_CONFIG_HOST_BYTES_MAX + 1];
    memcpy(h, hstart, hlen);
    h[hlen] = '\0';
    if (text[0] == '[') {
        if (!s_is_ipv6(h))
            return "not an IPv6 address inside the brackets";
    } else if (strspn(h, "0123456789.") == hlen) {
        struct in_addr bin;
        if (inet_pton(AF_INET, h, &bin) != 1)
            return "not an IPv4 address (four numbers 0..255 with dots)";
    } else if (!s_is_dns_name(h)) {
        return "host is not a name, an IPv4 address or a bracketed IPv6 address";
    }
    memcpy(host, h, hlen + 1);
    *port = (uint16_t)p;
    return NULL;
}

/*  Parse "HOST:PORT" into host (without brackets, NUL-terminated, at most
    hostcap bytes with the NUL) and *port.  0, or SM_EINVAL with host and
    *port untouched.                                                          */
int
sm_config_parse_listen(const char *text, char *host, size_t hostcap, uint16_t *port)
{
    assert(host != NULL && port != NULL);
    return s_parse_listen(text, host, hostcap, port) == NULL ? 0 : SM_EINVAL;
}

/*  A mesh endpoint "tcp://HOST:PORT" (HOST may be * for a listener), or
    NULL and the reason.                                                      */
static const char *
s_parse_endpoint(const char *text)
{
    if (strncmp(text, "tcp://", 6) != 0)
        return "must start with tcp://";
    if (strlen(text) > SM_ENDPOINT_BYTES_MAX)
        return "is too long";
    char host[SM_CONFIG_HOST_BYTES_MAX + 1];
    uint16_t port;
    const char *rest = text + 6;
    if (rest[0] == '*' && rest[1] == ':') {
        char any[16];
        snprintf(any, sizeof any, "0.0.0.0%.7s", rest + 1);
        return s_parse_listen(any, host, sizeof host, &port);
    }
    return s_parse_listen(rest, host, sizeof host, &port);
}

/*  Parse and add one "NODE_ID@tcp://HOST:PORT"; NULL or the reason.        */
static const char *
s_peer_add(sm_config *cfg, const char *text, size_t len)
{
    while (len && (*text == ' ' || *text == '\t')) {
        text++;
        len--;
    }
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    if (len == 0)
        return "an empty peer";
    const char *at = memchr(text, '@', len);
    if (!at || at - text != SM_ID_HEX_BYTES)
        return "a peer is NODE_ID@tcp://HOST:PORT, NODE_ID 64 hex digits";
    if (cfg->peer_count == SM_PEERS_MAX)
        return "too many peers";
    char id[SM_ID_HEX_BYTES + 1], ep[SM_ENDPOINT_BYTES_MAX + 1];
    memcpy(id, text, SM_ID_HEX_BYTES);
    id[SM_ID_HEX_BYTES] = 0;
    size_t elen = len - SM_ID_HEX_BYTES - 1;
    if (elen > SM_ENDPOINT_BYTES_MAX)
        return "the endpoint is too long";
    memcpy(ep, at + 1, elen);
    ep[elen] = 0;
    if (sm_id_parse(id, &cfg->peers[cfg->peer_count].node) != 0)
        return "NODE_ID must be 64 hex digits";
    const char *bad = s_parse_endpoint(ep);
    if (bad)
        return bad;
    if (strncmp(ep + 6, "*:", 2) == 0 || strncmp(ep + 6, "0.0.0.0:", 8) == 0)
        return "a peer's endpoint needs a real address, not * or 0.0.0.0";
    snprintf(cfg->peers[cfg->peer_count].endpoint,
             sizeof cfg->peers[cfg->peer_count].endpoint, "%s", ep);
    cfg->peer_count++;
    return NULL;
}

int
sm_config_add_peer(sm_config *cfg, const char *text, char *err, size_t errlen)
{
    assert(cfg && text);
    const char *bad = s_peer_add(cfg, text, strlen(text));
    if (!bad)
        return 0;
    s_msg(err, errlen, "peer '%.*s': %s", SM__CONFIG_VALUE_SHOWN, text, bad);
    return cfg->peer_count == SM_PEERS_MAX ? SM_ETOOBIG : SM_EINVAL;
}

/*  Set key k of cfg from text; SM_EINVAL with the reason (naming the key
    and quoting the value) in why.                                           */
static int
s_apply(sm_config *cfg, const s_key *k, const char *text, char *why, size_t whylen)
{
    switch (k->type) {
    case S_LISTEN: {
        const char *bad = s_parse_listen(text, cfg->http_host, sizeof cfg->http_host,
                                         &cfg->http_port);
        if (bad == NULL)
            return 0;
        s_msg(why, whylen, "%s.%s = '%.*s': %s; write HOST:PORT, e.g. 0.0.0.0:8080 "
              "or [::1]:8080", k->section, k->key, SM__CONFIG_VALUE_SHOWN, text, bad);
        return SM_EINVAL;
    }
    case S_U32: {
        uint32_t v;
        if (s_parse_u32(text, k->max, &v) && v >= k->min) {
            memcpy((char *)cfg + k->offset, &v, sizeof v);
            return 0;
        }
        s_msg(why, whylen, "%s.%s = '%.*s': must be a whole number from %u to %u",
              k->section, k->key, SM__CONFIG_VALUE_SHOWN, text, k->min, k->max);
        return SM_EINVAL;
    }
    case S_ENDPOINT: {
        char *field = (char *)cfg + k->offset;
        bool advertise = k->offset == offsetof(sm_config, mesh_advertise);
        if (strcmp(text, "none") == 0 || text[0] == 0) {
            field[0] = 0;
            cfg->mesh_advertise_set |= advertise;
            return 0;
        }
        const char *bad = s_parse_endpoint(text);
        if (bad == NULL) {
            snprintf(field, SM_ENDPOINT_BYTES_MAX + 1, "%s", text);
            cfg->mesh_advertise_set |= advertise;
            return 0;
        }
        s_msg(why, whylen, "%s.%s = '%.*s': %s; write tcp://HOST:PORT, e.g. "
              "tcp://0.0.0.0:7400", k->section, k->key, SM__CONFIG_VALUE_SHOWN, text, bad);
        return SM_EINVAL;
    }
    case S_PEERS: {
        cfg->peer_count = 0;
        const char *p = text;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            const char *bad = s_peer_add(cfg, p, len);
            if (bad) {
                s_msg(why, whylen, "%s.%s: '%.*s': %s", k->section, k->key,
                      (int)(len < SM__CONFIG_VALUE_SHOWN ? len : SM__CONFIG_VALUE_SHOWN), p, bad);
                return SM_EINVAL;
            }
            p += len + (comma != NULL);
        }
        return 0;
    }
    case S_PROXIES: {
        /* "ADDR, ADDR, ...": numeric IPv4 or IPv6 addresses, no names (a
           name could resolve to anyone), at most SM_CONFIG_PROXIES_MAX.   */
        cfg->trusted_proxy_count = 0;
        const char *p = text;
        while (*p) {
            while (*p == ' ' || *p == '\t')
                p++;
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            size_t end = len;
            while (end && (p[end - 1] == ' ' || p[end - 1] == '\t'))
                end--;
            char one[SM_CONFIG_ADDR_BYTES_MAX + 1];
            unsigned char bin[16];
            bool ok = end > 0 && end <= SM_CONFIG_ADDR_BYTES_MAX;
            if (ok) {
                memcpy(one, p, end);
                one[end] = 0;
                ok = inet_pton(AF_INET, one, bin) == 1 || inet_pton(AF_INET6, one, bin) == 1;
            }
            if (!ok || cfg->trusted_proxy_count == SM_CONFIG_PROXIES_MAX) {
                s_msg(why, whylen, "%s.%s: '%.*s': %s", k->section, k->key,
                      (int)(len < SM__CONFIG_VALUE_SHOWN ? len : SM__CONFIG_VALUE_SHOWN), p,
                      ok ? "too many addresses (at most 8)"
                         : "not an IPv4 or IPv6 address; write e.g. 127.0.0.1, ::1");
                return SM_EINVAL;
            }
            snprintf(cfg->trusted_proxies[cfg->trusted_proxy_count++],
                     SM_CONFIG_ADDR_BYTES_MAX + 1, "%s", one);
            p += len + (comma != NULL);
        }
        return 0;
    }
    case S_BOOL: {
        bool v;
        if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0 || strcmp(text, "on") == 0)
            v = true;
        else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0
                 || strcmp(text, "off") == 0)
            v = false;
        else {
            s_msg(why, whylen, "%s.%s = '%.*s': must be true or false", k->section, k->key,
                  SM__CONFIG_VALUE_SHOWN, text);
            return SM_EINVAL;
        }
        memcpy((char *)cfg + k->offset, &v, sizeof v);
        return 0;
    }
    case S_IPV4: {
        struct in_addr a;
        if (strlen(text) <= SM_CONFIG_IPV4_BYTES_MAX && inet_pton(AF_INET, text, &a) == 1) {
            snprintf((char *)cfg + k->offset, SM_CONFIG_IPV4_BYTES_MAX + 1, "%s", text);
            return 0;
        }
        s_msg(why, whylen, "%s.%s = '%.*s': must be an IPv4 address, e.g. 255.255.255.255 "
              "or the LAN's broadcast address such as 192.168.1.255", k->section, k->key,
              SM__CONFIG_VALUE_SHOWN, text);
        return SM_EINVAL;
    }
    case S_TLS: {
        if (strcmp(text, "none") == 0 || text[0] == 0) {
            cfg->tls_host[0] = 0;
            cfg->tls_port = 0;
            return 0;
        }
        const char *bad = s_parse_listen(text, cfg->tls_host, sizeof cfg->tls_host,
                                         &cfg->tls_port);
        if (bad == NULL)
            return 0;
        s_msg(why, whylen, "%s.%s = '%.*s': %s; write HOST:PORT, e.g. 0.0.0.0:8443, "
              "or none", k->section, k->key, SM__CONFIG_VALUE_SHOWN, text, bad);
        return SM_EINVAL;
    }
    case S_PATH: {
        size_t n = strlen(text);
        bool ok = n <= SM_CONFIG_PATH_BYTES_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char) text[i] >= 0x20;
        if (ok) {
            memcpy((char *)cfg + k->offset, text, n + 1);
            return 0;
        }
        s_msg(why, whylen, "%s.%s: a file name of at most %u bytes without control "
              "characters", k->section, k->key, SM_CONFIG_PATH_BYTES_MAX);
        return SM_EINVAL;
    }
    case S_DIR: {
        size_t len = strlen(text);
        bool ctrl = false;
        for (const char *c = text; *c; c++)
            ctrl |= (unsigned char) *c < 0x20 || *c == 0x7f;
        if (len == 0 || strcmp(text, "none") == 0) {
            ((char *)cfg + k->offset)[0] = 0;
            return 0;
        }
        if (text[0] == '/' && len <= SM_CONFIG_PATH_BYTES_MAX && !ctrl) {
            snprintf((char *)cfg + k->offset, SM_CONFIG_PATH_BYTES_MAX + 1, "%s", text);
            return 0;
        }
        s_msg(why, whylen, "%s.%s = '%.*s': must be an absolute directory path of at most "
              "%u bytes, or none", k->section, k->key, SM__CONFIG_VALUE_SHOWN, text,
              SM_CONFIG_PATH_BYTES_MAX);
        return SM_EINVAL;
    }
    case S_TZ: {
        int terr = 0;
        sm_tz *tz = sm_tz_name_ok(text) ? sm_tz_open(text, &terr) : NULL;
        if (tz) {
            sm_tz_destroy(&tz);
            snprintf((char *)cfg + k->offset, SM_TZ_NAME_BYTES_MAX + 1, "%s", text);
            return 0;
        }
        s_msg(why, whylen, "%s.%s = '%.*s': must be an IANA time zone such as Europe/London "
              "(a file under /usr/share/zoneinfo: install tzdata)", k->section, k->key,
              SM__CONFIG_VALUE_SHOWN, text);
        return SM_EINVAL;
    }
    case S_LEVEL: {
        int level = sm_log_level_parse(text);
        if (level >= 0) {
            cfg->log_level = level;
            return 0;
        }
        s_msg(why, whylen, "%s.%s = '%.*s': must be error, warn, info or debug",
              k->section, k->key, SM__CONFIG_VALUE_SHOWN, text);
        return SM_EINVAL;
    }
    }
    assert(!"unknown key type");
    return SM_EINVAL;
}

/*  Listen on 0.0.0.0:8080; the limits of limits.h; log at info.           */
void
sm_config_defaults(sm_config *cfg)
{
    assert(cfg != NULL);
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->http_host, sizeof cfg->http_host, "0.0.0.0");
    cfg->http_port = 8080;
    cfg->body_bytes_max = SM_HTTP_BODY_BYTES_MAX;
    cfg->clients_per_addr_max = SM_HTTP_CLIENTS_PER_ADDR_MAX;
    cfg->requests_per_addr_max = SM_HTTP_REQUESTS_PER_ADDR_MAX;
    cfg->headers_timeout_s = SM_HTTP_HEADERS_TIMEOUT_S;
    cfg->body_timeout_s = SM_HTTP_BODY_TIMEOUT_S;
    cfg->pair_ttl_s = SM_PAIR_TTL_S_DEFAULT;
    cfg->ws_queue_bytes_max = SM_WS_QUEUE_BYTES_MAX;
    cfg->hold_ttl_s = SM_HOLD_TTL_S_DEFAULT;
    cfg->holds_per_min = SM_HOLDS_PER_MIN_MAX;
    cfg->hold_max_units = SM_HOLD_MAX_UNITS_DEFAULT;
    cfg->hold_max_per_sku = SM_HOLD_MAX_PER_SKU_DEFAULT;
    cfg->hold_per_device = SM_HOLD_PER_DEVICE_DEFAULT;
    cfg->hold_per_address = SM_HOLD_PER_ADDRESS_DEFAULT;
    cfg->units_per_min = SM_UNITS_PER_MIN_DEFAULT;
    cfg->log_level = SM_LOG_INFO;
    snprintf(cfg->mesh_listen, sizeof cfg->mesh_listen, "tcp://0.0.0.0:7400");
    cfg->discover_port = SM_DISCOVER_PORT_DEFAULT;
    snprintf(cfg->discover_addr, sizeof cfg->discover_addr, "255.255.255.255");
    cfg->backup_every_s = 3600;
    cfg->backup_keep = 24;
}

/*  Set section.key from text as a file line would; the message in err has
    no FILE:LINE (the caller knows where the value came from).               */
int
sm_config_set(sm_config *cfg, const char *section, const char *key,
              const char *value, char *err, size_t errlen)
{
    assert(cfg != NULL && section != NULL && key != NULL);
    int i = s_find(section, key, err, errlen);
    if (i < 0)
        return SM_EINVAL;
    if (value == NULL) {
        s_msg(err, errlen, "%s.%s has no value", section, key);
        return SM_EINVAL;
    }
    return s_apply(cfg, &s_keys[i], value, err, errlen);
}

/* --- Reading a file ------------------------------------------------------ */

typedef struct {
    sm_config *cfg;
    const char *path;
    FILE *file;
    int line;                  /* lines read so far */
    bool indented;             /* the last line read starts with white space */
    int err_line;              /* line of the first error found here; 0: none */
    char why[SM__CONFIG_WHY_BYTES];
    int set_on_line[S_KEY_COUNT]; /* where each key was set; 0: not yet */
} s_load;

/*  Record the first error (later ones are dropped: the user fixes the
    first and runs again).                                                    */
static void __attribute__((format(printf, 3, 4)))
s_fail(s_load *ld, int line, const char *fmt, ...)
{
    if (ld->err_line != 0)
        return;
    ld->err_line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->why, sizeof ld->why, fmt, ap);
    va_end(ap);
}

/*  If line is a section header, check its name is a known section.  The
    name is taken as inih takes it: from '[' to the first ']', spaces
    included, a byte-order mark skipped on line 1.                            */
static void
s_check_header(s_load *ld, const char *line)
{
    if (ld->line == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0)
        line += 3;
    line += strspn(line, " \t\r\v\f");
    if (*line != '[')
        return;
    const char *close = strchr(line, ']');
    if (close == NULL)
        return;                /* inih reports the line */
    size_t len = (size_t)(close - line - 1);
    char name[SM__CONFIG_VALUE_SHOWN + 1];
    if (len >= sizeof name) {
        s_fail(ld, ld->line, "unknown section [%.*s...]", SM__CONFIG_VALUE_SHOWN, line + 1);
        return;
    }
    memcpy(name, line + 1, len);
    name[len] = '\0';
    if (!s_section_known(name))
        s_fail(ld, ld->line, "unknown section [%s]; the sections are [http], [holds], "
               "[log], [mesh], [report], [backup] and [node]", name);
}

/*  inih's line reader (fgets-like): one line of the file into str[0..num),
    counting lines, refusing lines that do not fit and files longer than
    SM_CONFIG_LINES_MAX (both end the parse: NULL reads as end of file).    */
static char *
s_read_line(char *str, int num, void *stream)
{
    s_load *ld = stream;
    if (fgets(str, num, ld->file) == NULL)
        return NULL;
    if ((unsigned)ld->line >= SM_CONFIG_LINES_MAX) {
        s_fail(ld, ld->line + 1, "more than %u lines", SM_CONFIG_LINES_MAX);
        return NULL;
    }
    ld->line++;
    size_t len = strlen(str);
    if (len == (size_t)num - 1 && str[len - 1] != '\n') {
        /* A full buffer is a whole line only at the end of the file. */
        int c = fgetc(ld->file);
        if (c != EOF) {
            s_fail(ld, ld->line, "line longer than %d bytes", num - 2);
            return NULL;
        }
    }
    ld->indented = str[0] == ' ' || str[0] == '\t';
    s_check_header(ld, str);
    return str;
}

/*  inih's handler: one "key = value" of `section`.  Returns 0 (an error
    for inih) when the key is refused.                                        */
static int
s_on_key(void *user, const char *section, const char *key, const char *value)
{
    s_load *ld = user;
    if (ld->err_line != 0)
        return 1;              /* only the first error is reported */
    char why[SM__CONFIG_WHY_BYTES];
    int i = s_find(section, key, why, sizeof why);
    if (i < 0) {
        s_fail(ld, ld->line, "%s", why);
        return 0;
    }
    if (ld->set_on_line[i] != 0 && ld->indented) {
        /* inih reads an indented line as more of the previous value. */
        s_fail(ld, ld->line, "an indented line continues the value of %s.%s (line %d); "
               "start each key at the beginning of its line", section, key,
               ld->set_on_line[i]);
        return 0;
    }
    if (ld->set_on_line[i] != 0) {
        s_fail(ld, ld->line, "%s.%s is set twice (first on line %d)", section, key,
               ld->set_on_line[i]);
        return 0;
    }
    ld->set_on_line[i] = ld->line;
    if (s_apply(ld->cfg, &s_keys[i], value, why, sizeof why) != 0) {
        s_fail(ld, ld->line, "%s", why);
        return 0;
    }
    return 1;
}

/*  Read path over *cfg: 0; SM_ENOTFOUND if there is no such file; SM_EIO
    if it cannot be read; SM_EINVAL for its contents.  Every failure puts
    "FILE:LINE: what is wrong" (or "FILE: ..." for the file) in err.        */
int
sm_config_load(sm_config *cfg, const char *path, char *err, size_t errlen)
{
    assert(cfg != NULL && path != NULL);
    s_load ld;
    memset(&ld, 0, sizeof ld);
    ld.cfg = cfg;
    ld.path = path;
    ld.file = fopen(path, "r");
    if (ld.file == NULL) {
        int e = errno;
        s_msg(err, errlen, "%s: %s", path, e == ENOENT ? "no such file" : strerror(e));
        return e == ENOENT ? SM_ENOTFOUND : SM_EIO;
    }
    int rc = ini_parse_stream(s_read_line, &ld, s_on_key, &ld);
    int read_errno = ferror(ld.file) ? errno : 0;
    bool read_failed = ferror(ld.file) != 0;
    fclose(ld.file);

    if (read_failed) {
        s_msg(err, errlen, "%s: cannot read: %s", path,
              read_errno ? strerror(read_errno) : "read error");
        return SM_EIO;
    }
    if (rc < 0) {
        s_msg(err, errlen, "%s: %s", path, rc == -2 ? "out of memory" : "cannot read");
        return rc == -2 ? SM_ENOMEM : SM_EIO;
    }
    if (rc > 0 && (ld.err_line == 0 || rc < ld.err_line)) {
        /* A line inih could not parse, before any error of ours. */
        s_msg(err, errlen, "%s:%d: not a [section] or 'key = value' line", path, rc);
        return SM_EINVAL;
    }
    if (ld.err_line != 0) {
        s_msg(err, errlen, "%s:%d: %s", path, ld.err_line, ld.why);
        return SM_EINVAL;
    }
    return 0;
}

/*  The configuration in the file's format, every key, into buf (at most
    cap bytes with the NUL).  Returns the length it needed (as snprintf
    does): the text is whole if that is below cap.  Loading the text gives
    back the same configuration.                                              */
int
sm_config_format(const sm_config *cfg, char *buf, size_t cap)
{
    assert(cfg != NULL);
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    assert(cfg->log_level >= SM_LOG_ERROR && cfg->log_level <= SM_LOG_DEBUG);
    bool v6 = strchr(cfg->http_host, ':') != NULL;
    char proxies[SM_CONFIG_PROXIES_MAX * (SM_CONFIG_ADDR_BYTES_MAX + 2) + 1] = "";
    for (uint32_t i = 0, at = 0; i < cfg->trusted_proxy_count; i++) {
        int m = snprintf(proxies + at, sizeof proxies - at, "%s%s", i ? ", " : "",
                         cfg->trusted_proxies[i]);
        if (m > 0)
            at += (uint32_t)m;
    }
    int n = snprintf(buf, cap,
                    "[http]\n"
                    "listen = %s%s%s:%u\n"
                    "body_bytes_max = %u\n"
                    "clients_per_addr_max = %u\n"
                    "requests_per_addr_max = %u\n"
                    "headers_timeout_s = %u\n"
                    "body_timeout_s = %u\n"
                    "ws_queue_bytes_max = %u\n"
                    "trusted_proxies = %s\n"
                    "[holds]\n"
                    "ttl_s = %u\n"
                    "per_min = %u\n"
                    "max_units = %u\n"
                    "max_per_sku = %u\n"
                    "per_device = %u\n"
                    "per_address = %u\n"
                    "[log]\n"
                    "level = %s\n"
                    "[mesh]\n"
                    "listen = %s\n"
                    "%s%s%s\n"
                    "units_floor = %u\n"
                    "units_per_min = %u\n"
                    "rebalance_floor = %u\n"
                    "discover = %s\n"
                    "discover_port = %u\n"
                    "discover_addr = %s\n"
                    "[node]\n"
                    "mirror = %s\n"
                    "[mesh]\n"
                    "peers = ",
                    v6 ? "[" : "", cfg->http_host, v6 ? "]" : "", (unsigned)cfg->http_port,
                    cfg->body_bytes_max, cfg->clients_per_addr_max,
                    cfg->requests_per_addr_max, cfg->headers_timeout_s, cfg->body_timeout_s,
                    cfg->ws_queue_bytes_max, proxies,
                    cfg->hold_ttl_s, cfg->holds_per_min, cfg->hold_max_units,
                    cfg->hold_max_per_sku, cfg->hold_per_device, cfg->hold_per_address,
                    levels[cfg->log_level],
                    cfg->mesh_listen[0] ? cfg->mesh_listen : "none",
                    /* Unset stays unset: a comment, so the text loads back the same. */
                    cfg->mesh_advertise_set ? "advertise = " : "; advertise (unset)",
                    cfg->mesh_advertise_set && cfg->mesh_advertise[0] ? cfg->mesh_advertise : "",
                    cfg->mesh_advertise_set && !cfg->mesh_advertise[0] ? "none" : "",
                    cfg->units_floor, cfg->units_per_min, cfg->rebalance_floor,
                    cfg->discover ? "true" : "false", (unsigned)cfg->discover_port,
                    cfg->discover_addr, cfg->mirror ? "true" : "false");
    for (uint32_t i = 0; i < cfg->peer_count && n >= 0; i++) {
        char hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(&cfg->peers[i].node, hex);
        size_t at = (size_t)n < cap ? (size_t)n : cap;
        int m = snprintf(buf ? buf + at : NULL, cap - at, "%s%s@%s", i ? ", " : "", hex,
                         cfg->peers[i].endpoint);
        n = m < 0 ? m : n + m;
    }
    if (n >= 0) {
        size_t at = (size_t)n < cap ? (size_t)n : cap;
        int m = snprintf(buf ? buf + at : NULL, cap - at,
                         "\n[backup]\ndir = %s\nevery_s = %u\nkeep = %u\n",
                         cfg->backup_dir[0] ? cfg->backup_dir : "none",
                         cfg->backup_every_s, cfg->backup_keep);
        n = m < 0 ? m : n + m;
    }
    if (n >= 0) {
        size_t at = (size_t)n < cap ? (size_t)n : cap;
        int m = snprintf(buf ? buf + at : NULL, cap - at, "[report]\n%s%s\n",
                         cfg->report_tz[0] ? "timezone = " : "; timezone (the system's)",
                         cfg->report_tz);
        n = m < 0 ? m : n + m;
    }
    if (n >= 0) {              /* HTTPS and pairing: [http] again */
        size_t at = (size_t)n < cap ? (size_t)n : cap;
        bool tv6 = strchr(cfg->tls_host, ':') != NULL;
        char tls[SM_CONFIG_HOST_BYTES_MAX + 16] = "none";
        if (cfg->tls_port)
            snprintf(tls, sizeof tls, "%s%s%s:%u", tv6 ? "[" : "", cfg->tls_host,
                     tv6 ? "]" : "", (unsigned)cfg->tls_port);
        int m = snprintf(buf ? buf + at : NULL, cap - at,
                         "[http]\ntls = %s\n%s%s\n%s%s\nredirect = %s\npair_ttl_s = %u\n",
                         tls, cfg->tls_cert[0] ? "tls_cert = " : "; tls_cert (unset)",
                         cfg->tls_cert, cfg->tls_key[0] ? "tls_key = " : "; tls_key (unset)",
                         cfg->tls_key, cfg->http_redirect ? "true" : "false",
                         cfg->pair_ttl_s);
        n = m < 0 ? m : n + m;
    }
    return n;
}
