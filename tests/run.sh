#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests that start real etcd,
# control-plane and agent processes and real HTTP receivers on loopback.
# Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/local/install-deps.sh
# Integration tests run the real binaries; build them first.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run doc tests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
