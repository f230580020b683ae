"""Engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Why one place: every process (bot, web server, migration runner, tests) must open the database the same
way, with the same SQLite pragmas and the same async drivers, whatever URL form the operator typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

__all__ = [
    "DEFAULT_DATABASE_URL",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_engine",
    "is_postgres",
    "normalise_database_url",
    "session_factory",
]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/onboarding.db"
SQLITE_BUSY_TIMEOUT_MS = 5000

_SQLITE_DRIVERS = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
_POSTGRES_DRIVERS = {
    "postgres",
    "postgresql",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+pg8000",
}


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        # Never echo the URL: it may carry a password.
        raise ValueError("the database URL could not be parsed") from None


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def normalise_database_url(url: str | URL) -> str:
    """Return ``url`` rewritten for the async driver this project uses (aiosqlite or asyncpg).

    Accepts what operators and hosting platforms hand out (``sqlite:///x.db``, ``postgres://...``,
    ``postgresql://...``) so the setting can be pasted as-is. Unknown schemes raise ``ValueError``
    with the password masked.
    """
    if isinstance(url, str) and not url.strip():
        raise ValueError("the database URL is empty")
    parsed = _parse(url.strip() if isinstance(url, str) else url)
    scheme = parsed.drivername.lower()
    if scheme in _SQLITE_DRIVERS:
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif scheme in _POSTGRES_DRIVERS:
        parsed = parsed.set(drivername="postgresql+asyncpg")
        if "sslmode" in parsed.query and "ssl" not in parsed.query:
            # Hosting platforms hand out libpq's ?sslmode=require; asyncpg spells it ?ssl=require.
            parsed = parsed.update_query_dict({"ssl": parsed.query["sslmode"]}).difference_update_query(
                ["sslmode"]
            )
    else:
        raise ValueError(f"unsupported database URL scheme {scheme!r} in {_safe(parsed)}")
    # render_as_string: str(URL) would mask the password and break the connection.
    return parsed.render_as_string(hide_password=False)


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Apply the per-connection pragmas every SQLite connection needs."""
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first, so switching to WAL waits for a concurrent opener instead of failing.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Deleted rows (shredded outbox items) are overwritten with zeros, not just unlinked.
        cursor.execute("PRAGMA secure_delete = ON")
    finally:
        cursor.close()


def create_engine(url: str | URL = DEFAULT_DATABASE_URL, *, echo: bool = False) -> AsyncEngine:
    """Create an async engine for ``url`` (any form :func:`normalise_database_url` accepts).

    SQLite files get a ``NullPool``: each session opens its own connection, so concurrent sessions
    really are concurrent and SQLite's own locking (WAL + busy_timeout) arbitrates writers. An
    in-memory SQLite database only exists inside one connection, so it gets a ``StaticPool`` (one
    shared connection; fine for throwaway use, not for concurrent writers). PostgreSQL gets asyncpg
    with a small pre-pinged pool: this bot's load is a few queries per Telegram update.
    """
    parsed = make_url(normalise_database_url(url))
    if parsed.drivername.startswith("sqlite"):
        path = _sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(parsed, echo=echo, poolclass=NullPool)
        else:
            engine = create_async_engine(
                parsed, echo=echo, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_async_engine(
        parsed,
        echo=echo,
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session maker every repository takes.

    ``expire_on_commit=False`` because repositories hand rows back after their transaction has
    ended; expiring them would turn every attribute access into a lazy load on a closed session.
    """
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def is_postgres(engine: AsyncEngine) -> bool:
    """True when ``engine`` talks to PostgreSQL (row locks, advisory locks, SKIP LOCKED exist)."""
    return engine.dialect.name == "postgresql"
