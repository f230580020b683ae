"""A background job that repeats one pass every few seconds until it is told to stop.

Why one base: the outbox worker, the retention housekeeping and the stuck-customer watch share the same
loop (a failing pass is logged and retried next time; ``stop`` ends the wait at once, for a quick
graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["CallbackJob", "PeriodicJob"]

log = logging.getLogger(__name__)


class PeriodicJob:
    """Subclasses implement :meth:`run_once`; ``interval_s`` is the pause between passes."""

    name = "periodic job"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stopping = asyncio.Event()

    async def run_once(self) -> object:
        raise NotImplementedError

    async def run(self) -> None:
        """Repeat passes until :meth:`stop` is called."""
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("%s pass failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval_s)

    def stop(self) -> None:
        self._stopping.set()


class CallbackJob(PeriodicJob):
    """A periodic job whose pass is a given coroutine function."""

    def __init__(self, name: str, interval_s: float, run_pass: Callable[[], Awaitable[object]]) -> None:
        super().__init__(interval_s)
        self.name = name
        self._run_pass = run_pass

    async def run_once(self) -> object:
        return await self._run_pass()
