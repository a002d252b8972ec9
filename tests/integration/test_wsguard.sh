#!/bin/bash
# Integration test of websocket protocol errors against a real `stallmesh
# run` on loopback:
#
#   bash tests/integration/test_wsguard.sh build/stallmesh   (from the repo root)
#
# It checks that the node closes a websocket client at once (within 1 s of
# the bad bytes) for each protocol error: an unmasked frame, invalid UTF-8
# in a text frame, a header claiming 2^63 - 1 bytes, a 5,000-byte message
# (over SM_WS_MESSAGE_BYTES_MAX); that it keeps a client sending a good
# message; that meanwhile another client keeps receiving its deltas and a
# new one its snapshot; that the errors are counted in /metrics and
# logged, throttled; and that websockets count against clients_per_addr_max.  Uses build/tools/wsbad and wsprobe.  Each check prints
# "ok - ..." or "not ok - ..."; the last line is "N passed, M failed", and
# the script exits non-zero if M > 0.

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

if [ ! -x "$BIN" ] || [ ! -x "$TOOLS/wsbad" ] || [ ! -x "$TOOLS/wsprobe" ]; then
    nok "$BIN, $TOOLS/wsbad and $TOOLS/wsprobe are executables (make all tools)"
    finish
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-wsguard.XXXXXX") || exit 1
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

"$BIN" --dir "$DIR" init --name "Stall A" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$DIR" market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
# A low per-address limit, to check that websockets count against it too.
printf '[http]\nclients_per_addr_max = 8\n' >"$DIR/stallmesh.conf"
TOKEN=$(cat "$DIR/api-token")
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
    ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q . && continue
    if start_node; then started=yes; break; fi
    kill -KILL "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; NODE_PID=
done
[ "$started" = yes ] || { nok "the node starts" "$(cat "$TMP/node.err")"; finish; }
URL=http://127.0.0.1:$PORT

# A well-behaved phone, connected throughout: its snapshot, then a delta.
"$TOOLS/wsprobe" "ws://127.0.0.1:$PORT/ws" --count 2 --timeout-ms 30000 >"$TMP/probe.out" 2>&1 &
PROBE_PID=$!
sleep 0.5

for c in unmasked utf8 huge long; do
    out=$("$TOOLS/wsbad" --port "$PORT" --case "$c" --timeout-ms 1000 2>&1)
    rc=$?
    echo "# $out"
    check "$c: the node closes the connection at once" '[ $rc -eq 0 ]' "$out"
done
out=$("$TOOLS/wsbad" --port "$PORT" --case good --timeout-ms 1500 2>&1)
rc=$?
echo "# $out"
check "good: a client sending a valid message stays connected" '[ $rc -eq 0 ]' "$out"

code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
       -d '{"sku":"jam","name":"Plum jam","price":450}' "$URL/api/items")
check "the node still takes writes" '[ "$code" = 201 ]' "$code"
wait "$PROBE_PID"
rc=$?
PROBE_PID=
check "the connected phone got its delta meanwhile" \
    '[ $rc -eq 0 ] && grep -q "\"type\": *\"delta\"" "$TMP/probe.out"' "$(cat "$TMP/probe.out")"
"$TOOLS/wsprobe" "ws://127.0.0.1:$PORT/ws" --count 1 --timeout-ms 5000 >"$TMP/probe2.out" 2>&1
check "a new phone gets its snapshot" '[ $? -eq 0 ] && grep -q snapshot "$TMP/probe2.out"'

errors=$(curl -s "$URL/metrics" | awk '$1 == "stallmesh_ws_protocol_errors_total" { print $2 }')
check "the four errors are counted in /metrics ($errors)" '[ "$errors" = 4 ]'
lines=$(grep -c "web: websocket client 127.0.0.1 closed" "$TMP/node.err")
check "the log says why, throttled to one line for one address ($lines)" '[ "$lines" -eq 1 ]' \
    "$(grep 'web:' "$TMP/node.err")"

# Websockets count against clients_per_addr_max (8 here) like any connection.
HOLD_PIDS=
for i in 1 2 3 4 5 6 7 8; do
    "$TOOLS/wsprobe" "ws://127.0.0.1:$PORT/ws" --count 2 --timeout-ms 6000 >/dev/null 2>&1 &
    HOLD_PIDS="$HOLD_PIDS $!"
done
sleep 1
"$TOOLS/wsprobe" "ws://127.0.0.1:$PORT/ws" --count 1 --timeout-ms 2000 >"$TMP/probe9.out" 2>&1
rc=$?
check "a ninth connection from the address is refused" '[ $rc -ne 0 ]' "$(cat "$TMP/probe9.out")"
for p in $HOLD_PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
sleep 0.5
refused=$(curl -s "$URL/metrics" | awk '$1 == "stallmesh_http_refused_address_total" { print $2 }')
check "and counted in /metrics ($refused)" '[ "${refused:-0}" -ge 1 ]'
finish
