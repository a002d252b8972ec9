/*  Market membership from the command line (README: security): `market
    create`, `admit`, `join` and `revoke`.

    The organiser's node is the market (market id = its key); it admits a
    node by appending a roster.admit entry to its own log and handing the
    node a join token holding that signed entry (src/token.c), as text and
    optionally as a QR code.  The node joins offline from the token alone.
    Revoking appends roster.revoke with upto_seq = the node's head as known
    here: what the organiser has already seen of it stays valid.             */
#include <string.h>

#include "cli.h"
#include "stallmesh/error.h"
#include "stallmesh/token.h"

static const char s_market_usage[] = "market create --name NAME [--currency CODE] [--json]";
static const char s_admit_usage[] =
    "admit NODE_ID --name NAME [--role stall|relay|organiser] "
    "[--endpoint tcp://HOST:PORT]... [--json] [--qr]";
static const char s_join_usage[] = "join TOKEN";
static const char s_revoke_usage[] = "revoke NODE_ID [--json]";

enum { OPT_NAME = 'n', OPT_CURRENCY = 'c', OPT_ROLE = 'r', OPT_ENDPOINT = 'e',
       OPT_QR = 0x200 };

/*  Load the identity and open the ledger for writing; *market is filled if
    the node has one (else *has_market is false).  `beside`: the command may
    write beside a running node (admit and revoke append to the roster, which
    LMDB serialises with the node's writes); the others take the directory
    lock.  Returns SM__EXIT_*.                                                */
static int
s_open(const sm__cli *cli, sm_identity *id, sm_ledger **ledger, sm_market *market,
       bool *has_market, bool beside)
{
    int status = sm__cli_load_identity(cli, id);
    if (status != SM__EXIT_OK)
        return status;
    status = beside ? sm__cli_open_ledger_beside(cli, id, ledger)
                    : sm__cli_open_ledger(cli, id, false, ledger);
    if (status != SM__EXIT_OK)
        return status;
    int rc = sm_ledger_market(*ledger, market);
    *has_market = rc == 0;
    if (rc != 0 && rc != SM_ENOMARKET) {
        sm__cli_error("cannot read the store in %s/%s: %s", cli->dir, SM__STORE_DIR,
                      sm_strerror(rc));
        return SM__EXIT_FAIL;
    }
    return SM__EXIT_OK;
}

/*  SM__EXIT_OK if this node organises a market, else explain and fail.     */
static int
s_require_organiser(const sm_identity *id, const sm_market *market, bool has_market,
                    const char *what)
{
    if (!has_market) {
        sm__cli_error("this node has no market, so it cannot %s: run 'stallmesh "
                      "market create --name NAME' to organise one", what);
        return SM__EXIT_FAIL;
    }
    if (memcmp(market->market.b, id->pub.b, SM_KEY_BYTES) != 0) {
        char hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(&market->market, hex);
        sm__cli_error("only the market's organiser can %s: this node is a member "
                      "of market %s (%s); run the command on the organiser's node",
                      what, market->name, hex);
        return SM__EXIT_FAIL;
    }
    return SM__EXIT_OK;
}

/* ---- market create -------------------------------------------------- */

typedef struct {
    const char *name;
    const char *currency;
} s_market_args;

/*  market create's option handler: --name and --currency, checked.        */
static int
s_market_opt(int opt, const char *arg, void *ctx)
{
    s_market_args *a = ctx;
    if (opt == OPT_NAME) {
        if (!sm__cli_text_ok(arg, SM_NAME_BYTES_MAX))
            return sm__cli_usage_error(s_market_usage,
                "invalid --name: give 1 to %u bytes of UTF-8 text without control "
                "characters", SM_NAME_BYTES_MAX);
        a->name = arg;
    } else if (opt == OPT_CURRENCY) {
        if (!sm__cli_currency_ok(arg))
            return sm__cli_usage_error(s_market_usage,
                "invalid --currency '%s': give a 3-letter ISO 4217 code in capitals, "
                "such as GBP, EUR or USD", arg);
        a->currency = arg;
    }
    return 0;
}

/*  The organiser's own name for its roster entry: the name `init --name`
    kept in DIR/name (its first line), else the market's name.              */
static void
s_own_name(sm__cli *cli, const char *fallback, char *out, size_t cap)
{
    snprintf(out, cap, "%s", fallback);
    char path[PATH_MAX];
    if (!sm__cli_path(cli, SM__NAME_FILE, path))
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[SM_NAME_BYTES_MAX + 2];
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] && strlen(line) <= SM_NAME_BYTES_MAX)
            snprintf(out, cap, "%s", line);
    }
    fclose(f);
}

int
sm__cmd_market(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, OPT_NAME },
        { "currency", required_argument, NULL, OPT_CURRENCY },
        { NULL, 0, NULL, 0 },
    };
    s_market_args a = { NULL, "GBP" };
    bool json = false, has_market = false;
    int first = 0, status = SM__EXIT_FAIL;
    sm_identity id;
    sm_ledger *ledger = NULL;
    sm_market market;

    memset(&id, 0, sizeof id);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc >= 2) {
            printf("usage: stallmesh %s\n", s_market_usage);
            return SM__EXIT_OK;
        }
        return sm__cli_usage_error(s_market_usage, "market needs a subcommand: create");
    }
    if (strcmp(argv[1], "create") != 0)
        return sm__cli_usage_error(s_market_usage, "unknown subcommand 'market %s'",
                                   argv[1]);
    if (!sm__cli_parse(argc - 1, argv + 1, s_market_usage, opts, "n:c:", s_market_opt,
                       &a, &json, &first, &status))
        return status;
    if (first < argc - 1)
        return sm__cli_usage_error(s_market_usage, "unexpected argument '%s'",
                                   argv[1 + first]);
    if (a.name == NULL)
        return sm__cli_usage_error(s_market_usage, "market create needs --name NAME: "
                                   "the market's name as shoppers and stalls see it");

    status = s_open(cli, &id, &ledger, &market, &has_market, false);
    if (status != SM__EXIT_OK)
        goto fail;
    status = SM__EXIT_FAIL;
    if (has_market) {
        char hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(&market.market, hex);
        sm__cli_error("this node already belongs to market %s (%s); a node belongs "
                      "to one market: make another node with 'stallmesh --dir NEWDIR "
                      "init' to organise a second one", market.name, hex);
        goto fail;
    }
    char self_name[SM_NAME_BYTES_MAX + 1];
    s_own_name(cli, a.name, self_name, sizeof self_name);
    int rc = sm_ledger_create_market_as(ledger, a.name, self_name, a.currency,
                                        sm__cli_now_ms());
    if (rc != 0) {
        sm__cli_error("cannot create the market: %s", sm_strerror(rc));
        goto fail;
    }

    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&id.pub, hex);
    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_str(out, "market", hex);
        sm__json_set_str(out, "node", hex);
        if (sm__json_print(&out) != 0)
            goto fail;
    } else {
        printf("%s\n", hex);
    }
    status = SM__EXIT_OK;

fail:
    sm_ledger_destroy(&ledger);
    sm_identity_wipe(&id);
    return status;
}

/* ---- admit ---------------------------------------------------------- */

typedef struct {
    const char *name;
    int role;
    bool qr;
    uint32_t endpoint_count;
    const char *endpoints[SM_ENDPOINTS_MAX];
} s_admit_args;

/*  admit's option handler: --name, --role, --endpoint (repeatable, at most
    SM_ENDPOINTS_MAX), --qr; each checked as it comes.                      */
static int
s_admit_opt(int opt, const char *arg, void *ctx)
{
    s_admit_args *a = ctx;
    switch (opt) {
    case OPT_NAME:
        if (!sm__cli_text_ok(arg, SM_NAME_BYTES_MAX))
            return sm__cli_usage_error(s_admit_usage,
                "invalid --name: give 1 to %u bytes of UTF-8 text without control "
                "characters", SM_NAME_BYTES_MAX);
        a->name = arg;
        break;
    case OPT_ROLE:
        a->role = sm_role_parse(arg);
        if (a->role == 0)
            return sm__cli_usage_error(s_admit_usage,
                "invalid --role '%s': give stall, relay or organiser", arg);
        break;
    case OPT_ENDPOINT:
        if (!sm__cli_endpoint_ok(arg))
            return sm__cli_usage_error(s_admit_usage,
                "invalid --endpoint '%s': give tcp://HOST:PORT with a host name or "
                "address and a port from 1 to 65535 (IPv6 as tcp://[ADDR]:PORT)", arg);
        if (a->endpoint_count == SM_ENDPOINTS_MAX)
            return sm__cli_usage_error(s_admit_usage,
                "too many --endpoint options: a join token holds at most %u",
                SM_ENDPOINTS_MAX);
        a->endpoints[a->endpoint_count++] = arg;
        break;
    case OPT_QR:
        a->qr = true;
        break;
    }
    return 0;
}

/*  sm_ledger_read callback: copy the one entry into the token.              */
static int
s_copy_entry(const sm_signed *entry, uint64_t seq, void *arg)
{
    sm_token *t = arg;
    (void)seq;
    if (entry->len > sizeof t->entry)
        return -1;
    memcpy(t->entry, entry->bytes, entry->len);
    t->entry_len = entry->len;
    memcpy(t->entry_sig, entry->sig, SM_SIG_BYTES);
    return 1;
}

int
sm__cmd_admit(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, OPT_NAME },
        { "role", required_argument, NULL, OPT_ROLE },
        { "endpoint", required_argument, NULL, OPT_ENDPOINT },
        { "qr", no_argument, NULL, OPT_QR },
        { NULL, 0, NULL, 0 },
    };
    s_admit_args a;
    bool json = false, has_market = false;
    int first = 0, status = SM__EXIT_FAIL;
    sm_identity id;
    sm_ledger *ledger = NULL;
    sm_market market;
    sm_id node;
    static sm_token token;     /* large; the CLI runs one command */
    static char text[SM_TOKEN_BYTES_MAX + 1];

    memset(&a, 0, sizeof a);
    a.role = SM_ROLE_STALL;
    memset(&id, 0, sizeof id);
    if (!sm__cli_parse(argc, argv, s_admit_usage, opts, "n:r:e:", s_admit_opt, &a,
                       &json, &first, &status))
        return status;
    if (first >= argc)
        return sm__cli_usage_error(s_admit_usage, "admit needs the NODE_ID of the node "
                                   "to admit (what 'stallmesh init' printed on it)");
    if (first + 1 < argc)
        return sm__cli_usage_error(s_admit_usage, "unexpected argument '%s'",
                                   argv[first + 1]);
    if (sm_id_parse(argv[first], &node) != 0)
        return sm__cli_usage_error(s_admit_usage, "'%s' is not a node id: give the 64 "
                                   "hex digits that 'stallmesh init' printed on that "
                                   "node", argv[first]);
    if (a.name == NULL)
        return sm__cli_usage_error(s_admit_usage, "admit needs --name NAME: the "
                                   "node's display name in the market");

    status = s_open(cli, &id, &ledger, &market, &has_market, true);
    if (status != SM__EXIT_OK)
        goto fail;
    status = s_require_organiser(&id, &market, has_market, "admit nodes");
    if (status != SM__EXIT_OK)
        goto fail;
    status = SM__EXIT_FAIL;
    if (memcmp(node.b, id.pub.b, SM_KEY_BYTES) == 0) {
        sm__cli_error("%s is this node, the organiser, which is a member already: "
                      "give the id of the node to admit", argv[first]);
        goto fail;
    }

    sm_body body;
    memset(&body, 0, sizeof body);
    body.kind = SM_KIND_ROSTER_ADMIT;
    body.u.admit.node = node;
    snprintf(body.u.admit.name, sizeof body.u.admit.name, "%s", a.name);
    body.u.admit.role = (uint8_t)a.role;
    uint64_t seq = 0;
    int rc = sm_ledger_append(ledger, &body, sm__cli_now_ms(), &seq);
    if (rc != 0) {
        sm__cli_error("cannot admit %s: %s", argv[first], sm_strerror(rc));
        goto fail;
    }

    memset(&token, 0, sizeof token);
    token.market = market.market;
    memcpy(token.name, market.name, sizeof token.name);
    memcpy(token.currency, market.currency, sizeof token.currency);
    token.endpoint_count = a.endpoint_count;
    for (uint32_t i = 0; i < a.endpoint_count; i++)
        snprintf(token.endpoints[i], sizeof token.endpoints[i], "%s", a.endpoints[i]);
    rc = sm_ledger_read(ledger, &id.pub, seq, 1, s_copy_entry, &token);
    if (rc != 0 || token.entry_len == 0) {
        sm__cli_error("admitted %s (entry %llu) but cannot read the entry back to "
                      "make its token: %s; run 'stallmesh verify', then admit again",
                      argv[first], (unsigned long long)seq,
                      sm_strerror(rc != 0 ? rc : SM_ENOTFOUND));
        goto fail;
    }
    rc = sm_token_encode(&token, &id, text, sizeof text);
    if (rc != 0) {
        sm__cli_error("admitted %s (entry %llu) but cannot make its join token: %s; "
                      "admit again with fewer or shorter --endpoint values",
                      argv[first], (unsigned long long)seq, sm_strerror(rc));
        goto fail;
    }

    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_str(out, "token", text);
        if (sm__json_print(&out) != 0)
            goto fail;
    } else {
        printf("%s\n", text);
    }
    if (a.qr) {
        fflush(stdout);
        rc = sm__qr_print(text, json ? stderr : stdout);
        if (rc != 0) {
            sm__cli_error("cannot draw the token as a QR code: %s; hand it over as "
                          "text", rc == SM_ETOOBIG ? "it is too long for one"
                                                   : sm_strerror(rc));
            goto fail;
        }
    }
    status = SM__EXIT_OK;

fail:
    sm_ledger_destroy(&ledger);
    sm_identity_wipe(&id);
    return status;
}

/* ---- join ----------------------------------------------------------- */

int
sm__cmd_join(sm__cli *cli, int argc, char **argv)
{
    bool has_market = false;
    int first = 0, status = SM__EXIT_FAIL;
    sm_identity id;
    sm_ledger *ledger = NULL;
    sm_market market, current;
    static sm_token token;
    sm_entry admit;
    char hex[SM_ID_HEX_BYTES + 1];

    memset(&id, 0, sizeof id);
    if (!sm__cli_parse(argc, argv, s_join_usage, NULL, "", NULL, NULL, NULL,
                       &first, &status))
        return status;
    if (first >= argc)
        return sm__cli_usage_error(s_join_usage, "join needs the TOKEN the organiser's "
                                   "'stallmesh admit' printed for this node");
    if (first + 1 < argc)
        return sm__cli_usage_error(s_join_usage, "unexpected argument '%s' (quote the "
                                   "token if it was split)", argv[first + 1]);

    status = s_open(cli, &id, &ledger, &current, &has_market, false);
    if (status != SM__EXIT_OK)
        goto fail;
    status = SM__EXIT_FAIL;
    sm_id_format(&id.pub, hex);
    if (sm_token_decode(argv[first], &id.pub, &token) != 0) {
        sm__cli_error("this join token is damaged, tampered with, or was made for "
                      "another node: check it was copied whole, or ask the organiser "
                      "to run 'stallmesh admit %s --name NAME' for this node", hex);
        goto fail;
    }
    /* Decoding checked the entry already; this only reads the role. */
    int rc = sm_entry_decode(token.entry, token.entry_len, &admit);
    if (rc != 0 || admit.body.kind != SM_KIND_ROSTER_ADMIT) {
        sm__cli_error("this join token's entry does not decode: %s", sm_strerror(rc));
        goto fail;
    }

    char market_hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&token.market, market_hex);
    if (has_market) {
        char current_hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(&current.market, current_hex);
        if (memcmp(current.market.b, token.market.b, SM_KEY_BYTES) == 0) {
            printf("already a member of market %s (%s)\n", current.name, current_hex);
            status = SM__EXIT_OK;
        } else {
            sm__cli_error("this node already belongs to market %s (%s); a node "
                          "belongs to one market: make another node with 'stallmesh "
                          "--dir NEWDIR init' to join %s", current.name, current_hex,
                          token.name);
        }
        goto fail;
    }

    memset(&market, 0, sizeof market);
    market.market = token.market;
    memcpy(market.name, token.name, sizeof market.name);
    memcpy(market.currency, token.currency, sizeof market.currency);
    market.endpoint_count = token.endpoint_count;
    memcpy(market.endpoints, token.endpoints, sizeof market.endpoints);
    sm_signed signed_admit = { token.entry, token.entry_len, { 0 } };
    memcpy(signed_admit.sig, token.entry_sig, SM_SIG_BYTES);
    rc = sm_ledger_join(ledger, &market, &signed_admit);
    if (rc != 0) {
        sm__cli_error("cannot join market %s (%s): %s", token.name, market_hex,
                      sm_strerror(rc));
        goto fail;
    }
    const char *role = sm_role_name(admit.body.u.admit.role);
    printf("joined market %s (%s) as %s\n", token.name, market_hex,
           role != NULL ? role : "member");
    status = SM__EXIT_OK;

fail:
    sm_ledger_destroy(&ledger);
    sm_identity_wipe(&id);
    return status;
}

/* ---- revoke --------------------------------------------------------- */

int
sm__cmd_revoke(sm__cli *cli, int argc, char **argv)
{
    bool json = false, has_market = false;
    int first = 0, status = SM__EXIT_FAIL;
    sm_identity id;
    sm_ledger *ledger = NULL;
    sm_market market;
    sm_id node;
    sm_head head;

    memset(&id, 0, sizeof id);
    if (!sm__cli_parse(argc, argv, s_revoke_usage, NULL, "", NULL, NULL, &json,
                       &first, &status))
        return status;
    if (first >= argc)
        return sm__cli_usage_error(s_revoke_usage, "revoke needs the NODE_ID of the "
                                   "node to revoke");
    if (first + 1 < argc)
        return sm__cli_usage_error(s_revoke_usage, "unexpected argument '%s'",
                                   argv[first + 1]);
    if (sm_id_parse(argv[first], &node) != 0)
        return sm__cli_usage_error(s_revoke_usage, "'%s' is not a node id: give its "
                                   "64 hex digits", argv[first]);

    status = s_open(cli, &id, &ledger, &market, &has_market, true);
    if (status != SM__EXIT_OK)
        goto fail;
    status = s_require_organiser(&id, &market, has_market, "revoke nodes");
    if (status != SM__EXIT_OK)
        goto fail;
    status = SM__EXIT_FAIL;
    if (memcmp(node.b, id.pub.b, SM_KEY_BYTES) == 0) {
        sm__cli_error("%s is this node, the organiser, which cannot revoke itself",
                      argv[first]);
        goto fail;
    }
    int rc = sm_ledger_head(ledger, &node, &head);
    if (rc != 0) {
        sm__cli_error("cannot read the log head of %s: %s", argv[first], sm_strerror(rc));
        goto fail;
    }

    sm_body body;
    memset(&body, 0, sizeof body);
    body.kind = SM_KIND_ROSTER_REVOKE;
    body.u.revoke.node = node;
    body.u.revoke.upto_seq = head.seq;
    uint64_t seq = 0;
    rc = sm_ledger_append(ledger, &body, sm__cli_now_ms(), &seq);
    if (rc != 0) {
        sm__cli_error("cannot revoke %s: %s", argv[first], sm_strerror(rc));
        goto fail;
    }
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&node, hex);
    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_str(out, "node", hex);
        sm__json_set_int(out, "upto_seq", (int64_t)head.seq);
        sm__json_set_int(out, "seq", (int64_t)seq);
        if (sm__json_print(&out) != 0)
            goto fail;
    } else {
        if (head.seq == 0)
            printf("revoked %s: all its entries are void (none had reached this "
                   "node)\n", hex);
        else
            printf("revoked %s: its entries after seq %llu, the last this node "
                   "has, are void\n", hex, (unsigned long long)head.seq);
    }
    status = SM__EXIT_OK;

fail:
    sm_ledger_destroy(&ledger);
    sm_identity_wipe(&id);
    return status;
}
