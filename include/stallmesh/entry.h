/*  Log entries: the unit of replication (proto/log.md).

    An entry is the canonical msgpack array

        [version, market, origin, seq, prev, hlc, kind, body]

    signed by its origin: sig = Ed25519(BLAKE2b-256(entry bytes)).  The link
    hash BLAKE2b-256(entry bytes || sig) is the next entry's `prev`, so a
    verified signature on the newest entry of a contiguous run authenticates
    the whole run.  Bodies are positional msgpack arrays, one layout a kind;
    proto/log.md gives them byte by byte and proto/vectors/ has test vectors.

    Decoding never trusts a declared length: every length is checked against
    the bytes that remain before anything is allocated, and an encoding that
    is not the one sm_entry_encode would produce is refused (SM_ENONCANON),
    so the bytes that are hashed and signed are the only representation.      */
#ifndef STALLMESH_ENTRY_H
#define STALLMESH_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/limits.h"

#define SM_ENTRY_VERSION  1u
#define SM_KEY_BYTES      32u
#define SM_SIG_BYTES      64u
#define SM_HASH_BYTES     32u
#define SM_ID_HEX_BYTES   (2 * SM_KEY_BYTES)   /* without the terminating NUL */

typedef struct { uint8_t b[SM_KEY_BYTES]; } sm_id;     /* an Ed25519 public key */
typedef struct { uint8_t b[SM_HASH_BYTES]; } sm_hash;  /* a BLAKE2b-256 digest */

/* Wire values are part of the format: never renumber. */
typedef enum {
    SM_KIND_ITEM = 1,          /* catalog fields of a sku (LWW register) */
    SM_KIND_STOCK_ADD = 2,     /* units added at the origin's location */
    SM_KIND_STOCK_MOVE = 3,    /* units moved from the origin to another node */
    SM_KIND_SALE = 4,
    SM_KIND_RETURN = 5,        /* of one of the origin's own sales */
    SM_KIND_HOLD = 6,          /* a shopper's reservation, with expiry */
    SM_KIND_RELEASE = 7,       /* ends one of the origin's own holds */
    SM_KIND_ADJUST = 8,        /* stock-take correction, signed delta */
    SM_KIND_DROP = 9,          /* a limited release: units sellable from a time */
    SM_KIND_ROSTER_ADMIT = 10, /* organiser only */
    SM_KIND_ROSTER_REVOKE = 11, /* organiser only */
    SM_KIND_RAFFLE_ENTRY = 12, /* a shopper's entry in a raffle drop (any node) */
    SM_KIND_RAFFLE_DRAW = 13   /* a raffle's draw, by the drop's own stall */
} sm_kind;
#define SM_KIND_MIN SM_KIND_ITEM
#define SM_KIND_MAX SM_KIND_RAFFLE_DRAW

/* A drop's mode (the drop body's long form); 0 = the short form. */
typedef enum { SM_DROP_FIRST_COME = 1, SM_DROP_RAFFLE = 2 } sm_drop_mode;

typedef enum {
    SM_SOURCE_IN_PERSON = 1, SM_SOURCE_LIVESTREAM = 2,
    SM_SOURCE_ONLINE = 3, SM_SOURCE_PREVIEW = 4
} sm_source;

typedef enum {
    SM_PAY_CARD = 1, SM_PAY_CASH = 2, SM_PAY_QR = 3,
    SM_PAY_OFFLINE_CARD = 4, SM_PAY_OTHER = 5
} sm_payment;

typedef enum { SM_ROLE_STALL = 1, SM_ROLE_ORGANISER = 2, SM_ROLE_RELAY = 3 } sm_role;

/* Strings are NUL-terminated UTF-8 without control characters. */
typedef struct {
    char sku[SM_SKU_BYTES_MAX + 1];
    uint32_t qty;
    int64_t price;             /* minor units per unit; sales only (0 in returns) */
} sm_line;

typedef struct {
    sm_kind kind;
    union {
        struct { char sku[SM_SKU_BYTES_MAX + 1]; char name[SM_NAME_BYTES_MAX + 1];
                 int64_t price; char currency[4]; } item;
        struct { char sku[SM_SKU_BYTES_MAX + 1]; uint32_t qty; } stock_add;
        struct { char sku[SM_SKU_BYTES_MAX + 1]; uint32_t qty; sm_id to; } stock_move;
        struct { uint32_t line_count; sm_line lines[SM_SALE_LINES_MAX];
                 char currency[4]; uint8_t source; uint8_t payment;
                 char external_id[SM_EXTID_BYTES_MAX + 1]; /* "" = none */
                 uint64_t hold_seq; /* 0 = none; else a hold of the same origin */
               } sale;
        struct { uint64_t sale_seq; /* a sale of the same origin */
                 uint32_t line_count; sm_line lines[SM_SALE_LINES_MAX];
                 char reason[SM_REASON_BYTES_MAX + 1]; } ret;
        struct { char sku[SM_SKU_BYTES_MAX + 1]; uint32_t qty; /* the first line */
                 uint64_t expires_ms; /* unix ms */
                 /* A reservation's further fields; all empty = the short,
                    one-line form (proto/log.md, hold). */
                 char code[SM_HOLD_CODE_BYTES_MAX + 1]; /* pickup code, "" = none */
                 uint32_t more_count;  /* lines after the first: 0..SM_HOLD_LINES_MAX-1 */
                 sm_line more[SM_HOLD_LINES_MAX - 1]; /* price 0 */
                 bool has_device, has_client;
                 uint8_t device[SM_HOLD_TAG_BYTES]; /* hashed device id (reserve.h) */
                 uint8_t client[SM_HOLD_TAG_BYTES]; /* hashed client address */
               } hold;
        struct { uint64_t hold_seq; } release;
        struct { char sku[SM_SKU_BYTES_MAX + 1]; int64_t delta; /* non-zero */
                 char reason[SM_REASON_BYTES_MAX + 1]; } adjust;
        struct { char sku[SM_SKU_BYTES_MAX + 1]; uint32_t qty;
                 uint64_t starts_ms; /* unix ms */
                 /* The long form (proto/log.md, drop): mode 0 = the short
                    form (units added, sellable from starts_ms). */
                 uint8_t mode;          /* sm_drop_mode, or 0 */
                 uint32_t per_shopper;  /* units one device or address may get */
                 uint64_t closes_ms;    /* raffle: entries until then; else 0 */
                 uint32_t pickup_minutes; /* a winner's or holder's pickup window */
                 bool has_commitment;   /* raffle: BLAKE2b-256(secret) */
                 sm_hash commitment; } drop;
        struct { sm_id drop_origin; uint64_t drop_seq; /* the drop entered */
                 uint8_t device[SM_HOLD_TAG_BYTES];     /* hashed device id */
                 bool has_client;
                 uint8_t client[SM_HOLD_TAG_BYTES];     /* hashed client address */
               } raffle_entry;
        struct { uint64_t drop_seq;    /* a raffle drop of the same origin */
                 sm_hash secret;       /* revealed: BLAKE2b-256(secret) = commitment */
                 uint32_t head_count;  /* the log heads drawn from */
                 struct { sm_id origin; uint64_t seq; } heads[SM_DRAW_HEADS_MAX];
                 uint32_t winners;     /* holds that follow, one a winner */
               } raffle_draw;
        struct { sm_id node; char name[SM_NAME_BYTES_MAX + 1]; uint8_t role; } admit;
        struct { sm_id node; uint64_t upto_seq; /* its entries above this are void */ } revoke;
    } u;
} sm_body;

typedef struct {
    uint8_t version;           /* SM_ENTRY_VERSION */
    sm_id market;              /* the organiser's key */
    sm_id origin;              /* the author's key */
    uint64_t seq;              /* 1.. SM_SEQ_MAX, no gaps per origin */
    sm_hash prev;              /* link hash of seq-1; all zero for seq 1 */
    uint64_t hlc;              /* sm_hlc: 48-bit unix ms << 16 | counter */
    sm_body body;
} sm_entry;

/*  An entry as it travels and is stored: its exact bytes and signature.
    `bytes` is borrowed from whoever built the array.                         */
typedef struct {
    const uint8_t *bytes;
    size_t len;
    uint8_t sig[SM_SIG_BYTES];
} sm_signed;

/*  Check an entry's header and body against the format's rules (positive and
    bounded quantities, money as minor units with a currency, valid UTF-8
    strings within their limits, known enums).  Returns 0 or SM_EVERSION,
    SM_EKIND, SM_EQTY, SM_EMONEY, SM_EBODY.                                   */
int sm_entry_check(const sm_entry *e);

/*  Encode `e` canonically into buf[0..cap).  Checks it first (as
    sm_entry_check).  Stores the length in *len.  SM_ETOOBIG if cap or
    SM_ENTRY_BYTES_MAX is too small.                                          */
int sm_entry_encode(const sm_entry *e, uint8_t *buf, size_t cap, size_t *len);

/*  Decode exactly `len` bytes into *out (no allocation survives the call).
    Refuses, each with its own code: SM_ETOOBIG (len > SM_ENTRY_BYTES_MAX),
    SM_ETRUNC (a declared length exceeds what remains), SM_EMALFORMED (wrong
    shape or types, trailing bytes), SM_ENONCANON, SM_EVERSION, SM_EKIND and
    the body codes of sm_entry_check.                                         */
int sm_entry_decode(const uint8_t *buf, size_t len, sm_entry *out);

/*  The lines of a hold body: how many (1 + more_count), and line i's sku
    and qty (i < that count).                                                */
uint32_t sm_hold_body_lines(const sm_body *b);
void sm_hold_body_line(const sm_body *b, uint32_t i, const char **sku, uint32_t *qty);

/* Names as printed in JSON ("stock.add"); NULL / 0 when unknown. */
const char *sm_kind_name(sm_kind kind);
sm_kind sm_kind_parse(const char *name);
const char *sm_source_name(int source);
int sm_source_parse(const char *name);     /* 0 when unknown */
const char *sm_payment_name(int payment);
int sm_payment_parse(const char *name);    /* 0 when unknown */
const char *sm_role_name(int role);
int sm_role_parse(const char *name);       /* 0 when unknown */

/*  Hashing and signatures over entry bytes.  `secret` is the 64-byte
    libsodium Ed25519 secret key.                                             */
void sm_entry_hash(const uint8_t *bytes, size_t len, sm_hash *out);
void sm_entry_link(const uint8_t *bytes, size_t len,
                   const uint8_t sig[SM_SIG_BYTES], sm_hash *out);
void sm_entry_sign(const uint8_t *bytes, size_t len,
                   const uint8_t secret[64], uint8_t sig[SM_SIG_BYTES]);
/*  0 if `sig` is origin's signature over the entry, else SM_ESIG.            */
int sm_entry_verify(const uint8_t *bytes, size_t len,
                    const uint8_t sig[SM_SIG_BYTES], const sm_id *origin);

/*  Hybrid logical clock (proto/log.md): unix ms << 16 | counter.           */
#define SM_HLC_MS(h)      ((h) >> 16)
#define SM_HLC_MAKE(ms, c) (((uint64_t)(ms) << 16) | ((uint64_t)(c) & 0xffffu))
/*  The next local timestamp after `last`, given the wall clock.             */
uint64_t sm_hlc_next(uint64_t last, uint64_t now_ms);
/*  Merge a remote timestamp into `last` (receive event).  Remote values
    more than SM_FUTURE_SKEW_MS ahead of now_ms are ignored.                  */
uint64_t sm_hlc_merge(uint64_t last, uint64_t remote, uint64_t now_ms);

#endif
