"""Agent notifications: which transitions matter, and stuck detection driven by a controllable clock.

Messages go through a real PTB ``Bot`` to the Telegram stand-in; the database is real (both backends).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot

from bot.agents.notifications import FAILURES, AgentNotifier, Milestone, StuckWatch, milestone
from bot.core.ports import ChatRef
from bot.standins.server import BackgroundServer
from bot.standins.telegram import FakeTelegram, create_telegram_app
from flows.state import Conversation
from flows.steps import Step
from storage.repositories import ConversationRepository, HandoffRepository
from tests.clock import FakeClock

Sessions = async_sessionmaker[AsyncSession]
TOKEN = "7000000001:AAStandInTokenForLocalSandboxOnly01"
BOT_ID = 7000000001
AGENT, ANA = 4242, 5001
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def telegram() -> Iterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    with BackgroundServer(create_telegram_app(fake)) as running:
        yield fake, running.url


@pytest.fixture
async def bot(telegram: tuple[FakeTelegram, str]) -> AsyncIterator[Bot]:
    fake, url = telegram
    fake.reset()
    fake.send(AGENT, "/start", bot_id=BOT_ID)  # the agent has opened the bot, so it may write to them
    async with Bot(TOKEN, base_url=f"{url}/bot") as real_bot:
        yield real_bot


def agent_texts(telegram: tuple[FakeTelegram, str]) -> list[str]:
    return [m["text"] for m in telegram[0].messages(AGENT, bot_id=BOT_ID) if m["from_bot"]]


async def bound_customer(sessions: Sessions, clock: FakeClock, *, step: str = "welcome",
                         workspace: str = "ws_demo", agent_language: str | None = None):
    links = HandoffRepository(sessions, clock=clock)
    link = await links.add(digest=hashlib.sha256(b"t").hexdigest(), workspace_id=workspace, label="Ana",
                           workspace_name="Demo Workspace", expires_at=T0 + timedelta(days=3), created_via="bot",
                           created_by=AGENT, agent_language=agent_language)
    assert await links.claim(link.id, user_id=ANA, chat_id=ANA)
    conversations = ConversationRepository(sessions, clock=clock)
    row = await conversations.create(chat_id=ANA, user_id=ANA, username="ana", step=step, workspace_id=workspace,
                                     state=Conversation(step=Step(step), workspace_id=workspace).to_record())
    return links, conversations, row


# -- which transitions an agent hears about --------------------------------------------------------------

@pytest.mark.parametrize(("before", "after", "expected"), [
    (Conversation(step=Step.CONNECTING), Conversation(step=Step.CONNECTED, connected=True), Milestone("connected")),
    (Conversation(step=Step.HELD), Conversation(step=Step.CONNECTED, connected=True), Milestone("connected")),
    (Conversation(step=Step.VERIFYING), Conversation(step=Step.CONNECTED), Milestone("already_connected")),
    (Conversation(step=Step.DT_PASTE_CONNECT), Conversation(step=Step.CONNECTED), Milestone("connected_manually")),
    (Conversation(step=Step.VERIFYING), Conversation(step=Step.KEY_PROBLEM, problem="invalid"),
     Milestone("failed", "invalid")),
    (Conversation(step=Step.CONNECTING), Conversation(step=Step.KEY_PROBLEM, problem="validation_error"),
     Milestone("failed", "validation_error")),
    (Conversation(step=Step.PASTE_KEY), Conversation(step=Step.KEY_PROBLEM, problem="deletion_failed"),
     Milestone("failed", "deletion_failed")),
    # not worth a message: retryable outcomes, paste mistakes, ordinary steps, an invitation to a connected workspace
    (Conversation(step=Step.VERIFYING), Conversation(step=Step.KEY_PROBLEM, problem="indeterminate"), None),
    (Conversation(step=Step.VERIFYING), Conversation(step=Step.KEY_PROBLEM, problem="rate_limited"), None),
    (Conversation(step=Step.PASTE_KEY), Conversation(step=Step.KEY_PROBLEM, problem="masked"), None),
    (Conversation(step=Step.NAME_KEY), Conversation(step=Step.CHOOSE_PROJECT), None),
    (Conversation(step=Step.WELCOME), Conversation(step=Step.CONNECTED, connected=True), None),
    (Conversation(step=Step.CONNECTED), Conversation(step=Step.CONNECTED), None),
])
def test_milestones(before: Conversation, after: Conversation, expected: Milestone | None) -> None:
    assert milestone(before, after) == expected


def test_only_definitive_outcomes_count_as_failures() -> None:
    assert {"invalid", "missing_scope", "no_credit", "credential_rejected", "deletion_failed"} <= FAILURES
    assert not {"indeterminate", "rate_limited", "region_blocked", "transient", "valid"} & FAILURES


# -- progress notifications ---------------------------------------------------------------------------

async def test_the_agent_hears_that_their_customer_connected(sessions: Sessions, bot: Bot, telegram) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(T0)
    links, _, _ = await bound_customer(sessions, clock)
    notifier = AgentNotifier(bot, links)
    before = Conversation(step=Step.CONNECTING, workspace_id="ws_demo")
    after = before.with_(step=Step.CONNECTED, connected=True, key_family="service_account", key_last_four="wxyz")
    notifier.observe(ChatRef(ANA, ANA, "ana"), before, after)
    notifier.observe(ChatRef(ANA, ANA, "ana"), before.with_(step=Step.NAME_KEY), before.with_(step=Step.COPY_KEY))
    await notifier.drain()
    assert agent_texts(telegram) == [
        "✅ @ana (id 5001) connected Demo Workspace · Ana: OpenAI service-account key …wxyz."]


async def test_a_failure_names_the_outcome(sessions: Sessions, bot: Bot, telegram) -> None:  # type: ignore[no-untyped-def]
    links, _, _ = await bound_customer(sessions, FakeClock(T0))
    notifier = AgentNotifier(bot, links)
    before = Conversation(step=Step.VERIFYING, workspace_id="ws_demo")
    notifier.observe(ChatRef(ANA, ANA, "ana"), before, before.with_(step=Step.KEY_PROBLEM, problem="no_credit"))
    await notifier.drain()
    [text] = agent_texts(telegram)
    assert "could not connect: no_credit" in text and "no usable credit" in text


async def test_customers_without_an_agents_link_notify_nobody(sessions: Sessions, bot: Bot, telegram) -> None:  # type: ignore[no-untyped-def]
    links, _, _ = await bound_customer(sessions, FakeClock(T0))
    notifier = AgentNotifier(bot, links)
    before = Conversation(step=Step.CONNECTING, workspace_id="ws_demo")
    after = before.with_(step=Step.CONNECTED, connected=True)
    notifier.observe(ChatRef(9999, 9999), before, after)  # opened no link
    notifier.observe(ChatRef(ANA, ANA), before.with_(workspace_id="ws_other"), after.with_(workspace_id="ws_other"))
    await notifier.drain()
    assert agent_texts(telegram) == []


# -- in the agent's language ----------------------------------------------------------------------------

async def test_the_agent_hears_in_the_language_they_created_the_link_in(sessions: Sessions, bot: Bot,  # type: ignore[no-untyped-def]
                                                                        telegram) -> None:
    links, _, _ = await bound_customer(sessions, FakeClock(T0), agent_language="es")
    notifier = AgentNotifier(bot, links)
    before = Conversation(step=Step.CONNECTING, workspace_id="ws_demo")
    notifier.observe(ChatRef(ANA, ANA, "ana"), before, before.with_(step=Step.CONNECTED, connected=True,
                                                                    key_family="project", key_last_four="wxyz"))
    await notifier.drain()
    assert agent_texts(telegram) == [
        "✅ @ana (id 5001) conectó Demo Workspace · Ana: clave de proyecto de OpenAI …wxyz."]


async def test_a_language_chosen_with_slash_language_wins_and_durations_come_from_cldr(  # type: ignore[no-untyped-def]
        sessions: Sessions, bot: Bot, telegram) -> None:
    clock = FakeClock(T0)
    links, _, _ = await bound_customer(sessions, clock, step="name_key", agent_language="es")

    async def chosen(user_id: int) -> str | None:
        return "hi" if user_id == AGENT else None

    watch = StuckWatch(links, AgentNotifier(bot, links, chosen_language=chosen), stuck_after=timedelta(minutes=1),
                       clock=clock)
    clock.advance(minutes=1, seconds=30)
    assert await watch.run_once() == 1
    [text] = agent_texts(telegram)
    assert "1 मिनट से चरण “कुंजी का नाम रखें” पर हैं" in text


# -- stuck detection with a controllable clock ---------------------------------------------------------

async def test_a_stuck_customer_is_reported_once_per_step(sessions: Sessions, bot: Bot, telegram) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(T0)
    links, conversations, row = await bound_customer(sessions, clock, step="name_key")
    watch = StuckWatch(links, AgentNotifier(bot, links), stuck_after=timedelta(minutes=30), clock=clock)
    clock.advance(minutes=29, seconds=59)
    assert await watch.run_once() == 0
    clock.advance(seconds=2)
    assert await watch.run_once() == 1
    assert await watch.run_once() == 0
    clock.advance(hours=3)
    assert await watch.run_once() == 0  # still the same step: once is enough
    row.step, row.state, row.last_outcome = "key_problem", Conversation(
        step=Step.KEY_PROBLEM, problem="invalid", workspace_id="ws_demo").to_record(), "invalid"
    assert await conversations.save(row, row.version)
    clock.advance(minutes=45)
    assert await watch.run_once() == 1
    first, second = agent_texts(telegram)
    assert first == "⏳ @ana (id 5001) (Demo Workspace · Ana) has been at step “Name the key” for 30 minutes. " \
                    "Last outcome: none."
    assert "“That didn't work” for 45 minutes. Last outcome: invalid." in second


async def test_replicas_share_the_stuck_watch_without_double_messages(sessions: Sessions, bot: Bot,  # type: ignore[no-untyped-def]
                                                                     telegram) -> None:
    clock = FakeClock(T0)
    links, _, _ = await bound_customer(sessions, clock, step="copy_key")
    replicas = [StuckWatch(HandoffRepository(sessions, clock=clock), AgentNotifier(bot, links),
                           stuck_after=timedelta(minutes=30), clock=clock) for _ in range(3)]
    clock.advance(hours=1)
    assert sum(await asyncio.gather(*(r.run_once() for r in replicas))) == 1
    assert len(agent_texts(telegram)) == 1


async def test_connected_customers_are_never_stuck(sessions: Sessions, bot: Bot, telegram) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(T0)
    links, _, _ = await bound_customer(sessions, clock, step="connected")
    watch = StuckWatch(links, AgentNotifier(bot, links), stuck_after=timedelta(minutes=30), clock=clock)
    clock.advance(days=2)
    assert await watch.run_once() == 0
    assert agent_texts(telegram) == []
