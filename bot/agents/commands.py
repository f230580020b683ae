"""PTB handlers for support agents and admins, and for customers opening an agent's link.

Why registered before the customer handlers (group 0, first match wins): these commands never reach the
customer's state machine as commands. Anyone who is not an agent gets a neutral "I don't know that
command". Every agent and admin action is audited; a redelivered update is recognised and skipped.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field

from telegram import Bot, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import Forbidden, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.agents.links import (
    MAX_LABEL,
    HandoffError,
    HandoffService,
    LinkState,
    Redemption,
    RedemptionOutcome,
    deep_link_payload,
    token_from,
)
from bot.agents.notifications import AgentNotifier, Customer, agent_text
from bot.agents.pages import (
    LINKS,
    MAX_PAGE,
    PAGE_PATTERN,
    STATUS,
    PageRequest,
    is_key_of,
    page_buttons,
    parse_page_callback,
    shortened_key,
    split_pages,
)
from bot.agents.roles import ADMIN_COMMANDS, AGENT_COMMANDS, AgentDirectory, CommandMenus, RemoveOutcome, Role
from bot.agents.signed_links import SignedLinkOutcome, looks_signed, proof_time, verify_payload
from bot.agents.status import LINK_NUMBER, StatusDesk, StatusReport, StatusScope, when
from bot.core.ports import ChatRef
from bot.core.runtime import Runtime
from bot.updates import chat_of
from flows import events as ev
from flows.content import Content, load_content
from flows.inspection import might_carry_secret
from flows.numbers import count, number
from flows.state import Conversation
from storage.models import HandoffLink
from storage.repositories import AuditLog, ProcessedUpdateRepository

__all__ = ["AgentDesk"]

log = logging.getLogger(__name__)

PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
MENU_GROUP = -2  # before everything else, never stops the update
Page = tuple[str, InlineKeyboardMarkup | None]  # one page of /links or /status: its text and ◀️/▶️ buttons
SIGNED_REFUSALS = {SignedLinkOutcome.EXPIRED: "signed_expired", SignedLinkOutcome.FORGED: "signed_forged",
                   SignedLinkOutcome.NOT_ENABLED: "signed_disabled"}
# The texts of the agent command being handled, in that agent's language (set per update in ``command``).
_CONTENT: ContextVar[Content | None] = ContextVar("agent_content", default=None)


def carries_secret(text: str) -> bool:
    """Key-shaped text, not counting a signed self-serve payload (``s2``/``s1`` + hex times + tag + workspace).

    A signed payload is a run of 32+ key characters, so the guard may delete the message that carries it
    (harmless: it is a link, not a secret); it must still be redeemed rather than refused as a key.
    """
    words = [w for w in text.split() if not looks_signed(w) and not looks_signed(deep_link_payload(w) or "")]
    return might_carry_secret(" ".join(words))


class _PastedDeepLink(filters.MessageFilter):
    """A text message that is only a ``t.me/<bot>?start=…`` link and carries no key (that is a paste)."""

    def filter(self, message: Message) -> bool:
        text = message.text or ""
        return deep_link_payload(text) is not None and not carries_secret(text)


PASTED_LINK = PRIVATE & filters.TEXT & ~filters.COMMAND & _PastedDeepLink()


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
    link_secret: bytes | None = None  # SELF_SERVE_LINK_SECRET: verifies dashboard links, no database lookup

    def register(self, app: Application) -> None:
        """Call before ``BotHandlers.register``: in group 0 the first matching handler wins."""
        app.add_handler(TypeHandler(Update, self.ensure_menu), group=MENU_GROUP)
        app.add_handler(CommandHandler("start", self.open_link, PRIVATE, has_args=True))
        app.add_handler(MessageHandler(PASTED_LINK, self.open_pasted_link))
        app.add_handler(CommandHandler([*AGENT_COMMANDS, *ADMIN_COMMANDS], self.command, PRIVATE))
        app.add_handler(CallbackQueryHandler(self.page_pressed, pattern=PAGE_PATTERN))  # before the guide's

    @property
    def texts(self) -> Content:
        """The agent's language while one of their commands is handled; the desk's default otherwise."""
        return _CONTENT.get() or self.content

    def _text(self, key: str, /, **values: object) -> str:
        return agent_text(self.texts, key, safe=None, **values)

    # -- everyone -------------------------------------------------------------------------------
    async def ensure_menu(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Give an agent their command menu the first time this process sees them."""
        user = update.effective_user
        if user is None or not self.menus.needs_publishing(user.id):
            return
        role = await self.directory.role_of(user.id)
        if role >= Role.AGENT:
            language = await self.runtime.language_of(ChatRef(user.id, user.id, user.username,
                                                              user.language_code or "en"))
            await self.menus.publish(context.bot, user.id, role, language)

    async def open_link(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start <token>: redeem the link, step the customer's guide, tell the agent."""
        if await self.refused_for_secret(update, "start"):
            return
        await self._redeem(update, context.args[0] if context.args else "")

    async def open_pasted_link(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A ``t.me/<bot>?start=…`` link pasted as text counts as a tap on it."""
        message = update.effective_message
        payload = deep_link_payload(message.text or "") if message is not None else None
        if payload is not None:
            await self._redeem(update, payload)

    async def refused_for_secret(self, update: Update, name: str) -> bool:
        """A command whose text looks like a key: the guard deleted it; run nothing, keep nothing, echo nothing."""
        message = update.effective_message
        if message is None or not carries_secret(message.text or message.caption or ""):
            return False
        if not await self.updates.claim(update.update_id):
            return True
        user = update.effective_user
        # Only the command's name (from a fixed list, or "start"/"other"), never its arguments.
        known = name if name in (*AGENT_COMMANDS, *ADMIN_COMMANDS, "start") else "other"
        await self.audit.record("command.refused_secret", chat_id=message.chat_id,
                                actor_user_id=user.id if user else None, command=known)
        await message.get_bot().send_message(message.chat_id, self._text("command_with_secret"),
                                             parse_mode=ParseMode.HTML)
        return True

    async def _redeem(self, update: Update, token: str) -> None:
        chat = chat_of(update)
        if chat is None:
            return
        if looks_signed(token):
            await self._redeem_signed(chat, token, update.update_id)
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

    async def _redeem_signed(self, chat: ChatRef, payload: str, update_id: int) -> None:
        """A self-serve link from DoubleTick's dashboard: checked by its tag alone, bound like an agent link.

        The chat is bound as of the link's signed mint time, not of now: a reusable link minted before a key
        was connected never proves the right to replace or disconnect it, however late it is opened.
        """
        now = self.handoffs.clock()
        verdict = verify_payload(payload, self.link_secret, now)
        accepted = verdict.outcome == SignedLinkOutcome.VALID
        bound_at = proof_time(verdict, now)
        await self.audit.record("selfserve.redeemed" if accepted else "selfserve.refused", chat_id=chat.chat_id,
                                actor_user_id=chat.user_id, outcome=verdict.outcome.value,
                                workspace_id=verdict.workspace_id, version=verdict.version,
                                issued_at=verdict.issued_at.isoformat() if verdict.issued_at else None)

        async def event(conv: Conversation) -> ev.Event:
            if verdict.workspace_id is None:
                return ev.InvitationRefused(SIGNED_REFUSALS.get(verdict.outcome, "signed_forged"))
            connected = await self.handoffs.links.workspace_connection(verdict.workspace_id)
            return ev.InvitationRedeemed(verdict.workspace_id, None, already_connected=connected is not None,
                                         connected_last_four=connected.last_four if connected else None,
                                         via="signed_link", bound_at=bound_at)

        await self.runtime.handle(chat, event, update_id=update_id)
    async def language_changed(self, bot: Bot, chat: ChatRef, language: str) -> None:
        """After /language: the user's command menu in the new language (agents keep their commands)."""
        role = await self.directory.role_of(chat.user_id)
        await self.menus.publish(bot, chat.user_id, role, language)

    # -- agents and admins ------------------------------------------------------------------------
    async def command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Agent and admin commands; a neutral answer for everyone else."""
        user, message = update.effective_user, update.effective_message
        if user is None or message is None or not message.text:
            return
        name = message.text.split()[0][1:].split("@")[0].lower()
        args = list(context.args or [])
        language = await self.runtime.language_of(ChatRef(message.chat_id, user.id, user.username,
                                                          user.language_code or "en"))
        token = _CONTENT.set(load_content(language))
        try:
            if await self.refused_for_secret(update, name):
                return
            if not await self.updates.claim(update.update_id):
                return  # a redelivery of an update already handled
            await self._command(context, message.chat_id, user.id, name, args, language)
        finally:
            _CONTENT.reset(token)

    async def _command(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, name: str,
                       args: list[str], language: str) -> None:
        role = await self.directory.role_of(user_id)
        needed = Role.ADMIN if name in ADMIN_COMMANDS else Role.AGENT
        if role < needed:
            await self.audit.record("agent.refused", chat_id=chat_id, actor_user_id=user_id, command=name)
            await self._reply(context, chat_id, self._text("unknown_command"))
            return
        if name == "handoff":
            await self._handoff(context, chat_id, user_id, role, args, language)
            return
        handler = getattr(self, f"_{name}")
        await handler(context, chat_id, user_id, role, args)

    async def _reply(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, text: str,
                     markup: InlineKeyboardMarkup | None = None) -> None:
        """Answer an agent (fitted to Telegram's limits by the rate limiter); a refusal is logged, not raised."""
        try:
            await context.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup)
        except Forbidden:
            log.info("agent chat %s refuses our messages", chat_id)
        except TelegramError as exc:  # flood wait past the limiter's patience, 5xx, timeout: ask again
            log.warning("answer to agent chat %s not delivered: %s", chat_id, type(exc).__name__)

    async def _handoff(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                       args: list[str], language: str = "en") -> None:
        if not args:
            await self._reply(context, chat_id, self._text("handoff_usage"))
            return
        try:
            link = await self.handoffs.create(args[0], via="bot", label=" ".join(args[1:]) or None,
                                              created_by=user_id, agent_language=language)
        except HandoffError as exc:
            key = {"bad_label": "bad_label"}.get(exc.reason, "bad_workspace")
            await self._reply(context, chat_id, self._text(key, max=MAX_LABEL))
            return
        caption = self._text("link_created", workspace=link.workspace_name or link.workspace_id,
                             label=f" · {link.label}" if link.label else None, link=link.url, id=link.id,
                             expires=when(link.expires_at))
        await context.bot.send_photo(chat_id, photo=link.qr_png(), caption=caption, parse_mode=ParseMode.HTML)

    # -- pages (/links, /status and their ◀️/▶️ buttons) --------------------------------------------------
    def _paged(self, kind: str, head: str, entries: list[str], joiner: str, page: int, key: str = "") -> Page:
        """Page ``page`` (clamped to the pages there are now) of a list, in the agent's language."""
        texts = self.texts

        def marker(at: int, total: int) -> str:
            return self._text("page_marker", page=number(texts.locale, at), pages=number(texts.locale, total))

        pages = split_pages(head, entries, marker, joiner=joiner)
        at = min(max(page, 1), len(pages))
        return pages[at - 1], page_buttons(texts, kind, at, len(pages), key)

    async def page_pressed(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """◀️/▶️ under /links or /status: answered at once, then the page as it is now, if still an agent."""
        query, user = update.callback_query, update.effective_user
        if query is None:
            return
        try:  # first: Telegram refuses an answer once the query is ~15 s old
            await query.answer()
        except TelegramError as exc:
            log.info("page button answer refused: %s", type(exc).__name__)
        message, request = query.message, parse_page_callback(query.data)
        if user is None or request is None or not isinstance(message, Message) \
                or message.chat.type != ChatType.PRIVATE or not await self.updates.claim(update.update_id):
            return
        role = await self.directory.role_of(user.id)
        if role < Role.AGENT:  # no longer an agent: nothing, not even a refusal
            await self.audit.record("agent.refused", chat_id=message.chat_id, actor_user_id=user.id, command="page")
            return
        language = await self.runtime.language_of(ChatRef(message.chat_id, user.id, user.username,
                                                          user.language_code or "en"))
        token = _CONTENT.set(load_content(language))
        try:
            if request.kind == LINKS:
                await self.audit.record("agent.links", chat_id=message.chat_id, actor_user_id=user.id,
                                        page=request.page)
                shown = await self._links_page(user.id, role, request.page)
            else:
                shown = await self._status_pressed(message.chat_id, user.id, role, request)
            await self._edit(context, message, *shown)
        finally:
            _CONTENT.reset(token)

    async def _edit(self, context: ContextTypes.DEFAULT_TYPE, message: Message, text: str,
                    markup: InlineKeyboardMarkup | None) -> None:
        """The pressed message becomes the page; "not modified" (a page already shown) is no error."""
        try:
            await context.bot.edit_message_text(text, chat_id=message.chat_id, message_id=message.message_id,
                                                parse_mode=ParseMode.HTML, reply_markup=markup)
        except TelegramError as exc:
            log.info("page not shown in agent chat %s: %s", message.chat_id, type(exc).__name__)

    async def _links(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                     args: list[str]) -> None:
        """/links, or /links 3 for page 3."""
        raw = args[0].lstrip("#") if args else ""
        page = (int(raw) if len(raw) <= 5 else MAX_PAGE) if raw.isascii() and raw.isdigit() else 1
        await self.audit.record("agent.links", chat_id=chat_id, actor_user_id=user_id, page=page)
        await self._reply(context, chat_id, *await self._links_page(user_id, role, page))

    async def _links_page(self, user_id: int, role: Role, page: int) -> Page:
        links = await self.handoffs.open_links(None if role >= Role.ADMIN else user_id)
        if not links:
            return self._text("links_none"), None
        now = self.handoffs.clock()
        texts = self.texts
        opened = [link for link in links if LinkState.of(link, now) == LinkState.OPENED]
        chats = await self.handoffs.links.conversations_of_chats([link.redeemed_chat_id or 0 for link in opened])
        entries = []
        for link in links:
            state = self._text("state_waiting")
            if LinkState.of(link, now) == LinkState.OPENED:
                conv = chats.get(link.redeemed_chat_id or 0)
                who = Customer(link.redeemed_by_user_id or 0, conv.username if conv else None)
                state = agent_text(texts, "state_opened", safe={"customer": who.describe(texts)})
            entries.append(agent_text(texts, "link_line", id=link.id,
                                      workspace=link.workspace_name or link.workspace_id,
                                      label=f" · {link.label}" if link.label else None,
                                      expires=when(link.expires_at), safe={"state": state}))
        head = self._text("links_header", count=count(texts.locale, texts.plural("open_links"), len(links)))
        return self._paged(LINKS, head, entries, "\n", page)

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
        kind = "link" if token_from(query) else ("username" if query.startswith("@") else
                                                 "number" if LINK_NUMBER.fullmatch(query) else "workspace")
        # Never audit a link's token: only which kind of lookup it was (and the public workspace/username).
        await self.audit.record("agent.status", chat_id=chat_id, actor_user_id=user_id, lookup=kind,
                                query=None if kind == "link" else query[:64])
        await self._reply(context, chat_id, *await self._status_shown(chat_id, user_id, role, query, 1))

    async def _status_pressed(self, chat_id: int, user_id: int, role: Role, request: PageRequest) -> Page:
        """A /status page button: the lookup again (the customers may have moved on), at that page."""
        query = request.key
        if (short := shortened_key(query)) is not None:  # a workspace id too long for the button
            start, digest = short
            found = await self.handoffs.links.workspace_ids_starting(start)
            query = next((candidate for candidate in found if is_key_of(candidate, digest)), query)
        await self.audit.record("agent.status", chat_id=chat_id, actor_user_id=user_id, lookup="page",
                                query=query[:64], page=request.page)
        return await self._status_shown(chat_id, user_id, role, query, request.page)

    async def _status_shown(self, chat_id: int, user_id: int, role: Role, query: str, page: int) -> Page:
        """What an agent may see of ``query``, at ``page``; the key on the buttons is never a link's token."""
        scope = StatusScope(None if role >= Role.ADMIN else user_id)
        if query.startswith("@") and scope.agent_id is not None and await self._names_another_agent(query, user_id):
            await self.audit.record("agent.status_refused", chat_id=chat_id, actor_user_id=user_id)
            return self._text("status_not_allowed"), None
        report: StatusReport = await self.status.lookup(query, scope)
        if report.empty:
            return self.status.render(report, self.texts), None
        head, entries = self.status.render_parts(report, self.texts)
        # report.query: a workspace id, an @username or #<link number> (a link found by its token)
        return self._paged(STATUS, head, entries, "\n\n", page, key=report.query)

    async def _names_another_agent(self, query: str, user_id: int) -> bool:
        """``/status @someone`` where someone is a support agent (known by their chats with this bot)."""
        rows = await self.handoffs.links.conversations_of_username(query.lstrip("@"))
        for row in rows:
            if row.user_id != user_id and await self.directory.role_of(row.user_id) >= Role.AGENT:
                return True
        return False

    async def _add_agent(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, user_id: int, role: Role,
                         args: list[str]) -> None:
        if not args or not args[0].lstrip("-").isdigit():
            await self._reply(context, chat_id, self._text("add_agent_usage"))
            return
        agent_id = int(args[0])
        added = await self.directory.add(agent_id, by=user_id, note=" ".join(args[1:]) or None)
        if added:
            await self.audit.record("agent.added", chat_id=chat_id, actor_user_id=user_id, agent_user_id=agent_id)
            # The new agent's language: the one stored on their chat with the bot, if they have one.
            agent_language = await self.runtime.language_of(ChatRef(agent_id, agent_id))
            await self.menus.publish(context.bot, agent_id, Role.AGENT, agent_language)
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
            lines.append(agent_text(self.texts, "agents_line", user=entry.user_id, safe={"origin": origin}))
        await self._reply(context, chat_id, "\n".join(lines))
