#!/bin/bash
# Integration test of a livestream set-up: Debian's nginx, started by this
# script on loopback with the repository's deploy/nginx/stallmesh.conf
# (addresses, port and cache directory substituted), in front of a
# read-only mirror (`run --mirror`, admitted with the relay role) that
# follows a stall over the mesh:
#
#   bash tests/integration/test_nginx.sh build/stallmesh build/tools/wsprobe
#
# Checks (each prints "ok - ..." or "not ok - ..."; the last line is "N
# passed, M failed"; the exit status is non-zero if any failed):
#   - --mirror is refused for a node whose roster role is not relay;
#   - ETag and 304 through nginx; 1,000 GET /api/stock through nginx within
#     about a second raise the mirror's request count (/metrics) by at most a
#     few (the micro-cache);
#   - a sale at the stall reaches a websocket viewer connected through nginx;
#   - a hold made through nginx at the mirror lands on the stall's log, and
#     holds are rate-limited per viewer address (curl bound to 127.0.0.2 and
#     127.0.0.3: nginx passes each in X-Forwarded-For, the mirror trusts it);
#   - a reservation of several lines through nginx and the mirror is held
#     whole at the stall (HOLD_ASK carries its lines);
#   - a raffle entry made through nginx at the mirror is forwarded to the
#     drop's stall (ENTRY_ASK), lands on its log as a raffle.entry and is
#     counted by its draw; the same device again, or another from the same
#     address, is 409 already_entered (the same device and address again, also
#     after the stall restarts, is 201 with its first entry); the mirror rate-limits entries per
#     address (429), refuses a draw (403 read_only), and answers 503
#     stall_unreachable while the stall is down;
#   - the mirror refuses every write route with 403 read_only, holds no
#     units, and converges with the market after being stopped while the
#     stall sold;
#   - a flood of websocket viewers through nginx leaves the stall's till
#     selling (its sale p99 is printed).
# Every wait is bounded; only processes this script started are stopped, by
# their PIDs.  KEEP_TMP=1 keeps the directories and logs.

BIN=${1:-build/stallmesh}
WSPROBE=${2:-build/tools/wsprobe}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
case $WSPROBE in /*) ;; *) WSPROBE=$(pwd)/$WSPROBE ;; esac
TOOLS=$(dirname "$WSPROBE")
REPO=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"     # checks, free_port, until_true, the nodes: start, stop, req

pass=0
fail=0
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { nok "nginx is installed (deploy/deps.sh: nginx-light)"; finish; }
for tool in curl jq ss; do
    command -v $tool >/dev/null 2>&1 || { nok "$tool is installed (make deps)"; finish; }
done
[ -x "$BIN" ] && [ -x "$WSPROBE" ] && [ -x "$TOOLS/httpload" ] \
    || { nok "$BIN, $WSPROBE and $TOOLS/httpload are built (make all tools)"; finish; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-nginx.XXXXXX") || exit 1
declare -A PID HP MP ARGS
NGINX_PID=
cleanup() {
    [ -n "$NGINX_PID" ] && kill -TERM "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    stop_nodes
    [ -n "${KEEP_TMP:-}" ] && { echo "# kept $TMP"; return; }
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE

digest() { get "$1" /api/state | jq -r '.digest // empty'; }
same_digest() { local a; a=$(digest "$1"); [ -n "$a" ] && [ "$a" = "$(digest "$2")" ]; }
units() { get "$1" /api/stock | jq -r --arg s "$2" ".items[] | select(.sku == \$s) | .$3"; }
has_sku() { [ -n "$(units "$1" "$2" total)" ]; }
connected() {
    [ "$(get "$1" /api/peers | jq -r --arg p "$2" '[.peers[] | select(.node == $p and .connected)] | length')" = 1 ]
}
sale() {
    req "$1" POST /api/sales "{\"lines\":[{\"sku\":\"$2\",\"qty\":$3}],\"source\":\"in_person\",\"payment\":\"card\"}"
}
requests_total() {
    get "$1" /metrics | awk '/^stallmesh_http_requests_total/ { s += $2 } END { print s + 0 }'
}

# ---- the market: O organises, A is a stall, M a relay running --mirror -------
for n in O A M; do
    sm $n init --name "Node $n" >/dev/null || { nok "init $n"; finish; }
done
sm O market create --name "Livestream market" --currency GBP >/dev/null || { nok "market create"; finish; }
start O || { nok "the organiser starts" "$(tail -n 5 "$TMP/O.log")"; finish; }
declare -A ID
for n in O A M; do ID[$n]=$(node_id $n); done
sm A join "$(sm O admit "${ID[A]}" --name "Stall A" --endpoint "tcp://127.0.0.1:${MP[O]}")" >/dev/null \
    || { nok "A joins"; finish; }
start A || { nok "stall A starts" "$(tail -n 5 "$TMP/A.log")"; finish; }

# M first admitted as a stall: --mirror refused with a clear message.
sm M join "$(sm O admit "${ID[M]}" --name "Mirror" --role stall --endpoint "tcp://127.0.0.1:${MP[O]}")" \
    >/dev/null || { nok "M joins"; finish; }
sm M run --mirror --http "127.0.0.1:$(free_port)" --listen none >"$TMP/M.refused" 2>&1
rc=$?
check "run --mirror is refused when the node's roster role is not relay" \
    '[ $rc -ne 0 ] && grep -q "relay" "$TMP/M.refused"' "rc=$rc $(cat "$TMP/M.refused")"
rm -rf "$TMP/M"
sm M init --name "Mirror" >/dev/null
ID[M]=$(node_id M)
sm M join "$(sm O admit "${ID[M]}" --name "Mirror" --role relay --endpoint "tcp://127.0.0.1:${MP[O]}")" \
    >/dev/null || { nok "M joins as a relay"; finish; }
# The mirror trusts nginx (127.0.0.1) for X-Forwarded-For; 3 holds a minute
# per viewer address.
printf '[http]\ntrusted_proxies = 127.0.0.1\n[holds]\nper_min = 3\n[node]\nmirror = true\n' \
    >"$TMP/M/stallmesh.conf"
start M --peer "${ID[A]}@tcp://127.0.0.1:${MP[A]}" || { nok "the mirror starts" "$(tail -n 5 "$TMP/M.log")"; finish; }
check "the mirror connects to the stall over the mesh" 'until_true 20 connected M "${ID[A]}"' \
    "$(tail -n 5 "$TMP/M.log")"

req O POST /api/items '{"sku":"jam","name":"Plum jam","price":450}'
req A POST /api/stock/add '{"sku":"jam","qty":40}'
req O POST /api/items '{"sku":"honey","name":"Heather honey","price":800}'
req A POST /api/stock/add '{"sku":"honey","qty":5}'
check "the stall restocks (201)" '[ "$code" = 201 ]' "$code $body"
check "the stall's stock reaches the mirror" \
    'until_true 20 has_sku M jam && until_true 20 same_digest A M'

# ---- nginx with the repository's configuration ---------------------------------
NGP=$(free_port)
NGI=$(free_port)        # the configuration's internal compressing server
mkdir -p "$TMP/nginx/logs" "$TMP/nginx/cache" "$TMP/nginx/conf"
sed -e "s|server 127.0.0.1:8080;|server 127.0.0.1:${HP[M]};|" \
    -e "s|listen 80;|listen 127.0.0.1:$NGP;|" \
    -e "s|127.0.0.1:8079|127.0.0.1:$NGI|g" \
    -e "s|/var/cache/nginx/stallmesh|$TMP/nginx/cache|" \
    "$REPO/deploy/nginx/stallmesh.conf" >"$TMP/nginx/conf/stallmesh.conf"
# A stock nginx.conf's essentials, non-daemon, with this directory as prefix.
# As root, workers run as root: the stock "nobody" cannot enter $TMP (0700).
NGUSER=""
[ "$(id -u)" = 0 ] && NGUSER="user root;"
cat >"$TMP/nginx/conf/nginx.conf" <<NGINX
$NGUSER
daemon off;
master_process on;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    include $TMP/nginx/conf/stallmesh.conf;
}
NGINX
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/conf/nginx.conf" -t >"$TMP/nginx/t.log" 2>&1
check "nginx accepts the repository's configuration (nginx -t)" '[ $? = 0 ]' "$(cat "$TMP/nginx/t.log")"
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/conf/nginx.conf" >"$TMP/nginx/out.log" 2>&1 &
NGINX_PID=$!
NG="http://127.0.0.1:$NGP"
until_true 10 curl -s -o /dev/null --max-time 1 "$NG/api/stock" \
    || { nok "nginx starts" "$(cat "$TMP/nginx/logs/error.log")"; finish; }

# ---- ETag and 304 through nginx ------------------------------------------------
etag=$(curl -s -D - -o /dev/null --max-time 5 "$NG/api/stock" | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" { print $2 }')
check "GET /api/stock through nginx carries the node's ETag" '[ -n "$etag" ]'
c304=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "If-None-Match: $etag" "$NG/api/stock")
check "If-None-Match with that ETag through nginx is 304" '[ "$c304" = 304 ]' "got $c304"
gz=$(curl -s -D - -o /dev/null --max-time 5 -H 'Accept-Encoding: gzip' "$NG/api/stock" | tr -d '\r' | awk -F': ' 'tolower($1) == "content-encoding" { print $2 }')
check "nginx compresses the snapshot (Content-Encoding: gzip)" '[ "$gz" = gzip ]' "got '$gz'"

# ---- 1,000 requests in a second: the node sees a few ------------------------------
before=$(requests_total M)
"$TOOLS/httpload" "$NG/api/stock" --requests 1000 --parallel 8 --timeout-ms 20000 >"$TMP/load.out" 2>&1
load_rc=$?
after=$(requests_total M)
# /metrics itself counts once between the two reads.
seen=$((after - before - 1))
check "1,000 GET /api/stock through nginx cost the mirror at most a few requests ($seen)" \
    '[ $load_rc = 0 ] && [ $seen -le 5 ]' "rc=$load_rc $(cat "$TMP/load.out") seen=$seen"
echo "# $(tail -n 1 "$TMP/load.out")"

# ---- a sale at the stall reaches a websocket viewer through nginx ---------------
"$WSPROBE" "ws://127.0.0.1:$NGP/ws" --count 2 --timeout-ms 15000 >"$TMP/ws.out" 2>"$TMP/ws.err" &
probe=$!
sleep 1
sale A jam 1
wait $probe
probe_rc=$?
check "a sale at the stall reaches a websocket viewer through nginx and the mirror" \
    '[ $probe_rc = 0 ] && sed -n 2p "$TMP/ws.out" | grep -q delta' \
    "rc=$probe_rc $(head -c 300 "$TMP/ws.out") $(cat "$TMP/ws.err")"

# ---- a viewer's hold through nginx lands at the stall --------------------------
hold() {  # hold SOURCE_ADDRESS: POST /api/holds through nginx from that address
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 10 --interface "$1" \
        -H 'Content-Type: application/json' --data-binary '{"sku":"jam","qty":1}' "$NG/api/holds")
    body=$(cat "$TMP/body")
}
hold 127.0.0.2
hold_id=$(printf '%s' "$body" | jq -r '.id // empty')
hold_at=$(printf '%s' "$body" | jq -r '.at // empty')
check "a hold through nginx and the mirror is 201, made at the stall" \
    '[ "$code" = 201 ] && [ "$hold_at" = "${ID[A]}" ] && [ "${hold_id%%:*}" = "${ID[A]}" ]' "$code $body"
held_at_a() { [ "$(units A jam held)" -ge 1 ] 2>/dev/null; }
check "the stall's own stock shows the hold" 'until_true 10 held_at_a' "$(get A /api/stock)"
codes=""
for _ in 1 2 3; do hold 127.0.0.2; codes="$codes $code"; done
check "the viewer at 127.0.0.2 is rate-limited by the mirror (3 holds a minute: 429 rate_limited)" \
    '[ "$code" = 429 ] && [ "$(printf "%s" "$body" | jq -r .error)" = rate_limited ]' "$codes: $body"
hold 127.0.0.3
check "another viewer (127.0.0.3) still holds (limits are per viewer, from X-Forwarded-For)" \
    '[ "$code" = 201 ]' "$code $body"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 10 --interface 127.0.0.8 \
    -H 'Content-Type: application/json' \
    --data-binary '{"lines":[{"sku":"jam","qty":1},{"sku":"honey","qty":2}],"device":"v8"}' "$NG/api/holds")
body=$(cat "$TMP/body")
lines_id=$(printf '%s' "$body" | jq -r '.id // empty')
check "a reservation of two lines through nginx and the mirror is 201, held whole at the stall" \
    '[ "$code" = 201 ] && [ "${lines_id%%:*}" = "${ID[A]}" ] && [ "$(printf "%s" "$body" | jq -r "[.lines[].qty] | add")" = 3 ] && [ -n "$(printf "%s" "$body" | jq -r ".code // empty")" ]' "$code $body"
honey_held() { [ "$(units A honey held)" = 2 ] 2>/dev/null; }
check "the stall's stock shows both lines held" 'until_true 10 honey_held' "$(get A /api/stock | head -c 400)"
# A direct client of the mirror (127.0.0.4, not a trusted proxy) claiming to
# be the limited viewer: its header is ignored, its own address is keyed.
code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 10 --interface 127.0.0.4 \
    -H 'X-Forwarded-For: 127.0.0.2' -H 'Content-Type: application/json' \
    --data-binary '{"sku":"jam","qty":1}' "$(url M)/api/holds")
check "X-Forwarded-For from a peer that is not a trusted proxy is ignored" \
    '[ "$code" = 201 ]' "$code $(cat "$TMP/body")"

# ---- a raffle entered through nginx and the mirror ------------------------------
# A raffle at the stall, entered below by viewers through nginx and the mirror.
req O POST /api/items '{"sku":"tea","name":"Tea caddy","price":900}'
req A POST /api/stock/add '{"sku":"tea","qty":2}'
R_START=$(iso 5); R_CLOSE=$(iso 25)
req A POST /api/drops "{\"sku\":\"tea\",\"qty\":2,\"starts\":\"$R_START\",\"closes\":\"$R_CLOSE\",\"mode\":\"raffle\",\"per_shopper\":1}"
RF=$(printf '%s' "$body" | jq -r '.id // empty')
check "the stall creates a raffle (201)" '[ "$code" = 201 ] && [ -n "$RF" ]' "$code $body"

# enter ADDRESS DEVICE [BASE]: a viewer's raffle entry from ADDRESS (through
# nginx unless BASE is given); sets $code and $body.
enter() {
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 10 --interface "$1" \
        -H 'Content-Type: application/json' --data-binary "{\"device\":\"$2\"}" \
        "${3:-$NG}/api/drops/$RF/entries")
    body=$(cat "$TMP/body")
}
drop_at() { get "$1" "/api/drops/$RF" | jq -r "$2"; }
has_drop() { [ "$(drop_at M .drop.id)" = "$RF" ]; }
until_true 20 has_drop || nok "the raffle reaches the mirror"
enter 127.0.0.10 early-1
if [ "$(date +%s)" -lt "$(date -u -d "$R_START" +%s)" ]; then
    check "an entry before the start, judged by the stall's clock: 409 drop_not_started" \
        '[ "$code" = 409 ] && [ "$(printf "%s" "$body" | jq -r .error)" = drop_not_started ]' "$code $body"
fi
wait_until "$R_START" || nok "waiting for the raffle's start"
enter 127.0.0.5 viewer-1
entry_id=$(printf '%s' "$body" | jq -r '.id // empty')
check "a raffle entry through nginx and the mirror is 201, appended by the stall" \
    '[ "$code" = 201 ] && [ "${entry_id%%:*}" = "${ID[A]}" ]' "$code $body"
entry_kind() { sm A log --origin "${ID[A]}" 2>/dev/null | grep -c "raffle.entry"; }
check "the stall's log holds it as a raffle.entry" '[ "$(entry_kind)" = 1 ]' \
    "$(sm A log --origin "${ID[A]}" 2>&1 | tail -n 3)"
check "the stall counts one entrant" '[ "$(drop_at A .drop.entries)" = 1 ]' "$(get A "/api/drops/$RF")"
enter 127.0.0.6 viewer-1
check "the same device again (from another address) is refused: 409 already_entered" \
    '[ "$code" = 409 ] && [ "$(printf "%s" "$body" | jq -r .error)" = already_entered ]' "$code $body"
enter 127.0.0.5 viewer-2
check "another device from the same address is refused: 409 already_entered (one per address)" \
    '[ "$code" = 409 ] && [ "$(printf "%s" "$body" | jq -r .error)" = already_entered ]' "$code $body"
codes=""
for i in $(seq 1 11); do enter 127.0.0.9 "flood-$i" "$(url M)"; codes="$codes $code"; done
check "the mirror rate-limits a viewer's entries (10 a minute an address: then 429 rate_limited)" \
    '[ "$code" = 429 ] && [ "$(printf "%s" "$body" | jq -r .error)" = rate_limited ]' "$codes: $body"
req M POST "/api/drops/$RF/draw" ''
check "the mirror refuses a draw with 403 read_only" \
    '[ "$code" = 403 ] && [ "$(printf "%s" "$body" | jq -r .error)" = read_only ]' "$code $body"
stop A
disconnected() { ! connected "$@"; }
until_true 20 disconnected M "${ID[A]}"
enter 127.0.0.7 viewer-3
check "with the stall down, an entry through the mirror is 503 stall_unreachable" \
    '[ "$code" = 503 ] && [ "$(printf "%s" "$body" | jq -r .error)" = stall_unreachable ]' "$code $body"
start A || { nok "stall A restarts" "$(tail -n 5 "$TMP/A.log")"; finish; }
until_true 20 connected M "${ID[A]}" || nok "the mirror reconnects to the stall"
# The same viewer enters again (its answer lost, say): the restarted stall no
# longer remembers its answer, and answers with the entry it made.  A stall
# just started appends nothing for about 1.5 s (503 recovering): bounded retry.
for _ in 1 2 3 4 5 6; do
    enter 127.0.0.5 viewer-1
    [ "$code" = 503 ] || break
    sleep 0.5
done
check "after the stall restarted, the same device and address through the mirror again: 201 with the first entry's id" \
    '[ "$code" = 201 ] && [ "$(printf "%s" "$body" | jq -r .id)" = "$entry_id" ]' "$code $body (first: $entry_id)"
wait_until "$R_CLOSE" || nok "waiting for the raffle's close"
sleep 1
req A POST "/api/drops/$RF/draw" ''
check "the stall's draw counts the entry made through the mirror" \
    '[ "$code" = 200 ] && [ "$(printf "%s" "$body" | jq -r .counted)" = 2 ]' "$code $body"
drawn_at_m() { [ "$(get M "/api/drops/$RF/result?device=viewer-1" | jq -r .drawn)" = true ]; }
until_true 10 drawn_at_m
res=$(get M "/api/drops/$RF/result?device=viewer-1")
check "the viewer's result through the mirror: drawn, counted, won (2 units, 2 entrants)" \
    '[ "$(printf "%s" "$res" | jq -r ".counted and .won")" = true ]' "$res"

# ---- the mirror is read-only and holds no units ---------------------------------
codes=""
for route in "POST /api/items" "POST /api/stock/add" "POST /api/stock/adjust" \
             "POST /api/stock/move" "POST /api/sales" "POST /api/returns" \
             "DELETE /api/holds/${ID[A]}:1"; do
    # shellcheck disable=SC2086
    req M $route '{"sku":"jam","qty":1}'
    [ "$code" = 403 ] && [ "$(printf '%s' "$body" | jq -r .error)" = read_only ] || codes="$codes [$route: $code $body]"
done
check "the mirror refuses every write route with 403 read_only (with its token too)" '[ -z "$codes" ]' "$codes"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/json' \
    --data-binary '{"sku":"jam","qty":1}' "$NG/api/stock/add")
check "a write through nginx is 403 read_only too" '[ "$code" = 403 ]' "$code $(cat "$TMP/body")"
m_units=$(get M /api/stock | jq --arg m "${ID[M]}" '[.items[].locations[] | select(.node == $m)] | length')
check "the mirror holds no units (no stock location of its own)" '[ "$m_units" = 0 ]' "$m_units"

# ---- partition: the mirror stopped while the stall sells, then back -----------
stop M
for _ in 1 2 3; do sale A jam 1; done
check "the stall sells while the mirror is down" '[ "$code" = 201 ]' "$code $body"
start M || { nok "the mirror restarts" "$(tail -n 5 "$TMP/M.log")"; finish; }
check "the mirror converges with the stall after the partition" 'until_true 20 same_digest A M'
ng_total() { [ "$(curl -s --max-time 2 "$NG/api/stock" | jq -r '.items[] | select(.sku == "jam") | .total')" = "$(units A jam total)" ]; }
check "and the stock through nginx shows the stall's units within 3 s" 'until_true 3 ng_total' \
    "$(curl -s --max-time 2 "$NG/api/stock" | head -c 300)"

# ---- a websocket flood through nginx: the till keeps selling -------------------
cat >"$TMP/sell.sh" <<SELL
"$TOOLS/httpload" "$(url A)/api/sales" --requests 50 --method POST \
    --bearer-file "$TMP/A/api-token" --expect 201 \
    --header 'Content-Type: application/json' \
    --body '{"lines":[{"sku":"jam","qty":0}],"source":"in_person","payment":"card","external_id":"flood-%n"}' \
    >"$TMP/sell.out" 2>&1
SELL
# A sale of quantity 0 is refused; sell 1 unit each, as many as there are.
sed -i 's/"qty":0/"qty":1/' "$TMP/sell.sh"
req A POST /api/stock/add '{"sku":"jam","qty":100}'
"$WSPROBE" "ws://127.0.0.1:$NGP/ws" --fanout --clients 1000 --sources 32 --batch 100 \
    --trigger "sh $TMP/sell.sh" --rounds 1 --timeout-ms 30000 >"$TMP/flood.out" 2>&1
flood_rc=$?
p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' "$TMP/sell.out")
check "1,000 websocket viewers through nginx each get the till's sales, and the till sells 50 (201 each)" \
    '[ $flood_rc = 0 ] && [ -n "$p99" ]' "rc=$flood_rc $(tail -n 3 "$TMP/flood.out") $(cat "$TMP/sell.out")"
echo "# till sale latency during the flood: $(tail -n 1 "$TMP/sell.out")"
echo "# viewers: $(tail -n 1 "$TMP/flood.out")"
finish
