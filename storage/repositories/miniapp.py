"""The replay count of Mini App submissions: one atomic upsert per POST, shared by every replica.

Why the database: a replayed initData may reach another replica; ``INSERT ... ON CONFLICT DO UPDATE SET
uses = uses + 1 RETURNING uses`` counts it exactly once on both PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from storage.models import MiniAppInitData
from storage.repositories._sql import dialect_name, rowcount
from storage.timestamps import utcnow

__all__ = ["InitDataUseRepository"]


class InitDataUseRepository:
    """How many times each initData (by its hash) was used to submit a key."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    async def use(self, digest: str, expires_at: datetime) -> int:
        """Count one more use of ``digest`` (kept until ``expires_at``); returns the uses so far, this one included."""
        async with self._sessions.begin() as session:
            insert: Any = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
            stmt = insert(MiniAppInitData).values(digest=digest, uses=1, expires_at=expires_at)
            stmt = stmt.on_conflict_do_update(index_elements=["digest"],
                                              set_={"uses": col(MiniAppInitData.uses) + 1})
            uses = (await session.execute(stmt.returning(col(MiniAppInitData.uses)))).scalar_one()
            return int(uses)

    async def prune(self) -> int:
        """Forget initData that expired (it is refused by age anyway)."""
        async with self._sessions.begin() as session:
            result = await session.execute(delete(MiniAppInitData)
                                           .where(col(MiniAppInitData.expires_at) < self._clock())
                                           .execution_options(synchronize_session=False))
            return rowcount(result)
