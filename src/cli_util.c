/*  What the CLI's commands share (see cli.h): option parsing on top of
    getopt_long, the data directory and its files, loading the identity and
    opening the ledger with messages that say what to do, the clock, and the
    validators for names, currencies and endpoints typed on a command line.

    Data directory layout (README: security; secrets never leave it, files
    holding them are mode 0600):

        DIR/            0700, created by `init` with any missing parents
        DIR/identity    0600, the node's secret seed (src/identity.c)
        DIR/api-token   0600, 32 random bytes as hex: the local API's bearer
        DIR/name        0644, the node's display name, if one was given
        DIR/store/      0700, the LMDB environment (src/store.c)           */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "integrity.h"
#include "stallmesh/error.h"
#include "store.h"

#define SM__CLI_OPTS_MAX 16

/* Long-only option values, out of the range of short option letters. */
enum { SM__OPT_JSON = 0x100, SM__OPT_HELP = 'h' };

void
sm__cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("stallmesh: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int
sm__cli_usage_error(const char *usage, const char *problem, ...)
{
    if (problem != NULL) {
        va_list ap;
        va_start(ap, problem);
        fputs("stallmesh: ", stderr);
        vfprintf(stderr, problem, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    fprintf(stderr, "usage: stallmesh %s\n", usage);
    fputs("Run 'stallmesh --help' for all commands and options.\n", stderr);
    return SM__EXIT_USAGE;
}

bool
sm__cli_parse(int argc, char **argv, const char *usage,
              const struct option *opts, const char *shortopts,
              sm__cli_opt_fn on_opt, void *ctx, bool *json,
              int *first_arg, int *status)
{
    struct option all[SM__CLI_OPTS_MAX + 3];
    char shorts[2 * SM__CLI_OPTS_MAX + 4];
    size_t n = 0;

    assert(argc >= 1 && usage != NULL && first_arg != NULL && status != NULL);
    for (; opts != NULL && opts[n].name != NULL; n++) {
        assert(n < SM__CLI_OPTS_MAX);
        all[n] = opts[n];
    }
    if (json != NULL) {
        *json = false;
        all[n++] = (struct option){ "json", no_argument, NULL, SM__OPT_JSON };
    }
    all[n++] = (struct option){ "help", no_argument, NULL, SM__OPT_HELP };
    all[n] = (struct option){ NULL, 0, NULL, 0 };
    int len = snprintf(shorts, sizeof shorts, ":%sh", shortopts ? shortopts : "");
    assert(len > 0 && (size_t)len < sizeof shorts);
    (void)len;

    optind = 0;                /* GNU: start afresh on this argv */
    opterr = 0;                /* we say what was wrong ourselves */
    for (;;) {
        int opt = getopt_long(argc, argv, shorts, all, NULL);
        if (opt == -1)
            break;
        if (opt == SM__OPT_HELP) {
            printf("usage: stallmesh %s\n", usage);
            *status = SM__EXIT_OK;
            return false;
        }
        if (opt == SM__OPT_JSON && json != NULL) {
            *json = true;
            continue;
        }
        if (opt == '?') {
            *status = optopt != 0
                ? sm__cli_usage_error(usage, "unknown option '-%c'", optopt)
                : sm__cli_usage_error(usage, "unknown option '%s'", argv[optind - 1]);
            return false;
        }
        if (opt == ':') {
            *status = sm__cli_usage_error(usage, "option '%s' needs a value",
                                          argv[optind - 1]);
            return false;
        }
        assert(on_opt != NULL);
        int rc = on_opt(opt, optarg, ctx);
        if (rc != 0) {
            *status = rc;
            return false;
        }
    }
    *first_arg = optind;
    return true;
}

bool
sm__cli_path(const sm__cli *cli, const char *name, char out[PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/%s", cli->dir, name);
    if (n < 0 || n >= PATH_MAX) {
        sm__cli_error("the data directory path '%s' is too long: choose a shorter --dir",
                      cli->dir);
        return false;
    }
    return true;
}

int
sm__cli_mkdirs(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, len + 1);
    /* Each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -1;
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int
sm__cli_write_file(const char *path, const char *text, unsigned mode)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || n >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return -1;
    size_t len = strlen(text), done = 0;
    if (fchmod(fd, (mode_t)mode) != 0)
        goto fail;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    return 0;

fail:;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = saved;
    return -1;
}

int
sm__cli_load_identity(const sm__cli *cli, sm_identity *id)
{
    char path[PATH_MAX];
    if (!sm__cli_path(cli, SM__IDENTITY_FILE, path))
        return SM__EXIT_FAIL;
    if (sm_crypto_init() != 0) {
        sm__cli_error("cannot initialise libsodium (no usable random source?): "
                      "check that /dev/urandom is readable");
        return SM__EXIT_FAIL;
    }
    int rc = sm_identity_load(id, path);
    if (rc == 0)
        return SM__EXIT_OK;

    struct stat st;
    if (rc == SM_ENOIDENT) {
        sm__cli_error("no node in %s (%s does not exist): run 'stallmesh init' to "
                      "create one, or use --dir or STALLMESH_DIR to pick another "
                      "data directory", cli->dir, path);
    } else if (rc == SM_ECORRUPT && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        sm__cli_error("%s is not a regular file: it should be the node's identity "
                      "file; restore it from a backup", path);
    } else if (rc == SM_ECORRUPT && stat(path, &st) == 0 && (st.st_mode & 077) != 0) {
        sm__cli_error("%s can be read or written by other users (mode %04o), so "
                      "the node's secret key may have leaked. If nobody else could "
                      "have read it, run 'chmod 600 %s'; otherwise make a new node "
                      "with 'stallmesh init' and have the organiser revoke this one",
                      path, (unsigned)(st.st_mode & 07777), path);
    } else if (rc == SM_ECORRUPT) {
        sm__cli_error("%s is not a valid identity file (it should hold 64 hex "
                      "digits and a newline): restore it from a backup", path);
    } else {
        sm__cli_error("cannot read %s: check that it and %s are readable by this "
                      "user", path, cli->dir);
    }
    return SM__EXIT_FAIL;
}

/*  The directory lock, taken by the first writable open and held until the
    process exits (the kernel drops it then, however the process ends).     */
static sm_dirlock *s_dirlock;

int
sm__cli_lock_dir(const sm__cli *cli)
{
    if (s_dirlock)
        return SM__EXIT_OK;
    pid_t holder = 0;
    int err = 0;
    s_dirlock = sm_dirlock_take(cli->dir, &holder, &err);
    if (s_dirlock)
        return SM__EXIT_OK;
    if (err == SM_ELOCKED && holder > 0)
        sm__cli_error("another stallmesh process (pid %ld) is using %s: stop it first "
                      "(a running node holds its data directory; commands that only "
                      "read, such as verify, digest and log, work beside it)",
                      (long) holder, cli->dir);
    else if (err == SM_ELOCKED)
        sm__cli_error("another stallmesh process is using %s: stop it first", cli->dir);
    else
        sm__cli_error("cannot lock %s/run.lock: %s", cli->dir, sm_strerror(err));
    return SM__EXIT_FAIL;
}

/*  A store written by a newer binary: not damage, named with both versions. */
void
sm__cli_newer_store(const char *path, uint32_t format)
{
    sm__cli_error("the store in %s is format %u, written by a newer stallmesh; this "
                  "stallmesh (%s) reads formats up to %u: run the newer one (a store "
                  "is never downgraded)", path, (unsigned) format, SM__VERSION,
                  (unsigned) SM_STORE_FORMAT);
}

int
sm__cli_check_store(const sm__cli *cli, unsigned flags, bool writable,
                    sm_check_report *report)
{
    char path[PATH_MAX];
    if (!sm__cli_path(cli, SM__STORE_DIR, path))
        return SM__EXIT_FAIL;
    int rc = sm_integrity_check(path, flags, writable, report);
    if (rc == 0 || (rc == SM_EDEGRADED && (flags & SM_CHECK_ALL_ORIGINS)))
        return SM__EXIT_OK;
    uint32_t format = 0;
    if (rc == SM_ESTORENEWER && sm_store_format_of(path, &format) == 0) {
        sm__cli_newer_store(path, format);
        return SM__EXIT_FAIL;
    }
    char where[SM_ID_HEX_BYTES + 48] = "";
    if (report->seq > 0) {
        char hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(&report->origin, hex);
        snprintf(where, sizeof where, "origin %s seq %llu: ", hex,
                 (unsigned long long) report->seq);
    }
    sm__cli_error("the store in %s is damaged (%s): %s%s.", path, sm_errname(rc), where,
                  report->what);
    if (rc == SM_ESTATEDIFF)
        sm__cli_error("its log verifies: run 'stallmesh reindex' to rebuild the state "
                      "from it (or 'stallmesh repair')");
    else if (rc == SM_ENOMEM || rc == SM_EIO)
        sm__cli_error("%s", sm_strerror(rc));
    else
        sm__cli_error("run 'stallmesh repair' to rebuild it from what verifies and from "
                      "its peers (see README, Damaged stores), or restore %s from a backup",
                      cli->dir);
    return SM__EXIT_FAIL;
}

int
sm__cli_open_ledger(const sm__cli *cli, const sm_identity *id, bool read_only,
                    sm_ledger **out)
{
    char path[PATH_MAX];
    if (!sm__cli_path(cli, SM__STORE_DIR, path))
        return SM__EXIT_FAIL;
    if (!read_only && sm__cli_lock_dir(cli) != SM__EXIT_OK)
        return SM__EXIT_FAIL;
    sm_ledger_opts opts = { .read_only = read_only };
    int err = 0;
    sm_ledger *ledger = sm_ledger_open(path, &opts, &err);
    if (ledger == NULL) {
        uint32_t format = 0;
        if (err == SM_ENOTFOUND)
            sm__cli_error("no store in %s: run 'stallmesh init' first, or use --dir "
                          "or STALLMESH_DIR to pick another data directory", path);
        else if (err == SM_ETRUNCATED || err == SM_EMETA) {
            char what[256] = "";
            sm__store_file_check(path, what, sizeof what);
            sm__cli_error("cannot open the store: %s: %s", what[0] ? what : path,
                          sm_strerror(err));
        } else if (err == SM_ESTORENEWER && sm_store_format_of(path, &format) == 0)
            sm__cli_newer_store(path, format);
        else
            sm__cli_error("cannot open the store in %s: %s", path, sm_strerror(err));
        return SM__EXIT_FAIL;
    }
    if (id != NULL)
        sm_ledger_set_identity(ledger, id);
    *out = ledger;
    return SM__EXIT_OK;
}

int
sm__cli_open_ledger_beside(const sm__cli *cli, const sm_identity *id, sm_ledger **out)
{
    char path[PATH_MAX];
    if (!sm__cli_path(cli, SM__STORE_DIR, path))
        return SM__EXIT_FAIL;
    sm_ledger_opts opts = { 0 };
    int err = 0;
    sm_ledger *ledger = sm_ledger_open(path, &opts, &err);
    if (ledger == NULL) {
        sm__cli_error("cannot open the store in %s: %s", path, sm_strerror(err));
        return SM__EXIT_FAIL;
    }
    if (id != NULL)
        sm_ledger_set_identity(ledger, id);
    *out = ledger;
    return SM__EXIT_OK;
}

uint64_t
sm__cli_now_ms(void)
{
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    assert(rc == 0);
    (void)rc;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*  Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one:
    overlong forms, surrogates and values above U+10FFFF are refused.        */
static size_t
s_utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned min, v;
    if ((c & 0xe0) == 0xc0) { n = 2; v = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { n = 3; v = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { n = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    return n;
}

bool
sm__cli_text_ok(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        size_t n = s_utf8_len(p);
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

bool
sm__cli_currency_ok(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return s[3] == '\0';
}

static bool
s_is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*  A DNS name or IPv4 address: labels of letters, digits and inner hyphens,
    1..63 bytes each, separated by single dots.                               */
static bool
s_host_ok(const char *host, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        if (c == '.') {
            if (label == 0 || host[i - 1] == '-')
                return false;
            label = 0;
        } else if (s_is_alnum(c) || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && host[len - 1] != '-';
}

/*  The inside of [...]: hex digits, colons, and dots (IPv4-mapped).         */
static bool
s_ipv6_ok(const char *s, size_t len)
{
    if (len < 2 || len > 45)
        return false;
    bool colon = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ':')
            colon = true;
        else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                   || (c >= 'A' && c <= 'F') || c == '.'))
            return false;
    }
    return colon;
}

bool
sm__cli_endpoint_ok(const char *s)
{
    static const char scheme[] = "tcp://";
    size_t len = strlen(s);
    if (len > SM_ENDPOINT_BYTES_MAX || strncmp(s, scheme, sizeof scheme - 1) != 0)
        return false;
    const char *hp = s + sizeof scheme - 1;
    const char *colon;
    if (*hp == '[') {
        const char *close = strchr(hp, ']');
        if (close == NULL || close[1] != ':' || !s_ipv6_ok(hp + 1, (size_t)(close - hp - 1)))
            return false;
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL || !s_host_ok(hp, (size_t)(colon - hp)))
            return false;
    }
    const char *port = colon + 1;
    size_t digits = strlen(port);
    if (digits == 0 || digits > 5 || port[0] == '0')
        return false;
    unsigned value = 0;
    for (size_t i = 0; i < digits; i++) {
        if (port[i] < '0' || port[i] > '9')
            return false;
        value = value * 10 + (unsigned)(port[i] - '0');
    }
    return value >= 1 && value <= 65535;
}
