/*  A node's identity: one Ed25519 key pair (README: security).

    The public key is the node id (printed as 64 lowercase hex digits) and,
    converted, its CurveZMQ key.  The secret stays in the data directory in a
    file of mode 0600 that holds the 32-byte seed as hex and a newline.       */
#ifndef STALLMESH_IDENTITY_H
#define STALLMESH_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"

typedef struct {
    sm_id pub;
    uint8_t secret[64];        /* libsodium Ed25519 secret key (seed || pub) */
} sm_identity;

/*  Initialise the crypto library once per process; safe to call again.
    Returns 0 or SM_EIO.                                                      */
int sm_crypto_init(void);

/*  Derive an identity from a 32-byte seed (deterministic; the simulator and
    tests use this).                                                          */
void sm_identity_from_seed(sm_identity *out, const uint8_t seed[32]);

/*  A fresh identity from the system's random source.                         */
int sm_identity_generate(sm_identity *out);

/*  Write the identity's seed to `path`, created with mode 0600; refuses to
    overwrite (SM_EEXIST).  Returns 0, SM_EEXIST or SM_EIO.                   */
int sm_identity_save(const sm_identity *id, const char *path);

/*  Load an identity saved by sm_identity_save.  SM_ENOIDENT if the file does
    not exist, SM_ECORRUPT if it is not a valid seed, SM_EIO otherwise.       */
int sm_identity_load(sm_identity *out, const char *path);

/*  Overwrite the secret in memory.                                           */
void sm_identity_wipe(sm_identity *id);

/*  Sign / verify arbitrary bytes with a node's key (detached signatures).    */
void sm_identity_sign(const sm_identity *id, const uint8_t *msg, size_t len,
                      uint8_t sig[SM_SIG_BYTES]);
int sm_sig_verify(const sm_id *pub, const uint8_t *msg, size_t len,
                  const uint8_t sig[SM_SIG_BYTES]);   /* 0 or SM_ESIG */

/*  CurveZMQ keys of a node (README: security: one identity): its Ed25519 key
    converted to Curve25519.  SM_EINVAL if `pub` is not a valid Ed25519
    point (no node can have it).                                              */
int sm_id_to_curve(const sm_id *pub, uint8_t curve_pub[32]);
void sm_identity_curve_secret(const sm_identity *id, uint8_t curve_secret[32]);

/*  A 32-byte value only this identity can compute: BLAKE2b-256 of
    purpose || 0 || msg keyed by the secret key (a raffle's secret, a
    winner's pickup code).  Deterministic: it survives a restart and a
    restore of the data directory.                                           */
void sm_identity_derive(const sm_identity *id, const char *purpose,
                        const uint8_t *msg, size_t len, uint8_t out[32]);

/*  `n` random bytes from the system (for keys and API tokens only; the
    deterministic core never calls this).                                     */
void sm_random_bytes(uint8_t *buf, size_t n);

/*  BLAKE2b-256 of buf, and an incremental form for digests.                  */
void sm_hash_bytes(const uint8_t *buf, size_t len, sm_hash *out);
typedef struct { uint8_t opaque[384] __attribute__((aligned(64))); } sm_hasher;
void sm_hasher_init(sm_hasher *h);
void sm_hasher_update(sm_hasher *h, const uint8_t *buf, size_t len);
void sm_hasher_final(sm_hasher *h, sm_hash *out);

/*  A sealed identity: the node's secret encrypted with a passphrase, for a
    backup or a paper copy (src/identity.c documents the bytes).  The key
    comes from the passphrase by Argon2id (SM_SEAL_OPSLIMIT passes over
    SM_SEAL_MEMLIMIT_BYTES), the seed is encrypted and authenticated with
    XChaCha20-Poly1305 (libsodium's secretstream), and the header fields
    and the node id are authenticated with it: any change to any byte, or
    a wrong passphrase, fails to unseal.                                      */
#define SM_SEALED_ID_BYTES      131u
#define SM_SEAL_OPSLIMIT        3u
#define SM_SEAL_MEMLIMIT_BYTES  (64u << 20)
#define SM_SEAL_MEMLIMIT_MAX    (256u << 20)  /* a sealed file may ask no more */
#define SM_SEAL_OPSLIMIT_MAX    16u
#define SM_SEALED_TEXT_PREFIX   "smk1."
#define SM_SEALED_TEXT_BYTES    (5u + 175u)  /* prefix + base64url, no NUL */

/*  Seal `id` with passphrase pass[0..len) into out.  0, SM_EINVAL (empty
    passphrase) or SM_ENOMEM (Argon2id could not get its memory).          */
int sm_identity_seal(const sm_identity *id, const char *pass, size_t len,
                     uint8_t out[SM_SEALED_ID_BYTES]);
/*  The node id a sealed identity names (not yet proven: unseal proves it).
    0, or SM_EVERSION / SM_EMALFORMED for bytes that are no sealed identity. */
int sm_sealed_id_node(const uint8_t in[SM_SEALED_ID_BYTES], sm_id *node);
/*  Unseal: the identity, checked to match the id it names.  0,
    SM_EPASSPHRASE (wrong passphrase or any byte changed), SM_EVERSION,
    SM_EMALFORMED (limits out of range) or SM_ENOMEM.                       */
int sm_identity_unseal(const uint8_t in[SM_SEALED_ID_BYTES], const char *pass,
                       size_t len, sm_identity *out);
/*  The text form for a paper copy: "smk1." and URL-safe base64 without
    padding, NUL-terminated in out[SM_SEALED_TEXT_BYTES + 1].  Parsing
    skips spaces and newlines (a copy typed back in lines); 0 or
    SM_EMALFORMED.                                                            */
void sm_sealed_to_text(const uint8_t in[SM_SEALED_ID_BYTES],
                       char out[SM_SEALED_TEXT_BYTES + 1]);
int sm_sealed_from_text(const char *text, uint8_t out[SM_SEALED_ID_BYTES]);

/*  Lowercase hex.  `out` must hold 2*n+1 bytes; it is NUL-terminated.        */
void sm_hex_encode(const uint8_t *buf, size_t n, char *out);
/*  Parse exactly 2*n hex digits (either case) into buf.  0 or SM_EINVAL.     */
int sm_hex_decode(const char *hex, uint8_t *buf, size_t n);
/*  Parse a node id given as 64 hex digits.  0 or SM_EINVAL.                  */
int sm_id_parse(const char *hex, sm_id *out);
/*  Format an id as 64 hex digits + NUL into out[SM_ID_HEX_BYTES + 1].        */
void sm_id_format(const sm_id *id, char out[SM_ID_HEX_BYTES + 1]);

#endif
