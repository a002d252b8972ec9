/*  wsbad: a websocket client that breaks the protocol on purpose, for
    tests/integration/test_wsguard.sh.

        wsbad --port P --case CASE [--timeout-ms T]

    connects to 127.0.0.1:P, does the opening handshake for /ws by hand
    (101 expected), reads the server's first message (the snapshot), then
    sends, per CASE:

        unmasked   a text frame "hello" without the mask bit
        utf8       a masked text frame that is not UTF-8 (C3 28)
        huge       a masked frame header claiming 2^63 - 1 bytes, then 10
        long       a masked text frame of 5,000 bytes (over 4,096)
        good       a masked text frame "hello" (the server must keep it open)

    and waits up to T ms (default 2000) for the server to close the
    connection, reading (and discarding) what it sends meanwhile and
    answering its close frame, if it sends one, as a browser would.  It prints
    "wsbad: CASE: closed after N ms (status S)" or "wsbad: CASE: still open
    after N ms".  Exit 0 when the outcome is the expected one (closed for
    every case but good, still open for good), 1 otherwise, 2 for usage or
    connection errors.  Loopback only; every wait is bounded.                */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/*  Read into buf[*have..cap) within deadline; 1 read, 0 closed, -1 timeout
    or error (-2 for a reset).                                               */
static int
s_read(int fd, uint8_t *buf, size_t cap, size_t *have, uint64_t deadline)
{
    uint64_t now = s_now_ms();
    if (now >= deadline)
        return -1;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, (int) (deadline - now)) <= 0)
        return -1;
    ssize_t n = recv(fd, buf + *have, cap - *have, 0);
    if (n == 0)
        return 0;
    if (n < 0)
        return errno == ECONNRESET ? -2 : -1;
    *have += (size_t) n;
    return 1;
}

/*  A masked client frame for opcode and payload into out; its length.    */
static size_t
s_frame(uint8_t *out, uint8_t opcode, const uint8_t *payload, size_t len, bool masked)
{
    static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
    size_t n = 0;
    out[n++] = 0x80 | opcode;
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (uint8_t) (m | len);
    } else {
        out[n++] = m | 126;
        out[n++] = (uint8_t) (len >> 8);
        out[n++] = (uint8_t) len;
    }
    if (masked) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    for (size_t i = 0; i < len; i++)
        out[n + i] = masked ? payload[i] ^ key[i & 3] : payload[i];
    return n + len;
}

int
main(int argc, char **argv)
{
    int port = 0;
    unsigned timeout_ms = 2000;
    const char *which = NULL;
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'}, {"case", required_argument, NULL, 'c'},
        {"timeout-ms", required_argument, NULL, 't'}, {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'p')
            port = atoi(optarg);
        else if (c == 'c')
            which = optarg;
        else if (c == 't')
            timeout_ms = (unsigned) atoi(optarg);
        else
            return 2;
    }
    if (port <= 0 || !which || !timeout_ms) {
        fprintf(stderr, "usage: wsbad --port P --case unmasked|utf8|huge|long|good "
                        "[--timeout-ms T]\n");
        return 2;
    }
    static uint8_t frame[8192];
    size_t flen = 0;
    bool expect_close = true;
    if (strcmp(which, "unmasked") == 0) {
        flen = s_frame(frame, 1, (const uint8_t *) "hello", 5, false);
    } else if (strcmp(which, "utf8") == 0) {
        flen = s_frame(frame, 1, (const uint8_t *) "ok \xc3\x28", 5, true);
    } else if (strcmp(which, "huge") == 0) {
        frame[flen++] = 0x81;
        frame[flen++] = 0x80 | 127;
        uint64_t len = (1ull << 63) - 1;
        for (int i = 7; i >= 0; i--)
            frame[flen++] = (uint8_t) (len >> (8 * i));
        memcpy(frame + flen, "\x01\x02\x03\x04", 4);
        flen += 4;
        memset(frame + flen, 'x', 10);
        flen += 10;
    } else if (strcmp(which, "long") == 0) {
        static uint8_t text[5000];
        memset(text, 'a', sizeof text);
        flen = s_frame(frame, 1, text, sizeof text, true);
    } else if (strcmp(which, "good") == 0) {
        flen = s_frame(frame, 1, (const uint8_t *) "hello", 5, true);
        expect_close = false;
    } else {
        fprintf(stderr, "wsbad: unknown case %s\n", which);
        return 2;
    }

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *) &to, sizeof to) != 0) {
        fprintf(stderr, "wsbad: cannot connect to port %d\n", port);
        return 2;
    }
    static const char hs[] = "GET /ws HTTP/1.1\r\nHost: stall\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n";
    if (send(fd, hs, sizeof hs - 1, MSG_NOSIGNAL) != (ssize_t) sizeof hs - 1)
        return 2;
    static uint8_t buf[1 << 20];
    size_t have = 0;
    uint64_t deadline = s_now_ms() + 5000;
    uint8_t *end = NULL;
    while (!(end = memmem(buf, have, "\r\n\r\n", 4)))
        if (s_read(fd, buf, sizeof buf, &have, deadline) != 1) {
            fprintf(stderr, "wsbad: no handshake answer\n");
            return 2;
        }
    if (strncmp((char *) buf, "HTTP/1.1 101", 12) != 0) {
        fprintf(stderr, "wsbad: the handshake was not accepted: %.40s\n", buf);
        return 2;
    }
    /* The first message: the snapshot (a text frame from the server). */
    size_t off = (size_t) (end - buf) + 4;
    for (;;) {
        size_t avail = have - off;
        if (avail >= 2) {
            uint64_t len = buf[off + 1] & 0x7f;
            size_t hl = 2;
            if (len == 126 && avail >= 4) {
                len = (uint64_t) buf[off + 2] << 8 | buf[off + 3];
                hl = 4;
            } else if (len == 127 && avail >= 10) {
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = len << 8 | buf[off + 2 + i];
                hl = 10;
            }
            if ((len < 126 || hl > 2) && avail >= hl + len)
                break;
        }
        if (s_read(fd, buf, sizeof buf, &have, deadline) != 1) {
            fprintf(stderr, "wsbad: no snapshot\n");
            return 2;
        }
    }

    uint64_t sent = s_now_ms();
    if (send(fd, frame, flen, MSG_NOSIGNAL) != (ssize_t) flen) {
        fprintf(stderr, "wsbad: send failed: %s\n", strerror(errno));
        return 2;
    }
    deadline = sent + timeout_ms;
    int status = -1;
    int r;
    have = 0;
    while ((r = s_read(fd, buf, sizeof buf, &have, deadline)) == 1) {
        /* A close frame from the server: note its status and answer it, as
           a browser would; the server then closes the TCP connection. */
        if (have >= 4 && (buf[0] & 0x0f) == 8 && status < 0) {
            status = buf[2] << 8 | buf[3];
            uint8_t ack[16];
            size_t alen = s_frame(ack, 8, buf + 2, 2, true);
            send(fd, ack, alen, MSG_NOSIGNAL);
        }
        have = 0;
    }
    uint64_t took = s_now_ms() - sent;
    close(fd);
    bool closed = r == 0 || r == -2;
    if (closed)
        printf("wsbad: %s: closed after %llu ms (status %d)\n", which,
               (unsigned long long) took, status);
    else
        printf("wsbad: %s: still open after %llu ms\n", which, (unsigned long long) took);
    return closed == expect_close ? 0 : 1;
}
