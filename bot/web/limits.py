"""Limits of the HTTP server: slow clients are cut off, connections capped, failed tokens throttled.

Why: a security review held 200 of 200 slow-header connections open for 40 s (uvicorn has no header or
body timeout: its keep-alive timer runs only *between* requests, and any byte cancels it), and answered 300
wrong bearer tokens on ``/api/handoffs`` in 0.2 s. Telegram opens at most 100 connections
(``max_connections``), each sending one small update, so tight limits cost it nothing.

* :class:`TimedH11Protocol`: uvicorn's h11 protocol with a deadline for the request head (from its first
  byte, or from the connection's start) and one for the body; past it the connection is closed.
* :func:`server_config`: uvicorn with that protocol, ``limit_concurrency`` (503 above it), a short
  keep-alive, a 16 KiB cap on the request head (``h11_max_incomplete_event_size``).
* :class:`FailedAuthThrottle`: per client address, after a few 401s in a window every request to the
  guarded paths answers 429 until the window passes (right tokens too: a guesser gets no signal).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "BODY_TIMEOUT_S",
    "HEADER_TIMEOUT_S",
    "KEEP_ALIVE_S",
    "LIMIT_CONCURRENCY",
    "MAX_HEAD_BYTES",
    "FailedAuthThrottle",
    "TimedH11Protocol",
    "server_config",
    "timed_protocol",
]

HEADER_TIMEOUT_S = 10.0  # Telegram sends its request head in one packet
BODY_TIMEOUT_S = 20.0  # updates are a few KB (the webhook refuses more than 1 MiB)
KEEP_ALIVE_S = 5.0
LIMIT_CONCURRENCY = 256  # above Telegram's 100 connections, probes and the handoff API
MAX_HEAD_BYTES = 16 * 1024


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines for reading a request's head and its body."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm("head", self.header_timeout_s)  # a connection that never sends a byte is cut off too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # between requests uvicorn's keep-alive timer watches; the next byte re-arms ours
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the deadline of the phase the client is in: sending a head, a body, or done."""
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.trailing_data[0]:
            self._arm("head", self.header_timeout_s)  # part of a next request's head has arrived
        elif state is h11.SEND_BODY:
            self._arm("body", self.body_timeout_s)
        elif state is not h11.IDLE:
            self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        if self._phase == phase:
            return  # a deadline is not pushed back by trickled bytes
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._too_slow, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, None

    def _too_slow(self, phase: str) -> None:
        if self._phase != phase or self.transport.is_closing():
            return
        self.logger.info("closing a connection that was too slow sending its request %s", phase)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def timed_protocol(header_timeout_s: float = HEADER_TIMEOUT_S,
                   body_timeout_s: float = BODY_TIMEOUT_S) -> type[TimedH11Protocol]:
    """The protocol class with these deadlines (uvicorn instantiates the class itself)."""
    return type("TimedH11Protocol", (TimedH11Protocol,),
                {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s})


def server_config(app: Any, host: str, port: int, *, header_timeout_s: float = HEADER_TIMEOUT_S,
                  body_timeout_s: float = BODY_TIMEOUT_S, limit_concurrency: int = LIMIT_CONCURRENCY,
                  **extra: Any) -> uvicorn.Config:
    """uvicorn's configuration with every limit above; ``extra`` passes other options through."""
    return uvicorn.Config(app, host=host, port=port, http=timed_protocol(header_timeout_s, body_timeout_s),
                          limit_concurrency=limit_concurrency, timeout_keep_alive=int(KEEP_ALIVE_S),
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES, **extra)


class FailedAuthThrottle:
    """ASGI middleware: too many 401 answers to one client address on ``prefix`` paths → 429 for a while.

    Per process (memory): with several replicas each keeps its own count, which still turns a guesser's
    thousands of tries per second into a few per minute per replica.
    """

    def __init__(self, app: Any, *, prefix: str = "/api/", max_failures: int = 10, window_s: float = 60.0,
                 max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.prefix = prefix
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def _record(self, client: str, now: float) -> None:
        times = self._failures.setdefault(client, deque(maxlen=self.max_failures))
        times.append(now)
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        now = self.clock()
        recent = self._recent(client, now)
        if len(recent) >= self.max_failures:
            retry = max(1, int(recent[0] + self.window_s - now + 0.999))
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(retry).encode()),
                                    (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body",
                        "body": b'{"error": "too_many_failures", "message": "too many failed attempts"}'})
            return
        status: list[int] = []

        async def watching_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watching_send)
        if status and status[0] == 401:
            self._record(client, self.clock())
