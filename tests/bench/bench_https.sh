#!/bin/sh
# HTTPS beside plain HTTP on one real node (part of `make bench`):
#
#   sh tests/bench/bench_https.sh [BUILD]
#
# A node on free loopback ports with --http and --https, a 200-item catalog
# with stock made through the API (GET /api/stock about 49 KB), then:
#   (a) GET /api/stock with wrk -t2 -c64 over keep-alive connections, plain
#       HTTP and HTTPS; the HTTPS rate as a share of the plain one
#       (target: at least 50 %);
#   (b) new TLS handshakes a second: openssl s_time -new (one full
#       handshake, ECDHE with the node's ECDSA P-256 key, per connection,
#       no session reuse) for BENCH_TLS_SECONDS (default 5).
# wrk is installed with apt-get when missing and running as root.  Figures
# on a shared machine are indicative.  Only the node started here is
# stopped, by its PID.  Exits 1 if the node could not be started or a
# measurement failed; a missed target is printed, not an exit status.

BUILD=${1:-build}
BIN=$BUILD/stallmesh
SECONDS_WRK=${BENCH_WRK_SECONDS:-10}
SECONDS_TLS=${BENCH_TLS_SECONDS:-5}
ITEMS=200

[ -x "$BIN" ] || { echo "bench_https: $BIN is missing (make)" >&2; exit 1; }
if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1
    fi
    command -v wrk >/dev/null 2>&1 || { echo "bench_https: wrk is missing (apt-get install wrk)" >&2; exit 1; }
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-bench-tls.XXXXXX") || exit 1
NODE_PID=
cleanup() {
    if [ -n "$NODE_PID" ]; then
        kill "$NODE_PID" 2>/dev/null
        i=0
        while [ $i -lt 50 ] && kill -0 "$NODE_PID" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$NODE_PID" 2>/dev/null
        wait "$NODE_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "bench_https: $*" >&2; exit 1; }
row() { printf '  %-44s %s\n' "$1" "$2"; }
free_port() {
    i=0
    while [ $i -lt 50 ]; do
        p=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 30000 + 20000 ))
        if [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then echo "$p"; return 0; fi
        i=$((i + 1))
    done
    return 1
}

DIR=$TMP/node
"$BIN" --dir "$DIR" init --name "Bench stall" >/dev/null || die "init failed"
"$BIN" --dir "$DIR" market create --name "Bench market" >/dev/null || die "market create failed"
TOKEN=$(cat "$DIR/api-token")
PORT=$(free_port) || die "no free port"
TPORT=$(free_port) || die "no free port"
"$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --https "127.0.0.1:$TPORT" --listen none \
    --log-level warn >"$TMP/out" 2>"$TMP/err" &
NODE_PID=$!
i=0
until curl -fsk -o /dev/null --max-time 1 "https://127.0.0.1:$TPORT/readyz"; do
    i=$((i + 1)); [ $i -lt 100 ] || die "the node did not start: $(cat "$TMP/err")"
    sleep 0.1
done
n=0
while [ $n -lt $ITEMS ]; do
    curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data "{\"sku\":\"sku-$n\",\"name\":\"Item number $n with a longer name\",\"price\":$((100 + n))}" \
        "http://127.0.0.1:$PORT/api/items" || die "POST /api/items failed"
    curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data "{\"sku\":\"sku-$n\",\"qty\":50}" "http://127.0.0.1:$PORT/api/stock/add" \
        || die "POST /api/stock/add failed"
    n=$((n + 1))
done
bytes=$(curl -fsk "https://127.0.0.1:$TPORT/api/stock" | wc -c)

# rate URL: wrk's requests a second (keep-alive).
rate() {
    wrk -t2 -c64 -d"${SECONDS_WRK}s" "$1" 2>&1 | tee -a "$TMP/wrk" | awk '/^Requests\/sec/ { print $2 }'
}
plain=$(rate "http://127.0.0.1:$PORT/api/stock")
tls=$(rate "https://127.0.0.1:$TPORT/api/stock")
[ -n "$plain" ] && [ -n "$tls" ] || die "wrk gave no rate: $(cat "$TMP/wrk")"
share=$(awk -v a="$tls" -v b="$plain" 'BEGIN { printf "%.0f", 100 * a / b }')
verdict=$(awk -v s="$share" 'BEGIN { print (s >= 50) ? "met" : "MISSED" }')
hs=$(openssl s_time -connect "127.0.0.1:$TPORT" -new -time "$SECONDS_TLS" 2>/dev/null \
     | awk '/connections in .* real seconds/ { c = $1; t = $4 } END { if (t > 0) printf "%.0f", c / t }')
[ -n "$hs" ] || die "openssl s_time gave no figure"

echo "HTTPS beside plain HTTP ($ITEMS items, GET /api/stock $bytes bytes, wrk -t2 -c64 -d${SECONDS_WRK}s, keep-alive; load $(cut -d' ' -f1 /proc/loadavg))"
row "GET /api/stock, plain HTTP" "$plain req/s"
row "GET /api/stock, HTTPS (TLS 1.3, ECDSA P-256)" "$tls req/s: $share % of plain (target >= 50 %: $verdict)"
row "new TLS handshakes (openssl s_time -new)" "$hs handshakes/s"
