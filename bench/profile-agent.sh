#!/bin/bash
# Profiles the agent while herald-bench runs many-endpoints: how the store
# writer thread spends its time (sampled from /proc), and the agent's hottest
# symbols (perf). Needs a release build and perf:
#   cargo build --release --workspace --bins && bench/profile-agent.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/target/release/herald-bench"
log="$(mktemp)"
"$bench" many-endpoints --events "${EVENTS:-60000}" >"$log" 2>&1 &
bench_pid=$!
trap 'kill $bench_pid 2>/dev/null || true; rm -f "$log"' EXIT
until grep -q "publishing" "$log"; do sleep 0.1; done
sleep 1
agent=$(pgrep -f "release/herald-agent" | head -1)
writer=""
for t in /proc/"$agent"/task/*; do
  if grep -q store-writer "$t/comm" 2>/dev/null; then writer=$(basename "$t"); fi
done
echo "agent pid $agent, store-writer tid $writer"
perf record -F 499 -g -p "$agent" -o /tmp/herald-agent.perf -- sleep 8 >/dev/null 2>&1 &
perf_pid=$!
declare -A states
for _ in $(seq 1 1000); do
  s=$(awk '{print $3}' "/proc/$agent/task/$writer/stat" 2>/dev/null || echo gone)
  states[$s]=$(( ${states[$s]:-0} + 1 ))
  sleep 0.008
done
for k in "${!states[@]}"; do echo "store-writer state $k: ${states[$k]} of 1000 samples"; done
wait $perf_pid
wait $bench_pid || true
grep -E "delivered events/s|herald / bare|latency" "$log"
perf report -i /tmp/herald-agent.perf --no-children --sort symbol --stdio 2>/dev/null \
  | grep -E "^\s+[0-9.]+%" | head -25 | cut -c1-120
