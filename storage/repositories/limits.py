"""Abuse limits counted in the database, exact across replicas: "at most N per window" means N in total.

Why the database: replicas share nothing else, so per-process counters let N replicas allow N times
the limit. One transaction per request locks the buckets it touches, counts their hits in the moving
window, and adds one hit to each only if every bucket has room (all or nothing), so two replicas can
never both take the last slot:

* PostgreSQL: ``INSERT ... ON CONFLICT DO NOTHING`` makes sure each bucket row exists, then
  ``SELECT ... FOR UPDATE`` (buckets in name order, so two requests never deadlock) holds them until
  COMMIT; the count runs under that lock.
* SQLite: the whole step is one write transaction (behind the process's writer gate, see
  :mod:`storage.db`) whose first statement is that INSERT, which takes the database's single write
  lock, so counting and adding are one serialised step as well, across processes too.

Hits older than the window are deleted in the same transaction, so the table stays small.

A window can also be a queue (:meth:`LimitRepository.book`): when it is full the request books the
earliest slot that frees, as a hit dated in the future, and is told when that is. Later requests count
booked hits like any other, so the bookings line up one after another and the window never holds more
than its limit, across replicas too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from storage.models import LimitBucket, LimitHit
from storage.repositories._sql import dialect_name, insert_ignoring_conflict

__all__ = ["Booking", "LimitRepository", "Window"]


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` hits of ``bucket`` within any ``period``."""

    bucket: str
    limit: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.limit < 0 or self.period <= timedelta(0) or not 0 < len(self.bucket) <= 96:
            raise ValueError("a window needs a limit >= 0, a positive period and a 1-96 character name")


@dataclass(frozen=True, slots=True)
class Booking:
    """The answer of :meth:`LimitRepository.book`: a slot at ``at`` (now or later), or a ``refused`` wait."""

    at: datetime | None = None
    refused: timedelta | None = None


class LimitRepository:
    """Consume one hit from several windows at once, or none."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def consume(self, windows: Sequence[Window], now: datetime) -> timedelta | None:
        """Add one hit to every window if each has room; else add none and return the wait until one frees.

        The wait is the longest over the full windows: when it has passed, this request would be allowed.
        """
        booking = await self.book(windows, None, now, timedelta(0))
        return booking.refused

    async def book(self, windows: Sequence[Window], queue: Window | None, now: datetime,
                   max_wait: timedelta) -> Booking:
        """Take one hit now from each of ``windows`` and one slot of ``queue``, the earliest that frees.

        All or nothing: a full window among ``windows``, or a queue slot further than ``max_wait`` ahead,
        books nothing and returns the wait (the longest) in ``refused``. Otherwise the queue's hit is dated
        at its slot (``at``; ``now`` when it has room) and the caller starts its work then.
        """
        ordered = sorted([*windows, *([queue] if queue is not None else [])], key=lambda w: w.bucket)
        names = [w.bucket for w in ordered]
        if len(set(names)) != len(names):
            raise ValueError("each bucket may appear once")
        async with self._sessions.begin() as session:
            for name in names:  # the first write: on SQLite this takes the write lock for the whole step
                await session.execute(insert_ignoring_conflict(session, LimitBucket, {"name": name}, ["name"]))
            if dialect_name(session) == "postgresql":
                await session.execute(
                    select(col(LimitBucket.name))
                    .where(col(LimitBucket.name).in_(names))
                    .order_by(col(LimitBucket.name))
                    .with_for_update()
                )
            wait = timedelta(0)
            slot = now
            for window in ordered:
                since = now - window.period
                await session.execute(
                    delete(LimitHit)
                    .where(col(LimitHit.bucket) == window.bucket, col(LimitHit.at) <= since)
                    .execution_options(synchronize_session=False)
                )
                used = int((await session.execute(
                    select(func.count()).select_from(LimitHit).where(col(LimitHit.bucket) == window.bucket)
                )).scalar_one())
                if used < window.limit:
                    continue
                free_in = await self._until_free(session, window, used, now)
                if window is queue and window.limit > 0 and free_in <= max_wait:
                    slot = now + free_in
                else:
                    wait = max(wait, free_in)
            if wait > timedelta(0):
                return Booking(refused=wait)
            session.add_all(LimitHit(bucket=w.bucket, at=slot if w is queue else now) for w in ordered)
        return Booking(at=slot)

    @staticmethod
    async def _until_free(session: AsyncSession, window: Window, used: int, now: datetime) -> timedelta:
        """How long until ``used - limit + 1`` hits have left the window (at least one second)."""
        if window.limit == 0:
            return window.period
        oldest = (await session.scalars(
            select(col(LimitHit.at))
            .where(col(LimitHit.bucket) == window.bucket)
            .order_by(col(LimitHit.at), col(LimitHit.id))
            .offset(used - window.limit)
            .limit(1)
        )).first()
        free_at = (oldest or now) + window.period
        return max(timedelta(seconds=1), free_at - now)

    async def used(self, bucket: str, period: timedelta, now: datetime) -> int:
        """Hits of ``bucket`` in the window ending ``now`` (for tests and /status)."""
        async with self._sessions() as session:
            return int((await session.execute(
                select(func.count()).select_from(LimitHit)
                .where(col(LimitHit.bucket) == bucket, col(LimitHit.at) > now - period)
            )).scalar_one())
