#!/bin/bash
# Integration test of the mesh's log under strangers, a real `stallmesh run`
# on loopback:
#
#   bash tests/integration/test_zap_log.sh build/stallmesh   (from the repo root)
#
# It checks that 300 strangers knocking on the mesh port for 12 s (each
# with a CURVE key of its own, ZeroMQ retrying every 100 ms: thousands of
# refusals, or one each where ZeroMQ gives up after a refused handshake)
# are refused, that the node says so in its log, and that the lines are
# throttled: a handful, saying how many more there were, where an
# unthrottled node writes one per refusal.  Uses
# build/tools/stranger.  Each check prints "ok - ..." or "not ok - ...";
# the last line is "N passed, M failed", and the script exits non-zero if
# M > 0.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
STRANGER=$(dirname "$BIN")/tools/stranger

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

if [ ! -x "$BIN" ] || [ ! -x "$STRANGER" ]; then
    nok "$BIN and $STRANGER are executables (make all tools)"
    finish
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-zaplog.XXXXXX") || exit 1
DIR=$TMP/node
NODE_PID=
cleanup() {
    if [ -n "$NODE_PID" ]; then
        kill "$NODE_PID" 2>/dev/null
        wait "$NODE_PID" 2>/dev/null
    fi
    [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN" --dir "$DIR" init --name "Stall A" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$DIR" market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
NODE_ID=$("$BIN" --dir "$DIR" id --json | sed 's/.*"node": *"\([0-9a-f]*\)".*/\1/')

start_node() {
    "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen "tcp://127.0.0.1:$MPORT" \
        --log-level info >"$TMP/node.out" 2>>"$TMP/node.err" &
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
    MPORT=$((PORT + 1))
    ss -Hltn "sport = :$PORT or sport = :$MPORT" 2>/dev/null | grep -q . && continue
    if start_node; then started=yes; break; fi
    kill -KILL "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; NODE_PID=
done
[ "$started" = yes ] || { nok "the node starts" "$(cat "$TMP/node.err")"; finish; }

out=$("$STRANGER" --endpoint "tcp://127.0.0.1:$MPORT" --node "$NODE_ID" --count 300 --seconds 12 2>&1)
check "300 strangers knocked for 12 s" '[ $? -eq 0 ]' "$out"
lines=$(grep -c "mesh: refused a connection" "$TMP/node.err")
# Counts come as "... (N more like this)" on the next line of the kind, or
# as "mesh: connections refused (...): N more like this" once it is quiet.
more=$(grep "mesh: .*refused.* more like this" "$TMP/node.err" \
       | sed 's/.*[(:] \{0,1\}\([0-9][0-9]*\) more like this.*/\1/' | awk '{ s += $1 } END { print s + 0 }')
echo "# node log: $lines lines about refused strangers, $more more counted"
check "the node logged that it refused them" '[ "$lines" -ge 1 ]'
check "throttled: at most one line per 10 s (here $lines)" '[ "$lines" -le 3 ]' \
    "$(grep 'mesh:' "$TMP/node.err" | head -5)"
check "with the counted ones, every refusal is accounted for ($lines + $more >= 300)" \
    '[ $((lines + more)) -ge 300 ]'
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")
check "the node still serves" '[ "$code" = 200 ]'
finish
