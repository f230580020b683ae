#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv in .venv and install the project into it.
# Usage: scripts/bootstrap.sh [--dev]
# A second run with an unchanged pyproject.toml installs nothing (and needs no network): the install is
# editable, so code changes need no reinstall; only a change of dependencies does.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
MODE="${1:-runtime}"
STAMP=.venv/.bootstrapped
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1) $MODE"
if [ -x .venv/bin/python ] && [ -f "$STAMP" ]; then
  # A dev install also satisfies a runtime bootstrap.
  if grep -qxF "$WANT" "$STAMP" || { [ "$MODE" = runtime ] && grep -qxF "${WANT% *} --dev" "$STAMP"; }; then
    exit 0
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "$MODE" = "--dev" ]; then
  .venv/bin/python -m pip install --quiet -e '.[dev]'
else
  .venv/bin/python -m pip install --quiet -e .
fi
echo "$WANT" > "$STAMP"
