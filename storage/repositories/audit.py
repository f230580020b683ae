"""The audit log: append-only events with a JSON detail that can never carry a key.

Why the guard: audit detail is free-form and written from many places; refusing a
:class:`~flows.secret.SecretKey`, raw bytes or a key-shaped string anywhere in it (keys and values, walked
recursively) at the door is cheaper than finding one in a backup. Rows are purged after the retention
period like conversations (``bot/core/maintenance.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from flows.inspection import might_carry_secret
from flows.secret import SecretKey
from storage.models import AuditEvent
from storage.repositories._sql import rowcount
from storage.timestamps import utcnow

__all__ = ["AuditLog"]


def _refuse_secrets(value: Any, path: str) -> None:
    if isinstance(value, SecretKey):
        raise TypeError(f"audit detail {path!r} is a SecretKey; record a fingerprint or last four instead")
    if isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"audit detail {path!r} is raw bytes; audit detail is JSON text only")
    if isinstance(value, str) and might_carry_secret(value):
        # Say where, never what: the message may end up in a log.
        raise ValueError(f"audit detail {path!r} looks like it holds a secret key; it was not recorded")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_secrets(key, f"{path}.<key>")
            _refuse_secrets(item, f"{path}.<item>" if isinstance(key, str) and might_carry_secret(key)
                            else f"{path}.{key}")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            _refuse_secrets(item, f"{path}[{index}]")


class AuditLog:
    """Append and read :class:`~storage.models.AuditEvent` rows."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def record(
        self, kind: str, chat_id: int | None = None, actor_user_id: int | None = None, **detail: Any
    ) -> AuditEvent:
        """Append one event; ``detail`` must be JSON-serialisable and hold no key material."""
        _refuse_secrets(kind, "kind")
        for key, value in detail.items():
            _refuse_secrets(key, "<name>")
            _refuse_secrets(value, key)
        # Fail here, with our message, rather than inside the driver at flush time.
        json.dumps(detail)
        event = AuditEvent(
            at=self._clock(), chat_id=chat_id, actor_user_id=actor_user_id, kind=kind, detail=detail
        )
        async with self._sessions.begin() as session:
            session.add(event)
        return event

    async def purge_older_than(self, cutoff: datetime) -> int:
        """Delete events recorded before ``cutoff`` (the retention period); returns how many."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(AuditEvent).where(col(AuditEvent.at) < cutoff).execution_options(synchronize_session=False)
            )
            return rowcount(result)

    async def recent(self, limit: int = 50, kind: str | None = None) -> list[AuditEvent]:
        """The newest ``limit`` events (of ``kind`` if given), newest first."""
        stmt = select(AuditEvent)
        if kind is not None:
            stmt = stmt.where(col(AuditEvent.kind) == kind)
        stmt = stmt.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc()).limit(limit)
        async with self._sessions() as session:
            return list((await session.scalars(stmt)).all())
