#!/bin/sh
# Benchmarks of a real node on loopback (make bench runs it):
#
#   sh tests/bench/bench_node.sh [BUILD]          (from the repo root; BUILD=build)
#
# Starts a node (init, market create, run) on a free 127.0.0.1 port, makes a
# 200-item catalog with stock through the API, then prints, each with how it
# was measured and its target:
#
#   (a) websocket fan-out: CLIENTS (5000) websocket clients, one sale at a
#       time -> the time until every client has the delta (p50/p99), and the
#       node's RSS with them connected; beside it the same run against a bare
#       libwebsockets feed (build/tools/wsfeed) with a snapshot of the same
#       size: the machine's limit.  Target p99 < 100 ms.  Then a till's own
#       sales (TILL_ROUNDS x TILL_SALES, one at a time) while those clients
#       get the deltas: target p99 <= 10 ms.
#   (b) GET /api/stock and GET / with wrk (-t2 -c64 -d10s --latency), beside
#       nginx serving the same bytes as static files on another loopback port
#       (one worker, like the node's one web thread).  Target >= half nginx.
#   (c) a sale request -> 201, SALES (2000) one after another over one
#       kept-alive connection, each with a unique external id, durable
#       commits; then 16 tills at once (group commit); beside the raw durable
#       LMDB commit (build/bench/bench_ledger --commit-only); then the one at
#       a time and the 16 tills again from a node whose store is on a tmpfs
#       (/dev/shm), where a sync costs nothing: what the node itself costs,
#       the rest being the disk's.
#   (d) GET /api/state right after a sale, STATE_ROUNDS (200) rounds, on a
#       store of 1,000 sales and one of STATE_SALES (100,000; filled by
#       build/bench/fill_store): the state digest is kept as the node
#       writes, so both should answer alike.
#
# wrk and nginx-light are installed with apt-get when missing and running as
# root; otherwise those figures are skipped with a message.  Every process
# started here is stopped by its PID (TERM, then KILL after 5 s); every wait
# is bounded.  Knobs (environment): BENCH_WS_CLIENTS, BENCH_WS_ROUNDS,
# BENCH_TILL_ROUNDS, BENCH_TILL_SALES, BENCH_SALES, BENCH_WRK_SECONDS,
# BENCH_STATE_SALES, BENCH_STATE_ROUNDS, BENCH_SYNC_FREE (0: no tmpfs run),
# BENCH_SYNC_FREE_DIR (default /dev/shm), BENCH_PARTS (default "a b c d":
# which of the four parts run).  Exits 1 if the node could not be started
# or a measurement failed; a missed target is printed, not an exit status.

BUILD=${1:-build}
BIN=$BUILD/stallmesh
PROBE=$BUILD/tools/wsprobe
FEED=$BUILD/tools/wsfeed
LOAD=$BUILD/tools/httpload
LEDGER=$BUILD/bench/bench_ledger
CLIENTS=${BENCH_WS_CLIENTS:-5000}
ROUNDS=${BENCH_WS_ROUNDS:-20}
TILL_ROUNDS=${BENCH_TILL_ROUNDS:-5}
TILL_SALES=${BENCH_TILL_SALES:-100}
SALES=${BENCH_SALES:-2000}
WRK_SECONDS=${BENCH_WRK_SECONDS:-10}
PARTS=${BENCH_PARTS:-a b c d}
STATE_SALES=${BENCH_STATE_SALES:-100000}
STATE_ROUNDS=${BENCH_STATE_ROUNDS:-200}
# part X: true if part X was asked for.
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
ITEMS=200

for f in "$BIN" "$PROBE" "$FEED" "$LOAD" "$LEDGER"; do
    if [ ! -x "$f" ]; then
        echo "bench_node: $f is missing (make all tools $LEDGER)" >&2
        exit 1
    fi
done

. "$(dirname "$0")/sync_free.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-bench.XXXXXX") || exit 1
NODE_PID=
FEED_PID=
NGINX_PID=
failed=0

# stop PID: TERM, wait up to 5 s, then KILL; always reaps it.
stop() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null
    i=0
    while [ $i -lt 50 ] && kill -0 "$1" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -0 "$1" 2>/dev/null && kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
SHM=
cleanup() {
    stop "$NGINX_PID"
    stop "$FEED_PID"
    stop "$NODE_PID"
    rm -rf "$TMP"
    [ -z "$SHM" ] || rm -rf "$SHM"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }
# row LABEL TEXT: one aligned figure line.
row() { printf '  %-40s %s\n' "$1" "$2"; }
die() {
    say "bench_node: $*" >&2
    exit 1
}

# free_port: a loopback TCP port nobody listens on (50 tries).
free_port() {
    i=0
    while [ $i -lt 50 ]; do
        p=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 30000 + 20000 ))
        if [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
        i=$((i + 1))
    done
    return 1
}

# wait_http URL: up to 10 s for URL to answer 200.
wait_http() {
    i=0
    while [ $i -lt 100 ]; do
        curl -fs -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# start_node DIR LOG: run the node in DIR on a free loopback port, its
# output in LOG; sets NODE_PID, PORT and BASE; 1 if it is not ready in 10 s.
start_node() {
    PORT=$(free_port) || return 1
    "$BIN" --dir "$1" run --http "127.0.0.1:$PORT" --listen none >"$2" 2>&1 &
    NODE_PID=$!
    BASE=http://127.0.0.1:$PORT
    wait_http "$BASE/readyz"
}

# field LINE NAME: the value of NAME=VALUE in a tool's result line.
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
rss_kb() { sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' "/proc/$1/status" 2>/dev/null; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# verdict VALUE OP LIMIT: "met" or "MISSED" (OP is lt or ge, numbers as text).
verdict() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        ok = (op == "lt") ? (v + 0 < l + 0) : (v + 0 >= l + 0)
        print ok ? "met" : "MISSED" }'
}

# Room for thousands of sockets, for the node and the probe alike.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CLIENTS + 512)) ]; then
    say "bench_node: open-file limit $(ulimit -n) is below $((CLIENTS + 512)); fewer clients:"
    CLIENTS=$(( $(ulimit -n) - 512 ))
fi

# --- the node ---------------------------------------------------------------
DIR=$TMP/node
"$BIN" --dir "$DIR" init --name "bench stall" >/dev/null || die "init failed"
"$BIN" --dir "$DIR" market create --name "Bench Market" --currency GBP >/dev/null \
    || die "market create failed"
start_node "$DIR" "$TMP/node.log" \
    || die "the node did not become ready: $(tail -n 5 "$TMP/node.log")"
printf 'Authorization: Bearer %s\n' "$(cat "$DIR/api-token")" >"$TMP/auth"

# The catalog: one curl process, one kept-alive connection, 2 x ITEMS POSTs.
i=1
: >"$TMP/catalog.curl"
while [ $i -le $ITEMS ]; do
    sku=$(printf 'sku-%03d' $i)
    qty=1000
    [ $i -eq 1 ] && qty=$((SALES * 2 + 10000))
    cat >>"$TMP/catalog.curl" <<EOF
url = "$BASE/api/items"
header = "@$TMP/auth"
data = "{\"sku\":\"$sku\",\"name\":\"Hand-thrown mug, glaze no. $i\",\"price\":$((1200 + i * 25)),\"currency\":\"GBP\"}"
output = "/dev/null"
write-out = "%{http_code}\\n"
next
url = "$BASE/api/stock/add"
header = "@$TMP/auth"
data = "{\"sku\":\"$sku\",\"qty\":$qty}"
output = "/dev/null"
write-out = "%{http_code}\\n"
EOF
    [ $i -lt $ITEMS ] && echo "next" >>"$TMP/catalog.curl"
    i=$((i + 1))
done
curl -s --max-time 120 -K "$TMP/catalog.curl" >"$TMP/catalog.codes"
good=$(grep -c '^20[01]$' "$TMP/catalog.codes")
[ "$good" -eq $((ITEMS * 2)) ] || die "catalog: $good of $((ITEMS * 2)) requests succeeded"
curl -fs --max-time 5 "$BASE/api/stock" >"$TMP/stock.json" || die "GET /api/stock failed"
curl -fs --max-time 5 "$BASE/" >"$TMP/index.html" || die "GET / failed"
items=$(grep -o '"sku":' "$TMP/stock.json" | grep -c '')
[ "$items" -eq $ITEMS ] || die "the stock lists $items items, not $ITEMS"

load=$(cut -d' ' -f1-3 /proc/loadavg)
say "stallmesh node benchmark: $(nproc) CPUs, load average $load (other work on the"
say "machine shows in every figure), $(uname -sr); node on 127.0.0.1:$PORT, $ITEMS items"
say "(/api/stock $(wc -c <"$TMP/stock.json") bytes, / $(wc -c <"$TMP/index.html") bytes)"
say ""

# --- (a) websocket fan-out --------------------------------------------------
if part a; then
SOURCES=$(( (CLIENTS + 199) / 200 ))
[ $SOURCES -gt 254 ] && SOURCES=254
snapshot=$("$PROBE" "ws://127.0.0.1:$PORT/ws" --count 1 --timeout-ms 5000 | wc -c)
idle_kb=$(rss_kb $NODE_PID)
SALE_BODY='{"lines":[{"sku":"sku-002","qty":1}],"source":"in_person","payment":"card"}'
say "(a) websocket fan-out: $CLIENTS clients on /ws ($SOURCES loopback source addresses,"
say "    200 each), snapshot $snapshot bytes; $ROUNDS sales one at a time, each a curl"
say "    POST /api/sales; per client, the time from starting curl to having the delta"
say "    (wsprobe: one thread on epoll, so later clients include its own reading time)"
out=$(timeout 600 "$PROBE" "ws://127.0.0.1:$PORT/ws" --fanout --clients "$CLIENTS" \
      --sources $SOURCES --rounds "$ROUNDS" --pid $NODE_PID --timeout-ms 20000 \
      --trigger "curl -fsS --max-time 10 -o /dev/null -H @$TMP/auth -d '$SALE_BODY' $BASE/api/sales" \
      2>"$TMP/probe.err")
line=$(printf '%s\n' "$out" | grep '^wsprobe: ')
if [ -z "$line" ]; then
    row "node" "FAILED: $(tail -n 3 "$TMP/probe.err")"
    failed=1
else
    p99=$(field "$line" p99_ms)
    row "node: trigger -> delta, per client" \
        "p50 $(field "$line" p50_ms) ms, p99 $p99 ms, max $(field "$line" max_ms) ms  (target p99 < 100 ms: $(verdict "$p99" lt 100))"
    row "node: until the last client had it" \
        "p50 $(field "$line" all_p50_ms) ms, max $(field "$line" all_max_ms) ms per round"
    row "node: the sale request (curl) itself" "p50 $(field "$line" cmd_p50_ms) ms"
    kb=$(field "$line" rss_kb)
    row "node RSS" \
        "$(mib "$idle_kb") MiB idle, $(mib "$kb") MiB with $CLIENTS clients ($(( (kb - idle_kb) / CLIENTS )) kB a client)"
fi
# A till's own sales while the phones get the deltas they cause: each round
# is TILL_SALES sales one after another (httpload, kept alive); the figure
# is the median of the rounds' p50 and the worst round's p99.
: >"$TMP/till.out"
TILL_BODY='{"lines":[{"sku":"sku-003","qty":1}],"source":"in_person","payment":"card"}'
out=$(timeout 600 "$PROBE" "ws://127.0.0.1:$PORT/ws" --fanout --clients "$CLIENTS" \
      --sources $SOURCES --rounds "$TILL_ROUNDS" --pid $NODE_PID --timeout-ms 20000 \
      --trigger "$LOAD $BASE/api/sales --method POST --bearer-file $DIR/api-token --expect 201 --requests $TILL_SALES --parallel 1 --body '$TILL_BODY' >>$TMP/till.out 2>&1" \
      2>"$TMP/probe.err")
line=$(printf '%s\n' "$out" | grep '^wsprobe: ')
if [ -z "$line" ] || [ "$(grep -c '^httpload: ' "$TMP/till.out")" -ne "$TILL_ROUNDS" ]; then
    row "till sales with the phones" "FAILED: $(tail -n 3 "$TMP/probe.err" "$TMP/till.out")"
    failed=1
else
    t50=$(sed -n 's/.* p50_ms=\([0-9.]*\).*/\1/p' "$TMP/till.out" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    t99=$(sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p' "$TMP/till.out" | sort -n | tail -n 1)
    row "till: $TILL_SALES sales x $TILL_ROUNDS, $CLIENTS phones" \
        "p50 $t50 ms, p99 $t99 ms  (target p99 <= 10 ms: $(verdict "$t99" lt 10.001))"
    row "phones: those sales -> delta" \
        "p50 $(field "$line" p50_ms) ms, p99 $(field "$line" p99_ms) ms (first delta after each round's start)"
fi
FPORT=$(free_port) || die "no free port"
"$FEED" --port "$FPORT" --snapshot-bytes "$snapshot" >"$TMP/feed.out" 2>&1 &
FEED_PID=$!
wait_http "http://127.0.0.1:$FPORT/delta" || die "wsfeed did not start: $(cat "$TMP/feed.out")"
out=$(timeout 600 "$PROBE" "ws://127.0.0.1:$FPORT/ws" --fanout --clients "$CLIENTS" \
      --sources $SOURCES --rounds "$ROUNDS" --pid $FEED_PID --timeout-ms 20000 \
      --trigger "curl -fsS --max-time 10 -o /dev/null http://127.0.0.1:$FPORT/delta" \
      2>"$TMP/probe.err")
line=$(printf '%s\n' "$out" | grep '^wsprobe: ')
if [ -z "$line" ]; then
    row "bare libwebsockets feed" "FAILED: $(tail -n 3 "$TMP/probe.err")"
    failed=1
else
    row "bare libwebsockets feed, same sizes" \
        "p50 $(field "$line" p50_ms) ms, p99 $(field "$line" p99_ms) ms, max $(field "$line" max_ms) ms; $(mib "$(field "$line" rss_kb)") MiB"
    row "" "(the machine's limit: lws poll loop, no store, no JSON, a GET as trigger)"
fi
stop "$FEED_PID"
FEED_PID=
say ""
fi

# --- (b) GET throughput: node beside nginx ----------------------------------
if part b; then
have_tools() {
    command -v wrk >/dev/null 2>&1 && command -v nginx >/dev/null 2>&1 && return 0
    [ -x /usr/sbin/nginx ] && command -v wrk >/dev/null 2>&1 && return 0
    return 1
}
if ! have_tools && [ "$(id -u)" -eq 0 ]; then
    say "(installing wrk and nginx-light with apt-get)"
    # No service start during the install: only the nginx started below runs.
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
        wrk nginx-light >"$TMP/apt.log" 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive timeout 600 \
             apt-get install -y -qq --no-install-recommends wrk nginx-light >"$TMP/apt.log" 2>&1; }
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
say "(b) GET throughput: wrk -t2 -c64 -d${WRK_SECONDS}s --latency, the same machine running"
say "    the server; nginx (1 worker, access log off) serving the same bytes as files"
if ! command -v wrk >/dev/null 2>&1 || [ ! -x "$NGINX" ]; then
    row "skipped" "wrk or nginx is missing (as root: apt-get install wrk nginx-light)"
else
    NG=$TMP/nginx
    mkdir -p "$NG/www/api" "$NG/tmp"
    cp "$TMP/stock.json" "$NG/www/api/stock"
    cp "$TMP/index.html" "$NG/www/index.html"
    chmod -R a+rX "$NG"
    chmod a+x "$TMP"
    NPORT=$(free_port) || die "no free port"
    cat >"$NG/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $NG/nginx.pid;
error_log $NG/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    types { text/html html; }
    server {
        listen 127.0.0.1:$NPORT;
        root $NG/www;
        index index.html;
        location = /api/stock {
            default_type application/json;
            add_header Cache-Control no-cache;
        }
    }
}
EOF
    "$NGINX" -p "$NG" -c "$NG/nginx.conf" -e "$NG/error.log" >"$NG/stdout" 2>&1 &
    NGINX_PID=$!
    if ! wait_http "http://127.0.0.1:$NPORT/api/stock"; then
        row "skipped" "nginx did not start: $(tail -n 2 "$NG/error.log" "$NG/stdout" 2>/dev/null | tr '\n' ' ')"
    else
        # wrk_run URL: sets $rps, $p99 (ms) and $bad (non-2xx/3xx and socket errors).
        wrk_run() {
            timeout $((WRK_SECONDS + 30)) wrk -t2 -c64 -d"${WRK_SECONDS}s" --latency "$1" \
                >"$TMP/wrk.out" 2>&1
            rps=$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$TMP/wrk.out")
            p99=$(awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
                       f = (u == "us") ? 0.001 : (u == "s") ? 1000 : (u == "m") ? 60000 : 1;
                       printf "%.2f", v * f }' "$TMP/wrk.out")
            bad=$(sed -n 's/^[[:space:]]*Non-2xx or 3xx responses:[[:space:]]*\([0-9]*\).*/\1 non-2xx/p;
                         s/^[[:space:]]*Socket errors:\(.*\)/socket errors\1/p' "$TMP/wrk.out" | tr '\n' ' ')
            [ -n "$rps" ]
        }
        for path in /api/stock /; do
            if wrk_run "$BASE$path"; then
                n_rps=$rps
                n_p99=$p99
                n_bad=$bad
            else
                n_rps=
            fi
            if wrk_run "http://127.0.0.1:$NPORT$path"; then
                g_rps=$rps
                g_p99=$p99
            else
                g_rps=
            fi
            if [ -z "$n_rps" ] || [ -z "$g_rps" ]; then
                row "GET $path" "FAILED: $(tail -n 2 "$TMP/wrk.out" | tr '\n' ' ')"
                failed=1
                continue
            fi
            half=$(awk -v g="$g_rps" 'BEGIN { printf "%.0f", g / 2 }')
            row "node GET $path" \
                "$(printf '%.0f' "$n_rps") req/s, p99 $n_p99 ms  (target >= $half, half of nginx: $(verdict "$n_rps" ge "$half"))${n_bad:+ [$n_bad]}"
            row "nginx GET $path" "$(printf '%.0f' "$g_rps") req/s, p99 $g_p99 ms"
        done
    fi
    stop "$NGINX_PID"
    NGINX_PID=
fi
say ""
fi

# --- (c) sale latency --------------------------------------------------------
if part c; then
RUN=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
say "(c) sales: POST /api/sales -> 201 over kept-alive connections (httpload, libcurl),"
say "    each with a unique external_id, acknowledged after a durable commit"
sale_tpl='{"lines":[{"sku":"sku-001","qty":1}],"source":"in_person","payment":"card","external_id":"bench-'$RUN'-%PAR-%n"}'
# sales PARALLEL COUNT: run httpload; sets $line.
sales() {
    line=$(timeout 900 "$LOAD" "$BASE/api/sales" --method POST --bearer-file "$DIR/api-token" \
           --expect 201 --requests "$2" --parallel "$1" \
           --body "$(printf '%s' "$sale_tpl" | sed "s/%PAR/p$1/")" 2>"$TMP/load.err")
    [ -n "$line" ]
}
commits=$(TMPDIR=$TMP "$LEDGER" --commit-only 2>&1)
commit=$(printf '%s\n' "$commits" | sed -n 's/^durable commit latency, each *//p')
commit_p50=$(printf '%s\n' "$commit" | sed -n 's/^\([0-9.]*\) ms p50.*/\1/p')
sale_commit=$(printf '%s\n' "$commits" | sed -n 's/^durable sale commit latency, each *//p')
sale_commit_p50=$(printf '%s\n' "$sale_commit" | sed -n 's/^\([0-9.]*\) ms p50.*/\1/p')
# metric NAME: a counter of the node's /metrics.
metric() {
    curl -fs --max-time 5 "$BASE/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
if sales 1 "$SALES"; then
    p50=$(field "$line" p50_ms)
    lim=$(awk -v c="${commit_p50:-0}" 'BEGIN { printf "%.2f", c + 0.3 }')
    row "node: sale, one at a time" \
        "p50 $p50 ms, p99 $(field "$line" p99_ms) ms, max $(field "$line" max_ms) ms, mean $(field "$line" mean_ms) ms; $(field "$line" rps) sales/s ($SALES)"
    row "" "(target p50 <= commit p50 + 0.3 ms = $lim ms: $(verdict "$p50" lt "$lim.001"))"
    slim=$(awk -v c="${sale_commit_p50:-0}" 'BEGIN { printf "%.2f", c + 0.3 }')
    row "" "(beside a sale's own durable commit: p50 + 0.3 ms = $slim ms: $(verdict "$p50" lt "$slim.001"))"
else
    row "node: sale, one at a time" "FAILED: $(cat "$TMP/load.err")"
    failed=1
fi
for par in 16 64; do
    c0=$(metric stallmesh_commits_total)
    s0=$(metric stallmesh_sales_total)
    if sales $par "$SALES"; then
        c1=$(metric stallmesh_commits_total)
        s1=$(metric stallmesh_sales_total)
        per=$(awk -v c=$((c1 - c0)) -v s=$((s1 - s0)) 'BEGIN { printf "%.1f", c ? s / c : 0 }')
        rps=$(field "$line" rps)
        row "node: sales from $par tills at once" \
            "p50 $(field "$line" p50_ms) ms, p99 $(field "$line" p99_ms) ms; $rps sales/s, $per sales a commit"
        [ $par -eq 16 ] && row "" "(target >= 15000 sales/s: $(verdict "$rps" ge 15000))"
    else
        row "node: sales from $par tills at once" "FAILED: $(cat "$TMP/load.err")"
        failed=1
    fi
done
row "raw LMDB durable commit, same disk" "${commit:-FAILED}"
row "" "(bench_ledger --commit-only: one-entry appends of a stock add, each fsync'd)"
row "raw durable commit of a sale" "${sale_commit:-FAILED}"
row "" "(the same, of a one-line sale with an external id after 2,000 others: the"
row "" " pages a sale writes, its external id's index and the report's totals among them)"
fi

stop "$NODE_PID"
NODE_PID=

# The same two figures from a node whose store is on a tmpfs, where a sync
# costs nothing: what the node itself costs, beside the disk's syncs above.
if part c; then
if SHM=$(sync_free_dir "$TMP" stallmesh-bench-shm); then
    DIR=$SHM/node
    "$BIN" --dir "$DIR" init --name "bench stall" >/dev/null \
        && "$BIN" --dir "$DIR" market create --name "Bench Market" --currency GBP >/dev/null \
        && start_node "$DIR" "$TMP/shm-node.log" || die "the tmpfs node did not start"
    for req in "/api/items {\"sku\":\"sku-001\",\"name\":\"Mug\",\"price\":1200}" \
               "/api/stock/add {\"sku\":\"sku-001\",\"qty\":$((SALES * 2 + 10000))}"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
               -H "Authorization: Bearer $(cat "$DIR/api-token")" \
               --data-binary "${req#* }" "$BASE${req%% *}" 2>/dev/null)
        [ "$code" = 201 ] || die "tmpfs node: POST ${req%% *} answered $code"
    done
    say "    the same, the node's store on a tmpfs (a sync costs nothing there): what the node"
    say "    itself costs; the difference from the figures above is the disk's syncs"
    for par in 1 16; do
        label="tmpfs: sales from $par tills at once"
        [ $par = 1 ] && label="tmpfs: sale, one at a time"
        if sales $par "$SALES"; then
            row "$label" "p50 $(field "$line" p50_ms) ms, p99 $(field "$line" p99_ms) ms; $(field "$line" rps) sales/s ($SALES)"
        else
            row "$label" "FAILED: $(cat "$TMP/load.err")"
            failed=1
        fi
    done
    stop "$NODE_PID"
    NODE_PID=
    rm -rf "$SHM"
    SHM=
else
    row "tmpfs: the same without syncs" "$SHM"
    SHM=
fi
row "load average after" "$(cut -d' ' -f1-3 /proc/loadavg)"
fi

# --- (d) GET /api/state on a large store ------------------------------------
# Its digest covers the whole state; the node keeps it as it writes, so the
# answer should cost the same on a store of STATE_SALES sales as on a small
# one.  Each round: a sale (the state moves), then GET /api/state, timed.
if part d; then
FILL=$BUILD/bench/fill_store
say ""
say "(d) GET /api/state right after a sale (the digest of a state that just moved), $STATE_ROUNDS rounds"
for n in 1000 "$STATE_SALES"; do
    SD=$TMP/state-$n
    if ! { "$BIN" --dir "$SD" init --name "state bench" >/dev/null \
           && "$BIN" --dir "$SD" market create --name "State Market" >/dev/null \
           && "$FILL" "$SD" "$n" >/dev/null; }; then
        row "node: GET /api/state, $n sales" "FAILED: could not fill the store"
        failed=1
        continue
    fi
    if ! start_node "$SD" "$TMP/state.log"; then
        row "node: GET /api/state, $n sales" "FAILED: the node did not start: $(tail -n 2 "$TMP/state.log")"
        failed=1
        stop "$NODE_PID"; NODE_PID=
        continue
    fi
    printf 'Authorization: Bearer %s\n' "$(cat "$SD/api-token")" >"$TMP/state.auth"
    curl -fs -o /dev/null --max-time 5 -H "@$TMP/state.auth" \
        -d "{\"sku\":\"bench\",\"qty\":$((STATE_ROUNDS + 10))}" "$BASE/api/stock/add"
    : >"$TMP/state.times"
    : >"$TMP/state.codes"
    i=0
    while [ $i -lt "$STATE_ROUNDS" ]; do
        curl -s -o /dev/null --max-time 5 -w '%{http_code}\n' -H "@$TMP/state.auth" \
            -d '{"lines":[{"sku":"bench","qty":1}],"source":"in_person","payment":"card"}' \
            "$BASE/api/sales" >>"$TMP/state.codes"
        curl -fs -o /dev/null --max-time 5 -w '%{time_total}\n' "$BASE/api/state" >>"$TMP/state.times"
        i=$((i + 1))
    done
    stop "$NODE_PID"
    NODE_PID=
    sold=$(grep -c '^201$' "$TMP/state.codes")
    got=$(grep -c . "$TMP/state.times")
    if [ "$sold" -ne "$STATE_ROUNDS" ] || [ "$got" -ne "$STATE_ROUNDS" ]; then
        row "node: GET /api/state, $n sales" "FAILED: $sold sales and $got answers of $STATE_ROUNDS"
        failed=1
        continue
    fi
    sort -n "$TMP/state.times" >"$TMP/state.sorted"
    p50=$(awk -v n="$got" 'NR == int(n * 0.5) { printf "%.2f", $1 * 1000 }' "$TMP/state.sorted")
    p99=$(awk -v n="$got" 'NR == int(n * 0.99) { printf "%.2f", $1 * 1000 }' "$TMP/state.sorted")
    row "node: GET /api/state, store of $n sales" "p50 $p50 ms, p99 $p99 ms (curl's time_total, a new connection each)"
done
row "" "(target: the same on both stores: the digest is kept, not recomputed)"
fi
exit $failed
