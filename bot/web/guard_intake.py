"""Telegram's webhook POSTs taken by the guard lane (``WEBHOOK_GUARD_PORT``): nothing can starve a deletion.

Why: in webhook mode the POST used to reach the bot's main event loop, and Telegram holds at most
``max_connections`` (40 by default) deliveries open. Once verifications fill the loop, a POST carrying a key
waits for the loop to read it, or at Telegram for a free connection (7.3 s p99 at 200 pastes/s in the full
bench, answering after processing). Here the webhook has a port of its own, served by the guard lane (the
guard process by default, else its thread) with its own event loop and HTTP client: the POST is checked
(secret token, JSON, size), a pasted key is deleted, the update goes to the main process as a polled one
does (in order: Telegram sends a chat's next update only after this answer), and Telegram hears 200.

What it trades: the update is then in the main process's queue, so a crash of the main process loses
what waits there, as in polling (transient failures are retried in-process by
:class:`~bot.telegram.redelivery.Redelivery`). When more updates wait than ``WEBHOOK_QUEUE_MAX`` (the main
process reports its queue every 50 ms), the key is still deleted and the POST answered 503 with
``Retry-After``, so Telegram keeps the rest of the burst. WEBHOOK_PORT goes on serving the Mini App, the
agents' API, probes, metrics, and the webhook path itself (processed inline), so a proxy in front routes
only the webhook path here (README, "Webhook intake on the guard process").
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from telegram.ext import ExtBot

from bot.telegram.guard_lane import UNCHECKED, GuardLane, Handover
from bot.telegram.secret_guard import SecretGuard
from bot.web.limits import server_config
from bot.web.webhook_request import RETRY_AFTER_S, Refusal, read_update

__all__ = ["IntakeConfig", "WebhookIntake", "listening_socket"]

GRACEFUL_S = 25  # POSTs under way (each at most a deletion) finish within this on stop
Outcome = Callable[[str], None]  # told "forbidden", "bad_request" or "unavailable" (for /metrics)


@dataclass(frozen=True)
class IntakeConfig:
    """Where and how the lane takes webhook POSTs (pickled to the guard process with its LaneConfig)."""

    host: str
    port: int
    path: str
    secret: str
    queue_max: int
    reuse_port: bool = False  # ``--workers``: every worker's lane listens on the same port


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound, listening TCP socket (SO_REUSEPORT when several processes share the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


class _LaneServer(uvicorn.Server):
    """uvicorn inside the lane: the lane's own stop ends it, never a signal of its own."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # SIGTERM is the lane's (child_main), and SIGINT the parent's


class WebhookIntake(GuardLane):
    """The guard lane, receiving by webhook instead of ``getUpdates``."""

    def __init__(self, token: str, base_url: str, intake: IntakeConfig, handover: Handover, *,
                 outcome: Outcome | None = None, **deadlines: float) -> None:
        super().__init__(token, base_url, [], handover, **deadlines)
        self.intake = intake
        self.outcome = outcome or (lambda _: None)
        self._secret = intake.secret.encode()
        self._server: _LaneServer | None = None
        self._waiting = 0  # the main process's last report: updates queued or being processed there
        self._received = 0  # ... and how many it had received from this lane by then
        self._handed = 0  # how many this lane has handed over

    def report_waiting(self, waiting: int, received: int) -> None:
        """The main process's queue and what it received (from any thread): what waits there is
        ``waiting`` plus what was handed over since (in the pipe), never more, however old the report."""
        self._waiting, self._received = waiting, received

    def cancel(self) -> None:
        """Stop taking POSTs; those under way finish (uvicorn's graceful shutdown), then :meth:`serve` ends."""
        self._cancelled = True
        if self._server is not None:
            self._server.should_exit = True  # a flag uvicorn's main loop reads every 0.1 s

    async def _receive(self, bot: ExtBot[None], guard: SecretGuard, pending: set[asyncio.Task[None]]) -> None:
        async def telegram(request: Request) -> Response:
            return await self._accept(request, bot, guard)

        app = Starlette(routes=[Route(self.intake.path, telegram, methods=["POST"])])
        config = server_config(app, self.intake.host, self.intake.port, lifespan="off", log_config=None,
                               access_log=False, server_header=False, timeout_graceful_shutdown=GRACEFUL_S)
        self._server = _LaneServer(config, self.ready.set)
        if self._cancelled:
            return
        sock = listening_socket(self.intake.host, self.intake.port, reuse_port=self.intake.reuse_port)
        try:
            await self._server.serve(sockets=[sock])
        finally:
            sock.close()
        if not self._server.started:
            raise OSError(f"the webhook intake could not listen on {self.intake.host}:{self.intake.port}")

    async def _accept(self, request: Request, bot: ExtBot[None], guard: SecretGuard) -> Response:
        """Check the POST, delete a pasted key, hand the update over, answer (200, or 503 to be sent again)."""
        raw = await read_update(request, self._secret)
        if isinstance(raw, Refusal):
            return self._refuse(raw.outcome, raw.status, raw.reason)
        verdict = await self._check(bot, guard, raw)  # the key is gone (or its deletion is under way)
        if verdict is UNCHECKED:  # the guard itself failed: Telegram sends it again, and the guard retries
            return self._refuse("unavailable", 503, "try again")
        if self._cancelled:
            return self._refuse("unavailable", 503, "shutting down")
        if self._waiting + (self._handed - self._received) >= self.intake.queue_max:
            return self._refuse("unavailable", 503, "busy")
        self._handed += 1
        self.handover(raw, verdict)
        return Response(status_code=200)

    def _refuse(self, outcome: str, status: int, reason: str) -> Response:
        self.outcome(outcome)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return PlainTextResponse(reason, status_code=status, headers=headers)

