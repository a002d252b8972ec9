#!/bin/bash
# Benchmarks of the mesh: real nodes on 127.0.0.1 (make bench runs it):
#
#   bash tests/bench/bench_mesh.sh [BUILD]        (from the repo root; BUILD=build)
#
# Prints, each with how it was measured and its target:
#
#   (a) propagation: a line A - B - C (B organises; nothing advertised, so A
#       and C only reach each other through B).  SALES (200) sales at A one
#       after another; for each, the time from the start of its POST until
#       B's and C's GET /api/stock show it (build/tools/meshlat: a poller
#       asking every 250 us with If-None-Match), p50/p99.  Beside it a raw
#       ZeroMQ CURVE round trip on loopback (build/tools/zmqping) and a
#       durable LMDB commit (build/bench/bench_ledger --commit-only): every
#       hop costs a commit before it relays.  Target C: p50 <= 2 ms, p99 <= 10 ms (the speed issue's).
#       Then the same line again with the three stores on a tmpfs (/dev/shm),
#       where a sync costs nothing: what the nodes and the mesh cost, the
#       rest being the syncs of three nodes on one disk.
#   (b) catch-up: an organiser with CATCHUP (1,000,000) sales in its log
#       (build/bench/fill_store appends them to its store before it starts),
#       a fresh stall started with it as its only peer: entries per second
#       from the stall's start until its head of the organiser's log matches
#       (GET /api/peers every 100 ms until the entries received reach the
#       organiser's head, then GET /api/state for the head itself; /api/state
#       hashes the whole state, too costly to ask every 100 ms).  Target
#       >= 150,000 entries/s.  The stall's and the organiser's peak RSS
#       meanwhile, sampled with each poll and split as /proc/PID/status does:
#       RssAnon (heap, queues, batches: target <= 64 MiB) and RssFile (pages
#       of LMDB's map, which the kernel reclaims at will).
#   (c) bytes on the wire per sale on the line of (a): the TCP payload of
#       every mesh connection, both ways (ss -tin bytes_sent, both ends of
#       each connection), over 200 sales at A, less the idle rate measured
#       over 10 s just before (heartbeats, periodic HEADS); no target.  And
#       idle CPU and RSS of a node with 10 peers: 11 nodes (an organiser, 10
#       stalls that find each other through PEERS), all connected, then 30 s
#       idle: CPU from /proc/PID/stat (utime+stime), RSS from
#       /proc/PID/status; no target.
#
# Every process started here is stopped by its PID (TERM, then KILL after
# 5 s); every wait is bounded.  Knobs (environment): BENCH_MESH_SALES,
# BENCH_CATCHUP_ENTRIES, BENCH_IDLE_PEERS, BENCH_IDLE_SECONDS, BENCH_SYNC_FREE
# (0: no tmpfs run), BENCH_SYNC_FREE_DIR (default /dev/shm), BENCH_MESH_PARTS
# (default "a b c": (a) with the wire bytes of (c), (b), the idle part of (c)).  Exits 1 if a
# node could not be started or a measurement failed; a missed target is
# printed, not an exit status.

BUILD=${1:-build}
BIN=$BUILD/stallmesh
MESHLAT=$BUILD/tools/meshlat
ZMQPING=$BUILD/tools/zmqping
LOAD=$BUILD/tools/httpload
FILL=$BUILD/bench/fill_store
LEDGER=$BUILD/bench/bench_ledger
SALES=${BENCH_MESH_SALES:-200}
CATCHUP=${BENCH_CATCHUP_ENTRIES:-1000000}
PEERS=${BENCH_IDLE_PEERS:-10}
IDLE_S=${BENCH_IDLE_SECONDS:-30}
PARTS=${BENCH_MESH_PARTS:-a b c}
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

for f in "$BIN" "$MESHLAT" "$ZMQPING" "$LOAD" "$FILL" "$LEDGER"; do
    if [ ! -x "$f" ]; then
        echo "bench_mesh: $f is missing (make all tools $FILL $LEDGER)" >&2
        exit 1
    fi
done
for tool in curl jq ss awk; do
    command -v $tool >/dev/null 2>&1 || { echo "bench_mesh: $tool is missing" >&2; exit 1; }
done

. "$(dirname "$0")/sync_free.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-benchmesh.XXXXXX") || exit 1
declare -A PID HP MP ID
failed=0

# stop NODE: TERM, wait up to 5 s, then KILL; always reaps it.
stop() {
    local p=${PID[$1]:-}
    [ -n "$p" ] || return 0
    kill "$p" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    PID[$1]=
}
cleanup() {
    for n in "${!PID[@]}"; do [ -n "${PID[$n]}" ] && kill "${PID[$n]}" 2>/dev/null; done
    for n in "${!PID[@]}"; do stop "$n"; done
    rm -rf "$TMP"
    [ -z "$SHM" ] || rm -rf "$SHM"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }
row() { printf '  %-44s %s\n' "$1" "$2"; }
die() { say "bench_mesh: $*" >&2; exit 1; }
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
verdict() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        ok = (op == "lt") ? (v + 0 < l + 0) : (op == "le") ? (v + 0 <= l + 0) : (v + 0 >= l + 0)
        print ok ? "met" : "MISSED" }'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 30000))
        [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && { echo $p; return 0; }
    done
    return 1
}
# Node NAME's data directory is $ROOT/NAME: on TMP, or on a tmpfs for the
# line's second run (sync_free_dir).
ROOT=$TMP
SHM=
sm() { local n=$1; shift; "$BIN" --dir "$ROOT/$n" "$@"; }
url() { echo "http://127.0.0.1:${HP[$1]}"; }
get() { curl -s --max-time 5 "$(url "$1")$2"; }
# start NODE [RUN ARGS...]: on fresh ports (retried on a clash); up to 10 s for /readyz.
start() {
    local n=$1
    shift
    for _ in 1 2 3 4 5; do
        HP[$n]=$(free_port) && MP[$n]=$(free_port) || return 1
        "$BIN" --dir "$ROOT/$n" run --http "127.0.0.1:${HP[$n]}" \
            --listen "tcp://127.0.0.1:${MP[$n]}" --log-level warn "$@" \
            >"$TMP/$n.out" 2>>"$TMP/$n.log" &
        PID[$n]=$!
        for _ in $(seq 1 100); do
            curl -s -o /dev/null --max-time 1 "$(url "$n")/readyz" && return 0
            kill -0 "${PID[$n]}" 2>/dev/null || break
            sleep 0.1
        done
        stop "$n"
    done
    return 1
}
# api NODE METHOD PATH BODY: with NODE's token; sets $code and $body. A node
# that has just started answers its first writes 503 recovering while it checks
# its own log with its peers (about 1.5 s): such a write is retried, for up to 10 s.
api() {
    for _ in $(seq 1 100); do
        code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$2" --max-time 10 \
            -H "Authorization: Bearer $(cat "$ROOT/$1/api-token")" \
            -H 'Content-Type: application/json' --data-binary "$4" "$(url "$1")$3")
        body=$(cat "$TMP/body")
        [ "$code" = 503 ] && [ "$(jq -r .error "$TMP/body" 2>/dev/null)" = recovering ] || return 0
        sleep 0.1
    done
}
# until_true SECONDS COMMAND...: poll every 100 ms.
until_true() {
    local tries=$(($1 * 10))
    shift
    for _ in $(seq 1 $tries); do "$@" && return 0; sleep 0.1; done
    return 1
}
# new_node NAME: init a data directory; sets ID[NAME].
new_node() { sm "$1" init --name "$1" >/dev/null && ID[$1]=$(sm "$1" id --json | jq -r .node); }
# join NODE ORGANISER [ENDPOINT]: ORGANISER admits NODE (store, not running), NODE joins.
join() {
    local tok
    tok=$(sm "$2" admit "${ID[$1]}" --name "$1" ${3:+--endpoint "$3"}) && sm "$1" join "$tok" >/dev/null
}
connected_count() { get "$1" /api/peers | jq '[.peers[] | select(.connected)] | length'; }
units_at() {
    get "$1" /api/stock | jq -r --arg s "$2" --arg l "$3" \
        '[.items[] | select(.sku == $s) | .locations[] | select(.node == $l) | .units] | add // -1'
}
# wire_bytes PORT...: TCP payload sent so far on every connection to or from the ports.
wire_bytes() {
    local filter="" p
    for p in "$@"; do filter="$filter${filter:+ or }sport = :$p or dport = :$p"; done
    ss -Htin state established "( $filter )" 2>/dev/null \
        | grep -o 'bytes_sent:[0-9]*' | awk -F: '{ s += $2 } END { printf "%d", s }'
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

say "stallmesh mesh benchmark: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work"
say "on the machine shows in every figure), $(uname -sr); every node on 127.0.0.1"
say ""

# --- (a) propagation on a line A - B - C ------------------------------------------
# line_up: init A, B (the organiser) and C in $ROOT, start them as a line,
# catalog and stock at A, until C has A's stock and each end has only B.
line_up() {
    for n in A B C; do new_node $n || die "init $n"; done
    sm B market create --name "Bench line" --currency GBP >/dev/null || die "market create"
    join A B && join C B || die "join"
    start B --advertise none || die "B did not start: $(tail -n 3 "$TMP/B.log")"
    for n in A C; do
        start $n --advertise none --peer "${ID[B]}@tcp://127.0.0.1:${MP[B]}" \
            || die "$n did not start: $(tail -n 3 "$TMP/$n.log")"
    done
    api B POST /api/items '{"sku":"lat","name":"Latency jar","price":100}'
    has_item() { get "$1" /api/stock | jq -e '.items[] | select(.sku == "lat")' >/dev/null; }
    until_true 20 has_item A || die "the item did not reach A"
    api A POST /api/stock/add "{\"sku\":\"lat\",\"qty\":$((SALES * 4 + 1000))}"
    [ "$code" = 201 ] || die "stock add at A: $code $body"
    stocked() { [ "$(units_at C lat "${ID[A]}")" = $((SALES * 4 + 1000)) ]; }
    until_true 20 stocked || die "A's stock did not reach C"
    line_ok() { [ "$(connected_count A)" = 1 ] && [ "$(connected_count C)" = 1 ]; }
    until_true 10 line_ok || die "A and C should each have B as their only peer: $(get C /api/peers)"
}
SALE='{"lines":[{"sku":"lat","qty":1}],"source":"in_person","payment":"card"}'
# line_times PREFIX: SALES sales at A, each timed until B, then C, shows it;
# rows labelled with PREFIX; the targets' verdicts only without one.
line_times() {
    local hop p50 p99 tail
    for hop in B C; do
        line=$(timeout 300 "$MESHLAT" --post "$(url A)/api/sales" --bearer-file "$ROOT/A/api-token" \
               --body "$SALE" --watch "$(url $hop)/api/stock" --sku lat --node "${ID[A]}" \
               --count "$SALES" 2>"$TMP/meshlat.err")
        if [ -z "$line" ]; then
            row "${1}sale at A -> visible at $hop" "FAILED: $(cat "$TMP/meshlat.err")"
            failed=1
            continue
        fi
        p50=$(field "$line" visible_p50_ms); p99=$(field "$line" visible_p99_ms)
        if [ $hop = C ]; then
            tail=""
            [ -n "$1" ] || tail="  (target p50 <= 2 ms: $(verdict "$p50" lt 2.001), p99 <= 10 ms: $(verdict "$p99" lt 10.001))"
            row "${1}sale at A -> visible at C (2 hops)" \
                "p50 $p50 ms, p99 $p99 ms, max $(field "$line" visible_max_ms) ms$tail"
        else
            row "${1}sale at A -> visible at B (1 hop)" "p50 $p50 ms, p99 $p99 ms, max $(field "$line" visible_max_ms) ms"
            row "${1}the sale's POST at A -> 201" "p50 $(field "$line" post_p50_ms) ms, p99 $(field "$line" post_p99_ms) ms"
        fi
    done
}
if part a; then
line_up
say "(a) a sale at A -> shown by GET /api/stock at B (1 hop) and C (2 hops, relayed by B);"
say "    $SALES sales one after another, timed from the start of the POST at A (meshlat:"
say "    a poller asks every 250 us with If-None-Match); every hop commits durably first"
line_times ""
line=$("$ZMQPING" --count 2000 --bytes 320 2>&1)
row "raw ZeroMQ CURVE round trip, 320 bytes" \
    "p50 $(field "$line" p50_us) us, p99 $(field "$line" p99_us) us  (zmqping: DEALER/ROUTER, loopback)"
commit=$(TMPDIR=$TMP "$LEDGER" --commit-only 2>&1 | sed -n 's/^durable commit latency, each *//p')
row "durable LMDB commit, same disk" "${commit:-FAILED}"
say ""

# --- (c) bytes on the wire per sale, same line ---------------------------------
say "(c) bytes on the wire per sale on the line A - B - C: TCP payload of every mesh"
say "    connection both ways (ss -tin bytes_sent), 200 sales at A (httpload), less the"
say "    idle rate over 10 s just before (ZMTP heartbeats each 1 s, HEADS each 5 s)"
b0=$(wire_bytes "${MP[A]}" "${MP[B]}" "${MP[C]}"); t0=$(now_ms)
sleep 10
b1=$(wire_bytes "${MP[A]}" "${MP[B]}" "${MP[C]}"); t1=$(now_ms)
idle_rate=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.1f", b * 1000 / t }')
before=$(units_at C lat "${ID[A]}")
line=$(timeout 300 "$LOAD" "$(url A)/api/sales" --method POST --bearer-file "$ROOT/A/api-token" \
       --expect 201 --requests 200 --parallel 1 --body "$SALE" 2>"$TMP/load.err")
seen_all() { [ "$(units_at C lat "${ID[A]}")" = $((before - 200)) ]; }
if [ -z "$line" ] || ! until_true 20 seen_all; then
    row "bytes per sale" "FAILED: $(cat "$TMP/load.err")"
    failed=1
else
    b2=$(wire_bytes "${MP[A]}" "${MP[B]}" "${MP[C]}"); t2=$(now_ms)
    per=$(awk -v b=$((b2 - b1)) -v t=$((t2 - t1)) -v r="$idle_rate" \
          'BEGIN { printf "%.0f", (b - r * t / 1000) / 200 }')
    row "idle mesh traffic, 3 nodes, 2 links" "$idle_rate bytes/s"
    row "one sale, A -> B -> C (2 hops)" "$per bytes ($(( per / 2 )) a hop; $((b2 - b1)) bytes in $((t2 - t1)) ms for 200)"
fi
for n in A B C; do stop $n; done
say ""
# The line again with the three stores on a tmpfs, where a sync costs
# nothing: what the nodes and the mesh cost, beside the disk's syncs above.
if SHM=$(sync_free_dir "$TMP" stallmesh-benchmesh-shm); then
    ROOT=$SHM
    line_up
    say "(a) again, the three stores on a tmpfs (a sync costs nothing there): what the nodes"
    say "    and the mesh cost; the difference from (a) is the disk's syncs, all three nodes'"
    say "    on the one disk"
    line_times "tmpfs: "
    for n in A B C; do stop $n; done
    rm -rf "$SHM"
    SHM=
    ROOT=$TMP
else
    row "(a) with the stores on a tmpfs" "$SHM"
    SHM=
fi
say ""
fi

# --- (b) catch-up of a fresh stall -----------------------------------------------
if part b; then
say "(b) catch-up: an organiser with $CATCHUP sales in its own log (fill_store, before it"
say "    starts); a fresh stall started with it as its only peer, timed from its start"
say "    until its head of the organiser's log matches (GET /api/peers every 100 ms until"
say "    the entries received reach it, then GET /api/state for the head)"
new_node CO && new_node CS || die "init"
sm CO market create --name "Bench catch-up" --currency GBP >/dev/null || die "market create"
join CS CO || die "join"
fill=$(timeout 1200 "$FILL" "$ROOT/CO" "$CATCHUP" 2>&1) || die "fill_store: $fill"
target=$(field "$fill" head)
row "the organiser's log, written by fill_store" \
    "$target entries, $(field "$fill" entries_per_s) appends/s (signed, group commit)"
start CO || die "the organiser did not start: $(tail -n 3 "$TMP/CO.log")"
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
co_ticks=$(ticks "${PID[CO]}")
t0=$(now_ms)
start CS --peer "${ID[CO]}@tcp://127.0.0.1:${MP[CO]}" || die "the stall did not start"
# rss_peak NODE: keep the peaks of RssAnon and RssFile (kB) in ANON[NODE], FILE[NODE].
declare -A ANON FILE
rss_peak() {
    local a f
    read -r a f < <(awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { print a + 0, f + 0 }' \
                    "/proc/${PID[$1]}/status" 2>/dev/null)
    [ "${a:-0}" -gt "${ANON[$1]:-0}" ] && ANON[$1]=$a
    [ "${f:-0}" -gt "${FILE[$1]:-0}" ] && FILE[$1]=$f
    return 0
}
# The poll asks /api/peers (the entries received from the organiser, a
# counter) and /api/state for the head itself only once they are all there, or
# once a second: /api/state hashes the whole state for its digest (a million
# sales: tens of ms a call), and asked every 100 ms it took half the stall's
# CPU during the catch-up it measures.
polls=0
caught_up() {
    rss_peak CS; rss_peak CO
    local got
    polls=$((polls + 1))
    got=$(get CS /api/peers | jq -r '[.peers[].entries_received] | add // 0')
    [ "${got:-0}" -ge "$target" ] 2>/dev/null || [ $((polls % 10)) = 0 ] || return 1
    [ "$(get CS /api/state | jq -r --arg o "${ID[CO]}" '.heads[$o].seq // 0')" = "$target" ]
}
if until_true 600 caught_up; then
    t1=$(now_ms)
    hz=$(getconf CLK_TCK)
    cs_cpu=$(awk -v t="$(ticks "${PID[CS]}")" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')
    co_cpu=$(awk -v t=$(( $(ticks "${PID[CO]}") - co_ticks )) -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')
    rate=$(awk -v n="$target" -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1000 / t }')
    row "stall: start -> organiser's head matched" \
        "$(awk -v t=$((t1 - t0)) 'BEGIN { printf "%.2f", t / 1000 }') s: $rate entries/s  (target >= 150,000/s: $(verdict "$rate" ge 150000))"
    same=$( [ "$(get CS /api/state | jq -r .digest)" = "$(get CO /api/state | jq -r .digest)" ] && echo yes || echo NO)
    row "" "CPU meanwhile: stall $cs_cpu s ($(awk -v n="$target" -v c="$cs_cpu" 'BEGIN { printf "%.0f", n / c }') entries per CPU-second), organiser $co_cpu s"
    row "" "(digests equal after: $same; the stall's RSS $(awk '/VmRSS/ { printf "%.1f MiB", $2 / 1024 }' /proc/${PID[CS]}/status), LMDB pages included)"
    for n in CS CO; do
        who=stall; [ $n = CO ] && who=organiser
        row "$who: peak RSS during the catch-up" \
            "anonymous $(mib "${ANON[$n]:-0}") MiB (target <= 64 MiB: $(verdict "${ANON[$n]:-0}" le 65536)), file-backed (LMDB map) $(mib "${FILE[$n]:-0}") MiB"
    done
else
    row "catch-up" "FAILED: not caught up in 600 s ($(get CS /api/state | jq -c .heads))"
    failed=1
fi
stop CS; stop CO
rm -rf "$ROOT/CS" "$ROOT/CO"
say ""
fi

# --- (c, continued) idle CPU and RSS with 10 peers --------------------------------
if part c; then
say "(c) idle: $((PEERS + 1)) nodes (an organiser and $PEERS stalls whose tokens name it; they"
say "    find each other through PEERS), all connected, then ${IDLE_S} s idle: CPU from"
say "    /proc/PID/stat (utime+stime over the ${IDLE_S} s), RSS from /proc/PID/status"
new_node I0 || die "init"
sm I0 market create --name "Bench idle" --currency GBP >/dev/null || die "market create"
start I0 || die "the organiser did not start"
NODES="I0"
for i in $(seq 1 "$PEERS"); do
    new_node "I$i" && join "I$i" I0 "tcp://127.0.0.1:${MP[I0]}" || die "join I$i"
    start "I$i" || die "I$i did not start: $(tail -n 3 "$TMP/I$i.log")"
    NODES="$NODES I$i"
done
all_connected() {
    for n in $NODES; do [ "$(connected_count "$n")" = "$PEERS" ] || return 1; done
}
if ! until_true 60 all_connected; then
    row "idle" "FAILED: not all connected: $(for n in $NODES; do printf '%s:%s ' $n "$(connected_count $n)"; done)"
    failed=1
else
    declare -A T0
    for n in $NODES; do T0[$n]=$(ticks "${PID[$n]}"); done
    sleep "$IDLE_S"
    hz=$(getconf CLK_TCK)
    stats=$(for n in $NODES; do
        printf '%s %s %s\n' "$n" "$(( $(ticks "${PID[$n]}") - ${T0[$n]} ))" \
            "$(awk '/VmRSS/ { print $2 }' "/proc/${PID[$n]}/status")"
    done)
    printf '%s\n' "$stats" | awk -v hz="$hz" -v s="$IDLE_S" -v peers="$PEERS" '
        { cpu = $2 * 100 / (hz * s); sum += cpu; if (cpu > max) max = cpu
          rss += $3; if ($3 > rmax) rmax = $3; if ($1 == "I0") { c0 = cpu; r0 = $3 } n++ }
        END {
          printf "  %-44s %.2f %% of a core, RSS %.1f MiB  (no target set)\n",
                 "organiser, " peers " peers, idle", c0, r0 / 1024
          printf "  %-44s %.2f %% mean, %.2f %% max; RSS %.1f MiB mean, %.1f MiB max\n",
                 "all " n " nodes", sum / n, max, rss / n / 1024, rmax / 1024 }'
fi
for n in $NODES; do stop "$n"; done
fi
exit $failed
