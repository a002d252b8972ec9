/*  QR codes as SVG for the pages: the node side of libqrencode (the CLI's
    terminal drawing is cli_qr.c; these two files are the only ones that
    include qrencode.h).                                                     */
#ifndef SM_QR_H
#define SM_QR_H

#include <stddef.h>

/*  `text` (at most 64 bytes) as a QR code in SVG: dark modules on white,
    the 4-module quiet zone, error correction level M, scaled by the
    viewer.  Returned malloc'd (caller frees) with its length in *len, or
    NULL (too long, or no memory).                                           */
char *sm_qr_svg(const char *text, size_t *len);

#endif
