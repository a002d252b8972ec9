/*  Service manager notifications (the sd_notify protocol), without
    libsystemd: a node started by systemd with Type=notify tells it when it
    is ready, when it stops, and that it is alive (the watchdog).

    The protocol: one datagram of newline-separated VAR=VALUE lines to the
    AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the
    abstract namespace).  With the variable unset every call does nothing
    and succeeds, so the node runs the same under a terminal, a container or
    another supervisor.  Nothing here blocks: the socket is non-blocking and
    a message the manager cannot take is dropped (the next one follows).     */
#ifndef SM_NOTIFY_H
#define SM_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sm_notify sm_notify;

/*  Read $NOTIFY_SOCKET and $WATCHDOG_USEC/$WATCHDOG_PID once.  Returns a
    notifier (caller destroys) that is inert when the variable is unset;
    NULL only when out of memory.  A variable that does not parse (a path
    too long for sockaddr_un, a watchdog interval that is not a number) is
    reported in why[0..whylen) and the notifier is inert: a node that cannot
    notify still runs (and systemd then says the start timed out).          */
sm_notify *sm_notify_new(char *why, size_t whylen);
void sm_notify_destroy(sm_notify **self_p);

/*  True if a manager listens ($NOTIFY_SOCKET set and usable).               */
bool sm_notify_enabled(const sm_notify *self);

/*  Send `state` ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...";
    several lines separated by '\n').  0, or SM_EIO if the datagram could
    not be sent; 0 when inert.                                                */
int sm_notify_send(sm_notify *self, const char *state);

/*  How often to send WATCHDOG=1, in milliseconds: half of WATCHDOG_USEC
    (as sd_watchdog_enabled advises), or 0 when no watchdog is asked for
    (unset, 0, or WATCHDOG_PID naming another process).                      */
uint64_t sm_notify_watchdog_ms(const sm_notify *self);

#endif
