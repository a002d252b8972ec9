/*  Join tokens as QR codes in a terminal (the encoding itself is src/qr.c,
    the only file that includes qrencode.h: one module per dependency).

    The token is encoded in 8-bit mode (base64url has lowercase letters, so
    alphanumeric mode does not apply) with error correction level L: a token
    is a few hundred characters, and L keeps the code small enough for a
    phone to read off a laptop screen; the token is signed, so a misread is
    refused rather than trusted.

    Each line of output shows two rows of modules with the Unicode half
    blocks "▀", "▄", "█" and " ".  Like `qrencode -t UTF8`, it draws the
    *light* modules and the quiet zone as ink, assuming light text on a dark
    terminal, so the code appears dark on light as scanners expect.  The
    quiet zone is the 4 modules the standard asks for.                       */
#include <assert.h>
#include <errno.h>
#include <stdio.h>

#include "cli.h"
#include "qr.h"
#include "stallmesh/error.h"

#define SM__QR_QUIET_MODULES 4

/*  True if the module at (x, y) of the padded square is light: outside the
    symbol (quiet zone) or a light module of it.                              */
static bool
s_light(const sm_qr *qr, int x, int y)
{
    int w = qr->width;
    x -= SM__QR_QUIET_MODULES;
    y -= SM__QR_QUIET_MODULES;
    if (x < 0 || y < 0 || x >= w || y >= w)
        return true;
    return qr->dark[y * w + x] == 0;
}

int
sm__qr_print(const char *text, FILE *out)
{
    assert(text != NULL && out != NULL);
    sm_qr code;
    int rc = sm_qr_encode(text, 0, &code);
    if (rc != 0)
        return rc;
    const sm_qr *qr = &code;

    int size = qr->width + 2 * SM__QR_QUIET_MODULES;
    for (int y = 0; y < size; y += 2) {
        for (int x = 0; x < size; x++) {
            bool top = s_light(qr, x, y);
            bool bottom = s_light(qr, x, y + 1);   /* past the end: quiet zone */
            fputs(top && bottom ? "\u2588" : top ? "\u2580" : bottom ? "\u2584" : " ", out);
        }
        fputc('\n', out);
    }
    sm_qr_clear(&code);
    return 0;
}
