"""Migrations: they build the schema the models describe, go down and up again, and hold no secrets."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage import migrate
from storage.db import create_engine
from storage.models import metadata

TABLES = {"conversation", "processed_update", "key_record", "audit_event", "outbox_item",
          "agent", "handoff_link", "agent_notification", "miniapp_init_data",
          "reminder", "limit_bucket", "limit_count", "limit_hit"}

# Column names that would suggest a place for a key, token, password or ciphertext.
SECRET_HOLDER = re.compile(
    r"(^|_)(key|api_?key|secret|token|password|passwd|pass|credential|plaintext|sealed|cipher|ciphertext"
    r"|private|auth)(_|$)",
    re.IGNORECASE,
)
ALLOWED_SECRET_HOLDERS = {("outbox_item", "sealed")}


async def _inspect(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(fn)
    finally:
        await engine.dispose()


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _columns(connection: Connection) -> list[tuple[str, str]]:
    inspector = inspect(connection)
    return [
        (table, column["name"])
        for table in inspector.get_table_names()
        for column in inspector.get_columns(table)
    ]


async def test_a_fresh_database_is_not_current(database_url: str) -> None:
    assert await migrate.current_revision(database_url) is None
    assert await migrate.is_current(database_url) is False


async def test_upgrade_builds_every_table_and_is_current(database_url: str) -> None:
    await migrate.upgrade(database_url)
    assert await migrate.current_revision(database_url) == migrate.head_revision() == "0007_limit_counts"
    assert await migrate.is_current(database_url) is True
    assert _tables_without_alembic(await _inspect(database_url, _tables)) == TABLES


async def test_upgrade_is_idempotent(database_url: str) -> None:
    await migrate.upgrade(database_url)
    await migrate.upgrade(database_url)
    assert await migrate.is_current(database_url) is True


async def test_upgrade_downgrade_upgrade_round_trips(database_url: str) -> None:
    await migrate.upgrade(database_url)
    await migrate.downgrade(database_url, "base")
    assert await migrate.current_revision(database_url) is None
    assert _tables_without_alembic(await _inspect(database_url, _tables)) == set()
    await migrate.upgrade(database_url)
    assert await migrate.is_current(database_url) is True
    assert await _inspect(database_url, _drift) == []


async def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    await migrate.upgrade(database_url)
    assert await _inspect(database_url, _drift) == []


async def test_no_column_is_named_like_a_secret_holder_except_outbox_sealed(database_url: str) -> None:
    await migrate.upgrade(database_url)
    columns = await _inspect(database_url, _columns)
    assert ("outbox_item", "sealed") in columns
    suspicious = {(t, c) for t, c in columns if SECRET_HOLDER.search(c)} - ALLOWED_SECRET_HOLDERS
    assert suspicious == set()
    declared = {(table.name, column.name) for table in metadata.sorted_tables for column in table.columns}
    assert {(t, c) for t, c in declared if SECRET_HOLDER.search(c)} == ALLOWED_SECRET_HOLDERS


@pytest.mark.parametrize(
    "name", ["api_key", "openai_key", "key", "token", "bot_token", "secret", "password", "key_plaintext"]
)
def test_the_secret_holder_pattern_catches_obvious_names(name: str) -> None:
    assert SECRET_HOLDER.search(name)


@pytest.mark.parametrize("name", ["fingerprint", "last_four", "kek_id", "family", "chat_id", "keyboard_id"])
def test_the_secret_holder_pattern_spares_innocent_names(name: str) -> None:
    assert not SECRET_HOLDER.search(name)


async def test_replicas_migrating_at_once_are_serialised(backend: str, database_url: str) -> None:
    if backend != "postgres":
        pytest.skip("concurrent start-up is serialised with a PostgreSQL advisory lock")
    await asyncio.gather(*(migrate.upgrade(database_url) for _ in range(4)))
    assert await migrate.is_current(database_url) is True
    assert await _inspect(database_url, _drift) == []


def test_the_alembic_config_is_built_in_code() -> None:
    config = migrate.alembic_config()
    assert config.config_file_name is None
    assert config.get_main_option("script_location") == str(migrate.MIGRATIONS_DIR)
    assert (migrate.MIGRATIONS_DIR / "env.py").is_file()


def _tables_without_alembic(tables: set[str]) -> set[str]:
    return tables - {"alembic_version"}
