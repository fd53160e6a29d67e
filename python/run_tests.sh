#!/usr/bin/env bash
# Python suite: build the extension into the repo's venv (debug build, like
# `maturin develop`), run pytest, check the stubs against the module
# (mypy.stubtest) and type-check the usage examples.
#   VENV=/path/to/venv bash python/run_tests.sh [pytest args...]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "no venv at $VENV (run 'make venv' or set VENV)" >&2
  exit 1
fi
PY="$VENV/bin/python"
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"

cd "$HERE"
echo "== maturin develop (debug) into $VENV"
"$VENV/bin/maturin" develop --quiet

echo "== pytest"
"$PY" -m pytest "$@"

echo "== mypy.stubtest shardkit"
# No allowlist: the stubs must match the module exactly.
"$PY" -m mypy.stubtest shardkit

echo "== mypy --strict: typed usage examples"
"$PY" -m mypy --strict --no-incremental tests/typing/usage.py tests/test_lease_typing.py tests/test_scatter.py

echo "== mypy: misuse example must be rejected on each '# E' line"
expected=$(grep -n '# E$' tests/typing/misuse.py | cut -d: -f1 | sort -n | tr '\n' ' ')
set +e
out=$("$PY" -m mypy --strict --no-incremental --no-error-summary tests/typing/misuse.py 2>&1)
set -e
got=$(printf '%s\n' "$out" | grep -E '^tests/typing/misuse.py:[0-9]+: error:' | cut -d: -f2 | sort -nu | tr '\n' ' ')
if [[ "$got" != "$expected" ]]; then
  printf '%s\n' "$out"
  echo "mypy flagged lines [$got], expected [$expected]" >&2
  exit 1
fi
echo "mypy rejected all $(wc -w <<<"$expected") misuses"
echo "python: all checks passed"
