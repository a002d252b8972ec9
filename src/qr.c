/*  QR codes as SVG (qr.h).  One <path> of unit squares, one per dark
    module, in a viewBox of the symbol plus its quiet zone, so the browser
    scales it without blur (crispEdges).  A pickup code is 6 characters of
    the alphanumeric set: version 1, 21 x 21 modules, about 3 KB of SVG.     */
#include "qr.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qrencode.h>

#define S_QUIET 4
#define S_TEXT_MAX 64u

char *
sm_qr_svg(const char *text, size_t *len)
{
    assert(text && len);
    if (strlen(text) > S_TEXT_MAX)
        return NULL;
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (!qr)
        return NULL;
    int w = qr->width, size = w + 2 * S_QUIET;
    /* Each dark module is "M x y h1v1h-1z" (at most 20 bytes). */
    size_t cap = 512 + (size_t) w * (size_t) w * 20;
    char *out = malloc(cap);
    if (!out) {
        QRcode_free(qr);
        return NULL;
    }
    size_t at = (size_t) snprintf(out, cap,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
        "shape-rendering=\"crispEdges\"><rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>"
        "<path fill=\"#000\" d=\"", size, size, size, size);
    for (int y = 0; y < w; y++)
        for (int x = 0; x < w; x++)
            if (qr->data[y * w + x] & 1)
                at += (size_t) snprintf(out + at, cap - at, "M%d %dh1v1h-1z",
                                        x + S_QUIET, y + S_QUIET);
    at += (size_t) snprintf(out + at, cap - at, "\"/></svg>\n");
    QRcode_free(qr);
    assert(at < cap);
    *len = at;
    return out;
}
