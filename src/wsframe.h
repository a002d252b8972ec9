/*  Websocket frames from a client, checked as their bytes arrive, and
    UTF-8 checked in pieces (RFC 6455 sections 5.2, 5.6, 8.1).

    The web server's library parses frames itself but does not refuse a
    client's unmasked frame, and reports a frame's length only once payload
    has arrived; web.c runs the bytes it reads from each websocket client
    through sm_wsframe_scan to close such a client at the first bad header.
    No I/O, no allocation: a state is a small struct the caller keeps per
    connection.                                                               */
#ifndef SM_WSFRAME_H
#define SM_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t part;              /* the field the next byte belongs to */
    uint8_t need;              /* bytes left of an extended length or mask */
    uint8_t opcode;            /* of the frame being read */
    uint64_t len;              /* length being assembled, then payload left */
    uint64_t message_bytes;    /* payload of the current message so far */
} sm_wsframe;

/*  A state for the first byte a client sends after the handshake.          */
void sm_wsframe_init(sm_wsframe *f);

/*  Take the next n bytes the client sent.  0 if every frame header in them
    is good so far; SM_EWSUNMASKED for a frame without the mask bit,
    SM_EWSTOOBIG for a data frame whose length takes its message (its
    fragments together) past message_max.  After an error the state is
    spent: the caller closes the connection.                                  */
int sm_wsframe_scan(sm_wsframe *f, const uint8_t *p, size_t n, uint64_t message_max);

typedef struct {
    uint8_t need;              /* continuation bytes still to come */
    uint8_t lo, hi;            /* the range the next continuation byte must be in */
} sm_utf8;

/*  A state for the start of a text.                                          */
void sm_utf8_init(sm_utf8 *u);
/*  Check the next n bytes of a text: 0, or SM_EWSUTF8 at the first byte that
    makes it invalid (overlong forms, surrogates, code points past U+10FFFF
    and stray continuation bytes included).  A sequence may be split across
    calls.                                                                    */
int sm_utf8_check(sm_utf8 *u, const uint8_t *p, size_t n);
/*  True if the text so far does not end inside a sequence.                  */
bool sm_utf8_complete(const sm_utf8 *u);

#endif
