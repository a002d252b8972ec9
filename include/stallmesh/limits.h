/*  Every limit of stallmesh, in one place (STYLE 8).

    Anything that arrives from outside (a peer, a phone, a file) is checked
    against these before it is decoded or stored.  Names carry units last.   */
#ifndef STALLMESH_LIMITS_H
#define STALLMESH_LIMITS_H

/* Log entries. */
#define SM_ENTRY_BYTES_MAX        8192u     /* encoded entry, without signature */
#define SM_MSGPACK_DEPTH_MAX      6u        /* nesting of arrays in any message */
#define SM_SKU_BYTES_MAX          64u       /* UTF-8 bytes of a sku */
#define SM_NAME_BYTES_MAX         128u      /* item, market and node names */
#define SM_REASON_BYTES_MAX       200u      /* adjust and return reasons */
#define SM_EXTID_BYTES_MAX        64u       /* a till's idempotency key */
#define SM_SALE_LINES_MAX         32u       /* lines of one sale or return */
#define SM_QTY_MAX                1000000u  /* units in one entry or line */
#define SM_PRICE_MAX              1000000000000LL /* minor units, 10^12 */
#define SM_SEQ_MAX                ((1ULL << 53) - 1) /* fits a JSON number exactly */
#define SM_FUTURE_SKEW_MS         (24ULL * 3600 * 1000) /* entries further ahead are refused */
#define SM_HOLD_TTL_MS_MAX        (24ULL * 3600 * 1000)

/* Runs and batches. */
#define SM_RUN_ENTRIES_MAX        4096u     /* entries in one ingested run */
#define SM_MEMBERS_MAX            1024u     /* origins known to one market */
#define SM_ENDPOINTS_MAX          8u        /* endpoints in a join token */
#define SM_ENDPOINT_BYTES_MAX     200u
#define SM_TOKEN_BYTES_MAX        4096u     /* join token text */

/* Store. */
#define SM_MAP_BYTES_DEFAULT      (2ULL << 30)  /* LMDB map size: 2 GiB, sparse */
#define SM_STORE_READERS_MAX      126u

#endif
