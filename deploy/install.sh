#!/bin/sh
# Install stallmesh as a system service on this machine (a Raspberry Pi
# under the stall's table, or any Debian 12 box with systemd), from a
# checkout, as root:
#
#   sudo sh deploy/install.sh --name "Honey & Hive" --join smj1.mAHE...
#   sudo sh deploy/install.sh --name "Market office" --market "Saturday Market" [--currency GBP]
#   sudo sh deploy/install.sh                 # install only; join or create later
#
# It installs the packages the build needs (deploy/deps.sh), builds, runs
# `make install PREFIX=/usr/local`, creates the system user `stallmesh` and
# its data directory /var/lib/stallmesh (0700), makes the node there
# (`stallmesh init`, once: an existing identity is kept), joins the market
# or creates one if asked, then enables and starts stallmesh.service and
# prints the stock page's URL and a QR code of it for shoppers.  Running it
# again upgrades the binary and restarts the service; the node, its store
# and /etc/stallmesh/stallmesh.conf are kept.
set -eu

usage() {
    echo "usage: sh deploy/install.sh [--name NAME] [--join TOKEN | --market NAME [--currency CODE]]" >&2
    exit 2
}
name="" token="" market="" currency=GBP
while [ $# -gt 0 ]; do
    case $1 in
    --name) [ $# -ge 2 ] || usage; name=$2; shift 2 ;;
    --join) [ $# -ge 2 ] || usage; token=$2; shift 2 ;;
    --market) [ $# -ge 2 ] || usage; market=$2; shift 2 ;;
    --currency) [ $# -ge 2 ] || usage; currency=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "install: unknown option $1" >&2; usage ;;
    esac
done
[ -n "$token" ] && [ -n "$market" ] && { echo "install: --join or --market, not both" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "install: run as root (sudo sh deploy/install.sh ...)" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/usr/local
BIN=$PREFIX/bin/stallmesh
DATA=/var/lib/stallmesh

sh "$ROOT/deploy/deps.sh"
make -C "$ROOT" -j"$(nproc)" --no-print-directory all
make -C "$ROOT" --no-print-directory install PREFIX=$PREFIX

if ! getent passwd stallmesh >/dev/null; then
    useradd --system --user-group --home-dir "$DATA" --no-create-home \
        --shell /usr/sbin/nologin --comment "stallmesh node" stallmesh
    echo "install: created the system user stallmesh"
fi
install -d -o stallmesh -g stallmesh -m 0700 "$DATA"
as_node() { runuser -u stallmesh -- "$BIN" --dir "$DATA" "$@"; }

if [ ! -f "$DATA/identity" ]; then
    if [ -n "$name" ]; then as_node init --name "$name"; else as_node init; fi >/dev/null
    echo "install: made a new node in $DATA: $(as_node id | head -n 1)"
    echo "install: back up its identity: stallmesh identity export, or stallmesh backup --with-identity"
fi
if [ -n "$token" ]; then
    as_node join "$token"
elif [ -n "$market" ]; then
    as_node market create --name "$market" --currency "$currency" >/dev/null
    echo "install: this node is the organiser of market \"$market\""
fi

if [ ! -d /run/systemd/system ]; then
    echo "install: systemd is not running here; start the node with:"
    echo "  runuser -u stallmesh -- $BIN --dir $DATA run --config /etc/stallmesh/stallmesh.conf"
    exit 0
fi
systemctl daemon-reload
systemctl enable stallmesh.service >/dev/null 2>&1
if ! as_node id --json | grep -q '"market"'; then
    echo "install: the service is enabled but not started: this node is in no market yet."
    echo "  Give the organiser this node's id: $(as_node id | head -n 1)"
    echo "  then: sudo sh deploy/install.sh --join TOKEN"
    exit 0
fi
rm -f "$DATA/stock-url"
systemctl restart stallmesh.service
# Type=notify: restart returns once the node said READY=1 (or failed).
if ! systemctl is-active --quiet stallmesh.service; then
    echo "install: stallmesh.service did not start; see: journalctl -u stallmesh -n 50" >&2
    exit 1
fi
echo "install: stallmesh.service is running (journalctl -u stallmesh -f to follow it)"
echo "install: the stock page for shoppers, to print or show at the stall:"
"$BIN" --dir "$DATA" url --qr
