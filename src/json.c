/*  JSON for the node: a streaming writer and a request-body reader (json.h
    says how each is used).

    The writer keeps, per open level, whether the level is an object and
    whether it has a member already, as two bit masks: that is all the
    comma placement needs, and it costs no allocation.  Integers are
    formatted by hand (no snprintf): the stock snapshot writes several per
    item and is rebuilt on every change.

    The reader is jansson behind opaque types: sm_json_val is a json_t, so
    a view costs nothing and the API's validation never sees the library.   */
#include "json.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "stallmesh/identity.h"

/* ====================================================================== */
/* Writer: bytes                                                           */

void
sm_json_buf_free(sm_json_buf *b)
{
    size_t bytes_max = b->bytes_max;
    free(b->p);
    memset(b, 0, sizeof *b);
    b->bytes_max = bytes_max;
}

char *
sm_json_take(sm_json_buf *b, size_t *len)
{
    if (b->failed || !b->p) {
        sm_json_buf_free(b);
        *len = 0;
        return NULL;
    }
    char *p = b->p;
    *len = b->len;
    b->p = NULL;
    sm_json_buf_free(b);
    return p;
}

/*  Room for n more bytes (n >= 1) past a full buffer or the limit: grow by
    doubling; NULL (and failed) past bytes_max or out of memory.            */
static char *
s_room_slow(sm_json_buf *b, size_t n)
{
    if (b->failed)
        return NULL;
    size_t max = b->bytes_max ? b->bytes_max : SIZE_MAX / 2;
    if (n > max - b->len) {
        b->failed = true;
        return NULL;
    }
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 4) {
                b->failed = true;
                return NULL;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

/*  Where to write n more bytes (n >= 1), with room for the NUL after them;
    NULL once the writer failed.  s_done then counts them.  Inline: a
    document is written a few bytes at a time, and the room is nearly
    always there.                                                            */
static inline char *
s_room(sm_json_buf *b, size_t n)
{
    if (b->cap - b->len > n && !b->failed
        && (!b->bytes_max || n <= b->bytes_max - b->len))
        return b->p + b->len;
    return s_room_slow(b, n);
}

static inline void
s_done(sm_json_buf *b, size_t n)
{
    b->len += n;
    b->p[b->len] = '\0';
}

/*  Append n bytes; keeps the text NUL-terminated.                          */
static inline void
s_put(sm_json_buf *b, const void *src, size_t n)
{
    if (n == 0)
        return;
    char *d = s_room(b, n);
    if (!d)
        return;
    memcpy(d, src, n);
    s_done(b, n);
}

static inline void
s_put1(sm_json_buf *b, char c)
{
    char *d = s_room(b, 1);
    if (!d)
        return;
    *d = c;
    s_done(b, 1);
}

/* ====================================================================== */
/* Writer: structure                                                       */

#define S_BIT(d) ((uint64_t) 1 << (d))

/*  Before a value: the comma it needs, unless it is a member's value.       */
static void
s_value(sm_json_buf *b)
{
    if (b->keyed) {
        b->keyed = false;
        return;
    }
    assert(!(b->objects & S_BIT(b->depth)) && "a value in an object needs a key");
    if (b->filled & S_BIT(b->depth))
        s_put1(b, ',');
    b->filled |= S_BIT(b->depth);
}

static void
s_open(sm_json_buf *b, bool object)
{
    if (b->failed)
        return;
    s_value(b);
    if (b->depth >= SM_JSON_WRITE_DEPTH_MAX) {
        b->failed = true;
        return;
    }
    s_put1(b, object ? '{' : '[');
    b->depth++;
    b->filled &= ~S_BIT(b->depth);
    if (object)
        b->objects |= S_BIT(b->depth);
    else
        b->objects &= ~S_BIT(b->depth);
}

static void
s_close(sm_json_buf *b, bool object)
{
    if (b->failed)
        return;
    assert(b->depth > 0 && "a close without an open");
    assert(!b->keyed && "a key without its value");
    assert(!!(b->objects & S_BIT(b->depth)) == object && "a close of the other kind");
    s_put1(b, object ? '}' : ']');
    b->depth--;
}

void sm_json_obj_open(sm_json_buf *b)  { s_open(b, true); }
void sm_json_obj_close(sm_json_buf *b) { s_close(b, true); }
void sm_json_arr_open(sm_json_buf *b)  { s_open(b, false); }
void sm_json_arr_close(sm_json_buf *b) { s_close(b, false); }

/*  Whether byte c is written as an escape (json.h says which).             */
static inline bool
s_needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&'
           || c == 0x7f;
}

/*  A string body (without quotes) of s[0..n), escaped.                      */
static void
s_escaped(sm_json_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (!s_needs_escape(c))
            continue;
        s_put(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char) c };
            s_put(b, e, 2);
        } else {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            s_put(b, e, 6);
        }
    }
    s_put(b, s + run, n - run);
}

void
sm_json_key(sm_json_buf *b, const char *key)
{
    if (b->failed)
        return;
    assert((b->objects & S_BIT(b->depth)) && "a key outside an object");
    assert(!b->keyed && "two keys in a row");
    bool comma = b->filled & S_BIT(b->depth);
    b->filled |= S_BIT(b->depth);
    b->keyed = true;
    /* In one piece: [,]"key": */
    size_t k = strlen(key), n = k + 3 + comma;
    char *d = s_room(b, n);
    if (!d)
        return;
    if (comma)
        *d++ = ',';
    *d++ = '"';
    memcpy(d, key, k);
    d[k] = '"';
    d[k + 1] = ':';
    s_done(b, n);
}

/* ====================================================================== */
/* Writer: values                                                          */

void
sm_json_strn(sm_json_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    s_value(b);
    size_t clean = 0;
    while (clean < n && !s_needs_escape((unsigned char) s[clean]))
        clean++;
    if (clean == n) {
        /* Nothing to escape (the usual text): quotes and all in one piece. */
        char *d = s_room(b, n + 2);
        if (!d)
            return;
        d[0] = '"';
        memcpy(d + 1, s, n);
        d[n + 1] = '"';
        s_done(b, n + 2);
        return;
    }
    s_put1(b, '"');
    s_escaped(b, s, n);
    s_put1(b, '"');
}

void
sm_json_str(sm_json_buf *b, const char *s)
{
    sm_json_strn(b, s, strlen(s));
}

/*  Decimal digits of v, written backwards from end; returns the start.     */
static char *
s_digits(uint64_t v, char *end)
{
    char *p = end;
    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

/*  An integer value: its magnitude, with a '-' when negative.              */
static void
s_number(sm_json_buf *b, uint64_t magnitude, bool negative)
{
    if (b->failed)
        return;
    s_value(b);
    char t[24];
    char *p = s_digits(magnitude, t + sizeof t);
    if (negative)
        *--p = '-';
    s_put(b, p, (size_t) (t + sizeof t - p));
}

void
sm_json_uint(sm_json_buf *b, uint64_t v)
{
    s_number(b, v, false);
}

void
sm_json_int(sm_json_buf *b, int64_t v)
{
    /* The magnitude as unsigned: -INT64_MIN does not fit an int64. */
    s_number(b, v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v, v < 0);
}

void
sm_json_bool(sm_json_buf *b, bool v)
{
    sm_json_raw(b, v ? "true" : "false", v ? 4 : 5);
}

void
sm_json_null(sm_json_buf *b)
{
    sm_json_raw(b, "null", 4);
}

void
sm_json_raw(sm_json_buf *b, const char *json, size_t n)
{
    if (b->failed)
        return;
    s_value(b);
    s_put(b, json, n);
}

void
sm_json_id(sm_json_buf *b, const sm_id *id)
{
    char t[SM_ID_HEX_BYTES + 3];
    sm_id_format(id, t + 1);
    t[0] = '"';
    t[SM_ID_HEX_BYTES + 1] = '"';
    sm_json_raw(b, t, SM_ID_HEX_BYTES + 2);
}

void
sm_json_entry_id(sm_json_buf *b, const sm_id *origin, uint64_t seq)
{
    char t[SM_ID_HEX_BYTES + 2 + 24 + 1];
    sm_id_format(origin, t + 1);
    t[0] = '"';
    t[SM_ID_HEX_BYTES + 1] = ':';
    char digits[24];
    char *p = s_digits(seq, digits + sizeof digits);
    size_t n = (size_t) (digits + sizeof digits - p);
    memcpy(t + SM_ID_HEX_BYTES + 2, p, n);
    t[SM_ID_HEX_BYTES + 2 + n] = '"';
    sm_json_raw(b, t, SM_ID_HEX_BYTES + 3 + n);
}

/*  Two digits of v (0..99) at p.                                           */
static void
s_two(char *p, unsigned v)
{
    p[0] = (char) ('0' + v / 10);
    p[1] = (char) ('0' + v % 10);
}

/*  Unix ms as RFC 3339 text into out[64], NUL-terminated; returns its
    length.  By hand, without gmtime_r and snprintf: the answer to every
    sale and hold carries times.  The civil date of a day count is Howard
    Hinnant's civil_from_days (proleptic Gregorian, in eras of 400 years),
    exact over every uint64 ms.  The year (from 1970) has four
    digits until 9999 and more after, as "%04d" gave it.                     */
static size_t
s_time_text(uint64_t ms, char out[64])
{
    uint64_t secs = ms / 1000, days = secs / 86400;
    unsigned sod = (unsigned) (secs % 86400);
    uint64_t z = days + 719468;                 /* days since 0000-03-01 */
    uint64_t era = z / 146097;
    unsigned doe = (unsigned) (z - era * 146097);               /* [0, 146096] */
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);     /* [0, 365] */
    unsigned mp = (5 * doy + 2) / 153;                          /* [0, 11] from March */
    unsigned day = doy - (153 * mp + 2) / 5 + 1;
    unsigned month = mp < 10 ? mp + 3 : mp - 9;
    uint64_t year = era * 400 + yoe + (month <= 2);
    char digits[24];
    char *y = s_digits(year, digits + sizeof digits);
    size_t n = (size_t) (digits + sizeof digits - y);
    memcpy(out, y, n);
    char *p = out + n;
    p[0] = '-';
    s_two(p + 1, month);
    p[3] = '-';
    s_two(p + 4, day);
    p[6] = 'T';
    s_two(p + 7, sod / 3600);
    p[9] = ':';
    s_two(p + 10, sod / 60 % 60);
    p[12] = ':';
    s_two(p + 13, sod % 60);
    p[15] = '.';
    unsigned milli = (unsigned) (ms % 1000);
    p[16] = (char) ('0' + milli / 100);
    s_two(p + 17, milli % 100);
    p[19] = 'Z';
    p[20] = '\0';
    return (size_t) (p + 20 - out);
}

void
sm_json_time_text(uint64_t ms, char out[64])
{
    s_time_text(ms, out);
}

void
sm_json_time(sm_json_buf *b, uint64_t ms)
{
    /* The text is digits and "-T:.Z": nothing to escape. */
    char t[66];
    size_t n = s_time_text(ms, t + 1);
    t[0] = '"';
    t[n + 1] = '"';
    sm_json_raw(b, t, n + 2);
}

void
sm_json_kstr(sm_json_buf *b, const char *key, const char *s)
{
    sm_json_key(b, key);
    sm_json_str(b, s);
}

void
sm_json_kint(sm_json_buf *b, const char *key, int64_t v)
{
    sm_json_key(b, key);
    sm_json_int(b, v);
}

void
sm_json_kuint(sm_json_buf *b, const char *key, uint64_t v)
{
    sm_json_key(b, key);
    sm_json_uint(b, v);
}

void
sm_json_kbool(sm_json_buf *b, const char *key, bool v)
{
    sm_json_key(b, key);
    sm_json_bool(b, v);
}

void
sm_json_kid(sm_json_buf *b, const char *key, const sm_id *id)
{
    sm_json_key(b, key);
    sm_json_id(b, id);
}

void
sm_json_kentry_id(sm_json_buf *b, const char *key, const sm_id *origin,
                  uint64_t seq)
{
    sm_json_key(b, key);
    sm_json_entry_id(b, origin, seq);
}

void
sm_json_ktime(sm_json_buf *b, const char *key, uint64_t ms)
{
    sm_json_key(b, key);
    sm_json_time(b, ms);
}

/* ====================================================================== */
/* Reader                                                                  */

static const json_t *
s_j(const sm_json_val *v)
{
    return (const json_t *) v;
}

bool
sm_json_depth_ok(const char *text, size_t len, unsigned depth_max)
{
    unsigned depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > depth_max)
                return false;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return true;
}

sm_json_parse_rc
sm_json_parse(const char *text, size_t len, unsigned depth_max,
              sm_json_doc **doc, char *why, size_t why_cap)
{
    assert(doc && (why || why_cap == 0));
    *doc = NULL;
    if (why_cap)
        why[0] = '\0';
    if (!sm_json_depth_ok(text, len, depth_max))
        return SM_JSON_TOO_DEEP;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        /* jansson's text may quote input bytes: keep it printable ASCII. */
        for (char *p = jerr.text; *p; p++)
            if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
                *p = '?';
        if (why_cap)
            snprintf(why, why_cap, "%s (line %d, column %d)", jerr.text,
                     jerr.line, jerr.column);
        return SM_JSON_BAD;
    }
    *doc = (sm_json_doc *) root;
    return SM_JSON_OK;
}

void
sm_json_doc_free(sm_json_doc **doc_p)
{
    if (!doc_p || !*doc_p)
        return;
    json_decref((json_t *) *doc_p);
    *doc_p = NULL;
}

const sm_json_val *
sm_json_root(const sm_json_doc *doc)
{
    return (const sm_json_val *) doc;
}

bool sm_json_is_object(const sm_json_val *v)  { return v && json_is_object(s_j(v)); }
bool sm_json_is_array(const sm_json_val *v)   { return v && json_is_array(s_j(v)); }
bool sm_json_is_string(const sm_json_val *v)  { return v && json_is_string(s_j(v)); }
bool sm_json_is_integer(const sm_json_val *v) { return v && json_is_integer(s_j(v)); }

const sm_json_val *
sm_json_get(const sm_json_val *obj, const char *key)
{
    if (!sm_json_is_object(obj))
        return NULL;
    return (const sm_json_val *) json_object_get(s_j(obj), key);
}

const char *
sm_json_unknown_key(const sm_json_val *obj, const char *const *keys)
{
    if (!sm_json_is_object(obj))
        return NULL;
    const char *key;
    json_t *v;
    /* jansson's iteration macro wants a mutable object; it does not write. */
    json_object_foreach((json_t *) s_j(obj), key, v) {
        bool known = false;
        for (size_t i = 0; keys[i] && !known; i++)
            known = strcmp(key, keys[i]) == 0;
        if (!known)
            return key;
    }
    return NULL;
}

size_t
sm_json_size(const sm_json_val *arr)
{
    return sm_json_is_array(arr) ? json_array_size(s_j(arr)) : 0;
}

const sm_json_val *
sm_json_at(const sm_json_val *arr, size_t i)
{
    if (!sm_json_is_array(arr))
        return NULL;
    return (const sm_json_val *) json_array_get(s_j(arr), i);
}

const char *
sm_json_string(const sm_json_val *v, size_t *len)
{
    if (!sm_json_is_string(v)) {
        *len = 0;
        return NULL;
    }
    *len = json_string_length(s_j(v));
    return json_string_value(s_j(v));
}

int64_t
sm_json_integer(const sm_json_val *v)
{
    return sm_json_is_integer(v) ? (int64_t) json_integer_value(s_j(v)) : 0;
}
