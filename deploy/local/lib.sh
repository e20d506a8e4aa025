# Shared by run.sh and cluster.sh (sourced, not run): builds Herald, starts
# etcd, control planes and agents on loopback the way a deployment runs
# them (mutual TLS among members, a TLS API, sealed secrets, access control
# on), and stops everything it started when the script exits.

if [ -n "${HERALD_BIN_DIR:-}" ]; then
  # Binaries built already (the tests pass the ones they run).
  bin=$HERALD_BIN_DIR
else
  deploy/local/install-deps.sh
  cargo build --workspace --bins --quiet
  # Ask cargo where it builds (CARGO_TARGET_DIR may point elsewhere).
  bin=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug
fi
herald=$bin/herald

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

start_etcd() {
  local etcd_port peer_port
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
}

# Certificates from a cluster CA made for loopback, a key sealing endpoint
# secrets, and the first admin key (made in etcd by a one-shot command,
# then used by the CLI).
secure() {
  $herald dev-certs --out "$work/certs" --name control-plane --name agent >/dev/null
  export HERALD_CA_FILE=$work/certs/ca.pem
  "$bin/herald-control-plane" --new-secrets-key k1 >"$work/secrets.key"
  export HERALD_SECRETS_KEY_FILE=$work/secrets.key
  HERALD_API_KEY=$("$bin/herald-control-plane" --create-admin-key)
  export HERALD_API_KEY
  echo "admin API key   $HERALD_API_KEY"
}

# Starts control plane number $1; appends its URL to control_planes.
start_control_plane() {
  local n=$1 addr
  HERALD_CLUSTER_CA=$work/certs/ca.pem \
    HERALD_CLUSTER_CERT=$work/certs/control-plane.pem HERALD_CLUSTER_KEY=$work/certs/control-plane.key \
    "$bin/herald-control-plane" --listen 127.0.0.1:0 --allow-http \
    --http-listen 127.0.0.1:0 --tls-cert "$work/certs/control-plane.pem" \
    --tls-key "$work/certs/control-plane.key" >"$work/cp$n.log" 2>&1 &
  pids+=($!)
  addr=$(wait_line "$work/cp$n.log" "herald-control-plane listening on ")
  http_addr=$(wait_line "$work/cp$n.log" "herald-control-plane http on ")
  control_planes="${control_planes:+$control_planes,}https://$addr"
  export HERALD_SERVER=${HERALD_SERVER:-https://$addr}
  export HERALD_HTTP=${HERALD_HTTP:-https://$http_addr}
  echo "control plane   https://$addr   (log: $work/cp$n.log)"
  echo "console         https://$http_addr/   sign in with $HERALD_API_KEY   (certificate from $work/certs/ca.pem)"
  echo "json api        https://$http_addr/api/{package.Service}/{Method}   (https://$http_addr/openapi.json)"
}

# Starts agent number $1 following every control plane started so far.
# (A short drain: when the script ends, every agent stops at once and there
# is no one to hand queues to; the work dir goes anyway.)
start_agent() {
  local n=$1 addr
  HERALD_CLUSTER_CA=$work/certs/ca.pem \
    HERALD_CLUSTER_CERT=$work/certs/agent.pem HERALD_CLUSTER_KEY=$work/certs/agent.key \
    env -u HERALD_API_KEY "$bin/herald-agent" --listen 127.0.0.1:0 --data-dir "$work/agent$n" \
    --control-plane "$control_planes" --allow-http --allow-cidr 127.0.0.0/8 \
    --drain-timeout-secs 3 >"$work/agent$n.log" 2>&1 &
  pids+=($!)
  addr=$(wait_line "$work/agent$n.log" "herald-agent listening on ")
  echo "agent           $addr   (log: $work/agent$n.log)"
}
