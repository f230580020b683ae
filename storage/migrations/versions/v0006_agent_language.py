"""Agents hear about their customers in their own language: the agent's locale on each handoff link.

Revision ID: 0006_agent_language
Revises: 0005_exactness
Create Date: 2026-12-02

Notifications go out later, when the agent is not talking to the bot, so the locale the agent used when
creating the link is kept with it (nullable: links created from the CLI or the HTTP API have none).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_agent_language"
down_revision: str | Sequence[str] | None = "0005_exactness"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handoff_link") as batch:
        batch.add_column(sa.Column("agent_language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("handoff_link") as batch:
        batch.drop_column("agent_language")
