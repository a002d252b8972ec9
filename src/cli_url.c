/*  The stock page's address for shoppers, and `stallmesh url`.

    A node listening on every address (0.0.0.0, the default) is reached by
    phones at this machine's LAN address, not at 127.0.0.1: the URL shown
    (and drawn as a QR code by `run` and `url --qr`) uses the first IPv4
    address of an interface that is up, not loopback, preferring private
    ranges (10/8, 172.16/12, 192.168/16: the market's Wi-Fi) over others.
    A node listening on one address is reached there.

    `run` writes the URL to DIR/stock-url when it starts; `url` prints it,
    so deploy/install.sh can show the page of the service it just started. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "stallmesh/error.h"

static const char s_url_usage[] = "url [--qr] [--json]";

/*  True for 10/8, 172.16/12, 192.168/16 (a host-order address).            */
static bool
s_private(uint32_t a)
{
    return (a >> 24) == 10 || (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8;
}

/*  The LAN IPv4 address as text into out[INET_ADDRSTRLEN]; false if this
    machine has none (no network yet: a stall alone in a field).             */
static bool
s_lan_address(char out[INET_ADDRSTRLEN])
{
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0)
        return false;
    int best = 0;                      /* 2 private, 1 other */
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET
            || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        const struct sockaddr_in *sin = (const struct sockaddr_in *) i->ifa_addr;
        int rank = s_private(ntohl(sin->sin_addr.s_addr)) ? 2 : 1;
        if (rank > best && inet_ntop(AF_INET, &sin->sin_addr, out, INET_ADDRSTRLEN)) {
            best = rank;
        }
    }
    freeifaddrs(ifs);
    return best > 0;
}

bool
sm__cli_stock_url(const char *host, int port, char *out, size_t cap)
{
    char lan[INET_ADDRSTRLEN];
    bool any = host[0] == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
    bool reachable = true;
    if (any && s_lan_address(lan)) {
        host = lan;
    } else if (any) {
        host = "127.0.0.1";
        reachable = false;
    } else if (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0
               || strcmp(host, "localhost") == 0) {
        reachable = false;
    }
    bool v6 = strchr(host, ':') != NULL;
    snprintf(out, cap, "http://%s%s%s:%d/", v6 ? "[" : "", host, v6 ? "]" : "", port);
    return reachable;
}

/*  url's option handler: --qr.                                              */
static int
s_url_opt(int opt, const char *arg, void *ctx)
{
    (void) arg;
    if (opt != 'q')
        return SM__EXIT_USAGE;
    *(bool *) ctx = true;
    return 0;
}

int
sm__cmd_url(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "qr", no_argument, NULL, 'q' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false, qr = false;
    int status = SM__EXIT_OK, first = 0;
    if (!sm__cli_parse(argc, argv, s_url_usage, opts, "", s_url_opt, &qr, &json,
                       &first, &status))
        return status;
    if (first < argc)
        return sm__cli_usage_error(s_url_usage, "unexpected argument '%s'", argv[first]);
    char path[PATH_MAX], url[512];
    if (!sm__cli_path(cli, SM__STOCK_URL_FILE, path))
        return SM__EXIT_FAIL;
    FILE *f = fopen(path, "r");
    if (!f) {
        sm__cli_error("cannot read %s: %s (the node writes it when 'stallmesh run' "
                      "starts: is it running?)", path, strerror(errno));
        return SM__EXIT_FAIL;
    }
    bool got = fgets(url, sizeof url, f) != NULL;
    fclose(f);
    size_t n = got ? strcspn(url, "\r\n") : 0;
    url[n] = 0;
    if (n < 8 || strncmp(url, "http://", 7) != 0) {
        sm__cli_error("%s does not hold a URL: start the node again ('stallmesh run')", path);
        return SM__EXIT_FAIL;
    }
    if (json) {
        sm__json *o = sm__json_object();
        sm__json_set_str(o, "url", url);
        if (sm__json_print(&o) != 0)
            return SM__EXIT_FAIL;
    } else {
        printf("%s\n", url);
    }
    if (qr) {
        fflush(stdout);
        if (sm__qr_print(url, json ? stderr : stdout) != 0) {
            sm__cli_error("cannot draw the QR code: out of memory");
            return SM__EXIT_FAIL;
        }
    }
    return SM__EXIT_OK;
}

void
sm__cli_node_name(const sm__cli *cli, char out[SM_NAME_BYTES_MAX + 1])
{
    char path[PATH_MAX];
    out[0] = 0;
    if (!sm__cli_path(cli, SM__NAME_FILE, path))
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(out, SM_NAME_BYTES_MAX + 1, f))
        out[0] = 0;
    fclose(f);
    out[strcspn(out, "\n")] = 0;
}
