/*  Looking after the ledger from the command line: `digest`, `verify`,
    `reindex` and `log`.

    digest, verify and log open the store read-only (LMDB lets them run
    beside a node that is writing); reindex opens it for writing.  `log`
    prints one JSON object a line per entry, every header and body field by
    name, ids and hashes as lowercase hex, money as integer minor units:

        {"origin": ID, "seq": N, "hlc": N, "version": 1, "market": ID,
         "kind": "stock.add", "prev": HASH, "sig": SIG, "body": {...}}

    Body field names are those of sm_body (include/stallmesh/entry.h), with
    enums by name ("source": "in_person", "role": "stall").                 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "store.h"
#include "integrity.h"
#include "stallmesh/error.h"

static const char s_digest_usage[] = "digest [--json]";
static const char s_verify_usage[] = "verify [--json]";
static const char s_reindex_usage[] = "reindex [--json]";
static const char s_repair_usage[] = "repair [--json]";
static const char s_log_usage[] = "log [--origin NODE_ID]";

#define SM__LOG_BATCH_ENTRIES 256u

/*  Parse a command that takes only --json; returns true to carry on.       */
static bool
s_parse_plain(int argc, char **argv, const char *usage, bool *json, int *status)
{
    int first = 0;
    if (!sm__cli_parse(argc, argv, usage, NULL, "", NULL, NULL, json, &first, status))
        return false;
    if (first < argc) {
        *status = sm__cli_usage_error(usage, "unexpected argument '%s'", argv[first]);
        return false;
    }
    return true;
}

/*  Print a digest as hex or {"digest": HEX}.  Returns SM__EXIT_*.            */
static int
s_print_digest(const sm_hash *digest, bool json)
{
    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_hex(out, "digest", digest->b, sizeof digest->b);
        return sm__json_print(&out) == 0 ? SM__EXIT_OK : SM__EXIT_FAIL;
    }
    char hex[2 * SM_HASH_BYTES + 1];
    sm_hex_encode(digest->b, sizeof digest->b, hex);
    printf("%s\n", hex);
    return SM__EXIT_OK;
}

int
sm__cmd_digest(sm__cli *cli, int argc, char **argv)
{
    bool json = false;
    int status = SM__EXIT_FAIL;
    sm_ledger *ledger = NULL;
    sm_hash digest;

    if (!s_parse_plain(argc, argv, s_digest_usage, &json, &status))
        return status;
    status = sm__cli_open_ledger(cli, NULL, true, &ledger);
    if (status != SM__EXIT_OK)
        return status;
    int rc = sm_ledger_digest(ledger, &digest);
    if (rc != 0) {
        sm__cli_error("cannot compute the digest: %s", sm_strerror(rc));
        status = SM__EXIT_FAIL;
    } else {
        status = s_print_digest(&digest, json);
    }
    sm_ledger_destroy(&ledger);
    return status;
}

int
sm__cmd_verify(sm__cli *cli, int argc, char **argv)
{
    bool json = false;
    int status = SM__EXIT_FAIL;
    char path[PATH_MAX], data[PATH_MAX + 16], hex[SM_ID_HEX_BYTES + 1];
    struct stat st;

    if (!s_parse_plain(argc, argv, s_verify_usage, &json, &status))
        return status;
    if (!sm__cli_path(cli, SM__STORE_DIR, path))
        return SM__EXIT_FAIL;
    snprintf(data, sizeof data, "%s/data.mdb", path);
    if (stat(data, &st) != 0) {
        sm__cli_error("no store in %s: run 'stallmesh init' first, or use --dir or "
                      "STALLMESH_DIR to pick another data directory", path);
        return SM__EXIT_FAIL;
    }
    /* Beside a running node: pages and chains (read-only).  Otherwise the
       state as well, recomputed in a transaction that is abandoned. */
    pid_t node = sm_dirlock_holder(cli->dir);
    unsigned flags = SM_CHECK_PAGES | SM_CHECK_EVERY_SIG;
    if (node == 0 && sm__cli_lock_dir(cli) == SM__EXIT_OK)
        flags |= SM_CHECK_STATE;
    sm_check_report r;
    int rc = sm_integrity_check(path, flags, (flags & SM_CHECK_STATE) != 0, &r);
    sm_id_format(&r.origin, hex);

    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_bool(out, "ok", rc == 0);
        sm__json_set_int(out, "checked", (int64_t)r.checked);
        sm__json_set_bool(out, "state_checked", r.state_checked);
        if (rc != 0) {
            if (r.seq > 0) {
                sm__json_set_str(out, "origin", hex);
                sm__json_set_int(out, "seq", (int64_t)r.seq);
            }
            sm__json_set_str(out, "error", sm_errname(rc));
            sm__json_set_str(out, "message", sm_strerror(rc));
            sm__json_set_str(out, "detail", r.what);
        }
        if (sm__json_print(&out) != 0)
            return SM__EXIT_FAIL;
    } else if (rc == 0) {
        printf("ok: %llu entries checked\n", (unsigned long long)r.checked);
        if (r.state_checked)
            printf("state: matches the log\n");
        else if (node != 0)
            printf("state: not checked (a node, pid %ld, is running on this store; it "
                   "checked the state when it started)\n", (long) node);
        else if (flags & SM_CHECK_STATE)
            printf("state: not checked (no room in the map or on the disk to recompute "
                   "it beside the stored one)\n");
    } else if (r.seq > 0) {
        printf("bad entry: origin %s seq %llu: %s\n", hex,
               (unsigned long long)r.seq, r.what);
    } else {
        printf("damaged: %s\n", r.what);
    }
    uint32_t format = 0;
    if (rc == SM_ESTORENEWER && sm_store_format_of(path, &format) == 0) {
        sm__cli_newer_store(path, format);
        return SM__EXIT_FAIL;
    }
    if (rc != 0) {
        if (rc == SM_ESTATEDIFF)
            sm__cli_error("the store failed verification: its log verifies but the state "
                          "does not match it: stop the node and run 'stallmesh reindex'");
        else
            sm__cli_error("the store failed verification: stop the node and run "
                          "'stallmesh repair' (see README, Damaged stores), or restore %s "
                          "from a backup", cli->dir);
        return SM__EXIT_FAIL;
    }
    return SM__EXIT_OK;
}

int
sm__cmd_reindex(sm__cli *cli, int argc, char **argv)
{
    bool json = false;
    int status = SM__EXIT_FAIL;
    sm_ledger *ledger = NULL;
    sm_hash digest;

    if (!s_parse_plain(argc, argv, s_reindex_usage, &json, &status))
        return status;
    sm_check_report r;
    if (sm__cli_lock_dir(cli) != SM__EXIT_OK
        || sm__cli_check_store(cli, SM_CHECK_PAGES | SM_CHECK_EVERY_SIG, true, &r)
           != SM__EXIT_OK)
        return SM__EXIT_FAIL;
    status = sm__cli_open_ledger(cli, NULL, false, &ledger);
    if (status != SM__EXIT_OK)
        return status;
    status = SM__EXIT_FAIL;
    int rc = sm_ledger_reindex(ledger);
    if (rc != 0) {
        sm__cli_error("cannot rebuild the state: %s", sm_strerror(rc));
        goto fail;
    }
    rc = sm_ledger_digest(ledger, &digest);
    if (rc != 0) {
        sm__cli_error("rebuilt the state but cannot compute its digest: %s",
                      sm_strerror(rc));
        goto fail;
    }
    status = s_print_digest(&digest, json);

fail:
    sm_ledger_destroy(&ledger);
    return status;
}

/* ---- repair --------------------------------------------------------- */

int
sm__cmd_repair(sm__cli *cli, int argc, char **argv)
{
    bool json = false;
    int status = SM__EXIT_FAIL;
    char path[PATH_MAX], aside[PATH_MAX], data[PATH_MAX + 16];
    sm_identity id;
    struct stat st;

    if (!s_parse_plain(argc, argv, s_repair_usage, &json, &status))
        return status;
    if (!sm__cli_path(cli, SM__STORE_DIR, path))
        return SM__EXIT_FAIL;
    snprintf(data, sizeof data, "%s/data.mdb", path);
    if (stat(data, &st) != 0) {
        sm__cli_error("no store in %s to repair: a node whose store was lost rejoins "
                      "with 'stallmesh join TOKEN' (a new token from the organiser)", path);
        return SM__EXIT_FAIL;
    }
    if (sm__cli_load_identity(cli, &id) != SM__EXIT_OK || sm__cli_lock_dir(cli) != SM__EXIT_OK)
        return SM__EXIT_FAIL;
    sm_check_report check;
    int rc = sm_integrity_check(path, SM_CHECK_PAGES | SM_CHECK_EVERY_SIG | SM_CHECK_STATE,
                                true, &check);
    char found[sizeof check.what + SM_ID_HEX_BYTES + 48];
    if (check.seq > 0) {
        char hex[SM_ID_HEX_BYTES + 1];
        sm_id_format(&check.origin, hex);
        snprintf(found, sizeof found, "origin %s seq %llu: %s", hex,
                 (unsigned long long) check.seq, check.what);
    } else {
        snprintf(found, sizeof found, "%s", check.what);
    }
    if (rc == 0) {
        sm_identity_wipe(&id);
        if (json) {
            sm__json *out = sm__json_object();
            sm__json_set_bool(out, "repaired", false);
            sm__json_set_str(out, "detail", "the store verifies, state included");
            return sm__json_print(&out) == 0 ? SM__EXIT_OK : SM__EXIT_FAIL;
        }
        printf("nothing to repair: the store verifies, state included\n");
        return SM__EXIT_OK;
    }
    /* Keep the damaged copy aside: evidence, and a second chance. */
    uint64_t now_ms = sm__cli_now_ms();
    int n = snprintf(aside, sizeof aside, "%s.damaged-%llu", path,
                     (unsigned long long) (now_ms / 1000u));
    if (n < 0 || (size_t) n >= sizeof aside || rename(path, aside) != 0) {
        sm__cli_error("cannot move the damaged store %s aside: %s", path, strerror(errno));
        sm_identity_wipe(&id);
        return SM__EXIT_FAIL;
    }
    sm_salvage_report r;
    rc = sm_integrity_salvage(aside, path, &id.pub, now_ms, &r);
    sm_identity_wipe(&id);
    if (json) {
        sm__json *out = sm__json_object();
        sm__json_set_bool(out, "repaired", r.has_market);
        sm__json_set_str(out, "found", found);
        sm__json_set_int(out, "kept", (int64_t) r.kept);
        sm__json_set_int(out, "dropped", (int64_t) r.dropped);
        sm__json_set_int(out, "origins", r.origins);
        sm__json_set_int(out, "damaged_origins", r.damaged_origins);
        sm__json_set_bool(out, "own_complete", r.own_complete);
        sm__json_set_str(out, "damaged_copy", aside);
        if (r.what[0])
            sm__json_set_str(out, "detail", r.what);
        if (sm__json_print(&out) != 0)
            return SM__EXIT_FAIL;
    } else {
        printf("found: %s\n", found);
        printf("kept %llu entries of %u origins; %llu entries past the damage in %u "
               "origins dropped%s%s\n", (unsigned long long) r.kept, r.origins,
               (unsigned long long) r.dropped, r.damaged_origins, r.what[0] ? ": " : "",
               r.what);
        printf("the damaged store is kept in %s (remove it once the node has caught up)\n",
               aside);
    }
    if (!r.has_market) {
        sm__cli_error("the market membership could not be read from the damaged store "
                      "(%s): a stall rejoins with 'stallmesh join TOKEN' (a new token from "
                      "the organiser); an organiser restores %s from a backup", r.what,
                      cli->dir);
        return SM__EXIT_FAIL;
    }
    if (!json)
        printf("now start the node ('stallmesh run'): it fetches what was dropped from its "
               "peers%s\n", r.own_confirmed ? "" : ", its own entries first (it appends "
               "only once a peer has shown it holds its whole own log)");
    return SM__EXIT_OK;
}

/* ---- log ------------------------------------------------------------ */

/*  A sale's or return's lines as a JSON array; prices only for sales.       */
static sm__json *
s_lines_json(const sm_line *lines, uint32_t n, bool prices)
{
    sm__json *arr = sm__json_array();
    for (uint32_t i = 0; i < n; i++) {
        sm__json *line = sm__json_object();
        sm__json_set_str(line, "sku", lines[i].sku);
        sm__json_set_int(line, "qty", lines[i].qty);
        if (prices)
            sm__json_set_int(line, "price", lines[i].price);
        sm__json_append(arr, line);
    }
    return arr;
}

/*  Set obj[key] to an enum's name, or its number if the name is unknown.   */
static void
s_set_enum(sm__json *obj, const char *key, const char *name, int value)
{
    if (name != NULL)
        sm__json_set_str(obj, key, name);
    else
        sm__json_set_int(obj, key, value);
}

/*  The body of `e` as a JSON object, every field by name.                   */
static sm__json *
s_body_json(const sm_body *b)
{
    sm__json *o = sm__json_object();
    switch (b->kind) {
    case SM_KIND_ITEM:
        sm__json_set_str(o, "sku", b->u.item.sku);
        sm__json_set_str(o, "name", b->u.item.name);
        sm__json_set_int(o, "price", b->u.item.price);
        sm__json_set_str(o, "currency", b->u.item.currency);
        break;
    case SM_KIND_STOCK_ADD:
        sm__json_set_str(o, "sku", b->u.stock_add.sku);
        sm__json_set_int(o, "qty", b->u.stock_add.qty);
        break;
    case SM_KIND_STOCK_MOVE:
        sm__json_set_str(o, "sku", b->u.stock_move.sku);
        sm__json_set_int(o, "qty", b->u.stock_move.qty);
        sm__json_set_hex(o, "to", b->u.stock_move.to.b, SM_KEY_BYTES);
        break;
    case SM_KIND_SALE:
        sm__json_set(o, "lines", s_lines_json(b->u.sale.lines, b->u.sale.line_count, true));
        sm__json_set_str(o, "currency", b->u.sale.currency);
        s_set_enum(o, "source", sm_source_name(b->u.sale.source), b->u.sale.source);
        s_set_enum(o, "payment", sm_payment_name(b->u.sale.payment), b->u.sale.payment);
        sm__json_set_str(o, "external_id", b->u.sale.external_id);
        sm__json_set_int(o, "hold_seq", (int64_t)b->u.sale.hold_seq);
        break;
    case SM_KIND_RETURN:
        sm__json_set_int(o, "sale_seq", (int64_t)b->u.ret.sale_seq);
        sm__json_set(o, "lines", s_lines_json(b->u.ret.lines, b->u.ret.line_count, false));
        sm__json_set_str(o, "reason", b->u.ret.reason);
        break;
    case SM_KIND_HOLD:
        sm__json_set_str(o, "sku", b->u.hold.sku);
        sm__json_set_int(o, "qty", b->u.hold.qty);
        sm__json_set_int(o, "expires_ms", (int64_t)b->u.hold.expires_ms);
        break;
    case SM_KIND_RELEASE:
        sm__json_set_int(o, "hold_seq", (int64_t)b->u.release.hold_seq);
        break;
    case SM_KIND_ADJUST:
        sm__json_set_str(o, "sku", b->u.adjust.sku);
        sm__json_set_int(o, "delta", b->u.adjust.delta);
        sm__json_set_str(o, "reason", b->u.adjust.reason);
        break;
    case SM_KIND_DROP:
        sm__json_set_str(o, "sku", b->u.drop.sku);
        sm__json_set_int(o, "qty", b->u.drop.qty);
        sm__json_set_int(o, "starts_ms", (int64_t)b->u.drop.starts_ms);
        if (!b->u.drop.mode)
            break;
        s_set_enum(o, "mode", b->u.drop.mode == SM_DROP_RAFFLE ? "raffle" : "first_come",
                   b->u.drop.mode);
        sm__json_set_int(o, "per_shopper", b->u.drop.per_shopper);
        sm__json_set_int(o, "closes_ms", (int64_t)b->u.drop.closes_ms);
        sm__json_set_int(o, "pickup_minutes", b->u.drop.pickup_minutes);
        if (b->u.drop.has_commitment)
            sm__json_set_hex(o, "commitment", b->u.drop.commitment.b, SM_HASH_BYTES);
        break;
    case SM_KIND_RAFFLE_ENTRY:
        sm__json_set_hex(o, "drop_origin", b->u.raffle_entry.drop_origin.b, SM_KEY_BYTES);
        sm__json_set_int(o, "drop_seq", (int64_t)b->u.raffle_entry.drop_seq);
        sm__json_set_hex(o, "device", b->u.raffle_entry.device, SM_HOLD_TAG_BYTES);
        if (b->u.raffle_entry.has_client)
            sm__json_set_hex(o, "client", b->u.raffle_entry.client, SM_HOLD_TAG_BYTES);
        break;
    case SM_KIND_RAFFLE_DRAW: {
        sm__json_set_int(o, "drop_seq", (int64_t)b->u.raffle_draw.drop_seq);
        sm__json_set_hex(o, "secret", b->u.raffle_draw.secret.b, SM_HASH_BYTES);
        sm__json *heads = sm__json_array();
        for (uint32_t i = 0; i < b->u.raffle_draw.head_count; i++) {
            sm__json *h = sm__json_object();
            sm__json_set_hex(h, "origin", b->u.raffle_draw.heads[i].origin.b, SM_KEY_BYTES);
            sm__json_set_int(h, "seq", (int64_t)b->u.raffle_draw.heads[i].seq);
            sm__json_append(heads, h);
        }
        sm__json_set(o, "heads", heads);
        sm__json_set_int(o, "winners", b->u.raffle_draw.winners);
        break;
    }
    case SM_KIND_ROSTER_ADMIT:
        sm__json_set_hex(o, "node", b->u.admit.node.b, SM_KEY_BYTES);
        sm__json_set_str(o, "name", b->u.admit.name);
        s_set_enum(o, "role", sm_role_name(b->u.admit.role), b->u.admit.role);
        break;
    case SM_KIND_ROSTER_REVOKE:
        sm__json_set_hex(o, "node", b->u.revoke.node.b, SM_KEY_BYTES);
        sm__json_set_int(o, "upto_seq", (int64_t)b->u.revoke.upto_seq);
        break;
    }
    return o;
}

typedef struct {
    const sm_id *origin;
    uint64_t next;             /* the seq expected next */
    bool undecodable;          /* an entry could not be decoded (skipped) */
    bool stop;                 /* output failed: give up */
    sm_entry entry;            /* decoded here: too big for the callback's stack */
} s_log_ctx;

/*  sm_ledger_read callback: print one entry as a JSON line.                 */
static int
s_log_entry(const sm_signed *s, uint64_t seq, void *arg)
{
    s_log_ctx *ctx = arg;
    char hex[SM_ID_HEX_BYTES + 1];
    ctx->next = seq + 1;
    int rc = sm_entry_decode(s->bytes, s->len, &ctx->entry);
    if (rc != 0) {
        sm_id_format(ctx->origin, hex);
        sm__cli_error("entry origin %s seq %llu does not decode: %s; run 'stallmesh "
                      "verify'", hex, (unsigned long long)seq, sm_strerror(rc));
        ctx->undecodable = true;
        return 0;
    }
    const sm_entry *e = &ctx->entry;
    sm__json *o = sm__json_object();
    sm__json_set_hex(o, "origin", e->origin.b, SM_KEY_BYTES);
    sm__json_set_int(o, "seq", (int64_t)e->seq);
    sm__json_set_int(o, "hlc", (int64_t)e->hlc);
    sm__json_set_int(o, "version", e->version);
    sm__json_set_hex(o, "market", e->market.b, SM_KEY_BYTES);
    s_set_enum(o, "kind", sm_kind_name(e->body.kind), (int)e->body.kind);
    sm__json_set_hex(o, "prev", e->prev.b, SM_HASH_BYTES);
    sm__json_set_hex(o, "sig", s->sig, SM_SIG_BYTES);
    sm__json_set(o, "body", s_body_json(&e->body));
    if (sm__json_print(&o) != 0) {
        ctx->stop = true;
        return 1;
    }
    return 0;
}

/*  Print origin's entries 1..head_seq.  Returns SM__EXIT_FAIL if the log
    cannot be read or printed; entries that do not decode are reported and
    skipped (ctx->undecodable).                                               */
static int
s_log_origin(sm_ledger *ledger, const sm_id *origin, uint64_t head_seq, s_log_ctx *ctx)
{
    ctx->origin = origin;
    ctx->next = 1;
    while (ctx->next <= head_seq && !ctx->stop) {
        uint64_t from = ctx->next;
        int rc = sm_ledger_read(ledger, origin, from, SM__LOG_BATCH_ENTRIES,
                                s_log_entry, ctx);
        if (rc != 0 || ctx->next == from) {
            char hex[SM_ID_HEX_BYTES + 1];
            sm_id_format(origin, hex);
            sm__cli_error("cannot read the log of %s from seq %llu: %s; run "
                          "'stallmesh verify'", hex, (unsigned long long)from,
                          sm_strerror(rc != 0 ? rc : SM_ENOTFOUND));
            return SM__EXIT_FAIL;
        }
    }
    return ctx->stop ? SM__EXIT_FAIL : SM__EXIT_OK;
}

typedef struct {
    sm_head *heads;
    size_t count, cap;
    int err;
} s_heads;

/*  sm_ledger_heads callback: collect heads so the logs are read afterwards,
    one read transaction at a time.                                          */
static int
s_collect_head(const sm_head *head, void *arg)
{
    s_heads *h = arg;
    if (h->count == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 16;
        sm_head *grown = realloc(h->heads, cap * sizeof *grown);
        if (grown == NULL) {
            h->err = SM_ENOMEM;
            return 1;
        }
        h->heads = grown;
        h->cap = cap;
    }
    h->heads[h->count++] = *head;
    return 0;
}

typedef struct {
    const char *origin;
} s_log_args;

/*  log's option handler: --origin (parsed after all options are read).    */
static int
s_log_opt(int opt, const char *arg, void *ctx)
{
    s_log_args *a = ctx;
    if (opt == 'o')
        a->origin = arg;
    return 0;
}

int
sm__cmd_log(sm__cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "origin", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 },
    };
    s_log_args a = { NULL };
    bool json = false;         /* accepted; the log is always JSON lines */
    int first = 0, status = SM__EXIT_FAIL;
    sm_ledger *ledger = NULL;
    s_heads heads = { NULL, 0, 0, 0 };
    s_log_ctx *ctx = NULL;
    sm_id origin;

    if (!sm__cli_parse(argc, argv, s_log_usage, opts, "o:", s_log_opt, &a, &json,
                       &first, &status))
        return status;
    if (first < argc)
        return sm__cli_usage_error(s_log_usage, "unexpected argument '%s'", argv[first]);
    if (a.origin != NULL && sm_id_parse(a.origin, &origin) != 0)
        return sm__cli_usage_error(s_log_usage, "--origin '%s' is not a node id: give "
                                   "its 64 hex digits", a.origin);

    status = sm__cli_open_ledger(cli, NULL, true, &ledger);
    if (status != SM__EXIT_OK)
        return status;
    status = SM__EXIT_FAIL;
    ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        sm__cli_error("out of memory");
        goto fail;
    }

    int rc;
    if (a.origin != NULL) {
        sm_head head;
        rc = sm_ledger_head(ledger, &origin, &head);
        head.origin = origin;
        if (rc == 0)
            rc = s_collect_head(&head, &heads) != 0 ? heads.err : 0;
    } else {
        rc = sm_ledger_heads(ledger, s_collect_head, &heads);
        if (rc == 0)
            rc = heads.err;
    }
    if (rc != 0) {
        sm__cli_error("cannot list the logs: %s", sm_strerror(rc));
        goto fail;
    }
    status = SM__EXIT_OK;
    for (size_t i = 0; i < heads.count && status == SM__EXIT_OK; i++)
        status = s_log_origin(ledger, &heads.heads[i].origin, heads.heads[i].seq, ctx);
    if (ctx->undecodable)
        status = SM__EXIT_FAIL;

fail:
    free(ctx);
    free(heads.heads);
    sm_ledger_destroy(&ledger);
    return status;
}
