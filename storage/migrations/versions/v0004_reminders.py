"""Reminders: the one "come back to the guide" message a conversation may get, claimed once.

Revision ID: 0004_reminders
Revises: 0003_miniapp
Create Date: 2026-12-02

Plain SQLAlchemy types, as in 0001. The row goes with its conversation (ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_reminders"
down_revision: str | Sequence[str] | None = "0003_miniapp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name=op.f("fk_reminder_conversation_id_conversation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_reminder_conversation_id"), "reminder", ["conversation_id"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_reminder_conversation_id"), table_name="reminder")
    op.drop_table("reminder")
