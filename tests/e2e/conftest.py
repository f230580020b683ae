"""Fixtures that start the stand-ins and the real bot; module-scoped because a bot takes ~2 s to start."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.harness import POSTGRES_URL_ENV, Stack, new_database_url


def _backend_param(request: pytest.FixtureRequest) -> str:
    backend: str = getattr(request, "param", "sqlite")
    if backend == "postgres" and not os.environ.get(POSTGRES_URL_ENV):
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    return backend


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def auto_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """DoubleTick connection configured, open mode (users name their workspace)."""
    backend = _backend_param(request)
    folder = tmp_path_factory.mktemp(f"auto-{backend}")
    stack = Stack.start(folder, new_database_url(backend, folder))
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def manual_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """No DoubleTick connection configured: the guided Step 2."""
    folder = tmp_path_factory.mktemp("manual")
    # Open mode: without it only users invited by an agent's link get keys verified (test_handoff_e2e.py).
    stack = Stack.start(folder, new_database_url("sqlite", folder), auto_connect=False, demo_open_workspaces=True)
    yield stack
    stack.close()
