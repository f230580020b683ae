"""See every Bot API call the moment the stand-in finishes it, without scanning the call log.

Why: a benchmark with thousands of simulated chats cannot ask ``FakeTelegram.calls()`` (a copy of the
whole log) after every step. ``TappedTelegram`` hands each finished ``CallRecord`` to a ``CallTap``,
which runs on the benchmark's event loop and wakes exactly the chats the call was about. Timing comes
from the stand-in's own ``time.monotonic()`` stamps, so a slow driver never inflates a figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.standins.telegram import FakeTelegram
from bot.standins.telegram_world import CallRecord

__all__ = ["CallTap", "Expect", "TapTimeout", "TappedTelegram", "method_is"]

Predicate = Callable[[CallRecord], bool]


class TapTimeout(TimeoutError):
    """The bot did not make the expected call in time."""


class TappedTelegram(FakeTelegram):
    """The Bot API stand-in, unchanged, plus a hook that sees each call once it has been answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tap: CallTap | None = None

    def _finish(self, record: CallRecord, error: Any) -> None:
        super()._finish(record, error)
        tap = self.tap
        if tap is not None:
            tap.push(record)


@dataclass
class Expect:
    """One awaited call in one chat."""

    predicate: Predicate
    future: asyncio.Future[CallRecord]


@dataclass
class CallTap:
    """Routes finished calls (from the stand-in's thread) to waiters on ``loop``, per chat."""

    loop: asyncio.AbstractEventLoop
    listeners: list[Callable[[CallRecord], None]] = field(default_factory=list)
    calls_per_chat: Counter[int] = field(default_factory=Counter)
    calls_per_method: Counter[str] = field(default_factory=Counter)
    failed_calls: Counter[str] = field(default_factory=Counter)
    polls: int = 0  # finished getUpdates calls
    last_call_at: dict[int, float] = field(default_factory=dict)  # per chat, monotonic when routed

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._inbox: deque[CallRecord] = deque()
        self._scheduled = False
        self._waiters: dict[int, list[Expect]] = {}

    def push(self, record: CallRecord) -> None:
        """Called from any thread; batches records into one callback on the benchmark loop."""
        with self._lock:
            self._inbox.append(record)
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the benchmark loop is gone (shutting down)
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            batch = list(self._inbox)
            self._inbox.clear()
            self._scheduled = False
        for record in batch:
            self._route(record)

    def _route(self, record: CallRecord) -> None:
        method = record.method
        if method.lower() == "getupdates":
            self.polls += 1
        else:
            self.calls_per_method[method] += 1
            if not record.ok:
                self.failed_calls[method] += 1
        for listener in self.listeners:
            listener(record)
        chat = record.chat_id
        if chat is None:
            return
        self.calls_per_chat[chat] += 1
        self.last_call_at[chat] = time.monotonic()
        waiters = self._waiters.get(chat)
        if not waiters:
            return
        keep: list[Expect] = []
        for waiter in waiters:
            if waiter.future.done():
                continue
            if waiter.predicate(record):
                waiter.future.set_result(record)
            else:
                keep.append(waiter)
        if keep:
            self._waiters[chat] = keep
        else:
            del self._waiters[chat]

    def expect(self, chat_id: int, predicate: Predicate) -> asyncio.Future[CallRecord]:
        """Register interest *before* acting, so a fast answer cannot be missed."""
        future: asyncio.Future[CallRecord] = self.loop.create_future()
        self._waiters.setdefault(chat_id, []).append(Expect(predicate, future))
        return future

    async def wait(self, future: asyncio.Future[CallRecord], timeout: float, what: str) -> CallRecord:
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TapTimeout(f"timed out after {timeout:g} s waiting for {what}") from None

    async def quiet(self, chat_id: int, quiet_s: float = 0.05, timeout: float = 10.0) -> None:
        """Wait until the bot has made no call about ``chat_id`` for ``quiet_s`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = time.monotonic() - self.last_call_at.get(chat_id, 0.0)
            if idle >= quiet_s:
                return
            await asyncio.sleep(quiet_s - idle)

    def forget(self, chat_id: int) -> None:
        """Drop a chat's pending waiters (a simulated user gave up)."""
        for waiter in self._waiters.pop(chat_id, []):
            waiter.future.cancel()


def method_is(*names: str) -> Callable[[CallRecord], bool]:
    wanted = {name.lower() for name in names}
    return lambda record: record.method.lower() in wanted
