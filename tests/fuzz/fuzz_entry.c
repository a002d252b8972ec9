/*  libFuzzer target for everything that decodes bytes from outside in the
    codec: sm_entry_decode, sm__msgpack_scan and sm__token_unpack.

    Properties checked (a violation aborts, which libFuzzer reports):
    - nothing crashes, leaks or trips ASan/UBSan on any input;
    - an accepted entry passes sm_entry_check and re-encodes to exactly the
      input bytes (one representation per entry: what is signed is unique);
    - a decode that gets past the scanner agrees with it: the scanner never
      refuses what the decoder accepts;
    - an accepted token body re-packs to exactly the input bytes.

    Build and run from the repository root, with a scratch directory first
    (libFuzzer adds the inputs it finds to the first directory it is given,
    and those do not belong in the repository):

        make fuzz && mkdir -p build/fuzz-corpus &&
        ./build/fuzz_entry build/fuzz-corpus tests/fuzz/corpus -max_total_time=60

    The seed corpus (tests/fuzz/corpus/) is written by
    ./build/tests/test_vectors --generate: every entry vector, the bad ones
    and a token body.                                                         */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "stallmesh/entry.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "stallmesh/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sm_entry e;
    static sm_token t;
    static uint8_t again[SM_TOKEN_BYTES_MAX + SM_ENTRY_BYTES_MAX];
    uint8_t tsig[SM_SIG_BYTES];
    size_t len = 0;

    int scan = sm__msgpack_scan(data, size, SM_MSGPACK_DEPTH_MAX);
    int rc = sm_entry_decode(data, size, &e);
    if (rc == 0) {
        if (scan != 0 || sm_entry_check(&e) != 0)
            abort();
        if (sm_entry_encode(&e, again, sizeof again, &len) != 0 ||
            len != size || memcmp(again, data, size) != 0)
            abort();
    } else if (rc > 0) {
        abort();
    }

    memset(&t, 0, sizeof t);
    if (sm__token_unpack(data, size, &t, tsig) == 0) {
        if (scan != 0)
            abort();
        if (sm__token_pack(&t, tsig, again, sizeof again, &len) != 0 ||
            len != size || memcmp(again, data, size) != 0)
            abort();
    }
    return 0;
}
