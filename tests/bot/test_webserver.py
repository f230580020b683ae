"""The webhook app in-process: secret check before parsing, probes, and "retry later" on transient failures.

The real ``build_bot`` wiring against the Telegram stand-in over HTTP; requests reach the ASGI app through
httpx's ASGI transport (no lifespan: the test initialises the PTB application itself).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from telegram.error import BadRequest, RetryAfter, TimedOut

from bot.config import Settings
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from bot.standins.telegram import FakeTelegram
from bot.telegram.application import BotApp, build_bot
from bot.telegram.redelivery import is_transient
from bot.web.server import SECRET_HEADER, WebState, create_web_app
from storage.migrate import upgrade
from tests.bot.support import sandbox_settings

SECRET = "in_process_secret_token_0123456789"
BOT_ID = int(SANDBOX_BOT_TOKEN.split(":")[0])




def _settings(url: str, folder: Path, **extra: Any) -> Settings:
    return sandbox_settings(url, folder, **{"webhook_secret_token": SECRET, **extra})


@pytest.fixture
async def bot_app(telegram: tuple[FakeTelegram, str], tmp_path: Path) -> AsyncIterator[BotApp]:
    created = build_bot(_settings(telegram[1], tmp_path))
    yield created
    for close in created.closers:
        await close()


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot")


def test_without_a_secret_token_the_server_refuses_to_start(tmp_path: Path) -> None:
    bot_app = build_bot(_settings("http://127.0.0.1:9", tmp_path, webhook_secret_token=None))
    with pytest.raises(SystemExit, match="WEBHOOK_SECRET_TOKEN"):
        create_web_app(bot_app)


@pytest.mark.parametrize("secret", ["bad token", "x" * 300, ""])
def test_the_secret_token_setting_follows_telegrams_rules(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValueError, match="WEBHOOK_SECRET_TOKEN"):
        _settings("http://127.0.0.1:9", tmp_path, webhook_secret_token=secret)


@pytest.mark.parametrize(("error", "transient"), [
    (OperationalError("SELECT 1", {}, Exception("connection refused")), True),
    (PoolTimeout("pool exhausted"), True),
    (TimedOut(), True),
    (RetryAfter(3), True),
    (ConnectionResetError(), True),
    (IntegrityError("INSERT", {}, Exception("duplicate")), False),
    (BadRequest("Message text is empty"), False),
    (ValueError("a bug"), False),
])
def test_transient_failures_are_told_apart_from_poison_updates(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


async def test_readiness_follows_migrations_and_shutdown(bot_app: BotApp) -> None:
    state = WebState()
    async with _client(create_web_app(bot_app, state=state)) as client:
        assert (await client.get("/healthz")).text == "ok"
        not_migrated = await client.get("/readyz")
        assert (not_migrated.status_code, not_migrated.text) == (503, "database migrations are not current")
        await upgrade(bot_app.settings.database_url)
        assert (await client.get("/readyz")).status_code == 200
        state.stopping = True
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
        refused = await client.post("/telegram", content=b'{"update_id": 5}', headers={SECRET_HEADER: SECRET,
                                                                          "Content-Type": "application/json"})
        assert refused.status_code == 503 and refused.headers["retry-after"]


async def test_the_secret_is_checked_before_the_body_is_even_parsed(bot_app: BotApp) -> None:
    async with _client(create_web_app(bot_app)) as client:
        for headers in ({}, {SECRET_HEADER: SECRET.upper()}, {SECRET_HEADER: SECRET + " "}):
            response = await client.post("/telegram", content=b"\xff not json",
                                         headers={**headers, "Content-Type": "application/json"})
            assert response.status_code == 403
        too_big = b'{"update_id": 1, "pad": "' + b"x" * (1 << 20) + b'"}'
        response = await client.post("/telegram", content=too_big,
                                     headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"})
        assert response.status_code == 413


async def test_metrics_are_served_even_when_the_database_is_not_ready(bot_app: BotApp) -> None:
    async with _client(create_web_app(bot_app)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert "onboarding_webhook_requests_total" in response.text and "process_cpu_seconds_total" in response.text


async def test_a_database_failure_asks_telegram_to_redeliver_and_the_redelivery_is_processed(
    bot_app: BotApp, telegram: tuple[FakeTelegram, str],
) -> None:
    fake, _url = telegram
    fake.send(6001, "/start", bot_id=BOT_ID)  # the user's chat exists; no webhook or poller, so the update waits
    world = fake.world_if_exists(BOT_ID)
    assert world is not None
    update = world.updates[-1].to_api()
    headers = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
    application = bot_app.application
    await application.initialize()
    try:
        async with _client(create_web_app(bot_app)) as client:
            # The tables do not exist yet: as good as a database outage.
            failed = await client.post("/telegram", content=json.dumps(update), headers=headers)
            assert failed.status_code == 503 and int(failed.headers["retry-after"]) > 0
            assert fake.calls(method="sendMessage") == []
            await upgrade(bot_app.settings.database_url)
            redelivered = await client.post("/telegram", content=json.dumps(update), headers=headers)
            assert redelivered.status_code == 200
            assert [c["ok"] for c in fake.calls(method="sendMessage")] == [True]
            again = await client.post("/telegram", content=json.dumps(update), headers=headers)
            assert again.status_code == 200
            assert len(fake.calls(method="sendMessage")) == 1  # a duplicate changes nothing
    finally:
        await application.shutdown()
