/*  Helpers shared by the unit tests; see testutil.h.                        */
#include "testutil.h"

#include <assert.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stallmesh/error.h"

/*  Where the tests' directories go: $TMPDIR, or /tmp when it is unset.    */
static const char *
s_base(void)
{
    const char *base = getenv("TMPDIR");
    return base && *base ? base : "/tmp";
}

char *
tu_tempdir(void)
{
    const char *base = s_base();
    char *dir = NULL;
    if (asprintf(&dir, "%s/stallmesh-test-XXXXXX", base) < 0 || !mkdtemp(dir)) {
        fprintf(stderr, "tu_tempdir: cannot make a directory under %s\n", base);
        abort();
    }
    return dir;
}

static int
s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st; (void) flag; (void) ftw;
    return remove(path);
}

void
tu_rmrf(const char *dir)
{
    /* Only a directory tu_tempdir made. */
    const char *base = s_base();
    size_t n = strlen(base);
    if (dir && strncmp(dir, base, n) == 0 && strncmp(dir + n, "/stallmesh-test-", 16) == 0)
        nftw(dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

void
tu_identity(sm_identity *id, uint8_t n)
{
    uint8_t seed[32];
    memset(seed, n, sizeof seed);
    sm_identity_from_seed(id, seed);
}

sm_ledger *
tu_open(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sm_ledger_opts o = { .map_bytes = 256u << 20, .no_sync = true };
    int err = 0;
    sm_ledger *l = sm_ledger_open(path, &o, &err);
    assert(l && err == 0);
    return l;
}

static sm_body
s_body(sm_kind kind)
{
    sm_body b;
    memset(&b, 0, sizeof b);
    b.kind = kind;
    return b;
}

#define SETSTR(dst, src) snprintf((dst), sizeof(dst), "%s", (src))

sm_body
tu_item(const char *sku, const char *name, int64_t price)
{
    sm_body b = s_body(SM_KIND_ITEM);
    SETSTR(b.u.item.sku, sku);
    SETSTR(b.u.item.name, name);
    b.u.item.price = price;
    SETSTR(b.u.item.currency, "GBP");
    return b;
}

sm_body
tu_add(const char *sku, uint32_t qty)
{
    sm_body b = s_body(SM_KIND_STOCK_ADD);
    SETSTR(b.u.stock_add.sku, sku);
    b.u.stock_add.qty = qty;
    return b;
}

sm_body
tu_sale(const char *sku, uint32_t qty, int64_t price, const char *extid)
{
    sm_body b = s_body(SM_KIND_SALE);
    b.u.sale.line_count = 1;
    SETSTR(b.u.sale.lines[0].sku, sku);
    b.u.sale.lines[0].qty = qty;
    b.u.sale.lines[0].price = price;
    SETSTR(b.u.sale.currency, "GBP");
    b.u.sale.source = SM_SOURCE_IN_PERSON;
    b.u.sale.payment = SM_PAY_CARD;
    SETSTR(b.u.sale.external_id, extid ? extid : "");
    return b;
}

sm_body
tu_hold(const char *sku, uint32_t qty, uint64_t expires_ms)
{
    sm_body b = s_body(SM_KIND_HOLD);
    SETSTR(b.u.hold.sku, sku);
    b.u.hold.qty = qty;
    b.u.hold.expires_ms = expires_ms;
    return b;
}

sm_body
tu_release(uint64_t hold_seq)
{
    sm_body b = s_body(SM_KIND_RELEASE);
    b.u.release.hold_seq = hold_seq;
    return b;
}

sm_body
tu_return(uint64_t sale_seq, const char *sku, uint32_t qty)
{
    sm_body b = s_body(SM_KIND_RETURN);
    b.u.ret.sale_seq = sale_seq;
    b.u.ret.line_count = 1;
    SETSTR(b.u.ret.lines[0].sku, sku);
    b.u.ret.lines[0].qty = qty;
    SETSTR(b.u.ret.reason, "changed mind");
    return b;
}

sm_body
tu_adjust(const char *sku, int64_t delta)
{
    sm_body b = s_body(SM_KIND_ADJUST);
    SETSTR(b.u.adjust.sku, sku);
    b.u.adjust.delta = delta;
    SETSTR(b.u.adjust.reason, "stock-take");
    return b;
}

sm_body
tu_move(const char *sku, uint32_t qty, const sm_id *to)
{
    sm_body b = s_body(SM_KIND_STOCK_MOVE);
    SETSTR(b.u.stock_move.sku, sku);
    b.u.stock_move.qty = qty;
    b.u.stock_move.to = *to;
    return b;
}

sm_body
tu_drop(const char *sku, uint32_t qty, uint64_t starts_ms)
{
    sm_body b = s_body(SM_KIND_DROP);
    SETSTR(b.u.drop.sku, sku);
    b.u.drop.qty = qty;
    b.u.drop.starts_ms = starts_ms;
    return b;
}

sm_body
tu_admit(const sm_id *node, const char *name, int role)
{
    sm_body b = s_body(SM_KIND_ROSTER_ADMIT);
    b.u.admit.node = *node;
    SETSTR(b.u.admit.name, name);
    b.u.admit.role = (uint8_t) role;
    return b;
}

sm_body
tu_revoke(const sm_id *node, uint64_t upto)
{
    sm_body b = s_body(SM_KIND_ROSTER_REVOKE);
    b.u.revoke.node = *node;
    b.u.revoke.upto_seq = upto;
    return b;
}

typedef struct {
    tu_copy *out;
    size_t n;
} s_read_ctx;

static int
s_read_cb(const sm_signed *e, uint64_t seq, void *arg)
{
    s_read_ctx *ctx = arg;
    tu_copy *c = &ctx->out[ctx->n++];
    c->bytes = malloc(e->len);
    assert(c->bytes);
    memcpy(c->bytes, e->bytes, e->len);
    c->len = e->len;
    memcpy(c->sig, e->sig, SM_SIG_BYTES);
    c->seq = seq;
    return 0;
}

size_t
tu_read(sm_ledger *l, const sm_id *origin, uint64_t from, size_t max, tu_copy *out)
{
    s_read_ctx ctx = { out, 0 };
    int rc = sm_ledger_read(l, origin, from, max, s_read_cb, &ctx);
    assert(rc == 0);
    return ctx.n;
}

void
tu_free(tu_copy *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(c[i].bytes);
        c[i].bytes = NULL;
    }
}

typedef struct {
    sm_id origins[64];
    uint64_t seqs[64];
    size_t n;
} s_heads_ctx;

static int
s_heads_cb(const sm_head *h, void *arg)
{
    s_heads_ctx *ctx = arg;
    if (ctx->n < 64) {
        ctx->origins[ctx->n] = h->origin;
        ctx->seqs[ctx->n++] = h->seq;
    }
    return 0;
}

size_t
tu_sync(sm_ledger *from, sm_ledger *to, uint64_t now_ms)
{
    size_t total = 0;
    for (int round = 0; round < 16; round++) {
        s_heads_ctx ctx = { .n = 0 };
        assert(sm_ledger_heads(from, s_heads_cb, &ctx) == 0);
        size_t accepted = 0;
        for (size_t i = 0; i < ctx.n; i++) {
            sm_head h;
            assert(sm_ledger_head(to, &ctx.origins[i], &h) == 0);
            if (h.seq >= ctx.seqs[i])
                continue;
            enum { BATCH = 256 };
            tu_copy *c = calloc(BATCH, sizeof *c);
            sm_signed *run = calloc(BATCH, sizeof *run);
            assert(c && run);
            size_t n = tu_read(from, &ctx.origins[i], h.seq + 1, BATCH, c);
            for (size_t j = 0; j < n; j++) {
                run[j].bytes = c[j].bytes;
                run[j].len = c[j].len;
                memcpy(run[j].sig, c[j].sig, SM_SIG_BYTES);
            }
            sm_ingest_result res;
            sm_ledger_ingest(to, run, n, now_ms, &res);
            accepted += res.accepted;
            tu_free(c, n);
            free(c);
            free(run);
        }
        total += accepted;
        if (accepted == 0)
            break;
    }
    return total;
}

void
tu_join(sm_ledger *l, sm_ledger *organiser)
{
    sm_market m;
    assert(sm_ledger_market(organiser, &m) == 0);
    tu_copy c;
    assert(tu_read(organiser, &m.market, 1, 1, &c) == 1);
    sm_signed s = { c.bytes, c.len, { 0 } };
    memcpy(s.sig, c.sig, SM_SIG_BYTES);
    assert(sm_ledger_join(l, &m, &s) == 0);
    tu_free(&c, 1);
}

size_t
tu_sign(const sm_entry *e, const sm_identity *id, uint8_t *bytes,
        uint8_t sig[SM_SIG_BYTES])
{
    size_t len = 0;
    int rc = sm_entry_encode(e, bytes, SM_ENTRY_BYTES_MAX, &len);
    assert(rc == 0);
    sm_entry_sign(bytes, len, id->secret, sig);
    return len;
}

uint64_t
tu_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

uint64_t
tu_below(uint64_t *s, uint64_t n)
{
    return n ? tu_rand(s) % n : 0;
}

static int
s_neg_cb(const char *sku, const sm_id *loc, const sm_units *u, void *arg)
{
    (void) sku; (void) loc;
    if (u->units < 0 || u->held < 0)
        (*(int *) arg)++;
    return 0;
}

int
tu_negative_units(sm_ledger *l)
{
    int neg = 0;
    assert(sm_ledger_stock_each(l, s_neg_cb, &neg) == 0);
    return neg;
}
