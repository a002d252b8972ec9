/*  Entry fixtures and an independent entry encoder; see fixtures.h.        */
#include <string.h>

#include "support/fixtures.h"

static void
s_fill(uint8_t *b, size_t n, uint8_t start)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(start + i);
}

void
fx_entry(sm_kind kind, sm_entry *e)
{
    memset(e, 0, sizeof *e);
    e->version = SM_ENTRY_VERSION;
    s_fill(e->market.b, sizeof e->market.b, 0x10);
    s_fill(e->origin.b, sizeof e->origin.b, 0x40);
    e->seq = 3;
    s_fill(e->prev.b, sizeof e->prev.b, 0x80);
    e->hlc = SM_HLC_MAKE(1717000000000ULL, 7);
    e->body.kind = kind;
    sm_body *b = &e->body;
    switch (kind) {
    case SM_KIND_ITEM:
        strcpy(b->u.item.sku, "TEE-BLK-M");
        strcpy(b->u.item.name, "T-shirt, black, M");
        b->u.item.price = 2500;
        strcpy(b->u.item.currency, "EUR");
        break;
    case SM_KIND_STOCK_ADD:
        strcpy(b->u.stock_add.sku, "TEE-BLK-M");
        b->u.stock_add.qty = 40;
        break;
    case SM_KIND_STOCK_MOVE:
        strcpy(b->u.stock_move.sku, "TEE-BLK-M");
        b->u.stock_move.qty = 5;
        s_fill(b->u.stock_move.to.b, SM_KEY_BYTES, 0xa0);
        break;
    case SM_KIND_SALE:
        b->u.sale.line_count = 1;
        strcpy(b->u.sale.lines[0].sku, "TEE-BLK-M");
        b->u.sale.lines[0].qty = 2;
        b->u.sale.lines[0].price = 2500;
        strcpy(b->u.sale.currency, "EUR");
        b->u.sale.source = SM_SOURCE_IN_PERSON;
        b->u.sale.payment = SM_PAY_CARD;
        strcpy(b->u.sale.external_id, "till-1:0042");
        b->u.sale.hold_seq = 0;
        break;
    case SM_KIND_RETURN:
        b->u.ret.sale_seq = 2;
        b->u.ret.line_count = 1;
        strcpy(b->u.ret.lines[0].sku, "TEE-BLK-M");
        b->u.ret.lines[0].qty = 1;
        strcpy(b->u.ret.reason, "wrong size");
        break;
    case SM_KIND_HOLD:
        strcpy(b->u.hold.sku, "TEE-BLK-M");
        b->u.hold.qty = 1;
        b->u.hold.expires_ms = 1717000900000ULL;
        break;
    case SM_KIND_RELEASE:
        b->u.release.hold_seq = 2;
        break;
    case SM_KIND_ADJUST:
        strcpy(b->u.adjust.sku, "TEE-BLK-M");
        b->u.adjust.delta = -3;
        strcpy(b->u.adjust.reason, "stock-take");
        break;
    case SM_KIND_DROP:
        strcpy(b->u.drop.sku, "TEE-LTD");
        b->u.drop.qty = 50;
        b->u.drop.starts_ms = 1717003600000ULL;
        break;
    case SM_KIND_ROSTER_ADMIT:
        s_fill(b->u.admit.node.b, SM_KEY_BYTES, 0xa0);
        strcpy(b->u.admit.name, "Stall 7: Ana's prints");
        b->u.admit.role = SM_ROLE_STALL;
        break;
    case SM_KIND_ROSTER_REVOKE:
        s_fill(b->u.revoke.node.b, SM_KEY_BYTES, 0xa0);
        b->u.revoke.upto_seq = 17;
        break;
    case SM_KIND_RAFFLE_ENTRY:
        s_fill(b->u.raffle_entry.drop_origin.b, SM_KEY_BYTES, 0x40);
        b->u.raffle_entry.drop_seq = 2;
        s_fill(b->u.raffle_entry.device, SM_HOLD_TAG_BYTES, 0xd0);
        break;
    case SM_KIND_RAFFLE_DRAW:
        b->u.raffle_draw.drop_seq = 2;
        s_fill(b->u.raffle_draw.secret.b, SM_HASH_BYTES, 0x5e);
        b->u.raffle_draw.head_count = 1;
        s_fill(b->u.raffle_draw.heads[0].origin.b, SM_KEY_BYTES, 0x40);
        b->u.raffle_draw.heads[0].seq = 2;
        b->u.raffle_draw.winners = 0;
        break;
    }
}

static void
s_lines(mpw *w, const sm_line *l, uint32_t n, int priced)
{
    mpw_arr(w, n);
    for (uint32_t i = 0; i < n; i++) {
        mpw_arr(w, priced ? 3 : 2);
        mpw_str(w, l[i].sku);
        mpw_uint(w, l[i].qty);
        if (priced)
            mpw_uint(w, (uint64_t)l[i].price);
    }
}

void
fx_encode(const sm_entry *e, mpw *w)
{
    const sm_body *b = &e->body;

    mpw_arr(w, 8);
    mpw_uint(w, e->version);
    mpw_bin(w, e->market.b, SM_KEY_BYTES);
    mpw_bin(w, e->origin.b, SM_KEY_BYTES);
    mpw_uint(w, e->seq);
    mpw_bin(w, e->prev.b, SM_HASH_BYTES);
    mpw_uint(w, e->hlc);
    mpw_uint(w, (uint64_t)b->kind);
    switch (b->kind) {
    case SM_KIND_ITEM:
        mpw_arr(w, 4); mpw_str(w, b->u.item.sku); mpw_str(w, b->u.item.name);
        mpw_uint(w, (uint64_t)b->u.item.price); mpw_str(w, b->u.item.currency);
        break;
    case SM_KIND_STOCK_ADD:
        mpw_arr(w, 2); mpw_str(w, b->u.stock_add.sku); mpw_uint(w, b->u.stock_add.qty);
        break;
    case SM_KIND_STOCK_MOVE:
        mpw_arr(w, 3); mpw_str(w, b->u.stock_move.sku);
        mpw_uint(w, b->u.stock_move.qty); mpw_bin(w, b->u.stock_move.to.b, SM_KEY_BYTES);
        break;
    case SM_KIND_SALE:
        mpw_arr(w, 6);
        s_lines(w, b->u.sale.lines, b->u.sale.line_count, 1);
        mpw_str(w, b->u.sale.currency); mpw_uint(w, b->u.sale.source);
        mpw_uint(w, b->u.sale.payment); mpw_str(w, b->u.sale.external_id);
        mpw_uint(w, b->u.sale.hold_seq);
        break;
    case SM_KIND_RETURN:
        mpw_arr(w, 3); mpw_uint(w, b->u.ret.sale_seq);
        s_lines(w, b->u.ret.lines, b->u.ret.line_count, 0);
        mpw_str(w, b->u.ret.reason);
        break;
    case SM_KIND_HOLD: {
        /* proto/log.md: the long form only for a code, more lines or a tag. */
        bool longer = b->u.hold.code[0] || b->u.hold.more_count || b->u.hold.has_device
                      || b->u.hold.has_client;
        mpw_arr(w, longer ? 7 : 3); mpw_str(w, b->u.hold.sku); mpw_uint(w, b->u.hold.qty);
        mpw_uint(w, b->u.hold.expires_ms);
        if (!longer)
            break;
        mpw_str(w, b->u.hold.code);
        mpw_arr(w, b->u.hold.more_count);
        for (uint32_t i = 0; i < b->u.hold.more_count; i++) {
            mpw_arr(w, 2); mpw_str(w, b->u.hold.more[i].sku); mpw_uint(w, b->u.hold.more[i].qty);
        }
        mpw_bin(w, b->u.hold.device, b->u.hold.has_device ? 8 : 0);
        mpw_bin(w, b->u.hold.client, b->u.hold.has_client ? 8 : 0);
        break;
    }
    case SM_KIND_RELEASE:
        mpw_arr(w, 1); mpw_uint(w, b->u.release.hold_seq);
        break;
    case SM_KIND_ADJUST:
        mpw_arr(w, 3); mpw_str(w, b->u.adjust.sku); mpw_int(w, b->u.adjust.delta);
        mpw_str(w, b->u.adjust.reason);
        break;
    case SM_KIND_DROP:
        mpw_arr(w, b->u.drop.mode ? 8 : 3); mpw_str(w, b->u.drop.sku);
        mpw_uint(w, b->u.drop.qty); mpw_uint(w, b->u.drop.starts_ms);
        if (!b->u.drop.mode)
            break;
        mpw_uint(w, b->u.drop.mode); mpw_uint(w, b->u.drop.per_shopper);
        mpw_uint(w, b->u.drop.closes_ms); mpw_uint(w, b->u.drop.pickup_minutes);
        mpw_bin(w, b->u.drop.commitment.b, b->u.drop.has_commitment ? 32 : 0);
        break;
    case SM_KIND_RAFFLE_ENTRY:
        mpw_arr(w, 4); mpw_bin(w, b->u.raffle_entry.drop_origin.b, SM_KEY_BYTES);
        mpw_uint(w, b->u.raffle_entry.drop_seq); mpw_bin(w, b->u.raffle_entry.device, 8);
        mpw_bin(w, b->u.raffle_entry.client, b->u.raffle_entry.has_client ? 8 : 0);
        break;
    case SM_KIND_RAFFLE_DRAW:
        mpw_arr(w, 4); mpw_uint(w, b->u.raffle_draw.drop_seq);
        mpw_bin(w, b->u.raffle_draw.secret.b, 32);
        mpw_arr(w, b->u.raffle_draw.head_count);
        for (uint32_t i = 0; i < b->u.raffle_draw.head_count; i++) {
            mpw_arr(w, 2); mpw_bin(w, b->u.raffle_draw.heads[i].origin.b, SM_KEY_BYTES);
            mpw_uint(w, b->u.raffle_draw.heads[i].seq);
        }
        mpw_uint(w, b->u.raffle_draw.winners);
        break;
    case SM_KIND_ROSTER_ADMIT:
        mpw_arr(w, 3); mpw_bin(w, b->u.admit.node.b, SM_KEY_BYTES);
        mpw_str(w, b->u.admit.name); mpw_uint(w, b->u.admit.role);
        break;
    case SM_KIND_ROSTER_REVOKE:
        mpw_arr(w, 2); mpw_bin(w, b->u.revoke.node.b, SM_KEY_BYTES);
        mpw_uint(w, b->u.revoke.upto_seq);
        break;
    default:
        mpw_arr(w, 0);
    }
}
