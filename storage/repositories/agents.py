"""Agents added by admins in the bot (``/add_agent``); configured agents never reach this table.

Why a table as well as configuration: admins manage their team from Telegram without a redeploy, and
every replica sees the same list.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from storage.models import Agent
from storage.repositories._sql import insert_ignoring_conflict, rowcount
from storage.timestamps import utcnow

__all__ = ["AgentRepository"]


class AgentRepository:
    """Persistence of :class:`~storage.models.Agent` rows."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def add(self, user_id: int, *, added_by: int | None = None, note: str | None = None) -> bool:
        """Add an agent; False if they were one already (the first row is kept)."""
        values = {"user_id": user_id, "added_by": added_by, "added_at": self._clock(),
                  "note": (note or None) and note[:128]}
        async with self._sessions.begin() as session:
            stmt = insert_ignoring_conflict(session, Agent, values, ["user_id"]).returning(col(Agent.user_id))
            return (await session.execute(stmt)).first() is not None

    async def remove(self, user_id: int) -> bool:
        """Remove an agent; False if there was no such row."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(Agent).where(col(Agent.user_id) == user_id).execution_options(synchronize_session=False)
            )
            return rowcount(result) == 1

    async def get(self, user_id: int) -> Agent | None:
        async with self._sessions() as session:
            return await session.get(Agent, user_id)

    async def all(self) -> list[Agent]:
        """Every added agent, oldest first."""
        async with self._sessions() as session:
            stmt = select(Agent).order_by(col(Agent.added_at), col(Agent.user_id))
            return list((await session.scalars(stmt)).all())
