"""Handoff links and what support agents may read about the customers who opened them.

Why the single-use binding is one conditional UPDATE: two users (or two replicas handling the same
user) opening a link at the same moment must not both win; the database decides, not the caller.
Why ``record_notification`` inserts before sending: the unique row is the "at most once" across
replicas for notifications such as "stuck at this step".
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased
from sqlmodel import col

from storage.models import AgentNotification, Conversation, HandoffLink, KeyRecord
from storage.repositories._sql import insert_ignoring_conflict, rowcount
from storage.timestamps import utcnow

__all__ = ["HandoffRepository"]

_DIGEST_LEN = 64


def _check_digest(digest: str) -> None:
    # A cheap guard against storing the token itself where its digest belongs.
    if len(digest) != _DIGEST_LEN or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("digest must be 64 lowercase hex characters (bot.agents.links.digest_of)")


class HandoffRepository:
    """Persistence of :class:`~storage.models.HandoffLink` and :class:`~storage.models.AgentNotification`."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    # -- links -------------------------------------------------------------------------------------
    async def add(
        self,
        *,
        digest: str,
        workspace_id: str,
        expires_at: datetime,
        created_via: str,
        workspace_name: str | None = None,
        label: str | None = None,
        created_by: int | None = None,
        agent_language: str | None = None,
    ) -> HandoffLink:
        """Store a new link (its token's digest only)."""
        _check_digest(digest)
        link = HandoffLink(
            digest=digest, workspace_id=workspace_id, workspace_name=workspace_name, label=label,
            created_by=created_by, created_via=created_via, created_at=self._clock(), expires_at=expires_at,
            agent_language=agent_language,
        )
        async with self._sessions.begin() as session:
            session.add(link)
        return link

    async def get(self, link_id: int) -> HandoffLink | None:
        async with self._sessions() as session:
            return await session.get(HandoffLink, link_id)

    async def by_digest(self, digest: str) -> HandoffLink | None:
        async with self._sessions() as session:
            stmt = select(HandoffLink).where(col(HandoffLink.digest) == digest)
            return (await session.scalars(stmt)).first()

    async def claim(self, link_id: int, *, user_id: int, chat_id: int, at: datetime | None = None) -> bool:
        """Bind an unused, unrevoked, unexpired link to its first user; False if any of that changed."""
        now = at or self._clock()
        stmt = (
            update(HandoffLink)
            .where(
                col(HandoffLink.id) == link_id,
                col(HandoffLink.redeemed_by_user_id).is_(None),
                col(HandoffLink.revoked_at).is_(None),
                col(HandoffLink.expires_at) > now,
            )
            .values(redeemed_by_user_id=user_id, redeemed_chat_id=chat_id, redeemed_at=now)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions.begin() as session:
            return rowcount(await session.execute(stmt)) == 1

    async def revoke(self, link_id: int, *, by: int | None, at: datetime | None = None) -> bool:
        """Revoke a link (it can no longer be opened, even by its bound user); False if already revoked."""
        stmt = (
            update(HandoffLink)
            .where(col(HandoffLink.id) == link_id, col(HandoffLink.revoked_at).is_(None))
            .values(revoked_at=at or self._clock(), revoked_by=by)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions.begin() as session:
            return rowcount(await session.execute(stmt)) == 1

    async def open_links(self, created_by: int | None, *, now: datetime | None = None,
                         limit: int | None = 50) -> list[HandoffLink]:
        """Unrevoked, unexpired links (of one agent, or everyone's when ``created_by`` is None), newest first;
        ``limit=None``: all of them (/links pages them)."""
        stmt = select(HandoffLink).where(
            col(HandoffLink.revoked_at).is_(None), col(HandoffLink.expires_at) > (now or self._clock())
        )
        if created_by is not None:
            stmt = stmt.where(col(HandoffLink.created_by) == created_by)
        stmt = stmt.order_by(col(HandoffLink.created_at).desc(), col(HandoffLink.id).desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def latest_for_chat(self, chat_id: int) -> HandoffLink | None:
        """The link this chat opened most recently."""
        stmt = (
            select(HandoffLink)
            .where(col(HandoffLink.redeemed_chat_id) == chat_id)
            .order_by(col(HandoffLink.redeemed_at).desc(), col(HandoffLink.id).desc())
            .limit(1)
        )
        async with self._sessions() as session:
            return (await session.scalars(stmt)).first()

    async def for_workspace(self, workspace_id: str, limit: int = 10) -> list[HandoffLink]:
        """The workspace's links, newest first."""
        stmt = (
            select(HandoffLink)
            .where(col(HandoffLink.workspace_id) == workspace_id)
            .order_by(col(HandoffLink.created_at).desc(), col(HandoffLink.id).desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def workspace_ids_starting(self, start: str, limit: int = 50) -> list[str]:
        """Workspace ids on links or conversations that begin with ``start`` (a page button carries only the
        start of a long id, plus a hash that picks the one)."""
        found: set[str] = set()
        async with self._sessions() as session:
            for column in (col(HandoffLink.workspace_id), col(Conversation.workspace_id)):
                stmt = select(column).where(func.substr(column, 1, len(start)) == start).distinct().limit(limit)
                found.update(value for value in (await session.scalars(stmt)).all() if value)
        return sorted(found)

    async def known_workspace_name(self, workspace_id: str) -> str | None:
        """The name given for this workspace on its newest link that had one."""
        stmt = (
            select(col(HandoffLink.workspace_name))
            .where(col(HandoffLink.workspace_id) == workspace_id, col(HandoffLink.workspace_name).is_not(None))
            .order_by(col(HandoffLink.created_at).desc(), col(HandoffLink.id).desc())
            .limit(1)
        )
        async with self._sessions() as session:
            return (await session.execute(stmt)).scalar_one_or_none()

    # -- notifications -----------------------------------------------------------------------------
    async def record_notification(self, link_id: int, kind: str, marker: str = "", *,
                                  agent_user_id: int | None = None) -> bool:
        """Claim the right to send (link, kind, marker) once; False if it was sent already."""
        values = {"handoff_link_id": link_id, "kind": kind, "marker": marker[:64],
                  "agent_user_id": agent_user_id, "sent_at": self._clock()}
        async with self._sessions.begin() as session:
            stmt = insert_ignoring_conflict(
                session, AgentNotification, values, ["handoff_link_id", "kind", "marker"]
            ).returning(col(AgentNotification.id))
            return (await session.execute(stmt)).first() is not None

    async def stuck(self, *, idle_since: datetime, settled_steps: Collection[str],
                    limit: int = 100) -> list[tuple[HandoffLink, Conversation]]:
        """Customers who opened an agent's link and have sat at one step since before ``idle_since``.

        Only each chat's newest link counts, only while the conversation is still bound to that link's
        workspace, and never twice for the same step (a "stuck" notification row exists for it).
        """
        newer: Any = aliased(HandoffLink)  # typed loosely: its columns are SQL expressions here
        already = exists().where(
            col(AgentNotification.handoff_link_id) == col(HandoffLink.id),
            col(AgentNotification.kind) == "stuck",
            col(AgentNotification.marker) == col(Conversation.step),
        )
        superseded = exists().where(
            newer.redeemed_chat_id == col(HandoffLink.redeemed_chat_id),
            newer.redeemed_at > col(HandoffLink.redeemed_at),
        )
        stmt = (
            select(HandoffLink, Conversation)
            .join(Conversation, col(Conversation.chat_id) == col(HandoffLink.redeemed_chat_id))
            .where(
                col(HandoffLink.created_by).is_not(None),
                col(HandoffLink.revoked_at).is_(None),
                col(HandoffLink.redeemed_at) < idle_since,
                col(Conversation.workspace_id) == col(HandoffLink.workspace_id),
                col(Conversation.step).not_in(list(settled_steps)),
                col(Conversation.step_entered_at) < idle_since,
                ~already,
                ~superseded,
            )
            .order_by(col(Conversation.step_entered_at), col(HandoffLink.id))
            .limit(limit)
        )
        async with self._sessions() as session:
            return [(link, conv) for link, conv in (await session.execute(stmt)).all()]

    # -- what /status reads ------------------------------------------------------------------------
    async def conversations_in_workspace(self, workspace_id: str, limit: int = 10) -> list[Conversation]:
        stmt = (
            select(Conversation)
            .where(col(Conversation.workspace_id) == workspace_id)
            .order_by(col(Conversation.updated_at).desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def conversations_of_username(self, username: str, limit: int = 5) -> list[Conversation]:
        """Telegram usernames are case-insensitive."""
        stmt = (
            select(Conversation)
            .where(func.lower(col(Conversation.username)) == username.lower())
            .order_by(col(Conversation.updated_at).desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def conversations_of_chats(self, chat_ids: Collection[int]) -> dict[int, Conversation]:
        """Many chats' conversations in one query (/links names every customer who opened a link)."""
        wanted = sorted(set(chat_ids))
        found: dict[int, Conversation] = {}
        async with self._sessions() as session:
            for start in range(0, len(wanted), 500):  # well under SQLite's bound-parameter limit
                stmt = select(Conversation).where(col(Conversation.chat_id).in_(wanted[start:start + 500]))
                found.update((row.chat_id, row) for row in (await session.scalars(stmt)).all())
        return found

    async def conversation_of_chat(self, chat_id: int) -> Conversation | None:
        async with self._sessions() as session:
            stmt = select(Conversation).where(col(Conversation.chat_id) == chat_id)
            return (await session.scalars(stmt)).first()

    async def workspace_connection(self, workspace_id: str) -> KeyRecord | None:
        """The key currently connected to the workspace, if any (by our records)."""
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

    async def latest_key_of_chat(self, chat_id: int) -> KeyRecord | None:
        stmt = (
            select(KeyRecord)
            .where(col(KeyRecord.chat_id) == chat_id)
            .order_by(col(KeyRecord.created_at).desc(), col(KeyRecord.id).desc())
            .limit(1)
        )
        async with self._sessions() as session:
            return (await session.scalars(stmt)).first()
