#!/bin/bash
# Integration test of the running node: a real `stallmesh run` process on
# 127.0.0.1 with a real store, driven over HTTP (curl) and websockets
# (build/tools/wsprobe):
#
#   bash tests/integration/test_node.sh build/stallmesh build/tools/wsprobe
#
# Checks every route's success and error cases, the ETag cache, that a
# sale's delta reaches a websocket client, 200 malformed requests leaving
# the node serving and the digest unchanged, SIGKILL right after a 201
# losing nothing, and a clean SIGTERM shutdown.  Each check prints "ok - ..."
# or "not ok - ..."; the last line is "N passed, M failed"; the exit status
# is non-zero if any failed.  Every wait is bounded; only the node this
# script started is stopped, by its PID.

BIN=${1:-build/stallmesh}
WSPROBE=${2:-build/tools/wsprobe}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
case $WSPROBE in /*) ;; *) WSPROBE=$(pwd)/$WSPROBE ;; esac

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-node.XXXXXX") || exit 1
DIR=$TMP/stall
NODE_PID=
cleanup() {
    [ -n "$NODE_PID" ] && kill -KILL "$NODE_PID" 2>/dev/null
    [ -n "${PROBE_PID:-}" ] && kill -KILL "$PROBE_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR

finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

"$BIN" --dir "$DIR" init --name "Stall A" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$DIR" market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
TOKEN=$(cat "$DIR/api-token")
NODE_ID=$("$BIN" --dir "$DIR" id --json | sed 's/.*"node": *"\([0-9a-f]*\)".*/\1/')

# start_node: run the node on $PORT, wait (bounded) until /readyz answers.
start_node() {
    "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen none --log-level info \
        >"$TMP/node.out" 2>>"$TMP/node.err" &
    NODE_PID=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/readyz" && return 0
        kill -0 "$NODE_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
started=no
for _ in 1 2 3 4 5; do
    PORT=$((20000 + RANDOM % 12000))
    if start_node; then started=yes; break; fi
    kill -KILL "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; NODE_PID=
done
[ "$started" = yes ] || { nok "the node starts and answers /readyz" "$(cat "$TMP/node.err")"; finish; }
ok "the node starts and answers /readyz"
URL=http://127.0.0.1:$PORT

# req METHOD PATH [BODY] [auth|noauth] [extra curl args...]: sets $code and $body.
req() {
    local method=$1 path=$2 data=${3:-} auth=${4:-auth}
    shift 4 2>/dev/null || shift $#
    local args=(-s -o "$TMP/body" -w '%{http_code}' -X "$method" --max-time 10)
    [ "$auth" = auth ] && args+=(-H "Authorization: Bearer $TOKEN")
    [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
    code=$(curl "${args[@]}" "$@" "$URL$path")
    body=$(cat "$TMP/body")
}
jget() { printf '%s' "$body" | jq -r "$1" 2>/dev/null; }

# ---- health, metrics, the URL file ---------------------------------------
req GET /livez "" noauth
check "GET /livez is 200 JSON" '[ "$code" = 200 ] && printf "%s" "$body" | jq -e . >/dev/null'
req GET /readyz "" noauth
check "GET /readyz is 200 JSON" '[ "$code" = 200 ] && printf "%s" "$body" | jq -e . >/dev/null'
check "the node writes its URL to DIR/http" 'grep -qx "$URL" "$DIR/http"'
check "the node prints the stock page and till URLs" \
    'grep -q "$URL/" "$TMP/node.out" && grep -q "$URL/till" "$TMP/node.out"'

# ---- a second node on the same port ---------------------------------------
# It must stop at once, saying the port is taken (not blaming a missing
# event-loop plugin, which is what lws's own failure looks like).
"$BIN" --dir "$TMP/second" init --name "Stall B" >/dev/null \
    && "$BIN" --dir "$TMP/second" market create --name "Other market" >/dev/null
timeout 10 "$BIN" --dir "$TMP/second" run --http "127.0.0.1:$PORT" --listen none \
    >/dev/null 2>"$TMP/second.err"
rc=$?
check "a second node on the port exits 1 saying the port is in use" \
    '[ $rc -eq 1 ] && grep -q "127.0.0.1:$PORT: the port is in use" "$TMP/second.err" \
     && ! grep -q "event loop is not available" "$TMP/second.err"' "rc=$rc $(cat "$TMP/second.err")"
req GET /livez "" noauth
check "the first node still answers after it" '[ "$code" = 200 ]'

# ---- the pages -------------------------------------------------------------
req GET / "" noauth
check "GET / serves the stock page" '[ "$code" = 200 ] && printf "%s" "$body" | grep -qi "<html"'
req GET /till "" noauth
check "GET /till serves the till" '[ "$code" = 200 ] && printf "%s" "$body" | grep -qi "<html"'

# ---- catalog and stock -----------------------------------------------------
req POST /api/items '{"sku":"mug","name":"Blue mug","price":1250}' noauth
check "POST /api/items without the token is 401" '[ "$code" = 401 ] && [ "$(jget .error)" != null ]'
req POST /api/items '{"sku":"mug","name":"Blue mug","price":1250}' auth -H "Authorization: Bearer 00"
check "a wrong token is 401" '[ "$code" = 401 ]'
req POST /api/items '{"sku":"mug","name":"Blue mug","price":1250}'
check "POST /api/items is 201" '[ "$code" = 201 ]' "$code $body"
req POST /api/items '{"sku":"tee","name":"T-shirt","price":2000,"currency":"GBP"}'
check "a second item is 201" '[ "$code" = 201 ]' "$code $body"
req POST /api/items '{"sku":"mug","name":'
check "truncated JSON is 400" '[ "$code" = 400 ] && [ -n "$(jget .detail)" ]'
req POST /api/items '{"sku":"mug","name":"x","price":"12"}'
check "a string price is 400" '[ "$code" = 400 ]'
req POST /api/items '{"sku":"mug","price":100}'
check "a missing name is 400" '[ "$code" = 400 ]'
req POST /api/items '[1,2,3]'
check "a JSON array body is 400" '[ "$code" = 400 ]'
req POST /api/stock/add '{"sku":"mug","qty":10}'
check "POST /api/stock/add is 201" '[ "$code" = 201 ]' "$code $body"
req POST /api/stock/add '{"sku":"tee","qty":3}'
check "stock add of a second sku is 201" '[ "$code" = 201 ]'
req POST /api/stock/add '{"sku":"mug","qty":-4}'
check "a negative quantity is 400" '[ "$code" = 400 ]'
req POST /api/stock/add '{"sku":"mug","qty":0}'
check "a zero quantity is 400" '[ "$code" = 400 ]'
req POST /api/stock/add '{"sku":"mug","qty":2.5}'
check "a fractional quantity is 400" '[ "$code" = 400 ]'
req POST /api/stock/add '{"sku":"nope","qty":1}'
check "stock add of an unknown sku is 404" '[ "$code" = 404 ]' "$code $body"
req POST /api/stock/adjust '{"sku":"mug","qty":-1,"reason":"chipped"}'
check "a stock-take adjustment is 201" '[ "$code" = 201 ]' "$code $body"
req POST /api/stock/adjust '{"sku":"mug","qty":-100,"reason":"miscount"}'
check "an adjustment below what is here is 409" '[ "$code" = 409 ]' "$code $body"

req GET /api/stock "" noauth
check "GET /api/stock lists the items with units here" \
    '[ "$code" = 200 ] && [ "$(jget ".items[] | select(.sku==\"mug\") | .here")" = 9 ]' "$body"
check "GET /api/stock gives the market total, price and currency" \
    '[ "$(jget ".items[] | select(.sku==\"mug\") | .total")" = 9 ] && [ "$(jget ".items[] | select(.sku==\"mug\") | .price")" = 1250 ] && [ "$(jget ".items[] | select(.sku==\"mug\") | .currency")" = GBP ]'
check "GET /api/stock names this node" '[ "$(jget .node)" = "$NODE_ID" ]'
etag=$(curl -s -D - -o /dev/null "$URL/api/stock" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p')
check "GET /api/stock has an ETag" '[ -n "$etag" ]'
code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$URL/api/stock")
check "If-None-Match with the current ETag is 304" '[ "$code" = 304 ]'
page_etag=$(curl -s -D - -o /dev/null "$URL/" | tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: \"x\", W/$page_etag" "$URL/")
code_other=$(curl -s -o /dev/null -w '%{http_code}' -H 'If-None-Match: "x", "y"' "$URL/")
check "the page's ETag matches in an If-None-Match list and weakly (304), another tag does not (200)" \
    '[ -n "$page_etag" ] && [ "$code" = 304 ] && [ "$code_other" = 200 ]' "$page_etag: $code $code_other"
cc=$(curl -s -D - -o /dev/null "$URL/api/stock" | tr -d '\r' | sed -n 's/^[Cc]ache-[Cc]ontrol: *//p')
check "the snapshot is served with Cache-Control: no-cache" '[ "$cc" = no-cache ]'

# ---- a sale reaches a websocket client ------------------------------------
if [ -x "$WSPROBE" ]; then
    "$WSPROBE" "ws://127.0.0.1:$PORT/ws" --count 2 --timeout-ms 5000 >"$TMP/ws.out" 2>"$TMP/ws.err" &
    PROBE_PID=$!
    for _ in $(seq 1 50); do grep -q snapshot "$TMP/ws.out" 2>/dev/null && break; sleep 0.05; done
    check "a websocket client gets the snapshot first" 'head -n1 "$TMP/ws.out" | jq -e ".type==\"snapshot\"" >/dev/null'
fi
req POST /api/sales '{"lines":[{"sku":"mug","qty":2}],"source":"in_person","payment":"cash","external_id":"till-1-0001"}'
check "POST /api/sales is 201 with an id" '[ "$code" = 201 ] && printf "%s" "$(jget .id)" | grep -Eq "^[0-9a-f]{64}:[0-9]+$"' "$code $body"
SALE_ID=$(jget .id)
if [ -x "$WSPROBE" ]; then
    wait "$PROBE_PID"; probe_rc=$?; PROBE_PID=
    check "the sale's delta reaches the websocket client" \
        '[ "$probe_rc" = 0 ] && sed -n 2p "$TMP/ws.out" | jq -e ".type==\"delta\" and (.items[] | select(.sku==\"mug\") | .here) == 7" >/dev/null' \
        "$(cat "$TMP/ws.out" "$TMP/ws.err")"
else
    nok "websocket probe $WSPROBE is built"
fi
req POST /api/sales '{"lines":[{"sku":"mug","qty":2}],"source":"in_person","payment":"cash","external_id":"till-1-0001"}'
check "a repeated external_id returns the first sale" '[ "$code" = 200 ] && [ "$(jget .id)" = "$SALE_ID" ]' "$code $body"
req GET "/api/sales?limit=100" "" noauth
check "GET /api/sales without the token is 401" '[ "$code" = 401 ]'
req GET "/api/sales?limit=100" ""
check "GET /api/sales lists exactly one sale for the repeated external_id" \
    '[ "$code" = 200 ] && [ "$(printf "%s" "$body" | jq "[.. | objects | select(.id? == \"$SALE_ID\")] | length")" = 1 ]' "$body"
req POST /api/sales '{"lines":[{"sku":"mug","qty":50}],"source":"in_person","payment":"card"}'
check "a sale beyond the units here is 409 insufficient_stock with here and total" \
    '[ "$code" = 409 ] && [ "$(jget .error)" = insufficient_stock ] && [ "$(jget .here)" = 7 ] && [ "$(jget .total)" = 7 ] && [ "$(jget .sku)" = mug ]' "$code $body"
req POST /api/sales '{"lines":[{"sku":"mug","qty":1}],"source":"telepathy","payment":"card"}'
check "an unknown source is 400" '[ "$code" = 400 ]'
req POST /api/sales '{"lines":[{"sku":"ghost","qty":1}],"source":"in_person","payment":"card"}'
check "a sale of an unknown sku is 404" '[ "$code" = 404 ]'
req POST /api/returns "{\"sale\":\"$SALE_ID\",\"lines\":[{\"sku\":\"mug\",\"qty\":5}],\"reason\":\"broken\"}"
check "returning more than was sold is refused" '[ "$code" = 409 ] || [ "$code" = 400 ]' "$code $body"
req POST /api/returns "{\"sale\":\"$SALE_ID\",\"lines\":[{\"sku\":\"mug\",\"qty\":1}],\"reason\":\"broken\"}"
check "a return of one unit is 201" '[ "$code" = 201 ]' "$code $body"

# ---- holds -----------------------------------------------------------------
req POST /api/holds '{"sku":"tee","qty":1}' noauth
check "POST /api/holds is 201 with an id and expires_at" '[ "$code" = 201 ] && [ -n "$(jget .id)" ] && [ "$(jget .expires_at)" != null ]' "$code $body"
HOLD_ID=$(jget .id)
req GET /api/stock "" noauth
check "a hold shows as held" '[ "$(jget ".items[] | select(.sku==\"tee\") | .held")" = 1 ] && [ "$(jget ".items[] | select(.sku==\"tee\") | .here")" = 2 ]' "$body"
req DELETE "/api/holds/$HOLD_ID" "" noauth
check "the client that made a hold can cancel it" '[ "$code" = 200 ] || [ "$code" = 204 ]' "$code $body"
req POST /api/holds '{"sku":"tee","qty":99}' noauth
check "a hold beyond the units is 409" '[ "$code" = 409 ]' "$code $body"
limited=no
for _ in $(seq 1 30); do
    req POST /api/holds '{"sku":"mug","qty":1}' noauth
    [ "$code" = 429 ] && { limited=yes; break; }
done
check "holds are rate-limited per client (429)" '[ "$limited" = yes ]'

# ---- routes and methods ----------------------------------------------------
req GET /api/nothing-here "" noauth
check "an unknown route is 404 JSON" '[ "$code" = 404 ] && [ -n "$(jget .error)" ]'
req PUT /api/stock '{}' auth
check "a known route with the wrong method is 405" '[ "$code" = 405 ]'
head -c 200000 /dev/zero | tr '\0' 'x' >"$TMP/huge"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' --data-binary @"$TMP/huge" "$URL/api/items")
check "a body over the limit is 413 (or the connection is refused)" '[ "$code" = 413 ] || [ "$code" = 000 ]'
req GET /api/state "" noauth
check "GET /api/state gives the digest, heads and forks" \
    '[ "$code" = 200 ] && printf "%s" "$(jget .digest)" | grep -Eq "^[0-9a-f]{64}$" && [ "$(jget ".forks | length")" = 0 ]' "$body"
STATE_DIGEST=$(jget .digest)
check "the API's digest is the CLI's" '[ "$STATE_DIGEST" = "$("$BIN" --dir "$DIR" digest)" ]'
req GET /metrics "" noauth
check "GET /metrics is Prometheus text with the sales count" \
    '[ "$code" = 200 ] && printf "%s\n" "$body" | grep -Eq "^stallmesh_sales_total 1$" && printf "%s\n" "$body" | grep -q "^# TYPE stallmesh_commit_seconds histogram"' "$body"

# ---- 200 malformed requests --------------------------------------------------
before=$("$BIN" --dir "$DIR" digest)
bad=0
for i in $(seq 1 200); do
    case $((i % 10)) in
    0) req POST /api/sales '{"lines":' ;;
    1) req POST /api/sales '{"lines":[{"sku":"mug","qty":-1}],"source":"in_person","payment":"cash"}' ;;
    2) req POST /api/items '{"sku":"","name":"x","price":1}' ;;
    3) req POST /api/stock/add '{"sku":"mug","qty":1e99}' ;;
    4) req POST /api/items "$(printf '%*s' 100 '' | tr ' ' '[')" ;;
    5) req GET "/api/$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" "" noauth ;;
    6) req POST /api/sales '{"lines":[{"sku":"mug","qty":1}],"source":"in_person","payment":"cash","hold":"zz:1"}' ;;
    7) req POST /api/returns '{"sale":"nonsense","lines":[],"reason":"x"}' ;;
    8) req DELETE /api/holds/123 "" noauth ;;
    9) code=$( { printf 'GARBAGE %s\r\n\r\n' "$i"; head -c 300 /dev/urandom; } | \
           timeout 2 curl -s -o /dev/null -w '%{http_code}' --data-binary @- \
           -H 'Content-Type: application/octet-stream' "$URL/api/sales" ) ;;
    esac
    case $code in 4??) ;; *) bad=$((bad + 1)); echo "#   request $i answered $code: $body" ;; esac
done
# Raw garbage on the socket and on the websocket path.
for i in $(seq 1 5); do
    head -c 2000 /dev/urandom | timeout 2 bash -c "cat >/dev/tcp/127.0.0.1/$PORT" 2>/dev/null
done
check "200 malformed requests each get a 4xx" '[ "$bad" = 0 ]'
req GET /readyz "" noauth
check "the node still serves after malformed input" '[ "$code" = 200 ]'
check "malformed input changed nothing (digest unchanged)" '[ "$before" = "$("$BIN" --dir "$DIR" digest)" ]'

# ---- SIGKILL right after a 201 loses nothing ------------------------------
req POST /api/sales '{"lines":[{"sku":"tee","qty":1}],"source":"online","payment":"card","external_id":"kill-test-1"}'
kill_code=$code
KILL_SALE=$(jget .id)
kill -KILL "$NODE_PID"; wait "$NODE_PID" 2>/dev/null; NODE_PID=
check "a sale is acknowledged just before SIGKILL" '[ "$kill_code" = 201 ]'
if start_node; then
    req GET "/api/sales?limit=1000" ""
    check "after SIGKILL and restart the acknowledged sale is there" \
        '[ "$(printf "%s" "$body" | jq "[.. | objects | select(.id? == \"$KILL_SALE\")] | length")" = 1 ]' "$body"
    check "verify is clean after SIGKILL" '"$BIN" --dir "$DIR" verify >/dev/null'
else
    nok "the node restarts after SIGKILL" "$(tail -n 5 "$TMP/node.err")"
fi

# ---- clean shutdown ----------------------------------------------------------
kill -TERM "$NODE_PID"
stopped=no
for _ in $(seq 1 100); do
    kill -0 "$NODE_PID" 2>/dev/null || { stopped=yes; break; }
    sleep 0.05
done
wait "$NODE_PID"; term_rc=$?
NODE_PID=
check "SIGTERM stops the node within 5 s with status 0" '[ "$stopped" = yes ] && [ "$term_rc" = 0 ]'
check "the node logs a clean stop" 'grep -q "stopped cleanly" "$TMP/node.err"'

# ---- config check ----------------------------------------------------------
printf '[http]\nlisten = 127.0.0.1:9999\n' >"$TMP/good.conf"
check "run --check accepts a valid config" '"$BIN" --dir "$DIR" run --config "$TMP/good.conf" --check | grep -q "127.0.0.1:9999"'
printf '[http]\nlisten = 127.0.0.1:9999\nlisen = 1\n' >"$TMP/bad.conf"
"$BIN" --dir "$DIR" run --config "$TMP/bad.conf" --check >/dev/null 2>"$TMP/check.err"
check_rc=$?
check "run --check refuses an unknown key and names the line" '[ "$check_rc" -ne 0 ] && grep -q "bad.conf:3" "$TMP/check.err"' "$(cat "$TMP/check.err")"

finish
