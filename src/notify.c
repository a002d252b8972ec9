/*  Service manager notifications: a small implementation of the sd_notify
    protocol (systemd's sd_notify(3), "Notes": the datagram format is stable
    and documented for exactly this use), so the node needs no libsystemd.

    $NOTIFY_SOCKET is an absolute path, or a name in Linux's abstract socket
    namespace written with a leading '@' (sent as a leading NUL byte, and
    the address length counts only the name's bytes: abstract names are not
    NUL-terminated).  Each message is one sendto() on a SOCK_DGRAM socket
    opened once, close-on-exec and non-blocking.

    The node sends READY=1 once the store is open and the HTTP and mesh
    listeners are bound (so /readyz answers 200 when the manager starts the
    units that wait for it), WATCHDOG=1 at half the WATCHDOG_USEC interval
    from its main thread, and STOPPING=1 when SIGTERM arrives.               */
#include "notify.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "stallmesh/error.h"

#define SM__NOTIFY_STATE_BYTES_MAX 1024u   /* one message; ours are a line */

struct sm_notify {
    int fd;                    /* -1 when inert */
    struct sockaddr_un addr;
    socklen_t addr_len;
    uint64_t watchdog_ms;      /* 0 = no watchdog */
};

/*  Parse a decimal unsigned number that fills all of `s`; false if it is
    not one or overflows.                                                    */
static bool
s_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

sm_notify *
sm_notify_new(char *why, size_t whylen)
{
    assert(why && whylen > 0);
    why[0] = 0;
    sm_notify *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->fd = -1;

    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return self;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof self->addr.sun_path) {
        snprintf(why, whylen, "NOTIFY_SOCKET is not an absolute path or @name that fits "
                 "a socket address (%zu bytes): the service manager will not hear from "
                 "this node", len);
        return self;
    }
    self->addr.sun_family = AF_UNIX;
    memcpy(self->addr.sun_path, path, len);
    if (path[0] == '@')
        self->addr.sun_path[0] = 0;
    /* A path is sent with its NUL; an abstract name is exactly its bytes. */
    self->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len
                                 + (path[0] == '/'));
    self->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (self->fd < 0) {
        snprintf(why, whylen, "cannot open a socket for NOTIFY_SOCKET: %s", strerror(errno));
        return self;
    }

    /* The watchdog applies to this process only if WATCHDOG_PID is unset
       or names it (sd_watchdog_enabled(3)). */
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    uint64_t us = 0, p = 0;
    if (usec && *usec) {
        if (!s_parse_u64(usec, &us))
            snprintf(why, whylen, "WATCHDOG_USEC=%s is not a number of microseconds: "
                     "no watchdog pings", usec);
        else if (pid && *pid && (!s_parse_u64(pid, &p) || p != (uint64_t) getpid()))
            us = 0;
        self->watchdog_ms = us / 2000u;
        if (us > 0 && self->watchdog_ms == 0)
            self->watchdog_ms = 1;
    }
    return self;
}

void
sm_notify_destroy(sm_notify **self_p)
{
    assert(self_p);
    sm_notify *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0)
        close(self->fd);
    free(self);
    *self_p = NULL;
}

bool
sm_notify_enabled(const sm_notify *self)
{
    return self && self->fd >= 0;
}

int
sm_notify_send(sm_notify *self, const char *state)
{
    assert(state);
    if (!sm_notify_enabled(self))
        return 0;
    size_t len = strnlen(state, SM__NOTIFY_STATE_BYTES_MAX + 1);
    assert(len <= SM__NOTIFY_STATE_BYTES_MAX);
    for (int tries = 0; tries < 4; tries++) {
        ssize_t n = sendto(self->fd, state, len, MSG_NOSIGNAL,
                           (const struct sockaddr *) &self->addr, self->addr_len);
        if (n == (ssize_t) len)
            return 0;
        if (n < 0 && errno != EINTR)
            break;
    }
    return SM_EIO;
}

uint64_t
sm_notify_watchdog_ms(const sm_notify *self)
{
    return sm_notify_enabled(self) ? self->watchdog_ms : 0;
}
