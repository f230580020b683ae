"""Key records: what we remember about pasted keys without remembering the keys.

Why: "is this key already connected to this workspace?" and "which key did this chat connect?" must be
answerable after the plaintext is gone. A keyed fingerprint answers the first, the last four characters
let a person recognise the key on OpenAI's dashboard.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from storage.models import KeyRecord
from storage.repositories._sql import rowcount
from storage.timestamps import utcnow

__all__ = ["CONNECTING", "KeyRecordRepository"]

# The outcome of a record written before DoubleTick is asked to connect its key (see ``begin_connecting``).
CONNECTING = "connecting"

_HEX_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def _check_fingerprint(fingerprint: str) -> None:
    # A cheap guard against passing the key itself where its fingerprint belongs.
    if not isinstance(fingerprint, str) or not _HEX_FINGERPRINT.fullmatch(fingerprint):
        raise ValueError("fingerprint must be 64 lowercase hex characters (storage.fingerprint)")


class KeyRecordRepository:
    """Persistence of :class:`~storage.models.KeyRecord` (no secret material)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def add(
        self,
        *,
        chat_id: int,
        user_id: int,
        fingerprint: str,
        last_four: str,
        family: str,
        outcome: str,
        workspace_id: str | None = None,
        connected_at: datetime | None = None,
        connect_request: str | None = None,
    ) -> KeyRecord:
        """Store one key's record; ``fingerprint`` comes from :func:`storage.fingerprint.fingerprint`."""
        _check_fingerprint(fingerprint)
        if len(last_four) > 4:
            raise ValueError("last_four holds at most four characters")
        record = KeyRecord(
            chat_id=chat_id,
            user_id=user_id,
            workspace_id=workspace_id,
            fingerprint=fingerprint,
            last_four=last_four,
            family=family,
            outcome=outcome,
            created_at=self._clock(),
            connected_at=connected_at,
            connect_request=connect_request,
        )
        async with self._sessions.begin() as session:
            session.add(record)
        return record

    async def mark_connected(self, record_id: int, *, workspace_id: str, at: datetime | None = None) -> bool:
        """Note that the record's key is now connected to ``workspace_id``; False if no such record."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(KeyRecord)
                .where(col(KeyRecord.id) == record_id)
                .values(workspace_id=workspace_id, connected_at=at or self._clock(), disconnected_at=None)
                .execution_options(synchronize_session=False)
            )
            return rowcount(result) == 1

    async def begin_connecting(
        self, *, chat_id: int, user_id: int, fingerprint: str, last_four: str, workspace_id: str, family: str
    ) -> KeyRecord:
        """The chat's ``connecting`` record for this key and workspace, written now if there is none.

        Why: the record is written (committed) *before* DoubleTick is called and the Idempotency-Key is
        derived from its id, so a process killed between DoubleTick's 2xx and our "connected" record leaves
        this row behind (with its random ``connect_request``); the next attempt with the same key (a
        re-paste, the outbox) finds it and sends
        the same Idempotency-Key, and DoubleTick replays its answer instead of connecting again.
        """
        _check_fingerprint(fingerprint)
        found = await self._connecting(chat_id, fingerprint, workspace_id)
        if found is not None:
            return found
        return await self.add(chat_id=chat_id, user_id=user_id, fingerprint=fingerprint, last_four=last_four,
                              family=family, outcome=CONNECTING, workspace_id=workspace_id,
                              connect_request=secrets.token_hex(20))

    async def _connecting(self, chat_id: int, fingerprint: str, workspace_id: str) -> KeyRecord | None:
        stmt = (
            select(KeyRecord)
            .where(
                col(KeyRecord.chat_id) == chat_id,
                col(KeyRecord.fingerprint) == fingerprint,
                col(KeyRecord.workspace_id) == workspace_id,
                col(KeyRecord.outcome) == CONNECTING,
            )
            .order_by(col(KeyRecord.id))
            .limit(1)
        )
        async with self._sessions() as session:
            return (await session.scalars(stmt)).first()

    async def settle_connecting(
        self, *, chat_id: int, fingerprint: str, workspace_id: str | None, outcome: str, family: str | None = None,
        connected: bool = False,
    ) -> bool:
        """Turn the ``connecting`` record of this key into its final outcome; False if there was none.

        ``connected``: the chat's other connected keys are marked disconnected in the same transaction
        (after a replacement only the new key counts as connected).
        """
        _check_fingerprint(fingerprint)
        if workspace_id is None:
            return False
        now = self._clock()
        async with self._sessions.begin() as session:
            mine = (
                await session.scalars(
                    select(col(KeyRecord.id)).where(
                        col(KeyRecord.chat_id) == chat_id,
                        col(KeyRecord.fingerprint) == fingerprint,
                        col(KeyRecord.workspace_id) == workspace_id,
                        col(KeyRecord.outcome) == CONNECTING,
                    )
                )
            ).all()
            if not mine:
                return False
            if connected:
                await session.execute(
                    update(KeyRecord)
                    .where(
                        col(KeyRecord.chat_id) == chat_id,
                        col(KeyRecord.id).not_in(mine),
                        col(KeyRecord.connected_at).is_not(None),
                        col(KeyRecord.disconnected_at).is_(None),
                    )
                    .values(disconnected_at=now)
                    .execution_options(synchronize_session=False)
                )
            values: dict[str, object] = {"outcome": outcome, "connected_at": now if connected else None}
            if family:
                values["family"] = family
            await session.execute(
                update(KeyRecord)
                .where(col(KeyRecord.id).in_(mine))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return True

    async def find_connected_by_fingerprint(
        self, fingerprint: str, workspace_id: str | None = None
    ) -> KeyRecord | None:
        """The newest still-connected record with this fingerprint (in ``workspace_id`` if given)."""
        _check_fingerprint(fingerprint)
        stmt = select(KeyRecord).where(
            col(KeyRecord.fingerprint) == fingerprint,
            col(KeyRecord.connected_at).is_not(None),
            col(KeyRecord.disconnected_at).is_(None),
        )
        if workspace_id is not None:
            stmt = stmt.where(col(KeyRecord.workspace_id) == workspace_id)
        stmt = stmt.order_by(col(KeyRecord.connected_at).desc(), col(KeyRecord.id).desc()).limit(1)
        async with self._sessions() as session:
            return (await session.scalars(stmt)).first()

    async def latest_for_chat(self, chat_id: int) -> KeyRecord | None:
        """The chat's most recent key record, whatever its outcome."""
        stmt = (
            select(KeyRecord)
            .where(col(KeyRecord.chat_id) == chat_id)
            .order_by(col(KeyRecord.created_at).desc(), col(KeyRecord.id).desc())
            .limit(1)
        )
        async with self._sessions() as session:
            return (await session.scalars(stmt)).first()

    async def mark_disconnected(self, chat_id: int, at: datetime | None = None) -> int:
        """Mark every connected key of the chat as disconnected; returns how many were."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(KeyRecord)
                .where(
                    col(KeyRecord.chat_id) == chat_id,
                    col(KeyRecord.connected_at).is_not(None),
                    col(KeyRecord.disconnected_at).is_(None),
                )
                .values(disconnected_at=at or self._clock())
                .execution_options(synchronize_session=False)
            )
            return rowcount(result)

    async def connected_in_workspace(self, workspace_id: str) -> KeyRecord | None:
        """The key currently connected to ``workspace_id`` by our records (its chat is the one that connected it)."""
        stmt = (
            select(KeyRecord)
            .where(
                col(KeyRecord.workspace_id) == workspace_id,
                col(KeyRecord.connected_at).is_not(None),
                col(KeyRecord.disconnected_at).is_(None),
            )
            .order_by(col(KeyRecord.connected_at).desc(), col(KeyRecord.id).desc())
            .limit(1)
        )
        async with self._sessions() as session:
            return (await session.scalars(stmt)).first()

    async def mark_workspace_disconnected(self, workspace_id: str, at: datetime | None = None) -> int:
        """Every connected key of the workspace, whichever chat connected it, is disconnected now."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(KeyRecord)
                .where(
                    col(KeyRecord.workspace_id) == workspace_id,
                    col(KeyRecord.connected_at).is_not(None),
                    col(KeyRecord.disconnected_at).is_(None),
                )
                .values(disconnected_at=at or self._clock())
                .execution_options(synchronize_session=False)
            )
            return rowcount(result)

    async def delete_for_chat(self, chat_id: int) -> int:
        """Delete every record of the chat (the user asked us to forget them); returns how many."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(KeyRecord)
                .where(col(KeyRecord.chat_id) == chat_id)
                .execution_options(synchronize_session=False)
            )
            return rowcount(result)
