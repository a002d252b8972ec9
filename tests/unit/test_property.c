/*  Property tests of the ledger: random workloads from several
    origins, replayed into fresh replicas as random permutations of random
    runs with duplicates, must give identical digests with no location ever
    below zero; reindex must give the same digest; and nothing may be left
    waiting once everything has arrived.  Each seed is reported on failure.  */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stallmesh/error.h"
#include "stallmesh/ledger.h"
#include "testutil.h"

#define NOW     1700000000000ULL
#define NODES   4
#define SKUS    3
#define STEPS   300
#define SEEDS   40

typedef struct {
    uint64_t holds[64];
    size_t hold_count;
    uint64_t sales[64];
    size_t sale_count;
} s_node_log;

static const char *const s_skus[SKUS] = { "tee", "mug", "pin" };

static void
s_check_code(int rc, uint64_t seed, int step)
{
    if (rc == 0 || rc == SM_ENOSTOCK || rc == SM_EOVERRETURN || rc == SM_ENOHOLD)
        return;
    fail_msg("seed %llu step %d: unexpected %s", (unsigned long long) seed, step,
             sm_strerror(rc));
}

/* One random workload; leaves every node fully synced. */
static void
s_workload(uint64_t seed, sm_ledger **n, sm_identity *ids)
{
    uint64_t rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    s_node_log logs[NODES];
    memset(logs, 0, sizeof logs);
    uint64_t now = NOW;
    for (int step = 0; step < STEPS; step++) {
        int i = (int) tu_below(&rng, NODES);
        const char *sku = s_skus[tu_below(&rng, SKUS)];
        uint64_t op = tu_below(&rng, 100), seq = 0;
        int rc = 0;
        sm_body b;
        now += tu_below(&rng, 50);
        if (op < 20) {
            b = tu_add(sku, (uint32_t) (1 + tu_below(&rng, 5)));
        } else if (op < 45) {
            b = tu_sale(sku, (uint32_t) (1 + tu_below(&rng, 3)), 500, NULL);
        } else if (op < 55) {
            b = tu_hold(sku, (uint32_t) (1 + tu_below(&rng, 2)), now + 60000);
        } else if (op < 62) {
            if (logs[i].hold_count == 0)
                continue;
            b = tu_release(logs[i].holds[tu_below(&rng, logs[i].hold_count)]);
        } else if (op < 70) {
            if (logs[i].sale_count == 0)
                continue;
            b = tu_return(logs[i].sales[tu_below(&rng, logs[i].sale_count)], sku, 1);
        } else if (op < 77) {
            int64_t d = (int64_t) (1 + tu_below(&rng, 3));
            b = tu_adjust(sku, tu_below(&rng, 2) ? d : -d);
        } else if (op < 87) {
            int to = (int) ((i + 1 + tu_below(&rng, NODES - 1)) % NODES);
            b = tu_move(sku, (uint32_t) (1 + tu_below(&rng, 3)), &ids[to].pub);
        } else if (op < 92) {
            char name[32];
            snprintf(name, sizeof name, "%s v%d", sku, step);
            b = tu_item(sku, name, (int64_t) tu_below(&rng, 5000));
        } else {
            int j = (int) ((i + 1 + tu_below(&rng, NODES - 1)) % NODES);
            tu_sync(n[i], n[j], now);
            continue;
        }
        rc = sm_ledger_append(n[i], &b, now, &seq);
        s_check_code(rc, seed, step);
        if (rc == 0 && b.kind == SM_KIND_HOLD && logs[i].hold_count < 64)
            logs[i].holds[logs[i].hold_count++] = seq;
        if (rc == 0 && b.kind == SM_KIND_SALE && logs[i].sale_count < 64)
            logs[i].sales[logs[i].sale_count++] = seq;
        assert_int_equal(tu_negative_units(n[i]), 0);
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < NODES; i++)
            for (int j = 0; j < NODES; j++)
                if (i != j)
                    tu_sync(n[i], n[j], now);
}

typedef struct {
    int origin;
    size_t first, count;
} s_chunk;

static int
s_all_applied(const sm_head *h, void *arg)
{
    if (h->applied != (h->seq < h->cap ? h->seq : h->cap))
        (*(int *) arg)++;
    return 0;
}

static size_t s_waited;         /* ingests that left entries waiting */

/* Feed every origin's log into `r` as shuffled runs with duplicates. */
static void
s_replay(uint64_t seed, sm_ledger *r, tu_copy **logs, size_t *lens,
         const sm_identity *ids)
{
    uint64_t rng = seed ^ 0xabcdef12345ULL;
    s_chunk *chunks = calloc(4096, sizeof *chunks);
    size_t nc = 0;
    for (int o = 0; o < NODES; o++) {
        size_t at = 0;
        while (at < lens[o]) {
            size_t len = 1 + tu_below(&rng, 12);
            if (at + len > lens[o])
                len = lens[o] - at;
            chunks[nc++] = (s_chunk) { o, at, len };
            if (tu_below(&rng, 100) < 30)  /* duplicate it */
                chunks[nc++] = (s_chunk) { o, at, len };
            at += len;
        }
    }
    sm_signed *run = calloc(64, sizeof *run);
    for (int pass = 0; pass < 200; pass++) {
        for (size_t i = nc; i > 1; i--) {       /* Fisher-Yates */
            size_t j = tu_below(&rng, i);
            s_chunk t = chunks[i - 1];
            chunks[i - 1] = chunks[j];
            chunks[j] = t;
        }
        size_t accepted = 0;
        for (size_t c = 0; c < nc; c++) {
            for (size_t k = 0; k < chunks[c].count; k++) {
                tu_copy *e = &logs[chunks[c].origin][chunks[c].first + k];
                run[k].bytes = e->bytes;
                run[k].len = e->len;
                memcpy(run[k].sig, e->sig, SM_SIG_BYTES);
            }
            sm_ingest_result res;
            int rc = sm_ledger_ingest(r, run, chunks[c].count, NOW + 1000000, &res);
            if (rc != 0 && rc != SM_EGAP && rc != SM_ENOTMEMBER)
                fail_msg("seed %llu: ingest refused: %s", (unsigned long long) seed,
                         sm_strerror(rc));
            accepted += res.accepted;
            sm_head h;
            assert_int_equal(sm_ledger_head(r, &ids[chunks[c].origin].pub, &h), 0);
            if (h.applied < h.seq)
                s_waited++;
            if (tu_negative_units(r) != 0)
                fail_msg("seed %llu: a location went below zero", (unsigned long long) seed);
        }
        if (accepted == 0)
            break;
    }
    free(run);
    free(chunks);
}

/*  The digest of the sum node `l` kept as it wrote is the one a scan of
    its state gives, of the same version.                                    */
static void
s_kept_matches(uint64_t seed, sm_ledger *l)
{
    sm_hash kept, scan;
    uint64_t vk = 0, vs = 0;
    assert_int_equal(sm_ledger_digest_kept(l, &kept, &vk), 0);
    assert_int_equal(sm_ledger_digest_scan(l, &scan, &vs), 0);
    assert_int_equal(vk, vs);
    if (memcmp(kept.b, scan.b, SM_HASH_BYTES) != 0)
        fail_msg("seed %llu: the kept digest is not the state's", (unsigned long long) seed);
}

/* Random workloads replayed in random orders converge to one digest. */
static void
test_permutations_converge(void **state)
{
    (void) state;
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        char *dir = tu_tempdir();
        sm_identity ids[NODES];
        sm_ledger *n[NODES];
        for (int i = 0; i < NODES; i++) {
            char name[16];
            snprintf(name, sizeof name, "n%d", i);
            tu_identity(&ids[i], (uint8_t) (10 + i));
            n[i] = tu_open(dir, name);
            sm_ledger_set_identity(n[i], &ids[i]);
            if (i % 2)           /* half keep the digest's sum as they write */
                assert_int_equal(sm_ledger_keep_digest(n[i]), 0);
        }
        assert_int_equal(sm_ledger_create_market(n[0], "Prop", "GBP", NOW), 0);
        for (int i = 1; i < NODES; i++) {
            sm_body ad = tu_admit(&ids[i].pub, "stall", SM_ROLE_STALL);
            assert_int_equal(sm_ledger_append(n[0], &ad, NOW, NULL), 0);
        }
        for (int s = 0; s < SKUS; s++) {
            sm_body it = tu_item(s_skus[s], s_skus[s], 100 * (s + 1));
            assert_int_equal(sm_ledger_append(n[0], &it, NOW, NULL), 0);
        }
        for (int i = 1; i < NODES; i++) {
            tu_join(n[i], n[0]);
            tu_sync(n[0], n[i], NOW);
        }
        s_workload(seed, n, ids);

        sm_hash d0;
        assert_int_equal(sm_ledger_digest(n[0], &d0), 0);
        for (int i = 1; i < NODES; i += 2)
            s_kept_matches(seed, n[i]);
        for (int i = 1; i < NODES; i++) {
            sm_hash di;
            assert_int_equal(sm_ledger_digest(n[i], &di), 0);
            if (memcmp(d0.b, di.b, SM_HASH_BYTES) != 0)
                fail_msg("seed %llu: node %d diverged after sync", (unsigned long long) seed, i);
        }

        tu_copy *logs[NODES];
        size_t lens[NODES], entries = 0;
        for (int o = 0; o < NODES; o++) {
            logs[o] = calloc(STEPS + 64, sizeof **logs);
            lens[o] = tu_read(n[0], &ids[o].pub, 1, STEPS + 64, logs[o]);
            entries += lens[o];
        }
        assert_true(entries > STEPS / 2);     /* the workload did real work */
        for (int r = 0; r < 2; r++) {
            char name[16];
            snprintf(name, sizeof name, "r%d", r);
            sm_ledger *rep = tu_open(dir, name);
            if (r == 0)
                assert_int_equal(sm_ledger_keep_digest(rep), 0);
            tu_join(rep, n[0]);
            s_replay(seed * 31 + (uint64_t) r, rep, logs, lens, ids);
            sm_hash dr;
            assert_int_equal(sm_ledger_digest(rep, &dr), 0);
            int waiting = 0;
            assert_int_equal(sm_ledger_heads(rep, s_all_applied, &waiting), 0);
            if (waiting)
                fail_msg("seed %llu: %d origins left waiting", (unsigned long long) seed, waiting);
            if (memcmp(d0.b, dr.b, SM_HASH_BYTES) != 0)
                fail_msg("seed %llu: replica %d digest differs", (unsigned long long) seed, r);
            assert_int_equal(sm_ledger_reindex(rep), 0);
            assert_int_equal(sm_ledger_digest(rep, &dr), 0);
            if (memcmp(d0.b, dr.b, SM_HASH_BYTES) != 0)
                fail_msg("seed %llu: reindex changed the digest", (unsigned long long) seed);
            if (r == 0)
                s_kept_matches(seed, rep);
            sm_ledger_destroy(&rep);
        }
        for (int o = 0; o < NODES; o++) {
            tu_free(logs[o], lens[o]);
            free(logs[o]);
        }
        for (int i = 0; i < NODES; i++)
            sm_ledger_destroy(&n[i]);
        tu_rmrf(dir);
        free(dir);
    }
    /* Some deliveries must have arrived before the moves they depend on,
       or the waiting path was never exercised. */
    assert_true(s_waited > 0);
}

/* The digest distinguishes states: one more entry changes it (so equal
   digests above mean something). */
static void
test_digest_sensitive(void **state)
{
    (void) state;
    char *dir = tu_tempdir();
    sm_identity id;
    tu_identity(&id, 42);
    sm_ledger *l = tu_open(dir, "d");
    sm_ledger_set_identity(l, &id);
    assert_int_equal(sm_ledger_create_market(l, "D", "GBP", NOW), 0);
    sm_body it = tu_item("tee", "Tee", 100);
    assert_int_equal(sm_ledger_append(l, &it, NOW, NULL), 0);
    sm_hash d1, d2;
    assert_int_equal(sm_ledger_digest(l, &d1), 0);
    sm_body add = tu_add("tee", 1);
    assert_int_equal(sm_ledger_append(l, &add, NOW, NULL), 0);
    assert_int_equal(sm_ledger_digest(l, &d2), 0);
    assert_memory_not_equal(d1.b, d2.b, SM_HASH_BYTES);
    sm_ledger_destroy(&l);
    tu_rmrf(dir);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_sensitive),
        cmocka_unit_test(test_permutations_converge),
    };
    return cmocka_run_group_tests_name("property", tests, NULL, NULL);
}
