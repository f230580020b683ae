"""The main process's side of the webhook intake on the guard lane (``WEBHOOK_GUARD_PORT``).

Why its own module: the web server's lifespan starts it beside the bot and stops it first on the way
down, and three small duties come with it: every update the lane hands over joins the application's
queue (as in polling), the lane hears every 50 ms how many updates wait here (it answers 503 above
``WEBHOOK_QUEUE_MAX``), and a lane that dies stops the server (no updates would arrive any more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from bot.core.ports import GuardVerdict
from bot.metrics import record_webhook
from bot.telegram.lane_runner import Lane, handover_to, make_lane
from bot.web.guard_intake import IntakeConfig

if TYPE_CHECKING:
    from bot.telegram.application import BotApp

__all__ = ["REPORT_EVERY_S", "waiting_updates", "webhook_lane"]

log = logging.getLogger(__name__)

REPORT_EVERY_S = 0.05  # how stale the lane's view of this process's queue may be


def waiting_updates(application: Any) -> int:
    """Updates queued here or being processed (PTB takes every queued update at once; its processor
    bounds the handlers, not the queue, so both count)."""
    return int(application.update_queue.qsize()) + int(getattr(application.update_processor, "in_flight", 0))


@asynccontextmanager
async def webhook_lane(bot_app: BotApp, path: str, *, shared_port: bool, on_failure: Callable[[BaseException], None],
                       on_stop: Callable[[], None]) -> AsyncIterator[Lane | None]:
    """Run the intake while the server runs (nothing when ``WEBHOOK_GUARD_PORT`` is unset); a lane that
    stops on its own stops the server: ``on_failure`` when it failed, ``on_stop`` when it was told to."""
    settings = bot_app.settings
    if settings.webhook_guard_port is None:
        yield None
        return
    if settings.guard_lane == "off":
        raise SystemExit("WEBHOOK_GUARD_PORT needs the guard lane: set GUARD_LANE=process (the default) or thread.")
    assert settings.webhook_secret_token is not None  # create_web_app refuses to start without it
    application = bot_app.application
    received = 0

    def queued() -> None:  # on the loop, once the update is in the queue: the report never misses it
        nonlocal received
        received += 1

    deliver = handover_to(application, asyncio.get_running_loop(), on_queued=queued)

    def handover(raw: dict[str, Any], verdict: GuardVerdict | None) -> None:  # on the lane's reader thread
        deliver(raw, verdict)
        record_webhook("accepted")

    intake = IntakeConfig(settings.webhook_listen, settings.webhook_guard_port, path,
                          settings.webhook_secret_token.get_secret_value(), settings.webhook_queue_max,
                          reuse_port=shared_port)
    lane = make_lane(settings.guard_lane, settings, [], handover, intake=intake, outcome=record_webhook)
    await asyncio.to_thread(lane.start)
    if lane.failure is not None:
        await asyncio.to_thread(lane.stop)
        raise lane.failure
    stopping = False

    async def report() -> None:
        last = (-1, -1)
        while True:
            now = (waiting_updates(application), received)  # both read on the loop: one consistent view
            if now != last:
                lane.report_waiting(*now)
                last = now
            await asyncio.sleep(REPORT_EVERY_S)

    async def watch() -> None:
        await asyncio.to_thread(lane.stopped.wait)
        if stopping:
            return
        if lane.failure is None:  # told to stop on its own (a SIGTERM sent to the whole process group)
            log.info("the webhook intake stopped; the server stops too")
            on_stop()
        else:
            log.error("the webhook intake stopped (%s); the server stops too", type(lane.failure).__name__)
            on_failure(lane.failure)

    tasks = [asyncio.create_task(report()), asyncio.create_task(watch())]
    try:
        yield lane
    finally:
        stopping = True
        for task in tasks:  # first: a report sent while the lane stops could fill a pipe nobody reads
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.to_thread(lane.stop)  # POSTs under way finish; what they handed over joins the queue
