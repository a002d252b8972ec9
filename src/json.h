/*  JSON for the node: a streaming writer and a reader of request bodies.

    The writer (sm_json_buf) appends compact JSON (no spaces) to a growable
    buffer.  It places the commas itself: open an object or array, write
    members with the key helpers (sm_json_kstr(b, "sku", sku), ...) or
    values into arrays, close it.  Several values at the top level come out
    comma-separated, which is how a list is built for splicing into an
    array later (the stock snapshot keeps its items so).  A failure (no
    memory, more than bytes_max, nesting past SM_JSON_WRITE_DEPTH_MAX) is
    sticky: every later call does nothing, and the owner checks `failed`
    once at the end instead of after every call.  A key outside an object,
    a value where a key is due, or a close that does not match its open is
    a bug in the caller (asserted).

    Strings are escaped so that a document can sit in a page's <script>
    unchanged: '"', '\\', control characters, DEL and < > & become escapes;
    other bytes (UTF-8) pass as they are.  Integers are exact over the whole
    int64 and uint64 ranges.

    The reader parses one request body (jansson underneath: this module is
    the library's only includer of jansson.h; the CLI, a separate program,
    has its own in cli_json.c).  Nesting is pre-scanned before the parser
    sees the text, so hostile depth never reaches it; duplicate keys are
    refused, and so is \u0000 in a string (strings never hold a NUL).
    Values are borrowed views into the parsed document, valid
    until sm_json_doc_free.                                                   */
#ifndef SM_JSON_H
#define SM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "stallmesh/entry.h"

#define SM_JSON_WRITE_DEPTH_MAX 32u   /* open objects and arrays at once */

/* ---------------------------------------------------------------------- */
/* Writer                                                                  */

typedef struct {
    char *p;                   /* NUL-terminated once anything was written */
    size_t len, cap;
    size_t bytes_max;          /* longest document; 0 = as memory allows */
    bool failed;               /* sticky: out of memory or past a limit */
    unsigned depth;            /* open objects and arrays */
    bool keyed;                /* a key was written: its value is next */
    uint64_t filled;           /* bit d: level d has a member already */
    uint64_t objects;          /* bit d: level d is an object (else array) */
} sm_json_buf;

/*  A zeroed sm_json_buf ({ 0 }) is an empty writer with no size limit.     */

/*  Free the buffer and reset it (safe twice).                               */
void sm_json_buf_free(sm_json_buf *b);
/*  The document (returned: caller frees) and its length, resetting b; NULL
    if the writer failed or wrote nothing (b is then freed too).            */
char *sm_json_take(sm_json_buf *b, size_t *len);

void sm_json_obj_open(sm_json_buf *b);
void sm_json_obj_close(sm_json_buf *b);
void sm_json_arr_open(sm_json_buf *b);
void sm_json_arr_close(sm_json_buf *b);
/*  `"key":` in the open object; the value comes next.  `key` is written as
    given (keys are the program's constants, never outside input).          */
void sm_json_key(sm_json_buf *b, const char *key);

/*  Values: in an array, at the top level, or after sm_json_key.             */
void sm_json_str(sm_json_buf *b, const char *s);
void sm_json_strn(sm_json_buf *b, const char *s, size_t n);
void sm_json_int(sm_json_buf *b, int64_t v);
void sm_json_uint(sm_json_buf *b, uint64_t v);
void sm_json_bool(sm_json_buf *b, bool v);
void sm_json_null(sm_json_buf *b);
/*  n bytes of JSON written elsewhere, taken as one value (or, at the top
    level or in an array, as a comma-separated run of values).               */
void sm_json_raw(sm_json_buf *b, const char *json, size_t n);
/*  The project's types: a node id as "<64 hex>", an entry as
    "<origin hex>:<seq>", unix ms as RFC 3339 UTC with milliseconds
    ("2023-11-14T22:13:20.000Z").                                           */
void sm_json_id(sm_json_buf *b, const sm_id *id);
void sm_json_entry_id(sm_json_buf *b, const sm_id *origin, uint64_t seq);
void sm_json_time(sm_json_buf *b, uint64_t ms);

/*  Key helpers: sm_json_key followed by the value.                          */
void sm_json_kstr(sm_json_buf *b, const char *key, const char *s);
void sm_json_kint(sm_json_buf *b, const char *key, int64_t v);
void sm_json_kuint(sm_json_buf *b, const char *key, uint64_t v);
void sm_json_kbool(sm_json_buf *b, const char *key, bool v);
void sm_json_kid(sm_json_buf *b, const char *key, const sm_id *id);
void sm_json_kentry_id(sm_json_buf *b, const char *key, const sm_id *origin,
                       uint64_t seq);
void sm_json_ktime(sm_json_buf *b, const char *key, uint64_t ms);

/*  Unix ms as RFC 3339 text (as sm_json_time writes it) into out[64].       */
void sm_json_time_text(uint64_t ms, char out[64]);

/* ---------------------------------------------------------------------- */
/* Reader                                                                  */

typedef struct sm_json_doc sm_json_doc;   /* a parsed document (owned) */
typedef struct sm_json_val sm_json_val;   /* a value in it (borrowed) */

/*  How sm_json_parse went.                                                  */
typedef enum {
    SM_JSON_OK = 0,
    SM_JSON_TOO_DEEP,          /* nests deeper than depth_max */
    SM_JSON_BAD                /* not one valid JSON text (why says where) */
} sm_json_parse_rc;

/*  Parse text[0..len) into *doc (returned: sm_json_doc_free it).  On
    SM_JSON_BAD, why[why_cap] gets the parser's reason with line and column
    in printable ASCII.  Nesting is checked against depth_max before
    parsing; duplicate keys in an object are SM_JSON_BAD.                    */
sm_json_parse_rc sm_json_parse(const char *text, size_t len, unsigned depth_max,
                               sm_json_doc **doc, char *why, size_t why_cap);
void sm_json_doc_free(sm_json_doc **doc_p);
/*  The document's top value (borrowed).                                     */
const sm_json_val *sm_json_root(const sm_json_doc *doc);

/*  Whether the text nests arrays and objects at most depth_max deep.  Exact
    for well-formed JSON; for anything else the parser refuses it anyway.    */
bool sm_json_depth_ok(const char *text, size_t len, unsigned depth_max);

bool sm_json_is_object(const sm_json_val *v);
bool sm_json_is_array(const sm_json_val *v);
bool sm_json_is_string(const sm_json_val *v);
bool sm_json_is_integer(const sm_json_val *v);   /* 1.0 and 1e3 are not */

/*  Member `key` of an object, or NULL (absent, or v not an object).        */
const sm_json_val *sm_json_get(const sm_json_val *obj, const char *key);
/*  The first member of `obj` whose key is not among keys[] (NULL-ended), or
    NULL if all are known.  Returns the key (borrowed).                      */
const char *sm_json_unknown_key(const sm_json_val *obj, const char *const *keys);
/*  An array's length and its i-th element (NULL past the end).             */
size_t sm_json_size(const sm_json_val *arr);
const sm_json_val *sm_json_at(const sm_json_val *arr, size_t i);
/*  A string's UTF-8 bytes (borrowed, NUL-terminated) and length; NULL and
    0 if v is not a string.                                                  */
const char *sm_json_string(const sm_json_val *v, size_t *len);
/*  An integer's value (0 if v is not an integer).                           */
int64_t sm_json_integer(const sm_json_val *v);

#endif
