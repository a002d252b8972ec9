#!/bin/bash
# Integration test of HTTPS, paired devices, scopes and the limit on failed
# authentications: a real `stallmesh run --https` on 127.0.0.1, driven with
# curl and openssl s_client:
#
#   bash tests/integration/test_https.sh build/stallmesh
#
# Checks: the certificate made in DIR/tls/ (key 0600) and its printed
# fingerprint and public-key pin (curl --pinnedpubkey; s_client), the pages'
# Content-Security-Policy and Referrer-Policy, pairing (a code works once,
# expires, unknown refused; the device token sells; a till token cannot add
# stock: 403; a revoked token: 401 at once), 20 wrong tokens from one
# address then 429 while another address works, garbage, half-finished
# handshakes and plain HTTP on the HTTPS port leaving both ports serving,
# and after a restart: the same certificate, the devices kept, [http]
# redirect.  Each check prints "ok - ..." or "not ok - ..."; the last line
# is "N passed, M failed"; the exit status is non-zero if any failed.
# Every wait is bounded; only the node this script started is stopped, by
# its PID.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && echo "#   $2"; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-https.XXXXXX") || exit 1
DIR=$TMP/stall
NODE_PID=
HOLD_PIDS=
cleanup() {
    [ -n "$NODE_PID" ] && kill -KILL "$NODE_PID" 2>/dev/null
    for p in $HOLD_PIDS; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE

finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

"$BIN" --dir "$DIR" init --name "Stall A" >/dev/null || { nok "init"; finish; }
"$BIN" --dir "$DIR" market create --name "Test market" --currency GBP >/dev/null \
    || { nok "market create"; finish; }
TOKEN=$(cat "$DIR/api-token")
# Pairing codes last 3 s here, so that expiry can be seen.
printf '[http]\npair_ttl_s = 3\n' >"$TMP/short.conf"

# start_node [CONFIG]: run on $PORT and $TPORT; wait (bounded) for both.
start_node() {
    "$BIN" --dir "$DIR" run --http "127.0.0.1:$PORT" --https "127.0.0.1:$TPORT" \
        --listen none --config "$1" >"$TMP/node.out" 2>>"$TMP/node.err" &
    NODE_PID=$!
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$PORT/readyz" \
           && curl -sk -o /dev/null "https://127.0.0.1:$TPORT/readyz"; then
            return 0
        fi
        kill -0 "$NODE_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
stop_node() {
    kill -TERM "$NODE_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NODE_PID" 2>/dev/null
    wait "$NODE_PID" 2>/dev/null
    NODE_PID=
}
started=no
for _ in 1 2 3 4 5; do
    PORT=$((20000 + RANDOM % 12000)); TPORT=$((PORT + 1))
    if start_node "$TMP/short.conf"; then started=yes; break; fi
    stop_node
done
[ "$started" = yes ] || { nok "the node starts with --https" "$(cat "$TMP/node.err")"; finish; }
ok "the node starts with --https and answers on both ports"
URL=http://127.0.0.1:$PORT
SURL=https://127.0.0.1:$TPORT

# ---- the certificate -------------------------------------------------------
check "the certificate and key are in DIR/tls/, the key mode 0600" \
    '[ -f "$DIR/tls/cert.pem" ] && [ "$(stat -c %a "$DIR/tls/key.pem")" = 600 ]'
FP=$(sed -n 's/.*SHA-256 fingerprint *//p' "$TMP/node.out")
PIN=$(sed -n 's/.*public key (pin) *//p' "$TMP/node.out")
check "the fingerprint and the public-key pin are printed at start" \
    '[ ${#FP} -eq 95 ] && [ "${PIN#sha256//}" != "$PIN" ]' "$(cat "$TMP/node.out")"
SEEN=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$TPORT" 2>/dev/null \
       | openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//')
check "the certificate served is the one whose fingerprint was printed (s_client)" \
    '[ -n "$SEEN" ] && [ "$SEEN" = "$FP" ]' "served $SEEN, printed $FP"
check "the certificate names 127.0.0.1 and localhost (subjectAltName)" \
    'openssl x509 -in "$DIR/tls/cert.pem" -noout -ext subjectAltName | grep -q "IP Address:127.0.0.1" && openssl x509 -in "$DIR/tls/cert.pem" -noout -ext subjectAltName | grep -q "DNS:localhost"'
check "the key is ECDSA P-256" \
    'openssl x509 -in "$DIR/tls/cert.pem" -noout -text | grep -q "prime256v1"'
code=$(curl -s -k --pinnedpubkey "$PIN" -o "$TMP/body" -w '%{http_code}' "$SURL/api/stock")
check "curl pinning the printed public key gets GET /api/stock over HTTPS" \
    '[ "$code" = 200 ] && grep -q "\"items\"" "$TMP/body"'
curl -s -k --pinnedpubkey "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" \
    -o /dev/null "$SURL/api/stock"
rc=$?
check "curl pinning another key is refused (exit 90)" '[ $rc -eq 90 ]' "curl exit $rc"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' "$URL/")
check "plain HTTP still serves the public stock page" '[ "$code" = 200 ]'

# ---- headers on pages -------------------------------------------------------
curl -sk -D "$TMP/h" -o "$TMP/page" "$SURL/till"
check "/till has a Content-Security-Policy with script and style hashes, no framing" \
    'grep -qi "^content-security-policy: default-src .none.; script-src .sha256-" "$TMP/h" && grep -qi "frame-ancestors .none." "$TMP/h" && ! grep -qi "unsafe-inline" "$TMP/h"'
HASH=$(awk 'BEGIN{RS="</script>"} NR==1{i=index($0,"<script>"); printf "%s", substr($0,i+8)}' "$TMP/page" \
       | openssl dgst -sha256 -binary | openssl base64 -A)
check "the CSP's script hash is the page's inline script's" 'grep -q "sha256-$HASH" "$TMP/h"' "$HASH"
curl -sk -D "$TMP/h" -o /dev/null "$SURL/pair"
check "/pair is served with its own CSP" 'grep -qi "^content-security-policy: .*sha256-" "$TMP/h"'
curl -s -D "$TMP/h" -o /dev/null "$URL/api/stock"
check "API answers carry Referrer-Policy: no-referrer" 'grep -qi "^referrer-policy: no-referrer" "$TMP/h"'

# req METHOD URL [BODY] [TOKEN] [curl args...]: sets $code, body in $TMP/body.
req() {
    local method=$1 url=$2 data=${3:-} tok=${4:-}
    shift 4 2>/dev/null || shift $#
    local args=(-sk -o "$TMP/body" -w '%{http_code}' -X "$method" --max-time 10)
    [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
    [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
    code=$(curl "${args[@]}" "$@" "$url")
}
field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" "$TMP/body" | head -n 1; }

# ---- pairing ---------------------------------------------------------------
req POST "$URL/api/items" '{"sku":"mug","name":"Blue mug","price":1250}' "$TOKEN"
req POST "$URL/api/stock/add" '{"sku":"mug","qty":50}' "$TOKEN"
check "the admin token adds stock" '[ "$code" = 200 ] || [ "$code" = 201 ]' "$code $(cat "$TMP/body")"

"$BIN" --dir "$DIR" pair --scope till --name "Front till" --json >"$TMP/pair.json" 2>"$TMP/pair.err"
CODE=$(sed -n 's/.*"code": *"\([A-Z0-9]*\)".*/\1/p' "$TMP/pair.json")
PURL=$(sed -n 's/.*"url": *"\([^"]*\)".*/\1/p' "$TMP/pair.json")
check "stallmesh pair --json gives a code, an https link to /pair#CODE and its expiry" \
    '[ ${#CODE} -eq 12 ] && [ "$PURL" = "https://127.0.0.1:$TPORT/pair#$CODE" ] && grep -q "\"expires\"" "$TMP/pair.json"' \
    "$(cat "$TMP/pair.json" "$TMP/pair.err")"
"$BIN" --dir "$DIR" pair --scope till >"$TMP/pair.txt" 2>&1
check "stallmesh pair prints the code, the link and a QR code" \
    'grep -q "pairing code [A-Z0-9]\{12\} for a till device" "$TMP/pair.txt" && grep -q "/pair#" "$TMP/pair.txt" && [ $(wc -l <"$TMP/pair.txt") -gt 10 ]'
req POST "$SURL/api/pair" "{\"code\":\"$CODE\",\"name\":\"Front till\"}"
TILL=$(field token)
check "POST /api/pair with the code: 201, a device token of scope till" \
    '[ "$code" = 201 ] && [ ${#TILL} -eq 64 ] && grep -q "\"scope\": *\"till\"" "$TMP/body"' "$code $(cat "$TMP/body")"
req POST "$SURL/api/pair" "{\"code\":\"$CODE\",\"name\":\"Again\"}"
check "the same code a second time: 401 bad_pair_code" \
    '[ "$code" = 401 ] && grep -q bad_pair_code "$TMP/body"' "$code $(cat "$TMP/body")"
req POST "$SURL/api/pair" '{"code":"ABCDEFGHJKLM","name":"Guess"}'
check "an unknown code: 401 bad_pair_code" '[ "$code" = 401 ] && grep -q bad_pair_code "$TMP/body"'
"$BIN" --dir "$DIR" pair --scope stock --json >"$TMP/pair2.json"
CODE2=$(sed -n 's/.*"code": *"\([A-Z0-9]*\)".*/\1/p' "$TMP/pair2.json")
"$BIN" --dir "$DIR" pair --scope stock --json >"$TMP/pair3.json"
CODE3=$(sed -n 's/.*"code": *"\([A-Z0-9]*\)".*/\1/p' "$TMP/pair3.json")
req POST "$SURL/api/pair" "{\"code\":\"$CODE2\",\"name\":\"Stock room\"}"
STOCK=$(field token)
check "a stock code pairs a stock device" '[ "$code" = 201 ] && [ ${#STOCK} -eq 64 ]'
sleep 3.5
req POST "$SURL/api/pair" "{\"code\":\"$CODE3\",\"name\":\"Late\"}"
check "a code past its time ([http] pair_ttl_s = 3): 401 bad_pair_code" \
    '[ "$code" = 401 ] && grep -q bad_pair_code "$TMP/body"' "$code $(cat "$TMP/body")"

req POST "$SURL/api/sales" '{"lines":[{"sku":"mug","qty":1}],"source":"in_person","payment":"card"}' "$TILL"
check "the till device's token sells over HTTPS (201)" '[ "$code" = 201 ]' "$code $(cat "$TMP/body")"
req GET "$SURL/api/sales" "" "$TILL"
check "the till device reads this stall's sales" '[ "$code" = 200 ]'
NODE_ID=$("$BIN" --dir "$DIR" id --json | sed 's/.*"node": *"\([0-9a-f]*\)".*/\1/')
req GET "$SURL/api/report?by=payment&stall=$NODE_ID" "" "$TILL"
check "the till device reads its own stall's report (the till's Today)" '[ "$code" = 200 ]' "$code $(cat "$TMP/body")"
req GET "$SURL/api/report?by=stall" "" "$TILL"
check "but not the report without its stall: 403 forbidden_scope" \
    '[ "$code" = 403 ] && grep -q forbidden_scope "$TMP/body"' "$code"
req GET "$SURL/api/export/sales.csv" "" "$TILL"
check "nor an export (admin): 403" '[ "$code" = 403 ]' "$code"
req POST "$SURL/api/stock/add" '{"sku":"mug","qty":5}' "$TILL"
check "the till device cannot add stock: 403 forbidden_scope" \
    '[ "$code" = 403 ] && grep -q forbidden_scope "$TMP/body"' "$code $(cat "$TMP/body")"
req POST "$SURL/api/items" '{"sku":"tee","name":"Tee","price":2000}' "$TILL"
check "the till device cannot change the catalog: 403" '[ "$code" = 403 ]'
req POST "$SURL/api/stock/add" '{"sku":"mug","qty":5}' "$STOCK"
check "the stock device adds stock" '[ "$code" = 200 ] || [ "$code" = 201 ]' "$code $(cat "$TMP/body")"
req GET "$SURL/api/devices" "" "$STOCK"
check "the stock device cannot list devices (admin): 403" '[ "$code" = 403 ]'
req POST "$SURL/api/pair/codes" '{"scope":"admin"}' "$TILL"
check "the till device cannot make pairing codes: 403" '[ "$code" = 403 ]'

"$BIN" --dir "$DIR" devices --json >"$TMP/devices.json"
TILL_ID=$(sed 's/},/}\n/g' "$TMP/devices.json" | grep '"Front till"' | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p')
check "stallmesh devices --json lists both devices with created and last_used" \
    '[ ${#TILL_ID} -eq 16 ] && grep -q "Stock room" "$TMP/devices.json" && grep -q "\"last_used\": *\"20" "$TMP/devices.json"' \
    "$(cat "$TMP/devices.json")"
"$BIN" --dir "$DIR" devices >"$TMP/devices.txt"
check "stallmesh devices prints a table" 'grep -q "^ID" "$TMP/devices.txt" && grep -q "Front till" "$TMP/devices.txt"'
check "the devices file is 0600 and holds no token" \
    '[ "$(stat -c %a "$DIR/devices")" = 600 ] && ! grep -q "$TILL" "$DIR/devices"'
"$BIN" --dir "$DIR" devices revoke "$TILL_ID" >"$TMP/revoke.txt" 2>&1
check "stallmesh devices revoke ID" 'grep -q "revoked device $TILL_ID" "$TMP/revoke.txt"' "$(cat "$TMP/revoke.txt")"
req POST "$SURL/api/sales" '{"lines":[{"sku":"mug","qty":1}],"source":"in_person","payment":"card"}' "$TILL"
check "the revoked token gets 401 on its next request" '[ "$code" = 401 ]' "$code"
"$BIN" --dir "$DIR" devices revoke "$TILL_ID" >/dev/null 2>"$TMP/revoke.err"
rc=$?
check "revoking it again: unknown_device, exit 1" '[ $rc -eq 1 ] && grep -q unknown_device "$TMP/revoke.err"' "$rc $(cat "$TMP/revoke.err")"
check "no token appears in the node's log" \
    '! grep -q "$TOKEN" "$TMP/node.err" && ! grep -q "$TILL" "$TMP/node.err" && ! grep -q "$STOCK" "$TMP/node.err"'

# ---- failed authentications -------------------------------------------------
codes=""
for i in $(seq 1 21); do
    c=$(curl -s -o /dev/null -w '%{http_code}' --interface 127.0.0.2 -X POST \
        -H "Authorization: Bearer wrong$i" -H 'Content-Type: application/json' \
        --data-binary '{"sku":"mug","qty":1}' "http://127.0.0.1:$PORT/api/stock/add")
    codes="$codes $c"
done
check "20 wrong tokens from 127.0.0.2 get 401, the 21st 429" \
    '[ "$(echo $codes | tr " " "\n" | head -n 20 | sort -u)" = 401 ] && [ "$(echo $codes | awk "{print \$21}")" = 429 ]' "$codes"
c=$(curl -s -o /dev/null -w '%{http_code}' --interface 127.0.0.2 -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT/api/sales")
check "then even the right token from 127.0.0.2: 429" '[ "$c" = 429 ]' "$c"
req GET "$URL/api/sales" "" "$TOKEN"
check "while 127.0.0.1 with the right token still works" '[ "$code" = 200 ]' "$code"
c=$(curl -s -o /dev/null -w '%{http_code}' --interface 127.0.0.2 "http://127.0.0.1:$PORT/api/stock")
check "and 127.0.0.2's public reads still work" '[ "$c" = 200 ]' "$c"

# ---- bad input on the HTTPS port --------------------------------------------
for i in $(seq 1 20); do
    head -c 300 /dev/urandom | timeout 3 bash -c "cat >/dev/tcp/127.0.0.1/$TPORT" 2>/dev/null
done
for i in $(seq 1 10); do   # half a ClientHello, then silence (held open)
    ( exec 3<>"/dev/tcp/127.0.0.1/$TPORT" && printf '\026\003\001\002\000\001\000\001\374\003\003' >&3 \
      && sleep 30 ) 2>/dev/null &
    HOLD_PIDS="$HOLD_PIDS $!"
done
c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$TPORT/api/stock")
check "plain HTTP to the HTTPS port gets no HTTP answer" '[ "$c" = 000 ]' "$c"
curl -sk --max-time 5 -o /dev/null "https://127.0.0.1:$PORT/api/stock"
check "TLS to the plain port fails" '[ $? -ne 0 ]'
sleep 0.5
req GET "$SURL/api/stock" ""
c1=$code
req GET "$URL/api/stock" ""
check "with garbage and half-finished handshakes open, both ports still serve" \
    '[ "$c1" = 200 ] && [ "$code" = 200 ] && kill -0 $NODE_PID' "https $c1 http $code"
for p in $HOLD_PIDS; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
HOLD_PIDS=

# ---- restart: the same certificate, the devices kept, redirect ---------------
stop_node
printf '[http]\nredirect = true\n' >"$TMP/redirect.conf"
start_node "$TMP/redirect.conf" || nok "the node restarts" "$(tail -5 "$TMP/node.err")"
FP2=$(sed -n 's/.*SHA-256 fingerprint *//p' "$TMP/node.out")
check "after a restart the same certificate is served" '[ -n "$FP2" ] && [ "$FP2" = "$FP" ]'
req POST "$SURL/api/stock/add" '{"sku":"mug","qty":1}' "$STOCK"
check "the stock device's token still works after a restart" '[ "$code" = 200 ] || [ "$code" = 201 ]' "$code"
req POST "$SURL/api/sales" '{"lines":[{"sku":"mug","qty":1}],"source":"in_person","payment":"card"}' "$TILL"
check "the revoked token still fails after a restart" '[ "$code" = 401 ]' "$code"
curl -s -D "$TMP/h" -o /dev/null "$URL/till?x=1"
check "[http] redirect: plain HTTP answers 308 to the same path over HTTPS" \
    'grep -q "^HTTP/1.1 308" "$TMP/h" && grep -qi "^location: https://127.0.0.1:$TPORT/till?x=1" "$TMP/h"' "$(cat "$TMP/h")"
stop_node
finish
