/*  Unit tests for src/identity.c: key derivation, the secret file, hex,
    signatures and hashing.

    The test calls libsodium directly (and uses the RFC 8032 test vector) to
    get values computed independently of the code under test.  Files are
    made in a fresh mkdtemp directory that each test removes again.          */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "stallmesh/error.h"
#include "stallmesh/identity.h"

/* RFC 8032 §7.1, TEST 1: secret (seed), public key, signature of "". */
static const char *s_rfc_seed =
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char *s_rfc_pub =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char *s_rfc_sig =
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

typedef struct {
    char dir[64];
    char path[128];
} s_tmp;

static int
s_setup(void **state)
{
    s_tmp *t = calloc(1, sizeof *t);
    assert_non_null(t);
    snprintf(t->dir, sizeof t->dir, "/tmp/sm-test-identity-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/identity", t->dir);
    assert_int_equal(sm_crypto_init(), 0);
    *state = t;
    return 0;
}

static int
s_teardown(void **state)
{
    s_tmp *t = *state;
    unlink(t->path);
    rmdir(t->dir);
    free(t);
    return 0;
}

/* Write `text` to path with `mode`, as a damaged or hand-made secret file. */
static void
s_write_file(const char *path, const char *text, size_t len, mode_t mode)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* The RFC 8032 seed gives the RFC's public key, and libsodium agrees. */
static void
test_seed_determinism(void **state)
{
    (void)state;
    uint8_t seed[32];
    assert_int_equal(sm_hex_decode(s_rfc_seed, seed, sizeof seed), 0);
    sm_identity a, b;
    sm_identity_from_seed(&a, seed);
    sm_identity_from_seed(&b, seed);
    assert_memory_equal(&a, &b, sizeof a);

    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&a.pub, hex);
    assert_string_equal(hex, s_rfc_pub);

    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, seed), 0);
    assert_memory_equal(pk, a.pub.b, sizeof pk);
    assert_memory_equal(sk, a.secret, sizeof sk);
}

/* Two generated identities differ and each signs verifiably. */
static void
test_generate(void **state)
{
    (void)state;
    sm_identity a, b;
    assert_int_equal(sm_identity_generate(&a), 0);
    assert_int_equal(sm_identity_generate(&b), 0);
    assert_memory_not_equal(a.pub.b, b.pub.b, SM_KEY_BYTES);
    uint8_t sig[SM_SIG_BYTES];
    sm_identity_sign(&a, (const uint8_t *)"x", 1, sig);
    assert_int_equal(sm_sig_verify(&a.pub, (const uint8_t *)"x", 1, sig), 0);
    assert_int_equal(sm_sig_verify(&b.pub, (const uint8_t *)"x", 1, sig), SM_ESIG);
}

/* A saved identity loads back identical, from a file of exactly 64 hex digits and a newline. */
static void
test_save_load_round_trip(void **state)
{
    s_tmp *t = *state;
    sm_identity a, b;
    assert_int_equal(sm_identity_generate(&a), 0);
    assert_int_equal(sm_identity_save(&a, t->path), 0);
    memset(&b, 0xa5, sizeof b);
    assert_int_equal(sm_identity_load(&b, t->path), 0);
    assert_memory_equal(&a, &b, sizeof a);

    char text[80];
    FILE *f = fopen(t->path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    assert_int_equal(n, 65);
    char seed_hex[65];
    sm_hex_encode(a.secret, 32, seed_hex);
    assert_memory_equal(text, seed_hex, 64);
    assert_int_equal(text[64], '\n');
}

/* The secret file is created with mode 0600 even under a permissive umask. */
static void
test_save_mode_0600(void **state)
{
    s_tmp *t = *state;
    sm_identity a;
    assert_int_equal(sm_identity_generate(&a), 0);
    mode_t old = umask(0);
    int rc = sm_identity_save(&a, t->path);
    umask(old);
    assert_int_equal(rc, 0);
    struct stat st;
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
}

/* Saving over an existing identity is refused and leaves the first one intact. */
static void
test_save_refuses_overwrite(void **state)
{
    s_tmp *t = *state;
    sm_identity a, b, c;
    assert_int_equal(sm_identity_generate(&a), 0);
    assert_int_equal(sm_identity_generate(&b), 0);
    assert_int_equal(sm_identity_save(&a, t->path), 0);
    assert_int_equal(sm_identity_save(&b, t->path), SM_EEXIST);
    assert_int_equal(sm_identity_load(&c, t->path), 0);
    assert_memory_equal(a.pub.b, c.pub.b, SM_KEY_BYTES);
}

/* Saving into a directory that does not exist is an I/O error and leaves nothing behind. */
static void
test_save_missing_dir(void **state)
{
    s_tmp *t = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/nodir/identity", t->dir);
    sm_identity a;
    assert_int_equal(sm_identity_generate(&a), 0);
    assert_int_equal(sm_identity_save(&a, path), SM_EIO);
}

/* Loading a file that does not exist is SM_ENOIDENT and leaves *out untouched. */
static void
test_load_missing(void **state)
{
    s_tmp *t = *state;
    sm_identity a, before;
    memset(&a, 0x5a, sizeof a);
    before = a;
    assert_int_equal(sm_identity_load(&a, t->path), SM_ENOIDENT);
    assert_memory_equal(&a, &before, sizeof a);
}

/* Malformed secret files (short, long, non-hex, trailing junk, empty) are SM_ECORRUPT. */
static void
test_load_corrupt(void **state)
{
    s_tmp *t = *state;
    sm_identity a;
    char good[66];
    snprintf(good, sizeof good, "%s\n", s_rfc_seed);
    struct { const char *text; size_t len; } bad[] = {
        { "", 0 },
        { good, 63 },                        /* one digit short */
        { "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\n\n", 66 },
        { "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f6g\n", 65 },
        { "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60 ", 65 },
        { "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f6000\n", 67 },
        { "9d61b19deffd5a60ba844af492ec2cc4\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\n", 65 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unlink(t->path);
        s_write_file(t->path, bad[i].text, bad[i].len, 0600);
        assert_int_equal(sm_identity_load(&a, t->path), SM_ECORRUPT);
    }
    /* The same seed without the newline, or with it, loads. */
    unlink(t->path);
    s_write_file(t->path, good, 64, 0600);
    assert_int_equal(sm_identity_load(&a, t->path), 0);
    unlink(t->path);
    s_write_file(t->path, good, 65, 0600);
    assert_int_equal(sm_identity_load(&a, t->path), 0);
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&a.pub, hex);
    assert_string_equal(hex, s_rfc_pub);
}

/* A secret file readable or writable by group or others is refused, as is a directory. */
static void
test_load_refuses_open_mode(void **state)
{
    s_tmp *t = *state;
    sm_identity a;
    char good[66];
    snprintf(good, sizeof good, "%s\n", s_rfc_seed);
    const mode_t modes[] = { 0640, 0604, 0644, 0660, 0602 };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        unlink(t->path);
        s_write_file(t->path, good, 65, modes[i]);
        assert_int_equal(sm_identity_load(&a, t->path), SM_ECORRUPT);
    }
    unlink(t->path);
    s_write_file(t->path, good, 65, 0400);
    assert_int_equal(sm_identity_load(&a, t->path), 0);
    unlink(t->path);
    assert_int_equal(mkdir(t->path, 0700), 0);
    assert_int_equal(sm_identity_load(&a, t->path), SM_ECORRUPT);
    assert_int_equal(rmdir(t->path), 0);
}

/* A FIFO in place of the secret file is refused at once instead of blocking the reader. */
static void
test_load_refuses_fifo(void **state)
{
    s_tmp *t = *state;
    sm_identity a;
    assert_int_equal(mkfifo(t->path, 0600), 0);
    assert_int_equal(sm_identity_load(&a, t->path), SM_ECORRUPT);
}

/* Wiping zeroes the whole identity. */
static void
test_wipe(void **state)
{
    (void)state;
    sm_identity a, zero;
    assert_int_equal(sm_identity_generate(&a), 0);
    memset(&zero, 0, sizeof zero);
    sm_identity_wipe(&a);
    assert_memory_equal(&a, &zero, sizeof a);
}

/* Hex encodes lowercase, decodes either case, and round-trips. */
static void
test_hex_round_trip(void **state)
{
    (void)state;
    const uint8_t bytes[] = { 0x00, 0x01, 0xab, 0xCD, 0xef, 0xff, 0x7f, 0x80 };
    char hex[2 * sizeof bytes + 1];
    sm_hex_encode(bytes, sizeof bytes, hex);
    assert_string_equal(hex, "0001abcdefff7f80");
    uint8_t back[sizeof bytes];
    assert_int_equal(sm_hex_decode(hex, back, sizeof back), 0);
    assert_memory_equal(back, bytes, sizeof bytes);
    assert_int_equal(sm_hex_decode("0001ABCDEFFF7F80", back, sizeof back), 0);
    assert_memory_equal(back, bytes, sizeof bytes);
    char empty[1];
    sm_hex_encode(bytes, 0, empty);
    assert_string_equal(empty, "");
    assert_int_equal(sm_hex_decode("", back, 0), 0);
}

/* Hex decoding refuses bad characters and wrong lengths, and writes nothing then. */
static void
test_hex_decode_refuses(void **state)
{
    (void)state;
    uint8_t buf[4], before[4] = { 1, 2, 3, 4 };
    const char *bad[] = {
        "0102030", "010203040", "01020304 ", " 01020304", "0102030g", "0x020304",
        "01-20304", "", "0102\n304", "010203\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(buf, before, sizeof buf);
        assert_int_equal(sm_hex_decode(bad[i], buf, sizeof buf), SM_EINVAL);
        assert_memory_equal(buf, before, sizeof buf);
    }
}

/* Ids parse from exactly 64 hex digits and format back in lowercase. */
static void
test_id_parse_format(void **state)
{
    (void)state;
    sm_id id;
    assert_int_equal(sm_id_parse(s_rfc_pub, &id), 0);
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&id, hex);
    assert_string_equal(hex, s_rfc_pub);
    char upper[SM_ID_HEX_BYTES + 1];
    for (size_t i = 0; i <= SM_ID_HEX_BYTES; i++)
        upper[i] = (char)(s_rfc_pub[i] >= 'a' ? s_rfc_pub[i] - 32 : s_rfc_pub[i]);
    sm_id up;
    assert_int_equal(sm_id_parse(upper, &up), 0);
    assert_memory_equal(up.b, id.b, SM_KEY_BYTES);
    assert_int_equal(sm_id_parse("d75a98", &id), SM_EINVAL);
    char longer[SM_ID_HEX_BYTES + 3];
    snprintf(longer, sizeof longer, "%s00", s_rfc_pub);
    assert_int_equal(sm_id_parse(longer, &id), SM_EINVAL);
}

/* Signing matches the RFC 8032 vector; the signature verifies, and a tampered message, signature or key fails with SM_ESIG. */
static void
test_sign_verify(void **state)
{
    (void)state;
    uint8_t seed[32], want[SM_SIG_BYTES], sig[SM_SIG_BYTES];
    assert_int_equal(sm_hex_decode(s_rfc_seed, seed, sizeof seed), 0);
    assert_int_equal(sm_hex_decode(s_rfc_sig, want, sizeof want), 0);
    sm_identity id;
    sm_identity_from_seed(&id, seed);
    sm_identity_sign(&id, NULL, 0, sig);
    assert_memory_equal(sig, want, sizeof sig);
    assert_int_equal(sm_sig_verify(&id.pub, NULL, 0, sig), 0);

    uint8_t msg[] = "3 jars of honey, 2 loaves";
    sm_identity_sign(&id, msg, sizeof msg, sig);
    assert_int_equal(sm_sig_verify(&id.pub, msg, sizeof msg, sig), 0);
    msg[0] ^= 1;
    assert_int_equal(sm_sig_verify(&id.pub, msg, sizeof msg, sig), SM_ESIG);
    msg[0] ^= 1;
    assert_int_equal(sm_sig_verify(&id.pub, msg, sizeof msg - 1, sig), SM_ESIG);
    sig[63] ^= 0x40;
    assert_int_equal(sm_sig_verify(&id.pub, msg, sizeof msg, sig), SM_ESIG);
    sig[63] ^= 0x40;
    sm_id other = id.pub;
    other.b[0] ^= 1;
    assert_int_equal(sm_sig_verify(&other, msg, sizeof msg, sig), SM_ESIG);
    sm_id zero = { { 0 } };
    assert_int_equal(sm_sig_verify(&zero, msg, sizeof msg, sig), SM_ESIG);
}

/* BLAKE2b-256 matches known digests and libsodium, and the incremental form matches the one-shot one. */
static void
test_hash(void **state)
{
    (void)state;
    sm_hash h;
    char hex[2 * SM_HASH_BYTES + 1];
    sm_hash_bytes(NULL, 0, &h);
    sm_hex_encode(h.b, sizeof h.b, hex);
    assert_string_equal(hex, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
    sm_hash_bytes((const uint8_t *)"abc", 3, &h);
    sm_hex_encode(h.b, sizeof h.b, hex);
    assert_string_equal(hex, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");

    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    uint8_t want[32];
    assert_int_equal(crypto_generichash(want, sizeof want, buf, sizeof buf, NULL, 0), 0);
    sm_hash_bytes(buf, sizeof buf, &h);
    assert_memory_equal(h.b, want, sizeof want);

    sm_hasher st;
    sm_hasher_init(&st);
    sm_hasher_update(&st, buf, 1);
    sm_hasher_update(&st, buf + 1, 0);
    sm_hasher_update(&st, buf + 1, 499);
    sm_hasher_update(&st, buf + 500, 500);
    sm_hash inc;
    sm_hasher_final(&st, &inc);
    assert_memory_equal(inc.b, want, sizeof want);
}

/* Random bytes are not constant (two 32-byte draws differ). */
static void
test_random_bytes(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    sm_random_bytes(a, sizeof a);
    sm_random_bytes(b, sizeof b);
    assert_memory_not_equal(a, b, sizeof a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seed_determinism, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_generate, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_save_load_round_trip, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_save_mode_0600, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_save_refuses_overwrite, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_save_missing_dir, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_load_missing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_load_corrupt, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_open_mode, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_fifo, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_wipe, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hex_round_trip, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hex_decode_refuses, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_id_parse_format, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sign_verify, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hash, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_random_bytes, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
