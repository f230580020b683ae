"""Cross-process serialisation: one replica at a time per chat, and at most one replica per periodic job.

Why PostgreSQL advisory locks: replicas behind a load balancer share nothing but the database. A
transaction-level lock (``pg_advisory_xact_lock``) is held by an open transaction on a dedicated
connection and is released by COMMIT, ROLLBACK or a dropped connection, so a crashed or cancelled
holder can never leave a chat locked (session-level locks would survive the pool's reset-on-return and
do not work behind PgBouncer in transaction mode). The lock connections come from their own small
pool: a holder needs a second connection for the repositories, so sharing one pool could deadlock.

SQLite means one process (the file is not shared between hosts), so there the lock is a no-op and the
in-process :class:`~bot.core.chat_locks.ChatLocks` plus the version check in storage do the job.

Keys: Telegram ids have at most 52 significant bits, so ``namespace * 2**53 + id`` is collision-free
across namespaces and stays below the migration lock's constant (see :mod:`storage.migrate`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction, create_async_engine

from storage.db import normalise_database_url

__all__ = [
    "CHAT_NAMESPACE",
    "JOB_NAMESPACE",
    "AdvisoryLocks",
    "CrossProcessLocks",
    "NoCrossProcessLocks",
    "advisory_key",
    "cross_process_locks",
]

log = logging.getLogger(__name__)

CHAT_NAMESPACE = 1
JOB_NAMESPACE = 2
_ID_LIMIT = 2**52
_NAMESPACE_LIMIT = 512  # 512 * 2**53 = 2**62: every key fits a signed 64-bit integer


def advisory_key(namespace: int, ident: int) -> int:
    """The 64-bit advisory-lock key for ``ident`` (a Telegram chat id, a job number) in ``namespace``."""
    if not 0 < namespace < _NAMESPACE_LIMIT:
        raise ValueError(f"namespace must be within 1..{_NAMESPACE_LIMIT - 1}")
    if not -_ID_LIMIT < ident < _ID_LIMIT:
        ident %= _ID_LIMIT  # not a Telegram id: fold it; a collision only serialises two chats
    return namespace * 2**53 + ident


class CrossProcessLocks(Protocol):
    """What the runtime and periodic jobs need; both implementations below satisfy it."""

    def hold(self, key: int) -> AbstractAsyncContextManager[None]: ...

    def try_hold(self, key: int) -> AbstractAsyncContextManager[bool]: ...

    async def aclose(self) -> None: ...


class NoCrossProcessLocks:
    """SQLite, or the only process that receives updates (polling): every lock is granted at once."""

    @asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        yield

    @asynccontextmanager
    async def try_hold(self, key: int) -> AsyncIterator[bool]:
        yield True

    async def aclose(self) -> None:
        return None


class AdvisoryLocks:
    """PostgreSQL transaction-level advisory locks on a dedicated, bounded pool.

    ``pool_size`` caps how many locks this process holds or waits for at once (further callers wait
    for a pooled connection first); ``wait_timeout_s`` bounds the wait for a lock another replica
    holds, after which the database raises and the caller's update fails (Telegram redelivers it).
    """

    def __init__(self, url: str, *, pool_size: int = 8, wait_timeout_s: float = 20.0) -> None:
        parsed = make_url(normalise_database_url(url))
        if not parsed.drivername.startswith("postgresql"):
            raise ValueError("advisory locks need PostgreSQL")
        self._engine: AsyncEngine = create_async_engine(parsed, pool_size=pool_size, max_overflow=0,
                                                        pool_pre_ping=True, pool_recycle=1800)
        self._timeout_ms = max(1, int(wait_timeout_s * 1000))

    @asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        """Wait for the lock on ``key`` and hold it for the body (released on any exit).

        Release is a ROLLBACK (nothing is written on the lock connection). If releasing fails, the
        connection is invalidated, which drops it and so releases the lock too: a failure to let go must
        not turn the body's committed work into an error (the update would look unprocessed while its
        state was already saved, and a key pipeline would never start).
        """
        connection = await self._engine.connect()
        transaction: AsyncTransaction | None = None
        try:
            transaction = await connection.begin()
            # SET LOCAL cannot take bind parameters; the value is an int we computed.
            await connection.execute(text(f"SET LOCAL lock_timeout = {self._timeout_ms}"))
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield
        finally:
            await _release(connection, transaction)

    @asynccontextmanager
    async def try_hold(self, key: int) -> AsyncIterator[bool]:
        """Take the lock on ``key`` if it is free; the body learns whether it got it (no waiting)."""
        async with self._engine.connect() as connection, connection.begin():
            got = (await connection.execute(text("SELECT pg_try_advisory_xact_lock(:key)"),
                                            {"key": key})).scalar_one()
            yield bool(got)

    async def aclose(self) -> None:
        await self._engine.dispose()


async def _release(connection: AsyncConnection, transaction: AsyncTransaction | None) -> None:
    try:
        if transaction is not None and transaction.is_active:
            await transaction.rollback()
    except sa_exc.DBAPIError as error:
        log.warning("advisory lock connection dropped on release (%s)", type(error).__name__)
        await connection.invalidate()
    finally:
        await connection.close()


def cross_process_locks(url: str, *, pool_size: int = 8, wait_timeout_s: float = 20.0
                        ) -> AdvisoryLocks | NoCrossProcessLocks:
    """Advisory locks for a PostgreSQL ``url``, the no-op for SQLite."""
    if make_url(normalise_database_url(url)).drivername.startswith("postgresql"):
        return AdvisoryLocks(url, pool_size=pool_size, wait_timeout_s=wait_timeout_s)
    return NoCrossProcessLocks()
