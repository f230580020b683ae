"""Abuse limits are exact across replicas: three processes sharing one database together allow exactly N.

Each "replica" is a separate OS process with its own engine and connection pool running the bot's real
``SubmissionLimits`` over the real ``LimitRepository``; they all start at the same instant and race for
the same buckets, on SQLite (one file) and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.intake import SubmissionLimits
from storage.db import create_engine, session_factory
from storage.models import LimitCount
from storage.repositories import LimitRepository
from storage.repositories.limits import Window

REPLICAS = 3
T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


async def _replica(url: str, users: list[int], per_user: int, per_minute: int, start_at: float) -> list[int | None]:
    engine = create_engine(url)
    try:
        limits = SubmissionLimits(LimitRepository(session_factory(engine)), per_user, per_minute)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        # no queue (max_wait_s=0): the bot-wide window refuses like the per-user one (see test_checks_queue.py)
        answers = await asyncio.gather(*(limits.admit(user, can_hold=True, max_wait_s=0) for user in users))
        return [answer.retry_in_minutes for answer in answers]
    finally:
        await engine.dispose()


def _run_replica(url: str, users: list[int], per_user: int, per_minute: int, start_at: float) -> list[int | None]:
    return asyncio.run(_replica(url, users, per_user, per_minute, start_at))


def _race(url: str, users_per_replica: list[list[int]], per_user: int, per_minute: int) -> list[int | None]:
    """Run the replicas as three processes at once; every answer, in no particular order."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(REPLICAS, mp_context=context) as pool:
        start_at = time.time() + 3.0  # all three are up (spawned, imported) before the first request
        futures = [pool.submit(_run_replica, url, users, per_user, per_minute, start_at)
                   for users in users_per_replica]
        return [answer for future in futures for answer in future.result(timeout=120)]


async def test_three_replicas_allow_exactly_the_global_limit(engine: object, database_url: str) -> None:
    """7 verifications a minute for the whole bot; 3 replicas x 10 different users paste at once."""
    users = [[1000 * r + n for n in range(10)] for r in range(REPLICAS)]
    answers = await asyncio.to_thread(_race, database_url, users, 100, 7)
    allowed = [a for a in answers if a is None]
    assert len(allowed) == 7, answers
    # Within about a minute (replicas' clocks differ by milliseconds, so 60.001 s rounds up to 2 minutes).
    assert all(a in (1, 2) for a in answers if a is not None), answers


async def test_three_replicas_allow_one_user_exactly_their_hourly_limit(engine: object, database_url: str) -> None:
    """5 pastes an hour for one user, who pastes 6 times on each of 3 replicas at once."""
    answers = await asyncio.to_thread(_race, database_url, [[42] * 6 for _ in range(REPLICAS)], 5, 1000)
    assert sum(a is None for a in answers) == 5, answers
    assert all(a is not None and 55 <= a <= 61 for a in answers if a is not None), answers  # clocks differ by ms


async def test_the_window_moves(sessions: async_sessionmaker[AsyncSession]) -> None:
    repo = LimitRepository(sessions)
    hour = Window("keys:user:7", 2, timedelta(hours=1))
    assert await repo.consume([hour], T0) is None
    assert await repo.consume([hour], T0 + timedelta(minutes=20)) is None
    assert await repo.consume([hour], T0 + timedelta(minutes=30)) == timedelta(minutes=30)  # the first leaves
    assert await repo.consume([hour], T0 + timedelta(minutes=60, seconds=1)) is None
    assert await repo.used("keys:user:7", hour.period, T0 + timedelta(minutes=61)) == 2


async def test_all_or_nothing_across_windows(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A paste refused by the global window does not use up the user's own allowance, and the reverse."""
    repo = LimitRepository(sessions)
    everyone = Window("keys:all", 1, timedelta(minutes=1))
    alice, bob = Window("keys:user:1", 3, timedelta(hours=1)), Window("keys:user:2", 3, timedelta(hours=1))
    assert await repo.consume([alice, everyone], T0) is None
    assert await repo.consume([bob, everyone], T0 + timedelta(seconds=10)) == timedelta(seconds=50)
    assert await repo.used("keys:user:2", bob.period, T0 + timedelta(seconds=10)) == 0
    assert await repo.consume([bob, everyone], T0 + timedelta(seconds=61)) is None


async def test_a_busy_bucket_keeps_a_row_per_second_not_per_hit(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Issue 14: 1,000 hits in 2 s are 3 rows to count under the lock, and old seconds are deleted."""
    repo = LimitRepository(sessions)
    everyone = Window("keys:all", 10_000, timedelta(minutes=1))
    for i in range(1000):
        assert await repo.consume([everyone], T0 + timedelta(milliseconds=2 * i)) is None
    assert await _count_rows(sessions) == 3  # the seconds ending at T0 (the first hit), T0 + 1 s and T0 + 2 s
    assert await repo.used("keys:all", everyone.period, T0 + timedelta(seconds=2)) == 1000
    assert await repo.consume([everyone], T0 + timedelta(seconds=61)) is None
    assert await _count_rows(sessions) == 2  # T0 + 2 s and T0 + 61 s: the two that left were deleted


async def test_a_hit_between_seconds_is_counted_until_the_next_whole_second(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """Rounded up, never down: a window may free up to a second late, never early (no undercount)."""
    repo = LimitRepository(sessions)
    one = Window("keys:user:9", 1, timedelta(minutes=1))
    assert await repo.consume([one], T0 + timedelta(milliseconds=300)) is None
    # the true window would free at 60.3 s; the count frees at 61 s (waits are told in whole seconds)
    assert await repo.consume([one], T0 + timedelta(seconds=60, milliseconds=500)) == timedelta(seconds=1)
    assert await repo.consume([one], T0 + timedelta(seconds=61)) is None


async def _count_rows(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(LimitCount))).scalar_one())
