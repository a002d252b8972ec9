/*  stallmesh-sim: the deterministic simulator's command line (sim.h).

        stallmesh-sim [--seed S | --seeds A..B] [--nodes N] [--ticks T]
                      [--faults LIST] [--verbose] [--quiet]

    Each seed runs one market from scratch and prints

        seed S trace <hex digest of the trace>

    as its last line; a seed that breaks an invariant prints what broke and
    the command that replays it first, and the exit status is 1.  The same
    seed (with the same options) always gives the same trace.  A range ends
    with a summary: seeds run, failures, time, and the faults injected by
    kind.  If the library aborts (an assertion), the seed and its replay
    command are printed before the process dies.                            */
#include "sim.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "logger.h"
#include "stallmesh/error.h"
#include "stallmesh/identity.h"

static char s_replay[1024];     /* written by the abort handler */

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: stallmesh-sim [--seed S | --seeds A..B] [--nodes N] [--ticks T]\n"
            "                     [--faults LIST] [--verbose] [--quiet] [--keep]\n"
            "  --seed S        run one seed (default 1)\n"
            "  --seeds A..B    run seeds A to B\n"
            "  --nodes N       nodes in the market, %d to %d, or random (the default: each\n"
            "                  seed draws 3 to 7); under the hostile fault the last node is\n"
            "                  the hostile member\n"
            "  --ticks T       simulated seconds of trading under faults (default 150)\n"
            "  --faults LIST   random (default: each seed draws its mix), all, none, or a\n"
            "                  comma list of: loss dup reorder delay partition crash offline\n"
            "                  restore clock hostile\n"
            "  --verbose       narrate each run on stderr\n"
            "  --quiet         print only failures and the summary\n"
            "  --strict        fail on known design issues too (README \"Simulator\")\n"
            "  --keep          leave the run's stores on disk (to inspect a failure)\n"
            "  --inspect DIR   print a kept store's heads, forks and digest\n",
            SIM_NODES_MIN, SIM_NODES_MAX);
}

static void
s_on_abort(int sig)
{
    (void) sig;
    ssize_t n = write(STDOUT_FILENO, s_replay, strlen(s_replay));
    (void) n;
    signal(SIGABRT, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    raise(sig);
}

static int
s_fork_cb(const sm_id *origin, uint64_t seq, void *arg)
{
    (void) arg;
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(origin, hex);
    printf("fork   %.16s at seq %llu\n", hex, (unsigned long long) seq);
    return 0;
}

static int
s_head_cb(const sm_head *h, void *arg)
{
    (void) arg;
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&h->origin, hex);
    printf("origin %.16s stored %llu applied %llu cap %lld\n", hex, (unsigned long long) h->seq,
           (unsigned long long) h->applied, h->cap == UINT64_MAX ? -1LL : (long long) h->cap);
    return 0;
}

static int
s_stock_cb(const char *sku, const sm_id *loc, const sm_units *u, void *arg)
{
    (void) arg;
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(loc, hex);
    printf("stock  %s at %.16s: added %lld in %lld out %lld sold %lld returned %lld off %lld "
           "held %lld = %lld\n", sku, hex, (long long) u->added, (long long) u->moved_in,
           (long long) u->moved_out, (long long) u->sold, (long long) u->returned,
           (long long) u->written_off, (long long) u->held, (long long) u->units);
    return 0;
}

static int
s_item_cb(const sm_item *it, void *arg)
{
    (void) arg;
    printf("item   %s \"%s\" %lld %s hlc %llu\n", it->sku, it->name, (long long) it->price,
           it->currency, (unsigned long long) it->hlc);
    return 0;
}

static int
s_sale_cb(const sm_sale *sale, void *arg)
{
    (*(uint64_t *) arg)++;
    (void) sale;
    return 0;
}

static int
s_hold_cb(const sm_hold *h, void *arg)
{
    (void) arg;
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&h->origin, hex);
    printf("hold   %.16s:%llu %s x%u until %llu\n", hex, (unsigned long long) h->seq, h->sku,
           h->qty, (unsigned long long) h->expires_ms);
    return 0;
}

static int
s_head_sales_cb(const sm_head *h, void *arg)
{
    sm_ledger *l = arg;
    uint64_t n = 0;
    sm_ledger_sales_each(l, &h->origin, 1, SIZE_MAX, s_sale_cb, &n);
    char hex[SM_ID_HEX_BYTES + 1];
    sm_id_format(&h->origin, hex);
    printf("sales  %.16s: %llu\n", hex, (unsigned long long) n);
    sm_ledger_holds_each(l, &h->origin, s_hold_cb, NULL);
    return 0;
}

/*  --inspect DIR: the heads, forks, digest and state of one kept store.    */
static int
s_inspect(const char *dir)
{
    sm_ledger_opts o = { .read_only = true };
    int err = 0;
    sm_ledger *l = sm_ledger_open(dir, &o, &err);
    if (!l) {
        fprintf(stderr, "stallmesh-sim: cannot open %s: %s\n", dir, sm_strerror(err));
        return 2;
    }
    sm_hash d;
    char hex[2 * SM_HASH_BYTES + 1] = "?";
    if (sm_ledger_digest(l, &d) == 0)
        sm_hex_encode(d.b, SM_HASH_BYTES, hex);
    printf("digest %s\n", hex);
    sm_ledger_heads(l, s_head_cb, NULL);
    sm_ledger_forks_each(l, s_fork_cb, NULL);
    sm_ledger_items_each(l, s_item_cb, NULL);
    sm_ledger_stock_each(l, s_stock_cb, NULL);
    sm_ledger_heads(l, s_head_sales_cb, l);
    sm_ledger_destroy(&l);
    return 0;
}

static double
s_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    sim_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.nodes = 0;                    /* random */
    cfg.ticks = 150;
    cfg.faults_random = true;
    cfg.argv0 = argv[0];
    uint64_t first = 1, last = 1;
    const char *faults_text = "random", *nodes_text = "random";
    bool quiet = false;
    static const struct option opts[] = {
        { "seed", required_argument, NULL, 's' },
        { "seeds", required_argument, NULL, 'S' },
        { "nodes", required_argument, NULL, 'n' },
        { "ticks", required_argument, NULL, 't' },
        { "faults", required_argument, NULL, 'f' },
        { "verbose", no_argument, NULL, 'v' },
        { "quiet", no_argument, NULL, 'q' },
        { "keep", no_argument, NULL, 'k' },
        { "strict", no_argument, NULL, 'x' },
        { "inspect", required_argument, NULL, 'i' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 's':
            first = last = strtoull(optarg, &end, 10);
            if (!end || *end) {
                fprintf(stderr, "stallmesh-sim: --seed wants a number\n");
                return 2;
            }
            break;
        case 'S':
            first = strtoull(optarg, &end, 10);
            if (!end || strncmp(end, "..", 2) != 0) {
                fprintf(stderr, "stallmesh-sim: --seeds wants A..B\n");
                return 2;
            }
            last = strtoull(end + 2, &end, 10);
            if (*end || last < first) {
                fprintf(stderr, "stallmesh-sim: --seeds wants A..B with A <= B\n");
                return 2;
            }
            break;
        case 'n':
            cfg.nodes = strcmp(optarg, "random") == 0 ? 0 : atoi(optarg);
            if (cfg.nodes != 0 && (cfg.nodes < SIM_NODES_MIN || cfg.nodes > SIM_NODES_MAX)) {
                fprintf(stderr, "stallmesh-sim: --nodes must be %d to %d, or random\n",
                        SIM_NODES_MIN, SIM_NODES_MAX);
                return 2;
            }
            nodes_text = optarg;
            break;
        case 't':
            cfg.ticks = (uint32_t) strtoul(optarg, &end, 10);
            if (!end || *end || cfg.ticks == 0 || cfg.ticks > 100000) {
                fprintf(stderr, "stallmesh-sim: --ticks must be 1 to 100000\n");
                return 2;
            }
            break;
        case 'f':
            faults_text = optarg;
            if (sim_faults_parse(optarg, &cfg.faults, &cfg.faults_random) != 0) {
                fprintf(stderr, "stallmesh-sim: unknown fault in '%s'\n", optarg);
                s_usage(stderr);
                return 2;
            }
            break;
        case 'v':
            cfg.verbose = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'k':
            cfg.keep = true;
            break;
        case 'x':
            cfg.strict = true;
            break;
        case 'i':
            return s_inspect(optarg);
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        s_usage(stderr);
        return 2;
    }
    if (sm_crypto_init() != 0) {
        fprintf(stderr, "stallmesh-sim: cannot initialise libsodium\n");
        return 2;
    }
    sm_log_set_level(cfg.verbose ? SM_LOG_WARN : SM_LOG_ERROR);
#ifdef SM_SIM_BUG
    fprintf(stderr, "stallmesh-sim: built with planted bug %d (sim-selftest)\n", SM_SIM_BUG);
#endif
    signal(SIGABRT, s_on_abort);
    signal(SIGSEGV, s_on_abort);
    setvbuf(stdout, NULL, _IOLBF, 0);

    uint64_t counters[SIM_C_COUNT] = { 0 };
    uint64_t failures = 0, runs = 0;
    double start = s_seconds();
    for (uint64_t seed = first; seed <= last; seed++) {
        cfg.seed = seed;
        char replay[512];
        snprintf(replay, sizeof replay, "%s --seed %llu --nodes %s --ticks %u --faults %s",
                 cfg.argv0, (unsigned long long) seed, nodes_text, cfg.ticks, faults_text);
        snprintf(s_replay, sizeof s_replay, "seed %llu ABORTED (an assertion or a crash)\n"
                 "replay: %s --verbose\n", (unsigned long long) seed, replay);
        sm_hash digest;
        char failure[512];
        int rc = sim_run(&cfg, &digest, counters, failure, sizeof failure);
        runs++;
        char hex[2 * SM_HASH_BYTES + 1];
        sm_hex_encode(digest.b, SM_HASH_BYTES, hex);
        if (rc != 0) {
            failures++;
            printf("seed %llu FAILED: %s\nreplay: %s --verbose\n", (unsigned long long) seed,
                   failure, replay);
        }
        if (rc != 0 || !quiet)
            printf("seed %llu trace %s\n", (unsigned long long) seed, hex);
    }
    if (runs > 1 || quiet) {
        printf("sim: %llu seeds, %llu failed, %.1f s, %s nodes, %u s of trading each; injected:",
               (unsigned long long) runs, (unsigned long long) failures, s_seconds() - start,
               cfg.nodes ? nodes_text : "3-7", cfg.ticks);
        for (int k = 0; k < SIM_C_COUNT; k++)
            printf(" %s=%llu", sim_counter_name(k), (unsigned long long) counters[k]);
        printf("\n");
    }
    return failures ? 1 : 0;
}
