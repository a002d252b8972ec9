/*  A node's identity and the small crypto toolkit around it.

    This file and the log code are the only ones that include sodium.h (one
    module per dependency): everything else signs, verifies, hashes and
    draws random bytes through the functions below, in the project's own
    types.

    Secret file format (the only place a node's secret key lives):

        64 lowercase hex digits (the 32-byte Ed25519 seed), then "\n"

    The file is created with O_CREAT|O_EXCL and mode 0600, so an existing
    identity is never overwritten; it and its directory are fsync'd before
    sm_identity_save returns, so a node that printed its id after `init`
    still has that id after a power cut.  The 64-byte libsodium secret key
    (seed || public key) is derived again on load and is never written.

    On load the file must be a regular file that only its owner can read or
    write (mode & 077 == 0), like ssh does with private keys: a secret that
    others could read may already have leaked, and silently carrying on would
    hide that from the operator.  Such a file is refused with SM_ECORRUPT
    (the file is not a usable secret); the CLI stats it again to tell the
    operator exactly why and which chmod to run.

    Sealed identity (sm_identity_seal, a backup's or a paper copy's secret),
    SM_SEALED_ID_BYTES = 131 bytes, integers big-endian:

        0    1  version, 1
        1    1  algorithm, 1: Argon2id v1.3 key, XChaCha20-Poly1305
                secretstream
        2    4  Argon2id passes (opslimit), 1..SM_SEAL_OPSLIMIT_MAX
        6    4  Argon2id memory in KiB, up to SM_SEAL_MEMLIMIT_MAX
        10  16  salt (random)
        26  32  the node id (its public key)
        58  24  secretstream header
        82  49  the 32-byte seed encrypted as one TAG_FINAL message, whose
                additional data is bytes 0..58: a changed header, salt or
                node id fails to decrypt like a wrong passphrase does

    A sealed file chooses its own Argon2id cost, but never more than the
    maxima above, so a crafted one cannot make a Pi allocate gigabytes.     */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdalign.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "stallmesh/error.h"
#include "stallmesh/identity.h"

#define SM__SEED_BYTES      32u
#define SM__SEED_HEX_BYTES  (2 * SM__SEED_BYTES)
#define SM__SECRET_FILE_BYTES (SM__SEED_HEX_BYTES + 1)   /* hex + "\n" */

_Static_assert(sizeof(crypto_generichash_state) <= sizeof(((sm_hasher *)0)->opaque),
               "sm_hasher is too small for libsodium's generichash state");
_Static_assert(alignof(crypto_generichash_state) <= alignof(sm_hasher),
               "sm_hasher is not aligned enough for libsodium's generichash state");
_Static_assert(crypto_sign_PUBLICKEYBYTES == SM_KEY_BYTES, "Ed25519 public key size");
_Static_assert(crypto_sign_SECRETKEYBYTES == sizeof(((sm_identity *)0)->secret),
               "Ed25519 secret key size");
_Static_assert(crypto_sign_SEEDBYTES == SM__SEED_BYTES, "Ed25519 seed size");
_Static_assert(crypto_sign_BYTES == SM_SIG_BYTES, "Ed25519 signature size");
_Static_assert(SM_HASH_BYTES >= crypto_generichash_BYTES_MIN
               && SM_HASH_BYTES <= crypto_generichash_BYTES_MAX, "BLAKE2b digest size");

/*  Initialise libsodium.  sodium_init returns 1 when it already ran, which
    is success too.  Returns 0 or SM_EIO (no usable random source).           */
int
sm_crypto_init(void)
{
    return sodium_init() < 0 ? SM_EIO : 0;
}

/*  Derive the key pair from `seed`.  Deterministic: same seed, same id.      */
void
sm_identity_from_seed(sm_identity *out, const uint8_t seed[32])
{
    assert(out != NULL && seed != NULL);
    int rc = crypto_sign_seed_keypair(out->pub.b, out->secret, seed);
    assert(rc == 0);
    (void)rc;
}

/*  A fresh identity from the system's random source.  0 or SM_EIO if
    libsodium cannot initialise.                                              */
int
sm_identity_generate(sm_identity *out)
{
    assert(out != NULL);
    if (sm_crypto_init() != 0)
        return SM_EIO;
    uint8_t seed[SM__SEED_BYTES];
    randombytes_buf(seed, sizeof seed);
    sm_identity_from_seed(out, seed);
    sodium_memzero(seed, sizeof seed);
    return 0;
}

/*  Write all of buf to fd, retrying on EINTR and short writes.  0 or -1.     */
static int
s_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*  fsync the directory that holds `path`, so that a newly created file's
    name is durable too.  0 or -1.                                            */
static int
s_fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof dir)
            return -1;
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/*  Create `path` (mode 0600, never overwriting) holding id's seed as hex and
    a newline, and fsync it and its directory.  If anything fails after the
    file was created it is removed, so a retry can succeed.  Returns 0,
    SM_EEXIST or SM_EIO.                                                      */
int
sm_identity_save(const sm_identity *id, const char *path)
{
    assert(id != NULL && path != NULL);
    char text[SM__SECRET_FILE_BYTES + 1];   /* + NUL from sodium_bin2hex */
    int rc = SM_EIO;
    bool created = false;

    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = errno == EEXIST ? SM_EEXIST : SM_EIO;
        goto fail;
    }
    created = true;
    /* The umask can only clear bits, but say what we mean. */
    if (fchmod(fd, 0600) != 0)
        goto fail;
    /* The seed is the first half of libsodium's secret key. */
    sodium_bin2hex(text, sizeof text, id->secret, SM__SEED_BYTES);
    text[SM__SEED_HEX_BYTES] = '\n';
    if (s_write_all(fd, text, SM__SECRET_FILE_BYTES) != 0)
        goto fail;
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (s_fsync_parent(path) != 0)
        goto fail;
    sodium_memzero(text, sizeof text);
    return 0;

fail:
    sodium_memzero(text, sizeof text);
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(path);
    return rc;
}

/*  Read the secret file at `path` into *out.  The file must be a regular
    file, not readable or writable by group or others, holding exactly 64 hex
    digits optionally followed by one "\n".  *out is written only on
    success.  Returns 0, SM_ENOIDENT (no such file), SM_ECORRUPT (anything
    else wrong with its contents or mode), SM_EIO.                            */
int
sm_identity_load(sm_identity *out, const char *path)
{
    assert(out != NULL && path != NULL);
    char text[SM__SECRET_FILE_BYTES + 2];   /* room to notice extra bytes */
    uint8_t seed[SM__SEED_BYTES];
    size_t len = 0;
    int rc = SM_EIO;
    struct stat st;

    /* O_NONBLOCK: a FIFO in its place must not hang us before fstat says
       it is no regular file; for regular files it changes nothing. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        rc = errno == ENOENT ? SM_ENOIDENT : SM_EIO;
        goto fail;
    }
    if (fstat(fd, &st) != 0)
        goto fail;
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        rc = SM_ECORRUPT;
        goto fail;
    }
    while (len < sizeof text) {
        ssize_t n = read(fd, text + len, sizeof text - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    rc = SM_ECORRUPT;
    if (len == SM__SECRET_FILE_BYTES && text[SM__SEED_HEX_BYTES] == '\n')
        len = SM__SEED_HEX_BYTES;
    if (len != SM__SEED_HEX_BYTES)
        goto fail;
    text[SM__SEED_HEX_BYTES] = '\0';
    if (sm_hex_decode(text, seed, sizeof seed) != 0)
        goto fail;
    sm_identity_from_seed(out, seed);
    rc = 0;

fail:
    sodium_memzero(text, sizeof text);
    sodium_memzero(seed, sizeof seed);
    if (fd >= 0)
        close(fd);
    return rc;
}

/*  Overwrite the whole identity, secret and public key, in a way the
    compiler may not optimise away.                                           */
void
sm_identity_wipe(sm_identity *id)
{
    assert(id != NULL);
    sodium_memzero(id, sizeof *id);
}

/*  Detached Ed25519 signature of msg[0..len) by `id` into sig.               */
void
sm_identity_sign(const sm_identity *id, const uint8_t *msg, size_t len,
                 uint8_t sig[SM_SIG_BYTES])
{
    assert(id != NULL && (msg != NULL || len == 0) && sig != NULL);
    int rc = crypto_sign_detached(sig, NULL, msg, len, id->secret);
    assert(rc == 0);
    (void)rc;
}

/*  0 if `sig` is pub's signature over msg[0..len), else SM_ESIG (which
    includes keys that are not valid curve points).                           */
int
sm_sig_verify(const sm_id *pub, const uint8_t *msg, size_t len,
              const uint8_t sig[SM_SIG_BYTES])
{
    assert(pub != NULL && (msg != NULL || len == 0) && sig != NULL);
    return crypto_sign_verify_detached(sig, msg, len, pub->b) == 0 ? 0 : SM_ESIG;
}

int
sm_id_to_curve(const sm_id *pub, uint8_t curve_pub[32])
{
    assert(pub != NULL && curve_pub != NULL);
    return crypto_sign_ed25519_pk_to_curve25519(curve_pub, pub->b) == 0 ? 0 : SM_EINVAL;
}

void
sm_identity_curve_secret(const sm_identity *id, uint8_t curve_secret[32])
{
    assert(id != NULL && curve_secret != NULL);
    int rc = crypto_sign_ed25519_sk_to_curve25519(curve_secret, id->secret);
    assert(rc == 0);
    (void)rc;
}

/*  n bytes from the system's random source.  Aborts (libsodium does) if
    there is none: a node without randomness must not make keys.             */
void
sm_random_bytes(uint8_t *buf, size_t n)
{
    assert(buf != NULL || n == 0);
    int rc = sm_crypto_init();
    assert(rc == 0);
    (void)rc;
    randombytes_buf(buf, n);
}

/*  BLAKE2b-256 of buf[0..len), unkeyed.                                      */
void
sm_identity_derive(const sm_identity *id, const char *purpose,
                   const uint8_t *msg, size_t len, uint8_t out[32])
{
    assert(id && purpose && (msg || len == 0) && out);
    crypto_generichash_state st;
    int rc = crypto_generichash_init(&st, id->secret, sizeof id->secret, 32);
    rc |= crypto_generichash_update(&st, (const uint8_t *) purpose, strlen(purpose) + 1);
    if (len)
        rc |= crypto_generichash_update(&st, msg, len);
    rc |= crypto_generichash_final(&st, out, 32);
    assert(rc == 0);
    (void) rc;
    sodium_memzero(&st, sizeof st);
}

void
sm_hash_bytes(const uint8_t *buf, size_t len, sm_hash *out)
{
    assert((buf != NULL || len == 0) && out != NULL);
    int rc = crypto_generichash(out->b, sizeof out->b, buf, len, NULL, 0);
    assert(rc == 0);
    (void)rc;
}

/*  Start an incremental BLAKE2b-256; same digest as sm_hash_bytes over the
    concatenation of everything passed to sm_hasher_update.                   */
void
sm_hasher_init(sm_hasher *h)
{
    assert(h != NULL);
    int rc = crypto_generichash_init((crypto_generichash_state *)h->opaque,
                                     NULL, 0, SM_HASH_BYTES);
    assert(rc == 0);
    (void)rc;
}

void
sm_hasher_update(sm_hasher *h, const uint8_t *buf, size_t len)
{
    assert(h != NULL && (buf != NULL || len == 0));
    int rc = crypto_generichash_update((crypto_generichash_state *)h->opaque,
                                       buf, len);
    assert(rc == 0);
    (void)rc;
}

/*  Finish into *out and wipe the state; h must be initialised again before
    reuse.                                                                    */
void
sm_hasher_final(sm_hasher *h, sm_hash *out)
{
    assert(h != NULL && out != NULL);
    int rc = crypto_generichash_final((crypto_generichash_state *)h->opaque,
                                      out->b, sizeof out->b);
    assert(rc == 0);
    (void)rc;
    sodium_memzero(h, sizeof *h);
}

/*  Lowercase hex of buf[0..n) into out[0..2n], NUL-terminated.  Constant
    time (libsodium's), since seeds go through it.                            */
void
sm_hex_encode(const uint8_t *buf, size_t n, char *out)
{
    assert((buf != NULL || n == 0) && out != NULL);
    sodium_bin2hex(out, 2 * n + 1, buf, n);
}

/*  The value of one hex digit, or -1.                                        */
static int
s_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*  Parse `hex`, which must be exactly 2n hex digits and then its NUL, into
    buf[0..n).  buf is written only on success.  0 or SM_EINVAL.              */
int
sm_hex_decode(const char *hex, uint8_t *buf, size_t n)
{
    assert(hex != NULL && (buf != NULL || n == 0));
    if (strnlen(hex, 2 * n + 1) != 2 * n)
        return SM_EINVAL;
    for (size_t i = 0; i < 2 * n; i++)
        if (s_hex_digit(hex[i]) < 0)
            return SM_EINVAL;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(s_hex_digit(hex[2 * i]) << 4 | s_hex_digit(hex[2 * i + 1]));
    return 0;
}

/*  Parse a node id: exactly 64 hex digits.  0 or SM_EINVAL.                 */
int
sm_id_parse(const char *hex, sm_id *out)
{
    assert(hex != NULL && out != NULL);
    return sm_hex_decode(hex, out->b, sizeof out->b);
}

/*  64 lowercase hex digits and a NUL.                                        */
void
sm_id_format(const sm_id *id, char out[SM_ID_HEX_BYTES + 1])
{
    assert(id != NULL && out != NULL);
    sm_hex_encode(id->b, sizeof id->b, out);
}

/* ---- sealed identities ----------------------------------------------- */

#define SM__SEAL_VERSION    1u
#define SM__SEAL_ALG        1u
#define SM__SEAL_AD_BYTES   58u
_Static_assert(SM__SEAL_AD_BYTES + crypto_secretstream_xchacha20poly1305_HEADERBYTES
               + SM__SEED_BYTES + crypto_secretstream_xchacha20poly1305_ABYTES
               == SM_SEALED_ID_BYTES, "sealed identity layout");
_Static_assert(crypto_pwhash_SALTBYTES == 16, "Argon2id salt size");
_Static_assert(crypto_secretstream_xchacha20poly1305_KEYBYTES == 32, "secretstream key size");

static void
s_be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);  p[3] = (uint8_t)v;
}

static uint32_t
s_be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*  Check the header of a sealed identity; its Argon2id limits out.          */
static int
s_sealed_check(const uint8_t *in, uint32_t *ops, uint32_t *mem_kib)
{
    if (in[0] != SM__SEAL_VERSION || in[1] != SM__SEAL_ALG)
        return SM_EVERSION;
    *ops = s_be32_get(in + 2);
    *mem_kib = s_be32_get(in + 6);
    if (*ops < crypto_pwhash_argon2id_OPSLIMIT_MIN || *ops > SM_SEAL_OPSLIMIT_MAX
        || (uint64_t)*mem_kib * 1024u < crypto_pwhash_argon2id_MEMLIMIT_MIN
        || (uint64_t)*mem_kib * 1024u > SM_SEAL_MEMLIMIT_MAX)
        return SM_EMALFORMED;
    return 0;
}

static int
s_seal_key(uint8_t key[32], const char *pass, size_t len, const uint8_t *salt,
           uint32_t ops, uint32_t mem_kib)
{
    if (crypto_pwhash(key, 32, pass, len, salt, ops, (size_t)mem_kib * 1024u,
                      crypto_pwhash_ALG_ARGON2ID13) != 0)
        return SM_ENOMEM;      /* the only documented failure: no memory */
    return 0;
}

int
sm_identity_seal(const sm_identity *id, const char *pass, size_t len,
                 uint8_t out[SM_SEALED_ID_BYTES])
{
    assert(id && pass && out);
    if (len == 0)
        return SM_EINVAL;
    if (sm_crypto_init() != 0)
        return SM_EIO;
    uint8_t key[32];
    crypto_secretstream_xchacha20poly1305_state st;
    out[0] = SM__SEAL_VERSION;
    out[1] = SM__SEAL_ALG;
    s_be32_put(out + 2, SM_SEAL_OPSLIMIT);
    s_be32_put(out + 6, SM_SEAL_MEMLIMIT_BYTES / 1024u);
    randombytes_buf(out + 10, 16);
    memcpy(out + 26, id->pub.b, SM_KEY_BYTES);
    int rc = s_seal_key(key, pass, len, out + 10, SM_SEAL_OPSLIMIT,
                        SM_SEAL_MEMLIMIT_BYTES / 1024u);
    if (rc == 0) {
        crypto_secretstream_xchacha20poly1305_init_push(&st, out + SM__SEAL_AD_BYTES, key);
        /* libsodium's secret key starts with the seed. */
        crypto_secretstream_xchacha20poly1305_push(
            &st, out + SM__SEAL_AD_BYTES + crypto_secretstream_xchacha20poly1305_HEADERBYTES,
            NULL, id->secret, SM__SEED_BYTES, out, SM__SEAL_AD_BYTES,
            crypto_secretstream_xchacha20poly1305_TAG_FINAL);
    }
    sodium_memzero(key, sizeof key);
    sodium_memzero(&st, sizeof st);
    return rc;
}

int
sm_sealed_id_node(const uint8_t in[SM_SEALED_ID_BYTES], sm_id *node)
{
    assert(in && node);
    uint32_t ops, mem;
    int rc = s_sealed_check(in, &ops, &mem);
    if (rc == 0)
        memcpy(node->b, in + 26, SM_KEY_BYTES);
    return rc;
}

int
sm_identity_unseal(const uint8_t in[SM_SEALED_ID_BYTES], const char *pass,
                   size_t len, sm_identity *out)
{
    assert(in && pass && out);
    uint32_t ops, mem;
    int rc = s_sealed_check(in, &ops, &mem);
    if (rc != 0)
        return rc;
    if (sm_crypto_init() != 0)
        return SM_EIO;
    uint8_t key[32], seed[SM__SEED_BYTES];
    unsigned char tag = 0;
    crypto_secretstream_xchacha20poly1305_state st;
    if ((rc = s_seal_key(key, pass, len, in + 10, ops, mem)) != 0)
        goto done;
    rc = SM_EPASSPHRASE;
    if (crypto_secretstream_xchacha20poly1305_init_pull(&st, in + SM__SEAL_AD_BYTES, key) != 0)
        goto done;
    if (crypto_secretstream_xchacha20poly1305_pull(
            &st, seed, NULL, &tag,
            in + SM__SEAL_AD_BYTES + crypto_secretstream_xchacha20poly1305_HEADERBYTES,
            SM__SEED_BYTES + crypto_secretstream_xchacha20poly1305_ABYTES,
            in, SM__SEAL_AD_BYTES) != 0
        || tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL)
        goto done;
    sm_identity_from_seed(out, seed);
    /* Authenticated with the seed, so only a bug could make these differ. */
    rc = memcmp(out->pub.b, in + 26, SM_KEY_BYTES) == 0 ? 0 : SM_EPASSPHRASE;
    if (rc != 0)
        sm_identity_wipe(out);
done:
    sodium_memzero(key, sizeof key);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(&st, sizeof st);
    return rc;
}

void
sm_sealed_to_text(const uint8_t in[SM_SEALED_ID_BYTES], char out[SM_SEALED_TEXT_BYTES + 1])
{
    assert(in && out);
    _Static_assert(sodium_base64_ENCODED_LEN(SM_SEALED_ID_BYTES,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 175u + 1u,
                   "sealed text length");
    memcpy(out, SM_SEALED_TEXT_PREFIX, 5);
    sodium_bin2base64(out + 5, 176, in, SM_SEALED_ID_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int
sm_sealed_from_text(const char *text, uint8_t out[SM_SEALED_ID_BYTES])
{
    assert(text && out);
    char compact[SM_SEALED_TEXT_BYTES + 1];
    size_t n = 0;
    for (const char *p = text; *p; p++) {
        if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            continue;
        if (n == SM_SEALED_TEXT_BYTES)
            return SM_EMALFORMED;
        compact[n++] = *p;
    }
    compact[n] = 0;
    if (n != SM_SEALED_TEXT_BYTES || memcmp(compact, SM_SEALED_TEXT_PREFIX, 5) != 0)
        return SM_EMALFORMED;
    size_t got = 0;
    if (sodium_base642bin(out, SM_SEALED_ID_BYTES, compact + 5, n - 5, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0
        || got != SM_SEALED_ID_BYTES)
        return SM_EMALFORMED;
    return 0;
}
