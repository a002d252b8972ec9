/*  Unit tests for src/token.c: join tokens round-trip, and every way of
    damaging, forging or misdirecting one is refused with SM_ETOKEN.

    Forged tokens are built here by hand (the codec's pack, a signature by
    whoever the test likes, libsodium's base64) because sm_token_encode
    refuses to produce them.                                                  */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "codec.h"
#include "stallmesh/error.h"
#include "stallmesh/token.h"

#define S_TEXT_CAP (SM_TOKEN_BYTES_MAX + 1)

typedef struct {
    sm_identity organiser, stall, mallory;
    sm_token token;            /* a good token for `stall` */
    char text[S_TEXT_CAP];     /* its text */
} s_fixture;

/* A deterministic identity from a one-byte seed pattern. */
static void
s_identity(sm_identity *id, uint8_t fill)
{
    uint8_t seed[32];
    memset(seed, fill, sizeof seed);
    sm_identity_from_seed(id, seed);
}

/*  Encode an entry of `kind` in `market` authored by `origin`, admitting
    `node` (for admits), signed with `signer`'s secret, into t->entry.        */
static void
s_make_entry(sm_token *t, sm_kind kind, const sm_id *market, const sm_id *origin,
             const sm_id *node, const sm_identity *signer)
{
    sm_entry e;
    memset(&e, 0, sizeof e);
    e.version = SM_ENTRY_VERSION;
    e.market = *market;
    e.origin = *origin;
    e.seq = 1;
    e.hlc = SM_HLC_MAKE(1717236000000ULL, 0);
    e.body.kind = kind;
    if (kind == SM_KIND_ROSTER_ADMIT) {
        e.body.u.admit.node = *node;
        snprintf(e.body.u.admit.name, sizeof e.body.u.admit.name, "Honey & Hive");
        e.body.u.admit.role = SM_ROLE_STALL;
    } else {
        assert_int_equal(kind, SM_KIND_STOCK_ADD);
        snprintf(e.body.u.stock_add.sku, sizeof e.body.u.stock_add.sku, "honey-340g");
        e.body.u.stock_add.qty = 12;
    }
    assert_int_equal(sm_entry_encode(&e, t->entry, sizeof t->entry, &t->entry_len), 0);
    sm_entry_sign(t->entry, t->entry_len, signer->secret, t->entry_sig);
}

/* The token fields apart from its entry: market, name, currency, endpoints. */
static void
s_make_token(sm_token *t, const sm_id *market)
{
    memset(t, 0, sizeof *t);
    t->market = *market;
    snprintf(t->name, sizeof t->name, "Saturday Farmers' Market");
    memcpy(t->currency, "GBP", 4);
    t->endpoint_count = 2;
    snprintf(t->endpoints[0], sizeof t->endpoints[0], "tcp://192.168.1.10:7400");
    snprintf(t->endpoints[1], sizeof t->endpoints[1], "tcp://market.local:7400");
}

/*  Text of t with a token signature by `signer`, whoever that is: what a
    forger would produce.                                                     */
static void
s_forge(const sm_token *t, const sm_identity *signer, char *text, size_t cap)
{
    uint8_t body[SM_TOKEN_BYTES_MAX], tsig[SM_SIG_BYTES];
    size_t len = 0;
    sm_hash hash;
    assert_int_equal(sm__token_pack(t, NULL, body, sizeof body, &len), 0);
    sm_hash_bytes(body, len, &hash);
    sm_identity_sign(signer, hash.b, sizeof hash.b, tsig);
    assert_int_equal(sm__token_pack(t, tsig, body, sizeof body, &len), 0);
    size_t need = 5 + sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_true(need <= cap);
    memcpy(text, "smj1.", 5);
    sodium_bin2base64(text + 5, cap - 5, body, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static int
s_setup(void **state)
{
    assert_int_equal(sm_crypto_init(), 0);
    s_fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    s_identity(&f->organiser, 0x11);
    s_identity(&f->stall, 0x22);
    s_identity(&f->mallory, 0x33);
    s_make_token(&f->token, &f->organiser.pub);
    s_make_entry(&f->token, SM_KIND_ROSTER_ADMIT, &f->organiser.pub, &f->organiser.pub,
                 &f->stall.pub, &f->organiser);
    assert_int_equal(sm_token_encode(&f->token, &f->organiser, f->text, sizeof f->text), 0);
    *state = f;
    return 0;
}

static int
s_teardown(void **state)
{
    free(*state);
    return 0;
}

/* A token decodes, for its node and for anyone, to exactly the fields it was made from. */
static void
test_round_trip(void **state)
{
    s_fixture *f = *state;
    assert_memory_equal(f->text, SM_TOKEN_PREFIX, 5);
    assert_true(strlen(f->text) <= SM_TOKEN_BYTES_MAX);
    for (const char *p = f->text + 5; *p; p++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));

    sm_token out;
    memset(&out, 0, sizeof out);
    assert_int_equal(sm_token_decode(f->text, &f->stall.pub, &out), 0);
    assert_memory_equal(out.market.b, f->organiser.pub.b, SM_KEY_BYTES);
    assert_string_equal(out.name, f->token.name);
    assert_string_equal(out.currency, "GBP");
    assert_int_equal(out.endpoint_count, 2);
    assert_string_equal(out.endpoints[0], f->token.endpoints[0]);
    assert_string_equal(out.endpoints[1], f->token.endpoints[1]);
    assert_int_equal(out.entry_len, f->token.entry_len);
    assert_memory_equal(out.entry, f->token.entry, out.entry_len);
    assert_memory_equal(out.entry_sig, f->token.entry_sig, SM_SIG_BYTES);

    sm_token anyone;
    assert_int_equal(sm_token_decode(f->text, NULL, &anyone), 0);
    assert_memory_equal(anyone.entry, out.entry, out.entry_len);

    /* Encoding is deterministic (Ed25519 is), so the same token gives the same text. */
    char again[S_TEXT_CAP];
    assert_int_equal(sm_token_encode(&out, &f->organiser, again, sizeof again), 0);
    assert_string_equal(again, f->text);
}

/* White space around a pasted token is ignored; inside it, it is not. */
static void
test_white_space(void **state)
{
    s_fixture *f = *state;
    char padded[S_TEXT_CAP + 16];
    sm_token out;
    snprintf(padded, sizeof padded, " \t\r\n%s\r\n \n", f->text);
    assert_int_equal(sm_token_decode(padded, &f->stall.pub, &out), 0);
    size_t len = strlen(f->text);
    snprintf(padded, sizeof padded, "%.*s %s", (int)(len / 2), f->text, f->text + len / 2);
    assert_int_equal(sm_token_decode(padded, &f->stall.pub, &out), SM_ETOKEN);
}

/* Replacing any one character of the text, with any other character, or deleting it, is refused and leaves *out untouched. */
static void
test_every_single_change_refused(void **state)
{
    s_fixture *f = *state;
    static const char subst[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.:~\x01\x7f"
        "\x80\xc3\xff";   /* libsodium alone would take some bytes >= 0x80 as digits */
    size_t len = strlen(f->text);
    char mutated[S_TEXT_CAP];
    sm_token out, before;
    memset(&out, 0x5a, sizeof out);
    before = out;
    size_t tried = 0;
    for (size_t i = 0; i < len; i++) {
        for (const char *c = subst; *c; c++) {
            if (*c == f->text[i])
                continue;
            memcpy(mutated, f->text, len + 1);
            mutated[i] = *c;
            if (sm_token_decode(mutated, &f->stall.pub, &out) != SM_ETOKEN)
                fail_msg("change at %zu to 0x%02x was accepted", i, (unsigned char)*c);
            tried++;
        }
        memcpy(mutated, f->text, i);
        memcpy(mutated + i, f->text + i + 1, len - i);
        if (sm_token_decode(mutated, &f->stall.pub, &out) != SM_ETOKEN)
            fail_msg("deleting character %zu was accepted", i);
    }
    assert_true(tried > len * 60);
    assert_memory_equal(&out, &before, sizeof out);
}

/* Empty text, a bare or wrong prefix, padding, and text over the limit are refused. */
static void
test_bad_text_refused(void **state)
{
    s_fixture *f = *state;
    sm_token out;
    const char *bad[] = { "", "   ", "smj1.", "smj1", "SMJ1.AAAA", "smj2.AAAA", "smj1.AAAA", "smj1.=" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sm_token_decode(bad[i], NULL, &out), SM_ETOKEN);

    char padded[S_TEXT_CAP + 4];
    snprintf(padded, sizeof padded, "%s==", f->text);
    assert_int_equal(sm_token_decode(padded, NULL, &out), SM_ETOKEN);

    char *huge = malloc(SM_TOKEN_BYTES_MAX + 2);
    assert_non_null(huge);
    memcpy(huge, "smj1.", 5);
    memset(huge + 5, 'A', SM_TOKEN_BYTES_MAX - 4);
    huge[SM_TOKEN_BYTES_MAX + 1] = '\0';
    assert_int_equal(sm_token_decode(huge, NULL, &out), SM_ETOKEN);
    free(huge);
}

/* A good token decoded by another node (self = that node) is refused. */
static void
test_other_node_refused(void **state)
{
    s_fixture *f = *state;
    sm_token out;
    assert_int_equal(sm_token_decode(f->text, &f->mallory.pub, &out), SM_ETOKEN);
    assert_int_equal(sm_token_decode(f->text, &f->organiser.pub, &out), SM_ETOKEN);
}

/* A token whose token signature, or whose entry signature, is not the organiser's is refused; encode refuses a non-organiser too. */
static void
test_non_organiser_signature_refused(void **state)
{
    s_fixture *f = *state;
    char text[S_TEXT_CAP];
    sm_token out;

    /* The forging path itself is sound: signed by the organiser it decodes. */
    s_forge(&f->token, &f->organiser, text, sizeof text);
    assert_string_equal(text, f->text);

    /* Good entry, token signed by someone else (say, to change the endpoints). */
    sm_token t = f->token;
    snprintf(t.endpoints[0], sizeof t.endpoints[0], "tcp://10.6.6.6:7400");
    s_forge(&t, &f->mallory, text, sizeof text);
    assert_int_equal(sm_token_decode(text, &f->stall.pub, &out), SM_ETOKEN);

    /* Entry claiming the organiser as origin but signed by someone else. */
    t = f->token;
    s_make_entry(&t, SM_KIND_ROSTER_ADMIT, &f->organiser.pub, &f->organiser.pub,
                 &f->stall.pub, &f->mallory);
    s_forge(&t, &f->organiser, text, sizeof text);
    assert_int_equal(sm_token_decode(text, &f->stall.pub, &out), SM_ETOKEN);
    assert_int_equal(sm_token_encode(&t, &f->organiser, text, sizeof text), SM_EINVAL);

    /* Entry validly signed by its author, who is not the organiser. */
    t = f->token;
    s_make_entry(&t, SM_KIND_ROSTER_ADMIT, &f->organiser.pub, &f->mallory.pub,
                 &f->stall.pub, &f->mallory);
    s_forge(&t, &f->organiser, text, sizeof text);
    assert_int_equal(sm_token_decode(text, &f->stall.pub, &out), SM_ETOKEN);

    /* An entry for another market inside this market's token. */
    t = f->token;
    s_make_entry(&t, SM_KIND_ROSTER_ADMIT, &f->mallory.pub, &f->mallory.pub,
                 &f->stall.pub, &f->mallory);
    s_forge(&t, &f->organiser, text, sizeof text);
    assert_int_equal(sm_token_decode(text, &f->stall.pub, &out), SM_ETOKEN);

    /* Encoding with an identity that is not the market is refused. */
    assert_int_equal(sm_token_encode(&f->token, &f->mallory, text, sizeof text), SM_EINVAL);
}

/* A token carrying a validly signed entry of another kind than roster.admit is refused, and encode will not make one. */
static void
test_other_kind_refused(void **state)
{
    s_fixture *f = *state;
    char text[S_TEXT_CAP];
    sm_token out, t = f->token;
    s_make_entry(&t, SM_KIND_STOCK_ADD, &f->organiser.pub, &f->organiser.pub,
                 NULL, &f->organiser);
    s_forge(&t, &f->organiser, text, sizeof text);
    assert_int_equal(sm_token_decode(text, &f->stall.pub, &out), SM_ETOKEN);
    assert_int_equal(sm_token_decode(text, NULL, &out), SM_ETOKEN);
    assert_int_equal(sm_token_encode(&t, &f->organiser, text, sizeof text), SM_EINVAL);
}

/* Encode refuses a bad currency and a text buffer too small for the token. */
static void
test_encode_refuses(void **state)
{
    s_fixture *f = *state;
    char text[S_TEXT_CAP];
    sm_token t = f->token;
    memcpy(t.currency, "gbp", 4);
    assert_int_equal(sm_token_encode(&t, &f->organiser, text, sizeof text), SM_EINVAL);
    size_t len = strlen(f->text);
    assert_int_equal(sm_token_encode(&f->token, &f->organiser, text, len), SM_ETOOBIG);
    assert_int_equal(sm_token_encode(&f->token, &f->organiser, text, len + 1), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_white_space, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_every_single_change_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_text_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_other_node_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_non_organiser_signature_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_other_kind_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_encode_refuses, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
