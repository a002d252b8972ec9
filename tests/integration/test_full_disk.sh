#!/bin/bash
# Fault test: a full disk.  A real node whose data directory sits on a
# small tmpfs (2 MiB, mounted here; root only, skipped otherwise) sells
# until the store is full:
#
#   bash tests/integration/test_full_disk.sh build/stallmesh
#
# Checks that the sale the disk cannot hold is refused with 503 disk_full
# and its clear message (nothing half-written), that the node keeps serving
# reads and refusing writes the same way, that it stops cleanly, and that
# after a restart on the same full disk every sale it acknowledged (201)
# is there, the log verifies, and reads still work.  Each check prints
# "ok - ..." or "not ok - ..."; the last line is "N passed, M failed"; the
# exit status is non-zero if any failed.  Every loop is bounded; only the
# node this script started is stopped, by its PID; the tmpfs is unmounted.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

if [ "$(id -u)" != 0 ]; then
    echo "# skipped: mounting a small tmpfs needs root"
    echo "0 passed, 0 failed"
    exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-disk.XXXXXX") || exit 1
DISK=$TMP/disk
DIR=$DISK/stall
NODE_PID=
MOUNTED=
cleanup() {
    [ -n "$NODE_PID" ] && kill -KILL "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
    [ -n "$MOUNTED" ] && umount "$DISK" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR

mkdir -p "$DISK" && mount -t tmpfs -o size=2m,mode=0700 tmpfs "$DISK" && MOUNTED=1
check "a 2 MiB tmpfs is mounted for the data directory" '[ -n "$MOUNTED" ]'
[ -n "$MOUNTED" ] || finish
"$BIN" --dir "$DIR" init --name "Full stall" >/dev/null \
    && "$BIN" --dir "$DIR" market create --name "Disk market" --currency GBP >/dev/null \
    || { nok "init and market create on the small disk"; finish; }
TOKEN=$(cat "$DIR/api-token")
. "$(dirname "$0")/lib.sh"     # free_port
PORT=
start_node() {
    for _ in 1 2 3 4 5; do
        PORT=$(free_port)
        "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen none --log-level warn \
            >>"$TMP/node.out" 2>>"$TMP/node.err" &
        NODE_PID=$!
        for _ in $(seq 1 100); do
            curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/readyz" && return 0
            kill -0 "$NODE_PID" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; NODE_PID=
    done
    return 1
}
stop_node() {
    kill -TERM "$NODE_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.05; done
    wait "$NODE_PID"
    local rc=$?
    NODE_PID=
    return $rc
}
req() {
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$1" --max-time 10 \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        ${3:+--data-binary "$3"} "http://127.0.0.1:$PORT$2")
    body=$(cat "$TMP/body")
}

start_node || { nok "the node starts on the small disk" "$(tail -n 3 "$TMP/node.err")"; finish; }
req POST /api/items '{"sku":"tea","name":"Tea","price":300}'
req POST /api/stock/add '{"sku":"tea","qty":1000000}'
check "an item and a million units of stock are written" '[ "$code" = 201 ]' "$code $body"

# Sell (each sale with its own external id) until the disk refuses one.
acked=0
refused=""
for i in $(seq 1 20000); do
    req POST /api/sales "{\"lines\":[{\"sku\":\"tea\",\"qty\":1}],\"source\":\"in_person\",\"payment\":\"cash\",\"external_id\":\"till-$i\"}"
    if [ "$code" = 201 ]; then acked=$((acked + 1)); continue; fi
    refused="$code $body"
    break
done
echo "# $acked sales acknowledged before the disk filled"
err=$(printf '%s' "$body" | jq -r .error 2>/dev/null)
check "the sale the disk cannot hold is 503 disk_full with a clear message" \
    '[ "$code" = 503 ] && [ "$err" = disk_full ] && printf "%s" "$body" | grep -q "nothing was written"' \
    "after $acked sales: $refused"
check "hundreds of sales were acknowledged first" '[ "$acked" -ge 200 ]' "$acked"
req GET /api/stock
stock_code=$code
here=$(printf '%s' "$body" | jq -r '.items[] | select(.sku == "tea") | .here')
check "the node keeps serving reads: /api/stock shows every acknowledged sale" \
    '[ "$stock_code" = 200 ] && [ "$here" = $((1000000 - acked)) ]' "$stock_code here=$here acked=$acked"
req POST /api/sales '{"lines":[{"sku":"tea","qty":1}],"source":"in_person","payment":"cash","external_id":"till-again"}'
check "a later sale is refused the same way, and the node stays up" \
    '[ "$code" = 503 ] && kill -0 "$NODE_PID"' "$code $body"
check "the node stops cleanly on SIGTERM with the disk full" 'stop_node'

start_node || nok "the node starts again on the full disk" "$(tail -n 3 "$TMP/node.err")"
req GET "/api/sales?limit=1000"
listed=0
since=0
for _ in $(seq 1 100); do
    req GET "/api/sales?since=$since&limit=1000"
    n=$(printf '%s' "$body" | jq '.sales | length')
    [ "$n" -gt 0 ] 2>/dev/null || break
    listed=$((listed + n))
    since=$(printf '%s' "$body" | jq -r '.next // empty')
    [ -n "$since" ] || break
done
check "after the restart every acknowledged sale is there ($listed listed, $acked acknowledged)" \
    '[ "$listed" = "$acked" ]'
[ -n "$NODE_PID" ] && stop_node
check "the store verifies (every link and signature)" '"$BIN" --dir "$DIR" verify >/dev/null 2>&1'

# The mesh: a stall on a second small disk fetches an organiser's log of
# 20,000 sales (written by fill_store) until its disk is full.  Each round
# that cannot be stored is dropped whole and the sessions start again: the
# stall keeps serving, says "full" in its log, and does not spin.
FILL=$(dirname "$BIN")/bench/fill_store
DISK2=$TMP/disk2
if [ -x "$FILL" ] && mkdir -p "$DISK2" && mount -t tmpfs -o size=2m,mode=0700 tmpfs "$DISK2"; then
    O=$TMP/organiser S=$DISK2/stall
    "$BIN" --dir "$O" init --name Organiser >/dev/null && "$BIN" --dir "$O" market create --name "Mesh disk" >/dev/null \
        && "$BIN" --dir "$S" init --name Stall >/dev/null \
        && tok=$("$BIN" --dir "$O" admit "$("$BIN" --dir "$S" id --json | jq -r .node)" --name Stall) \
        && "$BIN" --dir "$S" join "$tok" >/dev/null && "$FILL" "$O" 20000 >/dev/null 2>&1
    check "an organiser with 20,000 sales and a stall on a 2 MiB disk are made" '[ $? = 0 ]'
    OP=$(free_port); OM=$(free_port); SP=$(free_port); SM=$(free_port)
    "$BIN" --dir "$O" run --http "127.0.0.1:$OP" --listen "tcp://127.0.0.1:$OM" --log-level warn \
        >/dev/null 2>"$TMP/o.err" &
    O_PID=$!
    "$BIN" --dir "$S" run --http "127.0.0.1:$SP" --listen "tcp://127.0.0.1:$SM" --log-level warn \
        --peer "$("$BIN" --dir "$O" id --json | jq -r .node)@tcp://127.0.0.1:$OM" >/dev/null 2>"$TMP/s.err" &
    S_PID=$!
    full_logged() { grep -qs "could not be stored: the store is full" "$TMP/s.err"; }
    for _ in $(seq 1 300); do full_logged && break; sleep 0.1; done
    check "the stall's disk fills while it fetches, and it says so" 'full_logged' \
        "$(tail -n 3 "$TMP/s.err"; tail -n 3 "$TMP/o.err")"
    t0=$(awk '{ print $14 + $15 }' "/proc/$S_PID/stat")
    sleep 4
    cpu=$(( $(awk '{ print $14 + $15 }' "/proc/$S_PID/stat") - t0 ))
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$SP/api/stock")
    check "meanwhile the stall serves (/api/stock $code) and does not spin ($cpu ticks of CPU in 4 s)" \
        '[ "$code" = 200 ] && [ "$cpu" -lt 200 ] && kill -0 "$S_PID"'
    for p in $S_PID $O_PID; do kill -TERM "$p" 2>/dev/null; done
    for p in $S_PID $O_PID; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
    done
    umount "$DISK2"
else
    nok "a second tmpfs and fill_store ($FILL) for the mesh part"
fi
finish
