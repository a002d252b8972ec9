#!/bin/sh
# Install the Debian 12 packages stallmesh builds and tests with, if missing.
# As root it runs apt-get; otherwise it prints the exact line to run.
#
#   sh deploy/deps.sh          what `make run` and `make test` need
#   sh deploy/deps.sh bench    also the load generator `make bench` uses
#                              (wrk: GET /api/stock through nginx, which
#                              outruns tests/tools/httpload)
#   sh deploy/deps.sh arm64    also the arm64 cross toolchain, the :arm64
#                              development packages (multiarch) and qemu,
#                              for `make cross-arm64` and `make test-arm64`.
#                              libwebsockets-dev cannot be installed for two
#                              architectures at once on Debian 12 (their
#                              lws_config.h differ), so arm64 gets the library
#                              alone and the build uses the native headers
#                              (see the Makefile, cross-arm64).
set -eu
PKGS="build-essential pkg-config libzmq3-dev liblmdb-dev libsodium-dev libmsgpack-dev
libwebsockets-dev libjansson-dev libcmocka-dev libinih-dev libqrencode-dev
libcurl4-openssl-dev libev-dev libwebsockets-evlib-ev libssl-dev openssl curl jq tzdata systemd man-db groff-base
python3 lmdb-utils zbar-tools nginx-light strace"
ARM64_PKGS="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
libzmq3-dev:arm64 liblmdb-dev:arm64 libsodium-dev:arm64 libmsgpack-dev:arm64
libwebsockets17:arm64 libcap-dev:arm64 libjansson-dev:arm64 libinih-dev:arm64 libqrencode-dev:arm64
libcurl4-openssl-dev:arm64 libcmocka-dev:arm64 libssl-dev:arm64 libev-dev:arm64"
BENCH_PKGS="wrk"
arm64=no
[ "${1:-}" = arm64 ] && arm64=yes && PKGS="$PKGS $ARM64_PKGS"
[ "${1:-}" = bench ] && PKGS="$PKGS $BENCH_PKGS"
[ -n "${STALLMESH_EXTRA_PKGS:-}" ] && PKGS="$PKGS $STALLMESH_EXTRA_PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    if [ $arm64 = yes ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "deps: missing packages. Run as root:"
    [ $arm64 = yes ] && echo "  dpkg --add-architecture arm64 && apt-get update"
    echo "  apt-get install -y$missing"
    exit 1
fi
