"""The audit log refuses key-shaped strings anywhere in an event, and forgets events after the retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.agents.links import HandoffError, HandoffService
from bot.agents.roles import AgentDirectory
from storage.repositories import AgentRepository, AuditLog, HandoffRepository
from tests.clock import FakeClock

Sessions = async_sessionmaker[AsyncSession]
KEY = "sk-proj-" + "Ab3dEf5hIj7lMn9pQr1t" + "T3BlbkFJ" + "Uv2xYz4bCd6fGh8jKl0n"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("detail", [
    {"query": KEY},
    {"query": f"/status {KEY}"},
    {"nested": {"deeper": [1, {"x": "text " + KEY}]}},
    {"nested": {KEY: "value"}},
    {"items": ("a", KEY)},
])
async def test_key_shaped_strings_anywhere_in_the_detail_are_refused(sessions: Sessions,
                                                                      detail: dict[str, Any]) -> None:
    audit = AuditLog(sessions)
    with pytest.raises(ValueError, match="secret key") as refused:
        await audit.record("agent.status", chat_id=1, **detail)
    assert KEY not in str(refused.value) and KEY[8:24] not in str(refused.value)
    assert await audit.recent() == []


async def test_a_key_shaped_kind_is_refused_too(sessions: Sessions) -> None:
    with pytest.raises(ValueError):
        await AuditLog(sessions).record(KEY)


async def test_ordinary_details_are_kept(sessions: Sessions) -> None:
    audit = AuditLog(sessions)
    await audit.record("agent.status", chat_id=1, query="ws_demo", lookup="workspace", user="@ana_acme",
                       at="2026-03-01T09:00:00+00:00", nested={"last_four": "wxyz", "outcome": "valid"})
    assert [e.kind for e in await audit.recent()] == ["agent.status"]


async def test_events_older_than_the_retention_are_purged(sessions: Sessions) -> None:
    clock = FakeClock(T0)
    audit = AuditLog(sessions, clock=clock)
    await audit.record("old")
    clock.advance(days=91)
    await audit.record("new")
    assert await audit.purge_older_than(clock() - timedelta(days=90)) == 1
    assert [e.kind for e in await audit.recent()] == ["new"]


async def test_a_link_label_or_name_holding_a_key_is_never_stored(sessions: Sessions) -> None:
    service = HandoffService(HandoffRepository(sessions), AuditLog(sessions), bot_username="Bot")
    for field in ("label", "workspace_name"):
        with pytest.raises(HandoffError) as refused:
            await service.create("ws_acme", via="bot", **{field: f"Ana {KEY}"})
        assert KEY[8:] not in str(refused.value)
    with pytest.raises(HandoffError, match="workspace_id"):
        await service.create(KEY[:64], via="api")
    assert await service.open_links(None) == []


async def test_an_agent_note_holding_a_key_is_never_stored(sessions: Sessions) -> None:
    repo = AgentRepository(sessions)
    with pytest.raises(ValueError):
        await AgentDirectory(repo).add(5555, by=1, note=KEY)
    assert await repo.all() == []


async def test_the_hourly_housekeeping_purges_old_audit_events(sessions: Sessions) -> None:
    from bot.core.maintenance import Maintenance
    from storage.repositories import ConversationRepository, ProcessedUpdateRepository

    clock = FakeClock(T0)
    audit = AuditLog(sessions, clock=clock)
    await audit.record("agent.status", query="ws_demo")
    clock.advance(days=10)
    await audit.record("agent.links")
    job = Maintenance(ConversationRepository(sessions), ProcessedUpdateRepository(sessions),
                      retention=timedelta(days=5), audit=audit, clock=clock)
    await job.run_once()
    assert [e.kind for e in await audit.recent()] == ["agent.links"]
