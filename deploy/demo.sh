#!/bin/bash
# `make demo`: a market on this machine.  An organiser and three stalls,
# each a real `stallmesh run` on 127.0.0.1 with its own data directory and
# mesh listener, a sample catalog with stock at every stall, then a slow
# stream of sales at every stall (one every 2-5 s each, from the API, as a
# till would) until Ctrl-C.  Open the printed stock pages to watch them
# change live, the tills to sell by hand; a stall out of an item asks the
# others for units, and an item sold out everywhere is restocked.
#
#   bash deploy/demo.sh [BUILD/stallmesh]
#
# Environment: DEMO_DIR (data directories; default a new temporary one,
# removed at the end unless DEMO_KEEP=1), DEMO_SECONDS (stop after this
# many seconds; default: run until Ctrl-C), DEMO_HTTP_PORT (the organiser's
# port, stalls on the next three; default 8080, or free ports if taken).
# Ctrl-C stops the four nodes, by their PIDs (TERM, then KILL after 5 s).
set -u

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
[ -x "$BIN" ] || { echo "demo: $BIN is missing (run make)" >&2; exit 1; }
for tool in curl jq ss; do
    command -v $tool >/dev/null 2>&1 || { echo "demo: $tool is missing (make deps)" >&2; exit 1; }
done

if [ -n "${DEMO_DIR:-}" ]; then
    DIR=$DEMO_DIR
    mkdir -p "$DIR" || exit 1
    [ -z "$(ls -A "$DIR")" ] || { echo "demo: $DIR is not empty" >&2; exit 1; }
else
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-demo.XXXXXX") || exit 1
fi
NODES="O S1 S2 S3"
declare -A NAME=([O]="Market office" [S1]="Honey & Hive" [S2]="Crust Bakery" [S3]="Clay Studio")
declare -A PID HP MP ID
stopping=
cleanup() {
    stopping=1
    for n in $NODES; do [ -n "${PID[$n]:-}" ] && kill -TERM "${PID[$n]}" 2>/dev/null; done
    for n in $NODES; do
        p=${PID[$n]:-}
        [ -n "$p" ] || continue
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ -z "${DEMO_DIR:-}" ] && [ -z "${DEMO_KEEP:-}" ]; then
        rm -rf "$DIR"
    else
        echo "demo: data directories and logs kept in $DIR"
    fi
}
trap cleanup EXIT
trap 'echo; echo "demo: stopping"; exit 0' INT TERM

say() { printf 'demo: %s\n' "$*"; }
sm() { local n=$1; shift; "$BIN" --dir "$DIR/$n" "$@"; }
port_free() { [ -z "$(ss -Htan "sport = :$1" 2>/dev/null)" ]; }
random_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        port_free $p && { echo $p; return 0; }
    done
    return 1
}
url() { echo "http://127.0.0.1:${HP[$1]}"; }
# api NODE METHOD PATH [BODY]: sets $code and $body.
api() {
    local args=(-s -o "$DIR/.body" -w '%{http_code}' -X "$2" --max-time 10
                -H "Authorization: Bearer $(cat "$DIR/$1/api-token")")
    [ -n "${4:-}" ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
    code=$(curl "${args[@]}" "$(url "$1")$3")
    body=$(cat "$DIR/.body" 2>/dev/null)
}
# wait_for SECONDS COMMAND...: poll every 200 ms.
wait_for() {
    local tries=$(($1 * 5))
    shift
    for _ in $(seq 1 $tries); do "$@" && return 0; sleep 0.2; done
    return 1
}

# Ports: the organiser on DEMO_HTTP_PORT (8080) and the stalls after it,
# mesh on 7400...; any taken: free ports picked at random instead.
base=${DEMO_HTTP_PORT:-8080}
i=0
for n in $NODES; do
    HP[$n]=$((base + i)); MP[$n]=$((7400 + i)); i=$((i + 1))
    port_free "${HP[$n]}" || HP[$n]=$(random_port)
    port_free "${MP[$n]}" || MP[$n]=$(random_port)
done

say "data directories in $DIR"
for n in $NODES; do
    sm $n init --name "${NAME[$n]}" >/dev/null || exit 1
    ID[$n]=$(sm $n id --json | jq -r .node)
done
sm O market create --name "Demo Saturday Market" --currency GBP >/dev/null || exit 1
for n in S1 S2 S3; do
    token=$(sm O admit "${ID[$n]}" --name "${NAME[$n]}" --endpoint "tcp://127.0.0.1:${MP[O]}") || exit 1
    sm $n join "$token" >/dev/null || exit 1
done
for n in $NODES; do
    "$BIN" --dir "$DIR/$n" run --http "127.0.0.1:${HP[$n]}" --listen "tcp://127.0.0.1:${MP[$n]}" \
        >"$DIR/$n.out" 2>"$DIR/$n.log" &
    PID[$n]=$!
    if ! wait_for 10 curl -fs -o /dev/null --max-time 1 "$(url $n)/readyz"; then
        say "${NAME[$n]} did not start: $(tail -n 3 "$DIR/$n.log")"
        exit 1
    fi
done
connected_all() {
    [ "$(curl -s --max-time 2 "$(url "$1")/api/peers" | jq '[.peers[] | select(.connected)] | length')" -ge 3 ]
}
for n in $NODES; do wait_for 20 connected_all $n || say "${NAME[$n]} is not connected to all yet"; done

# The catalog, at the organiser; stock at each stall once the catalog is there.
SKUS="honey jam loaf bun mug bowl"
api O POST /api/items '{"sku":"honey","name":"Wildflower honey 340g","price":750}'
api O POST /api/items '{"sku":"jam","name":"Plum jam","price":450}'
api O POST /api/items '{"sku":"loaf","name":"Sourdough loaf","price":420}'
api O POST /api/items '{"sku":"bun","name":"Cardamom bun","price":280}'
api O POST /api/items '{"sku":"mug","name":"Speckled mug","price":1800}'
api O POST /api/items '{"sku":"bowl","name":"Small bowl","price":1400}'
has_catalog() {
    [ "$(curl -s --max-time 2 "$(url "$1")/api/stock" | jq '.items | length')" = 6 ]
}
declare -A STOCK=([S1]="honey:12 jam:10 mug:2" [S2]="loaf:15 bun:24 jam:4" [S3]="mug:8 bowl:6 honey:3")
for n in S1 S2 S3; do
    wait_for 20 has_catalog $n || say "the catalog has not reached ${NAME[$n]} yet"
    for pair in ${STOCK[$n]}; do
        api $n POST /api/stock/add "{\"sku\":\"${pair%%:*}\",\"qty\":${pair##*:}}"
    done
done

echo
echo "Demo Saturday Market: four nodes on 127.0.0.1 (Ctrl-C stops them all)"
for n in $NODES; do
    printf '  %-14s stock page %-26s till %s/till\n' "${NAME[$n]}" "$(url $n)/" "$(url $n)"
done
echo "  The organiser's view of the market: $(url O)/market (token in $DIR/O/api-token)"
echo "  The till asks for the token in DIR/api-token, e.g. $DIR/S1/api-token:"
echo "    $(cat "$DIR/S1/api-token")"
echo "  Peers: curl $(url S1)/api/peers   State: curl $(url S1)/api/state"
echo

# Sales: each stall sells one item every 2-5 s; out of units everywhere,
# the stall restocks it.  Bounded by DEMO_SECONDS if set.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
declare -A NEXT
start_ms=$(now_ms)
for n in S1 S2 S3; do NEXT[$n]=$((start_ms + 1000 + RANDOM % 3000)); done
end_ms=
[ -n "${DEMO_SECONDS:-}" ] && end_ms=$((start_ms + DEMO_SECONDS * 1000))
set -- $SKUS
nskus=$#
sales=0
while [ -z "$stopping" ]; do
    t=$(now_ms)
    [ -n "$end_ms" ] && [ "$t" -ge "$end_ms" ] && break
    for n in S1 S2 S3; do
        [ "$t" -ge "${NEXT[$n]}" ] || continue
        NEXT[$n]=$((t + 2000 + RANDOM % 3001))
        k=$((RANDOM % nskus + 1))
        sku=${!k}
        qty=$((RANDOM % 2 + 1))
        payment=$( case $((RANDOM % 3)) in 0) echo card ;; 1) echo cash ;; *) echo qr ;; esac )
        api $n POST /api/sales "{\"lines\":[{\"sku\":\"$sku\",\"qty\":$qty}],\"source\":\"in_person\",\"payment\":\"$payment\"}"
        case $code in
        201)
            sales=$((sales + 1))
            printf '%s  %-14s sold %d x %-6s %s  (%s)\n' "$(date +%H:%M:%S)" "${NAME[$n]}" \
                "$qty" "$sku" "$(awk -v t="$(printf '%s' "$body" | jq -r .total)" 'BEGIN { printf "%.2f GBP", t / 100 }')" "$payment"
            ;;
        409)
            total=$(printf '%s' "$body" | jq -r '.total // 0')
            printf '%s  %-14s no %s here (%s in the market)' "$(date +%H:%M:%S)" "${NAME[$n]}" "$sku" "$total"
            if [ "$total" = 0 ]; then
                api $n POST /api/stock/add "{\"sku\":\"$sku\",\"qty\":10}"
                printf ': restocked 10 (%s)' "$code"
            fi
            echo
            ;;
        *) printf '%s  %-14s sale of %s: %s %s\n' "$(date +%H:%M:%S)" "${NAME[$n]}" "$sku" "$code" "$body" ;;
        esac
    done
    sleep 0.2
done
say "$sales sales; digests:"
for n in $NODES; do
    printf '  %-14s %s\n' "${NAME[$n]}" "$(curl -s --max-time 2 "$(url $n)/api/state" | jq -r .digest)"
done
