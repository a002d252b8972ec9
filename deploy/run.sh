#!/bin/sh
# `make run`: start a node on the default data directory, creating it on
# first use (an identity and a one-stall market), and print the URLs of
# the stock page, the till and the organiser's view and where their token is.
#   STALLMESH_DIR   data directory (default ~/.local/share/stallmesh)
#   STALLMESH_HTTP  HOST:PORT to serve on (default 0.0.0.0:8080)
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
echo "run: data directory $dir"
"$bin" id | head -n 1
exec "$bin" run --http "${STALLMESH_HTTP:-0.0.0.0:8080}"
