#!/bin/sh
# Integration test of the websocket test tools, real processes on loopback:
#
#   sh tests/integration/test_wsprobe.sh build/stallmesh   (from the repo root)
#
# The tools sit beside the node binary (build/tools/wsprobe, wsfeed).  wsfeed
# serves the /ws shape on a free 127.0.0.1 port; wsprobe must print the
# snapshot whole on one line, exit 0 after --count messages and 1 on a
# timeout or a refused connection, see the server close on a 5000-byte
# message and not on a 4000-byte one, and in fan-out mode measure every
# client of every round, spread clients over source addresses, and fail
# when the trigger fails or makes no delta.  httpload (the sale benchmark's
# client) must time every request, expand %n, and fail on an unexpected
# status.  Each check prints "ok - ..." or
# "not ok - ..."; the last line is "N passed, M failed", and the script
# exits non-zero if M > 0.

BIN=${1:-build/stallmesh}
TOOLS=$(dirname "$BIN")/tools
PROBE=$TOOLS/wsprobe
FEED=$TOOLS/wsfeed
LOAD=$TOOLS/httpload

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; }
check() {
    if eval "$2"; then ok "$1"; else nok "$1"; fi
}
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

if [ ! -x "$PROBE" ] || [ ! -x "$FEED" ] || [ ! -x "$LOAD" ]; then
    nok "$PROBE, $FEED and $LOAD are executables (build them with make tools)"
    finish
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-wsprobe.XXXXXX") || exit 1
FEED_PID=
cleanup() {
    if [ -n "$FEED_PID" ]; then
        kill "$FEED_PID" 2>/dev/null
        wait "$FEED_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$FEED" --port 0 --snapshot-bytes 30000 >"$TMP/feed.out" 2>"$TMP/feed.err" &
FEED_PID=$!
PORT=
i=0
while [ $i -lt 50 ] && [ -z "$PORT" ]; do
    PORT=$(sed -n 's/^wsfeed: listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$TMP/feed.out")
    [ -n "$PORT" ] || sleep 0.1
    i=$((i + 1))
done
if [ -z "$PORT" ]; then
    nok "wsfeed listens on a free port: $(cat "$TMP/feed.err")"
    finish
fi
ok "wsfeed listens on 127.0.0.1:$PORT"
URL=ws://127.0.0.1:$PORT/ws
DELTA="curl -fs http://127.0.0.1:$PORT/delta"

# probe ARGS...: run wsprobe; sets $rc, $out, $err.
probe() {
    "$PROBE" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    rc=$?
    out=$(cat "$TMP/stdout")
    err=$(cat "$TMP/stderr")
}
lines() { printf '%s\n' "$1" | grep -c ''; }

probe "$URL" --count 1 --timeout-ms 3000
check "one message: exit 0" '[ "$rc" -eq 0 ]'
check "the snapshot is one line" '[ "$(lines "$out")" -eq 1 ]'
check "the snapshot is whole (about 30000 bytes, ends the JSON)" \
    '[ ${#out} -gt 29000 ] && [ ${#out} -le 30000 ] && printf "%s" "$out" | grep -q "]}\$"'
check "the snapshot line begins with its type" \
    'printf "%s" "$out" | grep -q "^{\"type\":\"snapshot\""'

(sleep 0.3; $DELTA >/dev/null; $DELTA >/dev/null) &
probe "$URL" --count 3 --timeout-ms 5000
wait $!
check "snapshot and two deltas: exit 0" '[ "$rc" -eq 0 ]'
check "three lines, the last two deltas" \
    '[ "$(lines "$out")" -eq 3 ] && [ "$(printf "%s\n" "$out" | grep -c "\"type\":\"delta\"")" -eq 2 ]'

probe "$URL" --count 2 --timeout-ms 400
check "a second message that never comes: exit 1" '[ "$rc" -eq 1 ]'
check "the timeout is reported with the count" \
    'printf "%s" "$err" | grep -q "timeout after 400 ms: 1 of 2 messages"'

probe "$URL" --send-bytes 5000 --expect-close --timeout-ms 3000
check "a 5000-byte message gets the connection closed: exit 0" '[ "$rc" -eq 0 ]'
probe "$URL" --send-bytes 4000 --expect-close --timeout-ms 500
check "a 4000-byte message is ignored: no close, exit 1" '[ "$rc" -eq 1 ]'
probe "$URL" --send "hello" --count 1 --timeout-ms 2000
check "--send: still gets its snapshot" '[ "$rc" -eq 0 ]'

(sleep 0.3; curl -fs "http://127.0.0.1:$PORT/close" >/dev/null) &
probe "$URL" --count 5 --timeout-ms 5000
wait $!
check "closed by the server before the count: exit 1" '[ "$rc" -eq 1 ]'
check "the close is reported with its code" 'printf "%s" "$err" | grep -q "closed by the server (code 1001)"'

# Port 1 (tcpmux) has no listener on a test machine.
probe "ws://127.0.0.1:1/ws" --count 1 --timeout-ms 2000
check "a refused connection: exit 1" '[ "$rc" -eq 1 ]'
probe "http://127.0.0.1:$PORT/ws"
check "a URL that is not ws://: exit 2" '[ "$rc" -eq 2 ]'
probe "$URL" --fanout --clients 3
check "--fanout without --trigger: exit 2" '[ "$rc" -eq 2 ]'

probe "$URL" --fanout --clients 60 --rounds 3 --batch 16 --sources 3 --pid "$FEED_PID" \
    --gap-ms 10 --trigger "$DELTA"
check "fan-out of 60 clients, 3 rounds: exit 0" '[ "$rc" -eq 0 ]'
last=$(printf '%s\n' "$out" | tail -n 1)
check "fan-out: 180 samples, one per client and round" \
    'printf "%s" "$out" | grep -q "(180 samples)"'
check "fan-out: the machine-readable line has every figure" \
    'printf "%s" "$last" | grep -Eq "^wsprobe: clients=60 rounds=3 p50_ms=[0-9.]+ p99_ms=[0-9.]+ max_ms=[0-9.]+ all_p50_ms=[0-9.]+ all_max_ms=[0-9.]+ cmd_p50_ms=[0-9.]+ rss_before_kb=[0-9]+ rss_kb=[0-9]+ rounds_ms=[0-9]+ self_cpu_ms=[0-9]+ pid_cpu_ms=[0-9]+ cpu_pids_ms=[0-9]+$"'
rss=$(printf "%s" "$last" | sed -n "s/.* rss_kb=\([0-9]*\) .*/\1/p")
check "fan-out: the feed's RSS is read (> 1000 kB)" '[ "${rss:-0}" -gt 1000 ]'

probe "$URL" --fanout --clients 12 --rounds 1 --sources 4 --gap-ms 500 --timeout-ms 3000 \
    --trigger "ss -Htn state established '( sport = :$PORT )' >&2; $DELTA"
srcs=$(printf '%s\n' "$err" | grep -Eo '127\.0\.0\.[0-9]+:[0-9]+ *$' | cut -d: -f1 | sort -u | grep -c '')
check "--sources 4: the clients come from 4 addresses" '[ "$rc" -eq 0 ] && [ "$srcs" -eq 4 ]'

probe "$URL" --fanout --clients 5 --rounds 2 --timeout-ms 800 --trigger "true"
check "a trigger that makes no delta: exit 1" '[ "$rc" -eq 1 ]'
check "the missing delta is reported" \
    'printf "%s" "$err" | grep -q "round 1: 0 of 5 clients had the delta after 800 ms"'
probe "$URL" --fanout --clients 5 --rounds 2 --timeout-ms 2000 --trigger "$DELTA; exit 3"
check "a failing trigger: exit 1, reported" \
    '[ "$rc" -eq 1 ] && printf "%s" "$err" | grep -q "the trigger failed (status 3)"'

# httpload: each GET /delta is a change, so the feed's version counts them.
v0=$("$PROBE" "$URL" --count 1 | sed -n 's/^{"type":"snapshot","version":\([0-9]*\),.*/\1/p')
out=$("$LOAD" "http://127.0.0.1:$PORT/delta" --requests 50 --parallel 4 2>"$TMP/stderr")
rc=$?
v1=$("$PROBE" "$URL" --count 1 | sed -n 's/^{"type":"snapshot","version":\([0-9]*\),.*/\1/p')
check "httpload: 50 requests, 4 at a time: exit 0" '[ "$rc" -eq 0 ]'
check "httpload: the server saw exactly 50 requests" '[ -n "$v0" ] && [ $((v1 - v0)) -eq 50 ]'
check "httpload: the result line has every figure" \
    'printf "%s" "$out" | grep -Eq "^httpload: requests=50 parallel=4 rps=[0-9]+ mean_ms=[0-9.]+ p50_ms=[0-9.]+ p99_ms=[0-9.]+ max_ms=[0-9.]+$"'
"$LOAD" "http://127.0.0.1:$PORT/nope" --requests 3 >/dev/null 2>"$TMP/stderr"
rc=$?
check "httpload: a 404 where 200 is expected: exit 1, reported" \
    '[ "$rc" -eq 1 ] && grep -q "request 1: status 404, not 200" "$TMP/stderr"'
"$LOAD" "http://127.0.0.1:$PORT/nope" --requests 2 --expect 404 --method POST --body 'x%n%%' >/dev/null 2>&1
check "httpload: --expect 404 with a body template: exit 0" '[ $? -eq 0 ]'

finish
