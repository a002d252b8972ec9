/*  Websocket frame headers and UTF-8, checked in pieces (src/wsframe.h).

    A client frame (RFC 6455 5.2):

        byte 0      FIN(1) RSV(3) opcode(4)
        byte 1      MASK(1) length(7): 0-125, or 126 (16-bit length follows),
                    or 127 (64-bit length follows, most significant bit 0)
        2 or 8      the extended length, big-endian, if any
        4           the masking key: always there from a client (5.1: "The
                    server MUST close the connection upon receiving a frame
                    that is not masked")
        length      the payload

    Opcodes 0 (continuation), 1 (text) and 2 (binary) carry a message's
    data; 8-15 are control frames (close, ping, pong), at most 125 bytes,
    which the library checks.  A message's size is the sum of its frames'
    lengths, checked against the limit as each header arrives, so a frame
    claiming 2^62 bytes is refused before any of them.

    UTF-8 follows the table of well-formed byte sequences (Unicode 15,
    table 3-7): the first continuation byte's range depends on the lead byte
    (E0: A0-BF, ED: 80-9F, F0: 90-BF, F4: 80-8F), the others are 80-BF.     */
#include "wsframe.h"

#include <assert.h>
#include <string.h>

#include "stallmesh/error.h"

enum { S_HEAD, S_LEN, S_EXTLEN, S_MASK, S_PAYLOAD };

void
sm_wsframe_init(sm_wsframe *f)
{
    assert(f);
    memset(f, 0, sizeof *f);
    f->part = S_HEAD;
}

/*  The frame's length is known: check its message's size.                 */
static int
s_length_known(sm_wsframe *f, uint64_t message_max)
{
    if (f->opcode & 0x8)
        return 0;              /* control: the library refuses > 125 */
    if (f->opcode != 0)
        f->message_bytes = 0;  /* a new message */
    if (f->len > message_max || f->message_bytes > message_max - f->len)
        return SM_EWSTOOBIG;
    f->message_bytes += f->len;
    return 0;
}

int
sm_wsframe_scan(sm_wsframe *f, const uint8_t *p, size_t n, uint64_t message_max)
{
    assert(f && (p || n == 0));
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        switch (f->part) {
        case S_HEAD:
            f->opcode = b & 0x0f;
            f->part = S_LEN;
            i++;
            break;
        case S_LEN:
            if (!(b & 0x80))
                return SM_EWSUNMASKED;
            i++;
            if ((b & 0x7f) >= 126) {
                f->need = (b & 0x7f) == 126 ? 2 : 8;
                f->len = 0;
                f->part = S_EXTLEN;
                break;
            }
            f->len = b & 0x7f;
            if (s_length_known(f, message_max) != 0)
                return SM_EWSTOOBIG;
            f->need = 4;
            f->part = S_MASK;
            break;
        case S_EXTLEN:
            if (f->len >> 56)
                return SM_EWSTOOBIG;   /* would overflow: past any limit */
            f->len = (f->len << 8) | b;
            i++;
            if (--f->need == 0) {
                if (s_length_known(f, message_max) != 0)
                    return SM_EWSTOOBIG;
                f->need = 4;
                f->part = S_MASK;
            }
            break;
        case S_MASK:
            i++;
            if (--f->need == 0)
                f->part = f->len ? S_PAYLOAD : S_HEAD;
            break;
        case S_PAYLOAD: {
            size_t take = n - i;
            if ((uint64_t) take > f->len)
                take = (size_t) f->len;
            i += take;
            f->len -= take;
            if (f->len == 0)
                f->part = S_HEAD;
            break;
        }
        default:
            assert(!"bad frame part");
            return SM_EWSTOOBIG;
        }
    }
    return 0;
}

void
sm_utf8_init(sm_utf8 *u)
{
    assert(u);
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xbf;
}

int
sm_utf8_check(sm_utf8 *u, const uint8_t *p, size_t n)
{
    assert(u && (p || n == 0));
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (u->need) {
            if (b < u->lo || b > u->hi)
                return SM_EWSUTF8;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xbf;
            continue;
        }
        if (b < 0x80)
            continue;
        if (b >= 0xc2 && b <= 0xdf) {
            u->need = 1;
        } else if (b >= 0xe0 && b <= 0xef) {
            u->need = 2;
            if (b == 0xe0)
                u->lo = 0xa0;
            else if (b == 0xed)
                u->hi = 0x9f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            u->need = 3;
            if (b == 0xf0)
                u->lo = 0x90;
            else if (b == 0xf4)
                u->hi = 0x8f;
        } else {
            return SM_EWSUTF8;  /* 80-C1 (stray or overlong lead), F5-FF */
        }
    }
    return 0;
}

bool
sm_utf8_complete(const sm_utf8 *u)
{
    assert(u);
    return u->need == 0;
}
