"""Tell the agent who made a link how their customer is getting on: opened, finished, failed, stuck.

Why from transitions, not from the machine: notifications are about the agent, not the customer's
conversation, so the pure machine stays unaware of them. The runtime hands every saved step change to
:meth:`AgentNotifier.observe`; a pure :func:`milestone` decides in memory whether it matters, and only
then is the link looked up and a message sent, in a background task (never inside the chat's lock).
Stuck customers are found by :class:`StuckWatch` from the database, so a notification fires once per
step per link, on whichever replica records it first. Messages carry the last four characters of a
key and its family, never more.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bot.core.periodic import PeriodicJob
from bot.core.ports import ChatRef
from flows.content import Content, load_content
from flows.numbers import duration, isolate
from flows.outcomes import ConnectionOutcome, VerificationOutcome
from flows.state import Conversation
from flows.steps import PIPELINE_STEPS, Step
from storage.models import Conversation as ConversationRow
from storage.models import HandoffLink
from storage.repositories import HandoffRepository
from storage.timestamps import utcnow

__all__ = ["FAILURES", "AgentNotifier", "Customer", "Milestone", "StuckWatch", "agent_text", "milestone"]

log = logging.getLogger(__name__)

# Outcomes after which retrying the same key cannot help: worth an agent's attention.
FAILURES = frozenset(
    {o.value for o in VerificationOutcome if o.is_definitive_failure}
    | {ConnectionOutcome.CREDENTIAL_REJECTED.value, ConnectionOutcome.VALIDATION_ERROR.value, "deletion_failed"}
)
SETTLED_STEPS = frozenset({Step.CONNECTED.value})  # nobody is "stuck" once connected


class _Params(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def agent_text(content: Content, key: str, /, *, safe: Mapping[str, str] | None = None, **values: object) -> str:
    """An agent-facing text from the content file's ``[agent]`` table; ``values`` are HTML-escaped,
    ``safe`` ones (HTML built by this function already) are not."""
    template = str(content.data.get("agent", {})[key]).strip()
    filled = {k: isolate(html.escape(str(v)), content.locale) for k, v in values.items() if v is not None}
    return template.format_map(_Params({**filled, **(safe or {})}))


def _table(content: Content, table: str, name: str | None, fallback: str) -> str:
    entries: Mapping[str, object] = content.data.get(table, {})
    return str(entries.get(name or "", entries.get(fallback, name or fallback)))


@dataclass(frozen=True, slots=True)
class Customer:
    user_id: int
    username: str | None = None

    def describe(self, content: Content) -> str:
        name = f"@{self.username}" if self.username else agent_text(content, "unnamed_customer")
        return agent_text(content, "customer", name=name, user_id=self.user_id)


@dataclass(frozen=True, slots=True)
class Milestone:
    kind: str  # "connected", "connected_manually", "already_connected", "failed"
    outcome: str | None = None


def milestone(before: Conversation, after: Conversation) -> Milestone | None:
    """Which step changes an agent hears about (pure, cheap: runs for every saved transition)."""
    if after.step == Step.CONNECTED and before.step != Step.CONNECTED:
        if before.step == Step.VERIFYING:
            return Milestone("already_connected")
        if before.step in (Step.CONNECTING, Step.HELD):
            return Milestone("connected")
        if before.step == Step.DT_PASTE_CONNECT:
            return Milestone("connected_manually")
        return None
    newly_failed = before.step in PIPELINE_STEPS or (after.problem == "deletion_failed"
                                                     and before.problem != "deletion_failed")
    if after.step == Step.KEY_PROBLEM and after.problem in FAILURES and newly_failed:
        return Milestone("failed", after.problem)
    return None


class AgentNotifier:
    """Sends agents their customers' milestones as Telegram messages."""

    def __init__(self, bot: Bot, links: HandoffRepository, *, content: Content | None = None,
                 chosen_language: Callable[[int], Awaitable[str | None]] | None = None) -> None:
        self.bot = bot
        self.links = links
        self.content = content or load_content("en")  # for links that name no language
        # The language an agent chose with /language in their own chat with the bot, if any.
        self.chosen_language = chosen_language
        self._tasks: set[asyncio.Task[None]] = set()

    async def content_for(self, link: HandoffLink) -> Content:
        """The agent's language: their /language choice, else the one they used creating the link."""
        chosen = await self.chosen_language(link.created_by) if self.chosen_language and link.created_by else None
        language = chosen or link.agent_language
        return load_content(language) if language else self.content

    async def send(self, agent_id: int, text: str) -> bool:
        try:
            await self.bot.send_message(agent_id, text, parse_mode=ParseMode.HTML)
        except TelegramError as exc:  # the agent never opened the bot, blocked it, or Telegram is down
            log.warning("notification to agent %s not delivered: %s", agent_id, type(exc).__name__)
            return False
        return True

    def _about(self, link: HandoffLink) -> dict[str, object]:
        label = f" · {link.label}" if link.label else None
        return {"id": link.id, "workspace": link.workspace_name or link.workspace_id, "label": label}

    @staticmethod
    def _family(content: Content, family: str | None) -> str:
        return _table(content, "agent_families", family, "unknown")

    # -- redemption (called by the /start handler) ------------------------------------------------
    async def link_opened(self, link: HandoffLink, customer: Customer) -> None:
        if link.created_by is not None:
            content = await self.content_for(link)
            await self.send(link.created_by, agent_text(content, "notify_opened", **self._about(link),
                                                        safe={"customer": customer.describe(content)}))

    async def link_reused(self, link: HandoffLink, intruder: Customer) -> None:
        """Someone other than the bound customer opened it: tell the agent once per intruder."""
        if link.created_by is None or link.id is None:
            return
        if not await self.links.record_notification(link.id, "reused", str(intruder.user_id),
                                                    agent_user_id=link.created_by):
            return
        bound = Customer(link.redeemed_by_user_id or 0)
        conv = await self.links.conversation_of_chat(link.redeemed_chat_id or 0)
        if conv is not None:
            bound = Customer(conv.user_id, conv.username)
        content = await self.content_for(link)
        await self.send(link.created_by, agent_text(
            content, "notify_reused", **self._about(link),
            safe={"customer": bound.describe(content), "intruder": intruder.describe(content)}))

    # -- the customer's progress (a runtime observer) ---------------------------------------------
    def observe(self, chat: ChatRef, before: Conversation, after: Conversation) -> None:
        """Runtime observer: decide in memory, look up and send in the background."""
        found = milestone(before, after)
        if found is None:
            return
        customer = Customer(chat.user_id, chat.username)
        task = asyncio.ensure_future(self._progress(chat.chat_id, customer, after, found))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _progress(self, chat_id: int, customer: Customer, conv: Conversation, found: Milestone) -> None:
        try:
            link = await self.links.latest_for_chat(chat_id)
            if link is None or link.created_by is None or link.workspace_id != conv.workspace_id:
                return
            content = await self.content_for(link)
            values = {**self._about(link), "family": self._family(content, conv.key_family),
                      "last_four": conv.key_last_four or "????"}
            if found.kind == "failed":
                values["outcome"] = found.outcome
                values["explanation"] = _table(content, "agent_outcomes", found.outcome, "")
            await self.send(link.created_by, agent_text(content, f"notify_{found.kind}", **values,
                                                        safe={"customer": customer.describe(content)}))
        except Exception:
            log.exception("agent notification for chat %s failed", chat_id)

    async def drain(self, timeout: float = 10.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    # -- stuck ------------------------------------------------------------------------------------
    async def stuck(self, link: HandoffLink, row: ConversationRow, minutes: int) -> None:
        conv = Conversation.from_record(row.state) if row.state else Conversation()
        content = await self.content_for(link)
        try:
            step_title = content.step(conv.step)["title"]
        except KeyError:
            step_title = row.step
        outcome = row.last_outcome or conv.problem
        values = {**self._about(link), "step": step_title, "duration": duration(content.locale, minutes, "minute"),
                  "outcome": outcome or content.data["agent"]["no_outcome"]}
        customer = Customer(row.user_id, row.username).describe(content)
        if link.created_by is not None:
            await self.send(link.created_by, agent_text(content, "notify_stuck", **values,
                                                        safe={"customer": customer}))


class StuckWatch(PeriodicJob):
    name = "stuck-customer watch"

    """Periodically finds customers idle at one step for ``stuck_after`` and tells their agent, once per step."""

    def __init__(self, links: HandoffRepository, notifier: AgentNotifier, *, stuck_after: timedelta,
                 interval_s: float = 60.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.links = links
        self.notifier = notifier
        self.stuck_after = stuck_after
        super().__init__(interval_s)
        self.clock = clock

    async def run_once(self) -> int:
        """One pass; returns how many notifications this replica claimed and sent."""
        now = self.clock()
        sent = 0
        for link, row in await self.links.stuck(idle_since=now - self.stuck_after, settled_steps=SETTLED_STEPS):
            assert link.id is not None
            if not await self.links.record_notification(link.id, "stuck", row.step, agent_user_id=link.created_by):
                continue  # another replica got it
            since = max(row.step_entered_at, link.redeemed_at or row.step_entered_at)
            await self.notifier.stuck(link, row, int((now - since).total_seconds() // 60))
            sent += 1
        return sent

