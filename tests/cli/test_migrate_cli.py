"""`onboarding-bot migrate` from several replicas at once: they queue on an advisory lock, none fails."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from storage import migrate

pytestmark = pytest.mark.postgres


def test_three_replicas_migrating_at_once_all_succeed(backend: str, database_url: str) -> None:
    if backend != "postgres":
        pytest.skip("replicas share PostgreSQL; SQLite is one process")
    env = {**os.environ, "DATABASE_URL": database_url}
    processes = [subprocess.Popen([sys.executable, "-m", "bot.cli.main", "migrate"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    head = migrate.head_revision()
    assert all(f"database at revision {head}" in output for output in outputs), outputs
    assert asyncio.run(migrate.is_current(database_url))
