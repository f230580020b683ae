"""Support-agent handoff: agents added by admins, single-use handoff links, once-only notifications.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Plain SQLAlchemy types, as in 0001. A link row holds the SHA-256 digest of its token, never the token.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("added_by", sa.BigInteger(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_agent")),
    )
    op.create_table(
        "handoff_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=128), nullable=False),
        sa.Column("workspace_name", sa.String(length=128), nullable=True),
        sa.Column("label", sa.String(length=128), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("created_via", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.BigInteger(), nullable=True),
        sa.Column("redeemed_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("redeemed_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoff_link")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_handoff_link_digest"), "handoff_link", ["digest"], unique=True)
    op.create_index(op.f("ix_handoff_link_workspace_id"), "handoff_link", ["workspace_id"], unique=False)
    op.create_index(op.f("ix_handoff_link_created_by"), "handoff_link", ["created_by"], unique=False)
    op.create_index(op.f("ix_handoff_link_expires_at"), "handoff_link", ["expires_at"], unique=False)
    op.create_index(
        op.f("ix_handoff_link_redeemed_by_user_id"), "handoff_link", ["redeemed_by_user_id"], unique=False
    )
    op.create_index(op.f("ix_handoff_link_redeemed_chat_id"), "handoff_link", ["redeemed_chat_id"], unique=False)
    op.create_table(
        "agent_notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("handoff_link_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("marker", sa.String(length=64), nullable=False),
        sa.Column("agent_user_id", sa.BigInteger(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["handoff_link_id"],
            ["handoff_link.id"],
            name=op.f("fk_agent_notification_handoff_link_id_handoff_link"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_notification")),
        sa.UniqueConstraint(
            "handoff_link_id", "kind", "marker", name=op.f("uq_agent_notification_handoff_link_id")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_agent_notification_handoff_link_id"), "agent_notification", ["handoff_link_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_agent_notification_handoff_link_id"), table_name="agent_notification")
    op.drop_table("agent_notification")
    for column in ("redeemed_chat_id", "redeemed_by_user_id", "expires_at", "created_by", "workspace_id",
                   "digest"):
        op.drop_index(op.f(f"ix_handoff_link_{column}"), table_name="handoff_link")
    op.drop_table("handoff_link")
    op.drop_table("agent")
