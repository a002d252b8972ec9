/*  zmqping: the round trip of a raw ZeroMQ message over loopback TCP with
    CURVE, as the mesh uses it: the floor under the mesh's latency figures
    (tests/bench/bench_mesh.sh prints it beside them).

        zmqping [--count N] [--bytes B] [--port P]

    A ROUTER (CURVE server, as a node's listener) on 127.0.0.1:P (default: a
    port the system picks) echoes every message on a thread of its own; a
    DEALER (CURVE client) sends a B-byte message (default 320: one sale's
    ENTRIES message) and waits for it to come back, N times (default 2000)
    after 100 unmeasured ones.  No ZAP handler: the handshake is CURVE's
    alone, and it happens before the first measured message anyway.  Prints

        zmqping: count=N bytes=B p50_us=A p99_us=B max_us=C

    and exits 0; 1 on a failure (the message says which call), 2 on usage
    errors.  Every wait is bounded (5 s a message).                          */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#define S_WARMUP    100
#define S_COUNT_MAX 1000000L
#define S_BYTES_MAX 65536L
#define S_WAIT_MS   5000

typedef struct {
    void *router;
} s_echo;

static uint64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static int
s_cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *) x, b = *(const uint64_t *) y;
    return a < b ? -1 : a > b;
}

static int
s_fail(const char *what)
{
    fprintf(stderr, "zmqping: %s: %s\n", what, zmq_strerror(errno));
    return 1;
}

/*  Echo [routing id][body] back until the context is shut down (ETERM);
    then close the ROUTER, which this thread owns from its start.            */
static void *
s_echo_run(void *arg)
{
    s_echo *e = arg;
    for (;;) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        zmq_msg_init(&body);
        bool ok = zmq_msg_recv(&rid, e->router, 0) >= 0 && zmq_msg_recv(&body, e->router, 0) >= 0
                  && zmq_msg_send(&rid, e->router, ZMQ_SNDMORE) >= 0
                  && zmq_msg_send(&body, e->router, 0) >= 0;
        zmq_msg_close(&rid);
        zmq_msg_close(&body);
        if (!ok)
            break;
    }
    zmq_close(e->router);
    return NULL;
}

static int
s_usage(void)
{
    fprintf(stderr, "usage: zmqping [--count N] [--bytes B] [--port P]\n");
    return 2;
}

int
main(int argc, char **argv)
{
    long count = 2000, bytes = 320, port = 0;
    for (int i = 1; i < argc; i++) {
        long *dst = strcmp(argv[i], "--count") == 0 ? &count
                  : strcmp(argv[i], "--bytes") == 0 ? &bytes
                  : strcmp(argv[i], "--port") == 0 ? &port : NULL;
        if (!dst || i + 1 == argc)
            return s_usage();
        char *end;
        errno = 0;
        *dst = strtol(argv[++i], &end, 10);
        if (errno || *end || *dst < 0)
            return s_usage();
    }
    if (count < 1 || count > S_COUNT_MAX || bytes < 1 || bytes > S_BYTES_MAX || port > 65535)
        return s_usage();

    char server_pub[41], server_sec[41], client_pub[41], client_sec[41];
    if (zmq_curve_keypair(server_pub, server_sec) != 0
        || zmq_curve_keypair(client_pub, client_sec) != 0)
        return s_fail("zmq_curve_keypair (libzmq without CURVE?)");

    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    int one = 1, zero = 0, wait_ms = S_WAIT_MS;
    char endpoint[64] = "tcp://127.0.0.1:*";
    if (port)
        snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%ld", port);
    if (!router || !dealer
        || zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_setsockopt(router, ZMQ_CURVE_SERVER, &one, sizeof one) != 0
        || zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, server_sec, 40) != 0
        || zmq_bind(router, endpoint) != 0)
        return s_fail("the ROUTER");
    size_t len = sizeof endpoint;
    if (zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len) != 0)
        return s_fail("ZMQ_LAST_ENDPOINT");
    if (zmq_setsockopt(dealer, ZMQ_CURVE_SERVERKEY, server_pub, 40) != 0
        || zmq_setsockopt(dealer, ZMQ_CURVE_PUBLICKEY, client_pub, 40) != 0
        || zmq_setsockopt(dealer, ZMQ_CURVE_SECRETKEY, client_sec, 40) != 0
        || zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &wait_ms, sizeof wait_ms) != 0
        || zmq_setsockopt(dealer, ZMQ_SNDTIMEO, &wait_ms, sizeof wait_ms) != 0
        || zmq_connect(dealer, endpoint) != 0)
        return s_fail("the DEALER");

    s_echo echo = { router };
    pthread_t thread;
    if (pthread_create(&thread, NULL, s_echo_run, &echo) != 0) {
        fprintf(stderr, "zmqping: cannot start the echo thread\n");
        return 1;
    }
    char *msg = malloc((size_t) bytes), *back = malloc((size_t) bytes);
    uint64_t *rtt = calloc((size_t) count, sizeof *rtt);
    if (!msg || !back || !rtt) {
        fprintf(stderr, "zmqping: out of memory\n");
        return 1;
    }
    memset(msg, 0xa5, (size_t) bytes);
    int rc = 0;
    for (long i = -S_WARMUP; i < count; i++) {
        uint64_t t0 = s_now_ns();
        if (zmq_send(dealer, msg, (size_t) bytes, 0) != (int) bytes) {
            rc = s_fail("send");
            break;
        }
        int n = zmq_recv(dealer, back, (size_t) bytes, 0);
        if (n != (int) bytes) {
            rc = n < 0 ? s_fail("receive (no echo within 5 s)") : s_fail("a short echo");
            break;
        }
        if (i >= 0)
            rtt[i] = s_now_ns() - t0;
    }
    zmq_close(dealer);
    zmq_ctx_shutdown(ctx);             /* the echo thread's recv fails: it ends */
    pthread_join(thread, NULL);
    zmq_ctx_term(ctx);
    if (rc == 0) {
        qsort(rtt, (size_t) count, sizeof *rtt, s_cmp_u64);
        printf("zmqping: count=%ld bytes=%ld p50_us=%.1f p99_us=%.1f max_us=%.1f\n", count,
               bytes, (double) rtt[(count - 1) / 2] / 1000.0,
               (double) rtt[(count * 99 + 99) / 100 - 1] / 1000.0,
               (double) rtt[count - 1] / 1000.0);
    }
    free(msg);
    free(back);
    free(rtt);
    return rc;
}
