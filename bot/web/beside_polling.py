"""Serve the Mini App while the bot polls: ``onboarding-bot run`` with PUBLIC_BASE_URL set.

Why a second server only for this: in webhook mode the Mini App rides on the webhook server; a polling
bot has no HTTP server, so one is started on WEBHOOK_LISTEN:WEBHOOK_PORT inside PTB's event loop, after
the bot is initialised and stopped before the bot's clients close (no submission can arrive without a
runtime behind it). PTB keeps the process's signal handlers; uvicorn installs none. It is as public as
the webhook server, so it has the same limits (:func:`bot.web.limits.server_config`: header and body
deadlines, a cap on connections and on the request head), and a bot that cannot serve it does not start:
its paste step would offer a button that leads nowhere.
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

from bot.web.limits import server_config
from bot.web.miniapp import miniapp_routes

if TYPE_CHECKING:
    from bot.telegram.application import BotApp

__all__ = ["MiniAppServer", "MiniAppServerFailed", "serve_beside_polling"]

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 10.0


class MiniAppServerFailed(RuntimeError):
    """The Mini App server could not start (the bot must not offer its button then)."""


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
        config = server_config(app, settings.webhook_listen, settings.webhook_port, lifespan="off",
                               log_config=None, access_log=False, server_header=False)
        self.server = _QuietSignals(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="miniapp-server")
        while not self.server.started and not self._task.done():  # noqa: ASYNC110 - uvicorn exposes a flag only
            await asyncio.sleep(0.01)
        if self._task.done():  # e.g. the port is taken: PTB ends run_polling with this error
            raise MiniAppServerFailed(f"the Mini App server could not listen on {self.server.config.host}:"
                                      f"{self.server.config.port} (WEBHOOK_LISTEN / WEBHOOK_PORT); "
                                      "free the port or unset PUBLIC_BASE_URL")

    async def _serve(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn's answer to a port it cannot bind: start() says why
            await self.server.serve()

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
