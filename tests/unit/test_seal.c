/*  Unit tests for sealed identities (src/identity.c, sm_identity_seal and
    friends): a node's key encrypted with a passphrase for backups and paper
    copies.

    Each test says what it checks.  Argon2id runs at its real cost (64 MiB,
    3 passes), so the tests seal few times.                                   */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "stallmesh/error.h"
#include "stallmesh/identity.h"

static const char s_pass[] = "correct horse battery staple";

static void
s_identity(sm_identity *id)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(i * 7 + 1);
    sm_identity_from_seed(id, seed);
}

/*  Sealing then unsealing with the same passphrase gives the same key back,
    and the sealed bytes name the node without the passphrase.             */
static void
test_round_trip(void **state)
{
    (void) state;
    sm_identity id, back;
    uint8_t sealed[SM_SEALED_ID_BYTES];
    sm_id node;
    s_identity(&id);
    assert_int_equal(sm_identity_seal(&id, s_pass, strlen(s_pass), sealed), 0);
    assert_int_equal(sm_sealed_id_node(sealed, &node), 0);
    assert_memory_equal(node.b, id.pub.b, sizeof node.b);
    assert_int_equal(sm_identity_unseal(sealed, s_pass, strlen(s_pass), &back), 0);
    assert_memory_equal(back.secret, id.secret, sizeof id.secret);
    assert_memory_equal(back.pub.b, id.pub.b, sizeof id.pub.b);
    /* The seed does not appear in the clear. */
    for (size_t i = 0; i + 32 <= sizeof sealed; i++)
        assert_memory_not_equal(sealed + i, id.secret, 32);
}

/*  Two seals of one key differ (random salt and nonce).                     */
static void
test_salted(void **state)
{
    (void) state;
    sm_identity id;
    uint8_t a[SM_SEALED_ID_BYTES], b[SM_SEALED_ID_BYTES];
    s_identity(&id);
    assert_int_equal(sm_identity_seal(&id, s_pass, strlen(s_pass), a), 0);
    assert_int_equal(sm_identity_seal(&id, s_pass, strlen(s_pass), b), 0);
    assert_memory_not_equal(a, b, sizeof a);
}

/*  A wrong passphrase, and one changed byte in each part of the sealed
    bytes (the parameters, salt, node id, header, ciphertext, tag), fail to
    unseal and leave no key behind.                                          */
static void
test_refusals(void **state)
{
    (void) state;
    sm_identity id, back;
    uint8_t sealed[SM_SEALED_ID_BYTES], bad[SM_SEALED_ID_BYTES];
    s_identity(&id);
    assert_int_equal(sm_identity_seal(&id, s_pass, strlen(s_pass), sealed), 0);
    memset(&back, 0x55, sizeof back);
    assert_int_equal(sm_identity_unseal(sealed, "correct horse battery stapl", 27, &back),
                     SM_EPASSPHRASE);
    const size_t at[] = { 9, 12, 40, 60, 90, 130 };
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        memcpy(bad, sealed, sizeof bad);
        bad[at[i]] ^= 0x01;
        assert_int_equal(sm_identity_unseal(bad, s_pass, strlen(s_pass), &back), SM_EPASSPHRASE);
    }
    assert_int_equal(sm_identity_seal(&id, "", 0, bad), SM_EINVAL);
}

/*  A sealed copy asking for more memory or passes than the maxima, or of an
    unknown version, is refused before any key derivation.                   */
static void
test_limits(void **state)
{
    (void) state;
    sm_identity id, back;
    uint8_t sealed[SM_SEALED_ID_BYTES], bad[SM_SEALED_ID_BYTES];
    sm_id node;
    s_identity(&id);
    assert_int_equal(sm_identity_seal(&id, s_pass, strlen(s_pass), sealed), 0);
    memcpy(bad, sealed, sizeof bad);
    bad[6] = 0x01;                     /* 16 GiB of memory */
    assert_int_equal(sm_identity_unseal(bad, s_pass, strlen(s_pass), &back), SM_EMALFORMED);
    memcpy(bad, sealed, sizeof bad);
    bad[5] = 17;                       /* 17 passes */
    assert_int_equal(sm_sealed_id_node(bad, &node), SM_EMALFORMED);
    memcpy(bad, sealed, sizeof bad);
    bad[0] = 2;
    assert_int_equal(sm_identity_unseal(bad, s_pass, strlen(s_pass), &back), SM_EVERSION);
}

/*  The text form round-trips, ignores spaces and line breaks, and refuses a
    wrong prefix, a wrong length and characters outside base64url.          */
static void
test_text(void **state)
{
    (void) state;
    uint8_t sealed[SM_SEALED_ID_BYTES], back[SM_SEALED_ID_BYTES];
    for (size_t i = 0; i < sizeof sealed; i++)
        sealed[i] = (uint8_t)(i * 13);
    char text[SM_SEALED_TEXT_BYTES + 1], lines[400];
    sm_sealed_to_text(sealed, text);
    assert_int_equal(strlen(text), SM_SEALED_TEXT_BYTES);
    assert_memory_equal(text, "smk1.", 5);
    assert_int_equal(sm_sealed_from_text(text, back), 0);
    assert_memory_equal(back, sealed, sizeof back);
    size_t n = 0;
    for (size_t i = 0; text[i]; i++) {
        if (i > 0 && i % 40 == 0)
            lines[n++] = '\n';
        lines[n++] = text[i];
    }
    lines[n++] = ' ';
    lines[n] = 0;
    memset(back, 0, sizeof back);
    assert_int_equal(sm_sealed_from_text(lines, back), 0);
    assert_memory_equal(back, sealed, sizeof back);
    char bad[SM_SEALED_TEXT_BYTES + 2];
    memcpy(bad, text, sizeof text);
    bad[3] = '2';
    assert_int_equal(sm_sealed_from_text(bad, back), SM_EMALFORMED);
    memcpy(bad, text, sizeof text);
    bad[50] = '+';
    assert_int_equal(sm_sealed_from_text(bad, back), SM_EMALFORMED);
    bad[SM_SEALED_TEXT_BYTES - 1] = 0;
    assert_int_equal(sm_sealed_from_text(bad, back), SM_EMALFORMED);
    memcpy(bad, text, sizeof text);
    bad[SM_SEALED_TEXT_BYTES] = 'A';
    bad[SM_SEALED_TEXT_BYTES + 1] = 0;
    assert_int_equal(sm_sealed_from_text(bad, back), SM_EMALFORMED);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_salted),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
