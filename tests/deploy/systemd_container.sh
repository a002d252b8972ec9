#!/bin/bash
# deploy/install.sh under a real systemd (make test-systemd; not part of
# make test: the first run downloads a Debian 12 system, ~10 minutes).
#
#   sudo bash tests/deploy/systemd_container.sh [CACHE_DIR]
#
# Builds (once, cached in CACHE_DIR, default /var/tmp/stallmesh-systemd) a
# minimal Debian 12 tree with debootstrap, boots it with systemd-nspawn
# (systemd as PID 1 in the container, the host's network shared), copies
# this checkout (git HEAD) into it and runs deploy/install.sh --name ...
# --market ... as a stall holder would on a Pi.  Then checks, each able to
# fail:
#   - stallmesh.service is enabled and active, with no restarts (Type=notify:
#     systemd saw READY=1), and /readyz on port 8080 answers 200;
#   - `systemd-analyze security` of the installed unit rates it 2.0 or less;
#   - the service's own status line names the market;
#   - `systemctl stop` ends it with Result=success and exit status 0, and it
#     starts again with the same node id (the store and identity kept);
#   - running install.sh again (an upgrade) keeps the node id.
# The container is powered off at the end (killed after 30 s if it does not
# stop).  Needs root and Debian's package mirror; port 8080 must be free.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${1:-/var/tmp/stallmesh-systemd}
TREE=$CACHE/bookworm
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
nok() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/#   /'; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "${3:-}"; fi; }
NSPAWN_PID=
finish() {
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        inside systemctl poweroff >/dev/null 2>&1
        for _ in $(seq 1 300); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$NSPAWN_PID" 2>/dev/null && kill -KILL "$NSPAWN_PID" 2>/dev/null
        wait "$NSPAWN_PID" 2>/dev/null
    fi
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
[ "$(id -u)" -eq 0 ] || { nok "run as root"; finish; }
if [ -n "$(ss -Hltn 'sport = :8080' 2>/dev/null)" ]; then nok "port 8080 is free (the installed config listens there)"; finish; fi
for p in debootstrap systemd-nspawn; do
    command -v $p >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap systemd-container >/dev/null
done

if [ ! -x "$TREE/usr/lib/systemd/systemd" ]; then
    mkdir -p "$CACHE"
    rm -rf "$TREE"
    echo "# debootstrap of Debian 12 into $TREE (once)"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl,procps,git,ca-certificates \
        bookworm "$TREE" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
        || { nok "debootstrap bookworm" "$(tail -n 5 "$CACHE/debootstrap.log")"; finish; }
    echo smtest > "$TREE/etc/hostname"
fi
cp /etc/resolv.conf "$TREE/etc/resolv.conf" 2>/dev/null
[ -f /etc/apt/sources.list.d/debian.sources ] && cp /etc/apt/sources.list.d/debian.sources "$TREE/etc/apt/sources.list.d/" \
    && rm -f "$TREE/etc/apt/sources.list"
rm -rf "$TREE/root/stallmesh"
mkdir -p "$TREE/root/stallmesh"
git -C "$ROOT" archive HEAD | tar -x -C "$TREE/root/stallmesh" || { nok "copy the checkout"; finish; }

# --register=no --keep-unit: no machined or system bus needed on the host.
systemd-nspawn -D "$TREE" -b --register=no --keep-unit --console=pipe --machine=stallmesh-test \
    >"$CACHE/nspawn.log" 2>&1 &
NSPAWN_PID=$!
LEADER=
inside() { nsenter -t "$LEADER" -a "$@"; }
for _ in $(seq 1 300); do
    LEADER=$(pgrep -P "$NSPAWN_PID" | head -n 1)
    [ -n "$LEADER" ] && state=$(inside systemctl is-system-running 2>/dev/null) \
        && { [ "$state" = running ] || [ "$state" = degraded ]; } && break
    sleep 0.2
done
check "the container booted systemd (state ${state:-none})" '[ -n "$LEADER" ] && [ "${state:-}" = running ]' \
    "$(tail -n 5 "$CACHE/nspawn.log")"
[ -n "$LEADER" ] || finish

inside sh -c 'cd /root/stallmesh && sh deploy/install.sh --name "Test Stall" --market "Saturday Market"' \
    >"$CACHE/install.log" 2>&1
rc=$?
check "deploy/install.sh exits 0" '[ $rc -eq 0 ]' "$(tail -n 8 "$CACHE/install.log")"
check "install.sh prints the stock page URL" 'grep -q "http://.*:8080/" "$CACHE/install.log"'
id1=$(inside runuser -u stallmesh -- /usr/local/bin/stallmesh --dir /var/lib/stallmesh id 2>/dev/null | head -n 1)
ready=
for _ in $(seq 1 100); do
    ready=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/readyz)
    [ "$ready" = 200 ] && break
    sleep 0.2
done
show=$(inside systemctl show stallmesh -p ActiveState -p NRestarts -p UnitFileState -p StatusText 2>&1)
check "stallmesh.service is enabled, active, never restarted" \
    'printf "%s\n" "$show" | grep -qx ActiveState=active && printf "%s\n" "$show" | grep -qx NRestarts=0 && printf "%s\n" "$show" | grep -qx UnitFileState=enabled' \
    "$show
$(inside journalctl -u stallmesh -n 10 --no-pager 2>&1)"
check "its status line names the market" 'printf "%s\n" "$show" | grep -q "StatusText=.*Saturday Market"' "$show"
check "/readyz answers 200 on port 8080" '[ "$ready" = 200 ]' "$ready"
sec=$(inside systemd-analyze security --no-pager stallmesh.service 2>&1 | tail -n 1)
exposure=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: *\([0-9][0-9]*\.[0-9]\).*/\1/p')
check "systemd-analyze security rates the running unit 2.0 or less (${exposure:-nothing})" \
    '[ -n "$exposure" ] && awk -v e="$exposure" "BEGIN { exit !(e <= 2.0) }"' "$sec"

inside systemctl stop stallmesh
stopped=$(inside systemctl show stallmesh -p Result -p ExecMainStatus 2>&1)
check "systemctl stop: Result=success, exit status 0" \
    'printf "%s\n" "$stopped" | grep -qx Result=success && printf "%s\n" "$stopped" | grep -qx ExecMainStatus=0' "$stopped"
inside systemctl start stallmesh
check "it starts again" '[ "$(inside systemctl is-active stallmesh)" = active ]'

inside sh -c 'cd /root/stallmesh && sh deploy/install.sh' >"$CACHE/upgrade.log" 2>&1
rc=$?
id2=$(inside runuser -u stallmesh -- /usr/local/bin/stallmesh --dir /var/lib/stallmesh id 2>/dev/null | head -n 1)
check "install.sh again (an upgrade) exits 0 and keeps the node (${id2:-none})" \
    '[ $rc -eq 0 ] && [ -n "$id1" ] && [ "$id1" = "$id2" ]' "$(tail -n 5 "$CACHE/upgrade.log")"
check "the service is active after the upgrade" '[ "$(inside systemctl is-active stallmesh)" = active ]'
finish
