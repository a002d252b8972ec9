/*  Text validation (text.h): one pass over the bytes, no allocation, no
    locale.                                                                   */
#include "text.h"

#include <assert.h>

/*  See text.h.  One pass; each sequence is decoded to its code point so
    that overlong forms, surrogates and values above U+10FFFF are caught.    */
bool
sm__text_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;

    assert(s != NULL || len == 0);
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        size_t more;
        uint32_t cp, least;
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1; cp = c & 0x1fu; least = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2; cp = c & 0x0fu; least = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3; cp = c & 0x07u; least = 0x10000;
        } else {
            return false;          /* continuation byte, c0/c1, f5.. */
        }
        if (more > len - i - 1)
            return false;
        for (size_t j = 1; j <= more; j++) {
            uint8_t d = s[i + j];
            if ((d & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (d & 0x3fu);
        }
        if (cp < least || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += more + 1;
    }
    return true;
}
