"""Telegram update dedupe: claim an ``update_id`` once, prune old claims.

Why: Telegram redelivers an update when the webhook answered late or failed; the second delivery must
be recognised and dropped before it steps the machine twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from storage.models import ProcessedUpdate
from storage.repositories._sql import insert_ignoring_conflict, rowcount
from storage.timestamps import utcnow

__all__ = ["ProcessedUpdateRepository"]


class ProcessedUpdateRepository:
    """The set of ``update_id`` values already handled."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def claim(self, update_id: int) -> bool:
        """Record ``update_id``; True if this call recorded it, False if it was already there."""
        values = {"update_id": update_id, "processed_at": self._clock()}
        async with self._sessions.begin() as session:
            stmt = insert_ignoring_conflict(session, ProcessedUpdate, values, ["update_id"]).returning(
                col(ProcessedUpdate.update_id)
            )
            return (await session.execute(stmt)).first() is not None

    async def seen(self, update_id: int) -> bool:
        """True if ``update_id`` was claimed already (read-only; see ``ConversationRepository.save``)."""
        async with self._sessions() as session:
            return await session.get(ProcessedUpdate, update_id) is not None

    async def prune(self, older_than: datetime) -> int:
        """Delete claims processed before ``older_than``; returns how many went."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(ProcessedUpdate)
                .where(col(ProcessedUpdate.processed_at) < older_than)
                .execution_options(synchronize_session=False)
            )
            return rowcount(result)
