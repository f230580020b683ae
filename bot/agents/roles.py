"""Who is a support agent or an admin, and the command menus only they see.

Why a cached directory: the menu check runs on every update, so it must not cost a query each time;
agents added by an admin reach other replicas within ``refresh_s``. Configured ids (AGENT_USER_IDS,
ADMIN_USER_IDS) are fixed for the process; admins are agents too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import TelegramError

from flows.content import Content, load_content
from flows.inspection import might_carry_secret
from storage.repositories import AgentRepository

__all__ = ["ADMIN_COMMANDS", "AGENT_COMMANDS", "AgentDirectory", "AgentEntry", "CommandMenus", "RemoveOutcome",
           "Role"]

log = logging.getLogger(__name__)

AGENT_COMMANDS = ("handoff", "links", "revoke_link", "status")
ADMIN_COMMANDS = ("add_agent", "remove_agent", "agents")


class Role(IntEnum):
    CUSTOMER = 0
    AGENT = 1
    ADMIN = 2


class RemoveOutcome(StrEnum):
    REMOVED = "removed"
    CONFIGURED = "configured"  # in AGENT_USER_IDS/ADMIN_USER_IDS: only configuration can remove them
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class AgentEntry:
    user_id: int
    role: Role
    configured: bool
    added_by: int | None = None
    added_at: datetime | None = None


class AgentDirectory:
    def __init__(self, repo: AgentRepository, *, agents: Iterable[int] = (), admins: Iterable[int] = (),
                 refresh_s: float = 30.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.repo = repo
        self.admins = frozenset(admins)
        self.configured_agents = frozenset(agents) | self.admins
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._added: frozenset[int] = frozenset()
        self._loaded_at: float | None = None

    async def _added_ids(self) -> frozenset[int]:
        now = self._monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self.refresh_s:
            self._added = frozenset(agent.user_id for agent in await self.repo.all())
            self._loaded_at = now
        return self._added

    async def role_of(self, user_id: int) -> Role:
        if user_id in self.admins:
            return Role.ADMIN
        if user_id in self.configured_agents or user_id in await self._added_ids():
            return Role.AGENT
        return Role.CUSTOMER

    async def add(self, user_id: int, *, by: int | None, note: str | None = None) -> bool:
        """Add an agent; False if they already were one. A key-shaped note is never stored."""
        if note and might_carry_secret(note):
            raise ValueError("the note looks like it holds a secret key; it was not stored")
        if await self.role_of(user_id) >= Role.AGENT:
            return False
        added = await self.repo.add(user_id, added_by=by, note=note)
        self._loaded_at = None
        return added

    async def remove(self, user_id: int) -> RemoveOutcome:
        if user_id in self.configured_agents:
            return RemoveOutcome.CONFIGURED
        removed = await self.repo.remove(user_id)
        self._loaded_at = None
        return RemoveOutcome.REMOVED if removed else RemoveOutcome.UNKNOWN

    async def entries(self) -> list[AgentEntry]:
        out = [AgentEntry(uid, Role.ADMIN if uid in self.admins else Role.AGENT, True)
               for uid in sorted(self.configured_agents)]
        out += [AgentEntry(a.user_id, Role.AGENT, False, a.added_by, a.added_at)
                for a in await self.repo.all() if a.user_id not in self.configured_agents]
        return out


class CommandMenus:
    """Per-chat command lists (setMyCommands with a chat scope): agents see theirs, customers never do.

    Telegram refuses a chat scope for a user who never opened the bot ("chat not found"), so menus are
    published on first contact in this process and whenever an admin adds someone; failures only log.
    """

    def __init__(self, content: Content) -> None:
        self.content = content
        self._published: set[int] = set()

    def commands_for(self, role: Role, content: Content | None = None) -> list[BotCommand]:
        """The menu for ``role``, in ``content``'s language (the menus' default language otherwise)."""
        content = content or self.content
        items = dict(content.commands())
        if role >= Role.AGENT:
            items.update(content.data.get("agent_commands", {}))
        if role >= Role.ADMIN:
            items.update(content.data.get("admin_commands", {}))
        return [BotCommand(name, str(text)[:256]) for name, text in items.items()]

    def needs_publishing(self, user_id: int) -> bool:
        return user_id not in self._published

    async def publish(self, bot: Bot, user_id: int, role: Role, language: str | None = None) -> bool:
        """Set the user's own menu (chat scope), in ``language`` (a locale code) when given. A chat-scope
        menu applies whatever language the user's app has, so it is published in the user's chosen one."""
        content = load_content(language) if language else None
        try:
            await bot.set_my_commands(self.commands_for(role, content), scope=BotCommandScopeChat(user_id))
        except TelegramError as exc:
            log.info("command menu for user %s not set: %s", user_id, type(exc).__name__)
            return False
        self._published.add(user_id)
        return True

    async def withdraw(self, bot: Bot, user_id: int) -> None:
        """Back to the customers' menu (the all-private-chats scope applies again)."""
        self._published.discard(user_id)
        try:
            await bot.delete_my_commands(scope=BotCommandScopeChat(user_id))
        except TelegramError as exc:
            log.info("command menu for user %s not removed: %s", user_id, type(exc).__name__)
