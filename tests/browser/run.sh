#!/bin/sh
# make browser: install what the browser tests need if it is missing (Debian's
# chromium, node and npm as root; playwright-core from package-lock.json with
# npm ci), then run them.  The tests start their own nodes from
# build/stallmesh (STALLMESH_BIN overrides), so build first.
set -eu
cd "$(dirname "$0")"
need=""
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || need="$need chromium"
if [ -n "$need" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "browser: installing$need"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $need >/dev/null
    else
        echo "browser: missing packages. Run as root:"
        echo "  apt-get install -y$need"
        exit 1
    fi
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
exec node --test --test-concurrency=1 pages.test.js market.test.js https.test.js reserve.test.js drops.test.js
