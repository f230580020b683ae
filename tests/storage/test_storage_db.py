"""Engine and URL handling: every URL form operators paste ends up on the async driver we use."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool, StaticPool

from storage.db import (
    DEFAULT_DATABASE_URL,
    SQLITE_BUSY_TIMEOUT_MS,
    create_engine,
    is_postgres,
    normalise_database_url,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///var/bot.db", "sqlite+aiosqlite:///var/bot.db"),
        ("sqlite:////abs/bot.db", "sqlite+aiosqlite:////abs/bot.db"),
        ("sqlite+aiosqlite:///./var/x.db", "sqlite+aiosqlite:///./var/x.db"),
        ("sqlite+pysqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgres://u:p@db:5432/bot", "postgresql+asyncpg://u:p@db:5432/bot"),
        ("postgresql://u:p@db/bot", "postgresql+asyncpg://u:p@db/bot"),
        ("postgresql+psycopg2://u@db/bot", "postgresql+asyncpg://u@db/bot"),
        ("postgresql+asyncpg://u:p@db/bot", "postgresql+asyncpg://u:p@db/bot"),
        ("  postgresql://u@db/bot\n", "postgresql+asyncpg://u@db/bot"),
        ("postgresql://u:p%40ss@db/bot", "postgresql+asyncpg://u:p%40ss@db/bot"),
        ("postgres://u@db/bot?sslmode=require", "postgresql+asyncpg://u@db/bot?ssl=require"),
        ("postgresql+asyncpg://u@db/bot?ssl=verify-full", "postgresql+asyncpg://u@db/bot?ssl=verify-full"),
    ],
)
def test_normalise_database_url_picks_the_async_driver(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


@pytest.mark.parametrize("given", ["mysql://root:hunter2@db/bot", "oracle://scott:hunter2@db"])
def test_unsupported_schemes_are_refused_without_the_password(given: str) -> None:
    with pytest.raises(ValueError, match="unsupported") as caught:
        normalise_database_url(given)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("given", ["", "   ", "not a url", "://hunter2@x"])
def test_unparseable_urls_are_refused_without_echo(given: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalise_database_url(given)
    assert "hunter2" not in str(caught.value)


def test_default_url_is_a_local_sqlite_file() -> None:
    assert DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///./var/onboarding.db"
    assert normalise_database_url(DEFAULT_DATABASE_URL) == DEFAULT_DATABASE_URL


async def test_sqlite_engine_creates_the_parent_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "bot.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        assert isinstance(engine.pool, NullPool)
        async with engine.connect() as connection:

            async def pragma(name: str) -> object:
                return (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()

            assert await pragma("journal_mode") == "wal"
            assert await pragma("foreign_keys") == 1
            assert await pragma("busy_timeout") == SQLITE_BUSY_TIMEOUT_MS
            assert await pragma("secure_delete") == 1
        assert not is_postgres(engine)
    finally:
        await engine.dispose()


async def test_in_memory_sqlite_shares_one_connection() -> None:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        assert isinstance(engine.pool, StaticPool)
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    finally:
        await engine.dispose()


async def test_is_postgres_tells_the_backends_apart(backend: str, engine: AsyncEngine) -> None:
    assert is_postgres(engine) is (backend == "postgres")
