"""Outbound limits: each replica sends at its share of the budget, and deleting a key never queues.

The real wiring (``build_bot``) against the Telegram stand-in over HTTP: the only fake is the Bot API.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import Settings
from bot.standins.telegram import FakeTelegram
from bot.telegram.application import BotApp, build_bot
from tests.bot.support import sandbox_settings

USER = 4321




async def _started(settings: Settings) -> BotApp:
    bot_app = build_bot(settings)
    await bot_app.application.bot.initialize()
    assert bot_app.delete_bot is not None
    await bot_app.delete_bot.initialize()
    return bot_app


async def _stopped(bot_app: BotApp) -> None:
    for close in bot_app.closers:
        await close()
    await bot_app.application.bot.shutdown()


def test_each_replica_takes_its_share_of_the_budget(tmp_path: Path) -> None:
    settings = sandbox_settings("http://127.0.0.1:9", tmp_path, telegram_max_rate_per_s=30, replicas=3)
    assert settings.telegram_rate_per_replica == 10
    with pytest.raises(ValueError, match="greater than zero"):
        sandbox_settings("http://127.0.0.1:9", tmp_path, replicas=0)


async def test_deleting_a_key_does_not_wait_behind_queued_sends(telegram: tuple[FakeTelegram, str],
                                                                tmp_path: Path) -> None:
    fake, url = telegram
    bot_app = await _started(sandbox_settings(url, tmp_path, telegram_max_rate_per_s=1))  # one send per second
    messenger = bot_app.runtime.messenger
    try:
        pasted = fake.send(USER, "sk-proj-pretend-this-is-a-key")
        sends = [asyncio.create_task(messenger.send_html(USER, f"queued {n}")) for n in range(4)]
        first_done = asyncio.Event()
        for send in sends:
            send.add_done_callback(lambda _task: first_done.set())
        await first_done.wait()  # the limiter let one through; the other three wait their turn
        outcome = await messenger.delete(USER, pasted["message_id"])
        still_queued = sum(not send.done() for send in sends)
        await asyncio.gather(*sends)
    finally:
        await _stopped(bot_app)
    assert outcome == "deleted"
    assert still_queued >= 2
    calls = [c for c in fake.calls() if c["method"] in ("sendMessage", "deleteMessage")]
    order = [c["method"] for c in sorted(calls, key=lambda c: c["finished_monotonic"])]
    assert order.index("deleteMessage") < len(order) - 2


async def test_a_429_is_counted_and_retried_after_the_pause(telegram: tuple[FakeTelegram, str],
                                                            tmp_path: Path) -> None:
    from bot.metrics import RATE_LIMITED

    fake, url = telegram
    bot_app = await _started(sandbox_settings(url, tmp_path))
    before = RATE_LIMITED.labels("sendMessage")._value.get()
    try:
        fake.send(USER, "hello")  # the chat must exist before the bot can write to it
        fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
        message_id = await bot_app.runtime.messenger.send_html(USER, "after the pause")
    finally:
        await _stopped(bot_app)
    assert message_id > 0
    assert RATE_LIMITED.labels("sendMessage")._value.get() == before + 1
    assert [c["ok"] for c in fake.calls(method="sendMessage")] == [False, True]
