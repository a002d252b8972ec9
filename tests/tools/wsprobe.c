/*  wsprobe: a websocket client for the node's /ws feed, used by the
    integration tests and by the fan-out benchmark.

    Probe mode (integration tests):

        wsprobe URL [--count N] [--timeout-ms T] [--send TEXT]
                    [--send-bytes B] [--expect-close]

    connects once, prints each text message received as one line on stdout
    (a newline inside a message is printed as a space) and exits 0 after N
    messages (default 1), or 1 on timeout, connection failure or close.
    --send sends TEXT once the connection is open; --send-bytes sends a text
    message of B bytes.  With --expect-close the probe waits for the server to
    close the connection instead: 0 if it does within the timeout, else 1.

    Fan-out mode (benchmark):

        wsprobe URL --fanout --clients N --trigger CMD [--rounds K]
                    [--batch B] [--sources S] [--pid PID] [--timeout-ms T]
                    [--gap-ms G] [--until TEXT] [--ref-file PATH]
                    [--cpu-pid PID]... [--lws [--poll]]

    opens N connections, never more than B still waiting for their snapshot
    (paced batches), client i bound to source address 127.0.0.(1 + i % S) so
    a limit of connections per address is not what is measured.  Once every
    client has its snapshot it runs CMD (with sh -c, stdout to /dev/null) K
    times; for each round it takes, per client, the time from starting CMD to
    the receipt of the first "delta" message after it, and waits until every
    client has one before the next round.  It prints the p50/p99/max of those
    times over all clients and rounds, the time until the last client had it,
    the time CMD itself took, and the VmRSS of process PID (the node) before
    the clients connected and with them connected.  The last line is
    machine-readable: "wsprobe: clients=N rounds=K p50_ms=... p99_ms=...
    max_ms=... all_p50_ms=... all_max_ms=... rss_before_kb=... rss_kb=...
    rounds_ms=... self_cpu_ms=... pid_cpu_ms=... cpu_pids_ms=..." (the
    last four: the rounds' wall time, and the CPU this process, PID and
    the --cpu-pid processes used during them, so a figure limited by the
    generator itself shows as such).
    With --until TEXT a client's receipt is its first delta whose first
    256 bytes contain TEXT (the drop rush: '"total":0', its sku sold out);
    with --ref-file PATH the times are taken from the CLOCK_MONOTONIC ns
    the trigger wrote to PATH (the rush: when the last unit's 201 came)
    rather than from the trigger's start, and may be negative.
    Exit 0 when every round reached every client; 1 when a client failed to
    connect, closed, or missed a delta within T ms (default 10000 a round,
    and 60000 for connecting); 2 for usage errors.

    Times are CLOCK_MONOTONIC.  The receipt time of a client is when this
    process has read the whole message (the clock is read after each read
    of a socket that returned bytes), so it includes the time this single
    thread spent on the clients served before it: the figure is an upper
    bound of what a phone would see.

    The fan-out's clients are cheap, so that on one machine the generator
    is not what the figure measures: a plain epoll loop (level-triggered,
    up to 1024 events a wait) without libwebsockets, one recv of up to
    256 KiB a ready socket, the websocket frames parsed in place (their
    headers, and the first 256 bytes of each text message kept to
    recognise a snapshot or a delta: no JSON parse, no allocation a
    frame).  The handshake is checked (101 and the Sec-WebSocket-Accept
    of the key sent), pings are answered, a close ends the client.
    --lws runs the fan-out's clients on libwebsockets instead (libev on
    epoll; --poll: lws's own poll loop), for comparison: lws walks its own
    lists for each event, about 20 us of CPU a delta at 10,000 clients.
    --cpu-pid PID (repeatable, up to 16) adds the CPU those processes used
    during the rounds (nginx's workers) as cpu_pids_ms.  Probe mode always
    uses libwebsockets.  Only ws:// URLs (no TLS).                            */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <libwebsockets.h>

extern char **environ;

#define S_CLIENTS_MAX      60000u
#define S_ROUNDS_MAX       10000u
#define S_MESSAGE_BYTES_MAX (64u << 20)  /* one message in probe mode */
#define S_HEAD_BYTES       256u          /* message prefix kept in fan-out mode */
#define S_TICK_US          2000          /* the loop's timer */
#define S_HOST_BYTES       256u
#define S_PATH_BYTES       2048u
#define S_SEND_BYTES_MAX   (16u << 20)
#define S_CPU_PIDS_MAX     16u
#define S_RAW_READ_BYTES   (256u << 10)  /* one recv in the fan-out's own loop */
#define S_RAW_EVENTS       1024          /* events an epoll_wait */
#define S_RAW_HTTP_MAX     8192u         /* the handshake's answer, headers */
/* The handshake's key and the accept it must be answered with (RFC 6455
   section 1.3's example: every client may send the same key). */
#define S_WS_KEY           "dGhlIHNhbXBsZSBub25jZQ=="
#define S_WS_ACCEPT        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

enum { C_IDLE, C_CONNECTING, C_OPEN, C_READY, C_CLOSED };

typedef struct {
    struct lws *wsi;
    int state;                 /* C_*; C_READY = snapshot received */
    char *msg;                 /* probe mode: the message being assembled */
    size_t msg_len, msg_cap;
    char head[S_HEAD_BYTES];   /* fan-out mode: first bytes of the message */
    size_t head_len;
    uint64_t delta_ns;         /* receipt of this round's delta; 0 = not yet */
    bool sent;                 /* probe mode: --send done */
    /* The fan-out's own loop (not --lws): the socket and the frame being read. */
    int fd;                    /* -1: none */
    bool upgraded;             /* the 101 came: frames follow */
    bool in_msg;               /* a text or binary message is being read */
    bool msg_text;
    uint8_t fh[14];            /* the frame header so far */
    uint8_t fh_len, fh_need;   /* fh_need 0: reading the payload */
    uint8_t op;                /* the frame's opcode */
    bool fin;
    uint64_t left;             /* payload bytes of the frame still to come */
    uint8_t ctl[125];          /* a control frame's payload */
    uint8_t ctl_len;
} s_client;

typedef struct {
    /* options */
    char host[S_HOST_BYTES];
    char path[S_PATH_BYTES];
    int port;
    bool fanout;
    unsigned count;
    unsigned timeout_ms;
    bool timeout_set;
    const char *send_text;
    size_t send_bytes;
    bool expect_close;
    unsigned clients;
    unsigned rounds;
    unsigned batch;
    unsigned sources;
    unsigned gap_ms;
    const char *trigger;
    const char *until;         /* a delta counts only if its head has this */
    const char *ref_file;      /* times from the monotonic ns written here */
    long pid;
    long cpu_pids[S_CPU_PIDS_MAX];  /* --cpu-pid: their CPU during the rounds */
    unsigned ncpu_pids;
    bool raw;                  /* fan-out on the own epoll loop (not --lws) */

    /* run */
    struct lws_context *ctx;
    lws_sorted_usec_list_t tick;
    s_client *c;
    char (*iface)[24];         /* source address of each of `sources` */
    unsigned launched, connecting, ready, failed, closed;
    unsigned received;         /* probe: messages; fan-out: deltas this round */
    int close_code;
    char fail_reason[256];
    bool done;
    int rc;
    uint64_t start_ns, deadline_ns;
    unsigned connect_ms;       /* fan-out: all clients must be ready by then */

    /* fan-out rounds */
    int phase;                 /* P_CONNECT, P_ROUND, P_GAP */
    unsigned round;
    uint64_t t0_ns, gap_until_ns;
    pid_t child;
    uint64_t child_ns;         /* when the trigger exited; 0 = running */
    double *lat_ms;            /* clients * rounds samples */
    size_t lat_n;
    double *all_ms;            /* per round: until the last client */
    double *cmd_ms;            /* per round: the trigger command */
    long rss_before_kb;
    /* CPU during the rounds (from each trigger to its last receipt): this
       process's own, and pid's, so a figure limited by the generator shows. */
    double round_cpu0_ms, pid_cpu0_ms, round_wall0_ms, cpu_pids0_ms;
    double rounds_cpu_ms, pid_rounds_cpu_ms, rounds_wall_ms, cpu_pids_rounds_ms;

    /* the own loop */
    int epfd;
    struct sockaddr_storage addr;   /* the server's */
    socklen_t addr_len;
    struct sockaddr_in *src;        /* source address of each of `sources` */
    char request[S_PATH_BYTES + 2 * S_HOST_BYTES + 256];
    size_t request_len;
} s_probe;

enum { P_CONNECT, P_ROUND, P_GAP };

static s_probe s_run;   /* the one run of this process */

static uint64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/*  Stop the loop with exit status `rc`; the first reason given is kept.    */
static void
s_finish(int rc, const char *fmt, ...)
{
    if (!s_run.done && fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s_run.fail_reason, sizeof s_run.fail_reason, fmt, ap);
        va_end(ap);
    }
    if (!s_run.done)
        s_run.rc = rc;
    s_run.done = true;
    if (s_run.ctx)
        lws_cancel_service(s_run.ctx);      /* the loop may be about to poll */
}

/*  VmRSS of process `pid` in kB, or -1 if it cannot be read.               */
static long
s_rss_kb(long pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/*  Parse "ws://HOST[:PORT][/PATH]" into s_run.host, s_run.port, s_run.path.            */
static int
s_parse_url(const char *url)
{
    if (strncmp(url, "ws://", 5) != 0)
        return -1;
    const char *p = url + 5, *end = p + strcspn(p, "/");
    const char *colon = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == ':')
            colon = q;
    const char *host_end = colon ? colon : end;
    size_t hl = (size_t) (host_end - p);
    if (hl == 0 || hl >= sizeof s_run.host)
        return -1;
    memcpy(s_run.host, p, hl);
    s_run.host[hl] = '\0';
    s_run.port = 80;
    if (colon) {
        char *stop;
        long port = strtol(colon + 1, &stop, 10);
        if (stop != end || port < 1 || port > 65535)
            return -1;
        s_run.port = (int) port;
    }
    const char *path = *end ? end : "/";
    if (strlen(path) >= sizeof s_run.path)
        return -1;
    strcpy(s_run.path, path);
    return 0;
}

/*  The string value of top-level-looking key `key` ("type") in the JSON
    text t[0..n), copied to out[0..cap); false if not found whole.  A plain
    scan, enough for the node's messages, which begin with their type.        */
static bool
s_json_str(const char *t, size_t n, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 < n; i++) {
        if (t[i] != '"' || memcmp(t + i + 1, key, kl) != 0 || t[i + kl + 1] != '"')
            continue;
        size_t j = i + kl + 2;
        while (j < n && (t[j] == ' ' || t[j] == '\t' || t[j] == '\n' || t[j] == '\r'))
            j++;
        if (j >= n || t[j] != ':')
            continue;
        j++;
        while (j < n && (t[j] == ' ' || t[j] == '\t' || t[j] == '\n' || t[j] == '\r'))
            j++;
        if (j >= n || t[j] != '"')
            return false;
        j++;
        size_t o = 0;
        while (j < n && t[j] != '"' && o + 1 < cap)
            out[o++] = t[j++];
        if (j >= n || t[j] != '"')
            return false;
        out[o] = '\0';
        return true;
    }
    return false;
}

/*  Print one whole message as one line.                                    */
static void
s_print_line(const char *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        putchar(m[i] == '\n' || m[i] == '\r' ? ' ' : m[i]);
    putchar('\n');
    fflush(stdout);
}

/*  A whole text message arrived on client `c` (at `at_ns`).                */
static void
s_message(s_client *c, uint64_t at_ns)
{
    if (!s_run.fanout) {
        s_print_line(c->msg, c->msg_len);
        s_run.received++;
        if (!s_run.expect_close && s_run.received >= s_run.count)
            s_finish(0, NULL);
        return;
    }
    char type[32];
    if (!s_json_str(c->head, c->head_len, "type", type, sizeof type))
        return;
    if (strcmp(type, "snapshot") == 0 && c->state == C_OPEN) {
        c->state = C_READY;
        s_run.ready++;
        s_run.connecting--;
    } else if (strcmp(type, "delta") == 0 && s_run.phase == P_ROUND
               && c->state == C_READY && c->delta_ns == 0
               && (!s_run.until || memmem(c->head, c->head_len, s_run.until,
                                          strlen(s_run.until)))) {
        c->delta_ns = at_ns;
        s_run.received++;
    }
}

/*  Client `c` is gone (failed to connect or closed).                       */
static void
s_gone(s_client *c, bool failed, const char *why)
{
    if (c->state == C_CLOSED || c->state == C_IDLE)
        return;
    if (c->state == C_CONNECTING || c->state == C_OPEN)
        s_run.connecting--;
    if (c->state == C_READY)
        s_run.ready--;
    c->state = C_CLOSED;
    c->wsi = NULL;
    if (c->fd >= 0) {
        close(c->fd);           /* and out of the epoll set */
        c->fd = -1;
    }
    free(c->msg);
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
    if (failed)
        s_run.failed++;
    else
        s_run.closed++;
    if (!s_run.fanout) {
        if (s_run.expect_close && !failed)
            s_finish(0, NULL);
        else if (failed)
            s_finish(1, "connection failed: %s", why ? why : "unknown");
        else
            s_finish(1, "connection closed by the server (code %d) after %u of %u messages",
                     s_run.close_code, s_run.received, s_run.count);
        return;
    }
    if (failed)
        s_finish(1, "client %ld failed to connect: %s (%u ready, %u launched)",
                 (long) (c - s_run.c), why ? why : "unknown", s_run.ready, s_run.launched);
    else
        s_finish(1, "client %ld closed by the server (code %d) (%u ready)",
                 (long) (c - s_run.c), s_run.close_code, s_run.ready);
}

static int
s_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
           void *in, size_t len)
{
    (void) user;
    s_client *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[128];
        snprintf(why, sizeof why, "%s", in ? (const char *) in : "no detail");
        if (c)
            s_gone(c, true, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!c)
            return -1;
        c->wsi = wsi;
        c->state = C_OPEN;
        if (!s_run.fanout && (s_run.send_text || s_run.send_bytes))
            lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (!c || c->sent || (!s_run.send_text && !s_run.send_bytes))
            return 0;
        size_t n = s_run.send_text ? strlen(s_run.send_text) : s_run.send_bytes;
        unsigned char *buf = malloc(LWS_PRE + n + 1);
        if (!buf) {
            s_finish(1, "out of memory");
            return -1;
        }
        if (s_run.send_text)
            memcpy(buf + LWS_PRE, s_run.send_text, n);
        else
            memset(buf + LWS_PRE, 'x', n);
        int wrote = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
        free(buf);
        c->sent = true;
        if (wrote < (int) n) {
            s_finish(1, "sending %zu bytes failed", n);
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!c)
            return 0;
        uint64_t at = s_now_ns();
        if (lws_is_first_fragment(wsi)) {
            c->msg_len = 0;
            c->head_len = 0;
        }
        if (lws_frame_is_binary(wsi)) {
            if (lws_is_final_fragment(wsi))
                fprintf(stderr, "wsprobe: ignored a binary message\n");
            return 0;
        }
        if (s_run.fanout) {
            size_t room = sizeof c->head - c->head_len;
            size_t take = len < room ? len : room;
            memcpy(c->head + c->head_len, in, take);
            c->head_len += take;
        } else {
            if (c->msg_len + len > S_MESSAGE_BYTES_MAX) {
                s_finish(1, "a message of more than %u bytes", S_MESSAGE_BYTES_MAX);
                return -1;
            }
            if (c->msg_len + len > c->msg_cap) {
                size_t cap = c->msg_cap ? c->msg_cap : 4096;
                while (cap < c->msg_len + len)
                    cap *= 2;
                char *m = realloc(c->msg, cap);
                if (!m) {
                    s_finish(1, "out of memory");
                    return -1;
                }
                c->msg = m;
                c->msg_cap = cap;
            }
            memcpy(c->msg + c->msg_len, in, len);
            c->msg_len += len;
        }
        if (lws_is_final_fragment(wsi))
            s_message(c, at);
        return 0;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (in && len >= 2)
            s_run.close_code = ((const unsigned char *) in)[0] << 8
                           | ((const unsigned char *) in)[1];
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c)
            s_gone(c, false, NULL);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols s_protocols[] = {
    { "wsprobe", s_callback, 0, 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/*  Start connecting client i.                                              */
static void
s_launch(unsigned i)
{
    s_client *c = &s_run.c[i];
    char hosthdr[S_HOST_BYTES + 8];
    snprintf(hosthdr, sizeof hosthdr, "%s:%d", s_run.host, s_run.port);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = s_run.ctx;
    ci.address = s_run.host;
    ci.port = s_run.port;
    ci.path = s_run.path;
    ci.host = hosthdr;
    ci.origin = hosthdr;
    ci.protocol = NULL;                 /* no subprotocol asked */
    ci.local_protocol_name = s_protocols[0].name;
    ci.opaque_user_data = c;
    ci.pwsi = &c->wsi;
    if (s_run.sources > 1)
        ci.iface = s_run.iface[i % s_run.sources];
    c->state = C_CONNECTING;
    s_run.connecting++;
    s_run.launched++;
    if (!lws_client_connect_via_info(&ci))
        s_gone(c, true, "lws_client_connect_via_info refused");
}

/* ---- the fan-out's own loop: plain sockets, frames parsed in place ---------- */

/*  Start connecting client i: a non-blocking connect from its source
    address; the handshake is sent once it is writable.                     */
static void
s_raw_launch(unsigned i)
{
    s_client *c = &s_run.c[i];
    c->state = C_CONNECTING;
    s_run.connecting++;
    s_run.launched++;
    int fd = socket(s_run.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        s_gone(c, true, strerror(errno));
        return;
    }
    c->fd = fd;
    if (s_run.sources > 1) {
        int one = 1;    /* the port is chosen at connect, per destination */
        (void) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        const struct sockaddr_in *src = &s_run.src[i % s_run.sources];
        if (bind(fd, (const struct sockaddr *) src, sizeof *src) != 0) {
            s_gone(c, true, strerror(errno));
            return;
        }
    }
    if (connect(fd, (const struct sockaddr *) &s_run.addr, s_run.addr_len) != 0
        && errno != EINPROGRESS) {
        s_gone(c, true, strerror(errno));
        return;
    }
    struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = i };
    if (epoll_ctl(s_run.epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        s_gone(c, true, strerror(errno));
}

/*  Send a frame (a pong) to the server, masked as a client must (with a
    zero mask: the payload goes as is).  Best effort: a control frame of
    at most 125 bytes into a socket whose buffer is near empty.            */
static void
s_raw_send_frame(s_client *c, uint8_t op, const uint8_t *p, size_t n)
{
    uint8_t f[2 + 4 + 125];
    f[0] = (uint8_t) (0x80 | op);
    f[1] = (uint8_t) (0x80 | n);
    memset(f + 2, 0, 4);
    memcpy(f + 6, p, n);
    (void) send(c->fd, f, 6 + n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*  The end of a frame on client c, its last byte read at `at`: 0, or -1
    when the client is gone.                                                */
static int
s_raw_frame_end(s_client *c, uint64_t at)
{
    c->fh_len = 0;
    c->fh_need = 2;
    if (c->op >= 8) {
        if (c->op == 0x8) {             /* close */
            if (c->ctl_len >= 2)
                s_run.close_code = c->ctl[0] << 8 | c->ctl[1];
            s_gone(c, false, NULL);
            return -1;
        }
        if (c->op == 0x9)               /* ping: pong with its payload */
            s_raw_send_frame(c, 0xA, c->ctl, c->ctl_len);
        return 0;
    }
    if (!c->fin)
        return 0;
    c->in_msg = false;
    if (c->msg_text)
        s_message(c, at);
    else
        fprintf(stderr, "wsprobe: ignored a binary message\n");
    return 0;
}

/*  Bytes p[0..n) of client c's websocket stream, read at `at`: frame
    headers parsed a byte at a time, payloads skipped but for the first
    S_HEAD_BYTES of each text message.  0, or -1 when the client is gone.   */
static int
s_raw_frames(s_client *c, const uint8_t *p, size_t n, uint64_t at)
{
    while (n > 0) {
        if (c->fh_need) {
            c->fh[c->fh_len++] = *p++;
            n--;
            if (c->fh_len == 2) {
                uint8_t len7 = c->fh[1] & 0x7f;
                if (c->fh[1] & 0x80) {
                    s_gone(c, true, "a masked frame from the server");
                    return -1;
                }
                if (c->fh[0] & 0x70) {
                    s_gone(c, true, "a frame with RSV bits (no extension was offered)");
                    return -1;
                }
                c->fh_need = (uint8_t) (2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0));
            }
            if (c->fh_len < c->fh_need)
                continue;
            /* The header is whole. */
            uint64_t len = c->fh[1] & 0x7f;
            if (len == 126)
                len = (uint64_t) c->fh[2] << 8 | c->fh[3];
            else if (len == 127) {
                len = 0;
                for (int i = 2; i < 10; i++)
                    len = len << 8 | c->fh[i];
            }
            c->op = c->fh[0] & 0x0f;
            c->fin = (c->fh[0] & 0x80) != 0;
            c->fh_need = 0;
            c->left = len;
            if (c->op >= 8) {
                if (len > 125 || !c->fin || (c->op != 0x8 && c->op != 0x9 && c->op != 0xA)) {
                    s_gone(c, true, "a malformed control frame");
                    return -1;
                }
                c->ctl_len = 0;
            } else if (c->op == 0x1 || c->op == 0x2) {
                if (c->in_msg) {
                    s_gone(c, true, "a new message inside a fragmented one");
                    return -1;
                }
                c->in_msg = true;
                c->msg_text = c->op == 0x1;
                c->head_len = 0;
            } else if (c->op != 0x0 || !c->in_msg) {
                s_gone(c, true, "an unknown opcode or a stray continuation frame");
                return -1;
            }
            if (len == 0 && s_raw_frame_end(c, at) != 0)
                return -1;
            continue;
        }
        size_t take = c->left < n ? (size_t) c->left : n;
        if (c->op >= 8) {
            memcpy(c->ctl + c->ctl_len, p, take);
            c->ctl_len = (uint8_t) (c->ctl_len + take);
        } else if (c->msg_text && c->head_len < S_HEAD_BYTES) {
            size_t room = S_HEAD_BYTES - c->head_len;
            size_t keep = take < room ? take : room;
            memcpy(c->head + c->head_len, p, keep);
            c->head_len += keep;
        }
        p += take;
        n -= take;
        c->left -= take;
        if (c->left == 0 && s_raw_frame_end(c, at) != 0)
            return -1;
    }
    return 0;
}

/*  The handshake's answer so far in c->msg: 1 when whole and a 101 with
    the right accept (*body_at: where the frames begin), 0 when more is
    needed, -1 when refused (the client is gone).                            */
static int
s_raw_answer(s_client *c, size_t *body_at)
{
    char *m = c->msg;
    char *end = memmem(m, c->msg_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->msg_len + 1 >= S_RAW_HTTP_MAX) {      /* no room left for more */
            s_gone(c, true, "the handshake's answer has no end");
            return -1;
        }
        return 0;
    }
    *end = '\0';                        /* the headers as one string */
    *body_at = (size_t) (end - m) + 4;
    if (strncmp(m, "HTTP/1.1 101", 12) != 0) {
        char why[96];
        snprintf(why, sizeof why, "the handshake was answered '%.*s'",
                 (int) (strcspn(m, "\r\n") < 60 ? strcspn(m, "\r\n") : 60), m);
        s_gone(c, true, why);
        return -1;
    }
    const char *h = strcasestr(m, "\r\nSec-WebSocket-Accept:");
    if (h) {
        h += 23;
        while (*h == ' ' || *h == '\t')
            h++;
    }
    if (!h || strncmp(h, S_WS_ACCEPT, strlen(S_WS_ACCEPT)) != 0) {
        s_gone(c, true, "the handshake's Sec-WebSocket-Accept is missing or wrong");
        return -1;
    }
    return 1;
}

/*  Client i's socket is ready (events ev).                                 */
static void
s_raw_ready(unsigned i, uint32_t ev)
{
    static uint8_t buf[S_RAW_READ_BYTES];
    s_client *c = &s_run.c[i];
    if (c->fd < 0)
        return;
    if (c->state == C_CONNECTING && !c->msg) {
        /* Connected (or not): send the handshake, then read. */
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
            err = errno;
        if (err == 0 && !(ev & (EPOLLERR | EPOLLHUP)) && !(ev & EPOLLOUT))
            return;
        if (err == 0 && (ev & (EPOLLERR | EPOLLHUP)))
            err = ECONNRESET;
        if (err) {
            s_gone(c, true, strerror(err));
            return;
        }
        ssize_t w = send(c->fd, s_run.request, s_run.request_len, MSG_NOSIGNAL);
        if (w != (ssize_t) s_run.request_len) {
            s_gone(c, true, w < 0 ? strerror(errno) : "the handshake went out short");
            return;
        }
        c->msg = malloc(S_RAW_HTTP_MAX);
        c->msg_cap = S_RAW_HTTP_MAX;
        c->msg_len = 0;
        struct epoll_event e = { .events = EPOLLIN, .data.u32 = i };
        if (!c->msg || epoll_ctl(s_run.epfd, EPOLL_CTL_MOD, c->fd, &e) != 0)
            s_gone(c, true, c->msg ? strerror(errno) : "out of memory");
        return;
    }
    ssize_t n;
    if (!c->upgraded)
        n = recv(c->fd, c->msg + c->msg_len, c->msg_cap - 1 - c->msg_len, 0);
    else
        n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        s_gone(c, !c->upgraded || n < 0, n < 0 ? strerror(errno) : "closed before the 101");
        return;
    }
    uint64_t at = s_now_ns();           /* this read's bytes are here now */
    if (c->upgraded) {
        (void) s_raw_frames(c, buf, (size_t) n, at);
        return;
    }
    c->msg_len += (size_t) n;
    c->msg[c->msg_len] = '\0';
    size_t body_at = 0;
    int r = s_raw_answer(c, &body_at);
    if (r <= 0)
        return;
    c->upgraded = true;
    c->state = C_OPEN;
    c->fh_len = 0;
    c->fh_need = 2;
    /* Frames that came with the answer. */
    memcpy(buf, c->msg + body_at, c->msg_len - body_at);
    size_t rest = c->msg_len - body_at;
    free(c->msg);
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
    if (rest)
        (void) s_raw_frames(c, buf, rest, at);
}

/*  The server's address, the clients' source addresses and the handshake
    request: 0, or -1 with a message.                                       */
static int
s_raw_setup(void)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = s_run.sources > 1 ? AF_INET : AF_UNSPEC;
    char port[16];
    snprintf(port, sizeof port, "%d", s_run.port);
    int g = getaddrinfo(s_run.host, port, &hints, &ai);
    if (g != 0 || !ai) {
        fprintf(stderr, "wsprobe: cannot resolve %s: %s\n", s_run.host, gai_strerror(g));
        return -1;
    }
    /* IPv4 first ("localhost" may list ::1 first; the node listens on
       127.0.0.1 in the tests and benchmarks). */
    const struct addrinfo *use = ai;
    for (const struct addrinfo *a = ai; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            use = a;
            break;
        }
    memcpy(&s_run.addr, use->ai_addr, use->ai_addrlen);
    s_run.addr_len = use->ai_addrlen;
    freeaddrinfo(ai);
    s_run.src = calloc(s_run.sources, sizeof *s_run.src);
    if (!s_run.src) {
        fprintf(stderr, "wsprobe: out of memory\n");
        return -1;
    }
    for (unsigned i = 0; i < s_run.sources; i++) {
        s_run.src[i].sin_family = AF_INET;
        s_run.src[i].sin_port = 0;
        inet_pton(AF_INET, s_run.iface[i], &s_run.src[i].sin_addr);
    }
    int n = snprintf(s_run.request, sizeof s_run.request,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nOrigin: http://%s:%d\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: " S_WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     s_run.path, s_run.host, s_run.port, s_run.host, s_run.port);
    if (n < 0 || (size_t) n >= sizeof s_run.request) {
        fprintf(stderr, "wsprobe: the URL is too long\n");
        return -1;
    }
    s_run.request_len = (size_t) n;
    s_run.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s_run.epfd < 0) {
        fprintf(stderr, "wsprobe: epoll_create1: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int
s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

/*  The q-quantile (0 < q <= 1) of sorted v[0..n), nearest rank.            */
static double
s_quantile(const double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t k = (size_t) (q * (double) n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

/*  CPU time of this process, in ms.                                        */
static double
s_self_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

/*  CPU time (user + system) of process `pid` in ms, or 0 if unreadable.    */
static double
s_pid_cpu_ms(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = pid > 0 ? fopen(path, "r") : NULL;
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');      /* the name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double) (ut + st) * 1e3 / (double) sysconf(_SC_CLK_TCK);
}

/*  CPU time of the --cpu-pid processes together, in ms.                    */
static double
s_cpu_pids_ms(void)
{
    double t = 0;
    for (unsigned i = 0; i < s_run.ncpu_pids; i++)
        t += s_pid_cpu_ms(s_run.cpu_pids[i]);
    return t;
}

/*  Start round s_run.round: clear the clients' receipts, run the trigger.      */
static void
s_round_start(void)
{
    for (unsigned i = 0; i < s_run.clients; i++)
        s_run.c[i].delta_ns = 0;
    s_run.received = 0;
    s_run.child_ns = 0;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    char *argv[] = { "sh", "-c", (char *) s_run.trigger, NULL };
    s_run.phase = P_ROUND;
    s_run.round_cpu0_ms = s_self_cpu_ms();
    s_run.pid_cpu0_ms = s_pid_cpu_ms(s_run.pid);
    s_run.cpu_pids0_ms = s_cpu_pids_ms();
    s_run.t0_ns = s_now_ns();
    int err = posix_spawn(&s_run.child, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err) {
        s_run.child = 0;
        s_finish(1, "cannot run the trigger: %s", strerror(err));
    }
}

/*  Round s_run.round is complete: keep its samples.                            */
static void
s_round_end(void)
{
    double last = -1e12;
    uint64_t ref_ns = s_run.t0_ns;
    if (s_run.ref_file) {
        FILE *f = fopen(s_run.ref_file, "r");
        unsigned long long v = 0;
        if (!f || fscanf(f, "%llu", &v) != 1 || v == 0) {
            if (f)
                fclose(f);
            s_finish(1, "round %u: no time in %s", s_run.round + 1, s_run.ref_file);
            return;
        }
        fclose(f);
        ref_ns = (uint64_t) v;
    }
    for (unsigned i = 0; i < s_run.clients; i++) {
        double ms = ((double) s_run.c[i].delta_ns - (double) ref_ns) / 1e6;
        s_run.lat_ms[s_run.lat_n++] = ms;
        if (ms > last)
            last = ms;
    }
    s_run.all_ms[s_run.round] = last;
    s_run.rounds_wall_ms += (double) (s_now_ns() - s_run.t0_ns) / 1e6;
    s_run.rounds_cpu_ms += s_self_cpu_ms() - s_run.round_cpu0_ms;
    s_run.pid_rounds_cpu_ms += s_pid_cpu_ms(s_run.pid) - s_run.pid_cpu0_ms;
    s_run.cpu_pids_rounds_ms += s_cpu_pids_ms() - s_run.cpu_pids0_ms;
    s_run.cmd_ms[s_run.round] = (double) (s_run.child_ns - s_run.t0_ns) / 1e6;
    s_run.round++;
    s_run.phase = P_GAP;
    s_run.gap_until_ns = s_now_ns() + (uint64_t) s_run.gap_ms * 1000000ull;
}

/*  Every S_TICK_US: pacing, deadlines, rounds.                             */
static void
s_step(void)
{
    uint64_t now = s_now_ns();
    if (s_run.done)
        return;
    if (!s_run.fanout) {
        if (now >= s_run.deadline_ns) {
            if (s_run.expect_close)
                s_finish(1, "the server did not close within %u ms (%u messages)",
                         s_run.timeout_ms, s_run.received);
            else
                s_finish(1, "timeout after %u ms: %u of %u messages", s_run.timeout_ms,
                         s_run.received, s_run.count);
        }
        return;
    }
    if (s_run.phase == P_CONNECT) {
        while (s_run.launched < s_run.clients && s_run.connecting < s_run.batch && !s_run.done) {
            if (s_run.raw)
                s_raw_launch(s_run.launched);
            else
                s_launch(s_run.launched);
        }
        if (s_run.ready == s_run.clients) {
            s_round_start();
        } else if (now >= s_run.deadline_ns) {
            s_finish(1, "connect timeout: %u of %u clients had their snapshot after %u ms",
                     s_run.ready, s_run.clients, s_run.connect_ms);
        }
        return;
    }
    if (s_run.phase == P_ROUND) {
        if (s_run.child && !s_run.child_ns) {
            int status;
            pid_t r = waitpid(s_run.child, &status, WNOHANG);
            if (r == s_run.child) {
                s_run.child_ns = s_now_ns();
                s_run.child = 0;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    s_finish(1, "the trigger failed (status %d) in round %u",
                             WIFEXITED(status) ? WEXITSTATUS(status) : -1, s_run.round + 1);
                    return;
                }
            }
        }
        if (s_run.received == s_run.clients && s_run.child_ns)
            s_round_end();
        else if (now - s_run.t0_ns >= (uint64_t) s_run.timeout_ms * 1000000ull)
            s_finish(1, "round %u: %u of %u clients had the delta after %u ms%s",
                     s_run.round + 1, s_run.received, s_run.clients, s_run.timeout_ms,
                     s_run.child_ns ? "" : " (the trigger is still running)");
        return;
    }
    if (s_run.phase == P_GAP && now >= s_run.gap_until_ns) {
        if (s_run.round == s_run.rounds)
            s_finish(0, NULL);
        else
            s_round_start();
    }
}

/*  The lws loop's periodic timer.                                          */
static void
s_tick(lws_sorted_usec_list_t *sul)
{
    (void) sul;
    s_step();
    if (!s_run.done)
        lws_sul_schedule(s_run.ctx, 0, &s_run.tick, s_tick, S_TICK_US);
}

/*  The fan-out's own loop, to the end of the run (bounded: the step ends
    it at its deadlines).                                                   */
static void
s_raw_loop(void)
{
    static struct epoll_event ev[S_RAW_EVENTS];
    uint64_t next = s_now_ns();
    while (!s_run.done) {
        uint64_t now = s_now_ns();
        if (now >= next) {
            s_step();
            next = now + S_TICK_US * 1000ull;
            continue;
        }
        int wait_ms = (int) ((next - now + 999999) / 1000000);
        int n = epoll_wait(s_run.epfd, ev, S_RAW_EVENTS, wait_ms);
        if (n < 0 && errno != EINTR) {
            s_finish(1, "epoll_wait: %s", strerror(errno));
            break;
        }
        for (int k = 0; k < n && !s_run.done; k++)
            s_raw_ready(ev[k].data.u32, ev[k].events);
    }
}

static void
s_report(void)
{
    long rss = s_run.pid > 0 ? s_rss_kb(s_run.pid) : -1;
    qsort(s_run.lat_ms, s_run.lat_n, sizeof *s_run.lat_ms, s_cmp_double);
    double all[S_ROUNDS_MAX], cmd[S_ROUNDS_MAX];
    memcpy(all, s_run.all_ms, s_run.rounds * sizeof *all);
    memcpy(cmd, s_run.cmd_ms, s_run.rounds * sizeof *cmd);
    qsort(all, s_run.rounds, sizeof *all, s_cmp_double);
    qsort(cmd, s_run.rounds, sizeof *cmd, s_cmp_double);
    double p50 = s_quantile(s_run.lat_ms, s_run.lat_n, 0.50);
    double p99 = s_quantile(s_run.lat_ms, s_run.lat_n, 0.99);
    double max = s_run.lat_n ? s_run.lat_ms[s_run.lat_n - 1] : 0;
    double all50 = s_quantile(all, s_run.rounds, 0.50), allmax = all[s_run.rounds - 1];
    printf("fan-out: %u clients, %u rounds, trigger: %s\n", s_run.clients, s_run.rounds, s_run.trigger);
    printf("  trigger -> delta, per client     p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  (%zu samples)\n",
           p50, p99, max, s_run.lat_n);
    printf("  trigger -> last client has it    p50 %8.2f ms  max %8.2f ms\n", all50, allmax);
    printf("  the trigger command itself       p50 %8.2f ms  max %8.2f ms\n",
           s_quantile(cmd, s_run.rounds, 0.50), cmd[s_run.rounds - 1]);
    printf("  CPU during the rounds (%.0f ms)  this process %.0f ms", s_run.rounds_wall_ms,
           s_run.rounds_cpu_ms);
    if (s_run.pid > 0)
        printf(", pid %ld %.0f ms", s_run.pid, s_run.pid_rounds_cpu_ms);
    if (s_run.ncpu_pids)
        printf(", the %u --cpu-pid processes %.0f ms", s_run.ncpu_pids, s_run.cpu_pids_rounds_ms);
    printf("\n");
    if (s_run.pid > 0)
        printf("  VmRSS of pid %ld                 %ld kB before connecting, %ld kB with %u clients\n",
               s_run.pid, s_run.rss_before_kb, rss, s_run.clients);
    printf("wsprobe: clients=%u rounds=%u p50_ms=%.2f p99_ms=%.2f max_ms=%.2f "
           "all_p50_ms=%.2f all_max_ms=%.2f cmd_p50_ms=%.2f rss_before_kb=%ld rss_kb=%ld "
           "rounds_ms=%.0f self_cpu_ms=%.0f pid_cpu_ms=%.0f cpu_pids_ms=%.0f\n",
           s_run.clients, s_run.rounds, p50, p99, max, all50, allmax,
           s_quantile(cmd, s_run.rounds, 0.50), s_run.rss_before_kb, rss,
           s_run.rounds_wall_ms, s_run.rounds_cpu_ms, s_run.pid_rounds_cpu_ms,
           s_run.cpu_pids_rounds_ms);
    fflush(stdout);
}

static void
s_usage(FILE *to)
{
    fprintf(to,
        "usage: wsprobe URL [--count N] [--timeout-ms T] [--send TEXT] [--send-bytes B]\n"
        "                   [--expect-close]\n"
        "       wsprobe URL --fanout --clients N --trigger CMD [--rounds K] [--batch B]\n"
        "                   [--sources S] [--pid PID] [--timeout-ms T] [--gap-ms G]\n"
        "                   [--until TEXT] [--ref-file PATH] [--cpu-pid PID]... [--lws]\n"
        "URL is ws://HOST:PORT/PATH.  See the comment atop tests/tools/wsprobe.c.\n");
}

/*  An unsigned option value in [lo, hi], or exit 2.                        */
static unsigned long
s_num(const char *opt, const char *text, unsigned long lo, unsigned long hi)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "wsprobe: %s wants a number from %lu to %lu, not '%s'\n",
                opt, lo, hi, text);
        exit(2);
    }
    return v;
}

/*  Raise the open-file limit so `want` descriptors fit.                    */
static int
s_raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur >= want)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        fprintf(stderr, "wsprobe: %lu open files needed, the hard limit is %lu "
                "(raise it: ulimit -Hn, or run as root)\n",
                (unsigned long) want, (unsigned long) rl.rlim_max);
        rl.rlim_max = want;     /* root may raise the hard limit */
    }
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

int
main(int argc, char **argv)
{
    enum { O_COUNT = 256, O_TIMEOUT, O_SEND, O_SEND_BYTES, O_EXPECT_CLOSE, O_FANOUT,
           O_CLIENTS, O_ROUNDS, O_BATCH, O_SOURCES, O_PID, O_TRIGGER, O_GAP, O_VERBOSE, O_POLL,
           O_UNTIL, O_REF_FILE, O_CPU_PID, O_LWS };
    static const struct option opts[] = {
        { "count", required_argument, NULL, O_COUNT },
        { "timeout-ms", required_argument, NULL, O_TIMEOUT },
        { "send", required_argument, NULL, O_SEND },
        { "send-bytes", required_argument, NULL, O_SEND_BYTES },
        { "expect-close", no_argument, NULL, O_EXPECT_CLOSE },
        { "fanout", no_argument, NULL, O_FANOUT },
        { "clients", required_argument, NULL, O_CLIENTS },
        { "rounds", required_argument, NULL, O_ROUNDS },
        { "batch", required_argument, NULL, O_BATCH },
        { "sources", required_argument, NULL, O_SOURCES },
        { "pid", required_argument, NULL, O_PID },
        { "trigger", required_argument, NULL, O_TRIGGER },
        { "gap-ms", required_argument, NULL, O_GAP },
        { "verbose", no_argument, NULL, O_VERBOSE },
        { "poll", no_argument, NULL, O_POLL },
        { "until", required_argument, NULL, O_UNTIL },
        { "ref-file", required_argument, NULL, O_REF_FILE },
        { "cpu-pid", required_argument, NULL, O_CPU_PID },
        { "lws", no_argument, NULL, O_LWS },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int rc = 1, verbose = 0, use_poll = 0, use_lws = 0;
    struct ev_loop *loop = NULL;
    s_run.count = 1;
    s_run.timeout_ms = 10000;
    s_run.clients = 1;
    s_run.rounds = 20;
    s_run.batch = 200;
    s_run.sources = 1;
    s_run.gap_ms = 100;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_COUNT: s_run.count = (unsigned) s_num("--count", optarg, 1, 1000000); break;
        case O_TIMEOUT:
            s_run.timeout_ms = (unsigned) s_num("--timeout-ms", optarg, 1, 3600000);
            s_run.timeout_set = true;
            break;
        case O_SEND: s_run.send_text = optarg; break;
        case O_SEND_BYTES: s_run.send_bytes = s_num("--send-bytes", optarg, 1, S_SEND_BYTES_MAX); break;
        case O_EXPECT_CLOSE: s_run.expect_close = true; break;
        case O_FANOUT: s_run.fanout = true; break;
        case O_CLIENTS: s_run.clients = (unsigned) s_num("--clients", optarg, 1, S_CLIENTS_MAX); break;
        case O_ROUNDS: s_run.rounds = (unsigned) s_num("--rounds", optarg, 1, S_ROUNDS_MAX); break;
        case O_BATCH: s_run.batch = (unsigned) s_num("--batch", optarg, 1, S_CLIENTS_MAX); break;
        case O_SOURCES: s_run.sources = (unsigned) s_num("--sources", optarg, 1, 254); break;
        case O_PID: s_run.pid = (long) s_num("--pid", optarg, 1, INT_MAX); break;
        case O_TRIGGER: s_run.trigger = optarg; break;
        case O_GAP: s_run.gap_ms = (unsigned) s_num("--gap-ms", optarg, 0, 60000); break;
        case O_VERBOSE: verbose = 1; break;
        case O_POLL: use_poll = 1; break;
        case O_UNTIL: s_run.until = optarg; break;
        case O_REF_FILE: s_run.ref_file = optarg; break;
        case O_CPU_PID:
            if (s_run.ncpu_pids == S_CPU_PIDS_MAX) {
                fprintf(stderr, "wsprobe: at most %u --cpu-pid\n", S_CPU_PIDS_MAX);
                return 2;
            }
            s_run.cpu_pids[s_run.ncpu_pids++] = (long) s_num("--cpu-pid", optarg, 1, INT_MAX);
            break;
        case O_LWS: use_lws = 1; break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || s_parse_url(argv[optind]) != 0) {
        if (optind == argc - 1)
            fprintf(stderr, "wsprobe: '%s' is not a ws://HOST:PORT/PATH URL\n", argv[optind]);
        s_usage(stderr);
        return 2;
    }
    if (s_run.fanout && !s_run.trigger) {
        fprintf(stderr, "wsprobe: --fanout needs --trigger CMD\n");
        return 2;
    }
    if (!s_run.fanout)
        s_run.clients = 1;
    if (s_run.send_text && s_run.send_bytes) {
        fprintf(stderr, "wsprobe: give --send or --send-bytes, not both\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    lws_set_log_level(verbose ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR, NULL);

    if (s_raise_nofile((rlim_t) s_run.clients + 256) != 0) {
        fprintf(stderr, "wsprobe: cannot raise the open-file limit to %u: %s\n",
                s_run.clients + 256, strerror(errno));
        return 1;
    }
    s_run.c = calloc(s_run.clients, sizeof *s_run.c);
    s_run.iface = calloc(s_run.sources, sizeof *s_run.iface);
    if (s_run.fanout) {
        s_run.lat_ms = calloc((size_t) s_run.clients * s_run.rounds, sizeof *s_run.lat_ms);
        s_run.all_ms = calloc(s_run.rounds, sizeof *s_run.all_ms);
        s_run.cmd_ms = calloc(s_run.rounds, sizeof *s_run.cmd_ms);
    }
    if (!s_run.c || !s_run.iface || (s_run.fanout && (!s_run.lat_ms || !s_run.all_ms || !s_run.cmd_ms))) {
        fprintf(stderr, "wsprobe: out of memory\n");
        goto fail;
    }
    for (unsigned i = 0; i < s_run.sources; i++)
        snprintf(s_run.iface[i], sizeof s_run.iface[i], "127.0.0.%u", 1 + i);
    for (unsigned i = 0; i < s_run.clients; i++)
        s_run.c[i].fd = -1;
    s_run.epfd = -1;
    s_run.raw = s_run.fanout && !use_lws && !use_poll;
    if (s_run.raw) {
        if (s_raw_setup() != 0)
            goto fail;
        if (s_run.pid > 0)
            s_run.rss_before_kb = s_rss_kb(s_run.pid);
        s_run.start_ns = s_now_ns();
        s_run.connect_ms = s_run.timeout_set ? s_run.timeout_ms * 6 : 60000;
        s_run.deadline_ns = s_run.start_ns + (uint64_t) s_run.connect_ms * 1000000ull;
        s_run.phase = P_CONNECT;
        s_raw_loop();
        goto ran;
    }

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = s_protocols;
    info.fd_limit_per_thread = s_run.clients + 128;
    info.timeout_secs = 20;
    info.connect_timeout_secs = 20;
    void *foreign[1];
    if (!use_poll) {
        /* libev on epoll: a poll() over thousands of sockets for each few
           that are ready would make this probe, not the server, the
           bottleneck of the fan-out figure. */
        loop = ev_loop_new(EVBACKEND_EPOLL);
        if (!loop) {
            fprintf(stderr, "wsprobe: cannot create an epoll event loop\n");
            goto fail;
        }
        foreign[0] = loop;
        info.foreign_loops = foreign;
        info.options |= LWS_SERVER_OPTION_LIBEV;
    }
    s_run.ctx = lws_create_context(&info);
    if (!s_run.ctx) {
        fprintf(stderr, "wsprobe: cannot create the libwebsockets context\n");
        goto fail;
    }
    if (s_run.pid > 0)
        s_run.rss_before_kb = s_rss_kb(s_run.pid);
    s_run.start_ns = s_now_ns();
    /* Connecting many clients gets six round timeouts (60 s by default). */
    s_run.connect_ms = s_run.fanout ? (s_run.timeout_set ? s_run.timeout_ms * 6 : 60000) : s_run.timeout_ms;
    s_run.deadline_ns = s_run.start_ns + (uint64_t) s_run.connect_ms * 1000000ull;
    s_run.phase = P_CONNECT;
    if (!s_run.fanout)
        s_launch(0);
    lws_sul_schedule(s_run.ctx, 0, &s_run.tick, s_tick, S_TICK_US);
    /* Bounded: the tick ends the run at its deadline. */
    if (loop)
        while (!s_run.done)
            ev_run(loop, EVRUN_ONCE);
    else
        while (!s_run.done && lws_service(s_run.ctx, 0) >= 0)
            ;
    if (!s_run.done)
        s_finish(1, "the libwebsockets service loop failed");
ran:
    rc = s_run.rc;
    if (rc == 0 && s_run.fanout)
        s_report();
    if (rc != 0)
        fprintf(stderr, "wsprobe: %s\n", s_run.fail_reason);
fail:
    if (s_run.child > 0) {
        kill(s_run.child, SIGTERM);
        waitpid(s_run.child, NULL, 0);
    }
    if (s_run.ctx) {
        lws_sul_cancel(&s_run.tick);
        lws_context_destroy(s_run.ctx);
    }
    if (loop) {
        /* Let lws's watchers wind down, boundedly, then free the loop. */
        for (int i = 0; i < 16; i++)
            ev_run(loop, EVRUN_NOWAIT);
        ev_loop_destroy(loop);
    }
    for (unsigned i = 0; s_run.c && i < s_run.clients; i++) {
        free(s_run.c[i].msg);
        if (s_run.c[i].fd >= 0)
            close(s_run.c[i].fd);
    }
    if (s_run.epfd >= 0)
        close(s_run.epfd);
    free(s_run.src);
    free(s_run.c);
    free(s_run.iface);
    free(s_run.lat_ms);
    free(s_run.all_ms);
    free(s_run.cmd_ms);
    return rc;
}
