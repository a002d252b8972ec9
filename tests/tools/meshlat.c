/*  meshlat: how long a sale at one node takes to show in another node's
    stock, for the mesh benchmark (tests/bench/bench_mesh.sh).

        meshlat --post URL --bearer-file FILE --body TEXT --watch URL
                --sku SKU --node ID [--qty Q] [--count N] [--poll-us U]
                [--timeout-ms T]

    A poller thread asks --watch (another node's GET /api/stock) over one
    kept-alive connection every U µs (default 250) with If-None-Match, so an
    unchanged snapshot costs a 304, and notes when the units of SKU at
    location ID (the selling node) change, and to what.  The main thread
    makes N sales (default 200), one after another: it POSTs TEXT to --post
    (the selling node's /api/sales, with the bearer token in FILE; each must
    be 201), each selling Q units (default 1), and waits until the poller
    has seen the units drop by Q.  Per sale: post = start of the POST to its
    201; visible = start of the POST to the poller's answer showing it.
    Prints

        meshlat: count=N post_p50_ms=.. post_p99_ms=.. visible_p50_ms=..
                 visible_p99_ms=.. visible_max_ms=.. polls=..

    (one line) and exits 0; 1 on a failure (a POST not 201, a sale not seen
    within T ms, default 5000), 2 on usage errors.                           */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#define S_COUNT_MAX   100000L
#define S_BODY_MAX    (4u << 20)   /* a stock snapshot larger than this is an error */
#define S_ETAG_MAX    64u

typedef struct {
    char *data;
    size_t len;
} s_buf;

typedef struct {
    const char *url, *sku, *node;
    long poll_us;
    atomic_bool stop;
    pthread_mutex_t lock;
    int64_t units;             /* last seen; -1 before the first answer */
    uint64_t seen_ns;          /* when the answer showing `units` came */
    uint64_t polls;
    atomic_bool failed;        /* error[] is set */
    char error[256];
} s_watch;

static uint64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static void
s_sleep_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static size_t
s_on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_buf *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > S_BODY_MAX)
        return 0;
    char *grown = realloc(b->data, b->len + n + 1);
    if (!grown)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/*  Keep the ETag header's value (with its quotes) in etag[S_ETAG_MAX].     */
static size_t
s_on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
    char *etag = arg;
    size_t n = size * nmemb;
    if (n > 6 && strncasecmp(ptr, "etag:", 5) == 0) {
        const char *v = ptr + 5;
        size_t vl = n - 5;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        if (vl < S_ETAG_MAX) {
            memcpy(etag, v, vl);
            etag[vl] = '\0';
        }
    }
    return n;
}

static const char *
s_str(const json_t *v)
{
    const char *s = json_string_value(v);
    return s ? s : "";
}

/*  Units of sku at location node in a GET /api/stock body; 0 if the item
    has no such location, -1 if the body is not what it should be.          */
static int64_t
s_units(const char *body, size_t len, const char *sku, const char *node)
{
    json_error_t err;
    json_t *root = json_loadb(body, len, 0, &err);
    json_t *items = root ? json_object_get(root, "items") : NULL;
    int64_t units = -1;
    size_t i, j;
    json_t *item, *loc;
    json_array_foreach(items, i, item) {
        if (strcmp(s_str(json_object_get(item, "sku")), sku) != 0)
            continue;
        units = 0;
        json_array_foreach(json_object_get(item, "locations"), j, loc) {
            if (strcmp(s_str(json_object_get(loc, "node")), node) == 0)
                units = json_integer_value(json_object_get(loc, "units"));
        }
    }
    json_decref(root);
    return units;
}

static void *
s_poll_run(void *arg)
{
    s_watch *w = arg;
    CURL *easy = curl_easy_init();
    char etag[S_ETAG_MAX] = "", header[S_ETAG_MAX + 32];
    s_buf body = { NULL, 0 };
    if (!easy) {
        snprintf(w->error, sizeof w->error, "curl_easy_init failed");
        atomic_store(&w->failed, true);
        return NULL;
    }
    curl_easy_setopt(easy, CURLOPT_URL, w->url);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, etag);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    while (!atomic_load(&w->stop)) {
        struct curl_slist *hdrs = NULL;
        if (etag[0]) {
            snprintf(header, sizeof header, "If-None-Match: %s", etag);
            hdrs = curl_slist_append(NULL, header);
        }
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
        body.len = 0;
        CURLcode rc = curl_easy_perform(easy);
        uint64_t at = s_now_ns();
        long status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hdrs);
        if (rc != CURLE_OK || (status != 200 && status != 304)) {
            snprintf(w->error, sizeof w->error, "GET %s: %s (status %ld)", w->url,
                     curl_easy_strerror(rc), status);
            atomic_store(&w->failed, true);
            break;
        }
        pthread_mutex_lock(&w->lock);
        w->polls++;
        if (status == 200) {
            int64_t u = s_units(body.data, body.len, w->sku, w->node);
            if (u != w->units) {
                w->units = u;
                w->seen_ns = at;
            }
        }
        pthread_mutex_unlock(&w->lock);
        s_sleep_us(w->poll_us);
    }
    free(body.data);
    curl_easy_cleanup(easy);
    return NULL;
}

static int
s_cmp_double(const void *x, const void *y)
{
    double a = *(const double *) x, b = *(const double *) y;
    return a < b ? -1 : a > b;
}

static double
s_q(const double *v, long n, int pct)
{
    long k = (n * pct + 99) / 100;
    return v[k < 1 ? 0 : k - 1];
}

static int
s_usage(void)
{
    fprintf(stderr, "usage: meshlat --post URL --bearer-file FILE --body TEXT --watch URL "
                    "--sku SKU --node ID [--qty Q] [--count N] [--poll-us U] [--timeout-ms T]\n");
    return 2;
}

/*  The watched units: wait (bounded) for a first answer, or for units at
    most `target`; returns them and the time they were seen, or -1.         */
static int64_t
s_wait_units(s_watch *w, int64_t target, long timeout_ms, uint64_t *seen_ns)
{
    uint64_t deadline = s_now_ns() + (uint64_t) timeout_ms * 1000000ull;
    while (s_now_ns() < deadline && !atomic_load(&w->failed)) {
        pthread_mutex_lock(&w->lock);
        int64_t u = w->units;
        *seen_ns = w->seen_ns;
        pthread_mutex_unlock(&w->lock);
        if (u >= 0 && (target < 0 || u <= target))
            return u;
        s_sleep_us(50);
    }
    return -1;
}

int
main(int argc, char **argv)
{
    const char *post = NULL, *token_file = NULL, *text = NULL, *watch = NULL, *sku = NULL,
               *node = NULL;
    long qty = 1, count = 200, poll_us = 250, timeout_ms = 5000;
    for (int i = 1; i < argc; i++) {
        const char **s = strcmp(argv[i], "--post") == 0 ? &post
                       : strcmp(argv[i], "--bearer-file") == 0 ? &token_file
                       : strcmp(argv[i], "--body") == 0 ? &text
                       : strcmp(argv[i], "--watch") == 0 ? &watch
                       : strcmp(argv[i], "--sku") == 0 ? &sku
                       : strcmp(argv[i], "--node") == 0 ? &node : NULL;
        long *l = strcmp(argv[i], "--qty") == 0 ? &qty
                : strcmp(argv[i], "--count") == 0 ? &count
                : strcmp(argv[i], "--poll-us") == 0 ? &poll_us
                : strcmp(argv[i], "--timeout-ms") == 0 ? &timeout_ms : NULL;
        if ((!s && !l) || i + 1 == argc)
            return s_usage();
        if (s) {
            *s = argv[++i];
        } else {
            char *end;
            errno = 0;
            *l = strtol(argv[++i], &end, 10);
            if (errno || *end || *l < 0)
                return s_usage();
        }
    }
    if (!post || !token_file || !text || !watch || !sku || !node || qty < 1 || count < 1
        || count > S_COUNT_MAX || poll_us > 1000000 || timeout_ms < 1)
        return s_usage();
    char token[256] = "", auth[300];
    FILE *f = fopen(token_file, "r");
    if (!f || !fgets(token, sizeof token, f)) {
        fprintf(stderr, "meshlat: cannot read %s: %s\n", token_file, strerror(errno));
        return 1;
    }
    fclose(f);
    token[strcspn(token, "\r\n ")] = '\0';
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    s_watch w = { .url = watch, .sku = sku, .node = node, .poll_us = poll_us, .units = -1 };
    pthread_mutex_init(&w.lock, NULL);
    pthread_t thread;
    if (pthread_create(&thread, NULL, s_poll_run, &w) != 0) {
        fprintf(stderr, "meshlat: cannot start the poller\n");
        return 1;
    }
    CURL *easy = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    s_buf answer = { NULL, 0 };
    curl_easy_setopt(easy, CURLOPT_URL, post);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);

    double *post_ms = calloc((size_t) count, sizeof *post_ms);
    double *seen_ms = calloc((size_t) count, sizeof *seen_ms);
    int rc = 0;
    uint64_t seen = 0;
    int64_t units = s_wait_units(&w, -1, timeout_ms, &seen);
    if (units < 0) {
        fprintf(stderr, "meshlat: no first answer from %s (or it lists no %s): %s\n",
                watch, sku, atomic_load(&w.failed) ? w.error : "");
        rc = 1;
    }
    for (long i = 0; i < count && rc == 0; i++) {
        if (units < qty) {
            fprintf(stderr, "meshlat: %s has only %lld units of %s left\n", node,
                    (long long) units, sku);
            rc = 1;
            break;
        }
        answer.len = 0;
        uint64_t t0 = s_now_ns();
        CURLcode cc = curl_easy_perform(easy);
        uint64_t t1 = s_now_ns();
        long status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK || status != 201) {
            fprintf(stderr, "meshlat: sale %ld: %s, status %ld: %s\n", i + 1,
                    curl_easy_strerror(cc), status, answer.data ? answer.data : "");
            rc = 1;
            break;
        }
        int64_t now_units = s_wait_units(&w, units - qty, timeout_ms, &seen);
        if (now_units < 0) {
            fprintf(stderr, "meshlat: sale %ld not seen at %s within %ld ms %s\n", i + 1, watch,
                    timeout_ms, atomic_load(&w.failed) ? w.error : "");
            rc = 1;
            break;
        }
        units = now_units;
        post_ms[i] = (double) (t1 - t0) / 1e6;
        seen_ms[i] = seen > t0 ? (double) (seen - t0) / 1e6 : 0.0;
    }
    atomic_store(&w.stop, true);
    pthread_join(thread, NULL);
    if (rc == 0) {
        qsort(post_ms, (size_t) count, sizeof *post_ms, s_cmp_double);
        qsort(seen_ms, (size_t) count, sizeof *seen_ms, s_cmp_double);
        printf("meshlat: count=%ld post_p50_ms=%.2f post_p99_ms=%.2f visible_p50_ms=%.2f "
               "visible_p99_ms=%.2f visible_max_ms=%.2f polls=%llu\n", count,
               s_q(post_ms, count, 50), s_q(post_ms, count, 99), s_q(seen_ms, count, 50),
               s_q(seen_ms, count, 99), seen_ms[count - 1], (unsigned long long) w.polls);
    }
    free(post_ms);
    free(seen_ms);
    free(answer.data);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(easy);
    curl_global_cleanup();
    return rc;
}
