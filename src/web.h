/*  The web thread: HTTP, the pages and websockets over libwebsockets
    (README: architecture).

    One libwebsockets service loop on one thread.  It answers reads from
    LMDB read transactions (through api.c), hands writes to the core thread
    and answers each only after the core has committed it.  The core wakes
    the loop (sm_web_wake -> lws_cancel_service); the loop then collects the
    answers, rebuilds the stock snapshot if the state moved (once per wake,
    however many commits: coalesced) and queues the delta to every websocket
    client.  A client whose unsent queue passes ws_queue_bytes_max is
    dropped, so a slow phone never slows the others.

    This is the only module that includes libwebsockets.h.                   */
#ifndef SM_WEB_H
#define SM_WEB_H

#include <stdint.h>
#include "api.h"
#include "auth.h"
#include "config.h"
#include "core.h"
#include "metrics.h"

typedef struct {
    const sm_config *config;   /* borrowed: listen address and limits */
    sm_ledger *ledger;         /* borrowed: reads */
    sm_core *core;             /* borrowed: writes */
    sm_metrics *metrics;       /* borrowed; may be NULL */
    sm_id node;
    sm_auth *auth;             /* borrowed: tokens, devices, scopes (the
                                  web thread's alone while running) */
    const char *tls_cert;      /* borrowed: PEM files of the HTTPS listener */
    const char *tls_key;       /*   ([http] tls); NULL = no HTTPS */
    const char *pair_url;      /* borrowed: "https://HOST:PORT" for pairing
                                  links; NULL = none */
} sm_web_opts;

typedef struct sm_web sm_web;

/*  Create the server and bind the listen address.  NULL and *err (SM_EIO
    with a log line saying why, e.g. the port is taken) on failure.          */
sm_web *sm_web_new(const sm_web_opts *opts, int *err);
/*  Serve until sm_web_stop; then answer the writes still in flight
    (bounded: a few seconds) and return.  Call on the web thread.            */
int sm_web_run(sm_web *self);
/*  From any thread: make sm_web_run return.                                */
void sm_web_stop(sm_web *self);
/*  From any thread (the core's wake callback): new answers or state.       */
void sm_web_wake(void *self);
/*  The port actually bound (useful with port 0).                           */
int sm_web_port(sm_web *self);
/*  The HTTPS port bound, or 0 without HTTPS.                               */
int sm_web_tls_port(sm_web *self);
/*  The poster (/poster, www/poster.html): the stall's name and a QR code of
    the stock page's URL for phones, served as SVG at /poster.svg (its
    <title> the name, its <desc> the URL).  Call before sm_web_run; both
    copied.  0, SM_ETOOBIG (a URL too long for a QR code) or SM_ENOMEM; until
    it succeeds /poster.svg is 404.                                          */
int sm_web_set_poster(sm_web *self, const char *stall_name, const char *stock_url);
/*  From any thread: how many times the event loop has turned.  A count
    that stays still across a sm_web_wake is a loop that is stuck (the
    service watchdog asks).                                                   */
uint64_t sm_web_turns(sm_web *self);
/*  Free; safe with NULL and twice.  Not while sm_web_run runs.             */
void sm_web_destroy(sm_web **self_p);

#endif
