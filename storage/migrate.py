"""Run the Alembic migrations from code: at start-up, from the CLI, and in tests.

Why in code: the bot ships as a package, so there is no alembic.ini next to it at run time; the config is
built here with ``script_location`` pointing into the package. On PostgreSQL the run holds a session
advisory lock, so several replicas starting at once migrate one after another instead of racing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import create_engine, is_postgres, normalise_database_url

__all__ = [
    "MIGRATIONS_DIR",
    "MIGRATION_LOCK_ID",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_current",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works as long as nothing else in the database uses it: "DTOB" + "migr" in ASCII.
MIGRATION_LOCK_ID = 0x44544F42_6D696772


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for this package's migrations (``url`` only for CLI-style use)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates '%', which percent-encoded passwords contain.
        config.set_main_option("sqlalchemy.url", normalise_database_url(url).replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision this code ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _run_locked(url: str, action: Callable[[Config], None]) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            locked = is_postgres(engine)
            if locked:
                await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_ID})
                await connection.commit()
            try:
                await connection.run_sync(_with_connection, action)
                await connection.commit()
            finally:
                if locked:
                    await _unlock(connection)
    finally:
        await engine.dispose()


async def _unlock(connection: AsyncConnection) -> None:
    if connection.in_transaction():
        await connection.rollback()
    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_ID})
    await connection.commit()


def _with_connection(connection: Connection, action: Callable[[Config], None]) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    action(config)


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (default: the newest)."""
    await _run_locked(url, lambda config: command.upgrade(config, revision))


async def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops every table)."""
    await _run_locked(url, lambda config: command.downgrade(config, revision))


def _current_heads(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


async def _heads_in_database(url: str) -> tuple[str, ...]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current_heads)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None if it was never migrated."""
    heads = await _heads_in_database(url)
    if len(heads) > 1:
        raise RuntimeError(f"the database has several migration heads: {', '.join(sorted(heads))}")
    return heads[0] if heads else None


async def is_current(url: str) -> bool:
    """True when the database is at this code's head revision (for a readiness probe)."""
    heads = await _heads_in_database(url)
    expected = ScriptDirectory.from_config(alembic_config()).get_heads()
    return set(heads) == set(expected)
