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

. deploy/local/lib.sh
start_etcd
secure
start_control_plane 1
start_agent 1

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
  echo "  curl --cacert \$HERALD_CA_FILE -H \"authorization: Bearer \$HERALD_API_KEY\" -d '{\"tenant_id\": \"acme\", \"event_type\": \"invoice.activated\", \"payload_json\": \"{}\"}' $HERALD_HTTP/api/herald.v1.PublishService/Publish"
  echo "  tail -f $work/receiver.log"
  echo "  $bin/herald delivery list --tenant acme"
  echo "  $bin/herald endpoint stats --tenant acme $endpoint"
  echo "Ctrl-C stops everything."
  wait
fi
