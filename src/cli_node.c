/*  `stallmesh init`: make a node in a data directory.

    The identity file is the commit point: a directory is a node if and only
    if DIR/identity exists.  So init refuses at once if it exists, then makes
    the store, the API token and the name file, and writes the identity last
    with O_EXCL (sm_identity_save).  An init that fails half-way leaves no
    identity, and running it again finishes the job.  A store that already
    holds a market while the identity is missing means the identity was lost
    or moved: init refuses rather than pair that market's data with a new
    key.                                                                      */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "stallmesh/error.h"

static const char s_init_usage[] = "init [--name NAME] [--json]";

enum { OPT_NAME = 'n' };

/*  init's option handler (sm__cli_opt_fn): --name, checked.               */
static int
s_init_opt(int opt, const char *arg, void *ctx)
{
    const char **name = ctx;
    if (opt == OPT_NAME) {
        if (!sm__cli_text_ok(arg, SM_NAME_BYTES_MAX))
            return sm__cli_usage_error(s_init_usage,
                "invalid --name: give 1 to %u bytes of UTF-8 text without control "
                "characters", SM_NAME_BYTES_MAX);
        *name = arg;
    }
    return 0;
}

/*  Write the API token (32 random bytes as hex, mode 0600) to `path`.        */
static int
s_write_api_token(const char *path)
{
    uint8_t raw[SM__API_TOKEN_BYTES];
    char text[2 * SM__API_TOKEN_BYTES + 2];
    sm_random_bytes(raw, sizeof raw);
    sm_hex_encode(raw, sizeof raw, text);
    strcat(text, "\n");
    int rc = sm__cli_write_file(path, text, 0600);
    int saved = errno;
    memset(raw, 0, sizeof raw);
    memset(text, 0, sizeof text);
    errno = saved;
    return rc;
}

int
sm__cmd_init(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, OPT_NAME },
        { NULL, 0, NULL, 0 },
    };
    const char *name = NULL;
    bool json = false;
    int first = 0, status = SM__EXIT_FAIL;
    char id_path[PATH_MAX], token_path[PATH_MAX], name_path[PATH_MAX];
    sm_identity id;
    sm_ledger *ledger = NULL;
    struct stat st;

    memset(&id, 0, sizeof id);
    if (!sm__cli_parse(argc, argv, s_init_usage, opts, "n:", s_init_opt, &name,
                       &json, &first, &status))
        return status;
    if (first < argc)
        return sm__cli_usage_error(s_init_usage, "unexpected argument '%s'", argv[first]);
    status = SM__EXIT_FAIL;
    if (!sm__cli_path(cli, SM__IDENTITY_FILE, id_path)
        || !sm__cli_path(cli, SM__API_TOKEN_FILE, token_path)
        || !sm__cli_path(cli, SM__NAME_FILE, name_path))
        return SM__EXIT_FAIL;

    if (lstat(id_path, &st) == 0) {
        sm__cli_error("%s already exists: this data directory already has a node. "
                      "init never replaces an identity; to make another node, use "
                      "another --dir", id_path);
        return SM__EXIT_FAIL;
    }
    if (errno != ENOENT) {
        sm__cli_error("cannot look for %s: %s; check the data directory or use "
                      "another --dir", id_path, strerror(errno));
        return SM__EXIT_FAIL;
    }
    if (sm__cli_mkdirs(cli->dir) != 0) {
        sm__cli_error("cannot create the data directory %s: %s; choose another with "
                      "--dir", cli->dir, strerror(errno));
        return SM__EXIT_FAIL;
    }
    if (sm_identity_generate(&id) != 0) {
        sm__cli_error("cannot make a key pair: no usable random source (check "
                      "/dev/urandom)");
        goto fail;
    }
    if (sm__cli_open_ledger(cli, NULL, false, &ledger) != SM__EXIT_OK)
        goto fail;
    sm_market market;
    int rc = sm_ledger_market(ledger, &market);
    if (rc != SM_ENOMARKET) {
        char hex[SM_ID_HEX_BYTES + 1];
        if (rc == 0) {
            sm_id_format(&market.market, hex);
            sm__cli_error("the store in %s/%s holds market %s but %s is missing: "
                          "restore the identity from a backup, or use another --dir "
                          "for a new node", cli->dir, SM__STORE_DIR, hex, id_path);
        } else {
            sm__cli_error("cannot read the store in %s/%s: %s", cli->dir,
                          SM__STORE_DIR, sm_strerror(rc));
        }
        goto fail;
    }
    /* A new identity has no entries anywhere: its (empty) log is whole. */
    if ((rc = sm_ledger_confirm_own(ledger)) != 0) {
        sm__cli_error("cannot write the store in %s/%s: %s", cli->dir, SM__STORE_DIR,
                      sm_strerror(rc));
        goto fail;
    }
    sm_ledger_destroy(&ledger);

    if (s_write_api_token(token_path) != 0) {
        sm__cli_error("cannot write %s: %s", token_path, strerror(errno));
        goto fail;
    }
    if (name != NULL) {
        char text[SM_NAME_BYTES_MAX + 2];
        snprintf(text, sizeof text, "%s\n", name);
        if (sm__cli_write_file(name_path, text, 0644) != 0) {
            sm__cli_error("cannot write %s: %s", name_path, strerror(errno));
            goto fail;
        }
    }
    rc = sm_identity_save(&id, id_path);
    if (rc == SM_EEXIST) {
        sm__cli_error("%s appeared while init was running (another init?): "
                      "keeping it; this data directory already has a node", id_path);
        goto fail;
    }
    if (rc != 0) {
        sm__cli_error("cannot write %s: check that %s is writable and the disk is "
                      "not full, then run init again", id_path, cli->dir);
        goto fail;
    }

    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&id.pub, hex);
    if (json) {
        sm__json *out = sm__json_object();
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

static const char s_id_usage[] = "id [--json]";

/*  `id`: who this node is and which market it belongs to.  Reads only.     */
int
sm__cmd_id(sm__cli *cli, int argc, char **argv)
{
    bool json = false;
    int status = SM__EXIT_FAIL, first = 0;
    sm_identity id;
    sm_ledger *ledger = NULL;
    sm_market market;

    if (!sm__cli_parse(argc, argv, s_id_usage, NULL, "", NULL, NULL, &json,
                       &first, &status))
        return status;
    if (first < argc)
        return sm__cli_usage_error(s_id_usage, "unexpected argument '%s'", argv[first]);
    if ((status = sm__cli_load_identity(cli, &id)) != SM__EXIT_OK)
        return status;
    status = sm__cli_open_ledger(cli, NULL, true, &ledger);
    if (status != SM__EXIT_OK)
        goto done;
    int rc = sm_ledger_market(ledger, &market);
    if (rc != 0 && rc != SM_ENOMARKET) {
        sm__cli_error("cannot read the market: %s", sm_strerror(rc));
        status = SM__EXIT_FAIL;
        goto done;
    }
    char node_hex[SM_ID_HEX_BYTES + 1], market_hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&id.pub, node_hex);
    if (rc == 0)
        sm_id_format(&market.market, market_hex);
    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_str(out, "node", node_hex);
        if (rc == 0) {
            sm__json_set_str(out, "market", market_hex);
            sm__json_set_str(out, "market_name", market.name);
            sm__json_set_str(out, "currency", market.currency);
            sm__json_set_bool(out, "organiser",
                              memcmp(market.market.b, id.pub.b, SM_KEY_BYTES) == 0);
        }
        status = sm__json_print(&out) == 0 ? SM__EXIT_OK : SM__EXIT_FAIL;
    } else {
        printf("node    %s\n", node_hex);
        if (rc == 0)
            printf("market  %s  %s (%s)%s\n", market_hex, market.name, market.currency,
                   memcmp(market.market.b, id.pub.b, SM_KEY_BYTES) == 0
                   ? ", organiser" : "");
        else
            printf("market  none: run 'stallmesh market create' or 'stallmesh join'\n");
        status = SM__EXIT_OK;
    }
done:
    sm_ledger_destroy(&ledger);
    sm_identity_wipe(&id);
    return status;
}
