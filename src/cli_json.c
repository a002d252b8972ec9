/*  JSON output of the CLI: the only file that includes jansson.h.

    An sm__json is a jansson json_t in disguise, so the rest of the CLI
    builds documents without knowing the library.  Failures (no memory, or
    a string that is not UTF-8, which the library never stores) are sticky
    (s_failed) rather than checked at every call: a setter that fails drops
    its value and sets the flag, and sm__json_print then
    refuses to print what would be a partial document.  Keys keep their
    insertion order, and a document prints on one line ("key": value, ...),
    which is what JSON-lines consumers and the tests expect.

    The reading side (answers from the node's API) hands out borrowed
    views into a parsed document; getters take NULL and values of the wrong
    type quietly, so the commands test a field once, where they use it.     */
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

char *
sm__json_dump(const sm__json *v)
{
    if (v == NULL || s_failed)
        return NULL;
    return json_dumps((const json_t *)v, JSON_COMPACT);
}

sm__json *
sm__json_parse(const char *text, size_t len)
{
    assert(text != NULL);
    json_error_t error;
    /* JSON_DECODE_ANY: the answer may be any value; the caller checks. */
    return (sm__json *)json_loadb(text, len, JSON_DECODE_ANY, &error);
}

/*  The const views below cast away const only to call jansson's getters,
    which do not modify the value.                                           */
static json_t *
s_jc(const sm__json *v)
{
    return (json_t *)v;
}

const sm__json *
sm__json_get(const sm__json *obj, const char *key)
{
    assert(key != NULL);
    if (obj == NULL || !json_is_object(s_jc(obj)))
        return NULL;
    return (const sm__json *)json_object_get(s_jc(obj), key);
}

const char *
sm__json_get_str(const sm__json *obj, const char *key)
{
    json_t *v = s_jc(sm__json_get(obj, key));
    return json_is_string(v) ? json_string_value(v) : NULL;
}

bool
sm__json_get_int(const sm__json *obj, const char *key, int64_t *out)
{
    assert(out != NULL);
    json_t *v = s_jc(sm__json_get(obj, key));
    if (!json_is_integer(v))
        return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

bool
sm__json_get_bool(const sm__json *obj, const char *key, bool *out)
{
    assert(out != NULL);
    json_t *v = s_jc(sm__json_get(obj, key));
    if (!json_is_boolean(v))
        return false;
    *out = json_is_true(v);
    return true;
}

size_t
sm__json_size(const sm__json *v)
{
    if (json_is_array(s_jc(v)))
        return json_array_size(s_jc(v));
    if (json_is_object(s_jc(v)))
        return json_object_size(s_jc(v));
    return 0;
}

const sm__json *
sm__json_at(const sm__json *arr, size_t i)
{
    if (!json_is_array(s_jc(arr)))
        return NULL;
    return (const sm__json *)json_array_get(s_jc(arr), i);
}

int
sm__json_each(const sm__json *obj, sm__json_member_fn fn, void *arg)
{
    assert(fn != NULL);
    if (!json_is_object(s_jc(obj)))
        return 0;
    const char *key;
    json_t *val;
    json_object_foreach(s_jc(obj), key, val) {
        int rc = fn(key, (const sm__json *)val, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}
