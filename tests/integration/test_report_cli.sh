#!/bin/sh
# Integration test of `stallmesh report` and `stallmesh export` against a
# real node: an organiser's `stallmesh run` on 127.0.0.1 with a real store,
# a catalog, three sales with every field known and a return, then
#
#   sh tests/integration/test_report_cli.sh build/stallmesh      (from the repo root)
#
# checks the report's figures in its text tables (totals, by stall, item,
# payment and source) and in --json against the sums of the sales made;
# each CSV export parsed with Python's csv module (rows, header, the sales
# export's money summing to the report), -o FILE equal to stdout and the
# byte count it reports; bad input (a date, a zone, a range) exits 1 with
# the node's error naming the parameter and leaves no file behind; a wrong
# token, usage errors (exit 2); and a stall's node (joined, run alone)
# refusing another stall's report (organiser_only).  Each check prints
# "ok - ..." or "not ok - ..."; the last line is "N passed, M failed", and
# the script exits non-zero if M > 0.  Every wait is bounded; only the
# nodes this script started are stopped, by their PIDs.  Needs curl, jq
# and python3.

BIN=${1:-build/stallmesh}
case $BIN in
/*) ;;
*) BIN=$(pwd)/$BIN ;;
esac

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() {
    fail=$((fail + 1)); echo "not ok - $1"
    [ -n "${out:-}${err:-}" ] && printf '#   rc=%s out=%s err=%s\n' "${rc:-}" "$out" "$err" | head -n 40
}
check() {
    if eval "$2"; then ok "$1"; else nok "$1"; fi
}
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

if [ ! -x "$BIN" ]; then
    nok "$BIN is an executable (build it with make)"
    finish
fi
for tool in curl jq python3; do
    command -v $tool >/dev/null 2>&1 || { nok "$tool is installed"; finish; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-report.XXXXXX") || exit 1
PIDS=
cleanup() {
    for p in $PIDS; do
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE
ORG=$TMP/org
STALL=$TMP/stall
WRONG=$TMP/wrong
mkdir -m 700 "$WRONG"
printf '%064d\n' 0 >"$WRONG/api-token"
chmod 600 "$WRONG/api-token"

# run ARGS...: the binary on $ORG; sets $rc, $out and $err.
run() {
    "$BIN" --dir "$ORG" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    rc=$?
    out=$(cat "$TMP/stdout")
    err=$(cat "$TMP/stderr")
}
run_in() {
    d=$1
    shift
    "$BIN" --dir "$d" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    rc=$?
    out=$(cat "$TMP/stdout")
    err=$(cat "$TMP/stderr")
}
has() { printf '%s\n' "$1" | grep -Fq -- "$2"; }
# has_line TEXT ERE: some line of TEXT matches the extended regex ERE whole.
has_line() { printf '%s\n' "$1" | grep -Eqx -- "$2"; }

# A loopback port no socket uses now, below Linux's ephemeral range
# (32768 on), where a client connection could hold it by the time a node
# binds it.
free_port() {
    for _ in $(seq 1 50); do
        p=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 12000))
        [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return 0; }
    done
    return 1
}
# start DIR PORT: run a node alone (no mesh listener), wait (10 s at most)
# for /readyz; its PID goes to $PIDS and $LAST_PID.
start() {
    "$BIN" --dir "$1" run --http "127.0.0.1:$2" --listen none >"$1.out" 2>"$1.err" &
    LAST_PID=$!
    PIDS="$PIDS $LAST_PID"
    for _ in $(seq 1 200); do
        curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$2/readyz" && return 0
        kill -0 "$LAST_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

"$BIN" --dir "$ORG" init --name "Orchard Farm" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$ORG" market create --name "Riverside" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
ORG_ID=$("$BIN" --dir "$ORG" id --json | jq -r .node)
"$BIN" --dir "$STALL" init --name "Corner Bakery" >/dev/null || { nok "init of the stall"; finish; }
STALL_ID=$("$BIN" --dir "$STALL" id --json | jq -r .node)
TOKEN=$("$BIN" --dir "$ORG" admit "$STALL_ID" --name "Corner Bakery") || { nok "admit"; finish; }
"$BIN" --dir "$STALL" join "$TOKEN" >/dev/null || { nok "join"; finish; }

# ---- usage errors: exit 2, nothing sent ------------------------------------
run report --by stall,colour
check "report --by with an unknown dimension: exit 2 naming it" '[ $rc -eq 2 ] && has "$err" "colour"'
run report --by stall,stall
check "report --by naming a dimension twice: exit 2" '[ $rc -eq 2 ]'
run report --stall 12ab
check "report --stall that is not a node id: exit 2" '[ $rc -eq 2 ] && has "$err" "--stall"'
run report today
check "report with an operand: exit 2" '[ $rc -eq 2 ]'
run export
check "export with nothing to export: exit 2" '[ $rc -eq 2 ] && has "$err" "sales, returns, items or inventory"'
run export receipts
check "export of an unknown kind: exit 2" '[ $rc -eq 2 ] && has "$err" "receipts"'
run export sales --wide
check "export sales --wide: exit 2 (--wide is the inventory's)" '[ $rc -eq 2 ] && has "$err" "--wide"'
run report --help
check "report --help prints its usage line, exit 0" '[ $rc -eq 0 ] && has "$out" "usage: stallmesh report"'
run export --help
check "export --help prints its usage line, exit 0" '[ $rc -eq 0 ] && has "$out" "usage: stallmesh export"'

PORT=$(free_port) || { nok "a free loopback port"; finish; }
URL=http://127.0.0.1:$PORT
run report --node "$URL"
check "with no node running, report exits 1 saying it cannot reach it" \
    '[ $rc -eq 1 ] && has "$err" "cannot reach the node at $URL"'
run export sales --node "$URL" -o "$TMP/none.csv"
check "with no node running, export exits 1 and writes no file" \
    '[ $rc -eq 1 ] && has "$err" "cannot reach" && [ ! -e "$TMP/none.csv" ] && [ -z "$(ls "$TMP" | grep none.csv)" ]'

start "$ORG" "$PORT" || { nok "the organiser's node starts"; cat "$ORG.err"; finish; }
ok "the organiser's node starts"

# ---- a day of trading: every figure known ------------------------------------
# jam 4.50, honey 12.50, and an item whose name needs CSV quoting.
DAY1=$(date -u +%F)
run item add jam --name "Damson jam" --price 450 &&
run item add honey --name "Wildflower honey" --price 1250 &&
run item add tin --name 'Tea tin, "Earl Grey"' --price 300 &&
run stock add jam 20 && run stock add honey 10 && run stock add tin 5
check "the catalog and stock are made" '[ $rc -eq 0 ]'
# sale 1: 2 jam, cash, in person           gross  9.00
# sale 2: 1 honey, card, online            gross 12.50
# sale 3: 1 jam at 4.00 + 2 honey, qr, livestream: 4.00 + 25.00 = 29.00
# sale 4: 1 tin, other, preview            gross  3.00
# return: 1 jam of sale 1                  returns 4.50
run sell jam:2 --payment cash --source in_person --json
S1=$(printf '%s' "$out" | jq -r .id)
run sell honey --payment card --source online
run sell jam:1:400 honey:2 --payment qr --source livestream
run sell tin --payment other --source preview
run return "$S1" jam:1 --reason "cracked lid"
check "four sales and a return are made" '[ $rc -eq 0 ]'
DAY2=$(date -u +%F)
# Should the day turn at midnight UTC meanwhile, the report spans both days.

# ---- report: text ------------------------------------------------------------
run report --tz UTC --from "$DAY1" --to "$DAY2" --by stall,item,payment,source
check "report exits 0" '[ $rc -eq 0 ]'
check "report: 4 sales" 'has_line "$out" "sales +4"'
check "report: 7 units sold, 1 returned" 'has_line "$out" "units +7 sold, 1 returned"'
check "report: gross 53.50 GBP" 'has_line "$out" "gross +53\.50 GBP"'
check "report: returns 4.50 GBP" 'has_line "$out" "returns +4\.50 GBP"'
check "report: net 49.00 GBP" 'has_line "$out" "net +49\.00 GBP"'
check "report: average 12.25 GBP a sale" 'has_line "$out" "average +12\.25 GBP a sale"'
check "report: the zone it was cut in" 'has_line "$out" "zone +UTC"'
check "report by stall: Orchard Farm with every figure" \
    'has_line "$out" "Orchard Farm +4 +7 +1 +53\.50 GBP +4\.50 GBP +49\.00 GBP"'
check "report by item: jam 3 units, 1 returned, 13.00 gross, 4.50 returns, 8.50 net" \
    'has_line "$out" "jam +Damson jam +2 +3 +1 +13\.00 GBP +4\.50 GBP +8\.50 GBP"'
check "report by item: honey 3 units, 37.50" \
    'has_line "$out" "honey +Wildflower honey +2 +3 +0 +37\.50 GBP +0\.00 GBP +37\.50 GBP"'
check "report by payment: cash 1 sale, 2 units, 9.00 less 4.50" \
    'has_line "$out" "cash +1 +2 +1 +9\.00 GBP +4\.50 GBP +4\.50 GBP"'
check "report by payment: qr 29.00" 'has_line "$out" "qr +1 +3 +0 +29\.00 GBP +0\.00 GBP +29\.00 GBP"'
check "report by payment: card 12.50" 'has_line "$out" "card +1 +1 +0 +12\.50 GBP +0\.00 GBP +12\.50 GBP"'
check "report by source: livestream 29.00, online 12.50, preview 3.00" \
    'has_line "$out" "livestream +1 +3 +0 +29\.00 GBP +0\.00 GBP +29\.00 GBP" &&
     has_line "$out" "online +1 +1 +0 +12\.50 GBP +0\.00 GBP +12\.50 GBP" &&
     has_line "$out" "preview +1 +1 +0 +3\.00 GBP +0\.00 GBP +3\.00 GBP"'
check "report: the tables in the order of --by" \
    '[ "$(printf "%s\n" "$out" | grep -Eo "^(STALL|SKU|PAYMENT|SOURCE) " | tr -d " " | tr "\n" ,)" = "STALL,SKU,PAYMENT,SOURCE," ]'
REPORT_TEXT=$out

run report --tz UTC --from "$DAY1" --to "$DAY2"
check "report with no --by prints the stall table only" \
    '[ $rc -eq 0 ] && has "$out" "STALL" && ! has "$out" "PAYMENT" && ! has "$out" "SKU"'

# ---- report: --json -----------------------------------------------------------
run report --tz UTC --from "$DAY1" --to "$DAY2" --by stall,payment --json
J=$out
check "report --json is the node's JSON on one document" '[ $rc -eq 0 ] && printf "%s" "$J" | jq -e . >/dev/null'
check "report --json: totals equal the sums of the sales made" \
    '[ "$(printf "%s" "$J" | jq -c ".totals | [.sales,.units,.gross,.returns,.returned_units,.net]")" = "[4,7,5350,450,1,4900]" ]'
check "report --json: by stall, this node has every sale, named, and the stall none" \
    '[ "$(printf "%s" "$J" | jq -r ".by.stall[] | select(.net != 0) | .stall, .name, .net")" = "$(printf "%s\nOrchard Farm\n4900" "$ORG_ID")" ] &&
     [ "$(printf "%s" "$J" | jq "[.by.stall[].net] | add")" = 4900 ]'
check "report --json: the stall's last sale is a time, today" \
    'printf "%s" "$J" | jq -r ".by.stall[] | select(.stall == \"$ORG_ID\") | .last_sale" | grep -Eq "^($DAY1|$DAY2)T"'
check "report --json: payments sum to the net" \
    '[ "$(printf "%s" "$J" | jq "[.by.payment[].net] | add")" = 4900 ]'
check "report --json: currency GBP, zone UTC" \
    '[ "$(printf "%s" "$J" | jq -r ".currency, .tz" | tr "\n" " ")" = "GBP UTC " ]'

# ---- bad input: the node's 400, the parameter named ----------------------
run report --from 2026-13-45
check "report --from with a bad date: exit 1 with the node's error naming from" \
    '[ $rc -eq 1 ] && has "$err" "stallmesh: " && has "$err" "from"'
run report --tz Nowhere/Atlantis
check "report --tz with an unknown zone: exit 1, bad_timezone" \
    '[ $rc -eq 1 ] && has "$err" "bad_timezone"'
run report --from 2026-12-06 --to 2026-12-05 --tz UTC
check "report with from after to: exit 1 naming the range" \
    '[ $rc -eq 1 ] && has "$err" "stallmesh: " && { has "$err" "from" || has "$err" "range"; }'
run report --json --tz Nowhere/Atlantis
check "report --json with a refusal prints the error document to stdout too" \
    '[ $rc -eq 1 ] && [ "$(printf "%s" "$out" | jq -r .error)" = bad_timezone ]'
run_in "$WRONG" report --node "$URL"
check "report with a wrong token: exit 1, unauthorized, which token file" \
    '[ $rc -eq 1 ] && has "$err" "unauthorized" && has "$err" "$WRONG/api-token"'

# ---- exports --------------------------------------------------------------------
# csv_py FILE EXPR: python with rows = the parsed CSV (a list of dicts) and
# head = the header; prints EXPR.
csv_py() {
    python3 - "$1" "$2" <<'EOF'
import csv, sys
with open(sys.argv[1], newline='', encoding='utf-8') as f:
    r = csv.reader(f)
    head = next(r)
    raw = list(r)
    rows = [dict(zip(head, row)) for row in raw]
    bad = [row for row in raw if len(row) != len(head)]
print(eval(sys.argv[2]))
EOF
}
run export sales --from "$DAY1" --to "$DAY2" -o "$TMP/sales.csv"
check "export sales -o FILE: exit 0, says what it wrote" \
    '[ $rc -eq 0 ] && has "$err" "wrote $TMP/sales.csv ($(wc -c <"$TMP/sales.csv" | tr -d " ") bytes)"'
check "no temporary file is left beside it" '[ "$(ls "$TMP" | grep -c "^sales\.csv")" -eq 1 ]'
check "sales.csv: the header the API documents" \
    '[ "$(head -n 1 "$TMP/sales.csv" | tr -d "\r")" = "date,time,tz,stall,stall_id,sale_id,sku,item,qty,unit_price,gross,returned_qty,returns,net,currency,source,payment,external_id,hold_id" ]'
check "sales.csv: one row per sale line (5)" '[ "$(csv_py "$TMP/sales.csv" "len(rows)")" = 5 ]'
SUMS=$(csv_py "$TMP/sales.csv" "'%.2f %.2f' % (sum(float(r['net']) for r in rows), sum(float(r['gross']) for r in rows))")
check "sales.csv: net sums to the report (49.00), gross to 53.50" '[ "$SUMS" = "49.00 53.50" ]'
TIN=$(csv_py "$TMP/sales.csv" "[r['item'] for r in rows if r['sku'] == 'tin'][0]")
check "sales.csv: the name with a comma and quotes comes back whole" '[ "$TIN" = "Tea tin, \"Earl Grey\"" ]'
JAM1=$(csv_py "$TMP/sales.csv" "'|'.join(','.join((r['qty'], r['returned_qty'], r['returns'], r['net'], r['payment'], r['source'])) for r in rows if r['sale_id'] == '$S1')")
check "sales.csv: sale 1's line: 2 jam, 1 returned, 4.50 back, 4.50 net, cash, in person" \
    '[ "$JAM1" = "2,1,4.50,4.50,cash,in_person" ]'
BAD=$(csv_py "$TMP/sales.csv" "len(bad)")
check "sales.csv: every row has the header's cells" '[ "$BAD" = 0 ]'
run export sales --from "$DAY1" --to "$DAY2"
printf '%s\n' "$out" >"$TMP/sales-stdout.csv"
check "export sales to stdout is the same CSV as -o" \
    '[ $rc -eq 0 ] && [ "$(csv_py "$TMP/sales-stdout.csv" "rows")" = "$(csv_py "$TMP/sales.csv" "rows")" ]'
run export returns --from "$DAY1" --to "$DAY2" -o "$TMP/returns.csv"
check "returns.csv: one row, the jam of sale 1, 4.50" \
    '[ $rc -eq 0 ] && [ "$(csv_py "$TMP/returns.csv" "len(rows)")" = 1 ] && has "$(cat "$TMP/returns.csv")" "$S1" && has "$(cat "$TMP/returns.csv")" "4.50"'
run export items --from "$DAY1" --to "$DAY2" -o "$TMP/items.csv"
check "items.csv: a row per sku sold at this stall (3)" \
    '[ $rc -eq 0 ] && [ "$(csv_py "$TMP/items.csv" "len(rows)")" = 3 ]'
run export inventory -o "$TMP/inventory.csv"
INV=$(csv_py "$TMP/inventory.csv" "' '.join(sorted(r['sku'] + '=' + r['on_hand'] for r in rows))")
check "inventory.csv: a row per sku and stall, with the units there (jam 18: 20, 3 sold, 1 back)" \
    '[ $rc -eq 0 ] && [ "$INV" = "honey=7 jam=18 tin=4" ]'
run export inventory --wide -o "$TMP/wide.csv"
check "inventory --wide: a column a stall, named as POS exports name it" \
    '[ $rc -eq 0 ] && head -n 1 "$TMP/wide.csv" | grep -Fq "Available [Orchard Farm]"'
run export sales --from 2026-12-06 --to 2026-12-05 -o "$TMP/bad.csv"
check "an export refused (from after to): exit 1, the node's error, no file" \
    '[ $rc -eq 1 ] && has "$err" "stallmesh: " && [ -z "$(ls "$TMP" | grep "^bad\.csv")" ]'
run export sales -o "$TMP/no/such/dir/sales.csv"
check "an export into a missing directory: exit 1 saying so" \
    '[ $rc -eq 1 ] && has "$err" "$TMP/no/such/dir/sales.csv"'
run_in "$WRONG" export sales --node "$URL" -o "$TMP/wrong.csv"
check "an export with a wrong token: exit 1, unauthorized, no file" \
    '[ $rc -eq 1 ] && has "$err" "unauthorized" && [ -z "$(ls "$TMP" | grep "^wrong\.csv")" ]'

# ---- a stall's node: its own stall only ----------------------------------------
SPORT=$(free_port) || { nok "a second free port"; finish; }
if start "$STALL" "$SPORT"; then
    ok "the stall's node starts"
    run_in "$STALL" report --node "http://127.0.0.1:$SPORT" --stall "$ORG_ID"
    check "a stall's node refuses another stall's report: organiser_only" \
        '[ $rc -eq 1 ] && has "$err" "organiser_only"'
    run_in "$STALL" report --node "http://127.0.0.1:$SPORT" --tz UTC --json
    check "a stall's node reports its own stall (nothing sold there: 0)" \
        '[ $rc -eq 0 ] && [ "$(printf "%s" "$out" | jq .totals.sales)" = 0 ]'
    run_in "$STALL" report --node "http://127.0.0.1:$SPORT" --stall "$STALL_ID" --tz UTC
    check "a stall's node answers --stall of itself (the till's Today asks so)" \
        '[ $rc -eq 0 ] && has_line "$out" "sales +0"'
else
    nok "the stall's node starts"
fi

for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
for p in $PIDS; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    wait "$p" 2>/dev/null
done
PIDS=
finish
