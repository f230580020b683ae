"""Shared fixtures of the in-process bot tests: the Telegram Bot API stand-in on loopback, and a bot built on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.standins.server import BackgroundServer
from bot.standins.telegram import FakeTelegram, create_telegram_app
from bot.telegram.application import BotApp, build_bot
from storage.migrate import upgrade
from tests.bot.support import sandbox_settings


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    server = BackgroundServer(create_telegram_app(fake))
    url = await asyncio.to_thread(server.start)
    try:
        yield fake, url
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def bot_app(telegram: tuple[FakeTelegram, str], tmp_path: Path) -> AsyncIterator[BotApp]:
    """A real PTB bot on the stand-in, its SQLite database migrated; closed afterwards."""
    created = build_bot(sandbox_settings(telegram[1], tmp_path))
    await upgrade(created.settings.database_url)
    yield created
    for close in created.closers:
        await close()
