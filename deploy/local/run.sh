#!/usr/bin/env bash
# Runs Herald for real on this machine: etcd, a control plane, an agent and
# a sample receiver that verifies signatures, all on loopback; then creates
# an event type, a tenant and an endpoint, publishes an event and shows it
# arrive. Everything stops on exit; pass --keep to leave it running until
# Ctrl-C (the script prints how to publish more).
set -euo pipefail
cd "$(dirname "$0")/../.."
keep=false
[ "${1:-}" = "--keep" ] && keep=true

deploy/local/install-deps.sh
cargo build --workspace --bins --quiet
# Ask cargo where it builds (CARGO_TARGET_DIR may point elsewhere).
bin=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug

work=$(mktemp -d -t herald-local.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits for "<prefix><address>" in a log file and prints the address.
wait_line() {
  local file=$1 prefix=$2
  for _ in $(seq 1 300); do
    if line=$(grep -m1 "^$prefix" "$file" 2>/dev/null); then echo "${line#"$prefix"}"; return; fi
    sleep 0.1
  done
  echo "timed out waiting for '$prefix' in $file" >&2; tail -20 "$file" >&2; exit 1
}

etcd_port=$(free_port); peer_port=$(free_port)
etcd_url="http://127.0.0.1:$etcd_port"
etcd --name herald-local --data-dir "$work/etcd" \
  --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "herald-local=http://127.0.0.1:$peer_port" --log-level error --logger zap \
  >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  python3 - "$etcd_port" <<'PY' 2>/dev/null && break
import sys, urllib.request
sys.exit(0 if b'"true"' in urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).read() else 1)
PY
  sleep 0.1
done
echo "etcd            $etcd_url"

export HERALD_ETCD_ENDPOINTS=$etcd_url RUST_LOG=${RUST_LOG:-info}
herald=$bin/herald
# As a deployment runs: cluster traffic is mutual TLS with certificates
# from a cluster CA (made here for loopback), the API speaks TLS, endpoint
# secrets are sealed in etcd under a key from a file, and access control is
# on: the first admin key is made in etcd by a one-shot command, then used
# by the CLI.
$herald dev-certs --out "$work/certs" >/dev/null
export HERALD_CA_FILE=$work/certs/ca.pem
"$bin/herald-control-plane" --new-secrets-key k1 >"$work/secrets.key"
export HERALD_SECRETS_KEY_FILE=$work/secrets.key
HERALD_API_KEY=$("$bin/herald-control-plane" --create-admin-key)
export HERALD_API_KEY
echo "admin API key   $HERALD_API_KEY"
HERALD_CLUSTER_CA=$work/certs/ca.pem \
  HERALD_CLUSTER_CERT=$work/certs/control-plane.pem HERALD_CLUSTER_KEY=$work/certs/control-plane.key \
  "$bin/herald-control-plane" --listen 127.0.0.1:0 --allow-http >"$work/cp.log" 2>&1 &
pids+=($!)
cp_addr=$(wait_line "$work/cp.log" "herald-control-plane listening on ")
export HERALD_SERVER="https://$cp_addr"
echo "control plane   $HERALD_SERVER   (log: $work/cp.log)"

HERALD_CLUSTER_CA=$work/certs/ca.pem \
  HERALD_CLUSTER_CERT=$work/certs/agent.pem HERALD_CLUSTER_KEY=$work/certs/agent.key \
  env -u HERALD_API_KEY "$bin/herald-agent" --listen 127.0.0.1:0 --data-dir "$work/agent" --control-plane "$HERALD_SERVER" \
  --allow-http --allow-cidr 127.0.0.0/8 >"$work/agent.log" 2>&1 &
pids+=($!)
agent_addr=$(wait_line "$work/agent.log" "herald-agent listening on ")
echo "agent           $agent_addr   (log: $work/agent.log)"

$herald event-type create --name invoice.activated --group invoice --description "An invoice became active" >/dev/null
$herald tenant create --id acme --name "Acme Corp" >/dev/null
recv_port=$(free_port)
created=$($herald --output json endpoint create --tenant acme --name "acme billing" \
  --url "http://127.0.0.1:$recv_port/webhooks" --event-type 'invoice.*' --enabled)
secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["signing_secret"])' <<<"$created")
endpoint=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoint"]["id"])' <<<"$created")
echo "endpoint        $endpoint -> http://127.0.0.1:$recv_port/webhooks"

$herald receiver --listen "127.0.0.1:$recv_port" --secret "$secret" >"$work/receiver.log" 2>&1 &
pids+=($!)
wait_line "$work/receiver.log" "receiver listening on " >/dev/null

echo
echo "\$ herald publish --tenant acme --type invoice.activated --data '{\"invoice\":\"in_42\",\"amount\":1999}'"
$herald publish --tenant acme --type invoice.activated --data '{"invoice":"in_42","amount":1999}' \
  --idempotency-key demo-1 --resource-type invoice --resource-id in_42
echo
echo "receiver:"
delivered=$(wait_line "$work/receiver.log" "delivery verified ")
echo "  delivery verified $delivered"
echo
echo "\$ herald delivery list --tenant acme --endpoint $endpoint"
# The success is recorded just after the receiver answers; give it a moment.
for _ in $(seq 50); do
  $herald --output json delivery list --tenant acme --endpoint "$endpoint" | grep -q succeeded && break
  sleep 0.1
done
$herald delivery list --tenant acme --endpoint "$endpoint"
echo
echo "\$ herald cluster show"
$herald cluster show

if $keep; then
  echo
  echo "Herald is running. In another shell:"
  echo "  export HERALD_SERVER=$HERALD_SERVER HERALD_API_KEY=$HERALD_API_KEY HERALD_CA_FILE=$HERALD_CA_FILE"
  echo "  $bin/herald publish --tenant acme --type invoice.activated --data '{\"invoice\":\"in_43\"}'"
  echo "  tail -f $work/receiver.log"
  echo "  $bin/herald delivery list --tenant acme"
  echo "  $bin/herald endpoint stats --tenant acme $endpoint"
  echo "Ctrl-C stops everything."
  wait
fi
