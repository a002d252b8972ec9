/*  Integrity of a data directory (integrity.h): the directory lock and the
    store check run in a child process.

    Lock file: DIR/run.lock, mode 0600, holding the holder's pid in
    decimal and a newline, rewritten by each process that takes the lock
    (the pid is only a hint for messages: the flock is the lock).            */
#include "integrity.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "store.h"

#define S_LOCK_FILE "run.lock"

struct sm_dirlock {
    int fd;
};

static bool
s_lock_path(const char *dir, char out[PATH_MAX])
{
    return snprintf(out, PATH_MAX, "%s/%s", dir, S_LOCK_FILE) < PATH_MAX;
}

static pid_t
s_read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    long pid = strtol(buf, NULL, 10);
    return pid > 0 && pid < INT_MAX ? (pid_t) pid : 0;
}

sm_dirlock *
sm_dirlock_take(const char *dir, pid_t *holder, int *err)
{
    assert(dir && err);
    char path[PATH_MAX];
    if (holder)
        *holder = 0;
    if (!s_lock_path(dir, path)) {
        *err = SM_EINVAL;
        return NULL;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        *err = errno == ENOSPC ? SM_ENOSPC : SM_EIO;
        return NULL;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        *err = errno == ENOSPC ? SM_ENOSPC : SM_EIO;
        return NULL;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (holder && e == EWOULDBLOCK)
            *holder = s_read_pid(fd);
        close(fd);
        *err = e == EWOULDBLOCK ? SM_ELOCKED : SM_EIO;
        return NULL;
    }
    sm_dirlock *self = malloc(sizeof *self);
    if (!self) {
        close(fd);
        *err = SM_ENOMEM;
        return NULL;
    }
    self->fd = fd;
    char line[32];
    int len = snprintf(line, sizeof line, "%ld\n", (long) getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t) len, 0) != len) {
        /* The pid is a hint for messages; the flock holds regardless. */
    }
    return self;
}

void
sm_dirlock_release(sm_dirlock **lock_p)
{
    assert(lock_p);
    sm_dirlock *self = *lock_p;
    if (!self)
        return;
    if (ftruncate(self->fd, 0) != 0) {
        /* a stale pid in an unlocked file misleads nobody: holder() checks */
    }
    close(self->fd);                   /* drops the flock */
    free(self);
    *lock_p = NULL;
}

pid_t
sm_dirlock_holder(const char *dir)
{
    assert(dir);
    char path[PATH_MAX];
    if (!s_lock_path(dir, path))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    pid_t pid = 0;
    /* A shared lock is refused only while a holder has it exclusively; it
       is dropped at once (a writer starting in that instant is refused and
       says so: a clear message, not damage). */
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        pid = errno == EWOULDBLOCK ? s_read_pid(fd) : 0;
        if (errno == EWOULDBLOCK && pid == 0)
            pid = -1;                  /* held, pid unknown */
    } else {
        flock(fd, LOCK_UN);
    }
    close(fd);
    return pid;
}

/*  The child: open, check, write the report, exit.  Never returns.          */
static void
s_child(int out, const char *store_dir, unsigned flags, bool writable)
{
    sm_check_report r;
    memset(&r, 0, sizeof r);
    sm_ledger_opts opts = { .read_only = !writable };
    int err = 0;
    sm_ledger *ledger = sm_ledger_open(store_dir, &opts, &err);
    if (!ledger) {
        r.err = err == SM_ENOTFOUND ? 0 : err;
        if (err != SM_ENOTFOUND)
            snprintf(r.what, sizeof r.what, "the store cannot be opened (%s)",
                     sm_strerror(err));
    } else {
        sm_ledger_check(ledger, flags, &r);
        sm_ledger_destroy(&ledger);
    }
    const uint8_t *p = (const uint8_t *) &r;
    size_t left = sizeof r;
    while (left) {
        ssize_t n = write(out, p, left);
        if (n <= 0 && errno != EINTR)
            _exit(3);
        if (n > 0) {
            p += n;
            left -= (size_t) n;
        }
    }
    _exit(0);
}

int
sm_integrity_check(const char *store_dir, unsigned flags, bool writable,
                   sm_check_report *report)
{
    assert(store_dir && report);
    memset(report, 0, sizeof *report);
    int rc = sm__store_file_check(store_dir, report->what, sizeof report->what);
    if (rc != 0) {
        report->err = rc;
        return rc;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        report->err = SM_EIO;
        snprintf(report->what, sizeof report->what, "cannot check the store: pipe: %s",
                 strerror(errno));
        return SM_EIO;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        report->err = SM_EIO;
        snprintf(report->what, sizeof report->what, "cannot check the store: fork: %s",
                 strerror(errno));
        return SM_EIO;
    }
    if (pid == 0) {
        close(fds[0]);
        s_child(fds[1], store_dir, flags, writable);
    }
    close(fds[1]);
    uint8_t *p = (uint8_t *) report;
    size_t got = 0;
    while (got < sizeof *report) {
        ssize_t n = read(fds[0], p + got, sizeof *report - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t) n;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        memset(report, 0, sizeof *report);
        report->err = SM_EDAMAGED;
        snprintf(report->what, sizeof report->what, "reading the store's pages faulted "
                 "(signal %d, %s): its file is damaged", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
        return SM_EDAMAGED;
    }
    if (got != sizeof *report || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        memset(report, 0, sizeof *report);
        report->err = SM_EIO;
        snprintf(report->what, sizeof report->what, "the store check did not finish "
                 "(exit status %d)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return SM_EIO;
    }
    report->what[sizeof report->what - 1] = 0;
    return report->err;
}

/* ---- salvage (repair) ------------------------------------------------ */

#define S_SALVAGE_RUN 256u

typedef struct {
    uint8_t (*bytes)[SM_ENTRY_BYTES_MAX];
    sm_signed run[S_SALVAGE_RUN];
    size_t n;
} s_run_buf;

static int
s_collect(const sm_signed *entry, uint64_t seq, void *arg)
{
    (void) seq;
    s_run_buf *b = arg;
    if (b->n == S_SALVAGE_RUN || entry->len > SM_ENTRY_BYTES_MAX)
        return 1;
    memcpy(b->bytes[b->n], entry->bytes, entry->len);
    b->run[b->n].bytes = b->bytes[b->n];
    b->run[b->n].len = entry->len;
    memcpy(b->run[b->n].sig, entry->sig, SM_SIG_BYTES);
    b->n++;
    return 0;
}

typedef struct {
    sm_head *heads;
    size_t n, cap;
} s_head_list;

static int
s_head_add(const sm_head *h, void *arg)
{
    s_head_list *l = arg;
    if (l->n == l->cap)
        return 1;
    l->heads[l->n++] = *h;
    return 0;
}

/*  Copy one origin's log from src to dst up to its first entry that does
    not verify (decode, origin, seq, market, link, signature) or that dst
    refuses.  Adds to the report.                                            */
static void
s_salvage_origin(sm_ledger *src, sm_ledger *dst, const sm_market *m, const sm_head *h,
                 uint64_t now_ms, s_run_buf *b, sm_entry *e, sm_salvage_report *r)
{
    sm_hash prev;
    memset(prev.b, 0, sizeof prev.b);
    uint64_t next = 1;
    const char *why = NULL;
    int rc = 0;
    while (next <= h->seq && !why) {
        b->n = 0;
        rc = sm_ledger_read(src, &h->origin, next, S_SALVAGE_RUN, s_collect, b);
        if (rc != 0 || b->n == 0) {
            why = "its log cannot be read";
            break;
        }
        size_t good = 0;
        for (size_t i = 0; i < b->n && !why; i++) {
            const sm_signed *s = &b->run[i];
            sm_hash link;
            if ((rc = sm_entry_decode(s->bytes, s->len, e)) != 0)
                why = "it does not decode";
            else if (memcmp(e->origin.b, h->origin.b, SM_KEY_BYTES) != 0
                     || e->seq != next + i
                     || memcmp(e->market.b, m->market.b, SM_KEY_BYTES) != 0)
                why = "it names another origin, seq or market";
            else if (memcmp(e->prev.b, prev.b, SM_HASH_BYTES) != 0)
                why = "it does not link to the entry before";
            else if ((rc = sm_entry_verify(s->bytes, s->len, s->sig, &h->origin)) != 0)
                why = "its signature does not verify";
            if (why)
                break;
            sm_entry_link(s->bytes, s->len, s->sig, &link);
            prev = link;
            good++;
        }
        if (good) {
            sm_ingest_result res;
            memset(&res, 0, sizeof res);
            rc = sm_ledger_ingest(dst, b->run, good, now_ms, &res);
            r->kept += res.accepted + res.duplicates;
            if (rc != 0) {
                why = "the new store refused it";
                next += res.accepted + res.duplicates;
                break;
            }
        }
        next += good;
    }
    if (why) {
        r->damaged_origins++;
        r->dropped += h->seq >= next ? h->seq - next + 1 : 0;
        if (!r->what[0]) {
            char hex[SM_ID_HEX_BYTES + 1];
            sm_id_format(&h->origin, hex);
            snprintf(r->what, sizeof r->what, "origin %.16s seq %llu: %s", hex,
                     (unsigned long long) next, why);
        }
    }
    r->origins++;
}

static void
s_salvage_child(int out, const char *from_store, const char *to_store,
                const sm_id *self_id, uint64_t now_ms)
{
    sm_salvage_report r;
    memset(&r, 0, sizeof r);
    sm__store_salvage_mode(true);
    sm_ledger_opts ro = { .read_only = true }, rw = { 0 };
    int err = 0;
    sm_ledger *src = sm_ledger_open(from_store, &ro, &err), *dst = NULL;
    s_run_buf *b = calloc(1, sizeof *b);
    sm_entry *e = malloc(sizeof *e);
    s_head_list heads = { calloc(SM_MEMBERS_MAX, sizeof(sm_head)), 0, SM_MEMBERS_MAX };
    if (b)
        b->bytes = malloc(S_SALVAGE_RUN * sizeof *b->bytes);
    sm__store_salvage_mode(false);
    if (!b || !b->bytes || !e || !heads.heads) {
        r.err = SM_ENOMEM;
        goto done;
    }
    if (!(dst = sm_ledger_open(to_store, &rw, &err))) {
        r.err = err;
        snprintf(r.what, sizeof r.what, "cannot create the new store: %s", sm_strerror(err));
        goto done;
    }
    if (!src) {
        r.err = err;
        snprintf(r.what, sizeof r.what, "the damaged store cannot be opened (%s): nothing "
                 "could be kept", sm_strerror(err));
        goto done;
    }
    sm_market m;
    if ((err = sm_ledger_market(src, &m)) != 0
        || (err = sm_ledger_copy_market(dst, src)) != 0) {
        r.err = err;
        snprintf(r.what, sizeof r.what, "the market record cannot be read (%s)",
                 sm_strerror(err));
        goto done;
    }
    r.has_market = true;
    sm_ledger_heads(src, s_head_add, &heads);
    /* The organiser's log first: its roster admits the other origins. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < heads.n; i++) {
            bool org = memcmp(heads.heads[i].origin.b, m.market.b, SM_KEY_BYTES) == 0;
            if (org != (pass == 0))
                continue;
            uint32_t damaged = r.damaged_origins;
            s_salvage_origin(src, dst, &m, &heads.heads[i], now_ms, b, e, &r);
            if (self_id && memcmp(heads.heads[i].origin.b, self_id->b, SM_KEY_BYTES) == 0)
                r.own_complete = r.damaged_origins == damaged;
        }
    }
    bool confirmed = false;
    if (r.own_complete && sm_ledger_own_confirmed(src, &confirmed) == 0 && confirmed)
        sm_ledger_confirm_own(dst);
    r.own_confirmed = confirmed && r.own_complete;
done:
    sm_ledger_destroy(&src);
    sm_ledger_destroy(&dst);
    if (b)
        free(b->bytes);
    free(b);
    free(e);
    free(heads.heads);
    const uint8_t *p = (const uint8_t *) &r;
    size_t left = sizeof r;
    while (left) {
        ssize_t n = write(out, p, left);
        if (n <= 0 && errno != EINTR)
            _exit(3);
        if (n > 0) {
            p += n;
            left -= (size_t) n;
        }
    }
    _exit(0);
}

int
sm_integrity_salvage(const char *from_store, const char *to_store, const sm_id *self_id,
                     uint64_t now_ms, sm_salvage_report *report)
{
    assert(from_store && to_store && report);
    memset(report, 0, sizeof *report);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return report->err = SM_EIO;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return report->err = SM_EIO;
    }
    if (pid == 0) {
        close(fds[0]);
        s_salvage_child(fds[1], from_store, to_store, self_id, now_ms);
    }
    close(fds[1]);
    uint8_t *p = (uint8_t *) report;
    size_t got = 0;
    while (got < sizeof *report) {
        ssize_t n = read(fds[0], p + got, sizeof *report - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t) n;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != sizeof *report) {
        memset(report, 0, sizeof *report);
        report->err = SM_EDAMAGED;
        report->faulted = WIFSIGNALED(status);
        snprintf(report->what, sizeof report->what, "reading the damaged store %s "
                 "(status %d): what was copied before is kept",
                 WIFSIGNALED(status) ? "faulted" : "failed", status);
        return report->err;
    }
    report->what[sizeof report->what - 1] = 0;
    return report->err;
}
