"""Exactness under load: the connecting key record's request id, and abuse limits counted in the database.

Revision ID: 0005_exactness
Revises: 0004_reminders
Create Date: 2026-12-02

``key_record.connect_request``: a random id written with the ``connecting`` record before DoubleTick is
called; the connect request's Idempotency-Key derives from it, so a retry after a crash replays.
``limit_bucket`` / ``limit_hit``: the moving-window abuse limits shared by every replica.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_exactness"
down_revision: str | Sequence[str] | None = "0004_reminders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("key_record") as batch:
        batch.add_column(sa.Column("connect_request", sa.String(length=64), nullable=True))
    op.create_table(
        "limit_bucket",
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_limit_bucket")),
    )
    op.create_table(
        "limit_hit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=96), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_limit_hit")),
    )
    op.create_index("ix_limit_hit_bucket_at", "limit_hit", ["bucket", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_limit_hit_bucket_at", table_name="limit_hit")
    op.drop_table("limit_hit")
    op.drop_table("limit_bucket")
    with op.batch_alter_table("key_record") as batch:
        batch.drop_column("connect_request")
