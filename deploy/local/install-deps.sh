#!/usr/bin/env bash
# Installs what building and running Herald needs from Debian's packages,
# only when missing: etcd (etcd-server) and protoc (protobuf-compiler, for
# etcd-client's build, with its well-known types). Safe to run again.
set -euo pipefail
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/*.proto), which etcd-client's
# protos import; only a recommendation of protobuf-compiler.
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
