/*  `stallmesh backup`, `restore` and `identity export|import`: copies of
    what a stall cannot lose, taken while the node runs.

    A backup is the store, compacted (LMDB's copy with free pages left out)
    from one read transaction, so it is consistent however busy the node
    is: it holds exactly the commits made before the copy began, and every
    acknowledged sale was committed before it was acknowledged.  With
    --with-identity it also holds the node's secret, sealed with a
    passphrase (Argon2id and XChaCha20-Poly1305: include/stallmesh/
    identity.h).  A backup restores into a new or empty directory only; the
    restored node then checks its own log with its peers at start (README
    "The mesh is the stall's backup") and fetches what it sold after the
    copy before it appends, so putting an old backup back forks nothing.

    Backup file (".smbackup"), integers big-endian:

        0    8  magic "SMBACKUP"
        8    2  backup format, 1
        10   2  flags: bit 0 = a sealed identity follows the name; others 0
        12   4  the format of the store copied (SM_STORE_FORMAT, or an older
                one not migrated yet: a read-only open leaves it as it is)
        16   8  when the copy began, unix milliseconds
        24  32  the node id
        56   1  n, the length of the node's name (DIR/name), 0..128
        57   n  the name, UTF-8
        ..  131 the sealed identity, if flag bit 0 (SM_SEALED_ID_BYTES)
        ..   8  L, the length of the store
        ..   L  the store: LMDB's data file (data.mdb), compacted
        ..  32  BLAKE2b-256 of every byte before it

    `restore` checks all of it (the magic, the formats, the length against
    the file's size, the checksum, the passphrase) before it writes a byte,
    so a truncated, altered or foreign file, or a wrong passphrase, leaves
    the directory as it was.  The file is written to FILE.tmp and linked to
    FILE only when complete and synced: FILE is never a partial backup and
    never replaces another file.

    `identity export` prints the sealed identity as text ("smk1." and
    base64url, 180 characters; with --qr also as a QR code) for a paper
    copy of a key (the organiser's is the market itself); `identity import`
    puts it back.  Passphrases come from --passphrase-file FILE (its first
    line) or are asked on the terminal with echo off, twice when sealing.  */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "state.h"
#include "stallmesh/error.h"
#include "store.h"

#define SM__BACKUP_MAGIC        "SMBACKUP"
#define SM__BACKUP_FORMAT       1u
#define SM__BACKUP_FLAG_ID      1u
#define SM__BACKUP_FIXED_BYTES  57u      /* up to the name */
#define SM__BACKUP_HEAD_MAX     (SM__BACKUP_FIXED_BYTES + SM_NAME_BYTES_MAX \
                                 + SM_SEALED_ID_BYTES + 8u)
#define SM__PASSPHRASE_BYTES_MAX 1024u
#define SM__PASSPHRASE_BYTES_MIN 8u      /* when sealing */
#define SM__COPY_CHUNK_BYTES    (1u << 16)
#define SM__BACKUPS_SEEN_MAX    4096u    /* files of this node looked at when pruning */

static const char s_backup_usage[] =
    "backup [-o FILE] [--with-identity] [--passphrase-file FILE] [--json]";
static const char s_restore_usage[] =
    "restore FILE [--dir DIR] [--passphrase-file FILE] [--json]";
static const char s_identity_usage[] =
    "identity export [--qr] [--passphrase-file FILE] [--json] | "
    "identity import TEXT|- [--passphrase-file FILE] [--json]";

typedef struct {
    const char *out;           /* -o */
    const char *pass_file;     /* --passphrase-file */
    const char *dir;           /* restore --dir */
    bool with_identity;
    bool qr;
} s_opts;

static int
s_on_opt(int opt, const char *arg, void *ctx)
{
    s_opts *o = ctx;
    switch (opt) {
    case 'o': o->out = arg; return 0;
    case 'p': o->pass_file = arg; return 0;
    case 'd': o->dir = arg; return 0;
    case 'i': o->with_identity = true; return 0;
    case 'q': o->qr = true; return 0;
    default: return SM__EXIT_USAGE;
    }
}

static void
s_be_put(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t
s_be_get(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---- passphrases ------------------------------------------------------ */

/*  Read one line of at most cap - 1 bytes from fd (without its newline)
    into out.  The length, or -1 if it is longer or cannot be read.         */
static ssize_t
s_read_line(int fd, char *out, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0 || c == '\n')
            break;
        if (n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    if (n > 0 && out[n - 1] == '\r')
        n--;
    out[n] = 0;
    return (ssize_t) n;
}

/*  Ask on the terminal with echo off.  -1 with a message on failure.       */
static ssize_t
s_ask(int tty, const char *prompt, char *out, size_t cap)
{
    struct termios old, quiet;
    bool restore = tcgetattr(tty, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t) ECHO;
        quiet.c_lflag |= ECHONL;
        tcsetattr(tty, TCSAFLUSH, &quiet);
    }
    ssize_t w = write(tty, prompt, strlen(prompt));
    (void) w;
    ssize_t n = s_read_line(tty, out, cap);
    if (restore)
        tcsetattr(tty, TCSAFLUSH, &old);
    return n;
}

/*  The passphrase into out[SM__PASSPHRASE_BYTES_MAX + 1]: the first line of
    `file`, else asked on the terminal (twice when `sealing`).  Sealing asks
    for at least SM__PASSPHRASE_BYTES_MIN bytes.  The length, or -1 with a
    message printed.                                                          */
static ssize_t
s_passphrase(const char *file, bool sealing, char *out)
{
    size_t cap = SM__PASSPHRASE_BYTES_MAX + 1;
    ssize_t n;
    if (file) {
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            sm__cli_error("cannot read the passphrase file %s: %s", file, strerror(errno));
            return -1;
        }
        n = s_read_line(fd, out, cap);
        close(fd);
        if (n < 0) {
            sm__cli_error("the passphrase in %s is longer than %u bytes or unreadable",
                          file, SM__PASSPHRASE_BYTES_MAX);
            return -1;
        }
    } else {
        int tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (tty < 0) {
            sm__cli_error("no terminal to ask for the passphrase on: give "
                          "--passphrase-file FILE (its first line is the passphrase)");
            return -1;
        }
        n = s_ask(tty, "Passphrase: ", out, cap);
        if (n >= 0 && sealing && (size_t) n >= SM__PASSPHRASE_BYTES_MIN) {
            char again[SM__PASSPHRASE_BYTES_MAX + 1];
            ssize_t m = s_ask(tty, "The same passphrase again: ", again, sizeof again);
            bool same = m == n && memcmp(again, out, (size_t) n) == 0;
            memset(again, 0, sizeof again);
            if (!same) {
                close(tty);
                sm__cli_error("the two passphrases differ: nothing was written; try again");
                return -1;
            }
        }
        close(tty);
        if (n < 0) {
            sm__cli_error("could not read a passphrase (longer than %u bytes?)",
                          SM__PASSPHRASE_BYTES_MAX);
            return -1;
        }
    }
    if (memchr(out, 0, (size_t) n) != NULL) {
        sm__cli_error("the passphrase holds a NUL byte");
        return -1;
    }
    if (n == 0 || (sealing && (size_t) n < SM__PASSPHRASE_BYTES_MIN)) {
        sm__cli_error("the passphrase is %s: give at least %u characters (it is all "
                      "that guards the node's key in the copy)", n == 0 ? "empty" : "too short",
                      SM__PASSPHRASE_BYTES_MIN);
        return -1;
    }
    return n;
}

/*  Seal `id` with a passphrase got as s_passphrase does.  SM__EXIT_*.      */
static int
s_seal(const sm_identity *id, const char *pass_file, uint8_t sealed[SM_SEALED_ID_BYTES])
{
    char pass[SM__PASSPHRASE_BYTES_MAX + 1];
    ssize_t n = s_passphrase(pass_file, true, pass);
    if (n < 0)
        return SM__EXIT_FAIL;
    int rc = sm_identity_seal(id, pass, (size_t) n, sealed);
    memset(pass, 0, sizeof pass);
    if (rc != 0) {
        sm__cli_error("cannot seal the identity: %s (Argon2id needs %u MiB of memory)",
                      sm_strerror(rc), SM_SEAL_MEMLIMIT_BYTES >> 20);
        return SM__EXIT_FAIL;
    }
    return SM__EXIT_OK;
}

/*  Unseal with a passphrase; the message says which was wrong.  SM__EXIT_*.  */
static int
s_unseal(const uint8_t sealed[SM_SEALED_ID_BYTES], const char *pass_file, sm_identity *id)
{
    char pass[SM__PASSPHRASE_BYTES_MAX + 1];
    ssize_t n = s_passphrase(pass_file, false, pass);
    if (n < 0)
        return SM__EXIT_FAIL;
    int rc = sm_identity_unseal(sealed, pass, (size_t) n, id);
    memset(pass, 0, sizeof pass);
    if (rc == SM_EPASSPHRASE) {
        sm__cli_error("wrong passphrase (or the sealed identity was altered): nothing "
                      "was written; try again with the passphrase given when it was made");
        return SM__EXIT_FAIL;
    }
    if (rc != 0) {
        sm__cli_error("cannot unseal the identity: %s", sm_strerror(rc));
        return SM__EXIT_FAIL;
    }
    return SM__EXIT_OK;
}

/* ---- small file helpers ---------------------------------------------- */

static int
s_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

static int
s_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t) off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t) n;
        off += (uint64_t) n;
    }
    return 0;
}

/*  BLAKE2b-256 of fd's bytes [0, len).                                      */
static int
s_hash_fd(int fd, uint64_t len, sm_hash *out)
{
    static uint8_t buf[SM__COPY_CHUNK_BYTES];
    sm_hasher h;
    sm_hasher_init(&h);
    for (uint64_t off = 0; off < len;) {
        size_t n = len - off < sizeof buf ? (size_t)(len - off) : sizeof buf;
        if (s_pread_all(fd, buf, n, off) != 0)
            return -1;
        sm_hasher_update(&h, buf, n);
        off += n;
    }
    sm_hasher_final(&h, out);
    return 0;
}

/*  fsync the directory holding `path`, so a rename or link in it lasts.   */
static void
s_sync_parent(const char *path)
{
    char dir[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* ---- backup ------------------------------------------------------------ */

/*  The default file name: stallmesh-<first 12 hex of the id>-<UTC time>.smbackup.  */
static void
s_default_name(const sm_id *node, uint64_t now_ms, char *out, size_t cap)
{
    char hex[SM_ID_HEX_BYTES + 1], stamp[32];
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    sm_id_format(node, hex);
    gmtime_r(&secs, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, cap, "stallmesh-%.12s-%s.smbackup", hex, stamp);
}

int
sm__backup_write(sm_ledger *ledger, const sm_id *node, const char *name,
                 const uint8_t *sealed, const char *path, uint64_t now_ms,
                 uint64_t *store_bytes, char *why, size_t whylen)
{
    char tmp[PATH_MAX + 32];
    int fd = -1, rc;
    if (access(path, F_OK) == 0) {
        snprintf(why, whylen, "%s exists: a backup never replaces a file", path);
        return -1;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(why, whylen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t name_len = strnlen(name, SM_NAME_BYTES_MAX);
    uint8_t head[SM__BACKUP_HEAD_MAX];
    memcpy(head, SM__BACKUP_MAGIC, 8);
    s_be_put(head + 8, SM__BACKUP_FORMAT, 2);
    s_be_put(head + 10, sealed ? SM__BACKUP_FLAG_ID : 0, 2);
    s_be_put(head + 12, sm_store_format(sm__ledger_store(ledger)), 4);
    s_be_put(head + 16, now_ms, 8);
    memcpy(head + 24, node->b, SM_KEY_BYTES);
    head[56] = (uint8_t) name_len;
    memcpy(head + 57, name, name_len);
    size_t h = 57 + name_len;
    if (sealed) {
        memcpy(head + h, sealed, SM_SEALED_ID_BYTES);
        h += SM_SEALED_ID_BYTES;
    }
    size_t len_at = h;
    memset(head + h, 0, 8);            /* the store's length, once known */
    h += 8;
    if (s_write_all(fd, head, h) != 0) {
        snprintf(why, whylen, "cannot write %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if ((rc = sm_store_copy(sm__ledger_store(ledger), fd, true)) != 0) {
        snprintf(why, whylen, "cannot copy the store into %s: %s", tmp, sm_strerror(rc));
        goto fail;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < (off_t) h) {
        snprintf(why, whylen, "cannot write %s: %s", tmp, strerror(errno));
        goto fail;
    }
    *store_bytes = (uint64_t) end - h;
    uint8_t lenbuf[8];
    s_be_put(lenbuf, *store_bytes, 8);
    sm_hash sum;
    if (pwrite(fd, lenbuf, 8, (off_t) len_at) != 8 || s_hash_fd(fd, (uint64_t) end, &sum) != 0
        || s_write_all(fd, sum.b, sizeof sum.b) != 0 || fsync(fd) != 0) {
        snprintf(why, whylen, "cannot write %s: %s (disk full?)", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    if (link(tmp, path) != 0) {
        snprintf(why, whylen, "cannot create %s: %s", path, strerror(errno));
        goto fail;
    }
    unlink(tmp);
    s_sync_parent(path);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}

static int
s_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

int
sm__backup_scheduled(sm_ledger *ledger, const sm_id *node, const char *name,
                     const char *dir, uint32_t keep, uint64_t now_ms,
                     char *file, size_t file_cap, char *why, size_t whylen)
{
    char base[80], hex[SM_ID_HEX_BYTES + 1], prefix[32];
    uint64_t store_bytes = 0;
    if (sm__cli_mkdirs(dir) != 0) {
        snprintf(why, whylen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    s_default_name(node, now_ms, base, sizeof base);
    snprintf(file, file_cap, "%s/%s", dir, base);
    if (sm__backup_write(ledger, node, name, NULL, file, now_ms, &store_bytes, why, whylen) != 0)
        return -1;
    /* Keep this node's newest `keep`: the names sort by time. */
    sm_id_format(node, hex);
    snprintf(prefix, sizeof prefix, "stallmesh-%.12s-", hex);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char *names[SM__BACKUPS_SEEN_MAX];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < SM__BACKUPS_SEEN_MAX) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && len > 9
            && strcmp(e->d_name + len - 9, ".smbackup") == 0 && (names[n] = strdup(e->d_name)))
            n++;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], s_name_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i + keep < n) {
            char old[PATH_MAX + 300];
            snprintf(old, sizeof old, "%s/%s", dir, names[i]);
            unlink(old);
        }
        free(names[i]);
    }
    return 0;
}

int
sm__cmd_backup(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "output", required_argument, NULL, 'o' },
        { "with-identity", no_argument, NULL, 'i' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 },
    };
    s_opts o = { 0 };
    bool json = false;
    int status = SM__EXIT_OK, first = 0;
    if (!sm__cli_parse(argc, argv, s_backup_usage, opts, "o:", s_on_opt, &o, &json,
                       &first, &status))
        return status;
    if (first < argc)
        return sm__cli_usage_error(s_backup_usage, "unexpected argument '%s'", argv[first]);
    if (o.pass_file && !o.with_identity)
        return sm__cli_usage_error(s_backup_usage,
                                   "--passphrase-file goes with --with-identity");

    sm_identity id;
    sm_ledger *ledger = NULL;
    char path[PATH_MAX + 16], why[PATH_MAX + 160];
    uint8_t sealed[SM_SEALED_ID_BYTES];
    memset(&id, 0, sizeof id);
    status = SM__EXIT_FAIL;
    if (sm__cli_load_identity(cli, &id) != SM__EXIT_OK)
        goto done;
    if (o.with_identity && s_seal(&id, o.pass_file, sealed) != SM__EXIT_OK)
        goto done;
    if (sm__cli_open_ledger(cli, NULL, true, &ledger) != SM__EXIT_OK)
        goto done;

    uint64_t now_ms = sm__cli_now_ms(), store_bytes = 0;
    char hex[SM_ID_HEX_BYTES + 1], name[SM_NAME_BYTES_MAX + 1];
    sm_id_format(&id.pub, hex);
    if (o.out)
        snprintf(path, sizeof path, "%s", o.out);
    else
        s_default_name(&id.pub, now_ms, path, sizeof path);
    sm__cli_node_name(cli, name);
    if (sm__backup_write(ledger, &id.pub, name, o.with_identity ? sealed : NULL, path, now_ms,
                         &store_bytes, why, sizeof why) != 0) {
        sm__cli_error("%s%s", why, strstr(why, " exists") ? ": give another -o FILE" : "");
        goto done;
    }
    size_t name_len = strlen(name);
    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_str(out, "file", path);
        sm__json_set_str(out, "node", hex);
        sm__json_set_int(out, "bytes", (int64_t)(store_bytes + SM_HASH_BYTES
                         + SM__BACKUP_FIXED_BYTES + name_len + 8
                         + (o.with_identity ? SM_SEALED_ID_BYTES : 0)));
        sm__json_set_int(out, "store_bytes", (int64_t) store_bytes);
        sm__json_set_int(out, "taken_ms", (int64_t) now_ms);
        sm__json_set_bool(out, "identity", o.with_identity);
        if (sm__json_print(&out) != 0)
            goto done;
    } else {
        printf("backup %s: node %s%s%s%s, store %llu bytes (compacted), %s\n", path, hex,
               name_len ? " (" : "", name, name_len ? ")" : "",
               (unsigned long long) store_bytes,
               o.with_identity ? "identity sealed with the passphrase"
                               : "no identity (keep DIR/identity safe apart, or use "
                                 "--with-identity)");
    }
    status = SM__EXIT_OK;
done:
    sm_ledger_destroy(&ledger);
    sm_identity_wipe(&id);
    memset(sealed, 0, sizeof sealed);
    return status;
}

/* ---- restore ----------------------------------------------------------- */

typedef struct {
    uint32_t store_format;
    uint64_t taken_ms;
    sm_id node;
    char name[SM_NAME_BYTES_MAX + 1];
    bool has_id;
    uint8_t sealed[SM_SEALED_ID_BYTES];
    uint64_t store_off, store_bytes;
} s_backup;

/*  Check a backup file whole, before anything is written.  SM__EXIT_*.     */
static int
s_backup_check(const char *file, int fd, s_backup *b)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sm__cli_error("%s is not a regular file: give a backup made by 'stallmesh backup'", file);
        return SM__EXIT_FAIL;
    }
    uint64_t size = (uint64_t) st.st_size;
    uint8_t head[SM__BACKUP_HEAD_MAX];
    size_t have = size < sizeof head ? (size_t) size : sizeof head;
    if (s_pread_all(fd, head, have, 0) != 0) {
        sm__cli_error("cannot read %s: %s", file, strerror(errno));
        return SM__EXIT_FAIL;
    }
    if (have < 8 || memcmp(head, SM__BACKUP_MAGIC, 8) != 0) {
        sm__cli_error("%s is not a stallmesh backup (it does not start with %s): nothing "
                      "was restored", file, SM__BACKUP_MAGIC);
        return SM__EXIT_FAIL;
    }
    if (have < SM__BACKUP_FIXED_BYTES) {
        sm__cli_error("%s is truncated: %llu bytes, shorter than a backup's header; "
                      "nothing was restored", file, (unsigned long long) size);
        return SM__EXIT_FAIL;
    }
    uint64_t format = s_be_get(head + 8, 2), flags = s_be_get(head + 10, 2);
    if (format != SM__BACKUP_FORMAT || (flags & ~(uint64_t) SM__BACKUP_FLAG_ID) != 0) {
        sm__cli_error("%s is a backup of format %llu (flags %llx); this stallmesh (%s) reads "
                      "format %u: restore it with the stallmesh that made it or a newer one",
                      file, (unsigned long long) format, (unsigned long long) flags,
                      SM__VERSION, SM__BACKUP_FORMAT);
        return SM__EXIT_FAIL;
    }
    b->store_format = (uint32_t) s_be_get(head + 12, 4);
    b->taken_ms = s_be_get(head + 16, 8);
    memcpy(b->node.b, head + 24, SM_KEY_BYTES);
    size_t name_len = head[56];
    b->has_id = (flags & SM__BACKUP_FLAG_ID) != 0;
    size_t h = 57 + name_len + (b->has_id ? SM_SEALED_ID_BYTES : 0) + 8;
    if (name_len > SM_NAME_BYTES_MAX || have < h) {
        sm__cli_error("%s is %s: its header is cut short; nothing was restored", file,
                      name_len > SM_NAME_BYTES_MAX ? "damaged" : "truncated");
        return SM__EXIT_FAIL;
    }
    memcpy(b->name, head + 57, name_len);
    b->name[name_len] = 0;
    if (b->has_id)
        memcpy(b->sealed, head + 57 + name_len, SM_SEALED_ID_BYTES);
    b->store_off = h;
    b->store_bytes = s_be_get(head + h - 8, 8);
    uint64_t want = h + b->store_bytes + SM_HASH_BYTES;
    if (b->store_bytes > size || want != size) {
        sm__cli_error("%s is %s: it is %llu bytes, its header says %llu; nothing was "
                      "restored (use another copy)", file,
                      size < want ? "truncated" : "damaged (bytes past its end)",
                      (unsigned long long) size, (unsigned long long) want);
        return SM__EXIT_FAIL;
    }
    sm_hash sum;
    uint8_t stored[SM_HASH_BYTES];
    if (s_hash_fd(fd, size - SM_HASH_BYTES, &sum) != 0
        || s_pread_all(fd, stored, sizeof stored, size - SM_HASH_BYTES) != 0) {
        sm__cli_error("cannot read %s: %s", file, strerror(errno));
        return SM__EXIT_FAIL;
    }
    if (memcmp(sum.b, stored, sizeof stored) != 0) {
        sm__cli_error("%s is damaged or was altered: its checksum does not match its "
                      "contents; nothing was restored (use another copy)", file);
        return SM__EXIT_FAIL;
    }
    if (b->store_format > SM_STORE_FORMAT) {
        sm__cli_error("%s holds a store of format %u; this stallmesh (%s) reads formats up "
                      "to %u: restore it with a newer stallmesh", file,
                      (unsigned) b->store_format, SM__VERSION, (unsigned) SM_STORE_FORMAT);
        return SM__EXIT_FAIL;
    }
    if (b->has_id) {
        sm_id named;
        if (sm_sealed_id_node(b->sealed, &named) != 0
            || memcmp(named.b, b->node.b, SM_KEY_BYTES) != 0) {
            sm__cli_error("%s: its sealed identity is not the node it names; nothing was "
                          "restored", file);
            return SM__EXIT_FAIL;
        }
    }
    return SM__EXIT_OK;
}

/*  0 if `dir` does not exist (*made_by_us to be) or is an empty directory;
    else a message and -1.                                                    */
static int
s_dir_empty(const char *dir, bool *exists)
{
    struct stat st;
    *exists = false;
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        sm__cli_error("cannot look at %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        sm__cli_error("%s exists and is not a directory: restore into a new or empty "
                      "directory (nothing was changed)", dir);
        return -1;
    }
    *exists = true;
    DIR *d = opendir(dir);
    if (!d) {
        sm__cli_error("cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    const char *found = NULL;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            found = e->d_name;
            break;
        }
    }
    if (found)
        sm__cli_error("%s is not empty (it holds %s): restore only into a new or empty "
                      "directory, so nothing there is overwritten; nothing was changed",
                      dir, found);
    closedir(d);
    return found ? -1 : 0;
}

/*  Copy bytes [off, off + len) of `in` into a new file `path` (0600),
    fsync'd.  0 or -1 with errno.                                             */
static int
s_copy_out(int in, uint64_t off, uint64_t len, const char *path)
{
    static uint8_t buf[SM__COPY_CHUNK_BYTES];
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0)
        return -1;
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < sizeof buf ? (size_t)(len - done) : sizeof buf;
        if (s_pread_all(in, buf, n, off + done) != 0 || s_write_all(out, buf, n) != 0) {
            int saved = errno;
            close(out);
            errno = saved;
            return -1;
        }
        done += n;
    }
    int rc = fsync(out);
    int saved = errno;
    close(out);
    errno = saved;
    return rc;
}

/*  Write DIR/api-token if missing: 32 random bytes as hex, 0600.           */
static int
s_ensure_api_token(const sm__cli *cli)
{
    char path[PATH_MAX];
    if (!sm__cli_path(cli, SM__API_TOKEN_FILE, path))
        return -1;
    if (access(path, F_OK) == 0)
        return 0;
    uint8_t raw[SM__API_TOKEN_BYTES];
    char text[2 * SM__API_TOKEN_BYTES + 2];
    sm_random_bytes(raw, sizeof raw);
    sm_hex_encode(raw, sizeof raw, text);
    strcat(text, "\n");
    int rc = sm__cli_write_file(path, text, 0600);
    memset(raw, 0, sizeof raw);
    memset(text, 0, sizeof text);
    if (rc != 0)
        sm__cli_error("cannot write %s: %s", path, strerror(errno));
    return rc;
}

/*  Remove what a failed restore made in `dir` (which was empty or absent). */
static void
s_undo_restore(const sm__cli *dst, bool dir_existed)
{
    static const char *const files[] = {
        SM__STORE_DIR "/data.mdb", SM__STORE_DIR "/lock.mdb", SM__STORE_DIR,
        SM__API_TOKEN_FILE, SM__NAME_FILE, SM__IDENTITY_FILE,
    };
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (sm__cli_path(dst, files[i], path))
            remove(path);
    if (!dir_existed)
        rmdir(dst->dir);
}

int
sm__cmd_restore(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 },
    };
    s_opts o = { 0 };
    bool json = false;
    int status = SM__EXIT_OK, first = 0;
    if (!sm__cli_parse(argc, argv, s_restore_usage, opts, "", s_on_opt, &o, &json,
                       &first, &status))
        return status;
    if (first >= argc)
        return sm__cli_usage_error(s_restore_usage, "give the backup FILE to restore");
    if (first + 1 < argc)
        return sm__cli_usage_error(s_restore_usage, "unexpected argument '%s'", argv[first + 1]);
    const char *file = argv[first];
    sm__cli dst = *cli;
    if (o.dir) {
        int n = snprintf(dst.dir, sizeof dst.dir, "%s", o.dir);
        if (n <= 0 || (size_t) n >= sizeof dst.dir)
            return sm__cli_usage_error(s_restore_usage, "--dir is empty or too long");
        size_t len = (size_t) n;
        while (len > 1 && dst.dir[len - 1] == '/')
            dst.dir[--len] = 0;
    }

    s_backup b;
    sm_identity id;
    sm_ledger *ledger = NULL;
    bool dir_existed = false, writing = false;
    memset(&b, 0, sizeof b);
    memset(&id, 0, sizeof id);
    status = SM__EXIT_FAIL;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sm__cli_error("cannot open %s: %s", file, strerror(errno));
        return SM__EXIT_FAIL;
    }
    if (s_backup_check(file, fd, &b) != SM__EXIT_OK)
        goto done;
    if (s_dir_empty(dst.dir, &dir_existed) != 0)
        goto done;
    if (b.has_id) {
        if (sm_crypto_init() != 0) {
            sm__cli_error("cannot initialise libsodium");
            goto done;
        }
        if (s_unseal(b.sealed, o.pass_file, &id) != SM__EXIT_OK)
            goto done;
    } else if (o.pass_file) {
        sm__cli_error("%s holds no identity: --passphrase-file has nothing to open "
                      "(restore without it, then 'stallmesh identity import')", file);
        goto done;
    }

    /* From here on a failure removes what was written. */
    writing = true;
    char path[PATH_MAX];
    if (sm__cli_mkdirs(dst.dir) != 0 || !sm__cli_path(&dst, SM__STORE_DIR, path)
        || mkdir(path, 0700) != 0) {
        sm__cli_error("cannot create %s/%s: %s", dst.dir, SM__STORE_DIR, strerror(errno));
        goto done;
    }
    if (!sm__cli_path(&dst, SM__STORE_DIR "/data.mdb", path)
        || s_copy_out(fd, b.store_off, b.store_bytes, path) != 0) {
        sm__cli_error("cannot write %s: %s (disk full?)", path, strerror(errno));
        goto done;
    }
    /* Opening for writing checks the store and migrates an older format. */
    if (sm__cli_open_ledger(&dst, NULL, false, &ledger) != SM__EXIT_OK)
        goto done;
    sm_ledger_destroy(&ledger);
    if (s_ensure_api_token(&dst) != 0)
        goto done;
    if (b.name[0]) {
        char text[SM_NAME_BYTES_MAX + 2];
        snprintf(text, sizeof text, "%s\n", b.name);
        if (!sm__cli_path(&dst, SM__NAME_FILE, path) || sm__cli_write_file(path, text, 0644) != 0) {
            sm__cli_error("cannot write %s: %s", path, strerror(errno));
            goto done;
        }
    }
    if (b.has_id) {
        int rc;
        if (!sm__cli_path(&dst, SM__IDENTITY_FILE, path)
            || (rc = sm_identity_save(&id, path)) != 0) {
            sm__cli_error("cannot write %s/%s", dst.dir, SM__IDENTITY_FILE);
            goto done;
        }
    }

    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&b.node, hex);
    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_str(out, "dir", dst.dir);
        sm__json_set_str(out, "node", hex);
        sm__json_set_int(out, "taken_ms", (int64_t) b.taken_ms);
        sm__json_set_int(out, "store_bytes", (int64_t) b.store_bytes);
        sm__json_set_bool(out, "identity", b.has_id);
        if (sm__json_print(&out) != 0)
            goto done;
    } else {
        printf("restored node %s%s%s%s into %s (store %llu bytes%s)\n", hex,
               b.name[0] ? " (" : "", b.name, b.name[0] ? ")" : "", dst.dir,
               (unsigned long long) b.store_bytes, b.has_id ? ", identity" : "");
        if (!b.has_id)
            printf("this backup holds no identity: put the node's key back with "
                   "'stallmesh --dir %s identity import' (a paper copy) or copy its "
                   "identity file to %s/identity (mode 0600)\n", dst.dir, dst.dir);
        printf("start it with 'stallmesh --dir %s run' beside its peers: it fetches what "
               "it sold after the copy before it sells again\n", dst.dir);
    }
    status = SM__EXIT_OK;
done:
    if (status != SM__EXIT_OK && writing)
        s_undo_restore(&dst, dir_existed);
    sm_ledger_destroy(&ledger);
    sm_identity_wipe(&id);
    close(fd);
    return status;
}

/* ---- identity export / import ----------------------------------------- */

static int
s_identity_export(sm__cli *cli, const s_opts *o, bool json)
{
    sm_identity id;
    uint8_t sealed[SM_SEALED_ID_BYTES];
    char text[SM_SEALED_TEXT_BYTES + 1];
    int status = SM__EXIT_FAIL;
    memset(&id, 0, sizeof id);
    if (sm__cli_load_identity(cli, &id) != SM__EXIT_OK)
        return SM__EXIT_FAIL;
    if (s_seal(&id, o->pass_file, sealed) != SM__EXIT_OK)
        goto done;
    sm_sealed_to_text(sealed, text);
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&id.pub, hex);
    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_str(out, "node", hex);
        sm__json_set_str(out, "sealed", text);
        if (sm__json_print(&out) != 0)
            goto done;
    } else {
        printf("%s\n", text);
    }
    if (o->qr) {
        fflush(stdout);
        if (sm__qr_print(text, json ? stderr : stdout) != 0) {
            sm__cli_error("cannot draw the QR code: out of memory");
            goto done;
        }
    }
    status = SM__EXIT_OK;
done:
    sm_identity_wipe(&id);
    return status;
}

static int
s_identity_import(sm__cli *cli, const s_opts *o, const char *arg, bool json)
{
    char text[4096];
    if (strcmp(arg, "-") == 0) {
        size_t n = fread(text, 1, sizeof text - 1, stdin);
        text[n] = 0;
    } else {
        snprintf(text, sizeof text, "%s", arg);
    }
    uint8_t sealed[SM_SEALED_ID_BYTES];
    sm_id node;
    if (sm_sealed_from_text(text, sealed) != 0 || sm_sealed_id_node(sealed, &node) != 0) {
        sm__cli_error("this is not a sealed identity from 'stallmesh identity export' (it "
                      "starts %s and has %u more characters): check the copy",
                      SM_SEALED_TEXT_PREFIX, SM_SEALED_TEXT_BYTES - 5);
        return SM__EXIT_FAIL;
    }
    char path[PATH_MAX];
    struct stat st;
    if (!sm__cli_path(cli, SM__IDENTITY_FILE, path))
        return SM__EXIT_FAIL;
    if (lstat(path, &st) == 0) {
        sm__cli_error("%s exists: this directory already has a node; import into a new "
                      "--dir (an identity is never replaced)", path);
        return SM__EXIT_FAIL;
    }
    if (sm_crypto_init() != 0)
        return SM__EXIT_FAIL;
    sm_identity id;
    memset(&id, 0, sizeof id);
    int status = SM__EXIT_FAIL, rc;
    if (s_unseal(sealed, o->pass_file, &id) != SM__EXIT_OK)
        goto done;
    if (sm__cli_mkdirs(cli->dir) != 0) {
        sm__cli_error("cannot create %s: %s", cli->dir, strerror(errno));
        goto done;
    }
    if (s_ensure_api_token(cli) != 0)
        goto done;
    if ((rc = sm_identity_save(&id, path)) != 0) {
        sm__cli_error("cannot write %s: %s", path, sm_strerror(rc));
        goto done;
    }
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&id.pub, hex);
    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_str(out, "node", hex);
        sm__json_set_str(out, "identity", path);
        if (sm__json_print(&out) != 0)
            goto done;
    } else {
        printf("imported node %s into %s\n", hex, path);
    }
    status = SM__EXIT_OK;
done:
    sm_identity_wipe(&id);
    return status;
}

int
sm__cmd_identity(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "qr", no_argument, NULL, 'q' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 },
    };
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: stallmesh %s\n", s_identity_usage);
        return SM__EXIT_OK;
    }
    if (argc < 2 || (strcmp(argv[1], "export") != 0 && strcmp(argv[1], "import") != 0))
        return sm__cli_usage_error(s_identity_usage, "give 'export' or 'import'");
    bool export = strcmp(argv[1], "export") == 0;
    s_opts o = { 0 };
    bool json = false;
    int status = SM__EXIT_OK, first = 0;
    if (!sm__cli_parse(argc - 1, argv + 1, s_identity_usage, opts, "", s_on_opt, &o, &json,
                       &first, &status))
        return status;
    first += 1;
    if (export) {
        if (first < argc)
            return sm__cli_usage_error(s_identity_usage, "unexpected argument '%s'",
                                       argv[first]);
        return s_identity_export(cli, &o, json);
    }
    if (o.qr)
        return sm__cli_usage_error(s_identity_usage, "--qr goes with export");
    if (first >= argc)
        return sm__cli_usage_error(s_identity_usage, "give the sealed TEXT, or - to read it "
                                   "from standard input");
    if (first + 1 < argc)
        return sm__cli_usage_error(s_identity_usage, "unexpected argument '%s'",
                                   argv[first + 1]);
    return s_identity_import(cli, &o, argv[first], json);
}
