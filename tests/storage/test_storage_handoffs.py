"""Handoff links, agents and once-only notifications, run unchanged on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.repositories import AgentRepository, ConversationRepository, HandoffRepository, KeyRecordRepository
from tests.clock import FakeClock

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
AGENT = 7_000_000_001
CUSTOMER = 7_123_456_789


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def new_link(repo: HandoffRepository, name: str = "t1", *, workspace: str = "ws_demo",
                   hours: float = 72, created_by: int | None = AGENT, workspace_name: str | None = None):
    return await repo.add(digest=digest(name), workspace_id=workspace, expires_at=T0 + timedelta(hours=hours),
                          created_via="bot", created_by=created_by, label="Ana", workspace_name=workspace_name)


class TestLinks:
    async def test_a_link_is_found_by_its_digest_only(self, sessions: Sessions) -> None:
        repo = HandoffRepository(sessions, clock=FakeClock(T0))
        link = await new_link(repo)
        found = await repo.by_digest(digest("t1"))
        assert found is not None and found.id == link.id
        assert (found.workspace_id, found.label, found.created_by, found.created_via) == (
            "ws_demo", "Ana", AGENT, "bot")
        assert found.expires_at == T0 + timedelta(hours=72) and found.created_at == T0
        assert await repo.by_digest(digest("t2")) is None

    @pytest.mark.parametrize("bad", ["t1", "A" * 64, digest("x")[:63], "sk-proj-" + "a" * 56])
    async def test_anything_but_a_hex_digest_is_refused(self, sessions: Sessions, bad: str) -> None:
        with pytest.raises(ValueError, match="digest"):
            await HandoffRepository(sessions).add(digest=bad, workspace_id="w1", expires_at=T0, created_via="cli")

    async def test_the_first_user_is_bound_and_nobody_else(self, sessions: Sessions) -> None:
        repo = HandoffRepository(sessions, clock=FakeClock(T0))
        link = await new_link(repo)
        assert await repo.claim(link.id, user_id=CUSTOMER, chat_id=CUSTOMER)
        assert not await repo.claim(link.id, user_id=CUSTOMER + 1, chat_id=CUSTOMER + 1)
        assert not await repo.claim(link.id, user_id=CUSTOMER, chat_id=CUSTOMER)  # binding happens once
        bound = await repo.get(link.id)
        assert bound is not None
        assert (bound.redeemed_by_user_id, bound.redeemed_chat_id, bound.redeemed_at) == (CUSTOMER, CUSTOMER, T0)

    async def test_concurrent_openings_bind_exactly_one_user(self, sessions: Sessions) -> None:
        repo = HandoffRepository(sessions, clock=FakeClock(T0))
        link = await new_link(repo)
        results = await asyncio.gather(*(repo.claim(link.id, user_id=u, chat_id=u) for u in range(100, 108)))
        assert sum(results) == 1

    async def test_expired_and_revoked_links_cannot_be_claimed(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = HandoffRepository(sessions, clock=clock)
        expiring, revoked = await new_link(repo, "a", hours=1), await new_link(repo, "b")
        assert await repo.revoke(revoked.id, by=AGENT)
        assert not await repo.revoke(revoked.id, by=AGENT)
        clock.advance(hours=1)
        assert not await repo.claim(expiring.id, user_id=CUSTOMER, chat_id=CUSTOMER)
        assert not await repo.claim(revoked.id, user_id=CUSTOMER, chat_id=CUSTOMER)
        stored = await repo.get(revoked.id)
        assert stored is not None and stored.revoked_at == T0 and stored.revoked_by == AGENT

    async def test_open_links_are_unrevoked_unexpired_and_the_agents_own(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = HandoffRepository(sessions, clock=clock)
        mine = await new_link(repo, "a")
        other = await new_link(repo, "b", created_by=AGENT + 1)
        short = await new_link(repo, "c", hours=1)
        gone = await new_link(repo, "d")
        await repo.revoke(gone.id, by=AGENT)
        clock.advance(hours=2)
        assert [link.id for link in await repo.open_links(AGENT)] == [mine.id]
        assert {link.id for link in await repo.open_links(None)} == {mine.id, other.id}
        assert short.id not in [link.id for link in await repo.open_links(AGENT)]

    async def test_the_newest_link_a_chat_opened_is_its_link(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = HandoffRepository(sessions, clock=clock)
        first, second = await new_link(repo, "a"), await new_link(repo, "b", workspace="ws_other")
        assert await repo.latest_for_chat(CUSTOMER) is None
        await repo.claim(first.id, user_id=CUSTOMER, chat_id=CUSTOMER)
        clock.advance(minutes=5)
        await repo.claim(second.id, user_id=CUSTOMER, chat_id=CUSTOMER, at=clock())
        latest = await repo.latest_for_chat(CUSTOMER)
        assert latest is not None and latest.id == second.id

    async def test_a_workspace_name_given_once_is_remembered(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = HandoffRepository(sessions, clock=clock)
        assert await repo.known_workspace_name("ws_demo") is None
        await new_link(repo, "a", workspace_name="Demo Workspace")
        clock.advance(minutes=1)
        await new_link(repo, "b")
        assert await repo.known_workspace_name("ws_demo") == "Demo Workspace"
        assert [link.workspace_id for link in await repo.for_workspace("ws_demo")] == ["ws_demo", "ws_demo"]


class TestNotificationsOnce:
    async def test_a_notification_is_claimed_once_per_kind_and_marker(self, sessions: Sessions) -> None:
        repo = HandoffRepository(sessions, clock=FakeClock(T0))
        link = await new_link(repo)
        assert await repo.record_notification(link.id, "stuck", "name_key", agent_user_id=AGENT)
        assert not await repo.record_notification(link.id, "stuck", "name_key", agent_user_id=AGENT)
        assert await repo.record_notification(link.id, "stuck", "copy_key")
        assert await repo.record_notification(link.id, "reused", "42")

    async def test_concurrent_replicas_claim_a_notification_once(self, sessions: Sessions) -> None:
        repo = HandoffRepository(sessions, clock=FakeClock(T0))
        link = await new_link(repo)
        results = await asyncio.gather(*(repo.record_notification(link.id, "stuck", "welcome") for _ in range(6)))
        assert sum(results) == 1


class TestStuck:
    """Stuck detection reads the database with a controllable clock: no sleeping."""

    async def _customer_at(self, sessions: Sessions, clock: FakeClock, step: str, *, workspace: str = "ws_demo",
                           chat_id: int = CUSTOMER):
        conversations = ConversationRepository(sessions, clock=clock)
        row = await conversations.create(chat_id=chat_id, user_id=chat_id, step="welcome", workspace_id=workspace,
                                         state={"step": "welcome", "workspace_id": workspace})
        if step != "welcome":
            row.step, row.state = step, {"step": step, "workspace_id": workspace}
            assert await conversations.save(row, row.version)
        return conversations, row

    async def test_a_customer_idle_at_a_step_is_reported_once_per_step(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = HandoffRepository(sessions, clock=clock)
        link = await new_link(repo)
        await repo.claim(link.id, user_id=CUSTOMER, chat_id=CUSTOMER)
        conversations, row = await self._customer_at(sessions, clock, "name_key")
        clock.advance(minutes=29)
        assert await repo.stuck(idle_since=clock() - timedelta(minutes=30), settled_steps={"connected"}) == []
        clock.advance(minutes=2)
        found = await repo.stuck(idle_since=clock() - timedelta(minutes=30), settled_steps={"connected"})
        assert [(f_link.id, conv.step) for f_link, conv in found] == [(link.id, "name_key")]
        assert await repo.record_notification(link.id, "stuck", "name_key")
        clock.advance(hours=5)
        assert await repo.stuck(idle_since=clock() - timedelta(minutes=30), settled_steps={"connected"}) == []
        # progress to the next step: a new chance to be stuck there
        row.step, row.state = "choose_project", {"step": "choose_project", "workspace_id": "ws_demo"}
        assert await conversations.save(row, row.version)
        clock.advance(minutes=31)
        found = await repo.stuck(idle_since=clock() - timedelta(minutes=30), settled_steps={"connected"})
        assert [conv.step for _, conv in found] == ["choose_project"]

    async def test_connected_customers_and_links_nobody_follows_are_never_stuck(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = HandoffRepository(sessions, clock=clock)
        anonymous = await new_link(repo, "a", created_by=None)
        await repo.claim(anonymous.id, user_id=CUSTOMER, chat_id=CUSTOMER)
        await self._customer_at(sessions, clock, "name_key")
        done = await new_link(repo, "b", workspace="ws_done")
        await repo.claim(done.id, user_id=CUSTOMER + 1, chat_id=CUSTOMER + 1)
        await self._customer_at(sessions, clock, "connected", workspace="ws_done", chat_id=CUSTOMER + 1)
        clock.advance(hours=2)
        assert await repo.stuck(idle_since=clock() - timedelta(minutes=30), settled_steps={"connected"}) == []

    async def test_only_the_newest_link_and_its_workspace_count(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = HandoffRepository(sessions, clock=clock)
        old, new = await new_link(repo, "a", workspace="ws_old"), await new_link(repo, "b", workspace="ws_new")
        await repo.claim(old.id, user_id=CUSTOMER, chat_id=CUSTOMER)
        clock.advance(minutes=1)
        await repo.claim(new.id, user_id=CUSTOMER, chat_id=CUSTOMER, at=clock())
        await self._customer_at(sessions, clock, "copy_key", workspace="ws_new")
        clock.advance(hours=1)
        found = await repo.stuck(idle_since=clock() - timedelta(minutes=30), settled_steps={"connected"})
        assert [f_link.id for f_link, _ in found] == [new.id]
        await repo.revoke(new.id, by=AGENT)
        assert await repo.stuck(idle_since=clock() - timedelta(minutes=30), settled_steps={"connected"}) == []


class TestStatusReads:
    async def test_the_workspace_connection_is_its_connected_key(self, sessions: Sessions) -> None:
        repo, keys = HandoffRepository(sessions), KeyRecordRepository(sessions, clock=FakeClock(T0))
        assert await repo.workspace_connection("ws_demo") is None
        await keys.add(chat_id=CUSTOMER, user_id=CUSTOMER, fingerprint=digest("k1"), last_four="abcd",
                       family="project", outcome="connected", workspace_id="ws_demo", connected_at=T0)
        await keys.add(chat_id=CUSTOMER, user_id=CUSTOMER, fingerprint=digest("k2"), last_four="zzzz",
                       family="project", outcome="invalid", workspace_id="ws_demo")
        found = await repo.workspace_connection("ws_demo")
        assert found is not None and found.last_four == "abcd"
        latest = await repo.latest_key_of_chat(CUSTOMER)
        assert latest is not None and latest.last_four in ("abcd", "zzzz")
        await keys.mark_disconnected(CUSTOMER)
        assert await repo.workspace_connection("ws_demo") is None

    async def test_usernames_are_found_case_insensitively(self, sessions: Sessions) -> None:
        await ConversationRepository(sessions).create(chat_id=5, user_id=5, step="welcome", username="AnaAcme")
        repo = HandoffRepository(sessions)
        assert [c.chat_id for c in await repo.conversations_of_username("anaacme")] == [5]
        assert await repo.conversations_of_username("nobody") == []


    async def test_what_agent_pages_read_all_links_many_chats_and_a_long_workspace_by_its_start(
            self, sessions: Sessions) -> None:
        repo = HandoffRepository(sessions, clock=FakeClock(T0))
        for n in range(60):
            await new_link(repo, f"many{n}")
        assert len(await repo.open_links(AGENT)) == 50  # the old default
        assert len(await repo.open_links(AGENT, limit=None)) == 60  # /links pages them all
        conversations = ConversationRepository(sessions)
        long_a, long_b = "ws_" + "a" * 55 + "_one", "ws_" + "a" * 55 + "_two"
        await conversations.create(chat_id=11, user_id=11, step="welcome", workspace_id=long_a)
        await conversations.create(chat_id=12, user_id=12, step="welcome", username="bo")
        await new_link(repo, "long", workspace=long_b)
        assert await repo.workspace_ids_starting("ws_" + "a" * 50) == [long_a, long_b]
        assert await repo.workspace_ids_starting("ws_" + "a" * 55 + "_t") == [long_b]
        assert await repo.workspace_ids_starting("ws_b") == []
        found = await repo.conversations_of_chats([11, 12, 13, 11])
        assert sorted(found) == [11, 12] and found[12].username == "bo"
        assert await repo.conversations_of_chats([]) == {}


class TestAgents:
    async def test_agents_are_added_once_listed_and_removed(self, sessions: Sessions) -> None:
        repo = AgentRepository(sessions, clock=FakeClock(T0))
        assert await repo.add(AGENT, added_by=1, note="night shift")
        assert not await repo.add(AGENT, added_by=2)
        assert await repo.add(AGENT + 1)
        stored = await repo.get(AGENT)
        assert stored is not None and (stored.added_by, stored.note, stored.added_at) == (1, "night shift", T0)
        assert [a.user_id for a in await repo.all()] == [AGENT, AGENT + 1]
        assert await repo.remove(AGENT)
        assert not await repo.remove(AGENT)
        assert [a.user_id for a in await repo.all()] == [AGENT + 1]
