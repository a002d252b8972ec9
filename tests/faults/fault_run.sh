#!/bin/bash
# Fault runs on real processes (issue: sim/ and fault runs).
#
#   bash tests/faults/fault_run.sh [--seconds N] [--seed S] [BIN]
#
# Five real nodes (an organiser and four stalls), each in a network
# namespace of its own on a private bridge (10.213.77.0/24) that this script
# creates and removes.  A sale storm runs at every stall; meanwhile faults
# are injected at random: SIGKILL of a node (restarted after a moment), a
# node's link cut and restored, loss and delay on a link (tc netem), an
# asymmetric cut (traffic towards a node dropped, from it not).  Every sale
# the API acknowledged (201, or 200 for a retried external_id) is recorded
# by the driver; a request that got no answer is retried with the same
# external_id until it gets one, so a sale committed just before a SIGKILL
# is still counted once.
#
# Afterwards, with every link healed: the digests converge, no acknowledged
# sale is missing from its stall's log, the market's units equal what was
# added minus what the acknowledged sales took (nothing oversold, nothing
# counted twice), and `stallmesh verify` is clean on every node.  The last
# lines report the figures; the exit status is non-zero if any check failed.
#
# Without network namespaces (not root, or no `ip netns`) the run falls back
# to loopback, with SIGSTOP/SIGCONT standing in for cut links.
# Every wait is bounded; only processes this script started are signalled,
# by PID.

set -u
SECONDS_RUN=45
SEED=$$
BIN=build/stallmesh
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) BIN=$1; shift ;;
    esac
done
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
RANDOM=$SEED
N=5                                  # node 0 organises; 1..4 are stalls
SKUS=(mug tee cap bag)
UNITS_PER_SKU=30                     # added at each stall for each sku

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-faults.XXXXXX") || exit 1
TAG=$(printf '%04x' $(( $$ % 65536 )))
BR=smfb$TAG
declare -a HOST HTTP MESH NS VETH
NETNS=no
STORM_PIDS=()
INJECTOR_PID=

cleanup() {
    for p in "${STORM_PIDS[@]}" $INJECTOR_PID; do kill -KILL "$p" 2>/dev/null; done
    for i in $(seq 0 $((N - 1))); do
        p=$(pid "$i")
        [ -n "$p" ] && kill -CONT "$p" 2>/dev/null
        [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
    done
    if [ "$NETNS" = yes ]; then
        for i in $(seq 0 $((N - 1))); do
            ip link del "${VETH[$i]}" 2>/dev/null
            ip netns del "${NS[$i]}" 2>/dev/null
        done
        ip link del "$BR" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR

# ---- network -----------------------------------------------------------------
setup_netns() {
    [ "$(id -u)" -eq 0 ] || return 1
    ip link add "$BR" type bridge 2>/dev/null || return 1
    ip addr add 10.213.77.254/24 dev "$BR" && ip link set "$BR" up || return 1
    for i in $(seq 0 $((N - 1))); do
        NS[$i]=smf$TAG-$i
        VETH[$i]=smf${TAG}v$i
        ip netns add "${NS[$i]}" || return 1
        ip link add "${VETH[$i]}" type veth peer name eth0 netns "${NS[$i]}" || return 1
        ip link set "${VETH[$i]}" master "$BR" up || return 1
        ip -n "${NS[$i]}" addr add "10.213.77.$((i + 1))/24" dev eth0 || return 1
        ip -n "${NS[$i]}" link set eth0 up && ip -n "${NS[$i]}" link set lo up || return 1
        HOST[$i]=10.213.77.$((i + 1))
        HTTP[$i]=8080
        MESH[$i]=7400
    done
    return 0
}
if setup_netns; then
    NETNS=yes
else
    # Undo a half-made setup, then use loopback.
    for i in $(seq 0 $((N - 1))); do
        [ -n "${VETH[$i]:-}" ] && ip link del "${VETH[$i]}" 2>/dev/null
        [ -n "${NS[$i]:-}" ] && ip netns del "${NS[$i]}" 2>/dev/null
    done
    ip link del "$BR" 2>/dev/null
    base=$((20000 + RANDOM % 12000))
    for i in $(seq 0 $((N - 1))); do
        HOST[$i]=127.0.0.1
        HTTP[$i]=$((base + 2 * i))
        MESH[$i]=$((base + 2 * i + 1))
    done
fi
NETEM=no
[ "$NETNS" = yes ] && modprobe sch_netem 2>/dev/null
if [ "$NETNS" = yes ] && tc qdisc add dev "${VETH[1]}" root netem delay 1ms 2>/dev/null; then
    tc qdisc del dev "${VETH[1]}" root 2>/dev/null
    NETEM=yes
fi
echo "# seed $SEED, $SECONDS_RUN s of faults, network namespaces: $NETNS, netem: $NETEM"

url() { echo "http://${HOST[$1]}:${HTTP[$1]}"; }
pid() { cat "$TMP/pid.$1" 2>/dev/null; }
dir() { echo "$TMP/n$1"; }

start_node() {
    local i=$1
    local args=(--dir "$(dir "$i")" run --http "${HOST[$i]}:${HTTP[$i]}"
                --listen "tcp://${HOST[$i]}:${MESH[$i]}"
                --advertise "tcp://${HOST[$i]}:${MESH[$i]}" --log-level warn)
    if [ "$NETNS" = yes ]; then
        ip netns exec "${NS[$i]}" "$BIN" "${args[@]}" >>"$TMP/n$i.out" 2>>"$TMP/n$i.err" &
    else
        "$BIN" "${args[@]}" >>"$TMP/n$i.out" 2>>"$TMP/n$i.err" &
    fi
    echo $! >"$TMP/pid.$i"       # the injector restarts nodes in a subshell
    for _ in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "$(url "$i")/readyz" && return 0
        kill -0 "$(pid "$i")" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# ---- the market ------------------------------------------------------------------
for i in $(seq 0 $((N - 1))); do
    "$BIN" --dir "$(dir "$i")" init --name "Node $i" >/dev/null || { nok "init node $i"; exit 1; }
done
"$BIN" --dir "$(dir 0)" market create --name "Fault market" --currency GBP >/dev/null
for i in $(seq 1 $((N - 1))); do
    id=$("$BIN" --dir "$(dir "$i")" id --json | sed 's/.*"node": *"\([0-9a-f]*\)".*/\1/')
    token=$("$BIN" --dir "$(dir 0)" admit "$id" --name "Stall $i" \
        --endpoint "tcp://${HOST[0]}:${MESH[0]}" | tail -n 1)
    "$BIN" --dir "$(dir "$i")" join "$token" >/dev/null || { nok "stall $i joins"; exit 1; }
done
started=yes
for i in $(seq 0 $((N - 1))); do start_node "$i" || started=no; done
check "five nodes start" '[ "$started" = yes ]' "$(tail -n 3 "$TMP"/n*.err)"
[ "$started" = yes ] || exit 1

tok() { cat "$(dir "$1")/api-token"; }
post() {   # post NODE PATH BODY -> prints the HTTP code; body in $TMP/post.$1
    curl -s -o "$TMP/post.$1" -w '%{http_code}' --max-time 5 -X POST \
        -H "Authorization: Bearer $(tok "$1")" -H 'Content-Type: application/json' \
        --data-binary "$3" "$(url "$1")$2"
}
for s in "${SKUS[@]}"; do
    post 0 /api/items "{\"sku\":\"$s\",\"name\":\"$s\",\"price\":500}" >/dev/null
done
# Every stall needs the catalog before it can restock: wait for it.
for i in $(seq 1 $((N - 1))); do
    for _ in $(seq 1 200); do
        n=$(curl -s --max-time 2 "$(url "$i")/api/stock" | grep -o '"sku"' | wc -l)
        [ "$n" -ge ${#SKUS[@]} ] && break
        sleep 0.1
    done
done
added=0
for i in $(seq 1 $((N - 1))); do
    for s in "${SKUS[@]}"; do
        # A stall checks its own log with its peers first (503 recovering
        # for a few seconds after it starts): retried, bounded.
        for _ in $(seq 1 50); do
            code=$(post "$i" /api/stock/add "{\"sku\":\"$s\",\"qty\":$UNITS_PER_SKU}")
            [ "$code" = 503 ] || break
            sleep 0.2
        done
        [ "$code" = 201 ] && added=$((added + UNITS_PER_SKU))
    done
done
check "every stall restocks every sku" '[ "$added" = $(( (N - 1) * ${#SKUS[@]} * UNITS_PER_SKU )) ]'

# ---- the storm -------------------------------------------------------------------
# One driver a stall: sells 1-3 units of a random sku; a request without an
# answer is retried with the same external_id until it gets one.
storm() {
    local i=$1 stop_at=$2 k=0 code qty sku ext
    RANDOM=$((SEED + i))
    while [ "$(date +%s)" -lt "$stop_at" ]; do
        k=$((k + 1))
        qty=$((1 + RANDOM % 3))
        sku=${SKUS[$((RANDOM % ${#SKUS[@]}))]}
        ext="f$i-$k"
        for _ in $(seq 1 600); do
            code=$(curl -s -o "$TMP/storm.$i" -w '%{http_code}' --max-time 3 -X POST \
                -H "Authorization: Bearer $(tok "$i")" -H 'Content-Type: application/json' \
                --data-binary "{\"lines\":[{\"sku\":\"$sku\",\"qty\":$qty}],\"source\":\"in_person\",\"payment\":\"cash\",\"external_id\":\"$ext\"}" \
                "$(url "$i")/api/sales")
            case $code in
            200|201) echo "$ext $(sed 's/.*"id":"\([0-9a-f]*:[0-9]*\)".*/\1/' "$TMP/storm.$i") $qty $sku" >>"$TMP/acked.$i"; break ;;
            409) echo "$ext" >>"$TMP/refused.$i"; break ;;
            4??) echo "$ext $code" >>"$TMP/bad.$i"; break ;;
            *) sleep 0.2 ;;      # no answer (node down, cut off): retry, same external_id
            esac
        done
        sleep 0.0$((RANDOM % 10))
    done
}
stop_at=$(( $(date +%s) + SECONDS_RUN ))
for i in $(seq 1 $((N - 1))); do
    storm "$i" "$stop_at" &
    STORM_PIDS+=($!)
done

# ---- faults ------------------------------------------------------------------------
faults_kill=0 faults_cut=0 faults_netem=0 faults_asym=0
inject() {
    while [ "$(date +%s)" -lt "$stop_at" ]; do
        sleep $((2 + RANDOM % 3))
        local i=$((1 + RANDOM % (N - 1))) kind=$((RANDOM % 4))
        [ "$NETNS" = yes ] || kind=$((RANDOM % 2))
        case $kind in
        0)  # SIGKILL mid-storm, restart
            kill -KILL "$(pid "$i")" 2>/dev/null
            for _ in $(seq 1 100); do kill -0 "$(pid "$i")" 2>/dev/null || break; sleep 0.02; done
            echo kill >>"$TMP/faults"
            sleep 0.$((RANDOM % 9 + 1))
            start_node "$i" || echo "restart $i failed" >>"$TMP/faults.err" ;;
        1)  # cut the node off for a while
            if [ "$NETNS" = yes ]; then
                ip link set "${VETH[$i]}" down
                sleep $((1 + RANDOM % 4))
                ip link set "${VETH[$i]}" up
            else
                kill -STOP "$(pid "$i")"; sleep $((1 + RANDOM % 4)); kill -CONT "$(pid "$i")"
            fi
            echo cut >>"$TMP/faults" ;;
        2)  # loss and delay on its link
            if [ "$NETEM" = yes ]; then
                tc qdisc add dev "${VETH[$i]}" root netem loss 20% delay 40ms 20ms 2>/dev/null
                sleep $((2 + RANDOM % 3))
                tc qdisc del dev "${VETH[$i]}" root 2>/dev/null
                echo netem >>"$TMP/faults"
            fi ;;
        3)  # asymmetric: traffic towards the node dropped, from it not
            if [ "$NETEM" = yes ]; then
                tc qdisc add dev "${VETH[$i]}" root netem loss 100% 2>/dev/null
                sleep $((1 + RANDOM % 3))
                tc qdisc del dev "${VETH[$i]}" root 2>/dev/null
                echo asym >>"$TMP/faults"
            fi ;;
        esac
    done
}
inject &
INJECTOR_PID=$!
wait "${STORM_PIDS[@]}" 2>/dev/null
STORM_PIDS=()
wait "$INJECTOR_PID" 2>/dev/null
INJECTOR_PID=

# ---- heal and check ------------------------------------------------------------------
for i in $(seq 0 $((N - 1))); do
    kill -CONT "$(pid "$i")" 2>/dev/null
    if [ "$NETNS" = yes ]; then
        ip link set "${VETH[$i]}" up 2>/dev/null
        tc qdisc del dev "${VETH[$i]}" root 2>/dev/null
    fi
    kill -0 "$(pid "$i")" 2>/dev/null || start_node "$i"
done
digest() { curl -s --max-time 2 "$(url "$1")/api/state" | sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p'; }
converged=no
for _ in $(seq 1 240); do
    d0=$(digest 0); same=yes
    for i in $(seq 1 $((N - 1))); do [ "$(digest "$i")" = "$d0" ] || same=no; done
    [ -n "$d0" ] && [ "$same" = yes ] && { converged=yes; break; }
    sleep 0.25
done
check "after healing, all five digests converge (within 60 s)" '[ "$converged" = yes ]' \
    "$(for i in $(seq 0 $((N - 1))); do echo "node $i: $(digest "$i")"; done)"

acked=0 acked_units=0 lost=0
for i in $(seq 1 $((N - 1))); do
    [ -f "$TMP/acked.$i" ] || continue
    curl -s --max-time 5 -H "Authorization: Bearer $(tok "$i")" \
        "$(url "$i")/api/sales?limit=1000" >"$TMP/sales.$i"
    next=$(sed -n 's/.*"next":\([0-9]*\).*/\1/p' "$TMP/sales.$i")
    for _ in $(seq 1 100); do
        [ -n "$next" ] || break
        curl -s --max-time 5 -H "Authorization: Bearer $(tok "$i")" \
            "$(url "$i")/api/sales?since=$next&limit=1000" >"$TMP/page.$i"
        cat "$TMP/page.$i" >>"$TMP/sales.$i"
        n2=$(sed -n 's/.*"next":\([0-9]*\).*/\1/p' "$TMP/page.$i")
        [ "$n2" = "$next" ] && break
        next=$n2
    done
    sort -u -k2,2 "$TMP/acked.$i" >"$TMP/acked_u.$i"
    while read -r _ id qty _; do
        acked=$((acked + 1))
        acked_units=$((acked_units + qty))
        grep -q "\"id\":\"$id\"" "$TMP/sales.$i" || lost=$((lost + 1))
    done <"$TMP/acked_u.$i"
done
remaining=$(curl -s --max-time 5 "$(url 0)/api/stock" | grep -o '"total":[0-9-]*' | \
    sed 's/"total"://' | awk '{s += $1} END {print s + 0}')
oversold=$(( acked_units - (added - remaining) ))
[ "$oversold" -lt 0 ] && oversold_abs=$(( -oversold )) || oversold_abs=$oversold
negative=$(curl -s --max-time 5 "$(url 0)/api/stock" | grep -o '"units":-[0-9]*' | wc -l)
check "no acknowledged sale is lost ($lost of $acked missing)" '[ "$acked" -gt 0 ] && [ "$lost" = 0 ]'
check "units: added - acknowledged sales = what remains (difference $oversold)" '[ "$oversold" = 0 ]' \
    "added $added, acknowledged units $acked_units, remaining $remaining"
check "no location holds negative units" '[ "$negative" = 0 ]'
forks=$(curl -s --max-time 5 "$(url 0)/api/state" | grep -o '"forks":\[[^]]*\]')
check "no fork was reported" '[ "$forks" = "\"forks\":[]" ]' "$forks"

# Stop every node cleanly, then verify every store.
for i in $(seq 0 $((N - 1))); do kill -TERM "$(pid "$i")" 2>/dev/null; done
for i in $(seq 0 $((N - 1))); do
    for _ in $(seq 1 100); do kill -0 "$(pid "$i")" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$(pid "$i")" 2>/dev/null
    rm -f "$TMP/pid.$i"
done
verified=0
for i in $(seq 0 $((N - 1))); do
    "$BIN" --dir "$(dir "$i")" verify >/dev/null 2>&1 && verified=$((verified + 1))
done
check "stallmesh verify is clean on every node" '[ "$verified" = "$N" ]'

count() { local c; c=$(grep -cx "$1" "$TMP/faults" 2>/dev/null); echo "${c:-0}"; }
refused=$(cat "$TMP"/refused.* 2>/dev/null | wc -l)
echo "# faults injected: $(count kill) SIGKILL+restart, $(count cut) cut links, $(count netem) loss+delay, $(count asym) asymmetric"
echo "# sales acknowledged $acked ($acked_units units), refused for want of units $refused, lost $lost, oversold $oversold_abs"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
