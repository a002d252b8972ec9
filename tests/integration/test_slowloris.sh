#!/bin/bash
# Integration test of the node under slow clients, a real `stallmesh run` on
# loopback with its default [http] limits:
#
#   bash tests/integration/test_slowloris.sh build/stallmesh   (from the repo root)
#
# It checks that a phone loads `/` in under 2 s and a till's sale answers in
# under 1 s throughout two Slowloris runs (build/tools/slowloris, a byte of
# header a second on each connection, reopened when the node closes it):
# 3,000 connections from one address (127.0.0.2), then 250 from each of 20
# addresses (127.0.1.1 .. 127.0.1.20); that a body sent a byte a second is
# cut off at body_timeout_s; that the node refused connections
# and timed out slow headers and counted both in /metrics; that it said so
# in its log, throttled (a few lines per address, not one per connection);
# and that it still serves afterwards.  Figures are printed.  Each check
# prints "ok - ..." or "not ok - ..."; the last line is "N passed, M failed",
# and the script exits non-zero if M > 0.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
LORIS=$(dirname "$BIN")/tools/slowloris
RUN_S=${SLOWLORIS_RUN_S:-25}     # each run lasts longer than headers_timeout_s (10)

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

if [ ! -x "$BIN" ] || [ ! -x "$LORIS" ]; then
    nok "$BIN and $LORIS are executables (make all tools)"
    finish
fi
# The attack needs 8,000 descriptors at once, the node a few thousand.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" -lt 9000 ]; then
    nok "a descriptor limit of at least 9000 (ulimit -n: $(ulimit -n))"
    finish
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-slowloris.XXXXXX") || exit 1
DIR=$TMP/node
NODE_PID=
cleanup() {
    if [ -n "$NODE_PID" ]; then
        kill "$NODE_PID" 2>/dev/null
        wait "$NODE_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN" --dir "$DIR" init --name "Stall A" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$DIR" market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
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
auth=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')
curl -s -o /dev/null "${auth[@]}" -d '{"sku":"jam","name":"Plum jam","price":450}' "$URL/api/items"
code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -d '{"sku":"jam","qty":100000}' \
       "$URL/api/stock/add")
check "the stall has jam to sell" '[ "$code" = 201 ]' "stock/add: $code"

metric() {
    curl -s --max-time 5 "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

# attack NAME GROUP...: one timed run; sets $out.
attack() {
    local name=$1
    shift
    local args=()
    for g in "$@"; do args+=(--group "$g"); done
    out=$("$LORIS" --port "$PORT" --token-file "$DIR/api-token" --sku jam \
          --duration-s "$RUN_S" "${args[@]}" 2>&1)
    local rc=$?
    echo "$out" | sed "s/^/# $name: /"
    check "$name: the phone loads / in under 2 s and every sale answers in under 1 s" \
        '[ $rc -eq 0 ]' "$(echo "$out" | tail -1)"
    check "$name: probes ran throughout (at least $((RUN_S * 2)))" \
        '[ "$(echo "$out" | sed -n "s/.*probes=\([0-9]*\).*/\1/p")" -ge $((RUN_S * 2)) ]'
}

# A slow body, meanwhile, from an address of its own: a POST whose headers
# arrive at once and whose 100-byte body comes a byte a second.  The node
# must close it at body_timeout_s (20 s) after the headers, not later.
python3 - "$PORT" >"$TMP/slowbody.out" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.3", 0))
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /api/holds HTTP/1.1\r\nHost: stall\r\nContent-Type: application/json\r\n"
          b"Content-Length: 100\r\n\r\n{")
start = time.monotonic()
s.settimeout(1.0)
closed = None
for _ in range(40):
    try:
        s.send(b" ")
        if s.recv(1024) == b"":
            closed = time.monotonic() - start
            break
    except socket.timeout:
        continue
    except OSError:
        closed = time.monotonic() - start
        break
print("closed_after_s=%s" % ("%.1f" % closed if closed is not None else "never"))
PY
BODY_PID=$!

attack "3000 from one address" 127.0.0.2,1,3000
wait "$BODY_PID"
body=$(sed -n 's/^closed_after_s=//p' "$TMP/slowbody.out")
echo "# a body sent a byte a second was cut off after ${body:-?} s"
check "a slow body is cut off at body_timeout_s (20 s, within 18-24 s)" \
    'case "$body" in ""|never) false ;; *) awk -v t="$body" "BEGIN { exit !(t >= 18 && t <= 24) }" ;; esac' \
    "$(cat "$TMP/slowbody.out")"
check "and counted in /metrics" '[ "$(metric stallmesh_http_body_timeouts_total)" -ge 1 ]'
refused_addr=$(metric stallmesh_http_refused_address_total)
refused_req=$(metric stallmesh_http_refused_requests_total)
timeouts=$(metric stallmesh_http_headers_timeouts_total)
echo "# after the first run: refused $refused_addr (clients_per_addr_max) +" \
     "$refused_req (requests_per_addr_max), header timeouts $timeouts"
check "connections over the per-address limits were refused and counted" \
    '[ $(( ${refused_addr:-0} + ${refused_req:-0} )) -gt 0 ]'
check "slow headers were cut off at headers_timeout_s and counted" '[ "${timeouts:-0}" -gt 0 ]'

attack "250 from each of 20 addresses" 127.0.1.1,20,250
refused_req2=$(metric stallmesh_http_refused_requests_total)
echo "# after the second run: refused (requests_per_addr_max) $refused_req2 in all"
check "connections over requests_per_addr_max from each address were refused and counted" \
    '[ "${refused_req2:-0}" -gt "${refused_req:-0}" ]'

# The log: something about every offending address, but throttled.  At most
# two lines per address per 10 s of attack (a refusal kind and a timeout
# kind), plus their counts, for 21 addresses.
lines=$(grep -c -E 'web: (connection from|client) 127\.0\.[01]\.[0-9]+ |web: .*more like this' \
        "$TMP/node.err")
addrs=$(grep -o -E 'web: (connection from|client) 127\.0\.[01]\.[0-9]+' "$TMP/node.err" \
        | sort -u | wc -l)
bound=$(( 21 * 2 * (2 * RUN_S / 10 + 3) ))
echo "# node log: $lines lines about the attack, naming $addrs addresses (bound $bound)"
check "the node logged the offending addresses" '[ "$addrs" -ge 20 ]' \
    "$(grep 'web:' "$TMP/node.err" | head -5)"
check "its log lines about them are throttled" '[ "$lines" -le "$bound" ]'
check "the log says how many more were refused" 'grep -q "more like this" "$TMP/node.err"'

code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/")
check "the node still serves / after the attacks" '[ "$code" = 200 ]'
open=$(metric stallmesh_http_connections)
check "its open connections went back down (gauge $open)" '[ "${open:-99999}" -lt 50 ]'
finish
