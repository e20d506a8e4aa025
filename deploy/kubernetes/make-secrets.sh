#!/usr/bin/env bash
# Makes the keys and certificates overlays/secure reads, with openssl, into
# a new directory, and prints the kubectl commands that load them as
# Secrets. A private CA signs both the API's certificate and the members'
# (bring your own PKI, or cert-manager, for anything that lasts).
#   deploy/kubernetes/make-secrets.sh DIR [NAMESPACE]
# NAMESPACE (default herald) goes into the certificates' names:
#   API          herald-control-plane.NAMESPACE.svc (agents and the CLI in
#                the cluster dial it); add yours with API_SANS=DNS:a,DNS:b
#   members      *.herald-agent.NAMESPACE.svc (control planes dial agents
#                at their pod's name), client and server
# Files: ca.crt ca.key api.crt api.key cluster.crt cluster.key secrets.key
# bootstrap.key (the admin API key, `hk_...`: keep it; the control plane
# stores it on first start).
set -euo pipefail
dir=${1:?usage: $0 DIR [NAMESPACE]}
ns=${2:-herald}
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  echo "$dir is not empty; not overwriting keys" >&2
  exit 1
fi
mkdir -p "$dir"
umask 077
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# sign NAME CN SANS EKU
sign() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=$4" "subjectAltName=$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm "$1.csr" "$1.ext"
}

key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=Herald CA ($ns)" -days 3650 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.crt
sign api herald-control-plane "DNS:herald-control-plane.$ns.svc${API_SANS:+,$API_SANS}" serverAuth
sign cluster herald-member "DNS:*.herald-agent.$ns.svc${MEMBER_SANS:+,$MEMBER_SANS}" serverAuth,clientAuth
rm -f ca.srl

# <id>:<base64 of 32 bytes>, as `herald-control-plane --new-secrets-key k1` prints.
echo "k1:$(openssl rand -base64 32)" >secrets.key
# hk_<16 hex>_<43 base64url>, an API key's shape.
echo "hk_$(openssl rand -hex 8)_$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')" >bootstrap.key

cat <<EOF
Made in $dir. Load them:
  kubectl create namespace $ns --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n $ns create secret generic herald-api-tls --type=kubernetes.io/tls \\
    --from-file=tls.crt=$dir/api.crt --from-file=tls.key=$dir/api.key --from-file=ca.crt=$dir/ca.crt
  kubectl -n $ns create secret generic herald-cluster-tls --type=kubernetes.io/tls \\
    --from-file=tls.crt=$dir/cluster.crt --from-file=tls.key=$dir/cluster.key --from-file=ca.crt=$dir/ca.crt
  kubectl -n $ns create secret generic herald-secrets-key --from-file=secrets.key=$dir/secrets.key
  kubectl -n $ns create secret generic herald-bootstrap-key --from-file=bootstrap.key=$dir/bootstrap.key
Keep ca.key offline, and secrets.key too: without it, sealed endpoint
secrets cannot be opened.
EOF
