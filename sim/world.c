/*  The world of one run: the event queue, the simulated network, the
    faults and the phases (sim.h).

    Time is simulated milliseconds from 0; a node's wall clock is
    SIM_EPOCH_MS + time + its offset (skews and jumps).  Everything that
    happens is an event in one queue ordered by (time, insertion), so a run
    is a pure function of its seed.

    The network.  A pair of nodes is `linked` when the network lets them
    reach each other; a connection (a session of the engine) exists while
    they are linked and both processes run.  It is torn down by a cut or a
    crash (the pair's `session` number moves on: what was in flight is
    lost) and each end's engine hears of it after a detection delay, as a
    heartbeat timeout would tell it; a new connection is announced to each
    end separately, and a message arriving before its receiver was told is
    announced first (as the ROUTER does on a first message).  Each
    direction has its own loss, duplication, replay, delay and reordering;
    a direction can also be cut alone for a while (a one-way link).

    Phases.  SETUP builds the market (the organiser admits every member,
    members join and fetch the roster by gossip).  CHAOS runs the clients'
    workload under this seed's fault mix for cfg.ticks simulated seconds
    (longer while a stall is away for hours).  HEAL stops every fault,
    restores links and processes, and waits until every honest node has the
    same digest (liveness: within SIM_HEAL_MS_MAX), then the final checks
    run.  PROBE lines the honest nodes up, pauses every timer, makes one
    sale at an end and checks it reaches the other end by pushes and relays
    alone.                                                                   */
#include "sim.h"

#include <assert.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logger.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

/* ---- names ---------------------------------------------------------------- */

static const char *const s_fault_names[SIM_F_COUNT] = {
    "loss", "dup", "reorder", "delay", "partition", "crash", "offline",
    "restore", "clock", "hostile", "damage",
};

static const char *const s_counter_names[SIM_C_COUNT] = {
    "lost", "duplicated", "replayed", "reordered", "delayed", "splits",
    "link_cuts", "one_way", "crashes", "torn_batches", "offline_hours",
    "restores", "wipes", "clock_jumps", "hostile_msgs", "forks_seen",
    "delivered", "sales_acked", "writes", "writes_refused", "parked",
    "holds_expired", "sales_stuck", "recovering_for_good", "holds_forwarded",
    "rebalance_asks", "damaged", "repaired", "hold_resales_refused", "draws_verified",
    "draws_voided",
};

const char *
sim_fault_name(int f)
{
    return f >= 0 && f < SIM_F_COUNT ? s_fault_names[f] : "?";
}

const char *
sim_counter_name(int c)
{
    return c >= 0 && c < SIM_C_COUNT ? s_counter_names[c] : "?";
}

int
sim_faults_parse(const char *text, uint32_t *mask, bool *random)
{
    *mask = 0;
    *random = false;
    if (strcmp(text, "random") == 0) {
        *random = true;
        return 0;
    }
    if (strcmp(text, "all") == 0) {
        *mask = SIM_F_ALL;
        return 0;
    }
    if (strcmp(text, "none") == 0)
        return 0;
    char buf[256];
    if (strlen(text) >= sizeof buf)
        return -1;
    strcpy(buf, text);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int f = 0;
        while (f < SIM_F_COUNT && strcmp(tok, s_fault_names[f]) != 0)
            f++;
        if (f == SIM_F_COUNT)
            return -1;
        *mask |= 1u << f;
    }
    return 0;
}

/* ---- reporting ------------------------------------------------------------ */

void
sim_say(sim_world *w, const char *fmt, ...)
{
    if (!w->cfg.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%9.3f] ", (double) w->now / 1000.0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void
sim_fail(sim_world *w, const char *fmt, ...)
{
    if (w->failed)
        return;
    w->failed = true;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(w->failure, sizeof w->failure, "t=%.3fs: ", (double) w->now / 1000.0);
    vsnprintf(w->failure + n, sizeof w->failure - (size_t) n, fmt, ap);
    va_end(ap);
    sim_say(w, "VIOLATION %s", w->failure);
}

void
sim_trace(sim_world *w, const void *bytes, size_t len)
{
    sm_hasher_update(&w->trace, bytes, len);
}

void
sim_trace_u64(sim_world *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    sm_hasher_update(&w->trace, b, sizeof b);
}

/* ---- the event queue: a binary heap on (at, order) ------------------------ */

static bool
s_before(const sim_event *a, const sim_event *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

void
sim_schedule(sim_world *w, uint64_t at, int kind, int a, int b, uint32_t gen,
             uint64_t arg, uint8_t *bytes, size_t len)
{
    if (w->nheap == w->capheap) {
        size_t cap = w->capheap ? 2 * w->capheap : 1024;
        sim_event *h = realloc(w->heap, cap * sizeof *h);
        assert(h);
        w->heap = h;
        w->capheap = cap;
    }
    sim_event e = { at < w->now ? w->now : at, w->order++, kind, a, b, gen, arg, bytes, len };
    size_t i = w->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!s_before(&e, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = e;
}

static bool
s_pop(sim_world *w, sim_event *out)
{
    if (w->nheap == 0)
        return false;
    *out = w->heap[0];
    sim_event last = w->heap[--w->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const sim_event *best = &last;
        if (l < w->nheap && s_before(&w->heap[l], best)) {
            m = l;
            best = &w->heap[l];
        }
        if (r < w->nheap && s_before(&w->heap[r], best))
            m = r;
        if (m == i)
            break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (w->nheap > 0)
        w->heap[i] = last;
    return true;
}

/* ---- the network ---------------------------------------------------------- */

bool
sim_link_up(const sim_world *w, int i, int j)
{
    return w->connected[i][j] && w->node[i].running && w->node[j].running;
}

static uint8_t *
s_copy(const uint8_t *bytes, size_t len)
{
    uint8_t *c = malloc(len ? len : 1);
    assert(c);
    memcpy(c, bytes, len);
    return c;
}

/*  One message from i to j enters the network: it may be lost, delayed,
    overtaken, duplicated, and an older message may be replayed with it.  */
static void
s_transmit(sim_world *w, int i, int j, const uint8_t *bytes, size_t len)
{
    sim_link *l = &w->link[i][j];
    sim_own_fetch_sent(w, i, j, bytes, len);
    if (!sim_link_up(w, i, j))
        return;                        /* no connection: gone */
    if (w->now < l->one_way_until) {
        w->counters[SIM_C_LOST]++;
        return;
    }
    if (l->loss_pm && sim_chance(&w->rng, l->loss_pm)) {
        w->counters[SIM_C_LOST]++;
        return;
    }
    uint64_t at = w->now + sim_range(&w->rng, l->delay_min_ms, l->delay_max_ms);
    if (l->delay_max_ms > 200)
        w->counters[SIM_C_DELAYED]++;
    if (l->reorder) {
        if (at < l->last_at)
            w->counters[SIM_C_REORDERED]++;
    } else if (at < l->last_at) {
        at = l->last_at;               /* one FIFO a direction */
    }
    if (at > l->last_at)
        l->last_at = at;
    uint32_t session = w->session[i][j];
    sim_schedule(w, at, SIM_EV_DELIVER, i, j, session, 0, s_copy(bytes, len), len);
    if (l->dup_pm && sim_chance(&w->rng, l->dup_pm)) {
        w->counters[SIM_C_DUPLICATED]++;
        /* arg 2: a duplicate, on its connection */
        sim_schedule(w, at + sim_below(&w->rng, 300), SIM_EV_DELIVER, i, j, session, 2,
                     s_copy(bytes, len), len);
    }
    if (l->replay_pm && sim_chance(&w->rng, l->replay_pm)) {
        uint32_t k = (uint32_t) sim_below(&w->rng, SIM_REPLAY_RING);
        if (l->ring[k]) {
            w->counters[SIM_C_REPLAYED]++;
            /* arg 1: a replay, delivered on whatever connection is current */
            sim_schedule(w, at + sim_below(&w->rng, 2000), SIM_EV_DELIVER, i, j, session, 1,
                         s_copy(l->ring[k], l->ring_len[k]), l->ring_len[k]);
        }
    }
    if ((l->dup_pm || l->replay_pm) && len <= 64 * 1024) {
        uint32_t k = l->ring_next++ % SIM_REPLAY_RING;
        free(l->ring[k]);
        l->ring[k] = s_copy(bytes, len);
        l->ring_len[k] = len;
    }
}

void
sim_send_raw(sim_world *w, int i, int j, const uint8_t *bytes, size_t len)
{
    s_transmit(w, i, j, bytes, len);
}

void
sim_drain(sim_world *w, int i)
{
    sim_node *nd = &w->node[i];
    if (!nd->gossip)
        return;
    const uint8_t *msg;
    size_t len;
    for (int j = 0; j < w->n; j++) {
        if (j == i)
            continue;
        /* A slow hostile reader takes little: the engine's queue to it
           fills (and must stay bounded). */
        bool slow = j == w->hostile && w->slow_reader_bytes && w->phase == SIM_PHASE_CHAOS;
        size_t taken = 0;
        while ((!slow || taken < 64 * 1024)
               && sm_gossip_next_to(nd->gossip, &w->node[j].id.pub, &msg, &len)) {
            taken += len;
            s_transmit(w, i, j, msg, len);
        }
    }
    /* Anything queued for a node that is not one of the world's (a name
       the hostile member made up) is discarded. */
    if (!(w->hostile >= 0 && w->slow_reader_bytes && w->phase == SIM_PHASE_CHAOS)) {
        sm_id to;
        while (sm_gossip_next(nd->gossip, &to, &msg, &len))
            ;
    }
}

/* ---- connections ---------------------------------------------------------- */

/*  Tell node i's engine that j is up (a new connection).                  */
static void
s_peer_up(sim_world *w, int i, int j)
{
    sim_node *a = &w->node[i];
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://10.0.0.%d:7400", j + 1);
    sm_gossip_peer_up(a->gossip, &w->node[j].id.pub, ep, sim_node_now(w, a));
    w->sees_up[i][j] = true;
    w->sees_session[i][j] = w->session[i][j];
    sim_own_fetch_reset(w, i, j);
    sim_drain(w, i);
}

static void
s_peer_down(sim_world *w, int i, int j)
{
    sim_node *a = &w->node[i];
    if (!w->sees_up[i][j] || !a->gossip)
        return;
    sm_gossip_peer_down(a->gossip, &w->node[j].id.pub, sim_node_now(w, a));
    w->sees_up[i][j] = false;
    sim_own_fetch_reset(w, i, j);
    sim_drain(w, i);
}

/*  A connection between i and j exists now (both run, linked): each end is
    told after its own small delay.                                          */
static void
s_connect(sim_world *w, int i, int j)
{
    if (!sim_link_up(w, i, j))
        return;
    uint32_t s = ++w->session[i][j];
    w->session[j][i] = s;
    sim_schedule(w, w->now + sim_range(&w->rng, 1, 150), SIM_EV_UP, i, j, s, 0, NULL, 0);
    sim_schedule(w, w->now + sim_range(&w->rng, 1, 150), SIM_EV_UP, j, i, s, 0, NULL, 0);
}

/*  The connection between i and j is gone: what is in flight is lost, and
    each running end notices within a heartbeat timeout (0..5 s).          */
static void
s_teardown(sim_world *w, int i, int j)
{
    w->session[i][j]++;
    w->session[j][i] = w->session[i][j];
    w->link[i][j].last_at = w->link[j][i].last_at = 0;
    uint32_t s = w->session[i][j];
    uint64_t detect = w->phase == SIM_PHASE_PROBE ? 0 : 5000;
    if (w->node[i].running)
        sim_schedule(w, w->now + sim_below(&w->rng, detect + 1), SIM_EV_DOWN, i, j, s, 0, NULL, 0);
    if (w->node[j].running)
        sim_schedule(w, w->now + sim_below(&w->rng, detect + 1), SIM_EV_DOWN, j, i, s, 0, NULL, 0);
}

static void
s_link_set(sim_world *w, int i, int j, bool linked)
{
    if (i == j || w->connected[i][j] == linked)
        return;
    bool was = sim_link_up(w, i, j);
    w->connected[i][j] = w->connected[j][i] = linked;
    if (was && !linked)
        s_teardown(w, i, j);
    else if (linked)
        s_connect(w, i, j);
}

/*  Node i's process stopped or started: its connections follow.            */
static void
s_node_links(sim_world *w, int i, bool starting)
{
    for (int j = 0; j < w->n; j++) {
        if (j == i || !w->connected[i][j] || !w->node[j].running)
            continue;
        if (starting)
            s_connect(w, i, j);
        else
            s_teardown(w, i, j);
    }
}

/* ---- deliveries ----------------------------------------------------------- */

static bool
s_fatal(int rc)
{
    return rc == SM_ENOSPC || rc == SM_EIO || rc == SM_ENOMEM || rc == SM_ECORRUPT;
}

static void
s_deliver(sim_world *w, const sim_event *e)
{
    int i = e->a, j = e->b;
    if (!sim_link_up(w, i, j))
        return;
    if (e->arg != 1 && e->gen != w->session[i][j])
        return;                        /* sent on a connection that is gone */
    sim_node *to = &w->node[j];
    if (!w->sees_up[j][i] || w->sees_session[j][i] != w->session[i][j])
        s_peer_up(w, j, i);            /* a first message announces its sender */
    w->counters[SIM_C_DELIVERED]++;
    /* Bounded work: the honest nodes must not talk faster and faster (the
       hostile member's floods are answered one for one, not counted). */
    if (i == w->hostile || j == w->hostile) {
    } else if (w->now / 1000 != w->storm_second) {
        w->storm_second = w->now / 1000;
        w->storm_count = 0;
    } else if (++w->storm_count > SIM_STORM_PER_NODE_S * (uint64_t) (w->n * w->n)) {
        sim_fail(w, "message storm: more than %llu messages delivered in one simulated second",
                 (unsigned long long) (SIM_STORM_PER_NODE_S * (uint64_t) (w->n * w->n)));
        return;
    }
    if (e->len >= 2 && e->bytes[1] <= SM_MSG_TYPE_MAX)
        w->delivered_by_type[e->bytes[1]]++;
    sim_damage_on_deliver(w, i, j, e->bytes, e->len, e->arg == 1);
    int rc = sim_node_receive(w, to, i, e->bytes, e->len, e->arg == 0);
    if (rc == 0)
        sim_own_fetch_heads(w, i, j, e->bytes, e->len);
    sim_trace_u64(w, e->len);
    sim_trace(w, e->bytes, e->len);
    sim_trace_u64(w, (uint64_t) (int64_t) rc);
    if (s_fatal(rc))
        sim_fail(w, "node %d: the engine failed on a message from node %d: %s", j, i,
                 sm_strerror(rc));
    if (j == w->hostile)
        sim_hostile_capture(w, e->bytes, e->len);
}

/* ---- faults --------------------------------------------------------------- */

enum {
    S_FX_LINKS = 1,      /* change a link's loss/dup/delay/reorder */
    S_FX_SPLIT,          /* a partition in two */
    S_FX_HEAL_SPLIT,     /* its links come back, in random order */
    S_FX_CUT,            /* one link cut */
    S_FX_RESTORE_LINK,   /* arg: i * 64 + j */
    S_FX_ONE_WAY,        /* a one-way link */
    S_FX_CRASH,
    S_FX_OFFLINE,
    S_FX_BACK,           /* arg: node back from offline */
    S_FX_RESTORE,
    S_FX_CLOCK,
    S_FX_SNAPSHOT,
    S_FX_ONE_WAY_TIMEOUT,  /* a one-way link's connection times out */
    S_FX_DAMAGE,         /* a stored entry flipped on disk (damage.c) */
};

static bool
s_on(const sim_world *w, int f)
{
    return (w->faults >> f) & 1u;
}

/*  Random parameters for the direction i->j under this run's faults.     */
static void
s_link_params(sim_world *w, int i, int j)
{
    sim_link *l = &w->link[i][j];
    l->loss_pm = s_on(w, SIM_F_LOSS) ? (uint32_t) sim_below(&w->rng, 301) : 0;
    l->dup_pm = s_on(w, SIM_F_DUP) ? (uint32_t) sim_below(&w->rng, 501) : 0;
    l->replay_pm = s_on(w, SIM_F_DUP) ? (uint32_t) sim_below(&w->rng, 101) : 0;
    l->reorder = s_on(w, SIM_F_REORDER) && sim_chance(&w->rng, 500);
    l->delay_min_ms = 1 + (uint32_t) sim_below(&w->rng, 5);
    l->delay_max_ms = l->delay_min_ms + (uint32_t) sim_below(&w->rng, 40);
    if (s_on(w, SIM_F_DELAY) && sim_chance(&w->rng, 300)) {
        l->delay_min_ms = (uint32_t) sim_range(&w->rng, 20, 500);
        l->delay_max_ms = l->delay_min_ms + (uint32_t) sim_range(&w->rng, 100, 4000);
    }
    if (l->reorder && l->delay_max_ms < 50)
        l->delay_max_ms = 50;
}

static void
s_link_benign(sim_link *l)
{
    l->loss_pm = l->dup_pm = l->replay_pm = 0;
    l->reorder = false;
    l->delay_min_ms = 1;
    l->delay_max_ms = 20;
    l->one_way_until = 0;
}

static int
s_pick_node(sim_world *w, bool honest_only)
{
    int n = honest_only && w->hostile >= 0 ? w->n - 1 : w->n;
    return (int) sim_below(&w->rng, (uint64_t) n);
}

/*  While a stall is away for hours the market is quiet: clients and
    faults come ten times less often (what the hours test is catching up
    and healing, not thousands more writes to copy around).               */
uint64_t
sim_pace(const sim_world *w)
{
    for (int i = 0; i < w->n; i++)
        if (w->node[i].offline)
            return 10;
    return 1;
}

static void
s_schedule_fault(sim_world *w, uint64_t in_ms, int fx, uint64_t arg)
{
    sim_schedule(w, w->now + in_ms, SIM_EV_FAULT, fx, 0, 0, arg, NULL, 0);
}

/*  The mean time between faults of each enabled kind.                     */
static uint64_t
s_fault_gap(sim_world *w)
{
    return sim_range(&w->rng, 5000, 40000) * sim_pace(w);
}

static void
s_fault(sim_world *w, const sim_event *e)
{
    if (w->phase != SIM_PHASE_CHAOS)
        return;
    int fx = e->a;
    sim_trace_u64(w, (uint64_t) fx);
    switch (fx) {
    case S_FX_LINKS: {
        int i = s_pick_node(w, false), j = s_pick_node(w, false);
        if (i != j)
            s_link_params(w, i, j);
        s_schedule_fault(w, s_fault_gap(w), S_FX_LINKS, 0);
        break;
    }
    case S_FX_SPLIT: {
        /* Each node on a side at random; the links across are cut. */
        uint32_t side = (uint32_t) sim_rand(&w->rng);
        int cut = 0;
        for (int i = 0; i < w->n; i++)
            for (int j = i + 1; j < w->n; j++)
                if (((side >> i) & 1u) != ((side >> j) & 1u) && w->connected[i][j]) {
                    s_link_set(w, i, j, false);
                    cut++;
                }
        if (cut) {
            w->counters[SIM_C_SPLITS]++;
            sim_say(w, "partition: %d links cut (sides %#x)", cut, side & ((1u << w->n) - 1));
        }
        s_schedule_fault(w, sim_range(&w->rng, 5000, 90000), S_FX_HEAL_SPLIT, side);
        break;
    }
    case S_FX_HEAL_SPLIT: {
        uint32_t side = (uint32_t) e->arg;
        for (int i = 0; i < w->n; i++)
            for (int j = i + 1; j < w->n; j++)
                if (((side >> i) & 1u) != ((side >> j) & 1u) && !w->severed[i][j]
                    && !w->node[i].offline && !w->node[j].offline)
                    s_schedule_fault(w, sim_below(&w->rng, 8000), S_FX_RESTORE_LINK,
                                     (uint64_t) i * 64 + (uint64_t) j);
        s_schedule_fault(w, s_fault_gap(w) * 2, S_FX_SPLIT, 0);
        break;
    }
    case S_FX_CUT: {
        int i = s_pick_node(w, false), j = s_pick_node(w, false);
        if (i != j && w->connected[i][j]) {
            s_link_set(w, i, j, false);
            w->counters[SIM_C_CUTS]++;
            sim_say(w, "link %d-%d cut", i, j);
            s_schedule_fault(w, sim_range(&w->rng, 500, 60000), S_FX_RESTORE_LINK,
                             (uint64_t) i * 64 + (uint64_t) j);
        }
        s_schedule_fault(w, s_fault_gap(w) / 2, S_FX_CUT, 0);
        break;
    }
    case S_FX_RESTORE_LINK: {
        int i = (int) (e->arg / 64), j = (int) (e->arg % 64);
        if (!w->severed[i][j] && !w->node[i].offline && !w->node[j].offline) {
            sim_say(w, "link %d-%d restored", i, j);
            s_link_set(w, i, j, true);
        }
        break;
    }
    case S_FX_ONE_WAY: {
        int i = s_pick_node(w, false), j = s_pick_node(w, false);
        if (i != j) {
            uint64_t len = sim_range(&w->rng, 500, 20000);
            w->link[i][j].one_way_until = w->now + len;
            w->counters[SIM_C_ONE_WAY]++;
            sim_say(w, "link %d->%d one way for %llu ms", i, j, (unsigned long long) len);
            /* A connection that carries nothing back for 5 s is closed. */
            if (len > 5000 && sim_chance(&w->rng, 500)) {
                s_schedule_fault(w, 5000, S_FX_ONE_WAY_TIMEOUT, (uint64_t) i * 64 + (uint64_t) j);
            }
        }
        s_schedule_fault(w, s_fault_gap(w), S_FX_ONE_WAY, 0);
        break;
    }
    case S_FX_ONE_WAY_TIMEOUT: {
        int i = (int) (e->arg / 64), j = (int) (e->arg % 64);
        if (w->connected[i][j]) {
            s_link_set(w, i, j, false);
            s_schedule_fault(w, sim_range(&w->rng, 100, 10000), S_FX_RESTORE_LINK, e->arg);
        }
        break;
    }
    case S_FX_CRASH: {
        int i = s_pick_node(w, true);
        sim_node *nd = &w->node[i];
        if (nd->running && !nd->offline) {
            if (sim_chance(&w->rng, 400))
                nd->torn_pending = true;   /* it dies in its next batch */
            else
                sim_crash(w, i, false);
        }
        s_schedule_fault(w, s_fault_gap(w), S_FX_CRASH, 0);
        break;
    }
    case S_FX_OFFLINE: {
        int i = s_pick_node(w, true);
        sim_node *nd = &w->node[i];
        if (nd->running && !nd->offline) {
            uint64_t away = sim_range(&w->rng, 3600000, 3 * 3600000ULL);
            sim_say(w, "node %d goes offline for %.1f h", i, (double) away / 3600000.0);
            w->counters[SIM_C_OFFLINE]++;
            nd->offline = true;
            for (int j = 0; j < w->n; j++)
                s_link_set(w, i, j, false);
            s_schedule_fault(w, away, S_FX_BACK, (uint64_t) i);
        }
        break;
    }
    case S_FX_BACK: {
        int i = (int) e->arg;
        w->node[i].offline = false;
        sim_say(w, "node %d is back", i);
        for (int j = 0; j < w->n; j++)
            if (!w->severed[i][j] && !w->node[j].offline)
                s_schedule_fault(w, sim_below(&w->rng, 5000), S_FX_RESTORE_LINK,
                                 (uint64_t) i * 64 + (uint64_t) j);
        break;
    }
    case S_FX_DAMAGE:
        sim_damage_fault(w);
        s_schedule_fault(w, s_fault_gap(w) * 2, S_FX_DAMAGE, 0);
        break;
    case S_FX_RESTORE: {
        int i = s_pick_node(w, true);
        sim_node *nd = &w->node[i];
        if (nd->running && !nd->offline) {
            bool wipe = !nd->snap[0] || (i != 0 && sim_chance(&w->rng, 250));
            if (wipe && i == 0)
                wipe = false;          /* the organiser's copy made at creation */
            if (wipe || nd->snap[0]) {
                sim_say(w, "node %d: %s", i, wipe ? "store wiped" : "an old copy of its store restored");
                w->counters[wipe ? SIM_C_WIPES : SIM_C_RESTORES]++;
                sim_node_crash(w, nd, false);
                s_node_links(w, i, false);
                sim_node_restore(w, nd, wipe);
                sim_schedule(w, w->now + sim_range(&w->rng, 200, 5000), SIM_EV_RESTART, i, 0,
                             nd->generation, 0, NULL, 0);
            }
        }
        s_schedule_fault(w, s_fault_gap(w) * 3, S_FX_RESTORE, 0);
        break;
    }
    case S_FX_CLOCK: {
        int i = s_pick_node(w, true);
        sim_node *nd = &w->node[i];
        int64_t jump = (int64_t) sim_range(&w->rng, 60000, 2 * 3600000ULL);
        if (sim_chance(&w->rng, 500))
            jump = -jump;
        int64_t to = nd->clock_offset_ms + jump;
        if (to > 5 * 3600000LL || to < -5 * 3600000LL)
            jump = -jump;
        nd->clock_offset_ms += jump;
        w->counters[SIM_C_CLOCK_JUMPS]++;
        sim_say(w, "node %d: clock jumps %+lld s", i, (long long) (jump / 1000));
        s_schedule_fault(w, s_fault_gap(w), S_FX_CLOCK, 0);
        break;
    }
    case S_FX_SNAPSHOT: {
        int i = s_pick_node(w, true);
        if (w->node[i].running)
            sim_node_snapshot(w, &w->node[i]);
        s_schedule_fault(w, sim_range(&w->rng, 3000, 30000), S_FX_SNAPSHOT, 0);
        break;
    }
    }
}

/*  The faults of this run begin.                                          */
static void
s_faults_start(sim_world *w)
{
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < w->n; j++)
            if (i != j)
                s_link_params(w, i, j);
    if (s_on(w, SIM_F_LOSS) || s_on(w, SIM_F_DUP) || s_on(w, SIM_F_REORDER)
        || s_on(w, SIM_F_DELAY))
        s_schedule_fault(w, s_fault_gap(w), S_FX_LINKS, 0);
    if (s_on(w, SIM_F_PARTITION)) {
        s_schedule_fault(w, s_fault_gap(w), S_FX_SPLIT, 0);
        s_schedule_fault(w, s_fault_gap(w), S_FX_CUT, 0);
        s_schedule_fault(w, s_fault_gap(w), S_FX_ONE_WAY, 0);
    }
    if (s_on(w, SIM_F_CRASH))
        s_schedule_fault(w, s_fault_gap(w), S_FX_CRASH, 0);
    if (s_on(w, SIM_F_OFFLINE))
        s_schedule_fault(w, sim_range(&w->rng, 10000, (uint64_t) w->cfg.ticks * 500 + 10000),
                         S_FX_OFFLINE, 0);
    if (s_on(w, SIM_F_RESTORE)) {
        s_schedule_fault(w, sim_range(&w->rng, 1000, 10000), S_FX_SNAPSHOT, 0);
        s_schedule_fault(w, sim_range(&w->rng, 20000, 60000 + (uint64_t) w->cfg.ticks * 500),
                         S_FX_RESTORE, 0);
    }
    if (s_on(w, SIM_F_CLOCK))
        s_schedule_fault(w, s_fault_gap(w), S_FX_CLOCK, 0);
    if (s_on(w, SIM_F_DAMAGE))
        s_schedule_fault(w, s_fault_gap(w), S_FX_DAMAGE, 0);
    if (w->hostile >= 0)
        sim_schedule(w, w->now + sim_range(&w->rng, 1000, 10000), SIM_EV_HOSTILE, w->hostile,
                     0, 0, 0, NULL, 0);
}

/*  Every fault stops: processes restart, links come back (a pair severed
    for the whole run stays so if the rest still connects every node), and
    every link turns benign.                                                */
static void
s_heal(sim_world *w)
{
    sim_say(w, "healing");
    sim_damage_heal(w);
    for (int i = 0; i < w->n; i++) {
        w->node[i].offline = false;
        for (int j = 0; j < w->n; j++)
            if (i != j)
                s_link_benign(&w->link[i][j]);
    }
    for (int i = 0; i < w->n; i++)
        if (!w->node[i].running) {
            sim_node_restart(w, &w->node[i]);
            sim_damage_on_restart(w, &w->node[i]);
            s_node_links(w, i, true);
        }
    for (int i = 0; i < w->n; i++)
        for (int j = i + 1; j < w->n; j++)
            if (!w->severed[i][j])
                s_link_set(w, i, j, true);
}

/* ---- the run -------------------------------------------------------------- */

static void
s_dispatch(sim_world *w, sim_event *e)
{
    sim_trace_u64(w, e->at);
    sim_trace_u64(w, (uint64_t) e->kind);
    sim_trace_u64(w, (uint64_t) e->a * 64 + (uint64_t) e->b);
    switch (e->kind) {
    case SIM_EV_DELIVER:
        s_deliver(w, e);
        break;
    case SIM_EV_TICK: {
        sim_node *nd = &w->node[e->a];
        if (e->gen != nd->generation || !nd->running || w->ticks_paused)
            break;
        sim_node_tick(w, nd);
        sim_schedule(w, w->now + SIM_TICK_MS, SIM_EV_TICK, e->a, 0, nd->generation, 0, NULL, 0);
        break;
    }
    case SIM_EV_WAKE: {
        sim_node *nd = &w->node[e->a];
        if (e->gen == nd->generation && nd->running)
            sim_node_wake(w, nd);
        break;
    }
    case SIM_EV_CLIENT: {
        sim_node *nd = &w->node[e->a];
        if (w->phase != SIM_PHASE_CHAOS && w->phase != SIM_PHASE_SETUP)
            break;
        if (nd->running)
            sim_workload_client(w, nd);
        /* The stall's clients come whether or not its node runs. */
        sim_schedule(w, w->now + sim_range(&w->rng, 200, 4000) * sim_pace(w), SIM_EV_CLIENT,
                     e->a, 0, 0, 0, NULL, 0);
        break;
    }
    case SIM_EV_DROP:
        if (w->phase == SIM_PHASE_CHAOS)
            sim_workload_drop(w, e->arg);
        break;
    case SIM_EV_FAULT:
        s_fault(w, e);
        break;
    case SIM_EV_RESTART: {
        sim_node *nd = &w->node[e->a];
        if (e->gen == nd->generation && !nd->running) {
            sim_say(w, "node %d restarts", e->a);
            sim_node_restart(w, nd);
            sim_damage_on_restart(w, nd);
            s_node_links(w, e->a, true);
        }
        break;
    }
    case SIM_EV_UP:
        if (e->gen == w->session[e->a][e->b] && sim_link_up(w, e->a, e->b)
            && !(w->sees_up[e->a][e->b] && w->sees_session[e->a][e->b] == e->gen))
            s_peer_up(w, e->a, e->b);
        break;
    case SIM_EV_DOWN:
        if (e->gen == w->session[e->a][e->b] && w->node[e->a].running)
            s_peer_down(w, e->a, e->b);
        break;
    case SIM_EV_HOSTILE:
        if (w->phase == SIM_PHASE_CHAOS) {
            sim_hostile_act(w);
            sim_schedule(w, w->now + sim_range(&w->rng, 300, 6000) * sim_pace(w), SIM_EV_HOSTILE,
                         w->hostile, 0, 0, 0, NULL, 0);
        }
        break;
    }
    free(e->bytes);
    e->bytes = NULL;
}

/*  Process events until `until` (sim ms) or a failure; with `quiet`, stop
    early once only timers are left (the probe).  False on a failure.     */
static bool
s_run_until(sim_world *w, uint64_t until, bool quiet)
{
    sim_event e;
    uint64_t steps = 0;
    while (!w->failed && w->nheap > 0 && w->heap[0].at <= until) {
        if (quiet) {
            bool busy = false;
            for (size_t k = 0; k < w->nheap && !busy; k++)
                busy = w->heap[k].kind == SIM_EV_DELIVER || w->heap[k].kind == SIM_EV_UP
                    || w->heap[k].kind == SIM_EV_WAKE;
            if (!busy)
                break;
        }
        s_pop(w, &e);
        w->now = e.at;
        s_dispatch(w, &e);
        if (++steps > 200000000ULL) {
            sim_fail(w, "the event loop did not finish (livelock?)");
            break;
        }
    }
    if (!w->failed && !quiet && w->now < until)
        w->now = until;
    return !w->failed;
}

static int
s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st; (void) flag; (void) ftw;
    return remove(path);
}

static void
s_world_free(sim_world *w)
{
    for (int i = 0; i < w->n; i++) {
        sim_node_close(w, &w->node[i]);
        free(w->node[i].wiped_links);
    }
    sim_event e;
    while (s_pop(w, &e))
        free(e.bytes);
    free(w->heap);
    for (int i = 0; i < SIM_NODES_MAX; i++)
        for (int j = 0; j < SIM_NODES_MAX; j++)
            for (uint32_t k = 0; k < SIM_REPLAY_RING; k++)
                free(w->link[i][j].ring[k]);
    for (uint32_t k = 0; k < SIM_HOSTILE_RING; k++)
        free(w->captured[k]);
    free(w->acks);
    free(w->space);
    sim_damage_free(w);
    if (w->cfg.keep)
        fprintf(stderr, "stores kept in %s (nN: node N's store)\n", w->base);
    else if (w->base[0] && (strncmp(w->base, "/dev/shm/stallmesh-sim-", 23) == 0
                       || strncmp(w->base, "/tmp/stallmesh-sim-", 19) == 0))
        nftw(w->base, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    free(w);
}

/*  A graph over the honest nodes with every pair linked but the severed
    ones: is it connected?                                                  */
static bool
s_honest_connected(const sim_world *w)
{
    int n = w->hostile >= 0 ? w->n - 1 : w->n;
    bool seen[SIM_NODES_MAX] = { false };
    int stack[SIM_NODES_MAX], top = 0, count = 1;
    seen[0] = true;
    stack[top++] = 0;
    while (top > 0) {
        int i = stack[--top];
        for (int j = 0; j < n; j++)
            if (!seen[j] && !w->severed[i][j]) {
                seen[j] = true;
                count++;
                stack[top++] = j;
            }
    }
    return count == n;
}

void
sim_crash(sim_world *w, int i, bool torn)
{
    sim_node *nd = &w->node[i];
    sim_say(w, "node %d crashes%s", i, torn ? " in the middle of a batch" : "");
    w->counters[SIM_C_CRASHES]++;
    sim_node_crash(w, nd, torn);
    s_node_links(w, i, false);
    uint64_t down = sim_chance(&w->rng, 100) ? sim_range(&w->rng, 60000, 600000)
                                             : sim_range(&w->rng, 200, 20000);
    sim_schedule(w, w->now + down, SIM_EV_RESTART, i, 0, nd->generation, 0, NULL, 0);
}

static int
s_peer_say_cb(const sm_gossip_peer *p, void *arg)
{
    sim_world *w = ((void **) arg)[0];
    int i = *(int *) ((void **) arg)[1];
    int j = -1;
    for (int k = 0; k < w->n; k++)
        if (memcmp(w->node[k].id.pub.b, p->node.b, SM_KEY_BYTES) == 0)
            j = k;
    if (j < 0)
        return 0;
    sim_say(w, "  node %d sees node %d: up %d (link %d) last seen %lld ms ago, behind %llu, "
            "refused %llu, refusal %d, wants %u, queued %zu", i, j, p->up,
            sim_link_up(w, i, j), (long long) sim_node_now(w, &w->node[i]) - (long long) p->last_seen_ms,
            (unsigned long long) p->entries_behind, (unsigned long long) p->refused, p->refusal,
            p->wants_in_flight, p->queued_bytes);
    return 0;
}

/*  A liveness failure: what each engine thinks of its peers (verbose). */
static void
s_say_peers(sim_world *w)
{
    for (int i = 0; i < w->n && w->cfg.verbose; i++) {
        if (!w->node[i].gossip)
            continue;
        void *arg[2] = { w, &i };
        sm_gossip_peers_each(w->node[i].gossip, s_peer_say_cb, arg);
    }
}

/*  This seed's fault mix: each kind with even odds, intensities inside it. */
static uint32_t
s_pick_faults(sim_world *w)
{
    if (!w->cfg.faults_random)
        return w->cfg.faults;
    uint32_t mask = 0;
    for (int f = 0; f < SIM_F_COUNT; f++) {
        uint32_t odds = f == SIM_F_OFFLINE ? 100 : f == SIM_F_HOSTILE ? 350 : 500;
        if (sim_chance(&w->rng, odds))
            mask |= 1u << f;
    }
    return mask;
}

/*  The relay probe: honest nodes in a line, timers paused, one sale at an
    end must reach the other end by pushes and relays alone.               */
static void
s_probe(sim_world *w)
{
    int line[SIM_NODES_MAX], k = 0;
    for (int i = 0; i < w->n; i++) {
        sm_head own;
        /* Only a node that can still append: not forked, not stuck behind
           a fork (its own entries all applied). */
        if (i != w->hostile && w->node[i].running && sim_node_own_ok(&w->node[i])
            && sim_fork_at(&w->node[i], &w->node[i].id.pub) == 0
            && sm_ledger_head(w->node[i].ledger, &w->node[i].id.pub, &own) == 0
            && own.applied == own.seq)
            line[k++] = i;
    }
    if (k < 3)
        return;
    w->phase = SIM_PHASE_PROBE;
    for (int i = 0; i < w->n; i++)
        for (int j = i + 1; j < w->n; j++)
            s_link_set(w, i, j, false);
    s_run_until(w, w->now + 6000, false);  /* every end hears its peers are down */
    w->ticks_paused = true;
    for (int x = 0; x + 1 < k; x++)
        s_link_set(w, line[x], line[x + 1], true);
    if (!s_run_until(w, w->now + 600000, true))
        return;
    sim_node *a = &w->node[line[0]];
    const sim_node *z = &w->node[line[k - 1]];
    sim_req add, sale;
    memset(&add, 0, sizeof add);
    add.op = SIM_OP_RESTOCK;
    add.body.kind = SM_KIND_STOCK_ADD;
    snprintf(add.body.u.stock_add.sku, sizeof add.body.u.stock_add.sku, "%s", sim_skus[0]);
    add.body.u.stock_add.qty = 1;
    memset(&sale, 0, sizeof sale);
    sale.op = SIM_OP_SALE;
    sale.body.kind = SM_KIND_SALE;
    sale.body.u.sale.line_count = 1;
    snprintf(sale.body.u.sale.lines[0].sku, sizeof sale.body.u.sale.lines[0].sku, "%s", sim_skus[0]);
    sale.body.u.sale.lines[0].qty = 1;
    sale.body.u.sale.lines[0].price = 100;
    snprintf(sale.body.u.sale.currency, sizeof sale.body.u.sale.currency, "GBP");
    sale.body.u.sale.source = SM_SOURCE_IN_PERSON;
    sale.body.u.sale.payment = SM_PAY_CASH;
    uint32_t acks_before = w->nacks;
    sim_node_submit(w, a, &add);
    sim_node_submit(w, a, &sale);
    if (!s_run_until(w, w->now + 600000, true))
        return;
    if (w->nacks == acks_before) {
        sim_fail(w, "relay probe: node %d could not make its sale", a->index);
        return;
    }
    const struct sim_ack *ack = &w->acks[w->nacks - 1];
    sm_sale out;
    int rc = sm_ledger_sale(z->ledger, &a->id.pub, ack->seq, &out);
    if (rc != 0)
        sim_fail(w, "relay probe: a sale at node %d (seq %llu) did not reach node %d, %d hops "
                 "away, by pushes and relays alone: %s", a->index,
                 (unsigned long long) ack->seq, z->index, k - 1, sm_strerror(rc));
    w->ticks_paused = false;
}

int
sim_run(const sim_config *cfg, sm_hash *digest, uint64_t counters[SIM_C_COUNT],
        char *failure, size_t failure_cap)
{
    sim_world *w = calloc(1, sizeof *w);
    assert(w);
    w->cfg = *cfg;
    w->rng.s = cfg->seed * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL;
    w->space = malloc(sizeof *w->space);
    w->acks = malloc(SIM_ACKS_MAX * sizeof *w->acks);
    assert(w->space && w->acks);
    sm_hasher_init(&w->trace);
    w->n = cfg->nodes ? cfg->nodes : (int) sim_range(&w->rng, SIM_NODES_MIN, 7);
    w->faults = s_pick_faults(w);
    w->hostile = s_on(w, SIM_F_HOSTILE) ? w->n - 1 : -1;
    sim_trace_u64(w, cfg->seed);
    sim_trace_u64(w, w->faults);
    /* A directory of its own (mkdtemp): runs of other processes, even of
       the same seed and in other PID namespaces sharing /dev/shm, never
       meet one another's stores. */
    const char *root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(w->base, sizeof w->base, "%s/stallmesh-sim-%llu-XXXXXX", root,
             (unsigned long long) cfg->seed);
    if (!mkdtemp(w->base)) {
        snprintf(failure, failure_cap, "cannot create a directory under %s: %s", root,
                 strerror(errno));
        w->base[0] = 0;
        s_world_free(w);
        return 2;
    }
    if (cfg->verbose) {
        char mix[256] = "";
        for (int f = 0; f < SIM_F_COUNT; f++)
            if (s_on(w, f))
                snprintf(mix + strlen(mix), sizeof mix - strlen(mix), "%s%s",
                         mix[0] ? "," : "", sim_fault_name(f));
        sim_say(w, "seed %llu: %d nodes, faults %s", (unsigned long long) cfg->seed, w->n,
                mix[0] ? mix : "none");
    }

    /* Topology: every pair linked, but under partitions some pairs never
       reach each other (the far ends of the field), so relays carry them. */
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < w->n; j++)
            if (i != j)
                s_link_benign(&w->link[i][j]);
    if (s_on(w, SIM_F_PARTITION) && sim_chance(&w->rng, 400)) {
        for (int i = 0; i < w->n; i++)
            for (int j = i + 1; j < w->n; j++)
                if (sim_chance(&w->rng, 300)) {
                    w->severed[i][j] = w->severed[j][i] = true;
                    if (!s_honest_connected(w))
                        w->severed[i][j] = w->severed[j][i] = false;
                }
    }
    /* Clocks: seconds apart, or hours under the clock fault. */
    for (int i = 0; i < w->n; i++) {
        int64_t span = s_on(w, SIM_F_CLOCK) ? 3 * 3600000LL : 2000;
        w->node[i].clock_offset_ms = (int64_t) sim_below(&w->rng, (uint64_t) (2 * span + 1)) - span;
        w->node[i].tick_phase_ms = sim_below(&w->rng, SIM_TICK_MS);
    }
    if (w->hostile >= 0) {
        w->node[w->hostile].clock_offset_ms = 0;
        if (sim_chance(&w->rng, 250))
            w->slow_reader_bytes = 64 * 1024;
    }

    w->phase = SIM_PHASE_SETUP;
    sim_workload_setup(w);
    int rc = 1;
    if (w->failed)
        goto done;
    for (int i = 0; i < w->n; i++)
        for (int j = i + 1; j < w->n; j++)
            if (!w->severed[i][j])
                s_link_set(w, i, j, true);
    if (!s_run_until(w, w->now + 5000, false))
        goto done;

    w->phase = SIM_PHASE_CHAOS;
    s_faults_start(w);
    uint64_t chaos_end = w->now + (uint64_t) cfg->ticks * 1000;
    for (;;) {
        if (!s_run_until(w, chaos_end, false))
            goto done;
        /* A stall away for hours is waited for (it comes back to trade). */
        bool away = false;
        for (int i = 0; i < w->n; i++)
            away |= w->node[i].offline;
        if (!away)
            break;
        chaos_end = w->now + 30000;
    }

    w->phase = SIM_PHASE_HEAL;
    s_heal(w);
    uint64_t heal_start = w->now;
    char why[256] = "";
    for (;;) {
        if (!s_run_until(w, w->now + 1000, false))
            goto done;
        /* Converged, and still so a few ticks later: a node that just got
           its own expired holds back (a restored store) has swept them. */
        if (sim_check_converged(w, why, sizeof why)) {
            if (!s_run_until(w, w->now + 3 * SIM_TICK_MS, false))
                goto done;
            if (sim_check_converged(w, why, sizeof why))
                break;
        }
        if (w->now - heal_start > SIM_HEAL_MS_MAX) {
            sim_fail(w, "liveness: %llu s after healing the nodes still differ: %s",
                     (unsigned long long) ((w->now - heal_start) / 1000), why);
            s_say_peers(w);
            goto done;
        }
    }
    sim_say(w, "converged %.1f s after healing", (double) (w->now - heal_start) / 1000.0);
    sim_check_final(w);
    sim_damage_check_final(w);
    if (w->failed)
        goto done;
    s_probe(w);
    if (w->failed)
        goto done;
    sim_check_memory(w);
    w->phase = SIM_PHASE_DONE;
    rc = 0;
done:
    if (w->failed)
        rc = 1;
    if (cfg->verbose) {
        char line[256] = "";
        for (int t = 1; t <= SM_MSG_TYPE_MAX; t++)
            snprintf(line + strlen(line), sizeof line - strlen(line), " %s=%llu",
                     sm_wire_type_name(t), (unsigned long long) w->delivered_by_type[t]);
        sim_say(w, "delivered:%s", line);
    }
    sm_hasher_final(&w->trace, digest);
    for (int c = 0; c < SIM_C_COUNT; c++)
        counters[c] += w->counters[c];
    snprintf(failure, failure_cap, "%s", w->failed ? w->failure : "");
    s_world_free(w);
    return rc;
}
