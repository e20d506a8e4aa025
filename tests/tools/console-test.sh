#!/usr/bin/env bash
# Drives the console in headless Chromium (Debian's, /usr/bin/chromium)
# with playwright-core from npm, installed once into a cache directory
# ($HERALD_TOOLS_DIR, default ~/.cache/herald-test-tools), pinned.
#   tests/tools/console-test.sh   (settings in the environment; see
#   tests/console/console.mjs)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=1.65.1 # npm playwright-core
tools=${HERALD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-test-tools}
dir=$tools/playwright
mkdir -p "$dir"
exec 9>"$tools/.playwright.lock"
flock 9
if [ "$(cat "$dir/.installed" 2>/dev/null)" != "$version" ]; then
  npm install --silent --no-audit --no-fund --prefix "$dir" "playwright-core@$version" >&2
  echo "$version" >"$dir/.installed"
fi
flock -u 9
export PLAYWRIGHT_DIR=$dir
exec node "$here/console/console.mjs"
