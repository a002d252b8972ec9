/*  The codec: log entries and join-token bodies to and from msgpack bytes.

    This is the only file that includes msgpack.h.  Everything that
    arrives from outside goes through three gates, in this order:

    1.  sm__msgpack_scan walks the raw bytes and checks every declared length
        (array counts, str and bin lengths, integer widths) against the bytes
        that remain, the nesting depth and the allowed types (nil, bool, all
        integer forms, str, bin, array; no map, float or ext) before msgpack-c
        is asked to unpack anything.  Each declared array element needs at
        least one byte, so the scanner keeps the number of elements still
        owed and refuses any header that owes more than the bytes left: a
        hostile `dd ff 00 00 00` is refused here, not after msgpack-c tried to
        allocate 100 GB for it.  After the scan, msgpack-c's allocation is
        bounded by about 24 bytes an input byte.

    2.  msgpack_unpack builds the object tree in one zone that lives on this
        function's stack frame (its chunks come from malloc and are freed
        before returning); strings and bins point into the input, so nothing
        is copied twice.  The tree is mapped into an sm_entry with strict type
        and shape checks.

    3.  Canonical form: the unpacked tree is packed again with msgpack-c's
        packer, whose choice of the shortest form for every integer, string,
        bin and array header is the canonical one, and compared byte by byte
        with the input as it is produced (a writer that compares instead of
        copying).  Any difference is SM_ENONCANON: `cc 05` for 5, a str16 for
        a 3-byte string, an int8 for a positive value.  So the bytes that are
        hashed and signed are the only representation of an entry.

    Entry layout (normative, byte by byte, in proto/log.md):

        [version=1, market bin32, origin bin32, seq uint, prev bin32,
         hlc uint, kind uint, body array]

    Token body layout (proto/token.md):

        [1, market bin32, name str, currency str, [endpoint str...],
         entry bin, entry sig bin64, (token sig bin64)]

    Mesh messages (wire.h; byte by byte in proto/mesh.md) are decoded
    without msgpack-c's unpacker, because a message may hold a thousand
    entries and the caller's sm_wire_space must be the only storage: after
    the scanner, a cursor reads the fields in order straight from the bytes
    (each length checked again against what remains, each count against its
    limit before anything is written to the space), the values are checked
    by the same rules the encoder applies (s_wire_valid), and the message is
    packed again with msgpack-c's packer against the input, as for entries:
    a decoded message re-encodes to exactly its bytes.

        HELLO      [1, version, market bin32, node bin32, endpoint str]
        HEADS      [2, [[origin bin32, seq, link bin32]...]]   origins ascending
        WANT       [3, origin bin32, from, count]
        ENTRIES    [4, origin bin32, first_seq, [[entry bin, sig bin64]...]]
        PEERS      [5, [[node bin32, endpoint str]...]]        nodes ascending
        UNITS_ASK  [6, req_id, sku str, qty, asker bin32, hops]
        UNITS_GIVE [7, req_id, sku str, qty, asker bin32]
        FORK       [8, origin bin32, seq, [entry bin, sig bin64], [entry bin, sig bin64]]
        HOLD_ASK   [9, req_id, sku str, qty, code str, device bin, client bin, [[sku, qty]...]]
        HOLD_DONE  [10, req_id, refusal, seq, expires_ms]   refusal = -SM_E* code
        ENTRY_ASK  [11, req_id, drop_origin bin32, drop_seq, device bin, client bin]
        ENTRY_DONE [12, req_id, refusal, seq]                refusal = -SM_E* code */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "codec.h"
#include "text.h"
#include "stallmesh/entry.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "stallmesh/token.h"
#include "wire.h"

/*  The deepest nesting sm__msgpack_scan can track; callers pass a smaller
    depth_max (SM_MSGPACK_DEPTH_MAX).                                         */
#define S_SCAN_DEPTH_LIMIT 32u

/*  First zone chunk.  msgpack-c allocates 24 bytes for each array element:
    432 bytes for a sale of one line, 720 for four, about 4 KB for
    SM_SALE_LINES_MAX lines (those take more chunks).  Kept under glibc's
    per-thread cache limit (1032 bytes with the chunk header), which makes
    the zone's one malloc/free about 20 ns cheaper than a 4 KB chunk.       */
#define S_ZONE_CHUNK_BYTES 960u

#define S_TOKEN_VERSION 1u
#define S_TOKEN_FIELDS_SIGNED 8u
#define S_TOKEN_FIELDS_UNSIGNED 7u

/* ------------------------------------------------------------------------ */
/* Scanner                                                                   */

/*  The big-endian unsigned in p[0..n), n <= 4.                            */
static uint32_t
s_be(const uint8_t *p, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*  Decode a type byte: `width` is the size of the big-endian length or
    count that follows it (0 if none), `n` the payload bytes (integers,
    fixstr) or element count (fixarray) when the type byte itself says, and
    `array` whether n counts elements rather than bytes.  Returns 0 or
    SM_EMALFORMED for a type stallmesh does not use.                         */
static int
s_header(uint8_t t, size_t *width, uint32_t *n, bool *array)
{
    *width = 0; *n = 0; *array = false;
    if (t <= 0x7f || t >= 0xe0)                 /* fixint */
        return 0;
    if (t >= 0xa0 && t <= 0xbf) {               /* fixstr */
        *n = t & 0x1fu;
        return 0;
    }
    if (t >= 0x90 && t <= 0x9f) {               /* fixarray */
        *n = t & 0x0fu; *array = true;
        return 0;
    }
    switch (t) {
    case 0xc0: case 0xc2: case 0xc3:            /* nil, false, true */
        return 0;
    case 0xcc: case 0xd0: *n = 1; return 0;     /* (u)int8: payload only */
    case 0xcd: case 0xd1: *n = 2; return 0;
    case 0xce: case 0xd2: *n = 4; return 0;
    case 0xcf: case 0xd3: *n = 8; return 0;
    case 0xd9: case 0xc4: *width = 1; return 0; /* str8, bin8 */
    case 0xda: case 0xc5: *width = 2; return 0;
    case 0xdb: case 0xc6: *width = 4; return 0;
    case 0xdc: *width = 2; *array = true; return 0;            /* array16 */
    case 0xdd: *width = 4; *array = true; return 0;            /* array32 */
    default:
        return SM_EMALFORMED;   /* map, float, ext, 0xc1 */
    }
}

/*  See codec.h.  One pass, no allocation, no recursion: `left` holds the
    elements still to read in each open array, `owed` the objects declared
    but not started, each of which needs at least one more byte.             */
int
sm__msgpack_scan(const uint8_t *buf, size_t len, unsigned depth_max)
{
    uint32_t left[S_SCAN_DEPTH_LIMIT];  /* elements still to read, per open array */
    unsigned depth = 0;                 /* open arrays */
    uint64_t owed = 1;                  /* declared objects not yet started */
    size_t pos = 0;

    assert(buf != NULL || len == 0);
    assert(depth_max <= S_SCAN_DEPTH_LIMIT);
    for (;;) {
        size_t width;
        uint32_t n;
        bool array;

        if (pos >= len)
            return SM_ETRUNC;
        uint8_t t = buf[pos++];
        owed--;
        int rc = s_header(t, &width, &n, &array);
        if (rc != 0)
            return rc;
        if (width > len - pos)
            return SM_ETRUNC;
        if (width > 0) {
            n = s_be(buf + pos, width);
            pos += width;
        }
        if (array) {
            if (depth >= depth_max)
                return SM_EMALFORMED;
            owed += n;
            if (owed > len - pos)       /* each element needs a byte */
                return SM_ETRUNC;
            if (n > 0) {
                left[depth++] = n;
                continue;
            }
        } else {
            /* n is the payload: an integer's width or a str/bin length */
            if (n > len - pos)
                return SM_ETRUNC;
            pos += n;
            if (owed > len - pos)
                return SM_ETRUNC;
        }
        /* An object ended: close every array it completes. */
        while (depth > 0 && --left[depth - 1] == 0)
            depth--;
        if (depth == 0)
            break;
    }
    assert(owed == 0);
    return pos == len ? 0 : SM_EMALFORMED;
}

/* ------------------------------------------------------------------------ */
/* Writers for msgpack-c's packer                                            */

/*  Copies into a fixed buffer; refuses (non-zero) what does not fit.       */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
} s_writer;

static int
s_write(void *data, const char *bytes, size_t n)
{
    s_writer *w = data;
    if (n > w->cap - w->len)
        return -1;
    if (n > 0)
        memcpy(w->buf + w->len, bytes, n);
    w->len += n;
    return 0;
}

/*  Compares with the input instead of copying: the canonical-form check
    needs no buffer and stops at the first differing piece.                  */
typedef struct {
    const uint8_t *ref;
    size_t len;
    size_t pos;
} s_comparer;

static int
s_compare(void *data, const char *bytes, size_t n)
{
    s_comparer *c = data;
    if (n > c->len - c->pos || memcmp(c->ref + c->pos, bytes, n) != 0)
        return -1;
    c->pos += n;
    return 0;
}

/*  0 if packing `root` gives exactly buf[0..len), else SM_ENONCANON.      */
static int
s_canonical(const msgpack_object *root, const uint8_t *buf, size_t len)
{
    s_comparer c = { buf, len, 0 };
    msgpack_packer pk;

    msgpack_packer_init(&pk, &c, s_compare);
    if (msgpack_pack_object(&pk, *root) != 0 || c.pos != len)
        return SM_ENONCANON;
    return 0;
}

/*  Unpack buf (already scanned) into *root, allocating in `zone`.          */
static int
s_unpack(const uint8_t *buf, size_t len, msgpack_zone *zone,
         msgpack_object *root)
{
    size_t off = 0;
    switch (msgpack_unpack((const char *)buf, len, &off, zone, root)) {
    case MSGPACK_UNPACK_SUCCESS:
        return off == len ? 0 : SM_EMALFORMED;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        return SM_ENOMEM;
    default:            /* the scanner admitted it; msgpack-c disagrees */
        return SM_EMALFORMED;
    }
}

/* ------------------------------------------------------------------------ */
/* Packing helpers (they return non-zero once the writer is full)            */

/*  Pack a NUL-terminated string as a str.                                 */
static int
s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

/*  Pack b[0..n) as a bin.                                                  */
static int
s_pack_bin(msgpack_packer *pk, const uint8_t *b, size_t n)
{
    return msgpack_pack_bin(pk, n) | msgpack_pack_bin_body(pk, b, n);
}

/*  A shopper's tag: its SM_HOLD_TAG_BYTES, or an empty bin when absent (a
    hold's and a raffle entry's, in the log and on the wire alike).        */
static int
s_pack_tag(msgpack_packer *pk, const uint8_t tag[SM_HOLD_TAG_BYTES], bool present)
{
    return s_pack_bin(pk, tag, present ? SM_HOLD_TAG_BYTES : 0);
}

/*  True when a hold needs the long form [sku, qty, expires_ms, code, more,
    device, client]: the short form [sku, qty, expires_ms] is canonical for
    a hold with none of those.                                              */
static bool
s_hold_long(const sm_body *b)
{
    return b->u.hold.code[0] || b->u.hold.more_count || b->u.hold.has_device
           || b->u.hold.has_client;
}

/*  Pack the body array of b's kind (section 4 of proto/log.md); the body
    was checked by sm_entry_check.  Non-zero if the writer ran out of room. */
static int
s_pack_body(msgpack_packer *pk, const sm_body *b)
{
    int bad = 0;

    switch (b->kind) {
    case SM_KIND_ITEM:
        bad |= msgpack_pack_array(pk, 4);
        bad |= s_pack_str(pk, b->u.item.sku);
        bad |= s_pack_str(pk, b->u.item.name);
        bad |= msgpack_pack_uint64(pk, (uint64_t)b->u.item.price);
        bad |= s_pack_str(pk, b->u.item.currency);
        break;
    case SM_KIND_STOCK_ADD:
        bad |= msgpack_pack_array(pk, 2);
        bad |= s_pack_str(pk, b->u.stock_add.sku);
        bad |= msgpack_pack_uint64(pk, b->u.stock_add.qty);
        break;
    case SM_KIND_STOCK_MOVE:
        bad |= msgpack_pack_array(pk, 3);
        bad |= s_pack_str(pk, b->u.stock_move.sku);
        bad |= msgpack_pack_uint64(pk, b->u.stock_move.qty);
        bad |= s_pack_bin(pk, b->u.stock_move.to.b, SM_KEY_BYTES);
        break;
    case SM_KIND_SALE:
        bad |= msgpack_pack_array(pk, 6);
        bad |= msgpack_pack_array(pk, b->u.sale.line_count);
        for (uint32_t i = 0; i < b->u.sale.line_count; i++) {
            const sm_line *l = &b->u.sale.lines[i];
            bad |= msgpack_pack_array(pk, 3);
            bad |= s_pack_str(pk, l->sku);
            bad |= msgpack_pack_uint64(pk, l->qty);
            bad |= msgpack_pack_uint64(pk, (uint64_t)l->price);
        }
        bad |= s_pack_str(pk, b->u.sale.currency);
        bad |= msgpack_pack_uint64(pk, b->u.sale.source);
        bad |= msgpack_pack_uint64(pk, b->u.sale.payment);
        bad |= s_pack_str(pk, b->u.sale.external_id);
        bad |= msgpack_pack_uint64(pk, b->u.sale.hold_seq);
        break;
    case SM_KIND_RETURN:
        bad |= msgpack_pack_array(pk, 3);
        bad |= msgpack_pack_uint64(pk, b->u.ret.sale_seq);
        bad |= msgpack_pack_array(pk, b->u.ret.line_count);
        for (uint32_t i = 0; i < b->u.ret.line_count; i++) {
            const sm_line *l = &b->u.ret.lines[i];
            bad |= msgpack_pack_array(pk, 2);
            bad |= s_pack_str(pk, l->sku);
            bad |= msgpack_pack_uint64(pk, l->qty);
        }
        bad |= s_pack_str(pk, b->u.ret.reason);
        break;
    case SM_KIND_HOLD: {
        /* The short form unless the hold has a code, more lines or tags. */
        bool longer = s_hold_long(b);
        bad |= msgpack_pack_array(pk, longer ? 7 : 3);
        bad |= s_pack_str(pk, b->u.hold.sku);
        bad |= msgpack_pack_uint64(pk, b->u.hold.qty);
        bad |= msgpack_pack_uint64(pk, b->u.hold.expires_ms);
        if (!longer)
            break;
        bad |= s_pack_str(pk, b->u.hold.code);
        bad |= msgpack_pack_array(pk, b->u.hold.more_count);
        for (uint32_t i = 0; i < b->u.hold.more_count; i++) {
            bad |= msgpack_pack_array(pk, 2);
            bad |= s_pack_str(pk, b->u.hold.more[i].sku);
            bad |= msgpack_pack_uint64(pk, b->u.hold.more[i].qty);
        }
        bad |= s_pack_tag(pk, b->u.hold.device, b->u.hold.has_device);
        bad |= s_pack_tag(pk, b->u.hold.client, b->u.hold.has_client);
        break;
    }
    case SM_KIND_RELEASE:
        bad |= msgpack_pack_array(pk, 1);
        bad |= msgpack_pack_uint64(pk, b->u.release.hold_seq);
        break;
    case SM_KIND_ADJUST:
        bad |= msgpack_pack_array(pk, 3);
        bad |= s_pack_str(pk, b->u.adjust.sku);
        bad |= msgpack_pack_int64(pk, b->u.adjust.delta);
        bad |= s_pack_str(pk, b->u.adjust.reason);
        break;
    case SM_KIND_DROP:
        bad |= msgpack_pack_array(pk, b->u.drop.mode ? 8 : 3);
        bad |= s_pack_str(pk, b->u.drop.sku);
        bad |= msgpack_pack_uint64(pk, b->u.drop.qty);
        bad |= msgpack_pack_uint64(pk, b->u.drop.starts_ms);
        if (!b->u.drop.mode)
            break;
        bad |= msgpack_pack_uint64(pk, b->u.drop.mode);
        bad |= msgpack_pack_uint64(pk, b->u.drop.per_shopper);
        bad |= msgpack_pack_uint64(pk, b->u.drop.closes_ms);
        bad |= msgpack_pack_uint64(pk, b->u.drop.pickup_minutes);
        bad |= s_pack_bin(pk, b->u.drop.commitment.b,
                          b->u.drop.has_commitment ? SM_HASH_BYTES : 0);
        break;
    case SM_KIND_RAFFLE_ENTRY:
        bad |= msgpack_pack_array(pk, 4);
        bad |= s_pack_bin(pk, b->u.raffle_entry.drop_origin.b, SM_KEY_BYTES);
        bad |= msgpack_pack_uint64(pk, b->u.raffle_entry.drop_seq);
        bad |= s_pack_tag(pk, b->u.raffle_entry.device, true);
        bad |= s_pack_tag(pk, b->u.raffle_entry.client, b->u.raffle_entry.has_client);
        break;
    case SM_KIND_RAFFLE_DRAW:
        bad |= msgpack_pack_array(pk, 4);
        bad |= msgpack_pack_uint64(pk, b->u.raffle_draw.drop_seq);
        bad |= s_pack_bin(pk, b->u.raffle_draw.secret.b, SM_HASH_BYTES);
        bad |= msgpack_pack_array(pk, b->u.raffle_draw.head_count);
        for (uint32_t i = 0; i < b->u.raffle_draw.head_count; i++) {
            bad |= msgpack_pack_array(pk, 2);
            bad |= s_pack_bin(pk, b->u.raffle_draw.heads[i].origin.b, SM_KEY_BYTES);
            bad |= msgpack_pack_uint64(pk, b->u.raffle_draw.heads[i].seq);
        }
        bad |= msgpack_pack_uint64(pk, b->u.raffle_draw.winners);
        break;
    case SM_KIND_ROSTER_ADMIT:
        bad |= msgpack_pack_array(pk, 3);
        bad |= s_pack_bin(pk, b->u.admit.node.b, SM_KEY_BYTES);
        bad |= s_pack_str(pk, b->u.admit.name);
        bad |= msgpack_pack_uint64(pk, b->u.admit.role);
        break;
    case SM_KIND_ROSTER_REVOKE:
        bad |= msgpack_pack_array(pk, 2);
        bad |= s_pack_bin(pk, b->u.revoke.node.b, SM_KEY_BYTES);
        bad |= msgpack_pack_uint64(pk, b->u.revoke.upto_seq);
        break;
    default:
        assert(!"sm_entry_check admitted an unknown kind");
        bad = 1;
    }
    return bad;
}

/*  See entry.h.  Checks, then packs with msgpack-c into buf directly: the
    packer's choice of forms is the canonical one.                           */
int
sm_entry_encode(const sm_entry *e, uint8_t *buf, size_t cap, size_t *len)
{
    assert(e != NULL && buf != NULL && len != NULL);

    int rc = sm_entry_check(e);
    if (rc != 0)
        return rc;

    s_writer w = { buf, cap < SM_ENTRY_BYTES_MAX ? cap : SM_ENTRY_BYTES_MAX, 0 };
    msgpack_packer pk;
    int bad = 0;

    msgpack_packer_init(&pk, &w, s_write);
    bad |= msgpack_pack_array(&pk, 8);
    bad |= msgpack_pack_uint64(&pk, e->version);
    bad |= s_pack_bin(&pk, e->market.b, SM_KEY_BYTES);
    bad |= s_pack_bin(&pk, e->origin.b, SM_KEY_BYTES);
    bad |= msgpack_pack_uint64(&pk, e->seq);
    bad |= s_pack_bin(&pk, e->prev.b, SM_HASH_BYTES);
    bad |= msgpack_pack_uint64(&pk, e->hlc);
    bad |= msgpack_pack_uint64(&pk, (uint64_t)e->body.kind);
    bad |= s_pack_body(&pk, &e->body);
    if (bad)
        return SM_ETOOBIG;
    *len = w.len;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Mapping the unpacked tree into an sm_entry                                */

/*  A non-negative integer; a negative one is `neg_err`.                    */
static int
s_uint(const msgpack_object *o, uint64_t *v, int neg_err)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *v = o->via.u64;
        return 0;
    }
    return o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? neg_err : SM_EMALFORMED;
}

/*  A quantity: a uint within 1..SM_QTY_MAX else SM_EQTY.                   */
static int
s_qty(const msgpack_object *o, uint32_t *q)
{
    uint64_t v;
    int rc = s_uint(o, &v, SM_EQTY);
    if (rc != 0)
        return rc;
    if (v == 0 || v > SM_QTY_MAX)
        return SM_EQTY;
    *q = (uint32_t)v;
    return 0;
}

/*  A price in minor units: a uint within 0..SM_PRICE_MAX else SM_EMONEY.   */
static int
s_price(const msgpack_object *o, int64_t *p)
{
    uint64_t v;
    int rc = s_uint(o, &v, SM_EMONEY);
    if (rc != 0)
        return rc;
    if (v > (uint64_t)SM_PRICE_MAX)
        return SM_EMONEY;
    *p = (int64_t)v;
    return 0;
}

/*  A signed quantity change: any integer; a positive one beyond
    SM_QTY_MAX is SM_EQTY here (it might not fit int64_t), the rest of the
    rule (non-zero, |delta| <= SM_QTY_MAX) is sm_entry_check's.             */
static int
s_delta(const msgpack_object *o, int64_t *d)
{
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *d = o->via.i64;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return SM_EMALFORMED;
    if (o->via.u64 > SM_QTY_MAX)
        return SM_EQTY;
    *d = (int64_t)o->via.u64;
    return 0;
}

/*  An enum value stored in a uint8_t; range is checked by sm_entry_check. */
static int
s_enum(const msgpack_object *o, uint8_t *out)
{
    uint64_t v;
    int rc = s_uint(o, &v, SM_EMALFORMED);
    if (rc != 0)
        return rc;
    if (v > UINT8_MAX)
        return SM_EBODY;
    *out = (uint8_t)v;
    return 0;
}

/*  A bin of exactly n bytes.                                               */
static int
s_bin(const msgpack_object *o, uint8_t *dst, size_t n)
{
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != n)
        return SM_EMALFORMED;
    memcpy(dst, o->via.bin.ptr, n);
    return 0;
}

/*  A str copied into dst[0..max], NUL-terminated.  Longer than max is
    `long_err`; an embedded NUL is SM_EBODY (it would cut the C string, and
    the entry would no longer re-encode to its bytes).  The rest of the text
    rules are sm_entry_check's.                                             */
static int
s_str(const msgpack_object *o, char *dst, size_t max, int long_err)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return SM_EMALFORMED;
    size_t n = o->via.str.size;
    if (n > max)
        return long_err;
    if (n > 0 && memchr(o->via.str.ptr, 0, n) != NULL)
        return SM_EBODY;
    if (n > 0)
        memcpy(dst, o->via.str.ptr, n);
    dst[n] = '\0';
    return 0;
}

/*  An array of exactly n elements; its elements in *el.                    */
static int
s_array(const msgpack_object *o, uint32_t n, const msgpack_object **el)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != n)
        return SM_EMALFORMED;
    *el = o->via.array.ptr;
    return 0;
}

/*  A hold's tag: a bin of 0 (none) or SM_HOLD_TAG_BYTES bytes.            */
static int
s_tag(const msgpack_object *o, uint8_t *dst, bool *present)
{
    if (o->type != MSGPACK_OBJECT_BIN
        || (o->via.bin.size != 0 && o->via.bin.size != SM_HOLD_TAG_BYTES))
        return SM_EMALFORMED;
    *present = o->via.bin.size != 0;
    if (*present)
        memcpy(dst, o->via.bin.ptr, SM_HOLD_TAG_BYTES);
    return 0;
}

/*  Sale lines [[sku, qty, price]...] or return lines [[sku, qty]...].      */
static int
s_lines(const msgpack_object *o, sm_line *lines, uint32_t *count, bool priced)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return SM_EMALFORMED;
    if (o->via.array.size > SM_SALE_LINES_MAX)
        return SM_EBODY;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *f;
        int rc = s_array(&o->via.array.ptr[i], priced ? 3 : 2, &f);
        if (rc == 0)
            rc = s_str(&f[0], lines[i].sku, SM_SKU_BYTES_MAX, SM_EBODY);
        if (rc == 0)
            rc = s_qty(&f[1], &lines[i].qty);
        if (rc == 0 && priced)
            rc = s_price(&f[2], &lines[i].price);
        else if (rc == 0)
            lines[i].price = 0;
        if (rc != 0)
            return rc;
    }
    *count = o->via.array.size;
    return 0;
}

/*  Map the body tree of b->kind into b.  0, SM_EMALFORMED for a wrong
    shape or type, SM_EKIND for an unknown kind, or a value code.           */
static int
s_body_from_object(const msgpack_object *o, sm_body *b)
{
    const msgpack_object *f;
    int rc;

#define S_TRY(expr) do { if ((rc = (expr)) != 0) return rc; } while (0)
    switch (b->kind) {
    case SM_KIND_ITEM:
        S_TRY(s_array(o, 4, &f));
        S_TRY(s_str(&f[0], b->u.item.sku, SM_SKU_BYTES_MAX, SM_EBODY));
        S_TRY(s_str(&f[1], b->u.item.name, SM_NAME_BYTES_MAX, SM_EBODY));
        S_TRY(s_price(&f[2], &b->u.item.price));
        S_TRY(s_str(&f[3], b->u.item.currency, 3, SM_EMONEY));
        return 0;
    case SM_KIND_STOCK_ADD:
        S_TRY(s_array(o, 2, &f));
        S_TRY(s_str(&f[0], b->u.stock_add.sku, SM_SKU_BYTES_MAX, SM_EBODY));
        S_TRY(s_qty(&f[1], &b->u.stock_add.qty));
        return 0;
    case SM_KIND_STOCK_MOVE:
        S_TRY(s_array(o, 3, &f));
        S_TRY(s_str(&f[0], b->u.stock_move.sku, SM_SKU_BYTES_MAX, SM_EBODY));
        S_TRY(s_qty(&f[1], &b->u.stock_move.qty));
        S_TRY(s_bin(&f[2], b->u.stock_move.to.b, SM_KEY_BYTES));
        return 0;
    case SM_KIND_SALE:
        S_TRY(s_array(o, 6, &f));
        S_TRY(s_lines(&f[0], b->u.sale.lines, &b->u.sale.line_count, true));
        S_TRY(s_str(&f[1], b->u.sale.currency, 3, SM_EMONEY));
        S_TRY(s_enum(&f[2], &b->u.sale.source));
        S_TRY(s_enum(&f[3], &b->u.sale.payment));
        S_TRY(s_str(&f[4], b->u.sale.external_id, SM_EXTID_BYTES_MAX, SM_EBODY));
        S_TRY(s_uint(&f[5], &b->u.sale.hold_seq, SM_EMALFORMED));
        return 0;
    case SM_KIND_RETURN:
        S_TRY(s_array(o, 3, &f));
        S_TRY(s_uint(&f[0], &b->u.ret.sale_seq, SM_EMALFORMED));
        S_TRY(s_lines(&f[1], b->u.ret.lines, &b->u.ret.line_count, false));
        S_TRY(s_str(&f[2], b->u.ret.reason, SM_REASON_BYTES_MAX, SM_EBODY));
        return 0;
    case SM_KIND_HOLD:
        /* The short form leaves the long form's fields empty. */
        b->u.hold.code[0] = '\0';
        b->u.hold.more_count = 0;
        b->u.hold.has_device = b->u.hold.has_client = false;
        memset(b->u.hold.device, 0, sizeof b->u.hold.device);
        memset(b->u.hold.client, 0, sizeof b->u.hold.client);
        if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 7)
            S_TRY(s_array(o, 7, &f));
        else
            S_TRY(s_array(o, 3, &f));
        S_TRY(s_str(&f[0], b->u.hold.sku, SM_SKU_BYTES_MAX, SM_EBODY));
        S_TRY(s_qty(&f[1], &b->u.hold.qty));
        S_TRY(s_uint(&f[2], &b->u.hold.expires_ms, SM_EMALFORMED));
        if (o->via.array.size == 3)
            return 0;
        S_TRY(s_str(&f[3], b->u.hold.code, SM_HOLD_CODE_BYTES_MAX, SM_EBODY));
        if (f[4].type != MSGPACK_OBJECT_ARRAY)
            return SM_EMALFORMED;
        if (f[4].via.array.size > SM_HOLD_LINES_MAX - 1)
            return SM_EBODY;
        S_TRY(s_lines(&f[4], b->u.hold.more, &b->u.hold.more_count, false));
        S_TRY(s_tag(&f[5], b->u.hold.device, &b->u.hold.has_device));
        S_TRY(s_tag(&f[6], b->u.hold.client, &b->u.hold.has_client));
        /* The long form of a hold the short form holds is not canonical. */
        if (!s_hold_long(b))
            return SM_ENONCANON;
        return 0;
    case SM_KIND_RELEASE:
        S_TRY(s_array(o, 1, &f));
        S_TRY(s_uint(&f[0], &b->u.release.hold_seq, SM_EMALFORMED));
        return 0;
    case SM_KIND_ADJUST:
        S_TRY(s_array(o, 3, &f));
        S_TRY(s_str(&f[0], b->u.adjust.sku, SM_SKU_BYTES_MAX, SM_EBODY));
        S_TRY(s_delta(&f[1], &b->u.adjust.delta));
        S_TRY(s_str(&f[2], b->u.adjust.reason, SM_REASON_BYTES_MAX, SM_EBODY));
        return 0;
    case SM_KIND_DROP: {
        uint64_t mode, per, pickup;
        b->u.drop.mode = 0;
        b->u.drop.per_shopper = b->u.drop.pickup_minutes = 0;
        b->u.drop.closes_ms = 0;
        b->u.drop.has_commitment = false;
        memset(&b->u.drop.commitment, 0, sizeof b->u.drop.commitment);
        if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 8)
            S_TRY(s_array(o, 8, &f));
        else
            S_TRY(s_array(o, 3, &f));
        S_TRY(s_str(&f[0], b->u.drop.sku, SM_SKU_BYTES_MAX, SM_EBODY));
        S_TRY(s_qty(&f[1], &b->u.drop.qty));
        S_TRY(s_uint(&f[2], &b->u.drop.starts_ms, SM_EMALFORMED));
        if (o->via.array.size == 3)
            return 0;
        S_TRY(s_uint(&f[3], &mode, SM_EMALFORMED));
        S_TRY(s_uint(&f[4], &per, SM_EMALFORMED));
        S_TRY(s_uint(&f[5], &b->u.drop.closes_ms, SM_EMALFORMED));
        S_TRY(s_uint(&f[6], &pickup, SM_EMALFORMED));
        /* Out of range values are the rules' (sm_entry_check): kept in range
           of their fields so that they are refused, not wrapped. */
        if (mode < 1 || mode > 255 || per > SM_QTY_MAX || pickup > SM_DROP_PICKUP_MIN_MAX)
            return SM_EBODY;
        b->u.drop.mode = (uint8_t) mode;
        b->u.drop.per_shopper = (uint32_t) per;
        b->u.drop.pickup_minutes = (uint32_t) pickup;
        if (f[7].type != MSGPACK_OBJECT_BIN
            || (f[7].via.bin.size != 0 && f[7].via.bin.size != SM_HASH_BYTES))
            return SM_EMALFORMED;
        b->u.drop.has_commitment = f[7].via.bin.size != 0;
        if (b->u.drop.has_commitment)
            memcpy(b->u.drop.commitment.b, f[7].via.bin.ptr, SM_HASH_BYTES);
        return 0;
    }
    case SM_KIND_RAFFLE_ENTRY:
        S_TRY(s_array(o, 4, &f));
        S_TRY(s_bin(&f[0], b->u.raffle_entry.drop_origin.b, SM_KEY_BYTES));
        S_TRY(s_uint(&f[1], &b->u.raffle_entry.drop_seq, SM_EMALFORMED));
        S_TRY(s_bin(&f[2], b->u.raffle_entry.device, SM_HOLD_TAG_BYTES));
        S_TRY(s_tag(&f[3], b->u.raffle_entry.client, &b->u.raffle_entry.has_client));
        return 0;
    case SM_KIND_RAFFLE_DRAW: {
        uint64_t winners;
        S_TRY(s_array(o, 4, &f));
        S_TRY(s_uint(&f[0], &b->u.raffle_draw.drop_seq, SM_EMALFORMED));
        S_TRY(s_bin(&f[1], b->u.raffle_draw.secret.b, SM_HASH_BYTES));
        if (f[2].type != MSGPACK_OBJECT_ARRAY)
            return SM_EMALFORMED;
        if (f[2].via.array.size > SM_DRAW_HEADS_MAX)
            return SM_EBODY;
        b->u.raffle_draw.head_count = f[2].via.array.size;
        for (uint32_t i = 0; i < f[2].via.array.size; i++) {
            const msgpack_object *h;
            S_TRY(s_array(&f[2].via.array.ptr[i], 2, &h));
            S_TRY(s_bin(&h[0], b->u.raffle_draw.heads[i].origin.b, SM_KEY_BYTES));
            S_TRY(s_uint(&h[1], &b->u.raffle_draw.heads[i].seq, SM_EMALFORMED));
        }
        S_TRY(s_uint(&f[3], &winners, SM_EMALFORMED));
        if (winners > SM_QTY_MAX)
            return SM_EBODY;
        b->u.raffle_draw.winners = (uint32_t) winners;
        return 0;
    }
    case SM_KIND_ROSTER_ADMIT:
        S_TRY(s_array(o, 3, &f));
        S_TRY(s_bin(&f[0], b->u.admit.node.b, SM_KEY_BYTES));
        S_TRY(s_str(&f[1], b->u.admit.name, SM_NAME_BYTES_MAX, SM_EBODY));
        S_TRY(s_enum(&f[2], &b->u.admit.role));
        return 0;
    case SM_KIND_ROSTER_REVOKE:
        S_TRY(s_array(o, 2, &f));
        S_TRY(s_bin(&f[0], b->u.revoke.node.b, SM_KEY_BYTES));
        S_TRY(s_uint(&f[1], &b->u.revoke.upto_seq, SM_EMALFORMED));
        return 0;
    default:
        return SM_EKIND;
    }
#undef S_TRY
}

/*  Map the entry tree into *e (zeroed by the caller).  Same codes as
    s_body_from_object, and SM_EVERSION.                                    */
static int
s_entry_from_object(const msgpack_object *root, sm_entry *e)
{
    const msgpack_object *f;
    uint64_t v;
    int rc;

    /* The version comes first so that a later format with another shape is
       reported as SM_EVERSION, not as malformed. */
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size == 0)
        return SM_EMALFORMED;
    f = root->via.array.ptr;
    if ((rc = s_uint(&f[0], &v, SM_EMALFORMED)) != 0)
        return rc;
    if (v != SM_ENTRY_VERSION)
        return SM_EVERSION;
    e->version = (uint8_t)v;
    if (root->via.array.size != 8)
        return SM_EMALFORMED;
    if ((rc = s_bin(&f[1], e->market.b, SM_KEY_BYTES)) != 0 ||
        (rc = s_bin(&f[2], e->origin.b, SM_KEY_BYTES)) != 0 ||
        (rc = s_uint(&f[3], &e->seq, SM_EMALFORMED)) != 0 ||
        (rc = s_bin(&f[4], e->prev.b, SM_HASH_BYTES)) != 0 ||
        (rc = s_uint(&f[5], &e->hlc, SM_EMALFORMED)) != 0 ||
        (rc = s_uint(&f[6], &v, SM_EMALFORMED)) != 0)
        return rc;
    if (v < SM_KIND_MIN || v > SM_KIND_MAX)
        return SM_EKIND;
    e->body.kind = (sm_kind)v;
    return s_body_from_object(&f[7], &e->body);
}

/*  See entry.h: size, scan, unpack, map, canonical form, rules, in that
    order (proto/log.md section 7).  *out is written even on failure; its
    contents are then meaningless.                                            */
int
sm_entry_decode(const uint8_t *buf, size_t len, sm_entry *out)
{
    msgpack_zone zone;
    msgpack_object root;
    int rc;

    assert((buf != NULL || len == 0) && out != NULL);
    if (len > SM_ENTRY_BYTES_MAX)
        return SM_ETOOBIG;
    rc = sm__msgpack_scan(buf, len, SM_MSGPACK_DEPTH_MAX);
    if (rc != 0)
        return rc;
    if (!msgpack_zone_init(&zone, S_ZONE_CHUNK_BYTES))
        return SM_ENOMEM;
    rc = s_unpack(buf, len, &zone, &root);
    if (rc != 0)
        goto done;
    /* Only the header is cleared: the body decoder assigns every field of
       its kind, and the rest of the (large) union is never read.  Clearing
       all of it cost more than decoding, and ingest decodes whole runs.    */
    memset(out, 0, offsetof(sm_entry, body));
    rc = s_entry_from_object(&root, out);
    if (rc != 0)
        goto done;
    rc = s_canonical(&root, buf, len);
    if (rc != 0)
        goto done;
    rc = sm_entry_check(out);
done:
    msgpack_zone_destroy(&zone);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Join-token bodies                                                         */

/*  A NUL-terminated string within dst[0..size) of min..max bytes of text.   */
static bool
s_text_field(const char *s, size_t size, size_t min, size_t max)
{
    size_t n = strnlen(s, size);
    return n < size && n >= min && n <= max && sm__text_valid((const uint8_t *)s, n);
}

/*  Three ASCII capitals and a NUL.                                         */
static bool
s_currency_valid(const char *c)
{
    for (int i = 0; i < 3; i++)
        if (c[i] < 'A' || c[i] > 'Z')
            return false;
    return c[3] == '\0';
}

/*  Whether `t`'s fields are within the token's limits.                      */
static bool
s_token_valid(const sm_token *t)
{
    if (!s_text_field(t->name, sizeof t->name, 1, SM_NAME_BYTES_MAX) ||
        !s_currency_valid(t->currency) ||
        t->endpoint_count > SM_ENDPOINTS_MAX ||
        t->entry_len == 0 || t->entry_len > SM_ENTRY_BYTES_MAX)
        return false;
    for (uint32_t i = 0; i < t->endpoint_count; i++)
        if (!s_text_field(t->endpoints[i], sizeof t->endpoints[i], 1,
                          SM_ENDPOINT_BYTES_MAX))
            return false;
    return true;
}

/*  See codec.h.                                                              */
int
sm__token_pack(const sm_token *t, const uint8_t tsig[SM_SIG_BYTES],
               uint8_t *buf, size_t cap, size_t *len)
{
    assert(t != NULL && buf != NULL && len != NULL);
    if (!s_token_valid(t))
        return SM_EINVAL;

    s_writer w = { buf, cap, 0 };
    msgpack_packer pk;
    int bad = 0;

    msgpack_packer_init(&pk, &w, s_write);
    bad |= msgpack_pack_array(&pk, tsig != NULL ? S_TOKEN_FIELDS_SIGNED
                                                : S_TOKEN_FIELDS_UNSIGNED);
    bad |= msgpack_pack_uint64(&pk, S_TOKEN_VERSION);
    bad |= s_pack_bin(&pk, t->market.b, SM_KEY_BYTES);
    bad |= s_pack_str(&pk, t->name);
    bad |= s_pack_str(&pk, t->currency);
    bad |= msgpack_pack_array(&pk, t->endpoint_count);
    for (uint32_t i = 0; i < t->endpoint_count; i++)
        bad |= s_pack_str(&pk, t->endpoints[i]);
    bad |= s_pack_bin(&pk, t->entry, t->entry_len);
    bad |= s_pack_bin(&pk, t->entry_sig, SM_SIG_BYTES);
    if (tsig != NULL)
        bad |= s_pack_bin(&pk, tsig, SM_SIG_BYTES);
    if (bad)
        return SM_ETOOBIG;
    *len = w.len;
    return 0;
}

/*  Map a token tree into *out; false if anything is off.                    */
static bool
s_token_from_object(const msgpack_object *root, sm_token *out,
                    uint8_t tsig[SM_SIG_BYTES])
{
    const msgpack_object *f, *ep;
    uint64_t v;

    if (s_array(root, S_TOKEN_FIELDS_SIGNED, &f) != 0 ||
        s_uint(&f[0], &v, SM_EMALFORMED) != 0 || v != S_TOKEN_VERSION ||
        s_bin(&f[1], out->market.b, SM_KEY_BYTES) != 0 ||
        s_str(&f[2], out->name, SM_NAME_BYTES_MAX, SM_ETOKEN) != 0 ||
        s_str(&f[3], out->currency, 3, SM_ETOKEN) != 0 ||
        f[4].type != MSGPACK_OBJECT_ARRAY ||
        f[4].via.array.size > SM_ENDPOINTS_MAX ||
        f[5].type != MSGPACK_OBJECT_BIN ||
        f[5].via.bin.size == 0 || f[5].via.bin.size > SM_ENTRY_BYTES_MAX ||
        s_bin(&f[6], out->entry_sig, SM_SIG_BYTES) != 0 ||
        s_bin(&f[7], tsig, SM_SIG_BYTES) != 0)
        return false;
    out->endpoint_count = f[4].via.array.size;
    ep = f[4].via.array.ptr;
    for (uint32_t i = 0; i < out->endpoint_count; i++)
        if (s_str(&ep[i], out->endpoints[i], SM_ENDPOINT_BYTES_MAX, SM_ETOKEN) != 0)
            return false;
    out->entry_len = f[5].via.bin.size;
    memcpy(out->entry, f[5].via.bin.ptr, out->entry_len);
    return s_token_valid(out);
}

/*  See codec.h.  *out and tsig are written even on failure.                */
int
sm__token_unpack(const uint8_t *buf, size_t len, sm_token *out,
                 uint8_t tsig[SM_SIG_BYTES])
{
    msgpack_zone zone;
    msgpack_object root;
    int rc;

    assert((buf != NULL || len == 0) && out != NULL && tsig != NULL);
    if (len > SM_TOKEN_BYTES_MAX ||
        sm__msgpack_scan(buf, len, SM_MSGPACK_DEPTH_MAX) != 0)
        return SM_ETOKEN;
    /* Out of memory is reported as SM_ETOKEN too, as the contract says:
       the caller can only refuse the token either way. */
    if (!msgpack_zone_init(&zone, S_ZONE_CHUNK_BYTES))
        return SM_ETOKEN;
    rc = s_unpack(buf, len, &zone, &root);
    if (rc != 0 || !s_token_from_object(&root, out, tsig) ||
        s_canonical(&root, buf, len) != 0)
        rc = SM_ETOKEN;
    msgpack_zone_destroy(&zone);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Mesh messages                                                             */

/*  Elements of each type's array, the type included (index: the type).    */
static const uint32_t s_wire_fields[SM_MSG_TYPE_MAX + 1] = {
    0, 5, 2, 4, 4, 2, 6, 5, 5, 8, 5, 6, 4
};

static const char *const s_wire_names[SM_MSG_TYPE_MAX + 1] = {
    "?", "HELLO", "HEADS", "WANT", "ENTRIES", "PEERS", "UNITS_ASK",
    "UNITS_GIVE", "FORK", "HOLD_ASK", "HOLD_DONE", "ENTRY_ASK", "ENTRY_DONE"
};

/*  See wire.h.                                                               */
const char *
sm_wire_type_name(int type)
{
    return type >= 1 && type <= (int)SM_MSG_TYPE_MAX ? s_wire_names[type] : "?";
}

/*  The rules of a text field of min..max bytes held in s[0..size): 0,
    SM_ETOOBIG (longer than max or not terminated), SM_EMALFORMED (shorter
    than min, or not text).                                                   */
static int
s_wire_text(const char *s, size_t size, size_t min, size_t max)
{
    size_t n = strnlen(s, size);
    if (n >= size || n > max)
        return SM_ETOOBIG;
    if (n < min || !sm__text_valid((const uint8_t *)s, n))
        return SM_EMALFORMED;
    return 0;
}

/*  A seq: 1..SM_SEQ_MAX.                                                   */
static bool
s_wire_seq(uint64_t seq)
{
    return seq >= 1 && seq <= SM_SEQ_MAX;
}

/*  A run of `count` (>= 1) entries from `first` stays within SM_SEQ_MAX.   */
static bool
s_wire_run(uint64_t first, uint64_t count)
{
    return s_wire_seq(first) && count - 1 <= SM_SEQ_MAX - first;
}

/*  The answer of a HOLD_DONE or an ENTRY_DONE: done (code 0) with a seq, or
    a refusal of at most `max` (as -code) with none.                        */
static bool
s_wire_done(int code, uint64_t seq, uint32_t max)
{
    if (code == 0)
        return s_wire_seq(seq);
    return code < 0 && code >= -(int)max && seq == 0;
}

/*  An entry as it travels: 1..SM_ENTRY_BYTES_MAX bytes (the signature is a
    fixed array).  SM_ETOOBIG or SM_EMALFORMED.                              */
static int
s_wire_signed(const sm_signed *s)
{
    if (s->len > SM_ENTRY_BYTES_MAX)
        return SM_ETOOBIG;
    if (s->len == 0)
        return SM_EMALFORMED;
    assert(s->bytes != NULL);
    return 0;
}

/*  Every rule of proto/mesh.md section 5 that a decoded message must meet,
    and that sm_wire_encode applies before it writes: 0, SM_ETOOBIG (a
    count or length over its limit), SM_EVERSION (a HELLO of another
    version), SM_EKIND (unknown type) or SM_EMALFORMED (any other rule).
    Both directions use this one function, so the decoder accepts exactly
    what the encoder can write.                                               */
static int
s_wire_valid(const sm_wire_msg *m)
{
    int rc = 0;

    switch (m->type) {
    case SM_MSG_HELLO:
        if (m->u.hello.version != SM_WIRE_VERSION)
            return SM_EVERSION;
        return s_wire_text(m->u.hello.endpoint, sizeof m->u.hello.endpoint,
                           0, SM_ENDPOINT_BYTES_MAX);
    case SM_MSG_HEADS:
        if (m->u.heads.count > SM_MEMBERS_MAX)
            return SM_ETOOBIG;
        assert(m->u.heads.count == 0 || m->u.heads.heads != NULL);
        for (uint32_t i = 0; i < m->u.heads.count; i++) {
            const sm_wire_head *h = &m->u.heads.heads[i];
            if (!s_wire_seq(h->seq))
                return SM_EMALFORMED;
            if (i > 0 && memcmp(h[-1].origin.b, h->origin.b, SM_KEY_BYTES) >= 0)
                return SM_EMALFORMED;       /* unsorted or repeated origin */
        }
        return 0;
    case SM_MSG_WANT:
        if (m->u.want.count > SM_WIRE_RUN_MAX)
            return SM_ETOOBIG;
        if (m->u.want.count == 0 || !s_wire_run(m->u.want.from, m->u.want.count))
            return SM_EMALFORMED;
        return 0;
    case SM_MSG_ENTRIES:
        if (m->u.entries.count > SM_WIRE_RUN_MAX)
            return SM_ETOOBIG;
        if (m->u.entries.count == 0 ||
            !s_wire_run(m->u.entries.first_seq, m->u.entries.count))
            return SM_EMALFORMED;
        assert(m->u.entries.entries != NULL);
        for (uint32_t i = 0; i < m->u.entries.count && rc == 0; i++)
            rc = s_wire_signed(&m->u.entries.entries[i]);
        return rc;
    case SM_MSG_PEERS:
        if (m->u.peers.count > SM_WIRE_PEERS_MAX)
            return SM_ETOOBIG;
        assert(m->u.peers.count == 0 || m->u.peers.peers != NULL);
        for (uint32_t i = 0; i < m->u.peers.count; i++) {
            const sm_wire_peer *p = &m->u.peers.peers[i];
            rc = s_wire_text(p->endpoint, sizeof p->endpoint, 1, SM_ENDPOINT_BYTES_MAX);
            if (rc != 0)
                return rc;
            if (i > 0 && memcmp(p[-1].node.b, p->node.b, SM_KEY_BYTES) >= 0)
                return SM_EMALFORMED;       /* unsorted or repeated node */
        }
        return 0;
    case SM_MSG_UNITS_ASK:
    case SM_MSG_UNITS_GIVE:
        rc = s_wire_text(m->u.units.sku, sizeof m->u.units.sku, 1, SM_SKU_BYTES_MAX);
        if (rc != 0)
            return rc;
        if (m->u.units.qty > SM_QTY_MAX ||
            (m->type == SM_MSG_UNITS_ASK && m->u.units.qty == 0))
            return SM_EMALFORMED;
        if (m->type == SM_MSG_UNITS_ASK
            ? m->u.units.hops == 0 || m->u.units.hops > SM_UNITS_HOPS_MAX
            : m->u.units.hops != 0)
            return SM_EMALFORMED;
        return 0;
    case SM_MSG_HOLD_ASK:
        rc = s_wire_text(m->u.hold_ask.sku, sizeof m->u.hold_ask.sku, 1, SM_SKU_BYTES_MAX);
        if (rc != 0)
            return rc;
        if (m->u.hold_ask.qty == 0 || m->u.hold_ask.qty > SM_QTY_MAX)
            return SM_EMALFORMED;
        if (m->u.hold_ask.more_count > SM_HOLD_LINES_MAX - 1)
            return SM_ETOOBIG;
        for (uint32_t i = 0; i < m->u.hold_ask.more_count; i++) {
            const char *sku = m->u.hold_ask.more[i].sku;
            rc = s_wire_text(sku, sizeof m->u.hold_ask.more[i].sku, 1, SM_SKU_BYTES_MAX);
            if (rc != 0)
                return rc;
            if (m->u.hold_ask.more[i].qty == 0 || m->u.hold_ask.more[i].qty > SM_QTY_MAX
                || strcmp(sku, m->u.hold_ask.sku) == 0)
                return SM_EMALFORMED;
            for (uint32_t j = 0; j < i; j++)
                if (strcmp(sku, m->u.hold_ask.more[j].sku) == 0)
                    return SM_EMALFORMED;       /* one line a sku */
        }
        return s_wire_text(m->u.hold_ask.code, sizeof m->u.hold_ask.code, 0,
                           SM_HOLD_CODE_BYTES_MAX);
    case SM_MSG_HOLD_DONE:
        /* held: its expiry with its seq; refused: neither */
        return s_wire_done(m->u.hold_done.code, m->u.hold_done.seq, SM_WIRE_REFUSAL_MAX)
               && (m->u.hold_done.code == 0 ? m->u.hold_done.expires_ms >= 1
                                            : m->u.hold_done.expires_ms == 0)
               ? 0 : SM_EMALFORMED;
    case SM_MSG_ENTRY_ASK:
        return s_wire_seq(m->u.entry_ask.drop_seq) ? 0 : SM_EMALFORMED;
    case SM_MSG_ENTRY_DONE:
        return s_wire_done(m->u.entry_done.code, m->u.entry_done.seq,
                           SM_WIRE_ENTRY_REFUSAL_MAX) ? 0 : SM_EMALFORMED;
    case SM_MSG_FORK:
        if (!s_wire_seq(m->u.fork.seq))
            return SM_EMALFORMED;
        if ((rc = s_wire_signed(&m->u.fork.a)) != 0 ||
            (rc = s_wire_signed(&m->u.fork.b)) != 0)
            return rc;
        if (m->u.fork.a.len == m->u.fork.b.len &&
            memcmp(m->u.fork.a.bytes, m->u.fork.b.bytes, m->u.fork.a.len) == 0)
            return SM_EMALFORMED;           /* one entry twice is no fork */
        return 0;
    default:
        return SM_EKIND;
    }
}

/*  Pack [entry bin, sig bin64].                                            */
static int
s_pack_signed(msgpack_packer *pk, const sm_signed *s)
{
    return msgpack_pack_array(pk, 2) | s_pack_bin(pk, s->bytes, s->len) |
           s_pack_bin(pk, s->sig, SM_SIG_BYTES);
}

/*  Pack the answer to a HOLD_ASK or an ENTRY_ASK up to its seq: req_id,
    the refusal (-code, 0 = done) and the seq.                              */
static int
s_pack_done(msgpack_packer *pk, uint64_t req_id, int code, uint64_t seq)
{
    int bad = msgpack_pack_uint64(pk, req_id);
    bad |= msgpack_pack_uint64(pk, (uint64_t)(-(int64_t)code));
    bad |= msgpack_pack_uint64(pk, seq);
    return bad;
}

/*  Pack a message that s_wire_valid accepted.  Non-zero if the writer
    refused (out of room, or a difference from the bytes being compared).  */
static int
s_wire_pack(msgpack_packer *pk, const sm_wire_msg *m)
{
    int bad = 0;

    bad |= msgpack_pack_array(pk, s_wire_fields[m->type]);
    bad |= msgpack_pack_uint64(pk, (uint64_t)m->type);
    switch (m->type) {
    case SM_MSG_HELLO:
        bad |= msgpack_pack_uint64(pk, m->u.hello.version);
        bad |= s_pack_bin(pk, m->u.hello.market.b, SM_KEY_BYTES);
        bad |= s_pack_bin(pk, m->u.hello.node.b, SM_KEY_BYTES);
        bad |= s_pack_str(pk, m->u.hello.endpoint);
        break;
    case SM_MSG_HEADS:
        bad |= msgpack_pack_array(pk, m->u.heads.count);
        for (uint32_t i = 0; i < m->u.heads.count && !bad; i++) {
            const sm_wire_head *h = &m->u.heads.heads[i];
            bad |= msgpack_pack_array(pk, 3);
            bad |= s_pack_bin(pk, h->origin.b, SM_KEY_BYTES);
            bad |= msgpack_pack_uint64(pk, h->seq);
            bad |= s_pack_bin(pk, h->link.b, SM_HASH_BYTES);
        }
        break;
    case SM_MSG_WANT:
        bad |= s_pack_bin(pk, m->u.want.origin.b, SM_KEY_BYTES);
        bad |= msgpack_pack_uint64(pk, m->u.want.from);
        bad |= msgpack_pack_uint64(pk, m->u.want.count);
        break;
    case SM_MSG_ENTRIES:
        bad |= s_pack_bin(pk, m->u.entries.origin.b, SM_KEY_BYTES);
        bad |= msgpack_pack_uint64(pk, m->u.entries.first_seq);
        bad |= msgpack_pack_array(pk, m->u.entries.count);
        for (uint32_t i = 0; i < m->u.entries.count && !bad; i++)
            bad |= s_pack_signed(pk, &m->u.entries.entries[i]);
        break;
    case SM_MSG_PEERS:
        bad |= msgpack_pack_array(pk, m->u.peers.count);
        for (uint32_t i = 0; i < m->u.peers.count && !bad; i++) {
            bad |= msgpack_pack_array(pk, 2);
            bad |= s_pack_bin(pk, m->u.peers.peers[i].node.b, SM_KEY_BYTES);
            bad |= s_pack_str(pk, m->u.peers.peers[i].endpoint);
        }
        break;
    case SM_MSG_UNITS_ASK:
    case SM_MSG_UNITS_GIVE:
        bad |= msgpack_pack_uint64(pk, m->u.units.req_id);
        bad |= s_pack_str(pk, m->u.units.sku);
        bad |= msgpack_pack_uint64(pk, m->u.units.qty);
        bad |= s_pack_bin(pk, m->u.units.asker.b, SM_KEY_BYTES);
        if (m->type == SM_MSG_UNITS_ASK)
            bad |= msgpack_pack_uint64(pk, m->u.units.hops);
        break;
    case SM_MSG_HOLD_ASK:
        bad |= msgpack_pack_uint64(pk, m->u.hold_ask.req_id);
        bad |= s_pack_str(pk, m->u.hold_ask.sku);
        bad |= msgpack_pack_uint64(pk, m->u.hold_ask.qty);
        bad |= s_pack_str(pk, m->u.hold_ask.code);
        bad |= s_pack_tag(pk, m->u.hold_ask.device, m->u.hold_ask.has_device);
        bad |= s_pack_tag(pk, m->u.hold_ask.client, m->u.hold_ask.has_client);
        bad |= msgpack_pack_array(pk, m->u.hold_ask.more_count);
        for (uint32_t i = 0; i < m->u.hold_ask.more_count && !bad; i++) {
            bad |= msgpack_pack_array(pk, 2);
            bad |= s_pack_str(pk, m->u.hold_ask.more[i].sku);
            bad |= msgpack_pack_uint64(pk, m->u.hold_ask.more[i].qty);
        }
        break;
    case SM_MSG_HOLD_DONE:
        bad |= s_pack_done(pk, m->u.hold_done.req_id, m->u.hold_done.code, m->u.hold_done.seq);
        bad |= msgpack_pack_uint64(pk, m->u.hold_done.expires_ms);
        break;
    case SM_MSG_ENTRY_ASK:
        bad |= msgpack_pack_uint64(pk, m->u.entry_ask.req_id);
        bad |= s_pack_bin(pk, m->u.entry_ask.drop_origin.b, SM_KEY_BYTES);
        bad |= msgpack_pack_uint64(pk, m->u.entry_ask.drop_seq);
        bad |= s_pack_tag(pk, m->u.entry_ask.device, true);
        bad |= s_pack_tag(pk, m->u.entry_ask.client, m->u.entry_ask.has_client);
        break;
    case SM_MSG_ENTRY_DONE:
        bad |= s_pack_done(pk, m->u.entry_done.req_id, m->u.entry_done.code,
                           m->u.entry_done.seq);
        break;
    case SM_MSG_FORK:
        bad |= s_pack_bin(pk, m->u.fork.origin.b, SM_KEY_BYTES);
        bad |= msgpack_pack_uint64(pk, m->u.fork.seq);
        bad |= s_pack_signed(pk, &m->u.fork.a);
        bad |= s_pack_signed(pk, &m->u.fork.b);
        break;
    default:
        assert(!"s_wire_valid admitted an unknown type");
        bad = 1;
    }
    return bad;
}

/*  See wire.h.                                                               */
int
sm_wire_encode(const sm_wire_msg *msg, uint8_t *buf, size_t cap, size_t *len)
{
    assert(msg != NULL && buf != NULL && len != NULL);
    if (s_wire_valid(msg) != 0)
        return SM_EINVAL;

    s_writer w = { buf, cap < SM_WIRE_BYTES_MAX ? cap : SM_WIRE_BYTES_MAX, 0 };
    msgpack_packer pk;

    msgpack_packer_init(&pk, &w, s_write);
    if (s_wire_pack(&pk, msg) != 0)
        return SM_ETOOBIG;
    *len = w.len;
    return 0;
}

/*  A cursor over a message the scanner admitted.  The readers take every
    msgpack form of their type (canonical form is checked at the end, by
    packing the decoded message against the input) and check each length
    against the bytes that remain anyway, so they are safe on their own.  */
typedef struct {
    const uint8_t *p;          /* next byte */
    const uint8_t *end;
} s_reader;

/*  Bytes not yet read.                                                       */
static size_t
s_left(const s_reader *r)
{
    return (size_t)(r->end - r->p);
}

/*  The big-endian unsigned of n <= 8 bytes, consumed.                      */
static int
s_rd_be(s_reader *r, size_t n, uint64_t *v)
{
    uint64_t x = 0;

    if (n > s_left(r))
        return SM_ETRUNC;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | r->p[i];
    r->p += n;
    *v = x;
    return 0;
}

/*  A non-negative integer in any integer form (the signed forms included:
    `d0 05` is 5, and refused later as non-canonical).  A negative value or
    another type is SM_EMALFORMED.                                          */
static int
s_rd_uint(s_reader *r, uint64_t *v)
{
    size_t n;
    bool sign = false;

    if (s_left(r) == 0)
        return SM_ETRUNC;
    uint8_t t = *r->p++;
    if (t <= 0x7f) {
        *v = t;
        return 0;
    }
    switch (t) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    case 0xd0: n = 1; sign = true; break;
    case 0xd1: n = 2; sign = true; break;
    case 0xd2: n = 4; sign = true; break;
    case 0xd3: n = 8; sign = true; break;
    default:
        return SM_EMALFORMED;       /* negative fixint or not an integer */
    }
    int rc = s_rd_be(r, n, v);
    if (rc != 0)
        return rc;
    if (sign && (*v >> (8 * n - 1)) != 0)
        return SM_EMALFORMED;       /* negative */
    return 0;
}

/*  An array header: its element count, at most the bytes that remain.     */
static int
s_rd_array(s_reader *r, uint32_t *n)
{
    uint64_t v;
    int rc = 0;

    if (s_left(r) == 0)
        return SM_ETRUNC;
    uint8_t t = *r->p++;
    if (t >= 0x90 && t <= 0x9f)
        v = t & 0x0fu;
    else if (t == 0xdc)
        rc = s_rd_be(r, 2, &v);
    else if (t == 0xdd)
        rc = s_rd_be(r, 4, &v);
    else
        return SM_EMALFORMED;
    if (rc != 0)
        return rc;
    if (v > s_left(r))              /* each element takes a byte at least */
        return SM_ETRUNC;
    *n = (uint32_t)v;
    return 0;
}

/*  An array of exactly n elements.                                          */
static int
s_rd_tuple(s_reader *r, uint32_t n)
{
    uint32_t got;
    int rc = s_rd_array(r, &got);
    if (rc != 0)
        return rc;
    return got == n ? 0 : SM_EMALFORMED;
}

/*  A str (str true) or bin: its bytes, borrowed from the input.            */
static int
s_rd_bytes(s_reader *r, bool str, const uint8_t **b, size_t *n)
{
    uint64_t v;
    size_t width;

    if (s_left(r) == 0)
        return SM_ETRUNC;
    uint8_t t = *r->p++;
    if (str && t >= 0xa0 && t <= 0xbf) {
        v = t & 0x1fu;
        width = 0;
    } else if (t == (str ? 0xd9 : 0xc4)) {
        width = 1;
    } else if (t == (str ? 0xda : 0xc5)) {
        width = 2;
    } else if (t == (str ? 0xdb : 0xc6)) {
        width = 4;
    } else {
        return SM_EMALFORMED;
    }
    if (width > 0) {
        int rc = s_rd_be(r, width, &v);
        if (rc != 0)
            return rc;
    }
    if (v > s_left(r))
        return SM_ETRUNC;
    *b = r->p;
    *n = (size_t)v;
    r->p += v;
    return 0;
}

/*  A bin of exactly n bytes, copied to dst.                                */
static int
s_rd_fixed(s_reader *r, uint8_t *dst, size_t n)
{
    const uint8_t *b;
    size_t got;
    int rc = s_rd_bytes(r, false, &b, &got);
    if (rc != 0)
        return rc;
    if (got != n)
        return SM_EMALFORMED;
    memcpy(dst, b, n);
    return 0;
}

/*  A str of min..max bytes of text copied into dst[0..max] with a NUL:
    longer is SM_ETOOBIG (checked before anything is copied), shorter or
    not text (bad UTF-8, a control character, a NUL) SM_EMALFORMED.        */
static int
s_rd_text(s_reader *r, char *dst, size_t min, size_t max)
{
    const uint8_t *s;
    size_t n;
    int rc = s_rd_bytes(r, true, &s, &n);
    if (rc != 0)
        return rc;
    if (n > max)
        return SM_ETOOBIG;
    if (n < min || !sm__text_valid(s, n))
        return SM_EMALFORMED;
    if (n > 0)
        memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/*  A shopper's tag: a bin of 0 (none) or SM_HOLD_TAG_BYTES bytes.         */
static int
s_rd_tag(s_reader *r, uint8_t *dst, bool *present)
{
    const uint8_t *b;
    size_t n;
    int rc = s_rd_bytes(r, false, &b, &n);
    if (rc != 0)
        return rc;
    if (n != 0 && n != SM_HOLD_TAG_BYTES)
        return SM_EMALFORMED;
    *present = n != 0;
    if (n)
        memcpy(dst, b, n);
    return 0;
}

/*  The answer of a HOLD_DONE or an ENTRY_DONE up to its seq: req_id, a
    refusal of at most `max` (kept as -code) and the seq.                   */
static int
s_rd_done(s_reader *r, uint64_t max, uint64_t *req_id, int *code, uint64_t *seq)
{
    uint64_t v;
    int rc;
    if ((rc = s_rd_uint(r, req_id)) != 0 || (rc = s_rd_uint(r, &v)) != 0)
        return rc;
    if (v > max)
        return SM_EMALFORMED;
    *code = -(int)v;
    return s_rd_uint(r, seq);
}

/*  [entry bin, sig bin64]; the entry's bytes are borrowed from the input. */
static int
s_rd_signed(s_reader *r, sm_signed *out)
{
    int rc = s_rd_tuple(r, 2);
    if (rc == 0)
        rc = s_rd_bytes(r, false, &out->bytes, &out->len);
    if (rc == 0)
        rc = s_wire_signed(out);
    if (rc == 0)
        rc = s_rd_fixed(r, out->sig, SM_SIG_BYTES);
    return rc;
}

/*  The header of a variable array of at most `max` elements: SM_ETOOBIG
    before any element is read (or written to the space) if it claims more. */
static int
s_rd_count(s_reader *r, uint32_t max, uint32_t *n)
{
    int rc = s_rd_array(r, n);
    if (rc != 0)
        return rc;
    return *n > max ? SM_ETOOBIG : 0;
}

/*  HELLO after its type, the root array having `fields` elements.  The
    version comes first: another version is SM_EVERSION whatever follows
    (a later version may change the shape), with the fields filled in as
    far as they read as this version's, for the caller's log line.            */
static int
s_rd_hello(s_reader *r, uint32_t fields, sm_wire_msg *m)
{
    uint64_t version;
    int rc;

    if (fields < 2)
        return SM_EMALFORMED;
    if ((rc = s_rd_uint(r, &version)) != 0)
        return rc;
    if (version > UINT32_MAX)
        return SM_EMALFORMED;
    m->u.hello.version = (uint32_t)version;
    if (version != SM_WIRE_VERSION) {
        if (fields == s_wire_fields[SM_MSG_HELLO] &&
            s_rd_fixed(r, m->u.hello.market.b, SM_KEY_BYTES) == 0 &&
            s_rd_fixed(r, m->u.hello.node.b, SM_KEY_BYTES) == 0 &&
            s_rd_text(r, m->u.hello.endpoint, 0, SM_ENDPOINT_BYTES_MAX) == 0)
            return SM_EVERSION;
        memset(&m->u.hello, 0, sizeof m->u.hello);
        m->u.hello.version = (uint32_t)version;
        return SM_EVERSION;
    }
    if (fields != s_wire_fields[SM_MSG_HELLO])
        return SM_EMALFORMED;
    if ((rc = s_rd_fixed(r, m->u.hello.market.b, SM_KEY_BYTES)) != 0 ||
        (rc = s_rd_fixed(r, m->u.hello.node.b, SM_KEY_BYTES)) != 0)
        return rc;
    return s_rd_text(r, m->u.hello.endpoint, 0, SM_ENDPOINT_BYTES_MAX);
}

/*  The fields of a message after its type (the element count checked),
    into *m and the space.                                                  */
static int
s_rd_body(s_reader *r, sm_wire_space *space, sm_wire_msg *m)
{
    uint64_t v;
    uint32_t n;
    int rc;

#define S_TRY(expr) do { if ((rc = (expr)) != 0) return rc; } while (0)
    switch (m->type) {
    case SM_MSG_HEADS:
        S_TRY(s_rd_count(r, SM_MEMBERS_MAX, &n));
        m->u.heads.heads = space->heads;
        for (uint32_t i = 0; i < n; i++) {
            sm_wire_head *h = &space->heads[i];
            S_TRY(s_rd_tuple(r, 3));
            S_TRY(s_rd_fixed(r, h->origin.b, SM_KEY_BYTES));
            S_TRY(s_rd_uint(r, &h->seq));
            S_TRY(s_rd_fixed(r, h->link.b, SM_HASH_BYTES));
        }
        m->u.heads.count = n;
        return 0;
    case SM_MSG_WANT:
        S_TRY(s_rd_fixed(r, m->u.want.origin.b, SM_KEY_BYTES));
        S_TRY(s_rd_uint(r, &m->u.want.from));
        S_TRY(s_rd_uint(r, &v));
        if (v > SM_WIRE_RUN_MAX)
            return SM_ETOOBIG;
        m->u.want.count = (uint32_t)v;
        return 0;
    case SM_MSG_ENTRIES:
        S_TRY(s_rd_fixed(r, m->u.entries.origin.b, SM_KEY_BYTES));
        S_TRY(s_rd_uint(r, &m->u.entries.first_seq));
        S_TRY(s_rd_count(r, SM_WIRE_RUN_MAX, &n));
        if (n == 0)
            return SM_EMALFORMED;
        m->u.entries.entries = space->entries;
        for (uint32_t i = 0; i < n; i++)
            S_TRY(s_rd_signed(r, &space->entries[i]));
        m->u.entries.count = n;
        return 0;
    case SM_MSG_PEERS:
        S_TRY(s_rd_count(r, SM_WIRE_PEERS_MAX, &n));
        m->u.peers.peers = space->peers;
        for (uint32_t i = 0; i < n; i++) {
            sm_wire_peer *p = &space->peers[i];
            S_TRY(s_rd_tuple(r, 2));
            S_TRY(s_rd_fixed(r, p->node.b, SM_KEY_BYTES));
            S_TRY(s_rd_text(r, p->endpoint, 1, SM_ENDPOINT_BYTES_MAX));
        }
        m->u.peers.count = n;
        return 0;
    case SM_MSG_UNITS_ASK:
    case SM_MSG_UNITS_GIVE:
        S_TRY(s_rd_uint(r, &m->u.units.req_id));
        S_TRY(s_rd_text(r, m->u.units.sku, 1, SM_SKU_BYTES_MAX));
        S_TRY(s_rd_uint(r, &v));
        if (v > SM_QTY_MAX)
            return SM_EMALFORMED;
        m->u.units.qty = (uint32_t)v;
        S_TRY(s_rd_fixed(r, m->u.units.asker.b, SM_KEY_BYTES));
        m->u.units.hops = 0;
        if (m->type == SM_MSG_UNITS_GIVE)
            return 0;
        S_TRY(s_rd_uint(r, &v));
        if (v == 0 || v > SM_UNITS_HOPS_MAX)
            return SM_EMALFORMED;
        m->u.units.hops = (uint32_t)v;
        return 0;
    case SM_MSG_HOLD_ASK:
        S_TRY(s_rd_uint(r, &m->u.hold_ask.req_id));
        S_TRY(s_rd_text(r, m->u.hold_ask.sku, 1, SM_SKU_BYTES_MAX));
        S_TRY(s_rd_uint(r, &v));
        if (v == 0 || v > SM_QTY_MAX)
            return SM_EMALFORMED;
        m->u.hold_ask.qty = (uint32_t)v;
        S_TRY(s_rd_text(r, m->u.hold_ask.code, 0, SM_HOLD_CODE_BYTES_MAX));
        S_TRY(s_rd_tag(r, m->u.hold_ask.device, &m->u.hold_ask.has_device));
        S_TRY(s_rd_tag(r, m->u.hold_ask.client, &m->u.hold_ask.has_client));
        S_TRY(s_rd_count(r, SM_HOLD_LINES_MAX - 1, &n));
        for (uint32_t i = 0; i < n; i++) {
            S_TRY(s_rd_tuple(r, 2));
            S_TRY(s_rd_text(r, m->u.hold_ask.more[i].sku, 1, SM_SKU_BYTES_MAX));
            S_TRY(s_rd_uint(r, &v));
            if (v == 0 || v > SM_QTY_MAX)
                return SM_EMALFORMED;
            m->u.hold_ask.more[i].qty = (uint32_t)v;
        }
        m->u.hold_ask.more_count = n;
        return 0;
    case SM_MSG_HOLD_DONE:
        S_TRY(s_rd_done(r, SM_WIRE_REFUSAL_MAX, &m->u.hold_done.req_id, &m->u.hold_done.code,
                        &m->u.hold_done.seq));
        return s_rd_uint(r, &m->u.hold_done.expires_ms);
    case SM_MSG_ENTRY_ASK: {
        bool has_device;
        S_TRY(s_rd_uint(r, &m->u.entry_ask.req_id));
        S_TRY(s_rd_fixed(r, m->u.entry_ask.drop_origin.b, SM_KEY_BYTES));
        S_TRY(s_rd_uint(r, &m->u.entry_ask.drop_seq));
        S_TRY(s_rd_tag(r, m->u.entry_ask.device, &has_device));
        if (!has_device)
            return SM_EMALFORMED;       /* an entry always names its device */
        return s_rd_tag(r, m->u.entry_ask.client, &m->u.entry_ask.has_client);
    }
    case SM_MSG_ENTRY_DONE:
        return s_rd_done(r, SM_WIRE_ENTRY_REFUSAL_MAX, &m->u.entry_done.req_id,
                         &m->u.entry_done.code, &m->u.entry_done.seq);
    case SM_MSG_FORK:
        S_TRY(s_rd_fixed(r, m->u.fork.origin.b, SM_KEY_BYTES));
        S_TRY(s_rd_uint(r, &m->u.fork.seq));
        S_TRY(s_rd_signed(r, &m->u.fork.a));
        return s_rd_signed(r, &m->u.fork.b);
    default:
        assert(!"s_rd_body called for HELLO or an unknown type");
        return SM_EKIND;
    }
#undef S_TRY
}

/*  See wire.h.  In the order of proto/mesh.md section 6: size, scan, type,
    shape and lengths, value rules, canonical form.  *out is written even on
    failure; then only the HELLO of SM_EVERSION is meaningful.              */
int
sm_wire_decode(const uint8_t *buf, size_t len, sm_wire_space *space,
               sm_wire_msg *out)
{
    uint32_t fields;
    uint64_t type;
    int rc;

    assert((buf != NULL || len == 0) && space != NULL && out != NULL);
    memset(out, 0, sizeof *out);
    if (len > SM_WIRE_BYTES_MAX)
        return SM_ETOOBIG;
    rc = sm__msgpack_scan(buf, len, SM_MSGPACK_DEPTH_MAX);
    if (rc != 0)
        return rc;

    s_reader r = { buf, buf + len };
    if ((rc = s_rd_array(&r, &fields)) != 0)
        return rc;
    if (fields == 0)
        return SM_EMALFORMED;
    if ((rc = s_rd_uint(&r, &type)) != 0)
        return rc;
    if (type < 1 || type > SM_MSG_TYPE_MAX)
        return SM_EKIND;
    out->type = (sm_msg_type)type;
    if (out->type == SM_MSG_HELLO) {
        rc = s_rd_hello(&r, fields, out);
    } else if (fields != s_wire_fields[type]) {
        rc = SM_EMALFORMED;
    } else {
        rc = s_rd_body(&r, space, out);
    }
    if (rc != 0)
        return rc;
    if (r.p != r.end)               /* the scanner saw one object: a bug */
        return SM_EMALFORMED;
    rc = s_wire_valid(out);
    if (rc != 0)
        return rc;

    s_comparer c = { buf, len, 0 };
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c, s_compare);
    if (s_wire_pack(&pk, out) != 0 || c.pos != len)
        return SM_ENONCANON;
    return 0;
}

/*  qsort orders for sm_wire_sort.                                           */
static int
s_head_order(const void *a, const void *b)
{
    return memcmp(((const sm_wire_head *)a)->origin.b,
                  ((const sm_wire_head *)b)->origin.b, SM_KEY_BYTES);
}

static int
s_peer_order(const void *a, const void *b)
{
    return memcmp(((const sm_wire_peer *)a)->node.b,
                  ((const sm_wire_peer *)b)->node.b, SM_KEY_BYTES);
}

/*  See wire.h.                                                               */
void
sm_wire_sort(sm_wire_msg *msg)
{
    assert(msg != NULL);
    if (msg->type == SM_MSG_HEADS && msg->u.heads.count > 1)
        qsort(msg->u.heads.heads, msg->u.heads.count, sizeof msg->u.heads.heads[0],
              s_head_order);
    else if (msg->type == SM_MSG_PEERS && msg->u.peers.count > 1)
        qsort(msg->u.peers.peers, msg->u.peers.count, sizeof msg->u.peers.peers[0],
              s_peer_order);
}
