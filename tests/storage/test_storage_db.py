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
    database_location,
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


@pytest.mark.parametrize(("given", "where"), [
    ("postgresql://bob:hunter2@db.internal:6543/bot", "db.internal:6543"),
    ("postgres://bob:hunter2@db.internal/bot", "db.internal:5432"),
    ("sqlite:///var/bot.db", "var/bot.db"),
    ("sqlite://", "an in-memory SQLite database"),
])
def test_database_location_names_host_and_port_or_file_never_the_credentials(given: str, where: str) -> None:
    assert database_location(given) == where


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


async def test_postgres_pings_only_connections_that_sat_idle(backend: str, database_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """No round trip per checkout for a busy pool; an idle connection the server cut is replaced unseen."""
    if backend != "postgres":
        pytest.skip("the pool and its pings are PostgreSQL's")
    import asyncio

    from sqlalchemy import text

    import storage.db as db

    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.3)
    engine = db.create_engine(database_url)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or real_ping(conn))
    try:
        async with engine.connect() as connection:
            backend_pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        for _ in range(5):  # busy: checked out again at once, never pinged
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert pings == []
        await _postgres_terminate(database_url, backend_pid)  # the server cuts the pooled connection
        await asyncio.sleep(0.4)
        async with engine.connect() as connection:  # idle: pinged, found dead, replaced
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
            assert (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one() != backend_pid
        assert len(pings) == 1
    finally:
        await engine.dispose()


async def _postgres_terminate(database_url: str, pid: int) -> None:
    import asyncpg

    plain = database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(plain)
    try:
        await connection.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()
