"""The HTTP server's limits (issue 10 item 6): slow clients cut off, failed tokens throttled, a strong
webhook secret, and the secret guard still deleting a pasted key while the server shuts down.

Real uvicorn on loopback for the connection limits; the real ``build_bot`` wiring against the Telegram
stand-in for the webhook and the handoff API. Before issue 10: 200 of 200 slow-header connections stayed
open, 300 wrong tokens got 300 quick 401s, a one-character secret was accepted, and a key pasted during
shutdown was answered 503 without being deleted.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.config import Settings
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from bot.standins.server import free_port
from bot.standins.telegram import FakeTelegram
from bot.telegram.application import BotApp, build_bot
from bot.web.limits import LIMIT_CONCURRENCY, MAX_HEAD_BYTES, FailedAuthThrottle, server_config
from bot.web.server import SECRET_HEADER, WebState, create_web_app
from storage.migrate import upgrade
from tests.bot.support import sandbox_settings
from tests.e2e.pasting import fresh_key

SECRET = "limits_webhook_secret_token_0123456789"
API_TOKEN = "handoff_api_token_for_limits_0123"
BOT_ID = int(SANDBOX_BOT_TOKEN.split(":")[0])


def _settings(url: str, folder: Path, **extra: Any) -> Settings:
    return sandbox_settings(url, folder, **{"webhook_secret_token": SECRET, **extra})


# --- the webhook secret ------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["x", "a" * 31, "short_but_valid_chars"])
def test_a_webhook_secret_shorter_than_32_characters_stops_the_start(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValueError, match="32-256 characters"):
        _settings("http://127.0.0.1:9", tmp_path, webhook_secret_token=secret)


def test_a_32_character_secret_is_accepted(tmp_path: Path) -> None:
    assert _settings("http://127.0.0.1:9", tmp_path, webhook_secret_token="a" * 32).webhook_secret_token


# --- slow clients ------------------------------------------------------------------------------------


def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.fixture
def slow_server() -> Iterator[int]:
    port = free_port("127.0.0.1")
    app = Starlette(routes=[Route("/", _hello, methods=["GET", "POST"])])
    config = server_config(app, "127.0.0.1", port, header_timeout_s=0.5, body_timeout_s=0.5, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(5)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within ``within`` seconds (after any answer it sends)."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(4096) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def test_the_server_is_configured_with_every_limit() -> None:
    config = server_config(Starlette(), "127.0.0.1", 8080)
    assert config.limit_concurrency == LIMIT_CONCURRENCY and config.h11_max_incomplete_event_size == MAX_HEAD_BYTES
    assert config.timeout_keep_alive <= 5 and isinstance(config.http, type)


def test_slow_headers_and_slow_bodies_are_cut_off(slow_server: int) -> None:
    heads = [socket.create_connection(("127.0.0.1", slow_server)) for _ in range(20)]
    for sock in heads:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    body = socket.create_connection(("127.0.0.1", slow_server))
    body.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")  # the body never ends
    silent = socket.create_connection(("127.0.0.1", slow_server))
    for _ in range(3):  # trickling bytes does not push the deadline back
        time.sleep(0.2)
        for sock in heads:
            sock.sendall(b"X")
    try:
        assert all(_closed_by_server(sock, 2.0) for sock in heads)
        assert _closed_by_server(body, 2.0)
        assert _closed_by_server(silent, 2.0)
        # a prompt client is served, and may keep its connection for a second request
        with httpx.Client(base_url=f"http://127.0.0.1:{slow_server}") as client:
            assert client.get("/").text == "hello"
            assert client.post("/", content=b"x" * 1000).text == "hello"
    finally:
        for sock in [*heads, body, silent]:
            sock.close()


def test_an_endless_request_head_is_refused_at_16_kib(slow_server: int) -> None:
    with socket.create_connection(("127.0.0.1", slow_server)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"x" * (MAX_HEAD_BYTES + 1))
        sock.settimeout(2.0)
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")


# --- failed tokens -----------------------------------------------------------------------------------


async def test_failed_tokens_are_throttled_per_client_address() -> None:
    async def guarded(request: Request) -> PlainTextResponse:
        ok = request.headers.get("authorization") == f"Bearer {API_TOKEN}"
        return PlainTextResponse("ok" if ok else "no", status_code=200 if ok else 401)

    now = [0.0]
    app = FailedAuthThrottle(Starlette(routes=[Route("/api/x", guarded), Route("/other", guarded)]),
                             max_failures=10, window_s=60.0, clock=lambda: now[0])

    def client(host: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 1234)), base_url="http://b")

    async with client("10.0.0.1") as guesser, client("10.0.0.2") as neighbour:
        statuses = [(await guesser.get("/api/x", headers={"Authorization": f"Bearer guess{i}"})).status_code
                    for i in range(300)]
        assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
        right = await guesser.get("/api/x", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert right.status_code == 429 and int(right.headers["retry-after"]) > 0  # no signal for a guesser
        assert (await neighbour.get("/api/x", headers={"Authorization": f"Bearer {API_TOKEN}"})).status_code == 200
        assert (await guesser.get("/other")).status_code == 401  # only the guarded prefix
        now[0] = 61.0
        assert (await guesser.get("/api/x", headers={"Authorization": f"Bearer {API_TOKEN}"})).status_code == 200


@pytest.fixture
async def bot_app(telegram: tuple[FakeTelegram, str], tmp_path: Path) -> AsyncIterator[BotApp]:
    created = build_bot(_settings(telegram[1], tmp_path, handoff_api_token=API_TOKEN))
    yield created
    for close in created.closers:
        await close()


async def test_the_handoff_api_is_throttled_in_the_real_app(bot_app: BotApp) -> None:
    from bot.cli.webhook import mounted_routes

    app = create_web_app(bot_app, extra_routes=mounted_routes(bot_app))
    transport = httpx.ASGITransport(app=app, client=("10.9.9.9", 999))
    async with httpx.AsyncClient(transport=transport, base_url="http://bot") as client:
        statuses = [(await client.get("/api/handoffs/1", headers={"Authorization": f"Bearer wrong{i}"})).status_code
                    for i in range(30)]
    assert statuses.count(401) == 10 and statuses[10:] == [429] * 20


# --- shutdown ----------------------------------------------------------------------------------------


async def test_a_key_pasted_during_shutdown_is_deleted_before_the_503(
    bot_app: BotApp, telegram: tuple[FakeTelegram, str],
) -> None:
    fake, _url = telegram
    fake.send(6002, f"my key {fresh_key()}", bot_id=BOT_ID)
    world = fake.world_if_exists(BOT_ID)
    assert world is not None
    update = world.updates[-1].to_api()
    await upgrade(bot_app.settings.database_url)
    application = bot_app.application
    await application.initialize()
    state = WebState(stopping=True)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_web_app(bot_app, state=state)),
                                     base_url="http://bot") as client:
            headers = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
            forged = await client.post("/telegram", content=json.dumps(update), headers={**headers,
                                                                                           SECRET_HEADER: "x" * 40})
            assert forged.status_code == 403 and fake.calls(method="deleteMessage") == []
            answered = await client.post("/telegram", content=json.dumps(update), headers=headers)
    finally:
        await application.shutdown()
    assert answered.status_code == 503 and answered.headers["retry-after"]
    deleted = fake.calls(method="deleteMessage")
    assert [c["params"]["message_id"] for c in deleted] == [update["message"]["message_id"]]
    assert fake.calls(method="sendMessage") == []  # nothing else happened: the redelivery does the rest
    await asyncio.sleep(0)
