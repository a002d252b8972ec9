/*  Reservations: pickup codes, shopper tags and the [holds] limits
    (reserve.h says what each is for).  No I/O and no clock of its own.    */
#include "reserve.h"

#include <assert.h>
#include <ctype.h>
#include <string.h>

#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define S_ALPHABET_LEN (sizeof SM_RESERVE_ALPHABET - 1)
/* Bytes at or above this would bias the modulo: they are skipped. */
#define S_BYTE_LIMIT   (256u - 256u % S_ALPHABET_LEN)

sm_reserve_limits
sm_reserve_limits_or_default(const sm_reserve_limits *lim)
{
    sm_reserve_limits out = { 0 };
    if (lim)
        out = *lim;
    if (!out.max_units)
        out.max_units = SM_HOLD_MAX_UNITS_DEFAULT;
    if (!out.max_per_sku)
        out.max_per_sku = SM_HOLD_MAX_PER_SKU_DEFAULT;
    if (!out.per_device)
        out.per_device = SM_HOLD_PER_DEVICE_DEFAULT;
    if (!out.per_address)
        out.per_address = SM_HOLD_PER_ADDRESS_DEFAULT;
    return out;
}

void
sm_reserve_code(const uint8_t rand[SM_RESERVE_CODE_RAND_BYTES],
                char out[SM_HOLD_CODE_CHARS + 1])
{
    assert(rand && out);
    size_t at = 0;
    for (size_t i = 0; i < SM_RESERVE_CODE_RAND_BYTES && at < SM_HOLD_CODE_CHARS; i++)
        if (rand[i] < S_BYTE_LIMIT)
            out[at++] = SM_RESERVE_ALPHABET[rand[i] % S_ALPHABET_LEN];
    /* Out of unbiased bytes (chance about 10^-30): still a valid code. */
    for (size_t i = 0; at < SM_HOLD_CODE_CHARS; i++)
        out[at++] = SM_RESERVE_ALPHABET[rand[i % SM_RESERVE_CODE_RAND_BYTES] % S_ALPHABET_LEN];
    out[SM_HOLD_CODE_CHARS] = '\0';
}

bool
sm_reserve_code_valid(const char *code)
{
    if (!code || strlen(code) != SM_HOLD_CODE_CHARS)
        return false;
    for (size_t i = 0; i < SM_HOLD_CODE_CHARS; i++)
        if (!strchr(SM_RESERVE_ALPHABET, code[i]))
            return false;
    return true;
}

bool
sm_reserve_code_norm(const char *in, char out[SM_HOLD_CODE_CHARS + 1])
{
    assert(out);
    out[0] = '\0';
    if (!in)
        return false;
    size_t n = strlen(in);
    while (n && isspace((unsigned char) in[n - 1]))
        n--;
    while (n && isspace((unsigned char) *in)) {
        in++;
        n--;
    }
    if (n != SM_HOLD_CODE_CHARS)
        return false;
    for (size_t i = 0; i < n; i++)
        out[i] = (char) toupper((unsigned char) in[i]);
    out[n] = '\0';
    return sm_reserve_code_valid(out);
}

int
sm_reserve_code_pick(const uint8_t *rand, size_t n,
                     const char (*taken)[SM_HOLD_CODE_BYTES_MAX + 1],
                     size_t ntaken, char out[SM_HOLD_CODE_CHARS + 1])
{
    assert(rand && out && (taken || ntaken == 0));
    for (size_t d = 0; d < n; d++) {
        sm_reserve_code(rand + d * SM_RESERVE_CODE_RAND_BYTES, out);
        bool clash = false;
        for (size_t i = 0; i < ntaken && !clash; i++)
            clash = strcmp(taken[i], out) == 0;
        if (!clash)
            return 0;
    }
    out[0] = '\0';
    return SM_EHOLDCODE;
}

void
sm_reserve_tag(const char *purpose, const sm_id *market, const char *text,
               uint8_t out[SM_HOLD_TAG_BYTES])
{
    assert(purpose && market && text && out);
    /* "stallmesh.shopper" 0 purpose 0 market text: one hash input a tag. */
    uint8_t buf[64 + SM_KEY_BYTES + 256];
    size_t p = strlen(purpose), t = strlen(text);
    static const char head[] = "stallmesh.shopper";
    if (p > 32)
        p = 32;
    if (t > 200)
        t = 200;
    size_t at = 0;
    memcpy(buf, head, sizeof head);             /* with its NUL */
    at += sizeof head;
    memcpy(buf + at, purpose, p);
    at += p;
    buf[at++] = 0;
    memcpy(buf + at, market->b, SM_KEY_BYTES);
    at += SM_KEY_BYTES;
    memcpy(buf + at, text, t);
    at += t;
    sm_hash h;
    sm_entry_hash(buf, at, &h);
    memcpy(out, h.b, SM_HOLD_TAG_BYTES);
}

typedef struct {
    const sm_body *hold;
    uint64_t now_ms;
    uint64_t device_units, client_units;
    char (*taken)[SM_HOLD_CODE_BYTES_MAX + 1];
    size_t cap, n;
} s_usage;

static int
s_usage_each(const sm_hold *h, void *arg)
{
    s_usage *u = arg;
    if (u->taken && h->code[0] && u->n < u->cap)
        memcpy(u->taken[u->n++], h->code, sizeof u->taken[0]);
    if (h->expires_ms <= u->now_ms)
        return 0;                   /* expired: the sweep is about to end it */
    uint64_t units = 0;
    for (uint32_t i = 0; i < h->line_count; i++)
        units += h->lines[i].qty;
    const sm_body *b = u->hold;
    if (b->u.hold.has_device && h->has_device
        && memcmp(h->device, b->u.hold.device, SM_HOLD_TAG_BYTES) == 0)
        u->device_units += units;
    if (b->u.hold.has_client && h->has_client
        && memcmp(h->client, b->u.hold.client, SM_HOLD_TAG_BYTES) == 0)
        u->client_units += units;
    return 0;
}

int
sm_reserve_usage(sm_ledger *ledger, const sm_id *node, const sm_body *hold,
                 uint64_t now_ms, uint64_t *device_units, uint64_t *client_units,
                 char (*taken)[SM_HOLD_CODE_BYTES_MAX + 1], size_t cap,
                 size_t *ntaken)
{
    assert(ledger && node && hold && hold->kind == SM_KIND_HOLD);
    assert(device_units && client_units);
    s_usage u = { hold, now_ms, 0, 0, taken, taken ? cap : 0, 0 };
    int rc = sm_ledger_holds_each(ledger, node, s_usage_each, &u);
    *device_units = u.device_units;
    *client_units = u.client_units;
    if (ntaken)
        *ntaken = u.n;
    return rc;
}

static int
s_refuse(sm_reserve_refusal *why, const char *limit, uint32_t max, uint64_t wanted)
{
    if (why) {
        why->limit = limit;
        why->max = max;
        why->wanted = wanted;
    }
    return SM_EHOLDLIMIT;
}

int
sm_reserve_check(const sm_reserve_limits *lim_in, const sm_body *hold,
                 uint64_t device_units, uint64_t client_units,
                 sm_reserve_refusal *why)
{
    assert(hold && hold->kind == SM_KIND_HOLD);
    sm_reserve_limits lim = sm_reserve_limits_or_default(lim_in);
    uint64_t total = 0;
    uint32_t n = sm_hold_body_lines(hold);
    for (uint32_t i = 0; i < n; i++) {
        const char *sku;
        uint32_t qty;
        sm_hold_body_line(hold, i, &sku, &qty);
        if (qty > lim.max_per_sku)
            return s_refuse(why, "max_per_sku", lim.max_per_sku, qty);
        total += qty;
    }
    if (total > lim.max_units)
        return s_refuse(why, "max_units", lim.max_units, total);
    if (hold->u.hold.has_device && device_units + total > lim.per_device)
        return s_refuse(why, "per_device", lim.per_device, device_units + total);
    if (hold->u.hold.has_client && client_units + total > lim.per_address)
        return s_refuse(why, "per_address", lim.per_address, client_units + total);
    return 0;
}

int
sm_reserve_admit(sm_ledger *ledger, const sm_id *node, const sm_reserve_limits *lim,
                 const sm_body *hold, uint64_t now_ms, sm_reserve_refusal *why)
{
    uint64_t dev = 0, cli = 0;
    int rc = sm_reserve_usage(ledger, node, hold, now_ms, &dev, &cli, NULL, 0, NULL);
    if (rc != 0)
        return rc;
    return sm_reserve_check(lim, hold, dev, cli, why);
}
