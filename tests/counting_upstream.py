"""A far side for ``httpx.MockTransport`` that answers after a delay and remembers the most requests it ever
had open at once: the gates' bound measured where it matters, at the network boundary."""

from __future__ import annotations

import asyncio

import httpx


class CountingUpstream:
    """Subclasses say what to answer (:meth:`answer`); this counts open and served requests."""

    def __init__(self, delay_s: float = 0.02) -> None:
        self.delay_s = delay_s
        self.open = 0
        self.most_open = 0
        self.served = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.open -= 1
        self.served += 1
        return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})
