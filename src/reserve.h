/*  Reservations: the rules of a shopper's hold that are not the ledger's.

    A reservation is one hold entry of up to SM_HOLD_LINES_MAX lines
    (proto/log.md, hold), so it is held whole or not at all by the state.
    This module adds what keeps reservations usable and fair:

    - the pickup code: SM_HOLD_CODE_CHARS characters from an alphabet
      without look-alikes (no 0/O, 1/I/L), drawn from randomness the caller
      passes in (the node passes random bytes, the simulator its seeded
      generator), and unique among this stall's open holds (the state
      refuses a taken one with SM_EHOLDCODE; the caller draws again);
    - shopper tags: a device id or a client address is never logged as
      given, only as an 8-byte BLAKE2b digest keyed by purpose and market,
      enough to count what one shopper holds, not to read it back easily
      (an IPv4 address can be recovered by trying them all: the tag is a
      pseudonym among the market's members, not a secret);
    - the limits ([holds] in the config): units in one reservation
      (max_units), units of one sku in it (max_per_sku), units one device
      and one address hold at once (per_device, per_address).  Each refusal
      names its limit.

    No I/O, no clock: time and randomness come in as arguments, so the node
    and the simulator run the same rules.                                    */
#ifndef SM_RESERVE_H
#define SM_RESERVE_H

#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/ledger.h"

/* The pickup code's alphabet: 31 characters, none mistaken for another. */
#define SM_RESERVE_ALPHABET "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
/* Random bytes one draw of a code may use (rejection sampling). */
#define SM_RESERVE_CODE_RAND_BYTES 32u

typedef struct {
    uint32_t max_units;        /* units in one reservation; 0 = default */
    uint32_t max_per_sku;      /* units of one sku in one reservation */
    uint32_t per_device;       /* units one device holds at once here */
    uint32_t per_address;      /* units one client address holds at once here */
} sm_reserve_limits;

/*  The limits with every 0 replaced by its default (limits.h).             */
sm_reserve_limits sm_reserve_limits_or_default(const sm_reserve_limits *lim);

/*  Which limit a reservation broke: its config name ("max_units", ...),
    the limit, and how many units the shopper would then hold under it.    */
typedef struct {
    const char *limit;
    uint32_t max;
    uint64_t wanted;
} sm_reserve_refusal;

/*  Draw a pickup code into out[SM_HOLD_CODE_CHARS + 1] from
    rand[0..SM_RESERVE_CODE_RAND_BYTES).  Deterministic: the same bytes give
    the same code.  Every character is from SM_RESERVE_ALPHABET.            */
void sm_reserve_code(const uint8_t rand[SM_RESERVE_CODE_RAND_BYTES],
                     char out[SM_HOLD_CODE_CHARS + 1]);

/*  Whether `code` has the shape of a pickup code (letters of the alphabet,
    SM_HOLD_CODE_CHARS of them).  Lower case is accepted by sm_reserve_code_norm. */
bool sm_reserve_code_valid(const char *code);
/*  Upper-case `in` into out[SM_HOLD_CODE_CHARS + 1] and check it: false if
    it is not a pickup code (a scanner or a typist may send lower case or
    spaces around it).                                                      */
bool sm_reserve_code_norm(const char *in, char out[SM_HOLD_CODE_CHARS + 1]);

/*  Draw codes from rand[0..n * SM_RESERVE_CODE_RAND_BYTES) until one is
    none of taken[0..ntaken); into out.  0, or SM_EHOLDCODE if all n draws
    were taken.                                                              */
int sm_reserve_code_pick(const uint8_t *rand, size_t n,
                         const char (*taken)[SM_HOLD_CODE_BYTES_MAX + 1],
                         size_t ntaken, char out[SM_HOLD_CODE_CHARS + 1]);

/*  The tag of a shopper's `text` ("device" or "client" for `purpose`) in
    `market`, into out[SM_HOLD_TAG_BYTES].                                  */
void sm_reserve_tag(const char *purpose, const sm_id *market, const char *text,
                    uint8_t out[SM_HOLD_TAG_BYTES]);

/*  Units of this node's open, unexpired holds tagged with hold's device and
    with its client (0 for a tag the hold lacks); and the open holds' codes
    into taken[0..cap) with their count in *ntaken (NULL: not wanted).
    Returns 0 or the ledger's error.                                        */
int sm_reserve_usage(sm_ledger *ledger, const sm_id *node, const sm_body *hold,
                     uint64_t now_ms, uint64_t *device_units,
                     uint64_t *client_units,
                     char (*taken)[SM_HOLD_CODE_BYTES_MAX + 1], size_t cap,
                     size_t *ntaken);

/*  Check a reservation (a hold body) against the limits, given what its
    device and its address already hold.  0, or SM_EHOLDLIMIT with *why.    */
int sm_reserve_check(const sm_reserve_limits *lim, const sm_body *hold,
                     uint64_t device_units, uint64_t client_units,
                     sm_reserve_refusal *why);

/*  sm_reserve_usage then sm_reserve_check: the whole decision for a hold
    about to be appended at `node`.                                         */
int sm_reserve_admit(sm_ledger *ledger, const sm_id *node,
                     const sm_reserve_limits *lim, const sm_body *hold,
                     uint64_t now_ms, sm_reserve_refusal *why);

#endif
