#!/bin/bash
# Integration test of drops with real nodes on loopback:
#
#   bash tests/integration/test_drops.sh build/stallmesh     (from the repo root)
#
# A market of three stalls, A (the organiser, which drops its units), B and
# C, started with mesh listeners on 127.0.0.1 and driven through their JSON
# APIs with curl, from several loopback source addresses (127.0.0.x) as
# different phones.  It checks: bad input (starts in the past or after
# closes, qty above the units here, an unknown mode: 400); before the
# start, the drop's units cannot be sold, held, moved, written off or asked
# for from another stall (409 drop_not_started at A; B's sale gets the
# usual 409 and moves nothing), while the units beyond its qty sell; from the start, a first-come drop caps
# holds per device and per address (409 drop_limit), and its ledger lists
# every hold with time and entry hash, none before the start; a raffle end
# to end: entries at A and at B (one per device and per address, 409
# already_entered, but the same device from the same address again is its
# first entry, 201 with its id; before the start 409 drop_not_started; after the close
# 409 drop_closed), a draw before the close 409 draw_too_early, the draw at
# A names the winners, who see "won" and a pickup code, and `drop verify`
# passes on C and fails (exit 1, naming it) on a copy of C's store with one
# byte of the draw changed.  Each check prints "ok - ..." or
# "not ok - ..."; the last line is "N passed, M failed"; exit non-zero if
# M > 0.  Every wait is bounded; only the nodes this script started are
# stopped, by PID.  Needs curl, jq, ss and python3.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
. "$(dirname "$0")/lib.sh"     # checks, free_port, the nodes: start, stop, call

pass=0
fail=0

for tool in curl jq ss python3; do
    command -v $tool >/dev/null 2>&1 || { nok "$tool is installed (make deps)"; finish; }
done
[ -x "$BIN" ] || { nok "$BIN is an executable (make)"; finish; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-drops.XXXXXX") || exit 1
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

# ---- the market: A organises and drops, B and C join ---------------------------
sm A init --name "Stall A" >/dev/null && sm A market create --name "Drop market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
A_ID=$(node_id A)
HP[A]=$(free_port); MP[A]=$(free_port)
for n in B C; do
    sm $n init --name "Stall $n" >/dev/null || { nok "init $n"; finish; }
    id=$(node_id $n)
    sm $n join "$(sm A admit "$id" --name "Stall $n" --endpoint "tcp://127.0.0.1:${MP[A]}")" >/dev/null \
        || { nok "$n joins"; finish; }
done
B_ID=$(node_id B)
start A || { nok "A starts"; finish; }
start B || { nok "B starts"; finish; }
start C || { nok "C starts"; finish; }
for sku in mug tea jam; do
    call A POST /api/items "{\"sku\":\"$sku\",\"name\":\"$sku\",\"price\":900}" 127.0.0.1 yes
    call A POST /api/stock/add "{\"sku\":\"$sku\",\"qty\":10}" 127.0.0.1 yes
done
check "A stocks mug, tea and jam" '[ "$status" = 201 ]'

# ---- bad input ---------------------------------------------------------------------
call A POST /api/drops "{\"sku\":\"mug\",\"qty\":2,\"starts\":\"$(iso -120)\",\"mode\":\"first_come\"}" 127.0.0.1 yes
check "starts in the past: 400 naming starts" '[ "$status" = 400 ] && [ "$(js .field)" = starts ]'
call A POST /api/drops "{\"sku\":\"mug\",\"qty\":2,\"starts\":\"$(iso 60)\",\"closes\":\"$(iso 30)\",\"mode\":\"raffle\"}" 127.0.0.1 yes
check "starts after closes: 400" '[ "$status" = 400 ] && [ "$(js .field)" = starts ]'
call A POST /api/drops "{\"sku\":\"mug\",\"qty\":11,\"starts\":\"$(iso 60)\",\"mode\":\"first_come\"}" 127.0.0.1 yes
check "qty above the units here: 400 bad_quantity" '[ "$status" = 400 ] && [ "$(js .error)" = bad_quantity ]'
call A POST /api/drops "{\"sku\":\"mug\",\"qty\":2,\"starts\":\"$(iso 60)\",\"mode\":\"lottery\"}" 127.0.0.1 yes
check "unknown mode: 400 naming mode" '[ "$status" = 400 ] && [ "$(js .field)" = mode ]'
call A POST /api/drops "{\"sku\":\"mug\",\"qty\":2,\"starts\":\"tomorrow\",\"mode\":\"first_come\"}" 127.0.0.1 yes
check "a time that is not RFC 3339: 400" '[ "$status" = 400 ]'
call A POST /api/drops "{\"sku\":\"mug\",\"qty\":2,\"starts\":\"$(iso 60)\",\"mode\":\"first_come\"}"
check "creating a drop needs the token: 401" '[ "$status" = 401 ]'

# ---- first-come: nothing before the start ------------------------------------------------
FC_START=$(iso 12)   # time for the checks before the start on a loaded machine
call A POST /api/drops "{\"sku\":\"mug\",\"qty\":6,\"starts\":\"$FC_START\",\"mode\":\"first_come\",\"per_shopper\":2,\"pickup_minutes\":20}" 127.0.0.1 yes
FC=$(js .id)
check "a first-come drop of 6 mugs: 201 with its id, upcoming" \
    '[ "$status" = 201 ] && [[ "$FC" == "$A_ID":* ]] && [ "$(js .phase)" = upcoming ] && [ "$(js .units_left)" = 6 ]'
call A POST /api/sales '{"lines":[{"sku":"mug","qty":5}],"payment":"cash","source":"in_person"}' 127.0.0.1 yes
check "a sale at A before the start needing one of the drop's 6: 409 drop_not_started" '[ "$status" = 409 ] && [ "$(js .error)" = drop_not_started ]'
call A POST /api/sales '{"lines":[{"sku":"mug","qty":4}],"payment":"cash","source":"in_person"}' 127.0.0.1 yes
check "a sale of the 4 mugs beyond the drop before the start: 201 (only the drop's qty is held back)" '[ "$status" = 201 ] && [ "$(units A mug "$A_ID")" = 6 ]'
call A POST /api/sales '{"lines":[{"sku":"mug","qty":1}],"payment":"cash","source":"in_person"}' 127.0.0.1 yes
check "then a sale of 1 (a drop unit) before the start: 409 drop_not_started" '[ "$status" = 409 ] && [ "$(js .error)" = drop_not_started ]'
call A POST /api/holds '{"lines":[{"sku":"mug","qty":1}],"device":"early"}' 127.0.0.9
check "a hold before the start: 409 drop_not_started" '[ "$status" = 409 ] && [ "$(js .error)" = drop_not_started ]'
call A POST /api/stock/move "{\"sku\":\"mug\",\"qty\":2,\"to\":\"$B_ID\"}" 127.0.0.1 yes
check "a move to B before the start: 409 drop_not_started" '[ "$status" = 409 ] && [ "$(js .error)" = drop_not_started ]'
call A POST /api/stock/adjust '{"sku":"mug","qty":-1,"reason":"breakage"}' 127.0.0.1 yes
check "a write-off before the start: 409 drop_not_started" '[ "$status" = 409 ] && [ "$(js .error)" = drop_not_started ]'
for _ in $(seq 1 100); do
    call B GET "/api/drops/$FC"
    [ "$status" = 200 ] && break; sleep 0.1
done
check "B lists A's drop (public, whole market)" '[ "$status" = 200 ] && [ "$(js .drop.sku)" = mug ] && [ -n "$(js .now)" ]'
call B POST /api/sales '{"lines":[{"sku":"mug","qty":1}],"payment":"cash","source":"in_person"}' 127.0.0.1 yes
bstatus=$status; berr=$(js .error)
check "a sale at B needing A's drop units (a units ask): the usual 409, no unit moved" \
    '[ "$bstatus" = 409 ] && [ "$berr" = insufficient_stock ] && [ "$(units A mug "$A_ID")" = 6 ] && [ "$(units A mug "$B_ID")" = 0 ]'

# ---- first-come: caps from the start -----------------------------------------------------
wait_until "$FC_START" || nok "waiting for the start"
call A POST /api/holds '{"lines":[{"sku":"mug","qty":2}],"device":"d1"}' 127.0.0.2
check "from the start: device d1 reserves 2 (per_shopper 2)" '[ "$status" = 201 ]'
call A POST /api/holds '{"lines":[{"sku":"mug","qty":1}],"device":"d1"}' 127.0.0.3
check "d1 a third unit from another address: 409 drop_limit naming device" \
    '[ "$status" = 409 ] && [ "$(js .error)" = drop_limit ] && [ "$(js .limit)" = device ]'
call A POST /api/holds '{"lines":[{"sku":"mug","qty":1}],"device":"d2"}' 127.0.0.2
check "another device from d1's address: 409 drop_limit naming address" \
    '[ "$status" = 409 ] && [ "$(js .error)" = drop_limit ] && [ "$(js .limit)" = address ]'
call A POST /api/holds '{"lines":[{"sku":"mug","qty":2}],"device":"d2"}' 127.0.0.4
check "d2 from its own address: 2 units, 201" '[ "$status" = 201 ]'
call B POST /api/holds "{\"sku\":\"mug\",\"qty\":1,\"at\":\"$A_ID\",\"device\":\"d1\"}" 127.0.0.5
check "d1 forwarding a hold to A through B: the same cap at A, 409 hold_limit (the wire's code)" \
    '[ "$status" = 409 ] && [ "$(js .error)" = hold_limit ]'
call A GET "/api/drops/$FC/ledger"
check "the ledger lists the two holds with time and entry hash, none before the start, none past the cap" \
    '[ "$status" = 200 ] && [ "$(js "[.entries[] | select(.kind == \"hold\")] | length")" = 2 ] && [ "$(js "[.entries[] | select((.hash | length) == 64)] | length")" = 2 ] && [ "$(js .taken)" = 4 ]'
start_ms=$(date -u -d "$FC_START" +%s)000
call A GET "/api/drops/$FC/ledger"
check "every ledger entry's hlc is at or after the start" \
    '[ "$(js "[.entries[] | select((.hlc / 65536 | floor) < $start_ms)] | length")" = 0 ]'
call A GET /api/drops
check "GET /api/drops: the drop live with 2 units left" \
    '[ "$status" = 200 ] && [ "$(js ".drops[] | select(.id == \"$FC\") | .phase")" = live ] && [ "$(js ".drops[] | select(.id == \"$FC\") | .units_left")" = 2 ]'
call A POST /api/sales '{"lines":[{"sku":"mug","qty":1}],"payment":"cash","source":"in_person"}' 127.0.0.1 yes
check "from the start the till sells a mug" '[ "$status" = 201 ]'
call A POST /api/holds '{"lines":[{"sku":"mug","qty":2}],"device":"d3"}' 127.0.0.6
check "2 more when 1 is left: 409 sold_out naming the drop" \
    '[ "$status" = 409 ] && [ "$(js .error)" = sold_out ] && [ "$(js .drop)" = "$FC" ]'
call A POST /api/holds '{"lines":[{"sku":"mug","qty":1}],"device":"d3"}' 127.0.0.6
check "the last unit: 201" '[ "$status" = 201 ]'
call A POST /api/holds '{"lines":[{"sku":"mug","qty":1}],"device":"d4"}' 127.0.0.7
check "after the last unit: 409 sold_out" '[ "$status" = 409 ] && [ "$(js .error)" = sold_out ]'

# ---- a raffle ------------------------------------------------------------------------------
R_START=$(iso 5); R_CLOSE=$(iso 12)
call A POST /api/drops "{\"sku\":\"tea\",\"qty\":2,\"starts\":\"$R_START\",\"closes\":\"$R_CLOSE\",\"mode\":\"raffle\",\"per_shopper\":1}" 127.0.0.1 yes
RF=$(js .id)
check "a raffle of 2 teas: 201 with a commitment" '[ "$status" = 201 ] && [ "$(js .mode)" = raffle ] && [ "$(js ".commitment | length")" = 64 ]'
for _ in $(seq 1 100); do call B GET "/api/drops/$RF"; [ "$status" = 200 ] && break; sleep 0.1; done
call B POST "/api/drops/$RF/entries" '{"device":"e4"}' 127.0.0.14
check "an entry before the start: 409 drop_not_started" '[ "$status" = 409 ] && [ "$(js .error)" = drop_not_started ]'
call A POST /api/sales '{"lines":[{"sku":"tea","qty":9}],"payment":"cash","source":"in_person"}' 127.0.0.1 yes
check "a raffle's units do not sell before the draw (9 of 10 teas, 2 the raffle's): 409 drop_not_started" '[ "$status" = 409 ] && [ "$(js .error)" = drop_not_started ]'
wait_until "$R_START" || nok "waiting for the raffle's start"
for i in 1 2 3; do
    call A POST "/api/drops/$RF/entries" "{\"device\":\"e$i\"}" "127.0.0.1$i"
    [ "$status" = 201 ] || nok "entry e$i at A: $status"
    [ $i = 1 ] && E1_ID=$(js .id)
done
for i in 4 5; do
    call B POST "/api/drops/$RF/entries" "{\"device\":\"e$i\"}" "127.0.0.1$i"
    [ "$status" = 201 ] || nok "entry e$i at B: $status"
done
check "five entries, three at A and two at B: 201" '[ "$status" = 201 ]'
call A POST "/api/drops/$RF/entries" '{"device":"e1"}' 127.0.0.11
check "the same device from the same address again (a retry): 201 with its first entry's id" \
    '[ "$status" = 201 ] && [ -n "$E1_ID" ] && [ "$(js .id)" = "$E1_ID" ] && [ "$(js .entered)" = true ]'
call A POST "/api/drops/$RF/entries" '{"device":"e1"}' 127.0.0.19
check "the same device from another address: 409 already_entered" '[ "$status" = 409 ] && [ "$(js .error)" = already_entered ]'
call A POST "/api/drops/$RF/entries" '{"device":"e9"}' 127.0.0.11
check "the same address with another device: 409 already_entered" '[ "$status" = 409 ] && [ "$(js .error)" = already_entered ]'
call A POST "/api/drops/$RF/draw" '' 127.0.0.1 yes
check "a draw before the close: 409 draw_too_early" '[ "$status" = 409 ] && [ "$(js .error)" = draw_too_early ]'
call A POST "/api/drops/$RF/draw" '' 127.0.0.1
check "a draw needs the token: 401" '[ "$status" = 401 ]'
call A GET "/api/drops/$RF/result?device=e4"
check "before the draw a phone's result: entered, not drawn" '[ "$status" = 200 ] && [ "$(js .drawn)" = false ]'
wait_until "$R_CLOSE" || nok "waiting for the close"
call B POST "/api/drops/$RF/entries" '{"device":"e7"}' 127.0.0.17
check "an entry after the close: 409 drop_closed" '[ "$status" = 409 ] && [ "$(js .error)" = drop_closed ]'
# B's two entries reach A (anti-entropy), then A draws.
for _ in $(seq 1 100); do
    call A GET "/api/drops/$RF"
    [ "$(js .drop.entries)" = 5 ] && break; sleep 0.1
done
check "A has all five entries" '[ "$(js .drop.entries)" = 5 ]'
call A POST "/api/drops/$RF/draw" '' 127.0.0.1 yes
check "the draw at A: 200, 5 counted, 2 winners, verified" \
    '[ "$status" = 200 ] && [ "$(js .counted)" = 5 ] && [ "$(js .winners)" = 2 ] && [ "$(js .verified)" = true ]'
call A POST "/api/drops/$RF/draw" '' 127.0.0.1 yes
check "a second draw: 409 already_drawn" '[ "$status" = 409 ] && [ "$(js .error)" = already_drawn ]'
won=0; codes=0
for i in 1 2 3 4 5; do
    call A GET "/api/drops/$RF/result?device=e$i"
    [ "$(js .counted)" = true ] || nok "e$i counted"
    if [ "$(js .won)" = true ]; then
        won=$((won + 1))
        [[ "$(js .code)" =~ ^[2-9A-HJKMNP-Z]{6}$ ]] && [ -n "$(js .pickup_by)" ] && codes=$((codes + 1))
    fi
done
check "two phones won, each with a pickup code and a time; the others did not" '[ "$won" = 2 ] && [ "$codes" = 2 ]'
call A GET "/api/drops/$RF/result?device=never"
check "a device that never entered: not counted, not won" '[ "$(js .counted)" = false ] && [ "$(js .won)" = false ]'
call A GET "/api/holds?open=1" "" 127.0.0.1 yes
check "the winners' holds are open at A's till" '[ "$(js "[.holds[] | select(.lines[0].sku == \"tea\")] | length")" = 2 ]'

# ---- verify on C, and on a damaged copy ----------------------------------------------------
ok_c=1
for _ in $(seq 1 100); do
    sm C drop verify "$RF" >"$TMP/verify.out" 2>&1 && { ok_c=0; break; }
    sleep 0.1
done
check "drop verify on C (a third node) exits 0" '[ "$ok_c" = 0 ] && grep -q "verified" "$TMP/verify.out"'
SECRET=$(sm C log --origin "$A_ID" | jq -r 'select(.kind == "raffle.draw") | .body.secret')
stop C
cp -r "$TMP/C" "$TMP/Ccopy"
nrep=$(python3 - "$TMP/Ccopy/store/data.mdb" "$SECRET" <<'PY'
import sys
path, secret = sys.argv[1], bytes.fromhex(sys.argv[2])
data = bytearray(open(path, 'rb').read())
changed = bytes([secret[0] ^ 1]) + secret[1:]
n = data.count(secret)
data = data.replace(secret, changed)
open(path, 'wb').write(data)
print(n)
PY
)
"$BIN" --dir "$TMP/Ccopy" drop verify "$RF" >"$TMP/verify2.out" 2>&1
vs=$?
cat "$TMP/verify2.out" | sed 's/^/#   /'
check "drop verify on a copy with one byte of the draw changed exits 1, naming what does not match" \
    '[ "${nrep:-0}" -ge 1 ] && [ "$vs" = 1 ] && grep -q "does not" "$TMP/verify2.out"'
"$BIN" --dir "$TMP/Ccopy" drop verify "zz" >/dev/null 2>&1
us=$?
check "drop verify with a malformed id: usage error (2)" '[ "$us" = 2 ]'
finish
