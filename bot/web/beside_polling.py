"""Serve the Mini App while the bot polls: ``onboarding-bot run`` with PUBLIC_BASE_URL set.

Why a second server only for this: in webhook mode the Mini App rides on the webhook server; a polling
bot has no HTTP server, so one is started on WEBHOOK_LISTEN:WEBHOOK_PORT inside PTB's event loop, after
the bot is initialised and stopped before the bot's clients close (no submission can arrive without a
runtime behind it). PTB keeps the process's signal handlers; uvicorn installs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.web.miniapp import miniapp_routes

if TYPE_CHECKING:
    from bot.telegram.application import BotApp

__all__ = ["MiniAppServer", "serve_beside_polling"]

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 10.0


class _QuietSignals(uvicorn.Server):
    """uvicorn without its own signal handlers: PTB's run_polling owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class MiniAppServer:
    """The Mini App routes (and /healthz) on their own uvicorn server inside the running loop."""

    def __init__(self, bot_app: BotApp) -> None:
        async def healthz(request: Request) -> Response:
            return PlainTextResponse("ok")

        settings = bot_app.settings
        app = Starlette(routes=[Route("/healthz", healthz, methods=["GET"]), *miniapp_routes(bot_app)])
        config = uvicorn.Config(app, host=settings.webhook_listen, port=settings.webhook_port, lifespan="off",
                                log_config=None, access_log=False, server_header=False)
        self.server = _QuietSignals(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(), name="miniapp-server")
        while not self.server.started and not self._task.done():  # noqa: ASYNC110 - uvicorn exposes a flag only
            await asyncio.sleep(0.01)
        if self._task.done():  # e.g. the port is taken: say so, the bot itself keeps running
            log.error("the Mini App server did not start on %s:%s", self.server.config.host,
                      self.server.config.port)

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, STOP_TIMEOUT_S)


def serve_beside_polling(bot_app: BotApp) -> MiniAppServer:
    """Start the server after the bot's post_init and stop it first on post_stop."""
    server = MiniAppServer(bot_app)
    application = bot_app.application
    post_init: Callable[[Any], Awaitable[None]] | None = application.post_init
    post_stop: Callable[[Any], Awaitable[None]] | None = application.post_stop

    async def started(app: Any) -> None:
        if post_init is not None:
            await post_init(app)
        await server.start()

    async def stopping(app: Any) -> None:
        await server.stop()
        if post_stop is not None:
            await post_stop(app)

    application.post_init = started
    application.post_stop = stopping
    return server
