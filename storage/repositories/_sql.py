"""Small SQL helpers shared by the repositories: dialect-specific INSERT ... ON CONFLICT DO NOTHING.

Why: "insert unless it exists" must not be driven by catching IntegrityError (that aborts a PostgreSQL
transaction and reads as an error in logs); both backends have a native clause for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

__all__ = ["dialect_name", "insert_ignoring_conflict", "rowcount"]


def dialect_name(session: AsyncSession) -> str:
    """The dialect (``"sqlite"`` or ``"postgresql"``) the session is bound to."""
    return session.get_bind().dialect.name


def insert_ignoring_conflict(
    session: AsyncSession | str, model: Any, values: Mapping[str, Any], conflict_columns: Sequence[str]
) -> Insert:
    """``INSERT ... ON CONFLICT (conflict_columns) DO NOTHING`` in the session's dialect (or a dialect name,
    for a statement built once)."""
    name = session if isinstance(session, str) else dialect_name(session)
    if name == "postgresql":
        return (
            postgresql.insert(model)
            .values(dict(values))
            .on_conflict_do_nothing(index_elements=list(conflict_columns))
        )
    if name == "sqlite":
        return (
            sqlite.insert(model)
            .values(dict(values))
            .on_conflict_do_nothing(index_elements=list(conflict_columns))
        )
    raise NotImplementedError(f"unsupported database dialect {name!r}")


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (both drivers report it for plain DML)."""
    if not isinstance(result, CursorResult):
        raise TypeError("rowcount() needs the result of an UPDATE or DELETE")
    return int(result.rowcount)
