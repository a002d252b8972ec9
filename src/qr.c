/*  QR codes (src/qr.h): libqrencode behind the project's own type, and the
    SVG form the poster page shows.

    The SVG is sized by its viewBox only (one unit a module), so it scales
    to any print size; shape-rendering="crispEdges" keeps module edges sharp
    and each row's runs of dark modules are one "h" segment, so a version 5
    code is a few KiB.                                                        */
#include "qr.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qrencode.h>

#include "stallmesh/error.h"

#define SM__QR_QUIET_MODULES 4

int
sm_qr_encode(const char *text, int level, sm_qr *out)
{
    assert(text && out && level >= 0 && level <= 3);
    static const QRecLevel levels[] = { QR_ECLEVEL_L, QR_ECLEVEL_M, QR_ECLEVEL_Q, QR_ECLEVEL_H };
    memset(out, 0, sizeof *out);
    errno = 0;
    QRcode *qr = QRcode_encodeString(text, 0, levels[level], QR_MODE_8, 1);
    if (!qr)
        return errno == ERANGE ? SM_ETOOBIG : SM_ENOMEM;
    size_t n = (size_t) qr->width * (size_t) qr->width;
    out->dark = malloc(n);
    if (!out->dark) {
        QRcode_free(qr);
        return SM_ENOMEM;
    }
    out->width = qr->width;
    for (size_t i = 0; i < n; i++)
        out->dark[i] = qr->data[i] & 1;
    QRcode_free(qr);
    return 0;
}

void
sm_qr_clear(sm_qr *qr)
{
    assert(qr);
    free(qr->dark);
    qr->dark = NULL;
    qr->width = 0;
}

typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} s_buf;

static void
s_put(s_buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t) n < b->cap - b->len) {
            b->len += (size_t) n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t) n;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void
s_put_escaped(s_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': s_put(b, "&amp;"); break;
        case '<': s_put(b, "&lt;"); break;
        case '>': s_put(b, "&gt;"); break;
        case '"': s_put(b, "&quot;"); break;
        case '\'': s_put(b, "&apos;"); break;
        default: s_put(b, "%c", *s); break;
        }
    }
}

char *
sm_qr_svg(const sm_qr *qr, const char *title, const char *desc, size_t *len)
{
    assert(qr && qr->dark && len);
    int side = qr->width + 2 * SM__QR_QUIET_MODULES;
    s_buf b = { .p = malloc(4096), .cap = 4096 };
    if (!b.p)
        return NULL;
    s_put(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
              "shape-rendering=\"crispEdges\" role=\"img\">", side, side);
    s_put(&b, "<title>");
    s_put_escaped(&b, title);
    s_put(&b, "</title><desc>");
    s_put_escaped(&b, desc);
    s_put(&b, "</desc><rect width=\"%d\" height=\"%d\" fill=\"#fff\"/><path fill=\"#000\" d=\"",
          side, side);
    for (int y = 0; y < qr->width; y++) {
        for (int x = 0; x < qr->width;) {
            if (!qr->dark[y * qr->width + x]) {
                x++;
                continue;
            }
            int run = 0;
            while (x + run < qr->width && qr->dark[y * qr->width + x + run])
                run++;
            s_put(&b, "M%d %dh%dv1h-%dz", x + SM__QR_QUIET_MODULES, y + SM__QR_QUIET_MODULES,
                  run, run);
            x += run;
        }
    }
    s_put(&b, "\"/></svg>\n");
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
