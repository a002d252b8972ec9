#!/bin/bash
# Benchmark of a livestream set-up (make bench runs it):
#
#   bash tests/bench/bench_mirror.sh [BUILD]      (from the repo root; BUILD=build)
#
# An organiser O, a stall A and a mirror M (`run --mirror`, relay role)
# following A over the mesh, on loopback; Debian's nginx in front of M with
# deploy/nginx/stallmesh.conf (addresses substituted), as tests/integration/
# test_nginx.sh starts it.  Prints, each with how it was measured:
#
#   (a) CLIENTS (10000) websocket viewers through nginx, one sale at A at a
#       time (ROUNDS rounds): the time from the sale's request to each
#       viewer's receipt of its delta, p50/p99 over all viewers and rounds
#       (tests/tools/wsprobe --fanout, viewers spread over 200 loopback
#       source addresses).  Target p99 <= 250 ms.
#   (b) GET /api/stock for SECONDS (10) with wrk (2 threads, 64 kept-alive
#       connections; tests/tools/httpload, REQUESTS requests, if wrk is not
#       installed), through nginx and at the mirror alone: the requests/s of
#       each, the mirror's request count (/metrics) before and after each, and
#       the CPU time (/proc/PID/stat) of the mirror, nginx's workers and the
#       generator during each.  Target:
#       nginx >= 5x the node alone, and the node's count flat (a few a
#       second) while nginx serves from its cache.
#
# On a machine shared with other work the figures are indicative only.
# Every process started here is stopped by its PID; every wait is bounded.
# Knobs: BENCH_MIRROR_CLIENTS, BENCH_MIRROR_ROUNDS, BENCH_MIRROR_REQUESTS,
# BENCH_MIRROR_SECONDS; BENCH_MIRROR_SKIP_WS=1 runs (b) alone,
# BENCH_MIRROR_SKIP_GET=1 (a) alone; BENCH_MIRROR_PROBE_ARGS adds options to
# wsprobe (--lws: the viewers on libwebsockets, as before, for comparison);
# BENCH_MIRROR_NGINX_CONF another nginx configuration in place of
# deploy/nginx/stallmesh.conf (to compare one); BENCH_MIRROR_GZIP=1 has wrk
# ask as a browser does (Accept-Encoding: gzip), which nginx compresses
# anew on each hit (wrk asks for no compression by default).
# Exits 1 if the set-up could not be started or a measurement failed; a
# missed target is printed, not an exit status.

BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
BIN=$BUILD/stallmesh
PROBE=$BUILD/tools/wsprobe
LOAD=$BUILD/tools/httpload
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CLIENTS=${BENCH_MIRROR_CLIENTS:-10000}
ROUNDS=${BENCH_MIRROR_ROUNDS:-10}
REQUESTS=${BENCH_MIRROR_REQUESTS:-20000}
DURATION=${BENCH_MIRROR_SECONDS:-10}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== bench_mirror: $CLIENTS websocket viewers and GET /api/stock through nginx in front of a mirror"
[ -x "$NGINX" ] || { echo "bench_mirror: nginx is not installed (deploy/deps.sh): skipped"; exit 0; }
for f in "$BIN" "$PROBE" "$LOAD"; do
    [ -x "$f" ] || { echo "bench_mirror: $f is not built (make all tools)"; exit 1; }
done
# Each viewer is two descriptors in nginx and one in the mirror.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-bmirror.XXXXXX") || exit 1
declare -A PID HP MP
NGINX_PID=
cleanup() {
    [ -n "$NGINX_PID" ] && kill -TERM "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    for n in "${!PID[@]}"; do [ -n "${PID[$n]}" ] && kill -TERM "${PID[$n]}" 2>/dev/null; done
    for n in "${!PID[@]}"; do
        p=${PID[$n]}; [ -n "$p" ] || continue
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE
die() { echo "bench_mirror: $*"; exit 1; }
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && { echo $p; return 0; }
    done
    return 1
}
sm() { local n=$1; shift; "$BIN" --dir "$TMP/$n" "$@"; }
start() {
    local n=$1; shift
    HP[$n]=$(free_port); MP[$n]=$(free_port)
    "$BIN" --dir "$TMP/$n" run --http "127.0.0.1:${HP[$n]}" --listen "tcp://127.0.0.1:${MP[$n]}" \
        --log-level warn "$@" >>"$TMP/$n.out" 2>>"$TMP/$n.log" &
    PID[$n]=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:${HP[$n]}/readyz" && return 0
        sleep 0.1
    done
    return 1
}
url() { echo "http://127.0.0.1:${HP[$1]}"; }
auth() { echo "Authorization: Bearer $(cat "$TMP/$1/api-token")"; }
requests_total() {
    curl -s --max-time 5 "$(url M)/metrics" | awk '/^stallmesh_http_requests_total/ { s += $2 } END { print s + 0 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

for n in O A M; do sm $n init --name "Node $n" >/dev/null || die "init $n"; done
sm O market create --name "Bench market" --currency GBP >/dev/null || die "market create"
start O || die "the organiser did not start"
ID_A=$(sm A id --json | jq -r .node); ID_M=$(sm M id --json | jq -r .node)
sm A join "$(sm O admit "$ID_A" --name A --endpoint "tcp://127.0.0.1:${MP[O]}")" >/dev/null || die "A join"
sm M join "$(sm O admit "$ID_M" --name M --role relay --endpoint "tcp://127.0.0.1:${MP[O]}")" >/dev/null || die "M join"
start A || die "the stall did not start"
printf '[http]\ntrusted_proxies = 127.0.0.1\n' >"$TMP/M/stallmesh.conf"
start M --mirror --peer "$ID_A@tcp://127.0.0.1:${MP[A]}" || die "the mirror did not start"
curl -s -o /dev/null -H "$(auth O)" -H 'Content-Type: application/json' \
    --data-binary '{"sku":"jam","name":"Plum jam","price":450}' "$(url O)/api/items"
for _ in $(seq 1 100); do
    curl -s -o /dev/null -w '%{http_code}' -H "$(auth A)" -H 'Content-Type: application/json' \
        --data-binary '{"sku":"jam","qty":100000}' "$(url A)/api/stock/add" | grep -q 201 && break
    sleep 0.2
done
for _ in $(seq 1 200); do
    [ "$(curl -s "$(url M)/api/stock" | jq -r '.items[0].total // 0')" = 100000 ] && break
    sleep 0.1
done

NGP=$(free_port)
NGI=$(free_port)        # the configuration's internal compressing server
mkdir -p "$TMP/nginx/logs" "$TMP/nginx/cache" "$TMP/nginx/conf"
# Two workers, the listening socket shared by SO_REUSEPORT: each viewer is two
# descriptors in nginx, and one process may have too few (ulimit -Hn).
sed -e "s|server 127.0.0.1:8080;|server 127.0.0.1:${HP[M]};|" -e "s|listen 80;|listen 127.0.0.1:$NGP reuseport;|" \
    -e "s|127.0.0.1:8079|127.0.0.1:$NGI|g" \
    -e "s|/var/cache/nginx/stallmesh|$TMP/nginx/cache|" \
    "${BENCH_MIRROR_NGINX_CONF:-$REPO/deploy/nginx/stallmesh.conf}" >"$TMP/nginx/conf/stallmesh.conf"
NGUSER=""; [ "$(id -u)" = 0 ] && NGUSER="user root;"
cat >"$TMP/nginx/conf/nginx.conf" <<NGINX
$NGUSER
daemon off;
worker_processes 2;
worker_rlimit_nofile $(ulimit -n);
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log error;
events { worker_connections $(( $(ulimit -n) - 100 )); }
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
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/conf/nginx.conf" >"$TMP/nginx/out.log" 2>&1 &
NGINX_PID=$!
NG="http://127.0.0.1:$NGP"
for _ in $(seq 1 50); do curl -s -o /dev/null --max-time 1 "$NG/api/stock" && break; sleep 0.1; done

# ---- (a) websocket viewers through nginx -----------------------------------------
cat >"$TMP/sell.sh" <<SELL
curl -s -o /dev/null -H "$(auth A)" -H 'Content-Type: application/json' \
  --data-binary '{"lines":[{"sku":"jam","qty":1}],"source":"in_person","payment":"card"}' "$(url A)/api/sales"
SELL
tree_ticks() {      # CPU ticks of pid $1 and its children (nginx's workers)
    local t=0 p
    for p in $1 $(pgrep -P "$1"); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
    echo $t
}
if [ "${BENCH_MIRROR_SKIP_WS:-0}" != 1 ]; then
echo "(a) $CLIENTS websocket viewers through nginx -> mirror; a sale at the stall each round"
c0=$(cpu_ticks "${PID[M]}"); n0=$(tree_ticks "$NGINX_PID"); t0=$(date +%s%N)
workers=""; for p in $(pgrep -P "$NGINX_PID"); do workers="$workers --cpu-pid $p"; done
# shellcheck disable=SC2086
"$PROBE" "ws://127.0.0.1:$NGP/ws" --fanout --clients "$CLIENTS" --sources 200 --batch 200 \
    --trigger "sh $TMP/sell.sh" --rounds "$ROUNDS" --pid "${PID[M]}" --timeout-ms 30000 \
    $workers ${BENCH_MIRROR_PROBE_ARGS:-} >"$TMP/fan.out" 2>&1 &
gen=$!; g=0
while kill -0 $gen 2>/dev/null; do     # the generator's own CPU, sampled to its end
    g=$(cpu_ticks $gen 2>/dev/null || echo "$g"); sleep 0.2
done
wait $gen
rc=$?
c1=$(cpu_ticks "${PID[M]}"); n1=$(tree_ticks "$NGINX_PID"); t1=$(date +%s%N)
tail -n 4 "$TMP/fan.out"
[ $rc = 0 ] || die "the fan-out failed (nginx: $(tail -n 2 "$TMP/nginx/logs/error.log"))"
p99=$(sed -n 's/^wsprobe:.* p99_ms=\([0-9.]*\).*/\1/p' "$TMP/fan.out")
awk -v p="$p99" 'BEGIN { printf "    delta p99 %.1f ms (target <= 250 ms): %s\n", p, (p <= 250 ? "met" : "MISSED") }'
field() { sed -n "s/^wsprobe:.* $1=\([0-9.]*\).*/\1/p" "$TMP/fan.out"; }
echo "    CPU during the rounds ($(field rounds_ms) ms of wall time, 2 cores): the generator (wsprobe)" \
     "$(field self_cpu_ms) ms, the mirror $(field pid_cpu_ms) ms, nginx (its workers and cache processes) $(field cpu_pids_ms) ms"
awk -v g="$(field self_cpu_ms)" -v m="$(field pid_cpu_ms)" -v n="$(field cpu_pids_ms)" \
    -v d="$((CLIENTS * ROUNDS))" 'BEGIN { if (d > 0) printf "    CPU a delta received: the generator %.1f us, the mirror %.1f us, nginx %.1f us\n", g * 1000 / d, m * 1000 / d, n * 1000 / d }'
echo "    CPU over the whole $(( (t1 - t0) / 1000000 )) ms run (connecting included): mirror $(( (c1 - c0) * 10 )) ms," \
     "nginx $(( (n1 - n0) * 10 )) ms, the generator $(( g * 10 )) ms"
echo "    uptime: $(uptime)"
fi

[ "${BENCH_MIRROR_SKIP_GET:-0}" = 1 ] && exit 0

# ---- (b) GET /api/stock through nginx vs the mirror alone -------------------------
# wrk (Debian's, deploy/deps.sh bench) when installed: one event loop a thread
# in C, well past what nginx serves on two cores; else tests/tools/httpload,
# whose ceiling (~37k req/s here) is below nginx's.  The CPU of the mirror,
# of nginx's workers and of the generator itself is printed for each run, so
# a figure limited by the generator shows as such.
WRK=$(command -v wrk)
if [ -n "$WRK" ]; then
    echo "(b) GET /api/stock for ${DURATION}s a run, 2 threads and 64 kept-alive connections (wrk)"
else
    echo "(b) GET /api/stock, $REQUESTS requests over 16 kept-alive connections (httpload; wrk not installed)"
fi
for target in nginx node; do
    u="$NG/api/stock"; [ $target = node ] && u="$(url M)/api/stock"
    r0=$(requests_total); c0=$(cpu_ticks "${PID[M]}"); n0=$(tree_ticks "$NGINX_PID"); t0=$(date +%s%N)
    if [ -n "$WRK" ]; then
        if [ "${BENCH_MIRROR_GZIP:-0}" = 1 ]; then
            "$WRK" -t2 -c64 -d"${DURATION}s" -H 'Accept-Encoding: gzip' "$u" >"$TMP/load.$target" 2>&1 &
        else
            "$WRK" -t2 -c64 -d"${DURATION}s" "$u" >"$TMP/load.$target" 2>&1 &
        fi
    else
        "$LOAD" "$u" --requests "$REQUESTS" --parallel 16 >"$TMP/load.$target" 2>&1 &
    fi
    gen=$!; g=0
    while kill -0 $gen 2>/dev/null; do     # the generator's CPU, sampled to its end
        g=$(cpu_ticks $gen 2>/dev/null || echo "$g"); sleep 0.2
    done
    wait $gen || die "load $target: $(cat "$TMP/load.$target")"
    t1=$(date +%s%N); c1=$(cpu_ticks "${PID[M]}"); n1=$(tree_ticks "$NGINX_PID"); r1=$(requests_total)
    if [ -n "$WRK" ]; then
        rps=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/load.$target")
        grep -q 'Non-2xx' "$TMP/load.$target" && die "load $target: $(grep Non-2xx "$TMP/load.$target")"
    else
        rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' "$TMP/load.$target")
    fi
    eval "rps_$target=$rps"
    ms=$(( (t1 - t0) / 1000000 ))
    printf '    %-5s %9s req/s over %d ms: the mirror answered %d requests (%d before, %d after), its CPU %d ms; nginx CPU %d ms; the generator CPU %d ms\n' \
        "$target" "$rps" "$ms" $((r1 - r0 - 1)) "$r0" "$r1" $(( (c1 - c0) * 10 )) \
        $(( (n1 - n0) * 10 )) $(( g * 10 ))
    # CPU per request of whoever served (the mirror, or nginx), and of the
    # generator: what the throughput would be with the CPU to spare.
    served=$((c1 - c0)); [ $target = nginx ] && served=$((n1 - n0))
    awk -v r="$rps" -v ms="$ms" -v s="$served" -v g="$g" -v who="$target" 'BEGIN { n = r * ms / 1000;
        if (n > 0) printf "          CPU a request: %s %.1f us, the generator %.1f us\n", (who == "nginx" ? "nginx" : "the mirror"), s * 10000 / n, g * 10000 / n }'
done
awk -v a="$rps_nginx" -v b="$rps_node" 'BEGIN { r = b > 0 ? a / b : 0;
    printf "    nginx / node alone: %.1fx (target >= 5x): %s\n", r, (r >= 5 ? "met" : "MISSED") }'
echo "    uptime: $(uptime)"
echo "    (one loaded machine runs nginx, the mirror, the stall and the load: indicative only)"
