"""Fill a bot database with stored conversations, fast, through the real schema.

Why bulk inserts instead of users: 100 000 conversations walked through the bot would take longer
than the whole benchmark; the memory figure is about how the bot behaves *with* that many rows, and the
exposure figure needs users already standing at the paste step. Rows are built with the storage model
(so defaults and new columns follow the code) and inserted in batches on a migrated database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert

from flows.state import Conversation
from flows.steps import Step
from storage.db import create_engine
from storage.migrate import upgrade
from storage.models import Conversation as ConversationRow
from storage.timestamps import utcnow

__all__ = ["AT_PASTE_STEP", "migrate", "seed_conversations"]

BATCH = 2000
AT_PASTE_STEP = Step.PASTE_KEY
CHOICES = {"owner": "personal", "project": "default", "permissions": "all"}
# Where a stored conversation stands when only its count matters: spread over the guide.
SPREAD = (Step.WELCOME, Step.OPEN_KEYS_PAGE, Step.CHOOSE_OWNER, Step.NAME_KEY, Step.CHOOSE_PROJECT,
          Step.COPY_KEY, Step.PASTE_KEY, Step.CONNECTED)


async def migrate(database_url: str) -> None:
    await upgrade(database_url)


def _template(step: Step, now: Any) -> dict[str, Any]:
    """One validated row for ``step``; every other row of that step is a cheap copy of it."""
    conv = Conversation(step=step, choices=dict(CHOICES), step_entered_at=time.time(),
                        connected=step == Step.CONNECTED, key_last_four="abcd" if step == Step.CONNECTED else None)
    row = ConversationRow(chat_id=1, user_id=1, step=step.value, choices=dict(CHOICES), state=conv.to_record(),
                          version=1, created_at=now, updated_at=now, step_entered_at=now)
    return row.model_dump(exclude={"id"})


def _row(template: dict[str, Any], chat_id: int, workspace_id: str | None) -> dict[str, Any]:
    return {**template, "chat_id": chat_id, "user_id": chat_id, "workspace_id": workspace_id,
            "state": {**template["state"], "workspace_id": workspace_id}}


async def seed_conversations(database_url: str, chat_ids: Sequence[int], *, step: Step | None = None,
                             workspaces: Sequence[str | None] | None = None) -> float:
    """Insert one conversation per chat id (at ``step``, else spread over the guide); returns seconds taken."""
    started = time.monotonic()
    engine = create_engine(database_url)
    now = utcnow()
    templates = {at: _template(at, now) for at in ((step,) if step is not None else SPREAD)}
    try:
        for offset in range(0, len(chat_ids), BATCH):
            rows = []
            for index in range(offset, min(offset + BATCH, len(chat_ids))):
                at = step if step is not None else SPREAD[index % len(SPREAD)]
                workspace = workspaces[index] if workspaces is not None else None
                rows.append(_row(templates[at], chat_ids[index], workspace))
            async with engine.begin() as connection:
                await connection.execute(insert(ConversationRow.__table__), rows)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
    return time.monotonic() - started
