"""Conversation rows: load, create once per chat, save with an optimistic version check.

Why optimistic concurrency: two replicas (or two updates of one chat handled at once) may step the same
conversation; the loser's ``save`` returns False and the caller reloads and re-applies its event instead
of silently overwriting the winner's state.

The reads and the save every update makes (``get``, ``get_unless_processed``, ``save``) are SQLAlchemy Core
statements built once with bind parameters, not ORM queries built per call: the rows are plain values the
runtime copies into the pure machine, so building statements and the ORM's bookkeeping only cost CPU there.
Reads run outside a transaction and, on PostgreSQL, the save claims its update in the same statement: one
round trip each (CPU per read ~0.5 → ~0.3 ms, per save ~0.95 → ~0.26 ms; docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Row, Select, bindparam, case, delete, exists, func, literal, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import Insert
from sqlmodel import col

from storage.models import Conversation, OutboxItem, ProcessedUpdate
from storage.repositories._sql import dialect_name, insert_ignoring_conflict
from storage.timestamps import utcnow

__all__ = ["ConversationRepository"]

_TABLE = Conversation.__table__  # type: ignore[attr-defined]
_PROCESSED = ProcessedUpdate.__table__  # type: ignore[attr-defined]


_SAVED = ("username", "language", "step", "choices", "state", "guide_message_id", "workspace_id", "last_outcome")


def _new(column: str) -> Any:
    """The bind parameter carrying a column's new value (typed as the column, e.g. JSON, UTC datetimes)."""
    return bindparam(f"new_{column}", type_=_TABLE.c[column].type)


_GET = select(_TABLE).where(_TABLE.c.chat_id == bindparam("chat_id"))
# The chat's row outer-joined to a one-row select: whether the update was processed comes back even for a
# chat with no conversation yet.
_GET_UNLESS_PROCESSED = select(
    exists().where(_PROCESSED.c.update_id == bindparam("update_id")).label("seen"), *_TABLE.columns
).select_from(select(literal(1).label("one")).subquery().outerjoin(_TABLE, _TABLE.c.chat_id == bindparam("chat_id")))
# step_entered_at moves only when the step changes (recovery dates a conversation by it).
_SAVE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row_id"), _TABLE.c.version == bindparam("expected_version"))
    .values(
        {name: _new(name) for name in _SAVED}
        | {
            "version": _new("version"),
            "updated_at": _new("updated_at"),
            "step_entered_at": case((_TABLE.c.step != _new("step"), _new("updated_at")),
                                    else_=_TABLE.c.step_entered_at),
        }
    )
    .returning(_TABLE.c.version, _TABLE.c.updated_at, _TABLE.c.step_entered_at)
)


_CLAIMED_UPDATE = bindparam("claimed_update", type_=_PROCESSED.c.update_id.type)  # None: nothing to claim
_CLAIMED_AT = bindparam("claimed_at", type_=_PROCESSED.c.processed_at.type)
_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


@cache
def _claim(session_dialect: str) -> Insert:
    """``INSERT INTO processed_update ... ON CONFLICT DO NOTHING`` for a dialect, built once."""
    values: dict[str, Any] = {"update_id": _CLAIMED_UPDATE, "processed_at": _CLAIMED_AT}
    return insert_ignoring_conflict(session_dialect, _PROCESSED, values, ["update_id"])


def _save_and_claim() -> Select[Any]:
    """PostgreSQL: the save and the update claim as one statement (one round trip, atomic as a statement).

    The claim is a data-modifying CTE that inserts only if the versioned UPDATE matched a row: PostgreSQL runs
    every such CTE exactly once whether or not the outer SELECT reads it
    (https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING).
    """
    saved = _SAVE.cte("saved")
    claim = (
        postgresql.insert(_PROCESSED)
        .from_select(["update_id", "processed_at"], select(_CLAIMED_UPDATE, _CLAIMED_AT).where(
            exists(select(saved.c.version)), _CLAIMED_UPDATE.is_not(None)))
        .on_conflict_do_nothing(index_elements=["update_id"])
        .cte("claimed")
    )
    return select(saved.c.version, saved.c.updated_at, saved.c.step_entered_at).add_cte(claim)


_SAVE_AND_CLAIM = _save_and_claim()


def _row(found: Row[Any] | None) -> Conversation | None:
    """A conversation built from a Core row of its table (None when the chat has none)."""
    if found is None or found.id is None:
        return None
    return Conversation(**{column.name: found._mapping[column] for column in _TABLE.columns})


class ConversationRepository:
    """Persistence of :class:`~storage.models.Conversation`, one row per Telegram chat."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._dialect: str | None = None  # learnt on the first save: PostgreSQL saves in one statement

    async def _read_one(self, stmt: Select[Any], params: dict[str, Any]) -> Row[Any] | None:
        """One statement, outside a transaction: a single statement sees one snapshot and is atomic anyway,
        and without BEGIN and ROLLBACK/COMMIT it is one round trip to PostgreSQL instead of three."""
        async with self._sessions() as session:
            connection = await session.connection(execution_options=_AUTOCOMMIT)
            return (await connection.execute(stmt, params)).first()

    async def get(self, chat_id: int) -> Conversation | None:
        """Return the chat's conversation, or None if it has none yet."""
        return _row(await self._read_one(_GET, {"chat_id": chat_id}))

    async def get_unless_processed(self, chat_id: int, update_id: int) -> tuple[bool, Conversation | None]:
        """(was ``update_id`` processed already, the chat's conversation): the two reads every update
        starts with, in one statement (one round trip)."""
        found = await self._read_one(_GET_UNLESS_PROCESSED, {"chat_id": chat_id, "update_id": update_id})
        if found is not None and found.seen:  # (the outer join always returns its one row)
            return True, None
        return False, _row(found)

    async def create(
        self,
        *,
        chat_id: int,
        user_id: int,
        step: str,
        username: str | None = None,
        language: str = "en",
        choices: dict[str, str] | None = None,
        state: dict[str, Any] | None = None,
        guide_message_id: int | None = None,
        workspace_id: str | None = None,
    ) -> Conversation:
        """Insert the chat's conversation; if one exists already (a concurrent insert won), return it."""
        now = self._clock()
        row = Conversation(
            chat_id=chat_id,
            user_id=user_id,
            username=username,
            language=language,
            step=step,
            choices=dict(choices or {}),
            state=dict(state or {}),
            guide_message_id=guide_message_id,
            workspace_id=workspace_id,
            version=1,
            created_at=now,
            updated_at=now,
            step_entered_at=now,
        )
        values = row.model_dump(exclude={"id"})
        async with self._sessions.begin() as session:
            stmt = insert_ignoring_conflict(session, Conversation, values, ["chat_id"]).returning(
                col(Conversation.id)
            )
            new_id = (await session.execute(stmt)).scalar_one_or_none()
            if new_id is not None:
                row.id = new_id
                return row
            existing = await session.scalars(select(Conversation).where(col(Conversation.chat_id) == chat_id))
            return existing.one()

    async def save(self, conv: Conversation, expected_version: int, *, claim_update: int | None = None) -> bool:
        """Write ``conv`` if the stored version is still ``expected_version``; False on conflict.

        On success the stored version becomes ``expected_version + 1`` and ``conv`` is updated in
        place (version, updated_at, and step_entered_at, which storage resets when the step changes).
        ``claim_update`` records that Telegram update as processed in the same transaction, so a
        crash before the commit leaves it unclaimed (Telegram's redelivery steps it) and a crash
        after it leaves it claimed (the redelivery is skipped): never lost, never applied twice.
        """
        if conv.id is None:
            raise ValueError("save() needs a conversation that was created first")
        now = self._clock()
        params = {f"new_{name}": getattr(conv, name) for name in _SAVED}
        params.update(new_choices=dict(conv.choices), new_state=dict(conv.state), new_version=expected_version + 1,
                      new_updated_at=now, row_id=conv.id, expected_version=expected_version,
                      claimed_update=claim_update, claimed_at=now)
        if self._dialect is None:
            async with self._sessions() as session:
                self._dialect = dialect_name(session)
        returned: Row[Any] | None
        if self._dialect == "postgresql":
            returned = await self._read_one(_SAVE_AND_CLAIM, params)  # one statement: atomic without BEGIN
        else:
            async with self._sessions.begin() as session:
                returned = (await session.execute(_SAVE, params)).one_or_none()
                if returned is not None and claim_update is not None:
                    await session.execute(_claim(self._dialect), params)
        if returned is None:
            return False
        conv.version, conv.updated_at, conv.step_entered_at = returned.version, returned.updated_at, \
            returned.step_entered_at
        return True

    async def delete(self, chat_id: int) -> bool:
        """Forget the chat's conversation and shred its sealed outbox rows; True if it existed."""
        async with self._sessions.begin() as session:
            # The foreign key cascades too; deleting explicitly keeps shredding independent of it.
            await session.execute(
                delete(OutboxItem)
                .where(col(OutboxItem.chat_id) == chat_id)
                .execution_options(synchronize_session=False)
            )
            result = await session.execute(
                delete(Conversation)
                .where(col(Conversation.chat_id) == chat_id)
                .returning(col(Conversation.id))
                .execution_options(synchronize_session=False)
            )
            return result.first() is not None

    async def find_stale(
        self, step_in: Collection[str], idle_since: datetime, limit: int = 100
    ) -> list[Conversation]:
        """Conversations that entered one of ``step_in`` before ``idle_since``, oldest first.

        Dated by when the step was entered, not the last save: a /start that saves the same step again
        must not postpone the recovery that looks for them.
        """
        if not step_in:
            return []
        entered = col(Conversation.step_entered_at)
        stmt = (
            select(Conversation)
            .where(col(Conversation.step).in_(list(step_in)), entered < idle_since)
            .order_by(entered, col(Conversation.id))
            .limit(limit)
        )
        async with self._sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def find_held_without_seal(self, idle_since: datetime, limit: int = 100) -> list[Conversation]:
        """Conversations at ``held`` since before ``idle_since`` with no sealed key of their chat in the outbox.

        Such a conversation waits on a retry that will never come (the process died between saving the step
        and sealing the key); one query finds them however many keys are held during an outage. Dated by step
        entry, as :meth:`find_stale`.
        """
        sealed = select(col(OutboxItem.id)).where(col(OutboxItem.chat_id) == col(Conversation.chat_id))
        entered = col(Conversation.step_entered_at)
        stmt = (
            select(Conversation)
            .where(col(Conversation.step) == "held", entered < idle_since, ~sealed.exists())
            .order_by(entered, col(Conversation.id))
            .limit(limit)
        )
        async with self._sessions() as session:
            return list((await session.scalars(stmt)).all())

    async def count(self) -> int:
        """How many conversations are stored."""
        async with self._sessions() as session:
            return int((await session.execute(select(func.count()).select_from(Conversation))).scalar_one())

    async def set_guide_message(self, chat_id: int, message_id: int | None) -> None:
        """Remember which bot message is the guide (edited in place); not a state change, no version bump."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Conversation)
                .where(col(Conversation.chat_id) == chat_id)
                .values(guide_message_id=message_id)
                .execution_options(synchronize_session=False)
            )

    async def set_language(self, chat_id: int, language: str) -> None:
        """The chat's chosen locale (/language); like the guide message id, not a step change: no version bump."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Conversation)
                .where(col(Conversation.chat_id) == chat_id)
                .values(language=language[:16])
                .execution_options(synchronize_session=False)
            )

    async def delete_idle(self, idle_since: datetime) -> int:
        """Forget conversations with no update since ``idle_since`` (retention); returns how many."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(Conversation)
                .where(col(Conversation.updated_at) < idle_since)
                .returning(col(Conversation.id))
                .execution_options(synchronize_session=False)
            )
            return len(result.all())
