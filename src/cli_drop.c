/*  `stallmesh drop`: create, list, show and draw drops through the running
    node's API (proto/api.md "Drops"), and verify a raffle's draw from the
    store of any node (read-only, beside a running node if need be).

        drop create SKU QTY --starts TIME [--mode first_come|raffle]
                    [--per-shopper N] [--closes TIME] [--pickup-minutes N]
        drop list
        drop show ID
        drop draw ID
        drop verify ID

    verify exits 0 when the draw matches what the log gives, 1 naming what
    does not (or that this node lacks part of the log), 2 for a usage error. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "drop.h"
#include "stallmesh/error.h"

static const char s_usage[] =
    "drop create SKU QTY --starts TIME [--mode first_come|raffle] [--per-shopper N]\n"
    "                 [--closes TIME] [--pickup-minutes N] [--json]\n"
    "       stallmesh drop list [--json]\n"
    "       stallmesh drop show ID [--json]\n"
    "       stallmesh drop draw ID [--json]\n"
    "       stallmesh drop verify ID [--json]";

enum { OPT_NODE = 1000, OPT_STARTS, OPT_CLOSES, OPT_MODE, OPT_PER, OPT_PICKUP };

typedef struct {
    const char *node, *starts, *closes, *mode, *per, *pickup;
} s_opts;

static int
s_on_opt(int opt, const char *arg, void *ctx)
{
    s_opts *o = ctx;
    switch (opt) {
    case OPT_NODE: o->node = arg; return 0;
    case OPT_STARTS: o->starts = arg; return 0;
    case OPT_CLOSES: o->closes = arg; return 0;
    case OPT_MODE: o->mode = arg; return 0;
    case OPT_PER: o->per = arg; return 0;
    case OPT_PICKUP: o->pickup = arg; return 0;
    default: return -1;
    }
}

static bool
s_uint_arg(const char *s, int64_t max, int64_t *out)
{
    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 9)
        return false;
    *out = strtoll(s, NULL, 10);
    return *out >= 1 && *out <= max;
}

/*  "ORIGIN:SEQ" shaped, and short enough for a path.                        */
static bool
s_id_ok(const char *id)
{
    const char *colon = strchr(id, ':');
    return colon && colon - id == SM_ID_HEX_BYTES
        && strspn(id, "0123456789abcdefABCDEF") == SM_ID_HEX_BYTES
        && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)
        && strlen(colon + 1) <= 16;
}

static void
s_print_drop(const sm__json *d)
{
    int64_t left = 0, qty = 0, entries = 0;
    sm__json_get_int(d, "units_left", &left);
    sm__json_get_int(d, "qty", &qty);
    const char *mode = sm__json_get_str(d, "mode");
    sm__cli_put_text(stdout, sm__json_get_str(d, "id"));
    printf("  %-8s %-10s ", sm__json_get_str(d, "phase"), mode);
    sm__cli_put_text(stdout, sm__json_get_str(d, "sku"));
    printf("  %" PRId64 "/%" PRId64 " left  starts %s", left, qty,
           sm__json_get_str(d, "starts"));
    if (mode && strcmp(mode, "raffle") == 0) {
        sm__json_get_int(d, "entries", &entries);
        printf("  closes %s  %" PRId64 " entries", sm__json_get_str(d, "closes"), entries);
    }
    const char *stall = sm__json_get_str(d, "stall_name");
    if (stall) {
        printf("  at ");
        sm__cli_put_text(stdout, stall);
    }
    fputc('\n', stdout);
}

static int
s_verify(sm__cli *cli, const char *id, bool json)
{
    sm_id origin;
    char hex[SM_ID_HEX_BYTES + 1];
    memcpy(hex, id, SM_ID_HEX_BYTES);
    hex[SM_ID_HEX_BYTES] = '\0';
    uint64_t seq = strtoull(id + SM_ID_HEX_BYTES + 1, NULL, 10);
    if (sm_id_parse(hex, &origin) != 0 || seq == 0)
        return sm__cli_usage_error(s_usage, "a drop's ID is <64 hex digits>:<seq>");
    sm_ledger *ledger = NULL;
    int status = sm__cli_open_ledger(cli, NULL, true, &ledger);
    if (status != SM__EXIT_OK)
        return status;
    char why[320] = "";
    sm_drop_result res;
    int rc = sm_drop_verify(ledger, &origin, seq, why, sizeof why, &res);
    if (rc != 0 && !why[0])
        snprintf(why, sizeof why, "%s", rc == SM_ENODROP
                 ? "this node's store has no drop with that id (not synced yet?)"
                 : sm_strerror(rc));
    if (json) {
        sm__json *o = sm__json_object();
        sm__json_set_str(o, "drop", id);
        sm__json_set_bool(o, "ok", rc == 0);
        if (rc == 0) {
            sm__json_set_int(o, "counted", (int64_t) res.counted);
            sm__json_set_int(o, "winners", (int64_t) res.winners);
            sm__json_set_hex(o, "r", res.r.b, SM_HASH_BYTES);
        } else {
            sm__json_set_str(o, "error", sm_errname(rc));
            sm__json_set_str(o, "detail", why);
        }
        sm__json_print(&o);
    } else if (rc == 0) {
        printf("draw of %s verified: %zu counted entries, %zu winners, each with its hold\n",
               id, res.counted, res.winners);
    } else {
        sm__cli_error("the draw of %s does not verify: %s", id, why);
    }
    if (rc == 0)
        sm_drop_result_free(&res);
    sm_ledger_destroy(&ledger);
    return rc == 0 ? SM__EXIT_OK : SM__EXIT_FAIL;
}

int
sm__cmd_drop(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "node", required_argument, NULL, OPT_NODE },
        { "starts", required_argument, NULL, OPT_STARTS },
        { "closes", required_argument, NULL, OPT_CLOSES },
        { "mode", required_argument, NULL, OPT_MODE },
        { "per-shopper", required_argument, NULL, OPT_PER },
        { "pickup-minutes", required_argument, NULL, OPT_PICKUP },
        { NULL, 0, NULL, 0 },
    };
    s_opts o;
    memset(&o, 0, sizeof o);
    bool json = false;
    int status = SM__EXIT_OK, first = 0;
    if (!sm__cli_parse(argc, argv, s_usage, opts, "", s_on_opt, &o, &json, &first, &status))
        return status;
    if (first >= argc)
        return sm__cli_usage_error(s_usage, "give a subcommand: create, list, show, draw or "
                                   "verify");
    const char *sub = argv[first];
    int nargs = argc - first - 1;
    char **args = argv + first + 1;
    bool create = strcmp(sub, "create") == 0, list = strcmp(sub, "list") == 0;
    bool show = strcmp(sub, "show") == 0, draw = strcmp(sub, "draw") == 0;
    bool verify = strcmp(sub, "verify") == 0;
    if (!create && !list && !show && !draw && !verify)
        return sm__cli_usage_error(s_usage, "unknown subcommand '%s'", sub);
    if ((create && nargs != 2) || (list && nargs != 0) || ((show || draw || verify) && nargs != 1))
        return sm__cli_usage_error(s_usage, "%s takes %s", sub,
                                   create ? "SKU and QTY" : list ? "no arguments" : "one drop ID");
    if (!create && (o.starts || o.closes || o.mode || o.per || o.pickup))
        return sm__cli_usage_error(s_usage, "--starts, --closes, --mode, --per-shopper and "
                                   "--pickup-minutes are for create");
    if ((show || draw || verify) && !s_id_ok(args[0]))
        return sm__cli_usage_error(s_usage, "a drop's ID is <64 hex digits>:<seq>, as "
                                   "'stallmesh drop list' shows it");
    if (verify)
        return s_verify(cli, args[0], json);

    sm__json *body = NULL;
    int64_t qty = 0, per = 1, pickup = 30;
    if (create) {
        if (!o.starts)
            return sm__cli_usage_error(s_usage, "create needs --starts TIME (RFC 3339)");
        if (!s_uint_arg(args[1], SM_QTY_MAX, &qty))
            return sm__cli_usage_error(s_usage, "QTY is a whole number 1..%u", SM_QTY_MAX);
        if (o.per && !s_uint_arg(o.per, SM_QTY_MAX, &per))
            return sm__cli_usage_error(s_usage, "--per-shopper is a whole number >= 1");
        if (o.pickup && !s_uint_arg(o.pickup, SM_DROP_PICKUP_MIN_MAX, &pickup))
            return sm__cli_usage_error(s_usage, "--pickup-minutes is 1..%u",
                                       SM_DROP_PICKUP_MIN_MAX);
        body = sm__json_object();
        sm__json_set_str(body, "sku", args[0]);
        sm__json_set_int(body, "qty", qty);
        sm__json_set_str(body, "starts", o.starts);
        sm__json_set_str(body, "mode", o.mode ? o.mode : (o.closes ? "raffle" : "first_come"));
        sm__json_set_int(body, "per_shopper", per);
        sm__json_set_int(body, "pickup_minutes", pickup);
        if (o.closes)
            sm__json_set_str(body, "closes", o.closes);
    }
    sm__node *node = NULL;
    status = sm__node_open(cli, o.node, s_usage, create || draw, json, &node);
    if (status != SM__EXIT_OK) {
        sm__json_destroy(&body);
        return status;
    }
    char path[256] = "/api/drops";
    if (show || draw) {
        snprintf(path, sizeof path, "/api/drops/%s%s", args[0], draw ? "/draw" : "");
    }
    sm__http_resp resp = { 0 };
    status = create || draw ? sm__node_post(node, path, body, &resp)
                            : sm__node_get(node, path, &resp);
    sm__json *answer = status == SM__EXIT_OK ? sm__json_parse(resp.body, resp.body_len) : NULL;
    if (status == SM__EXIT_OK && json) {
        fwrite(resp.body, 1, resp.body_len, stdout);
        fputc('\n', stdout);
    } else if (status == SM__EXIT_OK && !answer) {
        sm__cli_error("the node's answer is not JSON");
        status = SM__EXIT_FAIL;
    } else if (status == SM__EXIT_OK && list) {
        const sm__json *drops = sm__json_get(answer, "drops");
        if (sm__json_size(drops) == 0)
            puts("no drops");
        for (size_t i = 0; i < sm__json_size(drops); i++)
            s_print_drop(sm__json_at(drops, i));
    } else if (status == SM__EXIT_OK && create) {
        s_print_drop(answer);
        const char *c = sm__json_get_str(answer, "commitment");
        if (c)
            printf("commitment %s (the draw will reveal its secret)\n", c);
    } else if (status == SM__EXIT_OK && show) {
        s_print_drop(sm__json_get(answer, "drop"));
    } else if (status == SM__EXIT_OK && draw) {
        int64_t counted = 0, winners = 0;
        sm__json_get_int(answer, "counted", &counted);
        sm__json_get_int(answer, "winners", &winners);
        printf("drew %s: %" PRId64 " counted entries, %" PRId64 " winners (draw %s); "
               "check it anywhere with 'stallmesh drop verify %s'\n", args[0], counted, winners,
               sm__json_get_str(answer, "draw"), args[0]);
    }
    sm__json_destroy(&answer);
    if (status == SM__EXIT_OK)
        sm__http_resp_clear(&resp);
    sm__node_close(&node);
    return status;
}
