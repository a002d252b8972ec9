#!/bin/bash
# Integration test of the organiser's reports: real `stallmesh run` processes
# on 127.0.0.1, driven over their HTTP APIs (curl, jq, python3's csv):
#
#   bash tests/integration/test_report.sh build/stallmesh
#
# An organiser O and three stalls A, B, C meshed on loopback.  Each stall
# restocks and sells with every source and every payment (a two-line sale
# among them) and takes a return.  After convergence:
#   - O's GET /api/report equals the sum of the sales made (counted here as
#     they were acknowledged), its by-stall rows equal each stall's own
#     report, and every dimension (stall, item, hour, day, source, payment)
#     sums to the totals;
#   - a stall's node reports only its own stall (another: 403
#     organiser_only), O reports one stall on request;
#   - each CSV (sales, returns, items, inventory) has its header row and a
#     Content-Disposition, parses with python3's csv module and sums to the
#     report; a formula-like item name is prefixed with '; the inventory
#     export agrees with /api/stock at every stall, long and wide;
#   - bad input: from after to, unknown by, a bad date, a bad zone -> 400
#     naming the parameter; no token -> 401; a ten-year range answers (and
#     by hour over it is 400 naming by); Europe/London's 2026-10-25 is 25 h;
#   - a stall that stops is listed in O's stalls_behind.
#
# Each check prints "ok - ..." or "not ok - ..."; the last line is "N passed,
# M failed"; the exit status is non-zero if any failed.  Every wait is
# bounded; only the nodes this script started are stopped, by their PIDs.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && printf '#   %s\n' "$2" | head -n 20; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
for tool in curl jq ss python3; do
    command -v $tool >/dev/null 2>&1 || { nok "$tool is installed (make deps)"; finish; }
done
[ -x "$BIN" ] || { nok "$BIN is an executable (make)"; finish; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-report.XXXXXX") || exit 1
declare -A PID HP MP ARGS
cleanup() {
    stop_nodes
    [ -n "${KEEP_TMP:-}" ] && { echo "# kept $TMP"; return; }
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE

# sm, node_id, start, stop, url, get and req (which retries a 503
# recovering: a stall started beside its peers checks its own log with them
# first; it sets $headers, which the exports' checks read).  A request may
# take up to 20 s (the reports over the whole log).
. "$(dirname "$0")/lib.sh"
NODE_ARGS="--log-level warn"
CALL_TIMEOUT=20
digest() { get "$1" /api/state | jq -r '.digest // empty'; }
same_digest() {
    local first d
    first=$(digest "$1")
    [ -n "$first" ] || return 1
    for n in "${@:2}"; do d=$(digest "$n"); [ "$d" = "$first" ] || return 1; done
}
connected() {
    [ "$(get "$1" /api/peers | jq -r --arg p "$2" '[.peers[] | select(.node == $p and .connected)] | length')" = 1 ]
}
full_mesh() {
    for x in "$@"; do for y in "$@"; do
        [ "$x" = "$y" ] || connected "$x" "${ID[$y]}" || return 1
    done; done
}
has_sku() { [ "$(get "$1" /api/stock | jq --arg s "$2" '[.items[] | select(.sku == $s)] | length')" = 1 ]; }

# ---- the market --------------------------------------------------------------
for n in O A B C; do sm $n init --name "Node $n" >/dev/null || { nok "init $n"; finish; }; done
sm O market create --name "Report market" --currency GBP >/dev/null || { nok "market create"; finish; }
start O || { nok "the organiser starts" "$(tail -n 5 "$TMP/O.log")"; finish; }
declare -A ID
for n in O A B C; do ID[$n]=$(node_id $n); done
for n in A B C; do
    tok=$(sm O admit "${ID[$n]}" --name "Stall $n" --endpoint "tcp://127.0.0.1:${MP[O]}")
    sm $n join "$tok" >/dev/null || { nok "$n joins"; finish; }
    start $n || { nok "stall $n starts" "$(tail -n 5 "$TMP/$n.log")"; finish; }
done
check "an organiser and three stalls mesh on loopback" 'until_true 30 full_mesh O A B C'

req O POST /api/items '{"sku":"jam","name":"Plum jam","price":450}'
req O POST /api/items '{"sku":"tea","name":"Tea, \"green\"","price":300}'
req O POST /api/items '{"sku":"eq","name":"=HYPERLINK(\"x\")","price":125}'
check "the items reach every stall" \
    'until_true 20 has_sku A eq && until_true 20 has_sku B eq && until_true 20 has_sku C eq'

# ---- sales with every source and payment, a return at each stall -------------
sources=(in_person livestream online preview in_person)
payments=(card cash qr offline_card other)
declare -A GROSS RET SALES UNITS RUNITS
tot_gross=0; tot_ret=0; tot_sales=0; tot_units=0; tot_runits=0; bad=""
for n in A B C; do
    GROSS[$n]=0; RET[$n]=0; SALES[$n]=0; UNITS[$n]=0; RUNITS[$n]=0
    for s in jam tea eq; do
        req $n POST /api/stock/add "{\"sku\":\"$s\",\"qty\":50}"
        [ "$code" = 201 ] || bad="$bad add:$n:$code"
    done
    for i in 0 1 2 3 4; do
        qty=$((i + 1))
        req $n POST /api/sales "{\"lines\":[{\"sku\":\"jam\",\"qty\":$qty}],\"source\":\"${sources[$i]}\",\"payment\":\"${payments[$i]}\",\"external_id\":\"$n-$i\"}"
        [ "$code" = 201 ] || bad="$bad sale:$n:$i:$code"
        GROSS[$n]=$((GROSS[$n] + qty * 450)); UNITS[$n]=$((UNITS[$n] + qty)); SALES[$n]=$((SALES[$n] + 1))
    done
    # A two-line sale, then a return of part of it (at the sale's prices).
    req $n POST /api/sales '{"lines":[{"sku":"tea","qty":2},{"sku":"eq","qty":3}],"source":"online","payment":"qr"}'
    [ "$code" = 201 ] || bad="$bad sale2:$n:$code"
    sid=$(printf '%s' "$body" | jq -r .id)
    GROSS[$n]=$((GROSS[$n] + 2 * 300 + 3 * 125)); UNITS[$n]=$((UNITS[$n] + 5)); SALES[$n]=$((SALES[$n] + 1))
    req $n POST /api/returns "{\"sale\":\"$sid\",\"lines\":[{\"sku\":\"tea\",\"qty\":1},{\"sku\":\"eq\",\"qty\":2}],\"reason\":\"-broken, sorry\"}"
    [ "$code" = 201 ] || bad="$bad return:$n:$code"
    RET[$n]=$((300 + 2 * 125)); RUNITS[$n]=3
    tot_gross=$((tot_gross + GROSS[$n])); tot_ret=$((tot_ret + RET[$n]))
    tot_sales=$((tot_sales + SALES[$n])); tot_units=$((tot_units + UNITS[$n]))
    tot_runits=$((tot_runits + RUNITS[$n]))
done
check "every stall restocks, sells with every source and payment, and takes a return" \
    '[ -z "$bad" ]' "$bad"
check "the four nodes converge" 'until_true 30 same_digest O A B C'

# ---- the organiser's report ---------------------------------------------------
req O GET "/api/report?by=stall,item,hour,day,source,payment"
R=$body
check "GET /api/report at the organiser is 200 JSON" '[ "$code" = 200 ]' "$code $body"
expect="$tot_sales $tot_units $tot_gross $tot_ret $tot_runits $((tot_gross - tot_ret))"
got=$(printf '%s' "$R" | jq -r '.totals | "\(.sales) \(.units) \(.gross) \(.returns) \(.returned_units) \(.net)"')
check "the organiser's totals are the sum of the sales and returns made" '[ "$got" = "$expect" ]' \
    "expected $expect, got $got"
check "the answer has currency, tz, from, to, as_of, voided, quarantined, stalls_behind" \
    '[ "$(printf "%s" "$R" | jq -r "[.currency, (.tz|type), (.from|type), (.to|type), (.as_of|type), (.voided.sales), (.quarantined.sales), (.stalls_behind|length)] | join(\" \")")" = "GBP string string string string 0 0 0" ]' \
    "$(printf '%s' "$R" | jq -c '{currency,tz,from,to,as_of,voided,quarantined,stalls_behind}')"
for dim in stall item hour day source payment; do
    s=$(printf '%s' "$R" | jq -r --arg d $dim '[.by[$d][].net] | add')
    check "by $dim sums to the net total" '[ "$s" = "$((tot_gross - tot_ret))" ]' "$s"
done
check "by source and by payment list every source and payment" \
    '[ "$(printf "%s" "$R" | jq -r "[.by.source[].source] | join(\",\")")" = "in_person,livestream,online,preview" ] && [ "$(printf "%s" "$R" | jq -r "[.by.payment[].payment] | join(\",\")")" = "card,cash,qr,offline_card,other" ]'
check "in_person counts two sales at each stall (sources cycle)" \
    '[ "$(printf "%s" "$R" | jq ".by.source[0].sales")" = 6 ]'
check "items carry their names" \
    '[ "$(printf "%s" "$R" | jq -r ".by.item[] | select(.sku == \"tea\") | .name")" = "Tea, \"green\"" ]'
for n in A B C; do
    req $n GET "/api/report"
    own=$(printf '%s' "$body" | jq -c '.totals')
    org=$(printf '%s' "$R" | jq -c --arg s "${ID[$n]}" '.by.stall[] | select(.stall == $s) | {sales,units,gross,returns,returned_units,net,average_sale}')
    check "stall $n: its own report equals the organiser's row for it" '[ "$own" = "$org" ]' "own $own org $org"
    check "stall $n: its own report is the sales made there" \
        '[ "$(printf "%s" "$own" | jq -r ".gross - .returns")" = "$((GROSS[$n] - RET[$n]))" ]'
    check "stall $n's report names its stall" \
        '[ "$(printf "%s" "$body" | jq -r ".stall")" = "${ID[$n]}" ]'
done
req A GET "/api/report?stall=${ID[B]}"
check "a stall asking for another stall is 403 organiser_only" \
    '[ "$code" = 403 ] && [ "$(printf "%s" "$body" | jq -r .error)" = organiser_only ]' "$code $body"
req O GET "/api/report?stall=${ID[B]}&by=stall"
check "the organiser reports one stall on request" \
    '[ "$(printf "%s" "$body" | jq -r ".totals.net")" = "$((GROSS[B] - RET[B]))" ] && [ "$(printf "%s" "$body" | jq ".by.stall | length")" = 1 ]' "$body"

# ---- CSV exports -------------------------------------------------------------------
# csvsum FILE COLUMN: rows and the sum of COLUMN (decimals), parsed by python's csv.
csvsum() {
    python3 - "$1" "$2" <<'EOF'
import csv, sys
from decimal import Decimal
with open(sys.argv[1], newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
print(len(rows), sum((Decimal(r[sys.argv[2]]) for r in rows), Decimal(0)).quantize(Decimal('0.01')))
EOF
}
money() { python3 -c "from decimal import Decimal; print((Decimal($1) / 100).quantize(Decimal('0.01')))"; }
for what in sales returns items inventory; do
    req O GET "/api/export/$what.csv"
    cp "$TMP/body" "$TMP/$what.csv"
    check "$what.csv is 200 text/csv with a Content-Disposition attachment" \
        '[ "$code" = 200 ] && printf "%s" "$headers" | grep -qi "^content-type: text/csv" && printf "%s" "$headers" | grep -qi "^content-disposition: attachment; filename=\"stallmesh-$what-"' \
        "$code $headers"
done
read -r rows gross <<<"$(csvsum "$TMP/sales.csv" gross)"
check "sales.csv: one row per sale line (21), gross sums to the report" \
    '[ "$rows" = 21 ] && [ "$gross" = "$(money $tot_gross)" ]' "$rows $gross"
read -r rows ret <<<"$(csvsum "$TMP/sales.csv" returns)"
check "sales.csv: returns sum to the report" '[ "$ret" = "$(money $tot_ret)" ]' "$ret"
read -r rows net <<<"$(csvsum "$TMP/sales.csv" net)"
check "sales.csv: net sums to the report" '[ "$net" = "$(money $((tot_gross - tot_ret)))" ]' "$net"
read -r rows ret <<<"$(csvsum "$TMP/returns.csv" returns)"
check "returns.csv: one row per return line (6), sums to the report" \
    '[ "$rows" = 6 ] && [ "$ret" = "$(money $tot_ret)" ]' "$rows $ret"
read -r rows net <<<"$(csvsum "$TMP/items.csv" net)"
check "items.csv: net over skus and stalls sums to the report" \
    '[ "$net" = "$(money $((tot_gross - tot_ret)))" ]' "$rows $net"
check "sales.csv has the issue's header row" \
    '[ "$(head -n 1 "$TMP/sales.csv" | tr -d "\r")" = "date,time,tz,stall,stall_id,sale_id,sku,item,qty,unit_price,gross,returned_qty,returns,net,currency,source,payment,external_id,hold_id" ]'
check "a formula-like item name is prefixed with ' and quoted" \
    'grep -q "\"'"'"'=HYPERLINK(\"\"x\"\")\"" "$TMP/sales.csv"'
check "a reason starting with - is prefixed with '" 'grep -q "\"'"'"'-broken, sorry\"" "$TMP/returns.csv"'
check "lines end in CRLF (RFC 4180)" '[ "$(head -c 2000 "$TMP/sales.csv" | grep -c $'"'"'\r$'"'"')" -gt 2 ]'
check "sales.csv: every row's date, time and tz columns are a day, a time and a signed offset" \
    'python3 -c "
import csv, re, sys
rows = list(csv.DictReader(open(sys.argv[1], newline=\"\", encoding=\"utf-8\")))
ok = rows and all(re.fullmatch(r\"\\d{4}-\\d\\d-\\d\\d\", r[\"date\"]) and re.fullmatch(r\"\\d\\d:\\d\\d:\\d\\d\", r[\"time\"])
                  and re.fullmatch(r\"[+-]\\d\\d:\\d\\d\", r[\"tz\"]) for r in rows)
sys.exit(0 if ok else 1)
" "$TMP/sales.csv"' "$(sed -n 2p "$TMP/sales.csv")"
# Inventory against /api/stock at every node.
inv_matches() {
    local n=$1
    req $n GET "/api/export/inventory.csv"
    cp "$TMP/body" "$TMP/inv-$n.csv"
    get $n /api/stock >"$TMP/stock-$n.json"
    python3 - "$TMP/inv-$n.csv" "$TMP/stock-$n.json" <<'EOF'
import csv, json, sys
inv = {(r['sku'], r['stall_id']): int(r['available'])
       for r in csv.DictReader(open(sys.argv[1], newline='', encoding='utf-8'))}
stock = {(i['sku'], l['node']): l['units']
         for i in json.load(open(sys.argv[2]))['items'] for l in i['locations']}
sys.exit(0 if inv == stock and len(inv) > 0 else 1)
EOF
}
for n in O A B C; do
    check "inventory.csv agrees with /api/stock at $n" "inv_matches $n"
done
req O GET "/api/export/inventory.csv?wide=1"
check "inventory.csv?wide=1 has one Available column per stall" \
    'head -n 1 "$TMP/body" | grep -q "Available \[Stall A\],Available \[Stall B\]\|Available \[Stall" && [ "$(head -n 1 "$TMP/body" | tr "," "\n" | grep -c "^Available \[")" -ge 4 ]' \
    "$(head -n 1 "$TMP/body")"
sold_today=$(python3 -c "
import csv; print(sum(int(r['sold_today']) for r in csv.DictReader(open('$TMP/inventory.csv', newline=''))))")
check "inventory.csv sold_today sums to the units sold today" '[ "$sold_today" = "$tot_units" ]' "$sold_today"

# ---- bad input -----------------------------------------------------------------------
bad_field() {
    req O GET "$1"
    [ "$code" = "$2" ] && [ "$(printf '%s' "$body" | jq -r .field)" = "$3" ]
}
check "from after to is 400 naming from" 'bad_field "/api/report?from=2026-10-26&to=2026-10-25" 400 from' "$code $body"
check "an unknown by is 400 naming by" 'bad_field "/api/report?by=stall,weather" 400 by' "$code $body"
check "a bad date is 400 naming from" 'bad_field "/api/report?from=2026-02-30" 400 from' "$code $body"
check "a bad time is 400 naming to" 'bad_field "/api/report?to=2026-10-25T25:00:00Z" 400 to' "$code $body"
check "an unknown zone is 400 naming tz" 'bad_field "/api/report?tz=Mars/Olympus" 400 tz' "$code $body"
check "a zone name with .. is 400 naming tz" 'bad_field "/api/report?tz=../../etc/passwd" 400 tz' "$code $body"
check "a bad stall id is 400 naming stall" 'bad_field "/api/report?stall=xyz" 400 stall' "$code $body"
check "by hour over ten years is 400 naming by" \
    'bad_field "/api/report?from=2020-01-01&to=2029-12-31&by=hour" 400 by' "$code $body"
c=$(curl -s -o /dev/null -w '%{http_code}' "$(url O)/api/report")
c2=$(curl -s -o /dev/null -w '%{http_code}' "$(url O)/api/export/sales.csv")
check "no token: 401 for the report and an export" '[ "$c" = 401 ] && [ "$c2" = 401 ]' "$c $c2"
c=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $(cat "$TMP/O/api-token")" "$(url O)/api/report")
check "POST /api/report is 405" '[ "$c" = 405 ]' "$c"
rss() { awk '/VmRSS/ {print $2}' "/proc/${PID[O]}/status"; }
rss0=$(rss)
req O GET "/api/report?from=2020-01-01&to=2029-12-31&by=stall,item,day,source,payment"
ten=$body
req O GET "/api/export/sales.csv?from=2020-01-01&to=2029-12-31"
rows=$(python3 -c "import csv,sys; print(len(list(csv.DictReader(open('$TMP/body', newline='')))))")
rss1=$(rss)
check "a ten-year range answers with the same totals (and its export the same rows)" \
    '[ "$(printf "%s" "$ten" | jq .totals.net)" = "$((tot_gross - tot_ret))" ] && [ "$rows" = 21 ]' "$ten $rows"
check "the ten-year requests grow the node's memory by under 5 MB ($rss0 -> $rss1 kB)" \
    '[ $((rss1 - rss0)) -lt 5120 ]'
RANGE='"\(.from) \(.to)"'
req O GET "/api/report?from=2026-10-25&tz=Europe/London&by=hour"
check "Europe/London's 2026-10-25 runs from 00:00 BST to 00:00 GMT (25 hours)" \
    '[ "$(printf "%s" "$body" | jq -r "$RANGE")" = "2026-10-25T00:00:00+01:00 2026-10-26T00:00:00+00:00" ]' "$body"
req O GET "/api/report?from=2026-10-25T09:07:00%2B01:00&to=2026-10-25T10:00:00Z&tz=UTC"
check "RFC 3339 times are rounded outward to the quarter hour" \
    '[ "$(printf "%s" "$body" | jq -r "$RANGE")" = "2026-10-25T08:00:00+00:00 2026-10-25T10:00:00+00:00" ]' "$body"

# ---- stalls behind -----------------------------------------------------------------
stop C
c_behind() {
    req O GET "/api/report"
    [ "$(printf '%s' "$body" | jq -r --arg c "${ID[C]}" '[.stalls_behind[] | select(.stall == $c and .connected == false)] | length')" = 1 ]
}
check "a stall that stopped is listed in the organiser's stalls_behind" 'until_true 20 c_behind' "$body"
finish
