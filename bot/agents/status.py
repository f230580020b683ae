"""What an agent may see about a customer's progress: step, last outcome, timestamps, link state.

Why a separate module: ``/status`` in the bot and ``GET /api/handoffs/{id}`` answer the same question.
Key material is limited by construction: the only key fields read are the family, the last four
characters and a 12-character prefix of the keyed fingerprint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.agents.links import LinkState, digest_of, token_from
from bot.agents.notifications import Customer, agent_text
from flows.content import Content
from flows.machine import WORKSPACE_ID
from flows.state import Conversation
from flows.steps import Step
from storage.fingerprint import fingerprint_prefix
from storage.models import Conversation as ConversationRow
from storage.models import HandoffLink, KeyRecord
from storage.repositories import HandoffRepository
from storage.timestamps import utcnow

__all__ = ["CustomerStatus", "StatusDesk", "StatusReport", "StatusScope", "when"]


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


@dataclass(frozen=True, slots=True)
class CustomerStatus:
    row: ConversationRow
    link: HandoffLink | None
    key: KeyRecord | None

    @property
    def step(self) -> Step:
        return Conversation.from_record(self.row.state).step if self.row.state else Step(self.row.step)

    def as_json(self) -> dict[str, Any]:
        key = None
        if self.key is not None:
            key = {"family": self.key.family, "last_four": self.key.last_four,
                   "fingerprint_prefix": fingerprint_prefix(self.key.fingerprint), "outcome": self.key.outcome,
                   "connected": self.key.connected_at is not None and self.key.disconnected_at is None}
        return {"user_id": self.row.user_id, "username": self.row.username, "step": self.step.value,
                "last_outcome": self.row.last_outcome, "workspace_id": self.row.workspace_id,
                "step_since": self.row.step_entered_at.isoformat(), "updated_at": self.row.updated_at.isoformat(),
                "created_at": self.row.created_at.isoformat(), "key": key}


@dataclass(frozen=True, slots=True)
class StatusReport:
    query: str
    workspace_id: str | None = None
    connection: KeyRecord | None = None
    links: list[HandoffLink] = field(default_factory=list)
    customers: list[CustomerStatus] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.customers and not self.links and self.connection is None


@dataclass(frozen=True, slots=True)
class StatusScope:
    """Whose customers a lookup may show: an agent sees those who opened one of their links; admins all."""

    agent_id: int | None = None  # None: everything (admins, the bearer-token API)

    def sees_link(self, link: HandoffLink | None) -> bool:
        return self.agent_id is None or (link is not None and link.created_by == self.agent_id)


EVERYTHING = StatusScope()
LINK_NUMBER = re.compile(r"#[0-9]{1,9}")  # /status #12: the number /links shows


class StatusDesk:
    def __init__(self, links: HandoffRepository, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.links = links
        self.clock = clock

    async def _customer(self, row: ConversationRow) -> CustomerStatus:
        return CustomerStatus(row, await self.links.latest_for_chat(row.chat_id),
                              await self.links.latest_key_of_chat(row.chat_id))

    async def for_link(self, link: HandoffLink) -> StatusReport:
        customers = []
        if link.redeemed_chat_id is not None:
            row = await self.links.conversation_of_chat(link.redeemed_chat_id)
            if row is not None:
                customers.append(await self._customer(row))
        return StatusReport(f"#{link.id}", link.workspace_id, await self.links.workspace_connection(link.workspace_id),
                            [link], customers)

    async def _customers(self, rows: list[ConversationRow], scope: StatusScope) -> list[CustomerStatus]:
        customers = [await self._customer(row) for row in rows]
        return [c for c in customers if scope.sees_link(c.link)]

    async def lookup(self, query: str, scope: StatusScope = EVERYTHING) -> StatusReport:
        """By link (its token, or ``#number``), by ``@username`` or by workspace id; only what ``scope`` may see."""
        query = query.strip()
        if LINK_NUMBER.fullmatch(query):
            numbered = await self.links.get(int(query[1:]))
            return await self.for_link(numbered) if numbered and scope.sees_link(numbered) else StatusReport(query)
        token = token_from(query)
        if token is not None:
            link = await self.links.by_digest(digest_of(token))
            if link is not None:
                return await self.for_link(link) if scope.sees_link(link) else StatusReport(query)
        if query.startswith("@") and len(query) > 1:
            rows = await self.links.conversations_of_username(query[1:])
            return StatusReport(query, customers=await self._customers(rows, scope))
        if WORKSPACE_ID.fullmatch(query):
            links = [link for link in await self.links.for_workspace(query, limit=20) if scope.sees_link(link)][:5]
            if scope.agent_id is not None and not links:
                return StatusReport(query)  # not one of this agent's workspaces: nothing, not even the connection
            rows = await self.links.conversations_in_workspace(query)
            return StatusReport(query, query, await self.links.workspace_connection(query), links,
                                await self._customers(rows, scope))
        return StatusReport(query)

    def render(self, report: StatusReport, content: Content) -> str:
        """Telegram HTML for an agent, all on one page (the bot pages it with ``render_parts``)."""
        if report.empty:
            return agent_text(content, "status_none", query=report.query)
        head, entries = self.render_parts(report, content)
        return "\n\n".join(part for part in (head, *entries) if part)

    def render_parts(self, report: StatusReport, content: Content) -> tuple[str, list[str]]:
        """The workspace line (repeated on every page; empty without a workspace) and one entry per link
        and customer (what pages split)."""
        head = ""
        if report.workspace_id is not None:
            connection = agent_text(content, "status_not_connected")
            if report.connection is not None:
                key = report.connection
                connection = agent_text(content, "status_connected", family=self._family(content, key.family),
                                        last_four=key.last_four, fingerprint=fingerprint_prefix(key.fingerprint),
                                        since=when(key.connected_at))
            head = agent_text(content, "status_workspace", workspace=report.workspace_id,
                              safe={"connection": connection})
        parts: list[str] = []
        now = self.clock()
        for link in report.links:
            label = f" · {link.label}" if link.label else None
            parts.append(agent_text(content, "status_link", id=link.id, label=label,
                                    state=self._link_state(content, LinkState.of(link, now)),
                                    created=when(link.created_at),
                                    expires=when(link.expires_at)))
        for customer in report.customers:
            parts.append(self._render_customer(customer, content))
        return head, parts

    @staticmethod
    def _link_state(content: Content, state: LinkState) -> str:
        return str(content.data.get("agent_link_states", {}).get(state.value, state.value))

    @staticmethod
    def _family(content: Content, family: str) -> str:
        return str(content.data.get("agent_families", {}).get(family, family))

    def _render_customer(self, customer: CustomerStatus, content: Content) -> str:
        row = customer.row
        try:
            step = content.step(customer.step)["title"]
        except KeyError:
            step = row.step
        key_text = agent_text(content, "no_key")
        if customer.key is not None:
            key_text = agent_text(content, "key_summary", family=self._family(content, customer.key.family),
                                  last_four=customer.key.last_four,
                                  fingerprint=fingerprint_prefix(customer.key.fingerprint),
                                  outcome=customer.key.outcome)
        link = customer.link
        workspace = row.workspace_id or "-"
        if link is not None and link.workspace_id == row.workspace_id and link.workspace_name:
            workspace = f"{link.workspace_name} ({row.workspace_id})"
        return agent_text(content, "status_customer", workspace=workspace, step=step,
                          since=when(row.step_entered_at), updated=when(row.updated_at),
                          outcome=row.last_outcome or agent_text(content, "no_outcome"),
                          safe={"customer": Customer(row.user_id, row.username).describe(content), "key": key_text})
