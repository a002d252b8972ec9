/*  The organiser's commands: `report` (the sales report as tables) and
    `export` (a CSV export, streamed to a file or stdout), both through the
    running node's JSON API (GET /api/report, GET /api/export/KIND.csv;
    proto/api.md), as the till and the /market page use it.

    They find the node and its token as the other API commands do
    (cli_api.c lends sm__node_*).  Every option is checked here, so a bad
    one is a usage error (exit 2) before anything is sent; what only the
    node can judge (a date's form, a zone's name, a range) comes back as its
    400 with the parameter named, printed as the node said it.

    `report` prints the totals, then one table a dimension of --by, in the
    order given, rows as the node ordered them; money in major units with
    the currency.  Figures the report left out (voided by a revocation, of a
    quarantined stall) and stalls whose log this node may not hold in full
    yet (stalls_behind) follow, so a reader knows a figure can still grow.

    `export -o FILE` writes to a temporary file beside FILE and renames it
    over FILE only once the whole export has come and is on disk: an
    interrupted export never leaves a half file under the name asked for.   */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "stallmesh/limits.h"

#define S_ARG_BYTES_MAX   64u      /* --from, --to, --tz */
#define S_QUERY_BYTES_MAX 1024u
#define S_COLS_MAX        8u
#define S_CELL_BYTES      160u
#define S_ROWS_MAX        100000u  /* rows a table prints; the node's answer is bounded too */

static const char s_report_usage[] =
    "report [--from DATE|TIME] [--to DATE|TIME] [--by LIST] [--tz ZONE]\n"
    "       [--stall NODE_ID] [--json]";
static const char s_export_usage[] =
    "export sales|returns|items|inventory [--from DATE|TIME] [--to DATE|TIME]\n"
    "       [--wide] [-o FILE]";

/* The dimensions of GET /api/report's `by`, with their tables' key columns. */
static const struct {
    const char *name;
    const char *heading;       /* the key column's heading */
} s_dims[] = {
    { "stall", "STALL" }, { "item", "ITEM" }, { "hour", "HOUR" },
    { "day", "DAY" }, { "source", "SOURCE" }, { "payment", "PAYMENT" },
};
#define S_DIMS (sizeof s_dims / sizeof s_dims[0])

static const char *const s_kinds[] = { "sales", "returns", "items", "inventory" };

enum { OPT_NODE = 0x300, OPT_FROM, OPT_TO, OPT_BY, OPT_TZ, OPT_STALL, OPT_WIDE };

typedef struct {
    const char *usage;
    const char *node;
    const char *from;
    const char *to;
    const char *tz;
    const char *stall;
    const char *output;        /* -o */
    bool wide;
    char by[S_QUERY_BYTES_MAX]; /* "stall,item": checked, in the order given */
    size_t dims[S_DIMS];       /* indexes into s_dims, in --by's order */
    size_t ndims;
} s_opts;

/* ---- options ------------------------------------------------------------ */

/*  --by: a comma-separated list of known dimensions, each at most once.  */
static int
s_parse_by(s_opts *o, const char *arg)
{
    char buf[S_QUERY_BYTES_MAX];
    if (strlen(arg) >= sizeof buf)
        return sm__cli_usage_error(o->usage, "--by is too long");
    memcpy(buf, arg, strlen(arg) + 1);
    o->ndims = 0;
    o->by[0] = '\0';
    char *save = NULL;
    for (char *word = strtok_r(buf, ",", &save); word != NULL;
         word = strtok_r(NULL, ",", &save)) {
        size_t d = 0;
        while (d < S_DIMS && strcmp(word, s_dims[d].name) != 0)
            d++;
        if (d == S_DIMS)
            return sm__cli_usage_error(o->usage, "invalid --by '%s': give a comma-"
                                       "separated list of stall, item, hour, day, "
                                       "source and payment", word);
        for (size_t i = 0; i < o->ndims; i++)
            if (o->dims[i] == d)
                return sm__cli_usage_error(o->usage, "--by names '%s' twice", word);
        o->dims[o->ndims++] = d;
        if (o->by[0] != '\0')
            strcat(o->by, ",");
        strcat(o->by, s_dims[d].name);
    }
    if (o->ndims == 0)
        return sm__cli_usage_error(o->usage, "--by is empty: give stall, item, hour, "
                                   "day, source or payment");
    return 0;
}

static int
s_opt(int opt, const char *arg, void *ctx)
{
    s_opts *o = ctx;
    switch (opt) {
    case OPT_NODE:
        o->node = arg;
        return 0;
    case OPT_FROM:
    case OPT_TO:
    case OPT_TZ:
        /* The node judges the form; here only what could not be one. */
        if (!sm__cli_text_ok(arg, S_ARG_BYTES_MAX) || strchr(arg, ' ') != NULL)
            return sm__cli_usage_error(o->usage, "invalid --%s '%.80s': give %s",
                                       opt == OPT_FROM ? "from" : opt == OPT_TO ? "to" : "tz",
                                       arg, opt == OPT_TZ
                                       ? "an IANA zone such as Europe/London"
                                       : "a day YYYY-MM-DD or an RFC 3339 time");
        if (opt == OPT_FROM)
            o->from = arg;
        else if (opt == OPT_TO)
            o->to = arg;
        else
            o->tz = arg;
        return 0;
    case OPT_BY:
        return s_parse_by(o, arg);
    case OPT_STALL: {
        sm_id id;
        if (strlen(arg) != SM_ID_HEX_BYTES || sm_id_parse(arg, &id) != 0)
            return sm__cli_usage_error(o->usage, "invalid --stall '%.80s': give the "
                                       "stall's node id, 64 hex digits ('stallmesh "
                                       "peers --json' shows them)", arg);
        o->stall = arg;
        return 0;
    }
    case OPT_WIDE:
        o->wide = true;
        return 0;
    case 'o':
        if (arg[0] == '\0')
            return sm__cli_usage_error(o->usage, "-o needs a file name");
        o->output = arg;
        return 0;
    default:
        assert(!"an option in a table has no case here");
        return SM__EXIT_USAGE;
    }
}

/*  Append "&key=value" (value escaped; no '&' first) to q.  False if full. */
static bool
s_query_add(char *q, size_t cap, const char *key, const char *value)
{
    if (value == NULL)
        return true;
    size_t len = strlen(q);
    int n = snprintf(q + len, cap - len, "%s%s=", q[len - 1] == '?' ? "" : "&", key);
    if (n < 0 || (size_t)n >= cap - len)
        return false;
    return sm__cli_escape(value, q, cap);
}

/* ---- tables ------------------------------------------------------------- */

/* A table of text cells, printed with its columns aligned. */
typedef struct {
    size_t ncols;
    bool right[S_COLS_MAX];    /* right-aligned (numbers, money) */
    size_t width[S_COLS_MAX];
    char (*cells)[S_COLS_MAX][S_CELL_BYTES];
    size_t nrows, cap;
} s_table;

/*  Add a row (ncols cells).  False when out of memory or past S_ROWS_MAX.  */
static bool
s_table_row(s_table *t, const char *const *cells)
{
    if (t->nrows == S_ROWS_MAX)
        return false;
    if (t->nrows == t->cap) {
        size_t cap = t->cap == 0 ? 16 : t->cap * 2;
        void *grown = realloc(t->cells, cap * sizeof *t->cells);
        if (grown == NULL)
            return false;
        t->cells = grown;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        snprintf(t->cells[t->nrows][i], S_CELL_BYTES, "%s", cells[i] ? cells[i] : "-");
        size_t w = sm__cli_width(t->cells[t->nrows][i]);
        if (w > t->width[i])
            t->width[i] = w;
    }
    t->nrows++;
    return true;
}

static void
s_table_print(const s_table *t)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r][i];
            size_t pad = t->width[i] - sm__cli_width(s);
            bool last = i + 1 == t->ncols;
            if (t->right[i])
                for (size_t k = 0; k < pad; k++)
                    fputc(' ', stdout);
            sm__cli_put_text(stdout, s);
            if (!last && !t->right[i])
                for (size_t k = 0; k < pad; k++)
                    fputc(' ', stdout);
            if (!last)
                fputs("  ", stdout);
        }
        fputc('\n', stdout);
    }
}

static void
s_table_free(s_table *t)
{
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

/* ---- report --------------------------------------------------------------- */

/*  obj[key] as money text, "-" if it is not an integer.                  */
static void
s_money_of(const sm__json *obj, const char *key, const char *currency, char *out,
           size_t cap)
{
    int64_t v;
    if (sm__json_get_int(obj, key, &v))
        sm__cli_money(v, currency, out, cap);
    else
        snprintf(out, cap, "-");
}

/*  obj[key] as a whole number, "-" if it is not one.                     */
static void
s_int_of(const sm__json *obj, const char *key, char *out, size_t cap)
{
    int64_t v;
    if (sm__json_get_int(obj, key, &v))
        snprintf(out, cap, "%" PRId64, v);
    else
        snprintf(out, cap, "-");
}

/*  The table of one dimension: key column(s), SALES, UNITS, RETURNED,
    GROSS, RETURNS, NET.  False when out of memory.                          */
static bool
s_print_dim(const sm__json *rows, size_t dim, const char *currency)
{
    const char *name = s_dims[dim].name;
    bool item = strcmp(name, "item") == 0;
    s_table t = { .ncols = item ? 8 : 7 };
    const char *head[S_COLS_MAX];
    size_t k = 0;
    if (item) {
        head[k++] = "SKU";
        head[k++] = "NAME";
    } else {
        head[k++] = s_dims[dim].heading;
    }
    size_t first_num = k;
    head[k++] = "SALES";
    head[k++] = "UNITS";
    head[k++] = "RETURNED";
    head[k++] = "GROSS";
    head[k++] = "RETURNS";
    head[k++] = "NET";
    for (size_t i = first_num; i < k; i++)
        t.right[i] = true;
    if (!s_table_row(&t, head))
        goto fail;
    size_t n = sm__json_size(rows);
    for (size_t r = 0; r < n; r++) {
        const sm__json *row = sm__json_at(rows, r);
        char key[S_CELL_BYTES], key2[S_CELL_BYTES];
        char sales[32], units[32], returned[32], gross[64], returns[64], net[64];
        const char *cells[S_COLS_MAX];
        size_t c = 0;
        if (item) {
            const char *sku = sm__json_get_str(row, "sku");
            const char *iname = sm__json_get_str(row, "name");
            snprintf(key, sizeof key, "%s", sku ? sku : "-");
            snprintf(key2, sizeof key2, "%s", iname && iname[0] ? iname : "-");
            cells[c++] = key;
            cells[c++] = key2;
        } else if (strcmp(name, "stall") == 0) {
            const char *sname = sm__json_get_str(row, "name");
            const char *id = sm__json_get_str(row, "stall");
            if (sname != NULL && sname[0] != '\0')
                snprintf(key, sizeof key, "%s", sname);
            else
                snprintf(key, sizeof key, "%.12s", id ? id : "?");
            cells[c++] = key;
        } else {
            const char *v = sm__json_get_str(row, name);
            snprintf(key, sizeof key, "%s", v ? v : "-");
            cells[c++] = key;
        }
        s_int_of(row, "sales", sales, sizeof sales);
        s_int_of(row, "units", units, sizeof units);
        s_int_of(row, "returned_units", returned, sizeof returned);
        s_money_of(row, "gross", currency, gross, sizeof gross);
        s_money_of(row, "returns", currency, returns, sizeof returns);
        s_money_of(row, "net", currency, net, sizeof net);
        cells[c++] = sales;
        cells[c++] = units;
        cells[c++] = returned;
        cells[c++] = gross;
        cells[c++] = returns;
        cells[c++] = net;
        if (!s_table_row(&t, cells))
            goto fail;
    }
    s_table_print(&t);
    if (n == 0)
        puts("(no sales)");
    s_table_free(&t);
    return true;
fail:
    s_table_free(&t);
    return false;
}

/*  "N sales (M GBP)" of a left-out group, or false if it holds none.     */
static bool
s_left_out(const sm__json *group, const char *currency, char *out, size_t cap)
{
    int64_t sales = 0, net = 0;
    sm__json_get_int(group, "sales", &sales);
    sm__json_get_int(group, "net", &net);
    if (sales == 0 && net == 0)
        return false;
    char money[64];
    sm__cli_money(net, currency, money, sizeof money);
    snprintf(out, cap, "%" PRId64 " sale%s (%s net)", sales, sales == 1 ? "" : "s", money);
    return true;
}

static void
s_print_report(const sm__json *r, const s_opts *o)
{
    const char *currency = sm__json_get_str(r, "currency");
    const sm__json *totals = sm__json_get(r, "totals");
    char a[64], b[64];
    const char *from = sm__json_get_str(r, "from"), *to = sm__json_get_str(r, "to");
    const char *tz = sm__json_get_str(r, "tz"), *as_of = sm__json_get_str(r, "as_of");

    fputs("from     ", stdout);
    sm__cli_put_text(stdout, from ? from : "-");
    fputs("\nto       ", stdout);
    sm__cli_put_text(stdout, to ? to : "-");
    fputs("\nzone     ", stdout);
    sm__cli_put_text(stdout, tz ? tz : "-");
    fputs("\nas of    ", stdout);
    sm__cli_put_text(stdout, as_of ? as_of : "-");
    s_int_of(totals, "sales", a, sizeof a);
    printf("\nsales    %s\n", a);
    s_int_of(totals, "units", a, sizeof a);
    s_int_of(totals, "returned_units", b, sizeof b);
    printf("units    %s sold, %s returned\n", a, b);
    s_money_of(totals, "gross", currency, a, sizeof a);
    printf("gross    %s\n", a);
    s_money_of(totals, "returns", currency, a, sizeof a);
    printf("returns  %s\n", a);
    s_money_of(totals, "net", currency, a, sizeof a);
    printf("net      %s\n", a);
    int64_t sales = 0, net = 0;
    if (sm__json_get_int(totals, "sales", &sales) && sales > 0
        && sm__json_get_int(totals, "net", &net)) {
        /* Rounded half away from zero, in minor units. */
        int64_t avg = (net >= 0 ? net + sales / 2 : net - sales / 2) / sales;
        sm__cli_money(avg, currency, a, sizeof a);
        printf("average  %s a sale\n", a);
    }

    const sm__json *by = sm__json_get(r, "by");
    for (size_t i = 0; i < o->ndims; i++) {
        fputc('\n', stdout);
        if (!s_print_dim(sm__json_get(by, s_dims[o->dims[i]].name), o->dims[i], currency)) {
            sm__cli_error("out of memory printing the report (try --json)");
            return;
        }
    }

    char text[160];
    bool blank = false;
    if (s_left_out(sm__json_get(r, "voided"), currency, text, sizeof text)) {
        printf("%sleft out: %s voided by a revocation\n", blank ? "" : "\n", text);
        blank = true;
    }
    if (s_left_out(sm__json_get(r, "quarantined"), currency, text, sizeof text)) {
        printf("%sleft out: %s of quarantined stalls past their fork\n",
               blank ? "" : "\n", text);
        blank = true;
    }
    const sm__json *behind = sm__json_get(r, "stalls_behind");
    size_t n = sm__json_size(behind);
    for (size_t i = 0; i < n; i++) {
        const sm__json *s = sm__json_at(behind, i);
        const char *name = sm__json_get_str(s, "name");
        const char *id = sm__json_get_str(s, "stall");
        const char *heard = sm__json_get_str(s, "last_heard");
        int64_t entries = -1;
        sm__json_get_int(s, "entries_behind", &entries);
        printf("%smay still grow: ", blank ? "" : "\n");
        blank = true;
        if (name != NULL && name[0] != '\0')
            sm__cli_put_text(stdout, name);
        else
            printf("%.12s", id ? id : "?");
        fputs(" (last heard ", stdout);
        sm__cli_put_text(stdout, heard ? heard : "never");
        if (entries > 0)
            printf(", %" PRId64 " entr%s to come", entries, entries == 1 ? "y" : "ies");
        fputs(")\n", stdout);
    }
}

int
sm__cmd_report(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "node", required_argument, NULL, OPT_NODE },
        { "from", required_argument, NULL, OPT_FROM },
        { "to", required_argument, NULL, OPT_TO },
        { "by", required_argument, NULL, OPT_BY },
        { "tz", required_argument, NULL, OPT_TZ },
        { "stall", required_argument, NULL, OPT_STALL },
        { NULL, 0, NULL, 0 },
    };
    s_opts o = { .usage = s_report_usage };
    bool json = false;
    int first = 0, status = SM__EXIT_FAIL;
    sm__node *node = NULL;
    sm__http_resp resp = { 0 };
    sm__json *answer = NULL;

    if (!sm__cli_parse(argc, argv, s_report_usage, opts, "", s_opt, &o, &json, &first,
                       &status))
        return status;
    if (first < argc)
        return sm__cli_usage_error(s_report_usage, "unexpected argument '%s'", argv[first]);
    if (o.ndims == 0) {
        status = s_parse_by(&o, "stall");
        assert(status == 0);
    }
    char q[S_QUERY_BYTES_MAX] = "/api/report?";
    bool ok = s_query_add(q, sizeof q, "by", o.by) && s_query_add(q, sizeof q, "from", o.from)
        && s_query_add(q, sizeof q, "to", o.to) && s_query_add(q, sizeof q, "tz", o.tz)
        && s_query_add(q, sizeof q, "stall", o.stall);
    assert(ok);                /* every part is bounded above */
    (void)ok;

    status = sm__node_open(cli, o.node, s_report_usage, true, json, &node);
    if (status != SM__EXIT_OK)
        goto done;
    status = sm__node_get(node, q, &resp);
    if (status != SM__EXIT_OK)
        goto done;
    if (json) {
        fwrite(resp.body, 1, resp.body_len, stdout);
        if (resp.body_len == 0 || resp.body[resp.body_len - 1] != '\n')
            fputc('\n', stdout);
        goto done;
    }
    answer = sm__json_parse(resp.body, resp.body_len);
    if (answer == NULL || sm__json_get(answer, "totals") == NULL) {
        sm__cli_error("the node at %s answered the report with something else: is it "
                      "a stallmesh node of this version?", sm__node_base(node));
        status = SM__EXIT_FAIL;
        goto done;
    }
    s_print_report(answer, &o);
done:
    sm__json_destroy(&answer);
    sm__http_resp_clear(&resp);
    sm__node_close(&node);
    return status;
}

/* ---- export --------------------------------------------------------------- */

/*  Open a temporary file beside `path` (same directory, so the rename is
    atomic) with the mode a new file would get.  NULL with errno set.     */
static FILE *
s_open_beside(const char *path, char tmp[PATH_MAX])
{
    int n = snprintf(tmp, PATH_MAX, "%s.XXXXXX", path);
    if (n < 0 || n >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    int fd = mkstemp(tmp);
    if (fd < 0)
        return NULL;
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
    }
    return f;
}

int
sm__cmd_export(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "node", required_argument, NULL, OPT_NODE },
        { "from", required_argument, NULL, OPT_FROM },
        { "to", required_argument, NULL, OPT_TO },
        { "wide", no_argument, NULL, OPT_WIDE },
        { "output", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 },
    };
    s_opts o = { .usage = s_export_usage };
    int first = 0, status = SM__EXIT_FAIL;
    sm__node *node = NULL;
    FILE *out = NULL;
    char tmp[PATH_MAX] = "";
    uint64_t written = 0;

    if (!sm__cli_parse(argc, argv, s_export_usage, opts, "o:", s_opt, &o, NULL, &first,
                       &status))
        return status;
    if (first >= argc)
        return sm__cli_usage_error(s_export_usage, "say what to export: sales, returns, "
                                   "items or inventory");
    if (first + 1 < argc)
        return sm__cli_usage_error(s_export_usage, "unexpected argument '%s'",
                                   argv[first + 1]);
    const char *kind = argv[first];
    size_t k = 0;
    while (k < sizeof s_kinds / sizeof s_kinds[0] && strcmp(kind, s_kinds[k]) != 0)
        k++;
    if (k == sizeof s_kinds / sizeof s_kinds[0])
        return sm__cli_usage_error(s_export_usage, "unknown export '%s': give sales, "
                                   "returns, items or inventory", kind);
    if (o.wide && strcmp(kind, "inventory") != 0)
        return sm__cli_usage_error(s_export_usage, "--wide is for the inventory export "
                                   "only (a column a stall)");

    char q[S_QUERY_BYTES_MAX];
    snprintf(q, sizeof q, "/api/export/%s.csv?", kind);
    bool ok = s_query_add(q, sizeof q, "from", o.from) && s_query_add(q, sizeof q, "to", o.to)
        && s_query_add(q, sizeof q, "wide", o.wide ? "1" : NULL);
    assert(ok);
    (void)ok;
    size_t qlen = strlen(q);
    if (q[qlen - 1] == '?')
        q[qlen - 1] = '\0';

    status = sm__node_open(cli, o.node, s_export_usage, true, false, &node);
    if (status != SM__EXIT_OK)
        goto done;
    if (o.output != NULL) {
        out = s_open_beside(o.output, tmp);
        if (out == NULL) {
            sm__cli_error("cannot create a file beside %s (%s): check the directory "
                          "exists and is writable", o.output, strerror(errno));
            status = SM__EXIT_FAIL;
            goto done;
        }
    }
    status = sm__node_download(node, q, out != NULL ? out : stdout, &written);
    if (status != SM__EXIT_OK)
        goto done;
    if (out != NULL) {
        FILE *f = out;
        out = NULL;
        bool flushed = fflush(f) == 0 && fsync(fileno(f)) == 0;
        int e = errno;
        if (fclose(f) != 0 && flushed) {
            flushed = false;
            e = errno;
        }
        if (!flushed || rename(tmp, o.output) != 0) {
            if (flushed)
                e = errno;
            sm__cli_error("cannot write %s (%s): is the disk full?", o.output, strerror(e));
            status = SM__EXIT_FAIL;
            goto done;
        }
        tmp[0] = '\0';
        fprintf(stderr, "stallmesh: wrote %s (%" PRIu64 " bytes)\n", o.output, written);
    } else if (fflush(stdout) != 0) {
        sm__cli_error("cannot write the export to standard output (closed pipe or full "
                      "disk?)");
        status = SM__EXIT_FAIL;
    }
done:
    if (out != NULL)
        fclose(out);
    if (tmp[0] != '\0')
        unlink(tmp);
    sm__node_close(&node);
    return status;
}
