"""The Mini App on the real wiring in-process: rate limits (per client address, per Telegram user), quiet logs,
409 in closed mode, and its routes beside the webhook."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from bot.cli.webhook import mounted_routes
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from bot.standins.telegram import FakeTelegram
from bot.telegram.application import BotApp, build_bot
from bot.web.miniapp import MiniApp
from bot.web.server import create_web_app
from flows.state import Conversation
from flows.steps import Step
from storage.migrate import upgrade
from tests.bot.support import sandbox_settings
from tests.e2e.miniapp import init_data_for
from tests.e2e.pasting import fresh_key


@pytest.fixture
async def bot_app(telegram: tuple[FakeTelegram, str], tmp_path: Path) -> AsyncIterator[BotApp]:
    settings = sandbox_settings(telegram[1], tmp_path, public_base_url="https://bot.example.test",
                                miniapp_requests_per_address_per_minute=6, miniapp_submissions_per_user_per_hour=2)
    await upgrade(settings.database_url)
    created = build_bot(settings)
    yield created
    for close in created.closers:
        await close()


def _client(bot_app: BotApp, address: str = "203.0.113.7") -> httpx.AsyncClient:
    app = Starlette(routes=MiniApp.from_bot(bot_app).routes())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="https://bot")


async def test_submissions_are_limited_per_user(bot_app: BotApp) -> None:
    async with _client(bot_app) as client:
        statuses = [(await client.post("/miniapp/api/key", json={"init_data": init_data_for(4242),
                                                                 "key": "hello"})).status_code for _ in range(3)]
        assert statuses == [422, 422, 429]
        other = await client.post("/miniapp/api/key", json={"init_data": init_data_for(4243), "key": "hello"})
        assert other.status_code == 422  # another user is not affected


async def test_requests_are_limited_per_client_address(bot_app: BotApp) -> None:
    async with _client(bot_app) as client:
        forged = {"init_data": init_data_for(5151, token="1:WRONG"), "key": "x"}
        statuses = [(await client.post("/miniapp/api/key", json=forged)).status_code for _ in range(7)]
        assert statuses == [401] * 6 + [429]
        assert (await client.get("/miniapp/api/status")).status_code == 429
        assert (await client.get("/miniapp/key")).status_code == 200  # the page itself is not an API call
    async with _client(bot_app, "198.51.100.9") as elsewhere:
        assert (await elsewhere.post("/miniapp/api/key", json=forged)).status_code == 401


async def test_the_body_is_never_logged(bot_app: BotApp, caplog: pytest.LogCaptureFixture) -> None:
    key = fresh_key("project", "MiniLog")
    caplog.set_level(logging.DEBUG)
    async with _client(bot_app) as client:
        for init_data in (init_data_for(6161), init_data_for(6161, token="1:WRONG"), "garbage"):
            await client.post("/miniapp/api/key", json={"init_data": init_data, "key": key})
        await client.post("/miniapp/api/key", content=b'{"init_data": 1, "key": "' + key.encode() + b'"')
    assert caplog.records and key not in caplog.text and key[-30:] not in caplog.text
    assert SANDBOX_BOT_TOKEN.split(":")[1] not in caplog.text


@pytest.mark.parametrize(("step", "workspace"), [
    (Step.PASTE_KEY, None),  # closed mode (the default here) and no agent's link: uninvited
    (Step.INVITATION_NEEDED, None),
    (Step.VERIFYING, "ws_demo"),  # busy with another key
    (Step.CONNECTED, "ws_demo"),
])
async def test_a_key_is_refused_when_the_chat_does_not_wait_for_one(bot_app: BotApp, step: Step,
                                                                    workspace: str | None) -> None:
    assert bot_app.settings.policy.requires_invitation
    state = Conversation(step=step, workspace_id=workspace)
    await bot_app.runtime.conversations.create(chat_id=7070, user_id=7070, step=step.value, state=state.to_record())
    async with _client(bot_app) as client:
        refused = await client.post("/miniapp/api/key", json={"init_data": init_data_for(7070),
                                                              "key": fresh_key("project", "Closed")})
    assert (refused.status_code, refused.json()) == (409, {"error": "not_at_paste_step"})
    row = await bot_app.runtime.conversations.get(7070)
    assert row is not None and row.step == step.value  # untouched


async def test_the_webhook_server_serves_the_mini_app_beside_telegrams_endpoint(
    telegram: tuple[FakeTelegram, str], tmp_path: Path,
) -> None:
    settings = sandbox_settings(telegram[1], tmp_path, public_base_url="https://bot.example.test",
                                webhook_secret_token="in_process_secret_token_0123456789")
    created = build_bot(settings)
    try:
        app = create_web_app(created, extra_routes=mounted_routes(created))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://bot") as client:
            page = await client.get("/miniapp/key")
            assert page.status_code == 200 and page.headers["strict-transport-security"]
            assert (await client.post("/miniapp/api/key", json={})).status_code == 401
    finally:
        for close in created.closers:
            await close()
    unset = build_bot(sandbox_settings(telegram[1], tmp_path / "unset",
                                       webhook_secret_token="in_process_secret_token_0123456789"))
    try:
        assert not [r for r in mounted_routes(unset) if getattr(r, "path", "").startswith("/miniapp")]
    finally:
        for close in unset.closers:
            await close()
