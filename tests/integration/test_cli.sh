#!/bin/sh
# Integration test of the stallmesh command line, run as real processes on
# data directories made with mktemp -d:
#
#   sh tests/integration/test_cli.sh build/stallmesh      (from the repo root)
#
# An organiser and two stalls: init, market create, admit (text, --json,
# --qr), join, revoke, digest, verify, reindex and log; refusals of a
# tampered token, a token made for another node, a second init, a
# non-organiser's admit and revoke, an identity readable by others; file
# modes; exit status 2 for usage errors.  Each check prints "ok - ..." or
# "not ok - ..."; the last line is "N passed, M failed", and the script
# exits non-zero if M > 0.  Output is parsed with grep and sed only.

BIN=${1:-build/stallmesh}
case $BIN in
/*) ;;
*) BIN=$(pwd)/$BIN ;;
esac

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; }
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

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-cli.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR
ORG=$TMP/organiser
STALL=$TMP/stall
OTHER=$TMP/other

# run ARGS...: run the binary; sets $rc, $out (stdout) and $err (stderr).
run() {
    "$BIN" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    rc=$?
    out=$(cat "$TMP/stdout")
    err=$(cat "$TMP/stderr")
}
is_hex64() { printf '%s\n' "$1" | grep -Eqx '[0-9a-f]{64}'; }
has() { printf '%s\n' "$1" | grep -Fq -- "$2"; }
# matches TEXT ERE: every line of TEXT matches the extended regex ERE.
matches() { [ -n "$1" ] && ! printf '%s\n' "$1" | grep -Evxq -- "$2"; }
first_line() { printf '%s\n' "$1" | head -n 1; }
lines() { if [ -z "$1" ]; then echo 0; else printf '%s\n' "$1" | wc -l | tr -d ' '; fi; }
mode() { stat -c %a "$1" 2>/dev/null; }
# flip POS TEXT: TEXT with the character at POS (1-based) replaced.
flip() {
    before=
    [ "$1" -gt 1 ] && before=$(printf '%s' "$2" | cut -c1-$(($1 - 1)))
    at=$(printf '%s' "$2" | cut -c"$1")
    after=$(printf '%s' "$2" | cut -c$(($1 + 1))-)
    if [ "$at" = A ]; then at=B; else at=A; fi
    printf '%s%s%s' "$before" "$at" "$after"
}

NOT_ORG="only the market's organiser"
TAMPERED="damaged, tampered with, or was made for another node"

# ---- global options ---------------------------------------------------
run --version
check "--version prints 'stallmesh 0.1.0'" '[ $rc -eq 0 ] && [ "$out" = "stallmesh 0.1.0" ]'
run --help
all=yes
for c in init id "market create" admit join revoke digest verify reindex log; do
    printf '%s\n' "$out" | grep -q "^  $c" || all=no
done
check "--help exits 0 and lists every command" '[ $rc -eq 0 ] && [ $all = yes ]'
run
check "no command: exit 2 with the usage line" '[ $rc -eq 2 ] && has "$err" "usage: stallmesh"'
run --dir "$ORG" frobnicate
check "unknown command: exit 2" '[ $rc -eq 2 ]'
run --dir "$ORG" digest --bogus
check "unknown option: exit 2" '[ $rc -eq 2 ]'
run --dir "$ORG" admit --help
check "COMMAND --help prints its usage line" '[ $rc -eq 0 ] && has "$out" "usage: stallmesh admit NODE_ID"'

# ---- init -------------------------------------------------------------
run --dir "$ORG" digest
check "digest before init: exit 1, saying to run init" '[ $rc -eq 1 ] && has "$err" "stallmesh init"'
run --dir "$ORG" init --name "Market office"
ORG_ID=$out
check "init prints the node id as 64 hex digits" '[ $rc -eq 0 ] && is_hex64 "$ORG_ID"'
check "data directory has mode 0700" '[ "$(mode "$ORG")" = 700 ]'
check "identity has mode 0600" '[ "$(mode "$ORG/identity")" = 600 ]'
check "api-token has mode 0600" '[ "$(mode "$ORG/api-token")" = 600 ]'
check "api-token holds 64 hex digits" 'is_hex64 "$(cat "$ORG/api-token")"'
check "store directory exists" '[ -d "$ORG/store" ]'
check "name file holds the name" '[ "$(cat "$ORG/name")" = "Market office" ]'
cp "$ORG/identity" "$TMP/identity.before"
run --dir "$ORG" init
check "init twice: exit 1, saying the identity exists" '[ $rc -eq 1 ] && has "$err" "already exists"'
check "init twice: identity unchanged" 'cmp -s "$ORG/identity" "$TMP/identity.before"'

run --dir "$STALL" init --json
STALL_ID=$(printf '%s\n' "$out" | sed -n 's/^{"node": "\([0-9a-f]\{64\}\)"}$/\1/p')
check "init --json prints {\"node\": ID}" '[ $rc -eq 0 ] && is_hex64 "$STALL_ID"'
run --dir "$OTHER" init
OTHER_ID=$out
check "a third node initialises" '[ $rc -eq 0 ] && is_hex64 "$OTHER_ID"'
check "node ids differ" '[ "$ORG_ID" != "$STALL_ID" ] && [ "$STALL_ID" != "$OTHER_ID" ]'

HOME=$TMP/home "$BIN" init >/dev/null 2>&1
check "default data directory is \$HOME/.local/share/stallmesh, mode 0700" \
    '[ "$(mode "$TMP/home/.local/share/stallmesh")" = 700 ] && [ -f "$TMP/home/.local/share/stallmesh/identity" ]'
STALLMESH_DIR=$TMP/envdir "$BIN" init >/dev/null 2>&1
check "STALLMESH_DIR picks the data directory" '[ -f "$TMP/envdir/identity" ]'

# ---- market create ----------------------------------------------------
run --dir "$ORG" market create --name "Saturday Market" --currency gbp
check "market create with a bad currency: exit 2" '[ $rc -eq 2 ] && has "$err" "ISO 4217"'
run --dir "$ORG" market create
check "market create without --name: exit 2" '[ $rc -eq 2 ]'
run --dir "$ORG" market create --name "Saturday Market" --currency GBP --json
check "market create --json: market and node are the organiser's id" \
    '[ $rc -eq 0 ] && [ "$out" = "{\"market\": \"$ORG_ID\", \"node\": \"$ORG_ID\"}" ]'
run --dir "$ORG" market create --name "Sunday Market"
check "a second market create: exit 1" '[ $rc -eq 1 ] && has "$err" "already belongs"'
entries=1                      # the organiser's admit of itself
run --dir "$ORG" id
check "id names the node and its market, as organiser" \
    '[ $rc -eq 0 ] && has "$out" "node    $ORG_ID" && has "$out" "market  $ORG_ID  Saturday Market (GBP), organiser"'
run --dir "$ORG" id --json
check "id --json gives node, market, name, currency" \
    '[ $rc -eq 0 ] && has "$out" "\"node\": \"$ORG_ID\"" && has "$out" "\"market_name\": \"Saturday Market\"" && has "$out" "\"organiser\": true"'
run --dir "$STALL" id
check "id before joining says how to get a market" '[ $rc -eq 0 ] && has "$out" "market  none"'

# ---- admit ------------------------------------------------------------
run --dir "$ORG" admit nothex --name "Honey"
check "admit with a bad node id: exit 2" '[ $rc -eq 2 ]'
run --dir "$ORG" admit "$STALL_ID"
check "admit without --name: exit 2" '[ $rc -eq 2 ]'
run --dir "$ORG" admit "$STALL_ID" --name Honey --endpoint tcp://host:99999
check "admit with a bad endpoint port: exit 2" '[ $rc -eq 2 ]'
run --dir "$ORG" admit "$STALL_ID" --name Honey --endpoint http://host:7400
check "admit with a non-tcp endpoint: exit 2" '[ $rc -eq 2 ]'
run --dir "$ORG" admit "$STALL_ID" --name Honey --role chef
check "admit with an unknown role: exit 2" '[ $rc -eq 2 ]'
run --dir "$ORG" admit "$ORG_ID" --name Myself
check "admit of the organiser itself: exit 1" '[ $rc -eq 1 ]'

run --dir "$ORG" admit "$STALL_ID" --name "Honey & Hive" --endpoint tcp://192.168.1.10:7400 \
    --endpoint "tcp://[fe80::1]:7400"
TOKEN=$out
entries=$((entries + 1))
check "admit prints a join token" '[ $rc -eq 0 ] && matches "$TOKEN" "smj1\.[A-Za-z0-9_-]+"'
run --dir "$ORG" admit "$STALL_ID" --name "Honey & Hive" --json
entries=$((entries + 1))
check "admit --json prints {\"token\": ...}" \
    '[ $rc -eq 0 ] && matches "$out" "\{\"token\": \"smj1\.[A-Za-z0-9_-]+\"\}"'
run --dir "$ORG" admit "$STALL_ID" --name "Honey & Hive" --qr
entries=$((entries + 1))
check "admit --qr prints the token, then a QR code in half blocks" \
    '[ $rc -eq 0 ] && matches "$(first_line "$out")" "smj1\..*" && has "$out" "█" && [ $(lines "$out") -gt 10 ]'
run --dir "$ORG" admit "$OTHER_ID" --name "Other stall"
OTHER_TOKEN=$out
entries=$((entries + 1))
check "admit of a second node" '[ $rc -eq 0 ]'

# ---- join -------------------------------------------------------------
len=$(printf '%s' "$TOKEN" | wc -c)
refused=0
for pos in 1 3 6 40 $((len / 2)) $((len - 1)) "$len"; do
    run --dir "$STALL" join "$(flip "$pos" "$TOKEN")"
    [ $rc -eq 1 ] && has "$err" "$TAMPERED" && refused=$((refused + 1))
done
check "tampered tokens (one character changed, 7 places) refused with exit 1" '[ $refused -eq 7 ]'
run --dir "$STALL" join "$(printf '%s' "$TOKEN" | cut -c1-$((len - 4)))"
check "a truncated token is refused" '[ $rc -eq 1 ]'
run --dir "$STALL" join "hello"
check "text that is no token is refused" '[ $rc -eq 1 ]'
run --dir "$STALL" join "$OTHER_TOKEN"
check "a token made for another node is refused" '[ $rc -eq 1 ] && has "$err" "$TAMPERED"'
run --dir "$STALL" join
check "join without a token: exit 2" '[ $rc -eq 2 ]'
run --dir "$STALL" admit "$OTHER_ID" --name Nope
check "admit on a node with no market: exit 1, saying how to make one" '[ $rc -eq 1 ] && has "$err" "market create"'

run --dir "$STALL" join "  $TOKEN  "
check "join prints joined market NAME (ID) as ROLE" \
    '[ $rc -eq 0 ] && [ "$out" = "joined market Saturday Market ($ORG_ID) as stall" ]'
run --dir "$STALL" join "$TOKEN"
check "joining the same market again is harmless" '[ $rc -eq 0 ] && has "$out" "already a member"'
run --dir "$STALL" admit "$OTHER_ID" --name "Other stall"
check "a non-organiser admit is refused with exit 1" '[ $rc -eq 1 ] && has "$err" "$NOT_ORG"'
run --dir "$STALL" revoke "$OTHER_ID"
check "a non-organiser revoke is refused with exit 1" '[ $rc -eq 1 ] && has "$err" "$NOT_ORG"'

# ---- log, verify, digest, reindex ------------------------------------
run --dir "$ORG" log
LOG=$out
check "log prints one JSON line per entry ($entries)" '[ $rc -eq 0 ] && [ $(lines "$LOG") -eq $entries ]'
HEX64='[0-9a-f]{64}'
check "every log line has origin, seq, hlc, version, market, kind, prev, sig and body" \
    'matches "$LOG" "\{\"origin\": \"$ORG_ID\", \"seq\": [0-9]+, \"hlc\": [0-9]+, \"version\": 1, \"market\": \"$ORG_ID\", \"kind\": \"roster\.admit\", \"prev\": \"$HEX64\", \"sig\": \"[0-9a-f]{128}\", \"body\": \{.*\}\}"'
check "the organiser admits itself under its own name (init --name), not the market's" \
    'has "$LOG" "\"body\": {\"node\": \"$ORG_ID\", \"name\": \"Market office\", \"role\": \"organiser\"}"'
check "log shows the stall's admit with its name and role" \
    'has "$LOG" "\"body\": {\"node\": \"$STALL_ID\", \"name\": \"Honey & Hive\", \"role\": \"stall\"}"'
check "log numbers the entries 1..$entries" \
    '[ "$(printf "%s\n" "$LOG" | sed -n "s/.*\"seq\": \([0-9]*\),.*/\1/p" | tr "\n" " ")" = "$(seq 1 $entries | tr "\n" " ")" ]'
run --dir "$ORG" log --origin "$ORG_ID"
check "log --origin shows that origin's entries" '[ $rc -eq 0 ] && [ $(lines "$out") -eq $entries ]'
run --dir "$ORG" log --origin "$STALL_ID"
check "log --origin of an origin with no entries prints nothing" '[ $rc -eq 0 ] && [ -z "$out" ]'
run --dir "$ORG" log --origin 1234
check "log --origin with a bad id: exit 2" '[ $rc -eq 2 ]'

run --dir "$ORG" verify
check "verify prints ok: $entries entries checked, state checked" '[ $rc -eq 0 ] && [ "$out" = "ok: $entries entries checked
state: matches the log" ]'
run --dir "$ORG" verify --json
check "verify --json" '[ $rc -eq 0 ] && [ "$out" = "{\"ok\": true, \"checked\": $entries, \"state_checked\": true}" ]'
run --dir "$ORG" digest
DIGEST=$out
check "digest prints 64 hex digits" '[ $rc -eq 0 ] && is_hex64 "$DIGEST"'
run --dir "$ORG" digest --json
check "digest --json" '[ $rc -eq 0 ] && [ "$out" = "{\"digest\": \"$DIGEST\"}" ]'
run --dir "$ORG" reindex
check "reindex prints the same digest" '[ $rc -eq 0 ] && [ "$out" = "$DIGEST" ]'

# ---- revoke -----------------------------------------------------------
run --dir "$ORG" revoke "$ORG_ID"
check "the organiser cannot revoke itself" '[ $rc -eq 1 ]'
run --dir "$ORG" revoke nothex
check "revoke with a bad node id: exit 2" '[ $rc -eq 2 ]'
run --dir "$ORG" revoke "$OTHER_ID"
entries=$((entries + 1))
check "revoke exits 0 and names the node" '[ $rc -eq 0 ] && has "$out" "revoked $OTHER_ID"'
run --dir "$ORG" log
check "log shows the revoke with upto_seq 0" \
    'has "$out" "\"kind\": \"roster.revoke\", " && has "$out" "\"body\": {\"node\": \"$OTHER_ID\", \"upto_seq\": 0}"'
run --dir "$ORG" verify
check "verify after the revoke: $entries entries" '[ $rc -eq 0 ] && [ "$(first_line "$out")" = "ok: $entries entries checked" ]'
run --dir "$ORG" digest
check "the digest changed with the revoke" '[ $rc -eq 0 ] && [ "$out" != "$DIGEST" ]'

# ---- a damaged or missing identity ------------------------------------
chmod 644 "$ORG/identity"
run --dir "$ORG" admit "$STALL_ID" --name Honey
check "an identity readable by others is refused, saying to chmod 600" '[ $rc -eq 1 ] && has "$err" "chmod 600"'
chmod 600 "$ORG/identity"
printf 'not a key\n' >"$OTHER/identity"
run --dir "$OTHER" join "$OTHER_TOKEN"
check "a corrupt identity is refused" '[ $rc -eq 1 ] && has "$err" "not a valid identity file"'
cp -R "$STALL" "$TMP/lost"
rm -f "$TMP/lost/identity"
run --dir "$TMP/lost" init
check "init refuses a store that holds a market when the identity is missing" \
    '[ $rc -eq 1 ] && has "$err" "restore the identity"'

finish
