"""PTB handlers for support agents and admins, and for customers opening an agent's link.

Why registered before the customer handlers (group 0, first match wins): these commands never reach the
customer's state machine as commands. Anyone who is not an agent gets a neutral "I don't know that
command". Every agent and admin action is audited; a redelivered update is recognised and skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from telegram import Update
from telegram.constants import ParseMode
from telegram.error import Forbidden, TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes, TypeHandler, filters

from bot.agents.links import (
    MAX_LABEL,
    HandoffError,
    HandoffService,
    LinkState,
    Redemption,
    RedemptionOutcome,
    token_from,
)
from bot.agents.notifications import AgentNotifier, Customer, agent_text
from bot.agents.roles import ADMIN_COMMANDS, AGENT_COMMANDS, AgentDirectory, CommandMenus, RemoveOutcome, Role
from bot.agents.status import StatusDesk, when
from bot.core.ports import ChatRef
from bot.core.runtime import Runtime
from bot.telegram.handlers import chat_of
from flows import events as ev
from flows.content import Content, load_content
from flows.state import Conversation
from storage.models import HandoffLink
from storage.repositories import AuditLog, ProcessedUpdateRepository

__all__ = ["AgentDesk"]

log = logging.getLogger(__name__)

PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
MENU_GROUP = -2  # before everything else, never stops the update


@dataclass
class AgentDesk:
    directory: AgentDirectory
    menus: CommandMenus
    handoffs: HandoffService
    status: StatusDesk
    notifier: AgentNotifier
    audit: AuditLog
    updates: ProcessedUpdateRepository
    runtime: Runtime
    content: Content = field(default_factory=lambda: load_content("en"))

    def register(self, app: Application) -> None:
        """Call before ``BotHandlers.register``: in group 0 the first matching handler wins."""
        app.add_handler(TypeHandler(Update, self.ensure_menu), group=MENU_GROUP)
        app.add_handler(CommandHandler("start", self.open_link, PRIVATE, has_args=True))
        app.add_handler(CommandHandler([*AGENT_COMMANDS, *ADMIN_COMMANDS], self.command, PRIVATE))

    def _text(self, key: str, /, **values: object) -> str:
        return agent_text(self.content, key, safe=None, **values)

    # -- everyone -------------------------------------------------------------------------------
    async def ensure_menu(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Give an agent their command menu the first time this process sees them."""
        user = update.effective_user
        if user is None or not self.menus.needs_publishing(user.id):
            return
        role = await self.directory.role_of(user.id)
        if role >= Role.AGENT:
            await self.menus.publish(context.bot, user.id, role)

    async def open_link(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start <token>: redeem the link, step the customer's guide, tell the agent."""
        chat = chat_of(update)
        token = context.args[0] if context.args else ""
        if chat is None:
            return
        first: list[Redemption] = []

        async def event(conv: Conversation) -> ev.Event:
            redemption = await self.handoffs.redeem(token, user_id=chat.user_id, chat_id=chat.chat_id)
            first.append(redemption)
            return await self.handoffs.invitation_event(redemption)

        await self.runtime.handle(chat, event, update_id=update.update_id)
        if first:
            # The runtime may build the event again after a concurrent change: the first verdict counts.
            redemption, customer = first[0], Customer(chat.user_id, chat.username)
            if redemption.outcome == RedemptionOutcome.REDEEMED and redemption.link is not None:
                await self.notifier.link_opened(redemption.link, customer)
            elif redemption.outcome == RedemptionOutcome.USED and redemption.link is not None:
                await self.notifier.link_reused(redemption.link, customer)

    # -- agents and admins ------------------------------------------------------------------------
    async def command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Agent and admin commands; a neutral answer for everyone else."""
        user, message = update.effective_user, update.effective_message
        if user is None or message is None or not message.text:
            return
        name = message.text.split()[0][1:].split("@")[0].lower()
        args = list(context.args or [])
        if not await self.updates.claim(update.update_id):
            return  # a redelivery of an update already handled
        role = await self.directory.role_of(user.id)
        needed = Role.ADMIN if name in ADMIN_COMMANDS else Role.AGENT
        if role < needed:
            await self.audit.record("agent.refused", chat_id=message.chat_id, actor_user_id=user.id, command=name)
            await self._reply(context, message.chat_id, self._text("unknown_command"))
            return
        handler = getattr(self, f"_{name}")
        await handler(context, message.chat_id, user.id, role, args)

    async def _reply(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, text: str) -> None:
        """Answer an agent (fitted to Telegram's limits by the rate limiter); a refusal is logged, not raised."""
        try:
            await context.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML)
        except Forbidden:
            log.info("agent chat %s refuses our messages", chat_id)
        except TelegramError as exc:  # flood wait past the limiter's patience, 5xx, timeout: ask again
            log.warning("answer to agent chat %s not delivered: %s", chat_id, type(exc).__name__)

    async def _handoff(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                       args: list[str]) -> None:
        if not args:
            await self._reply(context, chat_id, self._text("handoff_usage"))
            return
        try:
            link = await self.handoffs.create(args[0], via="bot", label=" ".join(args[1:]) or None,
                                              created_by=user_id)
        except HandoffError as exc:
            key = {"bad_label": "bad_label"}.get(exc.reason, "bad_workspace")
            await self._reply(context, chat_id, self._text(key, max=MAX_LABEL))
            return
        caption = self._text("link_created", workspace=link.workspace_name or link.workspace_id,
                             label=f" · {link.label}" if link.label else None, link=link.url, id=link.id,
                             expires=when(link.expires_at))
        await context.bot.send_photo(chat_id, photo=link.qr_png(), caption=caption, parse_mode=ParseMode.HTML)

    async def _links(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                     args: list[str]) -> None:
        await self.audit.record("agent.links", chat_id=chat_id, actor_user_id=user_id)
        links = await self.handoffs.open_links(user_id)
        if not links:
            await self._reply(context, chat_id, self._text("links_none"))
            return
        now = self.handoffs.clock()
        lines = [self._text("links_header")]
        for link in links:
            state = self._text("state_waiting")
            if LinkState.of(link, now) == LinkState.OPENED:
                conv = await self.handoffs.links.conversation_of_chat(link.redeemed_chat_id or 0)
                who = Customer(link.redeemed_by_user_id or 0, conv.username if conv else None)
                state = agent_text(self.content, "state_opened", safe={"customer": who.describe(self.content)})
            lines.append(agent_text(self.content, "link_line", id=link.id,
                                    workspace=link.workspace_name or link.workspace_id,
                                    label=f" · {link.label}" if link.label else None, expires=when(link.expires_at),
                                    safe={"state": state}))
        await self._reply(context, chat_id, "\n".join(lines))

    async def _revoke_link(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                           args: list[str]) -> None:
        raw = args[0].lstrip("#") if args else ""
        if not raw.isdigit():
            await self._reply(context, chat_id, self._text("revoke_usage"))
            return
        revoked = await self.handoffs.revoke(int(raw), by=user_id, any_link=role >= Role.ADMIN)
        await self._reply(context, chat_id, self._text("revoke_done" if revoked else "revoke_not_found", id=raw))
        if revoked is not None and revoked.redeemed_chat_id is not None:
            await self._unbind(revoked)

    async def _unbind(self, link: HandoffLink) -> None:
        """A revoked link that was opened already: its customer loses the binding (unless connected)."""
        assert link.redeemed_chat_id is not None
        latest = await self.handoffs.links.latest_for_chat(link.redeemed_chat_id)
        if latest is None or latest.id != link.id:
            return  # they have opened a newer link since: that one binds them
        customer = ChatRef(link.redeemed_chat_id, link.redeemed_by_user_id or link.redeemed_chat_id)
        await self.runtime.handle(customer, ev.InvitationRefused("revoked", unbind=link.workspace_id))

    async def _status(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                      args: list[str]) -> None:
        if not args:
            await self._reply(context, chat_id, self._text("status_usage"))
            return
        query = " ".join(args)
        kind = "link" if token_from(query) else ("username" if query.startswith("@") else "workspace")
        # Never audit a link's token: only which kind of lookup it was (and the public workspace/username).
        await self.audit.record("agent.status", chat_id=chat_id, actor_user_id=user_id, lookup=kind,
                                query=None if kind == "link" else query[:64])
        report = await self.status.lookup(query)
        await self._reply(context, chat_id, self.status.render(report, self.content))

    async def _add_agent(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                         args: list[str]) -> None:
        if not args or not args[0].lstrip("-").isdigit():
            await self._reply(context, chat_id, self._text("add_agent_usage"))
            return
        agent_id = int(args[0])
        added = await self.directory.add(agent_id, by=user_id, note=" ".join(args[1:]) or None)
        if added:
            await self.audit.record("agent.added", chat_id=chat_id, actor_user_id=user_id, agent_user_id=agent_id)
            await self.menus.publish(context.bot, agent_id, Role.AGENT)
        await self._reply(context, chat_id, self._text("add_agent_done" if added else "add_agent_exists",
                                                       user=agent_id))

    async def _remove_agent(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                            args: list[str]) -> None:
        if not args or not args[0].lstrip("-").isdigit():
            await self._reply(context, chat_id, self._text("remove_agent_usage"))
            return
        agent_id = int(args[0])
        outcome = await self.directory.remove(agent_id)
        if outcome == RemoveOutcome.REMOVED:
            await self.audit.record("agent.removed", chat_id=chat_id, actor_user_id=user_id, agent_user_id=agent_id)
            await self.menus.withdraw(context.bot, agent_id)
        key = {RemoveOutcome.REMOVED: "remove_agent_done", RemoveOutcome.CONFIGURED: "remove_agent_configured",
               RemoveOutcome.UNKNOWN: "remove_agent_unknown"}[outcome]
        await self._reply(context, chat_id, self._text(key, user=agent_id))

    async def _agents(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                      args: list[str]) -> None:
        await self.audit.record("agent.listed", chat_id=chat_id, actor_user_id=user_id)
        lines = [self._text("agents_header")]
        for entry in await self.directory.entries():
            if entry.configured:
                origin = self._text("origin_admin" if entry.role == Role.ADMIN else "origin_configured")
            else:
                origin = self._text("origin_added", by=entry.added_by or "-", on=when(entry.added_at))
            lines.append(agent_text(self.content, "agents_line", user=entry.user_id, safe={"origin": origin}))
        await self._reply(context, chat_id, "\n".join(lines))
