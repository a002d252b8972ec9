/*  httpload: N HTTP requests over kept-alive connections, each timed, for
    the sale latency benchmark (tests/bench/bench_node.sh).

        httpload URL --requests N [--parallel P] [--method M] [--body TEXT]
                     [--header "Name: value"]... [--bearer-file FILE]
                     [--expect STATUS] [--timeout-ms T]

    P connections (default 1: strictly one request after another) each send
    their next request as soon as the previous answer is whole, until N have
    been answered.  In TEXT every "%n" becomes the request's number (1..N)
    and "%%" a "%", so each request can carry a unique external id.  Each
    answer must have status STATUS (default 200); the first that does not
    stops the run with its status and body on stderr (exit 1).  Latency is
    libcurl's total time of a request (from its start to the last byte of
    the answer).  Prints

        httpload: requests=N parallel=P rps=R mean_ms=M p50_ms=A p99_ms=B max_ms=C

    and exits 0.  Exit 1 on a failed request or when the whole run takes
    more than T ms (default 300000), 2 for usage errors.                      */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define S_PARALLEL_MAX   256u
#define S_REQUESTS_MAX   10000000ul
#define S_HEADERS_MAX    16
#define S_BODY_BYTES_MAX 65536u
#define S_ANSWER_KEEP    512u     /* answer bytes kept for an error message */

typedef struct {
    CURL *easy;
    char *body;                /* this request's body, from the template */
    char answer[S_ANSWER_KEEP + 1];
    size_t answer_len;
    unsigned long number;      /* 1..N */
} s_conn;

static uint64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static size_t
s_on_answer(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_conn *c = arg;
    size_t n = size * nmemb, room = S_ANSWER_KEEP - c->answer_len;
    size_t take = n < room ? n : room;
    memcpy(c->answer + c->answer_len, ptr, take);
    c->answer_len += take;
    c->answer[c->answer_len] = '\0';
    return n;
}

/*  Write the template with %n as `number` into out[0..cap).  -1 if it does
    not fit.                                                                  */
static int
s_expand(const char *tpl, unsigned long number, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = tpl; *p; p++) {
        char num[24];
        const char *piece = p;
        size_t len = 1;
        if (p[0] == '%' && p[1] == 'n') {
            len = (size_t) snprintf(num, sizeof num, "%lu", number);
            piece = num;
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            p++;
        }
        if (o + len >= cap)
            return -1;
        memcpy(out + o, piece, len);
        o += len;
    }
    out[o] = '\0';
    return (int) o;
}

/*  Start request `number` on connection c: its body from the template.    */
static int
s_start(CURLM *multi, s_conn *c, const char *tpl, unsigned long number)
{
    c->number = number;
    c->answer_len = 0;
    if (tpl) {
        int blen = s_expand(tpl, number, c->body, S_BODY_BYTES_MAX);
        if (blen < 0) {
            fprintf(stderr, "httpload: the body is over %u bytes\n", S_BODY_BYTES_MAX);
            return -1;
        }
        curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long) blen);
    }
    return curl_multi_add_handle(multi, c->easy) == CURLM_OK ? 0 : -1;
}

static int
s_cmp_double(const void *x, const void *y)
{
    double a = *(const double *) x, b = *(const double *) y;
    return a < b ? -1 : a > b;
}

static double
s_quantile(const double *v, size_t n, double q)
{
    size_t k = (size_t) (q * (double) n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

static void
s_usage(FILE *to)
{
    fprintf(to, "usage: httpload URL --requests N [--parallel P] [--method M] [--body TEXT]\n"
                "                [--header \"Name: value\"]... [--bearer-file FILE]\n"
                "                [--expect STATUS] [--timeout-ms T]\n");
}

static unsigned long
s_num(const char *opt, const char *text, unsigned long lo, unsigned long hi)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "httpload: %s wants a number from %lu to %lu, not '%s'\n",
                opt, lo, hi, text);
        exit(2);
    }
    return v;
}

int
main(int argc, char **argv)
{
    const char *url = NULL, *method = "GET", *tpl = NULL, *bearer_file = NULL;
    const char *headers[S_HEADERS_MAX];
    int nheaders = 0;
    unsigned long requests = 0, parallel = 1, timeout_ms = 300000;
    long expect = 200;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            if (url) {
                s_usage(stderr);
                return 2;
            }
            url = a;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            s_usage(stdout);
            return 0;
        }
        if (!v) {
            s_usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--requests") == 0)
            requests = s_num(a, v, 1, S_REQUESTS_MAX);
        else if (strcmp(a, "--parallel") == 0)
            parallel = s_num(a, v, 1, S_PARALLEL_MAX);
        else if (strcmp(a, "--method") == 0)
            method = v;
        else if (strcmp(a, "--body") == 0)
            tpl = v;
        else if (strcmp(a, "--header") == 0 && nheaders < S_HEADERS_MAX)
            headers[nheaders++] = v;
        else if (strcmp(a, "--bearer-file") == 0)
            bearer_file = v;
        else if (strcmp(a, "--expect") == 0)
            expect = (long) s_num(a, v, 100, 599);
        else if (strcmp(a, "--timeout-ms") == 0)
            timeout_ms = s_num(a, v, 1, 3600000);
        else {
            s_usage(stderr);
            return 2;
        }
    }
    if (!url || requests == 0) {
        s_usage(stderr);
        return 2;
    }
    if (parallel > requests)
        parallel = requests;

    int rc = 1;
    CURLM *multi = NULL;
    struct curl_slist *hdrs = NULL;
    s_conn *conns = calloc(parallel, sizeof *conns);
    double *lat_ms = calloc(requests, sizeof *lat_ms);
    if (!conns || !lat_ms) {
        fprintf(stderr, "httpload: out of memory\n");
        goto fail;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "httpload: libcurl did not start\n");
        goto fail;
    }
    for (int i = 0; i < nheaders; i++)
        hdrs = curl_slist_append(hdrs, headers[i]);
    if (bearer_file) {
        char token[512], line[600];
        FILE *f = fopen(bearer_file, "r");
        if (!f || !fgets(token, sizeof token, f)) {
            fprintf(stderr, "httpload: cannot read a token from %s\n", bearer_file);
            if (f)
                fclose(f);
            goto fail;
        }
        fclose(f);
        token[strcspn(token, "\r\n")] = '\0';
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, line);
    }
    if (tpl)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");  /* no 100-continue round trip */
    multi = curl_multi_init();
    if (!multi)
        goto fail;
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) parallel);

    unsigned long started = 0, answered = 0;
    for (unsigned long i = 0; i < parallel; i++) {
        s_conn *c = &conns[i];
        c->easy = curl_easy_init();
        c->body = tpl ? malloc(S_BODY_BYTES_MAX) : NULL;
        if (!c->easy || (tpl && !c->body)) {
            fprintf(stderr, "httpload: out of memory\n");
            goto fail;
        }
        curl_easy_setopt(c->easy, CURLOPT_URL, url);
        curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, s_on_answer);
        curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->easy, CURLOPT_TCP_NODELAY, 1L);
    }


    uint64_t t0 = s_now_ns(), deadline = t0 + (uint64_t) timeout_ms * 1000000ull;
    for (unsigned long i = 0; i < parallel; i++)
        if (s_start(multi, &conns[i], tpl, ++started) != 0)
            goto fail;
    while (answered < requests) {
        int running = 0, msgs = 0;
        if (curl_multi_perform(multi, &running) != CURLM_OK) {
            fprintf(stderr, "httpload: libcurl failed\n");
            goto fail;
        }
        CURLMsg *m;
        while ((m = curl_multi_info_read(multi, &msgs))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            s_conn *c = NULL;
            CURL *easy = m->easy_handle;
            CURLcode res = m->data.result;
            curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &c);
            curl_multi_remove_handle(multi, easy);
            if (res != CURLE_OK) {
                fprintf(stderr, "httpload: request %lu: %s\n", c->number,
                        curl_easy_strerror(res));
                goto fail;
            }
            long status = 0;
            curl_off_t total_us = 0;
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us);
            if (status != expect) {
                fprintf(stderr, "httpload: request %lu: status %ld, not %ld: %s\n",
                        c->number, status, expect, c->answer);
                goto fail;
            }
            lat_ms[answered++] = (double) total_us / 1000.0;
            if (started < requests && s_start(multi, c, tpl, ++started) != 0)
                goto fail;
        }
        if (answered >= requests)
            break;
        if (s_now_ns() > deadline) {
            fprintf(stderr, "httpload: %lu of %lu answered after %lu ms\n", answered,
                    requests, timeout_ms);
            goto fail;
        }
        curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double secs = (double) (s_now_ns() - t0) / 1e9;
    double sum_ms = 0;
    for (unsigned long i = 0; i < requests; i++)
        sum_ms += lat_ms[i];
    qsort(lat_ms, requests, sizeof *lat_ms, s_cmp_double);
    printf("httpload: requests=%lu parallel=%lu rps=%.0f mean_ms=%.3f p50_ms=%.3f p99_ms=%.3f "
           "max_ms=%.3f\n", requests, parallel, (double) requests / secs,
           sum_ms / (double) requests, s_quantile(lat_ms, requests, 0.50),
           s_quantile(lat_ms, requests, 0.99), lat_ms[requests - 1]);
    rc = 0;
fail:
    for (unsigned long i = 0; conns && i < parallel; i++) {
        if (conns[i].easy) {
            if (multi)
                curl_multi_remove_handle(multi, conns[i].easy);
            curl_easy_cleanup(conns[i].easy);
        }
        free(conns[i].body);
    }
    if (multi)
        curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);
    free(conns);
    free(lat_ms);
    curl_global_cleanup();
    return rc;
}
