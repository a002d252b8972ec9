/*  wsfeed: a bare libwebsockets feed server with the shape of the node's
    /ws contract and nothing else (no store, no JSON library), used to test
    wsprobe on its own and, in the benchmark, as the machine's limit for
    websocket fan-out beside the node.

        wsfeed --port P [--snapshot-bytes B] [--host 127.0.0.1]

    (--port 0: a free port the kernel picks.)
    Serves on HOST:P (default 127.0.0.1):
      /ws          websocket: {"type":"snapshot","version":V,...} of about B
                   bytes (default 40000) on connect, then one
                   {"type":"delta","version":V,"items":[],"removed":[]} per
                   change (changes coalesce: a slow client gets the newest);
                   client text messages up to 4096 bytes are ignored, a
                   bigger one closes the connection with 1009;
      GET /delta   a change: version + 1, a delta to every client; 200 "ok";
      GET /close   closes every websocket open now with 1001; 200 "ok";
      anything else 404.
    Prints "wsfeed: listening on HOST:P" on stdout once it is (P the real
    port), runs until SIGTERM or SIGINT.                                                        */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <libwebsockets.h>

#define S_CLIENT_MESSAGE_BYTES_MAX 4096u
#define S_SNAPSHOT_BYTES_MAX       (16u << 20)

typedef struct {
    bool snapshot_sent;
    unsigned epoch;             /* s_close_epoch when it connected */
    uint64_t version_sent;
    size_t rx_bytes;            /* of the client's message being received */
} s_session;

static struct lws_context *s_ctx;
static volatile sig_atomic_t s_stop;
static uint64_t s_version = 1;
static unsigned s_close_epoch;     /* GET /close closes sessions older */
static unsigned char *s_snapshot;  /* LWS_PRE + body */
static size_t s_snapshot_len;
static size_t s_snapshot_bytes;  /* the size asked for */

static void
s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
    if (s_ctx)
        lws_cancel_service(s_ctx);
}

/*  Build the snapshot: the type and version first, padding items after.    */
static int
s_make_snapshot(size_t bytes)
{
    free(s_snapshot);
    s_snapshot = malloc(LWS_PRE + bytes + 64);
    if (!s_snapshot)
        return -1;
    char *p = (char *) s_snapshot + LWS_PRE;
    int n = sprintf(p, "{\"type\":\"snapshot\",\"version\":%llu,\"items\":[",
                    (unsigned long long) s_version);
    size_t len = (size_t) n;
    bool first = true;
    while (len + 40 < bytes) {
        len += (size_t) sprintf(p + len, "%s{\"sku\":\"s%05zu\",\"total\":5}",
                                first ? "" : ",", len);
        first = false;
    }
    len += (size_t) sprintf(p + len, "]}");
    s_snapshot_len = len;
    return 0;
}

static int
s_http(struct lws *wsi, const char *body, int status)
{
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                  *end = buf + sizeof buf;
    size_t n = strlen(body);
    if (lws_add_http_common_headers(wsi, (unsigned) status, "text/plain", n, &p, end)
        || lws_finalize_write_http_header(wsi, start, &p, end))
        return 1;
    memcpy(buf + LWS_PRE, body, n);
    if (lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP_FINAL) != (int) n)
        return 1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int
s_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
           void *in, size_t len)
{
    s_session *s = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        const char *uri = in;
        if (strcmp(uri, "/delta") == 0) {
            s_version++;
            if (s_make_snapshot(s_snapshot_bytes) != 0)
                return -1;
            lws_callback_on_writable_all_protocol(s_ctx, lws_get_protocol(wsi));
            return s_http(wsi, "ok\n", 200);
        }
        if (strcmp(uri, "/close") == 0) {
            s_close_epoch++;
            lws_callback_on_writable_all_protocol(s_ctx, lws_get_protocol(wsi));
            return s_http(wsi, "ok\n", 200);
        }
        return s_http(wsi, "not found\n", 404);
    }
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof *s);
        s->epoch = s_close_epoch;
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (s->epoch < s_close_epoch) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, NULL, 0);
            return -1;
        }
        if (!s->snapshot_sent) {
            s->snapshot_sent = true;
            s->version_sent = s_version;
            size_t n = s_snapshot_len;
            if (lws_write(wsi, s_snapshot + LWS_PRE, n, LWS_WRITE_TEXT) < (int) n)
                return -1;
            if (s->version_sent < s_version)
                lws_callback_on_writable(wsi);
            return 0;
        }
        if (s->version_sent < s_version) {
            unsigned char buf[LWS_PRE + 128];
            s->version_sent = s_version;
            int n = snprintf((char *) buf + LWS_PRE, 128,
                             "{\"type\":\"delta\",\"version\":%llu,\"items\":[],\"removed\":[]}",
                             (unsigned long long) s_version);
            if (lws_write(wsi, buf + LWS_PRE, (size_t) n, LWS_WRITE_TEXT) < n)
                return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        if (lws_is_first_fragment(wsi))
            s->rx_bytes = 0;
        s->rx_bytes += len;
        if (s->rx_bytes > S_CLIENT_MESSAGE_BYTES_MAX) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            return -1;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols s_protocols[] = {
    { "http", s_callback, sizeof(s_session), 4096, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

int
main(int argc, char **argv)
{
    int port = -1;
    size_t snapshot_bytes = 40000;
    const char *host = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--snapshot-bytes") == 0 && i + 1 < argc)
            snapshot_bytes = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else {
            fprintf(stderr, "usage: wsfeed --port P [--snapshot-bytes B] [--host H]\n");
            return 2;
        }
    }
    if (port < 0 || port > 65535 || snapshot_bytes < 64
        || snapshot_bytes > S_SNAPSHOT_BYTES_MAX) {
        fprintf(stderr, "wsfeed: --port 0..65535 is needed; --snapshot-bytes 64..%u\n",
                S_SNAPSHOT_BYTES_MAX);
        return 2;
    }
    s_snapshot_bytes = snapshot_bytes;
    if (s_make_snapshot(snapshot_bytes) != 0)
        return 1;
    /* Room for many clients: the open-file limit up to the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, s_on_signal);
    signal(SIGINT, s_on_signal);
    lws_set_log_level(LLL_ERR, NULL);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = host;
    info.protocols = s_protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    s_ctx = lws_create_context(&info);
    if (!s_ctx) {
        fprintf(stderr, "wsfeed: cannot listen on %s:%d\n", host, port);
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(s_ctx, "default");
    printf("wsfeed: listening on %s:%d\n", host, vh ? lws_get_vhost_listen_port(vh) : port);
    fflush(stdout);
    while (!s_stop && lws_service(s_ctx, 0) >= 0)
        ;
    lws_context_destroy(s_ctx);
    free(s_snapshot);
    return 0;
}
