"""Engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Why one place: every process (bot, web server, migration runner, tests) must open the database the same
way, with the same SQLite pragmas and the same async drivers, whatever URL form the operator typed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool
from sqlalchemy.util.concurrency import await_, in_greenlet

__all__ = [
    "DEFAULT_DATABASE_URL",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_engine",
    "is_postgres",
    "normalise_database_url",
    "session_factory",
]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/onboarding.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000

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
    """Apply the per-connection pragmas every SQLite connection needs.

    The driver's own transaction handling is switched off (``isolation_level = None``): it would BEGIN
    a *deferred* transaction before the first INSERT/UPDATE/DELETE only, and a transaction that read
    first and writes later cannot wait for the write lock (SQLite answers "database is locked" at once,
    without the busy timeout, when its read snapshot is stale). :func:`_begin_immediate` starts every
    transaction instead.
    """
    dbapi_connection.isolation_level = None
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


def _begin_immediate(connection: Any) -> None:
    """Start every SQLite transaction with ``BEGIN IMMEDIATE``: take the write lock first, waiting for it.

    Why: with many simultaneous users, writers queue on the lock (``busy_timeout``) instead of failing
    with "database is locked"; every transaction sees the newest data, so read-then-write steps (claims,
    limit counts) are serialised. Transactions here are a few milliseconds and never span a network call
    (see storage.repositories), so readers queueing behind the lock costs little; WAL keeps the writes
    themselves cheap. Several processes on one SQLite file queue the same way (the lock is the file's).
    """
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return  # asked for no transaction (PRAGMA wal_checkpoint, VACUUM)
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class _WriterGate:
    """One SQLite connection at a time per engine, first come first served (in-process serialisation).

    Why: SQLite has one writer lock, and its busy handler is a sleep-and-retry loop, not a queue: with
    dozens of simultaneous users on two busy cores a waiter can lose the race again and again until its
    ``busy_timeout`` runs out ("database is locked"). A FIFO :class:`asyncio.Lock` held from connection
    checkout to checkin (a session's transaction: NullPool hands each session its own connection and
    takes it back at commit, rollback or close) queues them fairly instead, and costs nothing a single
    writer lock does not cost already. Re-entrant per task, so a nested session waits on SQLite's lock
    (busy_timeout) as before rather than on itself. Other processes on the same file (a CLI command
    next to the bot) still queue on SQLite's own lock through ``BEGIN IMMEDIATE`` and ``busy_timeout``.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    def checkout(self, _dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if not in_greenlet():
            return  # a synchronous use of the engine (none in the bot): SQLite's own lock only
        task = asyncio.current_task()
        if task is None or self._owner is not task:
            await_(self._lock.acquire())
            self._owner = task
        self._depth += 1
        record.info["writer_gate"] = True

    def checkin(self, _dbapi_connection: Any, record: Any) -> None:
        if not record.info.pop("writer_gate", False):
            return
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()


def create_engine(url: str | URL = DEFAULT_DATABASE_URL, *, echo: bool = False) -> AsyncEngine:
    """Create an async engine for ``url`` (any form :func:`normalise_database_url` accepts).

    SQLite files get a ``NullPool``: each session opens its own connection, so concurrent sessions
    really are concurrent and SQLite's own locking (WAL + ``BEGIN IMMEDIATE`` + busy_timeout) queues
    writers. An
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
        event.listen(engine.sync_engine, "begin", _begin_immediate)
        if path is not None:
            gate = _WriterGate()
            event.listen(engine.sync_engine.pool, "checkout", gate.checkout)
            event.listen(engine.sync_engine.pool, "checkin", gate.checkin)
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
