/*  libFuzzer target for the mesh message decoder (sm_wire_decode, codec.c):
    every byte a peer sends reaches it.

    Properties checked (a violation aborts, which libFuzzer reports):
    - nothing crashes, leaks or trips ASan/UBSan on any input;
    - the decoder returns 0 or a negative SM_E* code, never anything else;
    - an accepted message encodes (sm_wire_encode) to exactly the input
      bytes: one representation a message, and the encoder accepts all the
      decoder does;
    - an accepted message's arrays lie inside the caller's space and its
      entries inside the input (the decoder allocates nothing);
    - a refused HELLO of another version still names its version, and the
      decoder agrees with the scanner: what it accepts, the scanner does.

    Build and run from the repository root, with a scratch directory first
    (libFuzzer adds the inputs it finds to the first directory it is given,
    and those do not belong in the repository):

        make fuzz && mkdir -p build/fuzz-corpus-wire &&
        ./build/fuzz_wire build/fuzz-corpus-wire tests/fuzz/corpus_wire -max_total_time=60

    The seed corpus (tests/fuzz/corpus_wire/) is written by
    ./build/tests/test_wire --generate: every vector of mesh.txt and
    bad_mesh.txt that is at most 16 KB.                                      */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*  True if p[0..n) lies inside base[0..size).                               */
static int
s_inside(const void *p, size_t n, const void *base, size_t size)
{
    const uint8_t *a = p, *b = base;
    return a >= b && n <= size && (size_t)(a - b) <= size - n;
}

static void
s_check_signed(const sm_signed *s, const uint8_t *data, size_t size)
{
    if (s->len == 0 || s->len > SM_ENTRY_BYTES_MAX || !s_inside(s->bytes, s->len, data, size))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sm_wire_space space;
    static uint8_t again[SM_WIRE_BYTES_MAX];
    sm_wire_msg m;
    size_t len = 0;

    if (size > SM_WIRE_BYTES_MAX + 1)
        return 0;
    int rc = sm_wire_decode(data, size, &space, &m);
    if (rc > 0)
        abort();
    if (rc == SM_EVERSION && (m.type != SM_MSG_HELLO || m.u.hello.version == SM_WIRE_VERSION))
        abort();
    if (rc != 0)
        return 0;

    if (sm__msgpack_scan(data, size, SM_MSGPACK_DEPTH_MAX) != 0)
        abort();
    switch (m.type) {
    case SM_MSG_HEADS:
        if (m.u.heads.count > SM_MEMBERS_MAX ||
            (m.u.heads.count > 0 && m.u.heads.heads != space.heads))
            abort();
        break;
    case SM_MSG_ENTRIES:
        if (m.u.entries.count == 0 || m.u.entries.count > SM_WIRE_RUN_MAX ||
            m.u.entries.entries != space.entries)
            abort();
        for (uint32_t i = 0; i < m.u.entries.count; i++)
            s_check_signed(&m.u.entries.entries[i], data, size);
        break;
    case SM_MSG_PEERS:
        if (m.u.peers.count > SM_WIRE_PEERS_MAX ||
            (m.u.peers.count > 0 && m.u.peers.peers != space.peers))
            abort();
        break;
    case SM_MSG_FORK:
        s_check_signed(&m.u.fork.a, data, size);
        s_check_signed(&m.u.fork.b, data, size);
        break;
    default:
        break;
    }
    if (sm_wire_encode(&m, again, sizeof again, &len) != 0 || len != size ||
        memcmp(again, data, size) != 0)
        abort();
    return 0;
}
