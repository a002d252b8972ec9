/*  Benchmark of the entry hot path: what ingesting one entry from a peer
    costs before LMDB (decode, hash, link, and one signature check a run).

    Each figure is the best of 5 rounds of N calls on the same entry (a sale
    of one line, 140 bytes, as most till sales are), in nanoseconds a call,
    on one thread, with the library built as `make` builds it (-O2).  The
    best round is reported because the others only add scheduler noise.     */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "stallmesh/entry.h"
#include "stallmesh/error.h"
#include "support/fixtures.h"

#define S_ROUNDS 5

static uint64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile int s_sink;

static uint8_t s_bytes[SM_ENTRY_BYTES_MAX];
static size_t s_len;
static uint8_t s_sig[SM_SIG_BYTES];
static sm_id s_origin;
static sm_entry s_entry;

static void op_decode(void) { s_sink += sm_entry_decode(s_bytes, s_len, &s_entry); }
static void op_encode(void)
{
    uint8_t out[SM_ENTRY_BYTES_MAX];
    size_t len;
    s_sink += sm_entry_encode(&s_entry, out, sizeof out, &len);
}
static void op_check(void) { s_sink += sm_entry_check(&s_entry); }
static void op_hash(void) { sm_hash h; sm_entry_hash(s_bytes, s_len, &h); s_sink += h.b[0]; }
static void op_link(void) { sm_hash h; sm_entry_link(s_bytes, s_len, s_sig, &h); s_sink += h.b[0]; }
static void op_verify(void) { s_sink += sm_entry_verify(s_bytes, s_len, s_sig, &s_origin); }
static void op_ingest(void)
{
    /* per entry on ingest: decode + link (the run's one verify is amortised) */
    sm_hash h;
    s_sink += sm_entry_decode(s_bytes, s_len, &s_entry);
    sm_entry_link(s_bytes, s_len, s_sig, &h);
    s_sink += h.b[0];
}

static double
s_measure(void (*op)(void), long n)
{
    double best = 1e30;
    for (int r = 0; r < S_ROUNDS; r++) {
        uint64_t t0 = s_now_ns();
        for (long i = 0; i < n; i++)
            op();
        double ns = (double)(s_now_ns() - t0) / (double)n;
        if (ns < best)
            best = ns;
    }
    return best;
}

int
main(void)
{
    uint8_t seed[32], pk[32], sk[64];

    if (sodium_init() < 0)
        return 1;
    memset(seed, 7, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    fx_entry(SM_KIND_SALE, &s_entry);
    memcpy(s_entry.origin.b, pk, 32);
    memcpy(s_origin.b, pk, 32);
    if (sm_entry_encode(&s_entry, s_bytes, sizeof s_bytes, &s_len) != 0)
        return 1;
    sm_entry_sign(s_bytes, s_len, sk, s_sig);

    printf("bench_entry: sale of 1 line, %zu bytes; best of %d rounds, ns a call\n",
           s_len, S_ROUNDS);
    printf("  sm_entry_decode   %8.0f\n", s_measure(op_decode, 1000000));
    printf("  sm_entry_encode   %8.0f\n", s_measure(op_encode, 1000000));
    printf("  sm_entry_check    %8.0f\n", s_measure(op_check, 1000000));
    printf("  sm_entry_hash     %8.0f\n", s_measure(op_hash, 1000000));
    printf("  sm_entry_link     %8.0f\n", s_measure(op_link, 1000000));
    printf("  sm_entry_verify   %8.0f\n", s_measure(op_verify, 20000));
    double ingest = s_measure(op_ingest, 1000000);
    printf("  decode + link     %8.0f  (%.0f k entries/s on one core, before LMDB)\n",
           ingest, 1e6 / ingest);
    return s_sink == 42 ? 1 : 0;
}
