/*  The `stallmesh` command line: what the CLI's files share.

    main.c parses the global options and dispatches to one sm__cmd_* per
    command (cli_node.c: init; cli_market.c: market create, admit, join,
    revoke; cli_ledger.c: digest, verify, reindex, repair, log; cli_api.c: item,
    stock, sell, return, hold, sales, status, peers, which talk to the
    running node's JSON API; cli_report.c: report, export, through the
    same client).  cli_util.c holds the data directory, file and
    validation helpers and the error printer; cli_json.c is the only file
    that includes jansson.h, cli_qr.c the only one that includes qrencode.h
    and cli_http.c the only one that includes curl/curl.h.

    Exit status: SM__EXIT_OK, SM__EXIT_FAIL for an operating error (the
    message says what was wrong and what to do), SM__EXIT_USAGE for a
    command line that does not parse (the message, then the usage line).
    Only the CLI reads the clock (sm__cli_now_ms); the library never does.    */
#ifndef SM_CLI_H
#define SM_CLI_H

#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "stallmesh/entry.h"
#include "stallmesh/identity.h"
#include "stallmesh/ledger.h"

#define SM__VERSION     "0.1.0"
#define SM__EXIT_OK     0
#define SM__EXIT_FAIL   1
#define SM__EXIT_USAGE  2

#define SM__DIR_ENV     "STALLMESH_DIR"
#define SM__DIR_HOME    ".local/share/stallmesh"   /* under $HOME */
#define SM__IDENTITY_FILE  "identity"
#define SM__API_TOKEN_FILE "api-token"
#define SM__NAME_FILE      "name"
#define SM__HTTP_FILE      "http"      /* the running node's API address */
#define SM__STOCK_URL_FILE "stock-url" /* the stock page for shoppers (cli_url.c) */
#define SM__NODE_ENV       "STALLMESH_NODE"
#define SM__NODE_DEFAULT   "http://127.0.0.1:8080"
#define SM__STORE_DIR      "store"
#define SM__API_TOKEN_BYTES 32u

/* What every command gets from the global options. */
typedef struct {
    char dir[PATH_MAX];        /* the data directory */
    const char *node;          /* --node before the command, or NULL; borrowed */
} sm__cli;

/* One command: argv[0] is its name; returns an SM__EXIT_* status. */
int sm__cmd_init(sm__cli *cli, int argc, char **argv);
int sm__cmd_id(sm__cli *cli, int argc, char **argv);
int sm__cmd_market(sm__cli *cli, int argc, char **argv);
int sm__cmd_admit(sm__cli *cli, int argc, char **argv);
int sm__cmd_join(sm__cli *cli, int argc, char **argv);
int sm__cmd_revoke(sm__cli *cli, int argc, char **argv);
int sm__cmd_digest(sm__cli *cli, int argc, char **argv);
int sm__cmd_verify(sm__cli *cli, int argc, char **argv);
int sm__cmd_reindex(sm__cli *cli, int argc, char **argv);
int sm__cmd_repair(sm__cli *cli, int argc, char **argv);
int sm__cmd_log(sm__cli *cli, int argc, char **argv);
int sm__cmd_run(sm__cli *cli, int argc, char **argv);
int sm__cmd_item(sm__cli *cli, int argc, char **argv);
int sm__cmd_stock(sm__cli *cli, int argc, char **argv);
int sm__cmd_sell(sm__cli *cli, int argc, char **argv);
int sm__cmd_return(sm__cli *cli, int argc, char **argv);
int sm__cmd_hold(sm__cli *cli, int argc, char **argv);
int sm__cmd_holds(sm__cli *cli, int argc, char **argv);
int sm__cmd_sales(sm__cli *cli, int argc, char **argv);
int sm__cmd_status(sm__cli *cli, int argc, char **argv);
int sm__cmd_peers(sm__cli *cli, int argc, char **argv);
int sm__cmd_pair(sm__cli *cli, int argc, char **argv);      /* cli_pair.c */
int sm__cmd_devices(sm__cli *cli, int argc, char **argv);   /* cli_pair.c */
int sm__cmd_url(sm__cli *cli, int argc, char **argv);
int sm__cmd_backup(sm__cli *cli, int argc, char **argv);
int sm__cmd_restore(sm__cli *cli, int argc, char **argv);
int sm__cmd_identity(sm__cli *cli, int argc, char **argv);

/* ---- cli_url.c ------------------------------------------------------- */

/*  The stock page's URL for shoppers into out[cap], for a node serving on
    `host` (as configured) and `port`: on "0.0.0.0" or "::" this machine's
    LAN IPv4 address.  False if phones cannot reach it (loopback, or no LAN
    address yet); the URL is still written.                                  */
bool sm__cli_stock_url(const char *host, int port, char *out, size_t cap);
/*  The node's display name from DIR/name (init --name), "" if none.        */
void sm__cli_node_name(const sm__cli *cli, char out[SM_NAME_BYTES_MAX + 1]);

int sm__cmd_report(sm__cli *cli, int argc, char **argv);
int sm__cmd_export(sm__cli *cli, int argc, char **argv);
int sm__cmd_drop(sm__cli *cli, int argc, char **argv);      /* cli_drop.c */

/* ---- cli_util.c ------------------------------------------------------ */

/*  Print "stallmesh: <message>" and a newline to stderr.                    */
void sm__cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*  Print `problem` (if non-NULL) as an error, then "usage: stallmesh
    <usage>" and a hint to stderr.  Returns SM__EXIT_USAGE.                   */
int sm__cli_usage_error(const char *usage, const char *problem, ...)
    __attribute__((format(printf, 2, 3)));

/*  Parse a command's options with getopt_long: `--json` (if json != NULL),
    `-h/--help` (prints "usage: stallmesh <usage>" to stdout and sets
    *status to SM__EXIT_OK), and the extras in `opts`, handed one by one to
    `on_opt` (which returns 0, or an SM__EXIT_* status to stop with).  On
    return *first_arg is the index of the first operand.  Returns true to
    carry on, false to stop with *status.                                     */
typedef int (*sm__cli_opt_fn)(int opt, const char *arg, void *ctx);
bool sm__cli_parse(int argc, char **argv, const char *usage,
                   const struct option *opts, const char *shortopts,
                   sm__cli_opt_fn on_opt, void *ctx, bool *json,
                   int *first_arg, int *status);

/*  Join the data directory and `name` into out[PATH_MAX].  False (and an
    error printed) if it does not fit.                                        */
bool sm__cli_path(const sm__cli *cli, const char *name, char out[PATH_MAX]);

/*  Create `dir` and any missing parents, each with mode 0700.  0, or -1
    with errno set.                                                           */
int sm__cli_mkdirs(const char *dir);

/*  Write `text` to `path` atomically (a temporary file renamed over it),
    with `mode`, fsync'd.  0, or -1 with errno set.                           */
int sm__cli_write_file(const char *path, const char *text, unsigned mode);

/*  Load the node's identity from DIR/identity, printing a message that says
    what is wrong and what to do on failure.  Returns SM__EXIT_OK or
    SM__EXIT_FAIL.                                                            */
int sm__cli_load_identity(const sm__cli *cli, sm_identity *id);

/*  Open the node's ledger at DIR/store.  With `id`, set it as the signing
    identity.  `read_only` opens an existing store only; otherwise the
    directory lock is taken first (a running node refuses the open).  Prints what to do
    on failure.  Returns SM__EXIT_OK or SM__EXIT_FAIL.                        */
int sm__cli_open_ledger(const sm__cli *cli, const sm_identity *id,
                        bool read_only, sm_ledger **out);

/*  Open an existing store for writing without the directory lock: for the
    roster commands (admit, revoke) that append beside a running node (LMDB
    serialises writers across processes).  Returns SM__EXIT_*.               */
int sm__cli_open_ledger_beside(const sm__cli *cli, const sm_identity *id,
                               sm_ledger **out);

/*  Take the data directory's lock (integrity.h) for this process, printing
    who holds it if another does.  Writable opens take it; held until exit.
    Returns SM__EXIT_OK or SM__EXIT_FAIL.                                     */
int sm__cli_lock_dir(const sm__cli *cli);

/*  Say that the store in `path` is of `format`, newer than this binary reads
    (not damage): both versions named, and what to do.                       */
void sm__cli_newer_store(const char *path, uint32_t format);

/*  Check the store with sm_integrity_check (a child process), printing
    what is wrong and what to do on failure (report filled either way).
    With SM_CHECK_ALL_ORIGINS, damaged entries alone (SM_EDEGRADED, listed
    in report->damaged) are no failure: the caller serves degraded.
    Returns SM__EXIT_OK or SM__EXIT_FAIL.                                     */
int sm__cli_check_store(const sm__cli *cli, unsigned flags, bool writable,
                        sm_check_report *report);

/*  The wall clock in unix milliseconds (the only clock read in stallmesh
    outside the node's event loop).                                           */
uint64_t sm__cli_now_ms(void);

/*  Validators for values from the command line; true if acceptable.
    Text: 1..max bytes of valid UTF-8 without control characters.
    Currency: three capital ASCII letters (ISO 4217).
    Endpoint: tcp://HOST:PORT, HOST a DNS name, IPv4 address or [IPv6]
    address, PORT 1..65535, at most SM_ENDPOINT_BYTES_MAX bytes.              */
bool sm__cli_text_ok(const char *s, size_t max);
bool sm__cli_currency_ok(const char *s);
bool sm__cli_endpoint_ok(const char *s);

/* ---- cli_backup.c ----------------------------------------------------- */

/*  Write a backup of the store of `ledger` (open, read-only or not) to
    `path` (never replaced: fails if it exists), with the node's id, name
    and, if `sealed` is not NULL, its sealed identity.  0 with
    *store_bytes set, or -1 with why[0..whylen) saying what went wrong.     */
int sm__backup_write(sm_ledger *ledger, const sm_id *node, const char *name,
                     const uint8_t *sealed, const char *path, uint64_t now_ms,
                     uint64_t *store_bytes, char *why, size_t whylen);
/*  A scheduled backup (no identity) into `dir` (created 0700 if missing),
    named as `backup` names them, then delete all but this node's newest
    `keep` there.  0 with the file's path in file[0..file_cap), or -1 with
    why.                                                                      */
int sm__backup_scheduled(sm_ledger *ledger, const sm_id *node, const char *name,
                         const char *dir, uint32_t keep, uint64_t now_ms,
                         char *file, size_t file_cap, char *why, size_t whylen);

/* ---- cli_json.c: the only user of jansson --------------------------- */

/*  A JSON value under construction.  Setters take ownership of values they
    are given; on failure (no memory) they drop the value and remember it, so
    sm__json_print refuses to print a partial document (SM_ENOMEM) instead
    of every call site checking.                                              */
typedef struct sm__json sm__json;
sm__json *sm__json_object(void);
sm__json *sm__json_array(void);
void sm__json_set_str(sm__json *obj, const char *key, const char *val);
void sm__json_set_int(sm__json *obj, const char *key, int64_t val);
void sm__json_set_bool(sm__json *obj, const char *key, bool val);
void sm__json_set_hex(sm__json *obj, const char *key, const uint8_t *buf, size_t n);
void sm__json_set(sm__json *obj, const char *key, sm__json *val);   /* taken */
void sm__json_append(sm__json *arr, sm__json *val);                 /* taken */
/*  Print `v` on one line of stdout, then destroy it (safe with NULL, which
    is how a failed constructor shows).  0, SM_ENOMEM or SM_EIO.              */
int sm__json_print(sm__json **v_p);
void sm__json_destroy(sm__json **v_p);
/*  `v` as compact JSON text (returned: caller frees), or NULL if a setter
    failed on the way or there is no memory.  `v` stays the caller's.       */
char *sm__json_dump(const sm__json *v);

/*  Reading JSON (answers from the node).  sm__json_parse returns the value
    of text[0..len) (caller destroys), or NULL if it is not JSON or nests
    deeper than jansson allows.  The getters borrow from their argument and
    tolerate NULL and wrong types: a missing key, a value of another type or
    a non-object all give NULL / false / 0, so a caller checks once.        */
sm__json *sm__json_parse(const char *text, size_t len);
const sm__json *sm__json_get(const sm__json *obj, const char *key);
const char *sm__json_get_str(const sm__json *obj, const char *key);
bool sm__json_get_int(const sm__json *obj, const char *key, int64_t *out);
bool sm__json_get_bool(const sm__json *obj, const char *key, bool *out);
size_t sm__json_size(const sm__json *v);           /* array elements or object keys */
const sm__json *sm__json_at(const sm__json *arr, size_t i);
/*  Call fn(key, value, arg) for each member of an object in order; stops
    at and returns fn's first non-zero result.  0 if `obj` is no object.    */
typedef int (*sm__json_member_fn)(const char *key, const sm__json *val, void *arg);
int sm__json_each(const sm__json *obj, sm__json_member_fn fn, void *arg);

/* ---- cli_qr.c: the only user of libqrencode ------------------------- */

/*  Print `text` as a QR code (error correction L, 8-bit mode) to `out`, two
    module rows per line in Unicode half blocks with a 4-module quiet zone,
    drawn for light text on a dark terminal (as `qrencode -t UTF8` does).
    0, SM_ETOOBIG (too long for any QR version) or SM_ENOMEM.                 */
int sm__qr_print(const char *text, FILE *out);

/* ---- cli_http.c: the only user of libcurl --------------------------- */

typedef enum { SM__HTTP_GET = 1, SM__HTTP_POST, SM__HTTP_DELETE } sm__http_method;

typedef struct {
    long status;               /* the HTTP status the node answered */
    char *body;                /* NUL-terminated; freed by sm__http_resp_clear */
    size_t body_len;
    bool unreachable;          /* on SM_EIO: nothing listens at the address */
    char error[320];           /* on failure: why, for a message */
} sm__http_resp;

/*  One request to `url` with an optional bearer `token` (hex, borrowed) and,
    for POST only, a JSON `body`.  Bounded by SM_CLI_CONNECT_TIMEOUT_MS,
    SM_CLI_REQUEST_TIMEOUT_MS and SM_CLI_RESPONSE_BYTES_MAX.  Returns 0 when
    the node answered, whatever the status (*resp filled, the caller clears
    it); else SM_EIO (not reached, or no answer in time), SM_ETOOBIG (the
    answer was too large), SM_EINVAL (libcurl too old) or SM_ENOMEM, with
    resp->error saying why and no body to clear.                             */
int sm__http_request(sm__http_method method, const char *url, const char *token,
                     const char *body, sm__http_resp *resp);
/*  GET `url` with an optional bearer `token`, streaming a 2xx answer's body
    into `out` as it arrives (memory stays flat however long the export);
    *written counts the bytes written.  Any other answer's body (at most
    SM_CLI_RESPONSE_BYTES_MAX) is kept in resp->body for the error, and
    nothing is written to `out`.  Bounded by SM_CLI_CONNECT_TIMEOUT_MS to
    connect and SM_CLI_DOWNLOAD_STALL_S without a byte, not in total.
    Returns as sm__http_request does; a write to `out` that fails is SM_EIO
    with resp->error naming errno.                                           */
int sm__http_download(const char *url, const char *token, FILE *out,
                      sm__http_resp *resp, uint64_t *written);
/*  Free resp's body and reset it; safe twice and with NULL.               */
void sm__http_resp_clear(sm__http_resp *resp);

/* ---- cli_api.c: the running node, lent to cli_report.c --------------- */

/*  The running node as an API command finds it: the address (--node
    `node_opt` given after the command, else the global --node,
    $STALLMESH_NODE, DIR/http, the default) and DIR/api-token (required
    with `auth`).  `usage` (borrowed, kept) is the command's usage line for
    errors; with `json` a refusal's JSON also goes to stdout.  Returns an
    SM__EXIT_* status with the reason printed; on SM__EXIT_OK *node_p is
    the node (returned: sm__node_close frees it).                            */
typedef struct sm__node sm__node;
int sm__node_open(sm__cli *cli, const char *node_opt, const char *usage, bool auth,
                  bool json, sm__node **node_p);
void sm__node_close(sm__node **node_p);
/*  The node's base address, http://HOST:PORT (borrowed).                    */
const char *sm__node_base(const sm__node *node);
/*  GET `path` (escaped, with its query).  On a 2xx answer SM__EXIT_OK with
    *resp filled (the caller clears it); else the reason printed (the node's
    error and detail for a refusal) and SM__EXIT_FAIL, nothing to clear.   */
int sm__node_get(sm__node *node, const char *path, sm__http_resp *resp);
/*  POST `body` (taken; NULL = {}) to `path`, as sm__node_get answers.     */
int sm__node_post(sm__node *node, const char *path, sm__json *body, sm__http_resp *resp);
/*  GET `path` streaming a 2xx body into `out` (sm__http_download);
    *written counts its bytes.  A refusal or a failure is printed and is
    SM__EXIT_FAIL; a refusal writes nothing to `out`, a transfer that
    breaks half-way leaves what came.                                         */
int sm__node_download(sm__node *node, const char *path, FILE *out, uint64_t *written);
/*  Append `text` percent-encoded to the NUL-terminated out[0..cap); false if
    it does not fit.                                                          */
bool sm__cli_escape(const char *text, char *out, size_t cap);
/*  `minor` units of `currency` as "3.50 GBP" (or "350" with no currency).   */
void sm__cli_money(int64_t minor, const char *currency, char *out, size_t cap);
/*  Print text from the node with control characters shown as '?'.        */
void sm__cli_put_text(FILE *out, const char *s);
/*  Terminal columns of UTF-8 text, counted as code points.                */
size_t sm__cli_width(const char *s);

#endif
