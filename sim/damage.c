/*  The disk-damage fault: bytes of a node's store flipped between restarts.

    The fault crashes a running honest node and flips one byte of one of its
    stored entries (its signature or its bytes) in the data file, found by
    the entry's signature, as a disk that rots would.  Only an entry some
    other running honest node holds identically is damaged, so the market
    can always give it back (an entry only the damaged node held would be
    lost, which no design can prevent).  Other faults go on meanwhile: a
    restore or wipe of that holder before the damaged node is repaired can
    leave the repair dropping the last copy of what lies past the damage;
    the sales acknowledged there are then counted lost, as after a restore.

    When the node restarts it does what `stallmesh run` does: it checks
    every chain (sm_ledger_check with SM_CHECK_ALL_ORIGINS).  Then, as an
    operator would, it either repairs at once (always when its own log is
    damaged: a node cannot serve its new sales past damage in its own log)
    or runs degraded, serving the damaged origin only below the damage, and
    is repaired when the faults heal.  Repair is `stallmesh repair`'s
    salvage (integrity.c): the store is rebuilt from what verifies, the rest
    fetched from peers.

    Invariants (a failure ends the run):
    - the damage is detected: the check at restart names it;
    - no honest node ever sends a damaged entry (every ENTRIES delivered is
      compared with the damaged entries recorded: same origin and seq, other
      link: a forged entry relayed), nor offers one (a degraded node's HEADS
      stop below its damage, but to the origin itself, which is told its own
      true head so that it never takes the damage for the end of its log);
    - after the run every honest store verifies (every signature) and the
      digests converge (the usual liveness check).

    Planted bug 6 (SM_SIM_BUG=6, gossip.c) serves a damaged origin in full
    without checking what it sends: the HEADS and relay invariants catch it.          */
#include "sim.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "integrity.h"
#include "stallmesh/error.h"

#define S_DAMAGE_MAX 64u

typedef struct {
    int node;
    sm_id origin;
    uint64_t seq;
    sm_hash good;              /* the entry's link hash before the flip */
    bool handled;              /* seen by the check at restart */
    bool live;                 /* its node runs degraded with it (not repaired) */
} s_damage;

struct sim_damage {
    s_damage d[S_DAMAGE_MAX];
    uint32_t n;
    bool degraded[SIM_NODES_MAX];  /* running degraded, repaired at heal */
    sm_wire_space *space;
    sm_wire_msg msg;
};

static struct sim_damage *
s_state(sim_world *w)
{
    if (!w->damage) {
        w->damage = calloc(1, sizeof *w->damage);
        if (w->damage)
            w->damage->space = malloc(sizeof *w->damage->space);
        if (!w->damage || !w->damage->space) {
            sim_fail(w, "damage: out of memory");
            return NULL;
        }
    }
    return w->damage;
}

void
sim_damage_free(sim_world *w)
{
    if (!w->damage)
        return;
    free(w->damage->space);
    free(w->damage);
    w->damage = NULL;
}

typedef struct {
    uint8_t value[SM_SIG_BYTES + SM_ENTRY_BYTES_MAX];   /* sig || entry, as stored */
    size_t len;                /* of the entry */
    bool found;
} s_one;

static int
s_one_cb(const sm_signed *e, uint64_t seq, void *arg)
{
    (void) seq;
    s_one *o = arg;
    if (e->len > SM_ENTRY_BYTES_MAX)
        return 1;
    memcpy(o->value, e->sig, SM_SIG_BYTES);
    memcpy(o->value + SM_SIG_BYTES, e->bytes, e->len);
    o->len = e->len;
    o->found = true;
    return 1;
}

/*  Flip one byte of the stored entry `o` (its value, sig || entry) in the
    data file of `dir`.  0, or -1 if it is not found.                        */
static int
s_flip(sim_world *w, const char *dir, const s_one *o)
{
    char path[400];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return -1;
    struct stat st;
    uint8_t *buf = NULL;
    int rc = -1;
    if (fstat(fd, &st) != 0 || !(buf = malloc((size_t) st.st_size))
        || pread(fd, buf, (size_t) st.st_size, 0) != st.st_size)
        goto done;
    /* Flip inside the value, the signature or the entry.  LMDB copies pages
       on write, so stale copies may sit in free pages: every whole copy is
       flipped alike, the live one among them.  Only whole copies: LMDB
       reuses page buffers without clearing the gap between a page's
       pointers and its nodes, so a stale signature can sit in a live page
       of another table (the meta table, a branch page) with live bytes of
       that page right after it.  Flipping there would be damage of the
       store's structure, not of an entry: another fault (pages that fail
       `stallmesh verify`'s page check), not the one this file models. */
    size_t vlen = SM_SIG_BYTES + o->len;
    size_t rel = (size_t) sim_below(&w->rng, vlen);
    uint8_t bit = (uint8_t) (1u << sim_below(&w->rng, 8));
    size_t size = (size_t) st.st_size, from = 0;
    const uint8_t *at;
    while (from < size && (at = memmem(buf + from, size - from, o->value, vlen))) {
        size_t off = (size_t) (at - buf) + rel;
        from = (size_t) (at - buf) + vlen;
        uint8_t b = (uint8_t) (buf[off] ^ bit);
        if (pwrite(fd, &b, 1, (off_t) off) != 1) {
            rc = -1;
            break;
        }
        rc = 0;
    }
done:
    free(buf);
    close(fd);
    return rc;
}

void
sim_damage_fault(sim_world *w)
{
    struct sim_damage *s = s_state(w);
    if (!s || s->n == S_DAMAGE_MAX)
        return;
    int i = (int) sim_below(&w->rng, (uint64_t) w->n);
    sim_node *nd = &w->node[i];
    if (i == w->hostile || !nd->running || nd->offline || s->degraded[i])
        return;
    /* An origin and seq this node stores that another running honest node
       stores identically. */
    sm_id origins[SIM_NODES_MAX];
    int no = 0;
    for (int k = 0; k < w->n; k++)
        if (k != w->hostile)
            origins[no++] = w->node[k].id.pub;
    const sm_id *origin = &origins[sim_below(&w->rng, (uint64_t) no)];
    sm_head h;
    if (sm_ledger_head(nd->ledger, origin, &h) != 0 || h.seq == 0)
        return;
    uint64_t seq = sim_range(&w->rng, 1, h.seq);
    sm_hash good, other;
    if (sim_entry_link(nd->ledger, origin, seq, &good) != 0)
        return;
    /* Another node holds it, and all this node holds after it (what repair
       drops is then in the market: no acknowledged sale is lost).  Not a
       node that runs degraded on this origin below the top: it serves the
       origin only below its own damage, and its repair drops the rest, so
       its copy cannot be given back (two damages in one stretch of a log
       at its only two holders lose that stretch: README, "Damaged
       stores"). */
    sm_hash top;
    if (sim_entry_link(nd->ledger, origin, h.seq, &top) != 0)
        return;
    bool elsewhere = false;
    for (int k = 0; k < w->n && !elsewhere; k++)
        elsewhere = k != i && k != w->hostile && w->node[k].running
                    && (sm_ledger_damage(w->node[k].ledger, origin) == 0
                        || sm_ledger_damage(w->node[k].ledger, origin) > h.seq)
                    && sim_entry_link(w->node[k].ledger, origin, seq, &other) == 0
                    && memcmp(other.b, good.b, SM_HASH_BYTES) == 0
                    && sim_entry_link(w->node[k].ledger, origin, h.seq, &other) == 0
                    && memcmp(other.b, top.b, SM_HASH_BYTES) == 0;
    if (!elsewhere)
        return;
    s_one o = { { 0 }, 0, false };
    if (sm_ledger_read(nd->ledger, origin, seq, 1, s_one_cb, &o) != 0 || !o.found)
        return;
    sim_crash(w, i, false);
    if (s_flip(w, nd->dir, &o) != 0) {
        sim_fail(w, "damage: node %d: cannot find its entry to flip in its store", i);
        return;
    }
    s_damage *d = &s->d[s->n++];
    d->node = i;
    d->origin = *origin;
    d->seq = seq;
    d->good = good;
    d->handled = false;
    d->live = false;
    w->counters[SIM_C_DAMAGED]++;
    sim_trace_u64(w, seq);
    int on = 0;
    for (int k = 0; k < w->n; k++)
        if (memcmp(w->node[k].id.pub.b, origin->b, SM_KEY_BYTES) == 0)
            on = k;
    sim_say(w, "node %d: a byte of its stored entry %llu of node %d flipped on disk", i,
            (unsigned long long) seq, on);
}

/*  Rebuild node nd's store (down) from what verifies: `stallmesh repair`. */
static void
s_repair(sim_world *w, sim_node *nd)
{
    char aside[400];
    snprintf(aside, sizeof aside, "%s.damaged", nd->dir);
    char cmd_lock[420];
    snprintf(cmd_lock, sizeof cmd_lock, "%s/lock.mdb", nd->dir);
    unlink(cmd_lock);
    if (rename(nd->dir, aside) != 0) {
        sim_fail(w, "damage: node %d: cannot move its store aside", nd->index);
        return;
    }
    sm_salvage_report r;
    int rc = sm_integrity_salvage(aside, nd->dir, &nd->id.pub, sim_node_now(w, nd), &r);
    if (rc != 0 || !r.has_market)
        sim_fail(w, "damage: node %d: repair failed: %s (%s)", nd->index, sm_strerror(rc),
                 r.what);
    else
        sim_say(w, "node %d: repaired: kept %llu entries, dropped %llu", nd->index,
                (unsigned long long) r.kept, (unsigned long long) r.dropped);
    if (!r.own_complete) {
        /* Its own log was cut: like a wiped store it fetches the rest back
           before it appends, and if the first peers to answer lack it too it
           may reuse those seqs (a fork, found and quarantined): what repair
           cannot prevent (README, "Damaged stores"). */
        nd->restored = true;
        w->restores_done++;
        sim_node_remember_own(w, nd);  /* what it may fetch back, as after a wipe */
        /* What it wrote past the damage may be gone, as after a restore. */
        nd->nsales = 0;
        nd->nholds = 0;
        nd->has_last_sale = false;
    }
    char path[420];
    snprintf(path, sizeof path, "%s/data.mdb", aside);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", aside);
    unlink(path);
    snprintf(path, sizeof path, "%s/run.lock", aside);
    unlink(path);
    rmdir(aside);
    /* Repair keeps each log only up to its damage: an acknowledged sale
       past it that no other store holds any more (the market held it when
       the byte was flipped, but a restore or wipe since took it from the
       last node that did) is lost with the store moved aside.  What repair
       cannot recover: README, "Damaged stores".                           */
    sim_node_forget_lost_sales(w);
    w->counters[SIM_C_REPAIRED]++;
    for (uint32_t k = 0; k < w->damage->n; k++)
        if (w->damage->d[k].node == nd->index)
            w->damage->d[k].live = false;
}

void
sim_damage_on_restart(sim_world *w, sim_node *nd)
{
    struct sim_damage *s = w->damage;
    if (!s || !nd->running)
        return;
    /* The node checks its chains at every start, as run does (the sim
       only where damage was ever planted: new damage, damage it ran
       degraded with, and damage an old copy of its store brings back). */
    bool pending = false, own = false;
    for (uint32_t k = 0; k < s->n; k++)
        if (s->d[k].node == nd->index)
            pending = true;
    if (!pending)
        return;
    sm_check_report r;
    int rc = sm_ledger_check(nd->ledger, SM_CHECK_ALL_ORIGINS, &r);
    if (rc != 0 && rc != SM_EDEGRADED) {
        sim_fail(w, "damage: node %d: its check at start fails: %s", nd->index, r.what);
        return;
    }
    for (uint32_t k = 0; k < s->n; k++) {
        s_damage *d = &s->d[k];
        if (d->node != nd->index)
            continue;
        bool named = false;
        for (uint32_t j = 0; j < r.damaged_count; j++)
            named |= memcmp(r.damaged[j].origin.b, d->origin.b, SM_KEY_BYTES) == 0
                     && r.damaged[j].seq <= d->seq;
        if (!d->handled && !named) {
            sim_fail(w, "damage: node %d: its check at start does not name its damaged "
                     "entry %llu (%s)", nd->index, (unsigned long long) d->seq,
                     rc ? r.what : "the store passed");
            return;
        }
        d->handled = true;
        d->live = named;               /* not named: its store was replaced since */
        own |= named && memcmp(d->origin.b, nd->id.pub.b, SM_KEY_BYTES) == 0;
    }
    if (r.damaged_count == 0) {
        s->degraded[nd->index] = false;
        return;
    }
    if (own || w->phase != SIM_PHASE_CHAOS || sim_chance(&w->rng, 400)) {
        sim_node_crash(w, nd, false);
        s_repair(w, nd);
        s->degraded[nd->index] = false;
        sim_node_restart(w, nd);
        return;
    }
    /* Degraded until the faults heal: the mesh serves those origins only
       below the damage. */
    for (uint32_t j = 0; j < r.damaged_count; j++)
        sm_ledger_set_damaged(nd->ledger, &r.damaged[j]);
    s->degraded[nd->index] = true;
    sim_say(w, "node %d runs degraded (%u origins damaged)", nd->index, r.damaged_count);
}

void
sim_damage_heal(sim_world *w)
{
    struct sim_damage *s = w->damage;
    if (!s)
        return;
    for (int i = 0; i < w->n; i++) {
        if (!s->degraded[i])
            continue;
        s->degraded[i] = false;
        sim_node *nd = &w->node[i];
        if (nd->running)
            sim_node_crash(w, nd, false);
        s_repair(w, nd);
    }
}

void
sim_damage_on_deliver(sim_world *w, int from, int to, const uint8_t *bytes, size_t len,
                      bool replay)
{
    struct sim_damage *s = w->damage;
    /* A replay is the network sending an old message again, not the node. */
    if (!s || s->n == 0 || from == w->hostile || replay || len < 2
        || (bytes[1] != SM_MSG_ENTRIES && bytes[1] != SM_MSG_HEADS))
        return;
    if (sm_wire_decode(bytes, len, s->space, &s->msg) != 0)
        return;
    const sm_wire_msg *m = &s->msg;
    if (m->type == SM_MSG_HEADS) {
        /* A degraded node offers a damaged origin only below the damage. */
        for (uint32_t k = 0; k < s->n; k++) {
            const s_damage *d = &s->d[k];
            if (d->node != from || !d->live)
                continue;
            if (memcmp(w->node[to].id.pub.b, d->origin.b, SM_KEY_BYTES) == 0)
                continue;              /* an origin is told its own true head */
            for (uint32_t j = 0; j < m->u.heads.count; j++)
                if (memcmp(m->u.heads.heads[j].origin.b, d->origin.b, SM_KEY_BYTES) == 0
                    && m->u.heads.heads[j].seq >= d->seq) {
                    sim_fail(w, "damage: node %d offers entry %llu of an origin it stores "
                             "damaged from there (HEADS seq %llu; marked from %llu)", from,
                             (unsigned long long) d->seq,
                             (unsigned long long) m->u.heads.heads[j].seq,
                             (unsigned long long) (w->node[from].ledger
                                 ? sm_ledger_damage(w->node[from].ledger, &d->origin) : 0));
                    return;
                }
        }
        return;
    }
    for (uint32_t k = 0; k < s->n; k++) {
        const s_damage *d = &s->d[k];
        if (memcmp(d->origin.b, m->u.entries.origin.b, SM_KEY_BYTES) != 0
            || d->seq < m->u.entries.first_seq
            || d->seq >= m->u.entries.first_seq + m->u.entries.count)
            continue;
        const sm_signed *e = &m->u.entries.entries[d->seq - m->u.entries.first_seq];
        sm_hash link;
        sm_entry_link(e->bytes, e->len, e->sig, &link);
        if (memcmp(link.b, d->good.b, SM_HASH_BYTES) != 0
            && sm_entry_verify(e->bytes, e->len, e->sig, &d->origin) != 0) {
            sim_fail(w, "damage: node %d sent its damaged copy of entry %llu (a forged "
                     "entry relayed)", from, (unsigned long long) d->seq);
            return;
        }
    }
}

void
sim_damage_check_final(sim_world *w)
{
    if (!w->damage || w->damage->n == 0)
        return;
    for (int i = 0; i < w->n; i++) {
        sim_node *nd = &w->node[i];
        if (i == w->hostile || !nd->running)
            continue;
        sm_check_report r;
        if (sm_ledger_check(nd->ledger, SM_CHECK_EVERY_SIG, &r) != 0) {
            sim_fail(w, "damage: node %d's store does not verify after the run: %s", i,
                     r.what);
            return;
        }
    }
}

bool
sim_damage_degraded(const sim_world *w, const sim_node *nd)
{
    return w->damage && w->damage->degraded[nd->index];
}
