/*  A minimal msgpack writer for tests; see mpw.h.                           */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/mpw.h"

void
mpw_init(mpw *w)
{
    w->len = 0;
}

void
mpw_raw(mpw *w, const void *bytes, size_t n)
{
    if (n > MPW_CAP - w->len) {
        fprintf(stderr, "mpw: test buffer overflow\n");
        abort();
    }
    if (n > 0)
        memcpy(w->b + w->len, bytes, n);
    w->len += n;
}

void
mpw_byte(mpw *w, uint8_t b)
{
    mpw_raw(w, &b, 1);
}

void
mpw_be(mpw *w, uint64_t v, unsigned width)
{
    for (unsigned i = width; i > 0; i--)
        mpw_byte(w, (uint8_t)(v >> (8 * (i - 1))));
}

void
mpw_uint(mpw *w, uint64_t v)
{
    if (v < 0x80)             { mpw_byte(w, (uint8_t)v); }
    else if (v <= 0xff)       { mpw_byte(w, 0xcc); mpw_be(w, v, 1); }
    else if (v <= 0xffff)     { mpw_byte(w, 0xcd); mpw_be(w, v, 2); }
    else if (v <= 0xffffffff) { mpw_byte(w, 0xce); mpw_be(w, v, 4); }
    else                      { mpw_byte(w, 0xcf); mpw_be(w, v, 8); }
}

void
mpw_int(mpw *w, int64_t v)
{
    if (v >= 0)               { mpw_uint(w, (uint64_t)v); }
    else if (v >= -32)        { mpw_byte(w, (uint8_t)(int8_t)v); }
    else if (v >= INT8_MIN)   { mpw_byte(w, 0xd0); mpw_be(w, (uint64_t)v, 1); }
    else if (v >= INT16_MIN)  { mpw_byte(w, 0xd1); mpw_be(w, (uint64_t)v, 2); }
    else if (v >= INT32_MIN)  { mpw_byte(w, 0xd2); mpw_be(w, (uint64_t)v, 4); }
    else                      { mpw_byte(w, 0xd3); mpw_be(w, (uint64_t)v, 8); }
}

void
mpw_strn(mpw *w, const void *s, size_t n)
{
    if (n < 32)          { mpw_byte(w, (uint8_t)(0xa0 | n)); }
    else if (n <= 0xff)  { mpw_byte(w, 0xd9); mpw_be(w, n, 1); }
    else if (n <= 0xffff){ mpw_byte(w, 0xda); mpw_be(w, n, 2); }
    else                 { mpw_byte(w, 0xdb); mpw_be(w, n, 4); }
    mpw_raw(w, s, n);
}

void
mpw_str(mpw *w, const char *s)
{
    mpw_strn(w, s, strlen(s));
}

void
mpw_bin(mpw *w, const void *b, size_t n)
{
    if (n <= 0xff)       { mpw_byte(w, 0xc4); mpw_be(w, n, 1); }
    else if (n <= 0xffff){ mpw_byte(w, 0xc5); mpw_be(w, n, 2); }
    else                 { mpw_byte(w, 0xc6); mpw_be(w, n, 4); }
    mpw_raw(w, b, n);
}

void
mpw_arr(mpw *w, uint32_t n)
{
    if (n < 16)          { mpw_byte(w, (uint8_t)(0x90 | n)); }
    else if (n <= 0xffff){ mpw_byte(w, 0xdc); mpw_be(w, n, 2); }
    else                 { mpw_byte(w, 0xdd); mpw_be(w, n, 4); }
}

void
mpw_nil(mpw *w)
{
    mpw_byte(w, 0xc0);
}

void
mpw_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int
s_nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long
mpw_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 != 0 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = s_nibble(hex[2 * i]), lo = s_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}
