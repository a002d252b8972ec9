/*  Log entries: the format's rules, names, hashes, signatures and the
    hybrid logical clock (proto/log.md).

    The bytes themselves are the codec's business (codec.c); this file holds
    what is true of an entry whatever its encoding: the rules every entry
    must obey (sm_entry_check, which the encoder and the decoder both apply,
    so no entry that breaks them is ever written or accepted), the names the
    JSON API prints, and the crypto over entry bytes:

        hash = BLAKE2b-256(entry bytes)                   (no key)
        sig  = Ed25519-sign(origin secret, hash)          (64 bytes)
        link = BLAKE2b-256(entry bytes || sig)            (next entry's prev)

    Signing the 32-byte hash rather than the entry keeps the signed message
    small and fixed, and lets a run be checked by hashing each entry once.

    The clock functions take time as an argument: they never read
    it.  libsodium is initialised on first use (sodium_init is idempotent but
    takes a lock, so a flag keeps it off the hot path).                      */
#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "stallmesh/entry.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "text.h"

#define S_HLC_MS_MAX ((UINT64_C(1) << 48) - 1)   /* 48-bit milliseconds */

/* ------------------------------------------------------------------------ */
/* Crypto                                                                    */

static atomic_bool s_sodium_ready;

/*  Make sure libsodium picked its implementations (and is usable) before
    the first hash or signature.  sodium_init cannot fail on the platforms
    stallmesh supports; if it ever does, nothing else would work either.   */
static void
s_sodium(void)
{
    if (atomic_load_explicit(&s_sodium_ready, memory_order_acquire))
        return;
    int rc = sodium_init();
    assert(rc >= 0);
    (void)rc;
    atomic_store_explicit(&s_sodium_ready, true, memory_order_release);
}

/*  BLAKE2b-256 of the entry bytes: what is signed.                          */
void
sm_entry_hash(const uint8_t *bytes, size_t len, sm_hash *out)
{
    assert((bytes != NULL || len == 0) && out != NULL);
    s_sodium();
    crypto_generichash(out->b, sizeof out->b, bytes, len, NULL, 0);
}

/*  BLAKE2b-256 of bytes || sig: the next entry's prev.                      */
void
sm_entry_link(const uint8_t *bytes, size_t len,
              const uint8_t sig[SM_SIG_BYTES], sm_hash *out)
{
    crypto_generichash_state st;

    assert((bytes != NULL || len == 0) && sig != NULL && out != NULL);
    s_sodium();
    crypto_generichash_init(&st, NULL, 0, sizeof out->b);
    crypto_generichash_update(&st, bytes, len);
    crypto_generichash_update(&st, sig, SM_SIG_BYTES);
    crypto_generichash_final(&st, out->b, sizeof out->b);
}

/*  Ed25519 over the entry hash with the 64-byte libsodium secret key.
    Deterministic: the same key and bytes give the same signature.          */
void
sm_entry_sign(const uint8_t *bytes, size_t len,
              const uint8_t secret[64], uint8_t sig[SM_SIG_BYTES])
{
    sm_hash h;

    assert(secret != NULL && sig != NULL);
    sm_entry_hash(bytes, len, &h);
    crypto_sign_detached(sig, NULL, h.b, sizeof h.b, secret);
}

/*  0 if sig is origin's signature over the entry hash, else SM_ESIG.       */
int
sm_entry_verify(const uint8_t *bytes, size_t len,
                const uint8_t sig[SM_SIG_BYTES], const sm_id *origin)
{
    sm_hash h;

    assert(sig != NULL && origin != NULL);
    sm_entry_hash(bytes, len, &h);
    if (crypto_sign_verify_detached(sig, h.b, sizeof h.b, origin->b) != 0)
        return SM_ESIG;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Rules                                                                     */

/*  A NUL-terminated string within s[0..size) of min..max bytes of text
    (sm__text_valid), else `err`.                                            */
static int
s_text(const char *s, size_t size, size_t min, size_t max, int err)
{
    size_t n = strnlen(s, size);
    if (n == size || n < min || n > max ||
        !sm__text_valid((const uint8_t *)s, n))
        return err;
    return 0;
}

/*  A sku: 1..SM_SKU_BYTES_MAX bytes of text, else SM_EBODY.               */
static int
s_sku(const char *sku)
{
    return s_text(sku, SM_SKU_BYTES_MAX + 1, 1, SM_SKU_BYTES_MAX, SM_EBODY);
}

/*  1..SM_QTY_MAX, else SM_EQTY.                                          */
static int
s_qty(uint64_t qty)
{
    return qty >= 1 && qty <= SM_QTY_MAX ? 0 : SM_EQTY;
}

/*  Minor units 0..SM_PRICE_MAX, else SM_EMONEY.                          */
static int
s_price(int64_t price)
{
    return price >= 0 && price <= SM_PRICE_MAX ? 0 : SM_EMONEY;
}

/*  Exactly three ASCII capital letters (ISO 4217 shape), NUL-terminated.    */
static int
s_currency(const char c[4])
{
    for (int i = 0; i < 3; i++)
        if (c[i] < 'A' || c[i] > 'Z')
            return SM_EMONEY;
    return c[3] == '\0' ? 0 : SM_EMONEY;
}

/*  Sale lines (priced) or return lines (price 0): 1..SM_SALE_LINES_MAX,
    each valid, skus distinct within the entry.                             */
static int
s_lines(const sm_line *lines, uint32_t count, bool priced)
{
    if (count < 1 || count > SM_SALE_LINES_MAX)
        return SM_EBODY;
    for (uint32_t i = 0; i < count; i++) {
        int rc = s_sku(lines[i].sku);
        if (rc == 0)
            rc = s_qty(lines[i].qty);
        if (rc == 0)
            rc = priced ? s_price(lines[i].price)
                        : (lines[i].price == 0 ? 0 : SM_EBODY);
        if (rc != 0)
            return rc;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(lines[i].sku, lines[j].sku) == 0)
                return SM_EBODY;
    }
    return 0;
}

/*  A seq of this format: min..SM_SEQ_MAX, else SM_EBODY.                 */
static int
s_seq(uint64_t seq, uint64_t min)
{
    return seq >= min && seq <= SM_SEQ_MAX ? 0 : SM_EBODY;
}

/*  Unix milliseconds within the clock's 48 bits, else SM_EBODY.           */
static int
s_unix_ms(uint64_t ms)
{
    return ms <= S_HLC_MS_MAX ? 0 : SM_EBODY;
}

/*  The body rules of e's kind (proto/log.md section 4).                   */
static int
s_body(const sm_entry *e)
{
    const sm_body *b = &e->body;
    int rc;

#define S_TRY(expr) do { if ((rc = (expr)) != 0) return rc; } while (0)
    switch (b->kind) {
    case SM_KIND_ITEM:
        S_TRY(s_sku(b->u.item.sku));
        S_TRY(s_text(b->u.item.name, sizeof b->u.item.name, 1,
                     SM_NAME_BYTES_MAX, SM_EBODY));
        S_TRY(s_price(b->u.item.price));
        S_TRY(s_currency(b->u.item.currency));
        return 0;
    case SM_KIND_STOCK_ADD:
        S_TRY(s_sku(b->u.stock_add.sku));
        S_TRY(s_qty(b->u.stock_add.qty));
        return 0;
    case SM_KIND_STOCK_MOVE:
        S_TRY(s_sku(b->u.stock_move.sku));
        S_TRY(s_qty(b->u.stock_move.qty));
        if (memcmp(b->u.stock_move.to.b, e->origin.b, SM_KEY_BYTES) == 0)
            return SM_EBODY;
        return 0;
    case SM_KIND_SALE:
        S_TRY(s_lines(b->u.sale.lines, b->u.sale.line_count, true));
        S_TRY(s_currency(b->u.sale.currency));
        if (b->u.sale.source < SM_SOURCE_IN_PERSON ||
            b->u.sale.source > SM_SOURCE_PREVIEW ||
            b->u.sale.payment < SM_PAY_CARD || b->u.sale.payment > SM_PAY_OTHER)
            return SM_EBODY;
        S_TRY(s_text(b->u.sale.external_id, sizeof b->u.sale.external_id, 0,
                     SM_EXTID_BYTES_MAX, SM_EBODY));
        S_TRY(s_seq(b->u.sale.hold_seq, 0));
        return 0;
    case SM_KIND_RETURN:
        S_TRY(s_seq(b->u.ret.sale_seq, 1));
        S_TRY(s_lines(b->u.ret.lines, b->u.ret.line_count, false));
        S_TRY(s_text(b->u.ret.reason, sizeof b->u.ret.reason, 0,
                     SM_REASON_BYTES_MAX, SM_EBODY));
        return 0;
    case SM_KIND_HOLD:
        S_TRY(s_sku(b->u.hold.sku));
        S_TRY(s_qty(b->u.hold.qty));
        S_TRY(s_unix_ms(b->u.hold.expires_ms));
        S_TRY(s_text(b->u.hold.code, sizeof b->u.hold.code, 0,
                     SM_HOLD_CODE_BYTES_MAX, SM_EBODY));
        if (b->u.hold.more_count > SM_HOLD_LINES_MAX - 1)
            return SM_EBODY;
        for (uint32_t i = 0; i < b->u.hold.more_count; i++) {
            const sm_line *l = &b->u.hold.more[i];
            S_TRY(s_sku(l->sku));
            S_TRY(s_qty(l->qty));
            if (l->price != 0 || strcmp(l->sku, b->u.hold.sku) == 0)
                return SM_EBODY;
            for (uint32_t j = 0; j < i; j++)
                if (strcmp(l->sku, b->u.hold.more[j].sku) == 0)
                    return SM_EBODY;
        }
        return 0;
    case SM_KIND_RELEASE:
        S_TRY(s_seq(b->u.release.hold_seq, 1));
        return 0;
    case SM_KIND_ADJUST:
        S_TRY(s_sku(b->u.adjust.sku));
        if (b->u.adjust.delta == 0 || b->u.adjust.delta > (int64_t)SM_QTY_MAX ||
            b->u.adjust.delta < -(int64_t)SM_QTY_MAX)
            return SM_EQTY;
        S_TRY(s_text(b->u.adjust.reason, sizeof b->u.adjust.reason, 0,
                     SM_REASON_BYTES_MAX, SM_EBODY));
        return 0;
    case SM_KIND_DROP:
        S_TRY(s_sku(b->u.drop.sku));
        S_TRY(s_qty(b->u.drop.qty));
        S_TRY(s_unix_ms(b->u.drop.starts_ms));
        S_TRY(s_unix_ms(b->u.drop.closes_ms));
        if (b->u.drop.mode == 0)       /* the short form: nothing more */
            return b->u.drop.per_shopper || b->u.drop.closes_ms
                   || b->u.drop.pickup_minutes || b->u.drop.has_commitment
                   ? SM_EBODY : 0;
        if (b->u.drop.mode > SM_DROP_RAFFLE
            || b->u.drop.per_shopper < 1 || b->u.drop.per_shopper > b->u.drop.qty
            || b->u.drop.pickup_minutes < 1
            || b->u.drop.pickup_minutes > SM_DROP_PICKUP_MIN_MAX)
            return SM_EBODY;
        if (b->u.drop.mode == SM_DROP_RAFFLE)
            return b->u.drop.closes_ms > b->u.drop.starts_ms && b->u.drop.has_commitment
                   ? 0 : SM_EBODY;
        return b->u.drop.closes_ms == 0 && !b->u.drop.has_commitment ? 0 : SM_EBODY;
    case SM_KIND_RAFFLE_ENTRY:
        S_TRY(s_seq(b->u.raffle_entry.drop_seq, 1));
        return 0;
    case SM_KIND_RAFFLE_DRAW:
        S_TRY(s_seq(b->u.raffle_draw.drop_seq, 1));
        if (b->u.raffle_draw.drop_seq >= e->seq
            || b->u.raffle_draw.head_count > SM_DRAW_HEADS_MAX
            || b->u.raffle_draw.winners > SM_QTY_MAX)
            return SM_EBODY;
        /* Heads in ascending origin order, each origin once. */
        for (uint32_t i = 0; i < b->u.raffle_draw.head_count; i++) {
            S_TRY(s_seq(b->u.raffle_draw.heads[i].seq, 1));
            if (i > 0 && memcmp(b->u.raffle_draw.heads[i - 1].origin.b,
                                b->u.raffle_draw.heads[i].origin.b, SM_KEY_BYTES) >= 0)
                return SM_EBODY;
        }
        return 0;
    case SM_KIND_ROSTER_ADMIT:
        S_TRY(s_text(b->u.admit.name, sizeof b->u.admit.name, 1,
                     SM_NAME_BYTES_MAX, SM_EBODY));
        if (b->u.admit.role < SM_ROLE_STALL || b->u.admit.role > SM_ROLE_RELAY)
            return SM_EBODY;
        return 0;
    case SM_KIND_ROSTER_REVOKE:
        S_TRY(s_seq(b->u.revoke.upto_seq, 0));
        return 0;
    default:
        return SM_EKIND;
    }
#undef S_TRY
}

/*  See entry.h; each rule and its code is listed in proto/log.md.          */
int
sm_entry_check(const sm_entry *e)
{
    static const sm_hash zero;

    assert(e != NULL);
    if (e->version != SM_ENTRY_VERSION)
        return SM_EVERSION;
    if (e->body.kind < SM_KIND_MIN || e->body.kind > SM_KIND_MAX)
        return SM_EKIND;
    if (s_seq(e->seq, 1) != 0)
        return SM_EBODY;
    if (e->seq == 1 && memcmp(e->prev.b, zero.b, sizeof zero.b) != 0)
        return SM_EBODY;
    return s_body(e);
}

/* ------------------------------------------------------------------------ */
/* Names                                                                     */

static const char *const s_kind_names[] = {
    [SM_KIND_ITEM] = "item",
    [SM_KIND_STOCK_ADD] = "stock.add",
    [SM_KIND_STOCK_MOVE] = "stock.move",
    [SM_KIND_SALE] = "sale",
    [SM_KIND_RETURN] = "return",
    [SM_KIND_HOLD] = "hold",
    [SM_KIND_RELEASE] = "release",
    [SM_KIND_ADJUST] = "adjust",
    [SM_KIND_DROP] = "drop",
    [SM_KIND_ROSTER_ADMIT] = "roster.admit",
    [SM_KIND_ROSTER_REVOKE] = "roster.revoke",
    [SM_KIND_RAFFLE_ENTRY] = "raffle.entry",
    [SM_KIND_RAFFLE_DRAW] = "raffle.draw",
};

static const char *const s_source_names[] = {
    [SM_SOURCE_IN_PERSON] = "in_person",
    [SM_SOURCE_LIVESTREAM] = "livestream",
    [SM_SOURCE_ONLINE] = "online",
    [SM_SOURCE_PREVIEW] = "preview",
};

static const char *const s_payment_names[] = {
    [SM_PAY_CARD] = "card",
    [SM_PAY_CASH] = "cash",
    [SM_PAY_QR] = "qr",
    [SM_PAY_OFFLINE_CARD] = "offline_card",
    [SM_PAY_OTHER] = "other",
};

static const char *const s_role_names[] = {
    [SM_ROLE_STALL] = "stall",
    [SM_ROLE_ORGANISER] = "organiser",
    [SM_ROLE_RELAY] = "relay",
};

#define S_COUNT(a) (sizeof (a) / sizeof (a)[0])

/*  names[v] for 1 <= v < count, else NULL (entry 0 of each table is unused). */
static const char *
s_name(const char *const *names, size_t count, long v)
{
    return v >= 1 && (size_t)v < count ? names[v] : NULL;
}

/*  The index of `name` in names[1..count), else 0.                          */
static int
s_parse(const char *const *names, size_t count, const char *name)
{
    assert(name != NULL);
    for (size_t i = 1; i < count; i++)
        if (strcmp(names[i], name) == 0)
            return (int)i;
    return 0;
}

/*  The name/parse pairs of entry.h: names as the JSON API prints them.     */
uint32_t
sm_hold_body_lines(const sm_body *b)
{
    assert(b && b->kind == SM_KIND_HOLD);
    return 1 + b->u.hold.more_count;
}

void
sm_hold_body_line(const sm_body *b, uint32_t i, const char **sku, uint32_t *qty)
{
    assert(b && b->kind == SM_KIND_HOLD && sku && qty);
    assert(i <= b->u.hold.more_count && b->u.hold.more_count < SM_HOLD_LINES_MAX);
    if (i == 0) {
        *sku = b->u.hold.sku;
        *qty = b->u.hold.qty;
    } else {
        *sku = b->u.hold.more[i - 1].sku;
        *qty = b->u.hold.more[i - 1].qty;
    }
}

const char *
sm_kind_name(sm_kind kind)
{
    return s_name(s_kind_names, S_COUNT(s_kind_names), (long)kind);
}

sm_kind
sm_kind_parse(const char *name)
{
    return (sm_kind)s_parse(s_kind_names, S_COUNT(s_kind_names), name);
}

const char *
sm_source_name(int source)
{
    return s_name(s_source_names, S_COUNT(s_source_names), source);
}

int
sm_source_parse(const char *name)
{
    return s_parse(s_source_names, S_COUNT(s_source_names), name);
}

const char *
sm_payment_name(int payment)
{
    return s_name(s_payment_names, S_COUNT(s_payment_names), payment);
}

int
sm_payment_parse(const char *name)
{
    return s_parse(s_payment_names, S_COUNT(s_payment_names), name);
}

const char *
sm_role_name(int role)
{
    return s_name(s_role_names, S_COUNT(s_role_names), role);
}

int
sm_role_parse(const char *name)
{
    return s_parse(s_role_names, S_COUNT(s_role_names), name);
}

/* ------------------------------------------------------------------------ */
/* Hybrid logical clock                                                      */

/*  The wall clock as an HLC value with counter 0; milliseconds beyond 48
    bits (year 10889) saturate rather than wrap.                            */
static uint64_t
s_wall(uint64_t now_ms)
{
    return SM_HLC_MAKE(now_ms < S_HLC_MS_MAX ? now_ms : S_HLC_MS_MAX, 0);
}

/*  max(last + 1, now_ms << 16).  When the counter of `last` is 0xffff the
    + 1 carries into the milliseconds, so the counter never wraps and the
    result is always greater than `last` (except at UINT64_MAX, which
    saturates: nothing can be greater).                                      */
uint64_t
sm_hlc_next(uint64_t last, uint64_t now_ms)
{
    uint64_t next = last == UINT64_MAX ? last : last + 1;
    uint64_t wall = s_wall(now_ms);
    return next > wall ? next : wall;
}

/*  max(last, remote, now_ms << 16), where a remote value whose milliseconds
    are more than SM_FUTURE_SKEW_MS ahead of now_ms is left out, so one peer
    with a wild clock cannot drag every clock of the market into the future.
    The result is a new `last`: the next local event takes sm_hlc_next of
    it, which orders it after everything seen.                               */
uint64_t
sm_hlc_merge(uint64_t last, uint64_t remote, uint64_t now_ms)
{
    uint64_t wall = s_wall(now_ms);
    uint64_t m = last > wall ? last : wall;
    uint64_t remote_ms = SM_HLC_MS(remote);
    bool too_far = remote_ms > now_ms && remote_ms - now_ms > SM_FUTURE_SKEW_MS;

    if (!too_far && remote > m)
        m = remote;
    return m;
}
