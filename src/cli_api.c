/*  The commands that talk to a running node through its JSON API (README
    "HTTP API"): item add, stock (list, add, adjust, move), sell, return,
    hold, holds, sales, status and peers.

    They never open the store: the running node is its only writer, and
    these commands are its clients, as the till and the phones are.  Each
    one finds the node, builds a request body, sends it (cli_http.c) and
    prints either the answer as text or, with --json, the node's JSON as it
    came.  A refusal from the node prints its "error" and "detail" and exits
    1; a command line that does not parse exits 2 before anything is sent.

    Where the node is: --node URL (before or after the command), else
    $STALLMESH_NODE, else DIR/http (written by `stallmesh run` with the
    address it listens on), else http://127.0.0.1:8080.  The bearer token
    for writes is DIR/api-token; reads that the API makes public (stock,
    status, peers, holds) work without it.  The sm__node_* functions lend
    the same finding, token and refusal messages to cli_report.c.

    Quantities may be negative for `stock adjust` only; so that "-3" reads
    as an operand and not as an option, s_parse moves every operand behind
    a "--" before getopt sees the command line.                               */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define S_TOKEN_HEX_BYTES (2 * SM__API_TOKEN_BYTES)
#define S_URL_BYTES_MAX   (SM_CLI_URL_BYTES_MAX + 512) /* base, path and query */
#define S_SALES_PAGE_DEFAULT 100   /* sales a page when --limit is not given */

static const char s_item_usage[] =
    "item add SKU --name NAME --price MINOR [--currency CODE] [--json]";
static const char s_stock_usage[] = "stock [--json]";
static const char s_stock_add_usage[] = "stock add SKU QTY [--json]";
static const char s_stock_adjust_usage[] =
    "stock adjust SKU QTY --reason TEXT [--json]";
static const char s_stock_move_usage[] = "stock move SKU QTY --to NODE_ID [--json]";
static const char s_sell_usage[] =
    "sell SKU[:QTY[:PRICE]]... [--source SOURCE] [--payment PAYMENT]\n"
    "       [--external-id ID] [--hold HOLD_ID] [--json]\n"
    "       stallmesh sell --hold HOLD_ID [--source SOURCE] [--payment PAYMENT] [--json]";
static const char s_return_usage[] =
    "return SALE_ID SKU[:QTY]... --reason TEXT [--json]";
static const char s_hold_usage[] =
    "hold SKU [QTY] [--at NODE_ID] [--json]\n"
    "       stallmesh hold SKU[:QTY]... [--device ID] [--json]\n"
    "       stallmesh hold --release HOLD_ID [--json]";
static const char s_holds_usage[] = "holds [--code CODE] [--json]";
static const char s_sales_usage[] = "sales [--since SEQ] [--limit N] [--json]";
static const char s_status_usage[] = "status [--json]";
static const char s_peers_usage[] = "peers [--json]";

/* Long-only options (values above any short option letter). */
enum {
    OPT_NODE = 0x200, OPT_NAME, OPT_PRICE, OPT_CURRENCY, OPT_REASON, OPT_SOURCE,
    OPT_PAYMENT, OPT_EXTERNAL_ID, OPT_HOLD, OPT_RELEASE, OPT_SINCE, OPT_LIMIT,
    OPT_TO,
    OPT_AT, OPT_DEVICE, OPT_CODE,
};
#define S_OPT_NODE { "node", required_argument, NULL, OPT_NODE }
#define S_OPT_END  { NULL, 0, NULL, 0 }

/* The options any API command may have taken, checked as they are parsed. */
typedef struct {
    const char *usage;         /* the command's usage line, for errors */
    const char *node;          /* --node */
    const char *name;
    const char *currency;
    const char *reason;
    const char *source;
    const char *payment;
    const char *external_id;
    const char *hold;
    const char *release;
    const char *to;            /* a node id, 64 hex digits */
    const char *at;            /* the same, for a hold at another stall */
    const char *device;        /* a reservation's device id */
    const char *code;          /* a pickup code to find */
    int64_t price;             /* -1 = not given */
    int64_t since;             /* -1 = not given */
    int64_t limit;             /* -1 = not given */
} s_opts;

/* One API command's run: its parsed command line and the node it talks to. */
typedef struct {
    sm__cli *cli;
    s_opts o;
    bool json;
    char **argv;               /* the command line, operands last (owned) */
    int first;                 /* index of the first operand in argv */
    int argc;
    char base[SM_CLI_URL_BYTES_MAX + 1]; /* http://HOST:PORT, no trailing '/' */
    char from[PATH_MAX + 64];  /* where base came from, for messages */
    bool from_default;         /* base is SM__NODE_DEFAULT: nothing named one */
    char token[S_TOKEN_HEX_BYTES + 1]; /* "" when there is none */
    char token_path[PATH_MAX];
} s_cmd;

/* ---- numbers and text from the command line -------------------------- */

/*  Parse a whole decimal number in [min, max]: an optional '-' (only if
    min < 0), then 1..19 digits, nothing else.  False if it is not one.      */
static bool
s_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    bool negative = false;
    if (*s == '-' && min < 0) {
        negative = true;
        s++;
    }
    size_t digits = strlen(s);
    if (digits == 0 || digits > 18)    /* 18 digits never overflow int64 */
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (negative)
        v = -v;
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool
s_all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/*  A sku as the command line gives it: 1..SM_SKU_BYTES_MAX bytes of UTF-8
    without control characters (the node checks the rest).                   */
static int
s_check_sku(const char *usage, const char *sku)
{
    if (!sm__cli_text_ok(sku, SM_SKU_BYTES_MAX))
        return sm__cli_usage_error(usage, "invalid sku '%s': give 1 to %u bytes of "
                                   "UTF-8 text without control characters", sku,
                                   SM_SKU_BYTES_MAX);
    return 0;
}

/*  Parse a quantity operand: 1..SM_QTY_MAX, or with `signed_ok` also
    -SM_QTY_MAX..-1.                                                          */
static int
s_parse_qty(const char *usage, const char *arg, bool signed_ok, int64_t *qty)
{
    int64_t min = signed_ok ? -(int64_t)SM_QTY_MAX : 1;
    if (!s_parse_int(arg, min, SM_QTY_MAX, qty) || *qty == 0)
        return sm__cli_usage_error(usage, "invalid quantity '%s': give a whole number "
                                   "from 1 to %u%s", arg, SM_QTY_MAX,
                                   signed_ok ? " (or -1 to -" "1000000 to take units away)"
                                             : "");
    return 0;
}

/*  One line of a sale or a return, "SKU[:QTY[:PRICE]]" (PRICE only with
    `with_price`).  Numbers are taken from the right, and only fields that
    are all digits count as numbers, so a sku may itself hold a ':'.  The
    quantity defaults to 1 and the price to the catalog's (-1).             */
static int
s_parse_line(const char *usage, const char *arg, bool with_price,
             char sku[SM_SKU_BYTES_MAX + 1], int64_t *qty, int64_t *price)
{
    char buf[SM_SKU_BYTES_MAX + 64];
    size_t len = strlen(arg);
    char *fields[2];
    size_t nfields = 0, max_fields = with_price ? 2 : 1;

    *qty = 1;
    *price = -1;
    if (len >= sizeof buf)
        return sm__cli_usage_error(usage, "'%.*s...' is too long for a sku", 40, arg);
    memcpy(buf, arg, len + 1);
    while (nfields < max_fields) {
        char *colon = strrchr(buf, ':');
        if (colon == NULL)
            break;
        if (colon[1] == '\0')
            return sm__cli_usage_error(usage, "'%s' ends with ':': give SKU:QTY%s, or "
                                       "only SKU for one unit", arg,
                                       with_price ? "[:PRICE]" : "");
        if (!s_all_digits(colon + 1))
            break;
        *colon = '\0';
        fields[nfields++] = colon + 1;
    }
    /* fields[] holds the numbers right to left: [PRICE,] QTY. */
    const char *qty_text = nfields == 0 ? NULL : fields[nfields - 1];
    const char *price_text = nfields == 2 ? fields[0] : NULL;
    int rc = s_check_sku(usage, buf);
    if (rc != 0)
        return rc;
    if (qty_text != NULL && (!s_parse_int(qty_text, 1, SM_QTY_MAX, qty)))
        return sm__cli_usage_error(usage, "invalid quantity in '%s': give a whole "
                                   "number from 1 to %u", arg, SM_QTY_MAX);
    if (price_text != NULL && !s_parse_int(price_text, 0, SM_PRICE_MAX, price))
        return sm__cli_usage_error(usage, "invalid price in '%s': give whole minor "
                                   "units (350 for 3.50) up to %lld", arg,
                                   (long long)SM_PRICE_MAX);
    memcpy(sku, buf, strlen(buf) + 1);
    return 0;
}

/*  The option handler of every API command (sm__cli_opt_fn): each value is
    checked here, so a bad one is a usage error before anything is sent.    */
static int
s_opt(int opt, const char *arg, void *ctx)
{
    s_opts *o = ctx;
    switch (opt) {
    case OPT_NODE:
        o->node = arg;
        break;
    case OPT_NAME:
        if (!sm__cli_text_ok(arg, SM_NAME_BYTES_MAX))
            return sm__cli_usage_error(o->usage, "invalid --name: give 1 to %u bytes "
                                       "of UTF-8 text without control characters",
                                       SM_NAME_BYTES_MAX);
        o->name = arg;
        break;
    case OPT_PRICE:
        if (!s_parse_int(arg, 0, SM_PRICE_MAX, &o->price))
            return sm__cli_usage_error(o->usage, "invalid --price '%s': give whole "
                                       "minor units (350 for 3.50), 0 to %lld", arg,
                                       (long long)SM_PRICE_MAX);
        break;
    case OPT_CURRENCY:
        if (!sm__cli_currency_ok(arg))
            return sm__cli_usage_error(o->usage, "invalid --currency '%s': give an "
                                       "ISO 4217 code in capitals, such as GBP", arg);
        o->currency = arg;
        break;
    case OPT_REASON:
        if (!sm__cli_text_ok(arg, SM_REASON_BYTES_MAX))
            return sm__cli_usage_error(o->usage, "invalid --reason: give 1 to %u bytes "
                                       "of UTF-8 text without control characters",
                                       SM_REASON_BYTES_MAX);
        o->reason = arg;
        break;
    case OPT_SOURCE:
        if (sm_source_parse(arg) == 0)
            return sm__cli_usage_error(o->usage, "invalid --source '%s': give "
                                       "in_person, livestream, online or preview", arg);
        o->source = arg;
        break;
    case OPT_PAYMENT:
        if (sm_payment_parse(arg) == 0)
            return sm__cli_usage_error(o->usage, "invalid --payment '%s': give card, "
                                       "cash, qr, offline_card or other", arg);
        o->payment = arg;
        break;
    case OPT_EXTERNAL_ID:
        if (!sm__cli_text_ok(arg, SM_EXTID_BYTES_MAX))
            return sm__cli_usage_error(o->usage, "invalid --external-id: give 1 to %u "
                                       "bytes of text without control characters",
                                       SM_EXTID_BYTES_MAX);
        o->external_id = arg;
        break;
    case OPT_HOLD:
    case OPT_RELEASE:
        if (!sm__cli_text_ok(arg, 128))
            return sm__cli_usage_error(o->usage, "invalid hold id '%s': give the id "
                                       "'stallmesh hold' printed", arg);
        if (opt == OPT_HOLD)
            o->hold = arg;
        else
            o->release = arg;
        break;
    case OPT_SINCE:
        if (!s_parse_int(arg, 0, (int64_t)SM_SEQ_MAX, &o->since))
            return sm__cli_usage_error(o->usage, "invalid --since '%s': give a sale "
                                       "seq, 0 or more", arg);
        break;
    case OPT_LIMIT:
        if (!s_parse_int(arg, 1, SM_SALES_PAGE_MAX, &o->limit))
            return sm__cli_usage_error(o->usage, "invalid --limit '%s': give 1 to %u",
                                       arg, SM_SALES_PAGE_MAX);
        break;
    case OPT_DEVICE:
        if (!sm__cli_text_ok(arg, SM_HOLD_DEVICE_BYTES_MAX))
            return sm__cli_usage_error(o->usage, "invalid --device: give 1 to %u bytes "
                                       "of text", SM_HOLD_DEVICE_BYTES_MAX);
        o->device = arg;
        break;
    case OPT_CODE:
        if (strlen(arg) < 1 || strlen(arg) > 16 || strspn(arg, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                             "abcdefghijklmnopqrstuvwxyz") != strlen(arg))
            return sm__cli_usage_error(o->usage, "invalid --code '%.20s': give the 6 "
                                       "letters and digits the shopper's phone shows", arg);
        o->code = arg;
        break;
    case OPT_TO:
    case OPT_AT: {
        sm_id id;
        if (strlen(arg) != SM_ID_HEX_BYTES || sm_id_parse(arg, &id) != 0)
            return sm__cli_usage_error(o->usage, "invalid --%s '%.80s': give the other "
                                       "stall's node id, 64 hex digits ('stallmesh "
                                       "peers --json' or its 'stallmesh id' shows it)",
                                       opt == OPT_TO ? "to" : "at", arg);
        if (opt == OPT_TO)
            o->to = arg;
        else
            o->at = arg;
        break;
    }
    default:
        assert(!"an option in a table has no case here");
        return SM__EXIT_USAGE;
    }
    return 0;
}

/*  Does the command-line word `arg` (an option) carry its value in the next
    word?  Long options match as getopt_long matches them: exactly, or by an
    unambiguous prefix; "--opt=value" carries its own.                      */
static bool
s_takes_next(const char *arg, const struct option *opts)
{
    if (arg[1] != '-')
        return false;          /* API commands have no short options but -h */
    const char *name = arg + 2;
    if (strchr(name, '=') != NULL)
        return false;
    size_t len = strlen(name), matches = 0;
    const struct option *match = NULL;
    for (const struct option *o = opts; o->name != NULL; o++) {
        if (strncmp(o->name, name, len) != 0)
            continue;
        if (strlen(o->name) == len)
            return o->has_arg == required_argument;
        matches++;
        match = o;
    }
    return matches == 1 && match->has_arg == required_argument;
}

/*  Parse an API command's line into *c: options through sm__cli_parse,
    operands (which may start with '-', as "-3" does) after them.  Returns
    true to go on, false to stop with *status.                                */
static bool
s_parse(s_cmd *c, sm__cli *cli, int argc, char **argv, const char *usage,
        const struct option *opts, int *status)
{
    memset(c, 0, sizeof *c);
    c->cli = cli;
    c->o.usage = usage;
    c->o.price = c->o.since = c->o.limit = -1;
    *status = SM__EXIT_FAIL;

    /* argv[0], the options in order, "--", the operands in order. */
    char **args = calloc((size_t)argc + 2, sizeof *args);
    char **operands = calloc((size_t)argc + 1, sizeof *operands);
    if (args == NULL || operands == NULL) {
        free(args);
        free(operands);
        sm__cli_error("out of memory");
        return false;
    }
    int n = 0, nops = 0;
    args[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            while (++i < argc)
                operands[nops++] = argv[i];
            break;
        }
        bool option = a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9');
        if (!option) {
            operands[nops++] = argv[i];
            continue;
        }
        args[n++] = argv[i];
        if (s_takes_next(a, opts)) {
            if (i + 1 == argc) {
                /* Else getopt would take the "--" below as its value. */
                free(args);
                free(operands);
                *status = sm__cli_usage_error(usage, "option '%s' needs a value", a);
                return false;
            }
            args[n++] = argv[++i];
        }
    }
    args[n++] = "--";
    for (int i = 0; i < nops; i++)
        args[n++] = operands[i];
    free(operands);
    assert(n <= argc + 1);
    c->argv = args;
    c->argc = n;
    return sm__cli_parse(n, args, usage, opts, "", s_opt, &c->o, &c->json,
                         &c->first, status);
}

static void
s_cmd_end(s_cmd *c)
{
    free(c->argv);
    c->argv = NULL;
    memset(c->token, 0, sizeof c->token);
}

/* ---- finding the node -------------------------------------------------- */

/*  A base address: http:// or https://, then a host and anything up to
    SM_CLI_URL_BYTES_MAX bytes without spaces, control characters, '?' or
    '#'.  A trailing '/' is dropped.  Copies it into c->base.                */
static bool
s_set_base(s_cmd *c, const char *url)
{
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    size_t scheme = strncmp(url, "http://", 7) == 0 ? 7
                  : strncmp(url, "https://", 8) == 0 ? 8 : 0;
    if (scheme == 0 || len <= scheme || len > SM_CLI_URL_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)url[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '?' || ch == '#')
            return false;
    }
    memcpy(c->base, url, len);
    c->base[len] = '\0';
    return true;
}

/*  Read the first line of `path` (at most cap-1 bytes, trailing spaces and
    newline removed) into buf.  0, or an errno value (ENOENT: no file;
    EFBIG: the line is longer).                                              */
static int
s_read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno;
    int rc = 0;
    if (fgets(buf, (int)cap, f) == NULL)
        buf[0] = '\0';
    else if (strchr(buf, '\n') == NULL && !feof(f))
        rc = EFBIG;
    if (ferror(f))
        rc = EIO;
    fclose(f);
    size_t len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'
                       || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
        buf[--len] = '\0';
    return rc;
}

/*  Fill c->base and c->from: --node after the command, --node before it,
    $STALLMESH_NODE, DIR/http, the default.  Returns an SM__EXIT_* status.  */
static int
s_find_node(s_cmd *c)
{
    const char *opt = c->o.node != NULL ? c->o.node : c->cli->node;
    const char *env = getenv(SM__NODE_ENV);
    char path[PATH_MAX], line[SM_CLI_URL_BYTES_MAX + 2];

    if (opt != NULL) {
        if (!s_set_base(c, opt))
            return sm__cli_usage_error(c->o.usage, "invalid --node '%s': give the "
                                       "node's address as http://HOST:PORT", opt);
        snprintf(c->from, sizeof c->from, "--node");
        return SM__EXIT_OK;
    }
    if (env != NULL && env[0] != '\0') {
        if (!s_set_base(c, env)) {
            sm__cli_error("$%s is '%s', not an address: set it to the node's "
                          "http://HOST:PORT, or unset it", SM__NODE_ENV, env);
            return SM__EXIT_FAIL;
        }
        snprintf(c->from, sizeof c->from, "$%s", SM__NODE_ENV);
        return SM__EXIT_OK;
    }
    if (!sm__cli_path(c->cli, SM__HTTP_FILE, path))
        return SM__EXIT_FAIL;
    int rc = s_read_line(path, line, sizeof line);
    if (rc == 0) {
        if (!s_set_base(c, line)) {
            sm__cli_error("%s does not hold an http:// address: restart the node "
                          "('stallmesh run') to rewrite it, or give --node", path);
            return SM__EXIT_FAIL;
        }
        snprintf(c->from, sizeof c->from, "%s", path);
        return SM__EXIT_OK;
    }
    if (rc != ENOENT) {
        sm__cli_error("cannot read %s (%s): check its permissions, or give --node",
                      path, strerror(rc));
        return SM__EXIT_FAIL;
    }
    bool ok = s_set_base(c, SM__NODE_DEFAULT);
    assert(ok);
    (void)ok;
    snprintf(c->from, sizeof c->from, "the default, as there is no --node, $%s "
             "or %s", SM__NODE_ENV, path);
    c->from_default = true;
    return SM__EXIT_OK;
}

/*  Load DIR/api-token into c->token.  With `required` a missing or bad
    token is an error (printed); without, it only leaves c->token empty.
    Returns an SM__EXIT_* status.                                            */
static int
s_load_token(s_cmd *c, bool required)
{
    char line[S_TOKEN_HEX_BYTES + 8];
    if (!sm__cli_path(c->cli, SM__API_TOKEN_FILE, c->token_path))
        return SM__EXIT_FAIL;
    int rc = s_read_line(c->token_path, line, sizeof line);
    bool hex = rc == 0 && strlen(line) == S_TOKEN_HEX_BYTES;
    for (size_t i = 0; hex && i < S_TOKEN_HEX_BYTES; i++)
        hex = (line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f');
    if (hex)
        memcpy(c->token, line, S_TOKEN_HEX_BYTES + 1);
    memset(line, 0, sizeof line);
    if (hex || !required)
        return SM__EXIT_OK;
    if (rc == ENOENT)
        sm__cli_error("no API token: %s does not exist. Run this command with the "
                      "node's data directory (--dir or %s); 'stallmesh init' makes "
                      "the token", c->token_path, SM__DIR_ENV);
    else if (rc != 0 && rc != EFBIG)
        sm__cli_error("cannot read the API token %s (%s): run as the user that runs "
                      "the node", c->token_path, strerror(rc));
    else
        sm__cli_error("%s does not hold an API token (64 hex digits): restore it "
                      "from a backup, or make a new one and restart the node",
                      c->token_path);
    return SM__EXIT_FAIL;
}

/*  Find the node and load the token; `auth` for commands whose request the
    API refuses without it.                                                  */
static int
s_connect(s_cmd *c, bool auth)
{
    int status = s_find_node(c);
    if (status != SM__EXIT_OK)
        return status;
    return s_load_token(c, auth);
}

/* ---- requests and answers ---------------------------------------------- */

/*  Append `text` to out[0..cap) percent-encoded (everything but unreserved
    characters and ':').  False if it does not fit.                          */
static bool
s_escape(const char *text, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(out);
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
            || (*p >= '0' && *p <= '9') || strchr("-._~:", *p) != NULL;
        if (len + (plain ? 1 : 3) >= cap)
            return false;
        if (plain) {
            out[len++] = (char)*p;
        } else {
            out[len++] = '%';
            out[len++] = hex[*p >> 4];
            out[len++] = hex[*p & 15];
        }
    }
    out[len] = '\0';
    return true;
}

/*  Print a string that came from the node to `out`, with any control
    character shown as '?' so that a name cannot drive the terminal.        */
static void
s_put_text(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, out);
}

/*  Print the node's answer as it came, ending with one newline.            */
static void
s_print_raw(const sm__http_resp *resp)
{
    fwrite(resp->body, 1, resp->body_len, stdout);
    if (resp->body_len == 0 || resp->body[resp->body_len - 1] != '\n')
        fputc('\n', stdout);
}

/*  Say why the node refused a request (HTTP status >= 300): its "error"
    and "detail", what an insufficient_stock answer adds, and what to do
    about a rejected token.  With --json the answer also goes to stdout.    */
static void
s_print_refusal(const s_cmd *c, const sm__http_resp *resp)
{
    sm__json *answer = sm__json_parse(resp->body, resp->body_len);
    const char *code = sm__json_get_str(answer, "error");
    const char *detail = sm__json_get_str(answer, "detail");
    if (c->json && answer != NULL)
        s_print_raw(resp);
    if (code == NULL) {
        sm__cli_error("the node at %s answered HTTP %ld without an error "
                      "description: is that address a stallmesh node?", c->base,
                      resp->status);
        sm__json_destroy(&answer);
        return;
    }
    fputs("stallmesh: ", stderr);
    s_put_text(stderr, code);
    if (detail != NULL) {
        fputs(": ", stderr);
        s_put_text(stderr, detail);
    }
    /* The node's detail says the units; say them only if it did not. */
    int64_t here, total;
    const char *sku = sm__json_get_str(answer, "sku");
    if (strcmp(code, "insufficient_stock") == 0 && detail == NULL
        && sm__json_get_int(answer, "here", &here)
        && sm__json_get_int(answer, "total", &total)) {
        fputs(" (", stderr);
        if (sku != NULL) {
            s_put_text(stderr, sku);
            fputs(": ", stderr);
        }
        fprintf(stderr, "%" PRId64 " here, %" PRId64 " in the market)", here, total);
    }
    if (resp->status == 401)
        fprintf(stderr, " [the node at %s did not accept the token in %s: use the "
                "--dir of that node, or the --node of this directory's node]",
                c->base, c->token_path);
    fputc('\n', stderr);
    sm__json_destroy(&answer);
}

/*  Send one request and check the answer.  `body` (taken, may be NULL) is
    sent as JSON.  On a 2xx answer (any answer, with `any_status`) returns
    SM__EXIT_OK with *resp filled (the caller clears it); otherwise prints
    what went wrong and what to do, and returns SM__EXIT_FAIL with nothing
    to clear.                                                                 */
static int
s_request(s_cmd *c, sm__http_method method, const char *url, sm__json *body,
          bool any_status, sm__http_resp *resp)
{
    char *text = NULL;
    if (body != NULL) {
        text = sm__json_dump(body);
        sm__json_destroy(&body);
        if (text == NULL) {
            sm__cli_error("could not build the request (out of memory?)");
            return SM__EXIT_FAIL;
        }
    }
    int rc = sm__http_request(method, url, c->token[0] != '\0' ? c->token : NULL,
                              text, resp);
    free(text);
    if (rc != 0) {
        if (resp->unreachable)
            sm__cli_error("cannot reach the node at %s: %s (address from %s). Is "
                          "it running? Start it with 'stallmesh run', or give its "
                          "address with --node or $%s", c->base, resp->error,
                          c->from, SM__NODE_ENV);
        else
            sm__cli_error("no answer from the node at %s (address from %s): %s",
                          c->base, c->from, resp->error);
        return SM__EXIT_FAIL;
    }
    if (any_status || (resp->status >= 200 && resp->status < 300))
        return SM__EXIT_OK;
    s_print_refusal(c, resp);
    sm__http_resp_clear(resp);
    return SM__EXIT_FAIL;
}

/*  c->base followed by `path` (already escaped) into url[S_URL_BYTES_MAX].  */
static void
s_url(const s_cmd *c, const char *path, char url[S_URL_BYTES_MAX])
{
    int n = snprintf(url, S_URL_BYTES_MAX, "%s%s", c->base, path);
    assert(n > 0 && n < (int)S_URL_BYTES_MAX);
    (void)n;
}

/*  The answer parsed as JSON, or NULL with an error printed.                */
static sm__json *
s_parse_answer(const s_cmd *c, const sm__http_resp *resp)
{
    sm__json *v = sm__json_parse(resp->body, resp->body_len);
    if (v == NULL)
        sm__cli_error("the node at %s answered with something that is not JSON: "
                      "is that address a stallmesh node?", c->base);
    return v;
}

/*  A request whose successful answer is printed as JSON or not at all: the
    shape of most writes.  *answer (parsed; caller destroys) is NULL with
    --json, where the raw answer has been printed.                           */
static int
s_call(s_cmd *c, sm__http_method method, const char *path, sm__json *body,
       sm__json **answer, long *status_code)
{
    char url[S_URL_BYTES_MAX];
    sm__http_resp resp;
    s_url(c, path, url);
    *answer = NULL;
    int status = s_request(c, method, url, body, false, &resp);
    if (status != SM__EXIT_OK)
        return status;
    if (status_code != NULL)
        *status_code = resp.status;
    if (c->json) {
        s_print_raw(&resp);
    } else {
        *answer = s_parse_answer(c, &resp);
        if (*answer == NULL)
            status = SM__EXIT_FAIL;
    }
    sm__http_resp_clear(&resp);
    return status;
}

/* ---- money and tables ------------------------------------------------- */

/*  Digits after the decimal point in `currency` (ISO 4217 minor units).  */
static int
s_currency_exponent(const char *currency)
{
    static const char zero[] = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND "
                               "VUV XAF XOF XPF";
    static const char three[] = "BHD IQD JOD KWD LYD OMR TND";
    if (currency == NULL || !sm__cli_currency_ok(currency))
        return -1;
    if (strstr(zero, currency) != NULL)
        return 0;
    if (strstr(three, currency) != NULL)
        return 3;
    if (strcmp(currency, "CLF") == 0 || strcmp(currency, "UYW") == 0)
        return 4;
    return 2;
}

/*  `minor` units of `currency` as "3.50 GBP" (or "350" with no currency).  */
static void
s_money(int64_t minor, const char *currency, char *out, size_t cap)
{
    int exponent = s_currency_exponent(currency);
    if (exponent < 0) {
        snprintf(out, cap, "%" PRId64, minor);
        return;
    }
    if (exponent == 0) {
        snprintf(out, cap, "%" PRId64 " %s", minor, currency);
        return;
    }
    int64_t scale = 1;
    for (int i = 0; i < exponent; i++)
        scale *= 10;
    const char *sign = minor < 0 ? "-" : "";
    uint64_t magnitude = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    snprintf(out, cap, "%s%" PRIu64 ".%0*" PRIu64 " %s", sign,
             magnitude / (uint64_t)scale, exponent, magnitude % (uint64_t)scale,
             currency);
}

/*  Columns a string takes on a terminal, counted as code points.           */
static size_t
s_width(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

/*  Print `s` (from the node) left-aligned in `width` columns and a gap.    */
static void
s_cell(const char *s, size_t width, bool last)
{
    s_put_text(stdout, s);
    if (last)
        return;
    for (size_t w = s_width(s); w < width + 2; w++)
        fputc(' ', stdout);
}

/*  Print `s` right-aligned in `width` columns and a gap.                  */
static void
s_cell_right(const char *s, size_t width, bool last)
{
    for (size_t w = s_width(s); w < width; w++)
        fputc(' ', stdout);
    s_put_text(stdout, s);
    if (!last)
        fputs("  ", stdout);
}

/* ---- for the report commands (cli_report.c) ---------------------------- */

/* The node as one API command talks to it (cli.h). */
struct sm__node {
    s_cmd c;
};

int
sm__node_open(sm__cli *cli, const char *node_opt, const char *usage, bool auth,
              bool json, sm__node **node_p)
{
    assert(cli != NULL && usage != NULL && node_p != NULL);
    *node_p = NULL;
    sm__node *node = calloc(1, sizeof *node);
    if (node == NULL) {
        sm__cli_error("out of memory");
        return SM__EXIT_FAIL;
    }
    node->c.cli = cli;
    node->c.o.usage = usage;
    node->c.o.node = node_opt;
    node->c.json = json;
    int status = s_connect(&node->c, auth);
    if (status != SM__EXIT_OK) {
        sm__node_close(&node);
        return status;
    }
    *node_p = node;
    return SM__EXIT_OK;
}

void
sm__node_close(sm__node **node_p)
{
    if (node_p == NULL || *node_p == NULL)
        return;
    s_cmd_end(&(*node_p)->c);
    free(*node_p);
    *node_p = NULL;
}

const char *
sm__node_base(const sm__node *node)
{
    return node->c.base;
}

int
sm__node_get(sm__node *node, const char *path, sm__http_resp *resp)
{
    char url[S_URL_BYTES_MAX];
    s_url(&node->c, path, url);
    return s_request(&node->c, SM__HTTP_GET, url, NULL, false, resp);
}

int
sm__node_post(sm__node *node, const char *path, sm__json *body, sm__http_resp *resp)
{
    char url[S_URL_BYTES_MAX];
    s_url(&node->c, path, url);
    return s_request(&node->c, SM__HTTP_POST, url, body ? body : sm__json_object(), false,
                     resp);
}

int
sm__node_download(sm__node *node, const char *path, FILE *out, uint64_t *written)
{
    char url[S_URL_BYTES_MAX];
    sm__http_resp resp;
    s_cmd *c = &node->c;
    s_url(c, path, url);
    int rc = sm__http_download(url, c->token[0] != '\0' ? c->token : NULL, out, &resp,
                               written);
    if (rc != 0) {
        if (resp.unreachable)
            sm__cli_error("cannot reach the node at %s: %s (address from %s). Is "
                          "it running? Start it with 'stallmesh run', or give its "
                          "address with --node or $%s", c->base, resp.error,
                          c->from, SM__NODE_ENV);
        else
            sm__cli_error("the export from the node at %s failed: %s", c->base,
                          resp.error);
        return SM__EXIT_FAIL;
    }
    int status = SM__EXIT_OK;
    if (resp.status < 200 || resp.status >= 300) {
        s_print_refusal(c, &resp);
        status = SM__EXIT_FAIL;
    }
    sm__http_resp_clear(&resp);
    return status;
}

bool
sm__cli_escape(const char *text, char *out, size_t cap)
{
    return s_escape(text, out, cap);
}

void
sm__cli_money(int64_t minor, const char *currency, char *out, size_t cap)
{
    s_money(minor, currency, out, cap);
}

void
sm__cli_put_text(FILE *out, const char *s)
{
    s_put_text(out, s);
}

size_t
sm__cli_width(const char *s)
{
    return s_width(s);
}

/* ---- item add ---------------------------------------------------------- */

int
sm__cmd_item(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        S_OPT_NODE,
        { "name", required_argument, NULL, OPT_NAME },
        { "price", required_argument, NULL, OPT_PRICE },
        { "currency", required_argument, NULL, OPT_CURRENCY },
        S_OPT_END,
    };
    s_cmd c;
    int status;

    if (argc < 2)
        return sm__cli_usage_error(s_item_usage, "item needs a subcommand: add");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: stallmesh %s\n", s_item_usage);
        return SM__EXIT_OK;
    }
    if (strcmp(argv[1], "add") != 0)
        return sm__cli_usage_error(s_item_usage, "unknown item subcommand '%s'", argv[1]);
    if (!s_parse(&c, cli, argc - 1, argv + 1, s_item_usage, opts, &status))
        goto done;
    status = SM__EXIT_USAGE;
    if (c.argc - c.first == 0) {
        sm__cli_usage_error(s_item_usage, "give the item's SKU");
        goto done;
    }
    if (c.argc - c.first > 1) {
        sm__cli_usage_error(s_item_usage, "unexpected argument '%s'", c.argv[c.first + 1]);
        goto done;
    }
    const char *sku = c.argv[c.first];
    if (s_check_sku(s_item_usage, sku) != 0)
        goto done;
    if (c.o.name == NULL || c.o.price < 0) {
        sm__cli_usage_error(s_item_usage, "give the item's %s",
                            c.o.name == NULL ? "--name" : "--price in minor units");
        goto done;
    }
    status = s_connect(&c, true);
    if (status != SM__EXIT_OK)
        goto done;

    sm__json *body = sm__json_object(), *answer = NULL;
    sm__json_set_str(body, "sku", sku);
    sm__json_set_str(body, "name", c.o.name);
    sm__json_set_int(body, "price", c.o.price);
    if (c.o.currency != NULL)
        sm__json_set_str(body, "currency", c.o.currency);
    status = s_call(&c, SM__HTTP_POST, "/api/items", body, &answer, NULL);
    if (status == SM__EXIT_OK && answer != NULL) {
        const char *currency = sm__json_get_str(answer, "currency");
        char price[64];
        if (currency == NULL)
            currency = c.o.currency;
        s_money(c.o.price, currency, price, sizeof price);
        printf("item %s: %s at %s%s\n", sku, c.o.name, price,
               currency == NULL ? " minor units of the market's currency" : "");
    }
    sm__json_destroy(&answer);
done:
    s_cmd_end(&c);
    return status;
}

/* ---- stock, stock add, stock adjust ------------------------------------ */

/* Widths of the stock table's columns. */
typedef struct {
    size_t sku, name, price, here, total, held;
} s_widths;

/*  One row of the stock table from an item of GET /api/stock; with `print`
    false it only widens *w.                                                  */
static void
s_stock_row(const sm__json *item, s_widths *w, bool print)
{
    const char *sku = sm__json_get_str(item, "sku");
    const char *name = sm__json_get_str(item, "name");
    const char *currency = sm__json_get_str(item, "currency");
    int64_t price = 0, here = 0, total = 0, held = 0;
    char price_text[64], here_text[24], total_text[24], held_text[24];

    bool has_price = sm__json_get_int(item, "price", &price);
    sm__json_get_int(item, "here", &here);
    sm__json_get_int(item, "total", &total);
    sm__json_get_int(item, "held", &held);
    if (has_price)
        s_money(price, currency, price_text, sizeof price_text);
    else
        snprintf(price_text, sizeof price_text, "-");
    snprintf(here_text, sizeof here_text, "%" PRId64, here);
    snprintf(total_text, sizeof total_text, "%" PRId64, total);
    snprintf(held_text, sizeof held_text, "%" PRId64, held);
    sku = sku != NULL ? sku : "?";
    name = name != NULL ? name : "";
    if (!print) {
#define S_WIDEN(field, text) if (s_width(text) > w->field) w->field = s_width(text)
        S_WIDEN(sku, sku);
        S_WIDEN(name, name);
        S_WIDEN(price, price_text);
        S_WIDEN(here, here_text);
        S_WIDEN(total, total_text);
        S_WIDEN(held, held_text);
#undef S_WIDEN
        return;
    }
    s_cell(sku, w->sku, false);
    s_cell(name, w->name, false);
    s_cell_right(price_text, w->price, false);
    s_cell_right(here_text, w->here, false);
    s_cell_right(total_text, w->total, false);
    s_cell_right(held_text, w->held, true);
    fputc('\n', stdout);
}

/*  `stock`: GET /api/stock as a table.                                      */
static int
s_stock_list(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = { S_OPT_NODE, S_OPT_END };
    s_cmd c;
    int status;
    sm__json *answer = NULL;

    if (!s_parse(&c, cli, argc, argv, s_stock_usage, opts, &status))
        goto done;
    if (c.argc - c.first != 0) {
        status = sm__cli_usage_error(s_stock_usage, "unknown stock subcommand '%s': "
                                     "give add, adjust or move, or nothing to list",
                                     c.argv[c.first]);
        goto done;
    }
    status = s_connect(&c, false);
    if (status != SM__EXIT_OK)
        goto done;
    status = s_call(&c, SM__HTTP_GET, "/api/stock", NULL, &answer, NULL);
    if (status != SM__EXIT_OK || answer == NULL)
        goto done;

    const sm__json *items = sm__json_get(answer, "items");
    size_t count = sm__json_size(items);
    if (count == 0) {
        puts("no items yet: add one with 'stallmesh item add SKU --name NAME "
             "--price MINOR'");
        goto done;
    }
    s_widths w = { strlen("SKU"), strlen("NAME"), strlen("PRICE"), strlen("HERE"),
                   strlen("TOTAL"), strlen("HELD") };
    for (size_t i = 0; i < count; i++)
        s_stock_row(sm__json_at(items, i), &w, false);
    s_cell("SKU", w.sku, false);
    s_cell("NAME", w.name, false);
    s_cell_right("PRICE", w.price, false);
    s_cell_right("HERE", w.here, false);
    s_cell_right("TOTAL", w.total, false);
    s_cell_right("HELD", w.held, true);
    fputc('\n', stdout);
    for (size_t i = 0; i < count; i++)
        s_stock_row(sm__json_at(items, i), &w, true);
done:
    sm__json_destroy(&answer);
    s_cmd_end(&c);
    return status;
}

/*  `stock add SKU QTY` and `stock adjust SKU QTY --reason TEXT`.           */
static int
s_stock_change(sm__cli *cli, int argc, char **argv, bool adjust)
{
    static const struct option add_opts[] = { S_OPT_NODE, S_OPT_END };
    static const struct option adjust_opts[] = {
        S_OPT_NODE,
        { "reason", required_argument, NULL, OPT_REASON },
        S_OPT_END,
    };
    const char *usage = adjust ? s_stock_adjust_usage : s_stock_add_usage;
    s_cmd c;
    int status;
    int64_t qty = 0;
    sm__json *answer = NULL;

    if (!s_parse(&c, cli, argc, argv, usage, adjust ? adjust_opts : add_opts, &status))
        goto done;
    int nargs = c.argc - c.first;
    if (nargs < 2) {
        status = sm__cli_usage_error(usage, "give a SKU and a quantity");
        goto done;
    }
    if (nargs > 2) {
        status = sm__cli_usage_error(usage, "unexpected argument '%s'", c.argv[c.first + 2]);
        goto done;
    }
    const char *sku = c.argv[c.first];
    status = s_check_sku(usage, sku);
    if (status == 0)
        status = s_parse_qty(usage, c.argv[c.first + 1], adjust, &qty);
    if (status != 0)
        goto done;
    if (adjust && c.o.reason == NULL) {
        status = sm__cli_usage_error(usage, "give a --reason for the adjustment "
                                     "(a stock-take, breakage, ...)");
        goto done;
    }
    status = s_connect(&c, true);
    if (status != SM__EXIT_OK)
        goto done;

    sm__json *body = sm__json_object();
    sm__json_set_str(body, "sku", sku);
    sm__json_set_int(body, "qty", qty);
    if (adjust)
        sm__json_set_str(body, "reason", c.o.reason);
    status = s_call(&c, SM__HTTP_POST, adjust ? "/api/stock/adjust" : "/api/stock/add",
                    body, &answer, NULL);
    if (status != SM__EXIT_OK || answer == NULL)
        goto done;
    int64_t here;
    if (adjust)
        printf("%s: adjusted by %+" PRId64, sku, qty);
    else
        printf("%s: added %" PRId64, sku, qty);
    if (sm__json_get_int(answer, "here", &here))
        printf(", %" PRId64 " here", here);
    fputc('\n', stdout);
done:
    sm__json_destroy(&answer);
    s_cmd_end(&c);
    return status;
}

/*  `stock move SKU QTY --to NODE_ID`: units from here to another stall.   */
static int
s_stock_move(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        S_OPT_NODE,
        { "to", required_argument, NULL, OPT_TO },
        S_OPT_END,
    };
    s_cmd c;
    int status;
    int64_t qty = 0;
    sm__json *answer = NULL;

    if (!s_parse(&c, cli, argc, argv, s_stock_move_usage, opts, &status))
        goto done;
    int nargs = c.argc - c.first;
    if (nargs < 2) {
        status = sm__cli_usage_error(s_stock_move_usage, "give a SKU and a quantity");
        goto done;
    }
    if (nargs > 2) {
        status = sm__cli_usage_error(s_stock_move_usage, "unexpected argument '%s'",
                                     c.argv[c.first + 2]);
        goto done;
    }
    const char *sku = c.argv[c.first];
    status = s_check_sku(s_stock_move_usage, sku);
    if (status == 0)
        status = s_parse_qty(s_stock_move_usage, c.argv[c.first + 1], false, &qty);
    if (status != 0)
        goto done;
    if (c.o.to == NULL) {
        status = sm__cli_usage_error(s_stock_move_usage, "give --to NODE_ID, the stall "
                                     "that gets the units ('stallmesh peers --json' "
                                     "lists the node ids)");
        goto done;
    }
    status = s_connect(&c, true);
    if (status != SM__EXIT_OK)
        goto done;

    sm__json *body = sm__json_object();
    sm__json_set_str(body, "sku", sku);
    sm__json_set_int(body, "qty", qty);
    sm__json_set_str(body, "to", c.o.to);
    status = s_call(&c, SM__HTTP_POST, "/api/stock/move", body, &answer, NULL);
    if (status != SM__EXIT_OK || answer == NULL)
        goto done;
    const char *to = sm__json_get_str(answer, "to");
    int64_t here;
    printf("%s: moved %" PRId64 " to ", sku, qty);
    s_put_text(stdout, to != NULL ? to : c.o.to);
    if (sm__json_get_int(answer, "here", &here))
        printf(", %" PRId64 " here", here);
    fputc('\n', stdout);
done:
    sm__json_destroy(&answer);
    s_cmd_end(&c);
    return status;
}

int
sm__cmd_stock(sm__cli *cli, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "add") == 0)
        return s_stock_change(cli, argc - 1, argv + 1, false);
    if (argc >= 2 && strcmp(argv[1], "adjust") == 0)
        return s_stock_change(cli, argc - 1, argv + 1, true);
    if (argc >= 2 && strcmp(argv[1], "move") == 0)
        return s_stock_move(cli, argc - 1, argv + 1);
    return s_stock_list(cli, argc, argv);
}

/* ---- sell -------------------------------------------------------------- */

/*  The lines of a sale or a return from operands [from, argc) of c.argv
    into a new JSON array (*lines).  Returns 0 or a usage status.            */
static int
s_lines(s_cmd *c, int from, bool with_price, sm__json **lines)
{
    char skus[SM_SALE_LINES_MAX][SM_SKU_BYTES_MAX + 1];
    size_t n = 0;
    *lines = sm__json_array();
    for (int i = from; i < c->argc; i++, n++) {
        int64_t qty, price;
        if (n == SM_SALE_LINES_MAX)
            return sm__cli_usage_error(c->o.usage, "more than %u lines: split it in two",
                                       SM_SALE_LINES_MAX);
        int rc = s_parse_line(c->o.usage, c->argv[i], with_price, skus[n], &qty, &price);
        if (rc != 0)
            return rc;
        for (size_t j = 0; j < n; j++)
            if (strcmp(skus[j], skus[n]) == 0)
                return sm__cli_usage_error(c->o.usage, "sku '%s' is given twice: give "
                                           "it once, with the whole quantity", skus[n]);
        sm__json *line = sm__json_object();
        sm__json_set_str(line, "sku", skus[n]);
        sm__json_set_int(line, "qty", qty);
        if (price >= 0)
            sm__json_set_int(line, "price", price);
        sm__json_append(*lines, line);
    }
    if (n == 0)
        return sm__cli_usage_error(c->o.usage, "give at least one SKU");
    return 0;
}

/*  The total of a sale's lines in the answer (sku, qty, price), as text.   */
static void
s_sale_total(const sm__json *sale, char *out, size_t cap)
{
    const sm__json *lines = sm__json_get(sale, "lines");
    const char *currency = sm__json_get_str(sale, "currency");
    int64_t total = 0;
    if (!sm__json_get_int(sale, "total", &total)) {
        for (size_t i = 0; i < sm__json_size(lines); i++) {
            int64_t qty = 0, price = 0;
            sm__json_get_int(sm__json_at(lines, i), "qty", &qty);
            sm__json_get_int(sm__json_at(lines, i), "price", &price);
            total += qty * price;
        }
    }
    s_money(total, currency, out, cap);
}

int
sm__cmd_sell(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        S_OPT_NODE,
        { "source", required_argument, NULL, OPT_SOURCE },
        { "payment", required_argument, NULL, OPT_PAYMENT },
        { "external-id", required_argument, NULL, OPT_EXTERNAL_ID },
        { "hold", required_argument, NULL, OPT_HOLD },
        S_OPT_END,
    };
    s_cmd c;
    int status;
    sm__json *lines = NULL, *answer = NULL;
    long code = 0;

    if (!s_parse(&c, cli, argc, argv, s_sell_usage, opts, &status))
        goto done;
    /* With --hold and no lines: the hold's own lines (a reservation sold
       as it is, at catalog prices). */
    if (!(c.o.hold != NULL && c.argc == c.first)) {
        status = s_lines(&c, c.first, true, &lines);
        if (status != 0)
            goto done;
    }
    status = s_connect(&c, true);
    if (status != SM__EXIT_OK)
        goto done;

    sm__json *body = sm__json_object();
    if (lines != NULL)
        sm__json_set(body, "lines", lines);
    lines = NULL;
    sm__json_set_str(body, "source", c.o.source != NULL ? c.o.source : "in_person");
    sm__json_set_str(body, "payment", c.o.payment != NULL ? c.o.payment : "card");
    if (c.o.external_id != NULL)
        sm__json_set_str(body, "external_id", c.o.external_id);
    if (c.o.hold != NULL)
        sm__json_set_str(body, "hold", c.o.hold);
    status = s_call(&c, SM__HTTP_POST, "/api/sales", body, &answer, &code);
    if (status != SM__EXIT_OK || answer == NULL)
        goto done;
    const char *id = sm__json_get_str(answer, "id");
    char total[64];
    s_sale_total(answer, total, sizeof total);
    fputs("sale ", stdout);
    s_put_text(stdout, id != NULL ? id : "?");
    if (code == 200 && c.o.external_id != NULL)
        printf(": already recorded for external id %s; nothing new was sold\n",
               c.o.external_id);
    else
        printf(": %s\n", total);
done:
    sm__json_destroy(&lines);
    sm__json_destroy(&answer);
    s_cmd_end(&c);
    return status;
}

/* ---- return ------------------------------------------------------------ */

int
sm__cmd_return(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        S_OPT_NODE,
        { "reason", required_argument, NULL, OPT_REASON },
        S_OPT_END,
    };
    s_cmd c;
    int status;
    sm__json *lines = NULL, *answer = NULL;

    if (!s_parse(&c, cli, argc, argv, s_return_usage, opts, &status))
        goto done;
    if (c.argc - c.first < 2) {
        status = sm__cli_usage_error(s_return_usage, "give the SALE_ID ('stallmesh "
                                     "sell' printed it) and at least one SKU");
        goto done;
    }
    const char *sale = c.argv[c.first];
    if (!sm__cli_text_ok(sale, 128) || strchr(sale, ':') == NULL) {
        status = sm__cli_usage_error(s_return_usage, "invalid SALE_ID '%s': give the id "
                                     "'stallmesh sell' or 'stallmesh sales' printed "
                                     "(NODE:SEQ)", sale);
        goto done;
    }
    status = s_lines(&c, c.first + 1, false, &lines);
    if (status != 0)
        goto done;
    if (c.o.reason == NULL) {
        status = sm__cli_usage_error(s_return_usage, "give a --reason for the return");
        goto done;
    }
    status = s_connect(&c, true);
    if (status != SM__EXIT_OK)
        goto done;

    sm__json *body = sm__json_object();
    sm__json_set_str(body, "sale", sale);
    sm__json_set(body, "lines", lines);
    lines = NULL;
    sm__json_set_str(body, "reason", c.o.reason);
    status = s_call(&c, SM__HTTP_POST, "/api/returns", body, &answer, NULL);
    if (status != SM__EXIT_OK || answer == NULL)
        goto done;
    const char *id = sm__json_get_str(answer, "id");
    fputs("return ", stdout);
    if (id != NULL) {
        s_put_text(stdout, id);
        fputs(" ", stdout);
    }
    fputs("recorded against sale ", stdout);
    s_put_text(stdout, sale);
    fputc('\n', stdout);
done:
    sm__json_destroy(&lines);
    sm__json_destroy(&answer);
    s_cmd_end(&c);
    return status;
}

/* ---- hold, holds ------------------------------------------------------- */

/*  A hold's lines as " 2 x jam, 1 x tea".                                  */
static void
s_hold_lines(const sm__json *lines)
{
    for (size_t i = 0; i < sm__json_size(lines); i++) {
        const sm__json *l = sm__json_at(lines, i);
        int64_t qty = 0;
        const char *sku = sm__json_get_str(l, "sku");
        sm__json_get_int(l, "qty", &qty);
        printf("%s %" PRId64 " x ", i ? "," : "", qty);
        s_put_text(stdout, sku != NULL ? sku : "?");
    }
}

/*  `holds`: this stall's open holds (GET /api/holds?open=1, the token),
    one a line: code, id, time left and lines; --code finds one.            */
int
sm__cmd_holds(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        S_OPT_NODE,
        { "code", required_argument, NULL, OPT_CODE },
        S_OPT_END,
    };
    s_cmd c;
    int status;
    sm__json *answer = NULL;
    char path[128];

    if (!s_parse(&c, cli, argc, argv, s_holds_usage, opts, &status))
        goto done;
    if (c.argc > c.first) {
        status = sm__cli_usage_error(s_holds_usage, "unexpected argument '%s'",
                                     c.argv[c.first]);
        goto done;
    }
    status = s_connect(&c, true);
    if (status != SM__EXIT_OK)
        goto done;
    snprintf(path, sizeof path, "/api/holds?open=1%s%s", c.o.code ? "&code=" : "",
             c.o.code ? c.o.code : "");
    status = s_call(&c, SM__HTTP_GET, path, NULL, &answer, NULL);
    if (status != SM__EXIT_OK || answer == NULL || c.json)
        goto done;
    const sm__json *holds = sm__json_get(answer, "holds");
    if (sm__json_size(holds) == 0)
        puts("no open holds");
    for (size_t i = 0; i < sm__json_size(holds); i++) {
        const sm__json *h = sm__json_at(holds, i);
        const char *code = sm__json_get_str(h, "code");
        const char *id = sm__json_get_str(h, "id");
        int64_t left = 0;
        sm__json_get_int(h, "left_s", &left);
        s_put_text(stdout, code != NULL ? code : "------");
        fputc(' ', stdout);
        s_put_text(stdout, id != NULL ? id : "?");
        printf(" %" PRId64 ":%02" PRId64 " left:", left / 60, left % 60);
        s_hold_lines(sm__json_get(h, "lines"));
        fputc('\n', stdout);
    }
done:
    sm__json_destroy(&answer);
    s_cmd_end(&c);
    return status;
}

int
sm__cmd_hold(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        S_OPT_NODE,
        { "release", required_argument, NULL, OPT_RELEASE },
        { "at", required_argument, NULL, OPT_AT },
        { "device", required_argument, NULL, OPT_DEVICE },
        S_OPT_END,
    };
    s_cmd c;
    int status;
    int64_t qty = 1;
    sm__json *answer = NULL;
    char path[S_URL_BYTES_MAX];

    if (!s_parse(&c, cli, argc, argv, s_hold_usage, opts, &status))
        goto done;
    int nargs = c.argc - c.first;
    if (c.o.release != NULL) {
        if (c.o.at != NULL) {
            status = sm__cli_usage_error(s_hold_usage, "--release and --at do not go "
                                         "together: release a hold at the stall that "
                                         "holds it");
            goto done;
        }
        if (nargs != 0) {
            status = sm__cli_usage_error(s_hold_usage, "--release takes only the hold "
                                         "id; unexpected '%s'", c.argv[c.first]);
            goto done;
        }
        status = s_connect(&c, false);
        if (status != SM__EXIT_OK)
            goto done;
        snprintf(path, sizeof path, "/api/holds/");
        if (!s_escape(c.o.release, path, sizeof path)) {
            status = sm__cli_usage_error(s_hold_usage, "the hold id is too long");
            goto done;
        }
        status = s_call(&c, SM__HTTP_DELETE, path, NULL, &answer, NULL);
        if (status == SM__EXIT_OK && answer != NULL)
            printf("released hold %s\n", c.o.release);
        goto done;
    }
    if (nargs < 1) {
        status = sm__cli_usage_error(s_hold_usage, "give the SKU to hold");
        goto done;
    }
    /* "hold SKU QTY" (one line, as before lines existed), or SKU[:QTY]... */
    bool one = nargs == 1 || (nargs == 2 && s_all_digits(c.argv[c.first + 1])
                              && !strchr(c.argv[c.first], ':'));
    sm__json *lines = NULL;
    const char *sku = c.argv[c.first];
    status = 0;
    if (one) {
        status = s_check_sku(s_hold_usage, sku);
        if (status == 0 && nargs == 2)
            status = s_parse_qty(s_hold_usage, c.argv[c.first + 1], false, &qty);
        if (status == 0 && strchr(sku, ':') != NULL) {
            char line_sku[SM_SKU_BYTES_MAX + 1];
            int64_t price;
            status = s_parse_line(s_hold_usage, sku, false, line_sku, &qty, &price);
            one = false;
        }
    }
    if (status == 0 && !one)
        status = s_lines(&c, c.first, false, &lines);
    if (status == 0 && !one && c.o.at != NULL) {
        status = sm__cli_usage_error(s_hold_usage, "--at holds one line: reserve several "
                                     "things at the stall that holds them");
    }
    if (status != 0) {
        sm__json_destroy(&lines);
        goto done;
    }
    status = s_connect(&c, false);
    if (status != SM__EXIT_OK) {
        sm__json_destroy(&lines);
        goto done;
    }

    sm__json *body = sm__json_object();
    if (one) {
        sm__json_set_str(body, "sku", sku);
        sm__json_set_int(body, "qty", qty);
    } else {
        sm__json_set(body, "lines", lines);
    }
    if (c.o.at != NULL)
        sm__json_set_str(body, "at", c.o.at);
    if (c.o.device != NULL)
        sm__json_set_str(body, "device", c.o.device);
    status = s_call(&c, SM__HTTP_POST, "/api/holds", body, &answer, NULL);
    if (status != SM__EXIT_OK || answer == NULL)
        goto done;
    const char *id = sm__json_get_str(answer, "id");
    const char *code = sm__json_get_str(answer, "code");
    const char *expires = sm__json_get_str(answer, "expires_at");
    fputs("hold ", stdout);
    s_put_text(stdout, id != NULL ? id : "?");
    if (code != NULL) {
        fputs(" code ", stdout);
        s_put_text(stdout, code);
    }
    fputs(":", stdout);
    s_hold_lines(sm__json_get(answer, "lines"));
    if (expires != NULL) {
        fputs(" until ", stdout);
        s_put_text(stdout, expires);
    }
    if (c.o.at != NULL)
        fputs(" (held at that stall: pick up and pay there)", stdout);
    fputc('\n', stdout);
done:
    sm__json_destroy(&answer);
    s_cmd_end(&c);
    return status;
}

/* ---- sales ------------------------------------------------------------- */

/*  One line of `sales`: id, time, source, payment, lines and total.        */
static void
s_sale_row(const sm__json *sale)
{
    static const char *const text_fields[] = { "id", "at", "source", "payment" };
    for (size_t i = 0; i < sizeof text_fields / sizeof text_fields[0]; i++) {
        const char *v = sm__json_get_str(sale, text_fields[i]);
        if (v == NULL)
            continue;
        s_put_text(stdout, v);
        fputs("  ", stdout);
    }
    const sm__json *lines = sm__json_get(sale, "lines");
    const char *currency = sm__json_get_str(sale, "currency");
    for (size_t i = 0; i < sm__json_size(lines); i++) {
        const sm__json *line = sm__json_at(lines, i);
        const char *sku = sm__json_get_str(line, "sku");
        int64_t qty = 0, price = 0, returned = 0;
        char money[64];
        sm__json_get_int(line, "qty", &qty);
        sm__json_get_int(line, "price", &price);
        s_money(price, currency, money, sizeof money);
        if (i > 0)
            fputs(", ", stdout);
        s_put_text(stdout, sku != NULL ? sku : "?");
        printf(" x%" PRId64 " @ %s", qty, money);
        if (sm__json_get_int(line, "returned", &returned) && returned > 0)
            printf(" (%" PRId64 " returned)", returned);
    }
    char total[64];
    s_sale_total(sale, total, sizeof total);
    printf("  = %s\n", total);
}

int
sm__cmd_sales(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        S_OPT_NODE,
        { "since", required_argument, NULL, OPT_SINCE },
        { "limit", required_argument, NULL, OPT_LIMIT },
        S_OPT_END,
    };
    s_cmd c;
    int status;
    sm__json *answer = NULL;
    char path[128];

    if (!s_parse(&c, cli, argc, argv, s_sales_usage, opts, &status))
        goto done;
    if (c.argc - c.first != 0) {
        status = sm__cli_usage_error(s_sales_usage, "unexpected argument '%s'",
                                     c.argv[c.first]);
        goto done;
    }
    status = s_connect(&c, true);
    if (status != SM__EXIT_OK)
        goto done;
    /* The page size is always sent, so a full page means there may be more. */
    int64_t limit = c.o.limit >= 0 ? c.o.limit : S_SALES_PAGE_DEFAULT;
    int n = snprintf(path, sizeof path, "/api/sales?limit=%" PRId64, limit);
    if (c.o.since >= 0)
        n += snprintf(path + n, sizeof path - (size_t)n, "&since=%" PRId64, c.o.since);
    assert(n > 0 && (size_t)n < sizeof path);
    status = s_call(&c, SM__HTTP_GET, path, NULL, &answer, NULL);
    if (status != SM__EXIT_OK || answer == NULL)
        goto done;

    /* {"sales": [...], ...}; a bare array is taken too. */
    const sm__json *sales = sm__json_get(answer, "sales");
    if (sales == NULL)
        sales = answer;
    size_t count = sm__json_size(sales);
    if (count == 0 || sm__json_at(sales, 0) == NULL) {
        puts(c.o.since >= 0 ? "no sales since then" : "no sales yet");
        goto done;
    }
    for (size_t i = 0; i < count; i++)
        s_sale_row(sm__json_at(sales, i));
    int64_t next;
    if (count >= (size_t)limit && sm__json_get_int(answer, "next", &next))
        printf("more: stallmesh sales --since %" PRId64 "\n", next);
done:
    sm__json_destroy(&answer);
    s_cmd_end(&c);
    return status;
}

/* ---- status ------------------------------------------------------------ */

/*  GET `path` into *answer (parsed; caller destroys).  With `any_status`
    an answer with an error status is kept too (*code says which) instead
    of printed as a refusal.                                                  */
static int
s_get(s_cmd *c, const char *path, bool any_status, sm__json **answer, long *code)
{
    char url[S_URL_BYTES_MAX];
    sm__http_resp resp;
    s_url(c, path, url);
    *answer = NULL;
    if (s_request(c, SM__HTTP_GET, url, NULL, any_status, &resp) != SM__EXIT_OK)
        return SM__EXIT_FAIL;
    *code = resp.status;
    *answer = s_parse_answer(c, &resp);
    sm__http_resp_clear(&resp);
    return *answer != NULL ? SM__EXIT_OK : SM__EXIT_FAIL;
}

/*  obj[key] (a string or an integer) as text, "-" if it has neither.    */
static void
s_field(const sm__json *obj, const char *key, char *out, size_t cap)
{
    const char *text = sm__json_get_str(obj, key);
    int64_t v;
    if (text != NULL)
        snprintf(out, cap, "%s", text);
    else if (sm__json_get_int(obj, key, &v))
        snprintf(out, cap, "%" PRId64, v);
    else
        snprintf(out, cap, "-");
}

int
sm__cmd_status(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = { S_OPT_NODE, S_OPT_END };
    s_cmd c;
    int status;
    sm__json *ready = NULL, *state = NULL;
    long ready_code = 0, code = 0;

    if (!s_parse(&c, cli, argc, argv, s_status_usage, opts, &status))
        goto done;
    if (c.argc - c.first != 0) {
        status = sm__cli_usage_error(s_status_usage, "unexpected argument '%s'",
                                     c.argv[c.first]);
        goto done;
    }
    status = s_connect(&c, false);
    if (status != SM__EXIT_OK)
        goto done;
    /* /readyz answers 503 with a reason when the store does not: shown, not
       refused.  /api/state has the node's id, version and digest. */
    status = s_get(&c, "/readyz", true, &ready, &ready_code);
    if (status == SM__EXIT_OK)
        status = s_get(&c, "/api/state", false, &state, &code);
    if (status != SM__EXIT_OK)
        goto done;

    bool is_ready = ready_code == 200;
    if (c.json) {
        sm__json *out = sm__json_object();
        char node[160];
        int64_t version;
        s_field(state, "node", node, sizeof node);
        sm__json_set_str(out, "node", node);
        if (sm__json_get_int(state, "version", &version))
            sm__json_set_int(out, "version", version);
        sm__json_set_bool(out, "ready", is_ready);
        sm__json_set(out, "readyz", ready);
        sm__json_set(out, "state", state);
        ready = state = NULL;
        if (sm__json_print(&out) != 0)
            status = SM__EXIT_FAIL;
    } else {
        char node[160], version[32], digest[160];
        s_field(state, "node", node, sizeof node);
        s_field(state, "version", version, sizeof version);
        s_field(state, "digest", digest, sizeof digest);
        fputs("node     ", stdout);
        s_put_text(stdout, node);
        fputs("\nversion  ", stdout);
        s_put_text(stdout, version);
        fputs("\ndigest   ", stdout);
        s_put_text(stdout, digest);
        printf("\nheads    %zu origins\n", sm__json_size(sm__json_get(state, "heads")));
        size_t forks = sm__json_size(sm__json_get(state, "forks"));
        if (forks == 0)
            puts("forks    none");
        else
            printf("forks    %zu (see 'stallmesh status --json')\n", forks);
        printf("ready    %s", is_ready ? "yes" : "no");
        const char *why = sm__json_get_str(ready, "detail");
        if (!is_ready && why != NULL) {
            fputs(": ", stdout);
            s_put_text(stdout, why);
        }
        printf("\naddress  %s\n", c.base);
    }
    if (!is_ready) {
        sm__cli_error("the node at %s is not ready (HTTP %ld)", c.base, ready_code);
        status = SM__EXIT_FAIL;
    }
done:
    sm__json_destroy(&ready);
    sm__json_destroy(&state);
    s_cmd_end(&c);
    return status;
}

/* ---- peers ------------------------------------------------------------- */

#define S_NODE_SHORT 12        /* hex digits of a node id in the peers table */

/* Widths of the peers table's columns. */
typedef struct {
    size_t node, name, endpoint, connected, last_seen, behind;
} s_peer_widths;

/*  One row of the peers table from a peer of GET /api/peers; with `print`
    false it only widens *w.                                                  */
static void
s_peer_row(const sm__json *peer, s_peer_widths *w, bool print)
{
    const char *node = sm__json_get_str(peer, "node");
    const char *name = sm__json_get_str(peer, "name");
    const char *endpoint = sm__json_get_str(peer, "endpoint");
    const char *last_seen = sm__json_get_str(peer, "last_seen");
    bool connected = false;
    int64_t behind = 0;
    char node_text[S_NODE_SHORT + 1], behind_text[24];

    snprintf(node_text, sizeof node_text, "%s", node != NULL ? node : "?");
    sm__json_get_bool(peer, "connected", &connected);
    if (sm__json_get_int(peer, "entries_behind", &behind))
        snprintf(behind_text, sizeof behind_text, "%" PRId64, behind);
    else
        snprintf(behind_text, sizeof behind_text, "-");
    name = name != NULL && name[0] != '\0' ? name : "-";
    endpoint = endpoint != NULL && endpoint[0] != '\0' ? endpoint : "-";
    last_seen = last_seen != NULL ? last_seen : "never";
    const char *conn = connected ? "yes" : "no";
    if (!print) {
#define S_WIDEN(field, text) if (s_width(text) > w->field) w->field = s_width(text)
        S_WIDEN(node, node_text);
        S_WIDEN(name, name);
        S_WIDEN(endpoint, endpoint);
        S_WIDEN(connected, conn);
        S_WIDEN(last_seen, last_seen);
        S_WIDEN(behind, behind_text);
#undef S_WIDEN
        return;
    }
    s_cell(node_text, w->node, false);
    s_cell(name, w->name, false);
    s_cell(endpoint, w->endpoint, false);
    s_cell(conn, w->connected, false);
    s_cell(last_seen, w->last_seen, false);
    s_cell_right(behind_text, w->behind, true);
    fputc('\n', stdout);
}

/*  `peers`: GET /api/peers as a table.  With no peers the table is only its
    header, and a hint on how to give the node some goes to stderr.         */
int
sm__cmd_peers(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = { S_OPT_NODE, S_OPT_END };
    s_cmd c;
    int status;
    sm__json *answer = NULL;

    if (!s_parse(&c, cli, argc, argv, s_peers_usage, opts, &status))
        goto done;
    if (c.argc - c.first != 0) {
        status = sm__cli_usage_error(s_peers_usage, "unexpected argument '%s'",
                                     c.argv[c.first]);
        goto done;
    }
    status = s_connect(&c, false);
    if (status != SM__EXIT_OK)
        goto done;
    status = s_call(&c, SM__HTTP_GET, "/api/peers", NULL, &answer, NULL);
    if (status != SM__EXIT_OK || answer == NULL)
        goto done;

    const sm__json *peers = sm__json_get(answer, "peers");
    size_t count = sm__json_size(peers);
    s_peer_widths w = { strlen("NODE"), strlen("NAME"), strlen("ENDPOINT"),
                        strlen("CONNECTED"), strlen("LAST SEEN"), strlen("BEHIND") };
    for (size_t i = 0; i < count; i++)
        s_peer_row(sm__json_at(peers, i), &w, false);
    s_cell("NODE", w.node, false);
    s_cell("NAME", w.name, false);
    s_cell("ENDPOINT", w.endpoint, false);
    s_cell("CONNECTED", w.connected, false);
    s_cell("LAST SEEN", w.last_seen, false);
    s_cell_right("BEHIND", w.behind, true);
    fputc('\n', stdout);
    for (size_t i = 0; i < count; i++)
        s_peer_row(sm__json_at(peers, i), &w, true);
    if (count == 0)
        fputs("no peers known yet: start the node with --peer NODE_ID@tcp://HOST:PORT "
              "(or [mesh] peers in its config), or join with a token that names the "
              "organiser's endpoint\n", stderr);
done:
    sm__json_destroy(&answer);
    s_cmd_end(&c);
    return status;
}
