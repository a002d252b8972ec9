/*  The codec: the only module that includes msgpack.h.

    It implements sm_entry_encode / sm_entry_decode (entry.h), the mesh
    messages (sm_wire_encode / sm_wire_decode, wire.h) and the token layout
    below, on top of a strict scanner that walks a msgpack buffer and
    checks every declared length against the bytes that remain, the nesting
    depth, and that only the types stallmesh uses appear (nil, bool,
    integers, str, bin, array) before msgpack-c is asked to unpack anything.
    Canonical form is checked by re-encoding the unpacked object and
    comparing the bytes.                                                      */
#ifndef SM_CODEC_H
#define SM_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/token.h"
#include "text.h"                /* sm__text_valid: the strings of every format */

/*  Scan buf[0..len) as exactly one msgpack object.  Returns 0, SM_ETRUNC
    (a length runs past the end), SM_EMALFORMED (unsupported type, nesting
    deeper than depth_max, trailing bytes).                                   */
int sm__msgpack_scan(const uint8_t *buf, size_t len, unsigned depth_max);

/*  Token body: [1, market, name, currency, [endpoint...], entry, entry sig]
    when tsig is NULL, or with the token signature appended as the 8th
    element otherwise.  0 or SM_ETOOBIG / SM_EINVAL.                          */
int sm__token_pack(const sm_token *t, const uint8_t tsig[SM_SIG_BYTES],
                   uint8_t *buf, size_t cap, size_t *len);

/*  Decode a signed (8-element) token body into *out and its signature into
    tsig.  Checks lengths and limits and canonical form, not signatures.
    0 or SM_ETOKEN.                                                           */
int sm__token_unpack(const uint8_t *buf, size_t len, sm_token *out,
                     uint8_t tsig[SM_SIG_BYTES]);

#endif
