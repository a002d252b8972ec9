/*  Unit tests of the core thread (a real ledger in a temporary directory,
    real inproc ZeroMQ) and of the ledger's reads for the API
    (ledger_view.c): answers after commit, refusals isolated within a batch,
    idempotent sales, expired holds released, everything submitted before
    stop committed, the write policy's own-log gate and hold forwarding
    wired through a core with a mesh, members, sales pages, holds, versions.                   */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

typedef struct {
    char *dir;
    sm_identity id;
    sm_ledger *ledger;
    sm_core *core;
    sm_core_client *client;
    atomic_int wakes;
} fx;

static uint64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void
s_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void
s_wake(void *arg)
{
    fx *f = arg;
    atomic_fetch_add(&f->wakes, 1);
}

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    tu_identity(&f->id, 7);
    f->ledger = tu_open(f->dir, "node");
    sm_ledger_set_identity(f->ledger, &f->id);
    assert_int_equal(sm_ledger_create_market(f->ledger, "Market", "GBP", s_now_ms()), 0);
    assert_int_equal(sm_ledger_confirm_own(f->ledger), 0);   /* as init does */
    sm_body item = tu_item("mug", "Blue mug", 1250);
    assert_int_equal(sm_ledger_append(f->ledger, &item, s_now_ms(), NULL), 0);
    sm_core_opts opts = { .ledger = f->ledger, .node = f->id.pub, .wake = s_wake,
                          .wake_arg = f };
    int err = 0;
    f->core = sm_core_new(&opts, &err);
    assert_non_null(f->core);
    f->client = sm_core_client_new(f->core, &err);
    assert_non_null(f->client);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    sm_core_client_destroy(&f->client);
    sm_core_destroy(&f->core);
    sm_ledger_destroy(&f->ledger);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Wait (at most 5 s) for n answers; returns how many came. */
static size_t
s_collect(fx *f, sm_core_req **out, size_t n)
{
    size_t got = 0;
    for (int i = 0; i < 5000 && got < n; i++) {
        sm_core_req *r;
        while (got < n && (r = sm_core_done(f->client)) != NULL)
            out[got++] = r;
        if (got < n)
            s_sleep_ms(1);
    }
    return got;
}

static int64_t
s_units(fx *f, const char *sku)
{
    sm_units u;
    if (sm_ledger_units(f->ledger, sku, &f->id.pub, &u) != 0)
        return -1;
    return u.units;
}

/* Every write is answered, after its commit, with its seq. */
static void
test_core_answers_after_commit(void **state)
{
    fx *f = *state;
    enum { N = 40 };
    sm_core_req reqs[N];
    memset(reqs, 0, sizeof reqs);
    for (int i = 0; i < N; i++) {
        reqs[i].body = tu_add("mug", 2);
        reqs[i].tag = &reqs[i];
        assert_int_equal(sm_core_submit(f->client, &reqs[i]), 0);
    }
    sm_core_req *done[N];
    assert_int_equal(s_collect(f, done, N), N);
    uint64_t seen = 0;
    for (int i = 0; i < N; i++) {
        assert_ptr_equal(done[i]->tag, done[i]);
        assert_int_equal(done[i]->rc, 0);
        assert_true(done[i]->seq > 0);
        assert_true(done[i]->commit_ns >= done[i]->submit_ns);
        seen |= 1ull << (done[i] - reqs);
    }
    assert_int_equal(seen, (1ull << N) - 1);
    assert_int_equal(s_units(f, "mug"), 2 * N);
    /* The wake follows the answers (on the core thread): wait for it. */
    for (int i = 0; i < 2000 && atomic_load(&f->wakes) == 0; i++)
        s_sleep_ms(1);
    assert_true(atomic_load(&f->wakes) > 0);
}

/* A refused write in a batch leaves the others and the store intact. */
static void
test_core_refusal_is_isolated(void **state)
{
    fx *f = *state;
    sm_core_req reqs[3];
    memset(reqs, 0, sizeof reqs);
    reqs[0].body = tu_add("mug", 5);
    reqs[1].body = tu_sale("mug", 10, 1250, "");
    reqs[2].body = tu_sale("mug", 2, 1250, "");
    for (int i = 0; i < 3; i++)
        assert_int_equal(sm_core_submit(f->client, &reqs[i]), 0);
    sm_core_req *done[3];
    assert_int_equal(s_collect(f, done, 3), 3);
    assert_int_equal(reqs[0].rc, 0);
    assert_int_equal(reqs[1].rc, SM_ENOSTOCK);
    assert_int_equal(reqs[2].rc, 0);
    assert_int_equal(s_units(f, "mug"), 3);
}

/* A repeated external_id answers SM_EEXIST with the first sale's seq. */
static void
test_core_repeated_external_id(void **state)
{
    fx *f = *state;
    sm_core_req reqs[3];
    memset(reqs, 0, sizeof reqs);
    reqs[0].body = tu_add("mug", 5);
    reqs[1].body = tu_sale("mug", 1, 1250, "till-7");
    reqs[2].body = tu_sale("mug", 1, 1250, "till-7");
    for (int i = 0; i < 3; i++)
        assert_int_equal(sm_core_submit(f->client, &reqs[i]), 0);
    sm_core_req *done[3];
    assert_int_equal(s_collect(f, done, 3), 3);
    assert_int_equal(reqs[1].rc, 0);
    assert_int_equal(reqs[2].rc, SM_EEXIST);
    assert_int_equal(reqs[2].seq, reqs[1].seq);
    assert_int_equal(s_units(f, "mug"), 4);
}

static int
s_count_hold(const sm_hold *hold, void *arg)
{
    (void) hold;
    (*(int *) arg)++;
    return 0;
}

/* The core releases this node's holds once they expire. */
static void
test_core_releases_expired_holds(void **state)
{
    fx *f = *state;
    sm_core_req reqs[2];
    memset(reqs, 0, sizeof reqs);
    reqs[0].body = tu_add("mug", 4);
    reqs[1].body = tu_hold("mug", 3, s_now_ms() + 300);
    for (int i = 0; i < 2; i++)
        assert_int_equal(sm_core_submit(f->client, &reqs[i]), 0);
    sm_core_req *done[2];
    assert_int_equal(s_collect(f, done, 2), 2);
    assert_int_equal(reqs[1].rc, 0);
    sm_hold h;
    assert_int_equal(sm_ledger_hold(f->ledger, &f->id.pub, reqs[1].seq, &h), 0);
    assert_string_equal(h.sku, "mug");
    assert_int_equal(h.qty, 3);
    assert_int_equal(s_units(f, "mug"), 1);
    int open = 1;
    for (int i = 0; i < 300 && open; i++) {
        s_sleep_ms(10);
        open = 0;
        assert_int_equal(sm_ledger_holds_each(f->ledger, &f->id.pub, s_count_hold, &open), 0);
    }
    assert_int_equal(open, 0);
    assert_int_equal(s_units(f, "mug"), 4);
    assert_int_equal(sm_ledger_hold(f->ledger, &f->id.pub, reqs[1].seq, &h), SM_ENOTFOUND);
}

/* Stopping the core commits every write submitted before. */
static void
test_core_stop_commits_everything_submitted(void **state)
{
    fx *f = *state;
    enum { N = 200 };
    sm_core_req *reqs = calloc(N, sizeof *reqs);
    for (int i = 0; i < N; i++) {
        reqs[i].body = tu_add("mug", 1);
        assert_int_equal(sm_core_submit(f->client, &reqs[i]), 0);
    }
    sm_core_client_destroy(&f->client);
    sm_core_destroy(&f->core);
    assert_int_equal(s_units(f, "mug"), N);
    free(reqs);
}

typedef struct {
    int count;
    uint64_t last_seq;
    bool ordered;
} s_sales_seen;

static int
s_on_sale(const sm_sale *sale, void *arg)
{
    s_sales_seen *s = arg;
    s->ordered = s->ordered && sale->seq > s->last_seq && sale->line_count == 1
                 && strcmp(sale->lines[0].sku, "mug") == 0;
    s->last_seq = sale->seq;
    s->count++;
    return 0;
}

static int
s_on_member(const sm_member *m, void *arg)
{
    sm_member *out = arg;
    *out = *m;
    return 0;
}

/* The API's reads: sales pages from a seq, members, versions. */
/* With a mesh and a peer configured, the core checks its own log through
   the write policy first: writes answer SM_ERECOVERING until the check
   ends (here: no peer answers within SM_OWN_CHECK_MS), then append; a hold
   forwarded to a stall not in session is answered SM_EUNREACHABLE. */
static void
test_core_mesh_gate_and_forward(void **state)
{
    fx *f = *state;
    sm_core_client_destroy(&f->client);
    sm_core_destroy(&f->core);
    sm_identity peer;
    tu_identity(&peer, 9);
    sm_mesh_opts mesh;
    memset(&mesh, 0, sizeof mesh);
    mesh.ledger = f->ledger;
    mesh.identity = f->id;
    mesh.peer_count = 1;
    mesh.peers[0].node = peer.pub;
    snprintf(mesh.peers[0].endpoint, sizeof mesh.peers[0].endpoint, "tcp://127.0.0.1:9");
    sm_core_opts opts = { .ledger = f->ledger, .node = f->id.pub, .wake = s_wake,
                          .wake_arg = f, .mesh = &mesh };
    int err = 0;
    f->core = sm_core_new(&opts, &err);
    assert_non_null(f->core);
    f->client = sm_core_client_new(f->core, &err);
    assert_non_null(f->client);
    uint64_t start = s_now_ms();
    sm_core_req r;
    memset(&r, 0, sizeof r);
    r.body = tu_add("mug", 2);
    assert_int_equal(sm_core_submit(f->client, &r), 0);
    sm_core_req *done[1];
    assert_int_equal(s_collect(f, done, 1), 1);
    assert_int_equal(r.rc, SM_ERECOVERING);
    /* Once SM_OWN_CHECK_MS passed with no answer, writes go on. */
    bool appended = false;
    for (int i = 0; i < 100 && !appended; i++) {
        memset(&r, 0, sizeof r);
        r.body = tu_add("mug", 2);
        assert_int_equal(sm_core_submit(f->client, &r), 0);
        assert_int_equal(s_collect(f, done, 1), 1);
        appended = r.rc == 0;
        if (!appended) {
            assert_int_equal(r.rc, SM_ERECOVERING);
            s_sleep_ms(100);
        }
    }
    assert_true(appended);
    assert_true(s_now_ms() - start >= SM_OWN_CHECK_MS - 50);
    assert_int_equal(s_units(f, "mug"), 2);
    memset(&r, 0, sizeof r);
    r.body = tu_hold("mug", 1, 0);
    r.forward = true;
    r.at = peer.pub;
    assert_int_equal(sm_core_submit(f->client, &r), 0);
    assert_int_equal(s_collect(f, done, 1), 1);
    assert_int_equal(r.rc, SM_EUNREACHABLE);
    assert_int_equal(s_units(f, "mug"), 2);
}

static void
test_ledger_views(void **state)
{
    fx *f = *state;
    sm_core_client_destroy(&f->client);   /* this test writes directly */
    sm_core_destroy(&f->core);
    uint64_t v0 = 0, v1 = 0;
    assert_int_equal(sm_ledger_version(f->ledger, &v0), 0);
    sm_body add = tu_add("mug", 10);
    assert_int_equal(sm_ledger_append(f->ledger, &add, s_now_ms(), NULL), 0);
    uint64_t seqs[5];
    for (int i = 0; i < 5; i++) {
        sm_body sale = tu_sale("mug", 1, 1250, "");
        assert_int_equal(sm_ledger_append(f->ledger, &sale, s_now_ms(), &seqs[i]), 0);
    }
    assert_int_equal(sm_ledger_version(f->ledger, &v1), 0);
    assert_true(v1 > v0);
    s_sales_seen seen = { .ordered = true };
    assert_int_equal(sm_ledger_sales_each(f->ledger, &f->id.pub, 0, 100, s_on_sale, &seen), 0);
    assert_int_equal(seen.count, 5);
    assert_true(seen.ordered);
    s_sales_seen page = { .ordered = true };
    assert_int_equal(sm_ledger_sales_each(f->ledger, &f->id.pub, seqs[2], 2, s_on_sale, &page), 0);
    assert_int_equal(page.count, 2);
    assert_int_equal(page.last_seq, seqs[3]);
    sm_sale one;
    assert_int_equal(sm_ledger_sale(f->ledger, &f->id.pub, seqs[0], &one), 0);
    assert_int_equal(one.lines[0].qty, 1);
    assert_int_equal(one.lines[0].price, 1250);
    assert_int_equal(sm_ledger_sale(f->ledger, &f->id.pub, 999, &one), SM_ENOTFOUND);
    sm_member m;
    memset(&m, 0, sizeof m);
    assert_int_equal(sm_ledger_members_each(f->ledger, s_on_member, &m), 0);
    assert_memory_equal(m.node.b, f->id.pub.b, SM_KEY_BYTES);
    assert_int_equal(m.role, SM_ROLE_ORGANISER);
    assert_false(m.revoked);
    sm_id stranger;
    memset(&stranger, 9, sizeof stranger);
    assert_int_equal(sm_ledger_member(f->ledger, &stranger, &m), SM_ENOTFOUND);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_core_answers_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_refusal_is_isolated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_repeated_external_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_releases_expired_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_stop_commits_everything_submitted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_mesh_gate_and_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_views, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
