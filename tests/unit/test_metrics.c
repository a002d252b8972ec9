/*  Unit tests for src/metrics.c: counters, gauges, HTTP statuses, the
    commit histogram's bucket placement, and the exposition text parsed
    back line by line (HELP and TYPE before every family's samples, names
    and values well-formed, buckets cumulative, +Inf equal to _count).     */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "metrics.h"

#define S_SAMPLES_MAX 128
#define S_FAMILIES_MAX 32

typedef struct {
    char name[256];            /* with labels, as written: a{b="c"} */
    char family[256];          /* the HELP/TYPE name it belongs to */
    double value;
} s_sample;

typedef struct {
    char name[256];
    char type[256];
    int samples;
} s_family;

typedef struct {
    s_sample samples[S_SAMPLES_MAX];
    int nsamples;
    s_family families[S_FAMILIES_MAX];
    int nfamilies;
} s_parsed;

/*  True if s[0..len) is a Prometheus metric name.                            */
static int
s_valid_name(const char *s, size_t len)
{
    if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == ':'))
            return 0;
    return 1;
}

/*  The family a sample name belongs to: its name without labels, less a
    histogram's _bucket/_sum/_count suffix when the family is a histogram.  */
static s_family *
s_family_of(s_parsed *p, const char *sample, size_t name_len)
{
    for (int i = 0; i < p->nfamilies; i++) {
        size_t flen = strlen(p->families[i].name);
        if (strncmp(sample, p->families[i].name, flen) != 0)
            continue;
        const char *rest = sample + flen;
        size_t rlen = name_len - flen;
        if (rlen == 0)
            return &p->families[i];
        if (strcmp(p->families[i].type, "histogram") == 0
            && ((rlen == 7 && strncmp(rest, "_bucket", 7) == 0)
                || (rlen == 4 && strncmp(rest, "_sum", 4) == 0)
                || (rlen == 6 && strncmp(rest, "_count", 6) == 0)))
            return &p->families[i];
    }
    return NULL;
}

/*  Parse the exposition text, failing the test on anything malformed.     */
static void
s_parse(const char *text, size_t len, s_parsed *p)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(strlen(text), len);
    assert_true(len > 0 && text[len - 1] == '\n');
    char pending_help[256] = "";
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        size_t llen = (size_t)(end - line);
        char buf[256];
        assert_true(llen > 0 && llen < sizeof buf);
        memcpy(buf, line, llen);
        buf[llen] = '\0';
        line = end + 1;

        if (strncmp(buf, "# HELP ", 7) == 0) {
            char *name = buf + 7, *sp = strchr(name, ' ');
            assert_non_null(sp);
            assert_true(sp[1] != '\0');        /* some help text */
            assert_true(s_valid_name(name, (size_t)(sp - name)));
            *sp = '\0';
            snprintf(pending_help, sizeof pending_help, "%s", name);
            continue;
        }
        if (strncmp(buf, "# TYPE ", 7) == 0) {
            char *name = buf + 7, *sp = strchr(name, ' ');
            assert_non_null(sp);
            *sp = '\0';
            assert_string_equal(name, pending_help);    /* HELP then TYPE */
            const char *type = sp + 1;
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0
                        || strcmp(type, "histogram") == 0);
            for (int i = 0; i < p->nfamilies; i++)
                assert_string_not_equal(p->families[i].name, name);  /* once each */
            assert_true(p->nfamilies < S_FAMILIES_MAX);
            s_family *f = &p->families[p->nfamilies++];
            snprintf(f->name, sizeof f->name, "%s", name);
            snprintf(f->type, sizeof f->type, "%s", type);
            pending_help[0] = '\0';
            continue;
        }
        assert_true(buf[0] != '#');

        /* A sample: name{labels} value */
        char *sp = strrchr(buf, ' ');
        assert_non_null(sp);
        *sp = '\0';
        char *brace = strchr(buf, '{');
        size_t name_len = brace ? (size_t)(brace - buf) : strlen(buf);
        assert_true(s_valid_name(buf, name_len));
        if (brace) {
            /* labels: key="value"[,key="value"]* then '}' at the end */
            size_t blen = strlen(brace);
            assert_true(brace[blen - 1] == '}');
            const char *eq = strchr(brace, '=');
            assert_non_null(eq);
            assert_true(s_valid_name(brace + 1, (size_t)(eq - brace - 1)));
            assert_true(eq[1] == '"' && brace[blen - 2] == '"');
        }
        char *vend;
        double value = strtod(sp + 1, &vend);
        assert_true(vend != sp + 1 && *vend == '\0');
        s_family *f = s_family_of(p, buf, name_len);
        if (f == NULL)
            fail_msg("sample %s has no HELP/TYPE before it", buf);
        assert_string_equal(f->name, p->nfamilies > 0 ? p->families[p->nfamilies - 1].name : "");
        f->samples++;
        assert_true(p->nsamples < S_SAMPLES_MAX);
        s_sample *s = &p->samples[p->nsamples++];
        snprintf(s->name, sizeof s->name, "%s", buf);
        snprintf(s->family, sizeof s->family, "%s", f->name);
        s->value = value;
    }
}

/*  The value of the sample written exactly `name` (labels included); fails
    the test if there is none.                                                */
static double
s_value(const s_parsed *p, const char *name)
{
    for (int i = 0; i < p->nsamples; i++)
        if (strcmp(p->samples[i].name, name) == 0)
            return p->samples[i].value;
    fail_msg("no sample %s", name);
    return -1;
}

/*  True if a sample is written exactly `name`.                               */
static int
s_has(const s_parsed *p, const char *name)
{
    for (int i = 0; i < p->nsamples; i++)
        if (strcmp(p->samples[i].name, name) == 0)
            return 1;
    return 0;
}

/*  Render m and parse it back into p.                                        */
static void
s_render(sm_metrics *m, s_parsed *p)
{
    size_t len = 0;
    char *text = sm_metrics_render(m, &len);
    assert_non_null(text);
    s_parse(text, len, p);
    free(text);
}

static const char *const s_counter_names[SM_METRIC_COUNTERS] = {
    [SM_METRIC_ENTRIES_APPENDED] = "stallmesh_entries_appended_total",
    [SM_METRIC_ENTRIES_INGESTED] = "stallmesh_entries_ingested_total",
    [SM_METRIC_SALES] = "stallmesh_sales_total",
    [SM_METRIC_WRITES_REFUSED] = "stallmesh_writes_refused_total",
    [SM_METRIC_COMMITS] = "stallmesh_commits_total",
    [SM_METRIC_WS_DROPPED] = "stallmesh_ws_dropped_total",
    [SM_METRIC_HOLDS_EXPIRED] = "stallmesh_holds_expired_total",
    [SM_METRIC_BEACONS_SENT] = "stallmesh_beacons_sent_total",
    [SM_METRIC_BEACONS_ACCEPTED] = "stallmesh_beacons_accepted_total",
    [SM_METRIC_BEACONS_REFUSED] = "stallmesh_beacons_refused_total",
    [SM_METRIC_HTTP_REFUSED_ADDR] = "stallmesh_http_refused_address_total",
    [SM_METRIC_HTTP_REFUSED_REQUESTS] = "stallmesh_http_refused_requests_total",
    [SM_METRIC_HTTP_REFUSED_FULL] = "stallmesh_http_refused_full_total",
    [SM_METRIC_HTTP_HEADERS_TIMEOUT] = "stallmesh_http_headers_timeouts_total",
    [SM_METRIC_HTTP_BODY_TIMEOUT] = "stallmesh_http_body_timeouts_total",
    [SM_METRIC_WS_PROTOCOL_ERRORS] = "stallmesh_ws_protocol_errors_total",
};

static const char *const s_gauge_names[SM_GAUGE_COUNT] = {
    [SM_GAUGE_WS_CLIENTS] = "stallmesh_ws_clients",
    [SM_GAUGE_HTTP_CONNECTIONS] = "stallmesh_http_connections",
    [SM_GAUGE_STATE_VERSION] = "stallmesh_state_version",
    [SM_GAUGE_PEERS_CONNECTED] = "stallmesh_peers_connected",
    [SM_GAUGE_FORKS] = "stallmesh_forks",
    [SM_GAUGE_DAMAGED_ORIGINS] = "stallmesh_damaged_origins",
};

static const char *const s_le[] = {
    "0.0005", "0.001", "0.002", "0.005", "0.01", "0.02",
    "0.05", "0.1", "0.25", "0.5", "1", "+Inf",
};
#define S_BUCKETS (sizeof s_le / sizeof s_le[0])

/*  The cumulative count of bucket le=s_le[b].                                */
static double
s_bucket(const s_parsed *p, size_t b)
{
    char name[96];
    snprintf(name, sizeof name, "stallmesh_commit_seconds_bucket{le=\"%s\"}", s_le[b]);
    return s_value(p, name);
}

/*  Fresh metrics render every family with its type, all at zero, and no
    HTTP status samples.                                                      */
static void
test_new_all_zero(void **state)
{
    (void)state;
    sm_metrics *m = sm_metrics_new();
    assert_non_null(m);
    s_parsed p;
    s_render(m, &p);
    for (int i = 0; i < SM_METRIC_COUNTERS; i++)
        assert_true(s_value(&p, s_counter_names[i]) == 0);
    for (int i = 0; i < SM_GAUGE_COUNT; i++)
        assert_true(s_value(&p, s_gauge_names[i]) == 0);
    for (size_t b = 0; b < S_BUCKETS; b++)
        assert_true(s_bucket(&p, b) == 0);
    assert_true(s_value(&p, "stallmesh_commit_seconds_count") == 0);
    assert_true(s_value(&p, "stallmesh_commit_seconds_sum") == 0);
    /* the counters, the gauges, requests and the histogram */
    assert_int_equal(p.nfamilies, SM_METRIC_COUNTERS + SM_GAUGE_COUNT + 2);
    for (int i = 0; i < p.nfamilies; i++) {
        if (strcmp(p.families[i].name, "stallmesh_http_requests_total") == 0) {
            assert_string_equal(p.families[i].type, "counter");
            assert_int_equal(p.families[i].samples, 0);
        } else if (strcmp(p.families[i].name, "stallmesh_commit_seconds") == 0) {
            assert_string_equal(p.families[i].type, "histogram");
            assert_int_equal(p.families[i].samples, (int)S_BUCKETS + 2);
        } else {
            assert_int_equal(p.families[i].samples, 1);
            const char *type = strstr(p.families[i].name, "_total") ? "counter" : "gauge";
            assert_string_equal(p.families[i].type, type);
        }
    }
    sm_metrics_destroy(&m);
    assert_null(m);
    sm_metrics_destroy(&m);    /* safe twice */
}

/*  Each counter adds up separately to what was added to it.                */
static void
test_counters(void **state)
{
    (void)state;
    sm_metrics *m = sm_metrics_new();
    assert_non_null(m);
    for (int i = 0; i < SM_METRIC_COUNTERS; i++)
        for (int k = 0; k <= i; k++)
            sm_metrics_add(m, (sm_metric)i, (uint64_t)(k + 1));
    sm_metrics_add(m, SM_METRIC_SALES, 0);
    s_parsed p;
    s_render(m, &p);
    for (int i = 0; i < SM_METRIC_COUNTERS; i++)
        assert_true(s_value(&p, s_counter_names[i]) == (double)((i + 1) * (i + 2) / 2));
    sm_metrics_destroy(&m);
}

/*  Large counter values are written as exact integers.                       */
static void
test_counter_large(void **state)
{
    (void)state;
    sm_metrics *m = sm_metrics_new();
    assert_non_null(m);
    sm_metrics_add(m, SM_METRIC_COMMITS, 18446744073709551615ULL);
    char *text = sm_metrics_render(m, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "\nstallmesh_commits_total 18446744073709551615\n"));
    free(text);
    sm_metrics_destroy(&m);
}

/*  Gauges are set and moved up and down, and may go negative.             */
static void
test_gauges(void **state)
{
    (void)state;
    sm_metrics *m = sm_metrics_new();
    assert_non_null(m);
    sm_metrics_set(m, SM_GAUGE_STATE_VERSION, 9007199254740991LL);
    sm_metrics_gauge_add(m, SM_GAUGE_WS_CLIENTS, 5);
    sm_metrics_gauge_add(m, SM_GAUGE_WS_CLIENTS, -2);
    sm_metrics_gauge_add(m, SM_GAUGE_HTTP_CONNECTIONS, -1);
    char *text = sm_metrics_render(m, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "\nstallmesh_state_version 9007199254740991\n"));
    assert_non_null(strstr(text, "\nstallmesh_ws_clients 3\n"));
    assert_non_null(strstr(text, "\nstallmesh_http_connections -1\n"));
    free(text);
    sm_metrics_set(m, SM_GAUGE_WS_CLIENTS, 0);
    s_parsed p;
    s_render(m, &p);
    assert_true(s_value(&p, "stallmesh_ws_clients") == 0);
    sm_metrics_destroy(&m);
}

/*  Only statuses seen are rendered, each with its own count, including the
    edges 100 and 599, in increasing order.                                   */
static void
test_http_statuses(void **state)
{
    (void)state;
    sm_metrics *m = sm_metrics_new();
    assert_non_null(m);
    for (int i = 0; i < 3; i++)
        sm_metrics_http(m, 200);
    sm_metrics_http(m, 409);
    sm_metrics_http(m, 100);
    sm_metrics_http(m, 599);
    sm_metrics_http(m, 304);
    sm_metrics_http(m, 304);
    s_parsed p;
    s_render(m, &p);
    assert_true(s_value(&p, "stallmesh_http_requests_total{code=\"200\"}") == 3);
    assert_true(s_value(&p, "stallmesh_http_requests_total{code=\"304\"}") == 2);
    assert_true(s_value(&p, "stallmesh_http_requests_total{code=\"409\"}") == 1);
    assert_true(s_value(&p, "stallmesh_http_requests_total{code=\"100\"}") == 1);
    assert_true(s_value(&p, "stallmesh_http_requests_total{code=\"599\"}") == 1);
    assert_false(s_has(&p, "stallmesh_http_requests_total{code=\"404\"}"));
    int seen = 0, last = 0;
    for (int i = 0; i < p.nsamples; i++) {
        int code;
        if (sscanf(p.samples[i].name, "stallmesh_http_requests_total{code=\"%d\"}", &code) == 1) {
            assert_true(code > last);
            last = code;
            seen++;
        }
    }
    assert_int_equal(seen, 5);
    sm_metrics_destroy(&m);
}

/*  A commit lands in the first bucket whose bound it does not exceed (le is
    inclusive), exact to the nanosecond at each bound; buckets render
    cumulative, +Inf equals _count, and _sum is the exact total.             */
static void
test_histogram_buckets(void **state)
{
    (void)state;
    static const uint64_t bound_ns[] = {
        500000, 1000000, 2000000, 5000000, 10000000, 20000000,
        50000000, 100000000, 250000000, 500000000, 1000000000,
    };
    for (size_t b = 0; b < S_BUCKETS; b++) {
        /* ns exactly at bucket b's bound, or just past the previous one */
        uint64_t at = b < S_BUCKETS - 1 ? bound_ns[b] : 5000000000ULL;
        uint64_t after_prev = b == 0 ? 0 : bound_ns[b - 1] + 1;
        uint64_t values[2] = {at, after_prev};
        for (int v = 0; v < 2; v++) {
            sm_metrics *m = sm_metrics_new();
            assert_non_null(m);
            sm_metrics_commit_ns(m, values[v]);
            s_parsed p;
            s_render(m, &p);
            for (size_t k = 0; k < S_BUCKETS; k++) {
                double want = k >= b ? 1 : 0;
                if (s_bucket(&p, k) != want)
                    fail_msg("%llu ns: bucket le=%s has %g, want %g",
                             (unsigned long long)values[v], s_le[k], s_bucket(&p, k), want);
            }
            assert_true(s_value(&p, "stallmesh_commit_seconds_count") == 1);
            sm_metrics_destroy(&m);
        }
    }

    /* Several commits: cumulative counts and an exact sum. */
    sm_metrics *m = sm_metrics_new();
    assert_non_null(m);
    sm_metrics_commit_ns(m, 1);              /* le 0.0005 */
    sm_metrics_commit_ns(m, 700000);         /* le 0.001 */
    sm_metrics_commit_ns(m, 700000);         /* le 0.001 */
    sm_metrics_commit_ns(m, 300000000);      /* le 0.5 */
    sm_metrics_commit_ns(m, 2000000000);     /* +Inf */
    size_t len;
    char *text = sm_metrics_render(m, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "\nstallmesh_commit_seconds_sum 2.301400001\n"));
    s_parsed p;
    s_parse(text, len, &p);
    free(text);
    static const double want[] = {1, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 5};
    for (size_t k = 0; k < S_BUCKETS; k++)
        assert_true(s_bucket(&p, k) == want[k]);
    assert_true(s_value(&p, "stallmesh_commit_seconds_count") == 5);
    assert_true(s_bucket(&p, S_BUCKETS - 1) == s_value(&p, "stallmesh_commit_seconds_count"));
    sm_metrics_destroy(&m);
}

/*  The rendered text's order: the histogram's buckets by increasing le,
    then _sum, then _count.                                                    */
static void
test_histogram_order(void **state)
{
    (void)state;
    sm_metrics *m = sm_metrics_new();
    assert_non_null(m);
    char *text = sm_metrics_render(m, NULL);
    assert_non_null(text);
    const char *prev = text;
    for (size_t k = 0; k < S_BUCKETS; k++) {
        char name[96];
        snprintf(name, sizeof name, "stallmesh_commit_seconds_bucket{le=\"%s\"} ", s_le[k]);
        const char *at = strstr(text, name);
        assert_non_null(at);
        assert_true(at > prev);
        prev = at;
    }
    const char *sum = strstr(text, "stallmesh_commit_seconds_sum ");
    const char *count = strstr(text, "stallmesh_commit_seconds_count ");
    assert_true(sum != NULL && sum > prev && count != NULL && count > sum);
    free(text);
    sm_metrics_destroy(&m);
}

#define S_THREADS 4
#define S_PER_THREAD 20000

static void *
s_count_thread(void *arg)
{
    sm_metrics *m = arg;
    for (int i = 0; i < S_PER_THREAD; i++) {
        sm_metrics_add(m, SM_METRIC_ENTRIES_APPENDED, 1);
        sm_metrics_gauge_add(m, SM_GAUGE_WS_CLIENTS, (i & 1) ? -1 : 1);
        sm_metrics_http(m, 200);
        sm_metrics_commit_ns(m, (uint64_t)(i % 3) * 1000000);
    }
    return NULL;
}

/*  Threads counting at once lose no update.                                  */
static void
test_threads(void **state)
{
    (void)state;
    sm_metrics *m = sm_metrics_new();
    assert_non_null(m);
    pthread_t t[S_THREADS];
    for (int i = 0; i < S_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, s_count_thread, m), 0);
    for (int i = 0; i < S_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    s_parsed p;
    s_render(m, &p);
    double total = (double)S_THREADS * S_PER_THREAD;
    assert_true(s_value(&p, "stallmesh_entries_appended_total") == total);
    assert_true(s_value(&p, "stallmesh_ws_clients") == 0);
    assert_true(s_value(&p, "stallmesh_http_requests_total{code=\"200\"}") == total);
    assert_true(s_value(&p, "stallmesh_commit_seconds_count") == total);
    sm_metrics_destroy(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_all_zero),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_counter_large),
        cmocka_unit_test(test_gauges),
        cmocka_unit_test(test_http_statuses),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_histogram_order),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
