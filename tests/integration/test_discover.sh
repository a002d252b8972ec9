#!/bin/bash
# Integration test of LAN discovery (`stallmesh run --discover`, issue #4;
# proto/mesh.md section 10): real nodes on 127.0.0.1 whose beacons go to the
# loopback broadcast address 127.255.255.255 on a UDP port picked for the run
# (Linux delivers a broadcast to every socket bound to its port, which is
# what a LAN does), driven and observed over their HTTP APIs (curl, jq):
#
#   bash tests/integration/test_discover.sh build/stallmesh
#
# Checks:
#   - a market of three (organiser O, stalls A and B) whose join tokens name
#     no endpoint and which are given no --peer find each other by their
#     beacons and all connect; B listens on tcp://0.0.0.0:PORT and advertises
#     nothing, so its beacon says host "*" and the others dial the address it
#     came from; an item at O, a restock and a sale at A reach B;
#   - a node of another market (X) with --discover on the same port never
#     becomes a peer of O, A or B, nor they of it, though it hears them
#     (its stallmesh_beacons_refused_total grows);
#   - a stall R admitted and then revoked before anything started, with
#     --discover, is never added as a peer by A;
#   - forged datagrams (garbage, A's real beacon with another endpoint and so
#     a bad signature, A's real beacon replayed, one too big) change no
#     node's view of A's endpoint, and the nodes keep serving and syncing;
#   - A restarted on another port is dialled there by O and B, which are not
#     restarted (their logs say where they connect), and all connect again.
#
# Each check prints "ok - ..." or "not ok - ..."; the last line is "N passed,
# M failed"; the exit status is non-zero if any failed.  Every wait is
# bounded (polls every 100 ms, at most 20 s); only the nodes this script
# started are stopped, by their PIDs.  It takes about 15 s.  KEEP_TMP=1
# keeps the data directories and logs.

BIN=${1:-build/stallmesh}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && printf '#   %s\n' "$2" | head -n 20; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
for tool in curl jq ss python3; do
    command -v $tool >/dev/null 2>&1 || { nok "$tool is installed (make deps)"; finish; }
done
[ -x "$BIN" ] || { nok "$BIN is an executable (make)"; finish; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stallmesh-discover.XXXXXX") || exit 1
declare -A PID HP MP ARGS
cleanup() {
    stop_nodes
    [ -n "${KEEP_TMP:-}" ] && { echo "# kept $TMP"; return; }
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset STALLMESH_DIR STALLMESH_NODE

. "$(dirname "$0")/lib.sh"     # free_port [udp], until_true
DPORT=$(free_port udp) || { nok "a free UDP port"; finish; }
BCAST=127.255.255.255

# beacon_start NODE LISTEN_HOST: lib.sh's start with --discover, its beacons on
# $BCAST:$DPORT (its stallmesh.conf), its mesh listener on LISTEN_HOST and
# no --peer, on new ports each time (a node restarted moves); sm, node_id,
# stop, url, get and req are lib.sh's.
NODE_ARGS="--discover --log-level debug"
beacon_start() {
    printf '[mesh]\ndiscover_port = %s\ndiscover_addr = %s\n' "$DPORT" "$BCAST" >"$TMP/$1/stallmesh.conf"
    HP[$1]=
    MESH_HOST=$2 start "$1"
}
connected() {
    [ "$(get "$1" /api/peers | jq -r --arg p "$2" '[.peers[] | select(.node == $p and .connected)] | length')" = 1 ]
}
# known NODE PEER_ID: NODE's /api/peers lists PEER_ID at all.
known() {
    [ "$(get "$1" /api/peers | jq -r --arg p "$2" '[.peers[] | select(.node == $p)] | length')" != 0 ]
}
# endpoint_of NODE PEER_ID: the endpoint NODE has for PEER_ID.
endpoint_of() { get "$1" /api/peers | jq -r --arg p "$2" '.peers[] | select(.node == $p) | .endpoint'; }
metric() { get "$1" /metrics | awk -v m="$2" '$1 == m { print $2 }'; }
units() { get "$1" /api/stock | jq -r --arg s "$2" ".items[] | select(.sku == \$s) | .$3"; }
digest() { get "$1" /api/state | jq -r '.digest // empty'; }
same_digest() {
    local first d
    first=$(digest "$1")
    [ -n "$first" ] || return 1
    for n in "${@:2}"; do d=$(digest "$n"); [ "$d" = "$first" ] || return 1; done
}
full_mesh() {
    for x in "$@"; do for y in "$@"; do
        [ "$x" = "$y" ] || connected "$x" "${ID[$y]}" || return 1
    done; done
}
# udp_send HEX...: each datagram (hex) to the beacons' broadcast address.
udp_send() {
    python3 - "$BCAST" "$DPORT" "$@" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for h in sys.argv[3:]:
    s.sendto(bytes.fromhex(h), (sys.argv[1], int(sys.argv[2])))
EOF
}
# capture_beacon NODE_ID: the hex of the next beacon NODE_ID sends (up to 12 s).
capture_beacon() {
    python3 - "$DPORT" "$1" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
node = bytes.fromhex(sys.argv[2])
end = time.time() + 12
while time.time() < end:
    s.settimeout(max(0.1, end - time.time()))
    try:
        d, _ = s.recvfrom(2048)
    except socket.timeout:
        break
    if d[:4] == b"SMDB" and d[37:69] == node:
        print(d.hex())
        sys.exit(0)
sys.exit(1)
EOF
}

# ---- market M: O organises, A B join with tokens naming no endpoint; R is
# admitted, joins, and is revoked before anything starts ------------------------
declare -A ID
for n in O A B R X; do
    sm $n init --name "Node $n" >/dev/null || { nok "init $n"; finish; }
    ID[$n]=$(node_id $n)
done
sm O market create --name "Discovery market" --currency GBP >/dev/null || { nok "market create"; finish; }
sm X market create --name "Another market" --currency EUR >/dev/null || { nok "market create X"; finish; }
for n in A B R; do
    sm $n join "$(sm O admit "${ID[$n]}" --name "Stall $n")" >/dev/null || { nok "$n joins"; finish; }
done
sm O revoke "${ID[R]}" >/dev/null || nok "O revokes R"

up=yes
beacon_start O 127.0.0.1 || up=no
beacon_start A 127.0.0.1 || up=no
beacon_start B 0.0.0.0 || up=no          # advertises nothing: its beacon says host "*"
beacon_start X 127.0.0.1 || up=no
check "O, A, B (market M) and X (another market) start with --discover and no --peer" \
    '[ "$up" = yes ]' "$(tail -n 3 "$TMP"/*.log)"
check "O, A and B find each other by their beacons and all connect" \
    'until_true 20 full_mesh O A B' "$(get O /api/peers)"
check "A dials B at the address B's beacon came from (host \"*\" filled in)" \
    '[ "$(endpoint_of A "${ID[B]}")" = "tcp://127.0.0.1:${MP[B]}" ]' "$(endpoint_of A "${ID[B]}")"

req O POST /api/items '{"sku":"jam","name":"Plum jam","price":450}'
has_jam() { [ -n "$(units "$1" jam total)" ]; }
until_true 20 has_jam A
req A POST /api/stock/add '{"sku":"jam","qty":10}'; a_add=$code
req A POST /api/sales '{"lines":[{"sku":"jam","qty":3}],"source":"in_person","payment":"card"}'
a_sale=$code
b_sees() { [ "$(units B jam total)" = 7 ]; }
check "a restock and a sale at A (201, 201) reach B" \
    '[ "$a_add" = 201 ] && [ "$a_sale" = 201 ] && until_true 20 b_sees' "$a_add $a_sale; B: $(units B jam total)"

# ---- another market and a revoked stall ----------------------------------------
beacon_start R 127.0.0.1 || nok "the revoked stall R starts" "$(tail -n 3 "$TMP/R.log")"
x_heard() { [ "${ID[X]}" ] && [ "$(metric X stallmesh_beacons_refused_total)" -gt 0 ] 2>/dev/null; }
check "X hears market M's beacons and refuses them" 'until_true 20 x_heard' "$(metric X stallmesh_beacons_refused_total)"
strangers=no
# Two beacon intervals and a peer tick, watching the whole time.
for _ in $(seq 1 110); do
    for n in O A B; do known $n "${ID[X]}" && strangers="$n knows X"; done
    for n in O A B; do known X "${ID[$n]}" && strangers="X knows $n"; done
    known A "${ID[R]}" && strangers="A knows revoked R"
    sleep 0.1
done
check "X is never a peer of O, A or B, nor they of X; A never adds the revoked R" \
    '[ "$strangers" = no ]' "$strangers"
check "A counts refused beacons (X's, R's)" '[ "$(metric A stallmesh_beacons_refused_total)" -gt 0 ]' \
    "$(get A /metrics | grep beacon)"
check "A counts accepted beacons and its own sent ones" \
    '[ "$(metric A stallmesh_beacons_accepted_total)" -gt 0 ] && [ "$(metric A stallmesh_beacons_sent_total)" -gt 0 ]' \
    "$(get A /metrics | grep beacon)"

# ---- forged datagrams ---------------------------------------------------------
real=$(capture_beacon "${ID[A]}")
check "A's beacon is captured from the wire" '[ -n "$real" ]'
if [ -n "$real" ]; then
    # Same fields and signature, the endpoint's port changed: the signature
    # no longer verifies.  Then the real one replayed, one too big, garbage,
    # and a flood.
    forged=$(python3 -c "
import sys; d = bytearray.fromhex('$real'); n = d[77]
ep = bytes(d[78:78 + n]); new = b'tcp://127.0.0.1:1' + b'0' * max(0, n - 17)
d[78:78 + n] = new[:n]; print(d.hex())")
    big=$(python3 -c "print('$real' + '00' * 300)")
    refused0=$(metric O stallmesh_beacons_refused_total)
    flood=()
    for i in $(seq 1 200); do flood+=("$forged"); done
    udp_send "$forged" "$real" "$big" 00 534d4442 534d444202 deadbeef "${flood[@]}"
    sleep 1
    check "O refuses the forged, replayed, oversized and garbage datagrams" \
        '[ "$(metric O stallmesh_beacons_refused_total)" -ge $((refused0 + 7)) ]' \
        "before $refused0, after $(metric O stallmesh_beacons_refused_total)"
    check "after the forgeries O and B still have A at its real endpoint" \
        '[ "$(endpoint_of O "${ID[A]}")" = "tcp://127.0.0.1:${MP[A]}" ] && [ "$(endpoint_of B "${ID[A]}")" = "tcp://127.0.0.1:${MP[A]}" ]' \
        "O: $(endpoint_of O "${ID[A]}") B: $(endpoint_of B "${ID[A]}")"
    fake=$(python3 -c "d = bytes.fromhex('$forged'); print(d[78:78 + d[77]].decode())")
    check "no node dials the forged endpoint ($fake)" '! grep -qF "$fake" "$TMP"/O.log "$TMP"/B.log "$TMP"/X.log' \
        "$(grep -hF "$fake" "$TMP"/*.log | head -3)"
fi
# ---- a node that comes back on another port -----------------------------------
# A stops and starts again listening on a new port; O and B, not restarted,
# learn the new endpoint from its beacon and dial it there (their log says
# where they connect), and the mesh is whole again.
old_mp=${MP[A]}
stop A
beacon_start A 127.0.0.1 || nok "A starts again" "$(tail -n 3 "$TMP/A.log")"
a_short=${ID[A]:0:12}
dialled_new() { grep -q "connecting to $a_short at tcp://127.0.0.1:${MP[A]}" "$TMP/$1.log"; }
check "A is back on another port (${old_mp} -> ${MP[A]})" '[ "${MP[A]}" != "$old_mp" ]'
check "O and B dial A at its new endpoint without a restart" \
    'until_true 20 dialled_new O && until_true 20 dialled_new B' \
    "$(grep -h "connecting to $a_short\|moved" "$TMP"/O.log "$TMP"/B.log | tail -5)"
check "O and B have A at its new endpoint, connected" \
    'until_true 20 full_mesh O A B && [ "$(endpoint_of O "${ID[A]}")" = "tcp://127.0.0.1:${MP[A]}" ]' \
    "$(get O /api/peers | jq -c '.peers[]' 2>/dev/null | head -3)"

req B POST /api/sales '{"lines":[{"sku":"jam","qty":1}],"source":"in_person","payment":"card"}'
b_sale=$code
check "after the forgeries the nodes still serve and sync (a sale at B, all digests equal)" \
    '[ "$b_sale" = 201 ] && until_true 20 same_digest O A B && full_mesh O A B' \
    "$b_sale $body; $(for n in O A B; do echo "$n $(digest $n)"; done)"
finish
