/*  A minimal msgpack writer for tests, written from the msgpack spec and
    independent of msgpack-c, so that tests can build bytes the codec would
    never produce (non-canonical forms, wrong types, hostile lengths) and
    check the codec's canonical output against a second implementation.
    It writes into a fixed buffer and aborts the test program on overflow.  */
#ifndef SM_TEST_MPW_H
#define SM_TEST_MPW_H

#include <stddef.h>
#include <stdint.h>

#define MPW_CAP 16384u

typedef struct {
    uint8_t b[MPW_CAP];
    size_t len;
} mpw;

void mpw_init(mpw *w);
void mpw_raw(mpw *w, const void *bytes, size_t n);
void mpw_byte(mpw *w, uint8_t b);
/* Canonical (shortest) forms. */
void mpw_uint(mpw *w, uint64_t v);
void mpw_int(mpw *w, int64_t v);        /* negative forms below zero */
void mpw_str(mpw *w, const char *s);
void mpw_strn(mpw *w, const void *s, size_t n);
void mpw_bin(mpw *w, const void *b, size_t n);
void mpw_arr(mpw *w, uint32_t n);
void mpw_nil(mpw *w);
/* A big-endian unsigned of `width` bytes (for hand-built headers). */
void mpw_be(mpw *w, uint64_t v, unsigned width);

/* Hex helpers: `out` holds 2n+1 bytes; decode returns bytes or -1. */
void mpw_hex(const uint8_t *b, size_t n, char *out);
long mpw_unhex(const char *hex, uint8_t *out, size_t cap);

#endif
