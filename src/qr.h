/*  QR codes: the only module that includes qrencode.h.  The CLI
    draws them in a terminal (cli_qr.c), the web server serves the stock
    page's as SVG for /poster.                                               */
#ifndef SM_QR_H
#define SM_QR_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int width;                 /* modules a side, without the quiet zone */
    uint8_t *dark;             /* width * width, row by row: 1 dark, 0 light */
} sm_qr;

/*  Encode `text` (8-bit mode, error correction `level`: 0 L, 1 M, 2 Q,
    3 H).  0, SM_ETOOBIG (too long for any QR version) or SM_ENOMEM; on
    success the caller clears *out.                                           */
int sm_qr_encode(const char *text, int level, sm_qr *out);
void sm_qr_clear(sm_qr *qr);

/*  An SVG document of the code with a 4-module quiet zone, dark modules as
    one path, `title` (may be NULL; XML-escaped) as its <title> and `desc`
    as its <desc>.  Returned (caller frees), its length in *len; NULL if out
    of memory.                                                                */
char *sm_qr_svg(const sm_qr *qr, const char *title, const char *desc, size_t *len);

#endif
