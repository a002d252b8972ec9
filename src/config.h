/*  The node's configuration: defaults, then an INI file (inih), then the
    command line, each overriding the one before.

    File format (every key optional; unknown sections or keys are errors, so
    a typo is reported instead of ignored):

        [http]
        listen = 0.0.0.0:8080        ; HOST:PORT the stock page, till and API serve on
        body_bytes_max = 65536       ; larger request bodies get 413
        clients_per_addr_max = 256   ; open connections from one address
        requests_per_addr_max = 64   ; of them, still sending a request
        headers_timeout_s = 10       ; a request's headers must arrive by then
        body_timeout_s = 20          ; and its body this long after them
        ws_queue_bytes_max = 1048576 ; a phone further behind is dropped
        trusted_proxies = 127.0.0.1, ::1 ; reverse proxies (nginx) whose
                                     ; X-Forwarded-For names the client
        tls = 0.0.0.0:8443           ; HOST:PORT of HTTPS; "none" (default): none
        tls_cert = /path/cert.pem    ; PEM certificate (chain) and its key; by
        tls_key = /path/key.pem      ; default DIR/tls/, made on first use
        redirect = false             ; plain HTTP answers 308 to the HTTPS port
        pair_ttl_s = 600             ; how long a pairing code works
        [holds]
        ttl_s = 600                  ; how long a shopper's hold lasts
        per_min = 10                 ; holds one address may make a minute
        max_units = 5                ; units in one reservation
        max_per_sku = 2              ; units of one sku in one reservation
        per_device = 10              ; units one phone holds at once
        per_address = 10             ; units one address holds at once
        [log]
        level = info                 ; error, warn, info or debug
        [mesh]
        listen = tcp://0.0.0.0:7400  ; where peers connect; "none" for no listener
        advertise = tcp://192.168.1.20:7400 ; told to peers; default: listen,
                                     ; unless it is 0.0.0.0 or *
        peers = NODE_ID@tcp://HOST:PORT, ...   ; peers to connect to
        units_floor = 0              ; units a stall keeps when peers ask
        units_per_min = 600          ; units one member may get here by
                                     ; asking, a minute
        rebalance_floor = 0          ; ask peers to top each sku up to this
                                     ; many here (0 = off)
        discover = false             ; LAN discovery beacon (--discover)
        discover_port = 7401         ; UDP port of the beacons
        discover_addr = 255.255.255.255 ; where beacons are sent (IPv4
                                     ; broadcast address of the LAN)
        [node]
        mirror = false               ; a read-only mirror (run --mirror):
                                     ; needs the relay role in the roster
        [backup]
        dir = /media/usb/stallmesh   ; scheduled backups go here (absolute;
                                     ; unset: none)
        every_s = 3600               ; the first at start, then this often
        keep = 24                    ; this node's newest backups kept     */
#ifndef SM_CONFIG_H
#define SM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/limits.h"

#define SM_CONFIG_HOST_BYTES_MAX 255u
#define SM_CONFIG_IPV4_BYTES_MAX 15u    /* a dotted quad */
#define SM_CONFIG_ADDR_BYTES_MAX 45u    /* an IPv6 address as text */
#define SM_CONFIG_PROXIES_MAX 8u        /* http.trusted_proxies */
#define SM_CONFIG_PATH_BYTES_MAX 1023u  /* a file named in the configuration */

typedef struct {
    char http_host[SM_CONFIG_HOST_BYTES_MAX + 1];
    uint16_t http_port;
    uint32_t body_bytes_max;
    uint32_t clients_per_addr_max;
    uint32_t requests_per_addr_max;  /* connections from one address whose
                                        request is not yet complete */
    uint32_t headers_timeout_s;
    uint32_t body_timeout_s;
    uint32_t ws_queue_bytes_max;
    uint32_t trusted_proxy_count;
    char trusted_proxies[SM_CONFIG_PROXIES_MAX][SM_CONFIG_ADDR_BYTES_MAX + 1];
                               /* addresses as given: their X-Forwarded-For
                                  names the client for per-address limits */
    char tls_host[SM_CONFIG_HOST_BYTES_MAX + 1];
    uint16_t tls_port;         /* 0 = no HTTPS */
    char tls_cert[SM_CONFIG_PATH_BYTES_MAX + 1];   /* "" = DIR/tls/cert.pem */
    char tls_key[SM_CONFIG_PATH_BYTES_MAX + 1];
    bool http_redirect;        /* plain HTTP -> HTTPS (needs tls) */
    uint32_t pair_ttl_s;
    uint32_t hold_ttl_s;
    uint32_t holds_per_min;
    uint32_t hold_max_units;   /* [holds] limits: reserve.h */
    uint32_t hold_max_per_sku;
    uint32_t hold_per_device;
    uint32_t hold_per_address;
    int log_level;             /* sm_log_level */
    /* [mesh] */
    char mesh_listen[SM_ENDPOINT_BYTES_MAX + 1];    /* "" = no listener */
    char mesh_advertise[SM_ENDPOINT_BYTES_MAX + 1]; /* "" = tell peers none */
    bool mesh_advertise_set;   /* advertise was given, "none" included: the
                                  listen endpoint is not told by default */
    uint32_t units_floor;
    uint32_t units_per_min;    /* a member's budget of units asked from here */
    uint32_t rebalance_floor;
    bool discover;             /* send and hear LAN beacons (issue #4) */
    uint32_t discover_port;
    char discover_addr[SM_CONFIG_IPV4_BYTES_MAX + 1];
    /* [backup]: scheduled backups by the running node (src/cli_backup.c) */
    char backup_dir[SM_CONFIG_PATH_BYTES_MAX + 1];  /* "" = none */
    uint32_t backup_every_s;   /* the first at start, then this often */
    uint32_t backup_keep;      /* this node's newest backups kept in the dir */
    char report_tz[64 + 1];    /* [report] timezone; "" = the system's zone */
    uint32_t peer_count;
    struct {
        sm_id node;
        char endpoint[SM_ENDPOINT_BYTES_MAX + 1];
    } peers[SM_PEERS_MAX];
    /* [node] */
    bool mirror;               /* read-only mirror: syncs, holds no units */
} sm_config;

/*  The defaults (listen 0.0.0.0:8080, limits from limits.h, level info).   */
void sm_config_defaults(sm_config *cfg);

/*  Read `path` over *cfg.  On failure returns SM_EINVAL (or SM_ENOTFOUND,
    SM_EIO for the file) and writes "FILE:LINE: what is wrong" to
    err[0..errlen).  *cfg may be partly updated on failure.                   */
int sm_config_load(sm_config *cfg, const char *path, char *err, size_t errlen);

/*  Set one key as the file would ("http", "listen", "127.0.0.1:9000"); the
    command line uses it too.  SM_EINVAL with a message in err if the
    section, key or value is not valid.                                       */
int sm_config_set(sm_config *cfg, const char *section, const char *key,
                  const char *value, char *err, size_t errlen);

/*  Add a peer "NODE_ID@tcp://HOST:PORT" (the command line's --peer).
    SM_EINVAL with the reason in err; SM_ETOOBIG past SM_PEERS_MAX.          */
int sm_config_add_peer(sm_config *cfg, const char *text, char *err, size_t errlen);

/*  Parse "HOST:PORT" (HOST may be a name, an IPv4 address or [IPv6]).
    host gets the host without brackets ("::1" for "[::1]:8080"), at most
    hostcap bytes with its NUL; the port is 1..65535.  0 or SM_EINVAL (host
    and *port untouched).                                                    */
int sm_config_parse_listen(const char *text, char *host, size_t hostcap,
                           uint16_t *port);

/*  The whole configuration in the file's format into buf[0..cap) (for a
    config check: what the node will run with).  Returns the length the text
    needs without its NUL, as snprintf does; it is whole if that is < cap.  */
int sm_config_format(const sm_config *cfg, char *buf, size_t cap);

#endif
