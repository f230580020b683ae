"""Run the bot with its updates arriving through a guard lane: on a thread or in a process.

Why its own module: the lane (:func:`~bot.telegram.guard_process.build_lane`: polling ``getUpdates``, or
the webhook intake) runs on a thread of the bot or in the guard process's child; choosing where, and
wiring it to the application (the hand-over), lives above both.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from telegram import Update

from bot.core.ports import GuardVerdict
from bot.telegram.guard_lane import UNCHECKED, Handover
from bot.telegram.secret_guard import SecretGuard

__all__ = ["Lane", "handover_to", "make_lane", "serve_with_lane"]

if TYPE_CHECKING:
    from bot.web.guard_intake import IntakeConfig


class Lane(Protocol):
    """What :func:`serve_with_lane` needs of a lane runner: the thread above, or the guard process."""

    failure: BaseException | None
    stopped: threading.Event

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...

    def report_waiting(self, waiting: int, received: int) -> None: ...


def make_lane(mode: str, settings: Any, allowed_updates: list[str], handover: Handover, *,
              intake: IntakeConfig | None = None, outcome: Callable[[str], None] | None = None) -> Lane:
    """The lane runner for ``GUARD_LANE`` (``thread`` or ``process``); with ``intake``, it takes webhook POSTs."""
    from bot.telegram.guard_process import GuardProcess, LaneConfig, build_lane

    config = LaneConfig(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base_url,
                        allowed_updates, settings.telegram_delete_deadline_s, settings.telegram_delete_notice_after_s,
                        settings.telegram_delete_background_s, log_level=settings.log_level,
                        redact=settings.secrets_to_redact(), intake=intake)
    if mode == "process":
        return GuardProcess(config, handover, outcome)
    return build_lane(config, handover, outcome)


def handover_to(application: Any, loop: asyncio.AbstractEventLoop,
                on_queued: Callable[[], None] | None = None) -> Handover:
    """The lane's handover (from its thread): the update joins the application's queue on ``loop``, with the
    guard's verdict settled first so the main loop's guard does not check it again (unless the lane's guard
    failed on it: UNCHECKED). ``on_queued`` runs on ``loop`` once the update is in the queue."""
    main_guard: SecretGuard | None = getattr(application.update_processor, "guard", None)

    def deliver(raw: dict[str, Any], verdict: GuardVerdict | None) -> None:
        update = Update.de_json(raw, application.bot)
        if main_guard is not None and verdict is not UNCHECKED:
            main_guard.settle(update.update_id, verdict)
        application.update_queue.put_nowait(update)
        if on_queued is not None:
            on_queued()

    def handover(raw: dict[str, Any], verdict: GuardVerdict | None) -> None:
        loop.call_soon_threadsafe(deliver, raw, verdict)

    return handover


async def serve_with_lane(bot_app: Any, allowed_updates: list[str], *, stop: asyncio.Event | None = None,
                          mode: str | None = None) -> None:
    """Run the bot with updates arriving through a guard lane instead of PTB's updater (polling mode).

    ``bot_app`` is the :class:`~bot.telegram.application.BotApp`; ``stop`` ends the run (SIGINT and SIGTERM
    set it when this runs in the main thread); ``mode`` is ``thread`` or ``process`` (default: the
    ``GUARD_LANE`` setting).
    """
    application = bot_app.application
    settings = bot_app.settings
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    await application.initialize()
    lane = make_lane(mode or settings.guard_lane, settings, allowed_updates, handover_to(application, loop))
    try:
        if application.post_init is not None:
            await application.post_init(application)
        await application.start()
        lane.start()
        if lane.failure is not None:
            raise lane.failure
        watch = asyncio.ensure_future(asyncio.to_thread(lane.stopped.wait))
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([watch, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if lane.failure is not None:
            raise lane.failure
    finally:
        await asyncio.to_thread(lane.stop)
        if application.running:
            await application.stop()
        if application.post_stop is not None:
            await application.post_stop(application)
        await application.shutdown()
