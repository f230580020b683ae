"""Mini App key entry: how often each initData submitted (replays refused across replicas).

Revision ID: 0003_miniapp
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_miniapp"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "miniapp_init_data",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_miniapp_init_data")),
    )
    op.create_index(op.f("ix_miniapp_init_data_expires_at"), "miniapp_init_data", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_miniapp_init_data_expires_at"), table_name="miniapp_init_data")
    op.drop_table("miniapp_init_data")
