"""The sealed retry outbox: verify/connect calls that must survive a restart.

Why leases: several workers (or replicas) poll the outbox; ``claim_due`` hands each due row to exactly
one of them for ``lease_seconds``. PostgreSQL uses ``SELECT ... FOR UPDATE SKIP LOCKED`` so claimers
never wait on each other; SQLite serialises writers, so one ``UPDATE ... RETURNING`` is atomic. A crashed
worker's lease simply runs out and the row becomes claimable again. Finished or expired rows are
deleted, never marked: the sealed key must not outlive its purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from storage.models import OutboxItem, OutboxPurpose
from storage.repositories._sql import dialect_name, rowcount

__all__ = ["OutboxRepository"]


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        col(OutboxItem.next_attempt_at) <= now,
        col(OutboxItem.expires_at) > now,
        or_(col(OutboxItem.locked_until).is_(None), col(OutboxItem.locked_until) < now),
    )


def _expired(now: datetime) -> ColumnElement[bool]:
    return and_(
        col(OutboxItem.expires_at) <= now,
        or_(col(OutboxItem.locked_until).is_(None), col(OutboxItem.locked_until) < now),
    )


def _in_order(items: Sequence[OutboxItem]) -> list[OutboxItem]:
    return sorted(items, key=lambda item: (item.next_attempt_at, item.id or 0))


class OutboxRepository:
    """Persistence of :class:`~storage.models.OutboxItem` rows (sealed with :mod:`storage.sealing`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def put(self, item: OutboxItem) -> OutboxItem:
        """Insert ``item`` (already sealed) and return it with its id."""
        if item.purpose not in {purpose.value for purpose in OutboxPurpose}:
            raise ValueError(f"unknown outbox purpose {item.purpose!r}")
        if item.id is not None:
            raise ValueError("put() inserts new items; this one already has an id")
        async with self._sessions.begin() as session:
            session.add(item)
        return item

    async def get(self, item_id: int) -> OutboxItem | None:
        """The item with ``item_id``, or None once it was deleted."""
        async with self._sessions() as session:
            return await session.get(OutboxItem, item_id)

    async def claim_due(
        self, now: datetime, owner: str, lease_seconds: float, limit: int = 10, *, expired: bool = False
    ) -> list[OutboxItem]:
        """Lease up to ``limit`` due, unexpired, unleased items to ``owner``; oldest due first.

        ``expired=True`` leases unleased items whose hold ran out instead (say, while every replica was
        down), so a worker can tell their users the retry gave up before it shreds them.
        """
        locked_until = now + timedelta(seconds=lease_seconds)
        candidates = (
            select(col(OutboxItem.id))
            .where(_expired(now) if expired else _due(now))
            .order_by(col(OutboxItem.next_attempt_at), col(OutboxItem.id))
            .limit(limit)
        )
        async with self._sessions.begin() as session:
            if dialect_name(session) == "postgresql":
                # Lock the candidates, skipping rows another claimer holds, then lease them.
                ids = list((await session.scalars(candidates.with_for_update(skip_locked=True))).all())
                if not ids:
                    return []
                target = col(OutboxItem.id).in_(ids)
            else:
                # SQLite: one UPDATE takes the write lock, so selecting and leasing are one atomic step.
                target = col(OutboxItem.id).in_(candidates.scalar_subquery())
            stmt = (
                update(OutboxItem)
                .where(target)
                .values(locked_until=locked_until, lock_owner=owner)
                .returning(OutboxItem)
                .execution_options(synchronize_session=False)
            )
            return _in_order((await session.scalars(stmt)).all())

    async def reschedule(
        self, item_id: int, next_attempt_at: datetime, attempts: int, *, owner: str | None = None
    ) -> bool:
        """Release the lease and set the next attempt; with ``owner``, only if that owner holds it."""
        stmt = update(OutboxItem).where(col(OutboxItem.id) == item_id)
        if owner is not None:
            stmt = stmt.where(col(OutboxItem.lock_owner) == owner)
        stmt = stmt.values(
            next_attempt_at=next_attempt_at, attempts=attempts, locked_until=None, lock_owner=None
        ).execution_options(synchronize_session=False)
        async with self._sessions.begin() as session:
            return rowcount(await session.execute(stmt)) == 1

    async def holds(self, chat_id: int) -> bool:
        """True while a sealed key of this chat waits in the outbox (leased or not)."""
        stmt = select(col(OutboxItem.id)).where(col(OutboxItem.chat_id) == chat_id).limit(1)
        async with self._sessions() as session:
            return (await session.scalars(stmt)).first() is not None

    async def delete(self, item_id: int) -> bool:
        """Shred the item (a real DELETE); True if it existed."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(OutboxItem)
                .where(col(OutboxItem.id) == item_id)
                .execution_options(synchronize_session=False)
            )
            return rowcount(result) == 1

    async def delete_for_chat(self, chat_id: int) -> int:
        """Shred every item of the chat (e.g. the user cancelled); returns how many."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(OutboxItem)
                .where(col(OutboxItem.chat_id) == chat_id)
                .execution_options(synchronize_session=False)
            )
            return rowcount(result)

    async def delete_expired(self, now: datetime) -> int:
        """Shred every item whose ``expires_at`` has passed, leased or not; returns how many."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(OutboxItem)
                .where(col(OutboxItem.expires_at) <= now)
                .execution_options(synchronize_session=False)
            )
            return rowcount(result)

    async def pending_count(self) -> int:
        """How many items wait in the outbox (leased or not), for metrics."""
        async with self._sessions() as session:
            return int((await session.execute(select(func.count()).select_from(OutboxItem))).scalar_one())

    async def all_for_rewrap(self, exclude_kek_id: str | None = None) -> list[OutboxItem]:
        """Every item (optionally only those not sealed under ``exclude_kek_id``), for KEK rotation."""
        stmt = select(OutboxItem).order_by(col(OutboxItem.id))
        if exclude_kek_id is not None:
            stmt = stmt.where(col(OutboxItem.kek_id) != exclude_kek_id)
        async with self._sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def replace_sealed(self, item_id: int, sealed: bytes, kek_id: str) -> bool:
        """Swap in a re-sealed blob after rotation; False if the item is gone meanwhile."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(OutboxItem)
                .where(col(OutboxItem.id) == item_id)
                .values(sealed=sealed, kek_id=kek_id)
                .execution_options(synchronize_session=False)
            )
            return rowcount(result) == 1
