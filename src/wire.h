/*  Mesh messages (normative spec: proto/mesh.md, vectors in
    proto/vectors/mesh.txt).

    Every message is one ZeroMQ frame holding one canonical msgpack array
    whose first element is the type.  Decoding checks every declared length
    against the bytes that remain before it allocates anything, refuses
    trailing bytes and non-canonical encodings, and validates ranges (an
    sm_wire_msg is fully trusted only for shape: entries inside ENTRIES are
    checked later by the ledger).  Encoding and decoding live in codec.c
    (the only msgpack user); this header is the contract.

    Layouts (u = unsigned integer, b32 = 32-byte bin, str = UTF-8 str):
      HELLO     [1, proto_version u, market b32, node b32, endpoint str]
      HEADS     [2, [[origin b32, seq u, link b32], ...]]
      WANT      [3, origin b32, from u, count u]
      ENTRIES   [4, origin b32, first_seq u, [[entry bin, sig bin(64)], ...]]
      PEERS     [5, [[node b32, endpoint str], ...]]
      UNITS_ASK [6, req_id u, sku str, qty u, asker b32, hops u]
      UNITS_GIVE[7, req_id u, sku str, qty u, asker b32]   qty 0 = none to give
      FORK      [8, origin b32, seq u, [entry bin, sig bin], [entry bin, sig bin]]
      HOLD_ASK  [9, req_id u, sku str, qty u, code str, device bin, client bin,
                 [[sku str, qty u], ...]]   the lines after the first (version 4)
      HOLD_DONE [10, req_id u, refusal u, seq u, expires_ms u]
      ENTRY_ASK [11, req_id u, drop_origin b32, drop_seq u, device bin(8), client bin]
      ENTRY_DONE[12, req_id u, refusal u, seq u]

    Rules (both directions; proto/mesh.md section 5 has them all): HELLO
    endpoint 0..SM_ENDPOINT_BYTES_MAX bytes ("" = none); HEADS at most
    SM_MEMBERS_MAX heads, origins in strictly ascending byte order (one head
    an origin), seq >= 1 (leave out origins with no entries); WANT count
    1..SM_WIRE_RUN_MAX; ENTRIES 1..SM_WIRE_RUN_MAX entries of
    1..SM_ENTRY_BYTES_MAX bytes; PEERS at most SM_WIRE_PEERS_MAX, nodes in
    strictly ascending byte order, endpoints 1..SM_ENDPOINT_BYTES_MAX bytes;
    every seq 1..SM_SEQ_MAX and every run's last seq too; sku 1..
    SM_SKU_BYTES_MAX bytes; qty <= SM_QTY_MAX (>= 1 in UNITS_ASK); UNITS_ASK
    hops 1..SM_UNITS_HOPS_MAX (UNITS_GIVE has none: hops is 0); FORK's
    two entries differ; HOLD_ASK qty 1..SM_QTY_MAX, code 0..
    SM_HOLD_CODE_BYTES_MAX bytes of text, device and client bins of 0 or
    SM_HOLD_TAG_BYTES bytes, 0..SM_HOLD_LINES_MAX-1 more lines (each sku
    as above, qty 1..SM_QTY_MAX, every sku of the ask distinct); HOLD_DONE refusal 0
    (held: seq 1..SM_SEQ_MAX of the answerer's log, expires_ms >= 1) or
    1..SM_WIRE_REFUSAL_MAX, an SM_E* code negated (seq and expires_ms 0);
    in sm_wire_msg the refusal is the SM_E* code itself (0 or negative);
    ENTRY_ASK drop_seq 1..SM_SEQ_MAX, device a bin of SM_HOLD_TAG_BYTES,
    client of 0 or SM_HOLD_TAG_BYTES; ENTRY_DONE refusal 0 (seq 1..
    SM_SEQ_MAX) or 1..SM_WIRE_ENTRY_REFUSAL_MAX (seq 0).
    Strings are text as sm__text_valid (text.h) says.
    sm_wire_sort puts HEADS and PEERS in the required order.

    Decoded byte strings (entries, signatures) point into the message
    buffer: borrowed, valid while it is.  Decoding allocates nothing:
    `space` is its only storage.                                              */
#ifndef SM_WIRE_H
#define SM_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"
#include "stallmesh/limits.h"

#define SM_WIRE_VERSION 4u   /* 2: UNITS_ASK and UNITS_GIVE carry the asker (multi-hop);
                                3: HOLD_ASK carries the shopper (code, device, client);
                                4: ENTRY_ASK and ENTRY_DONE (a forwarded raffle entry),
                                   HOLD_ASK carries a reservation's lines */

typedef enum {
    SM_MSG_HELLO = 1, SM_MSG_HEADS = 2, SM_MSG_WANT = 3, SM_MSG_ENTRIES = 4,
    SM_MSG_PEERS = 5, SM_MSG_UNITS_ASK = 6, SM_MSG_UNITS_GIVE = 7,
    SM_MSG_FORK = 8, SM_MSG_HOLD_ASK = 9, SM_MSG_HOLD_DONE = 10,
    SM_MSG_ENTRY_ASK = 11, SM_MSG_ENTRY_DONE = 12
} sm_msg_type;
#define SM_MSG_TYPE_MAX SM_MSG_ENTRY_DONE
#define SM_WIRE_REFUSAL_MAX 127u  /* HOLD_DONE's refusal: -127..-1 as SM_E* */
#define SM_WIRE_ENTRY_REFUSAL_MAX 255u  /* ENTRY_DONE's: -255..-1 (the drops' codes fit) */

typedef struct {
    sm_id origin;
    uint64_t seq;
    sm_hash link;
} sm_wire_head;

typedef struct {
    sm_id node;
    char endpoint[SM_ENDPOINT_BYTES_MAX + 1];
} sm_wire_peer;

typedef struct {
    sm_msg_type type;
    union {
        struct { uint32_t version; sm_id market; sm_id node;
                 char endpoint[SM_ENDPOINT_BYTES_MAX + 1]; } hello;
        struct { uint32_t count; sm_wire_head *heads; } heads;   /* heads: see below */
        struct { sm_id origin; uint64_t from; uint32_t count; } want;
        struct { sm_id origin; uint64_t first_seq; uint32_t count;
                 sm_signed *entries; } entries;                   /* entries: see below */
        struct { uint32_t count; sm_wire_peer *peers; } peers;
        struct { uint64_t req_id; char sku[SM_SKU_BYTES_MAX + 1]; uint32_t qty;
                 sm_id asker;      /* the node that needs the units (the
                                      stock.move's `to`); (asker, req_id)
                                      names one ask market-wide */
                 uint32_t hops; } units;  /* ASK: hops it may still travel,
                                             this one included; GIVE: 0 */
        struct { sm_id origin; uint64_t seq; sm_signed a, b; } fork;
        struct { uint64_t req_id; char sku[SM_SKU_BYTES_MAX + 1];
                 uint32_t qty;
                 char code[SM_HOLD_CODE_BYTES_MAX + 1]; /* "" = the answerer has none */
                 bool has_device, has_client;  /* the shopper's tags (reserve.h) */
                 uint8_t device[SM_HOLD_TAG_BYTES];
                 uint8_t client[SM_HOLD_TAG_BYTES];
                 uint32_t more_count;          /* lines after sku/qty */
                 struct { char sku[SM_SKU_BYTES_MAX + 1]; uint32_t qty; }
                     more[SM_HOLD_LINES_MAX - 1]; } hold_ask;
        struct { uint64_t req_id;
                 int code;        /* 0 (held) or the refusal, an SM_E* code */
                 uint64_t seq;    /* the hold's seq on the answerer's log */
                 uint64_t expires_ms; } hold_done;
        struct { uint64_t req_id;
                 sm_id drop_origin; uint64_t drop_seq;  /* the raffle's drop */
                 uint8_t device[SM_HOLD_TAG_BYTES];     /* the entrant's tags (reserve.h) */
                 bool has_client;
                 uint8_t client[SM_HOLD_TAG_BYTES]; } entry_ask;
        struct { uint64_t req_id;
                 int code;        /* 0 (entered) or the refusal, an SM_E* code */
                 uint64_t seq; } entry_done;   /* the raffle.entry's seq on the answerer's log */
    } u;
} sm_wire_msg;

/*  Space for a decoded message's arrays, owned by the caller and reused:
    heads[SM_MEMBERS_MAX], entries[SM_WIRE_RUN_MAX], peers[SM_WIRE_PEERS_MAX].
    sm_wire_decode points the message's arrays into it.                       */
typedef struct {
    sm_wire_head heads[SM_MEMBERS_MAX];
    sm_signed entries[SM_WIRE_RUN_MAX];
    sm_wire_peer peers[SM_WIRE_PEERS_MAX];
} sm_wire_space;

/*  Decode one message of exactly `len` bytes.  0, or SM_ETOOBIG (len >
    SM_WIRE_BYTES_MAX, an array, str or entry over its limit), SM_ETRUNC (a
    declared length or count runs past the end), SM_EMALFORMED (shape,
    types, trailing bytes, a zero count where one is required, a value out
    of range, unsorted HEADS or PEERS, bad text), SM_ENONCANON, SM_EVERSION
    (HELLO of another protocol version: out->u.hello.version says which,
    and market, node and endpoint are filled in if the rest reads as
    this version's, else zero), SM_EKIND (unknown type).  The borrowed arrays
    point into `space` (caller's, reused by the next decode) and `buf`.      */
int sm_wire_decode(const uint8_t *buf, size_t len, sm_wire_space *space,
                   sm_wire_msg *out);

/*  Encode `msg` canonically into buf[0..cap); *len gets the length.
    SM_ETOOBIG if it does not fit in cap or SM_WIRE_BYTES_MAX; SM_EINVAL if
    the message breaks a rule above (counts, string lengths, ranges, order;
    hello.version must be SM_WIRE_VERSION).  What it writes decodes.        */
int sm_wire_encode(const sm_wire_msg *msg, uint8_t *buf, size_t cap, size_t *len);

/*  The message type's name for logs ("HELLO"), or "?" if unknown.          */
const char *sm_wire_type_name(int type);

/*  Sort a HEADS message's heads by origin, or a PEERS message's peers by
    node, in place (ascending bytes), as sm_wire_encode requires; other
    types are left alone.  Repeated origins or nodes stay (encode refuses
    them with SM_EINVAL).                                                     */
void sm_wire_sort(sm_wire_msg *msg);

#endif
