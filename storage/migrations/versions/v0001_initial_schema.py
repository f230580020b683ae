"""Initial schema: conversations, update dedupe, key records, audit events, sealed outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Written with plain SQLAlchemy types (no imports from the app) so the revision stays valid however the
models evolve. Timestamps are ``DateTime(timezone=True)``: ``timestamptz`` on PostgreSQL, UTC text on
SQLite (see storage.timestamps).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_user_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(op.f("ix_audit_event_at"), "audit_event", ["at"], unique=False)
    op.create_index(op.f("ix_audit_event_kind"), "audit_event", ["kind"], unique=False)
    op.create_table(
        "conversation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("guide_message_id", sa.BigInteger(), nullable=True),
        sa.Column("workspace_id", sa.String(length=128), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step_entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_outcome", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_conversation_chat_id"), "conversation", ["chat_id"], unique=True)
    op.create_index(op.f("ix_conversation_step"), "conversation", ["step"], unique=False)
    op.create_index(op.f("ix_conversation_workspace_id"), "conversation", ["workspace_id"], unique=False)
    op.create_table(
        "key_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.String(length=128), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("last_four", sa.String(length=4), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_record")),
    )
    op.create_index(op.f("ix_key_record_chat_id"), "key_record", ["chat_id"], unique=False)
    op.create_index(op.f("ix_key_record_fingerprint"), "key_record", ["fingerprint"], unique=False)
    op.create_index(op.f("ix_key_record_workspace_id"), "key_record", ["workspace_id"], unique=False)
    op.create_table(
        "processed_update",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_processed_update")),
    )
    op.create_index(
        op.f("ix_processed_update_processed_at"), "processed_update", ["processed_at"], unique=False
    )
    op.create_table(
        "outbox_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lock_owner", sa.String(length=128), nullable=True),
        sa.CheckConstraint("purpose IN ('verify', 'connect')", name=op.f("ck_outbox_item_purpose")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_outbox_item_conversation_id_conversation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_item")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_outbox_item_chat_id"), "outbox_item", ["chat_id"], unique=False)
    op.create_index(op.f("ix_outbox_item_conversation_id"), "outbox_item", ["conversation_id"], unique=False)
    op.create_index(op.f("ix_outbox_item_expires_at"), "outbox_item", ["expires_at"], unique=False)
    op.create_index(op.f("ix_outbox_item_next_attempt_at"), "outbox_item", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_item_next_attempt_at"), table_name="outbox_item")
    op.drop_index(op.f("ix_outbox_item_expires_at"), table_name="outbox_item")
    op.drop_index(op.f("ix_outbox_item_conversation_id"), table_name="outbox_item")
    op.drop_index(op.f("ix_outbox_item_chat_id"), table_name="outbox_item")
    op.drop_table("outbox_item")
    op.drop_index(op.f("ix_processed_update_processed_at"), table_name="processed_update")
    op.drop_table("processed_update")
    op.drop_index(op.f("ix_key_record_workspace_id"), table_name="key_record")
    op.drop_index(op.f("ix_key_record_fingerprint"), table_name="key_record")
    op.drop_index(op.f("ix_key_record_chat_id"), table_name="key_record")
    op.drop_table("key_record")
    op.drop_index(op.f("ix_conversation_workspace_id"), table_name="conversation")
    op.drop_index(op.f("ix_conversation_step"), table_name="conversation")
    op.drop_index(op.f("ix_conversation_chat_id"), table_name="conversation")
    op.drop_table("conversation")
    op.drop_index(op.f("ix_audit_event_kind"), table_name="audit_event")
    op.drop_index(op.f("ix_audit_event_at"), table_name="audit_event")
    op.drop_table("audit_event")
