"""Everything for support agents, built from Settings in one place: handlers, notifications, the stuck
watch and the handoff API, so ``bot/telegram/application.py`` needs only a few lines to wire it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import Application

from bot.agents.api import HandoffApi
from bot.agents.commands import AgentDesk
from bot.agents.links import HandoffService
from bot.agents.notifications import AgentNotifier, StuckWatch
from bot.agents.roles import AgentDirectory, CommandMenus
from bot.agents.status import StatusDesk
from bot.config import Settings
from bot.core.runtime import Runtime
from flows.content import load_content
from storage.repositories import AgentRepository, HandoffRepository

__all__ = ["SupportDesk", "build_support_desk"]


@dataclass
class SupportDesk:
    desk: AgentDesk
    notifier: AgentNotifier
    stuck_watch: StuckWatch
    api: HandoffApi  # mount bot.agents.api.handoff_routes(api) in the web server

    def register(self, application: Application) -> None:
        """Before ``BotHandlers.register`` (see ``AgentDesk.register``)."""
        self.desk.register(application)

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.stuck_watch.run(), name="stuck-watch")

    def stop(self) -> None:
        self.stuck_watch.stop()

    async def aclose(self) -> None:
        await self.notifier.drain()


def build_support_desk(settings: Settings, application: Application,
                       sessions: async_sessionmaker[AsyncSession], runtime: Runtime) -> SupportDesk:
    links = HandoffRepository(sessions)
    content = load_content("en")
    directory = AgentDirectory(AgentRepository(sessions), agents=settings.agent_user_ids,
                               admins=settings.admin_user_ids)

    def bot_username() -> str:
        return settings.bot_username or application.bot.username

    handoffs = HandoffService(links, runtime.audit, bot_username=bot_username,
                              default_ttl=timedelta(hours=settings.handoff_link_ttl_hours))
    async def chosen_language(user_id: int) -> str | None:
        row = await runtime.conversations.get(user_id)  # an agent's private chat id is their user id
        return row.language if row is not None else None

    notifier = AgentNotifier(application.bot, links, content=content, chosen_language=chosen_language)
    runtime.observers.append(notifier.observe)
    status = StatusDesk(links)
    desk = AgentDesk(directory, CommandMenus(content), handoffs, status, notifier, runtime.audit, runtime.updates,
                     runtime, content, link_secret=settings.link_secret)
    runtime.language_hooks.append(lambda chat, language: desk.language_changed(application.bot, chat, language))
    stuck = StuckWatch(links, notifier, stuck_after=timedelta(minutes=settings.stuck_after_minutes),
                       interval_s=settings.stuck_check_interval_s)
    token = settings.handoff_api_token.get_secret_value() if settings.handoff_api_token else None
    return SupportDesk(desk, notifier, stuck, HandoffApi(handoffs, status, directory, token))
