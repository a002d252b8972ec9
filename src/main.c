/*  stallmesh: the command line of a stallmesh node.

    `stallmesh [--dir DIR] COMMAND ...`: this file parses the global
    options, finds the data directory and hands the rest of the command line
    to the command (see cli.h for how the CLI's files divide the work).  The
    help text below is the reference: README.md mirrors
    it, and a change to one is a change to both.

    Data directory: --dir, else $STALLMESH_DIR, else
    $HOME/.local/share/stallmesh.  The running node's API (for item, stock,
    sell, return, hold, sales, status, peers, report, export): --node, else
    $STALLMESH_NODE, else DIR/http, else http://127.0.0.1:8080 (cli_api.c).                         */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char s_help[] =
"usage: stallmesh [--dir DIR] [--node URL] COMMAND [ARGS...]\n"
"\n"
"An offline-first mesh sync node for market stalls.\n"
"\n"
"Global options:\n"
"  --dir DIR      data directory (default: $STALLMESH_DIR, else\n"
"                 $HOME/.local/share/stallmesh)\n"
"  --node URL     the running node's API, http://HOST:PORT (default:\n"
"                 $STALLMESH_NODE, else the address in DIR/http, else\n"
"                 http://127.0.0.1:8080); also accepted after the command\n"
"  -h, --help     show this help and exit\n"
"  --version      print the version and exit\n"
"\n"
"Commands:\n"
"  init [--name NAME] [--json]\n"
"      Create this node: the data directory (0700), its identity\n"
"      (DIR/identity, 0600), an API token (DIR/api-token, 0600) and the\n"
"      store (DIR/store/).  Prints the node id.  Never replaces an identity.\n"
"  id [--json]\n"
"      Print this node's id and the market it belongs to.\n"
"  market create --name NAME [--currency CODE] [--json]\n"
"      Make this node the organiser of a new market; CODE is an ISO 4217\n"
"      currency (default GBP).  Prints the market id.\n"
"  admit NODE_ID --name NAME [--role stall|relay|organiser]\n"
"        [--endpoint tcp://HOST:PORT]... [--json] [--qr]\n"
"      Organiser only: admit a node to the market and print its join token\n"
"      (with --qr also as a QR code; on stderr with --json).  Give the\n"
"      endpoints where this node can be reached (up to 8).\n"
"  join TOKEN\n"
"      Join the market of a join token made for this node.\n"
"  revoke NODE_ID [--json]\n"
"      Organiser only: revoke a node; its entries after the last one this\n"
"      node has seen are void.\n"
"  digest [--json]\n"
"      Print the digest of the state: equal on nodes that applied the same\n"
"      entries.\n"
"  verify [--json]\n"
"      Check the store: its pages, the links and signatures of every stored\n"
"      entry and (when no node runs on it) the state against the log.\n"
"  reindex [--json]\n"
"      Rebuild the state from the log (refused if an entry does not verify);\n"
"      prints the digest after.\n"
"  repair [--json]\n"
"      Rebuild a damaged store from what still verifies in it (the damaged\n"
"      copy is kept aside); the node's next run fetches the rest from its\n"
"      peers, its own entries first.\n"
"  log [--origin NODE_ID]\n"
"      Print the log as JSON lines: every origin's entries, or one's.\n"
"  backup [-o FILE] [--with-identity] [--passphrase-file FILE] [--json]\n"
"      A consistent, compacted copy of the store, taken while the node runs,\n"
"      in one checksummed file (default stallmesh-ID-TIME.smbackup here);\n"
"      --with-identity adds the node's key sealed with a passphrase (asked\n"
"      twice on the terminal, or the first line of FILE).\n"
"  restore FILE [--dir DIR] [--passphrase-file FILE] [--json]\n"
"      Put a backup into DIR, which must be new or empty; a damaged or\n"
"      altered file or a wrong passphrase changes nothing.  The restored\n"
"      node fetches what it sold after the copy from its peers at start.\n"
"  identity export [--qr] [--passphrase-file FILE] [--json]\n"
"      Print the node's key sealed with a passphrase, as text (and a QR\n"
"      code), for a paper copy.\n"
"  identity import TEXT|- [--passphrase-file FILE] [--json]\n"
"      Put a sealed key back into a data directory that has none.\n"
"  run [--http HOST:PORT] [--https HOST:PORT] [--listen tcp://HOST:PORT|none]\n"
"      [--advertise tcp://HOST:PORT|none] [--peer NODE_ID@tcp://HOST:PORT]...\n"
"      [--discover] [--allow-fresh] [--mirror] [--config FILE] [--log-level LEVEL]\n"
"      [--check]\n"
"      Run the node: the stock page (/), the till (/till), the JSON API\n"
"      (/api/...) and live updates (/ws) on HOST:PORT (default\n"
"      0.0.0.0:8080), and the mesh with the market's other nodes\n"
"      (listening on tcp://0.0.0.0:7400 by default; --peer repeats).\n"
"      --discover finds the market's nodes on the LAN by signed UDP\n"
"      beacons (port 7401; [mesh] discover_port, discover_addr).\n"
"      --https also serves them over TLS on HOST:PORT (a self-signed\n"
"      certificate made in DIR/tls/ on first use; its fingerprint printed).\n"
"      --allow-fresh appends even when this store may lack the node's own\n"
"      entries (use only on the newest copy).  --mirror runs a read-only\n"
"      mirror for a livestream (a member admitted with --role relay): it\n"
"      syncs the market, holds no units, answers writes 403 read_only and\n"
"      forwards viewers' holds to the stall with the units.  The config file (default\n"
"      DIR/stallmesh.conf) is INI; the command line overrides it.  --check\n"
"      validates and exits.  Stops cleanly on SIGTERM or SIGINT.\n"
"\n"
"Commands for the running node (through its JSON API; writes use the token\n"
"in DIR/api-token; with --json they print the node's JSON as it came):\n"
"  item add SKU --name NAME --price MINOR [--currency CODE] [--json]\n"
"      Add an item to the catalog, or change its name or price; MINOR is\n"
"      whole minor units (350 for 3.50).\n"
"  stock [--json]\n"
"      The stock as a table: sku, name, price, units here, in the market,\n"
"      held.\n"
"  stock add SKU QTY [--json]\n"
"      Add QTY units of SKU at this stall.\n"
"  stock adjust SKU QTY --reason TEXT [--json]\n"
"      Correct the units here by QTY, which may be negative (a stock-take).\n"
"  stock move SKU QTY --to NODE_ID [--json]\n"
"      Move QTY units of SKU from this stall to another member's stall.\n"
"  sell SKU[:QTY[:PRICE]]... [--source SOURCE] [--payment PAYMENT]\n"
"       [--external-id ID] [--hold HOLD_ID] [--json]\n"
"      Record a sale (QTY 1 and the catalog price unless given). SOURCE:\n"
"      in_person (default), livestream, online, preview. PAYMENT: card\n"
"      (default), cash, qr, offline_card, other. A repeated --external-id\n"
"      returns the first sale instead of selling twice.\n"
"  sell --hold HOLD_ID [--source SOURCE] [--payment PAYMENT] [--json]\n"
"      Sell every line of a hold, once (a second sale: hold_sold).\n"
"  return SALE_ID SKU[:QTY]... --reason TEXT [--json]\n"
"      Return units of a sale (QTY 1 unless given).\n"
"  hold SKU [QTY] [--at NODE_ID] [--json]\n"
"      Hold QTY (default 1) units for a while; prints the hold id and its\n"
"      pickup code.  --at: the units another stall holds, held there (its\n"
"      till sells with the id).\n"
"  hold SKU[:QTY]... [--device ID] [--json]\n"
"      Reserve several lines at once, all held or none (QTY 1 unless given).\n"
"      --device: the phone's id, which may then cancel it.\n"
"  hold --release HOLD_ID [--json]\n"
"      Release a hold.\n"
"  holds [--code CODE] [--json]\n"
"      This stall's open holds: code, id, time left, lines; --code finds one.\n"
"  sales [--since SEQ] [--limit N] [--json]\n"
"      This stall's sales, oldest first: after seq SEQ, at most N (100).\n"
"  status [--json]\n"
"      The node's id, state version and digest, and whether it is ready.\n"
"  peers [--json]\n"
"      The mesh peers as a table: node, name, endpoint, connected, last\n"
"      seen, entries behind.\n"
"  url [--qr] [--json]\n"
"      The stock page's address for shoppers' phones (this machine's LAN\n"
"      address when the node serves on every address), as the running\n"
"      node wrote it to DIR/stock-url; --qr also draws it as a QR code.\n"
"  report [--from DATE|TIME] [--to DATE|TIME] [--by LIST] [--tz ZONE]\n"
"         [--stall NODE_ID] [--json]\n"
"      The sales report (default: today, by stall): the totals, then a\n"
"      table for each of LIST, comma-separated: stall, item, hour, day,\n"
"      source, payment.  DATE is YYYY-MM-DD, a whole day in ZONE (an IANA\n"
"      name; default the node's [report] timezone); TIME is RFC 3339.\n"
"      A stall's node reports only its own stall.\n"
"  export sales|returns|items|inventory [--from DATE|TIME] [--to DATE|TIME]\n"
"         [--wide] [-o FILE]\n"
"      A CSV export (default: today), streamed to stdout, or to FILE\n"
"      (written whole, then renamed into place).  --wide: the inventory\n"
"      with a column a stall.\n"
"  drop create SKU QTY --starts TIME [--mode first_come|raffle]\n"
"       [--per-shopper N] [--closes TIME] [--pickup-minutes N] [--json]\n"
"      Drop QTY units this stall holds from TIME (RFC 3339): first-come, or\n"
"      a raffle whose entries close at --closes (a raffle when --closes is\n"
"      given).  Nothing of the sku here sells before then.\n"
"  drop list|show ID [--json]\n"
"      The market's drops (phase, units left, entries), or one.\n"
"  drop draw ID [--json]\n"
"      Draw a raffle of this stall after it closes; winners get holds.\n"
"  drop verify ID [--json]\n"
"      Recompute a raffle's draw from this node's store: exit 0 if it\n"
"      matches, 1 naming what does not.\n"
"  pair [--scope till|stock|admin] [--name NAME] [--json]\n"
"      A one-time code and QR code of https://HOST:PORT/pair#CODE that pairs\n"
"      a device with this node (valid 10 minutes; the node needs --https).\n"
"  devices [--json]\n"
"      The paired devices: id, scope, created, last used, name.\n"
"  devices revoke ID [--json]\n"
"      Revoke a device: its token fails from its next request.\n"
"\n"
"Run 'stallmesh COMMAND --help' for a command's usage line.\n"
"Exit status: 0 success, 1 failure (the message says what to do),\n"
"2 usage error.\n";

static const char s_usage[] = "[--dir DIR] [--node URL] COMMAND [ARGS...]";

typedef struct {
    const char *name;
    int (*run)(sm__cli *cli, int argc, char **argv);
} s_command;

static const s_command s_commands[] = {
    { "init", sm__cmd_init },
    { "market", sm__cmd_market },
    { "admit", sm__cmd_admit },
    { "join", sm__cmd_join },
    { "revoke", sm__cmd_revoke },
    { "digest", sm__cmd_digest },
    { "verify", sm__cmd_verify },
    { "reindex", sm__cmd_reindex },
    { "repair", sm__cmd_repair },
    { "log", sm__cmd_log },
    { "id", sm__cmd_id },
    { "run", sm__cmd_run },
    { "item", sm__cmd_item },
    { "stock", sm__cmd_stock },
    { "sell", sm__cmd_sell },
    { "return", sm__cmd_return },
    { "hold", sm__cmd_hold },
    { "holds", sm__cmd_holds },
    { "sales", sm__cmd_sales },
    { "status", sm__cmd_status },
    { "peers", sm__cmd_peers },
    { "url", sm__cmd_url },
    { "backup", sm__cmd_backup },
    { "restore", sm__cmd_restore },
    { "identity", sm__cmd_identity },
    { "report", sm__cmd_report },
    { "export", sm__cmd_export },
    { "drop", sm__cmd_drop },
    { "pair", sm__cmd_pair },
    { "devices", sm__cmd_devices },
};

/*  Fill cli->dir from --dir, $STALLMESH_DIR or $HOME.  False (with an error
    printed) if none gives a usable path.                                     */
static bool
s_resolve_dir(sm__cli *cli, const char *option)
{
    const char *env = getenv(SM__DIR_ENV);
    const char *home = getenv("HOME");
    int n;
    if (option != NULL)
        n = snprintf(cli->dir, sizeof cli->dir, "%s", option);
    else if (env != NULL && env[0] != '\0')
        n = snprintf(cli->dir, sizeof cli->dir, "%s", env);
    else if (home != NULL && home[0] != '\0')
        n = snprintf(cli->dir, sizeof cli->dir, "%s/%s", home, SM__DIR_HOME);
    else {
        sm__cli_error("no data directory: HOME is not set; pass --dir DIR or set "
                      SM__DIR_ENV);
        return false;
    }
    if (n <= 0 || (size_t)n >= sizeof cli->dir) {
        sm__cli_error("the data directory path is %s: pass a shorter --dir",
                      n <= 0 ? "empty" : "too long");
        return false;
    }
    /* "DIR/" and "DIR" are the same directory; keep paths tidy. */
    size_t len = (size_t)n;
    while (len > 1 && cli->dir[len - 1] == '/')
        cli->dir[--len] = '\0';
    return true;
}

int
main(int argc, char **argv)
{
    enum { OPT_DIR = 0x100, OPT_VERSION, OPT_NODE };
    static const struct option opts[] = {
        { "dir", required_argument, NULL, OPT_DIR },
        { "node", required_argument, NULL, OPT_NODE },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = NULL;
    sm__cli cli;

    memset(&cli, 0, sizeof cli);
    opterr = 0;
    for (;;) {
        /* "+": stop at the command; its options are its own. */
        int opt = getopt_long(argc, argv, "+:h", opts, NULL);
        if (opt == -1)
            break;
        switch (opt) {
        case OPT_DIR:
            dir = optarg;
            break;
        case OPT_NODE:
            cli.node = optarg;     /* checked by the commands that use it */
            break;
        case 'h':
            fputs(s_help, stdout);
            return SM__EXIT_OK;
        case OPT_VERSION:
            puts("stallmesh " SM__VERSION);
            return SM__EXIT_OK;
        case ':':
            return sm__cli_usage_error(s_usage, "option '%s' needs a value",
                                       argv[optind - 1]);
        default:
            if (optopt != 0)
                return sm__cli_usage_error(s_usage, "unknown option '-%c'", optopt);
            return sm__cli_usage_error(s_usage, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return sm__cli_usage_error(s_usage, "no command given");

    const char *name = argv[optind];
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++) {
        if (strcmp(name, s_commands[i].name) != 0)
            continue;
        if (!s_resolve_dir(&cli, dir))
            return SM__EXIT_FAIL;
        int status = s_commands[i].run(&cli, argc - optind, argv + optind);
        if (fflush(stdout) != 0) {
            sm__cli_error("cannot write to standard output (closed pipe or full disk?)");
            return SM__EXIT_FAIL;
        }
        return status;
    }
    return sm__cli_usage_error(s_usage, "unknown command '%s'", name);
}
