#!/bin/bash
# Integration test of what deploys the node:
#
#   bash tests/integration/test_deploy.sh build/stallmesh
#
# - `make install DESTDIR=... PREFIX=/usr` puts every file in place with its
#   mode, the unit naming the installed binary; the man page renders with no
#   warning; `make uninstall` removes them all and keeps an edited config;
# - the unit passes `systemd-analyze verify` with nothing to say, and
#   `systemd-analyze security --offline=yes` rates it 2.0 or less;
# - sd_notify: a real node started with NOTIFY_SOCKET sends READY=1 once
#   /readyz answers 200, WATCHDOG=1 every half WATCHDOG_USEC, STOPPING=1 on
#   SIGTERM (a path socket and an abstract one), and no watchdog pings when
#   WATCHDOG_PID names another process;
# - with JOURNAL_STREAM naming its stderr, log lines carry <N> priorities.
# Each check prints "ok - ..." or "not ok - ..."; the last line is
# "N passed, M failed"; the exit status is non-zero if any failed.  Every
# wait is bounded; only processes this script started are stopped, by PID.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(dirname "$BIN")

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-deploy.XXXXXX") || exit 1
NODE_PID=
LISTEN_PID=
cleanup() {
    [ -n "$NODE_PID" ] && kill -KILL "$NODE_PID" 2>/dev/null
    [ -n "$LISTEN_PID" ] && kill -KILL "$LISTEN_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID JOURNAL_STREAM

finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

# ---- make install / uninstall into a DESTDIR ------------------------------
D=$TMP/dest
if make -C "$ROOT" --no-print-directory -s install DESTDIR="$D" PREFIX=/usr BUILD="$BUILD" \
        >"$TMP/install.out" 2>&1; then
    ok "make install DESTDIR PREFIX=/usr succeeds"
else
    nok "make install DESTDIR PREFIX=/usr succeeds" "$(tail -5 "$TMP/install.out")"
fi
# mode path: every file install puts down, with its mode.
expected="755 usr/bin/stallmesh
644 usr/lib/libstallmesh.a
644 usr/lib/systemd/system/stallmesh.service
644 usr/share/man/man1/stallmesh.1
644 usr/share/doc/stallmesh/stallmesh.conf.example
644 etc/stallmesh/stallmesh.conf"
for h in "$ROOT"/include/stallmesh/*.h; do
    expected="$expected
644 usr/include/stallmesh/$(basename "$h")"
done
actual=$(cd "$D" 2>/dev/null && find . -type f -printf '%m %P\n' | sort -k2)
check "install puts exactly the expected files, each with its mode" \
    '[ "$actual" = "$(printf "%s\n" "$expected" | sort -k2)" ]' \
    "got: $(echo $actual)"
check "the installed binary is the build's" 'cmp -s "$BIN" "$D/usr/bin/stallmesh"'
UNIT=$D/usr/lib/systemd/system/stallmesh.service
check "the installed unit runs PREFIX/bin/stallmesh with /etc/stallmesh's config" \
    'grep -qx "ExecStart=/usr/bin/stallmesh --dir /var/lib/stallmesh run --config /etc/stallmesh/stallmesh.conf" "$UNIT"'
check "the installed config is the example" \
    'cmp -s "$ROOT/deploy/stallmesh.conf.example" "$D/etc/stallmesh/stallmesh.conf"'
warn=$(MANROFFSEQ= MANWIDTH=80 man --warnings -l "$D/usr/share/man/man1/stallmesh.1" 2>&1 >"$TMP/man.txt")
check "man -l renders stallmesh(1) with no warnings" \
    '[ -z "$warn" ] && grep -q "offline-first mesh sync node" "$TMP/man.txt"' "$warn"
check "groff -ww finds nothing to warn about in stallmesh(1)" \
    '[ -z "$(groff -man -ww -z "$ROOT/deploy/stallmesh.1" 2>&1)" ]'
# Every command of --help has a paragraph in the man page.
missing=""
for c in $("$BIN" --help | sed -n 's/^  \([a-z][a-z]*\)\( [a-z-]*\)\{0,1\}.*/\1/p' | sort -u); do
    grep -q "^\.B $c\b" "$ROOT/deploy/stallmesh.1" || missing="$missing $c"
done
check "every command in --help is in the man page" '[ -z "$missing" ]' "missing:$missing"

# A config edited after install survives a reinstall and an uninstall.
echo "; edited" >> "$D/etc/stallmesh/stallmesh.conf"
make -C "$ROOT" --no-print-directory -s install DESTDIR="$D" PREFIX=/usr BUILD="$BUILD" >/dev/null 2>&1
check "a reinstall keeps an edited config" 'tail -n 1 "$D/etc/stallmesh/stallmesh.conf" | grep -qx "; edited"'
make -C "$ROOT" --no-print-directory -s uninstall DESTDIR="$D" PREFIX=/usr BUILD="$BUILD" >/dev/null 2>&1
left=$(cd "$D" && find . -type f -printf '%P\n')
check "make uninstall removes every installed file but the edited config" \
    '[ "$left" = "etc/stallmesh/stallmesh.conf" ]' "left: $left"
rm -f "$D/etc/stallmesh/stallmesh.conf"
make -C "$ROOT" --no-print-directory -s install DESTDIR="$D" PREFIX=/usr BUILD="$BUILD" >/dev/null 2>&1
make -C "$ROOT" --no-print-directory -s uninstall DESTDIR="$D" PREFIX=/usr BUILD="$BUILD" >/dev/null 2>&1
check "make uninstall removes an unchanged config too" '[ -z "$(cd "$D" && find . -type f)" ]'

# ---- the systemd unit -------------------------------------------------------
make -C "$ROOT" --no-print-directory -s install DESTDIR="$D" PREFIX=/usr BUILD="$BUILD" >/dev/null 2>&1
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify checks that ExecStart exists and that `man stallmesh(1)` finds
    # the page: point both at the DESTDIR.  It exits 0 on unknown keys, so
    # any output at all is a failure.
    sed "s|^ExecStart=/usr/bin/|ExecStart=$D/usr/bin/|" "$UNIT" > "$TMP/stallmesh.service"
    out=$(cd "$TMP" && MANPATH=$D/usr/share/man systemd-analyze verify ./stallmesh.service 2>&1)
    rc=$?
    check "systemd-analyze verify accepts the unit and says nothing" '[ $rc -eq 0 ] && [ -z "$out" ]' "$out"
    out=$(cd "$TMP" && LC_ALL=C systemd-analyze security --offline=yes --no-pager ./stallmesh.service 2>&1)
    exposure=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: *\([0-9][0-9]*\.[0-9]\).*/\1/p' | tail -n 1)
    check "systemd-analyze security rates the unit 2.0 or less (got ${exposure:-nothing})" \
        '[ -n "$exposure" ] && awk -v e="$exposure" "BEGIN { exit !(e <= 2.0) }"' "$(printf '%s\n' "$out" | tail -n 3)"
    # The check can fail: the same unit without its hardening rates far worse.
    grep -v -E '^(Protect|Private|Restrict|SystemCall|Capability|NoNewPriv|Memory|Lock|UMask|ProcSubset|KeyringMode|RemoveIPC|DevicePolicy)' \
        "$TMP/stallmesh.service" > "$TMP/soft.service"
    soft=$(cd "$TMP" && LC_ALL=C systemd-analyze security --offline=yes --no-pager ./soft.service 2>&1 \
        | sed -n 's/.*Overall exposure level for [^:]*: *\([0-9][0-9]*\.[0-9]\).*/\1/p' | tail -n 1)
    check "the parse sees an unhardened copy rate above 2.0 (got ${soft:-nothing})" \
        '[ -n "$soft" ] && awk -v e="$soft" "BEGIN { exit !(e > 2.0) }"'
    cd "$TMP" && LC_ALL=C systemd-analyze security --offline=yes --threshold=20 --no-pager \
        ./stallmesh.service >/dev/null 2>&1
    check "systemd-analyze security --threshold=20 passes the unit" '[ $? -eq 0 ]'
    cd - >/dev/null || exit 1
else
    nok "systemd-analyze is installed (make deps installs systemd)"
fi

# ---- sd_notify from a real node ---------------------------------------------
DIR=$TMP/stall
"$BIN" --dir "$DIR" init --name "Stall A" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$DIR" market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }

# run_notified SOCKET SECONDS [ENV...]: start the listener on SOCKET, then the
# node with NOTIFY_SOCKET=SOCKET and ENV; sets PORT, NODE_PID, LISTEN_PID.
run_notified() {
    local sock=$1 secs=$2
    shift 2
    PORT=
    for _ in $(seq 1 50); do
        local p=$((20000 + RANDOM % 12000))
        [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && { PORT=$p; break; }
    done
    python3 "$ROOT/tests/tools/notify_listen.py" "$sock" "$secs" "http://127.0.0.1:$PORT/readyz" \
        >"$TMP/notify.out" 2>"$TMP/notify.err" &
    LISTEN_PID=$!
    for _ in $(seq 1 100); do
        grep -q bound "$TMP/notify.out" 2>/dev/null && break
        sleep 0.05
    done
    env NOTIFY_SOCKET="$sock" "$@" "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen none \
        >"$TMP/node.out" 2>"$TMP/node.err" &
    NODE_PID=$!
}
# wait_for PATTERN FILE: up to 10 s.
wait_for() {
    for _ in $(seq 1 200); do
        grep -q "$1" "$2" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
stop_all() {
    [ -n "$NODE_PID" ] && { kill -TERM "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; }
    NODE_PID=
    [ -n "$LISTEN_PID" ] && { wait "$LISTEN_PID" 2>/dev/null; }
    LISTEN_PID=
}

run_notified "$TMP/notify.sock" 20 WATCHDOG_USEC=400000
check "the node sends READY=1 (path socket)" 'wait_for "READY=1" "$TMP/notify.out"' \
    "$(cat "$TMP/notify.err" "$TMP/node.err")"
check "/readyz answers 200 the moment READY=1 arrives" 'wait_for "^readyz 200" "$TMP/notify.out"' \
    "$(cat "$TMP/notify.out")"
check "READY=1 comes once, first" \
    '[ "$(grep -c "READY=1" "$TMP/notify.out")" = 1 ] && sed -n 2p "$TMP/notify.out" | grep -q "READY=1"'
sleep 2.2
kill -TERM "$NODE_PID" 2>/dev/null
wait_for "STOPPING=1" "$TMP/notify.out"
wait "$NODE_PID" 2>/dev/null
node_rc=$?
NODE_PID=
wait "$LISTEN_PID" 2>/dev/null
LISTEN_PID=
# Watchdog pings every 200 ms (half of 400 ms) for about 2.2 s.
ready_ms=$(awk -F'\t' '/READY=1/ { print $1; exit }' "$TMP/notify.out")
pings=$(awk -F'\t' -v r="$ready_ms" '$2 == "WATCHDOG=1" && $1 >= r && $1 <= r + 2000' "$TMP/notify.out" | wc -l)
check "WATCHDOG=1 about every 200 ms with WATCHDOG_USEC=400000 (got $pings in the 2 s after READY)" \
    '[ "$pings" -ge 6 ] && [ "$pings" -le 12 ]' "$(cat "$TMP/notify.out")"
gaps=$(awk -F'\t' '$2 == "WATCHDOG=1" { if (last != "") print $1 - last; last = $1 }' "$TMP/notify.out" \
    | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }')
check "the median gap between pings is 150-300 ms (got ${gaps:-none})" \
    '[ -n "$gaps" ] && [ "$gaps" -ge 150 ] && [ "$gaps" -le 300 ]'
check "SIGTERM: STOPPING=1 is sent, after READY=1" \
    'awk -F"\t" "/READY=1/ { r = 1 } /STOPPING=1/ && r { s = 1 } END { exit !s }" "$TMP/notify.out"'
check "the node then exits 0" '[ "$node_rc" = 0 ]' "rc $node_rc: $(tail -3 "$TMP/node.err")"
check "run writes the stock page URL to DIR/stock-url; url prints it" \
    '[ "$("$BIN" --dir "$DIR" url)" = "http://127.0.0.1:$PORT/" ] && grep -qx "http://127.0.0.1:$PORT/" "$DIR/stock-url"'
check "url --qr draws it as a QR code; --json prints {\"url\"}" \
    '"$BIN" --dir "$DIR" url --qr | grep -q "█" && "$BIN" --dir "$DIR" url --json | jq -e ".url == \"http://127.0.0.1:$PORT/\"" >/dev/null'

abstract="@stallmesh-test-$$-$RANDOM"
run_notified "$abstract" 20 WATCHDOG_USEC=400000 WATCHDOG_PID=1
check "the node sends READY=1 (abstract socket $abstract)" 'wait_for "READY=1" "$TMP/notify.out"' \
    "$(cat "$TMP/notify.err" "$TMP/node.err")"
check "/readyz answers 200 the moment READY=1 arrives (abstract)" 'wait_for "^readyz 200" "$TMP/notify.out"'
sleep 1
stop_all
check "no WATCHDOG=1 when WATCHDOG_PID names another process" \
    '! grep -q WATCHDOG=1 "$TMP/notify.out" && grep -q STOPPING=1 "$TMP/notify.out"' "$(cat "$TMP/notify.out")"

# ---- journald priorities ----------------------------------------------------
PORT=$((20000 + RANDOM % 12000))
: > "$TMP/journal.err"
stream=$(stat -c '%d:%i' "$TMP/journal.err")
JOURNAL_STREAM=$stream "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen none \
    >/dev/null 2>>"$TMP/journal.err" &
NODE_PID=$!
wait_for "serving market" "$TMP/journal.err"
kill -TERM "$NODE_PID"; wait "$NODE_PID" 2>/dev/null; NODE_PID=
check "with JOURNAL_STREAM naming stderr, every line starts with a <N> priority" \
    '[ -s "$TMP/journal.err" ] && ! grep -qv "^<[3467]>" "$TMP/journal.err" && grep -q "^<6>.*serving market" "$TMP/journal.err"' \
    "$(head -3 "$TMP/journal.err")"
PORT=$((20000 + RANDOM % 12000))
JOURNAL_STREAM=1:1 "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen none \
    >/dev/null 2>"$TMP/plain.err" &
NODE_PID=$!
wait_for "serving market" "$TMP/plain.err"
kill -TERM "$NODE_PID"; wait "$NODE_PID" 2>/dev/null; NODE_PID=
check "with JOURNAL_STREAM naming another stream, lines have no prefix" \
    'grep -q "serving market" "$TMP/plain.err" && ! grep -q "^<" "$TMP/plain.err"'

# ---- the QR code at start, in a terminal ------------------------------------
# On every address, the phones' URL is this machine's LAN address (when it
# has one) and a terminal gets its QR code; a log (stdout not a terminal)
# gets none.
lan=$(ip -4 -o addr show up scope global 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }')
if [ -n "$lan" ] && command -v script >/dev/null 2>&1; then
    PORT=$((20000 + RANDOM % 12000))
    script -qfec "$BIN --dir $DIR run --http 0.0.0.0:$PORT --listen none" "$TMP/tty.out" \
        >/dev/null 2>&1 </dev/null &
    SCRIPT_PID=$!
    wait_for "Stop with" "$TMP/tty.out"
    NODE_PID=$(pgrep -P "$SCRIPT_PID" -f "run --http 0.0.0.0:$PORT" | head -n 1)
    url=$("$BIN" --dir "$DIR" url)
    if [ -n "$NODE_PID" ]; then kill -TERM "$NODE_PID"; else kill -TERM "$SCRIPT_PID"; fi
    wait "$SCRIPT_PID" 2>/dev/null; NODE_PID=
    check "on 0.0.0.0 the phones' URL is a LAN address, not loopback ($url)" \
        '[ "$url" != "http://127.0.0.1:$PORT/" ] && case "$url" in http://*.*.*.*:$PORT/) true ;; *) false ;; esac \
         && grep -q "phones *$url" "$TMP/tty.out"'
    check "run draws the phones' URL as a QR code in a terminal" \
        '[ "$(grep -c "█" "$TMP/tty.out")" -ge 10 ]'
    check "run draws no QR code when stdout is not a terminal" '! grep -q "█" "$TMP/node.out"'
else
    echo "# skipped: no LAN address or no script(1): the QR code at start is not checked"
fi

# ---- the poster ------------------------------------------------------------
PDIR=$TMP/poster
"$BIN" --dir "$PDIR" init --name 'Honey & Hive <Bees>' >/dev/null \
    && "$BIN" --dir "$PDIR" market create --name "Poster market" >/dev/null || nok "poster node init"
PORT=$((20000 + RANDOM % 12000))
"$BIN" --dir "$PDIR" run --http "127.0.0.1:$PORT" --listen none >"$TMP/poster.out" 2>"$TMP/poster.err" &
NODE_PID=$!
wait_for "Stop with" "$TMP/poster.out"
code=$(curl -s -o "$TMP/poster.html" -w '%{http_code} %{content_type}' "http://127.0.0.1:$PORT/poster")
check "GET /poster is the printable page (200 HTML)" \
    '[ "$code" = "200 text/html; charset=utf-8" ] && grep -q "Scan to see what is in stock" "$TMP/poster.html"' "$code"
code=$(curl -s -o "$TMP/poster.svg" -w '%{http_code} %{content_type}' "http://127.0.0.1:$PORT/poster.svg")
meta=$(python3 -c 'import sys, xml.dom.minidom as m
d = m.parse(sys.argv[1])
print(d.getElementsByTagName("title")[0].firstChild.data + "|" + d.getElementsByTagName("desc")[0].firstChild.data)' \
    "$TMP/poster.svg" 2>&1)
check "GET /poster.svg is well-formed SVG titled with the stall's name and the stock URL" \
    '[ "$code" = "200 image/svg+xml" ] && [ "$meta" = "Honey & Hive <Bees>|$(cat "$PDIR/stock-url")" ]' "$code $meta"
etag=$(curl -s -D - -o /dev/null "http://127.0.0.1:$PORT/poster.svg" | tr -d '\r' | sed -n 's/^etag: //Ip')
check "it has an ETag and answers 304 to it" \
    '[ -n "$etag" ] && [ "$(curl -s -o /dev/null -w %{http_code} -H "If-None-Match: $etag" "http://127.0.0.1:$PORT/poster.svg")" = 304 ]'
if command -v chromium >/dev/null 2>&1 && command -v zbarimg >/dev/null 2>&1; then
    timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --screenshot="$TMP/qr.png" --window-size=600,600 "http://127.0.0.1:$PORT/poster.svg" >/dev/null 2>&1
    decoded=$(zbarimg -q --raw "$TMP/qr.png" 2>/dev/null)
    check "the QR code, drawn by Chromium, scans as the stock page's URL ($decoded)" \
        '[ -n "$decoded" ] && [ "$decoded" = "$(cat "$PDIR/stock-url")" ]'
    timeout 60 chromium --headless --no-sandbox --disable-gpu --no-pdf-header-footer \
        --virtual-time-budget=5000 --print-to-pdf="$TMP/poster.pdf" "http://127.0.0.1:$PORT/poster" >/dev/null 2>&1
    pages=$(grep -ac '/Type /Page$' "$TMP/poster.pdf" 2>/dev/null)
    check "the poster prints on one A4 page (got ${pages:-no} pages)" \
        '[ "$pages" = 1 ] && grep -aq "MediaBox \[0 0 59[45]\.[0-9]* 84[12]\.[0-9]*\]" "$TMP/poster.pdf"'
else
    nok "chromium and zbarimg are installed (make deps)"
fi
kill -TERM "$NODE_PID"; wait "$NODE_PID" 2>/dev/null; NODE_PID=

# ---- the unit's system call filter lets a real node run ----------------------
# systemd kills or fails what the filter refuses (EPERM here), and libzmq
# aborts on it: its I/O threads call pthread_setschedparam at start, which
# the @resources group denies.  Work out the set the unit allows (its
# SystemCallFilter lines in order: names added, ~names taken away, groups
# expanded by systemd-analyze), run a node under strace through a start, a
# catalog item, a sale and SIGTERM, and check every call it made is allowed.
expand_calls() {   # NAME...: the calls, groups expanded (a work list, no recursion)
    local todo=("$@") n sub
    while [ ${#todo[@]} -gt 0 ]; do
        n=${todo[0]}
        todo=("${todo[@]:1}")
        case $n in
        @*) mapfile -t sub < <(systemd-analyze syscall-filter --no-pager "$n" 2>/dev/null </dev/null \
                | sed -n 's/^    \([@a-z0-9_-]*\)$/\1/p')
            todo+=("${sub[@]}") ;;
        *) echo "$n" ;;
        esac
    done
}
if command -v strace >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1; then
    : > "$TMP/allowed"
    while read -r line; do
        set -f
        # shellcheck disable=SC2086
        set -- ${line#SystemCallFilter=}
        set +f
        if [ "${1#\~}" != "$1" ]; then
            first=${1#\~}; shift
            expand_calls "$first" "$@" | sort -u > "$TMP/deny"
            sort -u "$TMP/allowed" | comm -23 - "$TMP/deny" > "$TMP/allowed.new"
        else
            { cat "$TMP/allowed"; expand_calls "$@"; } | sort -u > "$TMP/allowed.new"
        fi
        mv "$TMP/allowed.new" "$TMP/allowed"
    done < <(grep '^SystemCallFilter=' "$ROOT/deploy/stallmesh.service")
    check "the unit's filter allows the basic calls and denies @privileged ones (reboot)" \
        'grep -qx read "$TMP/allowed" && grep -qx epoll_wait "$TMP/allowed" && ! grep -qx reboot "$TMP/allowed"'
    SDIR=$TMP/straced
    "$BIN" --dir "$SDIR" init --name "Filter stall" >/dev/null \
        && "$BIN" --dir "$SDIR" market create --name "Filter market" --currency GBP >/dev/null \
        || nok "init and market create for the filter check"
    SPORT=
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 12000))
        [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && { SPORT=$p; break; }
    done
    strace -f -qq -c -o "$TMP/strace.txt" "$BIN" --dir "$SDIR" run --http "127.0.0.1:$SPORT" --listen none \
        >"$TMP/straced.out" 2>"$TMP/straced.err" &
    SPID=$!
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SPORT/readyz")" = 200 ] && break
        sleep 0.1
    done
    stok=$(cat "$SDIR/api-token" 2>/dev/null)
    for _ in $(seq 1 40); do
        c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $stok" -H 'Content-Type: application/json' \
            -d '{"sku":"jar","name":"Jar","price":500,"currency":"GBP"}' "http://127.0.0.1:$SPORT/api/items")
        [ "$c" = 503 ] || break
        sleep 0.25
    done
    curl -s -o /dev/null -H "Authorization: Bearer $stok" -H 'Content-Type: application/json' \
        -d '{"sku":"jar","qty":5}' "http://127.0.0.1:$SPORT/api/stock/add"
    sale=$(curl -s -o "$TMP/sale.json" -w '%{http_code}' -H "Authorization: Bearer $stok" -H 'Content-Type: application/json' \
        -d '{"lines":[{"sku":"jar","qty":1}],"source":"in_person","payment":"cash"}' "http://127.0.0.1:$SPORT/api/sales")
    # strace's pid is $!: TERM the node itself (strace's child), then wait for strace.
    npid=$(pgrep -P "$SPID" -f "run --http 127.0.0.1:$SPORT" | head -n 1)
    [ -n "$npid" ] && kill -TERM "$npid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SPID" 2>/dev/null && kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    awk 'NF >= 5 && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" && $NF != "syscall" { print $NF }' "$TMP/strace.txt" \
        | sort -u > "$TMP/used"
    denied=$(comm -23 "$TMP/used" "$TMP/allowed" | tr '\n' ' ')
    check "a node under strace started, sold (201) and stopped ($(wc -l < "$TMP/used") distinct calls)" \
        '[ "$sale" = 201 ] && [ "$(wc -l < "$TMP/used")" -gt 20 ]' "sale $sale $(cat "$TMP/sale.json"); $(tail -n 3 "$TMP/straced.err")"
    check "every system call the node made is one the unit's filter allows${denied:+ (denied: $denied)}" \
        '[ -z "$denied" ]' "$denied"
else
    nok "strace and systemd-analyze are installed (make deps)"
fi

finish
