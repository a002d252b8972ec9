/*  The hostile member (sim.h): a node the organiser admitted that turned
    bad.  It runs a real store and engine, so it stays in session with its
    peers and knows their heads, and at random times it also sends what an
    honest engine never would, as itself (the transport authenticates it):
    - forged entries: in another member's name (signed with its own key),
      or real entries with their bodies altered under the original
      signature, or fork "evidence" that does not verify;
    - equivocations: two validly signed entries of its own at one seq, to
      different peers;
    - far-future entries: timestamps 30 hours ahead;
    - oversized and abusive messages: an entry over SM_ENTRY_BYTES_MAX, a
      message over SM_WIRE_BYTES_MAX, HEADS naming a thousand made-up
      origins, PEERS of made-up nodes, floods of WANTs, UNITS_ASKs and
      HOLD_ASKs, a
      HELLO of another market;
    - replays of messages it received from others.
    It may also read slowly (world.c: slow_reader_bytes), so what its peers
    queue for it piles up: the engine must keep that bounded.

    None of it may ever be applied by an honest node (check.c: every stored
    chain and signature verifies, nothing from too far in the future is
    stored) and memory stays bounded (SM_MESH_QUEUE_BYTES_MAX a peer).     */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "support/mpw.h"

enum { S_FORGE = 0, S_TAMPER, S_EQUIVOCATE, S_FUTURE, S_BIG_ENTRY, S_BIG_MSG,
       S_FAKE_HEADS, S_FAKE_PEERS, S_WANT_FLOOD, S_ASK_FLOOD, S_BAD_FORK,
       S_BAD_HELLO, S_REPLAY, S_ACTIONS };

void
sim_hostile_capture(sim_world *w, const uint8_t *bytes, size_t len)
{
    if (len > 256 * 1024)
        return;
    uint32_t k = w->captured_next++ % SIM_HOSTILE_RING;
    free(w->captured[k]);
    w->captured[k] = malloc(len ? len : 1);
    if (!w->captured[k])
        return;
    memcpy(w->captured[k], bytes, len);
    w->captured_len[k] = len;
}

/*  Encode and send one message to j as the hostile node.                  */
static void
s_send(sim_world *w, int j, const sm_wire_msg *m)
{
    size_t cap = 2u << 20, len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return;
    if (sm_wire_encode(m, buf, cap, &len) == 0) {
        sim_send_raw(w, w->hostile, j, buf, len);
        w->counters[SIM_C_HOSTILE_MSGS]++;
    }
    free(buf);
}

/*  An entry of `origin` at seq after `head` (link `prev`), with `body`,
    signed by `signer`; returns its length in bytes.                       */
static size_t
s_entry(sim_world *w, const sm_id *origin, uint64_t seq, const sm_hash *prev,
        uint64_t hlc, const sm_body *body, const sm_identity *signer,
        uint8_t *bytes, uint8_t sig[SM_SIG_BYTES])
{
    sm_entry e;
    memset(&e, 0, sizeof e);
    e.version = SM_ENTRY_VERSION;
    e.market = w->market;
    e.origin = *origin;
    e.seq = seq;
    e.prev = *prev;
    e.hlc = hlc;
    e.body = *body;
    size_t len = 0;
    if (sm_entry_encode(&e, bytes, SM_ENTRY_BYTES_MAX, &len) != 0)
        return 0;
    sm_entry_sign(bytes, len, signer->secret, sig);
    return len;
}

static void
s_entries(sim_world *w, int j, const sm_id *origin, uint64_t first, sm_signed *run,
          uint32_t n)
{
    sm_wire_msg m;
    memset(&m, 0, sizeof m);
    m.type = SM_MSG_ENTRIES;
    m.u.entries.origin = *origin;
    m.u.entries.first_seq = first;
    m.u.entries.count = n;
    m.u.entries.entries = run;
    s_send(w, j, &m);
}

static sm_body
s_add(const char *sku, uint32_t qty)
{
    sm_body b;
    memset(&b, 0, sizeof b);
    b.kind = SM_KIND_STOCK_ADD;
    snprintf(b.u.stock_add.sku, sizeof b.u.stock_add.sku, "%s", sku);
    b.u.stock_add.qty = qty;
    return b;
}

/*  An honest node j connected to the hostile one; -1 if none.              */
static int
s_target(sim_world *w)
{
    int cand[SIM_NODES_MAX], n = 0;
    for (int j = 0; j < w->n; j++)
        if (j != w->hostile && sim_link_up(w, w->hostile, j))
            cand[n++] = j;
    return n ? cand[sim_below(&w->rng, (uint64_t) n)] : -1;
}

void
sim_hostile_act(sim_world *w)
{
    sim_node *h = &w->node[w->hostile];
    if (!h->running)
        return;
    int j = s_target(w);
    if (j < 0)
        return;
    uint64_t now = sim_node_now(w, h);
    int action = (int) sim_below(&w->rng, S_ACTIONS);
    sim_trace_u64(w, (uint64_t) action);
    sm_head head;
    uint8_t bytes[3][SM_ENTRY_BYTES_MAX];
    sm_signed run[3];
    switch (action) {
    case S_FORGE: {
        /* Entries in an honest member's name, linked to its head as the
           hostile node knows it, signed with the hostile key. */
        const sim_node *x = &w->node[sim_below(&w->rng, (uint64_t) w->n - 1)];
        if (sm_ledger_head(h->ledger, &x->id.pub, &head) != 0)
            return;
        uint32_t n = 1 + (uint32_t) sim_below(&w->rng, 3);
        sm_hash prev = head.link;
        for (uint32_t k = 0; k < n; k++) {
            sm_body b = s_add(sim_skus[k % SIM_SKUS], 1000);
            run[k].bytes = bytes[k];
            run[k].len = s_entry(w, &x->id.pub, head.seq + 1 + k, &prev, (now << 16) + k, &b,
                                 &h->id, bytes[k], run[k].sig);
            if (!run[k].len)
                return;
            sm_entry_link(run[k].bytes, run[k].len, run[k].sig, &prev);
        }
        s_entries(w, j, &x->id.pub, head.seq + 1, run, n);
        break;
    }
    case S_TAMPER: {
        /* A real entry with its body changed under the original signature. */
        const sim_node *x = &w->node[sim_below(&w->rng, (uint64_t) w->n - 1)];
        if (sm_ledger_head(h->ledger, &x->id.pub, &head) != 0 || head.seq == 0)
            return;
        uint64_t seq = 1 + sim_below(&w->rng, head.seq);
        sm_entry_copy *one = malloc(sizeof *one);
        if (!one)
            return;
        sm_entry e;
        if (sm_ledger_read_one(h->ledger, &x->id.pub, seq, one) == 0
            && sm_entry_decode(one->s.bytes, one->s.len, &e) == 0) {
            e.body = s_add(sim_skus[0], 999);
            size_t len = 0;
            if (sm_entry_encode(&e, bytes[0], SM_ENTRY_BYTES_MAX, &len) == 0) {
                run[0].bytes = bytes[0];
                run[0].len = len;
                memcpy(run[0].sig, one->s.sig, SM_SIG_BYTES);
                s_entries(w, j, &x->id.pub, seq, run, 1);
            }
        }
        free(one);
        break;
    }
    case S_EQUIVOCATE:
    case S_FUTURE: {
        /* Its own next seq: two different entries to two peers, or one from
           30 hours ahead. */
        if (sm_ledger_head(h->ledger, &h->id.pub, &head) != 0)
            return;
        uint64_t hlc = action == S_FUTURE ? (now + 30ULL * 3600000) << 16 : now << 16;
        sm_body b = s_add(sim_skus[1], 1 + (uint32_t) sim_below(&w->rng, 50));
        run[0].bytes = bytes[0];
        run[0].len = s_entry(w, &h->id.pub, head.seq + 1, &head.link, hlc, &b, &h->id,
                             bytes[0], run[0].sig);
        if (!run[0].len)
            return;
        s_entries(w, j, &h->id.pub, head.seq + 1, run, 1);
        if (action == S_EQUIVOCATE) {
            int k = s_target(w);
            b = s_add(sim_skus[2], 51 + (uint32_t) sim_below(&w->rng, 50));
            run[0].len = s_entry(w, &h->id.pub, head.seq + 1, &head.link, hlc + 1, &b, &h->id,
                                 bytes[0], run[0].sig);
            if (run[0].len)
                s_entries(w, k, &h->id.pub, head.seq + 1, run, 1);
        }
        break;
    }
    case S_BIG_ENTRY: {
        /* An ENTRIES holding one entry past SM_ENTRY_BYTES_MAX. */
        mpw *m = malloc(sizeof *m);
        uint8_t *junk = calloc(1, SM_ENTRY_BYTES_MAX + 100);
        if (m && junk) {
            mpw_init(m);
            mpw_arr(m, 4);
            mpw_uint(m, SM_MSG_ENTRIES);
            mpw_bin(m, h->id.pub.b, SM_KEY_BYTES);
            mpw_uint(m, 1);
            mpw_arr(m, 1);
            mpw_arr(m, 2);
            mpw_bin(m, junk, SM_ENTRY_BYTES_MAX + 100);
            mpw_bin(m, junk, SM_SIG_BYTES);
            sim_send_raw(w, w->hostile, j, m->b, m->len);
            w->counters[SIM_C_HOSTILE_MSGS]++;
        }
        free(m);
        free(junk);
        break;
    }
    case S_BIG_MSG: {
        /* A message past SM_WIRE_BYTES_MAX (refused before decoding). */
        size_t len = SM_WIRE_BYTES_MAX + 1 + sim_below(&w->rng, 1000);
        uint8_t *big = calloc(1, len);
        if (big) {
            big[0] = 0x94;
            big[1] = SM_MSG_ENTRIES;
            sim_send_raw(w, w->hostile, j, big, len);
            w->counters[SIM_C_HOSTILE_MSGS]++;
            free(big);
        }
        break;
    }
    case S_FAKE_HEADS: {
        /* A thousand made-up origins, each far ahead. */
        sm_wire_head *heads = calloc(SM_MEMBERS_MAX, sizeof *heads);
        if (!heads)
            return;
        for (uint32_t k = 0; k < SM_MEMBERS_MAX; k++) {
            for (uint32_t b = 0; b < SM_KEY_BYTES; b += 8) {
                uint64_t r = sim_rand(&w->rng);
                memcpy(heads[k].origin.b + b, &r, 8);
            }
            heads[k].seq = 1 + sim_below(&w->rng, SM_SEQ_MAX);
        }
        sm_wire_msg m;
        memset(&m, 0, sizeof m);
        m.type = SM_MSG_HEADS;
        m.u.heads.count = SM_MEMBERS_MAX;
        m.u.heads.heads = heads;
        sm_wire_sort(&m);
        s_send(w, j, &m);
        free(heads);
        break;
    }
    case S_FAKE_PEERS: {
        sm_wire_peer *peers = calloc(SM_WIRE_PEERS_MAX, sizeof *peers);
        if (!peers)
            return;
        for (uint32_t k = 0; k < SM_WIRE_PEERS_MAX; k++) {
            for (uint32_t b = 0; b < SM_KEY_BYTES; b += 8) {
                uint64_t r = sim_rand(&w->rng);
                memcpy(peers[k].node.b + b, &r, 8);
            }
            snprintf(peers[k].endpoint, sizeof peers[k].endpoint, "tcp://203.0.113.%u:7400", k);
        }
        sm_wire_msg m;
        memset(&m, 0, sizeof m);
        m.type = SM_MSG_PEERS;
        m.u.peers.count = SM_WIRE_PEERS_MAX;
        m.u.peers.peers = peers;
        sm_wire_sort(&m);
        s_send(w, j, &m);
        free(peers);
        break;
    }
    case S_WANT_FLOOD: {
        /* Everything from seq 1, many times over. */
        uint32_t n = 20 + (uint32_t) sim_below(&w->rng, 200);
        for (uint32_t k = 0; k < n; k++) {
            sm_wire_msg m;
            memset(&m, 0, sizeof m);
            m.type = SM_MSG_WANT;
            m.u.want.origin = w->node[sim_below(&w->rng, (uint64_t) w->n)].id.pub;
            m.u.want.from = 1;
            m.u.want.count = SM_WIRE_RUN_MAX;
            s_send(w, j, &m);
        }
        break;
    }
    case S_ASK_FLOOD: {
        /* Asks for units it will not read the answers to (when slow): each
           answer is kept by the asked engine until taken. */
        uint32_t n = w->slow_reader_bytes && sim_chance(&w->rng, 200)
                   ? 200000 + (uint32_t) sim_below(&w->rng, 100000)
                   : 10 + (uint32_t) sim_below(&w->rng, 500);
        sm_wire_msg m;
        memset(&m, 0, sizeof m);
        m.type = SM_MSG_UNITS_ASK;
        memset(m.u.units.sku, 'z', SM_SKU_BYTES_MAX);
        m.u.units.qty = 1;
        m.u.units.asker = h->id.pub;
        size_t len = 0;
        uint8_t buf[512];
        for (uint32_t k = 0; k < n; k++) {
            m.u.units.req_id = sim_rand(&w->rng);
            /* Every hop count (forwarded asks fill the asked node's tables),
               now and then for another node (a forwarded ask names its
               asker): units moved there, never lost. */
            m.u.units.hops = 1 + (uint32_t) (k % SM_UNITS_HOPS_MAX);
            m.u.units.asker = k % 16 == 5
                ? w->node[sim_below(&w->rng, (uint64_t) w->n)].id.pub : h->id.pub;
            if (k % 8 == 0)
                snprintf(m.u.units.sku, sizeof m.u.units.sku, "%s", sim_skus[k % SIM_SKUS]);
            else
                memset(m.u.units.sku, 'z', SM_SKU_BYTES_MAX);
            /* Every fourth a HOLD_ASK: holds on the asked node's log, within
               its per-peer budget (SM_HOLD_ASKS_PER_MIN), then SM_EBUSY. */
            sm_wire_msg hm;
            memset(&hm, 0, sizeof hm);
            hm.type = SM_MSG_HOLD_ASK;
            hm.u.hold_ask.req_id = m.u.units.req_id;
            if (k % 16 == 3)     /* a real sku now and then: a hold appended */
                snprintf(hm.u.hold_ask.sku, sizeof hm.u.hold_ask.sku, "%s",
                         sim_skus[k % SIM_SKUS]);
            else
                memcpy(hm.u.hold_ask.sku, m.u.units.sku, sizeof hm.u.hold_ask.sku);
            hm.u.hold_ask.qty = 1;
            if (sm_wire_encode(k % 4 == 3 ? &hm : &m, buf, sizeof buf, &len) != 0)
                break;
            /* Straight into the engine: a flood arrives faster than time. */
            if (sim_link_up(w, w->hostile, j) && w->node[j].gossip && w->sees_up[j][w->hostile])
                sm_gossip_receive(w->node[j].gossip, &h->id.pub, buf, len,
                                  sim_node_now(w, &w->node[j]));
            w->counters[SIM_C_HOSTILE_MSGS]++;
            if (k % 4096 == 4095) {
                sim_check_node(w, &w->node[j]);
                if (w->failed)
                    break;
            }
        }
        sim_check_node(w, &w->node[j]);
        sim_check_memory(w);
        sim_drain(w, j);
        break;
    }
    case S_BAD_FORK: {
        /* "Evidence" of a fork by an honest member: one side forged. */
        const sim_node *x = &w->node[sim_below(&w->rng, (uint64_t) w->n - 1)];
        if (sm_ledger_head(h->ledger, &x->id.pub, &head) != 0 || head.seq == 0)
            return;
        sm_entry_copy *one = malloc(sizeof *one);
        if (!one)
            return;
        sm_entry e;
        if (sm_ledger_read_one(h->ledger, &x->id.pub, head.seq, one) == 0
            && sm_entry_decode(one->s.bytes, one->s.len, &e) == 0) {
            sm_body b = s_add(sim_skus[3], 77);
            sm_signed other = { bytes[1], 0, { 0 } };
            other.len = s_entry(w, &x->id.pub, head.seq, &e.prev, e.hlc, &b, &h->id, bytes[1],
                                other.sig);
            if (other.len) {
                sm_wire_msg m;
                memset(&m, 0, sizeof m);
                m.type = SM_MSG_FORK;
                m.u.fork.origin = x->id.pub;
                m.u.fork.seq = head.seq;
                m.u.fork.a = one->s;
                m.u.fork.b = other;
                s_send(w, j, &m);
            }
        }
        free(one);
        break;
    }
    case S_BAD_HELLO: {
        if (!sim_chance(&w->rng, 200))
            return;                    /* rare: it cuts the hostile node off */
        sm_wire_msg m;
        memset(&m, 0, sizeof m);
        m.type = SM_MSG_HELLO;
        m.u.hello.version = SM_WIRE_VERSION;
        m.u.hello.market = h->id.pub;  /* not the market */
        m.u.hello.node = h->id.pub;
        s_send(w, j, &m);
        break;
    }
    case S_REPLAY: {
        uint32_t n = 1 + (uint32_t) sim_below(&w->rng, 8);
        for (uint32_t k = 0; k < n; k++) {
            uint32_t at = (uint32_t) sim_below(&w->rng, SIM_HOSTILE_RING);
            if (w->captured[at]) {
                sim_send_raw(w, w->hostile, j, w->captured[at], w->captured_len[at]);
                w->counters[SIM_C_HOSTILE_MSGS]++;
            }
        }
        break;
    }
    }
    sim_drain(w, w->hostile);
}
