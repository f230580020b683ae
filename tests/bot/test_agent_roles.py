"""Roles (configured, added by an admin), command menus per role, and the agent texts being complete."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.agents.roles import ADMIN_COMMANDS, AGENT_COMMANDS, AgentDirectory, CommandMenus, RemoveOutcome, Role
from flows.content import load_content
from storage.repositories import AgentRepository

Sessions = async_sessionmaker[AsyncSession]
ROOT = Path(__file__).resolve().parents[2]


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_roles_come_from_configuration_and_from_admins(sessions: Sessions) -> None:
    directory = AgentDirectory(AgentRepository(sessions), agents=[10], admins=[20])
    assert [await directory.role_of(u) for u in (10, 20, 30)] == [Role.AGENT, Role.ADMIN, Role.CUSTOMER]
    assert await directory.add(30, by=20, note="new")
    assert not await directory.add(30, by=20)
    assert not await directory.add(10, by=20)  # configured already
    assert await directory.role_of(30) == Role.AGENT
    assert await directory.remove(10) == RemoveOutcome.CONFIGURED
    assert await directory.remove(30) == RemoveOutcome.REMOVED
    assert await directory.remove(30) == RemoveOutcome.UNKNOWN
    assert await directory.role_of(30) == Role.CUSTOMER


async def test_another_replicas_additions_are_seen_after_the_refresh_interval(sessions: Sessions) -> None:
    ticks = Ticks()
    here = AgentDirectory(AgentRepository(sessions), refresh_s=30, monotonic=ticks)
    there = AgentDirectory(AgentRepository(sessions), refresh_s=30, monotonic=ticks)
    assert await here.role_of(7) == Role.CUSTOMER
    await there.add(7, by=1)
    assert await here.role_of(7) == Role.CUSTOMER  # cached: no query per update
    ticks.now += 30
    assert await here.role_of(7) == Role.AGENT


async def test_the_listing_shows_configured_and_added_agents(sessions: Sessions) -> None:
    directory = AgentDirectory(AgentRepository(sessions), agents=[10], admins=[20])
    await directory.add(30, by=20)
    entries = await directory.entries()
    assert [(e.user_id, e.role, e.configured, e.added_by) for e in entries] == [
        (10, Role.AGENT, True, None), (20, Role.ADMIN, True, None), (30, Role.AGENT, False, 20)]


def test_menus_add_agent_and_admin_commands_to_the_customers_ones() -> None:
    menus = CommandMenus(load_content())
    names = {role: {c.command for c in menus.commands_for(role)} for role in Role}
    customer = set(load_content().commands())
    assert names[Role.CUSTOMER] == customer
    assert names[Role.AGENT] == customer | set(AGENT_COMMANDS)
    assert names[Role.ADMIN] == customer | set(AGENT_COMMANDS) | set(ADMIN_COMMANDS)
    assert all(len(c.description) <= 256 for c in menus.commands_for(Role.ADMIN))


def test_every_agent_text_the_code_asks_for_exists() -> None:
    agent = load_content().data["agent"]
    sources = "\n".join(p.read_text() for p in (ROOT / "bot").rglob("*.py"))
    asked = set(re.findall(r'(?:agent_text\([^,]+,|_text\()\s*"([a-z_]+)"', sources))
    asked |= {f"notify_{kind}" for kind in ("connected", "connected_manually", "already_connected", "failed",
                                            "stuck", "opened", "reused")}
    asked |= {"state_waiting", "state_opened", "revoke_done", "revoke_not_found", "remove_agent_done",
              "remove_agent_configured", "remove_agent_unknown", "add_agent_done", "add_agent_exists"}
    assert len(asked) > 30
    assert sorted(asked - set(agent)) == []
    assert all(str(text).strip() for text in agent.values())
