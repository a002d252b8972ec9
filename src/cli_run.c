/*  `stallmesh run`: the long-running node (README: architecture).

    Threads: this (main) thread reads the configuration, opens the store,
    starts the core thread (the only writer) and the web thread (the HTTP
    and websocket loop), then waits for SIGTERM or SIGINT with every signal
    blocked in all threads.  Shutdown: the web loop stops taking requests
    and answers the writes in flight, then the core commits what it was
    given and stops, then the store closes; an acknowledged write is always
    durable before its answer, so stopping at any moment loses nothing that
    was acknowledged.

    Configuration: defaults, then the file (--config FILE, else
    DIR/stallmesh.conf if present), then the command line.  --check
    validates it and exits.

    Files written: DIR/http, the URL of the API for the CLI commands that
    talk to the node (loopback when listening on every address).

    Under a service manager (notify.h): READY=1 once the store is open, the
    core runs and the HTTP and mesh listeners are bound and the web loop
    turns (so /readyz answers 200); WATCHDOG=1 every half WATCHDOG_USEC,
    only while the web loop keeps turning (a stuck node is restarted);
    STOPPING=1 when SIGTERM or SIGINT arrives.                                */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "core.h"
#include "logger.h"
#include "metrics.h"
#include "notify.h"
#include "stallmesh/error.h"
#include "auth.h"
#include "tls.h"
#include "web.h"

#define SM__DEVICES_FILE "devices"

#define SM__CONFIG_FILE "stallmesh.conf"

static const char s_usage[] =
    "run [--http HOST:PORT] [--https HOST:PORT] [--listen tcp://HOST:PORT|none] [--advertise tcp://HOST:PORT|none]\n"
    "      [--peer NODE_ID@tcp://HOST:PORT]... [--discover] [--allow-fresh] [--config FILE]\n"
    "      [--mirror] [--log-level LEVEL] [--check]";

typedef struct {
    const char *http;
    const char *https;
    const char *config;
    const char *log_level;
    const char *listen;
    const char *advertise;
    const char *peers[SM_PEERS_MAX];
    size_t peer_count;
    bool too_many_peers;
    bool allow_fresh;
    bool discover;
    bool mirror;
    bool check;
} s_opts;

static int
s_on_opt(int opt, const char *arg, void *ctx)
{
    s_opts *o = ctx;
    switch (opt) {
    case 'H': o->http = arg; return 0;
    case 'T': o->https = arg; return 0;
    case 'c': o->config = arg; return 0;
    case 'l': o->log_level = arg; return 0;
    case 'k': o->check = true; return 0;
    case 'L': o->listen = arg; return 0;
    case 'A': o->advertise = arg; return 0;
    case 'F': o->allow_fresh = true; return 0;
    case 'D': o->discover = true; return 0;
    case 'M': o->mirror = true; return 0;
    case 'P':
        if (o->peer_count == SM_PEERS_MAX)
            o->too_many_peers = true;
        else
            o->peers[o->peer_count++] = arg;
        return 0;
    default: return SM__EXIT_USAGE;
    }
}

/*  The core wakes the web thread through this, so neither needs the other
    to exist first; the lock keeps a wake from racing the web's teardown.   */
static pthread_mutex_t s_web_lock = PTHREAD_MUTEX_INITIALIZER;
static sm_web *s_web_ptr;

static void
s_wake(void *arg)
{
    (void) arg;
    pthread_mutex_lock(&s_web_lock);
    if (s_web_ptr)
        sm_web_wake(s_web_ptr);
    pthread_mutex_unlock(&s_web_lock);
}

static void *
s_web_thread(void *arg)
{
    sm_web_run(arg);
    return NULL;
}

/*  Read DIR/api-token (hex) into out[cap].                                 */
static int
s_read_token(const sm__cli *cli, char *out, size_t cap)
{
    char path[PATH_MAX];
    if (!sm__cli_path(cli, SM__API_TOKEN_FILE, path))
        return SM__EXIT_FAIL;
    FILE *f = fopen(path, "r");
    if (!f) {
        sm__cli_error("cannot read the API token %s: %s (run 'stallmesh init' first)",
                      path, strerror(errno));
        return SM__EXIT_FAIL;
    }
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = 0;
    if (n < 32) {
        sm__cli_error("the API token in %s is too short; remove it and run "
                      "'stallmesh init' in a new directory", path);
        return SM__EXIT_FAIL;
    }
    return SM__EXIT_OK;
}

static int
s_load_config(const sm__cli *cli, const s_opts *o, sm_config *cfg)
{
    char err[512];
    sm_config_defaults(cfg);
    char path[PATH_MAX];
    const char *file = o->config;
    if (!file && sm__cli_path(cli, SM__CONFIG_FILE, path) && access(path, F_OK) == 0)
        file = path;
    if (file && sm_config_load(cfg, file, err, sizeof err) != 0) {
        sm__cli_error("%s", err);
        return SM__EXIT_FAIL;
    }
    if (o->http && sm_config_set(cfg, "http", "listen", o->http, err, sizeof err) != 0) {
        sm__cli_error("--http: %s", err);
        return SM__EXIT_USAGE;
    }
    if (o->https && sm_config_set(cfg, "http", "tls", o->https, err, sizeof err) != 0) {
        sm__cli_error("--https: %s", err);
        return SM__EXIT_USAGE;
    }
    if (cfg->http_redirect && !cfg->tls_port) {
        sm__cli_error("[http] redirect needs HTTPS: give --https HOST:PORT or [http] tls");
        return SM__EXIT_USAGE;
    }
    if (o->log_level && sm_config_set(cfg, "log", "level", o->log_level, err, sizeof err) != 0) {
        sm__cli_error("--log-level: %s", err);
        return SM__EXIT_USAGE;
    }
    if (o->listen && sm_config_set(cfg, "mesh", "listen", o->listen, err, sizeof err) != 0) {
        sm__cli_error("--listen: %s", err);
        return SM__EXIT_USAGE;
    }
    if (o->advertise
        && sm_config_set(cfg, "mesh", "advertise", o->advertise, err, sizeof err) != 0) {
        sm__cli_error("--advertise: %s", err);
        return SM__EXIT_USAGE;
    }
    if (o->discover)
        cfg->discover = true;
    if (o->mirror)
        cfg->mirror = true;
    if (o->too_many_peers) {
        sm__cli_error("--peer: at most %u peers", SM_PEERS_MAX);
        return SM__EXIT_USAGE;
    }
    for (size_t i = 0; i < o->peer_count; i++) {
        if (sm_config_add_peer(cfg, o->peers[i], err, sizeof err) != 0) {
            sm__cli_error("--peer: %s", err);
            return SM__EXIT_USAGE;
        }
    }
    return SM__EXIT_OK;
}

static void
s_write_url_file(const sm__cli *cli, const sm_config *cfg, int port)
{
    char path[PATH_MAX], url[SM_CONFIG_HOST_BYTES_MAX + 32];
    const char *host = cfg->http_host;
    if (strcmp(host, "0.0.0.0") == 0 || host[0] == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    bool v6 = strchr(host, ':') != NULL;
    snprintf(url, sizeof url, "http://%s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (!sm__cli_path(cli, SM__HTTP_FILE, path) || sm__cli_write_file(path, url, 0644) != 0)
        sm_log_warn("run: cannot write %s: %s", path, strerror(errno));
}

/*  The HTTPS certificate (tls.c: the operator's files, else DIR/tls/, made
    on first use for the listen host too) and the base URL of pairing links:
    the HTTPS host, or this machine's LAN address when it listens on all.    */
static int
s_tls_setup(const sm__cli *cli, const sm_config *cfg, sm_tls_cert *tls, char *pair_url,
            size_t cap)
{
    char err[512];
    const char *names[] = { cfg->tls_host, cfg->http_host, NULL };
    if (sm_tls_ensure(cli->dir, cfg->tls_cert, cfg->tls_key, names, tls, err,
                      sizeof err) != 0) {
        sm__cli_error("HTTPS: %s", err);
        return -1;
    }
    char host[SM_CONFIG_HOST_BYTES_MAX + 1];
    if (strcmp(cfg->tls_host, "0.0.0.0") == 0 || strcmp(cfg->tls_host, "::") == 0
        || !cfg->tls_host[0])
        sm_tls_lan_addr(host, sizeof host);
    else
        snprintf(host, sizeof host, "%s", cfg->tls_host);
    bool v6 = strchr(host, ':') != NULL;
    snprintf(pair_url, cap, "https://%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
             (unsigned) cfg->tls_port);
    return 0;
}

/*  Scheduled backups ([backup] dir): what the main thread needs.          */
typedef struct {
    const sm_config *cfg;
    sm_ledger *ledger;
    const sm_id *node;
    const char *name;
    uint64_t next_ms;          /* 0: none scheduled */
} s_backups;

static void
s_backup_now(s_backups *b, uint64_t now_ms)
{
    char file[PATH_MAX + 128], why[PATH_MAX + 200];
    if (sm__backup_scheduled(b->ledger, b->node, b->name, b->cfg->backup_dir,
                             b->cfg->backup_keep, now_ms, file, sizeof file,
                             why, sizeof why) == 0)
        sm_log_info("run: scheduled backup %s (keeping the newest %u)", file,
                    (unsigned) b->cfg->backup_keep);
    else
        sm_log_error("run: scheduled backup failed: %s", why);
    b->next_ms = now_ms + (uint64_t) b->cfg->backup_every_s * 1000u;
}

/*  Wait for SIGTERM or SIGINT (returned), ignoring SIGHUP.  Meanwhile:
    with a service watchdog, every interval WATCHDOG=1 if the web loop
    turned since the last one (woken each time, so an idle loop turns too),
    else nothing and an error, and the manager restarts the node when its
    WatchdogSec passes; and the scheduled backups, when due.  A backup runs
    on this thread (a read transaction: the node goes on serving).          */
static int
s_wait_signal(const sigset_t *sigs, sm_web *web, sm_notify *notify, s_backups *backups)
{
    uint64_t every_ms = sm_notify_watchdog_ms(notify);
    uint64_t turns = sm_web_turns(web);
    uint64_t next_ping = every_ms ? sm__cli_now_ms() + every_ms : 0;
    bool warned = false;
    sm_web_wake(web);
    for (;;) {
        uint64_t now = sm__cli_now_ms();
        if (backups->next_ms && now >= backups->next_ms) {
            s_backup_now(backups, now);
            now = sm__cli_now_ms();
        }
        if (next_ping && now >= next_ping) {
            uint64_t seen = sm_web_turns(web);
            if (seen != turns) {
                sm_notify_send(notify, "WATCHDOG=1");
                warned = false;
            } else if (!warned) {
                sm_log_error("run: the web loop has not turned for %llu ms: no "
                             "watchdog ping", (unsigned long long) every_ms);
                warned = true;
            }
            turns = seen;
            sm_web_wake(web);
            next_ping = now + every_ms;
        }
        uint64_t wait_ms = UINT64_MAX;
        if (next_ping)
            wait_ms = next_ping > now ? next_ping - now : 0;
        if (backups->next_ms) {
            uint64_t b = backups->next_ms > now ? backups->next_ms - now : 0;
            wait_ms = b < wait_ms ? b : wait_ms;
        }
        int sig;
        if (wait_ms == UINT64_MAX) {
            if (sigwait(sigs, &sig) != 0)
                return SIGTERM;
        } else {
            struct timespec ts = { (time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L };
            sig = sigtimedwait(sigs, NULL, &ts);
            if (sig < 0)
                continue;              /* EAGAIN: a timer is due; EINTR */
        }
        if (sig != SIGHUP)
            return sig;
        sm_log_info("run: SIGHUP ignored (restart to apply a new configuration)");
    }
}

/*  The mesh's options: the config's, plus the organiser's endpoints from
    the join token.                                                           */
static void
s_mesh_opts(const sm_config *cfg, const sm_market *market, const sm_identity *id,
            sm_ledger *ledger, sm_metrics *metrics, sm_mesh_opts *m)
{
    memset(m, 0, sizeof *m);
    m->ledger = ledger;
    m->identity = *id;
    m->metrics = metrics;
    m->units_floor = cfg->units_floor;
    m->units_per_min = cfg->units_per_min;
    m->hold_ttl_s = cfg->hold_ttl_s;
    m->hold_limits = (sm_reserve_limits) { cfg->hold_max_units, cfg->hold_max_per_sku,
                                           cfg->hold_per_device, cfg->hold_per_address };
    snprintf(m->listen, sizeof m->listen, "%s", cfg->mesh_listen);
    /* Given (an endpoint, or none: tell peers nothing), else the listen
       endpoint when it names an address. */
    if (cfg->mesh_advertise_set) {
        snprintf(m->advertise, sizeof m->advertise, "%s", cfg->mesh_advertise);
    } else if (cfg->mesh_listen[0] && !strstr(cfg->mesh_listen, "//*:")
               && !strstr(cfg->mesh_listen, "//0.0.0.0:")) {
        snprintf(m->advertise, sizeof m->advertise, "%s", cfg->mesh_listen);
    }
    /* The beacon tells the advertised endpoint; with none given and a
       listener on every address, host "*" and the listener's port:
       receivers dial the address the beacon came from.  "advertise =
       none" sends no beacon. */
    m->discover.enabled = cfg->discover;
    m->discover.port = (uint16_t) cfg->discover_port;
    snprintf(m->discover.addr, sizeof m->discover.addr, "%s", cfg->discover_addr);
    if (m->advertise[0]) {
        snprintf(m->discover.endpoint, sizeof m->discover.endpoint, "%s", m->advertise);
    } else if (!cfg->mesh_advertise_set && cfg->mesh_listen[0]) {
        const char *port = strrchr(cfg->mesh_listen, ':');
        if (port)
            snprintf(m->discover.endpoint, sizeof m->discover.endpoint, "tcp://*%s", port);
    }
    for (uint32_t i = 0; i < cfg->peer_count && m->peer_count < SM_PEERS_MAX; i++) {
        m->peers[m->peer_count].node = cfg->peers[i].node;
        snprintf(m->peers[m->peer_count].endpoint, sizeof m->peers[0].endpoint, "%s",
                 cfg->peers[i].endpoint);
        m->peer_count++;
    }
    for (uint32_t i = 0; i < market->endpoint_count && m->peer_count < SM_PEERS_MAX; i++) {
        m->peers[m->peer_count].node = market->market;
        snprintf(m->peers[m->peer_count].endpoint, sizeof m->peers[0].endpoint, "%s",
                 market->endpoints[i]);
        m->peer_count++;
    }
}

/*  A mirror (--mirror, [node] mirror) must be admitted with the relay role:
    the roster says which members hold units, and a mirror never does.     */
static int
s_mirror_check(const sm_identity *id, sm_ledger *ledger)
{
    sm_member m;
    int rc = sm_ledger_member(ledger, &id->pub, &m);
    if (rc == SM_ENOTFOUND) {
        /* Joined, the organiser's roster not synced yet: the token's word. */
        memset(&m, 0, sizeof m);
        rc = sm_ledger_join_role(ledger, &m.role);
    }
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&id->pub, hex);
    if (rc == 0 && !m.revoked && m.role == SM_ROLE_RELAY)
        return SM__EXIT_OK;
    if (rc != 0 && rc != SM_ENOTFOUND) {
        sm__cli_error("--mirror: cannot read this node's roster entry: %s", sm_strerror(rc));
        return SM__EXIT_FAIL;
    }
    sm__cli_error("--mirror: this node is %s; a mirror must be admitted with the relay "
                  "role: the organiser runs 'stallmesh admit %s --name NAME --role relay' "
                  "and this node joins with that token",
                  rc == SM_ENOTFOUND ? "not in the market's roster"
                  : m.revoked ? "revoked from the market"
                  : m.role == SM_ROLE_STALL ? "a stall (role stall)" : "the organiser",
                  hex);
    return SM__EXIT_FAIL;
}

int
sm__cmd_run(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "http", required_argument, NULL, 'H' },
        { "https", required_argument, NULL, 'T' },
        { "config", required_argument, NULL, 'c' },
        { "log-level", required_argument, NULL, 'l' },
        { "check", no_argument, NULL, 'k' },
        { "listen", required_argument, NULL, 'L' },
        { "advertise", required_argument, NULL, 'A' },
        { "peer", required_argument, NULL, 'P' },
        { "allow-fresh", no_argument, NULL, 'F' },
        { "discover", no_argument, NULL, 'D' },
        { "mirror", no_argument, NULL, 'M' },
        { NULL, 0, NULL, 0 },
    };
    s_opts o = { 0 };
    int status = SM__EXIT_OK, first = 0;
    if (!sm__cli_parse(argc, argv, s_usage, opts, "", s_on_opt, &o, NULL, &first, &status))
        return status;
    if (first < argc)
        return sm__cli_usage_error(s_usage, "unexpected argument '%s'", argv[first]);

    sm_config cfg;
    if ((status = s_load_config(cli, &o, &cfg)) != SM__EXIT_OK)
        return status;
    sm_log_set_level(cfg.log_level);
    if (o.check) {
        char disc[64] = "discover off";
        if (cfg.discover)
            snprintf(disc, sizeof disc, "discover on (UDP %s:%u)", cfg.discover_addr,
                     (unsigned) cfg.discover_port);
        printf("config ok: listen %s:%u, hold %us, %u holds/min per client, "
               "body max %u bytes, mesh %s, %u peers, %s%s\n", cfg.http_host,
               (unsigned) cfg.http_port, (unsigned) cfg.hold_ttl_s,
               (unsigned) cfg.holds_per_min, (unsigned) cfg.body_bytes_max,
               cfg.mesh_listen[0] ? cfg.mesh_listen : "not listening",
               (unsigned) cfg.peer_count, disc, cfg.mirror ? ", read-only mirror" : "");
        return SM__EXIT_OK;
    }

    sm_identity id;
    memset(&id, 0, sizeof id);
    char token[256];
    sm_ledger *ledger = NULL;
    sm_metrics *metrics = NULL;
    sm_core *core = NULL;
    sm_web *web = NULL;
    sm_auth *auth = NULL;
    sm_notify *notify = NULL;
    int rc = 0;
    status = SM__EXIT_FAIL;
    char why[256];
    if (!(notify = sm_notify_new(why, sizeof why))) {
        sm__cli_error("out of memory");
        goto done;
    }
    if (why[0])
        sm_log_warn("run: %s", why);
    /* One process a directory; a store that fails its checks is refused
       before it is served (pages, chains with each origin's newest
       signature, and the state recomputed from the log). */
    sm_check_report check;
    if (sm__cli_load_identity(cli, &id) != SM__EXIT_OK
        || s_read_token(cli, token, sizeof token) != SM__EXIT_OK
        || sm__cli_lock_dir(cli) != SM__EXIT_OK
        || sm__cli_check_store(cli, SM_CHECK_PAGES | SM_CHECK_STATE | SM_CHECK_ALL_ORIGINS,
                               true, &check) != SM__EXIT_OK
        || sm__cli_open_ledger(cli, &id, false, &ledger) != SM__EXIT_OK)
        goto done;
    /* Entries that do not verify stop only their origin: served below the
       damage, reported on /readyz, /api/state and /metrics. */
    for (uint32_t i = 0; i < check.damaged_count; i++) {
        char hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(&check.damaged[i].origin, hex);
        sm_ledger_set_damaged(ledger, &check.damaged[i]);
        sm_log_warn("store: origin %s entry %llu does not verify (%s): degraded, this "
                    "node serves that origin only up to entry %llu; run 'stallmesh "
                    "repair' to fetch it back from peers", hex,
                    (unsigned long long) check.damaged[i].seq,
                    sm_strerror(check.damaged[i].err),
                    (unsigned long long) check.damaged[i].seq - 1);
    }
    if (check.damaged_count)
        sm_log_warn("store: the state was not checked against the log (it cannot be "
                    "recomputed past the damage)");
    sm_market market;
    if ((rc = sm_ledger_market(ledger, &market)) != 0) {
        sm__cli_error("this node is in no market yet: run 'stallmesh market create "
                      "--name NAME' (organiser) or 'stallmesh join TOKEN' first");
        goto done;
    }
    if (cfg.mirror && s_mirror_check(&id, ledger) != SM__EXIT_OK)
        goto done;
    /* Every thread inherits this mask; this thread takes the signals. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!(metrics = sm_metrics_new())) {
        sm__cli_error("out of memory");
        goto done;
    }
    static sm_mesh_opts mopts;
    s_mesh_opts(&cfg, &market, &id, ledger, metrics, &mopts);
    if (!cfg.mesh_listen[0] && mopts.peer_count == 0 && !cfg.discover)
        sm_log_info("run: no mesh listener and no peers: this node works alone");
    sm_core_opts copts = { .ledger = ledger, .node = id.pub, .metrics = metrics,
                           .wake = s_wake, .mesh = &mopts, .allow_fresh = o.allow_fresh,
                           .rebalance_floor = cfg.rebalance_floor, .mirror = cfg.mirror,
                           .hold_limits = mopts.hold_limits };
    if (!(core = sm_core_new(&copts, &rc))) {
        sm__cli_error("cannot start the core: %s", sm_strerror(rc));
        goto done;
    }
    static sm_tls_cert tls;
    char pair_url[SM_CONFIG_HOST_BYTES_MAX + 32] = "";
    if (cfg.tls_port && s_tls_setup(cli, &cfg, &tls, pair_url, sizeof pair_url) != 0)
        goto done;
    char devices_path[PATH_MAX];
    if (!sm__cli_path(cli, SM__DEVICES_FILE, devices_path))
        goto done;
    if (!(auth = sm_auth_new(devices_path, token, cfg.pair_ttl_s, &rc))) {
        sm__cli_error("cannot read the paired devices in %s: %s", devices_path,
                      sm_strerror(rc));
        goto done;
    }
    explicit_bzero(token, sizeof token);
    sm_web_opts wopts = { .config = &cfg, .ledger = ledger, .core = core,
                          .metrics = metrics, .node = id.pub, .auth = auth,
                          .tls_cert = cfg.tls_port ? tls.cert_path : NULL,
                          .tls_key = cfg.tls_port ? tls.key_path : NULL,
                          .pair_url = pair_url[0] ? pair_url : NULL };
    if (!(web = sm_web_new(&wopts, &rc))) {
        sm__cli_error("cannot start the web server on %s:%u: %s", cfg.http_host,
                      (unsigned) cfg.http_port, sm_strerror(rc));
        goto done;
    }
    pthread_mutex_lock(&s_web_lock);
    s_web_ptr = web;
    pthread_mutex_unlock(&s_web_lock);
    int port = sm_web_port(web);
    s_write_url_file(cli, &cfg, port);
    char token_path[PATH_MAX];
    sm__cli_path(cli, SM__API_TOKEN_FILE, token_path);
    const char *shown = strcmp(cfg.http_host, "0.0.0.0") == 0 ? "127.0.0.1" : cfg.http_host;
    char stock_url[512], url_path[PATH_MAX];
    bool reachable = sm__cli_stock_url(cfg.http_host, port, stock_url, sizeof stock_url);
    if (sm__cli_path(cli, SM__STOCK_URL_FILE, url_path)) {
        char line[520];
        snprintf(line, sizeof line, "%s\n", stock_url);
        if (sm__cli_write_file(url_path, line, 0644) != 0)
            sm_log_warn("run: cannot write %s: %s", url_path, strerror(errno));
    }
    char stall_name[SM_NAME_BYTES_MAX + 1];
    sm__cli_node_name(cli, stall_name);
    if ((rc = sm_web_set_poster(web, stall_name[0] ? stall_name : market.name, stock_url)) != 0)
        sm_log_warn("run: no poster at /poster: %s", sm_strerror(rc));
    sm_log_info("run: serving market \"%s\" on %s:%d%s", market.name, cfg.http_host, port,
                cfg.mirror ? " as a read-only mirror" : "");
    printf("stallmesh %s: market \"%s\"\n"
           "  stock page  http://%s:%d/\n"
           "  till        http://%s:%d/till   (token: %s)\n"
           "  market      http://%s:%d/market (the organiser's view; the same token)\n"
           "  API         http://%s:%d/api/stock\n"
           "  phones      %s%s\n"
           "  poster      http://%s:%d/poster   (print it for the stall)\n",
           SM__VERSION, market.name, shown, port, shown, port, token_path, shown, port,
           shown, port,
           stock_url, reachable ? "" : "   (no LAN address: phones cannot reach this)",
           shown, port);
    if (cfg.tls_port) {
        sm_log_info("run: HTTPS on %s:%d, certificate SHA-256 %s", cfg.tls_host,
                    sm_web_tls_port(web), tls.fingerprint);
        printf("  HTTPS       https://%s:%d/till   (pair devices: stallmesh pair)\n"
               "  certificate %s%s\n"
               "    SHA-256 fingerprint  %s\n"
               "    public key (pin)     sha256//%s\n",
               strcmp(cfg.tls_host, "0.0.0.0") == 0 ? shown : cfg.tls_host,
               sm_web_tls_port(web), tls.cert_path, tls.generated ? " (made now)" : "",
               tls.fingerprint, tls.spki_sha256);
    }
    printf("Stop with Ctrl-C.\n");
    /* A QR code of the shoppers' URL for a terminal (not for a log). */
    if (isatty(STDOUT_FILENO) && reachable)
        sm__qr_print(stock_url, stdout);
    fflush(stdout);

    pthread_t web_thread;
    if (pthread_create(&web_thread, NULL, s_web_thread, web) != 0) {
        sm__cli_error("cannot start the web thread");
        goto done;
    }
    char ready[160];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=serving market \"%.80s\" on port %d",
             market.name, port);
    if (sm_notify_send(notify, ready) != 0)
        sm_log_warn("run: cannot tell the service manager that the node is ready");
    s_backups backups = { .cfg = &cfg, .ledger = ledger, .node = &id.pub,
                          .name = stall_name,
                          .next_ms = cfg.backup_dir[0] ? sm__cli_now_ms() : 0 };
    int sig = s_wait_signal(&sigs, web, notify, &backups);
    sm_log_info("run: %s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    sm_notify_send(notify, "STOPPING=1\nSTATUS=stopping");
    sm_web_stop(web);
    pthread_join(web_thread, NULL);
    status = SM__EXIT_OK;
done:
    pthread_mutex_lock(&s_web_lock);
    s_web_ptr = NULL;
    pthread_mutex_unlock(&s_web_lock);
    sm_web_destroy(&web);
    sm_auth_destroy(&auth);
    sm_core_destroy(&core);
    sm_ledger_destroy(&ledger);
    sm_metrics_destroy(&metrics);
    sm_identity_wipe(&id);
    sm_identity_wipe(&mopts.identity);
    sm_notify_destroy(&notify);
    if (status == SM__EXIT_OK)
        sm_log_info("run: stopped cleanly");
    return status;
}
