#!/bin/sh
# Integration test of the CLI commands that talk to a running node: a real
# `stallmesh run` on 127.0.0.1 with a real store, driven only through
# `stallmesh item/stock/sell/return/hold/sales/status/peers`:
#
#   sh tests/integration/test_api_cli.sh build/stallmesh      (from the repo root)
#
# Checks each command's text and --json output, that the address comes from
# DIR/http, $STALLMESH_NODE and --node, and the error paths: an unknown sku,
# insufficient stock, an over-return, a stock move to an unknown node or to
# itself, a wrong or missing token, a node that is not running, usage errors
# (exit 2).  The node runs alone (no mesh listener): its peers table is
# empty, and a stock move goes to a member admitted before it started.  Each check prints "ok - ..." or
# "not ok - ..."; the last line is "N passed, M failed", and the script
# exits non-zero if M > 0.  Every wait is bounded; only the node this script
# started is stopped, by its PID.  Needs curl (to wait for /readyz).

BIN=${1:-build/stallmesh}
case $BIN in
/*) ;;
*) BIN=$(pwd)/$BIN ;;
esac

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() {
    fail=$((fail + 1)); echo "not ok - $1"
    # What the command printed, to see why.
    [ -n "${out:-}${err:-}" ] && printf '#   rc=%s out=%s err=%s\n' "${rc:-}" "$out" "$err" | head -n 12
}
# check DESCRIPTION CONDITION: ok if the shell condition holds.  CONDITION is
# a string in single quotes, expanded only when it is checked.
check() {
    if eval "$2"; then ok "$1"; else nok "$1"; fi
}
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

if [ ! -x "$BIN" ]; then
    nok "$BIN is an executable (build it with make)"
    finish
fi
if ! command -v curl >/dev/null 2>&1; then
    nok "curl is installed (make deps installs it)"
    finish
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-apicli.XXXXXX") || exit 1
NODE_PID=
cleanup() {
    if [ -n "$NODE_PID" ]; then
        kill -KILL "$NODE_PID" 2>/dev/null
        wait "$NODE_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE
DIR=$TMP/stall
EMPTY=$TMP/empty          # a data directory without a token
WRONG=$TMP/wrong          # a data directory with another token
mkdir -m 700 "$EMPTY" "$WRONG"
printf '%064d\n' 0 >"$WRONG/api-token"
chmod 600 "$WRONG/api-token"

# run ARGS...: run the binary on $DIR; sets $rc, $out (stdout) and $err (stderr).
run() {
    "$BIN" --dir "$DIR" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    rc=$?
    out=$(cat "$TMP/stdout")
    err=$(cat "$TMP/stderr")
}
# run_in DIR ARGS...: the same on another data directory.
run_in() {
    d=$1
    shift
    "$BIN" --dir "$d" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    rc=$?
    out=$(cat "$TMP/stdout")
    err=$(cat "$TMP/stderr")
}
has() { printf '%s\n' "$1" | grep -Fq -- "$2"; }
# has_line TEXT ERE: some line of TEXT matches the extended regex ERE whole.
has_line() { printf '%s\n' "$1" | grep -Eqx -- "$2"; }
lines() { if [ -z "$1" ]; then echo 0; else printf '%s\n' "$1" | wc -l | tr -d ' '; fi; }
is_json_object() { printf '%s\n' "$1" | grep -Eqx '\{.*\}'; }
# json_str TEXT KEY: the string value of "KEY" in one line of JSON (first one).
json_str() { printf '%s\n' "$1" | sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; }
SALE_ID_RE='[0-9a-f]{64}:[0-9]+'

"$BIN" --dir "$DIR" init --name "Stall A" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$DIR" market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
NODE_ID=$("$BIN" --dir "$DIR" id --json | sed 's/.*"node": *"\([0-9a-f]*\)".*/\1/')
# A second stall, admitted to the market (it never runs): somewhere to move
# units to.  And an id that is no member.
"$BIN" --dir "$TMP/stallb" init --name "Stall B" >/dev/null || { nok "init of stall B"; finish; }
B_ID=$("$BIN" --dir "$TMP/stallb" id --json | sed 's/.*"node": *"\([0-9a-f]*\)".*/\1/')
"$BIN" --dir "$DIR" admit "$B_ID" --name "Stall B" >/dev/null || { nok "admit stall B"; finish; }
STRANGER=$(printf '%064d' 7)

# ---- before the node runs ------------------------------------------------
# A port nothing listens on (checked with curl), for the "not running" case
# and then for the node itself.
PORT=
for _ in 1 2 3 4 5 6 7 8 9 10; do
    p=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 12000))
    if ! curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$p/"; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { nok "a free loopback port"; finish; }
URL=http://127.0.0.1:$PORT

run stock --node "$URL"
check "with no node running, stock exits 1 saying the node cannot be reached and how to start it" \
    '[ $rc -eq 1 ] && has "$err" "cannot reach the node at $URL" && has "$err" "stallmesh run"'
printf '%s\n' "$URL" >"$DIR/http"
run status
check "the address comes from DIR/http, and the message names the file" \
    '[ $rc -eq 1 ] && has "$err" "$URL" && has "$err" "$DIR/http"'
rm -f "$DIR/http"
run --node "ftp://127.0.0.1:$PORT" stock
check "a --node that is not http:// is a usage error (exit 2)" '[ $rc -eq 2 ] && has "$err" "--node"'
STALLMESH_NODE=nonsense run stock
check "a \$STALLMESH_NODE that is not an address exits 1 naming it" \
    '[ $rc -eq 1 ] && has "$err" "STALLMESH_NODE"'

# ---- usage errors: exit 2 before anything is sent --------------------------
run item add tee --name "T-shirt"
check "item add without --price: exit 2" '[ $rc -eq 2 ] && has "$err" "--price"'
run item add tee --name "T-shirt" --price 12.50
check "item add with a decimal price: exit 2 (prices are minor units)" '[ $rc -eq 2 ]'
run stock adjust tee -1
check "stock adjust without --reason: exit 2" '[ $rc -eq 2 ] && has "$err" "--reason"'
run stock add tee 0
check "stock add of 0 units: exit 2" '[ $rc -eq 2 ]'
run stock add tee -2
check "stock add of a negative quantity: exit 2" '[ $rc -eq 2 ]'
run sell
check "sell with no line: exit 2" '[ $rc -eq 2 ]'
run sell tee --payment bitcoin
check "sell with an unknown payment: exit 2" '[ $rc -eq 2 ] && has "$err" "--payment"'
run sell tee tee:2
check "sell naming a sku twice: exit 2" '[ $rc -eq 2 ]'
run return "$NODE_ID:1" tee
check "return without --reason: exit 2" '[ $rc -eq 2 ]'
run sales --limit 0
check "sales --limit 0: exit 2" '[ $rc -eq 2 ]'
run stock move tee 1
check "stock move without --to: exit 2" '[ $rc -eq 2 ] && has "$err" "--to"'
run stock move tee 1 --to 12ab
check "stock move --to something that is not a node id: exit 2" '[ $rc -eq 2 ] && has "$err" "--to"'
run stock move tee 0 --to "$B_ID"
check "stock move of 0 units: exit 2" '[ $rc -eq 2 ]'
run peers everyone
check "peers with an argument: exit 2" '[ $rc -eq 2 ]'
run stock --help
check "stock --help prints its usage line, exit 0" '[ $rc -eq 0 ] && has "$out" "usage: stallmesh stock"'

# ---- start the node ---------------------------------------------------------
# start_node: run the node on $PORT, wait (bounded: 10 s) until /readyz answers.
start_node() {
    "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --listen none >"$TMP/node.out" 2>>"$TMP/node.err" &
    NODE_PID=$!
    for _ in $(seq 1 200); do
        curl -s -o /dev/null --max-time 2 "$URL/readyz" && return 0
        kill -0 "$NODE_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
# Another process may take the port meanwhile: up to 3 tries on fresh ports.
started=no
for _ in 1 2 3; do
    if start_node; then started=yes; break; fi
    kill -KILL "$NODE_PID" 2>/dev/null
    wait "$NODE_PID" 2>/dev/null
    NODE_PID=
    PORT=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 12000))
    URL=http://127.0.0.1:$PORT
done
if [ "$started" = no ]; then
    out=
    err=$(tail -n 5 "$TMP/node.err" 2>/dev/null)
    nok "the node starts on $URL and answers /readyz"
    finish
fi
ok "the node starts on $URL and answers /readyz"
check "the node wrote its address to DIR/http" 'grep -qx "$URL" "$DIR/http"'

# From here on no command names the node: the address comes from DIR/http.

# ---- status ------------------------------------------------------------------
run status
check "status exits 0 and shows this node's id" \
    '[ $rc -eq 0 ] && has_line "$out" "node +$NODE_ID"'
check "status shows the state version and a 64-hex digest" \
    'has_line "$out" "version +[0-9]+" && has_line "$out" "digest +[0-9a-f]{64}"'
check "status says the node is ready" 'has_line "$out" "ready +yes"'
run status --json
check "status --json is one JSON object with the node, the digest and ready" \
    '[ $rc -eq 0 ] && is_json_object "$out" && has "$out" "\"node\": \"$NODE_ID\"" && has "$out" "\"ready\": true" && [ -n "$(json_str "$out" digest)" ]'
check "status --json has the state's quarantined origins: none" 'has "$out" "\"quarantined\": []"'

# ---- peers -------------------------------------------------------------------
run peers
check "peers with no mesh: exit 0, the table's header and no rows" \
    '[ $rc -eq 0 ] && has_line "$out" "NODE +NAME +ENDPOINT +CONNECTED +LAST SEEN +BEHIND" && [ $(lines "$out") -eq 1 ]'
check "peers with none says on stderr how to give the node some" 'has "$err" "--peer NODE_ID@tcp://"'
run peers --json
check "peers --json is the node's answer: an empty list" \
    '[ $rc -eq 0 ] && is_json_object "$out" && has "$out" "\"peers\":[]"'

# ---- item add ------------------------------------------------------------------
run stock
check "stock with an empty catalog says how to add an item" \
    '[ $rc -eq 0 ] && has "$out" "stallmesh item add"'
run item add tee --name "T-shirt" --price 2000
check "item add prints the item with its price in major units" \
    '[ $rc -eq 0 ] && [ "$out" = "item tee: T-shirt at 20.00 GBP" ]'
run item add mug --name "Blue mug" --price 1250 --currency GBP --json
check "item add --json prints the node's JSON" '[ $rc -eq 0 ] && is_json_object "$out"'
run item add cap --name "Cap" --price 500 --currency EUR
check "item add in another currency than the market's is refused with the node's error" \
    '[ $rc -eq 1 ] && has "$err" "stallmesh: " && [ -z "$out" ]'

# ---- stock add, stock adjust, stock ------------------------------------------
run stock add tee 5
check "stock add exits 0 and names the sku" '[ $rc -eq 0 ] && has "$out" "tee: added 5"'
run stock add mug 10 --json
check "stock add --json prints the node's JSON" '[ $rc -eq 0 ] && is_json_object "$out"'
run stock add nosuch 1
check "stock add of an unknown sku: exit 1 with the node's error" \
    '[ $rc -eq 1 ] && has "$err" "unknown_sku"'
run stock adjust tee -1 --reason "stock-take"
check "stock adjust takes a negative quantity" '[ $rc -eq 0 ] && has "$out" "tee: adjusted by -1"'
run stock adjust tee -100 --reason "stock-take"
check "stock adjust below what is here: exit 1 with the node's error" \
    '[ $rc -eq 1 ] && has "$err" "stallmesh: "'
run stock
check "stock prints a header: SKU NAME PRICE HERE TOTAL HELD" \
    '[ $rc -eq 0 ] && has_line "$out" "SKU +NAME +PRICE +HERE +TOTAL +HELD"'
check "stock shows tee: 20.00 GBP, 4 here, 4 in all, 0 held" \
    'has_line "$out" "tee +T-shirt +20\.00 GBP +4 +4 +0"'
check "stock shows mug: 12.50 GBP, 10 here" 'has_line "$out" "mug +Blue mug +12\.50 GBP +10 +10 +0"'
check "stock prints one line per item and the header" '[ $(lines "$out") -eq 3 ]'
run stock --json
check "stock --json is the node's stock document" \
    '[ $rc -eq 0 ] && is_json_object "$out" && has "$out" "\"items\"" && has "$out" "\"version\""'

# ---- sell --------------------------------------------------------------------
run sell tee:2
SALE1=$(printf '%s\n' "$out" | sed -n 's/^sale \([^:]*:[0-9]*\): .*/\1/p')
check "sell prints the sale id and its total" \
    '[ $rc -eq 0 ] && printf "%s\n" "$SALE1" | grep -Eqx "$SALE_ID_RE" && has "$out" ": 40.00 GBP"'
run sell tee:10
check "selling more than is here: exit 1, insufficient_stock with the units here" \
    '[ $rc -eq 1 ] && has "$err" "insufficient_stock" && has "$err" "2 here"'
run sell nosuch
check "selling an unknown sku: exit 1, unknown_sku" '[ $rc -eq 1 ] && has "$err" "unknown_sku"'
run sell nosuch --json
check "with --json a refusal also prints the node's error JSON on stdout" \
    '[ $rc -eq 1 ] && is_json_object "$out" && has "$out" "\"error\""'
run sell mug:1:1000 tee --payment cash --source livestream --external-id till-42
SALE2=$(printf '%s\n' "$out" | sed -n 's/^sale \([^:]*:[0-9]*\): .*/\1/p')
check "sell of two lines with a price and an external id" \
    '[ $rc -eq 0 ] && [ -n "$SALE2" ] && has "$out" "30.00 GBP"'
run sell mug:1:1000 tee --payment cash --source livestream --external-id till-42
check "the same external id again returns the first sale and sells nothing" \
    '[ $rc -eq 0 ] && has "$out" "sale $SALE2: already recorded"'
run sell tee:1 --json
check "sell --json prints the node's JSON with the id" \
    '[ $rc -eq 0 ] && is_json_object "$out" && json_str "$out" id | grep -Eqx "$SALE_ID_RE"'
run stock
check "after the sales: tee 0 here, mug 9" \
    'has_line "$out" "tee +T-shirt +20\.00 GBP +0 +0 +0" && has_line "$out" "mug +Blue mug +12\.50 GBP +9 +9 +0"'

# ---- hold --------------------------------------------------------------------
run hold tee
check "holding a sku with nothing here: exit 1, insufficient_stock" \
    '[ $rc -eq 1 ] && has "$err" "insufficient_stock"'
run hold mug 2
HOLD=$(printf '%s\n' "$out" | sed -n 's/^hold \([^ ]*\) code [2-9A-Z]*: 2 x mug.*/\1/p')
check "hold prints the hold id and when it expires" \
    '[ $rc -eq 0 ] && [ -n "$HOLD" ] && has "$out" " until "'
run stock
check "stock shows the held units" 'has_line "$out" "mug +Blue mug +12\.50 GBP +[0-9]+ +[0-9]+ +2"'
run hold --release "$HOLD"
check "hold --release releases it" '[ $rc -eq 0 ] && [ "$out" = "released hold $HOLD" ]'
run stock
check "after the release nothing is held" 'has_line "$out" "mug +Blue mug +12\.50 GBP +9 +9 +0"'
run hold --release "$HOLD"
check "releasing it again: exit 1 with the node's error" '[ $rc -eq 1 ] && has "$err" "stallmesh: "'
run hold mug --json
HOLD2=$(json_str "$out" id)
check "hold --json prints the node's JSON with id and expires_at" \
    '[ $rc -eq 0 ] && [ -n "$HOLD2" ] && [ -n "$(json_str "$out" expires_at)" ]'
run sell mug --hold "$HOLD2"
check "sell --hold sells the held unit" '[ $rc -eq 0 ] && has "$out" "12.50 GBP"'

# ---- return ------------------------------------------------------------------
run return "$SALE1" tee:1 --reason "wrong size"
check "return of one unit of a sale" '[ $rc -eq 0 ] && has "$out" "recorded against sale $SALE1"'
run stock
check "the returned unit is back here" 'has_line "$out" "tee +T-shirt +20\.00 GBP +1 +1 +0"'
run return "$SALE1" tee:5 --reason "wrong size"
check "returning more than was sold: exit 1 with the node's error" \
    '[ $rc -eq 1 ] && has "$err" "stallmesh: "'
run return "$SALE1" mug --reason "not in the sale"
check "returning a sku the sale does not have: exit 1" '[ $rc -eq 1 ]'

# ---- sales -------------------------------------------------------------------
run sales
check "sales lists the four sales, one a line, with their ids" \
    '[ $rc -eq 0 ] && [ $(printf "%s\n" "$out" | grep -Ec "^$SALE_ID_RE ") -eq 4 ] && has "$out" "$SALE1" && has "$out" "$SALE2"'
check "sales shows lines and totals" 'has "$out" "tee x2 @ 20.00 GBP" && has "$out" "= 40.00 GBP"'
check "sales with fewer than a page of sales does not offer more" '! has "$out" "more:"'
run sales --limit 1
check "sales --limit 1 lists the first sale and how to get the next page" \
    '[ $rc -eq 0 ] && [ $(printf "%s\n" "$out" | grep -Ec "^$SALE_ID_RE ") -eq 1 ] && has "$out" "$SALE1 " && has_line "$out" "more: stallmesh sales --since [0-9]+"'
NEXT=$(printf '%s\n' "$out" | sed -n 's/^more: stallmesh sales --since //p')
run sales --since "$NEXT" --limit 1
check "sales --since NEXT lists the next sale" \
    '[ $rc -eq 0 ] && [ $(printf "%s\n" "$out" | grep -Ec "^$SALE_ID_RE ") -eq 1 ] && has "$out" "$SALE2 "'
run sales --since 999999
check "sales after the last seq says there are none" '[ $rc -eq 0 ] && [ "$out" = "no sales since then" ]'
run sales --json
check "sales --json prints the node's JSON" '[ $rc -eq 0 ] && is_json_object "$out" && has "$out" "$SALE2"'

# ---- stock move --------------------------------------------------------------
run stock move mug 1 --to "$STRANGER"
check "stock move to a node that is no member: exit 1, the node's unknown_node" \
    '[ $rc -eq 1 ] && has "$err" "stallmesh: unknown_node" && [ -z "$out" ]'
run stock move mug 1 --to "$NODE_ID"
check "stock move to this node itself: exit 1, the node's self_move" \
    '[ $rc -eq 1 ] && has "$err" "stallmesh: self_move"'
run stock move mug 1000 --to "$B_ID"
check "stock move of more than is here: exit 1, insufficient_stock" \
    '[ $rc -eq 1 ] && has "$err" "insufficient_stock"'
run stock move mug 1 --to "$STRANGER" --json
check "with --json a refused move prints the node's error JSON" \
    '[ $rc -eq 1 ] && is_json_object "$out" && has "$out" "\"unknown_node\""'
run stock
MUG_HERE=$(printf '%s\n' "$out" | sed -n 's/^mug  *Blue mug  *12\.50 GBP  *\([0-9]*\)  *\([0-9]*\) .*/\1/p')
MUG_TOTAL=$(printf '%s\n' "$out" | sed -n 's/^mug  *Blue mug  *12\.50 GBP  *\([0-9]*\)  *\([0-9]*\) .*/\2/p')
check "the refused moves left mug as it was" '[ -n "$MUG_HERE" ] && [ "$MUG_HERE" -ge 2 ]'
run stock move mug 2 --to "$B_ID"
check "stock move to the admitted stall prints what moved and what is left here" \
    '[ $rc -eq 0 ] && [ "$out" = "mug: moved 2 to $B_ID, $((MUG_HERE - 2)) here" ]'
run stock
check "after the move: 2 fewer mugs here, the market total unchanged" \
    'has_line "$out" "mug +Blue mug +12\.50 GBP +$((MUG_HERE - 2)) +$MUG_TOTAL +0"'
run stock --json
check "the stock document lists the moved mugs at stall B, by name" \
    'printf "%s\n" "$out" | grep -Fq "{\"node\":\"$B_ID\",\"name\":\"Stall B\",\"units\":2}"'
run stock move tee 1 --to "$B_ID" --json
check "stock move --json prints the node's JSON" \
    '[ $rc -eq 0 ] && is_json_object "$out" && [ "$(json_str "$out" to)" = "$B_ID" ]'

# ---- tokens and addresses ----------------------------------------------------
run_in "$WRONG" item add hat --name Hat --price 100 --node "$URL"
check "a wrong token: exit 1, the node's error and which token file to check" \
    '[ $rc -eq 1 ] && has "$err" "stallmesh: unauthorized" && has "$err" "$WRONG/api-token"'
run_in "$EMPTY" sell mug --node "$URL"
check "a write with no token file: exit 1 saying where the token should be" \
    '[ $rc -eq 1 ] && has "$err" "$EMPTY/api-token" && has "$err" "stallmesh init"'
run_in "$EMPTY" stock --node "$URL"
check "stock (a public read) works without a token" '[ $rc -eq 0 ] && has "$out" "mug"'
STALLMESH_NODE=$URL run_in "$EMPTY" status
check "the address can come from \$STALLMESH_NODE" '[ $rc -eq 0 ] && has "$out" "$NODE_ID"'
run_in "$EMPTY" stock --node "$URL/"
check "a --node with a trailing / works" '[ $rc -eq 0 ]'

# ---- after the node stops ----------------------------------------------------
kill -TERM "$NODE_PID" 2>/dev/null
stopped=no
for _ in $(seq 1 100); do
    if ! kill -0 "$NODE_PID" 2>/dev/null; then stopped=yes; break; fi
    sleep 0.05
done
if [ "$stopped" = yes ]; then
    wait "$NODE_PID" 2>/dev/null
    NODE_PID=
fi
check "the node stops on SIGTERM" '[ "$stopped" = yes ]'
run stock
check "once it has stopped, stock exits 1 saying it cannot reach the node, and where the address came from" \
    '[ $rc -eq 1 ] && has "$err" "cannot reach the node" && has "$err" "$DIR/http"'

finish
