/*  Text: what every format of the project (log entries, mesh messages, join
    tokens, API bodies) accepts as a string.  Its own module so that the
    entry rules (entry.c) and the codec (codec.c) both use it without
    either including the other.                                              */
#ifndef SM_TEXT_H
#define SM_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  True if s[0..len) is text as the formats allow it: well-formed UTF-8
    (no overlong forms, surrogates or code points above U+10FFFF) without
    control characters (bytes below 0x20, 0x7f; so no NUL either).  `s` is
    borrowed; NULL only with len 0.                                          */
bool sm__text_valid(const uint8_t *s, size_t len);

#endif
