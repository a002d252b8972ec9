/*  Unit tests of the mesh messages (src/wire.h, codec.c) and the generator
    of their normative vectors (proto/vectors/mesh.txt, bad_mesh.txt).

    The good vectors are defined here message by message from the keys and
    signed entries of proto/vectors/entries.txt (read from that file, so the
    two sets of vectors agree); the test rebuilds each, encodes it, and
    checks the bytes against mesh.txt and against a second writer on mpw
    (written from proto/mesh.md, independent of msgpack-c), then decodes the
    file's bytes back to the definition.  Every line of bad_mesh.txt decodes
    to its expected error and is the hostile message defined here under the
    same name.  The other tests walk every limit edge (the largest count,
    length and value accepted, one more refused), hostile lengths, canonical
    form, trailing bytes, types and versions, and the encoder's refusals.

    Regenerate (only when the format changes on purpose, with a version
    bump) from the repository root:

        make build/tests/test_wire && ./build/tests/test_wire --generate

    which rewrites proto/vectors/mesh.txt, proto/vectors/bad_mesh.txt and
    the fuzzer's seed corpus tests/fuzz/corpus_wire/.                         */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "stallmesh/entry.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "support/mpw.h"
#include "wire.h"

#define S_ENTRIES_PATH "proto/vectors/entries.txt"
#define S_MESH_PATH    "proto/vectors/mesh.txt"
#define S_BAD_PATH     "proto/vectors/bad_mesh.txt"
#define S_CORPUS_DIR   "tests/fuzz/corpus_wire"
#define S_CORPUS_BYTES_MAX 16384u   /* larger vectors stay out of the corpus */

/*  Room for the largest message and one byte more (hostile sizes).         */
#define S_BIG_BYTES (SM_WIRE_BYTES_MAX + 4096u)

static sm_wire_space s_space;       /* ~170 KB: never on the stack */
static uint8_t s_big[S_BIG_BYTES];
static uint8_t s_big2[S_BIG_BYTES];

/* ------------------------------------------------------------------------ */
/* Keys and entries of entries.txt                                           */

enum { S_ORGANISER, S_STALL, S_RELAY, S_NKEYS };

typedef struct {
    uint8_t pk[32];
    uint8_t sk[64];
} s_key;

static s_key s_keys[S_NKEYS];

/*  Seeds are those of entries.txt: 00..1f, 20..3f, 40..5f.                 */
static void
s_make_keys(void)
{
    for (int k = 0; k < S_NKEYS; k++) {
        uint8_t seed[32];
        for (int i = 0; i < 32; i++)
            seed[i] = (uint8_t)(k * 32 + i);
        crypto_sign_seed_keypair(s_keys[k].pk, s_keys[k].sk, seed);
    }
}

typedef struct {
    char name[64];
    uint8_t bytes[SM_ENTRY_BYTES_MAX];
    size_t len;
    uint8_t sig[SM_SIG_BYTES];
    uint8_t link[SM_HASH_BYTES];
} s_logged;

#define S_LOGGED_MAX 32u
static s_logged s_log[S_LOGGED_MAX];
static size_t s_nlog;

/*  Split line into at most max space-separated fields, in place.           */
static size_t
s_fields(char *line, char **f, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *t = strtok_r(line, " ", &save); t != NULL && n < max;
         t = strtok_r(NULL, " ", &save))
        f[n++] = t;
    return n;
}

/*  Read entries.txt (once).  Aborts if it is missing or damaged: the
    vectors here are built from it.                                          */
static void
s_load_log(void)
{
    char *line = NULL;
    size_t cap = 0;
    FILE *f;

    if (s_nlog > 0)
        return;
    s_make_keys();
    f = fopen(S_ENTRIES_PATH, "r");
    if (f == NULL) {
        perror(S_ENTRIES_PATH);
        abort();
    }
    while (getline(&line, &cap, f) > 0) {
        char *fl[8];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (s_fields(line, fl, 8) != 6 || s_nlog == S_LOGGED_MAX)
            abort();
        s_logged *e = &s_log[s_nlog++];
        snprintf(e->name, sizeof e->name, "%s", fl[0]);
        long n = mpw_unhex(fl[3], e->bytes, sizeof e->bytes);
        if (n <= 0 || mpw_unhex(fl[4], e->sig, 64) != 64 ||
            mpw_unhex(fl[5], e->link, 32) != 32)
            abort();
        e->len = (size_t)n;
    }
    free(line);
    fclose(f);
}

static const s_logged *
s_logged_get(const char *name)
{
    s_load_log();
    for (size_t i = 0; i < s_nlog; i++)
        if (strcmp(s_log[i].name, name) == 0)
            return &s_log[i];
    fprintf(stderr, "%s has no entry %s\n", S_ENTRIES_PATH, name);
    abort();
}

static void
s_signed(sm_signed *s, const s_logged *e)
{
    s->bytes = e->bytes;
    s->len = e->len;
    memcpy(s->sig, e->sig, SM_SIG_BYTES);
}

static void
s_id(sm_id *id, int key)
{
    memcpy(id->b, s_keys[key].pk, 32);
}

/*  The fork's second entry: the stall's seq 2 again (stock.add of 41 units
    instead of 40, same prev), validly signed: an equivocation.              */
static uint8_t s_forged[SM_ENTRY_BYTES_MAX];
static size_t s_forged_len;
static uint8_t s_forged_sig[SM_SIG_BYTES];

static void
s_make_forged(void)
{
    const s_logged *two = s_logged_get("stall-02-stock.add");
    sm_entry e;

    if (s_forged_len > 0)
        return;
    if (sm_entry_decode(two->bytes, two->len, &e) != 0 ||
        e.body.kind != SM_KIND_STOCK_ADD)
        abort();
    e.body.u.stock_add.qty = 41;
    if (sm_entry_encode(&e, s_forged, sizeof s_forged, &s_forged_len) != 0)
        abort();
    sm_entry_sign(s_forged, s_forged_len, s_keys[S_STALL].sk, s_forged_sig);
}

/* ------------------------------------------------------------------------ */
/* Good vectors                                                              */

/*  Builders fill a zeroed message; arrays live in static storage here.    */
static sm_wire_head s_heads[4];
static sm_wire_peer s_peers[4];
static sm_signed s_run[4];

static void
v_hello(sm_wire_msg *m)
{
    m->type = SM_MSG_HELLO;
    m->u.hello.version = SM_WIRE_VERSION;
    s_id(&m->u.hello.market, S_ORGANISER);
    s_id(&m->u.hello.node, S_STALL);
    strcpy(m->u.hello.endpoint, "tcp://192.168.1.17:7400");
}
static void
v_hello_no_endpoint(sm_wire_msg *m)
{
    m->type = SM_MSG_HELLO;
    m->u.hello.version = SM_WIRE_VERSION;
    s_id(&m->u.hello.market, S_ORGANISER);
    s_id(&m->u.hello.node, S_ORGANISER);
}
static void
v_hello_endpoint_max(sm_wire_msg *m)
{
    static const char host[] = "tcp://stall-7.";
    v_hello(m);
    strcpy(m->u.hello.endpoint, host);
    size_t n = strlen(host);
    while (n < SM_ENDPOINT_BYTES_MAX - 10)
        m->u.hello.endpoint[n++] = 'x';
    strcpy(m->u.hello.endpoint + n, ".lan:7400");
    m->u.hello.endpoint[SM_ENDPOINT_BYTES_MAX - 1] = '1';
    m->u.hello.endpoint[SM_ENDPOINT_BYTES_MAX] = '\0';
}
static void
v_heads_empty(sm_wire_msg *m)
{
    m->type = SM_MSG_HEADS;
    m->u.heads.count = 0;
    m->u.heads.heads = s_heads;
}
static void
v_heads(sm_wire_msg *m)
{
    const s_logged *org = s_logged_get("org-04-roster.revoke-relay");
    const s_logged *stall = s_logged_get("stall-15-adjust-big-down");
    m->type = SM_MSG_HEADS;
    m->u.heads.count = 2;
    m->u.heads.heads = s_heads;
    s_id(&s_heads[0].origin, S_STALL);
    s_heads[0].seq = 15;
    memcpy(s_heads[0].link.b, stall->link, 32);
    s_id(&s_heads[1].origin, S_ORGANISER);
    s_heads[1].seq = 4;
    memcpy(s_heads[1].link.b, org->link, 32);
    sm_wire_sort(m);
}
static void
v_want(sm_wire_msg *m)
{
    m->type = SM_MSG_WANT;
    s_id(&m->u.want.origin, S_STALL);
    m->u.want.from = 4;
    m->u.want.count = 12;
}
static void
v_want_max(sm_wire_msg *m)
{
    m->type = SM_MSG_WANT;
    s_id(&m->u.want.origin, S_STALL);
    m->u.want.from = SM_SEQ_MAX - (SM_WIRE_RUN_MAX - 1);
    m->u.want.count = SM_WIRE_RUN_MAX;
}
static void
v_entries_one(sm_wire_msg *m)
{
    m->type = SM_MSG_ENTRIES;
    s_id(&m->u.entries.origin, S_ORGANISER);
    m->u.entries.first_seq = 1;
    m->u.entries.count = 1;
    m->u.entries.entries = s_run;
    s_signed(&s_run[0], s_logged_get("org-01-roster.admit-self"));
}
static void
v_entries_run(sm_wire_msg *m)
{
    m->type = SM_MSG_ENTRIES;
    s_id(&m->u.entries.origin, S_STALL);
    m->u.entries.first_seq = 1;
    m->u.entries.count = 3;
    m->u.entries.entries = s_run;
    s_signed(&s_run[0], s_logged_get("stall-01-item"));
    s_signed(&s_run[1], s_logged_get("stall-02-stock.add"));
    s_signed(&s_run[2], s_logged_get("stall-03-stock.move"));
}
static void
v_peers_empty(sm_wire_msg *m)
{
    m->type = SM_MSG_PEERS;
    m->u.peers.count = 0;
    m->u.peers.peers = s_peers;
}
static void
v_peers(sm_wire_msg *m)
{
    m->type = SM_MSG_PEERS;
    m->u.peers.count = 2;
    m->u.peers.peers = s_peers;
    s_id(&s_peers[0].node, S_RELAY);
    strcpy(s_peers[0].endpoint, "tcp://[fd00::7]:7400");
    s_id(&s_peers[1].node, S_ORGANISER);
    strcpy(s_peers[1].endpoint, "tcp://192.168.1.10:7400");
    sm_wire_sort(m);
}
static void
v_units_ask(sm_wire_msg *m)
{
    m->type = SM_MSG_UNITS_ASK;
    m->u.units.req_id = 1;
    strcpy(m->u.units.sku, "TEE-BLK-M");
    m->u.units.qty = 3;
    s_id(&m->u.units.asker, S_STALL);
    m->u.units.hops = SM_UNITS_HOPS_MAX;
}
static void
v_units_ask_max(sm_wire_msg *m)
{
    m->type = SM_MSG_UNITS_ASK;
    m->u.units.req_id = UINT64_MAX;
    strcpy(m->u.units.sku, "K\xc3\x84SE-200G");
    m->u.units.qty = SM_QTY_MAX;
    s_id(&m->u.units.asker, S_RELAY);
    m->u.units.hops = 1;
}
static void
v_units_give(sm_wire_msg *m)
{
    m->type = SM_MSG_UNITS_GIVE;
    m->u.units.req_id = 1;
    strcpy(m->u.units.sku, "TEE-BLK-M");
    m->u.units.qty = 2;
    s_id(&m->u.units.asker, S_STALL);
}
static void
v_units_give_none(sm_wire_msg *m)
{
    v_units_give(m);
    m->u.units.req_id = 70000;
    m->u.units.qty = 0;
}
static void
v_hold_ask(sm_wire_msg *m)
{
    m->type = SM_MSG_HOLD_ASK;
    m->u.hold_ask.req_id = 42;
    strcpy(m->u.hold_ask.sku, "TEE-BLK-M");
    m->u.hold_ask.qty = 2;
    strcpy(m->u.hold_ask.code, "7K2M9Q");
    m->u.hold_ask.has_client = true;
    memset(m->u.hold_ask.client, 0xc1, sizeof m->u.hold_ask.client);
}
static void
v_hold_ask_max(sm_wire_msg *m)
{
    m->type = SM_MSG_HOLD_ASK;
    m->u.hold_ask.req_id = UINT64_MAX;
    strcpy(m->u.hold_ask.sku, "K\xc3\x84SE-200G");
    m->u.hold_ask.qty = SM_QTY_MAX;
    strcpy(m->u.hold_ask.code, "ZZZZZZZZ");
    m->u.hold_ask.has_device = true;
    memset(m->u.hold_ask.device, 0xde, sizeof m->u.hold_ask.device);
    m->u.hold_ask.has_client = true;
    memset(m->u.hold_ask.client, 0xc1, sizeof m->u.hold_ask.client);
}
static void
v_hold_ask_anonymous(sm_wire_msg *m)
{
    m->type = SM_MSG_HOLD_ASK;
    m->u.hold_ask.req_id = 7;
    strcpy(m->u.hold_ask.sku, "TEE-BLK-M");
    m->u.hold_ask.qty = 1;
}
static void
v_hold_ask_lines(sm_wire_msg *m)
{
    v_hold_ask(m);
    m->u.hold_ask.req_id = 46;
    m->u.hold_ask.more_count = 2;
    strcpy(m->u.hold_ask.more[0].sku, "MUG-BLU");
    m->u.hold_ask.more[0].qty = 1;
    strcpy(m->u.hold_ask.more[1].sku, "CAP");
    m->u.hold_ask.more[1].qty = 3;
}
static void
v_hold_done(sm_wire_msg *m)
{
    m->type = SM_MSG_HOLD_DONE;
    m->u.hold_done.req_id = 42;
    m->u.hold_done.code = 0;
    m->u.hold_done.seq = 17;
    m->u.hold_done.expires_ms = 1764403200000ULL;
}
static void
v_hold_done_refused(sm_wire_msg *m)
{
    m->type = SM_MSG_HOLD_DONE;
    m->u.hold_done.req_id = 43;
    m->u.hold_done.code = SM_ENOSTOCK;
}
static void
v_entry_ask(sm_wire_msg *m)
{
    m->type = SM_MSG_ENTRY_ASK;
    m->u.entry_ask.req_id = 44;
    s_id(&m->u.entry_ask.drop_origin, S_STALL);
    m->u.entry_ask.drop_seq = 9;
    memset(m->u.entry_ask.device, 0xde, sizeof m->u.entry_ask.device);
    m->u.entry_ask.has_client = true;
    memset(m->u.entry_ask.client, 0xc1, sizeof m->u.entry_ask.client);
}
static void
v_entry_ask_no_client(sm_wire_msg *m)
{
    m->type = SM_MSG_ENTRY_ASK;
    m->u.entry_ask.req_id = UINT64_MAX;
    s_id(&m->u.entry_ask.drop_origin, S_STALL);
    m->u.entry_ask.drop_seq = SM_SEQ_MAX;
    memset(m->u.entry_ask.device, 0xde, sizeof m->u.entry_ask.device);
}
static void
v_entry_done(sm_wire_msg *m)
{
    m->type = SM_MSG_ENTRY_DONE;
    m->u.entry_done.req_id = 44;
    m->u.entry_done.seq = 18;
}
static void
v_entry_done_refused(sm_wire_msg *m)
{
    m->type = SM_MSG_ENTRY_DONE;
    m->u.entry_done.req_id = 45;
    m->u.entry_done.code = SM_EENTERED;
}
static void
v_fork(sm_wire_msg *m)
{
    s_make_forged();
    m->type = SM_MSG_FORK;
    s_id(&m->u.fork.origin, S_STALL);
    m->u.fork.seq = 2;
    s_signed(&m->u.fork.a, s_logged_get("stall-02-stock.add"));
    m->u.fork.b.bytes = s_forged;
    m->u.fork.b.len = s_forged_len;
    memcpy(m->u.fork.b.sig, s_forged_sig, SM_SIG_BYTES);
}

typedef struct {
    const char *name;
    void (*build)(sm_wire_msg *m);
} s_good;

static const s_good s_goods[] = {
    { "hello",                v_hello },
    { "hello-no-endpoint",    v_hello_no_endpoint },
    { "hello-endpoint-200",   v_hello_endpoint_max },
    { "heads-empty",          v_heads_empty },
    { "heads",                v_heads },
    { "want",                 v_want },
    { "want-1024-to-seq-max", v_want_max },
    { "entries-one",          v_entries_one },
    { "entries-run-of-3",     v_entries_run },
    { "peers-empty",          v_peers_empty },
    { "peers",                v_peers },
    { "units-ask",            v_units_ask },
    { "units-ask-max",        v_units_ask_max },
    { "units-give",           v_units_give },
    { "units-give-none",      v_units_give_none },
    { "fork",                 v_fork },
    { "hold-ask",             v_hold_ask },
    { "hold-ask-max",         v_hold_ask_max },
    { "hold-ask-anonymous",   v_hold_ask_anonymous },
    { "hold-ask-lines",       v_hold_ask_lines },
    { "hold-done",            v_hold_done },
    { "hold-done-refused",    v_hold_done_refused },
    { "entry-ask",            v_entry_ask },
    { "entry-ask-no-client",  v_entry_ask_no_client },
    { "entry-done",           v_entry_done },
    { "entry-done-refused",   v_entry_done_refused },
};
#define S_NGOODS (sizeof s_goods / sizeof s_goods[0])

static void
s_build_good(size_t i, sm_wire_msg *m)
{
    s_load_log();
    memset(m, 0, sizeof *m);
    s_goods[i].build(m);
}

/* ------------------------------------------------------------------------ */
/* A second writer, from proto/mesh.md, on mpw                               */

static void
s_mpw_signed(mpw *w, const sm_signed *s)
{
    mpw_arr(w, 2);
    mpw_bin(w, s->bytes, s->len);
    mpw_bin(w, s->sig, SM_SIG_BYTES);
}

static void
s_mpw_msg(mpw *w, const sm_wire_msg *m)
{
    mpw_init(w);
    switch (m->type) {
    case SM_MSG_HELLO:
        mpw_arr(w, 5); mpw_uint(w, 1); mpw_uint(w, m->u.hello.version);
        mpw_bin(w, m->u.hello.market.b, 32); mpw_bin(w, m->u.hello.node.b, 32);
        mpw_str(w, m->u.hello.endpoint);
        break;
    case SM_MSG_HEADS:
        mpw_arr(w, 2); mpw_uint(w, 2); mpw_arr(w, m->u.heads.count);
        for (uint32_t i = 0; i < m->u.heads.count; i++) {
            mpw_arr(w, 3); mpw_bin(w, m->u.heads.heads[i].origin.b, 32);
            mpw_uint(w, m->u.heads.heads[i].seq); mpw_bin(w, m->u.heads.heads[i].link.b, 32);
        }
        break;
    case SM_MSG_WANT:
        mpw_arr(w, 4); mpw_uint(w, 3); mpw_bin(w, m->u.want.origin.b, 32);
        mpw_uint(w, m->u.want.from); mpw_uint(w, m->u.want.count);
        break;
    case SM_MSG_ENTRIES:
        mpw_arr(w, 4); mpw_uint(w, 4); mpw_bin(w, m->u.entries.origin.b, 32);
        mpw_uint(w, m->u.entries.first_seq); mpw_arr(w, m->u.entries.count);
        for (uint32_t i = 0; i < m->u.entries.count; i++)
            s_mpw_signed(w, &m->u.entries.entries[i]);
        break;
    case SM_MSG_PEERS:
        mpw_arr(w, 2); mpw_uint(w, 5); mpw_arr(w, m->u.peers.count);
        for (uint32_t i = 0; i < m->u.peers.count; i++) {
            mpw_arr(w, 2); mpw_bin(w, m->u.peers.peers[i].node.b, 32);
            mpw_str(w, m->u.peers.peers[i].endpoint);
        }
        break;
    case SM_MSG_UNITS_ASK:
    case SM_MSG_UNITS_GIVE:
        mpw_arr(w, m->type == SM_MSG_UNITS_ASK ? 6 : 5); mpw_uint(w, m->type);
        mpw_uint(w, m->u.units.req_id);
        mpw_str(w, m->u.units.sku); mpw_uint(w, m->u.units.qty);
        mpw_bin(w, m->u.units.asker.b, 32);
        if (m->type == SM_MSG_UNITS_ASK)
            mpw_uint(w, m->u.units.hops);
        break;
    case SM_MSG_FORK:
        mpw_arr(w, 5); mpw_uint(w, 8); mpw_bin(w, m->u.fork.origin.b, 32);
        mpw_uint(w, m->u.fork.seq);
        s_mpw_signed(w, &m->u.fork.a); s_mpw_signed(w, &m->u.fork.b);
        break;
    case SM_MSG_HOLD_ASK:
        mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, m->u.hold_ask.req_id);
        mpw_str(w, m->u.hold_ask.sku); mpw_uint(w, m->u.hold_ask.qty);
        mpw_str(w, m->u.hold_ask.code);
        mpw_bin(w, m->u.hold_ask.device, m->u.hold_ask.has_device ? 8 : 0);
        mpw_bin(w, m->u.hold_ask.client, m->u.hold_ask.has_client ? 8 : 0);
        mpw_arr(w, m->u.hold_ask.more_count);
        for (uint32_t i = 0; i < m->u.hold_ask.more_count; i++) {
            mpw_arr(w, 2); mpw_str(w, m->u.hold_ask.more[i].sku);
            mpw_uint(w, m->u.hold_ask.more[i].qty);
        }
        break;
    case SM_MSG_HOLD_DONE:
        mpw_arr(w, 5); mpw_uint(w, 10); mpw_uint(w, m->u.hold_done.req_id);
        mpw_uint(w, (uint64_t)-m->u.hold_done.code); mpw_uint(w, m->u.hold_done.seq);
        mpw_uint(w, m->u.hold_done.expires_ms);
        break;
    case SM_MSG_ENTRY_ASK:
        mpw_arr(w, 6); mpw_uint(w, 11); mpw_uint(w, m->u.entry_ask.req_id);
        mpw_bin(w, m->u.entry_ask.drop_origin.b, 32); mpw_uint(w, m->u.entry_ask.drop_seq);
        mpw_bin(w, m->u.entry_ask.device, 8);
        mpw_bin(w, m->u.entry_ask.client, m->u.entry_ask.has_client ? 8 : 0);
        break;
    case SM_MSG_ENTRY_DONE:
        mpw_arr(w, 4); mpw_uint(w, 12); mpw_uint(w, m->u.entry_done.req_id);
        mpw_uint(w, (uint64_t)-m->u.entry_done.code); mpw_uint(w, m->u.entry_done.seq);
        break;
    }
}

static bool
s_more_equal(const sm_wire_msg *a, const sm_wire_msg *b)
{
    if (a->u.hold_ask.more_count != b->u.hold_ask.more_count)
        return false;
    for (uint32_t i = 0; i < a->u.hold_ask.more_count; i++)
        if (strcmp(a->u.hold_ask.more[i].sku, b->u.hold_ask.more[i].sku) != 0
            || a->u.hold_ask.more[i].qty != b->u.hold_ask.more[i].qty)
            return false;
    return true;
}

/*  Field by field equality of two messages (entries by their bytes).       */
static bool
s_signed_equal(const sm_signed *a, const sm_signed *b)
{
    return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0 &&
           memcmp(a->sig, b->sig, SM_SIG_BYTES) == 0;
}

static bool
s_msg_equal(const sm_wire_msg *a, const sm_wire_msg *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case SM_MSG_HELLO:
        return a->u.hello.version == b->u.hello.version &&
               memcmp(&a->u.hello.market, &b->u.hello.market, 32) == 0 &&
               memcmp(&a->u.hello.node, &b->u.hello.node, 32) == 0 &&
               strcmp(a->u.hello.endpoint, b->u.hello.endpoint) == 0;
    case SM_MSG_HEADS:
        if (a->u.heads.count != b->u.heads.count)
            return false;
        for (uint32_t i = 0; i < a->u.heads.count; i++)
            if (memcmp(&a->u.heads.heads[i], &b->u.heads.heads[i], sizeof(sm_wire_head)) != 0)
                return false;
        return true;
    case SM_MSG_WANT:
        return memcmp(&a->u.want.origin, &b->u.want.origin, 32) == 0 &&
               a->u.want.from == b->u.want.from && a->u.want.count == b->u.want.count;
    case SM_MSG_ENTRIES:
        if (memcmp(&a->u.entries.origin, &b->u.entries.origin, 32) != 0 ||
            a->u.entries.first_seq != b->u.entries.first_seq ||
            a->u.entries.count != b->u.entries.count)
            return false;
        for (uint32_t i = 0; i < a->u.entries.count; i++)
            if (!s_signed_equal(&a->u.entries.entries[i], &b->u.entries.entries[i]))
                return false;
        return true;
    case SM_MSG_PEERS:
        if (a->u.peers.count != b->u.peers.count)
            return false;
        for (uint32_t i = 0; i < a->u.peers.count; i++)
            if (memcmp(&a->u.peers.peers[i].node, &b->u.peers.peers[i].node, 32) != 0 ||
                strcmp(a->u.peers.peers[i].endpoint, b->u.peers.peers[i].endpoint) != 0)
                return false;
        return true;
    case SM_MSG_UNITS_ASK:
    case SM_MSG_UNITS_GIVE:
        return a->u.units.req_id == b->u.units.req_id &&
               strcmp(a->u.units.sku, b->u.units.sku) == 0 &&
               a->u.units.qty == b->u.units.qty &&
               memcmp(&a->u.units.asker, &b->u.units.asker, 32) == 0 &&
               a->u.units.hops == b->u.units.hops;
    case SM_MSG_FORK:
        return memcmp(&a->u.fork.origin, &b->u.fork.origin, 32) == 0 &&
               a->u.fork.seq == b->u.fork.seq &&
               s_signed_equal(&a->u.fork.a, &b->u.fork.a) &&
               s_signed_equal(&a->u.fork.b, &b->u.fork.b);
    case SM_MSG_HOLD_ASK:
        return a->u.hold_ask.req_id == b->u.hold_ask.req_id &&
               strcmp(a->u.hold_ask.sku, b->u.hold_ask.sku) == 0 &&
               a->u.hold_ask.qty == b->u.hold_ask.qty &&
               strcmp(a->u.hold_ask.code, b->u.hold_ask.code) == 0 &&
               a->u.hold_ask.has_device == b->u.hold_ask.has_device &&
               a->u.hold_ask.has_client == b->u.hold_ask.has_client &&
               (!a->u.hold_ask.has_device || memcmp(a->u.hold_ask.device, b->u.hold_ask.device, 8) == 0) &&
               (!a->u.hold_ask.has_client || memcmp(a->u.hold_ask.client, b->u.hold_ask.client, 8) == 0) &&
               s_more_equal(a, b);
    case SM_MSG_HOLD_DONE:
        return a->u.hold_done.req_id == b->u.hold_done.req_id &&
               a->u.hold_done.code == b->u.hold_done.code &&
               a->u.hold_done.seq == b->u.hold_done.seq &&
               a->u.hold_done.expires_ms == b->u.hold_done.expires_ms;
    case SM_MSG_ENTRY_ASK:
        return a->u.entry_ask.req_id == b->u.entry_ask.req_id &&
               memcmp(a->u.entry_ask.drop_origin.b, b->u.entry_ask.drop_origin.b, 32) == 0 &&
               a->u.entry_ask.drop_seq == b->u.entry_ask.drop_seq &&
               memcmp(a->u.entry_ask.device, b->u.entry_ask.device, 8) == 0 &&
               a->u.entry_ask.has_client == b->u.entry_ask.has_client &&
               (!a->u.entry_ask.has_client || memcmp(a->u.entry_ask.client, b->u.entry_ask.client, 8) == 0);
    case SM_MSG_ENTRY_DONE:
        return a->u.entry_done.req_id == b->u.entry_done.req_id &&
               a->u.entry_done.code == b->u.entry_done.code &&
               a->u.entry_done.seq == b->u.entry_done.seq;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Bad vectors                                                               */

typedef struct {
    const char *name;
    int err;
    mpw w;
} s_bad;

/*  A bin of 32 bytes of one value.                                         */
static void
s_key32(mpw *w, uint8_t v)
{
    uint8_t b[32];
    memset(b, v, sizeof b);
    mpw_bin(w, b, 32);
}

/*  [entry bin, sig bin64] with n entry bytes of value v.                   */
static void
s_pair(mpw *w, size_t n, uint8_t v)
{
    static uint8_t e[SM_ENTRY_BYTES_MAX + 1];
    uint8_t sig[SM_SIG_BYTES];
    memset(e, v, n < sizeof e ? n : sizeof e);
    memset(sig, 0x5a, sizeof sig);
    mpw_arr(w, 2);
    mpw_bin(w, e, n);
    mpw_bin(w, sig, SM_SIG_BYTES);
}

/*  The start of a v1 HELLO: [1, 1, market, node, ...                       */
static void
s_hello_head(mpw *w, uint32_t fields, uint64_t version)
{
    mpw_arr(w, fields); mpw_uint(w, SM_MSG_HELLO); mpw_uint(w, version);
    mpw_bin(w, s_keys[S_ORGANISER].pk, 32);
    mpw_bin(w, s_keys[S_STALL].pk, 32);
}

/*  A head [origin, seq, link] with origin 32 bytes of value o.             */
static void
s_head(mpw *w, uint8_t o, uint64_t seq)
{
    mpw_arr(w, 3); s_key32(w, o); mpw_uint(w, seq); s_key32(w, 0xab);
}

static void
s_units(mpw *w, uint64_t type, const char *sku, size_t sku_len, uint64_t qty)
{
    mpw_arr(w, type == 6 ? 6 : 5); mpw_uint(w, type); mpw_uint(w, 9);
    mpw_strn(w, sku, sku_len); mpw_uint(w, qty); s_key32(w, 0x20);
    if (type == 6)
        mpw_uint(w, 1);
}

/*  Fill `bad` with the hostile and invalid messages; returns how many.      */
static size_t
s_build_bad(s_bad *bad, size_t max)
{
    static mpw good;
    char long_text[SM_ENDPOINT_BYTES_MAX + 2];
    size_t n = 0;
    s_bad *x;
    mpw *w;
    sm_wire_msg m;
    size_t len;

    s_load_log();
    memset(long_text, 'a', sizeof long_text);
    memset(&m, 0, sizeof m);
    v_hello(&m);
    if (sm_wire_encode(&m, good.b, sizeof good.b, &good.len) != 0)
        abort();
    len = good.len;

#define S_NEW(nm, code) (x = &bad[n++], x->name = (nm), x->err = (code), \
                         mpw_init(&x->w), &x->w)
    /* lengths and counts that run past the end */
    w = S_NEW("empty", SM_ETRUNC); (void)w;
    w = S_NEW("hello-truncated-last-byte", SM_ETRUNC);
    mpw_raw(w, good.b, len - 1);
    w = S_NEW("array-header-only", SM_ETRUNC);
    mpw_byte(w, 0x95);
    w = S_NEW("array32-claims-4294967295", SM_ETRUNC);
    mpw_raw(w, "\xdd\xff\xff\xff\xff", 5);
    w = S_NEW("heads-array32-claims-4294967295", SM_ETRUNC);
    mpw_raw(w, "\x92\x02\xdd\xff\xff\xff\xff", 7);
    w = S_NEW("heads-array16-claims-more-than-remain", SM_ETRUNC);
    mpw_raw(w, "\x92\x02\xdc\x03\xff", 5);
    s_head(w, 1, 1);
    w = S_NEW("entries-bin32-claims-4GB", SM_ETRUNC);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 1);
    mpw_arr(w, 1); mpw_arr(w, 2);
    mpw_raw(w, "\xc6\xff\xff\xff\xff", 5); mpw_raw(w, "\x01\x02\x03", 3);
    w = S_NEW("hello-str32-claims-4GB", SM_ETRUNC);
    s_hello_head(w, 5, SM_WIRE_VERSION);
    mpw_raw(w, "\xdb\xff\xff\xff\xff" "tcp:", 9);
    w = S_NEW("want-uint64-cut-short", SM_ETRUNC);
    mpw_arr(w, 4); mpw_uint(w, 3); s_key32(w, 1); mpw_uint(w, 1);
    mpw_raw(w, "\xcf\x00\x00", 3);

    /* not msgpack stallmesh uses, or not one message */
    w = S_NEW("trailing-byte", SM_EMALFORMED);
    mpw_raw(w, good.b, len); mpw_byte(w, 0x00);
    w = S_NEW("two-messages", SM_EMALFORMED);
    mpw_raw(w, good.b, len); mpw_raw(w, good.b, len);
    w = S_NEW("map-message", SM_EMALFORMED);
    mpw_raw(w, "\x81\x01\x02", 3);
    w = S_NEW("float-type", SM_EMALFORMED);
    mpw_raw(w, "\x91\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 10);
    w = S_NEW("ext-in-units", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 6); mpw_uint(w, 1); mpw_str(w, "A");
    mpw_raw(w, "\xd4\x01\x05", 3);
    w = S_NEW("byte-c1", SM_EMALFORMED);
    mpw_raw(w, "\x92\x02\xc1", 3);
    w = S_NEW("nested-too-deep", SM_EMALFORMED);
    mpw_raw(w, "\x92\x02\x91\x91\x91\x91\x91\x90", 8);

    /* the message array and its type */
    w = S_NEW("not-an-array", SM_EMALFORMED);
    mpw_uint(w, 1);
    w = S_NEW("empty-array", SM_EMALFORMED);
    mpw_arr(w, 0);
    w = S_NEW("type-nil", SM_EMALFORMED);
    mpw_arr(w, 1); mpw_nil(w);
    w = S_NEW("type-negative", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_int(w, -1); mpw_arr(w, 0);
    w = S_NEW("type-as-str", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_str(w, "HEADS"); mpw_arr(w, 0);
    w = S_NEW("unknown-type-0", SM_EKIND);
    mpw_arr(w, 2); mpw_uint(w, 0); mpw_arr(w, 0);
    w = S_NEW("unknown-type-13", SM_EKIND);
    mpw_arr(w, 2); mpw_uint(w, 13); mpw_arr(w, 0);
    w = S_NEW("unknown-type-200", SM_EKIND);
    mpw_arr(w, 1); mpw_uint(w, 200);
    w = S_NEW("heads-of-3-fields", SM_EMALFORMED);
    mpw_arr(w, 3); mpw_uint(w, 2); mpw_arr(w, 0); mpw_arr(w, 0);
    w = S_NEW("want-of-3-fields", SM_EMALFORMED);
    mpw_arr(w, 3); mpw_uint(w, 3); s_key32(w, 1); mpw_uint(w, 1);

    /* HELLO */
    w = S_NEW("hello-version-3", SM_EVERSION);   /* before ENTRY_ASK */
    s_hello_head(w, 5, 3); mpw_str(w, "");
    w = S_NEW("hello-version-2", SM_EVERSION);   /* before shoppers in HOLD_ASK */
    s_hello_head(w, 5, 2); mpw_str(w, "");
    w = S_NEW("hello-version-1", SM_EVERSION);   /* before multi-hop units asks */
    s_hello_head(w, 5, 1); mpw_str(w, "tcp://192.168.1.17:7400");
    w = S_NEW("hello-version-0", SM_EVERSION);
    s_hello_head(w, 5, 0); mpw_str(w, "");
    w = S_NEW("hello-version-5-other-shape", SM_EVERSION);
    mpw_arr(w, 3); mpw_uint(w, 1); mpw_uint(w, 5); mpw_arr(w, 0);
    w = S_NEW("hello-version-negative", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 1); mpw_int(w, -1);
    s_key32(w, 1); s_key32(w, 2); mpw_str(w, "");
    w = S_NEW("hello-version-over-uint32", SM_EMALFORMED);
    s_hello_head(w, 5, 1ULL << 32); mpw_str(w, "");
    w = S_NEW("hello-of-4-fields", SM_EMALFORMED);
    s_hello_head(w, 4, SM_WIRE_VERSION);
    w = S_NEW("hello-of-6-fields", SM_EMALFORMED);
    s_hello_head(w, 6, SM_WIRE_VERSION); mpw_str(w, ""); mpw_nil(w);
    w = S_NEW("hello-only-type", SM_EMALFORMED);
    mpw_arr(w, 1); mpw_uint(w, 1);
    w = S_NEW("hello-market-of-31-bytes", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 1); mpw_uint(w, SM_WIRE_VERSION);
    mpw_bin(w, s_keys[S_ORGANISER].pk, 31); s_key32(w, 2); mpw_str(w, "");
    w = S_NEW("hello-node-of-33-bytes", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 1); mpw_uint(w, SM_WIRE_VERSION); s_key32(w, 1);
    mpw_raw(w, "\xc4\x21", 2); mpw_raw(w, s_keys[S_STALL].pk, 32); mpw_byte(w, 0);
    mpw_str(w, "");
    w = S_NEW("hello-node-as-str", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 1); mpw_uint(w, SM_WIRE_VERSION); s_key32(w, 1);
    mpw_strn(w, s_keys[S_STALL].pk, 32); mpw_str(w, "");
    w = S_NEW("hello-endpoint-as-bin", SM_EMALFORMED);
    s_hello_head(w, 5, SM_WIRE_VERSION); mpw_bin(w, "tcp://a:1", 9);
    w = S_NEW("hello-endpoint-201-bytes", SM_ETOOBIG);
    s_hello_head(w, 5, SM_WIRE_VERSION); mpw_strn(w, long_text, SM_ENDPOINT_BYTES_MAX + 1);
    w = S_NEW("hello-endpoint-control-character", SM_EMALFORMED);
    s_hello_head(w, 5, SM_WIRE_VERSION); mpw_str(w, "tcp://a:1\n");
    w = S_NEW("hello-endpoint-nul", SM_EMALFORMED);
    s_hello_head(w, 5, SM_WIRE_VERSION); mpw_strn(w, "tcp://a\0:1", 10);
    w = S_NEW("hello-endpoint-invalid-utf8", SM_EMALFORMED);
    s_hello_head(w, 5, SM_WIRE_VERSION); mpw_str(w, "tcp://caf\xc3\x28:1");
    w = S_NEW("hello-endpoint-overlong-utf8", SM_EMALFORMED);
    s_hello_head(w, 5, SM_WIRE_VERSION); mpw_str(w, "tcp://\xc0\xaf:1");

    /* canonical form */
    w = S_NEW("noncanonical-type-uint8", SM_ENONCANON);
    mpw_arr(w, 2); mpw_byte(w, 0xcc); mpw_byte(w, 0x02); mpw_arr(w, 0);
    w = S_NEW("noncanonical-version-int8", SM_ENONCANON);
    mpw_arr(w, 5); mpw_uint(w, 1); mpw_byte(w, 0xd0); mpw_byte(w, SM_WIRE_VERSION);
    mpw_raw(w, good.b + 3, len - 3);
    w = S_NEW("noncanonical-array16-message", SM_ENONCANON);
    mpw_byte(w, 0xdc); mpw_be(w, 5, 2); mpw_raw(w, good.b + 1, len - 1);
    w = S_NEW("noncanonical-array32-heads", SM_ENONCANON);
    mpw_arr(w, 2); mpw_uint(w, 2); mpw_byte(w, 0xdd); mpw_be(w, 0, 4);
    w = S_NEW("noncanonical-bin16-market", SM_ENONCANON);
    mpw_arr(w, 5); mpw_uint(w, 1); mpw_uint(w, SM_WIRE_VERSION);
    mpw_byte(w, 0xc5); mpw_be(w, 32, 2); mpw_raw(w, s_keys[S_ORGANISER].pk, 32);
    mpw_raw(w, good.b + 37, len - 37);
    w = S_NEW("noncanonical-str8-short-endpoint", SM_ENONCANON);
    s_hello_head(w, 5, SM_WIRE_VERSION); mpw_byte(w, 0xd9); mpw_byte(w, 9); mpw_raw(w, "tcp://a:1", 9);
    w = S_NEW("noncanonical-str16-empty-endpoint", SM_ENONCANON);
    s_hello_head(w, 5, SM_WIRE_VERSION); mpw_byte(w, 0xda); mpw_be(w, 0, 2);
    w = S_NEW("noncanonical-want-from-uint64", SM_ENONCANON);
    mpw_arr(w, 4); mpw_uint(w, 3); s_key32(w, 1);
    mpw_byte(w, 0xcf); mpw_be(w, 4, 8); mpw_uint(w, 12);
    w = S_NEW("noncanonical-qty-uint16-small", SM_ENONCANON);
    mpw_arr(w, 6); mpw_uint(w, 6); mpw_uint(w, 1); mpw_str(w, "A");
    mpw_byte(w, 0xcd); mpw_be(w, 3, 2); s_key32(w, 0x20); mpw_uint(w, 1);
    w = S_NEW("noncanonical-entry-bin16-short", SM_ENONCANON);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 1); mpw_arr(w, 1);
    mpw_arr(w, 2); mpw_byte(w, 0xc5); mpw_be(w, 3, 2); mpw_raw(w, "\x01\x02\x03", 3);
    { uint8_t sig[64]; memset(sig, 0x5a, 64); mpw_bin(w, sig, 64); }

    /* HEADS */
    w = S_NEW("heads-not-an-array", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 2); mpw_nil(w);
    w = S_NEW("heads-over-limit", SM_ETOOBIG);
    mpw_arr(w, 2); mpw_uint(w, 2); mpw_arr(w, SM_MEMBERS_MAX + 1);
    for (uint32_t i = 0; i < SM_MEMBERS_MAX + 1; i++)
        mpw_nil(w);
    w = S_NEW("heads-head-of-2-fields", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 2); mpw_arr(w, 1);
    mpw_arr(w, 2); s_key32(w, 1); mpw_uint(w, 1);
    w = S_NEW("heads-seq-0", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 2); mpw_arr(w, 1); s_head(w, 1, 0);
    w = S_NEW("heads-seq-over-limit", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 2); mpw_arr(w, 1); s_head(w, 1, SM_SEQ_MAX + 1);
    w = S_NEW("heads-unsorted", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 2); mpw_arr(w, 2); s_head(w, 2, 1); s_head(w, 1, 1);
    w = S_NEW("heads-repeated-origin", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 2); mpw_arr(w, 2); s_head(w, 1, 1); s_head(w, 1, 2);
    w = S_NEW("heads-link-of-31-bytes", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 2); mpw_arr(w, 1);
    mpw_arr(w, 3); s_key32(w, 1); mpw_uint(w, 1); mpw_bin(w, long_text, 31);

    /* WANT */
    w = S_NEW("want-count-0", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 3); s_key32(w, 1); mpw_uint(w, 1); mpw_uint(w, 0);
    w = S_NEW("want-count-1025", SM_ETOOBIG);
    mpw_arr(w, 4); mpw_uint(w, 3); s_key32(w, 1); mpw_uint(w, 1);
    mpw_uint(w, SM_WIRE_RUN_MAX + 1);
    w = S_NEW("want-from-0", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 3); s_key32(w, 1); mpw_uint(w, 0); mpw_uint(w, 1);
    w = S_NEW("want-run-past-seq-max", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 3); s_key32(w, 1); mpw_uint(w, SM_SEQ_MAX); mpw_uint(w, 2);
    w = S_NEW("want-origin-as-nil", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 3); mpw_nil(w); mpw_uint(w, 1); mpw_uint(w, 1);
    w = S_NEW("want-count-true", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 3); s_key32(w, 1); mpw_uint(w, 1); mpw_byte(w, 0xc3);

    /* ENTRIES */
    w = S_NEW("entries-empty-run", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 1); mpw_arr(w, 0);
    w = S_NEW("entries-over-limit", SM_ETOOBIG);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 1);
    mpw_arr(w, SM_WIRE_RUN_MAX + 1);
    for (uint32_t i = 0; i < SM_WIRE_RUN_MAX + 1; i++)
        mpw_nil(w);
    w = S_NEW("entries-first-seq-0", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 0); mpw_arr(w, 1);
    s_pair(w, 3, 1);
    w = S_NEW("entries-run-past-seq-max", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, SM_SEQ_MAX); mpw_arr(w, 2);
    s_pair(w, 3, 1); s_pair(w, 3, 2);
    w = S_NEW("entries-empty-entry", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 1); mpw_arr(w, 1);
    s_pair(w, 0, 1);
    w = S_NEW("entries-entry-of-8193-bytes", SM_ETOOBIG);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 1); mpw_arr(w, 1);
    s_pair(w, SM_ENTRY_BYTES_MAX + 1, 1);
    w = S_NEW("entries-sig-of-63-bytes", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 1); mpw_arr(w, 1);
    mpw_arr(w, 2); mpw_bin(w, "\x01\x02\x03", 3); mpw_bin(w, long_text, 63);
    w = S_NEW("entries-pair-of-3", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 1); mpw_arr(w, 1);
    mpw_arr(w, 3); mpw_bin(w, "\x01", 1); mpw_bin(w, long_text, 64); mpw_nil(w);
    w = S_NEW("entries-entry-as-str", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 4); s_key32(w, 1); mpw_uint(w, 1); mpw_arr(w, 1);
    mpw_arr(w, 2); mpw_str(w, "entry"); mpw_bin(w, long_text, 64);

    /* PEERS */
    w = S_NEW("peers-over-limit", SM_ETOOBIG);
    mpw_arr(w, 2); mpw_uint(w, 5); mpw_arr(w, SM_WIRE_PEERS_MAX + 1);
    for (uint32_t i = 0; i < SM_WIRE_PEERS_MAX + 1; i++) {
        mpw_arr(w, 2); s_key32(w, (uint8_t)(i + 1)); mpw_str(w, "tcp://a:1");
    }
    w = S_NEW("peers-empty-endpoint", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 5); mpw_arr(w, 1);
    mpw_arr(w, 2); s_key32(w, 1); mpw_str(w, "");
    w = S_NEW("peers-endpoint-201-bytes", SM_ETOOBIG);
    mpw_arr(w, 2); mpw_uint(w, 5); mpw_arr(w, 1);
    mpw_arr(w, 2); s_key32(w, 1); mpw_strn(w, long_text, SM_ENDPOINT_BYTES_MAX + 1);
    w = S_NEW("peers-unsorted", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 5); mpw_arr(w, 2);
    mpw_arr(w, 2); s_key32(w, 2); mpw_str(w, "tcp://b:1");
    mpw_arr(w, 2); s_key32(w, 1); mpw_str(w, "tcp://a:1");
    w = S_NEW("peers-repeated-node", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 5); mpw_arr(w, 2);
    mpw_arr(w, 2); s_key32(w, 1); mpw_str(w, "tcp://a:1");
    mpw_arr(w, 2); s_key32(w, 1); mpw_str(w, "tcp://b:1");
    w = S_NEW("peers-peer-of-3-fields", SM_EMALFORMED);
    mpw_arr(w, 2); mpw_uint(w, 5); mpw_arr(w, 1);
    mpw_arr(w, 3); s_key32(w, 1); mpw_str(w, "tcp://a:1"); mpw_uint(w, 1);

    /* UNITS_ASK, UNITS_GIVE */
    w = S_NEW("units-ask-qty-0", SM_EMALFORMED);
    s_units(w, 6, "TEE-BLK-M", 9, 0);
    w = S_NEW("units-ask-qty-over-limit", SM_EMALFORMED);
    s_units(w, 6, "TEE-BLK-M", 9, SM_QTY_MAX + 1);
    w = S_NEW("units-give-qty-over-limit", SM_EMALFORMED);
    s_units(w, 7, "TEE-BLK-M", 9, SM_QTY_MAX + 1);
    w = S_NEW("units-give-qty-2^32", SM_EMALFORMED);
    s_units(w, 7, "TEE-BLK-M", 9, 1ULL << 32);
    w = S_NEW("units-ask-sku-empty", SM_EMALFORMED);
    s_units(w, 6, "", 0, 1);
    w = S_NEW("units-ask-sku-65-bytes", SM_ETOOBIG);
    s_units(w, 6, long_text, SM_SKU_BYTES_MAX + 1, 1);
    w = S_NEW("units-give-sku-del-character", SM_EMALFORMED);
    s_units(w, 7, "TEE\x7f", 4, 1);
    w = S_NEW("units-ask-sku-surrogate", SM_EMALFORMED);
    s_units(w, 6, "\xed\xa0\x80", 3, 1);
    w = S_NEW("units-ask-req-id-negative", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 6); mpw_int(w, -5); mpw_str(w, "A"); mpw_uint(w, 1);
    s_key32(w, 0x20); mpw_uint(w, 1);
    w = S_NEW("units-ask-of-4-fields", SM_EMALFORMED);    /* version 1's layout */
    mpw_arr(w, 4); mpw_uint(w, 6); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    w = S_NEW("units-give-of-4-fields", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 7); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    w = S_NEW("units-give-with-hops", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 7); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    s_key32(w, 0x20); mpw_uint(w, 1);
    w = S_NEW("units-ask-hops-0", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 6); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    s_key32(w, 0x20); mpw_uint(w, 0);
    w = S_NEW("units-ask-hops-over-limit", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 6); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    s_key32(w, 0x20); mpw_uint(w, SM_UNITS_HOPS_MAX + 1);
    w = S_NEW("units-ask-hops-negative", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 6); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    s_key32(w, 0x20); mpw_int(w, -1);
    w = S_NEW("units-ask-asker-of-31-bytes", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 6); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_bin(w, s_keys[S_STALL].pk, 31); mpw_uint(w, 1);
    w = S_NEW("units-give-asker-as-str", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 7); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_strn(w, s_keys[S_STALL].pk, 32);

    /* HOLD_ASK, HOLD_DONE */
    w = S_NEW("hold-ask-qty-0", SM_EMALFORMED);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 0);
    mpw_str(w, ""); mpw_bin(w, "", 0); mpw_bin(w, "", 0); mpw_arr(w, 0);
    w = S_NEW("hold-ask-qty-over-limit", SM_EMALFORMED);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A");
    mpw_uint(w, SM_QTY_MAX + 1); mpw_str(w, ""); mpw_bin(w, "", 0); mpw_bin(w, "", 0); mpw_arr(w, 0);
    w = S_NEW("hold-ask-sku-empty", SM_EMALFORMED);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, ""); mpw_uint(w, 1);
    mpw_str(w, ""); mpw_bin(w, "", 0); mpw_bin(w, "", 0); mpw_arr(w, 0);
    w = S_NEW("hold-ask-sku-65-bytes", SM_ETOOBIG);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1);
    mpw_strn(w, long_text, SM_SKU_BYTES_MAX + 1); mpw_uint(w, 1);
    mpw_str(w, ""); mpw_bin(w, "", 0); mpw_bin(w, "", 0); mpw_arr(w, 0);
    w = S_NEW("hold-ask-of-4-fields", SM_EMALFORMED);   /* version 2's HOLD_ASK */
    mpw_arr(w, 4); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    w = S_NEW("hold-ask-code-9-bytes", SM_ETOOBIG);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_str(w, "ABCDEFGHJ"); mpw_bin(w, "", 0); mpw_bin(w, "", 0); mpw_arr(w, 0);
    w = S_NEW("hold-ask-device-7-bytes", SM_EMALFORMED);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_str(w, ""); mpw_bin(w, "1234567", 7); mpw_bin(w, "", 0); mpw_arr(w, 0);
    w = S_NEW("hold-ask-client-a-str", SM_EMALFORMED);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_str(w, ""); mpw_bin(w, "", 0); mpw_str(w, "12345678"); mpw_arr(w, 0);
    w = S_NEW("hold-ask-of-7-fields", SM_EMALFORMED);   /* version 3's HOLD_ASK */
    mpw_arr(w, 7); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_str(w, ""); mpw_bin(w, "", 0); mpw_bin(w, "", 0);
    w = S_NEW("hold-ask-8-more-lines", SM_ETOOBIG);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_str(w, ""); mpw_bin(w, "", 0); mpw_bin(w, "", 0); mpw_arr(w, SM_HOLD_LINES_MAX);
    for (uint32_t i = 0; i < SM_HOLD_LINES_MAX; i++) {
        char sku[4] = { 'B', (char) ('a' + i), 0, 0 };
        mpw_arr(w, 2); mpw_str(w, sku); mpw_uint(w, 1);
    }
    w = S_NEW("hold-ask-line-qty-0", SM_EMALFORMED);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_str(w, ""); mpw_bin(w, "", 0); mpw_bin(w, "", 0);
    mpw_arr(w, 1); mpw_arr(w, 2); mpw_str(w, "B"); mpw_uint(w, 0);
    w = S_NEW("hold-ask-line-sku-twice", SM_EMALFORMED);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_str(w, ""); mpw_bin(w, "", 0); mpw_bin(w, "", 0);
    mpw_arr(w, 1); mpw_arr(w, 2); mpw_str(w, "A"); mpw_uint(w, 2);
    w = S_NEW("hold-ask-line-as-str", SM_EMALFORMED);
    mpw_arr(w, 8); mpw_uint(w, 9); mpw_uint(w, 1); mpw_str(w, "A"); mpw_uint(w, 1);
    mpw_str(w, ""); mpw_bin(w, "", 0); mpw_bin(w, "", 0); mpw_arr(w, 1); mpw_str(w, "B");
    w = S_NEW("hold-done-held-seq-0", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 10); mpw_uint(w, 1); mpw_uint(w, 0); mpw_uint(w, 0);
    mpw_uint(w, 1000);
    w = S_NEW("hold-done-held-no-expiry", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 10); mpw_uint(w, 1); mpw_uint(w, 0); mpw_uint(w, 3);
    mpw_uint(w, 0);
    w = S_NEW("hold-done-refused-with-seq", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 10); mpw_uint(w, 1); mpw_uint(w, 30); mpw_uint(w, 3);
    mpw_uint(w, 0);
    w = S_NEW("hold-done-refusal-over-limit", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 10); mpw_uint(w, 1); mpw_uint(w, SM_WIRE_REFUSAL_MAX + 1);
    mpw_uint(w, 0); mpw_uint(w, 0);
    w = S_NEW("hold-done-refusal-negative", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 10); mpw_uint(w, 1); mpw_int(w, -30);
    mpw_uint(w, 0); mpw_uint(w, 0);
    w = S_NEW("hold-done-of-4-fields", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 10); mpw_uint(w, 1); mpw_uint(w, 0); mpw_uint(w, 3);

    /* ENTRY_ASK, ENTRY_DONE */
    w = S_NEW("entry-ask-drop-seq-0", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 11); mpw_uint(w, 1); s_key32(w, 1); mpw_uint(w, 0);
    mpw_bin(w, "12345678", 8); mpw_bin(w, "", 0);
    w = S_NEW("entry-ask-no-device", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 11); mpw_uint(w, 1); s_key32(w, 1); mpw_uint(w, 1);
    mpw_bin(w, "", 0); mpw_bin(w, "", 0);
    w = S_NEW("entry-ask-client-7-bytes", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 11); mpw_uint(w, 1); s_key32(w, 1); mpw_uint(w, 1);
    mpw_bin(w, "12345678", 8); mpw_bin(w, "1234567", 7);
    w = S_NEW("entry-ask-drop-origin-31-bytes", SM_EMALFORMED);
    mpw_arr(w, 6); mpw_uint(w, 11); mpw_uint(w, 1); mpw_bin(w, s_keys[S_STALL].pk, 31);
    mpw_uint(w, 1); mpw_bin(w, "12345678", 8); mpw_bin(w, "", 0);
    w = S_NEW("entry-done-entered-seq-0", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 12); mpw_uint(w, 1); mpw_uint(w, 0); mpw_uint(w, 0);
    w = S_NEW("entry-done-refused-with-seq", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 12); mpw_uint(w, 1); mpw_uint(w, 133); mpw_uint(w, 3);
    w = S_NEW("entry-done-refusal-over-limit", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 12); mpw_uint(w, 1); mpw_uint(w, SM_WIRE_ENTRY_REFUSAL_MAX + 1);
    mpw_uint(w, 0);
    w = S_NEW("entry-done-of-5-fields", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 12); mpw_uint(w, 1); mpw_uint(w, 0); mpw_uint(w, 3);
    mpw_uint(w, 1);

    /* FORK */
    w = S_NEW("fork-same-entry-twice", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 8); s_key32(w, 1); mpw_uint(w, 2);
    s_pair(w, 3, 1); s_pair(w, 3, 1);
    w = S_NEW("fork-seq-0", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 8); s_key32(w, 1); mpw_uint(w, 0);
    s_pair(w, 3, 1); s_pair(w, 3, 2);
    w = S_NEW("fork-of-4-fields", SM_EMALFORMED);
    mpw_arr(w, 4); mpw_uint(w, 8); s_key32(w, 1); mpw_uint(w, 2); s_pair(w, 3, 1);
    w = S_NEW("fork-second-entry-empty", SM_EMALFORMED);
    mpw_arr(w, 5); mpw_uint(w, 8); s_key32(w, 1); mpw_uint(w, 2);
    s_pair(w, 3, 1); s_pair(w, 0, 2);
    w = S_NEW("fork-entry-of-8193-bytes", SM_ETOOBIG);
    mpw_arr(w, 5); mpw_uint(w, 8); s_key32(w, 1); mpw_uint(w, 2);
    s_pair(w, 3, 1); s_pair(w, SM_ENTRY_BYTES_MAX + 1, 2);
#undef S_NEW
    if (n > max)
        abort();
    return n;
}

#define S_BAD_MAX 160u

/* ------------------------------------------------------------------------ */
/* Generation                                                                */

static void
s_hexline(FILE *f, const char *label, const uint8_t *b, size_t n)
{
    char hex[2 * SM_HASH_BYTES + 1];
    mpw_hex(b, n < SM_HASH_BYTES ? n : SM_HASH_BYTES, hex);
    fprintf(f, "%s%s", label, hex);
}

/*  The message in readable form, on comment lines.                          */
static void
s_describe(FILE *f, const sm_wire_msg *m)
{
    fprintf(f, "#   %s", sm_wire_type_name(m->type));
    switch (m->type) {
    case SM_MSG_HELLO:
        fprintf(f, " version=%u", m->u.hello.version);
        s_hexline(f, " market=", m->u.hello.market.b, 32);
        s_hexline(f, "\n#     node=", m->u.hello.node.b, 32);
        fprintf(f, " endpoint=\"%s\"\n", m->u.hello.endpoint);
        break;
    case SM_MSG_HEADS:
        fprintf(f, " %u heads\n", m->u.heads.count);
        for (uint32_t i = 0; i < m->u.heads.count; i++) {
            s_hexline(f, "#     origin=", m->u.heads.heads[i].origin.b, 32);
            fprintf(f, " seq=%llu", (unsigned long long)m->u.heads.heads[i].seq);
            s_hexline(f, "\n#       link=", m->u.heads.heads[i].link.b, 32);
            fprintf(f, "\n");
        }
        break;
    case SM_MSG_WANT:
        s_hexline(f, " origin=", m->u.want.origin.b, 32);
        fprintf(f, "\n#     from=%llu count=%u\n", (unsigned long long)m->u.want.from,
                m->u.want.count);
        break;
    case SM_MSG_ENTRIES:
        s_hexline(f, " origin=", m->u.entries.origin.b, 32);
        fprintf(f, "\n#     first_seq=%llu count=%u (entry lengths:",
                (unsigned long long)m->u.entries.first_seq, m->u.entries.count);
        for (uint32_t i = 0; i < m->u.entries.count; i++)
            fprintf(f, " %zu", m->u.entries.entries[i].len);
        fprintf(f, ")\n");
        break;
    case SM_MSG_PEERS:
        fprintf(f, " %u peers\n", m->u.peers.count);
        for (uint32_t i = 0; i < m->u.peers.count; i++) {
            s_hexline(f, "#     node=", m->u.peers.peers[i].node.b, 32);
            fprintf(f, " endpoint=\"%s\"\n", m->u.peers.peers[i].endpoint);
        }
        break;
    case SM_MSG_UNITS_ASK:
    case SM_MSG_UNITS_GIVE:
        fprintf(f, " req_id=%llu sku=\"%s\" qty=%u",
                (unsigned long long)m->u.units.req_id, m->u.units.sku, m->u.units.qty);
        s_hexline(f, " asker=", m->u.units.asker.b, 32);
        if (m->type == SM_MSG_UNITS_ASK)
            fprintf(f, " hops=%u", m->u.units.hops);
        fprintf(f, "\n");
        break;
    case SM_MSG_FORK:
        s_hexline(f, " origin=", m->u.fork.origin.b, 32);
        fprintf(f, " seq=%llu\n#     entry lengths %zu and %zu\n",
                (unsigned long long)m->u.fork.seq, m->u.fork.a.len, m->u.fork.b.len);
        break;
    case SM_MSG_HOLD_ASK:
        fprintf(f, " req_id=%llu sku=\"%s\" qty=%u code=\"%s\" device=%s client=%s\n",
                (unsigned long long)m->u.hold_ask.req_id, m->u.hold_ask.sku,
                m->u.hold_ask.qty, m->u.hold_ask.code,
                m->u.hold_ask.has_device ? "8 bytes" : "none",
                m->u.hold_ask.has_client ? "8 bytes" : "none");
        break;
    case SM_MSG_HOLD_DONE:
        fprintf(f, " req_id=%llu refusal=%d (%s) seq=%llu expires_ms=%llu\n",
                (unsigned long long)m->u.hold_done.req_id, -m->u.hold_done.code,
                m->u.hold_done.code ? sm_errname(m->u.hold_done.code) : "held",
                (unsigned long long)m->u.hold_done.seq,
                (unsigned long long)m->u.hold_done.expires_ms);
        break;
    case SM_MSG_ENTRY_ASK:
        fprintf(f, " req_id=%llu", (unsigned long long)m->u.entry_ask.req_id);
        s_hexline(f, " drop_origin=", m->u.entry_ask.drop_origin.b, 32);
        fprintf(f, " drop_seq=%llu device=8 bytes client=%s\n",
                (unsigned long long)m->u.entry_ask.drop_seq,
                m->u.entry_ask.has_client ? "8 bytes" : "none");
        break;
    case SM_MSG_ENTRY_DONE:
        fprintf(f, " req_id=%llu refusal=%d (%s) seq=%llu\n",
                (unsigned long long)m->u.entry_done.req_id, -m->u.entry_done.code,
                m->u.entry_done.code ? sm_errname(m->u.entry_done.code) : "entered",
                (unsigned long long)m->u.entry_done.seq);
        break;
    }
}

static void
s_write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static int
s_generate(void)
{
    static s_bad bad[S_BAD_MAX];
    static char hex[2 * MPW_CAP + 1];
    static uint8_t bytes[MPW_CAP];
    char path[256];
    FILE *f;

    s_load_log();
    f = fopen(S_MESH_PATH, "w");
    if (f == NULL) {
        perror(S_MESH_PATH);
        return 1;
    }
    fprintf(f,
        "# stallmesh mesh message test vectors (normative; proto/mesh.md section 8).\n"
        "# Generated by: ./build/tests/test_wire --generate (tests/unit/test_wire.c).\n"
        "#\n"
        "# One vector a line, two fields separated by one space:\n"
        "#   name message\n"
        "# message: the message's bytes in lowercase hex (one ZeroMQ frame).\n"
        "# Keys, entries and links are those of entries.txt (organiser seed\n"
        "# 000102..1f, stall 202122..3f, relay 404142..5f); the fork's second\n"
        "# entry is the stall's seq 2 again with qty 41, signed by the stall.\n"
        "# Every vector decodes, and encoding the decoded message gives the same\n"
        "# bytes.  Lines starting with '#' are comments; the ones above each\n"
        "# vector show its fields.\n");
    for (size_t i = 0; i < S_NGOODS; i++) {
        sm_wire_msg m;
        size_t len = 0;
        s_build_good(i, &m);
        int rc = sm_wire_encode(&m, bytes, sizeof bytes, &len);
        if (rc != 0) {
            fprintf(stderr, "vector %s does not encode: %s\n", s_goods[i].name,
                    sm_strerror(rc));
            return 1;
        }
        fprintf(f, "#\n# %s (%zu bytes)\n", s_goods[i].name, len);
        s_describe(f, &m);
        mpw_hex(bytes, len, hex);
        fprintf(f, "%s %s\n", s_goods[i].name, hex);
        snprintf(path, sizeof path, "%s/msg-%s.bin", S_CORPUS_DIR, s_goods[i].name);
        s_write_file(path, bytes, len);
    }
    if (fclose(f) != 0)
        return 1;

    size_t nbad = s_build_bad(bad, S_BAD_MAX);
    f = fopen(S_BAD_PATH, "w");
    if (f == NULL) {
        perror(S_BAD_PATH);
        return 1;
    }
    fprintf(f,
        "# stallmesh mesh messages every decoder must refuse (normative; proto/mesh.md section 8).\n"
        "# Generated by: ./build/tests/test_wire --generate (tests/unit/test_wire.c).\n"
        "#\n"
        "# One vector a line: name expected_error message\n"
        "# expected_error is the error's stable name (sm_errname, include/stallmesh/error.h);\n"
        "# message is lowercase hex and may be empty (the empty message).  Each\n"
        "# breaks one rule; the error is the first one of the decoding order of\n"
        "# proto/mesh.md section 6.\n");
    for (size_t i = 0; i < nbad; i++) {
        sm_wire_msg out;
        int rc = sm_wire_decode(bad[i].w.b, bad[i].w.len, &s_space, &out);
        if (rc != bad[i].err) {
            fprintf(stderr, "bad vector %s: decode gives %s, expected %s\n",
                    bad[i].name, sm_errname(rc), sm_errname(bad[i].err));
            return 1;
        }
        mpw_hex(bad[i].w.b, bad[i].w.len, hex);
        fprintf(f, "%s %s %s\n", bad[i].name, sm_errname(bad[i].err), hex);
        if (bad[i].w.len > 0 && bad[i].w.len <= S_CORPUS_BYTES_MAX) {
            snprintf(path, sizeof path, "%s/bad-%s.bin", S_CORPUS_DIR, bad[i].name);
            s_write_file(path, bad[i].w.b, bad[i].w.len);
        }
    }
    if (fclose(f) != 0)
        return 1;
    printf("wrote %s (%zu vectors), %s (%zu vectors) and %s/\n", S_MESH_PATH,
           (size_t)S_NGOODS, S_BAD_PATH, nbad, S_CORPUS_DIR);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The vector files                                                          */

/* Every line of mesh.txt is the message defined under its name, byte for byte (and the mpw writer agrees); it decodes to the definition and re-encodes to the same bytes. */
static void
test_mesh_vectors(void **state)
{
    static uint8_t bytes[MPW_CAP], again[MPW_CAP];
    static mpw w;
    bool seen[S_NGOODS] = { false };
    bool types[SM_MSG_TYPE_MAX + 1] = { false };
    char *line = NULL;
    size_t cap = 0, lines = 0;
    FILE *f;

    (void)state;
    f = fopen(S_MESH_PATH, "r");
    assert_non_null(f);
    while (getline(&line, &cap, f) > 0) {
        char *fl[3];
        sm_wire_msg def, out;
        size_t len = 0;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        assert_int_equal(s_fields(line, fl, 3), 2);
        size_t i = 0;
        while (i < S_NGOODS && strcmp(s_goods[i].name, fl[0]) != 0)
            i++;
        if (i == S_NGOODS)
            fail_msg("%s has a vector %s not defined here", S_MESH_PATH, fl[0]);
        assert_false(seen[i]);
        seen[i] = true;
        lines++;

        long n = mpw_unhex(fl[1], bytes, sizeof bytes);
        assert_true(n > 0);
        s_build_good(i, &def);
        assert_int_equal(sm_wire_encode(&def, again, sizeof again, &len), 0);
        if (len != (size_t)n || memcmp(again, bytes, len) != 0)
            fail_msg("vector %s: the encoder's bytes differ from the file", fl[0]);
        s_mpw_msg(&w, &def);
        assert_int_equal(w.len, (size_t)n);
        assert_memory_equal(w.b, bytes, (size_t)n);

        memset(&out, 0xee, sizeof out);
        assert_int_equal(sm_wire_decode(bytes, (size_t)n, &s_space, &out), 0);
        if (!s_msg_equal(&out, &def))
            fail_msg("vector %s decodes to other fields than defined", fl[0]);
        assert_int_equal(sm_wire_encode(&out, again, sizeof again, &len), 0);
        assert_int_equal(len, (size_t)n);
        assert_memory_equal(again, bytes, (size_t)n);
        types[out.type] = true;
    }
    free(line);
    fclose(f);
    assert_int_equal(lines, S_NGOODS);
    for (int t = 1; t <= (int)SM_MSG_TYPE_MAX; t++)
        assert_true(types[t]);
}

/* Every line of bad_mesh.txt decodes to its expected error and is the message defined under its name; the file has all of them. */
static void
test_bad_mesh_vectors(void **state)
{
    static s_bad bad[S_BAD_MAX];
    static uint8_t bytes[MPW_CAP];
    char *line = NULL;
    size_t cap = 0, lines = 0;
    FILE *f;

    (void)state;
    size_t nbad = s_build_bad(bad, S_BAD_MAX);
    f = fopen(S_BAD_PATH, "r");
    assert_non_null(f);
    while (getline(&line, &cap, f) > 0) {
        char *fl[4];
        sm_wire_msg out;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        size_t nf = s_fields(line, fl, 4);
        assert_true(nf == 2 || nf == 3);
        long n = nf == 3 ? mpw_unhex(fl[2], bytes, sizeof bytes) : 0;
        assert_true(n >= 0);
        int rc = sm_wire_decode(bytes, (size_t)n, &s_space, &out);
        if (strcmp(sm_errname(rc), fl[1]) != 0)
            fail_msg("bad vector %s: decode gives %s, file expects %s",
                     fl[0], sm_errname(rc), fl[1]);
        assert_true(rc < 0);
        size_t i = 0;
        while (i < nbad && strcmp(bad[i].name, fl[0]) != 0)
            i++;
        if (i == nbad)
            fail_msg("%s has a vector %s not defined here", S_BAD_PATH, fl[0]);
        assert_int_equal(bad[i].w.len, (size_t)n);
        assert_memory_equal(bad[i].w.b, bytes, (size_t)n);
        assert_int_equal(bad[i].err, rc);
        lines++;
    }
    free(line);
    fclose(f);
    assert_int_equal(lines, nbad);
    assert_true(nbad >= 80);
}

/* ------------------------------------------------------------------------ */
/* Round trips and limit edges                                               */

/*  Encode m into s_big, decode it back: 0 and equal fields, or the error.  */
static int
s_round_trip(const sm_wire_msg *m, size_t *len)
{
    sm_wire_msg out;
    size_t n = 0;
    int rc = sm_wire_encode(m, s_big, sizeof s_big, &n);
    if (rc != 0)
        return rc;
    rc = sm_wire_decode(s_big, n, &s_space, &out);
    if (rc != 0)
        return rc;
    if (!s_msg_equal(&out, m))
        return SM_EINVAL;
    /* and the decoded message encodes to the same bytes */
    size_t n2 = 0;
    rc = sm_wire_encode(&out, s_big2, sizeof s_big2, &n2);
    if (rc != 0 || n2 != n || memcmp(s_big, s_big2, n) != 0)
        return SM_EINVAL;
    if (len != NULL)
        *len = n;
    return 0;
}

/* A message of each type encodes and decodes back to the same fields and bytes. */
static void
test_round_trip_each_type(void **state)
{
    bool types[SM_MSG_TYPE_MAX + 1] = { false };
    (void)state;
    for (size_t i = 0; i < S_NGOODS; i++) {
        sm_wire_msg m;
        s_build_good(i, &m);
        if (s_round_trip(&m, NULL) != 0)
            fail_msg("vector %s does not round-trip", s_goods[i].name);
        types[m.type] = true;
    }
    for (int t = 1; t <= (int)SM_MSG_TYPE_MAX; t++)
        assert_true(types[t]);
}

static sm_wire_head s_many_heads[SM_MEMBERS_MAX + 1];
static sm_wire_peer s_many_peers[SM_WIRE_PEERS_MAX + 1];
static sm_signed s_many_entries[SM_WIRE_RUN_MAX + 1];
static uint8_t s_pattern[SM_ENTRY_BYTES_MAX + 1];

/*  Origin i: big-endian i in the first two bytes, so origins ascend.       */
static void
s_numbered(sm_id *id, uint32_t i)
{
    memset(id->b, 0x11, sizeof id->b);
    id->b[0] = (uint8_t)(i >> 8);
    id->b[1] = (uint8_t)i;
}

/*  Change the count of the array whose header is at b[at] (array16) to n. */
static void
s_set_array16(uint8_t *b, size_t at, uint32_t n)
{
    assert_int_equal(b[at], 0xdc);
    b[at + 1] = (uint8_t)(n >> 8);
    b[at + 2] = (uint8_t)n;
}

/* HEADS of SM_MEMBERS_MAX heads round-trips; one more is refused by the encoder (SM_EINVAL) and, hand-built, by the decoder (SM_ETOOBIG). */
static void
test_heads_limit(void **state)
{
    sm_wire_msg m;
    size_t len = 0, one;
    (void)state;
    memset(&m, 0, sizeof m);
    m.type = SM_MSG_HEADS;
    m.u.heads.heads = s_many_heads;
    for (uint32_t i = 0; i <= SM_MEMBERS_MAX; i++) {
        s_numbered(&s_many_heads[i].origin, i);
        s_many_heads[i].seq = SM_SEQ_MAX - i;
        memset(s_many_heads[i].link.b, (int)(i & 0xff), 32);
    }
    m.u.heads.count = SM_MEMBERS_MAX;
    assert_int_equal(s_round_trip(&m, &len), 0);
    m.u.heads.count = SM_MEMBERS_MAX + 1;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &one), SM_EINVAL);
    /* append the 1025th head to the 1024's bytes and raise the count */
    mpw w;
    s_mpw_msg(&w, &(sm_wire_msg){ .type = SM_MSG_HEADS,
                                  .u.heads = { 1, &s_many_heads[SM_MEMBERS_MAX] } });
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &one), SM_EINVAL);
    m.u.heads.count = SM_MEMBERS_MAX;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), 0);
    memcpy(s_big + len, w.b + 3, w.len - 3);         /* 92 02 91 | head */
    s_set_array16(s_big, 2, SM_MEMBERS_MAX + 1);
    assert_int_equal(sm_wire_decode(s_big, len + w.len - 3, &s_space, &m), SM_ETOOBIG);
}

/* PEERS of SM_WIRE_PEERS_MAX peers with the longest endpoints round-trips; one more peer is refused both ways. */
static void
test_peers_limit(void **state)
{
    sm_wire_msg m;
    size_t len = 0, one;
    (void)state;
    memset(&m, 0, sizeof m);
    m.type = SM_MSG_PEERS;
    m.u.peers.peers = s_many_peers;
    for (uint32_t i = 0; i <= SM_WIRE_PEERS_MAX; i++) {
        s_numbered(&s_many_peers[i].node, i);
        memset(s_many_peers[i].endpoint, 'p', SM_ENDPOINT_BYTES_MAX);
        s_many_peers[i].endpoint[SM_ENDPOINT_BYTES_MAX] = '\0';
    }
    m.u.peers.count = SM_WIRE_PEERS_MAX;
    assert_int_equal(s_round_trip(&m, &len), 0);
    m.u.peers.count = SM_WIRE_PEERS_MAX + 1;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &one), SM_EINVAL);
    mpw w;
    s_mpw_msg(&w, &(sm_wire_msg){ .type = SM_MSG_PEERS,
                                  .u.peers = { 1, &s_many_peers[SM_WIRE_PEERS_MAX] } });
    m.u.peers.count = SM_WIRE_PEERS_MAX;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), 0);
    memcpy(s_big + len, w.b + 3, w.len - 3);
    s_set_array16(s_big, 2, SM_WIRE_PEERS_MAX + 1);
    assert_int_equal(sm_wire_decode(s_big, len + w.len - 3, &s_space, &m), SM_ETOOBIG);
}

/* ENTRIES of SM_WIRE_RUN_MAX entries (one of SM_ENTRY_BYTES_MAX bytes) ending at SM_SEQ_MAX round-trips; one more entry, a run past SM_SEQ_MAX, or an entry one byte longer is refused both ways. */
static void
test_entries_limit(void **state)
{
    sm_wire_msg m;
    size_t len = 0, one;
    (void)state;
    memset(s_pattern, 0x42, sizeof s_pattern);
    for (uint32_t i = 0; i <= SM_WIRE_RUN_MAX; i++) {
        s_many_entries[i].bytes = s_pattern;
        s_many_entries[i].len = 1 + i % 300;
        memset(s_many_entries[i].sig, (int)(i & 0xff), SM_SIG_BYTES);
    }
    s_many_entries[7].len = SM_ENTRY_BYTES_MAX;
    memset(&m, 0, sizeof m);
    m.type = SM_MSG_ENTRIES;
    s_id(&m.u.entries.origin, S_STALL);
    m.u.entries.entries = s_many_entries;
    m.u.entries.count = SM_WIRE_RUN_MAX;
    m.u.entries.first_seq = SM_SEQ_MAX - (SM_WIRE_RUN_MAX - 1);
    assert_int_equal(s_round_trip(&m, &len), 0);

    m.u.entries.first_seq++;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &one), SM_EINVAL);
    m.u.entries.first_seq = 1;
    m.u.entries.count = SM_WIRE_RUN_MAX + 1;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &one), SM_EINVAL);
    m.u.entries.count = 0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &one), SM_EINVAL);
    m.u.entries.count = SM_WIRE_RUN_MAX;
    s_many_entries[7].len = SM_ENTRY_BYTES_MAX + 1;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &one), SM_EINVAL);
    s_many_entries[7].len = 0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &one), SM_EINVAL);
    s_many_entries[7].len = 5;

    /* hand-built: the 1025th entry appended, count raised */
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), 0);
    mpw w;
    mpw_init(&w);
    s_mpw_signed(&w, &s_many_entries[SM_WIRE_RUN_MAX]);
    memcpy(s_big + len, w.b, w.len);
    size_t at = 1 + 1 + 34 + 1;                       /* 94 04 origin 01 */
    s_set_array16(s_big, at, SM_WIRE_RUN_MAX + 1);
    assert_int_equal(sm_wire_decode(s_big, len + w.len, &s_space, &m), SM_ETOOBIG);
}

/* A message of exactly SM_WIRE_BYTES_MAX bytes decodes and encodes; one byte more is SM_ETOOBIG both ways, and a small cap is SM_ETOOBIG for the encoder. */
static void
test_message_size_limit(void **state)
{
    sm_wire_msg m, out;
    size_t len = 0;
    (void)state;
    /* 40 bytes of header; each [bin16 entry, bin8 sig] is len + 70 bytes */
    memset(s_pattern, 0x42, sizeof s_pattern);
    size_t body = SM_WIRE_BYTES_MAX - 40, per = body / SM_WIRE_RUN_MAX;
    size_t extra = body % SM_WIRE_RUN_MAX;
    assert_true(per - 70 <= SM_ENTRY_BYTES_MAX && per - 70 >= 256);
    for (uint32_t i = 0; i < SM_WIRE_RUN_MAX; i++) {
        s_many_entries[i].bytes = s_pattern;
        s_many_entries[i].len = per - 70 + (i < extra ? 1 : 0);
        memset(s_many_entries[i].sig, 7, SM_SIG_BYTES);
    }
    memset(&m, 0, sizeof m);
    m.type = SM_MSG_ENTRIES;
    s_id(&m.u.entries.origin, S_STALL);
    m.u.entries.first_seq = 1;
    m.u.entries.count = SM_WIRE_RUN_MAX;
    m.u.entries.entries = s_many_entries;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), 0);
    assert_int_equal(len, SM_WIRE_BYTES_MAX);
    assert_int_equal(sm_wire_decode(s_big, len, &s_space, &out), 0);
    assert_true(s_msg_equal(&out, &m));
    assert_int_equal(sm_wire_encode(&m, s_big, SM_WIRE_BYTES_MAX - 1, &len), SM_ETOOBIG);
    assert_int_equal(sm_wire_encode(&m, s_big, 100, &len), SM_ETOOBIG);

    /* one byte more in the first entry: the encoder refuses, and the same
       message built by hand (its bin16 length raised) is refused unread */
    s_many_entries[0].len++;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_ETOOBIG);
    mpw w;
    mpw_init(&w);
    s_mpw_signed(&w, &s_many_entries[0]);
    s_many_entries[0].len--;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), 0);
    size_t old_pair = w.len - 1;
    memcpy(s_big2, s_big, 40);
    memcpy(s_big2 + 40, w.b, w.len);
    memcpy(s_big2 + 40 + w.len, s_big + 40 + old_pair, len - 40 - old_pair);
    assert_int_equal(sm_wire_decode(s_big2, len + 1, &s_space, &out), SM_ETOOBIG);
    /* while the message of exactly the limit, as built, still decodes */
    assert_int_equal(sm_wire_decode(s_big, len, &s_space, &out), 0);
}

/* WANT: count 1 and SM_WIRE_RUN_MAX and a run ending at SM_SEQ_MAX are fine; 0, SM_WIRE_RUN_MAX+1, from 0 and a run past SM_SEQ_MAX are refused by the encoder. */
static void
test_want_limits(void **state)
{
    sm_wire_msg m;
    size_t len;
    (void)state;
    memset(&m, 0, sizeof m);
    v_want(&m);
    m.u.want.count = 1;
    assert_int_equal(s_round_trip(&m, NULL), 0);
    m.u.want.count = SM_WIRE_RUN_MAX;
    assert_int_equal(s_round_trip(&m, NULL), 0);
    m.u.want.from = SM_SEQ_MAX - SM_WIRE_RUN_MAX + 1;
    assert_int_equal(s_round_trip(&m, NULL), 0);
    m.u.want.from++;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.want.from = 1;
    m.u.want.count = SM_WIRE_RUN_MAX + 1;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.want.count = 0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.want.count = 1;
    m.u.want.from = 0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
}

/* Strings at their limits (endpoint 200 bytes, sku 64 bytes, 4-byte UTF-8) round-trip; one byte more, empty where not allowed, or bad text is refused by the encoder. */
static void
test_text_limits(void **state)
{
    sm_wire_msg m;
    size_t len;
    (void)state;
    memset(&m, 0, sizeof m);
    v_hello_endpoint_max(&m);
    assert_int_equal(strlen(m.u.hello.endpoint), SM_ENDPOINT_BYTES_MAX);
    assert_int_equal(s_round_trip(&m, NULL), 0);
    m.u.hello.endpoint[SM_ENDPOINT_BYTES_MAX] = 'x';    /* unterminated: 201 */
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    strcpy(m.u.hello.endpoint, "tcp://\x01:1");
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);

    memset(&m, 0, sizeof m);
    v_units_ask(&m);
    memset(m.u.units.sku, 0, sizeof m.u.units.sku);
    for (int i = 0; i < 16; i++)
        memcpy(m.u.units.sku + 4 * i, "\xf0\x9f\x8d\x93", 4);  /* 64 bytes */
    assert_int_equal(s_round_trip(&m, NULL), 0);
    m.u.units.sku[SM_SKU_BYTES_MAX] = 'x';
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.units.sku[0] = '\0';
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    strcpy(m.u.units.sku, "\xed\xa0\x80");
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);

    memset(&m, 0, sizeof m);
    v_peers(&m);
    s_peers[0].endpoint[0] = '\0';
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
}

/* Values at their edges: seq SM_SEQ_MAX, qty SM_QTY_MAX and UNITS_GIVE qty 0 round-trip; seq 0 or SM_SEQ_MAX+1, qty over the limit, UNITS_ASK qty 0 or hops 0 or over SM_UNITS_HOPS_MAX, a UNITS_GIVE with hops, a FORK of one entry twice, another HELLO version and an unknown type are refused by the encoder. */
static void
test_value_limits(void **state)
{
    sm_wire_msg m;
    size_t len;
    (void)state;
    memset(&m, 0, sizeof m);
    v_heads(&m);
    s_heads[1].seq = SM_SEQ_MAX;
    assert_int_equal(s_round_trip(&m, NULL), 0);
    s_heads[1].seq = SM_SEQ_MAX + 1;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    s_heads[1].seq = 0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);

    memset(&m, 0, sizeof m);
    v_units_ask(&m);
    m.u.units.qty = SM_QTY_MAX;
    assert_int_equal(s_round_trip(&m, NULL), 0);
    m.u.units.qty = SM_QTY_MAX + 1;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.units.qty = 0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.units.hops = SM_UNITS_HOPS_MAX + 1;
    m.u.units.qty = 1;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.units.hops = 0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.units.qty = 0;
    m.type = SM_MSG_UNITS_GIVE;
    assert_int_equal(s_round_trip(&m, NULL), 0);
    m.u.units.hops = 1;                              /* a GIVE has no hops */
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.units.hops = 0;
    m.u.units.qty = SM_QTY_MAX + 1;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);

    memset(&m, 0, sizeof m);
    v_fork(&m);
    m.u.fork.seq = SM_SEQ_MAX;
    assert_int_equal(s_round_trip(&m, NULL), 0);
    m.u.fork.seq = 0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.fork.seq = 2;
    m.u.fork.b = m.u.fork.a;
    memset(m.u.fork.b.sig, 0, SM_SIG_BYTES);   /* same bytes, other signature */
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);

    memset(&m, 0, sizeof m);
    v_hello(&m);
    m.u.hello.version = 1;                 /* the version before this one */
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.u.hello.version = 0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.type = (sm_msg_type)9;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    m.type = (sm_msg_type)0;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Hostile input                                                             */

/* Declared lengths of up to 4 GB (arrays of 2^32-1 elements in 5 bytes, bins and strs of 2^32-1 bytes, at every level) are refused with SM_ETRUNC, and the space is not written. */
static void
test_hostile_lengths(void **state)
{
    static const char *const hostile[] = {
        "ddffffffff",                        /* the message array */
        "dcffff",
        "9202ddffffffff",                    /* HEADS */
        "9202dd0000040101",                  /* 1025 heads claimed in 1 byte */
        "9205dd00010000",                    /* PEERS, 65536 peers */
        "9403c6ffffffff",                    /* WANT origin bin32 */
        "9506dbffffffff",                    /* a str32 in UNITS */
        "9404c420" "1111111111111111111111111111111111111111111111111111111111111111"
        "01dd0000040191c6ffffffff",          /* ENTRIES, 1025 and a 4 GB bin */
        "9404c420" "1111111111111111111111111111111111111111111111111111111111111111"
        "019192c6fffffff0",                  /* an entry bin of ~4 GB */
        "9508c420" "1111111111111111111111111111111111111111111111111111111111111111"
        "0292c5ffff",                        /* FORK, bin16 of 65535 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        uint8_t b[128];
        sm_wire_msg out;
        long n = mpw_unhex(hostile[i], b, sizeof b);
        assert_true(n > 0);
        memset(&s_space, 0xa5, sizeof s_space);
        int rc = sm_wire_decode(b, (size_t)n, &s_space, &out);
        if (rc != SM_ETRUNC)
            fail_msg("hostile %s: %s, expected truncated", hostile[i], sm_errname(rc));
        const uint8_t *p = (const uint8_t *)&s_space;
        for (size_t j = 0; j < sizeof s_space; j++)
            if (p[j] != 0xa5)
                fail_msg("hostile %s wrote to the space at %zu", hostile[i], j);
    }
}

/* Over-limit counts backed by enough bytes are SM_ETOOBIG before any element is read: 1025 nil "heads" fill no head. */
static void
test_counts_checked_before_elements(void **state)
{
    static mpw w;
    sm_wire_msg out;
    (void)state;
    mpw_init(&w);
    mpw_arr(&w, 2); mpw_uint(&w, 2); mpw_arr(&w, SM_MEMBERS_MAX + 1);
    for (uint32_t i = 0; i <= SM_MEMBERS_MAX; i++)
        mpw_nil(&w);
    memset(&s_space, 0xa5, sizeof s_space);
    assert_int_equal(sm_wire_decode(w.b, w.len, &s_space, &out), SM_ETOOBIG);
    assert_int_equal(((const uint8_t *)s_space.heads)[0], 0xa5);
    /* the same count with real-looking bytes missing is SM_ETRUNC */
    assert_int_equal(sm_wire_decode(w.b, 5 + SM_MEMBERS_MAX / 2, &s_space, &out), SM_ETRUNC);
}

/* Every proper prefix of every good vector is refused (SM_ETRUNC) and so is every vector with a byte appended (SM_EMALFORMED). */
static void
test_prefixes_and_trailing(void **state)
{
    static uint8_t b[MPW_CAP + 1];
    (void)state;
    for (size_t i = 0; i < S_NGOODS; i++) {
        sm_wire_msg m, out;
        size_t len = 0;
        s_build_good(i, &m);
        assert_int_equal(sm_wire_encode(&m, b, MPW_CAP, &len), 0);
        for (size_t cut = 0; cut < len; cut++) {
            int rc = sm_wire_decode(b, cut, &s_space, &out);
            if (rc != SM_ETRUNC)
                fail_msg("%s cut to %zu bytes: %s", s_goods[i].name, cut, sm_errname(rc));
        }
        for (int extra = 0; extra < 256; extra += 51) {
            b[len] = (uint8_t)extra;
            assert_int_equal(sm_wire_decode(b, len + 1, &s_space, &out), SM_EMALFORMED);
        }
    }
}

/* Every integer and length of a good vector rewritten in a longer form is SM_ENONCANON (one representation a message). */
static void
test_non_canonical_forms(void **state)
{
    static mpw w;
    sm_wire_msg out;
    (void)state;
    s_load_log();
    /* UNITS_ASK with each field widened in turn */
    for (int field = 0; field < 6; field++) {
        mpw_init(&w);
        if (field == 0) { mpw_byte(&w, 0xdc); mpw_be(&w, 6, 2); } else mpw_arr(&w, 6);
        if (field == 1) { mpw_byte(&w, 0xcd); mpw_be(&w, 6, 2); } else mpw_uint(&w, 6);
        if (field == 2) { mpw_byte(&w, 0xce); mpw_be(&w, 300, 4); } else mpw_uint(&w, 300);
        if (field == 3) { mpw_byte(&w, 0xdb); mpw_be(&w, 3, 4); mpw_raw(&w, "ABC", 3); }
        else mpw_str(&w, "ABC");
        if (field == 4) { mpw_byte(&w, 0xd2); mpw_be(&w, 5, 4); } else mpw_uint(&w, 5);
        s_key32(&w, 0x20);
        if (field == 5) { mpw_byte(&w, 0xcc); mpw_byte(&w, 2); } else mpw_uint(&w, 2);
        assert_int_equal(sm_wire_decode(w.b, w.len, &s_space, &out), SM_ENONCANON);
    }
    /* the unwidened message decodes */
    mpw_init(&w);
    mpw_arr(&w, 6); mpw_uint(&w, 6); mpw_uint(&w, 300); mpw_str(&w, "ABC"); mpw_uint(&w, 5);
    s_key32(&w, 0x20); mpw_uint(&w, 2);
    assert_int_equal(sm_wire_decode(w.b, w.len, &s_space, &out), 0);
    /* a link as bin32, a head as array16 */
    mpw_init(&w);
    mpw_arr(&w, 2); mpw_uint(&w, 2); mpw_arr(&w, 1);
    mpw_byte(&w, 0xdc); mpw_be(&w, 3, 2); s_key32(&w, 1); mpw_uint(&w, 1); s_key32(&w, 2);
    assert_int_equal(sm_wire_decode(w.b, w.len, &s_space, &out), SM_ENONCANON);
    mpw_init(&w);
    mpw_arr(&w, 2); mpw_uint(&w, 2); mpw_arr(&w, 1);
    mpw_arr(&w, 3); s_key32(&w, 1); mpw_uint(&w, 1);
    mpw_byte(&w, 0xc6); mpw_be(&w, 32, 4); mpw_raw(&w, s_keys[0].pk, 32);
    assert_int_equal(sm_wire_decode(w.b, w.len, &s_space, &out), SM_ENONCANON);
}

/* Unknown types are SM_EKIND whatever follows; a HELLO of another version is SM_EVERSION with the version (and, in version 1's shape, the other fields) decoded. */
static void
test_types_and_versions(void **state)
{
    static mpw w;
    sm_wire_msg out;
    (void)state;
    s_load_log();
    for (uint64_t t = 13; t < 300; t += 7) {
        mpw_init(&w);
        mpw_arr(&w, 3); mpw_uint(&w, t); mpw_str(&w, "x"); mpw_nil(&w);
        assert_int_equal(sm_wire_decode(w.b, w.len, &s_space, &out), SM_EKIND);
    }
    mpw_init(&w);
    s_hello_head(&w, 5, 7); mpw_str(&w, "tcp://10.0.0.9:7400");
    assert_int_equal(sm_wire_decode(w.b, w.len, &s_space, &out), SM_EVERSION);
    assert_int_equal(out.type, SM_MSG_HELLO);
    assert_int_equal(out.u.hello.version, 7);
    assert_memory_equal(out.u.hello.market.b, s_keys[S_ORGANISER].pk, 32);
    assert_memory_equal(out.u.hello.node.b, s_keys[S_STALL].pk, 32);
    assert_string_equal(out.u.hello.endpoint, "tcp://10.0.0.9:7400");

    mpw_init(&w);
    mpw_arr(&w, 4); mpw_uint(&w, 1); mpw_uint(&w, 5); mpw_str(&w, "new"); mpw_arr(&w, 0);
    assert_int_equal(sm_wire_decode(w.b, w.len, &s_space, &out), SM_EVERSION);
    assert_int_equal(out.u.hello.version, 5);
    assert_string_equal(out.u.hello.endpoint, "");
    uint8_t zero[32] = { 0 };
    assert_memory_equal(out.u.hello.node.b, zero, 32);

    assert_string_equal(sm_wire_type_name(SM_MSG_HELLO), "HELLO");
    assert_string_equal(sm_wire_type_name(SM_MSG_UNITS_GIVE), "UNITS_GIVE");
    assert_string_equal(sm_wire_type_name(SM_MSG_FORK), "FORK");
    assert_string_equal(sm_wire_type_name(0), "?");
    assert_string_equal(sm_wire_type_name(SM_MSG_HOLD_ASK), "HOLD_ASK");
    assert_string_equal(sm_wire_type_name(SM_MSG_HOLD_DONE), "HOLD_DONE");
    assert_string_equal(sm_wire_type_name(SM_MSG_ENTRY_ASK), "ENTRY_ASK");
    assert_string_equal(sm_wire_type_name(SM_MSG_ENTRY_DONE), "ENTRY_DONE");
    assert_string_equal(sm_wire_type_name(13), "?");
    assert_string_equal(sm_wire_type_name(-1), "?");
}

/* The encoder refuses HEADS and PEERS out of order or with repeats; sm_wire_sort puts them in order, after which they encode (repeats still refused). */
static void
test_sort_and_order(void **state)
{
    sm_wire_msg m;
    size_t len;
    (void)state;
    memset(&m, 0, sizeof m);
    v_heads(&m);
    sm_wire_head t = s_heads[0];
    s_heads[0] = s_heads[1];
    s_heads[1] = t;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    sm_wire_sort(&m);
    assert_int_equal(s_round_trip(&m, NULL), 0);
    s_heads[1].origin = s_heads[0].origin;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);

    memset(&m, 0, sizeof m);
    v_peers(&m);
    sm_wire_peer p = s_peers[0];
    s_peers[0] = s_peers[1];
    s_peers[1] = p;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
    sm_wire_sort(&m);
    assert_int_equal(s_round_trip(&m, NULL), 0);
    s_peers[0].node = s_peers[1].node;
    assert_int_equal(sm_wire_encode(&m, s_big, sizeof s_big, &len), SM_EINVAL);
}

/* A bounded loop (fixed seed) of random byte flips of every good vector: never a crash, and whatever decodes re-encodes to exactly its bytes. */
static void
test_mutations(void **state)
{
    static uint8_t b[MPW_CAP], again[MPW_CAP];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    size_t accepted = 0, refused = 0;
    (void)state;
    for (size_t i = 0; i < S_NGOODS; i++) {
        sm_wire_msg m, out;
        size_t len = 0;
        s_build_good(i, &m);
        assert_int_equal(sm_wire_encode(&m, b, sizeof b, &len), 0);
        for (int round = 0; round < 2000; round++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            size_t at = (size_t)(x % len);
            uint8_t old = b[at];
            b[at] = (uint8_t)(x >> 32);
            int rc = sm_wire_decode(b, len, &s_space, &out);
            if (rc == 0) {
                size_t n = 0;
                assert_int_equal(sm_wire_encode(&out, again, sizeof again, &n), 0);
                assert_int_equal(n, len);
                assert_memory_equal(again, b, len);
                accepted++;
            } else {
                assert_true(rc < 0);
                refused++;
            }
            b[at] = old;
        }
    }
    assert_true(accepted > 0 && refused > 0);
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mesh_vectors),
        cmocka_unit_test(test_bad_mesh_vectors),
        cmocka_unit_test(test_round_trip_each_type),
        cmocka_unit_test(test_heads_limit),
        cmocka_unit_test(test_peers_limit),
        cmocka_unit_test(test_entries_limit),
        cmocka_unit_test(test_message_size_limit),
        cmocka_unit_test(test_want_limits),
        cmocka_unit_test(test_text_limits),
        cmocka_unit_test(test_value_limits),
        cmocka_unit_test(test_hostile_lengths),
        cmocka_unit_test(test_counts_checked_before_elements),
        cmocka_unit_test(test_prefixes_and_trailing),
        cmocka_unit_test(test_non_canonical_forms),
        cmocka_unit_test(test_types_and_versions),
        cmocka_unit_test(test_sort_and_order),
        cmocka_unit_test(test_mutations),
    };
    if (sodium_init() < 0)
        return 1;
    if (argc == 2 && strcmp(argv[1], "--generate") == 0)
        return s_generate();
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--generate]\n", argv[0]);
        return 2;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
