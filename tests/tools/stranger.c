/*  stranger: mesh connections from nodes that are not market members, for
    tests/integration/test_zap_log.sh.

        stranger --endpoint tcp://127.0.0.1:P --node NODE_ID [--count N]
                 [--seconds S]

    opens N (default 300) ZeroMQ DEALER sockets, each with a CURVE key pair
    of its own (a stranger), to the node whose id (its Ed25519 public key,
    hex) is NODE_ID: its CurveZMQ server key is that key converted with
    crypto_sign_ed25519_pk_to_curve25519, as the node's own.  The node's ZAP
    handler refuses every one, and ZeroMQ tries again every 100 ms, for S
    seconds (default 12).  Prints "stranger: N sockets for S s" and exits 0;
    1 on a failure; 2 on usage errors.                                       */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#define S_COUNT_MAX 2000

int
main(int argc, char **argv)
{
    const char *endpoint = NULL, *node = NULL;
    int count = 300, seconds = 12;
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"node", required_argument, NULL, 'n'},
        {"count", required_argument, NULL, 'c'}, {"seconds", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'e')
            endpoint = optarg;
        else if (c == 'n')
            node = optarg;
        else if (c == 'c')
            count = atoi(optarg);
        else if (c == 's')
            seconds = atoi(optarg);
        else
            return 2;
    }
    unsigned char ed_pk[32], server[32];
    size_t bin_len = 0;
    if (!endpoint || !node || count < 1 || count > S_COUNT_MAX || seconds < 1 || seconds > 120
        || sodium_init() < 0
        || sodium_hex2bin(ed_pk, sizeof ed_pk, node, strlen(node), NULL, &bin_len, NULL) != 0
        || bin_len != 32 || crypto_sign_ed25519_pk_to_curve25519(server, ed_pk) != 0) {
        fprintf(stderr, "usage: stranger --endpoint tcp://HOST:PORT --node NODE_ID "
                        "[--count N] [--seconds S]\n");
        return 2;
    }
    void *ctx = zmq_ctx_new();
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, count + 16);
    void **socks = calloc((size_t) count, sizeof *socks);
    if (!ctx || !socks)
        return 1;
    for (int i = 0; i < count; i++) {
        unsigned char pk[32], sk[32];
        crypto_box_keypair(pk, sk);
        void *s = zmq_socket(ctx, ZMQ_DEALER);
        int zero = 0;
        if (!s || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) != 0
            || zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server, 32) != 0
            || zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pk, 32) != 0
            || zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sk, 32) != 0
            || zmq_connect(s, endpoint) != 0) {
            fprintf(stderr, "stranger: socket %d: %s\n", i, zmq_strerror(zmq_errno()));
            return 1;
        }
        socks[i] = s;
    }
    sleep((unsigned) seconds);
    for (int i = 0; i < count; i++)
        zmq_close(socks[i]);
    free(socks);
    zmq_ctx_term(ctx);
    printf("stranger: %d sockets for %d s\n", count, seconds);
    return 0;
}
