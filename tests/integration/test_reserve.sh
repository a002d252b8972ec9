#!/bin/bash
# Integration test of reservations with real nodes on loopback:
#
#   bash tests/integration/test_reserve.sh build/stallmesh     (from the repo root)
#
# A market of two stalls, A (the organiser) and B, started with mesh
# listeners on 127.0.0.1 and driven through their JSON APIs with curl, from
# several loopback source addresses (127.0.0.x) as different phones.  It
# checks: each [holds] limit refused with 409 hold_limit naming it (one
# device's holds sent at once as well: the write policy's); a hold
# of several lines sold from the till by its id sells exactly its lines,
# once (a second sale is 409 hold_sold); an expired hold's sale is 409
# hold_expired; holds at A, refused or not, of any size, never change B's
# stock (a hold never asks other stalls for units); eighty forwarded holds
# from eight addresses leave the budget for a new shopper; bad input
# (unknown code 404; empty lines, duplicate skus, qty 0 or negative, a
# device id over 64 bytes: 400).  Each check prints "ok - ..." or
# "not ok - ..."; the last line is "N passed, M failed"; exit non-zero if
# M > 0.  Every wait is bounded; only the nodes this script started are
# stopped, by PID.  Needs curl, jq and ss.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
. "$(dirname "$0")/lib.sh"     # checks, free_port, the nodes: start, stop, call

pass=0
fail=0

for tool in curl jq ss; do
    command -v $tool >/dev/null 2>&1 || { nok "$tool is installed (make deps)"; finish; }
done
[ -x "$BIN" ] || { nok "$BIN is an executable (make)"; finish; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-reserve.XXXXXX") || exit 1
declare -A PID HP MP ARGS
cleanup() {
    stop_nodes
    [ -n "${KEEP_TMP:-}" ] && { echo "# kept $TMP"; return; }
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE

# units NODE SKU AT: units of SKU at node AT as NODE's GET /api/stock shows them.
units() {
    get "$1" /api/stock | jq -r --arg s "$2" --arg at "$3" '[.items[] | select(.sku == $s) | .locations[] | select(.node == $at) | .units] | add // 0'
}

# ---- the market --------------------------------------------------------------
sm A init --name "Stall A" >/dev/null && sm A market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
sm B init --name "Stall B" >/dev/null || { nok "init B"; finish; }
A_ID=$(node_id A)
B_ID=$(node_id B)
HP[A]=$(free_port); MP[A]=$(free_port)
sm B join "$(sm A admit "$B_ID" --name "Stall B" --endpoint "tcp://127.0.0.1:${MP[A]}")" >/dev/null \
    || { nok "B joins"; finish; }
start A || { nok "A starts"; finish; }
start B || { nok "B starts"; finish; }

for sku in jam tea mug cup pen; do
    call A POST /api/items "{\"sku\":\"$sku\",\"name\":\"$sku\",\"price\":250}" 127.0.0.1 yes
done
for sku in jam tea mug pen; do call A POST /api/stock/add "{\"sku\":\"$sku\",\"qty\":20}" 127.0.0.1 yes; done
# B holds jam and cup; A holds no cup.
for _ in $(seq 1 100); do
    call B POST /api/stock/add '{"sku":"jam","qty":100}' 127.0.0.1 yes
    [ "$status" = 201 ] && break
    sleep 0.1
done
call B POST /api/stock/add '{"sku":"cup","qty":20}' 127.0.0.1 yes
check "B stocks jam and cup once the catalog reached it" '[ "$status" = 201 ]'
for _ in $(seq 1 100); do [ "$(units A cup "$B_ID")" = 20 ] && break; sleep 0.1; done
check "A sees B's 20 cups" '[ "$(units A cup "$B_ID")" = 20 ]'

# ---- limits --------------------------------------------------------------------
call A POST /api/holds '{"lines":[{"sku":"jam","qty":2},{"sku":"tea","qty":2},{"sku":"mug","qty":2}],"device":"d1"}' 127.0.0.2
check "6 units in one reservation: 409 hold_limit naming max_units" \
    '[ "$status" = 409 ] && [ "$(js .error)" = hold_limit ] && [ "$(js .limit)" = max_units ] && [[ "$(js .detail)" == *max_units* ]]'
call A POST /api/holds '{"lines":[{"sku":"jam","qty":3}],"device":"d1"}' 127.0.0.2
check "3 of one sku: 409 hold_limit naming max_per_sku" \
    '[ "$status" = 409 ] && [ "$(js .limit)" = max_per_sku ] && [[ "$(js .detail)" == *max_per_sku* ]]'
call A POST /api/holds '{"lines":[{"sku":"jam","qty":2},{"sku":"tea","qty":2}],"device":"d1"}' 127.0.0.2
s1=$status
call A POST /api/holds '{"lines":[{"sku":"jam","qty":2},{"sku":"tea","qty":2},{"sku":"mug","qty":1}],"device":"d1"}' 127.0.0.3
s2=$status
jam_before=$(units A jam "$A_ID")
call A POST /api/holds '{"lines":[{"sku":"mug","qty":2}],"device":"d1"}' 127.0.0.4
check "one device holding 9 asks 2 more (from a third address): 409 naming per_device, nothing held" \
    '[ "$s1" = 201 ] && [ "$s2" = 201 ] && [ "$status" = 409 ] && [ "$(js .limit)" = per_device ] && [ "$(units A jam "$A_ID")" = "$jam_before" ]'
call A POST /api/holds '{"lines":[{"sku":"pen","qty":2},{"sku":"mug","qty":2}],"device":"d2"}' 127.0.0.5
s1=$status
call A POST /api/holds '{"lines":[{"sku":"pen","qty":2},{"sku":"mug","qty":2},{"sku":"tea","qty":1}],"device":"d3"}' 127.0.0.5
s2=$status
call A POST /api/holds '{"lines":[{"sku":"tea","qty":2}],"device":"d4"}' 127.0.0.5
check "one address holding 9 with two devices asks 2 more with a third: 409 naming per_address" \
    '[ "$s1" = 201 ] && [ "$s2" = 201 ] && [ "$status" = 409 ] && [ "$(js .limit)" = per_address ]'
call A POST /api/holds '{"lines":[{"sku":"tea","qty":5}]}' 127.0.0.1 yes
check "the stall's own token is not limited" '[ "$status" = 201 ]'
call A DELETE "/api/holds/$(js .id)" "" 127.0.0.1 yes
# Eight holds of 2 from one device at once, from eight addresses: holds
# submitted together share a batch, where the write policy (not the check
# before it) refuses what passes the limit, with the same answer.
call A POST /api/items '{"sku":"hat","name":"hat","price":900}' 127.0.0.1 yes
call A POST /api/stock/add '{"sku":"hat","qty":30}' 127.0.0.1 yes
rush_pids=()
for i in $(seq 0 7); do
    curl -s -o "$TMP/rush.$i" -w '%{http_code}' --max-time 10 --interface "127.0.0.$((30 + i))" \
        -H 'Content-Type: application/json' --data '{"lines":[{"sku":"hat","qty":2}],"device":"rush"}' \
        "$(url A)/api/holds" >"$TMP/rush.$i.status" &
    rush_pids+=($!)
done
wait "${rush_pids[@]}"
rush_ok=0 rush_409=0
for i in $(seq 0 7); do
    case "$(cat "$TMP/rush.$i.status")" in
    201) rush_ok=$((rush_ok + 1)) ;;
    409) [ "$(jq -r '"\(.error) \(.limit) \(.max) \(.wanted)"' "$TMP/rush.$i")" = "hold_limit per_device 10 12" ] \
             && rush_409=$((rush_409 + 1)) ;;
    esac
done
body="201: $rush_ok, 409 per_device: $rush_409"
check "one device's 8 holds of 2 at once: 5 held, 3 refused 409 hold_limit per_device (10, 12 wanted)" \
    '[ "$rush_ok" = 5 ] && [ "$rush_409" = 3 ] && [ "$(units A hat "$A_ID")" = 20 ]'

# ---- a hold sold by its id ---------------------------------------------------------
call A POST /api/holds '{"lines":[{"sku":"pen","qty":2},{"sku":"jam","qty":1}],"device":"s1"}' 127.0.0.6
HOLD=$(js .id); CODE=$(js .code)
check "a reservation of two lines: 201 with id, a 6-character code from the alphabet, lines and expiry" \
    '[ "$status" = 201 ] && [[ "$CODE" =~ ^[2-9A-HJKMNP-Z]{6}$ ]] && [ "$(js ".lines | length")" = 2 ] && [ -n "$(js .expires)" ]'
pen=$(units A pen "$A_ID"); jam=$(units A jam "$A_ID")
call A GET "/api/holds?open=1&code=$CODE" "" 127.0.0.1 yes
check "the till finds it by code: its lines" \
    '[ "$status" = 200 ] && [ "$(js ".holds[0].id")" = "$HOLD" ] && [ "$(js "[.holds[0].lines[] | \"\(.sku)x\(.qty)\"] | join(\",\")")" = "penx2,jamx1" ]'
call A GET "/api/holds?open=1&code=$CODE" "" 127.0.0.1 no
check "listing holds needs the token" '[ "$status" = 401 ]'
call A POST /api/sales "{\"hold\":\"$HOLD\",\"payment\":\"cash\",\"source\":\"in_person\"}" 127.0.0.1 yes
SALE=$(js .id)
check "sold by hold id: 201 with exactly its lines" \
    '[ "$status" = 201 ] && [ "$(js .hold)" = "$HOLD" ] && [ "$(js "[.lines[] | \"\(.sku)x\(.qty)\"] | sort | join(\",\")")" = "jamx1,penx2" ]'
check "its units stay taken (held, then sold): none come back" \
    '[ "$(units A pen "$A_ID")" = "$pen" ] && [ "$(units A jam "$A_ID")" = "$jam" ]'
call A POST /api/sales "{\"hold\":\"$HOLD\",\"payment\":\"cash\",\"source\":\"in_person\"}" 127.0.0.1 yes
check "a second sale of it: 409 hold_sold" '[ "$status" = 409 ] && [ "$(js .error)" = hold_sold ]'
n=$(curl -s -H "Authorization: Bearer $(cat "$TMP/A/api-token")" "http://127.0.0.1:${HP[A]}/api/sales" \
    | jq --arg h "$HOLD" '[.sales[] | select(.hold == $h)] | length')
check "exactly one sale names the hold" '[ "$n" = 1 ]'
call A GET "/api/holds/$HOLD" "" 127.0.0.6
check "the phone reads it as sold, with the sale, and no code" \
    '[ "$status" = 200 ] && [ "$(js .state)" = sold ] && [ "$(js .sale)" = "$SALE" ] && [ "$(js .code)" = null ]'

# ---- bad input ---------------------------------------------------------------------------
call A GET "/api/holds?open=1&code=ZZZZZZ" "" 127.0.0.1 yes
check "an unknown code: 404 unknown_code" '[ "$status" = 404 ] && [ "$(js .error)" = unknown_code ]'
call A POST /api/holds '{"lines":[]}' 127.0.0.7
check "empty lines: 400" '[ "$status" = 400 ] && [ "$(js .field)" = lines ]'
call A POST /api/holds '{"lines":[{"sku":"jam","qty":1},{"sku":"jam","qty":1}]}' 127.0.0.7
check "a sku on two lines: 400 duplicate_sku" '[ "$status" = 400 ] && [ "$(js .error)" = duplicate_sku ]'
call A POST /api/holds '{"lines":[{"sku":"jam","qty":0}]}' 127.0.0.7
check "qty 0: 400 bad_quantity" '[ "$status" = 400 ] && [ "$(js .error)" = bad_quantity ]'
call A POST /api/holds '{"lines":[{"sku":"jam","qty":-1}]}' 127.0.0.7
check "a negative qty: 400 bad_quantity" '[ "$status" = 400 ] && [ "$(js .error)" = bad_quantity ]'
call A POST /api/holds "{\"lines\":[{\"sku\":\"jam\",\"qty\":1}],\"device\":\"$(printf 'd%.0s' $(seq 1 65))\"}" 127.0.0.7
check "a device id of 65 bytes: 400 naming device" '[ "$status" = 400 ] && [ "$(js .field)" = device ]'
call A GET "/api/holds/$A_ID:999999" "" 127.0.0.7
check "an unknown hold id: 404 unknown_hold" '[ "$status" = 404 ] && [ "$(js .error)" = unknown_hold ]'

# ---- holds at A never change B's stock ---------------------------------------------------
b_jam=$(units B jam "$B_ID"); b_cup=$(units B cup "$B_ID")
call A POST /api/holds '{"lines":[{"sku":"cup","qty":1}]}' 127.0.0.8
s1=$status
call A POST /api/holds '{"sku":"cup","qty":1000000}' 127.0.0.1 yes
s2=$status
call A POST /api/holds '{"lines":[{"sku":"cup","qty":1},{"sku":"jam","qty":1}]}' 127.0.0.8
s3=$status
call A POST /api/holds '{"sku":"jam","qty":2}' 127.0.0.8
s4=$status
check "at A: a hold of a cup A lacks is 409, of a million 409, half-available 409, of jam A holds 201" \
    '[ "$s1" = 409 ] && [ "$s2" = 409 ] && [ "$s3" = 409 ] && [ "$s4" = 201 ]'
sleep 3      # longer than a sale waits for units from peers
check "B's own jam and cups are unchanged, at B and as A sees them (no units moved to A)" \
    '[ "$(units B jam "$B_ID")" = "$b_jam" ] && [ "$(units B cup "$B_ID")" = "$b_cup" ] && [ "$(units A cup "$B_ID")" = "$b_cup" ] && [ "$(units A cup "$A_ID")" = 0 ]'

# ---- forwarded holds budgeted per shopper -------------------------------------------------
ok80=0
for a in 10 11 12 13 14 15 16 17; do
    for _ in $(seq 1 10); do
        call A POST /api/holds "{\"sku\":\"jam\",\"qty\":1,\"at\":\"$B_ID\"}" "127.0.0.$a"
        [ "$status" = 201 ] && ok80=$((ok80 + 1))
    done
done
check "80 holds forwarded to B from 8 addresses: all held there" '[ "$ok80" = 80 ]'
call A POST /api/holds "{\"sku\":\"jam\",\"qty\":1,\"at\":\"$B_ID\"}" 127.0.0.20
check "a new shopper's forwarded hold is still held (not 503 busy), with a code" \
    '[ "$status" = 201 ] && [ "$(js .at)" = "$B_ID" ] && [[ "$(js .code)" =~ ^[2-9A-HJKMNP-Z]{6}$ ]]'

# ---- the CLI: hold of several lines, holds, sell --hold --------------------------------------
out=$(sm A hold jam:2 tea --device cli-phone 2>&1); rc=$?
CODE=$(printf '%s\n' "$out" | sed -n 's/.* code \([2-9A-Z]*\):.*/\1/p')
check "stallmesh hold SKU:QTY SKU --device: one hold of two lines with a code" \
    '[ $rc = 0 ] && [[ "$out" == *"2 x jam, 1 x tea"* ]] && [ ${#CODE} = 6 ]'
out=$(sm A holds --code "$CODE" 2>&1); rc=$?
ID=$(printf '%s\n' "$out" | awk '{print $2}')
check "stallmesh holds --code finds it" '[ $rc = 0 ] && [[ "$out" == "$CODE "* ]] && [[ "$out" == *"2 x jam, 1 x tea"* ]]'
out=$(sm A sell --hold "$ID" --payment cash 2>&1); rc=$?
check "stallmesh sell --hold sells its lines (7.50 GBP)" '[ $rc = 0 ] && [[ "$out" == *"7.50"* ]]'
out=$(sm A sell --hold "$ID" 2>&1); rc=$?
check "a second stallmesh sell --hold exits 1 with hold_sold" '[ $rc = 1 ] && [[ "$out" == *hold_sold* ]]'

# ---- expiry ---------------------------------------------------------------------------------
stop A
printf '[holds]\nttl_s = 2\n' >"$TMP/a.conf"
start A --config "$TMP/a.conf" || nok "A restarts with 2 s holds"
call A POST /api/holds '{"lines":[{"sku":"mug","qty":1},{"sku":"pen","qty":1}]}' 127.0.0.9
HOLD=$(js .id)
sleep 3
call A POST /api/sales "{\"hold\":\"$HOLD\",\"payment\":\"card\",\"source\":\"in_person\"}" 127.0.0.1 yes
check "an expired hold's sale: 409 hold_expired" '[ "$status" = 409 ] && [ "$(js .error)" = hold_expired ]'
call A GET "/api/holds/$HOLD" "" 127.0.0.9
check "the phone reads it as expired" '[ "$(js .state)" = expired ]'

stop A
stop B
finish
