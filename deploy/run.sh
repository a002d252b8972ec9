#!/bin/sh
# `make run`: start a node on the default data directory, creating it on
# first use (an identity and a one-stall market).  Until the long-running
# node (`stallmesh run`: HTTP, till, mesh) is built, it prints the node's
# identity, market and the state of its store, and says so.
set -eu
bin=${1:-build/stallmesh}
dir=${STALLMESH_DIR:-$HOME/.local/share/stallmesh}
export STALLMESH_DIR="$dir"
if [ ! -f "$dir/identity" ]; then
    echo "run: first start: creating a node in $dir"
    "$bin" init --name "${STALLMESH_NAME:-My stall}" >/dev/null
    "$bin" market create --name "${STALLMESH_MARKET:-My market}" \
        --currency "${STALLMESH_CURRENCY:-GBP}" >/dev/null
fi
if "$bin" --help 2>&1 | grep -q '^  run '; then
    exec "$bin" run
fi
echo "run: data directory $dir"
"$bin" id
echo "digest  $("$bin" digest)"
"$bin" verify
echo "run: this release has the store, the log and the CLI ('$bin --help');"
echo "run: the long-running node with the stock page and till is not built yet."
