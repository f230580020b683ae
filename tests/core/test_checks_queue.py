"""Issue 14: the bot-wide verification window queues (books the next free slot), the per-user one refuses.

Bookings are hits dated in the future, so the database still never holds more than the limit in any
window, across replicas too (three processes race for the slots here, on SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.intake import Admission, SubmissionLimits
from storage.db import create_engine, session_factory
from storage.repositories import LimitRepository
from storage.repositories.limits import Window
from tests.core.test_limits_across_replicas import REPLICAS

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_over_the_bot_wide_window_a_paste_books_the_next_free_slot(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = Clock()
    limits = SubmissionLimits(LimitRepository(sessions), 10, 2, clock)
    assert await limits.admit(1, can_hold=False) == Admission()
    clock.now = T0 + timedelta(seconds=5)
    assert await limits.admit(2, can_hold=False) == Admission()
    clock.now = T0 + timedelta(seconds=20)
    assert await limits.admit(3, can_hold=False) == Admission(queued_s=40.0)  # the first hit leaves at 60 s
    assert await limits.admit(4, can_hold=False) == Admission(queued_s=45.0)  # the second at 65 s
    assert await limits.admit(5, can_hold=False) == Admission(queued_s=100.0)  # then the first booking's
    assert limits.waiting_here() == 3
    clock.now = T0 + timedelta(seconds=61)
    assert limits.waiting_here() == 2  # user 3's slot came: its seat is free


async def test_the_per_user_limit_still_refuses_and_books_nothing(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = Clock()
    repo = LimitRepository(sessions)
    limits = SubmissionLimits(repo, 1, 1, clock)
    assert await limits.admit(1, can_hold=False) == Admission()
    assert await limits.admit(1, can_hold=False) == Admission(retry_in_minutes=60)
    assert await repo.used("keys:all", timedelta(minutes=1), T0) == 1  # the refusal took no slot


async def test_beyond_the_seats_of_this_process_the_honest_refusal_comes_back(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = Clock()
    repo = LimitRepository(sessions)
    limits = SubmissionLimits(repo, 10, 1, clock, max_waiting=2)
    assert await limits.admit(1, can_hold=False) == Admission()
    assert (await limits.admit(2, can_hold=False)).queued_s == 60.0
    assert (await limits.admit(3, can_hold=False)).queued_s == 120.0
    assert await limits.admit(4, can_hold=False) == Admission(retry_in_minutes=3)  # refused, nothing booked
    assert await repo.used("keys:user:4", timedelta(hours=1), T0) == 0
    # a key the outbox can hold takes no seat here
    assert (await limits.admit(5, can_hold=True)).queued_s == 180.0


async def test_no_slot_is_booked_beyond_the_longest_wait(sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = Clock()
    limits = SubmissionLimits(LimitRepository(sessions), 10, 1, clock, max_wait_s=90)
    assert await limits.admit(1, can_hold=True) == Admission()
    assert (await limits.admit(2, can_hold=True)).queued_s == 60.0
    assert await limits.admit(3, can_hold=True, max_wait_s=30) == Admission(retry_in_minutes=2)
    assert await limits.admit(4, can_hold=True) == Admission(retry_in_minutes=2)


async def test_a_booking_counts_in_every_window_it_falls_in(sessions: async_sessionmaker[AsyncSession]) -> None:
    """After the queue drains the window allows new pastes again, never more than the limit at once."""
    repo = LimitRepository(sessions)
    everyone = Window("keys:all", 1, timedelta(minutes=1))
    assert await repo.consume([everyone], T0) is None
    booked = await repo.book([], everyone, T0 + timedelta(seconds=1), timedelta(minutes=5))
    assert booked.at == T0 + timedelta(seconds=60)
    # at 61 s the first hit left, but the booking at 60 s fills the window until 120 s
    assert await repo.consume([everyone], T0 + timedelta(seconds=61)) == timedelta(seconds=59)
    assert await repo.consume([everyone], T0 + timedelta(seconds=120)) is None


async def _replica(url: str, users: list[int], start_at: float) -> list[float | None]:
    engine = create_engine(url)
    try:
        limits = SubmissionLimits(LimitRepository(session_factory(engine)), 100, 4, lambda: T0)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        answers = await asyncio.gather(*(limits.admit(user, can_hold=True) for user in users))
        assert all(a.retry_in_minutes is None for a in answers)
        return [a.queued_s for a in answers]
    finally:
        await engine.dispose()


def _run_replica(url: str, users: list[int], start_at: float) -> list[float | None]:
    return asyncio.run(_replica(url, users, start_at))


def _race(url: str) -> list[float | None]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(REPLICAS, mp_context=context) as pool:
        start_at = time.time() + 3.0
        futures = [pool.submit(_run_replica, url, [100 * r + n for n in range(5)], start_at)
                   for r in range(REPLICAS)]
        return [answer for future in futures for answer in future.result(timeout=120)]


async def test_three_replicas_line_their_bookings_up_four_a_minute(engine: object, database_url: str) -> None:
    """4 a minute, 3 replicas x 5 users at the same instant: 4 now, then 4 at 60 s, 4 at 120 s, 3 at 180 s."""
    answers = await asyncio.to_thread(_race, database_url)
    waits = sorted(a or 0.0 for a in answers)
    assert waits == [0.0] * 4 + [60.0] * 4 + [120.0] * 4 + [180.0] * 3, answers


def test_a_wait_told_in_minutes_ignores_the_counting_second() -> None:
    """Hits are counted per whole second, rounded up: an hour's wait may come out 3,600.7 s, still 60 minutes."""
    from bot.core.intake import _minutes

    assert _minutes(timedelta(seconds=3600.7)) == 60
    assert _minutes(timedelta(seconds=3602)) == 61
    assert _minutes(timedelta(seconds=0.5)) == 1
