"""A faithful local stand-in of the Telegram Bot API server, for e2e tests, benchmarks and try-it mode.

Point PTB at it with ``Bot(token, base_url=f"{url}/bot")`` (or ``ApplicationBuilder().base_url``);
the bot cannot tell it from api.telegram.org except by URL. Drive the user's side and inspect what
the bot did through ``FakeTelegram`` methods or the JSON control API under ``/_sandbox/``.

    fake = FakeTelegram()
    url = BackgroundServer(create_telegram_app(fake)).start()

Module map (each cites the documentation it follows):
``telegram_request`` decoding and answers, ``telegram_text``/``telegram_markdown`` formatting,
``telegram_validate`` argument rules, ``telegram_world`` records and JSON shapes,
``telegram_methods`` Bot API methods, ``telegram_delivery`` getUpdates and webhooks,
``telegram_state`` the ``FakeTelegram`` object, ``telegram_sandbox`` the control API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.standins.telegram_sandbox import sandbox_routes
from bot.standins.telegram_state import FakeTelegram, SandboxError
from bot.standins.telegram_world import Settings

__all__ = ["FakeTelegram", "SandboxError", "Settings", "control_index", "create_telegram_app"]


def control_index(routes: list[Route]) -> dict[str, Any]:
    """What ``GET /_sandbox/`` answers: how to play the user, and every control route (made from the routes)."""
    return {
        "what": "Control API of the Telegram Bot API stand-in: play the user's side, look inside.",
        "chat_as_a_user": [
            'POST /_sandbox/send {"user_id": 1001, "text": "/start"}  -- the user sends a message',
            "GET  /_sandbox/chats/1001/messages                      -- the chat as the user sees it",
            'POST /_sandbox/press_button {"user_id": 1001, "text": "<button text>"}  -- tap a button',
            "or simply: onboarding-bot try   (a terminal chat with the real bot and these stand-ins)",
        ],
        "routes": [{"path": route.path, "methods": sorted((route.methods or set()) - {"HEAD"})}
                   for route in routes if route.path.startswith("/_sandbox")],
    }


def create_telegram_app(state: FakeTelegram | None = None) -> Starlette:
    """The Starlette app serving ``/bot<token>/<method>`` and ``/_sandbox/...`` for ``state``."""
    fake = state if state is not None else FakeTelegram()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        fake.attach_loop(asyncio.get_running_loop())
        try:
            yield
        finally:
            await fake.detach_loop()

    async def bot_api(request: Request) -> Response:
        return await fake.handle_api(request.path_params["token"], request.path_params["method"], request)

    routes = [Route("/bot{token}/{method}", bot_api, methods=["GET", "POST"]), *sandbox_routes(fake)]
    index = control_index(routes)

    async def control(request: Request) -> Response:
        return JSONResponse(index)

    routes += [Route("/_sandbox/", control, methods=["GET"]), Route("/_sandbox", control, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.fake = fake
    return app
