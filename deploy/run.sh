#!/bin/sh
# `make run`: initialise the default data directory on first use (identity
# and a one-stall market) and start the node.  Until the HTTP node lands
# (`stallmesh run`), it prints the node's identity, market and state.
set -eu
bin=${1:-build/stallmesh}
dir=${STALLMESH_DIR:-$HOME/.local/share/stallmesh}
export STALLMESH_DIR="$dir"
if [ ! -f "$dir/identity" ]; then
    echo "run: first start: creating a node in $dir"
    "$bin" init --name "${STALLMESH_NAME:-My stall}"
    "$bin" market create --name "${STALLMESH_MARKET:-My market}" --currency "${STALLMESH_CURRENCY:-GBP}"
fi
if "$bin" --help 2>&1 | grep -q '^ *run '; then
    exec "$bin" run
fi
echo "run: data directory $dir"
echo "run: node id      $(cat "$dir/node-id" 2>/dev/null || "$bin" log | head -n 1 | sed 's/.*"origin": *"\([0-9a-f]*\)".*/\1/')"
echo "run: state digest $("$bin" digest)"
"$bin" verify
echo "run: the HTTP node (stock page, till, API) is not built yet; see README 'Status'."
