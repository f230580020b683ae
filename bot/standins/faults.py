"""Fault injection shared by the OpenAI and DoubleTick stand-ins.

Why: fault drills and client tests need the same failures real networks produce (5xx bursts, 429 with
``Retry-After``, requests that hang past the client timeout, connections dropped mid-request), drawn
at configurable rates from a seedable RNG so a drill can be replayed.

Each stand-in decides *what* body a fault carries (the services word their errors differently); this
module only draws the fault, hangs, and drops connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

import anyio
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RAW_SEND_SCOPE_KEY", "Fault", "FaultConfig", "RawSendMiddleware", "drop_connection", "hang"]

# The server's own ``send`` callable, stashed in the scope by RawSendMiddleware so a handler can reach
# the transport underneath Starlette's wrapped ``send`` and reset the connection.
RAW_SEND_SCOPE_KEY = "standin.raw_send"


class Fault(StrEnum):
    NONE = "none"
    SERVER_ERROR = "server_error"  # one of 500/502/503
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    TIMEOUT = "timeout"  # hang until the client gives up
    RESET = "reset"  # drop the TCP connection without an answer


@dataclass(slots=True)
class FaultConfig:
    """Fractions (0..1) of API requests answered with each fault, plus their parameters."""

    server_error: float = 0.0
    rate_limit: float = 0.0
    timeout: float = 0.0
    reset: float = 0.0
    retry_after_s: float = 1.0  # Retry-After sent with injected 429s
    hang_s: float = 30.0  # how long a "timeout" hangs if the client does not disconnect first
    server_error_statuses: tuple[int, ...] = field(default=(500, 502, 503))

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: FaultConfig | None = None) -> FaultConfig:
        """Merge a JSON object into ``base``; unknown names or out-of-range rates raise ValueError."""
        current = asdict(base or cls())
        names = {f.name for f in fields(cls)}
        for name, value in data.items():
            if name not in names:
                raise ValueError(f"unknown fault setting {name!r}")
            current[name] = tuple(int(v) for v in value) if name == "server_error_statuses" else float(value)
        config = cls(**current)
        rates = (config.server_error, config.rate_limit, config.timeout, config.reset)
        if any(not 0.0 <= rate <= 1.0 for rate in rates) or sum(rates) > 1.0:
            raise ValueError("fault rates must be within 0..1 and sum to at most 1")
        if config.retry_after_s < 0 or config.hang_s < 0 or not config.server_error_statuses:
            raise ValueError("retry_after_s and hang_s must be >= 0, server_error_statuses non-empty")
        return config

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["server_error_statuses"] = list(self.server_error_statuses)
        return data

    def draw(self, rng: random.Random) -> Fault:
        """Pick the fault (or none) for one request."""
        roll = rng.random()
        for fault, rate in (
            (Fault.RESET, self.reset),
            (Fault.TIMEOUT, self.timeout),
            (Fault.SERVER_ERROR, self.server_error),
            (Fault.RATE_LIMIT, self.rate_limit),
        ):
            if roll < rate:
                return fault
            roll -= rate
        return Fault.NONE


class RawSendMiddleware:
    """Outermost ASGI wrapper: remembers the server's ``send`` so a handler can drop the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND_SCOPE_KEY] = send
        await self.app(scope, receive, send)


async def drop_connection(request: Request) -> bool:
    """Reset the client's TCP connection (RST, no response). False when no socket is reachable.

    Works under uvicorn, whose ``send`` is a bound method of a cycle that holds the transport. With an
    in-process transport (httpx.ASGITransport) there is no socket, and the caller must answer instead.
    """
    raw_send = request.scope.get(RAW_SEND_SCOPE_KEY)
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.Transport):
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # linger 0 turns the close into a RST: the client sees "connection reset by peer"
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await asyncio.sleep(0)  # let the server notice the disconnect before the handler returns
    return True


async def hang(request: Request, seconds: float) -> None:
    """Wait until the client disconnects or ``seconds`` pass, whichever comes first.

    Waiting on ``receive`` (not a bare sleep) lets the server shut down promptly after a test: the
    client's timeout closes the socket, the server reports ``http.disconnect``, and the handler ends.
    """
    with anyio.move_on_after(seconds):
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return
