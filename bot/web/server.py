"""The webhook server: Telegram's POSTs, health and readiness probes, Prometheus metrics.

Pattern: PTB's ``examples/customwebhookbot/starlettebot.py`` (Starlette + uvicorn around an Application
that has no Updater running), changed in three ways (shared/reference/telegram-bot-api.md section 4.3):

1. The ``X-Telegram-Bot-Api-Secret-Token`` header is compared in constant time before the body is read;
   a missing or wrong token gets 403 and nothing is parsed, logged or processed.
2. The update is processed *inline*, before answering, instead of ``update_queue.put`` + 200 (which is
   at-most-once: a replica dying after the 200 loses the update). It goes through the same update
   processor as polling, so the secret guard deletes a pasted key first; then the handler steps the
   conversation under the per-chat locks and commits the state together with the ``update_id`` claim.
   That takes tens of milliseconds; the slow part (OpenAI, DoubleTick) continues as the runtime's
   background pipeline, so Telegram is answered well inside its 60 s.
3. Failure semantics: a transient failure (database, network, lock timeout) answers 503 with
   ``Retry-After``, so Telegram redelivers and the update is not lost; its claim was never committed,
   so the redelivery is processed. Any other failure is a "poison" update: answered 200 after logging
   (never its content), because a non-2xx would block that chat's queue at Telegram for up to a day.
   Duplicates (Telegram retries, a load balancer retrying on another replica) find the committed
   claim and are skipped.

Because Telegram sends one update per chat at a time and waits for our answer, processing before
answering also keeps each chat's updates in order.

``WEBHOOK_ANSWER=after_guard`` trades that for speed under bursts: the secret guard deletes a pasted key,
the update joins the application's queue (handled like a polled one, a transient failure retried by
:class:`~bot.telegram.redelivery.Redelivery`) and Telegram gets its 200 at once. Telegram holds at most
``max_connections`` deliveries open, so when processing falls behind, answering only after processing
makes every later update, pasted keys included, wait at Telegram for a free connection: 13.5 s p99 at 200
pastes/s in the bench. A crash loses what waits in the queue, as in polling; a queue longer than
``WEBHOOK_QUEUE_MAX`` is answered 503 (after the guard), so Telegram keeps the rest of a burst.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from telegram import Update

from bot.metrics import CONTENT_TYPE, record_webhook, refresh_from_database, render
from bot.telegram.redelivery import is_transient
from bot.web.guard_port import waiting_updates, webhook_lane
from bot.web.limits import FailedAuthThrottle
from bot.web.webhook_request import MAX_UPDATE_BYTES, RETRY_AFTER_S, SECRET_HEADER, Refusal, read_update
from flows.steps import Step
from storage.db import session_factory
from storage.migrate import alembic_config

if TYPE_CHECKING:
    from bot.telegram.application import BotApp

__all__ = [
    "DEFAULT_WEBHOOK_PATH",
    "MAX_UPDATE_BYTES",
    "SECRET_HEADER",
    "WebState",
    "create_web_app",
    "is_transient",
]

log = logging.getLogger(__name__)

DEFAULT_WEBHOOK_PATH = "/telegram"
PROBE_TIMEOUT_S = 3.0
DRAIN_TIMEOUT_S = 20.0

_failures: ContextVar[list[BaseException] | None] = ContextVar("webhook_failures", default=None)


@dataclass
class WebState:
    """Mutable server state: ``stopping`` turns /readyz red and refuses new updates during shutdown.

    ``failure`` is why the server stops on its own (the guard lane's webhook intake died); ``request_stop``
    asks the process runner to shut the server down (unset when an ASGI client drives the app in tests).
    """

    stopping: bool = False
    failure: BaseException | None = None
    request_stop: Callable[[], None] | None = None
    shared_port: bool = False  # ``--workers``: the guard lanes' webhook port is shared too (SO_REUSEPORT)

    def fail(self, error: BaseException) -> None:
        self.failure = error
        self.stop()

    def stop(self) -> None:
        self.stopping = True
        if self.request_stop is not None:
            self.request_stop()


async def _note_failure(update: object, context: Any) -> None:
    """PTB error handler: hand the error of the update being processed inline back to the endpoint."""
    failures = _failures.get()
    if failures is not None and context.error is not None:
        failures.append(context.error)


def _parse_update(raw: dict[str, Any], bot: Any) -> Update | None:
    """The update in ``raw``, or None if PTB cannot read it (never logged: it may hold a key)."""
    try:
        return Update.de_json(raw, bot)
    except Exception:
        return None


def _heads(connection: Connection) -> set[str]:
    """The revisions the database is at (read directly: Alembic's context logs at INFO on every probe)."""
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return {str(row[0]) for row in connection.execute(text("SELECT version_num FROM alembic_version"))}


def create_web_app(bot_app: BotApp, *, webhook_path: str = DEFAULT_WEBHOOK_PATH,
                   extra_routes: Iterable[BaseRoute] = (), state: WebState | None = None) -> Starlette:
    """The ASGI app for ``bot_app``: starts and stops the bot with the server (lifespan).

    ``extra_routes`` are mounted beside ours (e.g. the support-agent handoff API). ``state`` lets the
    process runner flip ``stopping`` as soon as SIGTERM arrives.
    """
    application = bot_app.application
    settings = bot_app.settings
    if settings.webhook_secret_token is None:
        raise SystemExit("WEBHOOK_SECRET_TOKEN is not set: without it anyone could post forged updates.")
    expected_secret = settings.webhook_secret_token.get_secret_value().encode()
    web = state or WebState()
    engine = bot_app.engine
    sessions = session_factory(engine) if engine is not None else None
    scripts = ScriptDirectory.from_config(alembic_config())
    expected_heads = set(scripts.get_heads())
    known_revisions = {revision.revision for revision in scripts.walk_revisions()}
    known_steps = [step.value for step in Step]
    if _note_failure not in application.error_handlers:
        application.add_error_handler(_note_failure)

    def unavailable(reason: str) -> Response:
        record_webhook("unavailable")
        return PlainTextResponse(reason, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    async def telegram(request: Request) -> Response:
        raw = await read_update(request, expected_secret)
        if isinstance(raw, Refusal):
            record_webhook(raw.outcome)
            return PlainTextResponse(raw.reason, status_code=raw.status)
        update = _parse_update(raw, application.bot)
        if update is None:
            record_webhook("bad_request")
            return PlainTextResponse("not an update", status_code=400)
        if web.stopping:
            # Delete first, even now: a pasted key must not stay visible until Telegram redelivers the
            # update (to a replica that is up); the redelivery finds it gone and goes on as usual.
            guard = getattr(application.update_processor, "guard", None)
            if guard is not None:
                try:
                    await guard.check(update)
                except Exception as error:
                    log.warning("guard failed while shutting down: %s", type(error).__name__)
            return unavailable("shutting down")
        if settings.webhook_answer == "after_guard":
            return await accept(update)
        return await process(update)

    async def accept(update: Update) -> Response:
        """Delete a pasted key, queue the update, answer 200 (or 503 when the queue is full or the guard
        failed: Telegram delivers it again, and a key already deleted is found gone)."""
        guard = getattr(application.update_processor, "guard", None)
        try:
            if guard is not None:
                await guard.check_ahead(update)
        except Exception as error:
            log.warning("guard failed for update %s (%s); asking Telegram to redeliver", update.update_id,
                        type(error).__name__)
            return unavailable("try again")
        if waiting_updates(application) >= settings.webhook_queue_max:
            return unavailable("busy")
        await application.update_queue.put(update)
        record_webhook("accepted")
        return Response(status_code=200)

    async def process(update: Update) -> Response:
        token = _failures.set([])
        try:
            # The processor runs the secret guard first, exactly as for polled updates.
            await application.update_processor.process_update(update, application.process_update(update))
            failures = list(_failures.get() or [])
        except Exception as error:  # the guard itself failed (the handlers' errors go to _note_failure)
            failures = [error]
        finally:
            _failures.reset(token)
        if any(is_transient(error) for error in failures):
            log.warning("update %s failed transiently (%s); asking Telegram to redeliver", update.update_id,
                        ", ".join(sorted({type(error).__name__ for error in failures})))
            return unavailable("try again")
        if failures:
            log.error("update %s failed (%s); acknowledged so it cannot block the chat", update.update_id,
                      ", ".join(sorted({type(error).__name__ for error in failures})))
        record_webhook("failed" if failures else "accepted")
        return Response(status_code=200)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if web.stopping:
            return PlainTextResponse("stopping", status_code=503)
        if engine is None:
            return PlainTextResponse("no database", status_code=503)
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S), engine.connect() as connection:
                heads = await connection.run_sync(_heads)
        except Exception as error:
            log.warning("readiness: database unreachable (%s)", type(error).__name__)
            return PlainTextResponse("database unreachable", status_code=503)
        # A database ahead of this code (a newer replica migrated during a rolling update) is fine:
        # migrations are additive, and turning every old pod unready would break the rollout.
        newer = bool(heads) and not heads <= known_revisions
        if heads != expected_heads and not newer:
            return PlainTextResponse("database migrations are not current", status_code=503)
        return PlainTextResponse("ready")

    async def metrics(request: Request) -> Response:
        if sessions is not None:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await refresh_from_database(sessions, bot_app.runtime.pipelines_running, known_steps)
            except Exception as error:  # counters are still worth serving without the database gauges
                log.warning("metrics: database gauges not refreshed (%s)", type(error).__name__)
        return Response(render(), media_type=CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await application.initialize()
        await application.start()  # its queue takes what after_guard or the guard lane's intake hands over
        if application.post_init is not None:
            await application.post_init(application)  # commands, delete bot, outbox worker
        try:
            async with webhook_lane(bot_app, webhook_path, shared_port=web.shared_port, on_failure=web.fail,
                                    on_stop=web.stop):
                yield
        finally:
            web.stopping = True
            bot_app.runtime.stop_queued()
            await bot_app.runtime.drain(DRAIN_TIMEOUT_S)
            await application.stop()
            await bot_app.close()
            await application.shutdown()

    routes: list[BaseRoute] = [
        Route(webhook_path, telegram, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *extra_routes,
    ]
    # failed bearer tokens on the handoff API are throttled per client address (bot.web.limits)
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(FailedAuthThrottle, prefix="/api/")])
    app.state.web = web
    app.state.bot_app = bot_app
    return app
