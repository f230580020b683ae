"""Shared fixtures of the in-process bot tests: the Telegram Bot API stand-in on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.standins.server import BackgroundServer
from bot.standins.telegram import FakeTelegram, create_telegram_app


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    server = BackgroundServer(create_telegram_app(fake))
    url = await asyncio.to_thread(server.start)
    try:
        yield fake, url
    finally:
        await asyncio.to_thread(server.stop)
