/*  `stallmesh pair` and `stallmesh devices`: pairing a till or stock device
    with the running node, listing and revoking devices (README "Security").
    They talk to the node's JSON API with the admin token (DIR/api-token),
    as the other running-node commands do: POST /api/pair/codes, GET
    /api/devices, DELETE /api/devices/ID.  Node address: --node URL, else
    the global --node, else $STALLMESH_NODE, else DIR/http, else
    http://127.0.0.1:8080.                                                    */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "auth.h"
#include "cli.h"
#include "stallmesh/limits.h"

static const char s_pair_usage[] =
    "pair [--scope till|stock|admin] [--name NAME] [--json]";
static const char s_devices_usage[] = "devices [--json] | devices revoke ID [--json]";

typedef struct {
    const char *scope;
    const char *name;
    const char *node;
} s_opts;

static int
s_on_opt(int opt, const char *arg, void *ctx)
{
    s_opts *o = ctx;
    switch (opt) {
    case 's': o->scope = arg; return 0;
    case 'n': o->name = arg; return 0;
    case 'N': o->node = arg; return 0;
    default: return SM__EXIT_USAGE;
    }
}

/*  The first line of `path` into buf (no newline): 0 or an errno.          */
static int
s_read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errno;
    bool ok = fgets(buf, (int) cap, f) != NULL;
    fclose(f);
    if (!ok)
        return EINVAL;
    buf[strcspn(buf, "\r\n")] = 0;
    return 0;
}

/*  The node's base URL and the admin token; SM__EXIT_* with a message.     */
static int
s_target(const sm__cli *cli, const s_opts *o, char *base, size_t cap, char *token,
         size_t tcap)
{
    const char *given = o->node ? o->node : cli->node;
    if (!given)
        given = getenv(SM__NODE_ENV);
    char path[PATH_MAX];
    if (given && given[0]) {
        snprintf(base, cap, "%s", given);
    } else {
        if (!sm__cli_path(cli, SM__HTTP_FILE, path))
            return SM__EXIT_FAIL;
        if (s_read_line(path, base, cap) != 0)
            snprintf(base, cap, "%s", SM__NODE_DEFAULT);
    }
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        base[--n] = 0;
    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return sm__cli_usage_error(s_pair_usage, "invalid node address '%s': give "
                                   "http://HOST:PORT", base);
    if (!sm__cli_path(cli, SM__API_TOKEN_FILE, path))
        return SM__EXIT_FAIL;
    int rc = s_read_line(path, token, tcap);
    if (rc != 0 || strlen(token) != 2 * SM__API_TOKEN_BYTES) {
        sm__cli_error("cannot read the admin token %s (%s): run this with the node's "
                      "data directory (--dir)", path, rc ? strerror(rc) : "not a token");
        return SM__EXIT_FAIL;
    }
    return SM__EXIT_OK;
}

/*  One request; the answer parsed into *doc.  On a refusal prints
    "stallmesh: ERROR: DETAIL" (and with --json the error document on
    stdout) and returns SM__EXIT_FAIL.                                       */
static int
s_call(sm__http_method method, const char *url, const char *token, const char *body,
       bool json, sm__json **doc)
{
    sm__http_resp resp;
    memset(&resp, 0, sizeof resp);
    *doc = NULL;
    int rc = sm__http_request(method, url, token, body, &resp);
    if (rc != 0) {
        sm__cli_error("%s%s", resp.error, resp.unreachable
                      ? " (is the node running? start it with 'stallmesh run')" : "");
        return SM__EXIT_FAIL;
    }
    *doc = sm__json_parse(resp.body ? resp.body : "", resp.body_len);
    if (resp.status >= 300) {
        const char *err = sm__json_get_str(*doc, "error");
        const char *detail = sm__json_get_str(*doc, "detail");
        sm__cli_error("%s: %s", err ? err : "error", detail ? detail : "the node refused");
        if (json && resp.body)
            printf("%s\n", resp.body);
        sm__json_destroy(doc);
        sm__http_resp_clear(&resp);
        return SM__EXIT_FAIL;
    }
    if (json && resp.body)
        printf("%s\n", resp.body);
    sm__http_resp_clear(&resp);
    if (!*doc) {
        sm__cli_error("the node's answer is not JSON");
        return SM__EXIT_FAIL;
    }
    return SM__EXIT_OK;
}

int
sm__cmd_pair(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "scope", required_argument, NULL, 's' },
        { "name", required_argument, NULL, 'n' },
        { "node", required_argument, NULL, 'N' },
        { NULL, 0, NULL, 0 },
    };
    s_opts o = { .scope = "till" };
    bool json = false;
    int status = SM__EXIT_OK, first = 0;
    if (!sm__cli_parse(argc, argv, s_pair_usage, opts, "", s_on_opt, &o, &json, &first,
                       &status))
        return status;
    if (first < argc)
        return sm__cli_usage_error(s_pair_usage, "unexpected argument '%s'", argv[first]);
    if (sm_scope_parse(o.scope) == SM_SCOPE_NONE)
        return sm__cli_usage_error(s_pair_usage, "--scope must be till, stock or admin");
    if (o.name && !sm__cli_text_ok(o.name, SM_DEVICE_NAME_BYTES_MAX))
        return sm__cli_usage_error(s_pair_usage, "--name must be 1 to %u bytes of text",
                                   SM_DEVICE_NAME_BYTES_MAX);
    char base[SM_CLI_URL_BYTES_MAX + 1], token[128], url[SM_CLI_URL_BYTES_MAX + 64];
    if ((status = s_target(cli, &o, base, sizeof base, token, sizeof token)) != SM__EXIT_OK)
        return status;
    sm__json *req = sm__json_object();
    sm__json_set_str(req, "scope", o.scope);
    if (o.name)
        sm__json_set_str(req, "name", o.name);
    char *body = sm__json_dump(req);
    sm__json_destroy(&req);
    if (!body) {
        sm__cli_error("out of memory");
        return SM__EXIT_FAIL;
    }
    snprintf(url, sizeof url, "%s/api/pair/codes", base);
    sm__json *doc = NULL;
    status = s_call(SM__HTTP_POST, url, token, body, json, &doc);
    free(body);
    memset(token, 0, sizeof token);
    if (status != SM__EXIT_OK || json) {
        sm__json_destroy(&doc);
        return status;
    }
    const char *code = sm__json_get_str(doc, "code");
    const char *link = sm__json_get_str(doc, "url");
    const char *expires = sm__json_get_str(doc, "expires");
    printf("pairing code %s for a %s device, valid once until %s\n"
           "open on the device: %s\n", code ? code : "?", o.scope,
           expires ? expires : "?", link ? link : "?");
    if (link && sm__qr_print(link, stdout) != 0)
        sm__cli_error("cannot draw the QR code; type the link instead");
    sm__json_destroy(&doc);
    return SM__EXIT_OK;
}

static void
s_cell(const char *s, int width)
{
    printf("%-*s  ", width, s ? s : "-");
}

int
sm__cmd_devices(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "node", required_argument, NULL, 'N' },
        { NULL, 0, NULL, 0 },
    };
    s_opts o = { 0 };
    bool json = false;
    int status = SM__EXIT_OK, first = 0;
    if (!sm__cli_parse(argc, argv, s_devices_usage, opts, "", s_on_opt, &o, &json,
                       &first, &status))
        return status;
    bool revoke = first < argc && strcmp(argv[first], "revoke") == 0;
    if (revoke ? argc - first != 2 : first < argc)
        return sm__cli_usage_error(s_devices_usage, revoke ? "revoke takes one device ID"
                                   : "unexpected argument '%s'", argv[first]);
    const char *id = revoke ? argv[first + 1] : NULL;
    if (id && (strlen(id) != SM_AUTH_ID_HEX || strspn(id, "0123456789abcdef") != SM_AUTH_ID_HEX))
        return sm__cli_usage_error(s_devices_usage, "a device ID is %u hex digits, as "
                                   "'stallmesh devices' lists them", SM_AUTH_ID_HEX);
    char base[SM_CLI_URL_BYTES_MAX + 1], token[128], url[SM_CLI_URL_BYTES_MAX + 64];
    if ((status = s_target(cli, &o, base, sizeof base, token, sizeof token)) != SM__EXIT_OK)
        return status;
    sm__json *doc = NULL;
    if (revoke) {
        snprintf(url, sizeof url, "%s/api/devices/%s", base, id);
        status = s_call(SM__HTTP_DELETE, url, token, NULL, json, &doc);
        if (status == SM__EXIT_OK && !json)
            printf("revoked device %s: its token no longer works\n", id);
    } else {
        snprintf(url, sizeof url, "%s/api/devices", base);
        status = s_call(SM__HTTP_GET, url, token, NULL, json, &doc);
        if (status == SM__EXIT_OK && !json) {
            const sm__json *list = sm__json_get(doc, "devices");
            size_t n = sm__json_size(list);
            if (n == 0)
                printf("no paired devices (pair one with 'stallmesh pair')\n");
            else {
                s_cell("ID", 16), s_cell("SCOPE", 5), s_cell("CREATED", 24);
                s_cell("LAST USED", 24), printf("NAME\n");
            }
            for (size_t i = 0; i < n; i++) {
                const sm__json *d = sm__json_at(list, i);
                s_cell(sm__json_get_str(d, "id"), 16);
                s_cell(sm__json_get_str(d, "scope"), 5);
                s_cell(sm__json_get_str(d, "created"), 24);
                s_cell(sm__json_get_str(d, "last_used"), 24);
                printf("%s\n", sm__json_get_str(d, "name") ? sm__json_get_str(d, "name") : "");
            }
        }
    }
    memset(token, 0, sizeof token);
    sm__json_destroy(&doc);
    return status;
}
