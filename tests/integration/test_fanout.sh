#!/bin/bash
# Integration test of the stock feed's fan-out and of the snapshot rebuilt
# after the answers, against a real `stallmesh run` on loopback:
#
#   bash tests/integration/test_fanout.sh build/stallmesh   (from the repo root)
#
# It checks that with no phone connected a GET of the stock and /metrics
# right after a sale show it (the rebuild waits for its first reader); that
# a phone connecting then gets that state as its snapshot; that 600 phones
# (more than one slice of the walk) each get a delta in every one of three
# rounds of 20 sales made one after another while the walk runs; that a
# phone connected through 40 sales from 8 tills at once receives versions
# that only grow, never a delta older than the one before it, and ends with
# the units GET /api/stock shows.  Uses build/tools/wsprobe and httpload.
# Each check prints "ok - ..." or "not ok - ..."; the last line is
# "N passed, M failed", and the script exits non-zero if M > 0.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
TOOLS=$(dirname "$BIN")/tools

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && echo "$2" | sed 's/^/#   /'; }
check() {
    if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi
}
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

if [ ! -x "$BIN" ] || [ ! -x "$TOOLS/wsprobe" ] || [ ! -x "$TOOLS/httpload" ]; then
    nok "$BIN, $TOOLS/wsprobe and $TOOLS/httpload are executables (make all tools)"
    finish
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-fanout.XXXXXX") || exit 1
DIR=$TMP/node
NODE_PID=
PROBE_PID=
cleanup() {
    for p in $PROBE_PID $NODE_PID; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n "$(ulimit -Hn)" 2>/dev/null
"$BIN" --dir "$DIR" init --name "Stall A" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$DIR" market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
TOKEN=$(cat "$DIR/api-token")
start_node() {
    "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen none \
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
    ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q . && continue
    if start_node; then started=yes; break; fi
    kill -KILL "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; NODE_PID=
done
[ "$started" = yes ] || { nok "the node starts" "$(cat "$TMP/node.err")"; finish; }
URL=http://127.0.0.1:$PORT
WS=ws://127.0.0.1:$PORT/ws

post() {
    curl -s --max-time 10 -o "$TMP/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        -d "$2" "$URL$1"
}
here() { curl -s --max-time 5 "$URL/api/stock" | jq -r '.items[] | select(.sku == "mug") | .here'; }

[ "$(post /api/items '{"sku":"mug","name":"Mug","price":1200}')" = 201 ] \
    && [ "$(post /api/stock/add '{"sku":"mug","qty":1000}')" = 201 ] \
    || { nok "catalog" "$(cat "$TMP/body")"; finish; }

# ---- no phone: the stock read right after a sale ---------------------------
before=$(here)
code=$(post /api/sales '{"lines":[{"sku":"mug","qty":3}],"source":"in_person","payment":"cash"}')
after=$(here)
check "with no phone connected, GET /api/stock right after a sale shows it" \
    '[ "$code" = 201 ] && [ "$after" = $((before - 3)) ]' "$code: $before -> $after"
code=$(post /api/sales '{"lines":[{"sku":"mug","qty":1}],"source":"in_person","payment":"cash"}')
etag=$(curl -s -D - -o /dev/null "$URL/api/stock" | tr -d '\r"' | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p')
code=$(post /api/sales '{"lines":[{"sku":"mug","qty":1}],"source":"in_person","payment":"cash"}')
gauge=$(curl -s "$URL/metrics" | awk '$1 == "stallmesh_state_version" { print $2 }')
etag2=$(curl -s -D - -o /dev/null "$URL/api/stock" | tr -d '\r"' | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p')
check "/metrics right after a sale shows the new state version (the stock's new ETag)" \
    '[ -n "$gauge" ] && [ "$gauge" = "$etag2" ] && [ "$etag2" -gt "$etag" ]' "$etag -> $gauge / $etag2"
code=$(post /api/sales '{"lines":[{"sku":"mug","qty":2}],"source":"in_person","payment":"cash"}')
snap=$("$TOOLS/wsprobe" "$WS" --count 1 --timeout-ms 5000 2>&1)
check "a phone connecting after a sale gets that state as its snapshot" \
    '[ "$code" = 201 ] && printf "%s" "$snap" | jq -e ".type == \"snapshot\" and (.items[] | select(.sku == \"mug\") | .here) == $(here)" >/dev/null' \
    "$code: $snap"

# ---- 600 phones, three rounds of 20 sales -----------------------------------
SALE='{"lines":[{"sku":"mug","qty":1}],"source":"in_person","payment":"card"}'
out=$(timeout 300 "$TOOLS/wsprobe" "$WS" --fanout --clients 600 --sources 10 --rounds 3 \
      --timeout-ms 30000 \
      --trigger "$TOOLS/httpload $URL/api/sales --method POST --bearer-file $DIR/api-token --expect 201 --requests 20 --parallel 1 --body '$SALE' >>$TMP/till.out 2>&1" \
      2>"$TMP/probe.err")
rc=$?
check "600 phones each get a delta in every round of 20 sales (wsprobe exit 0)" \
    '[ $rc -eq 0 ] && printf "%s" "$out" | grep -q "^wsprobe: clients=600 rounds=3"' \
    "rc $rc: $(tail -n 3 "$TMP/probe.err")"
check "every one of the 60 sales made meanwhile was answered 201" \
    '[ "$(grep -c "^httpload: requests=20 " "$TMP/till.out")" = 3 ]' "$(cat "$TMP/till.out")"

# ---- one phone through 40 sales from 8 tills: versions only grow -----------
"$TOOLS/wsprobe" "$WS" --count 1000 --timeout-ms 4000 >"$TMP/ws.out" 2>"$TMP/ws.err" &
PROBE_PID=$!
for _ in $(seq 1 100); do grep -q snapshot "$TMP/ws.out" 2>/dev/null && break; sleep 0.05; done
"$TOOLS/httpload" "$URL/api/sales" --method POST --bearer-file "$DIR/api-token" --expect 201 \
    --requests 40 --parallel 8 --body "$SALE" >"$TMP/load.out" 2>&1
lrc=$?
wait "$PROBE_PID"     # it times out after 4 s of silence: every message is in
PROBE_PID=
versions=$(jq -r .version <"$TMP/ws.out" | tr '\n' ' ')
last_here=$(tail -n 1 "$TMP/ws.out" | jq -r '.items[] | select(.sku == "mug") | .here')
check "the phone's versions only grow through 40 sales from 8 tills" \
    '[ $lrc -eq 0 ] && [ "$(jq -r .version <"$TMP/ws.out" | wc -l)" -ge 2 ] && jq -r .version <"$TMP/ws.out" | sort -n -c -u' \
    "rc $lrc, versions: $versions"
check "its last message shows the units GET /api/stock shows" \
    '[ -n "$last_here" ] && [ "$last_here" = "$(here)" ]' "$last_here vs $(here)"

finish
