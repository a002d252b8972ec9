/*  Join tokens (include/stallmesh/token.h, proto/token.md): how a stall joins a
    market offline, from a line of text or a QR code.

    Text form:

        "smj1." base64url-without-padding( [1, market, name, currency,
                                            [endpoint...], entry, entry sig,
                                            token sig] )

    The array is the codec's canonical msgpack (sm__token_pack, src/codec.h;
    proto/token.md gives it byte by byte).  token sig is the organiser's
    Ed25519 signature over BLAKE2b-256 of the same array without its last
    element, so the name, currency and endpoints a stall will trust are the
    organiser's, not whoever relayed the token.

    Decoding refuses, all with SM_ETOKEN and without saying which check
    failed (a token is either the organiser's, intact and for this node, or
    useless; the CLI says "damaged, tampered with, or made for another
    node"):
      - text longer than SM_TOKEN_BYTES_MAX, a wrong prefix, base64 that is
        not the canonical URL-safe unpadded form (only the 64 alphabet
        characters, checked here; libsodium refuses non-zero trailing bits;
        so no two texts decode to the same bytes);
      - a body sm__token_unpack refuses (shape, limits, canonical form);
      - a token signature that is not the market key's;
      - an entry that does not decode, is not a roster.admit, whose origin
        or market is not the token's market, whose signature does not verify,
        or (when the caller says who it is) that admits another node.

    Tokens are part of the identity code (one module per dependency), so
    this file includes sodium.h for its base64 codec (everything else goes
    through identity.h). */
#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "codec.h"
#include "stallmesh/error.h"
#include "stallmesh/token.h"

#define SM__TOKEN_PREFIX_BYTES (sizeof SM_TOKEN_PREFIX - 1)
/* The largest body whose text fits SM_TOKEN_BYTES_MAX: 4 chars per 3 bytes. */
#define SM__TOKEN_BODY_BYTES_MAX ((SM_TOKEN_BYTES_MAX - SM__TOKEN_PREFIX_BYTES) / 4 * 3 + 2)

/*  True if c is ASCII white space (what a copy and paste may add).           */
static bool
s_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*  True if c is in the URL-safe base64 alphabet.  Checked before
    libsodium sees the text: its decoder (1.0.18) maps some bytes >= 0x80 to
    digits, so "AAA\xc3" decodes like "AAAA" and one token would have many
    texts.                                                                    */
static bool
s_is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
        || c == '-' || c == '_';
}

/*  True if s is a currency code: three ASCII capital letters.                */
static bool
s_is_currency(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return s[3] == '\0';
}

/*  The checks on t's admit entry that do not need the token signature: it
    decodes, is a roster.admit whose origin and market are t->market, its
    signature verifies, and it admits *self if self is non-NULL.  0 or
    SM_ETOKEN.                                                                */
static int
s_check_admit(const sm_token *t, const sm_id *self)
{
    sm_entry e;
    if (t->entry_len == 0 || t->entry_len > sizeof t->entry)
        return SM_ETOKEN;
    if (sm_entry_decode(t->entry, t->entry_len, &e) != 0)
        return SM_ETOKEN;
    if (e.body.kind != SM_KIND_ROSTER_ADMIT)
        return SM_ETOKEN;
    if (memcmp(e.origin.b, e.market.b, SM_KEY_BYTES) != 0
        || memcmp(e.market.b, t->market.b, SM_KEY_BYTES) != 0)
        return SM_ETOKEN;
    if (sm_entry_verify(t->entry, t->entry_len, t->entry_sig, &e.origin) != 0)
        return SM_ETOKEN;
    if (self != NULL && memcmp(e.body.u.admit.node.b, self->b, SM_KEY_BYTES) != 0)
        return SM_ETOKEN;
    return 0;
}

/*  The hash the token signature covers: BLAKE2b-256 of the unsigned
    7-element pack of t.  0, or the codec's SM_ETOOBIG / SM_EINVAL.          */
static int
s_token_hash(const sm_token *t, sm_hash *out)
{
    uint8_t body[SM__TOKEN_BODY_BYTES_MAX];
    size_t len = 0;
    int rc = sm__token_pack(t, NULL, body, sizeof body, &len);
    if (rc != 0)
        return rc;
    sm_hash_bytes(body, len, out);
    return 0;
}

/*  Sign t as `organiser` and write its text into text[0..cap).  Refuses
    (SM_EINVAL) a token that sm_token_decode would refuse for any node: an
    organiser that is not t->market, a bad currency or endpoint count, an
    admit entry that is not the market's own valid roster.admit.  SM_ETOOBIG
    if the text would exceed cap or SM_TOKEN_BYTES_MAX.  text is written only
    on success.                                                               */
int
sm_token_encode(const sm_token *t, const sm_identity *organiser,
                char *text, size_t cap)
{
    assert(t != NULL && organiser != NULL && text != NULL);
    uint8_t body[SM__TOKEN_BODY_BYTES_MAX];
    uint8_t tsig[SM_SIG_BYTES];
    size_t len = 0;
    sm_hash hash;

    if (memcmp(organiser->pub.b, t->market.b, SM_KEY_BYTES) != 0)
        return SM_EINVAL;
    if (t->endpoint_count > SM_ENDPOINTS_MAX || !s_is_currency(t->currency))
        return SM_EINVAL;
    if (s_check_admit(t, NULL) != 0)
        return SM_EINVAL;

    int rc = s_token_hash(t, &hash);
    if (rc != 0)
        return rc;
    sm_identity_sign(organiser, hash.b, sizeof hash.b, tsig);
    rc = sm__token_pack(t, tsig, body, sizeof body, &len);
    if (rc != 0)
        return rc;

    size_t b64_bytes = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    size_t text_bytes = SM__TOKEN_PREFIX_BYTES + b64_bytes;   /* with the NUL */
    if (text_bytes - 1 > SM_TOKEN_BYTES_MAX || text_bytes > cap)
        return SM_ETOOBIG;
    memcpy(text, SM_TOKEN_PREFIX, SM__TOKEN_PREFIX_BYTES);
    sodium_bin2base64(text + SM__TOKEN_PREFIX_BYTES, b64_bytes, body, len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert(strlen(text) == text_bytes - 1);
    return 0;
}

/*  Parse and verify `text` (see the top of this file for every check), for
    node *self if self is non-NULL.  *out is written only on success.  0 or
    SM_ETOKEN.                                                                */
int
sm_token_decode(const char *text, const sm_id *self, sm_token *out)
{
    assert(text != NULL && out != NULL);
    static const size_t body_cap = SM__TOKEN_BODY_BYTES_MAX;
    uint8_t body[SM__TOKEN_BODY_BYTES_MAX];
    uint8_t tsig[SM_SIG_BYTES];
    sm_token t;
    sm_hash hash;

    while (s_is_space(*text))
        text++;
    size_t len = strlen(text);
    while (len > 0 && s_is_space(text[len - 1]))
        len--;
    if (len > SM_TOKEN_BYTES_MAX)
        return SM_ETOKEN;

    if (len <= SM__TOKEN_PREFIX_BYTES
        || memcmp(text, SM_TOKEN_PREFIX, SM__TOKEN_PREFIX_BYTES) != 0)
        return SM_ETOKEN;
    const char *b64 = text + SM__TOKEN_PREFIX_BYTES;
    size_t b64_len = len - SM__TOKEN_PREFIX_BYTES;
    size_t body_len = 0;
    const char *end = NULL;
    for (size_t i = 0; i < b64_len; i++)
        if (!s_is_b64url(b64[i]))
            return SM_ETOKEN;
    if (sodium_base642bin(body, body_cap, b64, b64_len, NULL, &body_len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0
        || end != b64 + b64_len)
        return SM_ETOKEN;

    memset(&t, 0, sizeof t);
    if (sm__token_unpack(body, body_len, &t, tsig) != 0)
        return SM_ETOKEN;
    if (t.endpoint_count > SM_ENDPOINTS_MAX || !s_is_currency(t.currency))
        return SM_ETOKEN;
    if (s_token_hash(&t, &hash) != 0)
        return SM_ETOKEN;
    if (sm_sig_verify(&t.market, hash.b, sizeof hash.b, tsig) != 0)
        return SM_ETOKEN;
    if (s_check_admit(&t, self) != 0)
        return SM_ETOKEN;
    *out = t;
    return 0;
}
