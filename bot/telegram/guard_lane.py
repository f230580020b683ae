"""The guard lane: receive updates and delete key-carrying messages on a thread nothing else runs on.

Why: asyncio has no priorities. When the bot's event loop is busy with verifications, database work and
renders, a 1 ms deletion waits behind everything already runnable, and the customer's key stays visible
for as long as the backlog (seconds at a few hundred pastes per second). Here the ``getUpdates`` long poll,
the secret guard and ``deleteMessage`` run on their own thread, with their own event loop and HTTP client;
only then is each update handed to the main loop, in order per chat, with the guard's verdict attached.
The main loop's backlog can delay a verification, never a deletion. And an update is confirmed to
Telegram only once its deletion is done (:class:`Confirmations`), so a process killed mid-deletion
leaves it for the next one. (The GIL still interleaves the two threads; the switch interval is lowered
so the lane waits at most about a millisecond for its turn.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from telegram import Update
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import ExtBot
from telegram.request import HTTPXRequest
from telegram.warnings import PTBUserWarning

from bot.core.ports import DeleteOutcome, GuardVerdict
from bot.telegram.messenger import Messenger
from bot.telegram.request import ObservedRequest
from bot.telegram.secret_guard import SecretGuard, data_carries_secret

__all__ = ["UNCHECKED", "Confirmations", "GuardLane", "Handover"]

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 10  # getUpdates long-poll timeout, as PTB's run_polling uses
BATCH_LIMIT = 100  # getUpdates' own maximum (https://core.telegram.org/bots/api#getupdates)
HOLD_WINDOW = 10  # updates fetched again per poll while a deletion holds the offset, at most
HELD_POLL_S = 0.02  # at most this long between polls while a deletion is under way (it holds the offset)
SWITCH_INTERVAL_S = 0.001  # how long the lane may wait for the GIL (CPython's default is 5 ms)
Handover = Callable[[dict[str, Any], GuardVerdict | None], None]
# Handed over when the lane's guard itself failed on an update (not "nothing to delete"): the main process's
# guard must look at it again, and the webhook intake asks Telegram to send it again instead.
UNCHECKED = GuardVerdict(DeleteOutcome.FAILED, 0.0, 0.0)


def _chat_of(raw: dict[str, Any]) -> int | None:
    """The chat an update belongs to (for in-order hand-over), from the raw JSON."""
    for value in raw.values():
        if isinstance(value, dict):
            chat = value.get("chat") or (value.get("message") or {}).get("chat")
            if isinstance(chat, dict) and isinstance(chat.get("id"), int):
                return int(chat["id"])
    return None


class GuardLane:
    """A thread that long-polls ``getUpdates``, runs the secret guard, and hands updates over."""

    def __init__(self, token: str, base_url: str, allowed_updates: list[str], handover: Handover, *,
                 delete_deadline_s: float, delete_notice_after_s: float,
                 delete_background_s: float = 600.0) -> None:
        self.token = token
        self.base_url = base_url
        self.allowed_updates = allowed_updates
        self.handover = handover
        self.delete_deadline_s = delete_deadline_s
        self.delete_notice_after_s = delete_notice_after_s
        self.delete_background_s = delete_background_s
        self.failure: BaseException | None = None  # why the lane stopped on its own (a rejected token)
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guard-lane", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self.ready = threading.Event()
        self._cancelled = False

    def start(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        # The lane asks for getUpdates' raw JSON (handed to the main loop as it came, parsed there once
        # against the main bot); PTB's Bot.get_updates would parse, bind to this thread's bot, re-serialise.
        warnings.filterwarnings("ignore", message=r"Please use 'Bot\.getUpdates'", category=PTBUserWarning)
        self._thread.start()
        self.ready.wait(30)

    def cancel(self) -> None:
        """Stop polling (from any thread, or a signal handler); :meth:`serve` lets deletions under way finish."""
        self._cancelled = True
        if self._loop is not None and self._main is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._main.cancel)

    def report_waiting(self, waiting: int, received: int) -> None:
        """How many updates wait in the main process. Polling asks Telegram only when it wants more, so it
        ignores this; the webhook intake (bot/web/guard_intake.py) answers 503 above its bound."""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; deletions under way finish (each is bounded by its own deadline)."""
        self.cancel()
        if self._thread.is_alive():  # not when the bot stopped before the lane started (a failed post_init)
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # reported to the main thread, which stops the bot
            self.failure = exc
        finally:
            self.ready.set()
            self.stopped.set()

    async def serve(self) -> None:
        """The lane itself, whatever runs it (this thread, or the guard process: bot/telegram/guard_process.py)."""
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        if self._cancelled:  # stopped before it started
            return
        read_timeout = POLL_TIMEOUT_S + 10.0
        bot: ExtBot[None] = ExtBot(self.token, base_url=f"{self.base_url}/bot",
                                   base_file_url=f"{self.base_url}/file/bot",
                                   request=ObservedRequest(connection_pool_size=64),
                                   get_updates_request=HTTPXRequest(read_timeout=read_timeout))
        guard = SecretGuard(Messenger(bot, bot, delete_deadline_s=self.delete_deadline_s,
                                      delete_slow_after_s=self.delete_notice_after_s,
                                      delete_after_deadline_s=self.delete_background_s))
        pending: set[asyncio.Task[None]] = set()
        try:
            await bot.initialize()
            await self._receive(bot, guard, pending)
        except asyncio.CancelledError:
            pass
        finally:
            if pending:
                await asyncio.wait(pending, timeout=30)
            with contextlib.suppress(Exception):
                await bot.shutdown()

    async def _receive(self, bot: ExtBot[None], guard: SecretGuard, pending: set[asyncio.Task[None]]) -> None:
        """Take updates from Telegram until cancelled: here by ``getUpdates`` (the webhook intake overrides it)."""
        await bot.delete_webhook(drop_pending_updates=False)  # getUpdates answers 409 while one is set
        self.ready.set()
        await self._poll(bot, guard, pending)

    async def _poll(self, bot: ExtBot[None], guard: SecretGuard, pending: set[asyncio.Task[None]]) -> None:
        confirmations = Confirmations(HOLD_WINDOW)
        guarding: set[asyncio.Task[GuardVerdict | None]] = set()
        last_of_chat: dict[int | None, asyncio.Task[None]] = {}
        backoff = 1.0
        while True:
            released, offset = confirmations.released, confirmations.offset()
            if confirmations.released > released:
                log.info("a key deletion is still under way; its update is confirmed so that polls stay cheap")
            try:
                batch = await bot.do_api_request(
                    "getUpdates", api_kwargs={"offset": offset, "limit": BATCH_LIMIT,
                                              "timeout": POLL_TIMEOUT_S, "allowed_updates": self.allowed_updates})
                backoff = 1.0
            except InvalidToken:
                raise
            except RetryAfter as exc:
                await asyncio.sleep(float(exc.retry_after if isinstance(exc.retry_after, int | float)
                                          else exc.retry_after.total_seconds()))
                continue
            except (Conflict, NetworkError, TelegramError) as exc:
                log.warning("getUpdates failed (%s); retrying in %.0f s", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            raws = batch if isinstance(batch, list) else []
            fresh = [raw for raw in raws if confirmations.take(int(raw["update_id"]))]
            for raw in fresh:
                chat = _chat_of(raw)
                guarded = asyncio.create_task(self._guard(bot, guard, raw, confirmations))
                guarding.add(guarded)
                guarded.add_done_callback(guarding.discard)
                task = asyncio.create_task(self._hand_over(raw, guarded, last_of_chat.get(chat)))
                last_of_chat[chat] = task
                pending.add(task)
                task.add_done_callback(pending.discard)
                task.add_done_callback(functools.partial(_forget, last_of_chat, chat))
            if guarding and confirmations.holding:  # let deletions finish before the next offset (a few
                await asyncio.wait(set(guarding), timeout=HELD_POLL_S)  # ms); held updates come back at once

    async def _guard(self, bot: ExtBot[None], guard: SecretGuard, raw: dict[str, Any],
                     confirmations: Confirmations) -> GuardVerdict | None:
        """Delete first; the update may be confirmed to Telegram only after this."""
        try:
            return await self._check(bot, guard, raw)
        finally:
            confirmations.settle(int(raw["update_id"]))

    @staticmethod
    async def _check(bot: ExtBot[None], guard: SecretGuard, raw: dict[str, Any]) -> GuardVerdict | None:
        """Run the secret guard on one raw update (a pasted key is deleted before this returns).

        The raw JSON is looked at first: most updates (button presses, typed steps) hold nothing
        key-shaped, and for them no PTB object is built here at all (0.2-0.3 ms of CPU each)."""
        try:
            if not data_carries_secret(raw):
                return None
            update = Update.de_json(raw, bot)
            await guard.check(update, data=raw)
            return guard.verdict_for(update)
        except Exception:  # the main loop's guard looks at it again (UNCHECKED is never settled there)
            log.exception("guard lane could not check update %s", raw.get("update_id"))
            return UNCHECKED

    async def _hand_over(self, raw: dict[str, Any], guarded: asyncio.Task[GuardVerdict | None],
                         before: asyncio.Task[None] | None) -> None:
        """Hand over once guarded, after the same chat's earlier update (so order is kept)."""
        verdict = await guarded
        if before is not None:
            await asyncio.wait([before])
        self.handover(raw, verdict)


class Confirmations:
    """The ``getUpdates`` offset: it does not pass an update whose deletion is still under way.

    Why: an offset confirms every update below it, and Telegram then forgets them. Were a pasted key's
    deletion still waiting out a flood wait when the process dies, nothing would delete it any more. Held
    back, the update comes again, to the next process (whose guard deletes the key) or to this one (which
    skips what it has seen). The hold is bounded by ``window``: each poll fetches the held updates again,
    so once more than ``window`` updates arrived after the oldest held one (update ids are sequential), the
    offset moves past it. A quiet bot, where a lone paste meets a flood wait, keeps every hold; a burst
    costs at most ``window`` repeated updates per poll.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._unsettled: set[int] = set()
        self._seen: set[int] = set()
        self._next = 0  # one past the newest update seen
        self._floor = 0  # released: confirmed even if unsettled
        self.released = 0  # holds given up (for the log)

    def take(self, update_id: int) -> bool:
        """True the first time ``update_id`` comes (guard it and hand it over), False for a repeat."""
        if update_id in self._seen or update_id < self._floor:
            return False
        self._seen.add(update_id)
        self._unsettled.add(update_id)
        self._next = max(self._next, update_id + 1)
        return True

    def settle(self, update_id: int) -> None:
        """The guard is done with ``update_id`` (deleted, or nothing to delete): it may be confirmed."""
        self._unsettled.discard(update_id)

    @property
    def holding(self) -> bool:
        return any(u >= self._floor for u in self._unsettled)

    def offset(self) -> int:
        held = sorted(u for u in self._unsettled if u >= self._floor)
        while held and self._next - held[0] > self.window:
            self._floor = held.pop(0) + 1
            self.released += 1
        offset = held[0] if held else max(self._next, self._floor)
        self._unsettled = {u for u in self._unsettled if u >= self._floor}
        self._seen = {u for u in self._seen if u >= offset}  # below the offset Telegram never sends again
        return offset


def _forget(last_of_chat: dict[int | None, asyncio.Task[None]], chat: int | None, done: asyncio.Task[None]) -> None:
    if last_of_chat.get(chat) is done:
        del last_of_chat[chat]
