#!/bin/bash
# Fault-injection test of damaged stores (tamper sweep), run as real
# processes on loopback:
#
#   bash tests/integration/test_damage.sh build/stallmesh     (from the repo root)
#
# Needs build/tools/storemap and build/bench/fill_store (make integration
# builds them).  Part 1, the sweep: an organiser's store of a few hundred
# entries is copied and one byte of each copy flipped, at offsets found by
# parsing the LMDB file (storemap): in log entries, the log index, heads,
# catalog, stock, sales and roster records.  Every flip must be reported by
# `verify` (exit 1, never a signal); a sample must also be refused by `run`
# at open (exit 1 with a message, never serving).  Then: truncated stores
# (to half, to 0 bytes) and damaged meta pages are refused with a message;
# `reindex` of a store with a forged entry refuses it and leaves the state;
# a second `run` on one directory exits 1 naming the first's pid.  Part 2,
# the mesh: `repair` of a stall whose store has a flipped entry brings it
# back to the market's digest from its peers.  Each check prints "ok - ..."
# or "not ok - ..."; the last line is "N passed, M failed"; exit non-zero if
# M > 0.  SWEEP_FLIPS (default 240) bounds the sweep.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
TOOLS=$(dirname "$BIN")
MAP=$TOOLS/tools/storemap
FILL=$TOOLS/bench/fill_store
FLIPS=${SWEEP_FLIPS:-240}

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && printf '#   %s\n' "$2" | head -n 8; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

for tool in curl jq ss od dd; do
    command -v $tool >/dev/null 2>&1 || { nok "$tool is installed (make deps)"; finish; }
done
for x in "$BIN" "$MAP" "$FILL"; do
    [ -x "$x" ] || { nok "$x is an executable (make integration builds it)"; finish; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-damage.XXXXXX") || exit 1
declare -A PID HP MP ARGS
cleanup() {
    stop_nodes
    [ -n "${KEEP_TMP:-}" ] && { echo "# kept $TMP"; return; }
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }

# sm, node_id, start (a failed start's exit status in $start_rc), stop and
# get.  Its nodes are meant to fail on damaged stores: one try each, not
# retried as if on a port clash; a node checks its store at open, so up to
# 15 s for /readyz.
. "$(dirname "$0")/lib.sh"
START_TRIES=1
START_WAIT=15
# flip FILE OFFSET: xor the byte at OFFSET with a bit chosen by the offset.
flip() {
    local b x
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    x=$(( b ^ (1 << ($2 % 8)) ))
    printf "\\$(printf %o "$x")" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# copy_store FROM TO: a copy of a stopped node's data directory.
copy_store() { rm -rf "$2"; cp -a "$1" "$2"; rm -f "$2/store/lock.mdb"; }

# ---- a store to damage ------------------------------------------------------
sm O init --name "Organiser" >/dev/null || { nok "init"; finish; }
sm O market create --name "Damage market" --currency EUR >/dev/null || { nok "market create"; finish; }
sm S init --name "Stall" >/dev/null || { nok "init S"; finish; }
SID=$(node_id S)
sm O admit "$SID" --name "Stall S" >/dev/null || { nok "admit S"; finish; }
"$FILL" "$TMP/O" 260 >/dev/null || { nok "fill_store"; finish; }
out=$(sm O verify 2>&1)
check "the undamaged store verifies, state included" \
    'printf "%s\n" "$out" | grep -q "^ok: 264 entries checked" && printf "%s\n" "$out" | grep -q "state: matches the log"' "$out"
DIGEST=$(sm O digest)

"$MAP" "$TMP/O/store/data.mdb" >"$TMP/map" || { nok "storemap parses the store"; finish; }
for db in log logidx heads items stock sales origins; do
    grep -q "^$db " "$TMP/map" || nok "storemap finds the $db database"
done

# ---- the sweep ------------------------------------------------------------------
# Offsets: for each database a share of the flips, spread over its records
# and inside each record's value (and a few keys).  Deterministic.
pick() {   # pick DB COUNT: COUNT offsets in DB's values
    awk -v db="$1" -v n="$2" '
        BEGIN { c = 0 }
        $1 == db { k[c] = $2; kl[c] = $3; v[c] = $4; vl[c] = $5; c++ }
        END {
            if (c == 0) exit
            for (i = 0; i < n; i++) {
                r = int(i * 7919 % c)
                if (i % 10 == 9 && kl[r] > 0) print k[r] + (i * 13) % kl[r]
                else print v[r] + (i * 37 + 5) % vl[r]
            }
        }' "$TMP/map"
}
n_log=$((FLIPS * 45 / 100)); n_idx=$((FLIPS * 10 / 100)); n_sales=$((FLIPS * 20 / 100))
n_small=$(( (FLIPS - n_log - n_idx - n_sales) / 4 ))
{ pick log $n_log; pick logidx $n_idx; pick sales $n_sales; pick heads $n_small
  pick items $n_small; pick stock $n_small; pick origins $n_small; } | sort -n | uniq >"$TMP/offsets"
total=$(wc -l <"$TMP/offsets")
reported=0; signalled=0; missed=""
while read -r off; do
    copy_store "$TMP/O" "$TMP/F"
    flip "$TMP/F/store/data.mdb" "$off"
    sm F verify >"$TMP/v.out" 2>"$TMP/v.err"
    rc=$?
    if [ $rc -ge 128 ]; then signalled=$((signalled + 1)); missed="$missed $off(sig$rc)";
    elif [ $rc -eq 1 ] && [ -s "$TMP/v.err" ]; then reported=$((reported + 1));
    else missed="$missed $off"; fi
done <"$TMP/offsets"
echo "# sweep: $total flips, $reported reported by verify, $signalled signals, $(elapsed) s"
check "verify reports every one of $total single-byte flips (exit 1 with a message)" \
    '[ "$reported" -eq "$total" ] && [ "$total" -ge $((FLIPS * 8 / 10)) ]' "missed at:$missed"
check "no verify run died of a signal" '[ "$signalled" -eq 0 ]'

# run at open: a sample of flips, one a database.  Damaged state (and
# heads) is refused: exit 1 saying what is wrong.  A damaged log entry stops
# only its origin: the node starts degraded (/readyz 503 naming the origin
# and seq), serving that origin only below the damage.
refused=0; degraded=0; sample=0; served=""
for db in log logidx heads items stock sales origins; do
    off=$(pick $db 3 | tail -n 1)
    [ -n "$off" ] || continue
    sample=$((sample + 1))
    copy_store "$TMP/O" "$TMP/R"
    flip "$TMP/R/store/data.mdb" "$off"
    : >"$TMP/R.log"
    if start R; then
        ready=$(curl -s -w ' %{http_code}' --max-time 2 "http://127.0.0.1:${HP[R]}/readyz")
        if [ "$db" = log ] || [ "$db" = logidx ]; then
            case $ready in
            *'"status":"degraded"'*'"seq":'*' 503') degraded=$((degraded + 1)) ;;
            *) served="$served $db(ready: $ready)" ;;
            esac
        else
            served="$served $db"
        fi
        stop R
    elif [ "$start_rc" = 1 ] && grep -q "damaged" "$TMP/R.log"; then
        refused=$((refused + 1))
    else
        served="$served $db(rc=$start_rc)"
    fi
done
check "run refuses each of $sample damaged stores at open, or (a log entry) starts degraded saying so" \
    '[ $((refused + degraded)) -eq "$sample" ] && [ "$refused" -ge 4 ]' \
    "refused $refused, degraded $degraded; served or unexplained:$served; $(tail -n 2 "$TMP/R.log")"

# ---- truncation and meta pages ------------------------------------------------
copy_store "$TMP/O" "$TMP/T"
size=$("$MAP" --used "$TMP/T/store/data.mdb")   # the pages in use, not the room after them
truncate -s $((size / 2)) "$TMP/T/store/data.mdb"
sm T verify >"$TMP/v.out" 2>"$TMP/v.err"; rc=$?
check "verify of a store truncated to half exits 1 naming the truncation" \
    '[ $rc -eq 1 ] && grep -q "last page" "$TMP/v.out"' "rc $rc: $(cat "$TMP/v.out" "$TMP/v.err")"
: >"$TMP/T.log"
start T; rc=$start_rc
check "run refuses a store truncated to half (exit 1, 'truncated')" \
    '[ "$rc" = 1 ] && grep -q "truncated" "$TMP/T.log"' "$(cat "$TMP/T.log")"
stop T
truncate -s 0 "$TMP/T/store/data.mdb"
: >"$TMP/T.log"
start T; rc=$start_rc
check "run refuses a store truncated to 0 bytes instead of starting empty" \
    '[ "$rc" = 1 ] && grep -q "truncated" "$TMP/T.log" && ! grep -q "no market" "$TMP/T.log"' "$(cat "$TMP/T.log")"
stop T
sm T verify >"$TMP/v.out" 2>"$TMP/v.err"; rc=$?
check "verify of a 0-byte store exits 1" '[ $rc -eq 1 ]'

copy_store "$TMP/O" "$TMP/M"
# meta page 0's txnid: header 16 + magic..dbs 120 + last_pgno 8 = byte 144.
flip "$TMP/M/store/data.mdb" 146
sm M verify >"$TMP/v.out" 2>"$TMP/v.err"; rc=$?
check "a damaged meta page is refused: 'meta pages disagree'" \
    '[ $rc -eq 1 ] && grep -q "meta page" "$TMP/v.out"' "rc $rc: $(cat "$TMP/v.out" "$TMP/v.err")"

# ---- reindex of a forged entry ---------------------------------------------------
copy_store "$TMP/O" "$TMP/X"
off=$(pick log 1)
flip "$TMP/X/store/data.mdb" $((off + 80))
sm X reindex >"$TMP/v.out" 2>"$TMP/v.err"; rc=$?
check "reindex refuses a store with a forged entry (exit 1, naming it)" \
    '[ $rc -eq 1 ] && grep -q "seq" "$TMP/v.err"' "rc $rc: $(cat "$TMP/v.err")"
check "and leaves the state as it was" '[ "$(sm X digest)" = "$DIGEST" ]'

# ---- one process a directory -------------------------------------------------------
start O || { nok "the organiser starts" "$(tail -n 5 "$TMP/O.log")"; finish; }
first=${PID[O]}
"$BIN" --dir "$TMP/O" run --http "127.0.0.1:$(free_port)" --listen none \
    >"$TMP/second.out" 2>"$TMP/second.log"
rc=$?
check "a second run on the same directory exits 1 naming the first's pid" \
    '[ $rc -eq 1 ] && grep -q "pid $first" "$TMP/second.log"' "rc $rc: $(cat "$TMP/second.log")"
check "and the first keeps serving" 'curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${HP[O]}/readyz"'
sm O reindex >/dev/null 2>"$TMP/v.err"; rc=$?
check "reindex while the node runs is refused naming it" '[ $rc -eq 1 ] && grep -q "pid $first" "$TMP/v.err"'
out=$(sm O verify 2>&1); rc=$?
check "verify beside the running node checks the log and says the state was checked at start" \
    '[ $rc -eq 0 ] && printf "%s\n" "$out" | grep -q "not checked (a node, pid $first"' "$out"
stop O
echo "# part 1 done at $(elapsed) s"

# ---- part 2: the mesh ------------------------------------------------------------
# A stall A with 120 sales; O holds A's log.  Then one of A's entries is
# flipped in O's store.
sm A init --name "Stall A" >/dev/null || { nok "init A"; finish; }
AID=$(node_id A); OID=$(node_id O)
sm A join "$(sm O admit "$AID" --name "Stall A")" >/dev/null || { nok "A joins"; finish; }
"$FILL" "$TMP/A" 120 >/dev/null || { nok "fill_store A"; finish; }
A_HEAD=$(sm A log --origin "$AID" | wc -l)
start O || { nok "O starts" "$(tail -n 5 "$TMP/O.log")"; finish; }
start A --peer "$OID@tcp://127.0.0.1:${MP[O]}" || { nok "A starts" "$(tail -n 5 "$TMP/A.log")"; finish; }
head_at() { get "$1" /api/state | jq -r --arg o "$2" '.heads[$o].seq // 0'; }
for _ in $(seq 1 300); do
    [ "$(head_at O "$AID")" = "$A_HEAD" ] && [ "$(head_at A "$OID")" = "$(head_at O "$OID")" ] && break
    sleep 0.1
done
check "O catches up A's $A_HEAD entries" '[ "$(head_at O "$AID")" = "$A_HEAD" ]'
stop A; stop O
[ "$(sm O digest)" = "$(sm A digest)" ] || nok "O and A agree before the damage"

# Flip a byte of the signature of A's entry 60 in O's store (found by its bytes).
SIG=$(sm O log --origin "$AID" | sed -n 60p | jq -r .sig)
SIG_OFF=$("$MAP" "$TMP/O/store/data.mdb" | awk -v h="$(printf '%s' "$SIG" | cut -c1-32)" \
    '$1 == "log" && $6 == h { print $4; exit }')
[ -n "$SIG_OFF" ] || { nok "A's entry 60 is found in O's store"; finish; }
cp -a "$TMP/O" "$TMP/O.clean"
flip "$TMP/O/store/data.mdb" $((SIG_OFF + 10))
sm O verify >"$TMP/v.out" 2>&1; rc=$?
check "verify names A's damaged entry" '[ $rc -eq 1 ] && grep -q "origin $AID seq 60" "$TMP/v.out"' "$(cat "$TMP/v.out")"

# O runs degraded; a new stall C joins through O alone.
: >"$TMP/O.log"
start O || { nok "O starts degraded" "$(tail -n 5 "$TMP/O.log")"; finish; }
ready=$(curl -s -w ' %{http_code}' --max-time 2 "http://127.0.0.1:${HP[O]}/readyz")
check "O's /readyz answers 503 naming the damaged origin and seq" \
    'case $ready in *degraded*"$AID"*"\"seq\":60"*" 503") true ;; *) false ;; esac' "$ready"
check "O's /api/state lists the damage" \
    '[ "$(get O /api/state | jq -r ".damaged[0].origin, .damaged[0].seq" | tr "\n" " ")" = "$AID 60 " ]'
check "O's /metrics counts a damaged origin" \
    'get O /metrics | grep -q "^stallmesh_damaged_origins 1"'
check "O's log says which entry and what to do" \
    'grep -q "origin $AID entry 60 does not verify.*repair" "$TMP/O.log"' "$(grep -i damag "$TMP/O.log" | head -n 3)"
sm C init --name "Stall C" >/dev/null || { nok "init C"; finish; }
CID=$(node_id C)
sm C join "$(sm O admit "$CID" --name "Stall C" --endpoint "tcp://127.0.0.1:${MP[O]}")" >/dev/null \
    || { nok "C joins"; finish; }
start C || { nok "C starts" "$(tail -n 5 "$TMP/C.log")"; finish; }
for _ in $(seq 1 300); do
    [ "$(head_at C "$OID")" = "$(head_at O "$OID")" ] && [ "$(head_at C "$AID")" = 59 ] && break
    sleep 0.1
done
check "the new stall C catches up O's log in full" '[ "$(head_at C "$OID")" = "$(head_at O "$OID")" ]' \
    "C has $(head_at C "$OID") of $(head_at O "$OID")"
check "and A's up to the entry before the damage, never the damaged one" \
    '[ "$(head_at C "$AID")" = 59 ]' "C has A up to $(head_at C "$AID")"
sleep 2
sent=$(get O /api/peers | jq --arg c "$CID" '.peers[] | select(.node == $c) | .entries_sent')
refused=$(get C /api/peers | jq --arg o "$OID" '.peers[] | select(.node == $o) | .refused')
check "O sends C nothing again and again, and C refuses nothing" \
    '[ "$sent" -le $(( $(head_at O "$OID") + 59 + 5 )) ] && [ "$refused" = 0 ]' "sent $sent, refused $refused"
stop C

# repair: O rebuilds from what verifies, then fetches the rest from A.
stop O
sm O repair >"$TMP/repair.out" 2>&1; rc=$?
check "repair keeps what verifies and says what it dropped" \
    '[ $rc -eq 0 ] && grep -q "dropped" "$TMP/repair.out" && sm O verify >/dev/null 2>&1' "$(cat "$TMP/repair.out")"
: >"$TMP/O.log"
start O || { nok "O starts after the repair" "$(tail -n 5 "$TMP/O.log")"; finish; }
start A --peer "$OID@tcp://127.0.0.1:${MP[O]}" || { nok "A starts again"; finish; }
# The market's digest: A's, once both hold the same heads (the roster grew by C).
for _ in $(seq 1 300); do
    [ "$(head_at O "$AID")" = "$A_HEAD" ] \
        && [ "$(get O /api/state | jq -r .digest)" = "$(get A /api/state | jq -r .digest)" ] && break
    sleep 0.1
done
stop A; stop O
MARKET_DIGEST=$(sm A digest)
check "after repair and a run beside its peer, O is back at the market's digest" \
    '[ "$(sm O digest)" = "$MARKET_DIGEST" ] && sm O verify >/dev/null 2>&1' \
    "O $(sm O digest) market $MARKET_DIGEST, O has A up to $(sm O log --origin "$AID" | wc -l)"
echo "# done at $(elapsed) s"

finish
