/*  JSON output of the CLI: the only file that includes jansson.h (STYLE 3).

    An sm__json is a jansson json_t in disguise, so the rest of the CLI
    builds documents without knowing the library.  Failures (no memory, or
    a string that is not UTF-8, which the library never stores) are sticky
    (s_failed) rather than checked at every call: a setter that fails drops
    its value and sets the flag, and sm__json_print then
    refuses to print what would be a partial document.  Keys keep their
    insertion order, and a document prints on one line ("key": value, ...),
    which is what JSON-lines consumers and the tests expect.                 */
#include <assert.h>
#include <stdio.h>

#include <jansson.h>

#include "cli.h"
#include "stallmesh/error.h"

static bool s_failed;

static json_t *
s_j(sm__json *v)
{
    return (json_t *)v;
}

/*  Note a failed allocation if `v` is NULL; returns v.                       */
static json_t *
s_check(json_t *v)
{
    if (v == NULL)
        s_failed = true;
    return v;
}

sm__json *
sm__json_object(void)
{
    return (sm__json *)s_check(json_object());
}

sm__json *
sm__json_array(void)
{
    return (sm__json *)s_check(json_array());
}

/*  Set obj[key] = val, taking val (even on failure).                          */
static void
s_set(sm__json *obj, const char *key, json_t *val)
{
    assert(key != NULL);
    if (obj == NULL || val == NULL) {
        s_failed = true;
        json_decref(val);
        return;
    }
    if (json_object_set_new(s_j(obj), key, val) != 0)
        s_failed = true;
}

void
sm__json_set_str(sm__json *obj, const char *key, const char *val)
{
    assert(val != NULL);
    /* NULL for text that is not UTF-8 too: the library checks what it stores. */
    s_set(obj, key, json_string(val));
}

void
sm__json_set_int(sm__json *obj, const char *key, int64_t val)
{
    s_set(obj, key, json_integer((json_int_t)val));
}

void
sm__json_set_bool(sm__json *obj, const char *key, bool val)
{
    s_set(obj, key, json_boolean(val));
}

void
sm__json_set_hex(sm__json *obj, const char *key, const uint8_t *buf, size_t n)
{
    char hex[2 * 64 + 1];
    assert(n <= 64);
    sm_hex_encode(buf, n, hex);
    s_set(obj, key, json_string(hex));
}

void
sm__json_set(sm__json *obj, const char *key, sm__json *val)
{
    s_set(obj, key, s_j(val));
}

void
sm__json_append(sm__json *arr, sm__json *val)
{
    if (arr == NULL || val == NULL) {
        s_failed = true;
        json_decref(s_j(val));
        return;
    }
    if (json_array_append_new(s_j(arr), s_j(val)) != 0)
        s_failed = true;
}

int
sm__json_print(sm__json **v_p)
{
    assert(v_p != NULL);
    int rc = 0;
    if (*v_p == NULL || s_failed)
        rc = SM_ENOMEM;
    else if (json_dumpf(s_j(*v_p), stdout, 0) != 0 || fputc('\n', stdout) == EOF)
        rc = SM_EIO;
    sm__json_destroy(v_p);
    if (rc == SM_ENOMEM)
        sm__cli_error("could not build the JSON output (out of memory?)");
    return rc;
}

void
sm__json_destroy(sm__json **v_p)
{
    assert(v_p != NULL);
    json_decref(s_j(*v_p));
    *v_p = NULL;
}
