#!/usr/bin/env bash
# Runs a Herald cluster on this machine, the way to try scaling out before a
# real one: etcd, M control planes and N agents (each agent follows every
# control plane), secured as run.sh does; then 10 endpoints at one sample
# receiver (their slots spread over the agents) and 100 events for all of
# them, published through every control plane in turn, and waits until
# every delivery arrived, signature verified.
#   deploy/local/cluster.sh --agents 3 --replicas 2 [--keep]
set -euo pipefail
cd "$(dirname "$0")/../.."
agents=3 replicas=2 keep=false
while [ $# -gt 0 ]; do
  case $1 in
    --agents) agents=$2; shift 2 ;;
    --replicas) replicas=$2; shift 2 ;;
    --keep) keep=true; shift ;;
    *) echo "usage: $0 [--agents N] [--replicas M] [--keep]" >&2; exit 2 ;;
  esac
done

. deploy/local/lib.sh
start_etcd
secure
for n in $(seq 1 "$replicas"); do start_control_plane "$n"; done
for n in $(seq 1 "$agents"); do start_agent "$n"; done
IFS=, read -r -a servers <<<"$control_planes"

# One receiver verifies every endpoint's signatures: each endpoint is given
# the same signing secret.
secret=whsec_$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
recv_port=$(free_port)
$herald receiver --listen "127.0.0.1:$recv_port" --secret "$secret" >"$work/receiver.log" 2>&1 &
pids+=($!)
wait_line "$work/receiver.log" "receiver listening on " >/dev/null
$herald event-type create --name order.created --group order >/dev/null
$herald tenant create --id acme >/dev/null
endpoints=10
for e in $(seq 0 $((endpoints - 1))); do
  id=$($herald --output json endpoint create --tenant acme --name "e$e" \
    --url "http://127.0.0.1:$recv_port/e$e" --event-type order.created --enabled |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["endpoint"]["id"])')
  $herald endpoint rotate-secret --tenant acme "$id" --secret "$secret" --overlap-secs 0 >/dev/null
done
# Wait for the slot map to spread over every agent, then publish through
# each control plane in turn.
for _ in $(seq 100); do
  owning=$($herald --output json cluster show |
    python3 -c 'import json, sys; c = json.load(sys.stdin); print(sum(1 for a in c["agents"] if a["slots"] > 0) if c["handoffs_in_progress"] == 0 else 0)')
  [ "$owning" = "$agents" ] && break
  sleep 0.1
done
total=100
for i in $(seq 0 $((total - 1))); do
  echo "{\"tenant\":\"acme\",\"type\":\"order.created\",\"data\":{\"seq\":$i},\"idempotency_key\":\"k$i\"}"
done >"$work/events.jsonl"
per=$((total / replicas))
for r in $(seq 0 $((replicas - 1))); do
  sed -n "$((r * per + 1)),$(( r == replicas - 1 ? total : (r + 1) * per ))p" "$work/events.jsonl" |
    $herald --server "${servers[$r]}" publish --file - >/dev/null
done
want=$((total * endpoints))
for _ in $(seq 600); do
  verified=$(grep -c "^delivery verified" "$work/receiver.log" || true)
  [ "$verified" -ge "$want" ] && break
  sleep 0.1
done
echo "delivered $verified of $want deliveries ($total events x $endpoints endpoints), each signature verified, through $replicas control planes and $agents agents"
$herald cluster show
[ "$verified" -eq "$want" ] || exit 1

if $keep; then
  echo
  echo "The cluster is running; Ctrl-C stops everything. In another shell:"
  echo "  export HERALD_SERVER=$HERALD_SERVER HERALD_API_KEY=$HERALD_API_KEY HERALD_CA_FILE=$HERALD_CA_FILE"
  wait
fi
