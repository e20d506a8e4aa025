#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests that start real etcd,
# control-plane and agent processes and real HTTP receivers on loopback.
# Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/local/install-deps.sh
# systemd-analyze checks the systemd units (tests/tests/deploy_files.rs).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
# deploy/kubernetes/validate.sh (tests/tests/deploy_files.rs too) installs
# its tools from PyPI into a Python virtualenv: Debian's python3 needs
# python3-venv for that.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
# The console's browser test (tests/tests/console.rs) drives Debian's
# Chromium with playwright-core (npm, installed by tests/tools/console-test.sh).
# Only what is missing: a Node.js from elsewhere (NodeSource's carries npm)
# conflicts with Debian's npm package.
browser_pkgs=""
[ -x /usr/bin/chromium ] || browser_pkgs="chromium"
command -v node >/dev/null 2>&1 || browser_pkgs="$browser_pkgs nodejs"
command -v npm >/dev/null 2>&1 || browser_pkgs="$browser_pkgs npm"
if [ -n "$browser_pkgs" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086 # a list of package names
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $browser_pkgs >/dev/null
fi
# Integration tests run the real binaries; build them first.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run doc tests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
# A smoke pass of the load generator (300 events, 10 endpoints), so it never
# rots; fails if an event is missing, duplicated or out of order. The full
# scenarios are not tests: see BENCHMARKS.md.
# Ask cargo where it builds (CARGO_TARGET_DIR may point elsewhere).
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/herald-bench" smoke
