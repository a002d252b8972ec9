#!/bin/bash
# Integration test of backups, restores, sealed identities and the store's
# format version, on real node processes on loopback:
#
#   bash tests/integration/test_backup.sh build/stallmesh
#
# - an organiser O and a stall S meshed; sales stream at S while
#   `stallmesh backup --with-identity` copies S's store; S then dies.  The
#   backup restored into a new directory verifies, holds every sale S
#   acknowledged before the copy began, and, started beside O, fetches the
#   sales made after the copy before it sells again, then sells on: no fork
#   anywhere, every acknowledged sale in the state;
# - a wrong passphrase, a truncated, an altered and a foreign file are
#   refused with a clear message and create nothing; restore into a
#   non-empty directory refuses and changes nothing;
# - identity export/import round-trips the key (text and QR) and refuses a
#   wrong passphrase, a damaged text and a directory that has a node;
# - the format: tests/fixtures/store-v1 (format 1, before the report
#   totals) reads with its digest, and its first open for writing (run,
#   verify) migrates it to format 2: the totals rebuilt from the log, one
#   line logged; it then verifies and its report serves its sale.  A store
#   without the marker is migrated the same way, and a store marked newer
#   is refused naming both versions and left as it was.
# Each check prints "ok - ..." or "not ok - ..."; the last line is
# "N passed, M failed"; the exit status is non-zero if any failed.  Every
# wait is bounded; only processes this script started are stopped, by PID.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }
# check NAME COMMAND [FILE]: FILE (read after the command) explains a failure.
check() { if eval "$2"; then ok "$1"; else nok "$1" "$([ -n "${3:-}" ] && cat "$3" 2>/dev/null)"; fi; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-backup.XXXXXX") || exit 1
declare -A PID HP MP
STREAM_PID=
cleanup() {
    for p in "${PID[@]}" $STREAM_PID; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR NOTIFY_SOCKET JOURNAL_STREAM
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

. "$(dirname "$0")/lib.sh"     # free_port, until_true
sm() { local n=$1; shift; "$BIN" --dir "$TMP/$n" "$@"; }
# start NODE [RUN ARGS...]: HTTP and mesh on free loopback ports; waits up
# to 10 s for /readyz.
start() {
    local n=$1
    shift
    HP[$n]=$(free_port); MP[$n]=$(free_port)
    "$BIN" --dir "$TMP/$n" run --http "127.0.0.1:${HP[$n]}" --listen "tcp://127.0.0.1:${MP[$n]}" "$@" \
        >>"$TMP/$n.out" 2>>"$TMP/$n.log" &
    PID[$n]=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:${HP[$n]}/readyz" && return 0
        kill -0 "${PID[$n]}" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
stop() {
    local p=${PID[$1]}
    [ -n "$p" ] || return 0
    kill -"${2:-TERM}" "$p" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    { wait "$p"; } 2>/dev/null
    PID[$1]=
}
get() { curl -s --max-time 5 "http://127.0.0.1:${HP[$1]}$2"; }
# sell NODE EXTERNAL_ID: one jam; prints the HTTP status, the answer in $TMP/sale.
sell() {
    curl -s -o "$TMP/sale.$1" -w '%{http_code}' --max-time 10 -X POST \
        -H "Authorization: Bearer $(cat "$TMP/$1/api-token")" -H 'Content-Type: application/json' \
        --data-binary "{\"lines\":[{\"sku\":\"jam\",\"qty\":1}],\"source\":\"in_person\",\"payment\":\"cash\",\"external_id\":\"$2\"}" \
        "http://127.0.0.1:${HP[$1]}/api/sales"
}
head_of() { get "$1" /api/state | jq -r --arg o "$2" '.heads[$o].seq // 0'; }
# own_sale_seqs DIR ORIGIN: the seqs of ORIGIN's sales in DIR's log, one a line.
own_sale_seqs() {
    "$BIN" --dir "$1" log --origin "$2" | jq -r 'select(.kind == "sale") | .seq' | sort -n
}
echo "correct horse battery staple" > "$TMP/pass"
echo "not the passphrase" > "$TMP/wrong"

# ---- the market: O organises, S sells -----------------------------------------
sm O init --name "Market office" >/dev/null && sm S init --name "Jam stall" >/dev/null \
    && sm O market create --name "Backup market" --currency GBP >/dev/null || { nok "init"; finish; }
start O || { nok "the organiser starts" "$(tail -5 "$TMP/O.log")"; finish; }
O_ID=$(sm O id --json | jq -r .node)
S_ID=$(sm S id --json | jq -r .node)
sm S join "$(sm O admit "$S_ID" --name "Jam stall" --endpoint "tcp://127.0.0.1:${MP[O]}")" >/dev/null \
    || { nok "S joins"; finish; }
start S || { nok "the stall starts" "$(tail -5 "$TMP/S.log")"; finish; }
# A stall started beside its peers checks its own log with them first
# (503 recovering for up to a few seconds): its first write is retried.
until_true 15 sm S item add jam --name "Plum jam" --price 450 >/dev/null 2>&1 \
    || { nok "S adds jam" "$(tail -5 "$TMP/S.log")"; finish; }
sm S stock add jam 100000 >/dev/null || { nok "S stocks jam"; finish; }
ok "an organiser and a stall meshed on loopback; the stall has 100000 jam"

# ---- backup while sales stream at S -------------------------------------------
# The stream: one sale after another; each acknowledged (201) sale's id and
# the time its answer was read, in nanoseconds, one a line.
(
    i=0
    while [ $i -lt 2000 ] && [ ! -e "$TMP/stop-stream" ]; do
        i=$((i + 1))
        code=$(sell S "stream-$i")
        [ "$code" = 201 ] && echo "$(date +%s%N) $(jq -r .id "$TMP/sale.S")" >> "$TMP/acked"
    done
) &
STREAM_PID=$!
acked_count() { [ -s "$TMP/acked" ] && wc -l < "$TMP/acked" || echo 0; }
# acked_after NS: sales whose answer was read after NS.
acked_after() { awk -v t="$1" '$1 > t' "$TMP/acked" 2>/dev/null | wc -l; }
until_true 30 test "$(acked_count)" -ge 10
began=$(date +%s%N)
sm S backup -o "$TMP/s.smbackup" --with-identity --passphrase-file "$TMP/pass" >"$TMP/backup.out" 2>&1
backup_rc=$?
ended=$(date +%s%N)
until_true 30 test "$(acked_after "$ended")" -ge 10
touch "$TMP/stop-stream"
wait "$STREAM_PID"; STREAM_PID=
before=$(awk -v t="$began" '$1 < t' "$TMP/acked" | wc -l)
after=$(awk -v t="$ended" '$1 > t' "$TMP/acked" | wc -l)
check "backup --with-identity succeeds while sales stream ($before acknowledged before it, $after after)" \
    '[ $backup_rc = 0 ] && [ -s "$TMP/s.smbackup" ] && [ "$before" -ge 10 ] && [ "$after" -ge 10 ]' "$TMP/backup.out"
check "the backup file is 0600 and says what it holds" \
    '[ "$(stat -c %a "$TMP/s.smbackup")" = 600 ] && grep -q "identity sealed" "$TMP/backup.out" && [ ! -e "$TMP/s.smbackup.tmp" ]'
total=$(wc -l < "$TMP/acked")
last_seq=$(tail -n 1 "$TMP/acked" | awk '{ sub(/.*:/, "", $2); print $2 }')
check "O has every sale S acknowledged (S's head $last_seq at O)" \
    'until_true 20 test "$(head_of O "$S_ID")" -ge "$last_seq"'
stop S KILL
check "the stall dies (SIGKILL)" '[ -z "${PID[S]}" ]'

# ---- refusals: nothing is created ---------------------------------------------
size=$(stat -c %s "$TMP/s.smbackup")
sm X restore "$TMP/s.smbackup" --dir "$TMP/R" --passphrase-file "$TMP/wrong" >/dev/null 2>"$TMP/err"
rc=$?
check "a wrong passphrase is refused (exit 1, says so) and creates nothing" \
    '[ $rc = 1 ] && grep -q "wrong passphrase" "$TMP/err" && [ ! -e "$TMP/R" ]' "$TMP/err"
head -c $((size - 100)) "$TMP/s.smbackup" > "$TMP/short.smbackup"
sm X restore "$TMP/short.smbackup" --dir "$TMP/R" --passphrase-file "$TMP/pass" >/dev/null 2>"$TMP/err"
rc=$?
check "a truncated backup is refused as truncated and creates nothing" \
    '[ $rc = 1 ] && grep -q "is truncated" "$TMP/err" && [ ! -e "$TMP/R" ]' "$TMP/err"
head -c 300 "$TMP/s.smbackup" > "$TMP/shorter.smbackup"
sm X restore "$TMP/shorter.smbackup" --dir "$TMP/R" >/dev/null 2>"$TMP/err"
check "a backup cut inside its header is refused as truncated" \
    '[ $? = 1 ] && grep -q "truncated" "$TMP/err" && [ ! -e "$TMP/R" ]' "$TMP/err"
cp "$TMP/s.smbackup" "$TMP/altered.smbackup"
printf '\x5a' | dd of="$TMP/altered.smbackup" bs=1 seek=$((size / 2)) conv=notrunc status=none
sm X restore "$TMP/altered.smbackup" --dir "$TMP/R" --passphrase-file "$TMP/pass" >/dev/null 2>"$TMP/err"
rc=$?
check "a backup with one byte changed is refused (checksum) and creates nothing" \
    '[ $rc = 1 ] && grep -q "damaged or was altered" "$TMP/err" && [ ! -e "$TMP/R" ]' "$TMP/err"
cp "$TMP/s.smbackup" "$TMP/sealed-altered.smbackup"
printf '\x01' | dd of="$TMP/sealed-altered.smbackup" bs=1 seek=100 conv=notrunc status=none
sm X restore "$TMP/sealed-altered.smbackup" --dir "$TMP/R" --passphrase-file "$TMP/pass" >/dev/null 2>"$TMP/err"
check "a byte changed in the header is refused too" '[ $? = 1 ] && [ ! -e "$TMP/R" ]' "$TMP/err"
echo "hello" > "$TMP/foreign"
sm X restore "$TMP/foreign" --dir "$TMP/R" >/dev/null 2>"$TMP/err"
check "a file that is no backup is refused as such" \
    '[ $? = 1 ] && grep -q "not a stallmesh backup" "$TMP/err" && [ ! -e "$TMP/R" ]' "$TMP/err"
mkdir -p "$TMP/full"; echo "keep me" > "$TMP/full/notes.txt"
before_ls=$(cd "$TMP/full" && ls -la --time-style=+%s%N && sha256sum notes.txt)
sm X restore "$TMP/s.smbackup" --dir "$TMP/full" --passphrase-file "$TMP/pass" >/dev/null 2>"$TMP/err"
rc=$?
check "restore into a non-empty directory refuses (exit 1, says so) and changes nothing" \
    '[ $rc = 1 ] && grep -q "is not empty" "$TMP/err" && [ "$before_ls" = "$(cd "$TMP/full" && ls -la --time-style=+%s%N && sha256sum notes.txt)" ]' \
    "$TMP/err"

# ---- the restored copy ---------------------------------------------------------
mkdir "$TMP/R"                      # an empty directory is fine
sm X restore "$TMP/s.smbackup" --dir "$TMP/R" --passphrase-file "$TMP/pass" >"$TMP/restore.out" 2>&1
check "the backup restores into an empty directory" '[ $? = 0 ]' "$TMP/restore.out"
check "the restored node has S's identity (0600), a new API token and its name" \
    'cmp -s "$TMP/S/identity" "$TMP/R/identity" && [ "$(stat -c %a "$TMP/R/identity")" = 600 ] \
     && [ -s "$TMP/R/api-token" ] && ! cmp -s "$TMP/S/api-token" "$TMP/R/api-token" && grep -qx "Jam stall" "$TMP/R/name"'
sm R verify >"$TMP/verify.out" 2>&1
check "the restored store verifies" '[ $? = 0 ] && grep -q "^ok:" "$TMP/verify.out"' "$TMP/verify.out"
own_sale_seqs "$TMP/R" "$S_ID" > "$TMP/restored-seqs"
missing=0
while read -r t id; do
    [ "$t" -lt "$began" ] || continue
    grep -qx "${id##*:}" "$TMP/restored-seqs" || missing=$((missing + 1))
done < "$TMP/acked"
check "it holds every one of the $before sales acknowledged before the copy began" '[ $missing = 0 ]'
restored_max=$(tail -n 1 "$TMP/restored-seqs")
check "and not those made after it ended (its last sale is seq $restored_max, S's was $last_seq)" \
    '[ "$restored_max" -lt "$last_seq" ]'

start R --peer "$O_ID@tcp://127.0.0.1:${MP[O]}" || nok "the restored node starts" "$(tail -5 "$TMP/R.log")"
check "beside O it fetches the sales made after the copy (its own head reaches $last_seq)" \
    'until_true 30 test "$(head_of R "$S_ID")" -ge "$last_seq"'
code=000
for _ in $(seq 1 150); do
    code=$(sell R after-restore-1)
    [ "$code" = 201 ] && break
    sleep 0.1
done
new_seq=$(jq -r '.id // ""' "$TMP/sale.R" | sed 's/.*://')
check "then it sells on: the next sale is seq $((last_seq + 1)) (got ${new_seq:-none}, $code)" \
    '[ "$code" = 201 ] && [ "$new_seq" = $((last_seq + 1)) ]' "$TMP/sale.R"
check "O gets that sale" 'until_true 20 test "$(head_of O "$S_ID")" -ge $((last_seq + 1))'
check "no fork anywhere: O and R record none and quarantine nothing" \
    '[ "$(get O /api/state | jq "(.forks | length) + (.quarantined | length)")" = 0 ] \
     && [ "$(get R /api/state | jq "(.forks | length) + (.quarantined | length)")" = 0 ]'
check "O and R converge to one digest" \
    'until_true 20 eval "[ \"\$(get O /api/state | jq -r .digest)\" = \"\$(get R /api/state | jq -r .digest)\" ]"'
stop R
own_sale_seqs "$TMP/R" "$S_ID" > "$TMP/final-seqs"
lost=0
while read -r _ id; do grep -qx "${id##*:}" "$TMP/final-seqs" || lost=$((lost + 1)); done < "$TMP/acked"
check "every one of the $total sales S acknowledged is in the restored node's log, and it verifies" \
    '[ $lost = 0 ] && sm R verify >/dev/null'

# ---- scheduled backups ([backup]) ---------------------------------------------
mkdir -p "$TMP/sched"; echo "not ours" > "$TMP/sched/stallmesh-000000000000-20200101T000000Z.smbackup"
printf '[backup]\ndir = %s\nevery_s = 10\nkeep = 1\n' "$TMP/sched" > "$TMP/sched.conf"
ours() { ls "$TMP/sched" | grep -c "^stallmesh-${S_ID:0:12}-.*\.smbackup$"; }
start R --config "$TMP/sched.conf" --peer "$O_ID@tcp://127.0.0.1:${MP[O]}" \
    || nok "the node starts with [backup]" "$(tail -5 "$TMP/R.log")"
check "a node with [backup] dir makes a backup at start" 'until_true 10 test "$(ours)" = 1'
first_backup=$(ls "$TMP/sched" | grep "^stallmesh-${S_ID:0:12}-")
check "then another every_s (10 s) later, keeping only the newest (keep = 1)" \
    'until_true 20 eval "[ \"\$(ls \"\$TMP/sched\" | grep \"^stallmesh-\${S_ID:0:12}-\")\" != \"\$first_backup\" ]" && [ "$(ours)" = 1 ]'
check "another node's file in the directory is left alone" \
    'grep -qx "not ours" "$TMP/sched/stallmesh-000000000000-20200101T000000Z.smbackup"'
check "the log says where each backup went" 'grep -q "scheduled backup $TMP/sched/stallmesh-" "$TMP/R.log"'
stop R
sm X restore "$TMP/sched/$(ls "$TMP/sched" | grep "^stallmesh-${S_ID:0:12}-")" --dir "$TMP/R3" >/dev/null 2>"$TMP/err"
cp "$TMP/R/identity" "$TMP/R3/identity" 2>/dev/null
check "a scheduled backup restores and verifies" '[ -s "$TMP/R3/store/data.mdb" ] && sm R3 verify >/dev/null' "$TMP/err"

# ---- a backup without the identity, then identity import ---------------------
sm O backup -o "$TMP/o.smbackup" >"$TMP/err" 2>&1
check "backup without --with-identity says the identity is not in it" \
    '[ $? = 0 ] && grep -q "no identity" "$TMP/err"' "$TMP/err"
sm X restore "$TMP/o.smbackup" --dir "$TMP/O2" >"$TMP/out" 2>&1
check "it restores a store and says how to put the identity back" \
    '[ $? = 0 ] && [ ! -e "$TMP/O2/identity" ] && grep -q "identity import" "$TMP/out"' "$TMP/out"
sm O identity export --qr --passphrase-file "$TMP/pass" >"$TMP/export.out" 2>&1
sealed=$(head -n 1 "$TMP/export.out")
check "identity export prints a sealed text (smk1., 180 chars) and a QR code" \
    '[ ${#sealed} = 180 ] && [ "${sealed#smk1.}" != "$sealed" ] && grep -q "█" "$TMP/export.out" && ! grep -q "$(cut -c1-20 "$TMP/O/identity")" "$TMP/export.out"' \
    "$TMP/export.out"
sm O2 identity import "$sealed" --passphrase-file "$TMP/wrong" >/dev/null 2>"$TMP/err"
check "import with a wrong passphrase is refused and writes nothing" \
    '[ $? = 1 ] && grep -q "wrong passphrase" "$TMP/err" && [ ! -e "$TMP/O2/identity" ]' "$TMP/err"
broken=$(printf '%s' "$sealed" | sed 's/^\(.\{60\}\)./\1A/; s/^\(.\{60\}\)AA/\1BA/')
[ "$broken" = "$sealed" ] && broken=$(printf '%s' "$sealed" | sed 's/^\(.\{60\}\)./\1B/')
sm O2 identity import "$broken" --passphrase-file "$TMP/pass" >/dev/null 2>"$TMP/err"
check "a sealed text with one character changed is refused" '[ $? = 1 ] && [ ! -e "$TMP/O2/identity" ]' "$TMP/err"
printf '%s\n' "$sealed" | fold -w 40 | sm O2 identity import - --passphrase-file "$TMP/pass" >"$TMP/out" 2>&1
check "import (typed back in lines, from stdin) restores the organiser's key" \
    '[ $? = 0 ] && cmp -s "$TMP/O/identity" "$TMP/O2/identity" && [ "$(sm O2 id --json | jq -r .market)" = "$O_ID" ]' \
    "$TMP/out"
sm O2 identity import "$sealed" --passphrase-file "$TMP/pass" >/dev/null 2>"$TMP/err"
check "import into a directory that has an identity refuses" '[ $? = 1 ] && grep -q "exists" "$TMP/err"' "$TMP/err"
stop O

# ---- the store format ----------------------------------------------------------
FIX=$ROOT/tests/fixtures/store-v1
# load NAME DUMP: a data directory NAME with the fixture's identity and DUMP as its store.
# The dump is hex (mdb_dump without -p): meta's key "format" is 666f726d6174.
FORMAT_HEX=666f726d6174
load() {
    mkdir -p "$TMP/$1/store" && chmod 700 "$TMP/$1" && cp "$FIX/identity" "$TMP/$1/identity" \
        && chmod 600 "$TMP/$1/identity" && openssl rand -hex 32 > "$TMP/$1/api-token" \
        && chmod 600 "$TMP/$1/api-token" && mdb_load -f "$2" "$TMP/$1/store" 2>"$TMP/load.err" \
        || { nok "mdb_load $2" "$(grep -v db_pagesize "$TMP/load.err")"; return 1; }
}
format_of() { mdb_dump -p -s meta "$TMP/$1/store" | awk 'p { print $1; exit } $1 == "format" { p = 1 }'; }
if command -v mdb_load >/dev/null 2>&1; then
    load F1 "$FIX/store.dump"
    exp_verify=$(sed -n 's/^verify //p' "$FIX/expected")
    exp_digest=$(sed -n 's/^digest //p' "$FIX/expected")
    check "its digest is the one recorded, read-only, and reading leaves it format 1" \
        '[ "$(sm F1 digest)" = "$exp_digest" ] && [ "$(format_of F1)" = 1 ]'
    # The fixture predates the report totals (format 2 keeps them with the
    # state): the first open for writing rebuilds them from the log,
    # records format 2 and says so once.  verify opens a store for writing
    # when no node runs (it recomputes the state in a transaction it
    # abandons): it migrates.
    load F1V "$FIX/store.dump"
    sm F1V verify >"$TMP/f1v.verify" 2>"$TMP/f1v.err"
    check "verify migrates a format-1 store (one line) and finds it as when it was made ($exp_verify)" \
        '[ $? = 0 ] && [ "$(head -1 "$TMP/f1v.verify")" = "$exp_verify" ] && [ "$(format_of F1V)" = 2 ] && [ "$(grep -c "migrated from format 1" "$TMP/f1v.err")" = 1 ]' \
        "$TMP/f1v.err"
    check "the migration kept the digest" '[ "$(sm F1V digest)" = "$exp_digest" ]'
    # And run, whose store check is the first to open it here.
    HP[F1]=$(free_port)
    "$BIN" --dir "$TMP/F1" run --http "127.0.0.1:${HP[F1]}" --listen none >/dev/null 2>"$TMP/F1.log" &
    PID[F1]=$!
    check "a node runs on it and serves its stock (jam and tee)" \
        'until_true 10 eval "[ \"\$(get F1 /api/stock | jq -r \"[.items[].sku] | sort | join(\\\",\\\")\")\" = jam,tee ]"' \
        "$TMP/F1.log"
    check "run migrated it to format 2 and said so in one line" \
        '[ "$(format_of F1)" = 2 ] && [ "$(grep -c "migrated from format 1 to format 2" "$TMP/F1.log")" = 1 ]' \
        "$TMP/F1.log"
    # The fixture's sale: 3 jam at 450 and 1 tee at 2000, 1 jam returned.
    curl -s --max-time 5 -H "Authorization: Bearer $(cat "$TMP/F1/api-token")" \
        "http://127.0.0.1:${HP[F1]}/api/report?from=2025-01-01&to=2035-01-01&by=item" > "$TMP/f1.report"
    check "its report serves the fixture's sale and return from the rebuilt totals" \
        '[ "$(jq -c "[.totals.sales, .totals.units, .totals.gross, .totals.returns, .totals.net]" "$TMP/f1.report")" = "[1,4,3350,450,2900]" ] && [ "$(jq -r "[.by.item[].sku] | join(\",\")" "$TMP/f1.report")" = jam,tee ]' \
        "$TMP/f1.report"
    stop F1
    # (The node swept the fixture's expired hold: one entry more.)
    sm F1 verify >"$TMP/f1.verify" 2>"$TMP/f1.verify.err"
    check "after the migration and the run it verifies, with no word of a migration again" \
        '[ $? = 0 ] && grep -q "state: matches the log" "$TMP/f1.verify" && ! grep -q migrated "$TMP/f1.verify.err"' \
        "$TMP/f1.verify.err"
    # Before the marker existed: the same store without it.
    awk -v k=$FORMAT_HEX 'skip { skip = 0; next } $1 == k { skip = 1; next } { print }' \
        "$FIX/store.dump" > "$TMP/unmarked.dump"
    load F0 "$TMP/unmarked.dump"
    # (digest opens the store read-only; a writer's open migrates it.)
    check "a store without the marker (made before it) reads as format 1 and is not written read-only" \
        '[ -z "$(format_of F0)" ] && [ "$(sm F0 digest)" = "$exp_digest" ] && [ -z "$(format_of F0)" ]'
    check "opening it for writing migrates it: format 2 is recorded, the digest kept" \
        '[ "$(sm F0 reindex 2>"$TMP/err")" = "$exp_digest" ] && [ "$(format_of F0)" = 2 ]' "$TMP/err"
    # Written by a newer stallmesh.
    awk -v k=$FORMAT_HEX 'p { print " 3939"; p = 0; next } $1 == k { p = 1 } { print }' \
        "$FIX/store.dump" > "$TMP/newer.dump"
    load F9 "$TMP/newer.dump"
    mdb_dump -a "$TMP/F9/store" > "$TMP/newer.before"
    sm F9 verify >/dev/null 2>"$TMP/err"
    check "a store marked format 99 is refused read-only, naming both versions" \
        '[ $? = 1 ] && grep -q "format 99" "$TMP/err" && grep -q "up to 2" "$TMP/err"' "$TMP/err"
    sm F9 reindex >/dev/null 2>"$TMP/err"
    check "and for writing" '[ $? = 1 ] && grep -q "format 99" "$TMP/err"' "$TMP/err"
    "$BIN" --dir "$TMP/F9" run --http "127.0.0.1:$(free_port)" --listen none >/dev/null 2>"$TMP/err"
    check "and by run, which exits 1 at once" '[ $? = 1 ] && grep -q "format 99" "$TMP/err"' "$TMP/err"
    check "the newer store is left exactly as it was" \
        'mdb_dump -a "$TMP/F9/store" | cmp -s - "$TMP/newer.before"'
    # A backup of the fixture, restored, is the same store.
    sm F1V backup -o "$TMP/f1.smbackup" >/dev/null 2>&1
    sm X restore "$TMP/f1.smbackup" --dir "$TMP/F1R" >/dev/null 2>&1
    cp "$FIX/identity" "$TMP/F1R/identity" 2>/dev/null && chmod 600 "$TMP/F1R/identity"
    check "the fixture backed up and restored keeps its digest" '[ "$(sm F1R digest)" = "$exp_digest" ]'
else
    nok "mdb_load and mdb_dump are installed (lmdb-utils; make deps)"
fi

finish
