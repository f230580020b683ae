"""Abuse limits counted per second: ``limit_count`` (bucket, second, hits) replaces a row per hit.

Revision ID: 0007_limit_counts
Revises: 0006_agent_language
Create Date: 2026-12-07

Why: at 500 pastes/s the bot-wide window held 30,000 ``limit_hit`` rows, all counted under the bucket's
lock on every paste, and the pastes queued behind that lock (issue 14). A row per bucket and second keeps
the count to at most the window's length in seconds.

Expand, then contract: ``limit_hit`` stays for one release so that replicas still running the previous
release keep working during a rolling update (their hits are counted apart from the new replicas' for
those minutes); the next migration drops it. Counters are transient, so nothing is copied over.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_limit_counts"
down_revision: str | Sequence[str] | None = "0006_agent_language"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "limit_count",
        sa.Column("bucket", sa.String(length=96), nullable=False),
        sa.Column("second", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "second", name=op.f("pk_limit_count")),
    )


def downgrade() -> None:
    op.drop_table("limit_count")
