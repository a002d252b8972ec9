/*  Unit tests for src/config.c: defaults, the INI file (every error names
    FILE:LINE), the command line's sm_config_set over the file, strict
    numbers, and the listen address parser's edge cases.

    Files are written to mkstemp files under /tmp and removed by each test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "logger.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

#define S_ERR_BYTES 512

typedef struct {
    char path[64];
    char err[S_ERR_BYTES];
    sm_config cfg;
} s_file;

/*  Write text to a new temporary file named in f->path.                    */
static void
s_write(s_file *f, const char *text)
{
    snprintf(f->path, sizeof f->path, "/tmp/sm-test-config-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/*  Load text over the defaults; returns sm_config_load's code, with the
    message in f->err.  The file is removed.                                  */
static int
s_load(s_file *f, const char *text)
{
    s_write(f, text);
    sm_config_defaults(&f->cfg);
    f->err[0] = '\0';
    int rc = sm_config_load(&f->cfg, f->path, f->err, sizeof f->err);
    unlink(f->path);
    return rc;
}

/*  Assert the message starts "PATH:LINE: " and contains `needle`.          */
static void
s_assert_err(const s_file *f, int line, const char *needle)
{
    char prefix[96];
    snprintf(prefix, sizeof prefix, "%s:%d: ", f->path, line);
    if (strncmp(f->err, prefix, strlen(prefix)) != 0 || strstr(f->err, needle) == NULL)
        fail_msg("expected '%s...%s', got '%s'", prefix, needle, f->err);
}

/*  The defaults are the documented ones: 0.0.0.0:8080, limits.h, info.      */
static void
test_defaults(void **state)
{
    (void)state;
    sm_config cfg;
    memset(&cfg, 0xa5, sizeof cfg);
    sm_config_defaults(&cfg);
    assert_string_equal(cfg.http_host, "0.0.0.0");
    assert_int_equal(cfg.http_port, 8080);
    assert_int_equal(cfg.body_bytes_max, SM_HTTP_BODY_BYTES_MAX);
    assert_int_equal(cfg.clients_per_addr_max, SM_HTTP_CLIENTS_PER_ADDR_MAX);
    assert_int_equal(cfg.requests_per_addr_max, SM_HTTP_REQUESTS_PER_ADDR_MAX);
    assert_int_equal(cfg.headers_timeout_s, SM_HTTP_HEADERS_TIMEOUT_S);
    assert_int_equal(cfg.body_timeout_s, SM_HTTP_BODY_TIMEOUT_S);
    assert_int_equal(cfg.ws_queue_bytes_max, SM_WS_QUEUE_BYTES_MAX);
    assert_int_equal(cfg.hold_ttl_s, SM_HOLD_TTL_S_DEFAULT);
    assert_int_equal(cfg.holds_per_min, SM_HOLDS_PER_MIN_MAX);
    assert_int_equal(cfg.units_per_min, SM_UNITS_PER_MIN_DEFAULT);
    assert_int_equal(cfg.log_level, SM_LOG_INFO);
}

/*  [mesh] units_per_min takes 1..1000000 and refuses 0 and more, with the
    line (a stall that gives nothing sets units_floor high instead).         */
static void
test_units_per_min_key(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, "[mesh]\nunits_per_min = 25\n"), 0);
    assert_int_equal(f.cfg.units_per_min, 25);
    assert_int_equal(s_load(&f, "[mesh]\nunits_per_min = 0\n"), SM_EINVAL);
    assert_non_null(strstr(f.err, ":2:"));
    assert_int_equal(s_load(&f, "[mesh]\nunits_per_min = 1000001\n"), SM_EINVAL);
}

/*  A file setting every key (with comments, blank lines and odd spacing)
    sets every field.                                                         */
static void
test_load_every_key(void **state)
{
    (void)state;
    s_file f;
    int rc = s_load(&f,
        "; a stall's node\n"
        "# another comment style\n"
        "\n"
        "[http]\n"
        "listen = 127.0.0.1:9000   ; loopback only\n"
        "body_bytes_max=4096\n"
        "clients_per_addr_max   =   16\n"
        "requests_per_addr_max = 8\n"
        "headers_timeout_s = 3\n"
        "body_timeout_s = 7\n"
        "ws_queue_bytes_max = 65536\n"
        "[holds]\n"
        "ttl_s = 120\n"
        "per_min = 3\n"
        "[log]\n"
        "level = debug\n");
    assert_int_equal(rc, 0);
    assert_string_equal(f.err, "");
    assert_string_equal(f.cfg.http_host, "127.0.0.1");
    assert_int_equal(f.cfg.http_port, 9000);
    assert_int_equal(f.cfg.body_bytes_max, 4096);
    assert_int_equal(f.cfg.clients_per_addr_max, 16);
    assert_int_equal(f.cfg.requests_per_addr_max, 8);
    assert_int_equal(f.cfg.headers_timeout_s, 3);
    assert_int_equal(f.cfg.body_timeout_s, 7);
    assert_int_equal(f.cfg.ws_queue_bytes_max, 65536);
    assert_int_equal(f.cfg.hold_ttl_s, 120);
    assert_int_equal(f.cfg.holds_per_min, 3);
    assert_int_equal(f.cfg.log_level, SM_LOG_DEBUG);
}

/*  An empty file and a file of comments change nothing.                      */
static void
test_load_empty(void **state)
{
    (void)state;
    s_file f;
    sm_config def;
    sm_config_defaults(&def);
    assert_int_equal(s_load(&f, ""), 0);
    assert_memory_equal(&f.cfg, &def, sizeof def);
    assert_int_equal(s_load(&f, "; nothing\n\n# here\n[http]\n"), 0);
    assert_memory_equal(&f.cfg, &def, sizeof def);
}

/*  deploy/stallmesh.conf.example loads and sets every key to its default,
    so the documented file and the code agree.                                */
static void
test_example_file(void **state)
{
    (void)state;
    sm_config cfg, def;
    char err[S_ERR_BYTES] = "";
    sm_config_defaults(&def);
    def.mesh_advertise_set = true;     /* the file says advertise = none */
    memset(&cfg, 0, sizeof cfg);
    cfg.log_level = SM_LOG_ERROR;      /* so every key must be set by the file */
    assert_int_equal(sm_config_load(&cfg, "deploy/stallmesh.conf.example", err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_memory_equal(&cfg, &def, sizeof def);
}

/*  The discovery keys: defaults off, 7401 and 255.255.255.255; good values
    are taken; a word that is not a boolean, a port out of range and an
    address that is not a dotted IPv4 address are refused with their line.  */
static void
test_discover_keys(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, ""), 0);
    assert_false(f.cfg.discover);
    assert_int_equal(f.cfg.discover_port, 7401);
    assert_string_equal(f.cfg.discover_addr, "255.255.255.255");
    assert_int_equal(s_load(&f, "[mesh]\ndiscover = true\ndiscover_port = 9999\n"
                                "discover_addr = 192.168.1.255\n"), 0);
    assert_true(f.cfg.discover);
    assert_int_equal(f.cfg.discover_port, 9999);
    assert_string_equal(f.cfg.discover_addr, "192.168.1.255");
    assert_int_equal(s_load(&f, "[mesh]\ndiscover = maybe\n"), SM_EINVAL);
    s_assert_err(&f, 2, "must be true or false");
    assert_int_equal(s_load(&f, "[mesh]\ndiscover_port = 0\n"), SM_EINVAL);
    s_assert_err(&f, 2, "discover_port");
    assert_int_equal(s_load(&f, "[mesh]\ndiscover_port = 65536\n"), SM_EINVAL);
    s_assert_err(&f, 2, "discover_port");
    assert_int_equal(s_load(&f, "[mesh]\n\ndiscover_addr = lan.local\n"), SM_EINVAL);
    s_assert_err(&f, 3, "must be an IPv4 address");
    assert_int_equal(s_load(&f, "[mesh]\ndiscover_addr = 1.2.3\n"), SM_EINVAL);
    assert_int_equal(s_load(&f, "[mesh]\ndiscover_addr = 255.255.255.255.1\n"), SM_EINVAL);
}

/*  An unknown key is refused with its file, line and name, and the keys
    the section does have.                                                    */
static void
test_unknown_key(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, "[http]\nlisten = 127.0.0.1:1\nlisten_port = 9\n"), SM_EINVAL);
    s_assert_err(&f, 3, "unknown key 'listen_port' in [http]");
    assert_non_null(strstr(f.err, "body_bytes_max"));

    assert_int_equal(s_load(&f, "[log]\nlevel = info\nLevel = info\n"), SM_EINVAL);
    s_assert_err(&f, 3, "unknown key 'Level' in [log]");
}

/*  An unknown section is refused at its header line, even with no keys
    under it.                                                                 */
static void
test_unknown_section(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, "[http]\n\n[htpp]\n"), SM_EINVAL);
    s_assert_err(&f, 3, "unknown section [htpp]");
    assert_int_equal(s_load(&f, "[log]\nlevel = warn\n[ http ]\nlisten = a:1\n"), SM_EINVAL);
    s_assert_err(&f, 3, "unknown section [ http ]");
    assert_int_equal(s_load(&f, "[holds]\n[gossip]\npeers = x\n"), SM_EINVAL);
    s_assert_err(&f, 2, "unknown section [gossip]");
}

/*  A key before any [section] is refused and told where keys belong.      */
static void
test_key_outside_section(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, "\nlisten = 0.0.0.0:80\n[http]\n"), SM_EINVAL);
    s_assert_err(&f, 2, "'listen' comes before any [section]");
}

/*  A bad value is refused at its line, naming the key and quoting it.    */
static void
test_bad_value_line(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, "[http]\nlisten = 0.0.0.0:8080\n\n\nbody_bytes_max = 64k\n"),
                     SM_EINVAL);
    s_assert_err(&f, 5, "http.body_bytes_max = '64k': must be a whole number from 1024 to 65536");
    assert_int_equal(s_load(&f, "[log]\nlevel = loud\n"), SM_EINVAL);
    s_assert_err(&f, 2, "log.level = 'loud'");
    assert_int_equal(s_load(&f, "[http]\nlisten = localhost\n"), SM_EINVAL);
    s_assert_err(&f, 2, "http.listen = 'localhost': no ':PORT'");
    assert_int_equal(s_load(&f, "[holds]\nttl_s =\n"), SM_EINVAL);
    s_assert_err(&f, 2, "holds.ttl_s = ''");
}

/*  A line inih cannot parse is reported at its line, and whichever error
    comes first in the file is the one reported.                             */
static void
test_syntax_error_line(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, "[http]\nlisten 0.0.0.0\n"), SM_EINVAL);
    s_assert_err(&f, 2, "not a [section] or 'key = value' line");
    assert_int_equal(s_load(&f, "[http\nlisten = 0.0.0.0:8080\n"), SM_EINVAL);
    s_assert_err(&f, 1, "not a [section] or 'key = value' line");
    /* A syntax error before a bad value... */
    assert_int_equal(s_load(&f, "[http]\nnonsense\nlisten = x\n"), SM_EINVAL);
    s_assert_err(&f, 2, "not a [section]");
    /* ...and a bad value before a syntax error. */
    assert_int_equal(s_load(&f, "[http]\nlisten = x\nnonsense\n"), SM_EINVAL);
    s_assert_err(&f, 2, "http.listen = 'x'");
}

/*  A key set twice in one file is refused, naming the first line; an
    indented line (which inih reads as more of the value above) is refused
    with a message that says so.                                              */
static void
test_duplicate_key(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, "[holds]\nttl_s = 60\nper_min = 2\nttl_s = 90\n"), SM_EINVAL);
    s_assert_err(&f, 4, "holds.ttl_s is set twice (first on line 2");
    assert_int_equal(s_load(&f, "[http]\nlisten = 0.0.0.0:8080\n   127.0.0.1:9000\n"),
                     SM_EINVAL);
    s_assert_err(&f, 3, "an indented line continues the value of http.listen (line 2)");
    assert_int_equal(s_load(&f, "[http]\nlisten = 0.0.0.0:8080\n  body_bytes_max = 2048\n"),
                     SM_EINVAL);
    s_assert_err(&f, 3, "an indented line continues the value of http.listen (line 2)");
}

/*  A line longer than inih's buffer is refused at its line instead of
    being cut; one that just fits is read.                                    */
static void
test_long_line(void **state)
{
    (void)state;
    s_file f;
    char text[600];
    char comment[200];
    memset(comment, 'x', sizeof comment);
    comment[0] = ';';

    /* 198 bytes and a newline: fits. */
    snprintf(text, sizeof text, "[log]\n%.198s\nlevel = warn\n", comment);
    assert_int_equal(s_load(&f, text), 0);
    assert_int_equal(f.cfg.log_level, SM_LOG_WARN);

    /* 199 bytes: refused at line 2, and the next line is not read. */
    snprintf(text, sizeof text, "[log]\n%.199s\nlevel = bogus\n", comment);
    assert_int_equal(s_load(&f, text), SM_EINVAL);
    s_assert_err(&f, 2, "line longer than 198 bytes");
}

/*  A missing file is SM_ENOTFOUND and a directory SM_EIO, each naming the
    path.                                                                     */
static void
test_file_errors(void **state)
{
    (void)state;
    sm_config cfg;
    char err[S_ERR_BYTES];
    sm_config_defaults(&cfg);
    assert_int_equal(sm_config_load(&cfg, "/nonexistent/stallmesh.conf", err, sizeof err),
                     SM_ENOTFOUND);
    assert_string_equal(err, "/nonexistent/stallmesh.conf: no such file");
    assert_int_equal(sm_config_load(&cfg, "/tmp", err, sizeof err), SM_EIO);
    assert_true(strncmp(err, "/tmp: ", 6) == 0);
}

/*  Numbers are plain decimal digits within the key's range: signs, hex,
    units, leading zeros, spaces, overflow and the bounds plus or minus one
    are handled exactly.                                                     */
static void
test_numbers_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "0x400", "+2048", "-1", " 2048", "2048 ", "2k", "02048", "2048.0",
        "1e4", "1023", "65537", "4294967296", "18446744073709551617", "99999999999",
    };
    sm_config cfg;
    char err[S_ERR_BYTES];
    sm_config_defaults(&cfg);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sm_config_set(&cfg, "http", "body_bytes_max", bad[i], err, sizeof err) != SM_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(cfg.body_bytes_max, SM_HTTP_BODY_BYTES_MAX);
    }
    assert_int_equal(sm_config_set(&cfg, "http", "body_bytes_max", "1024", err, sizeof err), 0);
    assert_int_equal(cfg.body_bytes_max, 1024);
    assert_int_equal(sm_config_set(&cfg, "http", "body_bytes_max", "65536", err, sizeof err), 0);
    assert_int_equal(cfg.body_bytes_max, 65536);

    /* The other ranges at their edges. */
    assert_int_equal(sm_config_set(&cfg, "holds", "ttl_s", "0", err, sizeof err), SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "holds", "ttl_s", "86400", err, sizeof err), 0);
    assert_int_equal(sm_config_set(&cfg, "holds", "ttl_s", "86401", err, sizeof err), SM_EINVAL);
    assert_int_equal(cfg.hold_ttl_s, 86400);
    assert_int_equal(sm_config_set(&cfg, "holds", "per_min", "0", err, sizeof err), SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "holds", "per_min", "11", err, sizeof err), SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "holds", "per_min", "1", err, sizeof err), 0);
    assert_int_equal(cfg.holds_per_min, 1);
    assert_int_equal(sm_config_set(&cfg, "http", "clients_per_addr_max", "257", err, sizeof err),
                     SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "http", "clients_per_addr_max", "0", err, sizeof err),
                     SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "http", "ws_queue_bytes_max", "1048577", err,
                                   sizeof err), SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "http", "ws_queue_bytes_max", "65535", err, sizeof err),
                     SM_EINVAL);
    /* One address may hold at most a sixteenth of the header pool. */
    assert_int_equal(sm_config_set(&cfg, "http", "requests_per_addr_max", "257", err,
                                   sizeof err), SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "http", "requests_per_addr_max", "0", err, sizeof err),
                     SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "http", "requests_per_addr_max", "256", err,
                                   sizeof err), 0);
    assert_int_equal(sm_config_set(&cfg, "http", "headers_timeout_s", "0", err, sizeof err),
                     SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "http", "headers_timeout_s", "301", err, sizeof err),
                     SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "http", "body_timeout_s", "601", err, sizeof err),
                     SM_EINVAL);
    assert_int_equal(sm_config_set(&cfg, "http", "body_timeout_s", "600", err, sizeof err), 0);
}

/*  Defaults, then the file, then sm_config_set: each overrides the one
    before, and keys one layer leaves alone keep the value below.          */
static void
test_precedence(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, "[http]\nlisten = 127.0.0.1:9000\nbody_bytes_max = 2048\n"
                                "[log]\nlevel = warn\n"), 0);
    assert_int_equal(sm_config_set(&f.cfg, "http", "listen", "[::1]:9100", f.err,
                                   sizeof f.err), 0);
    assert_int_equal(sm_config_set(&f.cfg, "log", "level", "error", f.err, sizeof f.err), 0);

    assert_string_equal(f.cfg.http_host, "::1");          /* command line */
    assert_int_equal(f.cfg.http_port, 9100);
    assert_int_equal(f.cfg.log_level, SM_LOG_ERROR);
    assert_int_equal(f.cfg.body_bytes_max, 2048);         /* file */
    assert_int_equal(f.cfg.hold_ttl_s, SM_HOLD_TTL_S_DEFAULT); /* default */

    /* A refused set() leaves the value it would have replaced. */
    assert_int_equal(sm_config_set(&f.cfg, "http", "listen", "[::1]:0", f.err, sizeof f.err),
                     SM_EINVAL);
    assert_string_equal(f.cfg.http_host, "::1");
    assert_int_equal(f.cfg.http_port, 9100);
}

/*  sm_config_set refuses unknown sections and keys and bad values with a
    message that has no FILE:LINE and says what to write.                    */
static void
test_set_errors(void **state)
{
    (void)state;
    sm_config cfg;
    char err[S_ERR_BYTES];
    sm_config_defaults(&cfg);
    assert_int_equal(sm_config_set(&cfg, "gossip", "peers", "x", err, sizeof err), SM_EINVAL);
    assert_string_equal(err, "unknown section [gossip]; the sections are [http], [holds], [log], [mesh], [report], [backup] and [node]");
    assert_int_equal(sm_config_set(&cfg, "holds", "ttl", "60", err, sizeof err), SM_EINVAL);
    assert_string_equal(err, "unknown key 'ttl' in [holds]; its keys are ttl_s, per_min, "
                        "max_units, max_per_sku, per_device, per_address");
    assert_int_equal(sm_config_set(&cfg, "http", "listen", "::1:80", err, sizeof err), SM_EINVAL);
    assert_non_null(strstr(err, "an IPv6 address goes in brackets"));
    assert_int_equal(sm_config_set(&cfg, "log", "level", NULL, err, sizeof err), SM_EINVAL);
    /* A NULL or empty err buffer is allowed. */
    assert_int_equal(sm_config_set(&cfg, "log", "level", "INFO", NULL, 0), SM_EINVAL);
    err[0] = 'z';
    assert_int_equal(sm_config_set(&cfg, "log", "level", "INFO", err, 0), SM_EINVAL);
    assert_int_equal(err[0], 'z');
}

/*  Listen addresses that parse: IPv4, names, bracketed IPv6 (with a zone),
    ports 1 and 65535; the host comes back without brackets.               */
static void
test_listen_good(void **state)
{
    (void)state;
    static const struct { const char *text, *host; uint16_t port; } good[] = {
        {"0.0.0.0:8080", "0.0.0.0", 8080},
        {"127.0.0.1:1", "127.0.0.1", 1},
        {"localhost:65535", "localhost", 65535},
        {"my-stall.local:8080", "my-stall.local", 8080},
        {"[::1]:9000", "::1", 9000},
        {"[::]:80", "::", 80},
        {"[fe80::1%eth0]:8080", "fe80::1%eth0", 8080},
        {"[::ffff:10.0.0.7]:443", "::ffff:10.0.0.7", 443},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char host[SM_CONFIG_HOST_BYTES_MAX + 1];
        uint16_t port = 0;
        if (sm_config_parse_listen(good[i].text, host, sizeof host, &port) != 0)
            fail_msg("'%s' was refused", good[i].text);
        assert_string_equal(host, good[i].host);
        assert_int_equal(port, good[i].port);
    }
}

/*  Listen addresses that are refused, with host and port left untouched:
    missing parts, port 0, 65536, signs and leading zeros, bare IPv6, bad
    brackets, bad IPv4, bad names, a host longer than the buffer.           */
static void
test_listen_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", ":8080", "8080", "host", "host:", "host:0", "host:65536", "host:080",
        "host:+80", "host:-80", "host:80 ", "host: 80", "host:8o", "host:99999999999999999999",
        "::1:8080", "::1", "[::1]8080", "[::1]", "[::1:8080", "::1]:80", "[]:80",
        "[1.2.3.4]:80", "[::1%]:80", "[::1%et/h]:80", "[::1]:80:80", "[[::1]]:80",
        "256.1.1.1:80", "1.2.3:80", "1.2.3.4.5:80", "ho st:80", "-host:80", "host-:80",
        "a..b:80", ".a:80", "a.:80", "*:80", "host_name:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char host[SM_CONFIG_HOST_BYTES_MAX + 1] = "untouched";
        uint16_t port = 7;
        if (sm_config_parse_listen(bad[i], host, sizeof host, &port) != SM_EINVAL)
            fail_msg("'%s' was accepted (host '%s' port %u)", bad[i], host, port);
        assert_string_equal(host, "untouched");
        assert_int_equal(port, 7);
    }
    char host[SM_CONFIG_HOST_BYTES_MAX + 1];
    uint16_t port = 0;
    assert_int_equal(sm_config_parse_listen(NULL, host, sizeof host, &port), SM_EINVAL);

    /* A host that fits its buffer exactly, and one byte more. */
    char small[10];
    assert_int_equal(sm_config_parse_listen("localhost:80", small, sizeof small, &port), 0);
    assert_string_equal(small, "localhost");
    assert_int_equal(sm_config_parse_listen("localhost1:80", small, sizeof small, &port),
                     SM_EINVAL);

    /* A 63-byte label is a name; 64 bytes is not. */
    char text[128];
    snprintf(text, sizeof text, "%.63s:80",
             "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd");
    assert_int_equal(sm_config_parse_listen(text, host, sizeof host, &port), 0);
    snprintf(text, sizeof text, "%.64s:80",
             "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd");
    assert_int_equal(sm_config_parse_listen(text, host, sizeof host, &port), SM_EINVAL);
}

/*  sm_config_format writes every key, and loading what it wrote gives the
    same configuration back (IPv6 host re-bracketed).                        */
static void
test_format_round_trip(void **state)
{
    (void)state;
    sm_config cfg;
    char err[S_ERR_BYTES];
    sm_config_defaults(&cfg);
    assert_int_equal(sm_config_set(&cfg, "http", "listen", "[fe80::1%eth0]:8443", err,
                                   sizeof err), 0);
    assert_int_equal(sm_config_set(&cfg, "holds", "ttl_s", "30", err, sizeof err), 0);
    assert_int_equal(sm_config_set(&cfg, "log", "level", "debug", err, sizeof err), 0);

    char text[1024];
    int n = sm_config_format(&cfg, text, sizeof text);
    assert_true(n > 0 && (size_t)n < sizeof text);
    assert_int_equal(strlen(text), (size_t)n);
    assert_non_null(strstr(text, "listen = [fe80::1%eth0]:8443\n"));
    assert_non_null(strstr(text, "level = debug\n"));

    s_file f;
    assert_int_equal(s_load(&f, text), 0);
    assert_memory_equal(&f.cfg, &cfg, sizeof cfg);

    /* advertise: unset, none and an endpoint each load back as they were
       (unset lets the node tell peers its listen endpoint; none tells none). */
    assert_false(cfg.mesh_advertise_set);
    assert_non_null(strstr(text, "; advertise (unset)\n"));
    sm_config both[2];
    const char *values[2] = { "none", "tcp://10.0.0.5:7400" };
    for (int i = 0; i < 2; i++) {
        sm_config_defaults(&both[i]);
        assert_int_equal(sm_config_set(&both[i], "mesh", "advertise", values[i], err,
                                       sizeof err), 0);
        assert_true(both[i].mesh_advertise_set);
        char t[1024];
        assert_true(sm_config_format(&both[i], t, sizeof t) < (int)sizeof t);
        assert_int_equal(s_load(&f, t), 0);
        assert_memory_equal(&f.cfg, &both[i], sizeof both[i]);
    }
    assert_string_equal(both[0].mesh_advertise, "");
    assert_string_equal(both[1].mesh_advertise, "tcp://10.0.0.5:7400");

    /* A short buffer still says how much was needed. */
    char tiny[8];
    assert_int_equal(sm_config_format(&cfg, tiny, sizeof tiny), n);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

/*  [report] timezone takes an IANA zone that exists (and round-trips
    through the formatted text); a bad name or unknown zone is refused.    */
static void
test_report_timezone(void **state)
{
    (void)state;
    sm_config cfg;
    char err[S_ERR_BYTES];
    sm_config_defaults(&cfg);
    assert_string_equal(cfg.report_tz, "");
    assert_int_equal(sm_config_set(&cfg, "report", "timezone", "Europe/London", err,
                                   sizeof err), 0);
    assert_string_equal(cfg.report_tz, "Europe/London");
    char text[1024];
    assert_true(sm_config_format(&cfg, text, sizeof text) < (int)sizeof text);
    assert_non_null(strstr(text, "[report]\ntimezone = Europe/London\n"));
    s_file f;
    assert_int_equal(s_load(&f, text), 0);
    assert_memory_equal(&f.cfg, &cfg, sizeof cfg);
    static const char *const bad[] = { "Mars/Olympus", "../etc/passwd", "", "Europe London" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sm_config_set(&cfg, "report", "timezone", bad[i], err, sizeof err),
                         SM_EINVAL);
        assert_non_null(strstr(err, "IANA time zone"));
    }
    assert_string_equal(cfg.report_tz, "Europe/London");
}

/*  Level names parse exactly (lower case), anything else is -1.           */
static void
test_log_level_names(void **state)
{
    (void)state;
    assert_int_equal(sm_log_level_parse("error"), SM_LOG_ERROR);
    assert_int_equal(sm_log_level_parse("warn"), SM_LOG_WARN);
    assert_int_equal(sm_log_level_parse("info"), SM_LOG_INFO);
    assert_int_equal(sm_log_level_parse("debug"), SM_LOG_DEBUG);
    assert_int_equal(sm_log_level_parse("warning"), -1);
    assert_int_equal(sm_log_level_parse("Info"), -1);
    assert_int_equal(sm_log_level_parse(""), -1);
    assert_int_equal(sm_log_level_parse(NULL), -1);
}

/*  [http] trusted_proxies takes numeric IPv4 and IPv6 addresses only (at
    most 8), [node] mirror a boolean; both load back from the format.       */
static void
test_proxies_and_mirror(void **state)
{
    (void)state;
    s_file f;
    assert_int_equal(s_load(&f, ""), 0);
    assert_int_equal(f.cfg.trusted_proxy_count, 0);
    assert_false(f.cfg.mirror);
    assert_int_equal(s_load(&f, "[http]\ntrusted_proxies = 127.0.0.1, ::1 ,10.0.0.2\n"
                                "[node]\nmirror = true\n"), 0);
    assert_int_equal(f.cfg.trusted_proxy_count, 3);
    assert_string_equal(f.cfg.trusted_proxies[0], "127.0.0.1");
    assert_string_equal(f.cfg.trusted_proxies[1], "::1");
    assert_string_equal(f.cfg.trusted_proxies[2], "10.0.0.2");
    assert_true(f.cfg.mirror);
    char text[2048];
    sm_config cfg = f.cfg;
    assert_true(sm_config_format(&cfg, text, sizeof text) < (int)sizeof text);
    assert_int_equal(s_load(&f, text), 0);
    assert_memory_equal(&f.cfg, &cfg, sizeof cfg);
    assert_int_equal(s_load(&f, "[http]\ntrusted_proxies = proxy.example\n"), SM_EINVAL);
    s_assert_err(&f, 2, "not an IPv4 or IPv6 address");
    assert_int_equal(s_load(&f, "[http]\ntrusted_proxies = 1.1.1.1,,2.2.2.2\n"), SM_EINVAL);
    assert_int_equal(s_load(&f, "[http]\ntrusted_proxies = 1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,"
                                "1.1.1.5,1.1.1.6,1.1.1.7,1.1.1.8,1.1.1.9\n"), SM_EINVAL);
    s_assert_err(&f, 2, "too many");
    assert_int_equal(s_load(&f, "[node]\nmirror = perhaps\n"), SM_EINVAL);
    s_assert_err(&f, 2, "must be true or false");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_proxies_and_mirror),
        cmocka_unit_test(test_report_timezone),
        cmocka_unit_test(test_units_per_min_key),
        cmocka_unit_test(test_load_every_key),
        cmocka_unit_test(test_load_empty),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_discover_keys),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_key_outside_section),
        cmocka_unit_test(test_bad_value_line),
        cmocka_unit_test(test_syntax_error_line),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_numbers_strict),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_listen_good),
        cmocka_unit_test(test_listen_bad),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_log_level_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
