/*  Integrity of a data directory (integrity.h): the directory lock and the
    store check run in a child process.

    Lock file: STORE_DIR/run.lock, mode 0600, holding the holder's pid in
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
#include "store.h"

#define S_LOCK_FILE "run.lock"

struct sm_dirlock {
    int fd;
};

static bool
s_lock_path(const char *store_dir, char out[PATH_MAX])
{
    return snprintf(out, PATH_MAX, "%s/%s", store_dir, S_LOCK_FILE) < PATH_MAX;
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
sm_dirlock_take(const char *store_dir, pid_t *holder, int *err)
{
    assert(store_dir && err);
    char path[PATH_MAX];
    if (holder)
        *holder = 0;
    if (!s_lock_path(store_dir, path)) {
        *err = SM_EINVAL;
        return NULL;
    }
    if (mkdir(store_dir, 0700) != 0 && errno != EEXIST) {
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
sm_dirlock_holder(const char *store_dir)
{
    assert(store_dir);
    char path[PATH_MAX];
    if (!s_lock_path(store_dir, path))
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
