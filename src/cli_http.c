/*  HTTP requests from the CLI to its node's JSON API: the only file that
    includes curl/curl.h.

    One blocking request at a time, each on a fresh easy handle: the CLI
    makes one to three requests a run, so connection reuse buys nothing.
    Every request is bounded: SM_CLI_CONNECT_TIMEOUT_MS to connect,
    SM_CLI_REQUEST_TIMEOUT_MS in all, SM_CLI_RESPONSE_BYTES_MAX of answer
    (the transfer is cut as soon as the body would pass it).  A download
    (an export, sm__http_download) writes its body to a file as it arrives,
    so it has no size or total time limit, but is cut when nothing arrives
    for SM_CLI_DOWNLOAD_STALL_S.  Only http and
    https are spoken, redirects are not followed (a node never sends one)
    and proxies from the environment are ignored: the node is on this
    machine or this network, and its bearer token must not travel to a
    proxy.                                                                    */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "stallmesh/error.h"
#include "stallmesh/limits.h"

/* What the write callback collects. */
typedef struct {
    char *buf;
    size_t len;
    size_t cap;
    bool too_big;              /* the answer passed SM_CLI_RESPONSE_BYTES_MAX */
    bool no_memory;
} s_sink;

/*  CURLOPT_WRITEFUNCTION: append to the sink, keeping it NUL-terminated.
    Returns n to go on, 0 (fewer than n) to make libcurl stop the transfer.   */
static size_t
s_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_sink *sink = arg;
    size_t n = size * nmemb;   /* size is always 1 */
    if (n > SM_CLI_RESPONSE_BYTES_MAX - sink->len) {
        sink->too_big = true;
        return 0;
    }
    if (sink->len + n + 1 > sink->cap) {
        size_t cap = sink->cap == 0 ? 4096 : sink->cap;
        while (cap < sink->len + n + 1)
            cap *= 2;
        char *grown = realloc(sink->buf, cap);
        if (grown == NULL) {
            sink->no_memory = true;
            return 0;
        }
        sink->buf = grown;
        sink->cap = cap;
    }
    memcpy(sink->buf + sink->len, ptr, n);
    sink->len += n;
    sink->buf[sink->len] = '\0';
    return n;
}

/*  Initialise libcurl once for the process (the CLI is single-threaded). */
static bool
s_global_init(void)
{
    static bool done, ok;
    if (!done) {
        ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
        done = true;
    }
    return ok;
}

/*  Fill resp->error with why the request failed, from libcurl's code and
    message; sets resp->unreachable when nothing listens at the address.   */
static void
s_describe(sm__http_resp *resp, CURLcode code, const char *detail)
{
    const char *what;
    switch (code) {
    case CURLE_COULDNT_CONNECT:
        resp->unreachable = true;
        snprintf(resp->error, sizeof resp->error, "connection refused");
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        resp->unreachable = true;
        snprintf(resp->error, sizeof resp->error, "the host name does not resolve");
        return;
    case CURLE_OPERATION_TIMEDOUT:
        what = "no answer in time";
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
        what = "only http:// and https:// addresses are supported";
        break;
    case CURLE_URL_MALFORMAT:
        what = "the address is not a valid URL";
        break;
    default:
        what = curl_easy_strerror(code);
        break;
    }
    if (detail != NULL && detail[0] != '\0')
        snprintf(resp->error, sizeof resp->error, "%.100s: %.200s", what, detail);
    else
        snprintf(resp->error, sizeof resp->error, "%.100s", what);
}

/*  The request's headers: the fixed ones given (NULL-ended), then the
    bearer token when there is one (wiped from the stack after the copy).
    0, or SM_ENOMEM with *out holding what was built (the caller frees). */
static int
s_headers(const char *const *fixed, const char *token, struct curl_slist **out)
{
    struct curl_slist *more;
    for (; *fixed != NULL; fixed++) {
        more = curl_slist_append(*out, *fixed);
        if (more == NULL)
            return SM_ENOMEM;
        *out = more;
    }
    if (token == NULL)
        return 0;
    char auth[128];
    int n = snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    assert(n > 0 && (size_t)n < sizeof auth);
    (void)n;
    more = curl_slist_append(*out, auth);
    explicit_bzero(auth, sizeof auth);
    if (more == NULL)
        return SM_ENOMEM;
    *out = more;
    return 0;
}

/*  The options every call of the CLI shares: the address, http(s) only, no
    redirects, no proxy, no signals, the connect timeout, the user agent,
    the headers and the error buffer.                                     */
static bool
s_common_opts(CURL *curl, const char *url, struct curl_slist *headers, char *curl_error)
{
    return curl_easy_setopt(curl, CURLOPT_URL, url) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_PROXY, "") == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                            (long)SM_CLI_CONNECT_TIMEOUT_MS) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_USERAGENT, "stallmesh/" SM__VERSION) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error) == CURLE_OK;
}

/*  A finished call's status and body (the sink's buffer, or "" for an empty
    body) into resp; 0 or SM_ENOMEM.                                        */
static int
s_finish(CURL *curl, s_sink *sink, sm__http_resp *resp)
{
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
    if (sink->buf == NULL) {
        sink->buf = calloc(1, 1);
        if (sink->buf == NULL)
            return SM_ENOMEM;
    }
    resp->body = sink->buf;
    resp->body_len = sink->len;
    sink->buf = NULL;
    return 0;
}

int
sm__http_request(sm__http_method method, const char *url, const char *token,
                 const char *body, sm__http_resp *resp)
{
    assert(url != NULL && resp != NULL);
    assert(method == SM__HTTP_POST || body == NULL);
    char curl_error[CURL_ERROR_SIZE];
    struct curl_slist *headers = NULL;
    s_sink sink = { 0 };
    CURL *curl = NULL;
    int rc = SM_ENOMEM;

    memset(resp, 0, sizeof *resp);
    curl_error[0] = '\0';
    if (!s_global_init()) {
        snprintf(resp->error, sizeof resp->error, "cannot initialise libcurl");
        return SM_ENOMEM;
    }
    curl = curl_easy_init();
    if (curl == NULL)
        goto fail;

    /* "Expect:" turns off 100-continue: bodies are small and the node
       answers a request whole. */
    static const char *const with_body[] = {
        "Accept: application/json", "Content-Type: application/json", "Expect:", NULL,
    };
    static const char *const without_body[] = { "Accept: application/json", "Expect:", NULL };
    if (s_headers(body != NULL ? with_body : without_body, token, &headers) != 0)
        goto fail;

    bool ok = s_common_opts(curl, url, headers, curl_error)
        && curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                            (long)SM_CLI_REQUEST_TIMEOUT_MS) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE,
                            (curl_off_t)SM_CLI_RESPONSE_BYTES_MAX) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_write) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink) == CURLE_OK;
    if (ok && method == SM__HTTP_POST)
        ok = curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                              (curl_off_t)strlen(body)) == CURLE_OK
            && curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body) == CURLE_OK;
    else if (ok && method == SM__HTTP_DELETE)
        ok = curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE") == CURLE_OK;
    if (!ok) {
        snprintf(resp->error, sizeof resp->error,
                 "this libcurl lacks an option stallmesh needs (7.85 or later is)");
        rc = SM_EINVAL;
        goto fail;
    }

    CURLcode code = curl_easy_perform(curl);
    if (sink.no_memory)
        goto fail;
    if (sink.too_big || code == CURLE_FILESIZE_EXCEEDED) {
        snprintf(resp->error, sizeof resp->error,
                 "the answer is larger than %u bytes", SM_CLI_RESPONSE_BYTES_MAX);
        rc = SM_ETOOBIG;
        goto fail;
    }
    if (code != CURLE_OK) {
        s_describe(resp, code, curl_error);
        rc = SM_EIO;
        goto fail;
    }
    if (s_finish(curl, &sink, resp) != 0)
        goto fail;
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return 0;

fail:
    if (rc == SM_ENOMEM && resp->error[0] == '\0')
        snprintf(resp->error, sizeof resp->error, "out of memory");
    free(sink.buf);
    curl_slist_free_all(headers);
    if (curl != NULL)
        curl_easy_cleanup(curl);
    return rc;
}

void
sm__http_resp_clear(sm__http_resp *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}

/* What the download's write callback needs. */
typedef struct {
    CURL *curl;
    FILE *out;
    s_sink error_body;         /* a non-2xx answer's body */
    int status_known;          /* 0: not looked yet; 1: 2xx, streaming; -1: an error */
    uint64_t written;
    int write_errno;           /* a failed fwrite to out */
} s_stream;

/*  CURLOPT_WRITEFUNCTION of a download: the first call looks at the status
    (the headers are in by then); a 2xx body goes to the file, anything
    else to the error sink.                                                 */
static size_t
s_stream_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_stream *st = arg;
    size_t n = size * nmemb;
    if (st->status_known == 0) {
        long code = 0;
        curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &code);
        st->status_known = code >= 200 && code < 300 ? 1 : -1;
    }
    if (st->status_known < 0)
        return s_write(ptr, size, nmemb, &st->error_body);
    if (n > 0 && fwrite(ptr, 1, n, st->out) != n) {
        st->write_errno = errno != 0 ? errno : EIO;
        return 0;
    }
    st->written += n;
    return n;
}

int
sm__http_download(const char *url, const char *token, FILE *out,
                  sm__http_resp *resp, uint64_t *written)
{
    assert(url != NULL && out != NULL && resp != NULL && written != NULL);
    char curl_error[CURL_ERROR_SIZE];
    struct curl_slist *headers = NULL;
    s_stream st = { 0 };
    CURL *curl = NULL;
    int rc = SM_ENOMEM;

    memset(resp, 0, sizeof *resp);
    *written = 0;
    curl_error[0] = '\0';
    if (!s_global_init()) {
        snprintf(resp->error, sizeof resp->error, "cannot initialise libcurl");
        return SM_ENOMEM;
    }
    curl = curl_easy_init();
    if (curl == NULL)
        goto fail;
    st.curl = curl;
    st.out = out;
    static const char *const fixed[] = { "Expect:", NULL };
    if (s_headers(fixed, token, &headers) != 0)
        goto fail;
    /* No total timeout: a long export takes as long as it takes, but one
       that stops sending for SM_CLI_DOWNLOAD_STALL_S is cut. */
    bool ok = s_common_opts(curl, url, headers, curl_error)
        && curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                            (long)SM_CLI_DOWNLOAD_STALL_S) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_stream_write) == CURLE_OK
        && curl_easy_setopt(curl, CURLOPT_WRITEDATA, &st) == CURLE_OK;
    if (!ok) {
        snprintf(resp->error, sizeof resp->error,
                 "this libcurl lacks an option stallmesh needs (7.85 or later is)");
        rc = SM_EINVAL;
        goto fail;
    }

    CURLcode code = curl_easy_perform(curl);
    *written = st.written;
    if (st.error_body.no_memory)
        goto fail;
    if (st.write_errno != 0) {
        snprintf(resp->error, sizeof resp->error, "cannot write the export: %s",
                 strerror(st.write_errno));
        rc = SM_EIO;
        goto fail;
    }
    if (st.error_body.too_big) {
        snprintf(resp->error, sizeof resp->error,
                 "the answer is larger than %u bytes", SM_CLI_RESPONSE_BYTES_MAX);
        rc = SM_ETOOBIG;
        goto fail;
    }
    if (code != CURLE_OK) {
        s_describe(resp, code, curl_error);
        rc = SM_EIO;
        goto fail;
    }
    if (s_finish(curl, &st.error_body, resp) != 0)
        goto fail;
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return 0;

fail:
    if (rc == SM_ENOMEM && resp->error[0] == '\0')
        snprintf(resp->error, sizeof resp->error, "out of memory");
    free(st.error_body.buf);
    curl_slist_free_all(headers);
    if (curl != NULL)
        curl_easy_cleanup(curl);
    return rc;
}
