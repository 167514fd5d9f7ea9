#!/bin/sh
# Runs the pve-integration tests: browser tests of pve-rebalancer.js (ExtJS 6.2 GPL from
# npm in Debian's headless Chromium) and tests of install.sh.
# Installs the npm devDependencies only when node_modules is missing, incomplete or
# older than package-lock.json. Debian's chromium comes from xtask/setup.sh
# (or: apt-get install -y chromium).
set -eu
cd "$(dirname "$0")"

if [ ! -f node_modules/extjs-gpl/build/ext-all.js ] ||
    [ ! -f node_modules/playwright-core/package.json ] ||
    [ package-lock.json -nt node_modules ]; then
    echo "pve-integration: npm ci (extjs-gpl is a ~120 MB download, once)" >&2
    # Never let playwright try to download a browser; we use /usr/bin/chromium.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
    touch node_modules
fi

exec node --test ./*.test.mjs
