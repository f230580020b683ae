"""Shared database fixtures: every storage-backed test runs on SQLite and, when configured, PostgreSQL.

Backends: ``backend`` is parametrized over ``sqlite`` (a temporary file) and ``postgres`` (a fresh
database per test, created next to the one named by ``TEST_POSTGRES_URL`` and dropped afterwards; the
param is skipped when that variable is unset, and must work when it is set). Databases are built by the
real Alembic migrations, never by ``metadata.create_all``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from storage.db import create_engine, normalise_database_url, session_factory
from storage.migrate import upgrade

POSTGRES_URL_ENV = "TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend under test: ``"sqlite"`` or ``"postgres"``."""
    name: str = request.param
    if name == "postgres" and not os.environ.get(POSTGRES_URL_ENV):
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    return name


async def _postgres_admin_execute(base_url: str, statement: str) -> None:
    admin = create_async_engine(
        normalise_database_url(base_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await admin.dispose()


@pytest.fixture
async def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The URL of a fresh, empty (unmigrated) database of the chosen backend."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'onboarding.db'}"
        return
    base_url = os.environ[POSTGRES_URL_ENV]
    base = make_url(normalise_database_url(base_url))
    name = f"{base.database or 'onboarding_test'}_{uuid.uuid4().hex[:12]}"
    await _postgres_admin_execute(base_url, f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await _postgres_admin_execute(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database migrated to head."""
    await upgrade(database_url)
    created = create_engine(database_url)
    try:
        yield created
    finally:
        await created.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session maker repositories take, on the migrated test database."""
    return session_factory(engine)
