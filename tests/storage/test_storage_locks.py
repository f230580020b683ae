"""Cross-process locks: PostgreSQL advisory locks exclude across connection pools (replicas); SQLite is one
process, so its locks are granted at once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from bot.telegram.redelivery import is_transient
from storage.db import create_engine
from storage.locks import (
    CHAT_NAMESPACE,
    JOB_NAMESPACE,
    AdvisoryLocks,
    NoCrossProcessLocks,
    advisory_key,
    cross_process_locks,
)
from storage.migrate import MIGRATION_LOCK_ID

TELEGRAM_IDS = [1, 777000, 8_123_456_789, 2**52 - 1, -1, -1001234567890, -(2**52 - 1)]


def test_keys_are_distinct_across_namespaces_and_below_the_migration_lock() -> None:
    keys = {advisory_key(namespace, ident) for namespace in (CHAT_NAMESPACE, JOB_NAMESPACE)
            for ident in TELEGRAM_IDS}
    assert len(keys) == 2 * len(TELEGRAM_IDS)
    assert all(-(2**63) <= key < 2**63 and key != MIGRATION_LOCK_ID for key in keys)
    assert advisory_key(511, 2**52 - 1) < MIGRATION_LOCK_ID


def test_ids_that_are_not_telegram_ids_are_folded_not_refused() -> None:
    assert CHAT_NAMESPACE * 2**53 <= advisory_key(CHAT_NAMESPACE, 2**60 + 5) < JOB_NAMESPACE * 2**53
    with pytest.raises(ValueError, match="namespace"):
        advisory_key(0, 1)


async def test_the_backend_decides_the_kind_of_lock(backend: str, database_url: str) -> None:
    locks = cross_process_locks(database_url)
    try:
        assert isinstance(locks, AdvisoryLocks if backend == "postgres" else NoCrossProcessLocks)
    finally:
        await locks.aclose()


async def test_sqlite_locks_are_granted_at_once() -> None:
    locks = NoCrossProcessLocks()
    async with locks.hold(1), locks.hold(1), locks.try_hold(1) as got:
        assert got


def _postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("advisory locks exist on PostgreSQL only")


async def _until_someone_waits_for_a_lock(database_url: str) -> None:
    engine = create_engine(database_url)
    query = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    try:
        async with engine.connect() as connection:
            for _ in range(1000):
                if (await connection.execute(query)).scalar_one():
                    return
                await asyncio.sleep(0.01)
        raise AssertionError("nobody ever waited for the lock")
    finally:
        await engine.dispose()


async def test_a_held_chat_excludes_another_replica_until_released(backend: str, database_url: str) -> None:
    _postgres_only(backend)
    replica_a, replica_b = AdvisoryLocks(database_url), AdvisoryLocks(database_url)
    key, other = advisory_key(CHAT_NAMESPACE, 4242), advisory_key(CHAT_NAMESPACE, 4243)
    release, locked = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def a_holds() -> None:
        async with replica_a.hold(key):
            order.append("a locked")
            locked.set()
            await release.wait()
            order.append("a releases")

    async def b_waits() -> None:
        async with replica_b.hold(key):
            order.append("b locked")

    try:
        holder = asyncio.create_task(a_holds())
        await locked.wait()
        async with replica_b.try_hold(key) as got:
            assert not got
        async with replica_b.hold(other):  # another chat is not held up
            pass
        waiter = asyncio.create_task(b_waits())
        await _until_someone_waits_for_a_lock(database_url)  # b is queued inside PostgreSQL
        assert order == ["a locked"]
        release.set()
        await asyncio.gather(holder, waiter)
        assert order == ["a locked", "a releases", "b locked"]
    finally:
        await replica_a.aclose()
        await replica_b.aclose()


async def test_a_cancelled_holder_leaves_nothing_locked(backend: str, database_url: str) -> None:
    _postgres_only(backend)
    replica_a, replica_b = AdvisoryLocks(database_url), AdvisoryLocks(database_url)
    key = advisory_key(JOB_NAMESPACE, 7)
    locked = asyncio.Event()

    async def holds_forever() -> None:
        async with replica_a.hold(key):
            locked.set()
            await asyncio.Event().wait()

    try:
        task = asyncio.create_task(holds_forever())
        await locked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with replica_b.try_hold(key) as got:
            assert got
    finally:
        await replica_a.aclose()
        await replica_b.aclose()


async def test_waiting_too_long_fails_with_a_transient_error(backend: str, database_url: str) -> None:
    _postgres_only(backend)
    replica_a = AdvisoryLocks(database_url)
    impatient = AdvisoryLocks(database_url, wait_timeout_s=0.05)
    key = advisory_key(CHAT_NAMESPACE, 99)
    try:
        async with replica_a.hold(key):
            with pytest.raises(Exception) as caught:
                async with impatient.hold(key):
                    pass
        assert is_transient(caught.value)  # the webhook answers 503 and Telegram redelivers
    finally:
        await replica_a.aclose()
        await impatient.aclose()
