"""Reminders for customers who stopped mid-guide: find who is due, claim the one reminder, once.

Why a claim row: several replicas run the reminder watch; the unique ``conversation_id`` decides which
one sends, so a customer never gets two reminders for one conversation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from storage.models import Conversation, Reminder
from storage.repositories._sql import insert_ignoring_conflict, rowcount
from storage.timestamps import utcnow

__all__ = ["ReminderRepository"]


class ReminderRepository:
    """Persistence of :class:`~storage.models.Reminder`."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def due(self, step_in: Collection[str], idle_since: datetime, limit: int = 100) -> list[Conversation]:
        """Conversations parked at one of ``step_in`` since before ``idle_since`` and never reminded."""
        if not step_in:
            return []
        claimed = exists().where(col(Reminder.conversation_id) == col(Conversation.id))
        stmt = (
            select(Conversation)
            .where(col(Conversation.step).in_(list(step_in)), col(Conversation.updated_at) < idle_since,
                   ~claimed)
            .order_by(col(Conversation.updated_at), col(Conversation.id))
            .limit(limit)
        )
        async with self._sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def claim(self, conversation_id: int, chat_id: int, *, sent: bool = True) -> bool:
        """Claim the conversation's one reminder; False if another replica (or an earlier pass) has it."""
        values = {"conversation_id": conversation_id, "chat_id": chat_id, "sent": sent,
                  "claimed_at": self._clock()}
        async with self._sessions.begin() as session:
            stmt = insert_ignoring_conflict(session, Reminder, values, ["conversation_id"]).returning(
                col(Reminder.id))
            return (await session.execute(stmt)).first() is not None

    async def mark_in_state(self, conversation_id: int, expected_version: int, state: dict[str, object]) -> bool:
        """Write the machine's state (now flagged "reminded") if unchanged, keeping ``updated_at``.

        Not a user action: the retention clock and the idle time must not restart because we wrote.
        """
        stmt = (
            update(Conversation)
            .where(col(Conversation.id) == conversation_id, col(Conversation.version) == expected_version)
            .values(state=state, version=expected_version + 1)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions.begin() as session:
            return rowcount(await session.execute(stmt)) == 1
