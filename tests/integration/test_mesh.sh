#!/bin/bash
# Integration test of the mesh: real `stallmesh run` processes on 127.0.0.1,
# each with a mesh listener (tcp://127.0.0.1:PORT), driven and observed over
# their HTTP APIs (curl, jq):
#
#   bash tests/integration/test_mesh.sh build/stallmesh
#
# A market: organiser O creates it, stalls A, B and C init, O admits each
# with its own mesh endpoint in the join token, each joins.  Then:
#   - convergence: an item at O, restocks at A and B, sales, holds and
#     returns at A, B and C (C holds nothing, so its sales need units moved
#     from another stall), a hold made at A for jam B holds ("at": B: held on
#     B's log, sold by B's till with its id; "at" an unknown node 404), a
#     manual stock move: every node ends with the same
#     digest, the market total is added - sold + returned, no location is
#     negative;
#   - multi-hop: a second market in a line A-B-C, no endpoint advertised, so
#     A and C cannot meet: a sale at A reaches C through B, and C never has A
#     as a connected peer; a sale at C of units only A holds is 201 (the
#     units ask travels through B), one for more than the market has left is
#     409, and totals are conserved; a hold at LA "at" LC (not connected to
#     LA: holds are forwarded to direct peers only) is 503 stall_unreachable;
#     one "at" LB while LB's process is paused is 504 stall_timeout after 1 s;
#   - partition and heal: B stopped, A and C sell until they run out (409),
#     B restarted: digests converge, no unit sold twice;
#   - security: a node of another market dialling A is refused (A logs it,
#     never lists it connected, its digest does not move); raw garbage and a
#     plain (NULL mechanism) ZMTP greeting on A's mesh port leave A serving
#     and converging; O revokes B: within 15 s A takes none of B's later
#     entries and A and O show B disconnected;
#   - recovery: A's store moved away (identity kept), A rejoins with its token
#     and restarts with its peers down: its writes are answered 503
#     recovering (still after 4 s); the peers back, its own entries come back
#     and its sale is 201 on the next seq, with no fork; an old copy
#     of A's data directory restored with its peers up fetches what it lacks
#     of its own log before it sells (no fork); with its peers down it sells
#     after a 3 s check; restored and started with --allow-fresh while its
#     peers are down, a sale, the peers back: every node reports the fork
#     (forks non-empty, A quarantined).
#
# Each check prints "ok - ..." or "not ok - ..."; the last line is "N passed,
# M failed"; the exit status is non-zero if any failed.  Every wait is
# bounded (polls every 100 ms, at most 20 s unless said); only the nodes this
# script started are stopped, by their PIDs.  It takes about 35 s.
# Environment: MESH_LOG_LEVEL (the nodes' --log-level, default info),
# KEEP_TMP=1 keeps the data directories and logs, MESH_HOLD=SECONDS keeps
# the nodes running that long at the end if a check failed.

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
for tool in curl jq ss; do
    command -v $tool >/dev/null 2>&1 || { nok "$tool is installed (make deps)"; finish; }
done
[ -x "$BIN" ] || { nok "$BIN is an executable (make)"; finish; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-mesh.XXXXXX") || exit 1
declare -A PID HP MP ARGS
cleanup() {
    stop_nodes
    [ -n "${KEEP_TMP:-}" ] && { echo "# kept $TMP"; return; }
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE
T0=$(date +%s)

# ---- helpers -----------------------------------------------------------------

# sm, node_id, start, stop, url, get and req; every node logs at
# MESH_LOG_LEVEL.
. "$(dirname "$0")/lib.sh"
NODE_ARGS="--log-level ${MESH_LOG_LEVEL:-info}"
digest() { get "$1" /api/state | jq -r '.digest // empty'; }
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$(url "$1")/readyz")" = 200 ]; }
# same_digest NODE...: true if every node answers and all digests are equal.
same_digest() {
    local first d
    first=$(digest "$1")
    [ -n "$first" ] || return 1
    for n in "${@:2}"; do
        d=$(digest "$n")
        [ "$d" = "$first" ] || return 1
    done
}
# units NODE SKU FIELD: an item's field (total, here, held) in NODE's stock.
units() { get "$1" /api/stock | jq -r --arg s "$2" ".items[] | select(.sku == \$s) | .$3"; }
# at NODE SKU LOCATION_ID: units NODE sees at LOCATION_ID (0 if none).
at() {
    get "$1" /api/stock | jq -r --arg s "$2" --arg l "$3" \
        '[.items[] | select(.sku == $s) | .locations[] | select(.node == $l) | .units] | add // 0'
}
has_sku() { [ -n "$(units "$1" "$2" total)" ]; }
# connected NODE PEER_ID: NODE's /api/peers lists PEER_ID as connected.
connected() {
    [ "$(get "$1" /api/peers | jq -r --arg p "$2" '[.peers[] | select(.node == $p and .connected)] | length')" = 1 ]
}
not_connected() { ! connected "$@"; }
# sale NODE SKU QTY [EXTRA JSON FIELDS]: POST /api/sales.
sale() {
    req "$1" POST /api/sales "{\"lines\":[{\"sku\":\"$2\",\"qty\":$3}],\"source\":\"in_person\",\"payment\":\"card\"${4:+,$4}}"
}
# own_sold NODE [SKU]: units (of SKU) of NODE's own sales as NODE lists them
# (GET /api/sales).
own_sold() {
    local since=0 total=0 page
    for _ in $(seq 1 20); do
        req "$1" GET "/api/sales?since=$since&limit=1000"
        page=$(printf '%s' "$body" | jq --arg s "${2:-}" \
            '[.sales[].lines[] | select($s == "" or .sku == $s) | .qty] | add // 0')
        [ "$(printf '%s' "$body" | jq '.sales | length')" = 0 ] && break
        total=$((total + page))
        since=$(printf '%s' "$body" | jq .next)
    done
    echo $total
}
# no_negative NODE: no location of any item below zero in NODE's stock.
no_negative() {
    [ "$(get "$1" /api/stock | jq '[.items[].locations[].units | select(. < 0)] | length')" = 0 ]
}
elapsed() { echo $(( $(date +%s) - T0 )); }

# ---- the market: O organises, A B C join ---------------------------------------
for n in O A B C; do
    sm $n init --name "Node $n" >/dev/null || { nok "init $n"; finish; }
done
sm O market create --name "Mesh test market" --currency GBP >/dev/null || { nok "market create"; finish; }
start O || { nok "the organiser starts" "$(tail -n 5 "$TMP/O.log")"; finish; }
declare -A ID TOKEN_OF
for n in O A B C; do ID[$n]=$(node_id $n); done
for n in A B C; do
    TOKEN_OF[$n]=$(sm O admit "${ID[$n]}" --name "Stall $n" --endpoint "tcp://127.0.0.1:${MP[O]}")
    sm $n join "${TOKEN_OF[$n]}" >/dev/null || { nok "$n joins"; finish; }
done
for n in A B C; do
    start $n || { nok "stall $n starts" "$(tail -n 5 "$TMP/$n.log")"; finish; }
done
ok "an organiser and three stalls start, each with a mesh listener on 127.0.0.1"
# full_mesh NODE...: each lists every other as connected.
full_mesh() {
    for x in "$@"; do for y in "$@"; do
        [ "$x" = "$y" ] || connected "$x" "${ID[$y]}" || return 1
    done; done
}
check "the stalls find each other through the organiser (PEERS) and all connect" \
    'until_true 20 full_mesh O A B C'

# ---- convergence ---------------------------------------------------------------
added=0; sold=0; returned=0
req O POST /api/items '{"sku":"jam","name":"Plum jam","price":450}'
[ "$code" = 201 ] || nok "the organiser adds an item" "$code $body"
req O POST /api/items '{"sku":"tea","name":"Green tea","price":300}'
check "the organiser's items reach every stall" \
    'until_true 20 has_sku A jam && until_true 20 has_sku B jam && until_true 20 has_sku C tea'
ingested() { get "$1" /metrics | awk '$1 == "stallmesh_entries_ingested_total" { print $2 }'; }
check "a stall's /metrics counts the peers' entries it stored" '[ "$(ingested C)" -ge 2 ]' \
    "$(ingested C)"
req A POST /api/stock/add '{"sku":"jam","qty":20}'; [ "$code" = 201 ] && added=$((added + 20))
req B POST /api/stock/add '{"sku":"jam","qty":15}'; [ "$code" = 201 ] && added=$((added + 15))
check "stalls A and B restock (201 each)" '[ "$added" = 35 ]' "$code $body"

codes=""
for n in A B A B; do
    sale $n jam 2
    codes="$codes $code"
    [ "$code" = 201 ] && sold=$((sold + 2))
done
check "sales at A and B from their own units are 201" '[ "$codes" = " 201 201 201 201" ]' "$codes"
sale A jam 1
SALE_A=$(printf '%s' "$body" | jq -r .id)
[ "$code" = 201 ] && sold=$((sold + 1))
req A POST /api/returns "{\"sale\":\"$SALE_A\",\"lines\":[{\"sku\":\"jam\",\"qty\":1}],\"reason\":\"dented lid\"}"
check "a return at A is 201" '[ "$code" = 201 ]' "$code $body"
[ "$code" = 201 ] && returned=$((returned + 1))

# C holds no jam: each sale there asks the stalls that hold some to move units.
until_true 20 same_digest A B C
c_here=$(units C jam here)
sale C jam 3
c_code=$code
[ "$code" = 201 ] && sold=$((sold + 3))
check "C holds no jam, and its sale of 3 is 201 with units moved from another stall" \
    '[ "$c_here" = 0 ] && [ "$c_code" = 201 ]' "here before: $c_here; $c_code $body"
c_ok=0
for _ in 1 2 3; do
    sale C jam 2
    [ "$code" = 201 ] && { sold=$((sold + 2)); c_ok=$((c_ok + 1)); }
done
check "three more sales at C that each need units moved are 201" '[ "$c_ok" = 3 ]' "$code $body"
SALE_C=
sale C jam 1
[ "$code" = 201 ] && { sold=$((sold + 1)); SALE_C=$(printf '%s' "$body" | jq -r .id); }
req C POST /api/returns "{\"sale\":\"$SALE_C\",\"lines\":[{\"sku\":\"jam\",\"qty\":1}],\"reason\":\"changed mind\"}"
check "a return at C is 201" '[ "$code" = 201 ]' "$code $body"
[ "$code" = 201 ] && returned=$((returned + 1))

# Holds: one at B completed by its sale; one at C for more than C holds is
# refused and moves no units to C (a hold never asks peers: only sales do).
req B POST /api/holds '{"sku":"jam","qty":2}'
HOLD_B=$(printf '%s' "$body" | jq -r .id); hb=$code
sale B jam 2 "\"hold\":\"$HOLD_B\""
check "a hold at B is 201 and the sale completing it is 201" '[ "$hb" = 201 ] && [ "$code" = 201 ]' "$hb $code $body"
[ "$code" = 201 ] && sold=$((sold + 2))
c_here=$(units C jam here)
req C POST /api/holds "{\"sku\":\"jam\",\"qty\":$((c_here + 5))}"
hc=$code
sleep 1
check "a hold at C for more jam than C holds is 409 and moves no units to C" \
    '[ "$hc" = 409 ] && [ "$(units C jam here)" = "$c_here" ]' "$hc $body; C had $c_here, has $(units C jam here)"

# Hold forwarding: a shopper on A's page holds jam that B holds; B appends
# the hold on its own log, A answers with B's id, and B's till sells it.
until_true 20 same_digest A B C
b_here=$(units B jam here)
req A POST /api/holds "{\"sku\":\"jam\",\"qty\":2,\"at\":\"${ID[B]}\"}"
HOLD_AB=$(printf '%s' "$body" | jq -r .id); hab=$code
hab_at=$(printf '%s' "$body" | jq -r .at)
check "a hold at A for jam B holds (\"at\": B) is 201 with an id of B's log" \
    '[ "$hab" = 201 ] && [ "${HOLD_AB%%:*}" = "${ID[B]}" ] && [ "$hab_at" = "${ID[B]}" ]' \
    "B had $b_here; $hab $body"
check "B's /api/stock shows the 2 units held, no longer here" \
    '[ "$(units B jam held)" = 2 ] && [ "$(units B jam here)" = $((b_here - 2)) ]' \
    "held $(units B jam held), here $(units B jam here) (was $b_here)"
sale B jam 2 "\"hold\":\"$HOLD_AB\""
check "B's till sells with the forwarded hold's id (201)" '[ "$code" = 201 ]' "$code $body"
[ "$code" = 201 ] && sold=$((sold + 2))
# B gets those 2 back, so the checks below (the revocation's) see B's stock
# as they would without this hold.
req B POST /api/stock/add '{"sku":"jam","qty":2}'; [ "$code" = 201 ] && added=$((added + 2))
req A POST /api/holds "{\"sku\":\"jam\",\"qty\":1,\"at\":\"$(printf '7%.0s' $(seq 1 64))\"}"
hu=$code; hu_err=$(printf '%s' "$body" | jq -r .error)
req A POST /api/holds "{\"sku\":\"jam\",\"qty\":500,\"at\":\"${ID[B]}\"}"
check "a hold \"at\" an unknown node is 404 unknown_stall; one for more than B has is 409" \
    '[ "$hu" = 404 ] && [ "$hu_err" = unknown_stall ] && [ "$code" = 409 ]' "$hu $hu_err; $code $body"

b_here=$(units B jam here)
req B POST /api/stock/move "{\"sku\":\"jam\",\"qty\":2,\"to\":\"${ID[A]}\"}"
check "a manual stock move from B to A is 201" '[ "$code" = 201 ] && [ "$b_here" -ge 2 ]' "here $b_here; $code $body"

check "all four digests converge" 'until_true 20 same_digest O A B C' \
    "$(for n in O A B C; do echo "$n $(digest $n)"; done)"
expect=$((added - sold + returned))
totals=$(for n in O A B C; do units $n jam total; done | tr '\n' ' ')
check "every node's market total of jam is added - sold + returned ($added - $sold + $returned)" \
    '[ "$totals" = "$expect $expect $expect $expect " ]' "totals: $totals; expected $expect"
check "no location is negative and nothing is held, at every node" \
    'no_negative O && no_negative A && no_negative B && no_negative C && [ "$(units O jam held)" = 0 ]'
sold_ledger=$(( $(own_sold A) + $(own_sold B) + $(own_sold C) ))
check "the stalls' own sales lists add up to the units sold ($sold)" '[ "$sold_ledger" = "$sold" ]' \
    "listed $sold_ledger"
echo "# convergence done at $(elapsed) s"

# ---- multi-hop: a line LA - LB - LC ---------------------------------------------
# LB organises; no join token names an endpoint and nobody advertises one, so
# LA and LC only know LB (--peer) and PEERS cannot introduce them.
for n in LA LB LC; do sm $n init --name "Line $n" >/dev/null; ID[$n]=$(node_id $n); done
sm LB market create --name "Line market" --currency GBP >/dev/null
for n in LA LC; do
    sm $n join "$(sm LB admit "${ID[$n]}" --name "Line stall $n")" >/dev/null \
        || nok "$n joins the line market"
done
line_up=yes
start LB --advertise none || line_up=no
for n in LA LC; do
    start $n --advertise none --peer "${ID[LB]}@tcp://127.0.0.1:${MP[LB]}" || line_up=no
done
check "a line of three nodes starts with --advertise none" '[ "$line_up" = yes ]' \
    "$(tail -n 3 "$TMP/LA.log" "$TMP/LB.log" "$TMP/LC.log")"
check "LA and LC each connect to LB" \
    'until_true 20 connected LA "${ID[LB]}" && until_true 20 connected LC "${ID[LB]}"'
req LB POST /api/items '{"sku":"mug","name":"Blue mug","price":1250}'
until_true 20 has_sku LA mug
# LA checks its own log with LB first (503 recovering while it gathers
# peers' HEADS, up to a few seconds): the restock is retried, bounded.
for _ in $(seq 1 50); do
    req LA POST /api/stock/add '{"sku":"mug","qty":10}'
    [ "$code" = 503 ] || break
    sleep 0.2
done
la_add=$code
sale LA mug 3
la_sale=$code
check "LA restocks and sells (201, 201)" '[ "$la_add" = 201 ] && [ "$la_sale" = 201 ]' "$la_add $la_sale"
# Watch LC's peers the whole time: LA must never be connected to it.
seen_la=no
# relayed: LC sees LA's 7 units (10 added, 3 sold); notes if LA ever connected.
relayed() {
    connected LC "${ID[LA]}" && seen_la=yes
    [ "$(at LC mug "${ID[LA]}")" = 7 ] && [ "$(units LC mug total)" = 7 ]
}
check "the sale at LA reaches LC's /api/stock through LB" 'until_true 20 relayed' \
    "LC sees $(at LC mug "${ID[LA]}") at LA"
# Past a HEADS interval and a peer tick, in case PEERS would introduce them.
for _ in $(seq 1 60); do connected LC "${ID[LA]}" && seen_la=yes; sleep 0.1; done
check "LC's /api/peers never lists LA as connected" '[ "$seen_la" = no ]' \
    "$(get LC /api/peers)"
check "the line's three digests are equal" 'until_true 20 same_digest LA LB LC'
# LC holds no mugs and never meets LA: its sale asks LB, which holds none
# either and asks LA on LC's behalf; LA's stock.move to LC comes back
# through LB within the sale's wait.
sale LC mug 4
lc_sale="$code $body"
check "a sale of 4 at LC, the units held only by LA two hops away, is 201" \
    '[ "${lc_sale%% *}" = 201 ]' "$lc_sale"
sale LC mug 5
lc_over="$code $body"
check "a sale of 5 more at LC (3 left in the whole market) is 409: no oversell" \
    '[ "${lc_over%% *}" = 409 ]' "$lc_over"
# line_conserved: equal digests, and every node sees 10 added - 7 sold = 3
# mugs in the market, none at a negative location, LC's own sales 4.
line_conserved() {
    same_digest LA LB LC || return 1
    for n in LA LB LC; do
        [ "$(units $n mug total)" = 3 ] && no_negative $n || return 1
    done
    [ "$(own_sold LC mug)" = 4 ]
}
check "the line converges with units conserved (3 left everywhere, none negative)" \
    'until_true 20 line_conserved' \
    "$(for n in LA LB LC; do echo "$n: $(units $n mug total) total, $(digest $n)"; done)"
req LA POST /api/holds "{\"sku\":\"mug\",\"qty\":1,\"at\":\"${ID[LC]}\"}"
check "a hold at LA \"at\" LC, two hops away, is 503 stall_unreachable" \
    '[ "$code" = 503 ] && [ "$(printf "%s" "$body" | jq -r .error)" = stall_unreachable ]' \
    "$code $body"
# A stall that stops answering (its process paused; the connection stays
# up until the heartbeat's 5 s): a hold forwarded to it is 504 after the
# 1 s wait, and the error says the hold may exist there.
kill -STOP "${PID[LB]}"
t0=$(date +%s%N)
req LA POST /api/holds "{\"sku\":\"mug\",\"qty\":1,\"at\":\"${ID[LB]}\"}"
waited=$(( ($(date +%s%N) - t0) / 1000000 ))
kill -CONT "${PID[LB]}"
check "a hold at LA \"at\" LB while LB is paused is 504 stall_timeout after ~1 s (${waited} ms), saying it may exist there" \
    '[ "$code" = 504 ] && [ "$(printf "%s" "$body" | jq -r .error)" = stall_timeout ] && printf "%s" "$body" | grep -q "may exist" && [ "$waited" -ge 900 ] && [ "$waited" -lt 4000 ]' \
    "$code after $waited ms: $body"
check "LB serves again once resumed" 'until_true 10 ready LB'
for n in LA LB LC; do stop $n; done
echo "# multi-hop done at $(elapsed) s"


# ---- partition and heal --------------------------------------------------------
# Fresh stock of tea at A, B and C; B is stopped; A and C sell one at a time
# until both are out (they may move units between them, never B's).
t_added=0; t_sold=0
for pair in A:5 B:8 C:4; do
    req "${pair%%:*}" POST /api/stock/add "{\"sku\":\"tea\",\"qty\":${pair##*:}}"
    [ "$code" = 201 ] && t_added=$((t_added + ${pair##*:}))
done
check "A, B and C restock tea and the mesh converges" \
    '[ "$t_added" = 17 ] && until_true 20 same_digest O A B C'
stop B
check "B stops on SIGTERM" '[ -z "${PID[B]}" ]'
declare -A out_of_units=([A]=0 [C]=0)
for _ in $(seq 1 40); do
    for n in A C; do
        [ "${out_of_units[$n]}" -ge 2 ] && continue
        sale $n tea 1
        case $code in
        201) t_sold=$((t_sold + 1)); out_of_units[$n]=0 ;;
        409) out_of_units[$n]=$((out_of_units[$n] + 1)) ;;
        *) echo "#   unexpected answer at $n: $code $body" ;;
        esac
    done
    [ "${out_of_units[A]}" -ge 2 ] && [ "${out_of_units[C]}" -ge 2 ] && break
done
check "with B down, A and C sell what they hold (9 units) and then get 409" \
    '[ "$t_sold" = 9 ] && [ "${out_of_units[A]}" -ge 2 ] && [ "${out_of_units[C]}" -ge 2 ]' \
    "sold $t_sold; 409s: A ${out_of_units[A]}, C ${out_of_units[C]}"
start B
check "B restarts and the four digests converge" 'until_true 20 same_digest O A B C' \
    "$(for n in O A B C; do echo "$n $(digest $n)"; done)"
t_listed=$(( $(own_sold A tea) + $(own_sold B tea) + $(own_sold C tea) ))
t_total=$(units O tea total)
check "tea sold never exceeds tea added, and the total is added - sold ($t_added - $t_sold)" \
    '[ "$t_listed" = "$t_sold" ] && [ "$t_sold" -le "$t_added" ] && [ "$t_total" = $((t_added - t_sold)) ] && [ "$(at O tea "${ID[B]}")" = 8 ]' \
    "listed $t_listed, total $t_total, B holds $(at O tea "${ID[B]}")"
check "no location is negative after the heal" 'no_negative O && no_negative A && no_negative B && no_negative C'
echo "# partition done at $(elapsed) s"

# ---- security ------------------------------------------------------------------
# X: a node of another market (its own), which admits A there so that it
# dials A.  A's ZAP handler refuses X's key.
sm X init --name "Outsider" >/dev/null && sm X market create --name "Other market" >/dev/null
ID[X]=$(node_id X)
sm X admit "${ID[A]}" --name "Stall A" >/dev/null
a_before=$(digest A)
refusals_before=$(grep -c "refused a connection" "$TMP/A.log")
start X --peer "${ID[A]}@tcp://127.0.0.1:${MP[A]}" || nok "the outsider starts"
refused() { [ "$(grep -c "refused a connection" "$TMP/A.log")" -gt "$refusals_before" ]; }
check "A logs a refusal of the outsider's connection" 'until_true 15 refused' \
    "$(tail -n 5 "$TMP/A.log")"
seen_x=no
for _ in $(seq 1 20); do connected A "${ID[X]}" && seen_x=yes; sleep 0.1; done
check "A's /api/peers never lists the outsider as connected" '[ "$seen_x" = no ]' "$(get A /api/peers)"
check "A's digest did not change" '[ "$(digest A)" = "$a_before" ]'
stop X

for _ in 1 2 3 4 5; do
    head -c 3000 /dev/urandom 2>/dev/null | timeout 2 bash -c "cat >/dev/tcp/127.0.0.1/${MP[A]}" 2>/dev/null
done
# A plain ZMTP 3.0 greeting, mechanism NULL (64 bytes), a NULL READY command
# and a message frame: A's listener speaks CURVE only and must hang up.
zmtp_null() {
    printf '\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f\x03\x00NULL'
    head -c 16 /dev/zero; printf '\x00'; head -c 31 /dev/zero
    printf '\x04\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER'
    printf '\x00\x05hello'
}
zmtp_null >"$TMP/greeting"
greeting_len=$(head -c 64 "$TMP/greeting" | wc -c)
(
    exec 3<>"/dev/tcp/127.0.0.1/${MP[A]}" || exit 2
    cat "$TMP/greeting" >&3
    timeout 3 cat <&3 >"$TMP/zmtp.reply"
) 2>/dev/null
hangup=$?
# cat ends at A's hang-up (0 at a close, 1 at a reset); 124 if A kept it open.
check "a NULL-mechanism ZMTP greeting ($greeting_len bytes) gets A's ZMTP signature, then a hang-up" \
    '[ "$greeting_len" = 64 ] && [ "$hangup" != 124 ] && [ "$(head -c 10 "$TMP/zmtp.reply" | od -An -tx1 | tr -d " \n")" = ff00000000000000017f ]' \
    "status $hangup, reply $(od -An -tx1 "$TMP/zmtp.reply" | head -n 2)"
req A GET /readyz
a_ready=$code
sale A jam 1
a_sale=$code
[ "$a_sale" = 201 ] && sold=$((sold + 1))
check "after garbage and a plain ZMTP greeting A still serves and sells" \
    '[ "$a_ready" = 200 ] && [ "$a_sale" = 201 ]' "$a_ready $a_sale $body"
check "and the mesh converges on A's sale" 'until_true 20 same_digest O A B C'

# Revocation: O revokes B while everything runs; B keeps selling.
b_units_at_a=$(at A jam "${ID[B]}")
revoke=$(sm O revoke "${ID[B]}" --json)
upto=$(printf '%s' "$revoke" | jq -r .upto_seq)
check "O revokes B (upto_seq $upto)" '[ -n "$upto" ] && [ "$upto" != null ]' "$revoke"
b_sales=0
for _ in 1 2 3; do sale B jam 1; [ "$code" = 201 ] && b_sales=$((b_sales + 1)); done
echo "# B's sales after the revoke: $b_sales answered 201"
b_cut_off() {
    not_connected A "${ID[B]}" && not_connected O "${ID[B]}" \
        && [ "$(get A /api/state | jq -r --arg b "${ID[B]}" '.heads[$b].applied')" -le "$upto" ]
}
check "within 15 s A and O show B as not connected" 'until_true 15 b_cut_off' \
    "A: $(get A /api/peers | jq -c '.peers[] | {node: .node[0:12], connected}')"
sleep 1
for _ in 1 2; do sale B jam 1; [ "$code" = 201 ] && b_sales=$((b_sales + 1)); done
stay_off=yes
for _ in $(seq 1 20); do
    connected A "${ID[B]}" && stay_off=no
    connected O "${ID[B]}" && stay_off=no
    sleep 0.1
done
check "and B stays disconnected from A and O" '[ "$stay_off" = yes ]'
check "O listens again after recycling its listener for the revocation" \
    'grep -q "listening again" "$TMP/O.log" && ! grep -q "cannot listen" "$TMP/O.log"' \
    "$(grep "listen" "$TMP/O.log")"
check "A accepts none of B's entries after the revoke: B's units and applied head at A stay put" \
    '[ "$(at A jam "${ID[B]}")" = "$b_units_at_a" ] && [ "$(get A /api/state | jq -r --arg b "${ID[B]}" ".heads[\$b].applied")" -le "$upto" ]' \
    "B's units at A: $(at A jam "${ID[B]}") (before $b_units_at_a); B sold $b_sales after the revoke"
stop B
echo "# security done at $(elapsed) s"

# ---- recovery ------------------------------------------------------------------
# From here req returns a node's first answer: these checks look at the 503
# recovering answers themselves (before, req retried them for up to 10 s).
RECOVERING_WAIT=0
# A's disk dies: its store is moved away, the identity kept; A joins again
# with its token (a new, empty store) and restarts.
# Its peers are down at first: a wiped store waits for them, however long.
a_head=$(get A /api/state | jq -r --arg a "${ID[A]}" '.heads[$a].seq')
stop A; stop O; stop C
mv "$TMP/A/store" "$TMP/A-store-lost"
sm A join "${TOKEN_OF[A]}" >/dev/null
check "A, its store gone, joins again from its token" '[ $? = 0 ] && [ -d "$TMP/A/store" ]'
start A || nok "A restarts on an empty store" "$(tail -n 5 "$TMP/A.log")"
req A POST /api/items '{"sku":"cup","name":"Tea cup","price":800}'
first=$code
sleep 4
req A POST /api/items '{"sku":"cup","name":"Tea cup","price":800}'
check "A's writes on the empty store, its peers down, are 503 recovering, also after 4 s" \
    '[ "$first" = 503 ] && [ "$code" = 503 ] && [ "$(printf "%s" "$body" | jq -r .error)" = recovering ]' \
    "$first; $code $body"
start O || nok "O restarts"
start C || nok "C restarts"
codes=""
for _ in $(seq 1 200); do
    sale A jam 1
    case $codes in *" $code") ;; *) codes="$codes $code" ;; esac
    [ "$code" = 201 ] && { sold=$((sold + 1)); break; }
    case $code in 503) [ "$(printf '%s' "$body" | jq -r .error)" = recovering ] || break ;;
    404) ;; *) break ;; esac
    sleep 0.1
done
a_after=$(get A /api/state | jq -r --arg a "${ID[A]}" '.heads[$a].seq')
check "once its peers are back A's sale is 201 on seq $((a_head + 1)), after its own entries" \
    '[ "${codes##* }" = 201 ] && [ "$(printf "%s" "$body" | jq -r .id)" = "${ID[A]}:$((a_head + 1))" ] && [ "$a_after" -gt "$a_head" ]' \
    "answers:$codes; A's head $a_head before, $a_after after; $body"
no_forks() { [ "$(get "$1" /api/state | jq '(.forks | length) + (.quarantined | length)')" = 0 ]; }
check "the nodes converge with no fork anywhere" \
    'until_true 20 same_digest O A C && no_forks O && no_forks A && no_forks C'

# An old copy of A's data directory comes back (a backup restored, a card
# swapped back): A sold on after the copy was taken.
stop A
cp -a "$TMP/A" "$TMP/A-old"
cp -a "$TMP/A" "$TMP/A-old2"
cp -a "$TMP/A" "$TMP/A-old3"
start A || nok "A restarts"
sold_after=0
for _ in $(seq 1 60); do
    sale A jam 1
    [ "$code" = 201 ] && { sold=$((sold + 1)); sold_after=$((sold_after + 1)); }
    [ "$sold_after" = 2 ] && break
    [ "$code" = 503 ] || [ "$code" = 201 ] || break
    sleep 0.1
done
check "A sells after its directory was copied, and the mesh has those sales" \
    '[ "$code" = 201 ] && until_true 20 same_digest O A C'
new_head=$(get A /api/state | jq -r --arg a "${ID[A]}" '.heads[$a].seq')
stop A

# With its peers up, the old copy checks its head with them first: it
# fetches the entries it lacks of its own log, then sells on after them.
rm -rf "$TMP/A"
mv "$TMP/A-old" "$TMP/A"
start A || nok "the old copy starts" "$(tail -n 5 "$TMP/A.log")"
codes=""
for _ in $(seq 1 100); do
    sale A jam 1
    case $codes in *" $code") ;; *) codes="$codes $code" ;; esac
    [ "$code" = 201 ] && { sold=$((sold + 1)); break; }
    [ "$code" = 503 ] || break
    sleep 0.1
done
check "the old copy, its peers up, sells seq $((new_head + 1)) after the entries it lacked (no fork)" \
    '[ "$code" = 201 ] && [ "$(printf "%s" "$body" | jq -r .id)" = "${ID[A]}:$((new_head + 1))" ]' \
    "answers:$codes; $body"
check "and the mesh converges with no fork anywhere" \
    'until_true 20 same_digest O A C && no_forks O && no_forks A && no_forks C'
stop A; stop O; stop C

# With no peer answering, an old copy waits SM_OWN_CHECK_MS (3 s) for one,
# then sells (a stall alone must sell); its peers would report the fork.
rm -rf "$TMP/A"
mv "$TMP/A-old3" "$TMP/A"
start A || nok "another old copy starts, its peers down" "$(tail -n 5 "$TMP/A.log")"
t_start=$(date +%s%N)
sale A jam 1
first=$code
for _ in $(seq 1 80); do
    [ "$code" = 201 ] && break
    sleep 0.1
    sale A jam 1
done
waited=$(( ($(date +%s%N) - t_start) / 1000000 ))
check "with no peer answering it answers 503 recovering at once, 201 after the check's 3 s (${waited} ms)" \
    '[ "$first" = 503 ] && [ "$code" = 201 ] && [ "$waited" -ge 2500 ] && grep -q "no peer answered" "$TMP/A.log"' \
    "first $first, last $code after $waited ms"
stop A

# The old copy restored and started with --allow-fresh ("this is the newest
# copy") while its peers are out of reach sells at once, on a seq the mesh
# already has: a fork, detected and reported everywhere.
rm -rf "$TMP/A"
mv "$TMP/A-old2" "$TMP/A"
start A --allow-fresh || nok "the old copy starts with --allow-fresh" "$(tail -n 5 "$TMP/A.log")"
old_head=$(get A /api/state | jq -r --arg a "${ID[A]}" '.heads[$a].seq')
sale A jam 1
check "the restored old copy sells (201) seq $((old_head + 1)), which the mesh already has" \
    '[ "$code" = 201 ] && [ "$(printf "%s" "$body" | jq -r .id)" = "${ID[A]}:$((old_head + 1))" ]' "$code $body"
start O || nok "O restarts"
start C || nok "C restarts"
forked() {
    get "$1" /api/state | jq -e --arg a "${ID[A]}" \
        '(.forks | map(select(.origin == $a)) | length > 0) and (.quarantined | index($a) != null)' >/dev/null
}
for n in O C A; do
    check "$n reports A's fork (forks and quarantined) within 20 s" "until_true 20 forked $n" \
        "$(get $n /api/state | jq -c '{forks, quarantined}')"
done
echo "# recovery done at $(elapsed) s"
# MESH_HOLD=SECONDS keeps the nodes running at the end if a check failed.
[ -n "${MESH_HOLD:-}" ] && [ "$fail" -gt 0 ] && { echo "# holding: $TMP"; sleep "$MESH_HOLD"; }

finish
