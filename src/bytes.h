/*  Fixed-width integer encodings used in store keys and records.           */
#ifndef SM_BYTES_H
#define SM_BYTES_H

#include <stdint.h>
#include <string.h>

static inline void
sm__be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t) v;
        v >>= 8;
    }
}

static inline uint64_t
sm__be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline void
sm__le64_put(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t) v;
        v >>= 8;
    }
}

static inline uint64_t
sm__le64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/*  Copy a NUL-terminated string into a fixed field, zero-filling the rest
    so that records hash the same on every node.                             */
static inline void
sm__strfill(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    memset(dst + n, 0, cap - n);
}

#endif
