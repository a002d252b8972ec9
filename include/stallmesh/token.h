/*  Join tokens (README: security): how a stall joins a market offline.

    The organiser signs a roster.admit entry for the stall's key and hands
    the stall a token holding that signed entry, the market's name and
    currency and the organiser's endpoints, the whole signed again by the
    organiser.  Text form: "smj1." followed by the URL-safe base64 (no
    padding) of the canonical msgpack array

        [1, market, name, currency, [endpoint...], entry bytes, entry sig, token sig]

    where token sig = Ed25519 over BLAKE2b-256 of the same array without its
    last element.  proto/token.md documents it byte by byte.                 */
#ifndef STALLMESH_TOKEN_H
#define STALLMESH_TOKEN_H

#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/identity.h"

#define SM_TOKEN_PREFIX "smj1."

typedef struct {
    sm_id market;
    char name[SM_NAME_BYTES_MAX + 1];
    char currency[4];
    uint32_t endpoint_count;
    char endpoints[SM_ENDPOINTS_MAX][SM_ENDPOINT_BYTES_MAX + 1];
    uint8_t entry[SM_ENTRY_BYTES_MAX];  /* the signed roster.admit entry */
    size_t entry_len;
    uint8_t entry_sig[SM_SIG_BYTES];
} sm_token;

/*  Encode and sign `t` with the organiser's identity (whose key must be
    t->market) into text[0..cap), NUL-terminated.  0, SM_EINVAL or
    SM_ETOOBIG.                                                               */
int sm_token_encode(const sm_token *t, const sm_identity *organiser,
                    char *text, size_t cap);

/*  Parse and verify a token's text: both signatures, that the entry is a
    roster.admit authored by the market's organiser for `self` (if non-NULL),
    and the limits.  SM_ETOKEN for anything wrong, with *out untouched.
    Leading and trailing white space is ignored.                              */
int sm_token_decode(const char *text, const sm_id *self, sm_token *out);

#endif
