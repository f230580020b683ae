#!/usr/bin/env bash
# Quick start, command 2: set up and run the full test suite, on SQLite and on PostgreSQL.
# PostgreSQL: TEST_POSTGRES_URL if set, else the local server at 127.0.0.1:5432 (user postgres, trust
# auth) when it answers; a scratch database is (re)created for the run. In CI PostgreSQL is required.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --dev
if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  if .venv/bin/python - <<'PY'
import asyncio, sys
import asyncpg
async def main():
    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=5)
    await conn.execute("DROP DATABASE IF EXISTS onboarding_test WITH (FORCE)")
    await conn.execute("CREATE DATABASE onboarding_test")
    await conn.close()
try:
    asyncio.run(main())
except Exception as exc:
    print(f"PostgreSQL not reachable ({type(exc).__name__}); PostgreSQL tests will be skipped", file=sys.stderr)
    sys.exit(1)
PY
  then
    export TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:5432/onboarding_test"
  elif [ "${CI:-}" = "true" ]; then
    echo "CI needs PostgreSQL at 127.0.0.1:5432" >&2
    exit 1
  fi
fi
.venv/bin/ruff check bot flows storage tests scripts deploy
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
