#!/usr/bin/env bash
# Validates an OpenAPI document with openapi-spec-validator (PyPI), installed
# once into a virtualenv under $HERALD_TOOLS_DIR (default
# ~/.cache/herald-test-tools), pinned. Exits non-zero when it is invalid.
#   tests/tools/openapi-validate.sh DOCUMENT.json
set -euo pipefail
doc=$1
version=0.9.0 # PyPI openapi-spec-validator
tools=${HERALD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-test-tools}
venv=$tools/openapi-venv
mkdir -p "$tools"
exec 9>"$tools/.openapi-venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
fi
marker=$venv/.installed
if [ "$(cat "$marker" 2>/dev/null)" != "$version" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check "openapi-spec-validator==$version" >&2
  echo "$version" >"$marker"
fi
flock -u 9
exec "$venv/bin/openapi-spec-validator" "$doc"
