#!/bin/sh
# Install the Debian 12 packages stallmesh builds and tests with, if missing.
# As root it runs apt-get; otherwise it prints the exact line to run.
set -eu
PKGS="build-essential pkg-config libzmq3-dev liblmdb-dev libsodium-dev libmsgpack-dev
libwebsockets-dev libjansson-dev libcmocka-dev libinih-dev libqrencode-dev
libcurl4-openssl-dev libev-dev libwebsockets-evlib-ev libssl-dev openssl curl jq tzdata zbar-tools"
[ -n "${STALLMESH_EXTRA_PKGS:-}" ] && PKGS="$PKGS $STALLMESH_EXTRA_PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "deps: missing packages. Run as root:"
    echo "  apt-get install -y$missing"
    exit 1
fi
