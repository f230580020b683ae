"""The tables: conversations, update dedupe, key records, audit events and the sealed retry outbox.

Why these shapes: conversation state lives in the database (not in PTB persistence) so several replicas
agree; ``version`` gives optimistic concurrency; Telegram ids are 64-bit; every timestamp is aware UTC
(:class:`~storage.timestamps.UTCDateTime`). No table has a column for key plaintext: key records carry
a keyed fingerprint and the last four characters, and only :class:`OutboxItem.sealed` holds (encrypted)
key material, for a short time.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.timestamps import UTCDateTime, utcnow

__all__ = [
    "NAMING_CONVENTION",
    "Agent",
    "AgentNotification",
    "AuditEvent",
    "Conversation",
    "HandoffLink",
    "KeyRecord",
    "LimitBucket",
    "LimitCount",
    "LimitHit",
    "MiniAppInitData",
    "OutboxItem",
    "OutboxPurpose",
    "ProcessedUpdate",
    "Reminder",
    "metadata",
]

# Deterministic constraint names so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = SQLModel.metadata
metadata.naming_convention = NAMING_CONVENTION


class OutboxPurpose(StrEnum):
    """Why a sealed key waits in the outbox: which call must be retried with it."""

    VERIFY = "verify"
    CONNECT = "connect"


class Conversation(SQLModel, table=True):
    """One chat's place in the onboarding guide; ``state`` is the pure machine's, opaque to storage."""

    __tablename__ = "conversation"
    # AUTOINCREMENT: never reuse an id, since sealed outbox rows bind to it in their AAD.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_type=BigInteger, unique=True, index=True)
    user_id: int = Field(sa_type=BigInteger)
    username: str | None = Field(default=None, max_length=64)
    language: str = Field(default="en", max_length=16)
    step: str = Field(index=True, max_length=64)
    choices: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    state: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    guide_message_id: int | None = Field(default=None, sa_type=BigInteger)
    workspace_id: str | None = Field(default=None, index=True, max_length=128)
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    step_entered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_outcome: str | None = Field(default=None, max_length=64)


class ProcessedUpdate(SQLModel, table=True):
    """A Telegram ``update_id`` already handled; Telegram redelivers after errors and timeouts."""

    __tablename__ = "processed_update"

    update_id: int = Field(sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    processed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class KeyRecord(SQLModel, table=True):
    """What we may remember about a pasted key: a keyed fingerprint, its last four, the outcome."""

    __tablename__ = "key_record"

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_type=BigInteger, index=True)
    user_id: int = Field(sa_type=BigInteger)
    workspace_id: str | None = Field(default=None, index=True, max_length=128)
    fingerprint: str = Field(index=True, max_length=64)  # hex HMAC-SHA256, never the key
    last_four: str = Field(max_length=4)
    family: str = Field(max_length=32)
    outcome: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    connected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    disconnected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Random, set when the record is written as "connecting" before DoubleTick is called; the connect
    # request's Idempotency-Key is derived from it (ids can be reused after a delete on SQLite, this never).
    connect_request: str | None = Field(default=None, max_length=64)


class LimitBucket(SQLModel, table=True):
    """One abuse-limit counter (``keys:user:<id>``, ``keys:all``): its row is locked while a hit is counted.

    Why a row: replicas share only the database, so "at most N" is decided in one transaction that holds
    this row (an upsert that locks it on PostgreSQL; SQLite's single writer lock) while it counts the
    bucket's hits and adds one.
    """

    __tablename__ = "limit_bucket"

    name: str = Field(primary_key=True, max_length=96)


class LimitCount(SQLModel, table=True):
    """How many hits a bucket took in one second (``second``: whole Unix seconds, hits rounded up).

    Why per second and not a row per hit: a busy bucket (``keys:all`` at 500 pastes/s) held 30,000 hit rows
    to count under its lock on every paste; per-second rows make that at most ``period`` rows, and adding
    a hit is one upsert.
    """

    __tablename__ = "limit_count"

    bucket: str = Field(primary_key=True, max_length=96)
    second: int = Field(primary_key=True, sa_type=BigInteger)
    hits: int = Field(default=0)


class LimitHit(SQLModel, table=True):
    """Retired (release 0007 counts in :class:`LimitCount`): kept one release so that replicas of the
    previous release still find it during a rolling update; the next migration drops it."""

    __tablename__ = "limit_hit"
    __table_args__ = (Index("ix_limit_hit_bucket_at", "bucket", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    bucket: str = Field(max_length=96)
    at: datetime = Field(sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    """Something worth answering "what happened?" for later; ``detail`` never holds secrets."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    chat_id: int | None = Field(default=None, sa_type=BigInteger)
    actor_user_id: int | None = Field(default=None, sa_type=BigInteger)
    kind: str = Field(index=True, max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class OutboxItem(SQLModel, table=True):
    """A verify/connect call to retry after a restart, holding the key sealed (AES-GCM) until done.

    Rows are deleted (not marked) on success or expiry, and cascade away with their conversation.
    """

    __tablename__ = "outbox_item"
    __table_args__ = (
        CheckConstraint("purpose IN ('verify', 'connect')", name="purpose"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_type=BigInteger, index=True)
    conversation_id: int = Field(foreign_key="conversation.id", ondelete="CASCADE", index=True)
    purpose: str = Field(max_length=16)
    sealed: bytes = Field(sa_type=LargeBinary)  # nonce + AES-GCM ciphertext; see storage.sealing
    kek_id: str = Field(max_length=64)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lock_owner: str | None = Field(default=None, max_length=128)

    def __repr__(self) -> str:
        # The sealed bytes are ciphertext, but there is no reason to print them either.
        return (
            f"OutboxItem(id={self.id!r}, chat_id={self.chat_id!r}, purpose={self.purpose!r}, "
            f"kek_id={self.kek_id!r}, attempts={self.attempts!r})"
        )


class Agent(SQLModel, table=True):
    """A support agent added by an admin with /add_agent (agents in AGENT_USER_IDS are configuration)."""

    __tablename__ = "agent"

    user_id: int = Field(sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    added_by: int | None = Field(default=None, sa_type=BigInteger)
    added_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    note: str | None = Field(default=None, max_length=128)


class HandoffLink(SQLModel, table=True):
    """A single-use invitation an agent sends a customer: ``t.me/<bot>?start=<token>``.

    Only the SHA-256 ``digest`` of the token is stored: the link cannot be rebuilt from the database.
    The first Telegram user who opens it is bound to it (``redeemed_by_user_id``) and to its workspace.
    """

    __tablename__ = "handoff_link"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(max_length=64, unique=True, index=True)  # hex SHA-256 of the token
    workspace_id: str = Field(max_length=128, index=True)
    workspace_name: str | None = Field(default=None, max_length=128)
    label: str | None = Field(default=None, max_length=128)  # the agent's note about the customer
    created_by: int | None = Field(default=None, sa_type=BigInteger, index=True)  # agent to notify
    created_via: str = Field(max_length=16)  # "bot", "cli" or "api"
    agent_language: str | None = Field(default=None, max_length=16)  # the agent's locale, for notifications
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by: int | None = Field(default=None, sa_type=BigInteger)
    redeemed_by_user_id: int | None = Field(default=None, sa_type=BigInteger, index=True)
    redeemed_chat_id: int | None = Field(default=None, sa_type=BigInteger, index=True)
    redeemed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AgentNotification(SQLModel, table=True):
    """A notification that must be sent at most once (per link, kind and marker, e.g. "stuck" at a step).

    The unique constraint is the "once": whichever replica inserts the row sends the message.
    """

    __tablename__ = "agent_notification"
    __table_args__ = (UniqueConstraint("handoff_link_id", "kind", "marker"), {"sqlite_autoincrement": True})

    id: int | None = Field(default=None, primary_key=True)
    handoff_link_id: int = Field(foreign_key="handoff_link.id", ondelete="CASCADE", index=True)
    kind: str = Field(max_length=32)
    marker: str = Field(default="", max_length=64)
    agent_user_id: int | None = Field(default=None, sa_type=BigInteger)
    sent_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MiniAppInitData(SQLModel, table=True):
    """How often one Mini App ``initData`` submitted a key; shared by the replicas so a replay is counted once.

    Holds the initData's hash (a MAC Telegram computed, not a secret of ours) and nothing about the key.
    """

    __tablename__ = "miniapp_init_data"

    digest: str = Field(max_length=64, primary_key=True)
    uses: int = Field(default=0)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class Reminder(SQLModel, table=True):
    """The one reminder a conversation may get ("come back to the guide"), claimed before it is sent.

    The unique ``conversation_id`` is the "at most once" across replicas: whichever replica inserts the
    row sends the message. ``sent`` is False for a conversation that was due but not eligible (the user
    turned reminders off, or finished): the row keeps it out of later scans. Rows go with their
    conversation (/cancel, retention).
    """

    __tablename__ = "reminder"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", ondelete="CASCADE", unique=True, index=True)
    chat_id: int = Field(sa_type=BigInteger)
    sent: bool = Field(default=True)
    claimed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
