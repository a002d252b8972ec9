#!/bin/bash
# A smoke test of a stallmesh binary, run through a wrapper (qemu for a
# cross build):
#
#   bash tests/integration/smoke.sh build-arm64/stallmesh qemu-aarch64-static -L /
#
# init, market create, run on a free loopback port, an item, stock and a
# sale over HTTP (the till's API), the sale in the stock, a clean SIGTERM,
# then verify and the log: the whole life of a node on that architecture;
# and the node's key sealed with a passphrase (identity export) and put
# back (identity import) on it.
# Prints "ok - ..." per check and "N passed, M failed"; exit status non-zero
# if any failed.  Waits are bounded; only the node it started is stopped.
BIN=${1:?usage: smoke.sh BIN [WRAPPER...]}
shift
RUN=("$@" "$BIN")

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }
# check NAME COMMAND [FILE]: FILE (read after the command) explains a failure.
check() { if eval "$2"; then ok "$1"; else nok "$1" "$([ -n "${3:-}" ] && cat "$3" 2>/dev/null)"; fi; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-smoke.XXXXXX") || exit 1
NODE_PID=
trap '[ -n "$NODE_PID" ] && kill -KILL "$NODE_PID" 2>/dev/null; rm -rf "$TMP"' EXIT
unset STALLMESH_DIR NOTIFY_SOCKET JOURNAL_STREAM
DIR=$TMP/stall
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

check "init" '"${RUN[@]}" --dir "$DIR" init --name "Pi stall" >/dev/null 2>"$TMP/err"' "$TMP/err"
check "market create" '"${RUN[@]}" --dir "$DIR" market create --name "Smoke market" >/dev/null 2>"$TMP/err"' \
    "$TMP/err"
TOKEN=$(cat "$DIR/api-token" 2>/dev/null)
for _ in $(seq 1 50); do
    PORT=$((20000 + RANDOM % 12000))
    [ -z "$(ss -Htan "sport = :$PORT" 2>/dev/null)" ] && break
done
"${RUN[@]}" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen none >"$TMP/node.out" 2>"$TMP/node.err" &
NODE_PID=$!
up=no
for _ in $(seq 1 300); do          # up to 30 s: emulation is slow to start
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/readyz" && { up=yes; break; }
    kill -0 "$NODE_PID" 2>/dev/null || break
    sleep 0.1
done
check "run: the node answers /readyz" '[ $up = yes ]' "$TMP/node.err"
[ $up = yes ] || finish
api() {
    curl -s --max-time 20 -o "$TMP/body" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' ${2:+--data-binary "$2"} "http://127.0.0.1:$PORT$3"
}
check "an item over HTTP (201)" \
    '[ "$(api POST "{\"sku\":\"jam\",\"name\":\"Jam\",\"price\":450}" /api/items)" = 201 ]' \
    "$TMP/body"
check "stock over HTTP (201)" '[ "$(api POST "{\"sku\":\"jam\",\"qty\":5}" /api/stock/add)" = 201 ]' "$TMP/body"
check "a sale over HTTP (201)" \
    '[ "$(api POST "{\"lines\":[{\"sku\":\"jam\",\"qty\":2}],\"source\":\"in_person\",\"payment\":\"cash\"}" /api/sales)" = 201 ]' \
    "$TMP/body"
check "the stock shows 3 jam left" \
    '[ "$(api GET "" /api/stock)" = 200 ] && jq -e ".items[] | select(.sku == \"jam\") | .here == 3" "$TMP/body" >/dev/null' \
    "$TMP/body"
kill -TERM "$NODE_PID"
for _ in $(seq 1 300); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
wait "$NODE_PID" 2>/dev/null
rc=$?
NODE_PID=
check "SIGTERM stops the node cleanly (exit 0)" '[ $rc = 0 ]' "$TMP/node.err"
check "verify: every entry checks" \
    '"${RUN[@]}" --dir "$DIR" verify >"$TMP/verify" 2>&1 && grep -q "^ok: 4 entries checked" "$TMP/verify"' \
    "$TMP/verify"
check "the log holds the sale" \
    '"${RUN[@]}" --dir "$DIR" log 2>/dev/null | jq -se "map(select(.kind == \"sale\")) | length == 1" >/dev/null'
echo "smoke test passphrase" > "$TMP/pass"
check "identity export seals the key; import puts it back, the same" \
    '"${RUN[@]}" --dir "$DIR" identity export --passphrase-file "$TMP/pass" >"$TMP/sealed" 2>"$TMP/err" \
     && "${RUN[@]}" --dir "$TMP/copy" identity import "$(cat "$TMP/sealed")" --passphrase-file "$TMP/pass" \
        >/dev/null 2>>"$TMP/err" && cmp -s "$DIR/identity" "$TMP/copy/identity"' "$TMP/err"
finish
