"""Engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Why one place: every process (bot, web server, migration runner, tests) must open the database the same
way, with the same SQLite pragmas and the same async drivers, whatever URL form the operator typed.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

__all__ = [
    "DEFAULT_DATABASE_URL",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_engine",
    "database_location",
    "is_postgres",
    "is_transient_database_error",
    "normalise_database_url",
    "session_factory",
]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/onboarding.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
PING_AFTER_IDLE_S = 5.0  # a PostgreSQL connection idle this long is pinged before use

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


def database_location(url: str | URL) -> str:
    """Where the database is, for an operator reading an error: ``host:port`` or the SQLite file, never
    the user name or password."""
    parsed = make_url(normalise_database_url(url))
    if parsed.drivername.startswith("sqlite"):
        return str(_sqlite_file(parsed) or "an in-memory SQLite database")
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


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


class _WriterGate:
    """One write transaction at a time per process, first come first served; re-entrant per task.

    Why: SQLite has one writer lock, and its busy handler is a sleep-and-retry loop, not a queue: with
    dozens of simultaneous users on two busy cores a waiter can lose the race again and again until its
    ``busy_timeout`` runs out ("database is locked"). Waiting in a FIFO :class:`asyncio.Lock` first
    queues them fairly and costs nothing the single writer lock does not cost already. Other processes
    on the same file (a CLI command next to the bot) still queue on SQLite's lock (``busy_timeout``).
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    async def acquire(self) -> None:
        task = asyncio.current_task()
        if task is None or self._owner is not task:
            await self._lock.acquire()
            self._owner = task
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()


# The writer gate of each file-backed engine: every session maker of one engine shares it.
_GATES: weakref.WeakKeyDictionary[Any, _WriterGate] = weakref.WeakKeyDictionary()


class _WriteTransaction:
    """``async with sessions.begin() as session`` on SQLite: connect, the writer gate, the statements, commit."""

    def __init__(self, maker: async_sessionmaker[AsyncSession], gate: _WriterGate) -> None:
        self._maker = maker
        self._gate = gate
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        # Connect first (a new connection and its pragmas, several round trips to the driver's thread),
        # outside the gate: only the statements themselves are serialised, as SQLite serialises them.
        self._session = self._maker()
        try:
            await self._session.connection()
        except BaseException:
            await self._session.close()
            raise
        await self._gate.acquire()
        return self._session

    async def __aexit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        assert self._session is not None
        try:
            try:
                if exc_type is None:
                    await self._session.commit()
                else:
                    await self._session.rollback()
            finally:
                self._gate.release()
        finally:
            await self._session.close()


class SQLiteSessions(async_sessionmaker[AsyncSession]):
    """The session maker for a SQLite file: ``begin()`` is a write transaction behind the writer gate.

    Repositories read in ``async with sessions()`` and write in ``async with sessions.begin()``. In WAL
    mode readers never wait and never make a writer wait; writers of this process wait here, in order,
    so SQLite's lock is only ever contended by another process (a CLI command), which ``busy_timeout``
    covers. The driver begins a transaction at the first INSERT/UPDATE/DELETE, never at a SELECT, so
    a write block never holds a stale read snapshot it would have to upgrade ("database is locked" at
    once, without waiting).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, expire_on_commit=False, autoflush=False)
        self._gate = _GATES[engine.sync_engine]

    def begin(self) -> Any:  # the base returns a private context-manager type
        return _WriteTransaction(self, self._gate)


def create_engine(url: str | URL = DEFAULT_DATABASE_URL, *, echo: bool = False) -> AsyncEngine:
    """Create an async engine for ``url`` (any form :func:`normalise_database_url` accepts).

    SQLite files get a ``NullPool``: each session opens its own connection, so concurrent sessions
    really are concurrent; writers queue in :class:`SQLiteSessions` (in order) and across processes on
    SQLite's own lock (WAL + busy_timeout). An
    in-memory SQLite database only exists inside one connection, so it gets a ``StaticPool`` (one
    shared connection; fine for throwaway use, not for concurrent writers). PostgreSQL gets asyncpg
    with a small pool whose idle connections are pinged before use: a few queries per Telegram update.
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
        if path is not None:  # in-memory: one shared connection, throwaway use
            _GATES[engine.sync_engine] = _WriterGate()
        return engine
    engine = create_async_engine(parsed, echo=echo, pool_size=5, max_overflow=5, pool_recycle=1800)
    _ping_after_idle(engine, PING_AFTER_IDLE_S)
    return engine


def _ping_after_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Ping a pooled connection at checkout only when it sat idle for ``idle_s`` or more.

    Why not ``pool_pre_ping``: that pings at every checkout, one extra round trip per session, about a
    tenth of the bot's CPU under load (py-spy, docs/benchmarks.md). A connection used a moment ago is
    alive; one that sat idle may have been cut (a server restart, an idle timeout on the way). Should a
    busy connection still turn out dead, SQLAlchemy invalidates the whole pool on that disconnect error,
    so one operation fails, not one per pooled connection. Raising ``DisconnectionError`` here makes the
    pool replace the connection and try again (SQLAlchemy's "pessimistic disconnect handling" recipe).
    """
    @event.listens_for(engine.sync_engine, "checkin")
    def idle_from(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"idle connection is gone ({type(error).__name__})") from error


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session maker every repository takes.

    ``expire_on_commit=False`` because repositories hand rows back after their transaction has
    ended; expiring them would turn every attribute access into a lazy load on a closed session.
    """
    if engine.sync_engine in _GATES:
        return SQLiteSessions(engine)
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def is_postgres(engine: AsyncEngine) -> bool:
    """True when ``engine`` talks to PostgreSQL (row locks, advisory locks, SKIP LOCKED exist)."""
    return engine.dialect.name == "postgresql"


def is_transient_database_error(error: BaseException) -> bool:
    """Worth trying again: the database was busy or unreachable (a pool timeout, a dropped connection, a
    lock wait), not a constraint or a malformed statement of ours."""
    if isinstance(error, sa_exc.DBAPIError):
        return not isinstance(error, sa_exc.IntegrityError | sa_exc.DataError | sa_exc.ProgrammingError)
    return isinstance(error, sa_exc.TimeoutError | TimeoutError | ConnectionError)
