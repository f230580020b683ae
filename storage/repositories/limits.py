"""Abuse limits counted in the database, exact across replicas: "at most N per window" means N in total.

Why the database: replicas share nothing else, so per-process counters let N replicas allow N times
the limit. One transaction per request locks the buckets it touches, counts their hits in the moving
window, and adds one hit to each only if every bucket has room (all or nothing), so two replicas can
never both take the last slot:

* PostgreSQL: one ``INSERT ... ON CONFLICT DO UPDATE`` makes sure each bucket row exists *and* locks it
  (buckets in name order, so two requests never deadlock) until COMMIT; the count runs under that lock.
* SQLite: the whole step is one write transaction (behind the process's writer gate, see
  :mod:`storage.db`) whose first statement is that INSERT, which takes the database's single write
  lock, so counting and adding are one serialised step as well, across processes too.

Hits are counted per bucket and second (:class:`~storage.models.LimitCount`), a hit at ``t`` in the
second that ends at or after ``t`` (rounded up), so a window never undercounts: at most ``limit`` hits in
any ``period``, exactly so for hits on whole seconds, and a fractional hit stays counted up to a second
longer. The lock is held for three short statements (lock, read at most ``period`` rows, one upsert),
whatever the load: a row per hit made the busiest bucket count 30,000 rows per paste at 500/s.
Seconds that left the window are deleted in the same transaction, so the table stays small.

A window can also be a queue (:meth:`LimitRepository.book`): when it is full the request books the
earliest slot that frees, as a hit dated in the future, and is told when that is. Later requests count
booked hits like any other, so the bookings line up one after another and the window never holds more
than its limit, across replicas too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import Insert
from sqlmodel import col

from storage.models import LimitBucket, LimitCount
from storage.repositories._sql import dialect_name

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
            await session.execute(_locking_upsert(session, names))
            counts = await _counts(session, names)
            stale = [w for w in ordered if counts.get(w.bucket) and counts[w.bucket][0][0] <= _edge(w, now)]
            if stale:
                await session.execute(delete(LimitCount).where(or_(*(
                    and_(col(LimitCount.bucket) == w.bucket, col(LimitCount.second) <= _edge(w, now))
                    for w in stale))).execution_options(synchronize_session=False))
            wait = timedelta(0)
            slot = now
            for window in ordered:
                live = [(second, hits) for second, hits in counts.get(window.bucket, [])
                        if second > _edge(window, now)]
                used = sum(hits for _, hits in live)
                if used < window.limit:
                    continue
                free_in = _until_free(window, live, used, now)
                if window is queue and window.limit > 0 and free_in <= max_wait:
                    slot = now + free_in
                else:
                    wait = max(wait, free_in)
            if wait > timedelta(0):
                return Booking(refused=wait)
            await session.execute(_adding_upsert(session, [
                {"bucket": w.bucket, "second": _second(slot if w is queue else now), "hits": 1}
                for w in ordered]))
        return Booking(at=slot)

    async def used(self, bucket: str, period: timedelta, now: datetime) -> int:
        """Hits of ``bucket`` in the window ending ``now`` (for tests and /status)."""
        window = Window(bucket, 0, period)
        async with self._sessions() as session:
            counts = await _counts(session, [bucket])
        return sum(hits for second, hits in counts.get(bucket, []) if second > _edge(window, now))


def _second(at: datetime) -> int:
    """The whole Unix second a hit at ``at`` is counted in: rounded up, so a window never undercounts."""
    return math.ceil(at.timestamp())


def _edge(window: Window, now: datetime) -> float:
    """Seconds at or before this (Unix time) have left ``window`` at ``now``."""
    return (now - window.period).timestamp()


def _until_free(window: Window, live: list[tuple[int, int]], used: int, now: datetime) -> timedelta:
    """How long until ``used - limit + 1`` hits have left the window (at least one second)."""
    if window.limit == 0:
        return window.period
    must_leave = used - window.limit + 1
    left = 0
    for second, hits in live:  # oldest first
        left += hits
        if left >= must_leave:
            free_at = datetime.fromtimestamp(second, UTC) + window.period
            return max(timedelta(seconds=1), free_at - now)
    raise AssertionError("the live seconds hold every used hit")


async def _counts(session: AsyncSession, names: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """Every counted second of these buckets, oldest first (at most a window's length each)."""
    rows = await session.execute(
        select(col(LimitCount.bucket), col(LimitCount.second), col(LimitCount.hits))
        .where(col(LimitCount.bucket).in_(names))
        .order_by(col(LimitCount.bucket), col(LimitCount.second))
    )
    counts: dict[str, list[tuple[int, int]]] = {}
    for bucket, second, hits in rows:
        counts.setdefault(bucket, []).append((int(second), int(hits)))
    return counts


def _insert(session: AsyncSession, model: type[LimitBucket] | type[LimitCount]) -> postgresql.Insert | sqlite.Insert:
    name = dialect_name(session)
    if name == "postgresql":
        return postgresql.insert(model)
    if name == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"unsupported database dialect {name!r}")


def _locking_upsert(session: AsyncSession, names: Sequence[str]) -> Insert:
    """Create the bucket rows that are missing and lock all of them, in the given (sorted) order.

    ``ON CONFLICT DO UPDATE`` locks the existing row like ``SELECT ... FOR UPDATE`` would, in one round
    trip instead of an insert per bucket plus a select.
    """
    statement = _insert(session, LimitBucket).values([{"name": name} for name in names])
    return statement.on_conflict_do_update(index_elements=["name"], set_={"name": statement.excluded.name})


def _adding_upsert(session: AsyncSession, rows: list[dict[str, object]]) -> Insert:
    """Add one hit to each (bucket, second), creating the row when it is the second's first hit."""
    statement = _insert(session, LimitCount).values(rows)
    return statement.on_conflict_do_update(
        index_elements=["bucket", "second"], set_={"hits": col(LimitCount.hits) + statement.excluded.hits})
